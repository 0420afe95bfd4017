import Glibc
import StarlingKEMI
import StarlingLua
import Testing

/// Timings, run only with STARLING_LUA_BENCH=1 (meant for `swift test -c release`).
@Suite("LuaEngine benchmarks", .enabled(if: getenv("STARLING_LUA_BENCH") != nil))
struct LuaEngineBenchmarks {
    private func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) * 1e9 + Double(ts.tv_nsec)
    }

    /// Best of 5 runs of `n` iterations, in ns per iteration.
    private func best(_ n: Int, _ body: () -> Void) -> Double {
        var b = Double.infinity
        for _ in 0..<5 {
            let t0 = now()
            for _ in 0..<n { body() }
            b = min(b, (now() - t0) / Double(n))
        }
        return b
    }

    @Test func callbackAndKSRCallCost() throws {
        let h = try harness("""
            function ksr_request_route() end
            function one_call() KSR.t_core() end
            function str_call() KSR.test.xnullw() end
            function int_call() KSR.test.int(5) end
            function loop() for i = 1, 1000000 do KSR.t_core() end end
            function lua_loop() local f = function() end for i = 1, 1000000 do f() end end
            """)
        let e = h.engine
        let empty = best(1_000_000) { _ = e.run(e.requestRoute) }
        let one = e.callback(named: "one_call")
        let oneCall = best(1_000_000) { _ = e.run(one) }
        let s = e.callback(named: "str_call")
        let strCall = best(1_000_000) { _ = e.run(s) }
        let i = e.callback(named: "int_call")
        let intCall = best(1_000_000) { _ = e.run(i) }
        let byName = best(1_000_000) { _ = e.run(callback: "ksr_request_route") }
        let loop = e.callback(named: "loop")
        let inLoop = best(1) { _ = e.run(loop) } / 1e6
        let lloop = e.callback(named: "lua_loop")
        let luaLoop = best(1) { _ = e.run(lloop) } / 1e6
        print("""
            BENCH empty callback (pre-resolved): \(empty) ns
            BENCH empty callback by name: \(byName) ns
            BENCH callback with one KSR bool call: \(oneCall) ns
            BENCH callback with one KSR xval string call: \(strCall) ns
            BENCH callback with one KSR int(5) call: \(intCall) ns
            BENCH KSR bool call in a Lua loop: \(inLoop) ns/call
            BENCH Lua->Lua empty call in a Lua loop: \(luaLoop) ns/call
            """)
    }
}
