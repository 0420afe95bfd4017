public import SIPTransaction
public import StarlingKEMI
import SIPCore
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

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
struct TMTimer: Sendable {
    let cell: TMCell
    let side: Int
    let timer: TransactionTimer
}

/// The timers of one worker: a timing wheel behind a lock (the owner advances it; other workers may
/// schedule into it when a reply for one of its transactions arrives on them). A cell keeps the
/// handles of its timers (`TMCell.startTimer`): no lookup by key, no hashing.
///
/// The owner sleeps until its next timer is due (`nextWait`); a timer another thread starts that is
/// due before the owner wakes wakes it (`wakeOwner`), so no timer fires later than a tick.
final class TMTimerQueue: Sendable {
    struct State {
        var wheel: TimingWheel<TMTimer, MonotonicInstant>
        /// The worker thread that advances the wheel (the last to call `nextWait`), and when it wakes
        /// at the latest (what `nextWait` told it).
        var owner: pthread_t
        var ownerWakes: MonotonicInstant
    }
    let state: Mutex<State>
    let clock: @Sendable () -> MonotonicInstant
    /// How another thread wakes the owner.
    let wakeOwner: @Sendable () -> Void

    init(clock: @escaping @Sendable () -> MonotonicInstant, wakeOwner: @escaping @Sendable () -> Void) {
        self.clock = clock
        self.wakeOwner = wakeOwner
        let now = clock()
        state = Mutex(State(wheel: TimingWheel(origin: now), owner: pthread_self(), ownerWakes: now))
    }
    /// Schedules a timer, or moves `existing` if it is still pending. Deadlines count from the store's
    /// clock now, not from the wheel's last advance.
    func schedule(_ timer: TMTimer, after d: Duration, replacing existing: TimerHandle?) -> TimerHandle {
        let at = clock().advanced(by: d)
        let (handle, wake) = state.withLock { s -> (TimerHandle, Bool) in
            let h = s.wheel.schedule(timer, at: at, replacing: existing)
            // Due before the owner wakes and started on another thread (a reply to one of the owner's
            // transactions arrived there): the owner must wake for it. Its own timers it sees when it
            // plans its next sleep.
            guard at < s.ownerWakes, pthread_equal(pthread_self(), s.owner) == 0 else { return (h, false) }
            s.ownerWakes = at
            return (h, true)
        }
        if wake { wakeOwner() }
        return handle
    }
    func cancel(_ handle: TimerHandle) { state.withLock { _ = $0.wheel.cancel(handle) } }
    /// Cancels the timers of `slots` (of `side` only, when given; stale ones are skipped), under one lock.
    func cancel(_ slots: [TMTimerSlot], side: Int? = nil) {
        state.withLock { s in
            for slot in slots where side == nil || slot.side == side { s.wheel.cancel(slot.handle) }
        }
    }
    /// The timers due at `now`, taken off the wheel.
    func advance(to now: MonotonicInstant) -> [TMTimer] { state.withLock { $0.wheel.advance(to: now) } }
    /// The owner's next sleep from `now`: the milliseconds until the next tick with a timer, nil when
    /// none is due within `workerMaxWaitMilliseconds` (it then sleeps that long).
    func nextWait(from now: MonotonicInstant) -> Int? {
        state.withLock { s -> Int? in
            s.owner = pthread_self()
            let limit = Int64(workerMaxWaitMilliseconds) * 1_000_000
            let ticks = Int(limit / s.wheel.resolution.nanosecondCount)
            guard let ns = s.wheel.nanosecondsToNextTimer(from: now, within: ticks), ns < limit else {
                s.ownerWakes = now.advanced(byNanoseconds: limit)
                return nil
            }
            let ms = (ns + 999_999) / 1_000_000
            s.ownerWakes = now.advanced(byNanoseconds: ms * 1_000_000)
            return Int(ms)
        }
    }
    var count: Int { state.withLock { $0.wheel.count } }
}

