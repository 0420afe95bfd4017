import Foundation
import KSRModules
import Logging
import SIPTransport
import TOMLKit
import DiameterNode

/// A configuration value before validation, from TOML or from an environment string.
enum RawValue {
    case string(String)
    case int(Int)
    case bool(Bool)
    case double(Double)
    case array([RawValue])
    case table
    case other(String)

    init(_ v: any TOMLValueConvertible) {
        switch v.type {
        case .string: self = .string(v.string ?? "")
        case .int: self = .int(v.int ?? 0)
        case .bool: self = .bool(v.bool ?? false)
        case .double: self = .double(v.double ?? 0)
        case .array: self = .array((v.array.map { Array($0) } ?? []).map { RawValue($0) })
        case .table: self = .table
        case .date: self = .other("a date")
        case .time: self = .other("a time")
        case .dateTime: self = .other("a date-time")
        }
    }

    /// How an error message shows the value: `"abc"`, `42`, `true`, `an array`.
    var shown: String {
        switch self {
        case .string(let s): return "\"\(s)\""
        case .int(let i): return String(i)
        case .bool(let b): return String(b)
        case .double(let d): return String(d)
        case .array: return "an array"
        case .table: return "a table"
        case .other(let s): return s
        }
    }

    var scalar: ConfigValue? {
        switch self {
        case .string(let s): return .string(s)
        case .int(let i): return .int(i)
        case .bool(let b): return .bool(b)
        default: return nil
        }
    }
}

/// Kamailio-style names: modules, defines.
private func isIdentifier(_ s: String) -> Bool {
    guard let f = s.unicodeScalars.first, f == "_" || (f.isASCII && f.properties.isAlphabetic) else { return false }
    return s.unicodeScalars.allSatisfy { $0 == "_" || ($0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0))) }
}

extension StarlingConfig {
    /// Keys allowed in `[core]`.
    static let coreKeys: [String] = [
        "listen", "workers", "script", "modules", "log_level", "dns_servers", "instruction_budget", "memory_limit_mb",
        "log_format", "alias", "tcp_connection_lifetime", "tcp_connect_timeout", "tcp_max_connections",
        "mcast_loopback", "mcast_ttl", "tcp_crlf_ping", "tcp_accept_no_cl", "tcp_keepalive", "tcp_keepidle",
        "tcp_keepintvl", "tcp_keepcnt", "async_io", "async_max_pending", "server_id",
    ]
    /// Keys allowed in `[tls]` (besides `domain` tables).
    static let tlsKeys: [String] = [
        "certificate", "private_key", "ca_list", "verify_client", "require_client_certificate", "verify_server", "min_version",
    ]
    /// Keys allowed in `[control]`.
    static let controlKeys: [String] = ["listen", "token", "allow_unauthenticated"]
    /// `[core]` keys that hold lists (comma-separated in the environment).
    static let coreListKeys: Set<String> = ["listen", "modules", "dns_servers", "alias"]

    // MARK: TOML

    mutating func apply(_ root: TOMLTable) throws(ConfigError) {
        for key in root.keys.sorted() {
            guard let value = root[key] else { continue }
            try attempt { c throws(ConfigError) in try c.applySection(key, value) }
        }
    }

