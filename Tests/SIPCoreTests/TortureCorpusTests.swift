import Testing
import SIPCore

@Suite("RFC 4475 torture corpus")
struct TortureCorpusTests {
    @Test("the index lists all 50 files") func indexComplete() {
        #expect(Corpus.entries.count == 50)
    }

    /// Every file: accepted ones validate, rejected ones fail with an allowed status, `either` ones
    /// do one or the other, and nothing crashes.
    @Test("outcome of each file", arguments: Corpus.entries)
    func outcome(_ entry: Corpus.Entry) throws {
        let bytes = Corpus.bytes(entry.name)
        var error: SIPParseError? = nil
        do {
            let m = try SIPMessage.parse(bytes)
            try m.validate()
            // Serialising must never fail or read outside the buffer.
            _ = m.serialized()
        } catch let e {
            error = e
        }
        let allowedStatuses = Set(entry.action.split(whereSeparator: { $0 == "|" || $0 == ";" || $0 == "=" })
            .compactMap { Int($0) })
        let dropAllowed = entry.action.contains("drop") || entry.kind == "response"
        switch entry.parse {
        case "accept":
            #expect(error == nil, "\(entry.name) should parse, got \(String(describing: error))")
        case "reject":
            let e = try #require(error, "\(entry.name) should be rejected")
            if let s = e.status {
                #expect(allowedStatuses.contains(s), "\(entry.name): status \(s) not in \(entry.action)")
            } else {
                #expect(dropAllowed, "\(entry.name): dropped, but \(entry.action) expected")
            }
        default:  // either
            if let e = error, let s = e.status {
                #expect(allowedStatuses.contains(s), "\(entry.name): status \(s) not in \(entry.action)")
            }
        }
    }

    @Test func wsinv() throws {
        let m = try SIPMessage.parse(Corpus.bytes("wsinv.dat"))
        try m.validate()
        #expect(m.method == .invite)
        #expect(m.values(.via).count == 3)
        #expect(m.maxForwards == 68)
        let cseq = try #require(m.cseq)
        #expect(cseq.number == 9 && cseq.method == .invite)
        #expect(m.bodyRange.count == 150)
        #expect(m.from.flatMap { $0.tag.map(m.string) } == "98asjd8")
        #expect(m.to.flatMap { $0.tag.map(m.string) } == "1918181833n")
        let unusual = try #require(m.headerValue(named: "UnknownHeaderWithUnusualValue"))
        #expect(unusual == ";;,,;;,;")
        #expect(m.headerValue(.subject) == "")
        let via = try #require(m.topVia)
        #expect(m.string(via.transport) == "UDP")
        #expect(m.string(via.host) == "192.0.2.2")
        #expect(via.branch.map(m.string) == "390skdjuw")
    }

    @Test func intmeth() throws {
        let m = try SIPMessage.parse(Corpus.bytes("intmeth.dat"))
        try m.validate()
        #expect(m.method == .other)
        #expect(m.string(m.methodRange) == "!interesting-Method0123456789_*+`.%indeed'~")
        #expect(m.cseq?.method == .other)
    }

    @Test func esc01() throws {
        let m = try SIPMessage.parse(Corpus.bytes("esc01.dat"))
        try m.validate()
        let uri = try #require(m.requestURI)
        let user = try #require(uri.user)
        #expect(m.unescaped(user) == Array("sips:user@example.com".utf8))
        #expect(m.string(uri.host) == "example.net")
        let ruri = try #require(m.uri(m.requestURIRange))
        #expect(SIPURI.equivalent(ruri.description, "sip:sips%3auser%40example.com@example.net"))
        #expect(SIPURI.equivalent(ruri.description, "sip:%73ips%3Auser%40example.com@EXAMPLE.net"))
        #expect(!SIPURI.equivalent(ruri.description, "sip:sips%3AUser%40example.com@example.net"))
    }

