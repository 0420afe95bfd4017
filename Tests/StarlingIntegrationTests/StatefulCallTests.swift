import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// KSR.tm end to end: SIPp UAC -> Starling running bench/stateful.lua (t_relay) -> SIPp UAS.
@Suite(.serialized)
struct StatefulCallTests {
    /// 200 calls at 50 calls/s through `t_relay`, no call may fail; with the timers shortened through
    /// `[modparam.tm]`, every transaction is freed a few seconds after the run (the shutdown log
    /// reports `transactions=0`).
    @Test func statefulCallsThroughStarling() throws {
        let directory = try PackagePaths.makeTemporaryDirectory("starling-tm-calls")
        let ports = try Ports.freeUDPPorts(3)
        let (proxyPort, uasPort, uacPort) = (ports[0], ports[1], ports[2])
        let script = try RouteScripts.stateful(nextHopPort: uasPort, directory: directory)
        let config = directory.appendingPathComponent("starling.toml")
        try """
        [core]
        modules = ["sl", "maxfwd", "tm"]

        [modparam.tm]
        fr_timer = 2000
        fr_inv_timer = 4000

        """.write(to: config, atomically: true, encoding: .utf8)

        let uas = try SIPp.startUAS(port: uasPort, directory: directory)
        defer { uas.stop() }
        let starling = try Starling.start(script: script, port: proxyPort, workers: 2, extra: ["--config", config.path],
                                          directory: directory)
        defer { starling.stop() }

        let result = try SIPp.runClient(target: proxyPort, localPort: uacPort, rate: 50, calls: 200,
                                        directory: directory, timeout: .seconds(60))
        #expect(result.exitStatus == 0, "\(result)\nstarling log:\n\(starling.logTail())")
        #expect(result.failedCalls == 0, "\(result)")
        #expect(result.successfulCalls == 200, "\(result)")
        #expect(starling.isRunning, "starling died; log:\n\(starling.logTail())")

        // Timers L/M/J/D (shortened with fr_timer) run out; then every transaction must be gone.
        sleep(5)
        starling.stop()
        let stopped = starling.log.split(separator: "\n").last { $0.contains("stopped;") }.map(String.init) ?? ""
        #expect(stopped.contains("transactions=0"), "shutdown line: \(stopped)\nlog:\n\(starling.logTail())")
        #expect(stopped.contains("script_errors=0"), "shutdown line: \(stopped)")
    }

    /// Serial forking: the first UAS answers every INVITE with 486, the failure route re-routes to a
    /// second UAS that answers 200; 100 calls complete and nothing stays in the table.
    @Test func busyCalleeIsReroutedByTheFailureRoute() throws {
        let directory = try PackagePaths.makeTemporaryDirectory("starling-tm-reroute")
        let second = directory.appendingPathComponent("uas2")
        try FileManager.default.createDirectory(at: second, withIntermediateDirectories: true)
        let ports = try Ports.freeUDPPorts(4)
        let (proxyPort, busyPort, uasPort, uacPort) = (ports[0], ports[1], ports[2], ports[3])
        let script = directory.appendingPathComponent("reroute.lua")
        try """
        local FIRST = "sip:127.0.0.1:\(busyPort)"
        local SECOND = "sip:127.0.0.1:\(uasPort)"
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

        let busy = try SIPp.startUAS(scenario: PackagePaths.scenario("uas_486.xml"), port: busyPort, directory: directory)
        defer { busy.stop() }
        let uas = try SIPp.startUAS(port: uasPort, directory: second)
        defer { uas.stop() }
        let starling = try Starling.start(script: script, port: proxyPort, workers: 2, extra: ["--config", config.path],
                                          directory: directory)
        defer { starling.stop() }

        let result = try SIPp.runClient(target: proxyPort, localPort: uacPort, rate: 50, calls: 100,
                                        directory: directory, timeout: .seconds(60))
        #expect(result.exitStatus == 0, "\(result)\nstarling log:\n\(starling.logTail())")
        #expect(result.failedCalls == 0, "\(result)")
        #expect(result.successfulCalls == 100, "\(result)")
        sleep(5)
        starling.stop()
        let stopped = starling.log.split(separator: "\n").last { $0.contains("stopped;") }.map(String.init) ?? ""
        #expect(stopped.contains("transactions=0"), "shutdown line: \(stopped)\nlog:\n\(starling.logTail())")
        #expect(stopped.contains("script_errors=0"), "shutdown line: \(stopped)")
    }
}
