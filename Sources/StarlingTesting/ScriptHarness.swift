#if canImport(Glibc)
import Glibc
#endif
public import SIPCore
public import SIPTransport
public import StarlingKEMI
public import StarlingLua
public import KSRModules
public import StarlingServer
public import Logging

/// A sent datagram, as the recorder saw it.
public struct SentMessage: Sendable {
    public var bytes: [UInt8]
    public var destination: SocketAddress
    public var proto: SIPTransportProtocol
    public var text: String { String(decoding: bytes, as: UTF8.self) }
    /// The message parsed (nil if it does not parse).
    public var message: SIPMessage? { try? SIPMessage.parse(bytes) }
}

/// A `MessageSender` that records instead of sending: the network of offline tests.
public final class RecordingSender: MessageSender {
    public private(set) var sent: [SentMessage] = []
    public init() {}
    public func send(_ bytes: [UInt8], to destination: SocketAddress, proto: SIPTransportProtocol, from local: SocketAddress?) -> Bool {
        sent.append(SentMessage(bytes: bytes, destination: destination, proto: proto))
        return true
    }
    public func clear() { sent.removeAll() }
}

/// Core services for offline runs: a fixed local address, a table of names to addresses.
public final class TestServices: CoreServices {
    public let local: SocketAddress
    public let hosts: [String: SocketAddress]
    public let defines: [String: String]
    public let aliases: Set<String>
    /// Where every name not in `hosts` resolves (nil: it does not resolve).
    public let anyHost: SocketAddress?
    /// Names that resolve to several addresses, in order (SRV/A records: tm's DNS failover).
    public let multiHosts: [String: [SocketAddress]]
    /// The resolver NAPTR lookups (ENUM) go to; nil: they fail.
    public let resolver: DNSResolver?
    /// TLS peers by connection id (what `KSR.tls` and `$tls_peer_*` see).
    public let tlsPeers: [UInt64: TLSPeer]
    /// The listen sockets (default: UDP on `local`). With several, a message leaves from the socket of
    /// its transport whose address shares the destination's first three IPv4 octets (the test's
    /// routing table), else from the first of its transport.
    public let sockets: [LocalSocket]

    public convenience init(local: SocketAddress = SocketAddress(ip: "127.0.0.1", port: 5060)!, hosts: [String: SocketAddress] = [:],
                            defines: [String: String] = [:], aliases: [String] = [], anyHost: SocketAddress? = nil,
                            tlsPeers: [UInt64: TLSPeer] = [:]) {
        self.init(local: local, hosts: hosts, defines: defines, aliases: aliases, anyHost: anyHost, multiHosts: [:],
                  tlsPeers: tlsPeers)
    }

    public init(local: SocketAddress = SocketAddress(ip: "127.0.0.1", port: 5060)!, hosts: [String: SocketAddress] = [:],
                defines: [String: String] = [:], aliases: [String] = [], anyHost: SocketAddress? = nil,
                multiHosts: [String: [SocketAddress]], resolver: DNSResolver? = nil, tlsPeers: [UInt64: TLSPeer] = [:],
                sockets: [LocalSocket] = []) {
        self.sockets = sockets.isEmpty ? [LocalSocket(proto: .udp, address: local)] : sockets
        self.resolver = resolver
        self.local = local
        self.tlsPeers = tlsPeers
        self.anyHost = anyHost
        self.multiHosts = multiHosts
        self.hosts = hosts
        self.defines = defines
        self.aliases = Set(aliases)
    }

    public func isMyself(host: String, port: Int?, proto: SIPTransportProtocol?) -> Bool {
        if aliases.contains(host.lowercased()) { return port == nil || port == Int(local.port) }
        if sockets.count > 1 || sockets[0].advertisedHost != nil {
            return socket(host: host, port: port ?? 0, proto: nil) != nil
        }
        guard let a = SocketAddress(ip: host, port: 0), a.ip == local.ip else { return false }
        return port == nil || port == Int(local.port)
    }

    public func tlsPeer(connection id: UInt64) -> TLSPeer? { tlsPeers[id] }

    public func resolve(host: String, port: Int?, proto: SIPTransportProtocol) -> [SocketAddress] {
        if let a = SocketAddress(ip: host, port: port ?? 0) { return [a] }
        if let list = multiHosts[host.lowercased()] {
            return list.map { var a = $0; if let port { a.port = UInt16(port) }; return a }
        }
        if var a = hosts[host.lowercased()] ?? anyHost { if let port { a.port = UInt16(port) }; return [a] }
        return []
    }

    public func localSocket(for destination: SocketAddress, proto: SIPTransportProtocol) -> (socket: SocketAddress, advertised: String)? {
        guard sockets.count > 1 else {
            let s = sockets[0]
            return (local, s.address == local ? s.advertised : "\(local.uriHost):\(local.port)")
        }
        let sameProto = sockets.filter { $0.proto == proto }
        let net = destination.ip.split(separator: ".").prefix(3)
        if let s = sameProto.first(where: { $0.address.ip.split(separator: ".").prefix(3) == net }) ?? sameProto.first {
            return (s.address, s.advertised)
        }
        return (local, "\(local.uriHost):\(local.port)")
    }

    public func queryNAPTR(_ name: String) -> [NAPTRRecord]? {
        guard let resolver else { return nil }
        return try? resolver.queryNAPTR(name)
    }
}

