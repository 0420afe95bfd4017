import Glibc
import Logging
import SIPCore
import SIPTransport
import StarlingKEMI
import Synchronization

/// An ng command (Kamailio's `rtpe_operation` and its `command_strings`).
enum RtpengineOp: String, Sendable {
    case offer = "offer", answer = "answer", delete = "delete", query = "query", ping = "ping"
    case startRecording = "start recording", stopRecording = "stop recording"
    case blockDTMF = "block DTMF", unblockDTMF = "unblock DTMF"
    case blockMedia = "block media", unblockMedia = "unblock media"
    case silenceMedia = "silence media", unsilenceMedia = "unsilence media"
    case playMedia = "play media", stopMedia = "stop media"

    /// Commands whose from-tag is sent only when `directional` / `from-tag=` is given.
    var isMediaControl: Bool {
        switch self {
        case .blockDTMF, .unblockDTMF, .blockMedia, .unblockMedia, .silenceMedia, .unsilenceMedia: return true
        default: return false
        }
    }
}

/// The settings read once from the parameters.
struct RtpengineSettings: Sendable {
    var toutMs: Int
    var retr: Int
    var disableTout: Int
    var queriedLimit: Int
    var aggressiveRedetection: Bool
    var hashTableTout: Int
    var setidAVP: String?
    var defaultSet: Int
    /// `extra_id_pv`: the format whose value `via-branch=extra` sends.
    var extraIdPV: String? = nil
    /// `read_sdp_pv` / `write_sdp_pv`: the SDP offered/answered is read from / written to this
    /// variable instead of the message body.
    var readSDPPV: String? = nil
    var writeSDPPV: String? = nil
}

/// The module's process-wide state: the sets and instances, the call → instance table (so answer and
/// delete reach the instance that took the offer), the cookie sequence.
final class RtpengineState: Sendable {
    let sets: [RtpengineSet]
    let nodes: [RtpengineNode]
    let settings: RtpengineSettings
    let clock: ModuleClock
    let logger = Logger(label: "starling.rtpengine")
    /// Call-ID → via-branch ("" without one) → (instance index, expiry).
    private let calls = Mutex<[String: [String: (node: Int, expires: Int)]]>([:])
    private let sequence = Atomic<Int>(0)
    private let pid = Int(getpid())
    let commands = Atomic<Int>(0)
    let commandErrors = Atomic<Int>(0)

    init(sets: [RtpengineSet], settings: RtpengineSettings, clock: ModuleClock) {
        self.sets = sets
        self.nodes = sets.flatMap(\.nodes)
        self.settings = settings
        self.clock = clock
    }

    func findSet(_ id: Int) -> RtpengineSet? { sets.first { $0.id == id } }
    var defaultSet: RtpengineSet? { findSet(settings.defaultSet) }

    func cookie(worker: Int) -> [UInt8] {
        let n = sequence.wrappingAdd(1, ordering: .relaxed).oldValue
        return Array("\(pid)_\(worker)_\(n) ".utf8)
    }

    // MARK: Call table

    func lookup(_ callID: String, _ branch: String) -> RtpengineNode? {
        let now = clock.unixSeconds
        guard let i = calls.withLock({ t -> Int? in
            guard let e = t[callID]?[branch], e.expires > now else { return nil }
            return e.node
        }) else { return nil }
        return nodes.first { $0.index == i }
    }

    func remember(_ callID: String, _ branch: String, _ node: RtpengineNode) {
        let exp = clock.unixSeconds + settings.hashTableTout
        calls.withLock { t in
            if t[callID]?[branch] == nil { t[callID, default: [:]][branch] = (node.index, exp) }
        }
    }

    /// Deleting without a via-branch removes every entry of the call, as Kamailio's.
    func forget(_ callID: String, _ branch: String) {
        calls.withLock { t in
            if branch.isEmpty { t[callID] = nil } else {
                t[callID]?[branch] = nil
                if t[callID]?.isEmpty == true { t[callID] = nil }
            }
        }
    }

    var trackedCalls: Int { calls.withLock { $0.values.reduce(0) { $0 + $1.count } } }

    func purge() {
        let now = clock.unixSeconds
        calls.withLock { t in
            for (k, v) in t {
                let kept = v.filter { $0.value.expires > now }
                t[k] = kept.isEmpty ? nil : kept
            }
        }
    }

    // MARK: Sending

    /// One command to one instance: the decoded reply dictionary, or nil (logged) when it cannot be
    /// sent, times out or does not decode. `sockets` is the worker's (nil: a socket of its own).
    func send(_ node: RtpengineNode, _ dict: Bencode, worker: Int, sockets: RtpengineWorker?) -> (reply: Bencode?, reachable: Bool) {
        node.requests.add(1, ordering: .relaxed)
        commands.add(1, ordering: .relaxed)
        let socket = sockets?.socket(node) ?? NGSocket(node.address)
        let command = dict["command"]?.text ?? "?"
        switch socket.exchange(cookie: cookie(worker: worker), payload: dict.encoded, toutMs: settings.toutMs, retr: settings.retr) {
        case .failed(let why):
            node.failures.add(1, ordering: .relaxed)
            commandErrors.add(1, ordering: .relaxed)
            logger.error("rtpengine: command \"\(command)\" to RTPEngine <\(node.url)> failed: \(why)")
            return (nil, false)
        case .reply(let bytes):
            do throws(Bencode.DecodeError) {
                let v = try Bencode.decode(bytes)
                guard case .dict = v else {
                    commandErrors.add(1, ordering: .relaxed)
                    logger.error("rtpengine: reply of <\(node.url)> is not a dictionary")
                    return (nil, true)
                }
                return (v, true)
            } catch {
                commandErrors.add(1, ordering: .relaxed)
                let shown = String(decoding: bytes.prefix(200), as: UTF8.self)
                logger.error("rtpengine: failed to decode bencoded reply from <\(node.url)> (\(error)): \(shown)")
                return (nil, true)
            }
        }
    }

