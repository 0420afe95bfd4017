import Testing
import Foundation
import Logging
import SIPTransport
import SIPStreams
import KSRModules
@testable import StarlingServer

/// Parses TOML and expects a ConfigError with this exact text.
private func expectError(_ toml: String, env: [String: String] = [:], overrides: ConfigOverrides = ConfigOverrides(),
                         _ expected: String, sourceLocation: SourceLocation = #_sourceLocation) {
    do {
        let c = try StarlingConfig.parse(toml: toml, environment: env, overrides: overrides)
        Issue.record("expected error \(expected), got \(c)", sourceLocation: sourceLocation)
    } catch {
        #expect(error.description == expected, sourceLocation: sourceLocation)
    }
}

@Suite("Configuration")
struct ConfigTests {
    @Test("defaults without a file")
    func defaults() throws {
        let c = try StarlingConfig.load(path: nil, environment: [:])
        #expect(c.listen.map(\.description) == ["udp:127.0.0.1:5060"])
        #expect(c.workers == StarlingConfig.defaultWorkers)
        #expect(c.workers >= 1)
        #expect(c.script == "routes/default.lua")
        #expect(c.modules.isEmpty)
        #expect(c.logLevel == .info)
        #expect(c.dnsServers.isEmpty)
        #expect(c.lua == LuaLimits(instructionBudget: 10_000_000, memoryLimitMB: 64))
        #expect(c.defines.isEmpty && c.modparams.isEmpty && c.sourcePath == nil)
    }

    @Test("a full file")
    func fullFile() throws {
        let toml = """
            [core]
            listen = ["udp:127.0.0.1:5060", "udp:[::1]:5070", "tls:0.0.0.0"]
            workers = 3
            script = "/etc/starling/route.lua"
            modules = ["sl", "tm", "rr", "tm"]
            log_level = "debug"
            dns_servers = ["127.0.0.1:5353", "10.0.0.1", "[::1]:53"]
            instruction_budget = 5000
            memory_limit_mb = 0
            alias = ["sip.example.com", "10.0.0.9"]

            [define]
            WITH_AUTH = true
            DBURL = "mysql://db"
            MAXLEN = 100

            [modparam.tm]
            fr_timer = 30000
            fr_inv_timer = 120000

            [modparam.rr]
            enable_full_lr = 1
            custom_user_avp = ["a", "b"]
            """
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("starling-config-\(UUID())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("starling.toml").path
        try toml.write(toFile: path, atomically: true, encoding: .utf8)

        let c = try StarlingConfig.load(path: path, environment: [:])
        #expect(c.sourcePath == path)
        #expect(c.listen.map(\.description) == ["udp:127.0.0.1:5060", "udp:[::1]:5070", "tls:0.0.0.0:5061"])
        #expect(c.listen[1].proto == .udp && c.listen[1].address.family == .inet6)
        #expect(c.workers == 3)
        #expect(c.script == "/etc/starling/route.lua")
        #expect(c.modules == ["sl", "tm", "rr"])
        #expect(c.aliases == ["sip.example.com", "10.0.0.9"])
        #expect(c.logLevel == .debug)
        #expect(c.dnsServers.map(\.description) == ["127.0.0.1:5353", "10.0.0.1:53", "[::1]:53"])
        #expect(c.lua == LuaLimits(instructionBudget: 5000, memoryLimitMB: 0))
        #expect(c.defines == ["WITH_AUTH": .bool(true), "DBURL": .string("mysql://db"), "MAXLEN": .int(100)])
        #expect(c.defineTexts == ["WITH_AUTH": "1", "DBURL": "mysql://db", "MAXLEN": "100"])
        #expect(c.modparam("tm", "fr_timer") == [.int(30000)])
        #expect(c.modparam("tm", "fr_inv_timer") == [.int(120000)])
        #expect(c.modparam("rr", "custom_user_avp") == [.string("a"), .string("b")])
        #expect(c.modparam("rr", "nope").isEmpty)
    }

    @Test("a missing file is an error naming it")
    func missingFile() {
        #expect(throws: ConfigError(key: "/nonexistent/starling.toml", "no such file")) {
            try StarlingConfig.load(path: "/nonexistent/starling.toml", environment: [:])
        }
    }

    @Test("TOML syntax errors give line and column")
    func syntaxError() {
        do {
            _ = try StarlingConfig.parse(toml: "[core]\nworkers = = 3\n")
            Issue.record("expected a syntax error")
        } catch {
            #expect(error.key == "config")
            #expect(error.message.hasPrefix("TOML syntax error at line 2, column"))
        }
    }

