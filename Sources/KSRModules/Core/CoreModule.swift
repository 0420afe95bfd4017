import SIPCore
import SIPTransport
import StarlingKEMI
import Logging

/// Core `KSR.*` functions (REFERENCE §2.1).
enum CoreModule {
    /// `is_method_in` letters.
    static let methodLetters: [Character: SIPMethod] = [
        "I": .invite, "A": .ack, "B": .bye, "C": .cancel, "M": .message, "R": .register, "E": .prack,
        "P": .publish, "S": .subscribe, "N": .notify, "O": .options, "F": .refer, "G": .get, "U": .update,
        "K": .kdmq, "D": .delete, "T": .post, "V": .put,
    ]

    static func isMethod(_ m: SIPMessage, _ spec: String) -> Bool {
        let actual = m.method
        if spec.contains("|") {
            for part in spec.split(separator: "|") {
                let k = SIPMethod(name: part.uppercased())
                if k != .other && k == actual { return true }
            }
            return false
        }
        let k = SIPMethod(name: spec.uppercased())
        if k != .other { return k == actual }
        guard actual == .other else { return false }
        return m.string(m.methodRange).lowercased() == spec.lowercased()
    }

    static func flag(_ f: Int, _ ctx: RouteContext) -> UInt32? {
        guard f >= 0 && f < 32 else {
            ctx.logger.error("flag \(f) out of range (0-31)")
            return nil
        }
        return UInt32(1) << UInt32(f)
    }

    /// KSR.is_myself* semantics (Kamailio's check_self with the URI's own port, 0 when it has
    /// none): a URI without a port matches a local address on any port, so `sip:alice@127.0.0.1`
    /// is ours when we listen on 127.0.0.1:5080 (measured on Kamailio 5.6.3), `sip:127.0.0.1:5060`
    /// is not.
    static func isMyself(_ ctx: RouteContext, uri text: String) -> Bool {
        if let u = SIPURI(text), u.scheme == .sip || u.scheme == .sips {
            let proto = u.transport.flatMap { SIPTransportProtocol(name: $0) }
            return ctx.services.isMyself(host: u.host, port: u.port, proto: proto)
        }
        return ctx.services.isMyself(host: text, port: nil, proto: nil)
    }

    /// `u` is ours; with `defaultPort` a URI without a port means 5060/5061 (the check
    /// `is_first_hop` makes), otherwise any port (the `is_myself*` functions).
    static func isMyself(_ ctx: RouteContext, _ u: SIPURI?, defaultPort: Bool = false) -> Bool {
        guard let u, u.scheme == .sip || u.scheme == .sips else { return false }
        let proto = u.transport.flatMap { SIPTransportProtocol(name: $0) }
        let port = u.port ?? (defaultPort ? (u.scheme == .sips ? 5061 : 5060) : nil)
        return ctx.services.isMyself(host: u.host, port: port, proto: proto)
    }

    static func log(_ ctx: RouteContext, _ level: Logger.Level, _ text: String?) -> KemiResult {
        guard let text else { return .none }
        var t = text
        if t.hasSuffix("\n") { t.removeLast() }
        ctx.logger.log(level: level, "\(t)")
        return .none
    }

    static func level(_ name: String) -> Logger.Level {
        switch name.lowercased() {
        case "dbg", "debug": return .debug
        case "info": return .info
        case "notice": return .notice
        case "warn", "warning": return .warning
        case "crit": return .critical
        default: return .error
        }
    }

