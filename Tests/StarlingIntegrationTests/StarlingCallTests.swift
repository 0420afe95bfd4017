import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The real `starling` binary end to end (issue 3, "Tests that must exist"): SIPp calls through
/// it, the same calls while its script is rewritten, the RFC 4475 corpus inside a network
/// namespace, and `starling check` / bad configuration exit statuses. Each test starts its own
/// processes on free loopback ports (or fixed ports inside its own namespace) and stops them.
/// Missing sipp, python3, ip or root makes a test FAIL with a message naming it (never skip).
/// Build first: `swift build --build-tests` (the tests run `.build/debug/starling`).
@Suite(.serialized)
struct StarlingCallTests {
    /// 1000 INVITE/180/200/ACK/BYE/200 calls at 100 calls/s: SIPp UAC -> Starling (2 workers,
    /// bench/stateless.lua forwarding to the UAS) -> SIPp UAS. No call may fail.
    @Test func statelessCallsThroughStarling() throws {
        let directory = try PackagePaths.makeTemporaryDirectory("starling-calls")
        let proxyPort = try Ports.freeUDPPort()
        let uas = try SIPp.uas(directory: directory)
        defer { uas.stop() }
        let script = try RouteScripts.stateless(nextHopPort: uas.port, directory: directory)
        let starling = try Starling.start(script: script, port: proxyPort, workers: 2, directory: directory)
        defer { starling.stop() }

        let result = try SIPp.runUAC(target: proxyPort, rate: 100, calls: 1000, directory: directory,
                                     timeout: .seconds(90))
        #expect(result.exitStatus == 0, "\(result)\nstarling log:\n\(starling.logTail())")
        #expect(result.failedCalls == 0, "\(result)")
        #expect(result.successfulCalls == 1000, "\(result)")
        #expect(starling.isRunning, "starling died (status \(String(describing: starling.terminationStatus))); log:\n\(starling.logTail())")
    }

    /// The same 1000 calls while the script is rewritten 5 times, about every 1.5 s, alternating
    /// write-in-place and rename-over; the third rewrite has a Lua syntax error. Each good
    /// version forwards like bench/stateless.lua, adds `X-Route-Version: N` and answers OPTIONS
    /// to Starling itself with reason "version N". Checked: no failed call, after each rewrite
    /// the answering version (the previous one after the bad rewrite), the refusal with
    /// file:line in the log, and afterwards the last good version both answering and forwarding.
    @Test func callsWhileTheScriptIsRewritten() throws {
        let directory = try PackagePaths.makeTemporaryDirectory("starling-reload")
        let ports = try Ports.freeUDPPorts(2)
        let (proxyPort, uacPort) = (ports[0], ports[1])
        let uas = try SIPp.uas(directory: directory)
        defer { uas.stop() }
        let uasPort = uas.port
        let script = directory.appendingPathComponent("route.lua")
        try VersionedRoute.source(version: 1, nextHopPort: uasPort).write(to: script, atomically: true, encoding: .utf8)

        let starling = try Starling.start(script: script, port: proxyPort, workers: 2, directory: directory)
        defer { starling.stop() }
        #expect(try SIPProbe.optionsStatusLine(serverPort: proxyPort) == "SIP/2.0 200 version 1")

        let client = try SIPp.startUAC(target: proxyPort, localPort: uacPort, rate: 100, calls: 1000, directory: directory)
        defer { client.stop() }
        let clock = ContinuousClock()
        let start = clock.now

        // Rewrites 1...5 write versions 2...6; version 4 does not compile.
        let badVersion = 4
        var lastGood = 1
        for (index, version) in (2...6).enumerated() {
            let due = start + .milliseconds(1500 * (index + 1))
            if clock.now < due { sleep(until: due) }
            let text = version == badVersion
                ? VersionedRoute.syntaxError(version: version, nextHopPort: uasPort)
                : VersionedRoute.source(version: version, nextHopPort: uasPort)
            // Odd rewrites: an editor's save (temp file renamed over); even: write in place.
            try text.write(to: script, atomically: index % 2 == 0, encoding: .utf8)
            if version == badVersion {
                try waitForLog(starling, containing: "reload failed", timeout: .seconds(20))
            } else {
                lastGood = version
            }
            // The workers switch between messages: poll until the expected version answers.
            let expected = "SIP/2.0 200 version \(lastGood)"
            var seen: [String] = []
            let deadline = clock.now + .seconds(5)
            while clock.now < deadline {
                let line = try SIPProbe.optionsStatusLine(serverPort: proxyPort, timeout: .milliseconds(500)) ?? "no reply"
                seen.append(line)
                if line == expected { break }
                usleep(50_000)
            }
            #expect(seen.last == expected,
                    "after rewrite \(index + 1) (version \(version)): answers \(Set(seen)), wanted \(expected)\nstarling log:\n\(starling.logTail())")
            // Right after the bad rewrite the refused version must never answer.
            #expect(!seen.contains("SIP/2.0 200 version \(badVersion)"))
        }
        let rewritesDone = clock.now - start

