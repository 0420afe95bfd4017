import Dispatch
#if canImport(Glibc)
import Glibc
#endif
import Diameter
import StarlingKEMI
import Logging
import Synchronization

/// `KSR.ims_diameter_server` (Kamailio 5.6's ims_diameter_server KEMI exports): a route (SIP or
/// `ksr_diameter_request()`) sends a Diameter request built from ims_diameter_server's JSON and reads
/// the answer in `$diameter_response`.
///
/// - `diameter_request(peer, appid, command, json)`: waits for the answer (as Kamailio, the worker
///   waits: at most `[diameter] request_timeout` and one more second; with `[core] async_io`, called
///   from a request/reply route, only the route waits: it is suspended and the worker routes other
///   messages); 1 with `$diameter_response` set, -1 otherwise (bad JSON or arguments, unknown or
///   unusable peer, no answer).
/// - `diameter_request_async(peer, appid, command, json)`: returns 0 at once; the answer runs the
///   script's `ksr_diameter_response("diameter:response")` (Kamailio's `event_route[diameter:response]`,
///   which has no KEMI form there) with `$diameter_response` set, on the worker that asked, through
///   its mailbox. With a transaction (`t_newtran()` first) the transaction is suspended as with
///   `t_suspend` and the callback continues it as a failure route (`t_relay`/`t_reply` work); without
///   one the callback runs on a faked request. -1 when the request cannot be sent.
///
/// An empty `peer` routes by the realm table (the JSON's Destination-Realm and the application).
/// The request carries Session-Id, Origin-Host and Origin-Realm (`[diameter]` identity and realm),
/// then the JSON's AVPs, with the P flag, as Kamailio's `AAACreateRequest`.
enum ImsDiameterServerModule: KSRModule {
    static let name = "ims_diameter_server"
    static let summary = "Diameter requests from any route (JSON AVPs), the answer in $diameter_response; async with a callback."
    static let dependencies = ["tm", "tmx"]
    /// The Lua function an async answer runs (Kamailio's event_route[diameter:response]).
    static let responseCallback = "ksr_diameter_response"
    static let responseEvent = "diameter:response"

    static func exports(_ runtime: ModuleRuntime) -> [KemiExport] {
        let st = DiameterModule.state(runtime)
        let store = runtime.tm
        return [
            KemiExport("ims_diameter_server", "diameter_request", [.str, .int, .int, .str], returns: .int) { ctx, a in
                request(ctx, st, peer: a.str(0), appID: a.int(1), command: a.int(2), json: a.str(3))
            },
            KemiExport("ims_diameter_server", "diameter_request_async", [.str, .int, .int, .str], returns: .int,
                       compat: "the answer runs ksr_diameter_response(evname) (Kamailio: event_route[diameter:response], no KEMI form); suspends the transaction when there is one; -1 when not sent (Kamailio: 0)") { ctx, a in
                .int(requestAsync(ctx, st, store, peer: a.str(0), appID: a.int(1), command: a.int(2), json: a.str(3)))
            },
        ]
    }

    static let sessionCounter = Atomic<UInt32>(0)
    static let sessionHigh = UInt32(truncatingIfNeeded: time(nil))

    /// The request Kamailio's ki_diameter_request builds: a new session, P flag, Session-Id,
    /// Origin-Host, Origin-Realm, then the JSON's AVPs. Nil (logged) when something is wrong.
    static func build(_ ctx: RouteContext, _ link: any DiameterLink, appID: Int, command: Int, json: String) -> DiameterMessage? {
        guard let app = UInt32(exactly: appID) else {
            ctx.logger.error("ims_diameter_server: Invalid App-ID (\(appID))")
            return nil
        }
        guard command >= 0, command < 1 << 24 else {
            ctx.logger.error("ims_diameter_server: Invalid Command-Code (\(command))")
            return nil
        }
        guard !json.isEmpty else {
            ctx.logger.error("ims_diameter_server: Failed to parse JSON Request (empty)")
            return nil
        }
        var warnings: [String] = []
        let avps: [DiameterAVP]
        do {
            avps = try DiameterJSON.parse(json, warnings: &warnings)
        } catch {
            ctx.logger.error("ims_diameter_server: Failed to parse JSON Request: \(error)")
            return nil
        }
        for w in warnings { ctx.logger.warning("ims_diameter_server: \(w)") }
        let s = link.summary
        let low = sessionCounter.wrappingAdd(1, ordering: .relaxed).newValue
        var m = DiameterMessage(flags: DiameterMessage.flagRequest | DiameterMessage.flagProxiable, commandCode: UInt32(command),
                                applicationID: app, hopByHop: 0, endToEnd: 0)
        m.avps = [.utf8(BaseAVP.sessionID, "\(s.identity);\(sessionHigh);\(low)"), .utf8(BaseAVP.originHost, s.identity),
                  .utf8(BaseAVP.originRealm, s.realm)] + avps
        return m
    }

    private static func nodeLink(_ ctx: RouteContext, _ st: DiameterModuleState) -> (any DiameterLink)? {
        guard let l = st.link else {
            ctx.logger.error("ims_diameter_server: no [diameter] section: Diameter requests cannot be sent")
            return nil
        }
        return l
    }

