/// The peer state machine of RFC 6733 §5.6 with the transport watchdog of RFC 3539 §3.4 layered on
/// the open state, as a pure value type: events in (with the current time), actions out; no I/O, no
/// clock of its own. The transport turns actions into bytes and connections; tests drive it as
/// traces with a mock clock.
public struct PeerStateMachine: Sendable, Equatable {
    /// RFC 6733 §5.6 states.
    public enum State: String, Sendable, Equatable {
        case closed = "Closed", waitConnAck = "Wait-Conn-Ack", waitICEA = "Wait-I-CEA"
        case waitConnAckElect = "Wait-Conn-Ack/Elect", waitReturns = "Wait-Returns"
        case rOpen = "R-Open", iOpen = "I-Open", closing = "Closing"
    }
    /// RFC 3539 §3.4.1 watchdog states (meaningful while the connection is open).
    public enum Watchdog: String, Sendable, Equatable {
        case initial = "INITIAL", okay = "OKAY", suspect = "SUSPECT", down = "DOWN", reopen = "REOPEN"
    }
    /// Which of the (up to) two connections to the peer an event or action concerns.
    public enum Conn: String, Sendable, Equatable { case initiator = "I", responder = "R" }

    public enum Event: Sendable, Equatable {
        /// Administrative start (enable_peer, startup) for a peer Starling connects to.
        case start
        /// Administrative stop (disable_peer, shutdown): DPR, then close.
        case stop
        /// The outgoing connection was established / failed.
        case connAck, connNack
        /// An incoming connection delivered a CER from this peer; `result` is the capability
        /// exchange outcome (2001, or 5010 when no application is shared, 3010 unknown peer...).
        case rConnCER(result: UInt32)
        /// A CEA arrived on the initiator connection with its Result-Code.
        case rcvCEA(result: UInt32)
        /// A message other than CEA arrived while a CEA was awaited.
        case rcvNonCEA
        case rcvDWR(Conn), rcvDWA(Conn), rcvDPR(Conn), rcvDPA(Conn)
        /// Any other message (requests and answers of applications).
        case rcvMessage(Conn)
        /// The connection closed (peer or error).
        case peerDisc(Conn)
    }

    public enum Action: Sendable, Equatable {
        case connect
        case sendCER, sendCEA(Conn, result: UInt32)
        case sendDWR(Conn), sendDWA(Conn), sendDPR(Conn), sendDPA(Conn)
        /// Close this connection.
        case disconnect(Conn)
        /// Keep the incoming connection as the peer's responder connection.
        case accept
        /// Refuse a second incoming connection (close it without answering).
        case reject
        /// The connection used for messages is now this one (open); route to the peer.
        case opened(Conn)
        /// No connection is open any more: pending requests must fail over.
        case closed
        /// RFC 3539 Failover(): stop routing to the peer, move its pending requests elsewhere.
        case failover
        /// RFC 3539 Failback(): the peer may be routed to again.
        case failback
        /// Application messages received in REOPEN are dropped (RFC 3539 Throwaway()).
        case throwaway(Conn)
    }

    public struct Timers: Sendable, Equatable {
        /// RFC 3539 Tw (RFC 6733 recommends 30 s; at least 6 s in production).
        public var tw: Int64
        /// Largest jitter added to or taken from Tw (RFC 3539: ±2 s).
        public var twJitter: Int64
        /// Wait for the connection and for CEA/DPA before giving up.
        public var handshake: Int64
        /// Closed with a connect address: the next attempt at most this long after the last.
        public var reconnect: Int64
        public init(tw: Int64 = 30_000, twJitter: Int64 = 2_000, handshake: Int64 = 10_000, reconnect: Int64 = 1_000) {
            self.tw = tw; self.twJitter = twJitter; self.handshake = handshake; self.reconnect = reconnect
        }
    }

    public private(set) var state: State = .closed
    public private(set) var watchdog: Watchdog = .initial
    /// Starling's and the peer's Origin-Host (the election compares them as octet strings).
    public let localHost: String
    public let peerHost: String
    /// Whether Starling opens connections to this peer (a `connect` address is configured).
    public let initiates: Bool
    public var timers: Timers
    /// Administratively enabled (cdp.enable_peer / disable_peer).
    public private(set) var enabled = true

