import Foundation
import Testing

/// The edge SBC of issue 15, end to end, in three network namespaces joined by veth pairs:
///
///     phone ns 198.51.100.50 ── 198.51.100.1 "public" [Starling edge] "private" 10.0.3.1 ── 10.0.3.2 pbx ns
///
/// The phone (SIPp) sits "behind a NAT": its Via and Contact name 10.99.0.5, which nobody can reach.
/// It registers through the edge (examples/edge-sbc, unchanged) to Kamailio 5.6 as the PBX registrar
/// (use_path; REGISTER only from the edge with a Path). The edge is restarted (it keeps no registration
/// state), then a caller on the PBX side calls the phone: the INVITE follows the stored Path, the edge
/// sends it to the phone's real address (path use_received), double-Record-Routes it across its two
/// sockets and aliases the phone's Contact; the caller's ACK and BYE come back through both proxies
/// and reach the phone by the edge's two Record-Routes and the alias. Needs root (ip netns), iproute2,
/// sip-tester and kamailio (+ kamailio-lua-modules); each namespace is its own network, so the SIP
/// ports there are the standard ones.
///
/// Variants: the phone leg over TLS (a Python `ssl` phone that keeps its connection with CRLF keepalives
/// and is called over it; the edge's restart makes it reconnect and register again), and the whole
/// scenario behind real NATs (nftables in a router namespace): the phone in 10.99.0.0/24 masqueraded to
/// 198.51.100.50, the edge on 172.16.0.2 behind a 1:1 NAT from 198.51.100.1 with `advertise`.
@Suite(.serialized)
struct EdgeSBCTests {
    /// The namespaces and their links (deleted on deinit). Without `nat`: phone 198.51.100.50 and the
    /// edge's public side 198.51.100.1 share a link. With `nat`: a router namespace between them,
    ///
    ///     phone 10.99.0.5 ── 10.99.0.1 [router: nftables] 172.16.0.1 ── 172.16.0.2 edge
    ///
    /// masquerading 10.99.0.0/24 to 198.51.100.50 (the phone's NAT) and mapping 198.51.100.1 to and from
    /// 172.16.0.2 (the cloud's 1:1 NAT in front of the edge).
    final class EdgeNetwork {
        let phone: NetworkNamespace
        let edge: NetworkNamespace
        let pbx: NetworkNamespace
        let router: NetworkNamespace?
        /// The address of the edge's public sockets (the 1:1 NAT's inside address with `nat`).
        let edgePublicIP: String
        /// The phone's own address.
        let phoneIP: String

