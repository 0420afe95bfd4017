import SIPTransport
import NIOCore
import NIOWebSocket
import Synchronization

/// What a connection learnt from its TLS handshake (`KSR.tls`, `$tls_*`).
public struct TLSPeerInfo: Sendable, Equatable {
    /// The client presented a certificate that chains to the configured CA list.
    public var verified: Bool
    /// Subject common name of the peer certificate.
    public var subjectCN: String?
    /// Subject alternative names (DNS names and IP addresses).
    public var alternativeNames: [String]
    /// The peer certificate's serial number (hex).
    public var serial: String?

    public init(verified: Bool, subjectCN: String?, alternativeNames: [String], serial: String?) {
        self.verified = verified
        self.subjectCN = subjectCN
        self.alternativeNames = alternativeNames
        self.serial = serial
    }
}

/// One TCP, TLS or WebSocket connection: inbound (accepted on a listener) or outbound (opened to send).
/// Shared by the event loop that owns its channel and by the workers that send on it.
final class StreamConnection: Sendable {
    let id: UInt64
    let proto: SIPTransportProtocol
    /// The peer's address (for outbound connections, where we connected to).
    let remote: Mutex<SIPTransport.SocketAddress>
    /// The listener this connection belongs to (`$Ri`, `$Rp`).
    let local: SIPTransport.SocketAddress
    let outbound: Bool
    /// Monotonic nanoseconds of the last read or write.
    let lastActivity: Atomic<UInt64>
    /// Set once the channel is active (outbound: once connected); writes wait in `pending` until then.
    private let state = Mutex<State>(State())
    let tls = Mutex<TLSPeerInfo?>(nil)

    private struct State {
        var channel: (any Channel)?
        var pending: [ByteBuffer] = []
        var closeAfterPending = false
        var closed = false
    }

    init(id: UInt64, proto: SIPTransportProtocol, remote: SIPTransport.SocketAddress, local: SIPTransport.SocketAddress, outbound: Bool) {
        self.id = id
        self.proto = proto
        self.remote = Mutex(remote)
        self.local = local
        self.outbound = outbound
        lastActivity = Atomic(NIODeadline.now().uptimeNanoseconds)
    }

    var isWebSocket: Bool { proto == .ws || proto == .wss }

    func touch() { lastActivity.store(NIODeadline.now().uptimeNanoseconds, ordering: .relaxed) }

    /// Called on the channel's event loop when it becomes active: writes what was queued meanwhile.
    func attach(_ channel: any Channel) {
        let (pending, close): ([ByteBuffer], Bool) = state.withLock { s in
            s.channel = channel
            let p = s.pending
            s.pending = []
            return (p, s.closeAfterPending)
        }
        for b in pending { write(b, on: channel) }
        if close { channel.close(promise: nil) }
    }

    func markClosed() {
        state.withLock { s in
            s.closed = true
            s.channel = nil
            s.pending = []
        }
    }

    /// Queues bytes on the connection (from any thread). False if it is closed or does not read.
    func send(_ bytes: [UInt8], close: Bool, maxQueued: Int) -> Bool {
        let buffer = ByteBuffer(bytes: bytes)
        let channel: (any Channel)? = state.withLock { s in
            if s.closed { return nil }
            if s.channel == nil {
                s.pending.append(buffer)
                if close { s.closeAfterPending = true }
            }
            return s.channel
        }
        guard let channel else { return !isClosed }
        if !channel.isWritable {
            // The peer does not read (back-pressure): refuse rather than queue without bound.
            return false
        }
        touch()
        write(buffer, on: channel)
        if close { channel.close(promise: nil) }
        return true
    }

    /// Queues several messages with one hop to the event loop and one flush (a worker's batch).
    func send(_ buffers: [ByteBuffer], close: Bool) -> Bool {
        let channel: (any Channel)? = state.withLock { s in
            if s.closed { return nil }
            if s.channel == nil {
                s.pending.append(contentsOf: buffers)
                if close { s.closeAfterPending = true }
            }
            return s.channel
        }
        guard let channel else { return !isClosed }
        if !channel.isWritable { return false }
        touch()
        let ws = isWebSocket
        channel.eventLoop.execute {
            for b in buffers {
                if ws {
                    channel.write(WebSocketFrame(fin: true, opcode: .text, data: b), promise: nil)
                } else {
                    channel.write(b, promise: nil)
                }
            }
            channel.flush()
            if close { channel.close(promise: nil) }
        }
        return true
    }

    /// False once the peer stopped reading (more than the high-water mark queued).
    var isWritable: Bool {
        state.withLock { $0.channel }?.isWritable ?? true
    }

    private var isClosed: Bool { state.withLock { $0.closed } }

    private func write(_ buffer: ByteBuffer, on channel: any Channel) {
        if isWebSocket {
            // RFC 7118 §5: one SIP message per frame; text frames (SIP is UTF-8 text).
            let frame = WebSocketFrame(fin: true, opcode: .text, data: buffer)
            channel.writeAndFlush(frame, promise: nil)
        } else {
            channel.writeAndFlush(buffer, promise: nil)
        }
    }

    func close() {
        let ch: (any Channel)? = state.withLock { s in
            if s.channel == nil { s.closeAfterPending = true }
            return s.channel
        }
        ch?.close(promise: nil)
    }
}
