import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The connection layer under abuse: abandoned connections, half-sent messages, TLS handshakes that
/// never finish, a client that never reads. Other clients keep being served, idle connections are
/// closed after tcp_connection_lifetime, descriptors return to their starting count and memory settles.
@Suite(.serialized)
struct StreamRobustnessTests {
    static func fdCount(_ pid: pid_t) -> Int {
        (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").count) ?? -1
    }

    static func rssKB(_ pid: pid_t) -> Int {
        guard let s = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return -1 }
        for line in s.split(separator: "\n") where line.hasPrefix("VmRSS:") {
            return Int(line.split(separator: " ", omittingEmptySubsequences: true)[1]) ?? -1
        }
        return -1
    }

    /// core.tcp_info's integer counters.
    static func tcpInfo(_ controlPort: Int) throws -> [String: Int] {
        let info = try Command.run(try PackagePaths.starlingBinary().path,
                                   ["ctl", "--url", "http://127.0.0.1:\(controlPort)", "core.tcp_info"], timeout: .seconds(20))
        guard info.status == 0, let start = info.output.firstIndex(of: "{"),
              let object = try? JSONSerialization.jsonObject(with: Data(info.output[start...].utf8)) as? [String: Any] else {
            throw HarnessError("core.tcp_info failed: \(info.output)")
        }
        return object.compactMapValues { $0 as? Int }
    }

