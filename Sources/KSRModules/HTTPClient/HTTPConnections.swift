/// The `[modparam.http_client]` settings and the named connections (`httpcon`), parsed once.
struct HTTPClientSettings: Sendable {
    /// async_io: where requests of suspended routes go (nil: every call blocks).
    var awaiting: HTTPClientModule.Awaiting? = nil
    /// Seconds (timeout_mode 1) or milliseconds (timeout_mode 2); 0 with timeout_mode 0 = no timeout.
    var timeout: Int
    /// 0 = none, 1 = seconds (default), 2 = milliseconds.
    var timeoutMode: Int
    /// `query_result`: 1 = the query functions keep the first line of the body only.
    var firstLineOnly: Bool
    /// `query_maxdatasize`: limit of the body the query functions store (0 = none).
    var queryMaxDataSize: Int
    /// `maxdatasize`: default limit for named connections (0 = none).
    var maxDataSize: Int
    var keepConnections: Bool
    var verifyPeer: Bool
    var verifyHost: Bool
    var followRedirects: Bool
    var userAgent: String
    var caCert: String?
    var proxy: String?
    var proxyPort: Int
    /// CURLAUTH bits (1 basic, 2 digest) for connections with credentials.
    var authMethod: Int
    var connections: [String: HTTPConnection]

    init(_ config: ModuleConfiguration) {
        typealias M = HTTPClientModule
        timeoutMode = config[M.timeoutMode]
        let t = config[M.connectionTimeout]
        timeout = t > 0 ? t : (timeoutMode == 2 ? 4000 : 4)
        firstLineOnly = config[M.queryResult]
        queryMaxDataSize = max(0, config[M.queryMaxDataSize])
        maxDataSize = max(0, config[M.maxDataSize])
        keepConnections = config[M.keepConnections]
        verifyPeer = config[M.verifyPeer]
        verifyHost = config[M.verifyHost] != 0
        followRedirects = config[M.httpRedirect]
        userAgent = config[M.userAgent]
        caCert = config[M.caCert]
        proxy = config[M.httpProxy].flatMap { $0.isEmpty ? nil : $0 }
        proxyPort = config[M.httpProxyPort]
        authMethod = config[M.authMethod]
        connections = [:]
        var cons: [String: HTTPConnection] = [:]
        for spec in config[M.httpcon] {
            if let c = HTTPConnection(spec, defaults: self) { cons[c.name] = c }
        }
        connections = cons
    }
}

/// One `httpcon` definition: `name=>scheme://[user:password@]host[:port][/path][;param=value...]`.
/// Parameters as Kamailio's: timeout, maxdatasize, keep_connections, verify_peer, verify_host,
/// httpredirect, useragent, failover, authmethod, httpproxy, httpproxyport.
struct HTTPConnection: Sendable, Equatable {
    var name: String
    var scheme: String
    /// host[:port][/path], without scheme and credentials.
    var base: String
    var username: String?
    var password: String?
    var timeout: Int
    var maxDataSize: Int
    var keepConnections: Bool
    var verifyPeer: Bool
    var verifyHost: Bool
    var followRedirects: Bool
    var userAgent: String
    var failover: String?
    var authMethod: Int
    var proxy: String?
    var proxyPort: Int

    init?(_ spec: String, defaults d: HTTPClientSettings) {
        guard let arrow = Self.find("=>", in: spec) else { return nil }
        name = String(spec[..<arrow.lowerBound].trimmingCharacters(" \t"))
        var rest = String(spec[arrow.upperBound...].trimmingCharacters(" \t"))
        guard !name.isEmpty, let sep = Self.find("://", in: rest) else { return nil }
        scheme = rest[..<sep.lowerBound].lowercased()
        guard scheme == "http" || scheme == "https" else { return nil }
        rest = String(rest[sep.upperBound...])
        var params: [String: String] = [:]
        let parts = rest.split(separator: ";", omittingEmptySubsequences: false)
        rest = String(parts[0])
        for p in parts.dropFirst() {
            let kv = p.split(separator: "=", maxSplits: 1)
            guard let k = kv.first else { continue }
            params[k.lowercased()] = kv.count > 1 ? String(kv[1]) : ""
        }
        // Credentials: user:password@ before the host.
        let hostStart = rest.firstIndex(of: "/") ?? rest.endIndex
        if let at = rest[..<hostStart].lastIndex(of: "@") {
            let cred = rest[..<at]
            if let colon = cred.firstIndex(of: ":") {
                username = String(cred[..<colon])
                password = String(cred[cred.index(after: colon)...])
            } else {
                username = String(cred)
            }
            rest = String(rest[rest.index(after: at)...])
        }
        guard !rest.isEmpty else { return nil }
        base = rest
        func int(_ k: String, _ def: Int) -> Int { params[k].flatMap { Int($0) } ?? def }
        func flag(_ k: String, _ def: Bool) -> Bool {
            guard let v = params[k]?.lowercased() else { return def }
            return !(v == "0" || v == "no" || v == "off" || v == "false")
        }
        timeout = int("timeout", d.timeout)
        maxDataSize = int("maxdatasize", d.maxDataSize)
        keepConnections = flag("keep_connections", d.keepConnections)
        verifyPeer = flag("verify_peer", d.verifyPeer)
        verifyHost = flag("verify_host", d.verifyHost)
        followRedirects = flag("httpredirect", d.followRedirects)
        userAgent = params["useragent"] ?? d.userAgent
        failover = params["failover"].flatMap { $0.isEmpty ? nil : $0 }
        authMethod = int("authmethod", d.authMethod)
        proxy = params["httpproxy"] ?? d.proxy
        proxyPort = int("httpproxyport", d.proxyPort)
    }

    private static func find(_ needle: String, in s: String) -> Range<String.Index>? {
        var i = s.startIndex
        while i < s.endIndex {
            if s[i...].hasPrefix(needle) { return i..<s.index(i, offsetBy: needle.count) }
            i = s.index(after: i)
        }
        return nil
    }

    /// The URL of a query on this connection: the base, then `path` ("/" added when missing).
    func url(_ path: String) -> String {
        guard !path.isEmpty else { return "\(scheme)://\(base)" }
        return "\(scheme)://\(base)\(path.hasPrefix("/") ? "" : "/")\(path)"
    }
}
