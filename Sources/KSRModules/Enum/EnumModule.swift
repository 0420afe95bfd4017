#if canImport(Glibc)
import Glibc
#endif
import SIPCore
import SIPTransport
import StarlingKEMI
import Logging

/// `KSR.enum` (REFERENCE §2.21): ENUM lookups (RFC 6116) of an E.164 number through the configured
/// DNS resolver (`[core] dns_servers`, else the system's), with the resolver's TTL-respecting cache.
///
/// Modparams as Kamailio's: `domain_suffix` (default "e164.arpa."), `tel_uri_params` (appended to
/// every resulting URI), `i_enum_suffix` (default "e164.arpa."), `branchlabel` (default "i"),
/// `bl_algorithm` ("cc" only; see docs/ENUM.md).
enum EnumModule {
    struct Settings: Sendable {
        var suffix: String
        var iSuffix: String
        var telURIParams: String
        var branchLabel: String
        var blAlgorithm: String

        init(_ c: ModuleConfiguration) {
            suffix = c[EnumModule.domainSuffix]
            iSuffix = c[EnumModule.iEnumSuffix]
            telURIParams = c[EnumModule.telURIParams]
            branchLabel = c[EnumModule.branchLabel]
            blAlgorithm = c[EnumModule.blAlgorithm]
        }
    }

    static func exports(_ config: ModuleConfiguration) -> [KemiExport] {
        let s = Settings(config)
        let m = "enum"
        return [
            KemiExport(m, "enum_query", returns: .int) { ctx, _ in
                query(ctx, s, suffix: s.suffix, service: "")
            },
            KemiExport(m, "enum_query_suffix", [.str], returns: .int) { ctx, a in
                query(ctx, s, suffix: a.str(0), service: "")
            },
            KemiExport(m, "enum_query_suffix_service", [.str, .str], returns: .int) { ctx, a in
                query(ctx, s, suffix: a.str(0), service: a.str(1))
            },
            KemiExport(m, "enum_pv_query", [.str], returns: .int) { ctx, a in
                pvQuery(ctx, s, number: a.str(0), suffix: s.suffix, service: "")
            },
            KemiExport(m, "enum_pv_query_suffix", [.str, .str], returns: .int) { ctx, a in
                pvQuery(ctx, s, number: a.str(0), suffix: a.str(1), service: "")
            },
            KemiExport(m, "enum_pv_query_suffix_service", [.str, .str, .str], returns: .int) { ctx, a in
                pvQuery(ctx, s, number: a.str(0), suffix: a.str(1), service: a.str(2))
            },
            KemiExport(m, "is_from_user_enum", returns: .int) { ctx, _ in
                isFromUserEnum(ctx, s, suffix: s.suffix, service: "")
            },
            KemiExport(m, "is_from_user_enum_suffix", [.str], returns: .int) { ctx, a in
                isFromUserEnum(ctx, s, suffix: a.str(0), service: "")
            },
            KemiExport(m, "is_from_user_enum_suffix_service", [.str, .str], returns: .int) { ctx, a in
                isFromUserEnum(ctx, s, suffix: a.str(0), service: a.str(1))
            },
            KemiExport(m, "i_enum_query", returns: .int) { ctx, _ in
                iQuery(ctx, s, suffix: s.iSuffix, service: "")
            },
            // Kamailio's export name is literally enum_i_query_suffix (REFERENCE §6.8).
            KemiExport(m, "enum_i_query_suffix", [.str], returns: .int) { ctx, a in
                iQuery(ctx, s, suffix: a.str(0), service: "")
            },
            KemiExport(m, "i_enum_query_suffix_service", [.str, .str], returns: .int) { ctx, a in
                iQuery(ctx, s, suffix: a.str(0), service: a.str(1))
            },
        ]
    }

    // MARK: - Names

    /// "+" followed by 1 to 31 digits (Kamailio's is_e164 with MAX_NUM_LEN 33).
    static func isE164(_ s: String) -> Bool {
        let b = Array(s.utf8)
        guard b.count > 1, b.count < 33, b[0] == UInt8(ascii: "+") else { return false }
        return b.dropFirst().allSatisfy { $0 >= 0x30 && $0 <= 0x39 }
    }

    /// "+35831234567" → "7.6.5.4.3.2.1.3.8.5.3." + suffix.
    static func domain(_ number: String, suffix: String) -> String {
        var out = ""
        for c in number.dropFirst().reversed() { out.append(c); out.append(".") }
        return out + suffix
    }

