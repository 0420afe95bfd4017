import Testing
import Foundation
import SIPCore
import SIPTransport
import StarlingKEMI
import StarlingTesting
@testable import KSRModules
import Synchronization

// MARK: - The state machine as traces

@Suite struct DialogMachineTests {
    typealias E = DialogEvent

    /// Runs events at the given times; returns the states after each.
    func trace(_ events: [(E, Int)]) -> ([DialogState], DialogMachine) {
        var m = DialogMachine(now: 100)
        var out: [DialogState] = []
        for (e, t) in events { m.handle(e, now: t); out.append(m.state) }
        return (out, m)
    }

    @Test func answeredCallEndedByBye() {
        let (states, m) = trace([(.provisional, 101), (.provisional, 102), (.accepted, 105), (.ack, 105), (.request, 130), (.bye, 160)])
        #expect(states == [.early, .early, .confirmedNA, .confirmed, .confirmed, .deleted])
        #expect(m.initTS == 100 && m.startTS == 105 && m.endTS == 160)
        #expect(m.hasBye)
    }

    @Test func failedCallsAndLateEvents() {
        #expect(trace([(.provisional, 101), (.negative, 103)]).0 == [.early, .deleted])
        #expect(trace([(.transactionGone, 130)]).0 == [.deleted])
        // A BYE in the early state changes nothing (Kamailio); an ACK before the 2xx neither.
        #expect(trace([(.provisional, 101), (.bye, 102), (.ack, 103)]).0 == [.early, .early, .early])
        // After a BYE a late 2xx does not bring the dialog back; after a negative reply it does.
        #expect(trace([(.accepted, 101), (.bye, 102), (.accepted, 103)]).0 == [.confirmedNA, .deleted, .deleted])
        #expect(trace([(.negative, 101), (.accepted, 102)]).0 == [.deleted, .confirmedNA])
    }

    @Test func transitionsNameTheEvents() {
        var m = DialogMachine(now: 0)
        #expect(m.handle(.accepted, now: 1).started)
        #expect(!m.handle(.ack, now: 1).started)
        #expect(m.handle(.bye, now: 9).ended)
        var f = DialogMachine(now: 0)
        #expect(f.handle(.negative, now: 1).failed)
    }

    /// The timers' index: ids by the second they fall due, taken once, moved when their time changes.
    @Test func secondWheelTakesWhatIsDue() {
        var w = SecondWheel()
        let a = DialogID(entry: 0, id: 1), b = DialogID(entry: 0, id: 2), c = DialogID(entry: 0, id: 3)
        w.move(a, from: nil, to: 100)
        w.move(b, from: nil, to: 105)
        w.move(c, from: nil, to: 200)
        #expect(w.takeDue(now: 99).isEmpty)
        #expect(w.takeDue(now: 100) == [a])
        w.move(b, from: 105, to: 101)  // earlier
        #expect(w.takeDue(now: 101) == [b])
        w.move(c, from: 200, to: 90)  // into a second already taken: the next takeDue has it
        #expect(w.takeDue(now: 101) == [c])
        w.move(a, from: nil, to: 100_000)  // the clock jumps
        #expect(w.takeDue(now: 100_001) == [a])
        #expect(w.takeDue(now: 100_002).isEmpty)
        w.move(b, from: nil, to: 100_010)
        w.move(b, from: 100_010, to: nil)  // removed
        #expect(w.takeDue(now: 100_020).isEmpty)
    }

    @Test func didValues() {
        #expect(DialogID(did: "a3.1f") == DialogID(entry: 0xa3, id: 0x1f))
        #expect(DialogID(did: "zz.1") == nil)
        #expect(DialogID(did: "1") == nil)
        #expect(DialogID(did: "1.") == nil)
        #expect(DialogID(did: "123456789.1") == nil)
        #expect(DialogID(entry: 10, id: 255).didValue == "a.ff")
    }
}

// MARK: - KSR.dialog through tm

private let caller = SocketAddress(ip: "192.0.2.10", port: 5060)!
private let callee = SocketAddress(ip: "192.0.2.20", port: 5060)!

private let dialogScript = """
    function ksr_request_route()
      if KSR.is_CANCEL() then
        if KSR.tm.t_check_trans() > 0 then KSR.tm.t_relay() end
        return
      end
      if KSR.siputils.has_totag() > 0 then
        if KSR.rr.loose_route() > 0 then
          KSR.pv.seti("$var(known)", KSR.dialog.is_known_dlg())
          KSR.pv.sets("$var(seen)", KSR.pv.gete("$dlg_var(tenant)"))
          KSR.tm.t_relay()
        else
          KSR.pv.seti("$var(unknown)", KSR.dialog.is_known_dlg())
          KSR.sl.send_reply(404, "Not here")
        end
        return
      end
      if KSR.is_INVITE() then
        local t = KSR.pv.gete("$hdr(X-Tenant)")
        KSR.dialog.get_profile_size("tenant", t, "$var(size)")
        if KSR.pv.get("$var(size)") >= 2 then
          KSR.sl.send_reply(486, "Tenant limit")
          return
        end
        KSR.pv.seti("$var(manage)", KSR.dialog.dlg_manage())
        KSR.pv.seti("$var(set)", KSR.dialog.set_dlg_profile("tenant", t))
        KSR.pv.seti("$var(undeclared)", KSR.dialog.set_dlg_profile("nosuch", t))
        KSR.pv.seti("$var(calls)", KSR.dialog.set_dlg_profile_static("calls"))
        KSR.dialog.var_sets("tenant", t)
        if t == "ka" then KSR.dialog.dlg_set_property("ka-dst") end
        if t == "newtran" then
          KSR.tm.t_newtran()
          return
        end
        if t == "reject" then
          KSR.sl.send_reply(403, "Refused after dlg_manage")
          return
        end
        KSR.rr.record_route()
      end
      KSR.setdsturi("sip:192.0.2.20:5060")
      KSR.tm.t_relay()
    end
    function ksr_dialog_event(ev)
      KSR.pv.sets("$var(ev_" .. string.sub(ev, 8) .. ")", KSR.pv.gete("$dlg_var(tenant)"))
      local n = "$var(n_" .. string.sub(ev, 8) .. ")"
      KSR.pv.seti(n, (tonumber(KSR.pv.get(n)) or 0) + 1)
    end
    """

