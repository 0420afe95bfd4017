import SIPCore
import SIPTransport
import SIPTransaction
import StarlingKEMI
import Synchronization
import Logging

/// Creating transactions and sending their branches (Kamailio's t_lookup.c / t_fwd.c).
enum TMRelay {
    /// The current transaction of the route, if any: the one place a route's transaction is cast back
    /// to tm's cell.
    @inline(__always)
    static func current(_ ctx: RouteContext) -> TMCell? { ctx.transaction as? TMCell }

    /// The server transaction the route's request `m` matches (a retransmission, or the INVITE an ACK
    /// belongs to).
    static func lookup(_ store: TMStore, _ ctx: RouteContext, _ m: SIPMessage) -> TMCell? {
        guard let key = store.serverKey(ctx, m), case .server(let cell)? = store.table.lookup(key) else { return nil }
        return cell
    }

    /// The INVITE transaction the route's CANCEL `m` targets.
    static func lookupCancelled(_ store: TMStore, _ ctx: RouteContext, _ m: SIPMessage) -> TMCell? {
        guard m.method == .cancel, let key = store.serverKey(ctx, m), let inv = key.cancelledInviteKey,
              case .server(let cell)? = store.table.lookup(inv) else { return nil }
        return cell
    }

    /// A retransmission of the request of `cell` arrived: resend the last reply.
    static func absorb(_ store: TMStore, _ ctx: RouteContext, _ cell: TMCell) {
        var out = TMOutbox()
        cell.locked {
            guard !cell.freed else { return }
            TMCore.runServer(store, cell, cell.server.requestRetransmitted(), &out)
        }
        out.flush(ctx)
    }

    /// `t_newtran`: 1 created, 0 retransmission (absorbed), -10 the transaction exists already, -1 error.
    static func newTransaction(_ store: TMStore, _ ctx: RouteContext) -> Int {
        if current(ctx) != nil { return -10 }
        guard ctx.routeType == .request, let m = ctx.message, m.isRequest, m.method != .ack,
              let key = store.serverKey(ctx, m) else { return -1 }
        if case .server(let existing)? = store.table.lookup(key) {
            absorb(store, ctx, existing)
            return 0
        }
        var config = store.timerConfiguration
        let ws = store.workerState(ctx)
        ws.pending(for: m)
        if let (inv, non) = ws.pendingFR {
            if inv > 0 { config.timerC = .milliseconds(inv) }
            if non > 0 { config.timerB = .milliseconds(non); config.timerF = .milliseconds(non) }
        }
        if let (t1, t2) = ws.pendingRetr {
            if t1 > 0 { config.t1 = .milliseconds(t1) }
            if t2 > 0 { config.t2 = .milliseconds(t2) }
        }
        let cell = TMCell(id: store.makeID(), key: key, request: m, received: ctx.received,
                          replyDestination: MessageTools.replyDestination(ctx), config: config, timers: store.queue(ctx))
        cell.messageFlags = ctx.messageFlags
        let sw = ws.pendingSwitches
        cell.disable6xx = sw.disable6xx ?? store.settings.disable6xxBlock
        cell.disableFailover = sw.disableFailover ?? !store.settings.useDNSFailover
        cell.disableInternalReply = sw.disableInternalReply ?? false
        cell.avps = ctx.avps
        cell.xavps = ctx.xavps
        for (path, name) in ws.pendingRoutes { cell[keyPath: path] = name }
        ws.pendingRoutes.removeAll()
        ws.pendingFR = nil
        if case .server(let existing)? = store.table.insert(.server(cell), for: key) {
            absorb(store, ctx, existing)
            return 0
        }
        store.liveCells.wrappingAdd(1, ordering: .relaxed)
        // A safety net: a transaction the script never answers is freed after its longest life.
        let life = max(config.timerB, config.timerC) + config.timerH + config.timerD + .seconds(5)
        cell.locked { cell.startTimer(.B, side: TMCore.lifetime, after: life) }
        ctx.transaction = cell
        for h in store.hooks.created { h(ctx, cell) }
        return 1
    }

