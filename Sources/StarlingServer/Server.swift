import Foundation
import Synchronization
public import Logging
#if canImport(Glibc)
import Glibc
#endif
import SIPCore
import CStarlingSystem
public import SIPTransport
public import StarlingKEMI
public import StarlingLua
public import KSRModules
public import StarlingStore
public import SIPStreams
import DiameterNode

/// A running Starling: sockets, worker threads, the script store and its file watcher.
public final class Server: Sendable {
    /// Starling's release version.
    public static let version = "0.1.0"
    public let config: StarlingConfig
    /// Server-wide counters (reloads); per-message counters live in `workerStats`.
    public let stats = ServerStats()
    private let workerStats: Mutex<[ServerStats]> = Mutex([])
    /// The workers of each UDP socket (which of them read it).
    private let crews: Mutex<[UDPCrew]> = Mutex([])
    public let registry: KemiRegistry
    /// The transaction store (KSR.tm), shared by all workers.
    public let transactions: TMStore
    /// The modules' process-wide state (shared tables, clock, periodic jobs).
    public let runtime: ModuleRuntime
    /// The loaded modules, their state and export registry.
    public let stack: RoutingStack
    let tmLoaded: Bool
    /// True when the uac module is loaded.
    public let uacLoaded: Bool
    /// The embedded database, when a `db_url` is configured (`[modparam.usrloc]` or `[modparam.auth_db]`).
    public let database: StarlingDatabase?

    /// Transactions in memory, or nil when the tm module is not loaded.
    public var transactionsActive: Int? { tmLoaded ? transactions.count : nil }
    let logger: Logger
    let store: ScriptStore
    let services: ServerServices
    let stop = StopFlag()
    /// One inbox per worker when stream transports are configured (empty otherwise).
    let inboxes: [StreamInbox]
    /// The connection layer, nil when only UDP is configured.
    public var streams: StreamTransport? { services.streams }
    private let threads: Mutex<[PosixThread]> = Mutex([])
    private let watcher: Mutex<ScriptWatcher?> = Mutex(nil)
    /// The Diameter node and its routing thread, when `[diameter]` is configured.
    let diameter: DiameterService?
    let limits: LuaEngineLimits
    /// When the server was created (for `core.uptime`).
    public let startedAt = ContinuousClock.now
    /// Wall-clock start, seconds since 1970.
    public let startedAtUnix: Int = Int(time(nil))
    private let routing = Atomic<Bool>(false)
    /// When the housekeeping thread last went round (monotonic ms); the systemd watchdog pings only
    /// while it keeps going.
    private let heartbeat = Atomic<Int>(0)
    /// True from the end of `start()` (every listener bound, workers running the loaded script) until
    /// `shutdown()` begins: what `GET /health` and sd_notify's READY=1 report.
    public var isRouting: Bool { routing.load(ordering: .acquiring) }

