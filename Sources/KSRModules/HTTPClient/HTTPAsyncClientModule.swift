#if canImport(Glibc)
import Glibc
#endif
import StarlingKEMI
import Logging
import Synchronization
import SIPTransaction

/// `KSR.http_async_client` (Kamailio's http_async_client): `query(url, callback)` sends an HTTP request
/// without waiting for it. With a transaction (and `$http_req(suspend)` not 0) the transaction is
/// suspended (`t_suspend`) and `query` returns 0, so the route stops; when the answer (or the timeout)
/// comes, the worker that asked continues the transaction in `callback`, as a failure route, with
/// `$http_ok`, `$http_err`, `$http_rs`, `$http_rr`, `$http_rb`, `$http_bs`, `$http_hdr(name)`,
/// `$http_mb`, `$http_ml`, `$http_time(...)` and `$http_req_id` set. Without a transaction `query`
/// returns 1, the route goes on, and `callback` runs later on a faked request (an event route).
/// The requests themselves are driven by libcurl multi handles on `workers` threads.
enum HTTPAsyncClientModule: KSRModule {
    static let name = "http_async_client"
    static let summary = "Asynchronous HTTP requests (libcurl multi): the transaction is suspended and continued in a callback."
    static let dependencies = ["tm", "tmx"]

    static let workers = ModuleParameter.int("http_async_client", "workers", 1,
                                             "Threads driving the requests (each a libcurl multi handle).") { $0 < 1 ? "the 'workers' parameter must be >= 1" : nil }
    static let connectionTimeout = ModuleParameter.int("http_async_client", "connection_timeout", 500,
                                                       "Timeout of a request in ms (`$http_req(timeout)` overrides it).")
    static let hashSize = ModuleParameter.int("http_async_client", "hash_size", 2048,
                                              "Kamailio's table of transfers (accepted; Starling keeps transfers per thread).")
    static let tlsVersion = ModuleParameter.int("http_async_client", "tls_version", 0, "CURLOPT_SSLVERSION (0: libcurl's default).")
    static let tlsVerifyHost = ModuleParameter.flag("http_async_client", "tls_verify_host", true, "Verify the server certificate's host name.")
    static let tlsVerifyPeer = ModuleParameter.flag("http_async_client", "tls_verify_peer", true, "Verify the server certificate.")
    static let curlVerbose = ModuleParameter.int("http_async_client", "curl_verbose", 0, "Kamailio's libcurl debug log (accepted, no effect).")
    static let followRedirect = ModuleParameter.flag("http_async_client", "curl_follow_redirect", false, "Follow HTTP redirects.")
    static let tlsClientCert = ModuleParameter.optionalStr("http_async_client", "tls_client_cert", "Client certificate file.")
    static let tlsClientKey = ModuleParameter.optionalStr("http_async_client", "tls_client_key", "Client certificate key file.")
    static let tlsCAPath = ModuleParameter.optionalStr("http_async_client", "tls_ca_path", "Directory of CA certificates.")
    static let memoryManager = ModuleParameter.str("http_async_client", "memory_manager", "shm",
                                                   "Kamailio's libcurl allocator, shm or sys (accepted; Starling uses the system one).") { v in
        v.hasPrefix("shm") || v.hasPrefix("sys") ? nil : "invalid memory_manager parameter: '\(v)' (shm or sys)"
    }
    static let authMethod = ModuleParameter.int("http_async_client", "authmethod", 3, "CURLAUTH bits for requests with credentials (1 basic, 2 digest).")
    static let tcpKeepalive = ModuleParameter.flag("http_async_client", "tcp_keepalive", false, "TCP keepalives on request connections.")
    static let tcpKAIdle = ModuleParameter.int("http_async_client", "tcp_ka_idle", 0, "TCP keepalive idle time (s).")
    static let tcpKAInterval = ModuleParameter.int("http_async_client", "tcp_ka_interval", 0, "TCP keepalive interval (s).")
    static let parameters = [workers, connectionTimeout, hashSize, tlsVersion, curlVerbose, authMethod, tcpKAIdle, tcpKAInterval].map(\.info)
        + [tlsVerifyHost, tlsVerifyPeer, followRedirect, tcpKeepalive].map(\.info)
        + [tlsClientCert.info, tlsClientKey.info, tlsCAPath.info, memoryManager.info]

    static func engine(_ rt: ModuleRuntime) -> HTTPAsyncEngine {
        rt.state(HTTPAsyncEngine.self) { HTTPAsyncEngine(workers: rt.config[workers]) }
    }

