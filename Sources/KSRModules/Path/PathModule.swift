import SIPCore
public import SIPTransport
public import StarlingKEMI
import Logging

/// `KSR.path` (Kamailio's path module, RFC 3327): an edge proxy adds itself to the Path of a REGISTER
/// so the registrar routes requests for the contact back through it. The header is written when the
/// request is sent, with the address of the socket it leaves from (the advertised one), as Kamailio's
/// SUBST lumps are: `Path: <sip:[USER@]ADDR[:PORT][;transport=T];lr[;received=sip:IP:PORT[%3Btransport%3DT]]
/// [;PARAMS][;r2=on]>`, before the first Path the request already has (else after the last header).
public enum PathModule {
    struct Settings {
        var useReceived: Bool
        var receivedFormat: Int
        var receivedName: String
        var enableR2: Bool
        var socketNames: Bool
    }

    /// Kamailio's proto numbers (`received_format` 1): udp 1, tcp 2, tls 3, sctp 4, ws 5, wss 6.
    static func protoNumber(_ p: SIPTransportProtocol) -> Int {
        switch p {
        case .udp: return 1
        case .tcp: return 2
        case .tls: return 3
        case .sctp: return 4
        case .ws: return 5
        case .wss: return 6
        }
    }

    static func protoName(number n: Int) -> SIPTransportProtocol? {
        [1: .udp, 2: .tcp, 3: .tls, 4: .sctp, 5: .ws, 6: .wss][n]
    }

    /// `;received=...` for the message's source (format 0: an escaped SIP URI; 1: `ip~port~proto`).
    static func receivedParam(_ ctx: RouteContext, _ s: Settings) -> String {
        let src = ctx.received.source
        if s.receivedFormat == 0 {
            var t = ""
            switch ctx.received.proto {
            case .udp: t = ""
            case .ws, .wss: t = "%3Btransport%3Dws"
            default: t = "%3Btransport%3D\(ctx.received.proto.name)"
            }
            return ";\(s.receivedName)=sip:\(src.uriHost):\(src.port)\(t)"
        }
        return ";\(s.receivedName)=\(src.uriHost)~\(src.port)~\(protoNumber(ctx.received.proto))"
    }

    /// Adds a Path lump: 1, or -1 outside a request.
    static func add(_ ctx: RouteContext, _ s: Settings, user: String, received: Bool, params: String) -> Int {
        guard let m = ctx.message, m.isRequest else {
            ctx.logger.error("path: not a request")
            return -1
        }
        var suffix = ";lr"
        if received { suffix += receivedParam(ctx, s) }
        if !params.isEmpty { suffix += ";" + params }
        if s.enableR2 { suffix += ";r2=on" }
        ctx.paths.append(PathLump(user: user, suffix: suffix, r2: s.enableR2, socketNames: s.socketNames))
        return 1
    }

    /// The Path lines of the request as it leaves from `outgoing` over `proto` (empty without add_path).
    public static func pathLines(_ ctx: RouteContext, outgoing: SocketAddress, proto: SIPTransportProtocol) -> [UInt8] {
        guard !ctx.paths.isEmpty else { return [] }
        let out = ctx.socketInfo(local: outgoing, proto: proto)
        let incoming = ctx.socketInfo(local: ctx.received.local, proto: ctx.received.proto)
        var text = ""
        for p in ctx.paths {
            let user = p.user.isEmpty ? "" : p.user + "@"
            text += "Path: <sip:\(user)\(out.uriHostPort(withName: p.socketNames))\(p.suffix)>\r\n"
            if p.r2 { text += "Path: <sip:\(user)\(incoming.uriHostPort(withName: p.socketNames))\(p.suffix)>\r\n" }
        }
        return Array(text.utf8)
    }

    /// The next hop a `received` Route parameter names (`use_received`): an escaped SIP URI (format 0)
    /// or `ip~port~proto` (format 1). Nil (and a log line) when it is malformed.
    static func receivedURI(_ value: String, _ s: Settings, _ logger: Logger) -> String? {
        if s.receivedFormat == 0 {
            guard let u = unescape(value), SIPURI(u) != nil else {
                logger.error("path: malformed received parameter '\(value)'")
                return nil
            }
            return u
        }
        let parts = value.split(separator: "~", omittingEmptySubsequences: false)
        guard parts.count == 3, !parts[0].isEmpty, let port = Int(parts[1]), (1...65535).contains(port),
              let n = Int(parts[2]), let proto = protoName(number: n) else {
            logger.error("path: malformed received parameter '\(value)'")
            return nil
        }
        let uri = "sip:\(parts[0]):\(port)" + (proto == .udp ? "" : ";transport=\(proto.name)")
        guard SIPURI(uri) != nil else {
            logger.error("path: malformed received parameter '\(value)'")
            return nil
        }
        return uri
    }