    /// Everything that can fail before a single worker starts: the script loads, sockets bind.
    public init(config: StarlingConfig, logger: Logger) throws(ServerError) {
        self.config = config
        self.logger = logger
        limits = LuaEngineLimits(instructionBudget: config.lua.instructionBudget, memoryLimit: config.lua.memoryLimitMB << 20)
        let moduleConfig = config.moduleParameters
        database = try Self.openDatabase(moduleConfig, logger: logger)
        var resolver: DNSResolver? = nil
        do {
            resolver = try DNSResolver(configuration: DNSResolver.Configuration(servers: config.dnsServers))
        } catch {
            logger.warning("DNS resolver unavailable (\(error)); only numeric hosts can be reached")
        }
        // Host names the modules resolve outside a route (dispatcher's list at load).
        var resolveHost: ModuleRuntime.HostResolver? = nil
        if let r = resolver {
            resolveHost = { (host: String, port: Int?, proto: SIPTransportProtocol) -> [SocketAddress] in
                do throws(DNSError) { return try r.resolve(host: host, port: port, proto: proto) } catch { return [] }
            }
        }
        let stack: RoutingStack
        do throws(ModuleStartError) {
            if let database {
                // uac's remote registrations are on when its reg_db_url names a database (as Kamailio's).
                let uacreg = config.loadedModules.contains("uac")
                    ? moduleConfig.uacRegistrationTable.map { SQLiteUACRegistrations(database, table: $0) } : nil
                stack = try RoutingStack(modules: config.modules, config: moduleConfig, subscribers: SQLiteSubscribers(database),
                                         locations: SQLiteLocations(database, useDomain: moduleConfig.usrlocUseDomain),
                                         uacRegistrations: uacreg, logger: logger, resolveHost: resolveHost)
                if stack.runtime.usrloc.dbMode != .noDB {
                    // Load the location table now (a restart keeps registrations).
                    let t = stack.runtime.usrloc.table("location")
                    logger.info("usrloc: \(t.count) contacts loaded from \(database.path) (db_mode \(stack.runtime.usrloc.dbMode.rawValue))")
                }
            } else {
                stack = try RoutingStack(modules: config.modules, config: moduleConfig, logger: logger, resolveHost: resolveHost)
            }
        } catch {
            throw ServerError(error.description, configuration: true)
        }
        if database == nil, moduleConfig.usrlocDBMode != 0, stack.runtime.usrloc.shared == nil {
            logger.warning("usrloc db_mode is set but no db_url: registrations are kept in memory only")
        }
        self.stack = stack
        runtime = stack.runtime
        // acc's database records (acc, missed_calls, CDRs) go to the embedded database.
        if stack.isLoaded("acc"), let database {
            let sink = SQLiteAccounting(database)
            AccModule.store(stack.runtime).setSink(sink)
        }
        // dialog db_mode 1/2/3: the confirmed dialogs of the last run are back, with their profiles.
        if stack.isLoaded("dialog"), moduleConfig.dialogDBMode != 0, let database {
            do {
                let dialogs = DialogModule.store(stack.runtime)
                let n = try dialogs.attach(try SQLiteDialogs(database), now: stack.runtime.clock.unixSeconds)
                try dialogs.startWriter()
                logger.info("dialog: \(n) dialogs loaded from \(database.path) (db_mode \(moduleConfig.dialogDBMode))")
            } catch {
                throw ServerError("dialog: cannot load the dialog table of \(database.path): \(error)")
            }
        }
        transactions = runtime.tm
        tmLoaded = stack.isLoaded("tm")
        uacLoaded = stack.isLoaded("uac")
        registry = stack.registry
        // The script must load before anything starts.
        let source: ScriptSource
        let version: ScriptVersion
        let files: [String]
        do {
            source = try ScriptSource.read(path: config.script)
            let probe = try LuaEngine(script: source, registry: registry, context: nil, limits: limits)
            version = probe.version
            files = probe.loadedFiles
        } catch {
            throw ServerError("cannot load script: \(error.description)")
        }
        store = ScriptStore(ScriptStore.Published(generation: 0, source: source, version: version, files: files))
        // Sockets
        var sockets: [UDPSocket] = []
        var streamListeners: [StreamListener] = []
        for l in config.listen {
            switch l.proto {
            case .udp:
                do {
                    if l.isMulticast {
                        // A group socket shares its port with the unicast ones and only receives.
                        guard let index = l.multicastInterfaceIndex else {
                            throw ServerError("listen \(l): multicast interface \"\(l.multicastInterface ?? "")\" does not exist")
                        }
                        let s = try UDPSocket(bindingTo: l.address, options: UDPSocket.Options(reuseAddress: true))
                        sockets.append(s)
                        try s.joinMulticast(interfaceIndex: index, loopback: config.mcastLoopback, ttl: config.mcastTTL)
                    } else {
                        // A wildcard socket on a group's port also gets the group's datagrams: it
                        // learns each datagram's destination to leave those to the group socket.
                        let sharesPort = l.address.isUnspecified
                            && config.listen.contains { $0.isMulticast && $0.address.port == l.address.port }
                        let options = UDPSocket.Options(packetInfo: sharesPort,
                                                        reuseAddress: config.listen.contains { $0.isMulticast && $0.address.port == l.address.port })
                        sockets.append(try UDPSocket(bindingTo: l.address, options: options))
                    }
                } catch let e as ServerError {
                    for s in sockets { s.close() }
                    throw e
                } catch {
                    for s in sockets { s.close() }
                    throw ServerError("cannot listen on \(l): \(error)")
                }
            case .tcp, .tls, .ws, .wss:
                streamListeners.append(StreamListener(proto: l.proto, address: l.address, proxyProtocol: l.proxyProtocol))
            case .sctp:
                for s in sockets { s.close() }
                throw ServerError("listen \(l): SCTP is not supported")
            }
        }
        let workerCount = config.workers * max(1, sockets.count)
        var streams: StreamTransport? = nil
        var inboxes: [StreamInbox] = []
        var listen = config.listen
        if !streamListeners.isEmpty {
            do throws(TransportError) {
                for _ in 0..<workerCount { inboxes.append(try StreamInbox()) }
                let t = try StreamTransport(listeners: streamListeners, inboxes: inboxes,
                                            settings: Self.streamSettings(config), logger: logger)
                try t.start()
                streams = t
            } catch {
                for s in sockets { s.close() }
                throw ServerError("\(error)")
            }
            // Port 0 listeners: advertise the port the kernel chose.
            let bound = streams!.boundListeners
            var k = 0
            for i in listen.indices where listen[i].proto != .udp && listen[i].proto != .sctp {
                listen[i].address = bound[k].address
                k += 1
            }
        }
        for (i, j) in zip(listen.indices.filter { listen[$0].proto == .udp }, sockets.indices) {
            listen[i].address = sockets[j].localAddress
        }
        self.inboxes = inboxes
        services = ServerServices(listen: listen, udpSockets: sockets, streams: streams, resolver: resolver,
                                  defines: config.defineTexts, workerCount: workerCount, aliases: config.aliases)
        // Datagrams sent outside any route (NAT keepalives) leave from the first unicast UDP socket.
        if let first = sockets.first(where: { !$0.localAddress.isMulticast }) {
            runtime.setOutbound(OutboundSender(local: first.localAddress) { bytes, dst in
                do { try first.send(bytes, to: dst); return true } catch { return false }
            })
        }
        if var d = config.diameter {
            let usesTLS = d.listen.contains(where: \.tls) || d.peers.contains { $0.connect?.tls == true }
            if usesTLS {
                guard let t = config.tls, !t.certificate.isEmpty, !t.privateKey.isEmpty else {
                    services.streams?.shutdown()
                    for s in sockets { s.close() }
                    throw ServerError("diameter.listen: tls: listeners and peers need [tls] certificate and private_key", configuration: true)
                }
                d.tls = DiameterNodeConfig.TLSFiles(certificate: t.certificate, privateKey: t.privateKey, caList: t.caList,
                                                    verifyServer: t.verifyServer)
            }
            let service = DiameterService(config: d, store: store, stack: stack, limits: limits, services: services,
                                          logger: logger, stop: stop)
            do {
                try service.node.start()
            } catch {
                services.streams?.shutdown()
                for s in sockets { s.close() }
                throw ServerError("diameter.listen: \(error)", configuration: true)
            }
            for ep in service.node.boundListeners { logger.info("diameter: listening on \(ep) as \(d.identity)") }
            diameter = service
        } else {
            diameter = nil
        }
        logger.info("script \(config.script) version \(version) loaded")
    }

