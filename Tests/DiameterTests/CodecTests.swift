import Testing
@testable import Diameter

@Suite("Diameter codec (RFC 6733 §3, §4)")
struct CodecTests {
    static func sampleRequest() -> DiameterMessage {
        DiameterMessage(
            flags: DiameterMessage.flagRequest | DiameterMessage.flagProxiable, commandCode: 316, applicationID: 16777251,
            hopByHop: 0x1122_3344, endToEnd: 0x5566_7788,
            avps: [
                .utf8(BaseAVP.sessionID, "mme.example;1;2"),
                .utf8(BaseAVP.originHost, "mme.example"),
                .utf8(BaseAVP.originRealm, "example"),
                .utf8(BaseAVP.destinationRealm, "hss.example"),
                .utf8(BaseAVP.userName, "001011234567890"),
                .u32(1405, 34, vendor: 10415),
                .grouped(BaseAVP.vendorSpecificApplicationID, [.u32(BaseAVP.vendorID, 10415), .u32(BaseAVP.authApplicationID, 16777251)]),
                DiameterAVP(code: 1407, vendorID: 10415, data: [0x00, 0xF1, 0x10]),
            ])
    }

    @Test("encode then decode gives the same message; lengths and padding as RFC 6733")
    func roundTrip() throws {
        let m = Self.sampleRequest()
        let bytes = m.encode()
        #expect(bytes.count % 4 == 0)
        #expect(bytes[0] == 1)
        #expect(Int(bytes[1]) << 16 | Int(bytes[2]) << 8 | Int(bytes[3]) == bytes.count)
        #expect(bytes[4] == 0xC0)
        #expect(Array(bytes[5..<8]) == [0, 0x01, 0x3C])  // 316
        let d = try DiameterMessage.decode(bytes)
        #expect(d == m)
        #expect(d.isRequest && d.isProxiable && !d.isError && !d.isRetransmit)
        // Visited-PLMN-Id: 12-byte header + 3 data bytes = length 15, padded to 16.
        let plmn = try #require(d.first(1407, vendor: 10415))
        #expect(plmn.length == 15 && plmn.paddedLength == 16 && plmn.data == [0x00, 0xF1, 0x10])
        let vsai = try #require(d.first(BaseAVP.vendorSpecificApplicationID)).children()
        #expect(vsai.map(\.code) == [BaseAVP.vendorID, BaseAVP.authApplicationID])
        #expect(vsai[1].u32 == 16777251)
    }

    @Test("decoding a message freeDiameter would send: header fields and vendor AVP flags")
    func knownBytes() throws {
        // DWR from "a.b" realm "b": flags R, code 280, app 0.
        // Origin-Host (264) len 11 "a.b" + pad; Origin-Realm (296) len 9 "b" + pad.
        var bytes: [UInt8] = [1, 0, 0, 40, 0x80, 0, 1, 0x18, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 2,
                 0, 0, 1, 8, 0x40, 0, 0, 11, 0x61, 0x2E, 0x62, 0,
                 0, 0, 1, 0x28, 0x40, 0, 0, 9, 0x62, 0, 0, 0]
        bytes[3] = UInt8(bytes.count)
        let m = try DiameterMessage.decode(bytes)
        #expect(m.commandCode == 280 && m.applicationID == 0 && m.hopByHop == 1 && m.endToEnd == 2)
        #expect(m.string(BaseAVP.originHost) == "a.b" && m.string(BaseAVP.originRealm) == "b")
        #expect(m.first(BaseAVP.originHost)?.isMandatory == true)
        #expect(m.encode() == bytes)
    }

    @Test("malformed lengths are refused, never trusted", arguments: [
        ("header shorter than 20", [UInt8](repeating: 1, count: 12)),
        ("message length below 20", [1, 0, 0, 16] + [UInt8](repeating: 0, count: 16)),
        ("message length beyond the buffer", [1, 0, 0, 64] + [UInt8](repeating: 0, count: 16)),
        ("message length not a multiple of 4", [1, 0, 0, 22] + [UInt8](repeating: 0, count: 18)),
        ("version 2", [2, 0, 0, 20] + [UInt8](repeating: 0, count: 16)),
    ])
    func badHeaders(_ name: String, _ bytes: [UInt8]) {
        #expect(throws: DiameterDecodeError.self) { try DiameterMessage.decode(bytes) }
    }

