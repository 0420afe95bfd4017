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
    /// usrloc's `cseq_delay`: a REGISTER with the same Call-ID and CSeq within this many seconds is a
    /// retransmission (skipped), later it is rejected.
    var cseqDelay = 20

    init(_ c: ModuleConfiguration) {
        defaultExpires = c.int("registrar", "default_expires", default: 3600)
        minExpires = c.int("registrar", "min_expires", default: 60)
        minExpiresMode = c.int("registrar", "min_expires_mode", default: 0)
        maxExpires = c.int("registrar", "max_expires", default: 0)
        defaultQ = c.int("registrar", "default_q", default: -1)
        appendBranches = c.int("registrar", "append_branches", default: 1) != 0
        caseSensitive = c.int("registrar", "case_sensitive", default: 1) != 0
        receivedAVP = c.string("registrar", "received_avp").flatMap(Self.avpName)
        receivedParam = c.string("registrar", "received_param") ?? "received"
        maxContacts = c.int("registrar", "max_contacts", default: 0)
        retryAfter = c.int("registrar", "retry_after", default: 0)
        methodFiltering = c.int("registrar", "method_filtering", default: 0) != 0
        usePath = c.int("registrar", "use_path", default: 0) != 0
        pathMode = c.int("registrar", "path_mode", default: 2)
        pathUseReceived = c.int("registrar", "path_use_received", default: 0) != 0
        cseqDelay = c.int("usrloc", "cseq_delay", default: 20)
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
