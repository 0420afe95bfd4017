#if canImport(Glibc)
import Glibc
#endif
import CStarlingSystem
import Synchronization

/// A bound UDP socket (IPv4 or IPv6). Several worker threads may receive and send on the same
/// socket concurrently (the kernel serialises), or each worker may bind its own with `reusePort`.
///
/// `close()` must only be called once no other thread is blocked on the socket (stop the workers
/// first: they poll with a timeout); the descriptor is also closed on deinit.
public final class UDPSocket: Sendable, CustomStringConvertible {
    /// Socket options applied before `bind`.
    public struct Options: Sendable, Equatable {
        /// `SO_REUSEPORT`: several sockets (one per worker) may bind the same address and port; the
        /// kernel spreads datagrams between them by flow hash. Default false.
        public var reusePort: Bool
        /// `SO_RCVBUF` request in bytes (the kernel caps it at `net.core.rmem_max`). nil keeps the
        /// system default. Default 4 MiB.
        public var receiveBufferSize: Int?
        /// `SO_SNDBUF` request in bytes (capped at `net.core.wmem_max`). Default 4 MiB.
        public var sendBufferSize: Int?
        /// `IPV6_V6ONLY` for IPv6 sockets. Default true (bind IPv4 separately).
        public var ipv6Only: Bool
        /// `IP_PKTINFO` / `IPV6_RECVPKTINFO`: report each datagram's local address (useful on
        /// wildcard binds; see `UDPBatchReceiver.localAddress(at:)`). Default false.
        public var packetInfo: Bool
        /// `SO_REUSEADDR`: a multicast group socket shares its port with unicast and wildcard sockets.
        public var reuseAddress: Bool

        public init(reusePort: Bool = false, receiveBufferSize: Int? = 4 << 20, sendBufferSize: Int? = 4 << 20,
                    ipv6Only: Bool = true, packetInfo: Bool = false, reuseAddress: Bool = false) {
            self.reuseAddress = reuseAddress
            self.reusePort = reusePort
            self.receiveBufferSize = receiveBufferSize
            self.sendBufferSize = sendBufferSize
            self.ipv6Only = ipv6Only
            self.packetInfo = packetInfo
        }
    }

    /// The descriptor (for poll or diagnostics). -1 once closed.
    public var fileDescriptor: Int32 { fd.load(ordering: .acquiring) }
    /// The bound address, with the port the kernel chose when binding to port 0.
    public let localAddress: SocketAddress

    private let fd: Atomic<Int32>

    /// Creates a socket and binds it to `address` (port 0 = any free port).
    public init(bindingTo address: SocketAddress, options: Options = Options()) throws(TransportError) {
        let family = address.family == .inet ? AF_INET : AF_INET6
        let s = st_udp_socket(family)
        guard s >= 0 else { throw TransportError("socket", errno: -s) }
        func fail(_ op: String, _ e: Int32) -> TransportError {
            Glibc.close(s)
            return TransportError(op, errno: e)
        }
        if options.reuseAddress {
            let r = st_set_reuseaddr(s, 1)
            if r != 0 { throw fail("setsockopt SO_REUSEADDR", -r) }
        }
        if options.reusePort {
            let r = st_set_reuseport(s, 1)
            if r != 0 { throw fail("setsockopt SO_REUSEPORT", -r) }
        }
        if address.family == .inet6 {
            let r = st_set_v6only(s, options.ipv6Only ? 1 : 0)
            if r != 0 { throw fail("setsockopt IPV6_V6ONLY", -r) }
        }
        if options.packetInfo {
            let r = st_set_pktinfo(s, family)
            if r != 0 { throw fail("setsockopt PKTINFO", -r) }
        }
        // Buffer sizes are best effort: the kernel silently caps them.
        if let n = options.receiveBufferSize { _ = st_set_rcvbuf(s, Int32(clamping: n)) }
        if let n = options.sendBufferSize { _ = st_set_sndbuf(s, Int32(clamping: n)) }
        let rc = address.withSockAddr { Glibc.bind(s, $0, $1) }
        if rc != 0 { throw fail("bind \(address)", Glibc.errno) }
        var storage = sockaddr_storage()
        var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let g = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(s, $0, &len) }
        }
        if g != 0 { throw fail("getsockname", Glibc.errno) }
        guard let local = withUnsafeBytes(of: &storage, { SocketAddress(sockaddr: $0.baseAddress!) }) else {
            throw fail("getsockname", EAFNOSUPPORT)
        }
        localAddress = local
        fd = Atomic(s)
    }

    deinit {
        let s = fd.load(ordering: .relaxed)
        if s >= 0 { Glibc.close(s) }
    }

    /// Joins the multicast group this socket is bound to on interface `interfaceIndex` (0: the
    /// kernel's choice), with `IP_MULTICAST_LOOP` = `loopback` and `IP_MULTICAST_TTL` = `ttl` (nil:
    /// the system default).
    public func joinMulticast(interfaceIndex: UInt32, loopback: Bool, ttl: Int?) throws(TransportError) {
        let group = localAddress
        var bytes = withUnsafeBytes(of: group.address) { Array($0) }
        let r = bytes.withUnsafeMutableBytes {
            st_mcast_join(fileDescriptor, group.family == .inet ? AF_INET : AF_INET6, $0.baseAddress, interfaceIndex,
                          loopback ? 1 : 0, Int32(ttl ?? -1))
        }
        if r != 0 { throw TransportError("join multicast group \(group.ip)", errno: -r) }
    }

    /// Closes the descriptor. Idempotent.
    public func close() {
        let s = fd.exchange(-1, ordering: .acquiringAndReleasing)
        if s >= 0 { Glibc.close(s) }
    }

    /// The effective `SO_RCVBUF` (as the kernel reports it: twice the granted request).
    public var receiveBufferSize: Int { Int(st_get_rcvbuf(fileDescriptor)) }
    /// The effective `SO_SNDBUF`.
    public var sendBufferSize: Int { Int(st_get_sndbuf(fileDescriptor)) }

    /// Sends one datagram now (`sendto`), retrying on EINTR.
    public func send(_ bytes: UnsafeRawBufferPointer, to destination: SocketAddress) throws(TransportError) {
        let s = fileDescriptor
        while true {
            let n = destination.withSockAddr { Glibc.sendto(s, bytes.baseAddress, bytes.count, 0, $0, $1) }
            if n >= 0 { return }
            let e = Glibc.errno
            if e == EINTR { continue }
            throw TransportError("sendto \(destination)", errno: e)
        }
    }

    /// Sends one datagram now (`sendto`).
    public func send(_ bytes: [UInt8], to destination: SocketAddress) throws(TransportError) {
        let error = bytes.withUnsafeBytes { b -> TransportError? in
            do throws(TransportError) { try send(b, to: destination); return nil } catch { return error }
        }
        if let error { throw error }
    }

    public var description: String { "udp:\(localAddress)" }
}
