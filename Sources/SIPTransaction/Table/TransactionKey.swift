public import SIPCore

/// The identity of a transaction, computed from a message without copying it (a few short strings).
///
/// Server keys follow RFC 3261 §17.2.3:
/// - a request whose top Via branch starts with the magic cookie `z9hG4bK` is keyed by the branch,
///   the sent-by (host, lower-cased, and port, defaulted by transport) and the method, where an ACK
///   takes the method INVITE so that it finds the INVITE's transaction;
/// - a CANCEL gets a key of its own (method CANCEL); `cancelledInviteKey` is the key of the INVITE it
///   cancels (§9.2);
/// - without the cookie (RFC 2543 peers) the key is Request-URI, From tag, Call-ID, CSeq number, top
///   Via and method (ACK as INVITE), plus the To tag for methods other than INVITE and ACK: an ACK
///   carries the To tag of our final response, not the INVITE's, so it cannot be part of an exact key
///   (the owner may compare the ACK's To tag with the tag it sent).
///
/// Client keys follow §17.1.3: the branch of the top Via (the one the proxy inserted) and the CSeq
/// method. Server and client keys never compare equal, so one table may hold both.
///
/// The hash is computed once, at creation: shard selection and the dictionary reuse it.
public struct TransactionKey: Hashable, Sendable, CustomStringConvertible {
    enum Storage: Hashable, Sendable {
        case server(branch: String, sentBy: String, method: String)
        case legacyServer(requestURI: String, toTag: String, fromTag: String, callID: String, cseq: UInt32,
                          topVia: String, method: String)
        case client(branch: String, method: String)
    }

    let storage: Storage
    /// The hash computed at creation (this process only).
    public let precomputedHash: Int

    init(_ storage: Storage) {
        self.storage = storage
        var h = Hasher()
        storage.hash(into: &h)
        precomputedHash = h.finalize()
    }

    /// The RFC 3261 magic cookie that starts a branch (§8.1.1.7).
    public static let magicCookie = "z9hG4bK"

    // MARK: Creating

    /// The server transaction key of a received request (§17.2.3), or nil if the request lacks a
    /// parsable top Via, CSeq or (without the magic cookie) Call-ID.
    public static func server(for request: SIPMessage) -> TransactionKey? {
        guard request.isRequest, let via = request.topVia, let cseq = request.cseq else { return nil }
        let method = request.method == .ack ? "INVITE" : methodName(request)
        if let b = via.branch, hasMagicCookie(request, b) {
            return TransactionKey(.server(branch: request.string(b), sentBy: sentBy(request, via), method: method))
        }
        guard let callID = request.callID else { return nil }
        let inviteLike = method == "INVITE"
        return TransactionKey(.legacyServer(
            requestURI: request.string(request.requestURIRange),
            toTag: inviteLike ? "" : (request.to?.tag.map(request.string) ?? ""),
            fromTag: request.from?.tag.map(request.string) ?? "",
            callID: request.string(callID), cseq: cseq.number,
            topVia: request.string(via.whole), method: method))
    }

    /// The client transaction key a received response matches (§17.1.3): the top Via branch and the
    /// CSeq method. Nil if the response has no branch or no CSeq.
    public static func client(for response: SIPMessage) -> TransactionKey? {
        guard !response.isRequest, let via = response.topVia, let b = via.branch, !b.isEmpty,
              let cseq = response.cseq else { return nil }
        return TransactionKey(.client(branch: response.string(b), method: response.string(cseq.methodRange)))
    }

    /// The client transaction key of a request the owner sends with this top Via branch.
    public static func client(branch: String, method: String) -> TransactionKey {
        TransactionKey(.client(branch: branch, method: method))
    }

    /// The client transaction key of a request the owner sends with this top Via branch.
    public static func client(branch: String, method: SIPMethod) -> TransactionKey {
        client(branch: branch, method: method.name)
    }

    // MARK: Reading

    /// True for a server key.
    public var isServer: Bool {
        if case .client = storage { return false }
        return true
    }

    /// True for a key made from an RFC 3261 branch (server keys with the magic cookie, client keys).
    public var isRFC3261: Bool {
        if case .legacyServer = storage { return false }
        return true
    }

    /// The method part of the key (INVITE for an ACK's server key).
    public var method: String {
        switch storage {
        case .server(_, _, let m), .client(_, let m): return m
        case .legacyServer(_, _, _, _, _, _, let m): return m
        }
    }

    /// The branch, for RFC 3261 keys.
    public var branch: String? {
        switch storage {
        case .server(let b, _, _), .client(let b, _): return b
        case .legacyServer: return nil
        }
    }

    /// For the server key of a CANCEL, the key of the INVITE server transaction it cancels (§9.2);
    /// nil for any other key.
    public var cancelledInviteKey: TransactionKey? {
        switch storage {
        case .server(let b, let s, "CANCEL"):
            return TransactionKey(.server(branch: b, sentBy: s, method: "INVITE"))
        case .legacyServer(let uri, _, let ft, let cid, let cseq, let via, "CANCEL"):
            return TransactionKey(.legacyServer(requestURI: uri, toTag: "", fromTag: ft, callID: cid, cseq: cseq,
                                                topVia: via, method: "INVITE"))
        default:
            return nil
        }
    }

    /// For a client key, the key of the CANCEL sent on the same branch (§9.1: a CANCEL copies the
    /// INVITE's top Via), whose responses match it; nil for server keys.
    public var cancelKey: TransactionKey? {
        guard case .client(let b, _) = storage else { return nil }
        return TransactionKey(.client(branch: b, method: "CANCEL"))
    }

    /// A readable form for logs.
    public var description: String {
        switch storage {
        case .server(let b, let s, let m): return "server(\(m) \(b) \(s))"
        case .client(let b, let m): return "client(\(m) \(b))"
        case .legacyServer(let uri, let tt, let ft, let cid, let cseq, let via, let m):
            return "server2543(\(m) \(uri) to-tag=\(tt) from-tag=\(ft) call-id=\(cid) cseq=\(cseq) via=\(via))"
        }
    }

    // MARK: Hashable

    /// Feeds the precomputed hash.
    public func hash(into hasher: inout Hasher) { hasher.combine(precomputedHash) }

    /// Equal keys denote the same transaction.
    public static func == (a: TransactionKey, b: TransactionKey) -> Bool {
        a.precomputedHash == b.precomputedHash && a.storage == b.storage
    }

    // MARK: Helpers

    private static func methodName(_ m: SIPMessage) -> String {
        m.method == .other ? m.string(m.methodRange) : m.method.name
    }

    private static func hasMagicCookie(_ m: SIPMessage, _ branch: ByteRange) -> Bool {
        guard branch.count > 7 else { return false }
        return m.withBytes { b in
            let cookie: StaticString = "z9hG4bK"
            for k in 0..<7 where b[branch.lower + k] != cookie.utf8Start[k] { return false }
            return true
        }
    }

    private static func sentBy(_ m: SIPMessage, _ via: SIPVia) -> String {
        let port = via.port ?? (m.equalsIgnoringCase(via.transport, "TLS") ? 5061 : 5060)
        return m.string(via.host).lowercased() + ":" + String(port)
    }
}
