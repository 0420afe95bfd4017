import SIPCore
import SIPTransport
import NIOCore
import NIOSSL
import NIOTLS
import Synchronization
import Logging

/// The end of a TCP/TLS pipeline: registers the connection, answers keepalive pings, hands messages to
/// the workers, answers garbage with 400 (when the head is a readable request) and closes.
final class SIPStreamHandler: ChannelInboundHandler {
    typealias InboundIn = SIPStreamFrame
    typealias OutboundOut = ByteBuffer

    let transport: StreamTransport
    let listener: StreamListener
    private var connection: StreamConnection?
    /// The PROXY protocol source, when the listener takes one (it arrives before any frame).
    private var proxiedSource: SIPTransport.SocketAddress?

    /// `connection` is given for outbound connections; inbound ones register when active.
    init(transport: StreamTransport, connection: StreamConnection?, listener: StreamListener) {
        self.transport = transport
        self.connection = connection
        self.listener = listener
    }

    func channelActive(context: ChannelHandlerContext) {
        if let connection {
            connection.attach(context.channel)
        } else {
            guard let remoteNIO = context.channel.remoteAddress, let remote = SIPTransport.SocketAddress(nio: remoteNIO),
                  let c = transport.register(proto: listener.proto, remote: remote, local: listener.address) else {
                context.close(promise: nil)
                return
            }
            connection = c
            c.attach(context.channel)
        }
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        if let connection { transport.unregister(connection) }
        context.fireChannelInactive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let p = event as? ProxyProtocolSource, let connection {
            proxiedSource = p.source
            transport.readdress(connection, to: p.source)
        } else if case .handshakeCompleted = event as? TLSUserEvent, let connection {
            let verify = transport.settings.tls?.verifyClient ?? false
            connection.tls.withLock { $0 = TLSPeerFacts.read(context, verifying: verify) }
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard let connection else { return }
        connection.touch()
        switch unwrapInboundIn(data) {
        case .message(let buffer):
            let remote = connection.remote.withLock { $0 }
            transport.deliver(StreamMessage(bytes: Array(buffer.readableBytesView), source: remote, local: connection.local,
                                            proto: connection.proto, connectionID: connection.id))
        case .ping:
            // RFC 5626 §4.4.1: CRLFCRLF ping, CRLF pong.
            transport.stats.pings.add(1, ordering: .relaxed)
            if transport.settings.crlfPing {
                context.writeAndFlush(wrapOutboundOut(ByteBuffer(bytes: [0x0D, 0x0A])), promise: nil)
            }
        case .invalid(let reason, let head):
            transport.stats.invalid.add(1, ordering: .relaxed)
            let remote = connection.remote.withLock { $0 }
            transport.logger.info("closing \(connection.proto.name) connection from \(remote): \(reason)")
            if let head, let reply = Self.badRequest(head, reason: reason) {
                context.writeAndFlush(wrapOutboundOut(ByteBuffer(bytes: reply))).whenComplete { [channel = context.channel] _ in channel.close(promise: nil) }
            } else {
                context.close(promise: nil)
            }
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if let connection, connection.outbound, connection.proto == .tls, Self.isVerificationFailure(error) {
            // The operator needs to see why a TLS peer is never reached (a name or CA mismatch).
            let remote = connection.remote.withLock { $0 }
            transport.logger.warning("tls connection to \(remote): server not accepted (\(error)); its certificate must chain to [tls] ca_list (else the system CA bundle) and name the host; verify_server = false turns this off")
            context.close(promise: nil)
            return
        }
        transport.logger.debug("\(listener.proto.name) connection error: \(error)")
        context.close(promise: nil)
    }

    /// A handshake the server's certificate failed (chain or name), not a peer going away.
    static func isVerificationFailure(_ error: any Error) -> Bool {
        if error is NIOSSLExtraError { return true }
        if case NIOSSLError.handshakeFailed = error { return true }
        return false
    }

    /// A 400 for a request whose header block could be read (nil for replies, ACK, or no Via).
    static func badRequest(_ head: ByteBuffer, reason: String) -> [UInt8]? {
        guard let m = try? SIPMessage.parse(Array(head.readableBytesView), datagram: true), m.isRequest, m.method != .ack,
              m.firstHeader(.via) != nil, (try? m.check()) != nil || m.callID != nil else { return nil }
        let text = reason.filter { $0.isASCII && $0 != "\r" && $0 != "\n" }
        return SIPBuilder.reply(to: m, SIPBuilder.Reply(status: 400, reason: "Bad Request",
                                                         extraHeaders: Array("Warning: 399 starling \"\(text)\"\r\n".utf8)))
    }
}

/// Reads the peer certificate after a TLS handshake.
enum TLSPeerFacts {
    static func read(_ context: ChannelHandlerContext, verifying: Bool) -> TLSPeerInfo {
        let ops = context.pipeline.syncOperations
        var cert: NIOSSLCertificate? = nil
        if let h = try? ops.handler(type: NIOSSLServerHandler.self) { cert = h.peerCertificate }
        else if let h = try? ops.handler(type: NIOSSLClientHandler.self) { cert = h.peerCertificate }
        guard let cert else { return TLSPeerInfo(verified: false, subjectCN: nil, alternativeNames: [], serial: nil) }
        // NIOSSLCertificate's description: "<NIOSSLCertificate;serial_number=..;common_name=..;alternative_names=a b>".
        var cn: String? = nil
        var alt: [String] = []
        let d = cert.description.dropFirst().dropLast()
        for part in d.split(separator: ";") {
            if part.hasPrefix("common_name=") { cn = String(part.dropFirst("common_name=".count)) }
            if part.hasPrefix("alternative_names=") { alt = part.dropFirst("alternative_names=".count).split(separator: " ").map(String.init) }
        }
        let serial = cert.serialNumber.map { b -> String in let s = String(b, radix: 16, uppercase: true); return b < 16 ? "0" + s : s }.joined()
        // With client verification on, BoringSSL fails the handshake on an untrusted certificate, so a
        // certificate seen here was verified when verification is configured.
        return TLSPeerInfo(verified: verifying, subjectCN: cn, alternativeNames: alt, serial: serial)
    }
}
