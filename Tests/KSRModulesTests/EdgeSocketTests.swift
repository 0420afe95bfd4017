import Foundation
import Testing
import SIPCore
import SIPTransport
import StarlingKEMI
import StarlingTesting
import KSRModules

/// The edge proxy's two sockets: public 198.51.100.1 (advertised as 203.0.113.7, named "public") toward
/// phones, private 10.0.3.1 (named "private") toward the PBX at 10.0.3.2. TestServices sends from the
/// socket whose address shares the destination's first three octets.
private let publicUDP = LocalSocket(proto: .udp, address: SocketAddress(ip: "198.51.100.1", port: 5060)!,
                                    advertisedHost: "203.0.113.7", advertisedPort: 5060, name: "public")
private let privateUDP = LocalSocket(proto: .udp, address: SocketAddress(ip: "10.0.3.1", port: 5060)!, name: "private")
private let publicTCP = LocalSocket(proto: .tcp, address: SocketAddress(ip: "198.51.100.1", port: 5060)!,
                                    advertisedHost: "203.0.113.7", name: "public-tcp")
private let phone = SocketAddress(ip: "198.51.100.50", port: 40000)!
private let pbx = SocketAddress(ip: "10.0.3.2", port: 5060)!

private func edgeServices() -> TestServices {
    TestServices(local: publicUDP.address, multiHosts: [:], sockets: [publicUDP, privateUDP, publicTCP])
}

private func edge(_ body: String, params: [String: [String: [String]]] = [:], modules: [String]? = nil) throws -> ScriptHarness {
    let script = """
        function ksr_request_route()
          \(body)
        end
        """
    return try ScriptHarness(script: script, modules: modules, config: ModuleConfiguration(params: params), services: edgeServices())
}

private func register(contact: String = "<sip:alice@10.9.9.9:5060>", extra: String = "") -> String {
    "REGISTER sip:pbx.example SIP/2.0\r\nVia: SIP/2.0/UDP 10.9.9.9:5060;branch=z9hG4bKreg1\r\nMax-Forwards: 70\r\n"
        + "From: <sip:alice@pbx.example>;tag=r1\r\nTo: <sip:alice@pbx.example>\r\nCall-ID: reg-edge\r\nCSeq: 1 REGISTER\r\n"
        + "Contact: \(contact)\r\n\(extra)Expires: 300\r\nContent-Length: 0\r\n\r\n"
}

private func invite(ruri: String = "sip:100@10.0.3.2:5060", route: String? = nil, totag: Bool = false) -> String {
    var s = "INVITE \(ruri) SIP/2.0\r\nVia: SIP/2.0/UDP 10.9.9.9:5060;branch=z9hG4bKinv1\r\nMax-Forwards: 70\r\n"
    if let route { s += "Route: \(route)\r\n" }
    s += "From: <sip:alice@pbx.example>;tag=f1\r\nTo: <sip:100@pbx.example>\(totag ? ";tag=t1" : "")\r\nCall-ID: inv-edge\r\n"
    s += "CSeq: 1 INVITE\r\nContact: <sip:alice@10.9.9.9:5060>\r\nContent-Length: 0\r\n\r\n"
    return s
}

private func str(_ h: ScriptHarness, _ name: String) -> String? {
    switch h.context.worker.vars[name] {
    case .string(let s)?: return s
    case .int(let i)?: return String(i)
    default: return nil
    }
}

@Suite struct EdgeSocketTests {
    @Test func sendSocketIsChosenByDestinationAndAdvertised() throws {
        let h = try edge("KSR.setdsturi(\"sip:10.0.3.2:5060\"); KSR.forward()")
        try h.route(invite(), from: phone, local: publicUDP.address)
        let sent = try #require(h.sender.sent.first)
        #expect(sent.destination == pbx)
        #expect(sent.text.contains("\r\nVia: SIP/2.0/UDP 10.0.3.1:5060;branch="), "\(sent.text)")
        let h2 = try edge("KSR.setdsturi(\"sip:198.51.100.50:40000\"); KSR.forward()")
        try h2.route(invite(), from: pbx, local: privateUDP.address)
        // Toward the phone: the public socket, which advertises 203.0.113.7.
        #expect(try #require(h2.sender.sent.first).text.contains("\r\nVia: SIP/2.0/UDP 203.0.113.7:5060;branch="))
    }

