public import SIPCore
public import SIPTransport
public import StarlingKEMI
import Logging

/// Kamailio's internal error codes, kept for `sl_reply_error` (`prev_ser_error`).
public enum SERError {
    public static let badAddress = -478
    public static let send = -477
    public static let badURI = -479
    public static let badRequest = -5
}

/// Stateless forwarding of requests (RFC 3261 §16.11) and of replies by their Via headers.
public enum Forwarder {
    /// Where a URI points: the resolved address and the transport.
    public struct Target {
        public var address: SocketAddress
        public var proto: SIPTransportProtocol
    }

    /// Resolves a SIP URI to a destination: `maddr`, host and port (5060, or 5061 for sips/tls),
    /// `transport` parameter (UDP by default, TLS for sips).
    public static func target(_ ctx: RouteContext, _ uri: SIPURI) -> Target? {
        numericTarget(uri) ?? targets(ctx, uri, all: false).first
    }

    /// The target of a URI whose host (or `maddr`) is a numeric address, which is its own address
    /// (CoreServices.resolve's contract): no resolver call and no arrays for the usual next hop of a
    /// proxy. Nil for a name (or a scheme other than sip and sips).
    static func numericTarget(_ uri: SIPURI) -> Target? {
        guard let (host, proto) = hostAndProto(uri),
              let a = SocketAddress(ip: host, port: uri.port ?? 0) else { return nil }
        return Target(address: withPort(a, uri, proto), proto: proto)
    }

    /// Every address a SIP URI resolves to, in the resolver's order (SRV priority, then A/AAAA): the
    /// candidates of tm's DNS failover. `all: false` stops at the first.
    public static func targets(_ ctx: RouteContext, _ uri: SIPURI, all: Bool = true) -> [Target] {
        guard let (host, proto) = hostAndProto(uri) else { return [] }
        let addresses = ctx.services.resolve(host: host, port: uri.port, proto: proto)
        var out: [Target] = []
        for a in addresses {
            out.append(Target(address: withPort(a, uri, proto), proto: proto))
            if !all { break }
        }
        return out
    }

    /// The host to resolve (`maddr`, else the URI's host) and the transport (the `transport`
    /// parameter, else UDP, or TLS for sips); nil for schemes other than sip and sips.
    private static func hostAndProto(_ uri: SIPURI) -> (host: String, proto: SIPTransportProtocol)? {
        guard uri.scheme == .sip || uri.scheme == .sips else { return nil }
        var proto: SIPTransportProtocol = uri.scheme == .sips ? .tls : .udp
        if let t = uri.transport { proto = SIPTransportProtocol(name: t) ?? proto }
        return (uri.param("maddr") ?? uri.host, proto)
    }

    /// The URI's port, else the resolved one (SRV), else 5060 (5061 for TLS).
    private static func withPort(_ address: SocketAddress, _ uri: SIPURI, _ proto: SIPTransportProtocol) -> SocketAddress {
        var a = address
        if let p = uri.port { a.port = UInt16(p) } else if a.port == 0 { a.port = proto == .tls ? 5061 : 5060 }
        return a
    }

    /// A branch id that is the same for retransmissions of a request and for its CANCEL (§16.11):
    /// a hash of the incoming top Via branch (or Call-ID, From tag and CSeq number for RFC 2543
    /// requests) and of where it is sent.
    static func branch(_ m: SIPMessage, _ destination: SocketAddress) -> String {
        var h = FNV1a()
        m.withBytes { b in
            if let via = m.topVia, let br = via.branch, br.count > 7 {
                h.add(UnsafeRawBufferPointer(rebasing: b[br.range]))
                h.add(UnsafeRawBufferPointer(rebasing: b[via.host.range]))
            } else {
                if let c = m.callID { h.add(UnsafeRawBufferPointer(rebasing: b[c.range])) }
                if let t = m.fromTag { h.add(UnsafeRawBufferPointer(rebasing: b[t.range])) }
                if let c = m.cseq { h.add(UnsafeRawBufferPointer(rebasing: b[c.numberRange.range])) }
                h.add(UnsafeRawBufferPointer(rebasing: b[m.requestURIRange.range]))
            }
        }
        // The destination's address and port bytes (its text cost ~900 instructions a request).
        withUnsafeBytes(of: destination.address) { h.add($0) }
        withUnsafeBytes(of: destination.port) { h.add($0) }
        var id = Array("z9hG4bKsl".utf8)
        id.appendDigits(h.value, radix: 36)
        return String(decoding: id, as: UTF8.self)
    }

    /// `KSR.forward()` / `forward_uri(uri)`: sends the current request statelessly to `uri`, else to
    /// `$du`, else to the Request-URI. Returns 1, or -1 (with `lastError` set).
    public static func forward(_ ctx: RouteContext, uri explicit: [UInt8]? = nil) -> Int {
        guard let m = ctx.message, m.isRequest else { return -1 }
        let hop: RequestBuilder.Hop
        do throws(RequestBuilder.Failure) {
            hop = try RequestBuilder.hop(ctx, to: explicit ?? ctx.destinationURI ?? m.currentRequestURI, caller: "forward")
        } catch {
            ctx.lastError = error.code
            return -1
        }
        let bytes = RequestBuilder.forwarded(ctx, m, hop: hop, branch: branch(m, hop.destination))
        guard RequestBuilder.passesOnSend(ctx, hop, bytes) else {
            ctx.logger.debug("forward: dropped by ksr_onsend_route")
            return -1
        }
        guard ctx.sender.send(bytes, to: hop.destination, proto: hop.proto, from: hop.local.socket) else {
            ctx.lastError = SERError.send
            return -1
        }
        return 1
    }

    /// Forwards a reply statelessly: the top Via must be ours; it is removed and the reply goes to the
    /// next Via (its `received`/`rport` when present). Returns false when the reply is dropped.
    public static func relayReply(_ ctx: RouteContext) -> Bool {
        guard let m = ctx.message, !m.isRequest else { return false }
        guard let top = m.topVia else { return false }
        let host = m.string(top.host)
        let proto = SIPTransportProtocol(name: m.string(top.transport)) ?? .udp
        guard ctx.services.isMyself(host: host, port: top.port ?? 5060, proto: proto) else {
            ctx.logger.debug("reply not for us (top Via \(host)): dropped")
            return false
        }
        let vias = m.values(.via)
        guard vias.count >= 2, let next = m.parseVia(vias[1]) else {
            ctx.logger.debug("reply has no second Via: dropped")
            return false
        }
        let nextProto = SIPTransportProtocol(name: m.string(next.transport)) ?? .udp
        let dhost = next.received.map(m.string) ?? m.string(next.host)
        var port = next.port ?? (nextProto == .tls ? 5061 : 5060)
        if let rp = next.rport, !rp.isEmpty, let p = Int(m.string(rp)), p > 0, p < 65536 { port = p }
        guard var dst = ctx.services.resolve(host: dhost, port: port, proto: nextProto).first else {
            ctx.logger.info("reply: cannot resolve next Via host \(dhost): dropped")
            return false
        }
        dst.port = UInt16(port)
        if dst.family == .inet && (dst.ipv4 == 0xFFFF_FFFF || dst.ipv4 >> 28 == 0xE || dst.ipv4 == 0) {
            ctx.logger.info("reply: next Via \(dst.ip) is a broadcast/multicast address: dropped")
            return false
        }
        let bytes = m.serialized(options: SIPSerializeOptions(removeTopVia: true))
        let local = ctx.localSocket(for: dst, proto: nextProto)?.socket
        return ctx.sender.send(bytes, to: dst, proto: nextProto, from: local)
    }
}
