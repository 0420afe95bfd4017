#if canImport(Glibc)
import Glibc
#endif
import SIPCore
import SIPTransport
import StarlingKEMI
import Logging

/// A parsed pseudo-variable name (`$ru`, `$var(x)`, `$hdr(From)`...). Parsed once per distinct name
/// and per worker, then cached.
enum PseudoVariable: Hashable {
    case ru, rU, rd, rp, rz, rP, rm, rv, rs, rr, ou, oU, od, op
    case du, dd, dp, dP
    case fu, fU, fd, fn, ft, tu, tU, td, tn, tt
    case ci, cs, si, sp, Ri, Rp, fs, fsn, pr, ua, ct, cT, cl, ml, mb, rb, bs
    case Ts, TS, TVs, TVu, mf, bf, sf
    /// `$T_reply_code`, `$T_branch_idx` (tm).
    case TReplyCode, TBranchIdx
    /// `$T_req(pv)`, `$T_rpl(pv)`, `$T(name)`, `$T_reply_reason`... (tm/TMPV.swift).
    indirect case tm(TMPV)
    case var_(String)
    case avp(String)
    case hdr(String)
    case hdrc(String)
    /// Indexed headers, transformations, `$shv`, `$xavp`, time formats, credentials (PVExtensions.swift).
    indirect case ext(ExtendedPV)

    /// Parses "$name", "$name(inner)" or "$(name(inner)[index]{transformation})". Nil for unknown names.
    static func parse(_ text: String) -> PseudoVariable? {
        guard text.hasPrefix("$") else { return nil }
        if let e = ExtendedPV.parse(text) { return .ext(e) }
        let body = text.dropFirst()
        if let open = body.firstIndex(of: "("), body.hasSuffix(")") {
            let name = String(body[..<open])
            let inner = String(body[body.index(after: open)..<body.index(before: body.endIndex)])
            guard !inner.isEmpty else { return nil }
            switch name {
            case "var": return .var_(inner)
            case "avp": return .avp(inner)
            case "hdr": return .hdr(inner)
            case "hdrc": return .hdrc(inner)
            case "T", "T_req", "T_rpl", "T_inv", "T_branch": return TMPV.parse(name: name, inner: inner).map { .tm($0) }
            case "TV":
                switch inner {
                case "s", "sn": return .TVs
                case "u", "un": return .TVu
                default: return nil
                }
            default: return nil
            }
        }
        switch body {
        case "ru", "ruri": return .ru
        case "rU": return .rU
        case "rd": return .rd
        case "rp": return .rp
        case "rz": return .rz
        case "rP": return .rP
        case "rm": return .rm
        case "rv": return .rv
        case "rs": return .rs
        case "rr": return .rr
        case "ou": return .ou
        case "oU": return .oU
        case "od": return .od
        case "op": return .op
        case "du", "duri": return .du
        case "dd": return .dd
        case "dp": return .dp
        case "dP": return .dP
        case "fu", "from": return .fu
        case "fU": return .fU
        case "fd": return .fd
        case "fn": return .fn
        case "ft": return .ft
        case "tu", "to": return .tu
        case "tU": return .tU
        case "td": return .td
        case "tn": return .tn
        case "tt": return .tt
        case "ci": return .ci
        case "cs": return .cs
        case "si": return .si
        case "sp": return .sp
        case "Ri": return .Ri
        case "Rp": return .Rp
        case "fs": return .fs
        case "fsn": return .fsn
        case "pr", "proto": return .pr
        case "ua": return .ua
        case "ct": return .ct
        case "cT": return .cT
        case "cl": return .cl
        case "ml": return .ml
        case "mb": return .mb
        case "rb": return .rb
        case "bs": return .bs
        case "Ts": return .Ts
        case "TS": return .TS
        case "mf": return .mf
        case "T_reply_code": return .TReplyCode
        case "T_branch_idx": return .TBranchIdx
        case "T_reply_reason", "T_reply_last", "T_reply_ruid": return TMPV.parse(name: body).map { .tm($0) }
        case "bf": return .bf
        case "sf": return .sf
        default: return nil
        }
    }
}

/// The value of a pseudo-variable.
enum PVValue {
    case null
    case int(Int)
    case bytes(ByteRange)
    case string(String)

