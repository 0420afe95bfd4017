import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The real `starling` with pike and an htable `ipban`, used as Kamailio's example script does
/// (`ksr_route_reqinit`: a banned source is dropped, a pike flood bans the source), with the example
/// cfg's pike 2/16/4 and `ipban=>size=8;autoexpire=300;`. A burst of OPTIONS from one socket: the
/// first 16 are answered, then the source is banned, later requests get no reply, and
/// `starling ctl htable.dump ipban` shows the address.
@Suite(.serialized)
struct PikeBanTests {
    /// The example's reqinit checks, then a 200 for what passes. (The example skips these checks for
    /// its own addresses, `KSR.is_myself_srcip()`; the flood here comes from 127.0.0.1, so that test
    /// is left out.)
    static let script = """
        function ksr_request_route()
            local srcip = KSR.kx.get_srcip()
            if KSR.htable.sht_match_name("ipban", "eq", srcip) > 0 then
                KSR.dbg("request from blocked IP - " .. KSR.kx.get_method() .. " from " .. srcip .. "\\n")
                KSR.x.exit()
            end
            if KSR.pike.pike_check_req() < 0 then
                KSR.err("ALERT: pike blocking " .. KSR.kx.get_method() .. " from " .. srcip .. ":" .. KSR.kx.get_srcport() .. "\\n")
                KSR.htable.sht_seti("ipban", srcip, 1)
                KSR.x.exit()
            end
            KSR.sl.sl_send_reply(200, "OK")
        end
        """

    @Test func floodIsBannedThroughHtable() throws {
        let directory = try PackagePaths.makeTemporaryDirectory("starling-pike")
        let binary = try PackagePaths.starlingBinary().path
        let sipPort = try Ports.freeUDPPort()
        let controlPort = try Ports.freeTCPPort()
        let scriptFile = directory.appendingPathComponent("route.lua")
        try Self.script.write(to: scriptFile, atomically: true, encoding: .utf8)
        let config = directory.appendingPathComponent("starling.toml")
        try """
            [control]
            listen = "127.0.0.1:\(controlPort)"
            [modparam.htable]
            htable = "ipban=>size=8;autoexpire=300;"
            [modparam.pike]
            sampling_time_unit = 2
            reqs_density_per_unit = 16
            remove_latency = 4
            """.write(to: config, atomically: true, encoding: .utf8)
        let starling = try Starling.start(script: scriptFile, port: sipPort, workers: 2, extra: ["--config", config.path],
                                          directory: directory)
        defer { starling.stop() }

        // Start just after a 2 s boundary of the wall clock (pike's sampling units), so the probe and
        // the burst fall in one unit.
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        let intoUnit = Double(now.tv_sec % 2) + Double(now.tv_nsec) / 1e9
        usleep(UInt32((2.0 - intoUnit + 0.05) * 1_000_000))

        // Not flooding yet: answered.
        #expect(try SIPProbe.optionsStatusLine(serverPort: sipPort) == "SIP/2.0 200 OK", "\(starling.logTail())")

        // A burst of 60 requests from one socket, well within one 2 s sampling unit.
        let flooder = try UDPEndpoint()
        for i in 0..<60 {
            try flooder.send(SIPProbe.options(requestURI: "sip:starling@127.0.0.1:\(sipPort)", from: flooder,
                                              callID: "flood-\(i)"), to: sipPort)
        }
        var answered = 0
        while let reply = flooder.receive(timeout: .seconds(1)) {
            if reply.hasPrefix("SIP/2.0 200") { answered += 1 }
        }
        // 16 per unit are allowed; the probe above was the first of them.
        #expect(answered == 15, "\(answered) answers; log:\n\(starling.logTail())")
        #expect(starling.log.contains("ALERT: pike blocking OPTIONS from 127.0.0.1"), "\(starling.logTail())")

        // Banned: later requests (even after pike's own window and remove_latency) get no reply.
        sleep(5)
        try flooder.send(SIPProbe.options(requestURI: "sip:starling@127.0.0.1:\(sipPort)", from: flooder), to: sipPort)
        #expect(flooder.receive(timeout: .seconds(1)) == nil, "a banned source was answered")
        #expect(try SIPProbe.optionsStatusLine(serverPort: sipPort) == nil, "another socket of the banned address was answered")

        // The control API shows the entry.
        let dump = try Command.run(binary, ["ctl", "--url", "http://127.0.0.1:\(controlPort)", "htable.dump", "ipban"],
                                   timeout: .seconds(20))
        #expect(dump.status == 0, "\(dump.output)")
        #expect(dump.output.contains("\"name\" : \"127.0.0.1\""), "\(dump.output)")
        #expect(dump.output.contains("\"value\" : 1"), "\(dump.output)")
        let get = try Command.run(binary, ["ctl", "--url", "http://127.0.0.1:\(controlPort)", "htable.get", "ipban", "127.0.0.1"],
                                  timeout: .seconds(20))
        #expect(get.status == 0 && get.output.contains("\"value\" : 1"), "\(get.output)")

        // Lifting the ban by hand (htable.delete) lets the source in again: pike forgot it by now.
        let delete = try Command.run(binary, ["ctl", "--url", "http://127.0.0.1:\(controlPort)", "htable.delete", "ipban", "127.0.0.1"],
                                     timeout: .seconds(20))
        #expect(delete.status == 0, "\(delete.output)")
        #expect(try SIPProbe.optionsStatusLine(serverPort: sipPort) == "SIP/2.0 200 OK", "\(starling.logTail())")
        #expect(starling.isRunning, "\(starling.logTail())")
    }
}
