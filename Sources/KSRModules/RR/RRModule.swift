import SIPCore
public import SIPTransport
public import StarlingKEMI
import Logging

/// `KSR.rr` (REFERENCE §2.10): Record-Route and Route processing (RFC 3261 §16.4, §16.6, §16.12).
public enum RRModule {
    /// Kamailio's `E_CFG`.
    static let configError = -6

    // MARK: Record-Route

    /// The Record-Route lines to put before Starling's Via when the request leaves from `outgoing`
    /// over `proto` (empty when the script did not record-route), as Kamailio's rr writes them: the
    /// socket's advertised (or own) address, `:port` unless 5060, `;transport=` unless UDP. Two lines,
    /// each with `;r2=on`, when double RR is on (`enable_double_rr` 1) and the outgoing socket or
    /// transport differs from the incoming one (2: always): the outgoing side first (the next hop
    /// sends to it), then the incoming side. Decided here, when the request is built, so the script
    /// may force the socket after `record_route()`.
    public static func recordRouteLines(_ ctx: RouteContext, outgoing: (socket: SocketAddress, advertised: String),
                                        proto: SIPTransportProtocol) -> [UInt8] {
        guard let rr = ctx.recordRoute else { return [] }
        let suffix = rr.lr + rr.fromTag + rr.params + ctx.recordRouteParams
        if !rr.addresses.isEmpty {
            return Array(rr.addresses.map { "Record-Route: <sip:\($0)\(suffix)>\r\n" }.joined().utf8)
        }
        let outSocket = ctx.socketInfo(local: outgoing.socket, proto: proto)
        var out = outSocket.uriHostPort(withName: rr.socketNames)
        if ctx.advertisedAddress != nil || ctx.advertisedPort != nil {
            var o = outSocket
            o.advertisedHost = ctx.advertisedAddress ?? o.advertisedHost
            o.advertisedPort = ctx.advertisedPort ?? o.advertisedPort
            out = o.uriHostPort(withName: rr.socketNames)
        }
        let sameSide = outgoing.socket == ctx.received.local && proto == ctx.received.proto
        guard rr.doubleMode == 2 || (rr.doubleMode == 1 && !sameSide) else {
            return Array("Record-Route: <sip:\(out)\(suffix)>\r\n".utf8)
        }
        let incoming = ctx.socketInfo(local: ctx.received.local, proto: ctx.received.proto).uriHostPort(withName: rr.socketNames)
        return Array("Record-Route: <sip:\(out);r2=on\(suffix)>\r\nRecord-Route: <sip:\(incoming);r2=on\(suffix)>\r\n".utf8)
    }

    struct Settings {
        var fullLR: Bool
        var appendFromTag: Bool
        var doubleRR: Int
        var socketNames: Bool = false
        var forceSendSocket: Bool = false
    }

    /// Records a Record-Route for the current request: -1 when one was already recorded (or no request).
    static func record(_ ctx: RouteContext, _ s: Settings, addresses: [String] = [], params: String = "") -> Int {
        guard let m = ctx.message, m.isRequest, ctx.recordRoute == nil else { return -1 }
        var ftag = ""
        if s.appendFromTag {
            // Kamailio adds `;ftag=` only when the From tag is there.
            if let t = m.fromTag, !t.isEmpty { ftag = ";ftag=" + m.string(t) }
        }
        ctx.recordRoute = RecordRouteLump(addresses: addresses, lr: s.fullLR ? ";lr=on" : ";lr", fromTag: ftag,
                                          params: params, doubleMode: s.doubleRR, socketNames: s.socketNames)
        return 1
    }

    /// An address given to `record_route_preset*`: the text after `sip:` (a leading `<`, `sip:` and a
    /// trailing `>` are dropped).
    static func presetAddress(_ s: String) -> String {
        var a = Substring(s)
        if a.hasPrefix("<") { a = a.dropFirst() }
        if a.hasSuffix(">") { a = a.dropLast() }
        if a.lowercased().hasPrefix("sip:") { a = a.dropFirst(4) }
        return String(a)
    }

    // MARK: Route

    /// One Route value with the header line it is on.
    struct RouteEntry {
        var field: SIPHeaderField
        var value: ByteRange
        var addr: SIPNameAddr
    }

