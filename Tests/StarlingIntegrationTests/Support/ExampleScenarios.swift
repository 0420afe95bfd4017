import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// What one scenario saw: the replies (or, for a UAS, the requests) as comparable strings.
struct ScenarioReplies: Equatable, Sendable, CustomStringConvertible {
    let name: String
    let replies: [String]

    var description: String { "\(name): \(replies.joined(separator: ", "))" }
}

/// Everything one run of the example-script scenarios against a server saw.
struct ExampleRun: Sendable, CustomStringConvertible {
    /// In scenario order.
    var rows: [ScenarioReplies] = []
    /// Status lines with reason phrases, per scenario, for the report.
    var statusLines: [String: [String]] = [:]
    /// Problems that are not reply codes: a SIPp run that did not end cleanly, a UAS that failed.
    var problems: [String] = []
    /// Pike flood: datagrams sent and replies received before the ban.
    var floodSent = 0
    var floodAnswered = 0

    func replies(_ name: String) -> [String]? { rows.first { $0.name == name }?.replies }

    var description: String {
        rows.map { row in
            "  \(row.description)" + (statusLines[row.name].map { " [\($0.joined(separator: " | "))]" } ?? "")
        }.joined(separator: "\n")
            + "\n  flood: \(floodAnswered)/\(floodSent) answered"
            + (problems.isEmpty ? "" : "\n  problems:\n    " + problems.joined(separator: "\n    "))
    }
}

/// The SIPp scenarios of issue 6's acceptance against a server running Kamailio's example script.
///
/// Each client runs from its own loopback address (127.0.0.2 ...), never 127.0.0.1: the script
/// skips the pike/ipban check for the server's own addresses (`is_myself_srcip`), and one address
/// per client keeps the ordinary scenarios far below pike's 16 requests per 2 s.
enum ExampleScenarios {
    static let floodCount = 60

    /// The replies Kamailio 5.6.3 gives (recorded from it, see ExampleScriptTests): `CSeq method code`,
    /// each distinct reply once, sorted by CSeq number then code; for the callee UAS the requests it got.
    static let expected: [ScenarioReplies] = [
        ScenarioReplies(name: "register alice", replies: ["1 REGISTER 401", "2 REGISTER 200"]),
        ScenarioReplies(name: "register bob", replies: ["1 REGISTER 401", "2 REGISTER 200"]),
        ScenarioReplies(name: "call alice -> bob",
                        replies: ["1 INVITE 407", "2 INVITE 100", "2 INVITE 180", "2 INVITE 200", "3 BYE 200"]),
        ScenarioReplies(name: "bob's UAS received", replies: ["INVITE", "ACK", "BYE"]),
        ScenarioReplies(name: "register alice, wrong password", replies: ["1 REGISTER 401", "2 REGISTER 401"]),
        ScenarioReplies(name: "call alice -> carol (not registered)", replies: ["1 INVITE 407", "2 INVITE 404"]),
        ScenarioReplies(name: "OPTIONS from friendly-scanner", replies: ["1 OPTIONS 200"]),
        ScenarioReplies(name: "register dave behind a NAT", replies: ["1 REGISTER 401", "2 REGISTER 200"]),
        ScenarioReplies(name: "dave's contact in the 200",
                        replies: ["<sip:dave@127.0.0.13:NATPORT>;expires=3600;received=\"sip:127.0.0.13:SRCPORT\""]),
        ScenarioReplies(name: "call alice -> dave (behind a NAT)",
                        replies: ["1 INVITE 407", "2 INVITE 100", "2 INVITE 180", "2 INVITE 200", "3 BYE 200"]),
        ScenarioReplies(name: "dave's UAS (at the source address) received", replies: ["INVITE", "ACK", "BYE"]),
        ScenarioReplies(name: "pike flood", replies: ["first replies then dropped", "banned source: no reply",
                                                      "other source: 200"]),
        ScenarioReplies(name: "location table after shutdown (usrloc db_mode 2)",
                        replies: ["alice@127.0.0.2", "bob@127.0.0.3", "dave@127.0.0.13 received 127.0.0.13"]),
    ]

