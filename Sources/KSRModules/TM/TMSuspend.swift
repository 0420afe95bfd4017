import SIPCore
import SIPTransport
import SIPTransaction
import StarlingKEMI
import Synchronization
import Logging

/// `t_suspend` / `t_continue` (Kamailio's tm/t_suspend.c): a request's processing stops with its
/// transaction kept, and resumes later in a named Lua function. The async module, http_async_client
/// and any module that waits for the network without blocking a worker build on these two.
///
/// Suspending keeps the request as the route left it (its `$du`, R-URI, flags, AVPs: the state a
/// failure route starts from) and adds a blind branch whose fr_timer keeps running: if nobody
/// continues the transaction in time, the branch times out (408), `t_on_failure` runs, and the caller
/// gets the failure route's answer or the 408. Continuing runs the callback as a failure route
/// (route type FAILURE, `t_relay` adds branches, `t_reply` answers); when it leaves no branch
/// pending and sends no final reply, the transaction is answered 500 (Kamailio's `kill_transaction`).
///
/// The suspended transactions are found by `$T(id_index)` / `$T(id_label)` (the shard of the server
/// key and the cell id), in a table of their own: a transaction leaves it when continued, or when it
/// is freed.
enum TMSuspend {
    /// Blind branches are recognisable by their id prefix (they are never sent).
    static let blindPrefix = "z9hG4bKblind"

    /// `t_suspend` on the current request's transaction (created when missing, as tmx does).
    /// 1 suspended, -1 error (Kamailio's ki_t_suspend maps tm's codes this way: a canceled
    /// transaction counts as suspended, a final reply already sent as an error).
    static func suspend(_ store: TMStore, _ ctx: RouteContext) -> (code: Int, cell: TMCell?) {
        if ctx.routeType == .onreply, let m = ctx.message, !m.isRequest { return suspendReply(store, ctx) }
        guard let m = ctx.message, m.isRequest, ctx.routeType == .request || ctx.routeType == .failure else {
            ctx.logger.error("t_suspend: only requests in request and failure routes and replies in onreply routes can be suspended")
            return (-1, nil)
        }
        if TMRelay.current(ctx) == nil {
            guard ctx.routeType == .request, TMRelay.newTransaction(store, ctx) == 1 else {
                ctx.logger.error("t_suspend: cannot create the transaction")
                return (-1, nil)
            }
        }
        guard let cell = TMRelay.current(ctx) else { return (-1, nil) }
        let (canceled, final) = cell.locked { (cell.canceled, cell.finalSent) }
        if canceled {
            ctx.logger.debug("t_suspend: the transaction is canceled already")
            return (1, cell)
        }
        if final {
            ctx.logger.error("t_suspend: the transaction sent a final reply already")
            return (-1, cell)
        }
        // INVITE: a 100 Trying now, the answer will take a while.
        if cell.isInvite, ctx.routeType == .request {
            let ws = store.workerState(ctx)
            let auto100 = (ws.pendingMessage === m ? ws.auto100 : nil) ?? store.settings.autoInv100
            if auto100 && !cell.locked({ cell.server.lastStatus > 0 }) {
                _ = TMReply.reply(store, ctx, cell, 100, store.settings.autoInv100Reason)
            }
        }
        // The request as the route left it (Kamailio saves the lumps into the transaction's request).
        let relayed = UncheckedRef(relaying: ctx.state)
        let (flags, avps, xavps, inRequest) = (ctx.messageFlags, ctx.avps, ctx.xavps, ctx.routeType == .request)
        var out = TMOutbox()
        cell.locked {
            if inRequest && cell.branches.isEmpty { cell.relayed = relayed }
            cell.messageFlags = flags
            cell.avps = avps
            cell.xavps = xavps
            // The blind branch: never sent, its fr_timer (fr_timer, as Kamailio's blind UAC) keeps the
            // transaction alive until it is continued.
            let id = blindPrefix + String(cell.id, radix: 36) + "." + String(cell.nextBranchSerial())
            var machine = NonInviteClientTransaction(transport: .reliable, timers: cell.config)
            var b = TMBranch(key: TransactionKey.client(branch: id, method: "BLIND"), branchID: id,
                             machine: .nonInvite(machine), request: [], destination: cell.received.source,
                             proto: cell.received.proto, local: nil)
            let actions = machine.requestSent()
            b.machine = .nonInvite(machine)
            cell.branches.append(b)
            let i = cell.branches.count - 1
            cell.blindBranch = i
            cell.suspended = true
            TMCore.runBranch(store, cell, i, actions, &out)
        }
        out.flush(ctx)
        store.suspendedCells.withLock { $0[cell.id] = cell }
        return (1, cell)
    }

