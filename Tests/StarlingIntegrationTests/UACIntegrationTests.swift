import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// KSR.uac with real peers: examples/trunk-auth.lua against a SIPp trunk that challenges and checks
/// the credentials (verifyauth), and uac_req_send's MESSAGE received by a SIPp UAS.
@Suite(.serialized)
struct UACIntegrationTests {
    func trunkCalls(code: Int, header: String, password: String = "s3cret", qop: Bool = false, calls: Int = 10) throws
        -> (SIPpResult, ServerProcess, URL) {
        let directory = try PackagePaths.makeTemporaryDirectory("starling-trunk-\(code)")
        let proxyPort = try Ports.freeUDPPort()
        let scenario = directory.appendingPathComponent("uas_auth_\(code).xml")
        try String(contentsOf: PackagePaths.scenario("uas_auth.xml"), encoding: .utf8)
            .replacingOccurrences(of: "MDQOP", with: qop ? "MD5, qop=\"auth\"" : "MD5")
            .replacingOccurrences(of: "CODE", with: String(code)).replacingOccurrences(of: "HDR", with: header)
            .replacingOccurrences(of: "CHECK", with: code == 401
                ? #"<verifyauth assign_to="authvalid" username="trunkuser" password="s3cret"/>"#
                : #"<ereg regexp="Proxy-Authorization: Digest username=&quot;trunkuser&quot;, realm=&quot;carrier\.example&quot;, nonce=&quot;[0-9]+n[0-9]+&quot;, uri=&quot;sip:[^&quot;]+&quot;, opaque=&quot;op[0-9]+&quot;, response=&quot;[0-9a-f]{32}&quot;, algorithm=MD5" search_in="msg" assign_to="authvalid"/>"#)
            .write(to: scenario, atomically: true, encoding: .utf8)
        let trunk = try SIPp.uas(scenario: scenario, directory: directory, tag: "trunk")
        defer { trunk.stop() }
        let script = try RoutingServicesTests.example(
            "trunk-auth.lua", replacements: ["TRUNK": "sip:127.0.0.1:\(trunk.port)", "TRUNK_PASSWORD": password],
            directory: directory)
        let starling = try Starling.start(script: script, config: """
            [core]
            modules = ["sl", "maxfwd", "tm", "siputils", "uac"]

            [modparam.uac]
            auth_username_avp = "$avp(auser)"
            auth_password_avp = "$avp(apass)"
            auth_realm_avp = "$avp(arealm)"

            """, port: proxyPort, workers: 2, directory: directory)
        let result = try SIPp.runUAC(target: proxyPort, rate: 10, calls: calls, directory: directory,
                                     service: "+15551234", timeout: .seconds(60))
        return (result, starling, directory)
    }

    /// 407 + Proxy-Authenticate, then the INVITE with Proxy-Authorization (its fields checked by the
    /// trunk): every call completes through Starling.
    @Test func trunkAuthWith407() throws {
        let (result, starling, _) = try trunkCalls(code: 407, header: "Proxy-Authenticate")
        defer { starling.stop() }
        #expect(result.successfulCalls == 10, "\(result)\nstarling log:\n\(starling.logTail())")
        #expect(result.failedCalls == 0, "\(result)")
        #expect(starling.isRunning)
    }

    /// 401 + WWW-Authenticate, then the INVITE with Authorization, whose digest response SIPp's
    /// verifyauth recomputes from the password.
    @Test func trunkAuthWith401() throws {
        let (result, starling, _) = try trunkCalls(code: 401, header: "WWW-Authenticate")
        defer { starling.stop() }
        #expect(result.successfulCalls == 10, "\(result)\nstarling log:\n\(starling.logTail())")
        #expect(result.failedCalls == 0, "\(result)")
    }

    /// The same with qop="auth" (cnonce, nc in the response).
    @Test func trunkAuthWith401QopAuth() throws {
        let (result, starling, _) = try trunkCalls(code: 401, header: "WWW-Authenticate", qop: true)
        defer { starling.stop() }
        #expect(result.successfulCalls == 10, "\(result)\nstarling log:\n\(starling.logTail())")
        #expect(result.failedCalls == 0, "\(result)")
    }

    /// The control: a wrong password is refused by the trunk (verifyauth, 403), so the calls fail.
    @Test func wrongPasswordIsRefusedByTheTrunk() throws {
        let (result, starling, _) = try trunkCalls(code: 401, header: "WWW-Authenticate", password: "wrong", calls: 3)
        defer { starling.stop() }
        #expect(result.successfulCalls == 0, "\(result)")
        #expect(result.failedCalls == 3, "\(result)\nstarling log:\n\(starling.logTail())")
        #expect(result.errors.contains("403"), "the caller should see the trunk's 403:\n\(result.errors)")
    }

    /// A call to 112 makes the script send a MESSAGE (From, To, an extra header, Content-Type, body)
    /// to the operator's phone (a SIPp UAS checking each of them), then answer the caller.
    @Test func uacReqSendMessageReachesTheOperator() throws {
        let directory = try PackagePaths.makeTemporaryDirectory("starling-uacreq")
        let proxyPort = try Ports.freeUDPPort()
        let phone = try SIPp.uas(scenario: PackagePaths.scenario("uas_message.xml"), directory: directory, tag: "phone")
        defer { phone.stop() }
        let operatorPort = phone.port
        let script = directory.appendingPathComponent("emergency.lua")
        try """
        function ksr_request_route()
          if KSR.pv.get("$rU") == "112" then
            KSR.pv.unset("$uac_req(all)")
            KSR.pv.sets("$uac_req(method)", "MESSAGE")
            KSR.pv.sets("$uac_req(ruri)", "sip:operator@127.0.0.1:\(operatorPort)")
            KSR.pv.sets("$uac_req(furi)", "sip:emergency@starling.example")
            KSR.pv.sets("$uac_req(turi)", "sip:operator@example.com")
            KSR.pv.sets("$uac_req(hdrs)", "X-Emergency-Caller: " .. KSR.pv.get("$fU") .. "\\r\\nContent-Type: text/plain\\r\\n")
            KSR.pv.sets("$uac_req(body)", "Emergency call from " .. KSR.pv.get("$fU") .. " to 112")
            if KSR.uac.uac_req_send() > 0 then
              KSR.sl.sl_send_reply(200, "Operator Notified")
            else
              KSR.sl.sl_send_reply(500, "Notification Failed")
            end
            return
          end
          KSR.sl.sl_send_reply(404, "Not Here")
        end
        """.write(to: script, atomically: true, encoding: .utf8)
        let starling = try Starling.start(script: script, config: "[core]\nmodules = [\"sl\", \"tm\", \"uac\"]\n",
                                          port: proxyPort, workers: 2, directory: directory)
        defer { starling.stop() }
        let r = try SIPp.runUAC(scenario: PackagePaths.scenario("options.xml"), target: proxyPort, rate: 5, calls: 5,
                                directory: directory, service: "112", extra: ["-set", "expected", "200"],
                                timeout: .seconds(30))
        #expect(r.successfulCalls == 5, "\(r)\nstarling log:\n\(starling.logTail())")
        // the phone got all five, each passing its checks (a failed check fails its call)
        sleep(2)
        let got = phone.stop()
        #expect(got.successfulCalls == 5, "\(got)")
        #expect(got.failedCalls == 0, "the MESSAGE failed a check: \(got)")
    }

    /// `KSR.uac.starling_req_send_await()` under `[core] async_io`, one worker: the route sends a
    /// MESSAGE to a SIPp UAS that answers 202 after 2 s (and another to a port where nobody listens),
    /// waits for the reply without blocking the worker (OPTIONS answered meanwhile), then answers its
    /// caller with what `$uac_req(...)` holds, as Kamailio's uac:reply event route sees it.
    @Test func awaitedUACRequestUnderAsyncIO() throws {
        let directory = try PackagePaths.makeTemporaryDirectory("starling-uacreq-await")
        let phone = try SIPp.uas(scenario: PackagePaths.scenario("uas_message_slow.xml"), directory: directory, tag: "phone")
        defer { phone.stop() }
        let (proxyPort, deadPort) = try { let p = try Ports.freeUDPPorts(2); return (p[0], p[1]) }()
        let script = directory.appendingPathComponent("notify.lua")
        try """
        function ksr_request_route()
          if KSR.is_OPTIONS() then KSR.sl.sl_send_reply(200, "Pong") return end
          local target = KSR.pv.get("$rU")
          KSR.pv.unset("$uac_req(all)")
          KSR.pv.sets("$uac_req(method)", "MESSAGE")
          if target == "dead" then
            KSR.pv.sets("$uac_req(ruri)", "sip:operator@127.0.0.1:\(deadPort)")
          else
            KSR.pv.sets("$uac_req(ruri)", "sip:operator@127.0.0.1:\(phone.port)")
          end
          KSR.pv.sets("$uac_req(furi)", "sip:notify@starling.example")
          KSR.pv.sets("$uac_req(evparam)", "p-" .. target)
          local rc = KSR.uac.starling_req_send_await()
          KSR.sl.sl_send_reply(200, "Done " .. rc .. " " .. KSR.pv.get("$uac_req(evcode)") .. " "
            .. KSR.pv.get("$uac_req(evtype)") .. " " .. tostring(KSR.pv.get("$uac_req(ruri)")) .. " "
            .. tostring(KSR.pv.get("$uac_req(evparam)")) .. " " .. KSR.pv.get("$rU"))
        end
        """.write(to: script, atomically: true, encoding: .utf8)
        let starling = try Starling.start(script: script, config: """
            [core]
            modules = ["sl", "tm", "uac"]
            async_io = true
            [modparam.tm]
            fr_timer = 4000

            """, port: proxyPort, workers: 1, directory: directory)
        defer { starling.stop() }

        func finalLine(_ e: UDPEndpoint) -> String? {
            let clock = ContinuousClock()
            let deadline = clock.now + .seconds(15)
            while clock.now < deadline, let m = e.receive(timeout: clock.now.duration(to: deadline)) {
                if let line = m.split(separator: "\r\n").first, line.hasPrefix("SIP/2.0 2") { return String(line) }
            }
            return nil
        }
        let slow = try UDPEndpoint(), dead = try UDPEndpoint()
        try slow.send(DiameterFromSIPTests.invite("slow", sipPort: proxyPort, from: slow), to: proxyPort)
        try dead.send(DiameterFromSIPTests.invite("dead", sipPort: proxyPort, from: dead), to: proxyPort)
        for pong in try SIPProbe.pings(serverPort: proxyPort, count: 3) {
            #expect(pong?.hasPrefix("SIP/2.0 200 Pong") == true, "OPTIONS while the routes wait: \(pong ?? "nothing")")
        }
        #expect(slow.receive(timeout: .milliseconds(1)) == nil, "answered before the UAS replied")
        let slowLine = finalLine(slow)
        #expect(slowLine == "SIP/2.0 200 Done 202 202 1 sip:operator@127.0.0.1:\(phone.port) p-slow slow",
                "\(slowLine ?? "no answer"); log: \(starling.logTail(20))")
        // Nobody at the port: no reply, the local transaction ends (408 after fr_timer, evtype 2). fr_timer
        // is twice the UAS's 2 s pause: equal, the slow reply raced the timeout.
        let deadLine = finalLine(dead)
        #expect(deadLine == "SIP/2.0 200 Done 408 408 2 sip:operator@127.0.0.1:\(deadPort) p-dead dead",
                "\(deadLine ?? "no answer"); log: \(starling.logTail(20))")
        let got = phone.stop()
        #expect(got.successfulCalls == 1 && got.failedCalls == 0, "the UAS: \(got)")
        #expect(!starling.log.contains("error from Lua"), "\(starling.logTail(20))")
    }

    /// Upstream registration: Starling A registers the uacreg row of its SQLite file to Starling B, a
    /// registrar with digest authentication (auth_db over B's subscriber table): 401, then 200 with the
    /// contact saved at B; A refreshes before the 5 s granted run out (same Call-ID, CSeq up); B is
    /// stopped, A's refresh fails and is retried; B starts again (empty location table) and A is
    /// registered again without any help.
    @Test func upstreamRegistrationRefreshAndRecovery() throws {
        let directory = try PackagePaths.makeTemporaryDirectory("starling-uacreg")
        let ports = try Ports.freeUDPPorts(2)
        let (aPort, bPort) = (ports[0], ports[1])
        let binary = try PackagePaths.starlingBinary().path
        let bDB = directory.appendingPathComponent("registrar.db").path
        let add = try Command.run(binary, ["subscriber", "add", "acct42@reg.example", "pw42", "--db", "sqlite://\(bDB)"],
                                  timeout: .seconds(20))
        #expect(add.status == 0, "\(add.output)")
        let bScript = directory.appendingPathComponent("registrar.lua")
        try """
            function ksr_request_route()
              if not KSR.is_REGISTER() then
                local rc = KSR.registrar.lookup("location")
                KSR.sl.send_reply(rc == 1 and 200 or 404, "lookup " .. rc .. " " .. KSR.pv.get("$ru"))
                KSR.x.exit()
              end
              if KSR.auth_db.auth_check(KSR.kx.gete_fhost(), "subscriber", 1) < 0 then
                KSR.auth.auth_challenge(KSR.kx.gete_fhost(), 0)
                KSR.x.exit()
              end
              KSR.info("registered " .. KSR.pv.get("$ci") .. " cseq " .. KSR.pv.get("$cs") .. "\\n")
              KSR.registrar.save("location", 0)
            end
            """.write(to: bScript, atomically: true, encoding: .utf8)
        let bConfig = directory.appendingPathComponent("registrar.toml")
        try """
            [modparam.auth_db]
            db_url = "sqlite://\(bDB)"

            [modparam.registrar]
            min_expires = 5
            default_expires = 5
            max_expires = 5

            """.write(to: bConfig, atomically: true, encoding: .utf8)

        // A: the uacreg row, in its own database file (created by python3's sqlite3 with Kamailio's columns).
        let aDB = directory.appendingPathComponent("proxy.db").path
        let python = try Requirements.tool("python3", package: "python3")
        let create = try Command.run(python, ["-c", """
            import sqlite3, sys
            c = sqlite3.connect(sys.argv[1])
            c.execute("CREATE TABLE uacreg (id INTEGER PRIMARY KEY NOT NULL, l_uuid VARCHAR(64) DEFAULT '' NOT NULL, l_username VARCHAR(64) DEFAULT '' NOT NULL, l_domain VARCHAR(64) DEFAULT '' NOT NULL, r_username VARCHAR(64) DEFAULT '' NOT NULL, r_domain VARCHAR(64) DEFAULT '' NOT NULL, realm VARCHAR(64) DEFAULT '' NOT NULL, auth_username VARCHAR(64) DEFAULT '' NOT NULL, auth_password VARCHAR(64) DEFAULT '' NOT NULL, auth_ha1 VARCHAR(128) DEFAULT '' NOT NULL, auth_proxy VARCHAR(255) DEFAULT '' NOT NULL, expires INTEGER DEFAULT 0 NOT NULL, flags INTEGER DEFAULT 0 NOT NULL, reg_delay INTEGER DEFAULT 0 NOT NULL, contact_addr VARCHAR(255) DEFAULT '' NOT NULL, socket VARCHAR(128) DEFAULT '' NOT NULL, CONSTRAINT uacreg_l_uuid_idx UNIQUE (l_uuid))")
            c.execute("INSERT INTO uacreg (l_uuid, l_username, l_domain, r_username, r_domain, realm, auth_username, auth_password, auth_proxy, expires) VALUES ('trunk1', 'pbx', 'local.example', 'acct42', 'reg.example', 'reg.example', 'acct42', 'pw42', 'sip:127.0.0.1:\(bPort)', 60)")
            c.commit()
            """, aDB], timeout: .seconds(20))
        #expect(create.status == 0, "\(create.output)")
        let aScript = directory.appendingPathComponent("proxy.lua")
        try "function ksr_request_route() KSR.sl.send_reply(404, \"Not Here\") end\n"
            .write(to: aScript, atomically: true, encoding: .utf8)
        let aConfig = """
            [core]
            modules = ["sl", "tm", "uac"]

            [modparam.tm]
            fr_timer = 1000

            [modparam.uac]
            reg_db_url = "sqlite://\(aDB)"
            reg_contact_addr = "127.0.0.1:\(aPort)"
            reg_retry_interval = 1

            """

        func lookup() throws -> String? { try RegistrarIntegrationTests.lookup("acct42", port: bPort) }
        func waitRegistered(_ b: ServerProcess, timeout: Duration) throws -> Bool {
            let deadline = ContinuousClock.now + timeout
            while ContinuousClock.now < deadline {
                if try lookup()?.hasPrefix("SIP/2.0 200 lookup 1 sip:trunk1@127.0.0.1:\(aPort)") == true { return true }
                usleep(250_000)
            }
            return false
        }

        func startRegistrar(log: String) throws -> ServerProcess {
            let registrar = try ServerProcess(name: "starling registrar", executable: binary,
                                              arguments: Starling.arguments(script: bScript, port: bPort, workers: 2,
                                                                            extra: ["--config", bConfig.path]),
                                              logFile: directory.appendingPathComponent(log))
            try registrar.waitUntilBound(udpPort: bPort)
            return registrar
        }

        var registrar = try startRegistrar(log: "registrar.log")
        defer { registrar.stop() }
        let proxy = try Starling.start(script: aScript, config: aConfig, configName: "proxy.toml", port: aPort, workers: 2,
                                       directory: directory)
        defer { proxy.stop() }
        #expect(try waitRegistered(registrar, timeout: .seconds(10)), "not registered; proxy log:\n\(proxy.logTail())\nregistrar log:\n\(registrar.logTail())")
        // granted 5 s: refreshed about 3 s later (same Call-ID, higher CSeq)
        var lines: [Substring] = []
        let deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline {
            lines = registrar.log.split(separator: "\n").filter { $0.contains("registered ") }
            if lines.count >= 2 { break }
            usleep(250_000)
        }
        #expect(lines.count >= 2, "no refresh:\n\(registrar.logTail())")
        let callIDs = Set(lines.compactMap { $0.components(separatedBy: "registered ").last?.components(separatedBy: " cseq").first })
        #expect(callIDs.count == 1, "\(lines)")

        // The registrar goes away: refreshes time out and are retried; it comes back empty.
        registrar.stop()
        // Stay down until a refresh has timed out (the next one is due within the granted 5 s).
        let downSince = ContinuousClock.now
        while !proxy.logTail(200).contains("uacreg: trunk1: REGISTER answered 408"),
              ContinuousClock.now - downSince < .seconds(20) {
            usleep(250_000)
        }
        registrar = try startRegistrar(log: "registrar2.log")
        #expect(try waitRegistered(registrar, timeout: .seconds(20)), "not registered again; proxy log:\n\(proxy.logTail())")
        #expect(proxy.logTail(200).contains("uacreg: trunk1: REGISTER answered 408"), "\(proxy.logTail(200))")
        #expect(proxy.isRunning)
    }
}
