extension SIPMessage {
    /// The checks a router makes on every message before running the script: body framing, duplicated
    /// single-value headers, the mandatory headers (Via, From, To, Call-ID, CSeq), the top Via, CSeq
    /// (range and, for requests, method), Max-Forwards, the Request-URI, From (requests only) and To.
    ///
    /// Errors carry the status to answer with (nil for responses: they are dropped).
    public func check() throws(SIPParseError) {
        if let e = state.pointee.startLineError { throw e }
        if let e = frame() { throw forKind(e) }
        if let dup = state.pointee.duplicate {
            throw forKind(.bad400(.duplicateHeader, "Duplicate \(dup.canonicalName ?? "") Header",
                                  "more than one \(dup.canonicalName ?? "") header"))
        }
        // Framed: every header is indexed, so the set of kinds seen says whether one is missing.
        let seen = state.pointee.kindsSeen
        let mandatory = SIPHeaderKind.via.bit | SIPHeaderKind.from.bit | SIPHeaderKind.to.bit
            | SIPHeaderKind.callID.bit | SIPHeaderKind.cseq.bit
        if seen & mandatory != mandatory {
            for kind in [SIPHeaderKind.via, .from, .to, .callID, .cseq] where seen & kind.bit == 0 {
                let name = kind.canonicalName ?? ""
                throw forKind(.bad400(.missingHeader, "Missing \(name) Header", "the message has no \(name) header"))
            }
        }
        guard let via = topVia else {
            throw forKind(.bad400(.badVia, "Bad Via Header", "the top Via '\(string(firstValue(.via) ?? .empty))' does not parse"))
        }
        if !view.equalsIgnoringCase(via.protocolName, "SIP") || !view.equals(via.protocolVersion, "2.0") {
            throw forKind(SIPParseError(.badVersion, status: isRequest ? 505 : nil, reason: "Version Not Supported",
                                        "the top Via has protocol \(string(via.protocolName))/\(string(via.protocolVersion))"))
        }
        guard let cseq else {
            throw forKind(.bad400(.badCSeq, "Bad CSeq Header",
                                  "CSeq '\(string(firstHeader(.cseq)?.value ?? .empty))' is not a number up to 2^31-1 and a method"))
        }
        if isRequest && !view.equalsBytes(cseq.methodRange, state.pointee.methodRange) {
            throw forKind(.bad400(.cseqMethodMismatch, "CSeq Method Mismatch",
                                  "CSeq method \(string(cseq.methodRange)) differs from the request method \(string(state.pointee.methodRange))"))
        }
        if let mf = firstHeader(.maxForwards), view.decimal(mf.value, max: 255) == nil {
            throw forKind(.bad400(.badMaxForwards, "Bad Max-Forwards Header", "Max-Forwards '\(string(mf.value))' is not 0-255"))
        }
        if isRequest {
            guard let uri = requestURI else {
                throw forKind(.bad400(.badRequestURI, "Bad Request-URI", "'\(string(state.pointee.uriRange))' does not parse as a URI"))
            }
            if uri.headers != nil && (uri.scheme == .sip || uri.scheme == .sips) {
                throw forKind(.bad400(.badRequestURI, "Bad Request-URI", "a Request-URI must not carry headers (?...)"))
            }
        }
        // Kamailio's core parses the To of every message and drops a reply whose To does not parse, but
        // it parses From only when asked (parse_from_header): a reply with a bad From is relayed. A
        // request with a bad From gets 400. Here the From of a reply is not looked at. As in Kamailio
        // (parse_to), the URI inside is only delimited: `from`/`to` parse it when first used, and are
        // nil for a URI that does not parse.
        if isRequest && !nameAddrDelimits(.from) {
            throw forKind(.bad400(.badNameAddr, "Bad From Header", "From '\(string(firstHeader(.from)!.value))' does not parse"))
        }
        if !nameAddrDelimits(.to) {
            throw forKind(.bad400(.badNameAddr, "Bad To Header", "To '\(string(firstHeader(.to)!.value))' does not parse"))
        }
    }

    /// The first header of `kind` is a name-addr or addr-spec (its URI not parsed).
    private func nameAddrDelimits(_ kind: SIPHeaderKind) -> Bool {
        guard let h = firstHeader(kind) else { return false }
        return SIPNameAddr.delimit(view, h.value, limits: state.pointee.limits) != nil
    }