/// Runs a KEMI Lua script on messages with the real engine and KSR functions, the network replaced by
/// a recorder. Used by Starling's own tests and by `starling test`.
public final class ScriptHarness {
    public let sender = RecordingSender()
    public let services: TestServices
    public let context: RouteContext
    public let engine: LuaEngine
    public let registry: KemiRegistry
    /// The same per-message path the server's workers run.
    public let dispatcher: MessageDispatcher
    /// The transaction store (KSR.tm) of this harness; its clock can be moved forward.
    public let transactions: TMStore
    /// The modules' shared state (tables, clock, periodic jobs) of this harness.
    public let runtime: ModuleRuntime
    /// The routing stack (loaded modules, state, registry), built as the server builds it.
    public let stack: RoutingStack
    /// Where test messages come from by default.
    public var source = SocketAddress(ip: "192.0.2.10", port: 5060)!

    /// Builds an engine from script text (written to a temporary file so errors carry a file name).
    /// Builds an engine from a script file.
    public convenience init(scriptFile: String, modules: [String]? = nil, config: ModuleConfiguration = ModuleConfiguration(),
                            services: TestServices = TestServices()) throws(LuaScriptError) {
        let source = try ScriptSource.read(path: scriptFile)
        try self.init(script: String(decoding: source.bytes, as: UTF8.self), path: scriptFile, modules: modules,
                      config: config, services: services)
    }

    public init(script: String, path: String = "test.lua", modules: [String]? = nil,
                config: ModuleConfiguration = ModuleConfiguration(), services: TestServices = TestServices(),
                subscribers: (any SubscriberLookup)? = nil, locations: (any LocationPersistence)? = nil,
                uacRegistrations: (any UACRegistrationSource)? = nil,
                logLevel: Logger.Level = .critical) throws(LuaScriptError) {
        self.services = services
        var logger = Logger(label: "test")
        logger.logLevel = logLevel
        // The same stack the server builds: modules resolved, started, their exports registered.
        let stack: RoutingStack
        do {
            stack = try RoutingStack(modules: modules ?? [], config: config, subscribers: subscribers, locations: locations,
                                     uacRegistrations: uacRegistrations,
                                     resolveHost: { [services] host, port, proto in services.resolve(host: host, port: port, proto: proto) })
        } catch {
            throw LuaScriptError(kind: .setup, message: "module start-up: \(error.description)")
        }
        self.stack = stack
        runtime = stack.runtime
        transactions = runtime.tm
        registry = stack.registry
        context = stack.makeContext(worker: 0, logger: logger, services: services, sender: sender, local: services.local)
        engine = try LuaEngine(script: ScriptSource(path: path, bytes: Array(script.utf8)), registry: registry,
                               context: context, limits: .default)
        dispatcher = MessageDispatcher(context: context)
        dispatcher.use(engine)
    }

    /// Moves the transaction clock forward (a mock clock: nothing sleeps) and runs the timers that
    /// became due, as a worker does between batches.
    public func advance(by d: Duration) {
        runtime.advance(by: d)
        dispatcher.runTimers()
        // Answers the timers just delivered (stubbed http_client answers under async_io) resume their
        // routes now, as the worker's next loop would.
        if context.mailbox.hasJobs { context.mailbox.run(context) }
    }

    /// Runs what a worker runs between batches (timers, routes resumed by other threads: HTTP answers,
    /// async tasks) in real time, until `done` holds or `timeout` passes. True when `done` held.
    @discardableResult
    public func runAsync(timeout: Duration = .seconds(10), until done: () -> Bool) -> Bool {
        let end = ContinuousClock.now + timeout
        while true {
            dispatcher.runTimers()
            if done() { return true }
            if ContinuousClock.now >= end { return false }
            usleep(2_000)
        }
    }

    /// Runs the resumed routes until nothing the worker waits for is outstanding (HTTP requests in
    /// flight, queued jobs), or `timeout` passes. True when it went quiet.
    @discardableResult
    public func settleAsync(timeout: Duration = .seconds(10)) -> Bool {
        runAsync(timeout: timeout) { context.mailbox.waitingCount == 0 && !context.mailbox.hasJobs }
    }

    /// Handles a message exactly as a server worker does: parse, core checks (400/505 answered by the
    /// core), `ksr_request_route` for requests, `ksr_reply_route` then the stateless relay for replies.
    @discardableResult
    public func route(_ text: String, from: SocketAddress? = nil, proto: SIPTransportProtocol = .udp,
                      local: SocketAddress? = nil) throws -> DispatchResult {
        route(bytes: Array(text.utf8), from: from, proto: proto, local: local)
    }

    /// The same for raw bytes (e.g. a torture-test file). `proto`: the transport it arrived on.
    @discardableResult
    public func route(bytes: [UInt8], from: SocketAddress? = nil, proto: SIPTransportProtocol = .udp,
                      local: SocketAddress? = nil) -> DispatchResult {
        bytes.withUnsafeBytes { dispatcher.dispatch($0, source: from ?? source, local: local ?? services.local, proto: proto) }
    }

    /// Calls a global Lua function of the script with the current message (set by `route` or `prepare`).
    @discardableResult
    public func call(_ function: String) -> CallbackOutcome { engine.run(callback: function) }

    /// Makes `m` the current message without running any callback.
    public func prepare(_ m: SIPMessage, from: SocketAddress? = nil) {
        context.begin(message: m, received: ReceiveInfo(source: from ?? source, local: services.local, proto: .udp),
                      routeType: m.isRequest ? .request : .reply)
    }
}
