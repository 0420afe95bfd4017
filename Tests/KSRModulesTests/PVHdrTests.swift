import Testing
import SIPCore
import StarlingKEMI
import StarlingTesting

@Suite struct PVTests {
    @Test("getters", arguments: [
        ("$rm", "string:INVITE"), ("$ru", "string:sip:bob@example.com"), ("$rU", "string:bob"),
        ("$rd", "string:example.com"), ("$rp", "string:5060"), ("$rz", "string:sip"),
        ("$fu", "string:sip:alice@atlanta.example.com"), ("$fU", "string:alice"), ("$fd", "string:atlanta.example.com"),
        ("$fn", "string:\"Alice\""), ("$ft", "string:1928301774"), ("$tu", "string:sip:bob@example.com"), ("$tt", "nil:nil"),
        ("$ci", "string:a84b4c76e66710@pc33"), ("$cs", "string:314159"), ("$si", "string:192.0.2.10"),
        ("$sp", "number:5060"), ("$Ri", "string:127.0.0.1"), ("$Rp", "number:5060"), ("$pr", "string:udp"),
        ("$ua", "string:TestUA/1.0"), ("$rs", "nil:nil"), ("$du", "nil:nil"), ("$hdr(X-Multi)", "string:one"),
        ("$hdrc(X-Multi)", "number:2"), ("$bs", "number:4"), ("$var(never)", "number:0"), ("$avp(none)", "nil:nil"),
    ])
    func getter(_ pv: String, _ expected: String) throws {
        #expect(try evalValue("KSR.pv.get(\"\(pv)\")") == expected)
    }

    @Test func nullModes() throws {
        #expect(try evalValue("KSR.pv.get(\"$du\")") == "nil:nil")
        #expect(try evalValue("KSR.pv.gete(\"$du\")") == "string:")
        #expect(try evalValue("KSR.pv.getw(\"$du\")") == "string:<null>")
        #expect(try evalValue("KSR.pv.getvs(\"$du\", \"dflt\")") == "string:dflt")
        #expect(try evalValue("KSR.pv.getvn(\"$du\", 7)") == "number:7")
        #expect(try evalValue("KSR.pv.is_null(\"$du\")") == "boolean:true")
        #expect(try evalValue("KSR.pv.get(\"$bogus\")") == "nil:nil")
    }

    @Test func replyGetters() throws {
        #expect(try evalValue("KSR.pv.get(\"$rs\")", Msg.ringing) == "number:180")
        #expect(try evalValue("KSR.pv.get(\"$rr\")", Msg.ringing) == "string:Ringing")
        #expect(try evalValue("KSR.pv.get(\"$rm\")", Msg.ringing) == "string:INVITE")
        #expect(try evalValue("KSR.pv.get(\"$tt\")", Msg.ringing) == "string:b1")
    }

    @Test func setters() throws {
        #expect(try evalValue("KSR.pv.get(\"$var(x)\")", before: "KSR.pv.sets(\"$var(x)\", \"abc\")") == "string:abc")
        #expect(try evalValue("KSR.pv.get(\"$var(n)\")", before: "KSR.pv.seti(\"$var(n)\", 42)") == "number:42")
        #expect(try evalValue("KSR.pv.geti(\"$var(n)\")", before: "KSR.pv.sets(\"$var(n)\", \"17\")") == "number:17")
        #expect(try evalValue("KSR.pv.get(\"$avp(a)\")", before: "KSR.pv.sets(\"$avp(a)\", \"1\"); KSR.pv.sets(\"$avp(a)\", \"2\")") == "string:2")
        #expect(try evalValue("KSR.pv.get(\"$avp(a)\")", before: "KSR.pv.sets(\"$avp(a)\", \"1\"); KSR.pv.unset(\"$avp(a)\")") == "nil:nil")
        #expect(try evalValue("KSR.pv.get(\"$var(x)\")", before: "KSR.pv.sets(\"$var(x)\", \"a\"); KSR.pv.unset(\"$var(x)\")") == "number:0")
        #expect(try evalValue("KSR.pv.get(\"$rU\")", before: "KSR.pv.sets(\"$rU\", \"carol\")") == "string:carol")
        #expect(try evalValue("KSR.pv.get(\"$ru\")", before: "KSR.pv.sets(\"$rp\", \"5080\")") == "string:sip:bob@example.com:5080")
        #expect(try evalValue("KSR.pv.get(\"$du\")", before: "KSR.pv.sets(\"$du\", \"sip:1.2.3.4\")") == "string:sip:1.2.3.4")
        #expect(try evalValue("KSR.pv.sets(\"$ci\", \"x\")") == "boolean:false")
        // Lua numbers passed as strings are formatted as Lua 5.1 would
        #expect(try evalValue("KSR.pv.get(\"$var(f)\")", before: "KSR.pv.sets(\"$var(f)\", 10/2)") == "string:5")
    }