    /// Runs every scenario in order against udp:127.0.0.1:`port`; `server` is checked to be alive,
    /// then stopped (SIGTERM), and the location table it left in `database` is read.
    static func run(port: Int, directory: URL, server: ServerProcess, database: URL) throws -> ExampleRun {
        var run = ExampleRun()
        let domain = ExampleScript.domain
        let ports = try Ports.freeUDPPorts(9)

        func client(_ name: String, scenario: String, ip: String, localPort: Int, service: String,
                    extra: [String]) throws {
            let tag = name.filter { $0.isLetter || $0.isNumber }
            let result = try runSIPp(scenario: scenario, target: port, ip: ip, localPort: localPort, service: service,
                                     directory: directory, tag: tag, extra: extra)
            run.rows.append(ScenarioReplies(name: name, replies: result.replies))
            run.statusLines[name] = result.statusLines
            if result.exitStatus != 0 {
                run.problems.append("\(name): SIPp exit \(result.exitStatus)\(result.errors.isEmpty ? "" : ": " + result.errors.prefix(600))")
            }
        }
        func register(_ name: String, user: String, password: String, ip: String, localPort: Int) throws {
            try client(name, scenario: "register_auth.xml", ip: ip, localPort: localPort, service: user,
                       extra: ["-set", "domain", domain, "-set", "expires", "3600", "-au", user, "-ap", password])
        }
        func call(_ name: String, callee: String, ip: String, localPort: Int) throws {
            try client(name, scenario: "invite_auth.xml", ip: ip, localPort: localPort, service: callee,
                       extra: ["-set", "caller", "alice", "-set", "domain", domain,
                               "-au", "alice", "-ap", ExampleScript.password("alice")])
        }

        func uasReceived(_ name: String, port uasPort: Int, ip: String, during call: () throws -> Void) throws {
            let uas = try SIPp.uas(port: uasPort, ip: ip, directory: directory,
                                   tag: name.filter { $0.isLetter || $0.isNumber } + "_uas", maxCalls: 1, traceMessages: true)
            defer { uas.stop() }
            try call()
            let uasStatus = uas.wait(timeout: .seconds(10))
            let order = ["INVITE", "ACK", "BYE"]
            let received = Set(uas.receivedRequests)
            run.rows.append(ScenarioReplies(name: name,
                                            replies: order.filter(received.contains) + received.subtracting(order).sorted()))
            if uasStatus != 0 {
                run.problems.append("\(name): \(uasStatus.map { "SIPp exit \($0)" } ?? "still running 10 s after the call"); "
                                    + "log:\n\(uas.logTail(15))")
            }
        }

        // (a) both users register: 401, then 200 with credentials.
        try register("register alice", user: "alice", password: ExampleScript.password("alice"), ip: "127.0.0.2",
                     localPort: ports[0])
        try register("register bob", user: "bob", password: ExampleScript.password("bob"), ip: "127.0.0.3",
                     localPort: ports[1])

        // (b) bob's contact (127.0.0.3, the port it registered from) answers as a SIPp UAS.
        try uasReceived("bob's UAS received", port: ports[1], ip: "127.0.0.3") {
            try call("call alice -> bob", callee: "bob", ip: "127.0.0.4", localPort: ports[2])
        }

        // (c) a wrong password: the script challenges again.
        try register("register alice, wrong password", user: "alice", password: "not-the-password", ip: "127.0.0.5",
                     localPort: ports[3])
        // (e) an authenticated call to a user with no registration: 404.
        try call("call alice -> carol (not registered)", callee: "carol", ip: "127.0.0.6", localPort: ports[4])
        // (d) a scanner's User-Agent: 200 OK and nothing else.
        try client("OPTIONS from friendly-scanner", scenario: "scanner.xml", ip: "127.0.0.7", localPort: ports[5],
                   service: "bob", extra: ["-set", "domain", domain])

        // (g) a phone behind a NAT: Via and Contact name port NATPORT, the datagrams come from
        // SRCPORT (nat_uac_test flag 16). The registrar keeps SRCPORT as the received address, and
        // the call goes there (a UAS listens on SRCPORT; nothing listens on NATPORT).
        let (natPort, davePort) = (ports[6], ports[7])
        try client("register dave behind a NAT", scenario: "register_nat.xml", ip: "127.0.0.13", localPort: davePort,
                   service: "dave", extra: ["-set", "domain", domain, "-set", "expires", "3600",
                                            "-set", "natport", String(natPort),
                                            "-au", "dave", "-ap", ExampleScript.password("dave")])
        let natTrace = (try? String(contentsOf: directory.appendingPathComponent("registerdavebehindaNAT_messages.log"),
                                    encoding: .utf8)) ?? ""
        let contact = SIPTrace.header("Contact", ofReply: 200, cseq: 2, in: natTrace) ?? "no 200 with a Contact"
        run.rows.append(ScenarioReplies(name: "dave's contact in the 200", replies: [
            contact.replacingOccurrences(of: ":\(natPort)", with: ":NATPORT")
                .replacingOccurrences(of: ":\(davePort)", with: ":SRCPORT"),
        ]))
        try uasReceived("dave's UAS (at the source address) received", port: davePort, ip: "127.0.0.13") {
            try call("call alice -> dave (behind a NAT)", callee: "dave", ip: "127.0.0.14", localPort: ports[8])
        }

        // (f) pike: a burst from one address gets cut off, then the address is in htable ipban.
        let flood = try UDPEndpoint(ip: "127.0.0.8")
        run.floodSent = floodCount
        for i in 0..<floodCount {
            try flood.send(keepalive(from: flood, to: port, sequence: i), to: port)
            usleep(5_000)
        }
        var answered = 0
        while flood.receive(timeout: .seconds(1)) != nil { answered += 1 }
        run.floodAnswered = answered
        usleep(500_000)
        try flood.send(keepalive(from: flood, to: port, sequence: floodCount), to: port)
        let banned = flood.receive(timeout: .seconds(2)).flatMap(SIPTrace.statusCode)
        let other = try UDPEndpoint(ip: "127.0.0.9")
        try other.send(keepalive(from: other, to: port, sequence: 0), to: port)
        let otherReply = other.receive(timeout: .seconds(2))
        run.rows.append(ScenarioReplies(name: "pike flood", replies: [
            answered > 0 && answered < floodCount ? "first replies then dropped" : "\(answered) of \(floodCount) answered",
            "banned source: " + (banned.map { "\($0)" } ?? "no reply"),
            "other source: " + (otherReply.flatMap(SIPTrace.statusCode).map { "\($0)" } ?? "no reply"),
        ]))
        run.statusLines["pike flood"] = otherReply.map { [String($0.prefix { !$0.isNewline })] } ?? []

        if !server.isRunning {
            run.problems.append("\(server.name) exited (status \(server.terminationStatus ?? -1)); log:\n\(server.logTail())")
        }

        // db_mode 2 (write-back): the registrations are in the database once the server has stopped.
        server.stop()
        run.rows.append(ScenarioReplies(name: "location table after shutdown (usrloc db_mode 2)",
                                        replies: try persistedLocations(database)))
        return run
    }

