#if canImport(Glibc)
import Glibc
#endif
public import StarlingKEMI
import StarlingRedis
import Logging

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
    /// `redis=1` (Starling): the items live in Redis (`[modparam.htable] redis_url`), shared by every
    /// instance; each item is a key `ht:<name>:<key>` with Redis' own expiry.
    public var redis: Bool = false
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
            case "redis":
                guard let n = Int(value), n == 0 || n == 1 else { return nil }
                def.redis = n == 1
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
    /// `redis=1`: the Redis the items live in (nil: in memory).
    let redis: RedisHtable?

    init(_ definition: HtableDefinition, clock: ModuleClock, redis: RedisPool? = nil) {
        self.definition = definition
        self.clock = clock
        self.redis = redis.map { RedisHtable(pool: $0, definition: definition) }
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
        if let redis { return redis.get(key) }
        let now = self.now
        return slot(key).locked { s in
            guard let it = s.items[key] else { return nil }
            if !it.isLive(now) { s.items[key] = nil; return nil }
            return it.value
        }
    }

    /// The live item of `key` with its expiry.
    public func item(_ key: String) -> HtableItem? {
        if let redis { return redis.item(key, now: now) }
        let now = self.now
        return slot(key).locked { s in s.items[key].flatMap { $0.isLive(now) ? $0 : nil } }
    }

    /// Items held per slot (expired ones not yet purged included), as htable.stats counts them.
    public func slotSizes() -> [Int] {
        if redis != nil { return snapshotSlots().reduce(into: [Int](repeating: 0, count: slots.count)) { $0[$1.slot] = $1.items.count } }
        return slots.map { s in s.locked { $0.items.count } }
    }

    /// The value a read gives: the item, else the integer initval, else nil.
    public func read(_ key: String) -> KemiValue? {
        if let v = get(key) { return v }
        return definition.initval.map { .int($0) }
    }

    /// Sets a value. `expire`: nil = the table's autoexpire rules; a number = that many seconds from
    /// now (0 = never).
    public func set(_ key: String, _ value: KemiValue, expire: Int? = nil) {
        if let redis { redis.set(key, value, expire: expire); return }
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
        if let redis { return redis.setExpire(key, seconds) }
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
        if let redis { return redis.item(key, now: 0).map { $0.expires } ?? 0 }
        let now = self.now
        return slot(key).locked { s in
            guard let it = s.items[key], it.isLive(now), it.expires > 0 else { return 0 }
            return it.expires - now
        }
    }

    /// Adds `delta` to an integer item (a missing item starts from initval or 0). Nil when the item
    /// holds a string.
    public func add(_ key: String, _ delta: Int) -> Int? {
        if let redis { return redis.add(key, delta) }
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
    public func remove(_ key: String) {
        if let redis { redis.remove([key]); return }
        slot(key).locked { $0.items[key] = nil }
    }

    /// Removes every item.
    public func reset() {
        if let redis { redis.remove(redis.all().map(\.key)); return }
        for s in slots { s.locked { $0.items.removeAll() } }
    }

    /// Removes the items whose key (or string value) matches; returns how many went.
    @discardableResult
    public func removeAll(where match: (String, HtableItem) -> Bool) -> Int {
        if let redis {
            let gone = redis.all().filter { match($0.key, $0.item) }.map(\.key)
            redis.remove(gone)
            return gone.count
        }
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
        if let redis { return redis.all().contains { match($0.key, $0.item) } }
        let now = self.now
        for s in slots {
            let found = s.locked { s in s.items.contains { $0.value.isLive(now) && match($0.key, $0.value) } }
            if found { return true }
        }
        return false
    }

    /// The live items of every slot, by slot index (for dumps and iterators).
    public func snapshot() -> [(slot: Int, items: [(key: String, item: HtableItem)])] {
        if redis != nil { return snapshotSlots() }
        let now = self.now
        var out: [(slot: Int, items: [(key: String, item: HtableItem)])] = []
        for (i, s) in slots.enumerated() {
            let items = s.locked { s in s.items.filter { $0.value.isLive(now) }.map { (key: $0.key, item: $0.value) } }
            if !items.isEmpty { out.append((i, items.sorted { $0.key < $1.key })) }
        }
        return out
    }

    /// The Redis items grouped by slot as the memory table would hold them.
    func snapshotSlots() -> [(slot: Int, items: [(key: String, item: HtableItem)])] {
        guard let redis else { return [] }
        var bySlot: [Int: [(key: String, item: HtableItem)]] = [:]
        for (k, it) in redis.all() { bySlot[slotIndex(k), default: []].append((k, it)) }
        return bySlot.keys.sorted().map { ($0, bySlot[$0]!.sorted { $0.key < $1.key }) }
    }

    /// Number of live items.
    public var count: Int {
        if let redis { return redis.all().count }
        let now = self.now
        return slots.reduce(0) { acc, s in acc + s.locked { $0.items.values.filter { $0.isLive(now) }.count } }
    }

    /// Number of items held in memory, expired ones not yet purged included.
    public var storedCount: Int {
        if redis != nil { return count }
        return slots.reduce(0) { acc, s in acc + s.locked { $0.items.count } }
    }

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

    /// The Redis of `redis=1` tables (`redis_url`), nil when none is configured.
    let redisPool: RedisPool?

    public init(config: ModuleConfiguration, clock: ModuleClock) {
        var tables: [String: Htable] = [:]
        var names: [String] = []
        let pool = config[HtableModule.redisURL].flatMap(RedisClientConfig.parseURL).map { RedisPool($0) }
        redisPool = pool
        for text in config[HtableModule.htable] {
            guard let def = HtableDefinition.parse(text) else { continue }
            if tables[def.name] == nil { names.append(def.name) }
            tables[def.name] = Htable(def, clock: clock, redis: def.redis ? pool : nil)
        }
        self.tables = tables
        self.names = names
    }

    public func table(_ name: String) -> Htable? { tables[name] }

    /// Drops expired items of every table.
    public func purgeExpired() { for t in tables.values { t.purgeExpired() } }
}

