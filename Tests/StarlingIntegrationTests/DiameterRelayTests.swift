import Foundation
import Testing
import StarlingTestSupport

/// Starling as a Diameter relay (issue 20) with real peers: Python peers on raw sockets
/// (Tools/diameter_peer.py: two HSS and an MME client) and Debian's freeDiameterd 1.2.1.
@Suite(.serialized)
struct DiameterRelayTests {
    /// examples/dra.lua: S6a by IMSI prefix (00101 -> hss1, hss2; 00102 -> hss2; 00103 -> hss2, hss1),
    /// other applications by the realm table, IMSIs outside 001 answered 5001 locally.
    static func script() throws -> String {
        try String(contentsOf: PackagePaths.root.appendingPathComponent("examples/dra.lua"), encoding: .utf8)
    }

    struct Answer: Decodable {
        var n: Int?
        var result: Int?
        var origin: String?
        var hbh_ok: Bool?
        var e2e_ok: Bool?
        var e_flag: Bool?
        var reporting: String?
        var user: String?
        var elapsed: Double?
        var cea: Int?
        var dpa: Int?
    }

    struct HSSLine: Decodable {
        var hbh: UInt32
        var e2e: UInt32
        var t: Bool
        var route_record: [String]
        var user: String?
    }

    static func lines<T: Decodable>(_ text: String, _ type: T.Type) -> [T] {
        text.split(separator: "\n").compactMap { try? JSONDecoder().decode(T.self, from: Data($0.utf8)) }
    }

    static func startHSS(_ identity: String, port: Int, log: URL, directory: URL, extra: [String] = []) throws -> ServerProcess {
        let python = try Requirements.tool("python3", package: "python3")
        let p = try ServerProcess(name: identity, executable: python,
                                  arguments: [PackagePaths.tool("diameter_peer.py").path, "hss", "--identity", identity,
                                              "--realm", "hss.example", "--port", String(port), "--log", log.path] + extra,
                                  logFile: directory.appendingPathComponent("\(identity).out"))
        try p.waitUntilListening(tcpPort: port)
        return p
    }

    static func client(port: Int, plan: String, identity: String = "mme.example", extra: [String] = []) throws -> [Answer] {
        let python = try Requirements.tool("python3", package: "python3")
        let r = try Command.run(python, [PackagePaths.tool("diameter_peer.py").path, "client", "--identity", identity,
                                         "--realm", "mme.realm", "--port", String(port), "--plan", plan] + extra, timeout: .seconds(60))
        guard r.status == 0 else { throw HarnessError("client failed (\(r.status)): \(r.output)") }
        return lines(r.output, Answer.self)
    }

