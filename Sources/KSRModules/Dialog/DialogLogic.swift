import SIPCore
import SIPTransport
import StarlingKEMI
import Logging
import Synchronization

/// What the current message knows about dialogs (Kamailio's `_dlg_ctx`): the dialog it belongs to and
/// what the script set before the dialog existed. One per worker, reset for each message.
final class DialogContext {
    var message: SIPMessage?
    var dialog: DialogID?
    /// 1 downstream (from the caller), 2 upstream (from the callee), 0 unknown (`$dlg_ctx(dir)`).
    var dir = 0
    var flags: UInt32 = 0
    var iflags: UInt32 = 0
    var timeout: Int?
    var timeoutBye = false
    var on = false
    var pendingProfiles: [ProfileLink] = []
    var pendingVars: [(String, String?)] = []
    /// The message's dialog after it ended (a BYE): still known to the rest of the route, as the
    /// deleted dialog Kamailio keeps until the transaction ends.
    var ended: Dialog?
    /// The in-dialog request was applied to its dialog (by the rr callback or dlg_manage).
    var applied = false
    var store: DialogStore?

    func reset(_ m: SIPMessage?) {
        message = m
        dialog = nil
        dir = 0
        flags = 0
        iflags = 0
        timeout = nil
        timeoutBye = false
        on = false
        pendingProfiles.removeAll()
        pendingVars.removeAll()
        ended = nil
        applied = false
    }
}

/// Kamailio 5.6's `iflags` bits (dlg_hash.h): BYEs on timeout (`send_bye`, `$dlg_ctx(timeout_bye)`),
/// and the dlg_set_property ones: ka-src, ka-dst, timeout-noreset. Stored as they are in the
/// `iflags` column, so rows are interchangeable with Kamailio's.
let dlgIFlagTimeoutBye: UInt32 = 1 << 0
let dlgIFlagKaSrc: UInt32 = 1 << 1
let dlgIFlagKaDst: UInt32 = 1 << 2
let dlgIFlagTimerNoReset: UInt32 = 1 << 3
/// Kamailio's `dflags` bits of a BYE the proxy sent to one side (DLG_FLAG_CALLERBYE / CALLEEBYE).
let dlgFlagCallerBye: UInt32 = 1 << 4
let dlgFlagCalleeBye: UInt32 = 1 << 5

/// The dialog logic over the store: creation, tm callbacks, in-dialog matching, BYEs, timeouts.
enum DialogLogic {
    /// The worker's dialog context for the current message.
    static func context(_ ctx: RouteContext) -> DialogContext {
        let c = ctx.worker.local(DialogContext.self) { DialogContext() }
        if c.message !== ctx.message { c.reset(ctx.message) }
        return c
    }

    // MARK: Creation

    /// `dlg_manage()`: an initial INVITE creates a dialog; an in-dialog request is matched. 1 / -1.
    static func manage(_ s: DialogStore, _ ctx: RouteContext) -> Int {
        guard let m = ctx.message, m.isRequest, ctx.routeType == .request || ctx.routeType == .branch else { return -1 }
        if m.toTag != nil {
            // Matched already when loose_route ran (the rr callback): not applied twice.
            if context(ctx).applied { return 1 }
            return matchRequest(s, ctx, viaRR: false) ? 1 : -1
        }
        guard m.method == .invite else { return -1 }
        return create(s, ctx) != nil ? 1 : -1
    }

