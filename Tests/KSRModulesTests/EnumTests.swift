import Foundation
import Testing
import SIPCore
import SIPTransport
@testable import KSRModules
import StarlingKEMI
import StarlingTesting
import StarlingServer

/// KSR.enum against dnsmasq serving a test e164.arpa zone on 127.0.0.1 (never the machine's resolver).
@Suite(.serialized) struct EnumTests {
    static let records = [
        // +15551234: the preferred SIP URI, a second one (lower preference), and a non-SIP service
        #"4.3.2.1.5.5.5.1.e164.arpa,100,10,u,E2U+sip,!^.*$!sip:bob@127.0.0.1:5099!"#,
        #"4.3.2.1.5.5.5.1.e164.arpa,100,20,u,E2U+sip,!^\+1(.*)$!sip:\1@backup.example!"#,
        #"4.3.2.1.5.5.5.1.e164.arpa,50,10,u,E2U+h323,!^.*$!h323:bob@example.com!"#,
        #"4.3.2.1.5.5.5.1.e164.arpa,100,30,u,E2U+voice:sip,!^.*$!sip:voice@example.com!"#,
        #"4.3.2.1.5.5.5.1.e164.arpa,100,40,u,E2U+sms+mms,!^.*$!sip:sms@example.com!"#,
        // a broken regexp (no third '!') only
        #"9.9.9.9.e164.arpa,10,10,u,E2U+sip,!^.*$sip:broken"#,
        // broken first, usable second: the usable one is taken
        #"8.8.8.8.e164.arpa,10,10,u,E2U+sip,!^(.*$!sip:x@example.com!"#,
        #"8.8.8.8.e164.arpa,10,20,u,E2U+sip,!^.*$!sip:good@example.com!"#,
        // infrastructure ENUM for +15551234 (country code 1): branch label after the country code
        #"4.3.2.1.5.5.5.i.1.e164.arpa,10,10,u,E2U+sip,!^.*$!sip:carrier@192.0.2.77!"#,
        // From users: one pointing at the test source address 192.0.2.10, one elsewhere
        #"5.4.3.2.1.4.4.e164.arpa,10,10,u,E2U+sip,!^.*$!sip:alice@192.0.2.10!"#,
        #"6.4.3.2.1.4.4.e164.arpa,10,10,u,E2U+sip,!^.*$!sip:alice@203.0.113.5!"#,
        // another suffix
        #"4.3.2.1.5.5.5.1.enum.test,10,10,u,E2U+sip,!^.*$!sip:private@example.net!"#,
    ]

    let dns: TestDNSMasq
    let resolver: DNSResolver

    init() throws {
        dns = try TestDNSMasq(naptr: Self.records)
        resolver = try DNSResolver(configuration: .init(servers: [SocketAddress(ip: "127.0.0.1", port: dns.port)!],
                                                        timeout: .seconds(2), useHostsFile: false))
    }

    static func invite(_ ruri: String, from: String = "sip:alice@atlanta.example.com") -> String {
        "INVITE \(ruri) SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKenum1\r\nMax-Forwards: 70\r\n"
            + "To: <\(ruri)>\r\nFrom: <\(from)>;tag=1\r\nCall-ID: enum-\(UUID().uuidString)\r\nCSeq: 1 INVITE\r\n"
            + "Content-Length: 0\r\n\r\n"
    }

    /// Runs `body` in the request route; returns the harness (R-URI, branches, $vars).
    func run(_ body: String, _ message: String, params: [String: [String]] = [:]) throws -> ScriptHarness {
        let script = """
            function ksr_request_route()
              \(body)
              KSR.pv.sets("$var(ru)", KSR.pv.get("$ru"))
            end
            """
        let services = TestServices(multiHosts: [:], resolver: resolver)
        let h = try ScriptHarness(script: script, config: ModuleConfiguration(params: ["enum": params]), services: services)
        try h.route(message)
        return h
    }

    func vars(_ h: ScriptHarness) -> [String: String] {
        var out: [String: String] = [:]
        for (k, v) in h.context.worker.vars {
            if case .string(let s) = v { out[k] = s } else if case .int(let i) = v { out[k] = String(i) }
        }
        return out
    }

