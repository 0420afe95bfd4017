#if canImport(Glibc)
import Glibc
#endif
import Synchronization
import SIPCore
import SIPTransport
import StarlingKEMI
import Logging

/// `$shv(name)`: variables shared by all workers of the process (Kamailio keeps them in shared memory).
final class SharedVariables: Sendable {
    /// The process's shared variables.
    static let process = SharedVariables()
    private let storage = Mutex<[String: KemiValue]>([:])

    func get(_ name: String) -> KemiValue { storage.withLock { $0[name] ?? .null } }
    func set(_ name: String, _ value: KemiValue) { storage.withLock { $0[name] = value } }
}

/// `$vn(name)` values of one worker (null until assigned; persist between messages like `$var`).
final class NullableVariables {
    var values: [String: KemiValue] = [:]
}

/// Which htable cell pseudo-variable.
enum HtableCellPV: String, Hashable {
    case sht, shtex, shtinc, shtdec, shtcn, shtcv
}

/// A transformation applied to a pseudo-variable's value: `$(ru{uri.user})`.
enum Transformation: Hashable {
    case sLen, sInt, sToLower, sToUpper, sSubstr(Int, Int), sStrip(Int), sStripTail(Int)
    case uriUser, uriHost, uriPort, uriParams, uriTransport, uriParam(String)
    case paramValue(String, Character)
    case paramCount(Character)
    case paramIn(String, Character), paramValueAt(Int, Character), paramName(Int, Character)
    case nameaddrURI, nameaddrName, nameaddrLen
    case tobodyURI, tobodyTag, tobodyDisplay, tobodyUser, tobodyHost, tobodyParams
    case lineCount, lineAt(Int), lineSw(String)

    static func parse(_ text: Substring) -> Transformation? {
        let parts = text.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
        let args = parts.dropFirst()
        switch parts[0] {
        case "s.len": return .sLen
        case "s.int": return .sInt
        case "s.tolower": return .sToLower
        case "s.toupper": return .sToUpper
        case "s.substr":
            guard args.count == 2, let a = Int(args[args.startIndex]), let b = Int(args[args.startIndex + 1]) else { return nil }
            return .sSubstr(a, b)
        case "s.strip": return Int(args.first ?? "").map { .sStrip($0) }
        case "s.striptail": return Int(args.first ?? "").map { .sStripTail($0) }
        case "uri.user": return .uriUser
        case "uri.host": return .uriHost
        case "uri.port": return .uriPort
        case "uri.params": return .uriParams
        case "uri.transport": return .uriTransport
        case "uri.param": return args.first.map { .uriParam($0) }
        case "param.value":
            guard let name = args.first else { return nil }
            return .paramValue(name, args.dropFirst().first?.first ?? ";")
        case "param.count": return .paramCount(args.first?.first ?? ";")
        case "param.in":
            guard let name = args.first else { return nil }
            return .paramIn(name, args.dropFirst().first?.first ?? ";")
        case "param.valueat", "param.name":
            guard let n = args.first.flatMap({ Int($0) }) else { return nil }
            let sep = args.dropFirst().first?.first ?? ";"
            return parts[0] == "param.name" ? .paramName(n, sep) : .paramValueAt(n, sep)
        case "nameaddr.uri": return .nameaddrURI
        case "nameaddr.name": return .nameaddrName
        case "nameaddr.len": return .nameaddrLen
        case "tobody.uri": return .tobodyURI
        case "tobody.tag": return .tobodyTag
        case "tobody.display": return .tobodyDisplay
        case "tobody.user": return .tobodyUser
        case "tobody.host": return .tobodyHost
        case "tobody.params": return .tobodyParams
        case "line.count": return .lineCount
        case "line.at": return args.first.flatMap { Int($0) }.map { .lineAt($0) }
        case "line.sw": return args.first.map { .lineSw($0) }
        default: return nil
        }
    }

