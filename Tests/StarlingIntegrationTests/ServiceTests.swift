import Foundation
import Testing
import StarlingTestSupport

#if canImport(Glibc)
import Glibc
#endif

/// Starling run as a service: sd_notify to a socket the test provides, `starling config --check`
/// and `--print`, the safe defaults (control listener, outgoing TLS verification) and the container
/// entrypoint run outside a container.
@Suite(.serialized)
struct ServiceTests {
    static var defaultScript: URL { PackagePaths.root.appendingPathComponent("routes/default.lua") }

    /// Starts `starling ARGS` with extra environment variables (through env(1)).
    static func startWithEnvironment(_ env: [String], _ args: [String], directory: URL, name: String = "starling") throws -> ServerProcess {
        try ServerProcess(name: name, executable: "/usr/bin/env",
                          arguments: env + [try PackagePaths.starlingBinary().path] + args,
                          logFile: directory.appendingPathComponent("\(name).log"))
    }

    /// The next notification that is not a watchdog ping.
    static func nextState(_ sock: NotifySocket) -> String? {
        while let m = sock.receive() {
            if m != "WATCHDOG=1" { return m }
        }
        return nil
    }

    @Test func sdNotifyReadyWatchdogReloadStop() throws {
        let directory = try PackagePaths.makeTemporaryDirectory("starling-sdnotify")
        let sock = try NotifySocket()
        sock.setTimeout(.seconds(30))
        let port = try Ports.freeUDPPort()
        let server = try Self.startWithEnvironment(
            ["NOTIFY_SOCKET=\(sock.address)", "WATCHDOG_USEC=1000000"],
            Starling.arguments(script: Self.defaultScript, port: port, workers: 1), directory: directory)
        defer { server.stop() }
        // READY=1 comes once every listener is bound and the script is active.
        let ready = try #require(Self.nextState(sock), "no notification; log:\n\(server.log)")
        #expect(ready.hasPrefix("READY=1\nSTATUS=routing \(Self.defaultScript.path) on udp:127.0.0.1:\(port)\nMAINPID="), "\(ready)")
        #expect(ready.hasSuffix("MAINPID=\(server.pid)"), "\(ready)")
        #expect(Ports.isUDPPortBound(port, pid: server.pid))
        #expect(try SIPProbe.optionsStatusLine(serverPort: port, timeout: .seconds(5)) == "SIP/2.0 200 OK")
        // WATCHDOG_USEC=1 s: pings every half second.
        sock.setTimeout(.seconds(10))
        var pings = 0
        while pings < 2, let m = sock.receive() { if m == "WATCHDOG=1" { pings += 1 } }
        #expect(pings == 2)
        // SIGHUP: RELOADING=1, then READY=1 with the version.
        kill(server.pid, SIGHUP)
        let reloading = try #require(Self.nextState(sock))
        #expect(reloading.hasPrefix("RELOADING=1\nMONOTONIC_USEC="), "\(reloading)")
        let again = try #require(Self.nextState(sock))
        #expect(again.hasPrefix("READY=1\nSTATUS=routing \(Self.defaultScript.path) version "), "\(again)")
        #expect(again.contains("(unchanged)"), "\(again)")
        // SIGTERM: STOPPING=1, then a clean exit.
        kill(server.pid, SIGTERM)
        #expect(Self.nextState(sock) == "STOPPING=1")
        #expect(server.wait(timeout: .seconds(20)) == 0)
    }

