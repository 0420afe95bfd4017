import Foundation

/// Kamailio's example KEMI Lua script (`kamailio-basic-kemi-lua.lua`) and its cfg
/// (`kamailio-basic-kemi.cfg`), read where Debian's `kamailio` package installs them: the
/// project never holds a copy. `KEMI_BASIC_LUA` / `KEMI_BASIC_CFG` point at other copies.
enum ExampleScript {
    static let debianDirectory = "/usr/share/doc/kamailio/examples/kemi"
    /// The SIP domain of the test subscribers (`alias=` on Kamailio, `[core] alias` on Starling).
    static let domain = "starling.test"
    /// Subscribers in both servers' databases.
    static let subscribers: [(user: String, password: String)] = [
        ("alice", "alice-secret"), ("bob", "bob-secret"), ("dave", "dave-secret"),
    ]

    static func password(_ user: String) -> String {
        subscribers.first { $0.user == user }?.password ?? ""
    }

    /// The Lua script: `$KEMI_BASIC_LUA` or Debian's copy.
    static func luaScript() throws -> URL {
        try installedFile(environment: "KEMI_BASIC_LUA", name: "kamailio-basic-kemi-lua.lua")
    }

    /// The example cfg: `$KEMI_BASIC_CFG` or Debian's copy.
    static func kamailioCfg() throws -> URL {
        try installedFile(environment: "KEMI_BASIC_CFG", name: "kamailio-basic-kemi.cfg")
    }

    private static func installedFile(environment name: String, name file: String) throws -> URL {
        let path = ProcessInfo.processInfo.environment[name].flatMap { $0.isEmpty ? nil : $0 }
            ?? "\(debianDirectory)/\(file)"
        guard FileManager.default.isReadableFile(atPath: path) else {
            throw HarnessError("\(path) not found: install the Debian package kamailio (it ships \(file) under "
                               + "\(debianDirectory)) or set \(name)")
        }
        return URL(fileURLWithPath: path)
    }
}

/// Kamailio 5.6 running the example cfg, adapted to the tests.
///
/// The cfg is the shipped file with these line substitutions (each must match exactly once, so a
/// changed cfg fails loudly instead of being half-adapted):
/// - `#!define WITH_MYSQL` and `#!define WITH_ACCDB` are commented out (no MySQL, no accounting DB);
/// - `loadmodule "rtpproxy.so"` and its `rtpproxy_sock` modparam are commented out: with rtpproxy
///   not loaded `KSR.rtpproxy` is nil and the script's NAT media route returns early, as on
///   Starling (no RTP relay in these tests);
/// - the `app_lua` `load` path points at the Lua script.
///
/// Everything else comes from the file the shipped cfg imports, `kamailio-local.cfg`, written next
/// to it: `#!define WITH_CFGLUA`, `#!define DBURL "sqlite://..."` (a fresh database with Kamailio's
/// own SQLite schema), `loadmodule "db_sqlite.so"`, `listen=udp:127.0.0.1:PORT` only,
/// `alias=starling.test`, `auto_aliases=no`, `mhomed=0` and the module path. WITH_AUTH,
/// WITH_IPAUTH (empty address table), WITH_USRLOCDB (db_mode 2), WITH_NAT and WITH_ANTIFLOOD stay
/// defined as shipped, and so do `fork=yes`, `children=2` and every modparam.
enum KamailioExample {
    /// The Kamailio SQLite schema files (Debian package kamailio-sqlite-modules).
    static let schemaDirectory = "/usr/share/kamailio/db_sqlite"

    struct Substitution {
        let line: String
        let replacement: String
    }

    /// `rtpengine`: the ng port of an rtpengine daemon: rtpengine.so is loaded in rtpproxy's place
    /// with its `rtpengine_sock` (as the current upstream cfg does under WITH_RTPENGINE).
    static func substitutions(script: URL, rtpengine: Int? = nil) -> [Substitution] {
        if let ng = rtpengine {
            return substitutions(script: script).map { s in
                if s.line == "loadmodule \"rtpproxy.so\"" {
                    return Substitution(line: s.line, replacement: "loadmodule \"rtpengine.so\"  # starling-tests: WITH_RTPENGINE")
                }
                if s.line.hasPrefix("modparam(\"rtpproxy\"") {
                    return Substitution(line: s.line, replacement: "modparam(\"rtpengine\", \"rtpengine_sock\", \"udp:127.0.0.1:\(ng)\")")
                }
                return s
            }
        }
        return [
            Substitution(line: "#!define WITH_MYSQL",
                         replacement: "# starling-tests: off (db_sqlite, see kamailio-local.cfg) #!define WITH_MYSQL"),
            Substitution(line: "#!define WITH_ACCDB", replacement: "# starling-tests: off #!define WITH_ACCDB"),
            Substitution(line: "loadmodule \"rtpproxy.so\"",
                         replacement: "# starling-tests: not loaded, KSR.rtpproxy stays nil: loadmodule \"rtpproxy.so\""),
            Substitution(line: "modparam(\"rtpproxy\", \"rtpproxy_sock\", \"udp:127.0.0.1:7722\")",
                         replacement: "# starling-tests: rtpproxy not loaded"),
            Substitution(line: "modparam(\"app_lua\", \"load\", \"/usr/local/etc/kamailio/kamailio-basic-kemi-lua.lua\")",
                         replacement: "modparam(\"app_lua\", \"load\", \"\(script.path)\")"),
        ]
    }

