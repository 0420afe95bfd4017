import StarlingRedis
import Synchronization
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// usrloc `db_mode = 3` on Redis (`db_url = "redis://HOST:PORT/DB"` or `redis+sentinel://...`): Redis is
/// the truth, shared by every Starling instance. docs/ScaleOut.md describes the design; in short:
///
/// - One hash per AoR, `ul:<table>:<aor>`: field `_v` (the AoR's version), one field per contact
///   (ruid -> the encoded contact, its absolute expiry first). The key expires (EXPIREAT) with its last
///   contact; expired fields inside a live key are skipped by readers and pruned by the next save and
///   by the periodic sweep (`sweepTick`: one instance at a time, every `timer_interval`).
/// - A save is one EVAL: compare-and-set on `_v`. The registrar's own code (RFC 3261 rules,
///   max_contacts, expires) computes the new contact list from the version it read; the script applies
///   it only if `_v` is still that version, prunes expired fields, takes a new version from one global
///   counter (`ul:seq`, so versions only grow), sets the key's expiry and publishes
///   `<table>\t<version>\t<aor>` on `ul:inval`. On a conflict the registrar runs again on the fresh
///   list, so two instances saving one AoR at once never lose a contact.
/// - Lookups read a local cache (the worker's shard, no network) that the pub/sub messages invalidate;
///   a miss costs one HGETALL. While the subscription is down, every lookup goes to Redis; while Redis
///   is down, lookups answer from the cache (logged) and saves fail (REGISTER gets 500).
public final class RedisLocations: Sendable {
    let pool: RedisPool
    let channel = "ul:inval"
    let sequenceKey = "ul:seq"
    /// True while the invalidation subscription is up (the cache can be trusted).
    let live = Atomic<Bool>(false)
    /// Every table made so far, for invalidations.
    let tables = Mutex<[String: LocationTable]>([:])
    let logger = Logger(label: "starling.usrloc")
    private let subscriber = Mutex<RedisSubscriber?>(nil)
    /// Counters: saves retried on a version conflict, lookups served from the cache, lookups that read Redis.
    let conflicts = Atomic<Int>(0)
    let cacheHits = Atomic<Int>(0)
    let cacheMisses = Atomic<Int>(0)
    /// The ruid prefix of this run: the contacts it saved (it alone pings them for NAT keepalive), when
    /// no server_id is set.
    let ownPrefix: String
    /// `[core] server_id` (0: none): with one, the contacts whose server_id column holds it are this
    /// instance's, whichever run saved them (so a restarted instance keeps pinging them).
    let serverID: Int

    /// `redis_wait_replicas`: a save is acknowledged (200) only once that many replicas have it
    /// (`WAIT n timeout`); fewer in time gives 500.
    let waitReplicas: Int
    let waitTimeoutMs: Int

    init(config: RedisClientConfig, ownPrefix: String, serverID: Int = 0, waitReplicas: Int = 0, waitTimeoutMs: Int = 500) {
        self.serverID = serverID
        self.waitReplicas = waitReplicas
        self.waitTimeoutMs = waitTimeoutMs
        pool = RedisPool(config)
        self.ownPrefix = ownPrefix
    }

    /// Connects once (the start-up check) and starts the invalidation subscriber.
    func start() throws(RedisError) {
        let c = RedisConnection(pool.config)
        try c.connect()
        c.disconnect()
        subscriber.withLock { s in
            guard s == nil else { return }
            s = RedisSubscriber(config: pool.config, channels: [channel], name: "ul-inval", onState: { [self] up, why in
                // Messages may have been missed while the subscription was down: forget the cache.
                if up {
                    for t in self.tables.withLock({ Array($0.values) }) { t.clearCache() }
                    self.live.store(true, ordering: .releasing)
                    self.logger.info("usrloc: subscribed to \(self.channel) on Redis \(self.pool.config.label)")
                } else {
                    let was = self.live.exchange(false, ordering: .acquiringAndReleasing)
                    if was || self.pool.shouldLog() {
                        self.logger.warning("usrloc: Redis subscription lost (\(why ?? "?")): lookups read Redis (or the cache while it is down)")
                    }
                }
            }, onMessage: { [self] _, payload in
                self.invalidate(payload)
            })
        }
    }

