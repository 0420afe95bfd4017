import SIPTransport
public import StarlingKEMI
import Synchronization

/// A dialog's internal id (`h_entry`, `h_id`): what `did`, `dlg.end_dlg` and `$dlg(h_id)` use.
public struct DialogID: Hashable, Sendable, CustomStringConvertible {
    public var entry: UInt32
    public var id: UInt32
    public init(entry: UInt32, id: UInt32) {
        self.entry = entry
        self.id = id
    }
    public var description: String { "\(entry):\(id)" }

    /// The `did` Record-Route value: `<h_entry hex>.<h_id hex>` as Kamailio writes it.
    var didValue: String { String(entry, radix: 16) + "." + String(id, radix: 16) }

    /// Parses a `did` value; nil when malformed.
    init?(did: Substring) {
        let parts = did.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty, parts[0].count <= 8, parts[1].count <= 8,
              let e = UInt32(parts[0], radix: 16), let i = UInt32(parts[1], radix: 16) else { return nil }
        entry = e
        id = i
    }
}

/// Where one side of a dialog is reached (the socket we used with it).
struct DialogPeer: Sendable {
    var address: SocketAddress
    var proto: SIPTransportProtocol
    var local: SocketAddress
}

/// One dialog (Kamailio's `dlg_cell`). Lives in the store's table; changed under its lock.
struct Dialog: Sendable {
    var id: DialogID
    var callID: String
    var fromURI: String
    var toURI: String
    /// The caller's From tag and the callee's To tag (empty until a reply with one).
    var fromTag: String
    var toTag: String = ""
    var requestURI: String
    var callerContact: String
    var calleeContact: String = ""
    var callerCSeq: Int
    var calleeCSeq: Int = 0
    /// Route sets toward each side (the Record-Route entries between us and that side, nearest first).
    var callerRouteSet: [String]
    var calleeRouteSet: [String] = []
    var caller: DialogPeer
    var callee: DialogPeer?
    var machine: DialogMachine
    /// When the 2xx went upstream and when the dialog ended, with sub-second precision (CDRs).
    var startTime: Double = 0
    var endTime: Double = 0
    /// Seconds of life once confirmed (`lifetime`), and when it runs out (0: no timer yet).
    var timeout: Int
    var timeoutAt: Int = 0
    /// Script flags (`dlg_setflag`), internal flags (`iflags`, Kamailio's bits: timeout BYE 1, ka-src 2,
    /// ka-dst 4, timeout-noreset 8), dflags (Kamailio's: BYE sent to the caller 16, to the callee 32).
    var sflags: UInt32 = 0
    var iflags: UInt32 = 0
    var dflags: UInt32 = 0
    /// `$dlg_var` values, in the order they were set.
    var vars: [(String, String)] = []
    /// Profile links (name, value; "" for profiles without value).
    var profiles: [ProfileLink] = []
    /// The INVITE transaction is attached (its replies drive the dialog).
    var attached = false
    /// Keepalive failures in a row of each side (Kamailio's ka_src_counter / ka_dst_counter, against
    /// ka_failed_limit), and when the next keepalive is due (`ka_interval` after the ACK, then every
    /// `ka_interval`).
    var kaCallerFailures = 0
    var kaCalleeFailures = 0
    var kaNext = 0

    var state: DialogState { machine.state }

    func variable(_ name: String) -> String? { vars.last { $0.0 == name }?.1 }
    mutating func setVariable(_ name: String, _ value: String?) {
        vars.removeAll { $0.0 == name }
        if let value { vars.append((name, value)) }
    }
}

struct ProfileLink: Sendable, Hashable {
    var name: String
    var value: String
}

/// A declared profile (`profiles_with_value` / `profiles_no_value`): how many links it has, per value.
/// A dialog linked twice with the same value counts twice, as Kamailio's profile hash, where every
/// `set_dlg_profile` adds a linker (the dialog's own `profiles` list says which dialogs are in it).
struct ProfileTable: Sendable {
    let hasValue: Bool
    var members: [String: Int] = [:]
    var total = 0

    func size(_ value: String?) -> Int {
        guard hasValue, let value else { return total }
        return members[value] ?? 0
    }
}

