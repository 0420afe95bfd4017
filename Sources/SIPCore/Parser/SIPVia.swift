/// One Via value (RFC 3261 §20.42): `SIP/2.0/UDP host:port;branch=z9hG4bK...;received=...;rport`.
public struct SIPVia: Sendable, Hashable {
    public var protocolName: ByteRange
    public var protocolVersion: ByteRange
    public var transport: ByteRange
    /// sent-by host (IPv6 with brackets).
    public var host: ByteRange
    /// sent-by port, if written.
    public var port: Int?
    /// Parameters (without the first `;`).
    public var params: ByteRange
    public var branch: ByteRange?
    public var received: ByteRange?
    /// The `rport` parameter: nil if absent, an empty range if present without value.
    public var rport: ByteRange?
    public var maddr: ByteRange?
    public var ttl: ByteRange?
    /// The whole value.
    public var whole: ByteRange

    static func parse(_ v: ByteView, _ r: ByteRange) -> SIPVia? {
        let e = r.upper
        var i = v.skipLWS(r.lower, e)
        let ps = i
        i = v.scanToken(i, e)
        guard i > ps else { return nil }
        let name = ByteRange(ps, i)
        i = v.skipLWS(i, e)
        guard i < e, v[i] == ASCII.slash else { return nil }
        i = v.skipLWS(i + 1, e)
        let vs = i
        i = v.scanToken(i, e)
        guard i > vs else { return nil }
        let version = ByteRange(vs, i)
        i = v.skipLWS(i, e)
        guard i < e, v[i] == ASCII.slash else { return nil }
        i = v.skipLWS(i + 1, e)
        let ts = i
        i = v.scanToken(i, e)
        guard i > ts else { return nil }
        let transport = ByteRange(ts, i)
        let afterTransport = i
        i = v.skipLWS(i, e)
        guard i > afterTransport else { return nil }  // LWS is required before sent-by
        let hs = i
        if i < e && v[i] == ASCII.lbracket {
            let rb = v.find(ASCII.rbracket, i, e)
            guard rb < e else { return nil }
            i = rb + 1
        } else {
            while i < e && ASCII.isHostChar(v[i]) { i += 1 }
        }
        guard i > hs else { return nil }
        let host = ByteRange(hs, i)
        i = v.skipLWS(i, e)
        var port: Int? = nil
        if i < e && v[i] == ASCII.colon {
            i = v.skipLWS(i + 1, e)
            let pst = i
            while i < e && ASCII.isDigit(v[i]) { i += 1 }
            guard let p = v.decimal(ByteRange(pst, i), max: 65535) else { return nil }
            port = Int(p)
            i = v.skipLWS(i, e)
        }
        var params = ByteRange(e, e)
        if i < e {
            guard v[i] == ASCII.semicolon else { return nil }
            params = ByteRange(i + 1, e)
        }
        var via = SIPVia(protocolName: name, protocolVersion: version, transport: transport, host: host, port: port,
                         params: params, branch: nil, received: nil, rport: nil, maddr: nil, ttl: nil, whole: r)
        var wellFormed = true
        Params.forEach(v, params, malformed: &wellFormed) { n, value in
            if v.equalsIgnoringCase(n, "branch") { if via.branch == nil { via.branch = value ?? ByteRange(n.upper, n.upper) } }
            else if v.equalsIgnoringCase(n, "received") { via.received = value }
            else if v.equalsIgnoringCase(n, "rport") { via.rport = value ?? ByteRange(n.upper, n.upper) }
            else if v.equalsIgnoringCase(n, "maddr") { via.maddr = value }
            else if v.equalsIgnoringCase(n, "ttl") { via.ttl = value }
        }
        return wellFormed ? via : nil
    }
}

/// The CSeq header: a sequence number up to 2^31-1 and a method.
public struct SIPCSeq: Sendable, Hashable {
    public var number: UInt32
    public var numberRange: ByteRange
    public var method: SIPMethod
    public var methodRange: ByteRange

