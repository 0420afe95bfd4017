import Glibc
import SIPTransport
import Synchronization

/// One rtpengine instance of `rtpengine_sock` (`udp:127.0.0.1:2223=2`): its URL as configured, the
/// address it answers on, its weight and set, and whether it is disabled (Kamailio's `rtpp_node`).
final class RtpengineNode: Sendable {
    /// Kamailio's `recheck_ticks` value for "disabled until enabled by RPC" (`RTPENGINE_MAX_RECHECK_TICKS`).
    static let permanent = Int.max

    let index: Int
    let url: String
    let address: SocketAddress
    let weight: Int
    let setID: Int
    /// (disabled, recheck time in seconds of the module clock, or `permanent`).
    private let status = Mutex<(disabled: Bool, recheck: Int)>((false, 0))
    let requests = Atomic<Int>(0)
    let failures = Atomic<Int>(0)

    init(index: Int, url: String, address: SocketAddress, weight: Int, setID: Int) {
        self.index = index
        self.url = url
        self.address = address
        self.weight = weight
        self.setID = setID
    }

    var state: (disabled: Bool, recheck: Int) { status.withLock { $0 } }
    var isDisabled: Bool { status.withLock { $0.disabled } }
    func set(disabled: Bool, recheck: Int) { status.withLock { $0 = (disabled, recheck) } }
}

/// A set of instances (`"1 == udp:... udp:..."`; without `==` the set `setid_default`).
final class RtpengineSet: Sendable {
    let id: Int
    let nodes: [RtpengineNode]
    init(id: Int, nodes: [RtpengineNode]) {
        self.id = id
        self.nodes = nodes
    }
    func contains(_ n: RtpengineNode) -> Bool { nodes.contains { $0 === n } }
}

/// Why `rtpengine_sock` cannot be used.
struct RtpengineSockError: Error {
    let message: String
}

extension RtpengineSet {
    /// Parses the values of `rtpengine_sock` as Kamailio does: `[set ==] url[=weight] url...`, urls
    /// `udp:host:port` or `udp6:[addr]:port`. Starling resolves no names: host is an IP address or
    /// `localhost`. Instances of the same set given twice are merged (the last weight wins).
    static func parse(_ values: [String], defaultSet: Int) throws(RtpengineSockError) -> [RtpengineSet] {
        var order: [Int] = []
        var bySet: [Int: [(url: String, address: SocketAddress, weight: Int)]] = [:]
        for raw in values {
            var text = Substring(raw).drop { $0 == " " || $0 == "\t" }
            if text.isEmpty { continue }
            var setID = defaultSet
            if let r = Self.find("==", in: text) {
                let idText = text[..<r].trimmedBlanks()
                guard let n = Int(idText), n >= 0 else { throw RtpengineSockError(message: "invalid set id \"\(idText)\" in \"\(raw)\"") }
                setID = n
                text = text[text.index(r, offsetBy: 2)...]
                if text.allSatisfy({ $0 == " " || $0 == "\t" }) { throw RtpengineSockError(message: "empty instance list in \"\(raw)\"") }
            }
            for word in text.split(whereSeparator: { $0 == " " || $0 == "\t" }) {
                var url = Substring(word)
                var weight = 1
                if let eq = word.firstIndex(of: "=") {
                    url = word[..<eq]
                    weight = Int(word[word.index(after: eq)...].prefix { $0.isNumber }) ?? 0
                }
                let lower = url.lowercased()
                let hostPort: Substring
                if lower.hasPrefix("udp6:") { hostPort = url.dropFirst(5) }
                else if lower.hasPrefix("udp:") { hostPort = url.dropFirst(4) }
                else {
                    throw RtpengineSockError(message: "\"\(url)\": Starling talks to rtpengine over udp: and udp6: (unix:, ws:// and wss:// are not supported)")
                }
                guard let address = address(String(hostPort)) else {
                    throw RtpengineSockError(message: "\"\(url)\" is not udp:IP:port (names other than localhost are not resolved)")
                }
                if bySet[setID] == nil { order.append(setID) }
                var list = bySet[setID, default: []]
                if let i = list.firstIndex(where: { $0.url == String(url) }) {
                    list[i].weight = weight
                } else {
                    list.append((String(url), address, weight))
                }
                bySet[setID] = list
            }
        }
        var index = 0
        return order.map { id in
            RtpengineSet(id: id, nodes: bySet[id]!.map { e in
                defer { index += 1 }
                return RtpengineNode(index: index, url: e.url, address: e.address, weight: e.weight, setID: id)
            })
        }
    }

