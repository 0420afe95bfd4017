#if canImport(Glibc)
import Glibc
#endif
public import Synchronization
import SIPCore
import SIPTransport
import StarlingKEMI
import StarlingLua
import KSRModules
import SIPStreams
import CStarlingSystem
import Logging

/// Tells threads to stop.
final class StopFlag: Sendable {
    private let flag = Atomic<Bool>(false)
    var isSet: Bool { flag.load(ordering: .relaxed) }
    func set() { flag.store(true, ordering: .releasing) }
}

/// Message counters. Each worker has its own instance (no cache line shared between workers on the
/// per-message path); `Server.counters()` adds them up.
public final class ServerStats: Sendable {
    public let received = Atomic<Int>(0)
    public let parseErrors = Atomic<Int>(0)
    public let rejected = Atomic<Int>(0)
    public let scriptErrors = Atomic<Int>(0)
    public let budgetAborts = Atomic<Int>(0)
    /// async_io: retransmissions absorbed while their route waited; requests refused (503) at
    /// async_max_pending.
    public let asyncAbsorbed = Atomic<Int>(0)
    public let asyncRejected = Atomic<Int>(0)
    public let reloadsOK = Atomic<Int>(0)
    public let reloadsFailed = Atomic<Int>(0)
    /// Requests received, by `SIPMethod.rawValue` (index 0: other methods).
    public let requestsByMethod: InlineArray<32, Atomic<Int>> = InlineArray { _ in Atomic<Int>(0) }
    /// Replies received, by status class (index 1 = 1xx ... 6 = 6xx; 0 = out of range).
    public let repliesByClass: InlineArray<7, Atomic<Int>> = InlineArray { _ in Atomic<Int>(0) }
    /// Requests sent (forwarded or generated).
    public let requestsSent = Atomic<Int>(0)
    /// Replies sent (relayed or generated), by status class (index 1 = 1xx ... 6 = 6xx; 0 = other).
    public let repliesSentByClass: InlineArray<7, Atomic<Int>> = InlineArray { _ in Atomic<Int>(0) }
    /// Datagrams the socket refused to send.
    public let sendFailures = Atomic<Int>(0)
    /// Messages received and sent, by `SIPTransportProtocol.rawValue` (udp, tcp, tls, ws, wss, sctp).
    public let receivedByTransport: InlineArray<8, Atomic<Int>> = InlineArray { _ in Atomic<Int>(0) }
    public let sentByTransport: InlineArray<8, Atomic<Int>> = InlineArray { _ in Atomic<Int>(0) }
    /// How long route callbacks ran (Lua and the KSR functions they called).
    public let routeTime = RouteTimeHistogram()
    public init() {}
}

/// A histogram of route execution times, by callback kind: fixed buckets, one worker writes it
/// (relaxed atomics, no lock), the metrics endpoint reads and sums the workers' histograms.
public final class RouteTimeHistogram: Sendable {
    /// Which callback ran: ksr_request_route, ksr_reply_route, or another route (failure, branch,
    /// onreply, event routes).
    public enum Kind: Int, Sendable, CaseIterable {
        case request, reply, other
        public var label: String { ["request", "reply", "other"][rawValue] }
    }

    /// Upper bounds of the buckets in seconds (Prometheus `le`); a last bucket holds the rest.
    public static let bounds: [Double] = [0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5,
                                          0.005, 0.01, 0.025, 0.1, 1]
    private static let boundsNanos: [Int] = bounds.map { Int(($0 * 1e9).rounded()) }

    /// counts[kind * 14 + bucket], then sums in nanoseconds.
    private let counts: InlineArray<42, Atomic<Int>> = InlineArray { _ in Atomic<Int>(0) }
    private let sums: InlineArray<3, Atomic<Int>> = InlineArray { _ in Atomic<Int>(0) }

    public init() {}

    @inline(__always) public func record(_ kind: Kind, nanos: Int) {
        var b = 0
        let limits = Self.boundsNanos
        while b < limits.count && nanos > limits[b] { b += 1 }
        counts[kind.rawValue &* 14 &+ b].wrappingAdd(1, ordering: .relaxed)
        sums[kind.rawValue].wrappingAdd(nanos, ordering: .relaxed)
    }

    /// Per-bucket (non-cumulative) counts, the last one for times above every bound.
    public func buckets(_ kind: Kind) -> [Int] {
        (0..<14).map { counts[kind.rawValue * 14 + $0].load(ordering: .relaxed) }
    }

    /// Total time in nanoseconds.
    public func sumNanos(_ kind: Kind) -> Int { sums[kind.rawValue].load(ordering: .relaxed) }
}

