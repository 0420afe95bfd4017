import SIPTransport
import StarlingKEMI
import Synchronization
import CStarlingSystem
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// One row of Kamailio's `dialog` table (5.6, version 7) with its `dialog_vars` and the profiles of
/// its `xdata` (`{"profiles":[{"name":"tenant","value":"acme"}]}`).
public struct DialogRecord: Sendable, Equatable {
    public var hashEntry: Int
    public var hashID: Int
    public var callID: String
    public var fromURI: String
    public var fromTag: String
    public var toURI: String
    public var toTag: String
    public var callerCSeq: String
    public var calleeCSeq: String
    /// Route sets as Kamailio stores them: `<uri1>,<uri2>`.
    public var callerRouteSet: String
    public var calleeRouteSet: String
    public var callerContact: String
    public var calleeContact: String
    /// Local sockets (`udp:127.0.0.1:5060`).
    public var callerSocket: String
    public var calleeSocket: String
    public var state: Int
    public var startTime: Int
    /// When the dialog times out (seconds since 1970; 0: none).
    public var timeout: Int
    public var sflags: Int
    public var iflags: Int
    public var requestURI: String
    public var profiles: [ProfileEntry]
    public var variables: [ProfileEntry]

    /// A (name, value) pair: a profile link or a dialog variable.
    public struct ProfileEntry: Sendable, Equatable {
        public var name: String
        public var value: String
        public init(name: String, value: String) {
            self.name = name
            self.value = value
        }
    }

    public init(hashEntry: Int, hashID: Int, callID: String, fromURI: String, fromTag: String, toURI: String,
                toTag: String, callerCSeq: String, calleeCSeq: String, callerRouteSet: String, calleeRouteSet: String,
                callerContact: String, calleeContact: String, callerSocket: String, calleeSocket: String, state: Int,
                startTime: Int, timeout: Int, sflags: Int, iflags: Int, requestURI: String,
                profiles: [ProfileEntry], variables: [ProfileEntry]) {
        self.hashEntry = hashEntry
        self.hashID = hashID
        self.callID = callID
        self.fromURI = fromURI
        self.fromTag = fromTag
        self.toURI = toURI
        self.toTag = toTag
        self.callerCSeq = callerCSeq
        self.calleeCSeq = calleeCSeq
        self.callerRouteSet = callerRouteSet
        self.calleeRouteSet = calleeRouteSet
        self.callerContact = callerContact
        self.calleeContact = calleeContact
        self.callerSocket = callerSocket
        self.calleeSocket = calleeSocket
        self.state = state
        self.startTime = startTime
        self.timeout = timeout
        self.sflags = sflags
        self.iflags = iflags
        self.requestURI = requestURI
        self.profiles = profiles
        self.variables = variables
    }
}

/// Where dialogs are kept across restarts (`db_mode` 1, 2, 3): the embedded database implements it.
public protocol DialogPersistence: Sendable {
    /// Every stored dialog.
    func load() throws -> [DialogRecord]
    /// The stored dialogs of one Call-ID (`dlg_db_load_callid`).
    func load(callID: String) throws -> [DialogRecord]
    /// Writes changed dialogs and removes ended ones, in one transaction.
    func save(upserts: [DialogRecord], deletes: [(entry: Int, id: Int)]) throws
    /// Empties the dialog tables (db_mode 3 after loading them, as Kamailio).
    func deleteAll() throws
}

extension DialogPersistence {
    public func load(callID: String) throws -> [DialogRecord] { try load().filter { $0.callID == callID } }
    public func deleteAll() throws {
        try save(upserts: [], deletes: try load().map { (entry: $0.hashEntry, id: $0.hashID) })
    }
}