    /// Kamailio's `rtpp_test`: 0 (enabled) or 1 (still disabled). Pings a disabled instance whose
    /// recheck time has come (or any, when `force`).
    func test(_ node: RtpengineNode, force: Bool, worker: Int, sockets: RtpengineWorker?) -> Bool {
        let st = node.state
        if st.recheck == RtpengineNode.permanent { return true }
        if !force {
            if !st.disabled { return false }
            if st.recheck > clock.unixSeconds { return true }
        }
        let (reply, _) = send(node, .dict([("command", .string("ping"))]), worker: worker, sockets: sockets)
        guard let reply else {
            node.set(disabled: true, recheck: clock.unixSeconds + settings.disableTout)
            logger.error("rtpengine: proxy <\(node.url)> did not respond to ping")
            return true
        }
        guard reply["result"]?.text == "pong" else {
            logger.error("rtpengine: proxy <\(node.url)> responded with invalid response")
            return true
        }
        logger.info("rtpengine: rtpengine instance <\(node.url)> found, support for it \(force ? "" : "re-")enabled")
        node.set(disabled: false, recheck: 0)
        return false
    }

    /// A ping for the control API: true when it answers `pong`.
    func ping(_ node: RtpengineNode) -> Bool {
        let (reply, _) = send(node, .dict([("command", .string("ping"))]), worker: -1, sockets: nil)
        return reply?["result"]?.text == "pong"
    }

    // MARK: Selection (Kamailio's select_rtpp_node_new / select_rtpp_node)

    func selectNew(_ callID: String, in set: RtpengineSet, queried: [RtpengineNode], worker: Int,
                   sockets: RtpengineWorker?) -> RtpengineNode? {
        var sum = 0
        for b in callID.utf8 { sum &+= Int(Int8(bitPattern: b)) }
        let sumHashed = UInt32(truncatingIfNeeded: sum) & 0xff
        var forced = false
        while true {
            var weightSum = 0
            for n in set.nodes {
                let st = n.state
                var disabled = st.disabled
                if disabled && st.recheck <= clock.unixSeconds {
                    disabled = test(n, force: false, worker: worker, sockets: sockets)
                }
                if !disabled && !queried.contains(where: { $0 === n }) { weightSum += n.weight }
            }
            if weightSum == 0 {
                if !settings.aggressiveRedetection || forced { return nil }
                forced = true
                for n in set.nodes { _ = test(n, force: true, worker: worker, sockets: sockets) }
                continue
            }
            var cut = Int(sumHashed) % weightSum
            for n in set.nodes where !n.isDisabled && !queried.contains(where: { $0 === n }) {
                if cut < n.weight { return n }
                cut -= n.weight
            }
            return nil
        }
    }

    func select(_ callID: String, _ branch: String, in set: RtpengineSet, queried: [RtpengineNode], worker: Int,
                sockets: RtpengineWorker?) -> RtpengineNode? {
        var node = lookup(callID, branch)
        if let n = node, queried.contains(where: { $0 === n }) {
            logger.error("rtpengine: node for callid=\(callID) is known (\(n.url)) but it has already been queried")
            return nil
        }
        if node == nil || !set.contains(node!) {
            node = selectNew(callID, in: set, queried: queried, worker: worker, sockets: sockets)
            if node == nil {
                logger.error("rtpengine: failed to select new for callid=\(callID)")
                return nil
            }
        }
        return node!.isDisabled ? nil : node
    }
}

/// A worker's sockets (one per instance) and its set selection for the current message.
final class RtpengineWorker {
    private var sockets: [Int: NGSocket] = [:]
    /// The message `set_rtpengine_set` / `setid_avp` chose sets for (Kamailio's `current_msg_id`).
    weak var message: SIPMessage?
    var selected1: RtpengineSet?
    var selected2: RtpengineSet?
    var active: RtpengineSet?
    /// The SDP returned by the first set when two sets are selected (Kamailio's `body_intermediate`).
    var intermediate: [UInt8]?
    /// The SDP the last offer/answer sent and where it was in the message.
    var lastSource: RtpengineSDP?

    func socket(_ node: RtpengineNode) -> NGSocket {
        if let s = sockets[node.index] { return s }
        let s = NGSocket(node.address)
        sockets[node.index] = s
        return s
    }
}

// MARK: - Flags

/// The flags string parsed as Kamailio's `parse_flags`.
struct NGFlags {
    var via = 0
    var to = true
    var transport = 0
    var directional = false
    var callID: String?
    var fromTag: String?
    var toTag: String?
    var dict: [(key: String, value: Bencode)] = []
    var flags: [Bencode] = []
    var direction: [Bencode] = []
    var replace: [Bencode] = []
    var rtcpMux: [Bencode] = []
    var sdes: [Bencode] = []
    var t38: [Bencode] = []
    var codec: [(key: String, value: Bencode)] = []

    static let transports: [Int: String] = [0: "RTP/AVP", 1: "RTP/SAVP", 2: "RTP/AVPF", 3: "RTP/SAVPF", 4: "UDP/TLS/RTP/SAVP", 6: "UDP/TLS/RTP/SAVPF"]

