import Testing
import SIPCore
import StarlingKEMI
import StarlingTesting

@Suite struct PVExtensionTests {
    @Test("indexed headers and transformations", arguments: [
        ("$(hdr(X-Multi)[0])", "string:one"), ("$(hdr(X-Multi)[1])", "string:two"), ("$(hdr(X-Multi)[-1])", "string:two"),
        ("$(hdr(X-Multi)[2])", "nil:nil"), ("$(hdr(X-Multi)[*])", "string:one, two"), ("$hdrc(X-Multi)", "number:2"),
        ("$hdrc(X-None)", "number:0"),
        ("$(ru{s.len})", "number:19"), ("$(ru)", "string:sip:bob@example.com"), ("$(sp)", "number:5060"), ("$(rm{s.tolower})", "string:invite"), ("$(fU{s.toupper})", "string:ALICE"),
        ("$(ru{uri.user})", "string:bob"), ("$(ru{uri.host})", "string:example.com"),
        ("$(ci{s.substr,0,3})", "string:a84"), ("$(ci{s.substr,-4,0})", "string:pc33"),
        ("$(hdr(Via){param.value,branch})", "string:z9hG4bK776asdhds"), ("$(ct{s.len})", "number:27"),
        ("$(hdr(X-Multi)[1]{s.toupper})", "string:TWO"), ("$(du{s.len})", "nil:nil"),
        ("$ct", "string:<sip:alice@192.0.2.10:5060>"), ("$cT", "string:application/sdp"), ("$cl", "number:4"),
        ("$sel(via[1].host)", "string:192.0.2.10"), ("$sel(via[1].branch)", "string:z9hG4bK776asdhds"),
        ("$sel(via[1].port)", "number:5060"), ("$sel(via[2].host)", "nil:nil"), ("$sel(ruri.user)", "string:bob"),
        ("$sel(from.tag)", "string:1928301774"), ("$sel(to.uri)", "string:sip:bob@example.com"),
        ("$sel(call_id)", "string:a84b4c76e66710@pc33"), ("$sel(cseq.method)", "string:INVITE"),
        ("$sel(cseq.num)", "string:314159"), ("$sel(contact.uri)", "string:sip:alice@192.0.2.10:5060"),
        ("$au", "nil:nil"), ("$ar", "nil:nil"), ("$ad", "nil:nil"),
        // name-addr, To-body, param and line transformations (Kamailio 5.6 pv_trans.c)
        ("$(ct{nameaddr.uri})", "string:sip:alice@192.0.2.10:5060"), ("$(ct{nameaddr.uri}{uri.host})", "string:192.0.2.10"),
        ("$(ct{nameaddr.uri}{uri.port})", "string:5060"), ("$(ct{nameaddr.name})", "string:"), ("$(ct{nameaddr.len})", "number:27"),
        ("$(hdr(From){nameaddr.name})", "string:\"Alice\""), ("$(hdr(From){nameaddr.uri})", "string:sip:alice@atlanta.example.com"),
        ("$(hdr(From){tobody.tag})", "string:1928301774"), ("$(hdr(From){tobody.user})", "string:alice"),
        ("$(hdr(From){tobody.host})", "string:atlanta.example.com"), ("$(hdr(From){tobody.params})", "string:tag=1928301774"),
        ("$(hdr(From){tobody.display})", "string:\"Alice\""), ("$(hdr(To){tobody.uri})", "string:sip:bob@example.com"),
        ("$(hdr(To){tobody.tag})", "string:"),
        ("$(rb{line.count})", "number:1"), ("$(rb{line.at,0})", "string:v=0\r"), ("$(rb{line.sw,v=})", "string:v=0\r"),
        ("$(rb{line.sw,m=})", "string:"),
    ])
    func getter(_ pv: String, _ expected: String) throws {
        #expect(try evalValue("KSR.pv.get(\"\(pv)\")") == expected)
    }

    @Test func paramTransformations() throws {
        let before = "KSR.pv.sets(\"$var(p)\", \"a=1;rport;c=3\")"
        #expect(try evalValue("KSR.pv.get(\"$(var(p){param.in,rport})\")", before: before) == "number:1")
        #expect(try evalValue("KSR.pv.get(\"$(var(p){param.in,x})\")", before: before) == "number:0")
        #expect(try evalValue("KSR.pv.get(\"$(var(p){param.name,1})\")", before: before) == "string:rport")
        #expect(try evalValue("KSR.pv.get(\"$(var(p){param.valueat,2})\")", before: before) == "string:3")
        #expect(try evalValue("KSR.pv.get(\"$(var(p){param.value,c})\")", before: before) == "string:3")
    }

