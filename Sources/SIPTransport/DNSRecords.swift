/// An SRV record (RFC 2782).
public struct SRVRecord: Sendable, Hashable, CustomStringConvertible {
    public var priority: UInt16
    public var weight: UInt16
    public var port: UInt16
    /// Target host name, without the trailing dot.
    public var target: String

    public init(priority: UInt16, weight: UInt16, port: UInt16, target: String) {
        self.priority = priority
        self.weight = weight
        self.port = port
        self.target = target
    }

    public var description: String { "\(priority) \(weight) \(port) \(target)" }
}

/// A NAPTR record (RFC 3403), as used by RFC 3263 and ENUM (RFC 6116).
public struct NAPTRRecord: Sendable, Hashable, CustomStringConvertible {
    public var order: UInt16
    public var preference: UInt16
    /// "s", "a", "u", "" ... (as received; compare case-insensitively).
    public var flags: String
    /// "SIP+D2U", "E2U+sip", ...
    public var service: String
    /// The substitution expression ("!^.*$!sip:info@example.com!"), or "".
    public var regexp: String
    /// The replacement domain ("" for ".").
    public var replacement: String

    public init(order: UInt16, preference: UInt16, flags: String, service: String, regexp: String, replacement: String) {
        self.order = order
        self.preference = preference
        self.flags = flags
        self.service = service
        self.regexp = regexp
        self.replacement = replacement
    }

    public var description: String { "\(order) \(preference) \"\(flags)\" \"\(service)\" \"\(regexp)\" \(replacement.isEmpty ? "." : replacement)" }
}

/// A failed DNS lookup.
public struct DNSError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What went wrong, coarsely.
    public enum Kind: Sendable, Equatable {
        /// NXDOMAIN: the name does not exist.
        case notFound
        /// The name exists but has no records of the type asked for.
        case noData
        /// No answer in time.
        case timeout
        /// SERVFAIL, REFUSED, connection errors.
        case serverFailure
        /// Malformed name or reply, or any other c-ares error.
        case other
    }

    public var kind: Kind
    /// The name that was looked up.
    public var name: String
    /// c-ares' message.
    public var message: String

    public init(kind: Kind, name: String, message: String) {
        self.kind = kind
        self.name = name
        self.message = message
    }

    public var description: String { "DNS lookup of \(name) failed: \(message)" }
}
