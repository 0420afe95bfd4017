import Testing
import Foundation
import SIPCore
import SIPTransport
import StarlingKEMI
import StarlingTesting
import KSRModules
import SIPTransaction

/// A stateful proxy script in Kamailio's style: absorb retransmissions, route CANCEL and ACK through
/// the transaction layer, re-route 486/408 to a second destination from the failure route.
private let proxyScript = """
    function ksr_request_route()
      if KSR.is_CANCEL() then
        if KSR.tm.t_check_trans() > 0 then KSR.tm.t_relay() end
        return
      end
      if KSR.is_ACK() then
        if KSR.tm.t_check_trans() > 0 then KSR.tm.t_relay() end
        return
      end
      if KSR.tm.t_check_trans() == 0 then
        KSR.pv.seti("$var(absorbed)", KSR.pv.get("$var(absorbed)") + 1)
        return
      end
      KSR.tm.t_on_failure("failure_route")
      KSR.tm.t_on_reply("onreply_route")
      KSR.setdsturi("sip:192.0.2.20:5060")
      KSR.pv.seti("$var(relay)", KSR.tm.t_relay())
    end
    function onreply_route()
      KSR.pv.seti("$var(onreply)", KSR.tm.t_get_status_code())
    end
    function failure_route()
      KSR.pv.seti("$var(fcode)", KSR.tm.t_get_status_code())
      KSR.pv.seti("$var(fis)", KSR.tmx.t_is_failure_route())
      KSR.pv.seti("$var(ftimeout)", KSR.tm.t_branch_timeout())
      KSR.pv.seti("$var(fcanceled)", KSR.tm.t_is_canceled())
      if KSR.tm.t_is_canceled() > 0 then return end
      if KSR.tm.t_check_status("486|408") > 0 and KSR.pv.get("$var(rerouted)") == 0 then
        KSR.pv.seti("$var(rerouted)", 1)
        KSR.setdsturi("sip:192.0.2.30:5060")
        KSR.pv.seti("$var(frelay)", KSR.tm.t_relay())
      end
    end
    """

private let caller = SocketAddress(ip: "192.0.2.10", port: 5060)!
private let callee1 = SocketAddress(ip: "192.0.2.20", port: 5060)!
private let callee2 = SocketAddress(ip: "192.0.2.30", port: 5060)!

/// A reply to a request as it was sent: its Via headers, From, To (with a tag), Call-ID and CSeq.
private func reply(to sent: SentMessage, _ code: Int, _ reason: String, toTag: String? = "callee1",
                   method: String? = nil) -> String {
    var out = "SIP/2.0 \(code) \(reason)\r\n"
    for line in sent.text.split(separator: "\r\n", omittingEmptySubsequences: false) {
        let l = String(line)
        if l.hasPrefix("Via:") || l.hasPrefix("From:") || l.hasPrefix("Call-ID:") {
            out += l + "\r\n"
        } else if l.hasPrefix("To:") {
            out += l + (toTag.map { ";tag=\($0)" } ?? "") + "\r\n"
        } else if l.hasPrefix("CSeq:") {
            if let method { out += "CSeq: \(l.split(separator: " ")[1]) \(method)\r\n" } else { out += l + "\r\n" }
        }
    }
    return out + "Content-Length: 0\r\n\r\n"
}

private func toTag(_ s: SentMessage) -> String {
    guard let to = s.text.split(separator: "\r\n").first(where: { $0.hasPrefix("To:") }),
          let r = to.range(of: ";tag=") else { return "" }
    return String(to[r.upperBound...])
}

private func int(_ h: ScriptHarness, _ name: String) -> Int {
    if case .int(let v)? = h.context.worker.vars[name] { return v }
    return 0
}

private func harness(_ params: [String: [String]] = [:]) throws -> ScriptHarness {
    try ScriptHarness(script: proxyScript, config: ModuleConfiguration(params: ["tm": params]))
}

private func status(_ s: SentMessage) -> Int { s.message.map { $0.isRequest ? 0 : $0.statusCode } ?? -1 }
private func isRequest(_ s: SentMessage, _ method: String) -> Bool { s.text.hasPrefix(method + " ") }

