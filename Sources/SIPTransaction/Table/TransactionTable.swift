public import Synchronization

/// The transactions of all workers, sharded so that workers rarely contend.
///
/// The table holds `shardCount` dictionaries, each behind its own `Mutex`; a key's precomputed hash
/// picks the shard. Every operation locks exactly one shard for the time of a dictionary access (or
/// of the closure given to `withValue`), except `count`, which visits all shards.
///
/// `Value` is whatever the owner keeps per transaction, typically a reference to a transaction cell
/// (the machine, the request and last response bytes, the timers) with its own lock.
public final class TransactionTable<Value: Sendable>: Sendable {
    @usableFromInline
    final class Shard: Sendable {
        @usableFromInline let entries = Mutex<[TransactionKey: Value]>([:])
        @usableFromInline init() {}
    }

    @usableFromInline let shards: [Shard]
    @usableFromInline let mask: Int

    /// A table with `shardCount` shards (rounded up to a power of two; default 64).
    public init(shardCount: Int = 64) {
        var n = 1
        while n < max(shardCount, 1) { n <<= 1 }
        shards = (0..<n).map { _ in Shard() }
        mask = n - 1
    }

    /// The number of shards.
    @inlinable public var shardCount: Int { shards.count }

    /// The shard index of a key (stable within this process).
    @inlinable public func shardIndex(of key: TransactionKey) -> Int {
        let h = UInt(bitPattern: key.precomputedHash)
        return Int((h ^ (h >> 32) ^ (h >> 16)) & UInt(mask))
    }

    @inlinable func shard(_ key: TransactionKey) -> Shard { shards[shardIndex(of: key)] }

    /// Inserts `value` unless the key is present. Returns nil if inserted, or the value already there
    /// (the caller lost a race with a retransmission handled by another worker).
    @inlinable @discardableResult
    public func insert(_ value: Value, for key: TransactionKey) -> Value? {
        shard(key).entries.withLock { d in
            if let existing = d[key] { return existing }
            d[key] = value
            return nil
        }
    }

    /// Inserts or replaces the value of a key; returns the old value.
    @inlinable @discardableResult
    public func updateValue(_ value: Value, for key: TransactionKey) -> Value? {
        shard(key).entries.withLock { $0.updateValue(value, forKey: key) }
    }

    /// The value of a key, or nil.
    @inlinable public func lookup(_ key: TransactionKey) -> Value? {
        shard(key).entries.withLock { $0[key] }
    }

    /// Runs `body` on the value of a key while its shard is locked (keep it short); nil if absent.
    @inlinable public func withValue<R>(for key: TransactionKey, _ body: (inout Value) throws -> R) rethrows -> R? {
        try shard(key).entries.withLock { d -> R? in
            guard var v = d[key] else { return nil }
            defer { d[key] = v }
            return try body(&v)
        }
    }

    /// Removes a key; returns its value, or nil if absent.
    @inlinable @discardableResult
    public func remove(_ key: TransactionKey) -> Value? {
        shard(key).entries.withLock { $0.removeValue(forKey: key) }
    }

    /// The number of transactions (a sum over the shards; exact when no one is inserting or removing).
    @inlinable public var count: Int {
        shards.reduce(0) { sum, s in sum + s.entries.withLock { $0.count } }
    }

    /// True if the table holds nothing.
    @inlinable public var isEmpty: Bool { count == 0 }

    /// Removes every value for which `predicate` is true, shard by shard; returns how many.
    @inlinable @discardableResult
    public func removeAll(where predicate: (TransactionKey, Value) throws -> Bool) rethrows -> Int {
        var removed = 0
        for s in shards {
            removed += try s.entries.withLock { d -> Int in
                let before = d.count
                d = try d.filter { try !predicate($0.key, $0.value) }
                return before - d.count
            }
        }
        return removed
    }
}
