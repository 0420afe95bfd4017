public import Diameter
public import StarlingKEMI
import Logging
import Synchronization

/// What the Diameter node offers the script and the control API (the server's node implements it).
public protocol DiameterLink: AnyObject, Sendable {
    /// The peer is open and its watchdog OKAY.
    func isUsable(_ identity: String) -> Bool
    /// The peer is configured (or accepted).
    func isKnown(_ identity: String) -> Bool
    /// Peers the realm table (or the Destination-Realm) would choose for the request, usable ones only.
    func realmCandidates(_ request: DiameterMessage) -> [String]
    var peerStatus: [DiameterPeerStatus] { get }
    /// cdp.enable_peer / cdp.disable_peer; false for an unknown peer.
    func setEnabled(_ identity: String, _ on: Bool) -> Bool
    /// Identity, realm and settings for cdp.list_peers.
    var summary: (identity: String, realm: String, acceptUnknown: Bool, requestTimeout: Int) { get }
    /// Sends a request Starling originates (`KSR.ims_diameter_server.diameter_request`) to `peer`, or
    /// by the realm table when `peer` is empty. Never blocks. 1: queued, `completion` runs once (on
    /// another thread) with the answer or nil (timeout, peer failed); -1 unknown peer; -2 not usable.
    func send(_ request: DiameterMessage, toPeer peer: String, completion: @escaping @Sendable (DiameterMessage?) -> Void) -> Int
}

/// The module's process state: the link to the node, set by the server.
public final class DiameterModuleState: Sendable {
    private let linkBox = Mutex<(any DiameterLink)?>(nil)
    public init() {}
    public var link: (any DiameterLink)? { linkBox.withLock { $0 } }
    public func setLink(_ l: (any DiameterLink)?) { linkBox.withLock { $0 = l } }
}

/// The request the Diameter routing thread is running `ksr_diameter_request()` for, and what the
/// script decided. One per route context (worker-local); nil request in SIP routes.
public final class DiameterCurrent {
    public var request: DiameterMessage?
    public var fromPeer = ""
    public var decision: DiameterDecision = .none
    /// `$diameter_response`: in `ksr_diameter_request()` the local answer set through
    /// `$diameter_response` or `answer()`; after `KSR.ims_diameter_server.diameter_request` and in
    /// `ksr_diameter_response` the answer received.
    public var response: DiameterMessage?
    public init() {}

    public static func of(_ ctx: RouteContext) -> DiameterCurrent { ctx.worker.local(DiameterCurrent.self) { DiameterCurrent() } }
}

/// `KSR.diameter`: the Diameter request being routed by `ksr_diameter_request()`.
enum DiameterModule: KSRModule {
    static let name = "diameter"
    static let summary = "Diameter relay: read and edit the request in ksr_diameter_request(), relay it or answer it."
    static let dictionary = DiameterDictionary.standard

    static func state(_ rt: ModuleRuntime) -> DiameterModuleState { rt.state(DiameterModuleState.self) { DiameterModuleState() } }

