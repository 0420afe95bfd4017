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

    /// `uac_req_send()`: 1 sent, -1 on a missing/malformed field (logged) or a send failure.
    static func send(_ ctx: RouteContext) -> Int {
        guard let store = ctx.transactions as? TMStore else {
            ctx.logger.error("uac_req_send: the tm module is required")
            return -1
        }
        let st = state(ctx)
        let method = string(st, .method), ruri = string(st, .ruri)
        func fail(_ why: String) -> Int {
            ctx.logger.error("uac_req_send: \(why)")
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
        headers += hdrs
        let body = Array(string(st, .body).utf8)
        if string(st, .sock).isEmpty == false {
            ctx.logger.debug("uac_req_send: $uac_req(sock) is not used (the socket follows the destination)")
        }
        if st.values[.evroute] != nil || !string(st, .auser).isEmpty {
            ctx.logger.warning("uac_req_send: reply events and authentication of local requests are not implemented")
        }
        let r = TMLocal.send(store, ctx, method: method, ruri: ruri, nexthop: ouri, headers: headers, body: body)
        return r > 0 ? 1 : fail("the request could not be sent (destination \(ouri.isEmpty ? ruri : ouri))")
    }
}
