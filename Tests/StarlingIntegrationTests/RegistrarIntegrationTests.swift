import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// KSR.registrar and usrloc end to end: SIPp registers users through the real `starling` binary with
/// usrloc in write-back mode (db_mode 2) on a fresh SQLite file; Starling is stopped and started again
/// on the same file, and a lookup still finds every registration.
@Suite(.serialized)
struct RegistrarIntegrationTests {
    /// REGISTER is saved; OPTIONS to a user answers 200 "found <contact>" when `lookup` finds it
    /// (the R-URI is then the registered contact), else 404 with the lookup code.
    static let script = """
        function ksr_request_route()
          if KSR.is_REGISTER() then
            KSR.registrar.save("location", 0)
            return
          end
          if KSR.is_OPTIONS() then
            local rc = KSR.registrar.lookup("location")
            if rc == 1 then
              KSR.sl.send_reply(200, "found " .. KSR.pv.get("$ru"))
            else
              KSR.sl.send_reply(404, "not found " .. rc)
            end
          end
        end
        """

    /// The reply status line to an OPTIONS for `user` sent to Starling.
    static func lookup(_ user: String, port: Int) throws -> String? {
        let endpoint = try UDPEndpoint()
        try endpoint.send(SIPProbe.options(requestURI: "sip:\(user)@127.0.0.1", from: endpoint), to: port)
        return endpoint.receive(timeout: .seconds(2))?.components(separatedBy: "\r\n").first
    }

