#if canImport(Glibc)
import Glibc
#endif
import CAres
import CStarlingSystem
import Synchronization

/// c-ares must be initialised once per process before any channel exists.
private let aresLibraryStatus: Int32 = ares_library_init(ARES_LIB_INIT_ALL)

/// Resolves host names with c-ares: A/AAAA, SRV and NAPTR, synchronously with a timeout, so a worker
/// thread can call it (as Kamailio's workers block on DNS). Answers are cached until their TTL
/// expires. Thread-safe: each call borrows a c-ares channel from a small pool.
public final class DNSResolver: Sendable {
    /// Resolver settings. All durations are positive.
    public struct Configuration: Sendable, Equatable {
        /// DNS servers to ask; empty uses the system resolver (/etc/resolv.conf).
        public var servers: [SocketAddress]
        /// The most one call may take, retries included. Default 2 s.
        public var timeout: Duration
        /// Timeout of the first attempt per server (c-ares doubles it on retries). Default 500 ms.
        public var attemptTimeout: Duration
        /// Attempts per server. Default 2.
        public var tries: Int
        /// Consult /etc/hosts before DNS for A/AAAA. Default true.
        public var useHostsFile: Bool
        /// Upper bound for cached TTLs. Default 1 hour.
        public var maxTTL: Duration
        /// How long a "does not exist" / "no records" answer is cached. Default 10 s; .zero disables.
        public var negativeTTL: Duration
        /// Cache entries kept at most (the cache is flushed when full). Default 4096; 0 disables caching.
        public var maxCacheEntries: Int

        public init(servers: [SocketAddress] = [], timeout: Duration = .seconds(2), attemptTimeout: Duration = .milliseconds(500),
                    tries: Int = 2, useHostsFile: Bool = true, maxTTL: Duration = .seconds(3600),
                    negativeTTL: Duration = .seconds(10), maxCacheEntries: Int = 4096) {
            self.servers = servers
            self.timeout = timeout
            self.attemptTimeout = attemptTimeout
            self.tries = tries
            self.useHostsFile = useHostsFile
            self.maxTTL = maxTTL
            self.negativeTTL = negativeTTL
            self.maxCacheEntries = maxCacheEntries
        }
    }

    public let configuration: Configuration
    private let pool = Mutex<[Channel]>([])
    private let cache = Mutex<[CacheKey: CacheEntry]>([:])

    /// Creates a resolver. Throws if c-ares cannot initialise (bad server list, no memory).
    public init(configuration: Configuration = Configuration()) throws(DNSError) {
        self.configuration = configuration
        // Create one channel now so configuration errors surface here.
        let ch = try makeChannel()
        pool.withLock { $0.append(ch) }
    }

    deinit {
        pool.withLock { channels in
            for ch in channels { ares_destroy(ch.raw) }
            channels.removeAll()
        }
    }

    /// Drops all cached answers.
    public func clearCache() { cache.withLock { $0.removeAll() } }

    // MARK: Public lookups

    /// Resolves `host` to socket addresses.
    ///
    /// - A numeric IPv4/IPv6 address (brackets allowed) returns itself, without DNS.
    /// - With a `port`, looks up A and AAAA (IPv4 first) and gives each that port.
    /// - Without a port (RFC 3263 §4.2), looks up SRV `_sip._udp.host` (`_sips._tcp` for tls,
    ///   `_sip._tcp` for tcp) and resolves the targets in priority order; if there is no SRV
    ///   record (or the SRV question fails other than by a timeout), falls back to A/AAAA with port 5060
    ///   (5061 for tls and wss).
    public func resolve(host: String, port: Int?, proto: SIPTransportProtocol = .udp) throws(DNSError) -> [SocketAddress] {
        let defaultPort = (proto == .tls || proto == .wss) ? 5061 : 5060
        if let numeric = SocketAddress(ip: host, port: port ?? defaultPort) { return [numeric] }
        if let port {
            guard (0...65535).contains(port) else { throw DNSError(kind: .other, name: host, message: "port \(port) out of range") }
            return try addresses(of: host).map { withPort($0, port) }
        }
        let srvName: String
        switch proto {
        case .tls, .wss: srvName = "_sips._tcp.\(host)"
        case .tcp, .ws: srvName = "_sip._tcp.\(host)"
        case .sctp: srvName = "_sip._sctp.\(host)"
        case .udp: srvName = "_sip._udp.\(host)"
        }
        let records: [SRVRecord]
        do {
            records = try querySRV(srvName)
        } catch {
            // No SRV record, or a server that refuses the SRV question (as Kamailio, any failure but
            // a timeout falls back to A/AAAA: a timeout would only repeat itself).
            guard error.kind != .timeout else { throw error }
            return try addresses(of: host).map { withPort($0, defaultPort) }
        }
        var out: [SocketAddress] = []
        var lastError: DNSError?
        for r in DNSResolver.ordered(records) where r.target != "" {
            do {
                out += try addresses(of: r.target).map { withPort($0, Int(r.port)) }
            } catch {
                lastError = error
            }
        }
        if out.isEmpty, let lastError { throw lastError }
        return out
    }

