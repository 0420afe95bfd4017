/// The two kinds of Kamailio module parameter (`PARAM_INT`, `PARAM_STR`/`PARAM_STRING`).
public enum ModuleParameterKind: String, Sendable {
    case int
    case str
}

/// A validated parameter value.
public enum ModuleParameterScalar: Sendable, Hashable {
    case int(Int)
    case str(String)

    /// The value as the docs and logs show it.
    public var text: String {
        switch self {
        case .int(let n): return String(n)
        case .str(let s): return s
        }
    }
}

/// A value as the configuration gives it, before validation.
public enum ModuleParameterInput: Sendable, Hashable {
    /// A TOML integer.
    case int(Int)
    /// A TOML boolean (Kamailio's `yes`/`no` keywords: an integer 1/0).
    case bool(Bool)
    /// A TOML string.
    case string(String)
    /// Untyped text (an environment variable): converted to the parameter's kind.
    case text(String)

    var shown: String {
        switch self {
        case .int(let n): return String(n)
        case .bool(let b): return String(b)
        case .string(let s), .text(let s): return "\"\(s)\""
        }
    }
}

/// One row of a module's parameter table (Kamailio's `param_export_t`): name, kind, default, what it
/// does, and an optional check of the value.
public struct ModuleParameterInfo: Sendable {
    public let module: String
    public let name: String
    public let kind: ModuleParameterKind
    /// The default as the docs show it.
    public let defaultText: String
    /// Kamailio lets the modparam be given more than once (htable's `htable`): every value is kept.
    public let repeatable: Bool
    public let summary: String
    /// False: a Kamailio 5.6 parameter Starling accepts, so a Kamailio configuration loads, but that
    /// changes nothing (a warning says so at start).
    public let implemented: Bool
    /// Checks a converted value; returns what is wrong with it, or nil.
    public let check: (@Sendable (ModuleParameterScalar) -> String?)?

    public init(module: String, name: String, kind: ModuleParameterKind, defaultText: String, repeatable: Bool = false,
                summary: String, implemented: Bool = true, check: (@Sendable (ModuleParameterScalar) -> String?)? = nil) {
        self.module = module
        self.name = name
        self.kind = kind
        self.defaultText = defaultText
        self.repeatable = repeatable
        self.summary = summary
        self.implemented = implemented
        self.check = check
    }

    /// What the parameter accepts, for error messages.
    public var expected: String {
        switch kind {
        case .int: return "an integer (Kamailio int parameter; true/false count as 1/0)"
        case .str: return "a string (Kamailio str parameter)"
        }
    }

    /// Converts and checks one given value. Integer parameters take what Kamailio's take (integers and
    /// the yes/no keywords, here TOML booleans) and nothing more: "30s" or "30000" in quotes is refused,
    /// as Kamailio refuses it. Untyped environment text is read as the parameter's kind (an integer, or
    /// yes/no/on/off/true/false for an int; the text itself for a str).
    public func convert(_ input: ModuleParameterInput) -> Result<ModuleParameterScalar, ModuleParameterError> {
        let value: ModuleParameterScalar
        switch (kind, input) {
        case (.int, .int(let n)): value = .int(n)
        case (.int, .bool(let b)): value = .int(b ? 1 : 0)
        case (.int, .text(let t)):
            guard let n = Self.integer(t) else { return .failure(error("expected \(expected), got \(input.shown)")) }
            value = .int(n)
        case (.str, .string(let s)), (.str, .text(let s)): value = .str(s)
        default:
            return .failure(error("expected \(expected), got \(input.shown)"))
        }
        if let check, let problem = check(value) { return .failure(error("\(problem), got \(input.shown)")) }
        return .success(value)
    }

    func error(_ message: String) -> ModuleParameterError {
        ModuleParameterError(module: module, parameter: name, message)
    }

    /// An integer as environment text may give it (decimal, or a yes/no keyword).
    static func integer(_ t: String) -> Int? {
        let s = t.trimmingSpacesAndTabs()
        if let n = Int(s) { return n }
        switch s.lowercased() {
        case "yes", "on", "true": return 1
        case "no", "off", "false": return 0
        default: return nil
        }
    }
}

/// A module parameter the configuration cannot have: unknown module, unknown parameter, wrong type.
public struct ModuleParameterError: Error, Sendable, CustomStringConvertible, Equatable {
    public let module: String
    /// Nil when the module itself is unknown.
    public let parameter: String?
    public let message: String

    public init(module: String, parameter: String?, _ message: String) {
        self.module = module
        self.parameter = parameter
        self.message = message
    }

    /// "modparam.tm.fr_timer", the key as the configuration file spells it.
    public var key: String { parameter.map { "modparam.\(module).\($0)" } ?? "modparam.\(module)" }
    public var description: String { "\(key): \(message)" }
}

/// A typed key for one parameter: declares its row and its default, and reads the configured value
/// (`runtime.config[TMModule.frTimer]`). Modules declare their keys as static constants and list
/// their `info` in `parameters`.
public struct ModuleParameter<Value: ModuleParameterValue>: Sendable {
    public let info: ModuleParameterInfo
    public let defaultValue: Value

