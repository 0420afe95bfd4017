import SIPCore
import StarlingKEMI
import Logging

/// `KSR.auth` (REFERENCE §2.18): digest challenges and checks against a password from the script.
/// Nonces are shared by all workers (`ModuleRuntime.auth`).
enum AuthModule {
    /// Kamailio `pv_authenticate`: checks the credentials of `type` against `password` (flags: 1 the
    /// password is HA1; 2/4/8 store a challenge in `$avp(digest_challenge)`; 32 update the nonce
    /// count only on success).
    static func pvAuthenticate(_ ctx: RouteContext, _ store: AuthNonces, realm: String, password: String, flags: Int,
                               type: AuthHeaderType, method: String? = nil) -> Int {
        guard let m = ctx.message, m.isRequest else { return AuthCode.error }
        let laterUpdate = store.settings.nonceCount && flags & 32 != 0
        let pre = AuthCore.preAuth(ctx, store, realm: realm, type: type, update: !laterUpdate)
        var ret: Int
        if let code = AuthCore.code(pre) {
            ret = code
        } else if case .check(let c) = pre {
            let strippedRealm = AuthCore.stripRealm(realm, store)
            let ha1 = flags & 1 != 0 ? password
                : AuthCore.ha1(ctx, store, username: c.username, realm: strippedRealm, password: password)
            ret = AuthCore.checkResponse(ctx, store, c, ha1: ha1, method: method ?? m.string(m.methodRange))
            if ret == AuthCode.ok { AuthCore.postAuth(ctx, store, c, ha1: ha1) }
            if ret == AuthCode.ok && laterUpdate {
                _ = store.check(c.nonce ?? "", bound: AuthCore.boundParts(ctx, store), nc: c.nc, update: true)
            }
        } else {
            ret = AuthCode.error
        }
        return AuthCore.storeChallenge(ctx, store, code: ret, flags: flags, realm: realm, type: type)
    }

    /// Kamailio `pv_auth_check`: www for REGISTER, proxy otherwise; `checks` 1 = the identity check.
    static func pvAuthCheck(_ ctx: RouteContext, _ store: AuthNonces, realm: String, password: String, flags: Int,
                            checks: Int) -> Int {
        guard let m = ctx.message, m.isRequest else { return AuthCode.error }
        if m.method == .ack || m.method == .cancel { return AuthCode.ok }
        guard !realm.isEmpty else {
            ctx.logger.error("auth: invalid realm value - empty content")
            return AuthCode.error
        }
        let type = AuthHeaderType.of(m)
        let ret = pvAuthenticate(ctx, store, realm: realm, password: password, flags: flags, type: type)
        guard ret == AuthCode.ok, checks & 1 != 0 else { return ret }
        if m.method == .prack { return AuthCode.ok }
        guard let h = AuthWorkerState.of(ctx).authorized[type] else { return AuthCode.error }
        var malformed = false
        guard let c = DigestCredentials.parse(m, h, malformed: &malformed) else { return AuthCode.error }
        return AuthCore.checkIdentity(ctx, authUser: c.user, useDomain: store.settings.useDomain)
    }

