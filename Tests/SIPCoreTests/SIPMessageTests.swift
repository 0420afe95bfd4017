import Testing
@testable import SIPCore

@Suite struct SIPMessageTests {
    @Test func lazyLookupStopsEarly() throws {
        let m = try SIPMessage.parse(Samples.invite)
        _ = m.topVia
        // Only the Via line was needed.
        #expect(m.state.pointee.fieldCount == 1)
        _ = m.callID
        #expect(m.state.pointee.fieldCount == 6)
        #expect(!m.state.pointee.headersComplete)
        _ = m.bodyRange
        #expect(m.state.pointee.headersComplete)
    }

    /// `ValueList.secondStart` (relaying a response removes its top Via value up to there) agrees with
    /// the elements `ValueList.forEach` gives, fast path (plain first element) or not.
    @Test func secondListElementStart() {
        let values = ["a", "a,b", "a, b", "a ,  b, c", "a,,b", "a, ,b", "a,", "a, ", ",a", ",,a,b", " , ",
                      "\"x,y\" <sip:a>, b", "<sip:a,b>, c", "<sip:a>", "SIP/2.0/UDP h;branch=z9hG4bK1,SIP/2.0/UDP g;branch=z9hG4bK2",
                      "SIP/2.0/UDP h;branch=z9hG4bK1\r\n ,SIP/2.0/UDP g", ""]
        for text in values {
            let bytes = Array(text.utf8)
            bytes.withUnsafeBytes { raw in
                let v = ByteView(raw)
                let r = ByteRange(0, bytes.count)
                var elements: [ByteRange] = []
                ValueList.forEach(v, r, limit: 100) { elements.append($0) }
                #expect(ValueList.secondStart(v, r) == (elements.count > 1 ? elements[1].lower : nil), "\(text)")
                #expect(ValueList.first(v, r) == elements.first, "\(text)")
            }
        }
    }

    /// Lookups after indexing answer from the set of kinds seen (one bit per kind): absent kinds,
    /// present ones, repeated ones, in order, and lookups that still have to scan.
    @Test func kindsSeenMatchTheIndex() throws {
        #expect(SIPHeaderKind.allCases.count <= 64)
        let text = "INVITE sip:b@h SIP/2.0\r\nVia: SIP/2.0/UDP p;branch=z9hG4bK2\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n"
            + "Route: <sip:r1>\r\nFrom: <sip:a@h>;tag=1\r\nTo: <sip:b@h>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n"
            + "X-Custom: 1\r\nRoute: <sip:r2>\r\nContent-Length: 0\r\n\r\n"
        let lazy = try SIPMessage.parse(text)
        // Before everything is indexed, a lookup scans as far as it needs.
        #expect(lazy.firstHeader(.route).map { lazy.string($0.value) } == "<sip:r1>")
        #expect(!lazy.state.pointee.headersComplete)
        #expect(lazy.firstHeader(.recordRoute) == nil)
        #expect(lazy.state.pointee.headersComplete)
        #expect(lazy.firstHeader(.contentLength).map { lazy.string($0.value) } == "0")
        let m = try SIPMessage.parse(text)
        try m.check()
        for kind in SIPHeaderKind.allCases {
            let expected = m.headerFields.filter { $0.kind == kind }
            #expect(m.firstHeader(kind) == expected.first, "\(kind)")
            #expect(m.headerCount(kind) == expected.count, "\(kind)")
            var seen: [SIPHeaderField] = []
            m.forEachHeader(kind) { seen.append($0) }
            #expect(seen == expected, "\(kind)")
        }
        #expect(m.headerCount(.via) == 2 && m.headerCount(.route) == 2 && m.headerCount(.other) == 1)
        #expect(m.headerCount(.recordRoute) == 0 && m.firstHeader(.contact) == nil)
        // A message without Content-Length is still framed (and serialized with one).
        let noCL = try SIPMessage.parse("OPTIONS sip:h SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@h>;tag=1\r\nTo: <sip:b@h>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\n\r\n")
        try noCL.check()
        #expect(String(decoding: noCL.serialized(), as: UTF8.self).hasSuffix("Content-Length: 0\r\n\r\n"))
    }