    /// async_io: the requests whose routes wait, across workers.
    let asyncPending = AsyncPendingRequests()

    /// Starts the workers (per UDP listener, `workers` threads sharing its socket) and the watcher.
    public func start() throws(ServerError) {
        var started: [PosixThread] = []
        var index = 0
        let udp: [UDPSocket?] = services.udpSockets.isEmpty ? [nil] : services.udpSockets
        for socket in udp {
            let crew = socket == nil ? nil : UDPCrew(size: config.workers)
            if let crew { crews.withLock { $0.append(crew) } }
            for member in 0..<config.workers {
                let inbox = inboxes.isEmpty ? nil : inboxes[index]
                let worker = Transfer(UDPWorker(index: index, socket: socket, inbox: inbox, store: store, limits: limits,
                                                services: services, stats: statsForWorker(), logger: logger,
                                                parserLimits: .default, stop: stop, stack: stack,
                                                asyncIO: config.asyncIO ? (config.asyncMaxPending, asyncPending) : nil,
                                                crew: crew, member: member))
                do {
                    started.append(try PosixThread(name: "worker-\(index)") { worker.value.run() })
                } catch {
                    stop.set()
                    throw ServerError("cannot start worker thread: \(error)")
                }
                index += 1
            }
            if let socket { logger.info("listening on udp:\(socket.localAddress) with \(config.workers) workers") }
        }
        if config.asyncIO {
            logger.info("async_io: routes run as coroutines; http_client, enum, ndb_redis, diameter_request and uac.starling_req_send_await calls wait without blocking (async_max_pending \(config.asyncMaxPending) per worker)")
        }
        for l in services.streams?.boundListeners ?? [] {
            logger.info("listening on \(l)\(l.proxyProtocol ? " (PROXY protocol)" : "") with \(index) workers")
        }
        if let diameter {
            let d = Transfer(diameter)
            let n = index
            do {
                started.append(try PosixThread(name: "diameter") { d.value.run(index: n) })
            } catch {
                stop.set()
                throw ServerError("cannot start the diameter thread: \(error)")
            }
        }
        // Module housekeeping (expiry, keepalives, background database writes): once a second.
        let runtime = self.runtime
        let stop = self.stop
        do {
            started.append(try PosixThread(name: "housekeeping") { [weak self] in
                while !stop.isSet {
                    self?.heartbeat.store(Self.monotonicMillis(), ordering: .relaxed)
                    for _ in 0..<10 where !stop.isSet { usleep(100_000) }
                    if !stop.isSet { runtime.runPeriodic() }
                }
            })
        } catch {
            stop.set()
            throw ServerError("cannot start housekeeping thread: \(error)")
        }
        threads.withLock { $0 = started }
        startWatcher(files: store.published.files)
        heartbeat.store(Self.monotonicMillis(), ordering: .relaxed)
        routing.store(true, ordering: .releasing)
    }

