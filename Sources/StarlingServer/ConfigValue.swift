public import SIPTransport

/// A scalar configuration value: what a `#!define` or a `modparam` holds.
public enum ConfigValue: Sendable, Hashable, CustomStringConvertible {
    case string(String)
    case int(Int)
    case bool(Bool)

    /// The value as text: strings as they are, integers in decimal, booleans as "1"/"0" (Kamailio's
    /// view of a boolean define).
    public var text: String {
        switch self {
        case .string(let s): return s
        case .int(let i): return String(i)
        case .bool(let b): return b ? "1" : "0"
        }
    }

    /// The value as an integer (Kamailio int modparams): integers, booleans as 1/0, numeric strings.
    public var intValue: Int? {
        switch self {
        case .int(let i): return i
        case .bool(let b): return b ? 1 : 0
        case .string(let s): return Int(s)
        }
    }

    public var description: String {
        switch self {
        case .string(let s): return "\"\(s)\""
        case .int(let i): return String(i)
        case .bool(let b): return String(b)
        }
    }

    /// Interprets text from the environment: an integer, `true`/`false`, or else a string.
    public init(parsing text: String) {
        if let i = Int(text) { self = .int(i) }
        else if text == "true" { self = .bool(true) }
        else if text == "false" { self = .bool(false) }
        else { self = .string(text) }
    }
}

/// A `listen` entry: "proto:ip:port" ("udp:127.0.0.1:5060", "udp:[::1]:5060"). The port may be
/// omitted (5060; 5061 for tls and wss). Hosts are numeric (0.0.0.0 and [::] bind all addresses).
public struct ListenAddress: Sendable, Hashable, CustomStringConvertible {
    public var proto: SIPTransportProtocol
    public var address: SocketAddress
    /// `;proxy` after a tcp/tls/ws/wss address: connections start with a PROXY protocol v1/v2 header.
    public var proxyProtocol: Bool

    public init(proto: SIPTransportProtocol, address: SocketAddress, proxyProtocol: Bool = false) {
        self.proto = proto
        self.address = address
        self.proxyProtocol = proxyProtocol
    }

    /// Parses "proto:ip[:port]"; the error message names the problem (the caller adds the key).
    public static func parse(_ fullText: String) -> Result<ListenAddress, ConfigError> {
        var text = fullText
        var proxy = false
        if text.lowercased().hasSuffix(";proxy") {
            text = String(text.dropLast(";proxy".count))
            proxy = true
        }
        func bad(_ why: String) -> Result<ListenAddress, ConfigError> {
            .failure(ConfigError(key: "", "\(why) in \"\(text)\" (expected \"proto:ip:port\", e.g. \"udp:127.0.0.1:5060\" or \"udp:[::1]:5060\")"))
        }
        guard let colon = text.firstIndex(of: ":") else { return bad("missing proto") }
        let protoName = String(text[..<colon])
        guard let proto = SIPTransportProtocol(name: protoName) else {
            return .failure(ConfigError(key: "", "unknown proto \"\(protoName)\" in \"\(text)\" (expected one of udp, tcp, tls, ws, wss, sctp)"))
        }
        let rest = String(text[text.index(after: colon)...])
        guard !rest.isEmpty else { return bad("missing address") }
        let defaultPort = (proto == .tls || proto == .wss) ? 5061 : 5060
        // A bare IPv6 address without brackets is ambiguous with a port; require brackets.
        if !rest.hasPrefix("["), rest.filter({ $0 == ":" }).count > 1 { return bad("IPv6 addresses need brackets") }
        if rest.hasPrefix("["), let close = rest.firstIndex(of: "]") {
            let after = rest[rest.index(after: close)...]
            if !after.isEmpty {
                guard after.first == ":", let p = Int(after.dropFirst()) else { return bad("bad port") }
                guard p > 0 && p <= 65535 else { return bad("port \(p) out of range") }
            }
        } else if let c = rest.lastIndex(of: ":") {
            guard let p = Int(rest[rest.index(after: c)...]) else { return bad("bad port") }
            guard p > 0 && p <= 65535 else { return bad("port \(p) out of range") }
        }
        guard let addr = SocketAddress(rest, defaultPort: defaultPort) else { return bad("bad IP address") }
        if proxy && proto == .udp { return bad(";proxy (PROXY protocol) needs a tcp, tls, ws or wss listener") }
        return .success(ListenAddress(proto: proto, address: addr, proxyProtocol: proxy))
    }

    /// "udp:127.0.0.1:5060", "udp:[::1]:5060".
    public var description: String { "\(proto.name):\(address)\(proxyProtocol ? ";proxy" : "")" }
}

/// Limits applied to every Lua state.
public struct LuaLimits: Sendable, Hashable {
    /// VM instructions one route callback may run before it is aborted (0: unlimited). Default 10 000 000.
    public var instructionBudget: Int
    /// Memory a Lua state may allocate, in MiB (0: unlimited). Default 64.
    public var memoryLimitMB: Int

    public init(instructionBudget: Int = 10_000_000, memoryLimitMB: Int = 64) {
        self.instructionBudget = instructionBudget
        self.memoryLimitMB = memoryLimitMB
    }
}

/// Values the command line sets; they override the file and the environment.
public struct ConfigOverrides: Sendable, Hashable {
    /// `--script`
    public var script: String?
    /// `--listen` (repeatable): replaces `core.listen`.
    public var listen: [String]?
    /// `--workers`
    public var workers: Int?
    /// `--log-level`
    public var logLevel: String?

    public init(script: String? = nil, listen: [String]? = nil, workers: Int? = nil, logLevel: String? = nil) {
        self.script = script
        self.listen = listen
        self.workers = workers
        self.logLevel = logLevel
    }
}
