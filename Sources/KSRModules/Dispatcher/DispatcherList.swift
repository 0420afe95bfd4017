import SIPCore
import SIPTransport
import StarlingKEMI

/// One destination of a dispatcher set, as Kamailio's `ds_dest_t`: the URI, its flags (the state
/// bits 1 inactive, 2 trying, 4 disabled, 8 probing; 16 no DNS), priority, attributes, and the
/// runtime data every worker shares (call load, failed/successful probe counter, latency).
struct DSDestination: Sendable {
    var uri: String {
        didSet { uriBytes = Array(uri.utf8) }
    }
    /// `uri` as bytes, for `$du` without a copy per call.
    private(set) var uriBytes: [UInt8] = []
    var host: String
    /// The URI's port, 0 when none is written (Kamailio's `port_no`: matches any source port).
    var port: Int
    /// The URI's `transport` parameter, nil when none (Kamailio's PROTO_NONE).
    var proto: SIPTransportProtocol?
    /// The host when it is a numeric address (brackets removed), for `ds_is_from_list`.
    var ip: String?
    var flags: Int
    var priority: Int
    var attrs: DSAttributes
    /// Where it comes from ("dispatcher.list:3", "rpc").
    var origin: String
    /// The flags the list gave (to tell an unchanged destination on reload).
    var listFlags: Int
    // Runtime, kept across a reload for an unchanged destination.
    var dload = 0
    var messageCount = 0
    var latency = DSLatency()
    var probesSent = 0
    var probesFailed = 0
    var probeStartedAt: Double = 0

    var isSkipped: Bool { DS.skip(flags) }

    init(uri: String, host: String, port: Int, proto: SIPTransportProtocol?, ip: String?, flags: Int, priority: Int,
         attrs: DSAttributes, origin: String, listFlags: Int) {
        self.uri = uri
        self.uriBytes = Array(uri.utf8)
        self.host = host
        self.port = port
        self.proto = proto
        self.ip = ip
        self.flags = flags
        self.priority = priority
        self.attrs = attrs
        self.origin = origin
        self.listFlags = listFlags
    }
}

/// The attributes of a destination (Kamailio's `ds_attrs_t`): the raw body and the known fields.
struct DSAttributes: Sendable, Equatable {
    var body: String?
    var duid = ""
    var maxload = 0
    var weight = 0
    var rweight = 0
    var socket = ""
    var sockname = ""
    var pingFrom = ""
    var obproxy = ""
    var congestionControl = 0
}

/// Kamailio's `ds_latency_stats_t` (ds_ping_latency_stats, algorithm 13).
struct DSLatency: Sendable {
    var stdev: Double = 0
    var m2: Double = 0
    var max = 0
    var min = 0
    var average: Double = 0
    var estimate: Int = 0
    var count = 0
    var timeout = 0

    mutating func initialise(_ latency: Int, count: Int) {
        stdev = 0; m2 = 0; max = latency; min = latency
        average = Double(latency); estimate = latency; self.count = count
    }

    /// Kamailio's `latency_stats_update` (online variance, EWMA estimate after 10 samples).
    mutating func update(_ latency: Int, alpha: Double) {
        if count < 2_097_152 { count += 1 } else { m2 -= m2 / Double(Swift.max(count, 1)) }
        if count == 1 { initialise(latency, count: 1) }
        if count > 10 && count < 10_000 && stdev < 0.5 { count = 10_000 }
        if min > latency { min = latency }
        if max < latency { max = latency }
        if count > 1 {
            let delta = Double(latency) - average
            average += delta / Double(Swift.max(count, 1))
            let delta2 = Double(latency) - average
            m2 += delta * delta2
            stdev = (m2 / Double(Swift.max(count - 1, 1))).squareRoot()
        }
        if count < 10 {
            estimate = Int(average)
        } else {
            estimate = Int(Double(estimate) * alpha + Double(latency) * (1 - alpha))
        }
    }
}