    /// "foo-bar" or "foo=bar" → "bar" (Kamailio's `str_key_val_prefix`).
    static func keyValPrefix(_ key: Substring, _ val: Substring?, _ q: String) -> Substring? {
        if key == q { if let v = val, !v.isEmpty { return v } else { return nil } }
        guard key.hasPrefix(q) else { return nil }
        let rest = key.dropFirst(q.count)
        guard rest.count >= 2, rest.first == "-" else { return nil }
        return rest.dropFirst()
    }

    /// Parses `text`; `op` may change (`force-answer`). Returns an error message for bad values.
    mutating func parse(_ text: String, op: inout RtpengineOp) -> String? {
        var codecLists: [String: [Bencode]] = [:]
        var codecOrder: [String] = []
        for word in text.split(separator: " ", omittingEmptySubsequences: true) {
            var key = word
            var val: Substring? = nil
            if let eq = word.firstIndex(of: "=") {
                key = word[..<eq]
                val = word[word.index(after: eq)...]
            }
            if key.isEmpty { break }
            if let s = Self.keyValPrefix(key, val, "replace") { replace.append(.string(String(s))); continue }
            if let s = Self.keyValPrefix(key, val, "SDES") { sdes.append(.string(String(s))); continue }
            if let s = Self.keyValPrefix(key, val, "T38") ?? Self.keyValPrefix(key, val, "T.38") { t38.append(.string(String(s))); continue }
            if let s = Self.keyValPrefix(key, val, "rtcp-mux") { rtcpMux.append(.string(String(s))); continue }
            var codecHit = false
            for (a, b, name) in [("transcode", "codec-transcode", "transcode"), ("codec-strip", nil, "strip"),
                                 ("codec-offer", nil, "offer"), ("codec-mask", nil, "mask"), ("codec-set", nil, "set"),
                                 ("codec-except", nil, "except")] as [(String, String?, String)] {
                if let s = Self.keyValPrefix(key, val, a) ?? b.flatMap({ Self.keyValPrefix(key, val, $0) }) {
                    if codecLists[name] == nil { codecOrder.append(name) }
                    codecLists[name, default: []].append(.string(String(s)))
                    codecHit = true
                    break
                }
            }
            if codecHit { continue }
            let k = String(key)
            switch k {
            case "RTP" where val == nil: transport |= 0x100; transport &= ~0x001; continue
            case "AVP" where val == nil: transport |= 0x100; transport &= ~0x002; continue
            case "TOS" where val != nil: dict.append(("TOS", .int(Int(val!.prefix { $0.isNumber }) ?? 0))); continue
            case "SRTP" where val == nil: transport |= 0x101; continue
            case "AVPF" where val == nil: transport |= 0x102; continue
            case "DTLS" where val == nil: transport |= 0x104; continue
            case "to-tag":
                if let v = val { toTag = String(v) }
                to = true
                continue
            case "RTP/AVP" where val == nil: transport = 0x100; continue
            case "call-id":
                guard let v = val else { return "error processing flag `call-id': missing value" }
                callID = String(v)
                continue
            case "internal", "external": direction.append(.string(k)); continue
            case "RTP/AVPF" where val == nil: transport = 0x102; continue
            case "RTP/SAVP" where val == nil: transport = 0x101; continue
            case "from-tag":
                guard let v = val else { return "error processing flag `from-tag': missing value" }
                fromTag = String(v)
                directional = true
                continue
            case "RTP/SAVPF" where val == nil: transport = 0x103; continue
            case "direction": direction.append(.string(String(val ?? ""))); continue
            case "via-branch":
                guard let v = val else { return "error processing flag `via-branch': missing value" }
                switch v {
                case _ where v.first == "1" || v.first == "2": via = v.first == "1" ? 1 : 2
                case "auto": via = 3
                case "extra": via = -1
                case "next": via = -2
                case "auto-next", "next-auto": via = -3
                case "auto-extra", "extra-auto": via = -4
                default: return "error processing flag `via-branch' (value '\(v)'): invalid value"
                }
                continue
            case "repacketize":
                guard let v = val else { return "error processing flag `repacketize': missing value" }
                let n = Int(v.prefix { $0.isNumber }) ?? 0
                if n == 0 { return "error processing flag `repacketize' (value '\(v)'): invalid value" }
                dict.append(("repacketize", .int(n)))
                continue
            case "directional": directional = true; continue
            case "force-answer":
                guard op == .offer else { return "error processing flag `force-answer': cannot force answer in non-offer command" }
                op = .answer
                continue
            case "delete-delay" where val != nil:
                // as Kamailio's: the integer "delete delay", and then the generic "delete-delay" string too
                dict.append(("delete delay", .int(Int(val!.prefix { $0.isNumber }) ?? 0)))
            case "UDP/TLS/RTP/SAVP" where val == nil: transport = 0x104; continue
            case "UDP/TLS/RTP/SAVPF" where val == nil: transport = 0x106; continue
            default: break
            }
            // generic: a word is a flag, key=value a dictionary entry (unknown words pass through)
            if let v = val { dict.append((k, .string(String(v)))) } else { flags.append(.string(k)) }
        }
        codec = codecOrder.map { ($0, .list(codecLists[$0]!)) }
        return nil
    }
}

// MARK: - The module

