/// Well-known header names, recognised once while scanning so lookups compare one byte.
/// Compact forms (RFC 3261 §7.3.3 and later RFCs) map to the same kind.
public enum SIPHeaderKind: UInt8, Sendable, CaseIterable {
    case other
    case via, from, to, callID, cseq, maxForwards, contentLength, contentType, contact
    case route, recordRoute, expires, authorization, proxyAuthorization, wwwAuthenticate
    case proxyAuthenticate, path, supported, require, proxyRequire, unsupported, event, allow
    case userAgent, server, subject, accept, contentEncoding, referTo, allowEvents, date
    case minExpires, retryAfter, warning, timestamp, organization, priority, acceptEncoding
    case acceptLanguage, contentDisposition, sessionExpires, referredBy, privacy, reason
    case pAssertedIdentity, pPreferredIdentity, identity, replyTo, inReplyTo, mimeVersion
    case alertInfo, callInfo, errorInfo, authenticationInfo, rseq, rack, minSE, subscriptionState

    /// The canonical spelling (RFC 3261 casing), or nil for `.other`.
    public var canonicalName: String? {
        switch self {
        case .other: return nil
        case .via: return "Via"
        case .from: return "From"
        case .to: return "To"
        case .callID: return "Call-ID"
        case .cseq: return "CSeq"
        case .maxForwards: return "Max-Forwards"
        case .contentLength: return "Content-Length"
        case .contentType: return "Content-Type"
        case .contact: return "Contact"
        case .route: return "Route"
        case .recordRoute: return "Record-Route"
        case .expires: return "Expires"
        case .authorization: return "Authorization"
        case .proxyAuthorization: return "Proxy-Authorization"
        case .wwwAuthenticate: return "WWW-Authenticate"
        case .proxyAuthenticate: return "Proxy-Authenticate"
        case .path: return "Path"
        case .supported: return "Supported"
        case .require: return "Require"
        case .proxyRequire: return "Proxy-Require"
        case .unsupported: return "Unsupported"
        case .event: return "Event"
        case .allow: return "Allow"
        case .userAgent: return "User-Agent"
        case .server: return "Server"
        case .subject: return "Subject"
        case .accept: return "Accept"
        case .contentEncoding: return "Content-Encoding"
        case .referTo: return "Refer-To"
        case .allowEvents: return "Allow-Events"
        case .date: return "Date"
        case .minExpires: return "Min-Expires"
        case .retryAfter: return "Retry-After"
        case .warning: return "Warning"
        case .timestamp: return "Timestamp"
        case .organization: return "Organization"
        case .priority: return "Priority"
        case .acceptEncoding: return "Accept-Encoding"
        case .acceptLanguage: return "Accept-Language"
        case .contentDisposition: return "Content-Disposition"
        case .sessionExpires: return "Session-Expires"
        case .referredBy: return "Referred-By"
        case .privacy: return "Privacy"
        case .reason: return "Reason"
        case .pAssertedIdentity: return "P-Asserted-Identity"
        case .pPreferredIdentity: return "P-Preferred-Identity"
        case .identity: return "Identity"
        case .replyTo: return "Reply-To"
        case .inReplyTo: return "In-Reply-To"
        case .mimeVersion: return "MIME-Version"
        case .alertInfo: return "Alert-Info"
        case .callInfo: return "Call-Info"
        case .errorInfo: return "Error-Info"
        case .authenticationInfo: return "Authentication-Info"
        case .rseq: return "RSeq"
        case .rack: return "RAck"
        case .minSE: return "Min-SE"
        case .subscriptionState: return "Subscription-State"
        }
    }

    /// This kind's bit in a 64-bit set of kinds (there are fewer than 64).
    @inline(__always) var bit: UInt64 { 1 << UInt64(rawValue) }

