import StarlingKEMI
import StarlingLua
import Testing

@Suite("LuaEngine callbacks, exit/drop, errors, loading")
struct LuaEngineTests {
    @Test func exitStopsTheCallback() throws {
        let h = try harness("""
            local function deep() KSR.x.exit() end
            function ksr_request_route()
              KSR.test.rec("before", "1")
              deep()
              KSR.test.rec("after", "1")
            end
            """)
        #expect(h.engine.run(h.engine.requestRoute) == .exited)
        #expect(h.v("before") == .string("1"))
        #expect(h.v("after") == nil)
        #expect(h.ctx.dropRequested == false)
    }

    @Test func userPcallSwallowsExit() throws {
        let h = try harness(route("""
            local ok, err = pcall(KSR.x.exit)
            KSR.test.rec("err", tostring(ok) .. ":" .. tostring(err))
            """))
        #expect(h.engine.run(h.engine.requestRoute) == .ok)
        #expect(h.v("err") == .string("false:~~ksr~exit~~"))
    }

    @Test func userErrorWithExitStringExits() throws {
        let h = try harness(route("error('~~ksr~exit~~', 0)"))
        #expect(h.engine.run(h.engine.requestRoute) == .exited)
        let p = try harness(route("error('~~ksr~exit~~')"))
        #expect(p.engine.run(p.engine.requestRoute) == .exited)
        let other = try harness(route("error('x~~ksr~exit~~')"))
        #expect(other.engine.run(other.engine.requestRoute) != .exited)
    }

    @Test func dropSetsTheFlagAndExits() throws {
        let h = try harness(route("KSR.x.drop()\nKSR.test.rec('after', '1')"))
        #expect(h.engine.run(h.engine.requestRoute) == .exited)
        #expect(h.ctx.dropRequested)
        #expect(h.v("after") == nil)
    }

    @Test func missingCallbacksAreLookedUpOnEveryCall() throws {
        let h = try harness(route("""
            if KSR.test.int(1) == 1 and not defined then
              defined = true
              function ksr_reply_route() KSR.test.rec("reply", "v1") end
            else
              function ksr_reply_route() KSR.test.rec("reply", "v2") end
            end
            """))
        #expect(h.engine.run(callback: "ksr_reply_route") == .missing)
        #expect(h.engine.run(callback: "no_such_thing", arg: "x") == .missing)
        #expect(h.engine.run(h.engine.requestRoute) == .ok)
        #expect(h.engine.run(callback: "ksr_reply_route") == .ok)
        #expect(h.v("reply") == .string("v1"))
        #expect(h.engine.run(h.engine.requestRoute) == .ok)
        #expect(h.engine.run(callback: "ksr_reply_route") == .ok)
        #expect(h.v("reply") == .string("v2"))
    }

    @Test func eventCallbacksGetTheirArgument() throws {
        let h = try harness(route("") + "function ksr_event(evname) KSR.test.rec('ev', evname) end\n")
        #expect(h.engine.run(callback: "ksr_event", arg: "tm:local-request") == .ok)
        #expect(h.v("ev") == .string("tm:local-request"))
        #expect(h.engine.run(callback: "ksr_event", arg: "") == .ok)
        #expect(h.v("ev") == .string(""))
    }

    @Test func runtimeErrorsCarryFileLineAndTraceback() throws {
        let h = try harness("""
            function ksr_request_route()
              local t = nil
              t.x = 1
            end
            function ksr_reply_route() KSR.test.rec("ok", "1") end
            """)
        let outcome = h.engine.run(h.engine.requestRoute)
        guard case .error(let e) = outcome else {
            Issue.record("expected .error, got \(outcome)")
            return
        }
        #expect(e.message.contains("route.lua:3:"))
        #expect(e.message.contains("attempt to index a nil value"))
        #expect(e.traceback.hasPrefix("stack traceback:"))
        #expect(e.traceback.contains("ksr_request_route"))
        #expect(h.logs.all.filter { $0.contains("route.lua:3:") }.count == 1)
        // The state carries on.
        #expect(h.engine.run(callback: "ksr_reply_route") == .ok)
        #expect(h.v("ok") == .string("1"))
    }

    @Test func nonStringErrorObjects() throws {
        let h = try harness(route("error({})"))
        guard case .error(let e) = h.engine.run(h.engine.requestRoute) else {
            Issue.record("expected .error")
            return
        }
        #expect(e.message.contains("error object is a table value"))
    }

