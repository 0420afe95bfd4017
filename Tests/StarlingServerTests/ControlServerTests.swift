import Foundation
import Logging
import Testing
import SIPCore
import SIPTransport
import StarlingServer
import KSRModules
import StarlingControl
import StarlingKEMI

/// The control listener on a free loopback port against a real server (UDP workers, script watcher).
@Suite(.serialized) struct ControlServerTests {
    /// A running server and its control listener, in a temporary directory.
    final class Fixture {
        let dir: URL
        let scriptPath: String
        let server: Server
        let control: ControlServer
        let client: ControlClient
        let sipAddress: SocketAddress

        init(token: String? = nil, reason: String = "v1", modparams: [String: [String: [ConfigValue]]] = [:],
             modules: [String] = []) throws {
            dir = FileManager.default.temporaryDirectory.appendingPathComponent("starling-control-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            scriptPath = dir.appendingPathComponent("route.lua").path
            try ServerReloadTests.script(reason).write(toFile: scriptPath, atomically: false, encoding: .utf8)
            var config = StarlingConfig()
            config.script = scriptPath
            config.workers = 1
            for (module, params) in modparams {
                for (name, values) in params { try config.setModparam(module, name, values) }
            }
            config.modules = modules
            // Port 0: the server binds a port the kernel picks and reports it (boundSockets), so no
            // other test can take the port between a choice and the bind.
            config.listen = [ListenAddress(proto: .udp, address: SocketAddress(ip: "127.0.0.1", port: 0)!)]
            var logger = Logger(label: "test")
            logger.logLevel = .critical
            server = try Server(config: config, logger: logger)
            try server.start()
            sipAddress = server.boundSockets[0].address
            control = try ControlServer(server: server, listen: SocketAddress(ip: "127.0.0.1", port: 0)!, token: token, logger: logger)
            client = ControlClient("http://\(control.localAddress)")!
        }

        deinit {
            control.shutdown()
            server.shutdown()
            try? FileManager.default.removeItem(at: dir)
        }

        /// Posts a raw body; returns the HTTP answer.
        func post(_ body: String, token: String? = nil) throws -> HTTPResponse {
            try client.request("POST", body: Array(body.utf8), token: token, timeout: 10)
        }

        /// Calls a method; returns the decoded JSON-RPC response object.
        func call(_ method: String, _ params: [Any] = [], token: String? = nil) throws -> [String: Any] {
            let req: [String: Any] = ["jsonrpc": "2.0", "id": 7, "method": method, "params": params]
            let body = String(decoding: try JSONSerialization.data(withJSONObject: req), as: UTF8.self)
            let r = try post(body, token: token)
            #expect(r.status == 200)
            return try #require(try JSONSerialization.jsonObject(with: Data(r.body)) as? [String: Any])
        }

        func metrics(token: String? = nil) throws -> HTTPResponse {
            try client.request("GET", path: "/metrics", token: token, timeout: 10)
        }
    }

    static func errorCode(_ response: [String: Any]) -> Int? { (response["error"] as? [String: Any])?["code"] as? Int }

    /// GET /health: ready while routing, without the token (load balancers, container health
    /// checks); 503 once the server is stopping.
    @Test func healthIsReadyOnlyWhileRouting() throws {
        let f = try Fixture(token: "s3cret")
        let ready = try f.client.request("GET", path: "/health", token: nil, timeout: 10)
        #expect(ready.status == 200 && ready.text == "ready\n")
        #expect(try f.client.request("POST", path: "/health", token: nil, timeout: 10).status == 405)
        // Everything else still needs the token.
        #expect(try f.client.request("GET", path: "/metrics", token: nil, timeout: 10).status == 401)
        f.server.shutdown()
        let stopping = try f.client.request("GET", path: "/health", token: nil, timeout: 10)
        #expect(stopping.status == 503 && stopping.text == "not ready\n")
    }