    /// Headers whose value is a comma-separated list (RFC 3261 §7.3.1), so one line may carry several values.
    public var isList: Bool {
        switch self {
        case .via, .contact, .route, .recordRoute, .path, .supported, .require, .proxyRequire,
            .unsupported, .allow, .accept, .contentEncoding, .allowEvents, .acceptEncoding,
            .acceptLanguage, .warning, .alertInfo, .callInfo, .errorInfo, .inReplyTo,
            .pAssertedIdentity, .pPreferredIdentity, .privacy, .reason:
            return true
        default: return false
        }
    }

    /// Headers a message may carry only once (RFC 3261 §20). A second one makes the message invalid.
    public var isSingle: Bool {
        switch self {
        case .from, .to, .callID, .cseq, .maxForwards, .contentLength, .contentType, .expires,
            .minExpires, .date, .mimeVersion, .rseq, .rack, .sessionExpires, .minSE:
            return true
        default: return false
        }
    }

    /// Recognises a header name (case-insensitive, compact forms included).
    static func classify(_ v: ByteView, _ s: Int, _ e: Int) -> SIPHeaderKind {
        let n = e - s
        if n == 1 {
            switch ASCII.lower(v[s]) {
            case UInt8(ascii: "v"): return .via
            case UInt8(ascii: "f"): return .from
            case UInt8(ascii: "t"): return .to
            case UInt8(ascii: "i"): return .callID
            case UInt8(ascii: "m"): return .contact
            case UInt8(ascii: "l"): return .contentLength
            case UInt8(ascii: "c"): return .contentType
            case UInt8(ascii: "k"): return .supported
            case UInt8(ascii: "s"): return .subject
            case UInt8(ascii: "e"): return .contentEncoding
            case UInt8(ascii: "o"): return .event
            case UInt8(ascii: "r"): return .referTo
            case UInt8(ascii: "u"): return .allowEvents
            case UInt8(ascii: "b"): return .referredBy
            case UInt8(ascii: "x"): return .sessionExpires
            case UInt8(ascii: "y"): return .identity
            default: return .other
            }
        }
        guard n >= 2, n <= 32 else { return .other }
        // The most common headers first, by length, without touching any table. `name` is a token
        // (scanNextHeader stops at the first other byte; classify(name:) checks).
        switch n {
        case 2: if v.tokenEquals(s, e, lowercase: "to") { return .to }
        case 3: if v.tokenEquals(s, e, lowercase: "via") { return .via }
        case 4:
            if v.tokenEquals(s, e, lowercase: "from") { return .from }
            if v.tokenEquals(s, e, lowercase: "cseq") { return .cseq }
        case 5: if v.tokenEquals(s, e, lowercase: "route") { return .route }
        case 7:
            if v.tokenEquals(s, e, lowercase: "call-id") { return .callID }
            if v.tokenEquals(s, e, lowercase: "contact") { return .contact }
        case 12:
            if v.tokenEquals(s, e, lowercase: "max-forwards") { return .maxForwards }
            if v.tokenEquals(s, e, lowercase: "record-route") { return .recordRoute }
            if v.tokenEquals(s, e, lowercase: "content-type") { return .contentType }
        case 14: if v.tokenEquals(s, e, lowercase: "content-length") { return .contentLength }
        default: break
        }
        return classifyRare(v, s, e)
    }

    /// The less common long names: compared against the kinds sharing the first letter.
    static func classifyRare(_ v: ByteView, _ s: Int, _ e: Int) -> SIPHeaderKind {
        let n = e - s
        let first = ASCII.lower(v[s])
        guard first >= UInt8(ascii: "a"), first <= UInt8(ascii: "z") else { return .other }
        let candidates = SIPHeaderKind.candidatesByLetter[Int(first - UInt8(ascii: "a"))]
        for k in candidates {
            let name = k.nameBytes
            if name.count == n && name.withUnsafeBufferPointer({ v.equalsIgnoringCase(s, e, $0.baseAddress!, n) }) {
                return k
            }
        }
        return .other
    }

