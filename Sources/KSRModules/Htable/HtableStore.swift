#if canImport(Glibc)
import Glibc
#endif
public import StarlingKEMI

/// How one htable is defined: `modparam("htable", "htable", "name=>size=8;autoexpire=300;initval=0")`.
public struct HtableDefinition: Sendable, Equatable {
    public var name: String
    /// Slots are 2^size (Kamailio clamps size to 2..14 bits... Starling to 1..16).
    public var size: Int = 4
    /// Seconds an item lives after it is set (0: forever).
    public var autoexpire: Int = 0
    /// The integer value a missing item reads as (nil: missing items read as null).
    public var initval: Int?
    /// Whether setting an existing item restarts its expiry (Kamailio's default 1).
    public var updateexpire: Bool = true
    /// Options Starling accepts and ignores (dbtable, dbmode, dmqreplicate, coltype...).
    public var ignored: [String: String] = [:]

    public init(name: String) { self.name = name }

    /// Parses Kamailio's definition string; nil when the name is missing or an option is malformed.
    public static func parse(_ text: String) -> HtableDefinition? {
        let parts = text.components(separatedByString: "=>")
        guard parts.count == 2 else { return nil }
        let name = String(parts[0].trimmingSpaces)
        guard !name.isEmpty else { return nil }
        var def = HtableDefinition(name: name)
        for opt in parts[1].split(separator: ";") {
            let kv = opt.split(separator: "=", maxSplits: 1).map { String($0.trimmingCharacters(" \t")) }
            guard let key = kv.first, !key.isEmpty else { continue }
            let value = kv.count > 1 ? kv[1] : ""
            switch key {
            case "size":
                guard let n = Int(value) else { return nil }
                def.size = max(1, min(16, n))
            case "autoexpire":
                guard let n = Int(value), n >= 0 else { return nil }
                def.autoexpire = n
            case "initval":
                guard let n = Int(value) else { return nil }
                def.initval = n
            case "updateexpire":
                guard let n = Int(value) else { return nil }
                def.updateexpire = n != 0
            default:
                def.ignored[key] = value
            }
        }
        return def
    }
}

/// An htable item: an integer or a string, and when it expires (seconds since 1970; 0 = never).
public struct HtableItem: Sendable, Equatable {
    public var value: KemiValue
    public var expires: Int

    func isLive(_ now: Int) -> Bool { expires == 0 || expires > now }
}

/// One named hash table shared by all workers. Keys hash into 2^size slots; each slot has a
/// recursive lock, as Kamailio's, so a script can hold a slot across calls (`sht_lock`/`sht_unlock`)
/// while it reads and writes the slot's items on the same thread.
public final class Htable: @unchecked Sendable {
    /// A group of items and its lock. `items` is only touched with `lock` held.
    final class Slot {
        let lock: UnsafeMutablePointer<pthread_mutex_t>
        var items: [String: HtableItem] = [:]

        init() {
            lock = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
            var attr = pthread_mutexattr_t()
            pthread_mutexattr_init(&attr)
            pthread_mutexattr_settype(&attr, Int32(PTHREAD_MUTEX_RECURSIVE))
            pthread_mutex_init(lock, &attr)
            pthread_mutexattr_destroy(&attr)
        }

        deinit {
            pthread_mutex_destroy(lock)
            lock.deallocate()
        }

        @inline(__always) func locked<T>(_ body: (Slot) throws -> T) rethrows -> T {
            pthread_mutex_lock(lock)
            defer { pthread_mutex_unlock(lock) }
            return try body(self)
        }
    }

    public let definition: HtableDefinition
    public var name: String { definition.name }
    let slots: [Slot]
    private let mask: Int
    let clock: ModuleClock

    init(_ definition: HtableDefinition, clock: ModuleClock) {
        self.definition = definition
        self.clock = clock
        let n = 1 << definition.size
        slots = (0..<n).map { _ in Slot() }
        mask = n - 1
    }

    /// The slot index of a key (a string hash that does not change between runs, as the dump shows slots).
    public func slotIndex(_ key: String) -> Int {
        var h: UInt32 = 2166136261
        for b in key.utf8 { h = (h ^ UInt32(b)) &* 16777619 }
        return Int(h) & mask
    }

    @inline(__always) func slot(_ key: String) -> Slot { slots[slotIndex(key)] }

    var now: Int { clock.unixSeconds }

    /// The live value of `key` (nil if missing or expired; an expired item is removed).
    public func get(_ key: String) -> KemiValue? {
        let now = self.now
        return slot(key).locked { s in
            guard let it = s.items[key] else { return nil }
            if !it.isLive(now) { s.items[key] = nil; return nil }
            return it.value
        }
    }

    /// The live item of `key` with its expiry.
    public func item(_ key: String) -> HtableItem? {
        let now = self.now
        return slot(key).locked { s in s.items[key].flatMap { $0.isLive(now) ? $0 : nil } }
    }

    /// Items held per slot (expired ones not yet purged included), as htable.stats counts them.
    public func slotSizes() -> [Int] { slots.map { s in s.locked { $0.items.count } } }

    /// The value a read gives: the item, else the integer initval, else nil.
    public func read(_ key: String) -> KemiValue? {
        if let v = get(key) { return v }
        return definition.initval.map { .int($0) }
    }

