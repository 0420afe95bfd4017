import SIPTransport
import StarlingKEMI
import Synchronization
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

/// Where dialogs are kept across restarts (`db_mode` 1 and 2): the embedded database implements it.
public protocol DialogPersistence: Sendable {
    /// Every stored dialog.
    func load() throws -> [DialogRecord]
    /// Writes changed dialogs and removes ended ones, in one transaction.
    func save(upserts: [DialogRecord], deletes: [(entry: Int, id: Int)]) throws
}

extension DialogStore {
    /// Attaches the database (db_mode 1/2): loads the confirmed dialogs it holds (their profiles and
    /// variables; a dialog whose timeout passed while Starling was down times out at once), then
    /// writes changes about once a second (`flush`, called by the housekeeping thread and at stop).
    /// Returns how many dialogs were loaded.
    public func attach(_ persistence: any DialogPersistence, now: Int) throws -> Int {
        let rows = try persistence.load()
        table.withLock { t in
            for r in rows {
                guard let d = Dialog(record: r, now: now) else { continue }
                t.dialogs[d.id] = d
                t.byCallID[d.callID, default: []].append(d.id)
                t.nextID = max(t.nextID, d.id.id &+ 1)
                let links = r.profiles
                t.dialogs[d.id]?.profiles = []
                for p in links where t.profiles[p.name] != nil {
                    Self.link(&t, d.id, ProfileLink(name: p.name, value: p.value))
                }
            }
            t.dirty.removeAll()
            t.removed.removeAll()
            t.persistent = true
        }
        self.persistence.withLock { $0 = persistence }
        return rows.count
    }

    /// Writes what changed since the last flush (confirmed dialogs only, as Kamailio's db_mode 1).
    public func flush() {
        guard let p = persistence.withLock({ $0 }) else { return }
        let (ups, dels) = table.withLock { t -> ([DialogRecord], [(entry: Int, id: Int)]) in
            let ups = t.dirty.compactMap { id in t.dialogs[id].flatMap { $0.state.isConfirmed ? $0.record : nil } }
            let dels = t.removed.map { (entry: Int($0.entry), id: Int($0.id)) }
            t.dirty.removeAll()
            t.removed.removeAll()
            return (ups, dels)
        }
        guard !ups.isEmpty || !dels.isEmpty else { return }
        do { try p.save(upserts: ups, deletes: dels) } catch {
            let line = Array("dialog: cannot write \(ups.count) dialogs to the database: \(error)\n".utf8)
            _ = line.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
        }
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
