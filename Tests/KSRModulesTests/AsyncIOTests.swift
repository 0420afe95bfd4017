import Foundation
import SIPCore
import SIPTransport
import StarlingTestSupport
import Testing
import KSRModules
import StarlingKEMI
import StarlingLua
import StarlingServer
import StarlingTesting
import Synchronization

/// `[core] async_io`: routes as coroutines that http_client calls suspend (against a real HTTP
/// server), with their message and variables intact when they resume; retransmissions absorbed,
/// async_max_pending, script errors and budget aborts in the middle of a wait, reloads.
@Suite(.serialized) struct AsyncIOTests {
    let server: TestHTTPServer
    init() throws { server = try TestHTTPServer() }

    func harness(_ script: String, maxPending: Int = 100, timeoutMs: Int = 3000, httpcon: [String] = [],
                 asyncIO: Bool = true) throws -> ScriptHarness {
        let params: [String: [String: [String]]] = ["http_client": ["timeout_mode": ["2"], "connection_timeout": ["\(timeoutMs)"],
                                                                    "httpcon": httpcon]]
        let h = try ScriptHarness(script: tmSaveHelper + "BASE = \"\(server.base)\"\n" + script,
                                  config: ModuleConfiguration(params: params))
        if asyncIO { h.dispatcher.enableAsyncIO(maxPending: maxPending, pending: AsyncPendingRequests()) }
        return h
    }

    static func invite(_ callID: String, branch: String? = nil) -> String {
        """
        INVITE sip:bob@example.com SIP/2.0\r
        Via: SIP/2.0/UDP 192.0.2.10:5060;branch=\(branch ?? "z9hG4bK-\(callID)")\r
        Max-Forwards: 70\r
        To: <sip:bob@example.com>\r
        From: <sip:alice@example.com>;tag=a-\(callID)\r
        Call-ID: \(callID)\r
        CSeq: 1 INVITE\r
        Content-Length: 0\r
        \r

        """
    }

    static func replies(_ h: ScriptHarness) -> [(status: Int, reason: String, callID: String)] {
        h.sender.sent.compactMap { s in
            guard let m = s.message, !m.isRequest else { return nil }
            let first = s.text.split(separator: "\r\n").first.map(String.init) ?? ""
            let reason = first.split(separator: " ", maxSplits: 2).dropFirst(2).first.map(String.init) ?? ""
            return (m.statusCode, reason, TMT.header(s, "Call-ID") ?? "")
        }
    }

    /// Each route posts its Call-ID; the answers come back while the other route waits, and each
    /// reply carries its own message's Call-ID, AVP and answer.
    static let echoScript = """
        function ksr_request_route()
          local ci = KSR.pv.get("$ci")
          KSR.pv.sets("$avp(mine)", ci)
          KSR.pv.sets("$var(seen)", ci)
          local rc = KSR.http_client.query_post(BASE .. "/echo", ci, "$var(answer)")
          local answer = KSR.pv.get("$var(answer)")
          if KSR.pv.get("$avp(mine)") ~= ci or KSR.pv.get("$ci") ~= ci then
            KSR.sl.sl_send_reply(500, "state lost")
            return
          end
          KSR.sl.sl_send_reply(200, rc .. " " .. answer)
        end
        """

    @Test func queriesWaitWithoutBlockingAndResumeWithTheirMessage() throws {
        let h = try harness(Self.echoScript)
        #expect(try h.route(Self.invite("c1")) == .waiting)
        #expect(try h.route(Self.invite("c2")) == .waiting)
        #expect(h.sender.sent.isEmpty)
        #expect(h.dispatcher.waitingRoutes == 2)
        #expect(h.runAsync { Self.replies(h).count == 2 })
        let got = Self.replies(h).sorted { $0.callID < $1.callID }
        #expect(got.map(\.status) == [200, 200])
        #expect(got.map(\.reason) == ["200 POST|application/x-www-form-urlencoded||c1", "200 POST|application/x-www-form-urlencoded||c2"])
        #expect(got.map(\.callID) == ["c1", "c2"])
        #expect(h.dispatcher.waitingRoutes == 0)
    }