private func invite(_ n: Int, tenant: String = "acme") -> String {
    """
    INVITE sip:bob@192.0.2.20 SIP/2.0\r
    Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKd\(n)\r
    Max-Forwards: 70\r
    From: <sip:alice@example.com>;tag=ft\(n)\r
    To: <sip:bob@example.com>\r
    Call-ID: call-\(n)@example.com\r
    CSeq: 1 INVITE\r
    Contact: <sip:alice@192.0.2.10:5060>\r
    X-Tenant: \(tenant)\r
    Content-Length: 0\r
    \r

    """
}

/// An in-dialog request from the caller (fromCaller) or the callee, with our Record-Route as its Route.
private func inDialog(_ method: String, _ n: Int, route: String?, fromCaller: Bool = true, cseq: Int = 2) -> String {
    let from = fromCaller ? "<sip:alice@example.com>;tag=ft\(n)" : "<sip:bob@example.com>;tag=tt\(n)"
    let to = fromCaller ? "<sip:bob@example.com>;tag=tt\(n)" : "<sip:alice@example.com>;tag=ft\(n)"
    let ruri = fromCaller ? "sip:bob@192.0.2.20:5060" : "sip:alice@192.0.2.10:5060"
    return """
        \(method) \(ruri) SIP/2.0\r
        Via: SIP/2.0/UDP \(fromCaller ? "192.0.2.10" : "192.0.2.20"):5060;branch=z9hG4bK\(method)\(n)\(cseq)\r
        Max-Forwards: 70\r
        \(route.map { "Route: \($0)\r\n" } ?? "")From: \(from)\r
        To: \(to)\r
        Call-ID: call-\(n)@example.com\r
        CSeq: \(cseq) \(method)\r
        Content-Length: 0\r
        \r

        """
}

/// Dialog rows in memory (the embedded database's are tested by the integration tests).
private final class MemoryDialogs: DialogPersistence, @unchecked Sendable {
    var rows: [String: DialogRecord] = [:]
    func load() throws -> [DialogRecord] { Array(rows.values) }
    func save(upserts: [DialogRecord], deletes: [(entry: Int, id: Int)]) throws {
        for d in deletes { rows["\(d.entry):\(d.id)"] = nil }
        for u in upserts { rows["\(u.hashEntry):\(u.hashID)"] = u }
    }
}

private enum SIPProbeText {
    static func options(extra: String) -> String {
        "OPTIONS sip:probe@192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKo\(UInt32.random(in: 0...UInt32.max))\r\n"
            + "Max-Forwards: 70\r\nFrom: <sip:a@example.com>;tag=o1\r\nTo: <sip:probe@example.com>\r\n"
            + "Call-ID: load-\(UInt32.random(in: 0...UInt32.max))\r\nCSeq: 1 OPTIONS\r\n\(extra)Content-Length: 0\r\n\r\n"
    }
}

private func dialogHarness(_ extra: [String: [String]] = [:], acc: [String: [String]] = [:]) throws -> ScriptHarness {
    var d: [String: [String]] = ["profiles_with_value": ["tenant"], "profiles_no_value": ["calls"],
                                 "event_callback": ["ksr_dialog_event"]]
    for (k, v) in extra { d[k] = v }
    var params: [String: [String: [String]]] = ["dialog": d]
    if !acc.isEmpty { params["acc"] = acc }
    return try ScriptHarness(script: dialogScript, config: ModuleConfiguration(params: params))
}

private func int(_ h: ScriptHarness, _ name: String) -> Int {
    if case .int(let v)? = h.context.worker.vars[name] { return v }
    return 0
}

private func str(_ h: ScriptHarness, _ name: String) -> String {
    if case .string(let v)? = h.context.worker.vars[name] { return v }
    return ""
}

/// Sends INVITE n and answers it with `code` from the callee; returns the relayed INVITE.
@discardableResult
private func call(_ h: ScriptHarness, _ n: Int, tenant: String = "acme", answer code: Int?, ack: Bool = true) throws -> SentMessage? {
    h.sender.clear()
    try h.route(invite(n, tenant: tenant), from: caller)
    guard let inv = TMT.sent(h, "INVITE").last else { return nil }
    try h.route(TMT.reply(to: inv, 180, "Ringing", toTag: "tt\(n)"), from: callee)
    if let code {
        let contact = code < 300 ? "Contact: <sip:bob@192.0.2.20:5060>\r\n" : ""
        try h.route(TMT.reply(to: inv, code, "Reason", toTag: "tt\(n)", extra: contact), from: callee)
        if code < 300 && ack {
            try h.route(inDialog("ACK", n, route: TMT.header(inv, "Record-Route"), cseq: 1), from: caller)
        }
    }
    return inv
}

