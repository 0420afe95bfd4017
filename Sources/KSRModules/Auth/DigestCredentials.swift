import SIPCore

/// Which challenge/credentials pair a check uses: `WWW-Authenticate` / `Authorization` (401, for
/// REGISTER) or `Proxy-Authenticate` / `Proxy-Authorization` (407).
enum AuthHeaderType {
    case www, proxy

    /// The credentials header kind.
    var credentials: SIPHeaderKind { self == .www ? .authorization : .proxyAuthorization }

    /// The type Kamailio uses for a request: www for REGISTER, proxy for the rest.
    static func of(_ m: SIPMessage) -> AuthHeaderType { m.method == .register ? .www : .proxy }
}

/// Digest credentials (RFC 2617 §3.2.2) from an Authorization or Proxy-Authorization header.
struct DigestCredentials {
    var header: SIPHeaderField
    /// The whole `username` value, and its user / domain parts (split at the first `@`).
    var username: String
    var user: String
    var domain: String?
    var realm: String?
    var nonce: String?
    var uri: String?
    var response: String?
    var algorithm: String?
    var cnonce: String?
    var opaque: String?
    var qop: String?
    var nc: String?

    /// Parses the digest credentials of a header; nil when it is not a Digest header (another
    /// scheme); throws-free: `malformed` is set when the header does not parse.
    static func parse(_ m: SIPMessage, _ field: SIPHeaderField, malformed: inout Bool) -> DigestCredentials? {
        guard let auth = m.authValue(field) else { malformed = true; return nil }
        guard m.equalsIgnoringCase(auth.scheme, "Digest") else { return nil }
        let username = m.authParam(auth, "username") ?? ""
        var c = DigestCredentials(header: field, username: username, user: username, domain: nil)
        if let at = username.firstIndex(of: "@") {
            c.user = String(username[..<at])
            c.domain = String(username[username.index(after: at)...])
        }
        c.realm = m.authParam(auth, "realm")
        c.nonce = m.authParam(auth, "nonce")
        c.uri = m.authParam(auth, "uri")
        c.response = m.authParam(auth, "response")
        c.algorithm = m.authParam(auth, "algorithm")
        c.cnonce = m.authParam(auth, "cnonce")
        c.opaque = m.authParam(auth, "opaque")
        c.qop = m.authParam(auth, "qop")
        c.nc = m.authParam(auth, "nc")
        return c
    }

    /// qop=auth or qop=auth-int.
    var hasQop: Bool {
        guard let q = qop?.lowercased() else { return false }
        return q == "auth" || q == "auth-int"
    }

    /// Kamailio's `check_dig_cred`: the parameters a response needs are all present.
    var isComplete: Bool {
        guard !username.isEmpty, realm != nil, nonce != nil, uri != nil, response != nil else { return false }
        if hasQop { return cnonce != nil && nc != nil }
        return true
    }

    /// The expected response for a HA1 (RFC 2617 §3.2.2.1, RFC 8760 with another hash).
    func expectedResponse(ha1: String, method: String, body: [UInt8], hash: DigestHash) -> String {
        var a2 = method + ":" + (uri ?? "")
        if qop?.lowercased() == "auth-int" { a2 += ":" + hash.hex(body) }
        let ha2 = hash.hex(a2)
        if hasQop, let qop {
            return hash.hex("\(ha1):\(nonce ?? ""):\(nc ?? ""):\(cnonce ?? ""):\(qop):\(ha2)")
        }
        return hash.hex("\(ha1):\(nonce ?? ""):\(ha2)")
    }

    /// HA1 = H(username:realm:password) (Kamailio uses the whole username, domain included).
    static func ha1(username: String, realm: String, password: String, hash: DigestHash) -> String {
        hash.hex("\(username):\(realm):\(password)")
    }
}
