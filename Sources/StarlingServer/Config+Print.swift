import Foundation
import Logging
import SIPTransport

extension StarlingConfig {
    /// What `starling config --print` shows: the effective configuration (defaults, then the file, the
    /// environment and the command line) as TOML that `starling run --config` reads back. With
    /// `maskSecrets`, the control token, passwords in modparams and defines, and the password part of
    /// any `scheme://user:password@host` URL are replaced by `********`.
    public func renderTOML(maskSecrets: Bool = true) -> String {
        var out = ""
        if let sourcePath { out += "# effective configuration: defaults < \(sourcePath) < STARLING_* environment < command line\n" }
        else { out += "# effective configuration: defaults < STARLING_* environment < command line (no file)\n" }
        out += "[core]\n"
        out += "listen = \(Self.tomlArray(listen.map(\.description)))\n"
        out += "workers = \(workers)\n"
        out += "script = \(Self.tomlString(script))\n"
        out += "modules = \(Self.tomlArray(modules))\(modules.isEmpty ? "  # empty: every module Starling has" : "")\n"
        out += "alias = \(Self.tomlArray(aliases))\n"
        out += "log_level = \(Self.tomlString(logLevel.rawValue))\n"
        out += "log_format = \(Self.tomlString(logFormat.rawValue))\n"
        out += "dns_servers = \(Self.tomlArray(dnsServers.map(\.description)))\(dnsServers.isEmpty ? "  # empty: the system resolver" : "")\n"
        out += "instruction_budget = \(lua.instructionBudget)\n"
        out += "memory_limit_mb = \(lua.memoryLimitMB)\n"
        out += "async_io = \(asyncIO)\n"
        out += "async_max_pending = \(asyncMaxPending)\n"
        out += "server_id = \(serverID)\n"
        out += "tcp_connection_lifetime = \(tcpConnectionLifetime)\n"
        out += "tcp_connect_timeout = \(tcpConnectTimeout)\n"
        out += "tcp_max_connections = \(tcpMaxConnections)\n"
        out += "tcp_crlf_ping = \(tcpCRLFPing)\n"
        out += "tcp_accept_no_cl = \(tcpAcceptNoCL)\n"
        out += "tcp_keepalive = \(tcpKeepalive)\n"
        out += "tcp_keepidle = \(tcpKeepIdle)\n"
        out += "tcp_keepintvl = \(tcpKeepIntvl)\n"
        out += "tcp_keepcnt = \(tcpKeepCnt)\n"
        if let c = control {
            out += "\n[control]\n"
            out += "listen = \(Self.tomlString(c.listen.description))\n"
            if let t = c.token { out += "token = \(Self.tomlString(maskSecrets ? Self.mask : t))\n" }
            out += "allow_unauthenticated = \(c.allowUnauthenticated)\n"
        } else {
            out += "\n# [control] is off (no listen)\n"
        }
        if let t = tls {
            out += "\n[tls]\n"
            out += "certificate = \(Self.tomlString(t.certificate))\n"
            out += "private_key = \(Self.tomlString(t.privateKey))\n"
            if let ca = t.caList { out += "ca_list = \(Self.tomlString(ca))\n" }
            out += "verify_client = \(t.verifyClient)\n"
            out += "require_client_certificate = \(t.requireClientCertificate)\n"
            out += "verify_server = \(t.verifyServer)\n"
            out += "min_version = \(Self.tomlString(t.minVersion))\n"
            for name in t.domains.keys.sorted() {
                out += "\n[tls.domain.\(Self.tomlString(name))]\n"
                out += "certificate = \(Self.tomlString(t.domains[name]?["certificate"] ?? ""))\n"
                out += "private_key = \(Self.tomlString(t.domains[name]?["private_key"] ?? ""))\n"
            }
        }
        if !defines.isEmpty {
            out += "\n[define]\n"
            for name in defines.keys.sorted() {
                out += "\(name) = \(Self.tomlValue(defines[name]!, secret: maskSecrets && Self.isSecretName(name), maskURL: maskSecrets))\n"
            }
        }
        for module in modparams.keys.sorted() {
            out += "\n[modparam.\(module)]\n"
            for param in modparams[module]!.keys.sorted() {
                let values = modparams[module]![param]!
                let secret = maskSecrets && Self.isSecretName(param)
                let shown = values.map { Self.tomlValue($0, secret: secret, maskURL: maskSecrets) }
                out += "\(Self.tomlKey(param)) = \(values.count == 1 ? shown[0] : "[" + shown.joined(separator: ", ") + "]")\n"
            }
        }
        return out
    }

    static let mask = "********"

    /// Parameter and define names whose values are secrets.
    static func isSecretName(_ name: String) -> Bool {
        let n = name.lowercased()
        return ["password", "passwd", "secret", "token", "pass"].contains { n.contains($0) }
    }

    /// `scheme://user:password@host/...` with the password masked.
    static func maskURLPassword(_ s: String) -> String {
        guard let scheme = s.range(of: "://") else { return s }
        let rest = s[scheme.upperBound...]
        guard let at = rest.firstIndex(of: "@"), let colon = rest[..<at].firstIndex(of: ":") else { return s }
        return String(s[..<rest.index(after: colon)]) + mask + String(rest[at...])
    }

    static func tomlValue(_ v: ConfigValue, secret: Bool, maskURL: Bool) -> String {
        switch v {
        case .int(let i): return secret ? tomlString(mask) : String(i)
        case .bool(let b): return String(b)
        case .string(let s): return tomlString(secret ? mask : (maskURL ? maskURLPassword(s) : s))
        }
    }

    static func tomlKey(_ k: String) -> String {
        k.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_" || $0 == "-") } && !k.isEmpty ? k : tomlString(k)
    }

    static func tomlArray(_ items: [String]) -> String { "[" + items.map(tomlString).joined(separator: ", ") + "]" }

    /// A TOML basic string: TOML takes JSON's escapes (\" \\ \n \r \t \uXXXX), so the log's JSON
    /// escaper writes it.
    static func tomlString(_ s: String) -> String {
        var out = ""
        JSONLogHandler.escape(s, into: &out)
        return out
    }
}
