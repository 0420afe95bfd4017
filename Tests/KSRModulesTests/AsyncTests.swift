import Foundation
import SIPCore
import StarlingTestSupport
import Testing
import KSRModules
import StarlingKEMI
import StarlingTesting

/// t_suspend / t_continue, the async module and http_async_client: routes that stop and continue
/// later in the worker that owns them (the ScriptHarness runs the worker's timers and mailbox).
@Suite struct AsyncTests {
    static func harness(_ script: String, _ params: [String: [String: [String]]] = [:]) throws -> ScriptHarness {
        try ScriptHarness(script: tmSaveHelper + script, config: ModuleConfiguration(params: params))
    }

    static func statuses(_ h: ScriptHarness) -> [Int] { h.sender.sent.map(TMT.status) }

    // MARK: t_suspend / t_continue

    @Test func suspendThenContinueRunsTheCallbackAsAFailureRoute() throws {
        let h = try Self.harness("""
            function ksr_request_route()
              KSR.pv.seti("$var(rc)", KSR.tmx.t_suspend())
              KSR.pv.seti("$var(idx)", KSR.pv.get("$T(id_index)"))
              KSR.pv.seti("$var(lbl)", KSR.pv.get("$T(id_label)"))
              KSR.pv.sets("$avp(who)", "alice")
            end
            function resume()
              KSR.pv.seti("$var(c1)", KSR.tmx.t_continue(KSR.pv.get("$var(idx)"), KSR.pv.get("$var(lbl)"), "cont"))
              KSR.pv.seti("$var(c2)", KSR.tmx.t_continue(KSR.pv.get("$var(idx)"), KSR.pv.get("$var(lbl)"), "cont"))
            end
            function cont(ev)
              KSR.pv.sets("$var(ev)", tostring(ev))
              KSR.pv.sets("$var(rt)", tostring(KSR.tmx.t_is_failure_route()))
              KSR.pv.sets("$var(avp)", KSR.pv.get("$avp(who)"))
              KSR.pv.sets("$var(ru)", KSR.pv.get("$ru"))
              KSR.tm.t_reply(200, "Resumed")
            end
            """)
        try h.route(Msg.invite)
        #expect(TMT.v(h, "rc") == "1")
        // INVITE: the 100 Trying goes out at once; nothing else until the transaction continues.
        #expect(Self.statuses(h) == [100])
        #expect(h.transactions.count == 1)
        h.call("resume")
        #expect(TMT.v(h, "c1") == "1")
        #expect(TMT.v(h, "c2") == "-1", "a second t_continue finds nothing suspended")
        #expect(TMT.v(h, "ev") == "nil", "Kamailio's app_lua passes no argument to continuations")
        #expect(TMT.v(h, "rt") == "1")
        #expect(TMT.v(h, "avp") == "alice")
        #expect(TMT.v(h, "ru") == "sip:bob@example.com")
        #expect(Self.statuses(h) == [100, 200])
        #expect(h.sender.sent.last?.text.hasPrefix("SIP/2.0 200 Resumed") == true)
    }

    @Test func suspendedTransactionKeepsItsTimerAndRunsTheFailureRoute() throws {
        let h = try Self.harness("""
            function ksr_request_route()
              KSR.tm.t_on_failure("failed")
              KSR.tmx.t_suspend()
            end
            function failed()
              KSR.pv.seti("$var(code)", KSR.pv.get("$T_reply_code"))
              KSR.tm.t_reply(503, "Service Unavailable")
            end
            """, ["tm": ["fr_timer": ["1000"]]])
        try h.route(Msg.invite)
        TMT.run(h, for: .milliseconds(800))
        #expect(Self.statuses(h) == [100])
        TMT.run(h, for: .milliseconds(500))
        #expect(TMT.v(h, "code") == "408")
        #expect(Self.statuses(h) == [100, 503])
    }

    @Test func suspendedTransactionWithoutFailureRouteGets408() throws {
        let h = try Self.harness("""
            function ksr_request_route() KSR.tmx.t_suspend() end
            """, ["tm": ["fr_timer": ["1000"]]])
        try h.route(Msg.invite)
        TMT.run(h, for: .milliseconds(1500))
        #expect(Self.statuses(h) == [100, 408])
    }

