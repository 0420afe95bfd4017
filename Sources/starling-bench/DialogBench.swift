import StarlingTesting
import KSRModules
#if canImport(Glibc)
import Glibc
#endif

/// glibc's malloc_trim (not in the Glibc module map).
@_silgen_name("malloc_trim") func glibcMallocTrim(_ pad: Int) -> Int32
/// glibc's malloc_stats: arenas' system and in-use bytes on stderr (STARLING_BENCH_MALLOC_STATS=1).
@_silgen_name("malloc_stats") func glibcMallocStats()

/// `starling-bench dialogs [N]`: N calls through `dlg_manage()` + a tenant profile + `t_relay()`
/// (the INVITE, a 200 from the callee, the ACK), tm's transactions then freed, so that N confirmed
/// dialogs are held; prints the time per call and the RSS per dialog.
enum DialogBench {
    static func run(count: Int) {
        let script = """
            function ksr_request_route()
              if KSR.siputils.has_totag() > 0 then
                if KSR.rr.loose_route() > 0 then KSR.tm.t_relay() end
                return
              end
              KSR.dialog.dlg_manage()
              KSR.dialog.set_dlg_profile("tenant", KSR.pv.gete("$fd"))
              KSR.rr.record_route()
              KSR.setdsturi("sip:127.0.0.2:5060")
              KSR.tm.t_relay()
            end
            """
        // STARLING_BENCH_NO_DIALOG=1: the same calls without dialog, to see what the rest keeps.
        let noDialog = getenv("STARLING_BENCH_NO_DIALOG") != nil
        let used = noDialog ? script.replacing("KSR.dialog.", with: "-- ") : script
        let h: ScriptHarness
        do {
            h = try ScriptHarness(script: used, config: ModuleConfiguration(params: ["dialog": ["profiles_with_value": ["tenant"]]]))
        } catch {
            print("cannot load the script: \(error)")
            return
        }
        let before = RegistrationBench.rssKiB()
        _ = noDialog
        var clock = timespec()
        clock_gettime(CLOCK_MONOTONIC, &clock)
        let t0 = Double(clock.tv_sec) + Double(clock.tv_nsec) / 1e9
        for i in 0..<count {
            let invite = "INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-\(i)\r\n"
                + "Max-Forwards: 70\r\nFrom: <sip:alice\(i)@tenant\(i % 50).example.com>;tag=f\(i)\r\n"
                + "To: <sip:bob@example.com>\r\nCall-ID: \(i)-4242@127.0.0.1\r\nCSeq: 1 INVITE\r\n"
                + "Contact: <sip:alice\(i)@127.0.0.1:5070>\r\nContent-Length: 0\r\n\r\n"
            h.route(bytes: Array(invite.utf8))
            guard let sent = h.sender.sent.last(where: { $0.text.hasPrefix("INVITE ") }) else { continue }
            var reply = "SIP/2.0 200 OK\r\n"
            var rr = ""
            for line in sent.text.split(separator: "\r\n") {
                if line.hasPrefix("Via:") || line.hasPrefix("From:") || line.hasPrefix("Call-ID:") || line.hasPrefix("CSeq:") {
                    reply += line + "\r\n"
                } else if line.hasPrefix("To:") {
                    reply += line + ";tag=t\(i)\r\n"
                } else if line.hasPrefix("Record-Route:") {
                    reply += line + "\r\n"
                    rr = String(line.dropFirst("Record-Route: ".count))
                }
            }
            reply += "Contact: <sip:bob@127.0.0.2:5060>\r\nContent-Length: 0\r\n\r\n"
            h.route(bytes: Array(reply.utf8))
            let ack = "ACK sip:bob@127.0.0.2:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-a\(i)\r\n"
                + "Max-Forwards: 70\r\nRoute: \(rr)\r\nFrom: <sip:alice\(i)@tenant\(i % 50).example.com>;tag=f\(i)\r\n"
                + "To: <sip:bob@example.com>;tag=t\(i)\r\nCall-ID: \(i)-4242@127.0.0.1\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
            h.route(bytes: Array(ack.utf8))
            if i % 1000 == 999 {
                h.sender.clear()
                // Transactions end as on a server (their wait timers run); the dialogs stay.
                h.advance(by: .seconds(40))
            }
        }
        clock_gettime(CLOCK_MONOTONIC, &clock)
        let t1 = Double(clock.tv_sec) + Double(clock.tv_nsec) / 1e9
        // tm's transactions end; the dialogs stay.
        for _ in 0..<40 { h.advance(by: .seconds(1)) }
        h.sender.clear()
        // Freed transactions and messages go back to the system first (glibc keeps them otherwise).
        _ = glibcMallocTrim(0)
        let after = RegistrationBench.rssKiB()
        if getenv("STARLING_BENCH_MALLOC_STATS") != nil { glibcMallocStats() }
        let store = DialogModule.store(h.runtime)
        let confirmed = store.counts()[.confirmed] ?? 0
        print("dialogs: \(confirmed) confirmed of \(count) calls (INVITE, 200, ACK) in \(Int((t1 - t0) * 1000)) ms "
              + "(\(Int((t1 - t0) * 1e6 / Double(max(1, count)))) us per call on one thread, harness included); "
              + "tm transactions left: \(h.transactions.count)")
        print("RSS: \(before / 1024) MiB before, \(after / 1024) MiB after; "
              + "\((after - before) * 1024 / max(1, confirmed)) bytes per dialog")
    }
}
