public import StarlingKEMI

/// A `KSR.*` name written in a script's source (outside comments and strings).
public struct KSRReference: Sendable, Equatable, CustomStringConvertible {
    public let line: Int
    /// `KSR.module.name` or `KSR.name` as written.
    public let name: String
    public var description: String { "\(line): \(name)" }
}

/// A static look at a script: which `KSR.*` names it uses. `starling check` warns about names the
/// registry does not export (a misspelt function, a module Starling does not implement), which
/// Lua would only report when the line runs.
public enum KSRReferences {
    /// `KSR.x` is built by the host, not by export tables.
    static let xFunctions: Set<String> = ["modf", "exit", "drop", "probe"]

    /// Every `KSR.a` / `KSR.a.b` in code (comments, strings and long brackets skipped).
    public static func scan(_ src: [UInt8]) -> [KSRReference] {
        let t = LuaTokens.tokenize(src)
        var out: [KSRReference] = []
        var i = 0
        while i < t.count {
            guard t[i].text == "KSR", i == 0 || (t[i - 1].text != "." && t[i - 1].text != ":"),
                  i + 2 < t.count, t[i + 1].text == ".", t[i + 2].isName else {
                i += 1
                continue
            }
            var name = "KSR." + t[i + 2].text
            var j = i + 3
            if j + 1 < t.count, t[j].text == ".", t[j + 1].isName {
                name += "." + t[j + 1].text
                j += 2
            }
            out.append(KSRReference(line: t[i].line, name: name))
            i = j
        }
        return out
    }

    /// The references the registry cannot satisfy, with why: "not exported" (a function of a loaded
    /// module, or a core function) or "module not loaded" (`KSR.rtpproxy.*`: the table is nil, which
    /// scripts may test on purpose).
    public static func unresolved(_ refs: [KSRReference], registry: KemiRegistry) -> [(KSRReference, String)] {
        let modules = Set(registry.loadedModules).union(["pv", "hdr", "x"])
        var out: [(KSRReference, String)] = []
        for r in refs {
            let parts = r.name.split(separator: ".").map(String.init)
            if parts.count == 2 {
                // KSR.name: a core function, or a module table used as a value (`if KSR.rtpproxy`).
                if registry.index(of: r.name) != nil || modules.contains(parts[1]) { continue }
                if parts[1].first?.isLowercase == true, registry.exports.contains(where: { $0.module == parts[1] }) { continue }
                out.append((r, "not a core function or a loaded module"))
            } else if parts.count == 3 {
                if parts[1] == "x" { if !xFunctions.contains(parts[2]) { out.append((r, "not a KSR.x function")) }; continue }
                if !modules.contains(parts[1]) {
                    out.append((r, "module \(parts[1]) not loaded (KSR.\(parts[1]) is nil)"))
                } else if registry.index(of: r.name) == nil {
                    out.append((r, "not exported by module \(parts[1])"))
                }
            }
        }
        return out
    }
}
