import SIPCore
import StarlingKEMI
import Logging

/// `KSR.textops` (REFERENCE §2.17). Searches read the received bytes; every change is a deferred edit
/// (invisible to later searches until `textopsx.msg_apply_changes`). Regexes are POSIX ERE,
/// case-insensitive, leftmost-longest, compiled once per worker.
enum TextopsModule {
    /// Runs `body` with a slice of the current message.
    static func withRange<R>(_ m: SIPMessage, _ r: ByteRange, _ body: (UnsafeRawBufferPointer) -> R) -> R {
        m.withBytes { b in body(UnsafeRawBufferPointer(rebasing: b[r.range])) }
    }

    static func whole(_ m: SIPMessage) -> ByteRange { ByteRange(0, m.count) }
    /// From the first header to the end (Kamailio's `get_header(msg)`..end).
    static func fromHeaders(_ m: SIPMessage) -> ByteRange { ByteRange(m.headersStart, m.count) }
    static func headersOnly(_ m: SIPMessage) -> ByteRange { ByteRange(m.headersStart, m.headersEnd) }

    /// First match of `re` in a range of the message, as absolute offsets.
    static func firstMatch(_ m: SIPMessage, _ re: POSIXRegex, in r: ByteRange) -> Range<Int>? {
        withRange(m, r) { re.match($0)?[0].map { ($0.lowerBound + r.lower)..<($0.upperBound + r.lower) } }
    }

    static func search(_ ctx: RouteContext, _ pattern: String?, in pick: (SIPMessage) -> ByteRange) -> Int {
        guard let m = ctx.message, let pattern else { return -1 }
        if pattern.isEmpty { return 1 }
        guard let re = ctx.regex(pattern) else { return -1 }
        return firstMatch(m, re, in: pick(m)) != nil ? 1 : -1
    }

    static func searchAppend(_ ctx: RouteContext, _ pattern: String?, _ text: [UInt8], in pick: (SIPMessage) -> ByteRange) -> Int {
        guard let m = ctx.message, let pattern, !pattern.isEmpty, let re = ctx.regex(pattern) else { return -1 }
        guard let r = firstMatch(m, re, in: pick(m)) else { return -1 }
        m.insertBytes(text, at: r.upperBound)
        return 1
    }

    static func replace(_ ctx: RouteContext, _ pattern: String?, _ text: [UInt8], all: Bool, in pick: (SIPMessage) -> ByteRange) -> Int {
        guard let m = ctx.message, let pattern, !pattern.isEmpty, let re = ctx.regex(pattern) else { return -1 }
        let r = pick(m)
        let found: [Range<Int>] = withRange(m, r) { b in
            if all { return re.allMatches(b).compactMap { $0[0] }.filter { !$0.isEmpty } }
            return re.match(b).flatMap { $0[0] }.map { [$0] } ?? []
        }
        guard !found.isEmpty else { return -1 }
        for f in found { m.replaceBytes(ByteRange(f.lowerBound + r.lower, f.upperBound + r.lower), with: text) }
        return 1
    }

    static func subst(_ ctx: RouteContext, _ expr: String?, in pick: (SIPMessage) -> ByteRange) -> Int {
        guard let m = ctx.message, let expr, let s = ctx.sedSubst(expr) else { return -1 }
        let r = pick(m)
        let reps = withRange(m, r) { s.run($0) }
        guard !reps.isEmpty else { return -1 }
        for (range, rep) in reps { m.replaceBytes(ByteRange(range.lowerBound + r.lower, range.upperBound + r.lower), with: rep) }
        return 1
    }

    static func replaceStr(_ ctx: RouteContext, _ old: [UInt8], _ new: [UInt8], _ mode: String, in pick: (SIPMessage) -> ByteRange) -> Int {
        guard let m = ctx.message, !old.isEmpty else { return -1 }
        let r = pick(m)
        let all = mode.first == "a"
        let found: [Int] = withRange(m, r) { b in
            var out: [Int] = []
            var i = 0
            while i + old.count <= b.count {
                if b[i] == old[0] && old.indices.allSatisfy({ b[i + $0] == old[$0] }) {
                    out.append(i)
                    if !all { break }
                    i += old.count
                } else { i += 1 }
            }
            return out
        }
        guard !found.isEmpty else { return -1 }
        for f in found { m.replaceBytes(ByteRange(r.lower + f, r.lower + f + old.count), with: new) }
        return 1
    }