    func stop() {
        subscriber.withLock { $0?.stop(); $0 = nil }
        live.store(false, ordering: .releasing)
    }

    /// Whether this instance pings `c` (NAT keepalives): its server_id when one is set, else this run's ruid prefix.
    @inline(__always) func owns(_ c: LocationContact) -> Bool {
        serverID != 0 ? c.serverId == serverID : c.ruid.hasPrefix(ownPrefix)
    }

    func register(_ t: LocationTable) { tables.withLock { $0[t.name] = t } }

    /// `<table>\t<version>\t<aor>`: drops the cached AoR unless the cache already holds that version or newer.
    func invalidate(_ payload: [UInt8]) {
        let parts = payload.split(separator: UInt8(ascii: "\t"), maxSplits: 2, omittingEmptySubsequences: false)
        guard parts.count == 3, let v = Int(String(decoding: parts[1], as: UTF8.self)) else { return }
        let table = String(decoding: parts[0], as: UTF8.self), aor = String(decoding: parts[2], as: UTF8.self)
        guard let t = tables.withLock({ $0[table] }) else { return }
        t.invalidate(aor, version: v)
    }

    static func key(_ table: String, _ aor: String) -> [UInt8] { Array("ul:\(table):\(aor)".utf8) }
    static func lockKey(_ table: String, _ aor: String) -> [UInt8] { Array("ul-lock:\(table):\(aor)".utf8) }

    /// After repeated conflicts a saver takes the AoR's lock (SET NX, 1 s lease): saves of the AoR
    /// without it are refused while it is held, so the holder's next save goes through (no starvation
    /// of an instance by a faster one). True when taken within `timeoutMs`.
    func lock(_ table: String, _ aor: String, token: String, timeoutMs: Int = 1500) -> Bool {
        let deadline = RedisConnection.monotonicMs() + timeoutMs
        repeat {
            do throws(RedisError) {
                let r = try pool.command([Array("SET".utf8), Self.lockKey(table, aor), Array(token.utf8), Array("NX".utf8),
                                          Array("PX".utf8), Array("1000".utf8)])
                if r == .status("OK") { return true }
            } catch { return false }
            usleep(UInt32.random(in: 200...1000))
        } while RedisConnection.monotonicMs() < deadline
        return false
    }

    static let unlockScript = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"

    func unlock(_ table: String, _ aor: String, token: String) {
        _ = try? pool.command([Array("EVAL".utf8), Array(Self.unlockScript.utf8), Array("1".utf8), Self.lockKey(table, aor), Array(token.utf8)])
    }

    private let tokens = Atomic<Int>(0)
    func newToken() -> String { ownPrefix + "lock-" + String(tokens.wrappingAdd(1, ordering: .relaxed).newValue) }

    /// Reads an AoR: its version (0: none) and its valid contacts, in lookup order.
    func fetch(_ table: String, _ aor: String, now: Int) throws(RedisError) -> (version: Int, contacts: [LocationContact]) {
        cacheMisses.wrappingAdd(1, ordering: .relaxed)
        let r = try pool.command([Array("HGETALL".utf8), Self.key(table, aor)])
        if case .error(let e) = r { throw RedisError(.badReply, "HGETALL: \(e)") }
        return Self.parse(r.elements, now: now)
    }

    /// An AoR's HGETALL reply as (version, valid contacts in lookup order).
    static func parse(_ e: [RedisReply], now: Int) -> (version: Int, contacts: [LocationContact]) {
        var version = 0
        var list: [LocationContact] = []
        var i = 0
        while i + 1 < e.count {
            defer { i += 2 }
            guard case .string(let f) = e[i], case .string(let v) = e[i + 1] else { continue }
            if f == Array("_v".utf8) { version = Int(String(decoding: v, as: UTF8.self)) ?? 0; continue }
            if let c = ContactCodec.decode(v), c.isValid(at: now) { list.append(c) }
        }
        LocationTable.sort(&list)
        return (version, list)
    }

