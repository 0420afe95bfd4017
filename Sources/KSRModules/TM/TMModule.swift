import SIPCore
import SIPTransaction
import StarlingKEMI
import Logging

/// `KSR.tm` (REFERENCE §2.6) and `KSR.tmx` (§2.7): the export tables over one `TMStore`.
enum TMModule {
    /// The status a route type looks at (t_check_status, t_get_status_code).
    static func status(_ store: TMStore, _ ctx: RouteContext) -> Int? {
        switch ctx.routeType {
        case .onreply, .reply:
            guard let m = ctx.message, !m.isRequest else { return nil }
            return m.statusCode
        case .failure:
            guard let cell = TMRelay.current(ctx) else { return nil }
            return cell.locked { cell.failureCode }
        case .branchFailure:
            return store.workerState(ctx).replyCode
        default:
            guard let cell = TMRelay.current(ctx) else { return nil }
            let s = cell.locked { cell.server.lastStatus }
            return s > 0 ? s : nil
        }
    }

    /// `$T_reply_code`: the status the route type looks at (0 when there is none).
    static func replyCodePV(_ ctx: RouteContext) -> Int {
        guard let store = ctx.transactions as? TMStore else {
            if let m = ctx.message, !m.isRequest { return m.statusCode }
            return 0
        }
        return status(store, ctx) ?? 0
    }

    /// `$T_branch_idx` (tmx): a reply's branch (onreply), the branch of a branch / branch-failure
    /// route, the number of appended branches in a request route, the transaction's branches plus the
    /// appended ones in a failure route; -1 otherwise.
    static func branchIndexPV(_ ctx: RouteContext) -> Int {
        guard let store = ctx.transactions as? TMStore else { return -1 }
        if let m = ctx.message, !m.isRequest { return store.workerState(ctx).branchIndex }
        switch ctx.routeType {
        case .branch, .branchFailure: return store.workerState(ctx).branchIndex
        case .request: return ctx.branches.count
        case .failure:
            guard let cell = TMRelay.current(ctx) else { return -1 }
            return cell.locked { cell.branches.count } + ctx.branches.count
        default: return -1
        }
    }

    static func setRoute(_ ctx: RouteContext, _ store: TMStore, _ name: String,
                         _ path: ReferenceWritableKeyPath<TMCell, String>) -> KemiResult {
        if let cell = TMRelay.current(ctx) {
            cell.locked { cell[keyPath: path] = name }
        } else {
            // Kept for the transaction this message is about to create.
            let ws = store.workerState(ctx)
            ws.pending(for: ctx.message)
            ws.pendingRoutes[path] = name
        }
        return .int(1)
    }

