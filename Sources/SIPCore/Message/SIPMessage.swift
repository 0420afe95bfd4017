#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A SIP request or response over its received bytes.
///
/// The bytes live in the same allocation as the object and are never modified. Parsing is lazy: the
/// start line is read at once, header lines are indexed only as far as a lookup needs, and parsed forms
/// (Via, From, To, CSeq, URIs) are computed on first use and cached as offsets. Changes are recorded as
/// pending edits and applied by the serializer (Kamailio's lumps): they are not visible to lookups on
/// this message.
///
/// A message is owned by one thread at a time (it caches lazily and is not `Sendable`).
public final class SIPMessage: ManagedBuffer<SIPMessage.State, UInt8> {
    /// Parse state kept next to the bytes. Internal details are not part of the API.
    public struct State {
        /// The header index: `fieldCount` fields in order of the lines, the first
        /// `SIPMessage.inlineFieldCapacity` of them in this object's own allocation after the bytes (a
        /// usual message's index needs no allocation of its own), any further ones in `moreFields`.
        let inlineFields: UnsafeMutablePointer<SIPHeaderField>
        var fieldCount = 0
        var moreFields: [SIPHeaderField] = []
        var count: Int = 0
        var limits: SIPParserLimits = .default
        var datagram: Bool = true
        var isRequest: Bool = true
        var method: SIPMethod = .other
        var methodRange = ByteRange.empty
        var uriRange = ByteRange.empty
        var versionRange = ByteRange.empty
        var statusCode: Int = 0
        var reasonRange = ByteRange.empty
        var headersStart: Int = 0
        var scanPos: Int = 0
        var headersComplete = false
        /// Parse errors found so far (rare): behind one reference, so that every message's state is
        /// 160 bytes smaller (a stateful proxy holds ~10,000 requests at 1000 calls/s).
        var errors: ParseErrors? = nil
        var scanError: SIPParseError? {
            get { errors?.scan }
            set { errorsForWriting(newValue)?.scan = newValue }
        }
        /// `scanError != nil` without copying the error out (asked once per header line).
        var hasScanError: Bool {
            guard let e = errors else { return false }
            return e.scan != nil
        }
        var startLineError: SIPParseError? {
            get { errors?.startLine }
            set { errorsForWriting(newValue)?.startLine = newValue }
        }
        var bodyStart: Int = 0
        var headersEndOffset: Int = 0
        var bodyEnd: Int = 0
        var framed = false
        var framingError: SIPParseError? {
            get { errors?.framing }
            set { errorsForWriting(newValue)?.framing = newValue }
        }
        var singleSeen: UInt64 = 0
        /// One bit per `SIPHeaderKind` indexed so far: a lookup of a kind the message lacks costs no scan.
        var kindsSeen: UInt64 = 0
        var duplicate: SIPHeaderKind? = nil
        var cachedVia: SIPVia?? = nil
        var cachedFrom: SIPNameAddr?? = nil
        var cachedTo: SIPNameAddr?? = nil
        var cachedCSeq: SIPCSeq?? = nil
        var cachedURI: SIPURIParts?? = nil
        var edits = SIPEdits()

        init(inlineFields: UnsafeMutablePointer<SIPHeaderField>) { self.inlineFields = inlineFields }

        /// The error box to store `value` in, made on the first error (nil: nothing to store).
        private mutating func errorsForWriting(_ value: SIPParseError?) -> ParseErrors? {
            if errors == nil && value != nil { errors = ParseErrors() }
            return errors
        }

        /// The header field at index `i` (`i < fieldCount`).
        @inline(__always) func field(_ i: Int) -> SIPHeaderField {
            i < SIPMessage.inlineFieldCapacity ? inlineFields[i] : moreFields[i - SIPMessage.inlineFieldCapacity]
        }

        mutating func appendField(_ f: SIPHeaderField) {
            if fieldCount < SIPMessage.inlineFieldCapacity {
                (inlineFields + fieldCount).initialize(to: f)
            } else {
                moreFields.append(f)
            }
            fieldCount += 1
        }
    }

    /// Parse errors of a message, out of line (`State.errors`).
    final class ParseErrors {
        var scan: SIPParseError?
        var startLine: SIPParseError?
        var framing: SIPParseError?
    }

    /// Header fields kept in the message's allocation (more go to an array). 16 covers the requests
    /// and replies of usual calls (10-14 lines); each inline field is 28 bytes of every message.
    static var inlineFieldCapacity: Int { 16 }