    /// The first 24 header fields are kept in the message's own allocation, later ones in an array:
    /// lookups, iteration, edits and the serialized bytes are the same on both sides of that boundary.
    @Test func headerIndexPastTheInlineFields() throws {
        let inline = SIPMessage.inlineFieldCapacity - 7  // 7 fixed lines below
        for extra in [0, inline - 1, inline, inline + 1, 17, 18, 19, 40, 200] {
            var text = "INVITE sip:b@h SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n"
            for k in 0..<extra { text += (k % 7 == 3 ? "Route: <sip:r\(k)>\r\n" : "X-H\(k): v\(k)\r\n") }
            text += "From: <sip:a@h>;tag=1\r\nTo: <sip:b@h>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\nRoute: <sip:last>\r\nContent-Length: 0\r\n\r\n"
            let m = try SIPMessage.parse(text)
            try m.check()
            let fields = m.headerFields
            #expect(fields.count == extra + 7)
            #expect(fields.map { m.string($0.name) }.last == "Content-Length")
            #expect(m.string(try #require(m.to).uri) == "sip:b@h")
            #expect(m.headerCount(.route) == 1 + (0..<extra).filter { $0 % 7 == 3 }.count)
            // The last extension header, past the inline fields when there are enough.
            if let k = (0..<extra).last(where: { $0 % 7 != 3 }) {
                #expect(m.headers(named: "x-h\(k)").map { m.string($0.value) } == ["v\(k)"])
            }
            var routes: [String] = []
            m.forEachHeader(.route) { routes.append(m.string($0.value)) }
            #expect(routes.last == "<sip:last>")
            m.removeHeaders(.route)
            let out = try SIPMessage.parse(m.serialized())
            try out.check()
            #expect(out.headerCount(.route) == 0 && out.headerFields.count == fields.count - routes.count)
            #expect(out.headerFields.map { out.string($0.line) } == fields.filter { $0.kind != .route }.map { m.string($0.line) })
        }
    }

    @Test func wellKnownHeaders() throws {
        let m = try SIPMessage.parse(Samples.invite)
        try m.validate()
        #expect(m.isRequest && m.method == .invite)
        let uri = try #require(m.requestURI)
        #expect(uri.scheme == .sip)
        #expect(m.string(try #require(uri.user)) == "bob")
        #expect(m.string(uri.host) == "biloxi.example.com")
        #expect(uri.port == 5070)
        #expect(m.param("transport", in: uri.params).map(m.string) == "udp")
        let via = try #require(m.topVia)
        #expect(m.string(via.host) == "pc33.atlanta.example.com" && via.port == 5060)
        #expect(via.branch.map(m.string) == "z9hG4bK776asdhds")
        #expect(via.rport?.isEmpty == true)
        let vias = m.values(.via).compactMap { m.parseVia($0) }
        #expect(vias.count == 3)
        #expect(m.string(vias[2].host) == "[2001:db8::9]" && vias[2].port == 5080)
        #expect(vias[2].received.map(m.string) == "192.0.2.4")
        #expect(m.string(vias[2].transport) == "TCP")
        #expect(m.from?.displayName.map(m.string) == "\"Alice Liddell\"")
        #expect(m.from?.tag.map(m.string) == "1928301774")
        #expect(m.to?.tag == nil)
        #expect(m.callID.map(m.string) == "a84b4c76e66710@pc33.atlanta.example.com")
        #expect(m.cseq?.number == 314159 && m.cseq?.method == .invite)
        #expect(m.maxForwards == 70)
        let contacts = m.values(.contact).compactMap { m.parseNameAddr($0) }
        #expect(contacts.count == 2)
        #expect(contacts[1].uriParts.port == 5062)
        #expect(m.param("q", in: contacts[1].params).map(m.string) == "0.5")
        #expect(m.param("expires", in: contacts[1].params).map(m.string) == "60")
        #expect(m.values(.route).count == 2)
        #expect(m.values(.supported).map(m.string) == ["replaces", "timer"])
        #expect(m.headers(named: "X-CUSTOM").count == 2)
        #expect(m.headerValue(named: "x-custom") == "one")
        #expect(m.bodyRange.count == 10)
        let auth = try #require(m.firstHeader(.proxyAuthorization).flatMap(m.authValue))
        #expect(m.string(auth.scheme) == "Digest")
        #expect(m.authParam(auth, "nonce") == "abc,def")
        #expect(m.authParam(auth, "algorithm") == "MD5")
        #expect(m.authParam(auth, "USERNAME") == "alice")
    }

    @Test func compactForms() throws {
        let text = "BYE sip:b@h SIP/2.0\r\nv: SIP/2.0/UDP h;branch=z9hG4bK1\r\nf: <sip:a@h>;tag=1\r\nt: <sip:b@h>;tag=2\r\ni: c1\r\nCSeq: 2 BYE\r\nm: <sip:a@1.2.3.4>\r\nl: 0\r\nk: path\r\n\r\n"
        let m = try SIPMessage.parse(text)
        try m.validate()
        #expect(m.from?.tag.map(m.string) == "1")
        #expect(m.to?.tag.map(m.string) == "2")
        #expect(m.callID.map(m.string) == "c1")
        #expect(m.firstHeader(.contact) != nil)
        #expect(m.firstHeader(.supported) != nil)
        #expect(m.headers(named: "Content-Length").count == 1)
        #expect(SIPHeaderKind.classify(name: "f") == .from)
        #expect(SIPHeaderKind.classify(name: "FROM") == .from)
    }