    /// SRV records of `name` (e.g. "_sip._udp.example.com"), as received.
    public func querySRV(_ name: String) throws(DNSError) -> [SRVRecord] {
        let key = CacheKey(type: 33, name: name.lowercased())
        if let hit = try cached(key, name: name), case .srv(let r) = hit { return r }
        let answer = try query(name, type: 33)
        var head: UnsafeMutablePointer<ares_srv_reply>? = nil
        let status = answer.bytes.withUnsafeBufferPointer { ares_parse_srv_reply($0.baseAddress, Int32($0.count), &head) }
        guard status == ARES_SUCCESS else { throw error(status, name) }
        defer { ares_free_data(head) }
        var records: [SRVRecord] = []
        var p = head
        while let r = p {
            records.append(SRVRecord(priority: r.pointee.priority, weight: r.pointee.weight, port: r.pointee.port,
                                     target: r.pointee.host.map { String(cString: $0) } ?? ""))
            p = r.pointee.next
        }
        store(key, .srv(records), ttl: answer.ttl)
        return records
    }

    /// NAPTR records of `name` (e.g. "4.3.2.1.e164.arpa", "example.com"), sorted by order, then
    /// preference.
    public func queryNAPTR(_ name: String) throws(DNSError) -> [NAPTRRecord] {
        let key = CacheKey(type: 35, name: name.lowercased())
        if let hit = try cached(key, name: name), case .naptr(let r) = hit { return r }
        let answer = try query(name, type: 35)
        var head: UnsafeMutablePointer<ares_naptr_reply>? = nil
        let status = answer.bytes.withUnsafeBufferPointer { ares_parse_naptr_reply($0.baseAddress, Int32($0.count), &head) }
        guard status == ARES_SUCCESS else { throw error(status, name) }
        defer { ares_free_data(head) }
        func text(_ p: UnsafeMutablePointer<UInt8>?) -> String {
            guard let p else { return "" }
            return String(cString: UnsafePointer(p))
        }
        var records: [NAPTRRecord] = []
        var p = head
        while let r = p {
            var replacement = r.pointee.replacement.map { String(cString: $0) } ?? ""
            if replacement == "." { replacement = "" }
            records.append(NAPTRRecord(order: r.pointee.order, preference: r.pointee.preference, flags: text(r.pointee.flags),
                                       service: text(r.pointee.service), regexp: text(r.pointee.regexp), replacement: replacement))
            p = r.pointee.next
        }
        records.sort { ($0.order, $0.preference) < ($1.order, $1.preference) }
        store(key, .naptr(records), ttl: answer.ttl)
        return records
    }

    /// A and AAAA addresses of `host` (port 0), IPv4 first. Cached.
    public func addresses(of host: String) throws(DNSError) -> [SocketAddress] {
        if let numeric = SocketAddress(ip: host, port: 0) { return [numeric] }
        let key = CacheKey(type: 1, name: host.lowercased())
        if let hit = try cached(key, name: host), case .addresses(let a) = hit { return a }
        let result = try getaddrinfo(host)
        store(key, .addresses(result.addresses), ttl: result.ttl)
        return result.addresses
    }

    /// SRV records in the order to try them: by priority, then higher weight first (a deterministic
    /// simplification of RFC 2782's weighted random choice).
    public static func ordered(_ records: [SRVRecord]) -> [SRVRecord] {
        records.sorted { ($0.priority, UInt16.max - $0.weight, $0.target) < ($1.priority, UInt16.max - $1.weight, $1.target) }
    }

    private func withPort(_ a: SocketAddress, _ port: Int) -> SocketAddress {
        var a = a
        a.port = UInt16(port)
        return a
    }
}

// MARK: - Cache

extension DNSResolver {
    struct CacheKey: Hashable {
        var type: UInt16
        var name: String
    }

    enum CachedAnswer {
        case addresses([SocketAddress])
        case srv([SRVRecord])
        case naptr([NAPTRRecord])
        case failure(DNSError.Kind, String)
    }

    struct CacheEntry {
        var answer: CachedAnswer
        var expires: ContinuousClock.Instant
    }

    /// A live cache entry; cached negative answers are thrown.
    private func cached(_ key: CacheKey, name: String) throws(DNSError) -> CachedAnswer? {
        guard configuration.maxCacheEntries > 0 else { return nil }
        let now = ContinuousClock.now
        let hit: CachedAnswer? = cache.withLock { c in
            guard let e = c[key] else { return nil }
            if e.expires <= now { c[key] = nil; return nil }
            return e.answer
        }
        if case .failure(let kind, let message) = hit { throw DNSError(kind: kind, name: name, message: message) }
        return hit
    }

