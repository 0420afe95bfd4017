import SIPCore
import SIPTransport
import StarlingKEMI
import Logging

/// `KSR.registrar` (REFERENCE §2.11): save, lookup and friends over usrloc (`ModuleRuntime.usrloc`).
/// `KSR.usrloc` has no KEMI exports.
enum RegistrarModule {
    /// The AOR of a request's Request-URI (or `uri`), or the To URI of a reply.
    static func aor(_ ctx: RouteContext, _ rt: ModuleRuntime, _ cfg: RegistrarConfig, uri: String?) -> String? {
        let text: String
        if let uri, !uri.isEmpty { text = uri } else {
            guard let m = ctx.message else { return nil }
            if m.isRequest { text = String(decoding: m.currentRequestURI, as: UTF8.self) } else {
                guard let to = m.to else { return nil }
                text = m.string(to.uri)
            }
        }
        return RegistrarSave.aor(text, useDomain: rt.usrloc.useDomain, caseSensitive: cfg.caseSensitive)?.aor
    }

    /// The valid contacts of an AOR, filtered by method when method_filtering is on and the request is
    /// initial. (contacts, any existed before the method filter)
    static func candidates(_ ctx: RouteContext, _ rt: ModuleRuntime, _ cfg: RegistrarConfig, table: String, aor: String)
        -> (contacts: [LocationContact], found: Bool) {
        let now = rt.clock.unixSeconds
        let all = RegistrarState.table(ctx, rt, table).contacts(aor).filter { $0.isValid(at: now) }
        guard cfg.methodFiltering, let m = ctx.message, m.isRequest, !(m.toTag.map { !$0.isEmpty } ?? false) else {
            return (all, !all.isEmpty)
        }
        let bit = MethodBits.bit(m.method)
        return (all.filter { $0.methods == -1 || $0.methods & bit != 0 }, !all.isEmpty)
    }

    /// The first URI of a Path value list.
    static func firstPathURI(_ path: String) -> String? {
        guard let first = path.split(separator: ",").first else { return nil }
        var s = Substring(first).trimmingCharacters(" \t")
        if let lt = s.firstIndex(of: "<"), let gt = s.firstIndex(of: ">"), lt < gt {
            s = s[s.index(after: lt)..<gt]
        }
        return String(s)
    }

    /// The next hop of a stored Path and the Route set to add: the first Path URI and the whole Path;
    /// with path_check_local, a first URI that is this server is skipped (the next one, or none: the
    /// contact itself).
    static func pathHop(_ ctx: RouteContext, _ cfg: RegistrarConfig, _ path: String) -> (hop: String?, route: String)? {
        guard let hop = firstPathURI(path) else { return nil }
        guard cfg.pathCheckLocal, let u = SIPURI(hop),
              ctx.services.isMyself(host: u.host, port: nil, proto: nil) else { return (hop, path) }
        let rest = path.split(separator: ",", maxSplits: 1).dropFirst().first.map { String(String($0).trimmingCharacters(" \t")) } ?? ""
        return rest.isEmpty ? (nil, "") : (firstPathURI(rest), rest)
    }

    /// Adds the Path of a contact as Route headers (before the first Route, else after the last Via).
    static func addRoutes(_ m: SIPMessage, _ path: String) {
        let line = Array("Route: \(path)\r\n".utf8)
        if let r = m.firstHeader(.route) {
            m.addHeaderLine(line, at: .before(r))
        } else if let v = m.headerFields.last(where: { $0.kind == .via }) {
            m.addHeaderLine(line, at: .after(v))
        } else {
            m.addHeaderLine(line, at: .first)
        }
    }

