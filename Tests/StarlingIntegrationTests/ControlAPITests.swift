import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The real `starling` binary with `[control]` configured, driven by `starling ctl` (issue 9): calls,
/// a forced reload whose new hash shows in /metrics, errors and exit statuses, the bearer token, and
/// JSON log lines carrying the Call-ID.
@Suite(.serialized)
struct ControlAPITests {
    static func route(_ reason: String) -> String {
        """
        function ksr_request_route()
            KSR.info("routing " .. KSR.pv.get("$rm") .. "\\n")
            KSR.sl.sl_send_reply(200, "\(reason)")
        end
        """
    }

    /// GET http://127.0.0.1:port/metrics with python3 (no HTTP client in this test target).
    static func metrics(port: Int, token: String) throws -> String {
        let python = try Requirements.tool("python3", package: "python3")
        let code = """
            import urllib.request
            r = urllib.request.Request("http://127.0.0.1:\(port)/metrics", headers={"Authorization": "Bearer \(token)"})
            print(urllib.request.urlopen(r, timeout=10).read().decode())
            """
        let r = try Command.run(python, ["-c", code], timeout: .seconds(20))
        guard r.status == 0 else { throw HarnessError("GET /metrics failed (\(r.status)): \(r.output)") }
        return r.output
    }

    @Test func ctlDrivesARunningStarling() throws {
        let directory = try PackagePaths.makeTemporaryDirectory("starling-ctl")
        let binary = try PackagePaths.starlingBinary().path
        let sipPort = try Ports.freeUDPPort()
        let controlPort = try Ports.freeTCPPort()
        let script = directory.appendingPathComponent("route.lua")
        try Self.route("one").write(to: script, atomically: true, encoding: .utf8)
        let config = directory.appendingPathComponent("starling.toml")
        try """
            [core]
            log_format = "json"
            [control]
            listen = "127.0.0.1:\(controlPort)"
            token = "t0ken"
            """.write(to: config, atomically: true, encoding: .utf8)
        let starling = try Starling.start(script: script, port: sipPort, workers: 1, extra: ["--config", config.path],
                                          directory: directory)
        defer { starling.stop() }
        let url = "http://127.0.0.1:\(controlPort)"
        func ctl(_ args: String...) throws -> CommandResult {
            try Command.run(binary, ["ctl", "--url", url, "--token", "t0ken"] + args, timeout: .seconds(20))
        }
        // The control listener starts right after the SIP workers.
        try starling.waitUntilListening(tcpPort: controlPort)
        var version = try ctl("core.version")
        for _ in 0..<50 where version.status == 2 {
            usleep(100_000)
            version = try ctl("core.version")
        }
        #expect(version.status == 0, "\(version.output)\n\(starling.logTail())")
        #expect(version.output.hasPrefix("starling "), "\(version.output)")

        // Without the token: HTTP 401, exit 2.
        let noToken = try Command.run(binary, ["ctl", "--url", url, "core.version"], timeout: .seconds(20))
        #expect(noToken.status == 2, "\(noToken.output)")
        #expect(noToken.output.contains("401"), "\(noToken.output)")

        let info = try ctl("core.info")
        #expect(info.status == 0 && info.output.contains("\"udp:127.0.0.1:\(sipPort)\""), "\(info.output)")

        // Errors: exit 1 with the message.
        let ul = try ctl("ul.lookup", "location", "nobody")
        #expect(ul.status == 1 && ul.output.contains("AOR not found"), "\(ul.output)")
        let tm = try ctl("tm.stats")
        #expect(tm.status == 0 && tm.output.contains("current"), "\(tm.output)")
        let unknown = try ctl("no.such")
        #expect(unknown.status == 1 && unknown.output.contains("Method not found"), "\(unknown.output)")

        // A routed OPTIONS is counted, and its log line carries the Call-ID.
        #expect(try SIPProbe.optionsStatusLine(serverPort: sipPort) == "SIP/2.0 200 one")
        let stats = try ctl("stats.get_statistics", "core:rcv_requests_options")
        #expect(stats.status == 0 && stats.output.contains("core:rcv_requests_options = 1"), "\(stats.output)")
        let routed = starling.log.split(separator: "\n").first { $0.contains("routing OPTIONS") }
        #expect(routed?.hasPrefix("{\"ts\":") == true, "\(starling.logTail())")
        #expect(routed?.contains("\"call_id\":\"") == true, "\(starling.logTail())")

        // A forced reload: the new hash is in /metrics.
        let before = try Self.metrics(port: controlPort, token: "t0ken")
        #expect(before.contains("starling_script_info{version=\""), "\(before)")
        try Self.route("two").write(to: script, atomically: false, encoding: .utf8)
        let reload = try ctl("app_lua.reload")
        #expect(reload.status == 0, "\(reload.output)")
        let list = try ctl("app_lua.list")
        let hash = list.output.split(separator: "\"").drop { $0 != "version" }.dropFirst(2).first.map(String.init)
        #expect(hash != nil, "\(list.output)")
        if let hash {
            #expect(try Self.metrics(port: controlPort, token: "t0ken").contains("starling_script_info{version=\"\(hash)\""))
            #expect(!before.contains("version=\"\(hash)\""))
        }
        var answer: String? = nil
        for _ in 0..<20 {
            answer = try SIPProbe.optionsStatusLine(serverPort: sipPort)
            if answer == "SIP/2.0 200 two" { break }
            usleep(100_000)
        }
        #expect(answer == "SIP/2.0 200 two")
        #expect(starling.isRunning, "\(starling.logTail())")
    }
}