    @Test func setSendSocketAndNameAndPseudoVariables() throws {
        let h = try edge("""
            KSR.pv.seti("$var(a)", KSR.corex.set_send_socket("udp:10.0.3.1:5060"))
            KSR.pv.sets("$var(fs)", KSR.pv.get("$fs"))
            KSR.pv.sets("$var(fsn)", KSR.pv.get("$fsn"))
            KSR.pv.seti("$var(b)", KSR.corex.set_send_socket_name("public"))
            KSR.pv.sets("$var(fs2)", KSR.pv.get("$fs"))
            KSR.pv.seti("$var(c)", KSR.corex.set_send_socket("udp:192.0.2.99:5060"))
            KSR.pv.seti("$var(d)", KSR.corex.set_send_socket("udp:[::1"))
            KSR.pv.sets("$var(fs3)", KSR.pv.get("$fs"))
            KSR.pv.seti("$var(e)", KSR.corex.is_socket_name("private"))
            KSR.pv.seti("$var(f)", KSR.corex.is_socket_name("nosuch"))
            KSR.pv.seti("$var(g)", KSR.corex.set_send_socket(""))
            KSR.pv.sets("$var(fs4)", tostring(KSR.pv.get("$fs")))
            KSR.pv.sets("$fsn", "private")
            KSR.pv.sets("$var(fs5)", KSR.pv.get("$fs"))
            KSR.setdsturi("sip:198.51.100.50:40000")
            KSR.forward()
            """)
        try h.route(invite(), from: pbx, local: privateUDP.address)
        #expect(str(h, "a") == "1" && str(h, "fs") == "udp:10.0.3.1:5060" && str(h, "fsn") == "private")
        #expect(str(h, "b") == "1" && str(h, "fs2") == "udp:198.51.100.1:5060")
        // No such socket: Kamailio warns and returns 1 (the forced socket stays); a bad spec: -1.
        #expect(str(h, "c") == "1" && str(h, "d") == "-1" && str(h, "fs3") == "udp:198.51.100.1:5060")
        #expect(str(h, "e") == "1" && str(h, "f") == "-1")
        #expect(str(h, "g") == "1" && str(h, "fs4") == "nil")
        #expect(str(h, "fs5") == "udp:10.0.3.1:5060")
        // Forced to the private socket although the phone's route would pick the public one.
        #expect(try #require(h.sender.sent.first).text.contains("\r\nVia: SIP/2.0/UDP 10.0.3.1:5060;branch="))
    }

    @Test func forcedSocketOfAnotherTransportTakesTheSameAddress() throws {
        let h = try edge("""
            KSR.corex.set_send_socket_name("public")
            KSR.setdsturi("sip:198.51.100.50:40000;transport=tcp")
            KSR.forward()
            """)
        try h.route(invite(), from: pbx, local: privateUDP.address)
        let sent = try #require(h.sender.sent.first)
        #expect(sent.proto == .tcp)
        #expect(sent.text.contains("\r\nVia: SIP/2.0/TCP 203.0.113.7:5060;branch="), "\(sent.text)")
    }

