/// Diameter messages and AVPs (RFC 6733 §3, §4): decoding that checks every length against the
/// bytes actually present (a length is never trusted), and encoding with the padding rules.

/// Why bytes are not a Diameter message. The framer closes the connection on any of these.
public enum DiameterDecodeError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Fewer than 20 bytes, or a Message Length below 20.
    case shortHeader(Int)
    /// The version octet is not 1.
    case badVersion(UInt8)
    /// Message Length is not a multiple of 4 or above the configured maximum.
    case badMessageLength(Int)
    /// Message Length does not match the bytes given.
    case lengthMismatch(declared: Int, actual: Int)
    /// An AVP header does not fit, its length is below its header size, or it (with padding) runs
    /// past its container.
    case badAVPLength(code: UInt32, length: Int, offset: Int)
    /// Grouped AVPs nested deeper than the limit.
    case nestingTooDeep

    public var description: String {
        switch self {
        case .shortHeader(let n): return "message shorter than the 20-byte header (\(n))"
        case .badVersion(let v): return "version \(v) (expected 1)"
        case .badMessageLength(let n): return "message length \(n) is not a multiple of 4 or too large"
        case .lengthMismatch(let d, let a): return "message length \(d) but \(a) bytes"
        case .badAVPLength(let c, let l, let o): return "AVP \(c) at offset \(o): length \(l) does not fit"
        case .nestingTooDeep: return "grouped AVPs nested too deeply"
        }
    }
}

/// One AVP: header fields and the raw data (without padding). Grouped AVPs keep their data as bytes;
/// `children()` decodes them with the same checks.
public struct DiameterAVP: Sendable, Equatable {
    public static let flagVendor: UInt8 = 0x80
    public static let flagMandatory: UInt8 = 0x40
    public static let flagProtected: UInt8 = 0x20

    public var code: UInt32
    public var flags: UInt8
    /// Present exactly when the V flag is set.
    public var vendorID: UInt32?
    public var data: [UInt8]

    public init(code: UInt32, vendorID: UInt32? = nil, mandatory: Bool = true, data: [UInt8]) {
        self.code = code
        self.vendorID = vendorID
        self.flags = (mandatory ? Self.flagMandatory : 0) | (vendorID != nil ? Self.flagVendor : 0)
        self.data = data
    }

    public var isMandatory: Bool { flags & Self.flagMandatory != 0 }
    public var headerLength: Int { vendorID == nil ? 8 : 12 }
    /// Length field value (header + data, no padding).
    public var length: Int { headerLength + data.count }
    /// Bytes on the wire (padded to 4).
    public var paddedLength: Int { (length + 3) & ~3 }

    // Typed constructors.
    public static func utf8(_ code: UInt32, _ s: String, vendor: UInt32? = nil, mandatory: Bool = true) -> DiameterAVP {
        DiameterAVP(code: code, vendorID: vendor, mandatory: mandatory, data: Array(s.utf8))
    }
    public static func u32(_ code: UInt32, _ v: UInt32, vendor: UInt32? = nil, mandatory: Bool = true) -> DiameterAVP {
        DiameterAVP(code: code, vendorID: vendor, mandatory: mandatory, data: withUnsafeBytes(of: v.bigEndian) { Array($0) })
    }
    public static func u64(_ code: UInt32, _ v: UInt64, vendor: UInt32? = nil, mandatory: Bool = true) -> DiameterAVP {
        DiameterAVP(code: code, vendorID: vendor, mandatory: mandatory, data: withUnsafeBytes(of: v.bigEndian) { Array($0) })
    }
    public static func grouped(_ code: UInt32, _ avps: [DiameterAVP], vendor: UInt32? = nil, mandatory: Bool = true) -> DiameterAVP {
        var out: [UInt8] = []
        for a in avps { a.encode(into: &out) }
        return DiameterAVP(code: code, vendorID: vendor, mandatory: mandatory, data: out)
    }
    /// An Address AVP (RFC 6733 §4.3.1) for an IPv4 address "a.b.c.d" or raw IPv6 bytes.
    public static func address(_ code: UInt32, ipv4: String) -> DiameterAVP? {
        let parts = ipv4.split(separator: ".").compactMap { UInt8($0) }
        guard parts.count == 4 else { return nil }
        return DiameterAVP(code: code, data: [0, 1] + parts)
    }