@Suite struct TMFlowTests {
    @Test func relayAbsorbRetransmissionFailureRouteAndFree() throws {
        let h = try harness()
        try h.route(Msg.invite, from: caller)
        #expect(int(h, "relay") == 1)
        #expect(h.sender.sent.count == 2)
        // 100 Trying to the caller, the INVITE to $du with our Via on top (a tm branch).
        #expect(status(h.sender.sent[0]) == 100)
        #expect(h.sender.sent[0].destination == caller)
        let inv = h.sender.sent[1]
        #expect(isRequest(inv, "INVITE"))
        #expect(inv.destination == callee1)
        #expect(inv.text.contains("Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKtm"))
        #expect(inv.message?.values(.via).count == 2)
        #expect(h.transactions.count == 1)

        // The INVITE again: absorbed, the 100 is sent again, nothing goes downstream.
        h.sender.clear()
        try h.route(Msg.invite, from: caller)
        #expect(int(h, "absorbed") == 1)
        #expect(h.sender.sent.count == 1)
        #expect(status(h.sender.sent[0]) == 100)

        // 486 from the first callee: ACKed hop by hop, the failure route re-routes to the second.
        h.sender.clear()
        try h.route(reply(to: inv, 486, "Busy Here"), from: callee1)
        #expect(int(h, "onreply") == 486)
        #expect(int(h, "fcode") == 486)
        #expect(int(h, "fis") == 1)
        #expect(int(h, "frelay") == 1)
        let ack = h.sender.sent.first { isRequest($0, "ACK") }
        #expect(ack?.destination == callee1)
        let inv2 = try #require(h.sender.sent.first { isRequest($0, "INVITE") })
        #expect(inv2.destination == callee2)
        #expect(!h.sender.sent.contains { status($0) == 486 }, "the 486 must not reach the caller")
        let b1 = inv.message?.topVia.map { inv.message!.string($0.branch!) }
        let b2 = inv2.message?.topVia.map { inv2.message!.string($0.branch!) }
        #expect(b1 != b2)

        // 180 then 200 from the second callee: both forwarded upstream with our Via removed.
        h.sender.clear()
        try h.route(reply(to: inv2, 180, "Ringing", toTag: "c2"), from: callee2)
        try h.route(reply(to: inv2, 200, "OK", toTag: "c2"), from: callee2)
        #expect(h.sender.sent.map(status) == [180, 200])
        #expect(h.sender.sent.allSatisfy { $0.destination == caller })
        #expect(h.sender.sent[1].message?.values(.via).count == 1)
        // A 2xx retransmission goes through too (RFC 6026 Accepted).
        h.sender.clear()
        try h.route(reply(to: inv2, 200, "OK", toTag: "c2"), from: callee2)
        #expect(h.sender.sent.map(status) == [200])

        // Everything is freed once the timers have run out.
        for _ in 0..<10 { h.advance(by: .seconds(10)) }
        #expect(h.transactions.count == 0)
        #expect(h.transactions.keyCount == 0)
    }

    @Test func timeoutRunsFailureRouteWith408() throws {
        let h = try harness(["fr_timer": ["1000"], "fr_inv_timer": ["2000"]])
        try h.route(Msg.invite, from: caller)
        #expect(int(h, "relay") == 1)
        h.sender.clear()
        // Timer A retransmits the INVITE; Timer B (fr_timer) gives up after 1 s.
        h.advance(by: .milliseconds(600))
        #expect(h.sender.sent.contains { isRequest($0, "INVITE") && $0.destination == callee1 })
        h.advance(by: .milliseconds(600))
        #expect(int(h, "fcode") == 408)
        #expect(int(h, "ftimeout") == 1)
        #expect(int(h, "frelay") == 1)
        #expect(h.sender.sent.contains { isRequest($0, "INVITE") && $0.destination == callee2 })
        // The second branch times out too: no failure route armed any more, 408 to the caller.
        h.sender.clear()
        for _ in 0..<5 { h.advance(by: .milliseconds(500)) }
        #expect(h.sender.sent.contains { status($0) == 408 && $0.destination == caller })
        // The caller ACKs the 408: absorbed hop by hop.
        let r408 = try #require(h.sender.sent.first { status($0) == 408 })
        let ackText = Msg.invite.replacingOccurrences(of: "INVITE sip:", with: "ACK sip:")
            .replacingOccurrences(of: "CSeq: 314159 INVITE", with: "CSeq: 314159 ACK")
            .replacingOccurrences(of: "To: Bob <sip:bob@example.com>", with: "To: Bob <sip:bob@example.com>;tag=\(toTag(r408))")
        h.sender.clear()
        try h.route(ackText, from: caller)
        #expect(h.sender.sent.isEmpty)
        for _ in 0..<10 { h.advance(by: .seconds(5)) }
        #expect(h.transactions.count == 0)
        #expect(h.transactions.keyCount == 0)
    }

