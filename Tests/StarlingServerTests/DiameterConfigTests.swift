import Testing
import DiameterNode
@testable import StarlingServer

/// `[diameter]`: every error names its key (exit 2 at start-up).
@Suite("[diameter] configuration")
struct DiameterConfigTests {
    func error(_ toml: String) -> String {
        do {
            _ = try StarlingConfig.parse(toml: toml, environment: [:], overrides: ConfigOverrides())
            return "no error"
        } catch {
            return error.description
        }
    }

    @Test("a full section parses into the node's configuration")
    func full() throws {
        let c = try StarlingConfig.parse(toml: """
            [diameter]
            identity = "dra.example"
            realm = "example"
            listen = ["tcp:127.0.0.1:3868"]
            accept_unknown_peers = true
            watchdog_interval = 6
            request_timeout = 2500
            [[diameter.peers]]
            identity = "hss1.example"
            connect = "tcp:127.0.0.1:3869"
            realm = "hss.example"
            applications = ["s6a", 4]
            [[diameter.peers]]
            identity = "mme.example"
            [[diameter.routes]]
            realm = "hss.example"
            application = "s6a"
            peers = ["hss1.example:5", "mme.example"]
            """, environment: [:], overrides: ConfigOverrides())
        let d = try #require(c.diameter)
        #expect(d.identity == "dra.example" && d.realm == "example" && d.acceptUnknownPeers)
        #expect(d.listen == [DiameterNodeConfig.Endpoint(host: "127.0.0.1", port: 3868)])
        #expect(d.watchdogInterval == 6000 && d.requestTimeout == 2500)
        #expect(d.peers.count == 2 && d.peers[0].connect?.port == 3869 && d.peers[0].applications == [16777251, 4])
        #expect(d.peers[1].connect == nil && d.peers[1].applications == nil)
        #expect(d.routes.count == 1 && d.routes[0].application == 16777251)
        #expect(d.routes[0].peers.map(\.identity) == ["hss1.example", "mme.example"] && d.routes[0].peers.map(\.metric) == [5, 1])
    }

    @Test("errors name the key")
    func errors() {
        #expect(error("[diameter]\nrealm = \"r\"") == "diameter.identity: missing: Starling's DiameterIdentity (its Origin-Host)")
        #expect(error("[diameter]\nidentity = \"a\"") == "diameter.realm: missing: Starling's realm (its Origin-Realm)")
        #expect(error("[diameter]\nidentity = \"a b\"\nrealm = \"r\"").hasPrefix("diameter.identity: \"a b\" is not a DiameterIdentity"))
        #expect(error("[diameter]\nidentity = \"a\"\nrealm = \"r\"\nlisten = [\"udp:1.2.3.4:1\"]").hasPrefix("diameter.listen[0]: \"udp:1.2.3.4:1\" is not"))
        #expect(error("[diameter]\nidentity = \"a\"\nrealm = \"r\"\nwatchdog_interval = 0") == "diameter.watchdog_interval: expected an integer in 1...3600, got 0")
        #expect(error("[diameter]\nidentity = \"a\"\nrealm = \"r\"\ncolour = 1").hasPrefix("diameter.colour: unknown key"))
        #expect(error("[diameter]\nidentity = \"a\"\nrealm = \"r\"\n[[diameter.peers]]\nidentity = \"p\"\nconnect = \"tcp:localhost:1\"").hasPrefix("diameter.peers[0].connect:"))
        #expect(error("[diameter]\nidentity = \"a\"\nrealm = \"r\"\n[[diameter.peers]]\nidentity = \"p\"\napplications = [\"s7z\"]").hasPrefix("diameter.peers[0].applications: unknown application \"s7z\""))
        #expect(error("[diameter]\nidentity = \"a\"\nrealm = \"r\"\n[[diameter.peers]]\nidentity = \"p\"\n[[diameter.peers]]\nidentity = \"p\"") == "diameter.peers[1].identity: peer p is configured twice")
        #expect(error("[diameter]\nidentity = \"a\"\nrealm = \"r\"\n[[diameter.routes]]\nrealm = \"x\"\npeers = [\"nobody\"]") == "diameter.routes[0].peers[0]: nobody is not a configured peer ([[diameter.peers]])")
    }
}
