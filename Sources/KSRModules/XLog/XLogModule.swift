import SIPCore
import StarlingKEMI
import Logging

/// A compiled xlog format: literal text and pseudo-variables, parsed once per distinct format.
struct XLogFormat {
    enum Segment {
        case literal([UInt8])
        case pv(PseudoVariable?)
    }
    let segments: [Segment]

    /// Splits `"$rm from $si:$sp\n"` into segments. A PV is `$name`, `$name(inner)` (balanced
    /// parentheses) or `$(...)`; `$$` is a literal `$`. Unknown names print "<null>".
    init(_ format: String, cache: PVCache) {
        let b = Array(format.utf8)
        var out: [Segment] = []
        var lit: [UInt8] = []
        var i = 0
        func isName(_ c: UInt8) -> Bool {
            (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || c == 0x5F
        }
        func balanced(from start: Int) -> Int? {
            // b[start] == "(": index after the matching ")"
            var depth = 0, j = start
            while j < b.count {
                if b[j] == UInt8(ascii: "(") { depth += 1 }
                if b[j] == UInt8(ascii: ")") { depth -= 1; if depth == 0 { return j + 1 } }
                j += 1
            }
            return nil
        }
        while i < b.count {
            guard b[i] == UInt8(ascii: "$"), i + 1 < b.count else { lit.append(b[i]); i += 1; continue }
            if b[i + 1] == UInt8(ascii: "$") { lit.append(b[i]); i += 2; continue }
            var end: Int
            if b[i + 1] == UInt8(ascii: "(") {
                guard let e = balanced(from: i + 1) else { lit.append(b[i]); i += 1; continue }
                end = e
            } else {
                end = i + 1
                while end < b.count && isName(b[end]) { end += 1 }
                if end == i + 1 { lit.append(b[i]); i += 1; continue }
                if end < b.count && b[end] == UInt8(ascii: "("), let e = balanced(from: end) { end = e }
            }
            if !lit.isEmpty { out.append(.literal(lit)); lit = [] }
            out.append(.pv(cache.spec(String(decoding: b[i..<end], as: UTF8.self))))
            i = end
        }
        if !lit.isEmpty { out.append(.literal(lit)) }
        segments = out
    }

    func render(_ ctx: RouteContext) -> String {
        var out: [UInt8] = []
        for s in segments {
            switch s {
            case .literal(let l): out.append(contentsOf: l)
            case .pv(nil): out.append(contentsOf: "<null>".utf8)
            case .pv(let pv?):
                switch PVEngine.get(ctx, pv) {
                case .null: out.append(contentsOf: "<null>".utf8)
                case .int(let i): out.append(contentsOf: String(i).utf8)
                case .string(let s): out.append(contentsOf: s.utf8)
                case .bytes(let r): ctx.message?.withBytes { out.append(contentsOf: UnsafeRawBufferPointer(rebasing: $0[r.range])) }
                }
            }
        }
        return String(decoding: out, as: UTF8.self)
    }
}

/// Per-worker cache of compiled formats (bounded).
final class XLogCache {
    var formats: [String: XLogFormat] = [:]

    func format(_ text: String, _ ctx: RouteContext) -> XLogFormat {
        if let f = formats[text] { return f }
        let f = XLogFormat(text, cache: ctx.pvCache)
        if formats.count >= 4096 { formats.removeAll(keepingCapacity: true) }
        formats[text] = f
        return f
    }
}

/// `KSR.xlog` (REFERENCE §2.21): log lines with pseudo-variables expanded. Returns 1.
enum XLogModule {
    /// The text a format gives for the current message.
    static func render(_ ctx: RouteContext, _ format: String) -> String {
        ctx.worker.local(XLogCache.self) { XLogCache() }.format(format, ctx).render(ctx)
    }

    static func log(_ ctx: RouteContext, _ level: Logger.Level, _ format: String?) -> KemiResult {
        guard let format else { return .int(-1) }
        // Skip the expansion when the level is filtered out.
        guard ctx.logger.logLevel <= level else { return .int(1) }
        var text = render(ctx, format)
        if text.hasSuffix("\n") { text.removeLast() }
        ctx.logger.log(level: level, "\(text)")
        return .int(1)
    }

    static func level(_ name: String) -> Logger.Level {
        switch name.uppercased() {
        case "L_ALERT", "L_BUG", "L_CRIT0", "L_CRIT2", "L_CRIT": return .critical
        case "L_ERR": return .error
        case "L_WARN": return .warning
        case "L_NOTICE": return .notice
        case "L_INFO": return .info
        case "L_DBG": return .debug
        default: return .error
        }
    }

    static func exports() -> [KemiExport] {
        var out: [KemiExport] = []
        for (name, level) in [("xdbg", Logger.Level.debug), ("xinfo", .info), ("xnotice", .notice), ("xwarn", .warning),
                              ("xerr", .error), ("xalert", .critical), ("xcrit", .critical)] {
            out.append(KemiExport("xlog", name, [.str], returns: .int) { ctx, a in log(ctx, level, a.string(0)) })
        }
        out.append(KemiExport("xlog", "xlog", [.str, .str], returns: .int) { ctx, a in log(ctx, level(a.str(0)), a.string(1)) })
        return out
    }
}

extension XLogModule: KSRModule {
    static let name = "xlog"
    static let summary = "Formatted logging with pseudo-variables."
    static func exports(_ runtime: ModuleRuntime) -> [KemiExport] { exports() }
}
