import Foundation
import KSRModules
#if canImport(Glibc)
import Glibc
#endif
public import StarlingServer
import StarlingKEMI
import StarlingLua
import KSRModules
import SIPTransport
import SIPStreams
import Synchronization

/// A JSON-RPC 2.0 error object.
public struct RPCError: Error, Sendable, Equatable {
    public let code: Int
    public let message: String
    public let data: String?

    public init(_ code: Int, _ message: String, data: String? = nil) {
        self.code = code
        self.message = message
        self.data = data
    }

    public static let parseError = -32700
    public static let invalidRequest = -32600
    public static let methodNotFound = -32601
    public static let invalidParams = -32602
    public static let internalError = -32603
    /// Server-defined: a recognised method whose module is not loaded.
    public static let moduleNotLoaded = -32001
    /// Server-defined: the method ran and failed (e.g. a reload refused).
    public static let failed = -32000
}

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
        ("tm.stats", "tm transactions in memory: current (when the tm module is loaded)."),
        ("ul.dump", "Every usrloc table with its AORs and contacts (when the registrar is loaded)."),
        ("ul.lookup", "ul.lookup TABLE AOR: the contacts of one AOR."),
        ("ul.rm", "ul.rm TABLE AOR: removes every contact of an AOR."),
        ("core.version", "Starling's version."),
        ("core.psx", "The threads: index, pid, description."),
        ("core.info", "Version, pid, workers, listen sockets, script and version."),
        ("app_lua.reload", "Reloads the script now; returns the new version or the error."),
        ("app_lua.list", "The script, its loaded files and the active version."),
        ("app_lua.api_list", "Every KSR export with its parameter and return types."),
        ("stats.get_statistics", "Counters: \"all\" (default), a group (\"core:\", \"script:\", \"app_lua:\") or one name."),
        ("system.listMethods", "The method names."),
        ("uac.reg_dump", "The remote registrations (uacreg rows) with their state."),
        ("uac.reg_reload", "Reads the uacreg rows again."),
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
        case "tm.stats":
            try noParams(method, params)
            guard let current = server.transactionsActive else {
                throw RPCError(RPCError.moduleNotLoaded, "module not loaded: tm", data: "tm.stats needs the tm module")
            }
            // Kamailio's tm.stats has more counters; Starling keeps the number of live transactions.
            return ["current": current] as [String: Any]
        case "uac.reg_dump", "uac.reg_reload":
            try noParams(method, params)
            guard server.uacLoaded else {
                throw RPCError(RPCError.moduleNotLoaded, "module not loaded: uac", data: "\(method) needs the uac module")
            }
            let reg = server.runtime.uacreg
            // Kamailio's fault when uac_reg has no database.
            guard reg.isEnabled else { throw RPCError(RPCError.failed, "Not enabled", data: "no uacreg table is configured") }
            let now = server.runtime.clock.unixTime
            if method == "uac.reg_reload" {
                guard let n = reg.reload(now: now) else {
                    throw RPCError(RPCError.failed, "Failed to reload records - check log messages")
                }
                return ["rows": n] as [String: Any]
            }
            return reg.dump(now: now).map { row in
                row.mapValues { v -> Any in
                    switch v {
                    case .int(let i): return i
                    case .string(let s): return s
                    case .null: return NSNull()
                    }
                }
            }
        case "ul.dump", "ul.lookup", "ul.rm":
            return try usrloc(method, params)
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
            return (Self.available.map(\.name) + Self.moduleMethods.map(\.name) + Self.unavailable.keys).sorted()
        default:
            if let result = try callModuleMethod(method, params) { return result }
            if let module = Self.unavailable[method] {
                throw RPCError(RPCError.moduleNotLoaded, "module not loaded: \(module)",
                               data: "\(method) needs the \(module) module, which Starling does not implement yet")
            }
            throw RPCError(RPCError.methodNotFound, "Method not found", data: method)
        }
    }

    /// Kamailio's ul.dump / ul.lookup / ul.rm reply shapes (JSON-RPC form of usrloc's RPC).
    private func usrloc(_ method: String, _ params: [Any]) throws(RPCError) -> Any {
        guard server.registrarLoaded else {
            throw RPCError(RPCError.moduleNotLoaded, "module not loaded: usrloc", data: "\(method) needs the registrar/usrloc modules")
        }
        let ul = server.runtime.usrloc
        let now = server.runtime.clock.unixSeconds
        if method == "ul.dump" {
            // Kamailio accepts an optional "brief" flag; both forms get the full contact list here.
            if params.count > 1 { throw RPCError(RPCError.invalidParams, "Invalid params", data: "ul.dump takes at most one parameter") }
            let domains: [[String: Any]] = ul.allTables.map { t in
                let records = t.snapshot()
                let aors: [[String: Any]] = records.map { r in
                    ["Info": ["AoR": r.aor, "HashID": Self.aorHash(r.aor),
                              "Contacts": r.contacts.map { ["Contact": Self.contactInfo($0, now: now)] }] as [String: Any]]
                }
                return ["Domain": ["Domain": t.name, "Size": 64, "AoRs": aors,
                                   "Stats": ["Records": records.count, "Max-Slots": 64]] as [String: Any]]
            }
            return ["Domains": domains] as [String: Any]
        }
        guard params.count == 2, let table = params[0] as? String, let aorText = params[1] as? String else {
            throw RPCError(RPCError.invalidParams, "Invalid params", data: "\(method) TABLE AOR")
        }
        guard ul.allTables.contains(where: { $0.name == table }) else {
            throw RPCError(500, "Domain not found", data: table)
        }
        let t = ul.table(table)
        // The AOR as the registrar keys it: `user` (or `user@domain` with use_domain); a SIP URI is accepted too.
        var aor = aorText
        if aor.hasPrefix("sip:") || aor.hasPrefix("sips:") { aor = String(aor.drop(while: { $0 != ":" }).dropFirst()) }
        if !ul.useDomain, let at = aor.firstIndex(of: "@") { aor = String(aor[..<at]) }
        let contacts = t.contacts(aor)
        guard !contacts.isEmpty else { throw RPCError(404, "AOR not found", data: aor) }
        if method == "ul.rm" {
            ul.removeAll(t, aor)
            return [String: Any]()
        }
        return ["AoR": aor, "Contacts": contacts.map { ["Contact": Self.contactInfo($0, now: now)] }] as [String: Any]
    }

    static func aorHash(_ aor: String) -> Int {
        var h: UInt32 = 0
        for b in aor.utf8 { h = h &* 31 &+ UInt32(b) }
        return Int(h)
    }

    /// One contact as Kamailio's usrloc RPC prints it ("[not set]" for empty values).
    static func contactInfo(_ c: LocationContact, now: Int) -> [String: Any] {
        func opt(_ s: String?) -> String { (s ?? "").isEmpty ? "[not set]" : s! }
        return [
            "Address": c.contact, "Expires": c.expires - now, "Q": c.q, "Call-ID": c.callid, "CSeq": c.cseq,
            "User-Agent": c.userAgent, "Received": opt(c.received), "Path": opt(c.path), "State": "CS_SYNC",
            "Flags": c.flags, "CFlags": c.cflags, "Socket": opt(c.socket), "Methods": c.methods, "Ruid": c.ruid,
            "Instance": opt(c.instance), "Reg-Id": c.regId, "Server-Id": c.serverId, "Tcpconn-Id": c.connectionId,
            "Keepalive": c.keepalive, "Last-Keepalive": c.lastModified, "KA-Roundtrip": 0, "Last-Modified": c.lastModified,
        ]
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
                matched = all.filter { $0.0 == w }
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
        return out
    }
}
