import Foundation
#if canImport(Glibc)
import Glibc
#endif
import StarlingServer
import StarlingKEMI
import KSRModules

/// Kamailio's htable.* and permissions.* RPC methods, over the server's module state. Faults carry
/// Kamailio's code 500 and its texts ("No such htable", "Key name doesn't exist in htable.").
extension ControlAPI {
    /// Methods of modules Starling implements, by module: they answer "module not loaded" when the
    /// configuration does not load that module.
    public static let moduleMethods: [(name: String, module: String, help: String)] = [
        ("htable.dump", "htable", "htable.dump TABLE: the items by slot (entry, size, slot: name, value, type)."),
        ("htable.get", "htable", "htable.get TABLE KEY: {item: {name, value, flags, expire}}."),
        ("htable.sets", "htable", "htable.sets TABLE KEY VALUE: set a string item."),
        ("htable.seti", "htable", "htable.seti TABLE KEY VALUE: set an integer item."),
        ("htable.delete", "htable", "htable.delete TABLE KEY: remove an item."),
        ("htable.listTables", "htable", "htable.listTables: name, dbtable, dbmode, expire, updateexpire, size, dmqreplicate."),
        ("htable.stats", "htable", "htable.stats: name, slots, all, min, max per table."),
        ("htable.reload", "htable", "htable.reload TABLE: reloads from the database (Starling has none: fails as Kamailio without db_url)."),
        ("permissions.addressReload", "permissions", "permissions.addressReload: re-reads the address file."),
        ("permissions.addressDump", "permissions", "permissions.addressDump: the address entries (gid, ip, mask, port, tag)."),
    ]

    static let fault = 500

    /// Runs a module method; nil when `method` is not one.
    func callModuleMethod(_ method: String, _ params: [Any]) throws(RPCError) -> Any? {
        guard let entry = Self.moduleMethods.first(where: { $0.name == method }) else { return nil }
        guard server.registry.loadedModules.contains(entry.module) else {
            throw RPCError(RPCError.moduleNotLoaded, "module not loaded: \(entry.module)",
                           data: "\(method) needs the \(entry.module) module, which the configuration does not load")
        }
        let rt = server.runtime
        func str(_ i: Int, _ missing: String) throws(RPCError) -> String {
            guard i < params.count else { throw RPCError(Self.fault, missing) }
            if let s = params[i] as? String { return s }
            if let n = params[i] as? NSNumber { return n.stringValue }
            throw RPCError(Self.fault, missing)
        }
        func table(_ name: String) throws(RPCError) -> Htable {
            guard let t = rt.htables.table(name) else { throw RPCError(Self.fault, "No such htable") }
            return t
        }
        switch method {
        case "htable.dump":
            let t = try table(try str(0, "No htable name given"))
            return t.snapshot().map { slot -> [String: Any] in
                ["entry": slot.slot, "size": slot.items.count,
                 "slot": slot.items.map { Self.itemJSON($0.key, $0.item.value) }]
            }
        case "htable.get":
            let name = try str(0, "Not enough parameters (htable name and key name)")
            let key = try str(1, "Not enough parameters (htable name and key name)")
            let t = try table(name)
            guard let item = t.item(key) else { throw RPCError(Self.fault, "Key name doesn't exist in htable.") }
            var out = Self.itemJSON(key, item.value)
            out["type"] = nil
            if case .string = item.value { out["flags"] = 2 } else { out["flags"] = 0 }
            out["expire"] = item.expires == 0 ? "NEVER" : Self.localTime(item.expires)
            return ["item": out]
        case "htable.sets", "htable.seti":
            let missing = "Not enough parameters (htable name, key name and value)"
            let name = try str(0, missing), key = try str(1, missing), value = try str(2, missing)
            let t = try table(name)
            if method == "htable.seti" {
                guard let n = Int(value) else { throw RPCError(Self.fault, missing) }
                t.set(key, .int(n))
            } else {
                t.set(key, .string(value))
            }
            return [String: Any]()
        case "htable.delete":
            let missing = "Not enough parameters (htable name & key name"
            let name = try str(0, missing), key = try str(1, missing)
            try table(name).remove(key)
            return [String: Any]()
        case "htable.listTables":
            if rt.htables.names.isEmpty { throw RPCError(Self.fault, "No htables") }
            return rt.htables.names.compactMap(rt.htables.table).map { t -> [String: Any] in
                ["name": t.name, "dbtable": t.definition.ignored["dbtable"] ?? "", "dbmode": Int(t.definition.ignored["dbmode"] ?? "") ?? 0,
                 "expire": t.definition.autoexpire, "updateexpire": t.definition.updateexpire ? 1 : 0, "size": t.slotCount,
                 "dmqreplicate": Int(t.definition.ignored["dmqreplicate"] ?? "") ?? 0]
            }
        case "htable.stats":
            if rt.htables.names.isEmpty { throw RPCError(Self.fault, "No htables") }
            return rt.htables.names.compactMap(rt.htables.table).map { t -> [String: Any] in
                let sizes = t.slotSizes()
                return ["name": t.name, "slots": t.slotCount, "all": sizes.reduce(0, +), "min": sizes.min() ?? 0, "max": sizes.max() ?? 0]
            }
        case "htable.reload":
            // Kamailio answers this first when no db_url is set; Starling's htables live in memory only.
            throw RPCError(Self.fault, "No htable db_url")
        case "permissions.addressReload":
            guard rt.addresses.path != nil else { throw RPCError(Self.fault, "Reload failed. No address file configured (address_file)") }
            do {
                _ = try rt.addresses.reload()
            } catch {
                throw RPCError(Self.fault, "Reload failed. \(error.description)")
            }
            return "Reload OK"
        case "permissions.addressDump":
            return rt.addresses.entries.map { e -> [String: Any] in
                ["gid": e.group, "ip": Self.ipText(e.address), "mask": e.mask, "port": e.port, "tag": e.tag ?? ""]
            }
        default:
            return nil
        }
    }

    static func itemJSON(_ key: String, _ value: KemiValue) -> [String: Any] {
        switch value {
        case .int(let n): return ["name": key, "value": n, "type": "int"]
        case .string(let s): return ["name": key, "value": s, "type": "str"]
        case .null: return ["name": key, "value": NSNull(), "type": "str"]
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

    static func ipText(_ bytes: [UInt8]) -> String {
        var buf = [CChar](repeating: 0, count: 64)
        let family = bytes.count == 4 ? AF_INET : AF_INET6
        let ok = bytes.withUnsafeBytes { inet_ntop(family, $0.baseAddress, &buf, 64) } != nil
        guard ok, let end = buf.firstIndex(of: 0) else { return "" }
        return String(decoding: buf[0..<end].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