    /// Creates the dialog of the current initial INVITE (or finds it again for a retransmission or a
    /// spiral), attaches it to the transaction when there is one.
    @discardableResult
    static func create(_ s: DialogStore, _ ctx: RouteContext) -> DialogID? {
        guard let m = ctx.message, m.isRequest, m.method == .invite, let rt = ctx.runtime else { return nil }
        let c = context(ctx)
        if let id = c.dialog, s.dialog(id) != nil { return id }
        guard let callIDRange = m.callID, let from = m.from, let ftag = from.tag, let to = m.to, let cseq = m.cseq else {
            ctx.logger.error("dialog: the INVITE lacks Call-ID, From tag, To or CSeq: no dialog")
            return nil
        }
        let callID = m.string(callIDRange)
        let fromTag = m.string(ftag)
        // A retransmission or a spiral (the INVITE back through us): the same dialog.
        if s.settings.detectSpirals, let (id, _) = s.find(callID: callID, fromTag: fromTag, toTag: nil),
           let d = s.dialog(id), !d.state.isConfirmed {
            c.dialog = id
            c.dir = 1
            return id
        }
        var contact = ""
        if let v = m.firstValue(.contact), let na = m.parseNameAddr(v), !na.isStar { contact = m.string(na.uri) }
        var routes: [String] = []
        m.forEachHeader(.recordRoute) { f in
            m.forEachValue(of: f) { v in if let na = m.parseNameAddr(v) { routes.append(m.string(na.uri)) } }
        }
        let now = rt.clock.unixSeconds
        let timeout = c.timeout ?? s.settings.defaultTimeout
        let pending = c.pendingProfiles
        let vars = c.pendingVars
        let sflags = c.flags
        let iflags = c.iflags
        let sendBye = c.timeoutBye || s.settings.sendBye
        let received = ctx.received
        let id = s.insert({ id in
            var d = Dialog(id: id, callID: callID, fromURI: m.string(from.uri), toURI: m.string(to.uri), fromTag: fromTag,
                           requestURI: String(decoding: m.currentRequestURI, as: UTF8.self), callerContact: contact,
                           callerCSeq: Int(cseq.number), callerRouteSet: routes,
                           caller: DialogPeer(address: received.source, proto: received.proto, local: received.local),
                           machine: DialogMachine(now: now), timeout: timeout)
            d.calleeCSeq = Int(cseq.number)
            d.sflags = sflags
            d.iflags = iflags
            if sendBye { d.iflags |= dlgIFlagTimeoutBye }
            for (k, v) in vars { d.setVariable(k, v) }
            return d
        }, profiles: pending)
        c.dialog = id
        c.dir = 1
        c.pendingProfiles.removeAll()
        c.pendingVars.removeAll()
        // The `did` Record-Route parameter (matching by id, dlg_match_mode 0 and 1).
        if s.settings.matchMode != 2 {
            ctx.recordRouteParams += ";\(s.settings.rrParam)=\(id.didValue)"
        }
        if let cell = TMRelay.current(ctx) { attach(s, cell, id) }
        return id
    }

    /// Makes the INVITE transaction drive the dialog (Kamailio's TMCB_RESPONSE_FWDED / OUT).
    static func attach(_ s: DialogStore, _ cell: TMCell, _ id: DialogID) {
        let already = s.update(id) { d -> Bool in
            defer { d.attached = true }
            return d.attached
        }
        guard already == false else { return }
        cell.locked {
            cell.observers.append { ctx, _, code, reply in DialogLogic.responseOut(s, ctx, id, code, reply) }
            cell.watchFree = true
        }
        s.table.withLock { $0.byCell[cell.id] = id }
    }

    /// tm created a transaction: attach the dialog of its message, or create one when `dlg_flag` is set.
    static func transactionCreated(_ s: DialogStore, _ ctx: RouteContext, _ cell: TMCell) {
        guard cell.isInvite else { return }
        let c = ctx.worker.local(DialogContext.self) { DialogContext() }
        if c.message === ctx.message, let id = c.dialog {
            attach(s, cell, id)
            return
        }
        let flag = s.settings.dlgFlag
        if flag >= 0 && flag < 32 && ctx.messageFlags & (1 << UInt32(flag)) != 0 && ctx.message?.toTag == nil {
            if let id = create(s, ctx) { attach(s, cell, id) }
        }
    }

    // MARK: Replies

