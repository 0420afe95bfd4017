import Synchronization

/// The `auth` module parameters (`[modparam.auth]`), with Kamailio 5.6's defaults.
struct AuthSettings: Sendable {
    /// Seconds a nonce stays valid (`nonce_expire`, 300).
    var nonceExpire = 300
    /// Seconds a nonce may come from the future (`nonce_auth_max_drift`, 3).
    var maxDrift = 3
    /// `qop` ("", "auth", "auth-int"): the qop of challenges stored in `$digest_challenge`; nonce
    /// counting needs it.
    var qop = ""
    /// `nonce_count`: remember the last nc of each nonce and reject replays (only with `qop` set).
    var nonceCount = false
    /// `one_time_nonce`: each nonce authenticates one request.
    var oneTimeNonce = false
    /// `nc_array_size` / `nc_array_order` and `otn_in_flight_no` / `otn_in_flight_order`: how many
    /// nonces are tracked (a power of two, default 2^20).
    var ncArraySize = 1 << 20
    var otnInFlight = 1 << 20
    /// `auth_checks_register` / `auth_checks_no_dlg` / `auth_checks_in_dlg`: message parts bound to
    /// the nonce (1 Request-URI, 2 Call-ID, 4 From tag, 8 source IP).
    var checksRegister = 0
    var checksNoDialog = 0
    var checksInDialog = 0
    /// `force_stateless_reply`: challenges are sent statelessly even when a transaction exists.
    var forceStatelessReply = false
    /// `realm_prefix`: stripped from realms.
    var realmPrefix = ""
    /// `use_domain`: `pv_auth_check` also compares the domains.
    var useDomain = false
    /// `algorithm` (nil = "", i.e. MD5 and no `algorithm=` in challenges).
    var algorithm: DigestHash? = nil
    /// `challenge_attr`: the AVP name that receives challenges built by the check functions.
    var challengeAVP = "digest_challenge"
    /// `add_authinfo_hdr`: successful checks add an `Authentication-Info` header to the reply.
    var addAuthInfo = false
    var wwwHeader = "WWW-Authenticate"
    var proxyHeader = "Proxy-Authenticate"
    /// The `secret` halves: nonce integrity (secret1) and the extra checks (secret2).
    var secret1: [UInt8] = []
    var secret2: [UInt8] = []

    init(_ config: ModuleConfiguration) {
        typealias P = AuthModule
        func pow2(size: ModuleParameter<Int>, order: ModuleParameter<Int>) -> Int {
            if config.isSet(order), case let o = config[order], o > 0, o < 31 { return 1 << o }
            let s = max(config[size], 1)
            var p = 1
            while p * 2 <= s { p *= 2 }
            return p
        }
        nonceExpire = config[P.nonceExpire]
        maxDrift = config[P.nonceAuthMaxDrift]
        qop = config[P.qop]
        nonceCount = config[P.nonceCount] && !qop.isEmpty
        oneTimeNonce = config[P.oneTimeNonce]
        ncArraySize = pow2(size: P.ncArraySize, order: P.ncArrayOrder)
        otnInFlight = pow2(size: P.otnInFlightNo, order: P.otnInFlightOrder)
        checksRegister = config[P.checksRegister]
        checksNoDialog = config[P.checksNoDialog]
        checksInDialog = config[P.checksInDialog]
        forceStatelessReply = config[P.forceStatelessReply]
        realmPrefix = config[P.realmPrefix]
        useDomain = config[P.useDomain]
        let a = config[P.algorithm]
        if !a.isEmpty { algorithm = DigestHash(rawValue: a.uppercased()) ?? .md5 }
        if case let c = config[P.challengeAttr], c.hasPrefix("$") {
            var name = Substring(c.dropFirst())
            if name.hasPrefix("avp(") && name.hasSuffix(")") { name = name.dropFirst(4).dropLast() }
            if !name.isEmpty { challengeAVP = String(name) }
        }
        addAuthInfo = config[P.addAuthInfoHeader]
        wwwHeader = config[P.wwwChallengeHeader]
        proxyHeader = config[P.proxyChallengeHeader]
        if case let s = config[P.secret], !s.isEmpty {
            // Kamailio splits a configured secret in two halves when extra checks are on.
            let b = Array(s.utf8)
            if checksRegister != 0 || checksNoDialog != 0 || checksInDialog != 0 {
                let half = b.count - b.count / 2
                secret1 = Array(b[..<half])
                secret2 = Array(b[half...])
            } else {
                secret1 = b
                secret2 = b
            }
        } else {
            secret1 = DigestHash.randomBytes(32)
            secret2 = DigestHash.randomBytes(32)
        }
    }
}

