import Testing
import Foundation
import SIPCore
import SIPTransport
import StarlingKEMI
import StarlingTesting
import KSRModules

/// A harness whose request route runs `lua`; `r(v)` records a value, and the recorded values come back
/// joined with "," (nil as "nil"). `params` are modparams by module.
struct ModuleScript {
    let h: ScriptHarness

    init(_ lua: String, params: [String: [String: [String]]] = [:]) throws {
        let script = """
            R = {}
            function r(v) if v == nil then R[#R+1] = "nil" else R[#R+1] = tostring(v) end end
            function ksr_request_route()
              R = {}
              \(lua)
              KSR.pv.sets("$var(out)", table.concat(R, ","))
            end
            """
        h = try ScriptHarness(script: script, config: ModuleConfiguration(params: params))
    }

    /// Moves the module clock to just after the start of a `unit`-second period, so a test's few
    /// milliseconds of real time never cross a boundary.
    func align(unit: Int = 1) {
        let t = h.runtime.clock.unixTime
        let into = t - Double(Int(t) / unit * unit)
        h.runtime.clock.advance(by: .milliseconds(Int((Double(unit) - into) * 1000) + 20))
    }

    /// Routes a message (OPTIONS by default) and gives what `r` recorded.
    func run(_ message: String = Msg.options(), from: SocketAddress? = nil) throws -> String {
        h.context.worker.vars["out"] = nil
        h.sender.clear()
        try h.route(message, from: from)
        guard case .string(let s)? = h.context.worker.vars["out"] else { return "<no result>" }
        return s
    }
}

private let tables: [String: [String: [String]]] = [
    "htable": ["htable": ["a=>size=4;", "n=>size=2;initval=10;", "e=>size=3;autoexpire=10;", "k=>autoexpire=10;updateexpire=0;",
                          "ipban=>size=8;autoexpire=300;"]],
]

@Suite struct HtableTests {
    @Test func definitions() {
        let d = HtableDefinition.parse("ipban=>size=8;autoexpire=300;initval=0;updateexpire=0;dbtable=x")
        #expect(d?.name == "ipban")
        #expect(d?.size == 8)
        #expect(d?.autoexpire == 300)
        #expect(d?.initval == 0)
        #expect(d?.updateexpire == false)
        #expect(d?.ignored["dbtable"] == "x")
        #expect(HtableDefinition.parse("noarrow") == nil)
        #expect(HtableDefinition.parse("t=>size=x") == nil)
        let store = HtableStore(config: ModuleConfiguration(params: tables), clock: ModuleClock())
        #expect(store.names == ["a", "n", "e", "k", "ipban"])
        #expect(store.table("ipban")?.slotCount == 256)
    }

    @Test func getAndSet() throws {
        let s = try ModuleScript("""
            local H = KSR.htable
            r(H.sht_get("a", "x")); r(H.sht_gete("a", "x")); r(H.sht_getw("a", "x"))
            r(H.sht_sets("a", "x", "v")); r(H.sht_get("a", "x"))
            r(H.sht_seti("a", "i", 5)); r(H.sht_get("a", "i")); r(math.type(H.sht_get("a", "i")))
            r(H.sht_get("n", "missing")); r(H.sht_get("nosuch", "x")); r(H.sht_gete("nosuch", "x"))
            r(H.sht_sets("nosuch", "x", "v")); r(H.sht_seti("nosuch", "x", 1))
            r(H.sht_rm("a", "x")); r(H.sht_get("a", "x")); r(H.sht_rm("a", "never")); r(H.sht_rm("nosuch", "x"))
            """, params: tables)
        #expect(try s.run() == "nil,,<null>,1,v,1,5,integer,10,nil,,-1,-1,1,nil,1,-1")
    }