enum RtpengineModule {
    /// The command sent for `op` with `flags` on the current message, and the reply dictionary whose
    /// `result` is `ok` (Kamailio's `rtpp_function_call_ok`); nil (logged) otherwise.
    static func call(_ ctx: RouteContext, _ st: RtpengineState, _ op: RtpengineOp, _ flagsText: String?,
                     sdpOut: inout [UInt8]?) -> Bencode? {
        guard let m = ctx.message else { return nil }
        var op = op
        var ng = NGFlags()
        // Call-ID and tags from the message
        guard let cidRange = m.callID, !cidRange.isEmpty else {
            ctx.logger.error("rtpengine: can't get Call-Id field")
            return nil
        }
        ng.callID = m.string(cidRange)
        ng.toTag = m.toTag.map { m.string($0) }
        guard let ft = m.fromTag.map({ m.string($0) }), !ft.isEmpty else {
            ctx.logger.error("rtpengine: can't get From tag")
            return nil
        }
        ng.fromTag = ft
        var dict: [(key: String, value: Bencode)] = [("supports", .list([.string("load limit")]))]
        let worker = ctx.worker.local(RtpengineWorker.self) { RtpengineWorker() }
        worker.lastSource = nil
        if op == .offer || op == .answer {
            let source: RtpengineSDP
            if let name = st.settings.readSDPPV {
                guard let pv = ctx.pvCache.spec(name), let bytes = pvBytes(ctx, m, pv) else {
                    ctx.logger.error("rtpengine: error getting pvar value <\(name)>")
                    return nil
                }
                source = RtpengineSDP(bytes: bytes, range: nil, kind: .sdp)
            } else {
                guard let found = RtpengineSDP.extract(ctx, m) else {
                    ctx.logger.error("rtpengine: can't extract body from the message")
                    return nil
                }
                source = found
            }
            worker.lastSource = source
            dict.append(("sdp", .bytes(worker.intermediate ?? source.bytes)))
        }
        ng.to = op != .delete
        if let text = flagsText, let err = ng.parse(text, op: &op) {
            ctx.logger.error("rtpengine: \(err)")
            return nil
        }
        // a trickle ICE SDP fragment
        if worker.lastSource?.kind == .fragment { ng.flags.append(.string("fragment")) }
        dict += ng.dict
        if !ng.direction.isEmpty { dict.append(("direction", .list(ng.direction))) }
        if !ng.flags.isEmpty { dict.append(("flags", .list(ng.flags))) }
        if !ng.replace.isEmpty { dict.append(("replace", .list(ng.replace))) }
        if !ng.codec.isEmpty { dict.append(("codec", .dict(ng.codec))) }
        if ng.transport & 0x100 != 0, let t = NGFlags.transports[ng.transport & 0x007] {
            dict.append(("transport-protocol", .string(t)))
        }
        if !ng.rtcpMux.isEmpty { dict.append(("rtcp-mux", .list(ng.rtcpMux))) }
        if !ng.sdes.isEmpty { dict.append(("SDES", .list(ng.sdes))) }
        if !ng.t38.isEmpty { dict.append(("T.38", .list(ng.t38))) }
        let callID = ng.callID ?? ""
        dict.append(("call-id", .string(callID)))
        var branch = ""
        if ng.via != 0 {
            var via = ng.via
            switch via {
            case 3: via = m.isRequest ? 1 : 2
            case -3: via = m.isRequest ? -2 : 1
            case -4: via = m.isRequest ? -1 : 1
            default: break
            }
            switch via {
            case 1, 2:
                let vias = m.values(.via)
                if vias.count >= via, let v = m.parseVia(vias[via - 1]), let b = v.branch { branch = m.string(b) }
            case -1:
                // extra_id_pv's value
                if let format = st.settings.extraIdPV { branch = XLogModule.render(ctx, format) }
            case -2:
                // the branch Kamailio's tm would build for the next branch of this request
                let index = TMRelay.current(ctx).map { c in c.locked { c.branches.count } } ?? 0
                branch = RtpengineNextBranch.make(m, branchIndex: index) ?? ""
            default: break
            }
            guard !branch.isEmpty else {
                ctx.logger.error("rtpengine: can't get Via branch/extra ID")
                return nil
            }
            dict.append(("via-branch", .string(branch)))
        }
        let src = ctx.received.source
        dict.append(("received-from", .list([.string(src.family == .inet ? "IP4" : "IP6"), .string(src.ip)])))
        if op.isMediaControl {
            if ng.directional, let f = ng.fromTag { dict.append(("from-tag", .string(f))) }
        } else if (m.isRequest && op != .answer) || (!m.isRequest && (op == .delete || op == .answer)) || ng.directional {
            dict.append(("from-tag", .string(ng.fromTag ?? "")))
            if ng.to, let t = ng.toTag, !t.isEmpty { dict.append(("to-tag", .string(t))) }
        } else {
            guard let t = ng.toTag, !t.isEmpty else {
                ctx.logger.error("rtpengine: No to-tag present")
                return nil
            }
            dict.append(("from-tag", .string(t)))
            dict.append(("to-tag", .string(ng.fromTag ?? "")))
        }
        dict.append(("command", .string(op.rawValue)))
        let request = Bencode.dict(dict)

        // the set for this message
        if worker.message !== m { worker.active = st.defaultSet }
        guard let set = worker.active ?? st.defaultSet else {
            ctx.logger.error("rtpengine: script error - no valid set selected")
            return nil
        }
        var queried: [RtpengineNode] = []
        while true {
            if queried.count >= st.settings.queriedLimit {
                ctx.logger.error("rtpengine: queried nodes limit reached")
                return nil
            }
            guard let node = st.select(callID, branch, in: set, queried: queried, worker: ctx.worker.index, sockets: worker) else {
                ctx.logger.error("rtpengine: no available proxies")
                return nil
            }
            let (reply, reachable) = st.send(node, request, worker: ctx.worker.index, sockets: worker)
            queried.append(node)
            if !reachable {
                if node.state.recheck != RtpengineNode.permanent {
                    node.set(disabled: true, recheck: st.clock.unixSeconds + st.settings.disableTout)
                }
                continue
            }
            guard let reply else { return nil }
            guard let result = reply["result"]?.text else {
                ctx.logger.error("rtpengine: No 'result' dictionary entry in response from proxy \(node.url)")
                return nil
            }
            if result == "load limit" {
                ctx.logger.info("rtpengine: proxy \(node.url) has reached its load limit - trying next one")
                continue
            }
            if result == "error" {
                let reason = reply["error-reason"]?.text
                if reason == "Parallel session limit reached" || reason == "Ran out of ports" {
                    ctx.logger.warning("rtpengine: proxy \(node.url): \(reason!)")
                    continue
                }
                ctx.logger.error("rtpengine: proxy replied with error: \(reason ?? "(no error-reason)")")
                return nil
            }
            st.remember(callID, branch, node)
            if op == .delete { st.forget(callID, branch) }
            guard result == "ok" else {
                ctx.logger.error("rtpengine: proxy didn't return \"ok\" result")
                return nil
            }
            if op == .offer || op == .answer { sdpOut = reply["sdp"]?.byteString }
            return reply
        }
    }

