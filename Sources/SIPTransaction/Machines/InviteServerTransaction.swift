/// The INVITE server transaction of RFC 3261 §17.2.1 (Figure 7), with the Accepted state of RFC 6026.
///
/// ```
///   INVITE received (created)
///             |
///             v
///   +---- Proceeding ----+-------------------+
///   | 300-699 from TU    | 2xx from TU       |  transport error
///   v                    v                   v
/// Completed --ACK--> Confirmed --I--> Terminated <--L-- Accepted
///   |  G: retransmit, H: timeout ----------^
/// ```
///
/// The transaction is created from an INVITE that the owner has already passed to the TU (the
/// script). Retransmissions of the INVITE are absorbed: the last provisional or final response is
/// resent and the TU never sees them. Whether a 100 Trying goes out at once is the TU's choice
/// (`tuSentResponse(100)`).
public struct InviteServerTransaction: Sendable, Hashable {
    /// The states of Figure 7 (plus RFC 6026's Accepted).
    public enum State: Sendable, Hashable {
        /// INVITE received; provisional responses may be sent.
        case proceeding
        /// A non-2xx final was sent; retransmitting it until the ACK (Timers G, H).
        case completed
        /// The ACK arrived; absorbing its retransmissions (Timer I).
        case confirmed
        /// A 2xx was sent (RFC 6026); INVITE retransmissions are absorbed, ACKs and further 2xx pass.
        case accepted
        /// Over.
        case terminated
    }

    /// What the owner must do.
    public typealias Action = TransactionAction
    /// The actions of one event.
    public typealias Actions = TransactionActions

    /// The current state.
    public private(set) var state: State = .proceeding
    /// The transport the INVITE arrived on (responses go back the same way).
    public let transport: TransportReliability
    /// The timer values.
    public let timers: TimerConfiguration
    /// The status code of the last response sent (0 if none yet).
    public private(set) var lastStatus: Int = 0

    private var timerGInterval: Duration = .zero

    /// A transaction for an INVITE just received (and passed to the TU).
    public init(transport: TransportReliability, timers: TimerConfiguration = .rfc3261) {
        self.transport = transport
        self.timers = timers
    }

    // MARK: Events

    /// The INVITE that created this transaction arrived again.
    public mutating func requestRetransmitted() -> Actions {
        switch state {
        case .proceeding:
            return lastStatus == 0 ? [] : Actions(.retransmitResponse)
        case .completed:
            return Actions(.retransmitResponse)
        case .confirmed, .accepted, .terminated:
            return []
        }
    }

    /// The TU handed a response to the transaction. Returns `.sendResponse` if it may go out; a
    /// response after a non-2xx final (or a non-2xx after a 2xx) is refused with no actions.
    public mutating func tuSentResponse(_ statusCode: Int) -> Actions {
        switch (state, statusCode) {
        case (.proceeding, 100...199):
            lastStatus = statusCode
            return Actions(.sendResponse(statusCode))
        case (.proceeding, 200...299):
            lastStatus = statusCode
            state = .accepted
            return Actions(.sendResponse(statusCode), .startTimer(.L, after: timers.timerL))
        case (.proceeding, 300...699):
            lastStatus = statusCode
            state = .completed
            var actions = Actions(.sendResponse(statusCode))
            if !transport.isReliable {
                timerGInterval = timers.t1
                actions.append(.startTimer(.G, after: timers.t1))
            }
            actions.append(.startTimer(.H, after: timers.timerH))
            return actions
        case (.accepted, 200...299):
            // RFC 6026 §8.5: 2xx retransmissions (and 2xx of other forks) from the TU go out.
            lastStatus = statusCode
            return Actions(.sendResponse(statusCode))
        default:
            return []
        }
    }

    /// An ACK matching this transaction arrived.
    public mutating func ackReceived() -> Actions {
        switch state {
        case .completed:
            if transport.isReliable || timers.timerI == .zero {
                state = .terminated
                return Actions(.terminate)
            }
            state = .confirmed
            var actions = Actions()
            if !transport.isReliable { actions.append(.stopTimer(.G)) }
            actions.append(.stopTimer(.H))
            actions.append(.startTimer(.I, after: timers.timerI))
            return actions
        case .accepted:
            return Actions(.passACKToTU)
        case .proceeding, .confirmed, .terminated:
            return []
        }
    }

    /// A timer of this transaction fired.
    public mutating func timerFired(_ timer: TransactionTimer) -> Actions {
        switch (timer, state) {
        case (.G, .completed) where !transport.isReliable:
            timerGInterval = .min(timerGInterval * 2, timers.t2)
            return Actions(.retransmitResponse, .startTimer(.G, after: timerGInterval))
        case (.H, .completed):
            state = .terminated
            return Actions(.timeoutToTU, .terminate)
        case (.I, .confirmed), (.L, .accepted):
            state = .terminated
            return Actions(.terminate)
        default:
            return []
        }
    }

    /// Sending a response failed.
    public mutating func transportError() -> Actions {
        switch state {
        case .proceeding, .completed, .accepted:
            state = .terminated
            return Actions(.transportErrorToTU, .terminate)
        case .confirmed, .terminated:
            return []
        }
    }
}
