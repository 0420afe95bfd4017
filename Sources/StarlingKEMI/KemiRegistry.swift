/// All exports available to scripts, filtered by the modules the configuration loads
/// (`[core] modules`; core, pv, hdr and x are always loaded). Shared read-only by all workers.
public final class KemiRegistry: Sendable {
    /// Modules that are always present.
    public static let alwaysLoaded: Set<String> = ["", "pv", "hdr", "x"]

    /// The exports, in registration order; a function's index is its identity for the marshaller.
    public let exports: [KemiExport]
    /// Modules whose `KSR.<module>` table exists.
    public let loadedModules: [String]
    private let byName: [String: Int]

    public init(exports all: [KemiExport], modules: Set<String>) {
        let loaded = modules.union(Self.alwaysLoaded)
        let kept = all.filter { loaded.contains($0.module) }
        exports = kept
        var order: [String] = []
        for e in kept where !e.module.isEmpty && !order.contains(e.module) { order.append(e.module) }
        loadedModules = order
        var map: [String: Int] = [:]
        for (i, e) in kept.enumerated() where map[e.qualifiedName] == nil { map[e.qualifiedName] = i }
        byName = map
    }

    /// Looks an export up by `KSR.module.name`.
    public func index(of qualifiedName: String) -> Int? { byName[qualifiedName] }

    /// Looks up a function by its native Kamailio cfg name (`sl_send_reply`, `t_relay`, ...), as
    /// `KSR.x.modf` does: the first export with that name in any loaded module.
    public func index(cfgName: String, argumentCount: Int) -> Int? {
        if let i = exports.firstIndex(where: { $0.name == cfgName && $0.params.count == argumentCount }) { return i }
        return exports.firstIndex(where: { $0.name == cfgName })
    }
}
