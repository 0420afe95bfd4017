import SIPCore
import SIPTransport
import StarlingKEMI
import Logging

/// Kamailio's `auth_cfg_result_t` (auth/api.h): what the check functions return to the script.
enum AuthCode {
    static let ok = 1
    static let error = -1
    static let invalidPassword = -2
    static let userUnknown = -3
    static let staleNonce = -4
    static let noCredentials = -5
    static let nonceReused = -6
    static let userMismatch = -8
}

/// What a worker remembers about the credentials of the message being routed (Kamailio marks the
/// parsed header "authorized"), and its `auth_algorithm()` choice, which lasts for the process.
final class AuthWorkerState {
    weak var message: SIPMessage?
    var authorized: [AuthHeaderType: SIPHeaderField] = [:]
    /// The credentials checked last carried a stale nonce.
    var stale = false
    /// `auth_algorithm()`: overrides the `algorithm` parameter in this worker (nil: not called).
    var algorithm: DigestHash?? = nil

    /// The state of `ctx`'s message (reset when the message changed).
    static func of(_ ctx: RouteContext) -> AuthWorkerState {
        let s = ctx.worker.local(AuthWorkerState.self) { AuthWorkerState() }
        if s.message !== ctx.message {
            s.message = ctx.message
            if !s.authorized.isEmpty { s.authorized.removeAll() }
            s.stale = false
        }
        return s
    }
}

/// The digest machinery both `auth` and `auth_db` use (Kamailio auth's api.c, challenge.c, nonce.c).
enum AuthCore {
    /// Kamailio's `pre_auth` result.
    enum PreAuth {
        /// ACK, CANCEL and PRACK are never challenged.
        case authenticated
        case noCredentials
        /// Malformed credentials header, missing parameters, or a nonce that is not ours.
        case error
        case stale
        case reused
        /// Go on: look up the password and check the response.
        case check(DigestCredentials)
    }

    /// The algorithm of this worker: `auth_algorithm()` if called, else the `algorithm` parameter.
    static func algorithm(_ ctx: RouteContext, _ store: AuthNonces) -> DigestHash? {
        let s = ctx.worker.local(AuthWorkerState.self) { AuthWorkerState() }
        if let chosen = s.algorithm { return chosen }
        return store.settings.algorithm
    }

    static func stripRealm(_ realm: String, _ store: AuthNonces) -> String {
        let p = store.settings.realmPrefix
        guard !p.isEmpty, realm.hasPrefix(p) else { return realm }
        return String(realm.dropFirst(p.count))
    }

    /// The credentials of `type` for `realm` (Kamailio `find_credentials`): nil when none; `malformed`
    /// when a header of that type does not parse.
    static func findCredentials(_ m: SIPMessage, realm: String, type: AuthHeaderType,
                                malformed: inout Bool) -> DigestCredentials? {
        var found: DigestCredentials?
        m.forEachHeader(type.credentials) { field in
            guard found == nil, !malformed else { return }
            guard let c = DigestCredentials.parse(m, field, malformed: &malformed) else { return }
            if let r = c.realm, r.lowercased() == realm.lowercased() { found = c }
        }
        return malformed ? nil : found
    }

    /// The message parts a nonce is bound to (`auth_checks_*`), nil when no check is configured.
    static func boundParts(_ ctx: RouteContext, _ store: AuthNonces) -> [UInt8]? {
        guard let m = ctx.message, m.isRequest else { return nil }
        let s = store.settings
        let cfg = m.method == .register ? s.checksRegister : (m.toTag != nil ? s.checksInDialog : s.checksNoDialog)
        guard cfg != 0 else { return nil }
        var out: [UInt8] = [UInt8(truncatingIfNeeded: cfg)]
        func add(_ b: [UInt8]) { out.append(0); out.append(contentsOf: b) }
        if cfg & 1 != 0 { add(m.bytes(m.requestURIRange)) }
        if cfg & 2 != 0 { add(m.callID.map { m.bytes($0) } ?? []) }
        if cfg & 4 != 0 { add(m.fromTag.map { m.bytes($0) } ?? []) }
        if cfg & 8 != 0 { add(Array(ctx.received.source.ip.utf8)) }
        return out
    }

