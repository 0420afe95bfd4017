import Foundation
import Testing
import SIPCore
import SIPTransport
import StarlingKEMI
import StarlingTesting
@testable import KSRModules

/// KSR.uac: uac_auth in a failure route, $uac_req + uac_req_send.
@Suite struct UACAuthTests {
    static let trunk = SocketAddress(ip: "192.0.2.50", port: 5060)!

    static let script = """
        function ksr_request_route()
          if KSR.tm.t_check_trans() == 0 then KSR.x.exit() end
          KSR.setdsturi("sip:192.0.2.50:5060")
          KSR.tm.t_on_failure("trunk_auth")
          KSR.pv.seti("$var(relay)", KSR.tm.t_relay())
        end
        function trunk_auth()
          if KSR.tm.t_check_status("401|407") > 0 then
            KSR.pv.sets("$avp(auser)", "trunkuser")
            KSR.pv.sets("$avp(apass)", "s3cret")
            KSR.pv.seti("$var(auth)", KSR.uac.uac_auth())
            KSR.setdsturi("sip:192.0.2.50:5060")
            KSR.tm.t_on_failure("trunk_auth")
            KSR.pv.seti("$var(frelay)", KSR.tm.t_relay())
          end
        end
        """

    static let params: [String: [String: [String]]] = [
        "uac": ["auth_username_avp": ["$avp(auser)"], "auth_password_avp": ["$avp(apass)"],
                "auth_realm_avp": ["$avp(arealm)"]],
    ]

    func harness(_ script: String = Self.script) throws -> ScriptHarness {
        try ScriptHarness(script: script, config: ModuleConfiguration(params: Self.params))
    }

    /// The digest parameters of an Authorization value.
    static func params(_ value: String) -> [String: String] {
        var out: [String: String] = [:]
        let body = value.hasPrefix("Digest ") ? String(value.dropFirst(7)) : value
        for part in body.split(separator: ",") {
            let kv = part.split(separator: "=", maxSplits: 1)
            guard kv.count == 2 else { continue }
            out[kv[0].trimmingCharacters(in: .whitespaces)] = kv[1].trimmingCharacters(in: .whitespaces)
                .trimmingCharacters(in: CharacterSet(charactersIn: "\""))
        }
        return out
    }

    @Test func answers407WithProxyAuthorizationNewBranchAndCSeq() throws {
        let h = try harness()
        try h.route(Msg.invite, from: TMT.caller)
        #expect(TMT.v(h, "relay") == "1")
        let inv1 = try #require(TMT.sent(h, "INVITE").first)
        h.sender.clear()
        try h.route(TMT.reply(to: inv1, 407, "Proxy Authentication Required",
                              extra: "Proxy-Authenticate: Digest realm=\"carrier.example\", nonce=\"abc123\", qop=\"auth\", opaque=\"op1\", algorithm=MD5\r\n"),
                    from: Self.trunk)
        #expect(TMT.v(h, "auth") == "1")
        #expect(TMT.v(h, "frelay") == "1")
        let inv2 = try #require(TMT.sent(h, "INVITE").first)
        #expect(inv2.destination == Self.trunk)
        #expect(TMT.header(inv2, "CSeq") == "314160 INVITE")
        #expect(TMT.header(inv1, "Proxy-Authorization") == nil)
        let pa = try #require(TMT.header(inv2, "Proxy-Authorization"))
        let p = Self.params(pa)
        #expect(p["username"] == "trunkuser")
        #expect(p["realm"] == "carrier.example")
        #expect(p["nonce"] == "abc123")
        #expect(p["uri"] == "sip:bob@example.com")
        #expect(p["qop"] == "auth")
        #expect(p["nc"] == "00000001")
        #expect(p["opaque"] == "op1")
        #expect(p["algorithm"] == "MD5")
        let cnonce = try #require(p["cnonce"])
        let ha1 = DigestHash.md5.hex("trunkuser:carrier.example:s3cret")
        let ha2 = DigestHash.md5.hex("INVITE:sip:bob@example.com")
        #expect(p["response"] == DigestHash.md5.hex("\(ha1):abc123:00000001:\(cnonce):auth:\(ha2)"))
        // a new Via branch
        let b1 = inv1.message?.topVia.map { inv1.message!.string($0.branch!) }
        let b2 = inv2.message?.topVia.map { inv2.message!.string($0.branch!) }
        #expect(b1 != nil && b1 != b2)
        // the 407 is not relayed to the caller
        #expect(!h.sender.sent.contains { TMT.status($0) == 407 })

        // 200 from the trunk goes upstream
        h.sender.clear()
        try h.route(TMT.reply(to: inv2, 200, "OK", toTag: "t1"), from: Self.trunk)
        #expect(h.sender.sent.contains { TMT.status($0) == 200 && $0.destination == TMT.caller })
    }