    static func headerNameMatches(_ m: SIPMessage, _ re: POSIXRegex) -> [SIPHeaderField] {
        m.headerFields.filter { h in withRange(m, h.name) { re.matches($0) } }
    }

    /// Three-way compare with Kamailio's codes: 1 equal, -1 first greater, -2 first smaller.
    static func compare(_ a: [UInt8], _ b: [UInt8]) -> Int {
        if a == b { return 1 }
        return a.lexicographicallyPrecedes(b) ? -2 : -1
    }

    static func lower(_ b: [UInt8]) -> [UInt8] {
        b.map { $0 >= 65 && $0 <= 90 ? $0 + 32 : $0 }
    }

    static func find(_ hay: [UInt8], _ needle: [UInt8]) -> Int? {
        guard !needle.isEmpty, needle.count <= hay.count else { return nil }
        for i in 0...(hay.count - needle.count) where hay[i] == needle[0] {
            if hay[i..<(i + needle.count)].elementsEqual(needle) { return i }
        }
        return nil
    }

    static func listItems(_ list: String, _ sep: String) -> [Substring] {
        guard let s = sep.first else { return [list[...]] }
        return list.split(separator: s, omittingEmptySubsequences: false).map { $0.trimmingCharacters(" \t\r\n") }
    }

    static func exports() -> [KemiExport] {
        var out: [KemiExport] = []
        func add(_ name: String, _ params: [KemiParamType], _ ret: KemiReturnType = .int, compat: String? = nil,
                 _ fn: @escaping KemiFunction) {
            out.append(KemiExport("textops", name, params, returns: ret, compat: compat, fn))
        }
        // Searching
        add("search", [.str]) { ctx, a in .int(search(ctx, a.string(0), in: whole)) }
        add("search_body", [.str]) { ctx, a in
            guard let m = ctx.message, m.bodyRange.count > 0 else { return .int(-1) }
            return .int(search(ctx, a.string(0), in: { $0.bodyRange }))
        }
        add("search_hf", [.str, .str, .str]) { ctx, a in
            guard let m = ctx.message, let re = ctx.regex(a.str(1)) else { return .int(-1) }
            var list = m.headers(named: a.str(0))
            switch a.str(2).first {
            case "f": list = Array(list.prefix(1))
            case "l": list = Array(list.suffix(1))
            default: break
            }
            return .code(list.contains { h in withRange(m, h.value) { re.matches($0) } })
        }
        add("search_str", [.str, .str]) { ctx, a in
            let text = a.str(0), pattern = a.str(1)
            if pattern.isEmpty { return .int(2) }
            if text.isEmpty { return .int(-2) }
            guard let re = ctx.regex(pattern) else { return .int(-1) }
            return .code(re.matches(text))
        }
        add("search_append", [.str, .str]) { ctx, a in .int(searchAppend(ctx, a.string(0), a.byteArray(1), in: fromHeaders)) }
        add("search_append_body", [.str, .str]) { ctx, a in
            .int(searchAppend(ctx, a.string(0), a.byteArray(1), in: { $0.bodyRange }))
        }
        add("is_present_hf", [.str]) { ctx, a in
            guard let m = ctx.message, let n = a.string(0), !n.isEmpty else { return .int(-1) }
            return .code(!m.headers(named: n).isEmpty)
        }
        add("is_present_hf_re", [.str]) { ctx, a in
            guard let m = ctx.message, let re = ctx.regex(a.str(0)) else { return .int(-1) }
            return .code(!headerNameMatches(m, re).isEmpty)
        }
        // Substitutions
        add("subst", [.str]) { ctx, a in .int(subst(ctx, a.string(0), in: fromHeaders)) }
        add("subst_body", [.str]) { ctx, a in .int(subst(ctx, a.string(0), in: { $0.bodyRange })) }
        add("subst_uri", [.str]) { ctx, a in
            guard let m = ctx.message, m.isRequest, let s = ctx.sedSubst(a.str(0)) else { return .int(-1) }
            guard let new = s.apply(m.currentRequestURI), SIPURI(bytes: new) != nil else { return .int(-1) }
            m.setRequestURI(new)
            return .int(1)
        }
        add("subst_user", [.str]) { ctx, a in
            guard let m = ctx.message, m.isRequest, let s = ctx.sedSubst(a.str(0)),
                  let u = ctx.currentRequestURI else { return .int(-1) }
            guard let new = s.apply(Array((u.user ?? "").utf8)) else { return .int(-1) }
            return .code(PVEngine.set(ctx, .rU, .string(String(decoding: new, as: UTF8.self))))
        }
        add("subst_hf", [.str, .str, .str]) { ctx, a in
            guard let m = ctx.message, let s = ctx.sedSubst(a.str(1)) else { return .int(-1) }
            var list = m.headers(named: a.str(0))
            if a.str(2).first == "f" { list = Array(list.prefix(1)) } else if a.str(2).first == "l" { list = Array(list.suffix(1)) }
            var n = 0
            for h in list {
                let reps = withRange(m, h.value) { s.run($0) }
                for (r, rep) in reps {
                    m.replaceBytes(ByteRange(h.value.lower + r.lowerBound, h.value.lower + r.upperBound), with: rep)
                    n += 1
                }
            }
            return .code(n > 0)
        }
        // Removing headers
        add("remove_hf", [.str]) { ctx, a in
            guard let m = ctx.message, let n = a.string(0), !n.isEmpty else { return .int(-1) }
            for h in m.headers(named: n) { m.removeHeader(h) }
            return .int(1)
        }
        add("remove_hf_re", [.str], compat: "returns the number removed, -1 for none (as native remove_hf_re)") { ctx, a in
            guard let m = ctx.message, let re = ctx.regex(a.str(0)) else { return .int(-1) }
            let list = headerNameMatches(m, re)
            for h in list { m.removeHeader(h) }
            return .int(list.isEmpty ? -1 : list.count)
        }
        add("remove_hf_exp", [.str, .str], compat: "returns the number removed, -1 for none") { ctx, a in
            guard let m = ctx.message, let re = ctx.regex(a.str(0)) else { return .int(-1) }
            let skip = a.str(1).isEmpty ? nil : ctx.regex(a.str(1))
            var n = 0
            for h in headerNameMatches(m, re) {
                if let skip, withRange(m, h.name, { skip.matches($0) }) { continue }
                m.removeHeader(h); n += 1
            }
            return .int(n == 0 ? -1 : n)
        }
        add("remove_hf_idx", [.str, .int]) { ctx, a in
            guard let m = ctx.message else { return .int(-1) }
            let list = m.headers(named: a.str(0))
            var i = a.int(1)
            if i < 0 { i += list.count }
            guard i >= 0 && i < list.count else { return .int(-1) }
            m.removeHeader(list[i])
            return .int(1)
        }
        add("remove_hf_match", [.str, .str, .str], compat: "ops eq/ne/sw/in/re; returns the number removed, -1 for none") { ctx, a in
            guard let m = ctx.message else { return .int(-1) }
            let op = a.str(1), val = a.str(2)
            let re = op == "re" ? ctx.regex(val) : nil
            var n = 0
            for h in m.headers(named: a.str(0)) {
                let v = m.string(h.value)
                let hit: Bool
                switch op {
                case "eq": hit = v.lowercased() == val.lowercased()
                case "ne": hit = v.lowercased() != val.lowercased()
                case "sw": hit = v.lowercased().hasPrefix(val.lowercased())
                case "in": hit = v.lowercased().contains(val.lowercased())
                case "re": hit = re?.matches(v) ?? false
                default: hit = false
                }
                if hit { m.removeHeader(h); n += 1 }
            }
            return .int(n == 0 ? -1 : n)
        }
        // Replacing
        add("replace", [.str, .str]) { ctx, a in .int(replace(ctx, a.string(0), a.byteArray(1), all: false, in: fromHeaders)) }
        add("replace_all", [.str, .str]) { ctx, a in .int(replace(ctx, a.string(0), a.byteArray(1), all: true, in: fromHeaders)) }
        add("replace_body", [.str, .str]) { ctx, a in .int(replace(ctx, a.string(0), a.byteArray(1), all: false, in: { $0.bodyRange })) }
        add("replace_body_all", [.str, .str]) { ctx, a in .int(replace(ctx, a.string(0), a.byteArray(1), all: true, in: { $0.bodyRange })) }
        add("replace_body_atonce", [.str, .str]) { ctx, a in .int(replace(ctx, a.string(0), a.byteArray(1), all: true, in: { $0.bodyRange })) }
        add("replace_hdrs", [.str, .str]) { ctx, a in .int(replace(ctx, a.string(0), a.byteArray(1), all: false, in: headersOnly)) }
        add("replace_str", [.str, .str, .str]) { ctx, a in .int(replaceStr(ctx, a.byteArray(0), a.byteArray(1), a.str(2), in: fromHeaders)) }
        add("replace_body_str", [.str, .str, .str]) { ctx, a in .int(replaceStr(ctx, a.byteArray(0), a.byteArray(1), a.str(2), in: { $0.bodyRange })) }
        add("replace_hdrs_str", [.str, .str, .str]) { ctx, a in .int(replaceStr(ctx, a.byteArray(0), a.byteArray(1), a.str(2), in: headersOnly)) }
        // Bodies
        add("set_body", [.str, .str]) { ctx, a in
            guard let m = ctx.message, let b = a.bytes(0), b.count > 0 else { return .int(-1) }
            let ct = a.str(1)
            m.setBody(Array(b), contentType: ct.isEmpty ? nil : ct)
            return .int(1)
        }
        add("set_reply_body", [.str, .str]) { ctx, a in
            guard let b = a.bytes(0), b.count > 0, let ct = a.string(1), !ct.isEmpty else { return .int(-1) }
            ctx.replyBody = (Array(b), ct)
            return .int(1)
        }
        add("has_body", []) { ctx, _ in .code((ctx.message?.bodyRange.count ?? 0) > 0) }
        add("has_body_type", [.str]) { ctx, a in
            guard let m = ctx.message, m.bodyRange.count > 0 else { return .int(-1) }
            let want = a.str(0).lowercased()
            let ct = Multipart.mainType(m.headerValue(.contentType) ?? "application/sdp")
            if ct == want { return .int(1) }
            if ct.hasPrefix("multipart/"), let parts = Multipart.parts(m) {
                return .code(parts.contains { Multipart.mainType($0.contentType) == want })
            }
            return .int(-1)
        }
        add("filter_body", [.str]) { ctx, a in
            guard let m = ctx.message, let parts = Multipart.parts(m) else { return .int(-1) }
            let want = a.str(0).lowercased()
            guard let p = parts.first(where: { Multipart.mainType($0.contentType) == want }) else { return .int(-1) }
            m.setBody(p.body, contentType: p.contentType)
            return .int(1)
        }
        add("is_privacy", [.str]) { ctx, a in
            guard let m = ctx.message else { return .int(-1) }
            let want = a.str(0).lowercased()
            for h in m.headers(named: "Privacy") {
                for v in m.string(h.value).split(separator: ";") where v.trimmingCharacters(" \t").lowercased() == want {
                    return .int(1)
                }
            }
            return .int(-1)
        }
        add("is_audio_on_hold", []) { ctx, _ in
            guard let m = ctx.message, m.bodyRange.count > 0 else { return .int(-1) }
            var inAudio = false
            for raw in m.string(m.bodyRange).split(whereSeparator: { $0 == "\n" || $0 == "\r\n" }) {
                let l = raw.trimmingCharacters(" \t\r")
                if l.hasPrefix("m=") { inAudio = l.hasPrefix("m=audio") }
                if l == "a=sendonly" || l == "a=inactive" || (inAudio && l.hasPrefix("c=") && l.hasSuffix(" 0.0.0.0")) {
                    if inAudio || l.hasPrefix("c=") { return .int(1) }
                }
            }
            return .int(-1)
        }
        // Strings
        add("in_list", [.str, .str, .str]) { _, a in
            let s = a.str(0)
            return .code(listItems(a.str(1), a.str(2)).contains { !$0.isEmpty && $0 == s })
        }
        add("in_list_prefix", [.str, .str, .str]) { _, a in
            let s = a.str(0)
            return .code(listItems(a.str(1), a.str(2)).contains { !$0.isEmpty && s.utf8.starts(with: $0.utf8) })
        }
        add("cmp_str", [.str, .str]) { _, a in .int(compare(a.byteArray(0), a.byteArray(1))) }
        add("cmp_istr", [.str, .str]) { _, a in .int(compare(lower(a.byteArray(0)), lower(a.byteArray(1)))) }
        add("starts_with", [.str, .str]) { _, a in
            let s = a.byteArray(0), p = a.byteArray(1)
            guard s.count >= p.count else { return .int(-1) }
            return .int(compare(Array(s.prefix(p.count)), p))
        }
        add("ends_with", [.str, .str]) { _, a in
            let s = a.byteArray(0), p = a.byteArray(1)
            guard s.count >= p.count else { return .int(-1) }
            return .int(compare(Array(s.suffix(p.count)), p))
        }
        add("str_find", [.str, .str]) { _, a in .int(find(a.byteArray(0), a.byteArray(1)).map { $0 + 1 } ?? -1) }
        add("str_ifind", [.str, .str]) { _, a in
            .int(find(lower(a.byteArray(0)), lower(a.byteArray(1))).map { $0 + 1 } ?? -1)
        }
        add("regex_substring", [.str, .str, .int, .int, .str]) { ctx, a in
            guard let re = ctx.regex(a.str(1)), let pv = ctx.pvCache.spec(a.str(4)) else { return .int(-1) }
            let input = a.byteArray(0)
            let mindex = a.int(2), nmatch = max(a.int(3), 1)
            let found: [UInt8]? = input.withUnsafeBytes { b in
                for m in re.allMatches(b).prefix(nmatch) where mindex < m.count {
                    if let r = m[mindex] { return Array(b[r]) }
                }
                return nil
            }
            guard let found else { return .int(-1) }
            return .code(PVEngine.set(ctx, pv, .string(String(decoding: found, as: UTF8.self))))
        }
        // Multipart bodies
        add("get_body_part", [.str, .str]) { ctx, a in getBodyPart(ctx, a.str(0), a.str(1), raw: false) }
        add("get_body_part_raw", [.str, .str]) { ctx, a in getBodyPart(ctx, a.str(0), a.str(1), raw: true) }
        out += MultipartEdit.exports()
        // Native cfg functions that are not KEMI exports in 5.6 (hdr.* is the KEMI way).
        add("append_hf", [.str], compat: "extra: native cfg function, = hdr.append") { ctx, a in
            guard let m = ctx.message, let b = a.bytes(0), b.count > 0 else { return .int(-1) }
            m.addHeaderLine(Array(b), at: .last); return .int(1)
        }
        add("append_hf_hdr", [.str, .str], compat: "extra: native append_hf(txt, hdr), = hdr.append_after") { ctx, a in
            guard let m = ctx.message, let b = a.bytes(0), b.count > 0 else { return .int(-1) }
            if let f = m.headers(named: a.str(1)).first { m.addHeaderLine(Array(b), at: .after(f)) } else { m.addHeaderLine(Array(b), at: .last) }
            return .int(1)
        }
        add("insert_hf", [.str], compat: "extra: native cfg function, = hdr.insert") { ctx, a in
            guard let m = ctx.message, let b = a.bytes(0), b.count > 0 else { return .int(-1) }
            m.addHeaderLine(Array(b), at: .first); return .int(1)
        }
        add("insert_hf_hdr", [.str, .str], compat: "extra: native insert_hf(txt, hdr), = hdr.insert_before") { ctx, a in
            guard let m = ctx.message, let b = a.bytes(0), b.count > 0 else { return .int(-1) }
            if let f = m.headers(named: a.str(1)).first { m.addHeaderLine(Array(b), at: .before(f)) } else { m.addHeaderLine(Array(b), at: .first) }
            return .int(1)
        }
        add("append_to_reply", [.str], compat: "extra: native cfg function, = hdr.append_to_reply") { ctx, a in
            guard let b = a.bytes(0), b.count > 0 else { return .int(-1) }
            ctx.replyHeaders.append(contentsOf: b); return .int(1)
        }
        return out
    }

