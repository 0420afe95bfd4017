import SIPCore
import SIPTransport
import SIPTransaction
import StarlingKEMI
import Synchronization

/// The server side of a transaction: one of the two server machines.
enum ServerMachine: Sendable {
    case invite(InviteServerTransaction)
    case nonInvite(NonInviteServerTransaction)

    var isTerminated: Bool {
        switch self {
        case .invite(let m): return m.isTerminated
        case .nonInvite(let m): return m.isTerminated
        }
    }
    var lastStatus: Int {
        switch self {
        case .invite(let m): return m.lastStatus
        case .nonInvite(let m): return m.lastStatus
        }
    }
    mutating func tuSentResponse(_ code: Int) -> TransactionActions {
        switch self {
        case .invite(var m): let a = m.tuSentResponse(code); self = .invite(m); return a
        case .nonInvite(var m): let a = m.tuSentResponse(code); self = .nonInvite(m); return a
        }
    }
    mutating func requestRetransmitted() -> TransactionActions {
        switch self {
        case .invite(var m): let a = m.requestRetransmitted(); self = .invite(m); return a
        case .nonInvite(var m): let a = m.requestRetransmitted(); self = .nonInvite(m); return a
        }
    }
    mutating func ackReceived() -> TransactionActions {
        switch self {
        case .invite(var m): let a = m.ackReceived(); self = .invite(m); return a
        case .nonInvite: return []
        }
    }
    mutating func timerFired(_ t: TransactionTimer) -> TransactionActions {
        switch self {
        case .invite(var m): let a = m.timerFired(t); self = .invite(m); return a
        case .nonInvite(var m): let a = m.timerFired(t); self = .nonInvite(m); return a
        }
    }
}

/// The client side of one branch.
enum ClientMachine: Sendable {
    case invite(InviteClientTransaction)
    case nonInvite(NonInviteClientTransaction)

    var isTerminated: Bool {
        switch self {
        case .invite(let m): return m.isTerminated
        case .nonInvite(let m): return m.isTerminated
        }
    }
    mutating func requestSent() -> TransactionActions {
        switch self {
        case .invite(var m): let a = m.requestSent(); self = .invite(m); return a
        case .nonInvite(var m): let a = m.requestSent(); self = .nonInvite(m); return a
        }
    }
    mutating func responseReceived(_ code: Int) -> TransactionActions {
        switch self {
        case .invite(var m): let a = m.responseReceived(code); self = .invite(m); return a
        case .nonInvite(var m): let a = m.responseReceived(code); self = .nonInvite(m); return a
        }
    }
    mutating func timerFired(_ t: TransactionTimer) -> TransactionActions {
        switch self {
        case .invite(var m): let a = m.timerFired(t); self = .invite(m); return a
        case .nonInvite(var m): let a = m.timerFired(t); self = .nonInvite(m); return a
        }
    }
    mutating func cancelRequested() -> TransactionActions {
        switch self {
        case .invite(var m): let a = m.cancelRequested(); self = .invite(m); return a
        case .nonInvite: return []
        }
    }
    mutating func transportError() -> TransactionActions {
        switch self {
        case .invite(var m): let a = m.transportError(); self = .invite(m); return a
        case .nonInvite(var m): let a = m.transportError(); self = .nonInvite(m); return a
        }
    }
}

/// One outgoing branch of a transaction (Kamailio's `uac`).
struct TMBranch {
    var key: TransactionKey
    var branchID: String
    var machine: ClientMachine
    /// The request as sent on this branch.
    var request: [UInt8]
    var destination: SocketAddress
    var proto: SIPTransportProtocol
    var local: SocketAddress?
    /// The status of the last reply received (0: none).
    var lastStatus = 0
    /// The final status of the branch (a received final, or 408 on timeout; 0: pending).
    var finalStatus = 0
    /// The final reply, ready to be relayed upstream (top Via removed); nil for a local timeout.
    var finalReply: [UInt8]?
    var timedOut = false
    var replied = false
    /// The ACK for a non-2xx final (kept for retransmissions).
    var ack: [UInt8]?
    /// A CANCEL was sent on this branch.
    var cancelSent = false
    var cancelKey: TransactionKey?
    /// `t_drop_replies` in a failure route: this branch's reply is no longer a candidate.
    var dropped = false
    /// The final reply as received (all its Vias): `$T_rpl(...)`, `$T_reply_reason`.
    var replyMessage: UncheckedBox<SIPMessage>?
    /// The status of the reply before the last one (`$T_reply_last` in an onreply route).
    var previousStatus = 0
    /// The Request-URI this branch was sent with (`$T_branch(uri)`).
    var uri: [UInt8] = []
    /// Branch flags (`$T_branch(flags)`): the R-URI branch's `$bf`, 0 for the others.
    var flags: UInt32 = 0
    /// `t_replicate`: the replies of this branch are absorbed (no relay, no failure route, not a candidate).
    var replicated = false
    /// DNS failover: the other addresses the next hop resolved to, not tried yet.
    var alternates: [SocketAddress] = []
    /// A DNS failover branch was already created for this branch.
    var failedOver = false

