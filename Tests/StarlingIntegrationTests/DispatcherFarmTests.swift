import Foundation
import StarlingTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// KSR.dispatcher with real peers (issue 14): a farm of three SIPp PBXs (pbx.xml answers INVITE and
/// OPTIONS) behind the proxy running examples/pbx-farm/pbx-farm.lua, on Starling and on Kamailio 5.6
/// (dispatcher.so) with the same script and list file.
@Suite(.serialized)
struct DispatcherFarmTests {
    static func farmScript(for server: String, directory: URL) throws -> URL {
        var text = try String(contentsOf: PackagePaths.root.appendingPathComponent("examples/pbx-farm/pbx-farm.lua"), encoding: .utf8)
        // Kamailio's harness logs at debug=-1 (errors only): the events go to its log as errors.
        if server == "kamailio" { text = text.replacingOccurrences(of: "KSR.xlog.xinfo(", with: "KSR.xlog.xerr(") }
        let url = directory.appendingPathComponent("pbx-farm.lua")
        try text.write(to: url, atomically: true, encoding: .utf8)
        return url
    }

    /// Starts the proxy with dispatcher over `listFile`: probing every second, failover flag,
    /// fr_timer 1 s, the event callback.
    static func startProxy(_ server: String, script: URL, port: Int, listFile: URL, directory: URL,
                           extraParams: [(String, String)] = [], core: String = "") throws -> ServerProcess {
        var params: [(String, String)] = [("list_file", "\"\(listFile.path)\""), ("flags", "2"), ("ds_ping_interval", "1"), ("ds_probing_mode", "1"),
                                          ("ds_probing_threshold", "1"), ("ds_inactive_threshold", "1"),
                                          ("event_callback", "\"ksr_dispatcher_event\"")]
        for (k, v) in extraParams {
            if let i = params.firstIndex(where: { $0.0 == k }) { params[i].1 = v } else { params.append((k, v)) }
        }
        if server == "kamailio" {
            return try Kamailio.start(
                script: script, port: port, children: 2,
                modules: ["sl", "tm", "pv", "maxfwd", "siputils", "xlog", "dispatcher"],
                extra: """
                    modparam("tm", "fr_timer", 1000)
                    modparam("tm", "fr_inv_timer", 5000)
                    \(params.map { "modparam(\"dispatcher\", \"\($0.0)\", \($0.1))" }.joined(separator: "\n"))
                    """,
                directory: directory)
        }
        let config = directory.appendingPathComponent("starling.toml")
        try """
        [core]
        modules = ["sl", "tm", "maxfwd", "siputils", "xlog", "dispatcher"]
        \(core)

        [modparam.tm]
        fr_timer = 1000
        fr_inv_timer = 5000

        [modparam.dispatcher]
        \(params.map { "\($0.0) = \($0.1)" }.joined(separator: "\n"))

        """.write(to: config, atomically: true, encoding: .utf8)
        return try Starling.start(script: script, port: port, workers: 2, extra: ["--config", config.path], directory: directory)
    }

    static func invites(_ uas: SIPpUAS) -> Int { uas.receivedRequests.filter { $0 == "INVITE" }.count }

    static func waitFor(_ what: String, in proxy: ServerProcess, after offset: Int = 0, timeout: Duration = .seconds(15)) -> Bool {
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        while clock.now < deadline {
            if proxy.log.dropFirst(offset).contains(what) { return true }
            usleep(100_000)
        }
        return false
    }