    /// Stored (new version, contacts left), or a conflict with the AoR as it is now (version, contacts).
    enum Outcome { case stored(Int, Int), conflict(Int, [LocationContact]) }

    /// The compare-and-set save script (see the type's documentation).
    static let saveScript = """
        local cur = redis.call('HGET', KEYS[1], '_v') or '0'
        local lock = redis.call('GET', KEYS[3])
        if cur ~= ARGV[1] or (lock and lock ~= ARGV[7]) then return {0, cur, redis.call('HGETALL', KEYS[1])} end
        if lock then redis.call('DEL', KEYS[3]) end
        local ndel = tonumber(ARGV[6])
        for i = 8, 7 + ndel do redis.call('HDEL', KEYS[1], ARGV[i]) end
        for i = 8 + ndel, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
        local now = tonumber(ARGV[2])
        local all = redis.call('HGETALL', KEYS[1])
        local maxe, n = 0, 0
        for i = 1, #all, 2 do
          if all[i] ~= '_v' then
            local e = tonumber(string.match(all[i + 1], '^(%d+)')) or 0
            if e <= now then redis.call('HDEL', KEYS[1], all[i]) else
              n = n + 1
              if e > maxe then maxe = e end
            end
          end
        end
        local v = redis.call('INCR', KEYS[2])
        if n == 0 then redis.call('DEL', KEYS[1]) else
          redis.call('HSET', KEYS[1], '_v', v)
          redis.call('EXPIREAT', KEYS[1], maxe)
        end
        redis.call('PUBLISH', ARGV[3], ARGV[4] .. '\\t' .. v .. '\\t' .. ARGV[5])
        return {1, v, n}
        """

    /// Applies upserts and deletes to an AoR if its version is still `expected`.
    func store(_ table: String, _ aor: String, expected: Int, now: Int, upserts: [LocationContact], deletes: [String],
               token: String = "") throws(RedisError) -> Outcome {
        var args: [[UInt8]] = [Array("EVAL".utf8), Array(Self.saveScript.utf8), Array("3".utf8), Self.key(table, aor),
                               Array(sequenceKey.utf8), Self.lockKey(table, aor), Array(String(expected).utf8), Array(String(now).utf8),
                               Array(channel.utf8), Array(table.utf8), Array(aor.utf8), Array(String(deletes.count).utf8),
                               Array(token.utf8)]
        for d in deletes { args.append(Array(d.utf8)) }
        for u in upserts {
            args.append(Array(u.ruid.utf8))
            args.append(ContactCodec.encode(u))
        }
        let r = try pool.command(args)
        if case .error(let e) = r { throw RedisError(.badReply, "EVAL: \(e)") }
        let e = r.elements
        guard e.count >= 2, let ok = e[0].int, let v = e[1].int else { throw RedisError(.badReply, "EVAL: unexpected reply \(r)") }
        if ok == 1 { return .stored(v, e.count > 2 ? e[2].int ?? 1 : 1) }
        let current = Self.parse(e.count > 2 ? e[2].elements : [], now: now)
        return .conflict(current.version, current.contacts)
    }

    /// After a stored save: true when `waitReplicas` replicas acknowledged it in time (or none is asked).
    func replicated() -> Bool {
        guard waitReplicas > 0 else { return true }
        do throws(RedisError) {
            // The read waits for WAIT's own timeout plus the usual margin, and a WAIT whose connection
            // broke is not sent again on a new connection (it would acknowledge at once: that
            // connection wrote nothing).
            let r = try pool.command([Array("WAIT".utf8), Array(String(waitReplicas).utf8), Array(String(waitTimeoutMs).utf8)],
                                     timeoutMs: waitTimeoutMs + pool.config.commandTimeoutMs, retry: false)
            let n = r.int ?? 0
            if n >= waitReplicas { return true }
            logger.error("usrloc: only \(n) of \(waitReplicas) Redis replicas acknowledged a save within \(waitTimeoutMs) ms (redis_wait_replicas): answered 500")
        } catch {
            logger.error("usrloc: WAIT on Redis \(pool.config.label): \(error.message)")
        }
        return false
    }