    private func startWatcher(files: [String]) {
        do {
            let w = try ScriptWatcher(paths: files) { [weak self] changed in
                self?.reload(reason: "changed: \(changed.sorted().joined(separator: ", "))")
            }
            watcher.withLock { $0 = w }
        } catch {
            logger.warning("script file watching is off: \(error)")
        }
    }

    /// Loads the script again; publishes it if it loads and defines `ksr_request_route`, else keeps
    /// the running version and logs why. Returns true if a new version was published.
    @discardableResult
    public func reload(reason: String) -> Bool {
        if case .published = reloadScript(reason: reason) { return true }
        return false
    }

    /// What a reload did.
    public enum ReloadOutcome: Sendable, Equatable {
        /// A new version is published; the workers switch between two messages.
        case published(ScriptVersion)
        /// The files load but hash to the running version.
        case unchanged(ScriptVersion)
        /// The new version was refused (the message says why); the running version stays.
        case failed(String, active: ScriptVersion)
    }

    /// `reload(reason:)` with the outcome.
    public func reloadScript(reason: String) -> ReloadOutcome {
        reloadLock.withLock { _ in reloadLocked(reason: reason) }
    }

    private let reloadLock = Mutex<Void>(())

    private func reloadLocked(reason: String) -> ReloadOutcome {
        logger.info("reloading \(config.script) (\(reason))")
        do {
            let source = try ScriptSource.read(path: config.script)
            let probe = try LuaEngine(script: source, registry: registry, context: nil, limits: limits)
            let current = store.published
            if probe.version == current.version {
                logger.info("script version \(probe.version) unchanged")
                return .unchanged(probe.version)
            }
            let p = store.publish(source: source, version: probe.version, files: probe.loadedFiles)
            stats.reloadsOK.wrappingAdd(1, ordering: .relaxed)
            logger.info("script version \(p.version) published (was \(current.version)); workers switch between messages")
            if Set(probe.loadedFiles) != Set(current.files) {
                watcher.withLock { w in
                    do { try w?.setPaths(probe.loadedFiles) } catch { logger.warning("watching \(probe.loadedFiles): \(error)") }
                }
            }
            return .published(p.version)
        } catch {
            stats.reloadsFailed.wrappingAdd(1, ordering: .relaxed)
            let active = store.published.version
            logger.error("reload failed, version \(active) stays active: \(error.description)")
            return .failed(error.description, active: active)
        }
    }

    private func statsForWorker() -> ServerStats {
        let s = ServerStats()
        workerStats.withLock { $0.append(s) }
        return s
    }

