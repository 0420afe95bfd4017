import Testing
import SIPCore
import SIPTransport
import StarlingKEMI
import StarlingTesting
import KSRModules

/// A test UA's side of digest authentication: requests, the challenge, the credentials.
private enum DigestUA {
    static func register(user: String = "alice", fromUser: String? = nil, domain: String = "example.com",
                         cseq: Int = 1, callID: String = "reg-1", auth: String? = nil) -> String {
        var s = "REGISTER sip:\(domain) SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKreg\(cseq)\r\n"
        s += "Max-Forwards: 70\r\nFrom: <sip:\(fromUser ?? user)@\(domain)>;tag=rf\(cseq)\r\nTo: <sip:\(user)@\(domain)>\r\n"
        s += "Call-ID: \(callID)\r\nCSeq: \(cseq) REGISTER\r\nContact: <sip:\(user)@192.0.2.10:5060>\r\n"
        if let auth { s += "Authorization: \(auth)\r\n" }
        return s + "Content-Length: 0\r\n\r\n"
    }

    static func invite(fromUser: String = "alice", cseq: Int = 1, auth: String? = nil, method: String = "INVITE") -> String {
        var s = "\(method) sip:bob@192.0.2.20:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKinv\(cseq)\r\n"
        s += "Max-Forwards: 70\r\nFrom: <sip:\(fromUser)@example.com>;tag=if\(cseq)\r\nTo: <sip:bob@example.com>\r\n"
        s += "Call-ID: inv-1\r\nCSeq: \(cseq) \(method)\r\nContact: <sip:\(fromUser)@192.0.2.10:5060>\r\n"
        if let auth { s += "Proxy-Authorization: \(auth)\r\n" }
        return s + "Content-Length: 0\r\n\r\n"
    }

    struct Challenge {
        var realm: String
        var nonce: String
        var qop: String?
        var algorithm: String?
        var stale: Bool
        var line: String
    }

    /// The challenge of a sent 401/407.
    static func challenge(_ sent: SentMessage?, header: String = "WWW-Authenticate") -> Challenge? {
        guard let m = sent?.message, let field = m.headers(named: header).first, let auth = m.authValue(field) else { return nil }
        return Challenge(realm: m.authParam(auth, "realm") ?? "", nonce: m.authParam(auth, "nonce") ?? "",
                         qop: m.authParam(auth, "qop"), algorithm: m.authParam(auth, "algorithm"),
                         stale: m.authParam(auth, "stale") == "true", line: m.string(field.line))
    }

    /// Digest credentials for a challenge (RFC 2617 / RFC 8760), computed independently of the module.
    static func credentials(_ c: Challenge, user: String = "alice", password: String = "secret", method: String = "REGISTER",
                            uri: String = "sip:example.com", hash: DigestHash = .md5, qop: Bool = false, nc: Int = 1,
                            cnonce: String = "0a4f113b", nonce: String? = nil, authIntBody: String? = nil) -> String {
        let nonce = nonce ?? c.nonce
        let ha1 = hash.hex("\(user):\(c.realm):\(password)")
        let ha2 = authIntBody.map { hash.hex("\(method):\(uri):\(hash.hex($0))") } ?? hash.hex("\(method):\(uri)")
        let qopValue = authIntBody == nil ? "auth" : "auth-int"
        var s = "Digest username=\"\(user)\", realm=\"\(c.realm)\", nonce=\"\(nonce)\", uri=\"\(uri)\""
        if qop {
            let ncs = String(repeating: "0", count: 8 - String(nc, radix: 16).count) + String(nc, radix: 16)
            let r = hash.hex("\(ha1):\(nonce):\(ncs):\(cnonce):\(qopValue):\(ha2)")
            s += ", response=\"\(r)\", algorithm=\(hash.rawValue), cnonce=\"\(cnonce)\", qop=\(qopValue), nc=\(ncs)"
        } else {
            s += ", response=\"\(hash.hex("\(ha1):\(nonce):\(ha2)"))\", algorithm=\(hash.rawValue)"
        }
        return s
    }
}

/// The registrar part of Kamailio's example script: auth_check, challenge on failure, consume.
private let registrarScript = """
    function ksr_request_route()
      local rc = KSR.auth_db.auth_check("example.com", "subscriber", 1)
      KSR.pv.seti("$var(rc)", rc)
      if rc < 0 then
        local flags = 0
        if rc == -4 then flags = 16 end
        KSR.pv.seti("$var(ch)", KSR.auth.auth_challenge("example.com", flags + (tonumber(KSR.kx.get_def("QOP")) or 0)))
        KSR.x.exit()
      end
      KSR.pv.seti("$var(cc)", KSR.auth.consume_credentials())
      KSR.sl.sl_send_reply(200, "OK")
    end
    """

