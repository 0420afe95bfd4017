/// What the sender changes beyond the message's own pending edits.
public struct SIPSerializeOptions: Sendable {
    /// A header line (with CRLF) placed before all headers: the proxy's own Via.
    public var prependLine: [UInt8]?
    /// Remove the top-most Via value (relaying a response).
    public var removeTopVia: Bool
    /// A Request-URI that overrides the message's own (a branch's destination).
    public var requestURI: [UInt8]?
    /// Header lines (with CRLF) added after the last state.pointee.
    public var appendLines: [UInt8]?
    /// Apply the message's pending edits (default true).
    public var applyEdits: Bool
    /// Extra insertions at offsets of the original message, for this serialization only (e.g.
    /// `;received=` on the top Via of a forwarded request).
    public var inserts: [(offset: Int, bytes: [UInt8])] = []

    public init(prependLine: [UInt8]? = nil, removeTopVia: Bool = false, requestURI: [UInt8]? = nil,
                appendLines: [UInt8]? = nil, applyEdits: Bool = true) {
        self.prependLine = prependLine
        self.removeTopVia = removeTopVia
        self.requestURI = requestURI
        self.appendLines = appendLines
        self.applyEdits = applyEdits
    }
}

extension SIPMessage {
    /// Writes the message with its pending edits applied to `out` (appending). Bytes after the framed
    /// body are not written. Content-Length is rewritten when the body changes, and added when missing.
    public func serialize(into out: inout [UInt8], options: SIPSerializeOptions = SIPSerializeOptions()) {
        let framingOK = frame() == nil
        let v = view
        out.reserveCapacity(out.count + count + 256 + (options.prependLine?.count ?? 0))
        // Start line
        let hs = headersStart
        let newURI = options.requestURI ?? (options.applyEdits ? edits.requestURI : nil)
        // Edits of the start line (e.g. a reply's status) and of the body are applied to those
        // regions; the rest go to the header section below.
        // (Relayed replies and most forwarded requests have no edits: no sort. A request usually has one
        // edit, its Record-Route, already in order: no copy either.) Sorted by offset, the edits of each
        // region are a slice: start line, headers, body.
        let entries = options.applyEdits ? edits.entries : []
        let allOps = Self.isSorted(entries) ? entries : entries.sorted(by: Self.precedes)
        let he = framingOK ? headersEnd : state.pointee.scanPos
        let bodyStart = state.pointee.bodyStart
        let headersFrom = allOps.firstIndex { $0.offset >= hs } ?? allOps.endIndex
        let headersTo = framingOK ? allOps[headersFrom...].firstIndex { $0.offset > he } ?? allOps.endIndex : allOps.endIndex
        let startOps = allOps[..<headersFrom]
        let headerOps = allOps[headersFrom..<headersTo]
        if isRequest, let newURI {
            append(&out, v, ByteRange(methodRange.lower, requestURIRange.lower))
            out.append(contentsOf: newURI)
            append(&out, v, ByteRange(requestURIRange.upper, hs))
        } else {
            let s = isRequest ? methodRange.lower : versionRange.lower
            applyRegionOps(startOps, ByteRange(s, hs), v, &out)
        }
        if let line = options.prependLine { out.append(contentsOf: line) }

        // The sender's own changes (removed Via, inserts, Content-Length): empty for forwarded requests.
        var ops: [SIPEdits.Entry] = []
        var newBody = options.applyEdits ? edits.body : nil
        if newBody == nil, framingOK, headersTo < allOps.endIndex {
            let bodyOps = allOps[headersTo...].drop(while: { $0.offset < bodyStart })
            if !bodyOps.isEmpty {
                var b: [UInt8] = []
                applyRegionOps(bodyOps, ByteRange(bodyStart, state.pointee.bodyEnd), v, &b)
                newBody = b
            }
        }
        var seq = headerOps.count
        if options.removeTopVia, let via = firstHeader(.via) {
            // The first value up to the second when the line has several, else the whole line (no scan
            // of the whole list: SIPp, for one, writes all the Vias of a reply on one line).
            if let second = ValueList.secondStart(v, via.value), let first = ValueList.first(v, via.value) {
                ops.append(.init(op: .delete(ByteRange(first.lower, second)), seq: seq))
            } else {
                ops.append(.init(op: .delete(via.line), seq: seq))
            }
            seq += 1
        }
        for ins in options.inserts {
            ops.append(.init(op: .insert(at: ins.offset, bytes: ins.bytes), seq: seq))
            seq += 1
        }
        let bodyLength = newBody?.count ?? (framingOK ? state.pointee.bodyEnd - state.pointee.bodyStart : 0)
        var hasCL = false
        var clLine: [UInt8] = []
        if newBody != nil || options.applyEdits && edits.bodyContentType != nil {
            // Replace every Content-Length (and Content-Type if a new one is given).
            forEachHeader(.contentLength) { h in
                ops.append(.init(op: .delete(h.line), seq: seq)); seq += 1
            }
            if let ct = edits.bodyContentType, options.applyEdits {
                forEachHeader(.contentType) { h in
                    ops.append(.init(op: .delete(h.line), seq: seq)); seq += 1
                }
                if !ct.isEmpty {
                    var line: [UInt8] = []
                    line.append(ascii: "Content-Type: ")
                    line.append(contentsOf: ct)
                    line.append(ascii: "\r\n")
                    ops.append(.init(op: .insert(at: he, bytes: line), seq: seq)); seq += 1
                }
            }
        } else {
            hasCL = state.pointee.kindsSeen & SIPHeaderKind.contentLength.bit != 0
        }
        if !hasCL {
            clLine.append(ascii: "Content-Length: ")
            clLine.appendDecimal(bodyLength)
            clLine.append(ascii: "\r\n")
        }

        if ops.isEmpty {
            applyRegionOps(headerOps, ByteRange(hs, he), v, &out)
        } else {
            ops.insert(contentsOf: headerOps, at: 0)
            ops.sort(by: Self.precedes)
            applyRegionOps(ops[...], ByteRange(hs, he), v, &out)
        }
        if let extra = options.appendLines { out.append(contentsOf: extra) }
        out.append(contentsOf: clLine)
        out.append(ascii: "\r\n")
        if let newBody {
            out.append(contentsOf: newBody)
        } else if framingOK {
            append(&out, v, ByteRange(state.pointee.bodyStart, state.pointee.bodyEnd))
        }
    }