/// One set (Kamailio's `ds_set_t`): destinations ordered as Kamailio orders them (highest priority
/// first; for equal priorities, the later line first), the round-robin index and the 100-slot
/// weight tables.
struct DSSet: Sendable {
    var id: Int
    var dests: [DSDestination]
    var last = 0
    var wlist = [Int](repeating: 0, count: 100)
    var wlast = 0
    var rwlist = [Int](repeating: 0, count: 100)
    var rwlast = 0
    /// The `_dsdst_` record of each destination, prepared by the store (DispatcherStore.prepare).
    var records: [[String: [KemiValue]]] = []

    init(id: Int, dests: [DSDestination]) {
        self.id = id
        self.dests = dests
        initWeights()
        initRelativeWeights()
    }

    /// `dp_init_weights`: index j `weight` times (sum over 100 cut, under 100 filled with the last),
    /// shuffled. Nothing when the first destination has no weight.
    mutating func initWeights() {
        guard let first = dests.first, first.attrs.weight != 0 else { return }
        var t = 0
        outer: for (j, d) in dests.enumerated() {
            for _ in 0..<d.attrs.weight {
                if t >= 100 { break outer }
                wlist[t] = j
                t += 1
            }
        }
        while t < 100 { wlist[t] = dests.count - 1; t += 1 }
        wlist.shuffle()
    }

    /// `dp_init_relative_weights`: the active destinations' rweights as shares of 100, the rest to
    /// the last one inserted, shuffled. Needs two destinations at least.
    mutating func initRelativeWeights() {
        guard dests.count >= 2 else { return }
        let sum = dests.filter { !$0.isSkipped }.reduce(0) { $0 + $1.attrs.rweight }
        guard sum > 0 else { return }
        var t = 0
        for (j, d) in dests.enumerated() where !d.isSkipped {
            let slice = d.attrs.rweight * 100 / sum
            for _ in 0..<slice where t < 100 { rwlist[t] = j; t += 1 }
        }
        let lastInsert = t > 0 ? rwlist[t - 1] : dests.count - 1
        while t < 100 { rwlist[t] = lastInsert; t += 1 }
        rwlist.shuffle()
    }
}

/// Flag bits and small helpers shared by the dispatcher files (Kamailio's dispatch.h).
enum DS {
    static let inactive = 1, trying = 2, disabled = 4, probing = 8, noDNS = 16, statesAll = 31
    /// `ds_dns_mode` bits (dispatch.h DS_DNS_MODE_*).
    static let dnsInit = 1, dnsAlways = 2, dnsTimer = 4, dnsQSRV = 8
    static func skip(_ flags: Int) -> Bool { flags & (inactive | disabled) != 0 }

    /// Kamailio's `ds_get_hash` (core hash of two strings, bytes read as signed chars as on x86).
    static func hash(_ x: [UInt8]?, _ y: [UInt8]? = nil) -> UInt32 {
        if x == nil && y == nil { return 0 }
        var h: UInt32 = 0
        func mix(_ s: [UInt8]) {
            @inline(__always) func c(_ b: UInt8) -> UInt32 { UInt32(bitPattern: Int32(Int8(bitPattern: b))) }
            var p = 0
            if s.count >= 4 {
                while p <= s.count - 4 {
                    let v = (c(s[p]) << 24) &+ (c(s[p + 1]) << 16) &+ (c(s[p + 2]) << 8) &+ c(s[p + 3])
                    h = h &+ (v ^ (v >> 3))
                    p += 4
                }
            }
            var v: UInt32 = 0
            while p < s.count { v = (v << 8) &+ c(s[p]); p += 1 }
            h = h &+ (v ^ (v >> 3))
        }
        if let x { mix(x) }
        if let y { mix(y) }
        h = (h &+ (h >> 11)) &+ ((h >> 13) &+ (h >> 23))
        return h != 0 ? h : 1
    }

    /// `ds_parse_flags`: letters a (clear), i, d, t, p; -1 for anything else.
    static func parseStateLetters(_ s: String) -> Int {
        var flag = 0
        for ch in s {
            switch ch {
            case "a", "A": flag &= ~statesAll
            case "i", "I": flag |= inactive
            case "d", "D": flag |= disabled
            case "t", "T": flag |= trying
            case "p", "P": flag |= probing
            default: return -1
            }
        }
        return flag
    }

