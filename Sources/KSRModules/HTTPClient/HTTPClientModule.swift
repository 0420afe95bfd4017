import StarlingKEMI
import SIPTransaction
import Logging
import CCurl

/// `KSR.http_client` (REFERENCE §2.9) on libcurl. Each worker has its own easy handle (and one per
/// named connection that keeps its connections), so requests block only the calling worker, for at
/// most the configured timeout.
///
/// Return values as Kamailio's: the HTTP status (200, 404, 500...; 0 becomes -1). A transport error
/// returns the libcurl error code negated (-7 connection refused, -28 timeout, -3 malformed URL...),
/// where Kamailio 5.6 returns the positive curl code (< 100); docs/HTTP_CLIENT.md.
enum HTTPClientModule {
    static func exports(_ config: ModuleConfiguration, _ awaiting: Awaiting? = nil) -> [KemiExport] {
        var configured = HTTPClientSettings(config)
        configured.awaiting = awaiting
        let settings = configured
        let m = "http_client"
        return [
            KemiExport(m, "query", [.str, .str], returns: .int) { ctx, a in
                query(ctx, settings, url: a.string(0), method: nil, body: nil, headers: nil, dpv: a.str(1), fn: "query")
            },
            KemiExport(m, "query_post", [.str, .str, .str], returns: .int) { ctx, a in
                query(ctx, settings, url: a.string(0), method: nil, body: a.byteArray(1), headers: nil, dpv: a.str(2),
                      fn: "query_post")
            },
            KemiExport(m, "query_post_hdrs", [.str, .str, .str, .str], returns: .int) { ctx, a in
                query(ctx, settings, url: a.string(0), method: nil, body: a.byteArray(1), headers: a.string(2),
                      dpv: a.str(3), fn: "query_post_hdrs")
            },
            KemiExport(m, "get_hdrs", [.str, .str, .str, .str], returns: .int) { ctx, a in
                query(ctx, settings, url: a.string(0), method: "GET", body: a.byteArray(1), headers: a.string(2),
                      dpv: a.str(3), fn: "get_hdrs")
            },
            KemiExport(m, "query_request", [.str, .str, .str, .str, .str], returns: .int,
                       compat: "Kamailio 6.0+ (not in 5.6)") { ctx, a in
                let met = a.str(0)
                return query(ctx, settings, url: a.string(1), method: met.isEmpty ? nil : met, body: a.byteArray(2),
                             headers: a.string(3), dpv: a.str(4), fn: "query_request")
            },
            KemiExport(m, "curl_connect", [.str, .str, .str], returns: .int) { ctx, a in
                connect(ctx, settings, con: a.str(0), path: a.str(1), contentType: nil, body: nil, dpv: a.str(2))
            },
            KemiExport(m, "curl_connect_post", [.str, .str, .str, .str, .str], returns: .int) { ctx, a in
                connect(ctx, settings, con: a.str(0), path: a.str(1), contentType: a.str(2), body: a.byteArray(3), dpv: a.str(4))
            },
        ]
    }

    /// async_io: requests of suspended routes go to a libcurl multi handle on an HTTP thread (the
    /// same engine as http_async_client's, a lane of its own); `starling test` stubs answer them.
    final class Awaiting: Sendable {
        let engine = HTTPAsyncEngine(workers: 1)
        let stubs: HTTPAsyncStubs
        let clock: TMStore
        init(stubs: HTTPAsyncStubs, clock: TMStore) {
            self.stubs = stubs
            self.clock = clock
        }
    }

    /// With async_io, from a route coroutine: starts the request without blocking and suspends the
    /// route (nil: block as usual). The result variable is set and the status returned when the
    /// route resumes, exactly as the blocking call would.
    static func suspendRoute(_ ctx: RouteContext, _ s: HTTPClientSettings, _ r: CurlRequest, dpv: String, url: String,
                             fn: String) -> KemiResult? {
        guard let awaiting = s.awaiting, let ticket = ctx.asyncIO?.beginAwait(ctx) else { return nil }
        start(awaiting, ctx, r) { outcome, _ in
            ticket.complete { ctx in
                guard let pv = ctx.pvCache.spec(dpv) else { return .int(-1) }
                return finish(ctx, outcome, pv: pv, url: url, fn: fn)
            }
        }
        return KemiResult.none
    }

