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
                // DNS failover first: the next address of the branch's next hop gets the request.
                if TMRelay.failover(store, ctx, cell, i) {
                    cell.locked {
                        if cell.branches[i].isPending {
                            cell.branches[i].finalStatus = 408
                            cell.branches[i].timedOut = true
                        }
                    }
                    continue
                }
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
                    let local = cell.locked { cell.isLocal ? cell.localReply.map { ($0, cell.branches[i].request) } : nil }
                    if let (callback, sent) = local { callback(ctx, 408, nil, sent) }
                    runBranchFailure(store, ctx, cell, i, 408, reply: nil)
                    checkCompletion(store, ctx, cell)
                }
            case .ackPassed:
                break
            }
        }
        // Shedding needs the final response sent, which only a final outcome of a branch can cause:
        // provisional replies take no extra lock for it. (It cannot join the lock of the final reply
        // itself: the responseOut hooks that run after that lock, acc's, read what it sheds.)
        if events.contains(where: \.isFinal) { cell.locked { cell.shedFinished() } }
    }

    /// A reply from branch `i` reached the TU: onreply route, then relay / response context.
    static func branchReply(_ store: TMStore, _ ctx: RouteContext, _ cell: TMCell, _ i: Int, _ code: Int, _ m: SIPMessage) {
        let ws = store.workerState(ctx)
        let (onReply, replicated, isLocal, restore, suspendedBefore) = cell.locked {
            (cell.onReply, cell.branches[i].replicated, cell.isLocal,
             cell.avps[UACReplace.replyFromAVP] != nil || cell.avps[UACReplace.replyToAVP] != nil ? cell.avps : nil,
             cell.suspended)
        }
        if replicated || isLocal {
            absorbed(store, ctx, cell, i, code, m)
            return
        }
        // uac_replace_from/to: the reply goes upstream with the From/To URI the request had before.
        if let restore { UACReplace.restoreReply(m, avps: restore) }
        var dropped = false
        var ranOnReply = false
        if !onReply.isEmpty, let run = ctx.runRoute {
            ranOnReply = true
            let saved = ctx.state
            // As Kamailio's reply_received: the transaction's message flags and AVPs, the branch's
            // flags; what the route leaves in them goes back to the transaction and the branch.
            let (avps, xavps, flags, bflags) = cell.locked {
                (cell.avps, cell.xavps, cell.messageFlags, i < cell.branches.count ? cell.branches[i].flags : 0)
            }
            ctx.routeType = .onreply
            ctx.transaction = cell
            ctx.dropRequested = false
            ctx.avps = avps
            ctx.xavps = xavps
            ctx.messageFlags = flags
            ctx.branchFlags = bflags
            ws.branchIndex = i
            ws.replyCode = code
            run(ctx, onReply)
            dropped = ctx.dropRequested
            let (newAVPs, newXAVPs, newFlags, newBFlags) = (ctx.avps, ctx.xavps, ctx.messageFlags, ctx.branchFlags)
            cell.locked {
                cell.avps = newAVPs
                cell.xavps = newXAVPs
                cell.messageFlags = newFlags
                if i < cell.branches.count { cell.branches[i].flags = newBFlags }
            }
            ctx.state = saved
            ws.branchIndex = -1
        }
        // Kamailio's reply_received: while the transaction is suspended (t_suspend in this or an
        // earlier onreply route, or on the request), the reply goes no further than its onreply
        // route; t_continue carries a suspended one on.
        // (Only the onreply route can suspend a reply: no extra lock for replies without one.)
        if suspendedBefore || (ranOnReply && cell.locked({ cell.suspended })) { return }
        forward(store, ctx, cell, i, code, m, dropped: dropped)
    }

    /// What follows the onreply route (also when `t_continue` resumes a suspended reply): a
    /// provisional is relayed unless dropped, a 2xx relayed, a negative final recorded (branch
    /// failure route, then the failure route or the best reply once no branch is pending).
    static func forward(_ store: TMStore, _ ctx: RouteContext, _ cell: TMCell, _ i: Int, _ code: Int, _ m: SIPMessage,
                        dropped: Bool) {
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
            if out.sentResponse { responseOut(store, ctx, cell, code, m) }
        case 200..<300:
            let bytes = m.serialized(options: SIPSerializeOptions(removeTopVia: true))
            cell.locked {
                guard !cell.freed else { return }
                if cell.branches[i].isPending {
                    cell.branches[i].finalStatus = code
                    cell.branches[i].replied = true
                    cell.branches[i].replyMessage = UncheckedBox(value: m)
                }
                let a = cell.server.tuSentResponse(code)
                TMCore.runServer(store, cell, a, &out, response: bytes)
                TMCore.cancelPending(store, cell, except: i, &out)
                out.flushNow(ctx)
            }
            if out.sentResponse { responseOut(store, ctx, cell, code, m) }
        default:
            let bytes = m.serialized(options: SIPSerializeOptions(removeTopVia: true))
            var recorded = false
            cell.locked {
                guard !cell.freed, cell.branches[i].isPending else { return }
                cell.branches[i].finalStatus = code
                cell.branches[i].replied = true
                cell.branches[i].finalReply = bytes
                cell.branches[i].replyMessage = UncheckedBox(value: m)
                recorded = true
                // A 6xx ends the forking (RFC 3261 §16.7 step 10) unless t_set_disable_6xx / disable_6xx_block.
                if code >= 600 && !cell.disable6xx { TMCore.cancelPending(store, cell, except: i, &out) }
            }
            out.flush(ctx)
            guard recorded else { return }
            // DNS failover on 503: the next address of this branch's next hop.
            if code == 503 { _ = TMRelay.failover(store, ctx, cell, i) }
            runBranchFailure(store, ctx, cell, i, code, reply: m)
            checkCompletion(store, ctx, cell)
        }
        out.flush(ctx)
    }

    /// A reply of a `t_replicate` branch or of a local transaction (`t_uac_send`): the machines ran
    /// (ACK for a negative INVITE reply, retransmissions); it is recorded, never relayed or routed.
    static func absorbed(_ store: TMStore, _ ctx: RouteContext, _ cell: TMCell, _ i: Int, _ code: Int, _ m: SIPMessage) {
        guard code >= 200 else { return }
        var ack: (bytes: [UInt8], to: SocketAddress, proto: SIPTransportProtocol, from: SocketAddress?)?
        var local: ((@Sendable (RouteContext, Int, SIPMessage?, [UInt8]) -> Void), [UInt8])?
        defer { if let (callback, sent) = local { callback(ctx, code, m, sent) } }
        cell.locked {
            guard !cell.freed, cell.branches[i].isPending else { return }
            if cell.isLocal, let cb = cell.localReply { local = (cb, cell.branches[i].request) }
            cell.branches[i].finalStatus = code
            cell.branches[i].replied = true
            cell.branches[i].replyMessage = UncheckedBox(value: m)
            // Our own INVITE (t_uac_send) answered 2xx: the ACK is ours too (to the branch's address,
            // tm's local_ack_mode 1).
            let b = cell.branches[i]
            if cell.isLocal, cell.isInvite, code < 300, let sent = try? SIPMessage.parse(b.request),
               let a = SIPBuilder.ackForNon2xx(invite: sent, response: m) {
                // The ACK of a 2xx is a transaction of its own: a new Via branch.
                ack = (TMRelay.replacing(b.branchID, with: b.branchID + "a", in: a), b.destination, b.proto, b.local)
            }
        }
        if let ack { _ = ctx.sender.send(ack.bytes, to: ack.to, proto: ack.proto, from: ack.from) }
    }

    /// `t_on_branch_failure`: runs once for each branch that ends with a negative reply or a timeout,
    /// with the reply as the message (the request for a timeout).
    static func runBranchFailure(_ store: TMStore, _ ctx: RouteContext, _ cell: TMCell, _ i: Int, _ code: Int,
                                 reply: SIPMessage?) {
        guard let run = ctx.runRoute else { return }
        let (fn, request, received) = cell.locked { (cell.onBranchFailure, cell.request, cell.received) }
        guard !fn.isEmpty else { return }
        let ws = store.workerState(ctx)
        let saved = ctx.state
        if let reply { ctx.message = reply } else { ctx.message = request; ctx.received = received }
        let (avps, xavps) = cell.locked { (cell.avps, cell.xavps) }
        ctx.avps = avps
        ctx.xavps = xavps
        ctx.routeType = .branchFailure
        ctx.transaction = cell
        ctx.dropRequested = false
        ws.branchIndex = i
        ws.replyCode = code
        run(ctx, fn)
        ctx.state = saved
        ws.branchIndex = -1
    }

    /// When no branch is pending and no final was sent: run the failure route (once per `t_on_failure`),
    /// else relay the best response (RFC 3261 §16.7 steps 6-7).
    static func checkCompletion(_ store: TMStore, _ ctx: RouteContext, _ cell: TMCell) {
        enum Decision { case none, failure(String, Int, Int), relay(Int) }
        let decision: Decision = cell.locked {
            if cell.freed || cell.isLocal || cell.finalSent || cell.hasPendingBranches || cell.inFailureRoute || cell.routeBusy {
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
            let oldLeg = cell.locked { () -> Int in
                cell.dropMode = store.settings.failureReplyMode
                return cell.legStart
            }
            runFailureRoute(store, ctx, cell, fn, b)
            let added = cell.locked { () -> Bool in
                cell.inFailureRoute = false
                if cell.branchesAddedInFailure {
                    // failure_reply_mode / t_drop_replies: which earlier replies stop being candidates.
                    let newLeg = cell.legStart
                    let drop: Range<Int>
                    switch cell.dropMode {
                    case 0: drop = 0..<0
                    case 2: drop = min(oldLeg, newLeg)..<newLeg
                    default: drop = 0..<newLeg
                    }
                    for j in drop where j < cell.branches.count { cell.branches[j].dropped = true }
                }
                return cell.branchesAddedInFailure
            }
            if added {
                checkCompletion(store, ctx, cell)  // the new branches may all have failed at once
            } else if !cell.locked({ cell.finalSent }) {
                relayBest(store, ctx, cell, b)
            }
        }
    }

    /// Runs the failure route `fn` (branch `b` won) on the request as the request route relayed it
    /// (Kamailio's `fake_req` + `faked_env`): its `$du`, R-URI, Record-Route, advertised address, rport
    /// and send flags; the transaction's message flags and AVPs; `$bf` of the winning branch; an empty
    /// destination set. What the route leaves in the flags and AVPs belongs to the transaction.
    static func runFailureRoute(_ store: TMStore, _ ctx: RouteContext, _ cell: TMCell, _ fn: String, _ b: Int) {
        guard let run = ctx.runRoute else { return }
        let ws = store.workerState(ctx)
        let saved = ctx.state
        ctx.state = cell.locked { () -> MessageState in
            var st = cell.relayed?.value
                ?? MessageState(message: cell.request, received: cell.received, routeType: .failure)
            st.message = cell.request
            st.received = cell.received
            st.routeType = .failure
            st.transaction = cell
            st.messageFlags = cell.messageFlags
            st.branchFlags = b < cell.branches.count ? cell.branches[b].flags : 0
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
            return st
        }
        ws.branchIndex = b
        run(ctx, fn)
        // The flags and AVPs the failure route leaves belong to the transaction (the next failure route).
        let (flags, newAVPs, newXAVPs) = (ctx.messageFlags, ctx.avps, ctx.xavps)
        cell.locked {
            cell.messageFlags = flags
            cell.avps = newAVPs
            cell.xavps = newXAVPs
        }
        ctx.state = saved
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
        if code == 503 && stored != nil && store.settings.remap503To500 {
            // remap_503_500 (RFC 3261 §16.7 step 6): a 503 goes upstream as a local 500 built from the
            // request, with the 503's reason text.
            code = 500
            bytes = localReply(ctx, cell, 500, "Service Unavailable")
        } else if bytes == nil {
            // A CANCELled call whose branches never answered ends with 487 for the caller.
            if canceled && code == 408 { code = 487 }
            bytes = localReply(ctx, cell, code, reasonPhrase(code))
        }
        guard let bytes else { return }
        var out = TMOutbox()
        cell.locked {
            guard !cell.freed else { return }
            let a = cell.server.tuSentResponse(code)
            TMCore.runServer(store, cell, a, &out, response: bytes)
        }
        out.flush(ctx)
        if out.sentResponse {
            responseOut(store, ctx, cell, code, stored == nil ? nil : cell.locked { cell.branches[b].replyMessage?.value })
        }
    }

    /// Tells the other modules' callbacks (dialog, acc) that a response left upstream.
    static func responseOut(_ store: TMStore, _ ctx: RouteContext, _ cell: TMCell, _ code: Int, _ reply: SIPMessage?) {
        let observers = cell.locked { cell.observers }
        for o in observers { o(ctx, cell, code, reply) }
        for h in store.hooks.responseOut { h(ctx, cell, code, reply) }
    }

    /// The reason phrase of a locally generated final reply (a faked 408 / 487, `$T_reply_reason`).
    static func reasonPhrase(_ code: Int) -> String {
        switch code {
        case 408: return "Request Timeout"
        case 487: return "Request Terminated"
        case 477: return "Unfortunately error on sending to next hop occurred"
        case 500: return "Server Internal Error"
        default: return "Service Unavailable"
        }
    }

    /// Kamailio's delayed internal reply: the request route relayed nothing (every branch failed) and did
    /// not reply; the transaction is answered with the error (`t_set_disable_internal_reply(1)` turns it off).
    static func delayedErrorReply(_ store: TMStore, _ ctx: RouteContext, _ cell: TMCell) {
        let error = cell.locked { () -> Int in
            guard cell.relayError != 0, !cell.disableInternalReply, !cell.finalSent, !cell.isLocal,
                  cell.branches.allSatisfy({ !$0.isPending || $0.replicated }) else { return 0 }
            return cell.relayError
        }
        guard error != 0 else { return }
        var (code, reason) = SLModule.errorReply(error)
        if reason.hasSuffix("/SL)") { reason = String(reason.dropLast(4)) + "/TM)" }
        _ = reply(store, ctx, cell, code, reason)
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

    /// A reply built from the cell's request as relayed (Kamailio builds it from `t->uas.request` and its
    /// reply lumps): its `append_to_reply` headers, reply body and rport flag, never what the worker's
    /// last message left in the context (local 408s are built on a timer). The context is borrowed.
    static func localReply(_ ctx: RouteContext, _ cell: TMCell, _ code: Int, _ reason: String) -> [UInt8]? {
        let saved = ctx.state
        ctx.state = cell.locked { () -> MessageState in
            var st = cell.relayed?.value
                ?? MessageState(message: cell.request, received: cell.received, routeType: saved.routeType)
            st.message = cell.request
            st.received = cell.received
            st.routeType = saved.routeType
            return st
        }
        let bytes = MessageTools.buildReply(ctx, status: code, reason: reason)
        ctx.state = saved
        return bytes
    }

    /// `t_reply`: a stateful reply from the script to the transaction's request. 1, or -1.
    static func reply(_ store: TMStore, _ ctx: RouteContext, _ cell: TMCell, _ code: Int, _ reason: String) -> Int {
        // Built from the route's message when it is the transaction's request (request and failure
        // routes: its pending edits, reply headers and body count), else from the kept request.
        let bytes: [UInt8]?
        if let m = ctx.message, cell.locked({ cell.isRequest(m) }) {
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
        if out.sentResponse && code > 100 { responseOut(store, ctx, cell, code, nil) }
        return out.sentResponse ? 1 : -1
    }
}