    // MARK: Creating

    /// Parses a message from bytes (copied once into the message). Only the start line is read here;
    /// `check()` frames the body and validates what a router needs, `validate()` checks everything.
    ///
    /// - Parameter datagram: true for UDP (bytes after the declared body are ignored, a missing
    ///   Content-Length means the body runs to the end), false for a message framed by a stream reader.
    public static func parse(
        _ bytes: UnsafeRawBufferPointer, limits: SIPParserLimits = .default, datagram: Bool = true
    ) throws(SIPParseError) -> SIPMessage {
        guard bytes.count <= limits.maxMessageSize else {
            throw SIPParseError(.tooLarge, status: 513, reason: "Message Too Large",
                                "\(bytes.count) bytes, the limit is \(limits.maxMessageSize)")
        }
        // The bytes, then room for the inline header fields at their alignment. The fields are
        // never deinitialised: a field must hold no reference.
        assert(_isPOD(SIPHeaderField.self), "SIPHeaderField must be a plain value (inline fields are not deinitialised)")
        let align = MemoryLayout<SIPHeaderField>.alignment
        let raw = SIPMessage.create(
            minimumCapacity: bytes.count + align - 1 + inlineFieldCapacity * MemoryLayout<SIPHeaderField>.stride
        ) { buffer in
            let fieldsStart = buffer.withUnsafeMutablePointerToElements { UnsafeMutableRawPointer($0 + bytes.count) }
                .alignedUp(for: SIPHeaderField.self)
            return State(inlineFields: fieldsStart.bindMemory(to: SIPHeaderField.self, capacity: inlineFieldCapacity))
        }
        let m = unsafeDowncast(raw, to: SIPMessage.self)
        m.withUnsafeMutablePointerToElements { p in
            if let b = bytes.baseAddress, bytes.count > 0 { p.update(from: b.assumingMemoryBound(to: UInt8.self), count: bytes.count) }
        }
        m.state.pointee.count = bytes.count
        m.state.pointee.limits = limits
        m.state.pointee.datagram = datagram
        do {
            try m.parseStartLine()
        } catch {
            // A request whose start line is wrong but whose headers may still be readable: keep it, so
            // that a server can answer with the error (400, 505, 414); `check()` reports it first.
            guard error.status != nil, m.state.pointee.isRequest, m.state.pointee.scanPos > 0 else { throw error }
            m.state.pointee.startLineError = error
        }
        return m
    }

    /// Parses a message from an array of bytes.
    public static func parse(
        _ bytes: [UInt8], limits: SIPParserLimits = .default, datagram: Bool = true
    ) throws(SIPParseError) -> SIPMessage {
        do {
            return try bytes.withUnsafeBytes { (b) throws(SIPParseError) -> SIPMessage in
                try parse(b, limits: limits, datagram: datagram)
            }
        } catch let e as SIPParseError { throw e } catch { fatalError("unreachable") }
    }

    /// Parses a message from text (tests and tools).
    public static func parse(_ text: String, limits: SIPParserLimits = .default) throws(SIPParseError) -> SIPMessage {
        try parse(Array(text.utf8), limits: limits)
    }

    // MARK: Bytes

    /// The parse state, accessed through a pointer: the state lives in this object's allocation, and
    /// going through the pointer avoids dynamic exclusivity checks on every field access.
    @inline(__always) var state: UnsafeMutablePointer<State> { withUnsafeMutablePointerToHeader { $0 } }

    /// Number of bytes received.
    public var count: Int { state.pointee.count }

    /// Calls `body` with the received bytes.
    @inline(__always)
    public func withBytes<R, E: Error>(_ body: (UnsafeRawBufferPointer) throws(E) -> R) throws(E) -> R {
        let n = state.pointee.count
        let p = withUnsafeMutablePointerToElements { $0 }
        return try body(UnsafeRawBufferPointer(start: p, count: n))
    }

    @inline(__always) var view: ByteView {
        ByteView(UnsafeRawBufferPointer(start: withUnsafeMutablePointerToElements { $0 }, count: state.pointee.count))
    }

    /// The bytes of a range as a string (lossy UTF-8). Allocates; meant for logs, tools and scripts.
    public func string(_ r: ByteRange) -> String { view.string(r) }

    /// A copy of the bytes of a range.
    public func bytes(_ r: ByteRange) -> [UInt8] { view.bytes(r) }