    /// async_io, a named connection: as `suspendRoute`, and when the connection has a failover and
    /// the first try fails (transport error or 5xx), its completion starts the failover
    /// connection's try (on the HTTP thread: the route is not resumed in between); the route resumes
    /// once, with the final result, as the blocking `connect` returns it (same log lines).
    static func suspendConnect(_ ctx: RouteContext, _ s: HTTPClientSettings, _ con: HTTPConnection, path: String,
                               contentType: String?, body: [UInt8]?, dpv: String) -> KemiResult? {
        guard let awaiting = s.awaiting, let ticket = ctx.asyncIO?.beginAwait(ctx) else { return nil }
        let logger = ctx.logger
        let resume: @Sendable (HTTPConnection, CurlOutcome) -> Void = { used, outcome in
            ticket.complete { ctx in finishConnect(ctx, used, outcome, path: path, dpv: dpv) }
        }
        start(awaiting, ctx, request(s, con, path: path, contentType: contentType, body: body)) { outcome, wctx in
            guard let fo = failover(logger, con, outcome) else {
                resume(con, outcome)
                return
            }
            guard let next = s.connections[fo] else {
                ticket.complete { ctx in missingFailover(ctx, fo, dpv: dpv) }
                return
            }
            start(awaiting, wctx, request(s, next, path: path, contentType: contentType, body: body)) { outcome, _ in
                resume(next, outcome)
            }
        }
        return KemiResult.none
    }

    /// Starts `r` on the async_io HTTP thread (or answers it from a route-test stub); `done` gets the
    /// outcome on that thread, or on the worker with its context (stubs: after their delay on the
    /// router's clock when `ctx` is given and tm runs, at once otherwise).
    static func start(_ awaiting: Awaiting, _ ctx: RouteContext?, _ r: CurlRequest,
                      _ done: @escaping @Sendable (CurlOutcome, RouteContext?) -> Void) {
        if awaiting.stubs.isActive, let stub = awaiting.stubs.match(r.url) {
            // Route tests: the stubbed answer after its delay on the router's clock (status 0: the
            // request times out then).
            let outcome: CurlOutcome = stub.status > 0
                ? .status(stub.status, body: CurlHandle.stored(Array(stub.body.utf8), r))
                : .failure(code: Int(CURLE_OPERATION_TIMEDOUT.rawValue), message: "Timeout was reached")
            if let ctx, ctx.transactions != nil {
                AsyncTimers.of(awaiting.clock, ctx).add(at: awaiting.clock.now.advanced(by: .milliseconds(stub.delayMs))) { ctx in
                    done(outcome, ctx)
                }
            } else {
                done(outcome, ctx)
            }
            return
        }
        if !awaiting.engine.submit(plain: r, done: { done($0, nil) }) {
            done(.failure(code: Int(CURLE_FAILED_INIT.rawValue), message: "the HTTP thread is not running"), ctx)
        }
    }

    /// Per-worker curl handles: one for the ad-hoc queries, one per named connection.
    final class Handles {
        let plain = CurlHandle()
        var named: [String: CurlHandle] = [:]
    }

    static func query(_ ctx: RouteContext, _ s: HTTPClientSettings, url: String?, method: String?, body: [UInt8]?,
                      headers: String?, dpv: String, fn: String) -> KemiResult {
        guard let pv = ctx.pvCache.spec(dpv) else {
            ctx.logger.error("http_client.\(fn): failed to get pv spec for: \(dpv)")
            return .int(-1)
        }
        guard let url, !url.isEmpty else {
            ctx.logger.error("http_client.\(fn): invalid url parameter")
            return .int(-1)
        }
        let r = CurlRequest(url: url, method: method, body: body, contentType: nil,
                            headers: headers.flatMap { $0.isEmpty ? nil : $0 }, timeout: s.timeout, timeoutMode: s.timeoutMode,
                            verifyPeer: s.verifyPeer, verifyHost: s.verifyHost, followRedirects: s.followRedirects,
                            userAgent: s.userAgent, caCert: s.caCert, proxy: s.proxy, proxyPort: s.proxyPort,
                            firstLineOnly: s.firstLineOnly, maxDataSize: s.queryMaxDataSize)
        if let waiting = suspendRoute(ctx, s, r, dpv: dpv, url: url, fn: fn) { return waiting }
        let handles = ctx.worker.local(Handles.self) { Handles() }
        let outcome = handles.plain.perform(r)
        return finish(ctx, outcome, pv: pv, url: url, fn: fn)
    }