    /// Country-code length as Kamailio's `cclen` computes it (including its quirks), for i_enum.
    static func countryCodeLength(_ digits: [UInt8]) -> Int {
        guard digits.count >= 3 else { return 0 }
        let d1 = digits[0], d2 = digits[1]
        func c(_ x: Character) -> UInt8 { x.asciiValue! }
        guard d2 >= c("0") && d2 <= c("9") else { return 0 }
        switch d1 {
        case c("1"), c("7"): return 1
        case c("2"): if d2 == c("0") || d1 == c("7") { return 2 }
        case c("3"):
            if d2 >= c("0") && d1 <= c("4") { return 2 }
            if d2 == c("6") || d1 == c("9") { return 2 }
        case c("4"): if d2 != c("2") { return 2 }
        case c("5"): if d2 >= c("1") && d1 <= c("8") { return 2 }
        case c("6"): if d1 <= c("6") { return 2 }
        case c("8"): if d2 == c("1") || d1 == c("2") || d1 == c("4") || d1 == c("6") { return 2 }
        case c("9"):
            if d1 <= c("5") { return 2 }
            if d2 == c("8") { return 2 }
        default: return 0
        }
        return 3
    }

    /// The infrastructure-ENUM name: the branch label inserted after the country code ("cc" algorithm).
    static func infrastructureDomain(_ number: String, suffix: String, label: String) -> String {
        let b = Array(number.utf8)
        let sdl = countryCodeLength(Array(b.dropFirst())) + 1
        var out = ""
        var i = b.count - 1
        while i > 0 {
            out.append(Character(Unicode.Scalar(b[i])))
            out.append(".")
            if !label.isEmpty && i == sdl { out += label + "." }
            i -= 1
        }
        return out + suffix
    }

    // MARK: - NAPTR selection

    /// Kamailio's sip_match: flag "u" and services "E2U+sip" (empty service), "E2U+<service>:sip", or
    /// with a "+a+b" service list any of the NAPTR's "E2U+x+y" services.
    static func serviceMatches(_ r: NAPTRRecord, _ service: String) -> Bool {
        let services = r.service.lowercased()
        let want = service.lowercased()
        if want.isEmpty {
            return r.flags.lowercased() == "u" && (services == "e2u+sip" || services == "sip+e2u")
        }
        if !want.hasPrefix("+") {
            return r.flags.lowercased() == "u" && services == "e2u+" + want + ":sip"
        }
        guard services.hasPrefix("e2u+") else { return false }
        let offered = services.dropFirst(4).split(separator: "+", omittingEmptySubsequences: false)
        let wanted = want.dropFirst().split(separator: "+", omittingEmptySubsequences: false)
        return offered.contains { o in wanted.contains { $0 == o } }
    }

    enum RegexpError: Error, CustomStringConvertible {
        case missing, firstBang, secondBang, thirdBang, badPattern(String), noMatch

        var description: String {
            switch self {
            case .missing: return "Regexp missing"
            case .firstBang: return "First ! missing from regexp"
            case .secondBang: return "Second ! missing from regexp"
            case .thirdBang: return "Third ! missing from regexp"
            case .badPattern(let p): return "invalid regular expression '\(p)'"
            case .noMatch: return "Regexp replace failed (no match)"
            }
        }
    }

