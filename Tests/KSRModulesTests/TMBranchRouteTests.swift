import Testing
import SIPCore
import SIPTransport
import StarlingKEMI
import StarlingTesting
import KSRModules

/// Branch routes change their branch only: header edits, the R-URI, `$du` and branch flags made there
/// go on that branch's copy, not on the transaction's request or the other branches.
private let script = """
    function ksr_request_route()
      if KSR.is_ACK() then return end
      KSR.hdr.append("X-Request: all\\r\\n")
      KSR.corex.append_branch_uri("sip:carol@192.0.2.21")
      KSR.setdsturi("sip:192.0.2.20:5060")
      KSR.tm.t_on_branch("branch_route")
      KSR.tm.t_on_failure("failure_route")
      KSR.pv.seti("$var(relay)", KSR.tm.t_relay())
      KSR.pv.sets("$var(du_after)", tostring(KSR.pv.get("$du")))
      KSR.pv.sets("$var(ru_after)", KSR.pv.get("$ru"))
    end
    function branch_route()
      local i = KSR.pv.get("$T_branch_idx")
      KSR.hdr.append("X-Branch: " .. i .. "\\r\\n")
      KSR.pv.sets("$var(bru" .. i .. ")", KSR.pv.get("$ru"))
      KSR.pv.sets("$var(bdu" .. i .. ")", tostring(KSR.pv.get("$du")))
      if i == 1 then
        KSR.pv.sets("$ru", "sip:carol-mobile@192.0.2.21")
        KSR.pv.sets("$du", "sip:192.0.2.23:5070")
        KSR.hdr.remove("User-Agent")
      end
    end
    function failure_route()
      KSR.tm.t_on_branch("")
      KSR.setdsturi("sip:192.0.2.30:5060")
      KSR.tm.t_relay()
    end
    """

@Suite struct TMBranchRouteTests {
    @Test func editsApplyToTheirBranchOnly() throws {
        let h = try TMT.harness(script)
        try h.route(Msg.invite, from: TMT.caller)
        #expect(TMT.v(h, "relay") == "1")
        let invites = TMT.sent(h, "INVITE")
        #expect(invites.count == 2)
        // Branch 0: the request's R-URI to $du, its own X-Branch header, the request's X-Request.
        let b0 = try #require(invites.first)
        #expect(b0.destination == TMT.address("192.0.2.20"))
        #expect(TMT.requestURI(b0) == "sip:bob@example.com")
        #expect(b0.text.contains("X-Branch: 0\r\n"))
        #expect(!b0.text.contains("X-Branch: 1"))
        #expect(b0.text.contains("X-Request: all\r\n"))
        // Branch 1: its R-URI and $du as the branch route set them, User-Agent removed there only.
        let b1 = invites[1]
        #expect(b1.destination == TMT.address("192.0.2.23", 5070))
        #expect(TMT.requestURI(b1) == "sip:carol-mobile@192.0.2.21")
        #expect(b1.text.contains("X-Branch: 1\r\n"))
        #expect(!b1.text.contains("X-Branch: 0"))
        #expect(b1.text.contains("X-Request: all\r\n"))
        #expect(!b1.text.contains("User-Agent"))
        #expect(b0.text.contains("User-Agent: TestUA/1.0\r\n"))
        // What the branch route saw: the branch's R-URI and $du.
        #expect(TMT.v(h, "bru0") == "sip:bob@example.com")
        #expect(TMT.v(h, "bdu0") == "sip:192.0.2.20:5060")
        #expect(TMT.v(h, "bru1") == "sip:carol@192.0.2.21")
        #expect(TMT.v(h, "bdu1") == "nil")
        // After t_relay the request route has its own $du and R-URI back.
        #expect(TMT.v(h, "du_after") == "sip:192.0.2.20:5060")
        #expect(TMT.v(h, "ru_after") == "sip:bob@example.com")

        // Both fail; the failure route relays the transaction's request (no branch route now): it has
        // the request route's X-Request and none of the branch edits.
        h.sender.clear()
        try h.route(TMT.reply(to: b0, 486, "Busy Here"), from: b0.destination)
        try h.route(TMT.reply(to: b1, 486, "Busy Here"), from: b1.destination)
        let again = try #require(TMT.sent(h, "INVITE").first)
        #expect(again.destination == TMT.address("192.0.2.30"))
        #expect(TMT.requestURI(again) == "sip:bob@example.com")
        #expect(again.text.contains("X-Request: all\r\n"))
        #expect(again.text.contains("User-Agent: TestUA/1.0\r\n"))
        #expect(!again.text.contains("X-Branch"))
    }

    @Test func dropInBranchRouteSkipsOnlyThatBranch() throws {
        let s = """
            function ksr_request_route()
              KSR.corex.append_branch_uri("sip:carol@192.0.2.21")
              KSR.setdsturi("sip:192.0.2.20:5060")
              KSR.tm.t_on_branch("br")
              KSR.pv.seti("$var(relay)", KSR.tm.t_relay())
            end
            function br()
              KSR.pv.sets("$var(idx_" .. KSR.pv.get("$rU") .. ")", tostring(KSR.pv.get("$T_branch_idx")))
              if KSR.pv.get("$rU") == "bob" then
                KSR.hdr.append("X-Dropped: yes\\r\\n")
                KSR.x.drop()
              end
            end
            """
        let h = try TMT.harness(s)
        try h.route(Msg.invite, from: TMT.caller)
        #expect(TMT.v(h, "relay") == "1")
        let invites = TMT.sent(h, "INVITE")
        #expect(invites.map { $0.destination } == [TMT.address("192.0.2.21")])
        #expect(!invites[0].text.contains("X-Dropped"))
        // A dropped branch takes no index (Kamailio's add_uac): carol's branch is 0 too.
        #expect(TMT.v(h, "idx_bob") == "0")
        #expect(TMT.v(h, "idx_carol") == "0")
    }
}
