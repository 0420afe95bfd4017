/// A Redis reply (RESP2, as hiredis 0.14 reads it), copied out of hiredis' reply tree.
public enum RedisReply: Sendable, Equatable {
    case string([UInt8])
    case array([RedisReply])
    case integer(Int64)
    case null
    case status(String)
    case error(String)

    /// hiredis' REDIS_REPLY_* code (what Kamailio's `$redis(r=>type)` gives): 1 string, 2 array,
    /// 3 integer, 4 nil, 5 status, 6 error.
    public var typeCode: Int {
        switch self {
        case .string: return 1
        case .array: return 2
        case .integer: return 3
        case .null: return 4
        case .status: return 5
        case .error: return 6
        }
    }

    /// The text of a string, status or error reply (nil for the others).
    public var text: String? {
        switch self {
        case .string(let b): return String(decoding: b, as: UTF8.self)
        case .status(let s), .error(let s): return s
        default: return nil
        }
    }

    /// An integer reply, or a string reply holding a decimal integer.
    public var int: Int? {
        switch self {
        case .integer(let i): return Int(i)
        case .string(let b): return Int(String(decoding: b, as: UTF8.self))
        default: return nil
        }
    }

    /// The elements of an array reply (empty for the others).
    public var elements: [RedisReply] {
        if case .array(let a) = self { return a }
        return []
    }

    public var isError: Bool {
        if case .error = self { return true }
        return false
    }
}

/// Why a Redis command got no reply.
public struct RedisError: Error, Sendable, CustomStringConvertible {
    public enum Kind: Sendable { case connect, io, replyTooLarge, badReply }
    public let kind: Kind
    public let message: String
    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }
    public var description: String { message }
}
