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
/// The fields are packed into one small byte array (one allocation per key) and the hash is computed
/// once, at creation: shard selection and the dictionary reuse it.
public struct TransactionKey: Hashable, Sendable, CustomStringConvertible {
    /// The kinds of key (first byte of `bytes`).
    enum Kind: UInt8 {
        /// RFC 3261 server: method, branch, sent-by.
        case server = 1
        /// RFC 2543 server: method, Request-URI, To tag, From tag, Call-ID, CSeq number, top Via.
        case legacyServer = 2
        /// Client: method, branch.
        case client = 3
    }

    /// `[kind]` then each field as a 16-bit little-endian length and its bytes; the method first.
    let bytes: [UInt8]
    /// The hash computed at creation (this process only).
    public let precomputedHash: Int

    init(bytes: [UInt8]) {
        self.bytes = bytes
        var h = Hasher()
        bytes.withUnsafeBytes { h.combine(bytes: $0) }
        precomputedHash = h.finalize()
    }

    /// The RFC 3261 magic cookie that starts a branch (§8.1.1.7).
    public static let magicCookie = "z9hG4bK"

    // MARK: Creating

    /// The server transaction key of a received request (§17.2.3), or nil if the request lacks a
    /// parsable top Via, CSeq or (without the magic cookie) Call-ID.
    public static func server(for request: SIPMessage) -> TransactionKey? {
        guard request.isRequest, let via = request.topVia, let cseq = request.cseq else { return nil }
        let isAck = request.method == .ack
        return request.withBytes { (m: UnsafeRawBufferPointer) -> TransactionKey? in
            var b = Builder(kind: .server, capacity: 64)
            if isAck { b.append(field: "INVITE") } else { b.append(field: m, request.methodRange) }
            if let br = via.branch, br.count > 7, hasMagicCookie(m, br) {
                b.append(field: m, br)
                // sent-by: host lower-cased, ':', port (default 5061 for TLS, else 5060)
                let port = via.port ?? (request.equalsIgnoringCase(via.transport, "TLS") ? 5061 : 5060)
                b.appendSentBy(m, via.host, port: port)
                return TransactionKey(bytes: b.bytes)
            }
            guard let callID = request.callID else { return nil }
            b.bytes[0] = Kind.legacyServer.rawValue
            b.append(field: m, request.requestURIRange)
            if isAck || request.method == .invite { b.append(field: m, .empty) } else { b.append(field: m, request.toTag ?? .empty) }
            b.append(field: m, request.fromTag ?? .empty)
            b.append(field: m, callID)
            b.append(field: String(cseq.number))
            b.append(field: m, via.whole)
            return TransactionKey(bytes: b.bytes)
        }
    }

    /// The client transaction key a received response matches (§17.1.3): the top Via branch and the
    /// CSeq method. Nil if the response has no branch or no CSeq.
    public static func client(for response: SIPMessage) -> TransactionKey? {
        guard !response.isRequest, let via = response.topVia, let br = via.branch, !br.isEmpty,
              let cseq = response.cseq else { return nil }
        return response.withBytes { m in
            var b = Builder(kind: .client, capacity: br.count + cseq.methodRange.count + 5)
            b.append(field: m, cseq.methodRange)
            b.append(field: m, br)
            return TransactionKey(bytes: b.bytes)
        }
    }

    /// The client transaction key of a request the owner sends with this top Via branch.
    public static func client(branch: String, method: String) -> TransactionKey {
        var b = Builder(kind: .client, capacity: branch.utf8.count + method.utf8.count + 5)
        b.append(field: method)
        b.append(field: branch)
        return TransactionKey(bytes: b.bytes)
    }

    /// The client transaction key of a request the owner sends with this top Via branch.
    public static func client(branch: String, method: SIPMethod) -> TransactionKey {
        client(branch: branch, method: method.name)
    }

    // MARK: Reading

    var kind: Kind { Kind(rawValue: bytes[0])! }

    /// The fields after the kind byte.
    var fields: [ArraySlice<UInt8>] {
        var out: [ArraySlice<UInt8>] = []
        var i = 1
        while i + 2 <= bytes.count {
            let n = Int(bytes[i]) | Int(bytes[i + 1]) << 8
            out.append(bytes[(i + 2)..<(i + 2 + n)])
            i += 2 + n
        }
        return out
    }

    private func field(_ k: Int) -> String { String(decoding: fields[k], as: UTF8.self) }

    /// True for a server key.
    public var isServer: Bool { kind != .client }

