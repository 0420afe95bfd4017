public import SIPCore

/// Parameter types of an exported function (Kamailio's `SR_KEMIP_STR/INT/LONG`).
public enum KemiParamType: UInt8, Sendable {
    /// A string: Lua numbers are formatted as Lua 5.1 would (`%.14g`); nil, booleans and tables become
    /// a null string (pointer nil, length 0).
    case str
    /// A 32-bit integer: numbers truncate toward zero, numeric strings are converted, anything else is 0.
    case int
    /// A long integer.
    case long

    /// Kamailio's short name ("str", "int", "long"), as app_lua.api_list and docs/KSR.md show it.
    public var name: String {
        switch self {
        case .str: return "str"
        case .int: return "int"
        case .long: return "long"
        }
    }
}

/// Return types (Kamailio's `SR_KEMIP_NONE/INT/BOOL/XVAL`), which decide what Lua receives (REFERENCE §1.3).
public enum KemiReturnType: UInt8, Sendable {
    case none, int, bool, xval

    /// Kamailio's short name ("none", "int", "bool", "xval").
    public var name: String {
        switch self {
        case .none: return "none"
        case .int: return "int"
        case .bool: return "bool"
        case .xval: return "xval"
        }
    }
}

/// The value an exported function returns. The marshaller converts it by the export's return type.
public enum KemiResult: Sendable {
    /// Nothing (NONE functions).
    case none
    /// Lua nil (an XVAL null).
    case null
    case int(Int)
    case bool(Bool)
    case string(String)
    /// Bytes of the current message (no copy until Lua interns them).
    case messageBytes(ByteRange)
    /// Bytes owned by the caller, valid until the marshaller has pushed them.
    case bytes([UInt8])

    /// Kamailio's `1`/`-1` integer convention.
    @inlinable public static func code(_ ok: Bool) -> KemiResult { .int(ok ? 1 : -1) }
}

/// An exported function's implementation. Runs on a worker thread with that worker's route context.
public typealias KemiFunction = @Sendable (_ ctx: RouteContext, _ args: KemiArgs) -> KemiResult

/// One row of an export table: `KSR.<module>.<name>(params) -> returns`.
public struct KemiExport: Sendable {
    /// Module name; "" for the core `KSR.*` functions.
    public let module: String
    public let name: String
    public let params: [KemiParamType]
    public let returns: KemiReturnType
    public let function: KemiFunction
    /// How this function relates to Kamailio 5.6's (for `starling api --markdown`): nil = same.
    public let compat: String?
    /// How many trailing parameters a call may leave out (they arrive as a null string / 0), for
    /// Starling's own functions such as `KSR.diameter.relay([peer])`. 0 for every Kamailio function.
    public let optionalParams: Int

    public init(_ module: String, _ name: String, _ params: [KemiParamType] = [], returns: KemiReturnType,
                compat: String? = nil, optional: Int = 0, _ function: @escaping KemiFunction) {
        self.module = module
        self.name = name
        self.params = params
        self.returns = returns
        self.compat = compat
        self.optionalParams = max(0, min(optional, params.count))
        self.function = function
    }

    /// `KSR.name` or `KSR.module.name`.
    public var qualifiedName: String { module.isEmpty ? "KSR.\(name)" : "KSR.\(module).\(name)" }
}

/// The arguments of one call, read from the marshaller's buffer without copying.
///
/// Memory layout (one 24-byte record per argument, matching the C shim's `ksr_param`):
/// offset 0 `const void *s`, offset 8 `size_t len`, offset 16 `long long i`.
public struct KemiArgs {
    public static let stride = 24
    @usableFromInline let raw: UnsafeRawPointer?
    public let count: Int

    @inlinable public init(raw: UnsafeRawPointer?, count: Int) {
        self.raw = raw
        self.count = count
    }

    /// The string argument `i` as raw bytes (nil for a null string). Valid during the call only.
    @inlinable public func bytes(_ i: Int) -> UnsafeRawBufferPointer? {
        guard i < count, let raw else { return nil }
        guard let p = raw.load(fromByteOffset: i * Self.stride, as: UnsafeRawPointer?.self) else { return nil }
        let n = raw.load(fromByteOffset: i * Self.stride + 8, as: Int.self)
        return UnsafeRawBufferPointer(start: p, count: n)
    }

    /// The string argument `i` (nil for a null string).
    @inlinable public func string(_ i: Int) -> String? {
        bytes(i).map { String(decoding: $0, as: UTF8.self) }
    }

    /// The string argument `i`, or "" when null.
    @inlinable public func str(_ i: Int) -> String { string(i) ?? "" }

    /// A copy of string argument `i` ([] when null).
    @inlinable public func byteArray(_ i: Int) -> [UInt8] { bytes(i).map { Array($0) } ?? [] }

    /// The integer argument `i`.
    @inlinable public func int(_ i: Int) -> Int {
        guard i < count, let raw else { return 0 }
        return raw.load(fromByteOffset: i * Self.stride + 16, as: Int.self)
    }
}
