import Foundation
import Testing

/// KSR.auth end to end with SHA-256 digest (RFC 8760), which SIPp cannot do: Tools/digest_client.py
/// registers to the real `starling` binary, answers the 401 and must get a 200. The password comes
/// from the script (`pv_auth_check`), so no subscriber database is needed here.
/// Missing python3 makes the test FAIL with a message naming it (never skip).
@Suite(.serialized)
struct DigestAuthTests {
    static let script = """
        function ksr_request_route()
          if not KSR.is_REGISTER() then
            KSR.sl.sl_send_reply(405, "Method Not Allowed")
            KSR.x.exit()
          end
          local rc = KSR.auth.pv_auth_check(KSR.kx.gete_fhost(), "secret", 0, 1)
          if rc < 0 then
            KSR.auth.auth_challenge(KSR.kx.gete_fhost(), 1)
            KSR.x.exit()
          end
          KSR.auth.consume_credentials()
          KSR.sl.sl_send_reply(200, "OK")
        end
        """

    /// One starling with `[modparam.auth] algorithm = "SHA-256"`: the right password gets 401 then 200,
    /// a wrong one gets 401 twice; a challenge names SHA-256 and offers qop=auth.
    @Test func sha256RegisterWithDigestClient() throws {
        let directory = try PackagePaths.makeTemporaryDirectory("starling-digest")
        let port = try Ports.freeUDPPort()
        let script = directory.appendingPathComponent("auth.lua")
        try Self.script.write(to: script, atomically: true, encoding: .utf8)
        let config = directory.appendingPathComponent("starling.toml")
        try """
        [core]
        modules = ["sl", "kx", "auth"]

        [modparam.auth]
        algorithm = "SHA-256"
        nonce_expire = 60

        """.write(to: config, atomically: true, encoding: .utf8)
        let python = try Requirements.tool("python3", package: "python3")
        let starling = try Starling.start(script: script, port: port, workers: 2, extra: ["--config", config.path],
                                          directory: directory)
        defer { starling.stop() }

        func client(_ password: String) throws -> CommandResult {
            try Command.run(python, [PackagePaths.tool("digest_client.py").path, "--server", "127.0.0.1:\(port)",
                                     "--user", "alice", "--password", password, "--domain", "example.com",
                                     "--require-algorithm", "SHA-256"], timeout: .seconds(30))
        }

        let good = try client("secret")
        #expect(good.status == 0, "digest_client.py:\n\(good.output)\nstarling log:\n\(starling.logTail())")
        #expect(good.output.contains("SIP/2.0 401 Unauthorized\nSIP/2.0 200 OK\nFINAL 200"), "\(good.output)")

        let bad = try client("wrong")
        #expect(bad.status == 1, "digest_client.py:\n\(bad.output)")
        #expect(bad.output.contains("SIP/2.0 401 Unauthorized\nSIP/2.0 401 Unauthorized\nFINAL 401"), "\(bad.output)")
        #expect(starling.isRunning, "starling died; log:\n\(starling.logTail())")
    }
}