    @Test("core.workers must be a positive integer")
    func workers() {
        expectError("[core]\nworkers = \"abc\"", "core.workers: expected a positive integer, got \"abc\"")
        expectError("[core]\nworkers = 0", "core.workers: expected a positive integer, got 0")
        expectError("[core]\nworkers = -2", "core.workers: expected a positive integer, got -2")
        expectError("[core]\nworkers = 1.5", "core.workers: expected a positive integer, got 1.5")
        expectError("[core]\nworkers = 5000", "core.workers: expected at most 1024, got 5000")
    }

    @Test("unknown keys in [core] and unknown sections are errors")
    func unknownKeys() {
        expectError("[core]\nworkerz = 2",
                    "core.workerz: unknown key (expected one of listen, workers, script, modules, log_level, dns_servers, instruction_budget, memory_limit_mb, log_format, alias, tcp_connection_lifetime, tcp_connect_timeout, tcp_max_connections, mcast_loopback, mcast_ttl, tcp_crlf_ping, tcp_accept_no_cl, tcp_keepalive, tcp_keepidle, tcp_keepintvl, tcp_keepcnt, async_io, async_max_pending, server_id)")
        expectError("[server]\nx = 1", "server: unknown section (expected [core], [control], [tls], [diameter], [define] or [modparam.<module>])")
        expectError("core = 1", "core: expected a table ([core]), got 1")
    }

    @Test("listen syntax is checked")
    func listenSyntax() {
        expectError("[core]\nlisten = [\"xyz:127.0.0.1:5060\"]",
                    "core.listen[0]: unknown proto \"xyz\" in \"xyz:127.0.0.1:5060\" (expected one of udp, tcp, tls, ws, wss, sctp)")
        let hint = "(expected \"proto:ip:port\", e.g. \"udp:127.0.0.1:5060\" or \"udp:[::1]:5060\")"
        expectError("[core]\nlisten = [\"udp:127.0.0.1:5060\", \"udp:1.2.3:5060\"]", "core.listen[1]: bad IP address in \"udp:1.2.3:5060\" \(hint)")
        expectError("[core]\nlisten = [\"udp:127.0.0.1:abc\"]", "core.listen[0]: bad port in \"udp:127.0.0.1:abc\" \(hint)")
        expectError("[core]\nlisten = [\"udp:127.0.0.1:70000\"]", "core.listen[0]: port 70000 out of range in \"udp:127.0.0.1:70000\" \(hint)")
        expectError("[core]\nlisten = [\"udp::1:5060\"]", "core.listen[0]: IPv6 addresses need brackets in \"udp::1:5060\" \(hint)")
        expectError("[core]\nlisten = [\"127.0.0.1:5060\"]",
                    "core.listen[0]: unknown proto \"127.0.0.1\" in \"127.0.0.1:5060\" (expected one of udp, tcp, tls, ws, wss, sctp)")
        expectError("[core]\nlisten = [\"udp\"]", "core.listen[0]: missing proto in \"udp\" \(hint)")
        expectError("[core]\nlisten = []", "core.listen: expected at least one listen address")
        expectError("[core]\nlisten = [5060]", "core.listen[0]: expected a string, got 5060")
        expectError("[core]\nlisten = [\"udp:127.0.0.1:5060\", \"UDP:127.0.0.1:5060\"]",
                    "core.listen[1]: duplicate listen address \"UDP:127.0.0.1:5060\"")
    }

