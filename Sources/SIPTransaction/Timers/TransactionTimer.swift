/// The transaction timers of RFC 3261 §17 (A to K) and RFC 6026 (L, M).
///
/// Each machine starts and stops its own timers through `TransactionAction.startTimer` and
/// `.stopTimer`; the owner keeps one timer per (transaction, timer) pair, e.g. in a `TimerWheel`, and
/// reports expiry with the machine's `timerFired(_:)` event.
public enum TransactionTimer: String, Sendable, Hashable, CaseIterable {
    /// INVITE client: request retransmission (T1, doubling; unreliable transports only).
    case A
    /// INVITE client: timeout while Calling (64*T1).
    case B
    /// INVITE client in a proxy: timeout after the last provisional response (> 3 min); also the
    /// wait for a final response after the branch was CANCELled (64*T1).
    case C
    /// INVITE client: wait in Completed for response retransmissions (32 s unreliable, 0 reliable).
    case D
    /// Non-INVITE client: request retransmission (T1 doubling up to T2; unreliable only).
    case E
    /// Non-INVITE client: timeout (64*T1).
    case F
    /// INVITE server: final response retransmission (T1 doubling up to T2; unreliable only).
    case G
    /// INVITE server: wait for the ACK of a non-2xx final (64*T1).
    case H
    /// INVITE server: wait in Confirmed for ACK retransmissions (T4 unreliable, 0 reliable).
    case I
    /// Non-INVITE server: wait in Completed for request retransmissions (64*T1 unreliable, 0 reliable).
    case J
    /// Non-INVITE client: wait in Completed for response retransmissions (T4 unreliable, 0 reliable).
    case K
    /// INVITE server (RFC 6026): wait in Accepted for INVITE retransmissions and 2xx from the TU (64*T1).
    case L
    /// INVITE client (RFC 6026): wait in Accepted for 2xx retransmissions (64*T1).
    case M
}

/// Whether the transport under a transaction retransmits by itself.
///
/// On a reliable transport (TCP, TLS, SCTP, WebSocket) the transaction layer does not retransmit
/// (no Timers A, E, G) and does not linger to absorb retransmissions (Timers D, I, J, K are zero).
public enum TransportReliability: Sendable, Hashable {
    /// UDP: the transaction retransmits and absorbs retransmissions.
    case unreliable
    /// TCP, TLS, SCTP, WS, WSS.
    case reliable

    /// True for `.reliable`.
    public var isReliable: Bool { self == .reliable }
}
