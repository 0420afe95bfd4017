import Testing
import SIPCore
@testable import SIPTransaction

/// Messages written as text (CRLF added), parsed with `SIPMessage.parse`.
private func msg(_ lines: String...) throws -> SIPMessage {
    try SIPMessage.parse(lines.joined(separator: "\r\n") + "\r\n\r\n")
}

private func invite(via: String = "SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds",
                    method: String = "INVITE", cseqMethod: String? = nil, toTag: String? = nil,
                    callID: String = "a84b4c76e66710@pc33.atlanta.example.com", cseq: Int = 314159,
                    uri: String = "sip:bob@biloxi.example.com") throws -> SIPMessage {
    try msg("\(method) \(uri) SIP/2.0",
            "Via: \(via)",
            "Max-Forwards: 70",
            "To: Bob <sip:bob@biloxi.example.com>" + (toTag.map { ";tag=\($0)" } ?? ""),
            "From: Alice <sip:alice@atlanta.example.com>;tag=1928301774",
            "Call-ID: \(callID)",
            "CSeq: \(cseq) \(cseqMethod ?? method)",
            "Content-Length: 0")
}

private func response(_ status: Int, branch: String, cseqMethod: String = "INVITE") throws -> SIPMessage {
    try msg("SIP/2.0 \(status) Whatever",
            "Via: SIP/2.0/UDP proxy.example.com;branch=\(branch)",
            "Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds;received=192.0.2.1",
            "To: Bob <sip:bob@biloxi.example.com>;tag=a6c85cf",
            "From: Alice <sip:alice@atlanta.example.com>;tag=1928301774",
            "Call-ID: a84b4c76e66710@pc33.atlanta.example.com",
            "CSeq: 314159 \(cseqMethod)",
            "Content-Length: 0")
}

@Suite("TransactionKey (RFC 3261 §17.2.3, §17.1.3)")
struct TransactionKeyTests {
    @Test("a retransmitted INVITE has the same key; the key reads branch, sent-by and method")
    func retransmission() throws {
        let a = try #require(TransactionKey.server(for: try invite()))
        let b = try #require(TransactionKey.server(for: try invite()))
        #expect(a == b)
        #expect(a.hashValue == b.hashValue)
        #expect(a.isServer && a.isRFC3261)
        #expect(a.branch == "z9hG4bK776asdhds")
        #expect(a.method == "INVITE")
        #expect(a.description == "server(INVITE z9hG4bK776asdhds pc33.atlanta.example.com:5060)")
    }

    @Test("the ACK of a non-2xx final (same branch) matches the INVITE transaction")
    func ackMatchesInvite() throws {
        let inv = try #require(TransactionKey.server(for: try invite()))
        let ack = try #require(TransactionKey.server(for: try invite(method: "ACK", toTag: "a6c85cf")))
        #expect(ack == inv)
    }

