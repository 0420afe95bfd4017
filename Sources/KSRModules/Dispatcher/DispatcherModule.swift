import SIPCore
import SIPTransport
import StarlingKEMI
import Logging
import Synchronization

/// `KSR.dispatcher` (REFERENCE §2.16): load balancing and failover over destination sets, with
/// Kamailio 5.6's algorithms, return codes, xavps, probing, events and RPCs.
enum DispatcherModule {
    static func exports(_ runtime: ModuleRuntime) -> [KemiExport] {
        let ds = store(runtime)
        let s = ds.settings
        @Sendable func select(_ ctx: RouteContext, _ set: Int, _ alg: Int, _ limit: Int, _ mode: DispatcherStore.SetOp) -> Int {
            var rs = DispatcherStore.SelectState(setid: set, alg: alg, umode: mode, limit: limit == 0 ? UInt32.max : UInt32(truncatingIfNeeded: limit))
            let r = ds.manageRoutes(ctx, &rs)
            if r < 0 { return r }
            commit(ctx, s, &rs)
            return r
        }
        @Sendable func routes(_ ctx: RouteContext, _ rules: String, _ mode: String, _ limit: Int) -> Int {
            var rs = DispatcherStore.SelectState(setid: 0, alg: 0, umode: .xavp, limit: limit == 0 ? UInt32.max : UInt32(truncatingIfNeeded: limit))
            var vret = -1, gret = -1
            let chars = Array(rules.utf8)
            var i = 0
            while i < chars.count {
                var setid = 0, alg = 0
                while i < chars.count {
                    let c = chars[i]
                    if c < 48 || c > 57 {
                        if c == UInt8(ascii: "=") { i += 1; break }
                        ctx.logger.error("dispatcher: invalid character in [\(rules)] at [\(i)]")
                        return -1
                    }
                    setid = setid * 10 + Int(c - 48); i += 1
                }
                while i < chars.count {
                    let c = chars[i]
                    if c < 48 || c > 57 {
                        if c == UInt8(ascii: ";") { i += 1; break }
                        ctx.logger.error("dispatcher: invalid character in [\(rules)] at [\(i)]")
                        return -1
                    }
                    alg = alg * 10 + Int(c - 48); i += 1
                }
                rs.setid = setid
                rs.alg = alg
                rs.umode = .xavp
                if !rs.emode {
                    switch mode.first {
                    case "0", "d", "D": rs.umode = .dstURI
                    case "1", "r", "R": rs.umode = .rURI
                    case "2", "x", "X": break
                    default:
                        ctx.logger.error("dispatcher: invalid routing mode parameter: \(mode)")
                        return -1
                    }
                }
                vret = ds.manageRoutes(ctx, &rs)
                if vret > 0 { gret = vret }
            }
            if gret < 0 { return vret }
            commit(ctx, s, &rs)
            return gret
        }
        @Sendable func markDst(_ ctx: RouteContext, _ state: Int) -> Int {
            guard s.failover else { ctx.logger.warning("dispatcher: failover support disabled"); return -1 }
            guard !s.xavpDst.isEmpty else { return -1 }
            guard let rec = ctx.xavps[s.xavpDst]?.first, case .int(let group)? = rec["grp"]?.first,
                  case .string(let uri)? = rec["uri"]?.first else { return -1 }
            var rctx = DSReplyContext()
            if let m = ctx.message {
                if m.isRequest { rctx.code = 820 } else {
                    rctx.flags = 1
                    rctx.code = m.statusCode
                    rctx.reason = m.string(m.reasonRange)
                }
            } else {
                rctx.code = 800
            }
            let (found, event) = ds.updateState(group: group, uri: uri, state: state, rctx: rctx)
            if let event { ds.fire(ctx, [event], current: true) }
            return found ? 1 : -1
        }
        @Sendable func markDefault(_ ctx: RouteContext) -> Int {
            markDst(ctx, DS.inactive | (s.probingMode == 1 ? DS.probing : 0))
        }
        let x = "dispatcher"
        return [
            KemiExport(x, "ds_select", [.int, .int], returns: .int) { ctx, a in .int(select(ctx, a.int(0), a.int(1), 0xffff, .xavp)) },
            KemiExport(x, "ds_select_limit", [.int, .int, .int], returns: .int) { ctx, a in .int(select(ctx, a.int(0), a.int(1), a.int(2), .xavp)) },
            KemiExport(x, "ds_select_domain", [.int, .int], returns: .int) { ctx, a in .int(select(ctx, a.int(0), a.int(1), 0xffff, .rURI)) },
            KemiExport(x, "ds_select_domain_limit", [.int, .int, .int], returns: .int) { ctx, a in
                .int(select(ctx, a.int(0), a.int(1), a.int(2), .rURI))
            },
            KemiExport(x, "ds_next_domain", [], returns: .int) { ctx, _ in .int(ds.updateDst(ctx, next: true, mode: .rURI)) },
            KemiExport(x, "ds_set_domain", [], returns: .int) { ctx, _ in .int(ds.updateDst(ctx, next: false, mode: .rURI)) },
            KemiExport(x, "ds_select_dst", [.int, .int], returns: .int) { ctx, a in .int(select(ctx, a.int(0), a.int(1), 0xffff, .dstURI)) },
            KemiExport(x, "ds_select_dst_limit", [.int, .int, .int], returns: .int) { ctx, a in
                .int(select(ctx, a.int(0), a.int(1), a.int(2), .dstURI))
            },
            KemiExport(x, "ds_select_routes", [.str, .str], returns: .int) { ctx, a in .int(routes(ctx, a.str(0), a.str(1), 0)) },
            KemiExport(x, "ds_select_routes_limit", [.str, .str, .int], returns: .int) { ctx, a in
                .int(routes(ctx, a.str(0), a.str(1), a.int(2)))
            },
            KemiExport(x, "ds_next_dst", [], returns: .int) { ctx, _ in .int(ds.updateDst(ctx, next: true, mode: .dstURI)) },
            KemiExport(x, "ds_set_dst", [], returns: .int) { ctx, _ in .int(ds.updateDst(ctx, next: false, mode: .dstURI)) },
            KemiExport(x, "ds_mark_dst", [], returns: .int) { ctx, _ in .int(markDefault(ctx)) },
            KemiExport(x, "ds_mark_dst_state", [.str], returns: .int) { ctx, a in
                let v = a.str(0)
                if v.isEmpty { return .int(markDefault(ctx)) }
                let st = DS.parseStateLetters(v)
                if st < 0 {
                    ctx.logger.warning("dispatcher: failed to parse state flags: \(v)")
                    return .int(-1)
                }
                return .int(markDst(ctx, st))
            },
            KemiExport(x, "ds_is_from_lists", [], returns: .int) { ctx, _ in .int(ds.isFromList(ctx, group: -1, uri: nil, mode: 2)) },
            KemiExport(x, "ds_is_from_list", [.int], returns: .int) { ctx, a in .int(ds.isFromList(ctx, group: a.int(0), uri: nil, mode: 2)) },
            KemiExport(x, "ds_is_from_list_mode", [.int, .int], returns: .int) { ctx, a in
                .int(ds.isFromList(ctx, group: a.int(0), uri: nil, mode: a.int(1)))
            },
            KemiExport(x, "ds_is_from_list_uri", [.int, .int, .str], returns: .int) { ctx, a in
                .int(ds.isFromList(ctx, group: a.int(0), uri: a.str(2), mode: a.int(1)))
            },
            KemiExport(x, "ds_load_update", [], returns: .int, compat: "returns Kamailio's C value: 0 on success") { ctx, _ in
                .int(ds.loadUpdate(ctx))
            },
            KemiExport(x, "ds_load_unset", [], returns: .int, compat: "returns Kamailio's C value: 0 on success") { ctx, _ in
                .int(ds.loadUnset(ctx))
            },
            KemiExport(x, "ds_reload", [], returns: .int) { ctx, _ in
                switch ds.reload(now: ds.clock.unixSeconds) {
                case .success(let events):
                    if s.eventOnLoad { ds.fire(ctx, events, current: false) }
                    return .int(1)
                case .failure(.ongoing):
                    ctx.logger.error("dispatcher: ongoing reload")
                    return .int(-1)
                case .failure(.failed(let why)):
                    ctx.logger.error("dispatcher: error reloading from list: \(why) (the running sets stay)")
                    return .int(-1)
                }
            },
            KemiExport(x, "ds_list_exists", [.int], returns: .int) { _, a in .int(ds.exists(a.int(0)) ? 1 : -1) },
            KemiExport(x, "ds_is_active", [.int], returns: .int) { _, a in .int(ds.isActive(group: a.int(0), uri: nil)) },
            KemiExport(x, "ds_is_active_uri", [.int, .str], returns: .int) { _, a in .int(ds.isActive(group: a.int(0), uri: a.str(1))) },
        ]
    }

