#if canImport(Glibc)
import Glibc
#endif
import CStarlingSystem

/// Receives datagrams in batches with one `recvmmsg` call. Owned by one worker thread (not
/// Sendable): the slot buffers are allocated once, in `init`, and reused for every batch.
///
/// ```swift
/// let rx = UDPBatchReceiver()
/// while running.load(ordering: .relaxed) {
///     let n = try rx.receive(on: socket, timeout: .milliseconds(100))
///     for i in 0..<n { route(rx.bytes(at: i), from: rx.source(at: i)) }
/// }
/// ```
public final class UDPBatchReceiver {
    /// Default number of datagrams per `recvmmsg`.
    public static let defaultCapacity = 32
    /// The largest UDP payload; the default slot size.
    public static let maxDatagramSize = 65535

    private let batch: OpaquePointer
    /// Datagrams the last `receive` returned.
    public private(set) var count = 0
    /// Slots (datagrams per call).
    public let capacity: Int
    /// Bytes per slot; longer datagrams are truncated (see `isTruncated(at:)`).
    public let bufferSize: Int

    public init(capacity: Int = UDPBatchReceiver.defaultCapacity, bufferSize: Int = UDPBatchReceiver.maxDatagramSize) {
        precondition(capacity > 0 && capacity <= 1024 && bufferSize > 0, "UDPBatchReceiver: bad capacity or buffer size")
        guard let b = st_batch_create(UInt32(capacity), bufferSize) else { fatalError("UDPBatchReceiver: out of memory") }
        batch = b
        self.capacity = capacity
        self.bufferSize = bufferSize
    }

    deinit { st_batch_destroy(batch) }

    /// Waits up to `timeout` (nil: indefinitely) for datagrams, then takes up to `capacity` that are
    /// queued. Returns how many were received; 0 on timeout or signal interruption. The previous
    /// batch's bytes are overwritten.
    @discardableResult
    public func receive(on socket: UDPSocket, timeout: Duration?) throws(TransportError) -> Int {
        let ms: Int32
        if let t = timeout {
            let (s, atto) = t.components
            let total = s * 1000 + atto / 1_000_000_000_000_000
            ms = Int32(clamping: max(0, total))
        } else {
            ms = -1
        }
        let fd = socket.fileDescriptor
        guard fd >= 0 else { count = 0; throw TransportError("recvmmsg", errno: EBADF) }
        let n = st_batch_recv(fd, batch, ms)
        guard n >= 0 else { count = 0; throw TransportError("recvmmsg", errno: -n) }
        count = Int(n)
        return count
    }

    /// Takes the datagrams already queued on `socket` (up to `capacity`) without waiting, after a
    /// `WaitSet` reported it readable: one `recvmmsg`. Returns how many were received (0: another
    /// worker took them first).
    @discardableResult
    public func receiveQueued(on socket: UDPSocket) throws(TransportError) -> Int {
        let fd = socket.fileDescriptor
        guard fd >= 0 else { count = 0; throw TransportError("recvmmsg", errno: EBADF) }
        let n = st_batch_recv_queued(fd, batch)
        guard n >= 0 else { count = 0; throw TransportError("recvmmsg", errno: -n) }
        count = Int(n)
        return count
    }

    /// The payload of datagram `i` of the last batch. Valid until the next `receive` (and while
    /// the receiver is alive); copy it to keep it.
    public func bytes(at i: Int) -> UnsafeRawBufferPointer {
        precondition(i >= 0 && i < count, "UDPBatchReceiver: index out of range")
        return UnsafeRawBufferPointer(start: st_batch_buffer(batch, UInt32(i)), count: Int(st_batch_length(batch, UInt32(i))))
    }

    /// The sender of datagram `i`.
    public func source(at i: Int) -> SocketAddress {
        precondition(i >= 0 && i < count, "UDPBatchReceiver: index out of range")
        // recvmmsg fills only AF_INET/AF_INET6 addresses on UDP sockets.
        return SocketAddress(sockaddr: UnsafeRawPointer(st_batch_address(batch, UInt32(i)))!)
            ?? SocketAddress(family: .inet, address: (0, 0), port: 0)
    }