    var isPending: Bool { finalStatus == 0 }
}

/// A timer a cell scheduled: its side (see `TMTimer`), which timer, its handle in the worker's wheel.
struct TMTimerSlot: Sendable {
    let side: Int
    let timer: TransactionTimer
    var handle: TimerHandle
}

/// A box for values that are only touched under the cell's lock or by the one worker routing it.
struct UncheckedBox<T>: @unchecked Sendable {
    var value: T
}

/// The same, out of line: for a large value a cell keeps only sometimes (a `MessageState` is hundreds
/// of bytes; inline in every cell it was paid by every transaction in the wait state too).
final class UncheckedRef<T>: @unchecked Sendable {
    let value: T
    init(value: consuming T) { self.value = value }
}

extension UncheckedRef where T == MessageState {
    /// A route's state as the transaction keeps it, without its transaction (the cell keeps the state:
    /// no cycle). Reading `ctx.state` makes the one copy, moved from there into the box: copying it
    /// into a local and then into the box cost a second copy and destroy of every field (~1,800
    /// instructions per transaction).
    convenience init(relaying state: consuming MessageState) {
        state.transaction = nil
        self.init(value: state)
    }
}

/// A transaction (Kamailio's cell): the server machine, the request, the branches. Every mutable field is
/// guarded by `lock`; Lua never runs while it is held.
final class TMCell: @unchecked Sendable, Hashable, RouteTransaction {
    let id: UInt64
    let serverKey: TransactionKey
    /// The request's method, and its name.
    let requestMethod: SIPMethod
    let method: String
    var isInvite: Bool { requestMethod == .invite }
    /// The worker queue that runs this transaction's timers.
    let timers: TMTimerQueue
    private let mutex = Mutex(())
    /// The timers this cell scheduled in `timers`, one entry per side and timer (guarded by `lock`;
    /// the handle of a timer that fired is stale and left in place until it is scheduled again).
    private var timerHandles: [TMTimerSlot] = []

    // Guarded by `lock`.
    var server: ServerMachine
    /// The request as received, with the edits the script made (the failure route's message). A
    /// finished transaction keeps it parked (`parkRequest`); reading it parses it again.
    var request: SIPMessage {
        switch heldRequest {
        case .live(let m):
            return m
        case .parked(let p):
            let m = p.message()
            heldRequest = .live(m)
            return m
        }
    }
    private enum HeldRequest {
        case live(SIPMessage)
        case parked(SIPMessage.Parked)
    }
    private var heldRequest: HeldRequest

    /// The request is parked (cell locked).
    var isRequestParked: Bool {
        if case .parked = heldRequest { return true }
        return false
    }

    /// Whether `m` is the transaction's request object (cell locked). A parked request is no route's
    /// message.
    func isRequest(_ m: SIPMessage) -> Bool {
        if case .live(let r) = heldRequest { return r === m }
        return false
    }

