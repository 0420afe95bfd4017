/// Pending changes to a message, kept apart from its bytes (Kamailio's lumps). The serializer applies
/// them; lookups on the message never see them.
public struct SIPEdits: Sendable {
    enum Op: Sendable {
        case delete(ByteRange)
        case insert(at: Int, bytes: [UInt8])
    }

    struct Entry: Sendable {
        var op: Op
        var seq: Int
        var offset: Int {
            switch op {
            case .delete(let r): return r.lower
            case .insert(let at, _): return at
            }
        }
    }

    var entries: [Entry] = []
    /// A replacement Request-URI (what `$ru`/`seturi` set).
    public var requestURI: [UInt8]? = nil
    /// A replacement body.
    public var body: [UInt8]? = nil
    /// The Content-Type to set with the new body (nil keeps the message's).
    public var bodyContentType: [UInt8]? = nil

    public init() {}

    /// True if nothing is pending.
    public var isEmpty: Bool { entries.isEmpty && requestURI == nil && body == nil }

    /// Number of recorded header edits.
    public var count: Int { entries.count }

    mutating func add(_ op: Op) {
        // Room for a few at once: a replacement is two entries, and the array would grow twice.
        if entries.capacity == 0 { entries.reserveCapacity(4) }
        entries.append(Entry(op: op, seq: entries.count))
    }

    /// Removes all pending edits.
    public mutating func removeAll() { self = SIPEdits() }
}

/// Where a new header line goes.
public enum SIPHeaderPosition: Sendable {
    /// Before the first header line.
    case first
    /// After the last header line.
    case last
    /// Before the given header line.
    case before(SIPHeaderField)
    /// After the given header line.
    case after(SIPHeaderField)
}

extension SIPMessage {
    /// Adds a raw header line (the caller supplies the CRLF, as Kamailio's `hdr.append` does).
    public func addHeaderLine(_ line: [UInt8], at position: SIPHeaderPosition) {
        let offset: Int
        switch position {
        case .first: offset = headersStart
        case .last: offset = headersEnd
        case .before(let f): offset = f.line.lower
        case .after(let f): offset = f.line.upper
        }
        edits.add(.insert(at: offset, bytes: line))
    }

    /// Adds `Name: value\r\n`.
    public func addHeader(name: String, value: String, at position: SIPHeaderPosition = .last) {
        addHeaderLine(Array("\(name): \(value)\r\n".utf8), at: position)
    }

    /// Removes a header line.
    public func removeHeader(_ field: SIPHeaderField) {
        edits.add(.delete(field.line))
    }

    /// Removes every header of a kind; returns how many lines were removed.
    @discardableResult
    public func removeHeaders(_ kind: SIPHeaderKind) -> Int {
        var n = 0
        forEachHeader(kind) { removeHeader($0); n += 1 }
        return n
    }

    /// Removes one value of a comma-separated header line (the whole line if it is the only value).
    public func removeHeaderValue(_ field: SIPHeaderField, _ value: ByteRange) {
        var values: [ByteRange] = []
        forEachValue(of: field) { values.append($0) }
        guard values.count > 1, let idx = values.firstIndex(of: value) else {
            removeHeader(field)
            return
        }
        if idx + 1 < values.count {
            edits.add(.delete(ByteRange(value.lower, values[idx + 1].lower)))
        } else {
            // last value: remove from the end of the previous value
            edits.add(.delete(ByteRange(values[idx - 1].upper, value.upper)))
        }
    }

    /// Inserts bytes at an offset of the original message (low level; prefer the header functions).
    public func insertBytes(_ bytes: [UInt8], at offset: Int) {
        edits.add(.insert(at: offset, bytes: bytes))
    }

    /// Deletes a range of the original message (low level).
    public func deleteBytes(_ range: ByteRange) {
        edits.add(.delete(range))
    }

    /// Replaces a range of the original message.
    public func replaceBytes(_ range: ByteRange, with bytes: [UInt8]) {
        edits.add(.delete(range))
        edits.add(.insert(at: range.upper, bytes: bytes))
    }

    /// Sets a new Request-URI for the serialized message.
    public func setRequestURI(_ uri: [UInt8]) { edits.requestURI = uri }

    /// Replaces the body (Content-Length is rewritten; Content-Type replaced if given).
    public func setBody(_ body: [UInt8], contentType: String? = nil) {
        edits.body = body
        edits.bodyContentType = contentType.map { Array($0.utf8) }
    }

    /// The Request-URI as it will be sent: the replacement if one is set, else the received one.
    public var currentRequestURI: [UInt8] { edits.requestURI ?? bytes(requestURIRange) }

    /// Applies the pending edits and parses the result: Kamailio's `msg_apply_changes`.
    public func applyingEdits() throws(SIPParseError) -> SIPMessage {
        var out: [UInt8] = []
        serialize(into: &out)
        return try SIPMessage.parse(out, limits: state.pointee.limits, datagram: true)
    }
}