    /// The records of a selection into the `_dsdst_` xavp (before the older ones, as Kamailio adds
    /// them at the head) and the count into `_dsctx_`.
    static func commit(_ ctx: RouteContext, _ s: DSSettings, _ rs: inout DispatcherStore.SelectState) {
        if !rs.records.isEmpty {
            ctx.xavps[s.xavpDst] = rs.records + (ctx.xavps[s.xavpDst] ?? [])
            rs.records = []
        }
        if s.xavpCtxMode & 1 == 0 && !s.xavpCtx.isEmpty {
            ctx.xavps[s.xavpCtx, default: []].insert(["cnt": [.int(rs.cnt)]], at: 0)
        }
    }

    /// The module's shared state (made on first use with the runtime's configuration).
    static func store(_ runtime: ModuleRuntime) -> DispatcherStore {
        runtime.state(DispatcherStore.self) {
            DispatcherStore(settings: DSSettings(runtime.config), clock: runtime.clock, resolveHost: runtime.resolveHost)
        }
    }
}

extension DispatcherModule: KSRModule {
    static let name = "dispatcher"
    static let summary = "Load balancing and failover over destination sets (list file or SQLite table), with OPTIONS probing."
    static let dependencies = ["tm"]

    static func nonNegative(_ n: Int) -> String? { n >= 0 ? nil : "expected a non-negative integer" }
    static let listFile = ModuleParameter.optionalStr("dispatcher", "list_file",
        "The destination list file (`setid uri [flags] [priority] [attrs]`); unset: no sets.")
    static let dbURL = ModuleParameter.optionalStr("dispatcher", "db_url",
        "The database of the destinations (`sqlite:///path`): the `dispatcher` table instead of list_file (list_file is then not read, as Kamailio).")
    static let tableName = ModuleParameter.str("dispatcher", "table_name", "dispatcher", "The table of the destinations (db_url).")
    static let setidCol = ModuleParameter.str("dispatcher", "setid_col", "setid", "The set id column.")
    static let destinationCol = ModuleParameter.str("dispatcher", "destination_col", "destination", "The destination URI column.")
    static let flagsCol = ModuleParameter.str("dispatcher", "flags_col", "flags", "The flags column.")
    static let priorityCol = ModuleParameter.str("dispatcher", "priority_col", "priority", "The priority column.")
    static let attrsCol = ModuleParameter.str("dispatcher", "attrs_col", "attrs", "The attributes column.")
    static let flags = ModuleParameter.int("dispatcher", "flags", 0, in: 0...3, "1: hash on the URI user only; 2: failover (keep the other destinations in the xavp).")
    static let forceDst = ModuleParameter.int("dispatcher", "force_dst", 1, in: 0...1, "0: ds_select_dst fails when $du is already set.")
    static let useDefault = ModuleParameter.int("dispatcher", "use_default", 0, in: 0...1, "1: the last destination of a set is used only when all others are down.")
    static let xavpDst = ModuleParameter.str("dispatcher", "xavp_dst", "_dsdst_", "The xavp of the selected destinations (fields uri, grp, attrs, dstid, sock).")
    static let xavpDstMode = ModuleParameter.int("dispatcher", "xavp_dst_mode", 0, in: 0...7, "1: no attrs field; 2: add socket; 4: add sockname.")
    static let xavpCtx = ModuleParameter.str("dispatcher", "xavp_ctx", "_dsctx_", "The xavp of the selection context (field cnt).")
    static let xavpCtxMode = ModuleParameter.int("dispatcher", "xavp_ctx_mode", 0, in: 0...1, "1: do not add the cnt field.")
    static let hashPvar = ModuleParameter.optionalStr("dispatcher", "hash_pvar", "The format hashed by algorithm 7 (pseudo-variables expanded).")
    static let setidPVName = ModuleParameter.optionalStr("dispatcher", "setid_pvname", "The variable ds_is_from_lists sets to the matching set id.")
    static let attrsPVName = ModuleParameter.optionalStr("dispatcher", "attrs_pvname", "The variable ds_is_from_list* set to the matching destination's attrs.")
    static let probingThreshold = ModuleParameter.int("dispatcher", "ds_probing_threshold", 1, "Failed probes (or ds_mark_dst 't') before a destination is inactive.") {
        $0 >= 1 ? nil : "expected 1 or more"
    }
    static let inactiveThreshold = ModuleParameter.int("dispatcher", "ds_inactive_threshold", 1, "Successful probes before an inactive destination is active again.") {
        $0 >= 1 ? nil : "expected 1 or more"
    }
    static let pingMethod = ModuleParameter.str("dispatcher", "ds_ping_method", "OPTIONS", "The method of the probes.") { v in
        !v.isEmpty && v.allSatisfy({ $0.isLetter }) ? nil : "expected a SIP method name"
    }
    static let pingFrom = ModuleParameter.str("dispatcher", "ds_ping_from", "sip:dispatcher@localhost", "The From URI of the probes.") { v in
        SIPURI(v) != nil ? nil : "expected a SIP URI"
    }
    static let pingInterval = ModuleParameter.int("dispatcher", "ds_ping_interval", 0, "Seconds between probes (0: no probing).", check: nonNegative)
    static let pingLatencyStats = ModuleParameter.int("dispatcher", "ds_ping_latency_stats", 0, in: 0...1, "1: keep latency statistics from the probes (algorithm 13, dispatcher.list LATENCY).")
    static let latencyAlpha = ModuleParameter.int("dispatcher", "ds_latency_estimator_alpha", 900, "The latency estimator's weight of the past, in thousandths.")
    static let pingReplyCodes = ModuleParameter.optionalStr("dispatcher", "ds_ping_reply_codes",
        "Probe replies besides 2xx that count as alive: `code=404;class=4`.") { v in
        DSSettings.replyCodes(v) == nil ? "expected \"code=NNN;class=N;...\"" : nil
    }
    static let probingMode = ModuleParameter.int("dispatcher", "ds_probing_mode", 0, in: 0...3,
        "0: probe destinations with the probing flag; 1: all; 2: only inactive probing ones; 3: only flagged, flag kept.")
    static let hashSize = ModuleParameter.int("dispatcher", "ds_hash_size", 0, in: 0...16, "2^N slots of the call-load table (0: no table; algorithm 10 needs it).")
    static let hashExpire = ModuleParameter.int("dispatcher", "ds_hash_expire", 7200, "Seconds a call stays in the call-load table.", check: nonNegative)
    static let hashInitExpire = ModuleParameter.int("dispatcher", "ds_hash_initexpire", 7200, "Seconds an unconfirmed call stays in the call-load table.", check: nonNegative)
    static let hashCheckInterval = ModuleParameter.int("dispatcher", "ds_hash_check_interval", 30, "Seconds between call-load expiry runs.") {
        $0 > 0 ? nil : "expected a positive number of seconds"
    }
    static let outboundProxy = ModuleParameter.optionalStr("dispatcher", "outbound_proxy", "Where the probes are sent (a SIP URI); unset: to the destination.")
    static let eventCallback = ModuleParameter.optionalStr("dispatcher", "event_callback",
        "The Lua function run with \"dispatcher:dst-down\" / \"dispatcher:dst-up\" when a destination changes state.")
    static let reloadDelta = ModuleParameter.int("dispatcher", "reload_delta", 5, "Seconds between two reloads (an earlier one is refused).", check: nonNegative)
    static let pingTimeout = ModuleParameter.int("dispatcher", "ds_ping_timeout", 0,
        "Starling: milliseconds after which an unanswered probe counts as 408 (0: tm's fr_timer, as Kamailio).", check: nonNegative)
    static let eventOnLoad = ModuleParameter.int("dispatcher", "ds_event_on_load", 1, in: 0...1,
        "Starling: 1 runs event_callback for every destination (dst-up or dst-down by its state) at start and after a reload.")