        init(nat: Bool = false) throws {
            phone = try NetworkNamespace()
            edge = try NetworkNamespace()
            pbx = try NetworkNamespace()
            router = nat ? try NetworkNamespace() : nil
            edgePublicIP = nat ? "172.16.0.2" : "198.51.100.1"
            phoneIP = nat ? "10.99.0.5" : "198.51.100.50"
            let ip = try Requirements.tool("ip", package: "iproute2")
            var steps: [[String]] = [
                ["-n", edge.name, "link", "add", "priv0", "type", "veth", "peer", "name", "eth0", "netns", pbx.name],
                ["-n", edge.name, "addr", "add", "10.0.3.1/24", "dev", "priv0"],
                ["-n", edge.name, "link", "set", "priv0", "up"],
                ["-n", pbx.name, "addr", "add", "10.0.3.2/24", "dev", "eth0"],
                ["-n", pbx.name, "link", "set", "eth0", "up"],
            ]
            if let router {
                steps += [
                    ["-n", router.name, "link", "add", "lan0", "type", "veth", "peer", "name", "eth0", "netns", phone.name],
                    ["-n", router.name, "link", "add", "dc0", "type", "veth", "peer", "name", "pub0", "netns", edge.name],
                    ["-n", router.name, "addr", "add", "10.99.0.1/24", "dev", "lan0"],
                    ["-n", router.name, "addr", "add", "172.16.0.1/24", "dev", "dc0"],
                    ["-n", router.name, "link", "set", "lan0", "up"],
                    ["-n", router.name, "link", "set", "dc0", "up"],
                    ["-n", phone.name, "addr", "add", "10.99.0.5/24", "dev", "eth0"],
                    ["-n", phone.name, "link", "set", "eth0", "up"],
                    ["-n", phone.name, "route", "add", "default", "via", "10.99.0.1"],
                    ["-n", edge.name, "addr", "add", "172.16.0.2/24", "dev", "pub0"],
                    ["-n", edge.name, "link", "set", "pub0", "up"],
                    ["-n", edge.name, "route", "add", "default", "via", "172.16.0.1"],
                ]
            } else {
                steps += [
                    ["-n", edge.name, "link", "add", "pub0", "type", "veth", "peer", "name", "eth0", "netns", phone.name],
                    ["-n", edge.name, "addr", "add", "198.51.100.1/24", "dev", "pub0"],
                    ["-n", edge.name, "link", "set", "pub0", "up"],
                    ["-n", phone.name, "addr", "add", "198.51.100.50/24", "dev", "eth0"],
                    ["-n", phone.name, "link", "set", "eth0", "up"],
                ]
            }
            for args in steps {
                let r = try Command.run(ip, args, timeout: .seconds(20))
                guard r.status == 0 else { throw HarnessError("ip \(args.joined(separator: " ")) failed: \(r.output)") }
            }
            if let router {
                let sysctl = try Requirements.tool("sysctl", package: "procps")
                let fwd = try router.run([sysctl, "-w", "net.ipv4.ip_forward=1"], timeout: .seconds(20))
                guard fwd.status == 0 else { throw HarnessError("sysctl net.ipv4.ip_forward=1 in the router namespace failed: \(fwd.output)") }
                let nft = try Requirements.tool("nft", package: "nftables")
                let rules = """
                table ip nat {
                  chain pre {
                    type nat hook prerouting priority dstnat; policy accept;
                    ip daddr 198.51.100.1 dnat to 172.16.0.2
                  }
                  chain post {
                    type nat hook postrouting priority srcnat; policy accept;
                    ip saddr 172.16.0.2 snat to 198.51.100.1
                    ip saddr 10.99.0.0/24 snat to 198.51.100.50
                  }
                }

                """
                let file = FileManager.default.temporaryDirectory.appendingPathComponent("starling-edge-nat-\(UUID().uuidString).nft")
                try rules.write(to: file, atomically: true, encoding: .utf8)
                defer { try? FileManager.default.removeItem(at: file) }
                let r = try router.run([nft, "-f", file.path], timeout: .seconds(20))
                guard r.status == 0 else {
                    throw HarnessError("nft -f (NAT rules) in the router namespace failed (status \(r.status)); "
                                       + "the kernel needs nf_tables with NAT (nft_nat) usable in a network namespace: \(r.output)")
                }
                // UDP NAT bindings live 30 s by default; a loaded machine may take longer between the
                // phone's REGISTER and the call that must come back through its binding (a real phone
                // refreshes it with keepalives). Per namespace, once conntrack is in use.
                let ct = try router.run([sysctl, "-w", "net.netfilter.nf_conntrack_udp_timeout=600",
                                         "net.netfilter.nf_conntrack_udp_timeout_stream=600"], timeout: .seconds(20))
                guard ct.status == 0 else { throw HarnessError("sysctl nf_conntrack_udp_timeout in the router namespace failed: \(ct.output)") }
            }
        }

        deinit {
            phone.delete()
            edge.delete()
            pbx.delete()
            router?.delete()
        }
    }

    static let edgeConfig = PackagePaths.root.appendingPathComponent("examples/edge-sbc/starling.toml")

