import SIPCore
public import SIPTransport
public import Logging
import NIOCore
import NIOPosix
import NIOSSL
import CStarlingSystem
public import Synchronization

/// The connection layer: listeners for TCP, TLS, WS and WSS on SwiftNIO, the table of open connections
/// (by id and by peer address, so requests to a peer reuse its connection), outgoing connections opened
/// on demand, and the idle sweep. Messages read from connections go to the workers' inboxes (a
/// connection always feeds the same worker, so its messages keep their order); NIO's event loops never
/// run a script.
public final class StreamTransport: Sendable {
    public let settings: StreamSettings
    let logger: Logger
    let inboxes: [StreamInbox]
    let group: MultiThreadedEventLoopGroup
    private let listeners: [StreamListener]
    /// Bound addresses (the kernel's port for port 0), in `listeners` order.
    private let bound = Mutex<[StreamListener]>([])
    private let serverChannels = Mutex<[any Channel]>([])
    private let table = Mutex<Table>(Table())
    private let nextID = Atomic<UInt64>(1)
    private let sweepTask = Mutex<RepeatedTask?>(nil)
    /// Connection count peak since the last malloc_trim, and when that was (monotonic ns).
    private let trimState = Mutex<(peak: Int, last: UInt64, trailing: Int)>((0, 0, 0))
    let tlsContexts: TLSContexts?
    /// IP address -> the host name it was last resolved from for a TLS destination: outgoing TLS sends
    /// it as SNI and verifies the server's certificate against it (bounded; cleared when full).
    private let serverNames = Mutex<[String: String]>([:])
    /// Counters for diagnostics and tests.
    public let stats = StreamStats()

    struct Key: Hashable {
        var proto: SIPTransportProtocol
        var address: SIPTransport.SocketAddress
    }

    struct Table {
        var byID: [UInt64: StreamConnection] = [:]
        var byAddress: [Key: UInt64] = [:]
    }

    public init(listeners: [StreamListener], inboxes: [StreamInbox], settings: StreamSettings, logger: Logger) throws(TransportError) {
        self.listeners = listeners
        self.inboxes = inboxes
        self.settings = settings
        self.logger = logger
        group = MultiThreadedEventLoopGroup(numberOfThreads: max(1, settings.eventLoopThreads))
        if listeners.contains(where: { $0.proto == .tls || $0.proto == .wss }) || settings.tls != nil {
            guard let tls = settings.tls else {
                try? group.syncShutdownGracefully()
                throw TransportError("tls listener without [tls] certificate and private_key", errno: EINVAL)
            }
            do {
                tlsContexts = try TLSContexts(tls)
            } catch {
                try? group.syncShutdownGracefully()
                throw TransportError("tls: \(error)", errno: EINVAL)
            }
        } else {
            tlsContexts = nil
        }
    }

    /// Binds every listener and starts the idle sweep.
    public func start() throws(TransportError) {
        for (index, l) in listeners.enumerated() {
            do {
                let ch = try makeServerBootstrap(l, index: index).bind(to: l.address.nio).wait()
                serverChannels.withLock { $0.append(ch) }
                var b = l
                if let a = ch.localAddress, let s = SIPTransport.SocketAddress(nio: a) { b.address = s }
                bound.withLock { $0.append(b) }
            } catch {
                shutdown()
                throw TransportError("cannot listen on \(l): \(error)", errno: EADDRINUSE)
            }
        }
        let task = group.next().scheduleRepeatedTask(initialDelay: .seconds(1), delay: .seconds(1)) { [weak self] _ in
            self?.sweep()
        }
        sweepTask.withLock { $0 = task }
    }

    /// The listeners with their bound addresses.
    public var boundListeners: [StreamListener] { bound.withLock { $0 } }