/// Per-worker tm state: the worker's timer queue and what the current route knows about the transaction.
final class TMWorkerState {
    var queue: TMTimerQueue?
    /// The async module's sleeps of this worker (`AsyncTimers.of`), run by the same timer pass.
    var asyncTimers: AsyncTimers?
    /// The branch index a failure/onreply/branch route runs for (-1: none).
    var branchIndex = -1
    /// The status code an onreply route sees.
    var replyCode = 0
    /// What the script set before the transaction existed, for the message `pendingMessage`: timer
    /// overrides (t_set_fr: inv, noninv in ms) and route names (t_on_*).
    var pendingFR: (Int, Int)? = nil
    /// t_set_retr before the transaction exists: (T1, T2) in ms.
    var pendingRetr: (Int, Int)? = nil
    /// t_set_auto_inv_100(i) for this message (nil: the auto_inv_100 modparam).
    var auto100: Bool?
    /// t_set_disable_6xx / t_set_disable_failover / t_set_disable_internal_reply before the
    /// transaction exists (nil: the modparam default).
    var pendingSwitches = TMSwitches()
    var pendingRoutes: [ReferenceWritableKeyPath<TMCell, String>: String] = [:]
    var pendingMessage: SIPMessage?
    /// The server key of `keyMessage` (a route's request is keyed once: `t_check_trans`, then
    /// `t_relay` looked it up and built it again, ~1,700 instructions each time). The message's
    /// received bytes never change, so neither does its key; holding the message keeps its identity.
    private var keyMessage: SIPMessage?
    private var key: TransactionKey?

    func serverKey(for m: SIPMessage) -> TransactionKey? {
        if keyMessage !== m {
            keyMessage = m
            key = TransactionKey.server(for: m)
        }
        return key
    }

    /// The pending values, reset when they belong to another message.
    func pending(for m: SIPMessage?) {
        if pendingMessage !== m {
            pendingMessage = m
            pendingFR = nil
            pendingRetr = nil
            auto100 = nil
            pendingSwitches = TMSwitches()
            pendingRoutes.removeAll()
        }
    }
}

/// Per-transaction switches set before the transaction exists (nil: the module default).
struct TMSwitches {
    var disable6xx: Bool?
    var disableFailover: Bool?
    var disableInternalReply: Bool?
}

/// `[modparam.tm]` values beyond the timers (Kamailio's names and defaults).
public struct TMSettings: Sendable {
    /// failure_reply_mode (3): which earlier replies a failure route that adds branches discards.
    public var failureReplyMode = 3
    /// disable_6xx_block (0): 1 treats 6xx like other replies.
    public var disable6xxBlock = false
    /// auto_inv_100 (1) and auto_inv_100_reason.
    public var autoInv100 = true
    public var autoInv100Reason = "trying -- your call is important to us"
    /// restart_fr_on_each_reply (1): 0 restarts fr_inv_timer (Timer C) only on the first provisional
    /// reply and on increasing ones from 180 on.
    public var restartFROnEachReply = true
    /// Kamailio's core use_dns_failover (off), read from `[modparam.tm]`: a branch that times out or
    /// gets a 503 is retried on the next address of its next hop.
    public var useDNSFailover = false
    /// contacts_avp / contact_flows_avp: the xavps of t_load_contacts / t_next_contacts (Kamailio:
    /// unset disables the functions).
    /// remap_503_500 (1): a 503 that wins is relayed as a 500.
    public var remap503To500 = true
    public var contactsXAVP: String?
    public var contactFlowsXAVP: String?

    public init() {}

    init(_ c: ModuleConfiguration) {
        failureReplyMode = c[TMModule.failureReplyMode]
        disable6xxBlock = c[TMModule.disable6xxBlock]
        autoInv100 = c[TMModule.autoInv100]
        let reason = c[TMModule.autoInv100Reason]
        if !reason.isEmpty { autoInv100Reason = reason }
        restartFROnEachReply = c[TMModule.restartFROnEachReply]
        useDNSFailover = c[TMModule.useDNSFailover]
        remap503To500 = c[TMModule.remap503To500]
        contactsXAVP = c[TMModule.contactsAVP].flatMap { $0.isEmpty || $0 == "NULL" ? nil : $0 }
        contactFlowsXAVP = c[TMModule.contactFlowsAVP].flatMap { $0.isEmpty || $0 == "NULL" ? nil : $0 }
    }
}

