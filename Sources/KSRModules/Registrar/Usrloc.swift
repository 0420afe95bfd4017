import Synchronization
import StarlingRedis
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// One registered contact: a row of Kamailio's `location` table (column names in comments).
public struct LocationContact: Sendable, Equatable {
    /// Record unique id (`ruid`).
    public var ruid: String
    /// The address of record the contact belongs to: `user` or `user@domain` (use_domain).
    public var aor: String
    /// `username`, `domain` (nil when use_domain is off, as Kamailio stores it).
    public var username: String
    public var domain: String?
    /// `contact`: the Contact URI.
    public var contact: String
    /// `received`: the source the REGISTER came from when behind NAT (`sip:ip:port`), from `received_avp`.
    public var received: String?
    /// `path`: the Path header values, comma separated.
    public var path: String?
    /// `expires`: absolute expiry, seconds since 1970.
    public var expires: Int
    /// `q` in thousandths (0...1000), -1 unspecified.
    public var q: Int
    public var callid: String
    public var cseq: Int
    /// `last_modified`, seconds since 1970.
    public var lastModified: Int
    public var flags: Int
    /// `cflags`: the branch flags of the REGISTER (NAT flag, sipping flag).
    public var cflags: Int
    public var userAgent: String
    /// `socket`: the local socket the REGISTER arrived on, `proto:ip:port`.
    public var socket: String?
    /// `methods`: the Allow bitmask (Kamailio's METHOD_* bits), -1 when unknown (all).
    public var methods: Int
    public var instance: String?
    public var regId: Int
    public var serverId: Int
    public var connectionId: Int
    public var keepalive: Int
    public var partition: Int

    public init(ruid: String, aor: String, username: String, domain: String?, contact: String, received: String? = nil,
                path: String? = nil, expires: Int, q: Int = -1, callid: String, cseq: Int, lastModified: Int,
                flags: Int = 0, cflags: Int = 0, userAgent: String = "", socket: String? = nil, methods: Int = -1,
                instance: String? = nil, regId: Int = 0, serverId: Int = 0, connectionId: Int = -1, keepalive: Int = 0,
                partition: Int = 0) {
        self.ruid = ruid
        self.aor = aor
        self.username = username
        self.domain = domain
        self.contact = contact
        self.received = received
        self.path = path
        self.expires = expires
        self.q = q
        self.callid = callid
        self.cseq = cseq
        self.lastModified = lastModified
        self.flags = flags
        self.cflags = cflags
        self.userAgent = userAgent
        self.socket = socket
        self.methods = methods
        self.instance = instance
        self.regId = regId
        self.serverId = serverId
        self.connectionId = connectionId
        self.keepalive = keepalive
        self.partition = partition
    }

    /// Still valid at `now` (Kamailio's VALID_CONTACT; no permanent contacts here).
    @inline(__always) public func isValid(at now: Int) -> Bool { expires > now }
}

/// Where usrloc keeps its table between restarts (`db_mode` 1 and 2). The embedded database
/// (StarlingStore) implements it; KSRModules itself holds no database code.
public protocol LocationPersistence: Sendable {
    /// Every row of `table` (at start, to fill the memory table).
    func loadContacts(table: String) throws -> [LocationContact]
    /// Writes changes in one transaction: rows to insert or replace (by ruid), ruids to delete.
    func saveContacts(table: String, upserts: [LocationContact], deletes: [String]) throws
}

/// An in-memory `LocationPersistence` (tests).
public final class MemoryLocationPersistence: LocationPersistence {
    private let rows = Mutex<[String: [String: LocationContact]]>([:])
    /// How many times `saveContacts` was called.
    private let writes = Atomic<Int>(0)
    public init() {}
    public var writeCount: Int { writes.load(ordering: .relaxed) }
    public func loadContacts(table: String) throws -> [LocationContact] {
        rows.withLock { Array(($0[table] ?? [:]).values) }
    }
    public func saveContacts(table: String, upserts: [LocationContact], deletes: [String]) throws {
        writes.wrappingAdd(1, ordering: .relaxed)
        rows.withLock {
            for d in deletes { $0[table]?[d] = nil }
            for u in upserts { $0[table, default: [:]][u.ruid] = u }
        }
    }
}

