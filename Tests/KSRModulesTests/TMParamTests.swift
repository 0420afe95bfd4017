import Testing
import Foundation
import SIPCore
import SIPTransport
import StarlingKEMI
import StarlingTesting
import KSRModules

/// Per-transaction switches and `[modparam.tm]` values that change behaviour: t_set_disable_6xx,
/// auto_inv_100(_reason), restart_fr_on_each_reply, wt_timer, the delayed internal reply and
/// t_set_disable_internal_reply.
private let forkScript = """
    function ksr_request_route()
      if KSR.is_ACK() then return end
      if KSR.pv.get("$var(no6xx)") == 1 then KSR.tm.t_set_disable_6xx(1) end
      if KSR.pv.get("$var(auto100)") == 1 then KSR.tm.t_set_auto_inv_100(1) end
      KSR.corex.append_branch_uri("sip:carol@192.0.2.21")
      KSR.setdsturi("sip:192.0.2.20:5060")
      KSR.tm.t_relay()
    end
    """

private let busy = TMT.address("192.0.2.20")
private let carol = TMT.address("192.0.2.21")

@Suite struct TMParamTests {
    @Test func sixHundredEndsForkingUnlessDisabled() throws {
        // Default: a 603 CANCELs the other branch and is relayed.
        let h = try TMT.harness(forkScript)
        try h.route(Msg.invite, from: TMT.caller)
        var invites = TMT.sent(h, "INVITE")
        try h.route(TMT.reply(to: invites[1], 180, "Ringing"), from: carol)
        h.sender.clear()
        try h.route(TMT.reply(to: invites[0], 603, "Decline"), from: busy)
        #expect(TMT.sent(h, "CANCEL").map { $0.destination } == [carol])
        try h.route(TMT.reply(to: invites[1], 487, "Request Terminated"), from: carol)
        #expect(h.sender.sent.filter { $0.destination == TMT.caller }.map(TMT.status) == [603])

        // t_set_disable_6xx(1): no CANCEL; the 6xx competes as an ordinary class (4xx wins).
        let h2 = try TMT.harness(forkScript)
        h2.context.worker.vars["no6xx"] = .int(1)
        try h2.route(Msg.invite, from: TMT.caller)
        invites = TMT.sent(h2, "INVITE")
        try h2.route(TMT.reply(to: invites[1], 180, "Ringing"), from: carol)
        h2.sender.clear()
        try h2.route(TMT.reply(to: invites[0], 603, "Decline"), from: busy)
        #expect(TMT.sent(h2, "CANCEL").isEmpty)
        try h2.route(TMT.reply(to: invites[1], 486, "Busy Here"), from: carol)
        #expect(h2.sender.sent.filter { $0.destination == TMT.caller }.map(TMT.status) == [486])

        // The module default (disable_6xx_block) does the same for every transaction.
        let h3 = try TMT.harness(forkScript, ["disable_6xx_block": ["1"]])
        try h3.route(Msg.invite, from: TMT.caller)
        invites = TMT.sent(h3, "INVITE")
        try h3.route(TMT.reply(to: invites[1], 180, "Ringing"), from: carol)
        h3.sender.clear()
        try h3.route(TMT.reply(to: invites[0], 603, "Decline"), from: busy)
        #expect(TMT.sent(h3, "CANCEL").isEmpty)
    }

    @Test func autoInv100AndItsReason() throws {
        let h = try TMT.harness(forkScript, ["auto_inv_100_reason": ["Trying"]])
        try h.route(Msg.invite, from: TMT.caller)
        #expect(h.sender.sent.first?.text.hasPrefix("SIP/2.0 100 Trying\r\n") == true)

        let h2 = try TMT.harness(forkScript, ["auto_inv_100": ["0"]])
        try h2.route(Msg.invite, from: TMT.caller)
        #expect(!h2.sender.sent.contains { TMT.status($0) == 100 })
        // t_set_auto_inv_100(1) turns it back on for this transaction.
        let h3 = try TMT.harness(forkScript, ["auto_inv_100": ["0"]])
        h3.context.worker.vars["auto100"] = .int(1)
        try h3.route(Msg.invite, from: TMT.caller)
        #expect(h3.sender.sent.first?.text.hasPrefix("SIP/2.0 100 trying -- your call is important to us\r\n") == true)
    }

