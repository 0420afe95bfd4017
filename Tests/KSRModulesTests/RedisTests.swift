import Testing
import Foundation
import SIPCore
import StarlingKEMI
import StarlingTesting
import StarlingRedis
import StarlingTestSupport
@testable import KSRModules
import Synchronization
import StarlingServer

/// The Redis client layer (StarlingRedis over hiredis) against a real redis-server.
@Suite(.serialized) struct RedisClientTests {
    @Test func commandsAndTheReplyModel() throws {
        let server = try RedisServer()
        defer { server.stop() }
        let c = RedisConnection(try #require(RedisClientConfig.parseURL(server.url())))
        #expect(try c.command("SET", "k", "v 1") == .status("OK"))
        #expect(try c.command("GET", "k") == .string(Array("v 1".utf8)))
        #expect(try c.command("GET", "missing") == .null)
        #expect(try c.command("INCRBY", "n", "41") == .integer(41))
        // Binary-safe arguments: a NUL and a CRLF inside one argument.
        let binary: [UInt8] = [0x61, 0, 0x0d, 0x0a, 0x62]
        #expect(try c.command([Array("SET".utf8), Array("bin".utf8), binary]) == .status("OK"))
        #expect(try c.command([Array("GET".utf8), Array("bin".utf8)]) == .string(binary))
        _ = try c.command("RPUSH", "l", "a", "b")
        #expect(try c.command("LRANGE", "l", "0", "-1") == .array([.string([0x61]), .string([0x62])]))
        let err = try c.command("INCR", "k")
        #expect(err.isError && err.typeCode == 6)
        #expect(err.text?.hasPrefix("ERR") == true)
        #expect(try c.command("PING").typeCode == 5)
        #expect(try server.cli(["GET", "k"]) == "v 1")
    }

    @Test func reconnectsAfterTheConnectionIsKilled() throws {
        let server = try RedisServer()
        defer { server.stop() }
        let c = RedisConnection(try #require(RedisClientConfig.parseURL(server.url(db: 2))))
        _ = try c.command("SET", "x", "1")
        #expect(c.connects == 1)
        // Another client kills every normal connection: the next command reconnects (SELECT 2 again).
        _ = try server.cli(["CLIENT", "KILL", "TYPE", "normal"])
        #expect(try c.command("GET", "x") == .string([0x31]))
        #expect(c.connects == 2)
    }

    /// A blocking command waits for its own timeout, not the connection's command timeout; one whose
    /// connection broke is not sent again when `retry` is false (a WAIT on a fresh connection would
    /// acknowledge at once).
    @Test func aBlockingCommandGetsItsOwnTimeoutAndIsNotRetried() throws {
        let server = try RedisServer()
        defer { server.stop() }
        var cfg = try #require(RedisClientConfig.parseURL(server.url()))
        cfg.commandTimeoutMs = 200
        let c = RedisConnection(cfg)
        _ = try c.command("SET", "k", "v")
        // No replica: WAIT 1 600 answers 0 after 600 ms, beyond the 200 ms command timeout.
        #expect(try c.command([Array("WAIT".utf8), Array("1".utf8), Array("600".utf8)], timeoutMs: 1800, retry: false) == .integer(0))
        #expect(c.connects == 1)
        // With the connection's own timeout the read gives up, and without retry nothing is sent again.
        #expect(throws: RedisError.self) {
            try c.command([Array("WAIT".utf8), Array("1".utf8), Array("600".utf8)], retry: false)
        }
        #expect(c.connects == 1)
        // The next command reconnects, with the 200 ms timeout restored.
        #expect(try c.command("GET", "k") == .string(Array("v".utf8)))
        #expect(c.connects == 2)
    }

    @Test func refusesRepliesLargerThanTheLimit() throws {
        let server = try RedisServer()
        defer { server.stop() }
        var cfg = try #require(RedisClientConfig.parseURL(server.url()))
        cfg.maxReplyBytes = 1000
        let c = RedisConnection(cfg)
        _ = try c.command("SET", "big", String(repeating: "x", count: 5000))
        #expect(throws: RedisError.self) { try c.command("GET", "big") }
        // The connection is still usable.
        #expect(try c.command("PING") == .status("PONG"))
    }

    @Test func unreachableAndNotRedisFailWithClearErrors() throws {
        let port = try TestPorts.next()
        let c = RedisConnection(RedisClientConfig(target: .server(host: "127.0.0.1", port: port), connectTimeoutMs: 500))
        let result = Result<RedisReply, RedisError> { () throws(RedisError) -> RedisReply in try c.command("PING") }
        guard case .failure(let e) = result else {
            Issue.record("PING to a closed port succeeded")
            return
        }
        #expect(e.kind == .connect)
        #expect(e.message.contains("127.0.0.1:\(port)"))
        // A TCP server that is not Redis (answers an HTTP status line).
        let peer = try PeerProcess(["python3", "-c", """
            import socket,sys
            s=socket.socket(); s.bind(("127.0.0.1",0)); s.listen(4)
            print(s.getsockname()[1]); sys.stdout.flush()
            while True:
                c,_=s.accept(); c.recv(100); c.sendall(b"HTTP/1.0 400 Bad Request\\r\\n\\r\\n"); c.close()
            """], package: "python3", readFirstLine: true)
        defer { peer.stop() }
        let n = RedisConnection(RedisClientConfig(target: .server(host: "127.0.0.1", port: Int(peer.firstLine)!)))
        #expect(throws: RedisError.self) { try n.connect() }
    }

    @Test func parsesURLs() {
        #expect(RedisClientConfig.parseURL("redis://127.0.0.1:6380/3") == RedisClientConfig(target: .server(host: "127.0.0.1", port: 6380), db: 3))
        #expect(RedisClientConfig.parseURL("redis://localhost")?.target == .server(host: "localhost", port: 6379))
        #expect(RedisClientConfig.parseURL("redis://:secret@10.0.0.1:7000/1")?.password == "secret")
        #expect(RedisClientConfig.parseURL("redis+sentinel://10.0.0.1:26379,10.0.0.2/mymaster/2")
                == RedisClientConfig(target: .sentinel(sentinels: [.init("10.0.0.1", 26379), .init("10.0.0.2", 26379)], master: "mymaster"), db: 2))
        for bad in ["redis://", "redis://host:port/0", "redis://h:99999/0", "redis://h:1/x", "mysql://h/db", "redis://a,b:1/0",
                    "redis+sentinel://h:1", "redis+sentinel://h:1//0", "redis://h:1/0/extra"] {
            #expect(RedisClientConfig.parseURL(bad) == nil, "\(bad)")
        }
    }
}

