/// One header line of a received message, as slices of the message bytes.
public struct SIPHeaderField: Sendable, Hashable {
    /// The recognised name (`.other` for extension headers).
    public var kind: SIPHeaderKind
    /// The name as written (`v`, `VIA`, `X-Foo`).
    public var name: ByteRange
    /// The value, trimmed of surrounding whitespace; folded lines stay inside (treated as whitespace).
    public var value: ByteRange
    /// The whole line from the name to the end of its CRLF, for removal.
    public var line: ByteRange
}