    static func exports() -> [KemiExport] {
        var out: [KemiExport] = []
        func add(_ name: String, _ params: [KemiParamType] = [], _ ret: KemiReturnType, compat: String? = nil,
                 _ fn: @escaping KemiFunction) {
            out.append(KemiExport("", name, params, returns: ret, compat: compat, fn))
        }
        // Logging
        for (name, level) in [("dbg", Logger.Level.debug), ("info", .info), ("notice", .notice), ("warn", .warning),
                              ("err", .error), ("crit", .critical)] {
            add(name, [.str], .none) { ctx, args in log(ctx, level, args.string(0)) }
        }
        add("log", [.str, .str], .none) { ctx, args in log(ctx, level(args.str(0)), args.string(1)) }
        add("set_drop", [], .none) { ctx, _ in ctx.dropRequested = true; return .none }

        // Methods
        add("is_method", [.str], .bool) { ctx, args in
            guard let m = ctx.message, let s = args.string(0) else { return .bool(false) }
            return .bool(isMethod(m, s))
        }
        add("is_method_in", [.str], .bool) { ctx, args in
            guard let m = ctx.message, let s = args.string(0) else { return .bool(false) }
            let actual = m.method
            guard actual != .other else { return .bool(false) }
            for ch in s { if methodLetters[ch] == actual { return .bool(true) } }
            return .bool(false)
        }
        for method in SIPMethod.allCases where method != .other {
            add("is_\(method.name)", [], .bool) { ctx, _ in .bool(ctx.message?.method == method) }
        }
        // Transports
        for (name, protos) in [("is_UDP", [SIPTransportProtocol.udp]), ("is_TCP", [.tcp]), ("is_TLS", [.tls]),
                               ("is_WS", [.ws]), ("is_WSS", [.wss]), ("is_WSX", [.ws, .wss]), ("is_SCTP", [.sctp])] {
            add(name, [], .bool) { ctx, _ in .bool(protos.contains(ctx.received.proto)) }
        }
        add("is_proto", [.str], .bool) { ctx, args in
            let letters: [Character: SIPTransportProtocol] = ["u": .udp, "t": .tcp, "e": .tls, "s": .sctp, "v": .ws, "w": .wss]
            return .bool(args.str(0).contains { letters[$0] == ctx.received.proto })
        }
        add("is_IPv4", [], .bool) { ctx, _ in .bool(ctx.received.local.family == .inet) }
        add("is_IPv6", [], .bool) { ctx, _ in .bool(ctx.received.local.family == .inet6) }
        add("is_src_port", [.int], .bool) { ctx, args in .bool(Int(ctx.received.source.port) == args.int(0)) }
        add("is_dst_port", [.int], .bool) { ctx, args in .bool(Int(ctx.received.local.port) == args.int(0)) }

        // Myself
        add("is_myself", [.str], .bool) { ctx, args in .bool(isMyself(ctx, uri: args.str(0))) }
        add("is_myself_ruri", [], .bool) { ctx, _ in
            guard let m = ctx.message, m.isRequest else { return .bool(false) }
            return .bool(isMyself(ctx, ctx.currentRequestURI))
        }
        add("is_myself_duri", [], .bool) { ctx, _ in .bool(isMyself(ctx, ctx.destinationSIPURI)) }
        add("is_myself_nhuri", [], .bool) { ctx, _ in .bool(isMyself(ctx, ctx.destinationSIPURI ?? ctx.currentRequestURI)) }
        add("is_myself_furi", [], .bool) { ctx, _ in
            guard let m = ctx.message, let f = m.from else { return .bool(false) }
            return .bool(isMyself(ctx, m.uri(f.uri)))
        }
        add("is_myself_turi", [], .bool) { ctx, _ in
            guard let m = ctx.message, let t = m.to else { return .bool(false) }
            return .bool(isMyself(ctx, m.uri(t.uri)))
        }
        add("is_myself_suri", [], .bool) { ctx, _ in
            let s = ctx.received.source
            return .bool(ctx.services.isMyself(host: s.ip, port: Int(s.port), proto: ctx.received.proto))
        }
        add("is_myself_srcip", [], .bool) { ctx, _ in
            .bool(ctx.services.isMyself(host: ctx.received.source.ip, port: nil, proto: nil))
        }

        // Flags
        add("setflag", [.int], .bool) { ctx, args in
            guard let f = flag(args.int(0), ctx) else { return .bool(false) }
            ctx.messageFlags |= f; return .bool(true)
        }
        add("resetflag", [.int], .bool) { ctx, args in
            guard let f = flag(args.int(0), ctx) else { return .bool(false) }
            ctx.messageFlags &= ~f; return .bool(true)
        }
        add("isflagset", [.int], .bool) { ctx, args in
            guard let f = flag(args.int(0), ctx) else { return .bool(false) }
            return .bool(ctx.messageFlags & f != 0)
        }
        add("setbflag", [.int], .bool) { ctx, args in
            guard let f = flag(args.int(0), ctx) else { return .bool(false) }
            ctx.branchFlags |= f; return .bool(true)
        }
        add("resetbflag", [.int], .bool) { ctx, args in
            guard let f = flag(args.int(0), ctx) else { return .bool(false) }
            ctx.branchFlags &= ~f; return .bool(true)
        }
        add("isbflagset", [.int], .bool) { ctx, args in
            guard let f = flag(args.int(0), ctx) else { return .bool(false) }
            return .bool(ctx.branchFlags & f != 0)
        }
        add("setsflag", [.int], .bool) { ctx, args in
            guard let f = flag(args.int(0), ctx) else { return .bool(false) }
            ctx.scriptFlags |= f; return .bool(true)
        }
        add("resetsflag", [.int], .bool) { ctx, args in
            guard let f = flag(args.int(0), ctx) else { return .bool(false) }
            ctx.scriptFlags &= ~f; return .bool(true)
        }
        add("issflagset", [.int], .bool) { ctx, args in
            guard let f = flag(args.int(0), ctx) else { return .bool(false) }
            return .bool(ctx.scriptFlags & f != 0)
        }

        // Request-URI and destination
        add("seturi", [.str], .bool) { ctx, args in
            guard let m = ctx.message, m.isRequest, let s = args.string(0), SIPURI(s) != nil else { return .bool(false) }
            m.setRequestURI(Array(s.utf8))
            return .bool(true)
        }
        add("setuser", [.str], .bool) { ctx, args in
            .bool(PVEngine.set(ctx, .rU, args.string(0).map { .string($0) } ?? .null))
        }
        add("sethost", [.str], .bool) { ctx, args in
            guard let s = args.string(0), !s.isEmpty else { return .bool(false) }
            return .bool(PVEngine.set(ctx, .rd, .string(s)))
        }
        add("setdsturi", [.str], .bool) { ctx, args in
            // The script's bytes as they are (as Kamailio keeps them): one copy, no String between.
            if let b = args.bytes(0), !b.isEmpty { ctx.destinationURI = Array(b) }
            return .bool(true)
        }
        add("resetdsturi", [], .bool) { ctx, _ in ctx.destinationURI = nil; return .bool(true) }
        add("isdsturiset", [], .bool) { ctx, _ in .bool(!(ctx.destinationURI?.isEmpty ?? true)) }
        add("force_rport", [], .bool) { ctx, _ in ctx.forceRport = true; return .bool(true) }

        // Forwarding
        add("forward", [], .int) { ctx, _ in .int(Forwarder.forward(ctx)) }
        add("forward_uri", [.str], .int) { ctx, args in
            guard let b = args.bytes(0), b.count > 0 else { return .int(-1) }
            return .int(Forwarder.forward(ctx, uri: Array(b)))
        }
        add("get_debug", [], .int) { ctx, _ in
            switch ctx.logger.logLevel {
            case .trace, .debug: return .int(3)
            case .info: return .int(2)
            case .notice: return .int(1)
            case .warning: return .int(0)
            case .error: return .int(-1)
            case .critical: return .int(-2)
            }
        }
        return out
    }
}

extension CoreModule: KSRModule {
    static let name = "core"
    static let kemiName = ""
    static let summary = "The core `KSR.*` functions: flags, URIs, stateless forwarding, logging."
    static let alwaysLoaded = true
    static func exports(_ runtime: ModuleRuntime) -> [KemiExport] { exports() + moreExports() }
}