    /// `t_suspend` in a tm onreply route (Kamailio's t_suspend on a reply): the reply's processing
    /// stops after the route (it is not relayed, nor recorded as the branch's answer) until
    /// `t_continue` runs the callback as an onreply route on it and carries it on. Replies of the
    /// transaction that arrive meanwhile go no further than their onreply route
    /// (`t_is_retr_async_reply()` is 1 there). 1 suspended (or the transaction is canceled: not
    /// suspended, as Kamailio), -1 error (a final reply was sent already, or the request is suspended).
    static func suspendReply(_ store: TMStore, _ ctx: RouteContext) -> (code: Int, cell: TMCell?) {
        guard let cell = TMRelay.current(ctx) else {
            ctx.logger.error("t_suspend: transaction has not been created yet")
            return (-1, nil)
        }
        let branch = store.workerState(ctx).branchIndex
        let state = UncheckedRef(relaying: ctx.state)
        let r = cell.locked { () -> Int in
            if cell.canceled { return 1 }
            if cell.finalSent { return -3 }
            if cell.suspended && cell.suspendedReply == nil { return -2 }
            guard branch >= 0, branch < cell.branches.count else { return -4 }
            // Suspending twice in one route keeps the first (the same reply).
            if cell.suspendedReply == nil { cell.suspendedReply = (branch, state) }
            cell.suspended = true
            return 0
        }
        switch r {
        case 1:
            ctx.logger.debug("t_suspend: the transaction is canceled already")
            return (1, cell)
        case -3:
            ctx.logger.error("t_suspend: the transaction sent a final reply already")
            return (-1, cell)
        case -2:
            ctx.logger.error("t_suspend: the transaction's request is suspended")
            return (-1, cell)
        case -4:
            ctx.logger.error("t_suspend: failed find UAC branch")
            return (-1, cell)
        default:
            store.suspendedCells.withLock { $0[cell.id] = cell }
            return (1, cell)
        }
    }

    /// `t_continue` of a suspended reply: the callback runs as an onreply route on the reply (the
    /// transaction's flags and AVPs, the branch's flags), then the reply is carried on as after its
    /// onreply route (relayed, or recorded as the branch's answer), unless the callback suspended it
    /// again. As Kamailio, `drop` in the callback does not stop it, and a canceled transaction is not
    /// continued.
    static func resumeReply(_ store: TMStore, _ ctx: RouteContext, _ cell: TMCell, callback: String, event: String,
                            eventRoute: Bool, before: ((RouteContext) -> Void)?) -> Int {
        let taken = cell.locked { () -> (branch: Int, state: MessageState, flags: UInt32, bflags: UInt32)? in
            cell.suspended = false
            guard let r = cell.suspendedReply else { return nil }
            cell.suspendedReply = nil
            if cell.canceled || cell.freed || r.branch >= cell.branches.count { return nil }
            var st = r.state.value
            st.routeType = .onreply
            st.transaction = cell
            st.avps = cell.avps
            st.xavps = cell.xavps
            st.dropRequested = false
            return (r.branch, st, cell.messageFlags, cell.branches[r.branch].flags)
        }
        guard let taken, let m = taken.state.message else { return 1 }
        let i = taken.branch
        let ws = store.workerState(ctx)
        let saved = ctx.state
        let (savedBranch, savedCode) = (ws.branchIndex, ws.replyCode)
        ctx.state = taken.state
        ctx.messageFlags = taken.flags
        ctx.branchFlags = taken.bflags
        ws.branchIndex = i
        ws.replyCode = m.statusCode
        before?(ctx)
        // As Kamailio's app_lua: an onreply-type callback gets no argument.
        ctx.logger.debug("t_continue: \(event) of a suspended reply in \(callback)")
        if !callback.isEmpty, ctx.runRoute != nil {
            runContinuation(ctx, callback, event: event, eventRoute: eventRoute)
        } else {
            ctx.logger.warning("t_continue: no continue callback")
        }
        let (avps, xavps, flags, bflags) = (ctx.avps, ctx.xavps, ctx.messageFlags, ctx.branchFlags)
        ctx.state = saved
        (ws.branchIndex, ws.replyCode) = (savedBranch, savedCode)
        let again = cell.locked { () -> Bool in
            cell.avps = avps
            cell.xavps = xavps
            cell.messageFlags = flags
            if i < cell.branches.count { cell.branches[i].flags = bflags }
            return cell.suspended
        }
        // Suspended again in the callback: it waits for the next t_continue.
        if !again { TMReply.forward(store, ctx, cell, i, m.statusCode, m, dropped: false) }
        return 1
    }

