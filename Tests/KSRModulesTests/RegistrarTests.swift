import Testing
import SIPCore
import SIPTransport
import StarlingKEMI
import StarlingTesting
import KSRModules
import Synchronization

/// A registrar in the example script's style: REGISTER is saved (the registrar replies), anything else
/// is looked up and relayed statefully; the codes of save/lookup land in `$var`s.
private let registrarScript = """
    function ksr_request_route()
      if KSR.is_REGISTER() then
        if KSR.pv.get("$var(setnat)") == 1 then KSR.setbflag(6) end
        KSR.pv.seti("$var(save)", KSR.registrar.save("location", KSR.pv.get("$var(flags)")))
        return
      end
      local rc = KSR.registrar.lookup("location")
      KSR.pv.seti("$var(lookup)", rc)
      if rc < 0 then
        KSR.sl.send_reply(404, "Not Found")
        return
      end
      KSR.pv.seti("$var(bflags)", KSR.pv.get("$bf"))
      KSR.tm.t_relay()
    end
    """

private func register(_ user: String = "alice", contacts: [String], expires: Int? = nil, callID: String = "reg-1",
                      cseq: Int = 1, extra: String = "") -> String {
    var s = "REGISTER sip:example.com SIP/2.0\r\n"
    s += "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKreg\(cseq)\(callID)\r\n"
    s += "Max-Forwards: 70\r\n"
    s += "From: <sip:\(user)@example.com>;tag=r\(cseq)\r\n"
    s += "To: <sip:\(user)@example.com>\r\n"
    s += "Call-ID: \(callID)\r\n"
    s += "CSeq: \(cseq) REGISTER\r\n"
    for c in contacts { s += "Contact: \(c)\r\n" }
    if let expires { s += "Expires: \(expires)\r\n" }
    s += extra
    s += "Content-Length: 0\r\n\r\n"
    return s
}

private func invite(_ user: String = "alice", method: String = "INVITE", branch: String = "z9hG4bKinv1") -> String {
    "\(method) sip:\(user)@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.99:5060;branch=\(branch)\r\n"
        + "Max-Forwards: 70\r\nFrom: <sip:bob@example.com>;tag=b1\r\nTo: <sip:\(user)@example.com>\r\n"
        + "Call-ID: call-\(branch)\r\nCSeq: 1 \(method)\r\nContact: <sip:bob@192.0.2.99>\r\nContent-Length: 0\r\n\r\n"
}

private func harness(_ params: [String: [String: [String]]] = [:], script: String = registrarScript,
                     locations: (any LocationPersistence)? = nil) throws -> ScriptHarness {
    try ScriptHarness(script: script, config: ModuleConfiguration(params: params), locations: locations)
}

private func intVar(_ h: ScriptHarness, _ name: String) -> Int? {
    if case .int(let i)? = h.context.worker.vars[name] { return i }
    return nil
}

/// The last reply the harness sent.
private func lastReply(_ h: ScriptHarness) -> SIPMessage? {
    h.sender.sent.last(where: { $0.text.hasPrefix("SIP/2.0") })?.message
}

private func contactHeader(_ m: SIPMessage) -> String { m.headerValue(.contact) ?? "" }

@Suite struct RegistrarTests {
    @Test func saveOneContactRepliesWithItsExpires() throws {
        let h = try harness()
        try h.route(register(contacts: ["<sip:alice@192.0.2.10:5060>"], expires: 600))
        #expect(intVar(h, "save") == 1)
        let r = try #require(lastReply(h))
        #expect(r.statusCode == 200)
        #expect(contactHeader(r) == "<sip:alice@192.0.2.10:5060>;expires=600")
        // Re-register: updated (2)
        try h.route(register(contacts: ["<sip:alice@192.0.2.10:5060>"], expires: 600, cseq: 2))
        #expect(intVar(h, "save") == 2)
        #expect(h.runtime.usrloc.table("location").contacts("alice").count == 1)
    }

