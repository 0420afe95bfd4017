import Foundation
import StarlingTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Routing that waits without blocking (issue 18), by the real binary against real peers: a Python
/// routing web service that answers in 300 ms (or never), SIPp as caller and callee, a Python OPTIONS
/// pinger measuring how fast the workers answer meanwhile, and Kamailio 5.6 on the same
/// t_suspend / async.route script.
@Suite(.serialized)
struct AsyncRoutingTests {
    /// How every script here starts its request route: keepalive OPTIONS (no user) answered,
    /// retransmissions absorbed, in-dialog requests relayed, stray ACKs dropped.
    static let routeStart = """
      if KSR.is_OPTIONS() and (KSR.pv.get("$rU") or "") == "" then
        KSR.sl.sl_send_reply(200, "Keepalive")
        return 1
      end
      if KSR.tm.t_check_trans() == 0 then return 1 end
      if KSR.siputils.has_totag() > 0 then
        if KSR.is_ACK() then KSR.forward() else KSR.tm.t_relay() end
        return 1
      end
      if KSR.is_ACK() then return 1 end
      """

    static func startService(_ directory: URL, nextHop: String, delayMs: Int, log: String = "http.log") throws
        -> (ServerProcess, Int) {
        let python = try Requirements.tool("python3", package: "python3")
        return try TestPorts.retrying { httpPort in
            let web = try ServerProcess(name: "http routing service", executable: python,
                                        arguments: ["-u", PackagePaths.tool("http_routing.py").path, String(httpPort),
                                                    nextHop, String(delayMs)],
                                        logFile: directory.appendingPathComponent(log))
            try web.waitUntilListening(tcpPort: httpPort)
            return (web, httpPort)
        }
    }

    /// Pings `port` with OPTIONS (no user: the scripts answer them at once): answered count and the
    /// slowest answer in ms.
    static func ping(_ port: Int, count: Int, intervalMs: Int) throws -> (answered: Int, maxMs: Int, line: String) {
        let python = try Requirements.tool("python3", package: "python3")
        let run = try Command.run(python, [PackagePaths.tool("sip_ping.py").path, String(port), String(count), String(intervalMs)],
                                  timeout: .seconds(60))
        let line = run.output.split(separator: "\n").last.map(String.init) ?? ""
        let f = line.split(separator: " ")
        guard f.count >= 4, f[0] == "answered", let answered = Int(f[1].split(separator: "/")[0]),
              let maxMs = Double(f[3]) else {
            throw HarnessError("sip_ping.py printed: \(run.output)")
        }
        return (answered, Int(maxMs), line)
    }

    /// The end of both http routing tests, through the proxy on `proxyPort`: users the service does not
    /// know get 404, a broken answer 503; then six requests to a service that never answers (more than
    /// the two workers) wait at once while OPTIONS are pinged: the pings (checked: all answered).
    static func unknownBrokenAndStalled(proxyPort: Int, directory: URL, starling: ServerProcess) throws
        -> (answered: Int, maxMs: Int, line: String) {
        for (user, expected) in [("unknown", "404"), ("broken", "503")] {
            let r = try SIPp.runUAC(scenario: PackagePaths.scenario("options.xml"), target: proxyPort, rate: 1, calls: 1,
                                    directory: directory, tag: user, service: user, extra: ["-set", "expected", expected],
                                    timeout: .seconds(30))
            #expect(r.successfulCalls == 1, "\(user): \(r)\nstarling log:\n\(starling.logTail())")
        }

        // Six requests to a service that never answers, more than the two workers, all waiting at once.
        let stalled = try SIPp.startUAC(scenario: PackagePaths.scenario("options.xml"), target: proxyPort,
                                        localPort: try Ports.freeUDPPort(), rate: 10, calls: 6, directory: directory,
                                        tag: "never", extra: ["-s", "never", "-set", "expected", "503"])
        defer { stalled.stop() }
        usleep(300_000)
        let pings = try ping(proxyPort, count: 10, intervalMs: 100)
        let never = stalled.wait(timeout: .seconds(30))
        #expect(never?.successfulCalls == 6, "never: \(String(describing: never))\nstarling log:\n\(starling.logTail())")
        #expect(pings.answered == 10, "\(pings.line)")
        return pings
    }

