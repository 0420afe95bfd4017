import SIPTransport
import SIPCore
import NIOCore
import NIOHTTP1
import NIOWebSocket
import Synchronization

/// SIP over WebSocket (RFC 7118) on ws/wss listeners: the HTTP upgrade (only with the `sip`
/// subprotocol), then one SIP message per text or binary message, ping/pong and close.
enum WebSocketSupport {
    static let fallbackName = "sip-ws-http-fallback"

    static func configure(_ channel: any Channel, transport: StreamTransport, listener: StreamListener) throws {
        let limit = transport.settings.limits.maxMessageSize
        let upgrader = NIOWebSocketServerUpgrader(
            maxFrameSize: limit,
            automaticErrorHandling: true,
            shouldUpgrade: { channel, head in
                // RFC 7118 §4.1: the client offers "sip"; the server answers with it.
                let offered = head.headers[canonicalForm: "Sec-WebSocket-Protocol"].map { $0.lowercased() }
                guard offered.contains("sip") else { return channel.eventLoop.makeSucceededFuture(nil) }
                var h = HTTPHeaders()
                h.add(name: "Sec-WebSocket-Protocol", value: "sip")
                return channel.eventLoop.makeSucceededFuture(h)
            },
            upgradePipelineHandler: { channel, _ in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(
                        SIPWebSocketHandler(transport: transport, listener: listener))
                }
            })
        let ops = channel.pipeline.syncOperations
        try ops.configureHTTPServerPipeline(withServerUpgrade: (upgraders: [upgrader], completionHandler: { context in
            context.pipeline.removeHandler(name: fallbackName, promise: nil)
        }))
        try ops.addHandler(HTTPFallbackHandler(), name: fallbackName)
    }
}

/// Answers plain HTTP requests on a WebSocket listener (no upgrade) with 426 and closes.
final class HTTPFallbackHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .end = unwrapInboundIn(data) else { return }
        var headers = HTTPHeaders()
        headers.add(name: "Content-Length", value: "0")
        headers.add(name: "Connection", value: "close")
        headers.add(name: "Upgrade", value: "websocket")
        let head = HTTPResponseHead(version: .http1_1, status: .upgradeRequired, headers: headers)
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { [channel = context.channel] _ in channel.close(promise: nil) }
    }
}

/// After the upgrade: WebSocket messages in, SIP messages to the workers; frames out for replies.
final class SIPWebSocketHandler: ChannelInboundHandler {
    typealias InboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    let transport: StreamTransport
    let listener: StreamListener
    private var connection: StreamConnection?
    private var fragments: ByteBuffer?
    private var closing = false

    init(transport: StreamTransport, listener: StreamListener) {
        self.transport = transport
        self.listener = listener
    }

    func handlerAdded(context: ChannelHandlerContext) {
        // The channel is active already (the upgrade happened on it).
        guard let remoteNIO = context.channel.remoteAddress, let remote = SIPTransport.SocketAddress(nio: remoteNIO),
              let c = transport.register(proto: listener.proto, remote: remote, local: listener.address) else {
            context.close(promise: nil)
            return
        }
        connection = c
        c.attach(context.channel)
    }

    func channelInactive(context: ChannelHandlerContext) {
        if let connection { transport.unregister(connection) }
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard let connection else { return }
        connection.touch()
        let frame = unwrapInboundIn(data)
        switch frame.opcode {
        case .text, .binary:
            fragments = frame.unmaskedData
            if frame.fin { deliver(context) }
        case .continuation:
            guard var f = fragments else { return close(context, code: .protocolError) }
            var d = frame.unmaskedData
            f.writeBuffer(&d)
            fragments = f
            if f.readableBytes > transport.settings.limits.maxMessageSize { return close(context, code: .messageTooLarge) }
            if frame.fin { deliver(context) }
        case .ping:
            let pong = WebSocketFrame(fin: true, opcode: .pong, data: frame.unmaskedData)
            context.writeAndFlush(wrapOutboundOut(pong), promise: nil)
        case .connectionClose:
            close(context, code: .normalClosure)
        default:
            break
        }
    }

    private func deliver(_ context: ChannelHandlerContext) {
        guard let buffer = fragments, let connection else { return }
        fragments = nil
        // Whitespace-only messages are keepalives: ignored.
        if buffer.readableBytesView.allSatisfy({ $0 == 0x0D || $0 == 0x0A || $0 == 0x20 }) { return }
        let remote = connection.remote.withLock { $0 }
        transport.deliver(StreamMessage(bytes: Array(buffer.readableBytesView), source: remote, local: connection.local,
                                        proto: connection.proto, connectionID: connection.id))
    }

    private func close(_ context: ChannelHandlerContext, code: WebSocketErrorCode) {
        guard !closing else { return }
        closing = true
        var data = context.channel.allocator.buffer(capacity: 2)
        data.write(webSocketErrorCode: code)
        let frame = WebSocketFrame(fin: true, opcode: .connectionClose, data: data)
        context.writeAndFlush(wrapOutboundOut(frame)).whenComplete { [channel = context.channel] _ in channel.close(promise: nil) }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
