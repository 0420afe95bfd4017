import Foundation
import StarlingTestSupport

/// Runs Tools/sip_stream_client.py (SIP over TCP, TLS, WS, WSS with Python's standard library): one
/// scenario, its JSON counters and whether every check held.
enum StreamClient {
    struct Result: CustomStringConvertible {
        let status: Int32
        let json: [String: Any]
        let output: String
        var ok: Bool { status == 0 && (json["ok"] as? Bool) == true }
        func int(_ key: String) -> Int? { json[key] as? Int }
        var description: String { "status \(status): \(output)" }
    }

    static func run(_ scenario: String, proto: String, port: Int, _ extra: [String] = [],
                    timeout: Duration = .seconds(120)) throws -> Result {
        let python = try Requirements.tool("python3", package: "python3")
        let run = try Command.run(python, [PackagePaths.tool("sip_stream_client.py").path, scenario, "--proto", proto,
                                           "--port", String(port)] + extra, timeout: timeout)
        let line = run.output.split(separator: "\n").last(where: { $0.hasPrefix("{") }).map(String.init) ?? "{}"
        let json = (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any] ?? [:]
        return Result(status: run.status, json: json, output: run.output)
    }
}

/// TCP connection counts from /proc/net/tcp (loopback tests).
enum TCPTable {
    /// ESTABLISHED connections whose remote port is `port`.
    static func established(remotePort port: Int) -> Int {
        count { local, remote, state in state == "01" && remote == port }
    }

    /// Connections in any state with local port `port` (a listener's accepted sockets), listener excluded.
    static func accepted(localPort port: Int) -> Int {
        count { local, remote, state in local == port && state != "0A" }
    }

    /// True when something listens on TCP 127.0.0.1:`port`.
    static func isListening(_ port: Int) -> Bool {
        count { local, _, state in local == port && state == "0A" } > 0
    }

    /// Waits until `process` itself listens on TCP `port` (any address).
    static func waitListening(_ port: Int, process: ServerProcess, timeout: Duration = TestPorts.readinessTimeout) throws {
        try process.waitUntilListening(tcpPort: port, ip: nil, timeout: timeout)
    }

    private static func count(_ match: (Int, Int, String) -> Bool) -> Int {
        guard let text = TestPorts.readProcFile("/proc/net/tcp") else { return -1 }
        var n = 0
        for line in text.split(separator: "\n").dropFirst() {
            let f = line.split(separator: " ", omittingEmptySubsequences: true)
            guard f.count > 3 else { continue }
            func port(_ s: Substring) -> Int { Int(s.split(separator: ":").last ?? "", radix: 16) ?? -1 }
            if match(port(f[1]), port(f[2]), String(f[3])) { n += 1 }
        }
        return n
    }
}