    /// `t_relay()`: request route (creates the transaction, 100 Trying for INVITE, one branch per
    /// destination) or failure route (new branches: serial forking). 1 on success, a negative error
    /// code otherwise (no reply is sent: the script replies).
    static func relay(_ store: TMStore, _ ctx: RouteContext, uri: [UInt8]? = nil, sendTrying: Bool = true,
                      noFailover: Bool = false) -> Int {
        guard let m = ctx.message, m.isRequest else { return -1 }
        switch ctx.routeType {
        case .failure:
            guard let cell = current(ctx) else { return -1 }
            return addBranches(store, ctx, cell, uri: uri, noFailover: noFailover)
        case .request:
            break
        default:
            return -1
        }
        if m.method == .ack {
            if let cell = lookup(store, ctx, m) {
                var out = TMOutbox()
                cell.locked { TMCore.runServer(store, cell, cell.server.ackReceived(), &out) }
                out.flush(ctx)
                // The ACK of a negative reply ends here (hop by hop); an ACK passed up is forwarded.
                guard out.events.contains(where: { if case .ackPassed = $0 { return true } else { return false } })
                else { return 1 }
            }
            return Forwarder.forward(ctx, uri: uri)
        }
        if m.method == .cancel {
            guard let inv = lookupCancelled(store, ctx, m) else { return Forwarder.forward(ctx, uri: uri) }
            return cancel(store, ctx, inv)
        }
        let created: Int
        if let cell = current(ctx) {
            created = cell.locked { cell.branches.isEmpty } ? 1 : -10
            if created < 0 { return addBranches(store, ctx, cell, uri: uri, noFailover: noFailover) }
        } else {
            created = newTransaction(store, ctx)
        }
        if created == 0 { return 1 }
        guard created > 0, let cell = current(ctx) else { return created }
        let ws = store.workerState(ctx)
        let auto100 = (ws.pendingMessage === m ? ws.auto100 : nil) ?? store.settings.autoInv100
        if cell.isInvite && sendTrying && auto100 && !cell.locked({ cell.server.lastStatus > 0 }) {
            _ = TMReply.reply(store, ctx, cell, 100, store.settings.autoInv100Reason)
            ctx.replied = false
        }
        return addBranches(store, ctx, cell, uri: uri, noFailover: noFailover)
    }

    /// `t_replicate(uri)`: a stateful copy of the request to `uri` (request route: the transaction is
    /// created if needed, no 100 Trying). The copy's replies are absorbed: never relayed, no onreply or
    /// failure route, not candidates for the reply upstream. 1, or t_relay's negative codes.
    static func replicate(_ store: TMStore, _ ctx: RouteContext, uri: [UInt8]?) -> Int {
        guard let m = ctx.message, m.isRequest, m.method != .ack, m.method != .cancel else { return -1 }
        guard ctx.routeType == .request || ctx.routeType == .failure else { return -1 }
        if current(ctx) == nil {
            let r = newTransaction(store, ctx)
            if r == 0 { return 1 }
            if r < 0 { return r }
        }
        guard let cell = current(ctx) else { return -1 }
        let target = uri ?? ctx.destinationURI ?? m.currentRequestURI
        let r = sendBranch(store, ctx, cell, ruri: nil, dst: target, replicate: true)
        if r < 0 { ctx.lastError = r }
        return r
    }

    /// A CANCEL for a known INVITE transaction: 200 to the CANCEL (its own transaction), CANCEL on every
    /// pending branch; the 487s come back through the response context.
    static func cancel(_ store: TMStore, _ ctx: RouteContext, _ inv: TMCell) -> Int {
        let st = newTransaction(store, ctx)
        if st == 0 { return 1 }
        if let cc = current(ctx), cc !== inv {
            _ = TMReply.reply(store, ctx, cc, 200, "canceling")
        }
        var out = TMOutbox()
        inv.locked {
            inv.canceled = true
            TMCore.cancelPending(store, inv, except: nil, &out)
        }
        out.flush(ctx)
        // A suspended INVITE: its blind branch ends with a faked 487 now (Kamailio's cancel_b_method
        // fake reply), so the caller gets 487 without waiting for the continuation or fr_timer.
        if inv.locked({ inv.suspended }) {
            TMSuspend.cancelBlind(store, ctx, inv)
            TMSuspend.cancelSuspendedReply(store, inv)
        }
        return 1
    }

