public import NIOCore
public import SIPCore

/// One unit cut from a SIP byte stream (TCP, TLS): a whole message, a keepalive ping, or the reason the
/// stream cannot be read any further.
public enum SIPStreamFrame: Sendable, Equatable {
    /// A whole message: start line, headers, and exactly Content-Length body bytes.
    case message(ByteBuffer)
    /// RFC 5626 §3.5.1 keepalive ping (CRLFCRLF between messages); answered with a single CRLF pong.
    case ping
    /// The stream is not SIP or breaks a limit. `head` holds the header block when one was read (so a
    /// 400 can be built from its Via, From, To, Call-ID and CSeq); the connection is closed after it.
    case invalid(reason: String, head: ByteBuffer?)
}

/// Content-Length framing of SIP over a stream (RFC 3261 §18.3), with the parser's size limit. Pure:
/// it cuts frames from a buffer and keeps only its scan position between calls, so a message split
/// across reads and several messages in one read are both handled.
///
/// - Lone CRLFs between messages are skipped; CRLFCRLF at a message boundary is a ping.
/// - A first line that is neither a request line nor a status line ending in/starting with SIP/2.0,
///   a missing or bad Content-Length, or a message above `limits.maxMessageSize` is `.invalid`.
public struct SIPStreamFramer: Sendable {
    public let limits: SIPParserLimits
    /// Where the header-end search continues (bytes after the reader index already searched).
    private var scanned = 0
    /// After `.invalid` the stream is not read any more.
    public private(set) var failed = false

    /// `tcp_accept_no_cl`: a message without Content-Length has no body (Kamailio's default: refused).
    public var acceptNoContentLength = false

    public init(limits: SIPParserLimits = .default, acceptNoContentLength: Bool = false) {
        self.limits = limits
        self.acceptNoContentLength = acceptNoContentLength
    }

    /// The next frame in `buffer` (consuming it), or nil when more bytes are needed.
    public mutating func next(_ buffer: inout ByteBuffer) -> SIPStreamFrame? {
        if failed {
            buffer.moveReaderIndex(forwardBy: buffer.readableBytes)
            return nil
        }
        // Keepalives at a message boundary.
        while scanned == 0, let b0 = buffer.getInteger(at: buffer.readerIndex, as: UInt8.self), b0 == 0x0D || b0 == 0x0A {
            let view = buffer.readableBytesView
            if view.starts(with: [0x0D, 0x0A, 0x0D, 0x0A]) {
                buffer.moveReaderIndex(forwardBy: 4)
                return .ping
            }
            if view.starts(with: [0x0D, 0x0A]) {
                // A lone CRLF, or the first half of a ping: wait for two more bytes to tell.
                if view.count < 4 {
                    if view.count == 3 && view[view.startIndex + 2] != 0x0D { buffer.moveReaderIndex(forwardBy: 2); continue }
                    return nil
                }
                buffer.moveReaderIndex(forwardBy: 2)
                continue
            }
            if b0 == 0x0A { buffer.moveReaderIndex(forwardBy: 1); continue }  // bare LF: tolerated
            if view.count < 2 { return nil }
            return fail("stray CR", nil, &buffer)
        }
        let readable = buffer.readableBytes
        guard readable > 0 else { return nil }
        let headerEnd: Int  // offset of the byte after CRLFCRLF, relative to the reader index
        switch findHeaderEnd(buffer) {
        case .found(let end):
            headerEnd = end
        case .notYet:
            if readable > limits.maxMessageSize { return fail("header block larger than \(limits.maxMessageSize) bytes", nil, &buffer) }
            return nil
        case .notSIP:
            return fail("not a SIP start line", nil, &buffer)
        }
        let head = buffer.getSlice(at: buffer.readerIndex, length: headerEnd)!
        guard let length = Self.contentLength(head) ?? (acceptNoContentLength && !Self.hasContentLength(head) ? 0 : nil) else {
            return fail("missing or bad Content-Length", head, &buffer)
        }
        let total = headerEnd + length
        if total > limits.maxMessageSize { return fail("message of \(total) bytes is larger than \(limits.maxMessageSize)", head, &buffer) }
        guard readable >= total else { return nil }
        let message = buffer.readSlice(length: total)!
        scanned = 0
        return .message(message)
    }

    private mutating func fail(_ reason: String, _ head: ByteBuffer?, _ buffer: inout ByteBuffer) -> SIPStreamFrame {
        failed = true
        scanned = 0
        buffer.moveReaderIndex(forwardBy: buffer.readableBytes)
        return .invalid(reason: reason, head: head)
    }

    private enum HeaderEnd { case found(Int), notYet, notSIP }

    /// Finds CRLFCRLF after the start line; checks the start line once it is complete.
    private mutating func findHeaderEnd(_ buffer: ByteBuffer) -> HeaderEnd {
        buffer.withUnsafeReadableBytes { p -> HeaderEnd in
            let n = p.count
            if scanned == 0 {
                // The start line must be complete before anything else is judged.
                guard let lf = p.firstIndex(of: 0x0A) else {
                    return n > limits.maxURILength + 64 ? .notSIP : .notYet
                }
                if !Self.plausibleStartLine(UnsafeRawBufferPointer(rebasing: p[0..<lf])) { return .notSIP }
            }
            var i = max(scanned, 3)
            while i < n {
                if p[i] == 0x0A {
                    if p[i - 1] == 0x0D && p[i - 2] == 0x0A && p[i - 3] == 0x0D { return .found(i + 1) }
                }
                i += 1
            }
            scanned = max(n, 3)
            return .notYet
        }
    }