    @Test("stream listeners, ;proxy, tcp_* values and [tls]")
    func streamTransports() throws {
        let c = try StarlingConfig.parse(toml: """
            [core]
            listen = ["udp:127.0.0.1:5060", "tcp:127.0.0.1:5060;proxy", "tls:[::1]", "wss:127.0.0.1:8443"]
            tcp_connection_lifetime = 30
            tcp_connect_timeout = 2
            tcp_max_connections = 100
            [tls]
            certificate = "/c.pem"
            private_key = "/k.pem"
            ca_list = "/ca.pem"
            verify_client = true
            min_version = "TLSv1.3"
            [tls.domain."Sip.Example.com"]
            certificate = "/d.pem"
            private_key = "/dk.pem"
            """)
        #expect(c.listen[1] == ListenAddress(proto: .tcp, address: SocketAddress(ip: "127.0.0.1", port: 5060)!, proxyProtocol: true))
        #expect(c.listen[1].description == "tcp:127.0.0.1:5060;proxy")
        #expect(c.listen[2] == ListenAddress(proto: .tls, address: SocketAddress(ip: "::1", port: 5061)!))
        #expect(c.tcpConnectionLifetime == 30 && c.tcpConnectTimeout == 2 && c.tcpMaxConnections == 100)
        let tls = try #require(c.tls)
        #expect(tls.certificate == "/c.pem" && tls.privateKey == "/k.pem" && tls.caList == "/ca.pem")
        #expect(tls.verifyClient && !tls.requireClientCertificate && tls.minVersion == "TLSv1.3")
        #expect(tls.domains["sip.example.com"] == ["certificate": "/d.pem", "private_key": "/dk.pem"])
        let s = Server.streamSettings(c)
        #expect(s.connectionLifetime == 30 && s.connectTimeoutMillis == 2000 && s.maxConnections == 100)
        #expect(s.tls?.domains["sip.example.com"]?.privateKey == "/dk.pem")
        expectError("[core]\nlisten = [\"udp:127.0.0.1:5060;proxy\"]",
                    "core.listen[0]: ;proxy (PROXY protocol) needs a tcp, tls, ws or wss listener in \"udp:127.0.0.1:5060\" (expected \"proto:ip:port\", e.g. \"udp:127.0.0.1:5060\" or \"udp:[::1]:5060\")")
        expectError("[core]\ntcp_connection_lifetime = 0", "core.tcp_connection_lifetime: expected a positive number of seconds, got 0")
        expectError("[tls]\nmin_version = \"SSLv3\"",
                    "tls.min_version: expected \"TLSv1.2\" or \"TLSv1.3\" (or TLSv1, TLSv1.1), got \"SSLv3\"")
        expectError("[tls]\nverify_client = \"maybe\"", "tls.verify_client: expected true or false, got \"maybe\"")
        expectError("[tls]\ncert = \"/x\"",
                    "tls.cert: unknown key (expected one of certificate, private_key, ca_list, verify_client, require_client_certificate, verify_server, min_version, or [tls.domain.<name>])")
        expectError("[tls.domain.x]\ncertificate = \"/x\"", "tls.domain.x: needs certificate and private_key")
    }

    @Test("listen: advertise and name (Kamailio's syntax and ;name=)")
    func listenAdvertiseAndName() throws {
        let c = try StarlingConfig.parse(toml: """
            [core]
            listen = ['udp:10.0.3.112:5060 advertise 203.0.113.7:5060 name "public"', "udp:10.0.4.1:5060;name=private",
                      "tcp:10.0.3.112:5060;proxy;name=ptcp advertise sip.example.com", "tls:[::1]:5061 advertise [2001:db8::7]"]
            """)
        #expect(c.listen[0].advertisedHost == "203.0.113.7" && c.listen[0].advertisedPort == 5060 && c.listen[0].name == "public")
        #expect(c.listen[0].description == "udp:10.0.3.112:5060 advertise 203.0.113.7:5060 name public")
        #expect(c.listen[1].name == "private" && c.listen[1].advertisedHost == nil)
        #expect(c.listen[2].proxyProtocol && c.listen[2].name == "ptcp" && c.listen[2].advertisedHost == "sip.example.com"
                && c.listen[2].advertisedPort == nil)
        #expect(c.listen[3].advertisedHost == "[2001:db8::7]")
        // The printed form parses back to the same entries.
        for l in c.listen { #expect(try ListenAddress.parse(l.description).get() == l) }
        let hint = "(expected HOST[:PORT], e.g. \"203.0.113.7:5060\", \"[2001:db8::7]:5060\" or \"sip.example.com\")"
        expectError("[core]\nlisten = [\"udp:10.0.3.112:5060 advertise 203.0.113.7:99999\"]",
                    "core.listen[0]: bad advertise \"203.0.113.7:99999\": port 99999 out of range \(hint) in \"udp:10.0.3.112:5060 advertise 203.0.113.7:99999\"")
        expectError("[core]\nlisten = [\"udp:10.0.3.112:5060 advertise 203.0.113:5060\"]",
                    "core.listen[0]: bad advertise \"203.0.113:5060\": not an IPv4 address \(hint) in \"udp:10.0.3.112:5060 advertise 203.0.113:5060\"")
        expectError("[core]\nlisten = [\"udp:10.0.3.112:5060 advertise 2001:db8::7\"]",
                    "core.listen[0]: bad advertise \"2001:db8::7\": IPv6 addresses need brackets \(hint) in \"udp:10.0.3.112:5060 advertise 2001:db8::7\"")
        expectError("[core]\nlisten = [\"udp:10.0.3.112:5060 advertise bad/host\"]",
                    "core.listen[0]: bad advertise \"bad/host\": not an IP address or host name \(hint) in \"udp:10.0.3.112:5060 advertise bad/host\"")
        expectError("[core]\nlisten = [\"udp:10.0.3.112:5060 advertise\"]",
                    "core.listen[0]: \"advertise\" needs a value in \"udp:10.0.3.112:5060 advertise\"")
        expectError("[core]\nlisten = [\"udp:10.0.3.112:5060 advertize 1.2.3.4\"]",
                    "core.listen[0]: unknown word \"advertize\" in \"udp:10.0.3.112:5060 advertize 1.2.3.4\" (expected advertise HOST[:PORT] or name NAME after the address)")
        expectError("[core]\nlisten = [\"udp:10.0.3.112:5060;name=\"]",
                    "core.listen[0]: bad socket name \"\" in \"udp:10.0.3.112:5060;name=\"")
    }

