import Testing
import Foundation
import SIPCore
import SIPTransport
import StarlingKEMI
import StarlingTesting
@testable import KSRModules
import StarlingLua
import Synchronization
import StarlingStore

/// Helpers: a list file in a temporary directory, a harness with `[modparam.dispatcher]` values,
/// INVITEs with a given Call-ID.
enum DST {
    static let list3 = """
        # three PBXs, same priority
        1 sip:10.0.0.1:5060
        1 sip:10.0.0.2:5060
        1 sip:10.0.0.3:5060
        """

    static func file(_ text: String, name: String = "dispatcher.list") -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ds-\(UUID().uuidString)")
        try? FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let path = dir.appendingPathComponent(name).path
        FileManager.default.createFile(atPath: path, contents: Data(text.utf8))
        return path
    }

    static func harness(_ script: String, list: String = list3, _ params: [String: String] = [:],
                        tm: [String: String] = [:], services: TestServices = TestServices()) throws -> (ScriptHarness, String) {
        let path = file(list)
        var p = params.mapValues { [$0] }
        p["list_file"] = [path]
        let h = try ScriptHarness(script: tmSaveHelper + script,
                                  config: ModuleConfiguration(params: ["dispatcher": p, "tm": tm.mapValues { [$0] }]),
                                  services: services)
        return (h, path)
    }

    static func invite(callID: String = "call-1", ruri: String = "sip:bob@example.com", from: String = "sip:alice@atlanta.example.com",
                       extra: String = "") -> String {
        "INVITE \(ruri) SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK\(callID.hashValue & 0xffffff)\r\n"
            + "Max-Forwards: 70\r\nTo: <sip:bob@example.com>\r\nFrom: <\(from)>;tag=1\r\nCall-ID: \(callID)\r\n"
            + "CSeq: 1 INVITE\r\nContact: <sip:alice@192.0.2.10:5060>\r\n\(extra)Content-Length: 0\r\n\r\n"
    }

    static func request(_ method: String, callID: String) -> String {
        "\(method) sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK\(method)\(callID)\r\n"
            + "Max-Forwards: 70\r\nTo: <sip:bob@example.com>;tag=2\r\nFrom: <sip:alice@atlanta.example.com>;tag=1\r\n"
            + "Call-ID: \(callID)\r\nCSeq: 2 \(method)\r\nContent-Length: 0\r\n\r\n"
    }

    /// Counts of `$var(out)` over `n` INVITEs with distinct Call-IDs.
    static func distribution(_ h: ScriptHarness, _ n: Int, callID: (Int) -> String = { "c\($0)" }) throws -> [String: Int] {
        var counts: [String: Int] = [:]
        for i in 0..<n {
            try h.route(invite(callID: callID(i)))
            counts[TMT.v(h, "out"), default: 0] += 1
        }
        return counts
    }
}

@Suite struct DispatcherListTests {
    @Test func ordersAsKamailioPriorityThenLaterLinesFirst() throws {
        let e = try DSList.parse("""
            1 sip:a.example.com 0 5
            1 sip:b.example.com
            1 c.example.com:5070 0 5 duid=c;weight=40;maxload=3
            2 sip:[2001:db8::1]:5060;transport=tcp 16
            """, file: "l")
        let sets = try DSList.build(e)
        #expect(sets[1]?.dests.map(\.uri) == ["sip:c.example.com:5070", "sip:a.example.com", "sip:b.example.com"])
        let c = try #require(sets[1]?.dests.first)
        #expect(c.attrs.duid == "c" && c.attrs.weight == 40 && c.attrs.maxload == 3 && c.port == 5070 && c.priority == 5)
        let v6 = try #require(sets[2]?.dests.first)
        #expect(v6.ip == "2001:db8::1" && v6.proto == .tcp && v6.flags == 16)
    }

    @Test(arguments: [
        ("1 sip:bad host:5060", "l:1"),
        ("# c\nx sip:a.example.com", "l:2: set id"),
        ("1 sip:a.example.com 0 0 weight=500", "l:1: attribute weight=500 is not in 1-100"),
        ("\n\n1 sip:a.example.com 0 0 maxload=x", "l:3: attribute maxload"),
        ("1 sip:a.example.com;transport=foo", "l:1: unknown transport"),
        ("1 sip:a.example.com abc", "l:1: flags"),
        ("1", "l:1: expected"),
        ("1 sip:a.example.com 0 0 ;=x", "l:1: malformed attributes"),
    ])
    func refusesBadLinesNamingFileAndLine(_ text: String, _ expected: String) {
        do {
            _ = try DSList.parse(text, file: "l")
            Issue.record("accepted: \(text)")
        } catch {
            #expect(error.description.hasPrefix(expected), "\(error)")
        }
    }

    @Test func unknownAttributesAreKeptWithAWarning() throws {
        var warnings: [String] = []
        let e = try DSList.parse("1 sip:a.example.com 0 0 carrier=acme;duid=a", file: "l") { warnings.append($0) }
        #expect(warnings.count == 1 && warnings[0].contains("l:1") && warnings[0].contains("carrier"))
        #expect(try DSList.build(e)[1]?.dests.first?.attrs.body == "carrier=acme;duid=a")
    }

    @Test func hashIsKamailiosCoreHash() {
        // Printed by Kamailio 5.6.3's `kamcmd dispatcher.hash 7 VALUE [VALUE2]` (binrpc shows the
        // unsigned hash as a signed int: -1155972484 is 3138994812). Non-ASCII bytes hash as signed chars.
        #expect(DS.hash(Array("a84b4c76e66710@pc33".utf8)) == 1_093_616_078)
        #expect(DS.hash(Array("abc".utf8)) == 7_167_810)
        #expect(DS.hash(Array("é-ü".utf8)) == 3_138_994_812)
        #expect(DS.hash(Array("call-1@host".utf8)) == 2_552_170_930)
        #expect(DS.hash(Array("x".utf8)) == 119)
        #expect(DS.hash(Array("user1".utf8), Array("host:5070".utf8)) == 515_377_617)
        #expect(DS.hash(Array("".utf8)) == 1)
    }
}

@Suite struct DispatcherSelectTests {
    static let selectScript = """
        function ksr_request_route()
          local r = KSR.dispatcher.ds_select_dst(tonumber(KSR.pv.get("$var(set)")) or 1, tonumber(KSR.pv.get("$var(alg)")) or 4)
          KSR.pv.seti("$var(rc)", r)
          KSR.pv.sets("$var(out)", tostring(KSR.pv.get("$du")))
          KSR.pv.unset("$du")
        end
        """

    static func harness(alg: Int, list: String = DST.list3, _ params: [String: String] = [:]) throws -> ScriptHarness {
        let (h, _) = try DST.harness(Self.selectScript, list: list, params)
        h.context.worker.vars["alg"] = .int(alg)
        h.context.worker.vars["set"] = .int(1)
        return h
    }

