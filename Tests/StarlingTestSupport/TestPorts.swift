// Shared by the test targets that start helper processes (one allocator per test process).
public import Foundation
import Synchronization

#if canImport(Glibc)
public import Glibc
#elseif canImport(Musl)
public import Musl
#endif

/// Why a helper process or server could not be started or did not become ready; the message names the
/// helper and carries its output, so a failing test says what went wrong (tests never skip).
public struct HelperFailure: Error, CustomStringConvertible {
    public let description: String

    public init(_ description: String) {
        self.description = description
    }
}

/// Ports on 127.0.0.1 for helpers that cannot bind port 0 and report what they got (dnsmasq, SIPp,
/// Kamailio, a config file naming the port), and readiness checks that cannot be fooled by another
/// process.
///
/// Why not "bind port 0, read the port, close, hand it to the helper": that port comes from the
/// kernel's ephemeral range (ip_local_port_range, 32768-60999 here), where every outgoing socket of
/// every parallel test takes ports, so it can be gone before the helper binds it. Ports here come from
/// below that range, each at most once per test process (swift-testing runs suites in parallel in one
/// process), and are checked to be bindable for UDP and TCP. Another process on the machine (a second
/// test run) can still take one; `retrying` starts a helper again on a fresh port when it reports
/// "Address already in use".
public enum TestPorts {
    public static let loopback = "127.0.0.1"

    /// How long a helper may take to become ready on a loaded machine before the test fails.
    public static let readinessTimeout: Duration = .seconds(30)

    /// Where ports are drawn from: 20000 up to just below the ephemeral range, or above it when the
    /// range starts too low.
    public static let range: ClosedRange<Int> = {
        let text = (try? String(contentsOfFile: "/proc/sys/net/ipv4/ip_local_port_range", encoding: .utf8)) ?? ""
        let bounds = text.split(whereSeparator: \.isWhitespace).compactMap { Int($0) }
        let (low, high) = bounds.count == 2 ? (bounds[0], bounds[1]) : (32768, 60999)
        if low - 20000 >= 2000 { return 20000...(low - 1) }
        if 65535 - high >= 2000 { return (high + 1)...65535 }
        return 20000...32767
    }()

    /// The next candidate (starting at a random place, so that test runs in other processes start
    /// elsewhere) and every port this process has handed out.
    private static let state = Mutex<(next: Int, used: Set<Int>)>((Int.random(in: range), []))

    /// A port free for both UDP and TCP on 127.0.0.1 right now, never handed out before in this process.
    public static func next() throws -> Int {
        try block(1).lowerBound
    }

    /// `count` distinct ports (see `next`).
    public static func next(_ count: Int) throws -> [Int] {
        try (0..<count).map { _ in try next() }
    }

    /// `count` consecutive ports (an RTP range), each as `next` would give it.
    public static func block(_ count: Int) throws -> ClosedRange<Int> {
        precondition(count >= 1 && count < range.count / 4)
        let found: ClosedRange<Int>? = state.withLock { state in
            for _ in 0..<(range.count / count + 1) {
                if state.next + count - 1 > range.upperBound { state.next = range.lowerBound }
                let candidate = state.next...(state.next + count - 1)
                state.next = candidate.upperBound == range.upperBound ? range.lowerBound : candidate.upperBound + 1
                guard candidate.allSatisfy({ !state.used.contains($0) }) else { continue }
                // A port that cannot be bound now is taken by someone else: never hand it out.
                guard candidate.allSatisfy({ canBind($0, type: SOCK_DGRAM) && canBind($0, type: SOCK_STREAM) }) else {
                    continue
                }
                state.used.formUnion(candidate)
                return candidate
            }
            return nil
        }
        guard let found else {
            throw HelperFailure("no \(count) free consecutive port(s) left on \(loopback) in \(range)")
        }
        return found
    }

    /// Runs `start` with a fresh port, again (up to `attempts` times) when it fails because the port
    /// was taken meanwhile ("Address already in use" in the error, which carries the helper's output).
    public static func retrying<T>(attempts: Int = 4, _ start: (Int) throws -> T) throws -> T {
        var attempt = 1
        while true {
            let port = try next()
            do {
                return try start(port)
            } catch where attempt < attempts && isAddressInUse("\(error)") {
                attempt += 1
            }
        }
    }