    static func exports(_ store: TMStore) -> [KemiExport] {
        @Sendable func relay(_ ctx: RouteContext, uri: [UInt8]? = nil, trying: Bool = true, noFailover: Bool = false) -> KemiResult {
            .int(TMRelay.relay(store, ctx, uri: uri, sendTrying: trying, noFailover: noFailover))
        }
        /// Flag 0x2 of the t_relay_to* flags: no internal negative reply for this transaction.
        @Sendable func relayFlags(_ ctx: RouteContext, _ flags: Int) {
            if flags & 2 != 0 { _ = setSwitch(store, ctx, \.disableInternalReply, \.disableInternalReply, true) }
        }
        @Sendable func newtran(_ ctx: RouteContext) -> Int { TMRelay.newTransaction(store, ctx) }
        @Sendable func withCell(_ ctx: RouteContext, _ body: (TMCell) -> Bool) -> KemiResult {
            guard let cell = TMRelay.current(ctx) else { return .int(-1) }
            return .code(cell.locked { body(cell) })
        }
        return [
            KemiExport("tm", "t_relay", [], returns: .int) { ctx, _ in relay(ctx) },
            KemiExport("tm", "t_relay_to_flags", [.int], returns: .int) { ctx, args in
                relayFlags(ctx, args.int(0))
                return relay(ctx, trying: args.int(0) & 1 == 0, noFailover: args.int(0) & 4 != 0)
            },
            KemiExport("tm", "t_relay_to_proxy", [.str], returns: .int) { ctx, args in
                relay(ctx, uri: proxyURI(args.str(0)))
            },
            KemiExport("tm", "t_relay_to_proxy_flags", [.str, .int], returns: .int) { ctx, args in
                relayFlags(ctx, args.int(1))
                return relay(ctx, uri: proxyURI(args.str(0)), trying: args.int(1) & 1 == 0, noFailover: args.int(1) & 4 != 0)
            },
            KemiExport("tm", "t_relay_to_proto_addr", [.str, .str, .int], returns: .int) { ctx, args in
                relay(ctx, uri: Array("sip:\(args.str(1)):\(args.int(2));transport=\(args.str(0))".utf8))
            },
            KemiExport("tm", "t_newtran", [], returns: .int) { ctx, _ in .int(newtran(ctx)) },
            KemiExport("tm", "t_check_trans", [], returns: .int) { ctx, _ in .int(checkTrans(store, ctx)) },
            KemiExport("tm", "t_lookup_request", [], returns: .int) { ctx, _ in
                guard ctx.routeType == .request, let m = ctx.message, m.isRequest else { return .int(-1) }
                return .code(TMRelay.lookup(store, ctx, m) != nil)
            },
            KemiExport("tm", "t_lookup_cancel", [], returns: .int) { ctx, _ in
                guard let m = ctx.message else { return .int(-1) }
                return .code(TMRelay.lookupCancelled(store, ctx, m) != nil)
            },
            KemiExport("tm", "t_lookup_cancel_flags", [.int], returns: .int) { ctx, args in
                guard let m = ctx.message, let inv = TMRelay.lookupCancelled(store, ctx, m) else { return .int(-1) }
                if args.int(0) != 0 { ctx.messageFlags = inv.locked { inv.messageFlags } }
                return .int(1)
            },
            KemiExport("tm", "t_reply", [.int, .str], returns: .int) { ctx, args in
                guard let m = ctx.message, m.method != .ack || !m.isRequest else { return .int(-1) }
                guard [.request, .failure, .onreply].contains(ctx.routeType), let cell = TMRelay.current(ctx)
                else { return .int(-1) }
                return .int(TMReply.reply(store, ctx, cell, args.int(0), args.str(1)))
            },
            KemiExport("tm", "t_send_reply", [.int, .str], returns: .int) { ctx, args in
                guard let m = ctx.message, m.isRequest, m.method != .ack else { return .int(-1) }
                if TMRelay.current(ctx) == nil {
                    let r = newtran(ctx)
                    if r == 0 { return .int(0) }
                    if r < 0 { return .int(r) }
                }
                guard let cell = TMRelay.current(ctx) else { return .int(-1) }
                return .int(TMReply.reply(store, ctx, cell, args.int(0), args.str(1)))
            },
            KemiExport("tm", "t_retransmit_reply", [], returns: .int) { ctx, _ in
                guard let cell = TMRelay.current(ctx) else { return .int(-1) }
                TMRelay.absorb(store, ctx, cell)
                return .int(1)
            },
            KemiExport("tm", "t_release", [], returns: .int) { ctx, _ in
                guard ctx.routeType == .request, let cell = TMRelay.current(ctx) else { return .int(-1) }
                cell.locked {
                    cell.routeBusy = false
                    if cell.branches.isEmpty { TMCore.maybeFree(store, cell, force: true) }
                }
                ctx.transaction = nil
                return .int(1)
            },
            KemiExport("tm", "t_on_failure", [.str], returns: .int) { ctx, args in
                setRoute(ctx, store, args.str(0), \TMCell.onFailure)
            },
            KemiExport("tm", "t_on_reply", [.str], returns: .int) { ctx, args in
                setRoute(ctx, store, args.str(0), \TMCell.onReply)
            },
            KemiExport("tm", "t_on_branch", [.str], returns: .int) { ctx, args in
                setRoute(ctx, store, args.str(0), \TMCell.onBranch)
            },
            KemiExport("tm", "t_on_branch_failure", [.str], returns: .int) { ctx, args in
                setRoute(ctx, store, args.str(0), \TMCell.onBranchFailure)
            },
            KemiExport("tm", "t_is_set", [.str], returns: .int) { ctx, args in
                let kind = args.str(0).first
                if let cell = TMRelay.current(ctx) {
                    return .code(cell.locked {
                        switch kind {
                        case "b": return !cell.onBranch.isEmpty
                        case "f": return !cell.onFailure.isEmpty
                        case "o": return !cell.onReply.isEmpty
                        default: return false
                        }
                    })
                }
                // Before the transaction exists: names set in this route are pending.
                let ws = store.workerState(ctx)
                ws.pending(for: ctx.message)
                let path: ReferenceWritableKeyPath<TMCell, String>
                switch kind {
                case "b": path = \TMCell.onBranch
                case "f": path = \TMCell.onFailure
                case "o": path = \TMCell.onReply
                default: return .int(-1)
                }
                return .code(!(ws.pendingRoutes[path] ?? "").isEmpty)
            },
            KemiExport("tm", "t_is_canceled", [], returns: .int) { ctx, _ in withCell(ctx) { $0.canceled } },
            KemiExport("tm", "t_is_expired", [], returns: .int) { ctx, _ in withCell(ctx) { $0.expired } },
            KemiExport("tm", "t_any_timeout", [], returns: .int) { ctx, _ in
                withCell(ctx) { $0.branches.contains { $0.timedOut } }
            },
            KemiExport("tm", "t_any_replied", [], returns: .int) { ctx, _ in
                withCell(ctx) { $0.branches.contains { $0.replied || $0.lastStatus > 0 } }
            },
            KemiExport("tm", "t_branch_timeout", [], returns: .int) { ctx, _ in
                guard ctx.routeType == .failure || ctx.routeType == .branchFailure else { return .int(-1) }
                let b = store.workerState(ctx).branchIndex
                return withCell(ctx) { b >= 0 && b < $0.branches.count && $0.branches[b].timedOut }
            },
            KemiExport("tm", "t_branch_replied", [], returns: .int) { ctx, _ in
                guard ctx.routeType == .failure || ctx.routeType == .branchFailure else { return .int(-1) }
                let b = store.workerState(ctx).branchIndex
                return withCell(ctx) { b >= 0 && b < $0.branches.count && $0.branches[b].replied }
            },
            KemiExport("tm", "t_grep_status", [.int], returns: .int) { ctx, args in
                let code = args.int(0)
                return withCell(ctx) { $0.branches.contains { $0.finalStatus == code || $0.lastStatus == code } }
            },
            KemiExport("tm", "t_check_status", [.str], returns: .int) { ctx, args in
                guard let s = status(store, ctx), let re = POSIXRegex(args.str(0)) else { return .int(-1) }
                return .code(re.matches(String(s)))
            },
            KemiExport("tm", "t_get_status_code", [], returns: .int) { ctx, _ in .int(status(store, ctx) ?? -1) },
            KemiExport("tm", "t_get_branch_index", [], returns: .int) { ctx, _ in
                let b = store.workerState(ctx).branchIndex
                if b >= 0 { return .int(b) }
                guard let cell = TMRelay.current(ctx) else { return .int(-1) }
                return .int(cell.locked { cell.branches.count })
            },
            KemiExport("tm", "t_set_fr", [.int, .int], returns: .int) { ctx, args in
                setFR(store, ctx, inv: args.int(0), non: args.int(1))
            },
            KemiExport("tm", "t_set_fr_inv", [.int], returns: .int) { ctx, args in
                setFR(store, ctx, inv: args.int(0), non: 0)
            },
            KemiExport("tm", "t_reset_fr", [], returns: .int) { ctx, _ in
                let ws = store.workerState(ctx)
                ws.pendingFR = nil
                if let cell = TMRelay.current(ctx) {
                    cell.locked {
                        cell.config.timerB = store.timerConfiguration.timerB
                        cell.config.timerF = store.timerConfiguration.timerF
                        cell.config.timerC = store.timerConfiguration.timerC
                    }
                }
                return .int(1)
            },
            KemiExport("tm", "t_drop_replies", [.str], returns: .int) { ctx, args in
                // Modes: "n" none, "l" the last leg's branches, anything else all (Kamailio's default "a").
                // Applied when the failure route adds branches (failure_reply_mode's default otherwise).
                let mode = args.str(0)
                return withCell(ctx) { cell in
                    cell.dropMode = mode == "n" ? 0 : mode == "l" ? 2 : 1
                    return true
                }
            },
            KemiExport("tm", "t_drop_replies_all", [], returns: .int) { ctx, _ in
                withCell(ctx) { cell in
                    cell.dropMode = 1
                    return true
                }
            },
            KemiExport("tm", "t_save_lumps", [], returns: .int) { _, _ in .int(1) },
            KemiExport("tm", "t_relay_to_proto", [.str], returns: .int) { ctx, args in
                guard let m = ctx.message, m.isRequest else { return .int(-1) }
                var uri = ctx.destinationURI ?? m.currentRequestURI
                uri.append(contentsOf: Array(";transport=\(args.str(0).lowercased())".utf8))
                return relay(ctx, uri: uri)
            },
            KemiExport("tm", "t_clean", [], returns: .int) { _, _ in .int(1) },
            KemiExport("tm", "t_is_retr_async_reply", [], returns: .int) { ctx, _ in
                .int(TMSuspend.isRetrAsyncReply(store, ctx))
            },
            KemiExport("tm", "t_set_max_lifetime", [.int, .int], returns: .int,
                       compat: "accepted; the lifetime follows the timers") { _, _ in .int(1) },
            KemiExport("tm", "t_reset_max_lifetime", [], returns: .int) { _, _ in .int(1) },
            KemiExport("tm", "t_set_retr", [.int, .int], returns: .int) { ctx, args in
                let (t1, t2) = (args.int(0), args.int(1))
                if let cell = TMRelay.current(ctx) {
                    cell.locked {
                        if t1 > 0 { cell.config.t1 = .milliseconds(t1) }
                        if t2 > 0 { cell.config.t2 = .milliseconds(t2) }
                    }
                } else {
                    let ws = store.workerState(ctx)
                    ws.pending(for: ctx.message)
                    ws.pendingRetr = (t1, t2)
                }
                return .int(1)
            },
            KemiExport("tm", "t_reset_retr", [], returns: .int) { ctx, _ in
                store.workerState(ctx).pendingRetr = nil
                if let cell = TMRelay.current(ctx) {
                    cell.locked {
                        cell.config.t1 = store.timerConfiguration.t1
                        cell.config.t2 = store.timerConfiguration.t2
                    }
                }
                return .int(1)
            },
            KemiExport("tm", "t_set_auto_inv_100", [.int], returns: .int) { ctx, args in
                let ws = store.workerState(ctx)
                ws.pending(for: ctx.message)
                ws.auto100 = args.int(0) != 0
                return .int(1)
            },
            KemiExport("tm", "t_set_disable_6xx", [.int], returns: .int) { ctx, args in
                setSwitch(store, ctx, \.disable6xx, \.disable6xx, args.int(0) != 0)
            },
            KemiExport("tm", "t_set_disable_failover", [.int], returns: .int) { ctx, args in
                setSwitch(store, ctx, \.disableFailover, \.disableFailover, args.int(0) != 0)
            },
            KemiExport("tm", "t_set_no_e2e_cancel_reason", [.int], returns: .int,
                       compat: "accepted; CANCELs carry no Reason header yet") { _, _ in .int(1) },
            KemiExport("tm", "t_set_disable_internal_reply", [.int], returns: .int) { ctx, args in
                setSwitch(store, ctx, \.disableInternalReply, \.disableInternalReply, args.int(0) != 0)
            },
            KemiExport("tm", "t_replicate", [.str], returns: .int) { ctx, args in
                // tm's t_replicate_uri: a URI that does not parse or resolve is -1; then t_relay's codes.
                let uri = args.str(0)
                if !uri.isEmpty {
                    guard let u = SIPURI(uri), Forwarder.target(ctx, u) != nil else {
                        ctx.logger.error("t_replicate: bad uri: \(uri)")
                        return .int(-1)
                    }
                }
                return .int(TMRelay.replicate(store, ctx, uri: uri.isEmpty ? nil : Array(uri.utf8)))
            },
            KemiExport("tm", "t_uac_send", [.str, .str, .str, .str, .str, .str], returns: .int,
                       compat: "a 2xx to a local INVITE is ACKed to the branch's address") { ctx, args in
                .int(TMLocal.send(store, ctx, method: args.str(0), ruri: args.str(1), nexthop: args.str(2),
                                  headers: args.str(4), body: Array(args.str(5).utf8), socket: args.str(3)))
            },
            KemiExport("tm", "t_load_contacts", [], returns: .int) { ctx, _ in .int(TMContacts.load(store, ctx, mode: 0)) },
            KemiExport("tm", "ki_t_load_contacts_mode", [.int], returns: .int) { ctx, args in
                .int(TMContacts.load(store, ctx, mode: args.int(0)))
            },
            KemiExport("tm", "t_next_contacts", [], returns: .int) { ctx, _ in .int(TMContacts.next(store, ctx)) },
            KemiExport("tm", "t_next_contact_flow", [], returns: .int,
                       compat: "branches carry no +sip.instance yet: -2 (nothing to do), -1 without contact_flows_avp") { ctx, _ in
                .int(TMContacts.nextFlow(store, ctx))
            },
            KemiExport("tm", "t_use_uac_headers", [], returns: .int) { _, _ in .int(1) },

            // MARK: tmx
            KemiExport("tmx", "t_precheck_trans", [], returns: .int) { ctx, _ in
                guard let m = ctx.message, m.isRequest, m.method != .ack, m.method != .cancel else { return .int(-1) }
                // A copy already being processed has its transaction in the shared table.
                return .code(TMRelay.lookup(store, ctx, m) != nil && TMRelay.current(ctx) == nil)
            },
            KemiExport("tmx", "t_is_request_route", [], returns: .int) { ctx, _ in .code(ctx.routeType == .request) },
            KemiExport("tmx", "t_is_reply_route", [], returns: .int) { ctx, _ in
                .code(ctx.routeType == .onreply || ctx.routeType == .reply)
            },
            KemiExport("tmx", "t_is_failure_route", [], returns: .int) { ctx, _ in .code(ctx.routeType == .failure) },
            KemiExport("tmx", "t_is_branch_route", [], returns: .int) { ctx, _ in .code(ctx.routeType == .branch) },
            KemiExport("tmx", "t_flush_flags", [], returns: .int) { ctx, _ in
                let f = ctx.messageFlags
                return withCell(ctx) { $0.messageFlags = f; return true }
            },
            KemiExport("tmx", "t_cancel_branches", [.str], returns: .int) { ctx, args in
                guard let cell = TMRelay.current(ctx) else { return .int(-1) }
                let mode = args.str(0)
                let b = store.workerState(ctx).branchIndex
                var out = TMOutbox()
                cell.locked {
                    switch mode {
                    case "all": TMCore.cancelPending(store, cell, except: nil, &out)
                    case "others": TMCore.cancelPending(store, cell, except: b >= 0 ? b : nil, &out)
                    case "this":
                        if b >= 0 && b < cell.branches.count && cell.branches[b].isPending {
                            TMCore.runBranch(store, cell, b, cell.branches[b].machine.cancelRequested(), &out)
                        }
                    default: break
                    }
                }
                out.flush(ctx)
                return .int(1)
            },
            KemiExport("tmx", "t_flush_xflags", [], returns: .int, compat: "xflags are not kept in the transaction yet") { ctx, _ in
                .code(TMRelay.current(ctx) != nil)
            },
            KemiExport("tmx", "t_suspend", [], returns: .int) { ctx, _ in
                .int(TMSuspend.suspend(store, ctx).code)
            },
            KemiExport("tmx", "t_continue", [.int, .int, .str], returns: .int) { ctx, args in
                .int(TMSuspend.resume(store, ctx, index: args.int(0), label: args.int(1), callback: args.str(2),
                                      event: "tmx:continue") < 0 ? -1 : 1)
            },
            KemiExport("tmx", "t_reuse_branch", [], returns: .int, compat: "not implemented yet: -1") { _, _ in .int(-1) },
            KemiExport("tmx", "t_cancel_callid", [.str, .str, .int], returns: .int) { ctx, args in
                .int(cancelCallID(store, ctx, args.str(0), args.str(1)))
            },
            KemiExport("tmx", "t_cancel_callid_reason", [.str, .str, .int, .int], returns: .int,
                       compat: "the reason code is not sent yet") { ctx, args in
                .int(cancelCallID(store, ctx, args.str(0), args.str(1)))
            },
            KemiExport("tmx", "t_drop", [], returns: .int, compat: "replies 500 and releases the transaction") { ctx, _ in
                guard let cell = TMRelay.current(ctx) else { return .int(-1) }
                _ = TMReply.reply(store, ctx, cell, 500, "Server Internal Error")
                return .int(1)
            },
            KemiExport("tmx", "t_drop_rcode", [.int], returns: .int, compat: "replies the code and releases the transaction") { ctx, args in
                guard let cell = TMRelay.current(ctx) else { return .int(-1) }
                let code = args.int(0) >= 300 && args.int(0) <= 699 ? args.int(0) : 500
                _ = TMReply.reply(store, ctx, cell, code, code == 500 ? "Server Internal Error" : "Dropped")
                return .int(1)
            },
            KemiExport("tmx", "t_reply_callid", [.str, .str, .int, .str], returns: .int) { ctx, args in
                guard let cell = findByCallID(store, args.str(0), args.str(1)) else { return .int(-1) }
                return .int(TMReply.reply(store, ctx, cell, args.int(2), args.str(3)))
            },
        ]
    }