    @Test func roundRobinIsEvenAndStartsWhereKamailioStarts() throws {
        let h = try Self.harness(alg: 4)
        try h.route(DST.invite(callID: "first"))
        // Kamailio's order: equal priorities, later line first
        #expect(TMT.v(h, "out") == "sip:10.0.0.3:5060")
        let counts = try DST.distribution(h, 299)
        #expect(counts == ["sip:10.0.0.1:5060": 100, "sip:10.0.0.2:5060": 100, "sip:10.0.0.3:5060": 99])
    }

    @Test func weightsAreProportional() throws {
        let h = try Self.harness(alg: 9, list: """
            1 sip:10.0.0.1 0 0 weight=50
            1 sip:10.0.0.2 0 0 weight=30
            1 sip:10.0.0.3 0 0 weight=20
            """)
        let counts = try DST.distribution(h, 200)
        #expect(counts == ["sip:10.0.0.1": 100, "sip:10.0.0.2": 60, "sip:10.0.0.3": 40])
    }

    @Test func relativeWeightsFollowActiveDestinations() throws {
        let h = try Self.harness(alg: 11, list: """
            1 sip:10.0.0.1 0 0 rweight=50
            1 sip:10.0.0.2 0 0 rweight=25
            1 sip:10.0.0.3 0 0 rweight=25
            """)
        let counts = try DST.distribution(h, 100)
        #expect(counts == ["sip:10.0.0.1": 50, "sip:10.0.0.2": 25, "sip:10.0.0.3": 25])
        // an inactive destination's share goes to the others
        let rpc = try #require(KSRModules.rpcMethods.first { $0.method.name == "dispatcher.set_state" }?.method)
        _ = try rpc.handler(h.runtime, RPCParameters([.string("ip"), .int(1), .string("sip:10.0.0.1")]))
        let after = try DST.distribution(h, 100)
        #expect(after == ["sip:10.0.0.2": 50, "sip:10.0.0.3": 50])
    }

    @Test func hashIsStickyPerCallID() throws {
        let h = try Self.harness(alg: 0)
        var first: [String: String] = [:]
        for round in 0..<3 {
            for i in 0..<30 {
                try h.route(DST.invite(callID: "sticky-\(i)"))
                let got = TMT.v(h, "out")
                if round == 0 { first["\(i)"] = got } else { #expect(first["\(i)"] == got) }
            }
        }
        #expect(Set(first.values).count == 3, "30 Call-IDs use all three destinations")
        // the slot is Kamailio's: hash % 3 over the reversed list
        let uris = ["sip:10.0.0.3:5060", "sip:10.0.0.2:5060", "sip:10.0.0.1:5060"]
        #expect(first["0"] == uris[Int(DS.hash(Array("sticky-0".utf8)) % 3)])
    }

    @Test func hashOnFromAndRURIAndPV() throws {
        for (alg, extra) in [(1, ""), (2, ""), (3, ""), (7, "")] {
            let h = try Self.harness(alg: alg, ["hash_pvar": "$fU-x"])
            let a = try DST.distribution(h, 10) { _ in "varying-\(Int.random(in: 0...1_000_000))" }
            #expect(a.count == 1, "alg \(alg)\(extra): same From/To/R-URI → same destination whatever the Call-ID: \(a)")
        }
    }

    @Test func authUserHashFallsBackToRoundRobin() throws {
        let h = try Self.harness(alg: 5)
        let counts = try DST.distribution(h, 30)
        #expect(counts.values.allSatisfy { $0 == 10 })
    }

    @Test func randomUsesEveryDestination() throws {
        let h = try Self.harness(alg: 6)
        let counts = try DST.distribution(h, 150)
        #expect(counts.count == 3 && counts.values.allSatisfy { $0 > 15 })
    }

    @Test func serialSkipsInactiveAndUnknownAlgorithmsUseTheFirst() throws {
        let h = try Self.harness(alg: 8)
        try h.route(DST.invite())
        #expect(TMT.v(h, "out") == "sip:10.0.0.3:5060")
        h.context.worker.vars["alg"] = .int(64)
        try h.route(DST.invite())
        #expect(TMT.v(h, "out") == "sip:10.0.0.3:5060" && TMT.v(h, "rc") == "1")
        let rpc = try #require(KSRModules.rpcMethods.first { $0.method.name == "dispatcher.set_state" }?.method)
        _ = try rpc.handler(h.runtime, RPCParameters([.string("i"), .int(1), .string("sip:10.0.0.3:5060")]))
        h.context.worker.vars["alg"] = .int(8)
        try h.route(DST.invite())
        #expect(TMT.v(h, "out") == "sip:10.0.0.2:5060")
    }

    @Test func unknownSetAndAllInactiveAreMinusOne() throws {
        let h = try Self.harness(alg: 4)
        h.context.worker.vars["set"] = .int(9)
        try h.route(DST.invite())
        #expect(TMT.v(h, "rc") == "-1" && TMT.v(h, "out") == "nil")
        let rpc = try #require(KSRModules.rpcMethods.first { $0.method.name == "dispatcher.set_state" }?.method)
        _ = try rpc.handler(h.runtime, RPCParameters([.string("i"), .int(1), .string("all")]))
        h.context.worker.vars["set"] = .int(1)
        try h.route(DST.invite())
        #expect(TMT.v(h, "rc") == "-1")
    }

    @Test func forceDstZeroRefusesASetDU() throws {
        let (h, _) = try DST.harness("""
            function ksr_request_route()
              KSR.setdsturi("sip:192.0.2.99")
              KSR.pv.seti("$var(rc)", KSR.dispatcher.ds_select_dst(1, 4))
              KSR.pv.sets("$var(out)", KSR.pv.get("$du"))
            end
            """, ["force_dst": "0"])
        try h.route(DST.invite())
        #expect(TMT.v(h, "rc") == "-1" && TMT.v(h, "out") == "sip:192.0.2.99")
    }

    @Test func callLoadRespectsMaxloadAndReleasesOnBye() throws {
        let (h, _) = try DST.harness("""
            function ksr_request_route()
              if KSR.is_INVITE() then
                KSR.pv.seti("$var(rc)", KSR.dispatcher.ds_select_dst(1, 10))
                KSR.pv.sets("$var(out)", tostring(KSR.pv.get("$du")))
              else
                KSR.pv.seti("$var(rc)", KSR.dispatcher.ds_load_update())
              end
            end
            """, list: """
            1 sip:10.0.0.1 0 0 duid=a;maxload=2
            1 sip:10.0.0.2 0 0 duid=b;maxload=1
            """, ["ds_hash_size": "4", "flags": "2"])
        var got: [String] = []
        for i in 0..<3 {
            try h.route(DST.invite(callID: "load-\(i)"))
            #expect(TMT.v(h, "rc") == "1")
            got.append(TMT.v(h, "out"))
        }
        #expect(got.sorted() == ["sip:10.0.0.1", "sip:10.0.0.1", "sip:10.0.0.2"])
        try h.route(DST.invite(callID: "load-3"))
        #expect(TMT.v(h, "rc") == "-1", "every destination at its maxload")
        try h.route(DST.request("BYE", callID: "load-0"))
        #expect(TMT.v(h, "rc") == "0", "KEMI ds_load_update returns Kamailio's 0")
        try h.route(DST.invite(callID: "load-4"))
        #expect(TMT.v(h, "rc") == "1")
        #expect(DispatcherModule.store(h.runtime).activeCalls == 3)
    }

    @Test func selectDomainRewritesTheRURIHost() throws {
        let (h, _) = try DST.harness("""
            function ksr_request_route()
              KSR.pv.seti("$var(rc)", KSR.dispatcher.ds_select_domain(1, 8))
              KSR.pv.sets("$var(out)", KSR.pv.get("$ru"))
            end
            """)
        try h.route(DST.invite(ruri: "sip:bob@example.com;user=phone"))
        #expect(TMT.v(h, "out") == "sip:bob@10.0.0.3:5060")
    }

    @Test func parallelAddsBranchesForTheOthers() throws {
        let (h, _) = try DST.harness("""
            function ksr_request_route()
              KSR.pv.seti("$var(rc)", KSR.dispatcher.ds_select_dst(1, 12))
              KSR.pv.sets("$var(out)", KSR.pv.get("$du"))
              KSR.pv.seti("$var(br)", KSR.tm.t_relay())
            end
            """)
        try h.route(DST.invite())
        #expect(TMT.v(h, "rc") == "1")
        let sent = Set(TMT.sent(h, "INVITE").map { $0.destination.description })
        #expect(sent.count == 3)
    }
}

@Suite struct DispatcherFailoverTests {
    static let script = """
        function ksr_request_route()
          if KSR.is_ACK() then
            if KSR.tm.t_check_trans() > 0 then KSR.tm.t_relay() end
            return
          end
          if KSR.tm.t_check_trans() == 0 then return end
          KSR.pv.seti("$var(rc)", KSR.dispatcher.ds_select_dst(1, 4))
          save("cnt", "$xavp(_dsctx_=>cnt)")
          save("x0", "$xavp(_dsdst_[0]=>uri)")
          save("x2", "$xavp(_dsdst_[2]=>uri)")
          save("grp", "$xavp(_dsdst_[1]=>grp)")
          KSR.tm.t_on_failure("ds_failure")
          KSR.tm.t_relay()
        end
        function ds_failure()
          if KSR.tm.t_is_canceled() > 0 then return end
          if KSR.tm.t_check_status("5[0-9][0-9]") > 0 or (KSR.tm.t_branch_timeout() > 0 and KSR.tm.t_branch_replied() < 0) then
            KSR.pv.seti("$var(mark)", KSR.dispatcher.ds_mark_dst_state("ip"))
            local n = KSR.dispatcher.ds_next_dst()
            KSR.pv.seti("$var(next)", n)
            if n > 0 then
              KSR.tm.t_on_failure("ds_failure")
              KSR.tm.t_relay()
            end
          end
        end
        function ds_event(evname)
          KSR.pv.sets("$var(ev)", evname .. " " .. KSR.pv.get("$ru") .. " " .. tostring(KSR.pv.get("$dsv(code)")))
          KSR.pv.seti("$var(evn)", (KSR.pv.get("$var(evn)") or 0) + 1)
        end
        """