    /// Kamailio `pre_auth`: finds the credentials for the realm, marks them authorized, checks that
    /// they are complete and that the nonce is ours, fresh and (with nonce_count / one_time_nonce)
    /// not replayed. `update` records the nonce use.
    static func preAuth(_ ctx: RouteContext, _ store: AuthNonces, realm: String, type: AuthHeaderType,
                        update: Bool = true) -> PreAuth {
        guard let m = ctx.message, m.isRequest else { return .error }
        if m.method == .ack || m.method == .cancel || m.method == .prack { return .authenticated }
        let realm = stripRealm(realm, store)
        var malformed = false
        guard let c = findCredentials(m, realm: realm, type: type, malformed: &malformed) else {
            if malformed { ctx.logger.error("auth: error while parsing credentials") }
            return malformed ? .error : .noCredentials
        }
        let state = AuthWorkerState.of(ctx)
        state.authorized[type] = c.header
        guard c.isComplete else {
            ctx.logger.error("auth: credentials are not filled properly")
            return .error
        }
        switch store.check(c.nonce ?? "", bound: boundParts(ctx, store), nc: c.nc, update: update) {
        case .ok: return .check(c)
        case .stale:
            state.stale = true
            return .stale
        case .reused: return .reused
        case .invalid:
            ctx.logger.debug("auth: invalid nonce value received")
            return .error
        }
    }

    /// The code for a `pre_auth` outcome that ends the check (nil: go on).
    static func code(_ p: PreAuth) -> Int? {
        switch p {
        case .authenticated: return AuthCode.ok
        case .noCredentials: return AuthCode.noCredentials
        case .error: return AuthCode.error
        case .stale: return AuthCode.staleNonce
        case .reused: return AuthCode.nonceReused
        case .check: return nil
        }
    }

    /// Kamailio `check_response`: 1 when the response matches, -2 when it does not, -1 when it has
    /// the wrong length for the algorithm.
    static func checkResponse(_ ctx: RouteContext, _ store: AuthNonces, _ c: DigestCredentials, ha1: String,
                              method: String) -> Int {
        let hash = algorithm(ctx, store) ?? .md5
        guard let m = ctx.message, let response = c.response else { return AuthCode.error }
        let body = c.qop?.lowercased() == "auth-int" ? m.bytes(m.bodyRange) : []
        let expected = c.expectedResponse(ha1: ha1, method: method, body: body, hash: hash)
        guard response.utf8.count == expected.utf8.count else {
            ctx.logger.debug("auth: response length \(response.utf8.count) != \(expected.utf8.count)")
            return AuthCode.error
        }
        return response == expected ? AuthCode.ok : AuthCode.invalidPassword
    }

    /// Kamailio `post_auth` after a matching response: with `add_authinfo_hdr`, the reply gets
    /// `Authentication-Info` (rspauth over an empty method; nextnonce a fresh one-time nonce or the
    /// current nonce).
    static func postAuth(_ ctx: RouteContext, _ store: AuthNonces, _ c: DigestCredentials, ha1: String) {
        guard store.settings.addAuthInfo else { return }
        let hash = algorithm(ctx, store) ?? .md5
        let rspauth = c.expectedResponse(ha1: ha1, method: "", body: [], hash: hash)
        let next = store.settings.oneTimeNonce ? store.newNonce(bound: boundParts(ctx, store)) : (c.nonce ?? "")
        let h = "Authentication-Info: nextnonce=\"\(next)\", qop=\(c.qop ?? ""), rspauth=\"\(rspauth)\", "
            + "cnonce=\"\(c.cnonce ?? "")\", nc=\(c.nc ?? "")\r\n"
        ctx.replyHeaders.append(contentsOf: Array(h.utf8))
    }

    /// HA1 of a plaintext password with this worker's algorithm.
    static func ha1(_ ctx: RouteContext, _ store: AuthNonces, username: String, realm: String, password: String) -> String {
        DigestCredentials.ha1(username: username, realm: realm, password: password, hash: algorithm(ctx, store) ?? .md5)
    }

    /// The user part of the username of the current message's authorized credentials (siputils
    /// `is_user`), nil when no check marked any.
    static func authorizedUser(_ ctx: RouteContext) -> String? {
        guard let m = ctx.message, m.isRequest else { return nil }
        let state = AuthWorkerState.of(ctx)
        guard let h = state.authorized[.www] ?? state.authorized[.proxy] else { return nil }
        var malformed = false
        return DigestCredentials.parse(m, h, malformed: &malformed)?.user
    }

    // MARK: Challenges

    /// Kamailio `get_challenge_hf`: the whole `WWW-Authenticate` / `Proxy-Authenticate` line (with
    /// CRLF). The realm is used as given (Kamailio 5.6 sends `realm=""` for an empty one);
    /// `useMessage` false builds it as for no message (no bound message parts).
    static func challengeHeader(_ ctx: RouteContext, _ store: AuthNonces, realm: String, qop: String?, stale: Bool,
                                type: AuthHeaderType, useMessage: Bool = true) -> String {
        let realm = stripRealm(realm, store)
        let name = type == .www ? store.settings.wwwHeader : store.settings.proxyHeader
        let nonce = store.newNonce(bound: useMessage ? boundParts(ctx, store) : nil)
        var h = "\(name): Digest realm=\"\(realm)\", nonce=\"\(nonce)\""
        if let qop, !qop.isEmpty { h += ", qop=\"\(qop)\"" }
        if stale { h += ", stale=true" }
        if let a = algorithm(ctx, store) { h += ", algorithm=\(a.rawValue)" }
        return h + "\r\n"
    }

