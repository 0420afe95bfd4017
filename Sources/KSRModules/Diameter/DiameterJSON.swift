#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Diameter

/// ims_diameter_server's JSON AVP format (Kamailio's avp_helper.c, `addAVPsfromJSON`), parsed with
/// Foundation's `JSONDecoder` (not on the per-message SIP path: only `diameter_request*` and writes
/// of `$diameter_response` parse JSON).
///
/// The text is an array of AVPs: `{"avpCode": 268, "vendorId": 0, "Flags": 64, <value>}` where the
/// value is, in Kamailio's order of precedence, `"list": [AVPs]` (Grouped), `"int32": n` (4 bytes),
/// `"string": "..."` (the UTF-8 bytes), `"hexdump": "0a0b"` (raw bytes). Starling also reads the
/// keys its own `$diameter_request` output has, after those: `"int64": n` (8 bytes), `"address":
/// "192.0.2.1"` (an Address AVP) and `"data": "hex"` (raw bytes), so an AVP read from
/// `$diameter_request` / `$diameter_response` can be written back. A non-zero `vendorId` sets the
/// V flag; `Flags` is the AVP flag byte (0 when absent: not mandatory, as Kamailio).
enum DiameterJSON {
    /// Any JSON value (the decoder's view, before the AVP format is checked).
    indirect enum Value: Decodable {
        case null
        case bool(Bool)
        case int(Int64)
        case number(Double)
        case string(String)
        case array([Value])
        case object([String: Value])

        init(from decoder: any Decoder) throws {
            let c = try decoder.singleValueContainer()
            if c.decodeNil() { self = .null }
            else if let b = try? c.decode(Bool.self) { self = .bool(b) }
            else if let i = try? c.decode(Int64.self) { self = .int(i) }
            else if let d = try? c.decode(Double.self) { self = .number(d) }
            else if let s = try? c.decode(String.self) { self = .string(s) }
            else if let a = try? c.decode([Value].self) { self = .array(a) }
            else { self = .object(try c.decode([String: Value].self)) }
        }

        var integer: Int64? {
            switch self {
            case .int(let i): return i
            case .number(let d) where d.rounded() == d && abs(d) < 9.2e18: return Int64(d)
            default: return nil
            }
        }
    }

    struct ParseError: Error, CustomStringConvertible {
        var description: String
        init(_ d: String) { description = d }
    }

    /// The AVPs of `text`. Items without `avpCode` or `vendorId`, or without a value, are skipped
    /// with a warning in `warnings` (as Kamailio does); text that is not JSON, not an array, or with a
    /// value of the wrong type or out of range is refused.
    static func parse(_ text: String, warnings: inout [String]) throws(ParseError) -> [DiameterAVP] {
        let root: Value
        do {
            root = try JSONDecoder().decode(Value.self, from: Data(text.utf8))
        } catch {
            throw ParseError("not JSON: \(error)")
        }
        guard case .array(let items) = root else { throw ParseError("expected an array of AVPs ([{\"avpCode\":..., \"vendorId\":...}, ...])") }
        return try list(items, depth: 0, warnings: &warnings)
    }

    private static func list(_ items: [Value], depth: Int, warnings: inout [String]) throws(ParseError) -> [DiameterAVP] {
        guard depth < DiameterAVP.maxDepth else { throw ParseError("grouped AVPs nested more than \(DiameterAVP.maxDepth) deep") }
        var out: [DiameterAVP] = []
        for (i, item) in items.enumerated() {
            guard case .object(let o) = item else { throw ParseError("item \(i) is not an object") }
            if let a = try avp(o, index: i, depth: depth, warnings: &warnings) { out.append(a) }
        }
        return out
    }