    static let dnsMode = ModuleParameter.int("dispatcher", "ds_dns_mode", 1, in: 0...15,
        "Host names of destinations: 1 resolved at load (a name that does not resolve drops its line), 2 resolved at every ds_is_from_list, 4 as 1 (no periodic update), 8 SRV lookups; flag 16 of a destination skips it.")
    static let loadMode = ModuleParameter.int("dispatcher", "ds_load_mode", 0, in: 0...1,
        "1: a destination whose name does not resolve refuses the whole list (0: that line is skipped with a warning). Lines that do not parse always refuse the list.")

    static let parameters = [listFile.info, dbURL.info, tableName.info, setidCol.info, destinationCol.info, flagsCol.info,
                             priorityCol.info, attrsCol.info, flags.info, forceDst.info, useDefault.info, xavpDst.info, xavpDstMode.info,
                             xavpCtx.info, xavpCtxMode.info, hashPvar.info, setidPVName.info, attrsPVName.info,
                             probingThreshold.info, inactiveThreshold.info, pingMethod.info, pingFrom.info, pingInterval.info,
                             pingLatencyStats.info, latencyAlpha.info, pingReplyCodes.info, probingMode.info, hashSize.info,
                             hashExpire.info, hashInitExpire.info, hashCheckInterval.info, outboundProxy.info, eventCallback.info,
                             reloadDelta.info, pingTimeout.info, eventOnLoad.info, dnsMode.info, loadMode.info]

