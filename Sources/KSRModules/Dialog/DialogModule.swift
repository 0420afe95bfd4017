import SIPCore
import SIPTransport
public import StarlingKEMI
import Logging
import Synchronization

/// `KSR.dialog` (REFERENCE §2.21): dialog tracking, profiles, timeouts (Kamailio's dialog module, 5.6).
public enum DialogModule: KSRModule {
    public static let name = "dialog"
    public static let summary = "Dialog tracking: states, profiles (per-tenant limits), timeouts with BYEs, dialog variables."
    public static let dependencies = ["tm", "rr"]

    static let profilesWithValue = ModuleParameter.list("dialog", "profiles_with_value",
        "Profiles whose members carry a value (names separated by `;`; repeatable).")
    static let profilesNoValue = ModuleParameter.list("dialog", "profiles_no_value",
        "Profiles without value (names separated by `;`; repeatable).")
    static let defaultTimeout = ModuleParameter.int("dialog", "default_timeout", 43200,
        "Seconds a confirmed dialog lives without in-dialog traffic before it times out.") { $0 > 0 ? nil : "expected a positive number of seconds" }
    static let dlgFlag = ModuleParameter.int("dialog", "dlg_flag", -1, in: -1...31,
        "Message flag that creates a dialog when tm creates the INVITE transaction (-1: none; use dlg_manage()).")
    static let sendBye = ModuleParameter.flag("dialog", "send_bye", false,
        "Send BYEs to both sides when a dialog times out (else only with `$dlg_ctx(timeout_bye)`).")
    static let matchMode = ModuleParameter.int("dialog", "dlg_match_mode", 1, in: 0...2,
        "In-dialog matching: 0 by the `did` Route parameter, 1 did then Call-ID and tags, 2 Call-ID and tags only.")
    static let rrParam = ModuleParameter.str("dialog", "rr_param", "did", "Name of the Record-Route parameter with the dialog id.")
    static let hashSize = ModuleParameter.int("dialog", "hash_size", 4096, in: 1...1_048_576, "Entries of the dialog hash table (`h_entry` range).")
    static let eventCallback = ModuleParameter.optionalStr("dialog", "event_callback",
        "Lua function run for dialog:start, dialog:end and dialog:failed (the event name is its argument).")
    static let kaTimer = ModuleParameter.int("dialog", "ka_timer", 0, "Seconds between keepalive checks (0: none).")
    static let kaInterval = ModuleParameter.int("dialog", "ka_interval", 0, "Seconds between keepalive OPTIONS of a dialog (0: none).")
    static let kaFailedLimit = ModuleParameter.int("dialog", "ka_failed_limit", 1, in: 1...100,
        "Keepalives failed in a row (408 or 481) that end the dialog with BYEs.")
    static let dbMode = ModuleParameter.int("dialog", "db_mode", 0, in: 0...3,
        "Dialog persistence in the `dialog`/`dialog_vars` tables: 0 none; 1 every change written at once (a writer thread); "
            + "2 changes every `db_update_period` seconds, deletions at once; 3 all dialogs written at stop only.")
    static let dbUpdatePeriod = ModuleParameter.int("dialog", "db_update_period", 60,
        "db_mode 2: seconds between the writes of changed dialogs.") { $0 > 0 ? nil : "expected a positive number of seconds" }
    static let bridgeController = ModuleParameter.str("dialog", "bridge_controller", "sip:controller@kamailio.org",
        "dlg_bridge: the From URI of the INVITE and the Referred-By of the REFER.")
    static let bridgeContact = ModuleParameter.str("dialog", "bridge_contact", "sip:controller@kamailio.org:5060",
        "dlg_bridge: the Contact URI of the INVITE and the REFER.")
    static let dbURL = ModuleParameter.optionalStr("dialog", "db_url", "Database of the dialog table (SQLite).")

    public static let parameters = [profilesWithValue.info, profilesNoValue.info, defaultTimeout.info, dlgFlag.info,
                                    sendBye.info, matchMode.info, rrParam.info, hashSize.info, eventCallback.info,
                                    kaTimer.info, kaInterval.info, kaFailedLimit.info, dbMode.info, dbURL.info,
                                    dbUpdatePeriod.info, bridgeController.info, bridgeContact.info]

