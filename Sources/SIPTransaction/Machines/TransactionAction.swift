/// What a transaction state machine asks its owner to do, in order, after an event.
///
/// The machines hold no message bytes and do no I/O: the owner keeps the request, the last response
/// and the ACK, and carries out these actions. Each machine emits only the cases documented for it.
///
/// Conventions:
/// - `.startTimer` for a timer that is already running restarts it with the new duration.
/// - `.terminate` ends the transaction: the owner cancels all of its timers and removes it from the
///   table. Machines do not emit `.stopTimer` before `.terminate`.
/// - Timers whose fire would be stale are stopped with `.stopTimer`; a stale `timerFired` that races
///   with a stop is ignored by the machines anyway (it returns no actions).
public enum TransactionAction: Sendable, Hashable, CustomStringConvertible {
    /// Server: send this response from the TU for the first time, and keep it as the last response
    /// (the one `.retransmitResponse` repeats).
    case sendResponse(Int)
    /// Client: send the request again (Timers A and E).
    case retransmitRequest
    /// Server: send the last response again (Timer G, or an absorbed request retransmission).
    case retransmitResponse
    /// INVITE client: build the ACK for the non-2xx final response (`SIPBuilder.ackForNon2xx`), send
    /// it and keep it.
    case sendACK
    /// INVITE client: send the kept ACK again (the final response was retransmitted).
    case retransmitACK
    /// Start (or restart) a timer.
    case startTimer(TransactionTimer, after: Duration)
    /// Stop a timer that is no longer needed.
    case stopTimer(TransactionTimer)
    /// Client: pass the response with this status code to the TU.
    case passToTU(Int)
    /// INVITE server in Accepted (RFC 6026): pass the ACK to the TU (a proxy forwards it).
    case passACKToTU
    /// The transaction timed out (Timers B, F, H, or C after a CANCEL): tell the TU (a client TU acts
    /// as if a 408 had been received, RFC 3261 §8.1.3.1 and §16.7).
    case timeoutToTU
    /// Sending failed (RFC 3261 §17.1.4, §17.2.4): tell the TU (a client TU acts as if a 503 had been
    /// received, §8.1.3.1).
    case transportErrorToTU
    /// INVITE client: the TU must CANCEL this branch (a CANCEL was asked for, or Timer C fired after a
    /// provisional response, §16.8). The CANCEL is its own non-INVITE client transaction.
    case cancelBranch
    /// The transaction is over: free it.
    case terminate

    /// A short trace form, e.g. `startTimer(A, 500 ms)`.
    public var description: String {
        switch self {
        case .sendResponse(let s): return "sendResponse(\(s))"
        case .retransmitRequest: return "retransmitRequest"
        case .retransmitResponse: return "retransmitResponse"
        case .sendACK: return "sendACK"
        case .retransmitACK: return "retransmitACK"
        case .startTimer(let t, let d): return "startTimer(\(t.rawValue), \(d))"
        case .stopTimer(let t): return "stopTimer(\(t.rawValue))"
        case .passToTU(let s): return "passToTU(\(s))"
        case .passACKToTU: return "passACKToTU"
        case .timeoutToTU: return "timeoutToTU"
        case .transportErrorToTU: return "transportErrorToTU"
        case .cancelBranch: return "cancelBranch"
        case .terminate: return "terminate"
        }
    }
}

extension Duration {
    /// The smaller of two durations.
    @inline(__always) static func min(_ a: Duration, _ b: Duration) -> Duration { a < b ? a : b }
}