    /// A response to the dialog's INVITE left upstream.
    static func responseOut(_ s: DialogStore, _ ctx: RouteContext, _ id: DialogID, _ code: Int, _ reply: SIPMessage?) {
        guard code > 100, let rt = ctx.runtime else { return }
        let now = rt.clock.unixSeconds
        let event: DialogEvent = code < 200 ? .provisional : code < 300 ? .accepted : .negative
        var tag: String?
        var contact: String?
        var routes: [String] = []
        var peer: DialogPeer?
        if let reply, let t = reply.toTag {
            tag = reply.string(t)
            if code >= 200 && code < 300 {
                if let v = reply.firstValue(.contact), let na = reply.parseNameAddr(v), !na.isStar { contact = reply.string(na.uri) }
                var all: [(String, Bool)] = []
                reply.forEachHeader(.recordRoute) { f in
                    reply.forEachValue(of: f) { v in
                        if let na = reply.parseNameAddr(v) {
                            let p = na.uriParts
                            let mine = ctx.services.isMyself(host: reply.string(p.host),
                                                             port: p.port ?? (p.scheme == .sips ? 5061 : 5060), proto: nil)
                            all.append((reply.string(na.uri), mine))
                        }
                    }
                }
                if let firstMine = all.firstIndex(where: { $0.1 }) {
                    routes = all[..<firstMine].map(\.0).reversed()
                }
                if !reply.isRequest { peer = DialogPeer(address: ctx.received.source, proto: ctx.received.proto, local: ctx.received.local) }
            }
        }
        guard let (tr, d) = s.handle(id, event, now: now, time: rt.clock.unixTime, { d in
            if let tag, d.toTag.isEmpty || code >= 200 { d.toTag = tag }
            if let contact { d.calleeContact = contact }
            if code >= 200 && code < 300 {
                d.calleeRouteSet = routes
                if let peer { d.callee = peer }
            }
        }) else { return }
        runEvents(s, ctx, tr, d)
    }

    // MARK: In-dialog requests

    /// Matches an in-dialog request (by the `did` Route parameter, then by Call-ID and tags as
    /// `dlg_match_mode` says) and applies it: ACK confirms, BYE ends, others refresh the timeout.
    @discardableResult
    static func matchRequest(_ s: DialogStore, _ ctx: RouteContext, viaRR: Bool) -> Bool {
        guard let m = ctx.message, m.isRequest, let rt = ctx.runtime else { return false }
        guard let callIDRange = m.callID, let ftagR = m.fromTag else { return false }
        let c = context(ctx)
        let callID = m.string(callIDRange)
        let ftag = m.string(ftagR)
        let ttag = m.toTag.map { m.string($0) }
        guard let ttag else { return false }
        var found: (DialogID, Bool)?
        let mode = s.settings.matchMode
        if mode != 2, let params = ctx.routedParams, let did = routeParam(params, s.settings.rrParam) {
            if let id = DialogID(did: did) {
                if let d = s.dialog(id) {
                    if d.callID == callID && d.fromTag == ftag && (d.toTag.isEmpty || d.toTag == ttag) {
                        found = (id, false)
                    } else if d.callID == callID && d.fromTag == ttag && d.toTag == ftag {
                        found = (id, true)
                    } else {
                        ctx.logger.warning("dialog: the did \(did) of a \(m.methodName) names dialog \(id) of another call")
                    }
                }
            } else {
                ctx.logger.error("dialog: malformed did parameter '\(did)' in the Route of a \(m.methodName) (Call-ID \(callID))")
            }
        }
        if found == nil && mode != 0 {
            found = s.find(callID: callID, fromTag: ftag, toTag: ttag)
        }
        guard let (id, upstream) = found else { return false }
        c.dialog = id
        c.dir = upstream ? 2 : 1
        c.applied = true
        let now = rt.clock.unixSeconds
        let cseq = Int(m.cseq?.number ?? 0)
        let event: DialogEvent
        switch m.method {
        case .ack: event = .ack
        case .bye: event = .bye
        default: event = .request
        }
        guard let (tr, d) = s.handle(id, event, now: now, time: rt.clock.unixTime, byeRequest: event == .bye, { d in
            if m.method != .ack {
                if upstream { d.calleeCSeq = max(d.calleeCSeq, cseq) } else { d.callerCSeq = max(d.callerCSeq, cseq) }
            }
            if event != .bye && d.state.isConfirmed && d.iflags & dlgIFlagTimerNoReset == 0 && m.method != .ack {
                d.timeoutAt = now + d.timeout
            }
        }) else { return true }
        if d.state == .deleted { c.ended = d }
        runEvents(s, ctx, tr, d)
        return true
    }