    static func settings(_ c: ModuleConfiguration) -> DialogSettings {
        var s = DialogSettings()
        func names(_ l: [String]) -> Set<String> {
            Set(l.flatMap { $0.split(separator: ";").map { String($0).trimmingSpacesAndTabs() } }.filter { !$0.isEmpty })
        }
        s.profilesWithValue = names(c[profilesWithValue])
        s.profilesNoValue = names(c[profilesNoValue])
        s.defaultTimeout = c[defaultTimeout]
        s.dlgFlag = c[dlgFlag]
        s.sendBye = c[sendBye]
        s.matchMode = c[matchMode]
        s.rrParam = c[rrParam]
        s.hashSize = UInt32(c[hashSize])
        s.eventCallback = c[eventCallback].flatMap { $0.isEmpty ? nil : $0 }
        s.kaTimer = c[kaTimer]
        s.kaInterval = c[kaInterval]
        s.kaFailedLimit = c[kaFailedLimit]
        s.dbMode = c[dbMode]
        s.dbUpdatePeriod = c[dbUpdatePeriod]
        s.bridgeController = c[bridgeController]
        s.bridgeContact = c[bridgeContact]
        return s
    }

    /// The process's dialog store (made with the module's settings on first use). Other modules
    /// (acc's CDRs, dispatcher's call load) read it: `DialogModule.store(runtime).profileSize(...)`.
    public static func store(_ runtime: ModuleRuntime) -> DialogStore {
        runtime.state(DialogStore.self) { DialogStore(settings: settings(runtime.config)) }
    }

    /// The store through the worker's cache (pseudo-variables).
    static func store(_ ctx: RouteContext) -> DialogStore? {
        let c = ctx.worker.local(DialogContext.self) { DialogContext() }
        if let s = c.store { return s }
        guard let rt = ctx.runtime else { return nil }
        let s = store(rt)
        c.store = s
        return s
    }

    public static func start(_ runtime: ModuleRuntime) throws(ModuleStartError) {
        let s = store(runtime)
        for p in s.settings.profilesWithValue where s.settings.profilesNoValue.contains(p) {
            throw ModuleStartError(key: "modparam.dialog.profiles_no_value", "profile '\(p)' is declared with and without value")
        }
        if s.settings.dbMode != 0 {
            if runtime.config[dbURL] == nil {
                throw ModuleStartError(key: "modparam.dialog.db_url", "db_mode \(s.settings.dbMode) needs db_url (sqlite:///path)")
            }
            runtime.addPeriodic { rt in s.persistenceTimer(now: rt.clock.unixSeconds) }
        }
        runtime.tm.hooks.onCreated { ctx, cell in DialogLogic.transactionCreated(s, ctx, cell) }
        runtime.tm.hooks.onRouteFinished { ctx in DialogLogic.routeFinished(s, ctx) }
        runtime.tm.hooks.onFreed { ctx, cell in DialogLogic.transactionFreed(s, ctx, cell) }
        runtime.rrCallbacks.add { ctx in
            guard let m = ctx.message, m.isRequest, m.toTag != nil else { return }
            DialogLogic.matchRequest(s, ctx, viaRR: true)
        }
        runtime.addPeriodic { rt in DialogLogic.timer(s, rt) }
    }

    // MARK: Exports