    /// Closes every listener and connection and stops the event loops.
    public func shutdown() {
        sweepTask.withLock { $0?.cancel(); $0 = nil }
        let chs = serverChannels.withLock { c in let r = c; c = []; return r }
        for c in chs { try? c.close().wait() }
        let conns = table.withLock { Array($0.byID.values) }
        for c in conns { c.close() }
        try? group.syncShutdownGracefully()
    }

    /// Open connections (inbound and outbound).
    public var connectionCount: Int { table.withLock { $0.byID.count } }

    /// Reloads the TLS certificates and keys from their files; new handshakes use them. Throws (and keeps
    /// the running ones) when a file does not load.
    public func reloadTLS() throws {
        guard let tlsContexts, let tls = settings.tls else { return }
        try tlsContexts.reload(tls)
    }

    /// The TLS facts of a connection (nil: not TLS, closed, or handshake not finished).
    public func tlsPeer(connection id: UInt64) -> TLSPeerInfo? {
        table.withLock { $0.byID[id] }?.tls.withLock { $0 }
    }

    /// Closes a connection; false if it is not open.
    public func close(connection id: UInt64) -> Bool {
        guard let c = table.withLock({ $0.byID[id] }) else { return false }
        c.close()
        return true
    }

    // MARK: Sending

    /// Remembers that `addresses` were resolved from the host name `host` for a TLS destination:
    /// a connection opened to one of them sends `host` as SNI and verifies the certificate against it.
    public func noteServerName(_ host: String, for addresses: [SIPTransport.SocketAddress]) {
        guard tlsContexts != nil, !addresses.isEmpty else { return }
        let name = host.hasSuffix(".") ? String(host.dropLast()) : host
        serverNames.withLock { t in
            if t.count >= 4096 { t.removeAll(keepingCapacity: true) }
            for a in addresses where t[a.ip] != name { t[a.ip] = name }
        }
    }

    /// The host name a destination was resolved from (nil: none known, the IP address is verified).
    func serverName(for destination: SIPTransport.SocketAddress) -> String? {
        serverNames.withLock { $0[destination.ip] }
    }

    /// Sends a message over the connection `connectionID` when it is open, else over the open connection
    /// to `destination` with this transport, else (unless `noConnect`) over a new connection. Returns
    /// false when nothing could be queued.
    public func send(_ bytes: [UInt8], to destination: SIPTransport.SocketAddress, proto: SIPTransportProtocol, connectionID: UInt64?,
                     from local: SIPTransport.SocketAddress?, options: StreamSendOptions = StreamSendOptions(),
                     outbox: StreamOutbox? = nil) -> Bool {
        var conn: StreamConnection?
        table.withLock { t in
            if let id = connectionID, let c = t.byID[id], c.proto == proto { conn = c; return }
            if let id = t.byAddress[Key(proto: proto, address: destination)] { conn = t.byID[id] }
        }
        if conn == nil {
            if options.noConnect {
                logger.debug("no \(proto.name) connection to \(destination) and no_connect is set: not sent")
                stats.sendFailures.add(1, ordering: .relaxed)
                return false
            }
            conn = connect(to: destination, proto: proto, local: local)
        }
        guard let conn else {
            stats.sendFailures.add(1, ordering: .relaxed)
            return false
        }
        if let outbox {
            guard conn.isWritable else {
                stats.sendFailures.add(1, ordering: .relaxed)
                logger.info("\(proto.name) connection \(conn.id) to \(destination) is not reading: message not sent")
                return false
            }
            outbox.append(conn, ByteBuffer(bytes: bytes), close: options.close)
            return true
        }
        if !conn.send(bytes, close: options.close, maxQueued: settings.maxQueuedBytes) {
            stats.sendFailures.add(1, ordering: .relaxed)
            logger.info("\(proto.name) connection \(conn.id) to \(destination) is closed or not reading: message not sent")
            return false
        }
        return true
    }

