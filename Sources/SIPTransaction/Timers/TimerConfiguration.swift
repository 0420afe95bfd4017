/// The RFC 3261 transaction timers (§17 and Table 4 of Appendix A), with RFC 6026's Timers L and M.
///
/// T1, T2 and T4 are the base values; the other timers default to the multiples RFC 3261 gives and
/// follow T1 until they are set explicitly. Values for Timers D, I, J and K apply to unreliable
/// transports only: on a reliable transport those waits are zero and the machines terminate at once.
///
/// ```swift
/// var timers = TimerConfiguration()          // RFC defaults
/// timers.t1 = .milliseconds(100)             // B, F, H, J, L, M follow: 6.4 s
/// timers.timerB = .seconds(120)              // Kamailio's fr_inv_timer, say
/// ```
public struct TimerConfiguration: Sendable, Hashable {
    /// RTT estimate: the first retransmission interval (Timers A, E, G). Default 500 ms.
    public var t1: Duration
    /// The maximum retransmission interval for non-INVITE requests and INVITE responses. Default 4 s.
    public var t2: Duration
    /// The maximum time a message stays in the network (Timers I and K). Default 5 s.
    public var t4: Duration
    /// Timer C, the proxy's INVITE transaction timeout after the last provisional response
    /// (RFC 3261 §16.6 step 11: more than 3 minutes). Default 180 s.
    public var timerC: Duration
    /// Timer D, how long an INVITE client transaction absorbs retransmitted final responses
    /// (unreliable transports; at least 32 s). Default 32 s.
    public var timerD: Duration

    private var _timerB: Duration?
    private var _timerF: Duration?
    private var _timerH: Duration?
    private var _timerJ: Duration?
    private var _timerL: Duration?
    private var _timerM: Duration?

    /// The RFC 3261 defaults: T1 500 ms, T2 4 s, T4 5 s, Timer C 180 s, Timer D 32 s, and 64*T1 for
    /// Timers B, F, H, J, L and M unless given.
    public init(
        t1: Duration = .milliseconds(500), t2: Duration = .seconds(4), t4: Duration = .seconds(5),
        timerB: Duration? = nil, timerC: Duration = .seconds(180), timerD: Duration = .seconds(32),
        timerF: Duration? = nil, timerH: Duration? = nil, timerJ: Duration? = nil,
        timerL: Duration? = nil, timerM: Duration? = nil
    ) {
        self.t1 = t1
        self.t2 = t2
        self.t4 = t4
        self.timerC = timerC
        self.timerD = timerD
        _timerB = timerB
        _timerF = timerF
        _timerH = timerH
        _timerJ = timerJ
        _timerL = timerL
        _timerM = timerM
    }

    /// The RFC 3261 defaults.
    public static let rfc3261 = TimerConfiguration()

    /// Timer B, the INVITE client transaction timeout while no response has arrived. Default 64*T1.
    public var timerB: Duration {
        get { _timerB ?? t1 * 64 }
        set { _timerB = newValue }
    }
    /// Timer F, the non-INVITE client transaction timeout. Default 64*T1.
    public var timerF: Duration {
        get { _timerF ?? t1 * 64 }
        set { _timerF = newValue }
    }
    /// Timer H, how long an INVITE server transaction waits for the ACK of a non-2xx final. Default 64*T1.
    public var timerH: Duration {
        get { _timerH ?? t1 * 64 }
        set { _timerH = newValue }
    }
    /// Timer J, how long a non-INVITE server transaction absorbs request retransmissions after its
    /// final response (unreliable transports). Default 64*T1.
    public var timerJ: Duration {
        get { _timerJ ?? t1 * 64 }
        set { _timerJ = newValue }
    }
    /// Timer L (RFC 6026), how long an INVITE server transaction stays Accepted after a 2xx. Default 64*T1.
    public var timerL: Duration {
        get { _timerL ?? t1 * 64 }
        set { _timerL = newValue }
    }
    /// Timer M (RFC 6026), how long an INVITE client transaction stays Accepted after a 2xx. Default 64*T1.
    public var timerM: Duration {
        get { _timerM ?? t1 * 64 }
        set { _timerM = newValue }
    }
    /// Timer I, how long an INVITE server transaction absorbs ACK retransmissions (unreliable). T4.
    public var timerI: Duration { t4 }
    /// Timer K, how long a non-INVITE client transaction absorbs response retransmissions (unreliable). T4.
    public var timerK: Duration { t4 }
}