    // Typed readers (nil when the data has the wrong size).
    public var u32: UInt32? {
        guard data.count == 4 else { return nil }
        return data.withUnsafeBytes { UInt32(bigEndian: $0.loadUnaligned(as: UInt32.self)) }
    }
    public var u64: UInt64? {
        guard data.count == 8 else { return nil }
        return data.withUnsafeBytes { UInt64(bigEndian: $0.loadUnaligned(as: UInt64.self)) }
    }
    public var string: String { String(decoding: data, as: UTF8.self) }

    /// The AVPs inside a Grouped AVP.
    public func children() throws(DiameterDecodeError) -> [DiameterAVP] {
        try data.withUnsafeBytes { b in
            Result { () throws(DiameterDecodeError) in try DiameterAVP.decodeList(b, base: 0, depth: 1) }
        }.get()
    }

    /// Appends the AVP with its padding.
    public func encode(into out: inout [UInt8]) {
        appendU32(&out, code)
        out.append(vendorID != nil ? flags | Self.flagVendor : flags & ~Self.flagVendor)
        appendU24(&out, UInt32(length))
        if let v = vendorID { appendU32(&out, v) }
        out.append(contentsOf: data)
        for _ in length..<paddedLength { out.append(0) }
    }

    /// Maximum nesting of grouped AVPs `children()`/validation follows.
    public static let maxDepth = 16

    /// Decodes the AVPs filling `bytes` exactly. Each length is checked against what is left; a
    /// length below the header size (the underflow of kamailio #4876/#4909) is refused.
    static func decodeList(_ bytes: UnsafeRawBufferPointer, base: Int, depth: Int) throws(DiameterDecodeError) -> [DiameterAVP] {
        guard depth <= maxDepth else { throw .nestingTooDeep }
        var avps: [DiameterAVP] = []
        var i = 0
        let n = bytes.count
        while i < n {
            guard n - i >= 8 else { throw .badAVPLength(code: 0, length: n - i, offset: base + i) }
            let code = readU32(bytes, i)
            let flags = bytes[i + 4]
            let length = Int(readU24(bytes, i + 5))
            let hasVendor = flags & flagVendor != 0
            let header = hasVendor ? 12 : 8
            guard length >= header, length <= n - i else {
                throw .badAVPLength(code: code, length: length, offset: base + i)
            }
            let padded = (length + 3) & ~3
            // The padding of the last AVP must be inside the container too (lengths are multiples of 4).
            guard padded <= n - i else { throw .badAVPLength(code: code, length: length, offset: base + i) }
            let vendor: UInt32? = hasVendor ? readU32(bytes, i + 8) : nil
            let data = Array(bytes[(i + header)..<(i + length)])
            avps.append(DiameterAVP(code: code, flags: flags, vendorID: vendor, data: data))
            i += padded
        }
        return avps
    }

    init(code: UInt32, flags: UInt8, vendorID: UInt32?, data: [UInt8]) {
        self.code = code
        self.flags = flags
        self.vendorID = vendorID
        self.data = data
    }
}

/// A Diameter message: the header fields and the top-level AVPs in order.
public struct DiameterMessage: Sendable, Equatable {
    public static let flagRequest: UInt8 = 0x80
    public static let flagProxiable: UInt8 = 0x40
    public static let flagError: UInt8 = 0x20
    public static let flagRetransmit: UInt8 = 0x10
    public static let headerLength = 20
    /// The largest message the decoder accepts by default (the 24-bit field allows 16 MiB).
    public static let defaultMaxLength = 1 << 20

    public var flags: UInt8
    public var commandCode: UInt32
    public var applicationID: UInt32
    public var hopByHop: UInt32
    public var endToEnd: UInt32
    public var avps: [DiameterAVP]

    public init(flags: UInt8, commandCode: UInt32, applicationID: UInt32, hopByHop: UInt32, endToEnd: UInt32,
                avps: [DiameterAVP] = []) {
        self.flags = flags
        self.commandCode = commandCode
        self.applicationID = applicationID
        self.hopByHop = hopByHop
        self.endToEnd = endToEnd
        self.avps = avps
    }

    public var isRequest: Bool { flags & Self.flagRequest != 0 }
    public var isProxiable: Bool { flags & Self.flagProxiable != 0 }
    public var isError: Bool { flags & Self.flagError != 0 }
    public var isRetransmit: Bool {
        get { flags & Self.flagRetransmit != 0 }
        set { if newValue { flags |= Self.flagRetransmit } else { flags &= ~Self.flagRetransmit } }
    }

