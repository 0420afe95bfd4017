import Foundation
import StarlingTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Issue 16: Kamailio's example KEMI Lua script with WITH_RTPENGINE, as the current upstream script
/// writes its media route, on Kamailio 5.6 (rtpengine.so) and on Starling, each with a real
/// rtpengine daemon. Debian's 5.6.3 copy calls rtpproxy in `ksr_route_natmanage`; the test turns it
/// into the upstream form with two exact line substitutions (`ExampleMedia.script`), everything else
/// is the shipped script and cfg (KamailioExample / StarlingExample, rtpengine in rtpproxy's place).
///
/// The call: bob registers from 127.0.0.3 and answers there (SIPp); alice calls him from behind a
/// "NAT" (her Contact is 10.0.0.1, so nat_uac_test(19) is true and the script relays the media):
/// digest challenge, INVITE, 200, ACK, BYE. On both servers bob's INVITE and alice's 200 carry
/// rtpengine's address and ports, and the session is gone from rtpengine after the BYE.
@Suite(.serialized)
struct ExampleMediaTests {
    struct Outcome: CustomStringConvertible {
        var replies: [String]
        var calleeMedia: String?
        var callerMedia: String?
        var deleted: Bool
        var description: String {
            "replies \(replies), INVITE media \(calleeMedia ?? "none"), 200 media \(callerMedia ?? "none"), deleted \(deleted)"
        }
    }

    @Test func mediaIsRelayedOnStarlingAsOnKamailio() throws {
        let kamailio = try call(server: "kamailio") { port, directory, script, ng in
            try KamailioExample.start(port: port, directory: directory, script: script, rtpengine: ng)
        }
        let starling = try call(server: "starling") { port, directory, script, ng in
            try StarlingExample.start(port: port, directory: directory, script: script, rtpengine: ng)
        }
        // final replies only: whether the UAS's 180 is relayed depends on which worker sees it first
        // (it arrives right before the 200), on both servers
        func finals(_ o: Outcome) -> [String] { o.replies.filter { !($0.hasSuffix(" 100") || $0.hasSuffix(" 180") || $0.hasSuffix(" 183")) } }
        #expect(finals(starling) == finals(kamailio), "Starling: \(starling)\nKamailio: \(kamailio)")
        #expect(starling.calleeMedia == kamailio.calleeMedia && starling.callerMedia == kamailio.callerMedia,
                "media addresses: Starling: \(starling)\nKamailio: \(kamailio)")
    }

    private func call(server name: String, start: (Int, URL, URL, Int) throws -> ServerProcess) throws -> Outcome {
        let directory = try PackagePaths.makeTemporaryDirectory("example-media-\(name)")
        let relay = try RtpengineDaemon.start(directory: directory)
        defer { relay.process.stop() }
        let script = try ExampleMedia.script(directory: directory)
        let ports = try Ports.freeUDPPorts(3)
        let (proxyPort, bobPort, callerPort) = (ports[0], ports[1], ports[2])
        let server = try start(proxyPort, directory, script, relay.port)
        defer { server.stop() }
        let domain = ExampleScript.domain

        let register = try ExampleScenarios.runSIPp(
            scenario: "register_auth.xml", target: proxyPort, ip: "127.0.0.3", localPort: bobPort, service: "bob",
            directory: directory, tag: "registerbob",
            extra: ["-set", "domain", domain, "-set", "expires", "3600", "-au", "bob", "-ap", ExampleScript.password("bob")])
        #expect(register.replies == ["1 REGISTER 401", "2 REGISTER 200"], "\(name): bob's REGISTER: \(register.replies)\n\(register.errors)")
        let uas = try SIPp.uas(port: bobPort, ip: "127.0.0.3", directory: directory, tag: "bob_uas", maxCalls: 1,
                               traceMessages: true)
        defer { uas.stop() }

        let alice = try SIPp.runUAC(scenario: PackagePaths.scenario("invite_auth_nat.xml"), target: proxyPort, ip: "127.0.0.4",
                                    localPort: callerPort, rate: 1, calls: 1, directory: directory, tag: "alice", service: "bob",
                                    traceMessages: true,
                                    extra: ["-recv_timeout", "8000", "-set", "caller", "alice", "-set", "domain", domain,
                                            "-set", "contact_host", "10.0.0.1", "-au", "alice", "-ap", ExampleScript.password("alice")],
                                    timeout: .seconds(60))
        let context = "\(name) log:\n\(server.logTail(40))\nrtpengine:\n\(relay.process.logTail(10))"
        _ = uas.wait(timeout: .seconds(10))
        let invite = SIPTrace.received(uas.messages).first { $0.hasPrefix("INVITE ") }
        let ok = SIPTrace.received(alice.messages).first { $0.hasPrefix("SIP/2.0 200") && $0.contains("INVITE") }
        func media(_ message: String?) -> String? {
            guard let message, let m = RtpengineTests.media(message) else { return nil }
            // the relay's address, and whether the port is one of its ports (ports differ between runs)
            return "\(m.ip) relay-port=\(relay.media.contains(m.port))"
        }
        let callID = invite.flatMap { msg in
            msg.split(whereSeparator: \.isNewline).first { $0.lowercased().hasPrefix("call-id:") }
                .map { $0.dropFirst(8).trimmingCharacters(in: .whitespaces) }
        }
        let deleted = callID.map { relay.waitUntilGone($0) } ?? false
        let outcome = Outcome(replies: SIPTrace.replies(alice.messages), calleeMedia: media(invite), callerMedia: media(ok),
                              deleted: deleted)
        print("\(name): \(outcome)")
        #expect(alice.exitStatus == 0 && outcome.replies.contains("2 INVITE 200") && outcome.replies.contains("3 BYE 200"),
                "\(name): alice's call: \(outcome.replies)\n\(alice.errors)\n\(context)")
        #expect(outcome.calleeMedia == "127.0.0.2 relay-port=true", "\(name): bob's INVITE: \(invite ?? "none")\n\(context)")
        #expect(outcome.callerMedia == "127.0.0.2 relay-port=true", "\(name): alice's 200: \(ok ?? "none")\n\(context)")
        #expect(callID != nil && deleted, "\(name): the session is still in rtpengine: \((try? relay.calls()) ?? "")\n\(context)")
        #expect(server.isRunning, "\(name) exited\n\(server.logTail())")
        return outcome
    }
}