/// What a dialog callback learns (Kamailio's `DLGCB_*`): the dialog as it was after the event.
public struct DialogSnapshot: Sendable {
    public var id: DialogID
    public var callID: String
    public var fromURI: String
    public var toURI: String
    public var fromTag: String
    public var toTag: String
    public var state: DialogState
    public var initTS: Int
    public var startTS: Int
    public var endTS: Int
    public var vars: [String: String]
    public var sflags: UInt32
    /// Start (2xx) and end times with sub-second precision (seconds since 1970).
    public var startTime: Double
    public var endTime: Double
    /// The dialog failed (never confirmed) rather than ended.
    public var failed = false
    /// Ended by the proxy without a message of the call (timeout, `dlg.end_dlg`): acc's
    /// `cdr_expired_dlg_enable` decides on its CDR, as Kamailio.
    public var withoutMessage = false

    init(_ d: Dialog) {
        id = d.id
        callID = d.callID
        fromURI = d.fromURI
        toURI = d.toURI
        fromTag = d.fromTag
        toTag = d.toTag
        state = d.state
        initTS = d.machine.initTS
        startTS = d.machine.startTS
        endTS = d.machine.endTS
        sflags = d.sflags
        startTime = d.startTime
        endTime = d.endTime
        var v: [String: String] = [:]
        for (k, x) in d.vars { v[k] = x }
        vars = v
    }
}

/// `[modparam.dialog]` as the store uses it.
struct DialogSettings: Sendable {
    var profilesWithValue: Set<String> = []
    var profilesNoValue: Set<String> = []
    var defaultTimeout = 43200
    var dlgFlag = -1
    var hashSize: UInt32 = 4096
    var matchMode = 1
    var sendBye = false
    var rrParam = "did"
    var kaTimer = 0
    var kaInterval = 0
    var kaFailedLimit = 1
    var eventCallback: String?
    var detectSpirals = true
    var dbMode = 0
    /// db_mode 2: seconds between the writes of changed dialogs (`db_update_period`).
    var dbUpdatePeriod = 60
    /// dlg_bridge's From / Referred-By URI and Contact URI.
    var bridgeController = "sip:controller@kamailio.org"
    var bridgeContact = "sip:controller@kamailio.org:5060"
}

/// The dialogs by id, each in a heap box of its own: the hash table's slots hold an 8-byte reference,
/// not the whole record. (A dictionary keeps a quarter to five eighths of its slots empty and doubles
/// as it grows: with the record inline, 100,000 dialogs took 262,144 slots of ~430 bytes, 113 MB,
/// where the boxes take 4 MB of slots and 45 MB of records.) A change of an existing dialog is
/// written into its box, never re-inserted.
///
/// Every change goes through `subscript` or `change`, which keep three indexes up to date (a few
/// comparisons per change): the dialogs by the second their timeout falls due and by the second their
/// next keepalive is due (`SecondWheel`), the unconfirmed ones, and the number in each state. The
/// once-a-second timers take what is due from them instead of a pass over every dialog under the
/// lock, and the gauges read the counts.
struct DialogSlots: Sequence {
    final class Box {
        var dialog: Dialog
        init(_ d: Dialog) { dialog = d }
    }
    private var boxes: [DialogID: Box] = [:]
    private var timeouts = SecondWheel()
    private var keepalives = SecondWheel()
    /// Unconfirmed and early dialogs (Kamailio's dlg_clean_run looks at these only).
    private(set) var unconfirmed: Set<DialogID> = []
    /// Dialogs in each state, by `DialogState.rawValue`.
    private(set) var stateCounts = [Int](repeating: 0, count: 6)

    /// What the indexes file a dialog under.
    struct Keys: Equatable {
        var timeout: Int?
        var keepalive: Int?
        var state: DialogState
        init(_ d: Dialog) {
            timeout = d.timeoutAt > 0 ? d.timeoutAt : nil
            keepalive = d.iflags & (dlgIFlagKaSrc | dlgIFlagKaDst) != 0 && d.state == .confirmed ? d.kaNext : nil
            state = d.state
        }
    }

    private mutating func reindex(_ id: DialogID, _ old: Keys?, _ new: Keys?) {
        guard old != new else { return }
        timeouts.move(id, from: old?.timeout, to: new?.timeout)
        keepalives.move(id, from: old?.keepalive, to: new?.keepalive)
        if old?.state != new?.state {
            if let o = old?.state {
                stateCounts[o.rawValue] -= 1
                if !o.isConfirmed { unconfirmed.remove(id) }
            }
            if let n = new?.state {
                stateCounts[n.rawValue] += 1
                if !n.isConfirmed { unconfirmed.insert(id) }
            }
        }
    }

