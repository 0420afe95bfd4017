import StarlingKEMI
import StarlingRedis
import Logging

/// One `server` definition of ndb_redis: `name=srv1;addr=127.0.0.1;port=6379;db=0` (also `unix=PATH`,
/// `pass=PASSWORD`, and Sentinel: `sentinel_group=NAME;sentinel=HOST:PORT` repeated).
struct NdbRedisServerSpec: Sendable, Equatable {
    var name: String
    var config: RedisClientConfig

    /// Parses a definition; nil with the reason when it is not valid.
    static func parse(_ text: String, connectTimeoutMs: Int = 1000, commandTimeoutMs: Int = 1000) -> (NdbRedisServerSpec?, String?) {
        var name: String?, addr = "127.0.0.1", port = 6379, db = 0, pass: String?, unix: String?
        var group: String?, sentinels: [RedisTarget.HostPort] = []
        var body = Substring(text)
        if body.hasSuffix(";") { body = body.dropLast() }
        for part in body.split(separator: ";") {
            let kv = part.split(separator: "=", maxSplits: 1).map { String($0.trimmingCharacters(" \t")) }
            guard kv.count == 2, !kv[0].isEmpty else { return (nil, "bad attribute '\(part)' (expected name=value)") }
            switch kv[0] {
            case "name": name = kv[1]
            case "addr": addr = kv[1]
            case "port":
                guard let p = Int(kv[1]), (1...65535).contains(p) else { return (nil, "bad port '\(kv[1])'") }
                port = p
            case "db":
                guard let d = Int(kv[1]), d >= 0 else { return (nil, "bad db '\(kv[1])'") }
                db = d
            case "pass": pass = kv[1]
            case "unix": unix = kv[1]
            case "sentinel_group": group = kv[1]
            case "sentinel":
                let hp = kv[1].split(separator: ":")
                guard hp.count == 2, let p = Int(hp[1]) else { return (nil, "bad sentinel '\(kv[1])' (expected HOST:PORT)") }
                sentinels.append(.init(String(hp[0]), p))
            case "sentinel_master": break
            default: return (nil, "unknown attribute '\(kv[0])'")
            }
        }
        guard let name, !name.isEmpty else { return (nil, "no server name (name=...)") }
        let target: RedisTarget
        if let group, !sentinels.isEmpty {
            target = .sentinel(sentinels: sentinels, master: group)
        } else if let unix {
            target = .unix(path: unix)
        } else {
            target = .server(host: addr, port: port)
        }
        let cfg = RedisClientConfig(target: target, db: db, password: pass, connectTimeoutMs: connectTimeoutMs,
                                    commandTimeoutMs: commandTimeoutMs)
        return (NdbRedisServerSpec(name: name, config: cfg), nil)
    }
}

/// The servers of ndb_redis (process-wide; each thread has its own connection to each).
final class NdbRedisServers: Sendable {
    let pools: [String: RedisPool]
    init(_ specs: [NdbRedisServerSpec]) {
        var p: [String: RedisPool] = [:]
        for s in specs { p[s.name] = RedisPool(s.config) }
        pools = p
    }
}

/// A worker's named replies (`redis_cmd(srv, cmd, "r")` → `$redis(r=>...)`), as Kamailio keeps them per
/// process, and its view of each server's health (`allowed_timeouts` / `disable_time`, per process in
/// Kamailio too): consecutive failures and, once disabled, when the server is tried again.
final class NdbRedisReplies {
    var named: [String: RedisReply] = [:]
    var failures: [String: Int] = [:]
    var disabledUntil: [String: ContinuousClock.Instant] = [:]
}

/// `KSR.ndb_redis`: Redis commands from the script with Kamailio's reply model. Commands block the
/// worker for one round trip (ndb_redis' behaviour too).
enum NdbRedisModule: KSRModule {
    static let name = "ndb_redis"
    static let summary = "Redis commands from the script (redis_cmd, $redis(reply=>...))."