    /// The request without unparking it (cell locked): for a scan over many transactions, which would
    /// otherwise leave every request it read parsed.
    func peekRequest() -> SIPMessage {
        switch heldRequest {
        case .live(let m): return m
        case .parked(let p): return p.message()
        }
    }
    var received: ReceiveInfo
    var replyDestination: SocketAddress
    var config: TimerConfiguration
    var lastResponse: [UInt8]?
    var branches: [TMBranch] = []
    var onFailure = ""
    var onReply = ""
    var onBranch = ""
    var onBranchFailure = ""
    var canceled = false
    var expired = false
    /// The message flags of the request (`$mf`): as the request route relayed it, then as failure
    /// routes and `t_flush_flags` leave them (Kamailio's `t->uas.request->flags`).
    var messageFlags: UInt32 = 0
    /// The request as the request route relayed it (Kamailio's `t->uas.request`): `$du`, R-URI edits,
    /// flags, Record-Route, advertised address, rport... The failure route starts from it (`fake_req`);
    /// its `transaction` is nil (the cell does not keep itself).
    var relayed: UncheckedRef<MessageState>?
    /// The request route that created the transaction is still running (on its worker): the request
    /// must not be routed elsewhere (failure route) until it ends.
    var routeBusy = true
    /// A failure route is running (on some worker).
    var inFailureRoute = false
    /// Branches added by the failure route that is running.
    var branchesAddedInFailure = false
    /// The code the failure route sees (the winning one).
    var failureCode = 0
    var freed = false
    /// `$avp` / `$xavp` of the transaction (Kamailio keeps them in the cell): saved when the request
    /// route relays and ends, restored in failure / onreply / branch-failure routes.
    var avps: [String: [KemiValue]] = [:]
    var xavps: [String: [[String: [KemiValue]]]] = [:]
    /// Per-transaction switches (`t_set_disable_6xx`, `t_set_disable_failover`,
    /// `t_set_disable_internal_reply`), defaulted from `[modparam.tm]`.
    var disable6xx = false
    var disableFailover = false
    var disableInternalReply = false
    /// The reply drop mode of the running failure route (failure_reply_mode, or `t_drop_replies`):
    /// 0 keep all, 1 / 3 drop all earlier branches, 2 drop the branches of the leg that just failed.
    var dropMode = 3
    /// The first branch of the current serial-forking leg.
    var legStart = 0
    /// The last relay error of the request route (`t_relay` failed, nothing sent): the delayed internal
    /// reply Kamailio sends when the script does not reply.
    var relayError = 0
    /// A transaction of our own (`t_uac_send`): no server side, replies are absorbed.
    var isLocal = false
    /// For a local transaction: called (outside the lock, on the worker that handled it) with its final
    /// reply, or with 408 and no reply when it timed out, and the request as sent (KSR.uac).
    var localReply: (@Sendable (RouteContext, Int, SIPMessage?, [UInt8]) -> Void)?
    /// The next number for a branch id (`...<cell>.<n>`): reserved under the lock, so that branches
    /// added at once by two workers (a failover and a relay) never share an id.
    var branchSerial = 0
    /// Per-transaction callbacks of other modules (dialog): a response left upstream (code, the
    /// relayed reply or nil for a local one). Called outside the lock.
    var observers: [@Sendable (RouteContext, TMCell, Int, SIPMessage?) -> Void] = []
    /// The store's freed hooks run for this cell when it is freed (a dialog is attached).
    var watchFree = false
    /// `t_suspend`: waiting for `t_continue` (it is in the store's `suspendedCells`), and the index of
    /// its blind branch (-1: none).
    var suspended = false
    var blindBranch = -1
    /// `t_suspend` in an onreply route: the reply whose processing waits for `t_continue` (its
    /// branch, and the reply route's state: the reply, where it came from), nil otherwise.
    var suspendedReply: (branch: Int, state: UncheckedRef<MessageState>)?

    /// Frees what a finished transaction no longer needs (cell locked): once the final response went
    /// upstream and no route uses the cell, a branch that has its final reply keeps only what the
    /// wait state uses (its key and machine for absorbing retransmissions, the ACK of a negative reply,
    /// its status and URI for the pseudo-variables); its request bytes, its final reply and the parsed
    /// reply go, as does the request as relayed (a later local reply is built from `request`). At
    /// 1000 calls/s the 5 s wait state holds ~10,000 transactions: this is about a third of their memory.
    /// The final response sent upstream stays (retransmissions of the request get it again), copied
    /// to its exact size. The request is parked: its bytes and edits stay, its parse state goes
    /// (about 1.2 KB of each held transaction); a later route that asks for it parses it again.
    func shedFinished() {
        guard !isLocal, finalSent, !inFailureRoute, !routeBusy, !freed else { return }
        relayed = nil
        parkRequest()
        // The final response, kept for retransmissions, was serialized with room to grow (256 bytes);
        // an exact copy for the wait state.
        if let r = lastResponse, r.capacity > r.count + 128 { lastResponse = r.withUnsafeBufferPointer { Array($0) } }
        for i in branches.indices where !branches[i].isPending && !branches[i].request.isEmpty {
            branches[i].request = []
            branches[i].finalReply = nil
            branches[i].replyMessage = nil
        }
    }

    /// Keeps the request as bytes and edits (cell locked). A worker may still hold the message for a
    /// while (the last message it keyed, its dialog context): that reference goes with the worker's next
    /// message, and no route edits a finished transaction's request.
    func parkRequest() {
        if case .live(let m) = heldRequest { heldRequest = .parked(m.parked()) }
    }

