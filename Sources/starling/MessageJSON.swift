import SIPCore

/// How `starling parse` shows a message.
enum MessageJSON {
    static func describe(_ m: SIPMessage) -> JSON {
        var fields: [(String, JSON)] = []
        if m.isRequest {
            fields.append(("kind", .string("request")))
            fields.append(("method", .string(m.string(m.methodRange))))
            fields.append(("methodKnown", .bool(m.method != .other)))
            fields.append(("requestURI", uri(m, m.requestURIRange, m.requestURI)))
        } else {
            fields.append(("kind", .string("response")))
            fields.append(("status", .int(m.statusCode)))
            fields.append(("reason", .string(m.string(m.reasonRange))))
        }
        fields.append(("version", .string(m.string(m.versionRange))))
        fields.append(("headers", .array(m.headerFields.map { h in
            .object([
                ("name", .string(m.string(h.name))),
                ("canonicalName", .string(h.kind.canonicalName ?? m.string(h.name))),
                ("value", .string(m.string(h.value))),
            ])
        })))
        fields.append(("via", .array(m.values(.via).map { r in
            guard let v = m.parseVia(r) else { return .object([("raw", .string(m.string(r))), ("error", .string("does not parse"))]) }
            return .object([
                ("protocol", .string(m.string(v.protocolName) + "/" + m.string(v.protocolVersion))),
                ("transport", .string(m.string(v.transport))),
                ("host", .string(m.string(v.host))),
                ("port", JSON.optInt(v.port)),
                ("branch", JSON.optString(v.branch.map(m.string))),
                ("received", JSON.optString(v.received.map(m.string))),
                ("rport", v.rport.map { .string(m.string($0)) } ?? .null),
                ("params", params(m, v.params)),
            ])
        })))
        if let f = m.firstHeader(.from) { fields.append(("from", nameAddr(m, f.value))) }
        if let t = m.firstHeader(.to) { fields.append(("to", nameAddr(m, t.value))) }
        fields.append(("callID", JSON.optString(m.callID.map(m.string))))
        if let c = m.cseq {
            fields.append(("cseq", .object([("number", .int(Int(c.number))), ("method", .string(m.string(c.methodRange)))])))
        }
        if m.firstHeader(.maxForwards) != nil { fields.append(("maxForwards", JSON.optInt(m.maxForwards))) }
        for (kind, key) in [(SIPHeaderKind.contact, "contact"), (.route, "route"), (.recordRoute, "recordRoute"), (.path, "path")]
        where m.firstHeader(kind) != nil {
            fields.append((key, .array(m.values(kind).map { nameAddr(m, $0) })))
        }
        for (kind, key) in [(SIPHeaderKind.authorization, "authorization"), (.proxyAuthorization, "proxyAuthorization"),
                            (.wwwAuthenticate, "wwwAuthenticate"), (.proxyAuthenticate, "proxyAuthenticate")] {
            var list: [JSON] = []
            m.forEachHeader(kind) { h in
                if let a = m.authValue(h) {
                    list.append(.object([("scheme", .string(m.string(a.scheme))), ("params", .string(m.string(a.params)))]))
                }
            }
            if !list.isEmpty { fields.append((key, .array(list))) }
        }
        for (kind, key) in [(SIPHeaderKind.supported, "supported"), (.require, "require"), (.proxyRequire, "proxyRequire"),
                            (.allow, "allow"), (.unsupported, "unsupported")] where m.firstHeader(kind) != nil {
            fields.append((key, .array(m.values(kind).map { .string(m.string($0)) })))
        }
        for (kind, key) in [(SIPHeaderKind.expires, "expires"), (.event, "event"), (.contentType, "contentType")] {
            if let v = m.headerValue(kind) { fields.append((key, kind == .expires ? (Int(v).map { .int($0) } ?? .string(v)) : .string(v))) }
        }
        if let cl = m.headerValue(.contentLength) { fields.append(("contentLength", Int(cl).map { .int($0) } ?? .string(cl))) }
        fields.append(("bodyLength", .int(m.bodyRange.count)))
        return .object(fields)
    }

    static func uri(_ m: SIPMessage, _ r: ByteRange, _ parts: SIPURIParts?) -> JSON {
        var f: [(String, JSON)] = [("raw", .string(m.string(r)))]
        guard let p = parts else { f.append(("error", .string("does not parse"))); return .object(f) }
        f.append(("scheme", .string(m.string(p.schemeRange).lowercased())))
        f.append(("user", JSON.optString(p.user.map(m.string))))
        if let u = p.user { f.append(("userUnescaped", .string(String(decoding: m.unescaped(u), as: UTF8.self)))) }
        f.append(("password", JSON.optString(p.password.map(m.string))))
        f.append(("host", .string(m.string(p.host))))
        f.append(("port", JSON.optInt(p.port)))
        f.append(("params", params(m, p.params)))
        f.append(("headers", JSON.optString(p.headers.map(m.string))))
        return .object(f)
    }

    static func params(_ m: SIPMessage, _ r: ByteRange) -> JSON {
        var list: [JSON] = []
        m.forEachParam(in: r) { n, v in
            list.append(.object([("name", .string(m.string(n))), ("value", JSON.optString(v.map(m.string)))]))
        }
        return .array(list)
    }

    static func nameAddr(_ m: SIPMessage, _ r: ByteRange) -> JSON {
        guard let na = m.parseNameAddr(r) else {
            return .object([("raw", .string(m.string(r))), ("error", .string("does not parse"))])
        }
        if na.isStar { return .object([("raw", .string("*")), ("star", .bool(true))]) }
        return .object([
            ("displayName", JSON.optString(na.displayName.map(m.string))),
            ("uri", uri(m, na.uri, na.uriParts)),
            ("tag", JSON.optString(na.tag.map(m.string))),
            ("params", params(m, na.params)),
        ])
    }

    static func error(_ e: SIPParseError) -> JSON {
        .object([("error", .object([
            ("code", .string(e.code)),
            ("reason", .string(e.reason)),
            ("detail", .string(e.detail)),
            ("status", JSON.optInt(e.status)),
            ("action", .string(e.status.map { "reply \($0)" } ?? "drop")),
        ]))])
    }
}