    /// "udp:host:port" / "host:port" → a SIP URI.
    static func proxyURI(_ s: String) -> [UInt8]? {
        guard !s.isEmpty else { return nil }
        let parts = s.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        if parts.count == 3, ["udp", "tcp", "tls", "sctp", "ws", "wss"].contains(parts[0].lowercased()) {
            return Array("sip:\(parts[1]):\(parts[2]);transport=\(parts[0].lowercased())".utf8)
        }
        return Array("sip:\(s)".utf8)
    }

    /// A per-transaction switch: on the transaction, or kept for the one this message is about to create.
    static func setSwitch(_ store: TMStore, _ ctx: RouteContext, _ path: ReferenceWritableKeyPath<TMCell, Bool>,
                          _ pending: WritableKeyPath<TMSwitches, Bool?>, _ value: Bool) -> KemiResult {
        if let cell = TMRelay.current(ctx) {
            cell.locked { cell[keyPath: path] = value }
        } else {
            let ws = store.workerState(ctx)
            ws.pending(for: ctx.message)
            ws.pendingSwitches[keyPath: pending] = value
        }
        return .int(1)
    }

    static func setFR(_ store: TMStore, _ ctx: RouteContext, inv: Int, non: Int) -> KemiResult {
        if let cell = TMRelay.current(ctx) {
            cell.locked {
                if inv > 0 { cell.config.timerC = .milliseconds(inv) }
                if non > 0 { cell.config.timerB = .milliseconds(non); cell.config.timerF = .milliseconds(non) }
            }
        } else {
            let ws = store.workerState(ctx)
            ws.pending(for: ctx.message)
            ws.pendingFR = (inv, non)
        }
        return .int(1)
    }

