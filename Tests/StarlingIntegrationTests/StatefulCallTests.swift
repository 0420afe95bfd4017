import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// KSR.tm end to end: SIPp UAC -> Starling running bench/stateful.lua (t_relay) -> SIPp UAS.
@Suite(.serialized)
struct StatefulCallTests {
    /// 1000 calls at 100 calls/s through `t_relay`, no call may fail; with the timers shortened through
    /// `[modparam.tm]`, every transaction is freed a few seconds after the run (the shutdown log
    /// reports `transactions=0`).
    @Test func statefulCallsThroughStarling() throws {
        let directory = try PackagePaths.makeTemporaryDirectory("starling-tm-calls")
        let proxyPort = try Ports.freeUDPPort()
        let uas = try SIPp.uas(directory: directory)
        defer { uas.stop() }
        let script = try RouteScripts.stateful(nextHopPort: uas.port, directory: directory)
        let config = directory.appendingPathComponent("starling.toml")
        try """
        [core]
        modules = ["sl", "maxfwd", "tm"]

        [modparam.tm]
        fr_timer = 2000
        fr_inv_timer = 4000

        """.write(to: config, atomically: true, encoding: .utf8)

        let starling = try Starling.start(script: script, port: proxyPort, workers: 2, extra: ["--config", config.path],
                                          directory: directory)
        defer { starling.stop() }

        let result = try SIPp.runUAC(target: proxyPort, rate: 100, calls: 1000, directory: directory,
                                     timeout: .seconds(60))
        #expect(result.exitStatus == 0, "\(result)\nstarling log:\n\(starling.logTail())")
        #expect(result.failedCalls == 0, "\(result)")
        #expect(result.successfulCalls == 1000, "\(result)")
        #expect(starling.isRunning, "starling died; log:\n\(starling.logTail())")

        // Timers L/M/J/D (shortened with fr_timer) run out; then every transaction must be gone.
        let stopped = starling.stop(after: .seconds(5))
        #expect(stopped.contains("transactions=0"), "shutdown line: \(stopped)\nlog:\n\(starling.logTail())")
        #expect(stopped.contains("script_errors=0"), "shutdown line: \(stopped)")
    }

    /// KSR.rr end to end: the proxy record-routes initial INVITEs (t_relay) and routes ACK and BYE by
    /// their Route header with loose_route (an in-dialog request it cannot loose-route gets a 404, so
    /// the call fails). SIPp's UAC stores the 200's Record-Route set (rrs="true") and sends [routes].
    /// 1000 calls at 125 calls/s (about 8 s of calls), none may fail.
    @Test func recordRouteAndLooseRouteThroughStarling() throws {
        let directory = try PackagePaths.makeTemporaryDirectory("starling-rr-calls")
        let proxyPort = try Ports.freeUDPPort()
        let uas = try SIPp.uas(directory: directory)
        defer { uas.stop() }
        let script = directory.appendingPathComponent("rr.lua")
        try """
        local NEXT_HOP = "sip:127.0.0.1:\(uas.port)"
        function ksr_request_route()
          if KSR.is_CANCEL() then
            if KSR.tm.t_check_trans() > 0 then KSR.tm.t_relay() end
            KSR.x.exit()
          end
          if KSR.tm.t_check_trans() == 0 then KSR.x.exit() end
          if KSR.siputils.has_totag() > 0 then
            if KSR.rr.loose_route() > 0 then
              if KSR.is_ACK() then KSR.forward() else KSR.tm.t_relay() end
              KSR.x.exit()
            end
            if KSR.is_ACK() then KSR.x.exit() end
            KSR.sl.sl_send_reply(404, "Not loose-routed")
            KSR.x.exit()
          end
          if KSR.is_INVITE() then KSR.rr.record_route() end
          KSR.setdsturi(NEXT_HOP)
          if KSR.tm.t_relay() < 0 then KSR.sl.sl_reply_error() end
        end
        """.write(to: script, atomically: true, encoding: .utf8)
        let config = directory.appendingPathComponent("starling.toml")
        try """
        [core]
        modules = ["sl", "maxfwd", "tm", "rr", "siputils"]

        [modparam.tm]
        fr_timer = 2000
        fr_inv_timer = 4000

        [modparam.rr]
        enable_full_lr = 1
        append_fromtag = 0

        """.write(to: config, atomically: true, encoding: .utf8)

        let starling = try Starling.start(script: script, port: proxyPort, workers: 2, extra: ["--config", config.path],
                                          directory: directory)
        defer { starling.stop() }

        let result = try SIPp.runUAC(target: proxyPort, rate: 125, calls: 1000, directory: directory,
                                     timeout: .seconds(90))
        #expect(result.exitStatus == 0, "\(result)\nstarling log:\n\(starling.logTail())")
        #expect(result.failedCalls == 0, "\(result)")
        #expect(result.successfulCalls == 1000, "\(result)")
        #expect(starling.isRunning, "starling died; log:\n\(starling.logTail())")
        let stopped = starling.stop(after: .seconds(5))
        #expect(stopped.contains("transactions=0"), "shutdown line: \(stopped)\nlog:\n\(starling.logTail())")
        #expect(stopped.contains("script_errors=0"), "shutdown line: \(stopped)")
    }

