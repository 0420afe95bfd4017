import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// KSR.rtpengine against the real rtpengine daemon (issue 16): calls through a stateful script that
/// calls rtpengine_manage, RTP through the relay, sessions deleted after BYE and after a failed call,
/// failover between two instances, a silent instance and a reply that does not decode.
@Suite(.serialized)
struct RtpengineTests {
    /// The stateful route: rtpengine_manage on INVITE, on every reply (answer; delete on >= 300) and
    /// on BYE/CANCEL, as Kamailio's example script does it.
    static func script(nextHop: Int) -> String {
        """
        local NEXT_HOP = "sip:127.0.0.1:\(nextHop)"
        function ksr_request_route()
          if KSR.is_CANCEL() then
            if KSR.tm.t_check_trans() > 0 then
              KSR.rtpengine.rtpengine_manage("")
              KSR.tm.t_relay()
            end
            KSR.x.exit()
          end
          if KSR.tm.t_check_trans() == 0 then KSR.x.exit() end
          if KSR.siputils.has_totag() > 0 then
            if KSR.is_BYE() then KSR.rtpengine.rtpengine_manage("") end
            KSR.setdsturi(NEXT_HOP)
            if KSR.is_ACK() then KSR.forward() else KSR.tm.t_relay() end
            KSR.x.exit()
          end
          if KSR.is_INVITE() then
            KSR.tm.t_on_reply("ksr_onreply_media")
            local rc = KSR.rtpengine.rtpengine_manage("replace-origin replace-session-connection")
            if rc < 0 then
              KSR.sl.sl_send_reply(503, "rtpengine " .. rc)
              KSR.x.exit()
            end
            -- a deferred body edit, as Kamailio's lump: $rb still reads the SDP as received
            KSR.info("rb after offer: " .. (string.match(KSR.pv.get("$rb") or "", "m=audio %d+") or "none") .. "\\n")
          end
          KSR.setdsturi(NEXT_HOP)
          if KSR.tm.t_relay() < 0 then KSR.sl.sl_reply_error() end
        end
        function ksr_onreply_media()
          if KSR.kx.get_status() > 100 then
            KSR.rtpengine.rtpengine_manage("replace-origin replace-session-connection")
          end
        end
        """
    }

    static func config(_ directory: URL, sock: String, extra: String = "", control: Int? = nil) throws -> URL {
        let url = directory.appendingPathComponent("starling.toml")
        try """
        [core]
        modules = ["sl", "maxfwd", "tm", "siputils", "kx", "rtpengine"]

        [modparam.tm]
        fr_timer = 2000
        fr_inv_timer = 4000

        [modparam.rtpengine]
        rtpengine_sock = "\(sock)"
        \(extra)
        \(control.map { "[control]\nlisten = \"127.0.0.1:\($0)\"\ntoken = \"t\"\n" } ?? "")
        """.write(to: url, atomically: true, encoding: .utf8)
        return url
    }

    /// `m=audio` port and `c=` address of the SDP in `message`.
    static func media(_ message: String) -> (ip: String, port: Int)? {
        var ip: String?
        var port: Int?
        for raw in message.split(whereSeparator: \.isNewline) {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.hasPrefix("c=IN IP4 ") { ip = String(line.dropFirst(9)) }
            if line.hasPrefix("m=audio "), let p = Int(line.split(separator: " ")[1]) { port = p }
        }
        guard let ip, let port else { return nil }
        return (ip, port)
    }

