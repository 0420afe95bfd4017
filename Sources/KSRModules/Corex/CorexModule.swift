#if canImport(Glibc)
import Glibc
#endif
import SIPCore
import SIPTransport
import StarlingKEMI
import Logging

/// `KSR.corex` (REFERENCE §2.21, the 5.6 set): branches, xflags, socket selection (`set_send_socket*`,
/// `set_recv_socket*`, `set_source_address`, `is_socket_name`), data sends, files. The Via tweaks
/// (`via_add_srvid`, `via_*_xavp_*`) log and return -1.
enum CorexModule {
    static func xflag(_ f: Int, _ ctx: RouteContext) -> UInt64? {
        guard f >= 0 && f < 64 else {
            ctx.logger.error("xflag \(f) out of range (0-63)")
            return nil
        }
        return UInt64(1) << UInt64(f)
    }

    /// Sends raw bytes to the address a SIP URI resolves to. 1 / -1.
    static func send(_ ctx: RouteContext, uri: String, data: [UInt8], socket: LocalSocket? = nil) -> Int {
        guard let u = SIPURI(uri), let t = Forwarder.target(ctx, u) else {
            ctx.logger.error("send_data: cannot resolve '\(uri)'")
            return -1
        }
        let local = socket.map(\.address) ?? ctx.localSocket(for: t.address, proto: t.proto)?.socket
        return ctx.sender.send(data, to: t.address, proto: t.proto, from: local) ? 1 : -1
    }

    /// `[proto:]host[:port]` (Kamailio's parse_phostport): proto nil when not given, port 0 when not
    /// given (any). Nil when the text does not parse.
    static func parseSocketSpec(_ text: String) -> (proto: SIPTransportProtocol?, host: String, port: Int)? {
        var rest = Substring(text)
        while rest.first == " " || rest.first == "\t" { rest = rest.dropFirst() }
        while rest.last == " " || rest.last == "\t" { rest = rest.dropLast() }
        var proto: SIPTransportProtocol? = nil
        if let c = rest.firstIndex(of: ":"), !rest.hasPrefix("["), let p = SIPTransportProtocol(name: String(rest[..<c]).lowercased()),
           rest.index(after: c) < rest.endIndex {
            proto = p
            rest = rest[rest.index(after: c)...]
        }
        var host: Substring
        var portText: Substring? = nil
        if rest.hasPrefix("[") {
            guard let close = rest.firstIndex(of: "]") else { return nil }
            host = rest[...close]
            let after = rest[rest.index(after: close)...]
            if !after.isEmpty {
                guard after.first == ":" else { return nil }
                portText = after.dropFirst()
            }
        } else {
            let colons = rest.filter { $0 == ":" }.count
            guard colons <= 1 else { return nil }
            if let c = rest.firstIndex(of: ":") {
                host = rest[..<c]
                portText = rest[rest.index(after: c)...]
            } else {
                host = rest
            }
        }
        guard !host.isEmpty else { return nil }
        var port = 0
        if let portText {
            guard let p = Int(portText), p > 0, p < 65536 else { return nil }
            port = p
        }
        return (proto, String(host), port)
    }

    /// `set_send_socket*` / `set_recv_socket*`: an empty value resets (1); a bad specification -1; a
    /// socket that does not exist is logged and ignored (1), as Kamailio does.
    static func setSocket(_ ctx: RouteContext, _ spec: String, send: Bool, byName: Bool) -> Int {
        guard !spec.isEmpty else {
            if send { ctx.forcedSocket = nil }
            return 1
        }
        let found: LocalSocket?
        if byName {
            found = ctx.services.socket(named: spec)
        } else {
            guard let p = parseSocketSpec(spec) else {
                ctx.logger.error("invalid socket specification [\(spec)] (\(send ? 0 : 1))")
                return -1
            }
            found = ctx.services.socket(host: p.host, port: p.port, proto: p.proto)
        }
        guard let si = found else {
            ctx.logger.warning("no socket found to match [\(spec)] (\(send ? 0 : 1))")
            return 1
        }
        if send {
            ctx.forcedSocket = si
        } else {
            ctx.received.local = si.address
            ctx.received.proto = si.proto
            ctx.received.connectionID = 0
        }
        return 1
    }

    /// `set_source_address("[proto:]ip:port")`: the source address the message seems to come from.
    static func setSourceAddress(_ ctx: RouteContext, _ text: String) -> Int {
        guard !text.isEmpty, let p = parseSocketSpec(text) else {
            ctx.logger.error("failed to parse the address [\(text)]")
            return -1
        }
        let proto = p.proto ?? .udp
        guard var a = ctx.services.resolve(host: p.host.hasPrefix("[") ? String(p.host.dropFirst().dropLast()) : p.host,
                                           port: p.port, proto: proto).first else {
            ctx.logger.error("failed to resolve address [\(text)]")
            return -1
        }
        a.port = UInt16(p.port)
        ctx.received.source = a
        return 1
    }

