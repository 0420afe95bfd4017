import SIPCore
import StarlingKEMI
import Logging

/// `KSR.sl` (REFERENCE §2.5): stateless replies.
enum SLModule {
    /// Kamailio's `sl_reply_error` mapping of internal errors to replies.
    static func errorReply(_ code: Int) -> (Int, String) {
        switch code {
        case SERError.send: return (477, "Unfortunately error on sending to next hop occurred (477/SL)")
        case SERError.badAddress: return (478, "Unresolvable destination (478/SL)")
        case SERError.badURI: return (479, "Please try again with a valid IP address (479/SL)")
        case SERError.badRequest: return (400, "Bad Request (400/SL)")
        default: return (500, "I'm terribly sorry, server error occurred (1/SL)")
        }
    }

    static func reply(_ ctx: RouteContext, _ code: Int, _ reason: String?) -> KemiResult {
        guard let m = ctx.message, m.isRequest else { return .int(-1) }
        guard m.method != .ack else { return .int(-1) }
        guard let reason, !reason.isEmpty else { return .int(-1) }
        // Stateful once the request has a transaction (Kamailio's sl checks for a T).
        if let cell = TMRelay.current(ctx), let store = ctx.transactions as? TMStore {
            return .int(TMReply.reply(store, ctx, cell, code, reason))
        }
        return .int(MessageTools.sendReply(ctx, status: code, reason: reason, extraHeaders: destinationSetContact(ctx, code)))
    }

    /// For a 3xx, Kamailio puts the destination set in a Contact header: the Request-URI if the
    /// script rewrote it, then the appended branches.
    static func destinationSetContact(_ ctx: RouteContext, _ code: Int) -> [UInt8] {
        guard code >= 300 && code < 400, let m = ctx.message else { return [] }
        var uris: [[UInt8]] = []
        if let new = m.edits.requestURI { uris.append(new) }
        uris.append(contentsOf: ctx.branches)
        guard !uris.isEmpty else { return [] }
        var out = Array("Contact: ".utf8)
        for (i, u) in uris.enumerated() {
            if i > 0 { out.append(contentsOf: Array(", ".utf8)) }
            out.append(UInt8(ascii: "<"))
            out.append(contentsOf: u)
            out.append(UInt8(ascii: ">"))
        }
        out.append(contentsOf: [0x0D, 0x0A])
        return out
    }

    static func exports() -> [KemiExport] {
        [
            KemiExport("sl", "sl_send_reply", [.int, .str], returns: .int) { ctx, args in
                reply(ctx, args.int(0), args.string(1))
            },
            KemiExport("sl", "send_reply", [.int, .str], returns: .int,
                       ) { ctx, args in
                reply(ctx, args.int(0), args.string(1))
            },
            KemiExport("sl", "send_reply_mode", [.int, .str, .int], returns: .int) { ctx, args in
                reply(ctx, args.int(0), args.string(1))
            },
            KemiExport("sl", "sl_reply_error", [], returns: .int) { ctx, _ in
                let (code, reason) = errorReply(ctx.lastError)
                return reply(ctx, code, reason)
            },
            KemiExport("sl", "get_reply_totag", [], returns: .xval) { ctx, _ in
                guard let m = ctx.message, m.isRequest else { return .null }
                return .string(MessageTools.localToTag(m))
            },
            KemiExport("sl", "sl_forward_reply", [.str, .str], returns: .int) { ctx, args in
                guard let m = ctx.message, !m.isRequest else { return .int(-1) }
                let code = args.str(0), reason = args.str(1)
                if !code.isEmpty {
                    guard code.count == 3, let c = Int(code), c / 100 == m.statusCode / 100 else { return .int(-1) }
                    var line = Array("SIP/2.0 \(c) ".utf8)
                    line.append(contentsOf: reason.isEmpty ? m.bytes(m.reasonRange) : Array(reason.utf8))
                    m.replaceBytes(ByteRange(m.versionRange.lower, m.reasonRange.upper), with: line)
                }
                return .code(Forwarder.relayReply(ctx))
            },
        ]
    }
}

extension SLModule: KSRModule {
    static let name = "sl"
    static let summary = "Stateless replies."
    static func exports(_ runtime: ModuleRuntime) -> [KemiExport] { exports() }
}