    /// `lookup(table[, uri])`: 1 found (R-URI = best contact, others appended as branches), -1 none,
    /// -2 contacts exist but none allows the method, -3 error.
    static func lookup(_ ctx: RouteContext, _ rt: ModuleRuntime, _ cfg: RegistrarConfig, table: String, uri: String?,
                       toDestinationSet: Bool = false) -> Int {
        guard let m = ctx.message, m.isRequest else { return -3 }
        guard let aor = aor(ctx, rt, cfg, uri: uri) else { return -3 }
        let (list, found) = candidates(ctx, rt, cfg, table: table, aor: aor)
        if list.isEmpty { return found ? -2 : -1 }
        var rest = list[...]
        if !toDestinationSet, let first = rest.popFirst() {
            m.setRequestURI(Array(first.contact.utf8))
            ctx.requestURIQ = first.q
            ctx.branchFlags = UInt32(truncatingIfNeeded: first.cflags)
            if let p = first.path, !p.isEmpty, let (hop, route) = pathHop(ctx, cfg, p) {
                // path_use_received: the received address (the Path's) is the next hop.
                if cfg.pathUseReceived, let r = first.received, !r.isEmpty {
                    ctx.destinationURI = Array(r.utf8)
                } else {
                    ctx.destinationURI = hop.map { Array($0.utf8) }
                }
                if !route.isEmpty { addRoutes(m, route) }
            } else if let r = first.received, !r.isEmpty {
                ctx.destinationURI = Array(r.utf8)
            } else {
                ctx.destinationURI = nil
            }
            if !cfg.appendBranches { return 1 }
        }
        for c in rest { appendContact(ctx, c, cfg) }
        return 1
    }

    /// Adds a contact to the destination set: its URI and q, its next hop (first Path URI, or the
    /// received address with path_use_received; else the received address) and its branch flags.
    static func appendContact(_ ctx: RouteContext, _ c: LocationContact, _ cfg: RegistrarConfig) {
        ctx.appendBranch(Array(c.contact.utf8), q: c.q)
        let index = ctx.branches.count - 1
        if let p = c.path, !p.isEmpty, let (hop, _) = pathHop(ctx, cfg, p) {
            if cfg.pathUseReceived, let r = c.received, !r.isEmpty {
                ctx.branchDestinations[index] = Array(r.utf8)
            } else if let hop {
                ctx.branchDestinations[index] = Array(hop.utf8)
            }
        } else if let r = c.received, !r.isEmpty {
            ctx.branchDestinations[index] = Array(r.utf8)
        }
        if c.cflags != 0 { ctx.extraBranchFlags[index] = UInt32(truncatingIfNeeded: c.cflags) }
    }

    /// `lookup_branches(table)`: lookup on the R-URI and on every appended branch (each replaced by its
    /// contacts). The R-URI's return code, or 1 if a branch found contacts.
    static func lookupBranches(_ ctx: RouteContext, _ rt: ModuleRuntime, _ cfg: RegistrarConfig, table: String) -> Int {
        let old = ctx.branches
        let oldQ = (0..<old.count).map { ctx.branchQValue($0) }
        let oldDst = ctx.branchDestinations, oldFlags = ctx.extraBranchFlags
        ctx.clearBranches()
        var rc = lookup(ctx, rt, cfg, table: table, uri: nil)
        for (i, b) in old.enumerated() {
            let text = String(decoding: b, as: UTF8.self)
            let aor = RegistrarSave.aor(text, useDomain: rt.usrloc.useDomain, caseSensitive: cfg.caseSensitive)?.aor
            let list = aor.map { candidates(ctx, rt, cfg, table: table, aor: $0).contacts } ?? []
            if list.isEmpty {
                // Not a registered AOR: the branch stays as it was.
                ctx.appendBranch(b, q: oldQ[i])
                if let d = oldDst[i] { ctx.branchDestinations[ctx.branches.count - 1] = d }
                if let f = oldFlags[i] { ctx.extraBranchFlags[ctx.branches.count - 1] = f }
                continue
            }
            for c in list { appendContact(ctx, c, cfg) }
            if rc < 0 { rc = 1 }
        }
        return rc
    }

    /// `registered*`: 1 if the AOR has a valid contact (matching the regcfg xavp fields asked by
    /// `matchOption`: 1 Call-ID, 2 received, 4 contact), else -1.
    static func registered(_ ctx: RouteContext, _ rt: ModuleRuntime, _ cfg: RegistrarConfig, table: String, uri: String?,
                           matchOption: Int = 0) -> Int {
        guard let aor = aor(ctx, rt, cfg, uri: uri) else { return -1 }
        let now = rt.clock.unixSeconds
        let regcfg = ctx.xavps["regcfg"]?.first ?? [:]
        func field(_ n: String) -> String? {
            guard let v = regcfg[n]?.first else { return nil }
            switch v {
            case .string(let s): return s
            case .int(let i): return String(i)
            case .null: return nil
            }
        }
        let found = RegistrarState.table(ctx, rt, table).contacts(aor).contains { c in
            guard c.isValid(at: now) else { return false }
            if matchOption & 1 != 0, let v = field("match_callid"), v != c.callid { return false }
            if matchOption & 2 != 0, let v = field("match_received"), v != (c.received ?? "") { return false }
            if matchOption & 4 != 0, let v = field("match_contact"), v != c.contact { return false }
            return true
        }
        return found ? 1 : -1
    }

