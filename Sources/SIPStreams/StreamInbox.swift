public import SIPTransport
import CStarlingSystem
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A message read from a connection, waiting for its worker.
public struct StreamMessage: Sendable {
    public var bytes: [UInt8]
    /// The peer (`$si`, `$sp`): the connection's remote address, or the PROXY protocol source.
    public var source: SIPTransport.SocketAddress
    /// The listener it belongs to (`$Ri`, `$Rp`).
    public var local: SIPTransport.SocketAddress
    public var proto: SIPTransportProtocol
    /// The connection it came on (`$conid`); replies go back over it.
    public var connectionID: UInt64

    public init(bytes: [UInt8], source: SIPTransport.SocketAddress, local: SIPTransport.SocketAddress, proto: SIPTransportProtocol, connectionID: UInt64) {
        self.bytes = bytes
        self.source = source
        self.local = local
        self.proto = proto
        self.connectionID = connectionID
    }
}

/// One worker's queue of messages from connections. NIO's event loops push; the worker thread waits on
/// `fileDescriptor` (an eventfd, with its UDP socket in the same poll) and drains between UDP batches.
/// A push takes the mutex for one append and signals the eventfd only when the queue was empty.
public final class StreamInbox: Sendable {
    /// The eventfd to poll for readability.
    public let fileDescriptor: Int32
    private let queue = Mutex<[StreamMessage]>([])

    public init() throws(TransportError) {
        let fd = st_eventfd_create()
        guard fd >= 0 else { throw TransportError("eventfd", errno: -fd) }
        fileDescriptor = fd
    }

    deinit { close(fileDescriptor) }

    public func push(_ m: StreamMessage) {
        let wasEmpty = queue.withLock { q in
            let e = q.isEmpty
            q.append(m)
            return e
        }
        if wasEmpty { _ = st_eventfd_signal(fileDescriptor) }
    }

    /// Everything queued (oldest first); clears the eventfd first, so a push after the swap signals again.
    public func drain() -> [StreamMessage] {
        st_eventfd_drain(fileDescriptor)
        return queue.withLock { q in
            if q.isEmpty { return [] }
            let r = q
            q.removeAll(keepingCapacity: true)
            return r
        }
    }
}