/// usrloc's `db_mode`: 0 memory only, 1 write-through, 2 write-back, 3 DB only (Redis: the store is
/// the truth and memory a cache; with an SQLite db_url, 3 is served as write-through).
public enum UsrlocDBMode: Int, Sendable {
    case noDB = 0, writeThrough = 1, writeBack = 2, dbOnly = 3
}

/// One usrloc domain (table, e.g. `location`): the contacts of every AOR, sharded by AOR hash so
/// workers registering different users rarely meet on a lock.
public final class LocationTable: Sendable {
    public let name: String
    static let shardCount = 64

    struct Shard: ~Copyable {
        /// AOR -> contacts, kept in lookup order (q descending, then most recently modified first).
        var records: [String: [LocationContact]] = [:]
        /// ruids changed since the last flush (write-back), and ruids deleted.
        var dirty: Set<String> = []
        var deleted: [String] = []
        /// Shared mode (Redis): the AoRs held in the cache (`records` plus this), with the version of
        /// their Redis key (0: no key) and the newest version seen; bumped `generation` on every
        /// invalidation, so a read that raced with one is not cached.
        var versions: [String: (key: Int, seen: Int)] = [:]
        var generation = 0
    }

    final class ShardBox: Sendable {
        let state = Mutex<Shard>(Shard())
    }

    private let shards: [ShardBox]
    private let contactCount = Atomic<Int>(0)
    /// db_mode 3 on Redis: the shared store (the shards are then a cache of it).
    let shared: RedisLocations?
    /// Shared mode: the AoRs this instance's last save left with a contact it saved (it alone pings
    /// those for NAT keepalive). Kept apart from the cache, which invalidations and reconnects empty.
    private let owned = Mutex<Set<String>>([])
    /// Shared mode with a server_id: the AoRs of earlier runs were looked for (once, on the first keepalive round).
    private let recovered = Atomic<Bool>(false)
    let clock: ModuleClock?

    init(name: String, shared: RedisLocations? = nil, clock: ModuleClock? = nil) {
        self.name = name
        self.shared = shared
        self.clock = clock
        shards = (0..<Self.shardCount).map { _ in ShardBox() }
    }

    var now: Int { clock?.unixSeconds ?? Int(time(nil)) }

    /// The number of contacts in memory (valid or not yet expired by the timer).
    public var count: Int { contactCount.load(ordering: .relaxed) }

    @inline(__always) func shard(_ aor: String) -> ShardBox {
        var h: UInt32 = 0
        for b in aor.utf8 { h = h &* 31 &+ UInt32(b) }
        return shards[Int(h % UInt32(Self.shardCount))]
    }

    /// Orders contacts as usrloc keeps them: higher q first (unspecified counts as lowest), then the
    /// most recently modified first.
    static func sort(_ list: inout [LocationContact]) {
        list.sort { a, b in a.q != b.q ? a.q > b.q : a.lastModified > b.lastModified }
    }

    /// Runs `body` on the contacts of `aor` with the shard locked. `body` returns the new list and the
    /// changes made (for persistence); the record is removed when the list is empty.
    @discardableResult
    func update<R>(_ aor: String, trackDirty: Bool, persist: (([LocationContact], [String]) -> Void)? = nil,
                   _ body: (inout [LocationContact]) -> (result: R, changed: [String], deleted: [String])) -> (R, [LocationContact], [String]) {
        shard(aor).state.withLock { s in
            var list = s.records[aor] ?? []
            let before = list.count
            let (r, changed, deleted) = body(&list)
            Self.sort(&list)
            if list.isEmpty { s.records[aor] = nil } else { s.records[aor] = list }
            contactCount.wrappingAdd(list.count - before, ordering: .relaxed)
            let changedRows = list.filter { changed.contains($0.ruid) }
            if trackDirty {
                for c in changedRows { s.dirty.insert(c.ruid) }
                for d in deleted { s.dirty.remove(d); s.deleted.append(d) }
            }
            // Write-through: under the shard lock, so the rows of one AOR reach the database in order.
            if let persist, !changedRows.isEmpty || !deleted.isEmpty { persist(changedRows, deleted) }
            return (r, changedRows, deleted)
        }
    }