    private mutating func applySection(_ key: String, _ value: any TOMLValueConvertible) throws(ConfigError) {
            switch key {
            case "core":
                guard let core = value.table else { throw ConfigError(key: "core", "expected a table ([core]), got \(RawValue(value).shown)") }
                for k in core.keys.sorted() {
                    guard let v = core[k] else { continue }
                    try attempt { c throws(ConfigError) in try c.setCore(k, RawValue(v), key: "core.\(k)") }
                }
            case "control":
                guard let ctl = value.table else { throw ConfigError(key: "control", "expected a table ([control]), got \(RawValue(value).shown)") }
                for k in ctl.keys.sorted() {
                    guard let v = ctl[k] else { continue }
                    try attempt { c throws(ConfigError) in try c.setControl(k, RawValue(v), key: "control.\(k)") }
                }
            case "tls":
                guard let t = value.table else { throw ConfigError(key: "tls", "expected a table ([tls]), got \(RawValue(value).shown)") }
                var c = tls ?? TLSConfig()
                for k in t.keys.sorted() {
                    guard let v = t[k] else { continue }
                    if k == "domain" {
                        guard let doms = v.table else { throw ConfigError(key: "tls.domain", "expected tables ([tls.domain.\"name\"])") }
                        for name in doms.keys.sorted() {
                            guard let d = doms[name]?.table else { throw ConfigError(key: "tls.domain.\(name)", "expected a table") }
                            var entry: [String: String] = [:]
                            for dk in d.keys.sorted() {
                                guard dk == "certificate" || dk == "private_key" else {
                                    throw ConfigError(key: "tls.domain.\(name).\(dk)", "unknown key (expected certificate, private_key)")
                                }
                                guard case .string(let s) = RawValue(d[dk]!), !s.isEmpty else {
                                    throw ConfigError(key: "tls.domain.\(name).\(dk)", "expected a file path")
                                }
                                entry[dk] = s
                            }
                            guard entry.count == 2 else { throw ConfigError(key: "tls.domain.\(name)", "needs certificate and private_key") }
                            c.domains[name.lowercased()] = entry
                        }
                        continue
                    }
                    do {
                        try Self.setTLS(&c, k, RawValue(v), key: "tls.\(k)")
                    } catch {
                        guard collectedErrors != nil else { throw error }
                        collectedErrors!.append(error)
                    }
                }
                tls = c
            case "diameter":
                guard let t = value.table else { throw ConfigError(key: "diameter", "expected a table ([diameter]), got \(RawValue(value).shown)") }
                diameter = try Self.parseDiameter(t)
            case "define":
                guard let defs = value.table else { throw ConfigError(key: "define", "expected a table ([define]), got \(RawValue(value).shown)") }
                for name in defs.keys.sorted() {
                    guard let v = defs[name] else { continue }
                    try attempt { c throws(ConfigError) in try c.setDefine(name, RawValue(v), key: "define.\(name)") }
                }
            case "modparam":
                guard let mods = value.table else {
                    throw ConfigError(key: "modparam", "expected tables of module parameters ([modparam.<module>]), got \(RawValue(value).shown)")
                }
                for module in mods.keys.sorted() {
                    guard let m = mods[module]?.table else {
                        throw ConfigError(key: "modparam.\(module)", "expected a table of parameters ([modparam.\(module)]), got \(mods[module].map { RawValue($0).shown } ?? "nothing")")
                    }
                    for param in m.keys.sorted() {
                        guard let v = m[param] else { continue }
                        try attempt { c throws(ConfigError) in try c.setModparam(module, param, RawValue(v), key: "modparam.\(module).\(param)") }
                    }
                }
            default:
                throw ConfigError(key: key, "unknown section (expected [core], [control], [tls], [diameter], [define] or [modparam.<module>])")
            }
    }

    // MARK: Setters shared by TOML, environment and command line

