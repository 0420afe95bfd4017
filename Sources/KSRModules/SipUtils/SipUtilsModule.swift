#if canImport(Glibc)
import Glibc
#endif
import SIPCore
import StarlingKEMI
import Logging

/// `KSR.siputils` (REFERENCE §2.14, the 5.6 set, plus `tel2sip` and `is_uri_user_e164`).
enum SipUtilsModule {
    static func isDigit(_ c: UInt8) -> Bool { c >= 0x30 && c <= 0x39 }
    static func isAlnum(_ c: UInt8) -> Bool { isDigit(c) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) }

    /// Rebuilds a URI with its parameter list replaced (headers kept).
    static func withParams(_ u: SIPURI, _ params: String) -> [UInt8] {
        let b = u.bytes, p = u.parts
        let paramStart = p.params.isEmpty ? (p.headers.map { $0.lower - 1 } ?? b.count) : p.params.lower - 1
        var out = Array(b[..<paramStart])
        out.append(contentsOf: params.utf8)
        if let h = p.headers { out.append(UInt8(ascii: "?")); out.append(contentsOf: b[h.range]) }
        return out
    }

    static func paramString(_ list: [(name: String, value: String?)]) -> String {
        list.map { ";" + $0.name + ($0.value.map { "=" + $0 } ?? "") }.joined()
    }

    /// The R-URI's parameters, or nil (reply / no URI).
    static func ruri(_ ctx: RouteContext) -> SIPURI? { ctx.currentRequestURI }

    /// True if `s` is `+` followed by digits, 3..17 characters (Kamailio's `e164_max_len` default).
    static func isE164(_ s: Substring) -> Bool {
        let b = Array(s.utf8)
        guard b.count >= 3 && b.count <= 17, b[0] == UInt8(ascii: "+") else { return false }
        return b.dropFirst().allSatisfy(isDigit)
    }

    // MARK: base64url (contact_param_*)
    static let b64 = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)

    static func base64url(_ data: [UInt8]) -> String {
        var out: [UInt8] = []
        var i = 0
        while i < data.count {
            let n = min(3, data.count - i)
            var v = UInt32(data[i]) << 16
            if n > 1 { v |= UInt32(data[i + 1]) << 8 }
            if n > 2 { v |= UInt32(data[i + 2]) }
            for k in 0..<(n + 1) { out.append(b64[Int((v >> UInt32(18 - 6 * k)) & 63)]) }
            i += 3
        }
        return String(decoding: out, as: UTF8.self)
    }

    static func unbase64url(_ s: String) -> [UInt8]? {
        var vals: [UInt32] = []
        for c in s.utf8 where c != UInt8(ascii: "=") {
            guard let i = b64.firstIndex(of: c == UInt8(ascii: "+") ? UInt8(ascii: "-") : c == UInt8(ascii: "/") ? UInt8(ascii: "_") : c) else { return nil }
            vals.append(UInt32(i))
        }
        var out: [UInt8] = []
        var i = 0
        while i < vals.count {
            let n = min(4, vals.count - i)
            guard n >= 2 else { return nil }
            var v: UInt32 = 0
            for k in 0..<4 { v = v << 6 | (k < n ? vals[i + k] : 0) }
            out.append(UInt8(v >> 16 & 0xFF))
            if n > 2 { out.append(UInt8(v >> 8 & 0xFF)) }
            if n > 3 { out.append(UInt8(v & 0xFF)) }
            i += 4
        }
        return out
    }

    /// Contact URIs of the message (not `*`).
    static func contactURIs(_ m: SIPMessage) -> [ByteRange] {
        m.values(.contact).compactMap { v in m.parseNameAddr(v).flatMap { $0.isStar ? nil : $0.uri } }
    }

    /// RFC 1123 date (`Sun, 22 Nov 2026 19:55:44 GMT`) to seconds since the epoch.
    static func parseDate(_ s: String) -> Int? {
        let f = s.split(whereSeparator: { $0 == " " || $0 == "," }).map(String.init)
        guard f.count == 6, f[5] == "GMT", let day = Int(f[1]), let year = Int(f[3]) else { return nil }
        let months = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
        guard let mon = months.firstIndex(of: f[2].lowercased()) else { return nil }
        let hms = f[4].split(separator: ":").compactMap { Int($0) }
        guard hms.count == 3 else { return nil }
        var tmv = tm()
        tmv.tm_year = Int32(year - 1900); tmv.tm_mon = Int32(mon); tmv.tm_mday = Int32(day)
        tmv.tm_hour = Int32(hms[0]); tmv.tm_min = Int32(hms[1]); tmv.tm_sec = Int32(hms[2])
        return timegm(&tmv)
    }

    /// Reverses `encode_contact`: `sip:prefix*user*pw*host*port*proto@public_ip;rest`.
    static func decodeURI(_ b: [UInt8]) -> [UInt8]? {
        guard let colon = b.firstIndex(of: UInt8(ascii: ":")), let at = b[colon...].firstIndex(of: UInt8(ascii: "@")) else { return nil }
        let fields = b[(colon + 1)..<at].split(separator: UInt8(ascii: "*"), omittingEmptySubsequences: false).map { Array($0) }
        guard fields.count == 6, !fields[3].isEmpty, !(fields[2].count > 0 && fields[1].isEmpty) else { return nil }
        let restStart = b[at...].firstIndex(where: { $0 == UInt8(ascii: ";") || $0 == UInt8(ascii: ">") }) ?? b.count
        var out = Array(b[...colon])
        if !fields[1].isEmpty {
            out += fields[1]
            if !fields[2].isEmpty { out.append(UInt8(ascii: ":")); out += fields[2] }
            out.append(UInt8(ascii: "@"))
        }
        out += fields[3]
        if !fields[4].isEmpty { out.append(UInt8(ascii: ":")); out += fields[4] }
        if !fields[5].isEmpty { out += Array(";transport=".utf8); out += fields[5] }
        out += b[restStart...]
        return out
    }

    static func exports() -> [KemiExport] {
        var out: [KemiExport] = []
        func add(_ name: String, _ params: [KemiParamType] = [], _ ret: KemiReturnType = .int, compat: String? = nil,
                 _ fn: @escaping KemiFunction) {
            out.append(KemiExport("siputils", name, params, returns: ret, compat: compat, fn))
        }
        add("has_totag") { ctx, _ in .code(ctx.message?.toTag.map { !$0.isEmpty } ?? false) }
        add("is_request") { ctx, _ in .code(ctx.message?.isRequest ?? false) }
        add("is_reply") { ctx, _ in .code(ctx.message.map { !$0.isRequest } ?? false) }
        @Sendable func firstHop(_ ctx: RouteContext) -> KemiResult {
            guard let m = ctx.message else { return .int(-1) }
            if m.isRequest { return .code(m.values(.via).count <= 1) }
            // reply: the first Record-Route is ours
            guard let rr = m.firstValue(.recordRoute), let na = m.parseNameAddr(rr) else { return .int(-1) }
            return .code(CoreModule.isMyself(ctx, m.uri(na.uri), defaultPort: true))
        }
        add("is_first_hop") { ctx, _ in firstHop(ctx) }
        add("is_first_hop_mode", [.int]) { ctx, _ in firstHop(ctx) }
        add("is_uri", [.str]) { _, a in .code(SIPURI(a.str(0)) != nil) }
        add("is_user", [.str]) { ctx, a in
            guard let user = AuthCore.authorizedUser(ctx), !user.isEmpty, user == a.str(0) else { return .int(-1) }
            return .int(1)
        }
        add("is_tel_number", [.str]) { _, a in
            // optional '+' that must be followed by 1-9, then digits only
            var b = a.byteArray(0)[...]
            if b.first == UInt8(ascii: "+") {
                b = b.dropFirst()
                guard let f = b.first, f >= UInt8(ascii: "1") && f <= UInt8(ascii: "9") else { return .int(-2) }
            }
            return .int(!b.isEmpty && b.allSatisfy(isDigit) ? 1 : -2)
        }
        add("is_numeric", [.str]) { _, a in
            let b = a.byteArray(0)
            return .int(!b.isEmpty && b.allSatisfy(isDigit) ? 1 : -2)
        }
        add("is_alphanum", [.str]) { _, a in
            let b = a.byteArray(0)
            if b.isEmpty { return .int(-2) }
            return .int(b.allSatisfy(isAlnum) ? 1 : -3)
        }
        add("is_alphanumex", [.str, .str]) { _, a in
            let b = a.byteArray(0), extra = a.byteArray(1)
            if b.isEmpty { return .int(-2) }
            return .int(b.allSatisfy { isAlnum($0) || extra.contains($0) } ? 1 : -3)
        }
        // R-URI parameters
        add("uri_param", [.str]) { ctx, a in
            guard let u = ruri(ctx) else { return .int(-1) }
            return .code(u.param(a.str(0)) == "")
        }
        add("uri_param_value", [.str, .str]) { ctx, a in
            guard let u = ruri(ctx) else { return .int(-1) }
            return .code(u.param(a.str(0)) == a.str(1))
        }
        add("uri_param_any", [.str]) { ctx, a in
            guard let u = ruri(ctx) else { return .int(-1) }
            return .code(u.param(a.str(0)) != nil)
        }
        add("uri_param_rm", [.str]) { ctx, a in
            guard let m = ctx.message, let u = ruri(ctx) else { return .int(-1) }
            let name = a.str(0).lowercased()
            let kept = u.params.filter { $0.name.lowercased() != name }
            // nothing to remove is success, as in Kamailio
            guard kept.count != u.params.count else { return .int(1) }
            m.setRequestURI(withParams(u, paramString(kept)))
            return .int(1)
        }
        add("add_uri_param", [.str]) { ctx, a in
            guard let p = a.string(0), !p.isEmpty else { return .int(1) }
            guard let m = ctx.message, let u = ruri(ctx) else { return .int(-1) }
            if u.parts.headers == nil {
                m.setRequestURI(u.bytes + [UInt8(ascii: ";")] + Array(p.utf8))
            } else {
                m.setRequestURI(withParams(u, (u.paramsString.isEmpty ? "" : ";" + u.paramsString) + ";" + p))
            }
            return .int(1)
        }
        add("tel2sip", [.str, .str, .str], compat: "extra: native cfg function; result stored in the PV named by the 3rd argument") { ctx, a in
            // tel2sip(uri, hostpart, dst_pv): 2 when the URI is not tel: (nothing stored);
            // tel:+1-201;p=v -> sip:+1201;p=v@hostpart;user=phone, lower-cased, separators removed
            // before the first ';'
            let uri = a.str(0)
            guard uri.utf8.count >= 4, uri.lowercased().hasPrefix("tel:") else { return .int(2) }
            guard let pv = ctx.pvCache.spec(a.str(2)) else { return .int(-1) }
            var number = ""
            var inParams = false
            for c in uri.dropFirst(4) {
                if c == ";" { inParams = true }
                if !inParams && "-.()".contains(c) { continue }
                number.append(contentsOf: c.lowercased())
            }
            let sip = "sip:" + number + "@" + a.str(1) + ";user=phone"
            return .code(PVEngine.set(ctx, pv, .string(sip)))
        }
        add("is_uri_user_e164", [.str], compat: "extra: native cfg function") { _, a in
            guard let u = SIPURI(a.str(0)), let user = u.user else { return .int(-1) }
            return .code(isE164(user[...]))
        }
        add("options_reply") { ctx, _ in
            guard let m = ctx.message, m.isRequest, m.method == .options, let u = ruri(ctx), u.user == nil else { return .int(-1) }
            let extra = "Allow: INVITE, ACK, CANCEL, OPTIONS, BYE\r\nAccept: */*\r\nAccept-Language: en\r\n"
            return .int(MessageTools.sendReply(ctx, status: 200, reason: "OK", extraHeaders: Array(extra.utf8)))
        }
        // Contact mangling (the old mangler layout): sip:user:pw@host:port;transport=t becomes
        // sip:prefix*user*pw*host*port*t@public_ip; other URI parameters are dropped, as in Kamailio.
        add("encode_contact", [.str, .str]) { ctx, a in
            guard let m = ctx.message, let ip = a.string(1), !ip.isEmpty else { return .int(-1) }
            let list = contactURIs(m)
            guard !list.isEmpty else { return .int(-1) }
            for r in list {
                guard let u = m.uri(r), u.scheme == .sip || u.scheme == .sips else { return .int(-1) }
                let fields = [a.str(0), u.user ?? "", u.password ?? "", u.host, u.port.map { String($0) } ?? "", u.transport ?? ""]
                m.replaceBytes(r, with: Array((u.schemeName + ":" + fields.joined(separator: "*") + "@" + ip).utf8))
            }
            return .int(1)
        }
        add("decode_contact") { ctx, _ in
            guard let m = ctx.message, m.isRequest, let dec = decodeURI(m.currentRequestURI) else { return .int(-1) }
            m.setRequestURI(dec)
            return .int(1)
        }
        add("decode_contact_header") { ctx, _ in
            guard let m = ctx.message else { return .int(-1) }
            let list = contactURIs(m)
            guard !list.isEmpty else { return .int(-1) }
            for r in list {
                guard let dec = decodeURI(m.bytes(r)) else { return .int(-1) }
                m.replaceBytes(r, with: dec)
            }
            return .int(1)
        }
        add("contact_param_encode", [.str, .str], compat: "parameter value is base64url without padding") { ctx, a in
            // Contact URI -> <saddr;pname=base64url(original)>
            guard let m = ctx.message, let saddr = a.string(1), SIPURI(saddr) != nil, !a.str(0).isEmpty else { return .int(-1) }
            let list = contactURIs(m)
            guard !list.isEmpty else { return .int(-1) }
            for r in list {
                let enc = saddr + ";" + a.str(0) + "=" + base64url(m.bytes(r))
                m.replaceBytes(r, with: Array(enc.utf8))
            }
            return .int(1)
        }
        add("contact_param_decode", [.str]) { ctx, a in
            guard let m = ctx.message else { return .int(-1) }
            var n = 0
            for r in contactURIs(m) {
                guard let u = m.uri(r), let v = u.param(a.str(0)), let dec = unbase64url(v), SIPURI(bytes: dec) != nil else { continue }
                m.replaceBytes(r, with: dec); n += 1
            }
            return .code(n > 0)
        }
        add("contact_param_decode_ruri", [.str]) { ctx, a in
            guard let m = ctx.message, let u = ruri(ctx), let v = u.param(a.str(0)), let dec = unbase64url(v),
                  SIPURI(bytes: dec) != nil else { return .int(-1) }
            m.setRequestURI(dec)
            return .int(1)
        }
        add("contact_param_rm", [.str]) { ctx, a in
            guard let m = ctx.message else { return .int(-1) }
            let name = a.str(0).lowercased()
            var n = 0
            for r in contactURIs(m) {
                guard let u = m.uri(r) else { continue }
                let kept = u.params.filter { $0.name.lowercased() != name }
                if kept.count != u.params.count { m.replaceBytes(r, with: withParams(u, paramString(kept))); n += 1 }
            }
            return .code(n > 0)
        }
        add("hdr_date_check", [.int]) { ctx, a in
            guard let m = ctx.message, let d = m.headerValue(.date) else { return .int(-1) }
            guard let t = parseDate(d) else { return .int(-1) }
            return .code(abs(Clock.nowSeconds() - t) <= a.int(0))
        }
        add("cmp_uri", [.str, .str]) { _, a in
            guard let x = SIPURI(a.str(0)), let y = SIPURI(a.str(1)) else { return .int(-2) }
            return .int(x.isEquivalent(to: y) ? 1 : -1)
        }
        add("cmp_aor", [.str, .str]) { _, a in
            guard let x = SIPURI(a.str(0)), let y = SIPURI(a.str(1)) else { return .int(-2) }
            let same = x.user == y.user && x.host.lowercased() == y.host.lowercased()
                && (x.port ?? 5060) == (y.port ?? 5060)
            return .int(same ? 1 : -1)
        }
        add("cmp_hdr_name", [.str, .str]) { _, a in
            let x = a.str(0), y = a.str(1)
            guard !x.isEmpty, !y.isEmpty else { return .int(-2) }
            let kx = SIPHeaderKind.classify(name: x), ky = SIPHeaderKind.classify(name: y)
            if kx != .other || ky != .other { return .int(kx == ky ? 1 : -1) }
            return .int(x.lowercased() == y.lowercased() ? 1 : -1)
        }
        add("is_gruu", [], compat: "checks the R-URI: 1 public GRUU (gr=value), 2 temporary GRUU (gr without value)") { ctx, _ in
            guard let u = ruri(ctx), let gr = u.param("gr") else { return .int(-1) }
            return .int(gr.isEmpty ? 2 : 1)
        }
        return out
    }
}

extension SipUtilsModule: KSRModule {
    static let name = "siputils"
    static let summary = "SIP helpers: URI and number checks, OPTIONS replies, contact encoding."
    static func exports(_ runtime: ModuleRuntime) -> [KemiExport] { exports() }
}