    /// `unregister(table, uri[, ruid])`: 1 done; -1 bad uri; -3 ruid not found.
    static func unregister(_ ctx: RouteContext, _ rt: ModuleRuntime, _ cfg: RegistrarConfig, table: String, uri: String,
                           ruid: String?) -> Int {
        let t = RegistrarState.table(ctx, rt, table)
        if let ruid, !ruid.isEmpty {
            if !uri.isEmpty {
                guard let aor = aor(ctx, rt, cfg, uri: uri) else { return -1 }
                let removed = rt.usrloc.change(t, aor) { list -> (result: Bool, changed: [String], deleted: [String]) in
                    guard let i = list.firstIndex(where: { $0.ruid == ruid }) else { return (false, [], []) }
                    list.remove(at: i)
                    return (true, [], [ruid])
                }
                return removed ? 1 : -3
            }
            for (aor, contacts) in t.snapshot() where contacts.contains(where: { $0.ruid == ruid }) {
                rt.usrloc.change(t, aor) { list -> (result: Void, changed: [String], deleted: [String]) in
                    list.removeAll { $0.ruid == ruid }
                    return ((), [], [ruid])
                }
                return 1
            }
            return -3
        }
        let aorText: String?
        if uri.isEmpty, let m = ctx.message, let to = m.to { aorText = m.string(to.uri) } else { aorText = uri }
        guard let text = aorText,
              let aor = RegistrarSave.aor(text, useDomain: rt.usrloc.useDomain, caseSensitive: cfg.caseSensitive)?.aor
        else { return -1 }
        rt.usrloc.removeAll(t, aor)
        return 1
    }

    /// `reg_fetch_contacts(table, uri, profile)`: 1 when the AOR has contacts (loaded into
    /// `$ulc(profile=>...)`), -1 otherwise.
    static func fetch(_ ctx: RouteContext, _ rt: ModuleRuntime, _ cfg: RegistrarConfig, table: String, uri: String,
                      profile: String) -> Int {
        let state = RegistrarState.of(ctx)
        state.profiles[profile] = nil
        guard let aor = aor(ctx, rt, cfg, uri: uri) else { return -1 }
        let now = rt.clock.unixSeconds
        let list = RegistrarState.table(ctx, rt, table).contacts(aor).filter { $0.isValid(at: now) }
        guard !list.isEmpty else { return -1 }
        state.profiles[profile] = (aor, table, list)
        return 1
    }