    /// Totals of the per-worker message counters and the server's reload counters.
    public func counters() -> [String: Int] {
        var out: [String: Int] = [
            "reloads_ok": stats.reloadsOK.load(ordering: .relaxed),
            "reloads_failed": stats.reloadsFailed.load(ordering: .relaxed),
            "transactions": transactions.count,
        ]
        for w in workerStats.withLock({ $0 }) {
            out["received", default: 0] += w.received.load(ordering: .relaxed)
            out["parse_errors", default: 0] += w.parseErrors.load(ordering: .relaxed)
            out["rejected", default: 0] += w.rejected.load(ordering: .relaxed)
            out["script_errors", default: 0] += w.scriptErrors.load(ordering: .relaxed)
            out["budget_aborts", default: 0] += w.budgetAborts.load(ordering: .relaxed)
            if config.asyncIO {
                out["async_absorbed", default: 0] += w.asyncAbsorbed.load(ordering: .relaxed)
                out["async_rejected", default: 0] += w.asyncRejected.load(ordering: .relaxed)
            }
            out["requests_sent", default: 0] += w.requestsSent.load(ordering: .relaxed)
            out["send_failures", default: 0] += w.sendFailures.load(ordering: .relaxed)
            var replies = 0
            for c in 0..<7 { replies += w.repliesSentByClass[c].load(ordering: .relaxed) }
            out["replies_sent", default: 0] += replies
        }
        return out
    }

    /// Messages each worker routed, by worker index.
    public func receivedByWorker() -> [Int] {
        workerStats.withLock { $0 }.map { $0.received.load(ordering: .relaxed) }
    }

    /// How many times a worker that waits for load started reading its UDP socket, by reason
    /// ("backlog": the readers had datagrams queued; "stall": every reader was stuck in a message).
    public func udpHelperJoins() -> [(reason: String, count: Int)] {
        var totals = [0, 0]
        for c in crews.withLock({ $0 }) {
            for (reason, n) in c.joinCounts() { totals[reason.rawValue] += n }
        }
        return UDPCrew.JoinReason.allCases.map { ($0.label, totals[$0.rawValue]) }
    }

    /// Requests received by method name ("OTHER" for unknown methods), replies received and replies
    /// sent by status class ("1xx"..."6xx"), summed over the workers. Only non-zero entries.
    public func messageCounters() -> (requests: [String: Int], replies: [String: Int], repliesSent: [String: Int]) {
        var requests: [String: Int] = [:]
        var replies: [String: Int] = [:]
        var repliesSent: [String: Int] = [:]
        for w in workerStats.withLock({ $0 }) {
            for m in SIPMethod.allCases {
                let n = w.requestsByMethod[Int(m.rawValue) & 31].load(ordering: .relaxed)
                if n > 0 { requests[m == .other ? "OTHER" : m.name, default: 0] += n }
            }
            for c in 0..<7 {
                let n = w.repliesByClass[c].load(ordering: .relaxed)
                if n > 0 { replies[c == 0 ? "other" : "\(c)xx", default: 0] += n }
                let s = w.repliesSentByClass[c].load(ordering: .relaxed)
                if s > 0 { repliesSent[c == 0 ? "other" : "\(c)xx", default: 0] += s }
            }
        }
        return (requests, replies, repliesSent)
    }

    /// Messages received and sent by transport name ("udp", "tcp", ...), summed over the workers;
    /// only transports with traffic.
    public func transportCounters() -> (received: [String: Int], sent: [String: Int]) {
        var received: [String: Int] = [:], sent: [String: Int] = [:]
        for w in workerStats.withLock({ $0 }) {
            for p in SIPTransportProtocol.allCases {
                let i = Int(p.rawValue) & 7
                let r = w.receivedByTransport[i].load(ordering: .relaxed)
                if r > 0 { received[p.name, default: 0] += r }
                let s = w.sentByTransport[i].load(ordering: .relaxed)
                if s > 0 { sent[p.name, default: 0] += s }
            }
        }
        return (received, sent)
    }

    /// Route execution times summed over the workers: per kind, cumulative bucket counts (one per
    /// `RouteTimeHistogram.bounds` entry, then +Inf) and the sum in seconds.
    public func routeTimes() -> [(kind: RouteTimeHistogram.Kind, cumulative: [Int], sumSeconds: Double)] {
        let all = workerStats.withLock { $0 }
        return RouteTimeHistogram.Kind.allCases.map { kind in
            var b = [Int](repeating: 0, count: RouteTimeHistogram.bounds.count + 1)
            var sum = 0
            for w in all {
                for (i, n) in w.routeTime.buckets(kind).enumerated() { b[i] += n }
                sum += w.routeTime.sumNanos(kind)
            }
            var running = 0
            for i in b.indices { running += b[i]; b[i] = running }
            return (kind, b, Double(sum) / 1e9)
        }
    }

    /// The published script: path, version, files, generation.
    public var publishedScript: ScriptStore.Published { store.published }

