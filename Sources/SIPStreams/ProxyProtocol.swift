public import SIPTransport
import NIOCore

/// The source address a PROXY protocol header gave (a user event, sent before any data).
struct ProxyProtocolSource: Sendable {
    let source: SIPTransport.SocketAddress
}

/// PROXY protocol v1 (text) and v2 (binary) headers (HAProxy's proxy-protocol.txt), as sent by TCP load
/// balancers in front of a listener configured with `;proxy` (listen = "tcp:IP:PORT;proxy").
public enum ProxyProtocolHeader: Equatable, Sendable {
    /// The header carried this source address.
    case source(SIPTransport.SocketAddress)
    /// A valid header without an address (v1 UNKNOWN, v2 LOCAL): keep the connection's own peer.
    case local
    /// Not a PROXY header.
    case invalid
    /// More bytes are needed.
    case incomplete

    static let v2Signature: [UInt8] = [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A]

    /// Parses a header at the start of `bytes`; `consumed` is its length when it is complete.
    public static func parse(_ bytes: [UInt8], consumed: inout Int) -> ProxyProtocolHeader {
        if bytes.count >= 1 && bytes[0] == 0x0D {
            // v2
            let n = min(bytes.count, 12)
            if Array(bytes[0..<n]) != Array(v2Signature[0..<n]) { return .invalid }
            if bytes.count < 16 { return .incomplete }
            let verCmd = bytes[12], fam = bytes[13]
            guard verCmd >> 4 == 2 else { return .invalid }
            let len = Int(bytes[14]) << 8 | Int(bytes[15])
            guard bytes.count >= 16 + len else { return .incomplete }
            consumed = 16 + len
            if verCmd & 0x0F == 0 { return .local }
            guard verCmd & 0x0F == 1 else { return .invalid }
            let a = Array(bytes[16..<(16 + len)])
            switch fam >> 4 {
            case 1 where a.count >= 12:
                let ip = "\(a[0]).\(a[1]).\(a[2]).\(a[3])"
                let port = Int(a[8]) << 8 | Int(a[9])
                return SIPTransport.SocketAddress(ip: ip, port: port).map { .source($0) } ?? .invalid
            case 2 where a.count >= 36:
                var groups: [String] = []
                for i in stride(from: 0, to: 16, by: 2) { groups.append(String(Int(a[i]) << 8 | Int(a[i + 1]), radix: 16)) }
                let port = Int(a[32]) << 8 | Int(a[33])
                return SIPTransport.SocketAddress(ip: groups.joined(separator: ":"), port: port).map { .source($0) } ?? .invalid
            default:
                return .local  // UNSPEC or Unix sockets: no usable address
            }
        }
        // v1: "PROXY TCP4 src dst sport dport\r\n", at most 107 bytes.
        let prefix: [UInt8] = Array("PROXY ".utf8)
        let n = min(bytes.count, prefix.count)
        if Array(bytes[0..<n]) != Array(prefix[0..<n]) { return .invalid }
        guard let lf = bytes.prefix(107).firstIndex(of: 0x0A) else { return bytes.count >= 107 ? .invalid : .incomplete }
        guard lf > 0, bytes[lf - 1] == 0x0D else { return .invalid }
        consumed = lf + 1
        let line = String(decoding: bytes[0..<(lf - 1)], as: UTF8.self)
        let parts = line.split(separator: " ")
        if parts.count >= 2 && parts[1] == "UNKNOWN" { return .local }
        guard parts.count == 6, parts[1] == "TCP4" || parts[1] == "TCP6", let port = Int(parts[4]),
              let a = SIPTransport.SocketAddress(ip: String(parts[2]), port: port) else { return .invalid }
        return .source(a)
    }
}

/// Reads the PROXY header first on a listener that expects one, reports the source as a user event,
/// passes the rest on and leaves the pipeline. A connection without a valid header is closed.
final class ProxyProtocolHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    private var buffered: [UInt8] = []
    private var done = false

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        if done {
            context.fireChannelRead(data)
            return
        }
        buffered.append(contentsOf: buffer.readableBytesView)
        var consumed = 0
        switch ProxyProtocolHeader.parse(buffered, consumed: &consumed) {
        case .incomplete:
            if buffered.count > 536 { context.close(promise: nil) }
        case .invalid:
            context.close(promise: nil)
        case .local, .source:
            done = true
            if case .source(let a) = ProxyProtocolHeader.parse(buffered, consumed: &consumed) {
                context.fireUserInboundEventTriggered(ProxyProtocolSource(source: a))
            }
            let rest = Array(buffered[consumed...])
            buffered = []
            if !rest.isEmpty { context.fireChannelRead(wrapInboundOut(ByteBuffer(bytes: rest))) }
            context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
        }
    }
}
