#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import StarlingKEMI
import Logging

/// A compiled POSIX extended regular expression, as Kamailio compiles its regex parameters:
/// `REG_EXTENDED|REG_ICASE|REG_NEWLINE`, leftmost-longest. Not Swift Regex (leftmost-first).
final class POSIXRegex {
    private var re = regex_t()
    /// Number of capture groups.
    let groups: Int

    init?(_ pattern: String, flags: Int32 = REG_EXTENDED | REG_ICASE | REG_NEWLINE) {
        guard regcomp(&re, pattern, flags) == 0 else { return nil }
        groups = Int(re.re_nsub)
    }

    deinit { regfree(&re) }

    /// Matches over bytes in place (`REG_STARTEND`: no copy, no NUL terminator needed). `notBOL` when
    /// the bytes do not start a line. Returns the group ranges (0 = whole match; nil for a group that
    /// did not take part), relative to `bytes`.
    func match(_ bytes: UnsafeRawBufferPointer, notBOL: Bool = false) -> [Range<Int>?]? {
        let n = groups + 1
        return withUnsafeTemporaryAllocation(of: regmatch_t.self, capacity: n) { pm -> [Range<Int>?]? in
            pm[0].rm_so = 0
            pm[0].rm_eo = regoff_t(bytes.count)
            var empty: CChar = 0
            let base = bytes.baseAddress.map { $0.assumingMemoryBound(to: CChar.self) } ?? withUnsafePointer(to: &empty) { $0 }
            let flags = REG_STARTEND | (notBOL ? REG_NOTBOL : 0)
            guard regexec(&re, base, n, pm.baseAddress!, flags) == 0 else { return nil }
            var out: [Range<Int>?] = []
            out.reserveCapacity(n)
            for i in 0..<n {
                let m = pm[i]
                out.append(m.rm_so < 0 ? nil : Int(m.rm_so)..<Int(m.rm_eo))
            }
            return out
        }
    }

    func matches(_ bytes: UnsafeRawBufferPointer) -> Bool { match(bytes) != nil }

    func matches(_ s: String) -> Bool {
        var s = s
        return s.withUTF8 { match(UnsafeRawBufferPointer($0)) != nil }
    }

    /// All non-overlapping matches (an empty match advances by one byte).
    func allMatches(_ bytes: UnsafeRawBufferPointer) -> [[Range<Int>?]] {
        var out: [[Range<Int>?]] = []
        var start = 0
        while start <= bytes.count {
            let sub = UnsafeRawBufferPointer(rebasing: bytes[start...])
            // a match may start a line after LF or CR, as Kamailio's replace_all loop decides
            guard let m = match(sub, notBOL: start > 0 && bytes[start - 1] != 0x0A && bytes[start - 1] != 0x0D) else { break }
            let shifted = m.map { $0.map { ($0.lowerBound + start)..<($0.upperBound + start) } }
            out.append(shifted)
            let whole = shifted[0]!
            start = whole.isEmpty ? whole.upperBound + 1 : whole.upperBound
        }
        return out
    }
}

/// Per-worker cache of compiled patterns, bounded: each distinct pattern is compiled once.
final class RegexCache {
    private var compiled: [String: POSIXRegex] = [:]
    private var failed: Set<String> = []
    private var substs: [String: SedSubst] = [:]
    static let limit = 1024

    func regex(_ pattern: String) -> POSIXRegex? {
        if let r = compiled[pattern] { return r }
        if failed.contains(pattern) { return nil }
        guard let r = POSIXRegex(pattern) else {
            if failed.count < Self.limit { failed.insert(pattern) }
            return nil
        }
        if compiled.count >= Self.limit { compiled.removeAll(keepingCapacity: true) }
        compiled[pattern] = r
        return r
    }

    func subst(_ expr: String) -> SedSubst? {
        if let s = substs[expr] { return s }
        guard let s = SedSubst(expr, cache: self) else { return nil }
        if substs.count >= Self.limit { substs.removeAll(keepingCapacity: true) }
        substs[expr] = s
        return s
    }
}

extension RouteContext {
    var regexCache: RegexCache { worker.local(RegexCache.self) { RegexCache() } }