    /// Sets a value. `expire`: nil = the table's autoexpire rules; a number = that many seconds from
    /// now (0 = never).
    public func set(_ key: String, _ value: KemiValue, expire: Int? = nil) {
        let now = self.now
        slot(key).locked { s in
            let existing = s.items[key].flatMap { $0.isLive(now) ? $0 : nil }
            var expires: Int
            if let expire {
                expires = expire > 0 ? now + expire : 0
            } else if definition.autoexpire > 0 {
                if let existing, !definition.updateexpire { expires = existing.expires } else { expires = now + definition.autoexpire }
            } else {
                expires = 0
            }
            s.items[key] = HtableItem(value: value, expires: expires)
        }
    }

    /// Sets the expiry of an existing item (seconds from now; 0 = never). False when missing.
    @discardableResult
    public func setExpire(_ key: String, _ seconds: Int) -> Bool {
        let now = self.now
        return slot(key).locked { s in
            guard var it = s.items[key], it.isLive(now) else { return false }
            it.expires = seconds > 0 ? now + seconds : 0
            s.items[key] = it
            return true
        }
    }

    /// Seconds until the item expires (0 when missing or without expiry), as `$shtex` reads it.
    public func expiresIn(_ key: String) -> Int {
        let now = self.now
        return slot(key).locked { s in
            guard let it = s.items[key], it.isLive(now), it.expires > 0 else { return 0 }
            return it.expires - now
        }
    }

    /// Adds `delta` to an integer item (a missing item starts from initval or 0). Nil when the item
    /// holds a string.
    public func add(_ key: String, _ delta: Int) -> Int? {
        let now = self.now
        return slot(key).locked { s -> Int? in
            if let it = s.items[key], it.isLive(now) {
                guard case .int(let v) = it.value else { return nil }
                var updated = it
                updated.value = .int(v &+ delta)
                if definition.autoexpire > 0 && definition.updateexpire { updated.expires = now + definition.autoexpire }
                s.items[key] = updated
                return v &+ delta
            }
            let v = (definition.initval ?? 0) &+ delta
            s.items[key] = HtableItem(value: .int(v), expires: definition.autoexpire > 0 ? now + definition.autoexpire : 0)
            return v
        }
    }

    /// Removes an item.
    public func remove(_ key: String) { slot(key).locked { $0.items[key] = nil } }

    /// Removes every item.
    public func reset() { for s in slots { s.locked { $0.items.removeAll() } } }

    /// Removes the items whose key (or string value) matches; returns how many went.
    @discardableResult
    public func removeAll(where match: (String, HtableItem) -> Bool) -> Int {
        var n = 0
        for s in slots {
            s.locked { s in
                for (k, it) in s.items where match(k, it) {
                    s.items[k] = nil
                    n += 1
                }
            }
        }
        return n
    }

    /// True if a live item satisfies `match`.
    public func contains(where match: (String, HtableItem) -> Bool) -> Bool {
        let now = self.now
        for s in slots {
            let found = s.locked { s in s.items.contains { $0.value.isLive(now) && match($0.key, $0.value) } }
            if found { return true }
        }
        return false
    }

    /// The live items of every slot, by slot index (for dumps and iterators).
    public func snapshot() -> [(slot: Int, items: [(key: String, item: HtableItem)])] {
        let now = self.now
        var out: [(slot: Int, items: [(key: String, item: HtableItem)])] = []
        for (i, s) in slots.enumerated() {
            let items = s.locked { s in s.items.filter { $0.value.isLive(now) }.map { (key: $0.key, item: $0.value) } }
            if !items.isEmpty { out.append((i, items.sorted { $0.key < $1.key })) }
        }
        return out
    }

    /// Number of live items.
    public var count: Int {
        let now = self.now
        return slots.reduce(0) { acc, s in acc + s.locked { $0.items.values.filter { $0.isLive(now) }.count } }
    }

    /// Number of items held in memory, expired ones not yet purged included.
    public var storedCount: Int { slots.reduce(0) { acc, s in acc + s.locked { $0.items.count } } }

    /// Number of slots (2^size).
    public var slotCount: Int { slots.count }

    /// Drops expired items (the periodic job).
    public func purgeExpired() {
        let now = self.now
        for s in slots {
            s.locked { s in
                for (k, it) in s.items where !it.isLive(now) { s.items[k] = nil }
            }
        }
    }

    /// `sht_lock`: takes the key's slot lock (recursive; held until `unlock` on the same thread).
    public func lock(_ key: String) { pthread_mutex_lock(slot(key).lock) }

    /// `sht_unlock`.
    public func unlock(_ key: String) { pthread_mutex_unlock(slot(key).lock) }
}

/// All htables of the process, defined by the `htable` modparams (fixed at start).
public final class HtableStore: Sendable {
    private let tables: [String: Htable]
    /// Table names in definition order.
    public let names: [String]

    public init(config: ModuleConfiguration, clock: ModuleClock) {
        var tables: [String: Htable] = [:]
        var names: [String] = []
        for text in config[HtableModule.htable] {
            guard let def = HtableDefinition.parse(text) else { continue }
            if tables[def.name] == nil { names.append(def.name) }
            tables[def.name] = Htable(def, clock: clock)
        }
        self.tables = tables
        self.names = names
    }

    public func table(_ name: String) -> Htable? { tables[name] }

    /// Drops expired items of every table.
    public func purgeExpired() { for t in tables.values { t.purgeExpired() } }
}
