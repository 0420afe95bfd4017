import Foundation
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
    /// Requests sent through the link; answered at once (on another thread) by `answer`, nil: no answer.
    let sent = Mutex<[DiameterMessage]>([])
    let answer: @Sendable (DiameterMessage) -> DiameterMessage? = { r in
        r.answer(resultCode: 2001, originHost: "hss1.example", originRealm: "hss.example")
    }
    func send(_ request: DiameterMessage, toPeer peer: String, completion: @escaping @Sendable (DiameterMessage?) -> Void) -> Int {
        if !peer.isEmpty && !known.contains(peer) { return -1 }
        if peer.isEmpty ? realmCandidates(request).isEmpty : !usable.contains(peer) { return -2 }
        sent.withLock { $0.append(request) }
        let a = answer(request)
        Thread { completion(a) }.start()
        return 1
    }
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
            assert(KSR.diameter.relay() == 1)
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

    @Test("$diameter_response = json answers the request with the JSON's AVPs (ims_diameter_server's format)")
    func writableResponse() throws {
        let h = try harness("""
            local ok = KSR.pv.sets("$diameter_response", '[{"avpCode":268,"vendorId":0,"Flags":64,"int32":2001},' ..
                '{"avpCode":297,"vendorId":0,"Flags":64,"list":[{"avpCode":266,"vendorId":0,"Flags":64,"int32":10415},' ..
                '{"avpCode":298,"vendorId":0,"Flags":64,"int32":5420}]},' ..
                '{"avpCode":1407,"vendorId":10415,"Flags":192,"hexdump":"00F110"},{"vendorId":0,"int32":1}]')
            local j = KSR.pv.get("$diameter_response")
            assert(j:find('"avpCode":1407,"vendorId":10415,"DataType":0,"Flags":192,"data":"00f110"', 1, true), j)
            """)
        #expect(h.call("ksr_diameter_request") == .ok)
        guard case .answer(let m) = DiameterCurrent.of(h.context).decision else {
            Issue.record("no answer: \(DiameterCurrent.of(h.context).decision)")
            return
        }
        #expect(!m.isRequest && m.isProxiable && !m.isError && m.hopByHop == 7 && m.endToEnd == 8 && m.commandCode == 316)
        #expect(m.avps.map(\.code) == [263, 264, 296, 268, 297, 1407])
        #expect(m.string(263) == "mme;1" && m.string(264) == "dra.example" && m.u32(268) == 2001)
        #expect(m.first(1407, vendor: 10415)?.data == [0, 0xF1, 0x10] && m.first(1407, vendor: 10415)?.flags == 0xC0)
        #expect(try m.first(297)?.children().map(\.code) == [266, 298])
        #expect(m.first(268)?.flags == 0x40)

        // A 3xxx Result-Code sets the E flag; text that is not JSON is refused and changes nothing;
        // null takes the answer back (the route then ends without a decision: 3002).
        let e = try harness("""
            KSR.pv.sets("$diameter_response", '[{"avpCode":268,"vendorId":0,"Flags":64,"int32":3004}]')
            KSR.pv.sets("$diameter_response", '[{"avpCode":268,')
            KSR.pv.sets("$diameter_response", '{"avpCode":268,"vendorId":0,"int32":1}')
            KSR.pv.sets("$diameter_response", '[{"avpCode":268,"vendorId":0,"int32":"x"}]')
            """)
        #expect(e.call("ksr_diameter_request") == .ok)
        guard case .answer(let m3) = DiameterCurrent.of(e.context).decision else { Issue.record("no answer"); return }
        #expect(m3.isError && m3.resultCode == 3004)
        let n = try harness("""
            KSR.pv.sets("$diameter_response", '[{"avpCode":268,"vendorId":0,"Flags":64,"int32":2001}]')
            KSR.pv.unset("$diameter_response")
            assert(KSR.pv.get("$diameter_response") == nil)
            """)
        #expect(n.call("ksr_diameter_request") == .ok)
        #expect(DiameterCurrent.of(n.context).decision == .none)
    }

    @Test("ims_diameter_server.diameter_request builds the request from JSON and sets $diameter_response")
    func requestFromRoute() throws {
        let h = try ScriptHarness(script: """
            function ksr_request_route() end
            function probe()
                local json = '[{"avpCode":283,"vendorId":0,"Flags":64,"string":"hss.example"},' ..
                    '{"avpCode":1,"vendorId":0,"Flags":64,"string":"001011234567890"},' ..
                    '{"avpCode":1405,"vendorId":10415,"Flags":192,"int32":4294967295},' ..
                    '{"avpCode":421,"vendorId":0,"Flags":64,"int64":5000000000},' ..
                    '{"avpCode":257,"vendorId":0,"Flags":64,"address":"2001:db8::1"}]'
                assert(KSR.ims_diameter_server.diameter_request("hss1.example", 16777251, 316, json) == 1)
                local a = KSR.pv.get("$diameter_response")
                assert(a:find('{"avpCode":268,"vendorId":0,"DataType":3,"Flags":64,"int32":2001}', 1, true), a)
                assert(KSR.ims_diameter_server.diameter_request("", 16777251, 316, json) == 1)
                assert(KSR.ims_diameter_server.diameter_request("nobody.example", 16777251, 316, json) == -1)
                assert(KSR.ims_diameter_server.diameter_request("hss2.example", 16777251, 316, json) == -1)
                assert(KSR.ims_diameter_server.diameter_request("hss1.example", 16777251, 316, "") == -1)
                assert(KSR.ims_diameter_server.diameter_request("hss1.example", 16777251, 316, "[{") == -1)
                assert(KSR.ims_diameter_server.diameter_request("hss1.example", -1, 316, json) == -1)
                assert(KSR.ims_diameter_server.diameter_request("hss1.example", 16777251, 16777216, json) == -1)
                assert(KSR.pv.get("$diameter_response") == nil)
            end
            """)
        let link = PeerTable(usable: ["hss1.example"], known: ["hss1.example", "hss2.example"])
        h.runtime.diameter.setLink(link)
        #expect(h.call("probe") == .ok)
        let sent = link.sent.withLock { $0 }
        try #require(sent.count == 2)
        let m = sent[0]
        #expect(m.isRequest && m.isProxiable && m.commandCode == 316 && m.applicationID == 16777251)
        #expect(m.avps.map(\.code) == [263, 264, 296, 283, 1, 1405, 421, 257])
        #expect(m.string(263)?.hasPrefix("dra.example;") == true && m.string(264) == "dra.example" && m.string(296) == "example")
        #expect(m.first(1405, vendor: 10415)?.u32 == 4_294_967_295 && m.first(1405, vendor: 10415)?.flags == 0xC0)
        #expect(m.first(421)?.u64 == 5_000_000_000)
        #expect(m.first(257)?.data == [0, 2, 0x20, 0x01, 0x0d, 0xb8] + Array(repeating: 0, count: 11) + [1])
        #expect(sent[1].string(263) != m.string(263))
    }

    @Test("JSON AVP parser: Kamailio's precedence, skipped items, refused values")
    func jsonParser() throws {
        var w: [String] = []
        let avps = try DiameterJSON.parse("""
            [{"avpCode":1,"vendorId":0,"string":"a","int32":7},
             {"avpCode":2,"vendorId":0,"Flags":64,"int32":-1},
             {"avpCode":3,"vendorId":0,"hexdump":"0A0b"},
             {"avpCode":4,"vendorId":0},
             {"vendorId":0,"string":"x"},
             {"avpCode":5,"string":"x"},
             {"avpCode":6,"vendorId":0,"address":"10.1.2.3"},
             {"avpCode":7,"vendorId":0,"list":[{"avpCode":8,"vendorId":10415,"Flags":128,"string":"in"}],"string":"ignored"}]
            """, warnings: &w)
        #expect(avps.map(\.code) == [1, 2, 3, 6, 7])
        #expect(avps[0].u32 == 7 && avps[0].flags == 0)
        #expect(avps[1].u32 == 0xFFFF_FFFF && avps[1].flags == 0x40)
        #expect(avps[2].data == [0x0A, 0x0B])
        #expect(avps[3].data == [0, 1, 10, 1, 2, 3])
        #expect(try avps[4].children() == [DiameterAVP(code: 8, vendorID: 10415, mandatory: false, data: Array("in".utf8))])
        #expect(w.count == 3, "\(w)")
        for bad in ["", "{}", "[1]", #"[{"avpCode":-1,"vendorId":0,"int32":1}]"#, #"[{"avpCode":1,"vendorId":0,"int32":4294967296}]"#,
                    #"[{"avpCode":1,"vendorId":0,"hexdump":"abc"}]"#, #"[{"avpCode":1,"vendorId":0,"Flags":256,"int32":1}]"#,
                    #"[{"avpCode":1,"vendorId":0,"address":"1.2.3"}]"#, #"[{"avpCode":1.5,"vendorId":0,"int32":1}]"#] {
            #expect(throws: DiameterJSON.ParseError.self, "\(bad)") { try DiameterJSON.parse(bad, warnings: &w) }
        }
        let deep = String(repeating: #"{"avpCode":1,"vendorId":0,"list":["#, count: 40) + String(repeating: "]}", count: 40)
        #expect(throws: DiameterJSON.ParseError.self) { try DiameterJSON.parse("[" + deep + "]", warnings: &w) }
    }
}