    static func getBodyPart(_ ctx: RouteContext, _ ctype: String, _ dpv: String, raw: Bool) -> KemiResult {
        guard let m = ctx.message, let pv = ctx.pvCache.spec(dpv) else { return .int(-1) }
        let want = ctype.lowercased()
        if let parts = Multipart.parts(m), let p = parts.first(where: { Multipart.mainType($0.contentType) == want }) {
            let v = raw ? p.raw : p.body
            return .code(PVEngine.set(ctx, pv, .string(String(decoding: v, as: UTF8.self))))
        }
        if Multipart.mainType(m.headerValue(.contentType) ?? "") == want {
            return .code(PVEngine.set(ctx, pv, .string(m.string(m.bodyRange))))
        }
        return .int(-1)
    }
}

extension RouteContext {
    func sedSubst(_ expr: String) -> SedSubst? {
        if let s = regexCache.subst(expr) { return s }
        logger.error("invalid substitution '\(expr)'")
        return nil
    }
}

extension StringProtocol {
    func trimmingCharacters(_ set: String) -> Substring {
        var s = self[...]
        while let f = s.first, set.contains(f) { s = s.dropFirst() }
        while let l = s.last, set.contains(l) { s = s.dropLast() }
        return Substring(s)
    }
}

/// Minimal multipart/* body splitting (RFC 2046): parts with their Content-Type.
enum Multipart {
    struct Part {
        var contentType: String
        var body: [UInt8]
        var raw: [UInt8]
        /// Where `body` is in the multipart body (offsets from its start).
        var bodyOffsets: Range<Int> = 0..<0
    }

