import SIPCore
import SIPTransport
import StarlingKEMI
import Logging

/// `KSR.nathelper` (REFERENCE §2.15), the message functions: NAT detection (`nat_uac_test`), Contact
/// and SDP rewriting, `;alias=` handling and `received_avp`. All changes are deferred edits, as
/// Kamailio's lumps: later reads of the message still see the received bytes.
enum NathelperModule {
    static func exports(_ config: ModuleConfiguration) -> [KemiExport] {
        let receivedAVP = config[Self.receivedAVP].flatMap(PermissionsModule.avpName)
        return [
            KemiExport("nathelper", "nat_uac_test", [.int], returns: .int) { ctx, args in
                .code(natUACTest(ctx, args.int(0)))
            },
            KemiExport("nathelper", "fix_nated_contact", [], returns: .int) { ctx, _ in
                .int(fixNatedContact(ctx))
            },
            KemiExport("nathelper", "fix_nated_register", [], returns: .int) { ctx, _ in
                // meant for REGISTER, as Kamailio's, but not enforced
                guard ctx.message != nil else { return .int(-1) }
                guard let receivedAVP else { return .int(1) }
                ctx.avps[receivedAVP, default: []].append(.string(sourceURI(ctx)))
                return .int(1)
            },
            KemiExport("nathelper", "set_contact_alias", [], returns: .int) { ctx, _ in
                .int(addContactAlias(ctx, trim: false))
            },
            KemiExport("nathelper", "set_contact_alias_trim", [], returns: .int) { ctx, _ in
                .int(addContactAlias(ctx, trim: true))
            },
            KemiExport("nathelper", "add_contact_alias", [], returns: .int) { ctx, _ in
                .int(addContactAlias(ctx, trim: false))
            },
            KemiExport("nathelper", "add_contact_alias_addr", [.str, .str, .str], returns: .int) { ctx, args in
                guard let ip = AddressTable.parseIP(args.str(0)).map({ _ in args.str(0) }),
                      let port = Int(args.str(1)), port > 0, port < 65536,
                      let proto = SIPTransportProtocol(name: args.str(2)) else { return .int(-1) }
                return .int(addContactAlias(ctx, trim: false, address: (ip, port, proto)))
            },
            KemiExport("nathelper", "handle_ruri_alias", [], returns: .int) { ctx, _ in
                .int(handleRURIAlias(ctx))
            },
            KemiExport("nathelper", "handle_ruri_alias_mode", [.int], returns: .int,
                       compat: "every mode removes the first alias parameter") { ctx, _ in
                .int(handleRURIAlias(ctx))
            },
            KemiExport("nathelper", "is_rfc1918", [.str], returns: .int) { _, args in
                .code(isPrivate(args.str(0)))
            },
            KemiExport("nathelper", "add_rcv_param", [.int], returns: .int) { ctx, args in
                .int(addReceivedParam(ctx, insideURI: args.int(0) != 0))
            },
            KemiExport("nathelper", "fix_nated_sdp", [.int], returns: .int) { ctx, args in
                .int(fixNatedSDP(ctx, flags: args.int(0), ip: nil))
            },
            KemiExport("nathelper", "fix_nated_sdp_ip", [.int, .str], returns: .int) { ctx, args in
                .int(fixNatedSDP(ctx, flags: args.int(0), ip: args.string(1)))
            },
            KemiExport("nathelper", "set_alias_to_pv", [.str], returns: .int) { ctx, args in
                guard let name = args.string(0), let pv = ctx.pvCache.spec(name) else { return .int(-1) }
                guard let m = ctx.message, let v = m.firstValue(.contact), let na = m.parseNameAddr(v), !na.isStar,
                      let uri = SIPURI(bytes: m.bytes(na.uri)), let alias = uri.param("alias"),
                      let target = aliasTarget(alias) else { return .int(-1) }
                return .code(PVEngine.set(ctx, pv, .string(target.uri)))
            },
        ]
    }

    // MARK: Addresses

    /// RFC 1918, RFC 6598 (100.64/10) and 192.0.0.0/29 IPv4 addresses, as Kamailio's list.
    static func isPrivate(_ text: String) -> Bool {
        guard let b = AddressTable.parseIP(text), b.count == 4 else { return false }
        switch (b[0], b[1]) {
        case (10, _): return true
        case (172, 16...31): return true
        case (192, 168): return true
        case (100, 64...127): return true
        case (192, 0): return b[2] == 0 && b[3] < 8
        default: return false
        }
    }