    static let statistics = [
        ModuleStatistic("http_async_client:requests", metric: "starling_http_async_requests_total", .counter,
                        "HTTP requests queued.") { engine($0).requests.load(ordering: .relaxed) },
        ModuleStatistic("http_async_client:replies", metric: "starling_http_async_replies_total", .counter,
                        "HTTP answers received.") { engine($0).replies.load(ordering: .relaxed) },
        ModuleStatistic("http_async_client:errors", metric: "starling_http_async_errors_total", .counter,
                        "Requests that ended with an error (timeouts included).") { engine($0).errors.load(ordering: .relaxed) },
        ModuleStatistic("http_async_client:timeouts", metric: "starling_http_async_timeouts_total", .counter,
                        "Requests that timed out.") { engine($0).timeouts.load(ordering: .relaxed) },
    ]

    /// The modparam defaults of a request (`set_query_params`).
    /// Per worker: the next request's parameters (`$http_req(...)`), the query id counter, and the
    /// answer the running callback sees.
    final class WorkerState {
        var params: Params?
        var counter = 0
        /// `$http_req_id`: the id of the last query, or of the query whose callback is running.
        var id = ""
        var reply: HTTPAsyncResult?
        /// The request the modparams describe (no URL), read once per worker.
        var defaults: HTTPAsyncRequest?
    }

    /// What `$http_req(...)` set for the next query (reset after each query, as Kamailio): the
    /// request, starting from the modparams' one, and whether to suspend the transaction.
    struct Params {
        var request: HTTPAsyncRequest
        var suspend = true

        init(_ defaults: HTTPAsyncRequest) { request = defaults }
    }

    static func workerState(_ ctx: RouteContext) -> WorkerState { ctx.worker.local(WorkerState.self) { WorkerState() } }

    static func exports(_ runtime: ModuleRuntime) -> [KemiExport] {
        let defaults = HTTPAsyncRequest(modparams: runtime.config)
        let store = runtime.tm
        let rt = runtime
        let stubs = HTTPAsyncStubs.of(runtime)
        return [
            KemiExport("http_async_client", "query", [.str, .str], returns: .int) { ctx, a in
                .int(query(ctx, store, engine(rt), defaults, url: a.str(0), callback: a.str(1), stubs: stubs))
            },
        ]
    }

    /// Kamailio's MAX_CBNAME_LEN (64 with the NUL).
    static let maxCallbackName = 63

    static func query(_ ctx: RouteContext, _ store: TMStore, _ engine: HTTPAsyncEngine, _ d: HTTPAsyncRequest, url: String,
                      callback: String, stubs: HTTPAsyncStubs? = nil) -> Int {
        guard !url.isEmpty else { ctx.logger.error("http_async_client: invalid data parameter"); return -1 }
        guard !callback.isEmpty else { ctx.logger.error("http_async_client: invalid route name parameter"); return -1 }
        guard callback.utf8.count < maxCallbackName else {
            ctx.logger.error("http_async_client: callback name is too long: \(callback.utf8.count) / \(callback)")
            return -1
        }
        let ws = workerState(ctx)
        let p = ws.params ?? Params(d)
        ws.params = nil
        // Suspend the transaction when there is one (and $http_req(suspend) is not 0).
        var suspended: (index: Int, label: Int)? = nil
        if let cell = TMRelay.current(ctx), p.suspend {
            let (code, _) = TMSuspend.suspend(store, ctx)
            guard code > 0 else {
                ctx.logger.error("http_async_client: failed to suspend request processing")
                return -1
            }
            suspended = TMSuspend.ids(store, cell)
        }
        ws.counter += 1
        let id = "\(getpid())-\(ctx.worker.index)-\(ws.counter)"
        ws.id = id
        var r = p.request
        r.url = url
        if let stubs, stubs.isActive, let stub = stubs.match(url) {
            // Route tests: the stubbed answer after its delay, on the transaction clock.
            let ids = suspended
            AsyncTimers.of(store, ctx).add(at: store.now.advanced(by: .milliseconds(stub.delayMs))) { ctx in
                deliver(ctx, store, HTTPAsyncStubs.result(stub), id: id, callback: callback, suspended: ids)
            }
            return suspended == nil ? 1 : 0
        }
        let mailbox = ctx.mailbox
        let suspendedIDs = suspended
        mailbox.beginWait()
        let queued = engine.submit(r) { result in
            mailbox.post { ctx in
                mailbox.endWait()
                deliver(ctx, store, result, id: id, callback: callback, suspended: suspendedIDs)
            }
        }
        guard queued else {
            mailbox.endWait()
            ctx.logger.error("http_async_client: failed to relay query: \(url)")
            if let s = suspended { TMSuspend.cancelSuspended(store, ctx, index: s.index, label: s.label) }
            return -1
        }
        return suspended == nil ? 1 : 0
    }