    /// The message length a complete message starting with `prefix` has, once 4 bytes are there:
    /// nil while fewer are available. Throws for a version other than 1, a length below 20, not a
    /// multiple of 4 or above `maxLength`: the stream cannot be resynchronised after that.
    public static func frameLength(_ prefix: UnsafeRawBufferPointer, maxLength: Int = defaultMaxLength) throws(DiameterDecodeError) -> Int? {
        guard prefix.count >= 4 else { return nil }
        guard prefix[0] == 1 else { throw .badVersion(prefix[0]) }
        let length = Int(readU24(prefix, 1))
        guard length >= headerLength else { throw .shortHeader(length) }
        guard length & 3 == 0, length <= maxLength else { throw .badMessageLength(length) }
        return length
    }

    /// Decodes one complete message (exactly `bytes`); every AVP length is checked, grouped AVPs
    /// included (so a message that decodes never hides a malformed AVP deeper down).
    public static func decode(_ bytes: UnsafeRawBufferPointer, maxLength: Int = defaultMaxLength) throws(DiameterDecodeError) -> DiameterMessage {
        guard bytes.count >= headerLength else { throw .shortHeader(bytes.count) }
        guard let length = try frameLength(bytes, maxLength: maxLength) else { throw .shortHeader(bytes.count) }
        guard length == bytes.count else { throw .lengthMismatch(declared: length, actual: bytes.count) }
        let flags = bytes[4]
        let code = readU24(bytes, 5)
        let app = readU32(bytes, 8)
        let hbh = readU32(bytes, 12)
        let e2e = readU32(bytes, 16)
        let body = UnsafeRawBufferPointer(rebasing: bytes[headerLength..<length])
        let avps = try DiameterAVP.decodeList(body, base: headerLength, depth: 0)
        return DiameterMessage(flags: flags, commandCode: code, applicationID: app, hopByHop: hbh, endToEnd: e2e, avps: avps)
    }

    public static func decode(_ bytes: [UInt8], maxLength: Int = defaultMaxLength) throws(DiameterDecodeError) -> DiameterMessage {
        try bytes.withUnsafeBytes { b in
            Result { () throws(DiameterDecodeError) in try decode(b, maxLength: maxLength) }
        }.get()
    }

    /// The wire bytes.
    public func encode() -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(64 + avps.reduce(0) { $0 + $1.paddedLength })
        out.append(1)
        appendU24(&out, 0)
        out.append(flags)
        appendU24(&out, commandCode)
        appendU32(&out, applicationID)
        appendU32(&out, hopByHop)
        appendU32(&out, endToEnd)
        for a in avps { a.encode(into: &out) }
        let len = UInt32(out.count)
        out[1] = UInt8(truncatingIfNeeded: len >> 16)
        out[2] = UInt8(truncatingIfNeeded: len >> 8)
        out[3] = UInt8(truncatingIfNeeded: len)
        return out
    }

    // MARK: AVP access

    public func first(_ code: UInt32, vendor: UInt32? = nil) -> DiameterAVP? {
        avps.first { $0.code == code && $0.vendorID == vendor }
    }
    public func all(_ code: UInt32, vendor: UInt32? = nil) -> [DiameterAVP] {
        avps.filter { $0.code == code && $0.vendorID == vendor }
    }
    public mutating func remove(_ code: UInt32, vendor: UInt32? = nil) -> Int {
        let before = avps.count
        avps.removeAll { $0.code == code && $0.vendorID == vendor }
        return before - avps.count
    }

    /// A string AVP's value (Origin-Host, Session-Id, ...).
    public func string(_ code: UInt32) -> String? { first(code)?.string }
    public func u32(_ code: UInt32) -> UInt32? { first(code)?.u32 }

    /// Result-Code, else Experimental-Result/Experimental-Result-Code.
    public var resultCode: UInt32? {
        if let r = u32(BaseAVP.resultCode) { return r }
        if let g = first(BaseAVP.experimentalResult), let kids = try? g.children(),
           let c = kids.first(where: { $0.code == BaseAVP.experimentalResultCode })?.u32 { return c }
        return nil
    }

    /// An answer to this request: same command, application, P flag and ids; Session-Id first
    /// (RFC 6733 §6.2), then Result-Code, Origin-Host, Origin-Realm. A protocol error (3xxx) sets
    /// the E flag and carries Error-Reporting-Host when `reportingHost` is given.
    public func answer(resultCode: UInt32, originHost: String, originRealm: String, reportingHost: String? = nil,
                       errorMessage: String? = nil) -> DiameterMessage {
        var flags = self.flags & Self.flagProxiable
        let protocolError = (3000..<4000).contains(resultCode)
        if protocolError { flags |= Self.flagError }
        var a = DiameterMessage(flags: flags, commandCode: commandCode, applicationID: applicationID,
                                hopByHop: hopByHop, endToEnd: endToEnd)
        if let sid = first(BaseAVP.sessionID) { a.avps.append(sid) }
        a.avps.append(.u32(BaseAVP.resultCode, resultCode))
        a.avps.append(.utf8(BaseAVP.originHost, originHost))
        a.avps.append(.utf8(BaseAVP.originRealm, originRealm))
        if protocolError, let reportingHost { a.avps.append(.utf8(BaseAVP.errorReportingHost, reportingHost)) }
        if let errorMessage { a.avps.append(.utf8(BaseAVP.errorMessage, errorMessage, mandatory: false)) }
        // Proxy-Info AVPs are echoed in the answer (RFC 6733 §6.7.3).
        a.avps.append(contentsOf: all(BaseAVP.proxyInfo))
        return a
    }
}

