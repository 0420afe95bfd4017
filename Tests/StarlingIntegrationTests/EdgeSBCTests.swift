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
@Suite(.serialized)
struct EdgeSBCTests {
    /// The three namespaces and their links (deleted on deinit).
    final class EdgeNetwork {
        let phone: NetworkNamespace
        let edge: NetworkNamespace
        let pbx: NetworkNamespace

        init() throws {
            phone = try NetworkNamespace()
            edge = try NetworkNamespace()
            pbx = try NetworkNamespace()
            let ip = try Requirements.tool("ip", package: "iproute2")
            let steps: [[String]] = [
                ["-n", edge.name, "link", "add", "pub0", "type", "veth", "peer", "name", "eth0", "netns", phone.name],
                ["-n", edge.name, "link", "add", "priv0", "type", "veth", "peer", "name", "eth0", "netns", pbx.name],
                ["-n", edge.name, "addr", "add", "198.51.100.1/24", "dev", "pub0"],
                ["-n", edge.name, "addr", "add", "10.0.3.1/24", "dev", "priv0"],
                ["-n", edge.name, "link", "set", "pub0", "up"],
                ["-n", edge.name, "link", "set", "priv0", "up"],
                ["-n", phone.name, "addr", "add", "198.51.100.50/24", "dev", "eth0"],
                ["-n", phone.name, "link", "set", "eth0", "up"],
                ["-n", pbx.name, "addr", "add", "10.0.3.2/24", "dev", "eth0"],
                ["-n", pbx.name, "link", "set", "eth0", "up"],
            ]
            for args in steps {
                let r = try Command.run(ip, args, timeout: .seconds(20))
                guard r.status == 0 else { throw HarnessError("ip \(args.joined(separator: " ")) failed: \(r.output)") }
            }
        }

        deinit {
            phone.delete()
            edge.delete()
            pbx.delete()
        }
    }

    static let edgeConfig = PackagePaths.root.appendingPathComponent("examples/edge-sbc/starling.toml")

    /// Starts the example edge in its namespace (working directory: the repository root, as the example
    /// config's paths are) and waits for its three sockets.
    static func startEdge(_ net: EdgeNetwork, directory: URL) throws -> ServerProcess {
        let edge = try ServerProcess(name: "starling edge", executable: try PackagePaths.starlingBinary().path,
                                     arguments: ["run", "--config", edgeConfig.path, "--workers", "1", "--log-level", "info"],
                                     logFile: directory.appendingPathComponent("edge.log"),
                                     workingDirectory: PackagePaths.root, namespace: net.edge)
        do {
            try edge.waitUntilBound(udpPort: 5060, ip: "198.51.100.1")
            try edge.waitUntilBound(udpPort: 5060, ip: "10.0.3.1")
            try edge.waitUntilListening(tcpPort: 5060, ip: "198.51.100.1")
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
