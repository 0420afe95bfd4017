#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Byte classes and small helpers used by every grammar. All functions work on raw bytes; nothing here
/// converts to `String`.
@usableFromInline
enum ASCII {
    static let cr: UInt8 = 0x0D
    static let lf: UInt8 = 0x0A
    static let sp: UInt8 = 0x20
    static let ht: UInt8 = 0x09
    static let colon: UInt8 = 0x3A
    static let semicolon: UInt8 = 0x3B
    static let comma: UInt8 = 0x2C
    static let equals: UInt8 = 0x3D
    static let quote: UInt8 = 0x22
    static let backslash: UInt8 = 0x5C
    static let lt: UInt8 = 0x3C
    static let gt: UInt8 = 0x3E
    static let at: UInt8 = 0x40
    static let question: UInt8 = 0x3F
    static let slash: UInt8 = 0x2F
    static let lbracket: UInt8 = 0x5B
    static let rbracket: UInt8 = 0x5D
    static let percent: UInt8 = 0x25
    static let ampersand: UInt8 = 0x26

    /// RFC 3261 `token` characters (alphanum and `-.!%*_+`'~`) as two 64-bit masks. Letters, most of
    /// the bytes of header names, methods and Via protocols, are tested first with one compare.
    @inline(__always) static func isToken(_ c: UInt8) -> Bool {
        if isAlpha(c) { return true }
        if c < 64 { return (0x03ff6ca200000000 as UInt64) >> UInt64(c) & 1 != 0 }
        if c < 128 { return (0x47ffffff87fffffe as UInt64) >> UInt64(c - 64) & 1 != 0 }
        return false
    }

    /// Characters of a host name or IPv4 address (alphanum and `-._`), the same way.
    @inline(__always) static func isHostChar(_ c: UInt8) -> Bool {
        if c < 64 { return (0x03ff600000000000 as UInt64) >> UInt64(c) & 1 != 0 }
        if c < 128 { return (0x07fffffe87fffffe as UInt64) >> UInt64(c - 64) & 1 != 0 }
        return false
    }

    @inline(__always) static func isDigit(_ c: UInt8) -> Bool { c &- 0x30 < 10 }
    @inline(__always) static func isAlpha(_ c: UInt8) -> Bool { (c | 0x20) &- 0x61 < 26 }
    @inline(__always) static func isHex(_ c: UInt8) -> Bool { isDigit(c) || (c | 0x20) &- 0x61 < 6 }
    @inline(__always) static func isWSP(_ c: UInt8) -> Bool { c == sp || c == ht }
    /// Whitespace inside a header value: SP, HTAB and the CR/LF of a folded line.
    @inline(__always) static func isLWS(_ c: UInt8) -> Bool { c == sp || c == ht || c == cr || c == lf }
    @inline(__always) static func lower(_ c: UInt8) -> UInt8 { (c &- 0x41 < 26) ? c | 0x20 : c }

    static func hexValue(_ c: UInt8) -> UInt8? {
        if isDigit(c) { return c - 0x30 }
        let l = c | 0x20
        if l >= 0x61 && l <= 0x66 { return l - 0x61 + 10 }
        return nil
    }
}

/// A read-only view of bytes with the helpers the grammars share. It does not own its memory:
/// the caller keeps the buffer alive while the view is used.
@usableFromInline
struct ByteView {
    @usableFromInline let base: UnsafeRawBufferPointer

    @inlinable init(_ base: UnsafeRawBufferPointer) { self.base = base }

    @inlinable subscript(_ i: Int) -> UInt8 { base[i] }
    @inlinable var count: Int { base.count }

    /// Skips SP, HTAB and folding CR/LF from `i` up to `end`.
    @inline(__always) func skipLWS(_ i: Int, _ end: Int) -> Int {
        var i = i
        while i < end && ASCII.isLWS(base[i]) { i += 1 }
        return i
    }

    /// Moves `end` back over trailing whitespace not before `start`.
    @inline(__always) func trimEnd(_ start: Int, _ end: Int) -> Int {
        var e = end
        while e > start && ASCII.isLWS(base[e - 1]) { e -= 1 }
        return e
    }

    @inline(__always) func trimmed(_ r: ByteRange) -> ByteRange {
        let s = skipLWS(r.lower, r.upper)
        return ByteRange(s, trimEnd(s, r.upper))
    }

    /// Index of the first `c` in `[i, end)`, or `end`.
    @inline(__always) func find(_ c: UInt8, _ i: Int, _ end: Int) -> Int {
        var i = i
        while i < end && base[i] != c { i += 1 }
        return i
    }

    /// Index of the first `c` in `[i, end)`, or `end`, using memchr.
    @inline(__always) func memfind(_ c: UInt8, _ i: Int, _ end: Int) -> Int {
        guard i < end, let b = base.baseAddress else { return end }
        guard let hit = memchr(b + i, Int32(c), end - i) else { return end }
        return b.distance(to: UnsafeRawPointer(hit))
    }

