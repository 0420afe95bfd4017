import Testing
@testable import SIPCore

@Suite struct EditTests {
    func text(_ b: [UInt8]) -> String { String(decoding: b, as: UTF8.self) }

    @Test func appendedHeaderInvisibleUntilApplied() throws {
        let m = try SIPMessage.parse(Samples.invite)
        m.addHeaderLine(Array("X-New: 1\r\n".utf8), at: .last)
        #expect(m.headers(named: "X-New").isEmpty)
        let applied = try m.applyingEdits()
        #expect(applied.headerValue(named: "X-New") == "1")
        try applied.validate()
        #expect(applied.bodyRange.count == 10)
    }

    @Test func removeAndInsert() throws {
        let m = try SIPMessage.parse(Samples.invite)
        let route = try #require(m.firstHeader(.route))
        m.removeHeader(route)
        m.addHeaderLine(Array("X-First: a\r\n".utf8), at: .first)
        m.addHeaderLine(Array("X-Before-CSeq: b\r\n".utf8), at: .before(try #require(m.firstHeader(.cseq))))
        m.addHeaderLine(Array("X-After-CSeq: c\r\n".utf8), at: .after(try #require(m.firstHeader(.cseq))))
        let out = try m.applyingEdits()
        #expect(out.firstHeader(.route) == nil)
        let names = out.headerFields.map { out.string($0.name) }
        #expect(names.first == "X-First")
        let cseqIndex = try #require(names.firstIndex(of: "CSeq"))
        #expect(names[cseqIndex - 1] == "X-Before-CSeq" && names[cseqIndex + 1] == "X-After-CSeq")
    }

    @Test func removeOneValue() throws {
        let m = try SIPMessage.parse(Samples.invite)
        let vias = m.headerFields.filter { $0.kind == .via }
        var values: [ByteRange] = []
        m.forEachValue(of: vias[1]) { values.append($0) }
        m.removeHeaderValue(vias[1], values[0])
        let out = try m.applyingEdits()
        let left = out.values(.via).compactMap { out.parseVia($0) }
        #expect(left.count == 2)
        #expect(out.string(left[1].host) == "[2001:db8::9]")
    }

    @Test func requestURIAndBody() throws {
        let m = try SIPMessage.parse(Samples.invite)
        m.setRequestURI(Array("sip:carol@chicago.example.com".utf8))
        m.setBody(Array("hello".utf8), contentType: "text/plain")
        let out = try m.applyingEdits()
        try out.validate()
        #expect(out.string(out.requestURIRange) == "sip:carol@chicago.example.com")
        #expect(out.headerValue(.contentLength) == "5")
        #expect(out.headerValue(.contentType) == "text/plain")
        #expect(out.string(out.bodyRange) == "hello")
        #expect(out.headerCount(.contentLength) == 1)
    }

    @Test func proxyViaAndReplyViaRemoval() throws {
        let m = try SIPMessage.parse(Samples.invite)
        let line = Array("Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKproxy\r\n".utf8)
        let fwd = try SIPMessage.parse(m.serialized(options: SIPSerializeOptions(prependLine: line)))
        #expect(fwd.values(.via).count == 4)
        #expect(fwd.topVia.flatMap { $0.branch.map(fwd.string) } == "z9hG4bKproxy")
        let back = try SIPMessage.parse(fwd.serialized(options: SIPSerializeOptions(removeTopVia: true)))
        #expect(back.values(.via).count == 3)
        // a Via line with two values: only the first goes
        let two = try SIPMessage.parse(back.serialized(options: SIPSerializeOptions(removeTopVia: true)))
        let twoBack = try SIPMessage.parse(two.serialized(options: SIPSerializeOptions(removeTopVia: true)))
        #expect(twoBack.values(.via).count == 1)
        #expect(twoBack.topVia.flatMap { $0.branch.map(twoBack.string) } == "z9hG4bKsecond")
    }

    @Test("edits of the start line, headers and body made out of order, with and without the top Via")
    func editsInEveryRegionOutOfOrder() throws {
        let m = try SIPMessage.parse(Array(("MESSAGE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n"
            + "Max-Forwards: 70\r\nCall-ID: c\r\nCSeq: 1 MESSAGE\r\nContent-Length: 5\r\n\r\nhello").utf8))
        let body = m.bodyRange
        m.replaceBytes(ByteRange(body.lower, body.lower + 1), with: Array("J".utf8))
        m.replaceBytes(try #require(m.firstHeader(.maxForwards)).value, with: Array("69".utf8))
        m.addHeaderLine(Array("X-A: 1\r\n".utf8), at: .first)
        let uri = m.requestURIRange
        m.replaceBytes(ByteRange(uri.lower + 4, uri.lower + 5), with: Array("x".utf8))
        let rest = "Max-Forwards: 69\r\nCall-ID: c\r\nCSeq: 1 MESSAGE\r\nContent-Length: 5\r\n\r\nJello"
        #expect(text(m.serialized()) == "MESSAGE sip:x@b SIP/2.0\r\nX-A: 1\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n" + rest)
        #expect(text(m.serialized(options: SIPSerializeOptions(removeTopVia: true))) == "MESSAGE sip:x@b SIP/2.0\r\nX-A: 1\r\n" + rest)
    }

    @Test func missingContentLengthAdded() throws {
        let m = try SIPMessage.parse("MESSAGE sip:b@h SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@h>;tag=1\r\nTo: <sip:b@h>\r\nCall-ID: c\r\nCSeq: 1 MESSAGE\r\n\r\nhi there")
        let out = try SIPMessage.parse(m.serialized(), datagram: false)
        #expect(out.headerValue(.contentLength) == "8")
        #expect(out.string(out.bodyRange) == "hi there")
    }

    @Test func parkedMessageComesBackWithItsEdits() throws {
        let m = try SIPMessage.parse(Samples.invite)
        m.removeHeader(try #require(m.firstHeader(.route)))
        m.addHeaderLine(Array("X-Added: 1\r\n".utf8), at: .last)
        m.setRequestURI(Array("sip:carol@chicago.example.com".utf8))
        _ = (m.topVia, m.from, m.to, m.cseq, m.requestURI)
        let parked = m.parked()
        #expect(parked.count == m.count)
        let back = parked.message()
        #expect(back !== m)
        #expect(back.serialized() == m.serialized())
        #expect(back.allBytes == m.allBytes)
        #expect(back.edits.count == m.edits.count)
        // Parsed again, lazily: the same values as the original.
        #expect(back.string(try #require(back.from?.tag)) == m.string(try #require(m.from?.tag)))
        #expect(back.topVia?.branch == m.topVia?.branch)
        #expect(back.cseq?.number == m.cseq?.number)
        #expect(back.bodyRange == m.bodyRange)
        // Each call is a new message; edits made on one do not reach the parked form.
        back.addHeaderLine(Array("X-Later: 2\r\n".utf8), at: .last)
        #expect(parked.message().serialized() == m.serialized())
    }

    @Test func unchangedMessageRoundTrips() throws {
        let bytes = Array(Samples.invite.utf8)
        let m = try SIPMessage.parse(bytes)
        #expect(m.serialized() == bytes)
    }
}

@Suite struct BuilderTests {
    @Test func replyCopiesHeaders() throws {
        let req = try SIPMessage.parse(Samples.invite)
        let bytes = SIPBuilder.reply(to: req, .init(status: 486, reason: "Busy Here", toTag: "xyz",
                                                    topViaParams: ";received=192.0.2.9", extraHeaders: Array("Retry-After: 5\r\n".utf8)))
        let r = try SIPMessage.parse(bytes)
        try r.validate()
        #expect(r.statusCode == 486)
        #expect(r.string(r.reasonRange) == "Busy Here")
        #expect(r.values(.via).count == 3)
        #expect(r.topVia.flatMap { $0.received.map(r.string) } == "192.0.2.9")
        #expect(r.to?.tag.map(r.string) == "xyz")
        #expect(r.from?.tag.map(r.string) == "1928301774")
        #expect(r.callID.map(r.string) == req.callID.map(req.string))
        #expect(r.cseq?.number == 314159)
        #expect(r.headerValue(.retryAfter) == "5")
        #expect(r.firstHeader(.recordRoute) == nil)
    }

    @Test func hundredTryingHasNoTag() throws {
        let req = try SIPMessage.parse(Samples.invite)
        let r = try SIPMessage.parse(SIPBuilder.reply(to: req, .init(status: 100, reason: "Trying", toTag: "xyz")))
        #expect(r.to?.tag == nil)
    }

    @Test func cancelAndAck() throws {
        let inv = try SIPMessage.parse(Samples.invite)
        let cancel = try SIPMessage.parse(try #require(SIPBuilder.cancel(for: inv)))
        try cancel.validate()
        #expect(cancel.method == .cancel)
        #expect(cancel.values(.via).count == 1)
        #expect(cancel.topVia.flatMap { $0.branch.map(cancel.string) } == "z9hG4bK776asdhds")
        #expect(cancel.cseq?.number == 314159 && cancel.cseq?.method == .cancel)
        #expect(cancel.values(.route).count == 2)
        #expect(cancel.string(cancel.requestURIRange) == inv.string(inv.requestURIRange))
        let resp = try SIPMessage.parse(SIPBuilder.reply(to: inv, .init(status: 486, reason: "Busy", toTag: "t1")))
        let ack = try SIPMessage.parse(try #require(SIPBuilder.ackForNon2xx(invite: inv, response: resp)))
        try ack.validate()
        #expect(ack.method == .ack && ack.cseq?.method == .ack)
        #expect(ack.to?.tag.map(ack.string) == "t1")
    }
}

@Suite struct URICompareTests {
    @Test("RFC 3261 §19.1.4 equivalent", arguments: [
        ("sip:%61lice@atlanta.com;transport=TCP", "sip:alice@AtLanTa.CoM;Transport=tcp"),
        ("sip:carol@chicago.com", "sip:carol@chicago.com;newparam=5"),
        ("sip:carol@chicago.com", "sip:carol@chicago.com;security=on"),
        ("sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com", "sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com"),
        ("sip:alice@atlanta.com?subject=project%20x&priority=urgent", "sip:alice@atlanta.com?priority=urgent&subject=project%20x"),
    ])
    func equivalent(_ a: String, _ b: String) {
        #expect(SIPURI.equivalent(a, b))
        #expect(SIPURI.equivalent(b, a))
    }

    @Test("RFC 3261 §19.1.4 not equivalent", arguments: [
        ("SIP:ALICE@AtLanTa.CoM;Transport=udp", "sip:alice@AtLanTa.CoM;Transport=UDP"),
        ("sip:bob@biloxi.com", "sip:bob@biloxi.com:5060"),
        ("sip:bob@biloxi.com", "sip:bob@biloxi.com;transport=udp"),
        ("sip:bob@biloxi.com", "sip:bob@biloxi.com:6000;transport=tcp"),
        ("sip:carol@chicago.com", "sip:carol@chicago.com?Subject=next%20meeting"),
        ("sip:bob@phone21.boxesbybob.com", "sip:bob@192.0.2.4"),
        ("sip:carol@chicago.com;security=on", "sip:carol@chicago.com;security=off"),
    ])
    func notEquivalent(_ a: String, _ b: String) {
        #expect(!SIPURI.equivalent(a, b))
    }
}
