#if canImport(Glibc)
import Glibc
#endif
public import SIPCore
public import SIPTransport
public import StarlingKEMI
public import StarlingLua
import KSRModules
import Logging
import SIPTransaction
import Synchronization

/// What happened to one received datagram.
public enum DispatchResult: Sendable, Equatable {
    /// CR/LF keepalive: ignored.
    case keepalive
    /// Not a SIP message at all: dropped and counted.
    case unparsable
    /// Invalid; answered by the core with this status.
    case rejected(Int)
    /// Invalid and not answerable (a response, an ACK, no usable Via): dropped.
    case invalid
    /// Routed by the script (the outcome of its callback).
    case routed(CallbackOutcome)
    /// async_io: the route waits on the network; it resumes when the answer comes.
    case waiting
    /// async_io: a retransmission of a request whose route is waiting; dropped.
    case absorbed
}

/// async_io: the requests whose routes wait, in all workers (workers share a UDP socket, so a
/// retransmission may reach another worker than the original). Looked up only while routes wait
/// (one atomic load otherwise).
public final class AsyncPendingRequests: Sendable {
    private let keys = Mutex<Set<TransactionKey>>([])
    private let count = Atomic<Int>(0)

    public init() {}

    /// Records a waiting request; false if it is already recorded.
    func insert(_ key: TransactionKey) -> Bool {
        let added = keys.withLock { $0.insert(key).inserted }
        if added { count.wrappingAdd(1, ordering: .relaxed) }
        return added
    }

    func remove(_ key: TransactionKey) {
        if keys.withLock({ $0.remove(key) }) != nil { count.wrappingSubtract(1, ordering: .relaxed) }
    }

    func contains(_ key: TransactionKey) -> Bool {
        guard count.load(ordering: .relaxed) > 0 else { return false }
        return keys.withLock { $0.contains(key) }
    }

    /// Requests waiting now.
    public var waiting: Int { count.load(ordering: .relaxed) }
}

/// A route waiting on the network (async_io): its coroutine, the engine (script version) it started
/// in, and the message state and `$var`s it had when it yielded.
final class WaitingRoute {
    let engine: LuaEngine
    let coroutine: LuaEngine.Coroutine
    var state: MessageState
    var vars: [String: KemiValue]
    let kind: RouteTimeHistogram.Kind
    let key: TransactionKey?

    init(engine: LuaEngine, coroutine: LuaEngine.Coroutine, state: MessageState, vars: [String: KemiValue],
         kind: RouteTimeHistogram.Kind, key: TransactionKey?) {
        self.engine = engine
        self.coroutine = coroutine
        self.state = state
        self.vars = vars
        self.kind = kind
        self.key = key
    }
}

/// The per-message path shared by every transport worker and by offline tests: parse, core checks
/// (answering 400/505 itself), then the script's request or reply callback, then the stateless relay
/// of replies. Owned by one thread with its Lua engine and route context.
public final class MessageDispatcher {
    public let context: RouteContext
    public private(set) var engine: LuaEngine?
    public let stats: ServerStats
    let parserLimits: SIPParserLimits
    private var replyRoute: LuaCallback?
    private var onsendRoute: LuaCallback?
    /// async_io: routes waiting, by their wait's ticket id; the shared table of waiting requests.
    private var waiting: [Int: WaitingRoute] = [:]
    private var pendingRequests: AsyncPendingRequests?
    /// The engine of the route being resumed (an older script version after a reload), else nil.
    private var resumedEngine: LuaEngine?
    private var lastLimitLog = 0
    private var limitRejectsSinceLog = 0

    public init(context: RouteContext, stats: ServerStats = ServerStats(), parserLimits: SIPParserLimits = .default) {
        self.context = context
        self.stats = stats
        self.parserLimits = parserLimits
        context.onSend = { [unowned self] ctx, dst, proto, bytes in self.runOnSend(ctx, dst, proto, bytes) }
        context.runRoute = { [unowned self] _, name in
            guard let engine = self.resumedEngine ?? self.engine else { return }
            self.report(self.timed(.other) { engine.run(callback: name) }, name)
        }
        context.runEvent = { [unowned self] _, name, event in
            guard let engine = self.resumedEngine ?? self.engine else { return }
            self.report(self.timed(.other) { engine.run(callback: name, arg: event) }, name)
        }
    }