    /// `t_is_retr_async_reply()`: 1 when the transaction of the message (a reply, or a request) is
    /// suspended, -1 when not or when the message has none.
    static func isRetrAsyncReply(_ store: TMStore, _ ctx: RouteContext) -> Int {
        var cell = TMRelay.current(ctx)
        if cell == nil, let m = ctx.message {
            if m.isRequest {
                cell = TMRelay.lookup(store, ctx, m)
            } else if let key = TransactionKey.client(for: m), case .client(let c, _)? = store.table.lookup(key) {
                cell = c
            }
        }
        guard let cell else {
            ctx.logger.error("t_is_retr_async_reply: cannot check a message for which no T-state has been established")
            return -1
        }
        return cell.locked { cell.suspended } ? 1 : -1
    }

    /// A CANCEL for a transaction whose reply is suspended: the suspension ends (the reply is
    /// dropped, as a t_continue of a canceled transaction would do in Kamailio), so that the 487s
    /// the CANCEL brings go upstream instead of stopping after their onreply route. Kamailio keeps
    /// the transaction suspended (the caller then waits for its own timer); a later t_continue
    /// here returns -1 (not suspended) where Kamailio's returns 1 without running the callback.
    static func cancelSuspendedReply(_ store: TMStore, _ cell: TMCell) {
        let ended = cell.locked { () -> Bool in
            guard cell.suspendedReply != nil else { return false }
            cell.suspendedReply = nil
            cell.suspended = false
            return true
        }
        if ended { store.suspendedCells.withLock { _ = $0.removeValue(forKey: cell.id) } }
    }

    /// Runs a continuation callback: without an argument, as Kamailio's app_lua runs failure- and
    /// onreply-type routes; with the event name when it stands for an event route
    /// (`ksr_diameter_response("diameter:response")`, Kamailio's event_route[diameter:response]).
    static func runContinuation(_ ctx: RouteContext, _ callback: String, event: String, eventRoute: Bool) {
        if eventRoute, let run = ctx.runEvent {
            run(ctx, callback, event)
        } else {
            ctx.runRoute?(ctx, callback)
        }
    }

    /// `$T(id_index)` / `$T(id_label)` of a cell.
    static func ids(_ store: TMStore, _ cell: TMCell) -> (index: Int, label: Int) {
        (store.table.shardIndex(of: cell.serverKey), Int(truncatingIfNeeded: cell.id))
    }

    /// A CANCEL for a suspended transaction: the blind branch ends with 487 and the transaction
    /// completes (failure route, then the 487 upstream). A later `t_continue` finds it canceled.
    static func cancelBlind(_ store: TMStore, _ ctx: RouteContext, _ cell: TMCell) {
        var out = TMOutbox()
        let done = cell.locked { () -> Bool in
            let b = cell.blindBranch
            guard !cell.freed, b >= 0, b < cell.branches.count, cell.branches[b].isPending else { return false }
            cell.branches[b].finalStatus = 487
            TMCore.cancelTimers(cell, b)
            let a = cell.branches[b].machine.transportError()
            TMCore.runBranch(store, cell, b, a.filter { if case .terminate = $0 { return true } else { return false } }, &out)
            return true
        }
        out.flush(ctx)
        if done { TMReply.checkCompletion(store, ctx, cell) }
    }

    /// Finds a suspended transaction by `$T(id_index)` / `$T(id_label)`.
    static func lookup(_ store: TMStore, index: Int, label: Int) -> TMCell? {
        let id = UInt64(truncatingIfNeeded: label)
        guard let cell = store.suspendedCells.withLock({ $0[id] }), store.table.shardIndex(of: cell.serverKey) == index
        else { return nil }
        return cell
    }

