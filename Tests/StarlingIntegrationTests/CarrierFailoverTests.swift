import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The failure route runs on the request as relayed (Kamailio's `fake_req`), with real peers: the
/// request route sends calls to a carrier gateway through `$du` while the Request-URI names a host
/// where nothing listens; the gateway challenges (407), the failure route answers with `uac_auth()`
/// and relays again without setting `$du`: the retry must go to the gateway (`$du` as relayed), not
/// to the Request-URI's host. The same script and peers run against Kamailio 5.6 as the reference.
@Suite(.serialized)
struct CarrierFailoverTests {
    @Test(arguments: ["starling", "kamailio"])
    func failureRouteRelaysToTheRelayedDU(server: String) throws {
        let directory = try PackagePaths.makeTemporaryDirectory("starling-carrier-du")
        let ports = try Ports.freeUDPPorts(4)
        let (proxyPort, gatewayPort, uacPort, deadPort) = (ports[0], ports[1], ports[2], ports[3])
        let script = directory.appendingPathComponent("carrier.lua")
        try """
        function ksr_request_route()
          if KSR.is_CANCEL() then
            if KSR.tm.t_check_trans() > 0 then KSR.tm.t_relay() end
            KSR.x.exit()
          end
          if KSR.tm.t_check_trans() == 0 then KSR.x.exit() end
          if KSR.siputils.has_totag() > 0 then
            if KSR.is_ACK() then KSR.forward() elseif KSR.tm.t_relay() < 0 then KSR.sl.sl_reply_error() end
            KSR.x.exit()
          end
          -- The carrier: the R-URI keeps the number at a host nobody answers on, $du is the gateway.
          KSR.seturi("sip:" .. KSR.pv.get("$rU") .. "@127.0.0.1:\(deadPort)")
          KSR.setdsturi("sip:127.0.0.1:\(gatewayPort)")
          KSR.pv.sets("$avp(auser)", "trunkuser")
          KSR.pv.sets("$avp(apass)", "s3cret")
          KSR.pv.sets("$avp(arealm)", "carrier.example")
          KSR.tm.t_on_failure("carrier_failure")
          if KSR.tm.t_relay() < 0 then KSR.sl.sl_reply_error() end
        end

        function carrier_failure()
          if KSR.tm.t_is_canceled() > 0 then return end
          if KSR.tm.t_check_status("401|407") > 0 and KSR.uac.uac_auth() > 0 then
            KSR.tm.t_relay()
          end
        end
        """.write(to: script, atomically: true, encoding: .utf8)
        let config = directory.appendingPathComponent("starling.toml")
        try """
        [core]
        modules = ["sl", "tm", "siputils", "uac"]

        [modparam.tm]
        fr_timer = 2000
        fr_inv_timer = 4000

        [modparam.uac]
        auth_username_avp = "$avp(auser)"
        auth_password_avp = "$avp(apass)"

        """.write(to: config, atomically: true, encoding: .utf8)
        // The gateway: 407 to the first INVITE, 180/200 to the second when it carries the credentials.
        let scenario = directory.appendingPathComponent("gateway.xml")
        try String(contentsOf: PackagePaths.scenario("uas_auth.xml"), encoding: .utf8)
            .replacingOccurrences(of: "MDQOP", with: "MD5")
            .replacingOccurrences(of: "CODE", with: "407").replacingOccurrences(of: "HDR", with: "Proxy-Authenticate")
            .replacingOccurrences(of: "CHECK", with: #"<ereg regexp="Proxy-Authorization: Digest username=&quot;trunkuser&quot;, realm=&quot;carrier\.example&quot;" search_in="msg" assign_to="authvalid"/>"#)
            .write(to: scenario, atomically: true, encoding: .utf8)
        let gateway = try SIPp.uas(scenario: scenario, port: gatewayPort, directory: directory, tag: "gateway")
        defer { _ = gateway.stop() }
        let proxy: ServerProcess
        if server == "kamailio" {
            proxy = try Kamailio.start(
                script: script, port: proxyPort, modules: ["sl", "tm", "pv", "siputils", "uac"],
                extra: """
                    modparam("tm", "fr_timer", 2000)
                    modparam("tm", "fr_inv_timer", 4000)
                    modparam("uac", "restore_mode", "none")
                    modparam("uac", "auth_username_avp", "$avp(auser)")
                    modparam("uac", "auth_password_avp", "$avp(apass)")
                    modparam("uac", "auth_realm_avp", "$avp(arealm)")
                    """,
                directory: directory)
        } else {
            proxy = try Starling.start(script: script, port: proxyPort, workers: 2, extra: ["--config", config.path],
                                       directory: directory)
        }
        defer { proxy.stop() }
        let result = try SIPp.runUAC(target: proxyPort, localPort: uacPort, rate: 10, calls: 10,
                                        directory: directory, extra: ["-s", "+15551234"], timeout: .seconds(60))
        #expect(result.successfulCalls == 10 && result.failedCalls == 0, "\(server): \(result)\nlog:\n\(proxy.logTail())")
        #expect(proxy.isRunning, "\(server) died; log:\n\(proxy.logTail())")
    }
}