    static let server = ModuleParameter.list("ndb_redis", "server", "A server: `name=srv1;addr=127.0.0.1;port=6379;db=0` (also unix=, pass=, sentinel_group= with sentinel=HOST:PORT).") {
        let (spec, why) = NdbRedisServerSpec.parse($0)
        return spec == nil ? (why ?? "bad server definition") : nil
    }
    static let initWithoutRedis = ModuleParameter.int("ndb_redis", "init_without_redis", 0, in: 0...1,
                                                      "1: start even when a server cannot be reached (commands fail until it can).")
    static let connectTimeout = ModuleParameter.int("ndb_redis", "connect_timeout", 1000, "Connect timeout, milliseconds.") {
        $0 > 0 ? nil : "expected a positive number of milliseconds"
    }
    static let cmdTimeout = ModuleParameter.int("ndb_redis", "cmd_timeout", 1000, "Command timeout, milliseconds.") {
        $0 > 0 ? nil : "expected a positive number of milliseconds"
    }
    static let maxReplySize = ModuleParameter.int("ndb_redis", "max_reply_size", 1 << 20,
                                                  "Replies larger than this many bytes are refused (redis_cmd returns -1). Starling only.") {
        $0 > 0 ? nil : "expected a positive number of bytes"
    }
    static let cluster = ModuleParameter.int("ndb_redis", "cluster", 0, in: 0...1,
                                             "1: Redis Cluster (MOVED/ASK redirections). Not supported: the start fails with 1.")
    static let disableTime = ModuleParameter.int("ndb_redis", "disable_time", 0,
                                                 "Seconds a server stays disabled (redis_cmd returns -2 at once) after more than allowed_timeouts consecutive failures.") {
        $0 >= 0 ? nil : "expected a number of seconds >= 0"
    }
    static let allowedTimeouts = ModuleParameter.int("ndb_redis", "allowed_timeouts", -1,
                                                     "Consecutive failed commands (no reply, no connection) a server may have before it is disabled for disable_time; -1: never disabled.") {
        $0 >= -1 ? nil : "expected -1 or a count >= 0"
    }
    static let flushOnReconnect = ModuleParameter.int("ndb_redis", "flush_on_reconnect", 0, in: 0...1,
                                                      "1: FLUSHALL after every (re)connect to a server.")
    static let allowDynamicNodes = ModuleParameter.int("ndb_redis", "allow_dynamic_nodes", 0, in: 0...1,
                                                       "Cluster nodes learnt from redirections (only with cluster = 1, not supported).")
    static let parameters = [server.info, initWithoutRedis.info, connectTimeout.info, cmdTimeout.info, maxReplySize.info,
                             cluster.info, disableTime.info, allowedTimeouts.info, flushOnReconnect.info, allowDynamicNodes.info]

    static let logger = Logger(label: "starling.ndb_redis")

    static func specs(_ config: ModuleConfiguration) -> [NdbRedisServerSpec] {
        config[server].compactMap {
            var s = NdbRedisServerSpec.parse($0, connectTimeoutMs: config[connectTimeout], commandTimeoutMs: config[cmdTimeout]).0
            s?.config.maxReplyBytes = config[maxReplySize]
            s?.config.flushOnConnect = config[flushOnReconnect] == 1
            return s
        }
    }

    static func servers(_ rt: ModuleRuntime) -> NdbRedisServers {
        rt.state(NdbRedisServers.self) { NdbRedisServers(specs(rt.config)) }
    }

    static func start(_ runtime: ModuleRuntime) throws(ModuleStartError) {
        if runtime.config[cluster] == 1 {
            throw ModuleStartError(key: "modparam.ndb_redis.cluster",
                                   "Redis Cluster (MOVED/ASK redirections) is not supported; use one master (with Sentinel for failover)")
        }
        let specs = specs(runtime.config)
        var seen = Set<String>()
        for s in specs where !seen.insert(s.name).inserted {
            throw ModuleStartError(key: "modparam.ndb_redis.server", "server name '\(s.name)' is defined twice")
        }
        let all = servers(runtime)
        guard runtime.config[initWithoutRedis] == 0 else { return }
        // As Kamailio's: every server must answer at start (unless init_without_redis = 1).
        for s in specs {
            do throws(RedisError) {
                let c = RedisConnection(s.config)
                try c.connect()
                c.disconnect()
            } catch {
                throw ModuleStartError(key: "modparam.ndb_redis.server", "server '\(s.name)' (\(s.config.label)): \(error.message)")
            }
        }
        _ = all
    }

    /// Kamailio's command text to arguments: split on spaces, each `%s` replaced by the next parameter
    /// (a parameter is binary safe and never split).
    static func arguments(_ cmd: String, _ params: [String]) -> [[UInt8]]? {
        var next = params[...]
        var out: [[UInt8]] = []
        for word in cmd.split(separator: " ", omittingEmptySubsequences: true) {
            var arg: [UInt8] = []
            var bytes = Array(word.utf8)[...]
            while let b = bytes.popFirst() {
                if b == UInt8(ascii: "%"), let f = bytes.first {
                    if f == UInt8(ascii: "s") || f == UInt8(ascii: "b") {
                        guard let p = next.popFirst() else { return nil }
                        arg.append(contentsOf: p.utf8)
                        bytes = bytes.dropFirst()
                        continue
                    }
                    if f == UInt8(ascii: "%") { arg.append(b); bytes = bytes.dropFirst(); continue }
                }
                arg.append(b)
            }
            out.append(arg)
        }
        return out.isEmpty ? nil : out
    }