    @Test func invalidNames() throws {
        #expect(try evalValue("KSR.pv.get(\"$(ru{s.bogus})\")") == "nil:nil")
        #expect(try evalValue("KSR.pv.get(\"$(hdr(X)[x])\")") == "nil:nil")
        #expect(try evalValue("KSR.pv.is_null(\"$(ru{uri.user})\")") == "boolean:false")
    }

    @Test func sharedVariablesAcrossWorkers() throws {
        let a = try ScriptHarness(script: "function ksr_request_route() KSR.pv.sets(\"$shv(pvext)\", \"shared\") end")
        try a.route(Msg.invite)
        // a second harness has its own worker locals but the same process-wide $shv
        #expect(try evalValue("KSR.pv.get(\"$shv(pvext)\")") == "string:shared")
        #expect(try evalValue("KSR.pv.get(\"$shv(pvext_none)\")") == "nil:nil")
        #expect(try evalValue("KSR.pv.get(\"$shv(pvext_i)\")", before: "KSR.pv.seti(\"$shv(pvext_i)\", 3)") == "number:3")
    }

    @Test func xavp() throws {
        #expect(try evalValue("KSR.pv.get(\"$xavp(r=>a)\")", before: "KSR.pv.sets(\"$xavp(r=>a)\", \"1\")") == "string:1")
        #expect(try evalValue("KSR.pv.get(\"$xavp(r[0]=>b)\")",
                              before: "KSR.pv.sets(\"$xavp(r=>a)\", \"1\"); KSR.pv.seti(\"$xavp(r[0]=>b)\", 2)") == "number:2")
        #expect(try evalValue("KSR.pv.get(\"$xavp(r[1]=>a)\")",
                              before: "KSR.pv.sets(\"$xavp(r=>a)\", \"old\"); KSR.pv.sets(\"$xavp(r)\", \"x\"); KSR.pv.sets(\"$xavp(r[0]=>a)\", \"n\")") == "string:old")
        #expect(try evalValue("KSR.pv.get(\"$xavp(r=>a)\")", before: "KSR.pv.sets(\"$xavp(r=>a)\", \"1\"); KSR.pv.unset(\"$xavp(r)\")") == "nil:nil")
        #expect(try evalValue("KSR.pv.get(\"$xavp(none=>a)\")") == "nil:nil")
    }

    @Test func avpIndexes() throws {
        let before = "KSR.pv.sets(\"$avp(a)\", \"1\"); KSR.pv.sets(\"$avp(a)\", \"2\")"
        #expect(try evalValue("KSR.pv.get(\"$(avp(a)[0])\")", before: before) == "string:2")
        #expect(try evalValue("KSR.pv.get(\"$(avp(a)[1])\")", before: before) == "string:1")
        #expect(try evalValue("KSR.pv.get(\"$avp(a)\")", before: before + "; KSR.pv.unset(\"$(avp(a)[*])\")") == "nil:nil")
    }

    @Test func time() throws {
        let tf = try evalValue("KSR.pv.get(\"$TF\")")
        #expect(tf.hasPrefix("string:") && tf.count > 20)
        #expect(try evalValue("KSR.pv.get(\"$time(%Y)\")").hasPrefix("string:20"))
        #expect(try evalValue("string.find(KSR.pv.get(\"$TV(Sn)\"), \"^%d+%.%d%d%d%d%d%d$\") ~= nil") == "boolean:true")
        #expect(try evalValue("KSR.pv.sets(\"$TF\", \"x\")") == "boolean:false")
    }

    @Test func varStillDefaultsToIntegerZero() throws {
        #expect(try evalValue("KSR.pv.get(\"$var(fresh)\")") == "number:0")
        #expect(try evalValue("KSR.pv.get(\"$vn(fresh)\")") == "nil:nil")
        #expect(try evalValue("KSR.pv.get(\"$vn(x)\")", before: "KSR.pv.seti(\"$vn(x)\", 5)") == "number:5")
        #expect(try evalValue("KSR.pv.get(\"$vn(x)\")", before: "KSR.pv.seti(\"$vn(x)\", 5); KSR.pv.unset(\"$vn(x)\")") == "nil:nil")
    }

    @Test func firstBranch() throws {
        #expect(try evalValue("KSR.pv.get(\"$br\")") == "nil:nil")
        #expect(try evalValue("KSR.pv.get(\"$br\")", before: "KSR.corex.append_branch_uri(\"sip:c@example.com\")") == "string:sip:c@example.com")
        #expect(try evalValue("KSR.pv.get(\"$br\")", before: "KSR.pv.sets(\"$br\", \"sip:d@example.com\")") == "string:sip:d@example.com")
        #expect(try evalValue("KSR.pv.sets(\"$br\", \"nope\")") == "boolean:false")
    }
}
