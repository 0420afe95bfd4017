import StarlingServer

/// A small JSON writer for the command-line tools' output (no Foundation: the values are built by hand
/// so that bytes such as NUL in a header survive as \u0000).
indirect enum JSON {
    case null
    case bool(Bool)
    case int(Int)
    case string(String)
    case array([JSON])
    case object([(String, JSON)])

    func render(indent: Int = 0, into out: inout String) {
        let pad = String(repeating: "  ", count: indent + 1)
        let closePad = String(repeating: "  ", count: indent)
        switch self {
        case .null: out += "null"
        case .bool(let b): out += b ? "true" : "false"
        case .int(let i): out += String(i)
        case .string(let s): JSON.escape(s, into: &out)
        case .array(let items):
            if items.isEmpty { out += "[]"; return }
            out += "[\n"
            for (k, item) in items.enumerated() {
                out += pad
                item.render(indent: indent + 1, into: &out)
                out += k + 1 < items.count ? ",\n" : "\n"
            }
            out += closePad + "]"
        case .object(let fields):
            if fields.isEmpty { out += "{}"; return }
            out += "{\n"
            for (k, (name, value)) in fields.enumerated() {
                out += pad
                JSON.escape(name, into: &out)
                out += ": "
                value.render(indent: indent + 1, into: &out)
                out += k + 1 < fields.count ? ",\n" : "\n"
            }
            out += closePad + "}"
        }
    }

    var rendered: String {
        var s = ""
        render(into: &s)
        return s
    }

    static func escape(_ s: String, into out: inout String) { JSONLogHandler.escape(s, into: &out) }

    static func optString(_ s: String?) -> JSON { s.map { .string($0) } ?? .null }
    static func optInt(_ i: Int?) -> JSON { i.map { .int($0) } ?? .null }
}
