import StarlingKEMI
import StarlingRedis
import Synchronization

/// usrloc: the location tables the registrar saves into (`ModuleRuntime.usrloc`), its parameters, the
/// ul.* control methods and the contact statistics. It has no KSR functions of its own.
enum UsrlocModule: KSRModule {
    static let name = "usrloc"
    static let summary = "Location tables (contacts by AoR), optionally persisted in the embedded database."

    static let dbURL = ModuleParameter.optionalStr(
        "usrloc", "db_url",
        "The database contacts are written to: sqlite:///path/to/file.db, or (db_mode 3) redis://HOST:PORT/DB or redis+sentinel://S1:26379,S2:26379/MASTER/DB.") { url in
        guard url.hasPrefix("redis") else { return nil }
        return RedisClientConfig.parseURL(url) == nil ? "cannot parse '\(url)' (expected redis://HOST:PORT/DB or redis+sentinel://HOST:PORT,HOST:PORT/MASTERNAME/DB)" : nil
    }
    static let dbMode = ModuleParameter.int("usrloc", "db_mode", 0, in: 0...3,
                                            "0 memory only, 1 write-through, 2 write-back, 3 DB only (Redis: shared by every instance; SQLite: served as write-through).")
    static let useDomain = ModuleParameter.flag("usrloc", "use_domain", false, "AoRs are user@domain instead of user.")
    static let timerInterval = ModuleParameter.int("usrloc", "timer_interval", 60, "Seconds between expiry runs and write-back flushes; usrloc on Redis: between sweeps of expired contacts (one instance of the cluster sweeps per interval).") {
        $0 > 0 ? nil : "expected a positive number of seconds"
    }
    static let natBflag = ModuleParameter.int("usrloc", "nat_bflag", -1, in: -1...31, "The branch flag marking NATed contacts (-1: none).")
    static let cseqDelay = ModuleParameter.int("usrloc", "cseq_delay", 20,
                                               "Seconds within which a REGISTER with the same Call-ID and CSeq is a retransmission.")
    static let preload = ModuleParameter.list("usrloc", "preload", "Location tables created at start (the registrar creates `location` anyway).")
    static let redisWaitReplicas = ModuleParameter.int("usrloc", "redis_wait_replicas", 0, in: 0...16,
        "usrloc on Redis: a REGISTER is answered 200 only once this many replicas have the save (WAIT), else 500. Starling only.")
    static let redisWaitTimeout = ModuleParameter.int("usrloc", "redis_wait_timeout", 500,
        "usrloc on Redis: milliseconds redis_wait_replicas waits for the replicas. Starling only.") {
        $0 > 0 ? nil : "expected a positive number of milliseconds"
    }
    static let parameters = [dbURL.info, dbMode.info, useDomain.info, timerInterval.info, natBflag.info, cseqDelay.info, preload.info,
                             redisWaitReplicas.info, redisWaitTimeout.info]

    static func exports(_ runtime: ModuleRuntime) -> [KemiExport] { [] }

    static func start(_ runtime: ModuleRuntime) throws(ModuleStartError) {
        if let url = runtime.config[dbURL], url.hasPrefix("redis") {
            guard let redis = RedisClientConfig.parseURL(url) else {
                throw ModuleStartError(key: "modparam.usrloc.db_url", "cannot parse '\(url)' (expected redis://HOST:PORT/DB)")
            }
            guard runtime.config[dbMode] == 3, let shared = runtime.usrloc.shared else {
                throw ModuleStartError(key: "modparam.usrloc.db_mode", "a Redis db_url needs db_mode = 3 (DB only)")
            }
            do throws(RedisError) { try shared.start() } catch {
                throw ModuleStartError(key: "modparam.usrloc.db_url", "Redis \(redis.label): \(error.message)")
            }
        }
        for name in runtime.config[preload] { _ = runtime.usrloc.table(name) }
    }

    static let rpcMethods = [
        ModuleRPCMethod("ul.dump", "Every usrloc table with its AORs and contacts.") { rt, params throws(RPCFault) in
            // Kamailio accepts an optional "brief" flag; both forms get the full contact list here.
            if params.count > 1 { throw RPCFault(RPCFault.invalidParams, "Invalid params", data: "ul.dump takes at most one parameter") }
            let now = rt.clock.unixSeconds
            let domains: [RPCValue] = rt.usrloc.allTables.map { t in
                let records = t.snapshot()
                let aors: [RPCValue] = records.map { r in
                    .object(["Info": .object(["AoR": .string(r.aor), "HashID": .int(aorHash(r.aor)),
                                              "Contacts": .array(r.contacts.map { .object(["Contact": contactInfo($0, now: now)]) })])])
                }
                return .object(["Domain": .object(["Domain": .string(t.name), "Size": .int(64), "AoRs": .array(aors),
                                                   "Stats": .object(["Records": .int(records.count), "Max-Slots": .int(64)])])])
            }
            return .object(["Domains": .array(domains)])
        },
        ModuleRPCMethod("ul.lookup", "ul.lookup TABLE AOR: the contacts of one AOR.") { rt, params throws(RPCFault) in
            let (t, aor) = try aorParams(rt, params, "ul.lookup")
            let now = rt.clock.unixSeconds
            return .object(["AoR": .string(aor), "Contacts": .array(t.contacts(aor).map { .object(["Contact": contactInfo($0, now: now)]) })])
        },
        ModuleRPCMethod("ul.rm", "ul.rm TABLE AOR: removes every contact of an AOR.") { rt, params throws(RPCFault) in
            let (t, aor) = try aorParams(rt, params, "ul.rm")
            rt.usrloc.removeAll(t, aor)
            return .object([:])
        },
    ]

