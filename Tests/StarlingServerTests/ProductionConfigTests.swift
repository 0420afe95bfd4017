import Testing
import Foundation
import SIPTransport
import SIPStreams
@testable import StarlingServer

/// `starling config --check/--print` and the safe defaults: every error listed, secrets masked, the
/// control listener refused off loopback without a token, outgoing TLS verified by default.
@Suite("Production configuration")
struct ProductionConfigTests {
    @Test("every error is collected, from the file, the environment and the cross-checks, in that order")
    func collectsEveryError() {
        let toml = """
            [core]
            workers = "four"
            listen = ["udp:127.0.0.1:5060", "bogus"]
            colour = "blue"
            modules = ["sl", "nosuchmodule"]

            [control]
            listen = "0.0.0.0:5065"

            [tls]
            min_version = "SSLv3"
            verify_server = "maybe"

            [server]
            x = 1

            [modparam.maxfwd]
            max_limit = "lots"
            """
        let (config, errors) = StarlingConfig.parseCollectingErrors(
            toml: toml, environment: ["STARLING_CORE_LOG_LEVEL": "loud", "STARLING_CORE_TCP_CONNECT_TIMEOUT": "5"])
        let keys = errors.map(\.key)
        #expect(keys == ["core.colour", "core.listen[1]", "core.workers", "modparam.maxfwd.max_limit",
                         "server", "tls.min_version", "tls.verify_server", "STARLING_CORE_LOG_LEVEL",
                         "core.modules[1]", "control.listen"], "\(errors)")
        // The values that were valid are applied (what --print shows).
        #expect(config.tcpConnectTimeout == 5)
        #expect(config.modules == ["sl", "nosuchmodule"])
        // The same text through parse() stops at the first error, as `starling run` always did.
        #expect(throws: ConfigError.self) { try StarlingConfig.parse(toml: toml) }
    }

    @Test("a TOML syntax error is the only error of the file")
    func syntaxError() {
        let (_, errors) = StarlingConfig.parseCollectingErrors(toml: "[core\nworkers = 2", fileName: "x.toml")
        #expect(errors.count == 1 && errors[0].key == "x.toml" && errors[0].message.hasPrefix("TOML syntax error"))
        let missing = StarlingConfig.loadCollectingErrors(path: "/nonexistent/starling.toml", environment: [:]).errors
        #expect(missing.map(\.description) == ["/nonexistent/starling.toml: no such file"])
    }

    @Test("a clean configuration has no errors and equals what parse returns")
    func clean() throws {
        let toml = "[core]\nworkers = 3\n[control]\nlisten = \"127.0.0.1:5065\"\n"
        let (c, errors) = StarlingConfig.parseCollectingErrors(toml: toml)
        #expect(errors.isEmpty)
        #expect(c == (try StarlingConfig.parse(toml: toml)))
    }

    @Test("control on a non-loopback address needs a token or allow_unauthenticated")
    func controlOffLoopback() throws {
        for listen in ["0.0.0.0:5065", "192.0.2.1:5065", "[::]:5065", "[2001:db8::1]:5065"] {
            do {
                _ = try StarlingConfig.parse(toml: "[control]\nlisten = \"\(listen)\"")
                Issue.record("\(listen) without a token was accepted")
            } catch {
                #expect(error.key == "control.listen")
                #expect(error.message.contains("no token is set") && error.message.contains("allow_unauthenticated = true"), "\(error)")
            }
            let withToken = try StarlingConfig.parse(toml: "[control]\nlisten = \"\(listen)\"\ntoken = \"t0k3n\"")
            #expect(withToken.control?.token == "t0k3n")
            let allowed = try StarlingConfig.parse(toml: "[control]\nlisten = \"\(listen)\"\nallow_unauthenticated = true")
            #expect(allowed.control?.allowUnauthenticated == true && allowed.control?.token == nil)
            // The environment works as the file does.
            let env = try StarlingConfig.parse(toml: "", environment: ["STARLING_CONTROL_LISTEN": listen,
                                                                       "STARLING_CONTROL_ALLOW_UNAUTHENTICATED": "true"])
            #expect(env.control?.allowUnauthenticated == true)
        }
        for listen in ["127.0.0.1:5065", "127.0.0.2:5065", "[::1]:5065", "5065"] {
            #expect(try StarlingConfig.parse(toml: "[control]\nlisten = \"\(listen)\"").control?.token == nil)
        }
        #expect(throws: ConfigError(key: "control.allow_unauthenticated", "expected true or false, got \"perhaps\"")) {
            try StarlingConfig.parse(toml: "[control]\nallow_unauthenticated = \"perhaps\"")
        }
    }

    @Test("outgoing TLS verifies servers unless verify_server = false")
    func verifyServerDefault() throws {
        let on = try StarlingConfig.parse(toml: "[tls]\ncertificate = \"c.pem\"\nprivate_key = \"k.pem\"")
        #expect(on.tls?.verifyServer == true)
        #expect(Server.streamSettings(on).tls?.verifyServer == true)
        let off = try StarlingConfig.parse(toml: "[tls]\ncertificate = \"c.pem\"\nprivate_key = \"k.pem\"\nverify_server = false")
        #expect(off.tls?.verifyServer == false)
        #expect(Server.streamSettings(off).tls?.verifyServer == false)
        #expect(TLSConfig.systemCABundle == "/etc/ssl/certs/ca-certificates.crt")
    }

    @Test("--print: the effective configuration as TOML that parses back, secrets masked")
    func printRoundTrip() throws {
        let toml = """
            [core]
            listen = ["udp:127.0.0.1:5070", "tcp:127.0.0.1:5070"]
            workers = 3
            modules = ["sl", "maxfwd", "usrloc", "auth_db"]
            alias = ["sip.example.com"]

            [control]
            listen = "127.0.0.1:6065"
            token = "very-secret-token"

            [define]
            DBURL = "mysql://kamailio:kamailiorw@db.example.com/kamailio"
            ADMIN_PASSWORD = "hunter2"
            WITH_NAT = true

            [modparam.maxfwd]
            max_limit = 42
            """
        let c = try StarlingConfig.parse(toml: toml, environment: ["STARLING_CORE_LOG_FORMAT": "json"])
        let printed = c.renderTOML(maskSecrets: true)
        #expect(!printed.contains("very-secret-token") && !printed.contains("hunter2") && !printed.contains("kamailiorw"), "\(printed)")
        #expect(printed.contains("token = \"********\""))
        #expect(printed.contains("DBURL = \"mysql://kamailio:********@db.example.com/kamailio\""))
        #expect(printed.contains("log_format = \"json\""))
        #expect(printed.contains("verify_server") == false)  // no [tls] section configured
        // Unmasked, it reads back to the same configuration.
        let back = try StarlingConfig.parse(toml: c.renderTOML(maskSecrets: false))
        #expect(back.listen == c.listen && back.workers == 3 && back.modules == c.modules && back.aliases == c.aliases)
        #expect(back.control == c.control && back.logFormat == .json && back.defines == c.defines)
        #expect(back.modparams == c.modparams && back.lua == c.lua && back.tcpMaxConnections == c.tcpMaxConnections)
    }
}