    /// The open connection while I-Open/R-Open.
    public private(set) var openConn: Conn?
    private var hasInitiator = false
    private var hasResponder = false
    /// State deadline (handshake / DPA / reconnect), milliseconds on the caller's clock.
    private var deadline: Int64?
    /// RFC 3539 timer and variables.
    private var watchdogAt: Int64?
    private var pending = false
    private var numDWA = 0
    /// Once open and lost, the next connection Starling opens starts in REOPEN (3 DWAs before it is
    /// used). A peer that connects to Starling (a client) opens straight into OKAY: it reconnects
    /// when it has something to send.
    private var wasOpen = false
    private var jitterSeed: UInt64

    public init(localHost: String, peerHost: String, initiates: Bool, timers: Timers = Timers(), seed: UInt64 = 1) {
        self.localHost = localHost
        self.peerHost = peerHost
        self.initiates = initiates
        self.timers = timers
        jitterSeed = seed | 1
    }

    /// Whether requests may be routed to the peer: open and the watchdog OKAY.
    public var isUsable: Bool { (state == .iOpen || state == .rOpen) && watchdog == .okay && enabled }
    public var isOpen: Bool { state == .iOpen || state == .rOpen }

    /// The earliest time `tick` has something to do.
    public var nextDeadline: Int64? {
        switch (deadline, watchdogAt) {
        case let (a?, b?): return min(a, b)
        case let (a?, nil): return a
        case let (nil, b): return b
        }
    }

    /// Marks the peer disabled (stop) or enabled (start again).
    public mutating func setEnabled(_ on: Bool, now: Int64) -> [Action] {
        guard on != enabled else { return [] }
        enabled = on
        if on {
            if initiates && state == .closed { return handle(.start, now: now) }
            return []
        }
        return handle(.stop, now: now)
    }

    /// Initial start for a peer Starling connects to (no-op otherwise).
    public mutating func begin(now: Int64) -> [Action] {
        guard initiates, enabled, state == .closed else { return [] }
        return handle(.start, now: now)
    }

    // MARK: Events

    public mutating func handle(_ event: Event, now: Int64) -> [Action] {
        var out: [Action] = []
        switch (state, event) {
        case (.closed, .start):
            guard enabled, initiates else { return [] }
            hasInitiator = true
            out.append(.connect)
            enter(.waitConnAck, deadline: now + timers.handshake)
        case (.closed, .rConnCER(let result)):
            out.append(.accept)
            out.append(.sendCEA(.responder, result: result))
            if result == DiameterResult.success && enabled {
                hasResponder = true
                out += open(.responder, now: now)
            } else {
                out.append(.disconnect(.responder))
                closedDeadline(now)
            }

        case (.waitConnAck, .connAck):
            out.append(.sendCER)
            enter(.waitICEA, deadline: now + timers.handshake)
        case (.waitConnAck, .connNack), (.waitConnAck, .peerDisc(.initiator)):
            hasInitiator = false
            toClosed(now, &out, wasOpenBefore: false)
        case (.waitConnAck, .rConnCER(let result)):
            if result != DiameterResult.success {
                out += [.accept, .sendCEA(.responder, result: result), .disconnect(.responder)]
                break
            }
            out.append(.accept)
            hasResponder = true
            state = .waitConnAckElect

        case (.waitConnAckElect, .connAck):
            out.append(.sendCER)
            state = .waitReturns
            if winsElection { out += winElection(now) }
        case (.waitConnAckElect, .connNack), (.waitConnAckElect, .peerDisc(.initiator)):
            hasInitiator = false
            out.append(.sendCEA(.responder, result: DiameterResult.success))
            out += open(.responder, now: now)
        case (.waitConnAckElect, .peerDisc(.responder)):
            hasResponder = false
            state = .waitConnAck
        case (.waitConnAckElect, .rConnCER):
            out.append(.reject)

        case (.waitICEA, .rcvCEA(let result)):
            if result == DiameterResult.success {
                out += open(.initiator, now: now)
            } else {
                out.append(.disconnect(.initiator))
                hasInitiator = false
                toClosed(now, &out, wasOpenBefore: false)
            }
        case (.waitICEA, .rConnCER(let result)):
            if result != DiameterResult.success {
                out += [.accept, .sendCEA(.responder, result: result), .disconnect(.responder)]
                break
            }
            out.append(.accept)
            hasResponder = true
            state = .waitReturns
            if winsElection { out += winElection(now) }
        case (.waitICEA, .peerDisc(.initiator)), (.waitICEA, .rcvNonCEA):
            if event == .rcvNonCEA { out.append(.disconnect(.initiator)) }
            hasInitiator = false
            toClosed(now, &out, wasOpenBefore: false)

        case (.waitReturns, .peerDisc(.initiator)):
            hasInitiator = false
            out.append(.sendCEA(.responder, result: DiameterResult.success))
            out += open(.responder, now: now)
        case (.waitReturns, .rcvCEA(let result)):
            out.append(.disconnect(.responder))
            hasResponder = false
            if result == DiameterResult.success {
                out += open(.initiator, now: now)
            } else {
                out.append(.disconnect(.initiator))
                hasInitiator = false
                toClosed(now, &out, wasOpenBefore: false)
            }
        case (.waitReturns, .peerDisc(.responder)):
            hasResponder = false
            state = .waitICEA
        case (.waitReturns, .rConnCER):
            out.append(.reject)

        case (.iOpen, _), (.rOpen, _):
            out += handleOpen(event, now: now)

        case (.closing, .rcvDPA(let c)), (.closing, .peerDisc(let c)):
            if case .rcvDPA = event { out.append(.disconnect(c)) }
            clearConn(c)
            toClosed(now, &out, wasOpenBefore: false)
        case (.closing, .rcvDWR(let c)):
            out.append(.sendDWA(c))
        case (.closing, .rConnCER):
            out.append(.reject)

        case (_, .stop):
            // Not open: drop whatever connection attempt is under way.
            if hasInitiator { out.append(.disconnect(.initiator)) }
            if hasResponder { out.append(.disconnect(.responder)) }
            hasInitiator = false
            hasResponder = false
            toClosed(now, &out, wasOpenBefore: false)
        case (_, .peerDisc(let c)):
            clearConn(c)
        default:
            break
        }
        return out
    }

