#if canImport(Glibc)
public import Glibc
#endif

/// SIP transports (`$pr`, `;transport=`).
public enum SIPTransportProtocol: UInt8, Sendable, Hashable, CaseIterable {
    case udp, tcp, tls, ws, wss, sctp

    /// Lower-case name as `$pr` gives it ("udp", "tcp", ...).
    public var name: String {
        switch self {
        case .udp: return "udp"
        case .tcp: return "tcp"
        case .tls: return "tls"
        case .ws: return "ws"
        case .wss: return "wss"
        case .sctp: return "sctp"
        }
    }

    /// Upper-case name for Via headers ("UDP", "TLS", "WSS").
    public var viaName: String {
        switch self {
        case .udp: return "UDP"
        case .tcp: return "TCP"
        case .tls: return "TLS"
        case .ws: return "WS"
        case .wss: return "WSS"
        case .sctp: return "SCTP"
        }
    }

    /// Parses "udp", "TCP", ... (case-insensitive).
    public init?(name: String) {
        switch name.lowercased() {
        case "udp": self = .udp
        case "tcp": self = .tcp
        case "tls": self = .tls
        case "ws": self = .ws
        case "wss": self = .wss
        case "sctp": self = .sctp
        default: return nil
        }
    }
}

/// An IPv4 or IPv6 address with a port. A value type; no allocation.
public struct SocketAddress: Hashable, Sendable, CustomStringConvertible {
    public enum Family: UInt8, Sendable { case inet, inet6 }
    public var family: Family
    /// Network-order address bytes (4 used for IPv4, 16 for IPv6).
    public var address: (UInt64, UInt64)
    public var port: UInt16

    public static func == (a: SocketAddress, b: SocketAddress) -> Bool {
        a.family == b.family && a.address.0 == b.address.0 && a.address.1 == b.address.1 && a.port == b.port
    }

    public func hash(into h: inout Hasher) {
        h.combine(family)
        h.combine(address.0)
        h.combine(address.1)
        h.combine(port)
    }

    public init(family: Family, address: (UInt64, UInt64), port: UInt16) {
        self.family = family
        self.address = address
        self.port = port
    }

    /// Parses a numeric IPv4 or IPv6 address (brackets allowed for IPv6). No name resolution.
    public init?(ip: String, port: Int) {
        guard port >= 0 && port <= 65535 else { return nil }
        var text = ip
        // Byte tests: String.hasPrefix costs more than the address parsing (per message on the hot path).
        if ip.utf8.first == UInt8(ascii: "[") && ip.utf8.last == UInt8(ascii: "]") { text = String(ip.dropFirst().dropLast()) }
        var a6 = in6_addr()
        var a4 = in_addr()
        if text.withCString({ inet_pton(AF_INET, $0, &a4) }) == 1 {
            family = .inet
            address = (UInt64(a4.s_addr), 0)
        } else if text.withCString({ inet_pton(AF_INET6, $0, &a6) }) == 1 {
            family = .inet6
            address = withUnsafeBytes(of: &a6) { ($0.load(fromByteOffset: 0, as: UInt64.self), $0.load(fromByteOffset: 8, as: UInt64.self)) }
        } else {
            return nil
        }
        self.port = UInt16(port)
    }

    /// Parses a numeric IPv4 or IPv6 address given as bytes (a header's host): a plain dotted quad
    /// is read in place, anything else as `init(ip: String, port:)` reads it.
    public init?(ip bytes: UnsafeRawBufferPointer, port: Int) {
        if let a = Self.dottedQuad(bytes), port >= 0 && port <= 65535 {
            self.init(family: .inet, address: (UInt64(a.bigEndian), 0), port: UInt16(port))
        } else {
            self.init(ip: String(decoding: bytes, as: UTF8.self), port: port)
        }
    }

    /// `d.d.d.d`, each 0...255 in decimal without leading zeros (a subset of what inet_pton accepts,
    /// with the same value), as a host-order integer; nil for anything else.
    private static func dottedQuad(_ b: UnsafeRawBufferPointer) -> UInt32? {
        var value: UInt32 = 0, part: UInt32 = 0, digits = 0, dots = 0
        for c in b {
            if c == UInt8(ascii: ".") {
                guard digits > 0, dots < 3 else { return nil }
                value = value << 8 | part
                part = 0
                digits = 0
                dots += 1
            } else {
                let d = UInt32(c) &- 0x30
                guard d < 10, !(digits > 0 && part == 0) else { return nil }  // no leading zero
                part = part * 10 + d
                digits += 1
                guard part <= 255 else { return nil }
            }
        }
        guard dots == 3, digits > 0 else { return nil }
        return value << 8 | part
    }

