import NIOCore
import NIOPosix
import NIOHTTP1
import Synchronization
public import Logging
public import StarlingServer
public import SIPTransport

/// The HTTP control listener (SwiftNIO, one event-loop thread): `POST /` or `POST /rpc` with
/// JSON-RPC 2.0, `GET /metrics` with Prometheus text. With a token configured every request needs
/// `Authorization: Bearer <token>` (401 otherwise). Runs beside the SIP workers and shares nothing
/// with their per-message path but the counters it reads.
public final class ControlServer: Sendable {
    /// Largest request body accepted (413 above).
    public static let maxBody = 1 << 20

    public let api: ControlAPI
    /// The bound address (the real port when 0 was asked for).
    public let localAddress: SIPTransport.SocketAddress
    private let group: MultiThreadedEventLoopGroup
    private let channel: any Channel
    private let logger: Logger

    /// Binds and starts serving. Throws `ServerError` when the address cannot be bound.
    public init(server: Server, listen: SIPTransport.SocketAddress, token: String?, logger: Logger) throws(ServerError) {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        self.group = group
        self.logger = logger
        let shared = Shared(token: token, logger: logger)
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 64)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    // A connection idle for a minute (e.g. a body that never comes) is closed.
                    try channel.pipeline.syncOperations.addHandler(IdleStateHandler(readTimeout: .seconds(60)))
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(ControlHTTPHandler(shared: shared))
                }
            }
        let ch: any Channel
        do {
            ch = try bootstrap.bind(host: listen.ip, port: Int(listen.port)).wait()
        } catch {
            try? group.syncShutdownGracefully()
            throw ServerError("cannot listen for control on tcp:\(listen): \(error)")
        }
        channel = ch
        let port = ch.localAddress?.port ?? Int(listen.port)
        localAddress = SIPTransport.SocketAddress(ip: listen.ip, port: port) ?? listen
        api = ControlAPI(server: server, controlAddress: "http://\(localAddress)")
        shared.api.withLock { $0 = api }
        logger.info("control API on http://\(localAddress)\(token == nil ? "" : " (bearer token required)")")
        if token == nil && !(listen.ip.hasPrefix("127.") || listen.ip == "::1") {
            logger.warning("control API on a non-loopback address without a token: anyone who reaches it can reload the script")
        }
    }

    /// Closes the listener and stops its thread.
    public func shutdown() {
        try? channel.close().wait()
        try? group.syncShutdownGracefully()
    }
}

/// What every connection's handler needs.
final class Shared: Sendable {
    let token: [UInt8]?
    let logger: Logger
    let api = Mutex<ControlAPI?>(nil)

    init(token: String?, logger: Logger) {
        self.token = token.map { Array($0.utf8) }
        self.logger = logger
    }

    /// Constant-time comparison of the bearer token.
    func authorized(_ header: String?) -> Bool {
        guard let token else { return true }
        guard let header else { return false }
        let prefix = "bearer "
        guard header.count > prefix.count, header.lowercased().hasPrefix(prefix) else { return false }
        let given = Array(header.utf8.dropFirst(prefix.utf8.count))
        var diff = UInt8(given.count == token.count ? 0 : 1)
        for i in 0..<token.count { diff |= token[i] ^ (i < given.count ? given[i] : 0) }
        return diff == 0
    }
}

/// One connection: collects a request, answers it.
final class ControlHTTPHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let shared: Shared
    private var head: HTTPRequestHead?
    private var body: [UInt8] = []
    private var tooLarge = false

    init(shared: Shared) { self.shared = shared }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let h):
            head = h
            body = []
            tooLarge = false
        case .body(var buf):
            if body.count + buf.readableBytes > ControlServer.maxBody {
                tooLarge = true
            } else if let bytes = buf.readBytes(length: buf.readableBytes) {
                body += bytes
            }
        case .end:
            guard let h = head else { return }
            head = nil
            let (status, type, payload, extra) = respond(h)
            body = []
            send(context: context, head: h, status: status, contentType: type, payload: payload, extraHeaders: extra)
        }
    }

    private func respond(_ h: HTTPRequestHead) -> (HTTPResponseStatus, String, [UInt8], [(String, String)]) {
        let text = "text/plain; charset=utf-8"
        let path = h.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? h.uri
        // Readiness for load balancers and container health checks: no token needed, nothing revealed
        // but whether the router is routing.
        if path == "/health" {
            guard h.method == .GET else {
                return (.methodNotAllowed, text, Array("method not allowed\n".utf8), [("Allow", "GET")])
            }
            guard let api = shared.api.withLock({ $0 }), api.server.isRouting else {
                return (.serviceUnavailable, text, Array("not ready\n".utf8), [])
            }
            return (.ok, text, Array("ready\n".utf8), [])
        }
        guard shared.authorized(h.headers.first(name: "authorization")) else {
            return (.unauthorized, text, Array("bearer token required\n".utf8), [("WWW-Authenticate", "Bearer realm=\"starling\"")])
        }
        if tooLarge { return (.payloadTooLarge, text, Array("request body too large\n".utf8), []) }
        guard let api = shared.api.withLock({ $0 }) else {
            return (.serviceUnavailable, text, Array("starting\n".utf8), [])
        }
        switch (h.method, path) {
        case (.POST, "/"), (.POST, "/rpc"):
            guard let answer = api.handle(body: body) else { return (.noContent, text, [], []) }
            return (.ok, "application/json", answer, [])
        case (.GET, "/metrics"):
            return (.ok, PrometheusMetrics.contentType, Array(PrometheusMetrics.render(api.server).utf8), [])
        case (.GET, "/"):
            return (.ok, text, Array("Starling control API: POST / (JSON-RPC 2.0), GET /metrics (Prometheus), GET /health (readiness)\n".utf8), [])
        case (_, "/"), (_, "/rpc"), (_, "/metrics"):
            return (.methodNotAllowed, text, Array("method not allowed\n".utf8), [("Allow", path == "/metrics" ? "GET" : "GET, POST")])
        default:
            return (.notFound, text, Array("not found\n".utf8), [])
        }
    }

    private func send(context: ChannelHandlerContext, head h: HTTPRequestHead, status: HTTPResponseStatus,
                      contentType: String, payload: [UInt8], extraHeaders: [(String, String)]) {
        var headers = HTTPHeaders()
        if status != .noContent {
            headers.add(name: "Content-Type", value: contentType)
            headers.add(name: "Content-Length", value: String(payload.count))
        }
        for (n, v) in extraHeaders { headers.add(name: n, value: v) }
        let keepAlive = h.isKeepAlive
        headers.add(name: "Connection", value: keepAlive ? "keep-alive" : "close")
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: h.version, status: status, headers: headers))), promise: nil)
        if !payload.isEmpty {
            var buf = context.channel.allocator.buffer(capacity: payload.count)
            buf.writeBytes(payload)
            context.write(wrapOutboundOut(.body(.byteBuffer(buf))), promise: nil)
        }
        if keepAlive {
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        } else {
            let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
            context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in loopBound.value.close(promise: nil) }
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent {
            context.close(promise: nil)
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        shared.logger.debug("control connection: \(error)")
        context.close(promise: nil)
    }
}
