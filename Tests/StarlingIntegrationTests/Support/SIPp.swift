import Foundation
import StarlingTestSupport

#if canImport(Glibc)
import Glibc
#endif

/// The final counters of one SIPp run, from its `-trace_stat` CSV (last line), its exit status and,
/// when traced, the messages it exchanged.
struct SIPpResult: Sendable, CustomStringConvertible {
    /// SIPp's exit status: 0 = every call succeeded, 1 = at least one failed,
    /// 97 = stopped by an internal command, 99 = normal exit without calls, 255/254 = fatal error.
    /// A UAS stopped by the test exits by signal (128+15).
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
    /// The `-trace_msg` file (every message sent and received), "" when not traced.
    let messages: String

    /// Exit status 0 and no failed call.
    var allCallsSucceeded: Bool { exitStatus == 0 && failedCalls == 0 }

    /// The methods of the requests SIPp received (from `messages`).
    var receivedRequests: [String] { SIPTrace.receivedRequests(messages) }

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

/// A SIPp UAS started by `SIPp.uas`: its socket is bound (or, over TCP, listening) when it is returned.
final class SIPpUAS: @unchecked Sendable {
    let process: ServerProcess
    let port: Int
    let ip: String
    let directory: URL
    let tag: String

    fileprivate init(process: ServerProcess, port: Int, ip: String, directory: URL, tag: String) {
        self.process = process
        self.port = port
        self.ip = ip
        self.directory = directory
        self.tag = tag
    }

    deinit { process.stop() }

    /// Waits until it exits by itself (a UAS started with `maxCalls`); its exit status, nil on timeout.
    @discardableResult
    func wait(timeout: Duration) -> Int32? { process.wait(timeout: timeout) }

    /// The messages it exchanged so far (with `traceMessages`).
    var messages: String { SIPp.read(directory, "\(tag)_messages.log") }

    /// The methods of the requests it received so far (with `traceMessages`).
    var receivedRequests: [String] { SIPTrace.receivedRequests(messages) }

    /// Its screen output so far.
    func logTail(_ lines: Int = 30) -> String { process.logTail(lines) }

    /// Stops it (SIGTERM: calls in progress finish) and returns its statistics, errors and messages.
    @discardableResult
    func stop() -> SIPpResult {
        process.stop()
        return SIPp.result(exitStatus: process.terminationStatus ?? -1, output: process.log, directory: directory, tag: tag)
    }
}

/// A SIPp UAC running in the background (`SIPp.startUAC`), for tests that act while the calls run.
final class SIPpUAC: @unchecked Sendable {
    let process: ServerProcess
    let directory: URL
    let tag: String

    fileprivate init(process: ServerProcess, directory: URL, tag: String) {
        self.process = process
        self.directory = directory
        self.tag = tag
    }

    deinit { process.stop() }

    /// Waits until the run ends and returns its counters; nil when it is still running after `timeout`.
    func wait(timeout: Duration) -> SIPpResult? {
        guard let status = process.wait(timeout: timeout) else { return nil }
        return SIPp.result(exitStatus: status, output: process.log, directory: directory, tag: tag)
    }

    func stop() { process.stop() }
}

/// Runs SIPp (Debian package sip-tester) with the scenarios in Scenarios/: a UAS that is ready when
/// returned (`uas`), a UAC run to completion (`runUAC`) or in the background (`startUAC`).
/// Everything binds and sends to loopback addresses. Each run writes `<tag>_stat.csv`,
/// `<tag>_errors.log` (and `<tag>_messages.log` when traced) into its directory.
enum SIPp {
    static func executable() throws -> String {
        try Requirements.tool(ProcessInfo.processInfo.environment["SIPP_BIN"] ?? "sipp", package: "sip-tester")
    }

    /// Starts a SIPp UAS with `scenario` (default uas.xml) on `ip`:`port` (default 127.0.0.1; nil port:
    /// a free one, chosen again if it is taken before SIPp binds it), inside `namespace` if given, and
    /// waits until its socket is bound (listening with `tcp`). `maxCalls` makes it exit after that
    /// many calls; `traceMessages` records every message (`messages`, `receivedRequests`); `extra`
    /// adds arguments.
    static func uas(scenario: URL = PackagePaths.scenario("uas.xml"), port: Int? = nil, ip: String = Ports.loopback,
                    directory: URL, tag: String = "uas", tcp: Bool = false, maxCalls: Int? = nil,
                    traceMessages: Bool = false, extra: [String] = [],
                    namespace: NetworkNamespace? = nil) throws -> SIPpUAS {
        func start(_ port: Int) throws -> SIPpUAS {
            var arguments = ["-sf", scenario.path, "-i", ip, "-p", String(port), "-nostdin", "-buff_size", "2097152",
                             "-trace_stat", "-stf", file(directory, "\(tag)_stat.csv"), "-fd", "1",
                             "-trace_err", "-error_file", file(directory, "\(tag)_errors.log")]
            if tcp { arguments += ["-t", "t1"] }
            if let maxCalls { arguments += ["-m", String(maxCalls)] }
            if traceMessages { arguments += ["-trace_msg", "-message_file", file(directory, "\(tag)_messages.log")] }
            let process = try ServerProcess(name: "sipp \(tag)", executable: try executable(), arguments: arguments + extra,
                                            logFile: directory.appendingPathComponent("\(tag).out"),
                                            workingDirectory: directory, namespace: namespace)
            do {
                if tcp {
                    try process.waitUntilListening(tcpPort: port, ip: ip)
                } else {
                    try process.waitUntilBound(udpPort: port, ip: ip)
                }
            } catch {
                process.stop()
                throw HarnessError("\(error)\nSIPp errors: \(read(directory, "\(tag)_errors.log").suffix(1000))")
            }
            return SIPpUAS(process: process, port: port, ip: ip, directory: directory, tag: tag)
        }
        if let port { return try start(port) }
        return try TestPorts.retrying(start)
    }