    /// Hands everything queued in `outbox` to the connections: one event-loop hop and one flush per
    /// connection.
    public func flush(_ outbox: StreamOutbox) {
        guard !outbox.batches.isEmpty else { return }
        for b in outbox.batches where !b.connection.send(b.buffers, close: b.close) {
            stats.sendFailures.add(b.buffers.count, ordering: .relaxed)
            logger.info("\(b.connection.proto.name) connection \(b.connection.id) is closed or not reading: \(b.buffers.count) message(s) not sent")
        }
        outbox.clear()
    }

    /// Opens a connection (asynchronously; writes wait until it is up). Nil for a transport we cannot
    /// connect with (WS/WSS: browsers connect to us, never the other way).
    private func connect(to destination: SIPTransport.SocketAddress, proto: SIPTransportProtocol, local: SIPTransport.SocketAddress?) -> StreamConnection? {
        guard proto == .tcp || proto == .tls else {
            logger.info("no open \(proto.name) connection to \(destination); Starling does not open \(proto.name) connections")
            return nil
        }
        let listener = boundListeners.first(where: { $0.proto == proto && (local == nil || $0.address == local!) })
            ?? boundListeners.first(where: { $0.proto == proto && $0.address.family == destination.family })
        guard let listener else {
            logger.error("no \(proto.name) listener to send to \(destination) from")
            return nil
        }
        if proto == .tls && tlsContexts == nil { return nil }
        let id = nextID.wrappingAdd(1, ordering: .relaxed).oldValue
        let conn = StreamConnection(id: id, proto: proto, remote: destination, local: listener.address, outbound: true)
        let admitted = table.withLock { t -> StreamConnection? in
            // Another worker may have started one meanwhile.
            if let other = t.byAddress[Key(proto: proto, address: destination)], let c = t.byID[other] { return c }
            if t.byID.count >= settings.maxConnections { return nil }
            t.byID[id] = conn
            t.byAddress[Key(proto: proto, address: destination)] = id
            return conn
        }
        guard let admitted else {
            logger.warning("tcp_max_connections (\(settings.maxConnections)) reached: not connecting to \(destination)")
            return nil
        }
        if admitted !== conn { return admitted }
        stats.connectsStarted.add(1, ordering: .relaxed)
        let serverHostname = proto == .tls ? serverName(for: destination) : nil
        let bootstrap = ClientBootstrap(group: group)
            .connectTimeout(.milliseconds(Int64(settings.connectTimeoutMillis)))
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            .channelOption(.socketOption(.so_keepalive), value: settings.keepalive ? 1 : 0)
            .channelOption(.writeBufferWaterMark, value: .init(low: settings.maxQueuedBytes / 2, high: settings.maxQueuedBytes))
            .channelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture {
                    try self.applyKeepaliveTiming(channel)
                    let ops = channel.pipeline.syncOperations
                    if proto == .tls, let tlsContexts {
                        try ops.addHandler(NIOSSLClientHandler(context: tlsContexts.client, serverHostname: serverHostname))
                    }
                    try ops.addHandler(ByteToMessageHandler(SIPStreamDecoder(limits: settings.limits, acceptNoContentLength: settings.acceptNoContentLength)))
                    try ops.addHandler(SIPStreamHandler(transport: self, connection: conn, listener: listener))
                }
            }
        bootstrap.connect(to: destination.nio).whenFailure { [self] error in
            logger.info("cannot connect to \(proto.name):\(destination): \(error)")
            stats.connectFailures.add(1, ordering: .relaxed)
            unregister(conn)
        }
        return conn
    }

    // MARK: Connection table (called by the channel handlers)

    /// A new inbound connection; nil when the connection limit is reached (the caller closes it).
    func register(proto: SIPTransportProtocol, remote: SIPTransport.SocketAddress, local: SIPTransport.SocketAddress) -> StreamConnection? {
        let id = nextID.wrappingAdd(1, ordering: .relaxed).oldValue
        let conn = StreamConnection(id: id, proto: proto, remote: remote, local: local, outbound: false)
        let ok = table.withLock { t -> Bool in
            if t.byID.count >= settings.maxConnections { return false }
            t.byID[id] = conn
            t.byAddress[Key(proto: proto, address: remote)] = id
            return true
        }
        if !ok {
            stats.refused.add(1, ordering: .relaxed)
            logger.warning("tcp_max_connections (\(settings.maxConnections)) reached: refusing \(proto.name) connection from \(remote)")
            return nil
        }
        stats.accepted.add(1, ordering: .relaxed)
        return conn
    }

    /// The PROXY protocol header told the real source: the connection is known by it from now on.
    func readdress(_ conn: StreamConnection, to source: SIPTransport.SocketAddress) {
        let old = conn.remote.withLock { r in let o = r; r = source; return o }
        table.withLock { t in
            if t.byAddress[Key(proto: conn.proto, address: old)] == conn.id { t.byAddress[Key(proto: conn.proto, address: old)] = nil }
            t.byAddress[Key(proto: conn.proto, address: source)] = conn.id
        }
    }

    func unregister(_ conn: StreamConnection) {
        conn.markClosed()
        let remote = conn.remote.withLock { $0 }
        table.withLock { t in
            guard t.byID.removeValue(forKey: conn.id) != nil else { return }
            let key = Key(proto: conn.proto, address: remote)
            if t.byAddress[key] == conn.id { t.byAddress[key] = nil }
        }
    }

    /// Hands a message to the worker that owns the connection.
    func deliver(_ m: StreamMessage) {
        inboxes[Int(m.connectionID % UInt64(inboxes.count))].push(m)
        stats.messagesIn.add(1, ordering: .relaxed)
    }

    /// Closes connections idle for longer than `connectionLifetime`.
    private func sweep() {
        let now = NIODeadline.now().uptimeNanoseconds
        let limit = UInt64(max(1, settings.connectionLifetime)) * 1_000_000_000
        let idle = table.withLock { t in t.byID.values.filter { now &- $0.lastActivity.load(ordering: .relaxed) > limit && now > $0.lastActivity.load(ordering: .relaxed) } }
        for c in idle where c.close() {
            logger.debug("closing idle \(c.proto.name) connection \(c.id)")
            stats.idleClosed.add(1, ordering: .relaxed)
        }
        // After connections went away (idle sweep or peers closing), hand the freed buffers back to the
        // kernel: glibc keeps them in its arenas otherwise, and a burst of connections (or a client that
        // let replies pile up) would leave the process at its peak size. At most once a sweep (1 s), and
        // only when the number of connections fell since the last trim, and on the 5 sweeps after it
        // (a closed connection's buffers, TLS state above all, are freed on its event loop a little
        // after it leaves the table).
        let count = table.withLock { $0.byID.count }
        let trim = trimState.withLock { t -> Bool in
            t.peak = max(t.peak, count)
            guard count < t.peak else {
                guard t.trailing > 0 else { return false }
                t.trailing -= 1
                return true
            }
            t.peak = count
            t.last = now
            t.trailing = 5
            return true
        }
        if trim { _ = st_malloc_trim() }
    }

    // MARK: Listeners

    private func makeServerBootstrap(_ l: StreamListener, index: Int) -> ServerBootstrap {
        ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 1024)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
            .childChannelOption(.socketOption(.so_keepalive), value: settings.keepalive ? 1 : 0)
            .childChannelOption(.writeBufferWaterMark, value: .init(low: settings.maxQueuedBytes / 2, high: settings.maxQueuedBytes))
            .childChannelOption(.maxMessagesPerRead, value: 4)
            .childChannelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture {
                    // The bound address (the kernel's port when the configured one is 0) is what $Rp shows.
                    let b = self.bound.withLock { $0.count > index ? $0[index] : l }
                    try self.configureInbound(channel, listener: b)
                }
            }
    }

    /// `tcp_keepidle`, `tcp_keepintvl`, `tcp_keepcnt` (when set and keepalives are on).
    private func applyKeepaliveTiming(_ channel: any Channel) throws {
        guard settings.keepalive, let sync = channel.syncOptions else { return }
        for (option, value) in [(TCP_KEEPIDLE, settings.keepIdle), (TCP_KEEPINTVL, settings.keepInterval), (TCP_KEEPCNT, settings.keepCount)]
        where value > 0 {
            try sync.setOption(ChannelOptions.Types.SocketOption(level: .tcp, name: NIOBSDSocket.Option(rawValue: option)),
                               value: SocketOptionValue(value))
        }
    }

    private func configureInbound(_ channel: any Channel, listener l: StreamListener) throws {
        try applyKeepaliveTiming(channel)
        let ops = channel.pipeline.syncOperations
        if l.proxyProtocol {
            try ops.addHandler(ProxyProtocolHandler())
        }
        if l.proto == .tls || l.proto == .wss, let tlsContexts {
            try ops.addHandler(NIOSSLServerHandler(context: tlsContexts.server))
        }
        switch l.proto {
        case .ws, .wss:
            try WebSocketSupport.configure(channel, transport: self, listener: l)
        default:
            try ops.addHandler(ByteToMessageHandler(SIPStreamDecoder(limits: settings.limits, acceptNoContentLength: settings.acceptNoContentLength)))
            try ops.addHandler(SIPStreamHandler(transport: self, connection: nil, listener: l))
        }
    }
}