    /// The contacts of an AOR (a copy), in lookup order.
    public func contacts(_ aor: String) -> [LocationContact] {
        if let shared { return sharedContacts(aor, shared) }
        return shard(aor).state.withLock { $0.records[aor] ?? [] }
    }

    /// Every AOR with its contacts (a snapshot, shard by shard; in shared mode, every AoR in Redis).
    public func snapshot() -> [(aor: String, contacts: [LocationContact])] {
        if let shared {
            do throws(RedisError) { return try shared.scan(name, now: now) } catch {
                shared.logger.error("usrloc: Redis \(shared.pool.config.label): \(error.message): listing the local cache only")
            }
        }
        return cachedSnapshot()
    }

    func cachedSnapshot() -> [(aor: String, contacts: [LocationContact])] {
        var out: [(String, [LocationContact])] = []
        for s in shards { s.state.withLock { for (k, v) in $0.records { out.append((k, v)) } } }
        return out.sorted { $0.0 < $1.0 }
    }

    /// Every contact (for keepalives). In shared mode, the valid contacts this instance saved, read
    /// from the cache or, when an invalidation or a reconnect dropped them, from Redis (and cached).
    func forEachContact(_ body: (LocationContact) -> Void) {
        if let shared {
            let t = now
            if shared.serverID != 0 && !recovered.load(ordering: .relaxed) {
                // A restart with a stable server_id: the AoRs holding contacts saved by this instance's
                // previous runs, found once (SCAN) and pinged from now on.
                do throws(RedisError) {
                    let found = try shared.scan(name, now: t).filter { $0.contacts.contains { shared.owns($0) } }.map(\.aor)
                    owned.withLock { $0.formUnion(found) }
                    recovered.store(true, ordering: .relaxed)
                    if !found.isEmpty {
                        shared.logger.info("usrloc: \(found.count) AoRs of table \(name) hold contacts of server_id \(shared.serverID): pinged by this instance")
                    }
                } catch {
                    if shared.pool.shouldLog() { shared.logger.error("usrloc: Redis \(shared.pool.config.label): \(error.message): the contacts of earlier runs are not pinged yet") }
                }
            }
            for aor in owned.withLock({ $0.sorted() }) {
                let mine = sharedContacts(aor, shared, countStatistics: false)
                    .filter { shared.owns($0) && $0.isValid(at: t) }
                if mine.isEmpty {
                    owned.withLock { _ = $0.remove(aor) }
                    continue
                }
                for c in mine { body(c) }
            }
            return
        }
        for s in shards {
            let all = s.state.withLock { $0.records.values.flatMap { $0 } }
            for c in all { body(c) }
        }
    }

    /// Loads rows read from the database (start-up), marking nothing dirty.
    func load(_ rows: [LocationContact]) {
        var byAOR: [String: [LocationContact]] = [:]
        for r in rows { byAOR[r.aor, default: []].append(r) }
        for (aor, list) in byAOR {
            update(aor, trackDirty: false) { l in
                l.append(contentsOf: list)
                return ((), [], [])
            }
        }
    }