    /// The issue's scenario: a routing service answering in 300 ms, 2 workers, 20 calls/s, 200 calls.
    /// With http_async_client + t_suspend every call completes (the blocking http_client lost 40-57%
    /// of them here: each worker waited 300 ms per call). Then a service that never answers: every
    /// call gets the script's 503 once connection_timeout passes, while OPTIONS keep being answered at
    /// once (the workers are not waiting).
    @Test func httpAsyncRoutingCompletesEveryCallAndNeverBlocksTheWorkers() throws {
        let directory = try PackagePaths.makeTemporaryDirectory("starling-http-async")
        let proxyPort = try Ports.freeUDPPort()
        let uas = try SIPp.uas(directory: directory)
        defer { uas.stop() }
        let (web, httpPort) = try Self.startService(directory, nextHop: "sip:127.0.0.1:\(uas.port)", delayMs: 300)
        defer { web.stop() }

        let script = try RoutingServicesTests.example("http-routing-async.lua", replacing: "ROUTING_URL",
                                                      with: "http://127.0.0.1:\(httpPort)/route", directory: directory)
        let starling = try Starling.start(script: script, config: """
            [core]
            modules = ["sl", "maxfwd", "tm", "tmx", "siputils", "http_async_client"]

            [modparam.http_async_client]
            connection_timeout = 1500

            """, port: proxyPort, workers: 2, directory: directory)
        defer { starling.stop() }

        let start = ContinuousClock.now
        let result = try SIPp.runUAC(target: proxyPort, rate: 20, calls: 200, directory: directory, service: "+15551234",
                                     timeout: .seconds(120))
        let took = ContinuousClock.now - start
        #expect(result.successfulCalls == 200, "\(result)\nstarling log:\n\(starling.logTail())")
        #expect(result.failedCalls == 0)

        let pings = try Self.unknownBrokenAndStalled(proxyPort: proxyPort, directory: directory, starling: starling)
        // A blocked worker would hold a ping for the whole 1.5 s timeout.
        #expect(pings.maxMs < 1000, "OPTIONS waited behind the stalled requests: \(pings.line)")
        let log = (try? String(contentsOf: directory.appendingPathComponent("starling.log"), encoding: .utf8)) ?? ""
        #expect(log.contains("routing service failed for never: TIMEOUT"), "no timeout line:\n\(starling.logTail())")
        #expect(starling.isRunning)
        try? "200 calls in \(took); stalled-service pings: \(pings.line)\n"
            .write(to: directory.appendingPathComponent("measured.txt"), atomically: true, encoding: .utf8)
    }

    /// `[core] async_io`: examples/http-routing-asyncio.lua (plain, blocking-looking
    /// http_client.query) on the issue's scenario, scaled to 100 calls (the full 200 were run by
    /// hand, docs/Async.md): every call completes although each route waits 300 ms and two workers
    /// take 20 calls/s. Then a service that never answers: each request gets the script's 503 when
    /// http_client's timeout (2 s) passes, while OPTIONS keep being answered at once.
    @Test func asyncIORoutingWithPlainHTTPClientCompletesEveryCall() throws {
        let directory = try PackagePaths.makeTemporaryDirectory("starling-async-io")
        let proxyPort = try Ports.freeUDPPort()
        let uas = try SIPp.uas(directory: directory)
        defer { uas.stop() }
        let (web, httpPort) = try Self.startService(directory, nextHop: "sip:127.0.0.1:\(uas.port)", delayMs: 300)
        defer { web.stop() }

        let script = try RoutingServicesTests.example("http-routing-asyncio.lua", replacing: "ROUTING_URL",
                                                      with: "http://127.0.0.1:\(httpPort)/route", directory: directory)
        let starling = try Starling.start(script: script, config: """
            [core]
            modules = ["sl", "maxfwd", "tm", "siputils", "http_client"]
            async_io = true

            [modparam.http_client]
            connection_timeout = 2

            """, port: proxyPort, workers: 2, directory: directory)
        defer { starling.stop() }

        let start = ContinuousClock.now
        let calls = Int(ProcessInfo.processInfo.environment["STARLING_ASYNC_IO_CALLS"] ?? "") ?? 100
        let result = try SIPp.runUAC(target: proxyPort, rate: 20, calls: calls, directory: directory, service: "+15551234",
                                     timeout: .seconds(120))
        let took = ContinuousClock.now - start
        #expect(result.successfulCalls == calls, "\(result)\nstarling log:\n\(starling.logTail())")
        #expect(result.failedCalls == 0)

        let pings = try Self.unknownBrokenAndStalled(proxyPort: proxyPort, directory: directory, starling: starling)
        // A blocked worker would hold a ping for the whole 2 s timeout.
        #expect(pings.maxMs < 1500, "OPTIONS waited behind the stalled requests: \(pings.line)")
        let log = (try? String(contentsOf: directory.appendingPathComponent("starling.log"), encoding: .utf8)) ?? ""
        #expect(log.contains("routing service failed for never: -28"), "no timeout line:\n\(starling.logTail())")
        #expect(starling.isRunning)
        try? "\(calls) calls in \(took); stalled-service pings: \(pings.line)\n"
            .write(to: directory.appendingPathComponent("measured.txt"), atomically: true, encoding: .utf8)
    }

