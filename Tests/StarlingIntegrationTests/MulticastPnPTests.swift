import Foundation
import Testing

/// Multicast listening and SIP plug-and-play provisioning (issue 16), inside a network namespace the
/// test creates (loopback with multicast on and a route for 224.0.0.0/4): a phone subscribes to
/// the group, gets the 200 and the NOTIFY from the unicast socket with the provisioning URL, answers
/// 200 and sees no retransmission; another Event gets 489. A listen on a missing interface exits 2.
@Suite(.serialized)
struct MulticastPnPTests {
    /// With the unicast listener on 127.0.0.1, and on 0.0.0.0 (which receives the group's datagrams
    /// too: they are routed once, by the group socket).
    @Test(arguments: ["127.0.0.1", "0.0.0.0"])
    func phoneIsProvisionedOverMulticast(unicast: String) throws {
        let directory = try PackagePaths.makeTemporaryDirectory("starling-pnp")
        try NetworkNamespace.with { ns in
            let ip = try Requirements.tool("ip", package: "iproute2")
            for args in [["link", "set", "lo", "multicast", "on"], ["route", "add", "224.0.0.0/4", "dev", "lo"]] {
                let r = try Command.run(ip, ["-n", ns.name] + args, timeout: .seconds(20))
                guard r.status == 0 else { throw HarnessError("ip -n \(ns.name) \(args.joined(separator: " ")): \(r.output)") }
            }
            let port = try Ports.freeUDPPort()
            let phonePort = try Ports.freeUDPPort()
            let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
                .deletingLastPathComponent().appendingPathComponent("examples/pnp-provisioning.lua")
            let config = directory.appendingPathComponent("pnp.toml")
            try """
            [core]
            modules = ["sl", "tm", "uac", "kx", "htable", "textops"]
            [define]
            PNP_URL = "http://prov.example.com/phones"
            """.write(to: config, atomically: true, encoding: .utf8)
            var extra = ["--config", config.path, "--listen", "udp:224.0.1.75:\(port);mcast=lo"]
            if unicast != "127.0.0.1" { extra += ["--listen", "udp:\(unicast):\(port)"] }
            let starling = try Starling.start(script: script, port: port, workers: 1, extra: extra, directory: directory, namespace: ns)
            defer { starling.stop() }
            try starling.waitUntilBound(udpPort: port, ip: "224.0.1.75")
            let python = try Requirements.tool("python3", package: "python3")
            let run = try ns.run([python, PackagePaths.tool("pnp_phone.py").path, "224.0.1.75", String(port), String(phonePort)],
                                 timeout: .seconds(40))
            let line = run.output.split(separator: "\n").last { $0.hasPrefix("{") }.map(String.init) ?? ""
            let seen = (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any] ?? [:]
            let log = "phone: \(run.output)\nstarling:\n\(starling.logTail(40))"
            #expect(seen["subscribe_status"] as? String == "SIP/2.0 200 OK", "\(log)")
            #expect(seen["reply_from"] as? String == "127.0.0.1", "the 200 leaves from the unicast socket: \(log)")
            #expect(seen["notify_from"] as? String == "127.0.0.1", "the NOTIFY leaves from the unicast socket: \(log)")
            #expect(seen["notify_uri"] as? String == "sip:phone@127.0.0.1:\(phonePort)", "\(log)")
            #expect(seen["event"] as? String == "ua-profile", "\(log)")
            #expect(seen["subscription_state"] as? String == "terminated;reason=timeout", "\(log)")
            #expect(seen["content_type"] as? String == "application/url", "\(log)")
            #expect(seen["body"] as? String == "http://prov.example.com/phones/polycom/vvx400/0004f2a1b2c3.cfg", "\(log)")
            #expect((seen["via"] as? String)?.contains("224.0.1.75") == false, "the NOTIFY's Via names a unicast socket: \(log)")
            if unicast == "127.0.0.1" {
                #expect((seen["via"] as? String)?.contains("127.0.0.1:\(port)") == true, "\(log)")
            }
            #expect(seen["notify_retransmissions"] as? Int == 0, "\(log)")
            #expect(seen["other_event_status"] as? String == "SIP/2.0 489 Bad Event", "\(log)")
            #expect(seen["allow_events"] as? String == "ua-profile", "\(log)")
            // $Ri / KSR.kx.get_rcvip() was the group: the NOTIFY's From says so
            #expect(starling.log.components(separatedBy: "pnp: Polycom VVX400 0004f2a1b2c3").count - 1 == 1,
                    "the SUBSCRIBE is routed once: \(log)")
            #expect(starling.isRunning)
        }
    }

    @Test func listenOnAMissingInterfaceExits2() throws {
        let directory = try PackagePaths.makeTemporaryDirectory("starling-mcast-bad")
        let script = directory.appendingPathComponent("r.lua")
        try "function ksr_request_route() end".write(to: script, atomically: true, encoding: .utf8)
        let r = try Command.run(try PackagePaths.starlingBinary().path,
                                ["run", "--script", script.path, "--listen", "udp:224.0.1.75:5060;mcast=nosuch0"],
                                timeout: .seconds(20))
        #expect(r.status == 2, "\(r.output)")
        #expect(r.output.contains("nosuch0") && r.output.contains("--listen"), "\(r.output)")
    }
}