    /// Long-form kinds grouped by their first letter, so a name is compared with a few candidates only.
    static let candidatesByLetter: [[SIPHeaderKind]] = {
        var table = [[SIPHeaderKind]](repeating: [], count: 26)
        for k in SIPHeaderKind.allCases where k != .other {
            let f = ASCII.lower(k.nameBytes[0]) - UInt8(ascii: "a")
            table[Int(f)].append(k)
        }
        return table
    }()

    /// The canonical name's bytes, compared case-insensitively.
    var nameBytes: [UInt8] { SIPHeaderKind.nameTable[Int(rawValue)] }

    static let nameTable: [[UInt8]] = SIPHeaderKind.allCases.map { Array(($0.canonicalName ?? "").utf8) }

    /// Recognises a header name given as a Swift string (KSR.hdr functions, `$hdr(name)`).
    public static func classify(name: String) -> SIPHeaderKind {
        var name = name
        return name.withUTF8 {
            let v = ByteView(UnsafeRawBufferPointer($0))
            return v.scanToken(0, $0.count) == $0.count ? classify(v, 0, $0.count) : .other
        }
    }
}

/// Request methods with an identity of their own (`.other` carries the name in the message).
public enum SIPMethod: UInt8, Sendable, CaseIterable {
    case other, invite, ack, bye, cancel, register, options, info, update, prack, subscribe, notify
    case publish, message, refer, kdmq, get, post, put, delete

    public var name: String {
        switch self {
        case .other: return ""
        case .invite: return "INVITE"
        case .ack: return "ACK"
        case .bye: return "BYE"
        case .cancel: return "CANCEL"
        case .register: return "REGISTER"
        case .options: return "OPTIONS"
        case .info: return "INFO"
        case .update: return "UPDATE"
        case .prack: return "PRACK"
        case .subscribe: return "SUBSCRIBE"
        case .notify: return "NOTIFY"
        case .publish: return "PUBLISH"
        case .message: return "MESSAGE"
        case .refer: return "REFER"
        case .kdmq: return "KDMQ"
        case .get: return "GET"
        case .post: return "POST"
        case .put: return "PUT"
        case .delete: return "DELETE"
        }
    }

    /// Method names are case-sensitive (RFC 3261 §7.1); `RE%47IST%45R` is not REGISTER.
    static func classify(_ v: ByteView, _ s: Int, _ e: Int) -> SIPMethod {
        switch e - s {
        case 3:
            if v.equals(s, e, "ACK") { return .ack }
            if v.equals(s, e, "BYE") { return .bye }
            if v.equals(s, e, "GET") { return .get }
            if v.equals(s, e, "PUT") { return .put }
        case 4:
            if v.equals(s, e, "INFO") { return .info }
            if v.equals(s, e, "KDMQ") { return .kdmq }
            if v.equals(s, e, "POST") { return .post }
        case 5:
            if v.equals(s, e, "PRACK") { return .prack }
            if v.equals(s, e, "REFER") { return .refer }
        case 6:
            if v.equals(s, e, "INVITE") { return .invite }
            if v.equals(s, e, "CANCEL") { return .cancel }
            if v.equals(s, e, "UPDATE") { return .update }
            if v.equals(s, e, "NOTIFY") { return .notify }
            if v.equals(s, e, "DELETE") { return .delete }
        case 7:
            if v.equals(s, e, "OPTIONS") { return .options }
            if v.equals(s, e, "PUBLISH") { return .publish }
            if v.equals(s, e, "MESSAGE") { return .message }
        case 8: if v.equals(s, e, "REGISTER") { return .register }
        case 9: if v.equals(s, e, "SUBSCRIBE") { return .subscribe }
        default: break
        }
        return .other
    }

    /// Recognises a method name given as a string (exact, case-sensitive, as on the wire).
    public init(name: String) {
        var name = name
        self = name.withUTF8 { SIPMethod.classify(ByteView(UnsafeRawBufferPointer($0)), 0, $0.count) }
    }
}