    /// A copy of all received bytes.
    public var allBytes: [UInt8] { view.bytes(ByteRange(0, state.pointee.count)) }

    /// Case-insensitive comparison of a range with ASCII text.
    public func equalsIgnoringCase(_ r: ByteRange, _ literal: StaticString) -> Bool { view.equalsIgnoringCase(r, literal) }

    /// Case-insensitive comparison of a range with arbitrary bytes.
    public func equalsIgnoringCase(_ r: ByteRange, _ other: UnsafeRawBufferPointer) -> Bool {
        guard r.count == other.count, let b = other.baseAddress else { return r.count == other.count }
        return view.equalsIgnoringCase(r.lower, r.upper, b.assumingMemoryBound(to: UInt8.self), other.count)
    }

    // MARK: Start line

    /// True for a request, false for a response.
    public var isRequest: Bool { state.pointee.isRequest }
    /// The request method (`.other` for extension methods; `methodRange` has the name). For a response,
    /// the CSeq method, if CSeq parses.
    public var method: SIPMethod { state.pointee.isRequest ? state.pointee.method : (cseq?.method ?? .other) }
    /// The method as written in the request line, or the CSeq method of a response.
    public var methodRange: ByteRange { state.pointee.isRequest ? state.pointee.methodRange : (cseq?.methodRange ?? .empty) }
    /// The Request-URI as received (requests only).
    public var requestURIRange: ByteRange { state.pointee.uriRange }
    /// The SIP-Version as written ("SIP/2.0").
    public var versionRange: ByteRange { state.pointee.versionRange }
    /// The status code of a response, 0 for a request.
    public var statusCode: Int { state.pointee.statusCode }
    /// The reason phrase of a response (may be empty).
    public var reasonRange: ByteRange { state.pointee.reasonRange }
    /// The start-line error of a request kept for answering (see `parse`); `check()` throws it.
    public var startLineError: SIPParseError? { state.pointee.startLineError }

    /// Where the first header line starts.
    public var headersStart: Int { state.pointee.headersStart }

    private func parseStartLine() throws(SIPParseError) {
        let v = view
        let n = v.count
        var i = 0
        // RFC 3261 §7.5: ignore CRLFs before the start line.
        while i < n && (v[i] == ASCII.cr || v[i] == ASCII.lf) { i += 1 }
        guard i < n else { throw SIPParseError(.empty, status: nil, reason: "Empty Message", "no start line") }
        let lineStart = i
        let lf = v.memfind(ASCII.lf, i, n)
        guard lf < n else {
            throw SIPParseError(.badStartLine, status: nil, reason: "Bad Start Line", "the start line has no line end")
        }
        let lineEnd = (lf > lineStart && v[lf - 1] == ASCII.cr) ? lf - 1 : lf
        state.pointee.headersStart = lf + 1
        state.pointee.scanPos = lf + 1

        if lineEnd - lineStart >= 4 && v.equalsIgnoringCase(ByteRange(lineStart, lineStart + 4), "SIP/") {
            try parseStatusLine(v, lineStart, lineEnd)
        } else {
            try parseRequestLine(v, lineStart, lineEnd)
        }
    }

    private func parseStatusLine(_ v: ByteView, _ s: Int, _ e: Int) throws(SIPParseError) {
        state.pointee.isRequest = false
        var i = s
        while i < e && v[i] != ASCII.sp { i += 1 }
        let version = ByteRange(s, i)
        state.pointee.versionRange = version
        guard v.equals(version, "SIP/2.0") else {
            throw SIPParseError(.badVersion, status: nil, reason: "Version Not Supported",
                                "response version \(v.string(version))")
        }
        guard i < e else { throw SIPParseError(.badStartLine, status: nil, reason: "Bad Status Line", "no status code") }
        i += 1
        let cs = i
        while i < e && ASCII.isDigit(v[i]) { i += 1 }
        guard i - cs == 3, let code = v.decimal(ByteRange(cs, i), max: 999), code >= 100, code <= 699 else {
            throw SIPParseError(.badStatusCode, status: nil, reason: "Bad Status Code",
                                "status code '\(v.string(ByteRange(cs, min(e, cs + 24))))' is not 100-699")
        }
        state.pointee.statusCode = Int(code)
        if i < e {
            guard v[i] == ASCII.sp else {
                throw SIPParseError(.badStatusCode, status: nil, reason: "Bad Status Line", "no space after the status code")
            }
            i += 1
        }
        state.pointee.reasonRange = ByteRange(i, e)
    }

