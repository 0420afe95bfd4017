public import StarlingKEMI
import SIPCore
import Synchronization
import Logging

/// One row of Kamailio's `uacreg` table (a registration Starling makes to a remote registrar).
public struct UACRegRow: Sendable, Equatable {
    public var l_uuid: String
    public var l_username: String
    public var l_domain: String
    public var r_username: String
    public var r_domain: String
    public var realm: String
    public var auth_username: String
    public var auth_password: String
    /// Outbound proxy for the REGISTER ("" = r_domain).
    public var auth_proxy: String
    public var expires: Int
    /// Bit 0: disabled.
    public var flags: Int
    /// Seconds to wait before the first REGISTER.
    public var reg_delay: Int

    public init(l_uuid: String, l_username: String, l_domain: String, r_username: String, r_domain: String,
                realm: String = "", auth_username: String, auth_password: String, auth_proxy: String = "",
                expires: Int = 3600, flags: Int = 0, reg_delay: Int = 0) {
        self.l_uuid = l_uuid
        self.l_username = l_username
        self.l_domain = l_domain
        self.r_username = r_username
        self.r_domain = r_domain
        self.realm = realm
        self.auth_username = auth_username
        self.auth_password = auth_password
        self.auth_proxy = auth_proxy
        self.expires = expires
        self.flags = flags
        self.reg_delay = reg_delay
    }
}

/// Where the `uacreg` rows come from (the embedded database implements it; tests use
/// `MemoryUACRegistrations`). Read at start, on `uac.reg_reload` and by `uac_reg_refresh`.
public protocol UACRegistrationSource: Sendable {
    func uacRegistrations() throws -> [UACRegRow]
}

/// An in-memory `uacreg` table.
public final class MemoryUACRegistrations: UACRegistrationSource {
    private let rows: Mutex<[UACRegRow]>
    public init(_ rows: [UACRegRow] = []) { self.rows = Mutex(rows) }
    public func set(_ rows: [UACRegRow]) { self.rows.withLock { $0 = rows } }
    public func uacRegistrations() throws -> [UACRegRow] { rows.withLock { $0 } }
}

/// The remote registrations (Kamailio's uac_reg): each enabled row is registered after its
/// `reg_delay`, refreshed before it expires, retried with back-off after a failure, and answers one
/// 401/407 per attempt with its auth_username/auth_password. State is shared by all workers; the
/// housekeeping job (once a second) decides what is due and tm sends it from a worker.
public final class UACRegistry: Sendable {
    public enum State: String, Sendable { case idle, ongoing, online, failed }

    struct Entry: Sendable {
        var row: UACRegRow
        var state: State = .idle
        /// Unix seconds of the next REGISTER.
        var nextAt: Double
        /// Unix seconds the registration expires (online).
        var expiresAt: Double = 0
        var callID: String
        var cseq: UInt32 = 0
        var failures = 0
        var lastCode = 0
        var disabled: Bool { row.flags & 1 != 0 }
    }

    struct Settings: Sendable {
        var contactAddr: String
        var timerInterval: Int
        var retryInterval: Int
        var useDomain: Bool
        var usernameAVP: String?
        var passwordAVP: String?
        var realmAVP: String?

        init(_ c: ModuleConfiguration) {
            contactAddr = c[UACModule.regContactAddr]
            timerInterval = c[UACModule.regTimerInterval]
            retryInterval = c[UACModule.regRetryInterval]
            useDomain = c[UACModule.regUseDomain]
            usernameAVP = UACAuth.Settings.avpName(c[UACModule.authUsernameAVP])
            passwordAVP = UACAuth.Settings.avpName(c[UACModule.authPasswordAVP])
            realmAVP = UACAuth.Settings.avpName(c[UACModule.authRealmAVP])
        }
    }

    let source: (any UACRegistrationSource)?
    let settings: Settings
    private let entries = Mutex<[String: Entry]>([:])
    private let loaded = Atomic<Bool>(false)

    public init(config: ModuleConfiguration, source: (any UACRegistrationSource)?) {
        self.source = source
        settings = Settings(config)
    }

    /// True when rows come from somewhere (otherwise the uac_reg functions find nothing).
    public var isEnabled: Bool { source != nil }

    // MARK: Loading

    /// (Re)loads every row (`uac.reg_reload`): rows that stay keep their state; new ones register after
    /// their reg_delay. Returns the number of rows, or nil when the source failed.
    @discardableResult
    public func reload(now: Double) -> Int? {
        guard let source, let rows = try? source.uacRegistrations() else { return nil }
        loaded.store(true, ordering: .relaxed)
        entries.withLock { e in
            var next: [String: Entry] = [:]
            for r in rows where !r.l_uuid.isEmpty {
                if var old = e[r.l_uuid], old.row.r_domain == r.r_domain, old.row.r_username == r.r_username {
                    let wasDisabled = old.disabled
                    old.row = r
                    if wasDisabled && !old.disabled { old.nextAt = now }
                    next[r.l_uuid] = old
                } else {
                    next[r.l_uuid] = Entry(row: r, nextAt: now + Double(max(0, r.reg_delay)), callID: Self.newCallID())
                }
            }
            e = next
        }
        return rows.count
    }

