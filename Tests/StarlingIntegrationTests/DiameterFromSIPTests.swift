import Foundation
import Testing
import StarlingTestSupport

/// SIP routes asking a Diameter peer (issue 20): `KSR.ims_diameter_server.diameter_request` (the
/// worker waits, as Kamailio's) and `diameter_request_async` (the transaction is suspended, the
/// worker goes on, `ksr_diameter_response` continues it), against the raw-socket Python HSS
/// (Tools/diameter_peer.py) answering Cx Location-Info-Requests with a Server-Name or
/// DIAMETER_ERROR_USER_UNKNOWN, 1.5 s late.
@Suite(.serialized)
struct DiameterFromSIPTests {
    /// The route: `<user>` asks asynchronously by realm routing, `<user>-sync` synchronously to
    /// hss1.example, `nopeer` names an unknown peer. The answer decides: Server-Name -> relayed there,
    /// Experimental-Result 5001 -> 404, no answer -> 503.
    static let script = #"""
        local function lir(user)
            return '[{"avpCode":283,"vendorId":0,"Flags":64,"string":"hss.example"},' ..
                '{"avpCode":260,"vendorId":0,"Flags":64,"list":[{"avpCode":266,"vendorId":0,"Flags":64,"int32":10415},' ..
                '{"avpCode":258,"vendorId":0,"Flags":64,"int32":16777216}]},' ..
                '{"avpCode":277,"vendorId":0,"Flags":64,"int32":1},' ..
                '{"avpCode":601,"vendorId":10415,"Flags":192,"string":"sip:' .. user .. '@example"}]'
        end

        local function branch(a)
            if a == nil then KSR.tm.t_reply(503, "No Answer") return end
            if a:find('"avpCode":298,"vendorId":0,"DataType":3,"Flags":%d+,"int32":5001') then
                KSR.tm.t_reply(404, "User Unknown") return
            end
            local server = a:match('"avpCode":602,"vendorId":10415,"DataType":1,"Flags":%d+,"string":"([^"]*)"')
            if server == nil then KSR.tm.t_reply(500, "No Server-Name") return end
            KSR.pv.sets("$du", server)
            KSR.tm.t_relay()
        end

        function ksr_request_route()
            if KSR.is_OPTIONS() then KSR.sl.sl_send_reply(200, "Pong") return end
            if KSR.is_ACK() then return end
            local user = KSR.pv.get("$rU")
            KSR.tm.t_newtran()
            local peer = ""
            if user:sub(1, 6) == "nopeer" then peer = "nobody.example" end
            if user:sub(-5) == "-sync" then
                if peer == "" then peer = "hss1.example" end
                if KSR.ims_diameter_server.diameter_request(peer, 16777216, 302, lir(user)) < 0 then
                    KSR.tm.t_reply(503, "HSS Unavailable") return
                end
                branch(KSR.pv.get("$diameter_response"))
                return
            end
            if KSR.ims_diameter_server.diameter_request_async(peer, 16777216, 302, lir(user)) < 0 then
                KSR.tm.t_reply(503, "HSS Unavailable")
            end
        end

        function ksr_diameter_response(evname)
            KSR.xlog.xinfo("diameter answer in " .. evname .. "\n")
            branch(KSR.pv.get("$diameter_response"))
        end
        """#

    static func invite(_ user: String, sipPort: Int, from: UDPEndpoint) -> String {
        let tag = UUID().uuidString.prefix(8)
        return """
            INVITE sip:\(user)@127.0.0.1:\(sipPort) SIP/2.0\r
            Via: SIP/2.0/UDP 127.0.0.1:\(from.port);branch=z9hG4bK\(UUID().uuidString.prefix(12))\r
            From: <sip:caller@127.0.0.1:\(from.port)>;tag=\(tag)\r
            To: <sip:\(user)@example>\r
            Call-ID: \(UUID().uuidString)\r
            CSeq: 1 INVITE\r
            Contact: <sip:caller@127.0.0.1:\(from.port)>\r
            Max-Forwards: 70\r
            Content-Length: 0\r
            \r

