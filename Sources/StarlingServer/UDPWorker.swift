#if canImport(Glibc)
import Glibc
#endif
public import Synchronization
import SIPCore
import SIPTransport
import StarlingKEMI
import StarlingLua
import KSRModules
import Logging

/// Tells threads to stop.
final class StopFlag: Sendable {
    private let flag = Atomic<Bool>(false)
    var isSet: Bool { flag.load(ordering: .relaxed) }
    func set() { flag.store(true, ordering: .releasing) }
}

/// Counters shared by all workers (relaxed atomics; read by logs and, later, metrics).
public final class ServerStats: Sendable {
    public let received = Atomic<Int>(0)
    public let parseErrors = Atomic<Int>(0)
    public let rejected = Atomic<Int>(0)
    public let scriptErrors = Atomic<Int>(0)
    public let budgetAborts = Atomic<Int>(0)
    public let reloadsOK = Atomic<Int>(0)
    public let reloadsFailed = Atomic<Int>(0)
    public init() {}
}

/// One worker thread: receives datagrams from one UDP socket in batches, routes each through its own
/// Lua state, and sends what the script produced in batches. Nothing on this path takes a lock; the
/// only shared read per message is the script generation.
final class UDPWorker {
    let index: Int
    let socket: UDPSocket
    let store: ScriptStore
    let registry: KemiRegistry
    let limits: LuaEngineLimits
    let services: ServerServices
    let stats: ServerStats
    let logger: Logger
    let parserLimits: SIPParserLimits
    let stop: StopFlag

    private var engine: LuaEngine?
    private var generation = -1
    private let ctx: RouteContext
    private let sender: WorkerSender
    private let receiver = UDPBatchReceiver(capacity: 32)
    private var replyRoute: LuaCallback?
    private var onsendRoute: LuaCallback?

    init(index: Int, socket: UDPSocket, store: ScriptStore, registry: KemiRegistry, limits: LuaEngineLimits,
         services: ServerServices, stats: ServerStats, logger: Logger, parserLimits: SIPParserLimits, stop: StopFlag) {
        self.index = index
        self.socket = socket
        self.store = store
        self.registry = registry
        self.limits = limits
        self.services = services
        self.stats = stats
        self.logger = logger
        self.parserLimits = parserLimits
        self.stop = stop
        sender = WorkerSender(services: services, logger: logger)
        let local = socket.localAddress
        ctx = RouteContext(worker: WorkerLocals(index: index), logger: logger, services: services, sender: sender,
                           received: ReceiveInfo(source: local, local: local, proto: .udp))
    }

    /// The thread body.
    func run() {
        switchScriptIfNeeded()
        while !stop.isSet {
            let n: Int
            do {
                n = try receiver.receive(on: socket, timeout: .milliseconds(200))
            } catch {
                if stop.isSet { break }
                logger.warning("receive on \(socket) failed: \(error)")
                continue
            }
            for i in 0..<n {
                switchScriptIfNeeded()
                handle(receiver.bytes(at: i), from: receiver.source(at: i))
            }
            sender.flush()
            if n == 0 { switchScriptIfNeeded() }
        }
        engine = nil
    }

    /// Moves to the published script version between two messages. A version that fails to build
    /// here (it was validated before publishing) leaves the previous one running.
    private func switchScriptIfNeeded() {
        let g = store.generation
        guard g != generation else { return }
        let p = store.published
        do {
            let e = try LuaEngine(script: p.source, registry: registry, context: ctx, limits: limits)
            engine = e
            generation = p.generation
            replyRoute = e.callback(named: "ksr_reply_route")
            onsendRoute = e.callback(named: "ksr_onsend_route")
            let now = store.workersOnCurrent.wrappingAdd(1, ordering: .acquiringAndReleasing).newValue
            logger.debug("worker \(index) runs script version \(p.version)")
            if now == services.workerCount {
                logger.info("script \(p.source.path) version \(p.version) active in all \(now) workers")
            }
        } catch {
            generation = p.generation  // do not retry on every message
            logger.error("worker \(index) could not start script version \(p.version): \(error)")
        }
        ctx.onSend = { [unowned self] ctx, dst, proto, bytes in self.runOnSend(ctx, dst, proto, bytes) }
    }

    private func handle(_ bytes: UnsafeRawBufferPointer, from source: SocketAddress) {
        stats.received.wrappingAdd(1, ordering: .relaxed)
        // Keepalives (CRLF only) are ignored silently, as Kamailio does.
        if bytes.allSatisfy({ $0 == 0x0D || $0 == 0x0A || $0 == 0x20 }) { return }
        let message: SIPMessage
        do {
            message = try SIPMessage.parse(bytes, limits: parserLimits, datagram: true)
        } catch {
            stats.parseErrors.wrappingAdd(1, ordering: .relaxed)
            logger.debug("dropped unparsable datagram from \(source): \(error)")
            return
        }
        let info = ReceiveInfo(source: source, local: socket.localAddress, proto: .udp)
        ctx.begin(message: message, received: info, routeType: message.isRequest ? .request : .reply)
        do {
            try message.check()
        } catch {
            stats.rejected.wrappingAdd(1, ordering: .relaxed)
            if let status = error.status, message.isRequest, message.method != .ack, message.topVia != nil {
                logger.info("\(status) \(error.reason) to \(source): \(error.detail)")
                CoreReplies.send(ctx, status: status, reason: error.reason)
            } else {
                logger.debug("dropped invalid message from \(source): \(error)")
            }
            return
        }
        guard let engine else { return }
        ctx.receivedAt = Self.now()
        if message.isRequest {
            report(engine.run(engine.requestRoute), "ksr_request_route")
        } else {
            if let replyRoute { report(engine.run(replyRoute), "ksr_reply_route") }
            if !ctx.dropRequested {
                _ = Forwarder.relayReply(ctx)
            }
        }
        ctx.message = nil
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
        switch outcome {
        case .ok, .exited, .missing:
            if case .missing = outcome, name == "ksr_request_route" {
                logger.error("\(name) is not defined")
            }
        case .error:
            // The engine logged it once, with file:line and the traceback.
            stats.scriptErrors.wrappingAdd(1, ordering: .relaxed)
        case .budgetExceeded:
            stats.budgetAborts.wrappingAdd(1, ordering: .relaxed)
            logger.error("\(name) aborted: it ran more than \(limits.instructionBudget) Lua instructions (an endless loop?)")
        case .memoryExceeded:
            stats.scriptErrors.wrappingAdd(1, ordering: .relaxed)
            logger.error("\(name) aborted: the Lua state reached its memory limit of \(limits.memoryLimit / (1 << 20)) MiB")
        }
    }

    static func now() -> (seconds: Int, micros: Int) {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return (ts.tv_sec, ts.tv_nsec / 1000)
    }
}