@Suite struct DialogFlowTests {
    @Test func profileCountsFollowTheCallsAndBYEsEndThem() throws {
        let h = try dialogHarness()
        let s = DialogModule.store(h.runtime)
        let inv = try #require(try call(h, 1, answer: 200))
        #expect(int(h, "manage") == 1)
        #expect(int(h, "set") == 1)
        #expect(int(h, "undeclared") == -1)
        #expect(int(h, "calls") == 1)
        let rr = try #require(TMT.header(inv, "Record-Route"))
        #expect(rr.contains(";did="))
        #expect(s.profileSize("tenant", value: "acme") == 1)
        #expect(s.profileSize("calls", value: nil) == 1)
        #expect(s.counts()[.confirmed] == 1)
        #expect(str(h, "ev_start") == "acme")

        // A second call of the tenant, then a third one is refused by the script.
        try call(h, 2, answer: 200)
        #expect(s.profileSize("tenant", value: "acme") == 2)
        try call(h, 3, answer: nil)
        #expect(h.sender.sent.contains { TMT.status($0) == 486 })
        #expect(s.profileSize("tenant", value: "acme") == 2)
        // Another tenant is not limited by acme's calls.
        try call(h, 4, tenant: "globex", answer: 200)
        #expect(s.profileSize("tenant", value: "globex") == 1)
        #expect(s.profileSize("tenant", value: nil) == 3)

        // BYE from the caller (matched by did), from the callee (matched by did, upstream).
        try h.route(inDialog("BYE", 1, route: rr, cseq: 2), from: caller)
        #expect(int(h, "known") == 1)
        #expect(str(h, "seen") == "acme")
        #expect(str(h, "ev_end") == "acme")
        #expect(s.profileSize("tenant", value: "acme") == 1)
        // Call 2's BYE from the callee: the Route of the callee side is the same Record-Route.
        let ids = s.all().map(\.callID)
        #expect(ids.contains("call-2@example.com"))
        try h.route(inDialog("BYE", 2, route: nil, fromCaller: false, cseq: 5), from: callee)
        // Without a Route, loose_route fails: the script answers 404, the dialog stays.
        #expect(int(h, "unknown") == 1)
        let call2 = try #require(s.all().first { $0.callID == "call-2@example.com" })
        let route2 = "<sip:127.0.0.1:5060;lr;ftag=ft2;did=\(call2.id.didValue)>"
        try h.route(inDialog("BYE", 2, route: route2, fromCaller: false, cseq: 5), from: callee)
        #expect(s.profileSize("tenant", value: "acme") == 0)
        #expect(s.profileSize("calls", value: nil) == 1)
    }

    @Test func failedAndCancelledCallsLeaveTheProfiles() throws {
        let h = try dialogHarness()
        let s = DialogModule.store(h.runtime)
        try call(h, 1, answer: 486)
        #expect(s.profileSize("tenant", value: "acme") == 0)
        #expect(str(h, "ev_failed") == "acme")
        #expect(s.activeCount == 0)

        // CANCEL while ringing: 487 from the callee ends the dialog.
        let inv = try #require(try call(h, 2, answer: nil))
        #expect(s.counts()[.early] == 1)
        #expect(s.profileSize("tenant", value: "acme") == 1)
        try h.route("""
            CANCEL sip:bob@192.0.2.20 SIP/2.0\r
            Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKd2\r
            Max-Forwards: 70\r
            From: <sip:alice@example.com>;tag=ft2\r
            To: <sip:bob@example.com>\r
            Call-ID: call-2@example.com\r
            CSeq: 1 CANCEL\r
            Content-Length: 0\r
            \r

            """, from: caller)
        try h.route(TMT.reply(to: inv, 487, "Request Terminated", toTag: "tt2"), from: callee)
        #expect(s.profileSize("tenant", value: "acme") == 0)
        #expect(s.activeCount == 0)

        // No answer at all: the 408 of tm's timer ends it too.
        try call(h, 3, answer: nil)
        TMT.run(h, for: .seconds(125), step: .seconds(1))
        #expect(s.activeCount == 0)
        #expect(s.profileSize("tenant", value: nil) == 0)
    }

    @Test func timeoutSendsByesToBothSidesAndWritesACDR() throws {
        let h = try dialogHarness(["default_timeout": ["30"], "send_bye": ["1"]],
                                  acc: ["cdr_enable": ["1"], "cdrs_table": ["cdrs"], "cdr_extra": ["tenant=$dlg_var(tenant)"],
                                        "cdr_expired_dlg_enable": ["1"]])
        let sink = MemoryAccounting()
        AccModule.store(h.runtime).setSink(sink)
        let s = DialogModule.store(h.runtime)
        try call(h, 1, answer: 200)
        #expect(s.counts()[.confirmed] == 1)
        h.sender.clear()
        TMT.run(h, for: .seconds(20), step: .seconds(1))
        #expect(TMT.sent(h, "BYE").isEmpty)
        TMT.run(h, for: .seconds(12), step: .seconds(1))
        let byes = TMT.sent(h, "BYE")
        #expect(Set(byes.map(\.destination)).count == 2)  // one each (and their retransmissions)
        let toCaller = try #require(byes.first { $0.destination == caller })
        let toCallee = try #require(byes.first { $0.destination == callee })
        #expect(TMT.requestURI(toCaller) == "sip:alice@192.0.2.10:5060")
        #expect(TMT.header(toCaller, "From")?.contains("tag=tt1") == true)
        #expect(TMT.header(toCallee, "From")?.contains("tag=ft1") == true)
        #expect(TMT.header(toCallee, "CSeq") == "2 BYE")
        // As Kamailio's dlg_bye_all: dialog:end ran when the BYEs left, but the dialog stays (known, in
        // its profile) until the first final reply to a BYE, and acc's CDR is written then.
        #expect(str(h, "ev_end") == "acme")
        #expect(s.activeCount == 1)
        #expect(s.profileSize("tenant", value: "acme") == 1)
        #expect(s.dialog(try #require(s.all().first?.id))?.dflags == 0x30)  // DLG_FLAG_CALLERBYE | CALLEEBYE
        #expect(!sink.records.contains { $0.table == "cdrs" })
        TMT.run(h, for: .seconds(3), step: .seconds(1))
        try h.route(TMT.reply(to: toCallee, 200, "OK", toTag: nil), from: callee)
        #expect(s.activeCount == 0)
        #expect(s.profileSize("tenant", value: "acme") == 0)
        #expect(s.expired.load(ordering: .relaxed) == 1)
        let cdr = try #require(sink.records.first { $0.table == "cdrs" })
        guard case .double(let duration)? = cdr["duration"] else { Issue.record("no duration"); return }
        // The end time is when the BYEs left (acc's DLGCB_TERMINATED), not the reply 3 s later. The
        // timeout is whole seconds after the start's second (as Kamailio's), and the test clock also
        // moves with real time, so the BYEs leave 29-31 s after the exact start (the bound was 29.5: a
        // full-suite run that slowed this test down measured less).
        #expect(duration >= 29 && duration <= 32)
        #expect(cdr["tenant"] == .text("acme"))
        #expect(cdr["callid"] == .text("call-1@example.com"))
        // The other side's reply finds no dialog: nothing twice.
        try h.route(TMT.reply(to: toCaller, 200, "OK", toTag: nil), from: caller)
        #expect(sink.records.filter { $0.table == "cdrs" }.count == 1)
    }

