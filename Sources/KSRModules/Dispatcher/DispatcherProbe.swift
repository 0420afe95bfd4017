import SIPCore
import SIPTransport
import StarlingKEMI
import Logging
import Synchronization

/// Probing (Kamailio's `ds_check_timer` / `ds_ping_set` / `ds_options_callback`) and the
/// `event_callback` runs (`ds_run_route`).
extension DispatcherStore {
    /// A destination to probe: where, from whom, through which proxy, from which socket (the
    /// destination's `sockname=` or `socket=`, as Kamailio's ds_ping_set).
    struct ProbeTarget: Sendable {
        var setid: Int
        var uri: String
        var from: String
        var obproxy: String
        var seq: Int
        var socket: String = ""
        var sockname: String = ""
    }

    /// `ds_ping_result_helper`: whether a destination is probed under `ds_probing_mode`.
    func shouldProbe(_ d: DSDestination) -> Bool {
        if d.flags & DS.disabled != 0 { return false }
        switch settings.probingMode {
        case 1: return true
        case 2: return d.flags & DS.probing != 0 && d.flags & DS.inactive != 0
        default: return d.flags & DS.probing != 0
        }
    }

    /// The periodic job: probes every `ds_ping_interval` seconds (unless `dispatcher.ping_active 0`),
    /// probes past `ds_ping_timeout` count as 408, call-load expiry.
    func periodic(_ runtime: ModuleRuntime) {
        let now = clock.unixTime
        if settings.hashSize > 0 { expireLoad(now: Int(now)) }
        if settings.pingTimeout > 0 {
            let expired: [(Int, String)] = state.withLock { st in
                var out: [(Int, String)] = []
                for (key, p) in st.pending where p.deadline <= now {
                    st.pending[key] = nil
                    if let sp = key.firstIndex(of: " "), let id = Int(key[..<sp]) { out.append((id, String(key[key.index(after: sp)...]))) }
                }
                return out
            }
            if !expired.isEmpty {
                runtime.tm.post { [self] ctx in
                    for (id, uri) in expired { probeOutcome(ctx, setid: id, uri: uri, code: 408, reply: nil) }
                }
            }
        }
        guard settings.pingInterval > 0, pingActive.load(ordering: .relaxed) != 0 else { return }
        let targets: [ProbeTarget] = state.withLock { st in
            guard now - st.lastPing >= Double(settings.pingInterval) else { return [] }
            st.lastPing = now
            var out: [ProbeTarget] = []
            for id in st.sets.keys.sorted() {
                var set = st.sets[id]!
                for i in set.dests.indices where shouldProbe(set.dests[i]) {
                    st.probeSeq += 1
                    let d = set.dests[i]
                    set.dests[i].probeStartedAt = now
                    set.dests[i].probesSent += 1
                    out.append(ProbeTarget(setid: id, uri: d.uri, from: d.attrs.pingFrom.isEmpty ? settings.pingFrom : d.attrs.pingFrom,
                                           obproxy: d.attrs.obproxy.isEmpty ? (settings.outboundProxy ?? "") : d.attrs.obproxy,
                                           seq: st.probeSeq, socket: d.attrs.socket, sockname: d.attrs.sockname))
                    if settings.pingTimeout > 0 {
                        st.pending["\(id) \(d.uri)"] = (st.probeSeq, now + Double(settings.pingTimeout) / 1000)
                    }
                }
                st.sets[id] = set
            }
            return out
        }
        guard !targets.isEmpty else { return }
        probesSent.wrappingAdd(targets.count, ordering: .relaxed)
        let store = runtime.tm
        store.post { [self] ctx in
            for t in targets { sendProbe(ctx, store, t) }
        }
    }

    /// Sends one probe as a local tm transaction (`t_request`: To and R-URI the destination).
    func sendProbe(_ ctx: RouteContext, _ tm: TMStore, _ t: ProbeTarget) {
        let headers = "From: <\(t.from)>\r\nTo: <\(t.uri)>\r\n"
        let timed = settings.pingTimeout > 0
        // The destination's socket (Kamailio: uac_r.ssockname / ssock); one that does not exist is
        // logged and not forced, as when requests are routed to the destination (forceSocket).
        var socket = t.sockname.isEmpty ? t.socket : "", socketName = t.sockname
        if !socketName.isEmpty, ctx.services.socket(named: socketName) == nil {
            ctx.logger.warning("dispatcher: no local socket matches sockname=\(socketName) (probe of \(t.uri))")
            socketName = ""
        } else if !socket.isEmpty,
                  CorexModule.parseSocketSpec(socket).flatMap({ ctx.services.socket(host: $0.host, port: $0.port, proto: $0.proto) }) == nil {
            ctx.logger.warning("dispatcher: no local socket matches socket=\(socket) (probe of \(t.uri))")
            socket = ""
        }
        let r = TMLocal.send(tm, ctx, method: settings.pingMethod, ruri: t.uri, nexthop: t.obproxy, headers: headers, body: [],
                             socket: socket, socketName: socketName,
                             onReply: { [self] c, code, reply, _ in
                                 if timed {
                                     let mine = state.withLock { st -> Bool in
                                         let key = "\(t.setid) \(t.uri)"
                                         guard st.pending[key]?.seq == t.seq else { return false }
                                         st.pending[key] = nil
                                         return true
                                     }
                                     guard mine else { return }
                                 }
                                 probeOutcome(c, setid: t.setid, uri: t.uri, code: code, reply: reply)
                             })
        if r < 0 {
            logger.error("dispatcher: unable to ping [\(t.uri)] in group [\(t.setid)]")
            if timed { state.withLock { _ = $0.pending.removeValue(forKey: "\(t.setid) \(t.uri)") } }
            var st = DS.trying
            if settings.probingMode != 0 { st |= DS.probing }
            probesFailed.wrappingAdd(1, ordering: .relaxed)
            countFailure(t.setid, t.uri)
            if flags(group: t.setid, uri: t.uri) & DS.disabled == 0 {
                let (_, event) = updateState(group: t.setid, uri: t.uri, state: st,
                                             rctx: DSReplyContext(flags: 0, code: 500, reason: "Sending keepalive failed"))
                if let event { fire(ctx, [event], current: false) }
            }
        }
    }