    /// The example's config, unchanged (neither `tls` nor `nat`), or a copy in `directory` with a TLS
    /// socket (tls:PUBLIC:5061 "public-tls" and `[tls]` from `tls`) and/or, with `nat`, the public
    /// sockets on 172.16.0.2 advertising 198.51.100.1 (as in a cloud behind 1:1 NAT).
    static func edgeConfig(_ directory: URL, tls: TestCertificates? = nil, nat: Bool = false) throws -> URL {
        guard tls != nil || nat else { return edgeConfig }
        var text = try String(contentsOf: edgeConfig, encoding: .utf8)
        func replace(_ a: String, _ b: String) throws {
            guard text.contains(a) else { throw HarnessError("examples/edge-sbc/starling.toml no longer has \(a)") }
            text = text.replacingOccurrences(of: a, with: b)
        }
        let publicIP = nat ? "172.16.0.2" : "198.51.100.1"
        if nat {
            try replace("\"udp:198.51.100.1:5060 name public\"", "\"udp:172.16.0.2:5060 advertise 198.51.100.1:5060 name public\"")
            try replace("\"tcp:198.51.100.1:5060 name public-tcp\"", "\"tcp:172.16.0.2:5060 advertise 198.51.100.1:5060 name public-tcp\"")
        }
        if let tls {
            let advertise = nat ? " advertise 198.51.100.1:5061" : ""
            try replace("\"udp:10.0.3.1:5060 name private\"]",
                        "\"udp:10.0.3.1:5060 name private\", \"tls:\(publicIP):5061\(advertise) name public-tls\"]")
            text += "\n" + tls.tlsSection()
        }
        let url = directory.appendingPathComponent("edge.toml")
        try text.write(to: url, atomically: true, encoding: .utf8)
        return url
    }

    /// Starts the edge (the example's config or a variant of it) in its namespace (working directory:
    /// the repository root, as the example config's paths are) and waits for its sockets.
    static func startEdge(_ net: EdgeNetwork, directory: URL, config: URL = edgeConfig, tls: Bool = false) throws -> ServerProcess {
        let edge = try ServerProcess(name: "starling edge", executable: try PackagePaths.starlingBinary().path,
                                     arguments: ["run", "--config", config.path, "--workers", "1", "--log-level", "info"],
                                     logFile: directory.appendingPathComponent("edge.log"),
                                     workingDirectory: PackagePaths.root, namespace: net.edge)
        do {
            try edge.waitUntilBound(udpPort: 5060, ip: net.edgePublicIP)
            try edge.waitUntilBound(udpPort: 5060, ip: "10.0.3.1")
            try edge.waitUntilListening(tcpPort: 5060, ip: net.edgePublicIP)
            if tls { try edge.waitUntilListening(tcpPort: 5061, ip: net.edgePublicIP) }
        } catch {
            edge.stop()
            throw HarnessError("\(error)\nedge log:\n\(edge.logTail(40))")
        }
        return edge
    }

    /// Kamailio 5.6 as the PBX registrar on udp:10.0.3.2:5060 (one child: in-order handling).
    static func startPBX(_ net: EdgeNetwork, directory: URL) throws -> ServerProcess {
        let script = PackagePaths.fixture("edge-sbc/pbx.lua")
        let cfg = directory.appendingPathComponent("pbx.cfg")
        let text = try Kamailio.config(script: script, port: 5060, children: 1,
                                       modules: ["tm", "sl", "rr", "pv", "maxfwd", "siputils", "usrloc", "registrar"],
                                       extra: "modparam(\"usrloc\", \"preload\", \"location\")\n"
                                           + "modparam(\"registrar\", \"use_path\", 1)\nmodparam(\"registrar\", \"path_mode\", 1)\n")
            .replacingOccurrences(of: "listen=udp:127.0.0.1:5060", with: "listen=udp:10.0.3.2:5060")
        try text.write(to: cfg, atomically: true, encoding: .utf8)
        let check = try net.pbx.run([try Kamailio.executable(), "-c", "-f", cfg.path], timeout: .seconds(30))
        guard check.status == 0 else { throw HarnessError("kamailio -c rejected \(cfg.path):\n\(check.output)") }
        let pbx = try ServerProcess(name: "kamailio pbx", executable: try Kamailio.executable(),
                                    arguments: Kamailio.arguments(config: cfg, directory: directory),
                                    logFile: directory.appendingPathComponent("pbx.log"), namespace: net.pbx)
        do {
            try pbx.waitUntilBound(udpPort: 5060, ip: "10.0.3.2")
        } catch {
            pbx.stop()
            throw HarnessError("\(error)\nPBX log:\n\(pbx.logTail(40))")
        }
        usleep(500_000)  // its children start after the socket is bound
        return pbx
    }

