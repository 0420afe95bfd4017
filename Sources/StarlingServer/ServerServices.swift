public import SIPTransport
public import StarlingKEMI
import SIPStreams
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The core services the KSR functions use: who we are, how names resolve, which socket sends.
public final class ServerServices: CoreServices {
    /// The UDP sockets, one per UDP listen address.
    let udpSockets: [UDPSocket]
    let listen: [ListenAddress]
    /// The connection layer (nil when only UDP is configured).
    let streams: StreamTransport?
    let resolver: DNSResolver?
    public let defines: [String: String]
    /// Number of worker threads (for "active in all workers" logs).
    let workerCount: Int
    private let myIPs: Set<String>
    private let aliases: Set<String>

    init(listen: [ListenAddress], udpSockets: [UDPSocket], streams: StreamTransport? = nil, resolver: DNSResolver?,
         defines: [String: String], workerCount: Int, aliases: [String] = []) {
        self.workerCount = workerCount
        self.streams = streams
        self.listen = listen
        self.udpSockets = udpSockets
        multicastPorts = Set(listen.filter(\.isMulticast).map(\.address.port))
        self.resolver = resolver
        self.defines = defines
        var ips = Set<String>()
        for l in listen { ips.insert(l.address.ip) }
        myIPs = ips
        self.aliases = Set(aliases.map { $0.lowercased() })
        let all = listen.map {
            LocalSocket(proto: $0.proto, address: $0.address, advertisedHost: $0.advertisedHost,
                        advertisedPort: $0.advertisedPort, name: $0.name)
        }
        sockets = all
        var advertisedHosts = Set<String>()
        for l in listen {
            guard var h = l.advertisedHost?.lowercased() else { continue }
            if h.hasPrefix("[") && h.hasSuffix("]") { h = String(h.dropFirst().dropLast()) }
            advertisedHosts.insert(SocketAddress(ip: h, port: 0)?.ip ?? h)
        }
        self.advertisedHosts = advertisedHosts
        // What isMyself(host:) matches a numeric host against, as addresses (isMyself(address:)).
        aliasAddresses = self.aliases.compactMap { a in SocketAddress(ip: a, port: 0).flatMap { $0.ip == a ? $0 : nil } }
        advertisedAddresses = all.compactMap { s in
            guard var h = s.advertisedHost?.lowercased() else { return nil }
            if h.hasPrefix("[") && h.hasSuffix("]") { h = String(h.dropFirst().dropLast()) }
            guard let a = SocketAddress(ip: h, port: 0) else { return nil }
            return (a, s.advertisedPort ?? Int(s.address.port), s.proto)
        }
        var byKind = [[SendCandidate]](repeating: [], count: Self.kind(.sctp, .inet6) + 1)
        for s in all where !s.address.isMulticast {
            byKind[Self.kind(s.proto, s.address.family)].append(SendCandidate(address: s.address, advertised: s.advertised))
        }
        sendCandidates = byKind
    }

    /// Every listen socket with its advertised address and name.
    public let sockets: [LocalSocket]
    /// Advertised hosts (numeric ones normalised): `isMyself` takes them as ours.
    private let advertisedHosts: Set<String>
    /// The aliases written as numeric addresses (in their normal spelling, as `isMyself(host:)`
    /// compares them), and the numeric advertised addresses with their port and transport.
    private let aliasAddresses: [SocketAddress]
    private let advertisedAddresses: [(address: SocketAddress, port: Int, proto: SIPTransportProtocol)]
    /// Unicast sockets by transport and family (index `kind(proto, family)`), in configuration order,
    /// with their advertised `host:port` built once.
    private let sendCandidates: [[SendCandidate]]
    private struct SendCandidate {
        var address: SocketAddress
        var advertised: String
    }
    /// The source address the kernel routes each destination from (mhomed), by destination address.
    private let routeCache = Mutex<[SocketAddress: SocketAddress]>([:])

    private static func kind(_ proto: SIPTransportProtocol, _ family: SocketAddress.Family) -> Int {
        Int(proto.rawValue) * 2 + (family == .inet6 ? 1 : 0)
    }

    /// The local address the kernel would send to `destination` from (Kamailio's mhomed: a UDP socket
    /// connected to it, then getsockname). Cached per destination address (at most 4096 entries).
    func routeSource(for destination: SocketAddress) -> SocketAddress? {
        var key = destination
        key.port = 5060
        if let hit = routeCache.withLock({ $0[key] }) { return hit }
        let fd = Glibc.socket(destination.family == .inet6 ? AF_INET6 : AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        guard fd >= 0 else { return nil }
        defer { Glibc.close(fd) }
        let connected = key.withSockAddr { sa, len in Glibc.connect(fd, sa, len) }
        guard connected == 0 else { return nil }
        var storage = sockaddr_storage()
        var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let ok = withUnsafeMutablePointer(to: &storage) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
        }
        guard ok == 0, let local = withUnsafePointer(to: &storage, { SocketAddress(sockaddr: UnsafeRawPointer($0)) }) else {
            return nil
        }
        routeCache.withLock { c in
            if c.count >= 4096 { c.removeAll(keepingCapacity: true) }
            c[key] = local
        }
        return local
    }

