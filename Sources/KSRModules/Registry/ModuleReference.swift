extension KSRModules {
    /// The command that regenerates docs/Modparams.md.
    public static let modparamsCommand = "swift run starling api --modparams > docs/Modparams.md"

    /// The module parameter reference (`starling api --modparams`, committed as docs/Modparams.md),
    /// generated from the modules' parameter tables: per module, what Starling implements and the
    /// Kamailio 5.6 parameters it accepts without effect, then the control methods and statistics.
    public static func modparamsReference() -> String {
        func cell(_ s: String) -> String { s.replacingPipes() }
        var out = """
            # Module parameters

            Generated from the modules' parameter tables by `starling api --modparams`; do not edit.
            Regenerate with `\(modparamsCommand)`.

            Set them in `[modparam.<module>]` of the configuration file (an array repeats a parameter) or as
            `STARLING_MODPARAM_<MODULE>_<PARAM>` environment variables. Names and kinds are Kamailio 5.6's:
            an `int` parameter takes an integer or a boolean (Kamailio's yes/no) and nothing else (`"30s"`
            and `"30000"` in quotes are refused, as Kamailio refuses them); a `str` parameter takes a string.
            An unknown module, an unknown parameter or a value of the wrong kind stops Starling with exit
            status 2 and a message naming the key. Parameters marked "no effect" are Kamailio's: they are
            accepted so that a Kamailio configuration loads, and a warning says so at start.

            """
        for m in all {
            let rows = parameters(of: m.name)
            let rpc = m.rpcMethods
            let stats = m.statistics
            out += "\n## \(m.name)\n\n"
            if !m.summary.isEmpty { out += m.summary + "\n\n" }
            if m.alwaysLoaded { out += "Always loaded.\n\n" }
            if !m.dependencies.isEmpty { out += "Loads with it: \(m.dependencies.joined(separator: ", ")).\n\n" }
            let implemented = rows.filter(\.implemented)
            if rows.isEmpty {
                out += "No parameters.\n"
            } else {
                if !implemented.isEmpty {
                    out += "| parameter | kind | default | what it does |\n|---|---|---|---|\n"
                    for p in implemented {
                        out += "| `\(p.name)` | \(p.kind.rawValue)\(p.repeatable ? ", repeatable" : "") | `\(cell(p.defaultText))` | \(cell(p.summary)) |\n"
                    }
                }
                let ignored = rows.filter { !$0.implemented }
                if !ignored.isEmpty {
                    out += "\nAccepted with no effect (Kamailio 5.6): "
                    out += ignored.map { "`\($0.name)` (\($0.kind.rawValue))" }.joined(separator: ", ") + ".\n"
                }
            }
            if !rpc.isEmpty {
                out += "\nControl methods: " + rpc.map { "`\($0.name)`" }.joined(separator: ", ") + ".\n"
            }
            if !stats.isEmpty {
                out += "\nStatistics: " + stats.map { s in
                    "`\(s.name)` (`\(s.metric)`" + (s.labels.isEmpty ? "" : ", labels " + s.labels.map { "`\($0)`" }.joined(separator: ", ")) + ")"
                }.joined(separator: ", ") + ".\n"
            }
        }
        return out
    }
}
