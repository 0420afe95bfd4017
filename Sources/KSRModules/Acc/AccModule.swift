import SIPCore
import SIPTransport
public import StarlingKEMI
import Logging
import Synchronization

/// A value of an accounting record column.
public enum AccValue: Sendable, Equatable {
    case text(String)
    case int(Int)
    case double(Double)
    /// Seconds since 1970 (a DATETIME column).
    case time(Double)
    case null
}

/// One accounting record for a table: the columns in order (Kamailio's core ones, then the extras).
public struct AccRecord: Sendable, Equatable {
    public var table: String
    public var columns: [(String, AccValue)]
    public init(table: String, columns: [(String, AccValue)]) {
        self.table = table
        self.columns = columns
    }
    public static func == (a: AccRecord, b: AccRecord) -> Bool {
        a.table == b.table && a.columns.count == b.columns.count
            && zip(a.columns, b.columns).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
    }
    public subscript(_ name: String) -> AccValue? { columns.first { $0.0 == name }?.1 }
}

/// Where acc writes database records (the embedded database implements it; tests use a memory sink).
/// `write` is called on workers: implementations queue and write in batches (`flush`).
public protocol AccountingSink: Sendable {
    func write(_ record: AccRecord)
    func flush()
}

/// Records kept in memory (tests, and `starling test`).
public final class MemoryAccounting: AccountingSink {
    private let rows = Mutex<[AccRecord]>([])
    public init() {}
    public func write(_ record: AccRecord) { rows.withLock { $0.append(record) } }
    public func flush() {}
    public var records: [AccRecord] { rows.withLock { $0 } }
}

/// `[modparam.acc]` and the sink.
public final class AccStore: Sendable {
    struct Settings: Sendable {
        var logFlag = -1
        var logMissedFlag = -1
        var dbFlag = -1
        var dbMissedFlag = -1
        var failedFlag = -1
        var logExtra: [(String, String)] = []
        var dbExtra: [(String, String)] = []
        var cdrExtra: [(String, String)] = []
        var tableAcc = "acc"
        var tableMissed = "missed_calls"
        var cdrEnable = false
        var cdrOnFailed = true
        var cdrExpired = false
        var cdrLogEnable = true
        var cdrsTable = ""
        var cdrStart = "start_time"
        var cdrEnd = "end_time"
        var cdrDuration = "duration"
        var reportCancels = false
        var hasDB = false
    }
    let settings: Settings
    private let sinkBox = Mutex<(any AccountingSink)?>(nil)

    init(_ s: Settings) { settings = s }

    /// Sets the database sink (the server does, when acc's `db_url` names a database).
    public func setSink(_ sink: (any AccountingSink)?) { sinkBox.withLock { $0 = sink } }
    public var sink: (any AccountingSink)? { sinkBox.withLock { $0 } }
}

/// `KSR.acc` (Kamailio 5.6's acc): transaction accounting to the log and the database, missed calls,
/// CDRs from dialogs.
public enum AccModule: KSRModule {
    public static let name = "acc"
    public static let summary = "Accounting: transaction records to the log and to SQLite (acc, missed_calls), CDRs from dialogs."
    public static let dependencies = ["tm"]