    /// redis_cmd*: 0 done (Kamailio's redisc_exec value through KEMI), -1 error (no server, no reply,
    /// an error reply: the reply is kept), -2 the server is disabled (`allowed_timeouts`, `disable_time`:
    /// nothing is sent and the named reply is left as it was).
    static func exec(_ ctx: RouteContext, _ rt: ModuleRuntime, server: String, cmd: String, params: [String], reply: String) -> Int {
        guard !server.isEmpty, !reply.isEmpty, !cmd.isEmpty else {
            ctx.logger.error("ndb_redis: invalid parameters")
            return -1
        }
        guard let pool = servers(rt).pools[server] else {
            ctx.logger.error("ndb_redis: no redis server found: \(server)")
            return -1
        }
        guard let argv = arguments(cmd, params) else {
            ctx.logger.error("ndb_redis: command argument specifier found, but no params")
            return -1
        }
        let replies = ctx.worker.local(NdbRedisReplies.self) { NdbRedisReplies() }
        if let until = replies.disabledUntil[server] {
            guard ContinuousClock.now >= until else { return -2 }
            replies.disabledUntil[server] = nil
            replies.failures[server] = 0
            ctx.logger.notice("ndb_redis: REDIS server \(server) re-enabled")
        }
        replies.named[reply] = nil
        // async_io: the command runs on a lookup thread (its own connection) while the route waits.
        if let ticket = ctx.asyncIO?.beginAwait(ctx) {
            AsyncIOLookups.shared.run {
                let result: Result<RedisReply, RedisError>
                do throws(RedisError) { result = .success(try pool.command(argv)) } catch { result = .failure(error) }
                ticket.complete { ctx in .int(store(ctx, rt, result, server: server, reply: reply)) }
            }
            return 0
        }
        let result: Result<RedisReply, RedisError>
        do throws(RedisError) { result = .success(try pool.command(argv)) } catch { result = .failure(error) }
        return store(ctx, rt, result, server: server, reply: reply)
    }

    /// Keeps the reply under its name; 0, or -1 for an error reply or no reply (counted towards
    /// disabling the server).
    static func store(_ ctx: RouteContext, _ rt: ModuleRuntime, _ result: Result<RedisReply, RedisError>, server: String,
                      reply: String) -> Int {
        let replies = ctx.worker.local(NdbRedisReplies.self) { NdbRedisReplies() }
        switch result {
        case .success(let r):
            replies.named[reply] = r
            if case .error(let e) = r {
                ctx.logger.error("ndb_redis: Redis error:\(e)")
                return -1
            }
            replies.failures[server] = 0
            return 0
        case .failure(let error):
            ctx.logger.error("ndb_redis: server \(server): \(error.message)")
            // As Kamailio's redis_count_err_and_disable: only failures to get a reply count.
            let allowed = rt.config[allowedTimeouts]
            if allowed >= 0 && error.kind != .replyTooLarge {
                let n = (replies.failures[server] ?? 0) + 1
                replies.failures[server] = n
                if n > allowed {
                    let seconds = rt.config[disableTime]
                    replies.disabledUntil[server] = ContinuousClock.now + .seconds(seconds)
                    ctx.logger.warning("ndb_redis: REDIS server \(server) disabled for \(seconds) seconds")
                }
            }
            return -1
        }
    }

    static func exports(_ rt: ModuleRuntime) -> [KemiExport] {
        [
            KemiExport("ndb_redis", "redis_cmd", [.str, .str, .str], returns: .int, compat: "0 on success as Kamailio's KEMI function") { ctx, args in
                let cmd = args.str(1)
                if cmd.contains("%s") || cmd.contains("%b") {
                    ctx.logger.error("ndb_redis: command argument specifier found, but no params")
                    return .int(-1)
                }
                return .int(exec(ctx, rt, server: args.str(0), cmd: cmd, params: [], reply: args.str(2)))
            },
            KemiExport("ndb_redis", "redis_cmd_p1", [.str, .str, .str, .str], returns: .int) { ctx, args in
                .int(exec(ctx, rt, server: args.str(0), cmd: args.str(1), params: [args.str(2)], reply: args.str(3)))
            },
            KemiExport("ndb_redis", "redis_cmd_p2", [.str, .str, .str, .str, .str], returns: .int) { ctx, args in
                .int(exec(ctx, rt, server: args.str(0), cmd: args.str(1), params: [args.str(2), args.str(3)], reply: args.str(4)))
            },
            KemiExport("ndb_redis", "redis_cmd_p3", [.str, .str, .str, .str, .str, .str], returns: .int) { ctx, args in
                .int(exec(ctx, rt, server: args.str(0), cmd: args.str(1), params: [args.str(2), args.str(3), args.str(4)],
                          reply: args.str(5)))
            },
            KemiExport("ndb_redis", "redis_free", [.str], returns: .int) { ctx, args in
                let replies = ctx.worker.local(NdbRedisReplies.self) { NdbRedisReplies() }
                guard replies.named.removeValue(forKey: args.str(0)) != nil else { return .int(-1) }
                return .int(1)
            },
        ]
    }

