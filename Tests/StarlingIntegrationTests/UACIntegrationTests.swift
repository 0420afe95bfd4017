import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// KSR.uac with real peers: examples/trunk-auth.lua against a SIPp trunk that challenges and checks
/// the credentials (verifyauth), and uac_req_send's MESSAGE received by a SIPp UAS.
@Suite(.serialized)
struct UACIntegrationTests {
    func trunkCalls(code: Int, header: String, password: String = "s3cret", qop: Bool = false, calls: Int = 10) throws
        -> (SIPpResult, ServerProcess, URL) {
        let directory = try PackagePaths.makeTemporaryDirectory("starling-trunk-\(code)")
        let ports = try Ports.freeUDPPorts(3)
        let (proxyPort, trunkPort, uacPort) = (ports[0], ports[1], ports[2])
        let script = try RoutingServicesTests.example(
            "trunk-auth.lua", replacements: ["TRUNK": "sip:127.0.0.1:\(trunkPort)", "TRUNK_PASSWORD": password],
            directory: directory)
        let config = directory.appendingPathComponent("starling.toml")
        try """
        [core]
        modules = ["sl", "maxfwd", "tm", "siputils", "uac"]

        [modparam.uac]
        auth_username_avp = "$avp(auser)"
        auth_password_avp = "$avp(apass)"
        auth_realm_avp = "$avp(arealm)"

        """.write(to: config, atomically: true, encoding: .utf8)
        let scenario = directory.appendingPathComponent("uas_auth_\(code).xml")
        try String(contentsOf: PackagePaths.scenario("uas_auth.xml"), encoding: .utf8)
            .replacingOccurrences(of: "MDQOP", with: qop ? "MD5, qop=\"auth\"" : "MD5")
            .replacingOccurrences(of: "CODE", with: String(code)).replacingOccurrences(of: "HDR", with: header)
            .replacingOccurrences(of: "CHECK", with: code == 401
                ? #"<verifyauth assign_to="authvalid" username="trunkuser" password="s3cret"/>"#
                : #"<ereg regexp="Proxy-Authorization: Digest username=&quot;trunkuser&quot;, realm=&quot;carrier\.example&quot;, nonce=&quot;[0-9]+n[0-9]+&quot;, uri=&quot;sip:[^&quot;]+&quot;, opaque=&quot;op[0-9]+&quot;, response=&quot;[0-9a-f]{32}&quot;, algorithm=MD5" search_in="msg" assign_to="authvalid"/>"#)
            .write(to: scenario, atomically: true, encoding: .utf8)
        let trunk = try ServerProcess(
            name: "sipp trunk", executable: try SIPp.executable(),
            arguments: SIPp.uasArguments(scenario: scenario, port: trunkPort, directory: directory),
            logFile: directory.appendingPathComponent("trunk.out"), workingDirectory: directory)
        defer { trunk.stop() }
        try trunk.waitUntilBound(udpPort: trunkPort)
        let starling = try Starling.start(script: script, port: proxyPort, workers: 2, extra: ["--config", config.path],
                                          directory: directory)
        let result = try SIPp.runClient(target: proxyPort, localPort: uacPort, rate: 10, calls: calls,
                                        directory: directory, extra: ["-s", "+15551234"], timeout: .seconds(60))
        return (result, starling, directory)
    }

    /// 407 + Proxy-Authenticate, then the INVITE with Proxy-Authorization (its fields checked by the
    /// trunk): every call completes through Starling.
    @Test func trunkAuthWith407() throws {
        let (result, starling, _) = try trunkCalls(code: 407, header: "Proxy-Authenticate")
        defer { starling.stop() }
        #expect(result.successfulCalls == 10, "\(result)\nstarling log:\n\(starling.logTail())")
        #expect(result.failedCalls == 0, "\(result)")
        #expect(starling.isRunning)
    }

    /// 401 + WWW-Authenticate, then the INVITE with Authorization, whose digest response SIPp's
    /// verifyauth recomputes from the password.
    @Test func trunkAuthWith401() throws {
        let (result, starling, _) = try trunkCalls(code: 401, header: "WWW-Authenticate")
        defer { starling.stop() }
        #expect(result.successfulCalls == 10, "\(result)\nstarling log:\n\(starling.logTail())")
        #expect(result.failedCalls == 0, "\(result)")
    }

    /// The same with qop="auth" (cnonce, nc in the response).
    @Test func trunkAuthWith401QopAuth() throws {
        let (result, starling, _) = try trunkCalls(code: 401, header: "WWW-Authenticate", qop: true)
        defer { starling.stop() }
        #expect(result.successfulCalls == 10, "\(result)\nstarling log:\n\(starling.logTail())")
        #expect(result.failedCalls == 0, "\(result)")
    }

    /// The control: a wrong password is refused by the trunk (verifyauth, 403), so the calls fail.
    @Test func wrongPasswordIsRefusedByTheTrunk() throws {
        let (result, starling, _) = try trunkCalls(code: 401, header: "WWW-Authenticate", password: "wrong", calls: 3)
        defer { starling.stop() }
        #expect(result.successfulCalls == 0, "\(result)")
        #expect(result.failedCalls == 3, "\(result)\nstarling log:\n\(starling.logTail())")
        #expect(result.errors.contains("403"), "the caller should see the trunk's 403:\n\(result.errors)")
    }

    /// A call to 112 makes the script send a MESSAGE (From, To, an extra header, Content-Type, body)
    /// to the operator's phone (a SIPp UAS checking each of them), then answer the caller.
    @Test func uacReqSendMessageReachesTheOperator() throws {
        let directory = try PackagePaths.makeTemporaryDirectory("starling-uacreq")
        let ports = try Ports.freeUDPPorts(2)
        let (proxyPort, operatorPort) = (ports[0], ports[1])
        let script = directory.appendingPathComponent("emergency.lua")
        try """
        function ksr_request_route()
          if KSR.pv.get("$rU") == "112" then
            KSR.pv.unset("$uac_req(all)")
            KSR.pv.sets("$uac_req(method)", "MESSAGE")
            KSR.pv.sets("$uac_req(ruri)", "sip:operator@127.0.0.1:\(operatorPort)")
            KSR.pv.sets("$uac_req(furi)", "sip:emergency@starling.example")
            KSR.pv.sets("$uac_req(turi)", "sip:operator@example.com")
            KSR.pv.sets("$uac_req(hdrs)", "X-Emergency-Caller: " .. KSR.pv.get("$fU") .. "\\r\\nContent-Type: text/plain\\r\\n")
            KSR.pv.sets("$uac_req(body)", "Emergency call from " .. KSR.pv.get("$fU") .. " to 112")
            if KSR.uac.uac_req_send() > 0 then
              KSR.sl.sl_send_reply(200, "Operator Notified")
            else
              KSR.sl.sl_send_reply(500, "Notification Failed")
            end
            return
          end
          KSR.sl.sl_send_reply(404, "Not Here")
        end
        """.write(to: script, atomically: true, encoding: .utf8)
        let config = directory.appendingPathComponent("starling.toml")
        try """
        [core]
        modules = ["sl", "tm", "uac"]

        """.write(to: config, atomically: true, encoding: .utf8)
        let phone = try ServerProcess(
            name: "sipp operator phone", executable: try SIPp.executable(),
            arguments: ["-sf", PackagePaths.scenario("uas_message.xml").path, "-i", Ports.loopback, "-p", String(operatorPort),
                        "-nostdin", "-trace_stat", "-stf", directory.appendingPathComponent("phone_stat.csv").path, "-fd", "1",
                        "-trace_err", "-error_file", directory.appendingPathComponent("phone_errors.log").path],
            logFile: directory.appendingPathComponent("phone.out"), workingDirectory: directory)
        defer { phone.stop() }
        try phone.waitUntilBound(udpPort: operatorPort)
        let starling = try Starling.start(script: script, port: proxyPort, workers: 2, extra: ["--config", config.path],
                                          directory: directory)
        defer { starling.stop() }
        let r = try SIPp.runClient(scenario: PackagePaths.scenario("options.xml"), target: proxyPort, rate: 5, calls: 5,
                                   directory: directory, extra: ["-s", "112", "-set", "expected", "200"],
                                   timeout: .seconds(30))
        #expect(r.successfulCalls == 5, "\(r)\nstarling log:\n\(starling.logTail())")
        // the phone got all five, each passing its checks (a failed check fails its call)
        sleep(2)
        phone.stop()
        let got = SIPp.result(exitStatus: 0, output: "", directory: directory, tag: "phone")
        #expect(got.successfulCalls == 5, "\(got)")
        #expect(got.failedCalls == 0, "the MESSAGE failed a check: \(got)")
    }
}