    /// Full validation: `check()` plus the grammar of every well-known header (all Via, Contact, Route,
    /// Record-Route values, Expires, auth headers, option tags...). `starling parse` runs it; the
    /// forwarding path does not.
    public func validate() throws(SIPParseError) {
        try check()
        let v = view
        for h in headerFields {
            let name = h.kind.canonicalName ?? ""
            switch h.kind {
            case .via:
                if ValueList.hasEmptyElement(v, h.value) {
                    throw forKind(.bad400(.badVia, "Bad Via Header", "empty element in Via '\(string(h.value))'"))
                }
                var bad: ByteRange? = nil
                forEachValue(of: h) { if bad == nil && SIPVia.parse(v, $0) == nil { bad = $0 } }
                if let bad { throw forKind(.bad400(.badVia, "Bad Via Header", "Via value '\(string(bad))' does not parse")) }
            case .contact, .route, .recordRoute, .path, .replyTo, .pAssertedIdentity, .pPreferredIdentity:
                if ValueList.hasEmptyElement(v, h.value) && !(h.kind == .contact && h.value.isEmpty) {
                    throw forKind(.bad400(.badContact, "Bad \(name) Header", "empty element in \(name) '\(string(h.value))'"))
                }
                var bad: String? = nil
                forEachValue(of: h) { value in
                    guard bad == nil else { return }
                    guard let na = SIPNameAddr.parse(v, value, limits: state.pointee.limits) else {
                        bad = "\(name) value '\(string(value))' does not parse"; return
                    }
                    if na.isStar && h.kind != .contact { bad = "'*' is only allowed in Contact"; return }
                    if h.kind != .contact && !na.isAngleBracketed { bad = "\(name) needs <> around its URI"; return }
                    if !na.isStar && !Params.isWellFormed(v, ByteRange(na.params.lower == na.whole.upper ? na.params.lower : na.params.lower - 1, na.params.upper)) {
                        bad = "\(name) parameters '\(string(na.params))' are malformed"; return
                    }
                    if h.kind == .contact, let exp = Params.find(v, na.params, "expires"), v.decimal(exp, max: UInt64(UInt32.max)) == nil {
                        bad = "Contact expires '\(string(exp))' is not a number up to 2^32-1"
                    }
                }
                if let bad { throw forKind(.bad400(.badContact, "Bad \(name) Header", bad)) }
            case .expires, .minExpires:
                if v.decimal(h.value, max: UInt64(UInt32.max)) == nil {
                    throw forKind(.bad400(.badExpires, "Bad \(name) Header", "\(name) '\(string(h.value))' is not a number up to 2^32-1"))
                }
            case .contentLength:
                break  // framing checked it
            case .authorization, .proxyAuthorization, .wwwAuthenticate, .proxyAuthenticate:
                if SIPAuthValue.parse(v, h.value) == nil {
                    throw forKind(.bad400(.badAuthorization, "Bad \(name) Header", "\(name) '\(string(h.value))' does not parse"))
                }
            case .require, .proxyRequire, .supported, .unsupported, .allow:
                var bad: ByteRange? = nil
                forEachValue(of: h) { r in if bad == nil && v.scanToken(r.lower, r.upper) != r.upper { bad = r } }
                if let bad { throw forKind(.bad400(.badHeaderValue, "Bad \(name) Header", "'\(string(bad))' is not a token")) }
            case .contentType:
                let slash = v.find(ASCII.slash, h.value.lower, h.value.upper)
                let t = v.trimmed(ByteRange(h.value.lower, slash))
                if slash == h.value.upper || v.scanToken(t.lower, t.upper) != t.upper || t.isEmpty {
                    throw forKind(.bad400(.badHeaderValue, "Bad Content-Type Header", "'\(string(h.value))' is not type/subtype"))
                }
            case .from, .to:
                guard let na = SIPNameAddr.parse(v, h.value, limits: state.pointee.limits), !na.isStar else {
                    throw forKind(.bad400(.badNameAddr, "Bad \(name) Header", "\(name) '\(string(h.value))' does not parse"))
                }
            default:
                break
            }
        }
    }

    private func forKind(_ e: SIPParseError) -> SIPParseError {
        isRequest ? e : SIPParseError(e.kind, status: nil, reason: e.reason, e.detail)
    }
}

extension ByteView {
    func equalsBytes(_ a: ByteRange, _ b: ByteRange) -> Bool {
        guard a.count == b.count else { return false }
        for k in 0..<a.count where base[a.lower + k] != base[b.lower + k] { return false }
        return true
    }
}
