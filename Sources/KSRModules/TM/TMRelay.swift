import SIPCore
import SIPTransport
import SIPTransaction
import StarlingKEMI
import Synchronization
import Logging

/// Creating transactions and sending their branches (Kamailio's t_lookup.c / t_fwd.c).
enum TMRelay {
    /// The current transaction of the route, if any.
    static func current(_ ctx: RouteContext) -> TMCell? { ctx.transaction as? TMCell }

    /// The server transaction a request matches (a retransmission, or the INVITE an ACK belongs to).
    static func lookup(_ store: TMStore, _ m: SIPMessage) -> TMCell? {
        guard let key = TransactionKey.server(for: m), case .server(let cell)? = store.table.lookup(key) else { return nil }
        return cell
    }

    /// The INVITE transaction a CANCEL targets.
    static func lookupCancelled(_ store: TMStore, _ m: SIPMessage) -> TMCell? {
        guard m.method == .cancel, let key = TransactionKey.server(for: m), let inv = key.cancelledInviteKey,
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
              let key = TransactionKey.server(for: m) else { return -1 }
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
        cell.timers.schedule(TMTimerKey(cell: cell, branch: TMCore.lifetime, timer: .B), after: life)
        ctx.transaction = cell
        return 1
    }

    /// `t_relay()`: request route (creates the transaction, 100 Trying for INVITE, one branch per
    /// destination) or failure route (new branches: serial forking). 1 on success, a negative error
    /// code otherwise (no reply is sent: the script replies).
    static func relay(_ store: TMStore, _ ctx: RouteContext, uri: [UInt8]? = nil, sendTrying: Bool = true) -> Int {
        guard let m = ctx.message, m.isRequest else { return -1 }
        switch ctx.routeType {
        case .failure:
            guard let cell = current(ctx) else { return -1 }
            return addBranches(store, ctx, cell, uri: uri)
        case .request:
            break
        default:
            return -1
        }
        if m.method == .ack {
            if let cell = lookup(store, m) {
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
            guard let inv = lookupCancelled(store, m) else { return Forwarder.forward(ctx, uri: uri) }
            return cancel(store, ctx, inv)
        }
        let created: Int
        if let cell = current(ctx) {
            created = cell.locked { cell.branches.isEmpty } ? 1 : -10
            if created < 0 { return addBranches(store, ctx, cell, uri: uri) }
        } else {
            created = newTransaction(store, ctx)
        }
        if created == 0 { return 1 }
        guard created > 0, let cell = current(ctx) else { return created }
        let ws = store.workerState(ctx)
        let auto100 = !(ws.pendingMessage === m && ws.noAuto100)
        if cell.isInvite && sendTrying && auto100 && !cell.locked({ cell.server.lastStatus > 0 }) {
            _ = TMReply.reply(store, ctx, cell, 100, "trying -- your call is important to us")
            ctx.replied = false
        }
        return addBranches(store, ctx, cell, uri: uri)
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
        return 1
    }

    /// Sends the current destination set on new branches of `cell`: `$du` or the Request-URI, then the
    /// appended branches (parallel forking). 1 if at least one went out.
    static func addBranches(_ store: TMStore, _ ctx: RouteContext, _ cell: TMCell, uri: [UInt8]? = nil) -> Int {
        guard let m = ctx.message else { return -1 }
        var targets: [(ruri: [UInt8]?, next: [UInt8])] = [(nil, uri ?? ctx.destinationURI ?? m.currentRequestURI)]
        for (i, b) in ctx.branches.enumerated() { targets.append((b, ctx.branchDestinations[i] ?? b)) }
        if ctx.routeType != .failure {
            let (rr, params) = (ctx.recordRoute, ctx.recordRouteParams)
            cell.locked { cell.recordRoute = rr; cell.recordRouteParams = params }
        }
        var sent = 0
        var lastError = SERError.badAddress
        for t in targets {
            let r = sendBranch(store, ctx, cell, ruri: t.ruri, nextHop: t.next)
            if r > 0 { sent += 1 } else { lastError = r }
        }
        if sent > 0 && ctx.routeType == .failure { cell.locked { cell.branchesAddedInFailure = true } }
        if sent == 0 { ctx.lastError = lastError }
        return sent > 0 ? 1 : lastError
    }

    /// Builds, registers and sends one branch. 1, or a negative error code.
    static func sendBranch(_ store: TMStore, _ ctx: RouteContext, _ cell: TMCell, ruri: [UInt8]?, nextHop: [UInt8]) -> Int {
        guard let m = ctx.message else { return -1 }
        guard let uri = SIPURI(bytes: nextHop) else { return SERError.badURI }
        guard let target = Forwarder.target(ctx, uri) else { return SERError.badAddress }
        if ctx.services.isMyself(host: target.address.ip, port: Int(target.address.port), proto: target.proto) {
            ctx.logger.error("t_relay: '\(uri)' points to this server; not looping the request back")
            return SERError.badAddress
        }
        guard let local = ctx.services.localSocket(for: target.address, proto: target.proto) else { return SERError.send }
        let index = cell.locked { cell.branches.count }
        // Branch route: runs once per outgoing branch, before it is sent; a drop skips the branch.
        let onBranch = cell.locked { cell.onBranch }
        // `add_rr_param` in a branch route applies to that branch only (Kamailio's branch lumps).
        let rrParams = ctx.recordRouteParams
        defer { ctx.recordRouteParams = rrParams }
        if !onBranch.isEmpty, let run = ctx.runRoute {
            let ws = store.workerState(ctx)
            let savedType = ctx.routeType, savedDrop = ctx.dropRequested
            ctx.routeType = .branch
            ctx.dropRequested = false
            ws.branchIndex = index
            run(ctx, onBranch)
            let dropped = ctx.dropRequested
            ctx.routeType = savedType
            ctx.dropRequested = savedDrop
            ws.branchIndex = -1
            if dropped { return SERError.send }
        }
        let branchID = store.branchID(cell, index)
        var options = SIPSerializeOptions(prependLine: RRModule.recordRouteLines(ctx, outgoing: local, proto: target.proto) + Array("Via: SIP/2.0/\(target.proto.viaName) \(local.advertised);branch=\(branchID)\r\n".utf8),
                                          requestURI: ruri)
        if let top = m.topVia {
            let (params, fill) = MessageTools.viaUpdate(ctx)
            if let fill, let rp = top.rport { options.inserts.append((rp.upper, Array("=\(fill)".utf8))) }
            if !params.isEmpty { options.inserts.append((top.whole.upper, Array(params.utf8))) }
        }
        let bytes = m.serialized(options: options)
        if let hook = ctx.onSend, !hook(ctx, target.address, target.proto, bytes) { return SERError.send }
        let key = m.method == .other ? TransactionKey.client(branch: branchID, method: cell.method)
            : TransactionKey.client(branch: branchID, method: m.method)
        let machine: ClientMachine = cell.isInvite
            ? .invite(InviteClientTransaction(transport: .unreliable, timers: cell.config, usesTimerC: true))
            : .nonInvite(NonInviteClientTransaction(transport: .unreliable, timers: cell.config))
        let branch = TMBranch(key: key, branchID: branchID, machine: machine, request: bytes, destination: target.address,
                              proto: target.proto, local: local.socket)
        var out = TMOutbox()
        cell.locked {
            cell.branches.append(branch)
            store.table.insert(.client(cell, index), for: key)
            TMCore.runBranch(store, cell, index, cell.branches[index].machine.requestSent(), &out)
        }
        if !ctx.sender.send(bytes, to: target.address, proto: target.proto, from: local.socket) {
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
}

/// Timer fires: the worker that owns the cell runs them between batches.
enum TMTimers {
    static func fired(_ store: TMStore, _ ctx: RouteContext, _ key: TMTimerKey) {
        let cell = key.cell
        var out = TMOutbox()
        if key.branch == TMCore.lifetime {
            cell.locked { TMCore.maybeFree(store, cell, force: true) }
            return
        }
        cell.locked {
            guard !cell.freed else { return }
            if key.branch == TMCore.serverSide {
                TMCore.runServer(store, cell, cell.server.timerFired(key.timer), &out)
            } else if key.branch < cell.branches.count {
                TMCore.runBranch(store, cell, key.branch, cell.branches[key.branch].machine.timerFired(key.timer), &out)
            }
        }
        out.flush(ctx)
        TMReply.handle(store, ctx, cell, out.events, reply: nil)
    }
}