private func harness(_ script: String = registrarScript, auth: [String: String] = [:], authDB: [String: String] = [:],
                     qopFlag: Bool = false, subscribers: MemorySubscribers? = nil) throws -> ScriptHarness {
    var params: [String: [String: [String]]] = [:]
    params["auth"] = auth.mapValues { [$0] }
    params["auth_db"] = (["calculate_ha1": "yes", "password_column": "password"].merging(authDB) { $1 }).mapValues { [$0] }
    let subs = subscribers ?? MemorySubscribers([
        SubscriberRow(username: "alice", domain: "example.com", password: "secret",
                      extra: ["rpid": "+15551234", "email_address": "alice@example.com"]),
        SubscriberRow(username: "bob", domain: "example.com", password: "bobpw"),
    ])
    return try ScriptHarness(script: script, config: ModuleConfiguration(params: params),
                             services: TestServices(defines: qopFlag ? ["QOP": "1"] : [:]), subscribers: subs)
}

private func rc(_ h: ScriptHarness, _ name: String = "rc") -> KemiValue? { h.context.worker.vars[name] }

private func status(_ s: SentMessage?) -> Int { s?.message?.statusCode ?? 0 }

@Suite struct AuthTests {
    @Test func registerWithoutCredentialsIsChallengedThenMD5Passes() throws {
        let h = try harness()
        try h.route(DigestUA.register())
        #expect(rc(h) == .int(-5))
        #expect(rc(h, "ch") == .int(1))
        #expect(h.sender.sent.count == 1)
        #expect(h.sender.sent.first?.text.hasPrefix("SIP/2.0 401 Unauthorized\r\n") == true)
        let ch = try #require(DigestUA.challenge(h.sender.sent.last))
        #expect(ch.realm == "example.com")
        #expect(ch.nonce.count >= 32)
        #expect(ch.qop == nil && ch.algorithm == nil && !ch.stale)
        #expect(ch.line.hasPrefix("WWW-Authenticate: Digest realm=\"example.com\", nonce=\""))

        h.sender.clear()
        try h.route(DigestUA.register(cseq: 2, auth: DigestUA.credentials(ch)))
        #expect(rc(h) == .int(1))
        #expect(rc(h, "cc") == .int(1))
        #expect(status(h.sender.sent.last) == 200)
    }