    public static func exports(_ runtime: ModuleRuntime) -> [KemiExport] {
        let s = store(runtime)
        typealias L = DialogLogic
        @Sendable func profile(_ ctx: RouteContext, _ name: String?) -> Bool? {
            guard let name, !name.isEmpty else {
                ctx.logger.error("dialog: invalid profile identifier")
                return nil
            }
            guard let hasValue = s.profileKind(name) else {
                ctx.logger.critical("dialog: profile <\(name)> not defined")
                return nil
            }
            return hasValue
        }
        @Sendable func setProfile(_ ctx: RouteContext, _ name: String?, _ value: String?) -> Int {
            guard let hasValue = profile(ctx, name), let name else { return -1 }
            if hasValue && (value ?? "").isEmpty {
                ctx.logger.error("dialog: invalid value parameter for profile \(name)")
                return -1
            }
            let link = ProfileLink(name: name, value: hasValue ? value ?? "" : "")
            if let id = L.current(s, ctx) {
                return s.link(id, link) ? 1 : -1
            }
            guard ctx.routeType == .request else {
                ctx.logger.error("dialog: set_dlg_profile: no dialog for the message (dialog not yet created)")
                return -1
            }
            L.context(ctx).pendingProfiles.append(link)
            return 1
        }
        @Sendable func unsetProfile(_ ctx: RouteContext, _ name: String?, _ value: String?) -> Int {
            guard let hasValue = profile(ctx, name), let name else { return -1 }
            if hasValue && (value ?? "").isEmpty {
                ctx.logger.error("dialog: invalid value parameter")
                return -1
            }
            // Kamailio 5.6's unset_dlg_profile refuses the request route (branch, reply, failure routes
            // only); checked with Kamailio itself: -1 there, 1 in a branch route.
            guard ctx.routeType != .request else {
                ctx.logger.error("dialog: dialog delete profile cannot be used in request route")
                return -1
            }
            guard let id = L.current(s, ctx) else {
                ctx.logger.error("dialog: unset_dlg_profile: dialog was not yet created")
                return -1
            }
            return s.unlink(id, ProfileLink(name: name, value: hasValue ? value ?? "" : "")) ? 1 : -1
        }
        @Sendable func inProfile(_ ctx: RouteContext, _ name: String?, _ value: String?) -> Int {
            guard let hasValue = profile(ctx, name), let name else { return -1 }
            if hasValue && (value ?? "").isEmpty {
                ctx.logger.error("dialog: invalid value parameter")
                return -1
            }
            guard let id = L.current(s, ctx) else { return -1 }
            return s.isIn(id, name, value: hasValue ? value : nil) ? 1 : -1
        }
        @Sendable func profileSize(_ ctx: RouteContext, _ name: String?, _ value: String?, _ dst: String?) -> Int {
            guard let hasValue = profile(ctx, name), let name else { return -1 }
            if hasValue, let value, value.isEmpty { return -1 }
            guard let dst, let pv = PseudoVariable.parse(dst) else {
                ctx.logger.error("dialog: get_profile_size: invalid result variable '\(dst ?? "")'")
                return -1
            }
            let n = s.profileSize(name, value: hasValue ? value : nil) ?? 0
            guard PVEngine.set(ctx, pv, .int(n)) else {
                ctx.logger.error("dialog: setting profile PV failed")
                return -1
            }
            return 1
        }
        @Sendable func variable(_ ctx: RouteContext, _ name: String) -> String? {
            if let d = L.context(ctx).ended, L.context(ctx).dialog == d.id { return d.variable(name) }
            if let id = L.current(s, ctx) { return s.dialog(id)?.variable(name) }
            return L.context(ctx).pendingVars.last { $0.0 == name }?.1 ?? nil
        }
        @Sendable func setVariable(_ ctx: RouteContext, _ name: String, _ value: String?) -> Int {
            if let id = L.current(s, ctx) {
                s.update(id) { $0.setVariable(name, value) }
            } else {
                L.context(ctx).pendingVars.append((name, value))
            }
            return 1
        }
        @Sendable func flag(_ ctx: RouteContext, _ f: Int, _ op: Int) -> Int {
            guard f >= 0 && f < 32 else { return -1 }
            let bit = UInt32(1) << UInt32(f)
            if let id = L.current(s, ctx) {
                return s.update(id) { d -> Int in
                    switch op {
                    case 0: d.sflags |= bit; return 1
                    case 1: d.sflags &= ~bit; return 1
                    default: return d.sflags & bit != 0 ? 1 : -1
                    }
                } ?? -1
            }
            let c = L.context(ctx)
            switch op {
            case 0: c.flags |= bit; return 1
            case 1: c.flags &= ~bit; return 1
            default: return c.flags & bit != 0 ? 1 : -1
            }
        }
        @Sendable func property(_ ctx: RouteContext, _ p: String?, set: Bool) -> Int {
            let bit: UInt32
            switch p ?? "" {
            case "ka-src": bit = dlgIFlagKaSrc
            case "ka-dst": bit = dlgIFlagKaDst
            case "timeout-noreset": bit = dlgIFlagTimerNoReset
            default:
                ctx.logger.error("dialog: unknown property value '\(p ?? "")'")
                return -1
            }
            if let id = L.current(s, ctx) {
                s.update(id) { d in if set { d.iflags |= bit } else { d.iflags &= ~bit } }
            } else {
                let c = L.context(ctx)
                if set { c.iflags |= bit } else { c.iflags &= ~bit }
            }
            return 1
        }
        @Sendable func setTimeout(_ ctx: RouteContext, _ id: DialogID?, _ to: Int) -> Int {
            guard let id, to >= 0 else { return -1 }
            let now = ctx.runtime?.clock.unixSeconds ?? 0
            let found: Bool? = s.update(id) { (d: inout Dialog) -> Bool in
                d.timeout = to
                if d.state.isConfirmed { d.timeoutAt = now + to }
                return true
            }
            return found != nil ? 1 : -1
        }
        @Sendable func loadFromDatabase(_ ctx: RouteContext, callID: String?) -> KemiResult {
            let (r, n) = s.loadFromDatabase(callID: callID, now: ctx.runtime?.clock.unixSeconds ?? 0, logger: ctx.logger)
            if n > 0 { ctx.logger.info("dialog: \(n) dialogs loaded from the database\(callID.map { " (Call-ID \($0))" } ?? "")") }
            return .int(r)
        }
        return [
            KemiExport("dialog", "dlg_manage", [], returns: .int) { ctx, _ in .int(L.manage(s, ctx)) },
            KemiExport("dialog", "dlg_bye", [.str], returns: .int) { ctx, args in
                guard let id = L.context(ctx).dialog ?? L.current(s, ctx) else { return .int(-1) }
                let side = (args.string(0) ?? "").lowercased()
                return .int(L.terminate(s, ctx, id, side: side == "caller" ? 1 : side == "callee" ? 2 : 0) ? 1 : -1)
            },
            KemiExport("dialog", "is_known_dlg", [], returns: .int) { ctx, _ in .int(L.current(s, ctx) != nil ? 1 : -1) },
            KemiExport("dialog", "dlg_set_timeout", [.int], returns: .int) { ctx, args in
                let to = args.int(0)
                guard let id = L.current(s, ctx) else {
                    // Before dlg_manage: the dialog takes it when it is created.
                    if ctx.message?.toTag == nil && ctx.routeType == .request { L.context(ctx).timeout = to; return .int(1) }
                    return .int(-1)
                }
                return .int(setTimeout(ctx, id, to))
            },
            KemiExport("dialog", "dlg_set_timeout_id", [.int, .int, .int], returns: .int) { ctx, args in
                let id = DialogID(entry: UInt32(truncatingIfNeeded: args.int(1)), id: UInt32(truncatingIfNeeded: args.int(2)))
                return .int(s.dialog(id) == nil ? -1 : setTimeout(ctx, id, args.int(0)))
            },
            KemiExport("dialog", "dlg_set_property", [.str], returns: .int) { ctx, args in .int(property(ctx, args.string(0), set: true)) },
            KemiExport("dialog", "dlg_reset_property", [.str], returns: .int) { ctx, args in .int(property(ctx, args.string(0), set: false)) },
            KemiExport("dialog", "dlg_get", [.str, .str, .str], returns: .int) { ctx, args in
                guard let c = args.string(0), !c.isEmpty, let f = args.string(1), !f.isEmpty, let t = args.string(2), !t.isEmpty else {
                    ctx.logger.error("dialog: dlg_get: invalid Call-ID, From tag or To tag parameter")
                    return .int(-1)
                }
                guard let (id, up) = s.find(callID: c, fromTag: f, toTag: t) else { return .int(-1) }
                let dc = L.context(ctx)
                dc.dialog = id
                dc.dir = up ? 2 : 1
                return .int(1)
            },
            KemiExport("dialog", "set_dlg_profile_static", [.str], returns: .int) { ctx, args in .int(setProfile(ctx, args.string(0), nil)) },
            KemiExport("dialog", "set_dlg_profile", [.str, .str], returns: .int) { ctx, args in .int(setProfile(ctx, args.string(0), args.string(1))) },
            KemiExport("dialog", "unset_dlg_profile_static", [.str], returns: .int) { ctx, args in .int(unsetProfile(ctx, args.string(0), nil)) },
            KemiExport("dialog", "unset_dlg_profile", [.str, .str], returns: .int) { ctx, args in .int(unsetProfile(ctx, args.string(0), args.string(1))) },
            KemiExport("dialog", "is_in_profile_static", [.str], returns: .int) { ctx, args in .int(inProfile(ctx, args.string(0), nil)) },
            KemiExport("dialog", "is_in_profile", [.str, .str], returns: .int) { ctx, args in .int(inProfile(ctx, args.string(0), args.string(1))) },
            KemiExport("dialog", "get_profile_size_static", [.str, .str], returns: .int) { ctx, args in
                .int(profileSize(ctx, args.string(0), nil, args.string(1)))
            },
            KemiExport("dialog", "get_profile_size", [.str, .str, .str], returns: .int) { ctx, args in
                .int(profileSize(ctx, args.string(0), args.string(1), args.string(2)))
            },
            KemiExport("dialog", "dlg_setflag", [.int], returns: .int) { ctx, args in .int(flag(ctx, args.int(0), 0)) },
            KemiExport("dialog", "dlg_resetflag", [.int], returns: .int) { ctx, args in .int(flag(ctx, args.int(0), 1)) },
            KemiExport("dialog", "dlg_isflagset", [.int], returns: .int) { ctx, args in .int(flag(ctx, args.int(0), 2)) },
            KemiExport("dialog", "dlg_db_load_callid", [.str], returns: .int) { ctx, args in
                // Kamailio queries without a filter when the Call-ID is empty.
                let c = args.string(0) ?? ""
                return loadFromDatabase(ctx, callID: c.isEmpty ? nil : c)
            },
            KemiExport("dialog", "dlg_db_load_extra", [], returns: .int) { ctx, _ in loadFromDatabase(ctx, callID: nil) },
            KemiExport("dialog", "var_sets", [.str, .str], returns: .int) { ctx, args in
                guard let n = args.string(0), !n.isEmpty else { return .int(-1) }
                return .int(setVariable(ctx, n, args.string(1) ?? ""))
            },
            KemiExport("dialog", "var_get", [.str], returns: .xval) { ctx, args in
                guard let n = args.string(0), let v = variable(ctx, n) else { return .null }
                return .string(v)
            },
            KemiExport("dialog", "var_gete", [.str], returns: .xval) { ctx, args in
                .string(args.string(0).flatMap { variable(ctx, $0) } ?? "")
            },
            KemiExport("dialog", "var_getw", [.str], returns: .xval) { ctx, args in
                .string(args.string(0).flatMap { variable(ctx, $0) } ?? "<null>")
            },
            KemiExport("dialog", "var_rm", [.str], returns: .int) { ctx, args in
                guard let n = args.string(0), !n.isEmpty else { return .int(-1) }
                return .int(setVariable(ctx, n, nil))
            },
            KemiExport("dialog", "var_is_null", [.str], returns: .int) { ctx, args in
                .int(args.string(0).flatMap { variable(ctx, $0) } == nil ? 1 : -1)
            },
            KemiExport("dialog", "dlg_bridge", [.str, .str, .str], returns: .int) { ctx, args in
                .int(DialogBridge.bridge(s, ctx, from: args.string(0), to: args.string(1), outboundProxy: args.string(2)))
            },
        ]
    }