    /// Starts (or moves) timer `t` of `side` (`TMCore.serverSide`, `TMCore.lifetime` or a branch
    /// index) to fire after `d` (cell locked).
    func startTimer(_ t: TransactionTimer, side: Int, after d: Duration) {
        if let i = timerHandles.firstIndex(where: { $0.side == side && $0.timer == t }) {
            let h = timerHandles[i].handle
            timerHandles[i].handle = timers.schedule(TMTimer(cell: self, side: side, timer: t), after: d, replacing: h)
        } else {
            let h = timers.schedule(TMTimer(cell: self, side: side, timer: t), after: d, replacing: nil)
            timerHandles.append(TMTimerSlot(side: side, timer: t, handle: h))
        }
    }

    /// Stops timer `t` of `side` (cell locked).
    func stopTimer(_ t: TransactionTimer, side: Int) {
        guard let i = timerHandles.firstIndex(where: { $0.side == side && $0.timer == t }) else { return }
        timers.cancel(timerHandles[i].handle)
        timerHandles.remove(at: i)
    }

    /// Stops every timer of `side` (cell locked).
    func stopTimers(side: Int) {
        guard timerHandles.contains(where: { $0.side == side }) else { return }
        timers.cancel(timerHandles, side: side)
        timerHandles.removeAll { $0.side == side }
    }

    /// Stops every timer of the cell (cell locked): the wheel no longer holds it.
    func stopAllTimers() {
        timers.cancel(timerHandles)
        timerHandles.removeAll()
    }

    /// Reserves a branch id number (cell locked).
    func nextBranchSerial() -> Int {
        defer { branchSerial += 1 }
        return branchSerial
    }

    init(id: UInt64, key: TransactionKey, request: SIPMessage, received: ReceiveInfo, replyDestination: SocketAddress,
         config: TimerConfiguration, timers: TMTimerQueue) {
        self.id = id
        serverKey = key
        let inv = request.method == .invite
        requestMethod = request.method
        method = request.methodName
        self.timers = timers
        heldRequest = .live(request)
        self.received = received
        self.replyDestination = replyDestination
        self.config = config
        // A transaction runs a handful of timers (lifetime, retransmission, timeout, wait): room for
        // them at once instead of growing the array on the first starts.
        timerHandles.reserveCapacity(4)
        // A request received over TCP/TLS/WS: no reply retransmission (Timer G), Timers I/J zero.
        let transport = TransportReliability(received.proto)
        server = inv ? .invite(InviteServerTransaction(transport: transport, timers: config))
            : .nonInvite(NonInviteServerTransaction(transport: transport, timers: config))
    }

    @inline(__always) func locked<R>(_ body: () throws -> R) rethrows -> R {
        try mutex.withLock { _ in try body() }
    }

    /// The best final response among finished branches (RFC 3261 §16.7 step 6: 6xx wins, else the
    /// lowest class; 503 becomes 500 when relayed is left to the caller). Returns the branch index.
    func bestBranch() -> Int? {
        bestBranch(skippingDropped: true) ?? bestBranch(skippingDropped: false)
    }

    private func bestBranch(skippingDropped: Bool) -> Int? {
        var best: Int?
        for (i, b) in branches.enumerated() where b.finalStatus >= 300 && !b.replicated && !(skippingDropped && b.dropped) {
            guard let cur = best else { best = i; continue }
            let c = branches[cur].finalStatus, n = b.finalStatus
            if c >= 600 && !disable6xx { continue }
            if (n >= 600 && !disable6xx) || Self.classRank(n) < Self.classRank(c) { best = i }
        }
        return best
    }

    /// The order of reply classes when no 6xx wins (RFC 3261 §16.7: the lowest class; tm lets a 6xx
    /// compete as the last class when `t_set_disable_6xx` is set).
    static func classRank(_ code: Int) -> Int { code / 100 }

    var hasPendingBranches: Bool { branches.contains { $0.isPending && !$0.replicated } }
    var finalSent: Bool { server.lastStatus >= 200 }

    static func == (a: TMCell, b: TMCell) -> Bool { a === b }
    func hash(into hasher: inout Hasher) { hasher.combine(ObjectIdentifier(self)) }
}

extension TransportReliability {
    /// Reliable for the stream transports (tcp, tls, ws, wss, sctp): the RFC 3261 machines then send no
    /// retransmissions (Timers A, E, G) and wait no Timer D/I/J/K.
    init(_ proto: SIPTransportProtocol) {
        self = proto == .udp ? .unreliable : .reliable
    }
}

extension SIPMessage {
    /// The method name as text.
    var methodName: String { String(decoding: bytes(methodRange), as: UTF8.self) }
}