    @Test func incDecCodes() throws {
        let s = try ModuleScript("""
            local H = KSR.htable
            r(H.sht_inc("a", "c")); r(H.sht_inc("a", "c")); r(H.sht_dec("a", "c")); r(H.sht_dec("a", "c")); r(H.sht_dec("a", "c"))
            r(H.sht_inc("n", "c")); r(H.sht_dec("n", "d"))
            H.sht_sets("a", "s", "text"); r(H.sht_inc("a", "s")); r(H.sht_dec("a", "s"))
            r(H.sht_inc("nosuch", "c"))
            """, params: tables)
        #expect(try s.run() == "1,2,1,0,-1,11,9,-255,-255,-255")
    }

    @Test func isNullCodes() throws {
        let s = try ModuleScript("""
            local H = KSR.htable
            r(H.sht_is_null("a", "x")); H.sht_seti("a", "x", 0); r(H.sht_is_null("a", "x"))
            r(H.sht_is_null("n", "x")); r(H.sht_is_null("nosuch", "x"))
            """, params: tables)
        #expect(try s.run() == "1,-1,-2,2")
    }

    @Test func autoexpireAndUpdateexpire() throws {
        let s = try ModuleScript("""
            local op = KSR.pv.get("$hdr(X-Op)")
            if op == "set" then KSR.htable.sht_seti("e", "x", 1); KSR.htable.sht_seti("k", "x", 1) end
            r(KSR.htable.sht_get("e", "x")); r(KSR.htable.sht_get("k", "x")); r(KSR.pv.get("$shtex(e=>x)"))
            """, params: tables)
        s.align()
        #expect(try s.run(Msg.options(extra: "X-Op: set\r\n")) == "1,1,10")
        s.h.advance(by: .seconds(6))
        // both set again at t=6: e restarts its 10 s, k (updateexpire=0) keeps its first expiry
        #expect(try s.run(Msg.options(extra: "X-Op: set\r\n")) == "1,1,10")
        s.h.advance(by: .seconds(5))
        #expect(try s.run() == "1,nil,5")
        s.h.advance(by: .seconds(6))
        #expect(try s.run() == "nil,nil,0")
        // the periodic job dropped the expired items from memory too
        s.h.advance(by: .seconds(21))
        #expect(s.h.runtime.htables.table("e")?.storedCount == 0)
    }

    @Test func explicitExpiry() throws {
        let s = try ModuleScript("""
            local op = KSR.pv.get("$hdr(X-Op)")
            if op == "set" then
              r(KSR.htable.sht_setxs("a", "s", "v", 5)); r(KSR.htable.sht_setxi("a", "i", 7, 20))
              KSR.htable.sht_seti("a", "p", 1); r(KSR.htable.sht_setex("a", "p", 8))
              KSR.pv.seti("$shtex(a=>i)", 30)
            end
            r(KSR.htable.sht_get("a", "s")); r(KSR.htable.sht_get("a", "i")); r(KSR.htable.sht_get("a", "p"))
            """, params: tables)
        s.align()
        #expect(try s.run(Msg.options(extra: "X-Op: set\r\n")) == "1,1,1,v,7,1")
        s.h.advance(by: .seconds(9))
        #expect(try s.run() == "nil,7,nil")
        s.h.advance(by: .seconds(15))
        #expect(try s.run() == "nil,7,nil")
        s.h.advance(by: .seconds(7))
        #expect(try s.run() == "nil,nil,nil")
    }

