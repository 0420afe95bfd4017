public import StarlingKEMI

/// Every export table Starling implements. The server filters them by the configured modules.
public enum KSRModules {
    /// Modules this build implements (beyond the always-loaded core, pv, hdr and x).
    /// Kamailio `loadmodule` names whose KEMI table has another name (kemix exports `KSR.kx`).
    public static let kemiName: [String: String] = ["kemix": "kx"]

    /// The KSR table names for configured module names (`kemix` → `kx`).
    public static func tableNames(_ modules: [String]) -> Set<String> {
        Set(modules.map { kemiName[$0] ?? $0 })
    }

    public static let available: [String] = ["sl", "maxfwd", "sanity", "xlog", "kx", "siputils", "corex", "textops", "textopsx", "tm", "tmx", "rr", "auth", "auth_db", "htable", "pike", "permissions", "nathelper", "registrar", "usrloc", "http_client", "enum", "uac", "tls", "websocket"]

    /// All exports, in registration order (core first, as Kamailio does), over a new runtime.
    /// - Parameter tm: the transaction store the `tm`/`tmx` exports use (one per process; a new one
    ///   when not given).
    public static func exports(_ config: ModuleConfiguration = ModuleConfiguration(), tm: TMStore? = nil) -> [KemiExport] {
        exports(ModuleRuntime(config: config, tm: tm))
    }

    /// All exports over the process-wide module state `runtime` (shared tables, clock, database).
    public static func exports(_ runtime: ModuleRuntime) -> [KemiExport] {
        let config = runtime.config
        return CoreModule.exports() + CoreModule.moreExports() + PVModule.exports() + HdrModule.exports() + SLModule.exports()
            + MaxfwdModule.exports(config) + SanityModule.exports(config) + XLogModule.exports() + KxModule.exports()
            + SipUtilsModule.exports() + CorexModule.exports() + TextopsModule.exports() + TextopsxModule.exports()
            + TMModule.exports(runtime.tm) + RRModule.exports(config) + AuthModule.exports(runtime)
            + AuthDBModule.exports(runtime)
            + NathelperModule.exports(config) + PermissionsModule.exports(runtime) + HtableModule.exports(runtime)
            + PikeModule.exports(runtime) + RegistrarModule.exports(runtime)
            + HTTPClientModule.exports(config) + EnumModule.exports(config) + UACModule.exports(runtime) + TLSModule.exports() + WebSocketModule.exports()
    }
}