    /// Removes the contacts that expired before `now`. Returns the removed contacts.
    func expire(now: Int, trackDirty: Bool) -> [LocationContact] {
        var removed: [LocationContact] = []
        for s in shards {
            s.state.withLock { st in
                var gone = 0
                for (aor, list) in st.records where list.contains(where: { !$0.isValid(at: now) }) {
                    let keep = list.filter { $0.isValid(at: now) }
                    for c in list where !c.isValid(at: now) {
                        removed.append(c)
                        if trackDirty { st.dirty.remove(c.ruid); st.deleted.append(c.ruid) }
                    }
                    gone += list.count - keep.count
                    st.records[aor] = keep.isEmpty ? nil : keep
                    // Shared mode: an AoR whose cached contacts all expired leaves the cache.
                    if shared != nil && keep.isEmpty { st.versions[aor] = nil }
                }
                if gone > 0 { contactCount.wrappingSubtract(gone, ordering: .relaxed) }
            }
        }
        return removed
    }

    /// Takes the pending write-back changes: rows to write and ruids to delete.
    func takeDirty() -> (upserts: [LocationContact], deletes: [String]) {
        var ups: [LocationContact] = [], dels: [String] = []
        for s in shards {
            s.state.withLock { st in
                guard !st.dirty.isEmpty || !st.deleted.isEmpty else { return }
                for list in st.records.values { for c in list where st.dirty.contains(c.ruid) { ups.append(c) } }
                dels.append(contentsOf: st.deleted)
                st.dirty.removeAll()
                st.deleted.removeAll()
            }
        }
        return (ups, dels)
    }

    // MARK: shared mode (Redis)

    /// Puts an AoR in the cache (the shard is locked by the caller).
    private func cache(_ st: inout Shard, _ aor: String, _ list: [LocationContact], key: Int, seen: Int) {
        let before = st.records[aor]?.count ?? 0
        st.records[aor] = list.isEmpty ? nil : list
        st.versions[aor] = (key, seen)
        contactCount.wrappingAdd(list.count - before, ordering: .relaxed)
    }

    /// A pub/sub invalidation: drops the AoR unless the cache holds `version` or newer.
    func invalidate(_ aor: String, version: Int) {
        shard(aor).state.withLock { st in
            if let v = st.versions[aor], v.seen >= version { return }
            let before = st.records[aor]?.count ?? 0
            st.records[aor] = nil
            st.versions[aor] = nil
            st.generation &+= 1
            contactCount.wrappingSubtract(before, ordering: .relaxed)
        }
    }

    /// Forgets every cached AoR (the subscription came back: messages may have been missed).
    func clearCache() {
        for s in shards {
            s.state.withLock { st in
                let n = st.records.values.reduce(0) { $0 + $1.count }
                st.records.removeAll()
                st.versions.removeAll()
                st.generation &+= 1
                contactCount.wrappingSubtract(n, ordering: .relaxed)
            }
        }
    }

    /// A lookup in shared mode: the cache while the subscription is up, else Redis; the cache (logged)
    /// when Redis cannot be reached.
    func sharedContacts(_ aor: String, _ s: RedisLocations, countStatistics: Bool = true) -> [LocationContact] {
        let box = shard(aor)
        let t = now
        if s.live.load(ordering: .acquiring) {
            let hit: [LocationContact]? = box.state.withLock { st in
                st.versions[aor] != nil ? (st.records[aor] ?? []) : nil
            }
            if let hit {
                if countStatistics { s.cacheHits.wrappingAdd(1, ordering: .relaxed) }
                return hit.filter { $0.isValid(at: t) }
            }
        }
        let gen = box.state.withLock { $0.generation }
        do throws(RedisError) {
            let (v, list) = try s.fetch(name, aor, now: t)
            // An AoR with no key in Redis is not cached (a scan of random users must not grow the
            // cache): its lookups read Redis each time.
            if v != 0 {
                box.state.withLock { st in
                    if st.generation == gen { cache(&st, aor, list, key: v, seen: v) }
                }
            }
            return list
        } catch {
            let cached = box.state.withLock { $0.records[aor] ?? [] }.filter { $0.isValid(at: t) }
            if s.pool.shouldLog() {
                s.logger.error("usrloc: Redis \(s.pool.config.label): \(error.message): lookup of '\(aor)' answered from the local cache (\(cached.count) contacts)")
            }
            return cached
        }
    }