    /// Workers running the published generation.
    public var workersOnCurrentScript: Int { store.workersOnCurrent.load(ordering: .relaxed) }

    /// Total worker threads.
    public var workerCount: Int { services.workerCount }

    /// The bound listeners, "udp:127.0.0.1:5060, tcp:..." (sd_notify's STATUS).
    public var listenDescription: String { services.listen.map(\.description).joined(separator: ", ") }

    /// The bound SIP sockets (real ports when 0 was configured).
    public var boundSockets: [(proto: SIPTransportProtocol, address: SocketAddress)] {
        services.udpSockets.map { (.udp, $0.localAddress) }
    }

    /// Kernel state of each UDP socket, from /proc/net/udp{,6} (read when asked; nil values when the
    /// socket is not found there): bytes waiting in the receive queue, datagrams dropped by the kernel
    /// (receive buffer full), and the receive buffer size.
    public func socketStatus() -> [(socket: String, receiveQueue: Int?, drops: Int?, receiveBuffer: Int)] {
        var byInode: [UInt64: (rx: Int, drops: Int)] = [:]
        for file in ["/proc/net/udp", "/proc/net/udp6"] {
            guard let text = Self.readProcFile(file) else { continue }
            for line in text.split(separator: "\n").dropFirst() {
                let f = line.split(separator: " ", omittingEmptySubsequences: true)
                guard f.count >= 13, let inode = UInt64(f[9]), let drops = Int(f[12]) else { continue }
                let queues = f[4].split(separator: ":")
                guard queues.count == 2, let rx = Int(queues[1], radix: 16) else { continue }
                byInode[inode] = (rx, drops)
            }
        }
        return services.udpSockets.map { sock in
            var st = stat()
            let found = fstat(sock.fileDescriptor, &st) == 0 ? byInode[UInt64(st.st_ino)] : nil
            return ("udp:\(sock.localAddress)", found?.rx, found?.drops, sock.receiveBufferSize)
        }
    }

    /// True while routing and the housekeeping thread went round within the last 15 s: what the
    /// systemd watchdog (WATCHDOG=1) reports.
    public var isResponsive: Bool {
        isRouting && Self.monotonicMillis() - heartbeat.load(ordering: .relaxed) < 15_000
    }

    static func monotonicMillis() -> Int {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Int(ts.tv_sec) * 1000 + Int(ts.tv_nsec) / 1_000_000
    }

    /// A /proc file read to its end. (/proc files report size 0 and are produced a page per read();
    /// a reader that trusts the size or stops after one read misses the sockets past the first page.)
    static func readProcFile(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 { if errno == EINTR { continue }; return nil }
            if n == 0 { break }
            out.append(contentsOf: buf[0..<n])
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Seconds since the server was created.
    public var uptimeSeconds: Double {
        let d = ContinuousClock.now - startedAt
        return Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
    }

    /// `starling check`: loads a script with every module's exports.
    public static func checkScript(path: String) throws(LuaScriptError) -> ScriptVersion {
        try checkScriptWithWarnings(path: path).version
    }

    /// `starling check`: loads the script, then lists the `KSR.*` names its files use that no loaded
    /// module exports (warnings: Lua reports them only when the line runs).
    /// With `asyncIO`, also the globals written inside functions (routes may interleave).
    public static func checkScriptWithWarnings(path: String, modules: [String] = [], asyncIO: Bool = false)
        throws(LuaScriptError) -> (version: ScriptVersion, warnings: [String]) {
        let registry = RoutingStack.registry(modules: modules)
        let engine = try LuaEngine(path: path, registry: registry, context: nil, limits: .default)
        var warnings: [String] = []
        for file in engine.loadedFiles {
            guard let source = try? ScriptSource.read(path: file) else { continue }
            for (ref, why) in KSRReferences.unresolved(KSRReferences.scan(source.bytes), registry: registry) {
                warnings.append("\(file):\(ref.line): warning: \(ref.name): \(why)")
            }
            if asyncIO {
                for w in GlobalWrites.scan(source.bytes) {
                    warnings.append("\(file):\(w.line): warning: global '\(w.name)' written in \(w.function): with async_io "
                                    + "another message's route may run while this one waits (use local or $var)")
                }
            }
        }
        return (engine.version, warnings)
    }

    /// The version every worker should be running.
    public var activeVersion: ScriptVersion { store.published.version }

    /// Stops the workers and the watcher and closes the sockets.
    public func shutdown() {
        routing.store(false, ordering: .releasing)
        stop.set()
        watcher.withLock { $0?.stop(); $0 = nil }
        let ts = threads.withLock { t -> [PosixThread] in let all = t; t = []; return all }
        for t in ts { t.join() }
        // DPR to the open peers, then the connections close.
        diameter?.node.stop()
        runtime.setOutbound(nil)
        // After the workers: none of them sends on a connection any more.
        services.streams?.shutdown()
        for s in services.udpSockets { s.close() }
        // usrloc write-back: what the timer has not written yet.
        runtime.usrloc.flush()
        if stack.isLoaded("acc") { AccModule.store(runtime).sink?.flush() }
        if stack.isLoaded("dialog") { DialogModule.store(runtime).close() }
        let c = counters()
        logger.info("stopped; \(c.keys.sorted().map { "\($0)=\(c[$0]!)" }.joined(separator: " "))")
    }
}

extension Server {
    /// Opens the database named by `[modparam.usrloc] db_url` or `[modparam.auth_db] db_url`
    /// (`sqlite:///path` or a plain path). Both normally name the same file; when they differ, usrloc's
    /// is used and a warning logged.
    static func openDatabase(_ c: ModuleConfiguration, logger: Logger) throws(ServerError) -> StarlingDatabase? {
        let urls = c.databaseURLs
        guard let url = urls.first else { return nil }
        guard let path = StarlingDatabase.path(fromURL: url) else {
            throw ServerError("db_url '\(url)': only SQLite databases are supported (sqlite:///path/to/file.db)", configuration: true)
        }
        if urls.count > 1, StarlingDatabase.path(fromURL: urls[1]) != path {
            logger.warning("usrloc and auth_db db_url name different files; using \(path) for both")
        }
        do { return try StarlingDatabase(path: path) } catch { throw ServerError(error.description) }
    }