    /// "METHOD uri SIP/2.0" or "SIP/2.0 code reason" (case-insensitive "SIP/2.0").
    static func plausibleStartLine(_ line: UnsafeRawBufferPointer) -> Bool {
        var l = line
        if let last = l.last, last == 0x0D { l = UnsafeRawBufferPointer(rebasing: l.dropLast()) }
        func isSIP20(_ s: Slice<UnsafeRawBufferPointer>) -> Bool {
            guard s.count == 7 else { return false }
            let u = s.map { $0 & 0xDF }
            return u[0] == 0x53 && u[1] == 0x49 && u[2] == 0x50 && s[s.startIndex + 3] == 0x2F && s[s.startIndex + 4] == 0x32
                && s[s.startIndex + 5] == 0x2E && s[s.startIndex + 6] == 0x30
        }
        guard l.count >= 9 else { return false }
        if isSIP20(l[0..<7]) && l[7] == 0x20 { return true }
        return isSIP20(l[(l.count - 7)...]) && l[l.count - 8] == 0x20
    }

    /// Whether a header block has a Content-Length (or `l`) header at all.
    static func hasContentLength(_ head: ByteBuffer) -> Bool {
        head.withUnsafeReadableBytes { p -> Bool in
            var lineStart = 0
            let n = p.count
            while lineStart < n && p[lineStart] != 0x0A { lineStart += 1 }
            lineStart += 1
            while lineStart < n {
                var lineEnd = lineStart
                while lineEnd < n && p[lineEnd] != 0x0A { lineEnd += 1 }
                var colon = lineStart
                while colon < lineEnd && p[colon] != 0x3A { colon += 1 }
                if colon < lineEnd {
                    var nameEnd = colon
                    while nameEnd > lineStart && (p[nameEnd - 1] == 0x20 || p[nameEnd - 1] == 0x09) { nameEnd -= 1 }
                    if isContentLength(p[lineStart..<nameEnd]) { return true }
                }
                lineStart = lineEnd + 1
            }
            return false
        }
    }

    /// The Content-Length (or compact `l`) value of a header block; nil when missing, repeated with
    /// different values, or not a number.
    static func contentLength(_ head: ByteBuffer) -> Int? {
        head.withUnsafeReadableBytes { p -> Int? in
            var value: Int? = nil
            var lineStart = 0
            let n = p.count
            // Skip the start line.
            while lineStart < n && p[lineStart] != 0x0A { lineStart += 1 }
            lineStart += 1
            while lineStart < n {
                var lineEnd = lineStart
                while lineEnd < n && p[lineEnd] != 0x0A { lineEnd += 1 }
                var colon = lineStart
                while colon < lineEnd && p[colon] != 0x3A { colon += 1 }
                if colon < lineEnd {
                    var nameEnd = colon
                    while nameEnd > lineStart && (p[nameEnd - 1] == 0x20 || p[nameEnd - 1] == 0x09) { nameEnd -= 1 }
                    let name = p[lineStart..<nameEnd]
                    if isContentLength(name) {
                        var i = colon + 1
                        while i < lineEnd && (p[i] == 0x20 || p[i] == 0x09) { i += 1 }
                        var v = 0
                        var digits = 0
                        while i < lineEnd, p[i] >= 0x30 && p[i] <= 0x39 {
                            v = v * 10 + Int(p[i] - 0x30)
                            digits += 1
                            if digits > 9 { return nil }
                            i += 1
                        }
                        while i < lineEnd && (p[i] == 0x20 || p[i] == 0x09 || p[i] == 0x0D) { i += 1 }
                        if digits == 0 || i != lineEnd { return nil }
                        if let old = value, old != v { return nil }
                        value = v
                    }
                }
                lineStart = lineEnd + 1
            }
            return value
        }
    }

    private static func isContentLength(_ name: Slice<UnsafeRawBufferPointer>) -> Bool {
        if name.count == 1 { return name.first! | 0x20 == 0x6C }  // "l"
        guard name.count == 14 else { return false }
        let expected: [UInt8] = Array("content-length".utf8)
        var k = 0
        for b in name {
            let c = (b >= 0x41 && b <= 0x5A) ? b | 0x20 : b
            if c != expected[k] { return false }
            k += 1
        }
        return true
    }
}

/// The framer as a NIO decoder: bytes in, `SIPStreamFrame`s out.
public struct SIPStreamDecoder: ByteToMessageDecoder {
    public typealias InboundOut = SIPStreamFrame
    private var framer: SIPStreamFramer

    public init(limits: SIPParserLimits = .default, acceptNoContentLength: Bool = false) {
        framer = SIPStreamFramer(limits: limits, acceptNoContentLength: acceptNoContentLength)
    }

    public mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let frame = framer.next(&buffer) else { return .needMoreData }
        context.fireChannelRead(Self.wrapInboundOut(frame))
        return framer.failed ? .needMoreData : .continue
    }

    public mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        while let frame = framer.next(&buffer) {
            context.fireChannelRead(Self.wrapInboundOut(frame))
            if framer.failed { break }
        }
        buffer.moveReaderIndex(forwardBy: buffer.readableBytes)
        return .needMoreData
    }
}
