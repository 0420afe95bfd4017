import StarlingKEMI
import SIPCore
import Logging

/// `KSR.uac` (REFERENCE §2.8): authentication of relayed requests (UACAuth.swift), requests of the
/// proxy's own (`$uac_req` + `uac_req_send`, UACRequest.swift), From/To replacement with rr-param
/// restore (UACReplace.swift). What is missing is listed in docs/UAC.md.
enum UACModule {
    static func exports(_ runtime: ModuleRuntime) -> [KemiExport] {
        let config = runtime.config
        let req = UACRequest.Settings(config)
        return UACAuth.exports(config) + UACReplace.exports(config) + [
            KemiExport("uac", "uac_req_send", returns: .int) { ctx, _ in .int(UACRequest.send(ctx, req)) },
        ] + registrationExports(runtime)
    }

    /// uac_reg_*: over `runtime.uacreg` (Kamailio's return codes, uac_reg.c).
    static func registrationExports(_ runtime: ModuleRuntime) -> [KemiExport] {
        let reg = runtime.uacreg
        let s = reg.settings
        @Sendable func setPV(_ ctx: RouteContext, _ name: String, _ value: String) -> Bool {
            guard let pv = ctx.pvCache.spec(name) else {
                ctx.logger.error("uac: invalid pseudo-variable \(name)")
                return false
            }
            return PVEngine.set(ctx, pv, .string(value))
        }
        @Sendable func byURI(_ ctx: RouteContext, _ uri: String) -> UACRegistry.Entry?? {
            guard let u = SIPURI(uri), let user = u.user else {
                ctx.logger.error("uac: failed to parse uri \(uri)")
                return .none
            }
            return .some(reg.entry(user: user, domain: s.useDomain ? u.host : nil))
        }
        return [
            KemiExport("uac", "uac_reg_lookup", [.str, .str], returns: .int) { ctx, a in
                guard let e = reg.entry(uuid: a.str(0)) else { return .int(-1) }
                return .code(setPV(ctx, a.str(1), "sip:\(e.row.l_username)@\(e.row.l_domain)"))
            },
            KemiExport("uac", "uac_reg_lookup_uri", [.str, .str], returns: .int) { ctx, a in
                guard case .some(let found) = byURI(ctx, a.str(0)) else { return .int(-2) }
                guard let e = found else { return .int(-1) }
                return .code(setPV(ctx, a.str(1), e.row.l_uuid))
            },
            KemiExport("uac", "uac_reg_status", [.str], returns: .int) { ctx, a in
                let id = a.str(0)
                let found: UACRegistry.Entry?
                if id.hasPrefix("sip:") || id.hasPrefix("sips:") {
                    guard case .some(let f) = byURI(ctx, id) else { return .int(-1) }
                    found = f
                } else {
                    found = reg.entry(uuid: id)
                }
                guard let e = found else { return .int(-1) }
                return .int(UACRegistry.status(e, now: runtime.clock.unixTime))
            },
            KemiExport("uac", "uac_reg_request_to", [.str, .int], returns: .int) { ctx, a in
                let found: UACRegistry.Entry?
                switch a.int(1) {
                case 0: found = reg.entry(uuid: a.str(0))
                case 1:
                    if s.useDomain {
                        guard case .some(let f) = byURI(ctx, a.str(0)) else { return .int(-2) }
                        found = f
                    } else {
                        found = reg.entry(user: a.str(0), domain: nil)
                    }
                default:
                    ctx.logger.error("uac_reg_request_to: unknown mode \(a.int(1))")
                    return .int(-1)
                }
                guard let e = found, let m = ctx.message, m.isRequest else { return .int(-1) }
                m.setRequestURI(Array("sip:\(e.row.r_username)@\(e.row.r_domain)".utf8))
                ctx.destinationURI = e.row.auth_proxy.isEmpty ? nil : Array(e.row.auth_proxy.utf8)
                for (name, value) in [(s.realmAVP, e.row.realm), (s.usernameAVP, e.row.auth_username),
                                      (s.passwordAVP, e.row.auth_password)] {
                    if let name { ctx.avps[name, default: []].append(.string(value)) }
                }
                return .int(1)
            },
            KemiExport("uac", "uac_reg_enable", [.str, .str], returns: .int) { _, a in
                .int(reg.setDisabled(false, attr: a.str(0), value: a.str(1), now: runtime.clock.unixTime))
            },
            KemiExport("uac", "uac_reg_disable", [.str, .str], returns: .int) { _, a in
                .int(reg.setDisabled(true, attr: a.str(0), value: a.str(1), now: runtime.clock.unixTime))
            },
            KemiExport("uac", "uac_reg_refresh", [.str], returns: .int) { _, a in
                .int(reg.refresh(a.str(0), now: runtime.clock.unixTime))
            },
        ]
    }
}