    @Test func cancelDuringRinging() throws {
        let h = try harness()
        try h.route(Msg.invite, from: caller)
        let inv = try #require(h.sender.sent.first { isRequest($0, "INVITE") })
        h.sender.clear()
        try h.route(reply(to: inv, 180, "Ringing"), from: callee1)
        #expect(h.sender.sent.map(status) == [180])
        h.sender.clear()
        let cancel = """
            CANCEL sip:bob@example.com SIP/2.0\r
            Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK776asdhds;rport\r
            Max-Forwards: 70\r
            To: Bob <sip:bob@example.com>\r
            From: "Alice" <sip:alice@atlanta.example.com>;tag=1928301774\r
            Call-ID: a84b4c76e66710@pc33\r
            CSeq: 314159 CANCEL\r
            Content-Length: 0\r
            \r

            """
        try h.route(cancel, from: caller)
        // 200 to the CANCEL, CANCEL down the pending branch (same branch id as the INVITE).
        #expect(h.sender.sent.contains { status($0) == 200 && $0.destination == caller && $0.text.contains("CANCEL") })
        let down = try #require(h.sender.sent.first { isRequest($0, "CANCEL") })
        #expect(down.destination == callee1)
        #expect(down.message?.topVia.map { down.message!.string($0.branch!) } == inv.message?.topVia.map { inv.message!.string($0.branch!) })
        h.sender.clear()
        // The callee: 200 to the CANCEL (absorbed), 487 to the INVITE (ACKed, relayed to the caller).
        try h.route(reply(to: down, 200, "OK", method: "CANCEL"), from: callee1)
        #expect(h.sender.sent.isEmpty)
        try h.route(reply(to: inv, 487, "Request Terminated"), from: callee1)
        #expect(int(h, "fcanceled") == 1)
        #expect(h.sender.sent.contains { isRequest($0, "ACK") && $0.destination == callee1 })
        #expect(h.sender.sent.contains { status($0) == 487 && $0.destination == caller })
        for _ in 0..<10 { h.advance(by: .seconds(10)) }
        #expect(h.transactions.count == 0)
        #expect(h.transactions.keyCount == 0)
    }
}

@Suite struct TMReturnCodeTests {
    private func run(_ body: String, _ message: String = Msg.invite) throws -> ScriptHarness {
        let h = try ScriptHarness(script: "function ksr_request_route()\n\(body)\nend\nfunction ksr_reply_route()\n\(body)\nend\n")
        try h.route(message, from: caller)
        return h
    }