    var kemi: KemiResult {
        switch self {
        case .null: return .null
        case .int(let i): return .int(i)
        case .bytes(let r): return .messageBytes(r)
        case .string(let s): return .string(s)
        }
    }
}

/// Per-worker cache of parsed names: a small direct-mapped table keyed by the address of the Lua
/// string (Lua interns short strings, so a literal in the script keeps its address), checked against
/// the bytes, in front of a dictionary by name.
final class PVCache {
    var specs: [String: PseudoVariable?] = [:]

    struct Slot {
        var pointer: UnsafeRawPointer?
        var bytes: [UInt8]
        var spec: PseudoVariable?
    }
    var slots = [Slot](repeating: Slot(pointer: nil, bytes: [], spec: nil), count: 64)

    /// The spec for a name given as raw bytes (a KSR argument).
    func spec(raw: UnsafeRawBufferPointer) -> PseudoVariable? {
        guard let p = raw.baseAddress else { return nil }
        let i = Int(truncatingIfNeeded: UInt(bitPattern: p) >> 4) & 63
        if slots[i].pointer == p && slots[i].bytes.count == raw.count
            && slots[i].bytes.withUnsafeBytes({ memcmp($0.baseAddress!, p, raw.count) == 0 }) {
            return slots[i].spec
        }
        let parsed = spec(String(decoding: raw, as: UTF8.self))
        slots[i] = Slot(pointer: p, bytes: Array(raw), spec: parsed)
        return parsed
    }

    func spec(_ name: String) -> PseudoVariable? {
        if let cached = specs[name] { return cached }
        let parsed = PseudoVariable.parse(name)
        if specs.count < 4096 { specs[name] = parsed }
        return parsed
    }
}

extension RouteContext {
    var pvCache: PVCache {
        if let c = worker.pvState { return unsafeDowncast(c, to: PVCache.self) }
        let c = PVCache()
        worker.pvState = c
        return c
    }

    /// The Request-URI as it stands (rewritten or received), parsed.
    var currentRequestURI: SIPURI? {
        guard let m = message, m.isRequest else { return nil }
        if let new = m.edits.requestURI { return SIPURI(bytes: new) }
        return m.uri(m.requestURIRange)
    }

    /// `$du`, parsed.
    var destinationSIPURI: SIPURI? { destinationURI.flatMap { SIPURI(bytes: $0) } }
}