    @Test("the ACK of a 2xx (new branch) does not match")
    func ack2xx() throws {
        let inv = try #require(TransactionKey.server(for: try invite()))
        let ack = try #require(TransactionKey.server(for: try invite(
            via: "SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKnashds9", method: "ACK", toTag: "a6c85cf")))
        #expect(ack != inv)
    }

    @Test("a CANCEL has its own key and finds its INVITE")
    func cancel() throws {
        let inv = try #require(TransactionKey.server(for: try invite()))
        let can = try #require(TransactionKey.server(for: try invite(method: "CANCEL")))
        #expect(can != inv)
        #expect(can.method == "CANCEL")
        #expect(can.cancelledInviteKey == inv)
        #expect(inv.cancelledInviteKey == nil)
    }

    @Test("branch, sent-by and method all count; host case and a default port do not")
    func components() throws {
        let inv = try #require(TransactionKey.server(for: try invite()))
        let otherBranch = TransactionKey.server(for: try invite(via: "SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhdt"))
        let otherHost = TransactionKey.server(for: try invite(via: "SIP/2.0/UDP pc34.atlanta.example.com;branch=z9hG4bK776asdhds"))
        let otherPort = TransactionKey.server(for: try invite(via: "SIP/2.0/UDP pc33.atlanta.example.com:5070;branch=z9hG4bK776asdhds"))
        let bye = TransactionKey.server(for: try invite(method: "BYE"))
        let upper = TransactionKey.server(for: try invite(via: "SIP/2.0/UDP PC33.Atlanta.Example.COM;branch=z9hG4bK776asdhds"))
        let port5060 = TransactionKey.server(for: try invite(via: "SIP/2.0/UDP pc33.atlanta.example.com:5060;branch=z9hG4bK776asdhds"))
        let params = TransactionKey.server(for: try invite(via: "SIP/2.0/UDP pc33.atlanta.example.com;rport;branch=z9hG4bK776asdhds"))
        #expect(otherBranch != inv)
        #expect(otherHost != inv)
        #expect(otherPort != inv)
        #expect(bye != inv)
        #expect(upper == inv)
        #expect(port5060 == inv)
        #expect(params == inv)
        // Call-ID, From and CSeq are not part of an RFC 3261 key.
        #expect(TransactionKey.server(for: try invite(callID: "other", cseq: 1)) == inv)
        // TLS defaults to 5061.
        let tls = TransactionKey.server(for: try invite(via: "SIP/2.0/TLS pc33.atlanta.example.com;branch=z9hG4bK776asdhds"))
        let tls5061 = TransactionKey.server(for: try invite(via: "SIP/2.0/TLS pc33.atlanta.example.com:5061;branch=z9hG4bK776asdhds"))
        #expect(tls == tls5061)
        #expect(tls != inv)
    }

    @Test("an extension method is keyed by its name")
    func extensionMethod() throws {
        let foo = try #require(TransactionKey.server(for: try invite(method: "FOO")))
        let bar = try #require(TransactionKey.server(for: try invite(method: "BAR")))
        #expect(foo.method == "FOO")
        #expect(foo != bar)
    }

    @Test("RFC 2543 fallback without the magic cookie: retransmission, ACK, CANCEL")
    func rfc2543() throws {
        let via = "SIP/2.0/UDP pc33.atlanta.example.com;branch=776asdhds"
        let inv = try #require(TransactionKey.server(for: try invite(via: via)))
        #expect(!inv.isRFC3261)
        #expect(inv.branch == nil)
        #expect(TransactionKey.server(for: try invite(via: via)) == inv)
        // The ACK carries the To tag of the final response, and the INVITE's CSeq number.
        #expect(TransactionKey.server(for: try invite(via: via, method: "ACK", toTag: "a6c85cf")) == inv)
        let can = try #require(TransactionKey.server(for: try invite(via: via, method: "CANCEL")))
        #expect(can != inv)
        #expect(can.cancelledInviteKey == inv)
        // Call-ID, CSeq number, Request-URI and the top Via count.
        #expect(TransactionKey.server(for: try invite(via: via, callID: "other@x")) != inv)
        #expect(TransactionKey.server(for: try invite(via: via, cseq: 314160)) != inv)
        #expect(TransactionKey.server(for: try invite(via: via, uri: "sip:carol@biloxi.example.com")) != inv)
        #expect(TransactionKey.server(for: try invite(via: "SIP/2.0/UDP pc33.atlanta.example.com;branch=776asdhdt")) != inv)
        // No branch at all is RFC 2543 too.
        let nob = try #require(TransactionKey.server(for: try invite(via: "SIP/2.0/UDP pc33.atlanta.example.com")))
        #expect(!nob.isRFC3261)
        #expect(TransactionKey.server(for: try invite(via: "SIP/2.0/UDP pc33.atlanta.example.com")) == nob)
        // A non-INVITE request keeps the To tag in its key (an in-dialog BYE).
        let bye1 = TransactionKey.server(for: try invite(via: via, method: "BYE", toTag: "a"))
        let bye2 = TransactionKey.server(for: try invite(via: via, method: "BYE", toTag: "b"))
        #expect(bye1 != bye2)
        // A cookie-less branch never equals a cookie branch key.
        #expect(TransactionKey.server(for: try invite()) != inv)
    }

    @Test("client matching: branch of the top Via and the CSeq method (§17.1.3)")
    func client() throws {
        let key = TransactionKey.client(branch: "z9hG4bKproxy1", method: .invite)
        #expect(!key.isServer)
        #expect(TransactionKey.client(for: try response(180, branch: "z9hG4bKproxy1")) == key)
        #expect(TransactionKey.client(for: try response(486, branch: "z9hG4bKproxy1")) == key)
        #expect(TransactionKey.client(for: try response(200, branch: "z9hG4bKproxy2")) != key)
        // The 200 for the CANCEL of that branch matches the CANCEL's client transaction.
        let cancel200 = try #require(TransactionKey.client(for: try response(200, branch: "z9hG4bKproxy1", cseqMethod: "CANCEL")))
        #expect(cancel200 != key)
        #expect(cancel200 == key.cancelKey)
        #expect(cancel200 == TransactionKey.client(branch: "z9hG4bKproxy1", method: "CANCEL"))
        // Responses have client keys only; requests have server keys only.
        #expect(TransactionKey.server(for: try response(200, branch: "z9hG4bKproxy1")) == nil)
        #expect(TransactionKey.client(for: try invite()) == nil)
        // A server key with the same branch and method is a different key.
        let spiral = try #require(TransactionKey.server(for: try invite(via: "SIP/2.0/UDP proxy.example.com;branch=z9hG4bKproxy1")))
        #expect(spiral != key)
        #expect(key.cancelKey != nil && spiral.cancelledInviteKey == nil)
    }

    @Test("messages without a usable Via or CSeq have no key")
    func missing() throws {
        let noVia = try msg("OPTIONS sip:x@example.com SIP/2.0", "Call-ID: 1", "CSeq: 1 OPTIONS", "Content-Length: 0")
        #expect(TransactionKey.server(for: noVia) == nil)
        let noCSeq = try msg("OPTIONS sip:x@example.com SIP/2.0", "Via: SIP/2.0/UDP h;branch=z9hG4bK1", "Call-ID: 1", "Content-Length: 0")
        #expect(TransactionKey.server(for: noCSeq) == nil)
        let noBranch = try msg("SIP/2.0 200 OK", "Via: SIP/2.0/UDP h", "CSeq: 1 OPTIONS", "Content-Length: 0")
        #expect(TransactionKey.client(for: noBranch) == nil)
    }
}
