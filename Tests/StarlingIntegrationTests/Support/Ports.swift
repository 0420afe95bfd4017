import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Loopback UDP ports for servers and SIPp. Everything binds 127.0.0.1 only.
enum Ports {
    static let loopback = "127.0.0.1"

    /// A UDP port on 127.0.0.1 that is free right now (the kernel picks it; the
    /// socket is closed again, so there is a small race with other programs).
    static func freeUDPPort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        guard fd >= 0 else { throw HarnessError("socket() failed: errno \(errno)") }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = 0
        address.sin_addr.s_addr = inet_addr(loopback)
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { raw in
                bind(fd, raw, length) == 0 && getsockname(fd, raw, &length) == 0
            }
        }
        guard bound else { throw HarnessError("bind/getsockname on \(loopback):0 failed: errno \(errno)") }
        return Int(UInt16(bigEndian: address.sin_port))
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
