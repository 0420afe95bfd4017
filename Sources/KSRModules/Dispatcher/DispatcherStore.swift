import SIPCore
import SIPTransport
import StarlingKEMI
import Logging
import Synchronization
import Glibc

/// The `[modparam.dispatcher]` values, read once when the module starts.
struct DSSettings: Sendable {
    var listFile: String?
    var flags: Int
    var forceDst: Bool
    var useDefault: Bool
    var xavpDst: String
    var xavpDstMode: Int
    var xavpCtx: String
    var xavpCtxMode: Int
    var hashPvar: String?
    var setidPVName: String?
    var attrsPVName: String?
    var probingThreshold: Int
    var inactiveThreshold: Int
    var pingMethod: String
    var pingFrom: String
    var pingInterval: Int
    var pingLatencyStats: Bool
    var latencyAlpha: Double
    var pingReplyCodes: [Int]
    var probingMode: Int
    var hashSize: Int
    var hashExpire: Int
    var hashInitExpire: Int
    var hashCheckInterval: Int
    var outboundProxy: String?
    var eventCallback: String?
    var reloadDelta: Int
    var pingTimeout: Int
    var eventOnLoad: Bool
    /// `ds_dns_mode` bits: 1 names resolved at load, 2 at every ds_is_from_list, 4 timer (Starling:
    /// as 1), 8 SRV lookups; `ds_load_mode` 1: a name that does not resolve refuses the list.
    var dnsMode: Int = 1
    var loadMode: Int = 0

    var failover: Bool { flags & 2 != 0 }
    var userOnlyHash: Bool { flags & 1 != 0 }

    init(_ c: ModuleConfiguration) {
        typealias M = DispatcherModule
        func opt(_ s: String?) -> String? { s.flatMap { $0.isEmpty ? nil : $0 } }
        listFile = opt(c[M.listFile])
        flags = c[M.flags]
        forceDst = c[M.forceDst] != 0
        useDefault = c[M.useDefault] != 0
        xavpDst = c[M.xavpDst]
        xavpDstMode = c[M.xavpDstMode]
        xavpCtx = c[M.xavpCtx]
        xavpCtxMode = c[M.xavpCtxMode]
        hashPvar = opt(c[M.hashPvar])
        setidPVName = opt(c[M.setidPVName])
        attrsPVName = opt(c[M.attrsPVName])
        probingThreshold = c[M.probingThreshold]
        inactiveThreshold = c[M.inactiveThreshold]
        pingMethod = c[M.pingMethod]
        pingFrom = c[M.pingFrom]
        pingInterval = c[M.pingInterval]
        pingLatencyStats = c[M.pingLatencyStats] != 0
        let a = c[M.latencyAlpha]
        latencyAlpha = a > 0 && a < 1000 ? Double(a) / 1000 : 0.9
        pingReplyCodes = DSSettings.replyCodes(opt(c[M.pingReplyCodes]) ?? "") ?? []
        probingMode = c[M.probingMode]
        hashSize = c[M.hashSize]
        hashExpire = c[M.hashExpire]
        hashInitExpire = c[M.hashInitExpire]
        hashCheckInterval = c[M.hashCheckInterval]
        outboundProxy = opt(c[M.outboundProxy])
        eventCallback = opt(c[M.eventCallback])
        reloadDelta = c[M.reloadDelta]
        pingTimeout = c[M.pingTimeout]
        eventOnLoad = c[M.eventOnLoad] != 0
        dnsMode = c[M.dnsMode]
        loadMode = c[M.loadMode]
    }

    /// `ds_ping_reply_codes`: "code=404;class=3" → codes (3 digits) and classes (one digit); nil
    /// when a part is neither.
    static func replyCodes(_ s: String) -> [Int]? {
        var out: [Int] = []
        for part in s.split(separator: ";") where !part.trimmingCharacters(" \t").isEmpty {
            let kv = part.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(" \t").lowercased() }
            guard kv.count == 2, let n = Int(kv[1]) else { return nil }
            if kv[0] == "code", n >= 100, n < 700 { out.append(n) } else if kv[0] == "class", n >= 1, n < 7 { out.append(n) } else { return nil }
        }
        return out
    }

    /// `ds_ping_check_rplcode`.
    func acceptsProbeReply(_ code: Int) -> Bool {
        pingReplyCodes.contains { $0 / 10 != 0 ? $0 == code : $0 == code / 100 }
    }
}

/// What `$dsv(...)` reads while an event callback runs (Kamailio's `ds_rctx_t`).
struct DSReplyContext: Sendable {
    var flags = 0
    var code = 0
    var reason: String?
}

/// Per-worker `$dsv` context, set around an event callback.
final class DSWorkerEvent {
    var current: DSReplyContext?
}

/// A call in the call-load table (`ds_hash_size` > 0): its set and destination, confirmed by a 2xx.
struct DSLoadCell: Sendable {
    var set: Int
    var duid: String
    var confirmed: Bool
    var expire: Int
    var initExpire: Int
}

/// A state change that must run the `event_callback`.
struct DSEvent: Sendable {
    var name: String
    var uri: String
    var setid: Int
    var rctx: DSReplyContext
}

/// The destination sets every worker shares (Kamailio keeps them in shared memory): selection,
/// states, the call-load table, probing. One lock; everything done under it is short.
final class DispatcherStore: Sendable {
    let settings: DSSettings
    let clock: ModuleClock
    let logger = Logger(label: "starling.dispatcher")

