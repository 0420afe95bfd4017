import SIPCore
import StarlingKEMI
import Logging

/// `KSR.hdr` (REFERENCE §2.3). All changes are deferred edits: invisible to reads of the same message.
enum HdrModule {
    static func line(_ args: KemiArgs, _ i: Int) -> [UInt8]? {
        guard let b = args.bytes(i), b.count > 0 else { return nil }
        return Array(b)
    }

    static func fields(_ m: SIPMessage, _ name: String) -> [SIPHeaderField] { m.headers(named: name) }

    static func value(_ ctx: RouteContext, _ name: String?, index: Int, null: KemiResult) -> KemiResult {
        guard let m = ctx.message, let name, !name.isEmpty else { return null }
        let list = fields(m, name)
        guard !list.isEmpty else { return null }
        let i = index < 0 ? list.count + index : index
        guard i >= 0 && i < list.count && i < 256 else { return null }
        return .messageBytes(list[i].value)
    }

    static func exports() -> [KemiExport] {
        var out: [KemiExport] = [
            KemiExport("hdr", "append", [.str], returns: .int) { ctx, args in
                guard let m = ctx.message, let l = line(args, 0) else { return .int(-1) }
                m.addHeaderLine(l, at: .last)
                return .int(1)
            },
            KemiExport("hdr", "append_after", [.str, .str], returns: .int) { ctx, args in
                guard let m = ctx.message, let l = line(args, 0) else { return .int(-1) }
                if let f = fields(m, args.str(1)).first { m.addHeaderLine(l, at: .after(f)) } else { m.addHeaderLine(l, at: .last) }
                return .int(1)
            },
            KemiExport("hdr", "insert", [.str], returns: .int) { ctx, args in
                guard let m = ctx.message, let l = line(args, 0) else { return .int(-1) }
                m.addHeaderLine(l, at: .first)
                return .int(1)
            },
            KemiExport("hdr", "insert_before", [.str, .str], returns: .int) { ctx, args in
                guard let m = ctx.message, let l = line(args, 0) else { return .int(-1) }
                if let f = fields(m, args.str(1)).first { m.addHeaderLine(l, at: .before(f)) } else { m.addHeaderLine(l, at: .first) }
                return .int(1)
            },
            KemiExport("hdr", "remove", [.str], returns: .int) { ctx, args in
                guard let m = ctx.message, let name = args.string(0), !name.isEmpty else { return .int(-1) }
                for f in fields(m, name) { m.removeHeader(f) }
                return .int(1)
            },
            KemiExport("hdr", "rmappend", [.str, .str], returns: .int) { ctx, args in
                guard let m = ctx.message, let name = args.string(0), let l = line(args, 1) else { return .int(-1) }
                for f in fields(m, name) { m.removeHeader(f) }
                m.addHeaderLine(l, at: .last)
                return .int(1)
            },
            KemiExport("hdr", "rminsert", [.str, .str], returns: .int) { ctx, args in
                guard let m = ctx.message, let name = args.string(0), let l = line(args, 1) else { return .int(-1) }
                for f in fields(m, name) { m.removeHeader(f) }
                m.addHeaderLine(l, at: .first)
                return .int(1)
            },
            KemiExport("hdr", "is_present", [.str], returns: .int) { ctx, args in
                guard let m = ctx.message, let name = args.string(0), !name.isEmpty else { return .int(-1) }
                return .code(!fields(m, name).isEmpty)
            },
            KemiExport("hdr", "append_to_reply", [.str], returns: .int) { ctx, args in
                guard let l = line(args, 0) else { return .int(-1) }
                ctx.replyHeaders.append(contentsOf: l)
                return .int(1)
            },
            KemiExport("hdr", "match_content", [.str, .str, .str, .str], returns: .bool) { ctx, args in
                guard let m = ctx.message else { return .bool(false) }
                return .bool(matchContent(m, args.str(0), args.str(1), args.str(2), args.str(3)))
            },
        ]
        for (suffix, null) in [("", KemiResult.null), ("e", .string("")), ("w", .string("<null>"))] {
            out.append(KemiExport("hdr", "get\(suffix)", [.str], returns: .xval) { ctx, args in
                value(ctx, args.string(0), index: 0, null: null)
            })
            out.append(KemiExport("hdr", "get\(suffix)_idx", [.str, .int], returns: .xval) { ctx, args in
                value(ctx, args.string(0), index: args.int(1), null: null)
            })
        }
        return out
    }

    /// `hdr.match_content(hname, op, value, idx)`: op eq/ne (case-insensitive), sw (starts with), in
    /// (contains); idx f(irst)/l(ast)/a(ll)/o(ne).
    static func matchContent(_ m: SIPMessage, _ name: String, _ op: String, _ val: String, _ idx: String) -> Bool {
        let list = fields(m, name).map { m.string($0.value).lowercased() }
        let v = val.lowercased()
        func test(_ s: String) -> Bool {
            switch op {
            case "eq": return s == v
            case "ne": return s != v
            case "sw": return s.hasPrefix(v)
            case "in": return s.contains(v)
            default: return false
            }
        }
        guard !list.isEmpty else { return false }
        switch idx.first {
        case "f": return test(list[0])
        case "l": return test(list[list.count - 1])
        case "a": return list.allSatisfy(test)
        case "o": return list.contains(where: test)
        default: return false
        }
    }
}

extension HdrModule: KSRModule {
    static let name = "hdr"
    static let summary = "Header reads and deferred header edits."
    static let alwaysLoaded = true
    static func exports(_ runtime: ModuleRuntime) -> [KemiExport] { exports() }
}