    @Test func failureRouteWalksTheXavpAndMarksTheDeadOne() throws {
        let (h, _) = try DST.harness(Self.script, ["flags": "2", "event_callback": "ds_event", "ds_event_on_load": "0"])
        try h.route(DST.invite(callID: "fo-1"))
        #expect(TMT.v(h, "rc") == "1")
        #expect(TMT.v(h, "cnt") == "3")
        #expect(TMT.v(h, "x0") == "sip:10.0.0.3:5060" && TMT.v(h, "x2") == "sip:10.0.0.1:5060")
        #expect(TMT.v(h, "grp") == "1")
        let first = try #require(TMT.sent(h, "INVITE").last)
        #expect(first.destination == TMT.address("10.0.0.3"))
        h.sender.clear()
        try h.route(TMT.reply(to: first, 503, "Service Unavailable"), from: TMT.address("10.0.0.3"))
        #expect(TMT.v(h, "mark") == "1" && TMT.v(h, "next") == "1")
        #expect(TMT.v(h, "ev").hasPrefix("dispatcher:dst-down"), "\(TMT.v(h, "ev"))")
        let second = try #require(TMT.sent(h, "INVITE").last)
        #expect(second.destination == TMT.address("10.0.0.2"))
        // the dead one is skipped by the next call
        try h.route(DST.invite(callID: "fo-2"))
        let third = try #require(TMT.sent(h, "INVITE").last)
        #expect(third.destination != TMT.address("10.0.0.3"))
        #expect(DispatcherModule.store(h.runtime).flags(group: 1, uri: "sip:10.0.0.3:5060") == DS.inactive | DS.probing)
    }

    @Test func nextDstIsMinusOneWhenTheListIsUsedUp() throws {
        let (h, _) = try DST.harness("""
            function ksr_request_route()
              KSR.dispatcher.ds_select_dst(1, 4)
              local out = KSR.pv.get("$du")
              for i = 1, 4 do
                out = out .. " " .. KSR.dispatcher.ds_next_dst() .. ":" .. tostring(KSR.pv.get("$du"))
              end
              KSR.pv.sets("$var(out)", out)
              KSR.pv.seti("$var(set)", KSR.dispatcher.ds_set_dst())
            end
            """, ["flags": "2"])
        try h.route(DST.invite())
        #expect(TMT.v(h, "out") == "sip:10.0.0.3:5060 1:sip:10.0.0.2:5060 1:sip:10.0.0.1:5060 -1:sip:10.0.0.1:5060 -1:sip:10.0.0.1:5060")
        #expect(TMT.v(h, "set") == "-1")
    }

    @Test func withoutFailoverFlagNothingIsKept() throws {
        let (h, _) = try DST.harness("""
            function ksr_request_route()
              KSR.dispatcher.ds_select_dst(1, 4)
              KSR.pv.seti("$var(next)", KSR.dispatcher.ds_next_dst())
              KSR.pv.seti("$var(mark)", KSR.dispatcher.ds_mark_dst())
              save("cnt", "$xavp(_dsctx_=>cnt)")
            end
            """)
        try h.route(DST.invite())
        #expect(TMT.v(h, "next") == "-1" && TMT.v(h, "mark") == "-1" && TMT.v(h, "cnt") == "0")
    }

