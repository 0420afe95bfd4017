import Foundation
public import KSRModules
public import Logging
public import SIPTransport
import TOMLKit
import SIPStreams
public import DiameterNode

/// Starling's configuration: the TOML file, then `STARLING_*` environment variables, then the
/// command line, each overriding the one before.
///
/// ```toml
/// [core]
/// listen = ["udp:127.0.0.1:5060", "udp:[::1]:5060"]
/// workers = 4                  # default: number of cores
/// script = "routes/default.lua"
/// modules = ["sl", "tm", "rr"]
/// log_level = "info"           # or a Kamailio debug level, -5...4
/// dns_servers = ["127.0.0.1:5353"]   # default: the system resolver
/// instruction_budget = 10000000
/// memory_limit_mb = 64
/// async_io = false             # routes as coroutines: waits on the network do not block (docs/Async.md)
/// async_max_pending = 1000     # routes one worker may have waiting (async_io); then 503
/// server_id = 1                # Kamailio's server_id: this instance's number (usrloc on Redis: docs/ScaleOut.md)
/// log_format = "text"         # or "json" (one JSON object per line)
/// # listen also takes "tcp:IP:PORT", "tls:IP:PORT", "ws:IP:PORT", "wss:IP:PORT"; ";proxy" after a
/// # tcp/tls/ws/wss address expects a PROXY protocol v1/v2 header on each connection;
/// # "udp:224.0.1.75:5060;mcast=eth0" joins a multicast group on an interface (receive only)
/// mcast_loopback = false       # Kamailio's mcast_loopback
/// mcast_ttl = 1                # Kamailio's mcast_ttl (default: the system's)
/// tcp_connection_lifetime = 120   # seconds an idle TCP/TLS/WS connection stays open
/// tcp_connect_timeout = 10        # seconds to wait for an outgoing connection
/// tcp_max_connections = 2048
/// tcp_crlf_ping = true            # answer CRLFCRLF keepalives with CRLF (TCP/TLS/WS)
/// tcp_accept_no_cl = false        # a stream message without Content-Length: refused (true: no body)
/// tcp_keepalive = true            # SO_KEEPALIVE; tcp_keepidle/tcp_keepintvl/tcp_keepcnt (0: system)
///
/// [tls]                        # needed by tls: and wss: listeners
/// certificate = "/etc/starling/cert.pem"
/// private_key = "/etc/starling/key.pem"
/// ca_list = "/etc/starling/ca.pem"   # verifies client certificates (and servers with verify_server)
/// verify_client = false
/// require_client_certificate = false
/// verify_server = true            # outgoing TLS: chain + name (default; Kamailio's default is false)
/// min_version = "TLSv1.2"
/// [tls.domain."sip.example.com"]     # SNI: another certificate for this server name
/// certificate = "..."
/// private_key = "..."
///
/// [control]                    # the HTTP control API (JSON-RPC, /metrics); off when absent
/// listen = "127.0.0.1:5065"    # host defaults to 127.0.0.1 ("5065" or ":5065")
/// token = "secret"             # optional: clients send "Authorization: Bearer secret"
/// allow_unauthenticated = false  # a non-loopback listen without a token is refused unless true
///
/// [define]                     # what #!define is to Kamailio
/// WITH_AUTH = true
/// DBURL = "mysql://..."
///
/// [modparam.tm]                # Kamailio parameter names; an array repeats the modparam
/// fr_timer = 30000
/// ```
///
/// Environment: `STARLING_CORE_<KEY>` (lists comma-separated), `STARLING_CONTROL_LISTEN`,
/// `STARLING_CONTROL_TOKEN`, `STARLING_DEFINE_<NAME>`,
/// `STARLING_MODPARAM_<MODULE>_<PARAM>` (matched case-insensitively onto known modules and
/// parameters, otherwise lower-cased). Other `STARLING_*` variables are ignored here.
public struct StarlingConfig: Sendable, Equatable {
    /// Sockets to listen on. Default: `udp:127.0.0.1:5060`.
    public var listen: [ListenAddress] = [ListenAddress(proto: .udp, address: SocketAddress(ip: "127.0.0.1", port: 5060)!)]
    /// Worker threads. Default: the number of online CPUs.
    public var workers: Int = StarlingConfig.defaultWorkers
    /// The KEMI Lua script. Default "routes/default.lua" (relative to the working directory).
    public var script: String = "routes/default.lua"
    /// Modules to load, Kamailio names ("tm", "sl", ...). Default none.
    public var modules: [String] = []
    /// Other names of this server (`[core] alias`, Kamailio's `alias=`): hosts `KSR.is_myself*`
    /// and loose_route treat as their own, on any port.
    public var aliases: [String] = []
    /// Log level. Default info.
    public var logLevel: Logger.Level = .info
    /// Log line format. Default text.
    public var logFormat: LogFormat = .text
    /// `mcast_loopback`: multicast datagrams sent by this host loop back to its own group sockets
    /// (Kamailio's `mcast_loopback`, default off).
    public var mcastLoopback: Bool = false
    /// `mcast_ttl`: the TTL of multicast datagrams (Kamailio's `mcast_ttl`); nil: the system default (1).
    public var mcastTTL: Int? = nil
    /// `[control] listen`: the HTTP control listener's address; nil (the default) keeps it off.
    public var controlListen: SocketAddress?
    /// `[control] token`: the bearer token the control API requires (nil: none).
    public var controlToken: String?
    /// `[control] allow_unauthenticated`: a control listener on a non-loopback address without a token
    /// starts only with this set (default false: such a configuration is refused, exit 2).
    public var controlAllowUnauthenticated = false
    /// The control listener's settings, nil when `[control] listen` is not set.
    public var control: ControlConfig? {
        controlListen.map { ControlConfig(listen: $0, token: controlToken, allowUnauthenticated: controlAllowUnauthenticated) }
    }
    /// `tcp_connection_lifetime`: seconds an idle connection stays open. Default 120.
    public var tcpConnectionLifetime: Int = 120
    /// `tcp_crlf_ping`: answer CRLFCRLF keepalives on TCP/TLS/WS with CRLF (Kamailio's, default true).
    public var tcpCRLFPing = true
    /// `tcp_accept_no_cl`: accept stream messages without Content-Length as body-less (default false).
    public var tcpAcceptNoCL = false
    /// `tcp_keepalive`: SO_KEEPALIVE on connections (default true); `tcp_keepidle`, `tcp_keepintvl`,
    /// `tcp_keepcnt`: its timing (seconds, seconds, probes; 0: the system's).
    public var tcpKeepalive = true
    public var tcpKeepIdle = 0
    public var tcpKeepIntvl = 0
    public var tcpKeepCnt = 0
    /// `tcp_connect_timeout`: seconds to wait for an outgoing connection. Default 10.
    public var tcpConnectTimeout: Int = 10
    /// `tcp_max_connections`: open connections at most. Default 2048.
    public var tcpMaxConnections: Int = 2048
    /// `[tls]`: certificate, key, CA list, verification; nil when the section is absent.
    public var tls: TLSConfig?
    /// `[diameter]`: the Diameter node (identity, listeners, peers, realm routes); nil when absent.
    public var diameter: DiameterNodeConfig?
    /// DNS servers; empty uses the system resolver (/etc/resolv.conf).
    public var dnsServers: [SocketAddress] = []
    /// Limits for each Lua state.
    public var lua = LuaLimits()
    /// `async_io`: request and reply routes run as Lua coroutines; KSR calls that wait on the network
    /// (http_client, enum, ndb_redis) suspend the route and the worker routes other messages
    /// meanwhile (docs/Async.md). Default off.
    public var asyncIO = false
    /// `async_max_pending`: routes one worker may have waiting at once with async_io; beyond it,
    /// requests get 503. Default 1000.
    public var asyncMaxPending = 1000
    /// `server_id` (Kamailio's core server_id): this instance's number, stored with the contacts it
    /// saves; with usrloc on Redis, its identity across restarts (NAT keepalives). Default 0.
    public var serverID: Int { moduleParameters.serverID }
    /// `[define]`: names to values.
    public var defines: [String: ConfigValue] = [:]
    /// `[modparam.<module>]`: module → parameter → values (more than one = repeated modparam), as given.
    /// Set through the configuration file, the environment or `setModparam(_:_:_:)`, which validate.
    public internal(set) var modparams: [String: [String: [ConfigValue]]] = [:]
    /// The same parameters validated against the modules' tables and typed (what the modules read).
    public internal(set) var moduleParameters = ModuleConfiguration()
    /// The Kamailio names of the modules this configuration loads (every module when `modules` is
    /// empty; dependencies and the always-loaded ones included).
    public var loadedModules: Set<String> { Set(KSRModules.loaded(modules).map { $0.name }) }
    /// The file the configuration came from, if any.
    public var sourcePath: String?
    /// While parsing for `starling config --check`: every error, instead of stopping at the first.
    var collectedErrors: [ConfigError]? = nil