    /// `[core] async_io` with named http_client connections that have a `failover`: a first
    /// connection that refuses, and one whose service answers only after 10 s (the connection's 2 s
    /// timeout passes), each fail over to a backup connection that answers; every call reaches the
    /// callee. One worker: while three calls wait for the slow connection's timeout and then the
    /// backup, OPTIONS keep being answered at once (a blocking failover held the worker 2 s a call).
    @Test func asyncIOConnectionFailoverWaitsWithoutBlocking() throws {
        let directory = try PackagePaths.makeTemporaryDirectory("starling-async-io-failover")
        let proxyPort = try Ports.freeUDPPort()
        let closed = try TestPorts.next()
        let uas = try SIPp.uas(directory: directory)
        defer { uas.stop() }
        let nextHop = "sip:127.0.0.1:\(uas.port)"
        let (slow, slowPort) = try Self.startService(directory, nextHop: nextHop, delayMs: 10_000, log: "slow.log")
        defer { slow.stop() }
        let (backup, backupPort) = try Self.startService(directory, nextHop: nextHop, delayMs: 0, log: "backup.log")
        defer { backup.stop() }

        let script = directory.appendingPathComponent("failover.lua")
        try """
        function ksr_request_route()
          \(Self.routeStart)
          local con = KSR.pv.get("$rU") or ""
          -- Waits without blocking, the failover try included.
          local rc = KSR.http_client.curl_connect(con, "/route?user=+15551234", "$var(answer)")
          if rc ~= 200 then
            KSR.err("routing service failed for " .. con .. ": " .. rc .. "\\n")
            KSR.sl.sl_send_reply(503, "Routing Service Unavailable")
            return 1
          end
          KSR.setdsturi(string.match(KSR.pv.get("$var(answer)"), "^[^\\n]*"))
          KSR.tm.t_relay()
        end
        """.write(to: script, atomically: true, encoding: .utf8)
        let config = directory.appendingPathComponent("starling.toml")
        try """
        [core]
        modules = ["sl", "tm", "siputils", "http_client"]
        async_io = true

        [modparam.http_client]
        httpcon = ["refused=>http://127.0.0.1:\(closed);failover=backup", "slow=>http://127.0.0.1:\(slowPort);timeout=2;failover=backup", "backup=>http://127.0.0.1:\(backupPort)"]

        """.write(to: config, atomically: true, encoding: .utf8)
        let starling = try Starling.start(script: script, port: proxyPort, workers: 1, extra: ["--config", config.path],
                                          directory: directory)
        defer { starling.stop() }

        let refused = try SIPp.runUAC(target: proxyPort, rate: 5, calls: 5, directory: directory, tag: "refused",
                                      service: "refused", timeout: .seconds(60))
        #expect(refused.successfulCalls == 5, "\(refused)\nstarling log:\n\(starling.logTail())")

        // Three calls wait for the slow connection's timeout at once, then for the backup.
        let slowCalls = try SIPp.startUAC(target: proxyPort, localPort: try Ports.freeUDPPort(), rate: 10, calls: 3,
                                          directory: directory, tag: "slow", extra: ["-s", "slow"])
        defer { slowCalls.stop() }
        usleep(300_000)
        let pings = try Self.ping(proxyPort, count: 10, intervalMs: 100)
        let slowResult = slowCalls.wait(timeout: .seconds(60))
        #expect(slowResult?.successfulCalls == 3, "slow: \(String(describing: slowResult))\nstarling log:\n\(starling.logTail())")
        #expect(pings.answered == 10, "\(pings.line)")
        // One worker: a blocking failover would hold each ping behind a 2 s timeout.
        #expect(pings.maxMs < 1500, "OPTIONS waited behind the calls failing over: \(pings.line)")

        let log = (try? String(contentsOf: directory.appendingPathComponent("starling.log"), encoding: .utf8)) ?? ""
        #expect(log.contains("connection refused failed, trying failover connection backup"), "\(starling.logTail())")
        #expect(log.contains("connection slow failed, trying failover connection backup"), "\(starling.logTail())")
        #expect(!log.contains("routing service failed"), "\(starling.logTail())")
        let asked = (try? String(contentsOf: directory.appendingPathComponent("backup.log"), encoding: .utf8)) ?? ""
        // Counted by path: the service's threads print "GET" and the path in two writes, which two
        // requests at once can interleave ("GETGET /route... /route...").
        #expect(asked.components(separatedBy: "/route?user=+15551234").count - 1 >= 8, "backup service log:\n\(asked)")
        #expect(starling.isRunning)
    }

