// Engine micro-benchmark: one request through `ksr_request_route` of bench/route30.lua (pv, hdr,
// textops regex, xlog, a stateless reply) with the real engine and KSR functions, network recorded.
import SIPCore
import StarlingTesting
#if canImport(Glibc)
import Glibc
#endif

enum RouteBench {
    static let request = Array("""
        OPTIONS sip:bob@127.0.0.1:5060 SIP/2.0\r
        Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-bench-1;rport\r
        Max-Forwards: 70\r
        To: <sip:bob@127.0.0.1:5060>\r
        From: sipp <sip:sipp@127.0.0.1:5070>;tag=1\r
        Call-ID: 1-bench@127.0.0.1\r
        CSeq: 1 OPTIONS\r
        Contact: <sip:sipp@127.0.0.1:5070>\r
        User-Agent: sipp-bench\r
        X-Internal: secret\r
        Content-Length: 0\r
        \r

        """.utf8)

    static func run(script: String, iterations: Int) {
        guard let h = try? ScriptHarness(scriptFile: script) else {
            print("cannot load \(script)")
            exit(1)
        }
        var ts = timespec()
        func now() -> UInt64 { clock_gettime(CLOCK_MONOTONIC, &ts); return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec) }
        if iterations <= 10_000 {
            for _ in 0..<iterations { h.route(bytes: request); h.sender.clear() }
            print("ran \(iterations) routes")
            return
        }
        var best = Double.infinity
        for _ in 0..<5 {
            let t0 = now()
            for _ in 0..<iterations { h.route(bytes: request); h.sender.clear() }
            best = min(best, Double(now() - t0) / Double(iterations))
        }
        print("route30.lua through the engine (parse + route + reply built): \(Int(best.rounded())) ns/request (best of 5 x \(iterations))")
    }
}
