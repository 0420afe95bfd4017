import SIPCore
import SIPTransport
import SIPTransaction
import StarlingKEMI

/// Replies: from branches (response context, onreply and failure routes, relaying upstream) and local
/// stateful replies (`t_reply`, `sl.send_reply` with a transaction).
enum TMReply {
    /// A reply that passed the core reply route. True if it matched a transaction (it is then handled here).
    static func received(_ store: TMStore, _ ctx: RouteContext) -> Bool {
        guard let m = ctx.message, !m.isRequest, let key = TransactionKey.client(for: m),
              let entry = store.table.lookup(key) else { return false }
        switch entry {
        case .server:
            return false
        case .cancel:
            return true  // the 200 (or 481) to our CANCEL: absorbed
        case .client(let cell, let i):
            let code = m.statusCode
            var out = TMOutbox()
            cell.locked {
                guard !cell.freed, i < cell.branches.count else { return }
                let a = cell.branches[i].machine.responseReceived(code)
                TMCore.runBranch(store, cell, i, a, &out, response: m)
            }
            out.flush(ctx)
            handle(store, ctx, cell, out.events, reply: m)
            return true
        }
    }

    /// Handles what the machines passed up (outside the lock).
    static func handle(_ store: TMStore, _ ctx: RouteContext, _ cell: TMCell, _ events: [TMOutbox.Event], reply: SIPMessage?) {
        for e in events {
            switch e {
            case .reply(let i, let code):
                if let reply { branchReply(store, ctx, cell, i, code, reply) }
            case .timeout(let i):
                var done = false
                cell.locked {
                    if cell.branches[i].isPending {
                        cell.branches[i].finalStatus = 408
                        cell.branches[i].timedOut = true
                        cell.expired = true
                        done = true
                    }
                }
                if done {
                    runBranchFailure(store, ctx, cell, i, 408, reply: nil)
                    checkCompletion(store, ctx, cell)
                }
            case .ackPassed:
                break
            }
        }
    }

    /// A reply from branch `i` reached the TU: onreply route, then relay / response context.
    static func branchReply(_ store: TMStore, _ ctx: RouteContext, _ cell: TMCell, _ i: Int, _ code: Int, _ m: SIPMessage) {
        let ws = store.workerState(ctx)
        let onReply = cell.locked { cell.onReply }
        var dropped = false
        if !onReply.isEmpty, let run = ctx.runRoute {
            let saved = TMSavedRoute(ctx)
            ctx.routeType = .onreply
            ctx.transaction = cell
            ctx.dropRequested = false
            ws.branchIndex = i
            ws.replyCode = code
            run(ctx, onReply)
            dropped = ctx.dropRequested
            saved.restore(ctx)
            ws.branchIndex = -1
        }
        var out = TMOutbox()
        switch code {
        case ..<200:
            if dropped || code == 100 { return }
            let bytes = m.serialized(options: SIPSerializeOptions(removeTopVia: true))
            cell.locked {
                guard !cell.freed else { return }
                let a = cell.server.tuSentResponse(code)
                TMCore.runServer(store, cell, a, &out, response: bytes)
                out.flushNow(ctx)
            }
        case 200..<300:
            let bytes = m.serialized(options: SIPSerializeOptions(removeTopVia: true))
            cell.locked {
                guard !cell.freed else { return }
                if cell.branches[i].isPending {
                    cell.branches[i].finalStatus = code
                    cell.branches[i].replied = true
                }
                let a = cell.server.tuSentResponse(code)
                TMCore.runServer(store, cell, a, &out, response: bytes)
                TMCore.cancelPending(store, cell, except: i, &out)
                out.flushNow(ctx)
            }
        default:
            let bytes = m.serialized(options: SIPSerializeOptions(removeTopVia: true))
            cell.locked {
                guard !cell.freed, cell.branches[i].isPending else { return }
                cell.branches[i].finalStatus = code
                cell.branches[i].replied = true
                cell.branches[i].finalReply = bytes
                if code >= 600 { TMCore.cancelPending(store, cell, except: i, &out) }
            }
            out.flush(ctx)
            runBranchFailure(store, ctx, cell, i, code, reply: m)
            checkCompletion(store, ctx, cell)
        }
        out.flush(ctx)
    }

