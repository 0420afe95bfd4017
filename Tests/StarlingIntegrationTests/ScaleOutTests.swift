import Foundation
import Testing
import StarlingTestSupport

#if canImport(Glibc)
import Glibc
#endif

/// Scale-out on Redis (issue 19) with the real binary, a real redis-server, SIPp and Kamailio 5.6:
/// KSR.ndb_redis answers exactly as Kamailio's ndb_redis; three Starling instances on 127.0.0.11-13
/// share usrloc (db_mode 3) in one Redis, phones registered through one are called through the others,
/// and a killed instance loses nothing.
@Suite(.serialized)
struct ScaleOutTests {
    static let clusterScript = PackagePaths.root.appendingPathComponent("examples/cluster/cluster.lua")

    /// `<directory>/<name>` with usrloc in Redis at `url` (db_mode 3) and `extra` TOML lines after it.
    static func usrlocConfig(_ directory: URL, url: String, name: String = "starling.toml", extra: String = "") throws -> URL {
        let file = directory.appendingPathComponent(name)
        try "[modparam.usrloc]\ndb_url = \"\(url)\"\ndb_mode = 3\n\(extra)".write(to: file, atomically: true, encoding: .utf8)
        return file
    }

    /// An instance running `script` (default examples/cluster/cluster.lua) with `config` on ip:port.
    static func instance(_ directory: URL, config: URL, ip: String, port: Int, log: String, workers: Int = 2,
                         script: URL = clusterScript) throws -> ServerProcess {
        try Starling.start(script: script, port: port, workers: workers, extra: ["--config", config.path], directory: directory,
                           ip: ip, logName: log)
    }

    /// Runs ndb_redis commands on OPTIONS and answers 200 with every result in one header.
    static let ndbScript = """
        function ksr_request_route()
          if not KSR.is_OPTIONS() then return end
          local out = {}
          local function add(v) out[#out + 1] = tostring(v) end
          add(KSR.ndb_redis.redis_cmd("srv1", "DEL greeting list h", "r"))
          add(KSR.ndb_redis.redis_cmd("srv1", "SET greeting hello", "r"))
          add(KSR.pv.get("$redis(r=>type)")); add(KSR.pv.get("$redis(r=>info)")); add(KSR.pv.get("$redis(r=>value)"))
          add(KSR.ndb_redis.redis_cmd_p1("srv1", "GET %s", "greeting", "r")); add(KSR.pv.get("$redis(r=>value)"))
          add(KSR.pv.get("$redis(r=>info)")); add(KSR.pv.get("$redis(r=>size)"))
          add(KSR.ndb_redis.redis_cmd_p2("srv1", "HSET h %s %s", "f1", "two words", "r")); add(KSR.pv.get("$redis(r=>value)"))
          add(KSR.ndb_redis.redis_cmd_p1("srv1", "HGET h %s", "f1", "r")); add(KSR.pv.get("$redis(r=>value)"))
          add(KSR.ndb_redis.redis_cmd_p3("srv1", "RPUSH %s %s %s", "list", "a", "b", "r"))
          add(KSR.ndb_redis.redis_cmd("srv1", "LRANGE list 0 -1", "a"))
          add(KSR.pv.get("$redis(a=>size)")); add(KSR.pv.get("$redis(a=>type)")); add(KSR.pv.get("$redis(a=>value)"))
          add(KSR.pv.get("$redis(a=>value[0])")); add(KSR.pv.get("$redis(a=>value[1])")); add(KSR.pv.get("$redis(a=>value[2])"))
          add(KSR.pv.get("$redis(a=>type[1])")); add(KSR.pv.get("$redis(a=>type[5])"))
          add(KSR.ndb_redis.redis_cmd("srv1", "EVAL return{1,{'x',7},'y'} 0", "n"))
          add(KSR.pv.get("$redis(n=>value[1]=>value[0])")); add(KSR.pv.get("$redis(n=>value[1]=>value[1])"))
          add(KSR.pv.get("$redis(n=>value[1]=>type[1])")); add(KSR.pv.get("$redis(n=>value[1]=>size)"))
          add(KSR.pv.get("$redis(n=>value[0])")); add(KSR.pv.get("$redis(n=>value[2])"))
          add(KSR.ndb_redis.redis_cmd("srv1", "INCR greeting", "e"))
          add(KSR.pv.get("$redis(e=>type)")); add(KSR.pv.get("$redis(e=>info)")); add(KSR.pv.get("$redis(e=>value)"))
          add(KSR.ndb_redis.redis_cmd("srv1", "GET nothing", "z"))
          add(KSR.pv.get("$redis(z=>type)")); add(KSR.pv.get("$redis(z=>value)")); add(KSR.pv.get("$redis(z=>info)"))
          add(KSR.ndb_redis.redis_cmd("srv1", "INCRBY counter 5", "i")); add(KSR.pv.get("$redis(i=>value)"))
          add(KSR.pv.get("$redis(i=>type)"))
          add(KSR.ndb_redis.redis_free("r")); add(KSR.pv.get("$redis(r=>type)"))
          add(KSR.ndb_redis.redis_cmd("nosuch", "PING", "x"))
          add(KSR.ndb_redis.redis_cmd("srv1", "GET %s", "x"))
          add(KSR.ndb_redis.redis_cmd("srv1", "DEL counter", "r"))
          KSR.hdr.append_to_reply("X-Result: " .. table.concat(out, "|") .. "\\r\\n")
          KSR.sl.send_reply(200, "OK")
        end
        """