    @Test func configCheckListsEveryErrorAndPrintMasksSecrets() throws {
        let directory = try PackagePaths.makeTemporaryDirectory("starling-config-check")
        let starling = try PackagePaths.starlingBinary().path
        let bad = directory.appendingPathComponent("bad.toml")
        try """
        [core]
        workers = 0
        script = "\(directory.path)/missing.lua"
        listen = ["udp:127.0.0.1:5060", "tls:127.0.0.1:5061"]
        [control]
        listen = "0.0.0.0:5065"
        [modparam.tm]
        fr_timer = "30s"
        """.write(to: bad, atomically: true, encoding: .utf8)
        let check = try Command.run(starling, ["config", "--check", bad.path], timeout: .seconds(60))
        #expect(check.status == 2, "\(check.output)")
        for key in ["core.workers", "control.listen", "modparam.tm.fr_timer", "core.script", "core.listen"] {
            #expect(check.output.contains("\(bad.path): \(key): "), "\(key) not reported:\n\(check.output)")
        }
        #expect(check.output.contains("\(bad.path): 5 errors"), "\(check.output)")
        // `starling run` with it lists the same parse errors and binds nothing (exit 2).
        let run = try Command.run(starling, ["run", "--config", bad.path], timeout: .seconds(60))
        #expect(run.status == 2, "\(run.output)")
        #expect(run.output.contains("control.listen: 0.0.0.0:5065 is not a loopback address and no token is set"), "\(run.output)")
        #expect(run.output.contains("core.workers: expected a positive integer, got 0"), "\(run.output)")

        let good = directory.appendingPathComponent("good.toml")
        try """
        [core]
        script = "\(Self.defaultScript.path)"
        listen = ["udp:127.0.0.1:5060"]
        [control]
        listen = "0.0.0.0:5065"
        token = "s3cr3t-t0ken"
        [define]
        DBURL = "mysql://kamailio:kamailiorw@localhost/kamailio"
        """.write(to: good, atomically: true, encoding: .utf8)
        let ok = try Command.run(starling, ["config", "--check", good.path], timeout: .seconds(60))
        #expect(ok.status == 0, "\(ok.output)")
        #expect(ok.output.contains("\(good.path): OK"), "\(ok.output)")
        let printed = try Command.run("/usr/bin/env", ["STARLING_CORE_WORKERS=3", starling, "config", "--print", "--config", good.path],
                                      timeout: .seconds(60))
        #expect(printed.status == 0, "\(printed.output)")
        #expect(printed.output.contains("workers = 3"), "\(printed.output)")
        #expect(printed.output.contains("token = \"********\""), "\(printed.output)")
        #expect(printed.output.contains("mysql://kamailio:********@localhost/kamailio"), "\(printed.output)")
        #expect(!printed.output.contains("s3cr3t-t0ken") && !printed.output.contains("kamailiorw"), "\(printed.output)")
    }

    /// As an unprivileged user (the package's service user; here nobody): TCP and the control listener
    /// accept connections. (They set TCP_NODELAY; asked at the socket level it was SO_DEBUG, which only
    /// root may set, so every connection to a non-root Starling was closed at once.)
    @Test func tcpAndControlWorkWithoutRoot() throws {
        guard getuid() == 0 else {
            Issue.record("this test starts Starling as user nobody through runuser: run the tests as root")
            return
        }
        let directory = try PackagePaths.makeTemporaryDirectory("starling-nonroot")
        let ports = try Ports.freeUDPPorts(3)
        let server = try ServerProcess(
            name: "starling", executable: "/usr/sbin/runuser",
            arguments: ["-u", "nobody", "--", "/usr/bin/env", "STARLING_CONTROL_LISTEN=127.0.0.1:\(ports[2])",
                        try PackagePaths.starlingBinary().path]
                + Starling.arguments(script: Self.defaultScript, port: ports[0], workers: 1,
                                     extra: ["--listen", "tcp:127.0.0.1:\(ports[1])"]),
            logFile: directory.appendingPathComponent("starling.log"))
        defer { server.stop() }
        try server.waitUntilBound(udpPort: ports[0])
        try server.waitUntilListening(tcpPort: ports[1])
        let tcp = try StreamClient.run("options", proto: "tcp", port: ports[1], ["--count", "1"], timeout: .seconds(30))
        #expect(tcp.ok, "\(tcp)\n\(server.log)")
        let health = try Command.run(try PackagePaths.starlingBinary().path,
                                     ["ctl", "--health", "--url", "http://127.0.0.1:\(ports[2])"], timeout: .seconds(30))
        #expect(health.status == 0 && health.output.contains("ready"), "\(health.output)\n\(server.log)")
    }