    @Test func answers401WithSHA256AndASecondChallengeIncrementsAgain() throws {
        let h = try harness()
        try h.route(Msg.invite, from: TMT.caller)
        let inv1 = try #require(TMT.sent(h, "INVITE").first)
        h.sender.clear()
        try h.route(TMT.reply(to: inv1, 401, "Unauthorized",
                              extra: "WWW-Authenticate: Digest realm=\"r\", nonce=\"n1\", algorithm=SHA-256\r\n"),
                    from: Self.trunk)
        let inv2 = try #require(TMT.sent(h, "INVITE").first)
        #expect(TMT.header(inv2, "CSeq") == "314160 INVITE")
        let auth = try #require(TMT.header(inv2, "Authorization"))
        let p = Self.params(auth)
        #expect(p["algorithm"] == "SHA-256")
        #expect(p["qop"] == nil)
        let ha1 = DigestHash.sha256.hex("trunkuser:r:s3cret")
        let ha2 = DigestHash.sha256.hex("INVITE:sip:bob@example.com")
        #expect(p["response"] == DigestHash.sha256.hex("\(ha1):n1:\(ha2)"))
        // a stale nonce: challenged again, the CSeq goes up once more, one Authorization only
        h.sender.clear()
        try h.route(TMT.reply(to: inv2, 401, "Unauthorized",
                              extra: "WWW-Authenticate: Digest realm=\"r\", nonce=\"n2\", stale=true\r\n"),
                    from: Self.trunk)
        let inv3 = try #require(TMT.sent(h, "INVITE").first)
        #expect(TMT.header(inv3, "CSeq") == "314161 INVITE")
        #expect(inv3.text.components(separatedBy: "Authorization:").count == 2)
        #expect(Self.params(TMT.header(inv3, "Authorization") ?? "")["nonce"] == "n2")
    }

    @Test func unusableChallengesAndWrongRoutesAreMinusOne() throws {
        // no challenge header
        var h = try harness()
        try h.route(Msg.invite, from: TMT.caller)
        var inv = try #require(TMT.sent(h, "INVITE").first)
        try h.route(TMT.reply(to: inv, 407, "Proxy Authentication Required"), from: Self.trunk)
        #expect(TMT.v(h, "auth") == "-1")
        // a Basic challenge only
        h = try harness()
        try h.route(Msg.invite, from: TMT.caller)
        inv = try #require(TMT.sent(h, "INVITE").first)
        try h.route(TMT.reply(to: inv, 401, "Unauthorized", extra: "WWW-Authenticate: Basic realm=\"r\"\r\n"), from: Self.trunk)
        #expect(TMT.v(h, "auth") == "-1")
        // an unknown algorithm
        h = try harness()
        try h.route(Msg.invite, from: TMT.caller)
        inv = try #require(TMT.sent(h, "INVITE").first)
        try h.route(TMT.reply(to: inv, 401, "Unauthorized",
                              extra: "WWW-Authenticate: Digest realm=\"r\", nonce=\"n\", algorithm=SHA-1\r\n"), from: Self.trunk)
        #expect(TMT.v(h, "auth") == "-1")
        // the request route
        let r = try eval("KSR.uac.uac_auth()", modules: ["tm", "uac"])
        #expect(r.0 == "number:-1")
    }

    @Test func credentialModparamAndRealmAVP() throws {
        let script = Self.script.replacingOccurrences(of: """
                KSR.pv.sets("$avp(auser)", "trunkuser")
                KSR.pv.sets("$avp(apass)", "s3cret")
            """, with: "")
        let h = try ScriptHarness(script: script, config: ModuleConfiguration(params: [
            "uac": ["credential": ["alice:other.example:pw1", "bob:carrier.example:pw2"]],
        ]))
        try h.route(Msg.invite, from: TMT.caller)
        let inv = try #require(TMT.sent(h, "INVITE").first)
        h.sender.clear()
        try h.route(TMT.reply(to: inv, 407, "Proxy Authentication Required",
                              extra: "Proxy-Authenticate: Digest realm=\"carrier.example\", nonce=\"x\"\r\n"), from: Self.trunk)
        let inv2 = try #require(TMT.sent(h, "INVITE").first)
        let p = Self.params(TMT.header(inv2, "Proxy-Authorization") ?? "")
        #expect(p["username"] == "bob")
        let ha1 = DigestHash.md5.hex("bob:carrier.example:pw2")
        #expect(p["response"] == DigestHash.md5.hex("\(ha1):x:\(DigestHash.md5.hex("INVITE:sip:bob@example.com"))"))
    }