    /// The X-Result header of the reply to one OPTIONS sent to 127.0.0.1:`port`.
    static func result(port: Int) throws -> String? {
        let endpoint = try UDPEndpoint()
        try endpoint.send(SIPProbe.options(requestURI: "sip:127.0.0.1:\(port)", from: endpoint), to: port)
        guard let reply = endpoint.receive(timeout: .seconds(5)) else { return nil }
        return SIPProbe.header("X-Result", in: reply)
    }

    @Test func ndbRedisAnswersAsKamailios() throws {
        let directory = try PackagePaths.makeTemporaryDirectory("ndb-redis")
        let redis = try RedisServer()
        defer { redis.stop() }
        let script = directory.appendingPathComponent("ndb.lua")
        try Self.ndbScript.write(to: script, atomically: true, encoding: .utf8)
        // Each in a database of its own on the same server.
        let kport = try Ports.freeUDPPort()
        let kamailio = try Kamailio.start(script: script, port: kport, children: 1, modules: ["sl", "pv", "ndb_redis"],
                                          extra: "modparam(\"ndb_redis\", \"server\", \"name=srv1;addr=127.0.0.1;port=\(redis.port);db=1\")",
                                          directory: directory)
        defer { kamailio.stop() }
        let config = directory.appendingPathComponent("starling.toml")
        try """
            [modparam.ndb_redis]
            server = "name=srv1;addr=127.0.0.1;port=\(redis.port);db=2"
            """.write(to: config, atomically: true, encoding: .utf8)
        let sport = try Ports.freeUDPPort()
        let starling = try Starling.start(script: script, port: sport, extra: ["--config", config.path], directory: directory)
        defer { starling.stop() }

        let reference = try #require(try Self.result(port: kport), "kamailio:\n\(kamailio.logTail())")
        let ours = try #require(try Self.result(port: sport), "starling:\n\(starling.logTail())")
        #expect(ours == reference)
        #expect(reference.hasPrefix("0|0|5|OK|nil|0|hello|hello|nil|0|1|0|two words|0|0|2|2|nil|a|b|nil|1|nil|"), "\(reference)")
        #expect(try redis.cli(["-n", "2", "HGET", "h", "f1"]) == "two words")
    }

    /// A REGISTER for `user` with Contact sip:user@127.0.0.1:`contactPort`, sent to ip:port; the status line.
    static func register(_ user: String, contactPort: Int, to ip: String, port: Int, expires: Int = 600) throws -> String? {
        let endpoint = try UDPEndpoint()
        let callID = "\(user)-\(UUID().uuidString.prefix(8))"
        let msg = "REGISTER sip:\(ip) SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:\(endpoint.port);branch=z9hG4bK\(callID)\r\n"
            + "Max-Forwards: 70\r\nFrom: <sip:\(user)@\(ip)>;tag=r1\r\nTo: <sip:\(user)@\(ip)>\r\nCall-ID: \(callID)\r\n"
            + "CSeq: 1 REGISTER\r\nContact: <sip:\(user)@127.0.0.1:\(contactPort)>\r\nExpires: \(expires)\r\nContent-Length: 0\r\n\r\n"
        try endpoint.send(msg, to: port, ip: ip)
        return endpoint.receive(timeout: .seconds(5))?.components(separatedBy: "\r\n").first
    }

    @Test func callsCrossInstancesAndSurviveAKill() throws {
        let directory = try PackagePaths.makeTemporaryDirectory("scale-out")
        let redis = try RedisServer()
        defer { redis.stop() }
        let config = try Self.usrlocConfig(directory, url: redis.url())
        let ips = ["127.0.0.11", "127.0.0.12", "127.0.0.13"]
        let ports = try Ports.freeUDPPorts(3)
        func start(_ i: Int) throws -> ServerProcess {
            try Self.instance(directory, config: config, ip: ips[i], port: ports[i], log: "starling\(i).log")
        }
        var instances = try (0..<3).map(start)
        defer { for s in instances { s.stop() } }
        // Two phones (SIPp UAS), registered through instance 0.
        let phones = try (0..<2).map { try SIPp.uas(directory: directory, tag: "phone\($0)") }
        defer { for p in phones { p.stop() } }
        for (n, p) in phones.enumerated() {
            #expect(try Self.register("phone\(n)", contactPort: p.port, to: ips[0], port: ports[0]) == "SIP/2.0 200 OK",
                    "\(instances[0].logTail())")
        }
        #expect(try redis.cli(["EXISTS", "ul:location:phone0"]) == "1")

