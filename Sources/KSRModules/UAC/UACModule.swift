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
            KemiExport("uac", "starling_req_send_await", returns: .int,
                       compat: "Starling only (not in Kamailio): uac_req_send whose route waits for the final reply under [core] async_io; returns its code, $uac_req(evcode/evtype) set as in Kamailio's uac:reply event route") { ctx, _ in
                UACRequest.sendAwait(ctx, req)
            },
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

extension UACModule: KSRModule {
    static let name = "uac"
    static let summary = "Authentication of relayed requests, the proxy's own requests, From/To replacement, remote registrations."
    static let credential = ModuleParameter.list("uac", "credential", "`username:realm:password` for uac_auth().")
    static let authUsernameAVP = ModuleParameter.optionalStr("uac", "auth_username_avp", "The AVP uac_auth() takes the username from.")
    static let authPasswordAVP = ModuleParameter.optionalStr("uac", "auth_password_avp", "The AVP uac_auth() takes the password from.")
    static let authRealmAVP = ModuleParameter.optionalStr("uac", "auth_realm_avp", "The AVP uac_auth() takes the realm from.")
    static let restoreMode = ModuleParameter.str("uac", "restore_mode", "auto", "How replaced From/To are restored: none, manual, auto.") { m in
        ["none", "manual", "auto"].contains(m.lowercased()) ? nil : "expected none, manual or auto"
    }
    static let rrFromStoreParam = ModuleParameter.str("uac", "rr_from_store_param", "vsf", "Record-Route parameter keeping the original From.")
    static let rrToStoreParam = ModuleParameter.str("uac", "rr_to_store_param", "vst", "Record-Route parameter keeping the original To.")
    static let eventCallback = ModuleParameter.optionalStr("uac", "event_callback", "The Lua function run for replies of uac_req_send with evroute set.")
    static let regDBURL = ModuleParameter.optionalStr("uac", "reg_db_url", "The database of the uacreg table (enables remote registrations).")
    static let regDBTable = ModuleParameter.str("uac", "reg_db_table", "uacreg", "The table of remote registrations.")
    static let regContactAddr = ModuleParameter.str("uac", "reg_contact_addr", "", "host:port of the Contact of remote registrations.")
    static let regTimerInterval = ModuleParameter.int("uac", "reg_timer_interval", 90, "Seconds between registration checks.") {
        $0 > 0 ? nil : "expected a positive number of seconds"
    }
    static let regRetryInterval = ModuleParameter.int("uac", "reg_retry_interval", 0, "Seconds before a failed registration is retried (0: never).") {
        $0 >= 0 ? nil : "expected a non-negative number of seconds"
    }
    static let regUseDomain = ModuleParameter.flag("uac", "reg_use_domain", false, "Registration ids include the domain.")
    static let parameters = [credential.info] + [restoreMode, rrFromStoreParam, rrToStoreParam, regDBTable, regContactAddr].map(\.info)
        + [authUsernameAVP, authPasswordAVP, authRealmAVP, eventCallback, regDBURL].map(\.info)
        + [regTimerInterval.info, regRetryInterval.info, regUseDomain.info]

    static let rpcMethods = [
        ModuleRPCMethod("uac.reg_dump", "The remote registrations (uacreg rows) with their state.") { rt, p throws(RPCFault) in
            try p.none("uac.reg_dump")
            let reg = try enabled(rt)
            return .array(reg.dump(now: rt.clock.unixTime).map { row in
                .object(row.mapValues { v -> RPCValue in
                    switch v {
                    case .int(let i): return .int(i)
                    case .string(let s): return .string(s)
                    case .null: return .null
                    }
                })
            })
        },
        ModuleRPCMethod("uac.reg_reload", "Reads the uacreg rows again.") { rt, p throws(RPCFault) in
            try p.none("uac.reg_reload")
            guard let n = try enabled(rt).reload(now: rt.clock.unixTime) else {
                throw RPCFault(RPCFault.failed, "Failed to reload records - check log messages")
            }
            return .object(["rows": .int(n)])
        },
    ]

    /// Kamailio's fault when uac_reg has no database.
    static func enabled(_ rt: ModuleRuntime) throws(RPCFault) -> UACRegistry {
        guard rt.uacreg.isEnabled else { throw RPCFault(RPCFault.failed, "Not enabled", data: "no uacreg table is configured") }
        return rt.uacreg
    }
}