    /// The value of a Route URI parameter (`;did=...`) in `params` (";a=b;c=d").
    static func routeParam(_ params: String, _ name: String) -> Substring? {
        for p in params.split(separator: ";") {
            let kv = p.split(separator: "=", maxSplits: 1)
            if kv.count == 2 && kv[0].lowercased() == name.lowercased() { return kv[1] }
        }
        return nil
    }

    /// The dialog of the current message: the context's, else by Call-ID and tags (replies and
    /// in-dialog requests; Kamailio's `dlg_get_msg_dialog`).
    static func current(_ s: DialogStore, _ ctx: RouteContext) -> DialogID? {
        let c = context(ctx)
        if let id = c.dialog { return s.dialog(id) != nil || c.ended?.id == id ? id : nil }
        guard let m = ctx.message, let cid = m.callID, let ft = m.fromTag else { return nil }
        let tt = m.toTag.map { m.string($0) }
        if let (id, up) = s.find(callID: m.string(cid), fromTag: m.string(ft), toTag: tt) {
            c.dialog = id
            c.dir = up ? 2 : 1
            return id
        }
        return nil
    }

    // MARK: Events

    /// Runs `dialog:start` / `dialog:end` / `dialog:failed` (the `event_callback` function) and, for an
    /// ended or failed dialog, the end hooks (acc's CDRs). `eventRoute` false: the hooks only (a dialog
    /// the proxy ended with BYEs: its event route ran when they left).
    static func runEvents(_ s: DialogStore, _ ctx: RouteContext, _ tr: DialogMachine.Transition, _ d: Dialog,
                          withoutMessage: Bool = false, eventRoute: Bool = true) {
        guard tr.changed else { return }
        let name: String
        if tr.started { name = "dialog:start" } else if tr.ended { name = "dialog:end" } else if tr.failed { name = "dialog:failed" } else { return }
        let hooks = tr.ended || tr.failed ? s.endHooks.withLock { $0 } : []
        // A BYE of the caller or callee for a dialog the proxy is already ending (its BYEs not answered
        // yet) runs `dialog:end` again, as Kamailio's dlg_onroute: the dialog is still confirmed there.
        let fn = eventRoute ? s.settings.eventCallback : nil
        guard !hooks.isEmpty || fn != nil else { return }
        withDialog(ctx, d) {
            var snap = DialogSnapshot(d)
            snap.failed = tr.failed
            snap.withoutMessage = withoutMessage
            for h in hooks { h(ctx, snap) }
            if let fn, let run = ctx.runEvent { run(ctx, fn, name) }
        }
    }

    /// Runs `body` as an event route with `d` as the current dialog (`$dlg`, `$dlg_var` read it, also
    /// when it already left the table).
    static func withDialog(_ ctx: RouteContext, _ d: Dialog, _ body: () -> Void) {
        let c = ctx.worker.local(DialogContext.self) { DialogContext() }
        let saved = ctx.state
        let (sm, sd, sdir, se) = (c.message, c.dialog, c.dir, c.ended)
        ctx.routeType = .event
        c.message = ctx.message
        c.dialog = d.id
        c.dir = 1
        c.ended = d.state == .deleted ? d : nil
        body()
        ctx.state = saved
        c.message = sm
        c.dialog = sd
        c.dir = sdir
        c.ended = se
    }