    /// One SIPp client run to completion inside `namespace`, to `remote`.
    static func sipp(_ scenario: String, remote: String, ip: String, port: Int, in namespace: NetworkNamespace,
                     directory: URL, tag: String, extra: [String] = []) throws -> SIPpResult {
        let args = ["-sf", PackagePaths.scenario(scenario).path, remote, "-i", ip, "-p", String(port), "-nostdin",
                    "-m", "1", "-r", "1", "-timeout", "30s", "-trace_stat", "-stf", directory.appendingPathComponent("\(tag)_stat.csv").path,
                    "-fd", "1", "-trace_err", "-error_file", directory.appendingPathComponent("\(tag)_errors.log").path,
                    "-trace_msg", "-message_file", directory.appendingPathComponent("\(tag)_messages.log").path] + extra
        let run = try Command.run(try SIPp.executable(), args, timeout: .seconds(60), workingDirectory: directory,
                                  namespace: namespace)
        return SIPp.result(exitStatus: run.status, output: run.output, directory: directory, tag: tag)
    }

    /// The phone leg over UDP, then over TCP (the phone's REGISTER connection is gone by the time of
    /// the call: the edge connects to the phone's listening port, as the Path's received says).
    @Test(arguments: ["udp", "tcp"])
    func phoneRegistersThroughTheEdgeAndIsCalledThroughThePath(transport: String) throws {
        let tcp = transport == "tcp"
        let sippTransport = tcp ? ["-t", "t1"] : []
        let directory = try PackagePaths.makeTemporaryDirectory("starling-edge")
        let net = try EdgeNetwork()
        let pbx = try Self.startPBX(net, directory: directory)
        defer { pbx.stop() }
        var edge = try Self.startEdge(net, directory: directory)
        defer { edge.stop() }
        let phonePort = 5062
        let register = try Self.sipp("edge_phone_register.xml", remote: "198.51.100.1:5060", ip: "198.51.100.50",
                                     port: phonePort, in: net.phone, directory: directory, tag: "register",
                                     extra: ["-s", "alice", "-set", "domain", "pbx.example", "-set", "natip", "10.99.0.5",
                                             "-set", "expires", "300"] + sippTransport)
        let logs = { "edge:\n\(edge.logTail(30))\nPBX:\n\(pbx.logTail(30))" }
        try #require(register.allCallsSucceeded && register.successfulCalls == 1, "\(register)\n\(logs())")
        // What the PBX saw: the REGISTER from the edge's private socket with the edge's Path.
        let registerTrace = register.messages
        #expect(registerTrace.contains("SIP/2.0 200"), "\(registerTrace)")

        // The edge keeps no registration state: a restart loses nothing.
        edge.stop()
        edge = try Self.startEdge(net, directory: directory)

        let phone = try SIPp.uas(scenario: PackagePaths.scenario("edge_phone_uas.xml"), port: phonePort, ip: "198.51.100.50",
                                 directory: directory, tag: "phone", tcp: tcp, maxCalls: 1, traceMessages: true,
                                 extra: ["-set", "natip", "10.99.0.5"], namespace: net.phone)
        defer { _ = phone.stop() }
        let call = try Self.sipp("uac.xml", remote: "10.0.3.2:5060", ip: "10.0.3.2", port: 5070, in: net.pbx,
                                 directory: directory, tag: "caller", extra: ["-s", "alice"])
        #expect(call.allCallsSucceeded && call.successfulCalls == 1, "\(call)\n\(logs())")
        // The phone got INVITE, ACK and BYE (the last two only reach it by the alias and the edge's route set).
        let status = phone.wait(timeout: .seconds(20))
        let phoneTrace = phone.messages
        #expect(phone.receivedRequests == ["INVITE", "ACK", "BYE"], "\(phoneTrace)\n\(logs())")
        #expect(status == 0, "phone SIPp exit \(String(describing: status)): \(phone.logTail())\n\(logs())")
        // The INVITE reached the phone with the edge's two Record-Routes (public side on top) and from
        // the public socket; its Request-URI is the phone's registered (private) Contact.
        #expect(phoneTrace.contains("INVITE sip:alice@10.99.0.5:\(phonePort) SIP/2.0"), "\(phoneTrace)")
        let publicSide = tcp ? "198.51.100.1;transport=tcp" : "198.51.100.1"
        #expect(phoneTrace.contains("Record-Route: <sip:\(publicSide);r2=on;lr;ftag="), "\(phoneTrace)")
        #expect(phoneTrace.contains("Record-Route: <sip:10.0.3.1;r2=on;lr;ftag="), "\(phoneTrace)")
        #expect(phoneTrace.contains("Via: SIP/2.0/\(transport.uppercased()) 198.51.100.1:5060;branch="), "\(phoneTrace)")
        // The BYE's Request-URI lost the alias on the way (handle_ruri_alias) and its Route set is used up.
        #expect(phoneTrace.contains("BYE sip:phone@10.99.0.5:\(phonePort) SIP/2.0"), "\(phoneTrace)")
        // The caller saw the phone's Contact with the alias the edge added.
        #expect(call.messages.contains(";alias=198.51.100.50~\(phonePort)~\(tcp ? 2 : 1)"), "\(call.messages)")
        #expect(edge.isRunning && pbx.isRunning)
    }