    @Test func selectLimitAndRoutes() throws {
        let (h, _) = try DST.harness("""
            function ksr_request_route()
              KSR.pv.seti("$var(rc)", KSR.dispatcher.ds_select_routes_limit("1=8;2=4", "d", 3))
              save("cnt", "$xavp(_dsctx_=>cnt)")
              save("du", "$du")
              save("x2", "$xavp(_dsdst_[2]=>uri)")
              save("x3", "$xavp(_dsdst_[3]=>uri)")
              KSR.pv.seti("$var(bad)", KSR.dispatcher.ds_select_routes("1=x", "d"))
              KSR.pv.seti("$var(badmode)", KSR.dispatcher.ds_select_routes("1=4", "q"))
            end
            """, list: DST.list3 + "\n2 sip:10.0.1.1\n", ["flags": "2"])
        try h.route(DST.invite())
        // Kamailio adds the chosen record of each rule even past the limit: 3 from set 1, then set 2's
        #expect(TMT.v(h, "rc") == "1" && TMT.v(h, "cnt") == "4" && TMT.v(h, "du") == "sip:10.0.0.3:5060")
        #expect(TMT.v(h, "x2") == "sip:10.0.0.1:5060" && TMT.v(h, "x3") == "sip:10.0.1.1")
        #expect(TMT.v(h, "bad") == "-1" && TMT.v(h, "badmode") == "-1")
    }

    @Test func membershipAndActivity() throws {
        let (h, _) = try DST.harness("""
            function ksr_request_route()
              KSR.pv.seti("$var(any)", KSR.dispatcher.ds_is_from_lists())
              KSR.pv.seti("$var(one)", KSR.dispatcher.ds_is_from_list(2))
              KSR.pv.seti("$var(other)", KSR.dispatcher.ds_is_from_list(1))
              KSR.pv.seti("$var(proto)", KSR.dispatcher.ds_is_from_list_mode(2, 0))
              KSR.pv.seti("$var(uri)", KSR.dispatcher.ds_is_from_list_uri(1, 3, "sip:10.0.0.2:5060"))
              KSR.pv.seti("$var(ex)", KSR.dispatcher.ds_list_exists(1) + KSR.dispatcher.ds_list_exists(7))
              KSR.pv.seti("$var(act)", KSR.dispatcher.ds_is_active(2))
              KSR.pv.seti("$var(actu)", KSR.dispatcher.ds_is_active_uri(1, "sip:10.0.0.9"))
              save("sid", "$avp(dsset)")
              save("attrs", "$avp(dsattrs)")
            end
            """, list: DST.list3 + "\n2 sip:192.0.2.10 0 0 duid=me\n",
            ["setid_pvname": "$avp(dsset)", "attrs_pvname": "$avp(dsattrs)"])
        try h.route(DST.invite())
        #expect(TMT.v(h, "any") == "1" && TMT.v(h, "one") == "1" && TMT.v(h, "other") == "-1")
        #expect(TMT.v(h, "proto") == "-1", "no transport in the list URI: Kamailio's PROTO_NONE never equals UDP")
        #expect(TMT.v(h, "uri") == "1" && TMT.v(h, "ex") == "0" && TMT.v(h, "act") == "1" && TMT.v(h, "actu") == "-1")
        #expect(TMT.v(h, "sid") == "2" && TMT.v(h, "attrs") == "duid=me")
    }
}

@Suite struct DispatcherProbeTests {
    static let script = """
        function ksr_request_route() end
        events = ""
        function ds_event(evname)
          events = events .. evname .. "@" .. KSR.pv.get("$ru") .. "#" .. tostring(KSR.pv.get("$dsv(code)")) .. "/"
            .. tostring(KSR.pv.get("$dsv(flags)")) .. "/" .. tostring(KSR.pv.get("$dsv(reason)")) .. ";"
          KSR.pv.sets("$var(ev)", events)
        end
        function reset_events() events = "" end
        """

    /// Runs the timers for `d` in 100 ms steps; every probe sent to an address in `answer` gets that reply.
    static func run(_ h: ScriptHarness, for d: Duration, answer: [SocketAddress: (Int, String)]) throws {
        var t = Duration.zero
        while t < d {
            h.sender.clear()
            h.advance(by: .milliseconds(100))
            for p in TMT.sent(h, "OPTIONS") {
                if let (code, reason) = answer[p.destination] { try h.route(TMT.reply(to: p, code, reason), from: p.destination) }
            }
            t += .milliseconds(100)
        }
    }

    @Test func probesMarkASilentDestinationInactiveAndBringItBack() throws {
        let (h, _) = try DST.harness(Self.script, list: "1 sip:10.0.0.1:5060 8\n1 sip:10.0.0.2:5060 8\n",
                                     ["ds_ping_interval": "1", "ds_probing_mode": "1", "ds_probing_threshold": "2", "event_callback": "ds_event",
                                      "ds_event_on_load": "0", "ds_ping_reply_codes": "code=404"],
                                     tm: ["fr_timer": "2000"])
        TMT.run(h, for: .milliseconds(100))
        let probes = TMT.sent(h, "OPTIONS")
        #expect(Set(probes.map(\.destination)) == [TMT.address("10.0.0.1"), TMT.address("10.0.0.2")])
        #expect(probes.allSatisfy { TMT.header($0, "From")?.hasPrefix("<sip:dispatcher@localhost>") == true })
        #expect(probes.allSatisfy { TMT.header($0, "To") == "<sip:10.0.0.\($0.destination == TMT.address("10.0.0.1") ? 1 : 2):5060>" })
        for p in probes where p.destination == TMT.address("10.0.0.1") {
            try h.route(TMT.reply(to: p, 404, "Not Found"), from: p.destination)
        }
        // 10.0.0.1 answers 404 (accepted by ds_ping_reply_codes), 10.0.0.2 stays silent: two timeouts
        // (fr_timer 2 s) reach ds_probing_threshold: inactive, one dst-down event
        try Self.run(h, for: .seconds(6), answer: [TMT.address("10.0.0.1"): (404, "Not Found")])
        let store = DispatcherModule.store(h.runtime)
        #expect(store.flags(group: 1, uri: "sip:10.0.0.2:5060") & DS.inactive != 0)
        #expect(store.flags(group: 1, uri: "sip:10.0.0.1:5060") & DS.inactive == 0)
        #expect(TMT.v(h, "ev") == "dispatcher:dst-down@sip:10.0.0.2:5060#408/0/nil;")
        // it answers again: active (ds_inactive_threshold 1), dst-up with the reply's code
        try Self.run(h, for: .seconds(2), answer: [TMT.address("10.0.0.1"): (404, "Not Found"), TMT.address("10.0.0.2"): (200, "OK")])
        #expect(store.flags(group: 1, uri: "sip:10.0.0.2:5060") & DS.inactive == 0)
        #expect(TMT.v(h, "ev").hasPrefix("dispatcher:dst-down@sip:10.0.0.2:5060#408/0/nil;dispatcher:dst-up@sip:10.0.0.2:5060#200/1/OK;"),
                "\(TMT.v(h, "ev"))")
        #expect(store.probesSent.load(ordering: .relaxed) >= 8)
        #expect(store.probesFailed.load(ordering: .relaxed) >= 2)
    }