    @Test func ha1Mode() throws {
        let ha1 = DigestHash.md5.hex("trunkuser:r:s3cret")
        let script = Self.script.replacingOccurrences(of: "\"s3cret\"", with: "\"\(ha1)\"")
            .replacingOccurrences(of: "KSR.uac.uac_auth()", with: "KSR.uac.uac_auth_mode(1)")
        let h = try harness(script)
        try h.route(Msg.invite, from: TMT.caller)
        let inv = try #require(TMT.sent(h, "INVITE").first)
        h.sender.clear()
        try h.route(TMT.reply(to: inv, 401, "Unauthorized", extra: "WWW-Authenticate: Digest realm=\"r\", nonce=\"n\"\r\n"),
                    from: Self.trunk)
        let p = Self.params(TMT.header(try #require(TMT.sent(h, "INVITE").first), "Authorization") ?? "")
        #expect(p["response"] == DigestHash.md5.hex("\(ha1):n:\(DigestHash.md5.hex("INVITE:sip:bob@example.com"))"))
    }
}

@Suite struct UACRequestTests {
    static let script = """
        function ksr_request_route()
          KSR.pv.unset("$uac_req(all)")
          KSR.pv.sets("$uac_req(method)", "MESSAGE")
          KSR.pv.sets("$uac_req(ruri)", "sip:operator@192.0.2.60:5070")
          KSR.pv.sets("$uac_req(furi)", "sip:emergency@proxy.example")
          KSR.pv.sets("$uac_req(turi)", "sip:operator@example.com")
          KSR.pv.sets("$uac_req(hdrs)", "Content-Type: text/plain\\r\\nX-Caller: " .. KSR.pv.get("$fU") .. "\\r\\n")
          KSR.pv.sets("$uac_req(body)", "Emergency call from " .. KSR.pv.get("$fU"))
          KSR.pv.sets("$uac_req(callid)", "msg-1@proxy")
          KSR.pv.seti("$var(rc)", KSR.uac.uac_req_send())
          KSR.pv.sets("$var(m)", KSR.pv.get("$uac_req(method)"))
          KSR.sl.sl_send_reply(200, "OK")
        end
        """

    @Test func sendsTheDescribedRequest() throws {
        let h = try ScriptHarness(script: Self.script)
        try h.route(Msg.invite)
        #expect(TMT.v(h, "rc") == "1")
        #expect(TMT.v(h, "m") == "MESSAGE")
        let msg = try #require(TMT.sent(h, "MESSAGE").first)
        #expect(msg.destination == SocketAddress(ip: "192.0.2.60", port: 5070)!)
        #expect(TMT.requestURI(msg) == "sip:operator@192.0.2.60:5070")
        #expect(TMT.header(msg, "From")?.hasPrefix("<sip:emergency@proxy.example>;tag=") == true)
        #expect(TMT.header(msg, "To") == "<sip:operator@example.com>")
        #expect(TMT.header(msg, "Call-ID") == "msg-1@proxy")
        #expect(TMT.header(msg, "CSeq") == "10 MESSAGE")
        #expect(TMT.header(msg, "X-Caller") == "alice")
        #expect(TMT.header(msg, "Content-Type") == "text/plain")
        #expect(msg.text.hasSuffix("\r\n\r\nEmergency call from alice"))
        // a 200 for it is absorbed (the caller gets only its own 200)
        h.sender.clear()
        try h.route(TMT.reply(to: msg, 200, "OK"), from: SocketAddress(ip: "192.0.2.60", port: 5070)!)
        #expect(h.sender.sent.isEmpty)
    }

    static let eventScript = """
        function ksr_request_route()
          KSR.pv.unset("$uac_req(all)")
          KSR.pv.sets("$uac_req(method)", "MESSAGE")
          KSR.pv.sets("$uac_req(ruri)", "sip:operator@192.0.2.60:5070")
          KSR.pv.sets("$uac_req(furi)", "sip:emergency@proxy.example")
          KSR.pv.sets("$uac_req(hdrs)", "Content-Type: text/plain\\r\\n")
          KSR.pv.sets("$uac_req(body)", "hello")
          KSR.pv.sets("$uac_req(auser)", "proxyuser")
          KSR.pv.sets("$uac_req(apasswd)", "pw")
          KSR.pv.seti("$uac_req(evroute)", 1)
          KSR.pv.sets("$uac_req(evparam)", "job-7")
          KSR.pv.seti("$var(rc)", KSR.uac.uac_req_send())
        end
        function uac_event(name)
          KSR.pv.seti("$var(evcode)", KSR.pv.get("$uac_req(evcode)"))
          KSR.pv.seti("$var(evtype)", KSR.pv.get("$uac_req(evtype)"))
          KSR.pv.sets("$var(evparam)", KSR.pv.get("$uac_req(evparam)"))
          KSR.pv.seti("$var(events)", (KSR.pv.get("$var(events)") or 0) + 1)
        end
        """

    @Test func challengeAnsweredThenEventCallback() throws {
        let h = try ScriptHarness(script: Self.eventScript, config: ModuleConfiguration(params: ["uac": ["event_callback": ["uac_event"]]]))
        try h.route(Msg.invite)
        #expect(TMT.v(h, "rc") == "1")
        let first = try #require(TMT.sent(h, "MESSAGE").first)
        h.sender.clear()
        let phone = SocketAddress(ip: "192.0.2.60", port: 5070)!
        try h.route(TMT.reply(to: first, 407, "Proxy Authentication Required",
                              extra: "Proxy-Authenticate: Digest realm=\"op\", nonce=\"n9\"\r\n"), from: phone)
        #expect(TMT.v(h, "events") == "<none>", "no event for the challenge that was answered")
        let second = try #require(TMT.sent(h, "MESSAGE").first)
        #expect(TMT.header(second, "CSeq") == "11 MESSAGE")
        #expect(TMT.header(second, "Call-ID") == TMT.header(first, "Call-ID"))
        #expect(TMT.header(second, "From") == TMT.header(first, "From"))
        let p = UACAuthTests.params(TMT.header(second, "Proxy-Authorization") ?? "")
        let ha1 = DigestHash.md5.hex("proxyuser:op:pw")
        #expect(p["response"] == DigestHash.md5.hex("\(ha1):n9:\(DigestHash.md5.hex("MESSAGE:sip:operator@192.0.2.60:5070"))"))
        #expect(second.text.hasSuffix("\r\n\r\nhello"))
        h.sender.clear()
        try h.route(TMT.reply(to: second, 202, "Accepted"), from: phone)
        #expect(TMT.v(h, "events") == "1")
        #expect(TMT.v(h, "evcode") == "202")
        #expect(TMT.v(h, "evtype") == "1")
        #expect(TMT.v(h, "evparam") == "job-7")
    }

    @Test func timeoutRunsTheEventWithType2() throws {
        let h = try ScriptHarness(script: Self.eventScript, config: ModuleConfiguration(params: [
            "uac": ["event_callback": ["uac_event"]], "tm": ["fr_timer": ["1000"]],
        ]))
        try h.route(Msg.invite)
        #expect(TMT.v(h, "rc") == "1")
        TMT.run(h, for: .seconds(2))
        #expect(TMT.v(h, "events") == "1")
        #expect(TMT.v(h, "evcode") == "408")
        #expect(TMT.v(h, "evtype") == "2")
    }

    @Test func malformedFieldsAreMinusOne() throws {
        func rc(_ setup: String) throws -> String {
            let h = try ScriptHarness(script: """
                function ksr_request_route()
                  KSR.pv.unset("$uac_req(all)")
                  KSR.pv.sets("$uac_req(method)", "MESSAGE")
                  KSR.pv.sets("$uac_req(ruri)", "sip:a@192.0.2.60")
                  KSR.pv.sets("$uac_req(furi)", "sip:b@example.com")
                  \(setup)
                  KSR.pv.seti("$var(rc)", KSR.uac.uac_req_send())
                end
                """)
            try h.route(Msg.invite)
            return TMT.v(h, "rc")
        }
        #expect(try rc("") == "1")
        #expect(try rc(#"KSR.pv.unset("$uac_req(method)")"#) == "-1")
        #expect(try rc(#"KSR.pv.sets("$uac_req(method)", "MES SAGE")"#) == "-1")
        #expect(try rc(#"KSR.pv.unset("$uac_req(ruri)")"#) == "-1")
        #expect(try rc(#"KSR.pv.sets("$uac_req(ruri)", "not a uri")"#) == "-1")
        #expect(try rc(#"KSR.pv.unset("$uac_req(furi)")"#) == "-1")
        #expect(try rc(#"KSR.pv.sets("$uac_req(turi)", "mailto:x")"#) == "-1")
        #expect(try rc(#"KSR.pv.sets("$uac_req(ouri)", "garbage")"#) == "-1")
        #expect(try rc(#"KSR.pv.sets("$uac_req(hdrs)", "no colon here\r\n")"#) == "-1")
        #expect(try rc(#"KSR.pv.sets("$uac_req(hdrs)", "X-A: 1\r\n: empty name\r\n")"#) == "-1")
        // an unresolvable destination
        #expect(try rc(#"KSR.pv.sets("$uac_req(ruri)", "sip:a@unresolvable.invalid")"#) == "-1")
    }

    @Test func pseudoVariableRules() throws {
        #expect(try evalValue(#"KSR.pv.sets("$uac_req(flags)", "x")"#, modules: ["tm", "uac"]) == "boolean:false")
        #expect(try evalValue(#"KSR.pv.seti("$uac_req(flags)", 3)"#, modules: ["tm", "uac"]) == "boolean:true")
        #expect(try evalValue(#"KSR.pv.sets("$uac_req(all)", "x")"#, modules: ["tm", "uac"]) == "boolean:false")
        #expect(try evalValue(#"KSR.pv.sets("$uac_req(body)", string.rep("a", 40000))"#, modules: ["tm", "uac"]) == "boolean:false")
        #expect(try evalValue(#"KSR.pv.get("$uac_req(nosuchkey)")"#, modules: ["tm", "uac"]) == "nil:nil")
        #expect(try evalValue(#"KSR.pv.get("$uac_req(ruri)")"#, before: #"KSR.pv.unset("$uac_req(all)")"#,
                              modules: ["tm", "uac"]) == "nil:nil")
        #expect(try evalValue(#"KSR.pv.get("$uac_req(ouri)")"#,
                              before: #"KSR.pv.sets("$uac_req(ouri)", "sip:p.example")"#, modules: ["tm", "uac"]) == "string:sip:p.example")
    }
}