    @Test func continueThatLeavesNothingPendingAnswers500() throws {
        let h = try Self.harness("""
            function ksr_request_route()
              KSR.tmx.t_suspend()
              KSR.pv.seti("$var(idx)", KSR.pv.get("$T(id_index)"))
              KSR.pv.seti("$var(lbl)", KSR.pv.get("$T(id_label)"))
            end
            function resume()
              KSR.tmx.t_continue(KSR.pv.get("$var(idx)"), KSR.pv.get("$var(lbl)"), "cont")
            end
            function cont() end
            """)
        try h.route(Msg.invite)
        h.call("resume")
        #expect(Self.statuses(h) == [100, 500])
    }

    @Test func continueRelaysAndTheReplyGoesUpstream() throws {
        let h = try Self.harness("""
            function ksr_request_route()
              KSR.tmx.t_suspend()
              KSR.pv.seti("$var(idx)", KSR.pv.get("$T(id_index)"))
              KSR.pv.seti("$var(lbl)", KSR.pv.get("$T(id_label)"))
            end
            function resume()
              KSR.tmx.t_continue(KSR.pv.get("$var(idx)"), KSR.pv.get("$var(lbl)"), "cont")
            end
            function cont()
              KSR.setdsturi("sip:198.51.100.7:5070")
              KSR.pv.seti("$var(r)", KSR.tm.t_relay())
            end
            """)
        try h.route(Msg.invite)
        h.call("resume")
        #expect(TMT.v(h, "r") == "1")
        let sent = TMT.sent(h, "INVITE")
        try #require(sent.count == 1)
        #expect(sent[0].destination == TMT.address("198.51.100.7", 5070))
        try h.route(TMT.reply(to: sent[0], 200, "OK"), from: TMT.address("198.51.100.7", 5070))
        #expect(Self.statuses(h).last == 200)
    }

    // MARK: suspended replies (t_suspend in an onreply route)

    static func replyStatuses(_ h: ScriptHarness) -> [Int] {
        h.sender.sent.filter { $0.message?.isRequest == false }.map(TMT.status)
    }

    static let replySuspendScript = """
        function ksr_request_route()
          KSR.tm.t_on_reply("onrep")
          KSR.tm.t_on_failure("failed")
          KSR.setdsturi("sip:198.51.100.7:5070")
          KSR.tm.t_relay()
        end
        function onrep()
          local code = KSR.pv.get("$rs")
          if KSR.tm.t_is_retr_async_reply() > 0 then
            KSR.pv.seti("$var(retr)", (KSR.pv.get("$var(retr)") or 0) + 1)
            KSR.x.drop()
            return
          end
          KSR.pv.seti("$var(s" .. code .. ")", KSR.tmx.t_suspend())
          KSR.pv.seti("$var(idx)", KSR.pv.get("$T(id_index)"))
          KSR.pv.seti("$var(lbl)", KSR.pv.get("$T(id_label)"))
          KSR.pv.sets("$avp(seen)", "onreply-" .. code)
        end
        function resume()
          KSR.pv.seti("$var(c1)", KSR.tmx.t_continue(KSR.pv.get("$var(idx)"), KSR.pv.get("$var(lbl)"), "cont"))
          KSR.pv.seti("$var(c2)", KSR.tmx.t_continue(KSR.pv.get("$var(idx)"), KSR.pv.get("$var(lbl)"), "cont"))
        end
        function cont(ev)
          KSR.pv.sets("$var(ev)", tostring(ev))
          KSR.pv.seti("$var(retrc)", KSR.tm.t_is_retr_async_reply())
          KSR.pv.seti("$var(rr)", KSR.tmx.t_is_reply_route())
          KSR.pv.seti("$var(code)", KSR.pv.get("$rs"))
          KSR.pv.sets("$var(avp)", KSR.pv.get("$avp(seen)"))
          KSR.x.drop()  -- as Kamailio: does not stop the continued reply
        end
        function failed()
          KSR.pv.seti("$var(failed)", KSR.pv.get("$T_reply_code"))
          KSR.pv.sets("$var(favp)", KSR.pv.get("$avp(seen)"))
          KSR.tm.t_reply(503, "After Suspended " .. KSR.pv.get("$T_reply_code"))
        end
        function ksr_reply_route()
          if KSR.pv.get("$rs") == 199 then
            KSR.pv.seti("$var(core)", KSR.tmx.t_suspend())
            KSR.pv.seti("$var(coreretr)", KSR.tm.t_is_retr_async_reply())
          end
        end
        """

