extension SIPURI {
    /// RFC 3261 §19.1.4 equivalence: same scheme; userinfo equal (case-sensitive) after unescaping; host
    /// case-insensitive; same port (absent ≠ 5060); `user`, `ttl`, `method`, `maddr` and `transport`
    /// parameters equal when either side has them; other parameters compared only when both have them;
    /// URI headers must match in both directions.
    public func isEquivalent(to other: SIPURI) -> Bool {
        let a = self, b = other
        guard a.scheme == b.scheme else { return false }
        if a.scheme == .other {
            return a.schemeName.lowercased() == b.schemeName.lowercased()
                && Self.unescape(a.bytes, a.parts.host) == Self.unescape(b.bytes, b.parts.host)
        }
        if a.scheme == .tel {
            return Self.unescape(a.bytes, a.parts.user!).filter { !"-.()".utf8.contains($0) }
                == Self.unescape(b.bytes, b.parts.user!).filter { !"-.()".utf8.contains($0) }
                && Self.paramsEqual(a, b, special: ["phone-context", "isub", "ext"])
        }
        guard Self.unescapedOpt(a.bytes, a.parts.user) == Self.unescapedOpt(b.bytes, b.parts.user),
              Self.unescapedOpt(a.bytes, a.parts.password) == Self.unescapedOpt(b.bytes, b.parts.password),
              a.host.lowercased() == b.host.lowercased(), a.port == b.port
        else { return false }
        guard Self.paramsEqual(a, b, special: ["user", "ttl", "method", "maddr", "transport"]) else { return false }
        return Self.headersEqual(a, b)
    }

    /// Compares two URIs given as text (false if either does not parse).
    public static func equivalent(_ a: String, _ b: String) -> Bool {
        guard let x = SIPURI(a), let y = SIPURI(b) else { return false }
        return x.isEquivalent(to: y)
    }

    static func unescape(_ bytes: [UInt8], _ r: ByteRange) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(r.count)
        var i = r.lower
        while i < r.upper {
            if bytes[i] == ASCII.percent, i + 2 < r.upper, let h = ASCII.hexValue(bytes[i + 1]), let l = ASCII.hexValue(bytes[i + 2]) {
                out.append(h << 4 | l)
                i += 3
            } else {
                out.append(bytes[i])
                i += 1
            }
        }
        return out
    }

    static func unescapedOpt(_ bytes: [UInt8], _ r: ByteRange?) -> [UInt8]? { r.map { unescape(bytes, $0) } }

    /// Parameters as (lowercased unescaped name, lowercased unescaped value).
    func normalizedParams() -> [([UInt8], [UInt8]?)] {
        var out: [([UInt8], [UInt8]?)] = []
        bytes.withUnsafeBytes { b in
            Params.forEach(ByteView(b), parts.params) { n, v in
                out.append((Self.unescape(bytes, n).map(ASCII.lower), v.map { Self.unescape(bytes, $0).map(ASCII.lower) }))
            }
        }
        return out
    }

    static func paramsEqual(_ a: SIPURI, _ b: SIPURI, special: [String]) -> Bool {
        let pa = a.normalizedParams(), pb = b.normalizedParams()
        let specialBytes = special.map { Array($0.utf8) }
        for (name, value) in pa {
            if let other = pb.first(where: { $0.0 == name }) {
                if other.1 != value { return false }
            } else if specialBytes.contains(name) {
                return false
            }
        }
        for (name, _) in pb where specialBytes.contains(name) && !pa.contains(where: { $0.0 == name }) {
            return false
        }
        return true
    }

    static func headersEqual(_ a: SIPURI, _ b: SIPURI) -> Bool {
        func list(_ u: SIPURI) -> [[UInt8]] {
            guard let h = u.parts.headers else { return [] }
            var out: [[UInt8]] = []
            var start = h.lower
            for i in h.lower...h.upper where i == h.upper || u.bytes[i] == ASCII.ampersand {
                let one = unescape(u.bytes, ByteRange(start, i))
                if let eq = one.firstIndex(of: ASCII.equals) {
                    out.append(one[..<eq].map(ASCII.lower) + one[eq...])
                } else { out.append(one.map(ASCII.lower)) }
                start = i + 1
            }
            return out.sorted { $0.lexicographicallyPrecedes($1) }
        }
        return list(a) == list(b)
    }
}

extension SIPMessage {
    /// The bytes of a range with `%HH` escapes resolved (a NUL stays a NUL).
    public func unescaped(_ r: ByteRange) -> [UInt8] {
        withBytes { b in SIPURI.unescape(Array(b[r.lower..<r.upper]), ByteRange(0, r.count)) }
    }
}