    /// SIPp offer/answer through Starling: the UAS sees the relay's address and ports in the INVITE,
    /// the UAC in the 200; every session is gone from rtpengine after the BYEs.
    @Test func sippCallsThroughTheRelay() throws {
        let directory = try PackagePaths.makeTemporaryDirectory("starling-rtpengine-sipp")
        let relay = try RtpengineDaemon.start(directory: directory)
        defer { relay.process.stop() }
        let uas = try SIPp.uas(directory: directory, traceMessages: true)
        defer { uas.stop() }
        let script = directory.appendingPathComponent("media.lua")
        try Self.script(nextHop: uas.port).write(to: script, atomically: true, encoding: .utf8)
        let proxyPort = try Ports.freeUDPPort()
        let starling = try Starling.start(script: script, port: proxyPort, workers: 2,
                                          extra: ["--config", try Self.config(directory, sock: "udp:127.0.0.1:\(relay.port)").path],
                                          directory: directory)
        defer { starling.stop() }
        let result = try SIPp.runUAC(target: proxyPort, rate: 5, calls: 5, directory: directory, traceMessages: true,
                                     timeout: .seconds(60))
        #expect(result.successfulCalls == 5, "\(result)\n\(starling.logTail())\n\(relay.process.logTail())")
        // Both ends were given the relay: 127.0.0.2 and a port of rtpengine's block.
        let uasLog = (try? String(contentsOf: directory.appendingPathComponent("uas_messages.log"), encoding: .utf8)) ?? ""
        /// Each message of a SIPp message log that starts with `start`, up to the next separator line.
        func messages(_ log: String, _ start: String) -> [String] {
            log.components(separatedBy: start).dropFirst().map { $0.components(separatedBy: "\n----").first ?? $0 }
        }
        let invites = messages(uasLog, "INVITE sip:")
        #expect(invites.count >= 5)
        for invite in invites {
            let m = Self.media(String(invite.prefix(2000)))
            #expect(m?.ip == "127.0.0.2" && relay.media.contains(m?.port ?? 0), "INVITE seen by the UAS: \(invite.prefix(900))")
        }
        let answers = messages(result.messages, "SIP/2.0 200 OK").filter { $0.contains("CSeq: 1 INVITE") }
        #expect(answers.count >= 5)
        for a in answers {
            let m = Self.media(String(a.prefix(2000)))
            #expect(m?.ip == "127.0.0.2" && relay.media.contains(m?.port ?? 0), "200 seen by the UAC: \(a.prefix(900))")
        }
        // deleted on BYE (delete-delay 0): rtpengine holds no call any more
        let clock = ContinuousClock()
        let deadline = clock.now + .seconds(5)
        var list = try relay.calls()
        while list != "d5:callsle6:result2:oke" && clock.now < deadline {
            usleep(100_000)
            list = try relay.calls()
        }
        #expect(list == "d5:callsle6:result2:oke", "rtpengine still lists: \(list)")
        #expect(starling.isRunning)
    }

