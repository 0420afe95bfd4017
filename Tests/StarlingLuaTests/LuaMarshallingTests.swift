import SIPCore
import StarlingKEMI
import StarlingLua
import Testing

/// Records `type:tostring` of an expression under a key.
private let show = "local function show(x) return type(x) .. ':' .. tostring(x) end\n"

@Suite("KSR marshalling (app_lua argument and return conversion)")
struct LuaMarshallingTests {
    @Test func tooFewOrTooManyArgumentsReturnFalseAndLog() throws {
        let h = try harness(show + route("""
            KSR.test.rec("str0", show(KSR.test.str()))
            KSR.test.rec("two1", show(KSR.test.two("x")))
            KSR.test.rec("int0", show(KSR.test.int()))
            KSR.test.rec("seven", show(KSR.test.str("a", 2, 3, 4, 5, 6, 7)))
            KSR.test.rec("extra", show(KSR.test.str("a", "b")))
            """))
        #expect(h.engine.run(h.engine.requestRoute) == .ok)
        #expect(h.v("str0") == .string("boolean:false"))
        #expect(h.v("two1") == .string("boolean:false"))
        #expect(h.v("int0") == .string("boolean:false"))
        #expect(h.v("seven") == .string("boolean:false"))
        #expect(h.v("extra") == .string("number:1"))
        #expect(h.v("str") == .string("a"))
        let logs = h.logs.all
        #expect(logs.contains { $0.contains("not enough parameters for: KSR.test.str") })
        #expect(logs.contains { $0.contains("not enough parameters for: KSR.test.two") })
        #expect(logs.contains { $0.contains("too many parameters for: KSR.test.str") })
    }

    @Test func intResultsPassThroughAndNegativeIsTruthy() throws {
        let h = try harness(show + route("""
            local r = KSR.test.int(-1)
            KSR.test.rec("neg", show(r) .. ":" .. math.type(r))
            if r then KSR.test.rec("truthy", "yes") end
            KSR.test.rec("zero", show(KSR.test.int(0)))
            KSR.test.rec("big", show(KSR.test.int(404)))
            """))
        #expect(h.engine.run(h.engine.requestRoute) == .ok)
        #expect(h.v("neg") == .string("number:-1:integer"))
        #expect(h.v("truthy") == .string("yes"))
        #expect(h.v("zero") == .string("number:0"))
        #expect(h.v("big") == .string("number:404"))
    }

    @Test func boolAndNoneReturns() throws {
        let h = try harness(show + route("""
            KSR.test.rec("t", show(KSR.test.boolean(1)))
            KSR.test.rec("f", show(KSR.test.boolean(0)))
            KSR.test.rec("core", show(KSR.t_core()))
            KSR.test.rec("n0", show(KSR.test.none0()))
            KSR.test.rec("n1", show(KSR.test.none1("a")))
            """))
        #expect(h.engine.run(h.engine.requestRoute) == .ok)
        #expect(h.v("t") == .string("boolean:true"))
        #expect(h.v("f") == .string("boolean:false"))
        #expect(h.v("core") == .string("boolean:true"))
        #expect(h.v("n0") == .string("boolean:false"))
        #expect(h.v("none0") == .int(1))
        #expect(h.v("n1") == .string("boolean:false"))
    }

    @Test func xvalNullModes() throws {
        let h = try harness(show + route("""
            KSR.test.rec("null", show(KSR.test.xnull()))
            KSR.test.rec("empty", show(KSR.test.xempty()))
            KSR.test.rec("w", show(KSR.test.xnullw()))
            local i = KSR.test.xint()
            KSR.test.rec("int", show(i) .. ":" .. math.type(i))
            local b = KSR.test.xbytes()
            KSR.test.rec("bytes", #b .. ":" .. b:sub(1, 7))
            KSR.test.rec("ruri", show(KSR.test.ruri()))
            """))
        h.ctx.message = try SIPMessage.parse(
            "INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\n"
                + "From: <sip:a@b>;tag=1\r\nTo: <sip:bob@example.com>\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\n"
                + "Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n")
        #expect(h.engine.run(h.engine.requestRoute) == .ok)
        #expect(h.v("null") == .string("nil:nil"))
        #expect(h.v("empty") == .string("string:"))
        #expect(h.v("w") == .string("string:<null>"))
        #expect(h.v("int") == .string("number:7:integer"))
        #expect(h.v("bytes") == .string("5006:bytes-z"))
        #expect(h.v("ruri") == .string("string:sip:bob@example.com"))
    }