    @Test func pingTimeoutIsItsOwnAndEventsAnnounceTheStartState() throws {
        let (h, _) = try DST.harness(Self.script, list: "1 sip:10.0.0.1:5060 8\n1 sip:10.0.0.2:5060 5\n",
                                     ["ds_ping_interval": "10", "ds_ping_timeout": "1000", "event_callback": "ds_event"],
                                     tm: ["fr_timer": "30000"])
        TMT.run(h, for: .seconds(1))
        // start: one event per destination, by its state (flags 5 = inactive+disabled)
        #expect(TMT.v(h, "ev").contains("dispatcher:dst-up@sip:10.0.0.1:5060#0/0/load;"))
        #expect(TMT.v(h, "ev").contains("dispatcher:dst-down@sip:10.0.0.2:5060#0/0/load;"))
        h.call("reset_events")
        TMT.run(h, for: .seconds(3))
        // the probe timed out after ds_ping_timeout, well before tm's 30 s fr_timer
        #expect(TMT.v(h, "ev") == "dispatcher:dst-down@sip:10.0.0.1:5060#408/0/nil;")
        // per-destination metrics
        let fams = DispatcherMetrics.families(h.runtime)
        let up = try #require(fams.first { $0.name == "starling_dispatcher_destination_up" })
        #expect(up.samples.map { "\($0.labels) \($0.value)" }.sorted()
                == ["{set=\"1\",uri=\"sip:10.0.0.1:5060\"} 0", "{set=\"1\",uri=\"sip:10.0.0.2:5060\"} 0"])
        let sent = try #require(fams.first { $0.name == "starling_dispatcher_destination_probes_sent_total" })
        #expect(sent.samples.first { $0.labels.contains("10.0.0.1") }?.value == "1")
    }

    @Test func latencyStatsFeedAlgorithm13() throws {
        let (h, _) = try DST.harness("""
            function ksr_request_route()
              KSR.pv.seti("$var(rc)", KSR.dispatcher.ds_select_dst(1, 13))
              KSR.pv.sets("$var(out)", tostring(KSR.pv.get("$du")))
              KSR.pv.unset("$du")
            end
            """, list: "1 sip:10.0.0.1:5060 8 200\n1 sip:10.0.0.2:5060 8 200\n",
            ["ds_ping_interval": "2", "ds_ping_latency_stats": "1", "flags": "2"])
        // 10.0.0.1 answers each probe at once, 10.0.0.2 after 1.5 s
        var t = Duration.zero
        var late: [(SentMessage, Duration)] = []
        while t < .seconds(12) {
            h.sender.clear()
            h.advance(by: .milliseconds(100))
            t += .milliseconds(100)
            for p in TMT.sent(h, "OPTIONS") where !(TMT.header(p, "Via") ?? "").isEmpty {
                if p.destination == TMT.address("10.0.0.1") { try h.route(TMT.reply(to: p, 200, "OK"), from: p.destination) }
                else if !late.contains(where: { $0.0.text == p.text }) { late.append((p, t + .milliseconds(1500))) }
            }
            for (p, due) in late where due <= t { try h.route(TMT.reply(to: p, 200, "OK"), from: p.destination) }
            late.removeAll { $0.1 <= t }
        }
        let list = try #require(KSRModules.rpcMethods.first { $0.method.name == "dispatcher.list" }?.method)
        guard case .object(let root) = try list.handler(h.runtime, RPCParameters([])), case .array(let recs)? = root["RECORDS"],
              case .object(let rec)? = recs.first, case .object(let set)? = rec["SET"], case .array(let targets)? = set["TARGETS"]
        else { Issue.record("dispatcher.list shape"); return }
        var avg: [String: Double] = [:]
        for case .object(let t) in targets {
            guard case .object(let d)? = t["DEST"], case .string(let uri)? = d["URI"], case .object(let lat)? = d["LATENCY"],
                  case .double(let a)? = lat["AVG"] else { continue }
            avg[uri] = a
        }
        #expect((avg["sip:10.0.0.1:5060"] ?? 9999) < 300 && (avg["sip:10.0.0.2:5060"] ?? 0) > 1000, "\(avg)")
        // the slow one's priority drops (200 - 1500/200): the fast one wins every time
        let counts = try DST.distribution(h, 6)
        #expect(counts == ["sip:10.0.0.1:5060": 6], "\(counts)")
    }

    @Test func reloadAnnouncesEveryDestination() throws {
        let (h, path) = try DST.harness(Self.script + "\n" + """
            function ksr_request_route() KSR.pv.seti("$var(rc)", KSR.dispatcher.ds_reload()) end
            """, ["reload_delta": "0", "event_callback": "ds_event"])
        TMT.run(h, for: .milliseconds(200))
        h.call("reset_events")
        try "1 sip:10.0.0.1:5060\n1 sip:10.0.0.9:5060 1\n".write(toFile: path, atomically: true, encoding: .utf8)
        try h.route(DST.invite())
        #expect(TMT.v(h, "rc") == "1")
        #expect(TMT.v(h, "ev") == "dispatcher:dst-down@sip:10.0.0.9:5060#0/0/load;dispatcher:dst-up@sip:10.0.0.1:5060#0/0/load;")
    }

    @Test func reloadKeepsStatesAndRefusesABrokenFile() throws {
        let (h, path) = try DST.harness("""
            function ksr_request_route()
              KSR.pv.seti("$var(rc)", KSR.dispatcher.ds_reload())
            end
            """, ["reload_delta": "0"])
        let store = DispatcherModule.store(h.runtime)
        let rpc = try #require(KSRModules.rpcMethods.first { $0.method.name == "dispatcher.set_state" }?.method)
        _ = try rpc.handler(h.runtime, RPCParameters([.string("ip"), .int(1), .string("sip:10.0.0.2:5060")]))
        try (DST.list3 + "\n1 sip:10.0.0.4:5060 0 0 weight=\n").write(toFile: path, atomically: true, encoding: .utf8)
        try h.route(DST.invite())
        #expect(TMT.v(h, "rc") == "-1")
        #expect(store.snapshot().first?.dests.count == 3)
        try (DST.list3 + "\n1 sip:10.0.0.4:5060\n").write(toFile: path, atomically: true, encoding: .utf8)
        let reload = try #require(KSRModules.rpcMethods.first { $0.method.name == "dispatcher.reload" }?.method)
        #expect(try reload.handler(h.runtime, RPCParameters([])) == .string("Ok. Dispatcher successfully reloaded."))
        #expect(store.snapshot().first?.dests.count == 4)
        #expect(store.flags(group: 1, uri: "sip:10.0.0.2:5060") == DS.inactive | DS.probing, "unchanged destination keeps its state")
        try "1 sip:10.0.0.1 0 0 bogus=\"".write(toFile: path, atomically: true, encoding: .utf8)
        try "1 sip:bad host\n".write(toFile: path, atomically: true, encoding: .utf8)
        #expect(throws: RPCFault.self) { try reload.handler(h.runtime, RPCParameters([])) }
        #expect(store.snapshot().first?.dests.count == 4)
    }
}