    /// `t_check_trans`: 0 retransmission absorbed, 1 matched (e2e ACK, CANCEL's INVITE, a reply), -1 none.
    static func checkTrans(_ store: TMStore, _ ctx: RouteContext) -> Int {
        switch ctx.routeType {
        case .failure, .branch, .onreply, .branchFailure: return 1
        default: break
        }
        guard let m = ctx.message else { return -1 }
        if !m.isRequest {
            guard let key = TransactionKey.client(for: m), store.table.lookup(key) != nil else { return -1 }
            return 1
        }
        if m.method == .cancel { return TMRelay.lookupCancelled(store, ctx, m) != nil ? 1 : -1 }
        guard let cell = TMRelay.lookup(store, ctx, m) else { return -1 }
        if m.method == .ack {
            var out = TMOutbox()
            cell.locked { TMCore.runServer(store, cell, cell.server.ackReceived(), &out) }
            out.flush(ctx)
            let passed = out.events.contains { if case .ackPassed = $0 { return true } else { return false } }
            return passed ? 1 : 0
        }
        if cell === TMRelay.current(ctx) { return 1 }
        TMRelay.absorb(store, ctx, cell)
        return 0
    }

    /// t_cancel_callid: CANCELs the pending branches of the transaction of a Call-ID and CSeq.
    static func cancelCallID(_ store: TMStore, _ ctx: RouteContext, _ callID: String, _ cseq: String) -> Int {
        guard let cell = findByCallID(store, callID, cseq) else { return -1 }
        var out = TMOutbox()
        cell.locked {
            cell.canceled = true
            TMCore.cancelPending(store, cell, except: nil, &out)
        }
        out.flush(ctx)
        return 1
    }

    /// The INVITE transaction of a Call-ID and CSeq number (t_reply_callid).
    static func findByCallID(_ store: TMStore, _ callID: String, _ cseq: String) -> TMCell? {
        var found: TMCell?
        let number = cseq.split(separator: " ").first.map(String.init) ?? cseq
        store.table.removeAll { _, v in
            if found == nil, case .server(let c) = v, c.isInvite {
                let m = c.locked { c.peekRequest() }
                if let cid = m.callID, m.string(cid) == callID, let cs = m.cseq, String(cs.number) == number { found = c }
            }
            return false
        }
        return found
    }
}