    /// Applies to a value; nil = null.
    func apply(_ v: String) -> PVValue {
        switch self {
        case .sLen: return .int(v.utf8.count)
        case .sInt: return .int(Int(v.trimmingSpaces.prefix { $0.isNumber || $0 == "-" }) ?? 0)
        case .sToLower: return .string(v.lowercased())
        case .sToUpper: return .string(v.uppercased())
        case .sSubstr(let off, let len):
            let b = Array(v.utf8)
            var start = off < 0 ? b.count + off : off
            start = max(0, min(start, b.count))
            let end = len == 0 ? b.count : (len < 0 ? b.count + len : min(b.count, start + len))
            return .string(end > start ? String(decoding: b[start..<end], as: UTF8.self) : "")
        case .sStrip(let n): return .string(String(v.dropFirst(max(0, n))))
        case .sStripTail(let n): return .string(String(v.dropLast(max(0, n))))
        case .uriUser, .uriHost, .uriPort, .uriParams, .uriTransport, .uriParam:
            guard let u = SIPURI(v) else { return .null }
            switch self {
            case .uriUser: return .string(u.user ?? "")
            case .uriHost: return .string(u.host)
            case .uriPort: return u.port.map { .string(String($0)) } ?? .string("")
            case .uriParams: return .string(u.paramsString)
            case .uriTransport: return .string(u.transport ?? "")
            case .uriParam(let n): return u.param(n).map { .string($0) } ?? .null
            default: return .null
            }
        case .paramValue(let name, let sep):
            for p in v.split(separator: sep) {
                let kv = p.split(separator: "=", maxSplits: 1)
                if kv.first.map({ $0.trimmingCharacters(" \t").lowercased() }) == name.lowercased() {
                    return .string(kv.count > 1 ? String(kv[1].trimmingCharacters(" \t")) : "")
                }
            }
            return .null
        case .paramCount(let sep): return .int(v.split(separator: sep).count)
        case .paramIn(let name, let sep):
            let found = v.split(separator: sep).contains { p in
                p.split(separator: "=", maxSplits: 1).first.map { $0.trimmingCharacters(" \t").lowercased() } == name.lowercased()
            }
            return .int(found ? 1 : 0)
        case .paramValueAt(let n, let sep), .paramName(let n, let sep):
            let ps = v.split(separator: sep)
            let i = n < 0 ? ps.count + n : n
            guard i >= 0, i < ps.count else { return .null }
            let kv = ps[i].split(separator: "=", maxSplits: 1)
            if case .paramName = self { return .string(kv.first.map { String($0.trimmingCharacters(" \t")) } ?? "") }
            return .string(kv.count > 1 ? String(kv[1].trimmingCharacters(" \t")) : "")
        case .nameaddrURI, .nameaddrName, .nameaddrLen:
            guard !v.isEmpty else { return .null }
            let na = NameAddrText(v)
            switch self {
            case .nameaddrURI: return .string(na.uri)
            case .nameaddrName: return .string(na.name)
            default: return .int(na.length)
            }
        case .tobodyURI, .tobodyTag, .tobodyDisplay, .tobodyUser, .tobodyHost, .tobodyParams:
            guard !v.isEmpty else { return .null }
            let na = NameAddrText(v)
            switch self {
            case .tobodyURI: return .string(na.uri)
            case .tobodyDisplay: return .string(na.name)
            case .tobodyParams: return .string(na.params)
            case .tobodyTag:
                for p in na.params.split(separator: ";") {
                    let kv = p.split(separator: "=", maxSplits: 1)
                    if kv.first.map({ $0.trimmingCharacters(" \t").lowercased() }) == "tag" {
                        return .string(kv.count > 1 ? String(kv[1].trimmingCharacters(" \t")) : "")
                    }
                }
                return .string("")
            default:
                guard let u = SIPURI(na.uri) else { return .null }
                return .string(self == .tobodyUser ? (u.user ?? "") : u.host)
            }
        case .lineCount:
            guard !v.isEmpty else { return .null }
            let b = v.utf8
            var n = b.reduce(0) { $0 + ($1 == 10 ? 1 : 0) }
            if b.last != 10 { n += 1 }
            return .int(n)
        case .lineAt(let n):
            guard !v.isEmpty else { return .null }
            var lines = v.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
            if lines.last == "" { lines.removeLast() }
            let i = n < 0 ? lines.count + n : n
            return .string(i >= 0 && i < lines.count ? lines[i] : "")
        case .lineSw(let prefix):
            guard !v.isEmpty else { return .null }
            for line in v.split(separator: "\n", omittingEmptySubsequences: false) where line.hasPrefix(prefix) {
                return .string(String(line))
            }
            return .string("")
        }
    }
}

