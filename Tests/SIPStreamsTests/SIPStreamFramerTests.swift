import NIOCore
import NIOEmbedded
import SIPCore
import SIPTransport
import Testing
@testable import SIPStreams

@Suite struct SIPStreamFramerTests {
    static func options(_ callID: String, body: String = "") -> String {
        "OPTIONS sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:5999;branch=z9hG4bK\(callID)\r\n"
            + "From: <sip:a@b>;tag=1\r\nTo: <sip:x@127.0.0.1>\r\nCall-ID: \(callID)\r\nCSeq: 1 OPTIONS\r\n"
            + "Content-Length: \(body.utf8.count)\r\n\r\n\(body)"
    }

    /// Feeds `input` in chunks of `chunk` bytes and collects every frame.
    static func frames(_ input: String, chunk: Int, limits: SIPParserLimits = .default) -> [SIPStreamFrame] {
        var framer = SIPStreamFramer(limits: limits)
        var buffer = ByteBuffer()
        var out: [SIPStreamFrame] = []
        let bytes = Array(input.utf8)
        var i = 0
        while i < bytes.count {
            buffer.writeBytes(bytes[i..<min(i + chunk, bytes.count)])
            i += chunk
            while let f = framer.next(&buffer) {
                out.append(f)
                if framer.failed { return out }
            }
        }
        return out
    }

    static func text(_ f: SIPStreamFrame) -> String? {
        if case .message(let b) = f { return String(decoding: b.readableBytesView, as: UTF8.self) }
        return nil
    }

    @Test func messagesSplitAcrossReadsAndSeveralPerReadAreCut() {
        let a = Self.options("c1", body: "v=0\r\n"), b = Self.options("c2")
        let input = a + b + a
        // Every chunk size from byte-by-byte to all at once gives the same three messages.
        for chunk in [1, 2, 3, 7, 64, 100, input.utf8.count] {
            let f = Self.frames(input, chunk: chunk)
            #expect(f.compactMap(Self.text) == [a, b, a], "chunk \(chunk)")
            #expect(f.count == 3, "chunk \(chunk)")
        }
    }

    @Test func doubleCRLFIsAPingAndLoneCRLFsAreSkipped() {
        let a = Self.options("c1")
        for chunk in [1, 3, 1000] {
            let f = Self.frames("\r\n\r\n" + a + "\r\n" + a + "\r\n\r\n\r\n\r\n" + a, chunk: chunk)
            #expect(f == [.ping] + [Self.frames(a, chunk: 1000)[0]] + [Self.frames(a, chunk: 1000)[0]] + [.ping, .ping]
                + [Self.frames(a, chunk: 1000)[0]], "chunk \(chunk)")
        }
        // A lone CRLF followed by a message is no ping.
        let f = Self.frames("\r\n" + a, chunk: 1000)
        #expect(f.count == 1 && Self.text(f[0]) == a)
    }

    @Test func compactContentLengthAndCaseAreRead() {
        let m = "MESSAGE sip:x@y SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\nCONTENT-LENGTH : 5\r\n\r\nhello"
        #expect(Self.frames(m, chunk: 4).compactMap(Self.text) == [m])
        let c = "MESSAGE sip:x@y SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\nl: 2\r\n\r\nhi"
        #expect(Self.frames(c, chunk: 1).compactMap(Self.text) == [c])
    }

    @Test func garbageMissingLengthAndOversizeAreInvalid() {
        func reason(_ f: [SIPStreamFrame]) -> String? {
            if case .invalid(let r, _) = f.last { return r }
            return nil
        }
        #expect(reason(Self.frames("GET / HTTP/1.1\r\nHost: x\r\n\r\n", chunk: 5)) == "not a SIP start line")
        #expect(reason(Self.frames("\u{1}\u{2}garbage\r\n", chunk: 100)) == "not a SIP start line")
        let noCL = "OPTIONS sip:x SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\n\r\n"
        #expect(reason(Self.frames(noCL, chunk: 100)) == "missing or bad Content-Length")
        let bad = "OPTIONS sip:x SIP/2.0\r\nContent-Length: 12x\r\n\r\n"
        #expect(reason(Self.frames(bad, chunk: 100)) == "missing or bad Content-Length")
        let limits = SIPParserLimits(maxMessageSize: 300)
        let big = "OPTIONS sip:x SIP/2.0\r\nContent-Length: 1000\r\n\r\n"
        #expect(reason(Self.frames(big, chunk: 100, limits: limits))?.contains("larger than 300") == true)
        // A header block that never ends stops at the limit.
        let endless = "OPTIONS sip:x SIP/2.0\r\n" + String(repeating: "X-A: b\r\n", count: 100)
        #expect(reason(Self.frames(endless, chunk: 50, limits: limits))?.contains("header block larger") == true)
        // After an invalid frame nothing else comes out.
        var framer = SIPStreamFramer()
        var b = ByteBuffer(string: "junk junk\r\n" + Self.options("c1"))
        #expect(framer.next(&b) != nil)
        #expect(framer.failed)
        b.writeString(Self.options("c2"))
        #expect(framer.next(&b) == nil)
    }

    /// `tcp_accept_no_cl`: a message without Content-Length is taken with an empty body (the next one
    /// follows at once); a bad Content-Length is still refused.
    @Test func acceptNoContentLength() {
        let noCL = "OPTIONS sip:x SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\n\r\n"
        let next = Self.options("c2")
        for chunk in [1, 5, 1000] {
            var framer = SIPStreamFramer(acceptNoContentLength: true)
            var buffer = ByteBuffer()
            var out: [SIPStreamFrame] = []
            let bytes = Array((noCL + "\r\n\r\n" + next).utf8)
            var i = 0
            while i < bytes.count {
                buffer.writeBytes(bytes[i..<min(i + chunk, bytes.count)])
                i += chunk
                while let f = framer.next(&buffer) { out.append(f) }
            }
            #expect(out.compactMap(Self.text) == [noCL, next], "chunk \(chunk)")
            #expect(out.contains(.ping), "chunk \(chunk)")
        }
        var framer = SIPStreamFramer(acceptNoContentLength: true)
        var bad = ByteBuffer(string: "OPTIONS sip:x SIP/2.0\r\nContent-Length: 12x\r\n\r\n")
        guard case .invalid(let reason, _)? = framer.next(&bad) else { Issue.record("expected invalid"); return }
        #expect(reason == "missing or bad Content-Length")
    }

    @Test func invalidRequestWithReadableHeadGetsA400() throws {
        let noCL = "INVITE sip:x@y SIP/2.0\r\nVia: SIP/2.0/TCP 192.0.2.1:5060;branch=z9hG4bK77\r\nFrom: <sip:a@b>;tag=9\r\n"
            + "To: <sip:x@y>\r\nCall-ID: abc\r\nCSeq: 1 INVITE\r\n\r\n"
        guard case .invalid(let reason, let head?) = Self.frames(noCL, chunk: 1000).last else {
            Issue.record("expected an invalid frame with a head")
            return
        }
        let reply = try #require(SIPStreamHandler.badRequest(head, reason: reason))
        let text = String(decoding: reply, as: UTF8.self)
        #expect(text.hasPrefix("SIP/2.0 400 Bad Request\r\n"))
        #expect(text.contains("Call-ID: abc\r\n"))
        #expect(text.contains("branch=z9hG4bK77"))
    }

    @Test func decoderInAChannelForwardsFrames() throws {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(SIPStreamDecoder()))
        let a = Self.options("c1")
        let bytes = Array(("\r\n\r\n" + a + a).utf8)
        try channel.writeInbound(ByteBuffer(bytes: bytes[0..<50]))
        try channel.writeInbound(ByteBuffer(bytes: bytes[50...]))
        #expect(try channel.readInbound(as: SIPStreamFrame.self) == .ping)
        #expect(try channel.readInbound(as: SIPStreamFrame.self).map(Self.text) == a)
        #expect(try channel.readInbound(as: SIPStreamFrame.self).map(Self.text) == a)
        #expect(try channel.readInbound(as: SIPStreamFrame.self) == nil)
        _ = try channel.finish()
    }
}

