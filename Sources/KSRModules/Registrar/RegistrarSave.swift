import SIPCore
import SIPTransport
import StarlingKEMI
import Logging

/// Kamailio's registrar error numbers (rerrno): the reply code and the P-Registrar-Error text.
enum RegError {
    case fine, invalidCSeq, aorParse, toMissing, callIDMissing, cseqMissing, contactParse
    case starExpires, starContacts, tooMany, pathParse, pathUnsupported, lowExpires, insertFailed, invalidQ

    var code: Int {
        switch self {
        case .fine: return 200
        case .tooMany: return 503
        case .pathUnsupported: return 420
        case .lowExpires: return 423
        case .insertFailed: return 500
        default: return 400
        }
    }

    var info: String {
        switch self {
        case .fine: return "No problem"
        case .invalidCSeq: return "Invalid CSeq number"
        case .aorParse: return "Error while parsing AOR"
        case .toMissing: return "To header not found"
        case .callIDMissing: return "Call-ID header not found"
        case .cseqMissing: return "CSeq header not found"
        case .contactParse: return "Contact parse error"
        case .invalidQ: return "Invalid q param in contact"
        case .starExpires: return "* used in contact and expires is not zero"
        case .starContacts: return "* used in contact and more than 1 contact"
        case .tooMany: return "Too many registered contacts"
        case .pathParse: return "Path parse error"
        case .pathUnsupported: return "No support for found Path indicated"
        case .lowExpires: return "Interval too brief"
        case .insertFailed: return "usrloc_contact_insert failed"
        }
    }

    static func reason(_ code: Int) -> String {
        switch code {
        case 200: return "OK"
        case 420: return "Bad Extension"
        case 423: return "Interval Too Brief"
        case 500: return "Server Internal Error"
        case 503: return "Service Unavailable"
        default: return "Bad Request"
        }
    }
}

/// One Contact of a REGISTER, parsed.
struct RegContact {
    var uri: String
    var expiresParam: String?
    var q: Int?
    var methods: String?
    var instance: String?
    var regId: Int
}

/// `save()`: the REGISTER processing of Kamailio's registrar (save.c) over `Usrloc`.
enum RegistrarSave {
    static let flagMemoryOnly = 0x01
    static let flagNoReply = 0x02
    static let flagReplaceAll = 0x04
    static let flagNoVariation = 0x08
    static let flagPrepareReply = 0x10

    /// The AOR of a URI: `user` or `user@host` (use_domain); host always lower case, user too when
    /// case_sensitive is off. Nil when the URI does not parse.
    static func aor(_ uriText: String, useDomain: Bool, caseSensitive: Bool) -> (aor: String, user: String, host: String)? {
        guard let u = SIPURI(uriText) else { return nil }
        var user = unescape(u.user ?? "")
        if !caseSensitive { user = user.lowercased() }
        let host = u.host.lowercased()
        return (useDomain ? "\(user)@\(host)" : user, user, host)
    }