    static func start(_ runtime: ModuleRuntime) throws(ModuleStartError) {
        let ds = store(runtime)
        let s = ds.settings
        if let hp = s.hashPvar, hp.contains("$"), XLogFormatCheck.invalid(hp) {
            throw ModuleStartError(key: "modparam.dispatcher.hash_pvar", "malformed PV string: \(hp)")
        }
        for (key, name) in [("setid_pvname", s.setidPVName), ("attrs_pvname", s.attrsPVName)] {
            if let name, PseudoVariable.parse(name) == nil {
                throw ModuleStartError(key: "modparam.dispatcher.\(key)", "invalid variable \(name)")
            }
        }
        if DispatcherModule.databaseURL(runtime.config) != nil {
            // Kamailio: with db_url the table is read and list_file is not (the routing stack attaches the table).
            if let path = s.listFile { ds.logger.warning("dispatcher: db_url is set, list_file \(path) is not read") }
        } else if let path = s.listFile {
            do {
                let sets = try ds.readList(path)
                let events = ds.install(sets)
                ds.logger.info("dispatcher: \(sets.count) set(s), \(sets.values.reduce(0) { $0 + $1.dests.count }) destination(s) from \(path)")
                if s.eventOnLoad { ds.announce(runtime, events) }
            } catch {
                throw ModuleStartError(key: "modparam.dispatcher.list_file", error.description)
            }
        }
        // Starling (issue 17; Kamailio 5.6's dispatcher has no dialog hook): with dialog loaded, a
        // call's load is released when its dialog ends or fails, even without ds_load_unset/update.
        if runtime.isLoaded("dialog") {
            DialogModule.store(runtime).onEnd { _, d in ds.releaseCall(d.callID) }
        }
        runtime.addPeriodic { rt in ds.periodic(rt) }
    }