    /// One `[[diameter.peers]]` table of a starling.toml.
    static func peer(_ identity: String, connect: String? = nil, realm: String? = nil, applications: [String]? = nil) -> String {
        var lines = ["[[diameter.peers]]", "identity = \"\(identity)\""]
        if let connect { lines.append("connect = \"\(connect)\"") }
        if let realm { lines.append("realm = \"\(realm)\"") }
        if let applications { lines.append("applications = [\(applications.map { "\"\($0)\"" }.joined(separator: ", "))]") }
        return lines.joined(separator: "\n")
    }

    /// Starling as dra.example (realm example), one worker, `script` written to dra.lua: `[diameter]`
    /// listening on `transport`:127.0.0.1:`dia` with the extra `settings` lines, then `tables`
    /// (`peer(...)`, `[[diameter.routes]]`); `prefix`: TOML before `[diameter]`. Returns once the
    /// Diameter listener accepts connections.
    /// The DRA's SIP port is used by nobody else: a fresh one is tried when another process took it
    /// (`TestPorts.retrying`; the CI saw one such bind failure).
    static func startDRA(_ directory: URL, script: String, dia: Int, transport: String = "tcp",
                         settings: [String] = [], tables: [String], prefix: String = "") throws -> ServerProcess {
        let file = directory.appendingPathComponent("dra.lua")
        try script.write(to: file, atomically: true, encoding: .utf8)
        let config = ([prefix, "[diameter]", "identity = \"dra.example\"", "realm = \"example\"",
                       "listen = [\"\(transport):127.0.0.1:\(dia)\"]"] + settings + tables).joined(separator: "\n")
        let starling = try TestPorts.retrying { sip in
            try Starling.start(script: file, config: config, port: sip, workers: 1, directory: directory)
        }
        do {
            try starling.waitUntilListening(tcpPort: dia)
        } catch {
            starling.stop()
            throw error
        }
        return starling
    }

    func waitForLog(_ s: ServerProcess, _ text: String, count: Int = 1) throws {
        try s.waitUntil("logged \"\(text)\"") { s.log.components(separatedBy: text).count - 1 >= count }
    }

    @Test("relay by IMSI prefix to two HSS: Route-Record, ids kept/restored, 3005 loop, 3002 at once when down, failover, malformed lengths close only that connection, watchdog down/up")
    func relayWithPythonPeers() throws {
        let directory = try PackagePaths.makeTemporaryDirectory("starling-diameter")
        let (dia, h1, h2) = try { let p = try Ports.freeUDPPorts(3); return (p[0], p[1], p[2]) }()
        let hss1Log = directory.appendingPathComponent("hss1.jsonl"), hss2Log = directory.appendingPathComponent("hss2.jsonl")
        let mute = directory.appendingPathComponent("hss1.mute")
        let hss1 = try Self.startHSS("hss1.example", port: h1, log: hss1Log, directory: directory, extra: ["--mute-dwa", mute.path])
        defer { hss1.stop() }
        var hss2 = try Self.startHSS("hss2.example", port: h2, log: hss2Log, directory: directory)
        defer { hss2.stop() }
        let starling = try Self.startDRA(
            directory, script: try Self.script(), dia: dia, settings: ["watchdog_interval = 1", "request_timeout = 3000"],
            tables: [Self.peer("hss1.example", connect: "tcp:127.0.0.1:\(h1)", realm: "hss.example", applications: ["s6a"]),
                     Self.peer("hss2.example", connect: "tcp:127.0.0.1:\(h2)", realm: "hss.example", applications: ["s6a"]),
                     Self.peer("mme.example"),
                     """
                     [[diameter.routes]]
                     realm = "hss.example"
                     application = "s6a"
                     peers = ["hss1.example:10", "hss2.example:20"]
                     """])
        defer { starling.stop() }
        try waitForLog(starling, "peer hss1.example usable")
        try waitForLog(starling, "peer hss2.example usable")

        // Routed by IMSI prefix; ids restored; Route-Record names the MME; hop-by-hop replaced.
        let a = try Self.client(port: dia, plan: """
            [{"user": "001011234567890"}, {"user": "001021234567890"}, {"user": "999991234567890"},
             {"user": "001011234567891", "route_record": ["dra.example"]},
             {"user": "001011234567890", "app": 4, "cmd": 272, "dest_realm": "nowhere.example"},
             {"user": "001081234567890"}]
            """)
        #expect(a.first?.cea == 2001)
        let r = a.filter { $0.n != nil }
        try #require(r.count == 6, "answers: \(a)")
        #expect(r[0].result == 2001 && r[0].origin == "hss1.example" && r[0].hbh_ok == true && r[0].e2e_ok == true)
        #expect(r[0].user == "001011234567890")
        #expect(r[1].result == 2001 && r[1].origin == "hss2.example" && r[1].hbh_ok == true)
        #expect(r[2].result == 5001 && r[2].origin == "dra.example" && r[2].hbh_ok == true)
        #expect(r[3].result == 3005 && r[3].e_flag == true && r[3].reporting == "dra.example")
        #expect(r[4].result == 3002 && r[4].e_flag == true)
        #expect(r[5].result == 2001 && r[5].origin == "hss1.example")  // realm route: hss1 has the lower metric
        #expect(a.last?.dpa == 2001)
        let seen1 = Self.lines((try? String(contentsOf: hss1Log, encoding: .utf8)) ?? "", HSSLine.self)
        #expect(seen1.first?.route_record == ["mme.example"])
        #expect(seen1.first?.t == false)
        #expect(!starling.log.contains("loop detected") || starling.log.contains("3005"))

        // hss2 killed: its requests get 3002 at once; 00103 fails over to hss1.
        hss2.stop(signal: SIGKILL)
        try waitForLog(starling, "peer hss2.example closed")
        let down = try Self.client(port: dia, plan: #"[{"user": "001021234567890"}, {"user": "001031234567890"}]"#).filter { $0.n != nil }
        try #require(down.count == 2, "answers: \(down)")
        #expect(down[0].result == 3002 && (down[0].elapsed ?? 9) < 1.0)
        #expect(down[1].result == 2001 && down[1].origin == "hss1.example")

        // Malformed lengths to the live listener: only that connection closes; hss1 stays open.
        let python = try Requirements.tool("python3", package: "python3")
        for c in ["short", "beyond", "underflow", "version"] {
            let m = try Command.run(python, [PackagePaths.tool("diameter_peer.py").path, "malformed", "--port", String(dia), "--case", c],
                                    timeout: .seconds(30))
            if c == "beyond" {
                // 20 of 4096 announced bytes: Starling waits for the rest (no trust, no over-read); the
                // peer is unknown and never sent a CER, so nothing else happens.
                #expect(m.output.contains("\"case\": \"beyond\""), "\(m.output)")
            } else {
                #expect(m.output.contains("\"closed\": true"), "\(c): \(m.output)")
            }
        }
        let after = try Self.client(port: dia, plan: #"[{"user": "001011234567890"}]"#).filter { $0.n != nil }
        #expect(after.first?.result == 2001 && after.first?.origin == "hss1.example")

        // hss2 back: reconnected within seconds (retried every second), usable after the REOPEN DWAs.
        hss2 = try Self.startHSS("hss2.example", port: h2, log: hss2Log, directory: directory)
        try waitForLog(starling, "peer hss2.example usable", count: 2)

        // hss1 stops answering DWRs: failover after Tw, down; answers again: usable again.
        try "".write(to: mute, atomically: true, encoding: .utf8)
        try waitForLog(starling, "peer hss1.example down")
        let whileDown = try Self.client(port: dia, plan: #"[{"user": "001081234567890"}]"#).filter { $0.n != nil }
        #expect(whileDown.first?.result == 2001 && whileDown.first?.origin == "hss2.example")  // realm route skips hss1
        try FileManager.default.removeItem(at: mute)
        try waitForLog(starling, "peer hss1.example usable", count: 2)
        #expect(!starling.log.contains("Fatal error"))
    }

    @Test("a request pending at a peer that fails is retransmitted with the T flag to the other HSS; a silent peer gets 3002 after request_timeout")
    func pendingFailover() throws {
        let directory = try PackagePaths.makeTemporaryDirectory("starling-diameter-t")
        let (dia, h1, h2) = try { let p = try Ports.freeUDPPorts(3); return (p[0], p[1], p[2]) }()
        let controlPort = try Ports.freeTCPPort()
        let hss1Log = directory.appendingPathComponent("hss1.jsonl"), hss2Log = directory.appendingPathComponent("hss2.jsonl")
        let hss1 = try Self.startHSS("hss1.example", port: h1, log: hss1Log, directory: directory)
        defer { hss1.stop() }
        let hss2 = try Self.startHSS("hss2.example", port: h2, log: hss2Log, directory: directory, extra: ["--no-answer"])
        defer { hss2.stop() }
        let starling = try Self.startDRA(
            directory, script: try Self.script(), dia: dia, settings: ["watchdog_interval = 1", "request_timeout = 1500"],
            tables: [Self.peer("hss1.example", connect: "tcp:127.0.0.1:\(h1)", realm: "hss.example"),
                     Self.peer("hss2.example", connect: "tcp:127.0.0.1:\(h2)", realm: "hss.example"),
                     Self.peer("mme.example")],
            prefix: "[control]\nlisten = \"127.0.0.1:\(controlPort)\"\ntoken = \"t0ken\"")
        defer { starling.stop() }
        let script = directory.appendingPathComponent("dra.lua")
        try waitForLog(starling, "peer hss1.example usable")
        try waitForLog(starling, "peer hss2.example usable")
        // hss2 never answers: 3002 after the 1.5 s request timeout, not silence.
        let silent = try Self.client(port: dia, plan: #"[{"user": "001021234567890"}]"#).filter { $0.n != nil }
        #expect(silent.first?.result == 3002)
        #expect((silent.first?.elapsed ?? 0) >= 1.2 && (silent.first?.elapsed ?? 99) < 8)
        // A request pending at hss2 when it dies goes to hss1 with the T flag.
        let python = try Requirements.tool("python3", package: "python3")
        let out = directory.appendingPathComponent("client.out")
        let client = try ServerProcess(name: "mme", executable: python,
                                       arguments: [PackagePaths.tool("diameter_peer.py").path, "client", "--identity", "mme.example",
                                                   "--realm", "mme.realm", "--port", String(dia), "--plan", #"[{"user": "001031234567890", "wait": 20}]"#],
                                       logFile: out)
        defer { client.stop() }
        try hss2.waitUntil("received the request") {
            Self.lines((try? String(contentsOf: hss2Log, encoding: .utf8)) ?? "", HSSLine.self).count >= 2
        }
        hss2.stop(signal: SIGKILL)
        try client.waitUntil("got its answer") { client.log.contains("\"n\": 0") }
        let answers = Self.lines(client.log, Answer.self).filter { $0.n != nil }
        #expect(answers.first?.result == 2001 && answers.first?.origin == "hss1.example" && answers.first?.hbh_ok == true)
        let seen1 = Self.lines((try? String(contentsOf: hss1Log, encoding: .utf8)) ?? "", HSSLine.self)
        #expect(seen1.last?.t == true && seen1.last?.user == "001031234567890" && seen1.last?.route_record == ["mme.example"])

        // cdp.* RPCs (Kamailio's names) and per-peer metrics.
        let binary = try PackagePaths.starlingBinary().path
        func ctl(_ args: String...) throws -> CommandResult {
            try Command.run(binary, ["ctl", "--url", "http://127.0.0.1:\(controlPort)", "--token", "t0ken"] + args, timeout: .seconds(20))
        }
        try starling.waitUntilListening(tcpPort: controlPort)
        let list = try ctl("cdp.list_peers")
        #expect(list.status == 0 && list.output.contains("hss1.example") && list.output.contains("I-Open") && list.output.contains("dra.example"),
                "\(list.output)")
        #expect(try ctl("cdp.disable_peer", "nobody.example").output.contains("peer not found"))
        #expect(try ctl("cdp.disable_peer", "hss1.example").status == 0)
        try waitForLog(starling, "peer hss1.example closed")
        let disabled = try Self.client(port: dia, plan: #"[{"user": "001011234567890"}]"#).filter { $0.n != nil }
        #expect(disabled.first?.result == 3002)
        #expect(try ctl("cdp.enable_peer", "hss1.example").status == 0)
        try waitForLog(starling, "peer hss1.example usable", count: 2)
        let metrics = try ControlAPITests.metrics(port: controlPort, token: "t0ken")
        #expect(metrics.contains("starling_diameter_peer_up{peer=\"hss1.example\",state=\"I-Open\",watchdog=\"OKAY\"} 1"), "\(metrics)")
        #expect(metrics.contains("starling_diameter_peer_answers_total{peer=\"hss1.example\",result=\"2001\"} 1"))
        #expect(metrics.contains("starling_diameter_peer_requests_relayed_total{peer=\"hss2.example\"} 2"))

        // Reload: the Diameter routing thread picks up a new script version between two requests.
        try """
            function ksr_request_route() KSR.sl.sl_send_reply(404, "Not here") end
            function ksr_diameter_request() KSR.diameter.answer(5003) end
            """.write(to: script, atomically: true, encoding: .utf8)
        var reloaded = false
        for _ in 0..<60 where !reloaded {
            let r = try Self.client(port: dia, plan: #"[{"user": "001011234567890"}]"#).filter { $0.n != nil }
            reloaded = r.first?.result == 5003
            if !reloaded { Thread.sleep(forTimeInterval: 0.5) }
        }
        #expect(reloaded, "the new script never answered: \(starling.logTail())")
    }

    @Test("TLS: a client over a tls: listener, Starling to an HSS over TLS verified against ca_list")
    func tls() throws {
        let directory = try PackagePaths.makeTemporaryDirectory("starling-diameter-tls")
        let certs = try TestCertificates.make(in: directory)
        let (dia, h1) = try { let p = try Ports.freeUDPPorts(2); return (p[0], p[1]) }()
        let hssLog = directory.appendingPathComponent("hss1.jsonl")
        let hss = try Self.startHSS("hss1.example", port: h1, log: hssLog, directory: directory,
                                    extra: ["--tls-cert", certs.serverCert, "--tls-key", certs.serverKey])
        defer { hss.stop() }
        let starling = try Self.startDRA(
            directory, script: try Self.script(), dia: dia, transport: "tls",
            tables: [Self.peer("hss1.example", connect: "tls:127.0.0.1:\(h1)", realm: "hss.example"), Self.peer("mme.example")],
            prefix: certs.tlsSection())
        defer { starling.stop() }
        try waitForLog(starling, "peer hss1.example usable")
        let a = try Self.client(port: dia, plan: #"[{"user": "001011234567890"}]"#, extra: ["--tls", "--ca", certs.ca])
        #expect(a.first?.cea == 2001)
        #expect(a.filter { $0.n != nil }.first?.result == 2001 && a.filter { $0.n != nil }.first?.origin == "hss1.example", "\(a)")
        // A plain TCP client on the TLS listener gets nothing routed.
        let plain = try? Self.client(port: dia, plan: "[]")
        #expect(plain?.first?.cea != 2001)
    }

    @Test("freeDiameterd 1.2.1 as a peer: CER/CEA, DWR/DWA, relaying through it to an HSS, DPR/DPA when it stops")
    func freeDiameterPeer() throws {
        let fd = try Requirements.tool("freeDiameterd", package: "freediameterd")
        let directory = try PackagePaths.makeTemporaryDirectory("starling-fd")
        let (dia, fdPort, h1) = try { let p = try Ports.freeUDPPorts(3); return (p[0], p[1], p[2]) }()
        let hssLog = directory.appendingPathComponent("hss1.jsonl")
        let hss = try Self.startHSS("hss1.example", port: h1, log: hssLog, directory: directory)
        defer { hss.stop() }
        let fdConf = directory.appendingPathComponent("fd.conf")
        // SecPort = 0: no TLS listener (Debian's build refuses to start without credentials otherwise).
        try """
            Identity = "fd.example";
            Realm = "fd.realm";
            Port = \(fdPort);
            SecPort = 0;
            No_SCTP;
            No_IPv6;
            TcTimer = 1;
            TwTimer = 6;
            ConnectPeer = "hss1.example" { ConnectTo = "127.0.0.1"; Port = \(h1); No_TLS; };
            ConnectPeer = "dra.example" { ConnectTo = "127.0.0.1"; Port = \(dia); No_TLS; };
            """.write(to: fdConf, atomically: true, encoding: .utf8)
        let starling = try Self.startDRA(directory, script: """
            function ksr_request_route() KSR.sl.sl_send_reply(404, "Not here") end
            function ksr_diameter_request()
                if KSR.diameter.relay("fd.example") < 0 then KSR.diameter.answer(3002) end
            end
            """, dia: dia, settings: ["watchdog_interval = 1"], tables: [Self.peer("fd.example"), Self.peer("mme.example")])
        defer { starling.stop() }
        let fdProcess = try ServerProcess(name: "freeDiameterd", executable: fd, arguments: ["-c", fdConf.path, "-d"],
                                          logFile: directory.appendingPathComponent("fd.log"))
        defer { fdProcess.stop() }
        // freeDiameterd connects to Starling (R-Open on Starling's side) and to the HSS.
        try waitForLog(starling, "peer fd.example open (R-Open)")
        try fdProcess.waitUntil("opened hss1.example") { fdProcess.log.contains("'STATE_OPEN'\t'hss1.example'") || fdProcess.log.contains("-> 'STATE_OPEN'") && fdProcess.log.contains("hss1.example") }
        // Watchdog: Starling's DWRs every ~1 s are answered; the peer stays usable through 3 s of silence.
        Thread.sleep(forTimeInterval: 3)
        #expect(!starling.log.contains("peer fd.example down"))
        // Relayed through freeDiameterd to the HSS and back.
        let a = try Self.client(port: dia, plan: #"[{"user": "001011234567890"}]"#).filter { $0.n != nil }
        #expect(a.first?.result == 2001 && a.first?.origin == "hss1.example" && a.first?.hbh_ok == true && a.first?.e2e_ok == true,
                "\(a) fd log: \(fdProcess.logTail(20))")
        let seen = Self.lines((try? String(contentsOf: hssLog, encoding: .utf8)) ?? "", HSSLine.self)
        #expect(seen.last?.route_record.contains("mme.example") == true && seen.last?.route_record.contains("dra.example") == true)
        // freeDiameterd stops: it sends DPR, Starling answers DPA and closes.
        fdProcess.stop()
        try waitForLog(starling, "peer fd.example closed")
        #expect(!starling.log.contains("Fatal error"))
    }

    /// python-diameter's interpreter (the venv scripts/install-deps.sh makes).
    static func pythonDiameter() throws -> String {
        let venv = ProcessInfo.processInfo.environment["STARLING_PYDIAMETER_VENV"] ?? "/opt/starling-test-venv"
        let python = venv + "/bin/python3"
        guard FileManager.default.isExecutableFile(atPath: python),
              (try? Command.run(python, ["-c", "import diameter"], timeout: .seconds(30)))?.status == 0 else {
            throw HarnessError("python-diameter (PyPI) is not installed in \(venv): run scripts/install-deps.sh")
        }
        return python
    }

    struct PyAnswer: Decodable {
        var user: String?
        var result: Int?
        var origin: String?
        var e2e_ok: Bool?
        var error: String?
    }

    @Test("python-diameter peers through Starling, and freeDiameterd relaying to Starling: MME -> freeDiameterd -> Starling -> HSS")
    func pythonDiameterAndFreeDiameterTowardsStarling() throws {
        let fd = try Requirements.tool("freeDiameterd", package: "freediameterd")
        let python = try Self.pythonDiameter()
        let tool = PackagePaths.tool("pydiameter_peer.py").path
        let directory = try PackagePaths.makeTemporaryDirectory("starling-pydiameter")
        let (dia, fdPort, h3, mme2) = try { let p = try Ports.freeUDPPorts(4); return (p[0], p[1], p[2], p[3]) }()
        let hssLog = directory.appendingPathComponent("hss3.jsonl")
        // The HSS: a python-diameter node that accepts Starling.
        let hss = try ServerProcess(name: "hss3", executable: python,
                                    arguments: [tool, "hss", "--identity", "hss3.example", "--realm", "hss.example", "--port", String(h3),
                                                "--peer", "dra.example:example", "--log", hssLog.path],
                                    logFile: directory.appendingPathComponent("hss3.out"))
        defer { hss.stop() }
        try hss.waitUntilListening(tcpPort: h3)
        let starling = try Self.startDRA(directory, script: """
            function ksr_request_route() KSR.sl.sl_send_reply(404, "Not here") end
            function ksr_diameter_request()
                local imsi = KSR.diameter.get_avp("User-Name")
                if imsi == "001019999999999" then
                    -- answered here; the HSS is told asynchronously (its answer runs ksr_diameter_response)
                    local n = KSR.ims_diameter_server.diameter_request_async("hss3.example", 16777251, 316,
                        '[{"avpCode":260,"vendorId":0,"Flags":64,"list":[{"avpCode":266,"vendorId":0,"Flags":64,"int32":10415},' ..
                        '{"avpCode":258,"vendorId":0,"Flags":64,"int32":16777251}]},' ..
                        '{"avpCode":277,"vendorId":0,"Flags":64,"int32":1},' ..
                        '{"avpCode":283,"vendorId":0,"Flags":64,"string":"hss.example"},' ..
                        '{"avpCode":1,"vendorId":0,"Flags":64,"string":"001019999999998"},' ..
                        '{"avpCode":1032,"vendorId":10415,"Flags":192,"int32":1004},' ..
                        '{"avpCode":1405,"vendorId":10415,"Flags":192,"int32":34},' ..
                        '{"avpCode":1407,"vendorId":10415,"Flags":192,"hexdump":"00f110"}]')
                    KSR.info("async sent: " .. n .. "\\n")
                    KSR.pv.sets("$diameter_response", '[{"avpCode":268,"vendorId":0,"Flags":64,"int32":2001},' ..
                        '{"avpCode":1,"vendorId":0,"Flags":64,"string":"' .. imsi .. '"}]')
                    return
                end
                if KSR.diameter.relay("hss3.example") < 0 then KSR.diameter.answer(3002) end
            end
            function ksr_diameter_response(evname)
                local a = KSR.pv.get("$diameter_response") or "none"
                KSR.info("async answer in " .. evname .. ": " .. (a:match('"avpCode":268,[^}]*"int32":(%d+)') or a) .. "\\n")
            end
            """, dia: dia,
            tables: [Self.peer("hss3.example", connect: "tcp:127.0.0.1:\(h3)", realm: "hss.example", applications: ["s6a"]),
                     Self.peer("mme.example", applications: ["s6a"]), Self.peer("fd.example")])
        defer { starling.stop() }
        try waitForLog(starling, "peer hss3.example usable")

        // 1. A python-diameter MME connects to Starling: ULRs relayed to the python-diameter HSS.
        let direct = try Command.run(python, [tool, "client", "--identity", "mme.example", "--realm", "mme.realm",
                                              "--port", String(try Ports.freeTCPPort()), "--peer", "dra.example:example:\(dia)",
                                              "--dest-realm", "hss.example", "--users", "001011234567890,001011234567891,001019999999999"],
                                     timeout: .seconds(90))
        let a = Self.lines(direct.output, PyAnswer.self).filter { $0.user != nil || $0.error != nil }
        #expect(a.count == 3 && a.allSatisfy { $0.result == 2001 && $0.e2e_ok == true }, "\(direct.output) starling: \(starling.logTail(20))")
        #expect(a.map(\.user) == ["001011234567890", "001011234567891", "001019999999999"])
        // The last one answered by the script through $diameter_response (JSON), the others by the HSS.
        #expect(a.map { $0.origin ?? "" } == ["hss3.example", "hss3.example", "dra.example"])
        // diameter_request_async from ksr_diameter_request(): sent (0), its answer ran
        // ksr_diameter_response on the Diameter routing thread.
        try waitForLog(starling, "async answer in diameter:response: 2001")
        #expect(starling.log.contains("async sent: 0"))

        // 2. freeDiameterd between a python-diameter MME and Starling: it connects to both (Debian's
        // build has no extension to accept unknown peers), the MME sends through it to Starling's
        // realm, Starling relays to the HSS.
        let fdConf = directory.appendingPathComponent("fd.conf")
        try """
            Identity = "fd.example";
            Realm = "fd.realm";
            Port = \(fdPort);
            SecPort = 0;
            No_SCTP;
            No_IPv6;
            TcTimer = 1;
            TwTimer = 6;
            ConnectPeer = "dra.example" { ConnectTo = "127.0.0.1"; Port = \(dia); No_TLS; };
            ConnectPeer = "mme2.example" { ConnectTo = "127.0.0.1"; Port = \(mme2); No_TLS; };
            """.write(to: fdConf, atomically: true, encoding: .utf8)
        let client = try ServerProcess(name: "mme2", executable: python,
                                       arguments: [tool, "client", "--identity", "mme2.example", "--realm", "mme.realm", "--port", String(mme2),
                                                   "--peer", "fd.example:fd.realm", "--dest-realm", "example", "--users", "001029999999999",
                                                   // freeDiameterd may have its connection to mme2 up before the
                                                   // one to Starling: it answers 3002 then (seen under load).
                                                   "--retries", "10"],
                                       logFile: directory.appendingPathComponent("mme2.out"))
        defer { client.stop() }
        try client.waitUntilListening(tcpPort: mme2)
        let fdProcess = try ServerProcess(name: "freeDiameterd", executable: fd, arguments: ["-c", fdConf.path, "-d"],
                                          logFile: directory.appendingPathComponent("fd.log"))
        defer { fdProcess.stop() }
        try waitForLog(starling, "peer fd.example open (R-Open)")
        try client.waitUntil("an answer through freeDiameterd") { client.log.contains("\"result\"") || client.log.contains("\"error\"") }
        let b = Self.lines(client.log, PyAnswer.self).filter { $0.user != nil || $0.error != nil }
        #expect(b.first?.result == 2001 && b.first?.origin == "hss3.example" && b.first?.e2e_ok == true,
                "\(client.logTail(20)) fd: \(fdProcess.logTail(20))")
        let seen = Self.lines((try? String(contentsOf: hssLog, encoding: .utf8)) ?? "", HSSLine.self)
        #expect(seen.count == 4)
        #expect(seen.map { $0.user ?? "" }.contains("001019999999998"))
        #expect(seen.first?.route_record == ["mme.example"])
        #expect(seen.last?.route_record == ["mme2.example", "fd.example"], "\(seen.last?.route_record ?? [])")
        #expect(seen.last?.user == "001029999999999")
        #expect(!starling.log.contains("Fatal error"))
    }
}
