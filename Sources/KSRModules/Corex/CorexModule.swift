#if canImport(Glibc)
import Glibc
#endif
import SIPCore
import StarlingKEMI
import Logging

/// `KSR.corex` (REFERENCE §2.21, the 5.6 set). Socket selection and Via tweaks need transports
/// Starling does not have yet: those log and return -1.
enum CorexModule {
    static func xflag(_ f: Int, _ ctx: RouteContext) -> UInt64? {
        guard f >= 0 && f < 64 else {
            ctx.logger.error("xflag \(f) out of range (0-63)")
            return nil
        }
        return UInt64(1) << UInt64(f)
    }

    /// Sends raw bytes to the address a SIP URI resolves to. 1 / -1.
    static func send(_ ctx: RouteContext, uri: String, data: [UInt8]) -> Int {
        guard let u = SIPURI(uri), let t = Forwarder.target(ctx, u) else {
            ctx.logger.error("send_data: cannot resolve '\(uri)'")
            return -1
        }
        let local = ctx.services.localSocket(for: t.address, proto: t.proto)?.socket
        return ctx.sender.send(data, to: t.address, proto: t.proto, from: local) ? 1 : -1
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
        add("sendx", [.str, .str, .str], compat: "the socket argument is ignored (default local socket)") { ctx, a in
            .int(send(ctx, uri: a.str(0), data: a.byteArray(2)))
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
        for (name, params, why) in [("set_send_socket", [KemiParamType.str], "no socket selection"),
                                    ("set_send_socket_name", [.str], "no socket selection"),
                                    ("set_recv_socket", [.str], "no socket selection"),
                                    ("set_recv_socket_name", [.str], "no socket selection"),
                                    ("set_source_address", [.str], "no socket selection"),
                                    ("is_socket_name", [.str], "no named sockets"),
                                    ("via_add_srvid", [.int], "no server id in Via"),
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
