import Foundation
import StarlingTestSupport
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

    private let process: PeerProcess

    /// Starts the server; it binds 127.0.0.1 port 0 and prints the port it got, so no other test can
    /// take the port between the choice and the bind.
    init() throws {
        process = try PeerProcess(["python3", "-u", "-c", TestDNSServer.script], package: "python3", readFirstLine: true)
        guard let port = Int(process.firstLine) else {
            throw HelperFailure("the test DNS server printed \"\(process.firstLine)\" instead of its port; stderr:\n\(process.stderr)")
        }
        self.port = port
    }

    func stop() { process.stop() }
}
