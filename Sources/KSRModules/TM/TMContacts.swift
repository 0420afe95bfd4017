import SIPCore
import StarlingKEMI
import Logging

/// Serial forking by q-value (Kamailio's t_serial.c): `t_load_contacts` moves the destination set into
/// the `contacts_avp` xavp ordered by q, `t_next_contacts` takes the highest-q group back as R-URI plus
/// branches, `t_next_contact_flow` takes a contact of the failed branch's `+sip.instance`.
///
/// Each xavp item has the fields `uri`, `dst_uri` (when set), `flags` (branch flags) and `q_flag` (1 on
/// the last item of its q group, as the xavp is read from its head). Branches carry no path, socket,
/// `+sip.instance` or ruid here yet, so those fields are never written.
enum TMContacts {
    /// A contact of the destination set.
    struct Contact {
        var uri: [UInt8]
        var dst: [UInt8]?
        var q: Int
        var flags: UInt32
    }

    /// `ki_t_load_contacts_mode(mode)`: 0 standard (q order), 1 proportional (a weighted random order of
    /// the contacts with q > 0, then the others). 1 on success or nothing to do, -1 on error.
    static func load(_ store: TMStore, _ ctx: RouteContext, mode: Int) -> Int {
        guard let name = store.settings.contactsXAVP else {
            ctx.logger.error("t_load_contacts: feature has been disabled - to enable define contacts_avp module parameter")
            return -1
        }
        guard mode == 0 || mode == 1 else {
            ctx.logger.error("t_load_contacts: invalid mode \(mode), use 0 (standard) or 1 (proportional)")
            return -1
        }
        guard ctx.routeType == .request || ctx.routeType == .failure, let m = ctx.message, m.isRequest else { return -1 }
        // Nothing to order with no extra branch (the Request-URI is always new here: see docs/TM.md).
        if ctx.branches.isEmpty { return 1 }
        var contacts = [Contact(uri: m.currentRequestURI, dst: ctx.destinationURI, q: ctx.requestURIQ,
                                flags: ctx.branchFlags)]
        for (i, b) in ctx.branches.enumerated() {
            contacts.append(Contact(uri: b, dst: nil, q: ctx.branchQValue(i), flags: 0))
        }
        // Increasing q; a contact goes after those with the same q (no path on our branches).
        var sorted: [Contact] = []
        for c in contacts {
            let at = sorted.firstIndex { $0.q > c.q } ?? sorted.count
            sorted.insert(c, at: at)
        }
        var items = ctx.xavps[name] ?? []
        if mode == 0 {
            // Added to the head one by one: the head ends up with the highest q. q_flag marks the first
            // of each increasing step, i.e. the last of its group when read from the head.
            for (k, c) in sorted.enumerated() {
                let flag = k > 0 && sorted[k - 1].q < c.q
                items.insert(item(c, qFlag: flag), at: 0)
            }
        } else {
            // Proportional: contacts with q > 0 drawn at random with weight q, each alone in its group,
            // then the contacts with q <= 0 (backups), in that order after what the xavp held.
            var pool = sorted.filter { $0.q > 0 }
            var ordered: [Contact] = []
            while !pool.isEmpty {
                let total = pool.reduce(0) { $0 + $1.q }
                var r = Int.random(in: 0..<total)
                var pick = 0
                for (i, c) in pool.enumerated() {
                    if r < c.q { pick = i; break }
                    r -= c.q
                }
                ordered.append(pool.remove(at: pick))
            }
            ordered += sorted.filter { $0.q <= 0 }
            items += ordered.map { item($0, qFlag: true) }
        }
        ctx.xavps[name] = items
        ctx.clearBranches()
        return 1
    }

    static func item(_ c: Contact, qFlag: Bool) -> [String: [KemiValue]] {
        var f: [String: [KemiValue]] = [
            "uri": [.string(String(decoding: c.uri, as: UTF8.self))],
            "flags": [.int(Int(c.flags))],
            "q_flag": [.int(qFlag ? 1 : 0)],
        ]
        if let d = c.dst, !d.isEmpty { f["dst_uri"] = [.string(String(decoding: d, as: UTF8.self))] }
        return f
    }

    static func string(_ item: [String: [KemiValue]], _ field: String) -> String? {
        guard case .string(let s)? = item[field]?.first else { return nil }
        return s
    }

    static func int(_ item: [String: [KemiValue]], _ field: String) -> Int {
        switch item[field]?.first {
        case .int(let i)?: return i
        case .string(let s)?: return Int(s) ?? 0
        default: return 0
        }
    }

    /// `t_next_contacts()`: the head contact becomes the R-URI (with its `$du` and branch flags), the
    /// rest of its q group become branches (one per `+sip.instance`; the others go to
    /// `contact_flows_avp`); the group leaves the xavp. 1, -2 when the xavp is empty, -1 on error.
    static func next(_ store: TMStore, _ ctx: RouteContext) -> Int {
        guard let name = store.settings.contactsXAVP else {
            ctx.logger.error("t_next_contacts: feature has been disabled - to enable define contacts_avp module parameter")
            return -1
        }
        guard ctx.routeType == .request || ctx.routeType == .failure, let m = ctx.message, m.isRequest else { return -1 }
        guard var items = ctx.xavps[name], !items.isEmpty else { return -2 }
        let head = items.removeFirst()
        guard let uri = string(head, "uri"), SIPURI(uri) != nil else {
            ctx.xavps[name] = items.isEmpty ? nil : items
            ctx.logger.error("t_next_contacts: invalid uri in \(name)")
            return -1
        }
        m.setRequestURI(Array(uri.utf8))
        ctx.destinationURI = string(head, "dst_uri").map { Array($0.utf8) }
        ctx.branchFlags = UInt32(truncatingIfNeeded: int(head, "flags"))
        if int(head, "q_flag") != 0 {
            ctx.xavps[name] = items.isEmpty ? nil : items
            return 1
        }
        var instances: [String] = []
        if let i = string(head, "instance") { instances.append(i) }
        if let flows = store.settings.contactFlowsXAVP { ctx.xavps[flows] = nil }
        while !items.isEmpty {
            let it = items.removeFirst()
            let last = int(it, "q_flag") != 0
            if let inst = string(it, "instance") {
                if instances.contains(inst) {
                    if let flows = store.settings.contactFlowsXAVP {
                        var f = it
                        f["q_flag"] = nil
                        ctx.xavps[flows, default: []].insert(f, at: 0)
                    }
                    if last { break }
                    continue
                }
                if !last { instances.append(inst) }
            }
            if let u = string(it, "uri"), SIPURI(u) != nil {
                ctx.appendBranch(Array(u.utf8))
            } else {
                ctx.xavps[name] = items.isEmpty ? nil : items
                ctx.logger.error("t_next_contacts: appending branch failed")
                return -1
            }
            if last { break }
        }
        ctx.xavps[name] = items.isEmpty ? nil : items
        return 1
    }

    /// `t_next_contact_flow()`: a contact from `contact_flows_avp` with the `+sip.instance` of the branch
    /// that failed. Branches carry no instance yet, so with the xavp configured this is -2 (nothing to
    /// do, as Kamailio answers for a branch without an instance); -1 when the xavp is not configured.
    static func nextFlow(_ store: TMStore, _ ctx: RouteContext) -> Int {
        guard store.settings.contactFlowsXAVP != nil else {
            ctx.logger.error("t_next_contact_flow: feature has been disabled - to enable define contact_flows_avp module parameter")
            return -1
        }
        return -2
    }
}
