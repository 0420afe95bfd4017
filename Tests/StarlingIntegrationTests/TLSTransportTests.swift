import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// TLS and WebSocket listeners end to end, with certificates made by the openssl CLI.
@Suite(.serialized)
struct TLSTransportTests {
    /// Starling with udp + tls (+ ws, wss) on consecutive ports and `[tls]` from `certs`.
    static func start(_ directory: URL, script: URL, certs: TestCertificates, tls: String, extraConfig: String = "",
                      modules: [String] = ["sl", "maxfwd", "tm"]) throws -> (ServerProcess, udp: Int, tls: Int, ws: Int, wss: Int) {
        let ports = try Ports.freeUDPPorts(4)
        let config = directory.appendingPathComponent("starling.toml")
        try """
        [core]
        modules = [\(modules.map { "\"\($0)\"" }.joined(separator: ", "))]
        \(extraConfig)
        \(modules.contains("tm") ? "[modparam.tm]\nfr_timer = 2000\nfr_inv_timer = 4000\n" : "")

        \(tls)
        """.write(to: config, atomically: true, encoding: .utf8)
        let s = try Starling.start(script: script, port: ports[0], workers: 2,
                                   extra: ["--config", config.path, "--listen", "tls:127.0.0.1:\(ports[1])",
                                           "--listen", "ws:127.0.0.1:\(ports[2])", "--listen", "wss:127.0.0.1:\(ports[3])"],
                                   directory: directory)
        try TCPTable.waitListening(ports[3], process: s)
        return (s, ports[0], ports[1], ports[2], ports[3])
    }

    static func opensslClient(_ args: [String], directory: URL) throws -> CommandResult {
        let openssl = try Requirements.tool("openssl", package: "openssl")
        // s_client reads stdin; /dev/null makes it close right after the handshake.
        let sh = try Requirements.tool("sh", package: "dash")
        let quoted = args.map { "'\($0)'" }.joined(separator: " ")
        return try Command.run(sh, ["-c", "\(openssl) s_client \(quoted) < /dev/null"], timeout: .seconds(20),
                               workingDirectory: directory)
    }

    /// A Python `ssl` client drives 500 INVITE/ACK/BYE calls over one TLS connection through Starling
    /// (t_relay) to a SIPp UAS over UDP; then SIPp over TCP through stunnel (TLS client) does 500 more.
    @Test func callsOverTLSFromPythonAndThroughStunnel() throws {
        let directory = try PackagePaths.makeTemporaryDirectory("starling-tls-calls")
        let certs = try TestCertificates.make(in: directory)
        let uas = try SIPp.uas(directory: directory)
        defer { uas.stop() }
        let script = try RouteScripts.stateful(nextHopPort: uas.port, directory: directory)
        let (starling, _, tlsPort, _, _) = try Self.start(directory, script: script, certs: certs, tls: certs.tlsSection())
        defer { starling.stop() }

        let py = try StreamClient.run("calls", proto: "tls", port: tlsPort,
                                      ["--count", "500", "--ca", certs.ca, "--server-name", "sip.test"], timeout: .seconds(120))
        #expect(py.ok && py.int("successful") == 500, "\(py)\nlog:\n\(starling.logTail())")

        // stunnel: SIPp speaks TCP to stunnel, stunnel speaks TLS to Starling (verifying its certificate).
        let stunnelBin = try Requirements.tool("stunnel4", package: "stunnel4")
        let stunnelPort = try Ports.freeUDPPort()
        let conf = directory.appendingPathComponent("stunnel.conf")
        try """
        foreground = yes
        pid =
        debug = 3
        [sip]
        client = yes
        accept = 127.0.0.1:\(stunnelPort)
        connect = 127.0.0.1:\(tlsPort)
        CAfile = \(certs.ca)
        verifyChain = yes
        checkHost = sip.test

        """.write(to: conf, atomically: true, encoding: .utf8)
        let stunnel = try ServerProcess(name: "stunnel", executable: stunnelBin, arguments: [conf.path],
                                        logFile: directory.appendingPathComponent("stunnel.log"), workingDirectory: directory)
        defer { stunnel.stop() }
        try TCPTable.waitListening(stunnelPort, process: stunnel)
        let result = try SIPp.runUAC(target: stunnelPort, rate: 100, calls: 500, directory: directory, extra: ["-t", "t1"],
                                     timeout: .seconds(90))
        #expect(result.failedCalls == 0 && result.successfulCalls == 500, "\(result)\nstarling log:\n\(starling.logTail())")
        #expect(starling.isRunning)
        let stopped = starling.stop(after: .seconds(5))
        #expect(stopped.contains("transactions=0") && stopped.contains("parse_errors=0"), "shutdown line: \(stopped)")
    }

