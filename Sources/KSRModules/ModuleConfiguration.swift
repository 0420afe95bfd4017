/// Module parameters (`[modparam.<module>]`): each parameter holds one or more values (Kamailio
/// allows repeating some modparams).
public struct ModuleConfiguration: Sendable {
    public var params: [String: [String: [String]]]

    public init(params: [String: [String: [String]]] = [:]) { self.params = params }

    /// The last value of a parameter, or nil.
    public func string(_ module: String, _ name: String) -> String? { params[module]?[name]?.last }

    /// An integer parameter (Kamailio accepts "yes"/"no"/"on"/"off" for booleans too).
    public func int(_ module: String, _ name: String, default d: Int) -> Int {
        guard let s = string(module, name) else { return d }
        switch s.lowercased() {
        case "yes", "on", "true": return 1
        case "no", "off", "false": return 0
        default: return Int(s) ?? d
        }
    }
}