    @Test(arguments: ["starling", "kamailio"])
    func farmSpreadsFailsOverAndRecovers(server: String) throws {
        let directory = try PackagePaths.makeTemporaryDirectory("starling-ds-farm-\(server)")
        let ports = try Ports.freeUDPPorts(6)
        let (proxyPort, uacPort, uac2Port) = (ports[0], ports[1], ports[2])
        let pbxPorts = Array(ports[3...5])
        let list = directory.appendingPathComponent("dispatcher.list")
        try """
        # set 1: three PBXs, probed (flag 8)
        \(pbxPorts.map { "1 sip:127.0.0.1:\($0) 8" }.joined(separator: "\n"))

        """.write(to: list, atomically: true, encoding: .utf8)
        let scenario = PackagePaths.scenario("pbx.xml")
        var pbx = try pbxPorts.enumerated().map { i, p in
            try SIPp.uas(scenario: scenario, port: p, directory: directory, tag: "pbx\(i + 1)", traceMessages: true)
        }
        defer { for p in pbx { p.process.stop(signal: SIGKILL, grace: .seconds(1)) } }
        let proxy = try Self.startProxy(server, script: try Self.farmScript(for: server, directory: directory), port: proxyPort,
                                        listFile: list, directory: directory)
        defer { proxy.stop() }
        usleep(1_500_000) // the first probes

        // 1. Steady state: round-robin over three PBXs, even.
        let first = try SIPp.runUAC(target: proxyPort, localPort: uacPort, rate: 10, calls: 30, directory: directory,
                                    tag: "even", timeout: .seconds(60))
        #expect(first.successfulCalls == 30 && first.failedCalls == 0, "\(server): \(first)\n\(proxy.logTail())")
        let even = pbx.map(Self.invites)
        #expect(even == [10, 10, 10], "\(server): round-robin INVITEs per PBX \(even)")

        // 2. Kill PBX 2 under a steady load: calls fail over, probing marks it inactive.
        let offset = proxy.log.count
        let load = try SIPp.startUAC(target: proxyPort, localPort: uac2Port, rate: 5, calls: 40, directory: directory, tag: "load")
        usleep(2_000_000)
        pbx[1].process.stop(signal: SIGKILL, grace: .seconds(1))
        // from the failure route ($ru: the call's R-URI) or from a probe ($ru: the PBX), whichever sees it first
        let down = Self.waitFor("DSEVENT dispatcher:dst-down ", in: proxy, after: offset)
        #expect(down, "\(server): no dst-down event for the dead PBX\n\(proxy.logTail(60))")
        usleep(1_000_000)
        // 3. Restart it: probing brings it back.
        pbx[1] = try SIPp.uas(scenario: scenario, port: pbxPorts[1], directory: directory, tag: "pbx2b", traceMessages: true)
        let up = Self.waitFor("DSEVENT dispatcher:dst-up sip:127.0.0.1:\(pbxPorts[1])", in: proxy, after: offset)
        #expect(up, "\(server): no dst-up event after the restart\n\(proxy.logTail(60))")
        let loaded = try #require(load.wait(timeout: .seconds(60)), "\(server): the load run did not end")
        // apart from a call in progress on the dead PBX (its BYE), every call succeeds
        #expect(loaded.successfulCalls >= 38 && loaded.outgoingCalls == 40, "\(server): \(loaded)\n\(proxy.logTail(60))")

        // 4. It takes calls again: 15 more calls, 5 each.
        let before = pbx.map(Self.invites)
        let last = try SIPp.runUAC(target: proxyPort, localPort: uacPort, rate: 10, calls: 15, directory: directory,
                                   tag: "after", timeout: .seconds(60))
        #expect(last.successfulCalls == 15, "\(server): \(last)")
        let after = zip(pbx.map(Self.invites), before).map { $0 - $1 }
        #expect(after == [5, 5, 5], "\(server): INVITEs per PBX after the recovery \(after)")
        #expect(proxy.isRunning, "\(server) died; log:\n\(proxy.logTail())")
    }