@Suite struct UACReplaceTests {
    static let callee = SocketAddress(ip: "192.0.2.70", port: 5060)!

    static func script(_ extra: String = "") -> String {
        """
        function ksr_request_route()
          if KSR.tm.t_check_trans() == 0 then KSR.x.exit() end
          if KSR.siputils.has_totag() > 0 then
            KSR.pv.seti("$var(lr)", KSR.rr.loose_route())
            \(extra)
            KSR.tm.t_relay()
            KSR.x.exit()
          end
          KSR.rr.record_route()
          KSR.pv.seti("$var(rf)", KSR.uac.uac_replace_from('"Anonymous"', "sip:anonymous@anonymous.invalid"))
          KSR.setdsturi("sip:192.0.2.70:5060")
          KSR.tm.t_relay()
        end
        """
    }

    func harness(_ mode: String = "auto", extra: String = "") throws -> ScriptHarness {
        try ScriptHarness(script: Self.script(extra), config: ModuleConfiguration(params: ["uac": ["restore_mode": [mode]]]))
    }

    /// The initial INVITE through the proxy; returns the harness and the Route value for in-dialog requests.
    func call(_ h: ScriptHarness) throws -> (SentMessage, String) {
        try h.route(Msg.invite, from: TMT.caller)
        let inv = try #require(TMT.sent(h, "INVITE").first)
        let rr = try #require(TMT.header(inv, "Record-Route"))
        return (inv, rr)
    }