    @Test func registrationsSurviveARestart() throws {
        let directory = try PackagePaths.makeTemporaryDirectory("starling-registrar")
        let ports = try Ports.freeUDPPorts(2)
        let (proxyPort, uacPort) = (ports[0], ports[1])
        let script = directory.appendingPathComponent("registrar.lua")
        try Self.script.write(to: script, atomically: true, encoding: .utf8)
        let database = directory.appendingPathComponent("starling.db").path
        let config = directory.appendingPathComponent("starling.toml")
        try """
            [modparam.usrloc]
            db_url = "sqlite://\(database)"
            db_mode = 2
            timer_interval = 60

            [modparam.registrar]
            max_expires = 3600
            """.write(to: config, atomically: true, encoding: .utf8)
        let extra = ["--config", config.path]

        var starling = try Starling.start(script: script, port: proxyPort, workers: 2, extra: extra, directory: directory)
        let users = 20
        let result = try SIPp.runUAC(scenario: PackagePaths.scenario("register.xml"), target: proxyPort,
                                     localPort: uacPort, rate: 50, calls: users, directory: directory,
                                     tag: "register", service: "reg", timeout: .seconds(60))
        #expect(result.exitStatus == 0, "\(result)\nstarling log:\n\(starling.logTail())")
        #expect(result.successfulCalls == users, "\(result)")
        #expect(try Self.lookup("reg1", port: proxyPort) == "SIP/2.0 200 found sip:reg1@127.0.0.1:\(uacPort)")
        #expect(try Self.lookup("nobody", port: proxyPort) == "SIP/2.0 404 not found -1")
        // SIGTERM: the server writes what write-back has not flushed yet, then exits.
        starling.stop()
        #expect(starling.terminationStatus == 0, "\(starling.logTail())")

        starling = try Starling.start(script: script, port: proxyPort, workers: 2, extra: extra, directory: directory)
        defer { starling.stop() }
        for n in [1, users / 2, users] {
            #expect(try Self.lookup("reg\(n)", port: proxyPort) == "SIP/2.0 200 found sip:reg\(n)@127.0.0.1:\(uacPort)",
                    "\(starling.logTail())")
        }
        #expect(starling.logTail(100).contains("usrloc: \(users) contacts loaded"), "\(starling.logTail(100))")
    }

    /// auth_db on the embedded database: `starling subscriber add` writes alice's row (ha1 as kamctl),
    /// the server opens the file named by `[modparam.auth_db] db_url`, and Tools/digest_client.py
    /// registers with the right password (401 then 200, the contact saved) and fails with a wrong one.
    @Test func digestRegisterAgainstTheSubscriberTable() throws {
        let directory = try PackagePaths.makeTemporaryDirectory("starling-authdb")
        let port = try Ports.freeUDPPort()
        let binary = try PackagePaths.starlingBinary().path
        let database = directory.appendingPathComponent("starling.db").path
        let add = try Command.run(binary, ["subscriber", "add", "alice@example.com", "s3cret", "--db", "sqlite://\(database)"],
                                  timeout: .seconds(20))
        #expect(add.status == 0, "\(add.output)")
        let script = directory.appendingPathComponent("auth.lua")
        try """
            function ksr_request_route()
              if not KSR.is_REGISTER() then
                local rc = KSR.registrar.lookup("location")
                KSR.sl.send_reply(rc == 1 and 200 or 404, "lookup " .. rc)
                KSR.x.exit()
              end
              if KSR.auth_db.auth_check(KSR.kx.gete_fhost(), "subscriber", 1) < 0 then
                KSR.auth.auth_challenge(KSR.kx.gete_fhost(), 0)
                KSR.x.exit()
              end
              KSR.auth.consume_credentials()
              KSR.registrar.save("location", 0)
            end
            """.write(to: script, atomically: true, encoding: .utf8)
        let config = directory.appendingPathComponent("starling.toml")
        try """
            [modparam.auth_db]
            db_url = "sqlite://\(database)"

            [modparam.usrloc]
            db_url = "sqlite://\(database)"
            db_mode = 1
            """.write(to: config, atomically: true, encoding: .utf8)
        let python = try Requirements.tool("python3", package: "python3")
        let starling = try Starling.start(script: script, port: port, workers: 2, extra: ["--config", config.path],
                                          directory: directory)
        defer { starling.stop() }
        func client(_ password: String) throws -> CommandResult {
            try Command.run(python, [PackagePaths.tool("digest_client.py").path, "--server", "127.0.0.1:\(port)",
                                     "--user", "alice", "--password", password, "--domain", "example.com"],
                            timeout: .seconds(30))
        }
        let good = try client("s3cret")
        #expect(good.status == 0, "digest_client.py:\n\(good.output)\nstarling log:\n\(starling.logTail())")
        #expect(good.output.contains("SIP/2.0 401 Unauthorized\nSIP/2.0 200 OK\nFINAL 200"), "\(good.output)")
        #expect(try Self.lookup("alice", port: port)?.hasPrefix("SIP/2.0 200 lookup 1") == true)
        let bad = try client("wrong")
        #expect(bad.status == 1, "digest_client.py:\n\(bad.output)")
        #expect(starling.isRunning, "starling died; log:\n\(starling.logTail())")
    }

    /// The same REGISTER edge cases (Tools/registrar_probe.py: CSeq checks, q order, max_contacts,
    /// min/max expires, `*`, method filtering, +sip.instance, bad q, duplicate URIs...) against
    /// Kamailio 5.6 and Starling running one script with the same registrar parameters: every reply
    /// (status, Contact list, P-Registrar-Error) and lookup result must match.
    @Test func edgeCasesMatchKamailio() throws {
        let directory = try PackagePaths.makeTemporaryDirectory("starling-registrar-cmp")
        let ports = try Ports.freeUDPPorts(2)
        let script = directory.appendingPathComponent("registrar.lua")
        try """
            function ksr_request_route()
              if KSR.is_REGISTER() then
                KSR.pv.sets("$avp(RECEIVED)", "sip:" .. KSR.kx.get_srcip() .. ":" .. KSR.kx.get_srcport())
                KSR.registrar.save("location", 0)
                return
              end
              if KSR.is_INFO() then
                -- $ulc after reg_fetch_contacts, every attribute of every contact
                local rc = KSR.registrar.reg_fetch_contacts("location", KSR.pv.get("$ru"), "p")
                local out = "fetch " .. rc
                for _, a in ipairs({"aor", "domain", "count"}) do
                  out = out .. " " .. a .. "=" .. tostring(KSR.pv.get("$ulc(p=>" .. a .. ")"))
                end
                for i = 0, 2 do
                  for _, a in ipairs({"addr", "path", "received", "q", "callid", "cseq", "flags", "cflags", "user_agent",
                                      "methods", "regid", "instance", "conid", "server_id"}) do
                    out = out .. " " .. a .. i .. "=" .. tostring(KSR.pv.get("$(ulc(p=>" .. a .. ")[" .. i .. "])"))
                  end
                  local e = KSR.pv.get("$(ulc(p=>expires)[" .. i .. "])")
                  if e then out = out .. " expires=" .. (e - os.time()) end
                end
                KSR.registrar.reg_free_contacts("p")
                KSR.sl.send_reply(200, out .. " freed=" .. tostring(KSR.pv.get("$ulc(p=>count)")))
                return
              end
              local rc = KSR.registrar.lookup("location")
              KSR.sl.send_reply(rc == 1 and 200 or 404,
                "lookup " .. rc .. " " .. KSR.pv.get("$ru") .. " du=" .. tostring(KSR.pv.get("$du")))
            end
            """.write(to: script, atomically: true, encoding: .utf8)
        let params: [(String, String, String)] = [
            ("registrar", "max_expires", "3600"), ("registrar", "max_contacts", "3"),
            ("registrar", "method_filtering", "1"), ("registrar", "received_avp", "$avp(RECEIVED)"),
        ]
        let kamailio = try Kamailio.start(
            script: script, port: ports[0], children: 1, modules: ["sl", "pv", "kemix", "usrloc", "registrar"],
            extra: (["modparam(\"usrloc\", \"preload\", \"location\")"]
                    + params.map { "modparam(\"\($0.0)\", \"\($0.1)\", \(Int($0.2).map(String.init) ?? "\"\($0.2)\""))" })
                .joined(separator: "\n"),
            directory: directory)
        defer { kamailio.stop() }
        let config = directory.appendingPathComponent("starling.toml")
        // The same values with the same types as Kamailio's modparam lines (an int parameter refuses a string).
        try ("[modparam.registrar]\n" + params.map { "\($0.1) = \(Int($0.2).map(String.init) ?? "\"\($0.2)\"")" }.joined(separator: "\n") + "\n")
            .write(to: config, atomically: true, encoding: .utf8)
        let starling = try Starling.start(script: script, port: ports[1], workers: 1, extra: ["--config", config.path],
                                          directory: directory)
        defer { starling.stop() }
        let python = try Requirements.tool("python3", package: "python3")
        func probe(_ port: Int) throws -> [String] {
            let r = try Command.run(python, [PackagePaths.tool("registrar_probe.py").path, "--server", "127.0.0.1:\(port)"],
                                    timeout: .seconds(60))
            #expect(r.status == 0, "\(r.output)")
            return r.output.split(separator: "\n").map(String.init)
        }
        let k = try probe(ports[0])
        let s = try probe(ports[1])
        #expect(k.count == 38 && s.count == k.count, "kamailio:\n\(k.joined(separator: "\n"))\nstarling:\n\(s.joined(separator: "\n"))")
        for (a, b) in zip(k, s) { #expect(a == b, "kamailio: \(a)\nstarling: \(b)") }
        // A few the comparison pins down.
        #expect(s.contains("older cseq: SIP/2.0 400 Bad Request | Contact: <sip:a1@10.0.0.1:5060>;expires=600;received=\"sip:SOURCE\" | P-Registrar-Error: Invalid CSeq number"))
        #expect(s.contains("star: SIP/2.0 200 OK"))
        #expect(s.contains { $0.hasPrefix("$ulc a9: SIP/2.0 200 fetch 1 aor=a9 domain=location count=1 addr0=sip:a9@10.0.0.2") }, "\(s)")
        #expect(s.contains("lookup MESSAGE, methods: SIP/2.0 404 lookup -2 sip:a7@127.0.0.1 du=nil"), "\(s)")
        #expect(starling.isRunning && kamailio.isRunning)
    }

    /// NAT keepalives from the real server: a contact registered with the sipping branch flag gets
    /// OPTIONS requests from Starling's SIP socket every natping_interval seconds (the test's socket
    /// is the registered contact).
    @Test func natKeepalivesReachTheContact() throws {
        let directory = try PackagePaths.makeTemporaryDirectory("starling-natping")
        let port = try Ports.freeUDPPort()
        let script = directory.appendingPathComponent("registrar.lua")
        try """
            function ksr_request_route()
              if KSR.is_REGISTER() then
                KSR.setbflag(7)
                KSR.registrar.save("location", 0)
              end
            end
            """.write(to: script, atomically: true, encoding: .utf8)
        let config = directory.appendingPathComponent("starling.toml")
        try """
            [modparam.nathelper]
            natping_interval = 1
            sipping_bflag = 7
            sipping_from = "sip:pinger@example.com"
            """.write(to: config, atomically: true, encoding: .utf8)
        let starling = try Starling.start(script: script, port: port, workers: 1, extra: ["--config", config.path],
                                          directory: directory)
        defer { starling.stop() }
        let phone = try UDPEndpoint()
        try phone.send("""
            REGISTER sip:127.0.0.1 SIP/2.0\r
            Via: SIP/2.0/UDP 127.0.0.1:\(phone.port);branch=z9hG4bKnatping1\r
            Max-Forwards: 70\r
            From: <sip:carol@127.0.0.1>;tag=1\r
            To: <sip:carol@127.0.0.1>\r
            Call-ID: natping-1\r
            CSeq: 1 REGISTER\r
            Contact: <sip:carol@127.0.0.1:\(phone.port)>\r
            Expires: 60\r
            Content-Length: 0\r
            \r

            """, to: port)
        let reply = phone.receive(timeout: .seconds(2))
        #expect(reply?.hasPrefix("SIP/2.0 200 OK") == true, "\(reply ?? "no reply")\n\(starling.logTail())")
        // Two pings within about three seconds, each an OPTIONS to the contact from pinger@example.com.
        var pings: [String] = []
        let clock = ContinuousClock()
        let deadline = clock.now + .seconds(5)
        while pings.count < 2, clock.now < deadline {
            if let m = phone.receive(timeout: .milliseconds(500)), m.hasPrefix("OPTIONS ") { pings.append(m) }
        }
        #expect(pings.count == 2, "\(pings)\n\(starling.logTail())")
        #expect(pings.first?.hasPrefix("OPTIONS sip:carol@127.0.0.1:\(phone.port) SIP/2.0\r\n") == true, "\(pings)")
        #expect(pings.first?.contains("From: <sip:pinger@example.com>;tag=") == true, "\(pings)")
    }
}