    @Test func aDialogWhoseByesGetNoAnswerEndsOnTheirTimeout() throws {
        let h = try dialogHarness(["default_timeout": ["5"], "send_bye": ["1"]])
        let s = DialogModule.store(h.runtime)
        try call(h, 1, answer: 200)
        h.sender.clear()
        TMT.run(h, for: .seconds(7), step: .seconds(1))
        #expect(Set(TMT.sent(h, "BYE").map(\.destination)) == [caller, callee])
        #expect(s.activeCount == 1)
        // Neither side answers: tm's local 408 (timer F, 32 s) is the final reply that ends it.
        TMT.run(h, for: .seconds(34), step: .seconds(1))
        #expect(s.activeCount == 0)
        #expect(s.profileSize("tenant", value: "acme") == 0)
    }

    @Test func dlgByeSendsOncePerSide() throws {
        let h = try ScriptHarness(script: """
            function ksr_request_route()
              if KSR.siputils.has_totag() > 0 then
                KSR.rr.loose_route()
                if KSR.is_INFO() then
                  KSR.pv.seti("$var(b1)", KSR.dialog.dlg_bye("callee"))
                  KSR.pv.seti("$var(b2)", KSR.dialog.dlg_bye("callee"))
                  KSR.pv.seti("$var(known)", KSR.dialog.is_known_dlg())
                  KSR.sl.send_reply(200, "OK")
                  return
                end
                KSR.tm.t_relay()
                return
              end
              KSR.dialog.dlg_manage()
              KSR.rr.record_route()
              KSR.setdsturi("sip:192.0.2.20:5060")
              KSR.tm.t_relay()
            end
            """, config: ModuleConfiguration(params: [:]))
        let s = DialogModule.store(h.runtime)
        let inv = try #require(try call(h, 1, answer: 200))
        h.sender.clear()
        try h.route(inDialog("INFO", 1, route: TMT.header(inv, "Record-Route"), cseq: 3), from: caller)
        #expect(int(h, "b1") == 1 && int(h, "b2") == -1 && int(h, "known") == 1)
        let bye = try #require(TMT.sent(h, "BYE").first)
        #expect(bye.destination == callee)
        #expect(s.activeCount == 1)
        try h.route(TMT.reply(to: bye, 200, "OK", toTag: nil), from: callee)
        #expect(s.activeCount == 0)
    }

    @Test func timeoutWithoutSendByeOnlyDeletes() throws {
        let h = try dialogHarness(["default_timeout": ["10"]])
        let s = DialogModule.store(h.runtime)
        try call(h, 1, answer: 200)
        h.sender.clear()
        TMT.run(h, for: .seconds(12), step: .seconds(1))
        #expect(TMT.sent(h, "BYE").isEmpty)
        #expect(s.activeCount == 0)
    }

    @Test func unknownAndMalformedDidsAreNotCrashes() throws {
        let h = try dialogHarness()
        let s = DialogModule.store(h.runtime)
        try call(h, 1, answer: 200)
        // A BYE for a dialog nobody knows: routed by the script (loose_route ok, not known).
        try h.route(inDialog("BYE", 9, route: "<sip:127.0.0.1:5060;lr;did=1.ff>", cseq: 2), from: caller)
        #expect(int(h, "known") == -1)
        // A malformed did falls back to Call-ID and tags (dlg_match_mode 1).
        try h.route(inDialog("INFO", 1, route: "<sip:127.0.0.1:5060;lr;did=zz>", cseq: 3), from: caller)
        #expect(int(h, "known") == 1)
        #expect(s.activeCount == 1)
    }

