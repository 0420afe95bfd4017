import Testing
import SIPCore
import SIPTransport
import StarlingKEMI
import StarlingTesting
import KSRModules

/// Serial forking by q-value: t_load_contacts / t_next_contacts as in the tm README's example (d with
/// q=1.0 first, then b and c with q=0.5 in parallel, then a without q), and failure_reply_mode.
private let script = tmSaveHelper + """
    function ksr_request_route()
      if KSR.is_ACK() then return end
      KSR.seturi("sip:a@192.0.2.41")
      KSR.corex.append_branch_uri_q("sip:b@192.0.2.42", "0.5")
      KSR.corex.append_branch_uri_q("sip:c@192.0.2.43", "0.5")
      KSR.corex.append_branch_uri_q("sip:d@192.0.2.44", "1.0")
      KSR.pv.seti("$var(load)", KSR.tm.t_load_contacts())
      save("x0", "$xavp(tm_contacts[0]=>uri)")
      save("x1", "$xavp(tm_contacts[1]=>uri)")
      save("x3", "$xavp(tm_contacts[3]=>uri)")
      save("x0q", "$xavp(tm_contacts[0]=>q_flag)")
      save("x1q", "$xavp(tm_contacts[1]=>q_flag)")
      save("x2q", "$xavp(tm_contacts[2]=>q_flag)")
      save("x3q", "$xavp(tm_contacts[3]=>q_flag)")
      save("br_after_load", "$br")
      KSR.pv.seti("$var(next1)", KSR.tm.t_next_contacts())
      save("ru1", "$ru")
      KSR.tm.t_on_failure("serial")
      KSR.tm.t_relay()
    end
    function serial()
      local n = KSR.pv.get("$var(legs)") + 1
      KSR.pv.seti("$var(legs)", n)
      if n == KSR.pv.get("$var(droplast)") then KSR.tm.t_drop_replies("l") end
      if n == KSR.pv.get("$var(dropnone)") then KSR.tm.t_drop_replies("n") end
      local r = KSR.tm.t_next_contacts()
      KSR.pv.seti("$var(fnext" .. n .. ")", r)
      if r < 0 then return end
      KSR.tm.t_on_failure("serial")
      KSR.tm.t_relay()
    end
    """

private func ip(_ s: SentMessage) -> String { s.destination.ip }

@Suite struct TMContactsTests {
    private func harness(_ extra: [String: [String]] = [:]) throws -> ScriptHarness {
        var p: [String: [String]] = ["contacts_avp": ["tm_contacts"], "contact_flows_avp": ["tm_contact_flows"]]
        for (k, v) in extra { p[k] = v }
        return try TMT.harness(script, p)
    }

    /// Answers every INVITE sent to the given addresses with `code`.
    private func answer(_ h: ScriptHarness, _ invites: [SentMessage], _ code: Int, _ reason: String) throws {
        for inv in invites { try h.route(TMT.reply(to: inv, code, reason, toTag: inv.destination.ip), from: inv.destination) }
    }

    @Test func loadOrdersByQAndNextTakesOneGroupAtATime() throws {
        let h = try harness()
        try h.route(Msg.invite, from: TMT.caller)
        #expect(TMT.v(h, "load") == "1")
        // The xavp holds the highest q at its head; q_flag closes each group read from the head.
        #expect(TMT.v(h, "x0") == "sip:d@192.0.2.44")
        #expect(TMT.v(h, "x1") == "sip:c@192.0.2.43")
        #expect(TMT.v(h, "x3") == "sip:a@192.0.2.41")
        #expect([TMT.v(h, "x0q"), TMT.v(h, "x1q"), TMT.v(h, "x2q"), TMT.v(h, "x3q")] == ["1", "0", "1", "0"])
        // t_load_contacts empties the destination set.
        #expect(TMT.v(h, "br_after_load") == "nil")
        // First group: d alone, as the R-URI.
        #expect(TMT.v(h, "next1") == "1")
        #expect(TMT.v(h, "ru1") == "sip:d@192.0.2.44")
        let leg1 = TMT.sent(h, "INVITE")
        #expect(leg1.map(ip) == ["192.0.2.44"])
        #expect(leg1.map(TMT.requestURI) == ["sip:d@192.0.2.44"])

        // d is busy: the failure route takes c (R-URI) and b (branch) in parallel.
        h.sender.clear()
        try answer(h, leg1, 486, "Busy Here")
        #expect(TMT.v(h, "fnext1") == "1")
        let leg2 = TMT.sent(h, "INVITE")
        #expect(Set(leg2.map(ip)) == ["192.0.2.42", "192.0.2.43"])
        #expect(Set(leg2.map(TMT.requestURI)) == ["sip:b@192.0.2.42", "sip:c@192.0.2.43"])
        #expect(!h.sender.sent.contains { TMT.status($0) >= 300 && $0.destination == TMT.caller })

        // Both fail: a (no q: the lowest) is last.
        h.sender.clear()
        try answer(h, leg2, 480, "Temporarily Unavailable")
        #expect(TMT.v(h, "fnext2") == "1")
        let leg3 = TMT.sent(h, "INVITE")
        #expect(leg3.map(TMT.requestURI) == ["sip:a@192.0.2.41"])

        // a fails: nothing left (-2), the failure route ends and the reply goes upstream. With
        // failure_reply_mode 3 (default) only the last leg's reply is a candidate: 404, not 486/480.
        h.sender.clear()
        try answer(h, leg3, 404, "Not Found")
        #expect(TMT.v(h, "fnext3") == "-2")
        #expect(h.sender.sent.filter { $0.destination == TMT.caller }.map(TMT.status) == [404])
        TMT.run(h, for: .seconds(40), step: .seconds(1))
        #expect(h.transactions.count == 0)
    }