    // MARK: RPC

    static func loaded(_ rt: ModuleRuntime) -> DispatcherStore { store(rt) }

    static let rpcMethods: [ModuleRPCMethod] = [
        ModuleRPCMethod("dispatcher.list", "dispatcher.list [short|full]: {NRSETS, RECORDS: [{SET: {ID, TARGETS: [{DEST: {URI, FLAGS, PRIORITY, ATTRS, LATENCY, RUNTIME}}]}}]}.") { rt, p throws(RPCFault) in
            let ds = store(rt)
            let mode = p.string(0)?.lowercased()
            let sets = ds.snapshot()
            if sets.isEmpty { throw RPCFault(500, "No Destination Sets") }
            return .object(["NRSETS": .int(sets.count), "RECORDS": .array(sets.map { set in
                .object(["SET": .object(["ID": .int(set.id), "TARGETS": .array(set.dests.map { d in
                    var dest: [String: RPCValue] = ["URI": .string(d.uri), "FLAGS": .string(DS.stateText(d.flags)), "PRIORITY": .int(d.priority)]
                    if mode == "full" {
                        dest["HOST"] = .string(d.host)
                        dest["IPADDR"] = .string(d.ip ?? "")
                        dest["PORT"] = .int(d.port)
                        dest["PROTOID"] = .int(Int(d.proto?.rawValue ?? 0))
                        dest["DNSTIME_SEC"] = .int(0)
                        dest["DNSTIME_USEC"] = .int(0)
                    }
                    if mode != "short", let body = d.attrs.body {
                        dest["ATTRS"] = .object(["BODY": .string(body), "DUID": .string(d.attrs.duid), "MAXLOAD": .int(d.attrs.maxload),
                                                 "WEIGHT": .int(d.attrs.weight), "RWEIGHT": .int(d.attrs.rweight),
                                                 "SOCKET": .string(d.attrs.socket), "SOCKNAME": .string(d.attrs.sockname),
                                                 "OBPROXY": .string(d.attrs.obproxy)])
                    }
                    if ds.settings.pingLatencyStats {
                        dest["LATENCY"] = .object(["AVG": .double(d.latency.average), "STD": .double(d.latency.stdev),
                                                   "EST": .double(Double(d.latency.estimate)), "MAX": .int(d.latency.max),
                                                   "TIMEOUT": .int(d.latency.timeout)])
                    }
                    if ds.settings.hashSize > 0 { dest["RUNTIME"] = .object(["DLGLOAD": .int(d.dload)]) }
                    return .object(["DEST": .object(dest)])
                })])])
            })])
        },
        ModuleRPCMethod("dispatcher.reload", "dispatcher.reload: reads the list file (or the db_url table) again (a broken file or row is refused, the running sets stay).") { rt, _ throws(RPCFault) in
            let ds = store(rt)
            switch ds.reload(now: ds.clock.unixSeconds) {
            case .success(let events):
                if ds.settings.eventOnLoad { ds.announce(rt, events) }
                return .string("Ok. Dispatcher successfully reloaded.")
            case .failure(.ongoing): throw RPCFault(500, "Ongoing reload")
            case .failure(.failed(let why)):
                ds.logger.error("dispatcher: reload refused: \(why) (the running sets stay)")
                throw RPCFault(500, "Reload Failed", data: why)
            }
        },
        ModuleRPCMethod("dispatcher.set_state", "dispatcher.set_state STATE GROUP ADDRESS|all: STATE i/a/d/t (ip, ap, tp with probing).") { rt, p throws(RPCFault) in
            try setState(rt, p, duid: false)
        },
        ModuleRPCMethod("dispatcher.set_duid_state", "dispatcher.set_duid_state STATE GROUP DUID|all.") { rt, p throws(RPCFault) in
            try setState(rt, p, duid: true)
        },
        ModuleRPCMethod("dispatcher.ping_active", "dispatcher.ping_active [0|1]: {OldPingState} or {NewPingState, OldPingState}.") { rt, p throws(RPCFault) in
            let ds = store(rt)
            let old = ds.pingActive.load(ordering: .relaxed)
            guard let v = p.string(0), let n = Int(v) else { return .object(["OldPingState": .int(old)]) }
            ds.pingActive.store(n, ordering: .relaxed)
            return .object(["NewPingState": .int(n), "OldPingState": .int(old)])
        },
        ModuleRPCMethod("dispatcher.add", "dispatcher.add GROUP ADDRESS [FLAGS [PRIORITY [ATTRS]]]: adds a destination in memory.") { rt, p throws(RPCFault) in
            let ds = store(rt)
            guard let g = p.string(0).flatMap({ Int($0) }), let uri = p.string(1) else { throw RPCFault(500, "Invalid Parameters") }
            try guardReload(ds)
            let e = DSList.Entry(setid: g, uri: uri, flags: p.string(2).flatMap { Int($0) } ?? 0,
                                 priority: p.string(3).flatMap { Int($0) } ?? 0, attrs: p.count > 4 ? p.string(4) : nil, origin: "dispatcher.add")
            do { try ds.edit(add: e, remove: nil) } catch {
                ds.logger.error("dispatcher: \(error)")
                throw RPCFault(500, "Adding dispatcher dst failed")
            }
            return .string("Ok. Dispatcher destination added.")
        },
        ModuleRPCMethod("dispatcher.remove", "dispatcher.remove GROUP ADDRESS: removes a destination from memory.") { rt, p throws(RPCFault) in
            let ds = store(rt)
            try guardReload(ds)
            guard let g = p.string(0).flatMap({ Int($0) }), let uri = p.string(1) else { throw RPCFault(500, "Invalid Parameters") }
            do { try ds.edit(add: nil, remove: (g, uri)) } catch { throw RPCFault(500, "Removing dispatcher dst failed") }
            return .string("Ok. Dispatcher destination removed.")
        },
        ModuleRPCMethod("dispatcher.hash", "dispatcher.hash NSLOTS VAL1 [VAL2]: {hashid, slot}.") { _, p throws(RPCFault) in
            guard let n = p.string(0).flatMap({ Int($0) }), let v1 = p.string(1) else { throw RPCFault(500, "Invalid Parameters") }
            let h = DS.hash(Array(v1.utf8), p.string(2).map { Array($0.utf8) })
            return .object(["hashid": .int(Int(h)), "slot": .int(n > 0 ? Int(h % UInt32(truncatingIfNeeded: n)) : 0)])
        },
    ]