    mutating func setCore(_ name: String, _ value: RawValue, key: String) throws(ConfigError) {
        switch name {
        case "listen":
            let items = try stringList(value, key: key)
            guard !items.isEmpty else { throw ConfigError(key: key, "expected at least one listen address") }
            var result: [ListenAddress] = []
            for (i, item) in items.enumerated() {
                let itemKey = items.count > 1 || value.isArray ? "\(key)[\(i)]" : key
                switch ListenAddress.parse(item) {
                case .success(let l):
                    if result.contains(l) { throw ConfigError(key: itemKey, "duplicate listen address \"\(item)\"") }
                    result.append(l)
                case .failure(let e):
                    throw ConfigError(key: itemKey, e.message)
                }
            }
            listen = result
        case "workers":
            guard case .int(let n) = value, n > 0 else { throw ConfigError(key: key, "expected a positive integer, got \(value.shown)") }
            guard n <= StarlingConfig.maxWorkers else { throw ConfigError(key: key, "expected at most \(StarlingConfig.maxWorkers), got \(n)") }
            workers = n
        case "script":
            guard case .string(let s) = value, !s.isEmpty else { throw ConfigError(key: key, "expected a non-empty path string, got \(value.shown)") }
            script = s
        case "modules":
            let items = try stringList(value, key: key)
            var seen: [String] = []
            for (i, m) in items.enumerated() {
                guard isIdentifier(m) else { throw ConfigError(key: "\(key)[\(i)]", "bad module name \"\(m)\"") }
                if !seen.contains(m) { seen.append(m) }
            }
            modules = seen
        case "log_level":
            logLevel = try Self.parseLogLevel(value, key: key)
        case "mcast_loopback":
            switch value {
            case .bool(let b): mcastLoopback = b
            case .int(let n) where n == 0 || n == 1: mcastLoopback = n == 1
            default: throw ConfigError(key: key, "expected true/false (or 0/1), got \(value.shown)")
            }
        case "mcast_ttl":
            guard case .int(let n) = value, (0...255).contains(n) else { throw ConfigError(key: key, "expected an integer in 0...255, got \(value.shown)") }
            mcastTTL = n
        case "log_format":
            guard case .string(let s) = value, let f = LogFormat(rawValue: s.lowercased()) else {
                throw ConfigError(key: key, "expected \"text\" or \"json\", got \(value.shown)")
            }
            logFormat = f
        case "dns_servers":
            var servers: [SocketAddress] = []
            for (i, s) in try stringList(value, key: key).enumerated() {
                guard let a = SocketAddress(s, defaultPort: 53), a.port != 0 else {
                    throw ConfigError(key: "\(key)[\(i)]", "bad DNS server \"\(s)\" (expected \"ip\", \"ip:port\" or \"[ipv6]:port\")")
                }
                servers.append(a)
            }
            dnsServers = servers
        case "alias":
            var names: [String] = []
            for (i, name) in try stringList(value, key: key).enumerated() {
                guard !name.isEmpty, !name.contains(where: { $0 == " " || $0 == ";" || $0 == "@" }) else {
                    throw ConfigError(key: "\(key)[\(i)]", "bad alias \"\(name)\" (expected a host name or address)")
                }
                if !names.contains(name) { names.append(name) }
            }
            aliases = names
        case "instruction_budget":
            lua.instructionBudget = try nonNegative(value, key: key)
        case "memory_limit_mb":
            lua.memoryLimitMB = try nonNegative(value, key: key)
        case "tcp_connection_lifetime":
            guard case .int(let n) = value, n > 0 else { throw ConfigError(key: key, "expected a positive number of seconds, got \(value.shown)") }
            tcpConnectionLifetime = n
        case "tcp_connect_timeout":
            guard case .int(let n) = value, n > 0 else { throw ConfigError(key: key, "expected a positive number of seconds, got \(value.shown)") }
            tcpConnectTimeout = n
        case "tcp_crlf_ping", "tcp_accept_no_cl", "tcp_keepalive":
            let b: Bool
            switch value {
            case .bool(let v): b = v
            case .int(let n) where n == 0 || n == 1: b = n == 1
            default: throw ConfigError(key: key, "expected true or false, got \(value.shown)")
            }
            if name == "tcp_crlf_ping" { tcpCRLFPing = b } else if name == "tcp_accept_no_cl" { tcpAcceptNoCL = b } else { tcpKeepalive = b }
        case "tcp_keepidle", "tcp_keepintvl", "tcp_keepcnt":
            let n = try nonNegative(value, key: key)
            if name == "tcp_keepidle" { tcpKeepIdle = n } else if name == "tcp_keepintvl" { tcpKeepIntvl = n } else { tcpKeepCnt = n }
        case "async_io":
            switch value {
            case .bool(let v): asyncIO = v
            case .int(let n) where n == 0 || n == 1: asyncIO = n == 1
            case .string(let t) where ["true", "false"].contains(t.lowercased()): asyncIO = t.lowercased() == "true"
            default: throw ConfigError(key: key, "expected true or false (or 1/0), got \(value.shown)")
            }
        case "server_id":
            guard case .int(let n) = value, n >= 0, n <= Int(Int32.max) else {
                throw ConfigError(key: key, "expected a non-negative integer, got \(value.shown)")
            }
            moduleParameters.serverID = n
        case "async_max_pending":
            guard case .int(let n) = value, n > 0 else { throw ConfigError(key: key, "expected a positive integer, got \(value.shown)") }
            asyncMaxPending = n
        case "tcp_max_connections":
            guard case .int(let n) = value, n > 0 else { throw ConfigError(key: key, "expected a positive integer, got \(value.shown)") }
            tcpMaxConnections = n
        default:
            throw ConfigError(key: key, "unknown key (expected one of \(StarlingConfig.coreKeys.joined(separator: ", ")))")
        }
    }