    /// A variable's value as bytes (read_sdp_pv); nil when it is unset.
    static func pvBytes(_ ctx: RouteContext, _ m: SIPMessage, _ pv: PseudoVariable) -> [UInt8]? {
        switch PVEngine.get(ctx, pv) {
        case .null: return nil
        case .int(let i): return Array(String(i).utf8)
        case .bytes(let r): return m.bytes(r)
        case .string(let s): return Array(s.utf8)
        }
    }

    /// Kamailio's `rtpengine_rtpp_set_wrap`: runs `body` on the set chosen for direction 1 (offer side)
    /// or 2 (answer side), then on the other set when two are selected.
    static func wrap(_ ctx: RouteContext, _ st: RtpengineState, direction: Int,
                     _ body: (_ more: Bool) -> Int) -> Int {
        let w = ctx.worker.local(RtpengineWorker.self) { RtpengineWorker() }
        w.intermediate = nil
        guard setFromAVP(ctx, st, w, direction: direction) else { return -1 }
        let more = w.message === ctx.message && w.selected2 != nil && w.selected2 !== w.selected1
        let r = body(more)
        if r < 0 || !more { w.intermediate = nil; return r }
        guard setFromAVP(ctx, st, w, direction: direction == 1 ? 2 : 1) else { return -1 }
        let r2 = body(false)
        w.intermediate = nil
        return r2
    }

    static func setFromAVP(_ ctx: RouteContext, _ st: RtpengineState, _ w: RtpengineWorker, direction: Int) -> Bool {
        if let name = st.settings.setidAVP, let v = ctx.avps[name]?.first {
            guard case .int(let id) = v else {
                ctx.logger.error("rtpengine: setid_avp must hold an integer value")
                return false
            }
            guard let s = st.findSet(id) else {
                ctx.logger.error("rtpengine: could not locate engine set \(id)")
                return false
            }
            w.message = ctx.message
            w.active = s
            return true
        }
        let mine = w.message === ctx.message
        let s1 = mine ? w.selected1 : nil
        let s2 = mine ? w.selected2 : nil
        w.active = (direction == 1 || s2 == nil) ? s1 : s2
        if !mine { w.active = st.defaultSet }
        return true
    }

    /// offer/answer: the SDP replaced with rtpengine's (a body edit: `$rb` still reads the received one).
    static func offerAnswer(_ ctx: RouteContext, _ st: RtpengineState, _ op: RtpengineOp, _ flags: String?, more: Bool) -> Int {
        var sdp: [UInt8]? = nil
        guard call(ctx, st, op, flags, sdpOut: &sdp) != nil else { return -1 }
        guard let sdp else {
            ctx.logger.error("rtpengine: failed to extract sdp body from proxy reply")
            return -1
        }
        let w = ctx.worker.local(RtpengineWorker.self) { RtpengineWorker() }
        if more {
            w.intermediate = sdp
            return 1
        }
        guard let m = ctx.message else { return -1 }
        if let name = st.settings.writeSDPPV {
            // write_sdp_pv: the new SDP goes to the variable, the message keeps its body
            guard let pv = ctx.pvCache.spec(name), PVEngine.set(ctx, pv, .string(String(decoding: sdp, as: UTF8.self))) else {
                ctx.logger.error("rtpengine: error setting pvar <\(name)>")
                return -1
            }
        } else if let range = w.lastSource?.range, range != m.bodyRange {
            // the SDP part of a multipart body: only that part is replaced
            m.replaceBytes(range, with: sdp)
        } else {
            // the whole body (with read_sdp_pv too, as Kamailio's)
            m.setBody(sdp)
        }
        return 1
    }

    static func simple(_ ctx: RouteContext, _ st: RtpengineState, _ op: RtpengineOp, _ flags: String?) -> Int {
        var none: [UInt8]? = nil
        return call(ctx, st, op, flags, sdpOut: &none) == nil ? -1 : 1
    }

