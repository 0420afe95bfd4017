import SIPCore
import StarlingKEMI
import Logging

/// `$uac_req(key)` and `uac_req_send()`: a request of the proxy's own, described field by field and
/// sent statefully through tm (a local transaction: retransmitted, its replies absorbed).
enum UACRequest {
    /// Kamailio 5.6's `$uac_req` keys.
    enum Key: String, CaseIterable {
        case method, ruri, turi, furi, hdrs, body, ouri, auser, apasswd, sock, callid, flags
        case evroute, evcode, evtype, evparam, all

        var isInt: Bool { self == .flags || self == .evroute || self == .evcode || self == .evtype }
        /// Kamailio's buffer sizes (MAX_UACH_SIZE, MAX_UACB_SIZE): longer values are refused.
        var maxLength: Int { self == .body ? 32768 : (self == .hdrs ? 2048 : 1024) }
    }

    /// The worker's pending request (Kamailio keeps one per process).
    final class State {
        var values: [Key: KemiValue] = [:]
    }

    static func state(_ ctx: RouteContext) -> State { ctx.worker.local(State.self) { State() } }

    static func get(_ ctx: RouteContext, _ name: String) -> PVValue {
        guard let key = Key(rawValue: name), key != .all else { return .null }
        switch state(ctx).values[key] {
        case .string(let s)?: return .string(s)
        case .int(let i)?: return .int(i)
        default: return key.isInt ? .int(0) : .null
        }
    }

    /// Assigns a field; null clears it (`$uac_req(all)` = null clears every field). False (and a log
    /// line) for a value of the wrong type or too long.
    static func set(_ ctx: RouteContext, _ name: String, _ value: KemiValue) -> Bool {
        guard let key = Key(rawValue: name) else { return false }
        let st = state(ctx)
        if value == .null {
            if key == .all { st.values.removeAll() } else { st.values[key] = nil }
            return true
        }
        guard key != .all else {
            ctx.logger.error("$uac_req(all) can only be reset (assign null)")
            return false
        }
        switch (key.isInt, value) {
        case (true, .int): st.values[key] = value
        case (true, .string(let s)):
            guard let i = Int(s) else {
                ctx.logger.error("$uac_req(\(name)): an integer is expected, got '\(s)'")
                return false
            }
            st.values[key] = .int(i)
        case (false, .string(let s)):
            guard s.utf8.count <= key.maxLength else {
                ctx.logger.error("$uac_req(\(name)): value too long (\(s.utf8.count) > \(key.maxLength))")
                return false
            }
            st.values[key] = value
        case (false, .int(let i)): st.values[key] = .string(String(i))
        default: return false
        }
        return true
    }

    static func string(_ st: State, _ k: Key) -> String {
        if case .string(let s)? = st.values[k] { return s }
        return ""
    }

    /// A sip:, sips: or tel: URI.
    static func isURI(_ s: String) -> Bool {
        guard let u = SIPURI(s) else { return false }
        return ["sip", "sips", "tel"].contains(u.schemeName.lowercased())
    }

    /// The `[modparam.uac]` values `uac_req_send` uses.
    struct Settings: Sendable {
        /// `event_callback`: the Lua function run for the reply of a request sent with `evroute` set.
        var eventCallback: String?

        init(_ c: ModuleConfiguration) {
            eventCallback = c[UACModule.eventCallback].flatMap { $0.isEmpty ? nil : $0 }
        }
    }

    /// `uac_req_send()`: 1 sent, -1 on a missing/malformed field (logged) or a send failure.
    static func send(_ ctx: RouteContext, _ settings: Settings) -> Int {
        send(ctx, settings, caller: "uac_req_send", waiter: nil)
    }