    /// Three legs: d answers 486, b and c 302, a 404. Which reply reaches the caller shows which legs
    /// stayed candidates.
    private func threeLegs(_ params: [String: [String]], vars: [String: Int] = [:]) throws -> [Int] {
        let h = try harness(params)
        for (k, v) in vars { h.context.worker.vars[k] = .int(v) }
        try h.route(Msg.invite, from: TMT.caller)
        var toCaller: [Int] = []
        for (code, reason) in [(486, "Busy Here"), (302, "Moved Temporarily"), (404, "Not Found")] {
            let leg = TMT.sent(h, "INVITE")
            toCaller += h.sender.sent.filter { $0.destination == TMT.caller }.map(TMT.status).filter { $0 >= 200 }
            h.sender.clear()
            try answer(h, leg, code, reason)
        }
        return toCaller + h.sender.sent.filter { $0.destination == TMT.caller }.map(TMT.status)
    }

    @Test func failureReplyModes() throws {
        // 3 (default) and 2: each new leg drops the leg before it: only a's 404 is left.
        #expect(try threeLegs([:]) == [404])
        #expect(try threeLegs(["failure_reply_mode": ["2"]]) == [404])
        #expect(try threeLegs(["failure_reply_mode": ["1"]]) == [404])
        // 0: every leg competes; the 3xx class is the lowest.
        #expect(try threeLegs(["failure_reply_mode": ["0"]]) == [302])
        // t_drop_replies in the script overrides the mode for that failure route: "l" in the second
        // drops the 302s only (486 and 404 compete, 486 came first); "n" keeps them.
        #expect(try threeLegs(["failure_reply_mode": ["0"]], vars: ["droplast": 2]) == [486])
        #expect(try threeLegs([:], vars: ["dropnone": 2]) == [302])
    }

    @Test func disabledWithoutContactsAVP() throws {
        let h = try TMT.harness(script)
        try h.route(Msg.invite, from: TMT.caller)
        #expect(TMT.v(h, "load") == "-1")
        #expect(TMT.v(h, "next1") == "-1")
    }

    @Test func returnCodesWithNothingToDo() throws {
        let p = ModuleConfiguration(params: ["tm": ["contacts_avp": ["tm_contacts"], "contact_flows_avp": ["tm_contact_flows"]]])
        let s = """
            function ksr_request_route()
              KSR.pv.seti("$var(load)", KSR.tm.t_load_contacts())
              KSR.pv.seti("$var(next)", KSR.tm.t_next_contacts())
              KSR.pv.seti("$var(flow)", KSR.tm.t_next_contact_flow())
              KSR.pv.seti("$var(mode)", KSR.tm.ki_t_load_contacts_mode(7))
            end
            """
        let h = try ScriptHarness(script: s, config: p)
        try h.route(Msg.invite, from: TMT.caller)
        // Only the R-URI: nothing to order (1), nothing loaded (-2); no instance on any branch (-2).
        #expect(TMT.v(h, "load") == "1")
        #expect(TMT.v(h, "next") == "-2")
        #expect(TMT.v(h, "flow") == "-2")
        #expect(TMT.v(h, "mode") == "-1")
    }

    @Test func proportionalModePutsEveryContactInItsOwnGroup() throws {
        let p = ModuleConfiguration(params: ["tm": ["contacts_avp": ["tm_contacts"], "contact_flows_avp": ["f"]]])
        let s = """
            function ksr_request_route()
              KSR.seturi("sip:a@192.0.2.41")
              KSR.corex.append_branch_uri_q("sip:b@192.0.2.42", "0.7")
              KSR.corex.append_branch_uri_q("sip:c@192.0.2.43", "0.3")
              KSR.pv.seti("$var(load)", KSR.tm.ki_t_load_contacts_mode(1))
              KSR.pv.sets("$var(last)", KSR.pv.get("$xavp(tm_contacts[2]=>uri)"))
              KSR.pv.seti("$var(flags)", KSR.pv.get("$xavp(tm_contacts[0]=>q_flag)") + KSR.pv.get("$xavp(tm_contacts[1]=>q_flag)") + KSR.pv.get("$xavp(tm_contacts[2]=>q_flag)"))
              KSR.tm.t_next_contacts()
              KSR.pv.sets("$var(first)", KSR.pv.get("$ru"))
              KSR.pv.sets("$var(br)", tostring(KSR.pv.get("$br")))
            end
            """
        let h = try ScriptHarness(script: s, config: p)
        try h.route(Msg.invite, from: TMT.caller)
        #expect(TMT.v(h, "load") == "1")
        // a has no q: a backup after the weighted ones; every item closes its own group.
        #expect(TMT.v(h, "last") == "sip:a@192.0.2.41")
        #expect(TMT.v(h, "flags") == "3")
        #expect(["sip:b@192.0.2.42", "sip:c@192.0.2.43"].contains(TMT.v(h, "first")))
        #expect(TMT.v(h, "br") == "nil")
    }
}
