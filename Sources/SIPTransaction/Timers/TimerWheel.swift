/// A timer of a `TimingWheel`: the node it sits in and that node's generation. A handle whose timer
/// fired or was cancelled is stale: cancelling or moving it again is a no-op (cancel) or schedules a
/// new timer (schedule), even after the node was reused.
public struct TimerHandle: Sendable, Hashable {
    @usableFromInline let index: Int32
    @usableFromInline let generation: UInt32

    @inlinable init(index: Int32, generation: UInt32) {
        self.index = index
        self.generation = generation
    }
}

/// A hashed timing wheel (Varghese and Lauck, scheme 6) of timers that carry a payload and are known
/// by a `TimerHandle`: O(1) schedule, move and cancel with no lookup, expiry driven by the owner.
///
/// Time is explicit: the wheel never reads a clock, sleeps or starts a task. The owner calls
/// `advance(to:)` with the current instant of whatever clock it uses (`MonotonicInstant`, a mock clock
/// in tests) and gets back the payloads of the timers whose deadlines have passed. Deadlines are
/// rounded up to the tick `resolution`, so a timer never fires early and fires at most one tick late
/// (if the owner advances at least once per tick).
///
/// The owner keeps the handle where it knows the timer (a transaction keeps its timers' handles):
/// no dictionary per timer, no hashing. `TimerWheel` adds keys on top for owners that want them.
///
/// Cost: schedule, move and cancel are O(1) (a doubly linked list splice); an advance costs one step
/// per tick crossed plus one per timer in the visited slots (timers due more than one revolution
/// ahead, `slots * resolution`, are visited once per revolution).
///
/// Not thread-safe: one owner (a worker, or a lock around it).
public struct TimingWheel<Payload, Instant: TimerInstant> {
    @usableFromInline
    struct Node {
        /// nil: the node is free.
        @usableFromInline var payload: Payload?
        @usableFromInline var deadline: Int64
        @usableFromInline var next: Int32
        @usableFromInline var prev: Int32
        @usableFromInline var slot: Int32
        @usableFromInline var generation: UInt32

        @inlinable init(payload: Payload?, deadline: Int64, generation: UInt32) {
            self.payload = payload
            self.deadline = deadline
            self.next = -1
            self.prev = -1
            self.slot = -1
            self.generation = generation
        }
    }

    /// The instant tick 0 starts at.
    public let origin: Instant
    /// The tick length.
    public let resolution: Duration

    @usableFromInline let resolutionNanos: Int64
    @usableFromInline let slotMask: Int64
    @usableFromInline var heads: [Int32]
    @usableFromInline var tails: [Int32]
    @usableFromInline var nodes: [Node] = []
    @usableFromInline var freeList: Int32 = -1
    @usableFromInline var pending = 0
    @usableFromInline var currentTick: Int64 = 0
    @usableFromInline var _now: Instant
    /// The last instant the wheel was advanced to (`origin` at first).
    @inlinable public var now: Instant { _now }

    /// A wheel starting at `origin`.
    /// - Parameters:
    ///   - origin: the clock's current instant.
    ///   - resolution: the tick length (default 10 ms; must be positive).
    ///   - slots: the number of slots, rounded up to a power of two (default 4096: a revolution of
    ///     about 41 s at 10 ms, longer than 64*T1).
    @inlinable public init(origin: Instant, resolution: Duration = .milliseconds(10), slots: Int = 4096) {
        precondition(resolution > .zero, "TimingWheel resolution must be positive")
        var n = 1
        while n < max(slots, 1) { n <<= 1 }
        self.origin = origin
        self._now = origin
        self.resolution = resolution
        self.resolutionNanos = max(1, resolution.nanosecondCount)
        self.slotMask = Int64(n - 1)
        self.heads = Array(repeating: -1, count: n)
        self.tails = Array(repeating: -1, count: n)
    }

    /// The number of pending timers.
    @inlinable public var count: Int { pending }

    /// True if no timer is pending.
    @inlinable public var isEmpty: Bool { pending == 0 }

    /// True if the timer of `handle` is pending.
    @inlinable public func contains(_ handle: TimerHandle) -> Bool { live(handle) }

    /// The instant a pending timer fires at (its deadline rounded up to a tick), or nil.
    @inlinable public func deadline(of handle: TimerHandle) -> Instant? {
        guard live(handle) else { return nil }
        return origin.advanced(by: resolution * nodes[Int(handle.index)].deadline)
    }