    /// rtpengine_manage: offer, answer or delete from the method, the status and the route type.
    static func manage(_ ctx: RouteContext, _ st: RtpengineState, _ flags: String?) -> Int {
        if ctx.routeType == .branchFailure { return 1 }
        guard let m = ctx.message else { return -1 }
        guard let method = m.cseq?.method else {
            ctx.logger.error("rtpengine: no CSEQ header")
            return -1
        }
        switch method {
        case .invite, .ack, .cancel, .bye, .update, .prack: break
        default: return -1
        }
        if method == .cancel || method == .bye { return simple(ctx, st, .delete, flags) }
        let hasSDP = RtpengineSDP.present(m)
        if m.isRequest {
            if (method == .ack || method == .prack) && hasSDP { return offerAnswer(ctx, st, .answer, flags, more: false) }
            if method == .update && hasSDP { return offerAnswer(ctx, st, .offer, flags, more: false) }
            if method == .invite && hasSDP {
                if ctx.routeType == .failure { return simple(ctx, st, .delete, flags) }
                return offerAnswer(ctx, st, .offer, flags, more: false)
            }
        } else {
            if m.statusCode >= 300 { return simple(ctx, st, .delete, flags) }
            if hasSDP {
                if method == .update { return offerAnswer(ctx, st, .answer, flags, more: false) }
                guard let cell = TMRelay.current(ctx) else { return offerAnswer(ctx, st, .answer, flags, more: false) }
                let req = cell.locked { cell.request }
                return offerAnswer(ctx, st, RtpengineSDP.present(req) ? .answer : .offer, flags, more: false)
            }
        }
        return -1
    }

    static func setSets(_ ctx: RouteContext, _ st: RtpengineState, _ ids: [Int]) -> Int {
        var chosen: [RtpengineSet] = []
        for id in ids {
            guard let s = st.findSet(id) else {
                ctx.logger.error("rtpengine: rtpp_proxy set \(id) not configured")
                return -1
            }
            chosen.append(s)
        }
        let w = ctx.worker.local(RtpengineWorker.self) { RtpengineWorker() }
        w.message = ctx.message
        w.selected1 = chosen[0]
        w.selected2 = chosen.count > 1 ? chosen[1] : nil
        w.active = nil
        for s in chosen where !s.nodes.contains(where: { !$0.isDisabled }) {
            ctx.logger.warning("rtpp: selected proxy set ID \(s.id) but it has no active node.")
            return -2
        }
        return 1
    }

    static func exports(_ runtime: ModuleRuntime) -> [KemiExport] {
        let st = state(runtime)
        var rows: [KemiExport] = []
        @Sendable func flagsArg(_ args: KemiArgs) -> String? {
            let s = args.str(0)
            return s.isEmpty ? nil : s
        }
        // offer/answer/delete/query/manage, with flags and the 0 forms
        rows.append(KemiExport("rtpengine", "rtpengine_manage0", [], returns: .int) { ctx, _ in
            .int(wrap(ctx, st, direction: 1) { _ in manage(ctx, st, nil) })
        })
        rows.append(KemiExport("rtpengine", "rtpengine_manage", [.str], returns: .int) { ctx, a in
            let f = flagsArg(a)
            return .int(wrap(ctx, st, direction: 1) { _ in manage(ctx, st, f) })
        })
        for (name, dir, op) in [("rtpengine_offer", 1, RtpengineOp.offer), ("rtpengine_answer", 2, .answer)] {
            rows.append(KemiExport("rtpengine", name + "0", [], returns: .int) { ctx, _ in
                .int(wrap(ctx, st, direction: dir) { more in offerAnswer(ctx, st, op, nil, more: more) })
            })
            rows.append(KemiExport("rtpengine", name, [.str], returns: .int) { ctx, a in
                let f = flagsArg(a)
                return .int(wrap(ctx, st, direction: dir) { more in offerAnswer(ctx, st, op, f, more: more) })
            })
        }
        for (name, op) in [("rtpengine_delete", RtpengineOp.delete), ("rtpengine_query", .query),
                           ("block_media", .blockMedia), ("unblock_media", .unblockMedia),
                           ("silence_media", .silenceMedia), ("unsilence_media", .unsilenceMedia),
                           ("block_dtmf", .blockDTMF), ("unblock_dtmf", .unblockDTMF), ("stop_media", .stopMedia)] {
            rows.append(KemiExport("rtpengine", name + "0", [], returns: .int) { ctx, _ in
                .int(wrap(ctx, st, direction: 1) { _ in simple(ctx, st, op, nil) })
            })
            rows.append(KemiExport("rtpengine", name, [.str], returns: .int) { ctx, a in
                let f = flagsArg(a)
                return .int(wrap(ctx, st, direction: 1) { _ in simple(ctx, st, op, f) })
            })
        }
        rows.append(KemiExport("rtpengine", "play_media", [.str], returns: .int) { ctx, a in
            let f = flagsArg(a)
            return .int(wrap(ctx, st, direction: 1) { _ in simple(ctx, st, .playMedia, f) })
        })
        rows.append(KemiExport("rtpengine", "start_recording", [], returns: .int) { ctx, _ in
            .int(wrap(ctx, st, direction: 1) { _ in simple(ctx, st, .startRecording, nil) })
        })
        rows.append(KemiExport("rtpengine", "stop_recording", [], returns: .int) { ctx, _ in
            .int(wrap(ctx, st, direction: 1) { _ in simple(ctx, st, .stopRecording, nil) })
        })
        rows.append(KemiExport("rtpengine", "rtpengine_query_v", [.str, .str], returns: .int) { ctx, a in
            let fmt = a.str(0)
            guard let pv = ctx.pvCache.spec(a.str(1)) else {
                ctx.logger.error("rtpengine: failed to get pv spec for: \(a.str(1))")
                return .int(-1)
            }
            return .int(wrap(ctx, st, direction: 1) { _ in
                var none: [UInt8]? = nil
                guard let reply = call(ctx, st, .query, nil, sdpOut: &none) else { return -1 }
                guard let f = fmt.first, f == "j" || f == "J" else {
                    ctx.logger.error("rtpengine: invalid format parameter value: \(fmt)")
                    return -1
                }
                let pretty = fmt.count > 1 && (fmt.dropFirst().first == "p" || fmt.dropFirst().first == "P")
                _ = PVEngine.set(ctx, pv, .string(reply.json(pretty: pretty)))
                return 1
            })
        })
        rows.append(KemiExport("rtpengine", "set_rtpengine_set", [.int], returns: .int) { ctx, a in
            .int(setSets(ctx, st, [a.int(0)]))
        })
        rows.append(KemiExport("rtpengine", "set_rtpengine_set2", [.int, .int], returns: .int) { ctx, a in
            .int(setSets(ctx, st, [a.int(0), a.int(1)]))
        })
        return rows
    }