    @Test func recvSocketAndSourceAddress() throws {
        let h = try edge("""
            KSR.pv.seti("$var(a)", KSR.corex.set_recv_socket_name("private"))
            KSR.pv.sets("$var(ri)", KSR.pv.get("$Ri"))
            KSR.pv.seti("$var(b)", KSR.corex.set_source_address("udp:192.0.2.44:5099"))
            KSR.pv.sets("$var(si)", KSR.pv.get("$si") .. ":" .. KSR.pv.get("$sp"))
            KSR.pv.seti("$var(c)", KSR.corex.set_source_address("nonsense:"))
            KSR.pv.seti("$var(d)", KSR.corex.set_recv_socket("tcp:198.51.100.1:5060"))
            KSR.pv.sets("$var(pr)", KSR.pv.get("$pr"))
            """)
        try h.route(invite(), from: phone, local: publicUDP.address)
        #expect(str(h, "a") == "1" && str(h, "ri") == "10.0.3.1")
        #expect(str(h, "b") == "1" && str(h, "si") == "192.0.2.44:5099")
        #expect(str(h, "c") == "-1")
        #expect(str(h, "d") == "1" && str(h, "pr") == "tcp")
    }

    @Test func localRequestsTakeTheirSocketArgument() throws {
        let h = try edge("""
            local hdrs = "From: <sip:edge@pbx.example>;tag=1\\r\\nTo: <sip:alice@pbx.example>\\r\\n"
            KSR.pv.seti("$var(a)", KSR.tm.t_uac_send("OPTIONS", "sip:alice@198.51.100.50:40000", "", "udp:10.0.3.1:5060", hdrs, ""))
            KSR.pv.seti("$var(b)", KSR.tm.t_uac_send("OPTIONS", "sip:alice@198.51.100.50:40000", "", "udp:192.0.2.9:5060", hdrs, ""))
            KSR.corex.set_send_socket_name("private")
            KSR.pv.seti("$var(c)", KSR.tm.t_uac_send("OPTIONS", "sip:alice@198.51.100.50:40000", "", "", hdrs, ""))
            KSR.pv.sets("$var(fs)", KSR.pv.get("$fs"))
            """, modules: ["tm", "corex"])
        try h.route(invite(), from: phone, local: publicUDP.address)
        #expect(str(h, "a") == "1" && str(h, "b") == "-1" && str(h, "c") == "1")
        // The message's forced socket is still there after the local request.
        #expect(str(h, "fs") == "udp:10.0.3.1:5060")
        let options = h.sender.sent.filter { $0.text.hasPrefix("OPTIONS") }
        #expect(options.count == 2)
        // With the socket argument: the private one; without: the route's (public, advertised), not the
        // socket the current message forced.
        #expect(options.first?.text.contains("\r\nVia: SIP/2.0/UDP 10.0.3.1:5060;branch=") == true, "\(options.first?.text ?? "")")
        #expect(options.last?.text.contains("\r\nVia: SIP/2.0/UDP 203.0.113.7:5060;branch=") == true, "\(options.last?.text ?? "")")
    }