    /// The shipped cfg with `substitutions` applied.
    static func config(shipped: String, script: URL, rtpengine: Int? = nil) throws -> String {
        var lines = shipped.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        for substitution in substitutions(script: script, rtpengine: rtpengine) {
            let matches = lines.indices.filter { lines[$0].trimmingCharacters(in: .whitespaces) == substitution.line }
            guard matches.count == 1 else {
                throw HarnessError("the example cfg has \(matches.count) lines `\(substitution.line)` (expected 1): "
                                   + "it is not the 5.6.3 file the test adapts")
            }
            lines[matches[0]] = substitution.replacement
        }
        return lines.joined(separator: "\n")
    }

    /// The `kamailio-local.cfg` the shipped cfg imports.
    static func localConfig(port: Int, database: URL, rtpengine: Bool = false) throws -> String {
        """
        # Generated by Starling's ExampleScriptTests; imported by kamailio.cfg (import_file).
        #!define WITH_CFGLUA\(rtpengine ? "\n#!define WITH_RTPENGINE" : "")
        #!define DBURL "sqlite://\(database.path)"
        mpath="\(try Kamailio.modulePath())"
        listen=udp:127.0.0.1:\(port)
        alias="\(ExampleScript.domain)"
        auto_aliases=no
        mhomed=0
        loadmodule "db_sqlite.so"

        """
    }

    /// Creates `database` with Kamailio's SQLite schema (version, subscriber, location, address...)
    /// and the test subscribers (plain password for `calculate_ha1=yes`, ha1/ha1b filled too).
    static func createDatabase(_ database: URL) throws {
        for file in ["standard", "auth_db", "usrloc", "permissions"] {
            guard FileManager.default.isReadableFile(atPath: "\(schemaDirectory)/\(file)-create.sql") else {
                throw HarnessError("\(schemaDirectory)/\(file)-create.sql not found (install the Debian package kamailio-sqlite-modules)")
            }
        }
        let program = """
            import hashlib, sqlite3, sys
            db = sqlite3.connect(sys.argv[1])
            for name in ("standard", "auth_db", "usrloc", "permissions"):
                with open(sys.argv[2] + "/" + name + "-create.sql") as f:
                    db.executescript(f.read())
            domain = sys.argv[3]
            args = sys.argv[4:]
            for user, password in zip(args[0::2], args[1::2]):
                ha1 = hashlib.md5(f"{user}:{domain}:{password}".encode()).hexdigest()
                ha1b = hashlib.md5(f"{user}@{domain}:{domain}:{password}".encode()).hexdigest()
                db.execute("INSERT INTO subscriber (username, domain, password, ha1, ha1b) VALUES (?, ?, ?, ?, ?)",
                           (user, domain, password, ha1, ha1b))
            db.commit()
            """
        let arguments = ["-c", program, database.path, schemaDirectory, ExampleScript.domain]
            + ExampleScript.subscribers.flatMap { [$0.user, $0.password] }
        let run = try Command.run(try Requirements.tool("python3", package: "python3"), arguments, timeout: .seconds(30))
        guard run.status == 0 else { throw HarnessError("creating \(database.path) failed:\n\(run.output)") }
    }