    private func store(_ key: CacheKey, _ answer: CachedAnswer, ttl: Int) {
        guard configuration.maxCacheEntries > 0, ttl > 0 else { return }
        let life = min(Duration.seconds(ttl), configuration.maxTTL)
        insert(key, answer, life: life)
    }

    private func storeFailure(_ key: CacheKey, _ e: DNSError) {
        guard configuration.maxCacheEntries > 0, e.kind == .notFound || e.kind == .noData, configuration.negativeTTL > .zero else { return }
        insert(key, .failure(e.kind, e.message), life: configuration.negativeTTL)
    }

    private func insert(_ key: CacheKey, _ answer: CachedAnswer, life: Duration) {
        let now = ContinuousClock.now
        let limit = configuration.maxCacheEntries
        cache.withLock { c in
            if c.count >= limit {
                c = c.filter { $0.value.expires > now }
                if c.count >= limit { c.removeAll(keepingCapacity: true) }
            }
            c[key] = CacheEntry(answer: answer, expires: now.advanced(by: life))
        }
    }
}

// MARK: - c-ares plumbing

extension DNSResolver {
    /// A c-ares channel. c-ares 1.18 channels are not thread-safe; the pool hands each one to a
    /// single thread at a time, which is what makes moving it between threads sound.
    struct Channel: @unchecked Sendable {
        let raw: ares_channel
    }

    /// What a c-ares callback delivers; lives on the calling thread's stack frame.
    final class Outcome {
        var done = false
        var status: Int32 = ARES_SUCCESS
        var addresses: [SocketAddress] = []
        var ttl = 0
        var bytes: [UInt8] = []
    }

    private func makeChannel() throws(DNSError) -> Channel {
        guard aresLibraryStatus == ARES_SUCCESS else { throw error(aresLibraryStatus, "(c-ares init)") }
        var options = ares_options()
        let attemptMs = max(1, Int32(clamping: configuration.attemptTimeout.components.seconds * 1000
            + configuration.attemptTimeout.components.attoseconds / 1_000_000_000_000_000))
        options.timeout = attemptMs
        options.tries = Int32(max(1, configuration.tries))
        var mask = ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES
        var raw: ares_channel? = nil
        let status: Int32
        if configuration.useHostsFile {
            status = ares_init_options(&raw, &options, mask)
        } else {
            mask |= ARES_OPT_LOOKUPS
            status = "b".withCString { lookups in
                options.lookups = UnsafeMutablePointer(mutating: lookups)
                return ares_init_options(&raw, &options, mask)
            }
        }
        guard status == ARES_SUCCESS, let raw else { throw error(status, "(c-ares init)") }
        if !configuration.servers.isEmpty {
            let csv = configuration.servers.map { "\($0.uriHost):\($0.port)" }.joined(separator: ",")
            let s = ares_set_servers_ports_csv(raw, csv)
            if s != ARES_SUCCESS {
                ares_destroy(raw)
                throw error(s, csv)
            }
        }
        return Channel(raw: raw)
    }

    private func withChannel<R>(_ body: (ares_channel) throws(DNSError) -> R) throws(DNSError) -> R {
        let taken: Channel? = pool.withLock { $0.popLast() }
        let ch: Channel
        if let taken { ch = taken } else { ch = try makeChannel() }
        defer { pool.withLock { $0.append(ch) } }
        return try body(ch.raw)
    }