    @Test func dispatcherDestinationSocket() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ds-edge-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let list = dir.appendingPathComponent("dispatcher.list").path
        try """
            1 sip:198.51.100.60:5060 0 0 socket=udp:10.0.3.1:5060
            2 sip:10.0.3.9:5060 0 0 sockname=public
            3 sip:198.51.100.61:5060 0 0 sockname=private
            3 sip:198.51.100.62:5060 0 0 socket=udp:198.51.100.1:5060
            4 sip:198.51.100.63:5060 0 0 socket=udp:192.0.2.99:5060
            """.write(toFile: list, atomically: true, encoding: .utf8)
        func run(_ body: String) throws -> (ScriptHarness, SentMessage) {
            let h = try edge(body, params: ["dispatcher": ["list_file": [list], "flags": ["2"], "xavp_dst_mode": ["4"]]],
                             modules: ["dispatcher", "corex"])
            try h.route(invite(), from: pbx, local: privateUDP.address)
            return (h, try #require(h.sender.sent.first))
        }
        // socket= of the destination: the private socket although the route says public.
        let (_, one) = try run("KSR.dispatcher.ds_select_dst(1, 0); KSR.forward()")
        #expect(one.destination == SocketAddress(ip: "198.51.100.60", port: 5060)!)
        #expect(one.text.contains("\r\nVia: SIP/2.0/UDP 10.0.3.1:5060;branch="), "\(one.text)")
        // sockname=: the public socket (advertised).
        let (_, two) = try run("KSR.dispatcher.ds_select_dst(2, 0); KSR.forward()")
        #expect(two.text.contains("\r\nVia: SIP/2.0/UDP 203.0.113.7:5060;branch="), "\(two.text)")
        // Failover: ds_next_dst takes the next record's socket (.61 has the private one, .62 the public one).
        let (h3, three) = try run("""
            KSR.dispatcher.ds_select_dst(3, 4)
            KSR.pv.sets("$var(du1)", KSR.pv.get("$du"))
            KSR.pv.sets("$var(fs1)", KSR.pv.get("$fs"))
            KSR.dispatcher.ds_next_dst()
            KSR.forward()
            """)
        let socketOf = ["198.51.100.61": ("udp:10.0.3.1:5060", "10.0.3.1:5060"), "198.51.100.62": ("udp:198.51.100.1:5060", "203.0.113.7:5060")]
        let first = try #require(str(h3, "du1").flatMap { SIPURI($0)?.host })
        #expect(str(h3, "fs1") == socketOf[first]?.0)
        let second = three.destination.ip
        #expect(second != first && socketOf[second] != nil)
        #expect(three.text.contains("\r\nVia: SIP/2.0/UDP \(socketOf[second]?.1 ?? "?");branch="), "\(three.text)")
        // A socket= that is not ours: logged, nothing forced (the route decides).
        let (h4, four) = try run("KSR.dispatcher.ds_select_dst(4, 0); KSR.pv.sets(\"$var(fs)\", tostring(KSR.pv.get(\"$fs\"))); KSR.forward()")
        #expect(str(h4, "fs") == "nil")
        #expect(four.text.contains("\r\nVia: SIP/2.0/UDP 203.0.113.7:5060;branch="), "\(four.text)")
    }

