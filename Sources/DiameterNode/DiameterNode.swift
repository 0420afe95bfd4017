public import Diameter
public import Logging
import NIOCore
import NIOPosix
import NIOSSL
import Synchronization
import Glibc

/// The Diameter node: listeners, outgoing connections, one `PeerStateMachine` per configured peer,
/// and the relay (RFC 6733 §6) with its pending-request table. Everything mutable lives on one
/// event loop; the script runs elsewhere (the router) and its decisions come back to the loop.
public final class DiameterNode: @unchecked Sendable {
    public let config: DiameterNodeConfig
    let logger: Logger
    let group: MultiThreadedEventLoopGroup
    let loop: any EventLoop
    let dictionary = DiameterDictionary.standard
    public weak var router: (any DiameterRequestRouter)?

    // Loop-confined state.
    var peers: [String: Peer] = [:]
    var connections: [Int: Connection] = [:]
    var pending: [UInt32: PendingRequest] = [:]
    private var listeners: [any Channel] = []
    var boundAddresses: [String] {
        zip(listeners, config.listen).compactMap { l, ep in l.localAddress.map { "\(ep.tls ? "tls" : "tcp"):\($0.ipAddress ?? "?"):\($0.port ?? 0)" } }
    }
    private var nextConnectionID = 1
    private var nextHopByHop: UInt32
    private var nextEndToEnd: UInt32
    private var tickTask: RepeatedTask?
    private var serverTLS: NIOSSLContext?
    private var clientTLS: NIOSSLContext?
    var stopped = false
    private let startNanos: UInt64

    /// Snapshot of usable peers for the script's thread (relay(peer) checks it without a hop).
    private let usable = Mutex<Set<String>>([])
    private let statusSnapshot = Mutex<[DiameterPeerStatus]>([])

    public init(config: DiameterNodeConfig, logger: Logger) {
        self.config = config
        self.logger = logger
        group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        loop = group.next()
        var seed = UInt32(truncatingIfNeeded: UInt64(time(nil)) &* 2654435761)
        if seed == 0 { seed = 1 }
        nextHopByHop = seed
        nextEndToEnd = UInt32(truncatingIfNeeded: time(nil)) << 20 | (seed & 0xFFFFF)
        startNanos = Self.monotonicNanos()
        for p in config.peers {
            peers[p.identity] = Peer(config: p, local: config.identity, timers: timers, fixed: true)
        }
    }

    var timers: PeerStateMachine.Timers {
        PeerStateMachine.Timers(tw: config.watchdogInterval, twJitter: config.watchdogInterval >= 6_000 ? 2_000 : 0,
                                handshake: 10_000, reconnect: 1_000)
    }

    /// Milliseconds since the node started (the peer machines' clock).
    var now: Int64 { Int64((Self.monotonicNanos() &- startNanos) / 1_000_000) }