@Suite struct DispatcherRPCTests {
    func method(_ name: String) throws -> ModuleRPCMethod {
        try #require(KSRModules.rpcMethods.first { $0.method.name == name }?.method)
    }

    @Test func listAddRemoveHashPingActive() throws {
        let (h, _) = try DST.harness("function ksr_request_route() end",
                                     list: "1 sip:10.0.0.1:5060 0 0 duid=a;weight=50\n", ["ds_hash_size": "2", "reload_delta": "0"])
        let list = try method("dispatcher.list").handler(h.runtime, RPCParameters([]))
        #expect(list == .object(["NRSETS": .int(1), "RECORDS": .array([.object(["SET": .object(["ID": .int(1), "TARGETS": .array([
            .object(["DEST": .object(["URI": .string("sip:10.0.0.1:5060"), "FLAGS": .string("AX"), "PRIORITY": .int(0),
                                      "ATTRS": .object(["BODY": .string("duid=a;weight=50"), "DUID": .string("a"), "MAXLOAD": .int(0),
                                                        "WEIGHT": .int(50), "RWEIGHT": .int(0), "SOCKET": .string(""),
                                                        "SOCKNAME": .string(""), "OBPROXY": .string("")]),
                                      "RUNTIME": .object(["DLGLOAD": .int(0)])])]),
        ])])])])]))
        #expect(try method("dispatcher.add").handler(h.runtime, RPCParameters([.int(2), .string("sip:10.0.0.9"), .int(8)]))
                == .string("Ok. Dispatcher destination added."))
        #expect(DispatcherModule.store(h.runtime).snapshot().map(\.id) == [1, 2])
        #expect(try method("dispatcher.remove").handler(h.runtime, RPCParameters([.int(2), .string("sip:10.0.0.9")]))
                == .string("Ok. Dispatcher destination removed."))
        #expect(DispatcherModule.store(h.runtime).snapshot().map(\.id) == [1])
        let hash = try method("dispatcher.hash").handler(h.runtime, RPCParameters([.int(3), .string("abc")]))
        let hv = Int(DS.hash(Array("abc".utf8)))
        #expect(hash == .object(["hashid": .int(hv), "slot": .int(hv % 3)]))
        #expect(try method("dispatcher.ping_active").handler(h.runtime, RPCParameters([])) == .object(["OldPingState": .int(1)]))
        #expect(try method("dispatcher.ping_active").handler(h.runtime, RPCParameters([.int(0)]))
                == .object(["NewPingState": .int(0), "OldPingState": .int(1)]))
        #expect(throws: RPCFault(500, "Unknown State Value")) {
            try method("dispatcher.set_state").handler(h.runtime, RPCParameters([.string("x"), .int(1), .string("all")]))
        }
        #expect(throws: RPCFault(500, "State Update Failed")) {
            try method("dispatcher.set_duid_state").handler(h.runtime, RPCParameters([.string("i"), .int(1), .string("zz")]))
        }
        _ = try method("dispatcher.set_duid_state").handler(h.runtime, RPCParameters([.string("d"), .int(1), .string("a")]))
        #expect(DispatcherModule.store(h.runtime).flags(group: 1, uri: "sip:10.0.0.1:5060") == DS.disabled)
    }

    @Test func aBrokenListRefusesTheStartNamingTheKey() {
        #expect(throws: LuaScriptError.self) {
            _ = try DST.harness("function ksr_request_route() end", list: "1 sip:10.0.0.1\n1 sip:bad host\n")
        }
        do {
            _ = try DST.harness("function ksr_request_route() end", list: "1 sip:10.0.0.1\n1 sip:bad host\n")
        } catch let error as LuaScriptError {
            #expect(error.message.contains("modparam.dispatcher.list_file") && error.message.contains("dispatcher.list:2"), "\(error.message)")
        } catch {
            Issue.record("\(error)")
        }
    }
}

/// Algorithm 10 with the dialog module loaded (issue 17: the call load counts through the dialogs):
/// a call's load is released when its dialog fails or ends, without ds_load_update/unset in the
/// script. Without dialog, Kamailio 5.6's behaviour: the load stays until ds_load_* or the expiry.
@Suite struct DispatcherDialogLoadTests {
    static let script = """
        function ksr_request_route()
          if KSR.siputils.has_totag() > 0 then
            if KSR.rr.loose_route() > 0 then KSR.tm.t_relay() end
            return
          end
          if KSR.is_INVITE() then
            if KSR.dialog then KSR.dialog.dlg_manage() end
            KSR.pv.seti("$var(rc)", KSR.dispatcher.ds_select_dst(1, 10))
            if KSR.pv.get("$var(rc)") < 0 then
              KSR.sl.send_reply(503, "Full")
              return
            end
            KSR.rr.record_route()
            KSR.tm.t_relay()
          end
        end
        """
    static let pbx = SocketAddress(ip: "10.0.0.1", port: 5060)!
    static let caller = SocketAddress(ip: "192.0.2.10", port: 5060)!

    static func harness(dialog: Bool) throws -> ScriptHarness {
        let path = DST.file("1 sip:10.0.0.1 0 0 duid=a;maxload=1\n")
        var modules = ["tm", "rr", "sl", "siputils", "dispatcher"]
        if dialog { modules.append("dialog") }
        return try ScriptHarness(script: script, modules: modules,
                                 config: ModuleConfiguration(params: ["dispatcher": ["list_file": [path], "ds_hash_size": ["4"],
                                                                                      "flags": ["2"]]]))
    }

    /// INVITE `cid`; the relayed INVITE (nil when the script refused it).
    static func invite(_ h: ScriptHarness, _ cid: String) throws -> SentMessage? {
        h.sender.clear()
        try h.route(DST.invite(callID: cid), from: caller)
        return TMT.sent(h, "INVITE").last
    }

    static func inDialog(_ method: String, _ cid: String, route: String, cseq: Int) -> String {
        "\(method) sip:bob@10.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK\(method)\(cid)\r\n"
            + "Max-Forwards: 70\r\nRoute: \(route)\r\nTo: <sip:bob@example.com>;tag=callee\r\n"
            + "From: <sip:alice@atlanta.example.com>;tag=1\r\nCall-ID: \(cid)\r\nCSeq: \(cseq) \(method)\r\nContent-Length: 0\r\n\r\n"
    }

