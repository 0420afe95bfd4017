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
