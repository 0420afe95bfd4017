import Testing
import SIPCore
import SIPTransport
import StarlingKEMI
import StarlingTesting
import KSRModules

private enum RRMsg {
    /// An in-dialog request (To tag) with the given Request-URI and Route header values.
    static func bye(ruri: String = "sip:bob@192.0.2.20:5060", routes: [String], fromTag: String = "1928301774") -> String {
        var s = "BYE \(ruri) SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKbye1\r\nMax-Forwards: 70\r\n"
        if !routes.isEmpty { s += "Route: " + routes.joined(separator: ", ") + "\r\n" }
        s += "From: <sip:alice@atlanta.example.com>;tag=\(fromTag)\r\nTo: <sip:bob@example.com>;tag=b1\r\nCall-ID: rr1\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n"
        return s
    }

    static func invite(route: String? = nil) -> String {
        var s = "INVITE sip:bob@192.0.2.20:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKinv1\r\nMax-Forwards: 70\r\n"
        if let route { s += "Route: \(route)\r\n" }
        s += "From: <sip:alice@atlanta.example.com>;tag=1928301774\r\nTo: <sip:bob@example.com>\r\nCall-ID: rr2\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
        return s
    }
}

private func harness(_ body: String, rr: [String: String] = [:]) throws -> ScriptHarness {
    let script = """
        function ksr_request_route()
          \(body)
        end
        """
    var params: [String: [String]] = [:]
    for (k, v) in rr { params[k] = [v] }
    return try ScriptHarness(script: script, config: ModuleConfiguration(params: ["rr": params]))
}

private func outVar(_ h: ScriptHarness, _ name: String) -> KemiValue? { h.context.worker.vars[name] }

@Suite struct RRTests {
    @Test func recordRouteForwardedBytes() throws {
        let h = try harness("""
            KSR.pv.seti("$var(a)", KSR.rr.record_route())
            KSR.pv.seti("$var(b)", KSR.rr.record_route())
            KSR.forward()
            """)
        try h.route(RRMsg.invite())
        #expect(outVar(h, "a") == .int(1))
        #expect(outVar(h, "b") == .int(-1))
        let sent = try #require(h.sender.sent.first)
        #expect(sent.destination == SocketAddress(ip: "192.0.2.20", port: 5060))
        #expect(sent.text.hasPrefix("INVITE sip:bob@192.0.2.20:5060 SIP/2.0\r\nRecord-Route: <sip:127.0.0.1;lr;ftag=1928301774>\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK"))
        let m = try #require(sent.message)
        #expect(m.values(.recordRoute).count == 1)
    }

    @Test func recordRouteParamsFullLRNoFromTag() throws {
        let h = try harness("""
            KSR.pv.seti("$var(p)", KSR.rr.add_rr_param(";nat=yes"))
            KSR.pv.seti("$var(a)", KSR.rr.record_route())
            KSR.forward()
            """, rr: ["append_fromtag": "0", "enable_full_lr": "1"])
        try h.route(RRMsg.invite())
        #expect(outVar(h, "p") == .int(1) && outVar(h, "a") == .int(1))
        let sent = try #require(h.sender.sent.first)
        #expect(sent.text.contains("\r\nRecord-Route: <sip:127.0.0.1;lr=on;nat=yes>\r\nVia: SIP/2.0/UDP 127.0.0.1"))
    }

    @Test func addRRParamAfterRecordRouteAndParamsVariant() throws {
        let h = try harness("""
            KSR.rr.record_route_params(";x=1")
            KSR.rr.add_rr_param("nat=yes")
            KSR.forward()
            """, rr: ["append_fromtag": "0"])
        try h.route(RRMsg.invite())
        let sent = try #require(h.sender.sent.first)
        #expect(sent.text.contains("Record-Route: <sip:127.0.0.1;lr;x=1;nat=yes>\r\n"))
    }