    subscript(id: DialogID) -> Dialog? {
        get { boxes[id]?.dialog }
        set {
            if let newValue {
                if let b = boxes[id] {
                    let old = Keys(b.dialog)
                    b.dialog = newValue
                    reindex(id, old, Keys(newValue))
                } else {
                    boxes[id] = Box(newValue)
                    reindex(id, nil, Keys(newValue))
                }
            } else if let b = boxes.removeValue(forKey: id) {
                reindex(id, Keys(b.dialog), nil)
            }
        }
    }

    /// Changes a dialog in place (no copy of the record). Nil when unknown.
    mutating func change<R>(_ id: DialogID, _ body: (inout Dialog) -> R) -> R? {
        guard let b = boxes[id] else { return nil }
        let old = Keys(b.dialog)
        let r = body(&b.dialog)
        reindex(id, old, Keys(b.dialog))
        return r
    }

    /// Confirmed dialogs whose timeout is due by `now`; their timeout is cleared (the caller ends them).
    mutating func takeDueTimeouts(now: Int) -> [DialogID] {
        var out: [DialogID] = []
        for id in timeouts.takeDue(now: now) {
            _ = change(id) { d in
                if d.timeoutAt > 0 && d.timeoutAt <= now && d.state.isConfirmed {
                    d.timeoutAt = 0
                    out.append(id)
                }
            }
        }
        return out
    }

    /// Confirmed dialogs with a keepalive property whose keepalive is due by `now`, with their iflags;
    /// the next one is set `interval` seconds on.
    mutating func takeDueKeepalives(now: Int, interval: Int) -> [(DialogID, UInt32)] {
        var out: [(DialogID, UInt32)] = []
        for id in keepalives.takeDue(now: now) {
            _ = change(id) { d in
                if d.iflags & (dlgIFlagKaSrc | dlgIFlagKaDst) != 0 && d.state == .confirmed && d.kaNext <= now {
                    d.kaNext = now + interval
                    out.append((id, d.iflags))
                }
            }
        }
        return out
    }

    /// Visits every dialog (RPC lists, the stop's snapshot).
    func forEach(_ body: (DialogID, Dialog) -> Void) {
        for (id, b) in boxes { body(id, b.dialog) }
    }

    var count: Int { boxes.count }
    var values: LazyMapSequence<Dictionary<DialogID, Box>.Values, Dialog> { boxes.values.lazy.map(\.dialog) }

    func makeIterator() -> LazyMapSequence<[DialogID: Box], (key: DialogID, value: Dialog)>.Iterator {
        boxes.lazy.map { (key: $0.key, value: $0.value.dialog) }.makeIterator()
    }
}

/// Ids by the second (unix time) something of theirs falls due: `takeDue(now:)` returns the ids of
/// every second up to `now` it has not returned yet, visiting only those seconds (not every id).
/// An id filed under a second already taken waits in `overdue` for the next `takeDue`.
struct SecondWheel {
    private var buckets: [Int: Set<DialogID>] = [:]
    private var overdue: Set<DialogID> = []
    /// Every second up to this one was taken (nil: never taken).
    private var taken: Int?

    mutating func move(_ id: DialogID, from old: Int?, to new: Int?) {
        guard old != new else { return }
        if let old {
            if let t = taken, old <= t {
                overdue.remove(id)
            } else if buckets[old]?.remove(id) != nil && buckets[old]?.isEmpty == true {
                buckets[old] = nil
            }
        }
        if let new {
            if let t = taken, new <= t { overdue.insert(id) } else { buckets[new, default: []].insert(id) }
        }
    }

    mutating func takeDue(now: Int) -> [DialogID] {
        var out = Array(overdue)
        overdue.removeAll(keepingCapacity: true)
        if let t = taken, now - t <= 4096 {
            if now > t {
                for second in (t + 1)...now { if let b = buckets.removeValue(forKey: second) { out.append(contentsOf: b) } }
            }
        } else {
            // The first run, or a jump of the clock: the seconds that are there.
            for second in buckets.keys.filter({ $0 <= now }) { out.append(contentsOf: buckets.removeValue(forKey: second)!) }
        }
        taken = max(taken ?? now, now)
        return out
    }
}