/// Codes of the base protocol AVPs the core itself reads or writes.
public enum BaseAVP {
    public static let userName: UInt32 = 1
    public static let hostIPAddress: UInt32 = 257
    public static let authApplicationID: UInt32 = 258
    public static let acctApplicationID: UInt32 = 259
    public static let vendorSpecificApplicationID: UInt32 = 260
    public static let sessionID: UInt32 = 263
    public static let originHost: UInt32 = 264
    public static let supportedVendorID: UInt32 = 265
    public static let vendorID: UInt32 = 266
    public static let firmwareRevision: UInt32 = 267
    public static let resultCode: UInt32 = 268
    public static let productName: UInt32 = 269
    public static let disconnectCause: UInt32 = 273
    public static let originStateID: UInt32 = 278
    public static let failedAVP: UInt32 = 279
    public static let errorMessage: UInt32 = 281
    public static let routeRecord: UInt32 = 282
    public static let destinationRealm: UInt32 = 283
    public static let proxyInfo: UInt32 = 284
    public static let destinationHost: UInt32 = 293
    public static let errorReportingHost: UInt32 = 294
    public static let originRealm: UInt32 = 296
    public static let experimentalResult: UInt32 = 297
    public static let experimentalResultCode: UInt32 = 298
    public static let inbandSecurityID: UInt32 = 299
}

/// Base protocol command codes.
public enum BaseCommand {
    public static let capabilitiesExchange: UInt32 = 257
    public static let deviceWatchdog: UInt32 = 280
    public static let disconnectPeer: UInt32 = 282
}

/// Result codes Starling sends itself.
public enum DiameterResult {
    public static let success: UInt32 = 2001
    public static let unableToDeliver: UInt32 = 3002
    public static let tooBusy: UInt32 = 3004
    public static let loopDetected: UInt32 = 3005
    public static let unknownPeer: UInt32 = 3010
    public static let applicationUnsupported: UInt32 = 3007
    public static let unableToComply: UInt32 = 5012
    public static let noCommonApplication: UInt32 = 5010
    public static let relayApplication: UInt32 = 0xFFFF_FFFF
}

@inline(__always) func readU32(_ b: UnsafeRawBufferPointer, _ i: Int) -> UInt32 {
    UInt32(b[i]) << 24 | UInt32(b[i + 1]) << 16 | UInt32(b[i + 2]) << 8 | UInt32(b[i + 3])
}
@inline(__always) func readU24(_ b: UnsafeRawBufferPointer, _ i: Int) -> UInt32 {
    UInt32(b[i]) << 16 | UInt32(b[i + 1]) << 8 | UInt32(b[i + 2])
}
@inline(__always) func appendU32(_ out: inout [UInt8], _ v: UInt32) {
    out.append(UInt8(truncatingIfNeeded: v >> 24)); out.append(UInt8(truncatingIfNeeded: v >> 16))
    out.append(UInt8(truncatingIfNeeded: v >> 8)); out.append(UInt8(truncatingIfNeeded: v))
}
@inline(__always) func appendU24(_ out: inout [UInt8], _ v: UInt32) {
    out.append(UInt8(truncatingIfNeeded: v >> 16)); out.append(UInt8(truncatingIfNeeded: v >> 8))
    out.append(UInt8(truncatingIfNeeded: v))
}