    /// A callee that resends 180 every 800 ms with fr_inv_timer 2 s: with restart_fr_on_each_reply=0
    /// only the first 180 restarts Timer C, so the branch is CANCELled about 2 s after it; by default
    /// every 180 restarts it and nothing is CANCELled within 3 s.
    private func cancelsWithRepeated180(_ params: [String: [String]]) throws -> Bool {
        let s = """
            function ksr_request_route()
              if KSR.is_ACK() then return end
              KSR.setdsturi("sip:192.0.2.20:5060")
              KSR.tm.t_relay()
            end
            """
        var p = params
        p["fr_inv_timer"] = ["2000"]
        let h = try TMT.harness(s, p)
        try h.route(Msg.invite, from: TMT.caller)
        let inv = try #require(TMT.sent(h, "INVITE").first)
        for _ in 0..<4 {
            try h.route(TMT.reply(to: inv, 180, "Ringing"), from: busy)
            TMT.run(h, for: .milliseconds(800))
        }
        return !TMT.sent(h, "CANCEL").isEmpty
    }

    @Test func restartFROnEachReply() throws {
        #expect(try cancelsWithRepeated180(["restart_fr_on_each_reply": ["0"]]))
        #expect(try !cancelsWithRepeated180([:]))
    }

    @Test func wtTimerIsTheWaitAfterCompletion() throws {
        let s = """
            function ksr_request_route()
              KSR.setdsturi("sip:192.0.2.20:5060")
              KSR.tm.t_relay()
            end
            """
        func remaining(_ params: [String: [String]]) throws -> Int {
            let h = try TMT.harness(s, params)
            try h.route(Msg.options("sip:bob@example.com"), from: TMT.caller)
            let opt = try #require(TMT.sent(h, "OPTIONS").first)
            try h.route(TMT.reply(to: opt, 200, "OK"), from: busy)
            TMT.run(h, for: .milliseconds(1500))
            return h.transactions.count
        }
        // wt_timer=1000: timers J and K end the transaction after 1 s; by default (5000, Kamailio's) 5 s;
        // wt_timer=0: RFC 3261's Timer J, 64*T1 (within fr_timer + 1 s).
        #expect(try remaining(["wt_timer": ["1000"]]) == 0)
        #expect(try remaining([:]) == 1)
        #expect(try remaining(["wt_timer": ["0"]]) == 1)
    }

    @Test func delayedInternalReplyUnlessDisabled() throws {
        let s = """
            function ksr_request_route()
              if KSR.pv.get("$var(noreply)") == 1 then KSR.tm.t_set_disable_internal_reply(1) end
              KSR.setdsturi("sip:nowhere.invalid")
              KSR.pv.seti("$var(relay)", KSR.tm.t_relay())
            end
            """
        // Nothing could be relayed and the script did not reply: the transaction answers the error.
        let h = try TMT.harness(s)
        try h.route(Msg.options("sip:bob@example.com"), from: TMT.caller)
        #expect(TMT.v(h, "relay") == "-478")
        #expect(h.sender.sent.map(TMT.status) == [478])
        #expect(h.sender.sent.first?.text.hasPrefix("SIP/2.0 478 Unresolvable destination (478/TM)\r\n") == true)
        // t_set_disable_internal_reply(1): the script is on its own.
        let h2 = try TMT.harness(s)
        h2.context.worker.vars["noreply"] = .int(1)
        try h2.route(Msg.options("sip:bob@example.com"), from: TMT.caller)
        #expect(TMT.v(h2, "relay") == "-478")
        #expect(h2.sender.sent.isEmpty)
        // A script that replies itself gets no second reply.
        let h3 = try TMT.harness(s.replacingOccurrences(of: "KSR.pv.seti(\"$var(relay)\", KSR.tm.t_relay())",
                                                        with: "if KSR.tm.t_relay() < 0 then KSR.sl.sl_reply_error() end"))
        try h3.route(Msg.options("sip:bob@example.com"), from: TMT.caller)
        #expect(h3.sender.sent.map(TMT.status) == [478])
        #expect(h3.sender.sent.first?.text.contains("(478/SL)") == true)
    }
}

