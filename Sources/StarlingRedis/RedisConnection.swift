import CHiredis
#if canImport(Glibc)
import Glibc
#endif

/// One blocking connection to a Redis master (a hiredis context). Not thread-safe: a connection
/// belongs to one thread (`RedisPool` hands each thread its own). It connects on first use,
/// reconnects after an I/O error (a command that failed on a broken connection is sent once more on
/// a new one, as Kamailio's ndb_redis does), and with Sentinel asks the sentinels for the master
/// again at each reconnect, so it follows a failover (+switch-master) on its own.
public final class RedisConnection {
    public let config: RedisClientConfig
    private var ctx: UnsafeMutablePointer<redisContext>?
    /// Monotonic ms of the last failed connect (no new attempt before `retryIntervalMs`).
    private var lastFailure: Int = .min / 2
    /// The master address in use (for logs and tests).
    public private(set) var connectedTo: RedisTarget.HostPort?
    /// Connects made (the first and every reconnect).
    public private(set) var connects = 0

    public init(_ config: RedisClientConfig) {
        self.config = config
    }

    deinit { if let ctx { redisFree(ctx) } }

    public var isConnected: Bool { ctx != nil }

    /// Drops the connection; the next command connects again.
    public func disconnect() {
        if let ctx { redisFree(ctx) }
        ctx = nil
        connectedTo = nil
    }

    public static func monotonicMs() -> Int {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Int(ts.tv_sec) * 1000 + Int(ts.tv_nsec) / 1_000_000
    }

    static func timeval(ms: Int) -> Glibc.timeval {
        Glibc.timeval(tv_sec: ms / 1000, tv_usec: (ms % 1000) * 1000)
    }

    /// Opens a raw context to host:port (no AUTH/SELECT) or throws.
    static func open(_ host: String, _ port: Int, timeoutMs: Int) throws(RedisError) -> UnsafeMutablePointer<redisContext> {
        guard let c = redisConnectWithTimeout(host, Int32(port), timeval(ms: timeoutMs)) else {
            throw RedisError(.connect, "cannot allocate a Redis context")
        }
        if c.pointee.err != 0 {
            let msg = String(cString: starling_redis_errstr(c))
            redisFree(c)
            throw RedisError(.connect, "connect to \(RedisTarget.HostPort(host, port)): \(msg)")
        }
        _ = redisSetTimeout(c, timeval(ms: timeoutMs))
        _ = redisEnableKeepAlive(c)
        return c
    }

    /// The master's address from the sentinels (the first that answers).
    public static func resolveMaster(_ sentinels: [RedisTarget.HostPort], _ master: String, timeoutMs: Int) throws(RedisError) -> RedisTarget.HostPort {
        var errors: [String] = []
        for s in sentinels {
            let c: UnsafeMutablePointer<redisContext>
            do throws(RedisError) { c = try open(s.host, s.port, timeoutMs: timeoutMs) } catch {
                errors.append(error.message)
                continue
            }
            defer { redisFree(c) }
            let reply: RedisReply
            do throws(RedisError) { reply = try run(c, [Array("SENTINEL".utf8), Array("get-master-addr-by-name".utf8), Array(master.utf8)], maxBytes: 1 << 16) }
            catch { errors.append("sentinel \(s): \(error.message)"); continue }
            let e = reply.elements
            if e.count == 2, let host = e[0].text, let port = e[1].int { return .init(host, port) }
            errors.append("sentinel \(s): no master named '\(master)' (\(reply))")
        }
        throw RedisError(.connect, errors.joined(separator: "; "))
    }