    @Test func dialogEndAndFailureReleaseTheLoad() throws {
        let h = try Self.harness(dialog: true)
        let ds = DispatcherModule.store(h.runtime)
        // maxload=1: the second call finds the only destination full.
        let a = try #require(try Self.invite(h, "dl-a"))
        #expect(TMT.v(h, "rc") == "1")
        #expect(try Self.invite(h, "dl-b") == nil && TMT.v(h, "rc") == "-1")
        // The first call fails (486 upstream): its dialog fails, the load is released.
        try h.route(TMT.reply(to: a, 486, "Busy Here"), from: Self.pbx)
        #expect(ds.activeCalls == 0)
        // An answered call: counted while the dialog lives, released by its BYE (no ds_load_update).
        let c = try #require(try Self.invite(h, "dl-c"))
        #expect(TMT.v(h, "rc") == "1")
        try h.route(TMT.reply(to: c, 200, "OK", extra: "Contact: <sip:bob@10.0.0.1:5060>\r\n"), from: Self.pbx)
        let rr = try #require(TMT.header(c, "Record-Route"))
        try h.route(Self.inDialog("ACK", "dl-c", route: rr, cseq: 1), from: Self.caller)
        #expect(ds.activeCalls == 1)
        #expect(try Self.invite(h, "dl-d") == nil && TMT.v(h, "rc") == "-1", "the answered call holds the load")
        try h.route(Self.inDialog("BYE", "dl-c", route: rr, cseq: 2), from: Self.caller)
        #expect(ds.activeCalls == 0)
        #expect(try Self.invite(h, "dl-e") != nil && TMT.v(h, "rc") == "1")
    }

    @Test func withoutDialogTheLoadStaysAsInKamailio() throws {
        let h = try Self.harness(dialog: false)
        #expect(!h.runtime.isLoaded("dialog"))
        let a = try #require(try Self.invite(h, "nd-a"))
        try h.route(TMT.reply(to: a, 486, "Busy Here"), from: Self.pbx)
        #expect(DispatcherModule.store(h.runtime).activeCalls == 1, "released only by ds_load_* or ds_hash_initexpire")
        #expect(try Self.invite(h, "nd-b") == nil && TMT.v(h, "rc") == "-1")
    }
}

/// Destinations from the `dispatcher` table of the embedded SQLite database (db_url).
@Suite struct DispatcherTableTests {
    /// Kamailio 5.6's kamailio-sqlite schema of the dispatcher table (version 4).
    static let schema = """
        CREATE TABLE IF NOT EXISTS dispatcher (
            id INTEGER PRIMARY KEY NOT NULL, setid INTEGER DEFAULT 0 NOT NULL,
            destination VARCHAR(192) DEFAULT '' NOT NULL, flags INTEGER DEFAULT 0 NOT NULL,
            priority INTEGER DEFAULT 0 NOT NULL, attrs VARCHAR(128) DEFAULT '' NOT NULL,
            description VARCHAR(64) DEFAULT '' NOT NULL);
        INSERT OR REPLACE INTO version (table_name, table_version) VALUES ('dispatcher', 4);
        """

    static func database(_ sql: String) throws -> (StarlingDatabase, String) {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("dsdb-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let path = dir.appendingPathComponent("starling.db").path
        let db = try StarlingDatabase(path: path)
        try db.execute(sql)
        return (db, path)
    }

    static let script = """
        function ksr_request_route()
          if KSR.is_method("PUBLISH") then
            KSR.pv.seti("$var(rc)", KSR.dispatcher.ds_reload())
            return
          end
          KSR.pv.seti("$var(rc)", KSR.dispatcher.ds_select_dst(1, 8))
          KSR.pv.sets("$var(out)", tostring(KSR.pv.get("$du")))
        end
        """

    static func uris(_ h: ScriptHarness, _ set: Int) -> [String] {
        DispatcherModule.store(h.runtime).snapshot().first { $0.id == set }?.dests.map(\.uri) ?? []
    }

    @Test func tableIsReadInKamailioOrderAndReloaded() throws {
        let (db, path) = try Self.database(Self.schema + """
            INSERT INTO dispatcher (id, setid, destination, flags, priority, attrs) VALUES
              (1, 1, 'sip:10.0.0.1:5060', 0, 0, 'duid=a'),
              (2, 1, 'sip:10.0.0.2:5060', 0, 5, 'duid=b;weight=50'),
              (3, 1, 'sip:10.0.0.3:5060', 0, 0, ''),
              (4, 2, '10.0.0.4', 0, 0, '');
            """)
        // db_url wins over list_file (Kamailio's mod_init: the list file is not read).
        let list = DST.file("9 sip:192.0.2.99\n")
        let h = try ScriptHarness(script: Self.script, config: ModuleConfiguration(params: ["dispatcher": [
            "db_url": ["sqlite://\(path)"], "list_file": [list], "reload_delta": ["0"]]]))
        // Highest priority first, equal priorities later rows first (add_dest2list + reindex_dests, as the file).
        #expect(Self.uris(h, 1) == ["sip:10.0.0.2:5060", "sip:10.0.0.3:5060", "sip:10.0.0.1:5060"])
        #expect(Self.uris(h, 2) == ["sip:10.0.0.4"], "a destination without scheme gets sip:")
        #expect(Self.uris(h, 9).isEmpty)
        let b = try #require(DispatcherModule.store(h.runtime).snapshot().first { $0.id == 1 }?.dests.first)
        #expect(b.attrs.duid == "b" && b.attrs.weight == 50 && b.priority == 5)
        try h.route(DST.invite())
        #expect(TMT.v(h, "rc") == "1" && TMT.v(h, "out") == "sip:10.0.0.2:5060")

        // A new row is there after ds_reload; a broken row refuses the reload naming table and row id.
        try db.execute("INSERT INTO dispatcher (id, setid, destination, priority) VALUES (5, 1, 'sip:10.0.0.5:5060', 9)")
        try h.route(DST.request("PUBLISH", callID: "r1"))
        #expect(TMT.v(h, "rc") == "1")
        #expect(Self.uris(h, 1).first == "sip:10.0.0.5:5060" && Self.uris(h, 1).count == 4)
        try db.execute("INSERT INTO dispatcher (id, setid, destination, attrs) VALUES (7, 1, 'sip:10.0.0.7:5060', 'weight=500')")
        try h.route(DST.request("PUBLISH", callID: "r2"))
        #expect(TMT.v(h, "rc") == "-1")
        #expect(Self.uris(h, 1).count == 4, "the running sets stay")
        let ds = DispatcherModule.store(h.runtime)
        guard case .failure(.failed(let why)) = ds.reload(now: ds.clock.unixSeconds) else {
            Issue.record("the broken table was accepted")
            return
        }
        #expect(why.contains("table dispatcher row id 7") && why.contains("weight"))
        // The RPC refuses it too, Kamailio's fault.
        let rpc = try #require(DispatcherModule.rpcMethods.first { $0.name == "dispatcher.reload" })
        #expect(throws: RPCFault.self) { try rpc.handler(h.runtime, RPCParameters([])) }
        try db.execute("DELETE FROM dispatcher WHERE id = 7; UPDATE dispatcher SET setid = 3 WHERE id = 5")
        try h.route(DST.request("PUBLISH", callID: "r3"))
        #expect(TMT.v(h, "rc") == "1")
        #expect(Self.uris(h, 1).count == 3 && Self.uris(h, 3) == ["sip:10.0.0.5:5060"])
    }

    @Test(arguments: [
        ("INSERT INTO dispatcher (id, setid, destination) VALUES (4, 'one', 'sip:10.0.0.1')", "row id 4: set id \"one\""),
        ("INSERT INTO dispatcher (id, setid, destination) VALUES (5, 1, '')", "row id 5: no destination"),
        ("INSERT INTO dispatcher (id, setid, destination) VALUES (6, 1, 'sip:10.0.0.1;transport=xyz')", "row id 6: unknown transport"),
        ("INSERT INTO dispatcher (id, setid, destination, priority) VALUES (8, 1, 'sip:10.0.0.1', 'high')", "row id 8: priority"),
    ])
    func aBrokenRowRefusesTheStartNamingTheRow(_ row: String, _ expected: String) throws {
        let (_, path) = try Self.database(Self.schema + row)
        do {
            _ = try ScriptHarness(script: Self.script, config: ModuleConfiguration(params: ["dispatcher": ["db_url": ["sqlite://\(path)"]]]))
            Issue.record("the start was not refused")
        } catch {
            #expect("\(error)".contains("modparam.dispatcher.db_url"))
            #expect("\(error)".contains("table dispatcher " + expected), "\(error)")
        }
    }

    @Test func columnNamesAreModparamsAndAMissingTableRefusesTheStart() throws {
        let (_, path) = try Self.database("""
            CREATE TABLE pbx (id INTEGER PRIMARY KEY, grp INTEGER, uri TEXT, fl INTEGER, prio INTEGER, at TEXT);
            INSERT INTO pbx VALUES (1, 4, 'sip:10.0.0.8:5080', 0, 0, NULL);
            """)
        let h = try ScriptHarness(script: Self.script, config: ModuleConfiguration(params: ["dispatcher": [
            "db_url": ["sqlite://\(path)"], "table_name": ["pbx"], "setid_col": ["grp"], "destination_col": ["uri"],
            "flags_col": ["fl"], "priority_col": ["prio"], "attrs_col": ["at"]]]))
        #expect(Self.uris(h, 4) == ["sip:10.0.0.8:5080"])
        do {
            _ = try ScriptHarness(script: Self.script, config: ModuleConfiguration(params: ["dispatcher": ["db_url": ["sqlite://\(path)"]]]))
            Issue.record("a missing dispatcher table was accepted")
        } catch {
            #expect("\(error)".contains("modparam.dispatcher.db_url") && "\(error)".contains("table dispatcher"))
        }
    }
}

/// Host names in the list are resolved at load, as Kamailio's `pack_dest` (ds_dns_mode 1): a name
/// that does not resolve drops its line with a warning (or refuses the list with ds_load_mode 1),
/// flag 16 skips the lookup, ds_is_from_list matches the address found at load. The names resolve
/// through the harness's host table (never the machine's resolver).
@Suite struct DispatcherDNSTests {
    static let list = """
        1 sip:pbx-a.farm.test:5070
        1 sip:gone.farm.test:5080
        1 sip:later.farm.test:5090 16
        2 sip:gone.farm.test
        """
    static let script = """
        function ksr_request_route()
          if KSR.is_method("PUBLISH") then
            KSR.pv.seti("$var(rc)", KSR.dispatcher.ds_reload())
            return
          end
          KSR.pv.seti("$var(rc)", KSR.dispatcher.ds_is_from_list(1))
          KSR.pv.seti("$var(exists2)", KSR.dispatcher.ds_list_exists(2))
        end
        """
    static let pbxA = SocketAddress(ip: "10.1.1.1", port: 5070)!