    /// Kamailio's t_suspend on a reply: the 180 and then the 200 wait after their onreply route;
    /// retransmissions meanwhile see `t_is_retr_async_reply()` = 1; t_continue runs the callback as
    /// an onreply route on the reply (a `drop` there does not stop it) and relays it.
    @Test func suspendInOnreplyHoldsTheReplyUntilContinue() throws {
        let h = try Self.harness(Self.replySuspendScript)
        try h.route(Msg.invite)
        let sent = TMT.sent(h, "INVITE")
        try #require(sent.count == 1)
        let from = TMT.address("198.51.100.7", 5070)
        try h.route(TMT.reply(to: sent[0], 180, "Ringing"), from: from)
        #expect(TMT.v(h, "s180") == "1")
        #expect(Self.replyStatuses(h) == [100], "the suspended 180 went upstream")
        try h.route(TMT.reply(to: sent[0], 180, "Ringing"), from: from)
        #expect(TMT.v(h, "retr") == "1")
        #expect(Self.replyStatuses(h) == [100])
        h.call("resume")
        #expect(TMT.v(h, "c1") == "1")
        #expect(TMT.v(h, "c2") == "-1", "a second t_continue finds nothing suspended")
        #expect(TMT.v(h, "ev") == "nil", "Kamailio's app_lua passes no argument to continuations")
        #expect(TMT.v(h, "retrc") == "-1")
        #expect(TMT.v(h, "rr") == "1")
        #expect(TMT.v(h, "code") == "180")
        #expect(TMT.v(h, "avp") == "onreply-180")
        #expect(Self.replyStatuses(h) == [100, 180])

        try h.route(TMT.reply(to: sent[0], 200, "OK"), from: from)
        #expect(TMT.v(h, "s200") == "1")
        try h.route(TMT.reply(to: sent[0], 200, "OK"), from: from)
        #expect(TMT.v(h, "retr") == "2")
        #expect(Self.replyStatuses(h) == [100, 180])
        h.call("resume")
        #expect(TMT.v(h, "code") == "200")
        #expect(Self.replyStatuses(h) == [100, 180, 200])
        // A final reply went upstream: the next 200 (a retransmission) cannot be suspended, it is relayed.
        try h.route(TMT.reply(to: sent[0], 200, "OK"), from: from)
        #expect(TMT.v(h, "s200") == "-1")
        #expect(Self.replyStatuses(h) == [100, 180, 200, 200])
        // The core reply route has no transaction to suspend (as Kamailio: t_suspend cannot create one
        // for a reply), t_is_retr_async_reply finds the reply's transaction.
        try h.route(TMT.reply(to: sent[0], 199, "Early"), from: from)
        #expect(TMT.v(h, "core") == "-1")
        #expect(TMT.v(h, "coreretr") == "-1")
    }

    /// A suspended negative final reply: continued, it is recorded as the branch's answer and the
    /// failure route runs as it would have without the suspension.
    @Test func suspendedNegativeReplyGoesToTheFailureRouteWhenContinued() throws {
        let h = try Self.harness(Self.replySuspendScript)
        try h.route(Msg.invite)
        let sent = TMT.sent(h, "INVITE")
        try #require(sent.count == 1)
        try h.route(TMT.reply(to: sent[0], 486, "Busy Here"), from: TMT.address("198.51.100.7", 5070))
        #expect(TMT.v(h, "s486") == "1")
        #expect(TMT.sent(h, "ACK").count == 1, "the negative reply is acknowledged at once")
        #expect(TMT.v(h, "failed") == "<none>")
        #expect(Self.replyStatuses(h) == [100])
        h.call("resume")
        #expect(TMT.v(h, "code") == "486")
        #expect(TMT.v(h, "failed") == "486")
        #expect(TMT.v(h, "favp") == "onreply-486")
        #expect(Self.replyStatuses(h) == [100, 503])
    }

