import SIPCore
import StarlingKEMI
import Logging

/// `KSR.pv`: get/gete/getw/getvs/getvn/geti/sets/seti/unset/is_null (REFERENCE §2.2).
enum PVModule {
    static func spec(_ ctx: RouteContext, _ args: KemiArgs, _ i: Int = 0) -> PseudoVariable? {
        guard let raw = args.bytes(i) else { return nil }
        guard raw.count > 0, let pv = ctx.pvCache.spec(raw: raw) else {
            ctx.logger.error("invalid pseudo-variable name '\(String(decoding: raw, as: UTF8.self))'")
            return nil
        }
        return pv
    }

    static func exports() -> [KemiExport] {
        func getter(_ name: String, null: KemiResult) -> KemiExport {
            KemiExport("pv", name, [.str], returns: .xval) { ctx, args in
                guard let pv = spec(ctx, args) else { return null }
                let v = PVEngine.get(ctx, pv)
                if case .null = v { return null }
                return v.kemi
            }
        }
        return [
            getter("get", null: .null),
            getter("gete", null: .string("")),
            getter("getw", null: .string("<null>")),
            KemiExport("pv", "getvs", [.str, .str], returns: .xval) { ctx, args in
                guard let pv = spec(ctx, args) else { return .string(args.str(1)) }
                let v = PVEngine.get(ctx, pv)
                if case .null = v { return .string(args.str(1)) }
                return v.kemi
            },
            KemiExport("pv", "getvn", [.str, .int], returns: .xval) { ctx, args in
                guard let pv = spec(ctx, args) else { return .int(args.int(1)) }
                let v = PVEngine.get(ctx, pv)
                if case .null = v { return .int(args.int(1)) }
                return v.kemi
            },
            KemiExport("pv", "geti", [.str], returns: .int) { ctx, args in
                guard let pv = spec(ctx, args), let m = ctx.message ?? nil as SIPMessage? else {
                    guard let pv = spec(ctx, args) else { return .int(0) }
                    if case .int(let i) = PVEngine.get(ctx, pv) { return .int(i) }
                    return .int(0)
                }
                switch PVEngine.get(ctx, pv) {
                case .int(let i): return .int(i)
                case .bytes(let r): return .int(Int(m.string(r).trimmingSpaces) ?? 0)
                case .string(let s): return .int(Int(s.trimmingSpaces) ?? 0)
                case .null: return .int(0)
                }
            },
            KemiExport("pv", "sets", [.str, .str], returns: .bool) { ctx, args in
                guard let pv = spec(ctx, args), let value = args.string(1) else { return .bool(false) }
                return .bool(PVEngine.set(ctx, pv, .string(value)))
            },
            KemiExport("pv", "seti", [.str, .int], returns: .bool) { ctx, args in
                guard let pv = spec(ctx, args) else { return .bool(false) }
                return .bool(PVEngine.set(ctx, pv, .int(args.int(1))))
            },
            KemiExport("pv", "unset", [.str], returns: .bool) { ctx, args in
                guard let pv = spec(ctx, args) else { return .bool(false) }
                return .bool(PVEngine.set(ctx, pv, .null))
            },
            KemiExport("pv", "is_null", [.str], returns: .bool) { ctx, args in
                guard let pv = spec(ctx, args) else { return .bool(true) }
                if case .null = PVEngine.get(ctx, pv) { return .bool(true) }
                return .bool(false)
            },
        ]
    }
}

extension String {
    var trimmingSpaces: Substring {
        var s = self[...]
        while let f = s.first, f == " " || f == "\t" { s = s.dropFirst() }
        while let l = s.last, l == " " || l == "\t" { s = s.dropLast() }
        return s
    }
}

extension PVModule: KSRModule {
    static let name = "pv"
    static let summary = "Pseudo-variables: `KSR.pv.get/sets/seti/unset/is_null`."
    static let alwaysLoaded = true
    static func exports(_ runtime: ModuleRuntime) -> [KemiExport] { exports() }
}