    /// The local address datagram `i` was sent to (`$Ri`), with `socket`'s port, when the socket was
    /// created with `Options.packetInfo`; otherwise nil.
    public func localAddress(at i: Int, on socket: UDPSocket) -> SocketAddress? {
        precondition(i >= 0 && i < count, "UDPBatchReceiver: index out of range")
        var storage = sockaddr_storage()
        let len = st_batch_local_address(batch, UInt32(i), &storage, UInt32(socket.localAddress.port))
        guard len > 0 else { return nil }
        return withUnsafeBytes(of: &storage) { SocketAddress(sockaddr: $0.baseAddress!) }
    }

    /// True if datagram `i` was longer than `bufferSize` and was cut.
    public func isTruncated(at i: Int) -> Bool {
        precondition(i >= 0 && i < count, "UDPBatchReceiver: index out of range")
        return st_batch_truncated(batch, UInt32(i)) != 0
    }
}

/// Collects outgoing datagrams and sends them with one `sendmmsg`. Owned by one worker thread.
/// `append` copies the bytes into a preallocated slot, so callers' buffers may be reused at once.
public final class UDPBatchSender {
    /// The outcome of a `flush`.
    public struct FlushResult: Sendable, Equatable {
        /// Datagrams the kernel accepted.
        public var sent: Int
        /// Datagrams that failed (each skipped after its error).
        public var failed: Int
        /// The last error met, if any.
        public var lastError: TransportError?
    }

    private let batch: OpaquePointer
    /// Datagrams waiting for `flush`.
    public private(set) var pendingCount = 0
    public let capacity: Int
    public let bufferSize: Int

    public init(capacity: Int = UDPBatchReceiver.defaultCapacity, bufferSize: Int = UDPBatchReceiver.maxDatagramSize) {
        precondition(capacity > 0 && capacity <= 1024 && bufferSize > 0, "UDPBatchSender: bad capacity or buffer size")
        guard let b = st_batch_create(UInt32(capacity), bufferSize) else { fatalError("UDPBatchSender: out of memory") }
        batch = b
        self.capacity = capacity
        self.bufferSize = bufferSize
    }

    deinit { st_batch_destroy(batch) }

    /// True when no more datagrams fit before a `flush`.
    public var isFull: Bool { pendingCount == capacity }

    /// Queues a datagram. Returns false (and queues nothing) if the batch is full or the datagram
    /// is larger than `bufferSize`.
    @discardableResult
    public func append(_ bytes: UnsafeRawBufferPointer, to destination: SocketAddress) -> Bool {
        guard pendingCount < capacity, bytes.count <= bufferSize else { return false }
        let i = UInt32(pendingCount)
        if let src = bytes.baseAddress, bytes.count > 0 {
            st_batch_buffer(batch, i).update(from: src.assumingMemoryBound(to: UInt8.self), count: bytes.count)
        }
        let r = destination.withSockAddr { st_batch_set_send(batch, i, bytes.count, $0, $1) }
        guard r == 0 else { return false }
        pendingCount += 1
        return true
    }

    /// Queues a datagram (see `append(_:to:)`).
    @discardableResult
    public func append(_ bytes: [UInt8], to destination: SocketAddress) -> Bool {
        bytes.withUnsafeBytes { append($0, to: destination) }
    }

    /// Sends every queued datagram (one `sendmmsg`, more if the kernel takes fewer) and empties the
    /// batch. A datagram the kernel refuses is counted as failed and skipped.
    @discardableResult
    public func flush(on socket: UDPSocket) -> FlushResult {
        var result = FlushResult(sent: 0, failed: 0, lastError: nil)
        var first = 0
        let fd = socket.fileDescriptor
        while first < pendingCount {
            let n = st_batch_send(fd, batch, UInt32(first), UInt32(pendingCount - first))
            if n > 0 {
                result.sent += Int(n)
                first += Int(n)
            } else if n == -EAGAIN || n == -EWOULDBLOCK || n == -ENOBUFS {
                // Socket buffer full: wait briefly for room, then retry the same datagram.
                var p = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
                if poll(&p, 1, 100) <= 0 {
                    result.failed += 1
                    result.lastError = TransportError("sendmmsg", errno: -n)
                    first += 1
                }
            } else {
                result.failed += 1
                result.lastError = TransportError("sendmmsg", errno: n < 0 ? -n : EIO)
                first += 1
            }
        }
        pendingCount = 0
        return result
    }

    /// Drops the queued datagrams without sending.
    public func reset() { pendingCount = 0 }
}
