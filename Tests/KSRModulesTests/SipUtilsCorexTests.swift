#if canImport(Glibc)
import Glibc
#endif
import Testing
import SIPCore
import SIPTransport
import StarlingKEMI
import StarlingTesting

@Suite struct SipUtilsTests {
    @Test func messageType() throws {
        #expect(try evalValue("KSR.siputils.has_totag()") == "number:-1")
        #expect(try evalValue("KSR.siputils.has_totag()", Msg.ringing) == "number:1")
        #expect(try evalValue("KSR.siputils.is_request()") == "number:1")
        #expect(try evalValue("KSR.siputils.is_reply()") == "number:-1")
        #expect(try evalValue("KSR.siputils.is_reply()", Msg.ringing) == "number:1")
        #expect(try evalValue("KSR.siputils.is_first_hop()") == "number:1")
        #expect(try evalValue("KSR.siputils.is_first_hop_mode(0)") == "number:1")
        let twoVias = Msg.invite.replacingFirst("Max-Forwards", with: "Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKx\r\nMax-Forwards")
        #expect(try evalValue("KSR.siputils.is_first_hop()", twoVias) == "number:-1")
        #expect(try evalValue("KSR.siputils.is_first_hop()", Msg.ringing) == "number:-1")
    }

    @Test func characterClasses() throws {
        #expect(try evalValue("KSR.siputils.is_uri(\"sip:a@b\")") == "number:1")
        #expect(try evalValue("KSR.siputils.is_uri(\"nope\")") == "number:-1")
        #expect(try evalValue("KSR.siputils.is_user(\"alice\")") == "number:-1")
        #expect(try evalValue("KSR.siputils.is_tel_number(\"+4930123\")") == "number:1")
        #expect(try evalValue("KSR.siputils.is_tel_number(\"49a\")") == "number:-2")
        #expect(try evalValue("KSR.siputils.is_tel_number(\"+049\")") == "number:-2")
        #expect(try evalValue("KSR.siputils.is_tel_number(\"0049\")") == "number:1")
        #expect(try evalValue("KSR.siputils.is_tel_number(\"\")") == "number:-2")
        #expect(try evalValue("KSR.siputils.is_numeric(\"0123\")") == "number:1")
        #expect(try evalValue("KSR.siputils.is_numeric(\"+1\")") == "number:-2")
        #expect(try evalValue("KSR.siputils.is_alphanum(\"abC1\")") == "number:1")
        #expect(try evalValue("KSR.siputils.is_alphanum(\"a-b\")") == "number:-3")
        #expect(try evalValue("KSR.siputils.is_alphanumex(\"a-b\", \"-\")") == "number:1")
        #expect(try evalValue("KSR.siputils.is_alphanumex(\"a.b\", \"-\")") == "number:-3")
    }

    @Test func uriParams() throws {
        let m = Msg.options("sip:127.0.0.1:5060;lr;nat=yes")
        #expect(try evalValue("KSR.siputils.uri_param(\"lr\")", m) == "number:1")
        #expect(try evalValue("KSR.siputils.uri_param(\"nat\")", m) == "number:-1")
        #expect(try evalValue("KSR.siputils.uri_param_value(\"nat\", \"yes\")", m) == "number:1")
        #expect(try evalValue("KSR.siputils.uri_param_value(\"nat\", \"no\")", m) == "number:-1")
        #expect(try evalValue("KSR.siputils.uri_param_any(\"nat\")", m) == "number:1")
        #expect(try evalValue("KSR.siputils.uri_param_any(\"x\")", m) == "number:-1")
        #expect(try evalValue("KSR.pv.get(\"$ru\")", m, before: "KSR.siputils.uri_param_rm(\"nat\")") == "string:sip:127.0.0.1:5060;lr")
        #expect(try evalValue("KSR.siputils.uri_param_rm(\"zz\")", m) == "number:1")
        #expect(try evalValue("KSR.siputils.add_uri_param(\"\")", m) == "number:1")
        let (r, wire) = try evalForward("KSR.siputils.add_uri_param(\"x=1\")")
        #expect(r == "number:1")
        #expect(wire.hasPrefix("INVITE sip:bob@example.com;x=1 SIP/2.0\r\n"))
        #expect(try evalValue("KSR.pv.get(\"$ru\")", m, before: "KSR.siputils.add_uri_param(\"y\")") == "string:sip:127.0.0.1:5060;lr;nat=yes;y")
    }