    static func monotonicNanos() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
    }

    // MARK: Start / stop

    public struct BindError: Error, CustomStringConvertible {
        public var endpoint: DiameterNodeConfig.Endpoint
        public var reason: String
        public var description: String { "cannot listen on \(endpoint): \(reason)" }
    }

    public struct TLSError: Error, CustomStringConvertible {
        public var description: String
    }

    /// The TLS contexts, when a listener or a peer uses TLS.
    private func makeTLS() throws {
        guard config.listen.contains(where: \.tls) || config.peers.contains(where: { $0.connect?.tls == true }) else { return }
        guard let files = config.tls else { throw TLSError(description: "tls: listeners and peers need [tls] certificate and private_key") }
        do {
            let chain = try NIOSSLCertificate.fromPEMFile(files.certificate).map { NIOSSLCertificateSource.certificate($0) }
            let key = try NIOSSLPrivateKey(file: files.privateKey, format: .pem)
            serverTLS = try NIOSSLContext(configuration: .makeServerConfiguration(certificateChain: chain, privateKey: .privateKey(key)))
            var client = TLSConfiguration.makeClientConfiguration()
            client.certificateChain = chain
            client.privateKey = .privateKey(key)
            if let ca = files.caList, files.verifyServer {
                client.trustRoots = .file(ca)
                client.certificateVerification = .noHostnameVerification
            } else {
                client.certificateVerification = .none
            }
            clientTLS = try NIOSSLContext(configuration: client)
        } catch {
            throw TLSError(description: "tls: \(error)")
        }
    }

    /// Binds the listeners (throws naming the address) and starts connecting to peers.
    public func start() throws {
        try makeTLS()
        for ep in config.listen {
            let bootstrap = ServerBootstrap(group: group)
                .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
                .childChannelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
                .childChannelInitializer { [self] ch in
                    self.loop.makeCompletedFuture { try self.setUp(ch, outgoingPeer: nil, tls: ep.tls) }
                }
            do {
                listeners.append(try bootstrap.bind(host: ep.host, port: ep.port).wait())
            } catch {
                throw BindError(endpoint: ep, reason: "\(error)")
            }
        }
        try loop.submit { [self] in
            for p in peers.values { apply(p, p.fsm.begin(now: now)) }
            tickTask = loop.scheduleRepeatedTask(initialDelay: .milliseconds(100), delay: .milliseconds(100)) { [self] _ in tick() }
            publish()
        }.wait()
    }

    /// Sends DPR to open peers, waits briefly for DPAs, closes everything.
    public func stop() {
        let done = try? loop.submit { [self] () -> Bool in
            stopped = true
            for p in peers.values where p.fsm.isOpen { apply(p, p.fsm.handle(.stop, now: now)) }
            return true
        }.wait()
        _ = done
        // Give DPAs a moment (bounded), then close.
        for _ in 0..<20 {
            let open = (try? loop.submit { [self] in peers.values.contains { $0.fsm.state == .closing } }.wait()) ?? false
            if !open { break }
            usleep(25_000)
        }
        try? loop.submit { [self] in
            tickTask?.cancel()
            for c in connections.values { c.channel.close(promise: nil) }
            for l in listeners { l.close(promise: nil) }
        }.wait()
        try? group.syncShutdownGracefully()
    }

    // MARK: Channels

    func setUp(_ ch: any Channel, outgoingPeer: Peer?, tls: Bool) throws {
        if tls {
            if outgoingPeer == nil, let serverTLS {
                try ch.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: serverTLS))
            } else if let clientTLS {
                try ch.pipeline.syncOperations.addHandler(try NIOSSLClientHandler(context: clientTLS, serverHostname: nil))
            }
        }
        let id = nextConnectionID
        nextConnectionID += 1
        let conn = Connection(id: id, channel: ch)
        if let outgoingPeer {
            conn.peer = outgoingPeer
            conn.role = .initiator
        }
        connections[id] = conn
        if outgoingPeer == nil {
            // An incoming connection that has not completed its CER within the handshake time is closed
            // (a peer that connects and sends nothing, or part of a message, holds nothing for long).
            loop.scheduleTask(in: .milliseconds(timers.handshake)) { [self] in
                if connections[id] != nil, conn.peer == nil { conn.channel.close(promise: nil) }
            }
        }
        try ch.pipeline.syncOperations.addHandler(ByteToMessageHandler(DiameterFrameDecoder()))
        try ch.pipeline.syncOperations.addHandler(DiameterConnectionHandler(node: self, connection: conn))
    }

    func connect(_ p: Peer) {
        guard let ep = p.config.connect else { return }
        let bootstrap = ClientBootstrap(group: group)
            .connectTimeout(.seconds(5))
            .channelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { [self] ch in self.loop.makeCompletedFuture { try self.setUp(ch, outgoingPeer: p, tls: ep.tls) } }
        let attempt = p.attempt &+ 1
        p.attempt = attempt
        bootstrap.connect(host: ep.host, port: ep.port).whenComplete { [self] result in
            loop.assertInEventLoop()
            guard p.attempt == attempt, p.fsm.state == .waitConnAck || p.fsm.state == .waitConnAckElect else {
                if case .success(let ch) = result { ch.close(promise: nil) }
                return
            }
            switch result {
            case .success(let ch):
                p.initiator = connections.values.first { $0.channel === ch }
                apply(p, p.fsm.handle(.connAck, now: now))
            case .failure(let e):
                logger.debug("diameter: connect to \(p.identity) at \(ep) failed: \(e)")
                apply(p, p.fsm.handle(.connNack, now: now))
            }
        }
    }

    /// A connection closed (by either side or after an error).
    func closed(_ conn: Connection) {
        connections[conn.id] = nil
        guard let p = conn.peer, let role = conn.role else { return }
        if role == .initiator, p.initiator === conn { p.initiator = nil } else if role == .responder, p.responder === conn { p.responder = nil } else { return }
        apply(p, p.fsm.handle(.peerDisc(role), now: now))
    }

    // MARK: Received messages

    func received(_ m: DiameterMessage, on conn: Connection) {
        if m.isRequest {
            switch m.commandCode {
            case BaseCommand.capabilitiesExchange: return receivedCER(m, on: conn)
            case BaseCommand.deviceWatchdog:
                guard let p = conn.peer, let r = conn.role else { return conn.channel.close(promise: nil) }
                p.lastDWR = m
                return apply(p, p.fsm.handle(.rcvDWR(r), now: now))
            case BaseCommand.disconnectPeer:
                guard let p = conn.peer, let r = conn.role else { return conn.channel.close(promise: nil) }
                p.lastDPR = m
                return apply(p, p.fsm.handle(.rcvDPR(r), now: now))
            default: break
            }
        } else {
            switch m.commandCode {
            case BaseCommand.capabilitiesExchange:
                guard let p = conn.peer, conn.role == .initiator else { return }
                let result = m.resultCode ?? DiameterResult.unableToComply
                if let caps = DiameterCapabilities(message: m) {
                    if caps.originHost != p.identity {
                        logger.warning("diameter: CEA from \(caps.originHost) on the connection to \(p.identity): closed")
                        return apply(p, p.fsm.handle(.rcvCEA(result: DiameterResult.unknownPeer), now: now))
                    }
                    p.remote = caps
                }
                if result != DiameterResult.success { logger.warning("diameter: \(p.identity) answered CER with \(result)") }
                return apply(p, p.fsm.handle(.rcvCEA(result: result), now: now))
            case BaseCommand.deviceWatchdog:
                guard let p = conn.peer, let r = conn.role else { return }
                return apply(p, p.fsm.handle(.rcvDWA(r), now: now))
            case BaseCommand.disconnectPeer:
                guard let p = conn.peer, let r = conn.role else { return }
                return apply(p, p.fsm.handle(.rcvDPA(r), now: now))
            default: break
            }
        }
        // Application messages: only from an open peer on its open connection.
        guard let p = conn.peer, let r = conn.role, p.fsm.isOpen, p.fsm.openConn == r else {
            if let p = conn.peer, p.fsm.state == .waitICEA { apply(p, p.fsm.handle(.rcvNonCEA, now: now)) }
            logger.debug("diameter: message on a connection that is not open: closed")
            conn.channel.close(promise: nil)
            return
        }
        // RFC 3539's Throwaway() in REOPEN is not applied: a request received on a reopened connection
        // is still routed (and answered), never dropped silently; REOPEN only keeps Starling from
        // sending to the peer until its watchdog answers.
        let actions = p.fsm.handle(.rcvMessage(r), now: now)
        apply(p, actions.filter { $0 != .throwaway(r) })
        if m.isRequest {
            relayRequest(m, from: p, conn: conn)
        } else {
            relayAnswer(m, from: p)
        }
    }

    private func receivedCER(_ m: DiameterMessage, on conn: Connection) {
        guard conn.peer == nil || conn.role == .responder, let caps = DiameterCapabilities(message: m) else {
            conn.channel.close(promise: nil)
            return
        }
        if conn.peer != nil {
            // A second CER on an open connection: ignore it (RFC 6733 allows no renegotiation here).
            return
        }
        var peer = peers[caps.originHost]
        var result = DiameterResult.success
        if peer == nil {
            if config.acceptUnknownPeers {
                let p = Peer(config: .init(identity: caps.originHost, realm: caps.originRealm), local: config.identity, timers: timers, fixed: false)
                peers[caps.originHost] = p
                peer = p
            } else {
                logger.warning("diameter: CER from unknown peer \(caps.originHost) refused (3010)")
                sendCEA(to: conn, request: m, result: DiameterResult.unknownPeer, local: localCapabilities(for: nil))
                conn.channel.close(promise: nil)
                return
            }
        }
        let p = peer!
        p.remote = caps
        let local = localCapabilities(for: p)
        if DiameterCapabilities.common(local: local.applications, remote: caps.applications).isEmpty {
            result = DiameterResult.noCommonApplication
        }
        conn.peer = p
        conn.role = .responder
        p.pendingCER = (conn, m)
        if p.responder == nil { p.responder = conn }
        apply(p, p.fsm.handle(.rConnCER(result: result), now: now), incoming: conn)
        if p.responder !== conn && p.pendingCER?.0 === conn { p.pendingCER = nil }
    }

    /// Starling's capabilities towards a peer: the peer's configured applications, else the relay
    /// application (RFC 6733 §2.4: a relay advertises 0xffffffff).
    func localCapabilities(for p: Peer?) -> DiameterCapabilities {
        var c = DiameterCapabilities(originHost: config.identity, originRealm: config.realm, productName: config.productName)
        if let apps = p?.config.applications, !apps.isEmpty {
            for a in apps {
                if a > 16_777_215 && a != DiameterResult.relayApplication { c.vendorApplications[a] = 10415 } else { c.authApplications.insert(a) }
            }
        } else {
            c.authApplications = [DiameterResult.relayApplication]
        }
        return c
    }

    // MARK: Peer actions

    func apply(_ p: Peer, _ actions: [PeerStateMachine.Action], incoming: Connection? = nil) {
        for a in actions {
            switch a {
            case .connect:
                connect(p)
            case .sendCER:
                guard let c = p.initiator else { continue }
                let cer = DiameterMessage(flags: DiameterMessage.flagRequest, commandCode: BaseCommand.capabilitiesExchange,
                                          applicationID: 0, hopByHop: hopByHop(), endToEnd: endToEnd(),
                                          avps: localCapabilities(for: p).avps(hostIP: localIP(c)))
                write(cer, c)
            case .sendCEA(_, let result):
                guard let (c, cer) = p.pendingCER else { continue }
                sendCEA(to: c, request: cer, result: result, local: localCapabilities(for: p))
                p.pendingCER = nil
            case .sendDWR(let r):
                guard let c = p.connection(r) else { continue }
                write(DiameterMessage(flags: DiameterMessage.flagRequest, commandCode: BaseCommand.deviceWatchdog, applicationID: 0,
                                      hopByHop: hopByHop(), endToEnd: endToEnd(),
                                      avps: [.utf8(BaseAVP.originHost, config.identity), .utf8(BaseAVP.originRealm, config.realm)]), c)
            case .sendDWA(let r):
                guard let c = p.connection(r), let dwr = p.lastDWR else { continue }
                write(baseAnswer(dwr, 2001), c)
            case .sendDPR(let r):
                guard let c = p.connection(r) else { continue }
                write(DiameterMessage(flags: DiameterMessage.flagRequest, commandCode: BaseCommand.disconnectPeer, applicationID: 0,
                                      hopByHop: hopByHop(), endToEnd: endToEnd(),
                                      avps: [.utf8(BaseAVP.originHost, config.identity), .utf8(BaseAVP.originRealm, config.realm),
                                             .u32(BaseAVP.disconnectCause, 0)]), c)
            case .sendDPA(let r):
                guard let c = p.connection(r), let dpr = p.lastDPR else { continue }
                write(baseAnswer(dpr, 2001), c)
            case .disconnect(let r):
                if r == .responder { p.pendingCER = nil }
                if let c = p.connection(r) {
                    // Let what was just written go out first.
                    c.channel.writeAndFlush(ByteBuffer()).whenComplete { _ in c.channel.close(promise: nil) }
                    detach(c, from: p)
                } else if r == .responder, let (c, _) = p.pendingCER {
                    c.channel.writeAndFlush(ByteBuffer()).whenComplete { _ in c.channel.close(promise: nil) }
                    p.pendingCER = nil
                }
            case .accept:
                break
            case .reject:
                if let incoming {
                    incoming.peer = nil
                    incoming.channel.close(promise: nil)
                }
            case .opened(let r):
                logger.info("diameter: peer \(p.identity) open (\(r == .initiator ? "I-Open" : "R-Open"))")
            case .closed:
                logger.info("diameter: peer \(p.identity) closed")
            case .failover:
                logger.warning("diameter: peer \(p.identity) down: failing over its \(pendingCount(p)) pending requests")
                failover(p)
            case .failback:
                logger.info("diameter: peer \(p.identity) usable")
            case .throwaway:
                break
            }
        }
        if p.fsm.state == .closed && !p.fixed && p.initiator == nil && p.responder == nil {
            // A peer that was accepted as unknown is forgotten once closed.
            peers[p.identity] = nil
        }
        publish()
    }

    private func detach(_ c: Connection, from p: Peer) {
        if p.initiator === c { p.initiator = nil }
        if p.responder === c { p.responder = nil }
        c.peer = nil
    }

    private func sendCEA(to c: Connection, request: DiameterMessage, result: UInt32, local: DiameterCapabilities) {
        var a = DiameterMessage(flags: result >= 3000 && result < 4000 ? DiameterMessage.flagError : 0,
                                commandCode: BaseCommand.capabilitiesExchange, applicationID: 0,
                                hopByHop: request.hopByHop, endToEnd: request.endToEnd)
        a.avps.append(.u32(BaseAVP.resultCode, result))
        a.avps += local.avps(hostIP: localIP(c))
        write(a, c)
    }

    private func baseAnswer(_ req: DiameterMessage, _ result: UInt32) -> DiameterMessage {
        var a = DiameterMessage(flags: 0, commandCode: req.commandCode, applicationID: 0, hopByHop: req.hopByHop, endToEnd: req.endToEnd)
        a.avps = [.u32(BaseAVP.resultCode, result), .utf8(BaseAVP.originHost, config.identity), .utf8(BaseAVP.originRealm, config.realm)]
        return a
    }

    private func localIP(_ c: Connection) -> String {
        c.channel.localAddress?.ipAddress ?? "127.0.0.1"
    }

    func write(_ m: DiameterMessage, _ c: Connection) {
        let bytes = m.encode()
        var buf = c.channel.allocator.buffer(capacity: bytes.count)
        buf.writeBytes(bytes)
        c.channel.writeAndFlush(buf, promise: nil)
    }

    func hopByHop() -> UInt32 {
        nextHopByHop &+= 1
        while pending[nextHopByHop] != nil { nextHopByHop &+= 1 }
        return nextHopByHop
    }

    func endToEnd() -> UInt32 {
        nextEndToEnd &+= 1
        return nextEndToEnd
    }

    // MARK: Timers and snapshots

    private func tick() {
        let t = now
        for p in Array(peers.values) where (p.fsm.nextDeadline ?? .max) <= t {
            apply(p, p.fsm.tick(now: t))
        }
        expirePending(now: t)
    }

    /// Publishes the usable set and the status rows (read by the script thread and RPCs).
    func publish() {
        let u = Set(peers.values.filter { $0.fsm.isUsable }.map(\.identity))
        usable.withLock { $0 = u }
        let rows = peers.values.sorted { $0.identity < $1.identity }.map { $0.status }
        statusSnapshot.withLock { $0 = rows }
    }

    // MARK: Thread-safe API (script thread, RPCs)

    public func isUsable(_ identity: String) -> Bool { usable.withLock { $0.contains(identity) } }

    public func isKnown(_ identity: String) -> Bool { statusSnapshot.withLock { $0.contains { $0.identity == identity } } }

    public var peerStatus: [DiameterPeerStatus] { statusSnapshot.withLock { $0 } }

    /// cdp.enable_peer / cdp.disable_peer: false for an unknown peer. Never blocks (RPCs run on
    /// another event loop, where waiting is not allowed): the change is applied on the node's loop.
    public func setEnabled(_ identity: String, _ on: Bool) -> Bool {
        guard isKnown(identity) else { return false }
        loop.execute { [self] in
            guard let p = peers[identity] else { return }
            apply(p, p.fsm.setEnabled(on, now: now))
        }
        return true
    }

    /// The peer's RFC 6733 state name, nil for an unknown peer.
    public func peerState(_ identity: String) -> String? {
        peerStatus.first { $0.identity == identity }?.state
    }
}

