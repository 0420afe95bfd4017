import CHiredis
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Connections to one Redis, one per thread (a pthread key): every worker thread sends its commands
/// on its own connection, with no lock on the way. A thread's connection is closed when the thread ends.
public final class RedisPool: Sendable {
    public let config: RedisClientConfig
    private let key: pthread_key_t
    /// Commands that failed (no reply), all threads.
    private let failures = Atomic<Int>(0)
    /// Monotonic ms of the last "Redis unreachable" log line (callers log at most once a second).
    private let lastLog = Atomic<Int>(0)

    public init(_ config: RedisClientConfig) {
        self.config = config
        var k = pthread_key_t()
        pthread_key_create(&k) { p in
            if let p { Unmanaged<RedisConnection>.fromOpaque(p).release() }
        }
        key = k
    }

    /// The calling thread's connection (made on first use; it connects on its first command).
    public var connection: RedisConnection {
        if let p = pthread_getspecific(key) { return Unmanaged<RedisConnection>.fromOpaque(p).takeUnretainedValue() }
        let c = RedisConnection(config)
        pthread_setspecific(key, Unmanaged.passRetained(c).toOpaque())
        return c
    }

    /// One command on the calling thread's connection (`timeoutMs`, `retry`: see `RedisConnection.command`).
    public func command(_ args: [[UInt8]], timeoutMs: Int? = nil, retry: Bool = true) throws(RedisError) -> RedisReply {
        do throws(RedisError) { return try connection.command(args, timeoutMs: timeoutMs, retry: retry) } catch {
            failures.wrappingAdd(1, ordering: .relaxed)
            throw error
        }
    }

    public func command(_ args: String...) throws(RedisError) -> RedisReply {
        try command(args.map { Array($0.utf8) })
    }

    public var failureCount: Int { failures.load(ordering: .relaxed) }

    /// True at most once a second: lets callers rate-limit their "Redis is down" log lines.
    public func shouldLog() -> Bool {
        let now = RedisConnection.monotonicMs()
        let last = lastLog.load(ordering: .relaxed)
        guard now - last >= 1000 else { return false }
        return lastLog.compareExchange(expected: last, desired: now, ordering: .relaxed).exchanged
    }
}

/// A thread that stays subscribed to channels on its own connection and hands every message to
/// `onMessage`; `onState(false)` when the subscription is lost (messages may have been missed),
/// `onState(true)` once it is subscribed again. It reconnects on its own.
public final class RedisSubscriber: Sendable {
    private let stopped = Atomic<Bool>(false)
    private let fd = Atomic<Int32>(-1)
    private let done = Atomic<Bool>(false)

    public init(config: RedisClientConfig, channels: [String], name: String = "redis-sub",
                onState: @escaping @Sendable (Bool, String?) -> Void,
                onMessage: @escaping @Sendable (String, [UInt8]) -> Void) {
        var tid = pthread_t()
        final class Box: Sendable {
            let run: @Sendable () -> Void
            init(_ r: @escaping @Sendable () -> Void) { run = r }
        }
        let box = Box { [self] in
            self.loop(config: config, channels: channels, onState: onState, onMessage: onMessage)
        }
        let arg = Unmanaged.passRetained(box).toOpaque()
        let rc = pthread_create(&tid, nil, { a in
            let b = Unmanaged<Box>.fromOpaque(a!).takeRetainedValue()
            b.run()
            return nil
        }, arg)
        if rc == 0 { pthread_detach(tid) } else { Unmanaged<Box>.fromOpaque(arg).release() }
    }

    private func loop(config: RedisClientConfig, channels: [String], onState: @Sendable (Bool, String?) -> Void,
                      onMessage: @Sendable (String, [UInt8]) -> Void) {
        var cfg = config
        cfg.commandTimeoutMs = max(config.commandTimeoutMs, 1000)
        var up = false
        while !stopped.load(ordering: .acquiring) {
            let conn = RedisConnection(cfg)
            do throws(RedisError) {
                try conn.connect()
                fd.store(conn.socketFD, ordering: .releasing)
                if stopped.load(ordering: .acquiring) { break }
                try conn.subscribe(channels)
                up = true
                onState(true, nil)
                while !stopped.load(ordering: .acquiring) {
                    if let (ch, payload) = try conn.nextMessage() { onMessage(ch, payload) }
                }
            } catch {
                fd.store(-1, ordering: .releasing)
                if !stopped.load(ordering: .acquiring) { onState(false, error.message) }
                up = false
                conn.disconnect()
                if stopped.load(ordering: .acquiring) { break }
                usleep(200_000)
            }
        }
        done.store(true, ordering: .releasing)
    }

    /// Stops the thread (it ends within a moment: its socket is shut down).
    public func stop() {
        stopped.store(true, ordering: .releasing)
        let f = fd.load(ordering: .acquiring)
        if f >= 0 { _ = shutdown(f, Int32(SHUT_RDWR)) }
    }

    public var isStopped: Bool { done.load(ordering: .acquiring) }
}

extension RedisConnection {
    /// The socket of the connection (-1 when not connected).
    var socketFD: Int32 { starling_redis_fd(ctxPointer) }
}