    private static func find(_ needle: String, in text: Substring) -> Substring.Index? {
        var i = text.startIndex
        while i < text.endIndex {
            if text[i...].hasPrefix(needle) { return i }
            i = text.index(after: i)
        }
        return nil
    }

    private static func address(_ hostPort: String) -> SocketAddress? {
        var host: Substring
        var portText: Substring
        if hostPort.hasPrefix("[") {
            guard let close = hostPort.firstIndex(of: "]") else { return nil }
            host = hostPort[hostPort.index(after: hostPort.startIndex)..<close]
            let rest = hostPort[hostPort.index(after: close)...]
            guard rest.hasPrefix(":") else { return nil }
            portText = rest.dropFirst()
        } else {
            guard let colon = hostPort.lastIndex(of: ":") else { return nil }
            host = hostPort[..<colon]
            portText = hostPort[hostPort.index(after: colon)...]
        }
        if host.lowercased() == "localhost" { host = "127.0.0.1" }
        guard let port = Int(portText), port > 0, port < 65536 else { return nil }
        return SocketAddress(ip: String(host), port: port)
    }
}

private extension Substring {
    func trimmedBlanks() -> String {
        let set = " \t"
        var s = self
        while let f = s.first, set.contains(f) { s = s.dropFirst() }
        while let l = s.last, set.contains(l) { s = s.dropLast() }
        return String(s)
    }
}

// MARK: - The ng exchange

/// A UDP socket connected to one instance: cookie-prefixed request, wait with `poll` for the reply
/// with the same cookie, `retr` tries of `toutMs` each (Kamailio's `send_rtpp_command`). A worker
/// keeps one per instance (no lock); the control API opens its own.
final class NGSocket {
    private(set) var fd: Int32 = -1
    let address: SocketAddress
    private var buffer = [UInt8](repeating: 0, count: 0x40000)

    init(_ address: SocketAddress) { self.address = address }
    deinit { if fd >= 0 { Glibc.close(fd) } }

    private func open() -> Bool {
        if fd >= 0 { return true }
        let s = socket(address.family == .inet6 ? AF_INET6 : AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard s >= 0 else { return false }
        let rc = address.withSockAddr { p, l in connect(s, p, l) }
        guard rc == 0 else { Glibc.close(s); return false }
        fd = s
        return true
    }

    enum Outcome {
        case reply(ArraySlice<UInt8>)
        case failed(String)
    }

    /// Sends `cookie + payload` and waits for the reply carrying the cookie.
    func exchange(cookie: [UInt8], payload: [UInt8], toutMs: Int, retr: Int) -> Outcome {
        guard open() else { return .failed("cannot open a socket to \(address)") }
        // drain stale replies (of earlier timed-out requests)
        var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        while poll(&pfd, 1, 0) == 1 && pfd.revents & Int16(POLLIN) != 0 {
            _ = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            pfd.revents = 0
        }
        var message = cookie
        message.append(contentsOf: payload)
        for _ in 0..<max(retr, 1) {
            var sent: Int
            repeat {
                sent = message.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
            } while sent < 0 && (errno == EINTR || errno == ENOBUFS)
            if sent <= 0 { return .failed("cannot send: \(String(cString: strerror(errno)))") }
            let deadline = Self.nowMs() + toutMs
            while true {
                let left = deadline - Self.nowMs()
                if left <= 0 { break }
                pfd.revents = 0
                let r = poll(&pfd, 1, Int32(left))
                if r < 0 && errno == EINTR { continue }
                guard r == 1, pfd.revents & Int16(POLLIN | POLLERR) != 0 else { break }
                var n: Int
                repeat {
                    n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
                } while n < 0 && errno == EINTR
                if n < 0 {
                    if errno == EAGAIN { continue }
                    return .failed("cannot read the reply: \(String(cString: strerror(errno)))")
                }
                // the cookie, its space, then the bencoded reply
                if n >= cookie.count - 1 && buffer[0..<(cookie.count - 1)].elementsEqual(cookie[0..<(cookie.count - 1)]) {
                    var start = cookie.count - 1
                    if n > start { start += 1 }
                    return .reply(buffer[start..<n])
                }
                // a stale reply: keep waiting within this try
            }
        }
        return .failed("timeout")
    }

    static func nowMs() -> Int {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return ts.tv_sec * 1000 + ts.tv_nsec / 1_000_000
    }
}