    /// Serial forking: the first UAS answers every INVITE with 486, the failure route re-routes to a
    /// second UAS that answers 200; 100 calls complete and nothing stays in the table.
    @Test func busyCalleeIsReroutedByTheFailureRoute() throws {
        let directory = try PackagePaths.makeTemporaryDirectory("starling-tm-reroute")
        let proxyPort = try Ports.freeUDPPort()
        let busy = try SIPp.uas(scenario: PackagePaths.scenario("uas_486.xml"), directory: directory, tag: "busy")
        defer { busy.stop() }
        let uas = try SIPp.uas(directory: directory)
        defer { uas.stop() }
        let script = directory.appendingPathComponent("reroute.lua")
        try """
        local FIRST = "sip:127.0.0.1:\(busy.port)"
        local SECOND = "sip:127.0.0.1:\(uas.port)"
        function ksr_request_route()
          if KSR.is_CANCEL() then
            if KSR.tm.t_check_trans() > 0 then KSR.tm.t_relay() end
            KSR.x.exit()
          end
          if KSR.tm.t_check_trans() == 0 then KSR.x.exit() end
          if KSR.is_ACK() then KSR.forward(); KSR.x.exit() end
          if KSR.is_INVITE() then
            KSR.setdsturi(FIRST)
            KSR.tm.t_on_failure("reroute")
          end
          if KSR.tm.t_relay() < 0 then KSR.sl.sl_reply_error() end
        end
        function reroute()
          if KSR.tm.t_check_status("486") > 0 then
            KSR.setdsturi(SECOND)
            KSR.tm.t_relay()
          end
        end
        """.write(to: script, atomically: true, encoding: .utf8)
        let config = directory.appendingPathComponent("starling.toml")
        try """
        [core]
        modules = ["sl", "maxfwd", "tm"]

        [modparam.tm]
        fr_timer = 2000
        fr_inv_timer = 4000

        """.write(to: config, atomically: true, encoding: .utf8)

        let starling = try Starling.start(script: script, port: proxyPort, workers: 2, extra: ["--config", config.path],
                                          directory: directory)
        defer { starling.stop() }

        let result = try SIPp.runUAC(target: proxyPort, rate: 50, calls: 100, directory: directory,
                                     timeout: .seconds(60))
        #expect(result.exitStatus == 0, "\(result)\nstarling log:\n\(starling.logTail())")
        #expect(result.failedCalls == 0, "\(result)")
        #expect(result.successfulCalls == 100, "\(result)")
        let stopped = starling.stop(after: .seconds(5))
        #expect(stopped.contains("transactions=0"), "shutdown line: \(stopped)\nlog:\n\(starling.logTail())")
        #expect(stopped.contains("script_errors=0"), "shutdown line: \(stopped)")
    }

