/// A half-open range of byte offsets into a message buffer (or any byte buffer a parser ran over).
///
/// Offsets are 32-bit to keep the header index compact; `SIPParserLimits.maxMessageSize` keeps them in range.
public struct ByteRange: Hashable, Sendable, CustomStringConvertible {
    public var start: Int32
    public var end: Int32

    @inlinable public init(_ start: Int, _ end: Int) {
        self.start = Int32(truncatingIfNeeded: start)
        self.end = Int32(truncatingIfNeeded: end)
    }

    @inlinable public var lower: Int { Int(start) }
    @inlinable public var upper: Int { Int(end) }
    @inlinable public var count: Int { Int(end - start) }
    @inlinable public var isEmpty: Bool { end <= start }
    @inlinable public var range: Range<Int> { lower..<upper }

    public static let empty = ByteRange(0, 0)

    public var description: String { "\(start)..<\(end)" }
}