    /// packaging/container/entrypoint.sh outside a container: configuration only from STARLING_*
    /// variables, JSON log lines on standard output, `ctl --health` (the image's HEALTHCHECK) ready.
    @Test func containerEntrypoint() throws {
        let directory = try PackagePaths.makeTemporaryDirectory("starling-entrypoint")
        let entrypoint = PackagePaths.root.appendingPathComponent("packaging/container/entrypoint.sh").path
        let starling = try PackagePaths.starlingBinary().path
        let ports = try Ports.freeUDPPorts(2)
        let env = ["STARLING_BIN=\(starling)", "STARLING_CORE_LISTEN=udp:127.0.0.1:\(ports[0])",
                   "STARLING_CONTROL_LISTEN=127.0.0.1:\(ports[1])", "STARLING_CORE_SCRIPT=\(Self.defaultScript.path)",
                   "STARLING_CORE_WORKERS=1",
                   "STARLING_MODPARAM_USRLOC_DB_URL=sqlite://\(directory.path)/starling.db"]
        // Standard error is thrown away: whatever the log holds came on standard output.
        let server = try ServerProcess(name: "entrypoint", executable: "/usr/bin/env",
                                       arguments: env + ["/bin/sh", "-c", "exec \"$0\" 2>/dev/null", entrypoint],
                                       logFile: directory.appendingPathComponent("entrypoint.log"))
        defer { server.stop() }
        try server.waitUntilBound(udpPort: ports[0])
        #expect(try SIPProbe.optionsStatusLine(serverPort: ports[0], timeout: .seconds(5)) == "SIP/2.0 200 OK")
        var health = try Command.run(starling, ["ctl", "--health", "--url", "http://127.0.0.1:\(ports[1])"], timeout: .seconds(30))
        for _ in 0..<20 where health.status != 0 {
            usleep(250_000)
            health = try Command.run(starling, ["ctl", "--health", "--url", "http://127.0.0.1:\(ports[1])"], timeout: .seconds(30))
        }
        #expect(health.status == 0 && health.output.contains("ready"), "\(health.output)")
        server.stop()
        let lines = server.log.split(separator: "\n").filter { !$0.isEmpty }
        #expect(lines.count >= 3, "\(server.log)")
        for line in lines {
            let obj = (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any]
            #expect(obj?["level"] is String && obj?["msg"] is String, "not a JSON log line: \(line)")
        }
        #expect(lines.contains { $0.contains("listening on udp:127.0.0.1:\(ports[0])") }, "\(server.log)")
        #expect(FileManager.default.fileExists(atPath: directory.appendingPathComponent("starling.db").path))

        // Subcommands pass through; a non-loopback control listener without a token stops it (exit 2).
        let version = try Command.run("/usr/bin/env", ["STARLING_BIN=\(starling)", entrypoint, "version"], timeout: .seconds(30))
        #expect(version.status == 0 && version.output.hasPrefix("starling "), "\(version.output)")
        let open = try Command.run("/usr/bin/env", env.filter { !$0.hasPrefix("STARLING_CONTROL_LISTEN=") }
                                   + ["STARLING_CONTROL_LISTEN=0.0.0.0:\(ports[1])", entrypoint], timeout: .seconds(30))
        #expect(open.status == 2, "\(open.output)")
        #expect(open.output.contains("no token is set"), "\(open.output)")
    }