    /// Sends the current destination set on new branches of `cell`: `$du` or the Request-URI, then the
    /// appended branches (parallel forking). 1 if at least one went out.
    static func addBranches(_ store: TMStore, _ ctx: RouteContext, _ cell: TMCell, uri: [UInt8]? = nil,
                            noFailover: Bool = false) -> Int {
        // The R-URI branch keeps the message's R-URI and goes to `uri`, else $du. Extra branches may
        // carry their own next hop and branch flags (registrar lookup). All read before any branch route runs.
        let firstDestination = uri ?? ctx.destinationURI
        let (extra, extraDestinations, extraFlags) = (ctx.branches, ctx.branchDestinations, ctx.extraBranchFlags)
        let inFailure = ctx.routeType == .failure
        let first: Int
        if !inFailure {
            // The transaction keeps the request as relayed (Kamailio's t->uas.request: cloned by t_newtran,
            // lumps and flags updated by t_forward_nonack): failure routes start from it.
            let relayed = UncheckedRef(relaying: ctx.state)
            let (flags, avps, xavps) = (ctx.messageFlags, ctx.avps, ctx.xavps)
            first = cell.locked {
                cell.relayed = relayed
                cell.messageFlags = flags
                cell.avps = avps
                cell.xavps = xavps
                if noFailover { cell.disableFailover = true }
                return cell.branches.count
            }
        } else {
            first = cell.locked {
                if noFailover { cell.disableFailover = true }
                return cell.branches.count
            }
        }
        var sent = 0
        var lastError = SERError.badAddress
        func count(_ r: Int) { if r > 0 { sent += 1 } else { lastError = r } }
        count(sendBranch(store, ctx, cell, ruri: nil, dst: firstDestination))
        for (i, b) in extra.enumerated() {
            count(sendBranch(store, ctx, cell, ruri: b, dst: extraDestinations[i], branchFlags: extraFlags[i]))
        }
        if sent > 0 && inFailure {
            cell.locked {
                cell.branchesAddedInFailure = true
                cell.legStart = first
            }
        }
        if sent == 0 {
            ctx.lastError = lastError
            if !inFailure { cell.locked { cell.relayError = lastError } }
        }
        return sent > 0 ? 1 : lastError
    }

    /// Builds, registers and sends one branch: `ruri` (nil: the message's) to `dst` (nil: the R-URI).
    /// The branch route runs first with this branch's view: its R-URI, `$du` and header edits apply to
    /// this branch only (the request's edits are restored afterwards). 1, or a negative error code.
    static func sendBranch(_ store: TMStore, _ ctx: RouteContext, _ cell: TMCell, ruri: [UInt8]?, dst: [UInt8]?,
                           branchFlags: UInt32? = nil, replicate: Bool = false) -> Int {
        guard let m = ctx.message else { return -1 }
        // The branch's index (what `$T_branch_idx` shows), its id number, and the branch route.
        let (index, serial, onBranch) = cell.locked {
            (cell.branches.count, cell.nextBranchSerial(), replicate ? "" : cell.onBranch)
        }
        // `add_rr_param` in a branch route applies to that branch only (Kamailio's branch lumps).
        let rrParams = ctx.recordRouteParams
        defer { ctx.recordRouteParams = rrParams }
        var ruri = ruri
        var dst = dst
        var flags = index == 0 || ruri == nil ? ctx.branchFlags : (branchFlags ?? 0)
        if !onBranch.isEmpty, let run = ctx.runRoute {
            let ws = store.workerState(ctx)
            // Not a whole-state swap: the branch route runs on the request itself (Kamailio's
            // branch_route), so what it does to flags and AVPs stays; only this branch's own view
            // ($du, $bf, R-URI and header edits, add_rr_param) goes back to the request's afterwards.
            let savedType = ctx.routeType, savedDrop = ctx.dropRequested
            let savedEdits = m.edits, savedDst = ctx.destinationURI, savedFlags = ctx.branchFlags
            if let ruri { m.setRequestURI(ruri) }
            ctx.destinationURI = dst
            ctx.branchFlags = flags
            ctx.routeType = .branch
            ctx.dropRequested = false
            ws.branchIndex = index
            run(ctx, onBranch)
            let dropped = ctx.dropRequested
            ctx.routeType = savedType
            ctx.dropRequested = savedDrop
            ws.branchIndex = -1
            // What the branch route left is this branch's; the request gets its own state back.
            ruri = m.edits.requestURI
            dst = ctx.destinationURI
            flags = ctx.branchFlags
            let branchEdits = m.edits
            m.edits = savedEdits
            ctx.destinationURI = savedDst
            ctx.branchFlags = savedFlags
            if dropped { return SERError.send }
            return withEdits(m, branchEdits) {
                buildAndSend(store, ctx, cell, serial: serial, ruri: ruri, dst: dst, flags: flags, replicate: replicate)
            }
        }
        return buildAndSend(store, ctx, cell, serial: serial, ruri: ruri, dst: dst, flags: flags, replicate: replicate)
    }

