/// The non-INVITE server transaction of RFC 3261 §17.2.2 (Figure 8).
///
/// ```
///   request received (created)
///             |
///             v
///   +------ Trying ---------+
///   | 1xx from TU           | 200-699 from TU
///   v                       v
/// Proceeding ---------> Completed --J--> Terminated
/// ```
///
/// Retransmissions of the request are discarded while Trying and answered with the last response
/// afterwards. The transaction lives until the TU answers (the TU's own timeout bounds it).
public struct NonInviteServerTransaction: Sendable, Hashable {
    /// The states of Figure 8.
    public enum State: Sendable, Hashable {
        /// Request received, no response sent yet.
        case trying
        /// A provisional response was sent.
        case proceeding
        /// A final response was sent; absorbing request retransmissions (Timer J).
        case completed
        /// Over.
        case terminated
    }

    /// What the owner must do.
    public typealias Action = TransactionAction
    /// The actions of one event.
    public typealias Actions = TransactionActions

    /// The current state.
    public private(set) var state: State = .trying
    /// The transport the request arrived on.
    public let transport: TransportReliability
    /// The timer values.
    public let timers: TimerConfiguration
    /// The status code of the last response sent (0 if none yet).
    public private(set) var lastStatus: Int = 0

    /// A transaction for a non-INVITE request (not ACK) just received.
    public init(transport: TransportReliability, timers: TimerConfiguration = .rfc3261) {
        self.transport = transport
        self.timers = timers
    }

    // MARK: Events

    /// The request that created this transaction arrived again.
    public mutating func requestRetransmitted() -> Actions {
        switch state {
        case .proceeding, .completed: return Actions(.retransmitResponse)
        case .trying, .terminated: return []
        }
    }

    /// The TU handed a response to the transaction. Returns `.sendResponse` if it may go out; any
    /// response after the final one is refused with no actions.
    public mutating func tuSentResponse(_ statusCode: Int) -> Actions {
        switch (state, statusCode) {
        case (.trying, 100...199), (.proceeding, 100...199):
            state = .proceeding
            lastStatus = statusCode
            return Actions(.sendResponse(statusCode))
        case (.trying, 200...699), (.proceeding, 200...699):
            lastStatus = statusCode
            if transport.isReliable || timers.timerJ == .zero {
                state = .terminated
                return Actions(.sendResponse(statusCode), .terminate)
            }
            state = .completed
            return Actions(.sendResponse(statusCode), .startTimer(.J, after: timers.timerJ))
        default:
            return []
        }
    }

    /// A timer of this transaction fired.
    public mutating func timerFired(_ timer: TransactionTimer) -> Actions {
        guard timer == .J, state == .completed else { return [] }
        state = .terminated
        return Actions(.terminate)
    }

    /// Sending a response failed.
    public mutating func transportError() -> Actions {
        switch state {
        case .trying, .proceeding, .completed:
            state = .terminated
            return Actions(.transportErrorToTU, .terminate)
        case .terminated:
            return []
        }
    }
}
