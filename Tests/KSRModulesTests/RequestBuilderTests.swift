import Testing
import Foundation
import SIPCore
import SIPTransport
import StarlingTesting
import KSRModules

/// Stateless forwarding and tm branches build the outgoing request the same way (RequestBuilder):
/// advertised address/port, `;rport` in Starling's Via, Record-Route, received/rport on the top Via.
@Suite struct RequestBuilderTests {
    static let script = tmSaveHelper + """
        function ksr_request_route()
          if KSR.is_ACK() then return end
          KSR.set_advertised_address("proxy.example.net")
          KSR.set_advertised_port("5099")
          KSR.add_local_rport()
          KSR.rr.record_route()
          KSR.setdsturi("sip:192.0.2.20:5060")
          if KSR.pv.gete("$hdr(X-Mode)") == "forward" then
            KSR.pv.seti("$var(r)", KSR.forward())
          else
            KSR.tm.t_on_failure("again")
            KSR.pv.seti("$var(r)", KSR.tm.t_relay())
          end
        end
        function again()
          KSR.pv.seti("$var(fr)", KSR.tm.t_relay())
        end
        """

    static func invite(mode: String) -> String {
        Msg.invite.replacingOccurrences(of: "User-Agent: TestUA/1.0\r\n", with: "User-Agent: TestUA/1.0\r\nX-Mode: \(mode)\r\n")
    }

    /// The text with the branch parameter of Starling's Via (the first line after the Record-Route)
    /// replaced by a placeholder: stateless and tm branch ids differ by design.
    static func normalized(_ text: String) -> String {
        text.split(separator: "\r\n", omittingEmptySubsequences: false).map { line -> String in
            guard line.hasPrefix("Via: SIP/2.0/UDP proxy.example.net"), let b = line.range(of: ";branch=") else {
                return String(line)
            }
            let rest = line[b.upperBound...]
            let end = rest.firstIndex(of: ";") ?? rest.endIndex
            return String(line[..<b.upperBound]) + "BRANCH" + String(rest[end...])
        }.joined(separator: "\r\n")
    }

    /// A worker keeps its last numeric next hop (RequestBuilder.resolve): requests whose `$du`
    /// alternates between addresses, a name, `maddr` and a bad URI still go where their own `$du`
    /// points, and the loop check still refuses this server every time.
    @Test func eachRequestGoesWhereItsOwnNextHopPoints() throws {
        let script = """
            function ksr_request_route()
              KSR.setdsturi(KSR.pv.gete("$hdr(X-Next)"))
              KSR.pv.seti("$var(r)", KSR.forward())
            end
            """
        let services = TestServices(hosts: ["pbx.example.net": TMT.address("192.0.2.77")])
        let h = try ScriptHarness(script: script, services: services)
        let cases: [(next: String, to: SocketAddress?)] = [
            ("sip:192.0.2.20:5070", TMT.address("192.0.2.20", 5070)),
            ("sip:192.0.2.21", TMT.address("192.0.2.21")),
            ("sip:192.0.2.20:5070", TMT.address("192.0.2.20", 5070)),
            ("sip:pbx.example.net", TMT.address("192.0.2.77")),
            ("sip:192.0.2.20:5070;maddr=192.0.2.30", TMT.address("192.0.2.30", 5070)),
            ("sip:192.0.2.20:5070", TMT.address("192.0.2.20", 5070)),
            ("sip:127.0.0.1:5060", nil),
            ("sip:127.0.0.1:5060", nil),
            ("sip:192.0.2.20:5070", TMT.address("192.0.2.20", 5070)),
        ]
        for c in cases {
            h.sender.clear()
            let invite = Msg.invite.replacingOccurrences(of: "User-Agent: TestUA/1.0\r\n",
                                                         with: "User-Agent: TestUA/1.0\r\nX-Next: \(c.next)\r\n")
            try h.route(invite, from: TMT.caller)
            #expect(TMT.v(h, "r") == (c.to == nil ? "-1" : "1"), "\(c.next)")
            #expect(h.sender.sent.first?.destination == c.to, "\(c.next)")
        }
    }

    @Test func tRelayHonoursAdvertisedAddressPortAndLocalRportLikeForward() throws {
        let h = try TMT.harness(Self.script)
        try h.route(Self.invite(mode: "forward"), from: TMT.caller)
        #expect(TMT.v(h, "r") == "1")
        let forwarded = try #require(TMT.sent(h, "INVITE").first)
        h.sender.clear()
        try h.route(Self.invite(mode: "relay"), from: TMT.caller)
        #expect(TMT.v(h, "r") == "1")
        let relayed = try #require(TMT.sent(h, "INVITE").first)

        #expect(TMT.header(relayed, "Via")?.hasPrefix("SIP/2.0/UDP proxy.example.net:5099;branch=z9hG4bKtm") == true)
        #expect(TMT.header(relayed, "Via")?.hasSuffix(";rport") == true)
        #expect(TMT.header(relayed, "Record-Route") == "<sip:proxy.example.net:5099;lr;ftag=1928301774>")
        #expect(TMT.header(forwarded, "Via")?.hasPrefix("SIP/2.0/UDP proxy.example.net:5099;branch=z9hG4bKsl") == true)
        // Apart from the branch id (and X-Mode), byte for byte the same request.
        let f = Self.normalized(forwarded.text).replacingOccurrences(of: "X-Mode: forward", with: "X-Mode")
        let r = Self.normalized(relayed.text).replacingOccurrences(of: "X-Mode: relay", with: "X-Mode")
        #expect(f == r)
        #expect(relayed.text.contains(";rport=5060;received=192.0.2.10") || relayed.text.contains(";received=192.0.2.10"))
    }

    @Test func failureRouteBranchKeepsTheAdvertisedAddressOfTheRequestAsRelayed() throws {
        let h = try TMT.harness(Self.script)
        try h.route(Self.invite(mode: "relay"), from: TMT.caller)
        let first = try #require(TMT.sent(h, "INVITE").first)
        h.sender.clear()
        try h.route(TMT.reply(to: first, 503, "Service Unavailable"), from: TMT.address("192.0.2.20"))
        #expect(TMT.v(h, "fr") == "1")
        let retry = try #require(TMT.sent(h, "INVITE").first)
        #expect(retry.destination == TMT.address("192.0.2.20"))
        #expect(TMT.header(retry, "Via")?.hasPrefix("SIP/2.0/UDP proxy.example.net:5099;branch=z9hG4bKtm") == true)
        #expect(TMT.header(retry, "Via")?.hasSuffix(";rport") == true)
        #expect(Self.normalized(retry.text) == Self.normalized(first.text))
    }
}