    @Test func multipleContactsOrderedByQAndForkedOnLookup() throws {
        let h = try harness()
        try h.route(register(contacts: ["<sip:alice@192.0.2.11:5060>;q=0.5", "<sip:alice@192.0.2.12:5060>;q=1",
                                        "<sip:alice@192.0.2.13:5060>;q=0.1"], expires: 300))
        #expect(intVar(h, "save") == 1)
        let r = try #require(lastReply(h))
        #expect(contactHeader(r) == "<sip:alice@192.0.2.12:5060>;q=1;expires=300, <sip:alice@192.0.2.11:5060>;q=0.5;expires=300, <sip:alice@192.0.2.13:5060>;q=0.1;expires=300")
        h.sender.clear()
        try h.route(invite())
        #expect(intVar(h, "lookup") == 1)
        // Three branches went out, in q order, each to its contact.
        let sent = h.sender.sent.filter { $0.text.hasPrefix("INVITE") }
        #expect(sent.map { $0.destination.ip } == ["192.0.2.12", "192.0.2.11", "192.0.2.13"])
        #expect(sent.first?.text.hasPrefix("INVITE sip:alice@192.0.2.12:5060 SIP/2.0") == true)
    }

    @Test func expiresFromParamThenHeaderThenDefaultWithLimits() throws {
        let h = try harness(["registrar": ["max_expires": ["3600"], "min_expires": ["60"]]])
        try h.route(register(contacts: ["<sip:a@192.0.2.1>;expires=120", "<sip:a@192.0.2.2>", "<sip:a@192.0.2.3>;expires=10"],
                             expires: 7200))
        let r = try #require(lastReply(h))
        let v = contactHeader(r)
        #expect(v.contains("<sip:a@192.0.2.1>;expires=120"))
        #expect(v.contains("<sip:a@192.0.2.2>;expires=3600"))   // header 7200 capped by max_expires
        #expect(v.contains("<sip:a@192.0.2.3>;expires=60"))     // raised to min_expires
        let h2 = try harness()
        try h2.route(register(contacts: ["<sip:a@192.0.2.1>"]))
        #expect(contactHeader(try #require(lastReply(h2))) == "<sip:a@192.0.2.1>;expires=3600") // default_expires
    }

    @Test func contactsExpireWithTheClock() throws {
        let h = try harness()
        try h.route(register(contacts: ["<sip:alice@192.0.2.10>"], expires: 120))
        #expect(h.runtime.usrloc.contactCount == 1)
        h.advance(by: .seconds(60))
        try h.route(invite(branch: "z9hG4bKa"))
        #expect(intVar(h, "lookup") == 1)
        h.advance(by: .seconds(61))
        // Invalid for lookup as soon as it expired, removed by the timer (timer_interval 60).
        try h.route(invite(branch: "z9hG4bKb"))
        #expect(intVar(h, "lookup") == -1)
        #expect(lastReply(h)?.statusCode == 404)
        h.advance(by: .seconds(60))
        #expect(h.runtime.usrloc.contactCount == 0)
        #expect(h.runtime.usrloc.expiredCount == 1)
    }

    @Test func starWithExpiresZeroRemovesAll() throws {
        let h = try harness()
        try h.route(register(contacts: ["<sip:alice@192.0.2.10>", "<sip:alice@192.0.2.11>"], expires: 300))
        #expect(h.runtime.usrloc.contactCount == 2)
        try h.route(register(contacts: ["*"], expires: 0, cseq: 2))
        #expect(intVar(h, "save") == 3)
        let r = try #require(lastReply(h))
        #expect(r.statusCode == 200)
        #expect(r.headerValue(.contact) == nil)
        #expect(h.runtime.usrloc.contactCount == 0)
        // `*` with a non-zero Expires is a 400.
        try h.route(register(contacts: ["*"], expires: 60, cseq: 3))
        #expect(intVar(h, "save") == -1)
        #expect(lastReply(h)?.statusCode == 400)
        #expect(lastReply(h)?.headerValue(named: "P-Registrar-Error") == "* used in contact and expires is not zero")
    }

