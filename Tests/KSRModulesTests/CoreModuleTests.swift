import Foundation
import Testing
import SIPCore
import SIPTransport
import StarlingKEMI
import StarlingTesting

@Suite struct CoreModuleTests {
    @Test("method tests", arguments: [
        ("KSR.is_method(\"INVITE\")", "boolean:true"),
        ("KSR.is_method(\"invite\")", "boolean:true"),
        ("KSR.is_method(\"BYE|INVITE\")", "boolean:true"),
        ("KSR.is_method(\"BYE|ACK\")", "boolean:false"),
        ("KSR.is_INVITE()", "boolean:true"),
        ("KSR.is_BYE()", "boolean:false"),
        ("KSR.is_method_in(\"IBS\")", "boolean:true"),
        ("KSR.is_method_in(\"BS\")", "boolean:false"),
        ("KSR.is_method()", "boolean:false"),  // too few arguments: false, no error
    ])
    func methods(_ expr: String, _ expected: String) throws {
        #expect(try evalValue(expr) == expected)
    }

    @Test func replyMethodsUseCSeq() throws {
        #expect(try evalValue("KSR.is_INVITE()", Msg.ringing) == "boolean:true")
    }

    @Test func flags() throws {
        #expect(try evalValue("KSR.isflagset(3)", before: "KSR.setflag(3)") == "boolean:true")
        #expect(try evalValue("KSR.isflagset(3)", before: "KSR.setflag(3); KSR.resetflag(3)") == "boolean:false")
        #expect(try evalValue("KSR.setflag(40)") == "boolean:false")
        #expect(try evalValue("KSR.isbflagset(6)", before: "KSR.setbflag(6)") == "boolean:true")
        #expect(try evalValue("KSR.issflagset(1)", before: "KSR.setsflag(1)") == "boolean:true")
    }

    @Test func requestURIAndDestination() throws {
        #expect(try evalValue("KSR.pv.get(\"$ru\")", before: "KSR.seturi(\"sip:carol@chicago.example.com\")") == "string:sip:carol@chicago.example.com")
        #expect(try evalValue("KSR.pv.get(\"$ru\")", before: "KSR.setuser(\"dave\")") == "string:sip:dave@example.com")
        #expect(try evalValue("KSR.pv.get(\"$ru\")", before: "KSR.sethost(\"10.0.0.1\")") == "string:sip:bob@10.0.0.1")
        #expect(try evalValue("KSR.isdsturiset()") == "boolean:false")
        #expect(try evalValue("KSR.pv.get(\"$du\")", before: "KSR.setdsturi(\"sip:192.0.2.50:5080\")") == "string:sip:192.0.2.50:5080")
        #expect(try evalValue("KSR.isdsturiset()", before: "KSR.setdsturi(\"sip:192.0.2.50:5080\"); KSR.resetdsturi()") == "boolean:false")
        // setdsturi returns true even for an invalid URI (REFERENCE §2.1)
        #expect(try evalValue("KSR.setdsturi(\"not a uri\")") == "boolean:true")
    }

    @Test func myself() throws {
        #expect(try evalValue("KSR.is_myself(\"sip:127.0.0.1:5060\")") == "boolean:true")
        #expect(try evalValue("KSR.is_myself(\"sip:127.0.0.1:5070\")") == "boolean:false")
        #expect(try evalValue("KSR.is_myself(\"127.0.0.1\")") == "boolean:true")
        #expect(try evalValue("KSR.is_myself_ruri()") == "boolean:false")
        #expect(try evalValue("KSR.is_myself_ruri()", Msg.options()) == "boolean:true")
        #expect(try evalValue("KSR.is_myself_srcip()") == "boolean:false")
        #expect(try evalValue("KSR.is_myself_furi()") == "boolean:false")
    }

    /// A URI without a port is ours on any local port (Kamailio 5.6.3 with listen=udp:127.0.0.1:45090:
    /// From/R-URI `sip:x@127.0.0.1` → is_myself_furi/ruri true, `sip:x@127.0.0.1:5060` → false).
    @Test func myselfWithoutPortMatchesAnyLocalPort() throws {
        let services = TestServices(local: SocketAddress(ip: "127.0.0.1", port: 5080)!)
        func value(_ expr: String, _ message: String = Msg.invite) throws -> String {
            try eval(expr, message, services: services).0
        }
        #expect(try value("KSR.is_myself(\"sip:alice@127.0.0.1\")") == "boolean:true")
        #expect(try value("KSR.is_myself(\"sip:alice@127.0.0.1:5080\")") == "boolean:true")
        #expect(try value("KSR.is_myself(\"sip:alice@127.0.0.1:5060\")") == "boolean:false")
        #expect(try value("KSR.is_myself_ruri()", Msg.options("sip:bob@127.0.0.1")) == "boolean:true")
        #expect(try value("KSR.is_myself_ruri()", Msg.options("sip:bob@127.0.0.1:5060")) == "boolean:false")
    }