    /// %XX unescaping (Kamailio's unescape_user); nil for a bad escape.
    static func unescape(_ s: String) -> String? {
        var out: [UInt8] = []
        let b = Array(s.utf8)
        var i = 0
        while i < b.count {
            if b[i] == UInt8(ascii: "%") {
                guard i + 2 < b.count, let v = UInt8(String(decoding: b[(i + 1)...(i + 2)], as: UTF8.self), radix: 16) else { return nil }
                out.append(v)
                i += 3
            } else {
                out.append(b[i])
                i += 1
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// The rr callback of `use_received`: the Route that pointed to us carried `received`: it becomes `$du`.
    static func routed(_ ctx: RouteContext, _ s: Settings) {
        guard let params = ctx.routedParams, !params.isEmpty else { return }
        var value: String? = nil
        for p in params.split(separator: ";") {
            let kv = p.split(separator: "=", maxSplits: 1)
            if kv.count == 2, kv[0].lowercased() == s.receivedName.lowercased() { value = String(kv[1]); break }
        }
        guard var v = value, !v.isEmpty else { return }
        if v.count >= 2, v.hasPrefix("\""), v.hasSuffix("\"") { v = String(v.dropFirst().dropLast()) }
        if let uri = receivedURI(v, s, ctx.logger) { ctx.destinationURI = Array(uri.utf8) }
    }

    static func settings(_ c: ModuleConfiguration) -> Settings {
        Settings(useReceived: c[useReceived], receivedFormat: c[receivedFormat], receivedName: c[receivedName],
                 enableR2: c[enableR2], socketNames: c[socknameMode])
    }

    static func exports(_ c: ModuleConfiguration) -> [KemiExport] {
        let s = settings(c)
        func f(_ name: String, _ params: [KemiParamType], _ body: @escaping KemiFunction) -> KemiExport {
            KemiExport("path", name, params, returns: .int, body)
        }
        return [
            f("add_path", []) { ctx, _ in .int(add(ctx, s, user: "", received: false, params: "")) },
            f("add_path_user", [.str]) { ctx, a in .int(add(ctx, s, user: a.str(0), received: false, params: "")) },
            f("add_path_user_params", [.str, .str]) { ctx, a in
                .int(add(ctx, s, user: a.str(0), received: false, params: a.str(1)))
            },
            f("add_path_received", []) { ctx, _ in .int(add(ctx, s, user: "", received: true, params: "")) },
            f("add_path_received_user", [.str]) { ctx, a in .int(add(ctx, s, user: a.str(0), received: true, params: "")) },
            f("add_path_received_user_params", [.str, .str]) { ctx, a in
                .int(add(ctx, s, user: a.str(0), received: true, params: a.str(1)))
            },
        ]
    }
}

extension PathModule: KSRModule {
    public static let name = "path"
    public static let summary = "Path headers for edge proxies (RFC 3327)."
    static let useReceived = ModuleParameter.flag("path", "use_received", false,
        "A Route with a `received` parameter that points to us sets `$du` to it when `loose_route()` takes it.")
    static let receivedFormat = ModuleParameter.int("path", "received_format", 0, in: 0...1,
        "0: `received=sip:IP:PORT%3Btransport%3DT`; 1: `received=IP~PORT~PROTO`.")
    static let receivedName = ModuleParameter.str("path", "received_name", "received", "The name of the received parameter.")
    static let enableR2 = ModuleParameter.flag("path", "enable_r2", false,
        "Two Path URIs (`;r2=on`): the outgoing socket's, then the incoming socket's.")
    static let socknameMode = ModuleParameter.flag("path", "sockname_mode", false, "Add `;sn=NAME` (the socket's name) to the Path URI.")
    public static let parameters = [useReceived.info, receivedFormat.info, receivedName.info, enableR2.info, socknameMode.info]
    public static func exports(_ runtime: ModuleRuntime) -> [KemiExport] { exports(runtime.config) }
    public static func start(_ runtime: ModuleRuntime) throws(ModuleStartError) {
        let s = settings(runtime.config)
        guard !s.receivedName.isEmpty else {
            throw ModuleStartError(key: "modparam.path.received_name", "must not be empty")
        }
        if s.useReceived {
            runtime.rrCallbacks.add { ctx in routed(ctx, s) }
        }
    }
}