    @Test func expiresZeroRemovesOneAndQueryReturnsContacts() throws {
        let h = try harness()
        try h.route(register(contacts: ["<sip:alice@192.0.2.10>", "<sip:alice@192.0.2.11>"], expires: 300))
        try h.route(register(contacts: ["<sip:alice@192.0.2.10>;expires=0"], cseq: 2))
        #expect(intVar(h, "save") == 3)
        #expect(contactHeader(try #require(lastReply(h))) == "<sip:alice@192.0.2.11>;expires=300")
        // No Contact: a query (4), the 200 lists the bindings.
        try h.route(register(contacts: [], cseq: 3))
        #expect(intVar(h, "save") == 4)
        #expect(contactHeader(try #require(lastReply(h))) == "<sip:alice@192.0.2.11>;expires=300")
    }

    @Test func olderCSeqIsRejectedRetransmissionIsSkipped() throws {
        let h = try harness()
        try h.route(register(contacts: ["<sip:alice@192.0.2.10>"], expires: 300, cseq: 5))
        // Same Call-ID, same CSeq within cseq_delay: a retransmission, accepted without change.
        try h.route(register(contacts: ["<sip:alice@192.0.2.10>"], expires: 900, cseq: 5))
        #expect(intVar(h, "save") == 1)
        #expect(contactHeader(try #require(lastReply(h))) == "<sip:alice@192.0.2.10>;expires=300")
        try h.route(register(contacts: ["<sip:alice@192.0.2.10>"], expires: 300, cseq: 4))
        #expect(intVar(h, "save") == -1)
        let r = try #require(lastReply(h))
        #expect(r.statusCode == 400)
        #expect(r.headerValue(named: "P-Registrar-Error") == "Invalid CSeq number")
        // A new Call-ID may use any CSeq.
        try h.route(register(contacts: ["<sip:alice@192.0.2.10>"], expires: 300, callID: "reg-2", cseq: 1))
        #expect(intVar(h, "save") == 2)
    }

    @Test func lookupCodes() throws {
        let h = try harness(["registrar": ["method_filtering": ["1"]]])
        try h.route(invite("nobody"))
        #expect(intVar(h, "lookup") == -1)
        // A contact that only allows MESSAGE: INVITE finds it but may not use it.
        try h.route(register(contacts: ["<sip:alice@192.0.2.10>"], expires: 300, extra: "Allow: MESSAGE, OPTIONS\r\n"))
        try h.route(invite(branch: "z9hG4bKc2"))
        #expect(intVar(h, "lookup") == -2)
        try h.route(invite(method: "MESSAGE", branch: "z9hG4bKc3"))
        #expect(intVar(h, "lookup") == 1)
    }

    @Test func tooManyContacts() throws {
        let h = try harness(["registrar": ["max_contacts": ["1"]]])
        try h.route(register(contacts: ["<sip:alice@192.0.2.10>"], expires: 300))
        try h.route(register(contacts: ["<sip:alice@192.0.2.11>"], expires: 300, cseq: 2))
        #expect(intVar(h, "save") == -2)
        let r = try #require(lastReply(h))
        #expect(r.statusCode == 503)
        #expect(r.headerValue(named: "P-Registrar-Error") == "Too many registered contacts")
    }