/// The thread that writes dialog changes as they happen: every change of db_mode 1 (Kamailio's
/// DB_MODE_REALTIME writes in the worker, before the message goes on; here the worker only marks the
/// dialog and wakes this thread, which commits everything pending in one transaction — under load
/// several changes per commit), and the deletions of db_mode 2 (Kamailio deletes the row when the
/// dialog is destroyed; its inserts and updates wait for `db_update_period`).
final class DialogDBWriter: Sendable {
    let fd: Int32
    let realtime: Bool
    let pending = Atomic<Bool>(false)
    let stopped = Atomic<Bool>(false)
    let thread = Mutex<PosixThread?>(nil)

    init?(realtime: Bool) {
        let fd = st_eventfd_create()
        guard fd >= 0 else { return nil }
        self.fd = fd
        self.realtime = realtime
    }

    /// A change: wakes the thread unless it is already due to run (one atomic exchange per change;
    /// the eventfd write only when the thread is idle).
    @inline(__always)
    func signal(removal: Bool) {
        guard realtime || removal else { return }
        if !pending.exchange(true, ordering: .acquiringAndReleasing) { _ = st_eventfd_signal(fd) }
    }

    func run(_ s: DialogStore) {
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        while !stopped.load(ordering: .acquiring) {
            _ = poll(&p, 1, 1000)
            st_eventfd_drain(fd)
            // Cleared before the snapshot: a change after it wakes the thread again.
            pending.store(false, ordering: .releasing)
            s.flush(deletionsOnly: !realtime)
        }
    }

    func stop() {
        stopped.store(true, ordering: .releasing)
        _ = st_eventfd_signal(fd)
        thread.withLock { $0 }?.join()
        close(fd)
    }
}

extension DialogStore {
    /// Attaches the database (db_mode 1/2/3): loads the dialogs it holds (their profiles and variables;
    /// a dialog whose timeout passed while Starling was down times out at once). db_mode 3 then empties
    /// the tables (they are written again at stop, as Kamailio's DB_MODE_SHUTDOWN). Returns how many
    /// dialogs were loaded. Writes: `startWriter()` (server), else the housekeeping timer (`timer`).
    public func attach(_ persistence: any DialogPersistence, now: Int) throws -> Int {
        let rows = try persistence.load()
        if settings.dbMode == 3 { try persistence.deleteAll() }
        table.withLock { t in
            for r in rows { _ = Self.restore(&t, r, now: now) }
            t.dirty.removeAll()
            t.removed.removeAll()
            // db_mode 3 writes the whole table at stop: nothing to track until then.
            t.persistent = settings.dbMode != 3
        }
        self.persistence.withLock { $0 = persistence }
        writeOrder.withLock { $0 = now }
        return rows.count
    }

    /// Puts a stored dialog into the table (not when its id is taken: Kamailio's "conflicting dialog
    /// id"). False when skipped.
    static func restore(_ t: inout Table, _ r: DialogRecord, now: Int) -> Bool {
        guard let d = Dialog(record: r, now: now), t.dialogs[d.id] == nil else { return false }
        t.dialogs[d.id] = d
        Self.index(&t, d.callID, d.id)
        t.nextID = max(t.nextID, d.id.id &+ 1)
        t.dialogs[d.id]?.profiles = []
        for p in r.profiles where t.profiles[p.name] != nil {
            Self.link(&t, d.id, ProfileLink(name: p.name, value: p.value))
        }
        return true
    }

    /// Starts the writer thread (db_mode 1: every change; db_mode 2: deletions). The server calls it
    /// after `attach`; without it the housekeeping timer writes about once a second.
    public func startWriter() throws {
        guard settings.dbMode == 1 || settings.dbMode == 2, persistence.withLock({ $0 }) != nil else { return }
        guard let w = DialogDBWriter(realtime: settings.dbMode == 1) else { throw TransportError("eventfd", errno: errno) }
        let t = try PosixThread(name: "dialog-db") { [self] in w.run(self) }
        w.thread.withLock { $0 = t }
        _ = writer.storeIfNil(w)
    }