    static func exports(_ runtime: ModuleRuntime) -> [KemiExport] {
        let st = state(runtime)
        return [
            KemiExport("diameter", "get_avp", [.str], returns: .xval) { ctx, args in
                guard let m = DiameterCurrent.of(ctx).request, let v = values(m, args.str(0)).first else { return .null }
                return result(v)
            },
            KemiExport("diameter", "get_avps", [.str], returns: .xval) { ctx, args in
                guard let m = DiameterCurrent.of(ctx).request else { return .null }
                let vs = values(m, args.str(0))
                if vs.isEmpty { return .null }
                return .string(vs.map { v -> String in
                    switch v {
                    case .int(let i): return String(i)
                    case .string(let s): return s
                    case .bytes(let b): return String(decoding: b, as: UTF8.self)
                    }
                }.joined(separator: ","))
            },
            KemiExport("diameter", "set_avp", [.str, .str], returns: .int) { ctx, args in
                edit(ctx, args.str(0), args.str(1), replace: true)
            },
            KemiExport("diameter", "add_avp", [.str, .str], returns: .int) { ctx, args in
                edit(ctx, args.str(0), args.str(1), replace: false)
            },
            KemiExport("diameter", "rm_avp", [.str], returns: .int) { ctx, args in
                let cur = DiameterCurrent.of(ctx)
                guard cur.request != nil, let d = dictionary.lookup(args.str(0)) else { return .int(-1) }
                let n = cur.request!.remove(d.code, vendor: d.vendorID)
                return .int(n > 0 ? n : -1)
            },
            KemiExport("diameter", "relay", [.str], returns: .int, optional: 1) { ctx, args in
                let cur = DiameterCurrent.of(ctx)
                guard let m = cur.request, let link = st.link else { return .int(-1) }
                let peer = args.str(0)
                if peer.isEmpty { return relayRealm(ctx, cur, m, link) }
                guard link.isKnown(peer) else {
                    ctx.logger.warning("KSR.diameter.relay: unknown peer \(peer)")
                    return .int(-1)
                }
                guard link.isUsable(peer) else { return .int(-2) }
                cur.decision = .relay(peer: peer, request: m)
                return .int(1)
            },
            KemiExport("diameter", "relay_realm", [], returns: .int) { ctx, _ in
                let cur = DiameterCurrent.of(ctx)
                guard let m = cur.request, let link = st.link else { return .int(-1) }
                return relayRealm(ctx, cur, m, link)
            },
            KemiExport("diameter", "answer", [.int], returns: .int) { ctx, args in
                let cur = DiameterCurrent.of(ctx)
                guard let m = cur.request, let link = st.link, let code = UInt32(exactly: args.int(0)) else { return .int(-1) }
                let s = link.summary
                let a = m.answer(resultCode: code, originHost: s.identity, originRealm: s.realm, reportingHost: s.identity)
                cur.response = a
                cur.decision = .answer(a)
                return .int(1)
            },
            KemiExport("diameter", "is_peer_usable", [.str], returns: .int) { _, args in
                guard let link = st.link else { return .int(-1) }
                return .int(link.isUsable(args.str(0)) ? 1 : -1)
            },
        ]
    }

    private static func relayRealm(_ ctx: RouteContext, _ cur: DiameterCurrent, _ m: DiameterMessage, _ link: any DiameterLink) -> KemiResult {
        guard !link.realmCandidates(m).isEmpty else { return .int(-2) }
        cur.decision = .relayByRealm(request: m)
        return .int(1)
    }

    private static func result(_ v: DiameterDictionary.Value) -> KemiResult {
        switch v {
        case .int(let i): return .int(i)
        case .string(let s): return .string(s)
        case .bytes(let b): return .bytes(b)
        }
    }

    /// Values of the AVPs named by `path`: "Name" (top level) or "Group/Name" (inside grouped AVPs).
    static func values(_ m: DiameterMessage, _ path: String) -> [DiameterDictionary.Value] {
        var level = m.avps
        let parts = path.split(separator: "/").map(String.init)
        guard !parts.isEmpty else { return [] }
        for (i, name) in parts.enumerated() {
            guard let d = dictionary.lookup(name) else { return [] }
            let matching = level.filter { $0.code == d.code && $0.vendorID == d.vendorID }
            if i == parts.count - 1 { return matching.map { dictionary.value(of: $0) } }
            level = matching.flatMap { (try? $0.children()) ?? [] }
        }
        return []
    }

    private static func edit(_ ctx: RouteContext, _ name: String, _ value: String, replace: Bool) -> KemiResult {
        let cur = DiameterCurrent.of(ctx)
        guard cur.request != nil else { return .int(-1) }
        guard let d = dictionary.lookup(name) else {
            ctx.logger.warning("KSR.diameter: unknown AVP \(name)")
            return .int(-1)
        }
        guard d.type != .grouped, let avp = dictionary.makeAVP(d, int: nil, string: value) else {
            ctx.logger.warning("KSR.diameter: \(value) is not a value for \(d.name) (\(d.type.rawValue))")
            return .int(-1)
        }
        if replace, let i = cur.request!.avps.firstIndex(where: { $0.code == d.code && $0.vendorID == d.vendorID }) {
            cur.request!.avps[i] = avp
            cur.request!.avps.removeAll { $0.code == d.code && $0.vendorID == d.vendorID && $0 != avp }
        } else {
            cur.request!.avps.append(avp)
        }
        return .int(1)
    }

    // MARK: Pseudo-variables ($diameter_command, $diameter_application, $diameter_request, $diameter_response)

