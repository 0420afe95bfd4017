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
        // One pass over the parameters; the first occurrence of each wins.
        var username: String?
        var c = DigestCredentials(header: field, username: "", user: "", domain: nil)
        m.forEachAuthParam(auth) { n, v in
            func take(_ slot: inout String?) { if slot == nil { slot = m.unquote(v) } }
            switch n.count {
            case 2: if m.equalsIgnoringCase(n, "nc") { take(&c.nc) }
            case 3:
                if m.equalsIgnoringCase(n, "uri") { take(&c.uri) }
                else if m.equalsIgnoringCase(n, "qop") { take(&c.qop) }
            case 5:
                if m.equalsIgnoringCase(n, "realm") { take(&c.realm) }
                else if m.equalsIgnoringCase(n, "nonce") { take(&c.nonce) }
            case 6:
                if m.equalsIgnoringCase(n, "cnonce") { take(&c.cnonce) }
                else if m.equalsIgnoringCase(n, "opaque") { take(&c.opaque) }
            case 8:
                if m.equalsIgnoringCase(n, "username") { take(&username) }
                else if m.equalsIgnoringCase(n, "response") { take(&c.response) }
            case 9: if m.equalsIgnoringCase(n, "algorithm") { take(&c.algorithm) }
            default: break
            }
        }
        let name = username ?? ""
        c.username = name
        c.user = name
        if let at = name.firstIndex(of: "@") {
            c.user = String(name[..<at])
            c.domain = String(name[name.index(after: at)...])
        }
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
