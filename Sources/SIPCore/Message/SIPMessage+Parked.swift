extension SIPMessage {
    /// A message put away for later: its bytes and pending edits, without the parse state.
    ///
    /// A message's parse state and header index take about 1.2 KB next to its bytes. A stateful proxy
    /// holds the request of every finished transaction for the wait time (~10,000 requests at 1000
    /// calls/s) and rarely reads one again; parked, each costs its bytes and one small object.
    /// `message()` parses it again: the same bytes give the same offsets, so the edits still apply.
    public final class Parked: Sendable {
        let bytes: [UInt8]
        let edits: SIPEdits
        let limits: SIPParserLimits
        let datagram: Bool

        init(bytes: [UInt8], edits: SIPEdits, limits: SIPParserLimits, datagram: Bool) {
            self.bytes = bytes
            self.edits = edits
            self.limits = limits
            self.datagram = datagram
        }

        /// Number of bytes kept.
        public var count: Int { bytes.count }

        /// The message again: parsed from the kept bytes (lazily, as when it was received), with its
        /// pending edits. A new object each time.
        public func message() -> SIPMessage {
            let m: SIPMessage
            do {
                m = try SIPMessage.parse(bytes, limits: limits, datagram: datagram)
            } catch {
                // These bytes parsed with these limits when the message was received, and parsing
                // depends on nothing else.
                preconditionFailure("a parked message no longer parses: \(error)")
            }
            m.edits = edits
            return m
        }
    }

    /// This message's bytes and pending edits, for `Parked.message()`. Cached parses are not kept.
    public func parked() -> Parked {
        Parked(bytes: allBytes, edits: state.pointee.edits, limits: state.pointee.limits, datagram: state.pointee.datagram)
    }
}