/// One configured (or accepted) peer and its connections.
/// Confined to the node's event loop (closures that capture it hop back onto the loop).
final class Peer: @unchecked Sendable {
    let config: DiameterNodeConfig.Peer
    let fixed: Bool
    var fsm: PeerStateMachine
    var initiator: Connection?
    var responder: Connection?
    var pendingCER: (Connection, DiameterMessage)?
    var lastDWR: DiameterMessage?
    var lastDPR: DiameterMessage?
    var remote: DiameterCapabilities?
    var attempt = 0
    var relayed = 0
    var answers: [UInt32: Int] = [:]
    var latencySum = 0
    var latencyCount = 0
    var pendingCount = 0

    init(config: DiameterNodeConfig.Peer, local: String, timers: PeerStateMachine.Timers, fixed: Bool) {
        self.config = config
        self.fixed = fixed
        fsm = PeerStateMachine(localHost: local, peerHost: config.identity, initiates: config.connect != nil, timers: timers,
                               seed: UInt64(truncatingIfNeeded: config.identity.hashValue))
    }

    var identity: String { config.identity }
    var realm: String { config.realm ?? remote?.originRealm ?? "" }
    var applications: Set<UInt32> {
        if let a = config.applications { return Set(a) }
        return remote?.applications ?? []
    }

