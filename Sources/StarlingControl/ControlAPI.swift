import Foundation
public import KSRModules
#if canImport(Glibc)
import Glibc
#endif
public import StarlingServer
import StarlingKEMI
import StarlingLua
import SIPTransport
import SIPStreams
import Synchronization

/// A JSON-RPC 2.0 error object: the same type the modules' methods throw.
public typealias RPCError = RPCFault

/// The JSON-RPC methods of the control API, with Kamailio's names, over a running `Server`.
/// Transport-free: `handle(body:)` takes a request body and returns the response body.
public final class ControlAPI: Sendable {
    public let server: Server
    /// The control listener's own address, for `core.info` (nil when not known).
    let controlAddress: String?

    public init(server: Server, controlAddress: String? = nil) {
        self.server = server
        self.controlAddress = controlAddress
    }

    /// Methods that exist in Kamailio and need a module Starling does not have yet, with that module.
    public static let unavailable: [String: String] = [:]

    /// Methods that work now, with a one-line help.
    public static let available: [(name: String, help: String)] = [
        ("core.uptime", "Seconds since start: now, up_since, uptime."),
        ("core.version", "Starling's version."),
        ("core.psx", "The threads: index, pid, description."),
        ("core.info", "Version, pid, workers, listen sockets, script and version."),
        ("app_lua.reload", "Reloads the script now; returns the new version or the error."),
        ("app_lua.list", "The script, its loaded files and the active version."),
        ("app_lua.api_list", "Every KSR export with its parameter and return types."),
        ("stats.get_statistics", "Counters: \"all\" (default), a group (\"core:\", \"script:\", \"app_lua:\") or one name."),
        ("system.listMethods", "The method names."),
        ("tls.reload", "Reloads the [tls] certificates and keys from their files (new handshakes use them)."),
        ("core.tcp_info", "TCP/TLS/WS connections: opened_connections, max_connections, counters."),
    ]

    // MARK: Request bodies

    /// Answers one HTTP request body: a JSON-RPC request or a batch. Nil when nothing is to be
    /// answered (only notifications).
    public func handle(body: [UInt8]) -> [UInt8]? {
        let parsed: Any
        do {
            parsed = try JSONSerialization.jsonObject(with: Data(body), options: [.fragmentsAllowed])
        } catch {
            return Self.encode(Self.errorResponse(id: NSNull(), RPCError(RPCError.parseError, "Parse error")))
        }
        if let batch = parsed as? [Any] {
            if batch.isEmpty {
                return Self.encode(Self.errorResponse(id: NSNull(), RPCError(RPCError.invalidRequest, "Invalid Request", data: "empty batch")))
            }
            let answers = batch.compactMap { handle(request: $0) }
            return answers.isEmpty ? nil : Self.encode(answers)
        }
        guard let answer = handle(request: parsed) else { return nil }
        return Self.encode(answer)
    }

    /// One request object; nil for a notification (no "id").
    func handle(request: Any) -> [String: Any]? {
        guard let obj = request as? [String: Any] else {
            return Self.errorResponse(id: NSNull(), RPCError(RPCError.invalidRequest, "Invalid Request", data: "expected an object"))
        }
        let id: Any = obj["id"] ?? NSNull()
        guard id is NSNull || id is String || id is NSNumber else {
            return Self.errorResponse(id: NSNull(), RPCError(RPCError.invalidRequest, "Invalid Request", data: "id must be a string, a number or null"))
        }
        if let v = obj["jsonrpc"], (v as? String) != "2.0" {
            return Self.errorResponse(id: id, RPCError(RPCError.invalidRequest, "Invalid Request", data: "jsonrpc must be \"2.0\""))
        }
        guard let method = obj["method"] as? String else {
            return Self.errorResponse(id: id, RPCError(RPCError.invalidRequest, "Invalid Request", data: "method must be a string"))
        }
        let params: [Any]
        switch obj["params"] {
        case nil, is NSNull: params = []
        case let a as [Any]: params = a
        case let o as [String: Any]: params = o.keys.sorted().map { o[$0]! }
        default:
            return Self.errorResponse(id: id, RPCError(RPCError.invalidParams, "Invalid params", data: "params must be an array or an object"))
        }
        let isNotification = obj["id"] == nil
        let response: [String: Any]
        do {
            let result = try call(method, params)
            response = ["jsonrpc": "2.0", "id": id, "result": result]
        } catch {
            response = Self.errorResponse(id: id, error)
        }
        return isNotification ? nil : response
    }

    static func errorResponse(id: Any, _ e: RPCError) -> [String: Any] {
        var err: [String: Any] = ["code": e.code, "message": e.message]
        if let d = e.data { err["data"] = d }
        return ["jsonrpc": "2.0", "id": id, "error": err]
    }