    @Test func escnull() throws {
        let m = try SIPMessage.parse(Corpus.bytes("escnull.dat"))
        try m.validate()
        let to = try #require(m.to)
        let user = try #require(to.uriParts.user)
        #expect(m.unescaped(user) == Array("null-\u{0}-null".utf8))
        let contacts = m.values(.contact)
        #expect(contacts.count == 2)
        let na = try #require(m.parseNameAddr(contacts[0]))
        let nb = try #require(m.parseNameAddr(contacts[1]))
        let a = try #require(m.uri(na.uri))
        let b = try #require(m.uri(nb.uri))
        #expect(!a.isEquivalent(to: b))
    }

    @Test func esc02() throws {
        let m = try SIPMessage.parse(Corpus.bytes("esc02.dat"))
        try m.validate()
        #expect(m.method == .other)
        #expect(m.string(m.methodRange) == "RE%47IST%45R")
        #expect(m.values(.contact).count == 2)
    }

    @Test func semiuri() throws {
        let m = try SIPMessage.parse(Corpus.bytes("semiuri.dat"))
        try m.validate()
        let uri = try #require(m.requestURI)
        let user = try #require(uri.user)
        #expect(m.string(user) == "user;par=u%40example.net")
        #expect(m.string(uri.host) == "example.com")
    }

    @Test func mpart01() throws {
        let bytes = Corpus.bytes("mpart01.dat")
        let m = try SIPMessage.parse(bytes)
        try m.validate()
        let body = m.bodyRange
        #expect(body.count == 553)
        #expect(m.bytes(body) == Array(bytes[(bytes.count - 553)...]))
        #expect(m.bytes(body).contains(0))
    }

    @Test func longreq() throws {
        let m = try SIPMessage.parse(Corpus.bytes("longreq.dat"))
        try m.validate()
        #expect(m.values(.via).count == 34)
    }

    @Test func dblreq() throws {
        let m = try SIPMessage.parse(Corpus.bytes("dblreq.dat"))
        try m.validate()
        #expect(m.method == .register)
        #expect(m.bodyRange.count == 0)
        let out = m.serialized()
        #expect(!String(decoding: out, as: UTF8.self).contains("INVITE"))
        #expect(out == Array(Corpus.bytes("dblreq.dat")[..<m.framedLength]))
    }

    @Test func inv2543() throws {
        let m = try SIPMessage.parse(Corpus.bytes("inv2543.dat"))
        try m.validate()
        #expect(m.firstHeader(.contentLength) == nil)
        #expect(m.bodyRange.count == 105)
        #expect(m.topVia?.branch == nil)
        #expect(m.from?.tag == nil)
    }

    @Test func transports() throws {
        let m = try SIPMessage.parse(Corpus.bytes("transports.dat"))
        try m.validate()
        let names = m.values(.via).compactMap { m.parseVia($0) }.map { m.string($0.transport) }
        #expect(names == ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"])
    }

    @Test func unreasonAndNoreason() throws {
        let a = try SIPMessage.parse(Corpus.bytes("unreason.dat"))
        try a.validate()
        #expect(a.statusCode == 200)
        #expect(a.string(a.reasonRange).contains("="))
        let b = try SIPMessage.parse(Corpus.bytes("noreason.dat"))
        try b.validate()
        #expect(b.statusCode == 100)
        #expect(b.reasonRange.isEmpty)
    }

    @Test("named rejections", arguments: [
        ("badvers.dat", 505), ("scalar02.dat", 400), ("ncl.dat", 400), ("mcl01.dat", 400), ("clerr.dat", 400),
        ("multi01.dat", 400), ("badinv01.dat", 400), ("insuf.dat", 400), ("mismatch01.dat", 400),
    ])
    func rejection(_ name: String, _ status: Int) throws {
        do {
            let m = try SIPMessage.parse(Corpus.bytes(name))
            try m.validate()
            Issue.record("\(name) was accepted")
        } catch {
            #expect(error.status == status, "\(name): \(error)")
        }
    }

    @Test("dropped responses", arguments: ["bigcode.dat", "scalarlg.dat"])
    func dropped(_ name: String) throws {
        do {
            let m = try SIPMessage.parse(Corpus.bytes(name))
            try m.validate()
            Issue.record("\(name) was accepted")
        } catch {
            #expect(error.status == nil, "\(name): \(error)")
        }
    }
}
