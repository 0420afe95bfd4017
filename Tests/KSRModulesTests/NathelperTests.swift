import Testing
import Foundation
import SIPCore
import SIPTransport
import StarlingKEMI
import StarlingTesting
import KSRModules

private enum NatMsg {
    static func invite(via: String = "192.168.1.5:5060", contact: String = "<sip:alice@192.168.1.5:5060>",
                       ruri: String = "sip:bob@example.com", sdpAddress: String? = nil) -> String {
        var body = ""
        if let sdpAddress {
            body = "v=0\r\no=alice 1 1 IN IP4 \(sdpAddress)\r\ns=-\r\nc=IN IP4 \(sdpAddress)\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
        }
        return "INVITE \(ruri) SIP/2.0\r\nVia: SIP/2.0/UDP \(via);branch=z9hG4bKnat1;rport\r\nMax-Forwards: 70\r\n"
            + "From: <sip:alice@example.com>;tag=1\r\nTo: <sip:bob@example.com>\r\nCall-ID: nat1\r\nCSeq: 1 INVITE\r\n"
            + "Contact: \(contact)\r\n" + (sdpAddress != nil ? "Content-Type: application/sdp\r\n" : "")
            + "Content-Length: \(body.utf8.count)\r\n\r\n" + body
    }

    static let register = "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.168.1.5:5060;branch=z9hG4bKreg1\r\n"
        + "From: <sip:alice@example.com>;tag=1\r\nTo: <sip:alice@example.com>\r\nCall-ID: reg1\r\nCSeq: 1 REGISTER\r\n"
        + "Contact: <sip:alice@192.168.1.5:5060>;expires=60\r\nContent-Length: 0\r\n\r\n"
}

/// The NAT'd phone as seen from the proxy.
private let natSource = SocketAddress(ip: "203.0.113.5", port: 40000)!

extension ModuleScript {
    /// The message the script forwarded last (scripts end with `KSR.forward()` to a fixed $du).
    var sent: SIPMessage? { h.sender.sent.last?.message }
}

/// Forwards the message with its edits to a fixed next hop, so a test can read what was sent.
private let forward = "\nKSR.setdsturi(\"sip:198.51.100.99:5060\"); KSR.forward()"

private final class NatTest {
    let h: ScriptHarness

    init(params: [String: [String: [String]]] = [:]) throws {
        let script = """
            function test_flags()
              KSR.pv.seti("$var(out)", KSR.nathelper.nat_uac_test(KSR.pv.get("$var(flags)")))
            end
            function test_register()
              KSR.nathelper.fix_nated_register()
              KSR.pv.sets("$var(rcv)", KSR.pv.get("$avp(RECEIVED)"))
            end
            function ksr_request_route() end
            """
        h = try ScriptHarness(script: script, config: ModuleConfiguration(params: params))
    }

    /// nat_uac_test(flags) on `message` received from `source` over `proto`.
    func natTest(_ flags: Int, _ message: String, from source: SocketAddress = natSource, proto: SIPTransportProtocol = .udp,
                 du: String? = nil) throws -> Int {
        let m = try SIPMessage.parse(Array(message.utf8), limits: .default, datagram: true)
        h.prepare(m, from: source)
        h.context.received.proto = proto
        if let du { h.context.destinationURI = Array(du.utf8) }
        h.context.worker.vars["flags"] = .int(flags)
        h.call("test_flags")
        guard case .int(let v)? = h.context.worker.vars["out"] else { return 0 }
        return v
    }
}