    /// The handshake with `openssl s_client`: the configured certificate verifies against the CA; a
    /// client trusting another CA fails; SNI picks the `other.test` certificate; with verify_client and
    /// require_client_certificate, a client certificate from the CA is accepted (and seen by KSR.tls),
    /// one from another CA or none is refused.
    @Test func handshakeVerificationAndSNI() throws {
        let directory = try PackagePaths.makeTemporaryDirectory("starling-tls-verify")
        let certs = try TestCertificates.make(in: directory)
        let script = directory.appendingPathComponent("tls.lua")
        try """
        function ksr_request_route()
          if KSR.is_OPTIONS() then
            if KSR.tls.is_peer_verified() > 0 then
              KSR.hdr.append_to_reply("X-Peer: " .. KSR.pv.get("$tls_peer_subject_cn") .. "\\r\\n")
              KSR.sl.sl_send_reply(200, "Verified")
            else
              KSR.sl.sl_send_reply(403, "Not verified")
            end
            return
          end
          KSR.sl.sl_send_reply(200, "OK")
        end
        """.write(to: script, atomically: true, encoding: .utf8)
        let (starling, _, tlsPort, _, _) = try Self.start(directory, script: script, certs: certs,
                                                         tls: certs.tlsSection(verifyClient: true, require: true, sni: true),
                                                         modules: ["sl", "tls", "hdr", "pv"])
        defer { starling.stop() }
        let addr = "127.0.0.1:\(tlsPort)"

        let good = try Self.opensslClient(["-connect", addr, "-CAfile", certs.ca, "-verify_return_error", "-servername", "sip.test",
                                           "-cert", certs.clientCert, "-key", certs.clientKey], directory: directory)
        #expect(good.status == 0 && good.output.contains("Verify return code: 0 (ok)"), "\(good.output)")
        #expect(good.output.contains("CN = sip.test") || good.output.contains("CN=sip.test"), "\(good.output)")
        let wrongTrust = try Self.opensslClient(["-connect", addr, "-CAfile", certs.wrongCA, "-verify_return_error",
                                                 "-cert", certs.clientCert, "-key", certs.clientKey], directory: directory)
        #expect(wrongTrust.status != 0, "a client trusting another CA must fail: \(wrongTrust.output)")
        let sni = try Self.opensslClient(["-connect", addr, "-CAfile", certs.ca, "-servername", "other.test",
                                          "-cert", certs.clientCert, "-key", certs.clientKey], directory: directory)
        #expect(sni.output.contains("CN = other.test") || sni.output.contains("CN=other.test"), "\(sni.output)")

        // Requests: a verified client's CN reaches the script.
        let ok = try StreamClient.run("options", proto: "tls", port: tlsPort,
                                      ["--count", "4", "--ca", certs.ca, "--cert", certs.clientCert, "--key", certs.clientKey])
        #expect(ok.ok, "\(ok)\nlog:\n\(starling.logTail())")
        let wrong = try StreamClient.run("options", proto: "tls", port: tlsPort,
                                         ["--count", "1", "--ca", certs.ca, "--cert", certs.wrongClientCert, "--key", certs.wrongClientKey])
        #expect(!wrong.ok, "a client certificate from another CA must be refused: \(wrong)")
        let none = try StreamClient.run("options", proto: "tls", port: tlsPort, ["--count", "1", "--ca", certs.ca])
        #expect(!none.ok, "a client without a certificate must be refused: \(none)")
        #expect(starling.isRunning)
    }

