public import StarlingKEMI

/// The modules Starling implements: one list, read by configuration validation, the server's start,
/// the control API, `/metrics`, the generated references and the completeness tests.
public enum KSRModules {
    /// Every module, in registration order (core first, as Kamailio registers them). Adding a module
    /// is adding its type here (docs/Modules.md).
    public static let all: [any KSRModule.Type] = [
        CoreModule.self, PVModule.self, HdrModule.self,
        SLModule.self, MaxfwdModule.self, SanityModule.self, XLogModule.self, KxModule.self, SipUtilsModule.self,
        CorexModule.self, TextopsModule.self, TextopsxModule.self, TMModule.self, TMXModule.self, RRModule.self,
        AuthModule.self, AuthDBModule.self, NathelperModule.self, PermissionsModule.self, HtableModule.self,
        PikeModule.self, RegistrarModule.self, UsrlocModule.self, HTTPClientModule.self, EnumModule.self,
        UACModule.self, DispatcherModule.self, TLSModule.self, WebSocketModule.self, RtpengineModule.self,
        AppLuaModule.self, DialogModule.self, AccModule.self, NdbRedisModule.self, PathModule.self,
        AsyncModule.self, HTTPAsyncClientModule.self, DiameterModule.self, ImsDiameterServerModule.self,
    ]

    /// Modules a configuration can list in `core.modules` (those not always loaded), by Kamailio name.
    public static let available: [String] = all.filter { !$0.alwaysLoaded }.map { $0.name }

    /// The module registered under a Kamailio module name.
    public static func module(named name: String) -> (any KSRModule.Type)? { byName[name] }

    private static let byName: [String: any KSRModule.Type] = {
        var m: [String: any KSRModule.Type] = [:]
        for t in all { m[t.name] = t }
        return m
    }()

    /// The KSR table names for configured module names (`kemix` → `kx`); unknown names stay as given.
    public static func tableNames(_ modules: [String]) -> Set<String> {
        Set(modules.map { byName[$0]?.kemiName ?? $0 })
    }

    /// Whether `name` is the KSR table name of a module (`kx`), which `core.modules` accepts too.
    public static func isTableName(_ name: String) -> Bool { all.contains { $0.kemiName == name && !name.isEmpty } }

    /// The modules a `core.modules` list loads, in registration order: the listed ones (by Kamailio
    /// or table name), their dependencies and the always-loaded ones. An empty list loads every module.
    public static func loaded(_ configured: [String]) -> [any KSRModule.Type] {
        if configured.isEmpty { return all }
        var names = Set<String>()
        var pending = configured.map { n in byName[n]?.name ?? all.first { $0.kemiName == n }?.name ?? n }
        while let n = pending.popLast() {
            guard names.insert(n).inserted, let m = byName[n] else { continue }
            pending += m.dependencies
        }
        return all.filter { $0.alwaysLoaded || names.contains($0.name) }
    }

    // MARK: Parameters

    /// A module's full parameter table: the parameters it implements, then the Kamailio 5.6 parameters
    /// it accepts without effect (so Kamailio configurations load), by name.
    public static func parameters(of module: String) -> [ModuleParameterInfo] {
        parameterTables[module]?.rows ?? []
    }

    /// The row of `module`'s parameter `name`, or an error naming what is wrong (unknown module,
    /// unknown parameter) and what would be accepted.
    public static func parameter(_ module: String, _ name: String) throws(ModuleParameterError) -> ModuleParameterInfo {
        guard let table = parameterTables[module] else {
            throw ModuleParameterError(module: module, parameter: nil,
                                       "unknown module \"\(module)\" (Starling has: \(available.sorted().joined(separator: ", ")))")
        }
        guard let row = table.byName[name] else {
            let names = table.rows.map(\.name)
            let hint = names.isEmpty ? "it has no parameters" : "expected one of \(names.joined(separator: ", "))"
            throw ModuleParameterError(module: module, parameter: name, "unknown parameter of module \(module) (\(hint))")
        }
        return row
    }

    /// Whether a key's row is in its module's table (typed keys must be listed in `parameters`).
    public static func isDeclared(_ info: ModuleParameterInfo) -> Bool {
        guard let row = parameterTables[info.module]?.byName[info.name] else { return false }
        return row.implemented && row.kind == info.kind
    }

    private struct ParameterTable: Sendable {
        var rows: [ModuleParameterInfo] = []
        var byName: [String: ModuleParameterInfo] = [:]
    }

    private static let parameterTables: [String: ParameterTable] = {
        var tables: [String: ParameterTable] = [:]
        for m in all {
            var t = ParameterTable()
            for p in m.parameters where t.byName[p.name] == nil {
                t.rows.append(p)
                t.byName[p.name] = p
            }
            for p in Kamailio56Parameters.rows(m.name) where t.byName[p.name] == nil {
                t.rows.append(p)
                t.byName[p.name] = p
            }
            tables[m.name] = t
        }
        return tables
    }()

    // MARK: Exports

    /// All exports, in registration order, over a new runtime (docs, `starling api`, tests).
    public static func exports(_ config: ModuleConfiguration = ModuleConfiguration()) -> [KemiExport] {
        exports(ModuleRuntime(config: config))
    }

    /// All exports over the process-wide module state `runtime`: each module's rows for its own table.
    public static func exports(_ runtime: ModuleRuntime) -> [KemiExport] {
        all.flatMap { m in m.exports(runtime).filter { $0.module == m.kemiName } }
    }

    // MARK: RPC and statistics

    /// Every module's control API methods, with the module that brings them.
    public static var rpcMethods: [(module: String, method: ModuleRPCMethod)] {
        all.flatMap { m in m.rpcMethods.map { (m.name, $0) } }
    }

    /// Every module's statistics, with the module that keeps them.
    public static var statistics: [(module: String, statistic: ModuleStatistic)] {
        all.flatMap { m in m.statistics.map { (m.name, $0) } }
    }
}
