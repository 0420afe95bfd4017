import Testing
import Foundation
import SIPCore
import SIPTransport
import StarlingTesting
import KSRModules

/// tm over reliable transports (RFC 3261 §17): a branch sent over TCP/TLS/WS is never retransmitted
/// (no Timer A/E), and a request received over one gets no reply retransmissions (no Timer G).
@Suite struct TMReliableTransportTests {
    static let script = """
        function ksr_request_route()
          if KSR.is_ACK() then
            if KSR.tm.t_check_trans() > 0 then KSR.tm.t_relay() end
            return
          end
          if KSR.tm.t_check_trans() == 0 then return end
          if KSR.pv.gete("$hdr(X-Reply)") ~= "" then
            KSR.tm.t_newtran()
            KSR.tm.t_reply(486, "Busy Here")
            return
          end
          KSR.setdsturi(KSR.pv.gete("$hdr(X-Next)"))
          KSR.pv.seti("$var(relay)", KSR.tm.t_relay())
        end
        """

    static func invite(_ extra: String, via: String = "UDP") -> String {
        Msg.invite.replacingOccurrences(of: "Via: SIP/2.0/UDP", with: "Via: SIP/2.0/\(via)")
            .replacingOccurrences(of: "User-Agent: TestUA/1.0\r\n", with: "User-Agent: TestUA/1.0\r\n\(extra)\r\n")
    }

    /// The INVITEs sent downstream after the clock moved 5 s (T1 = 500 ms: a UDP branch is resent on
    /// Timer A at 0.5, 1.5, 3.5 s).
    func invitesAfterFiveSeconds(next: String) throws -> [SentMessage] {
        let h = try TMT.harness(Self.script)
        try h.route(Self.invite("X-Next: \(next)"), from: TMT.caller)
        #expect(TMT.v(h, "relay") == "1")
        TMT.run(h, for: .seconds(5))
        return TMT.sent(h, "INVITE")
    }

    @Test func udpBranchIsRetransmittedOnTimerA() throws {
        let sent = try invitesAfterFiveSeconds(next: "sip:192.0.2.20:5060")
        #expect(sent.count >= 4)
        #expect(sent.allSatisfy { $0.proto == .udp })
    }

    @Test(arguments: ["tcp", "tls", "ws"])
    func reliableBranchIsSentOnce(transport: String) throws {
        let sent = try invitesAfterFiveSeconds(next: "sip:192.0.2.20:5060;transport=\(transport)")
        #expect(sent.count == 1)
        #expect(sent.first?.proto == SIPTransportProtocol(name: transport))
    }

    @Test func reliableBranchStillTimesOutOnTimerB() throws {
        // fr_inv_timer is Timer C; Timer B (64*T1) ends an INVITE branch that never got a reply.
        let h = try TMT.harness(Self.script, ["fr_timer": ["2000"], "fr_inv_timer": ["2000"]])
        try h.route(Self.invite("X-Next: sip:192.0.2.20:5060;transport=tcp"), from: TMT.caller)
        h.sender.clear()
        TMT.run(h, for: .seconds(40))
        #expect(TMT.sent(h, "INVITE").isEmpty)
        #expect(h.sender.sent.contains { TMT.status($0) == 408 && $0.destination == TMT.caller })
    }

    @Test func replyToTCPRequestIsNotRetransmitted() throws {
        // A 486 to a request received over UDP is resent on Timer G until the ACK; over TCP it is sent once.
        for (proto, expectMany) in [(SIPTransportProtocol.udp, true), (.tcp, false)] {
            let h = try TMT.harness(Self.script)
            try h.route(Self.invite("X-Reply: yes", via: proto.viaName), from: TMT.caller, proto: proto)
            TMT.run(h, for: .seconds(5))
            let finals = h.sender.sent.filter { TMT.status($0) == 486 }
            if expectMany { #expect(finals.count >= 3, "\(proto)") } else { #expect(finals.count == 1, "\(proto)") }
            #expect(finals.allSatisfy { $0.proto == proto })
        }
    }

    @Test func tcpRequestTransactionEndsAtTheACK() throws {
        // Reliable: Timer I is zero, the transaction is freed as soon as the ACK arrives.
        let h = try TMT.harness(Self.script)
        try h.route(Self.invite("X-Reply: yes", via: "TCP"), from: TMT.caller, proto: .tcp)
        #expect(h.transactions.count == 1)
        let final = try #require(h.sender.sent.first { TMT.status($0) == 486 })
        let toTag = TMT.header(final, "To")?.split(separator: ";").first { $0.hasPrefix("tag=") } ?? ""
        let ack = """
            ACK sip:bob@example.com SIP/2.0\r
            Via: SIP/2.0/TCP 192.0.2.10:5060;branch=z9hG4bK776asdhds;rport\r
            Max-Forwards: 70\r
            To: Bob <sip:bob@example.com>;\(toTag)\r
            From: "Alice" <sip:alice@atlanta.example.com>;tag=1928301774\r
            Call-ID: a84b4c76e66710@pc33\r
            CSeq: 314159 ACK\r
            Content-Length: 0\r
            \r

            """
        try h.route(ack, from: TMT.caller, proto: .tcp)
        #expect(h.transactions.count == 0)
    }
}
