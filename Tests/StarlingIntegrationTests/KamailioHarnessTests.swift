import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Proves the harness (scenarios, SIPp and Kamailio helpers, network
/// namespaces) against Kamailio 5.6 running bench/stateless.lua through app_lua,
/// so the same harness can later run Starling. Needs kamailio,
/// kamailio-lua-modules and sip-tester; the namespace test needs root. Missing
/// tools make the tests fail, never skip.
@Suite(.serialized)
struct KamailioHarnessTests {
    /// 100 INVITE/BYE calls at 50 calls/s: UAC -> Kamailio (4 children) -> UAS, all on 127.0.0.1.
    @Test func statelessForwardingThroughKamailio() throws {
        let directory = try PackagePaths.makeTemporaryDirectory("kamailio-harness")
        let proxyPort = try Ports.freeUDPPort()
        let uas = try SIPp.uas(directory: directory)
        defer { uas.stop() }
        let script = try RouteScripts.stateless(nextHopPort: uas.port, directory: directory)
        let kamailio = try Kamailio.start(script: script, port: proxyPort, children: 4, directory: directory)
        defer { kamailio.stop() }

        let result = try SIPp.runUAC(target: proxyPort, rate: 50, calls: 100, directory: directory)
        #expect(result.exitStatus == 0, "\(result)\nkamailio log:\n\(kamailio.logTail())")
        #expect(result.failedCalls == 0, "\(result)")
        #expect(result.successfulCalls == 100, "\(result)")
        #expect(kamailio.isRunning, "kamailio died; log:\n\(kamailio.logTail())")
    }

    /// The same calls with Kamailio and both SIPp instances inside a fresh
    /// network namespace that has only loopback.
    @Test func statelessForwardingInsideNetworkNamespace() throws {
        let directory = try PackagePaths.makeTemporaryDirectory("kamailio-netns")
        try NetworkNamespace.with { namespace in
            // A fresh namespace has no other sockets: fixed ports are safe.
            let (proxyPort, uasPort, uacPort) = (5060, 5090, 5070)
            let script = try RouteScripts.stateless(nextHopPort: uasPort, directory: directory)

            let uas = try SIPp.uas(port: uasPort, directory: directory, namespace: namespace)
            defer { uas.stop() }
            let kamailio = try Kamailio.start(script: script, port: proxyPort, children: 2, directory: directory,
                                              namespace: namespace)
            defer { kamailio.stop() }
            // The host namespace does not see the namespace's sockets.
            #expect(!Ports.isUDPPortBound(proxyPort) || Ports.isUDPPortBound(proxyPort, pid: kamailio.pid))

            let result = try SIPp.runUAC(target: proxyPort, localPort: uacPort, rate: 50, calls: 100,
                                         directory: directory, namespace: namespace)
            #expect(result.exitStatus == 0, "\(result)\nkamailio log:\n\(kamailio.logTail())")
            #expect(result.failedCalls == 0, "\(result)")
            #expect(result.successfulCalls == 100, "\(result)")
        }
    }

    /// options.xml passes when the status matches `-set expected` and fails otherwise.
    @Test func optionsScenarioChecksTheStatus() throws {
        let directory = try PackagePaths.makeTemporaryDirectory("kamailio-options")
        let proxyPort = try Ports.freeUDPPort()
        let script = directory.appendingPathComponent("options.lua")
        try """
        function ksr_request_route()
            if KSR.is_OPTIONS() then
                KSR.sl.sl_send_reply(404, "Not Here")
            end
        end
        """.write(to: script, atomically: true, encoding: .utf8)
        let kamailio = try Kamailio.start(script: script, port: proxyPort, children: 1, directory: directory)
        defer { kamailio.stop() }

        let match = try SIPp.runUAC(scenario: PackagePaths.scenario("options.xml"), target: proxyPort, rate: 10,
                                    calls: 2, directory: directory, tag: "match", extra: ["-set", "expected", "404"])
        #expect(match.allCallsSucceeded && match.successfulCalls == 2, "\(match)")
        let mismatch = try SIPp.runUAC(scenario: PackagePaths.scenario("options.xml"), target: proxyPort, rate: 10,
                                       calls: 2, directory: directory, tag: "mismatch",
                                       extra: ["-set", "expected", "200"])
        #expect(mismatch.exitStatus == 1 && mismatch.failedCalls == 2, "\(mismatch)")
    }

    /// udp_torture.py inside a namespace against Kamailio with the stateless
    /// script, on three RFC 4475 messages whose outcome RFC 3261 fixes for a
    /// forwarding proxy (not Kamailio-derived): Max-Forwards 0 -> 483, a valid
    /// INVITE -> forwarded, a response with status 4294967301 -> dropped.
    @Test func udpTortureToolInsideNetworkNamespace() throws {
        let directory = try PackagePaths.makeTemporaryDirectory("kamailio-torture")
        let table = directory.appendingPathComponent("table.tsv")
        try "name\texpected\nzeromf.dat\t483\nesc01.dat\tforward\nbigcode.dat\tdrop\n"
            .write(to: table, atomically: true, encoding: .utf8)
        try NetworkNamespace.with { namespace in
            let (proxyPort, nextHopPort) = (5080, 5090)  // 5060 stays free for replies to the Via port
            let script = try RouteScripts.stateless(nextHopPort: nextHopPort, directory: directory)
            let kamailio = try Kamailio.start(script: script, port: proxyPort, children: 2, directory: directory,
                                              namespace: namespace)
            defer { kamailio.stop() }
            let report = try UDPTorture.run(serverPort: proxyPort, nextHopPort: nextHopPort, table: table,
                                            extraArguments: ["--only", "zeromf.dat,esc01.dat,bigcode.dat",
                                                             "--timeout", "0.5"],
                                            directory: directory, namespace: namespace)
            #expect(report.status == 0, "\(report.output)\nkamailio log:\n\(kamailio.logTail())")
            #expect(report.output.contains("3/3 as expected"), "\(report.output)")
        }
    }
}