/// The items of a `redis=1` htable in Redis: one key per item, `ht:<table>:<key>`; integers as
/// decimal text (INCRBY works on them), strings as `s:` + text; expiry is the key's TTL. Every
/// operation is one blocking round trip on the worker's own connection; when Redis cannot be reached
/// reads give nothing and writes are dropped, with a log line (at most one a second).
final class RedisHtable: Sendable {
    let pool: RedisPool
    let definition: HtableDefinition
    let prefix: String
    static let logger = Logger(label: "starling.htable")

    init(pool: RedisPool, definition: HtableDefinition) {
        self.pool = pool
        self.definition = definition
        prefix = "ht:\(definition.name):"
    }

    func key(_ k: String) -> [UInt8] { Array((prefix + k).utf8) }

    func run(_ args: [[UInt8]]) -> RedisReply? {
        do throws(RedisError) {
            let r = try pool.command(args)
            if case .error(let e) = r {
                if pool.shouldLog() { Self.logger.error("htable \(definition.name): Redis error: \(e)") }
                return nil
            }
            return r
        } catch {
            if pool.shouldLog() { Self.logger.error("htable \(definition.name): Redis \(pool.config.label): \(error.message)") }
            return nil
        }
    }

    static func encode(_ v: KemiValue) -> [UInt8] {
        switch v {
        case .int(let i): return Array(String(i).utf8)
        case .string(let s): return Array(("s:" + s).utf8)
        case .null: return Array("s:".utf8)
        }
    }

    static func decode(_ r: RedisReply) -> KemiValue? {
        guard case .string(let b) = r else { return nil }
        if b.starts(with: [UInt8(ascii: "s"), UInt8(ascii: ":")]) { return .string(String(decoding: b.dropFirst(2), as: UTF8.self)) }
        return Int(String(decoding: b, as: UTF8.self)).map { .int($0) }
    }

    func get(_ k: String) -> KemiValue? {
        run([Array("GET".utf8), key(k)]).flatMap(Self.decode)
    }

    static let itemScript = "return {redis.call('GET', KEYS[1]), redis.call('TTL', KEYS[1])}"

    /// The item with its absolute expiry (`now` + TTL; with `now` 0, the TTL itself).
    func item(_ k: String, now: Int) -> HtableItem? {
        guard let r = run([Array("EVAL".utf8), Array(Self.itemScript.utf8), Array("1".utf8), key(k)]) else { return nil }
        let e = r.elements
        guard e.count == 2, let v = Self.decode(e[0]) else { return nil }
        let ttl = e[1].int ?? -1
        return HtableItem(value: v, expires: ttl > 0 ? now + ttl : 0)
    }