    /// The common names compare by setting bit 5 (token names only): every case mix matches, and no
    /// other token character stands in for a letter or '-'.
    @Test func headerNamesClassifyInAnyCase() {
        let kinds: [(String, SIPHeaderKind)] = [("to", .to), ("via", .via), ("from", .from), ("cseq", .cseq),
            ("route", .route), ("call-id", .callID), ("contact", .contact), ("max-forwards", .maxForwards),
            ("record-route", .recordRoute), ("content-type", .contentType), ("content-length", .contentLength)]
        for (name, kind) in kinds {
            #expect(SIPHeaderKind.classify(name: name) == kind)
            #expect(SIPHeaderKind.classify(name: name.uppercased()) == kind)
            #expect(SIPHeaderKind.classify(name: String(name.enumerated().map { $0.offset % 2 == 0 ? Character($0.element.uppercased()) : $0.element })) == kind)
        }
        for other in ["call_id", "call\rid", "call.id", "max-forwardz", "Content-Lengt", "vi@", "t0", "CSe1", "route "] {
            #expect(SIPHeaderKind.classify(name: other) == .other, "\(other)")
        }
        // A header line parses the same way.
        let m = try? SIPMessage.parse("OPTIONS sip:h SIP/2.0\r\nVIA: SIP/2.0/UDP h;branch=z9hG4bK1\r\ncALL-id: c\r\nMax_Forwards: 3\r\n\r\n")
        #expect(m?.callID.map { m!.string($0) } == "c")
        #expect(m?.firstHeader(.via) != nil && m?.firstHeader(.maxForwards) == nil)
    }

    @Test func addrSpecParamsBelongToHeader() throws {
        let text = "REGISTER sip:h SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: sip:a@h;tag=1\r\nTo: sip:a@h\r\nCall-ID: c\r\nCSeq: 1 REGISTER\r\nContact: sip:a@1.2.3.4;expires=30\r\nContent-Length: 0\r\n\r\n"
        let m = try SIPMessage.parse(text)
        try m.validate()
        #expect(m.from?.tag.map(m.string) == "1")
        #expect(m.from?.uriParts.params.isEmpty == true)
        let c = try #require(m.firstValue(.contact).flatMap(m.parseNameAddr))
        #expect(m.param("expires", in: c.params).map(m.string) == "30")
        #expect(c.uriParts.params.isEmpty)
    }

    @Test func contactStar() throws {
        let text = "REGISTER sip:h SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@h>;tag=1\r\nTo: <sip:a@h>\r\nCall-ID: c\r\nCSeq: 1 REGISTER\r\nContact: *\r\nExpires: 0\r\nContent-Length: 0\r\n\r\n"
        let m = try SIPMessage.parse(text)
        try m.validate()
        #expect(m.firstValue(.contact).flatMap(m.parseNameAddr)?.isStar == true)
    }

    @Test func ipv6URIs() throws {
        let u = try #require(SIPURI("sips:alice@[2001:db8::10]:5061;transport=tls?subject=x"))
        #expect(u.scheme == .sips)
        #expect(u.host == "[2001:db8::10]")
        #expect(u.port == 5061)
        #expect(u.transport == "tls")
        #expect(u.headersString == "subject=x")
        #expect(SIPURI("sip:[2001:db8::10") == nil)
        let tel = try #require(SIPURI("tel:+1-201-555-0123;phone-context=example.com"))
        #expect(tel.scheme == .tel && tel.user == "+1-201-555-0123")
        #expect(tel.param("phone-context") == "example.com")
    }

    @Test func response() throws {
        let text = "SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@h>;tag=1\r\nTo: <sip:b@h>;tag=2\r\nCall-ID: c\r\nCSeq: 7 INVITE\r\nContent-Length: 0\r\n\r\n"
        let m = try SIPMessage.parse(text)
        try m.check()
        #expect(!m.isRequest)
        #expect(m.statusCode == 180)
        #expect(m.string(m.reasonRange) == "Ringing")
        #expect(m.method == .invite)
    }