// MARK: - KSR.ndb_redis

private let ndbScript = """
    function ksr_request_route()
      local rc
      rc = KSR.ndb_redis.redis_cmd("srv1", "SET greeting hello", "r")
      KSR.pv.seti("$var(set)", rc)
      KSR.pv.seti("$var(settype)", KSR.pv.get("$redis(r=>type)"))
      KSR.pv.sets("$var(setinfo)", KSR.pv.get("$redis(r=>info)"))
      KSR.ndb_redis.redis_cmd_p1("srv1", "GET %s", "greeting", "r")
      KSR.pv.sets("$var(get)", KSR.pv.get("$redis(r=>value)"))
      KSR.ndb_redis.redis_cmd_p2("srv1", "HSET h %s %s", "f1", "value with spaces", "r")
      KSR.ndb_redis.redis_cmd_p1("srv1", "HGET h %s", "f1", "r")
      KSR.pv.sets("$var(hget)", KSR.pv.get("$redis(r=>value)"))
      KSR.ndb_redis.redis_cmd_p3("srv1", "RPUSH %s %s %s", "list", "a", "b", "r")
      KSR.pv.seti("$var(len)", KSR.pv.get("$redis(r=>value)"))
      KSR.ndb_redis.redis_cmd("srv1", "LRANGE list 0 -1", "arr")
      KSR.pv.seti("$var(size)", KSR.pv.get("$redis(arr=>size)"))
      KSR.pv.sets("$var(e1)", KSR.pv.get("$redis(arr=>value[1])"))
      KSR.pv.seti("$var(t0)", KSR.pv.get("$redis(arr=>type[0])"))
      KSR.pv.seti("$var(arrtype)", KSR.pv.get("$redis(arr=>type)"))
      KSR.ndb_redis.redis_cmd("srv1", "EVAL return{1,{'x',7}} 0", "nest")
      KSR.pv.sets("$var(nested)", KSR.pv.get("$redis(nest=>value[1]=>value[0])"))
      KSR.pv.seti("$var(nestedint)", KSR.pv.get("$redis(nest=>value[1]=>value[1])"))
      KSR.pv.seti("$var(nestedtype)", KSR.pv.get("$redis(nest=>value[1]=>type[1])"))
      rc = KSR.ndb_redis.redis_cmd("srv1", "INCR greeting", "e")
      KSR.pv.seti("$var(err)", rc)
      KSR.pv.seti("$var(errtype)", KSR.pv.get("$redis(e=>type)"))
      KSR.pv.sets("$var(errinfo)", KSR.pv.get("$redis(e=>info)"))
      KSR.ndb_redis.redis_cmd("srv1", "GET nothing", "n")
      KSR.pv.seti("$var(niltype)", KSR.pv.get("$redis(n=>type)"))
      if KSR.pv.get("$redis(n=>value)") == nil then KSR.pv.seti("$var(nilvalue)", 1) end
      KSR.pv.seti("$var(free)", KSR.ndb_redis.redis_free("r"))
      KSR.pv.seti("$var(free2)", KSR.ndb_redis.redis_free("r"))
      if KSR.pv.get("$redis(r=>type)") == nil then KSR.pv.seti("$var(freed)", 1) end
      KSR.pv.seti("$var(nosrv)", KSR.ndb_redis.redis_cmd("nosuch", "PING", "x"))
      KSR.pv.seti("$var(noparam)", KSR.ndb_redis.redis_cmd("srv1", "GET %s", "x"))
    end
    """