    /// `KSR.uac.starling_req_send_await()` (Starling only, needs `[core] async_io`): sends the request
    /// as `uac_req_send` does, and the route waits (suspended: the worker routes other messages) for
    /// its final reply or local timeout. Then `$uac_req(...)` is what Kamailio's `uac:reply` event
    /// route sees: the fields of the request sent, `evcode` the reply's code (408 on timeout),
    /// `evtype` 1 (a reply came) or 2 (no reply: local timeout); the call returns the code. -1 (logged,
    /// nothing sent) when the request is malformed or cannot be sent, or when the route cannot wait
    /// here (async_io off, or not the request/reply route coroutine itself: failure, branch, event
    /// routes, callbacks...). The `event_callback` is not run for it (`evroute` is ignored).
    static func sendAwait(_ ctx: RouteContext, _ settings: Settings) -> KemiResult {
        let caller = "starling_req_send_await"
        guard let ticket = ctx.asyncIO?.beginAwait(ctx) else {
            ctx.logger.error("\(caller): the route cannot wait here (needs [core] async_io and a call made by ksr_request_route or ksr_reply_route itself); nothing sent")
            return .int(-1)
        }
        let sent = state(ctx).values
        let r = send(ctx, settings, caller: caller) { code, replied in
            ticket.complete { ctx in
                let st = UACRequest.state(ctx)
                st.values = sent
                st.values[.evcode] = .int(code)
                st.values[.evtype] = .int(replied ? 1 : 2)
                return .int(code)
            }
        }
        if r < 0 { ticket.complete { _ in .int(-1) } }
        return .none
    }

    /// Sends the request `$uac_req` describes. `waiter` (awaited form) gets the final reply's code,
    /// and whether a reply came (false: local timeout), instead of the event route.
    private static func send(_ ctx: RouteContext, _ settings: Settings, caller: String,
                             waiter: (@Sendable (Int, Bool) -> Void)?) -> Int {
        guard let store = ctx.transactions as? TMStore else {
            ctx.logger.error("\(caller): the tm module is required")
            return -1
        }
        let st = state(ctx)
        let method = string(st, .method), ruri = string(st, .ruri)
        func fail(_ why: String) -> Int {
            ctx.logger.error("\(caller): \(why)")
            return -1
        }
        guard !method.isEmpty, method.utf8.allSatisfy({ ($0 >= 65 && $0 <= 90) || ($0 >= 97 && $0 <= 122) || $0 == 45 || $0 == 95 })
        else { return fail("$uac_req(method) is missing or not a method name: '\(method)'") }
        guard !ruri.isEmpty else { return fail("$uac_req(ruri) is missing") }
        guard isURI(ruri) else { return fail("$uac_req(ruri) is not a SIP URI: '\(ruri)'") }
        let turi = string(st, .turi).isEmpty ? ruri : string(st, .turi)
        guard isURI(turi) else { return fail("$uac_req(turi) is not a SIP URI: '\(turi)'") }
        let furi = string(st, .furi)
        guard !furi.isEmpty else { return fail("$uac_req(furi) is missing") }
        guard isURI(furi) else { return fail("$uac_req(furi) is not a SIP URI: '\(furi)'") }
        let ouri = string(st, .ouri)
        if !ouri.isEmpty && !isURI(ouri) { return fail("$uac_req(ouri) is not a SIP URI: '\(ouri)'") }
        var hdrs = string(st, .hdrs)
        if !hdrs.isEmpty {
            if !hdrs.hasSuffix("\r\n") { hdrs += "\r\n" }
            for line in hdrs.split(separator: "\r\n") where !line.isEmpty {
                guard let colon = line.firstIndex(of: ":"), colon > line.startIndex,
                      line[..<colon].allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" || $0 == "." }),
                      !line.contains("\n"), !line.contains("\r")
                else { return fail("$uac_req(hdrs) has a malformed header line: '\(line)'") }
            }
        }
        let callid = string(st, .callid)
        var headers = "From: <\(furi)>\r\nTo: <\(turi)>\r\n"
        if !callid.isEmpty { headers += "Call-ID: \(callid)\r\n" }
        let body = Array(string(st, .body).utf8)
        var evroute = 0
        if case .int(let e)? = st.values[.evroute] { evroute = e }
        let job = Job(method: method.uppercased(), ruri: ruri, nexthop: ouri, extraHeaders: hdrs, body: body,
                      username: string(st, .auser), password: string(st, .apasswd),
                      event: evroute != 0 && waiter == nil ? settings.eventCallback : nil, eventParam: string(st, .evparam),
                      waiter: waiter)
        if evroute != 0 && waiter == nil && settings.eventCallback == nil {
            ctx.logger.warning("uac_req_send: $uac_req(evroute) is set but the uac event_callback parameter is not")
        }
        let r = TMLocal.send(store, ctx, method: method, ruri: ruri, nexthop: ouri, headers: headers + hdrs, body: body,
                             socket: string(st, .sock), onReply: job.callback(store))
        return r > 0 ? 1 : fail("the request could not be sent (destination \(ouri.isEmpty ? ruri : ouri))")
    }

