import SIPCore
import SIPTransport
import StarlingKEMI
import Logging

/// `KSR.sanity` (REFERENCE §2.13): checks that reply with an error themselves (never to ACK), unless
/// the `noreply` modparam is set.
enum SanityModule {
    struct Check: OptionSet {
        let rawValue: Int
        static let ruriVersion = Check(rawValue: 1)
        static let ruriScheme = Check(rawValue: 2)
        static let requiredHeaders = Check(rawValue: 4)
        static let viaVersion = Check(rawValue: 8)
        static let viaProtocol = Check(rawValue: 16)
        static let cseqMethod = Check(rawValue: 32)
        static let cseqValue = Check(rawValue: 64)
        static let contentLength = Check(rawValue: 128)
        static let expires = Check(rawValue: 256)
        static let proxyRequire = Check(rawValue: 512)
        static let parseURIs = Check(rawValue: 1024)
        static let digest = Check(rawValue: 2048)
        static let duplicateTags = Check(rawValue: 4096)
        static let authorization = Check(rawValue: 8192)
        static let via1 = Check(rawValue: 16384)
        static let rfc3261 = Check(rawValue: 32768)
        static let sizes = Check(rawValue: 65536)
    }

    /// Kamailio's `default_checks` and `uri_checks` defaults.
    static let defaultChecks = 1 | 2 | 4 | 32 | 64 | 128 | 256 | 512 | 2048
    static let defaultURIChecks = 1 | 2 | 4

    /// Returns nil when the message passes, else the reply (code, reason, extra header lines).
    static func failure(_ ctx: RouteContext, _ msgChecks: Int, _ uriChecks: Int, supported: Set<String>)
        -> (Int, String, String)?
    {
        guard let m = ctx.message else { return nil }
        let checks = Check(rawValue: msgChecks)
        if m.frame() != nil { return (400, "Bad Message", "") }
        if m.isRequest {
            if checks.contains(.ruriVersion) && !m.equalsIgnoringCase(m.versionRange, "SIP/2.0") {
                return (505, "Version Not Supported (R-URI)", "")
            }
            if checks.contains(.ruriScheme) {
                guard let u = m.requestURI, u.scheme != .other else { return (416, "Unsupported URI Scheme in Request URI", "") }
            }
        }
        if checks.contains(.requiredHeaders) {
            for kind in [SIPHeaderKind.to, .from, .cseq, .callID, .via] where m.firstHeader(kind) == nil {
                return (400, "Missing Required Header in Request", "")
            }
        }
        if checks.contains(.via1) || checks.contains(.viaVersion) || checks.contains(.viaProtocol) {
            guard let via = m.topVia else { return (400, "Malformed Via Header", "") }
            if checks.contains(.viaVersion) && !m.equalsIgnoringCase(via.protocolVersion, "2.0") {
                return (505, "Version Not Supported (Via)", "")
            }
            if checks.contains(.viaProtocol) && SIPTransportProtocol(name: m.string(via.transport)) == nil {
                return (400, "Unsupported Transport in Topmost Via", "")
            }
        }
        if checks.contains(.cseqValue) || checks.contains(.cseqMethod) {
            guard let cseq = m.cseq else { return (400, "CSeq number is illegal", "") }
            if checks.contains(.cseqMethod) && m.isRequest && m.string(cseq.methodRange) != m.string(m.methodRange) {
                return (400, "CSeq method does not match request method", "")
            }
        }
        if checks.contains(.contentLength), let cl = m.firstHeader(.contentLength) {
            if Int(m.string(cl.value)) != m.bodyRange.count { return (400, "Content-Length mis-match", "") }
        }
        if checks.contains(.expires), let e = m.firstHeader(.expires) {
            guard let v = UInt64(m.string(e.value)), v <= UInt64(UInt32.max) else { return (400, "Expires value is illegal", "") }
        }
        if checks.contains(.proxyRequire) && m.isRequest {
            let unsupported = m.values(.proxyRequire).map { m.string($0) }.filter { !supported.contains($0.lowercased()) }
            if !unsupported.isEmpty {
                return (420, "Bad Extension", "Unsupported: \(unsupported.joined(separator: ", "))\r\n")
            }
        }
        if checks.contains(.parseURIs) {
            let u = URIChecks(rawValue: uriChecks)
            if m.isRequest && u.contains(.ruri) && m.requestURI == nil { return (400, "Bad Request URI", "") }
            if u.contains(.from) && m.from == nil { return (400, "Bad From URI", "") }
            if u.contains(.to) && m.to == nil { return (400, "Bad To URI", "") }
            if u.contains(.contact) {
                for v in m.values(.contact) where m.parseNameAddr(v) == nil { return (400, "Bad Contact URI", "") }
            }
        }
        if checks.contains(.duplicateTags) {
            for na in [m.from, m.to].compactMap({ $0 }) {
                var tags = 0
                m.forEachParam(in: na.params) { n, _ in if m.equalsIgnoringCase(n, "tag") { tags += 1 } }
                if tags > 1 { return (400, "Duplicate tag", "") }
            }
        }
        if checks.contains(.digest) || checks.contains(.authorization) {
            for kind in [SIPHeaderKind.authorization, .proxyAuthorization] {
                var bad = false
                m.forEachHeader(kind) { if m.authValue($0) == nil { bad = true } }
                if bad { return (400, "Bad Credentials", "") }
            }
        }
        return nil
    }