    static func setTLS(_ c: inout TLSConfig, _ name: String, _ value: RawValue, key: String) throws(ConfigError) {
        func path() throws(ConfigError) -> String {
            guard case .string(let s) = value, !s.isEmpty else { throw ConfigError(key: key, "expected a file path, got \(value.shown)") }
            return s
        }
        func flag() throws(ConfigError) -> Bool {
            switch value {
            case .bool(let b): return b
            case .int(let i) where i == 0 || i == 1: return i == 1
            case .string(let s) where ["yes", "no", "true", "false", "1", "0"].contains(s.lowercased()):
                return ["yes", "true", "1"].contains(s.lowercased())
            default: throw ConfigError(key: key, "expected true or false, got \(value.shown)")
            }
        }
        switch name {
        case "certificate": c.certificate = try path()
        case "private_key": c.privateKey = try path()
        case "ca_list": c.caList = try path()
        case "verify_client": c.verifyClient = try flag()
        case "require_client_certificate": c.requireClientCertificate = try flag()
        case "verify_server": c.verifyServer = try flag()
        case "min_version":
            guard case .string(let s) = value, ["tlsv1", "tlsv1.0", "tlsv1.1", "tlsv1.2", "tlsv1.3"].contains(s.lowercased()) else {
                throw ConfigError(key: key, "expected \"TLSv1.2\" or \"TLSv1.3\" (or TLSv1, TLSv1.1), got \(value.shown)")
            }
            c.minVersion = s
        default:
            throw ConfigError(key: key, "unknown key (expected one of \(StarlingConfig.tlsKeys.joined(separator: ", ")), or [tls.domain.<name>])")
        }
    }

    mutating func setControl(_ name: String, _ value: RawValue, key: String) throws(ConfigError) {
        switch name {
        case "listen":
            let text: String
            switch value {
            case .string(let s): text = s
            case .int(let p): text = String(p)
            default: throw ConfigError(key: key, "expected an address string such as \"127.0.0.1:5065\", got \(value.shown)")
            }
            guard let a = ControlConfig.parseListen(text) else {
                throw ConfigError(key: key, "bad control address \(value.shown) (expected \"ip:port\", \"[ipv6]:port\" or \":port\", port 1-65535)")
            }
            controlListen = a
        case "token":
            guard case .string(let s) = value else { throw ConfigError(key: key, "expected a string, got \(value.shown)") }
            guard !s.contains(where: { $0.isWhitespace || $0.isNewline }) else {
                throw ConfigError(key: key, "the token must not contain white space")
            }
            controlToken = s.isEmpty ? nil : s
        case "allow_unauthenticated":
            switch value {
            case .bool(let b): controlAllowUnauthenticated = b
            case .int(let i) where i == 0 || i == 1: controlAllowUnauthenticated = i == 1
            case .string(let s) where ["true", "false", "1", "0", "yes", "no"].contains(s.lowercased()):
                controlAllowUnauthenticated = ["true", "1", "yes"].contains(s.lowercased())
            default: throw ConfigError(key: key, "expected true or false, got \(value.shown)")
            }
        default:
            throw ConfigError(key: key, "unknown key (expected one of \(StarlingConfig.controlKeys.joined(separator: ", ")))")
        }
    }

    mutating func setDefine(_ name: String, _ value: RawValue, key: String) throws(ConfigError) {
        guard isIdentifier(name) else { throw ConfigError(key: key, "bad define name \"\(name)\" (letters, digits and _)") }
        guard let v = value.scalar else { throw ConfigError(key: key, "expected a string, integer or boolean, got \(value.shown)") }
        defines[name] = v
    }

    /// Sets a modparam as the file would (values keep their types), validated against the module's
    /// table; the error names `modparam.<module>.<param>`.
    public mutating func setModparam(_ module: String, _ param: String, _ values: [ConfigValue]) throws(ConfigError) {
        let raw: RawValue = values.count == 1 ? values[0].raw : .array(values.map(\.raw))
        try setModparam(module, param, raw, key: "modparam.\(module).\(param)")
    }

