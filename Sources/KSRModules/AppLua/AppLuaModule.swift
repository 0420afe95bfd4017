import StarlingKEMI

/// app_lua: Kamailio's Lua engine module. Starling is the Lua engine, so the module exists to let a
/// Kamailio configuration that loads it (and sets its parameters) start; the script is `[core] script`.
enum AppLuaModule: KSRModule {
    static let name = "app_lua"
    static let summary = "Kamailio's Lua engine; in Starling the script is `[core] script` and reloads by itself."
    static let parameters = [
        ModuleParameterInfo(module: "app_lua", name: "load", kind: .str, defaultText: "unset", repeatable: true,
                            summary: "Kamailio's script path; Starling runs `[core] script` instead.", implemented: false),
        ModuleParameterInfo(module: "app_lua", name: "reload", kind: .int, defaultText: "0",
                            summary: "Kamailio's reload switch; Starling reloads a changed script by itself.", implemented: false),
        ModuleParameterInfo(module: "app_lua", name: "log_mode", kind: .int, defaultText: "0",
                            summary: "Kamailio's logging of loaded scripts.", implemented: false),
    ]
    static func exports(_ runtime: ModuleRuntime) -> [KemiExport] { [] }
}