    // MARK: Pseudo-variables

    /// `$dlg(attr)`: the current dialog's attributes (null when there is none).
    static func pvDialog(_ ctx: RouteContext, _ attr: String) -> KemiValue {
        guard let s = store(ctx) else { return .null }
        let d: Dialog
        if let e = DialogLogic.context(ctx).ended, DialogLogic.context(ctx).dialog == e.id { d = e }
        else if let id = DialogLogic.current(s, ctx), let x = s.dialog(id) { d = x }
        else { return .null }
        switch attr {
        case "h_id": return .int(Int(d.id.id))
        case "h_entry": return .int(Int(d.id.entry))
        case "ref": return .int(1)
        case "state": return .int(d.state.rawValue)
        case "lifetime": return .int(d.timeout)
        case "dflags": return .int(Int(d.dflags))
        case "sflags": return .int(Int(d.sflags))
        case "iflags": return .int(Int(d.iflags))
        case "start_ts": return .int(d.machine.startTS)
        case "init_ts": return .int(d.machine.initTS)
        case "end_ts": return .int(d.machine.endTS)
        case "callid": return .string(d.callID)
        case "from_uri": return .string(d.fromURI)
        case "from_tag": return .string(d.fromTag)
        case "to_uri": return .string(d.toURI)
        case "to_tag": return d.toTag.isEmpty ? .null : .string(d.toTag)
        case "from_contact": return .string(d.callerContact)
        case "to_contact": return d.calleeContact.isEmpty ? .null : .string(d.calleeContact)
        case "from_cseq": return .string(String(d.callerCSeq))
        case "to_cseq": return .string(String(d.calleeCSeq))
        case "from_rs": return d.callerRouteSet.isEmpty ? .null : .string(d.callerRouteSet.map { "<\($0)>" }.joined(separator: ","))
        case "to_rs": return d.calleeRouteSet.isEmpty ? .null : .string(d.calleeRouteSet.map { "<\($0)>" }.joined(separator: ","))
        case "from_bindaddr": return .string("\(d.caller.proto.name):\(d.caller.local.uriHost):\(d.caller.local.port)")
        case "to_bindaddr": return d.callee.map { .string("\($0.proto.name):\($0.local.uriHost):\($0.local.port)") } ?? .null
        default: return .null
        }
    }