    @Test func rpcsAnswerInKamailiosShapes() throws {
        let h = try dialogHarness()
        try call(h, 1, answer: 200)
        let rt = h.runtime
        func rpc(_ name: String, _ p: [RPCParameters.Value] = []) throws -> RPCValue {
            let m = try #require(DialogModule.rpcMethods.first { $0.name == name })
            return try m.handler(rt, RPCParameters(p))
        }
        guard case .array(let list) = try rpc("dlg.list"), case .object(let d)? = list.first else {
            Issue.record("dlg.list is not an array of objects")
            return
        }
        #expect(d["call-id"] == .string("call-1@example.com"))
        #expect(d["state"] == .int(4))
        #expect(d["profiles"] == .array([.object(["tenant": .string("acme")]), .string("calls")]))
        #expect(d["variables"] == .array([.object(["tenant": .string("acme")])]))
        if case .object(let callerLeg)? = d["caller"] { #expect(callerLeg["tag"] == .string("ft1")) } else { Issue.record("no caller") }
        #expect(try rpc("dlg.profile_get_size", [.string("tenant"), .string("acme")]) == .int(1))
        #expect(try rpc("dlg.profile_get_size", [.string("tenant")]) == .int(1))
        #expect(throws: RPCFault.self) { try rpc("dlg.profile_get_size", [.string("nosuch")]) }
        #expect(try rpc("dlg.stats_active") == .object(["starting": .int(0), "connecting": .int(0), "answering": .int(0),
                                                      "ongoing": .int(1), "all": .int(1)]))
        guard case .int(let he)? = d["h_entry"], case .int(let hi)? = d["h_id"] else { return }
        #expect(throws: RPCFault.self) { try rpc("dlg.end_dlg", [.int(he), .int(hi + 100)]) }
        h.sender.clear()
        _ = try rpc("dlg.end_dlg", [.int(he), .int(hi)])
        h.advance(by: .milliseconds(10))
        let byes = TMT.sent(h, "BYE")
        #expect(byes.count == 2)
        // Ongoing until the first final reply to one of the BYEs (Kamailio's bye_reply_cb).
        #expect(try rpc("dlg.stats_active") == .object(["starting": .int(0), "connecting": .int(0), "answering": .int(0),
                                                      "ongoing": .int(1), "all": .int(1)]))
        let toCallee = try #require(byes.first { $0.destination == callee })
        try h.route(TMT.reply(to: toCallee, 200, "OK", toTag: nil), from: callee)
        #expect(try rpc("dlg.stats_active") == .object(["starting": .int(0), "connecting": .int(0), "answering": .int(0),
                                                      "ongoing": .int(0), "all": .int(0)]))
    }

    @Test func accFlagsWriteAccAndMissedCalls() throws {
        let script = """
            function ksr_request_route()
              KSR.setflag(1)
              KSR.setflag(2)
              KSR.pv.seti("$var(req)", KSR.acc.acc_db_request("200 Forced", "acc"))
              KSR.pv.seti("$var(bad)", KSR.acc.acc_log_request(""))
              KSR.setdsturi("sip:192.0.2.20:5060")
              KSR.tm.t_relay()
            end
            """
        let h = try ScriptHarness(script: script, config: ModuleConfiguration(params: [
            "acc": ["log_flag": ["1"], "db_flag": ["1"], "db_missed_flag": ["2"], "db_extra": ["src_user=$fU;src_ip=$si"]]]))
        let sink = MemoryAccounting()
        AccModule.store(h.runtime).setSink(sink)
        try h.route(invite(1), from: caller)
        #expect(int(h, "req") == 1)
        #expect(int(h, "bad") == -1)
        let inv = try #require(TMT.sent(h, "INVITE").last)
        try h.route(TMT.reply(to: inv, 200, "OK", toTag: "tt1"), from: callee)
        try h.route(invite(2), from: caller)
        let inv2 = try #require(TMT.sent(h, "INVITE").last)
        try h.route(TMT.reply(to: inv2, 486, "Busy Here", toTag: "tt2"), from: callee)
        let acc = sink.records.filter { $0.table == "acc" }
        #expect(acc.count == 3)  // two acc_db_request, one answered transaction
        #expect(acc.first?["sip_code"] == .text("200") && acc.first?["sip_reason"] == .text("Forced"))
        let answered = try #require(acc.first { $0["sip_reason"] == .text("OK") })
        #expect(answered["to_tag"] == .text("tt1"))
        #expect(answered["src_user"] == .text("alice"))
        #expect(answered["src_ip"] == .text("192.0.2.10"))
        let missed = sink.records.filter { $0.table == "missed_calls" }
        #expect(missed.count == 1)
        #expect(missed.first?["sip_code"] == .text("486"))
        #expect(missed.first?["callid"] == .text("call-2@example.com"))
    }

    @Test func theTenantLimitsExampleRefusesTheFourthCall() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let h = try ScriptHarness(scriptFile: root.appendingPathComponent("examples/tenant-limits.lua").path,
                                  modules: ["tm", "sl", "rr", "maxfwd", "siputils", "xlog", "dialog", "acc"],
                                  config: ModuleConfiguration(params: [
                                    "dialog": ["profiles_with_value": ["tenant"], "event_callback": ["ksr_dialog_event"]]]))
        let s = DialogModule.store(h.runtime)
        var invites: [SentMessage] = []
        for n in 1...3 {
            h.sender.clear()
            try h.route(invite(n), from: caller)
            invites.append(try #require(TMT.sent(h, "INVITE").last))
        }
        #expect(s.profileSize("tenant", value: "acme") == 3)
        h.sender.clear()
        try h.route(invite(4), from: caller)
        #expect(h.sender.sent.contains { TMT.status($0) == 486 })
        #expect(TMT.sent(h, "INVITE").isEmpty)
        // One call fails at the PBX: its place is free again.
        try h.route(TMT.reply(to: invites[0], 480, "Unavailable", toTag: "x"), from: SocketAddress(ip: "127.0.0.1", port: 5080)!)
        #expect(s.profileSize("tenant", value: "acme") == 2)
        h.sender.clear()
        try h.route(invite(5), from: caller)
        #expect(TMT.sent(h, "INVITE").count == 1)
        #expect(s.profileSize("tenant", value: "acme") == 3)
    }

    @Test func confirmedDialogsAreWrittenAndReadBack() throws {
        let db = MemoryDialogs()
        let h = try dialogHarness(["db_mode": ["1"], "db_url": ["sqlite:///unused.db"]])
        let s = DialogModule.store(h.runtime)
        #expect(try s.attach(db, now: h.runtime.clock.unixSeconds) == 0)
        let inv = try #require(try call(h, 1, answer: 200))
        try call(h, 2, answer: 486)
        h.advance(by: .seconds(1))
        #expect(db.rows.count == 1)
        let row = try #require(db.rows.values.first)
        #expect(row.state == 4 && row.callID == "call-1@example.com" && row.toTag == "tt1")
        #expect(row.profiles.contains(.init(name: "tenant", value: "acme")))
        #expect(row.variables == [.init(name: "tenant", value: "acme")])

        // A new server over the same rows: the dialog, its profile and its did are back.
        let h2 = try dialogHarness(["db_mode": ["1"], "db_url": ["sqlite:///unused.db"]])
        let s2 = DialogModule.store(h2.runtime)
        #expect(try s2.attach(db, now: h2.runtime.clock.unixSeconds) == 1)
        #expect(s2.profileSize("tenant", value: "acme") == 1)
        #expect(s2.profileSize("calls", value: nil) == 1)
        try h2.route(inDialog("BYE", 1, route: TMT.header(inv, "Record-Route"), cseq: 2), from: caller)
        #expect(int(h2, "known") == 1)
        #expect(str(h2, "seen") == "acme")
        #expect(s2.profileSize("tenant", value: "acme") == 0)
        h2.advance(by: .seconds(1))
        #expect(db.rows.isEmpty)
    }

    @Test func dbMode2WritesEveryUpdatePeriodAndDeletesAtOnce() throws {
        let db = MemoryDialogs()
        let h = try dialogHarness(["db_mode": ["2"], "db_url": ["sqlite:///unused.db"], "db_update_period": ["5"]])
        let s = DialogModule.store(h.runtime)
        _ = try s.attach(db, now: h.runtime.clock.unixSeconds)
        let inv = try #require(try call(h, 1, answer: 200))
        h.advance(by: .seconds(1))
        #expect(db.rows.isEmpty)  // not yet: db_update_period
        for _ in 0..<5 { h.advance(by: .seconds(1)) }
        #expect(db.rows.count == 1)
        try h.route(inDialog("BYE", 1, route: TMT.header(inv, "Record-Route"), cseq: 2), from: caller)
        h.advance(by: .seconds(1))
        #expect(db.rows.isEmpty)  // deletions do not wait for the period
    }

    @Test func dbMode3EmptiesTheTableAtStartAndWritesItAtStop() throws {
        let db = MemoryDialogs()
        let h = try dialogHarness(["db_mode": ["1"], "db_url": ["sqlite:///unused.db"]])
        _ = try DialogModule.store(h.runtime).attach(db, now: h.runtime.clock.unixSeconds)
        try call(h, 1, answer: 200)
        h.advance(by: .seconds(1))
        #expect(db.rows.count == 1)

        let h2 = try dialogHarness(["db_mode": ["3"], "db_url": ["sqlite:///unused.db"]])
        let s2 = DialogModule.store(h2.runtime)
        #expect(try s2.attach(db, now: h2.runtime.clock.unixSeconds) == 1)
        #expect(db.rows.isEmpty)  // loaded, then the table is emptied (Kamailio's DB_MODE_SHUTDOWN)
        #expect(s2.profileSize("tenant", value: "acme") == 1)
        try call(h2, 2, answer: 200)
        for _ in 0..<3 { h2.advance(by: .seconds(1)) }
        #expect(db.rows.isEmpty)
        s2.close()
        #expect(db.rows.count == 2)
    }

    @Test func dialogsAreLoadedFromTheDatabaseByCallIDOrAll() throws {
        let db = MemoryDialogs()
        // Another instance wrote two confirmed dialogs.
        let other = try dialogHarness(["db_mode": ["1"], "db_url": ["sqlite:///unused.db"]])
        _ = try DialogModule.store(other.runtime).attach(db, now: other.runtime.clock.unixSeconds)
        try call(other, 1, answer: 200)
        try call(other, 2, tenant: "beta", answer: 200)
        other.advance(by: .seconds(1))
        #expect(db.rows.count == 2)

        let script = """
            function ksr_request_route()
              local c = KSR.pv.gete("$hdr(X-Load)")
              if c == "extra" then
                KSR.pv.seti("$var(r)", KSR.dialog.dlg_db_load_extra())
              else
                KSR.pv.seti("$var(r)", KSR.dialog.dlg_db_load_callid(c))
              end
              KSR.sl.send_reply(200, "OK")
            end
            """
        func load(_ h: ScriptHarness, _ what: String) throws -> Int {
            try h.route(SIPProbeText.options(extra: "X-Load: \(what)\r\n"), from: caller)
            return int(h, "r")
        }
        let params: [String: [String: [String]]] = ["dialog": ["profiles_with_value": ["tenant"], "profiles_no_value": ["calls"],
                                                               "db_mode": ["1"], "db_url": ["sqlite:///unused.db"]]]
        let h = try ScriptHarness(script: script, config: ModuleConfiguration(params: params))
        let s = DialogModule.store(h.runtime)
        // Without a database: -1 (Kamailio: invalid database handle).
        #expect(try load(h, "call-1@example.com") == -1)
        _ = try s.attach(MemoryDialogs(), now: h.runtime.clock.unixSeconds)
        s.persistence.withLock { $0 = db }
        #expect(try load(h, "call-1@example.com") == 1)
        #expect(s.activeCount == 1 && s.profileSize("tenant", value: "acme") == 1)
        // Loaded again: the id is taken, skipped (still 1).
        #expect(try load(h, "call-1@example.com") == 1)
        #expect(s.activeCount == 1)
        #expect(try load(h, "extra") == 1)
        #expect(s.activeCount == 2 && s.profileSize("tenant", value: "beta") == 1)
        #expect(try load(h, "no-such-call") == 1)

        // db_mode 0 (or 3): no handle in the workers, -1.
        let h0 = try ScriptHarness(script: script, config: ModuleConfiguration(params: ["dialog": ["profiles_with_value": ["tenant"]]]))
        #expect(try load(h0, "extra") == -1)
    }

    /// As Kamailio's dlg_ka_run / dlg_ka_cb_all: the first keepalive `ka_interval` after the ACK; a
    /// 408 (tm's own, no answer) makes the dialog's lifetime 10 s — it ends on that timeout, with BYEs
    /// only when `send_bye` asks for them — instead of ending at once.
    @Test(arguments: [false, true]) func keepalivesThatFailShortenTheDialogToTenSeconds(sendBye: Bool) throws {
        var params = ["ka_timer": ["1"], "ka_interval": ["20"]]
        if sendBye { params["send_bye"] = ["1"] }
        let h = try dialogHarness(params)
        let s = DialogModule.store(h.runtime)
        try call(h, 1, tenant: "ka", answer: 200)
        let id = try #require(s.all().first?.id)
        h.sender.clear()
        TMT.run(h, for: .seconds(18), step: .seconds(1))
        #expect(TMT.sent(h, "OPTIONS").isEmpty)  // not before ka_interval after the ACK
        TMT.run(h, for: .seconds(3), step: .seconds(1))
        let ka = try #require(TMT.sent(h, "OPTIONS").first)
        #expect(ka.destination == callee)
        #expect(TMT.header(ka, "From")?.contains("tag=ft1") == true && TMT.header(ka, "To")?.contains("tag=tt1") == true)
        // Answered: the dialog stays, its lifetime unchanged.
        try h.route(TMT.reply(to: ka, 200, "OK", toTag: nil), from: callee)
        #expect(s.activeCount == 1 && s.dialog(id)?.timeout == 43200)
        // The next keepalive (20 s later) gets no answer: tm's 408 after timer F (32 s) makes the lifetime
        // 10 s; the dialog is still up and in its profile.
        h.sender.clear()
        var elapsed = 0
        while s.dialog(id)?.timeout != 10 && elapsed < 70 {
            TMT.run(h, for: .seconds(1), step: .seconds(1))
            elapsed += 1
        }
        #expect(s.dialog(id)?.timeout == 10, "lifetime not shortened after \(elapsed) s")
        #expect(s.activeCount == 1 && s.profileSize("tenant", value: "ka") == 1)
        #expect(TMT.sent(h, "BYE").isEmpty)
        TMT.run(h, for: .seconds(8), step: .seconds(1))
        #expect(s.activeCount == 1)
        TMT.run(h, for: .seconds(3), step: .seconds(1))
        let byes = TMT.sent(h, "BYE")
        if sendBye {
            // Timeout with send_bye: BYEs to both sides; the dialog ends with the first reply.
            #expect(Set(byes.map(\.destination)) == [caller, callee])
            #expect(s.activeCount == 1)
            try h.route(TMT.reply(to: try #require(byes.first { $0.destination == callee }), 200, "OK", toTag: nil), from: callee)
        } else {
            #expect(byes.isEmpty)
        }
        #expect(s.activeCount == 0 && s.profileSize("tenant", value: "ka") == 0)
        #expect(s.expired.load(ordering: .relaxed) == 1)
    }

    /// As Kamailio (checked with Kamailio 5.6 itself, see DialogIntegrationTests): every set_dlg_profile
    /// adds a link, so the same profile+value twice counts twice (get_profile_size, dlg.profile_get_size,
    /// dlg.profile_list, dlg.list); unset_dlg_profile removes one link, and is refused (-1) in the
    /// request route; the dialog's end removes every link.
    @Test func aProfileSetTwiceCountsTwice() throws {
        let h = try ScriptHarness(script: """
            function ksr_request_route()
              if KSR.siputils.has_totag() > 0 then
                KSR.rr.loose_route()
                KSR.tm.t_relay()
                return
              end
              KSR.dialog.dlg_manage()
              KSR.pv.seti("$var(s1)", KSR.dialog.set_dlg_profile("tenant", "acme"))
              KSR.pv.seti("$var(s2)", KSR.dialog.set_dlg_profile("tenant", "acme"))
              KSR.pv.seti("$var(s3)", KSR.dialog.set_dlg_profile_static("calls"))
              KSR.pv.seti("$var(s4)", KSR.dialog.set_dlg_profile_static("calls"))
              KSR.dialog.get_profile_size("tenant", "acme", "$var(size)")
              KSR.pv.seti("$var(unset_request)", KSR.dialog.unset_dlg_profile("tenant", "acme"))
              KSR.tm.t_on_branch("ksr_branch")
              KSR.rr.record_route()
              KSR.setdsturi("sip:192.0.2.20:5060")
              KSR.tm.t_relay()
            end
            function ksr_branch()
              KSR.pv.seti("$var(unset_branch)", KSR.dialog.unset_dlg_profile("tenant", "acme"))
              KSR.pv.seti("$var(in_branch)", KSR.dialog.is_in_profile("tenant", "acme"))
              KSR.dialog.get_profile_size("tenant", "acme", "$var(branch_size)")
            end
            """, config: ModuleConfiguration(params: ["dialog": ["profiles_with_value": ["tenant"], "profiles_no_value": ["calls"]]]))
        let s = DialogModule.store(h.runtime)
        let inv = try #require(try call(h, 1, answer: 200))
        let sets: [Int] = [int(h, "s1"), int(h, "s2"), int(h, "s3"), int(h, "s4")]
        #expect(sets == [1, 1, 1, 1])
        #expect(int(h, "size") == 2)
        #expect(int(h, "unset_request") == -1)
        #expect(int(h, "unset_branch") == 1 && int(h, "in_branch") == 1 && int(h, "branch_size") == 1)
        #expect(s.profileSize("tenant", value: "acme") == 1 && s.profileSize("tenant", value: nil) == 1)
        #expect(s.profileSize("calls", value: nil) == 2)
        func rpc(_ name: String, _ p: [RPCParameters.Value] = []) throws -> RPCValue {
            let m = try #require(DialogModule.rpcMethods.first { $0.name == name })
            return try m.handler(h.runtime, RPCParameters(p))
        }
        #expect(try rpc("dlg.profile_get_size", [.string("calls")]) == .int(2))
        #expect(try rpc("dlg.profile_get_size", [.string("tenant"), .string("acme")]) == .int(1))
        guard case .array(let listed) = try rpc("dlg.profile_list", [.string("calls")]) else { Issue.record("not an array"); return }
        #expect(listed.count == 2)
        guard case .array(let all) = try rpc("dlg.list"), case .object(let d)? = all.first else { Issue.record("no dlg.list"); return }
        #expect(d["profiles"] == .array([.object(["tenant": .string("acme")]), .string("calls"), .string("calls")]))
        #expect(s.profileSizes().map { "\($0.name)=\($0.value ?? "")/\($0.size)" } == ["calls=/2", "tenant=acme/1"])
        // The BYE ends the dialog: every link goes.
        try h.route(inDialog("BYE", 1, route: TMT.header(inv, "Record-Route"), cseq: 2), from: caller)
        #expect(s.activeCount == 0)
        #expect(s.profileSize("calls", value: nil) == 0 && s.profileSize("tenant", value: nil) == 0)
    }

    /// The caller hangs up while the proxy's timeout BYEs are unanswered (Kamailio's dlg_onroute: the
    /// dialog is still confirmed): `dialog:end` runs again, the dialog ends with that BYE, its CDR takes
    /// the BYE's time as the end (acc's DLGCB_TERMINATED sets it again) and is written once.
    @Test func aByeOfASideWhileTheProxyEndsTheDialog() throws {
        let h = try dialogHarness(["default_timeout": ["30"], "send_bye": ["1"]],
                                  acc: ["cdr_enable": ["1"], "cdrs_table": ["cdrs"], "cdr_expired_dlg_enable": ["1"]])
        let sink = MemoryAccounting()
        AccModule.store(h.runtime).setSink(sink)
        let s = DialogModule.store(h.runtime)
        let inv = try #require(try call(h, 1, answer: 200))
        h.sender.clear()
        TMT.run(h, for: .seconds(32), step: .seconds(1))
        let byes = TMT.sent(h, "BYE")
        #expect(Set(byes.map(\.destination)) == [caller, callee])
        #expect(int(h, "n_end") == 1 && s.activeCount == 1)
        TMT.run(h, for: .seconds(4), step: .seconds(1))
        try h.route(inDialog("BYE", 1, route: TMT.header(inv, "Record-Route"), cseq: 2), from: caller)
        #expect(int(h, "n_end") == 2)
        #expect(s.activeCount == 0 && s.profileSize("tenant", value: "acme") == 0)
        let cdrs = sink.records.filter { $0.table == "cdrs" }
        #expect(cdrs.count == 1)
        guard case .double(let duration)? = cdrs.first?["duration"] else { Issue.record("no duration"); return }
        #expect(duration >= 33 && duration <= 37, "duration \(duration)")
        // The replies to the proxy's BYEs find no dialog: nothing more.
        for b in byes { try h.route(TMT.reply(to: b, 200, "OK", toTag: nil), from: b.destination) }
        #expect(sink.records.filter { $0.table == "cdrs" }.count == 1 && int(h, "n_end") == 2)
    }

    @Test func aDialogNoTransactionTookIsRemovedWhenTheRouteEnds() throws {
        let h = try dialogHarness()
        let s = DialogModule.store(h.runtime)
        h.sender.clear()
        try h.route(invite(1, tenant: "reject"), from: caller)
        #expect(h.sender.sent.contains { TMT.status($0) == 403 })
        #expect(int(h, "set") == 1)
        #expect(s.profileSize("tenant", value: "reject") == 0)
        #expect(s.activeCount == 0)
        #expect(str(h, "ev_failed") == "reject")
    }

    @Test func aDialogWhoseTransactionEndsWithoutAFinalReplyIsRemoved() throws {
        let h = try dialogHarness()
        let s = DialogModule.store(h.runtime)
        try h.route(invite(1, tenant: "newtran"), from: caller)
        #expect(s.profileSize("tenant", value: "newtran") == 1)
        TMT.run(h, for: .seconds(200), step: .seconds(2))
        #expect(h.transactions.count == 0)
        #expect(s.profileSize("tenant", value: "newtran") == 0)
        #expect(s.activeCount == 0)
    }
}
