import Foundation
import Testing
import SIPCore
import SIPTransport
import StarlingKEMI
import StarlingTesting

@Suite struct SLTests {
    @Test func sendReply() throws {
        let (r, h) = try eval("KSR.sl.sl_send_reply(404, \"Not Here\")")
        #expect(r == "number:1")
        let sent = try #require(h.sender.sent.first)
        // rport requested: reply to the source port
        #expect(sent.destination == SocketAddress(ip: "192.0.2.10", port: 5060))
        let m = try #require(sent.message)
        #expect(m.statusCode == 404 && m.string(m.reasonRange) == "Not Here")
        #expect(m.to?.tag != nil)
        #expect(m.topVia?.rport.map(m.string) == "5060")
        #expect(m.callID.map(m.string) == "a84b4c76e66710@pc33")
    }

    @Test func noReplyToACKOrEmptyReason() throws {
        let ack = Msg.invite.replacingOccurrences(of: "INVITE sip", with: "ACK sip").replacingOccurrences(of: "314159 INVITE", with: "314159 ACK")
        #expect(try evalValue("KSR.sl.sl_send_reply(200, \"OK\")", ack) == "number:-1")
        #expect(try evalValue("KSR.sl.sl_send_reply(200, \"\")") == "number:-1")
    }

    @Test func replyToTagIsStable() throws {
        let a = try evalValue("KSR.sl.get_reply_totag()")
        let b = try evalValue("KSR.sl.get_reply_totag()")
        #expect(a == b && a.hasPrefix("string:"))
    }

    @Test func replyError() throws {
        let (r, h) = try eval("KSR.sl.sl_reply_error()", before: "KSR.forward()")
        #expect(r == "number:1")
        #expect(h.sender.sent.first?.message?.statusCode == 478)
    }

    @Test func stringCodeConverted() throws {
        let (_, h) = try eval("KSR.sl.send_reply(\"486\", \"Busy\")")
        #expect(h.sender.sent.first?.message?.statusCode == 486)
    }
}

@Suite struct MaxfwdTests {
    @Test func decrementsAndClamps() throws {
        let (r, h) = try eval("KSR.maxfwd.process_maxfwd(10)", before: "", modules: nil)
        #expect(r == "number:1")
        _ = h
        let (_, h2) = try eval("KSR.forward()", before: "KSR.maxfwd.process_maxfwd(10); KSR.setdsturi(\"sip:192.0.2.50\")")
        // 70 is above max_limit (70)? equal: decremented to 69
        #expect(h2.sender.sent.first?.message?.maxForwards == 69)
    }

    @Test func addsWhenMissing() throws {
        let (r, h) = try eval("KSR.maxfwd.process_maxfwd(10)", Msg.options("sip:b@192.0.2.50"), before: "")
        #expect(r == "number:2")
        _ = h
        let (_, h2) = try eval("KSR.forward()", Msg.options("sip:b@192.0.2.50"), before: "KSR.maxfwd.process_maxfwd(10)")
        #expect(h2.sender.sent.first?.message?.maxForwards == 10)
    }

    @Test func zeroGivesMinusOne() throws {
        let zero = Msg.options(extra: "Max-Forwards: 0\r\n")
        #expect(try evalValue("KSR.maxfwd.process_maxfwd(10)", zero) == "number:-1")
        #expect(try evalValue("KSR.maxfwd.process_maxfwd(300)") == "number:-2")
        #expect(try evalValue("KSR.maxfwd.is_maxfwd_lt(71)") == "number:1")
        #expect(try evalValue("KSR.maxfwd.is_maxfwd_lt(70)") == "number:-1")
    }

    /// Values as the core's check lets them through (1*DIGIT up to 255): leading zeros, the bounds.
    @Test(arguments: [("007", "number:1", 6), ("00", "number:-1", nil), ("1", "number:1", 0), ("69", "number:1", 68),
                      ("255", "number:1", 69)] as [(String, String, Int?)])
    func valuesAsTheCoreLetsThemThrough(_ value: String, _ code: String, _ decremented: Int?) throws {
        let m = Msg.options("sip:b@192.0.2.50", extra: "Max-Forwards: \(value)\r\n")
        #expect(try evalValue("KSR.maxfwd.process_maxfwd(10)", m) == code)
        #expect(try evalValue("KSR.maxfwd.is_maxfwd_lt(2)", m) == (Int(value)! < 2 ? "number:1" : "number:-1"))
        guard let decremented else { return }
        let (_, h) = try eval("KSR.forward()", m, before: "KSR.maxfwd.process_maxfwd(10)")
        #expect(h.sender.sent.first?.message?.maxForwards == decremented)
    }
}

@Suite struct SanityTests {
    @Test func passes() throws {
        #expect(try evalValue("KSR.sanity.sanity_check(17895, 7)") == "number:1")
        #expect(try evalValue("KSR.sanity.sanity_check_defaults()") == "number:1")
    }

    @Test func unsupportedSchemeRepliesItself() throws {
        let m = Msg.options("nobodyKnowsThisScheme:totallyopaquecontent")
        let (r, h) = try eval("KSR.sanity.sanity_check(17895, 7)", m)
        #expect(r == "number:-1")
        #expect(h.sender.sent.first?.message?.statusCode == 416)
    }

    @Test func proxyRequire() throws {
        let m = Msg.options(extra: "Proxy-Require: foo, bar\r\n")
        let (r, h) = try eval("KSR.sanity.sanity_check(512, 0)", m)
        #expect(r == "number:-1")
        let reply = try #require(h.sender.sent.first?.message)
        #expect(reply.statusCode == 420)
        #expect(reply.headerValue(.unsupported) == "foo, bar")
    }

    @Test func contentLengthMismatchAndNoReplyForACK() throws {
        let m = Msg.options(extra: "Expires: abc\r\n")
        let (r, h) = try eval("KSR.sanity.sanity_check(256, 0)", m)
        #expect(r == "number:-1")
        #expect(h.sender.sent.first?.message?.statusCode == 400)
    }
}

@Suite struct SLRedirectTests {
    @Test func redirectCarriesDestinationSet() throws {
        let (_, h) = try eval("KSR.sl.sl_send_reply(302, \"Moved\")",
                              before: "KSR.seturi(\"sip:bob@192.0.2.7\"); KSR.corex.append_branch_uri(\"sip:bob@192.0.2.8\")")
        let m = try #require(h.sender.sent.first?.message)
        #expect(m.statusCode == 302)
        #expect(m.headerValue(.contact) == "<sip:bob@192.0.2.7>, <sip:bob@192.0.2.8>")
    }
}