    @Test func removalByNameAndValue() throws {
        let s = try ModuleScript("""
            local H = KSR.htable
            H.sht_sets("a", "alice1", "x"); H.sht_sets("a", "alice2", "y"); H.sht_sets("a", "bob", "xyz"); H.sht_seti("a", "carol", 3)
            r(H.sht_rm_name_re("a", "^ALI.*1$")); r(H.sht_get("a", "alice1")); r(H.sht_get("a", "alice2"))
            r(H.sht_rm_value_re("a", "^xy")); r(H.sht_get("a", "bob")); r(H.sht_get("a", "carol"))
            H.sht_sets("a", "dave", "same"); H.sht_sets("a", "erin", "same")
            r(H.sht_rm_value("a", "eq", "same")); r(H.sht_get("a", "dave")); r(H.sht_get("a", "erin"))
            r(H.sht_rm_name("a", "sw", "ali")); r(H.sht_get("a", "alice2"))
            r(H.sht_rm_name("a", "ne", "zzz")); r(H.sht_get("a", "carol"))
            r(H.sht_rm_name_re("a", "(")); r(H.sht_rm_name("a", "xx", "a")); r(H.sht_rm_name_re("nosuch", "."))
            """, params: tables)
        #expect(try s.run() == "1,nil,y,1,nil,3,1,nil,nil,1,nil,1,nil,-1,-1,-1")
    }

    @Test func matchNameAndValue() throws {
        // the example script's ban check: sht_match_name("ipban", "eq", ip), then sht_seti
        let s = try ModuleScript("""
            local H = KSR.htable
            local ip = KSR.kx.get_srcip()
            r(H.sht_match_name("ipban", "eq", ip)); r(H.sht_seti("ipban", ip, 1)); r(H.sht_match_name("ipban", "eq", ip))
            r(H.sht_match_name("ipban", "re", "^192\\\\.0\\\\.2\\\\.")); r(H.sht_match_name("ipban", "sw", "192.0")); r(H.sht_match_name("ipban", "sw", "10."))
            r(H.sht_match_name("ipban", "ne", ip)); r(H.sht_match_name("ipban", "ew", ".10"))
            H.sht_sets("a", "k", "Hello World"); H.sht_seti("a", "i", 5)
            r(H.sht_match_str_value("a", "re", "hello")); r(H.sht_match_str_value("a", "eq", "5")); r(H.sht_match_str_value("a", "in", "o W"))
            r(H.sht_match_name("nosuch", "eq", "x")); r(H.sht_match_name("a", "bogus", "x"))
            r(H.sht_rm_name("ipban", "eq", ip)); r(H.sht_match_name("ipban", "eq", ip))
            """, params: tables)
        #expect(try s.run() == "-1,1,1,1,1,-1,-1,1,1,-1,1,-1,-1,1,-1")
    }

    @Test func iterators() throws {
        let s = try ModuleScript("""
            local H = KSR.htable
            H.sht_seti("a", "one", 1); H.sht_seti("a", "two", 2); H.sht_sets("a", "three", "3")
            r(H.sht_iterator_start("it", "a"))
            local seen = {}
            while H.sht_iterator_next("it") > 0 do
              seen[#seen+1] = KSR.pv.get("$shtitkey(it)") .. "=" .. tostring(KSR.pv.get("$shtitval(it)"))
              if KSR.pv.get("$shtitkey(it)") == "two" then H.sht_iterator_rm("it") end
              if KSR.pv.get("$shtitkey(it)") == "one" then H.sht_iterator_seti("it", 11) end
            end
            table.sort(seen)
            r(table.concat(seen, " ")); r(H.sht_iterator_next("it")); r(KSR.pv.get("$shtitkey(it)"))
            r(H.sht_iterator_end("it")); r(H.sht_get("a", "two")); r(H.sht_get("a", "one"))
            r(H.sht_iterator_next("it")); r(H.sht_iterator_start("bad", "nosuch"))
            """, params: tables)
        #expect(try s.run() == "1,one=1 three=3 two=2,-1,nil,1,nil,11,-1,-1")
    }

