// SIPCore micro-benchmark: parse a typical ~700-byte INVITE and look up what a proxy needs per
// message (top Via, From tag, To tag, Call-ID, CSeq, Request-URI host).
//
//   starling-bench [ITERATIONS]      prints ns per message (best of 5 rounds)
//   starling-bench route SCRIPT [N]  one request through a Lua route (bench/route30.lua)
//   starling-bench registrations [N] saves N contacts through KSR.registrar.save, prints RSS
//   starling-bench dialogs [N]       holds N confirmed dialogs (dlg_manage + profile + t_relay), prints RSS
//
// bench/sipcore.sh runs it under valgrind to count heap allocations and instructions per message.
import SIPCore
#if canImport(Glibc)
import Glibc
#endif

let invite = Array("""
    INVITE sip:bob@biloxi.example.com SIP/2.0\r
    Via: SIP/2.0/UDP pc33.atlanta.example.com:5060;branch=z9hG4bK776asdhds;rport\r
    Max-Forwards: 70\r
    To: Bob <sip:bob@biloxi.example.com>\r
    From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r
    Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r
    CSeq: 314159 INVITE\r
    Contact: <sip:alice@pc33.atlanta.example.com;transport=udp>\r
    Allow: INVITE, ACK, CANCEL, OPTIONS, BYE, REFER, NOTIFY, MESSAGE, SUBSCRIBE, INFO\r
    Supported: replaces, timer\r
    User-Agent: Starling-Bench/1.0\r
    Content-Type: application/sdp\r
    Content-Length: 228\r
    \r
    v=0\r
    o=alice 2890844526 2890844526 IN IP4 pc33.atlanta.example.com\r
    s=Session SDP\r
    c=IN IP4 pc33.atlanta.example.com\r
    t=0 0\r
    m=audio 49172 RTP/AVP 0 8 101\r
    a=rtpmap:0 PCMU/8000\r
    a=rtpmap:8 PCMA/8000\r
    a=rtpmap:101 telephone-event/8000\r

    """.utf8)

@inline(never)
func onePass(_ bytes: UnsafeRawBufferPointer) -> Int {
    guard let m = try? SIPMessage.parse(bytes) else { return -1 }
    var sum = 0
    if let v = m.topVia { sum &+= v.branch?.count ?? 0 }
    if let f = m.from { sum &+= f.tag?.count ?? 0 }
    if let t = m.to { sum &+= t.tag?.count ?? 1 }
    sum &+= m.callID?.count ?? 0
    sum &+= Int(m.cseq?.number ?? 0)
    sum &+= m.requestURI?.host.count ?? 0
    return sum
}

if CommandLine.arguments.count > 1 && CommandLine.arguments[1] == "registrations" {
    // starling-bench registrations [N]
    RegistrationBench.run(count: CommandLine.arguments.count > 2 ? Int(CommandLine.arguments[2]) ?? 100_000 : 100_000)
    exit(0)
}
if CommandLine.arguments.count > 1 && CommandLine.arguments[1] == "dialogs" {
    // starling-bench dialogs [N]
    DialogBench.run(count: CommandLine.arguments.count > 2 ? Int(CommandLine.arguments[2]) ?? 100_000 : 100_000)
    exit(0)
}
if CommandLine.arguments.count > 2 && CommandLine.arguments[1] == "route" {
    // starling-bench route SCRIPT [ITERATIONS]
    let n = CommandLine.arguments.count > 3 ? Int(CommandLine.arguments[3]) ?? 200_000 : 200_000
    RouteBench.run(script: CommandLine.arguments[2], iterations: n)
    exit(0)
}
let iterations = CommandLine.arguments.count > 1 ? Int(CommandLine.arguments[1]) ?? 1_000_000 : 1_000_000
var sink = 0
func now() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

invite.withUnsafeBytes { bytes in
    if iterations <= 10_000 {
        for _ in 0..<iterations { sink &+= onePass(bytes) }
        print("ran \(iterations) iterations (\(invite.count)-byte INVITE)")
        return
    }
    var best = Double.infinity
    for _ in 0..<5 {
        let t0 = now()
        for _ in 0..<iterations { sink &+= onePass(bytes) }
        let ns = Double(now() - t0) / Double(iterations)
        best = min(best, ns)
    }
    print("SIPCore parse + 6 lookups, \(invite.count)-byte INVITE: \(Int(best.rounded())) ns/message (best of 5 x \(iterations))")
}
if sink == 42 { print(sink) }
