import Testing
import SIPCore
import SIPTransport
import SIPTransaction
import StarlingKEMI
import StarlingTesting
@testable import KSRModules

/// `$T_req(pv)`, `$T_rpl(pv)`, `$T_inv(pv)`, `$T(name)`, `$T_branch(name)`, `$T_reply_reason`,
/// `$T_reply_last`, `$T_branch_idx` per route type, as tmx's t_var.c gives them.
private let script = tmSaveHelper + """
    function ksr_request_route()
      if KSR.is_CANCEL() then
        save("inv_hdr", "$T_inv($hdr(X-Multi))")
        save("inv_rm", "$T_inv($rm)")
        save("cancel_req", "$T_req($rm)")
        if KSR.tm.t_check_trans() > 0 then KSR.tm.t_relay() end
        return
      end
      if KSR.is_ACK() then return end
      save("rq_label", "$T(id_label)")
      save("rq_req", "$T_req($rm)")
      save("rq_inv", "$T_inv($rm)")
      KSR.corex.append_branch_uri("sip:carol@192.0.2.21")
      save("rq_bidx", "$T_branch_idx")
      KSR.corex.append_branch_uri("sip:dave@192.0.2.22")
      save("rq_bidx2", "$T_branch_idx")
      KSR.pv.sets("$var(rq_label_n)", tostring(KSR.pv.get("$T(id_label_n)")))
      save("rq_index_n", "$T(id_index_n)")
      KSR.pv.seti("$var(rq_newtran)", KSR.tm.t_newtran())
      save("rq_label2", "$T(id_label)")
      save("rq_code", "$T(reply_code)")
      KSR.tm.t_on_failure("failure_route")
      KSR.tm.t_on_reply("onreply_route")
      KSR.setdsturi("sip:192.0.2.20:5060")
      KSR.tm.t_relay()
    end
    function ksr_reply_route()
      save("core_req", "$T_req($rm)")
      save("core_reason", "$T_reply_reason")
    end
    function onreply_route()
      local n = KSR.pv.get("$rs")
      save("or_req_" .. n, "$T_req($hdr(X-Multi))")
      save("or_ru_" .. n, "$T_req($ru)")
      save("or_rpl_" .. n, "$T_rpl($rs)")
      save("or_reason_" .. n, "$T_reply_reason")
      save("or_last_" .. n, "$T_reply_last")
      save("or_code_" .. n, "$T(reply_code)")
      save("or_bidx_" .. n, "$T_branch_idx")
      save("or_buri_" .. n, "$T_branch(uri)")
    end
    function failure_route()
      save("f_rpl_rs", "$T_rpl($rs)")
      save("f_rpl_hdr", "$T_rpl($hdr(X-Why))")
      save("f_rpl_rr", "$T_rpl($rr)")
      save("f_req", "$T_req($rm)")
      save("f_reason", "$T_reply_reason")
      save("f_type", "$T(reply_type)")
      save("f_code", "$T_reply_code")
      save("f_bidx", "$T_branch_idx")
      save("f_last", "$T_reply_last")
      save("f_label", "$T(id_label)")
      save("f_index", "$T(id_index)")
      save("f_ruid", "$T_reply_ruid")
      save("f_bflags", "$T_branch(flags)")
    end
    """

private let cancelText = """
    CANCEL sip:bob@example.com SIP/2.0\r
    Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK776asdhds;rport\r
    Max-Forwards: 70\r
    To: Bob <sip:bob@example.com>\r
    From: "Alice" <sip:alice@atlanta.example.com>;tag=1928301774\r
    Call-ID: a84b4c76e66710@pc33\r
    CSeq: 314159 CANCEL\r
    Content-Length: 0\r
    \r

    """

@Suite struct TMPVTests {
    @Test func requestRouteAttributes() throws {
        let h = try TMT.harness(script)
        try h.route(Msg.invite, from: TMT.caller)
        // No transaction yet: $T(id_label) is null; the _n form creates it (t_newtran then says -10).
        #expect(TMT.v(h, "rq_label") == "nil")
        #expect(Int(TMT.v(h, "rq_label_n")) != nil)
        #expect(TMT.v(h, "rq_newtran") == "-10")
        #expect(TMT.v(h, "rq_label2") == TMT.v(h, "rq_label_n"))
        let index = try #require(Int(TMT.v(h, "rq_index_n")))
        #expect((0..<64).contains(index))
        // $T_req only for replies, $T_inv only for CANCEL.
        #expect(TMT.v(h, "rq_req") == "nil")
        #expect(TMT.v(h, "rq_inv") == "nil")
        // $T_branch_idx in a request route: the number of appended branches.
        #expect(TMT.v(h, "rq_bidx") == "1")
        #expect(TMT.v(h, "rq_bidx2") == "2")
        // 100 Trying sent by t_newtran? No: t_newtran does not reply; the code is 0 before t_relay.
        #expect(TMT.v(h, "rq_code") == "0")
    }

