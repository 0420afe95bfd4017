import Foundation
import StarlingTestSupport

/// dnsmasq serving NAPTR records (and any `extra` options, e.g. `--host-record=name,ip`) on 127.0.0.1 for
/// tests that need a real DNS server.
enum DNSMasq {
    /// Starts dnsmasq with `naptr` records on a free port (again on a fresh one if the port is taken
    /// before dnsmasq binds it) and waits until it answers a query; output in `directory`/dnsmasq.log.
    static func start(naptr: [String], extra: [String] = [], directory: URL) throws -> (process: ServerProcess, port: Int) {
        let executable = try Requirements.tool("dnsmasq", package: "dnsmasq-base")
        return try TestPorts.retrying { port in
            let process = try ServerProcess(name: "dnsmasq", executable: executable,
                                            arguments: DNSMasqCommand.arguments(port: port, naptr: naptr) + extra,
                                            logFile: directory.appendingPathComponent("dnsmasq.log"))
            do {
                try process.waitUntil("answered a DNS query on udp:127.0.0.1:\(port)") {
                    TestPorts.holdsUDP(port, pid: process.pid) && TestPorts.dnsAnswers(port: port)
                }
            } catch {
                process.stop()
                throw error
            }
            return (process, port)
        }
    }
}