    private static func avp(_ o: [String: Value], index: Int, depth: Int, warnings: inout [String]) throws(ParseError) -> DiameterAVP? {
        guard let codeValue = o["avpCode"] else {
            warnings.append("mandatory field missing: avpCode (item \(index))")
            return nil
        }
        guard let code = codeValue.integer, let code32 = UInt32(exactly: code) else { throw ParseError("avpCode of item \(index) is not an AVP code") }
        guard let vendorValue = o["vendorId"] else {
            warnings.append("mandatory field missing: vendorId (avpCode \(code))")
            return nil
        }
        guard let vendor = vendorValue.integer, let vendor32 = UInt32(exactly: vendor) else { throw ParseError("vendorId of avpCode \(code) is not a vendor id") }
        var flags: UInt8 = 0
        if let f = o["Flags"] {
            guard let v = f.integer, let b = UInt8(exactly: v) else { throw ParseError("Flags of avpCode \(code) is not a flag byte (0-255)") }
            flags = b
        }
        let data: [UInt8]
        if let l = o["list"] {
            guard case .array(let kids) = l else { throw ParseError("list of avpCode \(code) is not an array") }
            var bytes: [UInt8] = []
            for k in try list(kids, depth: depth + 1, warnings: &warnings) { k.encode(into: &bytes) }
            data = bytes
        } else if let v = o["int32"] {
            guard let n = v.integer, n >= Int64(Int32.min), n <= Int64(UInt32.max) else {
                throw ParseError("int32 of avpCode \(code) is not a 32-bit integer")
            }
            data = withUnsafeBytes(of: UInt32(truncatingIfNeeded: n).bigEndian) { Array($0) }
        } else if let v = o["string"] {
            guard case .string(let s) = v else { throw ParseError("string of avpCode \(code) is not a string") }
            data = Array(s.utf8)
        } else if let v = o["hexdump"] {
            guard case .string(let s) = v, let b = hex(s) else { throw ParseError("hexdump of avpCode \(code) is not hexadecimal") }
            data = b
        } else if let v = o["int64"] {
            guard let n = v.integer else { throw ParseError("int64 of avpCode \(code) is not an integer") }
            data = withUnsafeBytes(of: UInt64(bitPattern: n).bigEndian) { Array($0) }
        } else if let v = o["address"] {
            guard case .string(let s) = v, let b = address(s) else { throw ParseError("address of avpCode \(code) is not an IPv4 or IPv6 address") }
            data = b
        } else if let v = o["data"] {
            guard case .string(let s) = v, let b = hex(s) else { throw ParseError("data of avpCode \(code) is not hexadecimal") }
            data = b
        } else {
            warnings.append("Not a string, int32, list, hexdump? Invalid field definition... (\(code):\(vendor))")
            return nil
        }
        guard data.count <= 1 << 20 else { throw ParseError("avpCode \(code): value too long") }
        var a = DiameterAVP(code: code32, vendorID: vendor32 != 0 ? vendor32 : nil, mandatory: false, data: data)
        a.flags = (flags & ~DiameterAVP.flagVendor) | (vendor32 != 0 ? DiameterAVP.flagVendor : 0)
        return a
    }

    /// Hex digits (upper or lower case) to bytes; nil for an odd length or another character.
    static func hex(_ s: String) -> [UInt8]? {
        let u = Array(s.utf8)
        guard u.count % 2 == 0 else { return nil }
        func nibble(_ c: UInt8) -> UInt8? {
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): return c - UInt8(ascii: "A") + 10
            default: return nil
            }
        }
        var out: [UInt8] = []
        out.reserveCapacity(u.count / 2)
        var i = 0
        while i < u.count {
            guard let h = nibble(u[i]), let l = nibble(u[i + 1]) else { return nil }
            out.append(h << 4 | l)
            i += 2
        }
        return out
    }

    /// An Address AVP's data (RFC 6733 §4.3.1: family 1 + 4 bytes, family 2 + 16 bytes).
    static func address(_ s: String) -> [UInt8]? {
        if let v4 = DiameterAVP.address(0, ipv4: s) { return v4.data }
        // IPv6: eight groups, "::" once.
        let halves = s.split(separator: "::", omittingEmptySubsequences: false).map(String.init)
        guard halves.count <= 2 else { return nil }
        func groups(_ part: String) -> [UInt16]? {
            if part.isEmpty { return [] }
            var out: [UInt16] = []
            for g in part.split(separator: ":", omittingEmptySubsequences: false) {
                guard !g.isEmpty, g.count <= 4, let v = UInt16(g, radix: 16) else { return nil }
                out.append(v)
            }
            return out
        }
        guard let head = groups(halves[0]) else { return nil }
        var all = head
        if halves.count == 2 {
            guard let tail = groups(halves[1]), head.count + tail.count < 8 else { return nil }
            all += Array(repeating: 0, count: 8 - head.count - tail.count) + tail
        }
        guard all.count == 8 else { return nil }
        return [0, 2] + all.flatMap { [UInt8($0 >> 8), UInt8($0 & 0xFF)] }
    }
}
