/// A `name-addr` or `addr-spec` value with header parameters (From, To, Contact, Route, Record-Route,
/// Reply-To, P-Asserted-Identity...). In an addr-spec without `<>`, everything after the first `;`
/// belongs to the header, not to the URI (RFC 3261 §20.10).
public struct SIPNameAddr: Sendable, Hashable {
    /// The display name as written (with its quotes, if quoted); nil if none.
    public var displayName: ByteRange?
    /// The URI (inside `<>` when present).
    public var uri: ByteRange
    /// The parsed URI.
    public var uriParts: SIPURIParts
    /// Header parameters after the URI (without the first `;`).
    public var params: ByteRange
    /// The `tag` parameter value, if present.
    public var tag: ByteRange?
    /// True if the URI was written inside `<>`.
    public var isAngleBracketed: Bool
    /// True for a Contact `*`.
    public var isStar: Bool
    /// The whole value.
    public var whole: ByteRange

    static func parse(_ v: ByteView, _ r: ByteRange, limits: SIPParserLimits) -> SIPNameAddr? {
        guard let s = delimit(v, r, limits: limits) else { return nil }
        if s.isStar {
            let e = s.whole.upper
            return SIPNameAddr(displayName: nil, uri: s.whole, uriParts: SIPURIParts(scheme: .other, schemeRange: s.whole, user: nil, password: nil, host: s.whole, port: nil, portRange: nil, params: ByteRange(e, e), headers: nil, whole: s.whole), params: ByteRange(e, e), tag: nil, isAngleBracketed: false, isStar: true, whole: s.whole)
        }
        guard let parts = SIPURIParts.parse(v, s.uri) else { return nil }
        return SIPNameAddr(displayName: s.displayName, uri: s.uri, uriParts: parts, params: s.params,
                           tag: Params.find(v, s.params, "tag"), isAngleBracketed: s.isAngleBracketed, isStar: false,
                           whole: s.whole)
    }

    /// Where the parts of a name-addr or addr-spec are, without parsing its URI or its parameters
    /// (Kamailio's `parse_to`/`parse_addr_spec`: the URI is only delimited). Nil if it does not delimit.
    struct Span {
        var displayName: ByteRange?
        var uri: ByteRange
        var params: ByteRange
        var isAngleBracketed: Bool
        var isStar: Bool
        var whole: ByteRange
    }

    static func delimit(_ v: ByteView, _ r: ByteRange, limits: SIPParserLimits) -> Span? {
        let r = v.trimmed(r)
        let e = r.upper
        var i = r.lower
        guard i < e else { return nil }
        if e - i == 1 && v[i] == UInt8(ascii: "*") {
            return Span(displayName: nil, uri: r, params: ByteRange(e, e), isAngleBracketed: false, isStar: true, whole: r)
        }
        var display: ByteRange? = nil
        var uriRange: ByteRange
        var angle = false
        if v[i] == ASCII.quote {
            guard let q = v.skipQuoted(i, e) else { return nil }
            display = ByteRange(i, q)
            i = v.skipLWS(q, e)
            guard i < e, v[i] == ASCII.lt else { return nil }
        }
        // name-addr if a '<' comes before any ';' (outside quotes)
        var lt = i
        while lt < e && v[lt] != ASCII.lt && v[lt] != ASCII.semicolon && v[lt] != ASCII.quote { lt += 1 }
        if lt < e && v[lt] == ASCII.lt {
            if display == nil && lt > i {
                // Unquoted display name: tokens separated by LWS.
                let dn = ByteRange(i, v.trimEnd(i, lt))
                for k in dn.range where !(ASCII.isToken(v[k]) || ASCII.isLWS(v[k])) { return nil }
                display = dn
            }
            let gt = v.memfind(ASCII.gt, lt + 1, e)
            guard gt < e else { return nil }
            uriRange = ByteRange(lt + 1, gt)
            // No whitespace allowed just inside the brackets.
            if uriRange.isEmpty || ASCII.isLWS(v[uriRange.lower]) || ASCII.isLWS(v[uriRange.upper - 1]) { return nil }
            angle = true
            i = gt + 1
        } else {
            guard display == nil else { return nil }
            let us = i
            while i < e && v[i] != ASCII.semicolon && !ASCII.isLWS(v[i]) { i += 1 }
            uriRange = ByteRange(us, i)
            // An addr-spec must not carry URI headers or a comma (RFC 3261 §20).
            for k in uriRange.range where v[k] == ASCII.question || v[k] == ASCII.comma { return nil }
        }
        guard uriRange.count <= limits.maxURILength else { return nil }
        i = v.skipLWS(i, e)
        var params = ByteRange(e, e)
        if i < e {
            guard v[i] == ASCII.semicolon else { return nil }
            params = ByteRange(i + 1, e)
        }
        return Span(displayName: display, uri: uriRange, params: params, isAngleBracketed: angle, isStar: false, whole: r)
    }
}