    static let dlgAttributes: Set<String> = ["h_id", "h_entry", "ref", "state", "lifetime", "dflags", "sflags", "iflags",
        "start_ts", "init_ts", "end_ts", "callid", "from_uri", "from_tag", "to_uri", "to_tag", "from_contact", "to_contact",
        "from_cseq", "to_cseq", "from_rs", "to_rs", "from_bindaddr", "to_bindaddr"]
    static let ctxAttributes: Set<String> = ["set", "flags", "timeout_bye", "timeout", "on", "dir"]

    /// `$dlg_ctx(attr)`.
    static func pvContext(_ ctx: RouteContext, _ attr: String) -> KemiValue {
        let c = DialogLogic.context(ctx)
        switch attr {
        case "set": return .int(c.dialog != nil ? 1 : 0)
        case "flags": return .int(Int(c.flags))
        case "timeout_bye": return .int(c.timeoutBye ? 1 : 0)
        case "timeout": return .int(c.timeout ?? 0)
        case "on": return .int(c.on ? 1 : 0)
        case "dir": return .int(c.dir)
        default: return .null
        }
    }

    static func pvSetContext(_ ctx: RouteContext, _ attr: String, _ v: KemiValue) -> Bool {
        let c = DialogLogic.context(ctx)
        let n: Int
        switch v {
        case .int(let i): n = i
        case .string(let t): n = Int(t) ?? 0
        case .null: n = 0
        }
        switch attr {
        case "flags": c.flags = UInt32(truncatingIfNeeded: n)
        case "timeout_bye":
            c.timeoutBye = n != 0
            if let s = store(ctx), let id = c.dialog {
                s.update(id) { d in if n != 0 { d.iflags |= dlgIFlagTimeoutBye } else { d.iflags &= ~dlgIFlagTimeoutBye } }
            }
        case "timeout":
            c.timeout = n
            if let s = store(ctx), let id = c.dialog {
                let now = ctx.runtime?.clock.unixSeconds ?? 0
                s.update(id) { (d: inout Dialog) in
                    d.timeout = n
                    if d.state.isConfirmed { d.timeoutAt = now + n }
                }
            }
        case "on": c.on = n != 0
        default: return false
        }
        return true
    }