    /// Connects (resolving the master through the sentinels), authenticates, selects the database.
    public func connect() throws(RedisError) {
        disconnect()
        let hp: RedisTarget.HostPort
        let c: UnsafeMutablePointer<redisContext>
        switch config.target {
        case .server(let h, let p):
            hp = .init(h, p)
            c = try Self.open(h, p, timeoutMs: config.connectTimeoutMs)
        case .unix(let path):
            hp = .init(path, 0)
            guard let u = redisConnectUnixWithTimeout(path, Self.timeval(ms: config.connectTimeoutMs)) else {
                throw RedisError(.connect, "cannot allocate a Redis context")
            }
            if u.pointee.err != 0 {
                let msg = String(cString: starling_redis_errstr(u))
                redisFree(u)
                throw RedisError(.connect, "connect to unix:\(path): \(msg)")
            }
            c = u
        case .sentinel(let sentinels, let master):
            hp = try Self.resolveMaster(sentinels, master, timeoutMs: config.connectTimeoutMs)
            c = try Self.open(hp.host, hp.port, timeoutMs: config.connectTimeoutMs)
        }
        _ = redisSetTimeout(c, Self.timeval(ms: config.commandTimeoutMs))
        do throws(RedisError) {
            if let pw = config.password, !pw.isEmpty {
                let r = try Self.run(c, [Array("AUTH".utf8), Array(pw.utf8)], maxBytes: 4096)
                if case .error(let e) = r { throw RedisError(.connect, "AUTH: \(e)") }
            }
            // PING tells a Redis from another server that accepted the connection.
            let ping = try Self.run(c, [Array("PING".utf8)], maxBytes: 4096)
            guard ping == .status("PONG") else {
                throw RedisError(.connect, "\(hp) is not a Redis server (PING answered \(ping))")
            }
            if config.db != 0 {
                let r = try Self.run(c, [Array("SELECT".utf8), Array(String(config.db).utf8)], maxBytes: 4096)
                if case .error(let e) = r { throw RedisError(.connect, "SELECT \(config.db): \(e)") }
            }
            if config.flushOnConnect {
                let r = try Self.run(c, [Array("FLUSHALL".utf8)], maxBytes: 4096)
                if case .error(let e) = r { throw RedisError(.connect, "FLUSHALL: \(e)") }
            }
            if case .sentinel(_, let master) = config.target {
                // A sentinel may name a master that is still being demoted: insist on the role.
                let role = try Self.run(c, [Array("ROLE".utf8)], maxBytes: 1 << 16)
                if role.elements.first?.text != "master" {
                    throw RedisError(.connect, "\(hp), named master of '\(master)', is not a master yet")
                }
            }
        } catch {
            redisFree(c)
            throw error
        }
        ctx = c
        connectedTo = hp
        connects += 1
    }

    /// Sends one command (each element one argument, binary safe) and returns its reply. An error reply
    /// is a reply (`.error`), not a thrown error. Throws when Redis cannot be reached, the connection
    /// broke twice, or the reply is larger than `maxReplyBytes`.
    /// `timeoutMs` replaces the command timeout for this command (a blocking command such as `WAIT n ms`
    /// needs its own wait plus the usual margin). With `retry` false a command whose connection broke
    /// is not sent again on a new one: `WAIT` would then count the replicas of a connection that wrote
    /// nothing and acknowledge at once.
    public func command(_ args: [[UInt8]], timeoutMs: Int? = nil, retry: Bool = true) throws(RedisError) -> RedisReply {
        var retried = !retry
        while true {
            if ctx == nil {
                let now = Self.monotonicMs()
                if now - lastFailure < config.retryIntervalMs {
                    throw RedisError(.connect, "Redis \(config.label) unreachable (retrying in \(config.retryIntervalMs - (now - lastFailure)) ms)")
                }
                do throws(RedisError) { try connect() } catch {
                    lastFailure = Self.monotonicMs()
                    throw error
                }
                retried = true  // a fresh connection gets no second chance
            }
            do throws(RedisError) {
                if let timeoutMs { _ = redisSetTimeout(ctx!, Self.timeval(ms: timeoutMs)) }
                defer { if timeoutMs != nil, let c = ctx { _ = redisSetTimeout(c, Self.timeval(ms: config.commandTimeoutMs)) } }
                let r = try Self.run(ctx!, args, maxBytes: config.maxReplyBytes)
                if case .error(let e) = r, e.hasPrefix("READONLY") || e.hasPrefix("MASTERDOWN") || e.hasPrefix("LOADING") {
                    // A demoted master (failover) or a server still loading: find the master again next time.
                    disconnect()
                }
                return r
            } catch {
                if error.kind == .replyTooLarge { return try failTooLarge(error) }
                disconnect()
                if retried { throw error }
                retried = true
            }
        }
    }

    private func failTooLarge(_ e: RedisError) throws(RedisError) -> RedisReply { throw e }

    public func command(_ args: String...) throws(RedisError) -> RedisReply {
        try command(args.map { Array($0.utf8) })
    }

    public func command(strings args: [String]) throws(RedisError) -> RedisReply {
        try command(args.map { Array($0.utf8) })
    }