    @Test func presetAndAdvertisedAndRemove() throws {
        let h1 = try harness("""
            KSR.pv.seti("$var(a)", KSR.rr.record_route_preset("10.0.0.1:5080", "sip:10.0.0.2"))
            KSR.pv.seti("$var(b)", KSR.rr.record_route_preset_one("10.0.0.3"))
            KSR.forward()
            """, rr: ["append_fromtag": "0"])
        try h1.route(RRMsg.invite())
        #expect(outVar(h1, "a") == .int(1) && outVar(h1, "b") == .int(-1))
        let t1 = try #require(h1.sender.sent.first).text
        #expect(t1.contains("Record-Route: <sip:10.0.0.1:5080;lr>\r\nRecord-Route: <sip:10.0.0.2;lr>\r\nVia: "))

        let h2 = try harness("""
            KSR.rr.record_route_advertised_address("proxy.example.com:5070")
            KSR.forward()
            """, rr: ["append_fromtag": "0"])
        try h2.route(RRMsg.invite())
        #expect(try #require(h2.sender.sent.first).text.contains("Record-Route: <sip:proxy.example.com:5070;lr>\r\n"))

        let h3 = try harness("""
            KSR.rr.record_route()
            KSR.pv.seti("$var(r)", KSR.rr.remove_record_route())
            KSR.forward()
            """)
        try h3.route(RRMsg.invite())
        #expect(outVar(h3, "r") == .int(1))
        #expect(try #require(h3.sender.sent.first).message?.firstHeader(.recordRoute) == nil)
    }

    @Test func looseRouteInDialogToNextHop() throws {
        let h = try harness("""
            KSR.pv.seti("$var(lr)", KSR.rr.loose_route())
            KSR.pv.seti("$var(nat)", KSR.rr.check_route_param("nat=yes"))
            KSR.pv.seti("$var(other)", KSR.rr.check_route_param("foo=bar"))
            KSR.pv.sets("$var(du)", KSR.pv.get("$du"))
            KSR.forward()
            """)
        try h.route(RRMsg.bye(routes: ["<sip:127.0.0.1:5060;lr;nat=yes>", "<sip:192.0.2.30:5070;lr>"]))
        #expect(outVar(h, "lr") == .int(1))
        #expect(outVar(h, "nat") == .int(1))
        #expect(outVar(h, "other") == .int(-1))
        #expect(outVar(h, "du") == .string("sip:192.0.2.30:5070;lr"))
        let sent = try #require(h.sender.sent.first)
        #expect(sent.destination == SocketAddress(ip: "192.0.2.30", port: 5070))
        let m = try #require(sent.message)
        #expect(m.string(m.requestURIRange) == "sip:bob@192.0.2.20:5060")
        #expect(m.values(.route).map(m.string) == ["<sip:192.0.2.30:5070;lr>"])
    }

    @Test func looseRouteOnlyOurRouteRoutesToRequestURI() throws {
        let h = try harness("""
            KSR.pv.seti("$var(lr)", KSR.rr.loose_route())
            KSR.pv.seti("$var(nh)", KSR.rr.next_hop_route())
            KSR.forward()
            """)
        try h.route(RRMsg.bye(routes: ["<sip:127.0.0.1:5060;lr>"]))
        #expect(outVar(h, "lr") == .int(1))
        let sent = try #require(h.sender.sent.first)
        #expect(sent.destination == SocketAddress(ip: "192.0.2.20", port: 5060))
        #expect(sent.message?.firstHeader(.route) == nil)
    }

    @Test func looseRouteStrictPreviousHop() throws {
        let h = try harness("""
            KSR.pv.seti("$var(lr)", KSR.rr.loose_route())
            KSR.pv.seti("$var(nat)", KSR.rr.check_route_param("nat=yes"))
            KSR.forward()
            """)
        try h.route(RRMsg.bye(ruri: "sip:127.0.0.1:5060;lr;nat=yes", routes: ["<sip:bob@192.0.2.40:5090>"]))
        #expect(outVar(h, "lr") == .int(1))
        #expect(outVar(h, "nat") == .int(1))
        let sent = try #require(h.sender.sent.first)
        #expect(sent.destination == SocketAddress(ip: "192.0.2.40", port: 5090))
        let m = try #require(sent.message)
        #expect(m.string(m.requestURIRange) == "sip:bob@192.0.2.40:5090")
        #expect(m.firstHeader(.route) == nil)
    }

