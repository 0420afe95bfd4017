import Dispatch
import Synchronization
import Logging
#if canImport(Glibc)
import Glibc
#endif
import Diameter
import DiameterNode
import KSRModules
import StarlingKEMI
import StarlingLua
import SIPTransport

/// The Diameter side of the server: the node (listeners, peers, relay) and the routing thread that
/// runs the script's `ksr_diameter_request()` for each request, in a Lua state of its own built from
/// the same published script as the workers (so a reload reaches it too), with the same instruction
/// budget and memory cap.
final class DiameterService: DiameterRequestRouter, DiameterLink, @unchecked Sendable {
    let node: DiameterNode
    private let store: ScriptStore
    private let stack: RoutingStack
    private let limits: LuaEngineLimits
    private let services: ServerServices
    private let logger: Logger
    private let stop: StopFlag

    private struct Job {
        var request: DiameterMessage
        var from: String
        var complete: @Sendable (DiameterDecision) -> Void
    }
    private let jobs = Mutex<[Job]>([])
    private let signal = DispatchSemaphore(value: 0)

    init(config: DiameterNodeConfig, store: ScriptStore, stack: RoutingStack, limits: LuaEngineLimits, services: ServerServices,
         logger: Logger, stop: StopFlag) {
        node = DiameterNode(config: config, logger: logger)
        self.store = store
        self.stack = stack
        self.limits = limits
        self.services = services
        self.logger = logger
        self.stop = stop
        node.router = self
        stack.runtime.diameter.setLink(self)
    }

    func route(_ request: DiameterMessage, fromPeer: String, complete: @escaping @Sendable (DiameterDecision) -> Void) {
        jobs.withLock { $0.append(Job(request: request, from: fromPeer, complete: complete)) }
        signal.signal()
    }

    /// The routing thread's body.
    func run(index: Int) {
        let sender = WorkerSender(services: services, logger: logger)
        let local = services.listen.first?.address ?? SocketAddress(ip: "127.0.0.1", port: 0)!
        let ctx = stack.makeContext(worker: index, logger: logger, services: services, sender: sender, local: local)
        sender.context = ctx
        CurrentRoute.set(ctx)
        defer { CurrentRoute.set(nil) }
        var generation = -1
        var engine: LuaEngine?
        var callback: LuaCallback?
        var warned = false
        let cur = DiameterCurrent.of(ctx)
        // Answers to diameter_request_async sent from ksr_diameter_request() come back through this
        // thread's mailbox and run ksr_diameter_response here, between two requests.
        ctx.mailbox.setWakeup { [self] in signal.signal() }
        ctx.runEvent = { _, name, event in
            guard let e = engine else { return }
            if case .error(let error) = e.run(callback: name, arg: event) { self.logger.error("diameter: \(name): \(error)") }
        }
        defer { ctx.runEvent = nil }
        while !stop.isSet {
            if store.generation != generation {
                let p = store.published
                generation = p.generation
                do {
                    let e = try LuaEngine(script: p.source, registry: stack.registry, context: ctx, limits: limits)
                    engine = e
                    callback = e.callback(named: "ksr_diameter_request")
                    warned = false
                } catch {
                    logger.error("diameter: could not start script version \(p.version): \(error)")
                }
            }
            _ = signal.wait(timeout: .now() + .milliseconds(200))
            if ctx.mailbox.hasJobs { ctx.mailbox.run(ctx) }
            let batch = jobs.withLock { j -> [Job] in let all = j; j = []; return all }
            for job in batch {
                cur.request = job.request
                cur.fromPeer = job.from
                cur.decision = .none
                cur.response = nil
                ctx.begin(message: nil, received: ctx.received, routeType: .event)
                if let engine, let callback, engine.isFunction(callback) {
                    let outcome = engine.run(callback)
                    if case .error = outcome { cur.decision = .none }
                } else if !warned {
                    warned = true
                    logger.error("diameter: ksr_diameter_request is not defined: requests are answered 3002")
                }
                let decision = cur.decision
                cur.request = nil
                cur.response = nil
                job.complete(decision)
            }
            sender.flush()
        }
    }

    // MARK: DiameterLink

    func isUsable(_ identity: String) -> Bool { node.isUsable(identity) }
    func isKnown(_ identity: String) -> Bool { node.isKnown(identity) }
    func realmCandidates(_ request: DiameterMessage) -> [String] { node.realmCandidates(request) }
    var peerStatus: [DiameterPeerStatus] { node.peerStatus }
    func setEnabled(_ identity: String, _ on: Bool) -> Bool { node.setEnabled(identity, on) }
    func send(_ request: DiameterMessage, toPeer peer: String, completion: @escaping @Sendable (DiameterMessage?) -> Void) -> Int {
        node.send(request, toPeer: peer, completion: completion)
    }
    var summary: (identity: String, realm: String, acceptUnknown: Bool, requestTimeout: Int) {
        (node.config.identity, node.config.realm, node.config.acceptUnknownPeers, Int(node.config.requestTimeout))
    }
}