/// The outcome of checking a nonce (Kamailio `check_nonce`).
enum NonceCheck: Equatable {
    case ok
    /// Not ours, tampered with or malformed (the request is not authenticated: -1).
    case invalid
    /// Expired, from the future, from a previous run, nc replayed or the bound message parts differ:
    /// the client is challenged again with `stale=true` (-4).
    case stale
    /// A one-time nonce used twice (-6).
    case reused
}

/// Nonces shared by every worker (Kamailio's auth module state in shared memory): stateless nonces
/// carrying their creation and expiry times and a keyed hash, plus the optional nonce-count and
/// one-time-nonce tables indexed by a nonce id.
public final class AuthNonces: Sendable {
    let settings: AuthSettings
    private let clock: ModuleClock
    /// When this instance started: older nonces are stale (they came from a previous run).
    private let upSince: Int
    /// The id of the last nonce handed out (nonce count / one-time nonce).
    private let lastID = Atomic<UInt32>(0)
    /// `nonce_count`: the last nc seen per id slot (0 = none yet).
    private let ncSlots: NonceSlots<UInt8>?
    /// `one_time_nonce`: one bit per id slot, set once used.
    private let otnSlots: NonceSlots<UInt64>?

    static let ncFlag: UInt8 = 0x01
    static let otnFlag: UInt8 = 0x02
    /// since(4) expire(4) id(4) flags(1) mac(16) [+ mac of the bound message parts (16)].
    static let baseLength = 29

    init(config: ModuleConfiguration, clock: ModuleClock) {
        settings = AuthSettings(config)
        self.clock = clock
        upSince = clock.unixSeconds
        ncSlots = settings.nonceCount ? NonceSlots(count: settings.ncArraySize) : nil
        otnSlots = settings.oneTimeNonce ? NonceSlots(count: max(1, settings.otnInFlight / 64)) : nil
    }

    var now: Int { clock.unixSeconds }

    /// A new nonce; `bound` is the text of the message parts the extra checks bind it to (nil: none).
    func newNonce(bound: [UInt8]?) -> String {
        let t = UInt32(truncatingIfNeeded: now)
        var id: UInt32 = 0
        var flags: UInt8 = 0
        if ncSlots != nil || otnSlots != nil {
            id = lastID.wrappingAdd(1, ordering: .relaxed).newValue
            if let ncSlots {
                let i = Int(id) & (settings.ncArraySize - 1)
                ncSlots.withLock { $0[i] = 0 }
                flags |= Self.ncFlag
            }
            if let otnSlots {
                let i = Int(id) & (settings.otnInFlight - 1)
                otnSlots.withLock { $0[i >> 6] &= ~(1 << UInt64(i & 63)) }
                flags |= Self.otnFlag
            }
        }
        var raw = [UInt8]()
        raw.reserveCapacity(Self.baseLength + 16)
        Self.append32(&raw, t)
        Self.append32(&raw, t &+ UInt32(truncatingIfNeeded: settings.nonceExpire))
        Self.append32(&raw, id)
        raw.append(flags)
        raw.append(contentsOf: mac(settings.secret1, raw))
        if let bound { raw.append(contentsOf: mac(settings.secret2, bound)) }
        return Base64.encode(raw)
    }

