import StarlingKEMI
public import SIPTransport
import Glibc
import Synchronization

/// Where `auth_db` finds a subscriber's credentials (Kamailio's `subscriber` table). The embedded
/// database (StarlingStore) implements it; tests may use `MemorySubscribers`.
public protocol SubscriberLookup: Sendable {
    /// The row of `table` for `username`@`domain` (domain ignored when `useDomain` is false), or nil.
    func subscriber(table: String, username: String, domain: String, useDomain: Bool) -> SubscriberRow?
}

/// The credential columns of a `subscriber` row (column names as Kamailio's: password, ha1, ha1b).
public struct SubscriberRow: Sendable, Equatable {
    public var username: String
    public var domain: String
    public var password: String
    public var ha1: String
    public var ha1b: String
    /// Other columns the script may load into AVPs (`load_credentials`).
    public var extra: [String: String]

    public init(username: String, domain: String, password: String = "", ha1: String = "", ha1b: String = "",
                extra: [String: String] = [:]) {
        self.username = username
        self.domain = domain
        self.password = password
        self.ha1 = ha1
        self.ha1b = ha1b
        self.extra = extra
    }
}

/// An in-memory subscriber table (tests, `starling test`).
public final class MemorySubscribers: SubscriberLookup {
    private let rows = Mutex<[SubscriberRow]>([])
    public init(_ rows: [SubscriberRow] = []) { self.rows.withLock { $0 = rows } }
    public func add(_ row: SubscriberRow) { rows.withLock { $0.append(row) } }
    public func subscriber(table: String, username: String, domain: String, useDomain: Bool) -> SubscriberRow? {
        rows.withLock { $0.first { $0.username == username && (!useDomain || $0.domain == domain) } }
    }
}

/// How modules send datagrams outside a route (keepalives): a send function and the local address
/// it sends from (for Via and Contact).
public struct OutboundSender: Sendable {
    public var local: SocketAddress
    public var send: @Sendable ([UInt8], SocketAddress) -> Bool

    public init(local: SocketAddress, send: @escaping @Sendable ([UInt8], SocketAddress) -> Bool) {
        self.local = local
        self.send = send
    }
}

/// The clock of the modules' expiring state (registrations, htable items, nonces, pike windows):
/// wall-clock time plus an offset that tests move forward (`ScriptHarness.advance(by:)`).
public final class ModuleClock: Sendable {
    private let offsetNanos = Atomic<Int64>(0)
    public init() {}

    /// Seconds since 1970, with the test offset.
    public var unixTime: Double {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9 + Double(offsetNanos.load(ordering: .relaxed)) / 1e9
    }

    /// Whole seconds since 1970 (what Kamailio stores in `expires`, `last_modified`).
    public var unixSeconds: Int { Int(unixTime) }

    public func advance(by d: Duration) {
        let c = d.components
        offsetNanos.wrappingAdd(c.seconds &* 1_000_000_000 &+ c.attoseconds / 1_000_000_000, ordering: .relaxed)
    }
}

/// Process-wide state of the modules, shared by every worker: one per server (and per test harness).
/// Modules with shared tables (tm, usrloc, htable, pike, ...) keep them here; the server creates it
/// before the workers and the export tables capture it.
public final class ModuleRuntime: Sendable {
    public let config: ModuleConfiguration
    public let clock: ModuleClock
    public let tm: TMStore
    /// `auth_db`'s subscriber table (the embedded database), nil when none is configured.
    public let subscribers: (any SubscriberLookup)?
    /// KSR.uac's remote registrations (the `uacreg` rows of `uacRegistrations`; idle without one).
    public let uacreg: UACRegistry
    /// usrloc's location tables (registrar), persisted through `locations` when one is given.
    public let usrloc: Usrloc
    /// Sends datagrams from outside a route (NAT keepalives): set by the server (its first UDP
    /// socket), replaced by a recorder in tests. Nil: nothing can be sent.
    private let outboundHook = Mutex<OutboundSender?>(nil)
    /// `auth`'s nonce secret and nonce-count / one-time-nonce tables.
    public let auth: AuthNonces
    /// htable's named tables (`[modparam.htable] htable = "name=>size=..;autoexpire=.."`).
    public let htables: HtableStore
    /// pike's per-address request counters.
    public let pike: PikeStore
    /// permissions' address table (`[modparam.permissions] address_file`).
    public let addresses: AddressTable
    /// rr's callbacks on loose-routed requests (dialog).
    public let rrCallbacks = RRCallbacks()
    /// A host-name lookup for work outside a route (the dispatcher resolves its list's names at load,
    /// as Kamailio's): A/AAAA with a port, SRV then A/AAAA without one. Nil when the stack runs
    /// without a resolver (`starling check`).
    public typealias HostResolver = @Sendable (_ host: String, _ port: Int?, _ proto: SIPTransportProtocol) -> [SocketAddress]
    public let resolveHost: HostResolver?
    /// Periodic jobs (expiry, keepalives, database flushes), run about once a second by the server's
    /// housekeeping thread and by `ScriptHarness.advance(by:)`.
    private let jobs = Mutex<[@Sendable (ModuleRuntime) -> Void]>([])