/// A worker's stream sends of one batch, grouped by connection (in first-use order); `StreamTransport.flush`
/// sends them. Owned by one worker thread.
public final class StreamOutbox {
    struct Batch {
        let connection: StreamConnection
        var buffers: [ByteBuffer]
        var close: Bool
    }
    fileprivate(set) var batches: [Batch] = []
    private var index: [UInt64: Int] = [:]

    public init() {}

    public var isEmpty: Bool { batches.isEmpty }

    func append(_ c: StreamConnection, _ b: ByteBuffer, close: Bool) {
        if let i = index[c.id] {
            batches[i].buffers.append(b)
            if close { batches[i].close = true }
        } else {
            index[c.id] = batches.count
            batches.append(Batch(connection: c, buffers: [b], close: close))
        }
    }

    func clear() {
        batches.removeAll(keepingCapacity: true)
        index.removeAll(keepingCapacity: true)
    }
}

/// Connection-layer counters.
public final class StreamStats: Sendable {
    public let accepted = Atomic<Int>(0)
    public let refused = Atomic<Int>(0)
    public let connectsStarted = Atomic<Int>(0)
    public let connectFailures = Atomic<Int>(0)
    public let messagesIn = Atomic<Int>(0)
    public let pings = Atomic<Int>(0)
    public let invalid = Atomic<Int>(0)
    public let idleClosed = Atomic<Int>(0)
    public let sendFailures = Atomic<Int>(0)
    public init() {}
}

extension SIPTransport.SocketAddress {
    /// As a NIO address.
    var nio: NIOCore.SocketAddress {
        withSockAddr { p, len in
            switch family {
            case .inet: return NIOCore.SocketAddress(p.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { $0.pointee }, host: "")
            case .inet6: return NIOCore.SocketAddress(p.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { $0.pointee }, host: "")
            }
        }
    }

    /// From a NIO address (nil for Unix sockets).
    init?(nio: NIOCore.SocketAddress) {
        switch nio {
        case .v4(let a):
            var sin = a.address
            guard let s = withUnsafeBytes(of: &sin, { SIPTransport.SocketAddress(sockaddr: $0.baseAddress!) }) else { return nil }
            self = s
        case .v6(let a):
            var sin6 = a.address
            guard let s = withUnsafeBytes(of: &sin6, { SIPTransport.SocketAddress(sockaddr: $0.baseAddress!) }) else { return nil }
            self = s
        case .unixDomainSocket:
            return nil
        }
    }
}
