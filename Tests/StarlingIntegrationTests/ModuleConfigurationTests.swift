import Foundation
import Testing
import StarlingTestSupport

/// The real binary refuses module parameters Kamailio would refuse: exit status 2, the key named,
/// nothing started.
@Suite struct ModuleConfigurationTests {
    /// Runs `starling run` with `toml` and returns its status and output.
    private func run(_ toml: String, name: String) throws -> (CommandResult, Int) {
        let directory = try PackagePaths.makeTemporaryDirectory("starling-modparams")
        let binary = try PackagePaths.starlingBinary().path
        let script = try RouteScripts.stateless(nextHopPort: 5090, directory: directory)
        let config = directory.appendingPathComponent("\(name).toml")
        try toml.write(to: config, atomically: true, encoding: .utf8)
        let port = try Ports.freeUDPPort()
        let result = try Command.run(binary, ["run", "--config", config.path, "--script", script.path,
                                              "--listen", "udp:127.0.0.1:\(port)"], timeout: .seconds(20))
        return (result, port)
    }

    private func expectRefused(_ toml: String, name: String, naming key: String, saying text: String,
                               sourceLocation: SourceLocation = #_sourceLocation) throws {
        let (r, port) = try run(toml, name: name)
        #expect(r.status == 2, "status \(r.status), output:\n\(r.output)", sourceLocation: sourceLocation)
        #expect(r.output.contains(key) && r.output.contains(text), "the message does not name \(key) / \(text):\n\(r.output)",
                sourceLocation: sourceLocation)
        #expect(!r.output.contains("listening on"), "something started:\n\(r.output)", sourceLocation: sourceLocation)
        #expect(!Ports.isUDPPortBound(port), sourceLocation: sourceLocation)
    }

    @Test func integerParameterWithUnitIsRefused() throws {
        try expectRefused("[core]\nmodules = [\"sl\", \"tm\"]\n[modparam.tm]\nfr_timer = \"30s\"\n", name: "unit",
                          naming: "modparam.tm.fr_timer", saying: "expected an integer")
    }

    @Test func misspeltParameterIsRefused() throws {
        try expectRefused("[core]\nmodules = [\"sl\", \"tm\"]\n[modparam.tm]\nfr_timr = 3000\n", name: "misspelt",
                          naming: "modparam.tm.fr_timr", saying: "unknown parameter of module tm")
    }

    @Test func unknownModuleIsRefused() throws {
        try expectRefused("[core]\nmodules = [\"sl\", \"dispatch\"]\n", name: "module",
                          naming: "core.modules[1]", saying: "unknown module \"dispatch\"")
    }

    @Test func unparsableRedisURLIsRefused() throws {
        try expectRefused("[core]\nmodules = [\"sl\", \"registrar\"]\n[modparam.usrloc]\ndb_url = \"redis://127.0.0.1:port/0\"\ndb_mode = 3\n",
                          name: "redisurl", naming: "modparam.usrloc.db_url", saying: "cannot parse")
    }

    @Test func usrlocOnAServerThatIsNotRedisIsRefused() throws {
        // A TCP server that is not Redis (an HTTP status line to anything).
        let peer = try PeerProcess(["python3", "-c", """
            import socket,sys
            s=socket.socket(); s.bind(("127.0.0.1",0)); s.listen(4)
            print(s.getsockname()[1]); sys.stdout.flush()
            while True:
                c,_=s.accept(); c.recv(100); c.sendall(b"HTTP/1.0 400 Bad Request\\r\\n\\r\\n"); c.close()
            """], package: "python3", readFirstLine: true)
        defer { peer.stop() }
        try expectRefused("[core]\nmodules = [\"sl\", \"registrar\"]\n[modparam.usrloc]\ndb_url = \"redis://127.0.0.1:\(peer.firstLine)/0\"\ndb_mode = 3\n",
                          name: "notredis", naming: "modparam.usrloc.db_url", saying: "Redis")
        try expectRefused("[core]\nmodules = [\"sl\", \"ndb_redis\"]\n[modparam.ndb_redis]\nserver = \"name=srv1;addr=127.0.0.1;port=\(peer.firstLine)\"\n",
                          name: "ndbnotredis", naming: "modparam.ndb_redis.server", saying: "srv1")
    }

    @Test func moduleThatCannotStartIsAConfigurationError() throws {
        try expectRefused("[core]\nmodules = [\"sl\", \"permissions\"]\n[modparam.permissions]\naddress_file = \"/nonexistent/address.list\"\n",
                          name: "start", naming: "modparam.permissions.address_file", saying: "/nonexistent/address.list")
    }
}
