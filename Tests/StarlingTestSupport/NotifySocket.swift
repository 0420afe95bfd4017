public import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A bound AF_UNIX datagram socket standing in for systemd's notification socket (`NOTIFY_SOCKET`):
/// a path in the temporary directory, or an abstract name ("@...").
public final class NotifySocket: @unchecked Sendable {
    public let fd: Int32
    /// What NOTIFY_SOCKET is set to.
    public let address: String
    let path: String?

    public init(abstract: Bool = false) throws {
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        guard fd >= 0 else { throw HelperFailure("socket(AF_UNIX): errno \(errno)") }
        let name = "starling-notify-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        path = abstract ? nil : FileManager.default.temporaryDirectory.appendingPathComponent(name).path
        address = abstract ? "@" + name : path!
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        var bytes = Array(address.utf8)
        if abstract { bytes[0] = 0 }
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in for (i, b) in bytes.enumerated() { raw[i] = b } }
        let len = socklen_t(MemoryLayout<sa_family_t>.size + bytes.count + (abstract ? 0 : 1))
        let rc = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) } }
        guard rc == 0 else { throw HelperFailure("bind \(address): errno \(errno)") }
        setTimeout(.seconds(5))
    }

    deinit {
        close(fd)
        if let path { unlink(path) }
    }

    /// How long `receive` waits (default 5 s).
    public func setTimeout(_ d: Duration) {
        let us = Int(d.components.seconds) * 1_000_000 + Int(d.components.attoseconds / 1_000_000_000_000)
        var tv = timeval(tv_sec: us / 1_000_000, tv_usec: us % 1_000_000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    /// The next datagram (nil after the receive timeout).
    public func receive() -> String? {
        var buf = [UInt8](repeating: 0, count: 4096)
        let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        return n > 0 ? String(decoding: buf[0..<n], as: UTF8.self) : nil
    }
}

