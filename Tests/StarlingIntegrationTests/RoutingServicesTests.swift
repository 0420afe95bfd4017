import Foundation
import StarlingTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// examples/enum-routing.lua and examples/http-routing.lua, run by the real binary against real peers:
/// dnsmasq serving the ENUM zone, a Python routing web service, SIPp as caller and callee.
@Suite(.serialized)
struct RoutingServicesTests {
    /// Copies an example, rewriting its `local NAME = ...` line.
    static func example(_ name: String, replacing constant: String? = nil, with value: String = "",
                        directory: URL) throws -> URL {
        try example(name, replacements: constant.map { [$0: value] } ?? [:], directory: directory)
    }

    /// Copies an example, rewriting a `local NAME = ...` line for each replacement.
    static func example(_ name: String, replacements: [String: String], directory: URL) throws -> URL {
        var lines = try String(contentsOf: PackagePaths.root.appendingPathComponent("examples/\(name)"), encoding: .utf8)
            .split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        for (constant, value) in replacements {
            guard let i = lines.firstIndex(where: { $0.hasPrefix("local \(constant) = ") }) else {
                throw HarnessError("examples/\(name) has no `local \(constant) = ` line")
            }
            lines[i] = "local \(constant) = \"\(value)\""
        }
        let url = directory.appendingPathComponent(name)
        try lines.joined(separator: "\n").write(to: url, atomically: true, encoding: .utf8)
        return url
    }

    /// INVITE to +15551234: Starling asks dnsmasq (configured as its DNS server) for the NAPTR of
    /// 4.3.2.1.5.5.5.1.e164.arpa and relays the call to the SIP URI it gives, where SIPp answers. A
    /// number whose record has a broken regexp gets 404 and a log line; the machine's resolver is
    /// never asked.
    @Test func enumRoutingReachesTheNAPTRTarget() throws {
        let directory = try PackagePaths.makeTemporaryDirectory("starling-enum")
        let proxyPort = try Ports.freeUDPPort()
        let uas = try SIPp.uas(directory: directory)
        defer { uas.stop() }
        let uasPort = uas.port
        let dnsmasq = try DNSMasq.start(naptr: [
            "4.3.2.1.5.5.5.1.e164.arpa,100,10,u,E2U+sip,!^.*$!sip:bob@127.0.0.1:\(uasPort)!",
            "9.9.9.9.e164.arpa,100,10,u,E2U+sip,!^.*$sip:broken@127.0.0.1",
        ], directory: directory)
        defer { dnsmasq.process.stop() }
        let dnsPort = dnsmasq.port

        let script = try Self.example("enum-routing.lua", directory: directory)
        let config = directory.appendingPathComponent("starling.toml")
        try """
        [core]
        modules = ["sl", "maxfwd", "tm", "siputils", "enum"]
        dns_servers = ["127.0.0.1:\(dnsPort)"]

        """.write(to: config, atomically: true, encoding: .utf8)
        let starling = try Starling.start(script: script, port: proxyPort, workers: 2, extra: ["--config", config.path],
                                          directory: directory)
        defer { starling.stop() }

        let result = try SIPp.runUAC(target: proxyPort, rate: 10, calls: 10, directory: directory, service: "+15551234",
                                     timeout: .seconds(60))
        #expect(result.successfulCalls == 10, "\(result)\nstarling log:\n\(starling.logTail())")
        #expect(result.failedCalls == 0, "\(result)")

        let broken = try SIPp.runUAC(scenario: PackagePaths.scenario("options.xml"), target: proxyPort, rate: 1, calls: 1,
                                     directory: directory, tag: "broken", service: "+9999",
                                     extra: ["-set", "expected", "404"], timeout: .seconds(30))
        #expect(broken.successfulCalls == 1, "\(broken)\nstarling log:\n\(starling.logTail())")
        let log = (try? String(contentsOf: directory.appendingPathComponent("starling.log"), encoding: .utf8)) ?? ""
        #expect(log.contains("! missing from regexp"), "no log line for the broken regexp:\n\(starling.logTail())")
        #expect(log.contains("sip:bob@127.0.0.1:\(uasPort)"), "the example's info line is missing")
        #expect(starling.isRunning)
    }

    /// examples/http-routing.lua: the web service names the next hop (SIPp UAS); an unknown user gets
    /// 404, a failing service 503, and a service slower than connection_timeout a 503 within the bound.
    @Test func httpRoutingFollowsTheWebService() throws {
        let directory = try PackagePaths.makeTemporaryDirectory("starling-http")
        let proxyPort = try Ports.freeUDPPort()
        let uas = try SIPp.uas(directory: directory)
        defer { uas.stop() }
        let python = try Requirements.tool("python3", package: "python3")
        let (web, httpPort) = try TestPorts.retrying { httpPort in
            let web = try ServerProcess(name: "http routing service", executable: python,
                                        arguments: ["-u", PackagePaths.tool("http_routing.py").path, String(httpPort),
                                                    "sip:127.0.0.1:\(uas.port)"],
                                        logFile: directory.appendingPathComponent("http.log"))
            try web.waitUntilListening(tcpPort: httpPort)
            return (web, httpPort)
        }
        defer { web.stop() }

        let script = try Self.example("http-routing.lua", replacing: "ROUTING_URL",
                                      with: "http://127.0.0.1:\(httpPort)/route", directory: directory)
        let config = directory.appendingPathComponent("starling.toml")
        try """
        [core]
        modules = ["sl", "maxfwd", "tm", "siputils", "http_client"]

        [modparam.http_client]
        connection_timeout = 1

        """.write(to: config, atomically: true, encoding: .utf8)
        let starling = try Starling.start(script: script, port: proxyPort, workers: 2, extra: ["--config", config.path],
                                          directory: directory)
        defer { starling.stop() }

        let result = try SIPp.runUAC(target: proxyPort, rate: 10, calls: 10, directory: directory, service: "+15551234",
                                     timeout: .seconds(60))
        #expect(result.successfulCalls == 10, "\(result)\nstarling log:\n\(starling.logTail())")

        for (user, expected) in [("unknown", "404"), ("broken", "503"), ("slow", "503")] {
            let start = ContinuousClock.now
            let r = try SIPp.runUAC(scenario: PackagePaths.scenario("options.xml"), target: proxyPort, rate: 1, calls: 1,
                                    directory: directory, tag: user, service: user, extra: ["-set", "expected", expected],
                                    timeout: .seconds(30))
            #expect(r.successfulCalls == 1, "\(user): \(r)\nstarling log:\n\(starling.logTail())")
            if user == "slow" {
                #expect(ContinuousClock.now - start < .seconds(4), "the slow service held the worker too long")
            }
        }
        let webLog = (try? String(contentsOf: directory.appendingPathComponent("http.log"), encoding: .utf8)) ?? ""
        #expect(webLog.contains("GET /route?user=+15551234"), "the service was not asked:\n\(webLog)")
        let log = (try? String(contentsOf: directory.appendingPathComponent("starling.log"), encoding: .utf8)) ?? ""
        #expect(log.contains("routing service failed for slow: -28"), "no timeout line:\n\(starling.logTail())")
        #expect(starling.isRunning)
    }
}