    struct URIChecks: OptionSet {
        let rawValue: Int
        static let ruri = URIChecks(rawValue: 1)
        static let from = URIChecks(rawValue: 2)
        static let to = URIChecks(rawValue: 4)
        static let contact = URIChecks(rawValue: 8)
    }

    static func exports(_ config: ModuleConfiguration) -> [KemiExport] {
        let noreply = config[Self.noreply]
        let defaults = config[Self.defaultChecksParam]
        let uriDefaults = config[Self.uriChecksParam]
        let supported = Set(config[Self.proxyRequire].flatMap {
            $0.split(separator: ",").map { $0.trimmingCharacters(in: " ").lowercased() }
        })
        @Sendable func run(_ ctx: RouteContext, _ checks: Int, _ uris: Int) -> KemiResult {
            guard let (code, reason, extra) = failure(ctx, checks, uris, supported: supported) else { return .int(1) }
            ctx.logger.info("sanity check failed: \(code) \(reason)")
            if !noreply, let m = ctx.message, m.isRequest, m.method != .ack {
                MessageTools.sendReply(ctx, status: code, reason: reason, extraHeaders: Array(extra.utf8))
            }
            return .int(-1)
        }
        return [
            KemiExport("sanity", "sanity_check", [.int, .int], returns: .int) { ctx, args in
                run(ctx, args.int(0), args.int(1))
            },
            KemiExport("sanity", "sanity_check_defaults", [], returns: .int) { ctx, _ in
                run(ctx, defaults, uriDefaults)
            },
            KemiExport("sanity", "sanity_reply", [], returns: .int) { ctx, _ in
                guard let (code, reason, extra) = failure(ctx, defaults, uriDefaults, supported: supported) else { return .int(-1) }
                return .int(MessageTools.sendReply(ctx, status: code, reason: reason, extraHeaders: Array(extra.utf8)))
            },
        ]
    }
}

extension Substring {
    func trimmingCharacters(in set: String) -> Substring {
        var s = self
        while let f = s.first, set.contains(f) { s = s.dropFirst() }
        while let l = s.last, set.contains(l) { s = s.dropLast() }
        return s
    }
}

extension SanityModule: KSRModule {
    static let name = "sanity"
    static let summary = "Request sanity checks with Kamailio's replies."
    static let defaultChecksParam = ModuleParameter.int("sanity", "default_checks", defaultChecks,
                                                        "Bit mask of the checks sanity_check_defaults() runs.")
    static let uriChecksParam = ModuleParameter.int("sanity", "uri_checks", defaultURIChecks,
                                                    "Bit mask of the URIs the URI check parses.")
    static let noreply = ModuleParameter.flag("sanity", "noreply", false, "Do not reply to a request that fails a check.")
    static let proxyRequire = ModuleParameter.list("sanity", "proxy_require",
                                                   "Extensions this proxy supports (comma-separated) for the Proxy-Require check.")
    static let parameters = [defaultChecksParam.info, uriChecksParam.info, noreply.info, proxyRequire.info]
    static func exports(_ runtime: ModuleRuntime) -> [KemiExport] { exports(runtime.config) }
}