    private static func refused(_ ctx: RouteContext, _ code: Int, _ peer: String) {
        if code == -1 {
            ctx.logger.error("ims_diameter_server: Peer unknown \(peer)")
        } else if peer.isEmpty {
            ctx.logger.error("ims_diameter_server: Can't find a suitable connected peer in the routing table")
        } else {
            ctx.logger.error("ims_diameter_server: Peer not connected to \(peer)")
        }
    }

    /// Waits for one answer (the node's loop completes it; the wait is bounded).
    final class Waiter: @unchecked Sendable {  // a mutex and a semaphore
        let answer = Mutex<DiameterMessage?>(nil)
        let done = DispatchSemaphore(value: 0)
    }

    /// Waits for the answer: blocking the worker, or (async_io, from a route coroutine) suspending
    /// the route only; 1 with `$diameter_response` set, -1 otherwise.
    static func request(_ ctx: RouteContext, _ st: DiameterModuleState, peer: String, appID: Int, command: Int,
                        json: String) -> KemiResult {
        let cur = DiameterCurrent.of(ctx)
        cur.response = nil
        guard let link = nodeLink(ctx, st), let m = build(ctx, link, appID: appID, command: command, json: json) else {
            return .int(-1)
        }
        if let ticket = ctx.asyncIO?.beginAwait(ctx) {
            // async_io: the route waits, the worker does not. The node completes every request it
            // queued exactly once (answer, or nil after request_timeout / when the peer fails).
            let rc = link.send(m, toPeer: peer) { a in
                ticket.complete { ctx in answered(ctx, a, peer: peer) }
            }
            if rc != 1 {
                refused(ctx, rc, peer)
                ticket.complete { _ in .int(-1) }
            }
            return .none
        }
        let w = Waiter()
        let rc = link.send(m, toPeer: peer) { a in
            w.answer.withLock { $0 = a }
            w.done.signal()
        }
        guard rc == 1 else {
            refused(ctx, rc, peer)
            return .int(-1)
        }
        let limit = link.summary.requestTimeout + 1000
        let answer = w.done.wait(timeout: .now() + .milliseconds(limit)) == .success ? w.answer.withLock({ $0 }) : nil
        return answered(ctx, answer, peer: peer)
    }

    /// `$diameter_response` and the return value once the request ended (nil: no answer).
    static func answered(_ ctx: RouteContext, _ answer: DiameterMessage?, peer: String) -> KemiResult {
        let cur = DiameterCurrent.of(ctx)
        guard let answer else {
            cur.response = nil
            ctx.logger.error("ims_diameter_server: no answer from \(peer.isEmpty ? "the realm's peer" : peer) (timeout or peer failure)")
            return .int(-1)
        }
        cur.response = answer
        return .int(1)
    }

    static func requestAsync(_ ctx: RouteContext, _ st: DiameterModuleState, _ store: TMStore, peer: String, appID: Int,
                             command: Int, json: String) -> Int {
        guard let link = nodeLink(ctx, st), let m = build(ctx, link, appID: appID, command: command, json: json) else { return -1 }
        guard ctx.runEvent != nil else {
            ctx.logger.error("ims_diameter_server: Asynchronous operations disabled (no route callbacks in this context)")
            return -1
        }
        var suspended: (index: Int, label: Int)? = nil
        if let cell = TMRelay.current(ctx) {
            let (code, _) = TMSuspend.suspend(store, ctx)
            guard code > 0 else {
                ctx.logger.error("ims_diameter_server: failed to suspend request processing")
                return -1
            }
            suspended = TMSuspend.ids(store, cell)
        }
        let mailbox = ctx.mailbox
        let ids = suspended
        mailbox.beginWait()
        let rc = link.send(m, toPeer: peer) { a in
            mailbox.post { ctx in
                mailbox.endWait()
                deliver(ctx, store, a, suspended: ids)
            }
        }
        guard rc == 1 else {
            mailbox.endWait()
            refused(ctx, rc, peer)
            if let s = suspended { TMSuspend.cancelSuspended(store, ctx, index: s.index, label: s.label) }
            return -1
        }
        return 0
    }

    /// On the worker that asked: `ksr_diameter_response` with `$diameter_response` set (null when no
    /// answer came: timeout, or the peer failed with no alternate).
    static func deliver(_ ctx: RouteContext, _ store: TMStore, _ answer: DiameterMessage?, suspended: (index: Int, label: Int)?) {
        let cur = DiameterCurrent.of(ctx)
        let saved = cur.response
        defer { cur.response = saved }
        if answer == nil { ctx.logger.error("ims_diameter_server: Error timeout when sending message via CDP") }
        if let s = suspended {
            guard TMSuspend.lookup(store, index: s.index, label: s.label) != nil else {
                ctx.logger.warning("ims_diameter_server: transaction not found \(s.index):\(s.label) (canceled or timed out)")
                return
            }
            TMSuspend.resume(store, ctx, index: s.index, label: s.label, callback: responseCallback, event: responseEvent,
                             eventRoute: true) { _ in
                cur.response = answer
            }
        } else {
            FakedMessage.run(ctx, callback: responseCallback, event: responseEvent) { _ in cur.response = answer }
        }
    }
}
