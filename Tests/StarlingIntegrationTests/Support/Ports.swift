import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Loopback UDP ports for servers and SIPp. Everything binds 127.0.0.1 only.
enum Ports {
    static let loopback = "127.0.0.1"

    /// A port on 127.0.0.1 that is free right now for both UDP and TCP. It is drawn from 20000-32767,
    /// below the kernel's ephemeral range (32768-60999), so the source ports of outgoing connections
    /// (a test opening 1000 TCP connections) and of clients never take it between the choice and the
    /// server's bind; only another test drawing the same number can, and the draws are random.
    static func freeUDPPort() throws -> Int {
        for _ in 0..<2000 {
            let port = Int.random(in: 20000...32767)
            if canBind(port, type: Int32(SOCK_DGRAM.rawValue)) && canBind(port, type: Int32(SOCK_STREAM.rawValue)) {
                return port
            }
        }
        throw HarnessError("no free port on \(loopback) in 20000-32767 after 2000 tries")
    }

    /// Whether `port` on 127.0.0.1 can be bound with a socket of `type` right now.
    private static func canBind(_ port: Int, type: Int32) -> Bool {
        let fd = socket(AF_INET, type, 0)
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

    /// `count` distinct free UDP ports.
    static func freeUDPPorts(_ count: Int) throws -> [Int] {
        var ports: [Int] = []
        while ports.count < count {
            let port = try freeUDPPort()
            if !ports.contains(port) { ports.append(port) }
        }
        return ports
    }

    /// Whether udp `ip`:`port` (default 127.0.0.1) is bound in this process's network namespace
    /// (/proc/net/udp) or, given `pid`, in that process's (/proc/<pid>/net/udp).
    static func isUDPPortBound(_ port: Int, pid: Int32? = nil, ip: String = loopback) -> Bool {
        let path = pid.map { "/proc/\($0)/net/udp" } ?? "/proc/net/udp"
        guard let table = try? String(contentsOfFile: path, encoding: .utf8) else { return false }
        // /proc/net/udp shows the address as the hex of its in-memory (network order) bytes read as a
        // little-endian integer: 127.0.0.1 is 0100007F.
        let octets = ip.split(separator: ".").compactMap { UInt8($0) }
        guard octets.count == 4 else { return false }
        let wanted = octets.reversed().map { String(format: "%02X", $0) }.joined() + ":" + String(format: "%04X", port)
        return table.split(separator: "\n").dropFirst().contains { line in
            line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first.map(String.init) == wanted
        }
    }
}
