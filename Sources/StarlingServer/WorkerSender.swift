import Synchronization
import SIPTransport
import SIPStreams
import StarlingKEMI
import Logging

/// A worker's outgoing datagrams: queued while a batch of received messages is routed, then sent
/// with one sendmmsg per socket.
final class WorkerSender: BatchingSender {
    let services: ServerServices
    let logger: Logger
    /// One batch per UDP socket (same order as `services.udpSockets`).
    private let batches: [UDPBatchSender]
    private(set) var sent = 0
    private(set) var failed = 0
    let stats: ServerStats
    /// The worker's route context: its received connection and connection flags pick how stream
    /// sends behave.
    weak var context: RouteContext?
    /// Stream sends of the current batch, handed to the connections in `flush()`.
    private let streamOutbox = StreamOutbox()

    init(services: ServerServices, logger: Logger, stats: ServerStats = ServerStats()) {
        self.services = services
        self.logger = logger
        self.stats = stats
        batches = services.udpSockets.map { _ in UDPBatchSender(capacity: 64) }
    }

    func send(_ bytes: [UInt8], to destination: SocketAddress, proto: SIPTransportProtocol, from local: SocketAddress?) -> Bool {
        guard proto == .udp else { return sendOverConnection(bytes, to: destination, proto: proto, from: local) }
        guard let socket = services.udpSocket(for: local, family: destination.family),
              let index = services.udpSockets.firstIndex(where: { $0 === socket }) else {
            logger.error("no UDP socket to send to \(destination)")
            return false
        }
        let batch = batches[index]
        if batch.isFull { flush(index) }
        if !batch.append(bytes, to: destination) {
            // Too large for a batch slot: send it directly.
            do { try socket.send(bytes, to: destination); sent += 1 } catch {
                failed += 1
                stats.sendFailures.wrappingAdd(1, ordering: .relaxed)
                return false
            }
        }
        count(bytes, proto)
        return true
    }

    /// TCP, TLS, WS, WSS: over the connection the current message came on when the destination is its
    /// peer, else over an open connection to the destination, else a new one.
    private func sendOverConnection(_ bytes: [UInt8], to destination: SocketAddress, proto: SIPTransportProtocol,
                                    from local: SocketAddress?) -> Bool {
        guard let streams = services.streams else {
            logger.error("no \(proto.name) listener: cannot send to \(destination)")
            stats.sendFailures.wrappingAdd(1, ordering: .relaxed)
            return false
        }
        let isReply = bytes.count > 8 && bytes[0] == 0x53 && bytes[1] == 0x49 && bytes[2] == 0x50 && bytes[3] == 0x2F
        var connection: UInt64? = nil
        var options = StreamSendOptions()
        if let ctx = context {
            let r = ctx.received
            if r.connectionID != 0 && r.proto == proto && r.source == destination { connection = r.connectionID }
            let f = ctx.connectionFlags
            options = isReply ? StreamSendOptions(close: f.replyClose, noConnect: f.replyNoConnect)
                              : StreamSendOptions(close: f.forwardClose, noConnect: f.forwardNoConnect)
        }
        guard streams.send(bytes, to: destination, proto: proto, connectionID: connection, from: local, options: options,
                           outbox: streamOutbox) else {
            stats.sendFailures.wrappingAdd(1, ordering: .relaxed)
            return false
        }
        sent += 1
        count(bytes, proto)
        return true
    }

    /// Requests sent, and replies sent by status class (a look at the first bytes, "SIP/2.0 2"); messages
    /// sent by transport.
    @inline(__always) private func count(_ bytes: [UInt8], _ proto: SIPTransportProtocol) {
        stats.sentByTransport[Int(proto.rawValue) & 7].wrappingAdd(1, ordering: .relaxed)
        if bytes.count > 9, bytes[0] == 0x53, bytes[1] == 0x49, bytes[2] == 0x50, bytes[3] == 0x2F, bytes[7] == 0x20 {
            let d = Int(bytes[8]) - 0x30
            stats.repliesSentByClass[(1...6).contains(d) ? d : 0].wrappingAdd(1, ordering: .relaxed)
        } else {
            stats.requestsSent.wrappingAdd(1, ordering: .relaxed)
        }
    }

    /// Sends everything queued.
    func flush() {
        for i in batches.indices where batches[i].pendingCount > 0 { flush(i) }
        if !streamOutbox.isEmpty { services.streams?.flush(streamOutbox) }
    }

    private func flush(_ i: Int) {
        let r = batches[i].flush(on: services.udpSockets[i])
        sent += r.sent
        failed += r.failed
        if r.failed > 0 { stats.sendFailures.wrappingAdd(r.failed, ordering: .relaxed) }
        if r.failed > 0, let e = r.lastError { logger.warning("send failed for \(r.failed) datagram(s): \(e)") }
    }
}