    /// `$dlg_var(name)`.
    static func pvVariable(_ ctx: RouteContext, _ name: String) -> KemiValue {
        guard let s = store(ctx) else { return .null }
        if let e = DialogLogic.context(ctx).ended, DialogLogic.context(ctx).dialog == e.id {
            return e.variable(name).map { .string($0) } ?? .null
        }
        if let id = DialogLogic.current(s, ctx) { return s.dialog(id)?.variable(name).map { .string($0) } ?? .null }
        return DialogLogic.context(ctx).pendingVars.last { $0.0 == name }?.1.map { .string($0) } ?? .null
    }

    static func pvSetVariable(_ ctx: RouteContext, _ name: String, _ v: KemiValue) -> Bool {
        guard let s = store(ctx) else { return false }
        let value: String?
        switch v {
        case .null: value = nil
        case .int(let i): value = String(i)
        case .string(let t): value = t
        }
        if let id = DialogLogic.current(s, ctx) {
            s.update(id) { $0.setVariable(name, value) }
        } else {
            DialogLogic.context(ctx).pendingVars.append((name, value))
        }
        return true
    }

    // MARK: RPC

    static func rpcDialog(_ d: Dialog, now: Int) -> RPCValue {
        let dur = d.machine.endTS > 0 ? d.machine.endTS - d.machine.startTS : d.machine.startTS > 0 ? now - d.machine.startTS : 0
        func leg(_ tag: String, _ contact: String, _ cseq: Int, _ rs: [String], _ peer: DialogPeer?) -> RPCValue {
            .object(["tag": .string(tag), "contact": .string(contact), "cseq": .string(String(cseq)),
                     "route_set": .string(rs.map { "<\($0)>" }.joined(separator: ",")),
                     "socket": .string(peer.map { "\($0.proto.name):\($0.local.uriHost):\($0.local.port)" } ?? "")])
        }
        let profiles: [RPCValue] = d.profiles.map { p in
            s_hasValue(p) ? .object([p.name: .string(p.value)]) : .string(p.name)
        }
        return .object([
            "h_entry": .int(Int(d.id.entry)), "h_id": .int(Int(d.id.id)), "ref": .int(1),
            "call-id": .string(d.callID), "from_uri": .string(d.fromURI), "to_uri": .string(d.toURI),
            "state": .int(d.state.rawValue), "start_ts": .int(d.machine.startTS), "init_ts": .int(d.machine.initTS),
            "end_ts": .int(d.machine.endTS), "duration": .int(dur),
            "timeout": .int(d.timeoutAt), "lifetime": .int(d.timeout),
            "dflags": .int(Int(d.dflags)), "sflags": .int(Int(d.sflags)), "iflags": .int(Int(d.iflags)),
            "caller": leg(d.fromTag, d.callerContact, d.callerCSeq, d.callerRouteSet, d.caller),
            "callee": leg(d.toTag, d.calleeContact, d.calleeCSeq, d.calleeRouteSet, d.callee),
            "profiles": .array(profiles),
            "variables": .array(d.vars.map { .object([$0.0: .string($0.1)]) }),
        ])
    }