    /// The phone leg over TLS: a Python `ssl` phone (Debian's SIPp has no TLS) connects to the edge's
    /// TLS socket and registers (Via and Contact name 10.99.0.5, `;transport=tls`), keeps the connection
    /// with CRLF keepalives (each answered by a CRLF), and is called over that connection: the Path's
    /// `received` names the connection's source address. The edge restart closes the connection; the
    /// phone connects again and re-registers (as phones do), the PBX stores the new Path, and the call
    /// from the PBX reaches it over the new connection; ACK and BYE follow the edge's Record-Routes and
    /// the alias (proto 3, TLS) back onto it.
    @Test func tlsPhoneIsCalledOverItsRegisteredConnection() throws {
        let directory = try PackagePaths.makeTemporaryDirectory("starling-edge-tls")
        let certs = try TestCertificates.make(in: directory)
        let net = try EdgeNetwork()
        let config = try Self.edgeConfig(directory, tls: certs)
        let pbx = try Self.startPBX(net, directory: directory)
        defer { pbx.stop() }
        var edge = try Self.startEdge(net, directory: directory, config: config, tls: true)
        defer { edge.stop() }
        let python = try Requirements.tool("python3", package: "python3")
        let phone = try ServerProcess(name: "tls phone", executable: python,
                                      arguments: [PackagePaths.tool("sip_stream_client.py").path, "edge-phone", "--proto", "tls",
                                                  "--host", "198.51.100.1", "--port", "5061", "--ca", certs.ca,
                                                  "--server-name", "sip.test", "--nat-ip", "10.99.0.5", "--reconnects", "1",
                                                  "--wait", "240", "--timeout", "60"],
                                      logFile: directory.appendingPathComponent("phone.log"), namespace: net.phone)
        defer { phone.stop() }
        let logs = { "phone:\n\(phone.logTail(20))\nedge:\n\(edge.logTail(30))\nPBX:\n\(pbx.logTail(30))" }
        try phone.waitUntil("registered", timeout: .seconds(120)) { phone.log.contains("\"event\": \"registered\", \"n\": 1") }

        // The edge keeps no registration state; its restart costs the phone its connection, nothing else.
        edge.stop()
        edge = try Self.startEdge(net, directory: directory, config: config, tls: true)
        try phone.waitUntil("registered again", timeout: .seconds(120)) { phone.log.contains("\"event\": \"registered\", \"n\": 2") }

        let call = try Self.sipp("uac.xml", remote: "10.0.3.2:5060", ip: "10.0.3.2", port: 5070, in: net.pbx,
                                 directory: directory, tag: "caller", extra: ["-s", "alice"])
        #expect(call.allCallsSucceeded && call.successfulCalls == 1, "\(call)\n\(logs())")
        let status = phone.wait(timeout: .seconds(30))
        #expect(status == 0, "phone exit \(String(describing: status))\n\(logs())")
        let line = phone.log.split(separator: "\n").last(where: { $0.hasPrefix("{") && !$0.contains("\"event\"") }).map(String.init) ?? "{}"
        let result = (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any] ?? [:]
        #expect(result["ok"] as? Bool == true, "\(line)\n\(logs())")
        #expect(result["registered"] as? Int == 2 && result["reconnects"] as? Int == 1, "\(line)")
        // Every keepalive got its pong over TLS (the last one may still be on its way when the BYE came).
        let pings = result["pings"] as? Int ?? 0, pongs = result["pongs"] as? Int ?? -1
        #expect(pongs >= 1 && pongs <= pings && pongs >= pings - 2, "\(line)")
        // The INVITE came over the connection with the registered Contact as its Request-URI, the edge's
        // TLS Via and two Record-Routes (the TLS public side on top).
        let ruri = result["invite_ruri"] as? String ?? ""
        #expect(ruri.hasPrefix("INVITE sip:alice@10.99.0.5:") && ruri.hasSuffix(";transport=tls SIP/2.0"), "\(line)")
        #expect((result["invite_via"] as? String ?? "").hasPrefix("SIP/2.0/TLS 198.51.100.1:5061;branch="), "\(line)")
        let rr = result["record_route"] as? [String] ?? []
        #expect(rr.count >= 2 && rr[0].hasPrefix("<sip:198.51.100.1:5061;transport=tls;r2=on;lr;ftag=")
                && rr[1].hasPrefix("<sip:10.0.3.1;r2=on;lr;ftag="), "\(line)")
        // ACK and BYE reached the phone with the alias gone from their Request-URI.
        #expect((result["ack_ruri"] as? String ?? "").hasPrefix("ACK sip:phone@10.99.0.5:"), "\(line)")
        #expect((result["bye_ruri"] as? String ?? "").hasPrefix("BYE sip:phone@10.99.0.5:"), "\(line)")
        #expect(call.messages.contains(";alias=198.51.100.50~") && call.messages.contains("~3>"), "\(call.messages)")
        #expect(edge.isRunning && pbx.isRunning)
    }

    /// Behind real NATs (nftables in a router namespace): the phone (10.99.0.5) is masqueraded to
    /// 198.51.100.50, the edge listens on 172.16.0.2 behind a 1:1 NAT from 198.51.100.1 and advertises
    /// that address. The phone registers to 198.51.100.1; the Path's received is the phone's NAT
    /// address (198.51.100.50: the alias the caller sees says so). The call from the PBX leaves the edge with its advertised address in Via and
    /// Record-Route (nothing of 172.16.0.2 reaches the phone) and crosses the phone's NAT through the
    /// binding its REGISTER left; the phone hangs up: its BYE goes to the advertised address through
    /// the 1:1 NAT, and the edge takes both of its Route entries as its own and sends it on from the
    /// private socket.
    @Test func advertisedAddressBehindOneToOneNAT() throws {
        let directory = try PackagePaths.makeTemporaryDirectory("starling-edge-nat")
        let net = try EdgeNetwork(nat: true)
        let config = try Self.edgeConfig(directory, nat: true)
        let pbx = try Self.startPBX(net, directory: directory)
        defer { pbx.stop() }
        let edge = try Self.startEdge(net, directory: directory, config: config)
        defer { edge.stop() }
        let logs = { "edge:\n\(edge.logTail(30))\nPBX:\n\(pbx.logTail(30))" }
        let register = try Self.sipp("edge_phone_register.xml", remote: "198.51.100.1:5060", ip: "10.99.0.5", port: 5062,
                                     in: net.phone, directory: directory, tag: "register",
                                     extra: ["-s", "alice", "-set", "domain", "pbx.example", "-set", "natip", "10.99.0.5",
                                             "-set", "expires", "300"])
        try #require(register.allCallsSucceeded && register.successfulCalls == 1, "\(register)\n\(logs())")
        // The 200 came back through both NATs; the edge saw the phone's NAT address.
        #expect(register.messages.contains(";received=198.51.100.50"), "\(register.messages)")

        let phone = try SIPp.uas(scenario: PackagePaths.scenario("edge_phone_uas_bye.xml"), port: 5062, ip: "10.99.0.5",
                                 directory: directory, tag: "phone", maxCalls: 1, traceMessages: true,
                                 extra: ["-set", "natip", "10.99.0.5", "-d", "300"], namespace: net.phone)
        defer { _ = phone.stop() }
        let call = try Self.sipp("uac_wait_bye.xml", remote: "10.0.3.2:5060", ip: "10.0.3.2", port: 5070, in: net.pbx,
                                 directory: directory, tag: "caller",
                                 extra: ["-s", "alice", "-set", "tenant", "-", "-set", "target", "-"])
        #expect(call.allCallsSucceeded && call.successfulCalls == 1, "\(call)\n\(logs())")
        let status = phone.wait(timeout: .seconds(20))
        let phoneTrace = phone.messages
        #expect(status == 0, "phone SIPp exit \(String(describing: status)): \(phone.logTail())\n\(phoneTrace)\n\(logs())")
        #expect(phoneTrace.contains("INVITE sip:alice@10.99.0.5:5062 SIP/2.0"), "\(phoneTrace)")
        #expect(phoneTrace.contains("Via: SIP/2.0/UDP 198.51.100.1:5060;branch="), "\(phoneTrace)")
        // An advertised port is always written (as Kamailio writes an advertised socket).
        #expect(phoneTrace.contains("Record-Route: <sip:198.51.100.1:5060;r2=on;lr;ftag="), "\(phoneTrace)")
        #expect(!phoneTrace.contains("172.16.0.2"), "the edge's inside address leaked to the phone: \(phoneTrace)")
        // The caller saw the alias of the phone's public address and got the phone's BYE.
        #expect(call.messages.contains(";alias=198.51.100.50~5062~1"), "\(call.messages)")
        #expect(call.messages.contains("BYE sip:sipp@10.0.3.2:5070"), "\(call.messages)")
        #expect(edge.isRunning && pbx.isRunning)
    }

    @Test func badAdvertiseExits2NamingTheKey() throws {
        let directory = try PackagePaths.makeTemporaryDirectory("starling-edge-bad")
        let script = directory.appendingPathComponent("r.lua")
        try "function ksr_request_route() end".write(to: script, atomically: true, encoding: .utf8)
        let r = try Command.run(try PackagePaths.starlingBinary().path,
                                ["run", "--script", script.path, "--listen", "udp:127.0.0.1:5060 advertise 203.0.113:5060"],
                                timeout: .seconds(20))
        #expect(r.status == 2, "\(r.output)")
        #expect(r.output.contains("--listen") && r.output.contains("bad advertise \"203.0.113:5060\""), "\(r.output)")
    }
}