    /// Sets a modparam from TOML (`fromEnvironment` false: values keep their TOML types) or from an
    /// environment variable (text read as the parameter's kind), validated against the module's table:
    /// an unknown module or parameter, or a value of the wrong kind, is a configuration error.
    mutating func setModparam(_ module: String, _ param: String, _ value: RawValue, key: String,
                              fromEnvironment: Bool = false) throws(ConfigError) {
        guard isIdentifier(module) else { throw ConfigError(key: key, "bad module name \"\(module)\"") }
        guard !param.isEmpty else { throw ConfigError(key: key, "empty parameter name") }
        let module = module.lowercased()
        var values: [ConfigValue] = []
        if case .array(let items) = value {
            guard !items.isEmpty else { throw ConfigError(key: key, "expected at least one value in the array") }
            for (i, item) in items.enumerated() {
                guard let v = item.scalar else { throw ConfigError(key: "\(key)[\(i)]", "expected a string, integer or boolean, got \(item.shown)") }
                values.append(v)
            }
        } else {
            guard let v = value.scalar else {
                throw ConfigError(key: key, "expected a string, integer, boolean or an array of them, got \(value.shown)")
            }
            values = [v]
        }
        let inputs: [ModuleParameterInput] = values.map { v in
            switch v {
            case .int(let n): return fromEnvironment ? .text(String(n)) : .int(n)
            case .bool(let b): return fromEnvironment ? .text(String(b)) : .bool(b)
            case .string(let s): return fromEnvironment ? .text(s) : .string(s)
            }
        }
        do throws(ModuleParameterError) {
            try moduleParameters.set(module, param, inputs)
        } catch {
            // An unknown module is named by its section; environment variables keep their own name.
            throw ConfigError(key: fromEnvironment || error.parameter != nil ? key : error.key, error.message)
        }
        modparams[module, default: [:]][param] = values
    }

    // MARK: Environment

    mutating func applyEnvironment(_ env: [String: String]) throws(ConfigError) {
        for name in env.keys.sorted() {
            guard let text = env[name] else { continue }
            try attempt { c throws(ConfigError) in try c.applyEnvironmentVariable(name, text) }
        }
    }

    private mutating func applyEnvironmentVariable(_ name: String, _ text: String) throws(ConfigError) {
            if name.hasPrefix("STARLING_CORE_") {
                let k = String(name.dropFirst("STARLING_CORE_".count)).lowercased()
                guard StarlingConfig.coreKeys.contains(k) else {
                    throw ConfigError(key: name, "unknown key core.\(k) (expected one of \(StarlingConfig.coreKeys.joined(separator: ", ")))")
                }
                let raw: RawValue
                if StarlingConfig.coreListKeys.contains(k) {
                    raw = .array(text.split(separator: ",").map { .string($0.trimmingCharacters(in: .whitespaces)) })
                } else if let i = Int(text) {
                    raw = .int(i)
                } else {
                    raw = .string(text)
                }
                try setCore(k, raw, key: name)
            } else if name.hasPrefix("STARLING_CONTROL_") {
                let k = String(name.dropFirst("STARLING_CONTROL_".count)).lowercased()
                guard StarlingConfig.controlKeys.contains(k) else {
                    throw ConfigError(key: name, "unknown key control.\(k) (expected one of \(StarlingConfig.controlKeys.joined(separator: ", ")))")
                }
                try setControl(k, .string(text), key: name)
            } else if name.hasPrefix("STARLING_DEFINE_") {
                let given = String(name.dropFirst("STARLING_DEFINE_".count))
                let defName = defines.keys.first { $0.caseInsensitiveCompare(given) == .orderedSame } ?? given
                try setDefine(defName, ConfigValue(parsing: text).raw, key: name)
            } else if name.hasPrefix("STARLING_MODPARAM_") {
                let rest = String(name.dropFirst("STARLING_MODPARAM_".count))
                let lower = rest.lowercased()
                // The longest registered module name first: STARLING_MODPARAM_AUTH_DB_USE_DOMAIN is auth_db's.
                let known = Set(KSRModules.all.map { $0.name }).union(modules).union(modparams.keys)
                let module = known.filter { lower.hasPrefix($0.lowercased() + "_") && lower.count > $0.count + 1 }
                    .max { $0.count < $1.count }
                let moduleName: String
                let paramText: String
                if let module {
                    moduleName = module
                    paramText = String(rest.dropFirst(module.count + 1))
                } else {
                    guard let us = rest.firstIndex(of: "_"), us != rest.startIndex, rest.index(after: us) != rest.endIndex else {
                        throw ConfigError(key: name, "expected STARLING_MODPARAM_<MODULE>_<PARAM>")
                    }
                    moduleName = rest[..<us].lowercased()
                    paramText = String(rest[rest.index(after: us)...])
                }
                let param = KSRModules.parameters(of: moduleName).first { $0.name.caseInsensitiveCompare(paramText) == .orderedSame }?.name
                    ?? modparams[moduleName]?.keys.first { $0.caseInsensitiveCompare(paramText) == .orderedSame }
                    ?? paramText.lowercased()
                try setModparam(moduleName, param, ConfigValue(parsing: text).raw, key: name, fromEnvironment: true)
            }
    }