    /// Runs c-ares' event loop on `channel` until `outcome.done` or the configured timeout.
    private func wait(_ channel: ares_channel, _ outcome: Outcome) {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: configuration.timeout)
        var socks = [ares_socket_t](repeating: ARES_SOCKET_BAD, count: Int(ARES_GETSOCK_MAXNUM))
        var fds: [pollfd] = []
        while !outcome.done {
            let left = clock.now.duration(to: deadline)
            if left <= .zero {
                ares_cancel(channel)  // calls the callback with ARES_ECANCELLED
                outcome.done = true
                outcome.status = ARES_ETIMEOUT
                outcome.addresses = []
                return
            }
            let bits = socks.withUnsafeMutableBufferPointer { ares_getsock(channel, $0.baseAddress, ARES_GETSOCK_MAXNUM) }
            fds.removeAll(keepingCapacity: true)
            for i in 0..<Int(ARES_GETSOCK_MAXNUM) {
                let readable = bits & (1 << i) != 0
                let writable = bits & (1 << (i + Int(ARES_GETSOCK_MAXNUM))) != 0
                if readable || writable {
                    fds.append(pollfd(fd: socks[i], events: Int16((readable ? POLLIN : 0) | (writable ? POLLOUT : 0)), revents: 0))
                }
            }
            let (s, atto) = left.components
            var maxtv = timeval(tv_sec: Int(s), tv_usec: Int(atto / 1_000_000_000_000))
            var tv = timeval()
            let tvp = ares_timeout(channel, &maxtv, &tv)
            let ms = tvp.map { Int32(clamping: $0.pointee.tv_sec * 1000 + ($0.pointee.tv_usec + 999) / 1000) } ?? 10
            let n = poll(&fds, nfds_t(fds.count), ms)
            if n <= 0 {
                ares_process_fd(channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD)  // timeouts and retries
            } else {
                for p in fds where p.revents != 0 {
                    let r = p.revents & Int16(POLLIN | POLLERR | POLLHUP) != 0 ? p.fd : ARES_SOCKET_BAD
                    let w = p.revents & Int16(POLLOUT) != 0 ? p.fd : ARES_SOCKET_BAD
                    ares_process_fd(channel, r, w)
                }
            }
        }
    }

    private func getaddrinfo(_ host: String) throws(DNSError) -> (addresses: [SocketAddress], ttl: Int) {
        let key = CacheKey(type: 1, name: host.lowercased())
        let outcome = Outcome()
        try withChannel { (ch: ares_channel) throws(DNSError) in
            var hints = ares_addrinfo_hints()
            hints.ai_family = AF_UNSPEC
            hints.ai_flags = ARES_AI_NOSORT
            let arg = Unmanaged.passUnretained(outcome).toOpaque()
            ares_getaddrinfo(ch, host, nil, &hints, { arg, status, _, result in
                let o = Unmanaged<Outcome>.fromOpaque(arg!).takeUnretainedValue()
                o.done = true
                o.status = status
                guard let result else { return }
                defer { ares_freeaddrinfo(result) }
                var v4: [SocketAddress] = []
                var v6: [SocketAddress] = []
                var ttl = Int.max
                var node = result.pointee.nodes
                while let n = node {
                    if let sa = n.pointee.ai_addr, let a = SocketAddress(sockaddr: UnsafeRawPointer(sa)) {
                        if a.family == .inet { if !v4.contains(a) { v4.append(a) } } else if !v6.contains(a) { v6.append(a) }
                        ttl = min(ttl, Int(max(0, n.pointee.ai_ttl)))
                    }
                    node = n.pointee.ai_next
                }
                o.addresses = v4 + v6
                o.ttl = ttl == Int.max ? 0 : ttl
            }, arg)
            withExtendedLifetime(outcome) { wait(ch, outcome) }
        }
        if outcome.status != ARES_SUCCESS || outcome.addresses.isEmpty {
            let e = error(outcome.status == ARES_SUCCESS ? ARES_ENODATA : outcome.status, host)
            storeFailure(key, e)
            throw e
        }
        return (outcome.addresses, outcome.ttl)
    }

    /// Sends one query (class IN) and returns the raw reply and its smallest answer TTL.
    private func query(_ name: String, type: Int32) throws(DNSError) -> (bytes: [UInt8], ttl: Int) {
        let outcome = Outcome()
        try withChannel { (ch: ares_channel) throws(DNSError) in
            let arg = Unmanaged.passUnretained(outcome).toOpaque()
            ares_query(ch, name, 1, type, { arg, status, _, abuf, alen in
                let o = Unmanaged<Outcome>.fromOpaque(arg!).takeUnretainedValue()
                o.done = true
                o.status = status
                if status == ARES_SUCCESS, let abuf, alen > 0 {
                    o.bytes = Array(UnsafeBufferPointer(start: abuf, count: Int(alen)))
                    o.ttl = max(0, st_dns_min_answer_ttl(abuf, alen))
                }
            }, arg)
            withExtendedLifetime(outcome) { wait(ch, outcome) }
        }
        guard outcome.status == ARES_SUCCESS else {
            let e = error(outcome.status, name)
            storeFailure(CacheKey(type: UInt16(type), name: name.lowercased()), e)
            throw e
        }
        return (outcome.bytes, outcome.ttl)
    }

    private func error(_ status: Int32, _ name: String) -> DNSError {
        let kind: DNSError.Kind
        switch status {
        case ARES_ENOTFOUND: kind = .notFound
        case ARES_ENODATA: kind = .noData
        case ARES_ETIMEOUT, ARES_ECANCELLED: kind = .timeout
        case ARES_ESERVFAIL, ARES_EREFUSED, ARES_ECONNREFUSED: kind = .serverFailure
        default: kind = .other
        }
        let message = status == ARES_ECANCELLED ? "Timeout while contacting DNS servers" : String(cString: ares_strerror(status))
        return DNSError(kind: kind, name: name, message: message)
    }
}