    /// As Kamailio: the From of a reply is parsed only when used (a reply with a bad From is relayed),
    /// its To always (a bad To drops the reply); a request with a bad From or To gets 400. The URI
    /// inside is only delimited.
    @Test func replyFromIsLazyToIsChecked() throws {
        func reply(from: String, to: String) -> String {
            "SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: \(from)\r\nTo: \(to)\r\nCall-ID: c\r\nCSeq: 7 INVITE\r\nContent-Length: 0\r\n\r\n"
        }
        let badFrom = try SIPMessage.parse(reply(from: "bad<<>>", to: "<sip:b@h>;tag=2"))
        try badFrom.check()
        #expect(badFrom.from == nil)
        #expect(badFrom.to.flatMap { $0.tag.map(badFrom.string) } == "2")
        let badTo = try SIPMessage.parse(reply(from: "<sip:a@h>;tag=1", to: "bad<<>>"))
        do { try badTo.check(); Issue.record("accepted") } catch { #expect(error.status == nil && error.code == "bad-name-addr") }
        let request = "INVITE sip:b@h SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: bad<<>>\r\nTo: <sip:b@h>\r\nCall-ID: c\r\nCSeq: 7 INVITE\r\nContent-Length: 0\r\n\r\n"
        let badRequest = try SIPMessage.parse(request)
        do { try badRequest.check(); Issue.record("accepted") } catch { #expect(error.status == 400 && error.reason == "Bad From Header") }
        // The URI inside is only delimited, as Kamailio's parse_to does: `from`/`to` parse it when used.
        let badURI = try SIPMessage.parse("INVITE sip:b@h SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: \"A\" <nonsense>;tag=1\r\nTo: <sip:b@>\r\nCall-ID: c\r\nCSeq: 7 INVITE\r\nContent-Length: 0\r\n\r\n")
        try badURI.check()
        #expect(badURI.from == nil && badURI.to == nil)
        // The tags are still read, as parse_to reads them (has_totag, a local reply's To tag...).
        #expect(badURI.fromTag.map(badURI.string) == "1" && badURI.toTag == nil)
        let badToURI = try SIPMessage.parse(reply(from: "<sip:a@h>;tag=1", to: "<sip:@@>;tag=2"))
        try badToURI.check()
        #expect(badToURI.to == nil && badToURI.from != nil)
        #expect(badToURI.toTag.map(badToURI.string) == "2" && badToURI.fromTag.map(badToURI.string) == "1")
    }

    @Test func leadingCRLFIgnored() throws {
        let m = try SIPMessage.parse("\r\n\r\nOPTIONS sip:h SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@h>;tag=1\r\nTo: <sip:b@h>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\n\r\n")
        try m.check()
        #expect(m.method == .options)
        #expect(m.serialized().starts(with: Array("OPTIONS".utf8)))
    }

    @Test func bareLFAccepted() throws {
        let m = try SIPMessage.parse("OPTIONS sip:h SIP/2.0\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\nFrom: <sip:a@h>;tag=1\nTo: <sip:b@h>\nCall-ID: c\nCSeq: 1 OPTIONS\nContent-Length: 0\n\n")
        try m.check()
        #expect(m.callID.map(m.string) == "c")
    }
}

@Suite struct LimitTests {
    @Test func tooLarge() {
        let big = [UInt8](repeating: 0x41, count: 70_000)
        #expect(throws: SIPParseError.self) { try SIPMessage.parse(big) }
        do { _ = try SIPMessage.parse(big) } catch { #expect(error.status == 513) }
    }

    @Test func tooManyHeaders() throws {
        var text = "OPTIONS sip:h SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@h>;tag=1\r\nTo: <sip:b@h>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\n"
        for i in 0..<20 { text += "X-\(i): v\r\n" }
        text += "\r\n"
        let m = try SIPMessage.parse(text, limits: SIPParserLimits(maxHeaderCount: 10))
        do { try m.check(); Issue.record("accepted") } catch { #expect(error.status == 400 && error.code == "too-many-headers") }
    }

    @Test func longHeaderLine() throws {
        let text = "OPTIONS sip:h SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nX-Long: \(String(repeating: "a", count: 2000))\r\nFrom: <sip:a@h>;tag=1\r\nTo: <sip:b@h>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\n\r\n"
        let m = try SIPMessage.parse(text, limits: SIPParserLimits(maxHeaderLineLength: 1000))
        do { try m.check(); Issue.record("accepted") } catch { #expect(error.code == "header-line-too-long") }
    }

    @Test func uriTooLong() {
        let text = "OPTIONS sip:\(String(repeating: "a", count: 300))@h SIP/2.0\r\n\r\n"
        do {
            let m = try SIPMessage.parse(text, limits: SIPParserLimits(maxURILength: 100))
            #expect(m.startLineError?.status == 414)
            try m.check()
            Issue.record("accepted")
        } catch {
            #expect(error.status == 414)
        }
    }

    @Test func truncatedInputsNeverCrash() throws {
        let full = Array(Samples.invite.utf8)
        for n in 0..<full.count {
            if let m = try? SIPMessage.parse(Array(full[0..<n])) {
                _ = try? m.validate()
                _ = m.serialized()
                _ = m.values(.via).map { m.parseVia($0) }
            }
        }
    }
}