    /// Save attempts before a REGISTER gets 500 because its AoR keeps changing under it.
    static let maxSaveAttempts = 32

    /// A change in shared mode: the registrar's `body` runs on the AoR's list at a version, and one
    /// compare-and-set EVAL stores the result; on a conflict `body` runs again on the fresh list.
    /// Nil when Redis cannot be reached or keeps conflicting.
    func sharedUpdate<R>(_ aor: String, _ s: RedisLocations,
                         _ body: (inout [LocationContact]) -> (result: R, changed: [String], deleted: [String])) -> (R, [LocationContact], [String])? {
        let box = shard(aor)
        var fresh = !s.live.load(ordering: .acquiring)
        // The AoR as a refused save found it (the script returns it: no extra round trip).
        var current: (list: [LocationContact], key: Int)? = nil
        // The AoR's lock, taken after repeated conflicts (released by the successful save's script).
        var token = ""
        defer { if !token.isEmpty { s.unlock(name, aor, token: token) } }
        for attempt in 0..<Self.maxSaveAttempts {
            if attempt >= 3 && token.isEmpty {
                let t = s.newToken()
                if s.lock(name, aor, token: t) {
                    token = t
                    current = nil  // read the AoR again under the lock
                }
            }
            let t = now
            var list: [LocationContact]
            var key: Int
            let gen = box.state.withLock { $0.generation }
            let cached: ([LocationContact], Int)? = fresh ? nil : box.state.withLock { st in
                st.versions[aor].map { (st.records[aor] ?? [], $0.key) }
            }
            if let c = current {
                (list, key) = c
                current = nil
            } else if let cached {
                (list, key) = cached
                list.removeAll { !$0.isValid(at: t) }
            } else {
                do throws(RedisError) { (key, list) = try s.fetch(name, aor, now: t) } catch {
                    s.logger.error("usrloc: Redis \(s.pool.config.label): \(error.message): cannot save '\(aor)'")
                    return nil
                }
            }
            let (r, changed, deleted) = body(&list)
            Self.sort(&list)
            let changedRows = list.filter { changed.contains($0.ruid) }
            if changedRows.isEmpty && deleted.isEmpty { return (r, [], []) }
            let outcome: RedisLocations.Outcome
            do throws(RedisError) {
                outcome = try s.store(name, aor, expected: key, now: t, upserts: changedRows, deletes: deleted, token: token)
            } catch {
                s.logger.error("usrloc: Redis \(s.pool.config.label): \(error.message): cannot save '\(aor)'")
                box.state.withLock { st in
                    // The write may or may not have happened: forget the AoR.
                    let before = st.records[aor]?.count ?? 0
                    st.records[aor] = nil
                    st.versions[aor] = nil
                    st.generation &+= 1
                    contactCount.wrappingSubtract(before, ordering: .relaxed)
                }
                return nil
            }
            switch outcome {
            case .stored(let v, let remaining):
                token = ""  // the script removed the lock
                let valid = list.filter { $0.isValid(at: t) }
                let mine = valid.contains { s.owns($0) }
                owned.withLock { if mine { $0.insert(aor) } else { $0.remove(aor) } }
                box.state.withLock { st in
                    if st.generation == gen && s.live.load(ordering: .acquiring) {
                        cache(&st, aor, valid, key: remaining == 0 ? 0 : v, seen: v)
                    } else {
                        let before = st.records[aor]?.count ?? 0
                        st.records[aor] = nil
                        st.versions[aor] = nil
                        contactCount.wrappingSubtract(before, ordering: .relaxed)
                    }
                }
                // redis_wait_replicas: no 200 before the replicas have it.
                guard s.replicated() else { return nil }
                return (r, changedRows, deleted)
            case .conflict(let v, let contacts):
                s.conflicts.wrappingAdd(1, ordering: .relaxed)
                fresh = true
                current = (contacts, v)
                // Instances that keep meeting on one AoR: a short random pause breaks the tie.
                if attempt >= 2 && token.isEmpty { usleep(UInt32.random(in: 0...UInt32(200 * attempt))) }
            }
        }
        s.logger.error("usrloc: '\(aor)' kept changing under \(Self.maxSaveAttempts) save attempts: not saved")
        return nil
    }