    @Test func looseRouteStrictNextHop() throws {
        let h = try harness("""
            KSR.pv.seti("$var(lr)", KSR.rr.loose_route())
            KSR.forward()
            """)
        try h.route(RRMsg.bye(routes: ["<sip:127.0.0.1:5060;lr>", "<sip:192.0.2.60:5060>", "<sip:192.0.2.61;lr>"]))
        #expect(outVar(h, "lr") == .int(1))
        let sent = try #require(h.sender.sent.first)
        #expect(sent.destination == SocketAddress(ip: "192.0.2.60", port: 5060))
        let m = try #require(sent.message)
        #expect(m.string(m.requestURIRange) == "sip:192.0.2.60:5060")
        #expect(m.values(.route).map(m.string) == ["<sip:192.0.2.61;lr>", "<sip:bob@192.0.2.20:5060>"])
    }

    @Test func looseRouteReturnCodes() throws {
        #expect(try evalValue("KSR.rr.loose_route()", RRMsg.bye(routes: [])) == "number:-1")
        // Kamailio 5.6 (checked with kamailio 5.6.3): an initial request whose Route set is only ours
        // gives -3 (RR_PRELOADED); a preloaded Route elsewhere routes it (1, $du = that Route).
        #expect(try evalValue("KSR.rr.loose_route()", RRMsg.invite(route: "<sip:192.0.2.50;lr>")) == "number:1")
        #expect(try evalValue("KSR.pv.get(\"$du\")", RRMsg.invite(route: "<sip:192.0.2.50;lr>"), before: "KSR.rr.loose_route()") == "string:sip:192.0.2.50;lr")
        #expect(try evalValue("KSR.rr.loose_route_preloaded()", RRMsg.invite(route: "<sip:192.0.2.50;lr>")) == "number:-1")
        #expect(try evalValue("KSR.rr.loose_route_preloaded()", RRMsg.invite(route: "<sip:127.0.0.1;lr>")) == "number:1")
        #expect(try evalValue("KSR.rr.loose_route()", RRMsg.invite(route: "<sip:127.0.0.1;lr>")) == "number:-3")
        #expect(try evalValue("KSR.rr.loose_route()", RRMsg.invite(route: "<sip:127.0.0.1;lr>, <sip:192.0.2.50;lr>")) == "number:1")
        // in-dialog, top Route elsewhere: routed by it
        #expect(try evalValue("KSR.pv.get(\"$du\")", RRMsg.bye(routes: ["<sip:192.0.2.50;lr>"]), before: "KSR.rr.loose_route()") == "string:sip:192.0.2.50;lr")
        #expect(try evalValue("KSR.rr.loose_route_mode(1)", RRMsg.bye(routes: ["<sip:127.0.0.1;lr>", "<sip:192.0.2.60>"])) == "number:1")
        #expect(try evalValue("KSR.rr.check_route_param(\"nat\")", RRMsg.bye(routes: [])) == "number:-1")
        #expect(try evalValue("KSR.rr.next_hop_route()", RRMsg.bye(routes: [])) == "number:-1")
        #expect(try evalValue("KSR.rr.next_hop_route()", RRMsg.bye(routes: ["<sip:192.0.2.50;lr>"])) == "number:1")
    }

    @Test func isDirection() throws {
        let route = "<sip:127.0.0.1:5060;lr;ftag=1928301774>"
        let body = """
            KSR.rr.loose_route()
            KSR.pv.seti("$var(down)", KSR.rr.is_direction("downstream"))
            KSR.pv.seti("$var(up)", KSR.rr.is_direction("upstream"))
            """
        let h = try harness(body)
        try h.route(RRMsg.bye(routes: [route]))
        #expect(outVar(h, "down") == .int(1) && outVar(h, "up") == .int(-1))
        let h2 = try harness(body)
        try h2.route(RRMsg.bye(routes: [route], fromTag: "b1"))
        #expect(outVar(h2, "down") == .int(-1) && outVar(h2, "up") == .int(1))
        let h3 = try harness(body, rr: ["append_fromtag": "0"])
        try h3.route(RRMsg.bye(routes: [route]))
        #expect(outVar(h3, "down") == .int(-6))
    }

    @Test func statefulRelayWithBranchRouteParam() throws {
        let h = try harness("""
            if KSR.tm.t_check_trans() == 0 then return end
            KSR.rr.record_route()
            KSR.tm.t_on_branch("branch_route")
            KSR.tm.t_relay()
            end
            function branch_route()
              KSR.rr.add_rr_param(";nat=yes")
            """, rr: ["append_fromtag": "0"])
        try h.route(RRMsg.invite())
        let sent = try #require(h.sender.sent.first(where: { $0.message?.isRequest == true }))
        #expect(sent.text.contains("\r\nRecord-Route: <sip:127.0.0.1;lr;nat=yes>\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch="))
    }