    /// Schedules a timer carrying `payload` to fire at `deadline` (a deadline that has already passed
    /// fires at the next tick). If `existing` is still pending, that timer is moved instead (and
    /// keeps its payload): its handle stays valid and is returned.
    @inlinable public mutating func schedule(_ payload: @autoclosure () -> Payload, at deadline: Instant,
                                             replacing existing: TimerHandle? = nil) -> TimerHandle {
        let tick = self.tick(of: deadline)
        if let h = existing, live(h) {
            unlink(h.index)
            nodes[Int(h.index)].deadline = tick
            link(h.index)
            return h
        }
        let i: Int32
        if freeList >= 0 {
            i = freeList
            freeList = nodes[Int(i)].next
            nodes[Int(i)] = Node(payload: payload(), deadline: tick, generation: nodes[Int(i)].generation)
        } else {
            i = Int32(nodes.count)
            nodes.append(Node(payload: payload(), deadline: tick, generation: 0))
        }
        pending += 1
        link(i)
        return TimerHandle(index: i, generation: nodes[Int(i)].generation)
    }

    /// The same, `delay` after `now` (the last advance).
    @inlinable public mutating func schedule(_ payload: @autoclosure () -> Payload, after delay: Duration,
                                             replacing existing: TimerHandle? = nil) -> TimerHandle {
        schedule(payload(), at: now.advanced(by: delay), replacing: existing)
    }

    /// Cancels the timer of `handle`. Returns false if it was not pending (fired, cancelled).
    @inlinable @discardableResult
    public mutating func cancel(_ handle: TimerHandle) -> Bool {
        guard live(handle) else { return false }
        unlink(handle.index)
        release(handle.index)
        return true
    }

    /// Cancels every timer.
    @inlinable public mutating func removeAll() {
        for i in nodes.indices where nodes[i].payload != nil { release(Int32(i)) }
        for s in heads.indices { heads[s] = -1; tails[s] = -1 }
    }

    /// Moves time forward to `instant` and returns the payloads of the timers that expired, in
    /// deadline order (timers due on the same tick in the order they were scheduled). Their handles
    /// are stale before this returns. An instant earlier than the last one is ignored.
    @inlinable public mutating func advance(to instant: Instant) -> [Payload] {
        guard instant > now else { return [] }
        _now = instant
        let target = instant.nanoseconds(since: origin) / resolutionNanos
        guard target > currentTick else { return [] }
        var expired: [Payload] = []
        if pending == 0 {
            currentTick = target
            return expired
        }
        if target - currentTick > slotMask {
            // A jump of a revolution or more: sweep every slot once, then order by deadline.
            var due: [(tick: Int64, payload: Payload)] = []
            for s in 0...Int(slotMask) { collect(slot: s, upTo: target) { due.append(($0, $1)) } }
            due.sort { $0.tick < $1.tick }
            expired = due.map(\.payload)
        } else {
            var t = currentTick + 1
            while t <= target {
                collect(slot: Int(t & slotMask), upTo: t) { _, payload in expired.append(payload) }
                t += 1
            }
        }
        currentTick = target
        return expired
    }

    /// The nanoseconds from `instant` (not before the last advance) to the start of the next tick whose
    /// slot holds a timer, looking `ticks` ticks ahead at most; nil if none of those slots holds one.
    /// The owner may sleep that long: no timer is due before. (A slot may hold a timer of a later
    /// revolution: the owner then wakes once for nothing.)
    @inlinable public func nanosecondsToNextTimer(from instant: Instant, within ticks: Int) -> Int64? {
        guard pending > 0 else { return nil }
        let last = currentTick + Int64(min(max(ticks, 0), Int(slotMask) + 1))
        var t = currentTick + 1
        while t <= last {
            if heads[Int(t & slotMask)] >= 0 { return max(0, t &* resolutionNanos &- instant.nanoseconds(since: origin)) }
            t += 1
        }
        return nil
    }

    // MARK: Internals

    @inlinable func live(_ h: TimerHandle) -> Bool {
        h.index >= 0 && Int(h.index) < nodes.count && nodes[Int(h.index)].generation == h.generation
            && nodes[Int(h.index)].slot >= 0
    }

    /// The tick a deadline falls on: rounded up, and never before the next tick.
    @inlinable func tick(of deadline: Instant) -> Int64 {
        let ns = deadline.nanoseconds(since: origin)
        let tick = ns <= 0 ? 0 : (ns + resolutionNanos - 1) / resolutionNanos
        return tick <= currentTick ? currentTick + 1 : tick
    }