    @Test func telAndE164() throws {
        #expect(try evalValue("KSR.pv.get(\"$var(t)\")", before: "KSR.siputils.tel2sip(\"tel:+1-201-555-0123;Ext=1-2\", \"example.com\", \"$var(t)\")")
                == "string:sip:+12015550123;ext=1-2@example.com;user=phone")
        #expect(try evalValue("KSR.siputils.tel2sip(\"sip:a@b\", \"example.com\", \"$var(t)\")") == "number:2")
        #expect(try evalValue("KSR.siputils.is_uri_user_e164(\"sip:+4930123@x\")") == "number:1")
        #expect(try evalValue("KSR.siputils.is_uri_user_e164(\"sip:4930123@x\")") == "number:-1")
    }

    @Test func optionsReply() throws {
        let (r, h) = try eval("KSR.siputils.options_reply()", Msg.options())
        #expect(r == "number:1")
        let text = try #require(h.sender.sent.first?.text)
        #expect(text.hasPrefix("SIP/2.0 200 OK\r\n"))
        #expect(text.contains("Allow: INVITE, ACK, CANCEL, OPTIONS, BYE\r\n") && text.contains("Accept: */*\r\n"))
        #expect(try evalValue("KSR.siputils.options_reply()", Msg.options("sip:u@127.0.0.1")) == "number:-1")
        #expect(try evalValue("KSR.siputils.options_reply()") == "number:-1")
    }

    @Test func compare() throws {
        #expect(try evalValue("KSR.siputils.cmp_uri(\"sip:a@EXAMPLE.com\", \"sip:a@example.com\")") == "number:1")
        #expect(try evalValue("KSR.siputils.cmp_uri(\"sip:a@example.com\", \"sip:b@example.com\")") == "number:-1")
        #expect(try evalValue("KSR.siputils.cmp_uri(\"bad\", \"sip:b@example.com\")") == "number:-2")
        #expect(try evalValue("KSR.siputils.cmp_aor(\"sip:a@example.com;x=1\", \"sip:a@example.com:5060\")") == "number:1")
        #expect(try evalValue("KSR.siputils.cmp_aor(\"sip:a@example.com\", \"sip:a@example.net\")") == "number:-1")
        #expect(try evalValue("KSR.siputils.cmp_hdr_name(\"f\", \"From\")") == "number:1")
        #expect(try evalValue("KSR.siputils.cmp_hdr_name(\"X-A\", \"x-a\")") == "number:1")
        #expect(try evalValue("KSR.siputils.cmp_hdr_name(\"To\", \"From\")") == "number:-1")
    }

    @Test func gruuAndDate() throws {
        #expect(try evalValue("KSR.siputils.is_gruu()", Msg.options("sip:127.0.0.1;gr=urn:uuid:1")) == "number:1")
        #expect(try evalValue("KSR.siputils.is_gruu()", Msg.options("sip:127.0.0.1;gr")) == "number:2")
        #expect(try evalValue("KSR.siputils.is_gruu()") == "number:-1")
        #expect(try evalValue("KSR.siputils.hdr_date_check(60)", Msg.options(extra: "Date: Sat, 13 Nov 2010 23:29:00 GMT\r\n")) == "number:-1")
        #expect(try evalValue("KSR.siputils.hdr_date_check(2000000000)", Msg.options(extra: "Date: Sat, 13 Nov 2010 23:29:00 GMT\r\n")) == "number:1")
        #expect(try evalValue("KSR.siputils.hdr_date_check(60)") == "number:-1")
    }

    @Test func contactParams() throws {
        let (r, wire) = try evalForward("KSR.siputils.contact_param_encode(\"tgh\", \"sip:127.0.0.1:5060\")")
        #expect(r == "number:1")
        #expect(wire.contains("Contact: <sip:127.0.0.1:5060;tgh=c2lwOmFsaWNlQDE5Mi4wLjIuMTA6NTA2MA>\r\n"))
        let encoded = Msg.options("sip:127.0.0.1:5060;tgh=c2lwOmFsaWNlQDE5Mi4wLjIuMTA6NTA2MA",
                                  extra: "Contact: <sip:127.0.0.1:5060;tgh=c2lwOmFsaWNlQDE5Mi4wLjIuMTA6NTA2MA>\r\n")
        #expect(try evalValue("KSR.pv.get(\"$ru\")", encoded, before: "KSR.siputils.contact_param_decode_ruri(\"tgh\")") == "string:sip:alice@192.0.2.10:5060")
        #expect(try evalValue("KSR.siputils.contact_param_decode(\"tgh\")", encoded) == "number:1")
        #expect(try evalValue("KSR.siputils.contact_param_rm(\"tgh\")", encoded) == "number:1")
        #expect(try evalValue("KSR.siputils.contact_param_rm(\"tgh\")") == "number:-1")
    }

    @Test func contactEncoding() throws {
        let (r, wire) = try evalForward("KSR.siputils.encode_contact(\"enc\", \"203.0.113.1\")")
        #expect(r == "number:1")
        #expect(wire.contains("Contact: <sip:enc*alice**192.0.2.10*5060*@203.0.113.1>\r\n"))
        let encoded = Msg.options("sip:enc*alice**192.0.2.10*5060*tcp@203.0.113.1;lr",
                                  extra: "Contact: <sip:enc*alice**192.0.2.10*5060*@203.0.113.1>\r\n")
        #expect(try evalValue("KSR.pv.get(\"$ru\")", encoded, before: "KSR.siputils.decode_contact()")
                == "string:sip:alice@192.0.2.10:5060;transport=tcp;lr")
        #expect(try evalValue("KSR.siputils.decode_contact()") == "number:-1")
        #expect(try evalValue("KSR.siputils.decode_contact_header()", encoded) == "number:1")
        #expect(try evalValue("KSR.siputils.decode_contact_header()") == "number:-1")
        #expect(try evalValue("KSR.siputils.encode_contact(\"enc\", \"1.2.3.4\")", Msg.options()) == "number:-1")
    }
}