    static func connect(_ ctx: RouteContext, _ s: HTTPClientSettings, con name: String, path: String, contentType: String?,
                        body: [UInt8]?, dpv: String) -> KemiResult {
        guard ctx.pvCache.spec(dpv) != nil else {
            ctx.logger.error("http_client.curl_connect: failed to get pv spec for: \(dpv)")
            return .int(-1)
        }
        guard let con = s.connections[name] else {
            ctx.logger.error("http_client.curl_connect: no cURL connection found: \(name)")
            return .int(-1)
        }
        // async_io: the route waits without blocking, also for the failover try.
        if let waiting = suspendConnect(ctx, s, con, path: path, contentType: contentType, body: body, dpv: dpv) {
            return waiting
        }
        let outcome = perform(ctx, s, con, path: path, contentType: contentType, body: body)
        guard let fo = failover(ctx.logger, con, outcome) else {
            return finishConnect(ctx, con, outcome, path: path, dpv: dpv)
        }
        guard let next = s.connections[fo] else { return missingFailover(ctx, fo, dpv: dpv) }
        return finishConnect(ctx, next, perform(ctx, s, next, path: path, contentType: contentType, body: body),
                             path: path, dpv: dpv)
    }

    /// The request a named connection makes for `path` (a body makes it a POST).
    static func request(_ s: HTTPClientSettings, _ con: HTTPConnection, path: String, contentType: String?,
                        body: [UInt8]?) -> CurlRequest {
        let hasBody = !(body ?? []).isEmpty
        return CurlRequest(url: con.url(path), method: nil, body: body,
                           contentType: hasBody ? (contentType.flatMap { $0.isEmpty ? nil : $0 } ?? "text/plain") : nil,
                           headers: nil, username: con.username, password: con.password, authMethod: con.authMethod,
                           timeout: con.timeout, timeoutMode: s.timeoutMode, verifyPeer: con.verifyPeer,
                           verifyHost: con.verifyHost, followRedirects: con.followRedirects, userAgent: con.userAgent,
                           caCert: s.caCert, proxy: con.proxy, proxyPort: con.proxyPort, firstLineOnly: false,
                           maxDataSize: con.maxDataSize)
    }

    /// One blocking try on a named connection, with the worker's handle for it.
    static func perform(_ ctx: RouteContext, _ s: HTTPClientSettings, _ con: HTTPConnection, path: String,
                        contentType: String?, body: [UInt8]?) -> CurlOutcome {
        let handles = ctx.worker.local(Handles.self) { Handles() }
        let handle: CurlHandle
        if let h = handles.named[con.name] { handle = h } else { handle = CurlHandle(); handles.named[con.name] = handle }
        let outcome = handle.perform(request(s, con, path: path, contentType: contentType, body: body))
        if !con.keepConnections { handle.reset() }
        return outcome
    }

    /// Kamailio's failover (curl_con_query_url_f): a transport error or a 5xx on a connection with
    /// `failover` moves to that connection, once (its own failure is the result). The connection to
    /// try next, logged; nil: `outcome` is the result.
    static func failover(_ logger: Logger, _ con: HTTPConnection, _ outcome: CurlOutcome) -> String? {
        guard let fo = con.failover else { return nil }
        switch outcome {
        case .failure: break
        case .status(let st, _): if st < 500 { return nil }
        }
        logger.error("http_client: connection \(con.name) failed, trying failover connection \(fo)")
        return fo
    }

