import Testing
import Foundation
import SIPCore
import SIPTransport
import StarlingTesting
import StarlingKEMI
import KSRModules

/// The failure route runs on the request as the request route relayed it (Kamailio's `fake_req`):
/// `$du`, the R-URI edits, `$mf`, the AVPs, the winning branch's `$bf`, an empty destination set.
@Suite struct TMFailureStateTests {
    static let gateway = TMT.address("192.0.2.20")

    /// A carrier route: R-URI to a host where nothing answers, `$du` to the gateway.
    static let script = tmSaveHelper + """
        function ksr_request_route()
          if KSR.is_ACK() then
            if KSR.tm.t_check_trans() > 0 then KSR.tm.t_relay() end
            return
          end
          if KSR.tm.t_check_trans() == 0 then return end
          KSR.setflag(5)
          KSR.setbflag(2)
          KSR.pv.sets("$avp(carrier)", "acme")
          KSR.seturi("sip:+15551234@192.0.2.99:5060")
          KSR.setdsturi("sip:192.0.2.20:5060")
          KSR.corex.append_branch_uri("sip:other@192.0.2.77")
          KSR.tm.t_on_failure("carrier_failure")
          KSR.pv.seti("$var(relay)", KSR.tm.t_relay())
          -- after the relay: not part of the request as relayed
          KSR.setflag(9)
        end
        function carrier_failure()
          KSR.pv.seti("$var(fcount)", KSR.pv.get("$var(fcount)") + 1)
          save("fdu", "$du")
          save("fru", "$ru")
          save("favp", "$avp(carrier)")
          save("fbf", "$bf")
          KSR.pv.sets("$var(fflag5)", tostring(KSR.isflagset(5)))
          if KSR.tm.t_check_status("407") > 0 and KSR.pv.get("$var(fcount)") == 1 then
            KSR.setflag(7)
            KSR.hdr.append("X-Carrier-Retry: 1\\r\\n")
            KSR.tm.t_on_failure("carrier_failure")
            KSR.pv.seti("$var(frelay)", KSR.tm.t_relay())
          elseif KSR.pv.get("$var(fcount)") == 2 then
            KSR.pv.sets("$var(fflag7)", tostring(KSR.isflagset(7)))
            save("fdu2", "$du")
          end
        end
        """

    @Test func failureRouteSeesTheRequestAsRelayedAndRelaysToDU() throws {
        let h = try TMT.harness(Self.script)
        try h.route(Msg.invite, from: TMT.caller)
        #expect(TMT.v(h, "relay") == "1")
        let first = TMT.sent(h, "INVITE")
        // The R-URI branch goes to $du, the appended branch to its own URI.
        #expect(first.count == 2)
        let toGateway = try #require(first.first { $0.destination == Self.gateway })
        #expect(TMT.requestURI(toGateway) == "sip:+15551234@192.0.2.99:5060")

        h.sender.clear()
        try h.route(TMT.reply(to: toGateway, 407, "Proxy Authentication Required"), from: Self.gateway)
        let other = try #require(first.first { $0.destination != Self.gateway })
        try h.route(TMT.reply(to: other, 404, "Not Found", toTag: "other"), from: TMT.address("192.0.2.77"))

        #expect(TMT.v(h, "fcount") == "1")
        #expect(TMT.v(h, "fdu") == "sip:192.0.2.20:5060")
        #expect(TMT.v(h, "fru") == "sip:+15551234@192.0.2.99:5060")
        #expect(TMT.v(h, "favp") == "acme")
        #expect(TMT.v(h, "fflag5") == "true")
        // The branch that won (the 407: the lowest class) was the R-URI branch, with $bf 2 set.
        #expect(TMT.v(h, "fbf") == "4")
        #expect(TMT.v(h, "frelay") == "1")
        // The failure route's t_relay goes to $du again, with the R-URI as relayed and the new header;
        // the destination set starts empty (the appended branch is not sent again).
        let retry = TMT.sent(h, "INVITE")
        #expect(retry.count == 1)
        #expect(retry.first?.destination == Self.gateway)
        #expect(retry.first.map(TMT.requestURI) == "sip:+15551234@192.0.2.99:5060")
        #expect(retry.first?.text.contains("X-Carrier-Retry: 1\r\n") == true)

        // A second failure: the flags the first failure route set are the transaction's now; $du is
        // still the request route's.
        let again = try #require(retry.first)
        try h.route(TMT.reply(to: again, 503, "Service Unavailable"), from: Self.gateway)
        #expect(TMT.v(h, "fcount") == "2")
        #expect(TMT.v(h, "fflag7") == "true")
        #expect(TMT.v(h, "fdu2") == "sip:192.0.2.20:5060")
        #expect(h.sender.sent.contains { TMT.status($0) == 503 || TMT.status($0) == 500 })
    }

    @Test func requestRouteStateIsRestoredAroundTheFailureRoute() throws {
        // The failure route runs from a reply's dispatch: after it, the context holds the reply again.
        let h = try TMT.harness(Self.script)
        try h.route(Msg.invite, from: TMT.caller)
        let toGateway = try #require(TMT.sent(h, "INVITE").first { $0.destination == Self.gateway })
        try h.route(TMT.reply(to: toGateway, 486, "Busy Here"), from: Self.gateway)
        #expect(h.context.routeType == .reply)
        #expect(h.context.transaction == nil)
        #expect(h.context.destinationURI == nil)
    }

    /// A local reply of the transaction (a 408 after a timeout, built on a timer, not in any route) is
    /// built from the request as relayed: its `append_to_reply` headers, never those the worker's last
    /// message left in the context (Kamailio builds it from t->uas.request and its reply lumps).
    @Test func localTimeoutReplyUsesTheRequestAsRelayed() throws {
        let script = """
            function ksr_request_route()
              if KSR.is_OPTIONS() then
                KSR.hdr.append_to_reply("X-Other: options\\r\\n")
                KSR.sl.sl_send_reply(200, "OK")
                return
              end
              if KSR.tm.t_check_trans() == 0 then return end
              KSR.hdr.append_to_reply("X-Why: carrier\\r\\n")
              KSR.setdsturi("sip:192.0.2.20:5060")
              KSR.tm.t_relay()
            end
            """
        let h = try TMT.harness(script, ["fr_timer": ["1000"], "fr_inv_timer": ["1000"]])
        try h.route(Msg.invite, from: TMT.caller)
        let options = """
            OPTIONS sip:127.0.0.1 SIP/2.0\r
            Via: SIP/2.0/UDP 192.0.2.11:5060;branch=z9hG4bKopt1\r
            Max-Forwards: 70\r
            To: <sip:127.0.0.1>\r
            From: <sip:ping@192.0.2.11>;tag=p1\r
            Call-ID: opt-1@192.0.2.11\r
            CSeq: 1 OPTIONS\r
            Content-Length: 0\r
            \r

            """
        try h.route(options, from: TMT.address("192.0.2.11"))
        #expect(h.sender.sent.contains { TMT.status($0) == 200 && $0.text.contains("X-Other: options") })
        h.sender.clear()
        TMT.run(h, for: .seconds(3))
        let timeout = try #require(h.sender.sent.first { TMT.status($0) == 408 })
        #expect(timeout.destination == TMT.caller)
        #expect(timeout.text.contains("X-Why: carrier\r\n"))
        #expect(!timeout.text.contains("X-Other"))
    }
}