    /// Dispatcher probes leave from the destination's `sockname=` / `socket=` (Kamailio's ds_ping_set:
    /// uac_r.ssockname / ssock); one that is not ours is logged and the route decides.
    @Test func dispatcherProbesLeaveFromTheDestinationSocket() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ds-probe-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let list = dir.appendingPathComponent("dispatcher.list").path
        try """
            1 sip:198.51.100.60:5060 0 0 socket=udp:10.0.3.1:5060
            1 sip:10.0.3.9:5060 0 0 sockname=public
            1 sip:198.51.100.63:5060 0 0 socket=udp:192.0.2.99:5060
            1 sip:10.0.3.8:5060 0 0
            """.write(toFile: list, atomically: true, encoding: .utf8)
        let h = try edge("", params: ["dispatcher": ["list_file": [list], "ds_ping_interval": ["1"], "ds_probing_mode": ["1"]]],
                         modules: ["dispatcher", "tm"])
        TMT.run(h, for: .milliseconds(1500))
        let probes = TMT.sent(h, "OPTIONS")
        func via(_ ip: String) -> String? {
            probes.first { $0.destination.ip == ip }.flatMap { TMT.header($0, "Via") }
        }
        #expect(Set(probes.map(\.destination.ip)).count == 4, "\(probes.map(\.text))")
        #expect(via("198.51.100.60")?.hasPrefix("SIP/2.0/UDP 10.0.3.1:5060;branch=") == true, "\(String(describing: via("198.51.100.60")))")
        #expect(via("10.0.3.9")?.hasPrefix("SIP/2.0/UDP 203.0.113.7:5060;branch=") == true, "\(String(describing: via("10.0.3.9")))")
        #expect(via("198.51.100.63")?.hasPrefix("SIP/2.0/UDP 203.0.113.7:5060;branch=") == true)
        #expect(via("10.0.3.8")?.hasPrefix("SIP/2.0/UDP 10.0.3.1:5060;branch=") == true)
    }

    @Test func doubleRecordRouteAcrossSocketsDecidedWhenSent() throws {
        // record_route() before the socket is forced: the lines follow the socket the request leaves from.
        let h = try edge("""
            KSR.rr.record_route()
            KSR.corex.set_send_socket_name("private")
            KSR.setdsturi("sip:10.0.3.2:5060")
            KSR.forward()
            """)
        try h.route(invite(), from: phone, local: publicUDP.address)
        let sent = try #require(h.sender.sent.first)
        #expect(sent.text.contains("\r\nRecord-Route: <sip:10.0.3.1;r2=on;lr;ftag=f1>\r\nRecord-Route: <sip:203.0.113.7:5060;r2=on;lr;ftag=f1>\r\nVia: SIP/2.0/UDP 10.0.3.1:5060;branch="), "\(sent.text)")
        // Same socket in and out: one line. enable_double_rr 2: always two.
        let same = try edge("KSR.rr.record_route(); KSR.setdsturi(\"sip:10.0.3.2:5060\"); KSR.forward()")
        try same.route(invite(), from: pbx, local: privateUDP.address)
        #expect(try #require(same.sender.sent.first).message?.values(.recordRoute).count == 1)
        let always = try edge("KSR.rr.record_route(); KSR.setdsturi(\"sip:10.0.3.2:5060\"); KSR.forward()",
                              params: ["rr": ["enable_double_rr": ["2"]]])
        try always.route(invite(), from: pbx, local: privateUDP.address)
        let m = try #require(always.sender.sent.first?.message)
        #expect(m.values(.recordRoute).map(m.string) == ["<sip:10.0.3.1;r2=on;lr;ftag=f1>", "<sip:10.0.3.1;r2=on;lr;ftag=f1>"])
    }

    @Test func looseRouteTakesBothEntriesAndForcesTheSecondSocket() throws {
        // An in-dialog request from the PBX: both of the edge's entries go, the send socket is the
        // public one (the second entry), even though the next hop is reached by either.
        let h = try edge("""
            KSR.pv.seti("$var(lr)", KSR.rr.loose_route())
            KSR.pv.sets("$var(fs)", tostring(KSR.pv.get("$fs")))
            KSR.forward()
            """)
        let route = "<sip:10.0.3.1;r2=on;lr;ftag=f1>, <sip:203.0.113.7:5060;r2=on;lr;ftag=f1>, <sip:198.51.100.50:40000;lr>"
        try h.route(invite(ruri: "sip:alice@10.9.9.9:5060", route: route, totag: true), from: pbx, local: privateUDP.address)
        #expect(str(h, "lr") == "1" && str(h, "fs") == "udp:198.51.100.1:5060")
        let sent = try #require(h.sender.sent.first)
        #expect(sent.destination == phone)
        #expect(sent.message?.values(.route).map { sent.message!.string($0) } == ["<sip:198.51.100.50:40000;lr>"])
        #expect(sent.text.contains("\r\nVia: SIP/2.0/UDP 203.0.113.7:5060;branch="))
    }

    /// rr `force_send_socket` (Kamailio 5.6 loose.c): a single Route entry of ours (no `;r2=on`) forces
    /// the socket it names, by address (the advertised one too) or, with sockname_mode, by `;sn=`.
    @Test func forceSendSocketForASingleRecordRoute() throws {
        let script = """
            KSR.pv.seti("$var(lr)", KSR.rr.loose_route())
            KSR.pv.sets("$var(fs)", tostring(KSR.pv.get("$fs")))
            """
        let route = "<sip:10.0.3.1;lr;ftag=f1>, <sip:198.51.100.50:40000;lr>"
        let off = try edge(script)
        try off.route(invite(ruri: "sip:alice@10.9.9.9:5060", route: route, totag: true), from: phone, local: publicUDP.address)
        #expect(str(off, "lr") == "1" && str(off, "fs") == "nil")
        let on = try edge(script, params: ["rr": ["force_send_socket": ["1"]]])
        try on.route(invite(ruri: "sip:alice@10.9.9.9:5060", route: route, totag: true), from: phone, local: publicUDP.address)
        #expect(str(on, "lr") == "1" && str(on, "fs") == "udp:10.0.3.1:5060")
        // The advertised address names the public socket.
        let adv = try edge(script, params: ["rr": ["force_send_socket": ["1"]]])
        try adv.route(invite(ruri: "sip:alice@10.9.9.9:5060", route: "<sip:203.0.113.7;lr>, <sip:10.0.3.2;lr>", totag: true),
                      from: pbx, local: privateUDP.address)
        #expect(str(adv, "fs") == "udp:198.51.100.1:5060")
        // ;sn= counts only with sockname_mode (as Kamailio); then it wins over the address.
        let sn = "<sip:10.0.3.1;sn=public;lr>, <sip:198.51.100.50:40000;lr>"
        let noMode = try edge(script, params: ["rr": ["force_send_socket": ["1"]]])
        try noMode.route(invite(ruri: "sip:alice@10.9.9.9:5060", route: sn, totag: true), from: phone, local: publicUDP.address)
        #expect(str(noMode, "fs") == "udp:10.0.3.1:5060")
        let mode = try edge(script, params: ["rr": ["force_send_socket": ["1"], "sockname_mode": ["1"]]])
        try mode.route(invite(ruri: "sip:alice@10.9.9.9:5060", route: sn, totag: true), from: phone, local: publicUDP.address)
        #expect(str(mode, "fs") == "udp:198.51.100.1:5060")
        // A double RR is handled by its second entry whatever force_send_socket says.
        let double = try edge(script, params: ["rr": ["force_send_socket": ["1"]]])
        try double.route(invite(ruri: "sip:alice@10.9.9.9:5060",
                                route: "<sip:10.0.3.1;r2=on;lr>, <sip:203.0.113.7;r2=on;lr>, <sip:198.51.100.50:40000;lr>", totag: true),
                         from: pbx, local: privateUDP.address)
        #expect(str(double, "fs") == "udp:198.51.100.1:5060")
    }

    @Test func preloadedRoute() throws {
        let h = try edge("""
            KSR.pv.seti("$var(pre)", KSR.rr.loose_route_preloaded())
            KSR.pv.seti("$var(lr)", KSR.rr.loose_route())
            """)
        // As Kamailio 5.6: -3 only when the Route set of an initial request was ours alone.
        try h.route(invite(route: "<sip:10.0.3.2;lr>"), from: phone, local: publicUDP.address)
        #expect(str(h, "pre") == "-1" && str(h, "lr") == "1")
        let ours = try edge("""
            KSR.pv.seti("$var(pre)", KSR.rr.loose_route_preloaded())
            """)
        try ours.route(invite(route: "<sip:10.0.3.1;lr>, <sip:10.0.3.2;lr>"), from: phone, local: publicUDP.address)
        #expect(str(ours, "pre") == "-1")
        let only = try edge("""
            KSR.pv.seti("$var(pre)", KSR.rr.loose_route_preloaded())
            """)
        try only.route(invite(route: "<sip:10.0.3.1;lr>"), from: phone, local: publicUDP.address)
        #expect(str(only, "pre") == "1")
    }

    @Test func pathAsKamailioWritesIt() throws {
        let h = try edge("""
            KSR.pv.seti("$var(a)", KSR.path.add_path_received())
            KSR.setdsturi("sip:10.0.3.2:5060")
            KSR.forward()
            """, modules: ["path", "rr"])
        try h.route(register(), from: phone, local: publicUDP.address)
        let sent = try #require(h.sender.sent.first)
        #expect(str(h, "a") == "1")
        #expect(sent.message?.headerValue(.path) == "<sip:10.0.3.1;lr;received=sip:198.51.100.50:40000>", "\(sent.text)")
        // TCP phone, user and params, r2: the outgoing socket's URI, then the incoming one's.
        let r2 = try edge("""
            KSR.path.add_path_received_user_params("alice", "ob")
            KSR.setdsturi("sip:10.0.3.2:5060")
            KSR.forward()
            """, params: ["path": ["enable_r2": ["1"]]], modules: ["path", "rr"])
        try r2.route(register(extra: "Path: <sip:other.example;lr>\r\n"), from: phone, proto: .tcp, local: publicTCP.address)
        let m = try #require(r2.sender.sent.first?.message)
        #expect(m.values(.path).map(m.string) == [
            "<sip:alice@10.0.3.1;lr;received=sip:198.51.100.50:40000%3Btransport%3Dtcp;ob;r2=on>",
            "<sip:alice@203.0.113.7;transport=tcp;lr;received=sip:198.51.100.50:40000%3Btransport%3Dtcp;ob;r2=on>",
            "<sip:other.example;lr>",
        ])
        // received_format 1, received_name, sockname_mode.
        let f1 = try edge("""
            KSR.path.add_path_received()
            KSR.setdsturi("sip:10.0.3.2:5060")
            KSR.forward()
            """, params: ["path": ["received_format": ["1"], "received_name": ["rcv"], "sockname_mode": ["1"]]], modules: ["path", "rr"])
        try f1.route(register(), from: phone, local: publicUDP.address)
        let m1 = try #require(f1.sender.sent.first?.message)
        #expect(m1.headerValue(.path) == "<sip:10.0.3.1;sn=private;lr;rcv=198.51.100.50~40000~1>")
    }

    @Test func useReceivedRoutesBackThroughTheReceivedAddress() throws {
        let script = """
            KSR.pv.seti("$var(lr)", KSR.rr.loose_route())
            KSR.pv.sets("$var(du)", tostring(KSR.pv.get("$du")))
            """
        let h = try edge(script, params: ["path": ["use_received": ["1"]]], modules: ["path", "rr"])
        try h.route(invite(ruri: "sip:alice@10.9.9.9:5060", route: "<sip:10.0.3.1;lr;received=sip:198.51.100.50:40000%3Btransport%3Dtcp>"),
                    from: pbx, local: privateUDP.address)
        #expect(str(h, "lr") == "-3" && str(h, "du") == "sip:198.51.100.50:40000;transport=tcp")  // -3: the Route set was ours only (Kamailio 5.6)
        let f1 = try edge(script, params: ["path": ["use_received": ["1"], "received_format": ["1"]]], modules: ["path", "rr"])
        try f1.route(invite(ruri: "sip:alice@10.9.9.9:5060", route: "<sip:10.0.3.1;lr;received=198.51.100.50~40000~3>"),
                     from: pbx, local: privateUDP.address)
        #expect(str(f1, "du") == "sip:198.51.100.50:40000;transport=tls")
        // Malformed received: logged, $du untouched.
        let bad = try edge(script, params: ["path": ["use_received": ["1"], "received_format": ["1"]]], modules: ["path", "rr"])
        try bad.route(invite(ruri: "sip:alice@10.9.9.9:5060", route: "<sip:10.0.3.1;lr;received=198.51.100.50~x~9>"),
                      from: pbx, local: privateUDP.address)
        #expect(str(bad, "lr") == "-3" && str(bad, "du") == "nil")
        // Without use_received the parameter is left alone.
        let off = try edge(script, modules: ["path", "rr"])
        try off.route(invite(ruri: "sip:alice@10.9.9.9:5060", route: "<sip:10.0.3.1;lr;received=sip:198.51.100.50:40000>"),
                      from: pbx, local: privateUDP.address)
        #expect(str(off, "du") == "nil")
    }
}