    /// A CANCEL while the 180 is suspended ends the suspension (Starling; Kamailio keeps it and
    /// drops the 487): the callee's 487 goes upstream, and a late t_continue finds nothing.
    @Test func cancelWhileAReplyIsSuspendedLetsThe487Through() throws {
        let h = try Self.harness(Self.replySuspendScript.replacingOccurrences(of: """
            function ksr_request_route()
            """, with: """
            function ksr_request_route()
              if KSR.is_CANCEL() then
                if KSR.tm.t_check_trans() > 0 then KSR.tm.t_relay() end
                return
              end
            """).replacingOccurrences(of: "KSR.tm.t_on_failure(\"failed\")", with: ""))
        try h.route(Msg.invite)
        let sent = TMT.sent(h, "INVITE")
        try #require(sent.count == 1)
        let from = TMT.address("198.51.100.7", 5070)
        try h.route(TMT.reply(to: sent[0], 180, "Ringing"), from: from)
        #expect(TMT.v(h, "s180") == "1")
        try h.route(Msg.invite.replacingOccurrences(of: "INVITE sip:", with: "CANCEL sip:")
            .replacingOccurrences(of: "314159 INVITE", with: "314159 CANCEL"))
        let cancels = TMT.sent(h, "CANCEL")
        try #require(cancels.count == 1, "the CANCEL was not relayed: \(h.sender.sent.map(\.text))")
        try h.route(TMT.reply(to: sent[0], 487, "Request Terminated"), from: from)
        #expect(Self.replyStatuses(h).contains(487), "\(Self.replyStatuses(h))")
        h.call("resume")
        #expect(TMT.v(h, "c1") == "-1")
        #expect(TMT.v(h, "code") == "<none>", "the continuation ran")
    }

    /// `KSR.async.route` in an onreply route suspends the reply too (Kamailio: async_sleep calls
    /// t_suspend on the current message): the callback runs as an onreply route after the delay.
    @Test func asyncRouteInOnreplyDelaysTheReply() throws {
        let h = try Self.harness("""
            function ksr_request_route()
              KSR.tm.t_on_reply("onrep")
              KSR.setdsturi("sip:198.51.100.7:5070")
              KSR.tm.t_relay()
            end
            function onrep()
              if KSR.tm.t_is_retr_async_reply() > 0 then KSR.x.drop() return end
              if KSR.pv.get("$rs") == 200 then KSR.pv.seti("$var(a)", KSR.async.route("later", 1)) end
            end
            function later(ev)
              KSR.pv.sets("$var(ev)", tostring(ev))
              KSR.pv.seti("$var(rr)", KSR.tmx.t_is_reply_route())
            end
            """)
        try h.route(Msg.invite)
        let sent = TMT.sent(h, "INVITE")
        try #require(sent.count == 1)
        try h.route(TMT.reply(to: sent[0], 200, "OK"), from: TMT.address("198.51.100.7", 5070))
        #expect(TMT.v(h, "a") == "0")
        TMT.run(h, for: .milliseconds(700))
        #expect(Self.replyStatuses(h) == [100])
        TMT.run(h, for: .milliseconds(1000))
        #expect(TMT.v(h, "ev") == "nil", "Kamailio's app_lua passes no argument to continuations")
        #expect(TMT.v(h, "rr") == "1")
        #expect(Self.replyStatuses(h) == [100, 200])
    }

    @Test func continueWithUnknownIdsFails() throws {
        let h = try Self.harness("""
            function ksr_request_route()
              KSR.pv.seti("$var(c)", KSR.tmx.t_continue(1, 123456, "cont"))
            end
            function cont() end
            """)
        try h.route(Msg.invite)
        #expect(TMT.v(h, "c") == "-1")
        #expect(h.sender.sent.isEmpty)
    }

    @Test func retransmissionOfASuspendedRequestIsAbsorbed() throws {
        let h = try Self.harness("""
            function ksr_request_route()
              if KSR.tm.t_check_trans() == 0 then KSR.x.exit() end
              KSR.pv.seti("$var(n)", (KSR.pv.get("$var(n)") or 0) + 1)
              KSR.tmx.t_suspend()
            end
            """)
        try h.route(Msg.invite)
        try h.route(Msg.invite)
        #expect(TMT.v(h, "n") == "1")
        #expect(Self.statuses(h) == [100, 100])
    }

