/// A pre-resolved callback name (`ksr_request_route`, `ksr_reply_route`, a `t_on_failure` name...).
/// The function itself is still looked up on every call, so redefining the global takes effect.
/// Valid only with the engine that made it (it names a slot in that state's registry).
public struct LuaCallback: Sendable, Hashable {
    public let name: String
    let ref: Int32
}