    static let statistics = [
        ModuleStatistic("usrloc:location-contacts", metric: "starling_registrations_active", .gauge,
                        "usrloc contacts in memory (all location tables).") { $0.usrloc.contactCount },
        ModuleStatistic("usrloc:location-expires", metric: "starling_registrations_expired_total", .counter,
                        "usrloc contacts removed because they expired.") { $0.usrloc.expiredCount },
        ModuleStatistic("usrloc:redis-cache-hits", metric: "starling_usrloc_redis_cache_hits_total", .counter,
                        "Lookups served from the local cache (usrloc on Redis).") { $0.usrloc.shared?.cacheHits.load(ordering: .relaxed) ?? 0 },
        ModuleStatistic("usrloc:redis-reads", metric: "starling_usrloc_redis_reads_total", .counter,
                        "Lookups and saves that read the AoR from Redis (usrloc on Redis).") { $0.usrloc.shared?.cacheMisses.load(ordering: .relaxed) ?? 0 },
        ModuleStatistic("usrloc:redis-save-conflicts", metric: "starling_usrloc_redis_save_conflicts_total", .counter,
                        "Saves retried because another instance changed the AoR first (usrloc on Redis).") { $0.usrloc.shared?.conflicts.load(ordering: .relaxed) ?? 0 },
        ModuleStatistic("usrloc:redis-swept-contacts", metric: "starling_usrloc_redis_swept_contacts_total", .counter,
                        "Expired contacts this instance's sweeps removed from Redis (usrloc on Redis).") { $0.usrloc.shared?.sweptContacts.load(ordering: .relaxed) ?? 0 },
        ModuleStatistic("usrloc:redis-sweeps", metric: "starling_usrloc_redis_sweeps_total", .counter,
                        "Sweeps of expired contacts this instance completed (usrloc on Redis; one instance of the cluster sweeps per timer_interval).") { $0.usrloc.shared?.sweepsDone.load(ordering: .relaxed) ?? 0 },
    ]

    /// TABLE and AOR of ul.lookup / ul.rm: the table must exist and the AOR have contacts.
    static func aorParams(_ rt: ModuleRuntime, _ params: RPCParameters, _ method: String) throws(RPCFault) -> (LocationTable, String) {
        guard params.count == 2, case .string(let table) = params.values[0], case .string(let aorText) = params.values[1] else {
            throw RPCFault(RPCFault.invalidParams, "Invalid params", data: "\(method) TABLE AOR")
        }
        let ul = rt.usrloc
        guard ul.allTables.contains(where: { $0.name == table }) else { throw RPCFault(500, "Domain not found", data: table) }
        // The AOR as the registrar keys it: `user` (or `user@domain` with use_domain); a SIP URI is accepted too.
        var aor = aorText
        if aor.hasPrefix("sip:") || aor.hasPrefix("sips:") { aor = String(aor.drop(while: { $0 != ":" }).dropFirst()) }
        if !ul.useDomain, let at = aor.firstIndex(of: "@") { aor = String(aor[..<at]) }
        let t = ul.table(table)
        guard !t.contacts(aor).isEmpty else { throw RPCFault(404, "AOR not found", data: aor) }
        return (t, aor)
    }

    static func aorHash(_ aor: String) -> Int {
        var h: UInt32 = 0
        for b in aor.utf8 { h = h &* 31 &+ UInt32(b) }
        return Int(h)
    }

    /// One contact as Kamailio's usrloc RPC prints it ("[not set]" for empty values).
    static func contactInfo(_ c: LocationContact, now: Int) -> RPCValue {
        func opt(_ s: String?) -> RPCValue { .string((s ?? "").isEmpty ? "[not set]" : s!) }
        return .object([
            "Address": .string(c.contact), "Expires": .int(c.expires - now), "Q": .int(c.q), "Call-ID": .string(c.callid),
            "CSeq": .int(c.cseq), "User-Agent": .string(c.userAgent), "Received": opt(c.received), "Path": opt(c.path),
            "State": .string("CS_SYNC"), "Flags": .int(c.flags), "CFlags": .int(c.cflags), "Socket": opt(c.socket),
            "Methods": .int(c.methods), "Ruid": .string(c.ruid), "Instance": opt(c.instance), "Reg-Id": .int(c.regId),
            "Server-Id": .int(c.serverId), "Tcpconn-Id": .int(c.connectionId), "Keepalive": .int(c.keepalive),
            "Last-Keepalive": .int(c.lastModified), "KA-Roundtrip": .int(0), "Last-Modified": .int(c.lastModified),
        ])
    }
}
