import Testing
import Synchronization
import Diameter
@testable import KSRModules
import StarlingKEMI
import StarlingLua
import StarlingTesting

/// The link's answers for the script API (the node itself is exercised by DiameterRelayTests).
private final class PeerTable: DiameterLink {
    let usable: Set<String>
    let known: Set<String>
    let enabled = Mutex<[String: Bool]>([:])
    init(usable: Set<String>, known: Set<String>) { self.usable = usable; self.known = known }
    func isUsable(_ identity: String) -> Bool { usable.contains(identity) }
    func isKnown(_ identity: String) -> Bool { known.contains(identity) }
    func realmCandidates(_ request: DiameterMessage) -> [String] { request.string(BaseAVP.destinationRealm) == "hss.example" ? ["hss1.example"] : [] }
    var peerStatus: [DiameterPeerStatus] { [] }
    func setEnabled(_ identity: String, _ on: Bool) -> Bool { enabled.withLock { $0[identity] = on }; return known.contains(identity) }
    var summary: (identity: String, realm: String, acceptUnknown: Bool, requestTimeout: Int) { ("dra.example", "example", false, 5000) }
}

@Suite("KSR.diameter in ksr_diameter_request()")
struct DiameterModuleTests {
    static let ulr = DiameterMessage(
        flags: 0xC0, commandCode: 316, applicationID: 16777251, hopByHop: 7, endToEnd: 8,
        avps: [.utf8(263, "mme;1"), .utf8(264, "mme.example"), .utf8(296, "mme.realm"), .utf8(283, "hss.example"),
               .utf8(1, "001011234567890"), .u32(1405, 34, vendor: 10415),
               .grouped(260, [.u32(266, 10415), .u32(258, 16777251)]),
               DiameterAVP(code: 1407, vendorID: 10415, data: [0, 0xF1, 0x10]), .utf8(282, "a"), .utf8(282, "b")])

    func harness(_ body: String) throws -> ScriptHarness {
        let h = try ScriptHarness(script: "function ksr_request_route() end\nfunction ksr_diameter_request()\n\(body)\nend")
        h.runtime.diameter.setLink(PeerTable(usable: ["hss1.example"], known: ["hss1.example", "hss2.example"]))
        let cur = DiameterCurrent.of(h.context)
        cur.request = Self.ulr
        cur.decision = .none
        return h
    }

    @Test("get_avp / get_avps by name, vendor AVPs, grouped paths; pseudo-variables")
    func reading() throws {
        let h = try harness("""
            assert(KSR.diameter.get_avp("User-Name") == "001011234567890")
            assert(KSR.diameter.get_avp("user-name") == "001011234567890")
            assert(KSR.diameter.get_avp("ULR-Flags") == 34)
            assert(KSR.diameter.get_avp("10415:1405") == 34)
            assert(KSR.diameter.get_avp("Vendor-Specific-Application-Id/Auth-Application-Id") == 16777251)
            assert(KSR.diameter.get_avp("Destination-Host") == nil)
            assert(KSR.diameter.get_avp("No-Such-AVP") == nil)
            assert(KSR.diameter.get_avps("Route-Record") == "a,b")
            assert(KSR.pv.get("$diameter_command") == 316)
            assert(KSR.pv.get("$diameter_application") == 16777251)
            local j = KSR.pv.get("$diameter_request")
            assert(j:find('{"avpCode":1,"vendorId":0,"DataType":1,"Flags":64,"string":"001011234567890"}', 1, true), j)
            assert(j:find('"avpCode":1405,"vendorId":10415,"DataType":3,"Flags":192,"int32":34', 1, true), j)
            assert(j:find('"list":[{"avpCode":266', 1, true), j)
            """)
        #expect(h.call("ksr_diameter_request") == .ok)
        #expect(DiameterCurrent.of(h.context).decision == .none)
    }

    @Test("set_avp / add_avp / rm_avp edit the request that is relayed")
    func editing() throws {
        let h = try harness("""
            assert(KSR.diameter.set_avp("Destination-Host", "hss1.example") == 1)
            assert(KSR.diameter.set_avp("ULR-Flags", "35") == 1)
            assert(KSR.diameter.set_avp("ULR-Flags", "x") == -1)
            assert(KSR.diameter.set_avp("Vendor-Specific-Application-Id", "1") == -1)
            assert(KSR.diameter.add_avp("Route-Record", "c") == 1)
            assert(KSR.diameter.rm_avp("Visited-PLMN-Id") == 1)
            assert(KSR.diameter.rm_avp("Visited-PLMN-Id") == -1)
            assert(KSR.diameter.relay("hss1.example") == 1)
            """)
        #expect(h.call("ksr_diameter_request") == .ok)
        guard case .relay(let peer, let m) = DiameterCurrent.of(h.context).decision else {
            Issue.record("not relayed: \(DiameterCurrent.of(h.context).decision)")
            return
        }
        #expect(peer == "hss1.example")
        #expect(m.string(293) == "hss1.example")
        #expect(m.first(1405, vendor: 10415)?.u32 == 35)
        #expect(m.all(282).map(\.string) == ["a", "b", "c"])
        #expect(m.first(1407, vendor: 10415) == nil)
    }

    @Test("relay refuses unknown (-1) and down (-2) peers; relay_realm; answer builds a local answer")
    func decisions() throws {
        let h = try harness("""
            assert(KSR.diameter.relay("nobody.example") == -1)
            assert(KSR.diameter.relay("hss2.example") == -2)
            assert(KSR.diameter.is_peer_usable("hss1.example") == 1)
            assert(KSR.diameter.relay_realm() == 1)
            """)
        #expect(h.call("ksr_diameter_request") == .ok)
        #expect(DiameterCurrent.of(h.context).decision == .relayByRealm(request: Self.ulr))
        let a = try harness("""
            assert(KSR.diameter.answer(5001) == 1)
            assert(KSR.pv.get("$diameter_response"):find('"int32":5001', 1, true))
            """)
        #expect(a.call("ksr_diameter_request") == .ok)
        guard case .answer(let m) = DiameterCurrent.of(a.context).decision else {
            Issue.record("no answer")
            return
        }
        #expect(m.resultCode == 5001 && !m.isRequest && m.hopByHop == 7 && m.string(264) == "dra.example")
    }

    @Test("outside a Diameter request (a SIP route) the functions return -1 / nil")
    func outside() throws {
        let h = try ScriptHarness(script: """
            function ksr_request_route() end
            function probe()
                assert(KSR.diameter.get_avp("User-Name") == nil)
                assert(KSR.diameter.relay("hss1.example") == -1)
                assert(KSR.diameter.answer(3002) == -1)
                assert(KSR.pv.get("$diameter_command") == nil)
            end
            """)
        #expect(h.call("probe") == .ok)
    }
}
