import Foundation
#if canImport(Glibc)
import Glibc
#endif

public struct ControlClientError: Error, Sendable, CustomStringConvertible {
    public let message: String
    init(_ m: String) { message = m }
    public var description: String { message }
}

public struct HTTPResponse: Sendable {
    public let status: Int
    public let headers: [(String, String)]
    public let body: [UInt8]

    public func header(_ name: String) -> String? { headers.first { $0.0.lowercased() == name.lowercased() }?.1 }

    public var text: String { String(decoding: body, as: UTF8.self) }
}

/// A minimal blocking HTTP/1.1 client for the control API (`starling ctl`, tests): one request per
/// connection (Connection: close).
public struct ControlClient: Sendable {
    public let host: String
    public let port: String
    public let path: String

    public var display: String { "http://\(host.contains(":") ? "[\(host)]" : host):\(port)" }

    /// "http://host:port[/path]", "host:port", "[v6]:port"; the port defaults to 5065.
    public init?(_ url: String) {
        var rest = Substring(url)
        if rest.hasPrefix("http://") { rest = rest.dropFirst(7) } else if rest.contains("://") { return nil }
        let slash = rest.firstIndex(of: "/") ?? rest.endIndex
        let authority = rest[..<slash]
        path = slash == rest.endIndex ? "/" : String(rest[slash...])
        if authority.hasPrefix("[") {
            guard let close = authority.firstIndex(of: "]") else { return nil }
            host = String(authority[authority.index(after: authority.startIndex)..<close])
            let after = authority[authority.index(after: close)...]
            port = after.hasPrefix(":") ? String(after.dropFirst()) : "5065"
        } else if let colon = authority.lastIndex(of: ":") {
            host = authority[..<colon].isEmpty ? "127.0.0.1" : String(authority[..<colon])
            port = String(authority[authority.index(after: colon)...])
        } else {
            host = authority.isEmpty ? "127.0.0.1" : String(authority)
            port = "5065"
        }
        guard let p = Int(port), (1...65535).contains(p) else { return nil }
        _ = p
    }

    /// Sends one request to `path` (or the URL's path) and waits for the whole answer.
    public func request(_ method: String, path: String? = nil, body: [UInt8] = [], token: String?,
                        timeout: Int = 30) throws(ControlClientError) -> HTTPResponse {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var res: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(host, port, &hints, &res)
        guard rc == 0, let first = res else { throw ControlClientError("cannot resolve \(host): \(String(cString: gai_strerror(rc)))") }
        defer { freeaddrinfo(res) }
        var fd: Int32 = -1
        var lastError = "no address"
        var ai: UnsafeMutablePointer<addrinfo>? = first
        while let a = ai {
            let s = socket(a.pointee.ai_family, a.pointee.ai_socktype, a.pointee.ai_protocol)
            if s >= 0 {
                var tv = timeval(tv_sec: timeout, tv_usec: 0)
                setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
                setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
                if connect(s, a.pointee.ai_addr, a.pointee.ai_addrlen) == 0 { fd = s; break }
                lastError = String(cString: strerror(errno))
                close(s)
            }
            ai = a.pointee.ai_next
        }
        guard fd >= 0 else { throw ControlClientError("cannot connect: \(lastError)") }
        defer { close(fd) }
        var head = "\(method) \(path ?? self.path) HTTP/1.1\r\nHost: \(display.dropFirst(7))\r\nContent-Type: application/json\r\n"
        head += "Accept: application/json\r\nContent-Length: \(body.count)\r\nConnection: close\r\n"
        if let token { head += "Authorization: Bearer \(token)\r\n" }
        head += "\r\n"
        let request = Array(head.utf8) + body
        var off = 0
        while off < request.count {
            let n = request.withUnsafeBytes { send(fd, $0.baseAddress! + off, $0.count - off, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { throw ControlClientError("send failed: \(String(cString: strerror(errno)))") }
            off += n
        }
        var data: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n < 0 {
                if errno == EAGAIN || errno == EWOULDBLOCK { throw ControlClientError("no answer within \(timeout) s") }
                throw ControlClientError("receive failed: \(String(cString: strerror(errno)))")
            }
            if n == 0 { break }
            data.append(contentsOf: buf[0..<n])
            if let r = Self.complete(data) { return r }
        }
        guard let r = Self.complete(data, eof: true) else { throw ControlClientError("incomplete HTTP answer") }
        return r
    }

    /// The response once headers and the whole body (Content-Length, or EOF) are in.
    static func complete(_ data: [UInt8], eof: Bool = false) -> HTTPResponse? {
        let sep: [UInt8] = [13, 10, 13, 10]
        guard data.count >= 4, let end = (0...(data.count - 4)).first(where: { Array(data[$0..<$0 + 4]) == sep }) else { return nil }
        let head = String(decoding: data[..<end], as: UTF8.self)
        let lines = head.components(separatedBy: "\r\n")
        let statusParts = lines.first?.split(separator: " ") ?? []
        guard statusParts.count >= 2, let status = Int(statusParts[1]) else { return nil }
        var length: Int? = nil
        var headers: [(String, String)] = []
        for l in lines.dropFirst() {
            let kv = l.split(separator: ":", maxSplits: 1)
            guard kv.count == 2 else { continue }
            let value = kv[1].trimmingCharacters(in: .whitespaces)
            headers.append((String(kv[0]), value))
            if kv[0].lowercased() == "content-length" { length = Int(value) }
        }
        let bodyStart = end + 4
        if let length {
            guard data.count >= bodyStart + length else { return nil }
            return HTTPResponse(status: status, headers: headers, body: Array(data[bodyStart..<bodyStart + length]))
        }
        if status == 204 || status == 304 { return HTTPResponse(status: status, headers: headers, body: []) }
        return eof ? HTTPResponse(status: status, headers: headers, body: Array(data[bodyStart...])) : nil
    }
}