/// t_replicate, t_uac_send and DNS failover.
@Suite struct TMReplicateTests {
    @Test func replicatedCopyIsAbsorbed() throws {
        let s = """
            function ksr_request_route()
              KSR.pv.seti("$var(rep)", KSR.tm.t_replicate("sip:192.0.2.50:5060"))
              KSR.pv.seti("$var(bad)", KSR.tm.t_replicate("not a uri"))
              KSR.sl.send_reply(200, "Saved")
            end
            function ksr_reply_route() end
            """
        let h = try TMT.harness(s, ["fr_timer": ["1000"]])
        let register = Msg.options("sip:example.com").replacingOccurrences(of: "OPTIONS", with: "REGISTER")
        try h.route(register, from: TMT.caller)
        #expect(TMT.v(h, "rep") == "1")
        #expect(TMT.v(h, "bad") == "-1")
        let copy = try #require(TMT.sent(h, "REGISTER").first)
        #expect(copy.destination == TMT.address("192.0.2.50"))
        #expect(h.sender.sent.filter { $0.destination == TMT.caller }.map(TMT.status) == [200])
        // The copy's reply is absorbed: nothing more reaches the caller.
        h.sender.clear()
        try h.route(TMT.reply(to: copy, 200, "OK"), from: copy.destination)
        #expect(h.sender.sent.isEmpty)
        TMT.run(h, for: .seconds(10), step: .seconds(1))
        #expect(h.transactions.count == 0)
    }

    @Test func uacSendSendsALocalRequest() throws {
        let s = """
            function ksr_request_route()
              KSR.pv.seti("$var(r)", KSR.tm.t_uac_send("OPTIONS", "sip:pbx@192.0.2.60", "", "",
                "From: <sip:starling@example.com>\\r\\nTo: <sip:pbx@192.0.2.60>\\r\\n", ""))
              KSR.pv.seti("$var(bad)", KSR.tm.t_uac_send("OPTIONS", "sip:pbx@192.0.2.60", "", "", "To: <sip:x@y>\\r\\n", ""))
            end
            function ksr_reply_route() end
            """
        let h = try TMT.harness(s, ["fr_timer": ["1000"]])
        try h.route(Msg.options("sip:bob@example.com"), from: TMT.caller)
        #expect(TMT.v(h, "r") == "1")
        #expect(TMT.v(h, "bad") == "-1")
        let sent = try #require(TMT.sent(h, "OPTIONS").first)
        #expect(sent.destination == TMT.address("192.0.2.60"))
        #expect(TMT.requestURI(sent) == "sip:pbx@192.0.2.60")
        let m = try #require(sent.message)
        #expect(m.from?.tag != nil)
        #expect(m.callID != nil)
        #expect(TMT.header(sent, "CSeq") == "10 OPTIONS")
        #expect(TMT.header(sent, "Via")?.contains("branch=z9hG4bKtm") == true)
        #expect(h.transactions.count == 1)
        // The 200 is absorbed; the transaction ends with its client machine.
        h.sender.clear()
        try h.route(TMT.reply(to: sent, 200, "OK"), from: sent.destination)
        #expect(h.sender.sent.isEmpty)
        TMT.run(h, for: .seconds(10), step: .seconds(1))
        #expect(h.transactions.count == 0)
    }

