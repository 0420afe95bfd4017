public import StarlingKEMI

/// One Kamailio module as Starling implements it: the single place that declares what the module
/// brings (Kamailio's `module_exports`). Everything else reads the list of these types
/// (`KSRModules.all`): which modules exist, configuration validation, the control API's methods,
/// `/metrics` and `stats.get_statistics`, docs/KSR.md, docs/Modparams.md, the LuaLS stubs and the
/// completeness tests.
///
/// Adding a module is one folder with a type conforming to this protocol, one line in
/// `KSRModules.all`, and its tests (docs/Modules.md walks through it).
///
/// Implementing: only `name` and `exports(_:)` are required. Parameters are rows built from typed keys
/// (`ModuleParameter.int("tm", "fr_timer", 30000, "...")`) that the module's code reads with
/// `runtime.config[key]`; a module's shared state is created in `start(_:)` (or is one of
/// `ModuleRuntime`'s stores) and captured by the export closures, so no per-message lookup is needed.
public protocol KSRModule: SendableMetatype {
    /// The Kamailio module name (`loadmodule "tm.so"` → "tm"); also the `[modparam.<name>]` section.
    static var name: String { get }
    /// The name of the module's `KSR.<table>` (kemix exports `KSR.kx`); "" for the core functions.
    static var kemiName: String { get }
    /// One line for the generated references.
    static var summary: String { get }
    /// Modules that are always loaded, whatever `core.modules` says (core, pv, hdr).
    static var alwaysLoaded: Bool { get }
    /// Modules loaded with this one (registrar brings usrloc, as Kamailio's needs it loaded).
    static var dependencies: [String] { get }
    /// The parameters it accepts (Kamailio's `param_export_t`), Kamailio 5.6's names and types.
    static var parameters: [ModuleParameterInfo] { get }
    /// The control API methods it adds (Kamailio's `rpc_export_t`), Kamailio's names and reply shapes.
    static var rpcMethods: [ModuleRPCMethod] { get }
    /// Statistics it keeps (Kamailio's `stat_export_t`), for `stats.get_statistics` and `/metrics`.
    static var statistics: [ModuleStatistic] { get }
    /// Its KSR functions over the process-wide state; rows whose `module` is not `kemiName` are dropped.
    static func exports(_ runtime: ModuleRuntime) -> [KemiExport]
    /// Start-up of a loaded module, after the parameters are validated and before any worker runs:
    /// checks that must refuse the start (a bad table definition, an unreadable file), per-process
    /// state, periodic work (`runtime.addPeriodic`). Errors stop Starling with exit status 2.
    static func start(_ runtime: ModuleRuntime) throws(ModuleStartError)
}

extension KSRModule {
    public static var kemiName: String { name }
    public static var summary: String { "" }
    public static var alwaysLoaded: Bool { false }
    public static var dependencies: [String] { [] }
    public static var parameters: [ModuleParameterInfo] { [] }
    public static var rpcMethods: [ModuleRPCMethod] { [] }
    public static var statistics: [ModuleStatistic] { [] }
    public static func start(_ runtime: ModuleRuntime) throws(ModuleStartError) {}
}

/// Why a module refused to start; the message names the parameter or file concerned.
public struct ModuleStartError: Error, Sendable, CustomStringConvertible {
    /// The configuration key concerned ("modparam.htable.htable"), when there is one.
    public let key: String?
    public let message: String
    public init(key: String? = nil, _ message: String) {
        self.key = key
        self.message = message
    }
    public var description: String { key.map { "\($0): \(message)" } ?? message }
}

// MARK: - RPC methods

/// A control API method of a module (JSON-RPC over HTTP, Kamailio's method name).
public struct ModuleRPCMethod: Sendable {
    /// "htable.dump", "ul.lookup", ...
    public let name: String
    public let help: String
    public let handler: @Sendable (ModuleRuntime, RPCParameters) throws(RPCFault) -> RPCValue

    public init(_ name: String, _ help: String,
                _ handler: @escaping @Sendable (ModuleRuntime, RPCParameters) throws(RPCFault) -> RPCValue) {
        self.name = name
        self.help = help
        self.handler = handler
    }
}

/// A JSON value of an RPC reply.
public enum RPCValue: Sendable, Equatable {
    case null
    case bool(Bool)
    case int(Int)
    case double(Double)
    case string(String)
    case array([RPCValue])
    case object([String: RPCValue])
}

/// The parameters of an RPC call (JSON scalars; objects and arrays are passed as `.other`).
public struct RPCParameters: Sendable {
    public enum Value: Sendable, Equatable {
        case string(String)
        case int(Int)
        case double(Double)
        case bool(Bool)
        case null
        case other
    }