    /// The result of curl_connect*: `outcome` of the try on connection `used`.
    static func finishConnect(_ ctx: RouteContext, _ used: HTTPConnection, _ outcome: CurlOutcome, path: String,
                              dpv: String) -> KemiResult {
        guard let pv = ctx.pvCache.spec(dpv) else { return .int(-1) }
        return finish(ctx, outcome, pv: pv, url: used.url(path), fn: "curl_connect")
    }

    /// The failover connection `name` does not exist: -1 and the variable emptied, as Kamailio.
    static func missingFailover(_ ctx: RouteContext, _ name: String, dpv: String) -> KemiResult {
        ctx.logger.error("http_client.curl_connect: no cURL connection found: \(name)")
        if let pv = ctx.pvCache.spec(dpv) { _ = PVEngine.set(ctx, pv, .string("")) }
        return .int(-1)
    }

    private static func finish(_ ctx: RouteContext, _ outcome: CurlOutcome, pv: PseudoVariable, url: String, fn: String) -> KemiResult {
        if case .failure(let code, let message) = outcome {
            ctx.logger.warning("http_client.\(fn): \(message) (curl error \(code), url: \(url))")
        }
        if !PVEngine.set(ctx, pv, .string(String(decoding: outcome.stored, as: UTF8.self))) {
            ctx.logger.warning("http_client.\(fn): target pv is not writable")
        }
        return .int(outcome.kemiCode)
    }
}

extension HTTPClientModule: KSRModule {
    static let name = "http_client"
    static let summary = "Blocking HTTP requests (libcurl) from routes, named connections."
    static let timeoutMode = ModuleParameter.int("http_client", "timeout_mode", 1, in: 0...2, "0 no timeout, 1 seconds, 2 milliseconds.")
    static let connectionTimeout = ModuleParameter.int("http_client", "connection_timeout", 0,
                                                       "Timeout of a request in timeout_mode units (0: 4 s).")
    static let queryResult = ModuleParameter.flag("http_client", "query_result", true, "query() keeps only the first line of the body.")
    static let queryMaxDataSize = ModuleParameter.int("http_client", "query_maxdatasize", 0, "Largest body query() stores (bytes, 0: no limit).")
    static let maxDataSize = ModuleParameter.int("http_client", "maxdatasize", 0, "Largest body of named connections (bytes, 0: no limit).")
    static let keepConnections = ModuleParameter.flag("http_client", "keep_connections", false, "Reuse connections of named connections.")
    static let verifyPeer = ModuleParameter.flag("http_client", "verify_peer", true, "Verify the server certificate.")
    static let verifyHost = ModuleParameter.int("http_client", "verify_host", 2, "Verify the certificate's host name (0 off).")
    static let httpRedirect = ModuleParameter.flag("http_client", "httpredirect", false, "Follow redirects.")
    static let userAgent = ModuleParameter.str("http_client", "useragent", "Starling (http_client)", "The User-Agent of requests.")
    static let caCert = ModuleParameter.optionalStr("http_client", "cacert", "CA certificates file for verify_peer.")
    static let httpProxy = ModuleParameter.optionalStr("http_client", "httpproxy", "The proxy requests go through.")
    static let httpProxyPort = ModuleParameter.int("http_client", "httpproxyport", 0, "The proxy's port.")
    static let authMethod = ModuleParameter.int("http_client", "authmethod", 3, "CURLAUTH bits of connections with credentials (1 basic, 2 digest).")
    static let httpcon = ModuleParameter.list("http_client", "httpcon", "A named connection: `name=>scheme://[user:password@]host[:port][/path][;param=value]`.")
    static let parameters = [timeoutMode, connectionTimeout, queryMaxDataSize, maxDataSize, verifyHost, httpProxyPort, authMethod].map(\.info)
        + [queryResult, keepConnections, verifyPeer, httpRedirect].map(\.info)
        + [userAgent.info, caCert.info, httpProxy.info, httpcon.info]
    static func exports(_ runtime: ModuleRuntime) -> [KemiExport] {
        let stubs = HTTPAsyncStubs.of(runtime)
        let clock = runtime.tm
        return exports(runtime.config, runtime.state(Awaiting.self) { Awaiting(stubs: stubs, clock: clock) })
    }
}
