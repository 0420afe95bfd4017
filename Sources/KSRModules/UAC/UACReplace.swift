import SIPCore
import StarlingKEMI
import Logging

/// `uac_replace_from/to(_uri)` and `uac_restore_from/to` with Kamailio's rr-param restore: an initial
/// request whose From (To) URI is replaced carries the original, XOR-encoded with the new one, in a
/// Record-Route parameter (`rr_from_store_param` "vsf", `rr_to_store_param` "vst"; the script must
/// record-route). In-dialog requests that come back through `loose_route` are restored with it: the
/// URI the other side knows is swapped for the one this side knows, in From or To depending on the
/// direction (the `ftag` Route parameter). `restore_mode` "auto" (default) does that inside
/// `loose_route()`, "manual" leaves it to `uac_restore_from/to()`, "none" stores nothing. Replies to a
/// request whose From/To was changed get the URI the request had before (auto and manual).
enum UACReplace {
    enum Mode: String, Sendable { case none, manual, auto }
    enum Which { case from, to }

    struct Settings: Sendable {
        var mode: Mode
        var fromParam: String
        var toParam: String

        init(_ c: ModuleConfiguration) {
            mode = Mode(rawValue: c[UACModule.restoreMode].lowercased()) ?? .auto
            fromParam = c[UACModule.rrFromStoreParam]
            toParam = c[UACModule.rrToStoreParam]
        }
    }

    /// Hidden transaction AVPs naming the URI replies get in From / To (tm applies them, TMReply).
    static let replyFromAVP = "\u{1}uac_reply_from"
    static let replyToAVP = "\u{1}uac_reply_to"

    static func exports(_ config: ModuleConfiguration) -> [KemiExport] {
        let s = Settings(config)
        let m = "uac"
        return [
            KemiExport(m, "uac_replace_from", [.str, .str], returns: .int) { ctx, a in
                .int(replace(ctx, s, .from, display: a.str(0), uri: a.str(1)))
            },
            KemiExport(m, "uac_replace_to", [.str, .str], returns: .int) { ctx, a in
                .int(replace(ctx, s, .to, display: a.str(0), uri: a.str(1)))
            },
            KemiExport(m, "uac_replace_from_uri", [.str], returns: .int) { ctx, a in
                .int(replace(ctx, s, .from, display: nil, uri: a.str(0)))
            },
            KemiExport(m, "uac_replace_to_uri", [.str], returns: .int) { ctx, a in
                .int(replace(ctx, s, .to, display: nil, uri: a.str(0)))
            },
            KemiExport(m, "uac_restore_from", returns: .int) { ctx, _ in .int(restore(ctx, s, .from) ? 1 : -1) },
            KemiExport(m, "uac_restore_to", returns: .int) { ctx, _ in .int(restore(ctx, s, .to) ? 1 : -1) },
        ]
    }