    /// A compiled pattern (logged when invalid).
    func regex(_ pattern: String) -> POSIXRegex? {
        if let r = regexCache.regex(pattern) { return r }
        logger.error("invalid regular expression '\(pattern)'")
        return nil
    }
}

/// A sed-style substitution `/re/replacement/flags` (Kamailio's `subst_parser`): any delimiter (the
/// first character), `\1`..`\9` back-references, `\\` and escaped delimiters; flags `g` (all) and `i`
/// (case-insensitive; Kamailio compiles case-sensitively unless `i` is given).
final class SedSubst {
    enum Piece { case literal([UInt8]), group(Int) }
    let regex: POSIXRegex
    let pieces: [Piece]
    let global: Bool

    init?(_ expr: String, cache: RegexCache) {
        let b = Array(expr.utf8)
        guard b.count >= 4 else { return nil }
        let delim = b[0]
        var parts: [[UInt8]] = [[]]
        var i = 1
        while i < b.count {
            let c = b[i]
            if c == UInt8(ascii: "\\") && i + 1 < b.count {
                if b[i + 1] == delim { parts[parts.count - 1].append(delim); i += 2; continue }
                parts[parts.count - 1].append(c); parts[parts.count - 1].append(b[i + 1]); i += 2; continue
            }
            if c == delim { parts.append([]); i += 1; continue }
            parts[parts.count - 1].append(c)
            i += 1
        }
        guard parts.count == 3 else { return nil }
        let flags = parts[2]
        var g = false, icase = false
        for f in flags {
            switch f {
            case UInt8(ascii: "g"): g = true
            case UInt8(ascii: "i"): icase = true
            default: return nil
            }
        }
        var cflags = REG_EXTENDED | REG_NEWLINE
        if icase { cflags |= REG_ICASE }
        guard let re = POSIXRegex(String(decoding: parts[0], as: UTF8.self), flags: cflags) else { return nil }
        regex = re
        global = g
        var out: [Piece] = []
        var lit: [UInt8] = []
        let r = parts[1]
        var j = 0
        while j < r.count {
            if r[j] == UInt8(ascii: "\\") && j + 1 < r.count {
                let n = r[j + 1]
                if n >= UInt8(ascii: "0") && n <= UInt8(ascii: "9") {
                    if !lit.isEmpty { out.append(.literal(lit)); lit = [] }
                    out.append(.group(Int(n - UInt8(ascii: "0"))))
                } else if n == UInt8(ascii: "n") { lit.append(0x0A)
                } else if n == UInt8(ascii: "r") { lit.append(0x0D)
                } else if n == UInt8(ascii: "t") { lit.append(0x09)
                } else { lit.append(n) }
                j += 2
                continue
            }
            lit.append(r[j])
            j += 1
        }
        if !lit.isEmpty { out.append(.literal(lit)) }
        pieces = out
        _ = cache
    }

    /// The replacement text for one match.
    func replacement(_ bytes: UnsafeRawBufferPointer, _ m: [Range<Int>?]) -> [UInt8] {
        var out: [UInt8] = []
        for p in pieces {
            switch p {
            case .literal(let l): out.append(contentsOf: l)
            case .group(let g):
                if g < m.count, let r = m[g] { out.append(contentsOf: bytes[r]) }
            }
        }
        return out
    }

    /// Matches to replace: (range, replacement), in order.
    func run(_ bytes: UnsafeRawBufferPointer) -> [(Range<Int>, [UInt8])] {
        let ms = global ? regex.allMatches(bytes) : (regex.match(bytes).map { [$0] } ?? [])
        return ms.map { ($0[0]!, replacement(bytes, $0)) }
    }

    /// Applies to a whole string; nil when nothing matched.
    func apply(_ input: [UInt8]) -> [UInt8]? {
        input.withUnsafeBytes { b -> [UInt8]? in
            let reps = run(b)
            guard !reps.isEmpty else { return nil }
            var out: [UInt8] = []
            var pos = 0
            for (r, rep) in reps {
                out.append(contentsOf: b[pos..<r.lowerBound])
                out.append(contentsOf: rep)
                pos = r.upperBound
            }
            out.append(contentsOf: b[pos...])
            return out
        }
    }
}
