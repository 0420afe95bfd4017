import SIPCore
import SIPTransport
import Synchronization

/// nathelper's keepalives, the part that needs usrloc: every `natping_interval` seconds, each
/// registered contact (only NATed ones with `ping_nated_only`) gets a SIP OPTIONS request when its
/// branch flags carry `sipping_bflag` and `sipping_from` is set, else a 4-byte UDP keepalive. Sent to
/// the contact's received address when it has one, through `ModuleRuntime.outbound`.
enum NATKeepalive {
    struct Settings: Sendable {
        var interval: Int
        var natedOnly: Bool
        var sippingFlag: Int
        var from: String?
        var method: String
        var natFlag: Int
    }

    final class State: Sendable {
        let settings: Settings
        let last = Atomic<Int>(0)
        let counter = Atomic<Int>(0)
        init(_ s: Settings, now: Int) {
            settings = s
            last.store(now, ordering: .relaxed)
        }
    }

    static func settings(_ c: ModuleConfiguration) -> Settings {
        Settings(interval: c[NathelperModule.natpingInterval],
                 natedOnly: c[NathelperModule.pingNatedOnly],
                 sippingFlag: c[NathelperModule.sippingBflag],
                 from: c[NathelperModule.sippingFrom].flatMap { $0.isEmpty ? nil : $0 },
                 method: c[NathelperModule.sippingMethod],
                 natFlag: c[UsrlocModule.natBflag])
    }

    /// Adds the keepalive job to the runtime when `natping_interval` is set.
    static func install(_ rt: ModuleRuntime) {
        let s = settings(rt.config)
        guard s.interval > 0 else { return }
        let state = State(s, now: rt.clock.unixSeconds)
        rt.addPeriodic { rt in
            let now = rt.clock.unixSeconds
            guard now - state.last.load(ordering: .relaxed) >= s.interval else { return }
            state.last.store(now, ordering: .relaxed)
            _ = run(rt, state, now: now)
        }
    }

    /// Where a contact is pinged: its received address, else its URI host and port (numeric only:
    /// the housekeeping thread does not resolve names).
    static func destination(_ c: LocationContact) -> SocketAddress? {
        let text = c.received ?? c.contact
        guard let u = SIPURI(text) else { return nil }
        var host = u.host
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        return SocketAddress(ip: host, port: u.port ?? 5060)
    }

    /// One round of pings. Returns how many datagrams went out.
    @discardableResult
    static func run(_ rt: ModuleRuntime, _ state: State, now: Int) -> Int {
        guard let out = rt.outbound else { return 0 }
        let s = state.settings
        var sent = 0
        for t in rt.usrloc.allTables {
            t.forEachContact { c in
                guard c.isValid(at: now) else { return }
                if s.natedOnly {
                    guard s.natFlag >= 0, c.cflags & (1 << s.natFlag) != 0 else { return }
                }
                guard let dst = destination(c) else { return }
                let bytes: [UInt8]
                if s.sippingFlag >= 0, c.cflags & (1 << s.sippingFlag) != 0, let from = s.from {
                    let n = state.counter.wrappingAdd(1, ordering: .relaxed).newValue
                    bytes = request(method: s.method, uri: c.contact, from: from, local: out.local, n: n, now: now)
                } else {
                    bytes = [0, 0, 0, 0]
                }
                if out.send(bytes, dst) { sent += 1 }
            }
        }
        return sent
    }

    /// The keepalive request (Kamailio's sipping request shape).
    static func request(method: String, uri: String, from: String, local: SocketAddress, n: Int, now: Int) -> [UInt8] {
        let tag = String(now, radix: 16) + "-" + String(n, radix: 16)
        let host = "\(local.uriHost):\(local.port)"
        let text = "\(method) \(uri) SIP/2.0\r\n"
            + "Via: SIP/2.0/UDP \(host);branch=z9hG4bKnp\(tag)\r\n"
            + "From: <\(from)>;tag=\(tag)\r\n"
            + "To: <\(uri)>\r\n"
            + "Call-ID: \(tag)-\(n)@\(local.ip)\r\n"
            + "CSeq: 1 \(method)\r\n"
            + "Max-Forwards: 70\r\n"
            + "Content-Length: 0\r\n\r\n"
        return Array(text.utf8)
    }
}