@Suite struct CorexTests {
    @Test func userAndUserAgent() throws {
        #expect(try evalValue("KSR.corex.has_ruri_user()") == "number:1")
        #expect(try evalValue("KSR.corex.has_ruri_user()", Msg.options()) == "number:-1")
        #expect(try evalValue("KSR.corex.has_user_agent()") == "number:1")
        #expect(try evalValue("KSR.corex.has_user_agent()", Msg.options()) == "number:-1")
    }

    @Test func branches() throws {
        let (r, h) = try eval("KSR.corex.append_branch()")
        #expect(r == "number:1")
        #expect(h.context.branches.map { String(decoding: $0, as: UTF8.self) } == ["sip:bob@example.com"])
        let (r2, h2) = try eval("KSR.corex.append_branch_uri(\"sip:carol@example.com\")")
        #expect(r2 == "number:1")
        #expect(h2.context.branches.count == 1)
        #expect(try evalValue("KSR.corex.append_branch_uri(\"nope\")") == "number:-1")
        #expect(try evalValue("KSR.corex.append_branch_uri_q(\"sip:c@example.com\", \"0.5\")") == "number:1")
        #expect(try evalValue("KSR.corex.append_branch_uri_q(\"sip:c@example.com\", \"7\")") == "number:-1")
    }

    @Test func xflags() throws {
        #expect(try evalValue("KSR.corex.isxflagset(40)", before: "KSR.corex.setxflag(40)") == "number:1")
        #expect(try evalValue("KSR.corex.isxflagset(40)", before: "KSR.corex.setxflag(40); KSR.corex.resetxflag(40)") == "number:-1")
        #expect(try evalValue("KSR.corex.setxflag(64)") == "number:-1")
    }