/// Reading and writing pseudo-variables.
enum PVEngine {
    static func get(_ ctx: RouteContext, _ pv: PseudoVariable) -> PVValue {
        let m = ctx.message
        switch pv {
        case .ru:
            guard let m, m.isRequest else { return .null }
            if let new = m.edits.requestURI { return .string(String(decoding: new, as: UTF8.self)) }
            return .bytes(m.requestURIRange)
        case .rU:
            guard let m, m.isRequest else { return .null }
            if m.edits.requestURI == nil { return m.requestURI?.user.map { .bytes($0) } ?? .null }
            return ctx.currentRequestURI?.user.map { .string($0) } ?? .null
        case .rd:
            guard let m, m.isRequest else { return .null }
            if m.edits.requestURI == nil { return m.requestURI.map { .bytes($0.host) } ?? .null }
            return ctx.currentRequestURI.map { .string($0.host) } ?? .null
        case .rp:
            guard let u = ctx.currentRequestURI else { return .null }
            return .string(String(u.port ?? (u.scheme == .sips ? 5061 : 5060)))
        case .rz:
            return ctx.currentRequestURI.map { .string($0.schemeName.lowercased()) } ?? .null
        case .rP:
            return ctx.currentRequestURI.map { .string($0.transport ?? "udp") } ?? .null
        case .rm:
            guard let m else { return .null }
            let r = m.methodRange
            return r.isEmpty ? .null : .bytes(r)
        case .rv:
            guard let m else { return .null }
            return .bytes(m.versionRange)
        case .rs:
            guard let m, !m.isRequest else { return .null }
            return .int(m.statusCode)
        case .rr:
            guard let m, !m.isRequest else { return .null }
            return .bytes(m.reasonRange)
        case .ou:
            guard let m, m.isRequest else { return .null }
            return .bytes(m.requestURIRange)
        case .oU:
            guard let m, m.isRequest else { return .null }
            return m.requestURI?.user.map { .bytes($0) } ?? .null
        case .od:
            guard let m, m.isRequest else { return .null }
            return m.requestURI.map { .bytes($0.host) } ?? .null
        case .op:
            guard let m, m.isRequest, let u = m.requestURI else { return .null }
            return .string(String(u.port ?? (u.scheme == .sips ? 5061 : 5060)))
        case .du:
            return ctx.destinationURI.map { .string(String(decoding: $0, as: UTF8.self)) } ?? .null
        case .dd:
            return ctx.destinationSIPURI.map { .string($0.host) } ?? .null
        case .dp:
            guard let u = ctx.destinationSIPURI else { return .null }
            return .string(String(u.port ?? (u.scheme == .sips ? 5061 : 5060)))
        case .dP:
            return ctx.destinationSIPURI.map { .string($0.transport ?? "udp") } ?? .null
        case .fu, .tu:
            guard let m, let na = pv == .fu ? m.from : m.to else { return .null }
            return .bytes(na.uri)
        case .fU, .tU:
            guard let m, let na = pv == .fU ? m.from : m.to else { return .null }
            return na.uriParts.user.map { .bytes($0) } ?? .null
        case .fd, .td:
            guard let m, let na = pv == .fd ? m.from : m.to else { return .null }
            return .bytes(na.uriParts.host)
        case .fn, .tn:
            guard let m, let na = pv == .fn ? m.from : m.to, let dn = na.displayName else { return .null }
            return .bytes(dn)
        case .ft, .tt:
            guard let m, let na = pv == .ft ? m.from : m.to, let tag = na.tag else { return .null }
            return .bytes(tag)
        case .ci:
            guard let m, let c = m.callID else { return .null }
            return .bytes(c)
        case .cs:
            guard let m, let c = m.cseq else { return .null }
            return .bytes(c.numberRange)
        case .si: return .string(ctx.received.source.ip)
        case .sp: return .int(Int(ctx.received.source.port))
        case .Ri: return .string(ctx.received.local.ip)
        case .Rp: return .int(Int(ctx.received.local.port))
        case .fs: return ctx.forcedSocket.map { .string($0.description) } ?? .null
        case .fsn: return ctx.forcedSocket?.name.map { .string($0) } ?? .null
        case .pr: return .string(ctx.received.proto.name)
        case .ua:
            guard let m, let h = m.firstHeader(.userAgent) else { return .null }
            return .bytes(h.value)
        case .ct:
            guard let m, let h = m.firstHeader(.contact) else { return .null }
            return .bytes(h.value)
        case .cT:
            guard let m, let h = m.firstHeader(.contentType) else { return .null }
            return .bytes(h.value)
        case .cl:
            guard let m, let h = m.firstHeader(.contentLength) else { return .null }
            return .int(Int(m.string(h.value)) ?? 0)
        case .ml:
            guard let m else { return .null }
            return .int(m.count)
        case .mb:
            guard let m else { return .null }
            return .bytes(ByteRange(0, m.count))
        case .rb:
            guard let m else { return .null }
            let b = m.bodyRange
            return b.isEmpty ? .null : .bytes(b)
        case .bs:
            guard let m else { return .null }
            return .int(m.bodyRange.count)
        case .Ts: return .int(ctx.receivedAt.seconds)
        case .TS: return .int(Clock.nowSeconds())
        case .TVs: return .int(ctx.receivedAt.seconds)
        case .TVu: return .int(ctx.receivedAt.micros)
        case .mf: return .int(Int(ctx.messageFlags))
        case .TReplyCode: return .int(TMModule.replyCodePV(ctx))
        case .TBranchIdx: return .int(TMModule.branchIndexPV(ctx))
        case .bf: return .int(Int(ctx.branchFlags))
        case .sf: return .int(Int(ctx.scriptFlags))
        case .var_(let name):
            switch ctx.worker.vars[name] ?? .int(0) {
            case .null: return .null
            case .int(let i): return .int(i)
            case .string(let s): return .string(s)
            }
        case .avp(let name):
            guard let v = ctx.avps[name]?.last else { return .null }
            switch v {
            case .null: return .null
            case .int(let i): return .int(i)
            case .string(let s): return .string(s)
            }
        case .hdr(let name):
            guard let m, let h = m.headers(named: name).first else { return .null }
            return .bytes(h.value)
        case .hdrc(let name):
            guard let m else { return .int(0) }
            return .int(m.headers(named: name).count)
        case .ext(let e):
            return e.get(ctx)
        case .tm(let t):
            return t.get(ctx)
        }
    }