    @Test func newtranCheckTransAndReply() throws {
        let h = try run("""
            KSR.pv.seti("$var(check0)", KSR.tm.t_check_trans())
            KSR.pv.seti("$var(reply0)", KSR.tm.t_reply(404, "Not Found"))
            KSR.pv.seti("$var(isset0)", KSR.tm.t_is_set("failure_route"))
            KSR.tm.t_on_failure("x")
            KSR.pv.seti("$var(isset1)", KSR.tm.t_is_set("f"))
            KSR.pv.seti("$var(new1)", KSR.tm.t_newtran())
            KSR.pv.seti("$var(new2)", KSR.tm.t_newtran())
            KSR.pv.seti("$var(isset2)", KSR.tm.t_is_set("failure_route"))
            KSR.pv.seti("$var(req)", KSR.tmx.t_is_request_route())
            KSR.pv.seti("$var(fail)", KSR.tmx.t_is_failure_route())
            KSR.pv.seti("$var(lookup)", KSR.tm.t_lookup_request())
            KSR.pv.seti("$var(sl)", KSR.sl.send_reply(486, "Busy Here"))
            KSR.pv.seti("$var(status)", KSR.tm.t_check_status("^48[0-9]$"))
            KSR.pv.seti("$var(code)", KSR.tm.t_get_status_code())
            KSR.pv.seti("$var(again)", KSR.tm.t_reply(500, "Too Late"))
            """)
        #expect(int(h, "check0") == -1)
        #expect(int(h, "reply0") == -1)
        #expect(int(h, "isset0") == -1)
        #expect(int(h, "isset1") == 1)
        #expect(int(h, "new1") == 1)
        #expect(int(h, "new2") == -10)
        #expect(int(h, "isset2") == 1)
        #expect(int(h, "req") == 1)
        #expect(int(h, "fail") == -1)
        #expect(int(h, "lookup") == 1)
        #expect(int(h, "sl") == 1)
        #expect(int(h, "status") == 1)
        #expect(int(h, "code") == 486)
        #expect(int(h, "again") == -1, "a second final reply is refused by the machine")
        #expect(h.sender.sent.map(status) == [486])
        // The INVITE again: t_check_trans absorbs it and the 486 goes out again; t_newtran says 0.
        h.sender.clear()
        let h2 = h
        try h2.route(Msg.invite, from: caller)
        #expect(int(h2, "check0") == 0)
        #expect(h2.sender.sent.map(status).filter { $0 == 486 }.count >= 1)
        for _ in 0..<10 { h.advance(by: .seconds(10)) }
        #expect(h.transactions.count == 0)
    }

    @Test func statelessPathUnchangedWithoutTransaction() throws {
        let h = try run(#"KSR.pv.seti("$var(sl)", KSR.sl.send_reply(404, "Not Found"))"#)
        #expect(int(h, "sl") == 1)
        #expect(h.sender.sent.map(status) == [404])
        #expect(h.transactions.count == 0)
    }

    @Test func modparamsMapOntoTimers() {
        let s = TMStore(config: ModuleConfiguration(params: ["tm": ["fr_timer": ["2000"], "fr_inv_timer": ["9000"],
                                                                     "retr_timer1": ["250"], "retr_timer2": ["2000"]]]))
        #expect(s.timerConfiguration.timerB == .seconds(2))
        #expect(s.timerConfiguration.timerF == .seconds(2))
        #expect(s.timerConfiguration.timerC == .seconds(9))
        #expect(s.timerConfiguration.t1 == .milliseconds(250))
        #expect(s.timerConfiguration.t2 == .seconds(2))
        let d = TMStore()
        #expect(d.timerConfiguration.timerB == .seconds(30))
        #expect(d.timerConfiguration.timerC == .seconds(120))
    }
}

/// Parallel forking: the R-URI plus appended branches, a branch route per branch (one dropped),
/// CANCEL of the pending branch when another answers 2xx, best-response selection with a failure route.
@Suite struct TMForkingTests {
    static let script = """
        function ksr_request_route()
          if KSR.tm.t_check_trans() == 0 then return end
          KSR.corex.append_branch_uri("sip:carol@192.0.2.40:5060")
          KSR.corex.append_branch_uri("sip:dave@192.0.2.50:5060")
          KSR.tm.t_on_branch("branch_route")
          KSR.tm.t_on_failure("failure_route")
          KSR.pv.seti("$var(relay)", KSR.tm.t_relay())
        end
        function branch_route()
          KSR.pv.seti("$var(nb)", KSR.pv.get("$var(nb)") + 1)
          KSR.pv.seti("$var(isbranch)", KSR.tmx.t_is_branch_route())
          if KSR.pv.get("$T_branch_idx") == 2 then KSR.x.drop() end
        end
        function failure_route()
          KSR.pv.seti("$var(fcode)", KSR.pv.get("$T_reply_code"))
          KSR.pv.seti("$var(grep486)", KSR.tm.t_grep_status(486))
          KSR.pv.seti("$var(replied)", KSR.tm.t_any_replied())
        end
        """
    static let carol = SocketAddress(ip: "192.0.2.40", port: 5060)!