    static func pv(_ ctx: RouteContext, _ name: String) -> KemiValue {
        let cur = DiameterCurrent.of(ctx)
        switch name {
        case "diameter_command": return cur.request.map { .int(Int($0.commandCode)) } ?? .null
        case "diameter_application": return cur.request.map { .int(Int($0.applicationID)) } ?? .null
        case "diameter_request": return cur.request.map { .string(json($0.avps)) } ?? .null
        case "diameter_response": return cur.response.map { .string(json($0.avps)) } ?? .null
        default: return .null
        }
    }

    /// `$diameter_response = json` (Kamailio's pv_set_response). In `ksr_diameter_request()` the JSON's
    /// AVPs become the answer to the request (what Kamailio's AAACreateResponse puts first: Session-Id,
    /// Origin-Host, Origin-Realm, Proxy-Info echoed; then the JSON's AVPs; the E flag when its
    /// Result-Code is a 3xxx protocol error) and the route's decision is to send it, unless it relays
    /// or answers afterwards. Elsewhere it only sets the variable. Null clears it (and the answer
    /// decision). JSON that does not parse is refused with an error (false), nothing changes.
    static func setResponse(_ ctx: RouteContext, _ value: KemiValue) -> Bool {
        let cur = DiameterCurrent.of(ctx)
        guard case .string(let text) = value else {
            guard value == .null else { return false }
            cur.response = nil
            if case .answer = cur.decision { cur.decision = .none }
            return true
        }
        var warnings: [String] = []
        let avps: [DiameterAVP]
        do {
            avps = try DiameterJSON.parse(text, warnings: &warnings)
        } catch {
            ctx.logger.error("$diameter_response: \(error)")
            return false
        }
        for w in warnings { ctx.logger.warning("$diameter_response: \(w)") }
        guard let req = cur.request else {
            cur.response = DiameterMessage(flags: 0, commandCode: 0, applicationID: 0, hopByHop: 0, endToEnd: 0, avps: avps)
            return true
        }
        let s = state(ctx).link?.summary
        var a = DiameterMessage(flags: req.flags & DiameterMessage.flagProxiable, commandCode: req.commandCode,
                                applicationID: req.applicationID, hopByHop: req.hopByHop, endToEnd: req.endToEnd)
        if let sid = req.first(BaseAVP.sessionID) { a.avps.append(sid) }
        if let s {
            a.avps.append(.utf8(BaseAVP.originHost, s.identity))
            a.avps.append(.utf8(BaseAVP.originRealm, s.realm))
        }
        a.avps += req.all(BaseAVP.proxyInfo)
        a.avps += avps
        if let rc = a.resultCode, (3000..<4000).contains(rc) { a.flags |= DiameterMessage.flagError }
        cur.response = a
        cur.decision = .answer(a)
        return true
    }

    private static func state(_ ctx: RouteContext) -> DiameterModuleState {
        (ctx.moduleState as? ModuleRuntime).map { Self.state($0) } ?? DiameterModuleState()
    }

    /// AVPs as JSON in ims_diameter_server's shape (avp_helper.c avp2json): avpCode, vendorId,
    /// DataType (cdp's AAA_AVP_* numbers), Flags, then string / int32 / int64 / address / data+list.
    static func json(_ avps: [DiameterAVP]) -> String {
        "[" + avps.map(json).joined(separator: ",") + "]"
    }

    static func json(_ a: DiameterAVP) -> String {
        let d = dictionary.definition(code: a.code, vendor: a.vendorID)
        var s = "{\"avpCode\":\(a.code),\"vendorId\":\(a.vendorID ?? 0)"
        switch d.type {
        case .utf8String, .diameterIdentity, .diameterURI, .ipFilterRule:
            s += ",\"DataType\":1,\"Flags\":\(a.flags),\"string\":\(quote(a.string))"
        case .unsigned32, .integer32, .enumerated:
            s += ",\"DataType\":3,\"Flags\":\(a.flags),\"int32\":\(a.u32.map { String($0) } ?? "0")"
        case .unsigned64, .integer64:
            s += ",\"DataType\":4,\"Flags\":\(a.flags),\"int64\":\(a.u64.map { String($0) } ?? "0")"
        case .address:
            if case .string(let ip) = dictionary.value(of: a) { s += ",\"DataType\":2,\"Flags\":\(a.flags),\"address\":\(quote(ip))" } else {
                s += ",\"DataType\":2,\"Flags\":\(a.flags)"
            }
        case .grouped:
            let kids = (try? a.children()) ?? []
            s += ",\"DataType\":0,\"Flags\":\(a.flags),\"data\":\(quote(hex(a.data))),\"list\":\(json(kids))"
        default:
            s += ",\"DataType\":0,\"Flags\":\(a.flags),\"data\":\(quote(hex(a.data)))"
            if a.data.count == 4, let v = a.u32 { s += ",\"int32\":\(v)" }
        }
        return s + "}"
    }

