/// What a CER/CEA advertises (RFC 6733 §5.3), and the capability intersection that decides 2001
/// or 5010 DIAMETER_NO_COMMON_APPLICATION.
public struct DiameterCapabilities: Sendable, Equatable {
    public var originHost: String
    public var originRealm: String
    public var authApplications: Set<UInt32>
    public var acctApplications: Set<UInt32>
    /// Vendor-Specific-Application-Id entries, by application id (auth or acct).
    public var vendorApplications: [UInt32: UInt32]
    public var productName: String

    public init(originHost: String, originRealm: String, authApplications: Set<UInt32> = [], acctApplications: Set<UInt32> = [],
                vendorApplications: [UInt32: UInt32] = [:], productName: String = "") {
        self.originHost = originHost
        self.originRealm = originRealm
        self.authApplications = authApplications
        self.acctApplications = acctApplications
        self.vendorApplications = vendorApplications
        self.productName = productName
    }

    /// Every application id advertised (auth, acct, vendor-specific).
    public var applications: Set<UInt32> {
        authApplications.union(acctApplications).union(vendorApplications.keys)
    }

    /// Reads a CER or CEA. Nil without Origin-Host/Origin-Realm.
    public init?(message m: DiameterMessage) {
        guard let host = m.string(BaseAVP.originHost), let realm = m.string(BaseAVP.originRealm) else { return nil }
        originHost = host
        originRealm = realm
        authApplications = Set(m.all(BaseAVP.authApplicationID).compactMap(\.u32))
        acctApplications = Set(m.all(BaseAVP.acctApplicationID).compactMap(\.u32))
        vendorApplications = [:]
        for g in m.all(BaseAVP.vendorSpecificApplicationID) {
            guard let kids = try? g.children() else { continue }
            let vendor = kids.first { $0.code == BaseAVP.vendorID }?.u32 ?? 0
            for k in kids where k.code == BaseAVP.authApplicationID || k.code == BaseAVP.acctApplicationID {
                if let id = k.u32 { vendorApplications[id] = vendor }
            }
        }
        productName = m.string(BaseAVP.productName) ?? ""
    }

    /// The applications both sides support. The relay application (0xffffffff) on one side means
    /// "all of the other side's". Empty: answer 5010.
    public static func common(local: Set<UInt32>, remote: Set<UInt32>) -> Set<UInt32> {
        let relay = DiameterResult.relayApplication
        if local.contains(relay) { return remote }
        if remote.contains(relay) { return local }
        return local.intersection(remote)
    }

    /// The AVPs of a CER/CEA for these capabilities (Host-IP-Address, Vendor-Id 0 and Product-Name
    /// are mandatory in both).
    public func avps(hostIP: String, firmware: UInt32 = 1) -> [DiameterAVP] {
        var a: [DiameterAVP] = [
            .utf8(BaseAVP.originHost, originHost), .utf8(BaseAVP.originRealm, originRealm),
        ]
        if let ip = DiameterAVP.address(BaseAVP.hostIPAddress, ipv4: hostIP) { a.append(ip) }
        a.append(.u32(BaseAVP.vendorID, 0))
        a.append(.utf8(BaseAVP.productName, productName, mandatory: false))
        a.append(.u32(BaseAVP.firmwareRevision, firmware, mandatory: false))
        let vendors = Set(vendorApplications.values).subtracting([0])
        for v in vendors.sorted() { a.append(.u32(BaseAVP.supportedVendorID, v)) }
        for id in authApplications.sorted() where vendorApplications[id] == nil { a.append(.u32(BaseAVP.authApplicationID, id)) }
        for id in acctApplications.sorted() where vendorApplications[id] == nil { a.append(.u32(BaseAVP.acctApplicationID, id)) }
        for (id, v) in vendorApplications.sorted(by: { $0.key < $1.key }) {
            a.append(.grouped(BaseAVP.vendorSpecificApplicationID, [.u32(BaseAVP.vendorID, v), .u32(BaseAVP.authApplicationID, id)]))
        }
        return a
    }
}