    static func parse(_ v: ByteView, _ r: ByteRange) -> SIPCSeq? {
        let e = r.upper
        var i = v.skipLWS(r.lower, e)
        let ns = i
        while i < e && ASCII.isDigit(v[i]) { i += 1 }
        guard i > ns, i - ns <= 20, let n = v.decimal(ByteRange(ns, i), max: UInt64(Int32.max)) else { return nil }
        let numberRange = ByteRange(ns, i)
        let sp = i
        i = v.skipLWS(i, e)
        guard i > sp else { return nil }
        let ms = i
        i = v.scanToken(i, e)
        guard i > ms, v.skipLWS(i, e) == e else { return nil }
        return SIPCSeq(number: UInt32(n), numberRange: numberRange, method: SIPMethod.classify(v, ms, i),
                       methodRange: ByteRange(ms, i))
    }
}

/// Credentials or a challenge (Authorization, Proxy-Authorization, WWW-Authenticate, Proxy-Authenticate):
/// a scheme and comma-separated `name=value` parameters.
public struct SIPAuthValue: Sendable, Hashable {
    public var scheme: ByteRange
    public var params: ByteRange

    static func parse(_ v: ByteView, _ r: ByteRange) -> SIPAuthValue? {
        let e = r.upper
        var i = v.skipLWS(r.lower, e)
        let ss = i
        i = v.scanToken(i, e)
        guard i > ss else { return nil }
        let scheme = ByteRange(ss, i)
        let ps = v.skipLWS(i, e)
        guard ps == e || ps > i else { return nil }
        let value = SIPAuthValue(scheme: scheme, params: ByteRange(ps, e))
        var ok = true
        value.forEachParam(v) { n, _ in if n.isEmpty { ok = false } }
        return ok ? value : nil
    }

    /// Calls `body` for each auth-param (values keep their quotes).
    func forEachParam(_ v: ByteView, _ body: (ByteRange, ByteRange) -> Void) {
        ValueList.forEach(v, params, limit: 64) { item in
            let eq = v.find(ASCII.equals, item.lower, item.upper)
            let name = v.trimmed(ByteRange(item.lower, eq))
            let value = eq < item.upper ? v.trimmed(ByteRange(eq + 1, item.upper)) : ByteRange(item.upper, item.upper)
            body(name, value)
        }
    }
}

extension SIPMessage {
    /// Parses the first credentials or challenge of an auth header kind.
    public func authValue(_ field: SIPHeaderField) -> SIPAuthValue? { SIPAuthValue.parse(view, field.value) }

    /// The value of an auth-param (without quotes), e.g. `realm`, `nonce`, `response`.
    public func authParam(_ auth: SIPAuthValue, _ name: String) -> String? {
        var result: String? = nil
        let v = view
        var nb = Array(name.utf8)
        nb.withUnsafeMutableBytes { n in
            let p = n.baseAddress!.assumingMemoryBound(to: UInt8.self)
            auth.forEachParam(v) { pn, pv in
                guard result == nil, v.equalsIgnoringCase(pn.lower, pn.upper, p, n.count) else { return }
                result = unquote(pv)
            }
        }
        return result
    }

    /// Calls `body` for each auth-param of `auth` in order (values keep their quotes; `unquote` them):
    /// one pass over the header where several `authParam` calls would rescan it each.
    public func forEachAuthParam(_ auth: SIPAuthValue, _ body: (_ name: ByteRange, _ value: ByteRange) -> Void) {
        auth.forEachParam(view, body)
    }

    /// A range's text with surrounding quotes removed and `\x` escapes resolved.
    public func unquote(_ r: ByteRange) -> String {
        let v = view
        guard r.count >= 2, v[r.lower] == ASCII.quote, v[r.upper - 1] == ASCII.quote else { return string(r) }
        var out: [UInt8] = []
        var i = r.lower + 1
        while i < r.upper - 1 {
            if v[i] == ASCII.backslash && i + 1 < r.upper - 1 { i += 1 }
            out.append(v[i])
            i += 1
        }
        return String(decoding: out, as: UTF8.self)
    }
}