    /// Writes kamailio.cfg, kamailio-local.cfg and kamailio.db into `directory`, checks the cfg
    /// (`kamailio -c`) and starts Kamailio on udp:127.0.0.1:`port`. `extra` is appended to the cfg
    /// (modparams of loaded modules).
    /// `script`: another Lua script (default: the example); `rtpengine`: the ng port of an rtpengine
    /// daemon, with WITH_RTPENGINE defined (see `substitutions`).
    static func start(port: Int, directory: URL, extra: String = "", script: URL? = nil, rtpengine: Int? = nil) throws -> ServerProcess {
        let shipped = try String(contentsOf: try ExampleScript.kamailioCfg(), encoding: .utf8)
        let database = directory.appendingPathComponent("kamailio.db")
        try createDatabase(database)
        let cfg = directory.appendingPathComponent("kamailio.cfg")
        try (config(shipped: shipped, script: try script ?? ExampleScript.luaScript(), rtpengine: rtpengine)
             + (extra.isEmpty ? "" : "\n\(extra)\n"))
            .write(to: cfg, atomically: true, encoding: .utf8)
        try localConfig(port: port, database: database, rtpengine: rtpengine != nil)
            .write(to: directory.appendingPathComponent("kamailio-local.cfg"), atomically: true, encoding: .utf8)
        let check = try Command.run(try Kamailio.executable(), ["-c", "-f", cfg.path], timeout: .seconds(30),
                                    workingDirectory: directory)
        guard check.status == 0 else {
            throw HarnessError("kamailio -c rejected \(cfg.path) (status \(check.status)):\n\(check.output)")
        }
        let server = try ServerProcess(name: "kamailio", executable: try Kamailio.executable(),
                                       arguments: Kamailio.arguments(config: cfg, directory: directory),
                                       logFile: directory.appendingPathComponent("kamailio.log"),
                                       workingDirectory: directory)
        try server.waitUntilBound(udpPort: port)
        usleep(500_000)  // the children start after the socket is bound
        return server
    }
}

/// Starling running the same Lua script with examples/kamailio-basic/starling.toml, its listen
/// address, alias, database path and script path substituted.
enum StarlingExample {
    static var committedConfig: URL { PackagePaths.root.appendingPathComponent("examples/kamailio-basic/starling.toml") }

    /// The committed config for udp:127.0.0.1:`port`, the test domain and `database`.
    /// `script`: another Lua script (default: the example); `rtpengine`: the ng port of an rtpengine
    /// daemon: the rtpengine module loaded, WITH_RTPENGINE defined, its rtpengine_sock.
    static func config(port: Int, database: URL, script other: URL? = nil, rtpengine: Int? = nil) throws -> String {
        var text = try String(contentsOf: committedConfig, encoding: .utf8)
        let script = try other?.path ?? ExampleScript.luaScript().path
        var replacements: [(String, String)] = [
            ("listen = [\"udp:127.0.0.1:5060\"]", "listen = [\"udp:127.0.0.1:\(port)\"]"),
            ("alias = [\"sip.mydomain.com\"]", "alias = [\"\(ExampleScript.domain)\"]"),
            ("sqlite:///var/lib/starling/starling.db", "sqlite://\(database.path)"),
            ("script = \"/usr/share/doc/kamailio/examples/kemi/kamailio-basic-kemi-lua.lua\"", "script = \"\(script)\""),
        ]
        if let ng = rtpengine {
            replacements += [
                ("\"nathelper\", \"htable\", \"pike\",", "\"nathelper\", \"htable\", \"pike\", \"rtpengine\","),
                ("[define]\n", "[define]\nWITH_RTPENGINE = true\n"),
                ("[modparam.tm]\n", "[modparam.rtpengine]\nrtpengine_sock = \"udp:127.0.0.1:\(ng)\"\n\n[modparam.tm]\n"),
            ]
        }
        for (old, new) in replacements {
            guard text.contains(old) else { throw HarnessError("\(committedConfig.path) has no `\(old)` to substitute") }
            text = text.replacingOccurrences(of: old, with: new)
        }
        return text
    }

    /// Adds the subscribers with `starling subscriber add`, writes starling.toml into `directory`
    /// and starts `starling run --config` (stderr to starling.log). `extra` is appended to the
    /// TOML (tables the committed config does not have).
    static func start(port: Int, directory: URL, extra: String = "", script: URL? = nil, rtpengine: Int? = nil) throws -> ServerProcess {
        let binary = try PackagePaths.starlingBinary().path
        let database = directory.appendingPathComponent("starling.db")
        for subscriber in ExampleScript.subscribers {
            let add = try Command.run(binary, ["subscriber", "add", "\(subscriber.user)@\(ExampleScript.domain)",
                                               subscriber.password, "--db", database.path], timeout: .seconds(30))
            guard add.status == 0 else {
                throw HarnessError("starling subscriber add \(subscriber.user)@\(ExampleScript.domain) failed "
                                   + "(status \(add.status)):\n\(add.output)")
            }
        }
        let config = directory.appendingPathComponent("starling.toml")
        try (self.config(port: port, database: database, script: script, rtpengine: rtpengine) + (extra.isEmpty ? "" : "\n\(extra)\n"))
            .write(to: config, atomically: true, encoding: .utf8)
        let server = try ServerProcess(name: "starling", executable: binary,
                                       arguments: ["run", "--config", config.path, "--log-level", "info"],
                                       logFile: directory.appendingPathComponent("starling.log"),
                                       workingDirectory: directory)
        try server.waitUntilBound(udpPort: port)
        return server
    }
}