@Suite(.serialized) struct NdbRedisTests {
    static func harness(_ server: RedisServer, script: String = ndbScript, extra: [String: [String]] = [:]) throws -> ScriptHarness {
        var p: [String: [String]] = ["server": ["name=srv1;addr=127.0.0.1;port=\(server.port);db=1"]]
        for (k, v) in extra { p[k] = v }
        return try ScriptHarness(script: script, config: ModuleConfiguration(params: ["ndb_redis": p]))
    }

    @Test func commandsAndReplies() throws {
        let server = try RedisServer()
        defer { server.stop() }
        let h = try Self.harness(server)
        try h.route(Msg.options())
        let v = h.context.worker.vars
        #expect(v["set"] == .int(0))
        #expect(v["settype"] == .int(5))
        #expect(v["setinfo"] == .string("OK"))
        #expect(v["get"] == .string("hello"))
        #expect(v["hget"] == .string("value with spaces"))
        #expect(v["len"] == .int(2))
        #expect(v["size"] == .int(2))
        #expect(v["e1"] == .string("b"))
        #expect(v["t0"] == .int(1))
        #expect(v["arrtype"] == .int(2))
        #expect(v["nested"] == .string("x"))
        #expect(v["nestedint"] == .int(7))
        #expect(v["nestedtype"] == .int(3))
        #expect(v["err"] == .int(-1))
        #expect(v["errtype"] == .int(6))
        if case .string(let s)? = v["errinfo"] { #expect(s.hasPrefix("ERR value is not an integer")) } else { Issue.record("no error text") }
        #expect(v["niltype"] == .int(4))
        #expect(v["nilvalue"] == .int(1))
        #expect(v["free"] == .int(1))
        #expect(v["free2"] == .int(-1))
        #expect(v["freed"] == .int(1))
        #expect(v["nosrv"] == .int(-1))
        #expect(v["noparam"] == .int(-1))
        // db=1 was selected: the data is in database 1, not 0.
        #expect(try server.cli(["-n", "1", "HGET", "h", "f1"]) == "value with spaces")
        #expect(try server.cli(["-n", "0", "EXISTS", "h"]) == "0")
    }

    /// `[core] async_io`: the same commands, each suspending the route while a lookup thread (with
    /// its own connection) runs it; the replies and return codes are the blocking ones.
    @Test func commandsAndRepliesUnderAsyncIO() throws {
        let server = try RedisServer()
        defer { server.stop() }
        let h = try Self.harness(server)
        h.dispatcher.enableAsyncIO(maxPending: 10, pending: AsyncPendingRequests())
        #expect(try h.route(Msg.options()) == .waiting)
        #expect(h.runAsync { h.dispatcher.waitingRoutes == 0 })
        let v = h.context.worker.vars
        #expect(v["set"] == .int(0))
        #expect(v["setinfo"] == .string("OK"))
        #expect(v["get"] == .string("hello"))
        #expect(v["hget"] == .string("value with spaces"))
        #expect(v["nested"] == .string("x"))
        #expect(v["err"] == .int(-1))
        #expect(v["freed"] == .int(1))
        #expect(v["nosrv"] == .int(-1))
        #expect(v["noparam"] == .int(-1))
    }

    @Test func startRefusesAnUnreachableServerUnlessInitWithoutRedis() throws {
        let port = try TestPorts.next()
        let params: [String: [String]] = ["server": ["name=srv1;addr=127.0.0.1;port=\(port)"], "connect_timeout": ["300"]]
        #expect(throws: (any Error).self) {
            _ = try ScriptHarness(script: ndbScript, config: ModuleConfiguration(params: ["ndb_redis": params]))
        }
        var lenient = params
        lenient["init_without_redis"] = ["1"]
        let h = try ScriptHarness(script: """
            function ksr_request_route()
              KSR.pv.seti("$var(rc)", KSR.ndb_redis.redis_cmd("srv1", "PING", "r"))
            end
            """, config: ModuleConfiguration(params: ["ndb_redis": lenient]))
        try h.route(Msg.options())
        #expect(h.context.worker.vars["rc"] == .int(-1))
    }

