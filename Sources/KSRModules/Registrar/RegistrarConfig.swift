import SIPCore
import StarlingKEMI

/// `[modparam.registrar]` values the functions use (Kamailio 5.6 defaults).
struct RegistrarConfig: Sendable {
    var defaultExpires = 3600
    var minExpires = 60
    /// 0: raise a too-short expires to min_expires; 1: reject with 423.
    var minExpiresMode = 0
    /// 0: no limit.
    var maxExpires = 0
    /// q in thousandths; -1 unspecified.
    var defaultQ = -1
    var appendBranches = true
    var caseSensitive = true
    /// The AVP name (`$avp(RECEIVED)` -> "RECEIVED") `fix_nated_register` stores the source in.
    var receivedAVP: String?
    /// The Contact parameter the received address is shown with in the 200 (`received`).
    var receivedParam = "received"
    var maxContacts = 0
    var retryAfter = 0
    var methodFiltering = false
    var usePath = false
    /// 0 off, 1 lazy, 2 strict.
    var pathMode = 2
    var pathUseReceived = false
    var pathCheckLocal = false
    /// usrloc's `cseq_delay`: a REGISTER with the same Call-ID and CSeq within this many seconds is a
    /// retransmission (skipped), later it is rejected.
    var cseqDelay = 20

    init(_ c: ModuleConfiguration) {
        typealias R = RegistrarModule
        defaultExpires = c[R.defaultExpires]
        minExpires = c[R.minExpires]
        minExpiresMode = c[R.minExpiresMode]
        maxExpires = c[R.maxExpires]
        defaultQ = c[R.defaultQ]
        appendBranches = c[R.appendBranches]
        caseSensitive = c[R.caseSensitive]
        receivedAVP = c[R.receivedAVP].flatMap(Self.avpName)
        receivedParam = c[R.receivedParam]
        maxContacts = c[R.maxContacts]
        retryAfter = c[R.retryAfter]
        methodFiltering = c[R.methodFiltering]
        usePath = c[R.usePath]
        pathMode = c[R.pathMode]
        pathUseReceived = c[R.pathUseReceived]
        pathCheckLocal = c[R.pathCheckLocal]
        cseqDelay = c[UsrlocModule.cseqDelay]
    }

    /// `$avp(NAME)` / `$avp(s:NAME)` -> the key nathelper's fix_nated_register writes under (a bare
    /// name is taken as is).
    static func avpName(_ spec: String) -> String? {
        let s = String(Substring(spec).trimmingCharacters(" "))
        if s.hasPrefix("$avp(") { return PermissionsModule.avpName(s) }
        return s.isEmpty ? nil : s
    }
}

/// Kamailio's METHOD_* bits (the `methods` column).
enum MethodBits {
    static func bit(_ m: SIPMethod) -> Int {
        switch m {
        case .invite: return 1
        case .cancel: return 2
        case .ack: return 4
        case .bye: return 8
        case .info: return 16
        case .register: return 32
        case .subscribe: return 64
        case .notify: return 128
        case .message: return 256
        case .options: return 512
        case .prack: return 1024
        case .update: return 2048
        case .refer: return 4096
        case .publish: return 8192
        case .kdmq: return 16384
        default: return 32768
        }
    }

    /// The bitmask of a comma-separated method list (Allow header, `methods` Contact parameter).
    static func parse(_ list: String) -> Int {
        var mask = 0
        for part in list.split(separator: ",") {
            let name = String(part.trimmingCharacters(" \t\"")).uppercased()
            if !name.isEmpty { mask |= bit(SIPMethod(name: name)) }
        }
        return mask
    }
}

extension RegistrarModule: KSRModule {
    static let name = "registrar"
    static let summary = "REGISTER processing (save, lookup, unregister) over usrloc's location tables."
    static let dependencies = ["usrloc"]
    static let defaultExpires = ModuleParameter.int("registrar", "default_expires", 3600, "Expires of a contact that gives none (s).")
    static let minExpires = ModuleParameter.int("registrar", "min_expires", 60, "The shortest expires accepted (s).")
    static let minExpiresMode = ModuleParameter.int("registrar", "min_expires_mode", 0, in: 0...1,
                                                    "0: raise a too short expires to min_expires; 1: refuse it with 423.")
    static let maxExpires = ModuleParameter.int("registrar", "max_expires", 0, "The longest expires kept (s, 0: no limit).")
    static let defaultQ = ModuleParameter.int("registrar", "default_q", -1, in: -1...1000, "q of a contact that gives none (thousandths, -1: none).")
    static let appendBranches = ModuleParameter.flag("registrar", "append_branches", true, "lookup() adds a branch for every contact, not only the first.")
    static let caseSensitive = ModuleParameter.flag("registrar", "case_sensitive", true, "AoRs compare case-sensitively.")
    static let receivedAVP = ModuleParameter.optionalStr("registrar", "received_avp", "The AVP holding the received address fix_nated_register stored.")
    static let receivedParam = ModuleParameter.str("registrar", "received_param", "received", "The Contact parameter carrying the received address.")
    static let maxContacts = ModuleParameter.int("registrar", "max_contacts", 0, "The most contacts an AoR may have (0: no limit).")
    static let retryAfter = ModuleParameter.int("registrar", "retry_after", 0, "Retry-After in 503 replies (s, 0: none).")
    static let methodFiltering = ModuleParameter.flag("registrar", "method_filtering", false, "lookup() skips contacts whose Allow lacks the method.")
    static let usePath = ModuleParameter.flag("registrar", "use_path", false, "Store Path headers with contacts and route through them.")
    static let pathMode = ModuleParameter.int("registrar", "path_mode", 2, in: 0...2, "Path support required of the UA: 0 off, 1 lazy, 2 strict.")
    static let pathUseReceived = ModuleParameter.flag("registrar", "path_use_received", false, "Use the received parameter of the Path as the next hop.")
    static let pathCheckLocal = ModuleParameter.flag("registrar", "path_check_local", false,
        "On lookup, skip the first Path hop when it is this server (go to the next one, or to the contact).")
    static let parameters = [defaultExpires, minExpires, minExpiresMode, maxExpires, defaultQ, maxContacts, retryAfter, pathMode].map(\.info)
        + [appendBranches, caseSensitive, methodFiltering, usePath, pathUseReceived, pathCheckLocal].map(\.info)
        + [receivedAVP.info, receivedParam.info]
}

extension RegistrarModule {
    /// Kamailio's registrar registers the `location` usrloc domain at start; ul.* methods see it.
    static func start(_ runtime: ModuleRuntime) throws(ModuleStartError) {
        _ = runtime.usrloc.table("location")
    }
}