    // MARK: Command line

    mutating func apply(_ o: ConfigOverrides) throws(ConfigError) {
        if let s = o.script { try attempt { c throws(ConfigError) in try c.setCore("script", .string(s), key: "--script") } }
        if let l = o.listen { try attempt { c throws(ConfigError) in try c.setCore("listen", .array(l.map { .string($0) }), key: "--listen") } }
        if let w = o.workers { try attempt { c throws(ConfigError) in try c.setCore("workers", .int(w), key: "--workers") } }
        if let l = o.logLevel {
            try attempt { c throws(ConfigError) in try c.setCore("log_level", Int(l).map { .int($0) } ?? .string(l), key: "--log-level") }
        }
    }

    // MARK: Cross-checks

    mutating func validate() throws(ConfigError) {
        // Kamailio refuses to load a module it does not have.
        for (i, m) in modules.enumerated() where KSRModules.module(named: m) == nil && !KSRModules.isTableName(m) {
            try attempt { _ throws(ConfigError) in
                throw ConfigError(key: "core.modules[\(i)]",
                                  "unknown module \"\(m)\" (Starling has: \(KSRModules.all.map { $0.name }.sorted().joined(separator: ", ")))")
            }
        }
        // With no module list every module Starling has is loaded, so any of their modparams applies.
        let loaded = loadedModules
        for module in modparams.keys.sorted() where !loaded.contains(module) {
            try attempt { _ throws(ConfigError) in
                throw ConfigError(key: "modparam.\(module)", "module \"\(module)\" is not loaded (add it to core.modules)")
            }
        }
        // Anyone who reaches an open control listener can reload the script and change tables.
        if let a = controlListen, controlToken == nil, !controlAllowUnauthenticated, !ControlConfig.isLoopback(a) {
            try attempt { _ throws(ConfigError) in
                throw ConfigError(key: "control.listen",
                                  "\(a) is not a loopback address and no token is set: set [control] token (or STARLING_CONTROL_TOKEN), "
                                  + "or allow_unauthenticated = true to accept anyone who reaches it")
            }
        }
    }

    // MARK: Helpers

    private func stringList(_ value: RawValue, key: String) throws(ConfigError) -> [String] {
        switch value {
        case .string(let s): return [s]
        case .array(let items):
            var out: [String] = []
            for (i, item) in items.enumerated() {
                guard case .string(let s) = item else { throw ConfigError(key: "\(key)[\(i)]", "expected a string, got \(item.shown)") }
                out.append(s)
            }
            return out
        default:
            throw ConfigError(key: key, "expected an array of strings, got \(value.shown)")
        }
    }

    private func nonNegative(_ value: RawValue, key: String) throws(ConfigError) -> Int {
        guard case .int(let n) = value, n >= 0 else { throw ConfigError(key: key, "expected a non-negative integer, got \(value.shown)") }
        return n
    }

    /// Level names (swift-log's, plus "warn", "err", "crit") or a Kamailio debug level:
    /// -5...-2 critical, -1 error, 0 warning, 1 notice, 2 info, 3 debug, 4 trace.
    static func parseLogLevel(_ value: RawValue, key: String) throws(ConfigError) -> Logger.Level {
        switch value {
        case .string(let s):
            switch s.lowercased() {
            case "trace": return .trace
            case "debug", "dbg": return .debug
            case "info": return .info
            case "notice": return .notice
            case "warning", "warn": return .warning
            case "error", "err": return .error
            case "critical", "crit", "alert": return .critical
            default: break
            }
        case .int(let n) where (-5...4).contains(n):
            switch n {
            case ...(-2): return .critical
            case -1: return .error
            case 0: return .warning
            case 1: return .notice
            case 2: return .info
            case 3: return .debug
            default: return .trace
            }
        default: break
        }
        throw ConfigError(key: key, "expected trace, debug, info, notice, warning, error, critical or a Kamailio level -5...4, got \(value.shown)")
    }
}

extension RawValue {
    var isArray: Bool { if case .array = self { return true } else { return false } }
}

