import Foundation
import StarlingServer
import KSRModules

/// The modules' control API methods (their `rpcMethods` rows): they answer "module not loaded" when
/// the configuration does not load the module.
extension ControlAPI {
    /// Runs a module method; nil when `method` is not one.
    func callModuleMethod(_ method: String, _ params: [Any]) throws(RPCError) -> Any? {
        guard let (module, entry) = server.stack.rpcMethod(method) else { return nil }
        guard server.stack.isLoaded(module) else {
            throw RPCError(RPCError.moduleNotLoaded, "module not loaded: \(module)",
                           data: "\(method) needs the \(module) module, which the configuration does not load")
        }
        return Self.json(try entry.handler(server.runtime, Self.rpcParameters(params)))
    }

    static func rpcParameters(_ params: [Any]) -> RPCParameters {
        RPCParameters(params.map { p -> RPCParameters.Value in
            switch p {
            case let s as String: return .string(s)
            case is NSNull: return .null
            case let n as NSNumber:
                let text = n.stringValue
                if let i = Int(text) { return .int(i) }
                return .double(n.doubleValue)
            default: return .other
            }
        })
    }

    /// An RPC value as JSONSerialization's objects.
    static func json(_ v: RPCValue) -> Any {
        switch v {
        case .null: return NSNull()
        case .bool(let b): return b
        case .int(let n): return n
        case .double(let d): return d
        case .string(let s): return s
        case .array(let a): return a.map(json)
        case .object(let o): return o.mapValues(json)
        }
    }
}