        guard let result = client.wait(timeout: .seconds(75)) else {
            Issue.record("the SIPp UAC did not finish within 75 s; starling log:\n\(starling.logTail())")
            return
        }
        #expect(rewritesDone < .seconds(10), "the rewrites took \(rewritesDone), longer than the 10 s call run")
        #expect(result.exitStatus == 0, "\(result)\nstarling log:\n\(starling.logTail(60))")
        #expect(result.failedCalls == 0, "\(result)")
        #expect(result.successfulCalls == 1000, "\(result)")
        #expect(starling.isRunning, "starling died; log:\n\(starling.logTail())")

        // The log: the syntax error refused with file:line, every good version published.
        let log = starling.log
        let refusals = log.split(separator: "\n").filter { $0.contains("reload failed") }
        #expect(!refusals.isEmpty, "no refused reload in the log:\n\(log)")
        let badLine = VersionedRoute.syntaxErrorLine
        #expect(refusals.allSatisfy { $0.contains("route.lua:\(badLine):") },
                "the refusal does not name route.lua:\(badLine):\n\(refusals.joined(separator: "\n"))")
        let published = log.split(separator: "\n").filter { $0.contains("published (was") }
        #expect(published.count == 4, "expected 4 published versions (2, 3, 5, 6):\n\(log)")
        #expect(log.contains("active in all 2 workers"), "\(log)")

        // Afterwards: the last good version (6) answers OPTIONS to Starling and, with the UAS
        // replaced by a socket of the test, forwards with its header.
        #expect(try SIPProbe.optionsStatusLine(serverPort: proxyPort) == "SIP/2.0 200 version \(lastGood)")
        uas.stop()
        let sink = try UDPEndpoint(port: uasPort)
        let sender = try UDPEndpoint()
        try sender.send(SIPProbe.options(requestURI: "sip:somebody@127.0.0.1:\(uasPort)", from: sender), to: proxyPort)
        let forwarded = sink.receive(timeout: .seconds(2))
        #expect(forwarded.map { SIPProbe.header("X-Route-Version", in: $0) } == "\(lastGood)",
                "forwarded request: \(forwarded ?? "nothing")\nstarling log:\n\(starling.logTail())")
    }

    /// Every RFC 4475 file over UDP to Starling running routes/default.lua, inside a fresh network
    /// namespace with only loopback up: a DNS server (Tools/dns_any_a.py) answers every A query
    /// with 127.0.0.2, Starling listens on 127.0.0.1:5060 and resolves through it (config file
    /// `[core] dns_servers`), udp_torture.py sends from 127.0.0.3:5060 and sinks forwards on
    /// 127.0.0.2:5060. Each outcome must be Fixtures/default-lua-outcomes.tsv's, and Starling
    /// must stay up.
    @Test func rfc4475CorpusInsideNetworkNamespace() throws {
        let directory = try PackagePaths.makeTemporaryDirectory("starling-torture")
        let python = try Requirements.tool("python3", package: "python3")
        let table = PackagePaths.fixture("default-lua-outcomes.tsv")
        let expectedFiles = try String(contentsOf: table, encoding: .utf8).split(separator: "\n")
            .filter { !$0.hasPrefix("#") && !$0.hasPrefix("name\t") && !$0.isEmpty }.count
        try NetworkNamespace.with { namespace in
            // A fresh namespace has no other sockets: fixed ports are safe.
            let (dnsPort, starlingPort) = (5353, 5060)
            let dns = try ServerProcess(name: "dns_any_a.py", executable: python,
                                        arguments: [PackagePaths.tool("dns_any_a.py").path, "--port", String(dnsPort),
                                                    "--answer", "127.0.0.2"],
                                        logFile: directory.appendingPathComponent("dns.log"), namespace: namespace)
            defer { dns.stop() }
            try dns.waitUntilBound(udpPort: dnsPort)

            let config = directory.appendingPathComponent("starling.toml")
            try """
            # Generated by StarlingCallTests: resolve through the namespace's own DNS server.
            [core]
            dns_servers = ["127.0.0.1:\(dnsPort)"]

            """.write(to: config, atomically: true, encoding: .utf8)
            let starling = try Starling.start(script: PackagePaths.root.appendingPathComponent("routes/default.lua"),
                                              port: starlingPort, workers: 2, extra: ["--config", config.path],
                                              directory: directory, namespace: namespace)
            defer { starling.stop() }

            let report = try UDPTorture.run(server: "127.0.0.1:\(starlingPort)", source: "127.0.0.3:5060",
                                            nextHop: "127.0.0.2:5060", table: table,
                                            extraArguments: ["--timeout", "1.0"], directory: directory,
                                            namespace: namespace, timeout: .seconds(120))
            #expect(report.status == 0,
                    "\(report.output)\nstarling log:\n\(starling.logTail(60))\ndns log:\n\(dns.logTail(20))")
            #expect(report.output.contains("\(expectedFiles)/\(expectedFiles) as expected"), "\(report.output)")
            #expect(starling.isRunning,
                    "starling died (status \(String(describing: starling.terminationStatus))); log:\n\(starling.logTail(60))")
            // The forwards were resolved through the namespace's DNS server.
            #expect(dns.log.contains("A example.com -> 127.0.0.2"), "dns log:\n\(dns.logTail(20))")
            // Still serving: an OPTIONS to itself is answered (from inside the namespace).
            let probe = try namespace.run([python, "-c", """
                import socket
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(2); s.bind(("127.0.0.1", 0))
                p = s.getsockname()[1]
                s.sendto(("OPTIONS sip:127.0.0.1:\(starlingPort) SIP/2.0\\r\\nVia: SIP/2.0/UDP 127.0.0.1:%d;rport;branch=z9hG4bKalive\\r\\n"
                          "From: <sip:t@127.0.0.1>;tag=1\\r\\nTo: <sip:127.0.0.1:\(starlingPort)>\\r\\nCall-ID: alive\\r\\n"
                          "CSeq: 1 OPTIONS\\r\\nMax-Forwards: 70\\r\\nContent-Length: 0\\r\\n\\r\\n" % p).encode(), ("127.0.0.1", \(starlingPort)))
                print(s.recv(65535).split(b"\\r\\n")[0].decode())
                """], timeout: .seconds(20))
            #expect(probe.output.contains("SIP/2.0 200"), "OPTIONS after the corpus: \(probe.output)")
        }
    }

    /// `starling check` on a script with a syntax error: file:line, exit status 1. `starling run`
    /// with `[core] workers = "abc"`: exit status 2 naming the key, nothing started.
    @Test func checkAndConfigurationErrors() throws {
        let directory = try PackagePaths.makeTemporaryDirectory("starling-check")
        let binary = try PackagePaths.starlingBinary().path
        let bad = directory.appendingPathComponent("broken.lua")
        try "-- line 1\nfunction ksr_request_route()\n    if KSR.is_INVITE( then\n        return\n    end\nend\n"
            .write(to: bad, atomically: true, encoding: .utf8)
        let check = try Command.run(binary, ["check", bad.path], timeout: .seconds(20))
        #expect(check.status == 1, "starling check: status \(check.status), output:\n\(check.output)")
        #expect(check.output.contains("broken.lua:3:"), "starling check output:\n\(check.output)")

        let good = try RouteScripts.stateless(nextHopPort: 5090, directory: directory)
        let okCheck = try Command.run(binary, ["check", good.path], timeout: .seconds(20))
        #expect(okCheck.status == 0, "starling check on a good script: status \(okCheck.status):\n\(okCheck.output)")

        // --async-io: a global written in a route is a warning (with async_io routes interleave).
        let globals = directory.appendingPathComponent("globals.lua")
        try "LIMIT = 3\nfunction ksr_request_route()\n  callee = KSR.pv.get(\"$rU\")\n  local n = 1\nend\n"
            .write(to: globals, atomically: true, encoding: .utf8)
        let plain = try Command.run(binary, ["check", globals.path], timeout: .seconds(20))
        #expect(plain.status == 0 && !plain.output.contains("warning"), "without --async-io:\n\(plain.output)")
        let asyncCheck = try Command.run(binary, ["check", "--async-io", globals.path], timeout: .seconds(20))
        #expect(asyncCheck.status == 0, "starling check --async-io: status \(asyncCheck.status):\n\(asyncCheck.output)")
        #expect(asyncCheck.output.contains("globals.lua:3: warning: global 'callee' written in ksr_request_route"),
                "starling check --async-io output:\n\(asyncCheck.output)")
        #expect(!asyncCheck.output.contains("'LIMIT'"), "a top-level global is configuration:\n\(asyncCheck.output)")

        let config = directory.appendingPathComponent("bad.toml")
        try "[core]\nworkers = \"abc\"\n".write(to: config, atomically: true, encoding: .utf8)
        let port = try Ports.freeUDPPort()
        let run = try Command.run(binary, ["run", "--config", config.path, "--script", good.path,
                                           "--listen", "udp:127.0.0.1:\(port)"], timeout: .seconds(20))
        #expect(run.status == 2, "starling run with a bad config: status \(run.status), output:\n\(run.output)")
        #expect(run.output.contains("core.workers"), "the message does not name core.workers:\n\(run.output)")
        #expect(!run.output.contains("listening on") && !run.output.contains("loaded"),
                "something started despite the bad config:\n\(run.output)")
        #expect(!Ports.isUDPPortBound(port))
    }

    /// A request whose route never ends is aborted by the instruction budget, logged with the
    /// budget and the script position, and both workers keep answering afterwards.
    @Test func endlessRouteIsAbortedAndWorkersCarryOn() throws {
        let directory = try PackagePaths.makeTemporaryDirectory("starling-budget")
        let port = try Ports.freeUDPPort()
        let script = directory.appendingPathComponent("spin.lua")
        try """
        function ksr_request_route()
            if KSR.pv.get("$rU") == "spin" then
                while true do end
            end
            KSR.sl.sl_send_reply(200, "still here")
        end

        """.write(to: script, atomically: true, encoding: .utf8)
        let starling = try Starling.start(script: script, port: port, workers: 2, directory: directory)
        defer { starling.stop() }

        let endpoint = try UDPEndpoint()
        for _ in 0..<2 {  // at least one per worker is likely; each must be aborted, not answered
            try endpoint.send(SIPProbe.options(requestURI: "sip:spin@127.0.0.1:\(port)", from: endpoint), to: port)
        }
        #expect(endpoint.receive(timeout: .seconds(3)) == nil, "an endless route was answered")
        for attempt in 0..<4 {
            let line = try SIPProbe.optionsStatusLine(serverPort: port, timeout: .seconds(2))
            #expect(line == "SIP/2.0 200 still here", "attempt \(attempt): \(line ?? "no reply")\n\(starling.logTail())")
        }
        #expect(starling.isRunning, "starling died; log:\n\(starling.logTail())")
        let log = starling.log
        #expect(log.contains("spin.lua:3: instruction budget exceeded (10000000 instructions)"), "\(log)")
        #expect(!log.contains("invalid option"), "\(log)")
    }

    // MARK: - helpers

    private func sleep(until instant: ContinuousClock.Instant) {
        let left = ContinuousClock().now.duration(to: instant)
        if left > .zero {
            usleep(UInt32(left.components.seconds * 1_000_000 + left.components.attoseconds / 1_000_000_000_000))
        }
    }

    private func waitForLog(_ server: ServerProcess, containing text: String, timeout: Duration) throws {
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        while clock.now < deadline {
            if server.log.contains(text) { return }
            usleep(50_000)
        }
        throw HarnessError("\(server.name) did not log \"\(text)\" within \(timeout); log:\n\(server.logTail())")
    }
}

