import SIPCore
import StarlingKEMI
import Logging

/// `uac_auth()` (REFERENCE §2.8): in a failure route after a 401/407, answers the challenge of the
/// failed branch's reply. The request the failure route relays next carries the (Proxy-)Authorization,
/// its CSeq incremented (once per authentication of the transaction) and the failed branch's R-URI;
/// `t_relay()` then sends it on a new branch (a new Via branch), as Kamailio does.
enum UACAuth {
    /// One `credential` modparam ("username:realm:password") or the AVPs.
    struct Credential: Sendable, Equatable {
        var username: String
        var realm: String
        var password: String
    }

    struct Settings: Sendable {
        var credentials: [Credential]
        /// AVP names (without `$avp(...)`), nil when not configured.
        var usernameAVP: String?
        var passwordAVP: String?
        var realmAVP: String?

        init(_ c: ModuleConfiguration) {
            credentials = c[UACModule.credential].compactMap { spec in
                let p = spec.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false).map(String.init)
                return p.count == 3 ? Credential(username: p[0], realm: p[1], password: p[2]) : nil
            }
            usernameAVP = Self.avpName(c[UACModule.authUsernameAVP])
            passwordAVP = Self.avpName(c[UACModule.authPasswordAVP])
            realmAVP = Self.avpName(c[UACModule.authRealmAVP])
        }

