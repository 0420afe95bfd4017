import StarlingKEMI
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
        let deliver: @Sendable (CurlOutcome) -> Void = { outcome in
            ticket.complete { ctx in
                guard let pv = ctx.pvCache.spec(dpv) else { return .int(-1) }
                return finish(ctx, outcome, pv: pv, url: url, fn: fn)
            }
        }
        if awaiting.stubs.isActive, let stub = awaiting.stubs.match(url) {
            // Route tests: the stubbed answer after its delay on the router's clock (status 0: the
            // request times out then).
            let outcome: CurlOutcome = stub.status > 0
                ? .status(stub.status, body: CurlHandle.stored(Array(stub.body.utf8), r))
                : .failure(code: Int(CURLE_OPERATION_TIMEDOUT.rawValue), message: "Timeout was reached")
            if ctx.transactions != nil {
                AsyncTimers.of(ctx).add(at: awaiting.clock.now.advanced(by: .milliseconds(stub.delayMs))) { _ in deliver(outcome) }
            } else {
                deliver(outcome)
            }
            return KemiResult.none
        }
        if !awaiting.engine.submit(plain: r, done: deliver) {
            deliver(.failure(code: Int(CURLE_FAILED_INIT.rawValue), message: "the HTTP thread is not running"))
        }
        return KemiResult.none
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
                        body: [UInt8]?, dpv: String, failoverDepth: Int = 0) -> KemiResult {
        guard let pv = ctx.pvCache.spec(dpv) else {
            ctx.logger.error("http_client.curl_connect: failed to get pv spec for: \(dpv)")
            return .int(-1)
        }
        guard let con = s.connections[name] else {
            ctx.logger.error("http_client.curl_connect: no cURL connection found: \(name)")
            return .int(-1)
        }
        let url = con.url(path)
        let hasBody = !(body ?? []).isEmpty
        let r = CurlRequest(url: url, method: nil, body: body, contentType: hasBody ? (contentType.flatMap { $0.isEmpty ? nil : $0 } ?? "text/plain") : nil,
                            headers: nil, username: con.username, password: con.password, authMethod: con.authMethod,
                            timeout: con.timeout, timeoutMode: s.timeoutMode, verifyPeer: con.verifyPeer,
                            verifyHost: con.verifyHost, followRedirects: con.followRedirects, userAgent: con.userAgent,
                            caCert: s.caCert, proxy: con.proxy, proxyPort: con.proxyPort, firstLineOnly: false,
                            maxDataSize: con.maxDataSize)
        // async_io: a connection without failover waits without blocking (with one, the second try
        // depends on the first answer: blocking as before).
        if con.failover == nil, let waiting = suspendRoute(ctx, s, r, dpv: dpv, url: url, fn: "curl_connect") { return waiting }
        let handles = ctx.worker.local(Handles.self) { Handles() }
        let handle: CurlHandle
        if let h = handles.named[name] { handle = h } else { handle = CurlHandle(); handles.named[name] = handle }
        let outcome = handle.perform(r)
        if !con.keepConnections { handle.reset() }
        // Kamailio's failover: a transport error or a 5xx moves to the failover connection, once.
        if let fo = con.failover, failoverDepth == 0 {
            var failed = false
            switch outcome {
            case .failure: failed = true
            case .status(let st, _): failed = st >= 500
            }
            if failed {
                ctx.logger.error("http_client: connection \(name) failed, trying failover connection \(fo)")
                return connect(ctx, s, con: fo, path: path, contentType: contentType, body: body, dpv: dpv, failoverDepth: 1)
            }
        }
        return finish(ctx, outcome, pv: pv, url: url, fn: "curl_connect")
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
