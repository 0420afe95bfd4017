import Foundation
import StarlingTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Issue 6's acceptance: Kamailio's example KEMI Lua script (kamailio-basic-kemi-lua.lua, read
/// where Debian installs it) on Kamailio 5.6 with the example cfg adapted to loopback and SQLite
/// (KamailioExample), and unchanged on Starling with examples/kamailio-basic/starling.toml
/// (StarlingExample). The same SIPp scenarios run against both (ExampleScenarios: digest
/// REGISTER, an authenticated call through the proxy to a registered SIPp UAS, a wrong password,
/// a call to an unregistered user, a scanner User-Agent, a pike flood), and the replies must be
/// the expected table, which is what Kamailio answers, and the same on both servers.
///
/// Needs kamailio, kamailio-lua-modules, kamailio-sqlite-modules, sip-tester, python3 and the
/// built starling binary; a missing one fails the test.
@Suite(.serialized)
struct ExampleScriptTests {
    /// Kamailio with the example cfg gives the expected replies (validates the harness and the table).
    @Test func kamailioGivesTheExpectedReplies() throws {
        let kamailio = try runOnKamailio()
        expectTable(kamailio, server: "Kamailio")
    }

    /// Starling with the equivalent config gives the same replies as Kamailio, scenario by scenario.
    @Test func starlingGivesKamailiosReplies() throws {
        let kamailio = try runOnKamailio()
        let directory = try PackagePaths.makeTemporaryDirectory("example-starling")
        let port = try Ports.freeUDPPort()
        let starling = try StarlingExample.start(port: port, directory: directory)
        defer { starling.stop() }
        let run = try ExampleScenarios.run(port: port, directory: directory, server: starling,
                                           database: directory.appendingPathComponent("starling.db"))
        print("Starling with examples/kamailio-basic/starling.toml (\(directory.path)):\n\(run)")
        let log = "starling log (\(directory.path)/starling.log):\n\(starling.logTail(40))"
        expectTable(run, server: "Starling", log: log)
        for row in kamailio.rows {
            #expect(run.replies(row.name) == row.replies,
                    "\(row.name): Starling \(run.replies(row.name) ?? []), Kamailio \(row.replies)\nStarling:\n\(run)\nKamailio:\n\(kamailio)")
        }
        // Reason phrases of the replies the script itself sends (not tm's 100, not the UAS's).
        for name in ["register alice", "register alice, wrong password", "call alice -> carol (not registered)",
                     "OPTIONS from friendly-scanner", "pike flood"] {
            let ours = (run.statusLines[name] ?? []).filter { !$0.hasPrefix("SIP/2.0 100 ") }
            let theirs = (kamailio.statusLines[name] ?? []).filter { !$0.hasPrefix("SIP/2.0 100 ") }
            #expect(ours == theirs, "\(name): Starling \(ours), Kamailio \(theirs)")
        }
    }

    /// baresip as a second, real client, through Kamailio (validates the harness).
    @Test func baresipRegistersAndCallsThroughKamailio() throws {
        try baresipRegistersAndCalls(server: "kamailio") { port, directory in
            try KamailioExample.start(port: port, directory: directory)
        }
    }

    /// baresip registers to Starling and calls a SIPp UAS through it; a call to baresip's
    /// registered contact reaches it.
    @Test func baresipRegistersAndCallsThroughStarling() throws {
        try baresipRegistersAndCalls(server: "starling") { port, directory in
            try StarlingExample.start(port: port, directory: directory)
        }
    }

    /// bob (SIPp) registers from 127.0.0.3 and waits there as a UAS; baresip registers as alice
    /// (digest auth, outbound proxy 127.0.0.1:PORT), dials sip:bob@starling.test at start and
    /// quits after 8 s (hanging up). Meanwhile SIPp calls alice as bob: the proxy finds baresip's
    /// registered contact and baresip answers by itself.
    private func baresipRegistersAndCalls(server name: String,
                                          start: (Int, URL) throws -> ServerProcess) throws {
        let directory = try PackagePaths.makeTemporaryDirectory("example-baresip-\(name)")
        let ports = try Ports.freeUDPPorts(4)
        let (proxyPort, bobPort, phonePort, callerPort) = (ports[0], ports[1], ports[2], ports[3])
        let server = try start(proxyPort, directory)
        defer { server.stop() }
        let domain = ExampleScript.domain

        let register = try ExampleScenarios.runSIPp(
            scenario: "register_auth.xml", target: proxyPort, ip: "127.0.0.3", localPort: bobPort, service: "bob",
            directory: directory, tag: "registerbob",
            extra: ["-set", "domain", domain, "-set", "expires", "3600", "-au", "bob", "-ap", ExampleScript.password("bob")])
        #expect(register.replies == ["1 REGISTER 401", "2 REGISTER 200"], "bob's REGISTER: \(register.replies)\n\(register.errors)")
        let uas = try SIPp.uas(port: bobPort, ip: "127.0.0.3", directory: directory, tag: "bob_uas", maxCalls: 1,
                               traceMessages: true)
        defer { uas.stop() }

        let phoneDirectory = directory.appendingPathComponent("baresip")
        try Baresip.configure(directory: phoneDirectory, user: "alice", password: ExampleScript.password("alice"),
                              domain: domain, proxyPort: proxyPort, sipPort: phonePort, rtpPorts: try TestPorts.block(100))
        let phone = try Baresip.start(directory: phoneDirectory, commands: ["/dial sip:bob@\(domain)"], seconds: 8)
        defer { phone.stop() }
        let registered = Baresip.waitForLog(phone, containing: "alice@\(domain): {0/UDP/v4} 200 OK", timeout: .seconds(20))
        let established = Baresip.waitForLog(phone, containing: "Call established: sip:bob@\(domain)", timeout: .seconds(20))

        let callToPhone = try ExampleScenarios.runSIPp(
            scenario: "invite_auth.xml", target: proxyPort, ip: "127.0.0.4", localPort: callerPort, service: "alice",
            directory: directory, tag: "callalice",
            extra: ["-set", "caller", "bob", "-set", "domain", domain, "-au", "bob", "-ap", ExampleScript.password("bob")])

        let phoneStatus = phone.wait(timeout: .seconds(15))
        let uasStatus = uas.wait(timeout: .seconds(10))
        let uasRequests = Set(uas.receivedRequests)
        let context = "baresip log:\n\(phone.logTail(40))\n\(name) log:\n\(server.logTail(30))"

        #expect(registered, "baresip did not register (no 200 OK for alice@\(domain))\n\(context)")
        #expect(established, "baresip's call to bob was not established\n\(context)")
        #expect(uasRequests.isSuperset(of: ["INVITE", "ACK", "BYE"]),
                "bob's UAS got \(uasRequests.sorted()) (INVITE, ACK, BYE expected)\n\(context)")
        #expect(uasStatus == 0, "bob's UAS: \(uasStatus.map { "exit \($0)" } ?? "still running")\n\(uas.logTail(15))")
        #expect(phoneStatus == 0, "baresip: \(phoneStatus.map { "exit \($0)" } ?? "still running")\n\(context)")
        #expect(callToPhone.exitStatus == 0 && callToPhone.replies.contains("2 INVITE 200")
                    && callToPhone.replies.contains("3 BYE 200"),
                "bob's call to alice (baresip): \(callToPhone.replies)\n\(callToPhone.errors)\n\(context)")
        #expect(server.isRunning, "\(name) exited\n\(server.logTail())")
    }

    /// RFC 8760 SHA-256 digest (SIPp only does MD5): with the auth module's `algorithm` set to
    /// SHA-256 on both servers, Tools/digest_register.py answers the challenge with SHA-256; the
    /// right password registers, a wrong one is challenged again, the same on both servers.
    @Test func sha256DigestRegistersOnBothServers() throws {
        let kamailio = try sha256Registrations(server: "kamailio") { port, directory in
            try KamailioExample.start(port: port, directory: directory, extra: "modparam(\"auth\", \"algorithm\", \"SHA-256\")")
        }
        let expected = ["right": ["1 REGISTER 401 algorithm=SHA-256", "2 REGISTER 200"],
                        "wrong": ["1 REGISTER 401 algorithm=SHA-256", "2 REGISTER 401"]]
        #expect(kamailio.replies == expected, "Kamailio: \(kamailio.output)")
        let starling = try sha256Registrations(server: "starling") { port, directory in
            try StarlingExample.start(port: port, directory: directory, extra: "[modparam.auth]\nalgorithm = \"SHA-256\"")
        }
        #expect(starling.replies == expected, "Starling: \(starling.output)")
        #expect(starling.replies == kamailio.replies, "Starling: \(starling.output)\nKamailio: \(kamailio.output)")
    }

    /// Runs digest_register.py for alice with the right and a wrong password; the reply lines
    /// without the qop part, by case, and the raw output.
    private func sha256Registrations(server name: String, start: (Int, URL) throws -> ServerProcess)
        throws -> (replies: [String: [String]], output: String) {
        let directory = try PackagePaths.makeTemporaryDirectory("example-sha256-\(name)")
        let port = try Ports.freeUDPPort()
        let server = try start(port, directory)
        defer { server.stop() }
        var replies: [String: [String]] = [:]
        var output = ""
        for (key, password) in [("right", ExampleScript.password("alice")), ("wrong", "not-the-password")] {
            let run = try Command.run(try Requirements.tool("python3", package: "python3"),
                                      [PackagePaths.tool("digest_register.py").path, "--server", "127.0.0.1:\(port)",
                                       "--source", "127.0.0.12", "--user", "alice", "--password", password,
                                       "--domain", ExampleScript.domain, "--algorithm", "SHA-256"],
                                      timeout: .seconds(30))
            output += "\(key) password (exit \(run.status)):\n\(run.output)"
            replies[key] = run.output.split(separator: "\n").map { line in
                String(line.split(separator: " ").filter { !$0.hasPrefix("qop=") }.joined(separator: " "))
            }
        }
        output += "\n\(name) log:\n\(server.logTail(20))"
        return (replies, output)
    }

    /// The scenarios against Kamailio in a fresh directory.
    private func runOnKamailio() throws -> ExampleRun {
        let directory = try PackagePaths.makeTemporaryDirectory("example-kamailio")
        let port = try Ports.freeUDPPort()
        let kamailio = try KamailioExample.start(port: port, directory: directory)
        defer { kamailio.stop() }
        let run = try ExampleScenarios.run(port: port, directory: directory, server: kamailio,
                                           database: directory.appendingPathComponent("kamailio.db"))
        print("Kamailio 5.6 with the example script (\(directory.path)):\n\(run)")
        return run
    }

    /// `run` matches ExampleScenarios.expected, ran without problems, and pike let about
    /// reqs_density_per_unit (16) requests through before banning.
    private func expectTable(_ run: ExampleRun, server: String, log: String = "") {
        #expect(run.rows.map(\.name) == ExampleScenarios.expected.map(\.name), "\(server):\n\(run)")
        for row in ExampleScenarios.expected {
            #expect(run.replies(row.name) == row.replies,
                    "\(server), \(row.name): got \(run.replies(row.name) ?? []), expected \(row.replies)\n\(run)\n\(log)")
        }
        #expect(run.problems.isEmpty, "\(server):\n\(run)\n\(log)")
        #expect((8...40).contains(run.floodAnswered),
                "\(server): pike let \(run.floodAnswered) of \(run.floodSent) requests through (about 16 per 2 s expected)\n\(log)")
    }
}