/// Versions of a stateless forwarder that differ visibly: version N adds `X-Route-Version: N`
/// to what it forwards and answers OPTIONS to Starling itself with `200 version N`.
enum VersionedRoute {
    static func source(version: Int, nextHopPort: Int) -> String {
        """
        -- Starling integration test: route version \(version)
        local NEXT_HOP = "sip:127.0.0.1:\(nextHopPort)"

        function ksr_request_route()
            if KSR.is_OPTIONS() and KSR.is_myself_ruri() then
                KSR.sl.sl_send_reply(200, "version \(version)")
                KSR.x.exit()
            end
            if KSR.maxfwd.process_maxfwd(10) < 0 then
                KSR.sl.sl_send_reply(483, "Too Many Hops")
                KSR.x.exit()
            end
            KSR.hdr.append("X-Route-Version: \(version)\\r\\n")
            KSR.setdsturi(NEXT_HOP)
            KSR.forward()
        end

        """
    }

    /// The line `syntaxError` breaks.
    static let syntaxErrorLine = 6

    /// `source` with a stray `)` at the end of line 6.
    static func syntaxError(version: Int, nextHopPort: Int) -> String {
        var lines = source(version: version, nextHopPort: nextHopPort).components(separatedBy: "\n")
        precondition(lines[syntaxErrorLine - 1].contains("KSR.sl.sl_send_reply(200"))
        lines[syntaxErrorLine - 1] += ")"
        return lines.joined(separator: "\n")
    }
}