    public init(config: ModuleConfiguration = ModuleConfiguration(), tm: TMStore? = nil,
                subscribers: (any SubscriberLookup)? = nil, locations: (any LocationPersistence)? = nil,
                clock: ModuleClock = ModuleClock(), uacRegistrations: (any UACRegistrationSource)? = nil,
                resolveHost: HostResolver? = nil) {
        self.config = config
        self.clock = clock
        self.resolveHost = resolveHost
        self.tm = tm ?? TMStore(config: config)
        self.subscribers = subscribers
        uacreg = UACRegistry(config: config, source: uacRegistrations)
        self.auth = AuthNonces(config: config, clock: clock)
        htables = HtableStore(config: config, clock: clock)
        pike = PikeStore(config: config, clock: clock)
        addresses = AddressTable(path: config[PermissionsModule.addressFile])
        // htable expiry every timer_interval seconds (Kamailio's default 20), pike's idle addresses,
        // the address file when it changed.
        let htableInterval = config[HtableModule.timerInterval]
        let lastPurge = PurgeStamp()
        jobs.withLock {
            $0.append { rt in
                let now = rt.clock.unixSeconds
                if now - lastPurge.value.load(ordering: .relaxed) >= htableInterval {
                    lastPurge.value.store(now, ordering: .relaxed)
                    rt.htables.purgeExpired()
                }
                rt.pike.purge()
                rt.addresses.reloadIfChanged()
            }
        }
        usrloc = Usrloc(config: config, persistence: locations, now: clock.unixSeconds, clock: clock)
        addPeriodic { rt in rt.usrloc.timer(now: rt.clock.unixSeconds) }
        if uacRegistrations != nil { addPeriodic { $0.uacreg.periodic($0) } }
        NATKeepalive.install(self)
    }

    /// The process-wide state of modules that keep their own (one object per state type), made on
    /// first use. A module asks for it in `start(_:)`, in its export builder (the closures capture it,
    /// so routes never come here) and in its RPC handlers.
    private let moduleStates = Mutex<[ObjectIdentifier: any Sendable]>([:])

    /// The module state of type `S`, made by `make` the first time it is asked for.
    public func state<S: AnyObject & Sendable>(_ type: S.Type, make: () -> S) -> S {
        moduleStates.withLock { states in
            if let s = states[ObjectIdentifier(type)] as? S { return s }
            let s = make()
            states[ObjectIdentifier(type)] = s
            return s
        }
    }

    /// Whether the module state of type `S` has been made (read-only paths such as `/metrics`).
    public func hasState<S: AnyObject & Sendable>(_ type: S.Type) -> Bool {
        moduleStates.withLock { $0[ObjectIdentifier(type)] != nil }
    }

    /// The names of the loaded modules (set by the routing stack before any module starts).
    private let loadedNames = Mutex<Set<String>>([])
    public func setLoadedModules(_ names: Set<String>) { loadedNames.withLock { $0 = names } }
    /// Whether module `name` (Kamailio name) is loaded: a module's `start` asks about the others.
    public func isLoaded(_ name: String) -> Bool { loadedNames.withLock { $0.contains(name) } }

    /// Sets (or clears) the sender of datagrams that leave outside any route.
    public func setOutbound(_ sender: OutboundSender?) { outboundHook.withLock { $0 = sender } }
    /// The current outbound sender.
    public var outbound: OutboundSender? { outboundHook.withLock { $0 } }

    /// Adds a periodic job.
    public func addPeriodic(_ job: @escaping @Sendable (ModuleRuntime) -> Void) { jobs.withLock { $0.append(job) } }

    /// Runs the periodic jobs once.
    public func runPeriodic() {
        let all = jobs.withLock { $0 }
        for j in all { j(self) }
    }

    /// Moves every module clock forward (tests) and runs the periodic jobs.
    public func advance(by d: Duration) {
        clock.advance(by: d)
        tm.advanceClock(by: d)
        runPeriodic()
    }
}

/// When htable expiry last ran.
private final class PurgeStamp: Sendable {
    let value = Atomic<Int>(0)
}