    private func parseRequestLine(_ v: ByteView, _ s: Int, _ e: Int) throws(SIPParseError) {
        state.pointee.isRequest = true
        var i = s
        while i < e && ASCII.isToken(v[i]) { i += 1 }
        guard i > s, i < e, v[i] == ASCII.sp else {
            throw SIPParseError(.badStartLine, status: nil, reason: "Bad Request Line", "no method token")
        }
        state.pointee.methodRange = ByteRange(s, i)
        state.pointee.method = SIPMethod.classify(v, s, i)
        i += 1
        let us = i
        while i < e && v[i] != ASCII.sp && v[i] != ASCII.ht { i += 1 }
        let uri = ByteRange(us, i)
        state.pointee.uriRange = uri
        guard i < e, !uri.isEmpty else {
            if uri.isEmpty && us < e {
                throw SIPParseError.bad400(.badStartLine, "Bad Request Line", "more than one space between request-line elements")
            }
            throw SIPParseError.bad400(.badStartLine, "Bad Request Line", "the request line has no SIP-Version")
        }
        guard uri.count <= state.pointee.limits.maxURILength else {
            throw SIPParseError(.uriTooLong, status: 414, reason: "Request-URI Too Long",
                                "\(uri.count) bytes, the limit is \(state.pointee.limits.maxURILength)")
        }
        i += 1
        let version = ByteRange(i, e)
        state.pointee.versionRange = version
        // One SP between elements and none at the end (RFC 3261 §7.1): extra spaces are refused, so that
        // they are never forwarded.
        guard version.count >= 4, !version.range.contains(where: { ASCII.isWSP(v[$0]) }) else {
            if version.isEmpty || ASCII.isWSP(v[version.lower]) {
                throw SIPParseError.bad400(.badStartLine, "Bad Request Line", "more than one space between request-line elements")
            }
            let sp = version.range.first(where: { ASCII.isWSP(v[$0]) }) ?? version.upper
            if sp < version.upper && v.skipLWS(sp, version.upper) == version.upper {
                throw SIPParseError.bad400(.badStartLine, "Bad Request Line", "spaces after the SIP-Version")
            }
            if sp < version.upper {
                throw SIPParseError.bad400(.badRequestURI, "Bad Request-URI", "the Request-URI contains whitespace")
            }
            throw SIPParseError.bad400(.badStartLine, "Bad Request Line", "the request line has no SIP-Version")
        }
        if v[us] == ASCII.lt {
            throw SIPParseError.bad400(.badRequestURI, "Bad Request-URI", "the Request-URI is enclosed in <>")
        }
        guard v.equals(version, "SIP/2.0") else {
            if v.equalsIgnoringCase(ByteRange(version.lower, version.lower + 4), "SIP/") {
                throw SIPParseError(.badVersion, status: 505, reason: "Version Not Supported",
                                    "SIP-Version \(v.string(version)) is not SIP/2.0")
            }
            throw SIPParseError.bad400(.badStartLine, "Bad Request Line", "'\(v.string(version))' is not a SIP-Version")
        }
    }

    // MARK: Header index