    /// The built-in defaults.
    public init() {}

    /// The number of online CPUs (at least 1).
    public static var defaultWorkers: Int { max(1, ProcessInfo.processInfo.activeProcessorCount) }

    /// Upper bound for `workers`.
    public static let maxWorkers = 1024

    /// `[define]` as text (booleans as "1"/"0"), for `CoreServices.defines`.
    public var defineTexts: [String: String] { defines.mapValues(\.text) }

    /// The values of a modparam (empty if not set).
    public func modparam(_ module: String, _ name: String) -> [ConfigValue] { modparams[module]?[name] ?? [] }

    /// Loads the configuration. With `path` nil, starts from the defaults (no file). Then applies
    /// `environment` (nil: the process environment) and `overrides`, and validates.
    public static func load(path: String?, environment: [String: String]? = nil,
                            overrides: ConfigOverrides = ConfigOverrides()) throws(ConfigError) -> StarlingConfig {
        let environment = environment ?? ProcessInfo.processInfo.environment
        guard let path else { return try parse(toml: "", environment: environment, overrides: overrides) }
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            let exists = FileManager.default.fileExists(atPath: path)
            throw ConfigError(key: path, exists ? "cannot read the file (\(error.localizedDescription))" : "no such file")
        }
        var config = try parse(toml: text, environment: environment, overrides: overrides, fileName: path)
        config.sourcePath = path
        return config
    }

    /// `load` that does not stop at the first problem: the configuration with every valid value applied,
    /// and every error found (file, environment, command line, cross-checks), in that order. Empty
    /// errors: the configuration is what `load` returns. (`starling config --check`, and the error list
    /// `starling run` prints.)
    public static func loadCollectingErrors(path: String?, environment: [String: String]? = nil,
                                            overrides: ConfigOverrides = ConfigOverrides()) -> (config: StarlingConfig, errors: [ConfigError]) {
        let environment = environment ?? ProcessInfo.processInfo.environment
        guard let path else { return parseCollectingErrors(toml: "", environment: environment, overrides: overrides) }
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            let exists = FileManager.default.fileExists(atPath: path)
            return (StarlingConfig(), [ConfigError(key: path, exists ? "cannot read the file (\(error.localizedDescription))" : "no such file")])
        }
        var (config, errors) = parseCollectingErrors(toml: text, environment: environment, overrides: overrides, fileName: path)
        config.sourcePath = path
        return (config, errors)
    }

    /// `parse` that collects every error (see `loadCollectingErrors`). A TOML syntax error is the only
    /// error reported for the file (nothing after it can be read).
    public static func parseCollectingErrors(toml text: String, environment: [String: String] = [:],
                                             overrides: ConfigOverrides = ConfigOverrides(),
                                             fileName: String = "config") -> (config: StarlingConfig, errors: [ConfigError]) {
        var config = StarlingConfig()
        config.collectedErrors = []
        do throws(ConfigError) {
            let table: TOMLTable
            do {
                table = try TOMLTable(string: text)
            } catch let e as TOMLParseError {
                throw ConfigError(key: fileName, "TOML syntax error at line \(e.source.begin.line), column \(e.source.begin.column): \(e.description)")
            } catch {
                throw ConfigError(key: fileName, "TOML syntax error: \(error)")
            }
            try config.apply(table)
            try config.applyEnvironment(environment)
            try config.apply(overrides)
            try config.validate()
        } catch {
            config.collectedErrors?.append(error)
        }
        let errors = config.collectedErrors ?? []
        config.collectedErrors = nil
        return (config, errors)
    }

    /// Runs one setter; while collecting, an error is recorded and parsing goes on.
    mutating func attempt(_ body: (inout StarlingConfig) throws(ConfigError) -> Void) throws(ConfigError) {
        do {
            try body(&self)
        } catch {
            guard collectedErrors != nil else { throw error }
            collectedErrors!.append(error)
        }
    }

    /// Parses TOML text, then applies `environment` and `overrides`, and validates.
    public static func parse(toml text: String, environment: [String: String] = [:],
                             overrides: ConfigOverrides = ConfigOverrides(), fileName: String = "config") throws(ConfigError) -> StarlingConfig {
        var config = StarlingConfig()
        let table: TOMLTable
        do {
            table = try TOMLTable(string: text)
        } catch let e as TOMLParseError {
            throw ConfigError(key: fileName, "TOML syntax error at line \(e.source.begin.line), column \(e.source.begin.column): \(e.description)")
        } catch {
            throw ConfigError(key: fileName, "TOML syntax error: \(error)")
        }
        try config.apply(table)
        try config.applyEnvironment(environment)
        try config.apply(overrides)
        try config.validate()
        return config
    }
}