    @Test("keepalive settings: tcp_crlf_ping, tcp_accept_no_cl, tcp_keepalive and its timing")
    func keepaliveSettings() throws {
        let d = try StarlingConfig.parse(toml: "")
        #expect(d.tcpCRLFPing && !d.tcpAcceptNoCL && d.tcpKeepalive && d.tcpKeepIdle == 0)
        let c = try StarlingConfig.parse(toml: """
            [core]
            tcp_crlf_ping = false
            tcp_accept_no_cl = 1
            tcp_keepalive = true
            tcp_keepidle = 30
            tcp_keepintvl = 10
            tcp_keepcnt = 3
            """)
        let s = Server.streamSettings(c)
        #expect(!s.crlfPing && s.acceptNoContentLength && s.keepalive && s.keepIdle == 30 && s.keepInterval == 10 && s.keepCount == 3)
        // --print writes them and parses back to the same values.
        let again = try StarlingConfig.parse(toml: c.renderTOML())
        #expect(again.tcpCRLFPing == false && again.tcpAcceptNoCL && again.tcpKeepIdle == 30 && again.tcpKeepCnt == 3)
        expectError("[core]\ntcp_crlf_ping = \"yes\"", "core.tcp_crlf_ping: expected true or false, got \"yes\"")
        expectError("[core]\ntcp_keepidle = -1", "core.tcp_keepidle: expected a non-negative integer, got -1")
    }

    @Test("a single listen string is accepted")
    func listenString() throws {
        let c = try StarlingConfig.parse(toml: "[core]\nlisten = \"tcp:[::]:5080\"")
        #expect(c.listen == [ListenAddress(proto: .tcp, address: SocketAddress(ip: "::", port: 5080)!)])
    }

    @Test("other [core] values are checked")
    func coreValues() {
        expectError("[core]\nscript = \"\"", "core.script: expected a non-empty path string, got \"\"")
        expectError("[core]\nscript = 3", "core.script: expected a non-empty path string, got 3")
        expectError("[core]\nmodules = [\"tm\", \"bad-name\"]", "core.modules[1]: bad module name \"bad-name\"")
        expectError("[core]\nmodules = 3", "core.modules: expected an array of strings, got 3")
        expectError("[core]\nlog_level = \"chatty\"",
                    "core.log_level: expected trace, debug, info, notice, warning, error, critical or a Kamailio level -5...4, got \"chatty\"")
        expectError("[core]\ndns_servers = [\"dns.example\"]",
                    "core.dns_servers[0]: bad DNS server \"dns.example\" (expected \"ip\", \"ip:port\" or \"[ipv6]:port\")")
        expectError("[core]\ninstruction_budget = -1", "core.instruction_budget: expected a non-negative integer, got -1")
        expectError("[core]\nmemory_limit_mb = \"lots\"", "core.memory_limit_mb: expected a non-negative integer, got \"lots\"")
    }

    @Test("log levels: names and Kamailio numbers")
    func logLevels() throws {
        let cases: [(String, Logger.Level)] = [
            ("\"trace\"", .trace), ("\"warn\"", .warning), ("\"ERROR\"", .error), ("-1", .error), ("0", .warning),
            ("2", .info), ("3", .debug), ("-3", .critical),
        ]
        for (text, level) in cases {
            #expect(try StarlingConfig.parse(toml: "[core]\nlog_level = \(text)").logLevel == level)
        }
    }