    static func state(_ runtime: ModuleRuntime) -> RtpengineState {
        runtime.state(RtpengineState.self) {
            let c = runtime.config
            let settings = RtpengineSettings(
                toutMs: c[toutMs], retr: c[retr], disableTout: c[disableTout], queriedLimit: c[queriedLimit],
                aggressiveRedetection: c[aggressive], hashTableTout: c[hashTableTout],
                setidAVP: c[setidAVP].flatMap(PermissionsModule.avpName), defaultSet: c[setidDefault],
                extraIdPV: c[extraIdPV], readSDPPV: c[readSDPPV], writeSDPPV: c[writeSDPPV])
            let sets = (try? RtpengineSet.parse(c[sock], defaultSet: settings.defaultSet)) ?? []
            return RtpengineState(sets: sets, settings: settings, clock: runtime.clock)
        }
    }
}

extension RtpengineModule: KSRModule {
    static let name = "rtpengine"
    static let summary = "Media relay through rtpengine's ng control protocol (offer/answer/delete, media control)."
    static func positive(_ n: Int) -> String? { n > 0 ? nil : "expected a positive integer" }
    static let sock = ModuleParameter.list("rtpengine", "rtpengine_sock",
                                           "Instances: `[set ==] udp:IP:port[=weight] ...` (repeat for more sets).") { v in
        do throws(RtpengineSockError) { _ = try RtpengineSet.parse([v], defaultSet: 0); return nil } catch { return error.message }
    }
    static let toutMs = ModuleParameter.int("rtpengine", "rtpengine_tout_ms", 1000, "Milliseconds to wait for a reply, per try.", check: positive)
    static let retr = ModuleParameter.int("rtpengine", "rtpengine_retr", 5, "Tries (sends) per command before an instance counts as down.", check: positive)
    static let disableTout = ModuleParameter.int("rtpengine", "rtpengine_disable_tout", 60, "Seconds an instance that stopped answering stays disabled.")
    static let queriedLimit = ModuleParameter.int("rtpengine", "queried_nodes_limit", 30, in: 1...30, "Instances tried per command.")
    static let aggressive = ModuleParameter.flag("rtpengine", "aggressive_redetection", true, "Ping every instance when all seem down.")
    static let hashTableTout = ModuleParameter.int("rtpengine", "hash_table_tout", 3600, "Seconds a call stays bound to its instance.", check: positive)
    static let setidAVP = ModuleParameter.optionalStr("rtpengine", "setid_avp", "An AVP (`$avp(name)`) holding the set id to use, when set.")
    static let setidDefault = ModuleParameter.int("rtpengine", "setid_default", 0, "The set of instances given without `id ==`.")
    static let extraIdPV = ModuleParameter.optionalStr("rtpengine", "extra_id_pv",
                                                       "The value (a pseudo-variable format) `via-branch=extra` sends as via-branch.")
    static let readSDPPV = ModuleParameter.optionalStr("rtpengine", "read_sdp_pv",
                                                       "An AVP or `$var` holding the SDP offer/answer send instead of the body (the reply's SDP then replaces the whole body).")
    static let writeSDPPV = ModuleParameter.optionalStr("rtpengine", "write_sdp_pv",
                                                        "An AVP or `$var` that gets rtpengine's SDP instead of the message body.")
    static let parameters = [sock.info, toutMs.info, retr.info, disableTout.info, queriedLimit.info, aggressive.info,
                             hashTableTout.info, setidAVP.info, setidDefault.info, extraIdPV.info, readSDPPV.info, writeSDPPV.info]

    static func start(_ runtime: ModuleRuntime) throws(ModuleStartError) {
        let c = runtime.config
        do throws(RtpengineSockError) {
            let sets = try RtpengineSet.parse(c[sock], defaultSet: c[setidDefault])
            // Without instances (every module loads when core.modules is empty) the functions return -1.
            if !sets.isEmpty && !sets.contains(where: { $0.id == c[setidDefault] }) {
                throw RtpengineSockError(message: "no instance in the default set \(c[setidDefault])")
            }
        } catch {
            throw ModuleStartError(key: "modparam.rtpengine.rtpengine_sock", error.message)
        }
        if let avp = c[setidAVP], PermissionsModule.avpName(avp) == nil {
            throw ModuleStartError(key: "modparam.rtpengine.setid_avp", "malformed or non AVP definition <\(avp)>")
        }
        for (p, key) in [(readSDPPV, "read_sdp_pv"), (writeSDPPV, "write_sdp_pv")] {
            guard let name = c[p] else { continue }
            switch PseudoVariable.parse(name) {
            case .avp?, .var_?: break
            default: throw ModuleStartError(key: "modparam.rtpengine.\(key)", "\(key): not a valid AVP or VAR definition <\(name)>")
            }
        }
        if let format = c[extraIdPV], PseudoVariable.parse(format) == nil {
            throw ModuleStartError(key: "modparam.rtpengine.extra_id_pv", "cannot parse \(format) (not a pseudo-variable)")
        }
        let st = state(runtime)
        runtime.addPeriodic { _ in st.purge() }
    }