extension ConfigValue {
    var raw: RawValue {
        switch self {
        case .string(let s): return .string(s)
        case .int(let i): return .int(i)
        case .bool(let b): return .bool(b)
        }
    }
}

// MARK: [diameter]

extension StarlingConfig {
    static let diameterKeys = ["identity", "realm", "listen", "peers", "accept_unknown_peers", "routes", "watchdog_interval",
                               "request_timeout", "product_name"]

    static func parseDiameter(_ t: TOMLTable) throws(ConfigError) -> DiameterNodeConfig {
        func string(_ v: (any TOMLValueConvertible)?, _ key: String) throws(ConfigError) -> String {
            guard let v, case .string(let s) = RawValue(v), !s.isEmpty else {
                throw ConfigError(key: key, "expected a non-empty string, got \(v.map { RawValue($0).shown } ?? "nothing")")
            }
            return s
        }
        func identity(_ v: (any TOMLValueConvertible)?, _ key: String) throws(ConfigError) -> String {
            let s = try string(v, key)
            guard s.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "." || $0 == "-" || $0 == "_" }) else {
                throw ConfigError(key: key, "\"\(s)\" is not a DiameterIdentity (letters, digits, '.', '-')")
            }
            return s
        }
        func endpoint(_ v: any TOMLValueConvertible, _ key: String) throws(ConfigError) -> DiameterNodeConfig.Endpoint {
            guard case .string(let s) = RawValue(v) else { throw ConfigError(key: key, "expected \"tcp:IP:PORT\", got \(RawValue(v).shown)") }
            guard let e = DiameterNodeConfig.Endpoint.parse(s) else {
                throw ConfigError(key: key, "\"\(s)\" is not \"tcp:IP:PORT\" or \"tls:IP:PORT\" (an IPv4 address, port 1-65535)")
            }
            return e
        }
        func flag(_ v: any TOMLValueConvertible, _ key: String) throws(ConfigError) -> Bool {
            switch RawValue(v) {
            case .bool(let b): return b
            case .int(let i) where i == 0 || i == 1: return i == 1
            default: throw ConfigError(key: key, "expected true or false, got \(RawValue(v).shown)")
            }
        }
        func int(_ v: any TOMLValueConvertible, _ key: String, _ range: ClosedRange<Int>) throws(ConfigError) -> Int {
            guard case .int(let i) = RawValue(v), range.contains(i) else {
                throw ConfigError(key: key, "expected an integer in \(range.lowerBound)...\(range.upperBound), got \(RawValue(v).shown)")
            }
            return i
        }
        func applications(_ v: any TOMLValueConvertible, _ key: String) throws(ConfigError) -> [UInt32] {
            guard case .array(let items) = RawValue(v) else { throw ConfigError(key: key, "expected a list of application ids or names") }
            var out: [UInt32] = []
            for item in items {
                switch item {
                case .int(let i) where i >= 0 && i <= Int(UInt32.max): out.append(UInt32(i))
                case .string(let s):
                    if let id = DiameterApplicationNames.id(s) { out.append(id) } else {
                        throw ConfigError(key: key, "unknown application \"\(s)\" (an id, or one of \(DiameterApplicationNames.known))")
                    }
                default: throw ConfigError(key: key, "expected application ids or names, got \(item.shown)")
                }
            }
            return out
        }
        for k in t.keys.sorted() where !diameterKeys.contains(k) {
            throw ConfigError(key: "diameter.\(k)", "unknown key (expected one of \(diameterKeys.joined(separator: ", ")))")
        }
        guard t["identity"] != nil else { throw ConfigError(key: "diameter.identity", "missing: Starling's DiameterIdentity (its Origin-Host)") }
        guard t["realm"] != nil else { throw ConfigError(key: "diameter.realm", "missing: Starling's realm (its Origin-Realm)") }
        var c = DiameterNodeConfig(identity: try identity(t["identity"], "diameter.identity"), realm: try identity(t["realm"], "diameter.realm"))
        if let v = t["listen"] {
            guard case .array = RawValue(v), let arr = v.array else { throw ConfigError(key: "diameter.listen", "expected a list such as [\"tcp:127.0.0.1:3868\"]") }
            for (i, item) in arr.enumerated() { c.listen.append(try endpoint(item, "diameter.listen[\(i)]")) }
        }
        if let v = t["accept_unknown_peers"] { c.acceptUnknownPeers = try flag(v, "diameter.accept_unknown_peers") }
        if let v = t["watchdog_interval"] { c.watchdogInterval = Int64(try int(v, "diameter.watchdog_interval", 1...3600)) * 1000 }
        if let v = t["request_timeout"] { c.requestTimeout = Int64(try int(v, "diameter.request_timeout", 100...600_000)) }
        if let v = t["product_name"] { c.productName = try string(v, "diameter.product_name") }
        if let v = t["peers"] {
            guard let arr = v.array else { throw ConfigError(key: "diameter.peers", "expected [[diameter.peers]] tables") }
            for (i, item) in arr.enumerated() {
                let key = "diameter.peers[\(i)]"
                guard let p = item.table else { throw ConfigError(key: key, "expected a table with identity, connect, realm, applications") }
                for k in p.keys.sorted() where !["identity", "connect", "realm", "applications"].contains(k) {
                    throw ConfigError(key: "\(key).\(k)", "unknown key (expected identity, connect, realm, applications)")
                }
                var peer = DiameterNodeConfig.Peer(identity: try identity(p["identity"], "\(key).identity"))
                if let v = p["connect"] { peer.connect = try endpoint(v, "\(key).connect") }
                if let v = p["realm"] { peer.realm = try identity(v, "\(key).realm") }
                if let v = p["applications"] { peer.applications = try applications(v, "\(key).applications") }
                if peer.identity == c.identity { throw ConfigError(key: "\(key).identity", "is Starling's own identity") }
                if c.peers.contains(where: { $0.identity == peer.identity }) {
                    throw ConfigError(key: "\(key).identity", "peer \(peer.identity) is configured twice")
                }
                c.peers.append(peer)
            }
        }
        if let v = t["routes"] {
            guard let arr = v.array else { throw ConfigError(key: "diameter.routes", "expected [[diameter.routes]] tables") }
            for (i, item) in arr.enumerated() {
                let key = "diameter.routes[\(i)]"
                guard let r = item.table else { throw ConfigError(key: key, "expected a table with realm, application, peers") }
                for k in r.keys.sorted() where !["realm", "application", "peers"].contains(k) {
                    throw ConfigError(key: "\(key).\(k)", "unknown key (expected realm, application, peers)")
                }
                var route = DiameterNodeConfig.Route(realm: try identity(r["realm"], "\(key).realm"), peers: [])
                if let a = r["application"] {
                    switch RawValue(a) {
                    case .int(let i) where i >= 0 && i <= Int(UInt32.max): route.application = UInt32(i)
                    case .string(let s) where DiameterApplicationNames.id(s) != nil: route.application = DiameterApplicationNames.id(s)
                    default: throw ConfigError(key: "\(key).application", "expected an application id or name (\(DiameterApplicationNames.known)), got \(RawValue(a).shown)")
                    }
                }
                guard let ps = r["peers"]?.array, !ps.isEmpty else { throw ConfigError(key: "\(key).peers", "expected a non-empty list of peer identities") }
                for (j, p) in ps.enumerated() {
                    // "identity" (metric = position) or "identity:metric".
                    let s = try string(p, "\(key).peers[\(j)]")
                    let parts = s.split(separator: ":")
                    let id = String(parts[0])
                    let metric = parts.count > 1 ? Int(parts[1]) : j
                    guard let metric, parts.count <= 2 else { throw ConfigError(key: "\(key).peers[\(j)]", "expected \"identity\" or \"identity:metric\"") }
                    guard c.peers.contains(where: { $0.identity == id }) || c.acceptUnknownPeers else {
                        throw ConfigError(key: "\(key).peers[\(j)]", "\(id) is not a configured peer ([[diameter.peers]])")
                    }
                    route.peers.append((id, metric))
                }
                c.routes.append(route)
            }
        }
        return c
    }
}

/// Application names accepted in `applications` (the dictionary's names and a few short forms).
enum DiameterApplicationNames {
    static let table: [String: UInt32] = [
        "base": 0, "accounting": 3, "cc": 4, "credit-control": 4, "diameter-credit-control": 4, "cx": 16777216, "dx": 16777216,
        "sh": 16777217, "rx": 16777236, "gx": 16777238, "s6a": 16777251, "s6d": 16777251, "relay": 0xFFFF_FFFF,
    ]
    static var known: String { table.keys.sorted().joined(separator: ", ") }
    static func id(_ s: String) -> UInt32? { table[s.lowercased()] ?? UInt32(s) }
}