            """
    }

    /// The first final reply (>= 200) within `timeout`, and the provisional status codes seen before.
    static func finalReply(_ endpoint: UDPEndpoint, timeout: Duration) -> (status: Int?, provisional: [Int]) {
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        var provisional: [Int] = []
        while clock.now < deadline, let m = endpoint.receive(timeout: clock.now.duration(to: deadline)) {
            let f = m.split(separator: " ", maxSplits: 2)
            guard f.count >= 2, f[0] == "SIP/2.0", let code = Int(f[1]) else { continue }
            if code >= 200 { return (code, provisional) }
            provisional.append(code)
        }
        return (nil, provisional)
    }

    /// The first request received within `timeout` whose request line starts with `prefix`.
    static func request(_ endpoint: UDPEndpoint, _ prefix: String, timeout: Duration) -> String? {
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        while clock.now < deadline, let m = endpoint.receive(timeout: clock.now.duration(to: deadline)) {
            if m.hasPrefix(prefix) { return m }
        }
        return nil
    }

    /// In a new temporary directory (`PackagePaths.makeTemporaryDirectory(prefix)`): the callee (a UDP
    /// endpoint), the Python HSS (answering `delayMs` late, Server-Name = the callee) and Starling with
    /// one worker running `script` towards it (`async_io` on or off).
    static func start(_ prefix: String, delayMs: Int, asyncIO: Bool) throws
        -> (callee: UDPEndpoint, hss: ServerProcess, starling: ServerProcess, sip: Int, hssLog: URL) {
        let directory = try PackagePaths.makeTemporaryDirectory(prefix)
        let callee = try UDPEndpoint()
        let (sip, h1) = try { let p = try Ports.freeUDPPorts(2); return (p[0], p[1]) }()
        let hssLog = directory.appendingPathComponent("hss1.jsonl")
        let hss = try DiameterRelayTests.startHSS("hss1.example", port: h1, log: hssLog, directory: directory,
                                                  extra: ["--unknown-prefix", "sip:unknown", "--server-name",
                                                          "sip:127.0.0.1:\(callee.port)", "--delay-ms", String(delayMs)])
        do {
            let script = directory.appendingPathComponent("cscf.lua")
            try Self.script.write(to: script, atomically: true, encoding: .utf8)
            let starling = try Starling.start(script: script, config: """
                \(asyncIO ? "[core]\nasync_io = true\n" : "")
                [diameter]
                identity = "scscf.example"
                realm = "example"
                request_timeout = 5000
                \(DiameterRelayTests.peer("hss1.example", connect: "tcp:127.0.0.1:\(h1)", realm: "hss.example", applications: ["cx"]))
                """, port: sip, workers: 1, directory: directory)
            do {
                try starling.waitUntil("logged \"peer hss1.example usable\"") { starling.log.contains("peer hss1.example usable") }
            } catch {
                starling.stop()
                throw error
            }
            return (callee, hss, starling, sip, hssLog)
        } catch {
            hss.stop()
            throw error
        }
    }

    @Test("SIP INVITEs routed on a Diameter answer: diameter_request waits, diameter_request_async suspends and the worker goes on")
    func inviteRoutedOnHSSAnswer() throws {
        let (callee, hss, starling, sip, hssLog) = try Self.start("starling-diameter-sip", delayMs: 1500, asyncIO: false)
        defer { starling.stop(); hss.stop() }

        // Async, realm routing: 100 Trying at once; while the HSS takes 1.5 s, the one worker answers
        // an OPTIONS; then the INVITE is relayed to the Server-Name the HSS gave.
        let caller = try UDPEndpoint()
        try caller.send(Self.invite("alice", sipPort: sip, from: caller), to: sip)
        for pong in try SIPProbe.pings(serverPort: sip, count: 1) {
            #expect(pong?.hasPrefix("SIP/2.0 200 Pong") == true, "OPTIONS while the Diameter request is pending: \(pong ?? "nothing")")
        }
        #expect(Self.request(callee, "INVITE sip:alice@", timeout: .milliseconds(1)) == nil, "relayed before the HSS answered")
        let relayed = Self.request(callee, "INVITE sip:alice@", timeout: .seconds(15))
        #expect(relayed != nil, "alice's INVITE not relayed; log: \(starling.logTail(30))")
        #expect(starling.log.contains("diameter answer in diameter:response"))

        // Async, unknown user: Experimental-Result 5001 -> 404 (after the 100 Trying of the suspension).
        let caller2 = try UDPEndpoint()
        try caller2.send(Self.invite("unknown1", sipPort: sip, from: caller2), to: sip)
        let r2 = Self.finalReply(caller2, timeout: .seconds(15))
        #expect(r2.status == 404 && r2.provisional.contains(100), "unknown1: \(r2)")

        // Sync: the worker waits for the answer, then relays / answers.
        let caller3 = try UDPEndpoint()
        try caller3.send(Self.invite("bob-sync", sipPort: sip, from: caller3), to: sip)
        #expect(Self.request(callee, "INVITE sip:bob-sync@", timeout: .seconds(15)) != nil, "bob-sync not relayed")
        let caller4 = try UDPEndpoint()
        try caller4.send(Self.invite("unknown2-sync", sipPort: sip, from: caller4), to: sip)
        #expect(Self.finalReply(caller4, timeout: .seconds(15)).status == 404)

        // An unknown peer: -1 at once, the script answers 503.
        let caller5 = try UDPEndpoint()
        try caller5.send(Self.invite("nopeer", sipPort: sip, from: caller5), to: sip)
        #expect(Self.finalReply(caller5, timeout: .seconds(10)).status == 503)
        #expect(starling.log.contains("Peer unknown nobody.example"))

        // The requests as the HSS saw them: Cx LIR built from the JSON, P flag, Session-Id and
        // Origin-Host of Starling.
        struct Seen: Decodable {
            var cmd: Int; var app: Int; var p: Bool; var session: String; var origin: String; var origin_realm: String
            var public_identity: String?; var route_record: [String]
        }
        let seen = ((try? String(contentsOf: hssLog, encoding: .utf8)) ?? "").split(separator: "\n")
            .compactMap { try? JSONDecoder().decode(Seen.self, from: Data($0.utf8)) }
        #expect(seen.count == 4, "\(seen)")
        #expect(seen.first?.cmd == 302 && seen.first?.app == 16777216 && seen.first?.p == true)
        #expect(seen.first?.session.hasPrefix("scscf.example;") == true && seen.first?.origin == "scscf.example")
        #expect(seen.first?.origin_realm == "example" && seen.first?.route_record == [])
        #expect(seen.map { $0.public_identity ?? "" } == ["sip:alice@example", "sip:unknown1@example", "sip:bob-sync@example",
                                                         "sip:unknown2-sync@example"])
        #expect(Set(seen.map(\.session)).count == 4)
        #expect(!starling.log.contains("Fatal error"))
    }

    /// `[core] async_io`: the same blocking-looking `diameter_request` in the request route suspends
    /// the route only. One worker, an HSS answering 2 s late: two INVITEs wait at once while OPTIONS
    /// are answered; then both are relayed to the Server-Name (and an unknown user gets 404). An
    /// unknown peer still gives -1 (the script's 503) through the same wait.
    @Test("async_io: diameter_request suspends the route, the one worker answers OPTIONS meanwhile")
    func diameterRequestUnderAsyncIO() throws {
        let (callee, hss, starling, sip, hssLog) = try Self.start("starling-diameter-asyncio", delayMs: 2000, asyncIO: true)
        defer { starling.stop(); hss.stop() }

        let alice = try UDPEndpoint(), carol = try UDPEndpoint(), unknown = try UDPEndpoint()
        try alice.send(Self.invite("alice-sync", sipPort: sip, from: alice), to: sip)
        try carol.send(Self.invite("carol-sync", sipPort: sip, from: carol), to: sip)
        try unknown.send(Self.invite("unknown3-sync", sipPort: sip, from: unknown), to: sip)
        // The three routes wait on the HSS; the worker answers OPTIONS meanwhile.
        for pong in try SIPProbe.pings(serverPort: sip, count: 3) {
            #expect(pong?.hasPrefix("SIP/2.0 200 Pong") == true, "OPTIONS while diameter_request waits: \(pong ?? "nothing")")
        }
        #expect(Self.request(callee, "INVITE sip:", timeout: .milliseconds(1)) == nil, "relayed before the HSS answered")
        var relayed: [String] = []
        for _ in 0..<2 {
            if let m = Self.request(callee, "INVITE sip:", timeout: .seconds(15)) {
                relayed.append(String(m.prefix(while: { $0 != "@" })))
            }
        }
        #expect(relayed.sorted() == ["INVITE sip:alice-sync", "INVITE sip:carol-sync"], "\(relayed); log: \(starling.logTail(30))")
        let r = Self.finalReply(unknown, timeout: .seconds(15))
        #expect(r.status == 404, "unknown3-sync: \(r)")

        // Unknown peer: -1 (the route still went through the wait), the script's 503.
        let nopeer = try UDPEndpoint()
        try nopeer.send(Self.invite("nopeer-sync", sipPort: sip, from: nopeer), to: sip)
        #expect(Self.finalReply(nopeer, timeout: .seconds(10)).status == 503)
        #expect(starling.log.contains("Peer unknown nobody.example"))

        // The HSS got the three requests (the unknown peer was refused before sending).
        let seen = ((try? String(contentsOf: hssLog, encoding: .utf8)) ?? "").split(separator: "\n")
        #expect(seen.count == 3, "\(seen)")
        #expect(!starling.log.contains("Fatal error"))
        #expect(!starling.log.contains("error from Lua"), "\(starling.logTail(30))")
    }
}
