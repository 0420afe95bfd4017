/// URI schemes with special meaning to a router.
public enum SIPURIScheme: UInt8, Sendable {
    case sip, sips, tel, other
}

/// A parsed SIP, SIPS or TEL URI (RFC 3261 §19.1, RFC 3966), as offsets into the buffer it was parsed from.
///
/// `sip:user;par=u%40example.net@example.com:5060;transport=udp?Subject=x`
public struct SIPURIParts: Sendable, Hashable {
    public var scheme: SIPURIScheme
    /// The scheme as written (without the colon).
    public var schemeRange: ByteRange
    /// The user part, still escaped (may contain `;` for SIP). For TEL, the number.
    public var user: ByteRange?
    /// The password after `user:`.
    public var password: ByteRange?
    /// The host: a name, an IPv4 address or an IPv6 reference with its brackets.
    public var host: ByteRange
    /// The port, if written.
    public var port: Int?
    public var portRange: ByteRange?
    /// The parameters after the host (without the first `;`).
    public var params: ByteRange
    /// The headers after `?`.
    public var headers: ByteRange?
    /// The whole URI.
    public var whole: ByteRange

    /// Parses `r`. Returns nil unless the URI has a scheme and, for SIP/SIPS, a host.
    static func parse(_ v: ByteView, _ r: ByteRange) -> SIPURIParts? {
        let e = r.upper
        var i = r.lower
        // scheme
        guard i < e, ASCII.isAlpha(v[i]) else { return nil }
        while i < e && (ASCII.isAlpha(v[i]) || ASCII.isDigit(v[i]) || v[i] == UInt8(ascii: "+")
                        || v[i] == UInt8(ascii: "-") || v[i] == UInt8(ascii: ".")) { i += 1 }
        guard i < e, v[i] == ASCII.colon else { return nil }
        let schemeRange = ByteRange(r.lower, i)
        let scheme: SIPURIScheme =
            v.equalsIgnoringCase(schemeRange, "sip") ? .sip
            : v.equalsIgnoringCase(schemeRange, "sips") ? .sips
            : v.equalsIgnoringCase(schemeRange, "tel") ? .tel : .other
        i += 1
        var parts = SIPURIParts(scheme: scheme, schemeRange: schemeRange, user: nil, password: nil,
                                host: .empty, port: nil, portRange: nil, params: ByteRange(e, e), headers: nil,
                                whole: r)
        switch scheme {
        case .other:
            // Opaque: keep everything after the scheme as the "host" part.
            parts.host = ByteRange(i, e)
            return parts
        case .tel:
            let ns = i
            while i < e && v[i] != ASCII.semicolon { i += 1 }
            guard i > ns else { return nil }
            parts.user = ByteRange(ns, i)
            parts.host = ByteRange(i, i)
            parts.params = ByteRange(min(i + 1, e), e)
            return parts
        case .sip, .sips:
            break
        }
        // userinfo ends at the first '@': '@' may appear nowhere else unescaped (user may hold ';', '?', '/').
        let at = v.memfind(ASCII.at, i, e)
        if at < e {
            let colon = v.find(ASCII.colon, i, at)
            parts.user = ByteRange(i, colon)
            if colon < at { parts.password = ByteRange(colon + 1, at) }
            i = at + 1
        }
        // headers start at the first '?' after the userinfo
        let q = v.memfind(ASCII.question, i, e)
        if q < e { parts.headers = ByteRange(q + 1, e) }
        // host
        let hs = i
        if i < q && v[i] == ASCII.lbracket {
            let rb = v.find(ASCII.rbracket, i, q)
            guard rb < q else { return nil }
            for k in (i + 1)..<rb where !(ASCII.isHex(v[k]) || v[k] == ASCII.colon || v[k] == UInt8(ascii: ".")) {
                return nil
            }
            i = rb + 1
        } else {
            while i < q && ASCII.isHostChar(v[i]) { i += 1 }
        }
        guard i > hs else { return nil }
        parts.host = ByteRange(hs, i)
        if i < q && v[i] == ASCII.colon {
            let ps = i + 1
            i = ps
            while i < q && ASCII.isDigit(v[i]) { i += 1 }
            guard i > ps, let port = v.decimal(ByteRange(ps, i), max: 65535) else { return nil }
            parts.port = Int(port)
            parts.portRange = ByteRange(ps, i)
        }
        if i < q {
            guard v[i] == ASCII.semicolon else { return nil }
            parts.params = ByteRange(i + 1, q)
            // URI parameters may not contain whitespace.
            for k in (i + 1)..<q where ASCII.isLWS(v[k]) { return nil }
        } else {
            parts.params = ByteRange(q, q)
        }
        return parts
    }
}

/// A URI that owns its bytes: parsed once, queried without further parsing. Use it for URIs that do
/// not come from a received message (`$du`, a rewritten Request-URI, configuration).
public struct SIPURI: Sendable, Hashable, CustomStringConvertible {
    public let bytes: [UInt8]
    public let parts: SIPURIParts

    /// Parses a URI given as bytes.
    public init?(bytes: [UInt8]) {
        guard let p = bytes.withUnsafeBytes({ SIPURIParts.parse(ByteView($0), ByteRange(0, $0.count)) }) else { return nil }
        self.bytes = bytes
        self.parts = p
    }

    /// Parses a URI given as text.
    public init?(_ text: String) { self.init(bytes: Array(text.utf8)) }

    func slice(_ r: ByteRange) -> String {
        bytes.withUnsafeBytes { ByteView($0).string(r) }
    }

    public var description: String { String(decoding: bytes, as: UTF8.self) }
    public var scheme: SIPURIScheme { parts.scheme }
    public var schemeName: String { slice(parts.schemeRange) }
    /// The user part as written (escaped).
    public var user: String? { parts.user.map(slice) }
    public var password: String? { parts.password.map(slice) }
    /// The host as written (IPv6 with brackets).
    public var host: String { slice(parts.host) }
    public var port: Int? { parts.port }
    /// The parameters as written, without the leading `;`.
    public var paramsString: String { slice(parts.params) }
    public var headersString: String? { parts.headers.map(slice) }

    /// The value of a URI parameter (nil if absent, "" if present without value).
    public func param(_ name: String) -> String? {
        var name = name  // withUTF8: no copy of a native string
        return name.withUTF8 { nb in
            bytes.withUnsafeBytes { b in Params.find(ByteView(b), parts.params, UnsafeRawBufferPointer(nb)) }
        }.map(slice)
    }

    /// The `transport` parameter, lowercased, or nil.
    public var transport: String? { param("transport")?.lowercased() }

    /// All parameters in order (value nil when written without `=`).
    public var params: [(name: String, value: String?)] {
        var out: [(String, String?)] = []
        bytes.withUnsafeBytes { b in
            Params.forEach(ByteView(b), parts.params) { n, v in out.append((slice(n), v.map(slice))) }
        }
        return out
    }
}

extension SIPMessage {
    /// An owned copy of a URI found in this message.
    public func uri(_ r: ByteRange) -> SIPURI? { SIPURI(bytes: bytes(r)) }
}