/// The dialogs of the process, shared by every worker (Kamailio's `d_table` in shared memory), with the
/// declared profiles. One lock; every critical section is a few dictionary operations.
public final class DialogStore: Sendable {
    struct Table: @unchecked Sendable {  // only ever used inside the store's Mutex
        var dialogs = DialogSlots()
        /// The dialog of each Call-ID; more than one (a serial fork, a spiral with a new From tag) in
        /// `moreByCallID`, so the common case needs no array per call.
        var byCallID: [String: DialogID] = [:]
        var moreByCallID: [String: [DialogID]] = [:]
        var profiles: [String: ProfileTable] = [:]
        var nextID: UInt32 = 1
        /// Dialogs changed / ended since the last database flush (db_mode != 0).
        var dirty: Set<DialogID> = []
        var removed: Set<DialogID> = []
        var persistent = false
        /// The INVITE transaction (tm cell id) of each attached dialog, until it is freed.
        var byCell: [UInt64: DialogID] = [:]
    }

    let settings: DialogSettings
    let table: Mutex<Table>
    /// Callbacks on a confirmed dialog's end (acc's CDRs: Kamailio's `DLGCB_TERMINATED`), added at start-up.
    let endHooks = Mutex<[@Sendable (RouteContext, DialogSnapshot) -> Void]>([])
    /// Counters for statistics (Kamailio's dialog stats).
    let processed = Atomic<Int>(0)
    let expired = Atomic<Int>(0)
    let failed = Atomic<Int>(0)
    /// The database of db_mode 1/2/3 (nil: dialogs in memory only).
    let persistence = Mutex<(any DialogPersistence)?>(nil)
    /// The thread that writes changes at once (db_mode 1) and deletions (db_mode 2); nil in harnesses
    /// and without a database (the housekeeping timer writes then). Read lock-free by every change.
    let writer = AtomicLazyReference<DialogDBWriter>()
    /// Serialises the snapshots and writes of the writer thread, the timer and the stop, so that a
    /// dialog's rows are written in the order its changes happened. Never taken by a worker.
    let writeOrder = Mutex<Int>(0)

    init(settings: DialogSettings) {
        self.settings = settings
        var t = Table()
        for p in settings.profilesWithValue { t.profiles[p] = ProfileTable(hasValue: true) }
        for p in settings.profilesNoValue where t.profiles[p] == nil { t.profiles[p] = ProfileTable(hasValue: false) }
        table = Mutex(t)
    }

    convenience init() { self.init(settings: DialogSettings()) }

    /// Adds a callback run when a confirmed dialog ends.
    /// It runs on the worker that ended it, with the dialog readable through `$dlg` / `$dlg_var`.
    public func onEnd(_ f: @escaping @Sendable (RouteContext, DialogSnapshot) -> Void) { endHooks.withLock { $0.append(f) } }

    // MARK: Reading

    /// The number of dialogs in each state (deleted ones are gone from the table).
    public func counts() -> [DialogState: Int] {
        table.withLock { t in
            var c: [DialogState: Int] = [:]
            for s in DialogState.allCases where t.dialogs.stateCounts[s.rawValue] > 0 { c[s] = t.dialogs.stateCounts[s.rawValue] }
            return c
        }
    }

    /// Dialogs not ended (Kamailio's `active_dialogs`: early and confirmed ones, and unconfirmed).
    public var activeCount: Int { table.withLock { $0.dialogs.count } }
    public var earlyCount: Int { table.withLock { $0.dialogs.stateCounts[DialogState.early.rawValue] } }

    /// The size of a profile (all values when `value` is nil), nil when the profile is not declared.
    /// The dispatcher's call-load algorithm and scripts read this (`get_profile_size`).
    public func profileSize(_ name: String, value: String?) -> Int? {
        table.withLock { t in t.profiles[name]?.size(value) }
    }

    /// Whether a profile is declared, and whether with values.
    func profileKind(_ name: String) -> Bool? { table.withLock { $0.profiles[name]?.hasValue } }

    /// Declared profile names with their sizes per value (metrics: `starling_dialog_profile_size`).
    public func profileSizes() -> [(name: String, value: String?, size: Int)] {
        table.withLock { t in
            var out: [(String, String?, Int)] = []
            for (name, p) in t.profiles.sorted(by: { $0.key < $1.key }) {
                if p.hasValue {
                    for (v, n) in p.members.sorted(by: { $0.key < $1.key }) where n > 0 { out.append((name, v, n)) }
                } else {
                    out.append((name, nil, p.total))
                }
            }
            return out
        }
    }

