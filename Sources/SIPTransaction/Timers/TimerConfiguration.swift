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
    // Stored as nanoseconds (-1: not set, follows T1): a copy lives in every transaction machine, and
    // eleven Durations (16 bytes, 24 as optionals) made it 224 bytes; now 88.
    private var ns: (t1: Int64, t2: Int64, t4: Int64, c: Int64, d: Int64,
                     b: Int64, f: Int64, h: Int64, j: Int64, l: Int64, m: Int64)

    /// RTT estimate: the first retransmission interval (Timers A, E, G). Default 500 ms.
    public var t1: Duration {
        get { Duration(nanosecondCount: ns.t1) }
        set { ns.t1 = Self.nanos(newValue) }
    }
    /// The maximum retransmission interval for non-INVITE requests and INVITE responses. Default 4 s.
    public var t2: Duration {
        get { Duration(nanosecondCount: ns.t2) }
        set { ns.t2 = Self.nanos(newValue) }
    }
    /// The maximum time a message stays in the network (Timers I and K). Default 5 s.
    public var t4: Duration {
        get { Duration(nanosecondCount: ns.t4) }
        set { ns.t4 = Self.nanos(newValue) }
    }
    /// Timer C, the proxy's INVITE transaction timeout after the last provisional response
    /// (RFC 3261 §16.6 step 11: more than 3 minutes). Default 180 s.
    public var timerC: Duration {
        get { Duration(nanosecondCount: ns.c) }
        set { ns.c = Self.nanos(newValue) }
    }
    /// Timer D, how long an INVITE client transaction absorbs retransmitted final responses
    /// (unreliable transports; at least 32 s). Default 32 s.
    public var timerD: Duration {
        get { Duration(nanosecondCount: ns.d) }
        set { ns.d = Self.nanos(newValue) }
    }

    /// The RFC 3261 defaults: T1 500 ms, T2 4 s, T4 5 s, Timer C 180 s, Timer D 32 s, and 64*T1 for
    /// Timers B, F, H, J, L and M unless given.
    public init(
        t1: Duration = .milliseconds(500), t2: Duration = .seconds(4), t4: Duration = .seconds(5),
        timerB: Duration? = nil, timerC: Duration = .seconds(180), timerD: Duration = .seconds(32),
        timerF: Duration? = nil, timerH: Duration? = nil, timerJ: Duration? = nil,
        timerL: Duration? = nil, timerM: Duration? = nil
    ) {
        func opt(_ d: Duration?) -> Int64 { d.map(Self.nanos) ?? -1 }
        ns = (Self.nanos(t1), Self.nanos(t2), Self.nanos(t4), Self.nanos(timerC), Self.nanos(timerD),
              opt(timerB), opt(timerF), opt(timerH), opt(timerJ), opt(timerL), opt(timerM))
    }

    /// The RFC 3261 defaults.
    public static let rfc3261 = TimerConfiguration()

    /// Timer B, the INVITE client transaction timeout while no response has arrived. Default 64*T1.
    public var timerB: Duration {
        get { follow(ns.b) }
        set { ns.b = Self.nanos(newValue) }
    }
    /// Timer F, the non-INVITE client transaction timeout. Default 64*T1.
    public var timerF: Duration {
        get { follow(ns.f) }
        set { ns.f = Self.nanos(newValue) }
    }
    /// Timer H, how long an INVITE server transaction waits for the ACK of a non-2xx final. Default 64*T1.
    public var timerH: Duration {
        get { follow(ns.h) }
        set { ns.h = Self.nanos(newValue) }
    }
    /// Timer J, how long a non-INVITE server transaction absorbs request retransmissions after its
    /// final response (unreliable transports). Default 64*T1.
    public var timerJ: Duration {
        get { follow(ns.j) }
        set { ns.j = Self.nanos(newValue) }
    }
    /// Timer L (RFC 6026), how long an INVITE server transaction stays Accepted after a 2xx. Default 64*T1.
    public var timerL: Duration {
        get { follow(ns.l) }
        set { ns.l = Self.nanos(newValue) }
    }
    /// Timer M (RFC 6026), how long an INVITE client transaction stays Accepted after a 2xx. Default 64*T1.
    public var timerM: Duration {
        get { follow(ns.m) }
        set { ns.m = Self.nanos(newValue) }
    }
    /// Timer I, how long an INVITE server transaction absorbs ACK retransmissions (unreliable). T4.
    public var timerI: Duration { t4 }
    /// Timer K, how long a non-INVITE client transaction absorbs response retransmissions (unreliable). T4.
    public var timerK: Duration { t4 }

    @inline(__always) private func follow(_ v: Int64) -> Duration { v < 0 ? t1 * 64 : Duration(nanosecondCount: v) }

    /// Whole nanoseconds of a duration (negative durations count as 0; beyond ~292 years saturate).
    private static func nanos(_ d: Duration) -> Int64 {
        let (s, a) = d.components
        guard s >= 0, a >= 0 else { return 0 }
        let (m, overflow) = s.multipliedReportingOverflow(by: 1_000_000_000)
        return overflow ? .max : m &+ a / 1_000_000_000
    }

    public static func == (a: TimerConfiguration, b: TimerConfiguration) -> Bool {
        a.ns.t1 == b.ns.t1 && a.ns.t2 == b.ns.t2 && a.ns.t4 == b.ns.t4 && a.ns.c == b.ns.c && a.ns.d == b.ns.d
            && a.ns.b == b.ns.b && a.ns.f == b.ns.f && a.ns.h == b.ns.h && a.ns.j == b.ns.j && a.ns.l == b.ns.l
            && a.ns.m == b.ns.m
    }

    public func hash(into h: inout Hasher) {
        for v in [ns.t1, ns.t2, ns.t4, ns.c, ns.d, ns.b, ns.f, ns.h, ns.j, ns.l, ns.m] { h.combine(v) }
    }
}
