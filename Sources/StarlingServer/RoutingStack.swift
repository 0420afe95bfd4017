public import Logging
public import SIPTransport
public import StarlingKEMI
public import KSRModules
import StarlingStore

/// The routing stack every way of running a script builds the same way: the server's workers,
/// `starling test` (ScriptHarness) and `starling check`. It resolves the configured module list,
/// creates the modules' process-wide state, starts the loaded modules (their start-up checks and
/// periodic work) and builds the export registry the Lua engines bind; `makeContext` gives each
/// worker its route context wired to that state.
public final class RoutingStack: Sendable {
    /// The loaded modules, in registration order.
    public let modules: [any KSRModule.Type]
    /// Their process-wide state (shared tables, clock, periodic jobs).
    public let runtime: ModuleRuntime
    /// The KSR functions of the loaded modules.
    public let registry: KemiRegistry
    private let loadedNames: Set<String>

    /// Builds the stack for a `core.modules` list (empty: every module) and validated parameters.
    /// Throws when a loaded module refuses to start (the message names the parameter or file).
    public init(modules configured: [String], config: ModuleConfiguration, subscribers: (any SubscriberLookup)? = nil,
                locations: (any LocationPersistence)? = nil, uacRegistrations: (any UACRegistrationSource)? = nil,
                clock: ModuleClock = ModuleClock(), logger: Logger? = nil,
                resolveHost: ModuleRuntime.HostResolver? = nil) throws(ModuleStartError) {
        modules = KSRModules.loaded(configured)
        loadedNames = Set(modules.map { $0.name })
        runtime = ModuleRuntime(config: config, subscribers: subscribers, locations: locations, clock: clock,
                                uacRegistrations: uacRegistrations, resolveHost: resolveHost)
        runtime.setLoadedModules(loadedNames)
        for m in modules { try m.start(runtime) }
        // dispatcher's db_url: the destinations from the dispatcher table of the embedded database.
        if loadedNames.contains("dispatcher"), let url = DispatcherTable.databaseURL(config) {
            guard let path = StarlingDatabase.path(fromURL: url) else {
                throw ModuleStartError(key: "modparam.dispatcher.db_url", "'\(url)': only SQLite databases are supported (sqlite:///path/to/file.db)")
            }
            let db: StarlingDatabase
            do throws(StoreError) { db = try StarlingDatabase(path: path) } catch { throw ModuleStartError(key: "modparam.dispatcher.db_url", error.description) }
            try DispatcherTable.attach(runtime, SQLiteDispatcherTable(db))
        }
        registry = KemiRegistry(exports: KSRModules.exports(runtime), modules: Set(modules.map { $0.kemiName }))
        if let logger {
            for module in config.configuredModules {
                for p in KSRModules.parameters(of: module) where !p.implemented && config.isSet(p) {
                    logger.warning("modparam \(module).\(p.name) is a Kamailio 5.6 parameter Starling accepts but does not use")
                }
            }
        }
    }

    /// The registry alone (`starling check`, docs): every module's exports over a fresh runtime.
    public static func registry(modules configured: [String]) -> KemiRegistry {
        KemiRegistry(exports: KSRModules.exports(), modules: Set(KSRModules.loaded(configured).map { $0.kemiName }))
    }

    /// Whether the module named `name` (Kamailio name) is loaded.
    public func isLoaded(_ name: String) -> Bool { loadedNames.contains(name) }

    /// A route context for worker `index`, wired to this stack's state (tm when loaded).
    public func makeContext(worker index: Int, logger: Logger, services: any CoreServices, sender: any MessageSender,
                            local: SocketAddress) -> RouteContext {
        let ctx = RouteContext(worker: WorkerLocals(index: index), logger: logger, services: services, sender: sender,
                               received: ReceiveInfo(source: local, local: local, proto: .udp))
        if isLoaded("tm") { ctx.transactions = runtime.tm }
        ctx.moduleState = runtime
        return ctx
    }

    /// The loaded modules' control API methods, by name.
    public func rpcMethod(_ name: String) -> (module: String, method: ModuleRPCMethod)? {
        KSRModules.rpcMethods.first { $0.method.name == name }
    }

    /// The loaded modules' statistics, current values (one sample for a plain statistic, one per
    /// label values for a labelled one).
    public func statistics() -> [(statistic: ModuleStatistic, samples: [ModuleStatistic.Sample])] {
        modules.flatMap { m in m.statistics.map { ($0, $0.samples(runtime)) } }
    }
}