/// A name-addr as text, as Kamailio's parse_nameaddr / parse_to read it: `"Name" <uri>;params`, or
/// an addr-spec without brackets (all of it the URI for nameaddr; params after `;` for tobody).
struct NameAddrText {
    var name = ""
    var uri = ""
    var params = ""
    /// The length up to and including `>` (the whole text without brackets).
    var length = 0

    init(_ text: String) {
        let b = Array(text.utf8)
        var inQuote = false
        var lt: Int? = nil
        for (i, c) in b.enumerated() {
            if c == UInt8(ascii: "\"") { inQuote.toggle() }
            if !inQuote && c == UInt8(ascii: "<") { lt = i; break }
        }
        guard let lt, let gt = b[lt...].firstIndex(of: UInt8(ascii: ">")) else {
            uri = text
            length = b.count
            if let semi = b.firstIndex(of: UInt8(ascii: ";")) {
                params = String(decoding: b[(semi + 1)...], as: UTF8.self)
            }
            return
        }
        name = String(String(decoding: b[..<lt], as: UTF8.self).trimmingCharacters(" \t"))
        uri = String(decoding: b[(lt + 1)..<gt], as: UTF8.self)
        length = gt + 1
        if let semi = b[(gt + 1)...].firstIndex(of: UInt8(ascii: ";")) {
            params = String(String(decoding: b[(semi + 1)...], as: UTF8.self).trimmingCharacters(" \t"))
        }
    }
}

