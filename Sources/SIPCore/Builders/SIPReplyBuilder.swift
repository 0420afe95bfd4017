/// Builds what a proxy sends on its own: replies (RFC 3261 §8.2.6), CANCEL (§9.1) and the ACK for a
/// non-2xx final response (§17.1.1.3).
public enum SIPBuilder {
    /// The parameters of a locally generated reply.
    public struct Reply: Sendable {
        public var status: Int
        public var reason: String
        /// Tag for the To header when the request's To has none (ignored for 100).
        public var toTag: String?
        /// Parameters appended to the top Via (e.g. `;received=192.0.2.1;rport=5060`).
        public var topViaParams: String?
        /// Extra header lines, each ending with CRLF.
        public var extraHeaders: [UInt8]
        public var body: [UInt8]
        public var contentType: String?
        /// The value to write into an empty `rport` parameter of the top Via (RFC 3581).
        public var rportValue: UInt16? = nil
        /// Value of the Server header (nil: none).
        public var server: String?

        public init(status: Int, reason: String, toTag: String? = nil, topViaParams: String? = nil,
                    extraHeaders: [UInt8] = [], body: [UInt8] = [], contentType: String? = nil, server: String? = nil) {
            self.status = status
            self.reason = reason
            self.toTag = toTag
            self.topViaParams = topViaParams
            self.extraHeaders = extraHeaders
            self.body = body
            self.contentType = contentType
            self.server = server
        }
    }

    /// A reply to `request`: Via (all values, in order), From, To (tag added), Call-ID and CSeq copied;
    /// Record-Route copied for 101-299 replies; Content-Length set.
    public static func reply(to request: SIPMessage, _ r: Reply) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(request.count + r.body.count + 128)
        out.append(ascii: "SIP/2.0 ")
        out.appendDecimal(r.status)
        out.append(ascii: " ")
        out.append(contentsOf: Array(r.reason.utf8))
        out.append(ascii: "\r\n")
        request.scanAllHeaders()
        var firstVia = true
        let fields = request.state
        for i in 0..<fields.pointee.fieldCount {
            let h = fields.pointee.field(i)
            switch h.kind {
            case .via:
                out.append(ascii: "Via: ")
                if firstVia && (r.topViaParams != nil || r.rportValue != nil) {
                    // Parameters go on the first value of the first Via line.
                    let fv = request.firstValue(.via) ?? h.value
                    var copyFrom = h.value.lower
                    if let port = r.rportValue, let via = request.topVia, let rp = via.rport, rp.isEmpty {
                        appendRange(&out, request, ByteRange(copyFrom, rp.upper))
                        out.append(ascii: "=")
                        out.appendDecimal(Int(port))
                        copyFrom = rp.upper
                    }
                    appendRange(&out, request, ByteRange(copyFrom, fv.upper))
                    if let params = r.topViaParams { out.append(contentsOf: Array(params.utf8)) }
                    appendRange(&out, request, ByteRange(fv.upper, h.value.upper))
                } else {
                    appendRange(&out, request, h.value)
                }
                out.append(ascii: "\r\n")
                firstVia = false
            case .from:
                out.append(ascii: "From: "); appendRange(&out, request, h.value); out.append(ascii: "\r\n")
            case .to:
                out.append(ascii: "To: ")
                appendRange(&out, request, h.value)
                if r.status > 100, let tag = r.toTag, request.toTag == nil, request.firstHeader(.to) == h {
                    out.append(ascii: ";tag=")
                    out.append(contentsOf: Array(tag.utf8))
                }
                out.append(ascii: "\r\n")
            case .callID:
                out.append(ascii: "Call-ID: "); appendRange(&out, request, h.value); out.append(ascii: "\r\n")
            case .cseq:
                out.append(ascii: "CSeq: "); appendRange(&out, request, h.value); out.append(ascii: "\r\n")
            case .recordRoute where r.status > 100 && r.status < 300:
                out.append(ascii: "Record-Route: "); appendRange(&out, request, h.value); out.append(ascii: "\r\n")
            default:
                break
            }
        }
        if let server = r.server {
            out.append(ascii: "Server: ")
            out.append(contentsOf: Array(server.utf8))
            out.append(ascii: "\r\n")
        }
        out.append(contentsOf: r.extraHeaders)
        if let ct = r.contentType, !r.body.isEmpty {
            out.append(ascii: "Content-Type: ")
            out.append(contentsOf: Array(ct.utf8))
            out.append(ascii: "\r\n")
        }
        out.append(ascii: "Content-Length: ")
        out.appendDecimal(r.body.count)
        out.append(ascii: "\r\n\r\n")
        out.append(contentsOf: r.body)
        return out
    }

    /// A CANCEL for an INVITE as it was sent (§9.1): same Request-URI, Call-ID, From, To, CSeq number,
    /// a single Via equal to the INVITE's top Via, and its Route headers.
    /// - Parameter sentInvite: the INVITE as it was sent on the branch being cancelled.
    public static func cancel(for sentInvite: SIPMessage, reason: String? = nil) -> [UInt8]? {
        ackOrCancel(sentInvite, method: "CANCEL", response: nil, extra: reason.map { "Reason: \($0)\r\n" })
    }

    /// The ACK for a non-2xx final response to an INVITE (§17.1.1.3): the INVITE's Request-URI, Call-ID,
    /// From, CSeq number, top Via and Route headers, and the To header of the response (with its tag).
    public static func ackForNon2xx(invite sentInvite: SIPMessage, response: SIPMessage) -> [UInt8]? {
        ackOrCancel(sentInvite, method: "ACK", response: response, extra: nil)
    }

    private static func ackOrCancel(_ inv: SIPMessage, method: StaticString, response: SIPMessage?, extra: String?) -> [UInt8]? {
        guard inv.isRequest, let via = inv.firstValue(.via), let cseq = inv.cseq, let callID = inv.callID,
              let from = inv.firstHeader(.from), let to = (response ?? inv).firstHeader(.to) else { return nil }
        var out: [UInt8] = []
        out.append(ascii: method)
        out.append(ascii: " ")
        out.append(contentsOf: inv.currentRequestURI)
        out.append(ascii: " SIP/2.0\r\nVia: ")
        appendRange(&out, inv, via)
        out.append(ascii: "\r\n")
        inv.forEachHeader(.route) { h in
            out.append(ascii: "Route: "); appendRange(&out, inv, h.value); out.append(ascii: "\r\n")
        }
        out.append(ascii: "Max-Forwards: 70\r\nFrom: ")
        appendRange(&out, inv, from.value)
        out.append(ascii: "\r\nTo: ")
        appendRange(&out, response ?? inv, to.value)
        out.append(ascii: "\r\nCall-ID: ")
        appendRange(&out, inv, callID)
        out.append(ascii: "\r\nCSeq: ")
        out.appendDecimal(Int(cseq.number))
        out.append(ascii: " ")
        out.append(ascii: method)
        out.append(ascii: "\r\n")
        if let extra { out.append(contentsOf: Array(extra.utf8)) }
        out.append(ascii: "Content-Length: 0\r\n\r\n")
        return out
    }

    private static func appendRange(_ out: inout [UInt8], _ m: SIPMessage, _ r: ByteRange) {
        m.withBytes { b in out.append(contentsOf: UnsafeRawBufferPointer(rebasing: b[r.lower..<r.upper])) }
    }
}