    public init(info: ModuleParameterInfo, defaultValue: Value) {
        self.info = info
        self.defaultValue = defaultValue
    }
}

/// What a typed parameter key reads: built from the values given (in order), or the default.
public protocol ModuleParameterValue: Sendable {
    static func from(_ values: [ModuleParameterScalar]) -> Self?
}

extension Int: ModuleParameterValue {
    public static func from(_ values: [ModuleParameterScalar]) -> Int? {
        guard case .int(let n)? = values.last else { return nil }
        return n
    }
}

extension Bool: ModuleParameterValue {
    public static func from(_ values: [ModuleParameterScalar]) -> Bool? {
        guard case .int(let n)? = values.last else { return nil }
        return n != 0
    }
}

extension String: ModuleParameterValue {
    public static func from(_ values: [ModuleParameterScalar]) -> String? {
        guard case .str(let s)? = values.last else { return nil }
        return s
    }
}

extension Optional: ModuleParameterValue where Wrapped == String {
    public static func from(_ values: [ModuleParameterScalar]) -> String?? {
        guard case .str(let s)? = values.last else { return nil }
        return .some(s)
    }
}

extension Array: ModuleParameterValue where Element == String {
    public static func from(_ values: [ModuleParameterScalar]) -> [String]? {
        values.isEmpty ? nil : values.map(\.text)
    }
}

extension ModuleParameter where Value == Int {
    /// An integer parameter.
    public static func int(_ module: String, _ name: String, _ d: Int, _ summary: String,
                           check: (@Sendable (Int) -> String?)? = nil) -> Self {
        let c = intCheck(check)
        return Self(info: ModuleParameterInfo(module: module, name: name, kind: .int, defaultText: String(d), summary: summary,
                                              check: c), defaultValue: d)
    }

    /// An integer parameter that must lie in `range`.
    public static func int(_ module: String, _ name: String, _ d: Int, in range: ClosedRange<Int>, _ summary: String) -> Self {
        int(module, name, d, summary) { range.contains($0) ? nil : "expected an integer in \(range.lowerBound)...\(range.upperBound)" }
    }
}

extension ModuleParameter where Value == Bool {
    /// A Kamailio int parameter used as a switch (0 off, anything else on).
    public static func flag(_ module: String, _ name: String, _ d: Bool, _ summary: String) -> Self {
        Self(info: ModuleParameterInfo(module: module, name: name, kind: .int, defaultText: d ? "1" : "0", summary: summary),
             defaultValue: d)
    }
}

extension ModuleParameter where Value == String {
    /// A string parameter with a default.
    public static func str(_ module: String, _ name: String, _ d: String, _ summary: String,
                           check: (@Sendable (String) -> String?)? = nil) -> Self {
        let c = strCheck(check)
        return Self(info: ModuleParameterInfo(module: module, name: name, kind: .str, defaultText: "\"\(d)\"", summary: summary,
                                              check: c), defaultValue: d)
    }
}

extension ModuleParameter where Value == String? {
    /// A string parameter that is unset by default.
    public static func optionalStr(_ module: String, _ name: String, _ summary: String,
                                   check: (@Sendable (String) -> String?)? = nil) -> Self {
        let c = strCheck(check)
        return Self(info: ModuleParameterInfo(module: module, name: name, kind: .str, defaultText: "unset", summary: summary,
                                              check: c), defaultValue: nil)
    }
}

extension ModuleParameter where Value == [String] {
    /// A string parameter that may be given more than once; every value is kept, in order.
    public static func list(_ module: String, _ name: String, _ summary: String,
                            check: (@Sendable (String) -> String?)? = nil) -> Self {
        let c = strCheck(check)
        return Self(info: ModuleParameterInfo(module: module, name: name, kind: .str, defaultText: "none", repeatable: true,
                                              summary: summary, check: c), defaultValue: [])
    }
}

/// A check of an int parameter's value as a check of the converted scalar.
private func intCheck(_ f: (@Sendable (Int) -> String?)?) -> (@Sendable (ModuleParameterScalar) -> String?)? {
    guard let f else { return nil }
    return { @Sendable (v: ModuleParameterScalar) -> String? in
        if case .int(let n) = v { return f(n) }
        return nil
    }
}

/// A check of a str parameter's value as a check of the converted scalar.
private func strCheck(_ f: (@Sendable (String) -> String?)?) -> (@Sendable (ModuleParameterScalar) -> String?)? {
    guard let f else { return nil }
    return { @Sendable (v: ModuleParameterScalar) -> String? in
        if case .str(let s) = v { return f(s) }
        return nil
    }
}

extension String {
    func trimmingSpacesAndTabs() -> String {
        var s = Substring(self)
        while let f = s.first, f == " " || f == "\t" { s = s.dropFirst() }
        while let l = s.last, l == " " || l == "\t" { s = s.dropLast() }
        return String(s)
    }
}