    @Test("AVP length underflow, overflow, missing padding and bad grouped content are refused")
    func badAVPs() throws {
        let good = Self.sampleRequest().encode()
        func patch(_ at: Int, _ len: Int) -> [UInt8] {
            var b = good
            b[at + 5] = UInt8(len >> 16 & 0xFF); b[at + 6] = UInt8(len >> 8 & 0xFF); b[at + 7] = UInt8(len & 0xFF)
            return b
        }
        // First AVP at offset 20 (Session-Id).
        for len in [0, 4, 7] {
            #expect(throws: DiameterDecodeError.badAVPLength(code: 263, length: len, offset: 20)) { try DiameterMessage.decode(patch(20, len)) }
        }
        #expect(throws: DiameterDecodeError.self) { try DiameterMessage.decode(patch(20, 0xFFFFFF)) }
        // A vendor AVP whose length is below its 12-byte header.
        let ulrOffset = 20 + Self.sampleRequest().avps.prefix(5).reduce(0) { $0 + $1.paddedLength }
        #expect(throws: DiameterDecodeError.badAVPLength(code: 1405, length: 10, offset: ulrOffset)) {
            try DiameterMessage.decode(patch(ulrOffset, 10))
        }
        // The message cut so that the last AVP's padding is outside the message.
        var cut = good
        cut.removeLast(4)
        cut[3] = UInt8(cut.count & 0xFF); cut[2] = UInt8(cut.count >> 8)
        #expect(throws: DiameterDecodeError.self) { try DiameterMessage.decode(cut) }
        // A grouped AVP with an inner length underflow: children() refuses it.
        let inner: [UInt8] = [0, 0, 1, 10, 0x40, 0, 0, 3, 0, 0, 0, 0]
        let g = DiameterAVP(code: 260, data: inner)
        #expect(throws: DiameterDecodeError.self) { try g.children() }
        // Trailing bytes shorter than an AVP header.
        var trail = DiameterMessage(flags: 0x80, commandCode: 280, applicationID: 0, hopByHop: 1, endToEnd: 1).encode()
        trail += [0, 0, 0, 0]
        trail[3] = UInt8(trail.count)
        #expect(throws: DiameterDecodeError.badAVPLength(code: 0, length: 4, offset: 20)) { try DiameterMessage.decode(trail) }
    }

    @Test("frame length needs 4 bytes and refuses impossible lengths")
    func framing() throws {
        #expect(try [UInt8]([1, 0, 0]).withUnsafeBytes { try DiameterMessage.frameLength($0) } == nil)
        #expect(try [UInt8]([1, 0, 0, 24]).withUnsafeBytes { try DiameterMessage.frameLength($0) } == 24)
        #expect(throws: DiameterDecodeError.self) { try [UInt8]([1, 0x20, 0, 0]).withUnsafeBytes { try DiameterMessage.frameLength($0) } }
        #expect(throws: DiameterDecodeError.self) { try [UInt8]([1, 0, 0, 8]).withUnsafeBytes { try DiameterMessage.frameLength($0) } }
    }

    @Test("answers keep ids and Session-Id first; protocol errors set E and Error-Reporting-Host")
    func answers() throws {
        let req = Self.sampleRequest()
        let a = req.answer(resultCode: 3002, originHost: "dra.example", originRealm: "example", reportingHost: "dra.example")
        #expect(!a.isRequest && a.isProxiable && a.isError)
        #expect(a.hopByHop == req.hopByHop && a.endToEnd == req.endToEnd && a.commandCode == 316)
        #expect(a.avps.first?.code == BaseAVP.sessionID)
        #expect(a.resultCode == 3002)
        #expect(a.string(BaseAVP.errorReportingHost) == "dra.example")
        let ok = req.answer(resultCode: 2001, originHost: "h", originRealm: "r")
        #expect(!ok.isError && ok.first(BaseAVP.errorReportingHost) == nil)
        var exp = ok
        _ = exp.remove(BaseAVP.resultCode)
        exp.avps.append(.grouped(BaseAVP.experimentalResult, [.u32(BaseAVP.vendorID, 10415), .u32(BaseAVP.experimentalResultCode, 5001)]))
        #expect(exp.resultCode == 5001)
    }

    @Test("dictionary: names, codes, vendors and types of the base protocol and the 3GPP applications")
    func dictionary() throws {
        let d = DiameterDictionary.standard
        #expect(d.avpCount > 250)
        #expect(d.lookup("Session-Id") == DiameterAVPDefinition(name: "Session-Id", code: 263, vendorID: nil, type: .utf8String))
        #expect(d.lookup("user-name")?.code == 1)
        #expect(d.lookup("ULR-Flags") == DiameterAVPDefinition(name: "ULR-Flags", code: 1405, vendorID: 10415, type: .unsigned32))
        #expect(d.lookup("CC-Request-Type")?.type == .enumerated)
        #expect(d.lookup("Public-Identity")?.vendorID == 10415)
        #expect(d.lookup("Sh-User-Data")?.code == 702)
        #expect(d.lookup("10415:1407")?.name == "Visited-PLMN-Id")
        #expect(d.lookup("99999")?.type == .octetString)
        #expect(d.lookup("No-Such-AVP") == nil)
        // Gx (TS 29.212) and Rx (TS 29.214) beyond the basics: codes and types as the specifications
        // (cross-checked with Kamailio cdp's diameter_epc_code_avp.h where it has them).
        let gxRx: [(String, UInt32, DiameterAVPType)] = [
            ("Guaranteed-Bitrate-DL", 1025, .unsigned32), ("AN-GW-Address", 1050, .address), ("Packet-Filter-Information", 1061, .grouped),
            ("Usage-Monitoring-Information", 1067, .grouped), ("Monitoring-Key", 1066, .octetString), ("Revalidation-Time", 1042, .time),
            ("Routing-Rule-Install", 1081, .grouped), ("Extended-APN-AMBR-DL", 2848, .unsigned32), ("3GPP-User-Location-Info", 22, .octetString),
            ("Authorization-Token", 506, .octetString), ("Sponsored-Connectivity-Data", 530, .grouped), ("Content-Version", 552, .unsigned64),
            ("Extended-Max-Requested-BW-UL", 555, .unsigned32), ("Min-Requested-Bandwidth-DL", 534, .unsigned32),
        ]
        for (name, code, type) in gxRx {
            #expect(d.lookup(name) == DiameterAVPDefinition(name: name, code: code, vendorID: 10415, type: type), "\(name)")
        }
        #expect(d.commandName(265) == "AA")
        #expect(d.applications[16777251] == "S6a" && d.applications[4] == "Diameter-Credit-Control")
        #expect(d.commandName(316) == "Update-Location" && d.commandName(272) == "Credit-Control")
        // Values as scripts see them.
        #expect(d.value(of: .u32(1405, 34, vendor: 10415)) == .int(34))
        #expect(d.value(of: .utf8(1, "001011234567890")) == .string("001011234567890"))
        #expect(d.value(of: DiameterAVP.address(257, ipv4: "127.0.0.1")!) == .string("127.0.0.1"))
        let ulr = try #require(d.lookup("ULR-Flags"))
        #expect(d.makeAVP(ulr, int: 7, string: nil) == .u32(1405, 7, vendor: 10415))
        #expect(d.makeAVP(ulr, int: -1, string: nil) == nil)
        #expect(d.makeAVP(try #require(d.lookup("User-Name")), int: nil, string: "x") == .utf8(1, "x"))
    }

    @Test("capabilities from a CER and the intersection that gives 5010")
    func capabilities() throws {
        let local = DiameterCapabilities(originHost: "dra.example", originRealm: "example", authApplications: [4],
                                         vendorApplications: [16777251: 10415], productName: "Starling")
        let cer = DiameterMessage(flags: 0x80, commandCode: 257, applicationID: 0, hopByHop: 1, endToEnd: 1,
                                  avps: local.avps(hostIP: "127.0.0.1"))
        let back = try #require(DiameterCapabilities(message: try DiameterMessage.decode(cer.encode())))
        #expect(back == local)
        #expect(back.applications == [4, 16777251])
        #expect(DiameterCapabilities.common(local: [4, 16777251], remote: [16777251]) == [16777251])
        #expect(DiameterCapabilities.common(local: [4], remote: [16777251]).isEmpty)
        #expect(DiameterCapabilities.common(local: [0xFFFF_FFFF], remote: [16777251]) == [16777251])
        #expect(DiameterCapabilities.common(local: [4], remote: [0xFFFF_FFFF]) == [4])
    }
}
