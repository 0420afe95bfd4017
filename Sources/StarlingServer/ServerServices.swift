public import SIPTransport
public import StarlingKEMI
import SIPStreams

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
    }

    public func isMyself(host: String, port: Int?, proto: SIPTransportProtocol?) -> Bool {
        var h = host
        if h.hasPrefix("[") && h.hasSuffix("]") { h = String(h.dropFirst().dropLast()) }
        let lower = h.lowercased()
        if aliases.contains(lower) { return true }
        // Normalise numeric addresses (IPv6 spellings differ).
        if let a = SocketAddress(ip: h, port: 0) {
            for l in listen where l.address.ip == a.ip || l.address.isUnspecified {
                if let port, Int(l.address.port) != port { continue }
                if let proto, proto != l.proto { continue }
                return true
            }
            return false
        }
        return myIPs.contains(lower)
    }

    public func resolve(host: String, port: Int?, proto: SIPTransportProtocol) -> [SocketAddress] {
        if let a = SocketAddress(ip: host, port: port ?? 0) { return [a] }
        guard let resolver else { return [] }
        let found = (try? resolver.resolve(host: host, port: port ?? 0, proto: proto)) ?? []
        // Outgoing TLS verifies the certificate against the name, not the address.
        if proto == .tls, let streams { streams.noteServerName(host, for: found) }
        return found
    }

    public func queryNAPTR(_ name: String) -> [NAPTRRecord]? {
        guard let resolver else { return nil }
        return try? resolver.queryNAPTR(name)
    }

    public func localSocket(for destination: SocketAddress, proto: SIPTransportProtocol) -> (socket: SocketAddress, advertised: String)? {
        for l in listen where l.proto == proto && l.address.family == destination.family && !l.isMulticast {
            return (l.address, "\(l.address.uriHost):\(l.address.port)")
        }
        return nil
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
