/// Which callback is running (Kamailio's route types); functions refuse where Kamailio refuses.
public enum RouteType: UInt8, Sendable {
    case request, reply, failure, branch, onreply, onsend, branchFailure, event

    /// The name Kamailio logs for it.
    public var name: String {
        switch self {
        case .request: return "request_route"
        case .reply: return "reply_route"
        case .failure: return "failure_route"
        case .branch: return "branch_route"
        case .onreply: return "onreply_route"
        case .onsend: return "onsend_route"
        case .branchFailure: return "branch_failure_route"
        case .event: return "event_route"
        }
    }
}
