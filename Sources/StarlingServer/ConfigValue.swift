public import SIPTransport
import Glibc
import Foundation

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
    /// `;mcast=IFACE` after a udp multicast group address (Kamailio's `mcast=` before `listen=`): the
    /// interface the group is joined on; "" for a group without it (the kernel picks the interface).
    public var multicastInterface: String?
    /// `advertise HOST[:PORT]` (Kamailio's `listen=... advertise ...`): the host (an IPv6 address in
    /// brackets) Via, Record-Route, Path and Contact rewrites show for this socket; nil: its own address.
    public var advertisedHost: String?
    /// The advertised port; nil: the socket's own port.
    public var advertisedPort: Int?
    /// `name NAME` / `;name=NAME`: the socket's name (`set_send_socket_name`, `$fsn`, `is_socket_name`).
    public var name: String?

    public init(proto: SIPTransportProtocol, address: SocketAddress, proxyProtocol: Bool = false,
                multicastInterface: String? = nil, advertisedHost: String? = nil, advertisedPort: Int? = nil,
                name: String? = nil) {
        self.proto = proto
        self.address = address
        self.proxyProtocol = proxyProtocol
        self.multicastInterface = multicastInterface
        self.advertisedHost = advertisedHost
        self.advertisedPort = advertisedPort
        self.name = name
    }

    /// Parses an `advertise` value: `HOST[:PORT]`, HOST an IPv4 address, a bracketed IPv6 address or a
    /// host name. Nil with the reason when it is not one.
    static func parseAdvertise(_ text: String) -> Result<(host: String, port: Int?), ConfigError> {
        func bad(_ why: String) -> Result<(host: String, port: Int?), ConfigError> {
            .failure(ConfigError(key: "", "bad advertise \"\(text)\": \(why) (expected HOST[:PORT], e.g. \"203.0.113.7:5060\", \"[2001:db8::7]:5060\" or \"sip.example.com\")"))
        }
        var host = Substring(text)
        var port: Int? = nil
        if host.hasPrefix("[") {
            guard let close = host.firstIndex(of: "]") else { return bad("missing ]") }
            let after = host[host.index(after: close)...]
            let inner = String(host[host.index(after: host.startIndex)..<close])
            guard SocketAddress(ip: inner, port: 0)?.family == .inet6 else { return bad("not an IPv6 address in brackets") }
            if !after.isEmpty {
                guard after.first == ":", let p = Int(after.dropFirst()) else { return bad("bad port") }
                port = p
            }
            host = host[...close]
        } else {
            let colons = host.filter { $0 == ":" }.count
            if colons > 1 { return bad("IPv6 addresses need brackets") }
            if let c = host.firstIndex(of: ":") {
                guard let p = Int(host[host.index(after: c)...]) else { return bad("bad port") }
                port = p
                host = host[..<c]
            }
            guard !host.isEmpty else { return bad("missing host") }
            let allowed = host.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "." || $0 == "_") }
            guard allowed, !host.hasPrefix("."), !host.hasPrefix("-") else { return bad("not an IP address or host name") }
            if host.allSatisfy({ $0.isNumber || $0 == "." }), SocketAddress(ip: String(host), port: 0) == nil {
                return bad("not an IPv4 address")
            }
        }
        if let p = port, !(1...65535).contains(p) { return bad("port \(p) out of range") }
        return .success((String(host), port))
    }

    /// Splits "ADDRESS [advertise HOST[:PORT]] [name NAME]" (Kamailio's listen syntax; the name may be
    /// quoted) and a `;name=NAME` suffix of the address off, then parses the address.
    public static func parse(_ fullText: String) -> Result<ListenAddress, ConfigError> {
        let tokens = fullText.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
        guard var first = tokens.first else { return parseAddress(fullText) }
        var advertise: (host: String, port: Int?)? = nil
        var name: String? = nil
        var i = 1
        while i < tokens.count {
            let word = tokens[i].lowercased()
            guard i + 1 < tokens.count else {
                return .failure(ConfigError(key: "", "\"\(tokens[i])\" needs a value in \"\(fullText)\""))
            }
            let value = tokens[i + 1]
            switch word {
            case "advertise":
                switch parseAdvertise(value) {
                case .success(let a): advertise = a
                case .failure(let e): return .failure(ConfigError(key: "", "\(e.message) in \"\(fullText)\""))
                }
            case "name":
                var n = Substring(value)
                if n.count >= 2, n.first == "\"", n.last == "\"" { n = n.dropFirst().dropLast() }
                name = String(n)
            default:
                return .failure(ConfigError(key: "", "unknown word \"\(tokens[i])\" in \"\(fullText)\" (expected advertise HOST[:PORT] or name NAME after the address)"))
            }
            i += 2
        }
        // ";name=NAME" inside the address part.
        if let r = first.range(of: ";name=", options: .caseInsensitive) {
            let tail = first[r.upperBound...]
            let end = tail.firstIndex(of: ";") ?? tail.endIndex
            name = String(tail[..<end])
            first = String(first[..<r.lowerBound]) + String(tail[end...])
        }
        if let n = name, n.isEmpty || !n.allSatisfy({ !$0.isWhitespace && $0 != "\"" && $0 != ";" }) {
            return .failure(ConfigError(key: "", "bad socket name \"\(n)\" in \"\(fullText)\""))
        }
        switch parseAddress(first) {
        case .failure(let e): return .failure(e)
        case .success(var l):
            if l.isMulticast && advertise != nil {
                return .failure(ConfigError(key: "", "advertise on a multicast group listener (it never sends) in \"\(fullText)\""))
            }
            l.advertisedHost = advertise?.host
            l.advertisedPort = advertise?.port
            l.name = name
            return .success(l)
        }
    }

    /// A multicast group listener: it receives only; nothing is ever sent from its socket.
    public var isMulticast: Bool { proto == .udp && address.isMulticast }

    /// The index of the interface a group is joined on (0: the kernel's choice), nil if it does not exist.
    public var multicastInterfaceIndex: UInt32? {
        guard let name = multicastInterface, !name.isEmpty else { return 0 }
        let i = if_nametoindex(name)
        return i == 0 ? nil : i
    }

    /// Parses "proto:ip[:port]"; the error message names the problem (the caller adds the key).
    static func parseAddress(_ fullText: String) -> Result<ListenAddress, ConfigError> {
        var text = fullText
        var proxy = false
        var mcast: String? = nil
        let marker = Array(";mcast=".utf8)
        let lower = Array(text.lowercased().utf8)
        if lower.count == Array(text.utf8).count,
           let at = (0..<max(0, lower.count - marker.count + 1)).first(where: { lower[$0..<($0 + marker.count)].elementsEqual(marker) }) {
            let bytes = Array(text.utf8)
            mcast = String(decoding: bytes[(at + marker.count)...], as: UTF8.self)
            text = String(decoding: bytes[..<at], as: UTF8.self)
            guard let name = mcast, !name.isEmpty, !name.contains(";") else {
                return .failure(ConfigError(key: "", "expected an interface name after ;mcast= in \"\(fullText)\""))
            }
        }
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
        if let mcast {
            guard proto == .udp, addr.isMulticast else {
                return bad(";mcast= needs a udp listener on a multicast group address (224.0.0.0/4, ff00::/8)")
            }
            guard if_nametoindex(mcast) != 0 else {
                return .failure(ConfigError(key: "", "multicast interface \"\(mcast)\" does not exist (in \"\(fullText)\")"))
            }
        } else if addr.isMulticast && proto != .udp {
            return bad("a multicast group address needs a udp listener")
        }
        return .success(ListenAddress(proto: proto, address: addr, proxyProtocol: proxy,
                                      multicastInterface: mcast ?? (addr.isMulticast ? "" : nil)))
    }

    /// "udp:127.0.0.1:5060", "udp:[::1]:5060".
    public var description: String {
        var s = "\(proto.name):\(address)\(proxyProtocol ? ";proxy" : "")\(multicastInterface.map { $0.isEmpty ? "" : ";mcast=\($0)" } ?? "")"
        if let h = advertisedHost { s += " advertise \(h)\(advertisedPort.map { ":\($0)" } ?? "")" }
        if let name { s += " name \(name)" }
        return s
    }
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
