import Testing
import Foundation
import SIPTransport
import StarlingKEMI
import StarlingTesting
import KSRModules

private func pike(unit: Int = 10, density: Int = 5, latency: Int = 30) -> [String: [String: [String]]] {
    ["pike": ["sampling_time_unit": ["\(unit)"], "reqs_density_per_unit": ["\(density)"], "remove_latency": ["\(latency)"]]]
}

@Suite struct PikeTests {
    @Test func floodTurnsRedThenReleasedAfterRemoveLatency() throws {
        let s = try ModuleScript("r(KSR.pike.pike_check_req())", params: pike())
        s.align(unit: 10)
        var codes: [String] = []
        for _ in 0..<8 { codes.append(try s.run()) }
        // 5 requests per unit are allowed; the 6th is the flood (-2), later ones are already red (-1)
        #expect(codes == ["1", "1", "1", "1", "1", "-2", "-1", "-1"])
        // another source is not affected
        #expect(try s.run(from: SocketAddress(ip: "198.51.100.7", port: 5060)) == "1")
        // still flooding in the next unit (the previous unit is over the limit)
        s.h.advance(by: .seconds(10))
        #expect(try s.run() == "-1")
        // quiet for remove_latency: forgotten by the periodic job, allowed again
        s.h.advance(by: .seconds(31))
        #expect(s.h.runtime.pike.isBlocked("192.0.2.10") == false)
        #expect(try s.run() == "1")
    }

    @Test func quietUnitTurnsAddressBack() throws {
        let s = try ModuleScript("r(KSR.pike.pike_check_req())", params: pike(latency: 300))
        s.align(unit: 10)
        for _ in 0..<6 { _ = try s.run() }
        #expect(s.h.runtime.pike.isBlocked("192.0.2.10"))
        // two units later both counters are quiet again
        s.h.advance(by: .seconds(20))
        #expect(try s.run() == "1")
    }

    @Test func checkIP() throws {
        let s = try ModuleScript("""
            r(KSR.pike.pike_check_ip("203.0.113.9")); r(KSR.pike.pike_check_ip("203.0.113.9")); r(KSR.pike.pike_check_ip("not-an-ip"))
            """, params: pike(density: 1))
        s.align(unit: 10)
        #expect(try s.run() == "1,-2,-1")
        #expect(try s.run() == "-1,-1,-1")
    }

    @Test func defaults() {
        let p = PikeStore(config: ModuleConfiguration(), clock: ModuleClock())
        #expect(p.samplingTimeUnit == 2)
        #expect(p.reqsDensityPerUnit == 30)
        #expect(p.removeLatency == 120)
    }

    @Test func sharedAcrossThreads() {
        // 4 threads hammer one address: its counter is shared, so exactly one check reports the flood
        let clock = ModuleClock()
        let p = PikeStore(config: ModuleConfiguration(params: pike(unit: 60, density: 100, latency: 600)), clock: clock)
        let t = clock.unixTime
        clock.advance(by: .milliseconds(Int((60 - (t - Double(Int(t) / 60 * 60))) * 1000) + 20))
        let counts = Counts()
        DispatchQueue.concurrentPerform(iterations: 4) { _ in
            for _ in 0..<100 { counts.add(p.check("192.0.2.99")) }
        }
        #expect(counts.value(.blockedNow) == 1)
        #expect(counts.value(.ok) == 100)
        #expect(counts.value(.blocked) == 299)
    }
}

final class Counts: @unchecked Sendable {
    private let lock = NSLock()
    private var counts: [Int: Int] = [:]
    func add(_ v: PikeStore.Verdict) { lock.lock(); counts[v.rawValue, default: 0] += 1; lock.unlock() }
    func value(_ v: PikeStore.Verdict) -> Int { lock.lock(); defer { lock.unlock() }; return counts[v.rawValue] ?? 0 }
}