    static func mainType(_ ct: String) -> String {
        String(ct.split(separator: ";", maxSplits: 1).first.map { $0.trimmingCharacters(" \t") } ?? "").lowercased()
    }

    static func parts(_ m: SIPMessage) -> [Part]? {
        guard let ct = m.headerValue(.contentType) else { return nil }
        return parts(m.bytes(m.bodyRange), contentType: ct)
    }

    static func boundary(_ ct: String) -> String? {
        guard mainType(ct).hasPrefix("multipart/") else { return nil }
        for p in ct.split(separator: ";").dropFirst() {
            let kv = p.split(separator: "=", maxSplits: 1)
            if kv.count == 2, kv[0].trimmingCharacters(" \t").lowercased() == "boundary" {
                return String(kv[1].trimmingCharacters(" \t\""))
            }
        }
        return nil
    }

    static func parts(_ body: [UInt8], contentType ct: String) -> [Part]? {
        guard mainType(ct).hasPrefix("multipart/") else { return nil }
        var boundary: String?
        for p in ct.split(separator: ";").dropFirst() {
            let kv = p.split(separator: "=", maxSplits: 1)
            if kv.count == 2, kv[0].trimmingCharacters(" \t").lowercased() == "boundary" {
                boundary = String(kv[1].trimmingCharacters(" \t\""))
            }
        }
        guard let boundary else { return nil }
        let delim = Array(("--" + boundary).utf8)
        var starts: [Int] = []
        var i = 0
        while let f = TextopsModule.find(Array(body[i...]), delim) {
            starts.append(i + f)
            i += f + delim.count
            if i >= body.count { break }
        }
        var out: [Part] = []
        for (k, s) in starts.enumerated() where k + 1 < starts.count {
            var ps = s + delim.count
            if ps + 1 < body.count && body[ps] == 0x0D { ps += 1 }
            if ps < body.count && body[ps] == 0x0A { ps += 1 }
            var pe = starts[k + 1]
            if pe > ps && body[pe - 1] == 0x0A { pe -= 1 }
            if pe > ps && body[pe - 1] == 0x0D { pe -= 1 }
            let raw = Array(body[ps..<max(ps, pe)])
            let sep = TextopsModule.find(raw, [0x0D, 0x0A, 0x0D, 0x0A])
            let head = sep.map { String(decoding: raw[..<$0], as: UTF8.self) } ?? ""
            let content = sep.map { Array(raw[($0 + 4)...]) } ?? raw
            let contentStart = ps + (sep.map { $0 + 4 } ?? 0)
            var ctype = "text/plain"
            for line in head.split(separator: "\r\n") {
                let kv = line.split(separator: ":", maxSplits: 1)
                if kv.count == 2, kv[0].lowercased() == "content-type" { ctype = String(kv[1].trimmingCharacters(" \t")) }
            }
            out.append(Part(contentType: ctype, body: content, raw: raw, bodyOffsets: contentStart..<(contentStart + content.count)))
        }
        return out
    }
}

extension TextopsModule: KSRModule {
    static let name = "textops"
    static let summary = "Regular-expression search and replace over the message, body and headers."
    static func exports(_ runtime: ModuleRuntime) -> [KemiExport] { exports() }
}
