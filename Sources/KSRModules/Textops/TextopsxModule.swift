#if canImport(Glibc)
import Glibc
#endif
import SIPCore
import StarlingKEMI
import Logging

/// The parts of `KSR.textopsx` scripts use: applying pending edits, reply status, body and header
/// filtering, shell-style matching.
enum TextopsxModule {
    static func exports() -> [KemiExport] {
        var out: [KemiExport] = []
        func add(_ name: String, _ params: [KemiParamType], _ ret: KemiReturnType = .int, compat: String? = nil,
                 _ fn: @escaping KemiFunction) {
            out.append(KemiExport("textopsx", name, params, returns: ret, compat: compat, fn))
        }
        add("msg_apply_changes", []) { ctx, _ in
            guard let m = ctx.message else { return .int(-1) }
            if m.edits.isEmpty { return .int(1) }
            do {
                ctx.message = try m.applyingEdits()
                return .int(1)
            } catch {
                ctx.logger.error("msg_apply_changes: the edited message does not parse: \(error)")
                return .int(-1)
            }
        }
        add("change_reply_status", [.int, .str]) { ctx, a in
            guard let m = ctx.message, !m.isRequest else { return .int(-1) }
            let code = a.int(0), reason = a.str(1)
            guard code >= 100 && code <= 699, !reason.isEmpty else { return .int(-1) }
            // a final reply may not become provisional (and vice versa), as in Kamailio
            if (m.statusCode < 200) != (code < 200) { return .int(-1) }
            let start = m.versionRange.upper + 1
            let end = m.reasonRange.isEmpty ? start + 3 : m.reasonRange.upper
            m.replaceBytes(ByteRange(start, end), with: Array("\(code) \(reason)".utf8))
            return .int(1)
        }
        add("remove_body", []) { ctx, _ in
            guard let m = ctx.message, m.bodyRange.count > 0 else { return .int(-1) }
            m.setBody([])
            return .int(1)
        }
        add("keep_hf", [.str], compat: "the regex argument (keep_hf with a regex) is matched against header names") { ctx, a in
            guard let m = ctx.message else { return .int(-1) }
            let re = a.str(0).isEmpty ? nil : ctx.regex(a.str(0))
            for h in m.headerFields {
                switch h.kind {
                case .via, .from, .to, .callID, .cseq, .contentLength, .contentType, .maxForwards, .route, .recordRoute, .contact:
                    continue
                default:
                    if let re, TextopsModule.withRange(m, h.name, { re.matches($0) }) { continue }
                    m.removeHeader(h)
                }
            }
            return .int(1)
        }
        add("fnmatch", [.str, .str]) { _, a in .code(Glibc.fnmatch(a.str(1), a.str(0), 0) == 0) }
        add("fnmatch_ex", [.str, .str, .str]) { _, a in
            .code(Glibc.fnmatch(a.str(1), a.str(0), a.str(2).contains("i") ? 16 /* FNM_CASEFOLD */ : 0) == 0)
        }
        return out
    }
}

extension TextopsxModule: KSRModule {
    static let name = "textopsx"
    static let summary = "More text operations: apply changes, header value edits."
    static func exports(_ runtime: ModuleRuntime) -> [KemiExport] { exports() }
}
