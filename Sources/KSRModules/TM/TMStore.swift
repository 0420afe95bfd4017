public import SIPTransaction
public import StarlingKEMI
import SIPCore
import Synchronization

/// What the transaction table maps a key to.
enum TMEntry: Sendable {
    /// The server transaction of a received request.
    case server(TMCell)
    /// Branch `i` of a cell (its client transaction).
    case client(TMCell, Int)
    /// The CANCEL sent on branch `i` (its replies are absorbed).
    case cancel(TMCell, Int)
}

/// A timer of a transaction: which cell, which side (-1 server, -2 lifetime, else branch index), which timer.
struct TMTimerKey: Hashable, Sendable {
    let cell: TMCell
    let branch: Int
    let timer: TransactionTimer
}

/// The timers of one worker: a timing wheel behind a lock (the owner advances it; other workers may
/// schedule into it when a reply for one of its transactions arrives on them).
final class TMTimerQueue: Sendable {
    let wheel: Mutex<TimerWheel<TMTimerKey, ContinuousClock.Instant>>
    let clock: @Sendable () -> ContinuousClock.Instant
    init(clock: @escaping @Sendable () -> ContinuousClock.Instant) {
        self.clock = clock
        wheel = Mutex(TimerWheel(origin: clock()))
    }
    /// Deadlines count from the store's clock now, not from the wheel's last advance.
    func schedule(_ key: TMTimerKey, after d: Duration) {
        let at = clock().advanced(by: d)
        wheel.withLock { $0.schedule(key, at: at) }
    }
    func cancel(_ key: TMTimerKey) { wheel.withLock { _ = $0.cancel(key) } }
    func advance(to now: ContinuousClock.Instant) -> [TMTimerKey] { wheel.withLock { $0.advance(to: now) } }
    var count: Int { wheel.withLock { $0.count } }
}

/// Per-worker tm state: the worker's timer queue and what the current route knows about the transaction.
final class TMWorkerState {
    var queue: TMTimerQueue?
    /// The branch index a failure/onreply/branch route runs for (-1: none).
    var branchIndex = -1
    /// The status code an onreply route sees.
    var replyCode = 0
    /// What the script set before the transaction existed, for the message `pendingMessage`: timer
    /// overrides (t_set_fr: inv, noninv in ms) and route names (t_on_*).
    var pendingFR: (Int, Int)? = nil
    /// t_set_retr before the transaction exists: (T1, T2) in ms.
    var pendingRetr: (Int, Int)? = nil
    /// t_set_auto_inv_100(0) for this message.
    var noAuto100 = false
    var pendingRoutes: [ReferenceWritableKeyPath<TMCell, String>: String] = [:]
    var pendingMessage: SIPMessage?

    /// The pending values, reset when they belong to another message.
    func pending(for m: SIPMessage?) {
        if pendingMessage !== m {
            pendingMessage = m
            pendingFR = nil
            pendingRetr = nil
            noAuto100 = false
            pendingRoutes.removeAll()
        }
    }
}

/// The process-wide transaction store of `KSR.tm`: the sharded table shared by all workers, the timer
/// configuration (`[modparam.tm]`), the clock.
public final class TMStore: TransactionLayer, Sendable {
    let table = TransactionTable<TMEntry>(shardCount: 64)
    /// RFC 3261 timers with Kamailio's fr_timer (B, F) and fr_inv_timer (C) mapped in.
    public let timerConfiguration: TimerConfiguration
    private let base = ContinuousClock.now
    private let offsetNanos = Atomic<Int64>(0)
    private let nextID = Atomic<UInt64>(1)
    private let prefix: String
    /// Cells alive (the table counts server, client and cancel keys).
    let liveCells = Atomic<Int>(0)

    /// A store configured by `[modparam.tm]`: `fr_timer` (ms, default 30000), `fr_inv_timer` (ms, default
    /// 120000), `retr_timer1` (T1, ms, 500), `retr_timer2` (T2, ms, 4000).
    public init(config: ModuleConfiguration = ModuleConfiguration()) {
        var t = TimerConfiguration()
        t.t1 = .milliseconds(max(1, config.int("tm", "retr_timer1", default: 500)))
        t.t2 = .milliseconds(max(1, config.int("tm", "retr_timer2", default: 4000)))
        let fr = Duration.milliseconds(max(1, config.int("tm", "fr_timer", default: 30000)))
        let frInv = Duration.milliseconds(max(1, config.int("tm", "fr_inv_timer", default: 120000)))
        t.timerB = fr
        t.timerF = fr
        t.timerC = frInv
        // Server-side waits follow T1 unless the final-response timer is shorter (tests shorten it).
        let wait = min(t.t1 * 64, fr + .seconds(1))
        t.timerH = wait
        t.timerJ = wait
        t.timerL = wait
        t.timerM = wait
        t.timerD = min(.seconds(32), wait)
        t.t4 = min(t.t4, wait)
        timerConfiguration = t
        prefix = String(UInt32.random(in: 0...UInt32.max), radix: 36)
    }

    /// The number of transactions alive (0 again once every call has finished).
    public var count: Int { liveCells.load(ordering: .relaxed) }
    /// The number of keys in the table (server, branch and CANCEL keys).
    public var keyCount: Int { table.count }

    /// Moves the store's clock forward (tests: a mock clock on top of the real one).
    public func advanceClock(by d: Duration) {
        let c = d.components
        offsetNanos.wrappingAdd(c.seconds &* 1_000_000_000 &+ c.attoseconds / 1_000_000_000, ordering: .relaxed)
    }

    var now: ContinuousClock.Instant {
        ContinuousClock.now.advanced(by: .nanoseconds(offsetNanos.load(ordering: .relaxed)))
    }

    func makeID() -> UInt64 { nextID.wrappingAdd(1, ordering: .relaxed).oldValue }
    func branchID(_ cell: TMCell, _ index: Int) -> String { "z9hG4bKtm\(prefix)\(String(cell.id, radix: 36)).\(index)" }

    func workerState(_ ctx: RouteContext) -> TMWorkerState {
        ctx.worker.local(TMWorkerState.self) { TMWorkerState() }
    }

    func queue(_ ctx: RouteContext) -> TMTimerQueue {
        let w = workerState(ctx)
        if let q = w.queue { return q }
        let q = TMTimerQueue(clock: { [unowned self] in self.now })
        w.queue = q
        return q
    }

    // MARK: TransactionLayer

    public func handleReply(_ ctx: RouteContext) -> Bool {
        TMReply.received(self, ctx)
    }

    public func requestRouteFinished(_ ctx: RouteContext) {
        guard let cell = ctx.transaction as? TMCell else { return }
        let was = cell.locked { () -> Bool in
            let b = cell.routeBusy
            cell.routeBusy = false
            return b
        }
        // A branch may have failed while the request route was still running.
        if was { TMReply.checkCompletion(self, ctx, cell) }
    }

    public func runTimers(_ ctx: RouteContext) -> Bool {
        let q = queue(ctx)
        let due = q.advance(to: now)
        for key in due { TMTimers.fired(self, ctx, key) }
        return q.count > 0
    }
}