    /// Turns async_io on for this worker: request and reply routes run as coroutines that KSR calls
    /// waiting on the network suspend; at most `maxPending` wait at once.
    public func enableAsyncIO(maxPending: Int, pending: AsyncPendingRequests) {
        let aio = AsyncIO(maxPending: maxPending)
        aio.deliver = { [unowned self] _, id, result in self.resumeWaiting(id, result) }
        context.asyncIO = aio
        pendingRequests = pending
    }

    /// Routes waiting in this worker (async_io).
    public var waitingRoutes: Int { waiting.count }

    /// Replaces the engine (a new script version). Callback names are resolved again.
    public func use(_ engine: LuaEngine) {
        self.engine = engine
        replyRoute = engine.callback(named: "ksr_reply_route")
        onsendRoute = engine.callback(named: "ksr_onsend_route")
    }

    /// Runs the transaction timers this worker owns; returns the milliseconds until the next is due
    /// (nil: none within `workerMaxWaitMilliseconds`).
    @discardableResult
    public func runTimers() -> Int? {
        // Routes resumed by other threads (HTTP answers, async tasks) first: they were waiting longest.
        if context.mailbox.hasJobs { context.mailbox.run(context) }
        guard let tm = context.transactions else { return nil }
        return tm.runTimers(context)
    }

    /// Handles one datagram.
    @discardableResult
    public func dispatch(_ bytes: UnsafeRawBufferPointer, source: SocketAddress, local: SocketAddress,
                         proto: SIPTransportProtocol, connectionID: UInt64 = 0) -> DispatchResult {
        stats.received.wrappingAdd(1, ordering: .relaxed)
        stats.receivedByTransport[Int(proto.rawValue) & 7].wrappingAdd(1, ordering: .relaxed)
        // Keepalives (CRLF only) are ignored silently, as Kamailio does: answering them would reflect
        // traffic to spoofed sources.
        if bytes.allSatisfy({ $0 == 0x0D || $0 == 0x0A || $0 == 0x20 || $0 == 0x09 }) { return .keepalive }
        let logger = context.logger
        let message: SIPMessage
        do {
            message = try SIPMessage.parse(bytes, limits: parserLimits, datagram: proto == .udp)
        } catch {
            stats.parseErrors.wrappingAdd(1, ordering: .relaxed)
            logger.debug("dropped unparsable datagram from \(source): \(error)")
            return .unparsable
        }
        return dispatch(message, source: source, local: local, proto: proto, connectionID: connectionID)
    }

    /// Handles one parsed message.
    @discardableResult
    public func dispatch(_ message: SIPMessage, source: SocketAddress, local: SocketAddress,
                         proto: SIPTransportProtocol, connectionID: UInt64 = 0) -> DispatchResult {
        if message.isRequest {
            stats.requestsByMethod[Int(message.method.rawValue) & 31].wrappingAdd(1, ordering: .relaxed)
        } else {
            let c = message.statusCode / 100
            stats.repliesByClass[(1...6).contains(c) ? c : 0].wrappingAdd(1, ordering: .relaxed)
        }
        let ctx = context
        let info = ReceiveInfo(source: source, local: local, proto: proto, connectionID: connectionID)
        ctx.begin(message: message, received: info, routeType: message.isRequest ? .request : .reply)
        defer { ctx.message = nil }
        do {
            try message.check()
        } catch {
            stats.rejected.wrappingAdd(1, ordering: .relaxed)
            if let status = error.status, message.isRequest, message.method != .ack, message.firstHeader(.via) != nil {
                ctx.logger.info("\(status) \(error.reason) to \(source): \(error.detail)")
                CoreReplies.send(ctx, status: status, reason: error.reason)
                return .rejected(status)
            }
            ctx.logger.debug("dropped invalid message from \(source): \(error)")
            return .invalid
        }
        guard let engine else { return .invalid }
        ctx.receivedAt = Self.now()
        if let aio = ctx.asyncIO { return dispatchAsync(message, engine, aio) }
        if message.isRequest {
            let outcome = timed(.request) { engine.run(engine.requestRoute) }
            report(outcome, "ksr_request_route")
            requestRouteEnded(ctx)
            return .routed(outcome)
        }
        var outcome = CallbackOutcome.missing
        if let replyRoute {
            outcome = timed(.reply) { engine.run(replyRoute) }
            report(outcome, "ksr_reply_route")
        }
        replyRouteEnded(ctx)
        return .routed(outcome)
    }