    /// Events on an open connection (RFC 6733 I-Open/R-Open rows, RFC 3539 receive rows).
    private mutating func handleOpen(_ event: Event, now: Int64) -> [Action] {
        var out: [Action] = []
        let conn = openConn ?? .initiator
        switch event {
        case .rcvDWR(let c) where c == conn:
            out.append(.sendDWA(c))
            out += receivedNonDWA(now)
        case .rcvDWA(let c) where c == conn:
            out += receivedDWA(now)
        case .rcvMessage(let c) where c == conn:
            if watchdog == .reopen { out.append(.throwaway(c)) }
            out += receivedNonDWA(now)
        case .rcvDPR(let c) where c == conn:
            out += [.sendDPA(c), .disconnect(c)]
            clearConn(c)
            toClosed(now, &out, wasOpenBefore: true)
        case .peerDisc(let c) where c == conn:
            clearConn(c)
            toClosed(now, &out, wasOpenBefore: true)
        case .peerDisc(let c):
            clearConn(c)
        case .rConnCER:
            out.append(.reject)
        case .stop:
            out.append(.sendDPR(conn))
            out.append(.closed)
            if watchdog == .okay { out.append(.failover) }
            watchdogAt = nil
            watchdog = .initial
            enter(.closing, deadline: now + timers.handshake)
        default:
            break
        }
        return out
    }

    // MARK: Timers