    /// The housekeeping timer's part: db_mode 1 without a writer thread writes what changed; db_mode 2
    /// writes changed dialogs every `db_update_period` seconds (deletions at once, by the writer
    /// thread, else here); db_mode 3 writes nothing until the stop.
    func persistenceTimer(now: Int) {
        switch settings.dbMode {
        case 1:
            if writer.load() == nil { flush() }
        case 2:
            let due = writeOrder.withLock { last -> Bool in
                guard now - last >= settings.dbUpdatePeriod else { return false }
                last = now
                return true
            }
            if due { flush() } else if writer.load() == nil { flush(deletionsOnly: true) }
        default:
            break
        }
    }

    /// Writes what changed since the last write (confirmed dialogs, as Kamailio's update_dialog_dbinfo;
    /// `deletionsOnly`: the rows of ended dialogs only).
    public func flush(deletionsOnly: Bool = false) {
        guard let p = persistence.withLock({ $0 }) else { return }
        writeOrder.withLock { _ in
            let (ups, dels) = table.withLock { t -> ([DialogRecord], [(entry: Int, id: Int)]) in
                var ups: [DialogRecord] = []
                if !deletionsOnly {
                    ups = t.dirty.compactMap { id in t.dialogs[id].flatMap { $0.state.isConfirmed ? $0.record : nil } }
                    t.dirty.removeAll()
                }
                let dels = t.removed.map { (entry: Int($0.entry), id: Int($0.id)) }
                t.removed.removeAll()
                return (ups, dels)
            }
            guard !ups.isEmpty || !dels.isEmpty else { return }
            do { try p.save(upserts: ups, deletes: dels) } catch {
                Self.report("dialog: cannot write \(ups.count) dialogs and \(dels.count) deletions to the database: \(error)")
            }
        }
    }

    /// The stop: the writer thread ends, then what is pending is written; db_mode 3 writes every
    /// confirmed dialog now (its tables were emptied at start, as Kamailio's DB_MODE_SHUTDOWN).
    public func close() {
        writer.load()?.stop()
        guard let p = persistence.withLock({ $0 }) else { return }
        if settings.dbMode == 3 {
            writeOrder.withLock { _ in
                let all: [DialogRecord] = table.withLock { t in
                    var a: [DialogRecord] = []
                    t.dialogs.forEach { _, d in if d.state.isConfirmed { a.append(d.record) } }
                    return a
                }
                do { try p.save(upserts: all, deletes: []) } catch {
                    Self.report("dialog: cannot write \(all.count) dialogs to the database at stop: \(error)")
                }
            }
        } else {
            flush()
        }
    }

    /// `dlg_db_load_callid` (a Call-ID) and `dlg_db_load_extra` (nil): loads stored dialogs that are
    /// not in memory (another instance wrote them), with their profiles and variables. 1, or -1
    /// without a database (db_mode 1 or 2, as Kamailio's workers have a handle only then) or when the
    /// database cannot be read. Returns the number loaded through `count`.
    func loadFromDatabase(callID: String?, now: Int, logger: Logger) -> (Int, count: Int) {
        guard settings.dbMode == 1 || settings.dbMode == 2, let p = persistence.withLock({ $0 }) else {
            logger.error("dialog: invalid database handle (db_mode \(settings.dbMode); loading needs db_mode 1 or 2 and db_url)")
            return (-1, 0)
        }
        let rows: [DialogRecord]
        do { rows = try callID.map { try p.load(callID: $0) } ?? p.load() } catch {
            logger.error("dialog: error while querying the database: \(error)")
            return (-1, 0)
        }
        var loaded = 0
        var conflicts: [String] = []
        table.withLock { t in
            for r in rows {
                if Self.restore(&t, r, now: now) { loaded += 1 } else if Dialog(record: r, now: now) != nil {
                    conflicts.append("\(r.hashEntry)/\(r.hashID)")
                }
            }
        }
        if callID != nil {
            for c in conflicts { logger.warning("dialog: conflicting dialog id: \(c) - skipping") }
        }
        return (1, loaded)
    }

    static func report(_ text: String) {
        let line = Array((text + "\n").utf8)
        _ = line.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
    }
}

