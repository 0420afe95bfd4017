/// Where a Redis master is: one server, or the master a group of Sentinels names.
public enum RedisTarget: Sendable, Equatable {
    case server(host: String, port: Int)
    case unix(path: String)
    /// Sentinels (host, port) asked in turn for the address of `master` (`SENTINEL get-master-addr-by-name`).
    case sentinel(sentinels: [HostPort], master: String)

    public struct HostPort: Sendable, Equatable, CustomStringConvertible {
        public var host: String
        public var port: Int
        public init(_ host: String, _ port: Int) {
            self.host = host
            self.port = port
        }
        public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
    }
}

/// Everything a connection needs: the target, database number, password, timeouts and limits.
public struct RedisClientConfig: Sendable, Equatable {
    public var target: RedisTarget
    public var db: Int
    public var password: String?
    /// Connect timeout, milliseconds.
    public var connectTimeoutMs: Int
    /// Timeout of one command (send and reply), milliseconds.
    public var commandTimeoutMs: Int
    /// Replies larger than this (bytes of strings plus 16 per element) are refused with an error.
    public var maxReplyBytes: Int
    /// After a failed connect, no new attempt before this many milliseconds (commands fail at once).
    public var retryIntervalMs: Int
    /// `FLUSHALL` after every (re)connect (ndb_redis' `flush_on_reconnect`).
    public var flushOnConnect = false

    public init(target: RedisTarget, db: Int = 0, password: String? = nil, connectTimeoutMs: Int = 1000,
                commandTimeoutMs: Int = 1000, maxReplyBytes: Int = 16 << 20, retryIntervalMs: Int = 500) {
        self.target = target
        self.db = db
        self.password = password
        self.connectTimeoutMs = connectTimeoutMs
        self.commandTimeoutMs = commandTimeoutMs
        self.maxReplyBytes = maxReplyBytes
        self.retryIntervalMs = retryIntervalMs
    }

    /// For logs: `127.0.0.1:6379/0`, `sentinel mymaster@127.0.0.1:26379,.../0`.
    public var label: String {
        switch target {
        case .server(let h, let p): return "\(RedisTarget.HostPort(h, p))/\(db)"
        case .unix(let path): return "unix:\(path)/\(db)"
        case .sentinel(let s, let m): return "sentinel \(m)@\(s.map(\.description).joined(separator: ","))/\(db)"
        }
    }

    /// Parses `redis://[:PASSWORD@]HOST[:PORT][/DB]` and
    /// `redis+sentinel://[:PASSWORD@]S1[:PORT],S2[:PORT]/MASTERNAME[/DB]` (sentinel port 26379 by default).
    /// Nil when the text is not one of these forms.
    public static func parseURL(_ url: String) -> RedisClientConfig? {
        let sentinel: Bool
        var rest: Substring
        if url.hasPrefix("redis://") {
            sentinel = false
            rest = url.dropFirst("redis://".count)
        } else if url.hasPrefix("redis+sentinel://") {
            sentinel = true
            rest = url.dropFirst("redis+sentinel://".count)
        } else {
            return nil
        }
        var password: String? = nil
        if let at = rest.lastIndex(of: "@") {
            var cred = rest[..<at]
            if cred.hasPrefix(":") { cred = cred.dropFirst() }
            password = String(cred)
            rest = rest[rest.index(after: at)...]
        }
        let parts = rest.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        guard let hosts = parts.first, !hosts.isEmpty else { return nil }
        func hostPort(_ s: Substring, _ defaultPort: Int) -> RedisTarget.HostPort? {
            var host = s, port = defaultPort
            if s.hasPrefix("[") {
                guard let close = s.firstIndex(of: "]") else { return nil }
                host = s[s.index(after: s.startIndex)..<close]
                let after = s[s.index(after: close)...]
                if !after.isEmpty {
                    guard after.hasPrefix(":"), let p = Int(after.dropFirst()) else { return nil }
                    port = p
                }
            } else if let colon = s.lastIndex(of: ":") {
                host = s[..<colon]
                guard let p = Int(s[s.index(after: colon)...]) else { return nil }
                port = p
            }
            guard !host.isEmpty, (1...65535).contains(port),
                  host.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "." || $0 == "-" || $0 == ":" || $0 == "_" })
            else { return nil }
            return .init(String(host), port)
        }
        var db = 0
        func parseDB(_ s: String?) -> Bool {
            guard let s, !s.isEmpty else { return true }
            guard let n = Int(s), (0...65535).contains(n) else { return false }
            db = n
            return true
        }
        if sentinel {
            var list: [RedisTarget.HostPort] = []
            for h in hosts.split(separator: ",", omittingEmptySubsequences: false) {
                guard let hp = hostPort(h, 26379) else { return nil }
                list.append(hp)
            }
            guard parts.count >= 2, parts.count <= 3, !parts[1].isEmpty, parseDB(parts.count == 3 ? parts[2] : nil) else { return nil }
            return RedisClientConfig(target: .sentinel(sentinels: list, master: parts[1]), db: db, password: password)
        }
        guard !hosts.contains(","), let hp = hostPort(Substring(hosts), 6379), parts.count <= 2,
              parseDB(parts.count == 2 ? parts[1] : nil) else { return nil }
        return RedisClientConfig(target: .server(host: hp.host, port: hp.port), db: db, password: password)
    }
}