    @Test func receivedAVPAndNATFlagsAreStoredAndUsedOnLookup() throws {
        let script = registrarScript.replacing(
            "if KSR.is_REGISTER() then",
            with: "if KSR.is_REGISTER() then KSR.pv.sets(\"$avp(RECEIVED)\", \"sip:203.0.113.7:40000\")")
        let h = try harness(["registrar": ["received_avp": ["$avp(RECEIVED)"]]], script: script)
        h.context.worker.vars["setnat"] = .int(1)
        try h.route(register(contacts: ["<sip:alice@10.0.0.5:5060>"], expires: 300))
        let r = try #require(lastReply(h))
        #expect(contactHeader(r) == "<sip:alice@10.0.0.5:5060>;expires=300;received=\"sip:203.0.113.7:40000\"")
        let c = try #require(h.runtime.usrloc.table("location").contacts("alice").first)
        #expect(c.received == "sip:203.0.113.7:40000")
        #expect(c.cflags == 1 << 6)
        h.sender.clear()
        h.context.worker.vars["setnat"] = .int(0)
        try h.route(invite())
        #expect(intVar(h, "bflags") == 1 << 6)
        let sent = try #require(h.sender.sent.first { $0.text.hasPrefix("INVITE") })
        #expect(sent.text.hasPrefix("INVITE sip:alice@10.0.0.5:5060 SIP/2.0"))
        #expect(sent.destination == SocketAddress(ip: "203.0.113.7", port: 40000)!)
    }