@Suite struct ProxyProtocolTests {
    @Test func version1() {
        var n = 0
        let line = Array("PROXY TCP4 192.0.2.7 10.0.0.1 40000 5060\r\nOPTIONS".utf8)
        #expect(ProxyProtocolHeader.parse(line, consumed: &n) == .source(SIPTransport.SocketAddress(ip: "192.0.2.7", port: 40000)!))
        #expect(n == line.count - "OPTIONS".count)
        #expect(ProxyProtocolHeader.parse(Array("PROXY TCP6 2001:db8::1 ::1 1 2\r\n".utf8), consumed: &n)
            == .source(SIPTransport.SocketAddress(ip: "2001:db8::1", port: 1)!))
        #expect(ProxyProtocolHeader.parse(Array("PROXY UNKNOWN\r\n".utf8), consumed: &n) == .local)
        #expect(ProxyProtocolHeader.parse(Array("PROXY TCP4 1.2.3.4".utf8), consumed: &n) == .incomplete)
        #expect(ProxyProtocolHeader.parse(Array("OPTIONS sip:x SIP/2.0\r\n".utf8), consumed: &n) == .invalid)
        #expect(ProxyProtocolHeader.parse(Array("PROXY TCP4 nope 1.2.3.4 1 2\r\n".utf8), consumed: &n) == .invalid)
    }

    @Test func version2() {
        var n = 0
        var v4 = ProxyProtocolHeader.v2Signature + [0x21, 0x11, 0x00, 12]
        v4 += [198, 51, 100, 9, 127, 0, 0, 1, 0x9C, 0x40, 0x13, 0xC4]
        #expect(ProxyProtocolHeader.parse(v4 + [0x4F], consumed: &n) == .source(SIPTransport.SocketAddress(ip: "198.51.100.9", port: 40000)!))
        #expect(n == 28)
        #expect(ProxyProtocolHeader.parse(Array(v4.prefix(20)), consumed: &n) == .incomplete)
        var v6 = ProxyProtocolHeader.v2Signature + [0x21, 0x21, 0x00, 36]
        v6 += [0x20, 0x01, 0x0d, 0xb8] + [UInt8](repeating: 0, count: 11) + [1] + [UInt8](repeating: 0, count: 16) + [0, 80, 0, 81]
        #expect(ProxyProtocolHeader.parse(v6, consumed: &n) == .source(SIPTransport.SocketAddress(ip: "2001:db8::1", port: 80)!))
        let local = ProxyProtocolHeader.v2Signature + [0x20, 0x00, 0x00, 0x00]
        #expect(ProxyProtocolHeader.parse(local, consumed: &n) == .local && n == 16)
        #expect(ProxyProtocolHeader.parse([0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0B], consumed: &n) == .invalid)
    }
}