    @Test func retransmissionOfAWaitingRequestIsAbsorbed() throws {
        let h = try harness(Self.echoScript)
        #expect(try h.route(Self.invite("r1")) == .waiting)
        #expect(try h.route(Self.invite("r1")) == .absorbed)
        #expect(h.dispatcher.stats.asyncAbsorbed.load(ordering: .relaxed) == 1)
        #expect(h.runAsync { Self.replies(h).count == 1 })
        // Settled: no second route ran, and the request is no longer waiting (routed again as new).
        #expect(h.settleAsync())
        #expect(Self.replies(h).count == 1)
        #expect(try h.route(Self.invite("r1")) == .waiting)
        #expect(h.runAsync { Self.replies(h).count == 2 })
    }

    @Test func beyondAsyncMaxPendingRequestsGet503() throws {
        let h = try harness(Self.echoScript, maxPending: 1)
        #expect(try h.route(Self.invite("m1")) == .waiting)
        #expect(try h.route(Self.invite("m2")) == .rejected(503))
        #expect(Self.replies(h).map(\.status) == [503])
        #expect(h.dispatcher.stats.asyncRejected.load(ordering: .relaxed) == 1)
        #expect(h.runAsync { Self.replies(h).count == 2 })
        #expect(try h.route(Self.invite("m3")) == .waiting)
        #expect(h.runAsync { Self.replies(h).count == 3 })
    }

    @Test func scriptErrorAfterTheWaitEndsThatRouteOnly() throws {
        let h = try harness("""
            function ksr_request_route()
              if KSR.pv.get("$ci") == "bad" then
                KSR.http_client.query(BASE .. "/route", "$var(x)")
                local t = nil
                return t.field
              end
              KSR.http_client.query(BASE .. "/route", "$var(x)")
              KSR.sl.sl_send_reply(200, "fine")
            end
            """)
        #expect(try h.route(Self.invite("bad")) == .waiting)
        #expect(try h.route(Self.invite("good")) == .waiting)
        #expect(h.runAsync { Self.replies(h).count == 1 && h.dispatcher.waitingRoutes == 0 })
        #expect(Self.replies(h).map(\.callID) == ["good"])
        #expect(h.dispatcher.stats.scriptErrors.load(ordering: .relaxed) == 1)
        // The worker and the state carry on.
        #expect(try h.route(Self.invite("good2")) == .waiting)
        #expect(h.runAsync { Self.replies(h).count == 2 })
    }

    @Test func budgetAbortAfterTheWaitEndsThatRouteOnly() throws {
        let h = try harness("""
            function ksr_request_route()
              KSR.http_client.query(BASE .. "/route", "$var(x)")
              if KSR.pv.get("$ci") == "loop" then
                while true do end
              end
              KSR.sl.sl_send_reply(200, "fine")
            end
            """)
        #expect(try h.route(Self.invite("loop")) == .waiting)
        #expect(try h.route(Self.invite("ok")) == .waiting)
        #expect(h.runAsync { h.dispatcher.waitingRoutes == 0 })
        #expect(Self.replies(h).map(\.callID) == ["ok"])
        #expect(h.dispatcher.stats.budgetAborts.load(ordering: .relaxed) == 1)
        #expect(try h.route(Self.invite("ok2")) == .waiting)
        #expect(h.runAsync { Self.replies(h).count == 2 })
    }

    @Test func memoryLimitAfterTheWaitEndsThatRouteOnly() throws {
        let h = try harness("""
            function ksr_request_route()
              KSR.http_client.query(BASE .. "/route", "$var(x)")
              if KSR.pv.get("$ci") == "hog" then
                local t = {}
                for i = 1, 50000000 do t[i] = { i } end
              end
              KSR.sl.sl_send_reply(200, "fine")
            end
            """)
        #expect(try h.route(Self.invite("hog")) == .waiting)
        #expect(h.runAsync { h.dispatcher.waitingRoutes == 0 })
        #expect(Self.replies(h).isEmpty)
        #expect(h.dispatcher.stats.scriptErrors.load(ordering: .relaxed) == 1)
        #expect(h.engine.memoryInUse < 32 << 20)
        #expect(try h.route(Self.invite("after")) == .waiting)
        #expect(h.runAsync { Self.replies(h).count == 1 })
    }