/// Pseudo-variables beyond the simple `$name` / `$name(inner)` forms.
indirect enum ExtendedPV: Hashable {
    /// `$(hdr(name)[n])`; nil index = `[*]` (all values joined with ", ").
    case hdrIndex(String, Int?)
    case transformed(PseudoVariable, [Transformation])
    case shv(String)
    /// `$xavp(root[idx]=>field[fidx])`.
    case xavp(root: String, index: Int, field: String?)
    /// `$TF`: formatted current time (ctime-like, no newline).
    case tf
    /// `$time(fmt)`: strftime of the current local time.
    case time(String)
    /// `$TV(Sn)` "sec.usec", `$TV(Fn)` formatted with microseconds.
    case tvSn, tvFn
    /// Credentials: `$au` (user part), `$aU` (whole username), `$ad` (domain), `$ar` (realm).
    case au, aU, ad, ar
    /// Credentials' digest parameters: `$adu` uri, `$aa` algorithm, `$adn` nonce, `$adc` cnonce,
    /// `$adr` response, `$ado` opaque ("" when the parameter is absent, as Kamailio).
    case authParam(String)
    /// `$ctu`-like: the Contact URI.
    case ctu
    /// `$sel(...)`: the select forms scripts use (via[n].host/port/branch/received/rport/transport,
    /// ruri.user/host/port, from/to.uri/tag/user/host, call_id, cseq.method/num, contact.uri).
    case select([String])
    /// `$vn(name)`: a per-worker variable like `$var` that starts as null.
    case vn(String)
    /// `$br`: the first extra branch URI.
    case br
    /// `$avp(name)` all values (`$(avp(x)[*])`), and an indexed avp.
    case avpIndex(String, Int?)
    /// `$uac_req(key)`: the request `KSR.uac.uac_req_send()` sends (UAC/UACRequest.swift).
    case uacReq(String)
    /// `$ulc(profile=>attr)` (registrar, filled by `reg_fetch_contacts`), `$(ulc(p=>attr)[i])`.
    case ulc(profile: String, attr: String, index: Int)
    /// htable: `$sht(t=>k)`, `$shtex(t=>k)`, `$shtinc(t=>k)`, `$shtdec(t=>k)` (the key may be a
    /// pseudo-variable such as `$si`), `$shtcn(t=>exp)` / `$shtcv(t=>exp)` (counts), `$shtitkey(it)`,
    /// `$shtitval(it)`.
    case sht(HtableCellPV, String, String)
    case shtIterator(String, value: Bool)
    /// dialog: `$dlg(attr)`, `$dlg_ctx(attr)`, `$dlg_var(name)` (Dialog/DialogModule.swift).
    case dlg(String)
    case dlgCtx(String)
    case dlgVar(String)
    /// `$conid`: the TCP/TLS/WS connection id of the message (null for UDP).
    case conid
    /// `$tls_peer_subject_cn`, `$tls_peer_verified`, `$tls_peer_serial`, `$tls_peer_san_dns`.
    case tlsPeer(String)
    /// `$dsv(code|reason|flags)`: the dispatcher event's reply (Dispatcher/DispatcherProbe.swift).
    case dsv(String)
    /// `$redis(reply=>type|value|info|size)` with indexes (NdbRedis/NdbRedisModule.swift).
    case redis(NdbRedisModule.PVName)
    /// `$redisd(rpl_str|rpl_arr|rpl_int|rpl_nil|rpl_sts|rpl_err)`: the reply type codes `$redis(r=>type)` gives.
    case redisd(Int)
    /// http_async_client: `$http_ok`, `$http_err`, `$http_rs`, `$http_rr`, `$http_rb`, `$http_bs`,
    /// `$http_mb`, `$http_ml`, `$http_req_id`, `$http_hdr(name)`, `$http_time(name)`, `$http_req(name)`
    /// (HTTPClient/HTTPAsyncClientModule.swift): the name without `http_`, and the inner name.
    case httpAsync(String, String?)
    /// `$diameter_command`, `$diameter_application`, `$diameter_request`, `$diameter_response`
    /// (Diameter/DiameterModule.swift).
    case diameter(String)

    static func parse(_ text: String) -> ExtendedPV? {
        let body = text.dropFirst()
        switch body {
        case "TF": return .tf
        case "au": return .au
        case "aU": return .aU
        case "ad": return .ad
        case "ar": return .ar
        case "adu": return .authParam("uri")
        case "aa": return .authParam("algorithm")
        case "adn": return .authParam("nonce")
        case "adc": return .authParam("cnonce")
        case "adr": return .authParam("response")
        case "ado": return .authParam("opaque")
        case "ctu": return .ctu
        case "br": return .br
        case "conid": return .conid
        case "http_ok", "http_err", "http_rs", "http_rr", "http_rb", "http_bs", "http_mb", "http_ml", "http_req_id":
            return .httpAsync(String(body.dropFirst(5)), nil)
        case "diameter_command", "diameter_application", "diameter_request", "diameter_response":
            return .diameter(String(body))
        case "tls_peer_subject_cn", "tls_peer_verified", "tls_peer_serial", "tls_peer_san_dns", "tls_peer_san_ip":
            return .tlsPeer(String(body.dropFirst(9)))
        default: break
        }
        if body.hasPrefix("(") && body.hasSuffix(")") {
            // $(name(inner)[idx]{tr}...)
            var inner = body.dropFirst().dropLast()
            var trs: [Transformation] = []
            while inner.hasSuffix("}"), let open = inner.lastIndex(of: "{") {
                guard let t = Transformation.parse(inner[inner.index(after: open)..<inner.index(before: inner.endIndex)]) else { return nil }
                trs.insert(t, at: 0)
                inner = inner[..<open]
            }
            var index: Int?? = nil
            if inner.hasSuffix("]"), let open = inner.lastIndex(of: "[") {
                let idx = inner[inner.index(after: open)..<inner.index(before: inner.endIndex)]
                if idx == "*" { index = .some(nil) } else if let i = Int(idx) { index = .some(i) } else { return nil }
                inner = inner[..<open]
            }
            var base: PseudoVariable
            if let index {
                if inner.hasPrefix("hdr("), inner.hasSuffix(")") {
                    base = .ext(.hdrIndex(String(inner.dropFirst(4).dropLast()), index))
                } else if inner.hasPrefix("avp("), inner.hasSuffix(")") {
                    base = .ext(.avpIndex(String(inner.dropFirst(4).dropLast()), index))
                } else if inner.hasPrefix("ulc("), inner.hasSuffix(")"), let i = index,
                          case .ulc(let p, let a, _)? = ExtendedPV.parse("$" + String(inner)) {
                    base = .ext(.ulc(profile: p, attr: a, index: i))
                } else { return nil }
            } else {
                guard let b = PseudoVariable.parse("$" + inner) else { return nil }
                base = b
            }
            if trs.isEmpty, case .ext(let e) = base { return e }
            // `$(ru)` is `$ru`: an empty transformation list
            return .transformed(base, trs)
        }
        guard let open = body.firstIndex(of: "("), body.hasSuffix(")") else { return nil }
        let name = body[..<open]
        let inner = String(body[body.index(after: open)..<body.index(before: body.endIndex)])
        switch name {
        case "shv": return inner.isEmpty ? nil : .shv(inner)
        case "dlg": return DialogModule.dlgAttributes.contains(inner) ? .dlg(inner) : nil
        case "dlg_ctx": return DialogModule.ctxAttributes.contains(inner) ? .dlgCtx(inner) : nil
        case "dlg_var": return inner.isEmpty ? nil : .dlgVar(inner)
        case "sht", "shtex", "shtinc", "shtdec", "shtcn", "shtcv":
            let parts = inner.components(separatedByString: "=>")
            guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty, let kind = HtableCellPV(rawValue: String(name)) else { return nil }
            return .sht(kind, parts[0], parts[1])
        case "shtitkey", "shtitval":
            return inner.isEmpty ? nil : .shtIterator(inner, value: name == "shtitval")
        case "vn": return inner.isEmpty ? nil : .vn(inner)
        case "dsv": return ["code", "reason", "flags"].contains(inner) ? .dsv(inner) : nil
        case "redis": return NdbRedisModule.parsePV(inner).map { .redis($0) }
        case "redisd": return NdbRedisModule.replyTypeConstants[inner].map { .redisd($0) }
        case "http_hdr": return inner.isEmpty ? nil : .httpAsync("hdr", inner)
        case "http_time": return HTTPAsyncClientModule.timeNames.contains(inner) ? .httpAsync("time", inner) : nil
        case "http_req": return HTTPAsyncClientModule.requestNames.contains(inner) ? .httpAsync("req", inner) : nil
        case "sel":
            let parts = inner.split(separator: ".").map { String($0).lowercased() }
            return parts.isEmpty ? nil : .select(parts)
        case "time": return .time(inner)
        case "uac_req": return UACRequest.Key(rawValue: inner) != nil ? .uacReq(inner) : nil
        case "ulc":
            let parts = inner.components(separatedByString: "=>")
            guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty else { return nil }
            return .ulc(profile: parts[0], attr: parts[1], index: 0)
        case "TV":
            if inner == "Sn" { return .tvSn }
            if inner == "Fn" { return .tvFn }
            return nil
        case "xavp":
            // root[idx]=>field
            let parts = inner.components(separatedByString: "=>")
            var root = Substring(parts[0])
            var idx = 0
            if root.hasSuffix("]"), let o = root.lastIndex(of: "[") {
                guard let i = Int(root[root.index(after: o)..<root.index(before: root.endIndex)]) else { return nil }
                idx = i
                root = root[..<o]
            }
            guard !root.isEmpty else { return nil }
            return .xavp(root: String(root), index: idx, field: parts.count > 1 ? parts[1] : nil)
        default: return nil
        }
    }

    func get(_ ctx: RouteContext) -> PVValue {
        let m = ctx.message
        switch self {
        case .hdrIndex(let name, let index):
            guard let m else { return .null }
            let list = m.headers(named: name)
            guard let index else {
                return list.isEmpty ? .null : .string(list.map { m.string($0.value) }.joined(separator: ", "))
            }
            let i = index < 0 ? list.count + index : index
            return i >= 0 && i < list.count ? .bytes(list[i].value) : .null
        case .avpIndex(let name, let index):
            guard let list = ctx.avps[name], !list.isEmpty else { return .null }
            // index 0 = newest, as Kamailio's stack
            let rev = Array(list.reversed())
            guard let index else { return .string(rev.map(\.text).joined(separator: ",")) }
            let i = index < 0 ? rev.count + index : index
            return i >= 0 && i < rev.count ? PVValue(rev[i]) : .null
        case .transformed(let base, let trs):
            var v = PVEngine.get(ctx, base)
            for t in trs {
                let s: String
                switch v {
                case .null: return .null
                case .int(let i): s = String(i)
                case .string(let x): s = x
                case .bytes(let r): s = m?.string(r) ?? ""
                }
                v = t.apply(s)
            }
            return v
        case .shv(let name): return PVValue(SharedVariables.process.get(name))
        case .dlg(let attr): return PVValue(DialogModule.pvDialog(ctx, attr))
        case .dlgCtx(let attr): return PVValue(DialogModule.pvContext(ctx, attr))
        case .dlgVar(let name): return PVValue(DialogModule.pvVariable(ctx, name))
        case .ulc(let profile, let attr, let index):
            return PVValue(RegistrarModule.ulc(ctx, profile: profile, attr: attr, index: index))
        case .sht(let kind, let table, let key):
            let k = Self.htableKey(ctx, key)
            switch kind {
            case .sht: return PVValue(HtableModule.pvGet(ctx, table, k))
            case .shtex: return PVValue(HtableModule.pvExpire(ctx, table, k))
            case .shtinc: return PVValue(HtableModule.pvAdd(ctx, table, k, 1))
            case .shtdec: return PVValue(HtableModule.pvAdd(ctx, table, k, -1))
            case .shtcn: return PVValue(HtableModule.pvCount(ctx, table, key, values: false))
            case .shtcv: return PVValue(HtableModule.pvCount(ctx, table, key, values: true))
            }
        case .shtIterator(let name, let value):
            return PVValue(HtableModule.pvIterator(ctx, name, value: value))
        case .xavp(let root, let index, let field):
            guard let items = ctx.xavps[root], index >= 0, index < items.count else { return .null }
            guard let v = items[index][field ?? ""]?.first else { return .null }
            return PVValue(v)
        case .tf:
            var t = time_t(Clock.nowSeconds())
            var buf = [CChar](repeating: 0, count: 32)
            ctime_r(&t, &buf)
            let text = String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            return .string(String(text.trimmingCharacters(" \n")))
        case .time(let fmt):
            return .string(Self.strftime(fmt, seconds: Clock.nowSeconds()))
        case .tvSn:
            let n = Clock.now()
            return .string("\(n.seconds).\(String(zeroPadded6: n.micros))")
        case .tvFn:
            let n = Clock.now()
            return .string(Self.strftime("%Y-%m-%d %H:%M:%S", seconds: n.seconds) + "." + String(zeroPadded6: n.micros))
        case .au, .aU, .ad, .ar:
            guard let m, m.method != .ack && m.method != .cancel else { return .null }
            guard let h = m.firstHeader(.proxyAuthorization) ?? m.firstHeader(.authorization),
                  let auth = m.authValue(h) else { return .null }
            if self == .ar { return m.authParam(auth, "realm").map { .string($0) } ?? .null }
            guard let user = m.authParam(auth, "username") else { return .null }
            let at = user.firstIndex(of: "@")
            switch self {
            case .aU: return .string(user)
            case .au: return .string(at.map { String(user[..<$0]) } ?? user)
            default: return at.map { .string(String(user[user.index(after: $0)...])) } ?? .null
            }
        case .authParam(let name):
            guard let m, m.method != .ack && m.method != .cancel else { return .null }
            guard let h = m.firstHeader(.proxyAuthorization) ?? m.firstHeader(.authorization),
                  let auth = m.authValue(h) else { return .null }
            return .string(m.authParam(auth, name) ?? "")
        case .vn(let name):
            return PVValue(ctx.worker.local(NullableVariables.self) { NullableVariables() }.values[name] ?? .null)
        case .br:
            return ctx.branches.first.map { .string(String(decoding: $0, as: UTF8.self)) } ?? .null
        case .diameter(let name):
            return PVValue(DiameterModule.pv(ctx, name))
        case .dsv(let key):
            guard let e = ctx.worker.local(DSWorkerEvent.self, { DSWorkerEvent() }).current else { return .null }
            switch key {
            case "code": return .int(e.code)
            case "flags": return .int(e.flags)
            default: return e.reason.flatMap { $0.isEmpty ? nil : PVValue.string($0) } ?? .null
            }
        case .conid:
            return ctx.received.connectionID == 0 ? .null : .int(Int(truncatingIfNeeded: ctx.received.connectionID))
        case .redis(let name):
            return PVValue(NdbRedisModule.pvGet(ctx, name))
        case .redisd(let code):
            return .int(code)
        case .tlsPeer(let field):
            let peer = ctx.services.tlsPeer(connection: ctx.received.connectionID)
            switch field {
            case "verified": return .int(peer?.verified == true ? 1 : 0)
            case "subject_cn": return peer?.subjectCN.map { .string($0) } ?? .null
            case "serial": return peer?.serial.map { .string($0) } ?? .null
            case "san_dns": return peer?.alternativeNames.first(where: { SocketAddress(ip: $0, port: 0) == nil }).map { .string($0) } ?? .null
            default: return peer?.alternativeNames.first(where: { SocketAddress(ip: $0, port: 0) != nil }).map { .string($0) } ?? .null
            }
        case .select(let parts):
            guard let m else { return .null }
            return Self.select(ctx, m, parts)
        case .ctu:
            guard let m, let v = m.firstValue(.contact), let na = m.parseNameAddr(v), !na.isStar else { return .null }
            return .bytes(na.uri)
        case .uacReq(let key):
            return UACRequest.get(ctx, key)
        case .httpAsync(let name, let arg):
            return HTTPAsyncClientModule.get(ctx, name, arg)
        }
    }

    func set(_ ctx: RouteContext, _ value: KemiValue) -> Bool {
        switch self {
        case .shv(let name):
            SharedVariables.process.set(name, value)
            return true
        case .sht(.sht, let table, let key):
            return HtableModule.pvSet(ctx, table, Self.htableKey(ctx, key), value)
        case .sht(.shtex, let table, let key):
            return HtableModule.pvSetExpire(ctx, table, Self.htableKey(ctx, key), value)
        case .dlgCtx(let attr):
            return DialogModule.pvSetContext(ctx, attr, value)
        case .dlgVar(let name):
            return DialogModule.pvSetVariable(ctx, name, value)
        case .vn(let name):
            ctx.worker.local(NullableVariables.self) { NullableVariables() }.values[name] = value == .null ? nil : value
            return true
        case .br:
            guard case .string(let s) = value, !s.isEmpty else {
                if !ctx.branches.isEmpty {
                    ctx.branches.removeFirst()
                    if !ctx.branchQ.isEmpty { ctx.branchQ.removeFirst() }
                }
                return true
            }
            guard SIPURI(s) != nil else { return false }
            if ctx.branches.isEmpty { ctx.branches.append(Array(s.utf8)) } else { ctx.branches[0] = Array(s.utf8) }
            return true
        case .uacReq(let key):
            return UACRequest.set(ctx, key, value)
        case .httpAsync("req", let name?):
            return HTTPAsyncClientModule.setRequest(ctx, name, value)
        case .diameter("diameter_response"):
            return DiameterModule.setResponse(ctx, value)
        case .avpIndex(let name, nil):
            guard value == .null else { return false }
            ctx.avps[name] = nil
            return true
        case .xavp(let root, let index, let field):
            let f = field ?? ""
            if value == .null {
                if field == nil { ctx.xavps[root] = nil; return true }
                guard var items = ctx.xavps[root], index < items.count else { return true }
                items[index][f] = nil
                ctx.xavps[root] = items
                return true
            }
            var items = ctx.xavps[root] ?? []
            if field == nil || items.isEmpty {
                // assigning the root (or the first field) starts a new item at the head
                items.insert([f: [value]], at: 0)
            } else {
                guard index < items.count else { return false }
                items[index][f, default: []].insert(value, at: 0)
            }
            ctx.xavps[root] = items
            return true
        default:
            ctx.logger.error("pseudo-variable is read-only")
            return false
        }
    }

    /// An htable key: literal text, or the value of a pseudo-variable when it starts with `$`.
    static func htableKey(_ ctx: RouteContext, _ key: String) -> String {
        guard key.hasPrefix("$"), let pv = ctx.pvCache.spec(key) else { return key }
        switch PVEngine.get(ctx, pv) {
        case .null: return ""
        case .int(let i): return String(i)
        case .string(let s): return s
        case .bytes(let r): return ctx.message?.string(r) ?? ""
        }
    }

    static func select(_ ctx: RouteContext, _ m: SIPMessage, _ parts: [String]) -> PVValue {
        func index(_ s: String) -> (String, Int) {
            guard let o = s.firstIndex(of: "["), s.hasSuffix("]"), let i = Int(s[s.index(after: o)..<s.index(before: s.endIndex)]) else { return (s, 1) }
            return (String(s[..<o]), i)
        }
        let (head, idx) = index(parts[0])
        let field = parts.count > 1 ? parts[1] : ""
        switch head {
        case "via":
            let vias = m.values(.via)
            guard idx >= 1, idx <= vias.count, let v = m.parseVia(vias[idx - 1]) else { return .null }
            switch field {
            case "": return .bytes(v.whole)
            case "host": return .bytes(v.host)
            case "port": return v.port.map { .int($0) } ?? .null
            case "transport": return .bytes(v.transport)
            case "branch": return v.branch.map { .bytes($0) } ?? .null
            case "received": return v.received.map { .bytes($0) } ?? .null
            case "rport": return v.rport.map { .bytes($0) } ?? .null
            default: return .null
            }
        case "ruri", "request_uri":
            switch field {
            case "": return PVEngine.get(ctx, .ru)
            case "user": return PVEngine.get(ctx, .rU)
            case "host": return PVEngine.get(ctx, .rd)
            case "port": return PVEngine.get(ctx, .rp)
            default: return .null
            }
        case "from", "f", "to", "t":
            let isFrom = head.hasPrefix("f")
            switch field {
            case "", "uri": return PVEngine.get(ctx, isFrom ? .fu : .tu)
            case "tag": return PVEngine.get(ctx, isFrom ? .ft : .tt)
            case "user": return PVEngine.get(ctx, isFrom ? .fU : .tU)
            case "host": return PVEngine.get(ctx, isFrom ? .fd : .td)
            case "name": return PVEngine.get(ctx, isFrom ? .fn : .tn)
            default: return .null
            }
        case "call_id", "callid", "i": return PVEngine.get(ctx, .ci)
        case "cseq":
            guard let c = m.cseq else { return .null }
            switch field {
            case "", "num": return field.isEmpty ? (m.firstHeader(.cseq).map { .bytes($0.value) } ?? .null) : .bytes(c.numberRange)
            case "method": return .bytes(c.methodRange)
            default: return .null
            }
        case "contact", "m":
            guard let v = m.firstValue(.contact), let na = m.parseNameAddr(v) else { return .null }
            return field == "uri" ? .bytes(na.uri) : .bytes(v)
        default: return .null
        }
    }

    static func strftime(_ fmt: String, seconds: Int) -> String {
        var t = time_t(seconds)
        var tmv = tm()
        localtime_r(&t, &tmv)
        var buf = [CChar](repeating: 0, count: 256)
        let n = Glibc.strftime(&buf, 256, fmt, &tmv)
        return String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

extension PVValue {
    init(_ v: KemiValue) {
        switch v {
        case .null: self = .null
        case .int(let i): self = .int(i)
        case .string(let s): self = .string(s)
        }
    }
}

extension KemiValue {
    var text: String {
        switch self {
        case .null: return "<null>"
        case .int(let i): return String(i)
        case .string(let s): return s
        }
    }
}

extension String {
    fileprivate init(zeroPadded6 micros: Int) {
        let s = String(micros)
        self = String(repeating: "0", count: Swift.max(0, 6 - s.count)) + s
    }

    func components(separatedByString sep: String) -> [String] {
        let b = Array(utf8), s = Array(sep.utf8)
        var out: [String] = []
        var start = 0, i = 0
        while i + s.count <= b.count {
            if b[i..<(i + s.count)].elementsEqual(s) {
                out.append(String(decoding: b[start..<i], as: UTF8.self))
                i += s.count
                start = i
            } else { i += 1 }
        }
        out.append(String(decoding: b[start...], as: UTF8.self))
        return out
    }
}