    private func start() throws -> (ScriptHarness, SentMessage, SentMessage) {
        let h = try ScriptHarness(script: Self.script, services: TestServices(hosts: ["example.com": callee1]))
        try h.route(Msg.invite, from: caller)
        #expect(int(h, "relay") == 1)
        #expect(int(h, "nb") == 3)
        #expect(int(h, "isbranch") == 1)
        let invites = h.sender.sent.filter { isRequest($0, "INVITE") }
        #expect(invites.map(\.destination) == [callee1, Self.carol], "the third branch was dropped by the branch route")
        #expect(invites[0].text.hasPrefix("INVITE sip:bob@example.com SIP/2.0"))
        #expect(invites[1].text.hasPrefix("INVITE sip:carol@192.0.2.40:5060 SIP/2.0"))
        h.sender.clear()
        return (h, invites[0], invites[1])
    }

    @Test func twoHundredCancelsTheOtherBranch() throws {
        let (h, bob, carol) = try start()
        try h.route(reply(to: carol, 180, "Ringing", toTag: "carol"), from: Self.carol)
        try h.route(reply(to: bob, 200, "OK", toTag: "bob"), from: callee1)
        #expect(h.sender.sent.filter { !$0.text.hasPrefix("CANCEL") }.map(status) == [180, 200])
        let cancel = try #require(h.sender.sent.first { isRequest($0, "CANCEL") })
        #expect(cancel.destination == Self.carol)
        h.sender.clear()
        try h.route(reply(to: carol, 487, "Request Terminated", toTag: "carol"), from: Self.carol)
        #expect(h.sender.sent.contains { isRequest($0, "ACK") && $0.destination == Self.carol })
        #expect(!h.sender.sent.contains { status($0) == 487 }, "a final was already sent upstream")
        #expect(int(h, "fcode") == 0, "no failure route after a 2xx")
        for _ in 0..<10 { h.advance(by: .seconds(10)) }
        #expect(h.transactions.count == 0)
        #expect(h.transactions.keyCount == 0)
    }

    @Test func bestResponseAfterAllBranchesFail() throws {
        let (h, bob, carol) = try start()
        try h.route(reply(to: carol, 486, "Busy Here", toTag: "carol"), from: Self.carol)
        #expect(int(h, "fcode") == 0, "branch 0 is still pending")
        #expect(!h.sender.sent.contains { status($0) == 486 })
        try h.route(reply(to: bob, 404, "Not Found", toTag: "bob"), from: callee1)
        #expect(int(h, "fcode") == 404, "the lowest class wins (4xx, the first of them)")
        #expect(int(h, "grep486") == 1)
        #expect(int(h, "replied") == 1)
        #expect(h.sender.sent.filter { isRequest($0, "ACK") }.count == 2)
        let finals = h.sender.sent.filter { status($0) >= 300 }
        #expect(finals.count == 1)
        #expect(finals.first?.destination == caller)
        for _ in 0..<10 { h.advance(by: .seconds(10)) }
        #expect(h.transactions.count == 0)
    }
}

@Suite struct TMFailureRouteReplyTests {
    /// A failure route that answers itself (t_reply / stateful sl.send_reply) replaces the relayed reply.
    @Test func failureRouteReplyReplacesTheBestResponse() throws {
        for call in ["KSR.tm.t_reply(503, \"Try Later\")", "KSR.sl.send_reply(503, \"Try Later\")"] {
            let h = try ScriptHarness(script: """
                function ksr_request_route()
                  KSR.tm.t_on_failure("failed")
                  KSR.setdsturi("sip:192.0.2.20:5060")
                  KSR.tm.t_relay()
                end
                function failed()
                  KSR.pv.seti("$var(r)", \(call))
                end
                """)
            try h.route(Msg.invite, from: caller)
            let inv = try #require(h.sender.sent.first { isRequest($0, "INVITE") })
            h.sender.clear()
            try h.route(reply(to: inv, 486, "Busy Here"), from: callee1)
            #expect(int(h, "r") == 1, "\(call)")
            #expect(h.sender.sent.filter { status($0) >= 300 }.map(status) == [503], "\(call)")
            for _ in 0..<10 { h.advance(by: .seconds(10)) }
            #expect(h.transactions.count == 0)
        }
    }