    @Test func abandonedHalfSentUnfinishedAndNonReadingConnections() throws {
        let directory = try PackagePaths.makeTemporaryDirectory("starling-stream-abuse")
        let certs = try TestCertificates.make(in: directory)
        let ports = try Ports.freeUDPPorts(4)
        let (udpPort, tcpPort, tlsPort, controlPort) = (ports[0], ports[1], ports[2], ports[3])
        let script = directory.appendingPathComponent("answer.lua")
        try StreamTransportTests.answerScript.write(to: script, atomically: true, encoding: .utf8)
        let config = directory.appendingPathComponent("starling.toml")
        try """
        [core]
        modules = ["sl"]
        tcp_connection_lifetime = 3

        [control]
        listen = "127.0.0.1:\(controlPort)"

        \(certs.tlsSection())
        """.write(to: config, atomically: true, encoding: .utf8)
        let starling = try Starling.start(script: script, port: udpPort, workers: 2,
                                          extra: ["--config", config.path, "--listen", "tcp:127.0.0.1:\(tcpPort)",
                                                  "--listen", "tls:127.0.0.1:\(tlsPort)"], directory: directory)
        defer { starling.stop() }
        try TCPTable.waitListening(tlsPort, process: starling)
        let pid = starling.pid

        let python = try Requirements.tool("python3", package: "python3")
        let tool = PackagePaths.tool("sip_stream_client.py").path
        func background(_ name: String, _ args: [String]) throws -> ServerProcess {
            try ServerProcess(name: name, executable: python, arguments: [tool] + args,
                              logFile: directory.appendingPathComponent("\(name).log"), workingDirectory: directory)
        }
        // 1000 TCP and 300 TLS connections opened and left open (a third half-sent, a third with half a
        // ClientHello), and a client that sends 5000 requests and never reads, all at once.
        func abuse(_ round: String, hold: Int = 8) throws -> [ServerProcess] {
            [try background("abandon-tcp-\(round)", ["abandon", "--proto", "tcp", "--port", String(tcpPort), "--count", "1000", "--hold", String(hold)]),
             try background("abandon-tls-\(round)", ["abandon", "--proto", "tls", "--port", String(tlsPort), "--count", "300", "--hold", String(hold)]),
             try background("noread-\(round)", ["noread", "--proto", "tcp", "--port", String(tcpPort), "--count", "5000", "--hold", "6"])]
        }

        // Warm up: TLS contexts, worker buffers, and three rounds of the same abuse. The first bursts
        // raise RSS to a plateau (heap arenas keep their high-water mark; TLS connections closed in
        // the middle of their handshake fragment it most: +15-25% over a fresh debug process, each
        // round adding less than the one before); the baseline is taken after them, so the check
        // below catches growth that continues: a further round must stay within 10%.
        for _ in 0..<2 {
            _ = try StreamClient.run("options", proto: "tcp", port: tcpPort, ["--count", "200"])
            _ = try StreamClient.run("options", proto: "tls", port: tlsPort, ["--count", "200", "--ca", certs.ca])
        }
        for round in ["warmup1", "warmup2", "warmup3"] {
            let warm = try abuse(round)
            for p in warm { _ = p.wait(timeout: .seconds(30)) }
            sleep(5)
        }
        let baseFDs = Self.fdCount(pid)
        let baseRSS = Self.rssKB(pid)
        let before = try Self.tcpInfo(controlPort)

        // Held 12 s after the last one opened: the 3 s lifetime, the 1 s sweep and a loaded machine's
        // slow accepts all fit in that.
        let clients = try abuse("run", hold: 12)
        defer { clients.forEach { $0.stop() } }
        // The peak is reported, not asserted: a loaded machine's Python clients can take longer than the
        // 3 s lifetime to open 1300 connections, and the sweep closes the first ones meanwhile (CI saw
        // "fds 31 -> 730"). The counters below show that every connection was accepted and swept.
        var peakFDs = Self.fdCount(pid)
        let sampling = ContinuousClock.now
        while peakFDs <= baseFDs + 1000 && ContinuousClock.now - sampling < .seconds(8) {
            usleep(20_000)
            peakFDs = max(peakFDs, Self.fdCount(pid))
        }
        // Meanwhile other clients are served on both listeners.
        let tcpOK = try StreamClient.run("options", proto: "tcp", port: tcpPort, ["--count", "100"])
        let tlsOK = try StreamClient.run("keepalive", proto: "tls", port: tlsPort, ["--count", "100", "--ca", certs.ca])
        #expect(tcpOK.ok, "\(tcpOK)\nlog:\n\(starling.logTail())")
        #expect(tlsOK.ok, "\(tlsOK)\nlog:\n\(starling.logTail())")
        for p in clients { _ = p.wait(timeout: .seconds(60)) }
        // Every abandoned connection (1000 TCP, 300 TLS) was accepted, none refused, and the server closed
        // each of them while its client still held it open (the idle sweep after 3 s; a TLS port that
        // got half a SIP message closes at once).
        let after = try Self.tcpInfo(controlPort)
        let accepted = after["accepted", default: 0] - before["accepted", default: 0]
        let refused = after["refused", default: 0] - before["refused", default: 0]
        #expect(accepted >= 1300 && refused == 0, "accepted \(accepted), refused \(refused); before \(before), after \(after)")
        for (name, count) in [("abandon-tcp-run", 1000), ("abandon-tls-run", 300)] {
            let log = (try? String(contentsOf: directory.appendingPathComponent("\(name).log"), encoding: .utf8)) ?? ""
            let line = log.split(separator: "\n").last(where: { $0.hasPrefix("{") }).map(String.init) ?? "{}"
            let json = (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any] ?? [:]
            #expect(json["opened"] as? Int == count && json["closed_by_server"] as? Int == count,
                    "\(name): \(log.suffix(500)) (fds \(baseFDs) -> peak \(peakFDs))")
        }
        sleep(7)  // the next trims (at most every 5 s) after the last connections closed
        let finalFDs = Self.fdCount(pid)
        // Freed memory goes back to the kernel on the trims after the connections left (one a second
        // for 5 s); on a loaded machine the last frees can come late, so look again for a few seconds.
        var finalRSS = Self.rssKB(pid)
        for _ in 0..<10 where Double(finalRSS) > Double(baseRSS) * 1.10 {
            sleep(1)
            finalRSS = Self.rssKB(pid)
        }
        #expect(finalFDs == baseFDs, "fds: baseline \(baseFDs), peak \(peakFDs), final \(finalFDs)")
        #expect(Double(finalRSS) <= Double(baseRSS) * 1.10, "RSS: baseline \(baseRSS) kB, final \(finalRSS) kB")
        #expect(starling.isRunning)
        // Still serving.
        let last = try StreamClient.run("options", proto: "tls", port: tlsPort, ["--count", "10", "--ca", certs.ca])
        #expect(last.ok, "\(last)")
        print("stream robustness: fds \(baseFDs) -> peak \(peakFDs) -> \(finalFDs); RSS \(baseRSS) kB -> \(finalRSS) kB")
    }

    /// Memory per idle TLS connection (handshake done, no traffic) and the handshake rate a Python
    /// client gets: 1000 connections; the RSS difference divided by 1000 must stay under Kamailio's
    /// published ~65 kB per TLS connection. Also reloads the certificates through `tls.reload`.
    @Test func idleTLSConnectionMemoryAndCertificateReload() throws {
        let directory = try PackagePaths.makeTemporaryDirectory("starling-tls-memory")
        let certs = try TestCertificates.make(in: directory)
        let ports = try Ports.freeUDPPorts(3)
        let (udpPort, tlsPort, controlPort) = (ports[0], ports[1], ports[2])
        // The server certificate is a copy, so the test can replace it and reload.
        let live = directory.appendingPathComponent("live.pem").path, liveKey = directory.appendingPathComponent("live.key").path
        try FileManager.default.copyItem(atPath: certs.serverCert, toPath: live)
        try FileManager.default.copyItem(atPath: certs.serverKey, toPath: liveKey)
        let script = directory.appendingPathComponent("answer.lua")
        try StreamTransportTests.answerScript.write(to: script, atomically: true, encoding: .utf8)
        let config = directory.appendingPathComponent("starling.toml")
        try """
        [core]
        modules = ["sl"]
        tcp_connection_lifetime = 600
        [control]
        listen = "127.0.0.1:\(controlPort)"
        [tls]
        certificate = "\(live)"
        private_key = "\(liveKey)"

        """.write(to: config, atomically: true, encoding: .utf8)
        let starling = try Starling.start(script: script, port: udpPort, workers: 2,
                                          extra: ["--config", config.path, "--listen", "tls:127.0.0.1:\(tlsPort)"], directory: directory)
        defer { starling.stop() }
        try TCPTable.waitListening(tlsPort, process: starling)
        let pid = starling.pid
        for _ in 0..<2 { _ = try StreamClient.run("options", proto: "tls", port: tlsPort, ["--count", "100"]) }
        sleep(2)
        let base = Self.rssKB(pid)

        let python = try Requirements.tool("python3", package: "python3")
        let holder = try ServerProcess(name: "hold-tls", executable: python,
                                       arguments: [PackagePaths.tool("sip_stream_client.py").path, "hold", "--proto", "tls",
                                                   "--port", String(tlsPort), "--count", "1000", "--hold", "6"],
                                       logFile: directory.appendingPathComponent("hold.log"), workingDirectory: directory)
        defer { holder.stop() }
        var rate = ""
        for _ in 0..<300 where rate.isEmpty {
            usleep(100_000)
            rate = holder.log.split(separator: "\n").first(where: { $0.contains("per_second") }).map(String.init) ?? ""
        }
        sleep(2)
        let held = Self.rssKB(pid)
        let fds = Self.fdCount(pid)
        let perConnection = Double(held - base) / 1000
        print("idle TLS connections: RSS \(base) kB -> \(held) kB with 1000 open (fds \(fds)): \(perConnection) kB per connection; handshakes \(rate)")
        #expect(fds >= 1000, "the connections are not open: \(fds) fds; \(holder.logTail())")
        #expect(perConnection < 65, "\(perConnection) kB per idle TLS connection")
        _ = holder.wait(timeout: .seconds(30))

        // Certificate reload: swap in the other.test certificate and call tls.reload.
        func subject() throws -> String {
            let r = try TLSTransportTests.opensslClient(["-connect", "127.0.0.1:\(tlsPort)"], directory: directory)
            return r.output.split(separator: "\n").first(where: { $0.hasPrefix("subject=") }).map(String.init) ?? r.output
        }
        #expect(try subject().contains("sip.test"))
        try FileManager.default.removeItem(atPath: live)
        try FileManager.default.removeItem(atPath: liveKey)
        try FileManager.default.copyItem(atPath: certs.otherCert, toPath: live)
        try FileManager.default.copyItem(atPath: certs.otherKey, toPath: liveKey)
        let binary = try PackagePaths.starlingBinary().path
        var reload = try Command.run(binary, ["ctl", "--url", "http://127.0.0.1:\(controlPort)", "tls.reload"], timeout: .seconds(20))
        for _ in 0..<50 where reload.status == 2 {
            usleep(100_000)
            reload = try Command.run(binary, ["ctl", "--url", "http://127.0.0.1:\(controlPort)", "tls.reload"], timeout: .seconds(20))
        }
        #expect(reload.status == 0 && reload.output.contains("reloaded"), "\(reload.output)")
        #expect(try subject().contains("other.test"))
        let info = try Command.run(binary, ["ctl", "--url", "http://127.0.0.1:\(controlPort)", "core.tcp_info"], timeout: .seconds(20))
        #expect(info.status == 0 && info.output.contains("opened_connections"), "\(info.output)")
    }

    /// `;proxy` listeners take the source address from a PROXY protocol v1 or v2 header: `$si`/`$sp`
    /// report it, and a connection without a valid header is closed.
    @Test func proxyProtocolSourceAddress() throws {
        let directory = try PackagePaths.makeTemporaryDirectory("starling-proxy-protocol")
        let ports = try Ports.freeUDPPorts(2)
        let script = directory.appendingPathComponent("src.lua")
        try """
        function ksr_request_route()
          KSR.hdr.append_to_reply("X-Source: " .. KSR.pv.get("$si") .. ":" .. KSR.pv.get("$sp") .. ";" .. KSR.pv.get("$pr") .. "\\r\\n")
          KSR.sl.sl_send_reply(200, "OK")
        end
        """.write(to: script, atomically: true, encoding: .utf8)
        let starling = try Starling.start(script: script, port: ports[0], workers: 1,
                                          extra: ["--listen", "tcp:127.0.0.1:\(ports[1]);proxy"], directory: directory)
        defer { starling.stop() }
        try TCPTable.waitListening(ports[1], process: starling)
        let python = try Requirements.tool("python3", package: "python3")
        let probe = """
        import socket, sys
        port = int(sys.argv[1])
        msg = (b"OPTIONS sip:x@127.0.0.1 SIP/2.0\\r\\nVia: SIP/2.0/TCP 10.1.1.1:5060;branch=z9hG4bKpp\\r\\n"
               b"From: <sip:a@b>;tag=1\\r\\nTo: <sip:x@y>\\r\\nCall-ID: pp\\r\\nCSeq: 1 OPTIONS\\r\\nContent-Length: 0\\r\\n\\r\\n")
        v2 = bytes([0x0D,0x0A,0x0D,0x0A,0x00,0x0D,0x0A,0x51,0x55,0x49,0x54,0x0A,0x21,0x11,0x00,12,
                    198,51,100,7, 127,0,0,1, 0x9C,0x41, 0x13,0xC4])
        for header in [b"PROXY TCP4 192.0.2.55 127.0.0.1 40001 5060\\r\\n", v2, b"GARBAGE\\r\\n"]:
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(header + msg)
            data = b""
            try:
                while b"\\r\\n\\r\\n" not in data:
                    d = s.recv(4096)
                    if not d: break
                    data += d
            except OSError:
                pass
            src = [l for l in data.split(b"\\r\\n") if l.startswith(b"X-Source:")]
            print(src[0].decode() if src else "closed")
        """
        let file = directory.appendingPathComponent("probe.py")
        try probe.write(to: file, atomically: true, encoding: .utf8)
        let r = try Command.run(python, [file.path, String(ports[1])], timeout: .seconds(30))
        let lines = r.output.split(separator: "\n").map(String.init)
        #expect(lines == ["X-Source: 192.0.2.55:40001;tcp", "X-Source: 198.51.100.7:40001;tcp", "closed"],
                "\(r.output)\nlog:\n\(starling.logTail())")
    }
}
