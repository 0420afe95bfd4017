/// Resource limits of one Lua state. Exceeding one aborts the running callback only; the worker and
/// the state carry on.
public struct LuaEngineLimits: Sendable, Hashable {
    /// VM instructions one callback (or the script's top level) may execute, counted in steps of
    /// 1000; 0 disables the check. Default 10,000,000 (a few tens of milliseconds).
    public var instructionBudget: Int
    /// Bytes the state may allocate in total; 0 disables the cap. Default 64 MiB.
    public var memoryLimit: Int

    public init(instructionBudget: Int = 10_000_000, memoryLimit: Int = 64 << 20) {
        self.instructionBudget = instructionBudget
        self.memoryLimit = memoryLimit
    }

    public static let `default` = LuaEngineLimits()
}