    @Test func onReplyRouteSeesTheRequestAndTheBranch() throws {
        let h = try TMT.harness(script)
        try h.route(Msg.invite, from: TMT.caller)
        let invites = TMT.sent(h, "INVITE")
        #expect(invites.count == 3)
        let toDave = try #require(invites.first { $0.destination == TMT.address("192.0.2.22") })
        try h.route(TMT.reply(to: toDave, 180, "Ringing"), from: TMT.address("192.0.2.22"))
        try h.route(TMT.reply(to: toDave, 183, "Session Progress"), from: TMT.address("192.0.2.22"))
        #expect(TMT.v(h, "or_req_180") == "one")
        #expect(TMT.v(h, "or_ru_180") == "sip:bob@example.com")
        #expect(TMT.v(h, "or_rpl_180") == "nil")
        #expect(TMT.v(h, "or_reason_180") == "Ringing")
        #expect(TMT.v(h, "or_reason_183") == "Session Progress")
        // $T_reply_last: the code the branch had before this reply.
        #expect(TMT.v(h, "or_last_180") == "0")
        #expect(TMT.v(h, "or_last_183") == "180")
        #expect(TMT.v(h, "or_code_183") == "183")
        #expect(TMT.v(h, "or_bidx_183") == "2")
        #expect(TMT.v(h, "or_buri_183") == "sip:dave@192.0.2.22")
        // The core reply route: the transaction is found from the reply.
        #expect(TMT.v(h, "core_req") == "INVITE")
        #expect(TMT.v(h, "core_reason") == "Session Progress")
    }

    @Test func failureRouteSeesTheWinningReply() throws {
        let h = try TMT.harness(script)
        try h.route(Msg.invite, from: TMT.caller)
        for inv in TMT.sent(h, "INVITE") {
            let code = inv.destination == TMT.address("192.0.2.20") ? 486 : 404
            try h.route(TMT.reply(to: inv, code, code == 486 ? "Busy Here" : "Not Found", extra: "X-Why: busy-\(code)\r\n"),
                        from: inv.destination)
        }
        // Both are 4xx: the first (branch 0, 486) wins.
        #expect(TMT.v(h, "f_code") == "486")
        #expect(TMT.v(h, "f_rpl_rs") == "486")
        #expect(TMT.v(h, "f_rpl_hdr") == "busy-486")
        #expect(TMT.v(h, "f_rpl_rr") == "Busy Here")
        #expect(TMT.v(h, "f_reason") == "Busy Here")
        #expect(TMT.v(h, "f_type") == "0")
        // The message is the request: $T_req is null there (tmx).
        #expect(TMT.v(h, "f_req") == "nil")
        // The branches of the transaction plus the appended ones (none in the failure route).
        #expect(TMT.v(h, "f_bidx") == "3")
        #expect(TMT.v(h, "f_last") == "nil")
        #expect(TMT.v(h, "f_label") == TMT.v(h, "rq_label_n"))
        #expect(TMT.v(h, "f_index") == TMT.v(h, "rq_index_n"))
        #expect(TMT.v(h, "f_ruid") == "")
        #expect(TMT.v(h, "f_bflags") == "0")
    }

    @Test func failureRouteAfterATimeoutSeesAFakedReply() throws {
        let h = try TMT.harness(script, ["fr_timer": ["1000"], "fr_inv_timer": ["2000"]])
        try h.route(Msg.invite, from: TMT.caller)
        TMT.run(h, for: .milliseconds(1500))
        #expect(TMT.v(h, "f_code") == "408")
        #expect(TMT.v(h, "f_type") == "1")
        #expect(TMT.v(h, "f_rpl_rs") == "nil")
        #expect(TMT.v(h, "f_reason") == "Request Timeout")
    }

    @Test func cancelSeesTheInvite() throws {
        let h = try TMT.harness(script)
        try h.route(Msg.invite, from: TMT.caller)
        try h.route(cancelText, from: TMT.caller)
        #expect(TMT.v(h, "inv_hdr") == "one")
        #expect(TMT.v(h, "inv_rm") == "INVITE")
        #expect(TMT.v(h, "cancel_req") == "nil")
    }

    /// A transaction whose final reply went upstream keeps its request parked (bytes and edits, no
    /// parse state); replies that come later still read it through `$T_req`, parsed again.
    @Test func finishedTransactionParksItsRequest() throws {
        let h = try TMT.harness(script)
        try h.route(Msg.invite, from: TMT.caller)
        let invites = TMT.sent(h, "INVITE")
        let first = try #require(invites.first { $0.destination == TMT.address("192.0.2.20") })
        try h.route(TMT.reply(to: first, 200, "OK"), from: first.destination)
        var cells: [TMCell] = []
        _ = h.transactions.table.removeAll { _, entry in
            if case .server(let c) = entry, !cells.contains(c) { cells.append(c) }
            return false
        }
        let cell = try #require(cells.first)
        #expect(cells.count == 1)
        #expect(cell.locked { cell.isRequestParked })
        let toDave = try #require(invites.first { $0.destination == TMT.address("192.0.2.22") })
        try h.route(TMT.reply(to: toDave, 183, "Session Progress"), from: toDave.destination)
        #expect(TMT.v(h, "core_req") == "INVITE")
        #expect(TMT.v(h, "core_reason") == "Session Progress")
        #expect(TMT.v(h, "or_req_183") == "one")
        #expect(TMT.v(h, "or_ru_183") == "sip:bob@example.com")
        // Reading it brought it back; the next shed parks it again.
        #expect(!cell.locked { cell.isRequestParked })
        cell.locked { cell.shedFinished() }
        #expect(cell.locked { cell.isRequestParked })
    }

    @Test func namesParseAndUnknownNamesDoNot() throws {
        #expect(try evalValue(#"KSR.pv.get("$T(reply_code)")"#) == "number:0")
        #expect(try evalValue(#"KSR.pv.get("$T(id_label)")"#) == "nil:nil")
        #expect(try evalValue(#"KSR.pv.get("$T(bogus)")"#) == "nil:nil")
        #expect(try evalValue(#"KSR.pv.get("$T_req($bogus)")"#) == "nil:nil")
        #expect(try evalValue(#"KSR.pv.sets("$T_reply_reason", "x")"#) == "boolean:false")
        #expect(try evalValue(#"KSR.pv.get("$T_reply_reason")"#) == "string:")
    }
}
