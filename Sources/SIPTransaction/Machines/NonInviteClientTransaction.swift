/// The non-INVITE client transaction of RFC 3261 §17.1.2 (Figure 6).
///
/// ```
///        requestSent
///             |  E (unreliable), F
///             v
///   +------ Trying --------+
///   | 1xx      | 200-699   |  F / transport error
///   v          v           v
/// Proceeding -> Completed --K--> Terminated
/// ```
///
/// Timer E starts at T1 and doubles up to T2 while Trying; once a provisional response has arrived it
/// fires every T2.
public struct NonInviteClientTransaction: Sendable, Hashable {
    /// The states of Figure 6.
    public enum State: Sendable, Hashable {
        /// Created; the request has not been sent yet.
        case idle
        /// Request sent, no response yet.
        case trying
        /// A provisional response arrived.
        case proceeding
        /// A final response arrived; absorbing its retransmissions (Timer K).
        case completed
        /// Over.
        case terminated
    }

    /// What the owner must do.
    public typealias Action = TransactionAction
    /// The actions of one event.
    public typealias Actions = TransactionActions

    /// The current state.
    public private(set) var state: State = .idle
    /// The transport the request went out on.
    public let transport: TransportReliability
    /// The timer values.
    public let timers: TimerConfiguration
    /// The status code of the last response passed to the TU (0 if none).
    public private(set) var lastStatus: Int = 0

    private var timerEInterval: Duration = .zero

    /// A transaction for a non-INVITE request (not ACK) about to be sent.
    public init(transport: TransportReliability, timers: TimerConfiguration = .rfc3261) {
        self.transport = transport
        self.timers = timers
    }

    // MARK: Events

    /// The owner sent the request.
    public mutating func requestSent() -> Actions {
        guard state == .idle else { return [] }
        state = .trying
        var actions = Actions()
        if !transport.isReliable {
            timerEInterval = timers.t1
            actions.append(.startTimer(.E, after: timers.t1))
        }
        actions.append(.startTimer(.F, after: timers.timerF))
        return actions
    }

    /// A response matching this transaction arrived.
    public mutating func responseReceived(_ statusCode: Int) -> Actions {
        switch state {
        case .trying, .proceeding:
            switch statusCode {
            case 100...199:
                state = .proceeding
                lastStatus = statusCode
                return Actions(.passToTU(statusCode))
            case 200...699:
                lastStatus = statusCode
                if transport.isReliable || timers.timerK == .zero {
                    state = .terminated
                    return Actions(.passToTU(statusCode), .terminate)
                }
                state = .completed
                return Actions(.stopTimer(.E), .stopTimer(.F), .passToTU(statusCode), .startTimer(.K, after: timers.timerK))
            default:
                return []
            }
        case .idle, .completed, .terminated:
            return []
        }
    }

    /// A timer of this transaction fired.
    public mutating func timerFired(_ timer: TransactionTimer) -> Actions {
        switch (timer, state) {
        case (.E, .trying) where !transport.isReliable:
            timerEInterval = .min(timerEInterval * 2, timers.t2)
            return Actions(.retransmitRequest, .startTimer(.E, after: timerEInterval))
        case (.E, .proceeding) where !transport.isReliable:
            timerEInterval = timers.t2
            return Actions(.retransmitRequest, .startTimer(.E, after: timers.t2))
        case (.F, .trying), (.F, .proceeding):
            state = .terminated
            return Actions(.timeoutToTU, .terminate)
        case (.K, .completed):
            state = .terminated
            return Actions(.terminate)
        default:
            return []
        }
    }

    /// Sending the request (or a retransmission) failed.
    public mutating func transportError() -> Actions {
        switch state {
        case .trying, .proceeding:
            state = .terminated
            return Actions(.transportErrorToTU, .terminate)
        case .idle, .completed, .terminated:
            return []
        }
    }
}