    @Test func versionUptimeInfoAndList() throws {
        let f = try Fixture()
        let v = try f.call("core.version")
        #expect((v["result"] as? String)?.hasPrefix("starling \(Server.version)") == true)
        #expect(v["id"] as? Int == 7)
        #expect(v["jsonrpc"] as? String == "2.0")

        let up = try #require(try f.call("core.uptime")["result"] as? [String: Any])
        #expect((up["uptime"] as? Int).map { $0 >= 0 } == true)
        #expect(up["up_since"] as? Int == f.server.startedAtUnix)

        let info = try #require(try f.call("core.info")["result"] as? [String: Any])
        #expect(info["pid"] as? Int == Int(getpid()))
        #expect(info["workers"] as? Int == 1)
        #expect(info["listen"] as? [String] == ["udp:\(f.sipAddress)"])
        #expect(info["script_version"] as? String == "\(f.server.activeVersion)")

        let psx = try #require(try f.call("core.psx")["result"] as? [[String: Any]])
        #expect(psx.contains { ($0["DSC"] as? String)?.contains("udp receiver child=0") == true })

        let list = try #require(try f.call("app_lua.list")["result"] as? [String: Any])
        #expect(list["version"] as? String == "\(f.server.activeVersion)")
        #expect((list["files"] as? [String])?.count == 1)

        let api = try #require(try f.call("app_lua.api_list")["result"] as? [String: Any])
        let methods = try #require(api["methods"] as? [[String: Any]])
        #expect(api["msize"] as? Int == methods.count)
        let funcs = methods.compactMap { $0["func"] as? [String: Any] }
        let reply = try #require(funcs.first { $0["module"] as? String == "sl" && $0["name"] as? String == "sl_send_reply" })
        #expect(reply["params"] as? [String] == ["int", "str"])
        #expect(reply["ret"] as? String == "int")
    }

    @Test func reloadShowsTheNewVersionInMetrics() throws {
        let f = try Fixture()
        let before = "\(f.server.activeVersion)"
        #expect(try f.metrics().text.contains("starling_script_info{version=\"\(before)\""))

        // Unchanged files: no new version.
        let same = try #require(try f.call("app_lua.reload")["result"] as? [String: Any])
        #expect(same["changed"] as? Bool == false)
        #expect(same["version"] as? String == before)

        try ServerReloadTests.script("v2").write(toFile: f.scriptPath, atomically: false, encoding: .utf8)
        let r = try f.call("app_lua.reload")
        // The watcher may have published v2 first; then the forced reload finds it unchanged.
        let result = try #require(r["result"] as? [String: Any])
        let after = try #require(result["version"] as? String)
        #expect(after != before)
        #expect(after == "\(f.server.activeVersion)")
        let text = try f.metrics().text
        #expect(text.contains("starling_script_info{version=\"\(after)\""))
        #expect(!text.contains("version=\"\(before)\""))
        #expect(text.contains("starling_reloads_total{result=\"ok\"} 1"))

        // A broken script: an error naming the problem; the version stays.
        try "function ksr_request_route( then end".write(toFile: f.scriptPath, atomically: false, encoding: .utf8)
        let bad = try f.call("app_lua.reload")
        #expect(Self.errorCode(bad) == RPCError.failed)
        #expect(((bad["error"] as? [String: Any])?["message"] as? String)?.contains("route.lua:1") == true)
        #expect("\(f.server.activeVersion)" == after)
        #expect(try f.metrics().text.contains("starling_reloads_total{result=\"failed\"}"))
    }

    @Test func usrlocMethods() throws {
        let f = try Fixture()
        let ul = f.server.runtime.usrloc
        let now = f.server.runtime.clock.unixSeconds
        ul.change(ul.table("location"), "alice") { list -> (result: Void, changed: [String], deleted: [String]) in
            list.append(LocationContact(ruid: "r1", aor: "alice", username: "alice", domain: nil, contact: "sip:alice@192.0.2.10",
                                        expires: now + 600, callid: "c1", cseq: 3, lastModified: now, userAgent: "UA"))
            return ((), ["r1"], [])
        }
        let dump = try f.call("ul.dump")
        let domains = try #require((dump["result"] as? [String: Any])?["Domains"] as? [[String: Any]], "\(dump)")
        let domain = try #require(domains.first?["Domain"] as? [String: Any])
        #expect(domain["Domain"] as? String == "location")
        let aors = try #require(domain["AoRs"] as? [[String: Any]])
        let info = try #require(aors.first?["Info"] as? [String: Any])
        #expect(info["AoR"] as? String == "alice")
        let contact = try #require((info["Contacts"] as? [[String: Any]])?.first?["Contact"] as? [String: Any])
        #expect(contact["Address"] as? String == "sip:alice@192.0.2.10")
        #expect(contact["Received"] as? String == "[not set]")
        #expect((contact["Expires"] as? Int).map { $0 > 590 && $0 <= 600 } == true)
        let lookup = try f.call("ul.lookup", ["location", "sip:alice@example.com"])
        #expect((lookup["result"] as? [String: Any])?["AoR"] as? String == "alice", "\(lookup)")
        #expect(Self.errorCode(try f.call("ul.lookup", ["location", "bob"])) == 404)
        #expect(Self.errorCode(try f.call("ul.lookup", ["nosuchtable", "alice"])) == 500)
        #expect(Self.errorCode(try f.call("ul.lookup")) == RPCError.invalidParams)
        #expect(try f.call("ul.rm", ["location", "alice"])["error"] == nil)
        #expect(ul.contactCount == 0)
        #expect(Self.errorCode(try f.call("ul.rm", ["location", "alice"])) == 404)
        let text = try f.metrics().text
        #expect(text.contains("starling_registrations_active 0"))
        #expect(text.contains("starling_registrations_expired_total 0"))
    }

