import Foundation

/// The final counters of one SIPp run, from its `-trace_stat` CSV (last line)
/// and its exit status.
struct SIPpResult: Sendable, CustomStringConvertible {
    /// SIPp's exit status: 0 = every call succeeded, 1 = at least one failed,
    /// 97 = stopped by an internal command, 99 = normal exit without calls, 255/254 = fatal error.
    let exitStatus: Int32
    let outgoingCalls: Int
    let successfulCalls: Int
    let failedCalls: Int
    let retransmissions: Int
    let deadCallMessages: Int
    let unexpectedMessages: Int
    /// Every column of the final statistics line, by name (`"FailedCallTimeout(C)"`...).
    let statistics: [String: String]
    /// SIPp's screen output and its `-trace_err` file, for failure messages.
    let output: String
    let errors: String

    /// Exit status 0 and no failed call.
    var allCallsSucceeded: Bool { exitStatus == 0 && failedCalls == 0 }

    var description: String {
        "SIPp exit \(exitStatus): \(successfulCalls)/\(outgoingCalls) calls succeeded, \(failedCalls) failed, "
            + "\(retransmissions) retransmissions, \(unexpectedMessages) unexpected, \(deadCallMessages) dead-call messages"
            + (errors.isEmpty ? "" : "\nSIPp errors (first 3000 chars):\n\(errors.prefix(3000))")
    }

    /// Parses a `-trace_stat` CSV (';'-separated, header line first).
    static func parseStatistics(csv: String) -> [String: String] {
        let lines = csv.split(whereSeparator: \.isNewline).filter { !$0.isEmpty }
        guard lines.count >= 2 else { return [:] }
        let header = lines[0].split(separator: ";", omittingEmptySubsequences: false).map(String.init)
        let last = lines[lines.count - 1].split(separator: ";", omittingEmptySubsequences: false).map(String.init)
        var result: [String: String] = [:]
        for (index, name) in header.enumerated() where !name.isEmpty && index < last.count {
            result[name] = last[index]
        }
        return result
    }
}

/// Runs SIPp (Debian package sip-tester) with the scenarios in Scenarios/.
/// Everything binds and sends to 127.0.0.1.
enum SIPp {
    static func executable() throws -> String {
        try Requirements.tool(ProcessInfo.processInfo.environment["SIPP_BIN"] ?? "sipp", package: "sip-tester")
    }

    /// Arguments for a SIPp UAS on `ip`:`port` (default 127.0.0.1) with `scenario` (default uas.xml).
    static func uasArguments(scenario: URL = PackagePaths.scenario("uas.xml"), port: Int, ip: String = Ports.loopback,
                             directory: URL) -> [String] {
        ["-sf", scenario.path, "-i", ip, "-p", String(port), "-nostdin", "-buff_size", "2097152",
         "-trace_err", "-error_file", directory.appendingPathComponent("uas_errors.log").path]
    }

    /// Starts a SIPp UAS on `ip`:`port` (default 127.0.0.1; inside `namespace` if given); stop
    /// it with `stop()`. `extra` adds arguments (`-trace_msg`...).
    static func startUAS(scenario: URL = PackagePaths.scenario("uas.xml"), port: Int, ip: String = Ports.loopback,
                         directory: URL, extra: [String] = [], namespace: NetworkNamespace? = nil) throws -> ServerProcess {
        let uas = try ServerProcess(name: "sipp uas", executable: try executable(),
                                    arguments: uasArguments(scenario: scenario, port: port, ip: ip, directory: directory)
                                        + extra,
                                    logFile: directory.appendingPathComponent("uas.out"), workingDirectory: directory,
                                    namespace: namespace)
        try uas.waitUntilBound(udpPort: port, ip: ip)
        return uas
    }

    /// Arguments for a SIPp client run: `calls` calls at `rate` calls/s to
    /// 127.0.0.1:`target`, statistics to `<directory>/<tag>_stat.csv`.
    static func clientArguments(scenario: URL, target: Int, localPort: Int, rate: Int, calls: Int, directory: URL,
                                tag: String, extra: [String] = []) -> [String] {
        ["-sf", scenario.path, "\(Ports.loopback):\(target)", "-i", Ports.loopback, "-p", String(localPort),
         "-nostdin", "-buff_size", "2097152", "-r", String(rate), "-rp", "1000", "-m", String(calls),
         "-timeout", "\(calls / max(rate, 1) * 3 + 30)s",
         "-trace_stat", "-stf", directory.appendingPathComponent("\(tag)_stat.csv").path, "-fd", "1",
         "-trace_err", "-error_file", directory.appendingPathComponent("\(tag)_errors.log").path] + extra
    }

    /// Runs a SIPp client to completion and returns its counters.
    /// `extra` adds arguments such as `["-set", "expected", "404"]` for options.xml.
    static func runClient(scenario: URL = PackagePaths.scenario("uac.xml"), target: Int, localPort: Int? = nil,
                          rate: Int, calls: Int, directory: URL, tag: String = "uac", extra: [String] = [],
                          timeout: Duration = .seconds(180), namespace: NetworkNamespace? = nil) throws -> SIPpResult {
        let port = try localPort ?? Ports.freeUDPPort()
        let run = try Command.run(try executable(),
                                  clientArguments(scenario: scenario, target: target, localPort: port, rate: rate,
                                                  calls: calls, directory: directory, tag: tag, extra: extra),
                                  timeout: timeout, workingDirectory: directory, namespace: namespace)
        return result(exitStatus: run.status, output: run.output, directory: directory, tag: tag)
    }

    /// Reads `<tag>_stat.csv` and `<tag>_errors.log` from `directory`.
    static func result(exitStatus: Int32, output: String, directory: URL, tag: String) -> SIPpResult {
        let csv = (try? String(contentsOf: directory.appendingPathComponent("\(tag)_stat.csv"), encoding: .utf8)) ?? ""
        let errors = (try? String(contentsOf: directory.appendingPathComponent("\(tag)_errors.log"), encoding: .utf8)) ?? ""
        let stats = SIPpResult.parseStatistics(csv: csv)
        func count(_ key: String) -> Int { Int(Double(stats[key] ?? "") ?? 0) }
        return SIPpResult(exitStatus: exitStatus, outgoingCalls: count("OutgoingCall(C)"),
                          successfulCalls: count("SuccessfulCall(C)"), failedCalls: count("FailedCall(C)"),
                          retransmissions: count("Retransmissions(C)"), deadCallMessages: count("DeadCallMsgs(C)"),
                          unexpectedMessages: count("FailedUnexpectedMessage(C)"), statistics: stats,
                          output: output, errors: errors)
    }
}