    struct State: Sendable {
        var sets: [Int: DSSet] = [:]
        var load: [String: DSLoadCell] = [:]
        var reloadTime = 0
        var lastPing: Double = 0
        var lastHashCheck = 0
        /// Probes waiting for a reply (`ds_ping_timeout`): "setid uri" → sequence and deadline.
        var pending: [String: (seq: Int, deadline: Double)] = [:]
        var probeSeq = 0
    }
    let state = Mutex<State>(State())
    /// The dispatcher table the sets come from (db_url), instead of the list file.
    let tableSource = Mutex<(source: any DispatcherTableSource, columns: DispatcherTableColumns)?>(nil)
    let pingActive = Atomic<Int>(1)
    let probesSent = Atomic<Int>(0)
    let probesFailed = Atomic<Int>(0)
    /// The resolver for host names at load (nil: names stay unresolved until used).
    let resolveHost: ModuleRuntime.HostResolver?

    init(settings: DSSettings, clock: ModuleClock, resolveHost: ModuleRuntime.HostResolver? = nil) {
        self.settings = settings
        self.clock = clock
        self.resolveHost = resolveHost
    }

    // MARK: Loading

    /// Reads and parses the list file (nothing changes on error).
    func readList(_ path: String) throws(DSListError) -> [Int: DSSet] {
        guard let f = fopen(path, "r") else {
            throw DSListError(origin: path, message: "cannot open the list file (\(String(cString: strerror(errno))))")
        }
        var bytes: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = fread(&buf, 1, buf.count, f)
            if n <= 0 { break }
            bytes += buf[0..<n]
        }
        fclose(f)
        let entries = try DSList.parse(String(decoding: bytes, as: UTF8.self), file: path) { [logger] in logger.warning("\($0)") }
        return try resolveNames(DSList.build(entries))
    }

    /// Kamailio's `pack_dest` DNS step: with `ds_dns_mode` 1 (or 4) a host name is resolved at load
    /// (not for destinations with flag 16), its address kept for ds_is_from_list; a name that does
    /// not resolve drops its destination with a warning, or refuses the whole list with
    /// `ds_load_mode` 1. With bit 8 the lookup is SRV first (the destination takes the port found).
    func resolveNames(_ sets: [Int: DSSet]) throws(DSListError) -> [Int: DSSet] {
        guard settings.dnsMode & (DS.dnsInit | DS.dnsTimer) != 0, let resolve = resolveHost else { return sets }
        let srv = settings.dnsMode & DS.dnsQSRV != 0
        var out: [Int: DSSet] = [:]
        var failed: [(line: Int, error: DSListError)] = []
        for id in sets.keys.sorted() {
            let set = sets[id]!
            var kept: [DSDestination] = []
            for var d in set.dests.reversed() {  // file order
                if d.ip != nil || d.flags & DS.noDNS != 0 {
                    kept.append(d)
                    continue
                }
                let proto = d.proto ?? .udp
                let defaultPort = proto == .tls || proto == .wss ? 5061 : 5060
                let found = resolve(d.host, srv ? (d.port == 0 ? nil : d.port) : (d.port == 0 ? defaultPort : d.port), proto)
                guard let a = found.first else {
                    let why = "could not resolve \(d.host) (missing no-probing flag?!?)"
                    failed.append((Int(d.origin.split(separator: ":").last ?? "") ?? 0, DSListError(origin: d.origin, message: why)))
                    logger.warning("\(d.origin): \(why): unable to add destination \(d.uri) to set \(id) -- skipping")
                    continue
                }
                d.ip = a.ip
                if srv && d.port == 0 { d.port = Int(a.port) }
                kept.append(d)
            }
            if kept.count == set.dests.count {
                out[id] = set
            } else if !kept.isEmpty {
                out[id] = DSSet(id: id, dests: kept.reversed())
            }
        }
        // ds_load_mode 1: the first line (in file order) that does not resolve refuses the list
        if settings.loadMode == 1, let first = failed.min(by: { $0.line < $1.line }) { throw first.error }
        return out
    }

    /// Replaces the sets; destinations whose set, URI and list flags are unchanged keep their state,
    /// load, counters and latency. Returns the events to announce (`ds_event_on_load`).
    @discardableResult
    func install(_ fresh: [Int: DSSet]) -> [DSEvent] {
        state.withLock { st in
            var sets = fresh
            for (id, var set) in sets {
                let old = st.sets[id]?.dests ?? []
                for i in set.dests.indices {
                    let d = set.dests[i]
                    guard let o = old.first(where: { $0.uri.lowercased() == d.uri.lowercased() && $0.listFlags == d.listFlags })
                    else { continue }
                    set.dests[i].flags = o.flags
                    set.dests[i].dload = o.dload
                    set.dests[i].messageCount = o.messageCount
                    set.dests[i].latency = o.latency
                    set.dests[i].probesSent = o.probesSent
                    set.dests[i].probesFailed = o.probesFailed
                }
                set.initRelativeWeights()
                prepare(&set)
                sets[id] = set
            }
            st.sets = sets
            var events: [DSEvent] = []
            for id in sets.keys.sorted() {
                for d in sets[id]!.dests {
                    events.append(DSEvent(name: d.isSkipped ? "dispatcher:dst-down" : "dispatcher:dst-up", uri: d.uri,
                                          setid: id, rctx: DSReplyContext(flags: 0, code: 0, reason: "load")))
                }
            }
            return events
        }
    }

    /// `ds_reload` / `dispatcher.reload`: the list file again. The error says why (the running set stays).
    func reload(now: Int) -> Result<[DSEvent], DSReloadError> {
        let allowed = state.withLock { st -> Bool in
            if st.reloadTime != 0 && st.reloadTime > now - settings.reloadDelta { return false }
            st.reloadTime = now
            return true
        }
        guard allowed else { return .failure(.ongoing) }
        let table = tableSource.withLock { $0 }
        guard table != nil || settings.listFile != nil else { return .failure(.failed("no list_file is set")) }
        do {
            let sets: [Int: DSSet]
            if let t = table { sets = try readTable(t.source, t.columns) } else { sets = try readList(settings.listFile!) }
            return .success(install(sets))
        } catch {
            return .failure(.failed(error.description))
        }
    }

    enum DSReloadError: Error { case ongoing, failed(String) }

    var setCount: Int { state.withLock { $0.sets.count } }
    func snapshot() -> [DSSet] { state.withLock { st in st.sets.keys.sorted().map { st.sets[$0]! } } }

    // MARK: Selection (ds_manage_routes)

    enum SetOp: Int { case dstURI = 0, rURI = 1, xavp = 2 }

    struct SelectState {
        var setid: Int
        var alg: Int
        var umode: SetOp
        var limit: UInt32
        var cnt = 0
        var emode = false
        var records: [[String: [KemiValue]]] = []
    }

    /// `socket=` / `sockname=` of a destination: the socket requests to it leave from (Kamailio's
    /// ds_update_dst sets force_send_socket). A socket that does not exist is logged and not forced.
    func forceSocket(_ ctx: RouteContext, socket: String, name: String) {
        guard !socket.isEmpty || !name.isEmpty else { return }
        var found: LocalSocket? = nil
        if !name.isEmpty {
            found = ctx.services.socket(named: name)
        } else if let p = CorexModule.parseSocketSpec(socket) {
            found = ctx.services.socket(host: p.host, port: p.port, proto: p.proto)
        }
        if let found { ctx.forcedSocket = found } else {
            ctx.logger.warning("dispatcher: no local socket matches \(name.isEmpty ? "socket=" + socket : "sockname=" + name)")
        }
    }

    /// The hash input of the hashing algorithms, read from the message before taking the lock.
    enum HashInput { case value(UInt32), roundRobin, error }

    func hashInput(_ ctx: RouteContext, _ alg: Int) -> HashInput {
        guard let m = ctx.message else { return .error }
        func uriKeys(_ bytes: [UInt8]) -> HashInput {
            guard let u = SIPURI(bytes: bytes), !u.host.isEmpty else {
                ctx.logger.error("dispatcher: invalid uri \(String(decoding: bytes, as: UTF8.self))")
                return .error
            }
            let key1 = Array((u.user ?? "").utf8)
            if settings.userOnlyHash { return .value(DS.hash(key1, nil)) }
            var key2 = u.host
            if let p = u.port, p != (u.scheme == .sips ? 5061 : 5060) { key2 += ":\(p)" }
            return .value(DS.hash(key1, Array(key2.utf8)))
        }
        switch alg {
        case 0, 10:
            guard let cid = m.callID else { ctx.logger.error("dispatcher: cannot parse Call-Id"); return .error }
            return .value(DS.hash(Array(m.string(cid).trimmingCharacters(" \t").utf8)))
        case 1:
            guard let f = m.from else { ctx.logger.error("dispatcher: cannot get From uri"); return .error }
            return uriKeys(m.bytes(f.uri))
        case 2:
            guard let t = m.to else { ctx.logger.error("dispatcher: cannot parse To hdr"); return .error }
            return uriKeys(m.bytes(t.uri))
        case 3:
            guard let u = ctx.currentRequestURI else { ctx.logger.error("dispatcher: bad request uri"); return .error }
            return uriKeys(u.bytes)
        case 5:
            for name in ["Proxy-Authorization", "Authorization"] {
                for field in m.headers(named: name) {
                    var malformed = false
                    if let cred = DigestCredentials.parse(m, field, malformed: &malformed) {
                        let user = cred.username.split(separator: "@", maxSplits: 1).first.map(String.init) ?? ""
                        if user.isEmpty {
                            ctx.logger.error("dispatcher: no Authorization-Username or Credentials")
                            return .roundRobin
                        }
                        return .value(DS.hash(Array(user.trimmingCharacters(" \t").utf8)))
                    }
                }
            }
            return .roundRobin
        case 7:
            guard let model = settings.hashPvar else { ctx.logger.error("dispatcher: hash_pvar is not set"); return .error }
            let s = XLogModule.render(ctx, model).trimmingCharacters(" \t\r\n")
            guard !s.isEmpty else { ctx.logger.error("dispatcher: hash_pvar string is empty"); return .error }
            return .value(DS.hash(Array(s.utf8)))
        default:
            return .value(0)
        }
    }

    /// What a selection decided, applied to the message after the lock.
    struct Decision {
        var code: Int
        var uri: String?
        var uriBytes: [UInt8] = []
        var branches: [String] = []
        var records: [[String: [KemiValue]]] = []
        /// The destination's `socket=` / `sockname=` attribute ("" none).
        var socket = ""
        var socketName = ""
    }

    /// `ds_manage_routes`: picks a destination of `rstate.setid` with `rstate.alg`, sets $du / the
    /// R-URI (umode), fills the failover records. 1 (2 for parallel when branches failed), -1.
    func manageRoutes(_ ctx: RouteContext, _ rstate: inout SelectState) -> Int {
        guard let m = ctx.message else { return -1 }
        if rstate.umode == .dstURI, !settings.forceDst, let du = ctx.destinationURI, !du.isEmpty {
            ctx.logger.error("dispatcher: destination already set [\(String(decoding: du, as: UTF8.self))]")
            return -1
        }
        var alg = rstate.alg
        var input: HashInput = .value(0)
        var callID: String? = nil
        switch alg {
        case 0, 1, 2, 3, 5, 7: input = hashInput(ctx, alg)
        case 10:
            if m.method != .invite || settings.xavpDst.isEmpty {
                if m.method == .invite { ctx.logger.error("dispatcher: no dst xavp for load distribution - using first entry...") }
                alg = 0
                input = .value(0)
                rstate.alg = 0
            } else {
                guard let cid = m.callID else { return -1 }
                callID = m.string(cid)
            }
        case 4, 6, 8, 9, 11, 12, 13: break
        default:
            ctx.logger.warning("dispatcher: algo \(alg) not implemented - using first entry...")
        }
        if case .error = input {
            ctx.logger.error("dispatcher: can't get the hash for algorithm \(alg)")
            return -1
        }
        let s = settings
        let now = clock.unixSeconds
        var decision = state.withLock { st -> Decision in
            if st.sets.isEmpty {
                ctx.logger.error("dispatcher: no destination sets")
                return Decision(code: -1)
            }
            // taken out of the table while it is used: its arrays stay uniquely referenced, so the
            // counters and loads below change in place (no copy-on-write of the destinations)
            guard var set = st.sets.removeValue(forKey: rstate.setid) else {
                ctx.logger.error("dispatcher: destination set [\(rstate.setid)] not found")
                return Decision(code: -1)
            }
            defer { st.sets[rstate.setid] = set }
            let nr = set.dests.count
            guard nr > 0 else { return Decision(code: -1) }
            var hash = 0
            var ulast = false, vlast = 0
            var xavpFilled = false
            var records: [[String: [KemiValue]]] = []
            func roundRobin() {
                hash = set.last
                set.last = (set.last + 1) % nr
                vlast = set.last
                ulast = true
            }
            switch alg {
            case 0, 1, 2, 3, 7:
                if case .value(let h) = input { hash = Int(h) }
            case 4: roundRobin()
            case 5:
                if case .value(let h) = input { hash = Int(h) } else { roundRobin() }
            case 6: hash = Int(UInt32.random(in: 0...UInt32(Int32.max)))
            case 8, 12: hash = 0
            case 9:
                hash = set.wlist[set.wlast]
                set.wlast = (set.wlast + 1) % 100
            case 10:
                // ds_get_leastloaded: the active destination under its maxload with the lowest load
                var k = -1, t = Int(Int32.max)
                for (j, d) in set.dests.enumerated() where !d.isSkipped && (d.attrs.maxload == 0 || d.dload < d.attrs.maxload) {
                    if d.dload < t { k = j; t = d.dload }
                }
                if k < 0 { return Decision(code: -1) }
                hash = k
                // ds_load_add
                var added = false
                if set.dests[k].attrs.duid.isEmpty {
                    ctx.logger.error("dispatcher: dst unique id not set for \(rstate.setid) (\(callID ?? ""))")
                } else if s.hashSize <= 0 {
                    ctx.logger.error("dispatcher: no call load table (ds_hash_size is 0)")
                } else if st.load[callID ?? ""] != nil {
                    ctx.logger.warning("dispatcher: call-id already in hash table [\(callID ?? "")]")
                } else {
                    st.load[callID ?? ""] = DSLoadCell(set: rstate.setid, duid: set.dests[k].attrs.duid, confirmed: false,
                                                       expire: now + s.hashExpire, initExpire: now + s.hashInitExpire)
                    set.dests[k].dload += 1
                    added = true
                }
                if !added {
                    ctx.logger.error("dispatcher: unable to update destination load - classic dispatching")
                    alg = 0
                }
            case 11:
                hash = set.rwlist[set.rwlast]
                set.rwlast = (set.rwlast + 1) % 100
            case 13:
                // ds_manage_route_algo13: priorities lowered by latency, sorted, the best first
                var z = set.last
                var sorted: [(idx: Int, priority: Int)] = []
                for _ in 0..<nr {
                    let d = set.dests[z]
                    if !d.isSkipped {
                        var latency = d.latency.estimate
                        if d.attrs.congestionControl != 0 { latency = d.latency.estimate - Int(d.latency.average) }
                        var handicap = 0
                        if latency > d.priority && d.priority > 0 { handicap = latency / d.priority }
                        var rp = d.priority - handicap
                        if rp < 1 && d.priority > 0 { rp = 1 }
                        sorted.append((z, rp))
                    } else {
                        sorted.append((-1, -1))
                    }
                    z = s.useDefault && nr != 1 ? (z + 1) % (nr - 1) : (z + 1) % nr
                }
                // Kamailio's bubble pass keeps the order of equal priorities
                let ordered = sorted.enumerated().sorted { a, b in
                    a.element.priority != b.element.priority ? a.element.priority > b.element.priority : a.offset < b.offset
                }.map(\.element)
                let first = ordered[0].idx
                if s.failover && !s.xavpDst.isEmpty {
                    for o in ordered where rstate.cnt < Int(clamping: rstate.limit) {
                        if o.idx < 0 || set.dests[o.idx].isSkipped || (s.useDefault && o.idx == nr - 1) { continue }
                        records.append(record(set, o.idx, alg))
                        rstate.cnt += 1
                    }
                }
                if first < 0 { return Decision(code: -1) }
                set.last = (first + 1) % nr
                hash = first
                xavpFilled = true
            default:
                hash = 0
            }
            hash = s.useDefault && nr != 1 ? hash % (nr - 1) : hash % nr
            var i = hash
            while !xavpFilled && set.dests[i].isSkipped {
                i = s.useDefault && nr != 1 ? (i + 1) % (nr - 1) : (i + 1) % nr
                if i == hash {
                    if s.useDefault {
                        i = nr - 1
                        if set.dests[i].isSkipped { return Decision(code: -1) }
                        break
                    }
                    return Decision(code: -1)
                }
            }
            hash = i
            if ulast && vlast == set.last { set.last = (hash + 1) % nr }
            var d = Decision(code: 1, uri: set.dests[hash].uri, uriBytes: set.dests[hash].uriBytes,
                             socket: set.dests[hash].attrs.socket, socketName: set.dests[hash].attrs.sockname)
            if alg == 12 {
                // ds_add_branches: every destination after the chosen one, active or not
                if rstate.umode == .xavp || hash + 1 < nr {
                    for j in (rstate.umode == .xavp ? hash : hash + 1)..<nr { d.branches.append(set.dests[j].uri) }
                }
                return d
            }
            guard s.failover, !s.xavpDst.isEmpty else { return d }
            if !xavpFilled {
                // ds_manage_routes_fill_xavp: the chosen one, those after it, those before it
                records.append(record(set, hash, alg))
                rstate.cnt += 1
                let order = Array((hash + 1)..<nr) + Array(0..<hash)
                for j in order where rstate.cnt < Int(clamping: rstate.limit) {
                    let dj = set.dests[j]
                    if dj.isSkipped || (s.useDefault && j == nr - 1) { continue }
                    if alg == 10 && dj.attrs.maxload != 0 && dj.dload >= dj.attrs.maxload { continue }
                    records.append(record(set, j, alg))
                    rstate.cnt += 1
                }
            }
            if s.useDefault && hash != nr - 1 && rstate.cnt < Int(clamping: rstate.limit) {
                records.append(record(set, nr - 1, alg))
                rstate.cnt += 1
            }
            d.records = records
            return d
        }
        guard decision.code > 0, let uri = decision.uri else { return decision.code }
        if rstate.umode != .xavp {
            if rstate.umode == .dstURI {
                ctx.destinationURI = decision.uriBytes
            } else {
                guard push(ctx, uri, rstate.umode) else { return -1 }
            }
            forceSocket(ctx, socket: decision.socket, name: decision.socketName)
            rstate.emode = true
        }
        if !decision.branches.isEmpty {
            let ruri = ctx.currentRequestURI
            for b in decision.branches {
                if rstate.umode == .rURI, let ruri {
                    if let user = ruri.user, !user.isEmpty {
                        let lower = b.lowercased()
                        guard lower.hasPrefix("sip:") || lower.hasPrefix("sips:") else { continue }
                        let scheme = lower.hasPrefix("sips:") ? "sips:" : "sip:"
                        ctx.branches.append(Array((scheme + user + "@" + b.dropFirst(scheme.count)).utf8))
                    } else {
                        ctx.branches.append(Array(b.utf8))
                    }
                } else {
                    ctx.branches.append(ruri.map { $0.bytes } ?? [])
                    ctx.branchDestinations[ctx.branches.count - 1] = Array(b.utf8)
                }
            }
        }
        rstate.records += decision.records
        decision.records = []
        return decision.code
    }

    /// `ds_add_xavp_record`: uri, grp, attrs (unless xavp_dst_mode 1), socket, dstid (call load).
    func record(_ set: DSSet, _ pos: Int, _ alg: Int) -> [String: [KemiValue]] {
        if pos < set.records.count {
            // prepared when the set was installed: a copy-on-write share, no allocation
            var r = set.records[pos]
            if alg == 10, !set.dests[pos].attrs.duid.isEmpty { r["dstid"] = [.string(set.dests[pos].attrs.duid)] }
            return r
        }
        return makeRecord(set, pos, alg)
    }

    func makeRecord(_ set: DSSet, _ pos: Int, _ alg: Int) -> [String: [KemiValue]] {
        let d = set.dests[pos]
        var r: [String: [KemiValue]] = ["uri": [.string(d.uri)], "grp": [.int(set.id)]]
        if settings.xavpDstMode & 1 == 0, let body = d.attrs.body, !body.isEmpty { r["attrs"] = [.string(body)] }
        if !d.attrs.socket.isEmpty {
            r["sock"] = [.string(d.attrs.socket)]
            if settings.xavpDstMode & 2 != 0 { r["socket"] = [.string(d.attrs.socket)] }
        }
        if !d.attrs.sockname.isEmpty && settings.xavpDstMode & 4 != 0 { r["sockname"] = [.string(d.attrs.sockname)] }
        if alg == 10 && !d.attrs.duid.isEmpty { r["dstid"] = [.string(d.attrs.duid)] }
        return r
    }

    /// The xavp records of every destination of `set` (algorithm-independent fields).
    func prepare(_ set: inout DSSet) {
        set.records = []
        set.records = set.dests.indices.map { makeRecord(set, $0, 0) }
    }

    /// `ds_push_dst`: $du, or the R-URI's host part (Kamailio's SET_HOSTALL: user kept, the rest
    /// replaced by the destination without its scheme).
    func push(_ ctx: RouteContext, _ uri: String, _ mode: SetOp) -> Bool {
        switch mode {
        case .dstURI:
            ctx.destinationURI = Array(uri.utf8)
            return true
        case .xavp:
            return true
        case .rURI:
            guard let m = ctx.message, m.isRequest, let cur = ctx.currentRequestURI else { return false }
            var rest = Substring(uri)
            if rest.lowercased().hasPrefix("sip:") { rest = rest.dropFirst(4) } else if rest.lowercased().hasPrefix("sips:") { rest = rest.dropFirst(5) }
            var text = cur.schemeName + ":"
            if let user = cur.user {
                text += user
                if let pw = cur.password { text += ":" + pw }
                text += "@"
            }
            text += rest
            guard SIPURI(text) != nil else {
                ctx.logger.error("dispatcher: error while setting r-uri domain with: \(uri)")
                return false
            }
            m.setRequestURI(Array(text.utf8))
            return true
        }
    }

    // MARK: Failover (ds_update_dst)

    /// `ds_next_dst` / `ds_set_dst` (next: drop the current record first). 1, -1.
    func updateDst(_ ctx: RouteContext, next: Bool, mode: SetOp) -> Int {
        if next && (!settings.failover || settings.xavpDst.isEmpty) {
            ctx.logger.warning("dispatcher: failover support disabled")
            return -1
        }
        let name = settings.xavpDst
        while true {
            guard var items = ctx.xavps[name], !items.isEmpty else { return -1 }
            if next {
                items.removeFirst()
                ctx.xavps[name] = items.isEmpty ? nil : items
                guard !items.isEmpty else { return -1 }
            }
            let rec = items[0]
            guard case .string(let uri)? = rec["uri"]?.first else {
                ctx.logger.warning("dispatcher: no xavp uri field in next destination record")
                return -1
            }
            guard push(ctx, uri, mode) else { return -1 }
            var sock = "", sockname = ""
            if case .string(let s)? = rec["sock"]?.first { sock = s }
            if case .string(let s)? = rec["sockname"]?.first { sockname = s }
            forceSocket(ctx, socket: sock, name: sockname)
            guard case .string(let duid)? = rec["dstid"]?.first, next else { return 1 }
            switch loadReplace(ctx, duid) {
            case 0: return 1
            case -2:
                ctx.logger.error("dispatcher: cannot update load with \(duid), skipping dst.")
                continue
            default:
                ctx.logger.error("dispatcher: cannot update load distribution")
                return -1
            }
        }
    }

    // MARK: Call load

    func callID(_ ctx: RouteContext) -> String? { ctx.message.flatMap { m in m.callID.map { m.string($0) } } }

    /// `ds_load_replace`: the call moves to destination `duid` of its set. 0, -1, -2 (no such duid).
    func loadReplace(_ ctx: RouteContext, _ duid: String) -> Int {
        guard !duid.isEmpty, let cid = callID(ctx) else { return -1 }
        let now = clock.unixSeconds, s = settings
        return state.withLock { st in
            guard let cell = st.load[cid] else {
                ctx.logger.error("dispatcher: cannot find load for (\(cid))")
                return -1
            }
            guard var set = st.sets[cell.set] else {
                ctx.logger.error("dispatcher: destination set [\(cell.set)] not found")
                return -1
            }
            let old = set.dests.firstIndex { $0.attrs.duid.lowercased() == cell.duid.lowercased() }
            guard let new = set.dests.firstIndex(where: { $0.attrs.duid.lowercased() == duid.lowercased() }) else {
                ctx.logger.error("dispatcher: new destination address not found for [\(cell.set), \(duid)]")
                return -2
            }
            st.load[cid] = nil
            if let old, set.dests[old].dload > 0 { set.dests[old].dload -= 1 }
            st.load[cid] = DSLoadCell(set: cell.set, duid: set.dests[new].attrs.duid, confirmed: false,
                                      expire: now + s.hashExpire, initExpire: now + s.hashInitExpire)
            set.dests[new].dload += 1
            st.sets[cell.set] = set
            return 0
        }
    }

    /// `ds_load_remove`: the call's load is released. 0, -1 (no such call).
    func loadRemove(_ ctx: RouteContext) -> Int {
        guard let cid = callID(ctx) else { return -1 }
        return state.withLock { st in
            guard let cell = st.load[cid] else {
                ctx.logger.error("dispatcher: cannot find load for (\(cid))")
                return -1
            }
            guard Self.decrement(&st, cell) else { return -1 }
            st.load[cid] = nil
            return 0
        }
    }

    /// A call's dialog ended or failed (dialog loaded): its load, if still counted, is released.
    func releaseCall(_ callID: String) {
        state.withLock { st in
            guard let cell = st.load.removeValue(forKey: callID) else { return }
            _ = Self.decrement(&st, cell)
        }
    }

    static func decrement(_ st: inout State, _ cell: DSLoadCell) -> Bool {
        guard var set = st.sets[cell.set], let i = set.dests.firstIndex(where: { $0.attrs.duid.lowercased() == cell.duid.lowercased() })
        else { return false }
        if set.dests[i].dload > 0 { set.dests[i].dload -= 1 }
        st.sets[cell.set] = set
        return true
    }

    /// `ds_load_update` (KEMI returns Kamailio's C value: 0, -1).
    func loadUpdate(_ ctx: RouteContext) -> Int {
        guard let m = ctx.message, m.callID != nil, let cseq = m.cseq else {
            ctx.logger.error("dispatcher: cannot parse cseq and callid headers")
            return -1
        }
        if m.isRequest {
            if m.method == .bye || m.method == .cancel { _ = loadRemove(ctx) }
            return 0
        }
        if cseq.method == .invite && m.statusCode / 100 == 2, let cid = callID(ctx) {
            state.withLock { st in st.load[cid]?.confirmed = true }
        }
        return 0
    }

    /// `ds_load_unset` (KEMI: 0, -1).
    func loadUnset(_ ctx: RouteContext) -> Int {
        if settings.xavpDst.isEmpty { return 0 }
        if let m = ctx.message, m.isRequest, m.method == .invite {
            let has = ctx.xavps[settings.xavpDst]?.first?["dstid"] != nil
            if !has { return 0 }
        }
        return loadRemove(ctx)
    }

    /// `ds_ht_timer`: calls past `ds_hash_expire` (or unconfirmed past `ds_hash_initexpire`) release their load.
    func expireLoad(now: Int) {
        state.withLock { st in
            guard now - st.lastHashCheck >= settings.hashCheckInterval else { return }
            st.lastHashCheck = now
            for (cid, cell) in st.load where cell.expire < now || (!cell.confirmed && cell.initExpire < now) {
                _ = Self.decrement(&st, cell)
                st.load[cid] = nil
            }
        }
    }

    var activeCalls: Int { state.withLock { $0.load.count } }

    // MARK: States

    /// `ds_update_state`: thresholds, trying → inactive after `ds_probing_threshold` failures,
    /// inactive → active after `ds_inactive_threshold` successes. The event (dst-down / dst-up) to run,
    /// or nil; `found` false when the set or URI is unknown.
    func updateState(group: Int, uri: String, state newState: Int, rctx: DSReplyContext) -> (found: Bool, event: DSEvent?) {
        let s = settings
        return state.withLock { st in
            guard var set = st.sets[group] else {
                logger.error("dispatcher: destination set [\(group)] not found")
                return (false, nil)
            }
            guard let i = set.dests.firstIndex(where: { $0.uri.count == uri.count && $0.uri.lowercased() == uri.lowercased() })
            else { return (false, nil) }
            var d = set.dests[i]
            let old = d.flags
            var state = newState
            d.flags &= ~DS.statesAll
            let initState = state
            if state & DS.trying != 0 && old & DS.inactive != 0 {
                state &= ~DS.trying
                state |= DS.inactive
            }
            if state & DS.disabled != 0 { d.flags |= DS.disabled } else { d.flags |= state }
            if state & DS.trying != 0 {
                d.messageCount += 1
                if d.messageCount >= s.probingThreshold {
                    d.flags &= ~DS.trying
                    d.flags |= DS.inactive
                    d.messageCount = 0
                }
            } else if initState & DS.trying == 0 && old & DS.inactive != 0 {
                d.messageCount += 1
                if d.messageCount < s.inactiveThreshold {
                    d.flags |= DS.inactive
                    if old & DS.probing != 0 { d.flags |= DS.probing }
                } else {
                    d.messageCount = 0
                }
            } else {
                d.messageCount = 0
            }
            set.dests[i] = d
            var event: DSEvent? = nil
            if !DS.skip(old) && DS.skip(d.flags) {
                event = DSEvent(name: "dispatcher:dst-down", uri: d.uri, setid: group, rctx: rctx)
            } else if DS.skip(old) && !DS.skip(d.flags) {
                event = DSEvent(name: "dispatcher:dst-up", uri: d.uri, setid: group, rctx: rctx)
            }
            if d.attrs.rweight > 0 && DS.skip(old) != DS.skip(d.flags) { set.initRelativeWeights() }
            st.sets[group] = set
            return (true, event)
        }
    }

    /// `ds_reinit_state` / `ds_reinit_duid_state` / `ds_reinit_state_all` (RPC set_state): no
    /// thresholds, no event. False when the set or destination is unknown.
    func reinitState(group: Int, match: (DSDestination) -> Bool, state newState: Int, all: Bool) -> Bool {
        state.withLock { st in
            guard var set = st.sets[group] else { return false }
            var found = false
            var changed = false
            for i in set.dests.indices where all || (!found && match(set.dests[i])) {
                let old = set.dests[i].flags
                set.dests[i].flags = (old & ~DS.statesAll) | newState
                if DS.skip(old) != DS.skip(set.dests[i].flags) && set.dests[i].attrs.rweight > 0 { changed = true }
                found = true
            }
            if changed { set.initRelativeWeights() }
            st.sets[group] = set
            return found || all
        }
    }

    /// The flags of a destination (`ds_get_state`), 0 when unknown.
    func flags(group: Int, uri: String) -> Int {
        state.withLock { st in
            st.sets[group]?.dests.first { $0.uri.lowercased() == uri.lowercased() }?.flags ?? 0
        }
    }

    // MARK: Membership

    /// `ds_is_addr_from_list`: the source (or `uri`'s address) is a destination of `group` (-1: any).
    /// Sets `setid_pvname` (any group) and `attrs_pvname` on a match.
    func isFromList(_ ctx: RouteContext, group: Int, uri: String?, mode: Int) -> Int {
        var ip: String
        var port: Int
        var proto: SIPTransportProtocol?
        if let uri, !uri.isEmpty {
            guard let u = SIPURI(uri) else {
                ctx.logger.error("dispatcher: bad uri [\(uri)]")
                return -1
            }
            var host = u.host
            if host.hasPrefix("[") { host = String(host.dropFirst().dropLast()) }
            port = u.port ?? 0
            switch u.transport {
            case "udp"?: proto = .udp
            case "tcp"?: proto = .tcp
            case "tls"?: proto = .tls
            case "ws"?: proto = .ws
            case "wss"?: proto = .wss
            default: proto = nil
            }
            if SocketAddress(ip: host, port: 0) != nil {
                ip = host
            } else {
                guard let a = ctx.services.resolve(host: host, port: u.port, proto: proto ?? .udp).first else {
                    ctx.logger.error("dispatcher: could not resolve \(host)")
                    return -1
                }
                ip = a.ip
            }
        } else {
            ip = ctx.received.source.ip
            port = Int(ctx.received.source.port)
            proto = ctx.received.proto
        }
        let ipNorm = DispatcherStore.normalise(ip)
        let matched: (Int, String?)? = state.withLock { st in
            let ids = group == -1 ? st.sets.keys.sorted() : [group]
            for id in ids {
                guard let set = st.sets[id] else { continue }
                for d in set.dests {
                    if d.flags & DS.noDNS != 0 { continue }
                    let dip: String
                    if let a = d.ip { dip = a } else { continue }
                    guard DispatcherStore.normalise(dip) == ipNorm else { continue }
                    if mode & 1 == 0 && d.port != 0 && port != d.port { continue }
                    if mode & 2 == 0 && proto != d.proto { continue }
                    if mode & 4 != 0 && d.isSkipped { continue }
                    return (id, d.attrs.body)
                }
            }
            return nil
        }
        // names resolved now: with ds_dns_mode 2 (Kamailio's DS_DNS_MODE_ALWAYS), or when they were
        // not resolved at load (no resolver then); otherwise their address from the load is used
        var result = matched
        let always = settings.dnsMode & DS.dnsAlways != 0
        if result == nil {
            let named: [(Int, DSDestination)] = state.withLock { st in
                (group == -1 ? st.sets.keys.sorted() : [group]).flatMap { id in
                    (st.sets[id]?.dests ?? []).filter {
                        $0.flags & DS.noDNS == 0 && ($0.ip == nil || (always && SocketAddress(ip: $0.host, port: 0) == nil))
                    }.map { (id, $0) }
                }
            }
            for (id, d) in named {
                let srv = settings.dnsMode & DS.dnsQSRV != 0 && d.port == 0
                let addrs = ctx.services.resolve(host: d.host, port: srv ? nil : (d.port == 0 ? 5060 : d.port), proto: d.proto ?? .udp)
                guard addrs.contains(where: { DispatcherStore.normalise($0.ip) == ipNorm }) else { continue }
                if mode & 1 == 0 && d.port != 0 && port != d.port { continue }
                if mode & 2 == 0 && proto != d.proto { continue }
                if mode & 4 != 0 && d.isSkipped { continue }
                result = (id, d.attrs.body)
                break
            }
        }
        guard let (id, attrs) = result else { return -1 }
        if group == -1, let name = settings.setidPVName, let pv = PseudoVariable.parse(name) {
            if !PVEngine.set(ctx, pv, .int(id)) { return -2 }
        }
        if let name = settings.attrsPVName, let attrs, !attrs.isEmpty, let pv = PseudoVariable.parse(name) {
            if !PVEngine.set(ctx, pv, .string(attrs)) { return -3 }
        }
        return 1
    }

    static func normalise(_ ip: String) -> String {
        SocketAddress(ip: ip, port: 0)?.ip ?? ip.lowercased()
    }

    /// `ds_is_active_uri`: the set has an active destination (equal to `uri` when given).
    func isActive(group: Int, uri: String?) -> Int {
        state.withLock { st in
            guard let set = st.sets[group] else { return -1 }
            for d in set.dests where !d.isSkipped {
                if uri == nil || uri!.isEmpty || d.uri == uri! { return 1 }
            }
            return -1
        }
    }

    func exists(_ group: Int) -> Bool { state.withLock { $0.sets[group] != nil } }

    // MARK: RPC edits

    /// `dispatcher.add` / `dispatcher.remove`: the sets rebuilt with one destination more or less,
    /// runtime data kept.
    func edit(add: DSList.Entry?, remove: (group: Int, uri: String)?) throws(DSListError) {
        var newDest = try add.map { e throws(DSListError) in try DSList.destination(e) }
        if let add, let d = newDest {
            // resolved as a list line (Kamailio's add_dest2list): a name that does not resolve is refused
            let resolved = try resolveNames([add.setid: DSSet(id: add.setid, dests: [d])])
            guard let r = resolved[add.setid]?.dests.first else {
                throw DSListError(origin: add.origin, message: "could not resolve \(d.host)")
            }
            newDest = r
        }
        let removeURI: String?
        if let remove {
            let u = SIPURI(remove.uri) != nil ? remove.uri : "sip:" + remove.uri
            removeURI = u
        } else {
            removeURI = nil
        }
        state.withLock { st in
            var all: [(Int, DSDestination)] = []
            for id in st.sets.keys.sorted() {
                // back to list order: reindex reversed it
                for d in st.sets[id]!.dests.reversed() {
                    if let remove, id == remove.group, d.uri == removeURI { continue }
                    all.append((id, d))
                }
            }
            if let add, let newDest { all.append((add.setid, newDest)) }
            var bySet: [Int: [DSDestination]] = [:]
            for (id, d) in all { bySet[id, default: []].append(d) }
            var sets: [Int: DSSet] = [:]
            for (id, list) in bySet {
                let asc = list.enumerated().sorted { a, b in
                    a.element.priority != b.element.priority ? a.element.priority < b.element.priority : a.offset < b.offset
                }.map(\.element)
                var set = DSSet(id: id, dests: asc.reversed())
                prepare(&set)
                sets[id] = set
            }
            st.sets = sets
        }
    }
}