    /// Outgoing TLS verifies the server by default: a server whose certificate chains to ca_list and
    /// names the address gets the request; one whose certificate names another host does not (the
    /// handshake is refused) until verify_server = false.
    @Test func outgoingTLSVerifiesTheServer() throws {
        let directory = try PackagePaths.makeTemporaryDirectory("starling-tls-verify")
        let certs = try TestCertificates.make(in: directory)
        let python = try Requirements.tool("python3", package: "python3")
        let sinkPorts = try Ports.freeUDPPorts(3)
        func sink(_ port: Int, cert: String, key: String, name: String) throws -> ServerProcess {
            let p = try ServerProcess(name: name, executable: python,
                                      arguments: [PackagePaths.tool("tls_sink.py").path, String(port), cert, key],
                                      logFile: directory.appendingPathComponent("\(name).log"))
            try p.waitUntilListening(tcpPort: port)
            return p
        }
        // sip.test + IP:127.0.0.1, from the test CA; and other.test only.
        let good = try sink(sinkPorts[0], cert: certs.serverCert, key: certs.serverKey, name: "sink-good")
        defer { good.stop() }
        let wrongName = try sink(sinkPorts[1], cert: certs.otherCert, key: certs.otherKey, name: "sink-wrong-name")
        defer { wrongName.stop() }
        let wrongCA = try sink(sinkPorts[2], cert: certs.wrongClientCert, key: certs.wrongClientKey, name: "sink-wrong-ca")
        defer { wrongCA.stop() }

        func sendThrough(_ udpPort: Int, to sinkPort: Int) throws {
            let endpoint = try UDPEndpoint()
            let ruri = "sip:bob@127.0.0.1:\(sinkPort);transport=tls"
            try endpoint.send(SIPProbe.options(requestURI: ruri, from: endpoint), to: udpPort)
        }
        func waitReceived(_ p: ServerProcess, timeout: Double = 10) -> Bool {
            let deadline = Date().addingTimeInterval(timeout)
            while Date() < deadline {
                if p.log.contains("\"received\": \"OPTIONS sip:bob@127.0.0.1") { return true }
                usleep(100_000)
            }
            return false
        }

        // Default: verify_server on, ca_list = the test CA.
        var (starling, udp, _, _, _) = try TLSTransportTests.start(directory, script: Self.defaultScript, certs: certs,
                                                                   tls: certs.tlsSection(), modules: ["sl", "maxfwd", "sanity"])
        try sendThrough(udp, to: sinkPorts[0])
        #expect(waitReceived(good), "good sink: \(good.log)\nstarling: \(starling.log)")
        // Another host's name: swift-nio-ssl checks the name once the handshake is done and closes
        // the connection before anything is written.
        try sendThrough(udp, to: sinkPorts[1])
        // A certificate from another CA: the chain fails within the handshake.
        try sendThrough(udp, to: sinkPorts[2])
        var deadline = Date().addingTimeInterval(10)
        while Date() < deadline && !(wrongName.log.contains("handshake") && wrongCA.log.contains("handshake")) { usleep(100_000) }
        #expect(wrongCA.log.contains("handshake_error"), "\(wrongCA.log)")
        deadline = Date().addingTimeInterval(2)
        while Date() < deadline { usleep(100_000) }
        #expect(!wrongName.log.contains("\"received\""), "\(wrongName.log)")
        #expect(!wrongCA.log.contains("\"received\""), "\(wrongCA.log)")
        // Both refusals are logged with the reason.
        #expect(starling.log.contains("tls connection to 127.0.0.1:\(sinkPorts[1]): server not accepted"), "\(starling.log)")
        #expect(starling.log.contains("tls connection to 127.0.0.1:\(sinkPorts[2]): server not accepted"), "\(starling.log)")
        starling.stop()

        // By name: the certificate must name the host the destination was resolved from, which is
        // also sent as SNI. sip.test and other.test both resolve to 127.0.0.1 (dnsmasq).
        let (dns, dnsPort) = try DNSMasq.start(naptr: [], extra: ["--host-record=sip.test,127.0.0.1",
                                                                  "--host-record=other.test,127.0.0.1"], directory: directory)
        defer { dns.stop() }
        (starling, udp, _, _, _) = try TLSTransportTests.start(directory, script: Self.defaultScript, certs: certs,
                                                               tls: certs.tlsSection(), extraConfig: "dns_servers = [\"127.0.0.1:\(dnsPort)\"]",
                                                               modules: ["sl", "maxfwd", "sanity"])
        func sendByName(_ host: String, to sinkPort: Int) throws {
            let endpoint = try UDPEndpoint()
            try endpoint.send(SIPProbe.options(requestURI: "sip:carol@\(host):\(sinkPort);transport=tls", from: endpoint), to: udp)
        }
        func waitFor(_ p: ServerProcess, _ text: String, timeout: Double = 10) -> Bool {
            let deadline = Date().addingTimeInterval(timeout)
            while Date() < deadline {
                if p.log.contains(text) { return true }
                usleep(100_000)
            }
            return false
        }
        // sip.test at the sip.test server: accepted, SNI sip.test.
        try sendByName("sip.test", to: sinkPorts[0])
        #expect(waitFor(good, "\"received\": \"OPTIONS sip:carol@sip.test"), "\(good.log)\n\(starling.log)")
        #expect(good.log.contains("\"sni\": \"sip.test\""), "\(good.log)")
        // sip.test at the server whose certificate names other.test: refused.
        try sendByName("sip.test", to: sinkPorts[1])
        #expect(waitFor(starling, "tls connection to 127.0.0.1:\(sinkPorts[1]): server not accepted"), "\(starling.log)")
        #expect(!wrongName.log.contains("OPTIONS sip:carol@sip.test"), "\(wrongName.log)")
        // other.test at that server: accepted (the name, not the address, is what counts). Sent again
        // each second as a UAC retransmits: the refused connection may still be closing.
        var delivered = false
        for _ in 0..<10 where !delivered {
            try sendByName("other.test", to: sinkPorts[1])
            delivered = waitFor(wrongName, "\"received\": \"OPTIONS sip:carol@other.test", timeout: 1)
        }
        #expect(delivered, "\(wrongName.log)\n\(starling.log)")
        #expect(wrongName.log.contains("\"sni\": \"other.test\""), "\(wrongName.log)")
        starling.stop()

        // verify_server = false (Kamailio's default): the same server is accepted.
        (starling, udp, _, _, _) = try TLSTransportTests.start(directory, script: Self.defaultScript, certs: certs,
                                                               tls: certs.tlsSection() + "verify_server = false\n",
                                                               modules: ["sl", "maxfwd", "sanity"])
        defer { starling.stop() }
        try sendThrough(udp, to: sinkPorts[1])
        #expect(waitReceived(wrongName), "sink: \(wrongName.log)\nstarling: \(starling.log)")
    }
}