    static func guardReload(_ ds: DispatcherStore) throws(RPCFault) {
        let now = ds.clock.unixSeconds
        let ok = ds.state.withLock { st -> Bool in
            if st.reloadTime != 0 && st.reloadTime > now - ds.settings.reloadDelta { return false }
            st.reloadTime = now
            return true
        }
        if !ok { throw RPCFault(500, "Ongoing reload") }
    }

    static func setState(_ rt: ModuleRuntime, _ p: RPCParameters, duid: Bool) throws(RPCFault) -> RPCValue {
        guard let state = p.string(0), let group = p.string(1).flatMap({ Int($0) }), let dest = p.string(2) else {
            throw RPCFault(500, "Invalid Parameters")
        }
        guard let c = state.first else { throw RPCFault(500, "Invalid State Parameter") }
        let probing = state.count > 1 && (state.dropFirst().first == "P" || state.dropFirst().first == "p")
        var v = 0
        switch c {
        case "0", "I", "i": v = DS.inactive | (probing ? DS.probing : 0)
        case "1", "A", "a": v = probing ? DS.probing : 0
        case "2", "D", "d": v = DS.disabled
        case "3", "T", "t": v = DS.trying | (probing ? DS.probing : 0)
        default: throw RPCFault(500, "Unknown State Value")
        }
        let ds = store(rt)
        if dest == "all" {
            _ = ds.reinitState(group: group, match: { _ in true }, state: v, all: true)
        } else {
            let ok = ds.reinitState(group: group, match: { d in
                duid ? d.attrs.duid.lowercased() == dest.lowercased() : d.uri.lowercased() == dest.lowercased()
            }, state: v, all: false)
            if !ok { throw RPCFault(500, "State Update Failed") }
        }
        return .string("Ok. Dispatcher state updated.")
    }