    // MARK: Ending

    /// Sends a request of the proxy's own within the dialog (BYE, keepalive OPTIONS) to one side.
    @discardableResult
    static func sendWithin(_ s: DialogStore, _ ctx: RouteContext, _ d: Dialog, method: String, toCaller: Bool,
                           extraHeaders: String = "",
                           onReply: (@Sendable (RouteContext, Int, SIPMessage?, [UInt8]) -> Void)? = nil) -> Bool {
        guard let rt = ctx.runtime else { return false }
        var ruri: String
        let routes: [String]
        let from: String, to: String, cseq: Int
        if toCaller {
            ruri = d.callerContact
            if ruri.isEmpty { ruri = "sip:\(d.caller.address.uriHost):\(d.caller.address.port)" }
            routes = d.callerRouteSet
            from = "<\(d.toURI)>;tag=\(d.toTag)"
            to = "<\(d.fromURI)>;tag=\(d.fromTag)"
            cseq = d.calleeCSeq + 1
        } else {
            ruri = d.calleeContact
            if ruri.isEmpty, let callee = d.callee { ruri = "sip:\(callee.address.uriHost):\(callee.address.port)" }
            guard !ruri.isEmpty else { return false }
            routes = d.calleeRouteSet
            from = "<\(d.fromURI)>;tag=\(d.fromTag)"
            to = "<\(d.toURI)>;tag=\(d.toTag)"
            cseq = d.callerCSeq + 1
        }
        var headers = "From: \(from)\r\nTo: \(to)\r\nCall-ID: \(d.callID)\r\nCSeq: \(cseq) \(method)\r\n"
        for r in routes { headers += "Route: <\(r)>\r\n" }
        if !extraHeaders.isEmpty { headers += extraHeaders.hasSuffix("\r\n") ? extraHeaders : extraHeaders + "\r\n" }
        let r = TMLocal.send(rt.tm, ctx, method: method, ruri: ruri, nexthop: routes.first ?? "", headers: headers, body: [],
                             onReply: onReply)
        s.update(d.id) { x in if toCaller { x.calleeCSeq = cseq } else { x.callerCSeq = cseq } }
        if r < 0 { ctx.logger.error("dialog: cannot send the \(method) to the \(toCaller ? "caller" : "callee") of dialog \(d.id) (\(ruri))") }
        return r > 0
    }

    /// Ends a confirmed dialog with BYEs (side: 1 caller, 2 callee, 0 both), as Kamailio's dlg_bye /
    /// dlg_bye_all: the CDR's end time is now and `dialog:end` runs now, but the dialog stays (known,
    /// in its profiles, confirmed) until the first final reply to one of its BYEs — a 408 when a side
    /// does not answer — and ends then (acc's CDR is written then). A BYE to one side is sent once
    /// (a second dlg_bye to it: false). False when the dialog is unknown or not confirmed.
    static func terminate(_ s: DialogStore, _ ctx: RouteContext, _ id: DialogID, side: Int = 0, extraHeaders: String = "",
                          timedOut: Bool = false, withoutMessage: Bool = false) -> Bool {
        guard let rt = ctx.runtime else { return false }
        let now = rt.clock.unixTime
        let marked = s.update(id) { (d: inout Dialog) -> Dialog? in
            guard d.state.isConfirmed else { return nil }
            switch side {
            case 1:
                if d.dflags & dlgFlagCallerBye != 0 { return nil }
                d.dflags |= dlgFlagCallerBye
            case 2:
                if d.dflags & dlgFlagCalleeBye != 0 { return nil }
                d.dflags |= dlgFlagCalleeBye
            default:
                d.dflags |= dlgFlagCallerBye | dlgFlagCalleeBye
            }
            if d.endTime == 0 { d.endTime = now }
            d.timeoutAt = 0
            return d
        }
        guard let marked, let d = marked else { return false }
        if timedOut { s.expired.wrappingAdd(1, ordering: .relaxed) }
        let quiet = withoutMessage || timedOut
        let onReply: @Sendable (RouteContext, Int, SIPMessage?, [UInt8]) -> Void = { ctx, code, _, _ in
            guard code >= 200 else { return }
            DialogLogic.byeAnswered(s, ctx, id, withoutMessage: quiet)
        }
        var sent = 0
        if side != 2 && sendWithin(s, ctx, d, method: "BYE", toCaller: true, extraHeaders: extraHeaders, onReply: onReply) { sent += 1 }
        if side != 1 && sendWithin(s, ctx, d, method: "BYE", toCaller: false, extraHeaders: extraHeaders, onReply: onReply) { sent += 1 }
        // Kamailio's dlg_run_event_route(.., DLG_STATE_DELETED) in dlg_bye / dlg_bye_all.
        if let fn = s.settings.eventCallback, let run = ctx.runEvent {
            withDialog(ctx, d) { run(ctx, fn, "dialog:end") }
        }
        // No BYE could leave (no contact, no route): nothing will answer, the dialog ends now.
        if sent == 0 { byeAnswered(s, ctx, id, withoutMessage: quiet) }
        return true
    }