    /// True if two textual addresses are the same IP (brackets and IPv6 spellings ignored).
    static func sameIP(_ a: String, _ b: String) -> Bool {
        guard let x = AddressTable.parseIP(a), let y = AddressTable.parseIP(b) else { return a.lowercased() == b.lowercased() }
        return x == y
    }

    /// Kamailio's numeric protocol ids in `;alias=ip~port~proto`.
    static func protoNumber(_ p: SIPTransportProtocol) -> Int {
        switch p {
        case .udp: return 1
        case .tcp: return 2
        case .tls: return 3
        case .sctp: return 4
        case .ws: return 5
        case .wss: return 6
        }
    }

    static func proto(number: Int) -> SIPTransportProtocol? {
        SIPTransportProtocol.allCases.first { protoNumber($0) == number }
    }

    /// `sip:ip:port` of the source, with `;transport=` unless UDP.
    static func sourceURI(_ ctx: RouteContext) -> String {
        let s = ctx.received.source
        var uri = "sip:\(s.uriHost):\(s.port)"
        if ctx.received.proto != .udp { uri += ";transport=\(ctx.received.proto.name)" }
        return uri
    }

    /// The `$du` an alias value `ip~port~proto` stands for.
    static func aliasTarget(_ alias: String) -> (uri: String, ip: String, port: Int, proto: SIPTransportProtocol)? {
        let f = alias.split(separator: "~", omittingEmptySubsequences: false).map(String.init)
        guard f.count == 3, AddressTable.parseIP(f[0]) != nil, let port = Int(f[1]), port > 0, port < 65536,
              let pn = Int(f[2]), let proto = proto(number: pn) else { return nil }
        let host = f[0].contains(":") && !f[0].hasPrefix("[") ? "[\(f[0])]" : f[0]
        var uri = "sip:\(host):\(port)"
        switch proto {
        case .udp: break
        case .wss: uri += ";transport=ws"
        default: uri += ";transport=\(proto.name)"
        }
        return (uri, f[0], port, proto)
    }

    // MARK: nat_uac_test

    static func natUACTest(_ ctx: RouteContext, _ flags: Int) -> Bool {
        guard let m = ctx.message else { return false }
        let src = ctx.received.source
        let srcIP = src.ip
        let via = m.topVia
        let viaHost = via.map { m.string($0.host) }
        // 1: the Contact holds a private address
        if flags & 1 != 0, let c = contactURI(m), isPrivate(stripBrackets(c.host)) { return true }
        // 2: the top Via's address is not the source address
        if flags & 2 != 0, let viaHost, !sameIP(stripBrackets(viaHost), srcIP) { return true }
        // 4: the top Via's address is private
        if flags & 4 != 0, let viaHost, isPrivate(stripBrackets(viaHost)) { return true }
        // 8: the SDP holds a private address
        if flags & 8 != 0, sdpAddresses(m).contains(where: isPrivate) { return true }
        // 16: the source port is not the top Via's port
        if flags & 16 != 0, let via, Int(src.port) != (via.port ?? defaultPort(m.string(via.transport))) { return true }
        // 32: the source address is private
        if flags & 32 != 0, isPrivate(srcIP) { return true }
        // 64: WebSocket transport
        if flags & 64 != 0, ctx.received.proto == .ws || ctx.received.proto == .wss { return true }
        // 128: the Contact port is not the source port
        if flags & 128 != 0, let c = contactURI(m), (c.port ?? (c.scheme == .sips ? 5061 : 5060)) != Int(src.port) { return true }
        // 256: an SDP connection address is not the source address
        if flags & 256 != 0, sdpAddresses(m).contains(where: { !sameIP($0, srcIP) }) { return true }
        // 512: requests: the next hop ($du) is not the R-URI, or is WebSocket; replies: the second Via
        // carries received/rport
        if flags & 512 != 0 {
            if m.isRequest {
                if let du = ctx.destinationSIPURI {
                    let t = du.transport
                    if t == "ws" || t == "wss" { return true }
                    if let ru = ctx.currentRequestURI, !(sameIP(stripBrackets(du.host), stripBrackets(ru.host)) && du.port == ru.port) {
                        return true
                    }
                }
            } else {
                let vias = m.values(.via)
                if vias.count > 1, let v2 = m.parseVia(vias[1]), v2.received != nil || v2.rport != nil { return true }
            }
        }
        return false
    }

    static func defaultPort(_ transport: String) -> Int { transport.lowercased() == "tls" ? 5061 : 5060 }

