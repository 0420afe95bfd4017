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
        var out: [KSRReference] = []
        var i = 0, line = 1
        let n = src.count
        func isIdent(_ c: UInt8) -> Bool { c == 0x5F || (c | 0x20 >= 0x61 && c | 0x20 <= 0x7A) || (c >= 0x30 && c <= 0x39) }
        /// At `[`: the level of a long bracket `[==[`, or nil.
        func longBracket(_ at: Int) -> Int? {
            guard at < n, src[at] == UInt8(ascii: "[") else { return nil }
            var j = at + 1, level = 0
            while j < n && src[j] == UInt8(ascii: "=") { level += 1; j += 1 }
            return j < n && src[j] == UInt8(ascii: "[") ? level : nil
        }
        /// Skips a long bracket body from `at` (just past the opening) to past `]==]`.
        func skipLong(_ at: Int, _ level: Int) -> Int {
            var j = at
            while j < n {
                if src[j] == 0x0A { line += 1 }
                if src[j] == UInt8(ascii: "]") {
                    var k = j + 1, l = 0
                    while k < n && src[k] == UInt8(ascii: "=") { l += 1; k += 1 }
                    if l == level && k < n && src[k] == UInt8(ascii: "]") { return k + 1 }
                }
                j += 1
            }
            return n
        }
        while i < n {
            let c = src[i]
            if c == 0x0A { line += 1; i += 1; continue }
            if c == UInt8(ascii: "-") && i + 1 < n && src[i + 1] == UInt8(ascii: "-") {
                if let level = longBracket(i + 2) {
                    i = skipLong(i + 4 + level, level)
                } else {
                    while i < n && src[i] != 0x0A { i += 1 }
                }
                continue
            }
            if c == UInt8(ascii: "\"") || c == UInt8(ascii: "'") {
                i += 1
                while i < n && src[i] != c && src[i] != 0x0A {
                    if src[i] == UInt8(ascii: "\\") { i += 1 }
                    i += 1
                }
                i += 1
                continue
            }
            if c == UInt8(ascii: "["), let level = longBracket(i) {
                i = skipLong(i + 2 + level, level)
                continue
            }
            if c == UInt8(ascii: "K") && i + 4 <= n && src[i + 1] == UInt8(ascii: "S") && src[i + 2] == UInt8(ascii: "R")
                && (i == 0 || (!isIdent(src[i - 1]) && src[i - 1] != UInt8(ascii: ".")))
                && i + 3 < n && src[i + 3] == UInt8(ascii: ".") {
                var j = i + 4
                var parts: [String] = []
                while parts.count < 2 {
                    let start = j
                    while j < n && isIdent(src[j]) { j += 1 }
                    guard j > start else { break }
                    parts.append(String(decoding: src[start..<j], as: UTF8.self))
                    guard j < n, src[j] == UInt8(ascii: "."), j + 1 < n, isIdent(src[j + 1]) else { break }
                    j += 1
                }
                if !parts.isEmpty { out.append(KSRReference(line: line, name: "KSR." + parts.joined(separator: "."))) }
                i = max(j, i + 1)
                continue
            }
            if isIdent(c) {
                while i < n && isIdent(src[i]) { i += 1 }
                continue
            }
            i += 1
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