    @Test func authenticationInfoHeader() throws {
        let h = try harness(auth: ["add_authinfo_hdr": "1"], qopFlag: true)
        try h.route(DigestUA.register())
        let ch = try #require(DigestUA.challenge(h.sender.sent.last))
        try h.route(DigestUA.register(cseq: 2, auth: DigestUA.credentials(ch, qop: true)))
        #expect(rc(h) == .int(1))
        let md5 = DigestHash.md5
        let ha1 = md5.hex("alice:example.com:secret")
        let rspauth = md5.hex("\(ha1):\(ch.nonce):00000001:0a4f113b:auth:\(md5.hex(":sip:example.com"))")
        let ok = try #require(h.sender.sent.last)
        #expect(status(ok) == 200)
        #expect(ok.text.contains("\r\nAuthentication-Info: nextnonce=\"\(ch.nonce)\", qop=auth, rspauth=\"\(rspauth)\", cnonce=\"0a4f113b\", nc=00000001\r\n"),
                "\(ok.text)")
    }

    @Test func extraChecksBindTheNonceToTheCallID() throws {
        let h = try harness(auth: ["auth_checks_register": "2", "secret": "0123456789abcdef0123456789abcdef"])
        try h.route(DigestUA.register(callID: "call-A"))
        let ch = try #require(DigestUA.challenge(h.sender.sent.last))
        try h.route(DigestUA.register(cseq: 2, callID: "call-A", auth: DigestUA.credentials(ch)))
        #expect(rc(h) == .int(1))
        // Another Call-ID: the nonce does not belong to this request any more, re-challenge as stale.
        try h.route(DigestUA.register(cseq: 3, callID: "call-B", auth: DigestUA.credentials(ch)))
        #expect(rc(h) == .int(-4))
        #expect(DigestUA.challenge(h.sender.sent.last)?.stale == true)
    }

    @Test func secretIsSharedAndFixedByTheParameter() throws {
        // Two runtimes with the same configured secret accept each other's nonces (as two Kamailio
        // servers sharing `secret`); random secrets do not.
        let a = try harness(auth: ["secret": "shared-secret"]), b = try harness(auth: ["secret": "shared-secret"])
        try a.route(DigestUA.register())
        let ch = try #require(DigestUA.challenge(a.sender.sent.last))
        try b.route(DigestUA.register(cseq: 2, auth: DigestUA.credentials(ch)))
        #expect(rc(b) == .int(1))
        let c = try harness()
        try c.route(DigestUA.register(cseq: 2, auth: DigestUA.credentials(ch)))
        #expect(rc(c) == .int(-1))
    }

    @Test func authAlgorithmSwitchesTheWorker() throws {
        let script = "function ksr_request_route()\n  KSR.auth.auth_algorithm(\"SHA-256\")\n" + registrarScript
            .replacingOccurrences("function ksr_request_route()\n", with: "")
        let h = try harness(script)
        try h.route(DigestUA.register())
        let ch = try #require(DigestUA.challenge(h.sender.sent.last))
        #expect(ch.algorithm == "SHA-256")
        try h.route(DigestUA.register(cseq: 2, auth: DigestUA.credentials(ch, hash: .sha256)))
        #expect(rc(h) == .int(1))
    }

    @Test func qopAuthIntCoversTheBody() throws {
        let script = """
            function ksr_request_route()
              local rc = KSR.auth.pv_proxy_authenticate("example.com", "secret", 0)
              KSR.pv.seti("$var(rc)", rc)
              if rc < 0 then KSR.auth.proxy_challenge("example.com", 2) end
            end
            """
        let h = try ScriptHarness(script: script)
        let body = "v=0\r\n"
        func invite(_ cseq: Int, _ auth: String?, body: String) -> String {
            DigestUA.invite(cseq: cseq, auth: auth).replacingOccurrences("Content-Length: 0\r\n\r\n",
                with: "Content-Type: application/sdp\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)")
        }
        try h.route(invite(1, nil, body: body))
        let ch = try #require(DigestUA.challenge(h.sender.sent.last, header: "Proxy-Authenticate"))
        #expect(ch.qop == "auth-int")
        let creds = DigestUA.credentials(ch, method: "INVITE", uri: "sip:bob@192.0.2.20:5060", qop: true, authIntBody: body)
        try h.route(invite(2, creds, body: body))
        #expect(rc(h) == .int(1))
        // The same credentials over another body do not match.
        try h.route(invite(3, creds, body: "v=1\r\n"))
        #expect(rc(h) == .int(-2))
    }

    @Test func inviteIsChallengedWith407() throws {
        let h = try harness()
        try h.route(DigestUA.invite())
        #expect(rc(h) == .int(-5))
        #expect(h.sender.sent.first?.text.hasPrefix("SIP/2.0 407 Proxy Authentication Required\r\n") == true)
        #expect(DigestUA.challenge(h.sender.sent.last, header: "Proxy-Authenticate") != nil)
        #expect(DigestUA.challenge(h.sender.sent.last) == nil)
    }

    @Test func sha256WithQopAuth() throws {
        let h = try harness(auth: ["algorithm": "SHA-256"], qopFlag: true)
        try h.route(DigestUA.register())
        let ch = try #require(DigestUA.challenge(h.sender.sent.last))
        #expect(ch.qop == "auth" && ch.algorithm == "SHA-256")
        #expect(ch.line.hasSuffix(", qop=\"auth\", algorithm=SHA-256\r\n"))
        try h.route(DigestUA.register(cseq: 2, auth: DigestUA.credentials(ch, hash: .sha256, qop: true)))
        #expect(rc(h) == .int(1))
        #expect(status(h.sender.sent.last) == 200)
        // An MD5 response to a SHA-256 server has the wrong length: a generic error.
        try h.route(DigestUA.register(cseq: 3, auth: DigestUA.credentials(ch, hash: .md5, qop: true)))
        #expect(rc(h) == .int(-1))
    }

    @Test func md5WithQopAndSHA512_256() throws {
        let h = try harness(qopFlag: true)
        try h.route(DigestUA.register())
        let ch = try #require(DigestUA.challenge(h.sender.sent.last))
        try h.route(DigestUA.register(cseq: 2, auth: DigestUA.credentials(ch, qop: true)))
        #expect(rc(h) == .int(1))

        let h2 = try harness(auth: ["algorithm": "SHA-512-256"])
        try h2.route(DigestUA.register())
        let ch2 = try #require(DigestUA.challenge(h2.sender.sent.last))
        #expect(ch2.algorithm == "SHA-512-256")
        try h2.route(DigestUA.register(cseq: 2, auth: DigestUA.credentials(ch2, hash: .sha512_256)))
        #expect(rc(h2) == .int(1))
    }

    @Test func wrongPasswordUnknownUserAndTamperedNonce() throws {
        let h = try harness()
        try h.route(DigestUA.register())
        let ch = try #require(DigestUA.challenge(h.sender.sent.last))
        try h.route(DigestUA.register(cseq: 2, auth: DigestUA.credentials(ch, password: "wrong")))
        #expect(rc(h) == .int(-2))
        #expect(status(h.sender.sent.last) == 401)

        try h.route(DigestUA.register(user: "carol", cseq: 3, auth: DigestUA.credentials(ch, user: "carol")))
        #expect(rc(h) == .int(-3))

        // A nonce that is not ours (flipped character) is a generic error, not a stale one.
        var bad = Array(ch.nonce)
        bad[20] = bad[20] == "A" ? "B" : "A"
        try h.route(DigestUA.register(cseq: 4, auth: DigestUA.credentials(ch, nonce: String(bad))))
        #expect(rc(h) == .int(-1))
        // Credentials for another realm are no credentials.
        var other = ch
        other.realm = "other.example.net"
        try h.route(DigestUA.register(cseq: 5, auth: DigestUA.credentials(other)))
        #expect(rc(h) == .int(-5))
    }

    @Test func expiredNonceIsStale() throws {
        let h = try harness()
        try h.route(DigestUA.register())
        let ch = try #require(DigestUA.challenge(h.sender.sent.last))
        h.advance(by: .seconds(299))
        try h.route(DigestUA.register(cseq: 2, auth: DigestUA.credentials(ch)))
        #expect(rc(h) == .int(1))
        h.advance(by: .seconds(2))
        h.sender.clear()
        try h.route(DigestUA.register(cseq: 3, auth: DigestUA.credentials(ch)))
        #expect(rc(h) == .int(-4))
        let again = try #require(DigestUA.challenge(h.sender.sent.last))
        #expect(again.stale)
        #expect(again.nonce != ch.nonce)
        try h.route(DigestUA.register(cseq: 4, auth: DigestUA.credentials(again)))
        #expect(rc(h) == .int(1))
    }

    @Test func nonceExpireParameter() throws {
        let h = try harness(auth: ["nonce_expire": "10"])
        try h.route(DigestUA.register())
        let ch = try #require(DigestUA.challenge(h.sender.sent.last))
        h.advance(by: .seconds(11))
        try h.route(DigestUA.register(cseq: 2, auth: DigestUA.credentials(ch)))
        #expect(rc(h) == .int(-4))
    }

    @Test func oneTimeNonceRejectsReplay() throws {
        let h = try harness(auth: ["one_time_nonce": "1"])
        try h.route(DigestUA.register())
        let ch = try #require(DigestUA.challenge(h.sender.sent.last))
        let creds = DigestUA.credentials(ch)
        try h.route(DigestUA.register(cseq: 2, auth: creds))
        #expect(rc(h) == .int(1))
        try h.route(DigestUA.register(cseq: 3, auth: creds))
        #expect(rc(h) == .int(-6))
        // Without one_time_nonce the same credentials stay valid until the nonce expires.
        let h2 = try harness()
        try h2.route(DigestUA.register())
        let ch2 = try #require(DigestUA.challenge(h2.sender.sent.last))
        try h2.route(DigestUA.register(cseq: 2, auth: DigestUA.credentials(ch2)))
        try h2.route(DigestUA.register(cseq: 3, auth: DigestUA.credentials(ch2)))
        #expect(rc(h2) == .int(1))
    }

    @Test func nonceCountRejectsReplayedNC() throws {
        let h = try harness(auth: ["nonce_count": "1", "qop": "auth"], qopFlag: true)
        try h.route(DigestUA.register())
        let ch = try #require(DigestUA.challenge(h.sender.sent.last))
        try h.route(DigestUA.register(cseq: 2, auth: DigestUA.credentials(ch, qop: true, nc: 1)))
        #expect(rc(h) == .int(1))
        try h.route(DigestUA.register(cseq: 3, auth: DigestUA.credentials(ch, qop: true, nc: 1)))
        #expect(rc(h) == .int(-4))
        try h.route(DigestUA.register(cseq: 4, auth: DigestUA.credentials(ch, qop: true, nc: 2)))
        #expect(rc(h) == .int(1))
        // nc above 255 forces a new challenge.
        try h.route(DigestUA.register(cseq: 5, auth: DigestUA.credentials(ch, qop: true, nc: 256)))
        #expect(rc(h) == .int(-4))
    }

    @Test func consumeCredentialsRemovesTheHeaderFromTheForwardedRequest() throws {
        let script = """
            function ksr_request_route()
              local rc = KSR.auth_db.auth_check("example.com", "subscriber", 1)
              KSR.pv.seti("$var(rc)", rc)
              if rc < 0 then
                KSR.auth.auth_challenge("example.com", 0)
                KSR.x.exit()
              end
              KSR.pv.seti("$var(u1)", KSR.siputils.is_user("alice"))
              KSR.pv.seti("$var(u2)", KSR.siputils.is_user("bob"))
              KSR.pv.seti("$var(cc)", KSR.auth.consume_credentials())
              KSR.forward()
            end
            """
        let h = try harness(script)
        try h.route(DigestUA.invite())
        let ch = try #require(DigestUA.challenge(h.sender.sent.last, header: "Proxy-Authenticate"))
        h.sender.clear()
        let creds = DigestUA.credentials(ch, method: "INVITE", uri: "sip:bob@192.0.2.20:5060")
        try h.route(DigestUA.invite(cseq: 2, auth: creds))
        #expect(rc(h) == .int(1))
        #expect(rc(h, "cc") == .int(1))
        #expect(rc(h, "u1") == .int(1) && rc(h, "u2") == .int(-1))
        let fwd = try #require(h.sender.sent.last)
        #expect(fwd.text.hasPrefix("INVITE sip:bob@192.0.2.20:5060 SIP/2.0\r\n"))
        #expect(!fwd.text.contains("Proxy-Authorization"))
        #expect(fwd.text.contains("Contact: <sip:alice@192.0.2.10:5060>\r\n"))
    }

    @Test func consumeCredentialsWithoutAuthorizedCredentials() throws {
        let (v, _) = try evalWithAuth("KSR.auth.consume_credentials()", DigestUA.invite())
        #expect(v == "number:-1")
    }

    @Test func identityCheckFlag() throws {
        let h = try harness()
        // bob authenticates a REGISTER for alice's AoR: From/To user alice, auth user bob.
        try h.route(DigestUA.register(user: "alice"))
        let ch = try #require(DigestUA.challenge(h.sender.sent.last))
        try h.route(DigestUA.register(user: "alice", cseq: 2, auth: DigestUA.credentials(ch, user: "bob", password: "bobpw")))
        #expect(rc(h) == .int(-8))
        // From user differs from To user.
        try h.route(DigestUA.register(user: "alice", fromUser: "bob", cseq: 3, auth: DigestUA.credentials(ch)))
        #expect(rc(h) == .int(-8))
        // INVITE from alice with bob's credentials.
        try h.route(DigestUA.invite(fromUser: "alice"))
        let pch = try #require(DigestUA.challenge(h.sender.sent.last, header: "Proxy-Authenticate"))
        let creds = DigestUA.credentials(pch, user: "bob", password: "bobpw", method: "INVITE", uri: "sip:bob@192.0.2.20:5060")
        try h.route(DigestUA.invite(fromUser: "alice", cseq: 2, auth: creds))
        #expect(rc(h) == .int(-8))

        // Flag 0: no identity check; flag 3 skips it for INVITE.
        for flags in [0, 3] {
            let h2 = try harness(registrarScript.replacingAuthCheckFlags(flags))
            try h2.route(DigestUA.invite(fromUser: "alice"))
            let c2 = try #require(DigestUA.challenge(h2.sender.sent.last, header: "Proxy-Authenticate"))
            try h2.route(DigestUA.invite(fromUser: "alice", cseq: 2, auth: DigestUA.credentials(
                c2, user: "bob", password: "bobpw", method: "INVITE", uri: "sip:bob@192.0.2.20:5060")))
            #expect(rc(h2) == .int(1), "flags \(flags)")
        }
    }

    @Test func ackAndCancelPassAuthCheck() throws {
        let h = try harness()
        try h.route(DigestUA.invite(method: "ACK"))
        #expect(rc(h) == .int(1))
        #expect(h.sender.sent.allSatisfy { status($0) != 407 })
    }

    @Test func pvAuthCheckWithPlaintextAndHA1() throws {
        let script = """
            function ksr_request_route()
              local rc = KSR.auth.pv_auth_check("example.com", KSR.kx.get_def("PW"), tonumber(KSR.kx.get_def("FLAGS")), 1)
              KSR.pv.seti("$var(rc)", rc)
              if rc < 0 then KSR.auth.auth_challenge("example.com", 1) end
            end
            """
        let ha1 = DigestHash.md5.hex("alice:example.com:secret")
        for (pw, flags) in [("secret", "0"), (ha1, "1")] {
            let h = try ScriptHarness(script: script, services: TestServices(defines: ["PW": pw, "FLAGS": flags]))
            try h.route(DigestUA.register())
            #expect(rc(h) == .int(-5))
            let ch = try #require(DigestUA.challenge(h.sender.sent.last))
            #expect(ch.qop == "auth")
            try h.route(DigestUA.register(cseq: 2, auth: DigestUA.credentials(ch, qop: true)))
            #expect(rc(h) == .int(1), "flags \(flags)")
            try h.route(DigestUA.register(cseq: 3, auth: DigestUA.credentials(ch, password: "nope", qop: true)))
            #expect(rc(h) == .int(-2))
            try h.route(DigestUA.register(user: "alice", fromUser: "mallory", cseq: 4, auth: DigestUA.credentials(ch, qop: true)))
            #expect(rc(h) == .int(-8))
        }
    }

    @Test func pvAuthenticateStoresChallengeAVP() throws {
        let script = """
            function ksr_request_route()
              KSR.pv.seti("$var(rc)", KSR.auth.pv_www_authenticate("example.com", "secret", 4))
              KSR.pv.sets("$var(ch)", KSR.pv.gete("$avp(digest_challenge)"))
            end
            """
        let h = try ScriptHarness(script: script)
        try h.route(DigestUA.register())
        #expect(rc(h) == .int(-5))
        guard case .string(let line)? = rc(h, "ch") else { Issue.record("no challenge AVP"); return }
        #expect(line.hasPrefix("WWW-Authenticate: Digest realm=\"example.com\", nonce=\""))
        #expect(line.hasSuffix(", qop=\"auth\"\r\n"))
        #expect(h.sender.sent.isEmpty)
    }

    @Test func hasCredentialsAndPVs() throws {
        let auth = "Digest username=\"alice@example.com\", realm=\"example.com\", nonce=\"abc\", uri=\"sip:bob@192.0.2.20:5060\", response=\"0123\", algorithm=MD5, cnonce=\"cn1\", opaque=\"op1\", qop=auth, nc=00000001"
        let msg = DigestUA.invite(auth: auth)
        #expect(try evalWithAuth("KSR.auth.has_credentials('example.com')", msg).0 == "number:1")
        #expect(try evalWithAuth("KSR.auth.has_credentials('other.net')", msg).0 == "number:-1")
        #expect(try evalWithAuth("KSR.auth.has_credentials('example.com')", DigestUA.invite()).0 == "number:-1")
        let pvs = "KSR.pv.get('$au')..'|'..KSR.pv.get('$aU')..'|'..KSR.pv.get('$ad')..'|'..KSR.pv.get('$ar')..'|'..KSR.pv.get('$adu')..'|'..KSR.pv.get('$aa')..'|'..KSR.pv.get('$adn')..'|'..KSR.pv.get('$adc')..'|'..KSR.pv.get('$adr')..'|'..KSR.pv.get('$ado')"
        #expect(try evalWithAuth(pvs, msg).0
                == "string:alice|alice@example.com|example.com|example.com|sip:bob@192.0.2.20:5060|MD5|abc|cn1|0123|op1")
        #expect(try evalWithAuth("KSR.pv.get('$adu')", DigestUA.invite()).0 == "nil:nil")
    }

    @Test func ha1ColumnsAndUsernameWithDomain() throws {
        let subs = MemorySubscribers([
            SubscriberRow(username: "alice", domain: "example.com",
                          ha1: DigestHash.md5.hex("alice:example.com:secret"),
                          ha1b: DigestHash.md5.hex("alice@example.com:example.com:secret")),
        ])
        let h = try harness(authDB: ["calculate_ha1": "0", "password_column": "ha1"], subscribers: subs)
        try h.route(DigestUA.register())
        let ch = try #require(DigestUA.challenge(h.sender.sent.last))
        try h.route(DigestUA.register(cseq: 2, auth: DigestUA.credentials(ch)))
        #expect(rc(h) == .int(1))
        // A username with @domain is checked against ha1b.
        try h.route(DigestUA.register(cseq: 3, auth: DigestUA.credentials(ch, user: "alice@example.com")))
        #expect(rc(h) == .int(1))
        // calculate_ha1 with a username carrying a domain hashes the whole username.
        let h2 = try harness()
        try h2.route(DigestUA.register())
        let ch2 = try #require(DigestUA.challenge(h2.sender.sent.last))
        try h2.route(DigestUA.register(cseq: 2, auth: DigestUA.credentials(ch2, user: "alice@example.com")))
        #expect(rc(h2) == .int(1))
    }

    @Test func useDomainLooksUpUserAndRealm() throws {
        let subs = MemorySubscribers([SubscriberRow(username: "alice", domain: "other.net", password: "secret")])
        let h = try harness(authDB: ["use_domain": "1"], subscribers: subs)
        try h.route(DigestUA.register())
        let ch = try #require(DigestUA.challenge(h.sender.sent.last))
        // alice exists only in other.net: unknown in the realm example.com.
        try h.route(DigestUA.register(cseq: 2, auth: DigestUA.credentials(ch)))
        #expect(rc(h) == .int(-3))
        // Without use_domain the username alone finds her.
        let h2 = try harness(subscribers: subs)
        try h2.route(DigestUA.register())
        let ch2 = try #require(DigestUA.challenge(h2.sender.sent.last))
        try h2.route(DigestUA.register(cseq: 2, auth: DigestUA.credentials(ch2)))
        #expect(rc(h2) == .int(1))
    }

    @Test func loadCredentialsAndIsSubscriber() throws {
        let script = """
            function ksr_request_route()
              KSR.pv.seti("$var(rc)", KSR.auth_db.auth_check("example.com", "subscriber", 1))
              KSR.pv.sets("$var(rpid)", KSR.pv.gete("$avp(rpid)"))
              KSR.pv.sets("$var(mail)", KSR.pv.gete("$avp(mail)"))
              KSR.pv.seti("$var(s1)", KSR.auth_db.is_subscriber("sip:bob@example.com", "subscriber", 3))
              KSR.pv.seti("$var(s2)", KSR.auth_db.is_subscriber("sip:zed@example.com", "subscriber", 1))
              KSR.pv.seti("$var(s3)", KSR.auth_db.is_subscriber("sip:bob@other.net", "subscriber", 1))
              KSR.pv.seti("$var(s4)", KSR.auth_db.is_subscriber("sip:bob@other.net", "subscriber", 0))
              if KSR.pv.geti("$var(rc)") < 0 then KSR.auth.auth_challenge("example.com", 0) end
            end
            """
        let h = try harness(script, authDB: ["load_credentials": "rpid;$avp(mail)=email_address"])
        try h.route(DigestUA.register())
        #expect(rc(h, "rpid") == .string(""))
        #expect(rc(h, "s1") == .int(1) && rc(h, "s2") == .int(-2) && rc(h, "s3") == .int(-2) && rc(h, "s4") == .int(1))
        let ch = try #require(DigestUA.challenge(h.sender.sent.last))
        try h.route(DigestUA.register(cseq: 2, auth: DigestUA.credentials(ch)))
        #expect(rc(h) == .int(1))
        #expect(rc(h, "rpid") == .string("+15551234"))
        #expect(rc(h, "mail") == .string("alice@example.com"))
    }

    @Test func emptyRealmOrTableAndNoDatabase() throws {
        #expect(try evalWithAuth("KSR.auth_db.auth_check('', 'subscriber', 1)", DigestUA.register()).0 == "number:-1")
        #expect(try evalWithAuth("KSR.auth_db.auth_check('example.com', '', 1)", DigestUA.register()).0 == "number:-1")
        #expect(try evalWithAuth("KSR.auth.pv_auth_check('', 'x', 0, 0)", DigestUA.register()).0 == "number:-1")
        // No subscriber table: the check cannot run past the credentials.
        let h = try ScriptHarness(script: registrarScript)
        try h.route(DigestUA.register())
        let ch = try #require(DigestUA.challenge(h.sender.sent.last))
        try h.route(DigestUA.register(cseq: 2, auth: DigestUA.credentials(ch)))
        #expect(rc(h) == .int(-1))
    }

    @Test func challengeVariants() throws {
        let script = """
            function ksr_request_route()
              KSR.pv.seti("$var(a)", KSR.auth.www_challenge("", 2 + 16))
              KSR.pv.seti("$var(b)", KSR.auth.proxy_challenge("sip.example.com", 1))
              KSR.pv.seti("$var(c)", KSR.auth.auth_get_www_authenticate("realm.test", 1, "$var(hdr)"))
              KSR.pv.seti("$var(d)", KSR.auth.auth_algorithm("SHA-256"))
              KSR.pv.seti("$var(e)", KSR.auth.auth_algorithm("MD4"))
              KSR.pv.seti("$var(f)", KSR.auth.auth_get_www_authenticate("realm.test", 0, "$var(hdr2)"))
            end
            """
        let h = try ScriptHarness(script: script, config: ModuleConfiguration(params: ["auth": ["realm_prefix": ["sip."]]]))
        try h.route(DigestUA.invite())
        for v in ["a", "b", "c", "d", "f"] { #expect(rc(h, v) == .int(1), "\(v)") }
        #expect(rc(h, "e") == .int(-1))
        #expect(h.sender.sent.count == 2)
        let www = try #require(DigestUA.challenge(h.sender.sent.first))
        #expect(status(h.sender.sent.first) == 401)
        // An empty realm stays empty (Kamailio 5.6 sends realm="").
        #expect(www.realm == "" && www.qop == "auth-int" && www.stale)
        #expect(www.line.hasSuffix("\", qop=\"auth-int\", stale=true\r\n"))
        let proxy = try #require(DigestUA.challenge(h.sender.sent.last, header: "Proxy-Authenticate"))
        #expect(status(h.sender.sent.last) == 407)
        #expect(proxy.realm == "example.com" && proxy.qop == "auth")
        guard case .string(let hdr)? = rc(h, "hdr"), case .string(let hdr2)? = rc(h, "hdr2") else {
            Issue.record("no header in $var(hdr)"); return
        }
        #expect(hdr.hasPrefix("WWW-Authenticate: Digest realm=\"realm.test\", nonce=\"") && hdr.hasSuffix(", qop=\"auth\"\r\n"))
        #expect(hdr2.hasSuffix("\", algorithm=SHA-256\r\n"))
    }

    @Test func challengeIsStatefulWithATransaction() throws {
        let script = """
            function ksr_request_route()
              local t = KSR.tm.t_newtran()
              if t == 1 then KSR.pv.seti("$var(rc)", KSR.auth.auth_challenge("example.com", 0)) end
            end
            """
        let h = try ScriptHarness(script: script)
        try h.route(DigestUA.invite())
        #expect(rc(h) == .int(1))
        #expect(status(h.sender.sent.last) == 407)
        // The retransmission is absorbed by the transaction and answered with the same 407.
        h.sender.clear()
        try h.route(DigestUA.invite())
        #expect(h.sender.sent.count == 1)
        #expect(status(h.sender.sent.first) == 407)
    }
}

private extension String {
    func replacingOccurrences(_ target: String, with replacement: String) -> String {
        split(separator: target, omittingEmptySubsequences: false).joined(separator: replacement)
    }

    /// The registrar script with other auth_check flags.
    func replacingAuthCheckFlags(_ flags: Int) -> String {
        split(separator: "\n", omittingEmptySubsequences: false).map { line in
            line.contains("auth_check(") ? line.split(separator: ",").dropLast().joined(separator: ",") + ", \(flags))" : String(line)
        }.joined(separator: "\n")
    }
}

/// `eval` with the auth modules and a subscriber table.
private func evalWithAuth(_ expr: String, _ message: String) throws -> (String, ScriptHarness) {
    let script = """
        function ksr_request_route()
          local v = \(expr)
          KSR.pv.sets("$var(out)", type(v) .. ":" .. tostring(v))
        end
        """
    let h = try ScriptHarness(script: script, subscribers: MemorySubscribers([SubscriberRow(username: "alice", domain: "example.com",
                                                                                             password: "secret")]))
    try h.route(message)
    guard case .string(let s)? = h.context.worker.vars["out"] else { return ("<no result>", h) }
    return (s, h)
}
