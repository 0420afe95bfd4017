/// Bencoded values, the encoding of rtpengine's ng control protocol (rtpengine's README, "ng control
/// protocol"): integers `i42e`, byte strings `4:spam`, lists `l...e` and dictionaries `d...e`.
/// A small codec of Starling's own: no Debian or Swift package available here offers one that fits
/// (ordered dictionaries, byte-exact strings, bounded decoding of untrusted input).
enum Bencode: Equatable, Sendable {
    case int(Int)
    case bytes([UInt8])
    case list([Bencode])
    /// Keys in the order they were added (rtpengine does not need them sorted; Kamailio sends them
    /// in insertion order too).
    case dict([(key: String, value: Bencode)])

    static func string(_ s: String) -> Bencode { .bytes(Array(s.utf8)) }

    static func == (a: Bencode, b: Bencode) -> Bool {
        switch (a, b) {
        case (.int(let x), .int(let y)): return x == y
        case (.bytes(let x), .bytes(let y)): return x == y
        case (.list(let x), .list(let y)): return x == y
        case (.dict(let x), .dict(let y)):
            return x.count == y.count && zip(x, y).allSatisfy { $0.key == $1.key && $0.value == $1.value }
        default: return false
        }
    }

    // MARK: Reading

    /// The value of a dictionary key (nil when not a dictionary or absent).
    subscript(key: String) -> Bencode? {
        guard case .dict(let d) = self else { return nil }
        return d.first { $0.key == key }?.value
    }

    /// The text of a byte string (nil otherwise).
    var text: String? {
        guard case .bytes(let b) = self else { return nil }
        return String(decoding: b, as: UTF8.self)
    }

    var byteString: [UInt8]? {
        guard case .bytes(let b) = self else { return nil }
        return b
    }

    var integer: Int? {
        guard case .int(let n) = self else { return nil }
        return n
    }

    // MARK: Encoding

    func encode(into out: inout [UInt8]) {
        switch self {
        case .int(let n):
            out.append(UInt8(ascii: "i"))
            out.append(contentsOf: String(n).utf8)
            out.append(UInt8(ascii: "e"))
        case .bytes(let b):
            out.append(contentsOf: String(b.count).utf8)
            out.append(UInt8(ascii: ":"))
            out.append(contentsOf: b)
        case .list(let l):
            out.append(UInt8(ascii: "l"))
            for v in l { v.encode(into: &out) }
            out.append(UInt8(ascii: "e"))
        case .dict(let d):
            out.append(UInt8(ascii: "d"))
            for (k, v) in d {
                Bencode.string(k).encode(into: &out)
                v.encode(into: &out)
            }
            out.append(UInt8(ascii: "e"))
        }
    }

    var encoded: [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(256)
        encode(into: &out)
        return out
    }

    // MARK: Decoding

    /// Why a reply does not decode.
    struct DecodeError: Error, CustomStringConvertible {
        let offset: Int
        let reason: String
        var description: String { "\(reason) at offset \(offset)" }
    }

    /// Decodes one value that must span all of `bytes` (nesting bounded by `maxDepth`).
    static func decode(_ bytes: ArraySlice<UInt8>, maxDepth: Int = 32) throws(DecodeError) -> Bencode {
        var i = bytes.startIndex
        let v = try value(bytes, &i, depth: maxDepth)
        guard i == bytes.endIndex else { throw DecodeError(offset: i - bytes.startIndex, reason: "trailing bytes") }
        return v
    }

    static func decode(_ bytes: [UInt8]) throws(DecodeError) -> Bencode { try decode(bytes[...]) }