    // MARK: $redis(name=>key), $redisd(name)

    /// `$redisd(...)` names and hiredis' reply type codes (REDIS_REPLY_STRING ... REDIS_REPLY_ERROR).
    static let replyTypeConstants: [String: Int] = ["rpl_str": 1, "rpl_arr": 2, "rpl_int": 3, "rpl_nil": 4,
                                                     "rpl_sts": 5, "rpl_err": 6]

    /// A parsed `$redis(...)` name: the reply, the attribute (type, value, info, size) and the
    /// indexes (`value[1]`, `value[1][0]`: all but the last walk into nested arrays).
    struct PVName: Sendable, Hashable {
        enum Key: Sendable, Hashable { case type, value, info, size }
        var reply: String
        var key: Key
        var indexes: [Int]
    }

    /// Parses Kamailio's grammar: `r=>value`, `r=>value[2]`, `r=>type`, `r=>type[2]`, `r=>info`, `r=>size`,
    /// and nested arrays `r=>value[1]=>value[0]`, `r=>value[1]=>type[0]` (every key but the last is `value[N]`).
    static func parsePV(_ text: String) -> PVName? {
        let s = String(text.trimmingCharacters(" \t"))
        let parts = s.components(separatedByString: "=>").map { String($0.trimmingCharacters(" \t")) }
        guard parts.count >= 2, !parts[0].isEmpty, !parts[0].contains(" "), parts.count <= 9 else { return nil }
        var indexes: [Int] = []
        func indexed(_ t: String, _ word: String) -> Int?? {
            guard t.hasPrefix(word) else { return nil }
            let rest = t.dropFirst(word.count).trimmingCharacters(" \t")
            if rest.isEmpty { return .some(nil) }
            guard rest.hasPrefix("["), rest.hasSuffix("]"),
                  let i = Int(rest.dropFirst().dropLast().trimmingCharacters(" \t")) else { return nil }
            return .some(i)
        }
        for (n, part) in parts.dropFirst().enumerated() {
            let last = n == parts.count - 2
            if !last {
                guard let v = indexed(part, "value"), let i = v else { return nil }
                indexes.append(i)
                continue
            }
            if part == "info" || part == "size" {
                return PVName(reply: parts[0], key: part == "info" ? .info : .size, indexes: indexes + [-1])
            }
            if let v = indexed(part, "value") { return PVName(reply: parts[0], key: .value, indexes: indexes + [v ?? -1]) }
            if let v = indexed(part, "type") { return PVName(reply: parts[0], key: .type, indexes: indexes + [v ?? -1]) }
            return nil
        }
        return nil
    }

    /// `$redis(name=>key)` as Kamailio's pv_get_redisc.
    static func pvGet(_ ctx: RouteContext, _ n: PVName) -> KemiValue {
        guard var reply = ctx.worker.local(NdbRedisReplies.self, { NdbRedisReplies() }).named[n.reply] else { return .null }
        var idx = n.indexes
        let pos = idx.popLast() ?? -1  // the last key's index (-1: none)
        for i in idx {
            let e = reply.elements
            guard i >= 0 && i < e.count else { return .null }
            reply = e[i]
        }
        switch n.key {
        case .value:
            switch reply {
            case .string(let b): return pos == -1 ? .string(String(decoding: b, as: UTF8.self)) : .null
            case .integer(let i): return pos == -1 ? .int(Int(Int32(truncatingIfNeeded: i))) : .null
            case .array(let e):
                guard pos >= 0 && pos < e.count else { return .null }
                switch e[pos] {
                case .string(let b): return .string(String(decoding: b, as: UTF8.self))
                case .integer(let i): return .int(Int(Int32(truncatingIfNeeded: i)))
                default: return .null
                }
            default: return .null
            }
        case .info:
            switch reply {
            case .string, .status, .error: return reply.text.map { .string($0) } ?? .null
            default: return .null
            }
        case .size:
            if case .array(let e) = reply { return .int(e.count) }
            return .null
        case .type:
            if pos == -1 { return .int(reply.typeCode) }
            guard case .array(let e) = reply, pos >= 0 && pos < e.count else { return .null }
            return .int(e[pos].typeCode)
        }
    }
}
