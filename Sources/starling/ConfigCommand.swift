import ArgumentParser
import Foundation
import KSRModules
import StarlingServer
import SIPTransport
#if canImport(Glibc)
import Glibc
#endif

/// `starling config --check FILE` and `starling config --print`.
struct ConfigCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "config",
        abstract: "Check a configuration without starting, or print the effective configuration.",
        discussion: """
            --check FILE reads FILE and the STARLING_* environment as `starling run --config FILE` would, \
            and reports every problem instead of stopping at the first: unknown or badly typed keys, \
            unknown modules and parameters, a control listener on a non-loopback address without a token, \
            [tls] files that cannot be read, a script that does not load, a module that refuses its \
            parameters or files. Nothing is bound and nothing is sent. Exit status 0 when the configuration \
            would start, 2 otherwise (each problem on its own line, naming the key).

            --print shows the effective configuration (the defaults, then --config FILE, then the \
            STARLING_* environment) as TOML that `starling run --config` reads back. Secrets are masked \
            (the control token, modparams and defines named like password/secret/token, passwords in \
            URLs); --show-secrets prints them as they are.

            Examples:
              starling config --check /etc/starling/starling.toml
              STARLING_CORE_WORKERS=2 starling config --print --config /etc/starling/starling.toml
            """)

    @Option(name: .long, help: ArgumentHelp("Validate this configuration file without starting.", valueName: "file"))
    var check: String?

    @Flag(name: .long, help: "Print the effective configuration (file, then environment) as TOML.")
    var print = false

    @Option(name: .long, help: ArgumentHelp("The configuration file --print reads (default: none, only the environment).", valueName: "file"))
    var config: String?

    @Flag(name: .long, help: "With --print: show the token and passwords instead of ********.")
    var showSecrets = false

    func validate() throws {
        if check == nil && !print { throw ValidationError("give --check FILE or --print") }
        if check != nil && config != nil && check != config { throw ValidationError("--check FILE and --config FILE name different files") }
    }

    func run() throws {
        let path = check ?? config
        let (cfg, parseErrors) = StarlingConfig.loadCollectingErrors(path: path)
        if print {
            Swift.print(cfg.renderTOML(maskSecrets: !showSecrets), terminator: "")
            if check == nil {
                for e in parseErrors { FileError.print("starling: configuration error: \(e)") }
                if !parseErrors.isEmpty { throw ExitCode(2) }
                return
            }
        }
        guard let file = check else { return }
        var errors = parseErrors.map(\.description)
        // A file that does not parse at all: nothing more can be checked meaningfully.
        let unreadable = parseErrors.contains { $0.key == file }
        if !unreadable {
            errors += Self.deepChecks(cfg)
        }
        if errors.isEmpty {
            Swift.print("\(file): OK (script \(cfg.script), listen \(cfg.listen.map(\.description).joined(separator: ", ")))")
            return
        }
        for e in errors { FileError.print("\(file): \(e)") }
        FileError.print("\(file): \(errors.count) error\(errors.count == 1 ? "" : "s")")
        throw ExitCode(2)
    }

    /// What `starling run` would find after parsing: files it opens, the script, the modules' start.
    static func deepChecks(_ cfg: StarlingConfig) -> [String] {
        var errors: [String] = []
        func readable(_ path: String, _ key: String) {
            if access(path, R_OK) != 0 { errors.append("\(key): cannot read \(path): \(String(cString: strerror(errno)))") }
        }
        if let t = cfg.tls {
            readable(t.certificate, "tls.certificate")
            readable(t.privateKey, "tls.private_key")
            if let ca = t.caList { readable(ca, "tls.ca_list") }
            else if t.verifyServer && access(TLSConfig.systemCABundle, R_OK) != 0 {
                errors.append("tls.verify_server: no ca_list and the system CA bundle \(TLSConfig.systemCABundle) cannot be read "
                              + "(install ca-certificates, set ca_list, or verify_server = false)")
            }
            if t.verifyClient && t.caList == nil { errors.append("tls.verify_client: needs ca_list") }
            for name in t.domains.keys.sorted() {
                for (k, v) in t.domains[name]!.sorted(by: { $0.key < $1.key }) { readable(v, "tls.domain.\(name).\(k)") }
            }
        } else if cfg.listen.contains(where: { $0.proto == .tls || $0.proto == .wss }) {
            errors.append("core.listen: a tls/wss listener needs [tls] certificate and private_key")
        }
        do {
            let (_, warnings) = try Server.checkScriptWithWarnings(path: cfg.script, modules: cfg.modules, asyncIO: cfg.asyncIO)
            for w in warnings { FileError.print(w) }
        } catch {
            errors.append("core.script: \(error)")
        }
        do {
            _ = try RoutingStack(modules: cfg.modules, config: cfg.moduleParameters)
        } catch {
            errors.append("modules: \(error.description)")
        }
        return errors
    }
}