    /// Parses "ip:port", "[v6]:port", or "ip" with a default port.
    public init?(_ text: String, defaultPort: Int = 5060) {
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { return nil }
            let host = String(text[text.index(after: text.startIndex)..<close])
            let rest = text[text.index(after: close)...]
            if rest.isEmpty { self.init(ip: host, port: defaultPort); return }
            guard rest.first == ":", let p = Int(rest.dropFirst()) else { return nil }
            self.init(ip: host, port: p)
            return
        }
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        if parts.count == 2 {
            guard let p = Int(parts[1]) else { return nil }
            self.init(ip: String(parts[0]), port: p)
        } else {
            self.init(ip: text, port: defaultPort)
        }
    }

    /// A multicast group address (224.0.0.0/4, ff00::/8).
    public var isMulticast: Bool {
        if family == .inet { return ipv4 >> 28 == 0xE }
        return withUnsafeBytes(of: address) { $0[0] == 0xff }
    }

    /// The IPv4 address as a host-order integer (IPv4 only).
    public var ipv4: UInt32 { UInt32(bigEndian: UInt32(truncatingIfNeeded: address.0)) }

    /// The address as text ("192.0.2.1", "2001:db8::1"), without brackets.
    public var ip: String {
        if family == .inet {
            // Dotted quad by hand into at most 15 bytes (a small string: no allocation); inet_ntop
            // goes through sprintf, ten times slower.
            let v = ipv4
            return String(unsafeUninitializedCapacity: 15) { out in
                var n = 0
                for shift: UInt32 in [24, 16, 8, 0] {
                    let b = Int((v >> shift) & 0xFF)
                    if b >= 100 { out[n] = UInt8(48 + b / 100); n += 1 }
                    if b >= 10 { out[n] = UInt8(48 + b / 10 % 10); n += 1 }
                    out[n] = UInt8(48 + b % 10); n += 1
                    if shift != 0 { out[n] = UInt8(ascii: "."); n += 1 }
                }
                return n
            }
        }
        var buf = [CChar](repeating: 0, count: 64)
        switch family {
        case .inet:
            var a = in_addr(s_addr: UInt32(truncatingIfNeeded: address.0))
            _ = inet_ntop(AF_INET, &a, &buf, 64)
        case .inet6:
            var a = in6_addr()
            withUnsafeMutableBytes(of: &a) {
                $0.storeBytes(of: address.0, toByteOffset: 0, as: UInt64.self)
                $0.storeBytes(of: address.1, toByteOffset: 8, as: UInt64.self)
            }
            _ = inet_ntop(AF_INET6, &a, &buf, 64)
        }
        return buf.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    }

    /// True if both are the same IP address (ports aside): compares the bytes, no text.
    public func hasSameIP(as other: SocketAddress) -> Bool {
        family == other.family && address.0 == other.address.0 && address.1 == other.address.1
    }

    /// The address as it appears in a URI or Via host: IPv6 in brackets.
    public var uriHost: String { family == .inet6 ? "[\(ip)]" : ip }

    /// "ip:port" ("[v6]:port").
    public var description: String { "\(uriHost):\(port)" }

    /// Fills a `sockaddr_storage` for system calls; returns its length.
    public func withSockAddr<R>(_ body: (UnsafePointer<sockaddr>, socklen_t) throws -> R) rethrows -> R {
        switch family {
        case .inet:
            var sin = sockaddr_in()
            sin.sin_family = sa_family_t(AF_INET)
            sin.sin_port = port.bigEndian
            sin.sin_addr = in_addr(s_addr: UInt32(truncatingIfNeeded: address.0))
            return try withUnsafePointer(to: &sin) {
                try $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { try body($0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
        case .inet6:
            var sin6 = sockaddr_in6()
            sin6.sin6_family = sa_family_t(AF_INET6)
            sin6.sin6_port = port.bigEndian
            withUnsafeMutableBytes(of: &sin6.sin6_addr) {
                $0.storeBytes(of: address.0, toByteOffset: 0, as: UInt64.self)
                $0.storeBytes(of: address.1, toByteOffset: 8, as: UInt64.self)
            }
            return try withUnsafePointer(to: &sin6) {
                try $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { try body($0, socklen_t(MemoryLayout<sockaddr_in6>.size)) }
            }
        }
    }

    /// Reads a `sockaddr` (IPv4 or IPv6) as returned by recvmsg/getsockname.
    public init?(sockaddr p: UnsafeRawPointer) {
        let fam = p.load(as: sockaddr.self).sa_family
        if fam == sa_family_t(AF_INET) {
            let sin = p.load(as: sockaddr_in.self)
            self.init(family: .inet, address: (UInt64(sin.sin_addr.s_addr), 0), port: UInt16(bigEndian: sin.sin_port))
        } else if fam == sa_family_t(AF_INET6) {
            let sin6 = p.load(as: sockaddr_in6.self)
            var a = sin6.sin6_addr
            let pair = withUnsafeBytes(of: &a) { ($0.load(fromByteOffset: 0, as: UInt64.self), $0.load(fromByteOffset: 8, as: UInt64.self)) }
            self.init(family: .inet6, address: pair, port: UInt16(bigEndian: sin6.sin6_port))
        } else {
            return nil
        }
    }
}