    @Test func statefulRelayToLooseRouteDestination() throws {
        let h = try harness("""
            if KSR.rr.loose_route() > 0 then KSR.tm.t_relay() end
            """)
        try h.route(RRMsg.bye(routes: ["<sip:127.0.0.1:5060;lr>", "<sip:192.0.2.30:5070;lr>"]))
        let sent = try #require(h.sender.sent.first(where: { $0.message?.isRequest == true }))
        #expect(sent.destination == SocketAddress(ip: "192.0.2.30", port: 5070))
        #expect(sent.message.map { m in m.values(.route).map(m.string) } == ["<sip:192.0.2.30:5070;lr>"])
    }

    @Test func branchRouteParamIsPerBranch() throws {
        let h = try harness("""
            if KSR.tm.t_check_trans() == 0 then return end
            KSR.rr.record_route()
            KSR.corex.append_branch_uri("sip:carol@192.0.2.21:5060")
            KSR.tm.t_on_branch("branch_route")
            KSR.tm.t_relay()
            end
            function branch_route()
              KSR.rr.add_rr_param(";nat=yes")
            """, rr: ["append_fromtag": "0"])
        try h.route(RRMsg.invite())
        let invites = h.sender.sent.filter { $0.text.hasPrefix("INVITE") }
        #expect(invites.count == 2)
        for i in invites {
            #expect(i.text.contains("\r\nRecord-Route: <sip:127.0.0.1;lr;nat=yes>\r\nVia: "), "\(i.text)")
        }
    }

    @Test func failureRouteBranchKeepsRecordRoute() throws {
        let h = try harness("""
            if KSR.tm.t_check_trans() == 0 then return end
            if KSR.is_ACK() then return end
            KSR.pv.seti("$var(rr)", KSR.rr.record_route())
            KSR.tm.t_on_failure("failure_route")
            KSR.tm.t_relay()
            end
            function failure_route()
              KSR.pv.seti("$var(again)", KSR.rr.record_route())
              KSR.setdsturi("sip:192.0.2.21:5060")
              KSR.tm.t_relay()
            """, rr: ["append_fromtag": "0"])
        try h.route(RRMsg.invite())
        let inv = try #require(h.sender.sent.first { $0.text.hasPrefix("INVITE") })
        var busy = "SIP/2.0 486 Busy Here\r\n"
        for l in inv.text.split(separator: "\r\n") where l.hasPrefix("Via:") || l.hasPrefix("From:") || l.hasPrefix("Call-ID:") || l.hasPrefix("CSeq:") {
            busy += l + "\r\n"
        }
        busy += "To: <sip:bob@example.com>;tag=x1\r\nContent-Length: 0\r\n\r\n"
        h.sender.clear()
        try h.route(busy, from: SocketAddress(ip: "192.0.2.20", port: 5060)!)
        #expect(outVar(h, "again") == .int(-1))
        let second = try #require(h.sender.sent.first { $0.text.hasPrefix("INVITE") })
        #expect(second.destination == SocketAddress(ip: "192.0.2.21", port: 5060))
        #expect(second.text.contains("\r\nRecord-Route: <sip:127.0.0.1;lr>\r\nVia: "), "\(second.text)")
    }

    @Test func doubleRecordRouteWhenTheTransportChanges() throws {
        let body = """
            KSR.setdsturi("sip:192.0.2.50:5060;transport=tcp")
            KSR.rr.record_route()
            KSR.forward()
            """
        let h = try harness(body)
        try h.route(RRMsg.invite())
        let sent = try #require(h.sender.sent.first)
        #expect(sent.proto == .tcp)
        #expect(sent.text.contains("\r\nRecord-Route: <sip:127.0.0.1;transport=tcp;r2=on;lr;ftag=1928301774>\r\nRecord-Route: <sip:127.0.0.1;r2=on;lr;ftag=1928301774>\r\nVia: SIP/2.0/TCP "), "\(sent.text)")
        let h2 = try harness(body, rr: ["enable_double_rr": "0"])
        try h2.route(RRMsg.invite())
        let m = try #require(h2.sender.sent.first?.message)
        #expect(m.values(.recordRoute).map(m.string) == ["<sip:127.0.0.1;transport=tcp;lr;ftag=1928301774>"])
    }
}