    func bye(from: String, to: String, route: String) -> String {
        "BYE sip:peer@192.0.2.70:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.99:5060;branch=z9hG4bKbye\(UUID().uuidString.prefix(6))\r\n"
            + "Max-Forwards: 70\r\nRoute: \(route)\r\nFrom: \(from)\r\nTo: \(to)\r\nCall-ID: a84b4c76e66710@pc33\r\n"
            + "CSeq: 314160 BYE\r\nContent-Length: 0\r\n\r\n"
    }

    @Test func initialRequestReplacedAndRepliesRestored() throws {
        let h = try harness()
        let (inv, rr) = try call(h)
        #expect(TMT.v(h, "rf") == "1")
        #expect(TMT.header(inv, "From") == #""Anonymous" <sip:anonymous@anonymous.invalid>;tag=1928301774"#)
        #expect(rr.contains(";vsf="))
        // the callee answers with the From it saw; the caller gets its own URI back
        h.sender.clear()
        try h.route(TMT.reply(to: inv, 200, "OK", toTag: "b1"), from: Self.callee)
        let ok = try #require(h.sender.sent.first { TMT.status($0) == 200 })
        #expect(TMT.header(ok, "From") == #""Anonymous" <sip:alice@atlanta.example.com>;tag=1928301774"#)
    }

