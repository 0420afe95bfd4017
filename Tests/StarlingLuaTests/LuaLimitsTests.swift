import StarlingKEMI
import StarlingLua
import Testing

@Suite("Instruction budget and memory cap")
struct LuaLimitsTests {
    static let small = LuaEngineLimits(instructionBudget: 1_000_000, memoryLimit: 8 << 20)

    @Test func endlessLoopIsAbortedAndTheStateCarriesOn() throws {
        let h = try harness("""
            n = 0
            function ksr_request_route() while true do end end
            function spin_in_pcall()
              while true do pcall(function() while true do end end) end
            end
            function ksr_reply_route() n = n + 1; KSR.test.int(n) end
            """, limits: Self.small)
        #expect(h.engine.run(h.engine.requestRoute) == .budgetExceeded)
        #expect(h.engine.run(callback: "ksr_reply_route") == .ok)
        #expect(h.engine.run(callback: "spin_in_pcall") == .budgetExceeded)
        #expect(h.engine.run(callback: "ksr_reply_route") == .ok)
        #expect(h.v("int") == .int(2))
        #expect(h.logs.all.contains { $0.contains("instruction budget exceeded") })
    }

    @Test func endlessLoopInACoroutineIsAborted() throws {
        let h = try harness("""
            function ksr_request_route()
              local co = coroutine.create(function() while true do end end)
              local ok, err = coroutine.resume(co)
              while true do end
            end
            function parked()
              saved = coroutine.create(function() for i = 1, 3 do KSR.test.int(i) coroutine.yield() end end)
              coroutine.resume(saved)
            end
            function resume_parked() coroutine.resume(saved) end
            """, limits: Self.small)
        #expect(h.engine.run(callback: "parked") == .ok)
        #expect(h.engine.run(h.engine.requestRoute) == .budgetExceeded)
        #expect(h.engine.run(callback: "resume_parked") == .ok)
        #expect(h.v("int") == .int(2))
    }

    @Test func zeroBudgetDisablesTheCheck() throws {
        let h = try harness(route("local s = 0 for i = 1, 2000000 do s = s + 1 end KSR.test.int(s)"),
                            limits: LuaEngineLimits(instructionBudget: 0, memoryLimit: 0))
        #expect(h.engine.run(h.engine.requestRoute) == .ok)
        #expect(h.v("int") == .int(2_000_000))
    }

    @Test func budgetIsPerCallback() throws {
        // ~300k instructions per call: many calls in a row stay within a 1M budget each.
        let h = try harness(route("local s = 0 for i = 1, 100000 do s = s + i end KSR.test.int(s)"), limits: Self.small)
        for _ in 0..<20 { #expect(h.engine.run(h.engine.requestRoute) == .ok) }
        #expect(h.v("int") == .int(5_000_050_000))
    }

    @Test func memoryBombIsAbortedAndTheStateCarriesOn() throws {
        let h = try harness("""
            function ksr_request_route()
              local t = {}
              for i = 1, 1e9 do t[i] = string.rep("x", 64) .. i end
            end
            function grow_string()
              local s = "x"
              while true do s = s .. s end
            end
            function ksr_reply_route() local t = {} for i = 1, 1000 do t[i] = i end KSR.test.int(#t) end
            """, limits: Self.small)
        #expect(h.engine.run(h.engine.requestRoute) == .memoryExceeded)
        #expect(h.engine.memoryInUse < Self.small.memoryLimit)
        #expect(h.engine.run(callback: "ksr_reply_route") == .ok)
        #expect(h.v("int") == .int(1000))
        #expect(h.engine.run(callback: "grow_string") == .memoryExceeded)
        #expect(h.engine.run(callback: "ksr_reply_route") == .ok)
        #expect(h.engine.run(h.engine.requestRoute) == .memoryExceeded)
        #expect(h.engine.run(callback: "ksr_reply_route") == .ok)
    }

    @Test func memoryErrorCaughtByTheScriptIsNotAnOutcome() throws {
        let h = try harness(route("""
            local ok = pcall(function() local s = "x" while true do s = s .. s end end)
            KSR.test.rec("caught", tostring(ok))
            """) + "function fail_after() pcall(function() local s = 'x' while true do s = s .. s end end) error('boom') end\n",
            limits: Self.small)
        #expect(h.engine.run(h.engine.requestRoute) == .ok)
        #expect(h.v("caught") == .string("false"))
        guard case .error(let e) = h.engine.run(callback: "fail_after") else {
            Issue.record("expected .error")
            return
        }
        #expect(e.message.contains("route.lua:5: boom"))
    }

    @Test func topLevelLimitsFailTheLoad() throws {
        #expect {
            try harness("while true do end\nfunction ksr_request_route() end", limits: Self.small)
        } throws: { ($0 as? LuaScriptError)?.kind == .budget }
        #expect {
            try harness("local t = {} for i = 1, 1e9 do t[i] = {} end\nfunction ksr_request_route() end",
                        limits: Self.small)
        } throws: { ($0 as? LuaScriptError)?.kind == .memory }
    }
}