    /// What a sent request does with its final reply: answer one 401/407 with `auser`/`apasswd`, run
    /// the `event_callback` Lua function (`$uac_req(evcode)` = the code, `evtype` 1 reply / 2 local
    /// timeout, the reply as the message) when `evroute` was set.
    struct Job: Sendable {
        var method: String
        var ruri: String
        var nexthop: String
        var extraHeaders: String
        var body: [UInt8]
        var username: String
        var password: String
        var event: String?
        var eventParam: String
        /// The awaited form's: the final code and whether a reply came.
        var waiter: (@Sendable (Int, Bool) -> Void)?
        var authenticated = false

        var needsReplies: Bool { event != nil || waiter != nil || (!username.isEmpty && !password.isEmpty) }

        /// The reply callback for tm (nil when nothing needs the reply).
        func callback(_ store: TMStore) -> (@Sendable (RouteContext, Int, SIPMessage?, [UInt8]) -> Void)? {
            guard needsReplies else { return nil }
            let job = self
            return { ctx, code, reply, sent in job.replied(store, ctx, code, reply, sent) }
        }

        func replied(_ store: TMStore, _ ctx: RouteContext, _ code: Int, _ reply: SIPMessage?, _ sent: [UInt8]) {
            if (code == 401 || code == 407), !authenticated, !username.isEmpty, let reply,
               let request = try? SIPMessage.parse(sent), resend(store, ctx, code, reply, request) {
                return
            }
            if let waiter {
                waiter(code, reply != nil)
                return
            }
            guard let event, let run = ctx.runRoute else { return }
            let saved = ctx.state
            defer { ctx.state = saved }
            let st = UACRequest.state(ctx)
            let keep = st.values
            st.values[.evcode] = .int(code)
            st.values[.evtype] = .int(reply == nil ? 2 : 1)
            st.values[.evparam] = eventParam.isEmpty ? nil : .string(eventParam)
            ctx.message = reply ?? (try? SIPMessage.parse(sent))
            ctx.routeType = .event
            ctx.transaction = nil
            run(ctx, event)
            st.values = keep
        }

        /// Sends the request again with credentials for the reply's challenge (same Call-ID and From
        /// tag, CSeq + 1). False when the challenge cannot be answered (then the event runs with it).
        func resend(_ store: TMStore, _ ctx: RouteContext, _ code: Int, _ reply: SIPMessage, _ request: SIPMessage) -> Bool {
            let name = code == 401 ? "WWW-Authenticate" : "Proxy-Authenticate"
            guard let field = reply.headers(named: name).first(where: { UACAuth.parseChallenge(reply, $0) != nil }),
                  let challenge = UACAuth.parseChallenge(reply, field),
                  let from = request.headerValue(.from), let to = request.headerValue(.to),
                  let callID = request.headerValue(.callID), let cseq = request.cseq else {
                ctx.logger.error("uac_req_send: the \(code) to \(method) has no usable Digest challenge")
                return false
            }
            let cnonce = String(DigestHash.md5.hex(DigestHash.randomBytes(16)).prefix(16))
            guard let value = UACAuth.authorization(
                challenge, UACAuth.Credential(username: username, realm: challenge.realm, password: password),
                method: method, uri: ruri, body: body, passwordIsHA1: false, cnonce: cnonce) else {
                ctx.logger.error("uac_req_send: unsupported digest algorithm \(challenge.algorithm ?? "")")
                return false
            }
            let headers = "From: \(from)\r\nTo: \(to)\r\nCall-ID: \(callID)\r\nCSeq: \(UInt64(cseq.number) + 1) \(method)\r\n"
                + extraHeaders + "\(code == 401 ? "Authorization" : "Proxy-Authorization"): \(value)\r\n"
            var next = self
            next.authenticated = true
            let r = TMLocal.send(store, ctx, method: method, ruri: ruri, nexthop: nexthop, headers: headers, body: body,
                                 onReply: next.callback(store))
            if r < 0 { ctx.logger.error("uac_req_send: the authenticated \(method) could not be sent") }
            return r > 0
        }
    }
}