    /// Checks a nonce from credentials. `nc` is the credentials' nonce count (nil when absent);
    /// `update` records the nc / one-time use.
    func check(_ nonce: String, bound: [UInt8]?, nc: String?, update: Bool) -> NonceCheck {
        guard let raw = Base64.decode(nonce), raw.count >= Self.baseLength else { return .invalid }
        let since = Int(Self.read32(raw, 0)), expire = Int(Self.read32(raw, 4))
        let id = Self.read32(raw, 8), flags = raw[12]
        let t = now
        if since < upSince && since < t { return .stale }
        if since > t && since - t > settings.maxDrift { return .stale }
        guard Array(raw[13..<29]) == mac(settings.secret1, Array(raw[0..<13])) else { return .invalid }
        if otnSlots != nil && flags & Self.otnFlag == 0 { return .stale }
        var ncChecked = false
        if let ncSlots, flags & Self.ncFlag != 0, let nc, !nc.isEmpty {
            guard nc.utf8.count == 8, let value = UInt32(nc, radix: 16) else { return .invalid }
            guard lastID.load(ordering: .relaxed) &- id < UInt32(settings.ncArraySize), value <= 255 else { return .stale }
            let i = Int(id) & (settings.ncArraySize - 1)
            let fresh = ncSlots.withLock { slots -> Bool in
                guard value > UInt32(slots[i]) else { return false }
                if update { slots[i] = UInt8(value) }
                return true
            }
            guard fresh else { return .stale }
            ncChecked = true
        }
        if !ncChecked {
            if let otnSlots, flags & Self.otnFlag != 0 {
                guard lastID.load(ordering: .relaxed) &- id < UInt32(settings.otnInFlight) else { return .reused }
                let i = Int(id) & (settings.otnInFlight - 1)
                let bit: UInt64 = 1 << UInt64(i & 63)
                let fresh = otnSlots.withLock { slots -> Bool in
                    guard slots[i >> 6] & bit == 0 else { return false }
                    if update { slots[i >> 6] |= bit }
                    return true
                }
                guard fresh else { return .reused }
            }
            if let bound {
                guard raw.count == Self.baseLength + 16 else { return .invalid }
                guard Array(raw[29..<45]) == mac(settings.secret2, bound) else { return .stale }
            }
        }
        if expire < t { return .stale }
        return .ok
    }

    private func mac(_ secret: [UInt8], _ data: [UInt8]) -> [UInt8] {
        Array(DigestHash.sha256.digest(secret + data).prefix(16))
    }

    private static func append32(_ out: inout [UInt8], _ v: UInt32) {
        out.append(UInt8(v >> 24)); out.append(UInt8((v >> 16) & 0xFF))
        out.append(UInt8((v >> 8) & 0xFF)); out.append(UInt8(v & 0xFF))
    }

    private static func read32(_ b: [UInt8], _ o: Int) -> UInt32 {
        UInt32(b[o]) << 24 | UInt32(b[o + 1]) << 16 | UInt32(b[o + 2]) << 8 | UInt32(b[o + 3])
    }
}

/// A table of per-nonce-id state under one lock (the critical sections are a few instructions).
final class NonceSlots<Element: FixedWidthInteger & Sendable>: Sendable {
    private let slots: Mutex<[Element]>
    init(count: Int) { slots = Mutex([Element](repeating: 0, count: count)) }
    func withLock<R>(_ body: (inout [Element]) -> R) -> R { slots.withLock { body(&$0) } }
}

/// Standard base64 (RFC 4648) for nonces.
enum Base64 {
    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    static func encode(_ bytes: [UInt8]) -> String {
        var out = [UInt8]()
        out.reserveCapacity((bytes.count + 2) / 3 * 4)
        var i = 0
        while i < bytes.count {
            let b0 = UInt32(bytes[i])
            let b1 = i + 1 < bytes.count ? UInt32(bytes[i + 1]) : 0
            let b2 = i + 2 < bytes.count ? UInt32(bytes[i + 2]) : 0
            let n = b0 << 16 | b1 << 8 | b2
            out.append(alphabet[Int(n >> 18) & 63])
            out.append(alphabet[Int(n >> 12) & 63])
            out.append(i + 1 < bytes.count ? alphabet[Int(n >> 6) & 63] : UInt8(ascii: "="))
            out.append(i + 2 < bytes.count ? alphabet[Int(n) & 63] : UInt8(ascii: "="))
            i += 3
        }
        return String(decoding: out, as: UTF8.self)
    }

    static func decode(_ s: String) -> [UInt8]? {
        var out = [UInt8]()
        var acc: UInt32 = 0, bits = 0
        for c in s.utf8 {
            let v: UInt32
            switch c {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"): v = UInt32(c - UInt8(ascii: "A"))
            case UInt8(ascii: "a")...UInt8(ascii: "z"): v = UInt32(c - UInt8(ascii: "a")) + 26
            case UInt8(ascii: "0")...UInt8(ascii: "9"): v = UInt32(c - UInt8(ascii: "0")) + 52
            case UInt8(ascii: "+"): v = 62
            case UInt8(ascii: "/"): v = 63
            case UInt8(ascii: "="): continue
            default: return nil
            }
            acc = acc << 6 | v
            bits += 6
            if bits >= 8 {
                bits -= 8
                out.append(UInt8((acc >> UInt32(bits)) & 0xFF))
            }
        }
        return out
    }
}