    @Test("[define] values are strings, integers or booleans")
    func defines() {
        expectError("[define]\nX = 1.5", "define.X: expected a string, integer or boolean, got 1.5")
        expectError("[define]\nX = [1]", "define.X: expected a string, integer or boolean, got an array")
        expectError("[define]\n\"A B\" = 1", "define.A B: bad define name \"A B\" (letters, digits and _)")
    }

    @Test("[modparam] tables: values, arrays and loaded modules")
    func modparams() {
        expectError("[core]\nmodules = [\"tm\"]\n[modparam.tm]\nfr_timer = 1.5",
                    "modparam.tm.fr_timer: expected a string, integer, boolean or an array of them, got 1.5")
        expectError("[core]\nmodules = [\"tm\"]\n[modparam.tm]\nx = [1, 2.5]", "modparam.tm.x[1]: expected a string, integer or boolean, got 2.5")
        expectError("[core]\nmodules = [\"tm\"]\n[modparam.tm]\nx = []", "modparam.tm.x: expected at least one value in the array")
        expectError("[core]\nmodules = [\"tm\"]\n[modparam]\ntm = 3", "modparam.tm: expected a table of parameters ([modparam.tm]), got 3")
        expectError("[core]\nmodules = [\"sl\"]\n[modparam.tm]\nfr_timer = 1", "modparam.tm: module \"tm\" is not loaded (add it to core.modules)")
        expectError("[modparam.nosuch]\nx = 1", "modparam.nosuch: unknown module \"nosuch\" (Starling has: \(KSRModules.available.sorted().joined(separator: ", ")))")
    }

    @Test("environment overrides core values, defines and modparams")
    func environment() throws {
        let toml = """
            [core]
            workers = 2
            modules = ["tm", "app_lua"]
            [define]
            WithAuth = false
            [modparam.tm]
            fr_timer = 1000
            [modparam.app_lua]
            reload = 0
            """
        let env = [
            "STARLING_CORE_WORKERS": "4",
            "STARLING_CORE_SCRIPT": "/tmp/x.lua",
            "STARLING_CORE_LISTEN": "udp:127.0.0.1:5070, udp:[::1]:5070",
            "STARLING_CORE_LOG_LEVEL": "3",
            "STARLING_MODPARAM_TM_FR_TIMER": "30000",
            "STARLING_MODPARAM_TM_FR_INV_TIMER": "120000",
            "STARLING_MODPARAM_APP_LUA_RELOAD": "1",
            "STARLING_MODPARAM_SL_BIND_TM": "1",
            "STARLING_DEFINE_WITHAUTH": "true",
            "STARLING_DEFINE_NEW_ONE": "hello",
            "STARLING_OTHER": "ignored",
            "PATH": "/usr/bin",
        ]
        let c = try StarlingConfig.parse(toml: toml + "\n", environment: env.merging(["STARLING_CORE_MODULES": "tm,app_lua,sl"]) { a, _ in a })
        #expect(c.workers == 4)
        #expect(c.script == "/tmp/x.lua")
        #expect(c.listen.map(\.description) == ["udp:127.0.0.1:5070", "udp:[::1]:5070"])
        #expect(c.logLevel == .debug)
        #expect(c.modules == ["tm", "app_lua", "sl"])
        #expect(c.modparam("tm", "fr_timer") == [.int(30000)])
        #expect(c.modparam("tm", "fr_inv_timer") == [.int(120000)])
        #expect(c.modparam("app_lua", "reload") == [.int(1)])
        #expect(c.modparam("sl", "bind_tm") == [.int(1)])
        #expect(c.defines == ["WithAuth": .bool(true), "NEW_ONE": .string("hello")])
    }

    @Test("async_io and async_max_pending: file, environment (true/1), errors naming the key")
    func asyncIO() throws {
        #expect(try StarlingConfig.parse(toml: "", environment: [:]).asyncIO == false)
        #expect(try StarlingConfig.parse(toml: "", environment: [:]).asyncMaxPending == 1000)
        let file = try StarlingConfig.parse(toml: "[core]\nasync_io = true\nasync_max_pending = 50\n", environment: [:])
        #expect(file.asyncIO && file.asyncMaxPending == 50)
        #expect(try StarlingConfig.parse(toml: "", environment: ["STARLING_CORE_ASYNC_IO": "true"]).asyncIO)
        #expect(try StarlingConfig.parse(toml: "", environment: ["STARLING_CORE_ASYNC_IO": "1"]).asyncIO)
        #expect(try StarlingConfig.parse(toml: "[core]\nasync_io = true\n", environment: ["STARLING_CORE_ASYNC_IO": "0"]).asyncIO == false)
        #expect(file.renderTOML().contains("async_io = true\nasync_max_pending = 50\n"))
        expectError("", env: ["STARLING_CORE_ASYNC_IO": "yes"], "STARLING_CORE_ASYNC_IO: expected true or false (or 1/0), got \"yes\"")
        expectError("[core]\nasync_max_pending = 0\n", "core.async_max_pending: expected a positive integer, got 0")
    }

