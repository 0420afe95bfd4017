import SIPCore
import SIPTransport
import StarlingKEMI
import Testing
@testable import StarlingServer

/// `isMyself(address:proto:)` (the per-request loop check, comparing bytes) answers as
/// `isMyself(host:port:proto:)` does for the same address as text.
@Suite struct ServerServicesTests {
    static func services() -> ServerServices {
        let listen = [
            ListenAddress(proto: .udp, address: SocketAddress(ip: "127.0.0.1", port: 5060)!),
            ListenAddress(proto: .tcp, address: SocketAddress(ip: "10.0.3.112", port: 5070)!,
                          advertisedHost: "203.0.113.7", advertisedPort: 5080),
            ListenAddress(proto: .tls, address: SocketAddress(ip: "::1", port: 5061)!, advertisedHost: "[2001:db8::7]"),
            ListenAddress(proto: .udp, address: SocketAddress(ip: "0.0.0.0", port: 5090)!),
        ]
        return ServerServices(listen: listen, udpSockets: [], resolver: nil, defines: [:], workerCount: 1,
                              aliases: ["sip.example.com", "198.51.100.9", "2001:DB8:0:0::9"])
    }

    @Test("isMyself(address:) matches isMyself(host:) on listen, advertised, alias and foreign addresses")
    func sameAnswers() {
        let s = Self.services()
        let hosts = ["127.0.0.1", "10.0.3.112", "203.0.113.7", "::1", "2001:db8::7", "198.51.100.9", "2001:db8::9",
                     "192.0.2.1", "127.0.0.2", "::2"]
        let ports = [5060, 5061, 5070, 5080, 5090, 1]
        let protos: [SIPTransportProtocol?] = [nil, .udp, .tcp, .tls]
        var checked = 0
        for h in hosts {
            for p in ports {
                let a = SocketAddress(ip: h, port: p)!
                for proto in protos {
                    let text = s.isMyself(host: a.ip, port: p, proto: proto)
                    #expect(s.isMyself(address: a, proto: proto) == text, "\(h) port \(p) \(proto?.name ?? "any")")
                    checked += text ? 1 : 0
                }
            }
        }
        // The table holds both answers: listen, advertised and numeric alias addresses are ours.
        #expect(checked > 10)
        #expect(s.isMyself(address: SocketAddress(ip: "203.0.113.7", port: 5080)!, proto: .tcp))
        #expect(!s.isMyself(address: SocketAddress(ip: "203.0.113.7", port: 5080)!, proto: .udp))
        #expect(s.isMyself(address: SocketAddress(ip: "192.0.2.44", port: 5090)!, proto: .udp))  // 0.0.0.0:5090
        #expect(!s.isMyself(address: SocketAddress(ip: "192.0.2.44", port: 5060)!, proto: .udp))
    }

    @Test("appendDigits writes what String(_:radix:) writes")
    func digits() {
        for v: UInt64 in [0, 1, 9, 10, 35, 36, 255, 4096, 1_000_000_007, UInt64.max] {
            for radix: UInt64 in [10, 16, 36] {
                var b: [UInt8] = Array("x".utf8)
                b.appendDigits(v, radix: radix)
                #expect(String(decoding: b, as: UTF8.self) == "x" + String(v, radix: Int(radix)))
            }
        }
    }
}
