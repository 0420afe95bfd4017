public import Diameter
import NIOCore
import Logging

/// A request relayed to a peer, waiting for its answer (keyed by the hop-by-hop id Starling gave it).
struct PendingRequest {
    /// Where the answer goes back, with the hop-by-hop id the sender chose; nil for a request
    /// Starling originated itself (`local` gets the answer).
    var origin: Connection?
    /// A request from a script (`KSR.ims_diameter_server.diameter_request`): called once with the
    /// answer, or nil when there is none (peer failed with no alternate, timeout).
    var local: (@Sendable (DiameterMessage?) -> Void)?
    var originHopByHop: UInt32
    var originPeer: String
    /// The request as sent (Route-Record added, our hop-by-hop id).
    var request: DiameterMessage
    var target: String
    var sentAt: UInt64
    var deadline: Int64
    var tried: Set<String>
}

extension DiameterNode {
    // MARK: Requests

    func relayRequest(_ m: DiameterMessage, from p: Peer, conn: Connection) {
        // RFC 6733 §6.1.3: a request whose Route-Record already names this node looped.
        if m.all(BaseAVP.routeRecord).contains(where: { $0.string == config.identity }) {
            logger.info("diameter: loop detected for \(dictionary.commandName(m.commandCode)) from \(p.identity): 3005")
            return answerLocally(m, DiameterResult.loopDetected, conn: conn, peer: p)
        }
        if m.string(BaseAVP.destinationHost) == config.identity {
            return answerLocally(m, DiameterResult.applicationUnsupported, conn: conn, peer: p)
        }
        guard let router else { return answerLocally(m, DiameterResult.unableToDeliver, conn: conn, peer: p) }
        let originID = p.identity
        router.route(m, fromPeer: originID) { [self] decision in
            loop.execute { [self] in decided(decision, original: m, conn: conn, originPeer: originID) }
        }
    }

    private func decided(_ decision: DiameterDecision, original: DiameterMessage, conn: Connection, originPeer: String) {
        guard connections[conn.id] != nil else { return }  // the sender went away
        let origin = peers[originPeer]
        switch decision {
        case .answer(var a):
            a.hopByHop = original.hopByHop
            a.endToEnd = original.endToEnd
            write(a, conn)
            origin.map { count($0, a.resultCode ?? 0) }
        case .none:
            answerLocally(original, DiameterResult.unableToDeliver, conn: conn, peer: origin)
        case .relay(let identity, let request):
            guard let target = peers[identity], target.fsm.isUsable else {
                return answerLocally(original, DiameterResult.unableToDeliver, conn: conn, peer: origin)
            }
            forward(request, originHopByHop: original.hopByHop, conn: conn, originPeer: originPeer, to: target, tried: [], addRouteRecord: true)
        case .relayByRealm(let request):
            let candidates = routeCandidates(request, excluding: [originPeer])
            guard let target = candidates.first else {
                return answerLocally(original, DiameterResult.unableToDeliver, conn: conn, peer: origin)
            }
            forward(request, originHopByHop: original.hopByHop, conn: conn, originPeer: originPeer, to: target, tried: [], addRouteRecord: true)
        }
    }

    /// Usable peers for a request by the realm table (Destination-Realm, application), by metric;
    /// without a table entry, usable peers whose realm is the Destination-Realm.
    func routeCandidates(_ m: DiameterMessage, excluding: Set<String>) -> [Peer] {
        let realm = m.string(BaseAVP.destinationRealm) ?? ""
        let app = m.applicationID
        var out: [Peer] = []
        let routes = config.routes.filter { $0.realm == realm && ($0.application == nil || $0.application == app) }
            .sorted { ($0.application == nil ? 1 : 0) < ($1.application == nil ? 1 : 0) }
        if !routes.isEmpty {
            for r in routes {
                for (id, _) in r.peers.sorted(by: { $0.metric < $1.metric }) {
                    if let p = peers[id], p.fsm.isUsable, !excluding.contains(id), !out.contains(where: { $0 === p }) { out.append(p) }
                }
            }
            return out
        }
        return peers.values.filter { $0.fsm.isUsable && !excluding.contains($0.identity) && $0.realm == realm && supports($0, app) }
            .sorted { $0.identity < $1.identity }
    }

    func supports(_ p: Peer, _ app: UInt32) -> Bool {
        let apps = p.applications
        return apps.isEmpty || apps.contains(app) || apps.contains(DiameterResult.relayApplication)
    }

    @discardableResult
    func forward(_ request: DiameterMessage, originHopByHop: UInt32, conn: Connection?, originPeer: String, to target: Peer,
                 tried: Set<String>, addRouteRecord: Bool, local: (@Sendable (DiameterMessage?) -> Void)? = nil) -> Bool {
        guard let r = target.fsm.openConn, let out = target.connection(r) else { return false }
        var req = request
        if addRouteRecord { req.avps.append(.utf8(BaseAVP.routeRecord, originPeer)) }
        let hbh = hopByHop()
        req.hopByHop = hbh
        pending[hbh] = PendingRequest(origin: conn, local: local, originHopByHop: originHopByHop, originPeer: originPeer, request: req,
                                      target: target.identity, sentAt: Self.monotonicNanos(), deadline: now + config.requestTimeout,
                                      tried: tried.union([target.identity]))
        target.relayed += 1
        target.pendingCount += 1
        write(req, out)
        return true
    }

