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
        let r = v.trimmed(r)
        let e = r.upper
        var i = r.lower
        guard i < e else { return nil }
        if e - i == 1 && v[i] == UInt8(ascii: "*") {
            return SIPNameAddr(displayName: nil, uri: r, uriParts: SIPURIParts(scheme: .other, schemeRange: r, user: nil, password: nil, host: r, port: nil, portRange: nil, params: ByteRange(e, e), headers: nil, whole: r), params: ByteRange(e, e), tag: nil, isAngleBracketed: false, isStar: true, whole: r)
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
        guard uriRange.count <= limits.maxURILength, let parts = SIPURIParts.parse(v, uriRange) else { return nil }
        i = v.skipLWS(i, e)
        var params = ByteRange(e, e)
        if i < e {
            guard v[i] == ASCII.semicolon else { return nil }
            params = ByteRange(i + 1, e)
        }
        let tag = Params.find(v, params, "tag")
        return SIPNameAddr(displayName: display, uri: uriRange, uriParts: parts, params: params, tag: tag,
                           isAngleBracketed: angle, isStar: false, whole: r)
    }
}