/// One worker thread: receives datagrams from one UDP socket in batches, routes each through its own
/// Lua state, and sends what the script produced in batches. Nothing on this path takes a lock; the
/// only shared read per message is the script generation. With stream transports configured, the
/// worker also waits on its inbox (an eventfd in the same wait set) and routes the messages that
/// connections handed to it between UDP batches, with the same Lua state.
///
/// The first worker of a socket always reads it; the others read it only while the readers fall
/// behind or are stuck in a message (`UDPCrew`).
final class UDPWorker {
    let index: Int
    /// The UDP socket (nil for a worker that only serves connections: no UDP listener is configured).
    let socket: UDPSocket?
    let inbox: StreamInbox?
    let store: ScriptStore
    let registry: KemiRegistry
    let limits: LuaEngineLimits
    let services: ServerServices
    let logger: Logger
    let stop: StopFlag
    /// The workers of `socket`, and this worker's place among them (0: the lead, always reading).
    let crew: UDPCrew?
    let member: Int

    private var generation = -1
    private let dispatcher: MessageDispatcher
    private let sender: WorkerSender
    private let receiver = UDPBatchReceiver(capacity: 32)
    /// The eventfd that wakes a UDP-only worker when a job is posted to its mailbox (-1 when the
    /// worker has an inbox: its eventfd is used).
    private let wakeFD: Int32

    init(index: Int, socket: UDPSocket?, inbox: StreamInbox? = nil, store: ScriptStore, limits: LuaEngineLimits,
         services: ServerServices, stats: ServerStats, logger: Logger, parserLimits: SIPParserLimits, stop: StopFlag,
         stack: RoutingStack, asyncIO: (maxPending: Int, pending: AsyncPendingRequests)? = nil,
         crew: UDPCrew? = nil, member: Int = 0) {
        self.index = index
        self.crew = socket == nil ? nil : crew
        self.member = member
        self.socket = socket
        self.inbox = inbox
        self.store = store
        self.registry = stack.registry
        self.limits = limits
        self.services = services
        self.logger = logger
        self.stop = stop
        sender = WorkerSender(services: services, logger: logger, stats: stats)
        let local = socket?.localAddress ?? services.listen.first!.address
        let ctx = stack.makeContext(worker: index, logger: logger, services: services, sender: sender, local: local)
        dispatcher = MessageDispatcher(context: ctx, stats: stats, parserLimits: parserLimits)
        if let asyncIO { dispatcher.enableAsyncIO(maxPending: asyncIO.maxPending, pending: asyncIO.pending) }
        sender.context = ctx
        // Jobs posted to the worker's mailbox (resumed routes) wake its poll: through the inbox's
        // eventfd when it has one, else through an eventfd of its own next to the UDP socket.
        if let inbox {
            wakeFD = -1
            let fd = inbox.fileDescriptor
            ctx.mailbox.setWakeup { _ = st_eventfd_signal(fd) }
        } else {
            let fd = st_eventfd_create()
            wakeFD = fd
            if fd >= 0 { ctx.mailbox.setWakeup { _ = st_eventfd_signal(fd) } }
        }
        self.crew?.members[member].wakeFD.store(inbox?.fileDescriptor ?? wakeFD, ordering: .releasing)
    }

    deinit { if wakeFD >= 0 { close(wakeFD) } }

    /// The thread body: waits on the UDP socket (shared with the other workers of the listener; a
    /// helper only while it reads it) and on its own eventfd (the inbox's, or the mailbox's), routes
    /// what arrived, runs its timers, sends.
    func run() {
        // Log lines written on this thread carry the Call-ID of the message being routed.
        CurrentRoute.set(dispatcher.context)
        defer { CurrentRoute.set(nil) }
        switchScriptIfNeeded()
        // This worker's entry in its socket's crew (nil with one worker per socket: nobody to help).
        let me = crew.flatMap { $0.members.count > 1 ? $0.members[member] : nil }
        let waitSet: WaitSet
        do {
            waitSet = try WaitSet(shared: socket?.fileDescriptor ?? -1, own: inbox?.fileDescriptor ?? wakeFD,
                                  watchingShared: me?.reading.load(ordering: .relaxed) ?? true)
        } catch {
            logger.error("worker \(index) stops: \(error)")
            return
        }
        let skipGroups = socket.map(skipsGroupDatagrams) ?? false
        // Until the next timer is due (tm says when; another worker that starts one due earlier
        // wakes this one), and at most `workerMaxWaitMilliseconds`; the helper next to join looks
        // at the readers every `UDPCrew.stallMilliseconds`.
        var wait = workerMaxWaitMilliseconds
        while !stop.isSet {
            let ready: WaitSet.Ready
            do {
                let helperIdle = !waitSet.watchingShared && crew?.isNextToHelp(member) == true
                me?.busySince.store(0, ordering: .relaxed)
                ready = try waitSet.wait(milliseconds: Int32(helperIdle ? min(wait, UDPCrew.stallMilliseconds) : wait))
                if let me, waitSet.watchingShared { me.busySince.store(MessageDispatcher.monotonicNanos(), ordering: .relaxed) }
            } catch {
                if stop.isSet { break }
                logger.warning("worker \(index): \(error)")
                usleep(10_000)
                continue
            }
            var handled = 0
            if ready.contains(.own) {
                if let inbox { handled += routeInbox(inbox) } else { st_eventfd_drain(wakeFD) }
            }
            if let socket {
                if let crew, let me, member > 0 {
                    handled += helpRead(socket, crew: crew, me: me, waitSet: waitSet, skipGroups: skipGroups)
                } else if ready.contains(.shared) {
                    handled += routeDatagrams(socket, skipGroups: skipGroups)
                }
            }
            wait = min(dispatcher.runTimers() ?? workerMaxWaitMilliseconds, workerMaxWaitMilliseconds)
            sender.flush()
            if handled == 0 { switchScriptIfNeeded() }
        }
        if let me, member > 0 { me.reading.store(false, ordering: .relaxed) }
    }

