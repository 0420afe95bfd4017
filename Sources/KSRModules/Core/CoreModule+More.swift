import SIPCore
import SIPTransport
import StarlingKEMI
import Logging

/// The rest of the core `KSR.*` functions (REFERENCE §2.1): per-branch flags, next-hop transport
/// tests, and connection/advertising settings that have no effect on a UDP-only server yet.
extension CoreModule {
    /// The next hop's transport and address family: `$du`, else the R-URI; for replies the 2nd Via.
    static func nextHop(_ ctx: RouteContext) -> (proto: SIPTransportProtocol, family: SocketAddress.Family?)? {
        guard let m = ctx.message else { return nil }
        if !m.isRequest {
            let vias = m.values(.via)
            guard vias.count >= 2, let v = m.parseVia(vias[1]) else { return nil }
            let proto = SIPTransportProtocol(name: m.string(v.transport)) ?? .udp
            let host = m.string(v.received ?? v.host)
            return (proto, ctx.services.resolve(host: host, port: v.port, proto: proto).first?.family)
        }
        guard let u = ctx.destinationSIPURI ?? ctx.currentRequestURI else { return nil }
        var proto: SIPTransportProtocol = u.scheme == .sips ? .tls : .udp
        if let t = u.transport { proto = SIPTransportProtocol(name: t) ?? proto }
        return (proto, Forwarder.target(ctx, u)?.address.family)
    }

    static func moreExports() -> [KemiExport] {
        var out: [KemiExport] = []
        func add(_ name: String, _ params: [KemiParamType] = [], _ ret: KemiReturnType, compat: String? = nil,
                 _ fn: @escaping KemiFunction) {
            out.append(KemiExport("", name, params, returns: ret, compat: compat, fn))
        }
        let branchCompat = "only branch 0 (the R-URI branch) has flags yet; other branches -> false"
        add("setbiflag", [.int, .int], .bool, compat: branchCompat) { ctx, a in
            guard a.int(1) == 0, let f = flag(a.int(0), ctx) else { return .bool(false) }
            ctx.branchFlags |= f; return .bool(true)
        }
        add("resetbiflag", [.int, .int], .bool, compat: branchCompat) { ctx, a in
            guard a.int(1) == 0, let f = flag(a.int(0), ctx) else { return .bool(false) }
            ctx.branchFlags &= ~f; return .bool(true)
        }
        add("isbiflagset", [.int, .int], .bool, compat: branchCompat) { ctx, a in
            guard a.int(1) == 0, let f = flag(a.int(0), ctx) else { return .bool(false) }
            return .bool(ctx.branchFlags & f != 0)
        }
        for (name, protos) in [("to_UDP", [SIPTransportProtocol.udp]), ("to_TCP", [.tcp]), ("to_TLS", [.tls]),
                               ("to_SCTP", [.sctp]), ("to_WS", [.ws]), ("to_WSS", [.wss]), ("to_WSX", [.ws, .wss])] {
            add(name, [], .bool) { ctx, _ in .bool(nextHop(ctx).map { protos.contains($0.proto) } ?? false) }
        }
        add("to_IPv4", [], .bool) { ctx, _ in .bool(nextHop(ctx)?.family == .inet) }
        add("to_IPv6", [], .bool) { ctx, _ in .bool(nextHop(ctx)?.family == .inet6) }
        add("set_forward_close", [], .bool) { ctx, _ in ctx.connectionFlags.forwardClose = true; return .bool(true) }
        add("set_forward_no_connect", [], .bool) { ctx, _ in ctx.connectionFlags.forwardNoConnect = true; return .bool(true) }
        add("set_reply_close", [], .bool) { ctx, _ in ctx.connectionFlags.replyClose = true; return .bool(true) }
        add("set_reply_no_connect", [], .bool) { ctx, _ in ctx.connectionFlags.replyNoConnect = true; return .bool(true) }
        add("add_local_rport", [], .bool) { ctx, _ in ctx.addLocalRport = true; return .bool(true) }
        add("set_advertised_address", [.str], .int) { ctx, a in
            guard let v = a.string(0), !v.isEmpty else { return .int(-1) }
            ctx.advertisedAddress = v
            return .int(1)
        }
        add("set_advertised_port", [.str], .int) { ctx, a in
            guard let v = a.string(0), let p = Int(v), p > 0, p < 65536 else { return .int(-1) }
            ctx.advertisedPort = p
            return .int(1)
        }
        add("add_tcp_alias", [.int], .int, compat: "connections are reused by their source address already; an explicit alias is not kept: -1") { _, _ in .int(-1) }
        add("add_tcp_alias_via", [], .int, compat: "connections are reused by their source address already; an explicit alias is not kept: -1") { _, _ in .int(-1) }
        add("route", [.str], .int, compat: "no native cfg route blocks: always -1 (not found)") { ctx, a in
            ctx.logger.error("route(\(a.str(0))): native route blocks do not exist in Starling")
            return .int(-1)
        }
        return out
    }
}