    static func routes(_ m: SIPMessage) -> [RouteEntry] {
        var out: [RouteEntry] = []
        m.forEachHeader(.route) { f in
            m.forEachValue(of: f) { v in
                if let na = m.parseNameAddr(v) { out.append(RouteEntry(field: f, value: v, addr: na)) }
            }
        }
        return out
    }

    static func isMyself(_ ctx: RouteContext, _ m: SIPMessage, _ parts: SIPURIParts) -> Bool {
        ctx.services.isMyself(host: m.string(parts.host), port: parts.port ?? (parts.scheme == .sips ? 5061 : 5060), proto: nil)
    }

    /// Removes Route values: a header line whose values all go is removed, else its value is rewritten
    /// with the values that stay.
    static func remove(_ m: SIPMessage, _ all: [RouteEntry], _ gone: [RouteEntry]) {
        var byLine: [Int: [RouteEntry]] = [:]
        for e in gone { byLine[e.field.line.lower, default: []].append(e) }
        for (_, removed) in byLine.sorted(by: { $0.key < $1.key }) {
            let field = removed[0].field
            let kept = all.filter { $0.field.line.lower == field.line.lower && !removed.map(\.value).contains($0.value) }
            if kept.isEmpty {
                m.removeHeader(field)
            } else {
                var text: [UInt8] = []
                for (i, k) in kept.enumerated() {
                    if i > 0 { text += Array(", ".utf8) }
                    text += m.bytes(k.value)
                }
                m.replaceBytes(field.value, with: text)
            }
        }
    }

    /// `loose_route()` as Kamailio 5.6's `loose_route_mode`: 1 routed by the Route set, -1 no Route (or
    /// error), -3 (RR_PRELOADED) for an initial request whose Route set was only ours (taken off, no next
    /// hop in it: e.g. a Path coming back, whose `;received` the path module's callback turns into `$du`).
    /// A preloaded Route that is not ours routes the request (1, `$du` = it). `strictCompat` false:
    /// `loose_route_mode(1)` (no strict-router handling; that applies to in-dialog requests only, as in
    /// Kamailio). With rr `force_send_socket`, a single Route entry of ours forces the socket it names.
    static func looseRoute(_ ctx: RouteContext, _ s: Settings, strictCompat: Bool = true) -> Int {
        guard let m = ctx.message, m.isRequest else { return -1 }
        let all = routes(m)
        var pending = all[...]
        var gone: [RouteEntry] = []
        var routedByStrict = false
        let initial = m.toTag == nil
        // Previous hop was a strict router: the Request-URI is our Record-Route URI and the last
        // Route is the real target (§16.4).
        if strictCompat, !initial, let ruri = SIPURI(bytes: m.currentRequestURI),
           ctx.services.isMyself(host: ruri.host, port: ruri.port ?? (ruri.scheme == .sips ? 5061 : 5060), proto: nil),
           let last = pending.last {
            ctx.routedParams = ruri.paramsString.isEmpty ? "" : ";" + ruri.paramsString
            m.setRequestURI(m.bytes(last.addr.uri))
            gone.append(last)
            pending = pending.dropLast()
            routedByStrict = true
        }
        if pending.isEmpty && !routedByStrict {
            return -1
        }
        // Our own entries on top (two with double RR).
        var removedOurs = false
        var ours: [RouteEntry] = []
        while let top = pending.first, isMyself(ctx, m, top.addr.uriParts) {
            if !removedOurs {
                let p = m.string(top.addr.uriParts.params)
                ctx.routedParams = p.isEmpty ? "" : ";" + p
            }
            removedOurs = true
            ours.append(top)
            gone.append(top)
            pending = pending.dropFirst()
        }
        let doubleRR = s.doubleRR != 0 && ours.count >= 2 && m.param("r2", in: ours[0].addr.uriParts.params) != nil
        if doubleRR {
            // Double RR (`;r2=on`): the second entry names the socket the request leaves from.
            forceSocket(ctx, m, ours[1].addr, s, secondRR: true)
        } else if s.forceSendSocket, let first = ours.first {
            // rr force_send_socket: also a single Record-Route of ours names the socket.
            forceSocket(ctx, m, first.addr, s, secondRR: false)
        }
        var result = 1
        if removedOurs && pending.isEmpty && initial && !routedByStrict { result = -3 }
        if let next = pending.first {
            if m.param("lr", in: next.addr.uriParts.params) != nil {
                ctx.destinationURI = m.bytes(next.addr.uri)
            } else if strictCompat {
                // Next hop is a strict router (§16.12): it becomes the Request-URI, the Request-URI
                // goes to the end of the Route set.
                let oldRURI = m.currentRequestURI
                m.setRequestURI(m.bytes(next.addr.uri))
                gone.append(next)
                m.addHeaderLine(Array("Route: <".utf8) + oldRURI + Array(">\r\n".utf8), at: .last)
            } else {
                ctx.destinationURI = m.bytes(next.addr.uri)
            }
        }
        remove(m, all, gone)
        return result
    }

