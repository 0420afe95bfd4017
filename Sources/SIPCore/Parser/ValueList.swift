/// Splits a header value at the commas that separate list elements (RFC 3261 §7.3.1), keeping commas
/// inside quoted strings and `<...>` URIs.
enum ValueList {
    static func forEach(_ v: ByteView, _ r: ByteRange, limit: Int, _ body: (ByteRange) throws -> Void) rethrows {
        var i = r.lower
        let e = r.upper
        var start = i
        var emitted = 0
        while i < e {
            let c = v[i]
            if c == ASCII.quote {
                i = v.skipQuoted(i, e) ?? e
                continue
            }
            if c == ASCII.lt {
                i = v.find(ASCII.gt, i, e) + 1
                continue
            }
            if c == ASCII.comma {
                let t = v.trimmed(ByteRange(start, i))
                if !t.isEmpty {
                    try body(t)
                    emitted += 1
                    if emitted >= limit { return }
                }
                start = i + 1
            }
            i += 1
        }
        let t = v.trimmed(ByteRange(start, min(i, e)))
        if !t.isEmpty { try body(t) }
    }

    /// The first non-empty element of a list.
    static func first(_ v: ByteView, _ r: ByteRange) -> ByteRange? {
        // Fast path: no quote or '<' before the first comma (the usual Via, Supported, Allow...).
        let comma = v.memfind(ASCII.comma, r.lower, r.upper)
        if v.memfind(ASCII.quote, r.lower, comma) == comma && v.memfind(ASCII.lt, r.lower, comma) == comma {
            let t = v.trimmed(ByteRange(r.lower, comma))
            if !t.isEmpty { return t }
        }
        var i = r.lower
        let e = r.upper
        var start = i
        while i < e {
            let c = v[i]
            if c == ASCII.comma {
                let t = v.trimmed(ByteRange(start, i))
                if !t.isEmpty { return t }
                start = i + 1
            } else if c == ASCII.quote {
                i = v.skipQuoted(i, e) ?? e
                continue
            } else if c == ASCII.lt {
                i = v.find(ASCII.gt, i, e) + 1
                continue
            }
            i += 1
        }
        let t = v.trimmed(ByteRange(start, min(i, e)))
        return t.isEmpty ? nil : t
    }

    /// Where the second non-empty element of a list starts; nil if it has one element at most (the
    /// same elements `forEach` gives). Relaying a response removes its top Via value up to there.
    static func secondStart(_ v: ByteView, _ r: ByteRange) -> Int? {
        let comma = v.memfind(ASCII.comma, r.lower, r.upper)
        guard comma < r.upper else { return nil }
        // Fast path: no quote or '<' before the first comma and a first element that is not empty (the
        // usual Via line): the second element starts after the commas and whitespace that follow.
        if v.memfind(ASCII.quote, r.lower, comma) == comma && v.memfind(ASCII.lt, r.lower, comma) == comma
            && !v.trimmed(ByteRange(r.lower, comma)).isEmpty {
            var i = comma + 1
            while i < r.upper && (ASCII.isLWS(v[i]) || v[i] == ASCII.comma) { i += 1 }
            return i < r.upper ? i : nil
        }
        var count = 0
        var second: Int? = nil
        forEach(v, r, limit: 2) { e in
            count += 1
            if count == 2 { second = e.lower }
        }
        return second
    }

    /// True if the value has an empty element (`a,,b`, a leading or trailing comma).
    static func hasEmptyElement(_ v: ByteView, _ r: ByteRange) -> Bool {
        var i = r.lower
        let e = r.upper
        var start = i
        while i < e {
            let c = v[i]
            if c == ASCII.quote { i = v.skipQuoted(i, e) ?? e; continue }
            if c == ASCII.lt { i = v.find(ASCII.gt, i, e) + 1; continue }
            if c == ASCII.comma {
                if v.trimmed(ByteRange(start, i)).isEmpty { return true }
                start = i + 1
            }
            i += 1
        }
        return v.trimmed(ByteRange(start, min(i, e))).isEmpty
    }
}

