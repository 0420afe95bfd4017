public import StarlingKEMI

extension LuaEngine {
    /// `starling check FILE`: loads the script in a throwaway state (standard libraries and `KSR`
    /// from the registry, no route context), runs its top level and verifies `ksr_request_route`.
    /// Returns the engine's version on success.
    @discardableResult
    public static func check(path: String, registry: KemiRegistry = KemiRegistry(exports: [], modules: []),
                             limits: LuaEngineLimits = .default) throws(LuaScriptError) -> ScriptVersion {
        let engine = try LuaEngine(path: path, registry: registry, context: nil, limits: limits)
        return engine.version
    }
}
