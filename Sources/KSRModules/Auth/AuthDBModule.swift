import SIPCore
import StarlingKEMI
import Logging

/// `KSR.auth_db` (REFERENCE §2.19): digest checks against the `subscriber` table
/// (`ModuleRuntime.subscribers`), nonces from `auth`.
enum AuthDBModule {
    /// `[modparam.auth_db]` with Kamailio 5.6's defaults.
    struct Settings {
        /// `calculate_ha1`: the password column holds plaintext passwords.
        var calculateHA1 = false
        /// `password_column` ("ha1") and `password_column_2` ("ha1b": HA1 over user@domain, used when
        /// the username carries a domain and HA1 is not calculated).
        var passwordColumn = "ha1"
        var passwordColumn2 = "ha1b"
        var useDomain = false
        /// `load_credentials`: (pseudo-variable, column) pairs set after a successful check.
        var credentials: [(pv: String, column: String)] = []
        /// `force_generate_avps`: load them even when the password is wrong.
        var forceGenerateAVPs = false

        init(_ config: ModuleConfiguration) {
            calculateHA1 = config[AuthDBModule.calculateHA1]
            passwordColumn = config[AuthDBModule.passwordColumn]
            passwordColumn2 = config[AuthDBModule.passwordColumn2]
            useDomain = config[AuthDBModule.useDomain]
            forceGenerateAVPs = config[AuthDBModule.forceGenerateAVPs]
            credentials = Self.parseCredentials(config[AuthDBModule.loadCredentials])
        }

        /// `"$avp(x)=column;column2"`: a bare column loads into `$avp(column)`.
        static func parseCredentials(_ s: String) -> [(pv: String, column: String)] {
            s.split(separator: ";").compactMap { item in
                let item = item.trimmingCharacters(" \t")
                guard !item.isEmpty else { return nil }
                if let eq = item.lastIndex(of: "=") {
                    let pv = item[..<eq].trimmingCharacters(" \t"), col = item[item.index(after: eq)...].trimmingCharacters(" \t")
                    guard !pv.isEmpty, !col.isEmpty else { return nil }
                    return (String(pv), String(col))
                }
                return ("$avp(\(item))", String(item))
            }
        }
    }

    /// A column of a subscriber row by its Kamailio name.
    static func column(_ row: SubscriberRow, _ name: String) -> String? {
        switch name.lowercased() {
        case "password": return row.password
        case "ha1": return row.ha1
        case "ha1b": return row.ha1b
        case "username": return row.username
        case "domain": return row.domain
        default: return row.extra[name]
        }
    }

    /// `load_credentials`: sets the configured pseudo-variables from the row.
    static func loadCredentials(_ ctx: RouteContext, _ s: Settings, _ row: SubscriberRow) {
        for (name, col) in s.credentials {
            guard let v = column(row, col), let pv = ctx.pvCache.spec(name) else { continue }
            _ = PVEngine.set(ctx, pv, .string(v))
        }
    }

    /// Kamailio `digest_authenticate_hdr`: pre-checks, subscriber lookup, response check.
    static func authenticate(_ ctx: RouteContext, _ runtime: ModuleRuntime, _ s: Settings, realm: String, table: String,
                             type: AuthHeaderType, method: String? = nil) -> Int {
        let store = runtime.auth
        guard let m = ctx.message, m.isRequest else { return AuthCode.error }
        let pre = AuthCore.preAuth(ctx, store, realm: realm, type: type)
        if let code = AuthCore.code(pre) { return code }
        guard case .check(let c) = pre else { return AuthCode.error }
        guard let subscribers = runtime.subscribers else {
            ctx.logger.error("auth_db: no subscriber table configured")
            return AuthCode.error
        }
        let realm = AuthCore.stripRealm(realm, store)
        guard let row = subscribers.subscriber(table: table, username: c.user, domain: c.domain ?? realm,
                                               useDomain: s.useDomain) else {
            return AuthCode.userUnknown
        }
        let stored = column(row, c.domain != nil && !s.calculateHA1 ? s.passwordColumn2 : s.passwordColumn) ?? ""
        let ha1 = s.calculateHA1 ? AuthCore.ha1(ctx, store, username: c.username, realm: realm, password: stored) : stored
        if s.forceGenerateAVPs { loadCredentials(ctx, s, row) }
        let ret = AuthCore.checkResponse(ctx, store, c, ha1: ha1, method: method ?? m.string(m.methodRange))
        if ret == AuthCode.ok { AuthCore.postAuth(ctx, store, c, ha1: ha1) }
        if ret == AuthCode.ok && !s.forceGenerateAVPs { loadCredentials(ctx, s, row) }
        return ret
    }