    /// The two-letter state Kamailio's dispatcher.list shows: A/I/D/T then P/X.
    static func stateText(_ flags: Int) -> String {
        let first = flags & inactive != 0 ? "I" : flags & disabled != 0 ? "D" : flags & trying != 0 ? "T" : "A"
        return first + (flags & probing != 0 ? "P" : "X")
    }
}

/// A line of the list (or a row, or an RPC add) that Starling refuses.
struct DSListError: Error, Sendable, CustomStringConvertible {
    let origin: String
    let message: String
    var description: String { "\(origin): \(message)" }
}

/// Reading Kamailio's list file format: `setid uri [flags [priority [attrs]]]`, `#` comments.
enum DSList {
    struct Entry: Sendable {
        var setid: Int
        var uri: String
        var flags: Int
        var priority: Int
        var attrs: String?
        var origin: String
    }

    /// Parses the whole text; the first bad line is an error naming `file:line`. Unknown attribute
    /// names are reported through `warn` (Kamailio keeps custom attributes for the script).
    static func parse(_ text: String, file: String, warn: (String) -> Void = { _ in }) throws(DSListError) -> [Entry] {
        var out: [Entry] = []
        var lineNo = 0
        for raw in text.split(separator: "\n", omittingEmptySubsequences: false) {
            lineNo += 1
            var line = Substring(raw)
            if let hash = line.firstIndex(of: "#") { line = line[..<hash] }
            let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\r" })
            if fields.isEmpty { continue }
            let origin = "\(file):\(lineNo)"
            func fail(_ m: String) -> DSListError { DSListError(origin: origin, message: m) }
            guard fields.count >= 2 else { throw fail("expected \"setid uri [flags] [priority] [attrs]\", got \"\(line.trimmingCharacters(" \t\r"))\"") }
            guard fields.count <= 5 else { throw fail("too many fields (expected \"setid uri [flags] [priority] [attrs]\")") }
            guard fields[0].allSatisfy(\.isASCIIDigit), let setid = Int(fields[0]) else {
                throw fail("set id \"\(fields[0])\" is not a non-negative integer")
            }
            var flags = 0, priority = 0
            if fields.count > 2 {
                guard fields[2].allSatisfy(\.isASCIIDigit), let f = Int(fields[2]) else { throw fail("flags \"\(fields[2])\" is not an integer") }
                flags = f
            }
            if fields.count > 3 {
                guard fields[3].allSatisfy(\.isASCIIDigit), let p = Int(fields[3]) else { throw fail("priority \"\(fields[3])\" is not an integer") }
                priority = p
            }
            let attrs = fields.count > 4 ? String(fields[4]) : nil
            let entry = Entry(setid: setid, uri: String(fields[1]), flags: flags, priority: priority, attrs: attrs, origin: origin)
            _ = try destination(entry, warn: warn)
            out.append(entry)
        }
        return out
    }

    static let knownAttributes: Set<String> = ["duid", "cc", "weight", "latency", "maxload", "socket", "sockname",
                                                "rweight", "ping_from", "obproxy"]