    /// Raw sockets around the real binary: the same INVITE sent twice reaches the callee once (the
    /// 100 is resent), then a CANCEL during ringing: 200 to the CANCEL, CANCEL to the callee, its 487
    /// ACKed by the proxy and relayed to the caller, whose ACK is absorbed; the table empties.
    @Test func retransmissionAbsorbedAndCancelDuringRinging() throws {
        let directory = try PackagePaths.makeTemporaryDirectory("starling-tm-cancel")
        let ports = try Ports.freeUDPPorts(2)
        let (proxyPort, calleePort) = (ports[0], ports[1])
        let callee = try UDPEndpoint(port: calleePort)
        let caller = try UDPEndpoint()
        let script = try RouteScripts.stateful(nextHopPort: calleePort, directory: directory)
        let config = directory.appendingPathComponent("starling.toml")
        // T1 = 2 s: no Timer A retransmission inside the checks below.
        try """
        [core]
        modules = ["sl", "maxfwd", "tm"]

        [modparam.tm]
        fr_timer = 3000
        fr_inv_timer = 5000
        retr_timer1 = 2000

        """.write(to: config, atomically: true, encoding: .utf8)
        let starling = try Starling.start(script: script, port: proxyPort, workers: 2, extra: ["--config", config.path],
                                          directory: directory)
        defer { starling.stop() }

        func receive(_ endpoint: UDPEndpoint, startingWith prefix: String, timeout: Duration = .seconds(2)) -> String? {
            let clock = ContinuousClock()
            let deadline = clock.now + timeout
            while clock.now < deadline {
                guard let m = endpoint.receive(timeout: deadline - clock.now) else { return nil }
                if m.hasPrefix(prefix) { return m }
            }
            return nil
        }
        func reply(to request: String, _ status: String, tag: String) -> String {
            var out = "SIP/2.0 \(status)\r\n"
            for line in request.components(separatedBy: "\r\n") {
                if line.hasPrefix("Via:") || line.hasPrefix("From:") || line.hasPrefix("Call-ID:") || line.hasPrefix("CSeq:") {
                    out += line + "\r\n"
                } else if line.hasPrefix("To:") {
                    out += line + (line.contains(";tag=") ? "" : ";tag=\(tag)") + "\r\n"
                }
            }
            return out + "Content-Length: 0\r\n\r\n"
        }
        let head = { (method: String) in
            "\(method) sip:bob@127.0.0.1:\(proxyPort) SIP/2.0\r\n"
                + "Via: SIP/2.0/UDP 127.0.0.1:\(caller.port);branch=z9hG4bKtmit1;rport\r\nMax-Forwards: 70\r\n"
                + "From: <sip:alice@127.0.0.1>;tag=a1\r\n"
        }
        let invite = head("INVITE") + "To: <sip:bob@127.0.0.1>\r\nCall-ID: tm-it-cancel\r\nCSeq: 1 INVITE\r\n"
            + "Contact: <sip:alice@127.0.0.1:\(caller.port)>\r\nContent-Length: 0\r\n\r\n"

        try caller.send(invite, to: proxyPort)
        #expect(receive(caller, startingWith: "SIP/2.0 100") != nil, "no 100 Trying; log:\n\(starling.logTail())")
        let forwarded = try #require(receive(callee, startingWith: "INVITE"), "no INVITE at the callee")
        // The retransmission: absorbed (100 again), nothing more downstream.
        try caller.send(invite, to: proxyPort)
        #expect(receive(caller, startingWith: "SIP/2.0 100") != nil, "the retransmission got no 100")
        #expect(receive(callee, startingWith: "INVITE", timeout: .milliseconds(700)) == nil,
                "the retransmitted INVITE reached the callee")