    /// On the worker that asked: the callback with the answer's variables set.
    static func deliver(_ ctx: RouteContext, _ store: TMStore, _ result: HTTPAsyncResult, id: String, callback: String,
                        suspended: (index: Int, label: Int)?) {
        let ws = workerState(ctx)
        let saved = (ws.reply, ws.id)
        defer { (ws.reply, ws.id) = saved }
        if let s = suspended {
            if TMSuspend.lookup(store, index: s.index, label: s.label) == nil {
                ctx.logger.error("http_async_client: transaction not found \(s.index):\(s.label)")
                return
            }
            TMSuspend.resume(store, ctx, index: s.index, label: s.label, callback: callback,
                             event: "http_async_client:callback") { _ in
                ws.reply = result
                ws.id = id
            }
        } else {
            FakedMessage.run(ctx, callback: callback, event: "http_async_client:callback") { _ in
                ws.reply = result
                ws.id = id
            }
        }
    }

    // MARK: Pseudo-variables

    /// `$http_req(name)` names (Kamailio's ah_parse_req_name).
    static let requestNames: Set<String> = [
        "all", "hdr", "body", "method", "timeout", "suspend", "ka-idle", "username", "password", "keepalive",
        "authmethod", "tls_ca_path", "ka-interval", "tls_client_key", "tls_client_cert", "follow_redirect",
    ]
    /// `$http_time(name)` names.
    static let timeNames: Set<String> = ["total", "lookup", "connect", "redirect", "appconnect", "pretransfer", "starttransfer"]

    /// `$http_req(name) = value`. True when accepted (Kamailio's ah_set_req).
    static func setRequest(_ ctx: RouteContext, _ name: String, _ value: KemiValue) -> Bool {
        let ws = workerState(ctx)
        let d = ws.defaults ?? HTTPAsyncRequest(modparams: (ctx.moduleState as? ModuleRuntime)?.config ?? ModuleConfiguration())
        ws.defaults = d
        var p = ws.params ?? Params(d)
        defer { ws.params = p }
        func str() -> String? {
            if case .string(let s) = value { return s }
            return nil
        }
        func int() -> Int? {
            if case .int(let i) = value { return i }
            return nil
        }
        let isNull = value == .null
        func wrongType() -> Bool {
            ctx.logger.error("http_async_client: invalid value type for $http_req(\(name))")
            return false
        }
        switch name {
        case "all":
            if isNull { p = Params(d) }
        case "hdr":
            if !isNull { guard let s = str() else { return wrongType() }; p.request.headers.append(s) }
        case "method":
            if isNull { p.request.method = nil; break }
            guard let s = str() else { return wrongType() }
            let m = s.uppercased()
            guard ["GET", "POST", "PUT", "DELETE"].contains(m) else {
                ctx.logger.error("http_async_client: Unsupported method: \(s)")
                return true
            }
            p.request.method = m
        case "timeout":
            if isNull { p.request.timeout = d.timeout; break }
            guard let i = int() else { return wrongType() }
            p.request.timeout = i
        case "tls_ca_path":
            if !isNull { guard let s = str() else { return wrongType() }; p.request.caPath = s.isEmpty ? nil : s }
        case "tls_client_key":
            if !isNull { guard let s = str() else { return wrongType() }; p.request.clientKey = s.isEmpty ? nil : s }
        case "tls_client_cert":
            if !isNull { guard let s = str() else { return wrongType() }; p.request.clientCert = s.isEmpty ? nil : s }
        case "suspend":
            if isNull { p.suspend = true; break }
            guard let i = int() else { return wrongType() }
            p.suspend = i != 0
        case "body":
            if !isNull { guard let s = str() else { return wrongType() }; p.request.body = s.isEmpty ? nil : Array(s.utf8) }
        case "authmethod":
            if isNull { p.request.authMethod = d.authMethod; break }
            guard let i = int() else { return wrongType() }
            p.request.authMethod = i
        case "username":
            if !isNull { guard let s = str() else { return wrongType() }; p.request.username = s.isEmpty ? nil : s }
        case "password":
            if !isNull { guard let s = str() else { return wrongType() }; p.request.password = s.isEmpty ? nil : s }
        case "keepalive":
            if isNull { p.request.keepalive = d.keepalive; break }
            guard let i = int() else { return wrongType() }
            p.request.keepalive = i != 0
        case "ka-idle":
            if isNull { p.request.keepaliveIdle = d.keepaliveIdle; break }
            guard let i = int() else { return wrongType() }
            p.request.keepaliveIdle = i
        case "ka-interval":
            if isNull { p.request.keepaliveInterval = d.keepaliveInterval; break }
            guard let i = int() else { return wrongType() }
            p.request.keepaliveInterval = i
        case "follow_redirect":
            if isNull { p.request.followRedirect = d.followRedirect; break }
            guard let i = int() else { return wrongType() }
            p.request.followRedirect = i != 0
        default:
            return false
        }
        return true
    }