    public let values: [Value]
    public init(_ values: [Value]) { self.values = values }

    public var count: Int { values.count }
    public var isEmpty: Bool { values.isEmpty }

    /// Parameter `i` as text (numbers in decimal), or nil when absent or not a scalar.
    public func string(_ i: Int) -> String? {
        guard i < values.count else { return nil }
        switch values[i] {
        case .string(let s): return s
        case .int(let n): return String(n)
        case .double(let d): return d == d.rounded() && abs(d) < 1e15 ? String(Int(d)) : String(d)
        default: return nil
        }
    }

    /// Parameter `i` as text, or a fault with Kamailio's code 500 and `missing` as its message.
    public func string(_ i: Int, or missing: String) throws(RPCFault) -> String {
        guard let s = string(i) else { throw RPCFault(500, missing) }
        return s
    }

    /// A fault when any parameter is given (methods without parameters).
    public func none(_ method: String) throws(RPCFault) {
        if !values.isEmpty { throw RPCFault(RPCFault.invalidParams, "Invalid params", data: "\(method) takes no parameters") }
    }
}

/// A JSON-RPC 2.0 error object a method returns (the control API's `RPCError`).
public struct RPCFault: Error, Sendable, Equatable {
    public let code: Int
    public let message: String
    public let data: String?
    public init(_ code: Int, _ message: String, data: String? = nil) {
        self.code = code
        self.message = message
        self.data = data
    }
    public static let parseError = -32700
    public static let invalidRequest = -32600
    public static let methodNotFound = -32601
    public static let invalidParams = -32602
    public static let internalError = -32603
    /// Server-defined: a recognised method whose module is not loaded.
    public static let moduleNotLoaded = -32001
    /// Server-defined: the method ran and failed (e.g. a reload refused).
    public static let failed = -32000
}

// MARK: - Statistics

/// A statistic a module keeps, read when asked (nothing is added to the per-message path).
///
/// A plain statistic has one value. A labelled one (`labels` not empty) has one sample per label
/// values, e.g. per rtpengine instance: `/metrics` writes `metric{instance="udp:127.0.0.1:2223"} 7`,
/// `stats.get_statistics` lists `group:name{instance=udp:127.0.0.1:2223} = 7`.
public struct ModuleStatistic: Sendable {
    public enum Kind: String, Sendable { case counter, gauge }
    /// One value of a labelled statistic: the label values (in the order of `labels`) and the value.
    public struct Sample: Sendable, Equatable {
        public let labels: [String]
        public let value: Int
        public init(_ labels: [String], _ value: Int) {
            self.labels = labels
            self.value = value
        }
    }
    /// Kamailio's "group:name" for `stats.get_statistics` ("tmx:active_transactions").
    public let name: String
    /// The Prometheus metric name (`starling_..._total` for counters).
    public let metric: String
    public let kind: Kind
    public let help: String
    /// The label names of a labelled statistic (empty for a plain one).
    public let labels: [String]
    private let readSamples: @Sendable (ModuleRuntime) -> [Sample]

    /// A plain statistic: one value.
    public init(_ name: String, metric: String, _ kind: Kind, _ help: String,
                _ read: @escaping @Sendable (ModuleRuntime) -> Int) {
        self.name = name
        self.metric = metric
        self.kind = kind
        self.help = help
        self.labels = []
        self.readSamples = { [Sample([], read($0))] }
    }

    /// A labelled statistic: `read` gives one sample per label values (`labels` names them).
    public init(_ name: String, metric: String, _ kind: Kind, _ help: String, labels: [String],
                _ read: @escaping @Sendable (ModuleRuntime) -> [Sample]) {
        precondition(!labels.isEmpty, "a labelled statistic names its labels")
        self.name = name
        self.metric = metric
        self.kind = kind
        self.help = help
        self.labels = labels
        self.readSamples = read
    }

    /// The value of a plain statistic (the sum of the samples of a labelled one).
    public func read(_ runtime: ModuleRuntime) -> Int {
        samples(runtime).reduce(0) { $0 + $1.value }
    }

    /// The current samples (one with no labels for a plain statistic).
    public func samples(_ runtime: ModuleRuntime) -> [Sample] {
        readSamples(runtime)
    }

    /// The name `stats.get_statistics` shows for a sample: `group:name`, or `group:name{l=v,...}`.
    public func displayName(_ sample: Sample) -> String {
        if labels.isEmpty { return name }
        return name + "{" + zip(labels, sample.labels).map { "\($0)=\($1)" }.joined(separator: ",") + "}"
    }
}