    @Test func cancelOfASuspendedInviteAnswers487AtOnce() throws {
        let h = try Self.harness("""
            function ksr_request_route()
              if KSR.is_CANCEL() then
                if KSR.tm.t_check_trans() > 0 then KSR.tm.t_relay() end
                return
              end
              KSR.async.route("later", 5)
            end
            function later() KSR.pv.seti("$var(ran)", 1) end
            """)
        try h.route(Msg.invite)
        let cancel = Msg.invite.replacingOccurrences(of: "INVITE sip:", with: "CANCEL sip:")
            .replacingOccurrences(of: "314159 INVITE", with: "314159 CANCEL")
        try h.route(cancel)
        // 100 to the INVITE, 200 to the CANCEL, 487 to the INVITE: no wait for the sleep or fr_timer.
        #expect(Self.statuses(h) == [100, 200, 487])
        TMT.run(h, for: .seconds(6))
        #expect(TMT.v(h, "ran") == "<none>", "a canceled transaction is not continued")
        // Only retransmissions of the 487 (no ACK came) afterwards.
        #expect(Self.statuses(h).dropFirst(3).allSatisfy { $0 == 487 })
    }

    // MARK: async module

    @Test func asyncRouteContinuesAfterTheDelay() throws {
        let h = try Self.harness("""
            function ksr_request_route()
              KSR.pv.seti("$var(rc)", KSR.async.route("later", 2))
            end
            function later(ev)
              KSR.pv.sets("$var(ev)", tostring(ev))
              KSR.tm.t_reply(486, "Busy Here")
            end
            """)
        try h.route(Msg.invite)
        #expect(TMT.v(h, "rc") == "0")
        TMT.run(h, for: .milliseconds(1900))
        #expect(Self.statuses(h) == [100])
        TMT.run(h, for: .milliseconds(200))
        #expect(TMT.v(h, "ev") == "nil", "Kamailio's app_lua passes no argument to continuations")
        #expect(Self.statuses(h) == [100, 486])
    }

    @Test func asyncArgumentChecks() throws {
        let h = try Self.harness("""
            function ksr_request_route()
              KSR.pv.seti("$var(zero)", KSR.async.route("later", 0))
              KSR.pv.seti("$var(big)", KSR.async.route("later", 100))
              KSR.pv.seti("$var(ms)", KSR.async.ms_route("later", 100))
              KSR.pv.seti("$var(name)", KSR.async.route(string.rep("x", 64), 1))
            end
            function later() end
            """)
        try h.route(Msg.invite)
        #expect(TMT.v(h, "zero") == "-1")
        #expect(TMT.v(h, "big") == "-1")
        #expect(TMT.v(h, "ms") == "-1", "ms_route needs the ms_timer modparam")
        #expect(TMT.v(h, "name") == "-1")
        #expect(h.transactions.count == 0)
    }

    @Test func asyncMsRouteAndReturnModparam() throws {
        let h = try Self.harness("""
            function ksr_request_route()
              KSR.pv.seti("$var(rc)", KSR.async.ms_route("later", 300))
            end
            function later() KSR.tm.t_reply(202, "Later") end
            """, ["async": ["ms_timer": ["10"], "return": ["1"]]])
        try h.route(Msg.invite)
        #expect(TMT.v(h, "rc") == "1")
        TMT.run(h, for: .milliseconds(200))
        #expect(Self.statuses(h) == [100])
        TMT.run(h, for: .milliseconds(200))
        #expect(Self.statuses(h) == [100, 202])
    }

    @Test func asyncTaskRouteAndTaskData() throws {
        let h = try Self.harness("""
            function ksr_request_route()
              KSR.pv.seti("$var(t)", KSR.async.task_route("task"))
              KSR.pv.seti("$var(d)", KSR.async.task_group_data("data", "grp", "payload"))
            end
            function task(ev)
              KSR.pv.sets("$var(tev)", tostring(ev))
              KSR.tm.t_reply(200, "Task")
            end
            function data(ev)
              KSR.pv.sets("$var(dev)", ev)
              KSR.pv.sets("$var(got)", KSR.async.get_data() .. "/" .. KSR.async.get_gname())
              KSR.pv.sets("$var(fm)", tostring(KSR.corex.is_faked_msg()))
              KSR.pv.sets("$var(dru)", KSR.pv.get("$ru"))
            end
            """)
        try h.route(Msg.invite)
        #expect(TMT.v(h, "t") == "0")
        #expect(TMT.v(h, "d") == "1")
        #expect(Self.statuses(h) == [100])
        h.advance(by: .milliseconds(1))
        #expect(TMT.v(h, "tev") == "nil", "Kamailio's app_lua passes no argument to continuations")
        #expect(Self.statuses(h) == [100, 200])
        #expect(TMT.v(h, "dev") == "async:task-data")
        #expect(TMT.v(h, "got") == "payload/grp")
        #expect(TMT.v(h, "fm") == "1")
        #expect(TMT.v(h, "dru") == "sip:you@kamailio.org")
    }