    static func stripBrackets(_ s: String) -> String {
        s.hasPrefix("[") && s.hasSuffix("]") ? String(s.dropFirst().dropLast()) : s
    }

    static func contactURI(_ m: SIPMessage) -> SIPURI? {
        guard let v = m.firstValue(.contact), let na = m.parseNameAddr(v), !na.isStar else { return nil }
        return SIPURI(bytes: m.bytes(na.uri))
    }

    /// The current body (the pending replacement if any), as text lines.
    static func body(_ m: SIPMessage) -> [UInt8] { m.edits.body ?? m.bytes(m.bodyRange) }

    /// Addresses of the SDP's `c=` lines.
    static func sdpAddresses(_ m: SIPMessage) -> [String] {
        let text = String(decoding: body(m), as: UTF8.self)
        var out: [String] = []
        for line in text.split(whereSeparator: \.isNewline) where line.hasPrefix("c=") {
            let f = line.dropFirst(2).split(separator: " ")
            if f.count >= 3 { out.append(String(f[2].split(separator: "/").first ?? f[2])) }
        }
        return out
    }

    // MARK: Contact rewriting

    /// Rewrites the first Contact's host:port to the source address.
    static func fixNatedContact(_ ctx: RouteContext) -> Int {
        guard let m = ctx.message, let v = m.firstValue(.contact), let na = m.parseNameAddr(v), !na.isStar else { return -1 }
        let p = na.uriParts
        let start = p.host.lower
        let end = p.portRange?.upper ?? p.host.upper
        let s = ctx.received.source
        m.replaceBytes(ByteRange(start, end), with: Array("\(s.uriHost):\(s.port)".utf8))
        return 1
    }

    /// set_contact_alias / add_contact_alias: `;alias=ip~port~proto` on the first Contact URI
    /// (2 when the Contact already is the source address and transport; -1 without a Contact).
    static func addContactAlias(_ ctx: RouteContext, trim: Bool,
                                address: (ip: String, port: Int, proto: SIPTransportProtocol)? = nil) -> Int {
        guard let m = ctx.message, let v = m.firstValue(.contact), let na = m.parseNameAddr(v), !na.isStar,
              let uri = SIPURI(bytes: m.bytes(na.uri)) else { return -1 }
        let s = ctx.received.source
        let (ip, port, proto) = address ?? (s.ip, Int(s.port), ctx.received.proto)
        if address == nil {
            let uriProto = uri.transport.flatMap { SIPTransportProtocol(name: $0) } ?? .udp
            if sameIP(stripBrackets(uri.host), ip) && (uri.port ?? 5060) == port && uriProto == proto { return 2 }
        }
        if trim {
            // drop existing alias parameters of the URI
            m.forEachParam(in: na.uriParts.params) { name, value in
                guard m.equalsIgnoringCase(name, "alias") else { return }
                m.deleteBytes(ByteRange(name.lower - 1, value?.upper ?? name.upper))
            }
        }
        let host = ip.contains(":") && !ip.hasPrefix("[") ? "[\(ip)]" : ip
        let param = ";alias=\(host)~\(port)~\(protoNumber(proto))"
        if na.isAngleBracketed {
            m.insertBytes(Array(param.utf8), at: na.uri.upper)
        } else {
            m.insertBytes([UInt8(ascii: "<")], at: na.uri.lower)
            m.insertBytes(Array((param + ">").utf8), at: na.uri.upper)
        }
        return 1
    }

    /// handle_ruri_alias: `$du` from the R-URI's alias, which is removed (1); 2 without alias.
    static func handleRURIAlias(_ ctx: RouteContext) -> Int {
        guard let m = ctx.message, m.isRequest, let ru = ctx.currentRequestURI else { return -1 }
        let b = ru.bytes
        let p = ru.parts
        guard !p.params.isEmpty else { return 2 }
        // find ;alias=... in the parameters
        var i = p.params.lower
        let end = p.params.upper
        while i < end {
            var j = i
            while j < end && b[j] != UInt8(ascii: ";") { j += 1 }
            let param = String(decoding: b[i..<j], as: UTF8.self)
            if param.lowercased().hasPrefix("alias=") {
                guard let target = aliasTarget(String(param.dropFirst(6))) else { return -1 }
                // remove ";alias=..." (with its leading ';')
                var rebuilt = Array(b[0..<(i - 1)])
                rebuilt.append(contentsOf: b[j...])
                m.setRequestURI(rebuilt)
                ctx.destinationURI = Array(target.uri.utf8)
                return 1
            }
            i = j + 1
        }
        return 2
    }