    @Test("server_id: file, environment, reaches the module parameters, errors naming the key")
    func serverID() throws {
        #expect(try StarlingConfig.parse(toml: "", environment: [:]).serverID == 0)
        let file = try StarlingConfig.parse(toml: "[core]\nserver_id = 7\n", environment: [:])
        #expect(file.serverID == 7 && file.moduleParameters.serverID == 7)
        #expect(file.renderTOML().contains("server_id = 7\n"))
        #expect(try StarlingConfig.parse(toml: "[core]\nserver_id = 7\n", environment: ["STARLING_CORE_SERVER_ID": "3"]).moduleParameters.serverID == 3)
        expectError("[core]\nserver_id = -1\n", "core.server_id: expected a non-negative integer, got -1")
        expectError("", env: ["STARLING_CORE_SERVER_ID": "one"], "STARLING_CORE_SERVER_ID: expected a non-negative integer, got \"one\"")
    }

    @Test("environment values are validated and named in errors")
    func environmentErrors() {
        expectError("", env: ["STARLING_CORE_WORKERS": "abc"], "STARLING_CORE_WORKERS: expected a positive integer, got \"abc\"")
        expectError("", env: ["STARLING_CORE_THREADS": "4"],
                    "STARLING_CORE_THREADS: unknown key core.threads (expected one of listen, workers, script, modules, log_level, dns_servers, instruction_budget, memory_limit_mb, log_format, alias, tcp_connection_lifetime, tcp_connect_timeout, tcp_max_connections, mcast_loopback, mcast_ttl, tcp_crlf_ping, tcp_accept_no_cl, tcp_keepalive, tcp_keepidle, tcp_keepintvl, tcp_keepcnt, async_io, async_max_pending, server_id)")
        expectError("", env: ["STARLING_CORE_LISTEN": "udp:127.0.0.1:5060,foo:1.2.3.4"],
                    "STARLING_CORE_LISTEN[1]: unknown proto \"foo\" in \"foo:1.2.3.4\" (expected one of udp, tcp, tls, ws, wss, sctp)")
        expectError("", env: ["STARLING_MODPARAM_TM": "1"], "STARLING_MODPARAM_TM: expected STARLING_MODPARAM_<MODULE>_<PARAM>")
        expectError("[core]\nmodules = [\"sl\"]", env: ["STARLING_MODPARAM_TM_FR_TIMER": "1"], "modparam.tm: module \"tm\" is not loaded (add it to core.modules)")
    }

    @Test("multicast listen: ;mcast=IFACE in the file, the environment and --listen; mcast_loopback, mcast_ttl")
    func multicastListen() throws {
        let c = try StarlingConfig.parse(toml: """
            [core]
            listen = ["udp:127.0.0.1:5060", "udp:224.0.1.75:5060;mcast=lo"]
            mcast_loopback = true
            mcast_ttl = 4
            """, environment: [:])
        #expect(c.listen.count == 2)
        #expect(c.listen[1].isMulticast && c.listen[1].multicastInterface == "lo" && c.listen[1].multicastInterfaceIndex != nil)
        #expect(c.listen[1].description == "udp:224.0.1.75:5060;mcast=lo")
        #expect(!c.listen[0].isMulticast)
        #expect(c.mcastLoopback && c.mcastTTL == 4)
        let env = try StarlingConfig.parse(toml: "", environment: ["STARLING_CORE_LISTEN": "udp:127.0.0.1:5060,udp:224.0.1.75:5060;mcast=lo",
                                                                   "STARLING_CORE_MCAST_TTL": "2"])
        #expect(env.listen[1].multicastInterface == "lo" && env.mcastTTL == 2)
        let cli = try StarlingConfig.parse(toml: "", environment: [:],
                                           overrides: ConfigOverrides(listen: ["udp:224.0.1.75:5090;mcast=lo"]))
        #expect(cli.listen[0].isMulticast && cli.listen[0].address.port == 5090)
        expectError("[core]\nlisten = [\"udp:224.0.1.75:5060;mcast=nosuch0\"]",
                    "core.listen[0]: multicast interface \"nosuch0\" does not exist (in \"udp:224.0.1.75:5060;mcast=nosuch0\")")
        expectError("", overrides: ConfigOverrides(listen: ["udp:224.0.1.75:5060;mcast=nosuch0"]),
                    "--listen[0]: multicast interface \"nosuch0\" does not exist (in \"udp:224.0.1.75:5060;mcast=nosuch0\")")
        expectError("[core]\nlisten = \"udp:127.0.0.1:5060;mcast=lo\"",
                    "core.listen: ;mcast= needs a udp listener on a multicast group address (224.0.0.0/4, ff00::/8) in \"udp:127.0.0.1:5060\" (expected \"proto:ip:port\", e.g. \"udp:127.0.0.1:5060\" or \"udp:[::1]:5060\")")
        expectError("[core]\nmcast_ttl = 300", "core.mcast_ttl: expected an integer in 0...255, got 300")
    }