    @Test func varPersistsBetweenMessages() throws {
        let h = try ScriptHarness(script: """
            function ksr_request_route()
              KSR.pv.seti("$var(count)", KSR.pv.get("$var(count)") + 1)
            end
            """)
        try h.route(Msg.invite)
        try h.route(Msg.invite)
        #expect(h.context.worker.vars["count"] == .int(2))
    }
}

@Suite struct HdrTests {
    @Test func appendIsDeferred() throws {
        let (r, h) = try eval("KSR.hdr.is_present(\"X-New\")",
                              before: "KSR.hdr.append(\"X-New: 1\\r\\n\"); KSR.setdsturi(\"sip:192.0.2.50\")")
        #expect(r == "number:-1")  // invisible until applied, and -1 is an integer
        _ = h
        let (_, h2) = try eval("KSR.forward()", before: "KSR.hdr.append(\"X-New: 1\\r\\n\"); KSR.setdsturi(\"sip:192.0.2.50\")")
        #expect(h2.sender.sent.first?.message?.headerValue(named: "X-New") == "1")
    }

    @Test func removeReturnsOneEvenWithoutMatch() throws {
        #expect(try evalValue("KSR.hdr.remove(\"X-Nothing\")") == "number:1")
        let (_, h) = try eval("KSR.forward()", before: "KSR.hdr.remove(\"X-Multi\"); KSR.setdsturi(\"sip:192.0.2.50\")")
        #expect(h.sender.sent.first?.message?.headers(named: "X-Multi").isEmpty == true)
    }

    @Test func insertAndPositions() throws {
        let (_, h) = try eval("KSR.forward()", before: """
            KSR.hdr.insert("X-First: 1\\r\\n")
            KSR.hdr.append_after("X-After-CSeq: 2\\r\\n", "CSeq")
            KSR.hdr.insert_before("X-Before-To: 3\\r\\n", "t")
            KSR.hdr.rmappend("User-Agent", "User-Agent: Proxy\\r\\n")
            KSR.setdsturi("sip:192.0.2.50")
            """)
        let m = try #require(h.sender.sent.first?.message)
        let names = m.headerFields.map { m.string($0.name) }
        #expect(names[1] == "X-First")  // after our Via
        let cseq = try #require(names.firstIndex(of: "CSeq"))
        #expect(names[cseq + 1] == "X-After-CSeq")
        let to = try #require(names.firstIndex(of: "To"))
        #expect(names[to - 1] == "X-Before-To")
        #expect(m.headerValue(.userAgent) == "Proxy")
    }

    @Test func getters() throws {
        #expect(try evalValue("KSR.hdr.get(\"X-Multi\")") == "string:one")
        #expect(try evalValue("KSR.hdr.get_idx(\"X-Multi\", 1)") == "string:two")
        #expect(try evalValue("KSR.hdr.get_idx(\"X-Multi\", -1)") == "string:two")
        #expect(try evalValue("KSR.hdr.get(\"X-None\")") == "nil:nil")
        #expect(try evalValue("KSR.hdr.gete(\"X-None\")") == "string:")
        #expect(try evalValue("KSR.hdr.getw(\"X-None\")") == "string:<null>")
        #expect(try evalValue("KSR.hdr.get(\"f\")") == "string:\"Alice\" <sip:alice@atlanta.example.com>;tag=1928301774")
        #expect(try evalValue("KSR.hdr.is_present(\"From\")") == "number:1")
        #expect(try evalValue("KSR.hdr.match_content(\"X-Multi\", \"eq\", \"TWO\", \"l\")") == "boolean:true")
        #expect(try evalValue("KSR.hdr.match_content(\"X-Multi\", \"sw\", \"on\", \"a\")") == "boolean:false")
    }

    @Test func appendToReply() throws {
        let (_, h) = try eval("KSR.sl.sl_send_reply(200, \"OK\")", Msg.options(), before: "KSR.hdr.append_to_reply(\"X-Reply: yes\\r\\n\")")
        #expect(h.sender.sent.first?.message?.headerValue(named: "X-Reply") == "yes")
    }
}