    /// Kamailio's `rr_do_force_send_socket`: the socket a Route entry of ours names, by `;sn=` (with
    /// sockname_mode), else by address (or advertised address), port (the transport's default when
    /// absent, then any) and transport. None found: a warning for the second entry of a double RR.
    static func forceSocket(_ ctx: RouteContext, _ m: SIPMessage, _ entry: SIPNameAddr, _ s: Settings, secondRR: Bool) {
        let uri = entry.uriParts
        if s.socketNames, let sn = m.param("sn", in: uri.params).map(m.string), !sn.isEmpty,
           let named = ctx.services.socket(named: sn) {
            ctx.forcedSocket = named
            return
        }
        let t = m.param("transport", in: uri.params).flatMap { SIPTransportProtocol(name: m.string($0)) }
            ?? (uri.scheme == .sips ? .tls : .udp)
        let host = m.string(uri.host)
        let proto: SIPTransportProtocol? = t == .ws ? nil : t
        if let si = ctx.services.socket(host: host, port: uri.port ?? (t == .tls ? 5061 : 5060), proto: proto)
            ?? (uri.port == nil ? ctx.services.socket(host: host, port: 0, proto: proto) : nil) {
            ctx.forcedSocket = si
        } else if secondRR && !ctx.services.sockets.isEmpty {
            ctx.logger.warning("loose_route: no socket for the second Record-Route entry \(m.string(entry.uri))")
        }
    }

    /// `loose_route` and the rr callbacks (uac's restore, path's received, dialog): as Kamailio, they
    /// run whenever one of our entries was taken (routed params), also for a preloaded route (-3).
    static func looseRouteWithCallbacks(_ ctx: RouteContext, _ s: Settings, _ uac: UACReplace.Settings,
                                        _ rrcb: [@Sendable (RouteContext) -> Void], strictCompat: Bool = true) -> Int {
        let r = looseRoute(ctx, s, strictCompat: strictCompat)
        if r > 0 || r == -3 {
            UACReplace.autoRestore(ctx, uac)  // uac's rr callback (restore_mode auto)
            if ctx.routedParams != nil { for cb in rrcb { cb(ctx) } }
        }
        return r
    }