    // MARK: periodic sweep (one instance at a time)

    /// The sweep's lock (SET NX PX with this instance's token) and the mark a finished sweep leaves for
    /// `timer_interval` seconds, so the cluster sweeps once per interval whatever the number of instances.
    static let sweepLockKey = "ul-sweep:lock"
    static let sweepMarkKey = "ul-sweep:done"
    /// Lease of the sweep lock; the sweeper renews it on every step, so a sweeper that dies frees the
    /// lock within this time.
    static let sweepLeaseMs = 30_000
    /// Keys asked of each SCAN step (one prune EVAL per step over the keys it returned).
    static let sweepBatch = 200
    /// Time one housekeeping tick may spend sweeping; a big table is swept over several ticks.
    static let sweepBudgetMs = 100

    /// Contacts removed by this instance's sweeps, sweeps it completed.
    let sweptContacts = Atomic<Int>(0)
    let sweepsDone = Atomic<Int>(0)

    struct SweepState {
        var token: String?
        var tables: [String] = []
        var table = 0
        var cursor = "0"
        var swept = 0
    }
    private let sweepState = Mutex<SweepState>(SweepState())

    static let sweepAcquireScript = """
        if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
        if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
        return 0
        """
    static let sweepRenewScript = """
        if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
        return 0
        """
    /// Compare-and-delete: only the holder's token releases the lock (and leaves the mark).
    static let sweepReleaseScript = """
        if redis.call('GET', KEYS[1]) == ARGV[1] then
          redis.call('DEL', KEYS[1])
          if tonumber(ARGV[2]) > 0 then redis.call('SET', KEYS[2], '1', 'PX', ARGV[2]) end
          return 1
        end
        return 0
        """
    /// Prunes the AoR keys of one SCAN step, each atomically (one script): expired contacts are removed,
    /// a changed AoR gets a new version, its key's EXPIREAT follows its latest contact (a key left with
    /// no contact is deleted), and its invalidation is published. KEYS[1] is the version counter.
    /// Returns {contacts removed, AoRs changed}.
    static let sweepPruneScript = """
        local now, plen = tonumber(ARGV[1]), tonumber(ARGV[4])
        local removed, changed = 0, 0
        for k = 2, #KEYS do
          local key = KEYS[k]
          local all = redis.call('HGETALL', key)
          local maxe, n, gone = 0, 0, 0
          for i = 1, #all, 2 do
            if all[i] ~= '_v' then
              local e = tonumber(string.match(all[i + 1], '^(%d+)')) or 0
              if e <= now then redis.call('HDEL', key, all[i]); gone = gone + 1 else
                n = n + 1
                if e > maxe then maxe = e end
              end
            end
          end
          if gone > 0 or (n == 0 and #all > 0) then
            local v = redis.call('INCR', KEYS[1])
            if n == 0 then redis.call('DEL', key) else
              redis.call('HSET', key, '_v', v)
              redis.call('EXPIREAT', key, maxe)
            end
            redis.call('PUBLISH', ARGV[2], ARGV[3] .. '\\t' .. v .. '\\t' .. string.sub(key, plen + 1))
            removed = removed + gone
            changed = changed + 1
          elseif n > 0 and redis.call('TTL', key) == -1 then
            redis.call('EXPIREAT', key, maxe)
          end
        end
        return {removed, changed}
        """

    /// `*`, `?`, `[`, `]` and `\` escaped for a SCAN MATCH pattern.
    static func globEscaped(_ s: String) -> String {
        var out = ""
        for ch in s {
            if ch == "*" || ch == "?" || ch == "[" || ch == "]" || ch == "\\" { out.append("\\") }
            out.append(ch)
        }
        return out
    }

