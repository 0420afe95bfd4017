import Logging
import SIPCore
import StarlingKEMI

/// The SDP an offer or answer sends, and where it is in the message (Kamailio's `extract_body`).
struct RtpengineSDP {
    /// What the message's Content-Type says (Kamailio's `check_content_type`).
    enum Kind { case sdp, multipart, fragment }
    var bytes: [UInt8]
    /// The SDP's bytes in the message (the whole body, or the SDP part of a multipart body); nil
    /// when it came from `read_sdp_pv`.
    var range: ByteRange?
    var kind: Kind

    /// The body's type as Kamailio's `check_content_type`: no Content-Type counts as SDP (with a
    /// warning), `multipart/mixed`, `application/sdp`, `application/trickle-ice-sdpfrag`; nil (logged)
    /// for anything else.
    static func kind(_ ctx: RouteContext, _ m: SIPMessage) -> Kind? {
        guard let raw = m.headerValue(.contentType) else {
            ctx.logger.warning("rtpengine: the header Content-TYPE is absent!let's assume the content is text/plain ;-)")
            return .sdp
        }
        let ct = raw.trimmingCharacters(" \t").lowercased()
        if ct.hasPrefix("multipart/mixed") { return .multipart }
        var main = Substring(ct.prefix { $0 != ";" && $0 != " " && $0 != "\t" && $0 != "\r" && $0 != "\n" })
        // "application / sdp" is allowed (blanks around the slash)
        main = Substring(main.filter { $0 != " " && $0 != "\t" })
        if main.hasPrefix("application/") {
            let sub = main.dropFirst("application/".count)
            if sub == "sdp" { return .sdp }
            if sub.hasPrefix("trickle-ice-sdpfrag") { return .fragment }
        }
        ctx.logger.error("rtpengine: invalid type for a message")
        return nil
    }

    /// The SDP of the message as received; nil (logged) when there is none.
    static func extract(_ ctx: RouteContext, _ m: SIPMessage) -> RtpengineSDP? {
        let r = m.bodyRange
        guard !r.isEmpty else { return nil }
        guard let kind = kind(ctx, m) else { return nil }
        guard kind == .multipart else { return RtpengineSDP(bytes: m.bytes(r), range: r, kind: kind) }
        guard let ct = m.headerValue(.contentType), let parts = Multipart.parts(m.bytes(r), contentType: ct) else {
            ctx.logger.error("rtpengine: multipart body without a boundary")
            return nil
        }
        guard let part = parts.first(where: { Multipart.mainType($0.contentType) == "application/sdp" }) else {
            return nil
        }
        let range = ByteRange(r.lower + part.bodyOffsets.lowerBound, r.lower + part.bodyOffsets.upperBound)
        return RtpengineSDP(bytes: part.body, range: range, kind: .multipart)
    }

    /// Whether the message has an SDP (rtpengine_manage's `parse_sdp` test: application/sdp or an
    /// SDP part of multipart/mixed; no Content-Type is no SDP), without logging.
    static func present(_ m: SIPMessage) -> Bool {
        let r = m.bodyRange
        guard !r.isEmpty else { return false }
        guard let raw = m.headerValue(.contentType) else { return false }
        let ct = raw.trimmingCharacters(" \t").lowercased()
        if ct.hasPrefix("application/sdp") { return true }
        if ct.hasPrefix("multipart/mixed"), let parts = Multipart.parts(m.bytes(r), contentType: raw) {
            return parts.contains { Multipart.mainType($0.contentType) == "application/sdp" }
        }
        return false
    }
}

/// `via-branch=next`: the branch Kamailio's `branch_builder` makes for the request's next branch
/// (`z9hG4bK` + reverse-hex of the transaction hash of Call-ID and CSeq number + `.` + MD5 of the
/// request's characteristic values (`char_msg_val`) + `.` + reverse-hex of the branch index, the
/// transaction's number of branches so far, 0 without one).
enum RtpengineNextBranch {
    static func make(_ m: SIPMessage, branchIndex: Int) -> String? {
        guard m.isRequest, let cid = m.callID, let cseq = m.cseq, let from = m.from, let to = m.to else { return nil }
        let vias = m.values(.via)
        guard let first = vias.first, let via1 = m.parseVia(first) else { return nil }
        var parts: [[UInt8]] = []
        parts.append(from.tag.map { m.bytes($0) } ?? [])
        switch m.method {
        case .invite, .ack, .cancel: parts.append([])
        default: parts.append(to.tag.map { m.bytes($0) } ?? [])
        }
        parts.append(m.bytes(cid))
        parts.append(m.bytes(m.requestURIRange))
        parts.append(m.bytes(cseq.numberRange))
        parts.append(m.bytes(via1.host))
        parts.append(via1.port.map { Array(String($0).utf8) } ?? [])
        if let b = via1.branch { parts.append(m.bytes(b)) }
        var all: [UInt8] = []
        for p in parts { all += trimmed(p) }
        let md5 = DigestHash.md5.hex(all)
        let hashIndex = hash(m.bytes(cid), m.bytes(cseq.numberRange))
        return "z9hG4bK" + reverseHex(UInt32(hashIndex)) + "." + md5 + "." + reverseHex(UInt32(truncatingIfNeeded: branchIndex))
    }

    /// Kamailio's `trim_len`: blanks, tabs, CR and LF off both ends.
    static func trimmed(_ b: [UInt8]) -> ArraySlice<UInt8> {
        var s = b[...]
        let blank: (UInt8) -> Bool = { $0 == 0x20 || $0 == 0x09 || $0 == 0x0D || $0 == 0x0A }
        while let f = s.first, blank(f) { s = s.dropFirst() }
        while let l = s.last, blank(l) { s = s.dropLast() }
        return s
    }

    /// Kamailio's `new_hash2` (signed chars, as on x86) masked to the 2^16 transaction table.
    static func hash(_ callID: [UInt8], _ cseq: [UInt8]) -> UInt32 {
        var h: UInt32 = 0
        func c(_ b: UInt8) -> UInt32 { UInt32(bitPattern: Int32(Int8(bitPattern: b))) }
        func mix(_ s: [UInt8]) {
            var p = 0
            var v: UInt32 = 0
            while p + 4 <= s.count {
                v = (c(s[p]) << 24) &+ (c(s[p + 1]) << 16) &+ (c(s[p + 2]) << 8) &+ c(s[p + 3])
                h = h &+ (v ^ (v >> 3))
                p += 4
            }
            v = 0
            while p < s.count { v = (v << 8) &+ c(s[p]); p += 1 }
            h = h &+ (v ^ (v >> 3))
        }
        mix(callID)
        mix(cseq)
        h = (h &+ (h >> 11)) &+ ((h >> 13) &+ (h >> 23))
        return h & 0xffff
    }

    /// Kamailio's `int2reverse_hex`: lower-case hex digits, least significant first ("0" for 0).
    static func reverseHex(_ n: UInt32) -> String {
        if n == 0 { return "0" }
        var n = n
        var out = ""
        let digits = Array("0123456789abcdef")
        while n != 0 { out.append(digits[Int(n & 0xf)]); n >>= 4 }
        return out
    }
}
