#if canImport(Glibc)
import Glibc
#endif
import SIPCore
import SIPTransport
import StarlingKEMI

/// `KSR.kx` (Kamailio's kemix, REFERENCE §2.22): quick getters. `get_*` give nil when absent,
/// `gete_*` "", `getw_*` "<null>".
enum KxModule {
    static let protoIDs: [SIPTransportProtocol: Int] = [.udp: 1, .tcp: 2, .tls: 3, .sctp: 4, .ws: 5, .wss: 6]

    static func sock(_ proto: SIPTransportProtocol, _ a: SocketAddress) -> String { "\(proto.name):\(a.uriHost):\(a.port)" }

    /// The source as a URI (`sip:ip:port`, plus `;transport=` for non-UDP, as Kamailio's get_src_uri).
    static func srcURI(_ ctx: RouteContext) -> String {
        let s = ctx.received.source
        var u = "sip:\(s.uriHost):\(s.port)"
        if ctx.received.proto != .udp { u += ";transport=\(ctx.received.proto.name)" }
        return u
    }

    static func pv(_ ctx: RouteContext, _ pv: PseudoVariable) -> KemiResult? {
        let v = PVEngine.get(ctx, pv)
        if case .null = v { return nil }
        return v.kemi
    }

    static func exports() -> [KemiExport] {
        var out: [KemiExport] = []
        func add(_ name: String, _ params: [KemiParamType] = [], _ ret: KemiReturnType = .xval, _ fn: @escaping KemiFunction) {
            out.append(KemiExport("kx", name, params, returns: ret, fn))
        }
        /// Adds get_X, gete_X, getw_X.
        func triple(_ x: String, _ value: @escaping @Sendable (RouteContext) -> KemiResult?) {
            add("get_\(x)") { ctx, _ in value(ctx) ?? .null }
            add("gete_\(x)") { ctx, _ in value(ctx) ?? .string("") }
            add("getw_\(x)") { ctx, _ in value(ctx) ?? .string("<null>") }
        }
        // URIs
        add("get_ruri") { ctx, _ in pv(ctx, .ru) ?? .null }
        add("get_ouri") { ctx, _ in pv(ctx, .ou) ?? .null }
        add("get_furi") { ctx, _ in pv(ctx, .fu) ?? .null }
        add("get_turi") { ctx, _ in pv(ctx, .tu) ?? .null }
        add("get_nhuri") { ctx, _ in pv(ctx, .du) ?? pv(ctx, .ru) ?? .null }
        add("get_srcuri") { ctx, _ in .string(srcURI(ctx)) }
        triple("ruser") { pv($0, .rU) }
        triple("rhost") { pv($0, .rd) }
        triple("fuser") { pv($0, .fU) }
        triple("fhost") { pv($0, .fd) }
        triple("tuser") { pv($0, .tU) }
        triple("thost") { pv($0, .td) }
        triple("duri") { pv($0, .du) }
        triple("cturi") { pv($0, .ext(.ctu)) }
        triple("au") { pv($0, .ext(.au)) }
        // Network
        add("get_srcip") { ctx, _ in .string(ctx.received.source.ip) }
        add("get_srcport", [], .int) { ctx, _ in .int(Int(ctx.received.source.port)) }
        add("get_srcaddr_sock") { ctx, _ in .string(sock(ctx.received.proto, ctx.received.source)) }
        add("get_rcvip") { ctx, _ in .string(ctx.received.local.ip) }
        add("get_rcvport") { ctx, _ in .int(Int(ctx.received.local.port)) }
        add("get_rcv_sock_name") { ctx, _ in
            ctx.socketInfo(local: ctx.received.local, proto: ctx.received.proto).name.map { .string($0) } ?? .null
        }
        add("get_rcvadvip") { ctx, _ in
            let s = ctx.socketInfo(local: ctx.received.local, proto: ctx.received.proto)
            return .string(s.advertisedHost ?? ctx.received.local.ip)
        }
        add("get_rcvadvport") { ctx, _ in
            let s = ctx.socketInfo(local: ctx.received.local, proto: ctx.received.proto)
            return .int(s.advertisedPort ?? Int(ctx.received.local.port))
        }
        add("get_rcvaddr_sock") { ctx, _ in .string(sock(ctx.received.proto, ctx.received.local)) }
        add("get_send_sock") { ctx, _ in ctx.forcedSocket.map { .string($0.description) } ?? .null }
        add("get_send_sock_name") { ctx, _ in ctx.forcedSocket?.name.map { .string($0) } ?? .null }
        add("get_send_sock_port", [], .int) { ctx, _ in .int(ctx.forcedSocket.map { Int($0.address.port) } ?? 0) }
        add("get_proto") { ctx, _ in .string(ctx.received.proto.name) }
        add("get_protoid", [], .int) { ctx, _ in .int(protoIDs[ctx.received.proto] ?? 0) }
        add("get_conid", [], .int) { _, _ in .int(0) }
        // Message
        add("get_method") { ctx, _ in pv(ctx, .rm) ?? .null }
        add("get_status", [], .int) { ctx, _ in
            guard let m = ctx.message, !m.isRequest else { return .int(-1) }
            return .int(m.statusCode)
        }
        add("gets_status") { ctx, _ in
            guard let m = ctx.message, !m.isRequest else { return .string("") }
            return .string(String(m.statusCode))
        }
        triple("ua") { pv($0, .ua) }
        add("get_callid") { ctx, _ in pv(ctx, .ci) ?? .string("") }
        triple("body") { pv($0, .rb) }
        add("get_bodylen", [], .int) { ctx, _ in .int(ctx.message?.bodyRange.count ?? 0) }
        add("get_msglen", [], .int) { ctx, _ in .int(ctx.message?.count ?? 0) }
        add("get_msgtype", [], .int) { ctx, _ in
            guard let m = ctx.message else { return .int(0) }
            return .int(m.isRequest ? 1 : 2)
        }
        add("get_timestamp", [], .int) { ctx, _ in .int(ctx.receivedAt.seconds) }
        add("get_msgbuf") { ctx, _ in
            guard let m = ctx.message else { return .null }
            return .messageBytes(ByteRange(0, m.count))
        }
        // Configuration and environment
        add("get_def", [.str]) { ctx, a in .string(ctx.services.defines[a.str(0)] ?? "") }
        add("get_defn", [.str], .int) { ctx, a in .int(Int(ctx.services.defines[a.str(0)] ?? "") ?? 0) }
        add("ifdef", [.str], .bool) { ctx, a in .bool(ctx.services.defines[a.str(0)] != nil) }
        add("ifndef", [.str], .bool) { ctx, a in .bool(ctx.services.defines[a.str(0)] == nil) }
        add("get_env", [.str]) { _, a in
            guard let v = getenv(a.str(0)) else { return .null }
            return .string(String(cString: v))
        }
        add("get_envn", [.str], .int) { _, a in
            guard let v = getenv(a.str(0)) else { return .int(0) }
            return .int(Int(String(cString: v)) ?? 0)
        }
        return out
    }
}

extension KxModule: KSRModule {
    static let name = "kemix"
    static let kemiName = "kx"
    static let summary = "`KSR.kx`: quick getters of message and socket attributes."
    static func exports(_ runtime: ModuleRuntime) -> [KemiExport] { exports() }
}
