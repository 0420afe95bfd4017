import StarlingKEMI
import StarlingLua
import Testing

@Suite struct KSRReferencesTests {
    static let script = """
        -- KSR.commented.out()
        --[[ KSR.long.comment()
        ]]--
        local s = "KSR.in.string()"
        local t = [==[ KSR.long.string ]==]
        function ksr_request_route()
            KSR.sl.send_reply(200, "OK")
            KSR.sl.send_replyy(200, "typo")
            if KSR.rtpproxy then KSR.rtpproxy.rtpproxy_manage("co") end
            KSR.info("x"); KSR.infoo("y")
            KSR.x.exit(); KSR.x.exitt()
            local myKSR = 1; notKSR.foo = 2
        end
        """

    static let registry = KemiRegistry(exports: [
        KemiExport("sl", "send_reply", [.int, .str], returns: .int) { _, _ in .int(1) },
        KemiExport("", "info", [.str], returns: .none) { _, _ in .none },
    ], modules: ["sl"])

    @Test func scanSkipsCommentsAndStrings() {
        let refs = KSRReferences.scan(Array(Self.script.utf8))
        #expect(refs.map(\.description) == [
            "7: KSR.sl.send_reply", "8: KSR.sl.send_replyy", "9: KSR.rtpproxy", "9: KSR.rtpproxy.rtpproxy_manage",
            "10: KSR.info", "10: KSR.infoo", "11: KSR.x.exit", "11: KSR.x.exitt",
        ])
    }

    @Test func unresolvedNames() {
        let bad = KSRReferences.unresolved(KSRReferences.scan(Array(Self.script.utf8)), registry: Self.registry)
        #expect(bad.map { "\($0.0.name): \($0.1)" } == [
            "KSR.sl.send_replyy: not exported by module sl",
            "KSR.rtpproxy: not a core function or a loaded module",
            "KSR.rtpproxy.rtpproxy_manage: module rtpproxy not loaded (KSR.rtpproxy is nil)",
            "KSR.infoo: not a core function or a loaded module",
            "KSR.x.exitt: not a KSR.x function",
        ])
    }
}