    /// Puts changes back after a failed flush (they are retried next time).
    func restoreDirty(upserts: [LocationContact], deletes: [String]) {
        for c in upserts { shard(c.aor).state.withLock { _ = $0.dirty.insert(c.ruid) } }
        for d in deletes { shards[0].state.withLock { $0.deleted.append(d) } }
    }
}

/// usrloc: the location tables shared by every worker, their expiry and their persistence.
public final class Usrloc: Sendable {
    public let dbMode: UsrlocDBMode
    /// `use_domain`: AORs are `user@domain` instead of `user`.
    public let useDomain: Bool
    /// `timer_interval`: seconds between expiry runs and write-back flushes.
    public let timerInterval: Int
    /// `nat_bflag`: the branch flag marking NATed contacts (-1: none).
    public let natBflag: Int
    public let persistence: (any LocationPersistence)?
    /// db_mode 3 with a redis:// (or redis+sentinel://) db_url: the shared store.
    public let shared: RedisLocations?
    let clock: ModuleClock?
    private let tables = Mutex<[String: LocationTable]>([:])
    private let lastTimer = Atomic<Int>(0)
    private let ruidCounter = Atomic<Int>(0)
    private let ruidPrefix: String
    /// `[core] server_id`: written in the server_id column of every contact saved here.
    public let serverID: Int
    /// Contacts removed by expiry since start.
    private let expiredTotal = Atomic<Int>(0)

    public init(config: ModuleConfiguration, persistence: (any LocationPersistence)?, now: Int, clock: ModuleClock? = nil) {
        let mode = config[UsrlocModule.dbMode]
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        ruidPrefix = "uloc-" + String(Int(ts.tv_sec), radix: 16) + "-" + String(Int(getpid()), radix: 16) + "-"
        serverID = config.serverID
        if mode == 3, let url = config[UsrlocModule.dbURL], let redis = RedisClientConfig.parseURL(url) {
            // DB only on Redis: Redis is the truth, memory a cache (RedisLocations).
            dbMode = .dbOnly
            shared = RedisLocations(config: redis, ownPrefix: ruidPrefix, serverID: config.serverID, waitReplicas: config[UsrlocModule.redisWaitReplicas],
                                    waitTimeoutMs: config[UsrlocModule.redisWaitTimeout])
            self.persistence = nil
        } else {
            // db_mode 3 on SQLite is served as write-through: the memory table stays the source for lookups.
            dbMode = persistence == nil ? .noDB : (mode == 3 ? .writeThrough : UsrlocDBMode(rawValue: mode) ?? .noDB)
            shared = nil
            self.persistence = persistence
        }
        self.clock = clock
        useDomain = config[UsrlocModule.useDomain]
        timerInterval = config[UsrlocModule.timerInterval]
        natBflag = config[UsrlocModule.natBflag]
        lastTimer.store(now, ordering: .relaxed)
    }

    /// A new record unique id (Kamailio's `uloc-<start time>-<pid>-<counter>` form).
    func newRUID() -> String { ruidPrefix + String(ruidCounter.wrappingAdd(1, ordering: .relaxed).newValue) }

    /// The table (usrloc domain) named `name`, created (and loaded from the database in db_mode 1/2)
    /// on first use.
    public func table(_ name: String) -> LocationTable {
        tables.withLock { t in
            if let existing = t[name] { return existing }
            let made = LocationTable(name: name, shared: shared, clock: clock)
            shared?.register(made)
            if dbMode != .noDB, let persistence, let rows = try? persistence.loadContacts(table: name) {
                made.load(rows)
            }
            t[name] = made
            return made
        }
    }