        func call(_ user: String, via i: Int, calls: Int = 3, tag: String) throws -> SIPpResult {
            try SIPp.runUAC(target: ports[i], rate: 10, calls: calls, directory: directory, tag: tag, service: user,
                            extra: ["-rsa", "\(ips[i]):\(ports[i])"], timeout: .seconds(60))
        }
        // Through the two other instances.
        for (i, user) in [(1, "phone0"), (2, "phone1")] {
            let r = try call(user, via: i, tag: "via\(i)-\(user)")
            #expect(r.successfulCalls == 3 && r.failedCalls == 0, "\(r)\n\(instances[i].logTail())")
        }
        // kill -9 the instance the phones registered through: the others still reach them.
        instances[0].stop(signal: SIGKILL)
        for (i, user) in [(1, "phone1"), (2, "phone0")] {
            let r = try call(user, via: i, tag: "afterkill\(i)-\(user)")
            #expect(r.successfulCalls == 3 && r.failedCalls == 0, "\(r)\n\(instances[i].logTail())")
        }
        // Started again, it serves them at once (nothing to load: Redis has them).
        instances[0] = try start(0)
        let r = try call("phone1", via: 0, tag: "restarted")
        #expect(r.successfulCalls == 3 && r.failedCalls == 0, "\(r)\n\(instances[0].logTail())")
        // An unknown user: 404 through any instance.
        let unknown = try SIPp.runUAC(scenario: PackagePaths.scenario("options.xml"), target: ports[2], rate: 10, calls: 1,
                                      directory: directory, tag: "unknown", service: "nobody",
                                      extra: ["-set", "expected", "404", "-rsa", "\(ips[2]):\(ports[2])"])
        #expect(unknown.successfulCalls == 1, "\(unknown)")
    }

    /// 1,000 REGISTERs of one AoR from 10 devices, 5 through each of two instances at once (two
    /// Python threads, sequential per device, retransmitting on a lost datagram and sending again
    /// after a 500, as a phone would); the last REGISTER of devices 0 and 5 removes them. Every
    /// REGISTER ends in a 200 and exactly the 8 other contacts remain (RFC 3261 §10.3).
    @Test func concurrentSavesOfOneAoRThroughTwoInstances() throws {
        let directory = try PackagePaths.makeTemporaryDirectory("scale-out-same-aor")
        let redis = try RedisServer()
        defer { redis.stop() }
        let config = try Self.usrlocConfig(directory, url: redis.url())
        let ports = try Ports.freeUDPPorts(2)
        let a = try Self.instance(directory, config: config, ip: "127.0.0.11", port: ports[0], log: "a.log")
        defer { a.stop() }
        let b = try Self.instance(directory, config: config, ip: "127.0.0.12", port: ports[1], log: "b.log")
        defer { b.stop() }
        let python = try Requirements.tool("python3", package: "python3")
        let run = try Command.run(python, ["-c", """
            import socket, sys, threading, time
            ports = [int(sys.argv[1]), int(sys.argv[2])]
            retried = [0]
            ips = ["127.0.0.11", "127.0.0.12"]
            bad = []
            def worker(i):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); s.settimeout(2)
                me = s.getsockname()[1]
                for rnd in range(1, 101):
                    for d in range(i * 5, i * 5 + 5):
                        exp = 0 if (rnd == 100 and d % 5 == 0) else 600
                        msg = (f"REGISTER sip:example.com SIP/2.0\\r\\nVia: SIP/2.0/UDP 127.0.0.1:{me};branch=z9hG4bK{d}x{rnd}\\r\\n"
                               f"Max-Forwards: 70\\r\\nFrom: <sip:shared@example.com>;tag={d}\\r\\nTo: <sip:shared@example.com>\\r\\n"
                               f"Call-ID: dev{d}\\r\\nCSeq: {rnd} REGISTER\\r\\nContact: <sip:dev{d}@192.0.2.{d + 1}:5060>\\r\\n"
                               f"Expires: {exp}\\r\\nContent-Length: 0\\r\\n\\r\\n").encode()
                        status = None
                        # A lost datagram is retransmitted; a 500 (the AoR kept changing under the save)
                        # is sent again later, as a phone does: it was not stored.
                        for attempt in range(10):
                            s.sendto(msg, (ips[i], ports[i]))
                            try:
                                while True:
                                    r = s.recv(65535).decode()
                                    if f"z9hG4bK{d}x{rnd}" in r:
                                        status = r.split(" ")[1]; break
                                if status == "500":
                                    retried[0] += 1; time.sleep(0.01); continue
                                break
                            except socket.timeout:
                                continue
                        if status != "200": bad.append((i, d, rnd, status))
            ts = [threading.Thread(target=worker, args=(i,)) for i in (0, 1)]
            [t.start() for t in ts]; [t.join() for t in ts]
            print("bad", bad[:5], len(bad), "retried after 500:", retried[0])
            """, String(ports[0]), String(ports[1])], timeout: .seconds(120))
        print("same-AoR REGISTERs through two instances: \(run.output)")
        #expect(run.status == 0 && run.output.contains("bad [] 0"), "\(run.output)\n\(a.logTail())\n\(b.logTail())")
        let values = try redis.cli(["HVALS", "ul:location:shared"])
        let got = Set((0..<10).filter { values.contains("sip:dev\($0)@192.0.2.\($0 + 1):5060") })
        #expect(got == [1, 2, 3, 4, 6, 7, 8, 9], "\(values)")
        #expect(try redis.cli(["HLEN", "ul:location:shared"]) == "9")
    }

    @Test func registerGets500WhileRedisIsDown() throws {
        let directory = try PackagePaths.makeTemporaryDirectory("scale-out-down")
        var redis = try RedisServer()
        defer { redis.stop() }
        let redisPort = redis.port
        let config = try Self.usrlocConfig(directory, url: redis.url())
        let port = try Ports.freeUDPPort()
        let starling = try Self.instance(directory, config: config, ip: "127.0.0.1", port: port, log: "starling.log")
        defer { starling.stop() }
        #expect(try Self.register("carol", contactPort: 5999, to: "127.0.0.1", port: port) == "SIP/2.0 200 OK")
        redis.stop()
        #expect(try Self.register("carol", contactPort: 5998, to: "127.0.0.1", port: port) == "SIP/2.0 500 Server Internal Error")
        #expect(starling.isRunning)
        #expect(starling.log.contains("Redis"), "\(starling.logTail())")
        redis = try RedisServer(port: redisPort)
        var last: String? = nil
        let back = try TestPorts.wait(timeout: .seconds(15)) {
            last = try? Self.register("carol", contactPort: 5998, to: "127.0.0.1", port: port)
            return last == "SIP/2.0 200 OK"
        }
        #expect(back, "last reply \(last ?? "none")\n\(starling.logTail())")
    }

    /// Redis master + replica + three sentinels, instance A (WAIT 1: 200 only once the replica has the
    /// save) under a REGISTER load while the master is killed with SIGKILL, instances B and C (no WAIT).
    /// After the failover: every REGISTER that got a 200 (before the kill or after it) is in the promoted
    /// master; a phone that moved to a new contact through C during the failover is reached there through
    /// A and B, which had its old contact cached (the old contact is dead, so a call routed to the stale
    /// contact would fail); and
    /// once the old master is back as a replica, A's REGISTERs get 200 again: both instances followed the
    /// new master without a restart.
    @Test func aFailoverUnderLoadLosesNoAcknowledgedRegistrationAndRoutesToNoStaleContact() throws {
        let directory = try PackagePaths.makeTemporaryDirectory("scale-out-failover")
        var master = try RedisServer()
        defer { master.stop() }
        let masterPort = master.port
        let replica = try RedisServer(extra: ["--replicaof", "127.0.0.1", String(masterPort)])
        defer { replica.stop() }
        // down-after 5 s, not the helper's 1 s: the old master comes back empty and becomes the only
        // replica, so a second, spurious failover (the new master slow to answer the sentinels' PINGs
        // for a second while the whole suite loads both cores) would promote it and wipe every save.
        // Seen once in a full-suite run: config-epoch 2, the old master's port as master.
        let sentinels = try (0..<3).map { _ in
            try RedisSentinel(master: "mymaster", masterPort: masterPort, downAfterMs: 5000, directory: directory.path)
        }
        defer { for s in sentinels { s.stop() } }
        #expect(try TestPorts.wait(timeout: .seconds(30)) {
            (try? replica.cli(["INFO", "replication"]).contains("master_link_status:up")) == true
        })
        let url = "redis+sentinel://" + sentinels.map { "127.0.0.1:\($0.port)" }.joined(separator: ",") + "/mymaster/0"
        let ips = ["127.0.0.11", "127.0.0.12", "127.0.0.13"]
        let ports = try Ports.freeUDPPorts(3)
        func start(_ i: Int, wait: Int) throws -> ServerProcess {
            let config = try Self.usrlocConfig(directory, url: url, name: "\(i).toml",
                                               extra: "redis_wait_replicas = \(wait)\nredis_wait_timeout = 1000\n")
            return try Self.instance(directory, config: config, ip: ips[i], port: ports[i], log: "\(["a", "b", "c"][i]).log")
        }
        let a = try start(0, wait: 1)
        defer { a.stop() }
        let b = try start(1, wait: 0)
        defer { b.stop() }
        let c = try start(2, wait: 0)
        defer { c.stop() }
        func calls(via i: Int, tag: String) throws -> SIPpResult {
            try SIPp.runUAC(target: ports[i], rate: 10, calls: 3, directory: directory, tag: tag, service: "phone",
                            extra: ["-rsa", "\(ips[i]):\(ports[i])"], timeout: .seconds(60))
        }
        // The phone registers through A and is called through A and B (both cache its contact).
        let oldPhone = try SIPp.uas(directory: directory, tag: "old-phone")
        defer { oldPhone.stop() }
        #expect(try Self.register("phone", contactPort: oldPhone.port, to: ips[0], port: ports[0]) == "SIP/2.0 200 OK",
                "\(a.logTail())")
        for i in [0, 1] {
            let r = try calls(via: i, tag: "before\(i)")
            #expect(r.successfulCalls == 3 && r.failedCalls == 0, "\(r)\n\(i == 0 ? a.logTail() : b.logTail())")
        }

        // REGISTER load through A: one new AoR per REGISTER, retransmitted like a phone (T1 = 500 ms,
        // 4 s without a final answer = no answer). It ends after 30 REGISTERs in a row got 200 once
        // some had not (A is back to normal), or after 75 s.
        let results = directory.appendingPathComponent("load.txt")
        let python = try Requirements.tool("python3", package: "python3")
        let load = try PeerProcess([python, "-u", "-c", """
            import socket, sys, time
            ip, port, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0))
            me = s.getsockname()[1]
            trace = open(out + ".trace", "w")
            print("ready", flush=True)
            lines, trouble, good, start = [], False, 0, time.monotonic()
            n = 0
            while time.monotonic() - start < 75:
                msg = (f"REGISTER sip:{ip} SIP/2.0\\r\\nVia: SIP/2.0/UDP 127.0.0.1:{me};branch=z9hG4bKload{n}\\r\\n"
                       f"Max-Forwards: 70\\r\\nFrom: <sip:load{n}@{ip}>;tag=l{n}\\r\\nTo: <sip:load{n}@{ip}>\\r\\n"
                       f"Call-ID: load{n}\\r\\nCSeq: 1 REGISTER\\r\\nContact: <sip:load{n}@192.0.2.9:5060>\\r\\n"
                       f"Expires: 600\\r\\nContent-Length: 0\\r\\n\\r\\n").encode()
                # The REGISTER is handled statelessly: a retransmission that overtakes a slow save is
                # answered 400 (same Call-ID and CSeq), so the answer that counts is the original's
                # 200 or 500; a 400 alone counts as it is.
                status, sent, wait, next_send = "none", time.monotonic(), 0.5, time.monotonic() + 0.5
                s.sendto(msg, (ip, port))
                while status not in ("200", "500") and time.monotonic() - sent < 4:
                    s.settimeout(max(0.01, next_send - time.monotonic()))
                    try:
                        r = s.recv(65535).decode()
                        code = r.split(" ")[1]
                        trace.write(f"{n} {time.monotonic() - start:.3f} {r}\\n")
                        if (f"z9hG4bKload{n};" in r or f"z9hG4bKload{n}\\r" in r) and code != "100":
                            if status == "none" or code in ("200", "500"): status = code
                    except socket.timeout:
                        if status == "none":
                            s.sendto(msg, (ip, port))
                        wait = min(wait * 2, 2); next_send = time.monotonic() + wait
                lines.append(f"{n} {status} {sent - start:.3f}")
                if status == "200":
                    good += 1
                else:
                    trouble, good = True, 0
                n += 1
                if trouble and good >= 30: break
                time.sleep(0.02)
            open(out, "w").write("\\n".join(lines) + "\\n")
            """, ips[0], String(ports[0]), results.path], package: "python3", readFirstLine: true)
        defer { load.stop() }

        // Two seconds into the load, the master dies.
        Thread.sleep(forTimeInterval: 2)
        master.stop()
        // The phone moves during the failover: its old contact dies, it registers its new one through C
        // (500 until the sentinels have promoted the replica, then 200).
        oldPhone.stop()
        let newPhone = try SIPp.uas(directory: directory, tag: "new-phone")
        defer { newPhone.stop() }
        var last: String? = nil
        let moved = try TestPorts.wait(timeout: .seconds(45)) {
            last = try? Self.register("phone", contactPort: newPhone.port, to: ips[2], port: ports[2])
            return last == "SIP/2.0 200 OK"
        }
        #expect(moved, "last reply \(last ?? "none")\n\(c.logTail())")
        #expect(try replica.cli(["ROLE"]).hasPrefix("master"))
        // Calls through B reach the new contact (A's turn comes after the load: while no replica is
        // left, every REGISTER of the load holds one of A's workers in WAIT for redis_wait_timeout).
        let r = try calls(via: 1, tag: "after1")
        #expect(r.successfulCalls == 3 && r.failedCalls == 0, "\(r)\n\(b.logTail())")
        // The old master comes back empty; the sentinels make it a replica of the new master, so WAIT 1
        // is met again and the load through A recovers.
        master = try RedisServer(port: masterPort)
        let finished = try TestPorts.wait(timeout: .seconds(90)) { !load.isRunning }
        #expect(finished, "REGISTER load still running\n\(a.logTail())")
        let text = (try? String(contentsOf: results, encoding: .utf8)) ?? ""
        let lines: [Substring] = text.split(separator: "\n")
        var acknowledged: [String] = []
        for line in lines {
            let fields = line.split(separator: " ")
            if fields.count == 3 && fields[1] == "200" { acknowledged.append(String(fields[0])) }
        }
        let other = lines.filter { !$0.contains(" 200 ") }
        print("failover load: \(lines.count) REGISTERs, \(acknowledged.count) acknowledged; others: \(other.prefix(40))")
        #expect(acknowledged.count >= 60, "\(lines.suffix(20))\n\(a.logTail())")
        // Nothing but 200, 500 (not stored, or stored without the replica's acknowledgment) or no answer
        // while the master was gone.
        #expect(other.allSatisfy { $0.contains(" 500 ") || $0.contains(" none ") }, "\(other)")
        // Every acknowledged REGISTER is in the promoted master.
        var missing: [String] = []
        for chunk in stride(from: 0, to: acknowledged.count, by: 200) {
            let keys = acknowledged[chunk..<min(chunk + 200, acknowledged.count)]
            let n = Int(try replica.cli(["EXISTS"] + keys.map { "ul:location:load\($0)" })) ?? -1
            if n != keys.count {
                missing += try keys.filter { try replica.cli(["EXISTS", "ul:location:load\($0)"]) != "1" }
            }
        }
        #expect(missing.isEmpty, "acknowledged but lost: \(missing)")
        #expect(lines.last.map { $0.contains(" 200 ") } == true, "A did not recover: \(lines.suffix(5))\n\(a.logTail())")
        // A, which had the old contact cached before the failover, routes to the new one.
        let throughA = try calls(via: 0, tag: "after0")
        #expect(throughA.successfulCalls == 3 && throughA.failedCalls == 0, "\(throughA)\n\(a.logTail())")
    }

    /// The cluster named by DNS: dnsmasq serves `_sip._udp.cluster.test` SRV records for the three
    /// instances (priorities 10, 20, 30) and their A records. A front proxy (a fourth Starling, the
    /// PBX side, `dns_servers` = that dnsmasq, `use_dns_failover`) relays calls to `sip:cluster.test`:
    /// they go to the first instance; killed with SIGKILL, the next SRV target takes the calls; started
    /// again, it serves them at once. The phone registered through the second instance throughout.
    @Test func instancesNamedBySRVRecordsTakeOverFromAKilledOne() throws {
        let directory = try PackagePaths.makeTemporaryDirectory("scale-out-srv")
        let redis = try RedisServer()
        defer { redis.stop() }
        let config = try Self.usrlocConfig(directory, url: redis.url())
        let ips = ["127.0.0.11", "127.0.0.12", "127.0.0.13"]
        let ports = try Ports.freeUDPPorts(4)
        var srv: [String] = []
        for i in 0..<3 {
            srv += ["--srv-host=_sip._udp.cluster.test,st\(i + 1).cluster.test,\(ports[i]),\((i + 1) * 10),0",
                    "--host-record=st\(i + 1).cluster.test,\(ips[i])"]
        }
        let (dns, dnsPort) = try DNSMasq.start(naptr: [], extra: srv, directory: directory)
        defer { dns.stop() }
        func start(_ i: Int) throws -> ServerProcess {
            try Self.instance(directory, config: config, ip: ips[i], port: ports[i], log: "st\(i + 1).log")
        }
        var instances = try (0..<3).map(start)
        defer { for s in instances { s.stop() } }
        // The front: every new call to sip:cluster.test (SRV, then A), record-routed; in-dialog requests
        // follow the route.
        let front = directory.appendingPathComponent("front.lua")
        try """
            function ksr_request_route()
              if KSR.is_CANCEL() then
                if KSR.tm.t_check_trans() > 0 then KSR.tm.t_relay() end
                KSR.x.exit()
              end
              if KSR.tm.t_check_trans() == 0 then KSR.x.exit() end
              if KSR.siputils.has_totag() > 0 then
                if KSR.rr.loose_route() > 0 then
                  if KSR.is_ACK() then KSR.forward() else KSR.tm.t_relay() end
                else
                  KSR.sl.sl_send_reply(404, "Not Here")
                end
                KSR.x.exit()
              end
              KSR.rr.record_route()
              KSR.setdsturi("sip:cluster.test")
              if KSR.tm.t_relay() < 0 then KSR.sl.sl_reply_error() end
            end
            """.write(to: front, atomically: true, encoding: .utf8)
        let frontConfig = directory.appendingPathComponent("front.toml")
        try """
            [core]
            dns_servers = ["127.0.0.1:\(dnsPort)"]
            [modparam.tm]
            use_dns_failover = 1
            fr_timer = 2000
            """.write(to: frontConfig, atomically: true, encoding: .utf8)
        let proxy = try Self.instance(directory, config: frontConfig, ip: "127.0.0.1", port: ports[3], log: "front.log",
                                      script: front)
        defer { proxy.stop() }

        let phone = try SIPp.uas(directory: directory, tag: "phone", traceMessages: true)
        defer { phone.stop() }
        #expect(try Self.register("phone", contactPort: phone.port, to: ips[1], port: ports[1]) == "SIP/2.0 200 OK",
                "\(instances[1].logTail())")
        /// Three calls through the front; the instances whose address is in the Via headers the phone saw.
        func calls(_ tag: String) throws -> (SIPpResult, Set<String>) {
            let before = phone.messages.count
            let r = try SIPp.runUAC(target: ports[3], rate: 5, calls: 3, directory: directory, tag: tag, service: "phone",
                                    timeout: .seconds(60))
            let seen = Set(ips.filter { String(phone.messages.dropFirst(before)).contains("SIP/2.0/UDP \($0):") })
            return (r, seen)
        }
        var (r, seen) = try calls("first")
        #expect(r.successfulCalls == 3 && r.failedCalls == 0, "\(r)\n\(proxy.logTail())")
        #expect(seen == [ips[0]], "\(seen)")
        // kill -9 the first SRV target: the front's DNS failover takes the next one.
        instances[0].stop(signal: SIGKILL)
        (r, seen) = try calls("killed")
        #expect(r.successfulCalls == 3 && r.failedCalls == 0, "\(r)\n\(proxy.logTail())")
        #expect(seen == [ips[1]], "\(seen)")
        // Started again, it serves at once.
        instances[0] = try start(0)
        (r, seen) = try calls("restarted")
        #expect(r.successfulCalls == 3 && r.failedCalls == 0, "\(r)\n\(proxy.logTail())")
        #expect(seen == [ips[0]], "\(seen)")
    }

    /// REGISTER saved with the NAT branch flag (7: the contact is pinged); anything else a lookup
    /// answered 200 (found) or 404.
    static let natRegistrarScript = """
        function ksr_request_route()
          if KSR.is_REGISTER() then
            KSR.setbflag(7)
            KSR.registrar.save("location", 0)
            return
          end
          KSR.sl.send_reply(KSR.registrar.lookup("location") == 1 and 200 or 404, "Lookup")
        end
        """

    /// NAT keepalives in shared mode: a contact is pinged by the instance that saved it, not by every
    /// instance that knows it; and it stays pinged when that instance's cache loses the AoR (another
    /// instance saved a second contact of it, which that instance pings).
    @Test func natKeepalivesComeFromTheSavingInstanceOnly() throws {
        let directory = try PackagePaths.makeTemporaryDirectory("scale-out-natping")
        let redis = try RedisServer()
        defer { redis.stop() }
        let script = directory.appendingPathComponent("registrar.lua")
        try Self.natRegistrarScript.write(to: script, atomically: true, encoding: .utf8)
        let config = try Self.usrlocConfig(directory, url: redis.url(), extra: """
            [modparam.nathelper]
            natping_interval = 1
            sipping_bflag = 7
            sipping_from = "sip:pinger@example.com"
            """)
        let ips = ["127.0.0.11", "127.0.0.12"]
        let ports = try Ports.freeUDPPorts(2)
        let a = try Self.instance(directory, config: config, ip: ips[0], port: ports[0], log: "a.log", workers: 1, script: script)
        defer { a.stop() }
        let b = try Self.instance(directory, config: config, ip: ips[1], port: ports[1], log: "b.log", workers: 1, script: script)
        defer { b.stop() }
        let phones = try (0..<2).map { _ in try UDPEndpoint() }
        func register(_ n: Int, through i: Int) throws {
            let p = phones[n]
            try p.send("REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:\(p.port);branch=z9hG4bKnp\(n)\r\n"
                       + "Max-Forwards: 70\r\nFrom: <sip:carol@example.com>;tag=\(n)\r\nTo: <sip:carol@example.com>\r\n"
                       + "Call-ID: natping-\(n)\r\nCSeq: 1 REGISTER\r\nContact: <sip:carol@127.0.0.1:\(p.port)>\r\n"
                       + "Expires: 60\r\nContent-Length: 0\r\n\r\n", to: ports[i], ip: ips[i])
            var reply: String?
            repeat { reply = p.receive(timeout: .seconds(3)) } while reply?.hasPrefix("OPTIONS") == true
            #expect(reply?.hasPrefix("SIP/2.0 200 OK") == true, "\(reply ?? "no reply")")
        }
        /// The instances (by their Via address) whose OPTIONS reached phone `n` within `seconds`.
        func pingers(_ n: Int, seconds: Int) -> [String] {
            var from: [String] = []
            let clock = ContinuousClock()
            let deadline = clock.now + .seconds(seconds)
            while clock.now < deadline {
                guard let m = phones[n].receive(timeout: .milliseconds(300)), m.hasPrefix("OPTIONS ") else { continue }
                from += ips.filter { m.contains("Via: SIP/2.0/UDP \($0):") }
            }
            return from
        }
        // Phone 0 registers through A; B looks it up (B caches the AoR with A's contact).
        try register(0, through: 0)
        #expect(try Self.lookup("carol", via: ips[1], port: ports[1]) == "SIP/2.0 200 Lookup")
        var seen = pingers(0, seconds: 3)
        #expect(!seen.isEmpty && seen.allSatisfy { $0 == ips[0] }, "\(seen)")
        // Phone 1 registers the same AoR through B: A's cached copy is invalidated, A still pings
        // phone 0 (read again from Redis), B pings phone 1 only.
        try register(1, through: 1)
        seen = pingers(0, seconds: 3)
        #expect(!seen.isEmpty && seen.allSatisfy { $0 == ips[0] }, "phone 0: \(seen)\n\(a.logTail())")
        seen = pingers(1, seconds: 3)
        #expect(!seen.isEmpty && seen.allSatisfy { $0 == ips[1] }, "phone 1: \(seen)\n\(b.logTail())")
    }

    /// The periodic sweep (usrloc `timer_interval = 1`): phones register a long-lived and a short-lived
    /// contact each through instance A, which is then killed with SIGKILL (so no later save of A prunes
    /// its AoRs). B and C sweep one at a time: every expired contact leaves Redis once (the swept
    /// counters of B and C add up to exactly their number), each AoR keeps its live contact and its
    /// TTL, and B's ul.lookup / ul.dump show only the live contacts.
    @Test func expiredContactsOfAKilledInstanceAreSweptOnceByTheOthers() throws {
        let directory = try PackagePaths.makeTemporaryDirectory("scale-out-sweep")
        let redis = try RedisServer()
        defer { redis.stop() }
        let binary = try PackagePaths.starlingBinary().path
        let ips = ["127.0.0.11", "127.0.0.12", "127.0.0.13"]
        let ports = try Ports.freeUDPPorts(3)
        let control = [0, try Ports.freeTCPPort(), try Ports.freeTCPPort()]
        var instances: [ServerProcess] = []
        defer { for s in instances { s.stop() } }
        for i in 0..<3 {
            let config = try Self.usrlocConfig(directory, url: redis.url(), name: "i\(i).toml", extra: """
                timer_interval = 1
                [modparam.registrar]
                min_expires = 1
                \(i == 0 ? "" : "[control]\nlisten = \"127.0.0.1:\(control[i])\"")
                """)
            instances.append(try Self.instance(directory, config: config, ip: ips[i], port: ports[i], log: "i\(i).log", workers: 1))
        }
        func ctl(_ i: Int, _ args: String...) throws -> CommandResult {
            try instances[i].waitUntilListening(tcpPort: control[i])
            return try Command.run(binary, ["ctl", "--url", "http://127.0.0.1:\(control[i])"] + args, timeout: .seconds(20))
        }
        func swept(_ i: Int) throws -> Int {
            let out = try ctl(i, "stats.get_statistics", "usrloc:redis-swept-contacts").output
            guard let r = out.range(of: "usrloc:redis-swept-contacts = ") else { return -1 }
            return Int(out[r.upperBound...].prefix { $0.isNumber }) ?? -1
        }
        // No instance sweeps while the test holds the lock (A must not sweep before it dies).
        _ = try redis.cli(["SET", "ul-sweep:lock", "the-test", "PX", "120000"])
        let users = (0..<4).map { "sweep\($0)" }
        for (n, user) in users.enumerated() {
            #expect(try Self.register(user, contactPort: 40_000 + n, to: ips[0], port: ports[0], expires: 600) == "SIP/2.0 200 OK",
                    "\(instances[0].logTail())")
            #expect(try Self.register(user, contactPort: 41_000 + n, to: ips[0], port: ports[0], expires: 2) == "SIP/2.0 200 OK",
                    "\(instances[0].logTail())")
            #expect(try redis.cli(["HLEN", "ul:location:\(user)"]) == "3")
        }
        instances[0].stop(signal: SIGKILL)
        sleep(2)  // the 2 s contacts have expired
        #expect(try redis.cli(["HLEN", "ul:location:\(users[0])"]) == "3")
        _ = try redis.cli(["DEL", "ul-sweep:lock"])
        // Swept by B or C within a few sweeps (generous deadline for a loaded machine).
        let clean = try TestPorts.wait(timeout: .seconds(30)) {
            users.allSatisfy { (try? redis.cli(["HLEN", "ul:location:\($0)"])) == "2" }
        }
        #expect(clean, "\(instances[1].logTail())\n\(instances[2].logTail())")
        for user in users {
            let ttl = Int(try redis.cli(["TTL", "ul:location:\(user)"])) ?? -1
            #expect(ttl > 500 && ttl <= 600, "\(user): TTL \(ttl)")
        }
        let counts = [try swept(1), try swept(2)]
        #expect(counts[0] + counts[1] == users.count, "swept by B and C: \(counts)")
        // B's control API shows the live contact of each AoR only.
        let lookup = try ctl(1, "ul.lookup", "location", users[0])
        #expect(lookup.status == 0 && lookup.output.contains("127.0.0.1:40000") && !lookup.output.contains("127.0.0.1:41000"),
                "\(lookup.output)")
        let dump = try ctl(1, "ul.dump")
        #expect(dump.status == 0, "\(dump.output)")
        for n in 0..<users.count {
            #expect(dump.output.contains("127.0.0.1:\(40_000 + n)") && !dump.output.contains("127.0.0.1:\(41_000 + n)"), "\(dump.output)")
        }
    }

    /// `[core] server_id` is an instance's identity across restarts: the contacts A saved are pinged
    /// (NAT keepalives) by A's next run after a SIGKILL and a restart, without the phone registering
    /// again; B (another server_id) never pings them.
    @Test func aRestartedInstanceKeepsPingingTheContactsItSavedBefore() throws {
        let directory = try PackagePaths.makeTemporaryDirectory("scale-out-serverid")
        let redis = try RedisServer()
        defer { redis.stop() }
        let script = directory.appendingPathComponent("registrar.lua")
        try Self.natRegistrarScript.write(to: script, atomically: true, encoding: .utf8)
        let ips = ["127.0.0.11", "127.0.0.12"]
        let ports = try Ports.freeUDPPorts(2)
        let configs = try (0..<2).map { i in
            try Self.usrlocConfig(directory, url: redis.url(), name: "s\(i).toml", extra: """
                [modparam.nathelper]
                natping_interval = 1
                sipping_bflag = 7
                sipping_from = "sip:pinger@example.com"
                [core]
                server_id = \(i + 1)
                """)
        }
        func start(_ i: Int, _ log: String) throws -> ServerProcess {
            try Self.instance(directory, config: configs[i], ip: ips[i], port: ports[i], log: log, workers: 1, script: script)
        }
        var a = try start(0, "a.log")
        defer { a.stop() }
        let b = try start(1, "b.log")
        defer { b.stop() }
        let phone = try UDPEndpoint()
        try phone.send("REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:\(phone.port);branch=z9hG4bKsid\r\n"
                       + "Max-Forwards: 70\r\nFrom: <sip:dave@example.com>;tag=1\r\nTo: <sip:dave@example.com>\r\n"
                       + "Call-ID: serverid-1\r\nCSeq: 1 REGISTER\r\nContact: <sip:dave@127.0.0.1:\(phone.port)>\r\n"
                       + "Expires: 600\r\nContent-Length: 0\r\n\r\n", to: ports[0], ip: ips[0])
        var reply: String?
        repeat { reply = phone.receive(timeout: .seconds(3)) } while reply?.hasPrefix("OPTIONS") == true
        #expect(reply?.hasPrefix("SIP/2.0 200 OK") == true, "\(reply ?? "no reply")")
        // B reads the AoR (it caches A's contact) but pings nothing of it.
        #expect(try Self.lookup("dave", via: ips[1], port: ports[1]) == "SIP/2.0 200 Lookup")
        /// The instances (by Via address) whose OPTIONS reached the phone within `seconds`.
        func pingers(seconds: Int) -> [String] {
            var from: [String] = []
            let clock = ContinuousClock()
            let deadline = clock.now + .seconds(seconds)
            while clock.now < deadline {
                guard let m = phone.receive(timeout: .milliseconds(300)), m.hasPrefix("OPTIONS ") else { continue }
                from += ips.filter { m.contains("Via: SIP/2.0/UDP \($0):") }
            }
            return from
        }
        var seen = pingers(seconds: 3)
        #expect(!seen.isEmpty && seen.allSatisfy { $0 == ips[0] }, "\(seen)")
        // A dies and comes back (a new run, a new ruid prefix, the same server_id): it pings the phone
        // again at once, which did not register again.
        a.stop(signal: SIGKILL)
        a = try start(0, "a2.log")
        seen = pingers(seconds: 6)
        #expect(!seen.isEmpty && seen.allSatisfy { $0 == ips[0] }, "\(seen)\n\(a.logTail())")
        #expect(a.log.contains("hold contacts of server_id 1"), "\(a.logTail())")
    }

    /// The status line of an OPTIONS for `user` sent to ip:port.
    static func lookup(_ user: String, via ip: String, port: Int) throws -> String? {
        let endpoint = try UDPEndpoint()
        try endpoint.send(SIPProbe.options(requestURI: "sip:\(user)@\(ip):\(port)", from: endpoint), to: port, ip: ip)
        return endpoint.receive(timeout: .seconds(5))?.components(separatedBy: "\r\n").first
    }
}
