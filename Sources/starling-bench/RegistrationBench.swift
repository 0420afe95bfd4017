import StarlingTesting
import KSRModules
#if canImport(Glibc)
import Glibc
#endif

/// `starling-bench registrations [N]`: saves N contacts (N REGISTERs of distinct AORs through
/// `KSR.registrar.save` in bench/register.lua's shape, usrloc in memory) and prints the process RSS
/// before and after, and the bytes per contact.
enum RegistrationBench {
    static func rssKiB() -> Int {
        guard let f = fopen("/proc/self/status", "r") else { return 0 }
        defer { fclose(f) }
        var line = [CChar](repeating: 0, count: 256)
        while fgets(&line, 256, f) != nil {
            let s = String(decoding: line.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            if s.hasPrefix("VmRSS:") { return Int(s.split(separator: " ").dropFirst().first ?? "0") ?? 0 }
        }
        return 0
    }

    static func run(count: Int) {
        let script = """
            function ksr_request_route()
              if KSR.is_REGISTER() then KSR.registrar.save("location", 0) return end
              KSR.sl.sl_send_reply(404, "Not here")
            end
            """
        let h: ScriptHarness
        do { h = try ScriptHarness(script: script) } catch {
            print("cannot load the script: \(error)")
            return
        }
        let before = rssKiB()
        var clock = timespec()
        clock_gettime(CLOCK_MONOTONIC, &clock)
        let t0 = Double(clock.tv_sec) + Double(clock.tv_nsec) / 1e9
        for i in 0..<count {
            let user = "user\(i)"
            let text = "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-\(i)\r\n"
                + "Max-Forwards: 70\r\nFrom: <sip:\(user)@example.com>;tag=\(i)\r\nTo: <sip:\(user)@example.com>\r\n"
                + "Call-ID: \(i)-4242@127.0.0.1\r\nCSeq: 1 REGISTER\r\nContact: <sip:\(user)@127.0.0.1:5070>\r\n"
                + "Expires: 3600\r\nUser-Agent: Starling bench\r\nContent-Length: 0\r\n\r\n"
            h.route(bytes: Array(text.utf8))
            if i % 1000 == 999 { h.sender.clear() }
        }
        clock_gettime(CLOCK_MONOTONIC, &clock)
        let t1 = Double(clock.tv_sec) + Double(clock.tv_nsec) / 1e9
        let after = rssKiB()
        let contacts = h.runtime.usrloc.contactCount
        print("registrations: \(contacts) contacts saved in \(Int((t1 - t0) * 1000)) ms "
              + "(\(Int(Double(count) / (t1 - t0))) REGISTER/s on one thread)")
        print("RSS: \(before / 1024) MiB before, \(after / 1024) MiB after; "
              + "\((after - before) * 1024 / max(1, contacts)) bytes per contact")
    }
}