    @inline(__always) func scanToken(_ i: Int, _ end: Int) -> Int {
        var i = i
        while i < end && ASCII.isToken(base[i]) { i += 1 }
        return i
    }

    /// Case-insensitive equality of the bytes in `r` with an ASCII literal.
    @inline(__always) func equalsIgnoringCase(_ r: ByteRange, _ literal: StaticString) -> Bool {
        equalsIgnoringCase(r.lower, r.upper, literal.utf8Start, literal.utf8CodeUnitCount)
    }

    @inline(__always)
    func equalsIgnoringCase(_ s: Int, _ e: Int, _ p: UnsafePointer<UInt8>, _ n: Int) -> Bool {
        guard e - s == n else { return false }
        var k = 0
        while k < n {
            if ASCII.lower(base[s + k]) != ASCII.lower(p[k]) { return false }
            k += 1
        }
        return true
    }

    @inline(__always) func equalsIgnoringCase(_ s: Int, _ e: Int, _ literal: StaticString) -> Bool {
        equalsIgnoringCase(s, e, literal.utf8Start, literal.utf8CodeUnitCount)
    }

    /// Case-insensitive equality of the token in `[s, e)` (header name) with a literal of lower-case
    /// letters and `-`: setting bit 5 lower-cases a letter and maps no other token character onto a
    /// letter or `-`, so one OR replaces `ASCII.lower` on both sides.
    @inline(__always) func tokenEquals(_ s: Int, _ e: Int, lowercase literal: StaticString) -> Bool {
        equals(s, e, literal, orMask: 0x20)
    }

    /// Exact (case-sensitive) equality with an ASCII literal.
    @inline(__always) func equals(_ s: Int, _ e: Int, _ literal: StaticString) -> Bool {
        equals(s, e, literal, orMask: 0)
    }

    /// Equality of `[s, e)` with a literal after OR-ing `orMask` into each of the message's bytes.
    @inline(__always) private func equals(_ s: Int, _ e: Int, _ literal: StaticString, orMask: UInt8) -> Bool {
        let n = literal.utf8CodeUnitCount
        guard e - s == n else { return false }
        let p = literal.utf8Start
        var k = 0
        while k < n {
            if base[s + k] | orMask != p[k] { return false }
            k += 1
        }
        return true
    }

    func equals(_ r: ByteRange, _ literal: StaticString) -> Bool {
        guard r.count == literal.utf8CodeUnitCount else { return false }
        let p = literal.utf8Start
        for k in 0..<r.count where base[r.lower + k] != p[k] { return false }
        return true
    }

    /// Parses an unsigned decimal number in `r`, failing past `max` (at most 2^32-1: the value stays
    /// at most `max` between digits, so `v * 10 + d` cannot overflow and is computed unchecked).
    func decimal(_ r: ByteRange, max: UInt64) -> UInt64? {
        assert(max <= UInt64(UInt32.max))
        guard !r.isEmpty else { return nil }
        var v: UInt64 = 0
        for i in r.range {
            let d = base[i] &- 0x30
            guard d < 10 else { return nil }
            v = v &* 10 &+ UInt64(d)
            if v > max { return nil }
        }
        return v
    }

    /// Skips a quoted string starting at the opening quote; returns the index after the closing quote, or nil.
    func skipQuoted(_ i: Int, _ end: Int) -> Int? {
        var i = i + 1
        while i < end {
            let c = base[i]
            if c == ASCII.backslash { i += 2; continue }
            if c == ASCII.quote { return i + 1 }
            i += 1
        }
        return nil
    }

    func string(_ r: ByteRange) -> String {
        String(decoding: UnsafeRawBufferPointer(rebasing: base[r.lower..<r.upper]), as: UTF8.self)
    }

    func bytes(_ r: ByteRange) -> [UInt8] { Array(base[r.lower..<r.upper]) }
}

extension Array where Element == UInt8 {
    @inlinable mutating func append(ascii s: StaticString) {
        append(contentsOf: UnsafeBufferPointer(start: s.utf8Start, count: s.utf8CodeUnitCount))
    }

    /// Appends `v` in base `radix` (2-36, lower-case letters), as `String(v, radix:)` writes it.
    public mutating func appendDigits(_ v: UInt64, radix: UInt64 = 10) {
        let start = count
        var v = v
        repeat {
            let d = UInt8(truncatingIfNeeded: v % radix)
            append(d < 10 ? 0x30 + d : 0x57 + d)
            v /= radix
        } while v > 0
        // Swapped in place: reversing the slice `self[start...]` copied the whole array first.
        var (i, j) = (start, count - 1)
        while i < j {
            swapAt(i, j)
            i += 1
            j -= 1
        }
    }

    mutating func appendDecimal(_ v: Int) {
        if v < 0 { append(UInt8(ascii: "-")); appendDecimal(-v); return }
        if v >= 10 { appendDecimal(v / 10) }
        append(UInt8(truncatingIfNeeded: 0x30 + v % 10))
    }
}