    /// One housekeeping tick of the sweep (the usrloc timer calls it every second). Without the lock:
    /// tries to take it (refused while another instance holds it or a sweep finished less than
    /// `intervalSeconds` ago). With it: SCANs on from where the last tick stopped, one prune EVAL per
    /// batch, for at most `sweepBudgetMs`; at the end of the last table releases the lock
    /// (compare-and-delete) and leaves the mark. Returns the contacts removed in this tick.
    @discardableResult
    func sweepTick(tables names: [String], now: Int, intervalSeconds: Int) -> Int {
        sweepState.withLock { st in
            do throws(RedisError) {
                if let token = st.token {
                    let r = try pool.command([Array("EVAL".utf8), Array(Self.sweepRenewScript.utf8), Array("1".utf8),
                                              Array(Self.sweepLockKey.utf8), Array(token.utf8), Array(String(Self.sweepLeaseMs).utf8)])
                    if r.int != 1 {
                        logger.warning("usrloc: the sweep lock was lost (lease ran out): sweep abandoned")
                        st = SweepState()
                        return 0
                    }
                } else {
                    guard !names.isEmpty else { return 0 }
                    let token = newToken()
                    let r = try pool.command([Array("EVAL".utf8), Array(Self.sweepAcquireScript.utf8), Array("2".utf8),
                                              Array(Self.sweepLockKey.utf8), Array(Self.sweepMarkKey.utf8), Array(token.utf8),
                                              Array(String(Self.sweepLeaseMs).utf8)])
                    guard r.int == 1 else { return 0 }
                    st = SweepState(token: token, tables: names.sorted())
                }
                let start = RedisConnection.monotonicMs()
                var removed = 0
                while st.table < st.tables.count {
                    let table = st.tables[st.table]
                    let prefix = "ul:\(table):"
                    let r = try pool.command("SCAN", st.cursor, "MATCH", Self.globEscaped(prefix) + "*", "COUNT", String(Self.sweepBatch))
                    let e = r.elements
                    guard e.count == 2, let next = e[0].text else { throw RedisError(.badReply, "SCAN: \(r)") }
                    let keys: [[UInt8]] = e[1].elements.compactMap { if case .string(let b) = $0 { b } else { nil } }
                    if !keys.isEmpty {
                        var args: [[UInt8]] = [Array("EVAL".utf8), Array(Self.sweepPruneScript.utf8), Array(String(keys.count + 1).utf8),
                                               Array(sequenceKey.utf8)]
                        args.append(contentsOf: keys)
                        args.append(Array(String(now).utf8))
                        args.append(Array(channel.utf8))
                        args.append(Array(table.utf8))
                        args.append(Array(String(prefix.utf8.count).utf8))
                        let p = try pool.command(args)
                        if case .error(let m) = p { throw RedisError(.badReply, "sweep EVAL: \(m)") }
                        removed += p.elements.first?.int ?? 0
                    }
                    if next == "0" { st.table += 1; st.cursor = "0" } else { st.cursor = next }
                    if RedisConnection.monotonicMs() - start >= Self.sweepBudgetMs { break }
                }
                st.swept += removed
                sweptContacts.wrappingAdd(removed, ordering: .relaxed)
                if st.table >= st.tables.count, let token = st.token {
                    _ = try pool.command([Array("EVAL".utf8), Array(Self.sweepReleaseScript.utf8), Array("2".utf8),
                                          Array(Self.sweepLockKey.utf8), Array(Self.sweepMarkKey.utf8), Array(token.utf8),
                                          Array(String(intervalSeconds * 1000).utf8)])
                    sweepsDone.wrappingAdd(1, ordering: .relaxed)
                    if st.swept > 0 { logger.info("usrloc: sweep removed \(st.swept) expired contacts") }
                    st = SweepState()
                }
                return removed
            } catch {
                if pool.shouldLog() { logger.error("usrloc: sweep on Redis \(pool.config.label): \(error.message)") }
                // The lock (if held) runs out by itself; the next sweep starts over.
                st = SweepState()
                return 0
            }
        }
    }

