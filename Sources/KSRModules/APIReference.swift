import StarlingKEMI

extension KSRModules {
    /// The command that regenerates docs/KSR.md.
    public static let markdownCommand = "swift run starling api --markdown > docs/KSR.md"

    /// The API reference (`starling api --markdown`, committed as docs/KSR.md): every export with its
    /// parameter types, return type and how it compares with Kamailio 5.6, grouped by module.
    public static func markdownReference(_ config: ModuleConfiguration = ModuleConfiguration()) -> String {
        func param(_ p: KemiParamType) -> String { p.name }
        func ret(_ r: KemiReturnType) -> String { r.name }
        func cell(_ s: String) -> String { s.replacingPipes() }
        let all = exports(config)
        var byModule: [String: [KemiExport]] = [:]
        for e in all { byModule[e.module, default: []].append(e) }
        var out = """
            # The KSR API of Starling

            Generated from the export tables by `starling api --markdown`; do not edit. Regenerate with
            `\(markdownCommand)`. Compat: how a function compares with Kamailio 5.6 ("same" = same
            name, parameters and return codes). `KSR.x` (exit, drop, modf, probe) belongs to the Lua engine.
            Modules other than core, pv and hdr exist only when the configuration loads them.

            Functions: \(all.count).

            """
        for module in byModule.keys.sorted() {
            let list = byModule[module]!.sorted { $0.name < $1.name }
            out += "\n## \(module.isEmpty ? "KSR (core)" : "KSR.\(module)") (\(list.count))\n\n"
            out += "| function | parameters | returns | compat |\n|---|---|---|---|\n"
            for e in list {
                out += "| `\(e.name)` | \(e.params.isEmpty ? "-" : e.params.enumerated().map { i, p in param(p) + (i >= e.params.count - e.optionalParams ? " (optional)" : "") }.joined(separator: ", ")) | \(ret(e.returns)) | \(cell(e.compat ?? "same")) |\n"
            }
        }
        return out
    }
}

extension String {
    func replacingPipes() -> String {
        var s = ""
        for c in self { if c == "|" { s += "\\|" } else { s.append(c) } }
        return s
    }
}