    /// Each resume gets a fresh budget: two waits whose Lua work together exceeds one budget pass.
    @Test func theBudgetAppliesPerResume() throws {
        let h = try harness("""
            local function work() local n = 0 for i = 1, 1200000 do n = n + i end return n end
            function ksr_request_route()
              work()
              KSR.http_client.query(BASE .. "/route", "$var(x)")
              work()
              KSR.http_client.query(BASE .. "/route", "$var(x)")
              work()
              KSR.sl.sl_send_reply(200, "fine")
            end
            """)
        #expect(try h.route(Self.invite("b1")) == .waiting)
        #expect(h.runAsync { Self.replies(h).count == 1 })
        #expect(h.dispatcher.stats.budgetAborts.load(ordering: .relaxed) == 0)
    }

    @Test func aServiceThatNeverAnswersTimesOutAndTheRouteAnswersItsFailure() throws {
        let h = try harness("""
            function ksr_request_route()
              local rc = KSR.http_client.query(BASE .. "/slow", "$var(x)")
              if rc < 0 then KSR.sl.sl_send_reply(503, "service failed " .. rc) return end
              KSR.sl.sl_send_reply(200, "late")
            end
            """, timeoutMs: 300)
        #expect(try h.route(Self.invite("t1")) == .waiting)
        #expect(h.runAsync(timeout: .seconds(10)) { Self.replies(h).count == 1 })
        #expect(Self.replies(h).first?.status == 503)
        #expect(Self.replies(h).first?.reason == "service failed -28")
    }

    /// A reload while a route waits: it finishes in the version it started in; new messages get the
    /// new version.
    @Test func aWaitingRouteFinishesInItsOwnScriptVersion() throws {
        let h = try harness("""
            function ksr_request_route()
              KSR.http_client.query(BASE .. "/route", "$var(x)")
              KSR.sl.sl_send_reply(200, "version one")
            end
            """)
        #expect(try h.route(Self.invite("v1")) == .waiting)
        let next = try LuaEngine(script: ScriptSource(path: "v2.lua", bytes: Array("""
            BASE = "\(server.base)"
            function ksr_request_route()
              KSR.http_client.query(BASE .. "/route", "$var(x)")
              KSR.sl.sl_send_reply(200, "version two")
            end
            """.utf8)), registry: h.registry, context: h.context)
        h.dispatcher.use(next)
        #expect(try h.route(Self.invite("v2")) == .waiting)
        #expect(h.runAsync { Self.replies(h).count == 2 })
        let got = Dictionary(uniqueKeysWithValues: Self.replies(h).map { ($0.callID, $0.reason) })
        #expect(got["v1"] == "version one")
        #expect(got["v2"] == "version two")
    }

    /// Where Lua cannot yield (a table.sort comparator) or outside the route coroutine (a failure
    /// route, a nested route), calls block as without async_io.
    @Test func callsWhereTheRouteCannotYieldBlock() throws {
        let h = try harness("""
            function ksr_request_route()
              local t = { 2, 1 }
              table.sort(t, function(a, b)
                KSR.pv.seti("$var(rc)", KSR.http_client.query(BASE .. "/route", "$var(x)"))
                return a < b
              end)
              KSR.sl.sl_send_reply(200, "sorted " .. KSR.pv.get("$var(rc)"))
            end
            """)
        guard case .routed(.ok) = try h.route(Self.invite("s1")) else {
            Issue.record("expected the route to finish without waiting")
            return
        }
        #expect(Self.replies(h).map(\.reason) == ["sorted 200"])
    }

    @Test func pcallAroundAWaitAndCoroutineYieldInARoute() throws {
        let h = try harness("""
            function ksr_request_route()
              if KSR.pv.get("$ci") == "yield" then coroutine.yield() end
              local ok, rc = pcall(KSR.http_client.query, BASE .. "/route", "$var(x)")
              KSR.sl.sl_send_reply(200, tostring(ok) .. " " .. tostring(rc) .. " " .. KSR.pv.get("$var(x)"))
            end
            """)
        guard case .routed(.error) = try h.route(Self.invite("yield")) else {
            Issue.record("coroutine.yield in a route must end it as an error")
            return
        }
        #expect(try h.route(Self.invite("p1")) == .waiting)
        #expect(h.runAsync { Self.replies(h).count == 1 })
        #expect(Self.replies(h).first?.reason == "true 200 sip:alice@10.0.0.1")
    }