    /// `%XX` escapes of a URI user part decoded (Kamailio unescapes the user before storing).
    static func unescape(_ s: String) -> String {
        guard s.contains("%") else { return s }
        var out: [UInt8] = []
        var bytes = Array(s.utf8)[...]
        while let b = bytes.first {
            bytes = bytes.dropFirst()
            if b == UInt8(ascii: "%"), bytes.count >= 2,
               let v = UInt8(String(decoding: bytes.prefix(2), as: UTF8.self), radix: 16) {
                out.append(v)
                bytes = bytes.dropFirst(2)
            } else {
                out.append(b)
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// The Contact values of a REGISTER, and whether one is `*`. Nil on a parse error.
    static func contacts(_ m: SIPMessage) -> (list: [RegContact], star: Bool, count: Int, badQ: Bool)? {
        var list: [RegContact] = []
        var star = false, count = 0, bad = false, badQ = false
        m.forEachHeader(.contact) { h in
            m.forEachValue(of: h) { r in
                count += 1
                guard let na = m.parseNameAddr(r) else { bad = true; return }
                if na.isStar { star = true; return }
                var c = RegContact(uri: m.string(na.uri), regId: 0)
                c.expiresParam = m.param("expires", in: na.params).map { m.string($0) }
                if let q = m.param("q", in: na.params).map({ m.string($0) }) {
                    guard let v = Double(q), v >= 0, v <= 1 else { badQ = true; return }
                    c.q = Int((v * 1000).rounded())
                }
                c.methods = m.param("methods", in: na.params).map { m.string($0).trimmingCharacters("\"").description }
                c.instance = m.param(named: "+sip.instance", in: na.params).map { String(m.string($0).trimmingCharacters("\"")) }
                c.regId = m.param(named: "reg-id", in: na.params).flatMap { Int(m.string($0)) } ?? 0
                list.append(c)
            }
        }
        if bad { return nil }
        return (list, star, count, badQ)
    }

    /// The Expires header as a number (nil: absent or not a number).
    static func expiresHeader(_ m: SIPMessage) -> Int? {
        guard let v = m.headerValue(.expires) else { return nil }
        return Int(v.trimmingCharacters(" \t"))
    }

    /// Kamailio's calc_contact_expires: seconds from now (0 removes). Nil when below min_expires in
    /// reject mode.
    static func expires(_ c: RegContact?, _ m: SIPMessage, _ cfg: RegistrarConfig) -> Int? {
        var e: Int
        if let p = c?.expiresParam, !p.isEmpty {
            e = Int(p) ?? cfg.defaultExpires
        } else {
            e = expiresHeader(m) ?? cfg.defaultExpires
        }
        if e < 0 { e = cfg.defaultExpires }
        if e != 0 {
            if e < cfg.minExpires {
                if cfg.minExpiresMode != 0 { return nil }
                e = cfg.minExpires
            }
            if cfg.maxExpires > 0 && e > cfg.maxExpires { e = cfg.maxExpires }
        }
        return e
    }

    /// Supported header lists `option` (e.g. "path").
    static func supports(_ m: SIPMessage, _ option: String) -> Bool {
        m.values(.supported).contains { m.string($0).trimmingCharacters(" \t").lowercased() == option }
    }

    /// The Contact header of a 200 reply listing `contacts`, or empty when none is valid.
    static func contactHeader(_ contacts: [LocationContact], now: Int, cfg: RegistrarConfig) -> [UInt8] {
        var s = ""
        for c in contacts where c.isValid(at: now) {
            s += s.isEmpty ? "Contact: " : ", "
            s += "<\(c.contact)>"
            if c.q >= 0 { s += ";q=\(qString(c.q))" }
            s += ";expires=\(c.expires - now)"
            if !cfg.receivedParam.isEmpty, let r = c.received { s += ";\(cfg.receivedParam)=\"\(r)\"" }
            if let i = c.instance, !i.isEmpty { s += ";+sip.instance=\"\(i)\"" }
            if c.regId > 0 { s += ";reg-id=\(c.regId)" }
        }
        return s.isEmpty ? [] : Array((s + "\r\n").utf8)
    }

    /// q in thousandths as Kamailio prints it ("1", "0.5", "0.25").
    static func qString(_ q: Int) -> String {
        if q >= 1000 { return "1" }
        if q <= 0 { return "0" }
        var frac = String(q)
        while frac.count < 3 { frac = "0" + frac }
        while frac.hasSuffix("0") { frac.removeLast() }
        return "0." + frac
    }

    /// Sends the registrar's reply (stateful when a transaction exists, as sl's freply).
    static func sendReply(_ ctx: RouteContext, code: Int, headers: [UInt8]) -> Int {
        let saved = ctx.replyHeaders
        ctx.replyHeaders.append(contentsOf: headers)
        defer { ctx.replyHeaders = saved }
        if case .int(let r) = SLModule.reply(ctx, code, RegError.reason(code)) { return r }
        return -1
    }

    /// Headers of an error reply: P-Registrar-Error, Min-Expires (423), Retry-After (5xx).
    static func errorHeaders(_ e: RegError, _ cfg: RegistrarConfig) -> [UInt8] {
        var s = "P-Registrar-Error: \(e.info)\r\n"
        if e == .lowExpires { s += "Min-Expires: \(cfg.minExpires)\r\n" }
        if e.code >= 500 && cfg.retryAfter > 0 { s += "Retry-After: \(cfg.retryAfter)\r\n" }
        return Array(s.utf8)
    }

    /// `save(table, flags[, uri])`: 1 inserted, 2 updated, 3 deleted, 4 contacts returned; -1 error,
    /// -2 too many contacts. Replies itself unless flag 0x02.
    static func save(_ ctx: RouteContext, _ rt: ModuleRuntime, _ cfg: RegistrarConfig, table name: String, flags: Int,
                     uri: String?) -> Int {
        guard let m = ctx.message, m.isRequest else { return -1 }
        let ul = rt.usrloc
        let noReply = flags & flagNoReply != 0
        let now = rt.clock.unixSeconds
        let canReply = ctx.routeType == .request || ctx.routeType == .failure
        // Errors met while updating an existing record list its current bindings, as Kamailio's do.
        var bindings: [UInt8] = []
        func fail(_ e: RegError) -> Int {
            if !noReply && ctx.routeType == .request { _ = sendReply(ctx, code: e.code, headers: bindings + errorHeaders(e, cfg)) }
            if e != .tooMany { ctx.logger.info("registrar save: \(e.info)") }
            return e == .tooMany ? -2 : -1
        }
        // AOR: the uri argument, else the To URI.
        let aorURI: String
        if let uri, !uri.isEmpty { aorURI = uri } else {
            guard let to = m.to else { return fail(.toMissing) }
            aorURI = m.string(to.uri)
        }
        guard let (aor, user, host) = aor(aorURI, useDomain: ul.useDomain, caseSensitive: cfg.caseSensitive) else {
            return fail(.aorParse)
        }
        guard let callID = m.callID.map({ m.string($0) }) else { return fail(.callIDMissing) }
        guard let cseq = m.cseq.flatMap({ Int(m.string($0.numberRange)) }) else { return fail(.cseqMissing) }
        guard let (parsed, star, total, badQ) = contacts(m) else { return fail(.contactParse) }
        if badQ { return fail(.invalidQ) }
        if star {
            if total > 1 { return fail(.starContacts) }
            if let e = expiresHeader(m), e != 0 { return fail(.starExpires) }
        }
        // Path (RFC 3327)
        var path: String? = nil
        if cfg.usePath {
            // The Path header bodies as received, joined with "," (Kamailio's path vector).
            var values: [String] = []
            m.forEachHeader(.path) { values.append(m.string($0.value)) }
            if !values.isEmpty {
                // path_mode 2 without `Supported: path`: the contacts are saved all the same and the
                // reply is 420 (Kamailio 5.6's reg_reply_helper).
                path = values.joined(separator: ",")
            }
        }
        var received: String? = nil
        if let avp = cfg.receivedAVP, let v = ctx.avps[avp]?.last {
            switch v {
            case .string(let s) where !s.isEmpty: received = s
            default: break
            }
        }
        if let p = path {
            // The first Path URI must be a loose router; its `received` parameter (set by the edge
            // proxy's add_path_received) is the contact's received address with path_use_received.
            guard let first = RegistrarModule.firstPathURI(p), let u = SIPURI(first), u.param("lr") != nil else {
                ctx.logger.error("registrar: the first Path URI is not a loose router, not supported")
                return fail(.pathParse)
            }
            if cfg.pathUseReceived, let r = u.param("received") {
                guard let unescaped = PathModule.unescape(String(r.trimmingCharacters("\""))), SIPURI(unescaped) != nil else {
                    ctx.logger.error("registrar: malformed received parameter in the first Path URI")
                    return fail(.pathParse)
                }
                received = unescaped
            }
        }
        let table = RegistrarState.table(ctx, rt, name)
        let memOnly = flags & flagMemoryOnly != 0
        let allowMask = m.firstHeader(.allow) != nil ? MethodBits.parse(m.values(.allow).map { m.string($0) }.joined(separator: ",")) : -1
        let state = RegistrarState.of(ctx)
        // Most contacts share a few User-Agent and socket values: one copy of each per worker.
        let userAgent = state.intern(m.headerValue(.userAgent) ?? "n/a")  // Kamailio's value when there is none
        let socket = state.intern("\(ctx.received.proto.name):\(ctx.received.local.ip):\(ctx.received.local.port)")
        let qOverride = state.qOverride(for: m)

        var rc: Int
        var error: RegError? = nil
        if parsed.isEmpty {
            if star {
                let stored: Void? = ul.tryChange(table, aor, memoryOnly: memOnly) { list in
                    let gone = list.map(\.ruid)
                    list.removeAll()
                    return ((), [], gone)
                }
                guard stored != nil else { return fail(.insertFailed) }
                rc = 3
            } else {
                rc = 4
            }
        } else {
            // Expires of each contact first (423 rejects the whole request).
            var items: [(RegContact, Int)] = []
            for c in parsed {
                guard let e = expires(c, m, cfg) else {
                    bindings = contactHeader(RegistrarState.table(ctx, rt, name).contacts(aor), now: now, cfg: cfg)
                    return fail(.lowExpires)
                }
                items.append((c, e))
            }
            let replaceAll = flags & flagReplaceAll != 0
            // tryChange: nil when the shared store (usrloc on Redis) did not take the change (500). The
            // closure may run more than once there (a concurrent save of the AoR elsewhere).
            let stored = ul.tryChange(table, aor, memoryOnly: memOnly) { list -> (result: Int, changed: [String], deleted: [String]) in
                error = nil
                var changed: [String] = [], deleted: [String] = []
                var rc = 0
                // A new record takes every Contact as it comes (Kamailio's insert_contacts): a URI given
                // twice keeps the last one's values.
                let newRecord = list.isEmpty
                // max_contacts (not in replace mode): valid contacts after the update.
                if !replaceAll && cfg.maxContacts > 0 {
                    var num = list.filter { $0.isValid(at: now) }.count
                    for (c, e) in items {
                        if let i = list.firstIndex(where: { match($0, c) }) {
                            if list[i].callid == callID && cseq <= list[i].cseq { continue }
                            if e == 0 { num -= 1 }
                        } else if e != 0 { num += 1 }
                    }
                    if num > cfg.maxContacts { error = .tooMany; return (-1, [], []) }
                }
                for (c, e) in items {
                    let existing = list.firstIndex { match($0, c) }
                    if let i = existing, list[i].callid == callID, !(newRecord && changed.contains(list[i].ruid)) {
                        if cseq < list[i].cseq { error = .invalidCSeq; return (-1, changed, deleted) }
                        if cseq == list[i].cseq {
                            if list[i].lastModified + cfg.cseqDelay > now {
                                if e != 0 && replaceAll { break }
                                continue
                            }
                            error = .invalidCSeq
                            return (-1, changed, deleted)
                        }
                    }
                    var q = c.q ?? cfg.defaultQ
                    if let o = qOverride { q = o }
                    if let i = existing {
                        if e == 0 {
                            deleted.append(list[i].ruid)
                            list.remove(at: i)
                            rc = 3
                        } else {
                            list[i].contact = c.uri
                            list[i].expires = now + e
                            list[i].q = q
                            list[i].callid = callID
                            list[i].cseq = cseq
                            list[i].lastModified = now
                            list[i].received = received
                            list[i].path = path
                            list[i].cflags = Int(ctx.branchFlags)
                            list[i].flags = memOnly ? 1 : 0
                            list[i].userAgent = userAgent
                            list[i].socket = socket
                            list[i].methods = c.methods.map(MethodBits.parse) ?? allowMask
                            list[i].instance = c.instance
                            list[i].regId = c.regId
                            list[i].serverId = ul.serverID
                            changed.append(list[i].ruid)
                            if replaceAll {
                                let keep = list[i]
                                deleted.append(contentsOf: list.filter { $0.ruid != keep.ruid }.map(\.ruid))
                                list = [keep]
                            }
                            rc = 2
                        }
                    } else {
                        if e == 0 { continue }
                        let new = LocationContact(
                            ruid: ul.newRUID(), aor: aor, username: ul.useDomain ? user : aor,
                            domain: ul.useDomain ? host : nil, contact: c.uri, received: received, path: path,
                            expires: now + e, q: q, callid: callID, cseq: cseq, lastModified: now,
                            flags: memOnly ? 1 : 0, cflags: Int(ctx.branchFlags), userAgent: userAgent, socket: socket,
                            methods: c.methods.map(MethodBits.parse) ?? allowMask, instance: c.instance, regId: c.regId,
                            serverId: ul.serverID)
                        if replaceAll {
                            deleted.append(contentsOf: list.map(\.ruid))
                            list.removeAll()
                        }
                        list.append(new)
                        changed.append(new.ruid)
                        rc = 1
                    }
                    if replaceAll { break }
                }
                return (rc == 0 ? 1 : rc, changed, deleted)
            }
            guard let stored else { return fail(.insertFailed) }
            rc = stored
        }
        if let error {
            bindings = contactHeader(table.contacts(aor), now: now, cfg: cfg)
            return fail(error)
        }
        if !noReply && canReply {
            var headers = contactHeader(table.contacts(aor), now: now, cfg: cfg)
            var code = 200
            if let path, cfg.pathMode != 0 {
                if supports(m, "path") {
                    headers.append(contentsOf: Array("Path: \(path)\r\n".utf8))
                } else if cfg.pathMode == 2 {
                    code = RegError.pathUnsupported.code
                    headers.append(contentsOf: Array("Unsupported: path\r\nPath: \(path)\r\n".utf8))
                    headers.append(contentsOf: errorHeaders(.pathUnsupported, cfg))
                    ctx.logger.info("registrar save: \(RegError.pathUnsupported.info)")
                }
            }
            if sendReply(ctx, code: code, headers: headers) < 0 { return -1 }
        } else if noReply && flags & flagPrepareReply != 0 {
            RegistrarState.of(ctx).prepared = (ObjectIdentifier(m), 200, contactHeader(table.contacts(aor), now: now, cfg: cfg))
        }
        return rc
    }

    /// A stored contact is the one a REGISTER Contact names: same +sip.instance and reg-id when the
    /// UA sends them (RFC 5626), else the same URI.
    static func match(_ stored: LocationContact, _ c: RegContact) -> Bool {
        if let i = c.instance, !i.isEmpty, let si = stored.instance {
            return si == i && stored.regId == c.regId
        }
        return stored.contact == c.uri
    }
}

/// Per-worker registrar state: `set_q_override`, a reply prepared by save flag 0x10, and the
/// `$ulc` profiles filled by `reg_fetch_contacts`.
final class RegistrarState {
    var qOverrideValue: (ObjectIdentifier, Int)?
    var prepared: (ObjectIdentifier, Int, [UInt8])?
    var profiles: [String: (aor: String, table: String, contacts: [LocationContact])] = [:]
    /// The usrloc tables this worker used (tables live as long as the runtime): no shared lock to find one.
    var tables: [String: LocationTable] = [:]

    static func of(_ ctx: RouteContext) -> RegistrarState { ctx.worker.local(RegistrarState.self) { RegistrarState() } }

    /// Strings many contacts repeat (User-Agent, socket), kept once: a stored contact then shares the
    /// worker's copy instead of holding its own. Bounded: past `internLimit` values it is reset.
    private var interned: Set<String> = []
    static let internLimit = 4096

    func intern(_ s: String) -> String {
        if s.utf8.count <= 15 { return s }  // small strings live inline anyway
        if let i = interned.firstIndex(of: s) { return interned[i] }
        if interned.count >= Self.internLimit { interned.removeAll() }
        interned.insert(s)
        return s
    }

    /// The usrloc table `name`, from the worker's cache.
    static func table(_ ctx: RouteContext, _ rt: ModuleRuntime, _ name: String) -> LocationTable {
        let st = of(ctx)
        if let t = st.tables[name] { return t }
        let t = rt.usrloc.table(name)
        st.tables[name] = t
        return t
    }

    func qOverride(for m: SIPMessage) -> Int? {
        guard let (id, q) = qOverrideValue, id == ObjectIdentifier(m) else { return nil }
        return q
    }
}
