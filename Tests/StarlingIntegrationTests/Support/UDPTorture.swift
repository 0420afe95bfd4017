import Foundation

/// Runs Tools/udp_torture.py: each .dat file is sent as one UDP datagram to a
/// proxy on 127.0.0.1, and the tool reports per file whether the proxy
/// replied (status), forwarded to the next hop, or dropped it. Run it inside a
/// `NetworkNamespace`: the torture messages name outside addresses.
enum UDPTorture {
    /// The tool's exit status (0 = every file as the table says) and its report.
    struct Report: Sendable {
        let status: Int32
        let output: String
        /// The per-file results (`--json`), raw.
        let json: String
    }

    /// Runs the tool against 127.0.0.1:`serverPort`; the proxy must forward to
    /// 127.0.0.1:`nextHopPort`. `table` is a TSV of `name<TAB>expected`.
    static func run(serverPort: Int, nextHopPort: Int, corpus: URL = PackagePaths.fixture("rfc4475"), table: URL,
                    extraArguments: [String] = [], directory: URL, namespace: NetworkNamespace?,
                    timeout: Duration = .seconds(300)) throws -> Report {
        try run(server: "127.0.0.1:\(serverPort)", addressing: ["--next-hop-port", String(nextHopPort)],
                corpus: corpus, table: table, extraArguments: extraArguments, directory: directory,
                namespace: namespace, timeout: timeout)
    }

    /// Runs the tool against `server` (`IP:PORT`) sending from `source` (`IP` or `IP:PORT`, e.g.
    /// `127.0.0.3:5060`; replies are awaited on that IP) with the forward sink on `nextHop`
    /// (`IP:PORT`, e.g. `127.0.0.2:5060` when every host name resolves to 127.0.0.2).
    static func run(server: String, source: String, nextHop: String, corpus: URL = PackagePaths.fixture("rfc4475"),
                    table: URL, extraArguments: [String] = [], directory: URL, namespace: NetworkNamespace?,
                    timeout: Duration = .seconds(300)) throws -> Report {
        try run(server: server, addressing: ["--source", source, "--next-hop", nextHop], corpus: corpus,
                table: table, extraArguments: extraArguments, directory: directory, namespace: namespace,
                timeout: timeout)
    }

    private static func run(server: String, addressing: [String], corpus: URL, table: URL, extraArguments: [String],
                            directory: URL, namespace: NetworkNamespace?, timeout: Duration) throws -> Report {
        let python = try Requirements.tool("python3", package: "python3")
        let json = directory.appendingPathComponent("udp_torture.json")
        let arguments = [PackagePaths.tool("udp_torture.py").path, "--server", server] + addressing
            + ["--dir", corpus.path, "--table", table.path, "--json", json.path] + extraArguments
        let result = try Command.run(python, arguments, timeout: timeout, namespace: namespace)
        guard result.status == 0 || result.status == 1 else {
            throw HarnessError("udp_torture.py failed to run (status \(result.status)):\n\(result.output)")
        }
        return Report(status: result.status, output: result.output,
                      json: (try? String(contentsOf: json, encoding: .utf8)) ?? "")
    }
}
