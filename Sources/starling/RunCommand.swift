import ArgumentParser
import Logging
import StarlingServer
import StarlingControl
import SIPTransport
import Foundation
#if canImport(Glibc)
import Glibc
#endif

struct RunCommand: ParsableCommand {

    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run the router (the default when no subcommand is given).",
        discussion: """
            Loads the configuration (TOML, optional), then the Lua script, binds the listen sockets and \
            starts the workers. Nothing starts if the configuration or the script has an error: the \
            problem is printed with its key or file:line, and the exit status is 2 (configuration) or 1 \
            (script, sockets).

            Precedence: command-line flags > STARLING_* environment variables > the config file > defaults.
            Defaults: script routes/default.lua, listen udp:127.0.0.1:5060, one worker per CPU.

            The script is watched: save a new version and it replaces the running one between two messages \
            (fresh Lua globals); a version that fails to load is refused and the previous one keeps running. \
            SIGHUP forces a reload; SIGINT/SIGTERM stop the router.

            With [control] listen set (or STARLING_CONTROL_LISTEN), an HTTP control API answers JSON-RPC \
            (Kamailio method names), serves Prometheus metrics at /metrics and readiness at /health; see \
            `starling ctl`. On a non-loopback address it needs [control] token (or allow_unauthenticated = \
            true): without either the configuration is refused (exit 2).

            Under systemd (Type=notify, NOTIFY_SOCKET set) Starling sends READY=1 once every listener is \
            bound and the script is active, RELOADING=1/READY=1 around a SIGHUP reload, STOPPING=1 on \
            stop, and WATCHDOG=1 every half WatchdogSec (WATCHDOG_USEC). `starling config --check FILE` \
            validates a configuration without starting.

            Examples:
              starling run --script routes/default.lua --listen udp:127.0.0.1:5060 --workers 4
              starling run --config starling.toml --log-level debug
              STARLING_CORE_WORKERS=2 starling run
            """)

    @Option(name: .long, help: ArgumentHelp("A TOML configuration file.", valueName: "file"))
    var config: String?

    @Option(name: .long, help: ArgumentHelp("The KEMI Lua routing script (default routes/default.lua).", valueName: "file"))
    var script: String?

    @Option(name: .long, help: ArgumentHelp("A socket to listen on, proto:ip:port (repeatable), e.g. udp:127.0.0.1:5060.", valueName: "addr"))
    var listen: [String] = []

    @Option(name: .long, help: ArgumentHelp("Worker threads per UDP socket (default: number of CPUs).", valueName: "n"))
    var workers: Int?

    @Option(name: .long, help: ArgumentHelp("trace, debug, info, notice, warning, error or critical.", valueName: "level"))
    var logLevel: String?

    func run() throws {
        Server.limitMallocArenas()
        let overrides = ConfigOverrides(script: script, listen: listen.isEmpty ? nil : listen, workers: workers, logLevel: logLevel)
        let (cfg, errors) = StarlingConfig.loadCollectingErrors(path: config, overrides: overrides)
        guard errors.isEmpty else {
            for e in errors { FileError.print("starling: configuration error: \(e)") }
            throw ExitCode(2)
        }
        let level = cfg.logLevel
        let format = cfg.logFormat
        // Lines logged while a worker routes a message carry its Call-ID (read only when a line is written).
        LoggingSystem.bootstrap({ label, provider in
            switch format {
            case .json:
                var h = JSONLogHandler(label: label, metadataProvider: provider)
                h.logLevel = level
                return h
            case .text:
                var h = StreamLogHandler.standardError(label: label, metadataProvider: provider)
                h.logLevel = level
                return h
            }
        }, metadataProvider: CurrentRoute.metadataProvider)
        let logger = Logger(label: "starling")
        // Signals are taken by sigwait on this thread; workers inherit the blocked mask.
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, SIGINT)
        sigaddset(&set, SIGTERM)
        sigaddset(&set, SIGHUP)
        pthread_sigmask(SIG_BLOCK, &set, nil)
        let server: Server
        var control: ControlServer? = nil
        let systemd = SystemdNotifier(environment: ProcessInfo.processInfo.environment)
        do {
            server = try Server(config: cfg, logger: logger)
            // The control listener binds before the workers start: a busy port stops everything cleanly.
            if let c = cfg.control {
                control = try ControlServer(server: server, listen: c.listen, token: c.token, logger: logger)
            }
            try server.start()
            // Every listener is bound and the workers run the loaded script: systemd's Type=notify
            // start is complete.
            systemd.ready(status: "routing \(cfg.script) on \(server.listenDescription)")
            systemd.startWatchdog { server.isResponsive }
        } catch {
            control?.shutdown()
            logger.critical("\(error.description)")
            // A module that refuses its parameters or files is a configuration error, as a bad key is.
            throw ExitCode(error.isConfiguration ? 2 : 1)
        }
        while true {
            var sig: Int32 = 0
            sigwait(&set, &sig)
            if sig == SIGHUP {
                systemd.reloading()
                let outcome = server.reloadScript(reason: "SIGHUP")
                let status: String
                switch outcome {
                case .published(let v): status = "routing \(cfg.script) version \(v)"
                case .unchanged(let v): status = "routing \(cfg.script) version \(v) (unchanged)"
                case .failed(_, let v): status = "routing \(cfg.script) version \(v) (last reload failed)"
                }
                systemd.ready(status: status)
                continue
            }
            logger.info("signal \(sig): stopping")
            systemd.stopping()
            systemd.stopWatchdog()
            control?.shutdown()
            server.shutdown()
            return
        }
    }
}

struct CheckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Load a routing script and report errors with file:line (exit 1 on error).",
        discussion: """
            Compiles the script, runs its top level with the full KSR API and checks that \
            ksr_request_route is defined. Nothing is sent. Then lists, as warnings with file:line, \
            the KSR.* names the script's files use that no loaded module exports (a misspelt \
            function, or a module Starling does not have: its KSR table is nil at run time). \
            --modules limits the check to the modules a config loads. With --async-io (or \
            STARLING_CORE_ASYNC_IO=true), also warns about globals written inside functions: with \
            [core] async_io routes of different messages interleave while one waits.
            """)

    @Argument(help: "The Lua script.")
    var file: String

    @Option(name: .long, parsing: .upToNextOption,
            help: "Modules the config loads (default: every module Starling has), e.g. --modules tm sl rr.")
    var modules: [String] = []

    @Flag(name: .customLong("async-io"), help: "Check for [core] async_io: warn about globals written inside functions.")
    var asyncIO = false

    func run() throws {
        let env = ProcessInfo.processInfo.environment["STARLING_CORE_ASYNC_IO"]?.lowercased()
        let asyncIO = self.asyncIO || env == "true" || env == "1"
        do {
            let (version, warnings) = try Server.checkScriptWithWarnings(path: file, modules: modules, asyncIO: asyncIO)
            for w in warnings { FileError.print(w) }
            print("\(file): OK (version \(version))\(warnings.isEmpty ? "" : ", \(warnings.count) warning(s)")")
        } catch {
            FileError.print("\(error)")
            throw ExitCode(1)
        }
    }
}