    /// A call set up by the test's own SIP endpoints: RTP sent by each end reaches the other through
    /// the relay; BYE deletes the session. Then a call the callee refuses (486): deleted too.
    @Test func rtpFlowsThroughTheRelayAndSessionsAreDeleted() throws {
        let directory = try PackagePaths.makeTemporaryDirectory("starling-rtpengine-rtp")
        let relay = try RtpengineDaemon.start(directory: directory)
        defer { relay.process.stop() }
        let caller = try UDPEndpoint()
        let callee = try UDPEndpoint()
        let callerMedia = try UDPEndpoint()
        let calleeMedia = try UDPEndpoint()
        let script = directory.appendingPathComponent("media.lua")
        try Self.script(nextHop: callee.port).write(to: script, atomically: true, encoding: .utf8)
        let proxyPort = try Ports.freeUDPPort()
        let starling = try Starling.start(script: script, port: proxyPort, workers: 2,
                                          extra: ["--config", try Self.config(directory, sock: "udp:127.0.0.1:\(relay.port)").path],
                                          directory: directory)
        defer { starling.stop() }

        func sdp(_ port: Int) -> String {
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio \(port) RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
        }
        func invite(_ callID: String) -> String {
            let body = sdp(callerMedia.port)
            return "INVITE sip:callee@127.0.0.1:\(proxyPort) SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:\(caller.port);branch=z9hG4bK\(callID)\r\n"
                + "From: <sip:caller@127.0.0.1>;tag=ft\(callID)\r\nTo: <sip:callee@127.0.0.1>\r\nCall-ID: \(callID)\r\nCSeq: 1 INVITE\r\n"
                + "Contact: <sip:caller@127.0.0.1:\(caller.port)>\r\nMax-Forwards: 70\r\nContent-Type: application/sdp\r\n"
                + "Content-Length: \(body.utf8.count)\r\n\r\n" + body
        }
        /// The callee's reply to `request`: its Via headers, a To tag, an SDP answer for 200.
        func reply(_ request: String, _ status: String, sdpBody: String?) -> String {
            let lines = request.components(separatedBy: "\r\n")
            let keep = lines.filter { l in ["via:", "from:", "call-id:", "cseq:"].contains { l.lowercased().hasPrefix($0) } }
            let to = lines.first { $0.lowercased().hasPrefix("to:") } ?? "To: <sip:callee@127.0.0.1>"
            var r = "SIP/2.0 \(status)\r\n" + keep.joined(separator: "\r\n") + "\r\n"
            r += (to.contains("tag=") ? to : to + ";tag=callee1") + "\r\nContact: <sip:callee@127.0.0.1:\(callee.port)>\r\n"
            if let sdpBody {
                r += "Content-Type: application/sdp\r\nContent-Length: \(sdpBody.utf8.count)\r\n\r\n" + sdpBody
            } else {
                r += "Content-Length: 0\r\n\r\n"
            }
            return r
        }
        func receive(_ e: UDPEndpoint, _ startLine: String) -> String? {
            let clock = ContinuousClock()
            let deadline = clock.now + .seconds(10)
            while clock.now < deadline {
                if let m = e.receive(timeout: .seconds(1)), m.hasPrefix(startLine) { return m }
            }
            return nil
        }

        // 1. a call with RTP both ways
        let callID = "rtp-\(UUID().uuidString.prefix(8))"
        try caller.send(invite(callID), to: proxyPort)
        let forwarded = try #require(receive(callee, "INVITE "), "no INVITE reached the callee\n\(starling.logTail())")
        let towardsCaller = try #require(Self.media(forwarded), "no SDP in \(forwarded)")
        #expect(towardsCaller.ip == "127.0.0.2" && relay.media.contains(towardsCaller.port), "\(forwarded)")
        #expect(forwarded.contains("o=- 1 1 IN IP4 127.0.0.2"), "replace-origin: \(forwarded)")
        #expect(starling.log.contains("rb after offer: m=audio \(callerMedia.port)"), "\(starling.logTail())")
        try callee.send(reply(forwarded, "200 OK", sdpBody: sdp(calleeMedia.port)), to: proxyPort)
        let answer = try #require(receive(caller, "SIP/2.0 200"), "no 200 reached the caller\n\(starling.logTail())")
        let towardsCallee = try #require(Self.media(answer), "no SDP in \(answer)")
        #expect(towardsCallee.ip == "127.0.0.2" && relay.media.contains(towardsCallee.port), "\(answer)")

        func rtp(_ seq: Int) -> [UInt8] {
            var p: [UInt8] = [0x80, 0x00, UInt8(seq >> 8), UInt8(seq & 0xff), 0, 0, UInt8(seq >> 8), UInt8(seq & 0xff), 0x12, 0x34, 0x56, 0x78]
            p += [UInt8](repeating: 0xff, count: 160)
            return p
        }
        func sendRTP(_ from: UDPEndpoint, to address: (ip: String, port: Int), seq: Int) {
            var sa = sockaddr_in()
            sa.sin_family = sa_family_t(AF_INET)
            sa.sin_port = in_port_t(UInt16(address.port).bigEndian)
            sa.sin_addr.s_addr = inet_addr(address.ip)
            let packet = rtp(seq)
            _ = withUnsafePointer(to: &sa) { p in
                p.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    sendto(from.fd, packet, packet.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
        }
        // caller -> relay (the port the caller was given) -> callee; and back
        var forward = 0
        var backward = 0
        for seq in 1...10 {
            sendRTP(callerMedia, to: towardsCallee, seq: seq)
            sendRTP(calleeMedia, to: towardsCaller, seq: 100 + seq)
            if calleeMedia.receive(timeout: .seconds(1)) != nil { forward += 1 }
            if callerMedia.receive(timeout: .seconds(1)) != nil { backward += 1 }
        }
        #expect(forward >= 5, "RTP caller -> callee through the relay: \(forward)/10\n\(relay.process.logTail())")
        #expect(backward >= 5, "RTP callee -> caller through the relay: \(backward)/10")
        #expect(try relay.calls().contains(callID))

        // ACK, BYE: the session is deleted
        let toLine = answer.components(separatedBy: "\r\n").first { $0.hasPrefix("To:") } ?? ""
        let inDialog = { (method: String, cseq: Int) in
            "\(method) sip:callee@127.0.0.1:\(callee.port) SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:\(caller.port);branch=z9hG4bK\(method)\(callID)\r\n"
                + "From: <sip:caller@127.0.0.1>;tag=ft\(callID)\r\n\(toLine)\r\nCall-ID: \(callID)\r\nCSeq: \(cseq) \(method)\r\n"
                + "Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        }
        try caller.send(inDialog("ACK", 1), to: proxyPort)
        try caller.send(inDialog("BYE", 2), to: proxyPort)
        let bye = try #require(receive(callee, "BYE "), "no BYE reached the callee")
        try callee.send(reply(bye, "200 OK", sdpBody: nil), to: proxyPort)
        #expect(receive(caller, "SIP/2.0 200") != nil)
        #expect(relay.waitUntilGone(callID), "rtpengine still has \(callID): \((try? relay.calls()) ?? "")")

        // 2. a call the callee refuses: deleted on the 486 (rtpengine_manage in the reply route)
        let failed = "fail-\(UUID().uuidString.prefix(8))"
        try caller.send(invite(failed), to: proxyPort)
        let inv2 = try #require(receive(callee, "INVITE "), "no INVITE reached the callee")
        #expect(try relay.calls().contains(failed), "the offer created the session")
        try callee.send(reply(inv2, "486 Busy Here", sdpBody: nil), to: proxyPort)
        #expect(receive(caller, "SIP/2.0 486") != nil)
        #expect(relay.waitUntilGone(failed), "rtpengine still has \(failed): \((try? relay.calls()) ?? "")")
        #expect(starling.isRunning)
    }

    /// Two instances, the one the calls hash to killed: every call goes to the other; the dead one is
    /// shown disabled by rtpengine.show.
    @Test func callsContinueOnTheOtherInstance() throws {
        let directory = try PackagePaths.makeTemporaryDirectory("starling-rtpengine-failover")
        let first = try RtpengineDaemon.start(directory: directory, tag: "rtpengine1")
        let second = try RtpengineDaemon.start(directory: directory, tag: "rtpengine2")
        defer { first.process.stop(); second.process.stop() }
        let uas = try SIPp.uas(directory: directory)
        defer { uas.stop() }
        let script = directory.appendingPathComponent("media.lua")
        try Self.script(nextHop: uas.port).write(to: script, atomically: true, encoding: .utf8)
        let proxyPort = try Ports.freeUDPPort()
        let control = try Ports.freeTCPPort()
        let sock = "udp:127.0.0.1:\(first.port) udp:127.0.0.1:\(second.port)"
        let config = try Self.config(directory, sock: sock, extra: "rtpengine_tout_ms = 500\nrtpengine_retr = 2", control: control)
        let starling = try Starling.start(script: script, port: proxyPort, workers: 2, extra: ["--config", config.path],
                                          directory: directory)
        defer { starling.stop() }
        let before = try SIPp.runUAC(target: proxyPort, rate: 5, calls: 4, directory: directory, tag: "before", timeout: .seconds(60))
        #expect(before.successfulCalls == 4, "\(before)")
        first.process.stop()
        let after = try SIPp.runUAC(target: proxyPort, rate: 5, calls: 6, directory: directory, tag: "after", timeout: .seconds(60))
        #expect(after.successfulCalls == 6, "\(after)\n\(starling.logTail())")
        #expect(second.process.log.components(separatedBy: "Creating new call").count - 1 >= 6, "\(second.process.logTail())")
        try starling.waitUntilListening(tcpPort: control)
        func ctl(_ args: String...) throws -> CommandResult {
            try Command.run(try PackagePaths.starlingBinary().path, ["ctl", "--url", "http://127.0.0.1:\(control)", "--token", "t"] + args,
                            timeout: .seconds(20))
        }
        let ping = try ctl("rtpengine.ping", "all")
        #expect(ping.output.contains("\"fail\""), "\(ping.output)")
        let pingLive = try ctl("rtpengine.ping", "udp:127.0.0.1:\(second.port)")
        #expect(pingLive.output.contains("\"success\""), "\(pingLive.output)")
        let unknown = try ctl("rtpengine.show", "udp:127.0.0.1:1")
        #expect(unknown.status != 0 && unknown.output.contains("Instance not found"), "\(unknown.output)")
        let show = try ctl("rtpengine.show", "all")
        #expect(show.status == 0, "\(show.output)")
        #expect(show.output.contains("udp:127.0.0.1:\(first.port)") && show.output.contains("udp:127.0.0.1:\(second.port)"), "\(show.output)")
        let rows = (try? JSONSerialization.jsonObject(with: Data(show.output.utf8))) as? [[String: Any]] ?? []
        let disabled = Dictionary(rows.compactMap { r in (r["url"] as? String).map { ($0, r["disabled"] as? Int ?? -1) } },
                                  uniquingKeysWith: { a, _ in a })
        #expect(disabled["udp:127.0.0.1:\(first.port)"] == 1, "\(show.output)")
        #expect(disabled["udp:127.0.0.1:\(second.port)"] == 0, "\(show.output)")
        #expect(rows.count == 2, "\(show.output)")
        // per-instance statistics (labelled): /metrics and stats.get_statistics
        let metrics = try ControlAPITests.metrics(port: control, token: "t")
        func sample(_ name: String, _ port: Int) -> Int? {
            let prefix = "\(name){instance=\"udp:127.0.0.1:\(port)\",set=\"0\"} "
            return metrics.split(separator: "\n").first { $0.hasPrefix(prefix) }.flatMap { Int($0.dropFirst(prefix.count)) }
        }
        #expect(sample("starling_rtpengine_instance_up", first.port) == 0, "\(metrics)")
        #expect(sample("starling_rtpengine_instance_up", second.port) == 1, "\(metrics)")
        #expect((sample("starling_rtpengine_failures_total", first.port) ?? 0) >= 1, "\(metrics)")
        #expect(sample("starling_rtpengine_failures_total", second.port) == 0, "\(metrics)")
        // 6 calls after the kill, offer + answer + delete each, and the pings
        #expect((sample("starling_rtpengine_requests_total", second.port) ?? 0) >= 18, "\(metrics)")
        #expect(metrics.contains("# TYPE starling_rtpengine_requests_total counter"), "\(metrics)")
        #expect(metrics.contains("# TYPE starling_rtpengine_commands_total counter"), "the module-wide names stay: \(metrics)")
        let stats = try ctl("stats.get_statistics", "rtpengine:instance_up")
        #expect(stats.output.contains("rtpengine:instance_up{instance=udp:127.0.0.1:\(first.port),set=0} = 0")
                && stats.output.contains("rtpengine:instance_up{instance=udp:127.0.0.1:\(second.port),set=0} = 1"), "\(stats.output)")
        #expect(starling.isRunning)
    }

    /// A silent instance: -1 (the script answers 503 "rtpengine -1") within rtpengine_tout_ms, with a
    /// log line; then disabled, so the next call fails at once. A reply that does not decode: -1 too.
    @Test func silentAndUndecodableInstancesFailCleanly() throws {
        let directory = try PackagePaths.makeTemporaryDirectory("starling-rtpengine-bad")
        let silent = try UDPEndpoint()
        let garbage = try GarbageNGPeer(reply: "this is not bencode")
        defer { garbage.stop() }
        let script = directory.appendingPathComponent("bad.lua")
        try """
        function ksr_request_route()
          if KSR.pv.get("$rU") == "garbage" then KSR.rtpengine.set_rtpengine_set(1) end
          local rc = KSR.rtpengine.rtpengine_offer("replace-origin some-unknown-word")
          KSR.sl.sl_send_reply(488, "rtpengine " .. rc)
        end
        """.write(to: script, atomically: true, encoding: .utf8)
        let proxyPort = try Ports.freeUDPPort()
        let config = directory.appendingPathComponent("starling.toml")
        try """
        [core]
        modules = ["sl", "rtpengine"]
        [modparam.rtpengine]
        rtpengine_sock = ["udp:127.0.0.1:\(silent.port)", "1 == udp:127.0.0.1:\(garbage.port)"]
        rtpengine_tout_ms = 400
        rtpengine_retr = 1
        aggressive_redetection = 0
        """.write(to: config, atomically: true, encoding: .utf8)
        let starling = try Starling.start(script: script, port: proxyPort, workers: 1, extra: ["--config", config.path],
                                          directory: directory)
        defer { starling.stop() }
        let client = try UDPEndpoint()
        func offer(_ user: String) throws -> (String?, Duration) {
            let body = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
            let id = UUID().uuidString
            let msg = "INVITE sip:\(user)@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:\(client.port);branch=z9hG4bK\(id.prefix(8))\r\n"
                + "From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:b@127.0.0.1>\r\nCall-ID: \(id)\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n"
                + "Content-Type: application/sdp\r\nContent-Length: \(body.utf8.count)\r\n\r\n" + body
            let clock = ContinuousClock()
            let start = clock.now
            try client.send(msg, to: proxyPort)
            let r = client.receive(timeout: .seconds(10))
            return (r?.components(separatedBy: "\r\n").first, start.duration(to: clock.now))
        }
        let (first, took) = try offer("silent")
        #expect(first == "SIP/2.0 488 rtpengine -1", "\(first ?? "no reply")\n\(starling.logTail())")
        #expect(took >= .milliseconds(350) && took < .seconds(3), "took \(took)")
        #expect(starling.log.contains("timeout"), "\(starling.logTail())")
        // disabled now: no waiting
        let (second, took2) = try offer("silent")
        #expect(second == "SIP/2.0 488 rtpengine -1")
        #expect(took2 < .milliseconds(350), "a disabled instance is not asked again: \(took2)")
        #expect(starling.log.contains("no available proxies"))
        let (third, _) = try offer("garbage")
        #expect(third == "SIP/2.0 488 rtpengine -1", "\(third ?? "no reply")")
        #expect(starling.log.contains("failed to decode bencoded reply"), "\(starling.logTail())")
        #expect(starling.isRunning)
    }

    /// With the real daemon: an INVITE whose SDP is a part of a multipart/mixed body leaves with only
    /// that part replaced by rtpengine's SDP (the other part, the boundaries and Content-Type kept,
    /// Content-Length right); with write_sdp_pv the new SDP goes to the AVP and the body stays.
    @Test func multipartBodiesAndWriteSDPVariable() throws {
        let directory = try PackagePaths.makeTemporaryDirectory("starling-rtpengine-multipart")
        let relay = try RtpengineDaemon.start(directory: directory)
        defer { relay.process.stop() }
        let callee = try UDPEndpoint()
        let client = try UDPEndpoint()
        let script = directory.appendingPathComponent("mp.lua")
        try """
        function ksr_request_route()
          local rc = KSR.rtpengine.rtpengine_offer("replace-origin replace-session-connection")
          if rc < 0 then KSR.sl.sl_send_reply(500, "rtpengine " .. rc); return end
          local written = KSR.pv.get("$avp(newsdp)")
          if written then
            local port = string.match(written, "m=audio (%d+)") or "none"
            KSR.rtpengine.rtpengine_delete0()
            KSR.sl.sl_send_reply(488, "written " .. port)
            return
          end
          KSR.setdsturi("sip:127.0.0.1:\(callee.port)")
          KSR.forward()
        end
        """.write(to: script, atomically: true, encoding: .utf8)
        let sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
        let body = "--b1\r\nContent-Type: text/plain\r\n\r\nfirst part\r\n"
            + "--b1\r\nContent-Type: application/sdp\r\n\r\n" + sdp + "\r\n--b1--\r\n"
        func invite(_ callID: String) -> String {
            "INVITE sip:b@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:\(client.port);branch=z9hG4bK\(callID)\r\n"
                + "From: <sip:a@127.0.0.1>;tag=f\(callID)\r\nTo: <sip:b@127.0.0.1>\r\nCall-ID: \(callID)\r\n"
                + "CSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Type: multipart/mixed;boundary=b1\r\n"
                + "Content-Length: \(body.utf8.count)\r\n\r\n" + body
        }
        func start(_ extra: String) throws -> ServerProcess {
            let port = try Ports.freeUDPPort()
            let config = try Self.config(directory, sock: "udp:127.0.0.1:\(relay.port)", extra: extra)
            let starling = try Starling.start(script: script, port: port, workers: 1, extra: ["--config", config.path],
                                              directory: directory)
            try client.send(invite("mp-\(UUID().uuidString.prefix(8))"), to: port)
            return starling
        }

        // 1. only the SDP part is replaced
        let first = try start("")
        defer { first.stop() }
        let forwarded = try #require(callee.receive(timeout: .seconds(10)), "nothing forwarded\n\(first.logTail())")
        let split = try #require(forwarded.range(of: "\r\n\r\n"), "\(forwarded)")
        let head = forwarded[..<split.lowerBound]
        let sent = forwarded[split.upperBound...]
        #expect(head.contains("Content-Type: multipart/mixed;boundary=b1"), "\(forwarded)")
        #expect(head.contains("Content-Length: \(sent.utf8.count)\r\n") || head.hasSuffix("Content-Length: \(sent.utf8.count)"),
                "Content-Length matches the new body: \(forwarded)")
        #expect(sent.hasPrefix("--b1\r\nContent-Type: text/plain\r\n\r\nfirst part\r\n--b1\r\nContent-Type: application/sdp\r\n\r\nv=0"),
                "\(forwarded)")
        #expect(sent.hasSuffix("\r\n--b1--\r\n"), "\(forwarded)")
        let media = try #require(Self.media(String(sent)), "no SDP in \(forwarded)")
        #expect(media.ip == "127.0.0.2" && relay.media.contains(media.port), "\(forwarded)")
        first.stop()

        // 2. write_sdp_pv: the AVP gets rtpengine's SDP
        let second = try start("write_sdp_pv = \"$avp(newsdp)\"")
        defer { second.stop() }
        let reply = try #require(client.receive(timeout: .seconds(10)), "no reply\n\(second.logTail())")
        let status = reply.components(separatedBy: "\r\n").first ?? ""
        let port = Int(status.components(separatedBy: "written ").last ?? "") ?? -1
        #expect(status.hasPrefix("SIP/2.0 488 written ") && relay.media.contains(port), "\(reply)\n\(second.logTail())")
        #expect(second.isRunning)
    }