    @inlinable mutating func collect(slot s: Int, upTo tick: Int64, _ body: (Int64, Payload) -> Void) {
        var i = heads[s]
        while i >= 0 {
            let next = nodes[Int(i)].next
            if nodes[Int(i)].deadline <= tick, let payload = nodes[Int(i)].payload {
                let deadline = nodes[Int(i)].deadline
                unlink(i)
                release(i)
                body(deadline, payload)
            }
            i = next
        }
    }

    @inlinable mutating func link(_ i: Int32) {
        let s = Int(nodes[Int(i)].deadline & slotMask)
        nodes[Int(i)].slot = Int32(s)
        nodes[Int(i)].next = -1
        nodes[Int(i)].prev = tails[s]
        if tails[s] >= 0 { nodes[Int(tails[s])].next = i } else { heads[s] = i }
        tails[s] = i
    }

    @inlinable mutating func unlink(_ i: Int32) {
        let (s, prev, next) = (Int(nodes[Int(i)].slot), nodes[Int(i)].prev, nodes[Int(i)].next)
        if prev >= 0 { nodes[Int(prev)].next = next } else { heads[s] = next }
        if next >= 0 { nodes[Int(next)].prev = prev } else { tails[s] = prev }
    }

    /// Frees node `i` (already unlinked): its handle goes stale.
    @inlinable mutating func release(_ i: Int32) {
        nodes[Int(i)].payload = nil
        nodes[Int(i)].slot = -1
        nodes[Int(i)].generation &+= 1
        nodes[Int(i)].next = freeList
        freeList = i
        pending -= 1
    }
}

/// A `TimingWheel` whose timers are known by a key: each key has at most one pending deadline, and
/// scheduling a key again moves it. For owners without a place to keep handles (tests, simple
/// transaction layers with keys such as `(transactionID, TransactionTimer)`); this costs a dictionary
/// lookup per operation, which `TimingWheel`'s handles avoid.
///
/// Not thread-safe: one owner (a worker, or a lock around it).
public struct TimerWheel<Key: Hashable, Instant: TimerInstant> {
    @usableFromInline var wheel: TimingWheel<Key, Instant>
    @usableFromInline var index: [Key: TimerHandle] = [:]

    /// The instant tick 0 starts at.
    @inlinable public var origin: Instant { wheel.origin }
    /// The tick length.
    @inlinable public var resolution: Duration { wheel.resolution }
    /// The last instant the wheel was advanced to (`origin` at first).
    @inlinable public var now: Instant { wheel.now }

    /// A wheel starting at `origin` (see `TimingWheel.init`).
    @inlinable public init(origin: Instant, resolution: Duration = .milliseconds(10), slots: Int = 4096) {
        wheel = TimingWheel(origin: origin, resolution: resolution, slots: slots)
    }

    /// The number of pending timers.
    @inlinable public var count: Int { wheel.count }

    /// True if no timer is pending.
    @inlinable public var isEmpty: Bool { wheel.isEmpty }

    /// True if `key` has a pending timer.
    @inlinable public func contains(_ key: Key) -> Bool { index[key] != nil }

    /// The instant a pending timer fires at (its deadline rounded up to a tick), or nil.
    @inlinable public func deadline(of key: Key) -> Instant? { index[key].flatMap { wheel.deadline(of: $0) } }

    /// Schedules (or moves) the timer of `key` to fire at `deadline`. A deadline that has already
    /// passed fires at the next tick.
    @inlinable public mutating func schedule(_ key: Key, at deadline: Instant) {
        index[key] = wheel.schedule(key, at: deadline, replacing: index[key])
    }

    /// Schedules (or moves) the timer of `key` to fire `delay` after `now` (the last advance).
    @inlinable public mutating func schedule(_ key: Key, after delay: Duration) {
        schedule(key, at: now.advanced(by: delay))
    }

    /// Cancels the timer of `key`. Returns false if it was not pending.
    @inlinable @discardableResult
    public mutating func cancel(_ key: Key) -> Bool {
        guard let h = index.removeValue(forKey: key) else { return false }
        return wheel.cancel(h)
    }

    /// Cancels every timer.
    @inlinable public mutating func removeAll() {
        index.removeAll()
        wheel.removeAll()
    }

    /// Moves time forward to `instant` and returns the keys of the timers that expired, in deadline
    /// order (timers due on the same tick in the order they were scheduled). Their timers are removed
    /// before this returns, so the owner may schedule the same keys again while handling them.
    /// An instant earlier than the last one is ignored.
    @inlinable public mutating func advance(to instant: Instant) -> [Key] {
        let expired = wheel.advance(to: instant)
        for key in expired { index.removeValue(forKey: key) }
        return expired
    }
}