    /// Applies a NAPTR regexp field "!pattern!replacement!flags" to `input` (the "+digits" string):
    /// the result is the replacement with \0-\9 expanded from the match, as Kamailio's reg_replace.
    static func rewrite(_ regexp: String, _ input: String) throws(RegexpError) -> String {
        let b = Array(regexp.utf8)
        guard !b.isEmpty else { throw .missing }
        guard b[0] == UInt8(ascii: "!") else { throw .firstBang }
        guard let second = b[1...].firstIndex(of: UInt8(ascii: "!")) else { throw .secondBang }
        guard second + 1 < b.count, let third = b[(second + 1)...].firstIndex(of: UInt8(ascii: "!")) else { throw .thirdBang }
        let pattern = String(decoding: b[1..<second], as: UTF8.self)
        let replacement = Array(b[(second + 1)..<third])
        guard let re = POSIXRegex(pattern, flags: REG_EXTENDED) else { throw .badPattern(pattern) }
        let inBytes = Array(input.utf8)
        guard let groups = inBytes.withUnsafeBytes({ re.match($0) }) else { throw .noMatch }
        var out: [UInt8] = []
        var i = 0
        while i < replacement.count {
            let c = replacement[i]
            if c == UInt8(ascii: "\\"), i + 1 < replacement.count {
                let n = replacement[i + 1]
                if n >= 0x30 && n <= 0x39 {
                    let g = Int(n - 0x30)
                    if g < groups.count, let r = groups[g] { out += inBytes[r] }
                    i += 2
                    continue
                }
                out.append(n)
                i += 2
                continue
            }
            out.append(c)
            i += 1
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Appends `tel_uri_params` to a URI (before its headers), as Kamailio's add_uri_param.
    static func addParams(_ uri: String, _ params: String) -> String {
        guard !params.isEmpty else { return uri }
        if let q = uri.firstIndex(of: "?") { return String(uri[..<q]) + params + String(uri[q...]) }
        return uri + params
    }

    /// The NAPTR records of `name`, nil (and a log line) when the lookup fails.
    static func lookup(_ ctx: RouteContext, _ name: String) -> [NAPTRRecord]? {
        sorted(ctx.services.queryNAPTR(name))
    }

    /// Order, then preference (the resolver sorts already; kept stable here).
    static func sorted(_ records: [NAPTRRecord]?) -> [NAPTRRecord]? {
        guard let records else { return nil }
        return records.enumerated().sorted {
            ($0.element.order, $0.element.preference, $0.offset) < ($1.element.order, $1.element.preference, $1.offset)
        }.map(\.element)
    }

    /// Kamailio's do_query: the most preferred matching record rewrites the R-URI (q 0.99), the others
    /// become branches with q lowered by 0.01 per (order, preference) step. 1 if one was used, else -1.
    static func apply(_ ctx: RouteContext, _ s: Settings, number: String, name: String, service: String) -> KemiResult {
        guard let m = ctx.message, m.isRequest else { return .int(-1) }
        // async_io: the NAPTR query runs on a lookup thread while the route waits.
        if let ticket = ctx.asyncIO?.beginAwait(ctx) {
            let services = ctx.services
            AsyncIOLookups.shared.run {
                let records = sorted(services.queryNAPTR(name))
                ticket.complete { ctx in apply(ctx, s, number: number, name: name, service: service, records: records) }
            }
            return .none
        }
        return apply(ctx, s, number: number, name: name, service: service, records: lookup(ctx, name))
    }

    static func apply(_ ctx: RouteContext, _ s: Settings, number: String, name: String, service: String,
                      records found: [NAPTRRecord]?) -> KemiResult {
        guard let m = ctx.message, m.isRequest else { return .int(-1) }
        guard let records = found, !records.isEmpty else {
            ctx.logger.debug("enum: no NAPTR record found for \(name)")
            return .int(-1)
        }
        var q = 990
        var current = 0
        var first = true
        for r in records where serviceMatches(r, service) {
            let result: String
            do {
                result = addParams(try rewrite(r.regexp, number), s.telURIParams)
            } catch {
                ctx.logger.error("enum: NAPTR of \(name) (regexp '\(r.regexp)'): \(error)")
                continue
            }
            let prio = Int(r.order) << 16 + Int(r.preference)
            if first {
                m.setRequestURI(Array(result.utf8))
                ctx.requestURIQ = q
                current = prio
                first = false
            } else {
                if prio > current { q -= 10; current = prio }
                ctx.appendBranch(Array(result.utf8), q: q)
            }
        }
        if first { ctx.logger.error("enum: no usable NAPTR record for \(name) (service '\(service.isEmpty ? "E2U+sip" : service)')") }
        return .int(first ? -1 : 1)
    }

    static func ruriUser(_ ctx: RouteContext) -> String? {
        guard let m = ctx.message, m.isRequest, let u = ctx.currentRequestURI else {
            ctx.logger.error("enum: parsing of R-URI failed")
            return nil
        }
        return u.user ?? ""
    }

    static func query(_ ctx: RouteContext, _ s: Settings, suffix: String, service: String) -> KemiResult {
        guard let user = ruriUser(ctx) else { return .int(-1) }
        guard isE164(user) else {
            ctx.logger.error("enum: R-URI user '<\(user)>' is not an E164 number")
            return .int(-1)
        }
        return apply(ctx, s, number: user, name: domain(user, suffix: suffix), service: service)
    }

    static func pvQuery(_ ctx: RouteContext, _ s: Settings, number: String, suffix: String, service: String) -> KemiResult {
        guard isE164(number) else {
            ctx.logger.error("enum: pseudo variable does not contain an E164 number")
            return .int(-1)
        }
        return apply(ctx, s, number: number, name: domain(number, suffix: suffix), service: service)
    }

    static func iQuery(_ ctx: RouteContext, _ s: Settings, suffix: String, service: String) -> KemiResult {
        guard let user = ruriUser(ctx) else { return .int(-1) }
        guard isE164(user) else {
            ctx.logger.error("enum: R-URI user is not an E164 number")
            return .int(-1)
        }
        if s.blAlgorithm.lowercased() != "cc" {
            ctx.logger.warning("enum: bl_algorithm '\(s.blAlgorithm)' is not supported, using 'cc'")
        }
        return apply(ctx, s, number: user, name: infrastructureDomain(user, suffix: suffix, label: s.branchLabel),
                     service: service)
    }

    /// 1 if the From user is an E.164 number whose ENUM SIP URI resolves to the source address; -1 not
    /// E.164 / no From, -3 no NAPTR, -5 bad regexp, -6 no match, -7 bad URI, -8 no address matched.
    static func isFromUserEnum(_ ctx: RouteContext, _ s: Settings, suffix: String, service: String) -> KemiResult {
        guard let m = ctx.message, let v = m.firstValue(.from), let na = m.parseNameAddr(v),
              let furi = m.uri(na.uri) else {
            ctx.logger.error("enum: failed to parse the From URI")
            return .int(-1)
        }
        let user = furi.user ?? ""
        guard isE164(user) else {
            ctx.logger.error("enum: From URI user is not an E164 number")
            return .int(-1)
        }
        let name = domain(user, suffix: suffix)
        if let ticket = ctx.asyncIO?.beginAwait(ctx) {
            let services = ctx.services
            AsyncIOLookups.shared.run {
                let records = sorted(services.queryNAPTR(name))
                ticket.complete { ctx in fromUserMatches(ctx, user: user, name: name, service: service, records: records) }
            }
            return .none
        }
        return fromUserMatches(ctx, user: user, name: name, service: service, records: lookup(ctx, name))
    }

    static func fromUserMatches(_ ctx: RouteContext, user: String, name: String, service: String,
                                records found: [NAPTRRecord]?) -> KemiResult {
        guard let records = found, !records.isEmpty else { return .int(-3) }
        for r in records where serviceMatches(r, service) {
            let result: String
            do {
                result = try rewrite(r.regexp, user)
            } catch .noMatch {
                ctx.logger.error("enum: regexp replace failed for \(name)")
                return .int(-6)
            } catch {
                ctx.logger.error("enum: parsing of NAPTR regexp failed for \(name): \(error)")
                return .int(-5)
            }
            guard let u = SIPURI(result) else {
                ctx.logger.error("enum: parsing of URI <\(result)> failed")
                return .int(-7)
            }
            let addrs = ctx.services.resolve(host: u.host, port: u.port, proto: .udp)
            if addrs.contains(where: { $0.ip == ctx.received.source.ip }) { return .int(1) }
        }
        return .int(-8)
    }
}

extension EnumModule: KSRModule {
    static let name = "enum"
    static let summary = "ENUM (E.164 to URI) lookups through NAPTR records."
    static let domainSuffix = ModuleParameter.str("enum", "domain_suffix", "e164.arpa.", "The ENUM tree of enum_query().")
    static let iEnumSuffix = ModuleParameter.str("enum", "i_enum_suffix", "e164.arpa.", "The suffix of infrastructure ENUM queries.")
    static let telURIParams = ModuleParameter.str("enum", "tel_uri_params", "", "Parameters appended to URIs built from tel: NAPTRs.")
    static let branchLabel = ModuleParameter.str("enum", "branchlabel", "i", "The label of the infrastructure ENUM branch.")
    static let blAlgorithm = ModuleParameter.str("enum", "bl_algorithm", "cc", "Branch location algorithm: cc, txt or ebl.")
    static let parameters = [domainSuffix, iEnumSuffix, telURIParams, branchLabel, blAlgorithm].map(\.info)
    static func exports(_ runtime: ModuleRuntime) -> [KemiExport] { exports(runtime.config) }
}
