import Foundation
import SIPCore
import SIPTransport
import StarlingKEMI
import StarlingTesting
import StarlingServer
import Testing

/// Transport-related KSR functions and pseudo-variables on messages that came over connections.
@Suite struct TransportRoutingTests {
    static let peer = SocketAddress(ip: "192.0.2.10", port: 40123)!

    static func options(_ via: String = "TLS") -> String {
        "OPTIONS sip:127.0.0.1:5061 SIP/2.0\r\nVia: SIP/2.0/\(via) 192.0.2.10:40123;branch=z9hG4bKt1\r\n"
            + "From: <sip:a@example.com>;tag=9\r\nTo: <sip:b@example.com>\r\nCall-ID: t1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    }

    static func dispatch(_ h: ScriptHarness, _ text: String, proto: SIPTransportProtocol, connection: UInt64) {
        Array(text.utf8).withUnsafeBytes {
            _ = h.dispatcher.dispatch($0, source: peer, local: h.services.local, proto: proto, connectionID: connection)
        }
    }

    @Test func transportPseudoVariablesAndTLSPeer() throws {
        let services = TestServices(tlsPeers: [42: TLSPeer(verified: true, subjectCN: "alice.test",
                                                            alternativeNames: ["alice.test", "192.0.2.10"], serial: "0A1B")])
        let h = try ScriptHarness(script: """
            function ksr_request_route()
              local info = KSR.pv.get("$pr") .. "|" .. tostring(KSR.pv.get("$conid")) .. "|" .. KSR.tls.is_peer_verified()
                .. "|" .. tostring(KSR.pv.get("$tls_peer_subject_cn")) .. "|" .. tostring(KSR.pv.get("$tls_peer_san_dns"))
                .. "|" .. tostring(KSR.pv.get("$tls_peer_san_ip")) .. "|" .. tostring(KSR.pv.get("$tls_peer_serial"))
                .. "|" .. tostring(KSR.is_TLS()) .. "|" .. tostring(KSR.is_TCP())
              KSR.hdr.append_to_reply("X-Info: " .. info .. "\\r\\n")
              KSR.sl.sl_send_reply(200, "OK")
            end
            """, services: services)
        Self.dispatch(h, Self.options(), proto: .tls, connection: 42)
        let reply = try #require(h.sender.sent.last)
        #expect(reply.proto == .tls && reply.destination == Self.peer)
        #expect(reply.text.contains("X-Info: tls|42|1|alice.test|alice.test|192.0.2.10|0A1B|true|false\r\n"), "\(reply.text)")
        // Over TCP (no TLS facts) and over UDP ($conid null).
        Self.dispatch(h, Self.options("TCP"), proto: .tcp, connection: 43)
        #expect(h.sender.sent.last?.text.contains("X-Info: tcp|43|-1|nil|nil|nil|nil|false|true\r\n") == true, "\(h.sender.sent.last?.text ?? "")")
        try h.route(Self.options("UDP"), from: Self.peer)
        #expect(h.sender.sent.last?.text.contains("X-Info: udp|nil|-1|nil") == true, "\(h.sender.sent.last?.text ?? "")")
    }

    @Test func connectionFlagsAreSetPerMessage() throws {
        let h = try ScriptHarness(script: """
            function ksr_request_route()
              if KSR.pv.get("$rU") == "close" then
                KSR.set_forward_close()
                KSR.set_reply_no_connect()
              else
                KSR.set_forward_no_connect()
                KSR.set_reply_close()
              end
            end
            """)
        Self.dispatch(h, Self.options("TCP").replacingFirst("sip:127.0.0.1:5061", "sip:close@127.0.0.1:5061"), proto: .tcp, connection: 5)
        var f = h.context.connectionFlags
        #expect(f.forwardClose && f.replyNoConnect && !f.forwardNoConnect && !f.replyClose)
        Self.dispatch(h, Self.options("TCP"), proto: .tcp, connection: 5)
        f = h.context.connectionFlags
        #expect(!f.forwardClose && !f.replyNoConnect && f.forwardNoConnect && f.replyClose)
    }

    @Test func transportParameterPicksTheTransportAndVia() throws {
        let h = try ScriptHarness(script: """
            function ksr_request_route()
              KSR.setdsturi(KSR.pv.get("$hdr(X-Next)"))
              KSR.forward()
            end
            """)
        for (next, proto, via) in [("sip:198.51.100.7:5070;transport=tcp", SIPTransportProtocol.tcp, "SIP/2.0/TCP"),
                                   ("sip:198.51.100.7;transport=tls", .tls, "SIP/2.0/TLS"),
                                   ("sips:198.51.100.7", .tls, "SIP/2.0/TLS"),
                                   ("sip:198.51.100.7;transport=ws", .ws, "SIP/2.0/WS"),
                                   ("sip:198.51.100.7:5080", .udp, "SIP/2.0/UDP")] {
            h.sender.clear()
            try h.route(Self.options("UDP").replacingFirst("Content-Length", "X-Next: \(next)\r\nContent-Length"), from: Self.peer)
            let sent = try #require(h.sender.sent.last, "\(next)")
            #expect(sent.proto == proto, "\(next)")
            #expect(sent.text.contains("Via: \(via) 127.0.0.1:5060;branch="), "\(next): \(sent.text)")
            let port: UInt16 = next.contains(":5070") ? 5070 : next.contains(":5080") ? 5080 : proto == .tls ? 5061 : 5060
            #expect(sent.destination == SocketAddress(ip: "198.51.100.7", port: Int(port))!, "\(next)")
        }
    }
}

extension String {
    func replacingFirst(_ a: String, _ b: String) -> String {
        guard let r = range(of: a) else { return self }
        return replacingCharacters(in: r, with: b)
    }
}