        try callee.send(reply(to: forwarded, "180 Ringing", tag: "b1"), to: proxyPort)
        #expect(receive(caller, startingWith: "SIP/2.0 180") != nil, "no 180 at the caller")

        let cancel = head("CANCEL") + "To: <sip:bob@127.0.0.1>\r\nCall-ID: tm-it-cancel\r\nCSeq: 1 CANCEL\r\n"
            + "Content-Length: 0\r\n\r\n"
        try caller.send(cancel, to: proxyPort)
        let ok = receive(caller, startingWith: "SIP/2.0 200")
        #expect(ok.map { SIPProbe.header("CSeq", in: $0) } == "1 CANCEL", "200 to the CANCEL: \(ok ?? "none")")
        let downCancel = try #require(receive(callee, startingWith: "CANCEL"), "no CANCEL at the callee")
        try callee.send(reply(to: downCancel, "200 OK", tag: "b1"), to: proxyPort)
        try callee.send(reply(to: forwarded, "487 Request Terminated", tag: "b1"), to: proxyPort)
        #expect(receive(callee, startingWith: "ACK") != nil, "the proxy did not ACK the 487")
        let terminated = receive(caller, startingWith: "SIP/2.0 487")
        #expect(terminated != nil, "no 487 at the caller")
        let ack = head("ACK") + "To: <sip:bob@127.0.0.1>;tag=b1\r\nCall-ID: tm-it-cancel\r\nCSeq: 1 ACK\r\n"
            + "Content-Length: 0\r\n\r\n"
        try caller.send(ack, to: proxyPort)
        #expect(receive(callee, startingWith: "ACK", timeout: .milliseconds(500)) == nil, "the caller's ACK was not absorbed")