    func answerLocally(_ request: DiameterMessage, _ code: UInt32, conn: Connection, peer: Peer?) {
        let a = request.answer(resultCode: code, originHost: config.identity, originRealm: config.realm,
                               reportingHost: config.identity)
        write(a, conn)
        if let peer { count(peer, code) }
    }

    private func count(_ p: Peer, _ code: UInt32) {
        p.answers[code, default: 0] += 1
    }

    // MARK: Answers

    func relayAnswer(_ m: DiameterMessage, from p: Peer) {
        guard let pr = pending[m.hopByHop], pr.target == p.identity else {
            logger.debug("diameter: answer from \(p.identity) with unknown hop-by-hop id \(m.hopByHop): dropped")
            return
        }
        pending[m.hopByHop] = nil
        p.pendingCount -= 1
        let result = m.resultCode ?? 0
        p.answers[result, default: 0] += 1
        let micros = Int((Self.monotonicNanos() &- pr.sentAt) / 1000)
        p.latencySum += micros
        p.latencyCount += 1
        // RFC 6733 §7.1.3: 3004 DIAMETER_TOO_BUSY -> try another peer when there is one.
        if result == DiameterResult.tooBusy, retransmit(pr) { return }
        if let local = pr.local { return local(m) }
        var a = m
        a.hopByHop = pr.originHopByHop
        guard let origin = pr.origin, connections[origin.id] != nil else { return }
        write(a, origin)
    }

    /// Sends a pending request to an alternate peer with the T flag (RFC 6733 §5.5.4). False when
    /// there is none.
    @discardableResult
    func retransmit(_ pr: PendingRequest) -> Bool {
        if let origin = pr.origin, connections[origin.id] == nil { return true }
        let failed = peers[pr.target]
        var candidates = routeCandidates(pr.request, excluding: pr.tried.union([pr.originPeer]))
        if candidates.isEmpty, let failed, !failed.realm.isEmpty {
            candidates = peers.values.filter {
                $0.fsm.isUsable && $0.realm == failed.realm && !pr.tried.contains($0.identity) && $0.identity != pr.originPeer
                    && supports($0, pr.request.applicationID)
            }.sorted { $0.identity < $1.identity }
        }
        guard let alt = candidates.first else { return false }
        var req = pr.request
        req.isRetransmit = true
        logger.info("diameter: request for \(pr.target) retransmitted to \(alt.identity) (T flag)")
        forward(req, originHopByHop: pr.originHopByHop, conn: pr.origin, originPeer: pr.originPeer, to: alt, tried: pr.tried,
                addRouteRecord: false, local: pr.local)
        return true
    }

    /// The peer failed (RFC 3539 Failover()): its pending requests go to an alternate, else 3002.
    func failover(_ p: Peer) {
        let mine = pending.filter { $0.value.target == p.identity }
        for (hbh, pr) in mine.sorted(by: { $0.key < $1.key }) {
            pending[hbh] = nil
            p.pendingCount -= 1
            if !retransmit(pr) { answerPending(pr, DiameterResult.unableToDeliver) }
        }
    }

    func pendingCount(_ p: Peer) -> Int { p.pendingCount }

    private func answerPending(_ pr: PendingRequest, _ code: UInt32) {
        if let local = pr.local { return local(nil) }
        guard let conn = pr.origin, connections[conn.id] != nil else { return }
        var original = pr.request
        original.hopByHop = pr.originHopByHop
        original.isRetransmit = false
        answerLocally(original, code, conn: conn, peer: peers[pr.originPeer])
    }

    /// Requests whose answer did not come within the timeout: 3002 to the sender.
    func expirePending(now t: Int64) {
        let due = pending.filter { $0.value.deadline <= t }
        for (hbh, pr) in due.sorted(by: { $0.key < $1.key }) {
            pending[hbh] = nil
            if let p = peers[pr.target] {
                p.pendingCount -= 1
                p.answers[DiameterResult.unableToDeliver, default: 0] += 1
            }
            logger.info("diameter: no answer from \(pr.target) within \(config.requestTimeout) ms: 3002")
            answerPending(pr, DiameterResult.unableToDeliver)
        }
    }
}

extension DiameterNode {
    // MARK: Requests Starling originates (KSR.ims_diameter_server.diameter_request from any route)

    /// Sends a request Starling built (Origin-Host/Realm and Session-Id already in it) to `peer`, or by
    /// the realm table when `peer` is empty (Destination-Realm + application). Callable from any thread;
    /// never blocks. Returns 1 when queued (then `completion` runs exactly once, on the node's loop,
    /// with the answer or with nil when no answer can come: the peer failed with no alternate, the
    /// request timed out, the node stopped sending), -1 for an unknown peer, -2 when the peer (or every
    /// peer of the realm) is not usable.
    public func send(_ request: DiameterMessage, toPeer peer: String,
                     completion: @escaping @Sendable (DiameterMessage?) -> Void) -> Int {
        if !peer.isEmpty {
            guard isKnown(peer) else { return -1 }
            guard isUsable(peer) else { return -2 }
        } else if realmCandidates(request).isEmpty {
            return -2
        }
        loop.execute { [self] in
            var req = request
            req.endToEnd = endToEnd()
            let target: Peer?
            if peer.isEmpty {
                target = routeCandidates(req, excluding: []).first
            } else {
                target = peers[peer].flatMap { $0.fsm.isUsable ? $0 : nil }
            }
            guard let target, !stopped,
                  forward(req, originHopByHop: 0, conn: nil, originPeer: "", to: target, tried: [], addRouteRecord: false,
                          local: completion)
            else { return completion(nil) }
        }
        return 1
    }
}
