#if canImport(Glibc)
import Glibc
#endif
import SIPTransport
import Synchronization

/// `[core] async_io = true`: a route runs as a Lua coroutine, and a KSR function that waits on the
/// network suspends it instead of blocking the worker. One per worker (`RouteContext.asyncIO`, nil
/// when async_io is off).
///
/// A function that can wait asks `beginAwait(ctx)`: nil means "block as usual" (async_io off, or
/// the call does not come straight from a route coroutine: a failure route, a branch route run by
/// t_relay, a `table.sort` comparator...). With a ticket it starts its I/O, returns at once (the
/// value is ignored: the route yields), and when the answer or its timeout comes, calls
/// `ticket.complete { ctx in ... }` from any thread. That closure runs later on the worker, with the
/// route's message and pseudo-variables back in place: it sets what the call sets (the result
/// variable) and returns the call's value, which the script then receives.
public final class AsyncIO {
    /// `async_max_pending`: routes this worker may have waiting at once (requests beyond it get 503).
    public let maxPending: Int
    /// True while the KSR function being called may suspend its route (set by the Lua host around
    /// every call while async_io is on).
    public var mayAwait = false
    /// Resumes the route that waits on ticket `id`: restores its state, runs the completion to get
    /// the call's result and resumes the coroutine (set by the dispatcher).
    public var deliver: ((RouteContext, Int, (RouteContext) -> KemiResult) -> Void)?

    private var started: AwaitTicket?
    private var yielded: AwaitTicket?
    private var result: KemiResult = .null
    private var nextID = 0

    public init(maxPending: Int) { self.maxPending = max(1, maxPending) }

    /// For a KSR function that can wait: a ticket when its route may be suspended now, else nil
    /// (block as without async_io). At most one wait per call.
    public func beginAwait(_ ctx: RouteContext) -> AwaitTicket? {
        guard mayAwait, started == nil else { return nil }
        nextID &+= 1
        let t = AwaitTicket(id: nextID, mailbox: ctx.mailbox)
        started = t
        ctx.mailbox.beginWait()
        return t
    }

    /// Called by the Lua host after a call: true (and the ticket moves to `takeYielded`) when the
    /// call started a wait, i.e. the route must yield.
    public func callStartedWait() -> Bool {
        guard let t = started else { return false }
        started = nil
        yielded = t
        return true
    }

    /// The ticket of the wait the route just yielded on (nil: the script yielded by itself).
    public func takeYielded() -> AwaitTicket? {
        defer { yielded = nil }
        return yielded
    }

    /// The value the resumed call returns to the script (set by the dispatcher, read by the host).
    public func setResult(_ r: KemiResult) { result = r }
    public func takeResult() -> KemiResult {
        defer { result = .null }
        return result
    }
}

/// One wait of a suspended route: completed once, from any thread.
public final class AwaitTicket: Sendable {
    public let id: Int
    let mailbox: WorkerMailbox
    private let done = Atomic<Bool>(false)

    init(id: Int, mailbox: WorkerMailbox) {
        self.id = id
        self.mailbox = mailbox
    }

    /// The wait is over: `result` runs on the owning worker with the route's state restored, sets
    /// what the call sets and returns its value. Later calls are ignored.
    public func complete(_ result: @escaping @Sendable (RouteContext) -> KemiResult) {
        guard !done.exchange(true, ordering: .acquiringAndReleasing) else { return }
        let id = self.id, mailbox = self.mailbox
        mailbox.post { ctx in
            mailbox.endWait()
            ctx.asyncIO?.deliver?(ctx, id, result)
        }
    }

    /// True once `complete` was called.
    public var isCompleted: Bool { done.load(ordering: .acquiring) }
}

/// async_io: threads that run blocking lookups for suspended routes (ENUM's NAPTR queries, which go
/// through the blocking resolver), so that the SIP worker does not wait. Process-wide; `threads`
/// lookups run at once, more wait in the queue. The threads start with the first job.
public final class AsyncIOLookups: @unchecked Sendable {
    // Safety: the queue is behind a mutex; the semaphore is thread-safe; `threads` only grows under
    // the start flag's exchange.
    public static let shared = AsyncIOLookups(threads: 4)

    private let queue = Mutex<[@Sendable () -> Void]>([])
    private let semaphore: UnsafeMutablePointer<sem_t>
    private let started = Atomic<Bool>(false)
    private let count: Int
    private let threads = Mutex<[PosixThread]>([])

    init(threads: Int) {
        count = max(1, threads)
        semaphore = .allocate(capacity: 1)
        sem_init(semaphore, 0, 0)
    }

    /// Runs `job` on a lookup thread. A job that cannot start (no thread) runs on the caller's.
    public func run(_ job: @escaping @Sendable () -> Void) {
        if !started.exchange(true, ordering: .acquiringAndReleasing) {
            for i in 0..<count {
                if let t = try? PosixThread(name: "async-io-\(i)", { [self] in loop() }) { threads.withLock { $0.append(t) } }
            }
        }
        guard !threads.withLock({ $0.isEmpty }) else {
            job()
            return
        }
        queue.withLock { $0.append(job) }
        sem_post(semaphore)
    }

    private func loop() {
        while true {
            while sem_wait(semaphore) != 0 {}
            let job = queue.withLock { q -> (@Sendable () -> Void)? in q.isEmpty ? nil : q.removeFirst() }
            job?()
        }
    }
}