    func connection(_ r: PeerStateMachine.Conn) -> Connection? { r == .initiator ? initiator : responder }

    var status: DiameterPeerStatus {
        DiameterPeerStatus(identity: identity, realm: realm, state: fsm.state.rawValue, watchdog: fsm.watchdog.rawValue,
                           usable: fsm.isUsable, enabled: fsm.enabled, applications: applications.sorted(),
                           requestsRelayed: relayed, answersByResult: answers, pending: pendingCount,
                           latencyMicrosSum: latencySum, latencyCount: latencyCount)
    }
}

/// One TCP connection (incoming or outgoing).
/// Confined to the node's event loop.
final class Connection: @unchecked Sendable {
    let id: Int
    let channel: any Channel
    var peer: Peer?
    var role: PeerStateMachine.Conn?
    init(id: Int, channel: any Channel) {
        self.id = id
        self.channel = channel
    }
}

/// Frames the byte stream into messages; a length that cannot be right closes the connection.
struct DiameterFrameDecoder: ByteToMessageDecoder {
    typealias InboundOut = DiameterMessage
    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        let length: Int? = try buffer.withUnsafeReadableBytes { try DiameterMessage.frameLength($0) }
        guard let length, buffer.readableBytes >= length else { return .needMoreData }
        let m = try buffer.withUnsafeReadableBytes { b in
            try DiameterMessage.decode(UnsafeRawBufferPointer(rebasing: b[0..<length]))
        }
        buffer.moveReaderIndex(forwardBy: length)
        context.fireChannelRead(Self.wrapInboundOut(m))
        return .continue
    }
}