@Suite struct NathelperTests {
    @Test func natUACTestEachBit() throws {
        let t = try NatTest()
        let pub = "198.51.100.1:5060"
        let src = SocketAddress(ip: "198.51.100.1", port: 5060)!
        // 1: Contact private
        #expect(try t.natTest(1, NatMsg.invite()) == 1)
        #expect(try t.natTest(1, NatMsg.invite(contact: "<sip:alice@\(pub)>")) == -1)
        // 2: Via address is not the source
        #expect(try t.natTest(2, NatMsg.invite()) == 1)
        #expect(try t.natTest(2, NatMsg.invite(via: pub), from: src) == -1)
        // 4: Via private
        #expect(try t.natTest(4, NatMsg.invite(), from: src) == 1)
        #expect(try t.natTest(4, NatMsg.invite(via: pub)) == -1)
        // 8: SDP private
        #expect(try t.natTest(8, NatMsg.invite(sdpAddress: "10.0.0.7")) == 1)
        #expect(try t.natTest(8, NatMsg.invite(sdpAddress: "198.51.100.9")) == -1)
        #expect(try t.natTest(8, NatMsg.invite()) == -1)
        // 16: source port is not the Via port
        #expect(try t.natTest(16, NatMsg.invite(via: pub)) == 1)
        #expect(try t.natTest(16, NatMsg.invite(via: pub), from: src) == -1)
        #expect(try t.natTest(16, NatMsg.invite(via: "198.51.100.1"), from: src) == -1)
        // 32: source private
        #expect(try t.natTest(32, NatMsg.invite(), from: SocketAddress(ip: "172.16.5.5", port: 5060)!) == 1)
        #expect(try t.natTest(32, NatMsg.invite()) == -1)
        // 64: WebSocket
        #expect(try t.natTest(64, NatMsg.invite(), proto: .wss) == 1)
        #expect(try t.natTest(64, NatMsg.invite()) == -1)
        // 128: Contact port is not the source port
        #expect(try t.natTest(128, NatMsg.invite(contact: "<sip:alice@\(pub)>")) == 1)
        #expect(try t.natTest(128, NatMsg.invite(contact: "<sip:alice@198.51.100.1>"), from: src) == -1)
        // 256: SDP address is not the source
        #expect(try t.natTest(256, NatMsg.invite(sdpAddress: "198.51.100.9")) == 1)
        #expect(try t.natTest(256, NatMsg.invite(sdpAddress: "203.0.113.5")) == -1)
        // 512: next hop differs from the R-URI
        #expect(try t.natTest(512, NatMsg.invite(ruri: "sip:bob@198.51.100.20:5060"), du: "sip:198.51.100.30:5060") == 1)
        #expect(try t.natTest(512, NatMsg.invite(ruri: "sip:bob@198.51.100.20:5060"), du: "sip:198.51.100.20:5060") == -1)
        // the example's 19 = 1|2|16
        #expect(try t.natTest(19, NatMsg.invite()) == 1)
        #expect(try t.natTest(19, NatMsg.invite(via: pub, contact: "<sip:alice@\(pub)>"), from: src) == -1)
    }

    @Test func receivedAVPCarriesTheTransport() throws {
        let t = try NatTest(params: ["nathelper": ["received_avp": ["$avp(RECEIVED)"]]])
        for (proto, expected) in [(SIPTransportProtocol.udp, "sip:203.0.113.5:40000"), (.tcp, "sip:203.0.113.5:40000;transport=tcp"),
                                  (.tls, "sip:203.0.113.5:40000;transport=tls")] {
            let m = try SIPMessage.parse(Array(NatMsg.register.utf8), limits: .default, datagram: true)
            t.h.prepare(m, from: natSource)
            t.h.context.received.proto = proto
            t.h.call("test_register")
            #expect(t.h.context.worker.vars["rcv"] == .string(expected))
        }
    }

    @Test func isRFC1918() throws {
        let s = try ModuleScript("""
            for _, ip in ipairs({"10.1.1.1", "172.16.0.1", "172.32.0.1", "192.168.0.1", "100.64.0.1", "100.128.0.1", "8.8.8.8", "x"}) do
              r(KSR.nathelper.is_rfc1918(ip))
            end
            """)
        #expect(try s.run() == "1,1,-1,1,1,-1,-1,-1")
    }