    static func exports(_ config: ModuleConfiguration, callbacks: RRCallbacks = RRCallbacks()) -> [KemiExport] {
        let rrcb = callbacks.all
        let s = Settings(fullLR: config[enableFullLR], appendFromTag: config[appendFromTag], doubleRR: config[enableDoubleRR],
                         socketNames: config[sockNameMode], forceSendSocket: config[forceSendSocket])
        let uac = UACReplace.Settings(config)
        return [
            KemiExport("rr", "record_route", [], returns: .int) { ctx, _ in
                .int(record(ctx, s))
            },
            KemiExport("rr", "record_route_params", [.str], returns: .int) { ctx, args in
                .int(record(ctx, s, params: args.string(0) ?? ""))
            },
            KemiExport("rr", "record_route_preset", [.str, .str], returns: .int) { ctx, args in
                guard let a = args.string(0), !a.isEmpty else { return .int(-1) }
                var addrs = [presetAddress(a)]
                if let b = args.string(1), !b.isEmpty { addrs.append(presetAddress(b)) }
                return .int(record(ctx, s, addresses: addrs))
            },
            KemiExport("rr", "record_route_preset_one", [.str], returns: .int) { ctx, args in
                guard let a = args.string(0), !a.isEmpty else { return .int(-1) }
                return .int(record(ctx, s, addresses: [presetAddress(a)]))
            },
            KemiExport("rr", "record_route_advertised_address", [.str], returns: .int, compat: "one Record-Route, also when the sockets differ") { ctx, args in
                guard let a = args.string(0), !a.isEmpty else { return .int(-1) }
                return .int(record(ctx, s, addresses: [presetAddress(a)]))
            },
            KemiExport("rr", "add_rr_param", [.str], returns: .int) { ctx, args in
                guard let p = args.string(0), !p.isEmpty, ctx.message?.isRequest == true else { return .int(-1) }
                ctx.recordRouteParams += p.hasPrefix(";") ? p : ";" + p
                return .int(1)
            },
            KemiExport("rr", "remove_record_route", [], returns: .int) { ctx, _ in
                ctx.recordRoute = nil
                return .int(1)
            },
            KemiExport("rr", "loose_route", [], returns: .int, compat: "no outbound flow tokens (never 2 / -2)") { ctx, _ in
                .int(looseRouteWithCallbacks(ctx, s, uac, rrcb))
            },
            KemiExport("rr", "loose_route_mode", [.int], returns: .int) { ctx, args in
                .int(looseRouteWithCallbacks(ctx, s, uac, rrcb, strictCompat: args.int(0) != 1))
            },
            KemiExport("rr", "loose_route_preloaded", [], returns: .int) { ctx, _ in
                .int(looseRouteWithCallbacks(ctx, s, uac, rrcb) == -3 ? 1 : -1)
            },
            KemiExport("rr", "check_route_param", [.str], returns: .int) { ctx, args in
                guard let params = ctx.routedParams, let re = args.string(0), let r = ctx.regex(re) else { return .int(-1) }
                return .int(r.matches(params) ? 1 : -1)
            },
            KemiExport("rr", "is_direction", [.str], returns: .int) { ctx, args in
                guard s.appendFromTag else { return .int(configError) }
                guard let m = ctx.message, let dir = args.string(0)?.lowercased(),
                      dir == "downstream" || dir == "upstream" else { return .int(-1) }
                var downstream = true
                if let params = ctx.routedParams, params.count > 1,
                   let uri = SIPURI("sip:x" + params), let ftag = uri.param("ftag") {
                    let fromTag = m.fromTag.map(m.string) ?? ""
                    downstream = ftag == fromTag
                }
                return .int((dir == "downstream") == downstream ? 1 : -1)
            },
            KemiExport("rr", "next_hop_route", [], returns: .int) { ctx, _ in
                guard let m = ctx.message else { return .int(-1) }
                return .int(m.firstHeader(.route) != nil ? 1 : -1)
            },
        ]
    }
}

extension RRModule: KSRModule {
    public static let name = "rr"
    public static let summary = "Record-Route and loose routing."
    static let enableFullLR = ModuleParameter.flag("rr", "enable_full_lr", false, "Write `;lr=on` instead of `;lr`.")
    static let appendFromTag = ModuleParameter.flag("rr", "append_fromtag", true, "Add the From tag (`;ftag=`) to Record-Route.")
    static let enableDoubleRR = ModuleParameter.int("rr", "enable_double_rr", 1, in: 0...2,
                                                    "Two Record-Routes (`;r2=on`) when a request changes socket or transport (2: always).")
    static let sockNameMode = ModuleParameter.flag("rr", "sockname_mode", false,
                                                   "Add `;sn=NAME` (the socket's name) to Record-Route.")
    static let forceSendSocket = ModuleParameter.flag("rr", "force_send_socket", false,
                                                      "`loose_route()` forces the socket a single Record-Route of ours names (double RR always does).")
    public static let parameters = [enableFullLR.info, appendFromTag.info, enableDoubleRR.info, sockNameMode.info, forceSendSocket.info]
    public static func exports(_ runtime: ModuleRuntime) -> [KemiExport] {
        exports(runtime.config, callbacks: runtime.rrCallbacks)
    }
}

/// Callbacks run when `loose_route()` routed a request by one of our own Route entries (Kamailio's
/// `register_rrcb`: dialog matches in-dialog requests there). Added while modules start, before any
/// worker runs; read-only afterwards.
public final class RRCallbacks: @unchecked Sendable {
    private(set) var all: [@Sendable (RouteContext) -> Void] = []
    public init() {}
    func add(_ f: @escaping @Sendable (RouteContext) -> Void) { all.append(f) }
}