    func dialog(_ id: DialogID) -> Dialog? { table.withLock { $0.dialogs[id] } }

    func all() -> [Dialog] {
        table.withLock { t in Array(t.dialogs.values).sorted { ($0.id.entry, $0.id.id) < ($1.id.entry, $1.id.id) } }
    }

    /// The dialog of a Call-ID and tags, and the direction (upstream: the request came from the callee).
    func find(callID: String, fromTag: String, toTag: String?) -> (DialogID, upstream: Bool)? {
        table.withLock { t in
            guard let first = t.byCallID[callID] else { return nil }
            for id in (t.moreByCallID[callID] ?? []).reversed() + [first] {
                guard let d = t.dialogs[id] else { continue }
                if d.fromTag == fromTag && (toTag == nil || d.toTag.isEmpty || d.toTag == toTag) { return (id, false) }
                if let toTag, d.fromTag == toTag && d.toTag == fromTag { return (id, true) }
            }
            return nil
        }
    }

    // MARK: Changing

    /// Hash of the Call-ID into `hash_size` entries (as `core_hash`, any spread will do).
    func entry(for callID: String) -> UInt32 {
        var h: UInt32 = 0
        for b in callID.utf8 { h = h &* 31 &+ UInt32(b) }
        return h % settings.hashSize
    }

    /// Inserts a new dialog and links the pending profiles. Returns its id.
    func insert(_ make: (DialogID) -> Dialog, profiles: [ProfileLink]) -> DialogID {
        table.withLock { t in
            let id = DialogID(entry: 0, id: t.nextID)
            t.nextID &+= 1
            var d = make(id)
            let real = DialogID(entry: entry(for: d.callID), id: id.id)
            d.id = real
            t.dialogs[real] = d
            Self.index(&t, d.callID, real)
            for p in profiles { Self.link(&t, real, p) }
            return real
        }
    }

    /// Adds a dialog to the Call-ID index.
    static func index(_ t: inout Table, _ callID: String, _ id: DialogID) {
        if t.byCallID[callID] == nil { t.byCallID[callID] = id } else { t.moreByCallID[callID, default: []].append(id) }
    }

    /// Removes a dialog from the Call-ID index.
    static func unindex(_ t: inout Table, _ callID: String, _ id: DialogID) {
        if t.byCallID[callID] == id {
            if var more = t.moreByCallID.removeValue(forKey: callID), !more.isEmpty {
                t.byCallID[callID] = more.removeFirst()
                if !more.isEmpty { t.moreByCallID[callID] = more }
            } else {
                t.byCallID[callID] = nil
            }
        } else if var more = t.moreByCallID[callID] {
            more.removeAll { $0 == id }
            t.moreByCallID[callID] = more.isEmpty ? nil : more
        }
    }

    // The profile tables are changed in place (`t.profiles[name]!.members[...]`), never copied out.
    /// Links a dialog to a profile: every call adds a link, also for a profile+value the dialog is in
    /// already (Kamailio's link_dlg_profile: `set_dlg_profile` twice makes the size count it twice).
    static func link(_ t: inout Table, _ id: DialogID, _ p: ProfileLink) {
        guard let hasValue = t.profiles[p.name]?.hasValue else { return }
        let link = ProfileLink(name: p.name, value: hasValue ? p.value : "")
        guard t.dialogs.change(id, { $0.profiles.append(link) }) != nil else { return }
        if t.persistent { t.dirty.insert(id) }
        t.profiles[p.name]!.members[link.value, default: 0] += 1
        t.profiles[p.name]!.total += 1
    }

    /// Removes one link (the newest, as Kamailio's unset_dlg_profile finds first in its list).
    static func unlink(_ t: inout Table, _ id: DialogID, _ p: ProfileLink) -> Bool {
        guard let hasValue = t.profiles[p.name]?.hasValue else { return false }
        let link = ProfileLink(name: p.name, value: hasValue ? p.value : "")
        let removed = t.dialogs.change(id) { d -> Bool in
            guard let i = d.profiles.lastIndex(of: link) else { return false }
            d.profiles.remove(at: i)
            return true
        }
        guard removed == true else { return false }
        if t.persistent { t.dirty.insert(id) }
        let n = (t.profiles[p.name]!.members[link.value] ?? 0) - 1
        t.profiles[p.name]!.members[link.value] = n > 0 ? n : nil
        t.profiles[p.name]!.total -= 1
        return true
    }