    /// `t_on_branch_failure`: runs once for each branch that ends with a negative reply or a timeout,
    /// with the reply as the message (the request for a timeout).
    static func runBranchFailure(_ store: TMStore, _ ctx: RouteContext, _ cell: TMCell, _ i: Int, _ code: Int,
                                 reply: SIPMessage?) {
        guard let run = ctx.runRoute else { return }
        let (fn, request, received) = cell.locked { (cell.onBranchFailure, cell.request.value, cell.received) }
        guard !fn.isEmpty else { return }
        let ws = store.workerState(ctx)
        let saved = TMSavedRoute(ctx)
        if let reply { ctx.message = reply } else { ctx.message = request; ctx.received = received }
        ctx.routeType = .branchFailure
        ctx.transaction = cell
        ctx.dropRequested = false
        ws.branchIndex = i
        ws.replyCode = code
        run(ctx, fn)
        saved.restore(ctx)
        ws.branchIndex = -1
    }

    /// When no branch is pending and no final was sent: run the failure route (once per `t_on_failure`),
    /// else relay the best response (RFC 3261 §16.7 steps 6-7).
    static func checkCompletion(_ store: TMStore, _ ctx: RouteContext, _ cell: TMCell) {
        enum Decision { case none, failure(String, Int, Int), relay(Int) }
        let decision: Decision = cell.locked {
            if cell.freed || cell.finalSent || cell.hasPendingBranches || cell.inFailureRoute || cell.routeBusy {
                return .none
            }
            guard let b = cell.bestBranch() else { return .none }
            let code = cell.branches[b].finalStatus
            if !cell.onFailure.isEmpty, ctx.runRoute != nil {
                let fn = cell.onFailure
                cell.onFailure = ""  // Kamailio resets it: the failure route must arm it again
                cell.inFailureRoute = true
                cell.branchesAddedInFailure = false
                cell.failureCode = code
                return .failure(fn, b, code)
            }
            return .relay(b)
        }
        switch decision {
        case .none:
            return
        case .relay(let b):
            relayBest(store, ctx, cell, b)
        case .failure(let fn, let b, _):
            runFailureRoute(store, ctx, cell, fn, b)
            let added = cell.locked { () -> Bool in
                cell.inFailureRoute = false
                return cell.branchesAddedInFailure
            }
            if added {
                checkCompletion(store, ctx, cell)  // the new branches may all have failed at once
            } else if !cell.locked({ cell.finalSent }) {
                relayBest(store, ctx, cell, b)
            }
        }
    }

    static func runFailureRoute(_ store: TMStore, _ ctx: RouteContext, _ cell: TMCell, _ fn: String, _ b: Int) {
        guard let run = ctx.runRoute else { return }
        let ws = store.workerState(ctx)
        let saved = TMSavedRoute(ctx)
        let (request, received, flags, rr, rrParams) = cell.locked {
            (cell.request.value, cell.received, cell.messageFlags, cell.recordRoute, cell.recordRouteParams)
        }
        ctx.message = request
        ctx.recordRoute = rr
        ctx.recordRouteParams = rrParams
        ctx.received = received
        ctx.routeType = .failure
        ctx.transaction = cell
        ctx.destinationURI = nil
        ctx.branches = []
        ctx.dropRequested = false
        ctx.replied = false
        ctx.messageFlags = flags
        ws.branchIndex = b
        run(ctx, fn)
        saved.restore(ctx)
        ws.branchIndex = -1
    }