    private static func hex(_ b: [UInt8]) -> String {
        let digits = Array("0123456789abcdef")
        var out = ""
        out.reserveCapacity(b.count * 2)
        for x in b { out.append(digits[Int(x >> 4)]); out.append(digits[Int(x & 15)]) }
        return out
    }

    static func quote(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if u.value < 0x20 {
                    let h = String(u.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - h.count) + h
                } else { out.unicodeScalars.append(u) }
            }
        }
        return out + "\""
    }

    // MARK: RPC (Kamailio cdp names) and statistics

    static let rpcMethods: [ModuleRPCMethod] = [
        ModuleRPCMethod("cdp.list_peers", "list diameter peers and their state") { rt, params throws(RPCFault) in
            try params.none("cdp.list_peers")
            guard let link = state(rt).link else { throw RPCFault(500, "diameter is not configured") }
            let s = link.summary
            let rows = link.peerStatus
            let peers: [RPCValue] = rows.map { p in
                .object([
                    "FQDN": .string(p.identity),
                    "Details": .object([
                        "State": .string(p.state),
                        "Disabled": .string(p.enabled ? "False" : "True"),
                        "Watchdog": .string(p.watchdog),
                        "Realm": .string(p.realm),
                        "Applications": .array(p.applications.map { .string("\($0)") }),
                        "Requests relayed": .int(p.requestsRelayed),
                        "Pending": .int(p.pending),
                    ]),
                ])
            }
            return .object([
                "Realm": .string(s.realm), "Identity": .string(s.identity),
                "Accept unknown peers": .int(s.acceptUnknown ? 1 : 0),
                "Transaction timeout": .int(s.requestTimeout),
                "Peer count": .int(rows.count), "Peers": .array(peers),
            ])
        },
        ModuleRPCMethod("cdp.enable_peer", "enable diameter peer") { rt, params throws(RPCFault) in
            guard let fqdn = params.string(0) else { throw RPCFault(400, "required peer fqdn argument") }
            guard let link = state(rt).link, link.setEnabled(fqdn, true) else { throw RPCFault(400, "peer not found") }
            return .null
        },
        ModuleRPCMethod("cdp.disable_peer", "disable diameter peer") { rt, params throws(RPCFault) in
            guard let fqdn = params.string(0) else { throw RPCFault(400, "required peer fqdn argument") }
            guard let link = state(rt).link, link.setEnabled(fqdn, false) else { throw RPCFault(400, "peer not found") }
            return .null
        },
    ]

    static let statistics: [ModuleStatistic] = [
        ModuleStatistic("diameter:peers_usable", metric: "starling_diameter_peers_usable", .gauge,
                        "Diameter peers open with the watchdog OKAY.") { rt in
            state(rt).link?.peerStatus.filter(\.usable).count ?? 0
        },
        ModuleStatistic("diameter:requests_relayed", metric: "starling_diameter_requests_relayed_total", .counter,
                        "Requests relayed to peers (retransmissions included).") { rt in
            state(rt).link?.peerStatus.reduce(0) { $0 + $1.requestsRelayed } ?? 0
        },
        ModuleStatistic("diameter:pending", metric: "starling_diameter_requests_pending", .gauge,
                        "Relayed requests waiting for their answer.") { rt in
            state(rt).link?.peerStatus.reduce(0) { $0 + $1.pending } ?? 0
        },
    ]
}

extension ModuleRuntime {
    /// The Diameter module's state (the server sets the node link in it).
    public var diameter: DiameterModuleState { DiameterModule.state(self) }
}