    /// Indexes the next header line. Returns false at the end of the headers or on an error
    /// (kept in `scanError`).
    @discardableResult
    func scanNextHeader() -> Bool {
        if state.pointee.headersComplete || state.pointee.hasScanError { return false }
        let v = view
        let n = v.count
        var p = state.pointee.scanPos
        guard p < n else {
            state.pointee.scanError = .bad400(.incompleteHeaders, "Bad Message", "the header section has no empty line at its end")
            return false
        }
        // Empty line: end of headers.
        if v[p] == ASCII.lf || (v[p] == ASCII.cr && p + 1 < n && v[p + 1] == ASCII.lf) {
            state.pointee.bodyStart = v[p] == ASCII.lf ? p + 1 : p + 2
            state.pointee.headersEndOffset = p
            state.pointee.headersComplete = true
            return false
        }
        guard state.pointee.fieldCount < state.pointee.limits.maxHeaderCount else {
            state.pointee.scanError = .bad400(.tooManyHeaders, "Too Many Headers", "more than \(state.pointee.limits.maxHeaderCount) header lines")
            return false
        }
        let nameStart = p
        while p < n && ASCII.isToken(v[p]) { p += 1 }
        let nameEnd = p
        while p < n && ASCII.isWSP(v[p]) { p += 1 }
        guard nameEnd > nameStart, p < n, v[p] == ASCII.colon else {
            let lineEnd = v.find(ASCII.lf, nameStart, min(n, nameStart + 64))
            state.pointee.scanError = .bad400(.badHeaderLine, "Bad Header",
                                       "header line '\(v.string(ByteRange(nameStart, v.trimEnd(nameStart, lineEnd))))' has no name and colon")
            return false
        }
        p += 1
        // Find the end of the line, following folded continuation lines.
        var lineEnd = p
        let base = v.base.baseAddress!
        while true {
            guard let hit = memchr(base + lineEnd, Int32(ASCII.lf), n - lineEnd) else {
                state.pointee.scanError = .bad400(.incompleteHeaders, "Bad Message", "the header section has no empty line at its end")
                return false
            }
            let lf = base.distance(to: UnsafeRawPointer(hit))
            if lf + 1 < n && ASCII.isWSP(v[lf + 1]) {
                lineEnd = lf + 1
                continue
            }
            lineEnd = lf
            break
        }
        let next = lineEnd + 1
        guard next - nameStart <= state.pointee.limits.maxHeaderLineLength else {
            state.pointee.scanError = .bad400(.headerLineTooLong, "Header Too Long",
                                       "a header line of \(next - nameStart) bytes, the limit is \(state.pointee.limits.maxHeaderLineLength)")
            return false
        }
        let vs = v.skipLWS(p, lineEnd)
        let ve = v.trimEnd(vs, lineEnd)
        let kind = SIPHeaderKind.classify(v, nameStart, nameEnd)
        state.pointee.kindsSeen |= kind.bit
        if kind.isSingle {
            let bit = kind.bit
            if state.pointee.singleSeen & bit != 0 { if state.pointee.duplicate == nil { state.pointee.duplicate = kind } }
            state.pointee.singleSeen |= bit
        }
        state.pointee.appendField(SIPHeaderField(kind: kind, name: ByteRange(nameStart, nameEnd), value: ByteRange(vs, ve),
                                                 line: ByteRange(nameStart, next)))
        state.pointee.scanPos = next
        return true
    }

    /// Indexes every header line. Returns the error met, if any.
    @discardableResult
    public func scanAllHeaders() -> SIPParseError? {
        while scanNextHeader() {}
        return state.pointee.scanError
    }

    /// The header lines indexed so far (all of them after `scanAllHeaders()`).
    public var headerFields: [SIPHeaderField] {
        scanAllHeaders()
        let s = state
        return (0..<s.pointee.fieldCount).map { s.pointee.field($0) }
    }

    // The loops over the header index below go by index through `state`.

    /// The first header of a kind, indexing only as far as needed.
    public func firstHeader(_ kind: SIPHeaderKind) -> SIPHeaderField? {
        let s = state
        // All headers indexed and none of this kind: no scan (Route, Record-Route... are often absent).
        if s.pointee.headersComplete && s.pointee.kindsSeen & kind.bit == 0 { return nil }
        var i = 0
        while i < s.pointee.fieldCount {
            let h = s.pointee.field(i)
            if h.kind == kind { return h }
            i += 1
        }
        while scanNextHeader() {
            let h = s.pointee.field(i)
            if h.kind == kind { return h }
            i += 1
        }
        return nil
    }

    /// Calls `body` for each header of a kind, in order (all headers are indexed).
    public func forEachHeader(_ kind: SIPHeaderKind, _ body: (SIPHeaderField) throws -> Void) rethrows {
        scanAllHeaders()
        let s = state
        if s.pointee.kindsSeen & kind.bit == 0 { return }
        var i = 0
        while i < s.pointee.fieldCount {
            let h = s.pointee.field(i)
            if h.kind == kind { try body(h) }
            i += 1
        }
    }

    /// Number of headers of a kind.
    public func headerCount(_ kind: SIPHeaderKind) -> Int {
        var c = 0
        forEachHeader(kind) { _ in c += 1 }
        return c
    }