    /// A destination from an entry (Kamailio's `pack_dest` + `ds_set_attrs`), or the reason it is refused.
    static func destination(_ e: Entry, warn: (String) -> Void = { _ in }) throws(DSListError) -> DSDestination {
        func fail(_ m: String) -> DSListError { DSListError(origin: e.origin, message: m) }
        var uriText = e.uri
        var parsed = SIPURI(uriText)
        if parsed == nil || !["sip", "sips"].contains(parsed!.schemeName.lowercased()) {
            // Kamailio adds a missing "sip:" scheme.
            if !uriText.lowercased().hasPrefix("sip:"), !uriText.lowercased().hasPrefix("sips:"),
               let fixed = SIPURI("sip:" + uriText) {
                uriText = "sip:" + uriText
                parsed = fixed
            } else {
                throw fail("bad destination URI \"\(e.uri)\"")
            }
        }
        guard let u = parsed, !u.host.isEmpty else { throw fail("bad destination URI \"\(e.uri)\" (no host)") }
        guard !u.host.contains(where: { $0 == " " }) else { throw fail("bad destination URI \"\(e.uri)\"") }
        var proto: SIPTransportProtocol? = nil
        if let t = u.transport {
            switch t {
            case "udp": proto = .udp
            case "tcp": proto = .tcp
            case "tls": proto = .tls
            case "ws": proto = .ws
            case "wss": proto = .wss
            default: throw fail("unknown transport \"\(t)\" in \"\(e.uri)\"")
            }
        }
        var host = u.host
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        let ip = SocketAddress(ip: host, port: 0) != nil ? host : nil
        var attrs = DSAttributes()
        var initialLatency: Int? = nil
        if var body = e.attrs, !body.isEmpty {
            if body.hasSuffix(";") { body.removeLast() }
            attrs.body = body
            for part in body.split(separator: ";", omittingEmptySubsequences: true) {
                let kv = part.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                let name = kv[0].trimmingCharacters(" \t").lowercased()
                let value = kv.count > 1 ? String(kv[1].trimmingCharacters(" \t")) : ""
                guard !name.isEmpty else { throw fail("malformed attributes \"\(body)\" (expected name=value;...)") }
                func int(_ lo: Int? = nil, _ hi: Int? = nil) throws(DSListError) -> Int {
                    guard let n = Int(value) else { throw fail("attribute \(name)=\"\(value)\" is not an integer") }
                    if let lo, let hi, n < lo || n > hi { throw fail("attribute \(name)=\(n) is not in \(lo)-\(hi)") }
                    return n
                }
                switch name {
                case "duid": attrs.duid = value
                case "cc": attrs.congestionControl = try int()
                case "weight": attrs.weight = try int(1, 100)
                case "rweight": attrs.rweight = try int(1, 100)
                case "latency": initialLatency = try int()
                case "maxload": attrs.maxload = try int(0, Int(Int32.max))
                case "socket": attrs.socket = value
                case "sockname": attrs.sockname = value
                case "ping_from":
                    guard SIPURI(value) != nil else { throw fail("attribute ping_from=\"\(value)\" is not a SIP URI") }
                    attrs.pingFrom = value
                case "obproxy":
                    guard SIPURI(value) != nil else { throw fail("attribute obproxy=\"\(value)\" is not a SIP URI") }
                    attrs.obproxy = value
                default:
                    warn("\(e.origin): attribute \"\(name)\" is not one dispatcher uses (kept in attrs for the script)")
                }
            }
        }
        var d = DSDestination(uri: uriText, host: host, port: u.port ?? 0, proto: proto, ip: ip, flags: e.flags,
                              priority: e.priority, attrs: attrs, origin: e.origin, listFlags: e.flags)
        if let initialLatency { d.latency.initialise(initialLatency, count: 10_000) }
        return d
    }

    /// Sets from entries, ordered as Kamailio's `add_dest2list` + `reindex_dests` order them.
    static func build(_ entries: [Entry]) throws(DSListError) -> [Int: DSSet] {
        var bySet: [Int: [DSDestination]] = [:]
        var order: [Int] = []
        for e in entries {
            let d = try destination(e)
            if bySet[e.setid] == nil { order.append(e.setid) }
            bySet[e.setid, default: []].append(d)
        }
        var sets: [Int: DSSet] = [:]
        for (id, list) in bySet {
            // Kamailio keeps a list ascending by priority (a new entry after those with a priority <=
            // its own), then copies it backwards: highest priority first, later lines first.
            let ascending = list.enumerated().sorted { a, b in
                a.element.priority != b.element.priority ? a.element.priority < b.element.priority : a.offset < b.offset
            }.map(\.element)
            sets[id] = DSSet(id: id, dests: ascending.reversed())
        }
        return sets
    }
}

extension Character {
    var isASCIIDigit: Bool { ("0"..."9").contains(self) }
}
