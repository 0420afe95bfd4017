#if canImport(Glibc)
import Glibc
#endif
import Testing
import SIPCore
import SIPTransport
import StarlingKEMI
import StarlingTesting
@testable import KSRModules

@Suite struct XLogTests {
    @Test func returnsOne() throws {
        for f in ["xdbg", "xinfo", "xnotice", "xwarn", "xerr", "xalert", "xcrit"] {
            #expect(try evalValue("KSR.xlog.\(f)(\"$rm from $si:$sp\\n\")") == "number:1")
        }
        #expect(try evalValue("KSR.xlog.xlog(\"L_INFO\", \"$rm\\n\")") == "number:1")
        #expect(try evalValue("KSR.xlog.xlog(\"L_BOGUS\", \"x\")") == "number:1")
        #expect(try evalValue("KSR.xlog.xinfo()") == "boolean:false")
    }

    @Test func formatExpandsPseudoVariables() throws {
        let (_, h) = try eval("1", before: "KSR.pv.sets(\"$var(x)\", \"vx\")")
        // The dispatcher clears the current message after routing; make it current again.
        h.prepare(try SIPMessage.parse(Msg.invite))
        let ctx = h.context
        #expect(XLogModule.render(ctx, "$rm from $si:$sp\n") == "INVITE from 192.0.2.10:5060\n")
        #expect(XLogModule.render(ctx, "[$var(x)] [$hdr(X-Multi)] [$(hdr(X-Multi)[1])] [$(ru{uri.user})]") == "[vx] [one] [two] [bob]")
        #expect(XLogModule.render(ctx, "$du|$bogus|$$|50$") == "<null>|<null>|$|50$")
        #expect(XLogModule.render(ctx, "$ci;$cs;$var(never)") == "a84b4c76e66710@pc33;314159;0")
        #expect(XLogModule.render(ctx, "no pv") == "no pv")
    }

    @Test func formatsAreCompiledOncePerWorker() throws {
        let (_, h) = try eval("KSR.xlog.xinfo(\"$rm $ru\")")
        _ = XLogModule.render(h.context, "$rm $ru")
        let cache = h.context.worker.local(XLogCache.self) { XLogCache() }
        #expect(cache.formats.count == 1)
        #expect(cache.formats["$rm $ru"]?.segments.count == 3)
    }
}

@Suite struct KxTests {
    @Test("getters", arguments: [
        ("get_ruri", "string:sip:bob@example.com"), ("get_ouri", "string:sip:bob@example.com"),
        ("get_furi", "string:sip:alice@atlanta.example.com"), ("get_turi", "string:sip:bob@example.com"),
        ("get_nhuri", "string:sip:bob@example.com"), ("get_srcuri", "string:sip:192.0.2.10:5060"),
        ("get_ruser", "string:bob"), ("get_rhost", "string:example.com"), ("get_fuser", "string:alice"),
        ("get_fhost", "string:atlanta.example.com"), ("get_tuser", "string:bob"), ("get_thost", "string:example.com"),
        ("get_duri", "nil:nil"), ("gete_duri", "string:"), ("getw_duri", "string:<null>"),
        ("get_cturi", "string:sip:alice@192.0.2.10:5060"), ("get_au", "nil:nil"), ("gete_au", "string:"),
        ("getw_au", "string:<null>"),
        ("get_srcip", "string:192.0.2.10"), ("get_srcport", "number:5060"), ("get_srcaddr_sock", "string:udp:192.0.2.10:5060"),
        ("get_rcvip", "string:127.0.0.1"), ("get_rcvport", "number:5060"), ("get_rcv_sock_name", "nil:nil"),
        ("get_rcvadvip", "string:127.0.0.1"), ("get_rcvadvport", "number:5060"),
        ("get_rcvaddr_sock", "string:udp:127.0.0.1:5060"), ("get_send_sock", "nil:nil"), ("get_send_sock_name", "nil:nil"),
        ("get_send_sock_port", "number:0"), ("get_proto", "string:udp"), ("get_protoid", "number:1"), ("get_conid", "number:0"),
        ("get_method", "string:INVITE"), ("get_status", "number:-1"), ("gets_status", "string:"),
        ("get_ua", "string:TestUA/1.0"), ("gete_ua", "string:TestUA/1.0"), ("getw_ua", "string:TestUA/1.0"),
        ("get_callid", "string:a84b4c76e66710@pc33"), ("get_body", "string:v=0\r"), ("get_bodylen", "number:4"),
        ("get_msgtype", "number:1"), 
    ])
    func getter(_ fn: String, _ expected: String) throws {
        #expect(try evalValue("KSR.kx.\(fn)()") == expected)
    }