    /// All headers whose name matches `name` (compact forms match their long form, others compare
    /// case-insensitively).
    public func headers(named name: String) -> [SIPHeaderField] {
        let kind = SIPHeaderKind.classify(name: name)
        scanAllHeaders()
        let s = state
        var out: [SIPHeaderField] = []
        if kind != .other {
            guard s.pointee.kindsSeen & kind.bit != 0 else { return out }
            for i in 0..<s.pointee.fieldCount where s.pointee.field(i).kind == kind { out.append(s.pointee.field(i)) }
            return out
        }
        var name = name
        name.withUTF8 { nb in
            for i in 0..<s.pointee.fieldCount {
                let h = s.pointee.field(i)
                if h.kind == .other && equalsIgnoringCase(h.name, UnsafeRawBufferPointer(nb)) { out.append(h) }
            }
        }
        return out
    }

    /// The value of the first header of a kind, as a string.
    public func headerValue(_ kind: SIPHeaderKind) -> String? { firstHeader(kind).map { string($0.value) } }

    /// The value of the first header with this name, as a string.
    public func headerValue(named name: String) -> String? { headers(named: name).first.map { string($0.value) } }

    /// Calls `body` with each comma-separated value of a header line (quotes and <> respected).
    public func forEachValue(of field: SIPHeaderField, _ body: (ByteRange) throws -> Void) rethrows {
        try ValueList.forEach(view, field.value, limit: state.pointee.limits.maxValuesPerHeader, body)
    }

    /// Every value of every header of a kind, in order (e.g. all Via values).
    public func values(_ kind: SIPHeaderKind) -> [ByteRange] {
        var out: [ByteRange] = []
        forEachHeader(kind) { h in forEachValue(of: h) { out.append($0) } }
        return out
    }

    /// The first value of the first header of a kind.
    public func firstValue(_ kind: SIPHeaderKind) -> ByteRange? {
        guard let h = firstHeader(kind) else { return nil }
        if !kind.isList { return h.value }
        return ValueList.first(view, h.value)
    }

    // MARK: Body

    /// Frames the body (Content-Length) and indexes all headers. Errors are remembered.
    @discardableResult
    public func frame() -> SIPParseError? {
        if state.pointee.framed { return state.pointee.framingError }
        state.pointee.framed = true
        if let e = scanAllHeaders() { state.pointee.framingError = e; return e }
        let v = view
        var length: UInt64? = nil
        let s = state
        var i = 0
        while i < s.pointee.fieldCount {
            let h = s.pointee.field(i)
            i += 1
            guard h.kind == .contentLength else { continue }
            guard let l = v.decimal(h.value, max: UInt64(Int32.max)) else {
                state.pointee.framingError = .bad400(.badContentLength, "Bad Content-Length",
                                              "Content-Length '\(v.string(h.value))' is not a number")
                return state.pointee.framingError
            }
            if let prev = length, prev != l {
                state.pointee.framingError = .bad400(.duplicateContentLength, "Bad Content-Length", "conflicting Content-Length values \(prev) and \(l)")
                return state.pointee.framingError
            }
            length = l
        }
        let available = state.pointee.count - state.pointee.bodyStart
        if let l = length {
            guard Int(l) <= available else {
                state.pointee.framingError = .bad400(.truncatedBody, "Bad Content-Length",
                                              "Content-Length \(l) is larger than the \(available) body bytes received")
                return state.pointee.framingError
            }
            state.pointee.bodyEnd = state.pointee.bodyStart + Int(l)
        } else {
            state.pointee.bodyEnd = state.pointee.datagram ? state.pointee.count : state.pointee.bodyStart
        }
        return nil
    }

    /// The body as framed by Content-Length (empty if framing failed).
    public var bodyRange: ByteRange {
        if frame() != nil { return ByteRange(state.pointee.count, state.pointee.count) }
        return ByteRange(state.pointee.bodyStart, state.pointee.bodyEnd)
    }

    /// Where the header section ends (the offset of the empty line), after framing.
    public var headersEnd: Int {
        scanAllHeaders()
        return state.pointee.headersComplete ? state.pointee.headersEndOffset : state.pointee.scanPos
    }

    /// The length of the message as framed: start line, headers and body, without trailing bytes.
    public var framedLength: Int { frame() == nil ? state.pointee.bodyEnd : state.pointee.count }

    // MARK: Well-known headers (parsed on demand, cached)

    /// The top-most Via value, parsed.
    public var topVia: SIPVia? {
        if let c = state.pointee.cachedVia { return c }
        var r: SIPVia? = nil
        if let f = firstValue(.via) { r = SIPVia.parse(view, f) }
        state.pointee.cachedVia = .some(r)
        return r
    }