    /// True for a key made from an RFC 3261 branch (server keys with the magic cookie, client keys).
    public var isRFC3261: Bool { kind != .legacyServer }

    /// The method part of the key (INVITE for an ACK's server key).
    public var method: String { field(0) }

    /// The branch, for RFC 3261 keys.
    public var branch: String? { kind == .legacyServer ? nil : field(1) }

    /// For the server key of a CANCEL, the key of the INVITE server transaction it cancels (§9.2);
    /// nil for any other key.
    public var cancelledInviteKey: TransactionKey? {
        guard kind != .client else { return nil }
        var f = fields
        guard f[0].elementsEqual("CANCEL".utf8) else { return nil }
        f[0] = ArraySlice("INVITE".utf8)
        if kind == .legacyServer { f[2] = [] }  // INVITE keys carry no To tag
        return TransactionKey(kind: kind, fields: f)
    }

    /// For a client key, the key of the CANCEL sent on the same branch (§9.1: a CANCEL copies the
    /// INVITE's top Via), whose responses match it; nil for server keys.
    public var cancelKey: TransactionKey? {
        guard kind == .client else { return nil }
        var f = fields
        f[0] = ArraySlice("CANCEL".utf8)
        return TransactionKey(kind: .client, fields: f)
    }

    /// A readable form for logs.
    public var description: String {
        let f = fields.map { String(decoding: $0, as: UTF8.self) }
        switch kind {
        case .server: return "server(\(f[0]) \(f[1]) \(f[2]))"
        case .client: return "client(\(f[0]) \(f[1]))"
        case .legacyServer:
            return "server2543(\(f[0]) \(f[1]) to-tag=\(f[2]) from-tag=\(f[3]) call-id=\(f[4]) cseq=\(f[5]) via=\(f[6]))"
        }
    }

    // MARK: Hashable

    /// Feeds the precomputed hash.
    public func hash(into hasher: inout Hasher) { hasher.combine(precomputedHash) }

    /// Equal keys denote the same transaction.
    public static func == (a: TransactionKey, b: TransactionKey) -> Bool {
        a.precomputedHash == b.precomputedHash && a.bytes == b.bytes
    }

    // MARK: Helpers

    private init(kind: Kind, fields: [ArraySlice<UInt8>]) {
        var b = Builder(kind: kind, capacity: fields.reduce(1) { $0 + 2 + $1.count })
        for f in fields { b.append(field: f) }
        self.init(bytes: b.bytes)
    }

    private static func hasMagicCookie(_ m: UnsafeRawBufferPointer, _ branch: ByteRange) -> Bool {
        let cookie: StaticString = "z9hG4bK"
        for k in 0..<7 where m[branch.lower + k] != cookie.utf8Start[k] { return false }
        return true
    }

    /// Packs fields.
    private struct Builder {
        var bytes: [UInt8]

        init(kind: Kind, capacity: Int) {
            bytes = []
            bytes.reserveCapacity(capacity)
            bytes.append(kind.rawValue)
        }

        mutating func appendLength(_ n: Int) {
            let n = min(n, Int(UInt16.max))
            bytes.append(UInt8(n & 0xFF))
            bytes.append(UInt8(n >> 8))
        }

        mutating func append(field m: UnsafeRawBufferPointer, _ r: ByteRange) {
            let n = min(r.count, Int(UInt16.max))
            appendLength(n)
            if n > 0 { bytes.append(contentsOf: UnsafeRawBufferPointer(rebasing: m[r.lower..<(r.lower + n)])) }
        }

        mutating func append(field s: String) {
            var s = s
            s.withUTF8 { u in
                appendLength(u.count)
                bytes.append(contentsOf: u.prefix(Int(UInt16.max)))
            }
        }

        mutating func append(field s: ArraySlice<UInt8>) {
            appendLength(s.count)
            bytes.append(contentsOf: s)
        }

        mutating func appendSentBy(_ m: UnsafeRawBufferPointer, _ host: ByteRange, port: Int) {
            var digits = 1
            var p = port
            while p >= 10 { digits += 1; p /= 10 }
            let n = min(host.count, 1000)
            appendLength(n + 1 + digits)
            for i in host.lower..<(host.lower + n) {
                let c = m[i]
                bytes.append(c >= 65 && c <= 90 ? c + 32 : c)
            }
            bytes.append(58)  // ':'
            var divisor = 1
            for _ in 1..<digits { divisor *= 10 }
            p = port
            while divisor > 0 { bytes.append(UInt8(48 + (p / divisor) % 10)); divisor /= 10 }
        }
    }
}