    /// CANCEL before any provisional reply: the branch is never answered; the caller gets 487.
    @Test func cancelBeforeAnyProvisionalEndsWith487() throws {
        let h = try ScriptHarness(script: """
            function ksr_request_route()
              if KSR.is_CANCEL() then KSR.tm.t_relay() return end
              KSR.setdsturi("sip:192.0.2.20:5060")
              KSR.tm.t_relay()
            end
            """, config: ModuleConfiguration(params: ["tm": ["fr_timer": ["1000"]]]))
        try h.route(Msg.invite, from: caller)
        let cancel = Msg.invite.replacingOccurrences(of: "INVITE sip:", with: "CANCEL sip:")
            .replacingOccurrences(of: "CSeq: 314159 INVITE", with: "CSeq: 314159 CANCEL")
        h.sender.clear()
        try h.route(cancel, from: caller)
        #expect(h.sender.sent.map(status) == [200])
        h.sender.clear()
        for _ in 0..<4 { h.advance(by: .milliseconds(500)) }
        #expect(h.sender.sent.contains { status($0) == 487 && $0.destination == caller })
        for _ in 0..<10 { h.advance(by: .seconds(10)) }
        #expect(h.transactions.count == 0)
    }
}

@Suite struct TMOnReplyDropTests {
    /// KSR.x.drop() in the onreply route stops a provisional reply, never a final one; t_drop_replies
    /// in the failure route takes the earlier replies out of the best-response choice.
    @Test func dropStopsProvisionalsOnly() throws {
        let h = try ScriptHarness(script: """
            function ksr_request_route()
              KSR.tm.t_on_reply("rpl")
              KSR.tm.t_on_failure("failed")
              KSR.setdsturi("sip:192.0.2.20:5060")
              KSR.tm.t_relay()
            end
            function rpl()
              KSR.pv.seti("$var(seen)", KSR.pv.get("$var(seen)") + 1)
              KSR.pv.seti("$var(isreply)", KSR.tmx.t_is_reply_route())
              KSR.x.drop()
            end
            function failed()
              KSR.tm.t_drop_replies("a")
              KSR.setdsturi("sip:192.0.2.30:5060")
              KSR.tm.t_relay()
            end
            """)
        try h.route(Msg.invite, from: caller)
        let inv = try #require(h.sender.sent.first { isRequest($0, "INVITE") })
        h.sender.clear()
        try h.route(reply(to: inv, 180, "Ringing"), from: callee1)
        #expect(h.sender.sent.isEmpty, "the dropped 180 was relayed")
        try h.route(reply(to: inv, 600, "Busy Everywhere"), from: callee1)
        let inv2 = try #require(h.sender.sent.first { isRequest($0, "INVITE") && $0.destination == callee2 })
        h.sender.clear()
        try h.route(reply(to: inv2, 480, "Temporarily Unavailable", toTag: "c2"), from: callee2)
        #expect(int(h, "seen") == 3)
        #expect(int(h, "isreply") == 1)
        // Without t_drop_replies the 600 would win; dropped, the 480 of the new branch is relayed.
        #expect(h.sender.sent.filter { status($0) >= 300 }.map(status) == [480])
        for _ in 0..<10 { h.advance(by: .seconds(10)) }
        #expect(h.transactions.count == 0)
    }
}

@Suite struct TMChallengeTests {
    /// Two branches challenge with 407: one 407 goes upstream with both Proxy-Authenticate headers;
    /// t_on_branch_failure runs for each branch with its code.
    @Test func challengesAreAggregatedAndBranchFailureRuns() throws {
        let h = try ScriptHarness(script: """
            function ksr_request_route()
              KSR.corex.append_branch_uri("sip:carol@192.0.2.40:5060")
              KSR.tm.t_on_branch_failure("bf")
              KSR.setdsturi("sip:192.0.2.20:5060")
              KSR.tm.t_relay()
            end
            function bf()
              KSR.pv.seti("$var(bf)", KSR.pv.get("$var(bf)") + 1)
              KSR.pv.seti("$var(bfcode)", KSR.tm.t_get_status_code())
              KSR.pv.seti("$var(bfcheck)", KSR.tm.t_check_trans())
            end
            """)
        try h.route(Msg.invite, from: caller)
        let invites = h.sender.sent.filter { isRequest($0, "INVITE") }
        #expect(invites.count == 2)
        h.sender.clear()
        func challenge(_ inv: SentMessage, _ realm: String) -> String {
            reply(to: inv, 407, "Proxy Authentication Required", toTag: realm)
                .replacingOccurrences(of: "Content-Length: 0", with: "Proxy-Authenticate: Digest realm=\"\(realm)\", nonce=\"n\"\r\nContent-Length: 0")
        }
        try h.route(challenge(invites[0], "one"), from: callee1)
        try h.route(challenge(invites[1], "two"), from: SocketAddress(ip: "192.0.2.40", port: 5060)!)
        #expect(int(h, "bf") == 2)
        #expect(int(h, "bfcode") == 407)
        #expect(int(h, "bfcheck") == 1)
        let finals = h.sender.sent.filter { status($0) >= 300 }
        #expect(finals.count == 1)
        let text = finals.first?.text ?? ""
        #expect(text.contains("realm=\"one\"") && text.contains("realm=\"two\""), "\(text)")
        #expect(finals.first?.message != nil, "the aggregated reply parses")
        for _ in 0..<10 { h.advance(by: .seconds(10)) }
        #expect(h.transactions.count == 0)
    }
}

@Suite struct TMSwitchTests {
    @Test func noAuto100AndCancelByCallID() throws {
        let h = try ScriptHarness(script: """
            function ksr_request_route()
              KSR.tm.t_set_auto_inv_100(0)
              KSR.setdsturi("sip:192.0.2.20:5060")
              KSR.tm.t_relay()
            end
            function cancel_it()
              KSR.pv.seti("$var(c)", KSR.tmx.t_cancel_callid("a84b4c76e66710@pc33", "314159 INVITE", 0))
              KSR.pv.seti("$var(none)", KSR.tmx.t_cancel_callid("nope", "1", 0))
            end
            """)
        try h.route(Msg.invite, from: caller)
        #expect(h.sender.sent.map { isRequest($0, "INVITE") } == [true], "no 100 Trying with t_set_auto_inv_100(0)")
        let inv = h.sender.sent[0]
        try h.route(reply(to: inv, 183, "Session Progress"), from: callee1)
        h.sender.clear()
        h.call("cancel_it")
        #expect(int(h, "c") == 1)
        #expect(int(h, "none") == -1)
        #expect(h.sender.sent.contains { isRequest($0, "CANCEL") && $0.destination == callee1 })
    }
}

/// The onreply route runs with the transaction's message flags and the branch's flags (Kamailio's
/// `reply_received`), and what it sets there stays with the transaction (the failure route sees it).
@Suite struct TMOnReplyFlagsTests {
    @Test func onreplyRouteSeesTheTransactionAndBranchFlags() throws {
        let h = try TMT.harness("""
            function ksr_request_route()
              if KSR.tm.t_check_trans() == 0 then return end
              KSR.setflag(5)
              KSR.tm.t_on_branch("branch_route")
              KSR.tm.t_on_reply("onreply_route")
              KSR.tm.t_on_failure("failure_route")
              KSR.setdsturi("sip:192.0.2.20:5060")
              KSR.tm.t_relay()
            end
            function branch_route() KSR.setbflag(6) end
            function onreply_route()
              KSR.pv.seti("$var(f5)", KSR.isflagset(5) and 1 or 0)
              KSR.pv.seti("$var(b6)", KSR.isbflagset(6) and 1 or 0)
              KSR.setflag(7)
            end
            function failure_route()
              KSR.pv.seti("$var(f7)", KSR.isflagset(7) and 1 or 0)
            end
            """)
        let invite = "INVITE sip:bob@192.0.2.20 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKflags1\r\n"
            + "Max-Forwards: 70\r\nTo: <sip:bob@example.com>\r\nFrom: <sip:alice@example.com>;tag=1\r\nCall-ID: flags-1\r\n"
            + "CSeq: 1 INVITE\r\nContact: <sip:alice@192.0.2.10>\r\nContent-Length: 0\r\n\r\n"
        try h.route(invite, from: TMT.caller)
        let sent = try #require(TMT.sent(h, "INVITE").first)
        try h.route(TMT.reply(to: sent, 486, "Busy Here"), from: TMT.address("192.0.2.20"))
        #expect(TMT.v(h, "f5") == "1", "the transaction's flag in the onreply route")
        #expect(TMT.v(h, "b6") == "1", "the branch's flag in the onreply route")
        #expect(TMT.v(h, "f7") == "1", "a flag set in the onreply route stays with the transaction")
    }
}