    @Test func globalsPersistBetweenCallbacks() throws {
        let h = try harness("""
            counter = 0
            function ksr_request_route()
              counter = counter + 1
              KSR.test.int(counter)
            end
            """)
        for _ in 0..<3 { #expect(h.engine.run(h.engine.requestRoute) == .ok) }
        #expect(h.v("int") == .int(3))
    }

    @Test func scriptFlagsAreZeroedAndRestored() throws {
        let h = try harness(route("KSR.test.int(KSR.test.sflags())\nKSR.test.setsflag(3)"))
        h.ctx.scriptFlags = 5
        #expect(h.engine.run(h.engine.requestRoute) == .ok)
        #expect(h.v("int") == .int(0))
        #expect(h.ctx.scriptFlags == 5)
        // also after an exit
        let e = try harness(route("KSR.test.setsflag(1)\nKSR.x.exit()"))
        e.ctx.scriptFlags = 2
        #expect(e.engine.run(e.engine.requestRoute) == .exited)
        #expect(e.ctx.scriptFlags == 2)
    }

    @Test func requireFindsModulesNextToTheScriptAndRecordsThem() throws {
        let h = try harness("""
            local lib = require("mylib")
            local pkg = require("pkg")
            function ksr_request_route()
              KSR.test.rec("lib", lib.name() .. "+" .. pkg.name)
              local late = require("late")
              KSR.test.rec("late", late)
            end
            """, files: [
                "mylib.lua": "local M = {}\nfunction M.name() return 'mylib' end\nreturn M\n",
                "pkg/init.lua": "return { name = 'pkg' }\n",
                "late.lua": "return 'late'\n",
            ])
        let dir = h.dir
        #expect(h.engine.loadedFiles == [dir + "/route.lua", dir + "/mylib.lua", dir + "/pkg/init.lua"])
        #expect(h.engine.run(h.engine.requestRoute) == .ok)
        #expect(h.v("lib") == .string("mylib+pkg"))
        #expect(h.v("late") == .string("late"))
        #expect(h.engine.loadedFiles.last == dir + "/late.lua")
        #expect(h.engine.version == h.engine.version)
        #expect(h.engine.currentVersion() != h.engine.version)  // late.lua is now part of it
    }

    @Test func lua51CompatibilityGlobals() throws {
        let h = try harness(route("""
            local a, b = unpack({1, 2})
            local f = loadstring("return 40 + 2")
            KSR.test.rec("compat", table.concat({a, b, f(), table.getn({1, 2, 3}), math.pow(2, 3), math.mod(7, 3)}, ","))
            KSR.test.rec("libs", type(io) .. type(os) .. type(string) .. type(debug) .. type(coroutine) .. type(utf8))
            """))
        #expect(h.engine.run(h.engine.requestRoute) == .ok)
        #expect(h.v("compat") == .string("1,2,42,3,8.0,1"))
        #expect(h.v("libs") == .string("tabletabletabletabletabletable"))
    }

    @Test func ksrCallsWorkInsideCoroutines() throws {
        let h = try harness(route("""
            local co = coroutine.wrap(function() KSR.test.int(9); coroutine.yield(); KSR.x.exit() end)
            co()
            co()
            """))
        #expect(h.engine.run(h.engine.requestRoute) == .exited)
        #expect(h.v("int") == .int(9))
    }

    // MARK: Loading

    @Test func loadFailures() throws {
        #expect {
            try harness("")
        } throws: { ($0 as? LuaScriptError)?.kind == .missingRequestRoute }
        #expect {
            try harness("function other() end")
        } throws: { ($0 as? LuaScriptError)?.kind == .missingRequestRoute }
        #expect {
            try harness("ksr_request_route = 1")
        } throws: { ($0 as? LuaScriptError)?.kind == .missingRequestRoute }
        #expect {
            try harness("function ksr_request_route()\n  if then\nend")
        } throws: { e in
            guard let e = e as? LuaScriptError else { return false }
            return e.kind == .syntax && e.message.contains("route.lua:2:")
        }
        #expect {
            try harness("local x = nil\nx()\nfunction ksr_request_route() end")
        } throws: { e in
            guard let e = e as? LuaScriptError else { return false }
            return e.kind == .runtime && e.message.contains("route.lua:2:") && e.traceback.contains("stack traceback")
        }
        #expect {
            try harness("\u{1b}Lua bytecode")
        } throws: { ($0 as? LuaScriptError)?.kind == .syntax }
        #expect {
            try LuaEngine(path: "/nonexistent/route.lua", registry: testRegistry, context: nil)
        } throws: { ($0 as? LuaScriptError)?.kind == .io }
    }

    @Test func checkReportsVersionOrErrors() throws {
        let dir = makeScriptDir(["ok.lua": "function ksr_request_route() KSR.x.exit() end\n",
                                 "bad.lua": "function ksr_request_route()\n  KSR.nope.f()\nend\nksr_request_route()\n"])
        defer { removeTree(dir) }
        let v1 = try LuaEngine.check(path: dir + "/ok.lua")
        let v2 = try LuaEngine.check(path: dir + "/ok.lua", registry: testRegistry)
        #expect(v1 == v2)
        #expect(v1.description.count == 16)
        #expect {
            try LuaEngine.check(path: dir + "/bad.lua")
        } throws: { ($0 as? LuaScriptError)?.message.contains("bad.lua:2:") == true }
    }

    @Test func engineWithoutContextFailsKSRCallsQuietly() throws {
        let dir = makeScriptDir(["r.lua": "function ksr_request_route() r = KSR.test.int(1) end\n"])
        defer { removeTree(dir) }
        let e = try LuaEngine(path: dir + "/r.lua", registry: testRegistry, context: nil)
        #expect(e.run(e.requestRoute) == .ok)
    }
}