    /// Every AoR of a table with its valid contacts (SCAN; for ul.dump and unregister by ruid).
    func scan(_ table: String, now: Int) throws(RedisError) -> [(aor: String, contacts: [LocationContact])] {
        var cursor = "0"
        let prefix = "ul:\(table):"
        var aors: [String] = []
        repeat {
            let r = try pool.command("SCAN", cursor, "MATCH", prefix + "*", "COUNT", "1000")
            let e = r.elements
            guard e.count == 2, let next = e[0].text else { throw RedisError(.badReply, "SCAN: \(r)") }
            cursor = next
            for k in e[1].elements {
                if let s = k.text, s.hasPrefix(prefix) { aors.append(String(s.dropFirst(prefix.count))) }
            }
        } while cursor != "0"
        var out: [(String, [LocationContact])] = []
        for a in Set(aors).sorted() {
            let (_, list) = try fetch(table, a, now: now)
            if !list.isEmpty { out.append((a, list)) }
        }
        return out
    }
}

/// A contact as one hash field value: tab-separated, absolute expiry first (the save script reads
/// it), `\` escapes for tab, newline and backslash; empty optional values are nil.
enum ContactCodec {
    static let fieldCount = 23

    static func encode(_ c: LocationContact) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(256)
        func put(_ s: String) {
            if !out.isEmpty { out.append(9) }
            for b in s.utf8 {
                switch b {
                case 9: out.append(92); out.append(UInt8(ascii: "t"))
                case 10: out.append(92); out.append(UInt8(ascii: "n"))
                case 92: out.append(92); out.append(92)
                default: out.append(b)
                }
            }
        }
        func put(_ i: Int) { put(String(i)) }
        out.append(contentsOf: String(c.expires).utf8)
        put(c.ruid); put(c.aor); put(c.username); put(c.domain ?? ""); put(c.contact); put(c.received ?? "")
        put(c.path ?? ""); put(c.q); put(c.callid); put(c.cseq); put(c.lastModified); put(c.flags); put(c.cflags)
        put(c.userAgent); put(c.socket ?? ""); put(c.methods); put(c.instance ?? ""); put(c.regId); put(c.serverId)
        put(c.connectionId); put(c.keepalive); put(c.partition)
        return out
    }

    static func decode(_ bytes: [UInt8]) -> LocationContact? {
        var fields: [String] = []
        fields.reserveCapacity(fieldCount)
        var cur: [UInt8] = []
        var escape = false
        for b in bytes {
            if escape {
                cur.append(b == UInt8(ascii: "t") ? 9 : b == UInt8(ascii: "n") ? 10 : b)
                escape = false
            } else if b == 92 {
                escape = true
            } else if b == 9 {
                fields.append(String(decoding: cur, as: UTF8.self))
                cur.removeAll(keepingCapacity: true)
            } else {
                cur.append(b)
            }
        }
        fields.append(String(decoding: cur, as: UTF8.self))
        guard fields.count == fieldCount else { return nil }
        func int(_ i: Int) -> Int? { Int(fields[i]) }
        func opt(_ i: Int) -> String? { fields[i].isEmpty ? nil : fields[i] }
        guard let expires = int(0), let q = int(8), let cseq = int(10), let modified = int(11), let flags = int(12),
              let cflags = int(13), let methods = int(16), let regId = int(18), let serverId = int(19),
              let conn = int(20), let ka = int(21), let part = int(22) else { return nil }
        return LocationContact(ruid: fields[1], aor: fields[2], username: fields[3], domain: opt(4), contact: fields[5],
                               received: opt(6), path: opt(7), expires: expires, q: q, callid: fields[9], cseq: cseq,
                               lastModified: modified, flags: flags, cflags: cflags, userAgent: fields[14], socket: opt(15),
                               methods: methods, instance: opt(17), regId: regId, serverId: serverId, connectionId: conn,
                               keepalive: ka, partition: part)
    }
}