    /// Arguments for a SIPp client run: `calls` calls at `rate` calls/s from `ip`:`localPort` to
    /// 127.0.0.1:`target`, statistics to `<directory>/<tag>_stat.csv`.
    static func uacArguments(scenario: URL, target: Int, ip: String = Ports.loopback, localPort: Int, rate: Int,
                             calls: Int, directory: URL, tag: String, service: String? = nil,
                             traceMessages: Bool = false, extra: [String] = []) -> [String] {
        ["-sf", scenario.path, "\(Ports.loopback):\(target)", "-i", ip, "-p", String(localPort),
         "-nostdin", "-buff_size", "2097152", "-r", String(rate), "-rp", "1000", "-m", String(calls),
         "-timeout", "\(calls / max(rate, 1) * 3 + 30)s",
         "-trace_stat", "-stf", file(directory, "\(tag)_stat.csv"), "-fd", "1",
         "-trace_err", "-error_file", file(directory, "\(tag)_errors.log")]
            + (service.map { ["-s", $0] } ?? [])
            + (traceMessages ? ["-trace_msg", "-message_file", file(directory, "\(tag)_messages.log")] : [])
            + extra
    }

    /// Runs a SIPp UAC (default uac.xml) to completion and returns its counters. Without `localPort`
    /// it binds a free one (chosen again if taken before SIPp binds it). `extra` adds arguments such
    /// as `["-set", "expected", "404"]` for options.xml.
    static func runUAC(scenario: URL = PackagePaths.scenario("uac.xml"), target: Int, ip: String = Ports.loopback,
                       localPort: Int? = nil, rate: Int = 10, calls: Int = 1, directory: URL, tag: String = "uac",
                       service: String? = nil, traceMessages: Bool = false, extra: [String] = [],
                       timeout: Duration = .seconds(180), namespace: NetworkNamespace? = nil) throws -> SIPpResult {
        func run(_ port: Int) throws -> SIPpResult {
            let arguments = uacArguments(scenario: scenario, target: target, ip: ip, localPort: port, rate: rate,
                                         calls: calls, directory: directory, tag: tag, service: service,
                                         traceMessages: traceMessages, extra: extra)
            let run = try Command.run(try executable(), arguments, timeout: timeout, workingDirectory: directory,
                                      namespace: namespace)
            let result = result(exitStatus: run.status, output: run.output, directory: directory, tag: tag)
            if localPort == nil && result.outgoingCalls == 0 && TestPorts.isAddressInUse(result.output + result.errors) {
                throw HarnessError("sipp \(tag) could not bind 127.0.0.1:\(port): \(result.output.suffix(500))")
            }
            return result
        }
        if let localPort { return try run(localPort) }
        return try TestPorts.retrying(run)
    }

    /// Starts a SIPp UAC (as `runUAC`) in the background; `wait` returns its counters.
    static func startUAC(scenario: URL = PackagePaths.scenario("uac.xml"), target: Int, localPort: Int, rate: Int,
                         calls: Int, directory: URL, tag: String = "uac", extra: [String] = []) throws -> SIPpUAC {
        let process = try ServerProcess(
            name: "sipp \(tag)", executable: try executable(),
            arguments: uacArguments(scenario: scenario, target: target, localPort: localPort, rate: rate, calls: calls,
                                    directory: directory, tag: tag, extra: extra),
            logFile: directory.appendingPathComponent("\(tag).out"), workingDirectory: directory)
        return SIPpUAC(process: process, directory: directory, tag: tag)
    }

    /// Reads `<tag>_stat.csv`, `<tag>_errors.log` and `<tag>_messages.log` from `directory`.
    static func result(exitStatus: Int32, output: String, directory: URL, tag: String) -> SIPpResult {
        let stats = SIPpResult.parseStatistics(csv: read(directory, "\(tag)_stat.csv"))
        func count(_ key: String) -> Int { Int(Double(stats[key] ?? "") ?? 0) }
        return SIPpResult(exitStatus: exitStatus, outgoingCalls: count("OutgoingCall(C)"),
                          successfulCalls: count("SuccessfulCall(C)"), failedCalls: count("FailedCall(C)"),
                          retransmissions: count("Retransmissions(C)"), deadCallMessages: count("DeadCallMsgs(C)"),
                          unexpectedMessages: count("FailedUnexpectedMessage(C)"), statistics: stats,
                          output: output, errors: read(directory, "\(tag)_errors.log"),
                          messages: read(directory, "\(tag)_messages.log"))
    }

    fileprivate static func file(_ directory: URL, _ name: String) -> String {
        directory.appendingPathComponent(name).path
    }

    static func read(_ directory: URL, _ name: String) -> String {
        (try? String(contentsOf: directory.appendingPathComponent(name), encoding: .utf8)) ?? ""
    }
}