    /// Whether a helper's output says its bind failed because the address was taken.
    public static func isAddressInUse(_ text: String) -> Bool {
        let lower = text.lowercased()
        return lower.contains("address already in use") || lower.contains("eaddrinuse") || lower.contains("address in use")
    }

    /// Whether `port` on 127.0.0.1 can be bound with a socket of `type` right now.
    public static func canBind(_ port: Int, type: __socket_type) -> Bool {
        let fd = socket(AF_INET, Int32(type.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr(loopback)
        let length = socklen_t(MemoryLayout<sockaddr_in>.size)
        return withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 }
        }
    }

    // MARK: - Readiness

    /// Whether process `pid` itself holds a UDP socket bound to `ip`:`port` (nil `ip`: any address,
    /// IPv4 or IPv6). Read from /proc/<pid>/net/udp{,6} (the process's own network namespace) and
    /// matched by inode against /proc/<pid>/fd, so another process holding the port does not count.
    public static func holdsUDP(_ port: Int, pid: pid_t, ip: String? = loopback) -> Bool {
        holds(port, pid: pid, ip: ip, tables: ["udp", "udp6"], state: nil)
    }

    /// Whether process `pid` itself listens on TCP `ip`:`port` (nil `ip`: any address, IPv4 or IPv6).
    public static func listensTCP(_ port: Int, pid: pid_t, ip: String? = loopback) -> Bool {
        holds(port, pid: pid, ip: ip, tables: ["tcp", "tcp6"], state: "0A")
    }

    /// Whether anyone in this process's network namespace has UDP `ip`:`port` bound.
    public static func isUDPBound(_ port: Int, ip: String = loopback) -> Bool {
        !inodes(table: "/proc/net/udp", port: port, ip: ip, state: nil).isEmpty
    }

    private static func holds(_ port: Int, pid: pid_t, ip: String?, tables: [String], state: String?) -> Bool {
        var wanted: Set<String> = []
        for table in tables {
            // An IPv4 address is only in the tables without 6, an IPv6 one only in those with it.
            if let ip, ip.contains(":") != table.hasSuffix("6") { continue }
            wanted.formUnion(inodes(table: "/proc/\(pid)/net/\(table)", port: port, ip: ip, state: state))
        }
        guard !wanted.isEmpty else { return false }
        return processGroup(pid).contains { !socketInodes(pid: $0).isDisjoint(with: wanted) }
    }