    @Test func fixNatedContactAndRegister() throws {
        let s = try ModuleScript("""
            if KSR.is_REGISTER() then r(KSR.nathelper.fix_nated_register()); r(KSR.pv.get("$avp(RECEIVED)"))
            else r(KSR.nathelper.fix_nated_contact()); r(KSR.pv.get("$ct")) end
            """ + forward, params: ["nathelper": ["received_avp": ["$avp(RECEIVED)"]]])
        #expect(try s.run(NatMsg.register, from: natSource) == "1,sip:203.0.113.5:40000")
        // the edit is deferred: $ct still reads the received Contact
        #expect(try s.run(NatMsg.invite(), from: natSource) == "1,<sip:alice@192.168.1.5:5060>")
        let sent = try #require(s.sent)
        #expect(sent.headerValue(.contact) == "<sip:alice@203.0.113.5:40000>")
        // no Contact
        #expect(try s.run(Msg.options(), from: natSource) == "-1,nil")
    }

    @Test func contactAliasRoundTrip() throws {
        let s = try ModuleScript("""
            if KSR.pv.get("$hdr(X-Op)") == "alias" then
              r(KSR.nathelper.set_contact_alias())
            else
              r(KSR.nathelper.handle_ruri_alias()); r(KSR.pv.get("$du")); r(KSR.pv.get("$ru"))
            end
            """ + forward)
        let invite = NatMsg.invite().replacingOccurrences(of: "Max-Forwards: 70\r\n", with: "Max-Forwards: 70\r\nX-Op: alias\r\n")
        #expect(try s.run(invite, from: natSource) == "1")
        let contact = try #require(s.sent?.headerValue(.contact))
        #expect(contact == "<sip:alice@192.168.1.5:5060;alias=203.0.113.5~40000~1>")
        // a later request to that Contact goes to the alias address, and the alias leaves the R-URI
        let uri = String(contact.dropFirst().dropLast())
        #expect(try s.run(NatMsg.invite(via: "198.51.100.1:5060", ruri: uri)) == "1,sip:203.0.113.5:40000,sip:alice@192.168.1.5:5060")
        #expect(try s.run(NatMsg.invite(via: "198.51.100.1:5060", ruri: "sip:bob@198.51.100.2;transport=tcp")) == "2,nil,sip:bob@198.51.100.2;transport=tcp")
        #expect(try s.run(NatMsg.invite(via: "198.51.100.1:5060", ruri: "sip:bob@198.51.100.2;alias=bad~x~1")) == "-1,nil,sip:bob@198.51.100.2;alias=bad~x~1")
        // TCP alias keeps its transport in $du; parameters after the alias stay
        #expect(try s.run(NatMsg.invite(via: "198.51.100.1:5060", ruri: "sip:bob@10.0.0.1;alias=203.0.113.5~5070~2;x=y"))
                == "1,sip:203.0.113.5:5070;transport=tcp,sip:bob@10.0.0.1;x=y")
    }

    @Test func contactAliasNotNeededAndVariants() throws {
        let s = try ModuleScript("""
            local op = KSR.pv.get("$hdr(X-Op)")
            if op == "trim" then r(KSR.nathelper.set_contact_alias_trim())
            elseif op == "addr" then r(KSR.nathelper.add_contact_alias_addr("198.51.100.50", "5080", "tcp"))
            elseif op == "pv" then r(KSR.nathelper.set_alias_to_pv("$var(target)")); r(KSR.pv.get("$var(target)"))
            else r(KSR.nathelper.add_contact_alias()) end
            """ + forward)
        func msg(_ op: String, contact: String) -> String {
            NatMsg.invite(contact: contact).replacingOccurrences(of: "Max-Forwards: 70\r\n", with: "Max-Forwards: 70\r\nX-Op: \(op)\r\n")
        }
        // the Contact already is the source: nothing to add
        #expect(try s.run(msg("add", contact: "<sip:alice@203.0.113.5:40000>"), from: natSource) == "2")
        // a Contact without brackets gets them, so the alias stays a URI parameter
        #expect(try s.run(msg("add", contact: "sip:alice@192.168.1.5;expires=30"), from: natSource) == "1")
        #expect(s.sent?.headerValue(.contact) == "<sip:alice@192.168.1.5;alias=203.0.113.5~40000~1>;expires=30")
        #expect(try s.run(msg("trim", contact: "<sip:alice@192.168.1.5;alias=1.2.3.4~5~1>"), from: natSource) == "1")
        #expect(s.sent?.headerValue(.contact) == "<sip:alice@192.168.1.5;alias=203.0.113.5~40000~1>")
        #expect(try s.run(msg("addr", contact: "<sip:alice@192.168.1.5>"), from: natSource) == "1")
        #expect(s.sent?.headerValue(.contact) == "<sip:alice@192.168.1.5;alias=198.51.100.50~5080~2>")
        #expect(try s.run(msg("pv", contact: "<sip:alice@192.168.1.5;alias=203.0.113.5~40000~1>"), from: natSource) == "1,sip:203.0.113.5:40000")
        #expect(try s.run(msg("pv", contact: "<sip:alice@192.168.1.5>"), from: natSource) == "-1,sip:203.0.113.5:40000")  // $var keeps the last value
        #expect(try s.run(Msg.options(), from: natSource) == "-1")
    }

    @Test func addReceivedParam() throws {
        let s = try ModuleScript("r(KSR.nathelper.add_rcv_param(KSR.pv.get(\"$hdr(X-Pos)\") == \"uri\" and 1 or 0))" + forward)
        #expect(try s.run(NatMsg.register, from: natSource) == "1")
        #expect(s.sent?.headerValue(.contact)
                == "<sip:alice@192.168.1.5:5060>;expires=60;received=\"sip:203.0.113.5:40000\"")
        let inURI = NatMsg.register.replacingOccurrences(of: "CSeq: 1 REGISTER\r\n", with: "CSeq: 1 REGISTER\r\nX-Pos: uri\r\n")
        #expect(try s.run(inURI, from: natSource) == "1")
        #expect(s.sent?.headerValue(.contact)
                == "<sip:alice@192.168.1.5:5060;received=sip:203.0.113.5:40000>;expires=60")
    }

    @Test func fixNatedSDP() throws {
        let s = try ModuleScript("""
            if KSR.pv.get("$hdr(X-Ip)") then r(KSR.nathelper.fix_nated_sdp_ip(10, KSR.pv.get("$hdr(X-Ip)")))
            else r(KSR.nathelper.fix_nated_sdp(3)) end
            r(KSR.pv.get("$rb"))
            """ + forward)
        let out = try s.run(NatMsg.invite(sdpAddress: "192.168.1.5"), from: natSource)
        // $rb is the received body (the change is deferred)
        #expect(out.hasPrefix("1,v=0\r\no=alice 1 1 IN IP4 192.168.1.5\r\n"))
        let sent = try #require(s.sent)
        #expect(sent.string(sent.bodyRange) == "v=0\r\no=alice 1 1 IN IP4 192.168.1.5\r\ns=-\r\nc=IN IP4 203.0.113.5\r\nt=0 0\r\na=direction:active\r\nm=audio 4000 RTP/AVP 0\r\n")
        let withIP = NatMsg.invite(sdpAddress: "192.168.1.5").replacingOccurrences(of: "CSeq: 1 INVITE\r\n", with: "CSeq: 1 INVITE\r\nX-Ip: 198.51.100.77\r\n")
        #expect(try s.run(withIP, from: natSource).hasPrefix("1,"))
        let sent2 = try #require(s.sent)
        #expect(sent2.string(sent2.bodyRange) == "v=0\r\no=alice 1 1 IN IP4 198.51.100.77\r\ns=-\r\nc=IN IP4 198.51.100.77\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n")
        // no body
        #expect(try s.run(NatMsg.invite(), from: natSource) == "-1,nil")
    }
}