    /// `t_continue(index, label, cbname)`: 1 continued (or nothing left to continue: canceled, timed
    /// out), -1 not found or not suspended. `event` is Kamailio's event name ("tmx:continue",
    /// "async:timer-exec", "http_async_client:callback"), logged only: Kamailio's app_lua does not
    /// pass it to failure / onreply-type callbacks.
    @discardableResult
    static func resume(_ store: TMStore, _ ctx: RouteContext, index: Int, label: Int, callback: String,
                       event: String, eventRoute: Bool = false, before: ((RouteContext) -> Void)? = nil) -> Int {
        guard let cell = lookup(store, index: index, label: label) else {
            ctx.logger.warning("t_continue: active transaction not found [\(index):\(label)]")
            return -1
        }
        // Exactly one continuation wins: the one that takes it out of the table.
        guard store.suspendedCells.withLock({ $0.removeValue(forKey: cell.id) }) != nil else {
            ctx.logger.warning("t_continue: transaction is not suspended [\(index):\(label)]")
            return -1
        }
        if cell.locked({ cell.suspendedReply != nil }) {
            return resumeReply(store, ctx, cell, callback: callback, event: event, eventRoute: eventRoute, before: before)
        }
        var out = TMOutbox()
        let state = cell.locked { () -> (go: Bool, state: MessageState?) in
            cell.suspended = false
            if cell.canceled || cell.freed { return (false, nil) }
            let b = cell.blindBranch
            guard b >= 0, b < cell.branches.count, cell.branches[b].isPending else { return (false, nil) }
            // The blind branch ends without a reply that could win (Kamailio: last_received 500, a
            // faked reply that is never relayed).
            cell.branches[b].finalStatus = 500
            cell.branches[b].replicated = true
            TMCore.cancelTimers(cell, b)
            let a = cell.branches[b].machine.transportError()
            TMCore.runBranch(store, cell, b, a.filter { if case .terminate = $0 { return true } else { return false } }, &out)
            cell.inFailureRoute = true
            var st = cell.relayed?.value
                ?? MessageState(message: cell.request, received: cell.received, routeType: .failure)
            st.message = cell.request
            st.received = cell.received
            st.routeType = .failure
            st.transaction = cell
            st.messageFlags = cell.messageFlags
            st.avps = cell.avps
            st.xavps = cell.xavps
            st.branches = []
            st.branchQ = []
            st.branchDestinations = [:]
            st.extraBranchFlags = [:]
            st.requestURIQ = -1
            st.dropRequested = false
            st.replied = false
            st.lastError = 0
            return (true, st)
        }
        out.flush(ctx)
        guard state.go, let st = state.state else { return 1 }
        let ws = store.workerState(ctx)
        let saved = ctx.state
        let savedBranch = ws.branchIndex
        ctx.state = st
        ws.branchIndex = -1
        cell.locked { cell.branchesAddedInFailure = false }
        before?(ctx)
        // As Kamailio's app_lua: a continuation runs as a failure route, and those get no argument
        // (only event routes get the event name).
        ctx.logger.debug("t_continue: \(event) [\(index):\(label)] in \(callback)")
        if !callback.isEmpty, ctx.runRoute != nil {
            runContinuation(ctx, callback, event: event, eventRoute: eventRoute)
        } else {
            ctx.logger.warning("t_continue: no continue callback")
        }
        let (flags, avps, xavps, lastError) = (ctx.messageFlags, ctx.avps, ctx.xavps, ctx.lastError)
        ctx.state = saved
        ws.branchIndex = savedBranch
        let (kill, added) = cell.locked { () -> (Bool, Bool) in
            cell.messageFlags = flags
            cell.avps = avps
            cell.xavps = xavps
            cell.inFailureRoute = false
            // No final reply and nothing pending: no answer can come any more.
            return (!cell.freed && !cell.finalSent && !cell.suspended && !cell.hasPendingBranches, cell.branchesAddedInFailure)
        }
        if added {
            // The new branches may have been answered (or failed) while the callback ran: the usual
            // completion (failure route, best reply) once nothing is pending.
            TMReply.checkCompletion(store, ctx, cell)
        } else if kill {
            var (code, reason) = SLModule.errorReply(lastError != 0 ? lastError : -1)
            if reason.hasSuffix("/SL)") { reason = String(reason.dropLast(4)) + "/TM)" }
            _ = TMReply.reply(store, ctx, cell, code, reason)
        }
        return 1
    }

    /// The asynchronous request (an HTTP query, a Diameter request) could not be sent: the suspended transaction is continued at once with no callback,
    /// which answers it 500 (Kamailio's t_cancel_suspend leaves it to the
    /// script; the route has already been told -1).
    static func cancelSuspended(_ store: TMStore, _ ctx: RouteContext, index: Int, label: Int) {
        guard let cell = TMSuspend.lookup(store, index: index, label: label),
              store.suspendedCells.withLock({ $0.removeValue(forKey: cell.id) }) != nil else { return }
        var out = TMOutbox()
        cell.locked {
            cell.suspended = false
            // A suspended reply: carried on after its onreply route, as if never suspended.
            if cell.suspendedReply != nil { cell.suspendedReply = nil; return }
            let b = cell.blindBranch
            guard b >= 0, b < cell.branches.count, cell.branches[b].isPending else { return }
            cell.branches[b].finalStatus = 500
            cell.branches[b].replicated = true
            TMCore.cancelTimers(cell, b)
            let a = cell.branches[b].machine.transportError()
            TMCore.runBranch(store, cell, b, a.filter { if case .terminate = $0 { return true } else { return false } }, &out)
        }
        out.flush(ctx)
    }
}