    private func failoverHarness(_ params: [String: [String]], disable: Bool = false) throws -> ScriptHarness {
        let s = """
            function ksr_request_route()
              if KSR.is_ACK() then return end
              \(disable ? "KSR.tm.t_set_disable_failover(1)" : "")
              KSR.tm.t_on_failure("failure_route")
              KSR.setdsturi("sip:pbx.test")
              KSR.tm.t_relay()
            end
            function failure_route()
              KSR.pv.seti("$var(fcode)", KSR.tm.t_get_status_code())
            end
            """
        var p = params
        p["fr_timer"] = ["1000"]
        let services = TestServices(multiHosts: ["pbx.test": [TMT.address("192.0.2.71"), TMT.address("192.0.2.72")]])
        return try TMT.harness(s, p, services: services)
    }

    @Test func dnsFailoverOnTimeoutAnd503() throws {
        // The first address never answers: after fr_timer the INVITE goes to the second one, before any
        // failure route; its 200 is relayed.
        let h = try failoverHarness(["use_dns_failover": ["1"]])
        try h.route(Msg.invite, from: TMT.caller)
        #expect(TMT.sent(h, "INVITE").map { $0.destination } == [TMT.address("192.0.2.71")])
        TMT.run(h, for: .milliseconds(1200))
        let second = try #require(TMT.sent(h, "INVITE").last)
        #expect(second.destination == TMT.address("192.0.2.72"))
        #expect(TMT.v(h, "fcode") == "<none>")
        h.sender.clear()
        try h.route(TMT.reply(to: second, 200, "OK"), from: second.destination)
        #expect(h.sender.sent.filter { $0.destination == TMT.caller }.map(TMT.status) == [200])

        // A 503 from the first address moves on at once.
        let h2 = try failoverHarness(["use_dns_failover": ["1"]])
        try h2.route(Msg.invite, from: TMT.caller)
        let first = try #require(TMT.sent(h2, "INVITE").first)
        h2.sender.clear()
        try h2.route(TMT.reply(to: first, 503, "Service Unavailable"), from: first.destination)
        #expect(TMT.sent(h2, "INVITE").map { $0.destination } == [TMT.address("192.0.2.72")])
        #expect(TMT.v(h2, "fcode") == "<none>")
        // Both fail: now the failure route runs.
        let next = try #require(TMT.sent(h2, "INVITE").first)
        try h2.route(TMT.reply(to: next, 486, "Busy Here"), from: next.destination)
        #expect(TMT.v(h2, "fcode") == "486")
    }

    @Test func winning503IsRelayedAs500UnlessRemapIsOff() throws {
        for (params, expected) in [([String: [String]](), 500), (["remap_503_500": ["0"]], 503)] {
            let h = try failoverHarness(params)
            try h.route(Msg.invite, from: TMT.caller)
            let inv = try #require(TMT.sent(h, "INVITE").first)
            h.sender.clear()
            try h.route(TMT.reply(to: inv, 503, "Service Unavailable"), from: inv.destination)
            // The failure route sees the 503 itself.
            #expect(TMT.v(h, "fcode") == "503")
            let up = h.sender.sent.filter { $0.destination == TMT.caller }
            #expect(up.map(TMT.status) == [expected])
            #expect(up.first?.text.contains(" Service Unavailable\r\n") == true)
        }
    }

    @Test func noFailoverByDefaultOrWhenDisabled() throws {
        for h in [try failoverHarness([:]), try failoverHarness(["use_dns_failover": ["1"]], disable: true)] {
            try h.route(Msg.invite, from: TMT.caller)
            TMT.run(h, for: .milliseconds(1200))
            #expect(TMT.sent(h, "INVITE").allSatisfy { $0.destination == TMT.address("192.0.2.71") })
            #expect(TMT.v(h, "fcode") == "408")
        }
    }
}