/// The example Lua script in the form the current upstream script has (rtpengine under
/// WITH_RTPENGINE): Debian's 5.6.3 copy with two lines of `ksr_route_natmanage` replaced; each must
/// match exactly once.
enum ExampleMedia {
    static let substitutions: [(line: String, replacement: String)] = [
        ("if not KSR.rtpproxy then", "if not KSR.rtpproxy and not KSR.rtpengine then"),
        ("KSR.rtpproxy.rtpproxy_manage(\"co\");", """
            if KSR.kx.ifdef('WITH_RTPENGINE') then
            		if KSR.nathelper.nat_uac_test(8)>0 then
            			KSR.rtpengine.rtpengine_manage("replace-origin replace-session-connection SIP-source-address");
            		else
            			KSR.rtpengine.rtpengine_manage("replace-origin replace-session-connection");
            		end
            	else
            		if KSR.nathelper.nat_uac_test(8)>0 then
            			KSR.rtpproxy.rtpproxy_manage("co");
            		else
            			KSR.rtpproxy.rtpproxy_manage("cor");
            		end
            	end
            """),
    ]

    static func script(directory: URL) throws -> URL {
        let shipped = try String(contentsOf: try ExampleScript.luaScript(), encoding: .utf8)
        var lines = shipped.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        for s in substitutions {
            let matches = lines.indices.filter { lines[$0].trimmingCharacters(in: .whitespaces) == s.line }
            guard matches.count == 1 else {
                throw HarnessError("the example Lua script has \(matches.count) lines `\(s.line)` (expected 1)")
            }
            let indent = String(lines[matches[0]].prefix { $0 == "\t" || $0 == " " })
            lines[matches[0]] = indent + s.replacement
        }
        let url = directory.appendingPathComponent("kamailio-basic-kemi-lua-rtpengine.lua")
        try lines.joined(separator: "\n").write(to: url, atomically: true, encoding: .utf8)
        return url
    }
}