    static func uris(_ h: ScriptHarness) -> [Int: [String]] {
        var out: [Int: [String]] = [:]
        for s in DispatcherModule.store(h.runtime).snapshot() { out[s.id] = s.dests.map(\.uri) }
        return out
    }

    @Test func namesAreResolvedAtLoadAndUnresolvedLinesDropped() throws {
        let services = TestServices(hosts: ["pbx-a.farm.test": Self.pbxA])
        let (h, _) = try DST.harness(Self.script, list: Self.list, services: services)
        // set 2 had only the name that does not resolve; the flag-16 line is kept unresolved
        #expect(Self.uris(h) == [1: ["sip:later.farm.test:5090", "sip:pbx-a.farm.test:5070"]])
        try h.route(DST.invite(), from: Self.pbxA)
        #expect(TMT.v(h, "rc") == "1", "matched by the address resolved at load")
        #expect(TMT.v(h, "exists2") == "-1")
        try h.route(DST.invite(), from: SocketAddress(ip: "10.1.1.2", port: 5070)!)
        #expect(TMT.v(h, "rc") == "-1")
    }

    @Test func loadModeOneRefusesTheList() {
        do {
            _ = try DST.harness(Self.script, list: Self.list, ["ds_load_mode": "1"],
                                services: TestServices(hosts: ["pbx-a.farm.test": Self.pbxA]))
            Issue.record("the list was accepted")
        } catch let error as LuaScriptError {
            #expect(error.message.contains("modparam.dispatcher.list_file") && error.message.contains("dispatcher.list:2")
                    && error.message.contains("could not resolve gone.farm.test"), "\(error.message)")
        } catch {
            Issue.record("\(error)")
        }
    }

    @Test func dnsModeZeroKeepsTheNamesUnresolved() throws {
        let (h, _) = try DST.harness(Self.script, list: Self.list, ["ds_dns_mode": "0"], services: TestServices())
        #expect(Self.uris(h) == [1: ["sip:later.farm.test:5090", "sip:gone.farm.test:5080", "sip:pbx-a.farm.test:5070"],
                                 2: ["sip:gone.farm.test"]])
    }

    @Test func aReloadResolvesAgain() throws {
        // a name unknown at start (dropped) that resolves at the reload is added then
        let (h, path) = try DST.harness(Self.script, list: "1 sip:pbx-a.farm.test:5070\n", ["reload_delta": "0"],
                                        services: TestServices(hosts: ["pbx-a.farm.test": Self.pbxA,
                                                                       "pbx-b.farm.test": SocketAddress(ip: "10.1.1.2", port: 0)!]))
        #expect(Self.uris(h) == [1: ["sip:pbx-a.farm.test:5070"]])
        try "1 sip:pbx-a.farm.test:5070\n1 sip:pbx-b.farm.test:5070\n1 sip:nowhere.farm.test\n"
            .write(toFile: path, atomically: true, encoding: .utf8)
        try h.route(DST.request("PUBLISH", callID: "reload"))
        #expect(TMT.v(h, "rc") == "1")
        #expect(Self.uris(h) == [1: ["sip:pbx-b.farm.test:5070", "sip:pbx-a.farm.test:5070"]])
        try h.route(DST.invite(), from: SocketAddress(ip: "10.1.1.2", port: 5070)!)
        #expect(TMT.v(h, "rc") == "1")
    }
}