    /// The first final reply to a BYE of the proxy (Kamailio's bye_reply_cb): the dialog is deleted,
    /// leaves its profiles, and the end hooks run (acc's CDR).
    static func byeAnswered(_ s: DialogStore, _ ctx: RouteContext, _ id: DialogID, withoutMessage: Bool) {
        guard let rt = ctx.runtime else { return }
        let saved = ctx.state
        if let (tr, d) = s.handle(id, .bye, now: rt.clock.unixSeconds, time: rt.clock.unixTime) {
            runEvents(s, ctx, tr, d, withoutMessage: withoutMessage, eventRoute: false)
        }
        ctx.state = saved
    }

    /// The timer (about once a second): dialogs past their timeout end (BYEs to both sides when
    /// `send_bye` or `$dlg_ctx(timeout_bye)` asks), unconfirmed dialogs never relayed are dropped.
    static func timer(_ s: DialogStore, _ rt: ModuleRuntime) {
        let now = rt.clock.unixSeconds
        // What is due, from the timeout index (no pass over every dialog under the lock).
        let due = s.table.withLock { $0.dialogs.takeDueTimeouts(now: now) }
        for id in due {
            rt.tm.post { ctx in
                guard let d = s.dialog(id) else { return }
                let saved = ctx.state
                ctx.begin(message: nil, received: ctx.received, routeType: .event)
                if d.iflags & dlgIFlagTimeoutBye != 0 {
                    _ = DialogLogic.terminate(s, ctx, id, timedOut: true)
                } else {
                    s.expired.wrappingAdd(1, ordering: .relaxed)
                    if let (tr, d2) = s.handle(id, .bye, now: rt.clock.unixSeconds, time: rt.clock.unixTime) {
                        DialogLogic.runEvents(s, ctx, tr, d2, withoutMessage: true)
                    }
                }
                ctx.state = saved
            }
        }
        keepalives(s, rt, now: now)
        // Kamailio's dlg_clean_run: unconfirmed dialogs no transaction ever took, after 300 s.
        for id in s.stale(now: now, age: 300) where s.dialog(id)?.attached == false {
            _ = s.handle(id, .transactionGone, now: now)
        }
    }
}