    @Test(arguments: [
        ("10/2", "5"), ("2.5", "2.5"), ("-3", "-3"), ("42", "42"), ("-3.0", "-3"), ("1/3", "0.33333333333333"),
        ("1e15", "1e+15"), ("2^53", "9.007199254741e+15"), ("'abc'", "abc"), ("''", ""), ("'a\\0b'", "a\u{0}b"),
    ])
    func numbersBecomeStringsAsInLua51(expr: String, expected: String) throws {
        let h = try harness(route("KSR.test.str(\(expr))"))
        #expect(h.engine.run(h.engine.requestRoute) == .ok)
        #expect(h.v("str") == .string(expected))
    }

    @Test(arguments: ["nil", "true", "false", "{}", "print"])
    func nonStringValuesBecomeNullStrings(expr: String) throws {
        let h = try harness(route("KSR.test.str(\(expr))"))
        #expect(h.engine.run(h.engine.requestRoute) == .ok)
        #expect(h.v("str") == .null)
    }

    @Test(arguments: [
        ("2.9", 2), ("-2.9", -2), ("7", 7), ("-1", -1), ("'404'", 404), ("' 12 '", 12), ("'2.5'", 2), ("'0x10'", 16),
        ("'12abc'", 0), ("nil", 0), ("true", 0), ("{}", 0), ("1e300", 0), ("0/0", 0),
    ])
    func intParamsTruncateAndConvert(expr: String, expected: Int) throws {
        let h = try harness(route("KSR.test.int(\(expr))"))
        #expect(h.engine.run(h.engine.requestRoute) == .ok)
        #expect(h.v("int") == .int(expected))
    }

    @Test func mixedParams() throws {
        let h = try harness(route("KSR.test.two(5, '33')"))
        #expect(h.engine.run(h.engine.requestRoute) == .ok)
        #expect(h.v("two") == .string("5|33"))
    }

    @Test func onlyLoadedModulesHaveTables() throws {
        let h = try harness(show + route("""
            KSR.test.rec("absent", show(KSR.absent))
            KSR.test.rec("test", type(KSR.test))
            KSR.test.rec("sl", type(KSR.sl))
            KSR.test.rec("x", type(KSR.x.exit) .. type(KSR.x.drop) .. type(KSR.x.modf) .. type(KSR.x.probe))
            KSR.test.rec("version", KSRVERSION)
            KSR.test.rec("probe", show(KSR.x.probe()))
            KSR.test.rec("loaded", tostring(package.loaded.KSR == KSR))
            """))
        #expect(h.engine.run(h.engine.requestRoute) == .ok)
        #expect(h.v("absent") == .string("nil:nil"))
        #expect(h.v("test") == .string("table"))
        #expect(h.v("sl") == .string("table"))
        #expect(h.v("x") == .string("functionfunctionfunctionfunction"))
        #expect(h.v("version") == .string("2.0"))
        #expect(h.v("probe") == .string("nil:nil"))
        #expect(h.v("loaded") == .string("true"))
    }

    @Test func modfCallsByCfgName() throws {
        let h = try harness(show + route("""
            KSR.test.rec("m1", show(KSR.x.modf("sl_send_reply", "404", "Not Here")))
            KSR.test.rec("m2", show(KSR.x.modf("sl_send_reply", 480, "Later")))
            KSR.test.rec("unknown", show(KSR.x.modf("no_such_function", "1")))
            KSR.test.rec("badint", show(KSR.x.modf("sl_send_reply", "abc", "x")))
            KSR.test.rec("few", show(KSR.x.modf("sl_send_reply", "500")))
            KSR.test.rec("bool", show(KSR.x.modf("sl_fails")))
            KSR.test.rec("noname", show(KSR.x.modf()))
            """))
        #expect(h.engine.run(h.engine.requestRoute) == .ok)
        #expect(h.v("m1") == .string("number:404"))
        #expect(h.v("m2") == .string("number:480"))
        #expect(h.v("reply") == .string("480 Later"))
        #expect(h.v("unknown") == .string("number:-1"))
        #expect(h.v("badint") == .string("number:-1"))
        #expect(h.v("few") == .string("number:-1"))
        #expect(h.v("bool") == .string("number:-1"))
        #expect(h.v("noname") == .string("number:-1"))
        #expect(h.logs.all.contains { $0.contains("unknown function 'no_such_function'") })
    }
}