    /// The same requests get the same destination on both servers: the hashes (Call-ID, From, To,
    /// R-URI), the list order, round-robin's start, unknown sets and algorithms.
    @Test func decisionsMatchKamailio() throws {
        let directory = try PackagePaths.makeTemporaryDirectory("starling-ds-decisions")
        let ports = try Ports.freeUDPPorts(2)
        let list = directory.appendingPathComponent("dispatcher.list")
        try """
        1 sip:127.0.0.1:5091
        1 sip:127.0.0.1:5092 0 5
        1 sip:127.0.0.1:5093
        1 sip:127.0.0.1:5094;transport=udp 0 5
        2 sip:127.0.0.1:5095 0 0 duid=x

        """.write(to: list, atomically: true, encoding: .utf8)
        let script = directory.appendingPathComponent("decide.lua")
        try """
        function ksr_request_route()
          local set = tonumber(KSR.pv.get("$hdr(X-Set)"))
          local alg = tonumber(KSR.pv.get("$hdr(X-Alg)"))
          local r = KSR.dispatcher.ds_select_dst(set, alg)
          local out = r .. " " .. tostring(KSR.pv.get("$du")) .. " " .. tostring(KSR.pv.get("$xavp(_dsdst_[1]=>uri)"))
            .. " " .. tostring(KSR.pv.get("$xavp(_dsctx_=>cnt)"))
          KSR.hdr.append_to_reply("X-DS: " .. out .. "\\r\\n")
          KSR.sl.send_reply(200, "OK")
        end
        function ksr_dispatcher_event(evname) end
        """.write(to: script, atomically: true, encoding: .utf8)
        var requests: [(String, String)] = []
        for i in 0..<12 {
            for (set, alg) in [(1, 0), (1, 1), (1, 2), (1, 3), (2, 0)] {
                requests.append(("c\(i * 7919)@host\(i)", "\(set) \(alg) user\(i * 13) callee\(i)"))
            }
        }
        for (set, alg) in [(1, 4), (1, 4), (1, 4), (1, 8), (1, 64), (9, 4), (1, 99)] {
            requests.append(("rr-\(requests.count)", "\(set) \(alg) rr rr"))
        }
        var answers: [String: [String]] = [:]
        for server in ["starling", "kamailio"] {
            let dir = directory.appendingPathComponent(server)
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            let proxy = try Self.startProxy(server, script: script, port: ports[0], listFile: list, directory: dir,
                                            extraParams: [("ds_ping_interval", "0")])
            defer { proxy.stop() }
            let endpoint = try UDPEndpoint(port: ports[1])
            var got: [String] = []
            for (callID, spec) in requests {
                let p = spec.split(separator: " ").map(String.init)
                let text = "OPTIONS sip:\(p[3])@127.0.0.1:\(ports[0]) SIP/2.0\r\n"
                    + "Via: SIP/2.0/UDP 127.0.0.1:\(endpoint.port);branch=z9hG4bK\(abs(callID.hashValue))\r\n"
                    + "From: <sip:\(p[2])@example.com>;tag=1\r\nTo: <sip:\(p[3])@example.org:5070>\r\n"
                    + "Call-ID: \(callID)\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nX-Set: \(p[0])\r\nX-Alg: \(p[1])\r\n"
                    + "Content-Length: 0\r\n\r\n"
                try endpoint.send(text, to: ports[0])
                let reply = endpoint.receive(timeout: .seconds(5)) ?? ""
                got.append("\(spec) \(callID) -> " + (SIPProbe.header("X-DS", in: reply) ?? "<no reply>"))
            }
            answers[server] = got
            #expect(proxy.isRunning)
        }
        let s = answers["starling"] ?? [], k = answers["kamailio"] ?? []
        #expect(s.count == requests.count && k.count == requests.count)
        for (a, b) in zip(s, k) { #expect(a == b, "starling: \(a)\nkamailio: \(b)") }
    }

    /// A list line that does not parse stops Starling with exit 2 naming the key and file:line.
    /// baresip (a real phone answering by itself) as one destination of the farm beside a SIPp PBX,
    /// on both servers: the OPTIONS probes keep it up, round-robin gives it every other call, and
    /// it answers them (SIPp's calls end with 200 to the BYE).
    @Test(arguments: ["starling", "kamailio"])
    func baresipIsOneOfTheDestinations(server: String) throws {
        let directory = try PackagePaths.makeTemporaryDirectory("starling-ds-baresip-\(server)")
        let ports = try Ports.freeUDPPorts(4)
        let (proxyPort, uacPort, pbxPort, phonePort) = (ports[0], ports[1], ports[2], ports[3])
        let list = directory.appendingPathComponent("dispatcher.list")
        // baresip answers OPTIONS to a user of its own (404 without a user part): the destination names it
        try "1 sip:127.0.0.1:\(pbxPort) 8\n1 sip:service@127.0.0.1:\(phonePort) 8\n".write(to: list, atomically: true, encoding: .utf8)
        let pbx = try SIPp.uas(scenario: PackagePaths.scenario("pbx.xml"), port: pbxPort, directory: directory, tag: "pbx",
                               traceMessages: true)
        defer { pbx.process.stop(signal: SIGKILL, grace: .seconds(1)) }
        let phoneDirectory = directory.appendingPathComponent("baresip")
        // SIPp's calls go to sip:service@...: baresip's account is that user, not registered
        try Baresip.configure(directory: phoneDirectory, user: "service", password: "unused", domain: "127.0.0.1",
                              proxyPort: proxyPort, sipPort: phonePort, rtpPorts: try TestPorts.block(100), register: false)
        let phone = try Baresip.start(directory: phoneDirectory, commands: [], seconds: 60)
        defer { phone.stop() }
        let proxy = try Self.startProxy(server, script: try Self.farmScript(for: server, directory: directory), port: proxyPort,
                                        listFile: list, directory: directory)
        defer { proxy.stop() }
        usleep(1_500_000) // the first probes
        let run = try SIPp.runUAC(target: proxyPort, localPort: uacPort, rate: 2, calls: 6, directory: directory,
                                  tag: "calls", timeout: .seconds(60))
        let context = "\(server) log:\n\(proxy.logTail(30))\nbaresip log:\n\(phone.logTail(30))"
        #expect(run.successfulCalls == 6 && run.failedCalls == 0, "\(server): \(run)\n\(context)")
        #expect(Self.invites(pbx) == 3, "\(server): round-robin gives the SIPp PBX 3 of 6 calls: \(Self.invites(pbx))")
        let answered = phone.log.components(separatedBy: "Call established").count - 1
        #expect(answered == 3, "\(server): baresip answered \(answered) calls (3 expected)\n\(context)")
        #expect(!proxy.log.contains("dst-down"), "\(server): a destination went down\n\(context)")
        #expect(proxy.isRunning && phone.isRunning, "\(context)")
    }

    /// Host names in the list are resolved at load through the configured DNS server (dnsmasq started
    /// here; never the machine's resolver): two PBXs by name take the calls, a name that does not
    /// resolve is dropped with Kamailio's warning and gets nothing.
    @Test func hostNamesAreResolvedAtLoad() throws {
        let directory = try PackagePaths.makeTemporaryDirectory("starling-ds-names")
        let ports = try Ports.freeUDPPorts(4)
        let (proxyPort, uacPort) = (ports[0], ports[1])
        let pbxPorts = Array(ports[2...3])
        let dnsmasq = try DNSMasq.start(naptr: [], extra: ["--host-record=pbx1.farm.test,127.0.0.1",
                                                           "--host-record=pbx2.farm.test,127.0.0.1", "--local=/farm.test/"],
                                        directory: directory)
        defer { dnsmasq.process.stop() }
        let list = directory.appendingPathComponent("dispatcher.list")
        try """
        1 sip:pbx1.farm.test:\(pbxPorts[0]) 8
        1 sip:gone.farm.test:\(pbxPorts[1]) 8
        1 sip:pbx2.farm.test:\(pbxPorts[1]) 8

        """.write(to: list, atomically: true, encoding: .utf8)
        let scenario = PackagePaths.scenario("pbx.xml")
        let pbx = try pbxPorts.enumerated().map { i, p in
            try SIPp.uas(scenario: scenario, port: p, directory: directory, tag: "pbx\(i + 1)", traceMessages: true)
        }
        defer { for p in pbx { p.process.stop(signal: SIGKILL, grace: .seconds(1)) } }
        let proxy = try Self.startProxy("starling", script: try Self.farmScript(for: "starling", directory: directory), port: proxyPort,
                                        listFile: list, directory: directory,
                                        core: "dns_servers = [\"127.0.0.1:\(dnsmasq.port)\"]")
        defer { proxy.stop() }
        #expect(Self.waitFor("could not resolve gone.farm.test", in: proxy), "\(proxy.logTail())")
        let run = try SIPp.runUAC(target: proxyPort, localPort: uacPort, rate: 10, calls: 10, directory: directory,
                                  tag: "names", timeout: .seconds(60))
        #expect(run.successfulCalls == 10 && run.failedCalls == 0, "\(run)\n\(proxy.logTail())")
        #expect(pbx.map(Self.invites) == [5, 5], "round-robin over the two names: \(pbx.map(Self.invites))")
        #expect(proxy.isRunning)
    }

    @Test func brokenListRefusesTheStart() throws {
        let directory = try PackagePaths.makeTemporaryDirectory("starling-ds-bad")
        let port = try Ports.freeUDPPorts(1)[0]
        let list = directory.appendingPathComponent("dispatcher.list")
        try "1 sip:127.0.0.1:5091\n1 sip:127.0.0.1:5092 0 0 weight=1000\n".write(to: list, atomically: true, encoding: .utf8)
        let config = directory.appendingPathComponent("starling.toml")
        try "[core]\nmodules = [\"tm\", \"dispatcher\"]\n[modparam.dispatcher]\nlist_file = \"\(list.path)\"\n"
            .write(to: config, atomically: true, encoding: .utf8)
        let script = try Self.farmScript(for: "starling", directory: directory)
        let run = try Command.run(try PackagePaths.starlingBinary().path,
                                  Starling.arguments(script: script, port: port, workers: 1, extra: ["--config", config.path]),
                                  timeout: .seconds(30))
        #expect(run.status == 2, "exit \(run.status): \(run.output)")
        #expect(run.output.contains("modparam.dispatcher.list_file") && run.output.contains("dispatcher.list:2")
                && run.output.contains("weight=1000"), "\(run.output)")
    }
}
