import Foundation
import Testing
import SIPTransport

/// A minimal authoritative DNS server on 127.0.0.1 (a random free port), written in Python with the
/// standard library only, so resolver tests never touch the machine's resolver. Needs `python3`.
///
/// Zone:
/// - `test.example` A 127.0.0.1 (TTL 60)
/// - `dual.test.example` A 192.0.2.10, AAAA 2001:db8::10
/// - `v6.test.example` AAAA 2001:db8::6 only
/// - `counter.test.example` A 10.0.0.N, N = 1, 2, ... per query, TTL 1 (for cache tests)
/// - `_sip._udp.srv.test.example` SRV 10 60 5070 a.srv.test.example, 20 0 5080 b.srv.test.example
///   (`a.srv` A 192.0.2.1, `b.srv` A 192.0.2.2); `srv.test.example` A 192.0.2.99
/// - `nosrv.test.example` A 192.0.2.50 (no SRV)
/// - `4.3.2.1.e164.arpa` NAPTR 100 10 "u" "E2U+sip" "!^.*$!sip:info@example.com!" . and 100 20 "u" "E2U+h323" ...
/// - `slow.test.example`: never answered (timeout tests)
/// - anything else: NXDOMAIN
final class TestDNSServer {
    let port: Int
    var address: SocketAddress { SocketAddress(ip: "127.0.0.1", port: port)! }

    static let script = #"""
import os, select, socket, struct, sys
counter = [0]
def name_bytes(n):
    out = b""
    for label in n.strip(".").split("."):
        if label: out += bytes([len(label)]) + label.encode()
    return out + b"\0"
def cstr(s):
    b = s.encode(); return bytes([len(b)]) + b
def records(qname, qtype):
    n = qname.lower().rstrip(".")
    A, AAAA, SRV, NAPTR = 1, 28, 33, 35
    v4 = lambda ip: socket.inet_pton(socket.AF_INET, ip)
    v6 = lambda ip: socket.inet_pton(socket.AF_INET6, ip)
    zone = {
        "test.example": {A: [(60, v4("127.0.0.1"))]},
        "dual.test.example": {A: [(300, v4("192.0.2.10"))], AAAA: [(300, v6("2001:db8::10"))]},
        "v6.test.example": {AAAA: [(300, v6("2001:db8::6"))]},
        "a.srv.test.example": {A: [(300, v4("192.0.2.1"))]},
        "b.srv.test.example": {A: [(300, v4("192.0.2.2"))]},
        "srv.test.example": {A: [(300, v4("192.0.2.99"))]},
        "nosrv.test.example": {A: [(300, v4("192.0.2.50"))]},
        "_sip._udp.srv.test.example": {SRV: [
            (120, struct.pack("!HHH", 20, 0, 5080) + name_bytes("b.srv.test.example")),
            (30, struct.pack("!HHH", 10, 60, 5070) + name_bytes("a.srv.test.example"))]},
        "4.3.2.1.e164.arpa": {NAPTR: [
            (300, struct.pack("!HH", 100, 20) + cstr("u") + cstr("E2U+h323") + cstr("!^.*$!h323:info@example.com!") + b"\0"),
            (300, struct.pack("!HH", 100, 10) + cstr("u") + cstr("E2U+sip") + cstr("!^.*$!sip:info@example.com!") + b"\0")]},
    }
    if n == "counter.test.example":
        if qtype != A: return 0, []
        counter[0] += 1
        return 0, [(A, 1, v4("10.0.0.%d" % counter[0]))]
    if n not in zone: return 3, []
    return 0, [(qtype, ttl, rdata) for (ttl, rdata) in zone[n].get(qtype, [])]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1], flush=True)
while True:
    ready, _, _ = select.select([s, sys.stdin], [], [])
    if sys.stdin in ready and not os.read(sys.stdin.fileno(), 1): sys.exit(0)  # parent went away
    if s not in ready: continue
    data, peer = s.recvfrom(4096)
    if len(data) < 12: continue
    qid, flags, qd = struct.unpack("!HHH", data[:6])
    p, labels = 12, []
    while data[p] != 0:
        l = data[p]; labels.append(data[p+1:p+1+l].decode()); p += 1 + l
    p += 1
    qtype, qclass = struct.unpack("!HH", data[p:p+4])
    question = data[12:p+4]
    qname = ".".join(labels)
    if qname.lower() == "slow.test.example": continue
    rcode, answers = records(qname, qtype)
    out = struct.pack("!HHHHHH", qid, 0x8400 | (flags & 0x0100) | 0x0080 | rcode, 1, len(answers), 0, 0) + question
    for (t, ttl, rdata) in answers:
        out += struct.pack("!HHHIH", 0xC00C, t, 1, ttl, len(rdata)) + rdata
    s.sendto(out, peer)
"""#

    private let pid: pid_t
    private let stdinFD: Int32
    private var stopped = false

    /// Spawns `python3` with a clean signal mask (the test runner blocks signals, and children
    /// inherit that through Foundation's Process) and reads the port from its first line.
    init(sourceLocation: SourceLocation = #_sourceLocation) throws {
        var toChild: [Int32] = [0, 0], fromChild: [Int32] = [0, 0]
        guard pipe(&toChild) == 0, pipe(&fromChild) == 0 else { throw CocoaError(.fileWriteUnknown) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, toChild[0], 0)
        posix_spawn_file_actions_adddup2(&actions, fromChild[1], 1)
        posix_spawn_file_actions_addclose(&actions, toChild[1])
        posix_spawn_file_actions_addclose(&actions, fromChild[0])
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attr, &empty)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        sigaddset(&defaults, SIGTERM)
        sigaddset(&defaults, SIGINT)
        posix_spawnattr_setsigdefault(&attr, &defaults)
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        let args: [String] = ["python3", "-u", "-c", TestDNSServer.script]
        let argv: [UnsafeMutablePointer<CChar>?] = args.map { strdup($0) } + [nil]
        defer { for a in argv { free(a) } }
        var child: pid_t = 0
        let rc = posix_spawnp(&child, "python3", &actions, &attr, argv, environ)
        close(toChild[0])
        close(fromChild[1])
        guard rc == 0 else {
            close(toChild[1])
            close(fromChild[0])
            Issue.record("cannot start python3 for the test DNS server (install python3): \(String(cString: strerror(rc)))",
                         sourceLocation: sourceLocation)
            throw CocoaError(.executableNotLoadable)
        }
        // The first line is the port.
        var line: [UInt8] = []
        var byte: UInt8 = 0
        while read(fromChild[0], &byte, 1) == 1 && byte != UInt8(ascii: "\n") { line.append(byte) }
        close(fromChild[0])
        guard let port = Int(String(decoding: line, as: UTF8.self)) else {
            kill(child, SIGKILL)
            var status: Int32 = 0
            waitpid(child, &status, 0)
            close(toChild[1])
            Issue.record("the test DNS server did not start: python3 is required (it printed \(line.count) bytes)",
                         sourceLocation: sourceLocation)
            throw CocoaError(.executableLoad)
        }
        pid = child
        stdinFD = toChild[1]
        self.port = port
    }

    func stop() {
        guard !stopped else { return }
        stopped = true
        close(stdinFD)
        kill(pid, SIGKILL)
        var status: Int32 = 0
        waitpid(pid, &status, 0)
    }

    deinit { stop() }
}