    static func exports(_ rt: ModuleRuntime) -> [KemiExport] {
        let cfg = RegistrarConfig(rt.config)
        return [
            KemiExport("registrar", "save", [.str, .int], returns: .int, compat: "request and failure routes only (not on replies); no GRUU or outbound (RFC 5626); flag 0x08 has no effect (no expires_range)") { ctx, args in
                .int(RegistrarSave.save(ctx, rt, cfg, table: args.str(0), flags: args.int(1), uri: nil))
            },
            KemiExport("registrar", "save_uri", [.str, .int, .str], returns: .int, compat: "as save") { ctx, args in
                .int(RegistrarSave.save(ctx, rt, cfg, table: args.str(0), flags: args.int(1), uri: args.str(2)))
            },
            KemiExport("registrar", "lookup", [.str], returns: .int, compat: "Path of extra branches: next hop only (no Route headers)") { ctx, args in
                .int(lookup(ctx, rt, cfg, table: args.str(0), uri: nil))
            },
            KemiExport("registrar", "lookup_uri", [.str, .str], returns: .int) { ctx, args in
                .int(lookup(ctx, rt, cfg, table: args.str(0), uri: args.str(1)))
            },
            KemiExport("registrar", "lookup_to_dset", [.str, .str], returns: .int, compat: "every contact becomes a branch; the R-URI is kept") { ctx, args in
                .int(lookup(ctx, rt, cfg, table: args.str(0), uri: args.str(1), toDestinationSet: true))
            },
            KemiExport("registrar", "lookup_branches", [.str], returns: .int) { ctx, args in
                .int(lookupBranches(ctx, rt, cfg, table: args.str(0)))
            },
            KemiExport("registrar", "registered", [.str], returns: .int) { ctx, args in
                .int(registered(ctx, rt, cfg, table: args.str(0), uri: nil))
            },
            KemiExport("registrar", "registered_uri", [.str, .str], returns: .int) { ctx, args in
                .int(registered(ctx, rt, cfg, table: args.str(0), uri: args.str(1)))
            },
            KemiExport("registrar", "registered_flags", [.str, .str, .int], returns: .int) { ctx, args in
                .int(registered(ctx, rt, cfg, table: args.str(0), uri: args.str(1), matchOption: args.int(2)))
            },
            KemiExport("registrar", "registered_action", [.str, .str, .int, .int], returns: .int, compat: "match_action is ignored (no xavp_rcd)") { ctx, args in
                .int(registered(ctx, rt, cfg, table: args.str(0), uri: args.str(1), matchOption: args.int(2)))
            },
            KemiExport("registrar", "unregister", [.str, .str], returns: .int) { ctx, args in
                .int(unregister(ctx, rt, cfg, table: args.str(0), uri: args.str(1), ruid: nil))
            },
            KemiExport("registrar", "unregister_ruid", [.str, .str, .str], returns: .int) { ctx, args in
                .int(unregister(ctx, rt, cfg, table: args.str(0), uri: args.str(1), ruid: args.str(2)))
            },
            KemiExport("registrar", "set_q_override", [.str], returns: .int) { ctx, args in
                guard let m = ctx.message, let v = Double(args.str(0)), v >= 0, v <= 1 else { return .int(-1) }
                RegistrarState.of(ctx).qOverrideValue = (ObjectIdentifier(m), Int((v * 1000).rounded()))
                return .int(1)
            },
            KemiExport("registrar", "add_sock_hdr", [.str], returns: .int) { ctx, args in
                guard let m = ctx.message, m.isRequest, !args.str(0).isEmpty else { return .int(-1) }
                let l = ctx.received.local
                m.addHeaderLine(Array("\(args.str(0)): \(ctx.received.proto.name):\(l.uriHost):\(l.port)\r\n".utf8), at: .last)
                return .int(1)
            },
            KemiExport("registrar", "reg_send_reply", [], returns: .int) { ctx, _ in
                let st = RegistrarState.of(ctx)
                guard let m = ctx.message, let (id, code, headers) = st.prepared, id == ObjectIdentifier(m) else { return .int(-1) }
                st.prepared = nil
                return .int(RegistrarSave.sendReply(ctx, code: code, headers: headers))
            },
            KemiExport("registrar", "reg_fetch_contacts", [.str, .str, .str], returns: .int) { ctx, args in
                .int(fetch(ctx, rt, cfg, table: args.str(0), uri: args.str(1), profile: args.str(2)))
            },
            KemiExport("registrar", "reg_free_contacts", [.str], returns: .int) { ctx, args in
                RegistrarState.of(ctx).profiles[args.str(0)] = nil
                return .int(1)
            },
        ]
    }

    /// `$ulc(profile=>attr)` / `$(ulc(profile=>attr)[i])`.
    static func ulc(_ ctx: RouteContext, profile: String, attr: String, index: Int) -> KemiValue {
        guard let p = RegistrarState.of(ctx).profiles[profile] else { return .null }
        switch attr {
        case "aor": return .string(p.aor)
        case "domain": return .string(p.table)
        case "aorhash":
            var h: UInt32 = 0
            for b in p.aor.utf8 { h = h &* 31 &+ UInt32(b) }
            return .int(Int(h))
        case "count": return .int(p.contacts.count)
        default: break
        }
        guard index >= 0 && index < p.contacts.count else { return .null }
        let c = p.contacts[index]
        switch attr {
        case "addr": return .string(c.contact)
        case "path": return .string(c.path ?? "")
        case "received": return .string(c.received ?? "")
        case "expires": return .int(c.expires)
        case "callid": return .string(c.callid)
        case "q": return .int(c.q)
        case "cseq": return .int(c.cseq)
        case "flags": return .int(c.flags)
        case "cflags": return .int(c.cflags)
        case "user_agent": return .string(c.userAgent)
        case "socket": return c.socket.map { .string($0) } ?? .null
        case "modified": return .int(c.lastModified)
        case "methods": return .int(c.methods)
        case "ruid": return .string(c.ruid)
        case "regid": return .int(c.regId)
        case "instance": return c.instance.map { .string($0) } ?? .null
        case "conid": return c.connectionId < 0 ? .null : .int(c.connectionId)
        case "server_id": return .int(c.serverId)
        default: return .null
        }
    }
}