    static let logFlag = ModuleParameter.int("acc", "log_flag", -1, in: -1...31, "Flag of transactions accounted to the log.")
    static let logMissedFlag = ModuleParameter.int("acc", "log_missed_flag", -1, in: -1...31, "Flag of missed calls logged.")
    static let dbFlag = ModuleParameter.int("acc", "db_flag", -1, in: -1...31, "Flag of transactions written to the acc table.")
    static let dbMissedFlag = ModuleParameter.int("acc", "db_missed_flag", -1, in: -1...31, "Flag of missed calls written to missed_calls.")
    static let failedFlag = ModuleParameter.int("acc", "failed_transaction_flag", -1, in: -1...31,
                                                "Flag that accounts failed transactions (final reply >= 300) too.")
    static let logExtra = ModuleParameter.optionalStr("acc", "log_extra", "Extra log attributes: `name=$pv;name2=$pv2`.")
    static let dbExtra = ModuleParameter.optionalStr("acc", "db_extra", "Extra columns: `column=$pv;...` (added to the table when missing).")
    static let dbURL = ModuleParameter.optionalStr("acc", "db_url", "Database of the acc tables (`sqlite:///path`).")
    static let tableAcc = ModuleParameter.str("acc", "db_table_acc", "acc", "Table of accounted transactions.")
    static let tableMissed = ModuleParameter.str("acc", "db_table_missed_calls", "missed_calls", "Table of missed calls.")
    static let cdrEnable = ModuleParameter.flag("acc", "cdr_enable", false, "CDRs from dialogs (needs the dialog module).")
    static let cdrLogEnable = ModuleParameter.flag("acc", "cdr_log_enable", true, "CDRs to the log.")
    static let cdrExtra = ModuleParameter.optionalStr("acc", "cdr_extra", "Extra CDR attributes: `name=$pv;...` (e.g. `$dlg_var(x)`).")
    static let cdrsTable = ModuleParameter.str("acc", "cdrs_table", "", "Table of CDRs (empty: CDRs to the log only).")
    static let cdrStartID = ModuleParameter.str("acc", "cdr_start_id", "start_time", "Name of the CDR start time.")
    static let cdrEndID = ModuleParameter.str("acc", "cdr_end_id", "end_time", "Name of the CDR end time.")
    static let cdrDurationID = ModuleParameter.str("acc", "cdr_duration_id", "duration", "Name of the CDR duration.")
    static let cdrOnFailed = ModuleParameter.flag("acc", "cdr_on_failed", true, "A CDR also for a dialog that failed (duration 0).")
    static let cdrExpiredEnable = ModuleParameter.flag("acc", "cdr_expired_dlg_enable", false,
        "A CDR also for a dialog the proxy ended without a message of the call (timeout, dlg.end_dlg).")
    static let reportCancels = ModuleParameter.flag("acc", "report_cancels", false, "Account CANCEL transactions too.")

    public static let parameters = [logFlag.info, logMissedFlag.info, dbFlag.info, dbMissedFlag.info, failedFlag.info,
                                    logExtra.info, dbExtra.info, dbURL.info, tableAcc.info, tableMissed.info, cdrEnable.info,
                                    cdrLogEnable.info, cdrExtra.info, cdrsTable.info, cdrStartID.info, cdrEndID.info,
                                    cdrDurationID.info, cdrOnFailed.info, cdrExpiredEnable.info, reportCancels.info]

    /// `name=$pv;name2=$pv2` → pairs (nil with the bad item when malformed).
    static func parseExtra(_ text: String?) -> Result<[(String, String)], ModuleStartError> {
        guard let text, !text.isEmpty else { return .success([]) }
        var out: [(String, String)] = []
        for item in text.split(separator: ";") {
            let kv = item.split(separator: "=", maxSplits: 1).map { String($0).trimmingSpacesAndTabs() }
            guard kv.count == 2, !kv[0].isEmpty, kv[1].hasPrefix("$"), PseudoVariable.parse(kv[1]) != nil else {
                return .failure(ModuleStartError("bad extra item '\(item)' (expected name=$pv)"))
            }
            out.append((kv[0], kv[1]))
        }
        return .success(out)
    }