    /// Kamailio `auth_check`: www for REGISTER, proxy otherwise; flag 1 the identity check, flag 2
    /// skips the user part of it for INVITE, BYE, PRACK, UPDATE and MESSAGE.
    static func authCheck(_ ctx: RouteContext, _ runtime: ModuleRuntime, _ s: Settings, realm: String, table: String,
                          flags: Int) -> Int {
        guard let m = ctx.message, m.isRequest else { return AuthCode.error }
        if m.method == .ack || m.method == .cancel { return AuthCode.ok }
        guard !realm.isEmpty else {
            ctx.logger.error("auth_db: invalid realm parameter - empty value")
            return AuthCode.error
        }
        guard !table.isEmpty else {
            ctx.logger.error("auth_db: invalid table parameter - empty value")
            return AuthCode.error
        }
        let type = AuthHeaderType.of(m)
        let ret = authenticate(ctx, runtime, s, realm: realm, table: table, type: type)
        // PRACK is authenticated without credentials: no identity to check.
        guard ret == AuthCode.ok, flags & 1 != 0, m.method != .prack,
              let h = AuthWorkerState.of(ctx).authorized[type] else { return ret }
        var malformed = false
        guard let c = DigestCredentials.parse(m, h, malformed: &malformed) else { return AuthCode.error }
        return AuthCore.checkIdentity(ctx, authUser: c.user, useDomain: s.useDomain, skipForwarded: flags & 2 != 0)
    }

    static func exports(_ runtime: ModuleRuntime) -> [KemiExport] {
        let s = Settings(runtime.config)
        return [
            KemiExport("auth_db", "auth_check", [.str, .str, .int], returns: .int) { ctx, args in
                .int(authCheck(ctx, runtime, s, realm: args.str(0), table: args.str(1), flags: args.int(2)))
            },
            KemiExport("auth_db", "is_subscriber", [.str, .str, .int], returns: .int) { ctx, args in
                let flags = args.int(2)
                guard !args.str(0).isEmpty, let uri = SIPURI(args.str(0)), !args.str(1).isEmpty else { return .int(-1) }
                guard let subscribers = runtime.subscribers else { return .int(-1) }
                let useDomain = flags & 1 != 0
                guard let row = subscribers.subscriber(table: args.str(1), username: uri.user ?? "",
                                                       domain: useDomain ? uri.host : "", useDomain: useDomain) else {
                    return .int(-2)
                }
                if flags & 2 == 0 { loadCredentials(ctx, s, row) }
                return .int(1)
            },
            KemiExport("auth_db", "www_authenticate", [.str, .str], returns: .int, compat: "Kamailio 5.7+") { ctx, args in
                guard !args.str(0).isEmpty, !args.str(1).isEmpty else { return .int(AuthCode.error) }
                return .int(authenticate(ctx, runtime, s, realm: args.str(0), table: args.str(1), type: .www))
            },
            KemiExport("auth_db", "www_authenticate_method", [.str, .str, .str], returns: .int,
                       compat: "Kamailio 5.7+") { ctx, args in
                guard !args.str(0).isEmpty, !args.str(1).isEmpty, !args.str(2).isEmpty else { return .int(AuthCode.error) }
                return .int(authenticate(ctx, runtime, s, realm: args.str(0), table: args.str(1), type: .www,
                                         method: args.str(2)))
            },
        ]
    }
}

extension AuthDBModule: KSRModule {
    static let name = "auth_db"
    static let summary = "Digest authentication against the subscriber table of the embedded database."
    static let dbURL = ModuleParameter.optionalStr("auth_db", "db_url", "The database of the subscriber table (sqlite:///path/to/file.db).")
    static let calculateHA1 = ModuleParameter.flag("auth_db", "calculate_ha1", false, "The password column holds plaintext passwords.")
    static let passwordColumn = ModuleParameter.str("auth_db", "password_column", "ha1", "The column holding HA1 (or the password).")
    static let passwordColumn2 = ModuleParameter.str("auth_db", "password_column_2", "ha1b", "The column holding HA1 over user@domain.")
    static let useDomain = ModuleParameter.flag("auth_db", "use_domain", false, "Match the subscriber's domain too.")
    static let forceGenerateAVPs = ModuleParameter.flag("auth_db", "force_generate_avps", false, "Load load_credentials even when the check fails.")
    static let loadCredentials = ModuleParameter.str("auth_db", "load_credentials", "", "`$avp(x)=column;column2`: columns loaded after a successful check.")
    static let parameters = [dbURL.info, calculateHA1.info, passwordColumn.info, passwordColumn2.info, useDomain.info,
                             forceGenerateAVPs.info, loadCredentials.info]
}