    /// `allowed_timeouts` / `disable_time` as Kamailio's: after more than allowed_timeouts consecutive
    /// failures the server is disabled (-2 at once, nothing sent, the named reply kept) and tried again
    /// once disable_time has passed; `$redisd` gives the reply type codes.
    @Test func aFailingServerIsDisabledForDisableTime() throws {
        let port = try TestPorts.next()
        let params: [String: [String]] = ["server": ["name=srv1;addr=127.0.0.1;port=\(port)"], "connect_timeout": ["300"],
                                          "init_without_redis": ["1"], "allowed_timeouts": ["1"], "disable_time": ["3"]]
        let h = try ScriptHarness(script: """
            function ksr_request_route()
              local rc = KSR.ndb_redis.redis_cmd("srv1", "SET k v", "r")
              KSR.pv.seti("$var(rc)", rc)
              KSR.pv.seti("$var(str)", KSR.pv.get("$redisd(rpl_str)"))
              KSR.pv.seti("$var(err)", KSR.pv.get("$redisd(rpl_err)"))
            end
            """, config: ModuleConfiguration(params: ["ndb_redis": params]))
        // Nothing listens: two failures (allowed: 1), then disabled.
        try h.route(Msg.options())
        #expect(h.context.worker.vars["rc"] == .int(-1))
        #expect(h.context.worker.vars["str"] == .int(1) && h.context.worker.vars["err"] == .int(6))
        usleep(600_000)  // past the client's 500 ms between connect attempts
        try h.route(Msg.options())
        #expect(h.context.worker.vars["rc"] == .int(-1))
        try h.route(Msg.options())
        let disabledAt = ContinuousClock.now
        #expect(h.context.worker.vars["rc"] == .int(-2))
        // The server comes up: still disabled until disable_time has passed (checked when the start
        // took less than 2.5 s of the 3), then used again.
        let server = try RedisServer(port: port)
        defer { server.stop() }
        if ContinuousClock.now - disabledAt < .milliseconds(2500) {
            try h.route(Msg.options())
            #expect(h.context.worker.vars["rc"] == .int(-2))
            #expect(try server.cli(["EXISTS", "k"]) == "0")
        }
        let wait = disabledAt + .milliseconds(3200) - ContinuousClock.now
        if wait > .zero { Thread.sleep(forTimeInterval: Double(wait.components.seconds) + Double(wait.components.attoseconds) / 1e18) }
        try h.route(Msg.options())
        #expect(h.context.worker.vars["rc"] == .int(0))
        #expect(try server.cli(["GET", "k"]) == "v")
    }

    @Test func flushOnReconnectAndClusterParameters() throws {
        let server = try RedisServer()
        defer { server.stop() }
        _ = try server.cli(["SET", "old", "1"])
        let h = try ScriptHarness(script: """
            function ksr_request_route()
              KSR.pv.seti("$var(rc)", KSR.ndb_redis.redis_cmd("srv1", "EXISTS old", "r"))
              KSR.pv.seti("$var(n)", KSR.pv.get("$redis(r=>value)"))
            end
            """, config: ModuleConfiguration(params: ["ndb_redis": ["server": ["name=srv1;addr=127.0.0.1;port=\(server.port)"],
                                                                    "flush_on_reconnect": ["1"]]]))
        try h.route(Msg.options())
        #expect(h.context.worker.vars["rc"] == .int(0))
        #expect(h.context.worker.vars["n"] == .int(0))
        // cluster = 1 is refused at start, naming the key.
        do {
            _ = try ScriptHarness(script: ndbScript, config: ModuleConfiguration(params: ["ndb_redis": [
                "server": ["name=srv1;addr=127.0.0.1;port=\(server.port)"], "cluster": ["1"]]]))
            Issue.record("cluster = 1 was accepted")
        } catch {
            #expect("\(error)".contains("modparam.ndb_redis.cluster"), "\(error)")
        }
    }

    @Test func pvNames() {
        #expect(NdbRedisModule.replyTypeConstants["rpl_nil"] == 4)
        #expect(NdbRedisModule.parsePV("r=>value")?.indexes == [-1])
        #expect(NdbRedisModule.parsePV("r=>type[2]")?.indexes == [2])
        #expect(NdbRedisModule.parsePV("r=>value[1]=>value[0]")?.indexes == [1, 0])
        #expect(NdbRedisModule.parsePV("r=>info")?.key == .info)
        #expect(NdbRedisModule.parsePV("r=>size")?.key == .size)
        for bad in ["r", "=>value", "r=>val", "r=>type=>value", "r=>value[x]", "r=>info[1]"] {
            #expect(NdbRedisModule.parsePV(bad) == nil, "\(bad)")
        }
    }
}

// MARK: - usrloc db_mode 3 on Redis

private let ulScript = """
    function ksr_request_route()
      if KSR.is_REGISTER() then
        KSR.pv.seti("$var(save)", KSR.registrar.save("location", 0))
        return
      end
      local rc = KSR.registrar.lookup("location")
      KSR.pv.seti("$var(lookup)", rc)
      if rc > 0 then KSR.pv.sets("$var(ruri)", KSR.pv.get("$ru")) end
      KSR.sl.send_reply(rc > 0 and 302 or 404, "Lookup")
    end
    """

private func reg(_ user: String, _ contact: String, callID: String, cseq: Int, expires: Int = 300) -> String {
    "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK\(callID)-\(cseq)\r\n"
        + "Max-Forwards: 70\r\nFrom: <sip:\(user)@example.com>;tag=t\(cseq)\r\nTo: <sip:\(user)@example.com>\r\n"
        + "Call-ID: \(callID)\r\nCSeq: \(cseq) REGISTER\r\nContact: \(contact)\r\nExpires: \(expires)\r\nContent-Length: 0\r\n\r\n"
}