    static let rpcMethods = [
        ModuleRPCMethod("rtpengine.show", "Get details about an rtpengine instance (\"all\" for every one).") { rt, p throws(RPCFault) in
            let url = try p.string(0, or: "Not enough parameters")
            let st = state(rt)
            let found = try iterate(st, url)
            return .array(found.map { info(st, $0) })
        },
        ModuleRPCMethod("rtpengine.enable", "Enable (1, after a ping) or disable (0, permanently) an rtpengine instance.") { rt, p throws(RPCFault) in
            let url = try p.string(0, or: "Not enough parameters")
            guard let flagText = p.string(1), let flag = Int(flagText) else { throw RPCFault(500, "Not enough parameters") }
            let st = state(rt)
            var status = flag != 0 ? "enable" : "disable"
            for n in try iterate(st, url) {
                if flag != 0 {
                    if st.ping(n) { n.set(disabled: false, recheck: 0) } else {
                        n.set(disabled: true, recheck: st.clock.unixSeconds + st.settings.disableTout)
                        status = "fail"
                    }
                } else {
                    n.set(disabled: true, recheck: RtpengineNode.permanent)
                }
            }
            return .object(["url": .string(url), "status": .string(status)])
        },
        ModuleRPCMethod("rtpengine.ping", "Ping an rtpengine instance (\"all\" for every one).") { rt, p throws(RPCFault) in
            let url = try p.string(0, or: "Not enough parameters")
            let st = state(rt)
            var failed = false
            for n in try iterate(st, url) where !st.ping(n) {
                n.set(disabled: true, recheck: st.clock.unixSeconds + st.settings.disableTout)
                failed = true
            }
            return .object(["url": .string(url), "status": .string(failed ? "fail" : "success")])
        },
        ModuleRPCMethod("rtpengine.reload", "Reload the instances from the database.") { _, _ throws(RPCFault) in
            throw RPCFault(500, "No Database URL")
        },
        ModuleRPCMethod("rtpengine.get_hash_total", "Get total number of entries in hash table.") { rt, p throws(RPCFault) in
            try p.none("rtpengine.get_hash_total")
            return .int(state(rt).trackedCalls)
        },
    ]

    static func iterate(_ st: RtpengineState, _ url: String) throws(RPCFault) -> [RtpengineNode] {
        if st.sets.isEmpty { throw RPCFault(404, "Instance not found (no sets loaded)") }
        let found = url.hasPrefix("all") ? st.nodes : st.nodes.filter { $0.url == url }
        if found.isEmpty { throw RPCFault(404, "Instance not found") }
        return found
    }

    static func info(_ st: RtpengineState, _ n: RtpengineNode) -> RPCValue {
        let s = n.state
        var o: [String: RPCValue] = ["url": .string(n.url), "set": .int(n.setID), "index": .int(n.index), "weight": .int(n.weight)]
        if s.disabled && s.recheck == RtpengineNode.permanent {
            o["disabled"] = .string("1(permanent)")
        } else {
            o["disabled"] = .int(s.disabled ? 1 : 0)
        }
        o["recheck_ticks"] = s.recheck == RtpengineNode.permanent ? .string("N/A") : .int(max(0, s.recheck - st.clock.unixSeconds))
        return .object(o)
    }

    static let statistics = [
        ModuleStatistic("rtpengine:commands", metric: "starling_rtpengine_commands_total", .counter,
                        "ng commands sent to rtpengine instances (retries not counted).") { rt in state(rt).commands.load(ordering: .relaxed) },
        ModuleStatistic("rtpengine:command_errors", metric: "starling_rtpengine_command_errors_total", .counter,
                        "ng commands that timed out, failed to send or got an undecodable reply.") { rt in state(rt).commandErrors.load(ordering: .relaxed) },
        ModuleStatistic("rtpengine:instances_enabled", metric: "starling_rtpengine_instances_enabled", .gauge,
                        "Instances not disabled.") { rt in state(rt).nodes.filter { !$0.isDisabled }.count },
        ModuleStatistic("rtpengine:instances_disabled", metric: "starling_rtpengine_instances_disabled", .gauge,
                        "Instances disabled (not answering, or by rtpengine.enable).") { rt in state(rt).nodes.filter { $0.isDisabled }.count },
        ModuleStatistic("rtpengine:calls", metric: "starling_rtpengine_calls", .gauge,
                        "Calls bound to an instance (the call table).") { rt in state(rt).trackedCalls },
        // per instance (labels instance = its rtpengine_sock URL, set = its set id)
        ModuleStatistic("rtpengine:instance_requests", metric: "starling_rtpengine_requests_total", .counter,
                        "ng commands and pings sent to the instance (retries not counted).", labels: ["instance", "set"]) { rt in
            perInstance(rt) { $0.requests.load(ordering: .relaxed) }
        },
        ModuleStatistic("rtpengine:instance_failures", metric: "starling_rtpengine_failures_total", .counter,
                        "ng commands and pings to the instance that could not be sent or timed out.", labels: ["instance", "set"]) { rt in
            perInstance(rt) { $0.failures.load(ordering: .relaxed) }
        },
        ModuleStatistic("rtpengine:instance_up", metric: "starling_rtpengine_instance_up", .gauge,
                        "1 when the instance is enabled, 0 when disabled (not answering, or by rtpengine.enable).",
                        labels: ["instance", "set"]) { rt in
            perInstance(rt) { $0.isDisabled ? 0 : 1 }
        },
    ]

    static func perInstance(_ rt: ModuleRuntime, _ value: (RtpengineNode) -> Int) -> [ModuleStatistic.Sample] {
        state(rt).nodes.map { ModuleStatistic.Sample([$0.url, String($0.setID)], value($0)) }
    }
}