/// Hands messages of one connection to the node (on the node's loop).
final class DiameterConnectionHandler: ChannelInboundHandler {
    typealias InboundIn = DiameterMessage
    let node: DiameterNode
    let connection: Connection
    init(node: DiameterNode, connection: Connection) {
        self.node = node
        self.connection = connection
    }
    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        node.received(Self.unwrapInboundIn(data), on: connection)
    }
    func channelInactive(context: ChannelHandlerContext) {
        node.closed(connection)
        context.fireChannelInactive()
    }
    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        node.logger.warning("diameter: connection \(context.remoteAddress.map { "\($0)" } ?? "?") closed: \(error)")
        context.close(promise: nil)
    }
}

extension DiameterNode {
    /// Usable peers for a request by the realm table (the script thread's view, from the published
    /// peer snapshot): what relay_realm() would choose from, in order.
    public func realmCandidates(_ m: DiameterMessage) -> [String] {
        let rows = peerStatus
        let realm = m.string(BaseAVP.destinationRealm) ?? ""
        let app = m.applicationID
        let routes = config.routes.filter { $0.realm == realm && ($0.application == nil || $0.application == app) }
        if !routes.isEmpty {
            var out: [String] = []
            for r in routes {
                for (id, _) in r.peers.sorted(by: { $0.metric < $1.metric })
                where rows.contains(where: { $0.identity == id && $0.usable }) && !out.contains(id) { out.append(id) }
            }
            return out
        }
        return rows.filter {
            $0.usable && $0.realm == realm && ($0.applications.isEmpty || $0.applications.contains(app) || $0.applications.contains(DiameterResult.relayApplication))
        }.map(\.identity)
    }
}

extension DiameterNode {
    /// The listeners' bound addresses (port 0 resolved), "tcp:IP:PORT".
    public var boundListeners: [String] {
        (try? loop.submit { [self] in boundAddresses }.wait()) ?? []
    }
}