    /// `uac_reg_refresh(l_uuid)`: reads that row again. 1 refreshed, 0 not in the table, -1 error.
    func refresh(_ uuid: String, now: Double) -> Int {
        guard let source, let rows = try? source.uacRegistrations() else { return -1 }
        guard let r = rows.first(where: { $0.l_uuid == uuid }) else { return 0 }
        entries.withLock { e in
            if var old = e[uuid] {
                old.row = r
                if !old.disabled && old.state != .ongoing { old.nextAt = now }
                e[uuid] = old
            } else {
                e[uuid] = Entry(row: r, nextAt: now + Double(max(0, r.reg_delay)), callID: Self.newCallID())
            }
        }
        return 1
    }

    static func newCallID() -> String {
        String(UInt64.random(in: 0...UInt64.max), radix: 36) + "@starling-uacreg"
    }

    // MARK: Lookups (KSR.uac.uac_reg_*)

    func entry(uuid: String) -> Entry? { entries.withLock { $0[uuid] } }

    func entry(user: String, domain: String?) -> Entry? {
        entries.withLock { e in
            e.values.first { $0.row.r_username == user && (domain == nil || $0.row.r_domain == domain) }
        }
    }

    /// Kamailio's uac_reg_status: 1 online, -2 ongoing, -3 disabled, -99 otherwise.
    static func status(_ e: Entry, now: Double) -> Int {
        if e.state == .online && e.expiresAt > now { return 1 }
        if e.state == .ongoing { return -2 }
        if e.disabled { return -3 }
        return -99
    }

    /// Sets or clears the disabled flag of the rows matching `attr` = `value`: 1, -1 none matched,
    /// -2 unknown attribute.
    func setDisabled(_ disabled: Bool, attr: String, value: String, now: Double) -> Int {
        let key: KeyPath<UACRegRow, String>
        switch attr {
        case "l_uuid": key = \.l_uuid
        case "l_username": key = \.l_username
        case "r_username": key = \.r_username
        case "auth_username": key = \.auth_username
        default: return -2
        }
        return entries.withLock { e in
            var found = false
            for (k, var v) in e where v.row[keyPath: key] == value {
                found = true
                if disabled { v.row.flags |= 1 } else { v.row.flags &= ~1 }
                v.nextAt = now + 1
                e[k] = v
            }
            return found ? 1 : -1
        }
    }

    /// Rows and states for `uac.reg_dump` (Kamailio's field names).
    public func dump(now: Double) -> [[String: KemiValue]] {
        entries.withLock { e in
            e.values.sorted { $0.row.l_uuid < $1.row.l_uuid }.map { x in
                let r = x.row
                return [
                    "l_uuid": .string(r.l_uuid), "l_username": .string(r.l_username), "l_domain": .string(r.l_domain),
                    "r_username": .string(r.r_username), "r_domain": .string(r.r_domain), "realm": .string(r.realm),
                    "auth_username": .string(r.auth_username), "auth_password": .string(r.auth_password),
                    "auth_proxy": .string(r.auth_proxy.isEmpty ? "none" : r.auth_proxy), "expires": .int(r.expires),
                    "flags": .int(r.flags), "diff_expires": .int(x.state == .online ? Int(x.expiresAt - now) : 0),
                    "timer_expires": .int(Int(x.expiresAt)), "reg_delay": .int(r.reg_delay),
                    "state": .string(x.disabled ? "disabled" : x.state.rawValue), "last_code": .int(x.lastCode),
                ]
            }
        }
    }

    // MARK: Registering

    /// The housekeeping job: loads the rows the first time, then hands each due registration to a worker.
    public func periodic(_ runtime: ModuleRuntime) {
        guard source != nil else { return }
        let now = runtime.clock.unixTime
        if !loaded.load(ordering: .relaxed) { reload(now: now) }
        let due: [String] = entries.withLock { e in
            var out: [String] = []
            for (k, var v) in e where !v.disabled && v.nextAt <= now {
                v.state = .ongoing
                // a watchdog: tm reports every outcome (a timeout too), this only catches a lost one
                v.nextAt = now + 120
                e[k] = v
                out.append(k)
            }
            return out
        }
        for uuid in due {
            runtime.tm.post { [self] ctx in self.register(ctx, runtime, uuid, challenge: nil) }
        }
    }