    @Test func htableAndPermissionsMethods() throws {
        let list = FileManager.default.temporaryDirectory.appendingPathComponent("starling-addr-\(getpid())-\(UInt32.random(in: 0...UInt32.max))").path
        try "1 192.0.2.10 0 gw\n".write(toFile: list, atomically: true, encoding: .utf8)
        defer { unlink(list) }
        let f = try Fixture(modparams: ["htable": ["htable": [.string("ipban=>size=4;autoexpire=300;"), .string("t=>size=2")]],
                                        "permissions": ["address_file": [.string(list)]]])
        func result(_ r: [String: Any]) -> Any? { r["result"] }
        func message(_ r: [String: Any]) -> String? { (r["error"] as? [String: Any])?["message"] as? String }
        #expect(result(try f.call("htable.seti", ["ipban", "192.0.2.7", 1])) is [String: Any])
        #expect(result(try f.call("htable.sets", ["t", "k", "v"])) is [String: Any])
        // the script's store and the control API's are the same
        #expect(f.server.runtime.htables.table("ipban")?.get("192.0.2.7") == .int(1))
        let got = try #require(result(try f.call("htable.get", ["ipban", "192.0.2.7"])) as? [String: Any])
        let item = try #require(got["item"] as? [String: Any])
        #expect(item["name"] as? String == "192.0.2.7" && item["value"] as? Int == 1 && item["flags"] as? Int == 0)
        #expect((item["expire"] as? String)?.count == 19)
        let dump = try #require(result(try f.call("htable.dump", ["ipban"])) as? [[String: Any]])
        #expect(dump.count == 1)
        let slot = try #require(dump.first?["slot"] as? [[String: Any]])
        #expect(slot.first?["name"] as? String == "192.0.2.7" && slot.first?["type"] as? String == "int")
        #expect(message(try f.call("htable.get", ["ipban", "nope"])) == "Key name doesn't exist in htable.")
        #expect(Self.errorCode(try f.call("htable.get", ["nosuch", "x"])) == 500)
        #expect(message(try f.call("htable.dump", ["nosuch"])) == "No such htable")
        #expect(message(try f.call("htable.reload", ["ipban"])) == "No htable db_url")
        #expect(result(try f.call("htable.delete", ["ipban", "192.0.2.7"])) is [String: Any])
        #expect((result(try f.call("htable.dump", ["ipban"])) as? [Any])?.isEmpty == true)
        let tables = try #require(result(try f.call("htable.listTables")) as? [[String: Any]])
        #expect(tables.map { $0["name"] as? String } == ["ipban", "t"])
        #expect(tables.first?["expire"] as? Int == 300 && tables.first?["size"] as? Int == 16)
        let stats = try #require(result(try f.call("htable.stats")) as? [[String: Any]])
        #expect(stats.last?["all"] as? Int == 1)
        // permissions: the address file, reloaded on request
        #expect(f.server.runtime.addresses.entries.count == 1)
        try "1 192.0.2.10 0 gw\n2 10.0.0.0/8\n".write(toFile: list, atomically: true, encoding: .utf8)
        #expect(result(try f.call("permissions.addressReload")) as? String == "Reload OK")
        let entries = try #require(result(try f.call("permissions.addressDump")) as? [[String: Any]])
        #expect(entries.map { $0["ip"] as? String } == ["192.0.2.10", "10.0.0.0"])
        #expect(entries.last?["mask"] as? Int == 8)
        try "1 not-an-address\n".write(toFile: list, atomically: true, encoding: .utf8)
        #expect(message(try f.call("permissions.addressReload"))?.hasPrefix("Reload failed.") == true)
        #expect(f.server.runtime.addresses.entries.count == 2)
        let methods = try #require(result(try f.call("system.listMethods")) as? [String])
        #expect(methods.contains("htable.dump") && methods.contains("permissions.addressReload"))
    }

