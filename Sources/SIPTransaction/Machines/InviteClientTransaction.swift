/// The INVITE client transaction of RFC 3261 §17.1.1, with the Accepted state of RFC 6026 and, for
/// proxies, Timer C (§16.6 step 11, §16.8).
///
/// ```
///            requestSent
///                 |  A (unreliable), B, C (proxy)
///                 v
///   +-------- Calling ---------+------------------------+
///   |  1xx        |  300-699   |  2xx                   |  B / transport error
///   v             v            |                        v
/// Proceeding -> Completed --D--+-> Terminated <--M-- Accepted
///   |  2xx ---------------------------------------------^
/// ```
///
/// The owner sends the INVITE and reports it with `requestSent()`. The transaction never ACKs a 2xx:
/// the TU does (a proxy forwards the 2xx, the ACK comes end to end). It ACKs non-2xx finals itself
/// (`.sendACK`, then `.retransmitACK` for each retransmitted final).
public struct InviteClientTransaction: Sendable, Hashable {
    /// The states of Figure 5 (plus RFC 6026's Accepted).
    public enum State: Sendable, Hashable {
        /// Created; the INVITE has not been sent yet.
        case idle
        /// INVITE sent, no response yet.
        case calling
        /// A provisional response arrived.
        case proceeding
        /// A non-2xx final arrived and was ACKed; absorbing its retransmissions (Timer D).
        case completed
        /// A 2xx arrived (RFC 6026): further 2xx go to the TU until Timer M.
        case accepted
        /// Over.
        case terminated
    }

    /// What the owner must do.
    public typealias Action = TransactionAction
    /// The actions of one event.
    public typealias Actions = TransactionActions

    /// The current state.
    public private(set) var state: State = .idle
    /// The transport the INVITE went out on.
    public let transport: TransportReliability
    /// The timer values.
    public let timers: TimerConfiguration
    /// True if this transaction runs Timer C (a proxy's client transaction).
    public let usesTimerC: Bool
    /// The status code of the last response passed to the TU (0 if none).
    public private(set) var lastStatus: Int = 0
    /// True once the branch was CANCELled (`.cancelBranch` emitted).
    public private(set) var isCancelled = false

    private var timerAInterval: Duration = .zero
    private var cancelPending = false
    private var timeoutReported = false

    /// A transaction for an INVITE about to be sent.
    /// - Parameters:
    ///   - transport: the transport the INVITE goes out on.
    ///   - timers: timer values (RFC 3261 defaults).
    ///   - usesTimerC: true in a proxy (Timer C guards the Proceeding state).
    public init(transport: TransportReliability, timers: TimerConfiguration = .rfc3261, usesTimerC: Bool = false) {
        self.transport = transport
        self.timers = timers
        self.usesTimerC = usesTimerC
    }

    /// True if the TU may send a CANCEL for this branch now (a provisional response has arrived and no
    /// final one, RFC 3261 §9.1).
    public var canCancel: Bool { state == .proceeding }

    // MARK: Events

    /// The owner sent the INVITE.
    public mutating func requestSent() -> Actions {
        guard state == .idle else { return [] }
        state = .calling
        var actions = Actions()
        if !transport.isReliable {
            timerAInterval = timers.t1
            actions.append(.startTimer(.A, after: timers.t1))
        }
        actions.append(.startTimer(.B, after: timers.timerB))
        if usesTimerC { actions.append(.startTimer(.C, after: timers.timerC)) }
        return actions
    }

    /// A response matching this transaction arrived.
    public mutating func responseReceived(_ statusCode: Int) -> Actions {
        switch state {
        case .calling, .proceeding:
            var actions = Actions()
            if state == .calling {
                if !transport.isReliable { actions.append(.stopTimer(.A)) }
                actions.append(.stopTimer(.B))
            }
            switch statusCode {
            case 100...199:
                state = .proceeding
                lastStatus = statusCode
                actions.append(.passToTU(statusCode))
                if cancelPending {
                    cancelPending = false
                    actions.append(contentsOf: cancel())
                } else if usesTimerC && !isCancelled && statusCode > 100 {
                    actions.append(.startTimer(.C, after: timers.timerC))
                }
            case 200...299:
                state = .accepted
                lastStatus = statusCode
                if usesTimerC || isCancelled { actions.append(.stopTimer(.C)) }
                actions.append(.passToTU(statusCode))
                actions.append(.startTimer(.M, after: timers.timerM))
            case 300...699:
                lastStatus = statusCode
                if usesTimerC || isCancelled { actions.append(.stopTimer(.C)) }
                actions.append(.sendACK)
                actions.append(.passToTU(statusCode))
                actions.append(contentsOf: enterCompleted())
            default:
                return []
            }
            return actions
        case .completed:
            return (300...699).contains(statusCode) ? Actions(.retransmitACK) : []
        case .accepted:
            return (200...299).contains(statusCode) ? Actions(.passToTU(statusCode)) : []
        case .idle, .terminated:
            return []
        }
    }

    /// A timer of this transaction fired.
    public mutating func timerFired(_ timer: TransactionTimer) -> Actions {
        switch (timer, state) {
        case (.A, .calling) where !transport.isReliable:
            timerAInterval = timerAInterval * 2
            return Actions(.retransmitRequest, .startTimer(.A, after: timerAInterval))
        case (.B, .calling):
            return timeout()
        case (.C, .calling):
            // No provisional response: behave as if a 408 had arrived (§16.8); no CANCEL before a 1xx.
            return timeout()
        case (.C, .proceeding):
            if isCancelled { return timeout() }
            // §16.8: Timer C after a provisional response: the branch times out and is CANCELled.
            timeoutReported = true
            return Actions(.timeoutToTU) + cancel()
        case (.D, .completed), (.M, .accepted):
            state = .terminated
            return Actions(.terminate)
        default:
            return []
        }
    }

    /// The TU wants this branch cancelled (the caller CANCELled, another branch answered 2xx or 6xx).
    ///
    /// In Proceeding this asks for the CANCEL at once; in Calling it is deferred until the first
    /// provisional response (§9.1); after a final response there is nothing to cancel.
    public mutating func cancelRequested() -> Actions {
        switch state {
        case .calling:
            cancelPending = true
            return []
        case .proceeding:
            return isCancelled ? [] : cancel()
        default:
            return []
        }
    }

    /// Sending the INVITE (or a retransmission, or the ACK) failed.
    public mutating func transportError() -> Actions {
        switch state {
        case .calling, .proceeding:
            state = .terminated
            return Actions(.transportErrorToTU, .terminate)
        case .completed:
            state = .terminated
            return Actions(.terminate)
        case .idle, .accepted, .terminated:
            return []
        }
    }

    // MARK: Helpers

    private mutating func cancel() -> Actions {
        isCancelled = true
        // §9.1: without a final response 64*T1 after the CANCEL, give the transaction up.
        return Actions(.cancelBranch, .startTimer(.C, after: timers.timerB))
    }

    private mutating func timeout() -> Actions {
        state = .terminated
        if timeoutReported { return Actions(.terminate) }
        timeoutReported = true
        return Actions(.timeoutToTU, .terminate)
    }

    private mutating func enterCompleted() -> Actions {
        if transport.isReliable || timers.timerD == .zero {
            state = .terminated
            return Actions(.terminate)
        }
        state = .completed
        return Actions(.startTimer(.D, after: timers.timerD))
    }
}