    func countFailure(_ setid: Int, _ uri: String) {
        state.withLock { st in
            guard var set = st.sets[setid], let i = set.dests.firstIndex(where: { $0.uri == uri }) else { return }
            set.dests[i].probesFailed += 1
            st.sets[setid] = set
        }
    }

    /// `ds_options_callback`: latency, then active on 2xx or an accepted code, trying (inactive
    /// after the threshold) otherwise.
    func probeOutcome(_ ctx: RouteContext, setid: Int, uri: String, code: Int, reply: SIPMessage?) {
        if settings.pingLatencyStats { updateLatency(setid, uri, code) }
        var rctx = DSReplyContext(flags: 0, code: code, reason: nil)
        if let reply {
            rctx.flags = 1
            rctx.reason = reply.string(reply.reasonRange)
        }
        let current = flags(group: setid, uri: uri)
        if settings.probingMode == 3 && current & DS.probing == 0 { return }
        var newState: Int
        if (200...299).contains(code) || settings.acceptsProbeReply(code) {
            newState = 0
            if settings.probingMode == 1 || (settings.probingMode == 3 && current & DS.probing != 0) { newState |= DS.probing }
        } else {
            probesFailed.wrappingAdd(1, ordering: .relaxed)
            countFailure(setid, uri)
            newState = DS.trying
            if settings.probingMode != 0 { newState |= DS.probing }
        }
        guard current & DS.disabled == 0 else { return }
        let (found, event) = updateState(group: setid, uri: uri, state: newState, rctx: rctx)
        if !found { logger.error("dispatcher: setting the state failed (\(uri), group \(setid))") }
        if let event { fire(ctx, [event], current: false) }
    }

    /// `ds_update_latency` (only while the destination is probing).
    func updateLatency(_ setid: Int, _ uri: String, _ code: Int) {
        let now = clock.unixTime, alpha = settings.latencyAlpha
        state.withLock { st in
            guard var set = st.sets[setid], let i = set.dests.firstIndex(where: { $0.uri.lowercased() == uri.lowercased() }),
                  set.dests[i].flags & DS.probing != 0 else { return }
            if code == 408 { set.dests[i].latency.timeout += 1 } else {
                let ms = Int((now - set.dests[i].probeStartedAt) * 1000)
                set.dests[i].latency.update(ms, alpha: alpha)
            }
            st.sets[setid] = set
        }
    }

    /// Runs `event_callback` for each event (`ds_run_route`): with the current message when
    /// `current` (ds_mark_dst), else with a stand-in request whose R-URI is the destination.
    /// `$dsv(...)` reads the event's reply context meanwhile.
    func fire(_ ctx: RouteContext, _ events: [DSEvent], current: Bool) {
        guard let callback = settings.eventCallback, let run = ctx.runEvent, !events.isEmpty else { return }
        let worker = ctx.worker.local(DSWorkerEvent.self) { DSWorkerEvent() }
        let saved = ctx.state
        let savedEvent = worker.current
        defer {
            ctx.state = saved
            worker.current = savedEvent
        }
        for e in events {
            if !current {
                let text = "OPTIONS \(e.uri) SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKdsevent\r\n"
                    + "From: <\(settings.pingFrom)>;tag=ds\r\nTo: <\(e.uri)>\r\nCall-ID: dispatcher-event\r\n"
                    + "CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
                ctx.state = MessageState(message: try? SIPMessage.parse(Array(text.utf8)), received: saved.received, routeType: .event)
            } else {
                ctx.state = saved
                ctx.routeType = .event
            }
            worker.current = e.rctx
            run(ctx, callback, e.name)
        }
    }

    /// Announces `events` from a worker (start, reload, RPC): posted to tm when it is loaded.
    func announce(_ runtime: ModuleRuntime, _ events: [DSEvent]) {
        guard settings.eventCallback != nil, !events.isEmpty else { return }
        runtime.tm.post { [self] ctx in fire(ctx, events, current: false) }
    }
}