extension Dialog {
    /// The row of this dialog.
    var record: DialogRecord {
        func sock(_ p: DialogPeer?) -> String { p.map { "\($0.proto.name):\($0.local.uriHost):\($0.local.port)" } ?? "" }
        return DialogRecord(
            hashEntry: Int(id.entry), hashID: Int(id.id), callID: callID, fromURI: fromURI, fromTag: fromTag, toURI: toURI,
            toTag: toTag, callerCSeq: String(callerCSeq), calleeCSeq: String(calleeCSeq),
            callerRouteSet: callerRouteSet.map { "<\($0)>" }.joined(separator: ","),
            calleeRouteSet: calleeRouteSet.map { "<\($0)>" }.joined(separator: ","),
            callerContact: callerContact, calleeContact: calleeContact, callerSocket: sock(caller), calleeSocket: sock(callee),
            state: state.rawValue, startTime: machine.startTS, timeout: timeoutAt, sflags: Int(sflags), iflags: Int(iflags),
            requestURI: requestURI, profiles: profiles.map { .init(name: $0.name, value: $0.value) },
            variables: vars.map { .init(name: $0.0, value: $0.1) })
    }

    /// A dialog from its row (nil for a row that is not a confirmed dialog).
    init?(record r: DialogRecord, now: Int) {
        guard let st = DialogState(rawValue: r.state), st.isConfirmed, !r.callID.isEmpty else { return nil }
        func routes(_ s: String) -> [String] {
            s.split(separator: ",").map { v in
                var x = Substring(v).drop { $0 == " " }
                if x.hasPrefix("<") { x = x.dropFirst() }
                if x.hasSuffix(">") { x = x.dropLast() }
                return String(x)
            }.filter { !$0.isEmpty }
        }
        func peer(_ sock: String) -> DialogPeer? {
            let parts = sock.split(separator: ":")
            guard parts.count >= 3, let port = Int(parts[parts.count - 1]) else { return nil }
            let host = String(parts[1..<(parts.count - 1)].joined(separator: ":").filter { $0 != "[" && $0 != "]" })
            guard let a = SocketAddress(ip: host, port: port) else { return nil }
            let proto = SIPTransportProtocol.allCases.first { $0.name == parts[0] } ?? .udp
            return DialogPeer(address: a, proto: proto, local: a)
        }
        let caller = peer(r.callerSocket) ?? DialogPeer(address: SocketAddress(ip: "127.0.0.1", port: 5060)!, proto: .udp,
                                                         local: SocketAddress(ip: "127.0.0.1", port: 5060)!)
        let timeout = r.timeout > 0 ? max(1, r.timeout - r.startTime) : 43200
        self.init(id: DialogID(entry: UInt32(truncatingIfNeeded: r.hashEntry), id: UInt32(truncatingIfNeeded: r.hashID)),
                  callID: r.callID, fromURI: r.fromURI, toURI: r.toURI, fromTag: r.fromTag, requestURI: r.requestURI,
                  callerContact: r.callerContact, callerCSeq: Int(r.callerCSeq) ?? 1, callerRouteSet: routes(r.callerRouteSet),
                  caller: caller, machine: DialogMachine(restoring: st, startTS: r.startTime), timeout: timeout)
        toTag = r.toTag
        calleeContact = r.calleeContact
        calleeCSeq = Int(r.calleeCSeq) ?? 1
        calleeRouteSet = routes(r.calleeRouteSet)
        callee = peer(r.calleeSocket)
        // A timeout that passed while the server was down fires at the next timer run.
        timeoutAt = r.timeout > 0 ? max(r.timeout, now) : 0
        sflags = UInt32(truncatingIfNeeded: r.sflags)
        iflags = UInt32(truncatingIfNeeded: r.iflags)
        vars = r.variables.map { ($0.name, $0.value) }
        profiles = r.profiles.map { ProfileLink(name: $0.name, value: $0.value) }
        attached = true
        startTime = Double(r.startTime)
    }
}