    /// Writes `region` of the received bytes with sorted edits applied (inserts and deletes clamped
    /// to the region).
    func applyRegionOps(_ ops: ArraySlice<SIPEdits.Entry>, _ region: ByteRange, _ v: ByteView, _ out: inout [UInt8]) {
        var pos = region.lower
        for e in ops {
            switch e.op {
            case .insert(let at, let bytes):
                let at = min(max(at, region.lower), region.upper)
                if at > pos { append(&out, v, ByteRange(pos, at)); pos = at }
                out.append(contentsOf: bytes)
            case .delete(let r):
                let s = min(max(r.lower, region.lower), region.upper), t = min(max(r.upper, region.lower), region.upper)
                if s > pos { append(&out, v, ByteRange(pos, s)) }
                pos = max(pos, t)
            }
        }
        if pos < region.upper { append(&out, v, ByteRange(pos, region.upper)) }
    }

    /// The order edits apply in: by offset, then in the order they were made.
    static func precedes(_ a: SIPEdits.Entry, _ b: SIPEdits.Entry) -> Bool {
        a.offset != b.offset ? a.offset < b.offset : a.seq < b.seq
    }

    static func isSorted(_ entries: [SIPEdits.Entry]) -> Bool {
        entries.indices.dropFirst().allSatisfy { !precedes(entries[$0], entries[$0 - 1]) }
    }

    /// The serialized message as a new array.
    public func serialized(options: SIPSerializeOptions = SIPSerializeOptions()) -> [UInt8] {
        var out: [UInt8] = []
        serialize(into: &out, options: options)
        return out
    }

    @inline(__always)
    private func append(_ out: inout [UInt8], _ v: ByteView, _ r: ByteRange) {
        guard r.upper > r.lower else { return }
        out.append(contentsOf: UnsafeRawBufferPointer(rebasing: v.base[r.lower..<r.upper]))
    }
}
