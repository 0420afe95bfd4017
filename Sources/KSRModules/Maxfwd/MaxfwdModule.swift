import SIPCore
import StarlingKEMI
import Logging

/// `KSR.maxfwd` (REFERENCE §2.12).
enum MaxfwdModule {
    static func exports(_ config: ModuleConfiguration) -> [KemiExport] {
        let maxLimit = config[Self.maxLimit]
        return [
            KemiExport("maxfwd", "process_maxfwd", [.int], returns: .int) { ctx, args in
                let limit = args.int(0)
                guard limit >= 0 && limit <= 255, let m = ctx.message, m.isRequest else { return .int(-2) }
                guard let h = m.firstHeader(.maxForwards) else {
                    m.addHeaderLine(Array("Max-Forwards: \(limit)\r\n".utf8), at: .last)
                    return .int(2)
                }
                // Read from the bytes (no String per request): the core's check lets only values of
                // 1*DIGIT up to 255 through, as `maxForwards` reads them.
                guard let v = m.maxForwards else { return .int(-2) }
                if v == 0 { return .int(-1) }
                let newValue = min(v, maxLimit) - 1
                var digits: [UInt8] = newValue < 0 ? [UInt8(ascii: "-")] : []
                digits.appendDigits(UInt64(newValue.magnitude))
                m.replaceBytes(h.value, with: digits)
                return .int(1)
            },
            KemiExport("maxfwd", "is_maxfwd_lt", [.int], returns: .int) { ctx, args in
                guard let m = ctx.message, m.firstHeader(.maxForwards) != nil else { return .int(-2) }
                guard let v = m.maxForwards else { return .int(-3) }
                return .int(v < args.int(0) ? 1 : -1)
            },
        ]
    }
}

extension MaxfwdModule: KSRModule {
    static let name = "maxfwd"
    static let summary = "Max-Forwards checks."
    static let maxLimit = ModuleParameter.int("maxfwd", "max_limit", 70, in: 0...255,
                                              "The highest Max-Forwards value kept; larger values are lowered to it.")
    static let parameters = [maxLimit.info]
    static func exports(_ runtime: ModuleRuntime) -> [KemiExport] { exports(runtime.config) }
}