    // MARK: - Encoding of the original URI

    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    /// base64 (no padding: '=' is not allowed in a URI parameter value) of `a` XOR `b` (zero-padded).
    static func encode(_ a: String, _ b: String) -> String {
        let x = xor(Array(a.utf8), Array(b.utf8))
        var out: [UInt8] = []
        var i = 0
        while i < x.count {
            let n = min(3, x.count - i)
            var v = UInt32(x[i]) << 16
            if n > 1 { v |= UInt32(x[i + 1]) << 8 }
            if n > 2 { v |= UInt32(x[i + 2]) }
            for k in 0...n { out.append(alphabet[Int((v >> (18 - 6 * UInt32(k))) & 63)]) }
            i += 3
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// The other URI of a pair, given the stored parameter and one of them.
    static func decode(_ param: String, with known: String) -> String? {
        var bits: UInt32 = 0, count = 0
        var raw: [UInt8] = []
        for c in param.utf8 {
            guard let v = alphabet.firstIndex(of: c) else { return nil }
            bits = bits << 6 | UInt32(v)
            count += 6
            if count >= 8 {
                count -= 8
                raw.append(UInt8((bits >> UInt32(count)) & 0xFF))
            }
        }
        var other = xor(raw, Array(known.utf8))
        while other.last == 0 { other.removeLast() }
        guard !other.isEmpty, !other.contains(0) else { return nil }
        let s = String(decoding: other, as: UTF8.self)
        return SIPURI(s) != nil ? s : nil
    }

    private static func xor(_ a: [UInt8], _ b: [UInt8]) -> [UInt8] {
        (0..<max(a.count, b.count)).map { (($0 < a.count) ? a[$0] : 0) ^ (($0 < b.count) ? b[$0] : 0) }
    }

    // MARK: - Header edits

    /// The header of `which` in a request, parsed.
    static func header(_ m: SIPMessage, _ which: Which) -> (SIPHeaderField, SIPNameAddr)? {
        guard let f = m.firstHeader(which == .from ? .from : .to), let na = m.parseNameAddr(f.value) else { return nil }
        return (f, na)
    }

    /// Rewrites a From/To value: `display` nil keeps the display name, "" removes it; `uri` nil keeps it.
    static func rewrite(_ m: SIPMessage, _ f: SIPHeaderField, _ na: SIPNameAddr, display: String?, uri: String?) {
        var text = ""
        if let display {
            if !display.isEmpty { text = display + " " }
        } else if let d = na.displayName {
            text = m.string(d) + " "
        }
        text += "<" + (uri ?? m.string(na.uri)) + ">"
        let params = m.string(na.params)
        if !params.isEmpty { text += ";" + params }
        m.replaceBytes(f.value, with: Array(text.utf8))
    }

    /// 1 replaced, -1 error (not a request, no header, bad URI, URI change in-dialog in auto mode).
    static func replace(_ ctx: RouteContext, _ s: Settings, _ which: Which, display: String?, uri: String) -> Int {
        let name = which == .from ? "From" : "To"
        guard let m = ctx.message, m.isRequest, let (f, na) = header(m, which) else {
            ctx.logger.error("uac_replace_\(name.lowercased()): no \(name) header in a request")
            return -1
        }
        let newURI: String? = uri.isEmpty ? nil : uri
        if let newURI, SIPURI(newURI) == nil {
            ctx.logger.error("uac_replace_\(name.lowercased()): '\(newURI)' is not a URI")
            return -1
        }
        let inDialog = m.toTag != nil
        if s.mode == .auto && newURI != nil && inDialog {
            ctx.logger.error("uac_replace_\(name.lowercased()): decline \(name) replacing in sequential request in auto mode (has To tag)")
            return -1
        }
        let old = m.string(na.uri)
        rewrite(m, f, na, display: display, uri: newURI)
        guard let newURI, newURI != old else { return 1 }
        // Replies carry the URI the sender knows.
        ctx.avps[which == .from ? replyFromAVP : replyToAVP] = [.string(old)]
        if s.mode != .none && !inDialog {
            ctx.recordRouteParams += ";\(which == .from ? s.fromParam : s.toParam)=\(encode(old, newURI))"
        }
        return 1
    }

    /// Restores From (`which` .from: the vsf parameter) or To (vst) in an in-dialog request routed by
    /// our Record-Route (`loose_route()` has run). True if a header was changed.
    static func restore(_ ctx: RouteContext, _ s: Settings, _ which: Which) -> Bool {
        guard let m = ctx.message, m.isRequest, let params = ctx.routedParams, params.count > 1,
              let route = SIPURI("sip:x" + params) else { return false }
        guard let stored = route.param(which == .from ? s.fromParam : s.toParam), !stored.isEmpty else { return false }
        // Downstream (from the caller): the replaced header is where it was; upstream it is swapped.
        var downstream = true
        if let ftag = route.param("ftag") { downstream = ftag == (m.fromTag.map(m.string) ?? "") }
        let target: Which = downstream ? which : (which == .from ? .to : .from)
        guard let (f, na) = header(m, target) else { return false }
        let current = m.string(na.uri)
        guard let other = decode(stored, with: current) else {
            ctx.logger.error("uac_restore: cannot decode the '\(which == .from ? s.fromParam : s.toParam)' Route parameter")
            return false
        }
        rewrite(m, f, na, display: nil, uri: other)
        ctx.avps[target == .from ? replyFromAVP : replyToAVP] = [.string(current)]
        return true
    }

    /// `restore_mode` auto: what the rr callback does after `loose_route()` routed a request.
    static func autoRestore(_ ctx: RouteContext, _ s: Settings) {
        guard s.mode == .auto else { return }
        _ = restore(ctx, s, .from)
        _ = restore(ctx, s, .to)
    }

    /// For tm: puts the URIs the transaction's AVPs name into a reply's From / To before it is relayed.
    static func restoreReply(_ m: SIPMessage, avps: [String: [KemiValue]]) {
        for (key, which) in [(replyFromAVP, Which.from), (replyToAVP, Which.to)] {
            guard case .string(let uri)? = avps[key]?.last,
                  let f = m.firstHeader(which == .from ? .from : .to), let na = m.parseNameAddr(f.value) else { continue }
            rewrite(m, f, na, display: nil, uri: uri)
        }
    }
}
