import Synchronization

/// Work handed back to one worker: "resume this route later, in the worker that owns its Lua state".
///
/// Every way a route waits without blocking goes through it: `t_suspend`/`t_continue`, the async
/// module's timers and tasks, http_async_client's answers (and, later, other modules' network
/// answers). Any thread may `post` a job; the owning worker runs the jobs between two messages with
/// its own `RouteContext` (`MessageDispatcher.runTimers`), so Lua only ever runs on the worker
/// thread and a job sees no other message's state. Posting wakes the worker at once (an eventfd in
/// its poll, set by the server); offline harnesses drain it when they run timers.
public final class WorkerMailbox: @unchecked Sendable {
    // Safety: `wake` is set once by the server before the worker thread starts and only read after;
    // the queue is behind a mutex, the counters are atomics.
    public typealias Job = @Sendable (RouteContext) -> Void

    private let queue = Mutex<[Job]>([])
    private let queued = Atomic<Int>(0)
    private let waiting = Atomic<Int>(0)
    private var wake: (@Sendable () -> Void)?

    public init() {}

    /// How the owning worker is woken when a job arrives (the server's eventfd signal).
    public func setWakeup(_ f: @escaping @Sendable () -> Void) { wake = f }

    /// Queues a job for the owning worker and wakes it. Callable from any thread.
    public func post(_ job: @escaping Job) {
        let wasEmpty = queue.withLock { q in
            q.append(job)
            return q.count == 1
        }
        queued.wrappingAdd(1, ordering: .releasing)
        if wasEmpty { wake?() }
    }

    /// Wakes the owning worker with no job (its timer pass runs: another thread started a timer of
    /// its that is due before it would wake). Callable from any thread.
    public func wakeWorker() { wake?() }

    /// True when jobs are queued (one atomic load: the per-loop check).
    @inline(__always) public var hasJobs: Bool { queued.load(ordering: .acquiring) > 0 }

    /// Runs the queued jobs (oldest first) on the owning worker. Returns how many ran.
    @discardableResult
    public func run(_ ctx: RouteContext) -> Int {
        guard hasJobs else { return 0 }
        let jobs = queue.withLock { q -> [Job] in
            let all = q
            q.removeAll(keepingCapacity: true)
            queued.store(0, ordering: .relaxed)
            return all
        }
        for j in jobs { j(ctx) }
        return jobs.count
    }

    /// Outside work that will post a job when it ends (an HTTP request in flight, a timer): counted so
    /// that harnesses and `async_max_pending`-style limits can see what a worker is waiting for.
    public func beginWait() { waiting.wrappingAdd(1, ordering: .relaxed) }
    public func endWait() { waiting.wrappingSubtract(1, ordering: .relaxed) }
    /// Outside work this worker is waiting for.
    public var waitingCount: Int { waiting.load(ordering: .relaxed) }
}