    @Test func pseudoVariables() throws {
        let s = try ModuleScript("""
            r(KSR.pv.sets("$sht(a=>k)", "v")); r(KSR.pv.get("$sht(a=>k)")); r(KSR.htable.sht_get("a", "k"))
            r(KSR.pv.seti("$sht(a=>n)", 4)); r(KSR.pv.get("$shtinc(a=>n)")); r(KSR.pv.get("$shtdec(a=>n)")); r(KSR.pv.get("$shtdec(a=>n)"))
            r(KSR.pv.unset("$sht(a=>k)")); r(KSR.pv.get("$sht(a=>k)")); r(KSR.pv.is_null("$sht(a=>k)"))
            r(KSR.pv.get("$sht(n=>missing)"))
            KSR.pv.seti("$sht(ipban=>$si)", 1); r(KSR.htable.sht_get("ipban", KSR.kx.get_srcip())); r(KSR.pv.get("$sht(ipban=>$si)"))
            r(KSR.pv.get("$shtex(ipban=>$si)")); r(KSR.pv.get("$sht(nosuch=>x)")); r(KSR.pv.sets("$sht(nosuch=>x)", "v"))
            """, params: tables)
        #expect(try s.run() == "true,v,v,true,5,4,3,true,nil,true,10,1,1,300,nil,false")
    }

    @Test func countPseudoVariables() throws {
        let s = try ModuleScript("""
            local H = KSR.htable
            H.sht_sets("a", "alice1", "x"); H.sht_sets("a", "alice2", "xy"); H.sht_sets("a", "bob", "y"); H.sht_seti("a", "carol", 1)
            r(KSR.pv.get("$shtcn(a=>~~^ALI)")); r(KSR.pv.get("$shtcn(a=>^b)")); r(KSR.pv.get("$shtcn(a=>==bob)")); r(KSR.pv.get("$shtcn(a=>**)"))
            r(KSR.pv.get("$shtcv(a=>~~^x)")); r(KSR.pv.get("$shtcv(a=>**)")); r(KSR.pv.get("$shtcn(nosuch=>**)"))
            """, params: tables)
        #expect(try s.run() == "2,1,1,4,2,3,nil")
    }

    @Test func resetAndLocks() throws {
        let s = try ModuleScript("""
            local H = KSR.htable
            H.sht_seti("a", "x", 1); H.sht_seti("a", "y", 2)
            r(H.sht_lock("a", "x")); r(H.sht_inc("a", "x")); r(H.sht_unlock("a", "x"))
            r(H.sht_reset("a")); r(H.sht_get("a", "x")); r(H.sht_get("a", "y"))
            r(H.sht_lock("nosuch", "x")); r(H.sht_reset("nosuch"))
            """, params: tables)
        #expect(try s.run() == "1,2,1,1,nil,nil,-1,-1")
    }

    @Test func slotLockHoldsOtherThreads() throws {
        let t = try #require(HtableStore(config: ModuleConfiguration(params: tables), clock: ModuleClock()).table("a"))
        t.set("x", .int(0))
        t.lock("x")
        let done = DispatchSemaphore(value: 0)
        let finished = Finished()
        DispatchQueue.global().async {
            _ = t.add("x", 1)
            finished.set()
            done.signal()
        }
        usleep(100_000)
        #expect(!finished.isSet, "another thread changed a locked slot")
        // the lock is recursive: the holder still reads and writes its slot
        #expect(t.add("x", 10) == 10)
        t.unlock("x")
        done.wait()
        #expect(t.get("x") == .int(11))
    }

    @Test func concurrentAccessFromManyThreads() throws {
        let store = HtableStore(config: ModuleConfiguration(params: tables), clock: ModuleClock())
        let t = try #require(store.table("a"))
        DispatchQueue.concurrentPerform(iterations: 8) { worker in
            for i in 0..<5000 {
                _ = t.add("shared", 1)
                t.set("w\(worker)-\(i % 50)", .string("v\(i)"))
                _ = t.get("w\((worker + 1) % 8)-\(i % 50)")
                if i % 100 == 0 { t.removeAll { k, _ in k.hasPrefix("none") } }
            }
        }
        #expect(t.get("shared") == .int(40000))
        #expect(t.count == 1 + 8 * 50)
    }
}

/// A flag set from another thread.
final class Finished: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    func set() { lock.lock(); value = true; lock.unlock() }
    var isSet: Bool { lock.lock(); defer { lock.unlock() }; return value }
}