    /// Fires the timers due at `now`.
    public mutating func tick(now: Int64) -> [Action] {
        var out: [Action] = []
        if let d = deadline, now >= d {
            deadline = nil
            switch state {
            case .closed:
                if enabled && initiates { out += handle(.start, now: now) }
            case .waitConnAck, .waitICEA, .waitConnAckElect, .waitReturns:
                if hasInitiator { out.append(.disconnect(.initiator)) }
                if hasResponder { out.append(.disconnect(.responder)) }
                hasInitiator = false
                hasResponder = false
                toClosed(now, &out, wasOpenBefore: false)
            case .closing:
                if hasInitiator { out.append(.disconnect(.initiator)) }
                if hasResponder { out.append(.disconnect(.responder)) }
                hasInitiator = false
                hasResponder = false
                toClosed(now, &out, wasOpenBefore: false)
            case .iOpen, .rOpen:
                break
            }
        }
        if let w = watchdogAt, now >= w, isOpen, let conn = openConn {
            switch watchdog {
            case .okay:
                if !pending {
                    out.append(.sendDWR(conn))
                    pending = true
                } else {
                    out.append(.failover)
                    watchdog = .suspect
                }
                setWatchdog(now)
            case .suspect:
                // RFC 3539: CloseConnection() -> DOWN; here the connection goes and the 6733 machine closes.
                out.append(.disconnect(conn))
                clearConn(conn)
                watchdog = .down
                toClosed(now, &out, wasOpenBefore: true, failoverDone: true)
            case .reopen:
                if !pending {
                    out.append(.sendDWR(conn))
                    pending = true
                    setWatchdog(now)
                } else if numDWA < 0 {
                    out.append(.disconnect(conn))
                    clearConn(conn)
                    toClosed(now, &out, wasOpenBefore: true, failoverDone: true)
                } else {
                    numDWA = -1
                    setWatchdog(now)
                }
            case .initial, .down:
                setWatchdog(now)
            }
        }
        return out
    }

    // MARK: Helpers

    /// RFC 6733 §5.6.4: the side with the higher Origin-Host wins.
    private var winsElection: Bool { Array(localHost.utf8).lexicographicallyPrecedes(Array(peerHost.utf8)) == false && localHost != peerHost }

    /// Win-Election in Wait-Returns: drop our own connection and answer the peer's CER.
    private mutating func winElection(_ now: Int64) -> [Action] {
        hasInitiator = false
        return [.disconnect(.initiator), .sendCEA(.responder, result: DiameterResult.success)] + open(.responder, now: now)
    }

    private mutating func open(_ c: Conn, now: Int64) -> [Action] {
        state = c == .initiator ? .iOpen : .rOpen
        openConn = c
        deadline = nil
        pending = false
        var out: [Action] = [.opened(c)]
        if wasOpen && initiates {
            // RFC 3539 DOWN + ConnectionUp: REOPEN, a DWR at once; three DWAs before failback.
            watchdog = .reopen
            numDWA = 0
            pending = true
            out.append(.sendDWR(c))
        } else {
            watchdog = .okay
            out.append(.failback)
        }
        setWatchdog(now)
        return out
    }

    private mutating func receivedDWA(_ now: Int64) -> [Action] {
        var out: [Action] = []
        switch watchdog {
        case .okay:
            pending = false
        case .suspect:
            pending = false
            watchdog = .okay
            out.append(.failback)
        case .reopen:
            if pending {
                pending = false
                if numDWA >= 2 {
                    watchdog = .okay
                    out.append(.failback)
                } else {
                    numDWA += 1
                }
            }
        case .initial, .down:
            break
        }
        setWatchdog(now)
        return out
    }

    private mutating func receivedNonDWA(_ now: Int64) -> [Action] {
        switch watchdog {
        case .okay:
            setWatchdog(now)
            return []
        case .suspect:
            watchdog = .okay
            setWatchdog(now)
            return [.failback]
        default:
            return []
        }
    }

    private mutating func setWatchdog(_ now: Int64) {
        var j: Int64 = 0
        if timers.twJitter > 0 {
            jitterSeed = jitterSeed &* 6364136223846793005 &+ 1442695040888963407
            j = Int64(jitterSeed >> 33) % (2 * timers.twJitter + 1) - timers.twJitter
        }
        watchdogAt = now + max(1, timers.tw + j)
    }

    private mutating func enter(_ s: State, deadline d: Int64?) {
        state = s
        deadline = d
    }

    private mutating func clearConn(_ c: Conn) {
        if c == .initiator { hasInitiator = false } else { hasResponder = false }
        if openConn == c { openConn = nil }
    }

    private mutating func closedDeadline(_ now: Int64) {
        state = .closed
        deadline = initiates && enabled ? now + timers.reconnect : nil
    }

    private mutating func toClosed(_ now: Int64, _ out: inout [Action], wasOpenBefore: Bool, failoverDone: Bool = false) {
        if wasOpenBefore {
            wasOpen = true
            out.append(.closed)
            if watchdog == .okay && !failoverDone { out.append(.failover) }
            watchdog = .down
        }
        openConn = nil
        watchdogAt = nil
        pending = false
        closedDeadline(now)
    }
}