    /// Runs `body` with `edits` on the message, then puts its edits back.
    static func withEdits<R>(_ m: SIPMessage, _ edits: SIPEdits, _ body: () -> R) -> R {
        let saved = m.edits
        m.edits = edits
        defer { m.edits = saved }
        return body()
    }

    /// Resolves the next hop, serializes the request with the branch id number `serial` and sends it
    /// (RequestBuilder: the same Via, advertised address, rport and Record-Route as `forward`).
    static func buildAndSend(_ store: TMStore, _ ctx: RouteContext, _ cell: TMCell, serial: Int, ruri: [UInt8]?,
                             dst: [UInt8]?, flags: UInt32, replicate: Bool) -> Int {
        guard let m = ctx.message else { return -1 }
        let hop: RequestBuilder.Hop
        do throws(RequestBuilder.Failure) {
            hop = try RequestBuilder.hop(ctx, to: dst ?? ruri ?? m.currentRequestURI, caller: replicate ? "t_replicate" : "t_relay")
        } catch {
            return error.code
        }
        // DNS failover: the other addresses of the next hop (only a name can have several).
        var alternates: [SocketAddress] = []
        if !replicate, store.settings.useDNSFailover, SocketAddress(ip: hop.uri.host, port: 0) == nil,
           !cell.locked({ cell.disableFailover }) {
            alternates = Forwarder.targets(ctx, hop.uri).dropFirst().map { $0.address }
        }
        let branchID = store.branchID(cell, serial)
        let bytes = RequestBuilder.forwarded(ctx, m, hop: hop, branch: branchID, requestURI: ruri)
        guard RequestBuilder.passesOnSend(ctx, hop, bytes) else { return SERError.send }
        var branch = makeBranch(cell, branchID: branchID, request: bytes, to: hop.destination, proto: hop.proto,
                                local: hop.local.socket)
        branch.uri = ruri ?? m.currentRequestURI
        branch.flags = flags
        branch.replicated = replicate
        branch.alternates = alternates
        return register(store, ctx, cell, branch)
    }

    static func makeBranch(_ cell: TMCell, branchID: String, request: [UInt8], to destination: SocketAddress,
                           proto: SIPTransportProtocol, local: SocketAddress?) -> TMBranch {
        // The key a reply's CSeq gives: the method as a known one, or its name.
        let method = cell.requestMethod
        let key = method == .other ? TransactionKey.client(branch: branchID, method: cell.method)
            : TransactionKey.client(branch: branchID, method: method)
        // A branch over TCP/TLS/WS is not retransmitted (no Timer A/E), Timers D/K are zero (RFC 3261 §17.1).
        let transport = TransportReliability(proto)
        let machine: ClientMachine = cell.isInvite
            ? .invite(InviteClientTransaction(transport: transport, timers: cell.config, usesTimerC: true))
            : .nonInvite(NonInviteClientTransaction(transport: transport, timers: cell.config))
        return TMBranch(key: key, branchID: branchID, machine: machine, request: request, destination: destination,
                        proto: proto, local: local)
    }

    /// Adds the branch to the cell and the table and sends it. 1, or E_SEND.
    static func register(_ store: TMStore, _ ctx: RouteContext, _ cell: TMCell, _ branch: TMBranch) -> Int {
        var out = TMOutbox()
        let index = cell.locked { append(store, cell, branch, &out) }
        return send(store, ctx, cell, index, branch, &out)
    }