        let stopped = starling.stop(after: .seconds(6))
        #expect(stopped.contains("transactions=0"), "shutdown line: \(stopped)\nlog:\n\(starling.logTail())")
    }

    /// A callee that never answers: Timer B (fr_timer 1 s) ends the branch, the failure route sees 408
    /// (it answers 599 naming what it saw, so the caller can tell), and the table empties.
    @Test func silentCalleeGives408InTheFailureRoute() throws {
        let directory = try PackagePaths.makeTemporaryDirectory("starling-tm-timeout")
        let ports = try Ports.freeUDPPorts(2)
        let (proxyPort, calleePort) = (ports[0], ports[1])
        let callee = try UDPEndpoint(port: calleePort)
        let caller = try UDPEndpoint()
        let script = directory.appendingPathComponent("timeout.lua")
        try """
        function ksr_request_route()
          if KSR.tm.t_check_trans() == 0 then KSR.x.exit() end
          if KSR.is_ACK() then KSR.x.exit() end
          KSR.setdsturi("sip:127.0.0.1:\(calleePort)")
          KSR.tm.t_on_failure("failed")
          KSR.tm.t_relay()
        end
        function failed()
          if KSR.tm.t_check_status("408") > 0 and KSR.tm.t_branch_timeout() > 0 then
            KSR.tm.t_reply(599, "failure route saw " .. KSR.pv.get("$T_reply_code"))
          end
        end
        """.write(to: script, atomically: true, encoding: .utf8)
        let config = directory.appendingPathComponent("starling.toml")
        try """
        [core]
        modules = ["sl", "maxfwd", "tm"]

        [modparam.tm]
        fr_timer = 1000
        fr_inv_timer = 2000

        """.write(to: config, atomically: true, encoding: .utf8)
        let starling = try Starling.start(script: script, port: proxyPort, workers: 2, extra: ["--config", config.path],
                                          directory: directory)
        defer { starling.stop() }

        let invite = "INVITE sip:bob@127.0.0.1:\(proxyPort) SIP/2.0\r\n"
            + "Via: SIP/2.0/UDP 127.0.0.1:\(caller.port);branch=z9hG4bKtmit408;rport\r\nMax-Forwards: 70\r\n"
            + "From: <sip:alice@127.0.0.1>;tag=a1\r\nTo: <sip:bob@127.0.0.1>\r\nCall-ID: tm-it-408\r\n"
            + "CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
        try caller.send(invite, to: proxyPort)
        var lines: [String] = []
        let clock = ContinuousClock()
        let deadline = clock.now + .seconds(4)
        while clock.now < deadline, let m = caller.receive(timeout: deadline - clock.now) {
            let line = m.components(separatedBy: "\r\n").first ?? m
            lines.append(line)
            if !line.hasPrefix("SIP/2.0 1") { break }
        }
        #expect(lines.last == "SIP/2.0 599 failure route saw 408", "caller got \(lines); log:\n\(starling.logTail())")
        // The callee saw the INVITE and Timer A's retransmissions, nothing else.
        var atCallee: [String] = []
        while let m = callee.receive(timeout: .milliseconds(100)) { atCallee.append(String(m.prefix { $0 != " " })) }
        #expect(!atCallee.isEmpty && atCallee.allSatisfy { $0 == "INVITE" }, "callee got \(atCallee)")

        let stopped = starling.stop(after: .seconds(4))
        #expect(stopped.contains("transactions=0"), "shutdown line: \(stopped)\nlog:\n\(starling.logTail())")
    }

    /// 5% loss in each direction between Starling and the callee (a seeded relay, Tools/lossy_relay.py):
    /// Timer A/E retransmissions from the proxy and the callee's 200 retransmissions complete all 200
    /// calls; the table empties afterwards.
    ///
    /// Sized so that a lost call is a real bug, not bad luck: a BYE fails only if all of its 7 sends
    /// within fr_timer = 10 s (Timer E capped at T2 = 2 s: 0, 0.5, 1.5, 3.5, 5.5, 7.5, 9.5 s) lose the
    /// request or the 200, (1 - 0.95^2)^7 = 8e-8 per call, 2e-5 per run. With 10% loss, T2 = 4 s and
    /// fr_timer = 8 s (5 sends) that was 2.5e-4 per call, 5% per run, and one CI run lost a BYE to
    /// 408. The callee answers repeated BYEs for 17 s (uas_lossy.xml), longer than fr_timer.
    @Test func callsCompleteThroughALossyLink() throws {
        let directory = try PackagePaths.makeTemporaryDirectory("starling-tm-lossy")
        let python = try Requirements.tool("python3", package: "python3")
        let ports = try Ports.freeUDPPorts(2)
        let (proxyPort, relayPort) = (ports[0], ports[1])
        let script = try RouteScripts.stateful(nextHopPort: relayPort, directory: directory)
        let config = directory.appendingPathComponent("starling.toml")
        try """
        [core]
        modules = ["sl", "maxfwd", "tm"]

        [modparam.tm]
        fr_timer = 10000
        fr_inv_timer = 10000
        retr_timer2 = 2000

        """.write(to: config, atomically: true, encoding: .utf8)

        let uas = try SIPp.uas(scenario: PackagePaths.scenario("uas_lossy.xml"), directory: directory)
        defer { uas.stop() }
        let relay = try ServerProcess(name: "lossy_relay.py", executable: python,
                                      arguments: [PackagePaths.tool("lossy_relay.py").path, "--listen", String(relayPort),
                                                  "--proxy", String(proxyPort), "--callee", String(uas.port),
                                                  "--loss", "0.05", "--seed", "7"],
                                      logFile: directory.appendingPathComponent("relay.log"))
        defer { relay.stop() }
        try relay.waitUntilBound(udpPort: relayPort)
        // One worker: with two, a BYE could overtake its ACK; the callee then answered the BYE, took the
        // late ACK as its end and ignored the BYE's retransmissions when the relay had dropped its 200
        // (Starling then rightly answered 408 after fr_timer). One worker keeps the relay's order.
        let starling = try Starling.start(script: script, port: proxyPort, workers: 1, extra: ["--config", config.path],
                                          directory: directory)
        defer { starling.stop() }

        let result = try SIPp.runUAC(scenario: PackagePaths.scenario("uac_lossy.xml"), target: proxyPort, rate: 50,
                                     calls: 200, directory: directory, timeout: .seconds(120))
        relay.stop()
        #expect(result.exitStatus == 0, "\(result)\nsipp: \(result.output.suffix(1500))\nrelay: \(relay.logTail(3))\nstarling log:\n\(starling.logTail())")
        #expect(result.failedCalls == 0, "\(result)")
        #expect(result.successfulCalls == 200, "\(result)")
        #expect(relay.log.contains("relayed/dropped"), "relay log: \(relay.log)")

        let stopped = starling.stop(after: .seconds(13))  // completed transactions wait fr_timer + 1 s
        #expect(stopped.contains("transactions=0"), "shutdown line: \(stopped)\nlog:\n\(starling.logTail())")
    }

    /// A reply whose From does not parse is relayed as it is, one whose To does not parse is dropped:
    /// Kamailio 5.6 parses the To of every message it receives (and drops a reply without a usable
    /// To) but the From only when something asks for it. Neither parses the URI inside: a To or From
    /// `<nonsense>` goes through. The same exchange against both servers.
    @Test(arguments: ["kamailio", "starling"])
    func replyWithBadFromIsRelayedBadToIsDropped(server: String) throws {
        let directory = try PackagePaths.makeTemporaryDirectory("\(server)-tm-bad-from")
        let ports = try Ports.freeUDPPorts(2)
        let (proxyPort, calleePort) = (ports[0], ports[1])
        let callee = try UDPEndpoint(port: calleePort)
        let caller = try UDPEndpoint()
        let script = try RouteScripts.stateful(nextHopPort: calleePort, directory: directory)
        let proxy: ServerProcess
        if server == "kamailio" {
            proxy = try Kamailio.start(script: script, port: proxyPort, children: 1, modules: ["sl", "maxfwd", "tm", "pv"],
                                       directory: directory)
        } else {
            proxy = try Starling.start(script: script, config: "[core]\nmodules = [\"sl\", \"maxfwd\", \"tm\"]\n",
                                       port: proxyPort, workers: 1, directory: directory)
        }
        defer { proxy.stop() }

        func receive(_ endpoint: UDPEndpoint, startingWith prefix: String, timeout: Duration = .seconds(3)) -> (String?, [String]) {
            let clock = ContinuousClock()
            let deadline = clock.now + timeout
            var seen: [String] = []
            while clock.now < deadline {
                guard let m = endpoint.receive(timeout: deadline - clock.now) else { break }
                if m.hasPrefix(prefix) { return (m, seen) }
                seen.append(m)
            }
            return (nil, seen)
        }
        func reply(to request: String, _ status: String, from: String? = nil, to: String? = nil) -> String {
            var out = "SIP/2.0 \(status)\r\n"
            for line in request.components(separatedBy: "\r\n") {
                if line.hasPrefix("Via:") || line.hasPrefix("Call-ID:") || line.hasPrefix("CSeq:") || line.hasPrefix("Record-Route:") {
                    out += line + "\r\n"
                } else if line.hasPrefix("From:") {
                    out += (from.map { "From: \($0)" } ?? line) + "\r\n"
                } else if line.hasPrefix("To:") {
                    out += (to.map { "To: \($0)" } ?? line + ";tag=b1") + "\r\n"
                }
            }
            return out + "Contact: <sip:bob@127.0.0.1:\(calleePort)>\r\nContent-Length: 0\r\n\r\n"
        }
        let invite = "INVITE sip:bob@127.0.0.1:\(proxyPort) SIP/2.0\r\n"
            + "Via: SIP/2.0/UDP 127.0.0.1:\(caller.port);branch=z9hG4bKbadfrom1;rport\r\nMax-Forwards: 70\r\n"
            + "From: <sip:alice@127.0.0.1>;tag=a1\r\nTo: <sip:bob@127.0.0.1>\r\nCall-ID: tm-bad-from-\(server)\r\n"
            + "CSeq: 1 INVITE\r\nContact: <sip:alice@127.0.0.1:\(caller.port)>\r\nContent-Length: 0\r\n\r\n"
        try caller.send(invite, to: proxyPort)
        let forwarded = try #require(receive(callee, startingWith: "INVITE").0, "\(server): no INVITE at the callee; log:\n\(proxy.logTail())")

        try callee.send(reply(to: forwarded, "180 Ringing", from: "bad<<>>"), to: proxyPort)
        let ringing = receive(caller, startingWith: "SIP/2.0 180").0
        #expect(ringing.map { SIPProbe.header("From", in: $0) } == "bad<<>>", "\(server): 180 with a bad From: \(ringing ?? "not relayed")")

        // The 183 with a bad To is dropped: the 200 sent after it arrives, the 183 never does.
        try callee.send(reply(to: forwarded, "183 Session Progress", to: "bad<<>>"), to: proxyPort)
        try callee.send(reply(to: forwarded, "200 OK"), to: proxyPort)
        let (ok, before) = receive(caller, startingWith: "SIP/2.0 200")
        #expect(ok != nil, "\(server): no 200 at the caller; log:\n\(proxy.logTail())")
        let after = receive(caller, startingWith: "SIP/2.0 183", timeout: .milliseconds(500)).0
        #expect(after == nil && !before.contains { $0.hasPrefix("SIP/2.0 183") }, "\(server): the 183 with a bad To was relayed")

        // A To or From whose URI does not parse but whose name-addr does (`<nonsense>`) is relayed: the
        // URI is only delimited (Kamailio's parse_to), in a request and in a reply.
        let second = "INVITE sip:bob@127.0.0.1:\(proxyPort) SIP/2.0\r\n"
            + "Via: SIP/2.0/UDP 127.0.0.1:\(caller.port);branch=z9hG4bKbadfrom2;rport\r\nMax-Forwards: 70\r\n"
            + "From: \"A\" <nonsense>;tag=a2\r\nTo: <sip:bob@127.0.0.1>\r\nCall-ID: tm-bad-uri-\(server)\r\n"
            + "CSeq: 1 INVITE\r\nContact: <sip:alice@127.0.0.1:\(caller.port)>\r\nContent-Length: 0\r\n\r\n"
        try caller.send(second, to: proxyPort)
        let forwarded2 = try #require(receive(callee, startingWith: "INVITE").0,
                                      "\(server): the INVITE with From <nonsense> was not relayed; log:\n\(proxy.logTail())")
        #expect(SIPProbe.header("From", in: forwarded2) == "\"A\" <nonsense>;tag=a2")
        try callee.send(reply(to: forwarded2, "180 Ringing", to: "<other-nonsense>;tag=b2"), to: proxyPort)
        let ringing2 = receive(caller, startingWith: "SIP/2.0 180").0
        #expect(ringing2.map { SIPProbe.header("To", in: $0) } == "<other-nonsense>;tag=b2",
                "\(server): 180 with To <other-nonsense>: \(ringing2 ?? "not relayed")")
        try callee.send(reply(to: forwarded2, "486 Busy Here"), to: proxyPort)
        #expect(receive(caller, startingWith: "SIP/2.0 486").0 != nil, "\(server): no 486 at the caller; log:\n\(proxy.logTail())")
        #expect(proxy.isRunning, "\(server) died; log:\n\(proxy.logTail())")
    }
}