private func invite(_ user: String, _ n: Int) -> String {
    "INVITE sip:\(user)@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.99:5060;branch=z9hG4bKinv\(n)\r\n"
        + "Max-Forwards: 70\r\nFrom: <sip:bob@example.com>;tag=b1\r\nTo: <sip:\(user)@example.com>\r\n"
        + "Call-ID: call-\(n)\r\nCSeq: 1 INVITE\r\nContact: <sip:bob@192.0.2.99>\r\nContent-Length: 0\r\n\r\n"
}

private func lastStatus(_ h: ScriptHarness) -> Int? {
    h.sender.sent.last(where: { $0.text.hasPrefix("SIP/2.0") })?.message?.statusCode
}

private func ulHarness(_ url: String, script: String = ulScript, extra: [String: [String]] = [:]) throws -> ScriptHarness {
    var p: [String: [String]] = ["db_url": [url], "db_mode": ["3"]]
    for (k, v) in extra { p[k] = v }
    return try ScriptHarness(script: script, config: ModuleConfiguration(params: ["usrloc": p]))
}

/// Waits (polling, generous deadline) until `ready` holds.
private func eventually(_ timeout: Duration = .seconds(10), _ ready: () throws -> Bool) throws -> Bool {
    try TestPorts.wait(timeout: timeout) { (try? ready()) == true }
}

@Suite(.serialized) struct UsrlocRedisTests {
    @Test func aContactSavedThroughOneInstanceIsFoundThroughAnother() throws {
        let server = try RedisServer()
        defer { server.stop() }
        let a = try ulHarness(server.url()), b = try ulHarness(server.url())
        defer { a.runtime.usrloc.shared?.stop(); b.runtime.usrloc.shared?.stop() }
        #expect(try eventually { b.runtime.usrloc.shared!.live.load(ordering: .acquiring) })

        try a.route(reg("alice", "<sip:alice@192.0.2.10:5060>", callID: "c1", cseq: 1, expires: 600))
        #expect(a.context.worker.vars["save"] == .int(1))
        #expect(lastStatus(a) == 200)
        #expect(try server.cli(["HLEN", "ul:location:alice"]) == "2")  // _v and one contact
        let ttl = Int(try server.cli(["TTL", "ul:location:alice"])) ?? -1
        #expect(ttl > 500 && ttl <= 600)

        try b.route(invite("alice", 1))
        #expect(b.context.worker.vars["lookup"] == .int(1))
        #expect(b.context.worker.vars["ruri"] == .string("sip:alice@192.0.2.10:5060"))
        // B now has alice cached; a second contact saved through A reaches B's cache by pub/sub.
        let misses = b.runtime.usrloc.shared!.cacheMisses.load(ordering: .relaxed)
        try a.route(reg("alice", "<sip:alice@192.0.2.11:5060>", callID: "c2", cseq: 1, expires: 600))
        #expect(a.context.worker.vars["save"] == .int(1))
        #expect(try eventually { b.runtime.usrloc.table("location").contacts("alice").count == 2 })
        // Served from B's cache now: no new Redis read.
        let m2 = b.runtime.usrloc.shared!.cacheMisses.load(ordering: .relaxed)
        try b.route(invite("alice", 2))
        #expect(b.runtime.usrloc.shared!.cacheMisses.load(ordering: .relaxed) == m2)
        #expect(m2 == misses + 1)

        // Removing every contact through B (Contact: *) reaches A; the key is gone.
        try b.route(reg("alice", "*", callID: "c3", cseq: 1, expires: 0))
        #expect(b.context.worker.vars["save"] == .int(3))
        #expect(try eventually { a.runtime.usrloc.table("location").contacts("alice").isEmpty })
        try a.route(invite("alice", 3))
        #expect(a.context.worker.vars["lookup"] == .int(-1))
        #expect(try server.cli(["EXISTS", "ul:location:alice"]) == "0")
    }