    /// `pid` and the processes in the group it leads (Kamailio's children hold the sockets its
    /// main process opened).
    private static func processGroup(_ pid: pid_t) -> [pid_t] {
        var members = [pid]
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return members }
        for entry in entries {
            guard let other = pid_t(entry), other != pid,
                  let stat = try? String(contentsOfFile: "/proc/\(entry)/stat", encoding: .utf8),
                  let paren = stat.lastIndex(of: ")") else { continue }
            // After "pid (comm)": state, ppid, pgrp.
            let fields = stat[stat.index(after: paren)...].split(separator: " ")
            if fields.count > 2, pid_t(fields[2]) == pid { members.append(other) }
        }
        return members
    }

    /// A /proc file read to its end with read(2). `String(contentsOfFile:)` stops after the first
    /// page of a /proc/net table (about 30 sockets), so a port bound later in the table was missed
    /// when the suite had many sockets open.
    public static func readProcFile(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n > 0 { bytes.append(contentsOf: chunk[0..<n]); continue }
            if n < 0 && errno == EINTR { continue }
            if n < 0 { return nil }
            break
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The inodes of the sockets in a /proc/net table whose local address is `ip`:`port`.
    private static func inodes(table path: String, port: Int, ip: String?, state: String?) -> Set<String> {
        guard let text = readProcFile(path) else { return [] }
        let wantedPort = String(format: "%04X", port)
        let wantedAddress = ip.flatMap(procAddress)
        var found: Set<String> = []
        for line in text.split(separator: "\n").dropFirst() {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count > 9 else { continue }
            let local = fields[1].split(separator: ":")
            guard local.count == 2, local[1] == wantedPort else { continue }
            if let wantedAddress, String(local[0]) != wantedAddress { continue }
            if let state, fields[3] != state { continue }
            found.insert(String(fields[9]))
        }
        return found
    }

    /// An address as /proc/net shows it: the hex of its in-memory (network order) bytes read as
    /// 32-bit little-endian words (127.0.0.1 is 0100007F).
    private static func procAddress(_ ip: String) -> String? {
        if ip.contains(":") {
            var bytes = [UInt8](repeating: 0, count: 16)
            guard inet_pton(AF_INET6, ip, &bytes) == 1 else { return nil }
            return stride(from: 0, to: 16, by: 4).map { word in
                bytes[word..<(word + 4)].reversed().map { String(format: "%02X", $0) }.joined()
            }.joined()
        }
        let octets = ip.split(separator: ".").compactMap { UInt8($0) }
        guard octets.count == 4 else { return nil }
        return octets.reversed().map { String(format: "%02X", $0) }.joined()
    }

    /// The inodes of the sockets process `pid` has open ("socket:[123]" links in /proc/<pid>/fd).
    private static func socketInodes(pid: pid_t) -> Set<String> {
        let directory = "/proc/\(pid)/fd"
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: directory) else { return [] }
        var found: Set<String> = []
        for entry in entries {
            guard let target = try? FileManager.default.destinationOfSymbolicLink(atPath: "\(directory)/\(entry)"),
                  target.hasPrefix("socket:[") else { continue }
            found.insert(String(target.dropFirst("socket:[".count).dropLast()))
        }
        return found
    }

    /// Whether a DNS server on 127.0.0.1:`port` answers a query for `name` (type NAPTR by default)
    /// within `timeout`: any reply with the query's id, NXDOMAIN included.
    public static func dnsAnswers(port: Int, name: String = "ready.test", type: UInt16 = 35,
                           timeout: Duration = .milliseconds(500)) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        let id = UInt16.random(in: 1...UInt16.max)
        var query: [UInt8] = [UInt8(id >> 8), UInt8(id & 0xff), 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]
        for label in name.split(separator: ".") {
            query.append(UInt8(label.utf8.count))
            query.append(contentsOf: label.utf8)
        }
        query += [0, UInt8(type >> 8), UInt8(type & 0xff), 0, 1]
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr(loopback)
        let sent = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                sendto(fd, query, query.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard sent == query.count else { return false }
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        var buffer = [UInt8](repeating: 0, count: 4096)
        while clock.now < deadline {
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&pfd, 1, 50) > 0 else { continue }
            let n = recv(fd, &buffer, buffer.count, 0)
            if n >= 12 && buffer[0] == UInt8(id >> 8) && buffer[1] == UInt8(id & 0xff) { return true }
        }
        return false
    }

    /// Polls `ready` every 50 ms until it is true (returns true), `failed` returns a reason (throws it),
    /// or `timeout` passes (returns false).
    public static func wait(timeout: Duration = readinessTimeout, failed: () -> String? = { nil },
                     until ready: () -> Bool) throws -> Bool {
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        while clock.now < deadline {
            if ready() { return true }
            if let reason = failed() { throw HelperFailure(reason) }
            usleep(50_000)
        }
        return ready()
    }
}

/// The command line of a throwaway dnsmasq (Debian dnsmasq-base) serving only `naptr` records
/// ("name,order,preference,flags,service,regexp") on 127.0.0.1:`port`: foreground, no upstream
/// servers, no hosts file, log lines on stderr.
public enum DNSMasqCommand {
    public static func arguments(port: Int, naptr: [String]) -> [String] {
        ["--keep-in-foreground", "--no-resolv", "--no-hosts", "--no-poll", "--conf-file=/dev/null",
         "--port=\(port)", "--listen-address=127.0.0.1", "--bind-interfaces", "--pid-file=",
         "--user=\(NSUserName())", "--local-ttl=60", "--log-facility=-"] + naptr.map { "--naptr-record=\($0)" }
    }
}
