#if canImport(Glibc)
import Glibc
#endif
public import SIPCore
public import SIPTransport
public import StarlingKEMI
public import StarlingLua
import KSRModules
import Logging
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

    public init(context: RouteContext, stats: ServerStats = ServerStats(), parserLimits: SIPParserLimits = .default) {
        self.context = context
        self.stats = stats
        self.parserLimits = parserLimits
        context.onSend = { [unowned self] ctx, dst, proto, bytes in self.runOnSend(ctx, dst, proto, bytes) }
        context.runRoute = { [unowned self] _, name in
            guard let engine = self.engine else { return }
            self.report(self.timed(.other) { engine.run(callback: name) }, name)
        }
        context.runEvent = { [unowned self] _, name, event in
            guard let engine = self.engine else { return }
            self.report(self.timed(.other) { engine.run(callback: name, arg: event) }, name)
        }
    }

    /// Replaces the engine (a new script version). Callback names are resolved again.
    public func use(_ engine: LuaEngine) {
        self.engine = engine
        replyRoute = engine.callback(named: "ksr_reply_route")
        onsendRoute = engine.callback(named: "ksr_onsend_route")
    }

    /// Runs the transaction timers this worker owns; true while some are pending.
    @discardableResult
    public func runTimers() -> Bool {
        // Routes resumed by other threads (HTTP answers, async tasks) first: they were waiting longest.
        if context.mailbox.hasJobs { context.mailbox.run(context) }
        guard let tm = context.transactions else { return false }
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
        if message.isRequest {
            let outcome = timed(.request) { engine.run(engine.requestRoute) }
            report(outcome, "ksr_request_route")
            if let tm = ctx.transactions, ctx.transaction != nil || tm.wantsEveryRequestRouteEnd {
                tm.requestRouteFinished(ctx)
            }
            return .routed(outcome)
        }
        var outcome = CallbackOutcome.missing
        if let replyRoute {
            outcome = timed(.reply) { engine.run(replyRoute) }
            report(outcome, "ksr_reply_route")
        }
        if !ctx.dropRequested {
            if let tm = ctx.transactions, tm.handleReply(ctx) { return .routed(outcome) }
            _ = Forwarder.relayReply(ctx)
        }
        return .routed(outcome)
    }

    private func runOnSend(_ ctx: RouteContext, _ dst: SocketAddress, _ proto: SIPTransportProtocol, _ bytes: [UInt8]) -> Bool {
        guard let engine, let onsendRoute, engine.isFunction(onsendRoute) else { return true }
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
    @inline(__always) private func timed(_ kind: RouteTimeHistogram.Kind, _ run: () -> CallbackOutcome) -> CallbackOutcome {
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
