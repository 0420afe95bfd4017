/// How one callback into the script ended.
public enum CallbackOutcome: Sendable, Equatable {
    /// The function returned normally (its return values are ignored, as in Kamailio).
    case ok
    /// `KSR.x.exit()` or `KSR.x.drop()` ended it (a drop also set `RouteContext.dropRequested`).
    case exited
    /// No global function of that name exists (looked up on every call).
    case missing
    /// A Lua runtime error: message with file:line, and the traceback.
    case error(LuaScriptError)
    /// The instruction budget ran out (probably an endless loop).
    case budgetExceeded
    /// The state's memory cap was reached.
    case memoryExceeded

    /// True for `.ok` and `.exited`: Kamailio counts both as success.
    public var succeeded: Bool {
        switch self {
        case .ok, .exited: return true
        default: return false
        }
    }
}