    /// Sends the best final response upstream (a local 408 for a branch that timed out).
    static func relayBest(_ store: TMStore, _ ctx: RouteContext, _ cell: TMCell, _ b: Int) {
        var (code, stored, canceled, others) = cell.locked {
            (cell.branches[b].finalStatus, cell.branches[b].finalReply, cell.canceled,
             cell.branches.indices.filter { $0 != b && [401, 407].contains(cell.branches[$0].finalStatus) }
                .compactMap { cell.branches[$0].finalReply })
        }
        // RFC 3261 §16.7 step 7: a 401/407 carries the challenges of every 401/407 branch.
        if code == 401 || code == 407, let best = stored, !others.isEmpty {
            stored = aggregateChallenges(best, others)
        }
        var bytes = stored
        if bytes == nil {
            // A CANCELled call whose branches never answered ends with 487 for the caller.
            if canceled && code == 408 { code = 487 }
            let reason = code == 487 ? "Request Terminated" : code == 408 ? "Request Timeout" : "Service Unavailable"
            bytes = localReply(ctx, cell, code, reason)
        }
        guard let bytes else { return }
        var out = TMOutbox()
        cell.locked {
            guard !cell.freed else { return }
            let a = cell.server.tuSentResponse(code)
            TMCore.runServer(store, cell, a, &out, response: bytes)
        }
        out.flush(ctx)
    }

    /// Adds the WWW-Authenticate / Proxy-Authenticate lines of `others` to the header of `reply`.
    static func aggregateChallenges(_ reply: [UInt8], _ others: [[UInt8]]) -> [UInt8] {
        func headerEnd(_ b: [UInt8]) -> Int? {
            guard b.count >= 4 else { return nil }
            for i in 0...(b.count - 4) where b[i] == 13 && b[i + 1] == 10 && b[i + 2] == 13 && b[i + 3] == 10 { return i }
            return nil
        }
        var extra: [UInt8] = []
        for o in others {
            guard let end = headerEnd(o) else { continue }
            let head = String(decoding: o[0..<end], as: UTF8.self)
            for line in head.split(separator: "\r\n") {
                let l = line.lowercased()
                if l.hasPrefix("www-authenticate:") || l.hasPrefix("proxy-authenticate:") {
                    extra.append(contentsOf: Array(line.utf8))
                    extra.append(contentsOf: [13, 10])
                }
            }
        }
        guard !extra.isEmpty, let end = headerEnd(reply) else { return reply }
        var out = reply
        out.insert(contentsOf: extra, at: end + 2)
        return out
    }

    /// A reply built from the cell's request (the context is borrowed for the build).
    static func localReply(_ ctx: RouteContext, _ cell: TMCell, _ code: Int, _ reason: String) -> [UInt8]? {
        let saved = TMSavedRoute(ctx)
        let (request, received) = cell.locked { (cell.request.value, cell.received) }
        ctx.message = request
        ctx.received = received
        let bytes = MessageTools.buildReply(ctx, status: code, reason: reason)
        saved.restore(ctx)
        return bytes
    }

    /// `t_reply`: a stateful reply from the script to the transaction's request. 1, or -1.
    static func reply(_ store: TMStore, _ ctx: RouteContext, _ cell: TMCell, _ code: Int, _ reason: String) -> Int {
        // Built from the route's message when it is the transaction's request (request and failure
        // routes: its pending edits, reply headers and body count), else from the kept request.
        let bytes: [UInt8]?
        if let m = ctx.message, m === cell.request.value {
            bytes = MessageTools.buildReply(ctx, status: code, reason: reason,
                                            extraHeaders: SLModule.destinationSetContact(ctx, code))
        } else {
            bytes = localReply(ctx, cell, code, reason)
        }
        guard let bytes else { return -1 }
        var out = TMOutbox()
        cell.locked {
            guard !cell.freed else { return }
            let a = cell.server.tuSentResponse(code)
            TMCore.runServer(store, cell, a, &out, response: bytes)
            if out.sentResponse && code >= 200 { TMCore.cancelPending(store, cell, except: nil, &out) }
        }
        out.flush(ctx)
        if out.sentResponse { ctx.replied = true }
        return out.sentResponse ? 1 : -1
    }
}
