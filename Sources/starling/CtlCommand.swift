import ArgumentParser
import Foundation
import StarlingControl
#if canImport(Glibc)
import Glibc
#endif

struct CtlCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ctl",
        abstract: "Call a control API method of a running Starling (what kamcmd is to Kamailio).",
        discussion: """
            Sends a JSON-RPC 2.0 request to the control listener ([control] listen in the configuration) \
            and prints the result: a string as it is, anything else as indented JSON. Parameters are \
            strings; one that looks like an integer is sent as a number (prefix s: to keep it a string, \
            e.g. s:42).

            Exit status: 0 on success, 1 when the method answers an error (printed on standard error), \
            2 when the listener cannot be reached or answers HTTP errors (e.g. 401 without the token).

            Methods: core.uptime, core.version, core.psx, core.info, app_lua.reload, app_lua.list, \
            app_lua.api_list, stats.get_statistics [all | GROUP: | NAME...], system.listMethods, \
            tm.stats, htable.dump/get/sets/seti/delete/listTables/stats/reload, \
            permissions.addressReload/addressDump (when their modules are loaded). Kamailio's ul.* and \
            uac.* methods answer "module not loaded" until those modules exist.

            Examples:
              starling ctl core.uptime
              starling ctl app_lua.reload
              starling ctl htable.dump ipban
              starling ctl stats.get_statistics core:
              starling ctl --url http://127.0.0.1:5065 --token secret core.info
              starling ctl --health        # GET /health: "ready" (exit 0) once routing
            """)

    @Option(name: .long, help: ArgumentHelp(
        "The control listener (default: STARLING_CONTROL_LISTEN, else http://127.0.0.1:5065).", valueName: "url"))
    var url: String?

    @Option(name: .long, help: ArgumentHelp("Bearer token (default: STARLING_CONTROL_TOKEN).", valueName: "token"))
    var token: String?

    @Option(name: .long, help: ArgumentHelp("Seconds to wait for the answer.", valueName: "s"))
    var timeout: Int = 30

    @Flag(name: .long, help: "Print the whole JSON-RPC response instead of the result.")
    var raw = false

    @Flag(name: .long, help: "Ask GET /health instead of calling a method: exit 0 when the router is routing, 1 when not ready, 2 when unreachable (container health checks).")
    var health = false

    @Argument(help: "The method, e.g. core.uptime.")
    var method: String?

    @Argument(parsing: .allUnrecognized, help: "Parameters (integers are sent as numbers; s:TEXT forces a string).")
    var params: [String] = []

    func validate() throws {
        if method == nil && !health { throw ValidationError("missing the method (e.g. core.uptime), or --health") }
        if method != nil && health { throw ValidationError("--health takes no method") }
    }

    func run() throws {
        let env = ProcessInfo.processInfo.environment
        let target = url ?? env["STARLING_CONTROL_LISTEN"].map { $0.hasPrefix("http") ? $0 : "http://" + ($0.hasPrefix(":") ? "127.0.0.1" + $0 : $0) }
            ?? "http://127.0.0.1:5065"
        guard let endpoint = ControlClient(target) else {
            FileError.print("starling ctl: bad URL '\(target)' (expected http://host:port)")
            throw ExitCode(2)
        }
        if health {
            let response: HTTPResponse
            do {
                response = try endpoint.request("GET", path: "/health", body: [], token: nil, timeout: timeout)
            } catch {
                FileError.print("starling ctl: \(endpoint.display): \(error.message)")
                throw ExitCode(2)
            }
            let text = String(decoding: response.body, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            print(text.isEmpty ? "HTTP \(response.status)" : text)
            if response.status != 200 { throw ExitCode(1) }
            return
        }
        let request: [String: Any] = ["jsonrpc": "2.0", "id": 1, "method": method ?? "", "params": params.map(Self.param)]
        let body = try JSONSerialization.data(withJSONObject: request, options: [.sortedKeys])
        let bearer = token ?? env["STARLING_CONTROL_TOKEN"]
        let response: HTTPResponse
        do {
            response = try endpoint.request("POST", body: Array(body), token: bearer, timeout: timeout)
        } catch {
            FileError.print("starling ctl: \(endpoint.display): \(error.message)")
            throw ExitCode(2)
        }
        guard response.status == 200 else {
            var msg = "starling ctl: HTTP \(response.status)"
            if response.status == 401 { msg += " (the listener needs a token: --token or STARLING_CONTROL_TOKEN)" }
            let text = String(decoding: response.body, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            if !text.isEmpty { msg += ": \(text)" }
            FileError.print(msg)
            throw ExitCode(2)
        }
        guard let obj = (try? JSONSerialization.jsonObject(with: Data(response.body), options: [.fragmentsAllowed])) as? [String: Any] else {
            FileError.print("starling ctl: the answer is not a JSON-RPC response: \(String(decoding: response.body.prefix(200), as: UTF8.self))")
            throw ExitCode(2)
        }
        if raw {
            print(Self.pretty(obj))
        }
        if let err = obj["error"] as? [String: Any] {
            var msg = "error \(err["code"].map { "\($0)" } ?? "?"): \(err["message"] as? String ?? "unknown")"
            if let d = err["data"] { msg += " (\(d is String ? d as! String : Self.pretty(d)))" }
            FileError.print(msg)
            throw ExitCode(1)
        }
        if !raw {
            let result = obj["result"] ?? NSNull()
            print(result is String ? result as! String : Self.pretty(result))
        }
    }

    static func param(_ p: String) -> Any {
        if p.hasPrefix("s:") { return String(p.dropFirst(2)) }
        if let i = Int(p) { return i }
        return p
    }

    static func pretty(_ v: Any) -> String {
        guard let d = try? JSONSerialization.data(withJSONObject: v, options: [.prettyPrinted, .sortedKeys, .fragmentsAllowed, .withoutEscapingSlashes]) else {
            return "\(v)"
        }
        return String(decoding: d, as: UTF8.self)
    }
}

