/// Limits the parser enforces. Exceeding one is a clean `SIPParseError`, never a crash or an unbounded
/// allocation.
public struct SIPParserLimits: Sendable, Hashable {
    /// Largest message accepted, headers and body (default 65,535: the largest UDP datagram).
    public var maxMessageSize: Int
    /// Most header lines (after unfolding) in one message (default 256).
    public var maxHeaderCount: Int
    /// Longest header line, folded continuation lines included (default 16,384 bytes).
    public var maxHeaderLineLength: Int
    /// Longest URI in the request line or a header (default 8,192 bytes).
    public var maxURILength: Int
    /// Most comma-separated values read from one header (default 128).
    public var maxValuesPerHeader: Int

    public init(
        maxMessageSize: Int = 65_535, maxHeaderCount: Int = 256, maxHeaderLineLength: Int = 16_384,
        maxURILength: Int = 8_192, maxValuesPerHeader: Int = 128
    ) {
        self.maxMessageSize = maxMessageSize
        self.maxHeaderCount = maxHeaderCount
        self.maxHeaderLineLength = maxHeaderLineLength
        self.maxURILength = maxURILength
        self.maxValuesPerHeader = maxValuesPerHeader
    }

    public static let `default` = SIPParserLimits()
}