    /// The connection layer's settings from the configuration.
    static func streamSettings(_ config: StarlingConfig) -> StreamSettings {
        var tls: TLSSettings? = nil
        if let t = config.tls {
            var domains: [String: TLSDomain] = [:]
            for (name, d) in t.domains {
                domains[name] = TLSDomain(certificate: d["certificate"] ?? "", privateKey: d["private_key"] ?? "")
            }
            tls = TLSSettings(certificate: t.certificate, privateKey: t.privateKey, caList: t.caList, verifyClient: t.verifyClient,
                              requireClientCertificate: t.requireClientCertificate, verifyServer: t.verifyServer,
                              minVersion: t.minVersion, domains: domains)
        }
        var s = StreamSettings(connectionLifetime: config.tcpConnectionLifetime,
                               connectTimeoutMillis: config.tcpConnectTimeout * 1000,
                               maxConnections: config.tcpMaxConnections, limits: .default, tls: tls)
        s.crlfPing = config.tcpCRLFPing
        s.acceptNoContentLength = config.tcpAcceptNoCL
        s.keepalive = config.tcpKeepalive
        s.keepIdle = config.tcpKeepIdle
        s.keepInterval = config.tcpKeepIntvl
        s.keepCount = config.tcpKeepCnt
        return s
    }
}

extension Server {
    /// glibc gives every thread that allocates concurrently its own heap arena (up to 8 per core), and
    /// an arena keeps its high-water mark: bursts of TLS connections closed mid-handshake on the
    /// event-loop threads left RSS 10-20% higher after each burst (StreamRobustnessTests). One arena
    /// per core keeps it flat. `MALLOC_ARENA_MAX` in the environment wins. Call before any thread starts.
    public static func limitMallocArenas() {
        guard getenv("MALLOC_ARENA_MAX") == nil else { return }
        let cores = max(2, sysconf(Int32(_SC_NPROCESSORS_ONLN)))
        _ = st_malloc_arena_max(Int32(cores))
    }
}

/// A start-up failure, with a message for the user.
public struct ServerError: Error, Sendable, CustomStringConvertible {
    public let description: String
    /// The configuration is at fault (a module refused its parameters or files): exit status 2.
    public let isConfiguration: Bool
    public init(_ d: String, configuration: Bool = false) {
        description = d
        isConfiguration = configuration
    }
}

/// Moves a non-Sendable value into a thread that becomes its only owner.
final class Transfer<T>: @unchecked Sendable {
    // Safety: the value is created on the starting thread and used only by the thread it is given to.
    let value: T
    init(_ v: T) { value = v }
}