extension DialogLogic {
    /// Keepalives (`ka_timer`, `ka_interval`), as Kamailio's dlg_ka_run / dlg_ka_cb_all: confirmed
    /// (ACKed) dialogs with the ka-src / ka-dst property get an in-dialog OPTIONS to that side every
    /// `ka_interval` seconds, the first one `ka_interval` after the ACK. A 408 (no answer) or 481 counts
    /// as a failure of that side, any other final reply resets that side's count; when a side reaches
    /// `ka_failed_limit` failures the dialog's lifetime becomes 10 s (`$dlg(lifetime)` 10): it ends on
    /// its timeout then — with BYEs when `send_bye` / `$dlg_ctx(timeout_bye)` asked for them, as any
    /// timeout — unless it ends before.
    static func keepalives(_ s: DialogStore, _ rt: ModuleRuntime, now: Int) {
        let st = s.settings
        guard st.kaTimer > 0, st.kaInterval > 0 else { return }
        let due = s.table.withLock { $0.dialogs.takeDueKeepalives(now: now, interval: st.kaInterval) }
        for (id, flags) in due {
            rt.tm.post { ctx in
                guard let d = s.dialog(id) else { return }
                let saved = ctx.state
                ctx.begin(message: nil, received: ctx.received, routeType: .event)
                func onReply(toCaller: Bool) -> @Sendable (RouteContext, Int, SIPMessage?, [UInt8]) -> Void {
                    { ctx, code, _, _ in
                        guard code >= 200, let rt = ctx.runtime else { return }
                        let failed = code == 408 || code == 481
                        let now = rt.clock.unixSeconds
                        let shortened = s.update(id) { (x: inout Dialog) -> Bool in
                            guard x.state == .confirmed else { return false }
                            var n = toCaller ? x.kaCallerFailures : x.kaCalleeFailures
                            n = failed ? n + 1 : 0
                            if toCaller { x.kaCallerFailures = n } else { x.kaCalleeFailures = n }
                            guard failed && n >= st.kaFailedLimit else { return false }
                            x.timeout = 10
                            x.timeoutAt = now + 10
                            return true
                        } ?? false
                        if shortened {
                            ctx.logger.notice("dialog \(id): keepalive to the \(toCaller ? "caller" : "callee") failed (\(code)), the dialog ends in 10 s")
                        }
                    }
                }
                if flags & dlgIFlagKaSrc != 0 { DialogLogic.sendWithin(s, ctx, d, method: "OPTIONS", toCaller: true, onReply: onReply(toCaller: true)) }
                if flags & dlgIFlagKaDst != 0 { DialogLogic.sendWithin(s, ctx, d, method: "OPTIONS", toCaller: false, onReply: onReply(toCaller: false)) }
                ctx.state = saved
            }
        }
    }
}

extension DialogLogic {
    /// The request route ended: a dialog it created that no transaction took (the script answered
    /// statelessly after `dlg_manage()`) is removed, as Kamailio's post-script cleanup does.
    static func routeFinished(_ s: DialogStore, _ ctx: RouteContext) {
        let c = ctx.worker.local(DialogContext.self) { DialogContext() }
        guard c.message === ctx.message, let id = c.dialog, let d = s.dialog(id), !d.attached, !d.state.isConfirmed,
              let rt = ctx.runtime else { return }
        if let (tr, d2) = s.handle(id, .transactionGone, now: rt.clock.unixSeconds, time: rt.clock.unixTime) {
            runEvents(s, ctx, tr, d2)
        }
    }

    /// The INVITE transaction of a dialog was freed: a dialog still unconfirmed or early is gone
    /// (Kamailio's DLG_EVENT_TDEL).
    static func transactionFreed(_ s: DialogStore, _ ctx: RouteContext, _ cell: UInt64) {
        guard let id = s.table.withLock({ $0.byCell.removeValue(forKey: cell) }), let d = s.dialog(id),
              !d.state.isConfirmed, let rt = ctx.runtime else { return }
        let saved = ctx.state
        ctx.begin(message: nil, received: ctx.received, routeType: .event)
        if let (tr, d2) = s.handle(id, .transactionGone, now: rt.clock.unixSeconds, time: rt.clock.unixTime) {
            runEvents(s, ctx, tr, d2)
        }
        ctx.state = saved
    }
}