    // MARK: Statistics

    static func count(_ rt: ModuleRuntime, _ f: (DSDestination) -> Bool) -> Int {
        store(rt).snapshot().reduce(0) { $0 + $1.dests.filter(f).count }
    }

    static let statistics: [ModuleStatistic] = [
        ModuleStatistic("dispatcher:destinations_active", metric: "starling_dispatcher_destinations_active", .gauge,
                        "Destinations not inactive or disabled.") { count($0) { !$0.isSkipped } },
        ModuleStatistic("dispatcher:destinations_inactive", metric: "starling_dispatcher_destinations_inactive", .gauge,
                        "Destinations inactive or disabled.") { count($0) { $0.isSkipped } },
        ModuleStatistic("dispatcher:probes_sent", metric: "starling_dispatcher_probes_sent_total", .counter,
                        "Probes sent.") { store($0).probesSent.load(ordering: .relaxed) },
        ModuleStatistic("dispatcher:probes_failed", metric: "starling_dispatcher_probes_failed_total", .counter,
                        "Probes answered with a failure, timed out or not sent.") { store($0).probesFailed.load(ordering: .relaxed) },
        ModuleStatistic("dispatcher:calls_loaded", metric: "starling_dispatcher_calls_loaded", .gauge,
                        "Calls in the call-load table.") { store($0).activeCalls },
    ]
}