    private static func value(_ b: ArraySlice<UInt8>, _ i: inout Int, depth: Int) throws(DecodeError) -> Bencode {
        let start = b.startIndex
        guard i < b.endIndex else { throw DecodeError(offset: i - start, reason: "unexpected end") }
        guard depth > 0 else { throw DecodeError(offset: i - start, reason: "nested too deeply") }
        switch b[i] {
        case UInt8(ascii: "i"):
            i += 1
            var neg = false
            if i < b.endIndex && b[i] == UInt8(ascii: "-") { neg = true; i += 1 }
            var n = 0
            var digits = 0
            while i < b.endIndex, b[i] >= 0x30, b[i] <= 0x39 {
                let (m, o1) = n.multipliedReportingOverflow(by: 10)
                let (s, o2) = m.addingReportingOverflow(Int(b[i] - 0x30))
                guard !o1, !o2 else { throw DecodeError(offset: i - start, reason: "integer too large") }
                n = s
                digits += 1
                i += 1
            }
            guard digits > 0, i < b.endIndex, b[i] == UInt8(ascii: "e") else {
                throw DecodeError(offset: i - start, reason: "malformed integer")
            }
            i += 1
            return .int(neg ? -n : n)
        case UInt8(ascii: "l"):
            i += 1
            var items: [Bencode] = []
            while true {
                guard i < b.endIndex else { throw DecodeError(offset: i - start, reason: "unterminated list") }
                if b[i] == UInt8(ascii: "e") { i += 1; return .list(items) }
                items.append(try value(b, &i, depth: depth - 1))
            }
        case UInt8(ascii: "d"):
            i += 1
            var items: [(key: String, value: Bencode)] = []
            while true {
                guard i < b.endIndex else { throw DecodeError(offset: i - start, reason: "unterminated dictionary") }
                if b[i] == UInt8(ascii: "e") { i += 1; return .dict(items) }
                guard case .bytes(let k) = try value(b, &i, depth: depth - 1) else {
                    throw DecodeError(offset: i - start, reason: "dictionary key is not a string")
                }
                let v = try value(b, &i, depth: depth - 1)
                items.append((String(decoding: k, as: UTF8.self), v))
            }
        case 0x30...0x39:
            var len = 0
            while i < b.endIndex, b[i] >= 0x30, b[i] <= 0x39 {
                len = len * 10 + Int(b[i] - 0x30)
                guard len <= b.count else { throw DecodeError(offset: i - start, reason: "string longer than the reply") }
                i += 1
            }
            guard i < b.endIndex, b[i] == UInt8(ascii: ":") else { throw DecodeError(offset: i - start, reason: "malformed string length") }
            i += 1
            guard b.endIndex - i >= len else { throw DecodeError(offset: i - start, reason: "string longer than the reply") }
            let s = Array(b[i..<(i + len)])
            i += len
            return .bytes(s)
        default:
            throw DecodeError(offset: i - start, reason: "unexpected byte 0x\(String(b[i], radix: 16))")
        }
    }

    // MARK: JSON (rtpengine_query_v)

    /// The value as JSON, as Kamailio's `rtpengine_query_v` prints it (strings as JSON strings,
    /// integers as numbers, lists as arrays, dictionaries as objects); `pretty` indents.
    func json(pretty: Bool = false, indent: Int = 0) -> String {
        switch self {
        case .int(let n): return String(n)
        case .bytes(let b): return Bencode.jsonString(String(decoding: b, as: UTF8.self))
        case .list(let l):
            if l.isEmpty { return "[]" }
            if !pretty { return "[" + l.map { $0.json() }.joined(separator: ",") + "]" }
            let pad = String(repeating: "\t", count: indent + 1)
            let body = l.map { pad + $0.json(pretty: true, indent: indent + 1) }
            return "[\n" + body.joined(separator: ",\n") + "\n" + String(repeating: "\t", count: indent) + "]"
        case .dict(let d):
            if d.isEmpty { return "{}" }
            if !pretty { return "{" + d.map { Bencode.jsonString($0.key) + ":" + $0.value.json() }.joined(separator: ",") + "}" }
            let pad = String(repeating: "\t", count: indent + 1)
            let body = d.map { pad + Bencode.jsonString($0.key) + ":\t" + $0.value.json(pretty: true, indent: indent + 1) }
            return "{\n" + body.joined(separator: ",\n") + "\n" + String(repeating: "\t", count: indent) + "}"
        }
    }

    static func jsonString(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if u.value < 0x20 {
                    let h = String(u.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - h.count) + h
                } else {
                    out.unicodeScalars.append(u)
                }
            }
        }
        return out + "\""
    }
}