    @Test func inDialogRequestsAreRestoredBothWays() throws {
        let h = try harness()
        let (_, rr) = try call(h)
        // caller -> callee: From is the caller's original; the callee must see the replaced one
        h.sender.clear()
        try h.route(bye(from: "<sip:alice@atlanta.example.com>;tag=1928301774", to: "<sip:bob@example.com>;tag=b1", route: rr))
        #expect(TMT.v(h, "lr") == "1")
        let down = try #require(TMT.sent(h, "BYE").first)
        #expect(TMT.header(down, "From") == "<sip:anonymous@anonymous.invalid>;tag=1928301774")
        // its 200 goes back with the caller's URI
        h.sender.clear()
        try h.route(TMT.reply(to: down, 200, "OK", toTag: nil), from: Self.callee)
        let ok = try #require(h.sender.sent.first { TMT.status($0) == 200 })
        #expect(TMT.header(ok, "From") == "<sip:alice@atlanta.example.com>;tag=1928301774")

        // callee -> caller: To carries the replaced URI; the caller must see its own
        h.sender.clear()
        try h.route(bye(from: "<sip:bob@example.com>;tag=b1", to: "<sip:anonymous@anonymous.invalid>;tag=1928301774", route: rr))
        let up = try #require(TMT.sent(h, "BYE").first)
        #expect(TMT.header(up, "To") == "<sip:alice@atlanta.example.com>;tag=1928301774")
        #expect(TMT.header(up, "From") == "<sip:bob@example.com>;tag=b1")
    }