    @Test func sendData() throws {
        let (r, h) = try eval("KSR.corex.send_data(\"sip:192.0.2.50:5070\", \"hello\")")
        #expect(r == "number:1")
        let sent = try #require(h.sender.sent.first)
        #expect(sent.text == "hello")
        #expect(sent.destination == SocketAddress(ip: "192.0.2.50", port: 5070))
        let (r2, h2) = try eval("KSR.corex.sendx(\"sip:192.0.2.51\", \"udp:127.0.0.1:5060\", \"x\")")
        #expect(r2 == "number:1")
        #expect(h2.sender.sent.first?.destination == SocketAddress(ip: "192.0.2.51", port: 5060))
        #expect(try evalValue("KSR.corex.send_data(\"sip:unknown.invalid\", \"x\")") == "number:-1")
    }

    @Test func files() throws {
        let path = "/tmp/starling-corex-\(getpid()).txt"
        defer { unlink(path) }
        #expect(try evalValue("KSR.corex.file_write(\"\(path)\", \"data\")") == "number:1")
        #expect(try evalValue("KSR.corex.file_read(\"\(path)\")") == "string:data")
        #expect(try evalValue("KSR.corex.file_read(\"/nonexistent/x\")") == "nil:nil")
    }

    @Test func unsupported() throws {
        #expect(try evalValue("KSR.corex.is_faked_msg()") == "number:-1")
        for f in ["via_add_srvid(1)", "via_add_xavp_params(1)", "via_use_xavp_fields(1)", "is_socket_name(\"x\")"] {
            #expect(try evalValue("KSR.corex.\(f)") == "number:-1")
        }
    }
}

@Suite struct CoreMoreTests {
    @Test func branchIndexFlags() throws {
        #expect(try evalValue("KSR.isbiflagset(3, 0)", before: "KSR.setbiflag(3, 0)") == "boolean:true")
        #expect(try evalValue("KSR.isbflagset(3)", before: "KSR.setbiflag(3, 0)") == "boolean:true")
        #expect(try evalValue("KSR.isbiflagset(3, 0)", before: "KSR.setbiflag(3, 0); KSR.resetbiflag(3, 0)") == "boolean:false")
        #expect(try evalValue("KSR.setbiflag(3, 1)") == "boolean:false")
    }

    @Test func nextHopTransport() throws {
        #expect(try evalValue("KSR.to_UDP()", before: "KSR.setdsturi(\"sip:192.0.2.5\")") == "boolean:true")
        #expect(try evalValue("KSR.to_TCP()", before: "KSR.setdsturi(\"sip:192.0.2.5;transport=tcp\")") == "boolean:true")
        #expect(try evalValue("KSR.to_TLS()", before: "KSR.setdsturi(\"sips:192.0.2.5\")") == "boolean:true")
        #expect(try evalValue("KSR.to_WSX()", before: "KSR.setdsturi(\"sip:192.0.2.5;transport=ws\")") == "boolean:true")
        #expect(try evalValue("KSR.to_IPv4()", before: "KSR.setdsturi(\"sip:192.0.2.5\")") == "boolean:true")
        #expect(try evalValue("KSR.to_IPv6()", before: "KSR.setdsturi(\"sip:[2001:db8::1]\")") == "boolean:true")
        #expect(try evalValue("KSR.to_SCTP()") == "boolean:false")
        #expect(try evalValue("KSR.to_WS()") == "boolean:false")
        #expect(try evalValue("KSR.to_WSS()") == "boolean:false")
    }

    @Test func settingsWithoutEffect() throws {
        for f in ["set_forward_close", "set_forward_no_connect", "set_reply_close", "set_reply_no_connect", "add_local_rport"] {
            #expect(try evalValue("KSR.\(f)()") == "boolean:true")
        }
        #expect(try evalValue("KSR.set_advertised_address(\"1.2.3.4\")") == "number:1")
        #expect(try evalValue("KSR.set_advertised_port(\"5080\")") == "number:1")
        #expect(try evalValue("KSR.add_tcp_alias(5060)") == "number:-1")
        #expect(try evalValue("KSR.add_tcp_alias_via()") == "number:-1")
        #expect(try evalValue("KSR.route(\"WITHINDLG\")") == "number:-1")
    }
}

extension String {
    func replacingFirst(_ needle: String, with rep: String) -> String {
        guard let r = firstRange(of: needle) else { return self }
        return String(self[..<r.lowerBound]) + rep + String(self[r.upperBound...])
    }
}
