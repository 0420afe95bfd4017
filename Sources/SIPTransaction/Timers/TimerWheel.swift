/// A hashed timing wheel (Varghese and Lauck, scheme 6): O(1) schedule and cancel, expiry driven by
/// the owner.
///
/// Time is explicit: the wheel never reads a clock, sleeps or starts a task. The owner calls
/// `advance(to:)` with the current instant of whatever clock it uses (`ContinuousClock`, a mock clock
/// in tests) and gets back the keys whose deadlines have passed. Deadlines are rounded up to the tick
/// `resolution`, so a timer never fires early and fires at most one tick late (if the owner advances
/// at least once per tick).
///
/// Each key has at most one pending deadline: scheduling a key again moves it. A transaction layer
/// uses keys such as `(transactionID, TransactionTimer)`.
///
/// Cost: schedule and cancel are O(1) (a dictionary lookup and a doubly linked list splice); an
/// advance costs one step per tick crossed plus one per timer in the visited slots (timers due more
/// than one revolution ahead, `slots * resolution`, are visited once per revolution).
///
/// Not thread-safe: one owner (a worker, or a lock around it).
public struct TimerWheel<Key: Hashable, Instant: InstantProtocol> where Instant.Duration == Duration {
    @usableFromInline
    struct Node {
        @usableFromInline var key: Key?
        @usableFromInline var deadline: Int64
        @usableFromInline var next: Int32
        @usableFromInline var prev: Int32
        @usableFromInline var slot: Int32

        @inlinable init(key: Key?, deadline: Int64, next: Int32, prev: Int32, slot: Int32) {
            self.key = key
            self.deadline = deadline
            self.next = next
            self.prev = prev
            self.slot = slot
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
    @usableFromInline var index: [Key: Int32] = [:]
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
        precondition(resolution > .zero, "TimerWheel resolution must be positive")
        var n = 1
        while n < max(slots, 1) { n <<= 1 }
        self.origin = origin
        self._now = origin
        self.resolution = resolution
        self.resolutionNanos = max(1, Self.nanoseconds(resolution))
        self.slotMask = Int64(n - 1)
        self.heads = Array(repeating: -1, count: n)
        self.tails = Array(repeating: -1, count: n)
    }

    /// The number of pending timers.
    @inlinable public var count: Int { index.count }

    /// True if no timer is pending.
    @inlinable public var isEmpty: Bool { index.isEmpty }

    /// True if `key` has a pending timer.
    @inlinable public func contains(_ key: Key) -> Bool { index[key] != nil }

    /// The instant a pending timer fires at (its deadline rounded up to a tick), or nil.
    @inlinable public func deadline(of key: Key) -> Instant? {
        guard let i = index[key] else { return nil }
        return origin.advanced(by: resolution * nodes[Int(i)].deadline)
    }

    /// Schedules (or moves) the timer of `key` to fire at `deadline`. A deadline that has already
    /// passed fires at the next tick.
    @inlinable public mutating func schedule(_ key: Key, at deadline: Instant) {
        let ns = Self.nanoseconds(origin.duration(to: deadline))
        var tick = ns <= 0 ? 0 : (ns + resolutionNanos - 1) / resolutionNanos
        if tick <= currentTick { tick = currentTick + 1 }
        if let i = index[key] {
            unlink(i)
            nodes[Int(i)].deadline = tick
            link(i)
            return
        }
        let i: Int32
        if freeList >= 0 {
            i = freeList
            freeList = nodes[Int(i)].next
            nodes[Int(i)] = Node(key: key, deadline: tick, next: -1, prev: -1, slot: -1)
        } else {
            i = Int32(nodes.count)
            nodes.append(Node(key: key, deadline: tick, next: -1, prev: -1, slot: -1))
        }
        index[key] = i
        link(i)
    }

    /// Schedules (or moves) the timer of `key` to fire `delay` after `now` (the last advance).
    @inlinable public mutating func schedule(_ key: Key, after delay: Duration) {
        schedule(key, at: now.advanced(by: delay))
    }

    /// Cancels the timer of `key`. Returns false if it was not pending.
    @inlinable @discardableResult
    public mutating func cancel(_ key: Key) -> Bool {
        guard let i = index.removeValue(forKey: key) else { return false }
        unlink(i)
        release(i)
        return true
    }

    /// Cancels every timer.
    @inlinable public mutating func removeAll() {
        index.removeAll()
        nodes.removeAll()
        freeList = -1
        for s in heads.indices { heads[s] = -1; tails[s] = -1 }
    }

    /// Moves time forward to `instant` and returns the keys of the timers that expired, in deadline
    /// order (timers due on the same tick in the order they were scheduled). Their timers are removed
    /// before this returns, so the owner may schedule the same keys again while handling them.
    /// An instant earlier than the last one is ignored.
    @inlinable public mutating func advance(to instant: Instant) -> [Key] {
        guard instant > now else { return [] }
        _now = instant
        let ns = Self.nanoseconds(origin.duration(to: instant))
        let target = ns / resolutionNanos
        guard target > currentTick else { return [] }
        var expired: [Key] = []
        if index.isEmpty {
            currentTick = target
            return expired
        }
        if target - currentTick > slotMask {
            // A jump of a revolution or more: sweep every slot once, then order by deadline.
            var due: [(tick: Int64, key: Key)] = []
            for s in 0...Int(slotMask) { collect(slot: s, upTo: target) { due.append(($0, $1)) } }
            due.sort { $0.tick < $1.tick }
            expired = due.map(\.key)
        } else {
            var t = currentTick + 1
            while t <= target {
                collect(slot: Int(t & slotMask), upTo: t) { _, key in expired.append(key) }
                t += 1
            }
        }
        currentTick = target
        return expired
    }

    // MARK: Internals

    @inlinable mutating func collect(slot s: Int, upTo tick: Int64, _ body: (Int64, Key) -> Void) {
        var i = heads[s]
        while i >= 0 {
            let node = nodes[Int(i)]
            if node.deadline <= tick, let key = node.key {
                unlink(i)
                index.removeValue(forKey: key)
                release(i)
                body(node.deadline, key)
            }
            i = node.next
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
        let n = nodes[Int(i)]
        let s = Int(n.slot)
        if n.prev >= 0 { nodes[Int(n.prev)].next = n.next } else { heads[s] = n.next }
        if n.next >= 0 { nodes[Int(n.next)].prev = n.prev } else { tails[s] = n.prev }
    }

    @inlinable mutating func release(_ i: Int32) {
        nodes[Int(i)].key = nil
        nodes[Int(i)].slot = -1
        nodes[Int(i)].next = freeList
        freeList = i
    }

    @inlinable static func nanoseconds(_ d: Duration) -> Int64 {
        let c = d.components
        return c.seconds &* 1_000_000_000 &+ c.attoseconds / 1_000_000_000
    }
}