    private func requestRouteEnded(_ ctx: RouteContext) {
        if let tm = ctx.transactions, ctx.transaction != nil || tm.wantsEveryRequestRouteEnd {
            tm.requestRouteFinished(ctx)
        }
    }

    private func replyRouteEnded(_ ctx: RouteContext) {
        if !ctx.dropRequested {
            if let tm = ctx.transactions, tm.handleReply(ctx) { return }
            _ = Forwarder.relayReply(ctx)
        }
    }

    // MARK: async_io

    /// The request or reply route as a coroutine. A retransmission of a request whose route waits is
    /// absorbed; beyond `async_max_pending` waiting routes a request gets 503 (ACKs and replies are
    /// routed without waiting: their KSR calls block).
    private func dispatchAsync(_ message: SIPMessage, _ engine: LuaEngine, _ aio: AsyncIO) -> DispatchResult {
        let ctx = context
        let isRequest = message.isRequest
        let absorbable = isRequest && message.method != .ack
        // The request's transaction key only when some request waits (one relaxed load otherwise),
        // or once this route waits: most routes never do.
        var key: TransactionKey? = nil
        if absorbable, let pendingRequests, pendingRequests.waiting > 0 {
            key = TransactionKey.server(for: message)
            if let key, pendingRequests.contains(key) {
                stats.asyncAbsorbed.wrappingAdd(1, ordering: .relaxed)
                ctx.logger.debug("retransmission of a request whose route waits: absorbed")
                return .absorbed
            }
        }
        let name = isRequest ? "ksr_request_route" : "ksr_reply_route"
        let kind: RouteTimeHistogram.Kind = isRequest ? .request : .reply
        guard isRequest || replyRoute != nil else {
            replyRouteEnded(ctx)
            return .routed(.missing)
        }
        let cb = isRequest ? engine.requestRoute : replyRoute!
        if waiting.count >= aio.maxPending {
            if isRequest && message.method != .ack {
                stats.asyncRejected.wrappingAdd(1, ordering: .relaxed)
                logLimit(aio, message)
                CoreReplies.send(ctx, status: 503, reason: "Service Unavailable")
                return .rejected(503)
            }
            let outcome = timed(kind) { engine.run(cb) }
            report(outcome, name)
            if isRequest { requestRouteEnded(ctx) } else { replyRouteEnded(ctx) }
            return .routed(outcome)
        }
        let (made, failed) = engine.coroutine(cb)
        guard let co = made else {
            let outcome = failed ?? .missing
            report(outcome, name)
            if isRequest { requestRouteEnded(ctx) } else { replyRouteEnded(ctx) }
            return .routed(outcome)
        }
        let step = timed(kind) { engine.resume(co) }
        switch step {
        case .finished(let outcome):
            report(outcome, name)
            if isRequest { requestRouteEnded(ctx) } else { replyRouteEnded(ctx) }
            return .routed(outcome)
        case .yielded:
            guard let ticket = aio.takeYielded() else {
                let outcome = yieldedByScript(engine, co, name)
                if isRequest { requestRouteEnded(ctx) } else { replyRouteEnded(ctx) }
                return .routed(outcome)
            }
            if absorbable, key == nil { key = TransactionKey.server(for: message) }
            if let key, let pendingRequests, !pendingRequests.insert(key) {
                // Cannot happen (checked above, same thread); keep the table consistent anyway.
                ctx.logger.debug("request already waiting")
            }
            waiting[ticket.id] = WaitingRoute(engine: engine, coroutine: co, state: ctx.state, vars: ctx.worker.vars,
                                              kind: kind, key: key)
            return .waiting
        }
    }

    /// The script called coroutine.yield() in a route itself: there is nothing to wait for, so the
    /// route ends there as a script error (as `coroutine.yield` outside a coroutine would).
    private func yieldedByScript(_ engine: LuaEngine, _ co: LuaEngine.Coroutine, _ name: String) -> CallbackOutcome {
        engine.release(co)
        context.logger.error("error from Lua: \(name) yielded outside a KSR call (coroutine.yield in a route); route ended")
        let outcome = CallbackOutcome.error(LuaScriptError(kind: .runtime, message: "attempt to yield from a route"))
        report(outcome, name)
        return outcome
    }