/// Per-destination metrics for `/metrics` (labels set and uri).
public enum DispatcherMetrics {
    public struct Family: Sendable {
        public let name: String
        public let type: String
        public let help: String
        public let samples: [(labels: String, value: String)]
    }

    /// Empty when the dispatcher has no state in `runtime` (not loaded or no sets).
    public static func families(_ runtime: ModuleRuntime) -> [Family] {
        guard runtime.hasState(DispatcherStore.self) else { return [] }
        let sets = DispatcherModule.store(runtime).snapshot()
        if sets.isEmpty { return [] }
        func label(_ set: DSSet, _ d: DSDestination) -> String {
            var uri = ""
            for c in d.uri {
                if c == "\\" || c == "\"" { uri.append("\\") }
                if c == "\n" { uri += "\\n" } else { uri.append(c) }
            }
            return "{set=\"\(set.id)\",uri=\"\(uri)\"}"
        }
        func rows(_ value: (DSDestination) -> String) -> [(labels: String, value: String)] {
            sets.flatMap { s in s.dests.map { (label(s, $0), value($0)) } }
        }
        return [
            Family(name: "starling_dispatcher_destination_up", type: "gauge", help: "1 when the destination is active (not inactive or disabled).",
                   samples: rows { $0.isSkipped ? "0" : "1" }),
            Family(name: "starling_dispatcher_destination_flags", type: "gauge", help: "The destination's state flags (1 inactive, 2 trying, 4 disabled, 8 probing).",
                   samples: rows { String($0.flags & DS.statesAll) }),
            Family(name: "starling_dispatcher_destination_probes_sent_total", type: "counter", help: "Probes sent to the destination.",
                   samples: rows { String($0.probesSent) }),
            Family(name: "starling_dispatcher_destination_probes_failed_total", type: "counter", help: "Probes to the destination that failed or timed out.",
                   samples: rows { String($0.probesFailed) }),
            Family(name: "starling_dispatcher_destination_latency_milliseconds", type: "gauge", help: "Average probe latency (ds_ping_latency_stats).",
                   samples: rows { String($0.latency.average) }),
            Family(name: "starling_dispatcher_destination_load", type: "gauge", help: "Calls in the call-load table on the destination.",
                   samples: rows { String($0.dload) }),
        ]
    }
}

/// A light check of a hash_pvar format (balanced parentheses after `$`).
enum XLogFormatCheck {
    static func invalid(_ s: String) -> Bool {
        var depth = 0
        for c in s {
            if c == "(" { depth += 1 } else if c == ")" { depth -= 1; if depth < 0 { return true } }
        }
        return depth != 0
    }
}