    /// Assigns a value. Returns false for read-only variables or invalid values.
    static func set(_ ctx: RouteContext, _ pv: PseudoVariable, _ value: KemiValue) -> Bool {
        switch pv {
        case .var_(let name):
            ctx.worker.vars[name] = value == .null ? .int(0) : value
            return true
        case .avp(let name):
            if value == .null { ctx.avps[name] = nil } else { ctx.avps[name, default: []].append(value) }
            return true
        case .du:
            guard case .string(let s) = value, !s.isEmpty else { ctx.destinationURI = nil; return true }
            ctx.destinationURI = Array(s.utf8)
            return true
        case .ru:
            guard case .string(let s) = value, let m = ctx.message, m.isRequest, SIPURI(s) != nil else { return false }
            m.setRequestURI(Array(s.utf8))
            return true
        case .rU, .rd, .rp:
            guard let m = ctx.message, m.isRequest, let u = ctx.currentRequestURI else { return false }
            var text: String
            switch value {
            case .null: text = ""
            case .int(let i): text = String(i)
            case .string(let s): text = s
            }
            guard let rebuilt = URIRewrite.replace(u, user: pv == .rU ? text : nil, host: pv == .rd ? text : nil,
                                                   port: pv == .rp ? text : nil) else { return false }
            m.setRequestURI(rebuilt)
            return true
        case .mf:
            guard case .int(let i) = value else { return false }
            ctx.messageFlags = UInt32(truncatingIfNeeded: i)
            return true
        case .bf:
            guard case .int(let i) = value else { return false }
            ctx.branchFlags = UInt32(truncatingIfNeeded: i)
            return true
        case .sf:
            guard case .int(let i) = value else { return false }
            ctx.scriptFlags = UInt32(truncatingIfNeeded: i)
            return true
        case .fs, .fsn:
            guard case .string(let text) = value, !text.isEmpty else {
                if value == .null { ctx.forcedSocket = nil; return true }
                ctx.logger.error("str value required to set the force send sock")
                return false
            }
            return CorexModule.setSocket(ctx, text, send: true, byName: pv == .fsn) == 1
        case .ext(let e):
            return e.set(ctx, value)
        default:
            ctx.logger.error("pseudo-variable is read-only")
            return false
        }
    }
}

/// Rebuilding a URI with one part changed (`$rU`, `$rd`, `$rp`, `setuser`, `sethost`).
enum URIRewrite {
    static func replace(_ u: SIPURI, user: String?, host: String?, port: String?) -> [UInt8]? {
        let b = u.bytes
        let p = u.parts
        guard p.scheme == .sip || p.scheme == .sips else { return nil }
        var out: [UInt8] = Array(b[p.schemeRange.lower..<p.schemeRange.upper])
        out.append(UInt8(ascii: ":"))
        let newUser = user ?? p.user.map { String(decoding: b[$0.range], as: UTF8.self) }
        if let newUser, !newUser.isEmpty {
            out.append(contentsOf: Array(newUser.utf8))
            if let pw = p.password { out.append(UInt8(ascii: ":")); out.append(contentsOf: b[pw.range]) }
            out.append(UInt8(ascii: "@"))
        }
        out.append(contentsOf: host.map { Array($0.utf8) } ?? Array(b[p.host.range]))
        if let port {
            if !port.isEmpty && port != "0" {
                guard let n = Int(port), n > 0, n < 65536 else { return nil }
                out.append(UInt8(ascii: ":"))
                out.append(contentsOf: Array(String(n).utf8))
            }
        } else if let pr = p.portRange {
            out.append(UInt8(ascii: ":"))
            out.append(contentsOf: b[pr.range])
        }
        let tailStart = p.params.isEmpty ? (p.headers.map { $0.lower - 1 } ?? b.count) : p.params.lower - 1
        if tailStart < b.count { out.append(contentsOf: b[tailStart...]) }
        return out
    }
}

/// Wall-clock time.
enum Clock {
    static func nowSeconds() -> Int {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return ts.tv_sec
    }

    static func now() -> (seconds: Int, micros: Int) {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return (ts.tv_sec, ts.tv_nsec / 1000)
    }
}