/// How log lines are written.
public enum LogFormat: String, Sendable, Equatable, CaseIterable {
    /// swift-log's readable console lines.
    case text
    /// One JSON object per line: ts, level, label, msg, the metadata, call_id.
    case json
}

/// `[control]`: where the control API listens and the bearer token it requires.
public struct ControlConfig: Sendable, Equatable {
    /// The TCP address (default host 127.0.0.1).
    public var listen: SocketAddress
    /// If set, requests need `Authorization: Bearer <token>`.
    public var token: String?
    /// `allow_unauthenticated`: a non-loopback listener without a token was explicitly allowed.
    public var allowUnauthenticated: Bool

    public init(listen: SocketAddress, token: String? = nil, allowUnauthenticated: Bool = false) {
        self.listen = listen
        self.token = token
        self.allowUnauthenticated = allowUnauthenticated
    }

    /// True for 127.0.0.0/8 and ::1 (and their IPv4-mapped form).
    public static func isLoopback(_ a: SocketAddress) -> Bool {
        let ip = a.ip.lowercased()
        return ip.hasPrefix("127.") || ip == "::1" || ip.hasPrefix("::ffff:127.")
    }

    /// The default control address, 127.0.0.1:5065.
    public static let defaultListen = SocketAddress(ip: "127.0.0.1", port: 5065)!