    @Test func enumQueryRewritesTheRequestURIAndAddsBranches() throws {
        let h = try run(#"KSR.pv.seti("$var(rc)", KSR.enum.enum_query())"#, Self.invite("sip:+15551234@example.com"))
        let v = vars(h)
        #expect(v["rc"] == "1")
        #expect(v["ru"] == "sip:bob@127.0.0.1:5099")
        #expect(h.context.requestURIQ == 990)
        // the E2U+h323 record (better order) is not SIP; the second SIP record becomes a branch with q 0.98
        #expect(h.context.branches.map { String(decoding: $0, as: UTF8.self) } == ["sip:5551234@backup.example"])
        #expect(h.context.branchQ == [980])
    }

    /// `[core] async_io`: the lookups run on a lookup thread while the route waits (twice here), and
    /// the route resumes with the R-URI rewritten and the branches added, as the blocking call does.
    @Test func underAsyncIOLookupsWaitWithoutBlocking() throws {
        let script = """
            function ksr_request_route()
              KSR.pv.seti("$var(rc)", KSR.enum.enum_query())
              KSR.pv.sets("$var(ru)", KSR.pv.get("$ru"))
              KSR.pv.seti("$var(from)", KSR.enum.is_from_user_enum())
            end
            """
        let h = try ScriptHarness(script: script, services: TestServices(multiHosts: [:], resolver: resolver))
        h.dispatcher.enableAsyncIO(maxPending: 10, pending: AsyncPendingRequests())
        #expect(try h.route(Self.invite("sip:+15551234@example.com", from: "sip:+4412345@example.com")) == .waiting)
        #expect(h.runAsync { h.dispatcher.waitingRoutes == 0 })
        let v = vars(h)
        #expect(v["rc"] == "1")
        #expect(v["ru"] == "sip:bob@127.0.0.1:5099")
        #expect(v["from"] == "1")
    }

    @Test func notE164OrNoRecordsIsMinusOne() throws {
        var h = try run(#"KSR.pv.seti("$var(rc)", KSR.enum.enum_query())"#, Self.invite("sip:15551234@example.com"))
        #expect(vars(h)["rc"] == "-1")
        #expect(vars(h)["ru"] == "sip:15551234@example.com")
        h = try run(#"KSR.pv.seti("$var(rc)", KSR.enum.enum_query())"#, Self.invite("sip:+4930123@example.com"))
        #expect(vars(h)["rc"] == "-1")
        #expect(vars(h)["ru"] == "sip:+4930123@example.com")
    }

    @Test func brokenRegexpIsMinusOneAndTheNextRecordIsUsed() throws {
        var h = try run(#"KSR.pv.seti("$var(rc)", KSR.enum.enum_query())"#, Self.invite("sip:+9999@example.com"))
        #expect(vars(h)["rc"] == "-1")
        #expect(vars(h)["ru"] == "sip:+9999@example.com")
        h = try run(#"KSR.pv.seti("$var(rc)", KSR.enum.enum_query())"#, Self.invite("sip:+8888@example.com"))
        #expect(vars(h)["rc"] == "1")
        #expect(vars(h)["ru"] == "sip:good@example.com")
    }

    @Test func servicesAndSuffixes() throws {
        var h = try run(#"KSR.pv.seti("$var(rc)", KSR.enum.enum_query_suffix_service("e164.arpa.", "voice"))"#,
                        Self.invite("sip:+15551234@example.com"))
        #expect(vars(h)["rc"] == "1")
        #expect(vars(h)["ru"] == "sip:voice@example.com")
        h = try run(#"KSR.pv.seti("$var(rc)", KSR.enum.enum_query_suffix_service("e164.arpa.", "+mms"))"#,
                    Self.invite("sip:+15551234@example.com"))
        #expect(vars(h)["ru"] == "sip:sms@example.com")
        h = try run(#"KSR.pv.seti("$var(rc)", KSR.enum.enum_query_suffix("enum.test."))"#,
                    Self.invite("sip:+15551234@example.com"))
        #expect(vars(h)["rc"] == "1")
        #expect(vars(h)["ru"] == "sip:private@example.net")
        // domain_suffix modparam
        h = try run(#"KSR.pv.seti("$var(rc)", KSR.enum.enum_query())"#, Self.invite("sip:+15551234@example.com"),
                    params: ["domain_suffix": ["enum.test."]])
        #expect(vars(h)["ru"] == "sip:private@example.net")
    }

    @Test func pvQueryUsesTheGivenNumber() throws {
        let h = try run(#"KSR.pv.seti("$var(rc)", KSR.enum.enum_pv_query("+15551234"))"#, Self.invite("sip:bob@example.com"))
        #expect(vars(h)["rc"] == "1")
        #expect(vars(h)["ru"] == "sip:bob@127.0.0.1:5099")
        let bad = try run(#"KSR.pv.seti("$var(rc)", KSR.enum.enum_pv_query("5551234"))"#, Self.invite("sip:bob@example.com"))
        #expect(vars(bad)["rc"] == "-1")
    }

    @Test func telURIParamsAreAppended() throws {
        let h = try run(#"KSR.pv.seti("$var(rc)", KSR.enum.enum_query())"#, Self.invite("sip:+15551234@example.com"),
                        params: ["tel_uri_params": [";npdi"]])
        #expect(vars(h)["ru"] == "sip:bob@127.0.0.1:5099;npdi")
    }

    @Test func infrastructureENUM() throws {
        let h = try run(#"KSR.pv.seti("$var(rc)", KSR.enum.i_enum_query())"#, Self.invite("sip:+15551234@example.com"))
        #expect(vars(h)["rc"] == "1")
        #expect(vars(h)["ru"] == "sip:carrier@192.0.2.77")
        #expect(EnumModuleProbe.infrastructureName("+15551234") == "4.3.2.1.5.5.5.i.1.e164.arpa.")
    }

    @Test func fromUserEnum() throws {
        // the harness's messages come from 192.0.2.10
        var h = try run(#"KSR.pv.seti("$var(rc)", KSR.enum.is_from_user_enum())"#,
                        Self.invite("sip:bob@example.com", from: "sip:+4412345@example.com"))
        #expect(vars(h)["rc"] == "1")
        h = try run(#"KSR.pv.seti("$var(rc)", KSR.enum.is_from_user_enum())"#,
                    Self.invite("sip:bob@example.com", from: "sip:+4412346@example.com"))
        #expect(vars(h)["rc"] == "-8")
        h = try run(#"KSR.pv.seti("$var(rc)", KSR.enum.is_from_user_enum())"#,
                    Self.invite("sip:bob@example.com", from: "sip:+4412347@example.com"))
        #expect(vars(h)["rc"] == "-3")
        h = try run(#"KSR.pv.seti("$var(rc)", KSR.enum.is_from_user_enum())"#,
                    Self.invite("sip:bob@example.com", from: "sip:alice@example.com"))
        #expect(vars(h)["rc"] == "-1")
    }

    @Test func withoutAResolverLookupsFail() throws {
        let script = """
            function ksr_request_route()
              KSR.pv.seti("$var(rc)", KSR.enum.enum_query())
            end
            """
        let h = try ScriptHarness(script: script)
        try h.route(Self.invite("sip:+15551234@example.com"))
        #expect(h.context.worker.vars["rc"] == .int(-1))
    }
}

/// The pure helpers, through the module's exports' behaviour (no DNS).
@Suite struct EnumRegexpTests {
    @Test func rewriteExpandsBackReferences() throws {
        #expect(EnumModuleProbe.rewrite(#"!^\+1(555)(.*)$!sip:\2@\1.example!"#, "+15551234") == "sip:1234@555.example")
        #expect(EnumModuleProbe.rewrite("!^.*$!sip:info@example.com!", "+15551234") == "sip:info@example.com")
        #expect(EnumModuleProbe.rewrite("!^.*$!sip:\\0@example.com!i", "+123") == "sip:+123@example.com")
    }

    @Test func brokenExpressions() {
        #expect(EnumModuleProbe.rewrite("", "+1") == nil)
        #expect(EnumModuleProbe.rewrite("^.*$!x!", "+1") == nil)
        #expect(EnumModuleProbe.rewrite("!^.*$", "+1") == nil)
        #expect(EnumModuleProbe.rewrite("!^.*$!x", "+1") == nil)
        #expect(EnumModuleProbe.rewrite("!^(.*$!x!", "+1") == nil)
        #expect(EnumModuleProbe.rewrite("!^9$!x!", "+1") == nil)
    }

    @Test func e164() {
        #expect(EnumModuleProbe.isE164("+15551234"))
        #expect(EnumModuleProbe.isE164("+1"))
        #expect(!EnumModuleProbe.isE164("+"))
        #expect(!EnumModuleProbe.isE164("15551234"))
        #expect(!EnumModuleProbe.isE164("+1555a"))
        #expect(!EnumModuleProbe.isE164("+" + String(repeating: "1", count: 32)))
    }
}

/// The module's pure helpers.
enum EnumModuleProbe {
    static func rewrite(_ regexp: String, _ input: String) -> String? { try? EnumModule.rewrite(regexp, input) }
    static func isE164(_ s: String) -> Bool { EnumModule.isE164(s) }
    static func infrastructureName(_ n: String) -> String {
        EnumModule.infrastructureDomain(n, suffix: "e164.arpa.", label: "i")
    }
}