    /// Record-Route across transports: an INVITE arriving over TLS and relayed over UDP gets two
    /// Record-Routes (the UDP side on top, then the TLS side with transport=tls); the client's ACK and
    /// BYE carry that route set and `loose_route` takes both entries off and relays them to the UAS.
    @Test func doubleRecordRouteFromTLSToUDP() throws {
        let directory = try PackagePaths.makeTemporaryDirectory("starling-tls-rr")
        let certs = try TestCertificates.make(in: directory)
        let uas = try SIPp.uas(directory: directory)
        defer { uas.stop() }
        let script = directory.appendingPathComponent("rr.lua")
        try """
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
          KSR.setdsturi("sip:127.0.0.1:\(uas.port)")
          if KSR.tm.t_relay() < 0 then KSR.sl.sl_reply_error() end
        end
        """.write(to: script, atomically: true, encoding: .utf8)
        let (starling, udpPort, tlsPort, _, _) = try Self.start(
            directory, script: script, certs: certs, tls: certs.tlsSection() + "\n[modparam.rr]\nenable_full_lr = 1\nappend_fromtag = 0\n",
            modules: ["sl", "maxfwd", "tm", "rr", "siputils"])
        defer { starling.stop() }
        let r = try StreamClient.run("calls", proto: "tls", port: tlsPort, ["--count", "50", "--follow-rr", "--ca", certs.ca])
        #expect(r.ok && r.int("successful") == 50, "\(r)\nlog:\n\(starling.logTail())")
        let rr = r.json["record_route"] as? [String] ?? []
        #expect(rr == ["<sip:127.0.0.1:\(udpPort);r2=on;lr=on>", "<sip:127.0.0.1:\(tlsPort);transport=tls;r2=on;lr=on>"], "\(rr)")
    }

    /// Keepalive bursts on TLS (CRLFCRLF every 10 ms) mixed with requests: all answered, all ponged.
    @Test func keepaliveBurstsOnTLS() throws {
        let directory = try PackagePaths.makeTemporaryDirectory("starling-tls-keepalive")
        let certs = try TestCertificates.make(in: directory)
        let script = directory.appendingPathComponent("answer.lua")
        try StreamTransportTests.answerScript.write(to: script, atomically: true, encoding: .utf8)
        let (starling, _, tlsPort, _, _) = try Self.start(directory, script: script, certs: certs, tls: certs.tlsSection())
        defer { starling.stop() }
        let ka = try StreamClient.run("keepalive", proto: "tls", port: tlsPort, ["--count", "500", "--ca", certs.ca])
        #expect(ka.ok && ka.int("pongs") == 500 && ka.int("answered") == 100, "\(ka)")
        let garbage = try StreamClient.run("garbage", proto: "tls", port: tlsPort, ["--ca", certs.ca])
        #expect(garbage.ok, "\(garbage)")
        starling.stop()
        #expect(starling.shutdownLine.contains("parse_errors=0"), "\(starling.shutdownLine)")
        #expect(!starling.log.lowercased().contains("malformed"))
    }

    /// A WebSocket client registers over ws and over wss, then receives a call: a UDP caller's INVITE
    /// for the client's address (`;transport=ws`/`wss`) goes out over the client's own connection.
    @Test func webSocketClientsRegisterAndReceiveCalls() throws {
        let directory = try PackagePaths.makeTemporaryDirectory("starling-ws")
        let certs = try TestCertificates.make(in: directory)
        let script = directory.appendingPathComponent("ws.lua")
        try """
        function ksr_request_route()
          if KSR.is_REGISTER() or KSR.is_OPTIONS() then
            KSR.sl.sl_send_reply(200, "OK")
            KSR.x.exit()
          end
          if KSR.is_ACK() then KSR.forward() KSR.x.exit() end
          if KSR.tm.t_relay() < 0 then KSR.sl.sl_reply_error() end
        end
        """.write(to: script, atomically: true, encoding: .utf8)
        let (starling, udpPort, _, wsPort, wssPort) = try Self.start(directory, script: script, certs: certs, tls: certs.tlsSection())
        defer { starling.stop() }
        let ws = try StreamClient.run("ws-call", proto: "ws", port: wsPort, ["--udp-port", String(udpPort)])
        #expect(ws.ok, "\(ws)\nlog:\n\(starling.logTail())")
        let wss = try StreamClient.run("ws-call", proto: "wss", port: wssPort, ["--udp-port", String(udpPort), "--ca", certs.ca])
        #expect(wss.ok, "\(wss)\nlog:\n\(starling.logTail())")
        let opts = try StreamClient.run("options", proto: "ws", port: wsPort, ["--count", "50"])
        #expect(opts.ok, "\(opts)")
    }
}