    static func exports(_ runtime: ModuleRuntime) -> [KemiExport] {
        let store = runtime.auth
        return [
            KemiExport("auth", "consume_credentials", [], returns: .int) { ctx, _ in
                guard let m = ctx.message, m.isRequest else { return .int(-1) }
                if m.method == .ack || m.method == .cancel || m.method == .prack { return .int(-1) }
                let state = AuthWorkerState.of(ctx)
                guard let h = state.authorized[.www] ?? state.authorized[.proxy] else {
                    ctx.logger.error("auth: no authorized credentials found (error in scripts)")
                    return .int(-1)
                }
                m.removeHeader(h)
                return .int(1)
            },
            KemiExport("auth", "auth_challenge", [.str, .int], returns: .int) { ctx, args in
                guard let m = ctx.message, m.isRequest else { return .int(-3) }
                return .int(AuthCore.challenge(ctx, store, realm: args.str(0), flags: args.int(1), type: .of(m)))
            },
            KemiExport("auth", "www_challenge", [.str, .int], returns: .int, compat: "Kamailio 5.7+") { ctx, args in
                .int(AuthCore.challenge(ctx, store, realm: args.str(0), flags: args.int(1), type: .www))
            },
            KemiExport("auth", "proxy_challenge", [.str, .int], returns: .int, compat: "Kamailio 5.7+") { ctx, args in
                .int(AuthCore.challenge(ctx, store, realm: args.str(0), flags: args.int(1), type: .proxy))
            },
            KemiExport("auth", "pv_auth_check", [.str, .str, .int, .int], returns: .int) { ctx, args in
                .int(pvAuthCheck(ctx, store, realm: args.str(0), password: args.str(1), flags: args.int(2),
                                 checks: args.int(3)))
            },
            KemiExport("auth", "pv_www_authenticate", [.str, .str, .int], returns: .int, compat: "Kamailio 6.0+") { ctx, args in
                guard !args.str(0).isEmpty else { return .int(AuthCode.error) }
                return .int(pvAuthenticate(ctx, store, realm: args.str(0), password: args.str(1), flags: args.int(2),
                                           type: .www))
            },
            KemiExport("auth", "pv_www_authenticate_method", [.str, .str, .int, .str], returns: .int,
                       compat: "Kamailio 6.0+") { ctx, args in
                guard !args.str(0).isEmpty, !args.str(3).isEmpty else { return .int(AuthCode.error) }
                return .int(pvAuthenticate(ctx, store, realm: args.str(0), password: args.str(1), flags: args.int(2),
                                           type: .www, method: args.str(3)))
            },
            KemiExport("auth", "pv_proxy_authenticate", [.str, .str, .int], returns: .int, compat: "Kamailio 6.0+") { ctx, args in
                guard !args.str(0).isEmpty else { return .int(AuthCode.error) }
                return .int(pvAuthenticate(ctx, store, realm: args.str(0), password: args.str(1), flags: args.int(2),
                                           type: .proxy))
            },
            KemiExport("auth", "has_credentials", [.str], returns: .int) { ctx, args in
                guard let m = ctx.message, m.isRequest else { return .int(-1) }
                for type in [AuthHeaderType.proxy, .www] {
                    var malformed = false
                    if AuthCore.findCredentials(m, realm: args.str(0), type: type, malformed: &malformed) != nil {
                        return .int(1)
                    }
                }
                return .int(-1)
            },
            KemiExport("auth", "auth_get_www_authenticate", [.str, .int, .str], returns: .int,
                       compat: "Kamailio 5.7+") { ctx, args in
                guard let pv = ctx.pvCache.spec(args.str(2)) else {
                    ctx.logger.error("auth: cannot get pv spec for [\(args.str(2))]")
                    return .int(-1)
                }
                let flags = args.int(1)
                let qop: String? = flags & 2 != 0 ? "auth-int" : (flags & 1 != 0 ? "auth" : nil)
                // Kamailio builds it without the message: no realm default, no bound message parts.
                let value = AuthCore.challengeHeader(ctx, store, realm: args.str(0), qop: qop, stale: flags & 16 != 0,
                                                     type: .www, useMessage: false)
                return .int(PVEngine.set(ctx, pv, .string(value)) ? 1 : -1)
            },
            KemiExport("auth", "auth_algorithm", [.str], returns: .int,
                       compat: "Kamailio 6.0+ (MD5, SHA-256, SHA-512-256; 5.6 has only the algorithm parameter)") { ctx, args in
                let name = args.str(0)
                let chosen: DigestHash?
                if name.isEmpty {
                    chosen = nil
                } else if let h = DigestHash(rawValue: name) {
                    chosen = h
                } else {
                    ctx.logger.error("auth: invalid algorithm '\(name)': use \"\", MD5, SHA-256 or SHA-512-256")
                    return .int(-1)
                }
                ctx.worker.local(AuthWorkerState.self) { AuthWorkerState() }.algorithm = .some(chosen)
                return .int(1)
            },
        ]
    }
}

