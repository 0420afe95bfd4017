import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A UDP socket on 127.0.0.1 for small SIP exchanges from the test itself: send a
/// request to a server and read what comes back (a reply, or a request the server
/// forwarded to this socket's port).
final class UDPEndpoint: @unchecked Sendable {
    let fd: Int32
    let port: Int
    /// The bound address (127.0.0.1 unless another loopback address was asked for).
    let ip: String

    /// Binds `ip`:`port` (default 127.0.0.1; port 0: the kernel picks one). `ip` must be a
    /// loopback address (127.x.y.z): only the test's own machine is ever involved.
    init(port: Int = 0, ip: String = Ports.loopback) throws {
        guard ip.hasPrefix("127.") else { throw HarnessError("UDPEndpoint binds loopback addresses only, not \(ip)") }
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        guard fd >= 0 else { throw HarnessError("socket() failed: errno \(errno)") }
        var address = Self.loopback(port: port)
        address.sin_addr.s_addr = inet_addr(ip)
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { raw in
                bind(fd, raw, length) == 0 && getsockname(fd, raw, &length) == 0
            }
        }
        guard bound else {
            let error = errno
            close(fd)
            throw HarnessError("bind \(ip):\(port) failed: \(String(cString: strerror(error)))")
        }
        self.fd = fd
        self.ip = ip
        self.port = Int(UInt16(bigEndian: address.sin_port))
    }

    deinit { close(fd) }

    private static func loopback(port: Int) -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr(Ports.loopback)
        return address
    }

    /// Sends `text` as one datagram to 127.0.0.1:`port` (or another loopback address `ip`).
    func send(_ text: String, to port: Int, ip: String = Ports.loopback) throws {
        var address = Self.loopback(port: port)
        address.sin_addr.s_addr = inet_addr(ip)
        let bytes = Array(text.utf8)
        let sent = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { raw in
                sendto(fd, bytes, bytes.count, 0, raw, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard sent == bytes.count else { throw HarnessError("sendto 127.0.0.1:\(port) failed: errno \(errno)") }
    }

    /// The next datagram within `timeout`, or nil.
    func receive(timeout: Duration) -> String? {
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        while true {
            let left = clock.now.duration(to: deadline)
            guard left > .zero else { return nil }
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let ms = Int32(max(1, left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000))
            if poll(&pfd, 1, ms) > 0 {
                var buffer = [UInt8](repeating: 0, count: 65536)
                let n = recv(fd, &buffer, buffer.count, 0)
                if n > 0 { return String(decoding: buffer[..<n], as: UTF8.self) }
            }
        }
    }

    /// Drops whatever is queued.
    func drain() {
        while receive(timeout: .milliseconds(1)) != nil {}
    }
}

/// SIP requests the tests send by hand.
enum SIPProbe {
    /// An OPTIONS from `from` (its port in the Via) to `requestURI`, sent to 127.0.0.1:`serverPort`.
    static func options(requestURI: String, from: UDPEndpoint, callID: String = UUID().uuidString) -> String {
        """
        OPTIONS \(requestURI) SIP/2.0\r
        Via: SIP/2.0/UDP 127.0.0.1:\(from.port);branch=z9hG4bK\(UUID().uuidString.prefix(12))\r
        From: <sip:probe@127.0.0.1:\(from.port)>;tag=\(UUID().uuidString.prefix(8))\r
        To: <\(requestURI)>\r
        Call-ID: \(callID)\r
        CSeq: 1 OPTIONS\r
        Max-Forwards: 70\r
        Content-Length: 0\r
        \r

        """
    }

    /// Sends an OPTIONS for sip:starling@127.0.0.1:`serverPort` (the server itself) and returns
    /// the status line of the first reply within `timeout`, nil if none.
    static func optionsStatusLine(serverPort: Int, timeout: Duration = .seconds(1)) throws -> String? {
        let endpoint = try UDPEndpoint()
        try endpoint.send(options(requestURI: "sip:starling@127.0.0.1:\(serverPort)", from: endpoint), to: serverPort)
        guard let reply = endpoint.receive(timeout: timeout) else { return nil }
        return reply.components(separatedBy: "\r\n").first
    }

    /// `count` OPTIONS for sip:127.0.0.1:`serverPort` sent one after the other from one endpoint, each
    /// waiting up to `timeout` for its reply: the replies in order (nil: none came). For "the worker
    /// still answers while routes wait" checks.
    static func pings(serverPort: Int, count: Int, timeout: Duration = .seconds(10)) throws -> [String?] {
        let pinger = try UDPEndpoint()
        return try (0..<count).map { _ in
            try pinger.send(options(requestURI: "sip:127.0.0.1:\(serverPort)", from: pinger), to: serverPort)
            return pinger.receive(timeout: timeout)
        }
    }

    /// The value of the first header `name` (case-insensitive) in `message`.
    static func header(_ name: String, in message: String) -> String? {
        for line in message.components(separatedBy: "\r\n").dropFirst() {
            guard !line.isEmpty else { break }
            guard let colon = line.firstIndex(of: ":") else { continue }
            if line[..<colon].trimmingCharacters(in: .whitespaces).lowercased() == name.lowercased() {
                return line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            }
        }
        return nil
    }
}