    /// Sends a reply carrying `header` (Kamailio `auth_send_reply`): statefully when the request has a
    /// transaction, unless `force_stateless_reply`. Returns 1 or -1.
    static func sendReply(_ ctx: RouteContext, _ store: AuthNonces, _ code: Int, _ reason: String, header: String?) -> Int {
        let saved = ctx.replyHeaders
        if let header { ctx.replyHeaders.append(contentsOf: Array(header.utf8)) }
        defer { ctx.replyHeaders = saved }
        if store.settings.forceStatelessReply {
            guard let m = ctx.message, m.isRequest, m.method != .ack else { return -1 }
            return MessageTools.sendReply(ctx, status: code, reason: reason)
        }
        if case .int(let r) = SLModule.reply(ctx, code, reason) { return r }
        return -1
    }

    /// Kamailio `auth_challenge_helper`: builds the challenge (flags 1 qop=auth, 2 qop=auth-int,
    /// 16 stale=true) and sends 401 / 407: 1 sent, -3 the reply could not be sent. (Kamailio's -2,
    /// a challenge it could not build, followed by a 500 unless flag 4, cannot happen here.)
    static func challenge(_ ctx: RouteContext, _ store: AuthNonces, realm: String, flags: Int, type: AuthHeaderType) -> Int {
        // Kamailio builds the challenge for any message; only requests can be answered.
        guard ctx.message?.isRequest == true else { return -3 }
        let qop: String? = flags & 2 != 0 ? "auth-int" : (flags & 1 != 0 ? "auth" : nil)
        let header = challengeHeader(ctx, store, realm: realm, qop: qop, stale: flags & 16 != 0, type: type)
        let sent = type == .www
            ? sendReply(ctx, store, 401, "Unauthorized", header: header)
            : sendReply(ctx, store, 407, "Proxy Authentication Required", header: header)
        return sent < 0 ? -3 : 1
    }

    /// Kamailio `pv_authenticate`'s failure path: with flags 2/4/8 the challenge (no qop / qop=auth /
    /// qop=auth-int) is added to the `challenge_attr` AVP for the script to send. Returns `code`, or
    /// -1 if the challenge could not be built.
    static func storeChallenge(_ ctx: RouteContext, _ store: AuthNonces, code: Int, flags: Int, realm: String,
                               type: AuthHeaderType) -> Int {
        guard code < 0, flags & 14 != 0 else { return code }
        let qop: String? = flags & 8 != 0 ? "auth-int" : (flags & 4 != 0 ? "auth" : nil)
        let stale = AuthWorkerState.of(ctx).stale
        let h = challengeHeader(ctx, store, realm: realm, qop: qop, stale: stale, type: type)
        ctx.avps[store.settings.challengeAVP, default: []].append(.string(h))
        return code
    }

    /// The identity check of `pv_auth_check` / `auth_db.auth_check` (flag 1): the auth user must be the
    /// To user (REGISTER, PUBLISH) or the From user (others); for REGISTER/PUBLISH From user = To user
    /// (and domains with `use_domain`), for PUBLISH also the Request-URI user. 1 or -8 (-1 when a
    /// URI does not parse). `skipForwarded` (auth_db flag 2) skips the user check for INVITE, BYE,
    /// PRACK, UPDATE and MESSAGE.
    static func checkIdentity(_ ctx: RouteContext, authUser: String, useDomain: Bool, skipForwarded: Bool = false) -> Int {
        guard let m = ctx.message, let from = m.from else { return AuthCode.error }
        let fromUser = from.uriParts.user.map { m.string($0) } ?? ""
        let fromHost = m.string(from.uriParts.host)
        let registerLike = m.method == .register || m.method == .publish
        var toUser = "", toHost = ""
        if registerLike {
            guard let to = m.to else { return AuthCode.error }
            toUser = to.uriParts.user.map { m.string($0) } ?? ""
            toHost = m.string(to.uriParts.host)
        }
        let skip = skipForwarded && [.invite, .bye, .prack, .update, .message].contains(m.method)
        if !skip && authUser != (registerLike ? toUser : fromUser) { return AuthCode.userMismatch }
        if registerLike {
            if fromUser != toUser { return AuthCode.userMismatch }
            if useDomain && fromHost != toHost { return AuthCode.userMismatch }
            if m.method == .publish {
                guard let r = m.requestURI else { return AuthCode.error }
                if fromUser != (r.user.map { m.string($0) } ?? "") { return AuthCode.userMismatch }
                if useDomain && fromHost != m.string(r.host) { return AuthCode.userMismatch }
            }
        }
        return AuthCode.ok
    }
}
