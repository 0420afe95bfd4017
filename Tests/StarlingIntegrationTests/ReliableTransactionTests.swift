import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// tm over TCP with real peers: the branch to a TCP callee uses RFC 3261's reliable client machine.
@Suite(.serialized)
struct ReliableTransactionTests {
    /// The INVITE request lines a SIPp `-trace_msg` file holds (one per INVITE received).
    static func invitesReceived(_ messageFile: URL) -> Int {
        let text = (try? String(contentsOf: messageFile, encoding: .utf8)) ?? ""
        return text.split(separator: "\n").filter { $0.hasPrefix("INVITE sip:") }.count
    }

    /// SIPp UAC (UDP) -> Starling (`t_relay()` to `;transport=tcp`) -> SIPp UAS over TCP that rings only
    /// after 1.5 s and sends no 100 Trying. Over TCP the INVITE must not be resent on Timer A (a
    /// duplicate aborts the UAS's call): 10 calls complete and the UAS sees exactly 10 INVITEs. The same
    /// script and peers run through Kamailio 5.6 as the reference.
    @Test(arguments: ["starling", "kamailio"], ["udp", "tcp"])
    func slowTCPCalleeGetsOneINVITE(server: String, uacTransport: String) throws {
        let directory = try PackagePaths.makeTemporaryDirectory("starling-tm-tcp-slow")
        let ports = try Ports.freeUDPPorts(3)
        let (proxyPort, uasPort, uacPort) = (ports[0], ports[1], ports[2])
        let script = directory.appendingPathComponent("relay.lua")
        try """
        function ksr_request_route()
          if KSR.is_CANCEL() then
            if KSR.tm.t_check_trans() > 0 then KSR.tm.t_relay() end
            KSR.x.exit()
          end
          if KSR.tm.t_check_trans() == 0 then KSR.x.exit() end
          KSR.setdsturi("sip:127.0.0.1:\(uasPort);transport=tcp")
          if KSR.is_ACK() then KSR.forward() KSR.x.exit() end
          if KSR.tm.t_relay() < 0 then KSR.sl.sl_reply_error() end
        end
        """.write(to: script, atomically: true, encoding: .utf8)
        let config = directory.appendingPathComponent("starling.toml")
        try "[core]\nmodules = [\"sl\", \"tm\"]\n[modparam.tm]\nfr_timer = 4000\nfr_inv_timer = 8000\n"
            .write(to: config, atomically: true, encoding: .utf8)
        let messages = directory.appendingPathComponent("uas_messages.log")
        let uas = try SIPp.uas(scenario: PackagePaths.scenario("uas_slow_ring.xml"), port: uasPort, directory: directory,
                               tag: "uas", tcp: true, traceMessages: true)
        defer { _ = uas.stop() }
        let proxy: ServerProcess
        if server == "kamailio" {
            // One process/worker on both servers: see StreamTransportTests.outboundTCPIsOpenedOnDemandAndReused
            // (an ACK and BYE routed by two workers may reach the TCP UAS in one read, which SIPp aborts on).
            proxy = try Kamailio.start(script: script, port: proxyPort, children: 1, modules: ["sl", "tm", "pv"],
                                       extra: "listen=tcp:127.0.0.1:\(proxyPort)\nmodparam(\"tm\", \"fr_timer\", 4000)\n"
                                           + "modparam(\"tm\", \"fr_inv_timer\", 8000)",
                                       directory: directory)
        } else {
            proxy = try Starling.start(script: script, port: proxyPort, workers: 1,
                                       extra: ["--config", config.path, "--listen", "tcp:127.0.0.1:\(proxyPort)"],
                                       directory: directory)
        }
        defer { proxy.stop() }
        let result = try SIPp.runUAC(target: proxyPort, localPort: uacPort, rate: 5, calls: 10, directory: directory,
                                        extra: uacTransport == "tcp" ? ["-t", "t1"] : [], timeout: .seconds(60))
        #expect(result.failedCalls == 0 && result.successfulCalls == 10, "\(server): \(result)\nlog:\n\(proxy.logTail())")
        #expect(proxy.isRunning, "\(server) died; log:\n\(proxy.logTail())")
        _ = uas.stop()
        let invites = Self.invitesReceived(messages)
        let aborted = ((try? String(contentsOf: directory.appendingPathComponent("uas_errors.log"), encoding: .utf8)) ?? "")
        #expect(invites == 10, "\(server): the UAS saw \(invites) INVITEs for 10 calls\nUAS errors:\n\(aborted.prefix(2000))")
    }
}