    @Test func transportTests() throws {
        #expect(try evalValue("KSR.is_UDP()") == "boolean:true")
        #expect(try evalValue("KSR.is_TCP()") == "boolean:false")
        #expect(try evalValue("KSR.is_proto(\"tu\")") == "boolean:true")
        #expect(try evalValue("KSR.is_IPv4()") == "boolean:true")
        #expect(try evalValue("KSR.is_src_port(5060)") == "boolean:true")
    }

    @Test func logFunctionsReturnFalse() throws {
        // NONE functions: false in Kamailio 5.6
        #expect(try evalValue("KSR.info(\"hello\\n\")") == "boolean:false")
        #expect(try evalValue("KSR.log(\"err\", \"x\")") == "boolean:false")
    }

    @Test func forwardToDestination() throws {
        let (r, h) = try eval("KSR.forward()", before: "KSR.setdsturi(\"sip:192.0.2.50:5080\")")
        #expect(r == "number:1")
        let sent = try #require(h.sender.sent.first)
        #expect(sent.destination == SocketAddress(ip: "192.0.2.50", port: 5080))
        let m = try #require(sent.message)
        let vias = m.values(.via).compactMap { m.parseVia($0) }
        #expect(vias.count == 2)
        #expect(m.string(vias[0].host) == "127.0.0.1" && vias[0].port == 5060)
        #expect(vias[0].branch.map(m.string)?.hasPrefix("z9hG4bK") == true)
        // rport filled and received added on the client's Via
        #expect(vias[1].rport.map(m.string) == "5060")
        #expect(m.string(m.requestURIRange) == "sip:bob@example.com")
    }

    @Test func forwardBranchStableForRetransmissions() throws {
        let (_, h1) = try eval("KSR.forward()", before: "KSR.setdsturi(\"sip:192.0.2.50:5080\")")
        let (_, h2) = try eval("KSR.forward()", before: "KSR.setdsturi(\"sip:192.0.2.50:5080\")")
        let b1 = h1.sender.sent[0].message!.topVia!.branch.map(h1.sender.sent[0].message!.string)
        let b2 = h2.sender.sent[0].message!.topVia!.branch.map(h2.sender.sent[0].message!.string)
        #expect(b1 == b2)
    }

    @Test func forwardURIAndUnresolvable() throws {
        let (r, h) = try eval("KSR.forward_uri(\"sip:192.0.2.60;transport=udp\")")
        #expect(r == "number:1")
        #expect(h.sender.sent.first?.destination == SocketAddress(ip: "192.0.2.60", port: 5060))
        // example.com does not resolve in the test services
        #expect(try evalValue("KSR.forward()") == "number:-1")
    }

    @Test func forwardRefusesLoopToItself() throws {
        let (r, h) = try eval("KSR.forward()", Msg.options())
        #expect(r == "number:-1")
        #expect(h.sender.sent.isEmpty)
    }

    @Test func replyRelayedByVia() throws {
        let h = try ScriptHarness(script: "function ksr_request_route() end\nfunction ksr_reply_route() end")
        try h.route(Msg.ringing)
        let sent = try #require(h.sender.sent.first)
        #expect(sent.destination == SocketAddress(ip: "192.0.2.99", port: 5062))
        #expect(sent.message?.values(.via).count == 1)
    }

    @Test func replyDroppedByScript() throws {
        let h = try ScriptHarness(script: "function ksr_request_route() end\nfunction ksr_reply_route() KSR.x.drop() end")
        try h.route(Msg.ringing)
        #expect(h.sender.sent.isEmpty)
    }

    @Test func replyNotForUsDropped() throws {
        let h = try ScriptHarness(script: "function ksr_request_route() end")
        try h.route(Msg.ringing.replacingOccurrences(of: "127.0.0.1:5060;branch=z9hG4bKsl1", with: "198.51.100.1;branch=z9hG4bKx"))
        #expect(h.sender.sent.isEmpty)
    }
}


@Suite struct AdvertisedAddressTests {
    @Test func viaShowsAdvertisedAddressAndLocalRport() throws {
        let (r, h) = try eval("KSR.forward()", before: """
            KSR.set_advertised_address("proxy.example.net")
            KSR.set_advertised_port("5080")
            KSR.add_local_rport()
            KSR.setdsturi("sip:192.0.2.50:5080")
            """)
        #expect(r == "number:1")
        let m = try #require(h.sender.sent.first?.message)
        let via = try #require(m.topVia)
        #expect(m.string(via.host) == "proxy.example.net" && via.port == 5080)
        #expect(via.rport != nil)
        #expect(try evalValue("KSR.set_advertised_port(\"x\")") == "number:-1")
    }
}