    /// The answer variables (`$http_ok`, `$http_rs`...), read in the callback.
    static func get(_ ctx: RouteContext, _ name: String, _ arg: String?) -> PVValue {
        let ws = workerState(ctx)
        if name == "req_id" { return .string(ws.id) }
        if name == "req" { return .null }
        if name == "time" {
            return .int(ws.reply?.times[arg ?? "total"] ?? 0)
        }
        guard let r = ws.reply else {
            ctx.logger.error("http_async_client: the async variables can only be read from an async http callback")
            return .null
        }
        switch name {
        case "ok": return .int(r.error == nil ? 1 : 0)
        case "err": return r.error.map { .string($0) } ?? .null
        default: break
        }
        if r.error != nil {
            ctx.logger.warning("http_async_client: an async variable was read after http error, use $http_ok to check the request's status")
            return .null
        }
        switch name {
        case "rs": return .int(r.status)
        case "rr": return .string(r.reason)
        case "rb": return .string(String(decoding: r.body, as: UTF8.self))
        case "bs": return .int(r.body.count)
        case "mb": return .string(String(decoding: r.raw, as: UTF8.self))
        case "ml": return .int(r.raw.count)
        case "hdr": return arg.flatMap { r.header($0) }.map { .string($0) } ?? .null
        default: return .null
        }
    }
}

/// Stubbed http_async_client answers for route tests (`starling test`'s `http{...}`): a query whose URL
/// starts with a stubbed prefix (the longest wins) is not sent; its answer is delivered after the
/// stub's delay on the transaction clock (which route tests move with `wait(ms)`). Status 0 stands
/// for a service that does not answer: the callback sees `$http_ok` 0 and `$http_err` "TIMEOUT".
public final class HTTPAsyncStubs: Sendable {
    struct Stub: Sendable {
        var delayMs: Int
        var status: Int
        var body: String
    }
    private let table = Mutex<[String: Stub]>([:])
    private let active = Atomic<Bool>(false)

    public init() {}

    /// The stubs of a module state (created empty on first use).
    public static func of(_ runtime: ModuleRuntime) -> HTTPAsyncStubs { runtime.state(HTTPAsyncStubs.self) { HTTPAsyncStubs() } }

    public func set(urlPrefix: String, delayMs: Int, status: Int, body: String) {
        table.withLock { $0[urlPrefix] = Stub(delayMs: max(0, delayMs), status: status, body: body) }
        active.store(true, ordering: .releasing)
    }

    @inline(__always) var isActive: Bool { active.load(ordering: .acquiring) }

    func match(_ url: String) -> Stub? {
        table.withLock { t in t.filter { url.hasPrefix($0.key) }.max { $0.key.count < $1.key.count }?.value }
    }

    /// The answer a stub gives.
    static func result(_ s: Stub) -> HTTPAsyncResult {
        guard s.status > 0 else { return HTTPAsyncResult(error: "TIMEOUT") }
        let reason = s.status == 200 ? "OK" : s.status == 404 ? "Not Found" : s.status >= 500 ? "Server Error" : "Status"
        let text = "HTTP/1.1 \(s.status) \(reason)\r\nContent-Type: text/plain\r\nContent-Length: \(s.body.utf8.count)\r\n\r\n\(s.body)"
        var r = HTTPAsyncResult()
        r.parse(Array(text.utf8))
        r.times["total"] = s.delayMs * 1000
        return r
    }
}

extension HTTPAsyncRequest {
    /// The request the modparams describe (`connection_timeout`, `tls_*`, `authmethod`,
    /// `curl_follow_redirect`, `tcp_*`): what each query starts from before `$http_req(...)`.
    init(modparams c: ModuleConfiguration) {
        typealias M = HTTPAsyncClientModule
        self.init(url: "", timeout: c[M.connectionTimeout], verifyPeer: c[M.tlsVerifyPeer], verifyHost: c[M.tlsVerifyHost],
                  followRedirect: c[M.followRedirect], authMethod: c[M.authMethod], clientCert: c[M.tlsClientCert],
                  clientKey: c[M.tlsClientKey], caPath: c[M.tlsCAPath], tlsVersion: c[M.tlsVersion],
                  keepalive: c[M.tcpKeepalive], keepaliveIdle: c[M.tcpKAIdle], keepaliveInterval: c[M.tcpKAInterval])
    }
}