    /// The periodic sweep: expired contacts left in live AoRs are removed by the instance holding the
    /// sweep lock (never while another holds it, never twice within timer_interval), the AoR gets a new
    /// version and keeps its TTL, and the other instance's cache hears of it.
    @Test func theSweepRemovesExpiredContactsOneInstanceAtATime() throws {
        let server = try RedisServer()
        defer { server.stop() }
        let a = try ulHarness(server.url()), b = try ulHarness(server.url())
        defer { a.runtime.usrloc.shared?.stop(); b.runtime.usrloc.shared?.stop() }
        let sa = try #require(a.runtime.usrloc.shared), sb = try #require(b.runtime.usrloc.shared)
        #expect(try eventually { sa.live.load(ordering: .acquiring) && sb.live.load(ordering: .acquiring) })
        for (n, (user, expires)) in [("alice", 3600), ("alice", 120), ("bob", 120), ("bob", 3600), ("carol", 3600)].enumerated() {
            try a.route(reg(user, "<sip:\(user)@192.0.2.\(n + 10):5060>", callID: "c\(n)", cseq: 1, expires: expires))
            #expect(lastStatus(a) == 200)
        }
        #expect(try server.cli(["HLEN", "ul:location:alice"]) == "3")
        #expect(a.runtime.usrloc.table("location").contacts("alice").count == 2)
        let version = try server.cli(["HGET", "ul:location:alice", "_v"])

        // Another instance holds the sweep lock: B's clock is 10 minutes ahead (both 120 s contacts
        // expired for it), yet it does not sweep; B cannot release that lock either (compare-and-delete).
        _ = try server.cli(["SET", RedisLocations.sweepLockKey, "someone-else", "PX", "60000"])
        b.advance(by: .seconds(600))
        #expect(sb.sweptContacts.load(ordering: .relaxed) == 0 && sb.sweepsDone.load(ordering: .relaxed) == 0)
        #expect(try server.cli(["HLEN", "ul:location:alice"]) == "3")
        #expect(try server.cli(["EVAL", RedisLocations.sweepReleaseScript, "2", RedisLocations.sweepLockKey,
                                RedisLocations.sweepMarkKey, "not-the-holder", "60000"]) == "0")
        #expect(try server.cli(["GET", RedisLocations.sweepLockKey]) == "someone-else")

        // The lock is free: B's next tick sweeps both expired contacts, once.
        _ = try server.cli(["DEL", RedisLocations.sweepLockKey])
        b.advance(by: .seconds(1))
        #expect(sb.sweptContacts.load(ordering: .relaxed) == 2 && sb.sweepsDone.load(ordering: .relaxed) == 1)
        #expect(try server.cli(["HLEN", "ul:location:alice"]) == "2")
        #expect(try server.cli(["HLEN", "ul:location:bob"]) == "2")
        #expect(try server.cli(["HLEN", "ul:location:carol"]) == "2")
        #expect(try server.cli(["HGET", "ul:location:alice", "_v"]) != version)
        let ttl = Int(try server.cli(["TTL", "ul:location:alice"])) ?? -1
        #expect(ttl > 3500 && ttl <= 3600)
        #expect(try server.cli(["EXISTS", RedisLocations.sweepLockKey]) == "0")
        // A's clock is real time (its 120 s contact still valid for it): A's cache was invalidated by
        // the sweep's message and reads the AoR as Redis has it now.
        #expect(try eventually { a.runtime.usrloc.table("location").contacts("alice").count == 1 })

        // A sweep finished less than timer_interval (60 s) ago: A does not sweep again.
        #expect(Int(try server.cli(["PTTL", RedisLocations.sweepMarkKey])) ?? 0 > 0)
        a.advance(by: .seconds(600))
        #expect(sa.sweepsDone.load(ordering: .relaxed) == 0 && sa.sweptContacts.load(ordering: .relaxed) == 0)
    }

    @Test func concurrentSavesOfOneAoRThroughTwoInstancesKeepExactlyTheRightContacts() throws {
        let server = try RedisServer()
        defer { server.stop() }
        let url = server.url()
        final class Results: Sendable {
            let errors = Mutex<[String]>([])
            let conflicts = Atomic<Int>(0)
        }
        let results = Results()
        // Two instances, 10 devices (5 each), 150 REGISTERs per instance; devices 0 and 5 end with expires=0.
        let threads = (0..<2).map { instance in
            Thread {
                do {
                    let h = try ulHarness(url)
                    defer {
                        results.conflicts.wrappingAdd(h.runtime.usrloc.shared!.conflicts.load(ordering: .relaxed), ordering: .relaxed)
                        h.runtime.usrloc.shared?.stop()
                    }
                    for round in 1...30 {
                        for d in (instance * 5)..<(instance * 5 + 5) {
                            let last = round == 30 && d % 5 == 0
                            try h.route(reg("shared", "<sip:dev\(d)@192.0.2.\(d + 1):5060>", callID: "dev\(d)", cseq: round,
                                            expires: last ? 0 : 600))
                            let st = lastStatus(h)
                            if st != 200 { results.errors.withLock { $0.append("instance \(instance) device \(d) round \(round): \(st ?? 0)") } }
                        }
                    }
                } catch {
                    results.errors.withLock { $0.append("\(error)") }
                }
            }
        }
        for t in threads { t.start() }
        #expect(try eventually(.seconds(60)) { threads.allSatisfy { $0.isFinished } })
        #expect(results.errors.withLock { $0 } == [])
        let check = try ulHarness(url)
        defer { check.runtime.usrloc.shared?.stop() }
        let got = Set(check.runtime.usrloc.table("location").contacts("shared").map(\.contact))
        let want = Set([1, 2, 3, 4, 6, 7, 8, 9].map { "sip:dev\($0)@192.0.2.\($0 + 1):5060" })
        #expect(got == want)
        #expect(try server.cli(["HLEN", "ul:location:shared"]) == "9")
    }

    @Test func redisDownMeans500ForRegisterAndCachedLookups() throws {
        var server = try RedisServer()
        defer { server.stop() }
        let port = server.port
        let a = try ulHarness(server.url())
        defer { a.runtime.usrloc.shared?.stop() }
        #expect(try eventually { a.runtime.usrloc.shared!.live.load(ordering: .acquiring) })
        try a.route(reg("bob", "<sip:bob@192.0.2.20:5060>", callID: "b1", cseq: 1))
        #expect(lastStatus(a) == 200)
        server.stop()
        #expect(try eventually { !a.runtime.usrloc.shared!.live.load(ordering: .acquiring) })
        // Never a 200 for a contact that was not stored.
        try a.route(reg("bob", "<sip:bob@192.0.2.21:5060>", callID: "b2", cseq: 1))
        #expect(lastStatus(a) == 500)
        #expect(a.context.worker.vars["save"] == .int(-1))
        // Lookups answer from the cache.
        try a.route(invite("bob", 1))
        #expect(a.context.worker.vars["lookup"] == .int(1))
        #expect(a.context.worker.vars["ruri"] == .string("sip:bob@192.0.2.20:5060"))
        // Redis back (empty: no persistence): Starling reconnects by itself and saves again.
        server = try RedisServer(port: port)
        var cseq = 2
        #expect(try eventually {
            cseq += 1
            try a.route(reg("bob", "<sip:bob@192.0.2.21:5060>", callID: "b2", cseq: cseq))
            return lastStatus(a) == 200
        })
        #expect(try eventually { a.runtime.usrloc.shared!.live.load(ordering: .acquiring) })
        #expect(try server.cli(["EXISTS", "ul:location:bob"]) == "1")
    }

    @Test func waitReplicasWithoutAReplicaMeans500() throws {
        let server = try RedisServer()
        defer { server.stop() }
        let h = try ulHarness(server.url(), extra: ["redis_wait_replicas": ["1"], "redis_wait_timeout": ["200"]])
        defer { h.runtime.usrloc.shared?.stop() }
        try h.route(reg("dave", "<sip:dave@192.0.2.40:5060>", callID: "d1", cseq: 1))
        #expect(lastStatus(h) == 500)
    }

    @Test func aServerThatIsNotRedisStopsTheStart() throws {
        // An unparsable db_url is refused by the parameter check (ModuleConfigurationTests: exit 2).
        let peer = try PeerProcess(["python3", "-c", """
            import socket,sys
            s=socket.socket(); s.bind(("127.0.0.1",0)); s.listen(4)
            print(s.getsockname()[1]); sys.stdout.flush()
            while True:
                c,_=s.accept(); c.recv(100); c.sendall(b"-ERR unknown command\\r\\n"); c.close()
            """], package: "python3", readFirstLine: true)
        defer { peer.stop() }
        do {
            _ = try ulHarness("redis://127.0.0.1:\(peer.firstLine)/0")
            Issue.record("started against a server that is not Redis")
        } catch {
            #expect("\(error)".contains("modparam.usrloc.db_url"))
            #expect("\(error)".contains("not a Redis server"))
        }
    }
}

