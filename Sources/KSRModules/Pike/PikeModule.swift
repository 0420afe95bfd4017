import SIPTransport
import StarlingKEMI
import Logging

/// `KSR.pike` (REFERENCE §2.21): flood detection per source address. 1 = ok, -2 = the address just
/// went over `reqs_density_per_unit` requests per `sampling_time_unit` seconds, -1 = it already was.
enum PikeModule {
    static let note = "counts whole addresses: blocks once one goes over reqs_density_per_unit (Kamailio's prefix tree blocks between 1x and 3x that)"

    static func exports(_ runtime: ModuleRuntime) -> [KemiExport] {
        let store = runtime.pike
        @Sendable func check(_ ctx: RouteContext, _ ip: String) -> KemiResult {
            let v = store.check(ip)
            if v == .blockedNow { ctx.logger.warning("pike: blocking \(ip)") }
            return .int(v.rawValue)
        }
        return [
            KemiExport("pike", "pike_check_req", [], returns: .int, compat: note) { ctx, _ in
                check(ctx, ctx.received.source.ip)
            },
            KemiExport("pike", "pike_check_ip", [.str], returns: .int, compat: note) { ctx, args in
                guard let ip = args.string(0), AddressTable.parseIP(ip) != nil else {
                    ctx.logger.error("pike: invalid address '\(args.str(0))'")
                    return .int(-1)
                }
                return check(ctx, ip)
            },
        ]
    }
}

extension PikeModule: KSRModule {
    static let name = "pike"
    static let summary = "Flood detection: requests per source address and time unit."
    static func positive(_ n: Int) -> String? { n > 0 ? nil : "expected a positive integer" }
    static let samplingTimeUnit = ModuleParameter.int("pike", "sampling_time_unit", 2, "Length of a sampling window (s).", check: positive)
    static let reqsDensityPerUnit = ModuleParameter.int("pike", "reqs_density_per_unit", 30,
                                                        "Requests per window above which an address is blocked.", check: positive)
    static let removeLatency = ModuleParameter.int("pike", "remove_latency", 120, "Seconds an idle address is kept.", check: positive)
    static let parameters = [samplingTimeUnit.info, reqsDensityPerUnit.info, removeLatency.info]
}