    static func settings(_ c: ModuleConfiguration) -> AccStore.Settings {
        var s = AccStore.Settings()
        s.logFlag = c[logFlag]
        s.logMissedFlag = c[logMissedFlag]
        s.dbFlag = c[dbFlag]
        s.dbMissedFlag = c[dbMissedFlag]
        s.failedFlag = c[failedFlag]
        s.logExtra = (try? parseExtra(c[logExtra]).get()) ?? []
        s.dbExtra = (try? parseExtra(c[dbExtra]).get()) ?? []
        s.cdrExtra = (try? parseExtra(c[cdrExtra]).get()) ?? []
        s.tableAcc = c[tableAcc]
        s.tableMissed = c[tableMissed]
        s.cdrEnable = c[cdrEnable]
        s.cdrOnFailed = c[cdrOnFailed]
        s.cdrExpired = c[cdrExpiredEnable]
        s.cdrLogEnable = c[cdrLogEnable]
        s.cdrsTable = c[cdrsTable]
        s.cdrStart = c[cdrStartID]
        s.cdrEnd = c[cdrEndID]
        s.cdrDuration = c[cdrDurationID]
        s.reportCancels = c[reportCancels]
        s.hasDB = c[dbURL] != nil
        return s
    }

    /// The process's acc state (its settings and database sink).
    public static func store(_ runtime: ModuleRuntime) -> AccStore {
        runtime.state(AccStore.self) { AccStore(settings(runtime.config)) }
    }

    public static func start(_ runtime: ModuleRuntime) throws(ModuleStartError) {
        for (key, p) in [("log_extra", logExtra), ("db_extra", dbExtra), ("cdr_extra", cdrExtra)] {
            if case .failure(let e) = parseExtra(runtime.config[p]) { throw ModuleStartError(key: "modparam.acc.\(key)", e.message) }
        }
        let a = store(runtime)
        runtime.tm.hooks.onResponseOut { ctx, cell, code, reply in transactionReplied(a, ctx, cell, code, reply) }
        if a.settings.cdrEnable {
            DialogModule.store(runtime).onEnd { ctx, d in cdr(a, ctx, d) }
        }
        runtime.addPeriodic { _ in a.sink?.flush() }
    }

    // MARK: Records

    static let loggerLabel = "acc"

    /// Kamailio's core attributes of a record: method, from_tag, to_tag, call_id, code, reason.
    static func core(_ m: SIPMessage?, toTag: String?, code: String, reason: String) -> [(String, String)] {
        guard let m else { return [("method", ""), ("from_tag", ""), ("to_tag", toTag ?? ""), ("call_id", ""), ("code", code), ("reason", reason)] }
        return [("method", m.methodName), ("from_tag", m.fromTag.map { m.string($0) } ?? ""),
                ("to_tag", toTag ?? m.toTag.map { m.string($0) } ?? ""),
                ("call_id", m.callID.map { m.string($0) } ?? ""), ("code", code), ("reason", reason)]
    }

    static func evaluate(_ ctx: RouteContext, _ extra: [(String, String)]) -> [(String, String?)] {
        extra.map { (name, pv) in
            guard let spec = PseudoVariable.parse(pv) else { return (name, nil) }
            switch PVEngine.get(ctx, spec) {
            case .null: return (name, nil)
            case .int(let i): return (name, String(i))
            case .string(let s): return (name, s)
            case .bytes(let r): return (name, ctx.message?.string(r))
            }
        }
    }

    /// One log line as Kamailio's acc writes it: `ACC: <text>timestamp=...;method=...;...`.
    static func log(_ ctx: RouteContext, _ text: String, _ now: Int, _ core: [(String, String)], _ extra: [(String, String?)]) {
        var line = "ACC: \(text)timestamp=\(now)"
        var meta: Logger.Metadata = ["acc": "\(text.dropLast(2))", "timestamp": "\(now)"]
        for (k, v) in core {
            line += ";\(k)=\(v)"
            meta[k] = "\(v)"
        }
        for (k, v) in extra {
            line += ";\(k)=\(v ?? "")"
            meta[k] = "\(v ?? "")"
        }
        ctx.logger.notice("\(line)", metadata: meta)
    }