    @Test func manualModeRestoresOnRequest() throws {
        let h = try harness("manual", extra: #"KSR.pv.seti("$var(rs)", KSR.uac.uac_restore_from())"#)
        let (_, rr) = try call(h)
        h.sender.clear()
        try h.route(bye(from: "<sip:alice@atlanta.example.com>;tag=1928301774", to: "<sip:bob@example.com>;tag=b1", route: rr))
        #expect(TMT.v(h, "rs") == "1")
        #expect(TMT.header(try #require(TMT.sent(h, "BYE").first), "From") == "<sip:anonymous@anonymous.invalid>;tag=1928301774")
        // no parameter: -1, nothing changed
        let h2 = try harness("manual", extra: #"KSR.pv.seti("$var(rs)", KSR.uac.uac_restore_from())"#)
        _ = try call(h2)
        h2.sender.clear()
        try h2.route(bye(from: "<sip:alice@atlanta.example.com>;tag=1928301774", to: "<sip:bob@example.com>;tag=b1",
                         route: "<sip:127.0.0.1:5060;lr;ftag=1928301774>"))
        #expect(TMT.v(h2, "rs") == "-1")
        #expect(TMT.header(try #require(TMT.sent(h2, "BYE").first), "From") == "<sip:alice@atlanta.example.com>;tag=1928301774")
    }

    @Test func modeNoneStoresNothingAndAutoRefusesInDialogChanges() throws {
        let h = try harness("none")
        let (inv, rr) = try call(h)
        #expect(!rr.contains("vsf="))
        #expect(TMT.header(inv, "From")?.contains("anonymous@anonymous.invalid") == true)
        // auto: an in-dialog URI change is refused; display-only changes are allowed
        let r = try evalValue(#"KSR.uac.uac_replace_from("", "sip:x@y")"#,
                              Msg.invite.replacingOccurrences(of: "To: Bob <sip:bob@example.com>", with: "To: Bob <sip:bob@example.com>;tag=z"))
        #expect(r == "number:-1")
        #expect(try evalValue(#"KSR.uac.uac_replace_to_uri("not a uri")"#) == "number:-1")
        #expect(try evalValue(#"KSR.uac.uac_replace_to("Bobby", "")"#) == "number:1")
    }

    @Test func encodingRoundTrips() {
        for (a, b) in [("sip:alice@atlanta.example.com", "sip:anonymous@anonymous.invalid"), ("sip:a@b", "sip:a-much-longer-user@example.org"),
                       ("sip:+15551234@carrier.example;user=phone", "sip:x@y")] {
            let p = UACReplace.encode(a, b)
            #expect(!p.contains("="))
            #expect(UACReplace.decode(p, with: b) == a)
            #expect(UACReplace.decode(p, with: a) == b)
        }
        #expect(UACReplace.decode("!!!", with: "sip:a@b") == nil)
    }
}

@Suite struct UACRegistrationTests {
    static let registrar = SocketAddress(ip: "192.0.2.80", port: 5060)!
    static let row = UACRegRow(l_uuid: "trunk1", l_username: "pbx", l_domain: "local.example", r_username: "acct42",
                               r_domain: "192.0.2.80", realm: "reg.example", auth_username: "acct42", auth_password: "pw42",
                               expires: 120)

    static let script = """
        function ksr_request_route()
          KSR.pv.seti("$var(status)", KSR.uac.uac_reg_status("trunk1"))
          KSR.pv.seti("$var(nostatus)", KSR.uac.uac_reg_status("nosuch"))
          KSR.pv.seti("$var(lk)", KSR.uac.uac_reg_lookup("trunk1", "$var(luri)"))
          KSR.pv.seti("$var(lku)", KSR.uac.uac_reg_lookup_uri("sip:acct42@192.0.2.80", "$var(luuid)"))
          KSR.pv.seti("$var(rt)", KSR.uac.uac_reg_request_to("trunk1", 0))
          KSR.pv.sets("$var(ru)", KSR.pv.get("$ru"))
          KSR.pv.sets("$var(au)", KSR.pv.get("$avp(auser)"))
        end
        """

    func harness(_ rows: [UACRegRow] = [row], source: MemoryUACRegistrations? = nil) throws -> (ScriptHarness, MemoryUACRegistrations) {
        let src = source ?? MemoryUACRegistrations(rows)
        let h = try ScriptHarness(script: Self.script, config: ModuleConfiguration(params: [
            "uac": ["reg_contact_addr": ["192.0.2.1:5060"], "auth_username_avp": ["$avp(auser)"],
                    "auth_password_avp": ["$avp(apass)"], "auth_realm_avp": ["$avp(arealm)"]],
            "tm": ["fr_timer": ["2000"]],
        ]), uacRegistrations: src)
        return (h, src)
    }

    func registers(_ h: ScriptHarness) -> [SentMessage] { TMT.sent(h, "REGISTER") }

    @Test func registersAnswersTheChallengeAndRefreshes() throws {
        let (h, _) = try harness()
        h.advance(by: .seconds(1))
        let r1 = try #require(registers(h).first)
        #expect(r1.destination == Self.registrar)
        #expect(TMT.requestURI(r1) == "sip:192.0.2.80")
        #expect(TMT.header(r1, "To") == "<sip:acct42@192.0.2.80>")
        #expect(TMT.header(r1, "Contact") == "<sip:trunk1@192.0.2.1:5060>")
        #expect(TMT.header(r1, "Expires") == "120")
        try h.route(Msg.invite)
        #expect(TMT.v(h, "status") == "-2")  // ongoing
        h.sender.clear()
        try h.route(TMT.reply(to: r1, 401, "Unauthorized", extra: "WWW-Authenticate: Digest realm=\"reg.example\", nonce=\"rn1\"\r\n"),
                    from: Self.registrar)
        let r2 = try #require(registers(h).first)
        #expect(TMT.header(r2, "Call-ID") == TMT.header(r1, "Call-ID"))
        #expect(TMT.header(r2, "CSeq") == "2 REGISTER")
        let p = UACAuthTests.params(TMT.header(r2, "Authorization") ?? "")
        let ha1 = DigestHash.md5.hex("acct42:reg.example:pw42")
        #expect(p["response"] == DigestHash.md5.hex("\(ha1):rn1:\(DigestHash.md5.hex("REGISTER:sip:192.0.2.80"))"))
        h.sender.clear()
        try h.route(TMT.reply(to: r2, 200, "OK", extra: "Contact: <sip:trunk1@192.0.2.1:5060>;expires=60\r\n"), from: Self.registrar)
        try h.route(Msg.invite)
        #expect(TMT.v(h, "status") == "1")
        #expect(TMT.v(h, "nostatus") == "-1")
        #expect(TMT.v(h, "lk") == "1")
        #expect(TMT.v(h, "luri") == "sip:pbx@local.example")
        #expect(TMT.v(h, "lku") == "1")
        #expect(TMT.v(h, "luuid") == "trunk1")
        #expect(TMT.v(h, "rt") == "1")
        #expect(TMT.v(h, "ru") == "sip:acct42@192.0.2.80")
        #expect(TMT.v(h, "au") == "acct42")
        // granted 60 s: refreshed before it runs out (30 s = half of it, less than reg_timer_interval)
        h.sender.clear()
        for _ in 0..<25 { h.advance(by: .seconds(1)) }
        #expect(registers(h).isEmpty)
        for _ in 0..<10 { h.advance(by: .seconds(1)) }
        let r3 = try #require(registers(h).first)
        #expect(TMT.header(r3, "Call-ID") == TMT.header(r1, "Call-ID"))
        #expect(TMT.header(r3, "CSeq") == "3 REGISTER")
    }

    @Test func failuresAreRetriedWithBackOff() throws {
        let (h, _) = try harness()
        h.advance(by: .seconds(1))
        let r1 = try #require(registers(h).first)
        h.sender.clear()
        try h.route(TMT.reply(to: r1, 503, "Service Unavailable"), from: Self.registrar)
        try h.route(Msg.invite)
        #expect(TMT.v(h, "status") == "-99")
        // first retry after 30 s, the next after 60 s
        for _ in 0..<29 { h.advance(by: .seconds(1)) }
        #expect(registers(h).isEmpty)
        for _ in 0..<2 { h.advance(by: .seconds(1)) }
        let r2 = try #require(registers(h).first)
        h.sender.clear()
        // no answer at all: tm's timeout counts as a failure too
        TMT.run(h, for: .seconds(3), step: .milliseconds(500))
        for _ in 0..<55 { h.advance(by: .seconds(1)) }
        #expect(registers(h).filter { TMT.header($0, "CSeq") != TMT.header(r2, "CSeq") }.isEmpty)
        h.sender.clear()
        for _ in 0..<8 where registers(h).isEmpty { h.advance(by: .seconds(1)) }
        let r3 = try #require(registers(h).last)
        #expect(TMT.header(r3, "CSeq") == "3 REGISTER", "\(registers(h).map { TMT.header($0, "CSeq") ?? "" })")
        h.sender.clear()
        try h.route(TMT.reply(to: r3, 200, "OK", extra: "Expires: 300\r\n"), from: Self.registrar)
        try h.route(Msg.invite)
        #expect(TMT.v(h, "status") == "1", "\(h.runtime.uacreg.dump(now: h.runtime.clock.unixTime))")
    }

    @Test func disabledRowsAndReload() throws {
        var disabled = Self.row
        disabled.l_uuid = "trunk2"
        disabled.r_username = "acct43"
        disabled.flags = 1
        let (h, src) = try harness([Self.row, disabled])
        h.advance(by: .seconds(1))
        #expect(registers(h).count == 1)
        #expect(h.runtime.uacreg.dump(now: h.runtime.clock.unixTime).map { $0["state"] } == [.string("ongoing"), .string("disabled")])
        // enabled (uac_reg_enable's work): registered at the next run
        h.sender.clear()
        #expect(h.runtime.uacreg.setDisabled(false, attr: "l_uuid", value: "trunk2", now: h.runtime.clock.unixTime) == 1)
        #expect(h.runtime.uacreg.setDisabled(false, attr: "bogus", value: "x", now: 0) == -2)
        #expect(h.runtime.uacreg.setDisabled(false, attr: "l_uuid", value: "nosuch", now: 0) == -1)
        h.advance(by: .seconds(2))
        #expect(registers(h).contains { TMT.header($0, "To") == "<sip:acct43@192.0.2.80>" })
        // reload: a removed row is gone
        src.set([Self.row])
        #expect(h.runtime.uacreg.reload(now: h.runtime.clock.unixTime) == 1)
        #expect(h.runtime.uacreg.dump(now: 0).count == 1)
    }
}