    /// Suspended replies (issue 18): the same script on Starling and on Kamailio 5.6. The onreply
    /// route suspends the callee's 200 OK with `KSR.async.route("resumed", 1)` (Kamailio's
    /// async_sleep suspends the reply when called from a tm onreply route); the 200's
    /// retransmissions meanwhile see `t_is_retr_async_reply()` = 1 and are dropped; after the sleep
    /// the callback runs as an onreply route and the 200 goes to the caller: every call completes on
    /// both servers, each answer held (on Starling ≥ 1 s; Kamailio's async ring ticks whole seconds).
    @Test func suspendedRepliesBehaveAsOnKamailio() throws {
        let directory = try PackagePaths.makeTemporaryDirectory("starling-reply-suspend")
        let uas = try SIPp.uas(directory: directory)
        defer { uas.stop() }
        let script = directory.appendingPathComponent("reply-suspend.lua")
        try """
        function ksr_request_route()
          \(Self.routeStart)
          KSR.tm.t_on_reply("hold_answer")
          KSR.setdsturi("sip:127.0.0.1:\(uas.port)")
          KSR.tm.t_relay()
        end
        function hold_answer()
          if KSR.tm.t_is_retr_async_reply() > 0 then
            KSR.x.drop()
            return 1
          end
          if KSR.pv.get("$rs") == 200 then
            KSR.async.route("resumed", 1)
          end
        end
        function resumed(ev)
          -- KSR.err: the Kamailio harness logs errors only (debug=-1)
          KSR.err("answer resumed (" .. tostring(ev) .. ") " .. KSR.pv.get("$rs") .. "\\n")
        end
        """.write(to: script, atomically: true, encoding: .utf8)

        /// SIPp's cumulated mean INVITE→200 time (ResponseTimeinvite(C), "hh:mm:ss:uuuuuu"), in seconds.
        func responseTime(_ r: SIPpResult) -> Double {
            let f = (r.statistics["ResponseTimeinvite(C)"] ?? "").split(separator: ":").compactMap { Double($0) }
            guard f.count == 4 else { return -1 }
            return f[0] * 3600 + f[1] * 60 + f[2] + f[3] / 1_000_000
        }
        func exercise(_ port: Int, _ name: String, log: URL, minimumHold: Double) throws {
            let calls = try SIPp.runUAC(target: port, rate: 5, calls: 5, directory: directory, tag: "\(name)-calls",
                                        service: "+15551234", timeout: .seconds(60))
            #expect(calls.successfulCalls == 5, "\(name): \(calls)")
            #expect(responseTime(calls) >= minimumHold,
                    "\(name): the 200 was not held: \(calls.statistics["ResponseTimeinvite(C)"] ?? "?")")
            let text = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
            #expect(text.components(separatedBy: "answer resumed (nil) 200").count - 1 == 5,
                    "\(name) log:\n\(text.suffix(3000))")
        }

        let starlingPort = try Ports.freeUDPPort()
        let config = directory.appendingPathComponent("starling.toml")
        try """
        [core]
        modules = ["sl", "tm", "tmx", "siputils", "async"]

        """.write(to: config, atomically: true, encoding: .utf8)
        let starling = try Starling.start(script: script, port: starlingPort, workers: 2, extra: ["--config", config.path],
                                          directory: directory)
        defer { starling.stop() }
        // Starling sleeps the full second; Kamailio's async ring works in whole-second ticks (measured
        // 0.46-1.25 s mean), so only the count of held answers is compared there.
        try exercise(starlingPort, "starling", log: directory.appendingPathComponent("starling.log"), minimumHold: 0.9)
        #expect(starling.isRunning)

        let kamailioPort = try Ports.freeUDPPort()
        let kamailio = try Kamailio.start(script: script, port: kamailioPort, children: 2,
                                          modules: ["tm", "sl", "pv", "tmx", "siputils", "async"],
                                          extra: "async_workers=1", directory: directory)
        defer { kamailio.stop() }
        try exercise(kamailioPort, "kamailio", log: directory.appendingPathComponent("kamailio.log"), minimumHold: 0)
    }

    /// The same t_suspend / async.route / task_route script on Starling and on Kamailio 5.6: calls
    /// continued after a 1 s sleep reach the callee; a request suspended and never continued gets the
    /// failure route's 503 when fr_timer runs out.
    @Test func asyncRouteScriptBehavesAsOnKamailio() throws {
        let directory = try PackagePaths.makeTemporaryDirectory("starling-async-kamailio")
        let uas = try SIPp.uas(directory: directory)
        defer { uas.stop() }
        let script = directory.appendingPathComponent("async.lua")
        try """
        function ksr_request_route()
          \(Self.routeStart)
          KSR.tm.t_on_failure("expired")
          local user = KSR.pv.get("$rU") or ""
          if user == "forever" then
            KSR.tmx.t_suspend()
          elseif user == "task" then
            KSR.async.task_route("resume")
          else
            KSR.async.route("resume", 1)
          end
        end
        function resume()
          KSR.setdsturi("sip:127.0.0.1:\(uas.port)")
          KSR.tm.t_relay()
        end
        function expired()
          if KSR.tm.t_branch_timeout() > 0 then KSR.tm.t_reply(503, "Expired") end
        end
        """.write(to: script, atomically: true, encoding: .utf8)

        func exercise(_ port: Int, _ name: String) throws {
            let start = ContinuousClock.now
            let calls = try SIPp.runUAC(target: port, rate: 10, calls: 20, directory: directory, tag: "\(name)-calls",
                                        service: "+15551234", timeout: .seconds(60))
            #expect(calls.successfulCalls == 20, "\(name): \(calls)")
            #expect(ContinuousClock.now - start >= .seconds(2), "\(name): the calls did not wait the 1 s sleep")
            let tasks = try SIPp.runUAC(target: port, rate: 10, calls: 5, directory: directory, tag: "\(name)-tasks",
                                        service: "task", timeout: .seconds(60))
            #expect(tasks.successfulCalls == 5, "\(name): \(tasks)")
            let forever = try SIPp.runUAC(scenario: PackagePaths.scenario("options.xml"), target: port, rate: 1, calls: 1,
                                          directory: directory, tag: "\(name)-forever", service: "forever",
                                          extra: ["-set", "expected", "503"], timeout: .seconds(30))
            #expect(forever.successfulCalls == 1, "\(name): \(forever)")
        }

        let starlingPort = try Ports.freeUDPPort()
        let starling = try Starling.start(script: script, config: """
            [core]
            modules = ["sl", "tm", "tmx", "siputils", "async"]

            [modparam.tm]
            fr_timer = 2000

            """, port: starlingPort, workers: 2, directory: directory)
        defer { starling.stop() }
        try exercise(starlingPort, "starling")
        #expect(starling.isRunning)

        let kamailioPort = try Ports.freeUDPPort()
        let kamailio = try Kamailio.start(script: script, port: kamailioPort, children: 2,
                                          modules: ["tm", "sl", "pv", "tmx", "siputils", "async"],
                                          extra: "modparam(\"tm\", \"fr_timer\", 2000)\nasync_workers=1", directory: directory)
        defer { kamailio.stop() }
        try exercise(kamailioPort, "kamailio")
    }
}
