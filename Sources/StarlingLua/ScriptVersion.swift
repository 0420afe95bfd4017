/// A content hash of a script and the modules it loaded, for logs ("version 3f2a9c01b7e4d5a6 active").
/// FNV-1a 64 over each file's bytes (with a separator), so moving files does not change it.
public struct ScriptVersion: Sendable, Hashable, CustomStringConvertible {
    public let value: UInt64

    public init(value: UInt64) { self.value = value }

    /// Hashes the given files' bytes, in order.
    public init(files: [(path: String, bytes: [UInt8])]) {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        func mix<S: Sequence>(_ s: S) where S.Element == UInt8 {
            for b in s {
                h ^= UInt64(b)
                h = h &* 0x0000_0100_0000_01b3
            }
        }
        for f in files {
            mix(f.bytes)
            mix(CollectionOfOne(0))
        }
        value = h
    }

    /// 16 hex digits.
    public var description: String {
        let s = String(value, radix: 16)
        return String(repeating: "0", count: 16 - s.count) + s
    }
}