// MARK: - htable tables in Redis (redis=1)

@Suite(.serialized) struct HtableRedisTests {
    static func harness(_ server: RedisServer, _ script: String) throws -> ScriptHarness {
        try ScriptHarness(script: script, config: ModuleConfiguration(params: ["htable": [
            "htable": ["ban=>size=4;autoexpire=100;redis=1", "local=>size=4"], "redis_url": [server.url(db: 3)],
        ]]))
    }

    @Test func itemsAreSharedBetweenInstancesWithTheirExpiry() throws {
        let server = try RedisServer()
        defer { server.stop() }
        let a = try Self.harness(server, """
            function ksr_request_route()
              KSR.htable.sht_sets("ban", "192.0.2.1", "blocked")
              KSR.htable.sht_seti("ban", "count", 5)
              KSR.pv.seti("$var(inc)", KSR.htable.sht_inc("ban", "count"))
              KSR.pv.seti("$sht(ban=>hits)", 3)
              KSR.htable.sht_setxi("ban", "short", 1, 30)
              KSR.htable.sht_sets("local", "k", "only here")
            end
            """)
        let b = try Self.harness(server, """
            function ksr_request_route()
              KSR.pv.sets("$var(ip)", KSR.htable.sht_get("ban", "192.0.2.1") or "none")
              KSR.pv.seti("$var(count)", KSR.pv.get("$sht(ban=>count)"))
              KSR.pv.seti("$var(hits)", KSR.pv.get("$sht(ban=>hits)"))
              KSR.pv.seti("$var(ex)", KSR.pv.get("$shtex(ban=>short)"))
              KSR.pv.seti("$var(cnt)", KSR.pv.get("$shtcn(ban=>.*)"))
              if KSR.htable.sht_get("local", "k") == nil then KSR.pv.seti("$var(local)", 0) end
              KSR.pv.seti("$var(dec)", KSR.htable.sht_dec("ban", "count"))
              KSR.htable.sht_rm("ban", "192.0.2.1")
            end
            """)
        try a.route(Msg.options())
        #expect(a.context.worker.vars["inc"] == .int(6))
        try b.route(Msg.options())
        let v = b.context.worker.vars
        #expect(v["ip"] == .string("blocked"))
        #expect(v["count"] == .int(6))
        #expect(v["hits"] == .int(3))
        if case .int(let ex)? = v["ex"] { #expect(ex > 0 && ex <= 30) } else { Issue.record("no $shtex") }
        #expect(v["cnt"] == .int(4))
        #expect(v["local"] == .int(0))
        #expect(v["dec"] == .int(5))
        // Items are Redis keys with Redis' expiry (autoexpire=100).
        #expect(try server.cli(["-n", "3", "GET", "ht:ban:count"]) == "5")
        let ttl = Int(try server.cli(["-n", "3", "TTL", "ht:ban:count"])) ?? -1
        #expect(ttl > 0 && ttl <= 100)
        #expect(try server.cli(["-n", "3", "EXISTS", "ht:ban:192.0.2.1"]) == "0")
        #expect(a.runtime.htables.table("ban")?.get("192.0.2.1") == nil)
        #expect(a.runtime.htables.table("ban")?.count == 3)
        // The htable RPCs of instance B see what instance A wrote.
        let get = try #require(HtableModule.rpcMethods.first { $0.name == "htable.get" })
        let item = try get.handler(b.runtime, RPCParameters([.string("ban"), .string("hits")]))
        guard case .object(let o) = item, case .object(let fields)? = o["item"] else { Issue.record("\(item)"); return }
        #expect(fields["value"] == .int(3))
        let sets = try #require(HtableModule.rpcMethods.first { $0.name == "htable.sets" })
        _ = try sets.handler(b.runtime, RPCParameters([.string("ban"), .string("rpc"), .string("from B")]))
        #expect(a.runtime.htables.table("ban")?.get("rpc") == .string("from B"))
    }

    @Test func aRedisTableNeedsRedisURL() {
        #expect(throws: (any Error).self) {
            _ = try ScriptHarness(script: "function ksr_request_route() end",
                                  config: ModuleConfiguration(params: ["htable": ["htable": ["ban=>size=4;redis=1"]]]))
        }
    }
}