    /// The rows of Kamailio's `location` table in `database` as `user@host` (contact host, port left
    /// out) plus ` received HOST` when the received column is set, sorted.
    static func persistedLocations(_ database: URL) throws -> [String] {
        let program = """
            import re, sqlite3, sys
            db = sqlite3.connect(sys.argv[1])
            for user, contact, received in db.execute("SELECT username, contact, received FROM location"):
                host = re.sub(r"^sips?:([^@]*@)?", "", contact).split(";")[0].rsplit(":", 1)[0]
                line = user + "@" + host
                if received:
                    line += " received " + re.sub(r"^sips?:", "", received).split(";")[0].rsplit(":", 1)[0]
                print(line)
            """
        let run = try Command.run(try Requirements.tool("python3", package: "python3"), ["-c", program, database.path],
                                  timeout: .seconds(30))
        guard run.status == 0 else { return ["cannot read the location table: \(run.output)"] }
        return run.output.split(separator: "\n").map(String.init).sorted()
    }

    /// An OPTIONS to the server itself (no R-URI user: the script answers `200 Keepalive`).
    static func keepalive(from endpoint: UDPEndpoint, to port: Int, sequence: Int) -> String {
        let branch = "z9hG4bK" + UUID().uuidString.prefix(12)
        return "OPTIONS sip:127.0.0.1:\(port) SIP/2.0\r\n"
            + "Via: SIP/2.0/UDP \(endpoint.ip):\(endpoint.port);branch=\(branch)\r\n"
            + "From: <sip:flood@\(endpoint.ip)>;tag=\(sequence)\r\n"
            + "To: <sip:127.0.0.1:\(port)>\r\n"
            + "Call-ID: \(UUID().uuidString)\r\n"
            + "CSeq: 1 OPTIONS\r\n"
            + "Max-Forwards: 70\r\n"
            + "Content-Length: 0\r\n\r\n"
    }