    @Test func nullVariants() throws {
        let m = Msg.options()  // no User-Agent, no body, no user in the R-URI
        #expect(try evalValue("KSR.kx.get_ua()", m) == "nil:nil")
        #expect(try evalValue("KSR.kx.gete_ua()", m) == "string:")
        #expect(try evalValue("KSR.kx.getw_ua()", m) == "string:<null>")
        #expect(try evalValue("KSR.kx.get_body()", m) == "nil:nil")
        #expect(try evalValue("KSR.kx.gete_body()", m) == "string:")
        #expect(try evalValue("KSR.kx.getw_body()", m) == "string:<null>")
        #expect(try evalValue("KSR.kx.get_ruser()", m) == "nil:nil")
        #expect(try evalValue("KSR.kx.gete_ruser()", m) == "string:")
        #expect(try evalValue("KSR.kx.getw_ruser()", m) == "string:<null>")
        let present = ["rhost": "example.com", "fuser": "alice", "fhost": "atlanta.example.com", "tuser": "bob",
                       "thost": "example.com", "cturi": "sip:alice@192.0.2.10:5060"]
        for (x, v) in present {
            #expect(try evalValue("KSR.kx.gete_\(x)()") == "string:\(v)")
            #expect(try evalValue("KSR.kx.getw_\(x)()") == "string:\(v)")
        }
        #expect(try evalValue("KSR.kx.gete_cturi()", m) == "string:")
        #expect(try evalValue("KSR.kx.getw_cturi()", m) == "string:<null>")
        #expect(try evalValue("KSR.kx.gete_rhost()", Msg.ringing) == "string:")
        #expect(try evalValue("KSR.kx.getw_rhost()", Msg.ringing) == "string:<null>")
    }

    @Test func replies() throws {
        #expect(try evalValue("KSR.kx.get_status()", Msg.ringing) == "number:180")
        #expect(try evalValue("KSR.kx.gets_status()", Msg.ringing) == "string:180")
        #expect(try evalValue("KSR.kx.get_ruri()", Msg.ringing) == "nil:nil")
        #expect(try evalValue("KSR.kx.get_method()", Msg.ringing) == "string:INVITE")
        #expect(try evalValue("KSR.kx.get_msgtype()", Msg.ringing) == "number:2")
    }

    @Test func lengthsAndBuffer() throws {
        let n = Msg.invite.utf8.count
        #expect(try evalValue("KSR.kx.get_msglen()") == "number:\(n)")
        #expect(try evalValue("#KSR.kx.get_msgbuf()") == "number:\(n)")
    }

    @Test func destinationAndNextHop() throws {
        #expect(try evalValue("KSR.kx.get_nhuri()", before: "KSR.setdsturi(\"sip:192.0.2.7\")") == "string:sip:192.0.2.7")
        #expect(try evalValue("KSR.kx.get_duri()", before: "KSR.setdsturi(\"sip:192.0.2.7\")") == "string:sip:192.0.2.7")
    }

    @Test func credentials() throws {
        let m = Msg.options(extra: "Proxy-Authorization: Digest username=\"alice@example.com\", realm=\"example.com\", nonce=\"n\", uri=\"sip:x\", response=\"r\"\r\n")
        #expect(try evalValue("KSR.kx.get_au()", m) == "string:alice")
        #expect(try evalValue("KSR.pv.get(\"$aU\")", m) == "string:alice@example.com")
        #expect(try evalValue("KSR.pv.get(\"$ad\")", m) == "string:example.com")
        #expect(try evalValue("KSR.pv.get(\"$ar\")", m) == "string:example.com")
    }

    @Test func definesAndEnvironment() throws {
        let services = TestServices(defines: ["WITH_NAT": "1", "PORT": "5080", "NAME": "edge"])
        #expect(try eval("KSR.kx.ifdef(\"WITH_NAT\")", services: services).0 == "boolean:true")
        #expect(try eval("KSR.kx.ifdef(\"WITH_RTPENGINE\")", services: services).0 == "boolean:false")
        #expect(try eval("KSR.kx.ifndef(\"WITH_RTPENGINE\")", services: services).0 == "boolean:true")
        #expect(try eval("KSR.kx.ifndef(\"WITH_NAT\")", services: services).0 == "boolean:false")
        #expect(try eval("KSR.kx.get_def(\"NAME\")", services: services).0 == "string:edge")
        #expect(try eval("KSR.kx.get_def(\"NOPE\")", services: services).0 == "string:")
        #expect(try eval("KSR.kx.get_defn(\"PORT\")", services: services).0 == "number:5080")
        #expect(try eval("KSR.kx.get_defn(\"NOPE\")", services: services).0 == "number:0")
        setenv("STARLING_KX_TEST", "42", 1)
        #expect(try evalValue("KSR.kx.get_env(\"STARLING_KX_TEST\")") == "string:42")
        #expect(try evalValue("KSR.kx.get_envn(\"STARLING_KX_TEST\")") == "number:42")
        #expect(try evalValue("KSR.kx.get_env(\"STARLING_KX_UNSET\")") == "nil:nil")
        #expect(try evalValue("KSR.kx.get_envn(\"STARLING_KX_UNSET\")") == "number:0")
    }
}

@Suite struct KxTimestampTests {
    @Test func timestampIsReceiveTime() throws {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        let v = try evalValue("KSR.kx.get_timestamp()")
        let n = Int(v.dropFirst("number:".count)) ?? 0
        #expect(abs(n - ts.tv_sec) <= 2, "\(v)")
    }
}
