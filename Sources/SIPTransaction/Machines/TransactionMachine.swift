/// What all four transaction machines have in common, so that an owner can drive timers and
/// transport errors generically (one timer wheel, one action runner).
public protocol TransactionMachine: Sendable {
    /// The machine's states.
    associatedtype State: Sendable, Hashable
    /// The current state.
    var state: State { get }
    /// True once the machine has emitted `.terminate`.
    var isTerminated: Bool { get }
    /// The transport the transaction runs on.
    var transport: TransportReliability { get }
    /// A timer of this transaction fired (stale fires return no actions).
    mutating func timerFired(_ timer: TransactionTimer) -> TransactionActions
    /// Sending failed.
    mutating func transportError() -> TransactionActions
}

/// A client transaction: the owner sends the request, then reports responses.
public protocol ClientTransactionMachine: TransactionMachine {
    /// The owner sent the request.
    mutating func requestSent() -> TransactionActions
    /// A response matching the transaction arrived.
    mutating func responseReceived(_ statusCode: Int) -> TransactionActions
}

/// A server transaction: created from a received request; absorbs its retransmissions and sends
/// the TU's responses.
public protocol ServerTransactionMachine: TransactionMachine {
    /// The request arrived again.
    mutating func requestRetransmitted() -> TransactionActions
    /// The TU handed over a response.
    mutating func tuSentResponse(_ statusCode: Int) -> TransactionActions
}

extension InviteClientTransaction: ClientTransactionMachine {
    /// True in `.terminated`.
    public var isTerminated: Bool { state == .terminated }
}

extension NonInviteClientTransaction: ClientTransactionMachine {
    /// True in `.terminated`.
    public var isTerminated: Bool { state == .terminated }
}

extension InviteServerTransaction: ServerTransactionMachine {
    /// True in `.terminated`.
    public var isTerminated: Bool { state == .terminated }
}

extension NonInviteServerTransaction: ServerTransactionMachine {
    /// True in `.terminated`.
    public var isTerminated: Bool { state == .terminated }
}