    /// One command on a context; throws on I/O errors (the context is then unusable).
    static func run(_ c: UnsafeMutablePointer<redisContext>, _ args: [[UInt8]], maxBytes: Int) throws(RedisError) -> RedisReply {
        var flat: [UInt8] = []
        flat.reserveCapacity(args.reduce(0) { $0 + $1.count + 1 })
        var offsets: [Int] = [], lengths: [Int] = []
        for a in args {
            offsets.append(flat.count)
            lengths.append(a.count)
            flat.append(contentsOf: a)
            flat.append(0)
        }
        let raw: UnsafeMutableRawPointer? = flat.withUnsafeBufferPointer { buf in
            buf.baseAddress!.withMemoryRebound(to: CChar.self, capacity: buf.count) { base in
                var argv: [UnsafePointer<CChar>?] = offsets.map { UnsafePointer(base + $0) }
                return lengths.withUnsafeBufferPointer { lens in
                    argv.withUnsafeMutableBufferPointer { av in
                        redisCommandArgv(c, Int32(args.count), av.baseAddress, lens.baseAddress)
                    }
                }
            }
        }
        guard let raw else {
            throw RedisError(.io, "Redis I/O error: \(String(cString: starling_redis_errstr(c)))")
        }
        defer { freeReplyObject(raw) }
        var budget = maxBytes
        guard let r = convert(raw.assumingMemoryBound(to: redisReply.self), &budget) else {
            throw RedisError(.replyTooLarge, "Redis reply larger than \(maxBytes) bytes")
        }
        return r
    }

    /// Reads the next reply without sending anything (pub/sub). Throws on I/O errors.
    static func read(_ c: UnsafeMutablePointer<redisContext>, maxBytes: Int) throws(RedisError) -> RedisReply {
        var raw: UnsafeMutableRawPointer? = nil
        guard redisGetReply(c, &raw) == REDIS_OK, let raw else {
            throw RedisError(.io, "Redis I/O error: \(String(cString: starling_redis_errstr(c)))")
        }
        defer { freeReplyObject(raw) }
        var budget = maxBytes
        guard let r = convert(raw.assumingMemoryBound(to: redisReply.self), &budget) else {
            throw RedisError(.replyTooLarge, "Redis reply larger than \(maxBytes) bytes")
        }
        return r
    }

    /// Copies hiredis' reply tree; nil when it exceeds `budget` bytes (strings, plus 16 per element).
    static func convert(_ r: UnsafeMutablePointer<redisReply>, _ budget: inout Int) -> RedisReply? {
        let p = r.pointee
        budget -= 16
        if budget < 0 { return nil }
        func text() -> String {
            guard let s = p.str else { return "" }
            return String(decoding: UnsafeRawBufferPointer(start: s, count: p.len), as: UTF8.self)
        }
        switch p.type {
        case REDIS_REPLY_STRING:
            budget -= p.len
            if budget < 0 { return nil }
            guard let s = p.str else { return .string([]) }
            return .string(Array(UnsafeRawBufferPointer(start: s, count: p.len)))
        case REDIS_REPLY_INTEGER: return .integer(Int64(p.integer))
        case REDIS_REPLY_NIL: return .null
        case REDIS_REPLY_STATUS:
            budget -= p.len
            return budget < 0 ? nil : .status(text())
        case REDIS_REPLY_ERROR:
            budget -= p.len
            return budget < 0 ? nil : .error(text())
        case REDIS_REPLY_ARRAY:
            var out: [RedisReply] = []
            out.reserveCapacity(min(p.elements, 1024))
            for i in 0..<p.elements {
                guard let e = p.element[i] else { out.append(.null); continue }
                guard let v = convert(e, &budget) else { return nil }
                out.append(v)
            }
            return .array(out)
        default:
            return .null
        }
    }

    // MARK: pub/sub (a dedicated connection)

    /// Subscribes this connection to `channels`; afterwards only `nextMessage()` may be used.
    func subscribe(_ channels: [String]) throws(RedisError) {
        if ctx == nil { try connect() }
        _ = redisSetTimeout(ctx!, Self.timeval(ms: 0))
        for ch in channels {
            let r = try Self.run(ctx!, [Array("SUBSCRIBE".utf8), Array(ch.utf8)], maxBytes: 1 << 16)
            guard r.elements.first?.text == "subscribe" else { throw RedisError(.badReply, "SUBSCRIBE \(ch): \(r)") }
        }
    }

    /// Blocks until the next pub/sub message: (channel, payload). Throws when the connection breaks.
    func nextMessage() throws(RedisError) -> (String, [UInt8])? {
        guard let c = ctx else { throw RedisError(.io, "not connected") }
        let r = try Self.read(c, maxBytes: config.maxReplyBytes)
        let e = r.elements
        guard e.count == 3, e[0].text == "message", let ch = e[1].text, case .string(let payload) = e[2] else { return nil }
        return (ch, payload)
    }

    var ctxPointer: UnsafeMutablePointer<redisContext>? { ctx }
}