// MARK: - Sentinel

@Suite(.serialized) struct RedisSentinelTests {
    /// A master, one replica, three sentinels: the master is killed; usrloc on
    /// `redis+sentinel://` keeps what reached the replica and saves on the promoted replica without a restart.
    @Test func usrlocFollowsAFailover() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("starling-sentinel-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let directory = dir.path
        let master = try RedisServer()
        defer { master.stop() }
        let replica = try RedisServer(extra: ["--replicaof", "127.0.0.1", String(master.port)])
        defer { replica.stop() }
        let sentinels = try (0..<3).map { _ in try RedisSentinel(master: "mymaster", masterPort: master.port, directory: directory) }
        defer { for s in sentinels { s.stop() } }
        // The replica is in sync and every sentinel knows it.
        #expect(try eventually(.seconds(30)) { try replica.cli(["INFO", "replication"]).contains("master_link_status:up") })
        let url = "redis+sentinel://" + sentinels.map { "127.0.0.1:\($0.port)" }.joined(separator: ",") + "/mymaster/0"
        // redis_wait_replicas = 1 on `w`: its 200 comes only once the replica has the save.
        let w = try ulHarness(url, extra: ["redis_wait_replicas": ["1"], "redis_wait_timeout": ["2000"]])
        defer { w.runtime.usrloc.shared?.stop() }
        let h = try ulHarness(url)
        defer { h.runtime.usrloc.shared?.stop() }
        try w.route(reg("alice", "<sip:alice@192.0.2.30:5060>", callID: "s1", cseq: 1))
        #expect(lastStatus(w) == 200)
        #expect(try replica.cli(["EXISTS", "ul:location:alice"]) == "1")
        master.stop()
        // REGISTERs fail (500) until the sentinels promote the replica; then Starling saves there.
        var cseq = 1
        #expect(try eventually(.seconds(45)) {
            cseq += 1
            try h.route(reg("bob", "<sip:bob@192.0.2.31:5060>", callID: "s2", cseq: cseq))
            return lastStatus(h) == 200
        })
        #expect(try replica.cli(["ROLE"]).hasPrefix("master"))
        #expect(try replica.cli(["EXISTS", "ul:location:bob"]) == "1")
        // `w` follows the new master too; it has no replica left, so WAIT 1 fails: stored, but 500.
        #expect(try eventually(.seconds(20)) {
            cseq += 1
            try w.route(reg("carol", "<sip:carol@192.0.2.32:5060>", callID: "s3", cseq: cseq))
            return try replica.cli(["EXISTS", "ul:location:carol"]) == "1"
        })
        #expect(lastStatus(w) == 500)
        try h.route(invite("alice", 9))
        #expect(h.context.worker.vars["lookup"] == .int(1))
        #expect(h.context.worker.vars["ruri"] == .string("sip:alice@192.0.2.30:5060"))
    }
}