    /// A database record: acc's columns (method, from_tag, to_tag, callid, sip_code, sip_reason, time) and the extras.
    static func dbRecord(_ table: String, _ now: Int, _ core: [(String, String)], _ extra: [(String, String?)]) -> AccRecord {
        let names = ["method", "from_tag", "to_tag", "callid", "sip_code", "sip_reason"]
        var cols: [(String, AccValue)] = zip(names, core.map(\.1)).map { ($0, .text($1)) }
        cols.append(("time", .time(Double(now))))
        for (k, v) in extra { cols.append((k, v.map { .text($0) } ?? .null)) }
        return AccRecord(table: table, columns: cols)
    }

    /// The comment of acc_*_request: "200 OK" → (code, reason); text without a code → ("", text)... as Kamailio.
    static func parseComment(_ s: String) -> (String, String)? {
        guard !s.isEmpty, !s.contains("$") else { return nil }
        let u = Array(s.utf8)
        if u.count >= 3, u[0...2].allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) {
            let rest = String(s.dropFirst(3)).trimmingSpacesAndTabs()
            return (String(s.prefix(3)), rest)
        }
        return ("", s)
    }

    // MARK: Transactions (flags)

    /// A final response of a transaction left upstream: the flags of its request decide what is accounted.
    static func transactionReplied(_ a: AccStore, _ ctx: RouteContext, _ cell: TMCell, _ code: Int, _ reply: SIPMessage?) {
        guard code >= 200 else { return }
        let st = a.settings
        let flags = cell.locked { cell.messageFlags }
        func on(_ f: Int) -> Bool { f >= 0 && f < 32 && flags & (1 << UInt32(f)) != 0 }
        guard on(st.logFlag) || on(st.dbFlag) || on(st.logMissedFlag) || on(st.dbMissedFlag) else { return }
        let (request, relayed, received) = cell.locked { (cell.request, cell.relayed?.value, cell.received) }
        if request.method == .cancel && !st.reportCancels { return }
        if request.method == .ack { return }
        let failed = code >= 300
        let normal = !failed || on(st.failedFlag)
        let doLog = normal && on(st.logFlag)
        let doDB = normal && on(st.dbFlag)
        let missLog = failed && on(st.logMissedFlag)
        let missDB = failed && on(st.dbMissedFlag)
        guard doLog || doDB || missLog || missDB else { return }
        guard let rt = ctx.runtime else { return }
        let now = rt.clock.unixSeconds
        // The extras are evaluated on the transaction's request as relayed (Kamailio: t->uas.request).
        let saved = ctx.state
        ctx.state = {
            var s = relayed ?? MessageState(message: request, received: received, routeType: .failure)
            s.message = request
            s.received = received
            s.routeType = saved.routeType
            return s
        }()
        let reason = reply.map { $0.string($0.reasonRange) } ?? TMReply.reasonPhrase(code)
        let toTag = reply?.toTag.map { reply!.string($0) }
        let c = core(request, toTag: toTag, code: String(code), reason: code == 487 && reply == nil ? "Request Terminated" : reason)
        if doLog { log(ctx, "transaction answered: ", now, c, evaluate(ctx, st.logExtra)) }
        if missLog { log(ctx, "call missed: ", now, c, evaluate(ctx, st.logExtra)) }
        if doDB || missDB, let sink = a.sink {
            let extra = evaluate(ctx, st.dbExtra)
            if doDB { sink.write(dbRecord(st.tableAcc, now, c, extra)) }
            if missDB { sink.write(dbRecord(st.tableMissed, now, c, extra)) }
        }
        ctx.state = saved
    }

    // MARK: CDRs

    /// A dialog ended (or failed, `cdr_on_failed`): one CDR (start_time, end_time, duration with
    /// milliseconds, setup_time, cdr_extra). Ended without a message (timeout, RPC): only with
    /// `cdr_expired_dlg_enable`, as Kamailio.
    static func cdr(_ a: AccStore, _ ctx: RouteContext, _ d: DialogSnapshot) {
        let st = a.settings
        if d.failed && !st.cdrOnFailed { return }
        if d.withoutMessage && !st.cdrExpired { return }
        let end = d.endTime > 0 ? d.endTime : (ctx.runtime?.clock.unixTime ?? 0)
        let start = d.failed || d.startTime == 0 ? end : d.startTime
        let duration = ((end - start) * 1000).rounded() / 1000
        let setup = d.failed ? 0 : max(0, d.startTS - d.initTS)
        let extra = evaluate(ctx, st.cdrExtra)
        func fmt(_ t: Double) -> String {
            let ms = Int((t * 1000).rounded())
            let frac = String(ms % 1000)
            return "\(ms / 1000)." + String(repeating: "0", count: 3 - frac.count) + frac
        }
        if st.cdrLogEnable {
            var parts = ["\(st.cdrStart)=\(fmt(start))", "\(st.cdrEnd)=\(fmt(end))", "\(st.cdrDuration)=\(fmt(duration))"]
            var meta: Logger.Metadata = ["cdr": "\(d.id)", "callid": "\(d.callID)", st.cdrStart: "\(fmt(start))",
                                         st.cdrEnd: "\(fmt(end))", st.cdrDuration: "\(fmt(duration))", "setup_time": "\(setup)"]
            for (k, v) in extra {
                parts.append("\(k)=\(v ?? "")")
                meta[k] = "\(v ?? "")"
            }
            ctx.logger.notice("\(parts.joined(separator: ", "))", metadata: meta)
        }
        if !st.cdrsTable.isEmpty, let sink = a.sink {
            var cols: [(String, AccValue)] = [(st.cdrStart, .time(start)), (st.cdrEnd, .time(end)),
                                              (st.cdrDuration, .double(duration)), ("setup_time", .int(setup)),
                                              ("callid", .text(d.callID)), ("from_tag", .text(d.fromTag)), ("to_tag", .text(d.toTag))]
            for (k, v) in extra { cols.append((k, v.map { .text($0) } ?? .null)) }
            sink.write(AccRecord(table: st.cdrsTable, columns: cols))
        }
    }

    // MARK: Exports

    public static func exports(_ runtime: ModuleRuntime) -> [KemiExport] {
        let a = store(runtime)
        @Sendable func request(_ ctx: RouteContext, _ comment: String?, log doLog: Bool, table: String?) -> Int {
            guard let comment, let (code, reason) = parseComment(comment) else {
                ctx.logger.error("acc: failed to parse the comment '\(comment ?? "")' (expected [code text])")
                return -1
            }
            guard let m = ctx.message, m.isRequest else { return -1 }
            let now = ctx.runtime?.clock.unixSeconds ?? 0
            let c = core(m, toTag: nil, code: code, reason: reason)
            if doLog { log(ctx, "request accounted: ", now, c, evaluate(ctx, a.settings.logExtra)) }
            if let table {
                guard !table.isEmpty, table.count < 64 else {
                    ctx.logger.error("acc: invalid table name '\(table)'")
                    return -1
                }
                guard let sink = a.sink else {
                    if !doLog { ctx.logger.error("acc: no database (set [modparam.acc] db_url)") }
                    return doLog ? 1 : -1
                }
                sink.write(dbRecord(table, now, c, evaluate(ctx, a.settings.dbExtra)))
            }
            return 1
        }
        return [
            KemiExport("acc", "acc_log_request", [.str], returns: .int) { ctx, args in
                .int(request(ctx, args.string(0), log: true, table: nil))
            },
            KemiExport("acc", "acc_db_request", [.str, .str], returns: .int) { ctx, args in
                .int(request(ctx, args.string(0), log: false, table: args.string(1) ?? ""))
            },
            KemiExport("acc", "acc_request", [.str, .str], returns: .int) { ctx, args in
                let t = args.string(1) ?? ""
                return .int(request(ctx, args.string(0), log: true, table: t.isEmpty || a.sink == nil ? nil : t))
            },
        ]
    }
}
