/// The module parameters (`[modparam.<module>]`), validated against the modules' parameter tables
/// when the configuration loads and read through typed keys (`config[TMModule.frTimer]`).
///
/// Every value here was converted to its parameter's kind once; a key reads the last value given (all
/// of them for a repeatable parameter) or its declared default, so a default is written in one place.
public struct ModuleConfiguration: Sendable, Equatable {
    /// Validated values: module → parameter → the values in the order given.
    public private(set) var values: [String: [String: [ModuleParameterScalar]]] = [:]

    /// `[core] server_id` (Kamailio's core `server_id`): this instance's number, stored with every
    /// contact it saves (the `server_id` column). With usrloc on Redis, a non-zero server_id is the
    /// instance's identity across restarts: it pings (NAT keepalives) the contacts carrying it.
    public var serverID = 0

    /// No parameters: every key reads its default.
    public init() {}

    /// Validates `given` (module → parameter → values) against the registered modules' tables.
    public init(validating given: [String: [String: [ModuleParameterInput]]]) throws(ModuleParameterError) {
        for module in given.keys.sorted() {
            for param in given[module]!.keys.sorted() {
                try set(module, param, given[module]![param]!)
            }
        }
    }

    /// Parameters as text (tests, `starling test`): each text is read as the parameter's kind, as an
    /// environment variable would be. An unknown or invalid parameter is a programming error.
    public init(params: [String: [String: [String]]]) {
        do {
            try self.init(validating: params.mapValues { $0.mapValues { $0.map { .text($0) } } })
        } catch {
            preconditionFailure("invalid module parameters: \(error)")
        }
    }

    /// Validates and sets one parameter (replacing what it had).
    public mutating func set(_ module: String, _ param: String, _ inputs: [ModuleParameterInput]) throws(ModuleParameterError) {
        let info = try KSRModules.parameter(module, param)
        var converted: [ModuleParameterScalar] = []
        for input in inputs {
            switch info.convert(input) {
            case .success(let v): converted.append(v)
            case .failure(let e): throw e
            }
        }
        values[module, default: [:]][param] = converted
    }

    /// The value of a parameter: the last one given (every one, for a list), else its default.
    @inlinable
    public subscript<V: ModuleParameterValue>(_ key: ModuleParameter<V>) -> V {
        read(key)
    }

    @usableFromInline
    func read<V: ModuleParameterValue>(_ key: ModuleParameter<V>) -> V {
        assert(KSRModules.isDeclared(key.info), "\(key.info.module).\(key.info.name) is read but not in \(key.info.module)'s parameters")
        guard let given = values[key.info.module]?[key.info.name] else { return key.defaultValue }
        return V.from(given) ?? key.defaultValue
    }

    /// Whether the configuration sets the parameter.
    public func isSet<V>(_ key: ModuleParameter<V>) -> Bool { values[key.info.module]?[key.info.name] != nil }

    /// Whether the configuration sets the parameter of a row.
    public func isSet(_ info: ModuleParameterInfo) -> Bool { values[info.module]?[info.name] != nil }

    /// Modules that have at least one parameter set.
    public var configuredModules: [String] { values.keys.sorted() }
}

/// The parameters the server reads before the modules start (the embedded database they share).
extension ModuleConfiguration {
    /// The `db_url`s set, in the order the server prefers them: usrloc, auth_db, uac's reg_db_url.
    public var databaseURLs: [String] {
        // A Redis db_url (usrloc db_mode 3 on Redis) is no embedded database.
        [self[UsrlocModule.dbURL], self[AuthDBModule.dbURL], self[UACModule.regDBURL], self[AccModule.dbURL], self[DialogModule.dbURL]]
            .compactMap { $0 }.filter { !$0.hasPrefix("redis") }
    }
    /// dialog `db_mode` (0: dialogs in memory only).
    public var dialogDBMode: Int { self[DialogModule.dbMode] }
    /// usrloc `use_domain`.
    public var usrlocUseDomain: Bool { self[UsrlocModule.useDomain] }
    /// usrloc `db_mode`.
    public var usrlocDBMode: Int { self[UsrlocModule.dbMode] }
    /// uac's remote registration table when `reg_db_url` is set (`reg_db_table`), else nil.
    public var uacRegistrationTable: String? { self[UACModule.regDBURL] == nil ? nil : self[UACModule.regDBTable] }
}