    @Test func budgetAbortInTheContinuationStillAnswers() throws {
        let h = try Self.harness("""
            function ksr_request_route() KSR.async.task_route("task") end
            function task() while true do end end
            """)
        try h.route(Msg.invite)
        h.advance(by: .milliseconds(1))
        #expect(Self.statuses(h) == [100, 500])
        // The worker goes on routing.
        try h.route(Msg.invite.replacingOccurrences(of: "a84b4c76e66710@pc33", with: "second-call")
            .replacingOccurrences(of: "z9hG4bK776asdhds", with: "z9hG4bKsecond"))
        h.advance(by: .milliseconds(1))
        // Each call got 100 and 500. On a loaded machine the budget abort (10M instructions) can take
        // longer than T1 of the tm clock (wall time), so the first 500 may be retransmitted meanwhile.
        #expect(Self.statuses(h).filter { $0 == 100 }.count == 2)
        let answered = h.sender.sent.filter { TMT.status($0) == 500 }.compactMap { TMT.header($0, "Call-ID") }
        #expect(Set(answered) == ["a84b4c76e66710@pc33", "second-call"])
    }

    @Test func scriptErrorInTheContinuationStillAnswers() throws {
        let h = try Self.harness("""
            function ksr_request_route() KSR.async.task_route("task") end
            function task() error("boom") end
            """)
        try h.route(Msg.invite)
        h.advance(by: .milliseconds(1))
        #expect(Self.statuses(h) == [100, 500])
    }
}

/// http_async_client against a real local HTTP server.
@Suite(.serialized) struct HTTPAsyncClientTests {
    let server: TestHTTPServer
    init() throws { server = try TestHTTPServer() }

    func harness(_ script: String, _ params: [String: [String]] = [:]) throws -> ScriptHarness {
        try ScriptHarness(script: tmSaveHelper + script, config: ModuleConfiguration(params: ["http_async_client": params]))
    }

    @Test func queryWithATransactionSuspendsAndTheCallbackAnswers() throws {
        let h = try harness("""
            function ksr_request_route()
              KSR.tm.t_newtran()
              KSR.pv.seti("$var(rc)", KSR.http_async_client.query("\(server.base)/route", "done"))
              KSR.pv.sets("$var(id1)", KSR.pv.get("$http_req_id"))
            end
            function done(ev)
              KSR.pv.sets("$var(ev)", tostring(ev))
              save("ok", "$http_ok")
              save("rs", "$http_rs")
              save("rr", "$http_rr")
              save("rb", "$http_rb")
              save("bs", "$http_bs")
              save("ct", "$http_hdr(Content-Type)")
              save("err", "$http_err")
              save("id2", "$http_req_id")
              KSR.pv.seti("$var(total)", KSR.pv.get("$http_time(total)"))
              KSR.tm.t_reply(200, "Routed")
            end
            """)
        try h.route(Msg.invite)
        #expect(TMT.v(h, "rc") == "0")
        #expect(AsyncTests.statuses(h) == [100])
        #expect(h.runAsync { AsyncTests.statuses(h).count == 2 })
        #expect(AsyncTests.statuses(h) == [100, 200])
        #expect(TMT.v(h, "ev") == "nil", "Kamailio's app_lua passes no argument to continuations")
        #expect(TMT.v(h, "ok") == "1")
        #expect(TMT.v(h, "rs") == "200")
        #expect(TMT.v(h, "rr") == "OK")
        #expect(TMT.v(h, "rb") == "sip:alice@10.0.0.1\nsecond line\n")
        #expect(TMT.v(h, "bs") == "31")
        #expect(TMT.v(h, "ct") == "text/plain")
        #expect(TMT.v(h, "err") == "nil")
        #expect(TMT.v(h, "id2") == TMT.v(h, "id1"))
        #expect((Int(TMT.v(h, "total")) ?? 0) > 0)
    }