    /// Sends the REGISTER of `uuid` (with credentials for `challenge` when given).
    func register(_ ctx: RouteContext, _ runtime: ModuleRuntime, _ uuid: String,
                  challenge: (code: Int, value: UACAuth.Challenge)?) {
        guard let (row, callID, cseq) = entries.withLock({ e -> (UACRegRow, String, UInt32)? in
            guard var v = e[uuid] else { return nil }
            v.cseq += 1
            e[uuid] = v
            return (v.row, v.callID, v.cseq)
        }) else { return }
        guard !settings.contactAddr.isEmpty else {
            ctx.logger.error("uacreg: reg_contact_addr is not set; cannot register \(uuid)")
            failed(runtime, uuid, code: -1)
            return
        }
        let ruri = "sip:\(row.r_domain)"
        let aor = "sip:\(row.r_username)@\(row.r_domain)"
        var headers = "From: <\(aor)>;tag=\(String(callID.hashValue & 0xFFFFFF, radix: 16))\r\nTo: <\(aor)>\r\n"
            + "Call-ID: \(callID)\r\nCSeq: \(cseq) REGISTER\r\n"
            + "Contact: <sip:\(row.l_uuid)@\(settings.contactAddr)>\r\nExpires: \(row.expires)\r\n"
        if let (code, c) = challenge {
            if !row.realm.isEmpty && row.realm != c.realm {
                ctx.logger.error("uacreg: \(uuid): challenge realm \(c.realm) is not the row's realm \(row.realm)")
                failed(runtime, uuid, code: code)
                return
            }
            let cnonce = String(DigestHash.md5.hex(DigestHash.randomBytes(16)).prefix(16))
            guard let value = UACAuth.authorization(
                c, UACAuth.Credential(username: row.auth_username, realm: c.realm, password: row.auth_password),
                method: "REGISTER", uri: ruri, body: [], passwordIsHA1: false, cnonce: cnonce) else {
                ctx.logger.error("uacreg: \(uuid): unsupported digest algorithm \(c.algorithm ?? "")")
                failed(runtime, uuid, code: code)
                return
            }
            headers += "\(code == 401 ? "Authorization" : "Proxy-Authorization"): \(value)\r\n"
        }
        let store = runtime.tm
        let answered = challenge != nil
        let r = TMLocal.send(store, ctx, method: "REGISTER", ruri: ruri, nexthop: row.auth_proxy, headers: headers, body: [],
                             onReply: { [self] c, code, reply, _ in
                                 self.replied(c, runtime, uuid, code: code, reply: reply, answeredChallenge: answered)
                             })
        if r < 0 {
            ctx.logger.error("uacreg: \(uuid): the REGISTER to \(row.auth_proxy.isEmpty ? ruri : row.auth_proxy) could not be sent")
            failed(runtime, uuid, code: -1)
        }
    }

    func replied(_ ctx: RouteContext, _ runtime: ModuleRuntime, _ uuid: String, code: Int, reply: SIPMessage?,
                 answeredChallenge: Bool) {
        let now = runtime.clock.unixTime
        if (code == 401 || code == 407), !answeredChallenge, let reply {
            let name = code == 401 ? "WWW-Authenticate" : "Proxy-Authenticate"
            if let f = reply.headers(named: name).first(where: { UACAuth.parseChallenge(reply, $0) != nil }),
               let c = UACAuth.parseChallenge(reply, f) {
                register(ctx, runtime, uuid, challenge: (code, c))
                return
            }
        }
        guard code >= 200 && code < 300, let reply else {
            ctx.logger.warning("uacreg: \(uuid): REGISTER answered \(code)")
            failed(runtime, uuid, code: code)
            return
        }
        let contact = "sip:\(uuid)@\(settings.contactAddr)"
        var granted: Int? = nil
        for v in reply.values(.contact) {
            guard let na = reply.parseNameAddr(v), reply.string(na.uri) == contact else { continue }
            if let e = reply.param("expires", in: na.params) { granted = Int(reply.string(e)) }
        }
        if granted == nil, let e = reply.headerValue(.expires) { granted = Int(e.trimmingCharacters(" \t")) }
        entries.withLock { e in
            guard var v = e[uuid] else { return }
            let exp = granted ?? v.row.expires
            v.state = .online
            v.lastCode = code
            v.failures = 0
            v.expiresAt = now + Double(exp)
            // refresh before it runs out: reg_timer_interval ahead, at least half way
            v.nextAt = now + Double(max(1, exp - min(settings.timerInterval, exp / 2)))
            e[uuid] = v
        }
    }

    /// A failed attempt: retried after reg_retry_interval (default 30 s here), doubled per consecutive
    /// failure up to 10 times that.
    func failed(_ runtime: ModuleRuntime, _ uuid: String, code: Int) {
        let now = runtime.clock.unixTime
        entries.withLock { e in
            guard var v = e[uuid] else { return }
            v.state = .failed
            v.lastCode = code
            v.failures += 1
            let base = settings.retryInterval > 0 ? settings.retryInterval : 30
            v.nextAt = now + Double(min(base << min(v.failures - 1, 10), base * 10))
            e[uuid] = v
        }
    }
}