    /// The ng command Starling sends is the one Kamailio 5.6's rtpengine.so sends for the same INVITE,
    /// route and flags, byte for byte (keys, order, lists, the swapped tags of an answer). Variants:
    /// `extra` sets extra_id_pv (via-branch=extra), `readpv` read_sdp_pv (the SDP from a variable),
    /// `multipart` sends the SDP inside a multipart/mixed body (only the SDP part goes to rtpengine).
    @Test(arguments: [
        ("rtpengine_offer", "replace-origin replace-session-connection ICE=remove RTP/AVP trust-address direction=external direction=internal via-branch=1 some-unknown-word SDES-off codec-strip=PCMA TOS=184", ""),
        ("rtpengine_offer", "", ""),
        ("rtpengine_delete", "delete-delay=5", ""),
        ("block_media", "directional", ""),
        ("rtpengine_manage", "replace-origin replace-session-connection SIP-source-address via-branch=auto", ""),
        ("rtpengine_answer", "T.38-decode rtcp-mux-offer", ""),
        ("rtpengine_offer", "force-answer from-tag=xyz", ""),
        ("rtpengine_offer", "replace-origin via-branch=extra", "extra"),
        ("rtpengine_offer", "via-branch=next", ""),
        ("rtpengine_manage", "via-branch=auto-next", ""),
        ("rtpengine_offer", "replace-origin", "readpv"),
        ("rtpengine_manage", "replace-origin replace-session-connection", "multipart"),
    ])
    func ngCommandsMatchKamailio(_ function: String, _ flags: String, _ variant: String) throws {
        let directory = try PackagePaths.makeTemporaryDirectory("starling-rtpengine-ng")
        let call = flags.isEmpty ? "KSR.rtpengine.\(function)0()" : "KSR.rtpengine.\(function)(\"\(flags)\")"
        let script = directory.appendingPathComponent("ng.lua")
        let pvSDP = "v=0\\r\\no=- 7 7 IN IP4 127.0.0.9\\r\\ns=-\\r\\nc=IN IP4 127.0.0.9\\r\\nt=0 0\\r\\nm=audio 4900 RTP/AVP 8\\r\\n"
        try """
        function ksr_request_route()
          \(variant == "readpv" ? "KSR.pv.sets(\"$var(sdp)\", \"\(pvSDP)\")" : "")
          local rc = \(call)
          KSR.sl.sl_send_reply(488, "rc " .. rc)
        end
        """.write(to: script, atomically: true, encoding: .utf8)
        let sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
        let body: String
        let contentType: String
        if variant == "multipart" {
            contentType = "multipart/mixed;boundary=unique-boundary-1"
            body = "--unique-boundary-1\r\nContent-Type: text/plain\r\n\r\nhello\r\n"
                + "--unique-boundary-1\r\nContent-Type: application/sdp\r\n\r\n" + sdp + "\r\n--unique-boundary-1--\r\n"
        } else {
            contentType = "application/sdp"
            body = sdp
        }
        func invite(_ client: UDPEndpoint) -> String {
            // the same Via port on both servers (via-branch=next hashes it); rport: replies to the source
            "INVITE sip:b@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5099;rport;branch=z9hG4bKngcmp1\r\n"
                + "From: <sip:a@127.0.0.1>;tag=fromtag1\r\nTo: <sip:b@127.0.0.1>;tag=totag1\r\nCall-ID: ng-compare-1\r\n"
                + "CSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Type: \(contentType)\r\n"
                + "Content-Length: \(body.utf8.count)\r\n\r\n" + body
        }
        func commands(_ start: (Int, Int) throws -> ServerProcess) throws -> [String] {
            let peer = try GarbageNGPeer(reply: "d6:result5:error12:error-reason4:teste", pong: true)
            defer { peer.stop() }
            let port = try Ports.freeUDPPort()
            let server = try start(port, peer.port)
            defer { server.stop() }
            let client = try UDPEndpoint()
            try client.send(invite(client), to: port)
            let reply = client.receive(timeout: .seconds(10))
            #expect(reply?.hasPrefix("SIP/2.0 488 rc -1") == true, "\(reply ?? "no reply")\n\(server.logTail())")
            return peer.requests
        }
        let params: [(String, String)] = switch variant {
        case "extra": [("extra_id_pv", "$ft")]
        case "readpv": [("read_sdp_pv", "$var(sdp)")]
        default: []
        }
        let starling = try commands { port, ng in
            let config = directory.appendingPathComponent("starling.toml")
            try ("[core]\nmodules = [\"sl\", \"pv\", \"rtpengine\"]\n[modparam.rtpengine]\nrtpengine_sock = \"udp:127.0.0.1:\(ng)\"\n"
                 + params.map { "\($0.0) = \"\($0.1)\"\n" }.joined())
                .write(to: config, atomically: true, encoding: .utf8)
            return try Starling.start(script: script, port: port, workers: 1, extra: ["--config", config.path], directory: directory)
        }
        let kamailio = try commands { port, ng in
            try Kamailio.start(script: script, port: port, children: 1, modules: ["sl", "pv", "rtpengine"],
                               extra: "modparam(\"rtpengine\", \"rtpengine_sock\", \"udp:127.0.0.1:\(ng)\")\n"
                                   + params.map { "modparam(\"rtpengine\", \"\($0.0)\", \"\($0.1)\")\n" }.joined(),
                               directory: directory)
        }
        #expect(!kamailio.isEmpty)
        #expect(starling == kamailio, "Starling:\n\(starling.joined(separator: "\n"))\nKamailio:\n\(kamailio.joined(separator: "\n"))")
    }
}