    func link(_ id: DialogID, _ p: ProfileLink) -> Bool {
        let ok = table.withLock { t in
            guard t.dialogs[id] != nil else { return false }
            Self.link(&t, id, p)
            return true
        }
        if ok { changed(removal: false) }
        return ok
    }

    func unlink(_ id: DialogID, _ p: ProfileLink) -> Bool {
        let ok = table.withLock { t in Self.unlink(&t, id, p) }
        if ok { changed(removal: false) }
        return ok
    }

    func isIn(_ id: DialogID, _ name: String, value: String?) -> Bool {
        table.withLock { t in
            guard let d = t.dialogs[id] else { return false }
            return d.profiles.contains { $0.name == name && (value == nil || $0.value == value) }
        }
    }

    /// Changes a dialog under the lock.
    @discardableResult
    func update<R: Sendable>(_ id: DialogID, _ body: (inout Dialog) -> R) -> R? {
        let r: R? = table.withLock { t in
            guard let r = t.dialogs.change(id, body) else { return nil }
            if t.persistent { t.dirty.insert(id) }
            return r
        }
        if r != nil { changed(removal: false) }
        return r
    }

    /// A change of a dialog: the writer thread (db_mode 1; db_mode 2 for deletions) wakes up.
    @inline(__always)
    func changed(removal: Bool) {
        writer.load()?.signal(removal: removal)
    }

    /// Applies an event; a dialog that reaches `deleted` leaves the table and its profiles. Returns the
    /// transition and the dialog as it is after the event (nil: unknown dialog).
    /// `byeRequest`: the event is a BYE of the caller or callee (a dialog the proxy was already ending
    /// takes this BYE's time as its end, as acc's DLGCB_TERMINATED callback sets it again).
    func handle(_ id: DialogID, _ event: DialogEvent, now: Int, time: Double? = nil, byeRequest: Bool = false,
                _ extra: ((inout Dialog) -> Void)? = nil) -> (DialogMachine.Transition, Dialog)? {
        let kaInterval = settings.kaInterval
        let r: (DialogMachine.Transition, Dialog)? = table.withLock { t in
            guard var d = t.dialogs[id] else { return nil }
            extra?(&d)
            let tr = d.machine.handle(event, now: now)
            if tr.started {
                d.timeoutAt = now + d.timeout
                d.startTime = time ?? Double(now)
            }
            // Kamailio's dlg_ka_add on the ACK: the first keepalive `ka_interval` later.
            if tr.changed && d.state == .confirmed { d.kaNext = now + kaInterval }
            // A dialog the proxy ended with BYEs keeps the time they left (acc's DLGCB_TERMINATED).
            if tr.changed && d.state == .deleted && (d.endTime == 0 || byeRequest) { d.endTime = time ?? Double(now) }
            if d.state == .deleted {
                for p in d.profiles { _ = Self.unlink(&t, id, p) }
                t.dialogs[id] = nil
                if t.persistent {
                    t.dirty.remove(id)
                    if tr.old.isConfirmed { t.removed.insert(id) }
                }
                Self.unindex(&t, d.callID, id)
            } else {
                t.dialogs[id] = d
                if t.persistent && tr.changed { t.dirty.insert(id) }
            }
            return (tr, d)
        }
        if let (tr, d) = r {
            if tr.started { processed.wrappingAdd(1, ordering: .relaxed) }
            if tr.failed { failed.wrappingAdd(1, ordering: .relaxed) }
            if tr.changed { changed(removal: d.state == .deleted) }
        }
        return r
    }

    /// Unconfirmed dialogs never attached to a transaction, older than `age` seconds (Kamailio's
    /// `dlg_clean_run`: a dialog created by a route that then did not relay).
    func stale(now: Int, age: Int) -> [DialogID] {
        table.withLock { t in
            var out: [DialogID] = []
            for id in t.dialogs.unconfirmed where (t.dialogs[id]?.machine.initTS ?? now) + age <= now { out.append(id) }
            return out
        }
    }
}
