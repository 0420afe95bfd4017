public import StarlingKEMI

/// Replies the core sends on its own (a request that fails the core checks), with the same Via
/// handling as `sl_send_reply`.
public enum CoreReplies {
    /// Sends `status reason` for the context's request. Returns 1, or -1.
    @discardableResult
    public static func send(_ ctx: RouteContext, status: Int, reason: String) -> Int {
        MessageTools.sendReply(ctx, status: status, reason: reason)
    }
}