    @Test("command-line overrides beat file and environment")
    func overrides() throws {
        let o = ConfigOverrides(script: "cli.lua", listen: ["udp:127.0.0.1:6000"], workers: 7, logLevel: "error")
        let c = try StarlingConfig.parse(toml: "[core]\nworkers = 2\nscript = \"file.lua\"",
                                         environment: ["STARLING_CORE_WORKERS": "3", "STARLING_CORE_SCRIPT": "env.lua"], overrides: o)
        #expect(c.workers == 7)
        #expect(c.script == "cli.lua")
        #expect(c.listen.map(\.description) == ["udp:127.0.0.1:6000"])
        #expect(c.logLevel == .error)
        let partial = try StarlingConfig.parse(toml: "[core]\nworkers = 2", environment: ["STARLING_CORE_WORKERS": "3"])
        #expect(partial.workers == 3)
    }

    @Test("command-line values are validated")
    func overrideErrors() {
        expectError("", overrides: ConfigOverrides(workers: 0), "--workers: expected a positive integer, got 0")
        expectError("", overrides: ConfigOverrides(listen: ["udp:nowhere"]),
                    "--listen[0]: bad IP address in \"udp:nowhere\" (expected \"proto:ip:port\", e.g. \"udp:127.0.0.1:5060\" or \"udp:[::1]:5060\")")
        expectError("", overrides: ConfigOverrides(logLevel: "loud"),
                    "--log-level: expected trace, debug, info, notice, warning, error, critical or a Kamailio level -5...4, got \"loud\"")
    }

    @Test("[control] and log_format")
    func controlAndLogFormat() throws {
        let none = try StarlingConfig.parse(toml: "")
        #expect(none.control == nil && none.logFormat == .text)

        let c = try StarlingConfig.parse(toml: """
            [core]
            log_format = "json"
            [control]
            listen = "127.0.0.1:5065"
            token = "s3cret"
            """)
        #expect(c.logFormat == .json)
        #expect(c.control == ControlConfig(listen: SocketAddress(ip: "127.0.0.1", port: 5065)!, token: "s3cret"))

        // The host defaults to 127.0.0.1.
        #expect(try StarlingConfig.parse(toml: "[control]\nlisten = \":6000\"").control?.listen.description == "127.0.0.1:6000")
        #expect(try StarlingConfig.parse(toml: "[control]\nlisten = \"6001\"").control?.listen.description == "127.0.0.1:6001")
        #expect(try StarlingConfig.parse(toml: "[control]\nlisten = 6002").control?.listen.description == "127.0.0.1:6002")
        #expect(try StarlingConfig.parse(toml: "[control]\nlisten = \"[::1]:6003\"").control?.listen.description == "[::1]:6003")
        #expect(try StarlingConfig.parse(toml: "[control]\nlisten = \"0.0.0.0\"\ntoken = \"t\"").control?.listen.description == "0.0.0.0:5065")
        // A token alone does not turn the listener on.
        #expect(try StarlingConfig.parse(toml: "[control]\ntoken = \"x\"").control == nil)

        // Environment overrides the file.
        let e = try StarlingConfig.parse(toml: "[control]\nlisten = \"127.0.0.1:5065\"",
                                         environment: ["STARLING_CONTROL_LISTEN": "127.0.0.2:7000", "STARLING_CONTROL_TOKEN": "t",
                                                       "STARLING_CORE_LOG_FORMAT": "JSON"])
        #expect(e.control == ControlConfig(listen: SocketAddress(ip: "127.0.0.2", port: 7000)!, token: "t"))
        #expect(e.logFormat == .json)
    }