    /// Parses "host:port", "[v6]:port", ":port" or "port" (host 127.0.0.1), or "host" (port 5065).
    public static func parseListen(_ text: String) -> SocketAddress? {
        let t = text.trimmingCharacters(in: .whitespaces)
        if t.isEmpty { return nil }
        if t.allSatisfy(\.isASCII) && t.allSatisfy(\.isNumber) {
            guard let p = Int(t), (1...65535).contains(p) else { return nil }
            return SocketAddress(ip: "127.0.0.1", port: p)
        }
        if t.hasPrefix(":") { return parseListen(String(t.dropFirst())) }
        guard let a = SocketAddress(t, defaultPort: 5065), a.port != 0 else { return nil }
        return a
    }
}

/// `[tls]`: what tls: and wss: listeners (and outgoing TLS connections) use.
public struct TLSConfig: Sendable, Equatable {
    public var certificate: String = ""
    public var privateKey: String = ""
    public var caList: String?
    public var verifyClient = false
    public var requireClientCertificate = false
    /// Verify the certificate chain and name of servers Starling connects to (default true; against
    /// `ca_list`, else Debian's CA bundle). Kamailio's client default is no verification.
    public var verifyServer = true
    public var minVersion = "TLSv1.2"
    /// SNI server name -> (certificate, private key).
    public var domains: [String: [String: String]] = [:]
    public init() {}
    /// Debian's CA bundle (package ca-certificates): what `verify_server` checks servers against
    /// when `ca_list` is not set.
    public static var systemCABundle: String { TLSSettings.systemCABundle }
}