    public func isMyself(host: String, port: Int?, proto: SIPTransportProtocol?) -> Bool {
        var h = host
        if h.hasPrefix("[") && h.hasSuffix("]") { h = String(h.dropFirst().dropLast()) }
        let lower = h.lowercased()
        if aliases.contains(lower) { return true }
        if !advertisedHosts.isEmpty, advertisedHosts.contains(SocketAddress(ip: h, port: 0)?.ip ?? lower) {
            // An advertised address is ours on the socket's advertised (or own) port.
            for s in sockets {
                guard let a = s.advertisedHost?.lowercased() else { continue }
                let bare = a.hasPrefix("[") ? String(a.dropFirst().dropLast()) : a
                guard (SocketAddress(ip: bare, port: 0)?.ip ?? bare) == (SocketAddress(ip: h, port: 0)?.ip ?? lower) else { continue }
                if let port, port != (s.advertisedPort ?? Int(s.address.port)) { continue }
                if let proto, proto != s.proto { continue }
                return true
            }
        }
        // Normalise numeric addresses (IPv6 spellings differ).
        if let a = SocketAddress(ip: h, port: 0) {
            for l in listen where l.address.hasSameIP(as: a) || l.address.isUnspecified {
                if let port, Int(l.address.port) != port { continue }
                if let proto, proto != l.proto { continue }
                return true
            }
            return false
        }
        return myIPs.contains(lower)
    }

    /// `isMyself(host: address.ip, port: address.port, proto:)` comparing bytes: no text per request.
    public func isMyself(address a: SocketAddress, proto: SIPTransportProtocol?) -> Bool {
        if aliasAddresses.contains(where: { $0.hasSameIP(as: a) }) { return true }
        let port = Int(a.port)
        for s in advertisedAddresses where s.address.hasSameIP(as: a) && s.port == port {
            if let proto, proto != s.proto { continue }
            return true
        }
        for l in listen where l.address.hasSameIP(as: a) || l.address.isUnspecified {
            if Int(l.address.port) != port { continue }
            if let proto, proto != l.proto { continue }
            return true
        }
        return false
    }

    public func resolve(host: String, port: Int?, proto: SIPTransportProtocol) -> [SocketAddress] {
        if let a = SocketAddress(ip: host, port: port ?? 0) { return [a] }
        guard let resolver else { return [] }
        // No port: RFC 3263 §4.2, SRV first (as Kamailio resolves a URI without a port).
        let found = (try? resolver.resolve(host: host, port: port, proto: proto)) ?? []
        // Outgoing TLS verifies the certificate against the name, not the address.
        if proto == .tls, let streams { streams.noteServerName(host, for: found) }
        return found
    }

    public func queryNAPTR(_ name: String) -> [NAPTRRecord]? {
        guard let resolver else { return nil }
        return try? resolver.queryNAPTR(name)
    }

    /// The socket a message to `destination` leaves from when the script forced none: with one socket
    /// of the transport and family, that one; with several, the one on the address the kernel routes
    /// the destination from (Kamailio's `mhomed=1`), else the first. The advertised address is the
    /// socket's `advertise`, else its own.
    public func localSocket(for destination: SocketAddress, proto: SIPTransportProtocol) -> (socket: SocketAddress, advertised: String)? {
        let candidates = sendCandidates[Self.kind(proto, destination.family)]
        guard let first = candidates.first else { return nil }
        if candidates.count > 1, let source = routeSource(for: destination) {
            if let s = candidates.first(where: { $0.address.hasSameIP(as: source) }) ?? candidates.first(where: { $0.address.isUnspecified }) {
                return (s.address, s.advertised)
            }
        }
        return (first.address, first.advertised)
    }

    public func tlsPeer(connection id: UInt64) -> TLSPeer? {
        guard id != 0, let p = streams?.tlsPeer(connection: id) else { return nil }
        return TLSPeer(verified: p.verified, subjectCN: p.subjectCN, alternativeNames: p.alternativeNames, serial: p.serial)
    }

    public func closeConnection(_ id: UInt64) -> Bool {
        guard id != 0, let streams else { return false }
        return streams.close(connection: id)
    }

    /// The UDP socket bound to a local address (or the first of the family). Nothing is sent from a
    /// multicast group socket: a reply to a request received on one leaves from the first unicast
    /// socket of the family (Kamailio's rule; `$uac_req(sock)` / set_send_socket pick another).
    func udpSocket(for local: SocketAddress?, family: SocketAddress.Family) -> UDPSocket? {
        if let local, !local.isMulticast, let s = udpSockets.first(where: { $0.localAddress == local }) { return s }
        return udpSockets.first(where: { $0.localAddress.family == family && !$0.localAddress.isMulticast })
    }

    /// UDP ports with a multicast group listener: wildcard sockets on them leave group datagrams to it.
    let multicastPorts: Set<UInt16>
}

extension SocketAddress {
    /// 0.0.0.0 or ::
    var isUnspecified: Bool { address.0 == 0 && address.1 == 0 }
}