    /// Appends a branch to the cell and its key to the table and starts its machine (cell locked).
    static func append(_ store: TMStore, _ cell: TMCell, _ branch: TMBranch, _ out: inout TMOutbox) -> Int {
        let i = cell.branches.count
        cell.branches.append(branch)
        store.table.insert(.client(cell, i), for: branch.key)
        TMCore.runBranch(store, cell, i, cell.branches[i].machine.requestSent(), &out)
        return i
    }

    /// Sends an appended branch (outside the lock). 1, or E_SEND (the branch then ends with 477).
    static func send(_ store: TMStore, _ ctx: RouteContext, _ cell: TMCell, _ index: Int, _ branch: TMBranch,
                     _ out: inout TMOutbox) -> Int {
        if !ctx.sender.send(branch.request, to: branch.destination, proto: branch.proto, from: branch.local) {
            cell.locked {
                cell.branches[index].finalStatus = 477
                TMCore.runBranch(store, cell, index, cell.branches[index].machine.transportError(), &out)
            }
            out.events.removeAll()
            out.flush(ctx)
            return SERError.send
        }
        out.flush(ctx)
        return 1
    }

    /// DNS failover (Kamailio's use_dns_failover): branch `i` timed out or got a 503 and its next hop has
    /// addresses not tried yet: the same request (new Via branch) goes to the next one. True if sent.
    static func failover(_ store: TMStore, _ ctx: RouteContext, _ cell: TMCell, _ i: Int) -> Bool {
        var out = TMOutbox()
        let plan = cell.locked { () -> (TMBranch, Int)? in
            // Only a branch that never got a reply fails over on a timeout (a 503 always may).
            guard !cell.freed, !cell.disableFailover, !cell.canceled, !cell.finalSent, i < cell.branches.count,
                  !cell.branches[i].failedOver, cell.branches[i].lastStatus == 0 || cell.branches[i].lastStatus == 503,
                  let next = cell.branches[i].alternates.first else { return nil }
            cell.branches[i].failedOver = true
            let old = cell.branches[i]
            let id = store.branchID(cell, cell.nextBranchSerial())
            var b = makeBranch(cell, branchID: id, request: replacing(old.branchID, with: id, in: old.request),
                               to: next, proto: old.proto, local: old.local)
            b.uri = old.uri
            b.flags = old.flags
            b.alternates = Array(old.alternates.dropFirst())
            // Appended under the same lock that picked its index (the branch id carries it).
            return (b, append(store, cell, b, &out))
        }
        guard let (branch, index) = plan else { return false }
        return send(store, ctx, cell, index, branch, &out) > 0
    }

    /// `bytes` with the first occurrence of `old` replaced by `new`.
    static func replacing(_ old: String, with new: String, in bytes: [UInt8]) -> [UInt8] {
        let o = Array(old.utf8)
        guard !o.isEmpty, bytes.count >= o.count else { return bytes }
        for i in 0...(bytes.count - o.count) where bytes[i] == o[0] && bytes[i..<(i + o.count)].elementsEqual(o) {
            var out = Array(bytes[..<i])
            out.append(contentsOf: Array(new.utf8))
            out.append(contentsOf: bytes[(i + o.count)...])
            return out
        }
        return bytes
    }
}

/// Timer fires: the worker that owns the cell runs them between batches.
enum TMTimers {
    static func fired(_ store: TMStore, _ ctx: RouteContext, _ key: TMTimer) {
        let cell = key.cell
        var out = TMOutbox()
        if key.side == TMCore.lifetime {
            cell.locked { TMCore.maybeFree(store, cell, force: true) }
            return
        }
        cell.locked {
            guard !cell.freed else { return }
            if key.side == TMCore.serverSide {
                TMCore.runServer(store, cell, cell.server.timerFired(key.timer), &out)
            } else if key.side < cell.branches.count {
                TMCore.runBranch(store, cell, key.side, cell.branches[key.side].machine.timerFired(key.timer), &out)
            }
        }
        out.flush(ctx)
        TMReply.handle(store, ctx, cell, out.events, reply: nil)
    }
}