    // From and To are parsed straight into their cache and returned from there: a parsed name-addr
    // is ~150 bytes, and every copy of it is a memcpy.

    /// The From header, parsed.
    public var from: SIPNameAddr? {
        if state.pointee.cachedFrom == nil { state.pointee.cachedFrom = .some(parseFirstNameAddr(.from)) }
        return state.pointee.cachedFrom.unsafelyUnwrapped
    }

    /// The To header, parsed.
    public var to: SIPNameAddr? {
        if state.pointee.cachedTo == nil { state.pointee.cachedTo = .some(parseFirstNameAddr(.to)) }
        return state.pointee.cachedTo.unsafelyUnwrapped
    }

    /// The To tag, read as Kamailio's `parse_to` reads it: from the delimited name-addr, also when the
    /// URI inside does not parse (`to` is then nil; `check()` lets such a message through, as Kamailio).
    /// Read from `to` when it was parsed, else without parsing the URI.
    public var toTag: ByteRange? {
        if case .some(.some(let na)) = state.pointee.cachedTo { return na.tag }
        return delimitedTag(.to)
    }

    /// The From tag, read the same way.
    public var fromTag: ByteRange? {
        if case .some(.some(let na)) = state.pointee.cachedFrom { return na.tag }
        return delimitedTag(.from)
    }

    private func delimitedTag(_ kind: SIPHeaderKind) -> ByteRange? {
        guard let h = firstHeader(kind), let s = SIPNameAddr.delimit(view, h.value, limits: state.pointee.limits) else {
            return nil
        }
        return Params.find(view, s.params, "tag")
    }

    private func parseFirstNameAddr(_ kind: SIPHeaderKind) -> SIPNameAddr? {
        guard let h = firstHeader(kind) else { return nil }
        return SIPNameAddr.parse(view, h.value, limits: state.pointee.limits)
    }

    /// The CSeq header, parsed (nil if missing or invalid).
    public var cseq: SIPCSeq? {
        if let c = state.pointee.cachedCSeq { return c }
        let r = firstHeader(.cseq).flatMap { SIPCSeq.parse(view, $0.value) }
        state.pointee.cachedCSeq = .some(r)
        return r
    }

    /// The Call-ID value.
    public var callID: ByteRange? { firstHeader(.callID)?.value }

    /// The Request-URI as received, parsed (nil for responses or an unparsable URI).
    public var requestURI: SIPURIParts? {
        if let c = state.pointee.cachedURI { return c }
        let r = state.pointee.isRequest ? SIPURIParts.parse(view, state.pointee.uriRange) : nil
        state.pointee.cachedURI = .some(r)
        return r
    }

    /// Max-Forwards as a number (nil if missing or not 0-255).
    public var maxForwards: Int? {
        guard let h = firstHeader(.maxForwards), let v = view.decimal(h.value, max: 255) else { return nil }
        return Int(v)
    }

    /// Runs a grammar over a range of this message (URIs, params) without copying.
    public func parseURI(_ r: ByteRange) -> SIPURIParts? { SIPURIParts.parse(view, r) }

    /// Parses a name-addr / addr-spec value of this message (From, To, Contact, Route...).
    public func parseNameAddr(_ r: ByteRange) -> SIPNameAddr? { SIPNameAddr.parse(view, r, limits: state.pointee.limits) }

    /// Parses a Via value of this message.
    public func parseVia(_ r: ByteRange) -> SIPVia? { SIPVia.parse(view, r) }

    /// The value of a `;name=value` parameter in a parameter list range (nil if absent; empty range if
    /// present without value).
    public func param(_ name: StaticString, in params: ByteRange) -> ByteRange? { Params.find(view, params, name) }

    /// The value of a parameter named by a string.
    public func param(named name: String, in params: ByteRange) -> ByteRange? {
        var name = name
        return name.withUTF8 { Params.find(view, params, UnsafeRawBufferPointer($0)) }
    }

    /// Iterates over a `;`-separated parameter list.
    public func forEachParam(in params: ByteRange, _ body: (_ name: ByteRange, _ value: ByteRange?) -> Void) {
        Params.forEach(view, params, body)
    }

    // MARK: Edits

    /// The pending edits (applied by `serialize`).
    public var edits: SIPEdits {
        get { state.pointee.edits }
        _modify { yield &state.pointee.edits }
    }
}