    /// Profiles with a value are printed as `{name: value}` (Kamailio), others as the name.
    private static func s_hasValue(_ p: ProfileLink) -> Bool { !p.value.isEmpty }

    static func rpcList(_ rt: ModuleRuntime, _ params: RPCParameters, context: Bool) -> RPCValue {
        let now = rt.clock.unixSeconds
        return .array(store(rt).all().map { rpcDialog($0, now: now) })
    }

    /// Runs `body` on a worker (BYEs are tm local requests, sent from a worker's context).
    static func onWorker(_ rt: ModuleRuntime, _ body: @escaping @Sendable (RouteContext) -> Void) {
        rt.tm.post { ctx in
            let saved = ctx.state
            ctx.begin(message: nil, received: ctx.received, routeType: .event)
            body(ctx)
            ctx.state = saved
        }
    }

    public static let rpcMethods: [ModuleRPCMethod] = [
        ModuleRPCMethod("dlg.list", "Lists the dialogs.") { rt, params throws(RPCFault) in
            DialogModule.rpcList(rt, params, context: false)
        },
        ModuleRPCMethod("dlg.list_ctx", "Lists the dialogs with their context.") { rt, params throws(RPCFault) in
            DialogModule.rpcList(rt, params, context: true)
        },
        ModuleRPCMethod("dlg.dlg_list", "The dialogs of a Call-ID (and From tag).") { rt, params throws(RPCFault) in
            let callID = try params.string(0, or: "Call-ID missing")
            let ftag = params.string(1)
            let now = rt.clock.unixSeconds
            let list = DialogModule.store(rt).all().filter { $0.callID == callID && (ftag == nil || $0.fromTag == ftag) }
            return .array(list.map { DialogModule.rpcDialog($0, now: now) })
        },
        ModuleRPCMethod("dlg.end_dlg", "Ends a dialog by h_entry and h_id with BYEs to both sides.") { rt, params throws(RPCFault) in
            guard let e = params.string(0).flatMap({ UInt32($0) }), let i = params.string(1).flatMap({ UInt32($0) }) else {
                throw RPCFault(500, "Invalid parameters")
            }
            let id = DialogID(entry: e, id: i)
            let s = DialogModule.store(rt)
            guard s.dialog(id) != nil else { throw RPCFault(404, "Dialog not found") }
            let extra = params.string(2) ?? ""
            DialogModule.onWorker(rt) { ctx in _ = DialogLogic.terminate(s, ctx, id, extraHeaders: extra, withoutMessage: true) }
            return .null
        },
        ModuleRPCMethod("dlg.terminate_dlg", "Ends a dialog by Call-ID, From tag and To tag with BYEs.") { rt, params throws(RPCFault) in
            guard let c = params.string(0), let f = params.string(1), let t = params.string(2) else {
                throw RPCFault(400, "Need a Callid ,from tag ,to tag")
            }
            let s = DialogModule.store(rt)
            guard let (id, _) = s.find(callID: c, fromTag: f, toTag: t) else {
                throw RPCFault(500, "Couldnt find callid in dialog")
            }
            DialogModule.onWorker(rt) { ctx in _ = DialogLogic.terminate(s, ctx, id, withoutMessage: true) }
            return .null
        },
        ModuleRPCMethod("dlg.profile_get_size", "The size of a profile (of one value when given).") { rt, params throws(RPCFault) in
            let name = try params.string(0, or: "profile name missing")
            guard let n = DialogModule.store(rt).profileSize(name, value: params.string(1)) else {
                throw RPCFault(404, "Profile not found: \(name)")
            }
            return .int(n)
        },
        ModuleRPCMethod("dlg.profile_list", "The dialogs of a profile (of one value when given).") { rt, params throws(RPCFault) in
            let name = try params.string(0, or: "profile name missing")
            let s = DialogModule.store(rt)
            guard let hasValue = s.profileKind(name) else { throw RPCFault(404, "Profile not found: \(name)") }
            let value = hasValue ? params.string(1) : nil
            let now = rt.clock.unixSeconds
            // A dialog once per link (Kamailio prints each linker of the profile's hash: a dialog
            // linked twice is listed twice).
            let list = s.all().flatMap { d in
                Array(repeating: d, count: d.profiles.filter { $0.name == name && (value == nil || $0.value == value) }.count)
            }
            return .array(list.map { DialogModule.rpcDialog($0, now: now) })
        },
        ModuleRPCMethod("dlg.stats_active", "Dialogs by state: starting, connecting, answering, ongoing, all.") { rt, params throws(RPCFault) in
            let c = DialogModule.store(rt).counts()
            let (a, b, x, y) = (c[.unconfirmed] ?? 0, c[.early] ?? 0, c[.confirmedNA] ?? 0, c[.confirmed] ?? 0)
            return .object(["starting": .int(a), "connecting": .int(b), "answering": .int(x), "ongoing": .int(y),
                            "all": .int(a + b + x + y)])
        },
    ]

    public static let statistics: [ModuleStatistic] = [
        ModuleStatistic("dialog:active_dialogs", metric: "starling_dialog_active", .gauge,
                        "Dialogs not ended (unconfirmed, early, confirmed).") { rt in DialogModule.store(rt).activeCount },
        ModuleStatistic("dialog:early_dialogs", metric: "starling_dialog_early", .gauge,
                        "Dialogs in the early state.") { rt in DialogModule.store(rt).earlyCount },
        ModuleStatistic("dialog:processed_dialogs", metric: "starling_dialog_processed_total", .counter,
                        "Dialogs that got confirmed.") { rt in DialogModule.store(rt).processed.load(ordering: .relaxed) },
        ModuleStatistic("dialog:expired_dialogs", metric: "starling_dialog_expired_total", .counter,
                        "Dialogs ended by their timeout.") { rt in DialogModule.store(rt).expired.load(ordering: .relaxed) },
        ModuleStatistic("dialog:failed_dialogs", metric: "starling_dialog_failed_total", .counter,
                        "Dialogs that never got confirmed.") { rt in DialogModule.store(rt).failed.load(ordering: .relaxed) },
    ]
}