    /// add_rcv_param: `;received="sip:ip:port"` on every Contact (inside the URI, unquoted, when
    /// `insideURI`).
    static func addReceivedParam(_ ctx: RouteContext, insideURI: Bool) -> Int {
        guard let m = ctx.message else { return -1 }
        let uri = sourceURI(ctx)
        var n = 0
        m.forEachHeader(.contact) { f in
            m.forEachValue(of: f) { v in
                guard let na = m.parseNameAddr(v), !na.isStar else { return }
                if insideURI {
                    if na.isAngleBracketed {
                        m.insertBytes(Array(";received=\(uri)".utf8), at: na.uri.upper)
                    } else {
                        m.insertBytes([UInt8(ascii: "<")], at: na.uri.lower)
                        m.insertBytes(Array(";received=\(uri)>".utf8), at: na.uri.upper)
                    }
                } else {
                    m.insertBytes(Array(";received=\"\(uri)\"".utf8), at: na.whole.upper)
                }
                n += 1
            }
        }
        return n > 0 ? 1 : -1
    }

    // MARK: SDP

    /// fix_nated_sdp: flags 1 `a=direction:active`, 2 c= addresses, 4 `a=nortpproxy:yes`, 8 o= address.
    /// c= lines holding 0.0.0.0 (hold) keep it.
    static func fixNatedSDP(_ ctx: RouteContext, flags: Int, ip: String?) -> Int {
        guard let m = ctx.message else { return -1 }
        let old = body(m)
        guard !old.isEmpty else { return -1 }
        let addr = stripBrackets(ip ?? ctx.received.source.ip)
        let family = addr.contains(":") ? "IP6" : "IP4"
        let text = String(decoding: old, as: UTF8.self)
        var lines = text.components(separatedByString: "\r\n")
        let trailing = lines.last == ""
        if trailing { lines.removeLast() }
        var changed = false
        for (i, line) in lines.enumerated() {
            if flags & 2 != 0 && line.hasPrefix("c=") {
                let f = line.split(separator: " ", maxSplits: 2).map(String.init)
                if f.count == 3 && !f[2].hasPrefix("0.0.0.0") {
                    lines[i] = "\(f[0]) \(family) \(addr)"
                    changed = true
                }
            } else if flags & 8 != 0 && line.hasPrefix("o=") {
                var f = line.split(separator: " ").map(String.init)
                if f.count >= 6 {
                    f[4] = family
                    f[5] = addr
                    lines[i] = f.joined(separator: " ")
                    changed = true
                }
            }
        }
        if flags & 1 != 0 && !lines.contains("a=direction:active") {
            let at = lines.firstIndex { $0.hasPrefix("m=") } ?? lines.count
            lines.insert("a=direction:active", at: at)
            changed = true
        }
        if flags & 4 != 0 && !lines.contains("a=nortpproxy:yes") {
            lines.append("a=nortpproxy:yes")
            changed = true
        }
        guard changed else { return 1 }
        var out = lines.joined(separator: "\r\n")
        if trailing { out += "\r\n" }
        m.setBody(Array(out.utf8))
        return 1
    }
}

extension NathelperModule: KSRModule {
    static let name = "nathelper"
    static let summary = "NAT detection, Contact and SDP rewriting, keepalives to NATed contacts."
    static let receivedAVP = ModuleParameter.optionalStr("nathelper", "received_avp", "The AVP fix_nated_register stores the received address in.")
    static let natpingInterval = ModuleParameter.int("nathelper", "natping_interval", 0, "Seconds between keepalives to registered contacts (0: none).")
    static let pingNatedOnly = ModuleParameter.flag("nathelper", "ping_nated_only", false, "Keepalives only to contacts with nat_bflag.")
    static let sippingBflag = ModuleParameter.int("nathelper", "sipping_bflag", -1, in: -1...31, "Branch flag of contacts pinged with a SIP request (-1: none).")
    static let sippingFrom = ModuleParameter.optionalStr("nathelper", "sipping_from", "The From URI of SIP keepalives.")
    static let sippingMethod = ModuleParameter.str("nathelper", "sipping_method", "OPTIONS", "The method of SIP keepalives.")
    static let parameters = [receivedAVP.info, natpingInterval.info, pingNatedOnly.info, sippingBflag.info, sippingFrom.info, sippingMethod.info]
    static func exports(_ runtime: ModuleRuntime) -> [KemiExport] { exports(runtime.config) }
}
