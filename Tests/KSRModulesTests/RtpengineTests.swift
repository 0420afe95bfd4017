import Testing
import SIPTransport
@testable import KSRModules

/// The pieces of KSR.rtpengine that need no daemon: the bencode codec, the flags string as Kamailio's
/// parse_flags reads it, and `rtpengine_sock` (the calls themselves are tested against the real
/// rtpengine in StarlingIntegrationTests/RtpengineTests).
@Suite struct RtpengineCodecTests {
    @Test func bencodeRoundTrip() throws {
        let v = Bencode.dict([("command", .string("offer")), ("flags", .list([.string("trust-address")])),
                              ("n", .int(-42)), ("sdp", .string("v=0\r\n"))])
        let bytes = v.encoded
        #expect(String(decoding: bytes, as: UTF8.self) == "d7:command5:offer5:flagsl13:trust-addresse1:ni-42e3:sdp5:v=0\r\ne")
        #expect(try Bencode.decode(bytes) == v)
        #expect(try Bencode.decode(Array("d6:result4:ponge".utf8))["result"]?.text == "pong")
    }

    @Test func undecodableRepliesAreErrorsNotCrashes() {
        for bad in ["", "d", "i12", "5:abc", "d3:abci1e", "l", "x", "99999999999999999999999:a", "i99999999999999999999999e",
                    "d1:ai1ee trailing", String(repeating: "l", count: 100) + String(repeating: "e", count: 100)] {
            #expect(throws: Bencode.DecodeError.self, "\(bad)") { try Bencode.decode(Array(bad.utf8)) }
        }
    }

    @Test func queryJSON() throws {
        let v = try Bencode.decode(Array("d6:result2:ok7:createdi5e4:tagsl1:a1:bee".utf8))
        #expect(v.json() == #"{"result":"ok","created":5,"tags":["a","b"]}"#)
    }

    @Test func flagsAsKamailioParsesThem() {
        var ng = NGFlags()
        var op = RtpengineOp.offer
        let err = ng.parse("replace-origin replace-session-connection ICE=remove RTP/AVP trust-address direction=external "
                           + "direction=internal via-branch=auto SIP-source-address codec-strip=PCMA rtcp-mux-demux "
                           + "some-unknown-word TOS=184 DTLS=off", op: &op)
        #expect(err == nil)
        #expect(ng.replace == [.string("origin"), .string("session-connection")])
        #expect(ng.flags == [.string("trust-address"), .string("SIP-source-address"), .string("some-unknown-word")])
        #expect(ng.direction == [.string("external"), .string("internal")])
        #expect(ng.via == 3)
        #expect(ng.transport == 0x100)
        #expect(ng.rtcpMux == [.string("demux")])
        #expect(ng.codec.first?.key == "strip")
        #expect(ng.dict.map(\.key) == ["ICE", "TOS", "DTLS"])
        var op2 = RtpengineOp.answer
        var ng2 = NGFlags()
        #expect(ng2.parse("force-answer", op: &op2) != nil, "force-answer only on offer")
        var ng3 = NGFlags()
        #expect(ng3.parse("via-branch=nope", op: &op) != nil)
        var ng4 = NGFlags()
        var op4 = RtpengineOp.offer
        #expect(ng4.parse("force-answer from-tag=abc", op: &op4) == nil)
        #expect(op4 == .answer && ng4.fromTag == "abc" && ng4.directional)
    }

    @Test func sockParameter() throws {
        let sets = try RtpengineSet.parse(["udp:127.0.0.1:2223=2 udp:localhost:2224", "1 == udp6:[::1]:2225"], defaultSet: 0)
        #expect(sets.map(\.id) == [0, 1])
        #expect(sets[0].nodes.map(\.weight) == [2, 1])
        #expect(sets[0].nodes[1].address.port == 2224)
        #expect(sets[1].nodes[0].url == "udp6:[::1]:2225")
        #expect(throws: RtpengineSockError.self) { try RtpengineSet.parse(["tcp:127.0.0.1:1"], defaultSet: 0) }
        #expect(throws: RtpengineSockError.self) { try RtpengineSet.parse(["udp:rtp.example.com:2223"], defaultSet: 0) }
        #expect(throws: RtpengineSockError.self) { try RtpengineSet.parse(["x == udp:127.0.0.1:1"], defaultSet: 0) }
    }
}