/// Callbacks other modules (dialog, acc) register on tm (Kamailio's `register_tmcb`). They are added
/// while the modules start, before any worker runs, and only read afterwards.
final class TMHooks: @unchecked Sendable {
    /// A transaction was created for the route's request (`ctx.transaction` is the cell).
    private(set) var created: [@Sendable (RouteContext, TMCell) -> Void] = []
    /// The request route of a message ended (with or without a transaction).
    private(set) var routeFinished: [@Sendable (RouteContext) -> Void] = []
    func onRouteFinished(_ f: @escaping @Sendable (RouteContext) -> Void) { routeFinished.append(f) }
    /// A transaction was freed (Kamailio's TMCB_DESTROY); run later on a worker, outside any lock.
    private(set) var freed: [@Sendable (RouteContext, UInt64) -> Void] = []
    func onFreed(_ f: @escaping @Sendable (RouteContext, UInt64) -> Void) { freed.append(f) }
    /// A response left upstream for a transaction (relayed or local; nil reply: a local one).
    private(set) var responseOut: [@Sendable (RouteContext, TMCell, Int, SIPMessage?) -> Void] = []
    func onCreated(_ f: @escaping @Sendable (RouteContext, TMCell) -> Void) { created.append(f) }
    func onResponseOut(_ f: @escaping @Sendable (RouteContext, TMCell, Int, SIPMessage?) -> Void) { responseOut.append(f) }
}

/// The process-wide transaction store of `KSR.tm`: the sharded table shared by all workers, the timer
/// configuration (`[modparam.tm]`), the clock.
public final class TMStore: TransactionLayer, Sendable {
    let table = TransactionTable<TMEntry>(shardCount: 64)
    /// Callbacks of other modules (dialog, acc).
    let hooks = TMHooks()
    /// RFC 3261 timers with Kamailio's fr_timer (B, F) and fr_inv_timer (C) mapped in.
    public let timerConfiguration: TimerConfiguration
    /// The other `[modparam.tm]` settings.
    public let settings: TMSettings
    private let offsetNanos = Atomic<Int64>(0)
    private let nextID = Atomic<UInt64>(1)
    private let posted = Mutex<[@Sendable (RouteContext) -> Void]>([])
    private let postedCount = Atomic<Int>(0)
    /// `z9hG4bKtm` and this store's random prefix: the start of every branch id.
    private let branchHead: [UInt8]
    /// Cells alive (the table counts server, client and cancel keys).
    let liveCells = Atomic<Int>(0)
    /// Suspended transactions (`t_suspend`) by cell id (`$T(id_label)`), until continued or freed.
    let suspendedCells = Mutex<[UInt64: TMCell]>([:])

    /// A store configured by `[modparam.tm]`: `fr_timer` (ms, default 30000), `fr_inv_timer` (ms, default
    /// 120000), `retr_timer1` (T1, ms, 500), `retr_timer2` (T2, ms, 4000), `wt_timer` (ms: the wait
    /// after completion, timers D, I, J, K, L, M; default 5000 as Kamailio's; 0: as RFC 3261 within fr_timer), and `TMSettings`.
    public init(config: ModuleConfiguration = ModuleConfiguration()) {
        settings = TMSettings(config)
        var t = TimerConfiguration()
        t.t1 = .milliseconds(config[TMModule.retrTimer1])
        t.t2 = .milliseconds(config[TMModule.retrTimer2])
        let fr = Duration.milliseconds(config[TMModule.frTimer])
        let frInv = Duration.milliseconds(config[TMModule.frInvTimer])
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
        if case let wt = config[TMModule.wtTimer], wt > 0 {
            // Kamailio's wait state (default 5 s): how long a completed transaction stays to absorb
            // retransmissions before it is freed, whatever ended it. RFC 3261 keeps some of them 32 s
            // (Timer D, J) and RFC 6026 64*T1 (L, M): at 1000 calls/s that held ~60,000 finished
            // transactions (issue 22's memory plateau). Timer H (waiting for the ACK of a negative
            // final reply, while retransmitting it) is not a wait and stays as it is.
            let w = Duration.milliseconds(wt)
            t.timerD = w
            t.timerJ = w
            t.timerL = min(t.timerL, w)
            t.timerM = min(t.timerM, w)
            t.t4 = w  // timers I and K
        }
        timerConfiguration = t
        branchHead = Array("z9hG4bKtm\(String(UInt32.random(in: 0...UInt32.max), radix: 36))".utf8)
    }

    /// The number of transactions alive (0 again once every call has finished).
    public var count: Int { liveCells.load(ordering: .relaxed) }
    /// The number of keys in the table (server, branch and CANCEL keys).
    public var keyCount: Int { table.count }

    /// Moves the store's clock forward (tests: a mock clock on top of the real one).
    public func advanceClock(by d: Duration) {
        offsetNanos.wrappingAdd(d.nanosecondCount, ordering: .relaxed)
    }