/// `;name=value` parameter lists (URI parameters, header parameters).
enum Params {
    /// Calls `body` for each parameter. `value` is nil for a parameter without `=`. Quoted values keep
    /// their quotes.
    static func forEach(_ v: ByteView, _ r: ByteRange, _ body: (ByteRange, ByteRange?) -> Void) {
        var ignored = true
        forEach(v, r, malformed: &ignored, body)
    }

    /// Same, and sets `wellFormed` to false on an empty parameter (`;;`) or junk after a value.
    static func forEach(_ v: ByteView, _ r: ByteRange, malformed wellFormed: inout Bool, _ body: (ByteRange, ByteRange?) -> Void) {
        var i = r.lower
        var expectName = true
        let e = r.upper
        while i < e {
            i = v.skipLWS(i, e)
            if i < e && v[i] == ASCII.semicolon {
                if expectName { wellFormed = false }
                expectName = true
                i += 1
                continue
            }
            guard i < e else { if expectName { wellFormed = false }; return }
            expectName = false
            let ns = i
            while i < e && v[i] != ASCII.equals && v[i] != ASCII.semicolon && !ASCII.isLWS(v[i]) { i += 1 }
            let name = ByteRange(ns, i)
            i = v.skipLWS(i, e)
            var value: ByteRange? = nil
            if i < e && v[i] == ASCII.equals {
                i = v.skipLWS(i + 1, e)
                let vs = i
                if i < e && v[i] == ASCII.quote {
                    i = v.skipQuoted(i, e) ?? e
                } else {
                    while i < e && v[i] != ASCII.semicolon && !ASCII.isLWS(v[i]) { i += 1 }
                }
                value = ByteRange(vs, i)
                i = v.skipLWS(i, e)
            }
            if !name.isEmpty { body(name, value) } else { wellFormed = false }
            // Anything else up to the next ';' is junk; skip it.
            if i < e && v[i] != ASCII.semicolon { wellFormed = false }
            while i < e && v[i] != ASCII.semicolon { i += 1 }
        }
    }

    static func find(_ v: ByteView, _ r: ByteRange, _ name: StaticString) -> ByteRange? {
        find(v, r, UnsafeRawBufferPointer(start: name.utf8Start, count: name.utf8CodeUnitCount))
    }

    /// The value of the first parameter named `name` (case-insensitive); an empty range at the end of the
    /// name if it has no value; nil if absent.
    static func find(_ v: ByteView, _ r: ByteRange, _ name: UnsafeRawBufferPointer) -> ByteRange? {
        var found: ByteRange? = nil
        let p = name.baseAddress?.assumingMemoryBound(to: UInt8.self)
        forEach(v, r) { n, value in
            guard found == nil, let p, v.equalsIgnoringCase(n.lower, n.upper, p, name.count) else { return }
            found = value ?? ByteRange(n.upper, n.upper)
        }
        return found
    }

    /// Whether the list is well formed: every parameter has a name, values are tokens, quoted strings
    /// or (for URI parameters) paramchars.
    static func isWellFormed(_ v: ByteView, _ r: ByteRange) -> Bool {
        var i = r.lower
        let e = r.upper
        while i < e {
            i = v.skipLWS(i, e)
            guard i < e else { return true }
            guard v[i] == ASCII.semicolon else { return false }
            i = v.skipLWS(i + 1, e)
            let ns = i
            i = v.scanToken(i, e)
            if i == ns { return false }
            i = v.skipLWS(i, e)
            if i < e && v[i] == ASCII.equals {
                i = v.skipLWS(i + 1, e)
                if i < e && v[i] == ASCII.quote {
                    guard let q = v.skipQuoted(i, e) else { return false }
                    i = q
                } else {
                    let vs = i
                    while i < e && (ASCII.isToken(v[i]) || v[i] == ASCII.colon || v[i] == ASCII.lbracket
                                    || v[i] == ASCII.rbracket) { i += 1 }
                    if i == vs { return false }
                }
            }
        }
        return true
    }
}
