import Foundation
import StarlingTestSupport

/// Loopback ports for servers and SIPp. Everything binds 127.0.0.1 only.
enum Ports {
    static let loopback = TestPorts.loopback

    /// A port on 127.0.0.1 free right now for both UDP and TCP, outside the kernel's ephemeral range
    /// and never handed out before in this test process (see `TestPorts`).
    static func freeUDPPort() throws -> Int {
        try TestPorts.next()
    }

    /// A TCP port (the same allocator: free for both protocols).
    static func freeTCPPort() throws -> Int {
        try TestPorts.next()
    }

    /// `count` distinct free ports.
    static func freeUDPPorts(_ count: Int) throws -> [Int] {
        try TestPorts.next(count)
    }

    /// Whether udp `ip`:`port` (default 127.0.0.1) is bound in this process's network namespace
    /// (/proc/net/udp) or, given `pid`, by that process itself (its own socket, in its namespace).
    static func isUDPPortBound(_ port: Int, pid: Int32? = nil, ip: String = loopback) -> Bool {
        guard let pid else { return TestPorts.isUDPBound(port, ip: ip) }
        return TestPorts.holdsUDP(port, pid: pid, ip: ip)
    }
}