    /// The clock of the transaction timers (and async sleeps): monotonic, in integer nanoseconds.
    var now: MonotonicInstant {
        MonotonicInstant.now.advanced(byNanoseconds: offsetNanos.load(ordering: .relaxed))
    }

    func makeID() -> UInt64 { nextID.wrappingAdd(1, ordering: .relaxed).oldValue }
    /// `z9hG4bKtm<prefix><cell id, base 36>.<index>`, written as bytes (string interpolation and
    /// `String(_:radix:)` cost ~2,700 instructions a branch).
    func branchID(_ cell: TMCell, _ index: Int) -> String {
        var b = branchHead
        b.appendDigits(cell.id, radix: 36)
        b.append(UInt8(ascii: "."))
        b.appendDigits(UInt64(index))
        return String(decoding: b, as: UTF8.self)
    }

    func workerState(_ ctx: RouteContext) -> TMWorkerState {
        ctx.worker.local(TMWorkerState.self) { TMWorkerState() }
    }

    /// The server transaction key of the route's request `m`, built once per message.
    func serverKey(_ ctx: RouteContext, _ m: SIPMessage) -> TransactionKey? {
        workerState(ctx).serverKey(for: m)
    }

    func queue(_ ctx: RouteContext) -> TMTimerQueue { queue(workerState(ctx), ctx) }

    func queue(_ w: TMWorkerState, _ ctx: RouteContext) -> TMTimerQueue {
        if let q = w.queue { return q }
        let q = TMTimerQueue(clock: { [unowned self] in self.now }, wakeOwner: { [mailbox = ctx.mailbox] in mailbox.wakeWorker() })
        w.queue = q
        return q
    }

    // MARK: TransactionLayer

    public func handleReply(_ ctx: RouteContext) -> Bool {
        TMReply.received(self, ctx)
    }

    public var wantsEveryRequestRouteEnd: Bool { !hooks.routeFinished.isEmpty }

    public func requestRouteFinished(_ ctx: RouteContext) {
        for h in hooks.routeFinished { h(ctx) }
        guard let cell = TMRelay.current(ctx) else { return }
        // The AVPs as the request route left them belong to the transaction (failure routes see them).
        let (avps, xavps) = (ctx.avps, ctx.xavps)
        let (was, relayError) = cell.locked { () -> (Bool, Int) in
            let b = cell.routeBusy
            cell.routeBusy = false
            cell.avps = avps
            cell.xavps = xavps
            return (b, cell.relayError)
        }
        // Nothing relayed and no reply: Kamailio's delayed internal error reply.
        if relayError != 0 { TMReply.delayedErrorReply(self, ctx, cell) }
        // A branch may have failed while the request route was still running.
        if was { TMReply.checkCompletion(self, ctx, cell) }
        // The final reply may have gone upstream while the route ran (relayed by another worker): what
        // the wait state does not need goes now.
        cell.locked { cell.shedFinished() }
    }

    /// Work for a worker from a thread that has no route context (the housekeeping thread: uacreg's
    /// REGISTERs); run by the next worker that runs its timers.
    func post(_ work: @escaping @Sendable (RouteContext) -> Void) {
        posted.withLock { $0.append(work) }
        postedCount.wrappingAdd(1, ordering: .releasing)
    }

    public func runTimers(_ ctx: RouteContext) -> Int? {
        if postedCount.load(ordering: .acquiring) > 0 {
            let work = posted.withLock { w -> [@Sendable (RouteContext) -> Void] in
                postedCount.store(0, ordering: .relaxed)
                defer { w.removeAll() }
                return w
            }
            for w in work { w(ctx) }
        }
        // Called after every batch of messages and when the worker wakes for its next timer: when
        // nothing is due this is a clock read, a lock, an integer compare and a look at the next slots.
        let w = workerState(ctx)
        let q = queue(w, ctx)
        let now = self.now
        let due = q.advance(to: now)
        for key in due { TMTimers.fired(self, ctx, key) }
        // The async module's sleeps (async.route / ms_route) of this worker.
        let asyncWait = w.asyncTimers?.runDue(self, ctx)
        // What ran takes time and may start timers: the next sleep counts from after it.
        let wait = q.nextWait(from: due.isEmpty && w.asyncTimers == nil ? now : self.now)
        guard let asyncWait else { return wait }
        return min(wait ?? asyncWait, asyncWait)
    }
}
