import StarlingKEMI

extension KSRModules {
    /// The file `starling api --luals DIR` writes into DIR.
    public static let luaLSFileName = "ksr.lua"

    /// LuaLS / EmmyLua annotations (`---@meta`) for the whole `KSR` table, generated from the export
    /// tables: one class per module (`KSR.sl`, ...), a field for each module on `KSR`, and a function
    /// stub per export with typed parameters (str → string, int/long → integer) and return type
    /// (int → integer, bool → boolean, xval → any, none → nil). `KSR.x` comes from the Lua engine.
    public static func luaLSAnnotations(_ config: ModuleConfiguration = ModuleConfiguration()) -> String {
        func type(_ p: KemiParamType) -> String {
            switch p {
            case .str: return "string"
            case .int, .long: return "integer"
            }
        }
        func ret(_ r: KemiReturnType) -> String {
            switch r {
            case .none: return "boolean"  // app_lua gives `false` for NONE functions (REFERENCE §1.3)
            case .int: return "integer"
            case .bool: return "boolean"
            case .xval: return "any"
            }
        }
        let all = exports(config)
        var byModule: [String: [KemiExport]] = [:]
        for e in all { byModule[e.module, default: []].append(e) }
        let modules = byModule.keys.filter { !$0.isEmpty && $0 != "x" }.sorted()

        var out = """
            ---@meta
            -- The KSR API of Starling, for the Lua language server (LuaLS, EmmyLua).
            -- Generated from the export tables by `starling api --luals DIR`; do not edit.
            -- Parameter names are positional (Kamailio's export tables have no names); see docs/KSR.md.

            ---KEMI interface version.
            ---@type string
            KSRVERSION = "2.0"

            ---The Kamailio KEMI API: core functions, and one table per module.
            ---@class KSR
            ---@field x KSR.x

            """
        for m in modules { out += "---@field \(m) KSR.\(m)\n" }
        out += "KSR = {}\n"

        func stub(_ e: KemiExport, owner: String) {
            out += "\n"
            if let c = e.compat { out += "---Compat: \(c.replacingNewlines())\n" }
            var names: [String] = []
            for (i, p) in e.params.enumerated() {
                let n = "p\(i + 1)"
                names.append(n)
                out += "---@param \(n)\(i >= e.params.count - e.optionalParams ? "?" : "") \(type(p))\n"
            }
            out += "---@return \(ret(e.returns))\n"
            out += "function \(owner).\(e.name)(\(names.joined(separator: ", "))) end\n"
        }
        for e in (byModule[""] ?? []).sorted(by: { $0.name < $1.name }) { stub(e, owner: "KSR") }

        out += """

            ---Kamailio's KSR.x: ends the route or calls a native function.
            ---@class KSR.x
            KSR.x = {}

            ---Ends the route callback (the message goes no further in the script).
            ---@return nil
            function KSR.x.exit() end

            ---Marks the message dropped and ends the route callback.
            ---@return nil
            function KSR.x.drop() end

            ---Calls a native module function by name with string arguments.
            ---@param fname string
            ---@param ... string
            ---@return integer
            function KSR.x.modf(fname, ...) end

            ---Does nothing (a probe that the API exists).
            ---@return nil
            function KSR.x.probe() end

            """
        for m in modules {
            out += "\n---@class KSR.\(m)\nKSR.\(m) = {}\n"
            for e in byModule[m]!.sorted(by: { $0.name < $1.name }) { stub(e, owner: "KSR.\(m)") }
        }
        return out
    }
}

extension String {
    fileprivate func replacingNewlines() -> String {
        var s = ""
        for c in self { if c == "\n" { s += " " } else { s.append(c) } }
        return s
    }
}