    /// Every table used so far.
    public var allTables: [LocationTable] { tables.withLock { Array($0.values) }.sorted { $0.name < $1.name } }

    /// Contacts in memory, all tables.
    public var contactCount: Int { allTables.reduce(0) { $0 + $1.count } }
    /// Contacts removed by expiry since start.
    public var expiredCount: Int { expiredTotal.load(ordering: .relaxed) }

    /// Applies a change to an AOR and stores it; nil when the shared store (Redis) could not take it
    /// (the registrar then answers 500). Without a shared store it never fails.
    public func tryChange<R>(_ table: LocationTable, _ aor: String, memoryOnly: Bool = false,
                             _ body: (inout [LocationContact]) -> (result: R, changed: [String], deleted: [String])) -> R? {
        if let s = table.shared { return table.sharedUpdate(aor, s, body)?.0 }
        return change(table, aor, memoryOnly: memoryOnly, body)
    }

    /// Applies a change to an AOR and persists it as the db_mode asks (`memoryOnly`: save flag 0x01).
    /// In shared mode a failed store is logged and `body`'s result on the cached list returned.
    @discardableResult
    public func change<R>(_ table: LocationTable, _ aor: String, memoryOnly: Bool = false,
                   _ body: (inout [LocationContact]) -> (result: R, changed: [String], deleted: [String])) -> R {
        if let s = table.shared {
            if let r = table.sharedUpdate(aor, s, body) { return r.0 }
            var copy = table.shard(aor).state.withLock { $0.records[aor] ?? [] }
            return body(&copy).result
        }
        let track = dbMode == .writeBack && !memoryOnly
        var persist: (([LocationContact], [String]) -> Void)? = nil
        if dbMode == .writeThrough && !memoryOnly, let persistence {
            let name = table.name
            persist = { ups, dels in try? persistence.saveContacts(table: name, upserts: ups, deletes: dels) }
        }
        return table.update(aor, trackDirty: track, persist: persist, body).0
    }

    /// Removes every contact of an AOR. Returns how many were removed.
    @discardableResult
    public func removeAll(_ table: LocationTable, _ aor: String) -> Int {
        change(table, aor) { list in
            let gone = list.map(\.ruid)
            list.removeAll()
            return (gone.count, [], gone)
        }
    }

    /// The periodic job: every `timer_interval` seconds, expired contacts leave the tables and
    /// (write-back) dirty records are written.
    public func timer(now: Int) {
        // Shared mode: a step of the cluster-wide sweep of expired contacts in Redis (every tick while
        // this instance holds the sweep lock; otherwise an attempt to take it, refused while another
        // instance sweeps or a sweep ended less than timer_interval seconds ago).
        if let shared { shared.sweepTick(tables: allTables.map(\.name), now: now, intervalSeconds: timerInterval) }
        let last = lastTimer.load(ordering: .relaxed)
        guard now - last >= timerInterval else { return }
        lastTimer.store(now, ordering: .relaxed)
        for t in allTables {
            let removed = t.expire(now: now, trackDirty: dbMode == .writeBack)
            expiredTotal.wrappingAdd(removed.count, ordering: .relaxed)
            if dbMode == .writeThrough, !removed.isEmpty, let persistence {
                try? persistence.saveContacts(table: t.name, upserts: [], deletes: removed.map(\.ruid))
            }
        }
        flush()
    }

    /// Writes the pending changes (write-back mode); also called at shutdown.
    public func flush() {
        guard dbMode == .writeBack, let persistence else { return }
        for t in allTables {
            let (ups, dels) = t.takeDirty()
            guard !ups.isEmpty || !dels.isEmpty else { continue }
            do {
                try persistence.saveContacts(table: t.name, upserts: ups, deletes: dels)
            } catch {
                t.restoreDirty(upserts: ups, deletes: dels)
            }
        }
    }
}