    /// SET with the table's expiry rules: `expire` seconds (0 never), else autoexpire (kept on update
    /// when updateexpire=0).
    static let keepScript = """
        local ttl = redis.call('TTL', KEYS[1])
        if ttl > 0 then return redis.call('SET', KEYS[1], ARGV[1], 'KEEPTTL') end
        return redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
        """

    func set(_ k: String, _ v: KemiValue, expire: Int?) {
        let value = Self.encode(v)
        if let expire {
            _ = run(expire > 0 ? [Array("SET".utf8), key(k), value, Array("EX".utf8), Array(String(expire).utf8)]
                               : [Array("SET".utf8), key(k), value])
        } else if definition.autoexpire > 0 {
            if definition.updateexpire {
                _ = run([Array("SET".utf8), key(k), value, Array("EX".utf8), Array(String(definition.autoexpire).utf8)])
            } else {
                _ = run([Array("EVAL".utf8), Array(Self.keepScript.utf8), Array("1".utf8), key(k), value,
                         Array(String(definition.autoexpire).utf8)])
            }
        } else {
            _ = run([Array("SET".utf8), key(k), value])
        }
    }

    static let expireScript = """
        if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
        if ARGV[1] == '0' then redis.call('PERSIST', KEYS[1]) else redis.call('EXPIRE', KEYS[1], ARGV[1]) end
        return 1
        """

    func setExpire(_ k: String, _ seconds: Int) -> Bool {
        run([Array("EVAL".utf8), Array(Self.expireScript.utf8), Array("1".utf8), key(k), Array(String(max(0, seconds)).utf8)])?.int == 1
    }

    /// INCRBY with initval for a missing item and the table's expiry; nil for a string item.
    static let addScript = """
        local v = redis.call('GET', KEYS[1])
        local n
        if v == false then
          n = tonumber(ARGV[2]) + tonumber(ARGV[1])
          if tonumber(ARGV[3]) > 0 then redis.call('SET', KEYS[1], n, 'EX', ARGV[3]) else redis.call('SET', KEYS[1], n) end
          return n
        end
        if string.sub(v, 1, 2) == 's:' then return false end
        n = redis.call('INCRBY', KEYS[1], ARGV[1])
        if tonumber(ARGV[3]) > 0 and ARGV[4] == '1' then redis.call('EXPIRE', KEYS[1], ARGV[3]) end
        return n
        """

    func add(_ k: String, _ delta: Int) -> Int? {
        run([Array("EVAL".utf8), Array(Self.addScript.utf8), Array("1".utf8), key(k), Array(String(delta).utf8),
             Array(String(definition.initval ?? 0).utf8), Array(String(definition.autoexpire).utf8),
             Array((definition.updateexpire ? "1" : "0").utf8)])?.int
    }

    func remove(_ keys: [String]) {
        var i = 0
        while i < keys.count {
            let chunk = keys[i..<min(i + 500, keys.count)]
            _ = run([Array("DEL".utf8)] + chunk.map(key))
            i += 500
        }
    }

    /// Every live item (SCAN + MGET): for dumps, iterators, matching removals and counts.
    func all() -> [(key: String, item: HtableItem)] {
        var cursor = "0"
        var keys: [String] = []
        repeat {
            guard let r = run([Array("SCAN".utf8), Array(cursor.utf8), Array("MATCH".utf8), Array((prefix + "*").utf8),
                               Array("COUNT".utf8), Array("1000".utf8)]) else { return [] }
            let e = r.elements
            guard e.count == 2, let next = e[0].text else { return [] }
            cursor = next
            for k in e[1].elements { if let s = k.text, s.hasPrefix(prefix) { keys.append(String(s.dropFirst(prefix.count))) } }
        } while cursor != "0"
        keys = Array(Set(keys)).sorted()
        var out: [(String, HtableItem)] = []
        var i = 0
        while i < keys.count {
            let chunk = Array(keys[i..<min(i + 500, keys.count)])
            i += 500
            guard let r = run([Array("MGET".utf8)] + chunk.map(key)) else { continue }
            for (k, v) in zip(chunk, r.elements) {
                if let value = Self.decode(v) { out.append((k, HtableItem(value: value, expires: 0))) }
            }
        }
        return out
    }
}