    @Test("[control] and log_format errors name the key")
    func controlErrors() {
        expectError("[control]\nlisten = \"localhost:5065\"",
                    "control.listen: bad control address \"localhost:5065\" (expected \"ip:port\", \"[ipv6]:port\" or \":port\", port 1-65535)")
        expectError("[control]\nlisten = \"127.0.0.1:70000\"",
                    "control.listen: bad control address \"127.0.0.1:70000\" (expected \"ip:port\", \"[ipv6]:port\" or \":port\", port 1-65535)")
        expectError("[control]\nlisten = \"127.0.0.1:0\"",
                    "control.listen: bad control address \"127.0.0.1:0\" (expected \"ip:port\", \"[ipv6]:port\" or \":port\", port 1-65535)")
        expectError("[control]\nlisten = true", "control.listen: expected an address string such as \"127.0.0.1:5065\", got true")
        expectError("[control]\ntoken = 5", "control.token: expected a string, got 5")
        expectError("[control]\ntoken = \"a b\"", "control.token: the token must not contain white space")
        expectError("[control]\nport = 5", "control.port: unknown key (expected one of listen, token, allow_unauthenticated)")
        expectError("control = 1", "control: expected a table ([control]), got 1")
        expectError("[core]\nlog_format = \"xml\"", "core.log_format: expected \"text\" or \"json\", got \"xml\"")
        expectError("", env: ["STARLING_CONTROL_LISTEN": "nope"],
                    "STARLING_CONTROL_LISTEN: bad control address \"nope\" (expected \"ip:port\", \"[ipv6]:port\" or \":port\", port 1-65535)")
        expectError("", env: ["STARLING_CONTROL_PORT": "1"], "STARLING_CONTROL_PORT: unknown key control.port (expected one of listen, token, allow_unauthenticated)")
    }
}

@Suite struct ModparamValidationTests {
    @Test("modparams are checked against the module's table, as Kamailio does")
    func typedModparams() throws {
        let intKind = "expected an integer (Kamailio int parameter; true/false count as 1/0)"
        expectError("[core]\nmodules = [\"tm\"]\n[modparam.tm]\nfr_timer = \"30s\"", "modparam.tm.fr_timer: \(intKind), got \"30s\"")
        expectError("[core]\nmodules = [\"tm\"]\n[modparam.tm]\nfr_timer = \"30000\"", "modparam.tm.fr_timer: \(intKind), got \"30000\"")
        expectError("[core]\nmodules = [\"tm\"]\n[modparam.tm]\nfailure_reply_mode = 9",
                    "modparam.tm.failure_reply_mode: expected an integer in 0...3, got 9")
        expectError("", env: ["STARLING_MODPARAM_TM_FR_TIMER": "30s"], "STARLING_MODPARAM_TM_FR_TIMER: \(intKind), got \"30s\"")
        expectError("[core]\nmodules = [\"sl\", \"nosuchmodule\"]",
                    "core.modules[1]: unknown module \"nosuchmodule\" (Starling has: \(KSRModules.all.map { $0.name }.sorted().joined(separator: ", ")))")
        let c = try StarlingConfig.parse(toml: "[core]\nmodules = [\"tm\", \"kx\"]\n[modparam.tm]\nfr_timer = 2000\nauto_inv_100 = false\nruri_matching = 0\n",
                                         environment: [:])
        #expect(c.moduleParameters.values["tm"]?["fr_timer"] == [.int(2000)])
        #expect(c.moduleParameters.values["tm"]?["auto_inv_100"] == [.int(0)])
        #expect(c.loadedModules.contains("kemix"))
    }

    @Test("STARLING_MODPARAM_* matches the longest module name")
    func environmentModuleNames() throws {
        let c = try StarlingConfig.parse(toml: "", environment: [
            "STARLING_MODPARAM_AUTH_DB_USE_DOMAIN": "1",
            "STARLING_MODPARAM_HTTP_CLIENT_CONNECTION_TIMEOUT": "5",
            "STARLING_MODPARAM_AUTH_NONCE_EXPIRE": "60",
            "STARLING_MODPARAM_TM_AUTO_INV_100_REASON": "123",
        ])
        #expect(c.moduleParameters.values["auth_db"]?["use_domain"] == [.int(1)])
        #expect(c.moduleParameters.values["http_client"]?["connection_timeout"] == [.int(5)])
        #expect(c.moduleParameters.values["auth"]?["nonce_expire"] == [.int(60)])
        #expect(c.moduleParameters.values["tm"]?["auto_inv_100_reason"] == [.str("123")])
    }
}