    @Test func eachForkedBranchGetsItsContactsFlagsAndNextHop() throws {
        let script = """
            function ksr_request_route()
              if KSR.is_REGISTER() then
                if KSR.pv.get("$var(nat)") == 1 then
                  KSR.setbflag(6)
                  KSR.pv.sets("$avp(RECEIVED)", "sip:203.0.113.5:7000")
                end
                KSR.registrar.save("location", 0)
                return
              end
              KSR.pv.seti("$var(lookup)", KSR.registrar.lookup("location"))
              KSR.tm.t_on_branch("branch_route")
              KSR.tm.t_relay()
            end
            function branch_route()
              local f = KSR.pv.get("$var(flags)")
              KSR.pv.sets("$var(flags)", (f == 0 and "" or f) .. KSR.pv.get("$T_branch_idx") .. "=" .. KSR.pv.get("$bf") .. ";")
            end
            """
        let h = try harness(["registrar": ["received_avp": ["$avp(RECEIVED)"]]], script: script)
        h.context.worker.vars["nat"] = .int(1)
        try h.route(register(contacts: ["<sip:alice@10.0.0.5:5060>;q=0.9"], expires: 300))
        h.context.worker.vars["nat"] = .int(0)
        try h.route(register(contacts: ["<sip:alice@192.0.2.60:5060>;q=0.5"], expires: 300, callID: "reg-b"))
        h.sender.clear()
        try h.route(invite())
        #expect(intVar(h, "lookup") == 1)
        #expect(h.context.worker.vars["flags"] == .string("0=64;1=0;"))
        let sent = h.sender.sent.filter { $0.text.hasPrefix("INVITE") }
        #expect(sent.map { $0.destination } == [SocketAddress(ip: "203.0.113.5", port: 7000)!,
                                               SocketAddress(ip: "192.0.2.60", port: 5060)!])
        // The other order: the NATed contact as the second branch keeps its flags and next hop.
        let h2 = try harness(["registrar": ["received_avp": ["$avp(RECEIVED)"]]], script: script)
        h2.context.worker.vars["nat"] = .int(1)
        try h2.route(register(contacts: ["<sip:alice@10.0.0.5:5060>;q=0.1"], expires: 300))
        h2.context.worker.vars["nat"] = .int(0)
        try h2.route(register(contacts: ["<sip:alice@192.0.2.60:5060>;q=0.5"], expires: 300, callID: "reg-b"))
        h2.sender.clear()
        try h2.route(invite())
        #expect(h2.context.worker.vars["flags"] == .string("0=0;1=64;"))
        #expect(h2.sender.sent.filter { $0.text.hasPrefix("INVITE") }.map { $0.destination.ip } == ["192.0.2.60", "203.0.113.5"])
    }

    @Test func saveFlags() throws {
        let store = MemoryLocationPersistence()
        let h = try harness(["usrloc": ["db_mode": ["1"]]], locations: store)
        // 0x02: no reply.
        h.context.worker.vars["flags"] = .int(0x02)
        try h.route(register(contacts: ["<sip:alice@192.0.2.10>"], expires: 300))
        #expect(intVar(h, "save") == 1)
        #expect(lastReply(h) == nil)
        // 0x01: memory only (write-through skipped).
        h.context.worker.vars["flags"] = .int(0x01)
        try h.route(register("bob", contacts: ["<sip:bob@192.0.2.20>"], expires: 300))
        #expect(h.runtime.usrloc.table("location").contacts("bob").first?.flags == 1)
        #expect(try store.loadContacts(table: "location").map(\.aor) == ["alice"])
        // 0x04: one contact per AOR, the others removed.
        h.context.worker.vars["flags"] = .int(0x04)
        try h.route(register(contacts: ["<sip:alice@192.0.2.11>"], expires: 300, callID: "reg-x"))
        #expect(intVar(h, "save") == 1)
        #expect(h.runtime.usrloc.table("location").contacts("alice").map(\.contact) == ["sip:alice@192.0.2.11"])
        #expect(contactHeader(try #require(lastReply(h))) == "<sip:alice@192.0.2.11>;expires=300")
        #expect(try store.loadContacts(table: "location").map(\.contact) == ["sip:alice@192.0.2.11"])
        // 0x12: prepare the reply, send it with reg_send_reply.
        let h2 = try harness(script: """
            function ksr_request_route()
              KSR.pv.seti("$var(save)", KSR.registrar.save("location", 0x12))
              KSR.pv.seti("$var(sent)", KSR.pv.get("$var(save)") > 0 and 0 or -9)
              KSR.hdr.append_to_reply("X-Before: yes\\r\\n")
              KSR.pv.seti("$var(sent)", KSR.registrar.reg_send_reply())
            end
            """)
        try h2.route(register(contacts: ["<sip:alice@192.0.2.10>"], expires: 300))
        #expect(intVar(h2, "sent") == 1)
        let r = try #require(lastReply(h2))
        #expect(contactHeader(r) == "<sip:alice@192.0.2.10>;expires=300")
        #expect(r.headerValue(named: "X-Before") == "yes")
    }

    @Test func pathUseReceivedTakesTheEdgeProxysReceived() throws {
        let h = try harness(["registrar": ["use_path": ["1"], "path_mode": ["0"], "path_use_received": ["1"]]])
        try h.route(register(contacts: ["<sip:alice@10.0.0.5:5060>"], expires: 300,
                             extra: "Path: <sip:192.0.2.77;lr;received=sip:198.51.100.4:6000>\r\n"))
        let c = try #require(h.runtime.usrloc.table("location").contacts("alice").first)
        #expect(c.received == "sip:198.51.100.4:6000")
        #expect(c.path == "<sip:192.0.2.77;lr;received=sip:198.51.100.4:6000>")
        // path_mode 0: stored, not returned.
        #expect(lastReply(h)?.headerValue(.path) == nil)
    }

    @Test func fixNatedRegisterFeedsReceivedAVP() throws {
        // The example cfg: nathelper and registrar share received_avp; NATed contacts get FLB_NATB.
        let h = try harness([
            "nathelper": ["received_avp": ["$avp(RECEIVED)"]],
            "registrar": ["received_avp": ["$avp(RECEIVED)"]],
        ], script: """
            function ksr_request_route()
              if KSR.is_REGISTER() then
                if KSR.nathelper.nat_uac_test(19) > 0 then
                  KSR.nathelper.fix_nated_register()
                  KSR.setbflag(6)
                end
                KSR.pv.seti("$var(save)", KSR.registrar.save("location", 0))
                return
              end
              KSR.pv.seti("$var(lookup)", KSR.registrar.lookup("location"))
              KSR.tm.t_relay()
            end
            """)
        try h.route(register(contacts: ["<sip:alice@10.0.0.5:5060>"], expires: 300),
                    from: SocketAddress(ip: "203.0.113.7", port: 40000)!)
        #expect(intVar(h, "save") == 1)
        let c = try #require(h.runtime.usrloc.table("location").contacts("alice").first)
        #expect(c.received == "sip:203.0.113.7:40000")
        #expect(c.cflags == 1 << 6)
        h.sender.clear()
        try h.route(invite())
        #expect(h.sender.sent.first { $0.text.hasPrefix("INVITE") }?.destination == SocketAddress(ip: "203.0.113.7", port: 40000)!)
    }

    @Test func pathIsStoredReturnedAndRoutedThrough() throws {
        let h = try harness(["registrar": ["use_path": ["1"], "path_mode": ["1"]]])
        try h.route(register(contacts: ["<sip:alice@10.0.0.5:5060>"], expires: 300,
                             extra: "Path: <sip:edge.example.net:5070;lr>\r\nSupported: path\r\n"))
        let r = try #require(lastReply(h))
        #expect(r.headerValue(.path) == "<sip:edge.example.net:5070;lr>")
        h.sender.clear()
        let h2 = try harness(["registrar": ["use_path": ["1"]]])
        // Strict mode (2) without Supported: path: 420 (the binding is saved all the same, as Kamailio
        // 5.6 does: the next REGISTER updates it).
        try h2.route(register(contacts: ["<sip:alice@10.0.0.5:5060>"], extra: "Path: <sip:192.0.2.77;lr>\r\n"))
        #expect(lastReply(h2)?.statusCode == 420)
        try h2.route(register(contacts: ["<sip:alice@10.0.0.5:5060>"], cseq: 2,
                              extra: "Path: <sip:192.0.2.77;lr>\r\nSupported: path\r\n"))
        #expect(intVar(h2, "save") == 2)
        h2.sender.clear()
        try h2.route(invite())
        let sent = try #require(h2.sender.sent.first { $0.text.hasPrefix("INVITE") })
        #expect(sent.destination.ip == "192.0.2.77")
        #expect(sent.message?.headerValue(.route) == "<sip:192.0.2.77;lr>")
    }

    @Test func pathModeStrictWithoutSupportedSavesAndReplies420() throws {
        let h = try harness(["registrar": ["use_path": ["1"]]])
        try h.route(register(contacts: ["<sip:alice@10.0.0.5:5060>"], expires: 300, extra: "Path: <sip:192.0.2.77;lr>\r\n"))
        // Kamailio 5.6 saves the binding and answers 420 with Unsupported: path and the Path.
        #expect(intVar(h, "save") == 1)
        let r = try #require(lastReply(h))
        #expect(r.statusCode == 420 && r.string(r.reasonRange) == "Bad Extension")
        #expect(r.headerValue(.contact) == "<sip:alice@10.0.0.5:5060>;expires=300")
        #expect(r.headers(named: "Unsupported").map { r.string($0.value) } == ["path"])
        #expect(r.headerValue(.path) == "<sip:192.0.2.77;lr>")
        #expect(r.headers(named: "P-Registrar-Error").map { r.string($0.value) } == ["No support for found Path indicated"])
        #expect(h.runtime.usrloc.table("location").contacts("alice").first?.path == "<sip:192.0.2.77;lr>")
        // Lazy (1): saved, 200 without Path. Off (0): saved, 200 without Path.
        for mode in ["1", "0"] {
            let l = try harness(["registrar": ["use_path": ["1"], "path_mode": [mode]]])
            try l.route(register(contacts: ["<sip:alice@10.0.0.5:5060>"], expires: 300, extra: "Path: <sip:192.0.2.77;lr>\r\n"))
            let lr = try #require(lastReply(l))
            #expect(lr.statusCode == 200 && lr.headerValue(.path) == nil)
        }
    }

    @Test func pathUseReceivedCheckLocalAndBadPath() throws {
        let h = try harness(["registrar": ["use_path": ["1"], "path_use_received": ["1"]]])
        try h.route(register(contacts: ["<sip:alice@10.0.0.5:5060>"], expires: 300,
                             extra: "Path: <sip:192.0.2.77;lr;received=sip:198.51.100.50:40000%3Btransport%3Dtcp>\r\nSupported: path\r\n"))
        #expect(intVar(h, "save") == 1)
        #expect(h.runtime.usrloc.table("location").contacts("alice").first?.received == "sip:198.51.100.50:40000;transport=tcp")
        h.sender.clear()
        try h.route(invite())
        let sent = try #require(h.sender.sent.first { $0.text.hasPrefix("INVITE") })
        #expect(sent.destination == SocketAddress(ip: "198.51.100.50", port: 40000)! && sent.proto == .tcp)
        #expect(sent.message?.headerValue(.route) == "<sip:192.0.2.77;lr;received=sip:198.51.100.50:40000%3Btransport%3Dtcp>")
        // A first Path URI that is not a loose router: 400 Path parse error.
        let bad = try harness(["registrar": ["use_path": ["1"]]])
        try bad.route(register(contacts: ["<sip:alice@10.0.0.5:5060>"], extra: "Path: <sip:192.0.2.77>\r\nSupported: path\r\n"))
        #expect(intVar(bad, "save") == -1)
        #expect(lastReply(bad)?.statusCode == 400)
        #expect(lastReply(bad)?.headers(named: "P-Registrar-Error").first.map { lastReply(bad)!.string($0.value) } == "Path parse error")
        // A malformed received (bad escape) with path_use_received: the same.
        let badReceived = try harness(["registrar": ["use_path": ["1"], "path_use_received": ["1"]]])
        try badReceived.route(register(contacts: ["<sip:alice@10.0.0.5:5060>"],
                                       extra: "Path: <sip:192.0.2.77;lr;received=sip:1.2.3.4%zz>\r\nSupported: path\r\n"))
        #expect(lastReply(badReceived)?.statusCode == 400)
        // path_check_local: our own first hop (127.0.0.1) is skipped; the next Path hop is the next hop.
        let local = try harness(["registrar": ["use_path": ["1"], "path_check_local": ["1"]]])
        try local.route(register(contacts: ["<sip:alice@10.0.0.5:5060>"],
                                 extra: "Path: <sip:127.0.0.1;lr>, <sip:192.0.2.78;lr>\r\nSupported: path\r\n"))
        local.sender.clear()
        try local.route(invite())
        let viaNext = try #require(local.sender.sent.first { $0.text.hasPrefix("INVITE") })
        #expect(viaNext.destination.ip == "192.0.2.78")
        #expect(viaNext.message?.headerValue(.route) == "<sip:192.0.2.78;lr>")
    }

    @Test func registeredUnregisterAndFetchContacts() throws {
        let script = """
            function ksr_request_route()
              if KSR.is_REGISTER() then KSR.registrar.save("location", 0) return end
              KSR.pv.seti("$var(reg)", KSR.registrar.registered("location"))
              KSR.pv.seti("$var(fetch)", KSR.registrar.reg_fetch_contacts("location", "sip:alice@example.com", "c"))
              KSR.pv.seti("$var(count)", KSR.pv.get("$ulc(c=>count)"))
              KSR.pv.sets("$var(addr1)", KSR.pv.get("$(ulc(c=>addr)[1])"))
              KSR.pv.sets("$var(aor)", KSR.pv.get("$ulc(c=>aor)"))
              KSR.pv.seti("$var(free)", KSR.registrar.reg_free_contacts("c"))
              KSR.pv.seti("$var(unreg)", KSR.registrar.unregister("location", "sip:alice@example.com"))
              KSR.pv.seti("$var(reg2)", KSR.registrar.registered("location"))
            end
            """
        let h = try harness(script: script)
        try h.route(register(contacts: ["<sip:alice@192.0.2.10>;q=0.9", "<sip:alice@192.0.2.11>;q=0.2"], expires: 300))
        try h.route(invite())
        #expect(intVar(h, "reg") == 1)
        #expect(intVar(h, "fetch") == 1)
        #expect(intVar(h, "count") == 2)
        #expect(h.context.worker.vars["addr1"] == .string("sip:alice@192.0.2.11"))
        #expect(h.context.worker.vars["aor"] == .string("alice"))
        #expect(intVar(h, "free") == 1)
        #expect(intVar(h, "unreg") == 1)
        #expect(intVar(h, "reg2") == -1)
    }

    @Test func useDomainKeepsDomainsApart() throws {
        let h = try harness(["usrloc": ["use_domain": ["1"]]])
        try h.route(register(contacts: ["<sip:alice@192.0.2.10>"], expires: 300))
        #expect(h.runtime.usrloc.table("location").contacts("alice@example.com").count == 1)
        try h.route("INVITE sip:alice@other.example SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.99;branch=z9hG4bKd1\r\nFrom: <sip:b@x>;tag=1\r\nTo: <sip:alice@other.example>\r\nCall-ID: d1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n")
        #expect(intVar(h, "lookup") == -1)
    }

    @Test func writeThroughAndWriteBackPersistence() throws {
        let store = MemoryLocationPersistence()
        let h = try harness(["usrloc": ["db_mode": ["1"]]], locations: store)
        try h.route(register(contacts: ["<sip:alice@192.0.2.10>"], expires: 300))
        #expect(try store.loadContacts(table: "location").count == 1)
        let back = MemoryLocationPersistence()
        let h2 = try harness(["usrloc": ["db_mode": ["2"], "timer_interval": ["10"]]], locations: back)
        try h2.route(register(contacts: ["<sip:alice@192.0.2.10>"], expires: 300))
        #expect(try back.loadContacts(table: "location").isEmpty)
        h2.advance(by: .seconds(10))
        #expect(try back.loadContacts(table: "location").map(\.contact) == ["sip:alice@192.0.2.10"])
        // A new runtime over the same store starts with the registration (a restart).
        let h3 = try harness(["usrloc": ["db_mode": ["2"]]], locations: back)
        try h3.route(invite())
        #expect(intVar(h3, "lookup") == 1)
    }

    @Test func natKeepalivesPingFlaggedContacts() throws {
        let h = try harness([
            "nathelper": ["natping_interval": ["30"], "sipping_bflag": ["7"], "sipping_from": ["sip:pinger@example.com"],
                          "ping_nated_only": ["1"]],
            "usrloc": ["nat_bflag": ["6"]],
            "registrar": ["received_avp": ["$avp(RECEIVED)"]],
        ], script: """
            function ksr_request_route()
              if KSR.pv.get("$var(nat)") == 1 then
                KSR.setbflag(6); KSR.setbflag(7)
                KSR.pv.sets("$avp(RECEIVED)", "sip:203.0.113.9:41000")
              end
              KSR.registrar.save("location", 0)
            end
            """)
        let pings = PingRecorder()
        h.runtime.setOutbound(OutboundSender(local: SocketAddress(ip: "127.0.0.1", port: 5060)!) { b, d in
            pings.add(b, d)
            return true
        })
        h.context.worker.vars["nat"] = .int(1)
        try h.route(register("alice", contacts: ["<sip:alice@10.0.0.5:5060>"], expires: 3600))
        h.context.worker.vars["nat"] = .int(0)
        try h.route(register("bob", contacts: ["<sip:bob@192.0.2.50:5060>"], expires: 3600))
        h.advance(by: .seconds(30))
        let sent = pings.all
        #expect(sent.count == 1)
        let p = try #require(sent.first)
        #expect(p.1 == SocketAddress(ip: "203.0.113.9", port: 41000)!)
        let text = String(decoding: p.0, as: UTF8.self)
        #expect(text.hasPrefix("OPTIONS sip:alice@10.0.0.5:5060 SIP/2.0\r\n"))
        #expect(text.contains("From: <sip:pinger@example.com>;tag="))
        #expect((try? SIPMessage.parse(p.0)) != nil)
    }
}

/// Collects keepalive datagrams (the send hook is `@Sendable`: the server runs it on its housekeeping thread).
private final class PingRecorder: Sendable {
    private let sent = Mutex<[([UInt8], SocketAddress)]>([])
    var all: [([UInt8], SocketAddress)] { sent.withLock { $0 } }
    func add(_ b: [UInt8], _ d: SocketAddress) { sent.withLock { $0.append((b, d)) } }
}