    @Test func requestParametersMethodBodyHeaders() throws {
        let h = try harness("""
            function ksr_request_route()
              KSR.pv.sets("$http_req(method)", "PUT")
              KSR.pv.sets("$http_req(body)", "n=1")
              KSR.pv.sets("$http_req(hdr)", "Content-Type: application/x-test")
              KSR.pv.sets("$http_req(hdr)", "X-Test: yes")
              KSR.pv.seti("$var(bad)", KSR.pv.sets("$http_req(timeout)", "soon") and 1 or 0)
              KSR.pv.seti("$var(rc)", KSR.http_async_client.query("\(server.base)/echo", "done"))
              KSR.pv.seti("$var(rc2)", KSR.http_async_client.query("\(server.base)/echo", "done2"))
            end
            function done() save("echo", "$http_rb") end
            function done2() save("echo2", "$http_rb") end
            """)
        try h.route(Msg.options())
        // No transaction: the route goes on (1) and the callbacks run on a faked request.
        #expect(TMT.v(h, "rc") == "1")
        #expect(TMT.v(h, "bad") == "0")
        #expect(h.runAsync { TMT.v(h, "echo") != "<none>" && TMT.v(h, "echo2") != "<none>" })
        #expect(TMT.v(h, "echo") == "PUT|application/x-test|yes|n=1")
        // The parameters apply to one query: the next one is a plain GET.
        #expect(TMT.v(h, "echo2") == "GET|||")
    }

    @Test func timeoutAndRefusedConnectionReportErrors() throws {
        let closed = try TestPorts.next()
        let h = try harness("""
            function ksr_request_route()
              if KSR.is_OPTIONS() then
                KSR.http_async_client.query("http://127.0.0.1:\(closed)/x", "refused")
                return
              end
              KSR.tm.t_newtran()
              KSR.pv.seti("$http_req(timeout)", 300)
              KSR.http_async_client.query("\(server.base)/slow", "done")
            end
            function done()
              save("ok", "$http_ok")
              save("err", "$http_err")
              save("rs", "$http_rs")
              KSR.tm.t_reply(503, "No Route")
            end
            function refused()
              save("rok", "$http_ok")
              save("rerr", "$http_err")
            end
            """)
        let start = ContinuousClock.now
        try h.route(Msg.invite)
        #expect(h.runAsync { AsyncTests.statuses(h).count == 2 })
        #expect(ContinuousClock.now - start < .seconds(4), "the 300 ms timeout was not applied")
        #expect(AsyncTests.statuses(h) == [100, 503])
        #expect(TMT.v(h, "ok") == "0")
        #expect(TMT.v(h, "err") == "TIMEOUT")
        #expect(TMT.v(h, "rs") == "nil")
        try h.route(Msg.options())
        #expect(h.runAsync { TMT.v(h, "rerr") != "<none>" })
        #expect(TMT.v(h, "rok") == "0")
        #expect(TMT.v(h, "rerr").lowercased().contains("connect"))
    }

    @Test func suspendZeroKeepsTheRouteGoing() throws {
        let h = try harness("""
            function ksr_request_route()
              KSR.tm.t_newtran()
              KSR.pv.seti("$http_req(suspend)", 0)
              KSR.pv.seti("$var(rc)", KSR.http_async_client.query("\(server.base)/route", "done"))
              KSR.tm.t_reply(180, "Ringing")
            end
            function done() save("rs", "$http_rs") end
            """)
        try h.route(Msg.invite)
        #expect(TMT.v(h, "rc") == "1")
        #expect(AsyncTests.statuses(h) == [180])
        #expect(h.runAsync { TMT.v(h, "rs") == "200" })
    }

    @Test func answerVariablesOutsideACallbackAreNull() throws {
        let h = try harness("""
            function ksr_request_route()
              save("ok", "$http_ok")
              save("rb", "$http_rb")
              KSR.pv.seti("$var(bad)", KSR.http_async_client.query("", "done"))
              KSR.pv.seti("$var(nocb)", KSR.http_async_client.query("\(server.base)/route", ""))
            end
            """)
        try h.route(Msg.options())
        #expect(TMT.v(h, "ok") == "nil")
        #expect(TMT.v(h, "rb") == "nil")
        #expect(TMT.v(h, "bad") == "-1")
        #expect(TMT.v(h, "nocb") == "-1")
    }
}