    struct ClientResult {
        let exitStatus: Int32
        let replies: [String]
        let statusLines: [String]
        let errors: String
    }

    /// One SIPp client call (`-m 1`) from `ip`:`localPort` with the message trace on.
    static func runSIPp(scenario: String, target: Int, ip: String, localPort: Int, service: String,
                        directory: URL, tag: String, extra: [String]) throws -> ClientResult {
        let run = try SIPp.runUAC(scenario: PackagePaths.scenario(scenario), target: target, ip: ip, localPort: localPort,
                                  rate: 1, calls: 1, directory: directory, tag: tag, service: service,
                                  traceMessages: true, extra: ["-recv_timeout", "8000"] + extra, timeout: .seconds(60))
        return ClientResult(exitStatus: run.exitStatus, replies: SIPTrace.replies(run.messages),
                            statusLines: SIPTrace.statusLines(run.messages),
                            errors: run.errors + (run.exitStatus == 0 ? "" : run.output.suffix(800)))
    }
}

/// Reads SIPp's `-trace_msg` file.
enum SIPTrace {
    /// The messages SIPp received, in order.
    static func received(_ trace: String) -> [String] {
        trace.components(separatedBy: "\n-----------------------------------------------").compactMap { block in
            guard let marker = block.range(of: "message received") else { return nil }
            guard let start = block[marker.upperBound...].range(of: "\n\n") else { return nil }
            return String(block[start.upperBound...])
        }
    }

    /// The status code of a reply's first line, nil for a request.
    static func statusCode(_ message: String) -> Int? {
        let first = message.prefix { !$0.isNewline }.split(separator: " ")
        guard first.count >= 2, first[0] == "SIP/2.0" else { return nil }
        return Int(first[1])
    }

    /// Each distinct reply as `CSeq-number method code`, sorted by CSeq number then code
    /// (retransmissions and the reordering of 180/200 by a multi-worker proxy do not matter).
    static func replies(_ trace: String) -> [String] {
        var seen: [(cseq: Int, method: String, code: Int)] = []
        for message in received(trace) {
            guard let code = statusCode(message), let cseq = SIPProbe.header("CSeq", in: crlf(message)) else { continue }
            let parts = cseq.split(separator: " ")
            guard parts.count == 2, let number = Int(parts[0]) else { continue }
            if !seen.contains(where: { $0.cseq == number && $0.code == code }) {
                seen.append((number, String(parts[1]), code))
            }
        }
        return seen.sorted { ($0.cseq, $0.code) < ($1.cseq, $1.code) }.map { "\($0.cseq) \($0.method) \($0.code)" }
    }

    /// Each distinct reply's status line (with its reason phrase), in arrival order.
    static func statusLines(_ trace: String) -> [String] {
        var lines: [String] = []
        for message in received(trace) where statusCode(message) != nil {
            let line = String(message.prefix { !$0.isNewline })
            if !lines.contains(line) { lines.append(line) }
        }
        return lines
    }

    /// The value of header `name` in the first received reply with status `code` and CSeq number `cseq`.
    static func header(_ name: String, ofReply code: Int, cseq: Int, in trace: String) -> String? {
        for message in received(trace) where statusCode(message) == code {
            let m = crlf(message)
            guard SIPProbe.header("CSeq", in: m)?.split(separator: " ").first == Substring(String(cseq)) else { continue }
            return SIPProbe.header(name, in: m)
        }
        return nil
    }

    /// The methods of the requests SIPp received.
    static func receivedRequests(_ trace: String) -> [String] {
        received(trace).compactMap { message in
            guard statusCode(message) == nil else { return nil }
            return message.split(separator: " ", maxSplits: 1).first.map(String.init)
        }
    }

    /// SIPp writes the trace with "\n" line ends; SIPProbe.header splits on "\r\n".
    private static func crlf(_ message: String) -> String {
        message.replacingOccurrences(of: "\r\n", with: "\n").replacingOccurrences(of: "\n", with: "\r\n")
    }
}