    /// A wait is over: the route's state comes back, the call gets its result, the coroutine goes on
    /// (in the script version it started in). Runs between two messages (mailbox job).
    private func resumeWaiting(_ id: Int, _ result: (RouteContext) -> KemiResult) {
        guard let w = waiting.removeValue(forKey: id), let aio = context.asyncIO else { return }
        let ctx = context
        let outerState = ctx.state
        // `$var`s: the route gets back those it had; afterwards they stay the worker's (as after a
        // message routed without waiting: the last route's values persist).
        ctx.state = w.state
        ctx.worker.vars = w.vars
        resumedEngine = w.engine
        defer {
            resumedEngine = nil
            ctx.state = outerState
        }
        aio.setResult(result(ctx))
        let name = w.kind == .request ? "ksr_request_route" : "ksr_reply_route"
        let step = timed(w.kind) { w.engine.resume(w.coroutine) }
        switch step {
        case .yielded:
            if let ticket = aio.takeYielded() {
                w.state = ctx.state
                w.vars = ctx.worker.vars
                waiting[ticket.id] = w
                return
            }
            _ = yieldedByScript(w.engine, w.coroutine, name)
        case .finished(let o):
            report(o, name)
        }
        if let key = w.key { pendingRequests?.remove(key) }
        if w.kind == .request { requestRouteEnded(ctx) } else { replyRouteEnded(ctx) }
    }

    /// One log line per second at most while the limit refuses requests.
    private func logLimit(_ aio: AsyncIO, _ message: SIPMessage) {
        limitRejectsSinceLog += 1
        let now = Self.monotonicNanos() / 1_000_000_000
        guard now != lastLimitLog else { return }
        lastLimitLog = now
        context.logger.warning(
            "async_max_pending (\(aio.maxPending)) reached in worker \(context.worker.index): 503 to \(message.method.name) (\(limitRejectsSinceLog) refused since the last line)")
        limitRejectsSinceLog = 0
    }

    private func runOnSend(_ ctx: RouteContext, _ dst: SocketAddress, _ proto: SIPTransportProtocol, _ bytes: [UInt8]) -> Bool {
        if let old = resumedEngine, old !== engine {
            // A route of an older script version: its own ksr_onsend_route.
            let cb = old.callback(named: "ksr_onsend_route")
            guard old.isFunction(cb) else { return true }
            return onSend(old, cb, ctx)
        }
        guard let engine, let onsendRoute, engine.isFunction(onsendRoute) else { return true }
        return onSend(engine, onsendRoute, ctx)
    }

    private func onSend(_ engine: LuaEngine, _ onsendRoute: LuaCallback, _ ctx: RouteContext) -> Bool {
        let savedType = ctx.routeType, savedDrop = ctx.dropRequested
        ctx.routeType = .onsend
        ctx.dropRequested = false
        report(engine.run(onsendRoute), "ksr_onsend_route")
        let dropped = ctx.dropRequested
        ctx.routeType = savedType
        ctx.dropRequested = savedDrop
        return !dropped
    }

    private func report(_ outcome: CallbackOutcome, _ name: String) {
        let logger = context.logger
        switch outcome {
        case .ok, .exited:
            break
        case .missing:
            if name == "ksr_request_route" { logger.error("\(name) is not defined") }
        case .error:
            // The engine logged it once, with file:line and the traceback.
            stats.scriptErrors.wrappingAdd(1, ordering: .relaxed)
        case .budgetExceeded:
            // Logged once by the engine, with the script position.
            stats.budgetAborts.wrappingAdd(1, ordering: .relaxed)
        case .memoryExceeded:
            stats.scriptErrors.wrappingAdd(1, ordering: .relaxed)
        }
    }

    /// Runs a route callback and adds its duration to the route time histogram.
    @inline(__always) private func timed<T>(_ kind: RouteTimeHistogram.Kind, _ run: () -> T) -> T {
        let t0 = Self.monotonicNanos()
        let outcome = run()
        stats.routeTime.record(kind, nanos: Self.monotonicNanos() &- t0)
        return outcome
    }

    /// A monotonic clock in nanoseconds (route execution times).
    @inline(__always) static func monotonicNanos() -> Int {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return ts.tv_sec &* 1_000_000_000 &+ ts.tv_nsec
    }

    static func now() -> (seconds: Int, micros: Int) {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return (ts.tv_sec, ts.tv_nsec / 1000)
    }
}