    /// A helper's turn on the socket after a wake-up: joins the readers when called in for a backlog
    /// or when every reader is stuck in a message, reads while it is one, and leaves once a receive
    /// finds the queue drained and no other reader is stuck.
    private func helpRead(_ socket: UDPSocket, crew: UDPCrew, me: UDPCrew.Member, waitSet: WaitSet,
                          skipGroups: Bool) -> Int {
        if !waitSet.watchingShared {
            let reason: UDPCrew.JoinReason
            if me.called.load(ordering: .relaxed) {
                reason = .backlog
            } else if crew.isNextToHelp(member), crew.othersStalled(besides: member, now: MessageDispatcher.monotonicNanos()) {
                reason = .stall
            } else {
                return 0
            }
            do {
                try waitSet.watchShared(true)
            } catch {
                logger.warning("worker \(index) cannot read \(socket): \(error)")
                return 0
            }
            // Busy from now on, as a reader that woke for the socket (a helper after it may join if
            // this one gets stuck too).
            me.busySince.store(MessageDispatcher.monotonicNanos(), ordering: .relaxed)
            me.reading.store(true, ordering: .releasing)
            me.called.store(false, ordering: .releasing)
            crew.joins[reason.rawValue].wrappingAdd(1, ordering: .relaxed)
            crew.joined(member)
        }
        let n = routeDatagrams(socket, skipGroups: skipGroups)
        if n <= UDPCrew.leaveBacklog && !crew.othersStalled(besides: member, now: MessageDispatcher.monotonicNanos()) {
            do {
                try waitSet.watchShared(false)
                me.reading.store(false, ordering: .releasing)
            } catch {
                logger.warning("worker \(index) cannot stop reading \(socket): \(error)")
            }
        }
        return n
    }

    /// Routes the datagrams queued on the socket (one `recvmmsg`; none if another worker took them).
    private func routeDatagrams(_ socket: UDPSocket, skipGroups: Bool) -> Int {
        let n: Int
        do {
            n = try receiver.receiveQueued(on: socket)
        } catch {
            if !stop.isSet { logger.warning("receive on \(socket) failed: \(error)") }
            return 0
        }
        let local = socket.localAddress
        crew?.received(n)
        for i in 0..<n {
            if skipGroups, receiver.localAddress(at: i, on: socket)?.isMulticast == true { continue }
            switchScriptIfNeeded()
            dispatcher.dispatch(receiver.bytes(at: i), source: receiver.source(at: i), local: local, proto: .udp)
        }
        return n
    }

    /// Routes the messages connections handed to this worker.
    private func routeInbox(_ inbox: StreamInbox) -> Int {
        var handled = 0
        for m in inbox.drain() {
            switchScriptIfNeeded()
            m.bytes.withUnsafeBytes {
                _ = dispatcher.dispatch($0, source: m.source, local: m.local, proto: m.proto, connectionID: m.connectionID)
            }
            handled += 1
        }
        return handled
    }

    /// A wildcard socket on the port of a multicast group listener also receives the group's
    /// datagrams; the group socket routes them (once), this one drops them.
    private func skipsGroupDatagrams(_ socket: UDPSocket) -> Bool {
        socket.localAddress.isUnspecified && services.multicastPorts.contains(socket.localAddress.port)
    }

    /// Moves to the published script version between two messages. A version that fails to build
    /// here (it was validated before publishing) leaves the previous one running.
    private func switchScriptIfNeeded() {
        let g = store.generation
        guard g != generation else { return }
        let p = store.published
        generation = p.generation  // a version that fails here is not retried on every message
        do {
            let e = try LuaEngine(script: p.source, registry: registry, context: dispatcher.context, limits: limits)
            dispatcher.use(e)
            let now = store.workersOnCurrent.wrappingAdd(1, ordering: .acquiringAndReleasing).newValue
            logger.debug("worker \(index) runs script version \(p.version)")
            if now == services.workerCount {
                logger.info("script \(p.source.path) version \(p.version) active in all \(now) workers")
            }
        } catch {
            logger.error("worker \(index) could not start script version \(p.version): \(error)")
        }
    }
}