    static func encode(_ value: Any) -> [UInt8] {
        if let d = try? JSONSerialization.data(withJSONObject: value, options: [.sortedKeys, .fragmentsAllowed, .withoutEscapingSlashes]) {
            return Array(d)
        }
        return Array(#"{"jsonrpc":"2.0","id":null,"error":{"code":-32603,"message":"Internal error"}}"#.utf8)
    }

    // MARK: Methods

    /// Runs one method. Results are JSON-serialisable values.
    public func call(_ method: String, _ params: [Any]) throws(RPCError) -> Any {
        switch method {
        case "core.uptime":
            try noParams(method, params)
            let now = Int(time(nil))
            return ["now": now, "up_since": server.startedAtUnix, "uptime": Int(server.uptimeSeconds)] as [String: Any]
        case "core.version":
            try noParams(method, params)
            return "starling \(Server.version) (\(Self.platform))"
        case "core.psx":
            try noParams(method, params)
            return psx()
        case "core.info":
            try noParams(method, params)
            return info()
        case "app_lua.reload":
            // Kamailio's optional script index is accepted: Starling has one script.
            if params.count > 1 { throw RPCError(RPCError.invalidParams, "Invalid params", data: "\(method) takes at most one parameter") }
            switch server.reloadScript(reason: "control API") {
            case .published(let v):
                return ["version": v.description, "changed": true] as [String: Any]
            case .unchanged(let v):
                return ["version": v.description, "changed": false] as [String: Any]
            case .failed(let msg, let active):
                throw RPCError(RPCError.failed, "reload failed: \(msg)", data: "active version \(active)")
            }
        case "app_lua.list":
            try noParams(method, params)
            let p = server.publishedScript
            return [
                "script": p.source.path, "version": p.version.description, "generation": p.generation,
                "files": p.files, "workers": server.workerCount, "workers_on_version": server.workersOnCurrentScript,
            ] as [String: Any]
        case "app_lua.api_list":
            try noParams(method, params)
            return apiList()
        case "stats.get_statistics":
            return try statistics(params)
        case "tls.reload":
            try noParams(method, params)
            guard let streams = server.streams, streams.settings.tls != nil else {
                throw RPCError(RPCError.failed, "no TLS configured", data: "tls.reload needs a [tls] section")
            }
            do {
                try streams.reloadTLS()
            } catch {
                throw RPCError(RPCError.failed, "TLS reload failed: \(error)", data: "the previous certificates stay in use")
            }
            return "Ok. TLS configuration reloaded."
        case "core.tcp_info":
            try noParams(method, params)
            guard let streams = server.streams else {
                return ["opened_connections": 0, "max_connections": 0] as [String: Any]
            }
            let st = streams.stats
            return [
                "opened_connections": streams.connectionCount, "max_connections": streams.settings.maxConnections,
                "accepted": st.accepted.load(ordering: .relaxed), "refused": st.refused.load(ordering: .relaxed),
                "connects": st.connectsStarted.load(ordering: .relaxed),
                "connect_failures": st.connectFailures.load(ordering: .relaxed),
                "keepalive_pings": st.pings.load(ordering: .relaxed), "invalid_streams": st.invalid.load(ordering: .relaxed),
                "idle_closed": st.idleClosed.load(ordering: .relaxed), "send_failures": st.sendFailures.load(ordering: .relaxed),
            ] as [String: Any]
        case "system.listMethods":
            try noParams(method, params)
            return (Self.available.map(\.name) + KSRModules.rpcMethods.map(\.method.name) + Self.unavailable.keys).sorted()
        default:
            if let result = try callModuleMethod(method, params) { return result }
            if let module = Self.unavailable[method] {
                throw RPCError(RPCError.moduleNotLoaded, "module not loaded: \(module)",
                               data: "\(method) needs the \(module) module, which Starling does not implement yet")
            }
            throw RPCError(RPCError.methodNotFound, "Method not found", data: method)
        }
    }

    private func noParams(_ method: String, _ params: [Any]) throws(RPCError) {
        if !params.isEmpty { throw RPCError(RPCError.invalidParams, "Invalid params", data: "\(method) takes no parameters") }
    }

    static var platform: String {
        #if arch(x86_64)
        let arch = "x86_64"
        #elseif arch(arm64)
        let arch = "aarch64"
        #else
        let arch = "unknown"
        #endif
        #if os(Linux)
        return "\(arch)/linux"
        #else
        return arch
        #endif
    }

    func psx() -> [[String: Any]] {
        let pid = Int(getpid())
        var out: [[String: Any]] = [["IDX": 0, "PID": pid, "DSC": "main process (signals)"]]
        var idx = 1
        for s in server.boundSockets {
            for w in 0..<server.config.workers {
                out.append(["IDX": idx, "PID": pid, "DSC": "udp receiver child=\(w) sock=\(s.proto):\(s.address)"])
                idx += 1
            }
        }
        out.append(["IDX": idx, "PID": pid, "DSC": "script file watcher"])
        if let c = controlAddress { out.append(["IDX": idx + 1, "PID": pid, "DSC": "control http \(c)"]) }
        return out
    }

    func info() -> [String: Any] {
        let p = server.publishedScript
        var out: [String: Any] = [
            "version": "starling \(Server.version)",
            "pid": Int(getpid()),
            "workers": server.workerCount,
            "workers_per_socket": server.config.workers,
            "listen": server.boundSockets.map { "\($0.proto):\($0.address)" },
            "script": p.source.path,
            "script_version": p.version.description,
            "modules": server.registry.loadedModules,
            "uptime": Int(server.uptimeSeconds),
        ]
        if let c = controlAddress { out["control"] = c }
        return out
    }

    func apiList() -> [String: Any] {
        func param(_ p: KemiParamType) -> String { p.name }
        func ret(_ r: KemiReturnType) -> String { r.name }
        let methods: [[String: Any]] = server.registry.exports.map { e in
            ["func": [
                "module": e.module, "name": e.name, "qualified": e.qualifiedName,
                "ret": ret(e.returns), "params": e.params.map(param),
            ] as [String: Any]]
        }
        return ["msize": methods.count, "methods": methods]
    }

    /// Kamailio's shape: a list of "group:name = value" strings.
    func statistics(_ params: [Any]) throws(RPCError) -> [String] {
        var wanted: [String] = []
        for p in params {
            guard let s = p as? String else {
                throw RPCError(RPCError.invalidParams, "Invalid params", data: "statistics names are strings (\"all\", \"core:\", \"core:rcv_requests\")")
            }
            wanted.append(s)
        }
        if wanted.isEmpty { wanted = ["all"] }
        let all = Self.statistics(server)
        var out: [String] = []
        for w in wanted {
            let matched: [(String, Int)]
            if w == "all" {
                matched = all
            } else if w.hasSuffix(":") {
                matched = all.filter { $0.0.hasPrefix(w) }
            } else if w.contains(":") {
                matched = all.filter { $0.0 == w || ($0.0.hasPrefix(w + "{") && !w.contains("{")) }
            } else {
                matched = all.filter { $0.0.hasPrefix(w + ":") || $0.0.hasSuffix(":" + w) }
            }
            if matched.isEmpty {
                throw RPCError(RPCError.invalidParams, "Invalid params", data: "no statistics match \"\(w)\" (groups: core, script, app_lua)")
            }
            for (name, value) in matched where !out.contains("\(name) = \(value)") { out.append("\(name) = \(value)") }
        }
        return out
    }

    /// Every statistic as ("group:name", value), in a stable order.
    static func statistics(_ server: Server) -> [(String, Int)] {
        let c = server.counters()
        let m = server.messageCounters()
        var out: [(String, Int)] = [
            ("core:rcv_datagrams", c["received"] ?? 0),
            ("core:rcv_requests", m.requests.values.reduce(0, +)),
            ("core:rcv_replies", m.replies.values.reduce(0, +)),
            ("core:parse_errors", c["parse_errors"] ?? 0),
            ("core:rejected", c["rejected"] ?? 0),
        ]
        for k in m.requests.keys.sorted() { out.append(("core:rcv_requests_\(k.lowercased())", m.requests[k]!)) }
        for k in m.replies.keys.sorted() { out.append(("core:rcv_replies_\(k)", m.replies[k]!)) }
        out.append(("core:fwd_requests", c["requests_sent"] ?? 0))
        out.append(("core:sent_replies", m.repliesSent.values.reduce(0, +)))
        for k in m.repliesSent.keys.sorted() { out.append(("core:sent_replies_\(k)", m.repliesSent[k]!)) }
        out.append(("core:send_failures", c["send_failures"] ?? 0))
        out += [
            ("script:errors", c["script_errors"] ?? 0),
            ("script:budget_aborts", c["budget_aborts"] ?? 0),
            ("app_lua:reloads_ok", c["reloads_ok"] ?? 0),
            ("app_lua:reloads_failed", c["reloads_failed"] ?? 0),
        ]
        // The loaded modules' statistics, under their Kamailio names ("tmx:active_transactions").
        // A labelled statistic lists one line per sample ("rtpengine:instance_requests{instance=udp:...}").
        for (s, samples) in server.stack.statistics() {
            for sample in samples { out.append((s.displayName(sample), sample.value)) }
        }
        return out
    }
}
