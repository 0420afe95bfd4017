/// What the script decided for one request.
public enum DiameterDecision: Sendable, Equatable {
    /// Relay to this peer (the script checked it was usable).
    case relay(peer: String, request: DiameterMessage)
    /// Relay by the realm routing table.
    case relayByRealm(request: DiameterMessage)
    /// Answer locally with this message.
    case answer(DiameterMessage)
    /// Neither relayed nor answered: 3002.
    case none
}

/// A peer as cdp.list_peers and /metrics show it.
public struct DiameterPeerStatus: Sendable, Equatable {
    public init(identity: String, realm: String, state: String, watchdog: String, usable: Bool, enabled: Bool, applications: [UInt32],
                requestsRelayed: Int, answersByResult: [UInt32: Int], pending: Int, latencyMicrosSum: Int, latencyCount: Int) {
        self.identity = identity; self.realm = realm; self.state = state; self.watchdog = watchdog; self.usable = usable
        self.enabled = enabled; self.applications = applications; self.requestsRelayed = requestsRelayed
        self.answersByResult = answersByResult; self.pending = pending; self.latencyMicrosSum = latencyMicrosSum
        self.latencyCount = latencyCount
    }

    public var identity: String
    public var realm: String
    public var state: String
    public var watchdog: String
    public var usable: Bool
    public var enabled: Bool
    public var applications: [UInt32]
    public var requestsRelayed: Int
    public var answersByResult: [UInt32: Int]
    public var pending: Int
    /// Sum of answer latencies in microseconds and their count.
    public var latencyMicrosSum: Int
    public var latencyCount: Int
}

