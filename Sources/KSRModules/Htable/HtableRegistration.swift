import StarlingKEMI
import StarlingRedis
import Glibc

/// htable's registration: the `htable` definitions, the expiry timer, Kamailio's htable.* methods.
/// Faults carry Kamailio's code 500 and its texts ("No such htable", "Key name doesn't exist in htable.").
extension HtableModule: KSRModule {
    static let name = "htable"
    static let summary = "Named hash tables shared by all workers, with expiry."

    static let htable = ModuleParameter.list("htable", "htable", "A table: `name=>size=N;autoexpire=S;initval=I;updateexpire=0|1`.") {
        HtableDefinition.parse($0) == nil ? "bad definition (expected \"name=>size=N;autoexpire=S;...\")" : nil
    }
    static let timerInterval = ModuleParameter.int("htable", "timer_interval", 20, "Seconds between expiry runs.") {
        $0 > 0 ? nil : "expected a positive number of seconds"
    }
    static let redisURL = ModuleParameter.optionalStr(
        "htable", "redis_url", "The Redis of tables defined with `redis=1` (redis://HOST:PORT/DB or redis+sentinel://...). Starling only.") { url in
        RedisClientConfig.parseURL(url) == nil ? "cannot parse '\(url)' (expected redis://HOST:PORT/DB)" : nil
    }
    static let parameters = [htable.info, timerInterval.info, redisURL.info]

    static func start(_ runtime: ModuleRuntime) throws(ModuleStartError) {
        let shared = runtime.htables.names.compactMap(runtime.htables.table).filter { $0.definition.redis }
        guard !shared.isEmpty else { return }
        guard let pool = runtime.htables.redisPool else {
            throw ModuleStartError(key: "modparam.htable.htable", "table '\(shared[0].name)' has redis=1 but modparam.htable.redis_url is not set")
        }
        do throws(RedisError) {
            let c = RedisConnection(pool.config)
            try c.connect()
            c.disconnect()
        } catch {
            throw ModuleStartError(key: "modparam.htable.redis_url", "Redis \(pool.config.label): \(error.message)")
        }
    }

    static let rpcMethods: [ModuleRPCMethod] = [
        ModuleRPCMethod("htable.dump", "htable.dump TABLE: the items by slot (entry, size, slot: name, value, type).") { rt, p throws(RPCFault) in
            let t = try table(rt, try p.string(0, or: "No htable name given"))
            return .array(t.snapshot().map { slot in
                .object(["entry": .int(slot.slot), "size": .int(slot.items.count),
                         "slot": .array(slot.items.map { .object(itemJSON($0.key, $0.item.value)) })])
            })
        },
        ModuleRPCMethod("htable.get", "htable.get TABLE KEY: {item: {name, value, flags, expire}}.") { rt, p throws(RPCFault) in
            let missing = "Not enough parameters (htable name and key name)"
            let name = try p.string(0, or: missing), key = try p.string(1, or: missing)
            let t = try table(rt, name)
            guard let item = t.item(key) else { throw RPCFault(500, "Key name doesn't exist in htable.") }
            var out = itemJSON(key, item.value)
            out["type"] = nil
            if case .string = item.value { out["flags"] = .int(2) } else { out["flags"] = .int(0) }
            out["expire"] = .string(item.expires == 0 ? "NEVER" : localTime(item.expires))
            return .object(["item": .object(out)])
        },
        ModuleRPCMethod("htable.sets", "htable.sets TABLE KEY VALUE: set a string item.") { rt, p throws(RPCFault) in
            try set(rt, p, integer: false)
        },
        ModuleRPCMethod("htable.seti", "htable.seti TABLE KEY VALUE: set an integer item.") { rt, p throws(RPCFault) in
            try set(rt, p, integer: true)
        },
        ModuleRPCMethod("htable.delete", "htable.delete TABLE KEY: remove an item.") { rt, p throws(RPCFault) in
            let missing = "Not enough parameters (htable name & key name"
            let name = try p.string(0, or: missing), key = try p.string(1, or: missing)
            try table(rt, name).remove(key)
            return .object([:])
        },
        ModuleRPCMethod("htable.listTables", "htable.listTables: name, dbtable, dbmode, expire, updateexpire, size, dmqreplicate.") { rt, _ throws(RPCFault) in
            if rt.htables.names.isEmpty { throw RPCFault(500, "No htables") }
            return .array(rt.htables.names.compactMap(rt.htables.table).map { t in
                let ignored = t.definition.ignored
                return .object(["name": .string(t.name), "dbtable": .string(ignored["dbtable"] ?? ""),
                                "dbmode": .int(Int(ignored["dbmode"] ?? "") ?? 0), "expire": .int(t.definition.autoexpire),
                                "updateexpire": .int(t.definition.updateexpire ? 1 : 0), "size": .int(t.slotCount),
                                "dmqreplicate": .int(Int(ignored["dmqreplicate"] ?? "") ?? 0)])
            })
        },
        ModuleRPCMethod("htable.stats", "htable.stats: name, slots, all, min, max per table.") { rt, _ throws(RPCFault) in
            if rt.htables.names.isEmpty { throw RPCFault(500, "No htables") }
            return .array(rt.htables.names.compactMap(rt.htables.table).map { t in
                let sizes = t.slotSizes()
                return .object(["name": .string(t.name), "slots": .int(t.slotCount), "all": .int(sizes.reduce(0, +)),
                                "min": .int(sizes.min() ?? 0), "max": .int(sizes.max() ?? 0)])
            })
        },
        ModuleRPCMethod("htable.reload", "htable.reload TABLE: reloads from the database (Starling has none: fails as Kamailio without db_url).") { _, _ throws(RPCFault) in
            // Kamailio answers this first when no db_url is set; Starling's htables live in memory only.
            throw RPCFault(500, "No htable db_url")
        },
    ]

    static func table(_ rt: ModuleRuntime, _ name: String) throws(RPCFault) -> Htable {
        guard let t = rt.htables.table(name) else { throw RPCFault(500, "No such htable") }
        return t
    }

    static func set(_ rt: ModuleRuntime, _ p: RPCParameters, integer: Bool) throws(RPCFault) -> RPCValue {
        let missing = "Not enough parameters (htable name, key name and value)"
        let name = try p.string(0, or: missing), key = try p.string(1, or: missing), value = try p.string(2, or: missing)
        let t = try table(rt, name)
        if integer {
            guard let n = Int(value) else { throw RPCFault(500, missing) }
            t.set(key, .int(n))
        } else {
            t.set(key, .string(value))
        }
        return .object([:])
    }

    static func itemJSON(_ key: String, _ value: KemiValue) -> [String: RPCValue] {
        switch value {
        case .int(let n): return ["name": .string(key), "value": .int(n), "type": .string("int")]
        case .string(let s): return ["name": .string(key), "value": .string(s), "type": .string("str")]
        case .null: return ["name": .string(key), "value": .null, "type": .string("str")]
        }
    }

    static func localTime(_ seconds: Int) -> String {
        var t = time_t(seconds)
        var tmv = tm()
        localtime_r(&t, &tmv)
        var buf = [CChar](repeating: 0, count: 32)
        let n = strftime(&buf, 32, "%Y-%m-%d %H:%M:%S", &tmv)
        return String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
