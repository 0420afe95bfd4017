import SIPCore
import SIPTransport
import StarlingKEMI
import Logging

/// Helpers the modules share: replying to the current request and finding where replies go.
enum MessageTools {
    /// A To-tag that stays the same for retransmissions of one request (Call-ID, From tag, top branch).
    static func localToTag(_ m: SIPMessage) -> String {
        var h = FNV1a()
        if let c = m.callID { m.withBytes { h.add(UnsafeRawBufferPointer(rebasing: $0[c.range])) } }
        if let f = m.fromTag { m.withBytes { h.add(UnsafeRawBufferPointer(rebasing: $0[f.range])) } }
        if let b = m.topVia?.branch { m.withBytes { h.add(UnsafeRawBufferPointer(rebasing: $0[b.range])) } }
        var tag = Array("st".utf8)
        tag.appendDigits(h.value, radix: 16)
        return String(decoding: tag, as: UTF8.self)
    }

    /// Where a reply to the current request goes (RFC 3261 §18.2.2 with RFC 3581): the source address;
    /// the source port when the top Via asks for rport (or `force_rport()`), else the Via port.
    static func replyDestination(_ ctx: RouteContext) -> SocketAddress {
        var dst = ctx.received.source
        if ctx.received.proto == .udp, let m = ctx.message, let via = m.topVia, via.rport == nil, !ctx.forceRport {
            dst.port = UInt16(via.port ?? 5060)
        }
        return dst
    }

    /// What to add to the top Via of a reply or a forwarded request (RFC 3261 §18.2.1, RFC 3581):
    /// `;received=` when the source differs from the sent-by host (or rport is requested), the value for
    /// an empty `rport`, or a whole `;rport=` when `force_rport()` was called.
    static func viaUpdate(_ ctx: RouteContext) -> (params: String, rportValue: UInt16?) {
        guard let m = ctx.message, let via = m.topVia else { return ("", nil) }
        let src = ctx.received.source
        let wantsRport = via.rport != nil || ctx.forceRport
        var params = ""
        // Compare the sent-by host with the source numerically (no string formatting per message).
        var sameHost = false
        if via.received == nil && !wantsRport {
            // SocketAddress(ip:) takes an IPv6 reference with or without its brackets.
            let host = m.withBytes { SocketAddress(ip: UnsafeRawBufferPointer(rebasing: $0[via.host.range]), port: 0) }
            if let host { sameHost = host.hasSameIP(as: src) }
        }
        if via.received == nil && (!sameHost || wantsRport) {
            params += ";received=" + src.ip
        }
        var fill: UInt16? = nil
        if let rp = via.rport {
            if rp.isEmpty { fill = src.port }
        } else if ctx.forceRport {
            params += ";rport=\(src.port)"
        }
        return (params, fill)
    }

    /// Sends a locally generated reply to the current request. Returns 1, or -1 on error.
    @discardableResult
    static func sendReply(_ ctx: RouteContext, status: Int, reason: String, body: [UInt8] = [],
                          contentType: String? = nil, extraHeaders: [UInt8] = []) -> Int {
        guard let bytes = buildReply(ctx, status: status, reason: reason, body: body, contentType: contentType,
                                     extraHeaders: extraHeaders) else { return -1 }
        let ok = ctx.sender.send(bytes, to: replyDestination(ctx), proto: ctx.received.proto, from: ctx.received.local)
        if ok { ctx.replied = true }
        return ok ? 1 : -1
    }

    /// Builds a locally generated reply to the current request (nil: not a request, or a bad code).
    static func buildReply(_ ctx: RouteContext, status: Int, reason: String, body: [UInt8] = [],
                           contentType: String? = nil, extraHeaders: [UInt8] = []) -> [UInt8]? {
        guard let m = ctx.message, m.isRequest, m.method != .ack else { return nil }
        guard status >= 100 && status <= 699, !reason.isEmpty else {
            ctx.logger.error("invalid reply: code \(status), reason '\(reason)'")
            return nil
        }
        let (params, fill) = viaUpdate(ctx)
        var extras = ctx.replyHeaders
        extras.append(contentsOf: extraHeaders)
        var body = body, contentType = contentType
        if body.isEmpty, let rb = ctx.replyBody { body = rb.body; contentType = rb.contentType }
        // The To-tag goes only on replies above 100 to a To without a tag (SIPBuilder.reply): not
        // computed for the 100 Trying of every INVITE.
        let toTag = status > 100 && m.toTag == nil ? localToTag(m) : nil
        var reply = SIPBuilder.Reply(status: status, reason: reason, toTag: toTag,
                                     topViaParams: params.isEmpty ? nil : params, extraHeaders: extras,
                                     body: body, contentType: contentType)
        reply.rportValue = fill
        return SIPBuilder.reply(to: m, reply)
    }
}

/// FNV-1a 64-bit: stateless branch ids and tags.
struct FNV1a {
    var value: UInt64 = 0xcbf2_9ce4_8422_2325
    mutating func add(_ bytes: UnsafeRawBufferPointer) {
        for b in bytes {
            value ^= UInt64(b)
            value &*= 0x100_0000_01b3
        }
    }
    mutating func add(_ s: String) {
        var s = s
        s.withUTF8 { add(UnsafeRawBufferPointer($0)) }
    }
    mutating func add(_ bytes: [UInt8]) { bytes.withUnsafeBytes { add($0) } }
}