        /// "$avp(auser)" → "auser" (also "$avp(s:auser)" and a bare name).
        static func avpName(_ s: String?) -> String? {
            guard var s, !s.isEmpty else { return nil }
            if s.hasPrefix("$avp(") && s.hasSuffix(")") { s = String(s.dropFirst(5).dropLast()) }
            if s.hasPrefix("s:") || s.hasPrefix("i:") { s = String(s.dropFirst(2)) }
            return s.isEmpty ? nil : s
        }
    }

    /// A parsed challenge.
    struct Challenge: Equatable {
        var realm: String
        var nonce: String
        var opaque: String?
        /// The qop options offered ("auth", "auth-int"), empty when none.
        var qop: [String]
        var algorithm: String?
        var stale: Bool
    }

    /// Hidden transaction AVP counting the authentications (each one increments the CSeq once more).
    static let counterAVP = "\u{1}uac_auth_cseq"

    static func exports(_ config: ModuleConfiguration) -> [KemiExport] {
        let s = Settings(config)
        return [
            KemiExport("uac", "uac_auth", returns: .int) { ctx, _ in
                .int(auth(ctx, s, ha1: false))
            },
            KemiExport("uac", "uac_auth_mode", [.int], returns: .int) { ctx, a in
                // Kamailio: flag 1 = the password is the HA1 (for this call, as the mode argument).
                .int(auth(ctx, s, ha1: a.int(0) & 1 != 0))
            },
        ]
    }

    /// Parses `Digest realm="..", nonce="..", ...`.
    static func parseChallenge(_ m: SIPMessage, _ field: SIPHeaderField) -> Challenge? {
        guard let v = m.authValue(field), m.string(v.scheme).lowercased() == "digest",
              let realm = m.authParam(v, "realm"), let nonce = m.authParam(v, "nonce") else { return nil }
        let qop = (m.authParam(v, "qop") ?? "").split(separator: ",").map { $0.trimmingCharacters(" \t").lowercased() }
            .filter { !$0.isEmpty }
        return Challenge(realm: realm, nonce: nonce, opaque: m.authParam(v, "opaque"), qop: qop,
                         algorithm: m.authParam(v, "algorithm"), stale: m.authParam(v, "stale")?.lowercased() == "true")
    }

    /// The credentials for a realm: the AVPs when configured and set, else the `credential` list.
    static func credential(_ ctx: RouteContext, _ s: Settings, realm: String) -> Credential? {
        func avp(_ name: String?) -> String? {
            guard let name, let v = ctx.avps[name]?.last else { return nil }
            switch v {
            case .string(let s): return s
            case .int(let i): return String(i)
            case .null: return nil
            }
        }
        if let user = avp(s.usernameAVP), let pass = avp(s.passwordAVP) {
            let r = avp(s.realmAVP) ?? realm
            if r == realm { return Credential(username: user, realm: r, password: pass) }
        }
        return s.credentials.first { $0.realm == realm }
    }

    /// The Authorization header value for a challenge (RFC 2617 / RFC 8760): qop=auth when offered
    /// (auth-int when only that is), else the RFC 2069 form.
    static func authorization(_ c: Challenge, _ cred: Credential, method: String, uri: String, body: [UInt8],
                              passwordIsHA1: Bool, cnonce: String) -> String? {
        var algName = c.algorithm ?? "MD5"
        guard let hash = DigestHash(algorithmName: algName) else { return nil }
        let sess = algName.uppercased().hasSuffix("-SESS")
        if c.algorithm == nil { algName = "MD5" }
        var ha1 = passwordIsHA1 ? cred.password : hash.hex("\(cred.username):\(c.realm):\(cred.password)")
        if sess { ha1 = hash.hex("\(ha1):\(c.nonce):\(cnonce)") }
        let qop: String? = c.qop.contains("auth") ? "auth" : (c.qop.contains("auth-int") ? "auth-int" : nil)
        let ha2 = qop == "auth-int" ? hash.hex("\(method):\(uri):\(hash.hex(body))") : hash.hex("\(method):\(uri)")
        let nc = "00000001"
        let response: String
        if let qop {
            response = hash.hex("\(ha1):\(c.nonce):\(nc):\(cnonce):\(qop):\(ha2)")
        } else {
            response = hash.hex("\(ha1):\(c.nonce):\(ha2)")
        }
        var out = "Digest username=\"\(cred.username)\", realm=\"\(c.realm)\", nonce=\"\(c.nonce)\", uri=\"\(uri)\""
        if let qop { out += ", qop=\(qop), nc=\(nc), cnonce=\"\(cnonce)\"" }
        if let o = c.opaque { out += ", opaque=\"\(o)\"" }
        out += ", response=\"\(response)\", algorithm=\(algName)"
        return out
    }

    /// 1 when the request to relay next carries credentials, -1 otherwise (with a log line).
    static func auth(_ ctx: RouteContext, _ s: Settings, ha1: Bool) -> Int {
        guard ctx.routeType == .failure, let store = ctx.transactions as? TMStore, let cell = TMRelay.current(ctx),
              let request = ctx.message, request.isRequest else {
            ctx.logger.error("uac_auth: only in a failure route of a transaction")
            return -1
        }
        let b = store.workerState(ctx).branchIndex
        guard let (reply, branchURI) = cell.locked({ () -> (SIPMessage, [UInt8])? in
            guard b >= 0 && b < cell.branches.count, let r = cell.branches[b].replyMessage?.value else { return nil }
            return (r, cell.branches[b].uri)
        }) else {
            ctx.logger.error("uac_auth: no reply to authenticate (the branch timed out?)")
            return -1
        }
        let code = reply.statusCode
        guard code == 401 || code == 407 else {
            ctx.logger.error("uac_auth: the reply is \(code), not 401/407")
            return -1
        }
        let fields = reply.headers(named: code == 401 ? "WWW-Authenticate" : "Proxy-Authenticate")
        guard let field = fields.first(where: { parseChallenge(reply, $0) != nil }),
              let challenge = parseChallenge(reply, field) else {
            ctx.logger.error("uac_auth: the \(code) has no usable Digest challenge")
            return -1
        }
        guard DigestHash(algorithmName: challenge.algorithm ?? "MD5") != nil else {
            ctx.logger.error("uac_auth: unsupported algorithm \(challenge.algorithm ?? "")")
            return -1
        }
        guard let cred = credential(ctx, s, realm: challenge.realm) else {
            ctx.logger.error("uac_auth: no credentials for realm \(challenge.realm)")
            return -1
        }
        let uri = branchURI.isEmpty ? (ctx.currentRequestURI?.description ?? "") : String(decoding: branchURI, as: UTF8.self)
        let method = request.string(request.methodRange)
        let body = request.bytes(request.bodyRange)
        let cnonce = DigestHash.md5.hex(DigestHash.randomBytes(16)).prefix(16)
        guard let value = authorization(challenge, cred, method: method, uri: uri, body: body, passwordIsHA1: ha1,
                                        cnonce: String(cnonce)) else { return -1 }
        // CSeq: the received number plus one per authentication of this transaction.
        guard let cseq = request.cseq, let cseqField = request.firstHeader(.cseq) else { return -1 }
        var count = 1
        if case .int(let n)? = ctx.avps[counterAVP]?.last { count = n + 1 }
        ctx.avps[counterAVP] = [.int(count)]
        // Build the request to relay on a copy: the failure route's later edits go on it too, and the
        // transaction's own request (local replies to the caller) keeps its CSeq.
        let headerName = code == 401 ? "Authorization" : "Proxy-Authorization"
        let copy: SIPMessage
        do {
            let saved = request.edits
            defer { request.edits = saved }
            _ = cseqField
            request.replaceBytes(cseq.numberRange, with: Array(String(UInt64(cseq.number) + UInt64(count)).utf8))
            request.addHeaderLine(Array("\(headerName): \(value)\r\n".utf8), at: .last)
            if !branchURI.isEmpty { request.setRequestURI(branchURI) }
            copy = try request.applyingEdits()
        } catch {
            ctx.logger.error("uac_auth: cannot build the authenticated request: \(error)")
            return -1
        }
        ctx.message = copy
        return 1
    }
}