    /// `$var`s: the route gets back those it had when it yielded, even if another message's route
    /// changed them meanwhile.
    @Test func varsAreTheRoutesOwnAcrossTheWait() throws {
        let h = try harness("""
            function ksr_request_route()
              KSR.pv.sets("$var(who)", KSR.pv.get("$ci"))
              KSR.http_client.query(BASE .. "/route", "$var(x)")
              KSR.sl.sl_send_reply(200, KSR.pv.get("$var(who)"))
            end
            """)
        #expect(try h.route(Self.invite("w1")) == .waiting)
        #expect(try h.route(Self.invite("w2")) == .waiting)
        #expect(h.runAsync { Self.replies(h).count == 2 })
        for r in Self.replies(h) { #expect(r.reason == r.callID) }
    }

    /// With tm: the route creates the transaction before waiting; retransmissions are absorbed and
    /// the relayed request carries what the route set.
    @Test func statefulRouteWaitsThenRelays() throws {
        let h = try harness("""
            function ksr_request_route()
              KSR.tm.t_newtran()
              local rc = KSR.http_client.query(BASE .. "/route", "$var(target)")
              KSR.pv.sets("$ru", KSR.pv.get("$var(target)"))
              KSR.pv.sets("$du", "sip:192.0.2.50:5060")
              KSR.tm.t_relay()
            end
            """)
        #expect(try h.route(Self.invite("st1")) == .waiting)
        #expect(try h.route(Self.invite("st1")) == .absorbed)
        #expect(h.runAsync { !TMT.sent(h, "INVITE").isEmpty })
        #expect(TMT.sent(h, "INVITE").map(TMT.requestURI) == ["sip:alice@10.0.0.1"])
        #expect(h.sender.sent.filter { TMT.status($0) == 100 }.count <= 2)
    }
}

extension AsyncIOTests {
    /// Named connections with `failover` wait without blocking too: the first try's completion starts
    /// the failover connection's try, the route resumes once with the final result. Every case gives
    /// exactly what the blocking call gives (the same script without async_io): refused, timed out
    /// and 5xx first tries answered by the failover connection, a missing failover connection (-1,
    /// variable emptied), a failover connection that fails too (its own result, no second failover).
    @Test func connectionsWithFailoverWaitAndGiveTheBlockingResults() throws {
        let closed = try TestPorts.next()
        let (base, dead) = ("http://127.0.0.1:\(server.port)", "http://127.0.0.1:\(closed)")
        let httpcon = [
            "backup=>\(base)/route", "refused=>\(dead);failover=backup", "slow=>\(base)/slow;timeout=500;failover=backup",
            "error=>\(base)/error;failover=backup", "dead=>\(dead);failover=nosuch", "refused2=>\(dead);failover=error",
            "both=>\(dead);failover=refused2", "notfound=>\(base)/notfound;failover=backup",
        ]
        let script = """
            function ksr_request_route()
              KSR.pv.sets("$var(b)", "unset")
              local rc = KSR.http_client.curl_connect(KSR.pv.get("$ci"), "", "$var(b)")
              KSR.sl.sl_send_reply(200, rc .. " " .. string.gsub(KSR.pv.get("$var(b)") or "<null>", "\\n", "|"))
            end
            """
        let cases = ["refused", "slow", "error", "dead", "both", "notfound", "backup"]
        let blocking = try harness(script, httpcon: httpcon, asyncIO: false)
        for c in cases { _ = try blocking.route(Self.invite(c)) }
        let expected = Dictionary(uniqueKeysWithValues: Self.replies(blocking).map { ($0.callID, $0.reason) })
        #expect(expected["refused"] == "200 sip:alice@10.0.0.1|second line|")
        #expect(expected["slow"] == "200 sip:alice@10.0.0.1|second line|")
        #expect(expected["error"] == "200 sip:alice@10.0.0.1|second line|")
        #expect(expected["dead"] == "-1 ")
        #expect(expected["both"] == "-7 ")
        #expect(expected["notfound"] == "404 no such user|")

        let h = try harness(script, httpcon: httpcon)
        let start = ContinuousClock.now
        for c in cases { #expect(try h.route(Self.invite(c)) == .waiting, "\(c)") }
        // All seven wait at once, the slow one's 500 ms timeout then its failover included.
        #expect(h.dispatcher.waitingRoutes == cases.count)
        #expect(h.runAsync { Self.replies(h).count == cases.count })
        let got = Dictionary(uniqueKeysWithValues: Self.replies(h).map { ($0.callID, $0.reason) })
        #expect(got == expected)
        #expect(ContinuousClock.now - start < .seconds(4), "the slow connection's 500 ms timeout was not applied")
    }

    /// A reply route waits too; the reply is relayed (or dropped) when it resumes, with a script
    /// error and a budget abort after the wait handled as without async_io (relayed).
    @Test func replyRoutesWaitAndAreRelayedWhenTheyEnd() throws {
        let h = try harness("""
            function ksr_request_route() end
            function ksr_reply_route()
              KSR.http_client.query(BASE .. "/route", "$var(x)")
              local mode = KSR.pv.get("$hdr(X-Mode)") or ""
              if mode == "drop" then KSR.x.drop() end
              if mode == "error" then error("boom after the wait") end
              if mode == "loop" then while true do end end
            end
            """)
        func reply(_ mode: String) -> String {
            Msg.ringing.replacingOccurrences(of: "Call-ID:", with: "X-Mode: \(mode)\r\nCall-ID:")
        }
        #expect(try h.route(reply("relay")) == .waiting)
        #expect(h.sender.sent.isEmpty)
        #expect(h.runAsync { h.sender.sent.count == 1 })
        #expect(h.sender.sent.first.map(TMT.status) == 180)
        #expect(try h.route(reply("drop")) == .waiting)
        #expect(h.runAsync { h.dispatcher.waitingRoutes == 0 })
        #expect(h.settleAsync())
        #expect(h.sender.sent.count == 1)
        #expect(try h.route(reply("error")) == .waiting)
        #expect(try h.route(reply("loop")) == .waiting)
        #expect(h.runAsync { h.sender.sent.count == 3 && h.dispatcher.waitingRoutes == 0 })
        #expect(h.dispatcher.stats.scriptErrors.load(ordering: .relaxed) == 1)
        #expect(h.dispatcher.stats.budgetAborts.load(ordering: .relaxed) == 1)
    }

    /// Routes that end reuse one coroutine (the state's spare): after a route that finished, one that
    /// failed and one that exited, the next routes still run and wait. A script that kept a route's
    /// coroutine (`coroutine.running()`) and resumes it while another message's route waits in it
    /// only ends that waiting route with an error; the worker goes on.
    @Test func routeCoroutinesAreReusedAndCannotBeResumedByTheScript() throws {
        let h = try harness("""
            function ksr_request_route()
              local ci = KSR.pv.get("$ci")
              if ci == "keep" then KEPT = coroutine.running() KSR.sl.sl_send_reply(200, "kept") return end
              if ci == "err" then error("boom") end
              if ci == "exit" then KSR.sl.sl_send_reply(200, "exit") KSR.x.exit() end
              if ci == "poke" then
                local ok, e = coroutine.resume(KEPT)
                KSR.sl.sl_send_reply(200, "poke " .. tostring(ok))
                return
              end
              local rc = KSR.http_client.query_post(BASE .. "/echo", ci, "$var(answer)")
              KSR.sl.sl_send_reply(200, rc .. " " .. KSR.pv.get("$var(answer)"))
            end
            """)
        #expect(try h.route(Self.invite("keep")) == .routed(.ok))
        #expect(try h.route(Self.invite("w1")) == .waiting)   // in the kept (reused) coroutine
        #expect(try h.route(Self.invite("poke")) == .routed(.ok))
        #expect(h.runAsync { h.dispatcher.waitingRoutes == 0 })
        #expect(h.settleAsync())
        #expect(Self.replies(h).map(\.reason) == ["kept", "poke false"])
        #expect(h.dispatcher.stats.scriptErrors.load(ordering: .relaxed) == 1)
        guard case .routed(.error) = try h.route(Self.invite("err")) else {
            Issue.record("expected a script error")
            return
        }
        #expect(try h.route(Self.invite("exit")) == .routed(.exited))
        for ci in ["w2", "w3"] { #expect(try h.route(Self.invite(ci)) == .waiting) }
        #expect(h.runAsync { Self.replies(h).count == 5 })
        #expect(Self.replies(h).suffix(2).map(\.callID).sorted() == ["w2", "w3"])
        #expect(Self.replies(h).suffix(2).allSatisfy { $0.reason.hasPrefix("200 POST|") })
    }

    /// `KSR.uac.starling_req_send_await()`: the route waits for the final reply of its MESSAGE and
    /// gets the code, with `$uac_req(...)` as Kamailio's uac:reply event route sees it, even though
    /// another route changed `$uac_req` meanwhile. Where the route cannot wait: -1, nothing sent.
    @Test func awaitedUACRequestResumesWithItsReply() throws {
        let h = try harness("""
            function ksr_request_route()
              local ci = KSR.pv.get("$ci")
              KSR.pv.unset("$uac_req(all)")
              KSR.pv.sets("$uac_req(method)", ci == "m2" and "OPTIONS" or "MESSAGE")
              KSR.pv.sets("$uac_req(ruri)", "sip:operator@192.0.2.60:5070")
              KSR.pv.sets("$uac_req(furi)", "sip:notify@proxy.example")
              KSR.pv.sets("$uac_req(evparam)", ci)
              local t = { 2, 1 }
              if ci == "sorted" then
                table.sort(t, function(a, b) KSR.pv.seti("$var(rc)", KSR.uac.starling_req_send_await()) return a < b end)
                KSR.sl.sl_send_reply(200, "sorted " .. KSR.pv.get("$var(rc)"))
                return
              end
              local rc = KSR.uac.starling_req_send_await()
              KSR.sl.sl_send_reply(200, rc .. " " .. KSR.pv.get("$uac_req(evcode)") .. " " .. KSR.pv.get("$uac_req(evtype)")
                .. " " .. KSR.pv.get("$uac_req(method)") .. " " .. KSR.pv.get("$uac_req(evparam)"))
            end
            """)
        #expect(try h.route(Self.invite("m1")) == .waiting)
        #expect(try h.route(Self.invite("m2")) == .waiting)
        let message = try #require(TMT.sent(h, "MESSAGE").first)
        let options = try #require(TMT.sent(h, "OPTIONS").first)
        #expect(Self.replies(h).isEmpty)
        let far = SocketAddress(ip: "192.0.2.60", port: 5070)!
        try h.route(TMT.reply(to: options, 200, "OK"), from: far)
        try h.route(TMT.reply(to: message, 486, "Busy Here"), from: far)
        #expect(h.runAsync { Self.replies(h).count == 2 })
        let got = Self.replies(h).sorted { $0.callID < $1.callID }
        #expect(got.map(\.reason) == ["486 486 1 MESSAGE m1", "200 200 1 OPTIONS m2"])
        // Not from the route coroutine itself: -1, nothing sent.
        h.sender.clear()
        guard case .routed(.ok) = try h.route(Self.invite("sorted")) else {
            Issue.record("expected the route to finish without waiting")
            return
        }
        #expect(Self.replies(h).map(\.reason) == ["sorted -1"])
        #expect(TMT.sent(h, "MESSAGE").isEmpty)
    }
}

/// `starling check` with async_io: globals written inside functions.
@Suite struct GlobalWritesTests {
    @Test func writesInsideFunctionsAreFoundLocalsAndTopLevelAreNot() {
        let src = """
            CONFIG = 1
            local cache = {}
            function ksr_request_route()
              local a, b = 1, 2
              callee = KSR.pv.get("$rU")
              a = 3
              cache.x = 1
              local t = { field = 1 }
              for i, v in ipairs(t) do counter = i end
              if a == b then flag, other = true, false end
              local function helper(p) p = 1; scratch = p end
            end
            """
        let found = GlobalWrites.scan(Array(src.utf8))
        #expect(found.map(\.name) == ["callee", "counter", "flag", "other", "scratch"])
        #expect(found.map(\.line) == [5, 9, 10, 10, 11])
        #expect(found.first?.function == "ksr_request_route")
    }
}