    @Test func moduleMethodsNeedTheirModule() throws {
        let f = try Fixture(modules: ["sl"])
        for m in ["htable.dump", "htable.get", "htable.sets", "htable.delete", "htable.reload", "permissions.addressReload",
                  "ul.dump", "ul.lookup", "ul.rm"] {
            let r = try f.call(m)
            #expect(Self.errorCode(r) == RPCError.moduleNotLoaded, "\(m)")
        }
    }

    @Test func errors() throws {
        let f = try Fixture()
        #expect(Self.errorCode(try f.call("no.such_method")) == RPCError.methodNotFound)
        #expect(Self.errorCode(try f.call("core.version", ["x"])) == RPCError.invalidParams)
        #expect(Self.errorCode(try f.call("stats.get_statistics", [42])) == RPCError.invalidParams)
        #expect(Self.errorCode(try f.call("stats.get_statistics", ["nosuchgroup:"])) == RPCError.invalidParams)
        let tm = try f.call("tm.stats")
        #expect(((tm["result"] as? [String: Any])?["current"] as? Int) == 0, "\(tm)")
        // uac is loaded but has no uacreg table (no database yet): Kamailio's "Not enabled" fault
        for m in ["uac.reg_dump", "uac.reg_reload"] {
            let r = try f.call(m)
            #expect(Self.errorCode(r) == RPCError.failed, "\(m): \(r)")
            #expect(((r["error"] as? [String: Any])?["message"] as? String) == "Not enabled")
        }

        for body in ["{bad", "", "[1,", "\u{0}", "{\"method\":"] {
            let r = try f.post(body)
            #expect(r.status == 200)
            let obj = try #require(try JSONSerialization.jsonObject(with: Data(r.body)) as? [String: Any])
            #expect(Self.errorCode(obj) == RPCError.parseError, "\(body)")
            #expect(obj["id"] is NSNull)
        }
        for body in ["42", "{\"id\":1}", "{\"id\":1,\"method\":5}", "[]", "{\"jsonrpc\":\"1.0\",\"id\":1,\"method\":\"core.version\"}",
                     "{\"id\":1,\"method\":\"core.version\",\"params\":\"x\"}",
                     "{\"id\":[1],\"method\":\"core.version\"}", "{\"id\":{},\"method\":\"core.version\"}"] {
            let obj = try #require(try JSONSerialization.jsonObject(with: Data(try f.post(body).body)) as? [String: Any])
            let code = Self.errorCode(obj)
            #expect(code == RPCError.invalidRequest || code == RPCError.invalidParams, "\(body)")
        }

        // A batch: answers in order, notifications unanswered.
        let batch = try f.post(#"[{"jsonrpc":"2.0","id":1,"method":"core.version"},{"jsonrpc":"2.0","method":"core.uptime"},{"jsonrpc":"2.0","id":"b","method":"x.y"}]"#)
        let answers = try #require(try JSONSerialization.jsonObject(with: Data(batch.body)) as? [[String: Any]])
        #expect(answers.count == 2)
        #expect(answers.first?["id"] as? Int == 1 && answers.first?["result"] != nil)
        #expect(answers.last?["id"] as? String == "b" && Self.errorCode(answers.last!) == RPCError.methodNotFound)
        // A lone notification: 204.
        #expect(try f.post(#"{"jsonrpc":"2.0","method":"core.version"}"#).status == 204)

        // HTTP level.
        #expect(try f.client.request("GET", path: "/nope", token: nil).status == 404)
        #expect(try f.client.request("PUT", path: "/metrics", token: nil).status == 405)
        #expect(try f.client.request("POST", path: "/rpc", body: Array(#"{"id":1,"method":"core.version"}"#.utf8), token: nil).status == 200)
        #expect(try f.client.request("POST", body: [UInt8](repeating: 0x20, count: ControlServer.maxBody + 1), token: nil).status == 413)
        // Still serving after all of that.
        #expect(try f.call("core.version")["result"] is String)
    }

    @Test func tokenRequiredWhenSet() throws {
        let f = try Fixture(token: "s3cret")
        #expect(try f.post(#"{"id":1,"method":"core.version"}"#).status == 401)
        #expect(try f.post(#"{"id":1,"method":"core.version"}"#, token: "wrong").status == 401)
        #expect(try f.post(#"{"id":1,"method":"core.version"}"#, token: "s3cre").status == 401)
        let r401 = try f.metrics()
        #expect(r401.status == 401)
        #expect(r401.header("WWW-Authenticate")?.hasPrefix("Bearer") == true)
        #expect(try f.metrics(token: "s3cret").status == 200)
        #expect(try f.call("core.version", token: "s3cret")["result"] is String)
    }

    @Test func statisticsCountAnOptionsRequest() throws {
        let f = try Fixture()
        func stat(_ name: String) throws -> Int? {
            let lines = try #require(try f.call("stats.get_statistics", [name])["result"] as? [String])
            return lines.first.flatMap { Int($0.split(separator: "=").last!.trimmingCharacters(in: .whitespaces)) }
        }
        let before = try stat("core:rcv_requests") ?? -1
        #expect(before == 0)
        let client = try UDPSocket(bindingTo: SocketAddress(ip: "127.0.0.1", port: 0)!)
        defer { client.close() }
        #expect(try ServerReloadTests.ask(f.sipAddress, from: client, id: 1) == "v1")
        #expect(try stat("core:rcv_requests") == 1)
        #expect(try stat("core:rcv_requests_options") == 1)
        #expect(try stat("core:rcv_datagrams") == 1)
        #expect(try stat("core:sent_replies_2xx") == 1)
        #expect(try stat("core:fwd_requests") == 0)
        let all = try #require(try f.call("stats.get_statistics", ["all"])["result"] as? [String])
        #expect(all.contains("script:errors = 0"))
        #expect(all.contains("app_lua:reloads_ok = 0"))
        let core = try #require(try f.call("stats.get_statistics", ["core:"])["result"] as? [String])
        #expect(core.allSatisfy { $0.hasPrefix("core:") })
        let text = try f.metrics().text
        #expect(text.contains("starling_messages_received_total 1\n"))
        #expect(text.contains("starling_requests_received_total{method=\"OPTIONS\"} 1\n"))
        #expect(text.contains("# TYPE starling_parse_errors_total counter\nstarling_parse_errors_total 0\n"))
        #expect(text.contains("starling_workers 1\n"))
        #expect(text.contains("starling_replies_sent_total{class=\"2xx\"} 1\n"))
        #expect(text.contains("starling_uptime_seconds "))
        #expect(text.contains("starling_socket_receive_queue_bytes{socket=\"udp:\(f.sipAddress)\"} "))
        #expect(text.contains("starling_socket_drops_total{socket=\"udp:\(f.sipAddress)\"} 0\n"))
        #expect(text.contains("starling_messages_received_by_transport_total{transport=\"udp\"} 1\n"))
        #expect(text.contains("starling_messages_sent_by_transport_total{transport=\"udp\"} 1\n"))
        // One request route ran: the histogram's +Inf bucket and count say 1, the reply route none.
        #expect(text.contains("# TYPE starling_route_duration_seconds histogram\n"))
        #expect(text.contains("starling_route_duration_seconds_bucket{route=\"request\",le=\"+Inf\"} 1\n"))
        #expect(text.contains("starling_route_duration_seconds_count{route=\"request\"} 1\n"))
        #expect(text.contains("starling_route_duration_seconds_count{route=\"reply\"} 0\n"))
        let sumLine = try #require(text.split(separator: "\n").first { $0.hasPrefix("starling_route_duration_seconds_sum{route=\"request\"}") })
        let sum = try #require(Double(sumLine.split(separator: " ").last!))
        #expect(sum > 0 && sum < 1)
    }

    @Test func bindFailureIsAnError() throws {
        let f = try Fixture()
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        #expect(throws: ServerError.self) {
            _ = try ControlServer(server: f.server, listen: f.control.localAddress, token: nil, logger: logger)
        }
    }

    @Test func clientURLs() {
        func parts(_ u: String) -> String? { ControlClient(u).map { "\($0.host) \($0.port) \($0.path)" } }
        #expect(parts("http://127.0.0.1:5065") == "127.0.0.1 5065 /")
        #expect(parts("http://localhost:6000/rpc") == "localhost 6000 /rpc")
        #expect(parts("127.0.0.2:7000") == "127.0.0.2 7000 /")
        #expect(parts(":7001") == "127.0.0.1 7001 /")
        #expect(parts("http://[::1]:7002") == "::1 7002 /")
        #expect(parts("http://10.0.0.1") == "10.0.0.1 5065 /")
        #expect(parts("https://127.0.0.1:5065") == nil)
        #expect(parts("http://127.0.0.1:99999") == nil)
        #expect(parts("http://127.0.0.1:abc") == nil)
    }
}
