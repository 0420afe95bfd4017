import Testing
import SIPTransport

/// `SocketAddress(ip: bytes)` reads a dotted quad itself and everything else through inet_pton
/// (`SocketAddress(ip: String)`): both must agree on every input.
@Suite struct SocketAddressTests {
    static let inputs = [
        "127.0.0.1", "0.0.0.0", "255.255.255.255", "192.0.2.10", "10.20.30.40", "1.2.3.4",
        "256.1.1.1", "1.2.3.256", "01.2.3.4", "1.2.3.04", "1.2.3", "1.2.3.4.5", "1..2.3", ".1.2.3", "1.2.3.",
        "1.2.3.4 ", " 1.2.3.4", "1.2.3.4a", "a.b.c.d", "1.2.3.-4", "1.2.3.1000", "", ".", "...",
        "::1", "[::1]", "2001:db8::7", "[2001:db8::7]", "::ffff:1.2.3.4", "example.com", "localhost",
    ]

    @Test(arguments: inputs)
    func bytesParseAsTheString(_ text: String) {
        let fromBytes = Array(text.utf8).withUnsafeBytes { SocketAddress(ip: $0, port: 5060) }
        #expect(fromBytes == SocketAddress(ip: text, port: 5060))
    }

    @Test func dottedQuadValueAndPort() {
        let a = Array("192.0.2.10".utf8).withUnsafeBytes { SocketAddress(ip: $0, port: 5080) }
        #expect(a?.ipv4 == 0xC000_020A && a?.port == 5080 && a?.family == .inet)
        #expect(Array("192.0.2.10".utf8).withUnsafeBytes { SocketAddress(ip: $0, port: 70000) } == nil)
    }
}
