/// AVP types of RFC 6733 §4.2/§4.3 and the 3GPP specifications.
public enum DiameterAVPType: String, Sendable {
    case octetString = "OctetString", integer32 = "Integer32", integer64 = "Integer64"
    case unsigned32 = "Unsigned32", unsigned64 = "Unsigned64", float32 = "Float32", float64 = "Float64"
    case grouped = "Grouped", address = "Address", time = "Time", utf8String = "UTF8String"
    case diameterIdentity = "DiameterIdentity", diameterURI = "DiameterURI", enumerated = "Enumerated"
    case ipFilterRule = "IPFilterRule"

    /// Whether scripts read it as an integer (get_avp returns a Lua integer).
    public var isInteger: Bool {
        switch self {
        case .integer32, .integer64, .unsigned32, .unsigned64, .enumerated, .time: return true
        default: return false
        }
    }
}

/// One dictionary AVP.
public struct DiameterAVPDefinition: Sendable, Equatable {
    public var name: String
    public var code: UInt32
    public var vendorID: UInt32?
    public var type: DiameterAVPType
}

/// AVP names, codes and types; application and command names. Built once from the data text.
public struct DiameterDictionary: Sendable {
    public private(set) var byName: [String: DiameterAVPDefinition] = [:]
    private var byCode: [UInt64: DiameterAVPDefinition] = [:]
    public private(set) var applications: [UInt32: String] = [:]
    public private(set) var commands: [UInt32: (short: String, name: String)] = [:]

    public static let standard: DiameterDictionary = DiameterDictionary(text: diameterDictionaryText)

    /// Parses `Name code vendor Type`, `app id Name`, `cmd code SHORT Name` lines; `#` comments.
    /// Lines that do not parse are skipped (the built-in text is checked by a test).
    public init(text: String) {
        for raw in text.split(separator: "\n") {
            let f = raw.split(separator: " ")
            if f.isEmpty || f[0].hasPrefix("#") { continue }
            if f[0] == "app", f.count == 3, let id = UInt32(f[1]) {
                applications[id] = String(f[2])
            } else if f[0] == "cmd", f.count == 4, let code = UInt32(f[1]) {
                commands[code] = (String(f[2]), String(f[3]))
            } else if f.count == 4, let code = UInt32(f[1]), let vendor = UInt32(f[2]),
                      let type = DiameterAVPType(rawValue: String(f[3])) {
                let d = DiameterAVPDefinition(name: String(f[0]), code: code, vendorID: vendor == 0 ? nil : vendor, type: type)
                byName[d.name.lowercased()] = d
                byCode[Self.key(code, d.vendorID)] = d
            }
        }
    }

    private static func key(_ code: UInt32, _ vendor: UInt32?) -> UInt64 { UInt64(vendor ?? 0) << 32 | UInt64(code) }

    /// The definition for a name (case-insensitive) or a numeric form: "263", "10415:1405".
    /// Numeric codes not in the dictionary are OctetString.
    public func lookup(_ name: String) -> DiameterAVPDefinition? {
        if let d = byName[name.lowercased()] { return d }
        let parts = name.split(separator: ":")
        if parts.count == 1, let c = UInt32(parts[0]) { return definition(code: c, vendor: nil) }
        if parts.count == 2, let v = UInt32(parts[0]), let c = UInt32(parts[1]) { return definition(code: c, vendor: v) }
        return nil
    }

    public func definition(code: UInt32, vendor: UInt32?) -> DiameterAVPDefinition {
        byCode[Self.key(code, vendor)]
            ?? DiameterAVPDefinition(name: vendor.map { "\($0):\(code)" } ?? "\(code)", code: code, vendorID: vendor, type: .octetString)
    }

    public var avpCount: Int { byName.count }

    /// A command's long name ("Update-Location"), or its code.
    public func commandName(_ code: UInt32) -> String { commands[code]?.name ?? "\(code)" }

    // MARK: Values

    /// The AVP's value as a script sees it: an integer for integer types, a string otherwise
    /// (Address as text, OctetString as raw bytes).
    public enum Value: Sendable, Equatable {
        case int(Int)
        case string(String)
        case bytes([UInt8])
    }

    public func value(of avp: DiameterAVP) -> Value {
        let d = definition(code: avp.code, vendor: avp.vendorID)
        let b = avp.data
        switch d.type {
        case .unsigned32, .enumerated, .time:
            if let v = avp.u32 { return .int(Int(v)) }
        case .integer32:
            if let v = avp.u32 { return .int(Int(Int32(bitPattern: v))) }
        case .unsigned64, .integer64:
            if let v = avp.u64 { return .int(Int(bitPattern: UInt(v))) }
        case .address:
            if b.count == 6, b[0] == 0, b[1] == 1 { return .string(b[2...].map(String.init).joined(separator: ".")) }
            if b.count == 18, b[0] == 0, b[1] == 2 {
                var groups: [String] = []
                for i in stride(from: 2, to: 18, by: 2) { groups.append(String(UInt16(b[i]) << 8 | UInt16(b[i + 1]), radix: 16)) }
                return .string(groups.joined(separator: ":"))
            }
        case .utf8String, .diameterIdentity, .diameterURI, .ipFilterRule:
            return .string(avp.string)
        case .octetString, .grouped, .float32, .float64:
            break
        }
        return .bytes(b)
    }

    /// Builds an AVP of the definition's type from a script value; nil when it does not convert.
    public func makeAVP(_ d: DiameterAVPDefinition, int: Int?, string: String?) -> DiameterAVP? {
        let mandatory = true
        switch d.type {
        case .unsigned32, .enumerated, .time:
            guard let v = int ?? string.flatMap({ Int($0) }), let u = UInt32(exactly: v) else { return nil }
            return .u32(d.code, u, vendor: d.vendorID, mandatory: mandatory)
        case .integer32:
            guard let v = int ?? string.flatMap({ Int($0) }), let i = Int32(exactly: v) else { return nil }
            return .u32(d.code, UInt32(bitPattern: i), vendor: d.vendorID, mandatory: mandatory)
        case .unsigned64, .integer64:
            guard let v = int ?? string.flatMap({ Int($0) }) else { return nil }
            return .u64(d.code, UInt64(bitPattern: Int64(v)), vendor: d.vendorID, mandatory: mandatory)
        case .address:
            guard let s = string ?? int.map(String.init) else { return nil }
            return DiameterAVP.address(d.code, ipv4: s).map { var a = $0; if let v = d.vendorID { a.vendorID = v; a.flags |= DiameterAVP.flagVendor }; return a }
        default:
            guard let s = string ?? int.map(String.init) else { return nil }
            return .utf8(d.code, s, vendor: d.vendorID, mandatory: mandatory)
        }
    }
}