extension AuthModule: KSRModule {
    static let name = "auth"
    static let summary = "Digest authentication: challenges, nonces, checks against a password from the script."
    static let nonceExpire = ModuleParameter.int("auth", "nonce_expire", 300, "Seconds a nonce stays valid.")
    static let nonceAuthMaxDrift = ModuleParameter.int("auth", "nonce_auth_max_drift", 3,
                                                       "Seconds a nonce may come from the future (clock drift between instances).")
    static let qop = ModuleParameter.str("auth", "qop", "", "The qop offered in challenges (\"auth\", \"auth-int\"), empty for none.")
    static let nonceCount = ModuleParameter.flag("auth", "nonce_count", false, "Check the nonce count (nc) of qop requests.")
    static let oneTimeNonce = ModuleParameter.flag("auth", "one_time_nonce", false, "Accept each nonce once.")
    static let ncArraySize = ModuleParameter.int("auth", "nc_array_size", 1 << 20, "Nonce-count slots (rounded down to a power of 2).")
    static let ncArrayOrder = ModuleParameter.int("auth", "nc_array_order", 0, "nc_array_size as a power of 2 (overrides it when set).")
    static let otnInFlightNo = ModuleParameter.int("auth", "otn_in_flight_no", 1 << 20, "One-time nonces in flight (rounded down to a power of 2).")
    static let otnInFlightOrder = ModuleParameter.int("auth", "otn_in_flight_order", 0, "otn_in_flight_no as a power of 2 (overrides it when set).")
    static let checksRegister = ModuleParameter.int("auth", "auth_checks_register", 0, "Extra nonce checks (bit mask) for REGISTER.")
    static let checksNoDialog = ModuleParameter.int("auth", "auth_checks_no_dlg", 0, "Extra nonce checks (bit mask) for out-of-dialog requests.")
    static let checksInDialog = ModuleParameter.int("auth", "auth_checks_in_dlg", 0, "Extra nonce checks (bit mask) for in-dialog requests.")
    static let forceStatelessReply = ModuleParameter.flag("auth", "force_stateless_reply", false, "Send challenges statelessly even in a transaction.")
    static let realmPrefix = ModuleParameter.str("auth", "realm_prefix", "", "A prefix removed from the realm before checks.")
    static let useDomain = ModuleParameter.flag("auth", "use_domain", false, "Compare the domain too in identity checks.")
    static let algorithm = ModuleParameter.str("auth", "algorithm", "", "Digest algorithm: MD5 (default), SHA-256, SHA-512-256.") { a in
        a.isEmpty || DigestHash(rawValue: a.uppercased()) != nil ? nil : "expected MD5, SHA-256 or SHA-512-256"
    }
    static let challengeAttr = ModuleParameter.str("auth", "challenge_attr", "$digest_challenge",
                                                   "The AVP pv_www/proxy_authenticate store a challenge in.")
    static let addAuthInfoHeader = ModuleParameter.flag("auth", "add_authinfo_hdr", false, "Add Authentication-Info to replies of successful checks.")
    static let wwwChallengeHeader = ModuleParameter.str("auth", "www_challenge_header", "WWW-Authenticate", "The header of www challenges.")
    static let proxyChallengeHeader = ModuleParameter.str("auth", "proxy_challenge_header", "Proxy-Authenticate", "The header of proxy challenges.")
    static let secret = ModuleParameter.str("auth", "secret", "", "The nonce secret (random at start when empty; set it on every instance that must accept the others' nonces).")

    static let parameters = [nonceExpire, nonceAuthMaxDrift, ncArraySize, ncArrayOrder, otnInFlightNo, otnInFlightOrder,
                             checksRegister, checksNoDialog, checksInDialog].map(\.info)
        + [nonceCount, oneTimeNonce, forceStatelessReply, useDomain, addAuthInfoHeader].map(\.info)
        + [qop, realmPrefix, algorithm, challengeAttr, wwwChallengeHeader, proxyChallengeHeader, secret].map(\.info)
}