    static func exports() -> [KemiExport] {
        var out: [KemiExport] = []
        func add(_ name: String, _ params: [KemiParamType] = [], _ ret: KemiReturnType = .int, compat: String? = nil,
                 _ fn: @escaping KemiFunction) {
            out.append(KemiExport("corex", name, params, returns: ret, compat: compat, fn))
        }
        add("has_ruri_user") { ctx, _ in
            guard let u = ctx.currentRequestURI, let user = u.user else { return .int(-1) }
            return .code(!user.isEmpty)
        }
        add("has_user_agent") { ctx, _ in .code(ctx.message?.firstHeader(.userAgent) != nil) }
        add("append_branch", compat: "the branch keeps the URI only (no $du, q or flags per branch yet)") { ctx, _ in
            guard let m = ctx.message, m.isRequest else { return .int(-1) }
            ctx.branches.append(m.currentRequestURI)
            return .int(1)
        }
        add("append_branch_uri", [.str], compat: "the branch keeps the URI only") { ctx, a in
            guard let b = a.bytes(0), b.count > 0, SIPURI(bytes: Array(b)) != nil else { return .int(-1) }
            ctx.branches.append(Array(b))
            return .int(1)
        }
        add("append_branch_uri_q", [.str, .str], compat: "the branch keeps the URI and q (used by tm t_load_contacts)") { ctx, a in
            guard let b = a.bytes(0), b.count > 0, SIPURI(bytes: Array(b)) != nil else { return .int(-1) }
            var q = -1
            if let s = a.string(1), !s.isEmpty, s != "-1" {
                guard let v = Double(s), v >= 0, v <= 1 else { return .int(-1) }
                q = Int((v * 1000).rounded())
            }
            ctx.appendBranch(Array(b), q: q)
            return .int(1)
        }
        add("setxflag", [.int]) { ctx, a in
            guard let f = xflag(a.int(0), ctx) else { return .int(-1) }
            ctx.extendedFlags |= f; return .int(1)
        }
        add("resetxflag", [.int]) { ctx, a in
            guard let f = xflag(a.int(0), ctx) else { return .int(-1) }
            ctx.extendedFlags &= ~f; return .int(1)
        }
        add("isxflagset", [.int]) { ctx, a in
            guard let f = xflag(a.int(0), ctx) else { return .int(-1) }
            return .code(ctx.extendedFlags & f != 0)
        }
        add("send_data", [.str, .str]) { ctx, a in .int(send(ctx, uri: a.str(0), data: a.byteArray(1))) }
        add("sendx", [.str, .str, .str]) { ctx, a in
            var socket: LocalSocket? = nil
            if !a.str(1).isEmpty {
                guard let p = parseSocketSpec(a.str(1)), let si = ctx.services.socket(host: p.host, port: p.port, proto: p.proto) else {
                    ctx.logger.error("sendx: no socket matches [\(a.str(1))]")
                    return .int(-1)
                }
                socket = si
            }
            return .int(send(ctx, uri: a.str(0), data: a.byteArray(2), socket: socket))
        }
        add("is_faked_msg") { ctx, _ in .int(FakedMessage.isActive(ctx) ? 1 : -1) }
        add("file_read", [.str], .xval) { ctx, a in
            guard let f = fopen(a.str(0), "rb") else {
                ctx.logger.error("file_read: cannot open '\(a.str(0))'")
                return .null
            }
            defer { fclose(f) }
            var data: [UInt8] = []
            var buf = [UInt8](repeating: 0, count: 4096)
            while true {
                let n = fread(&buf, 1, buf.count, f)
                if n <= 0 { break }
                data.append(contentsOf: buf[0..<n])
                if data.count > 16 << 20 { return .null }
            }
            return .bytes(data)
        }
        add("file_write", [.str, .str]) { ctx, a in
            guard let f = fopen(a.str(0), "wb") else {
                ctx.logger.error("file_write: cannot open '\(a.str(0))'")
                return .int(-1)
            }
            defer { fclose(f) }
            let data = a.byteArray(1)
            return .code(data.isEmpty || fwrite(data, 1, data.count, f) == data.count)
        }
        add("set_send_socket", [.str]) { ctx, a in .int(setSocket(ctx, a.str(0), send: true, byName: false)) }
        add("set_send_socket_name", [.str]) { ctx, a in .int(setSocket(ctx, a.str(0), send: true, byName: true)) }
        add("set_recv_socket", [.str]) { ctx, a in .int(setSocket(ctx, a.str(0), send: false, byName: false)) }
        add("set_recv_socket_name", [.str]) { ctx, a in .int(setSocket(ctx, a.str(0), send: false, byName: true)) }
        add("set_source_address", [.str]) { ctx, a in .int(setSourceAddress(ctx, a.str(0))) }
        add("is_socket_name", [.str]) { ctx, a in
            let name = a.str(0)
            guard !name.isEmpty else {
                ctx.logger.error("is_socket_name: invalid socket name value")
                return .int(-1)
            }
            return .code(ctx.services.socket(named: name) != nil)
        }
        for (name, params, why) in [("via_add_srvid", [KemiParamType.int], "no server id in Via"),
                                    ("via_add_xavp_params", [.int], "no Via parameters from xavps"),
                                    ("via_use_xavp_fields", [.int], "no Via fields from xavps")] {
            add(name, params, compat: "not yet (\(why)): logs and returns -1") { ctx, _ in
                ctx.logger.warning("corex.\(name) is not supported yet")
                return .int(-1)
            }
        }
        return out
    }
}

extension CorexModule: KSRModule {
    static let name = "corex"
    static let summary = "Core extensions: branches, extended flags, socket names, file access."
    static func exports(_ runtime: ModuleRuntime) -> [KemiExport] { exports() }
}
