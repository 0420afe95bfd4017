import Testing
import Foundation
import StarlingTestSupport

/// Issue 17: dialog profiles as per-tenant limits, dialog timeouts ended by BYEs, CDRs — with real
/// SIPp ends, on Starling and on Kamailio 5.6 (dialog.so, acc.so, db_sqlite) running the same script.
@Suite(.serialized) struct DialogIntegrationTests {
    static let limit = 3

    /// The same KEMI script on both servers: a tenant (X-Tenant) may have `limit` calls at once; the
    /// relay target is the port in X-Target; an OPTIONS answers the tenant's profile size.
    static let script = """
        local LIMIT = \(limit)
        function ksr_request_route()
          if KSR.is_OPTIONS() then
            KSR.dialog.get_profile_size("tenant", KSR.pv.gete("$hdr(X-Tenant)"), "$var(n)")
            KSR.sl.send_reply(200, "size " .. tostring(KSR.pv.get("$var(n)")))
            return
          end
          if KSR.is_CANCEL() then
            if KSR.tm.t_check_trans() > 0 then KSR.tm.t_relay() end
            return
          end
          if KSR.siputils.has_totag() > 0 then
            if KSR.rr.loose_route() > 0 then
              if KSR.is_BYE() then KSR.err("dialog-bye known=" .. KSR.dialog.is_known_dlg() .. "\\n") end
              KSR.tm.t_relay()
            elseif KSR.is_ACK() then
              if KSR.tm.t_check_trans() > 0 then KSR.tm.t_relay() end
            else
              KSR.sl.send_reply(404, "Not here")
            end
            return
          end
          if KSR.tm.t_check_trans() == 0 then return end
          if KSR.is_INVITE() then
            local tenant = KSR.pv.gete("$hdr(X-Tenant)")
            KSR.dialog.get_profile_size("tenant", tenant, "$var(n)")
            if KSR.pv.get("$var(n)") >= LIMIT then
              KSR.sl.send_reply(486, "Tenant Limit")
              return
            end
            KSR.dialog.dlg_manage()
            KSR.dialog.set_dlg_profile("tenant", tenant)
            if tenant == "twice" then
              KSR.err("set-again " .. KSR.dialog.set_dlg_profile("tenant", tenant) .. "\\n")
              KSR.err("unset-in-request " .. KSR.dialog.unset_dlg_profile("tenant", tenant) .. "\\n")
              KSR.tm.t_on_branch("ksr_branch_twice")
            end
            KSR.dialog.get_profile_size("tenant", tenant, "$var(n)")
            KSR.err("tenant-size " .. tenant .. " " .. KSR.pv.get("$var(n)") .. "\\n")
            if tenant == "short" then KSR.dialog.dlg_set_timeout(2) end
            KSR.rr.record_route()
          end
          KSR.setdsturi("sip:127.0.0.1:" .. KSR.pv.gete("$hdr(X-Target)"))
          KSR.tm.t_relay()
        end
        function ksr_branch_twice()
          KSR.err("unset-in-branch " .. KSR.dialog.unset_dlg_profile("tenant", "twice") .. "\\n")
          KSR.dialog.get_profile_size("tenant", "twice", "$var(n)")
          KSR.err("branch-size " .. KSR.pv.get("$var(n)") .. "\\n")
        end
        """

    /// What one server did with the calls; equal on Starling and Kamailio.
    struct Outcome: Equatable, CustomStringConvertible {
        var answeredUnderLoad = 0
        var refusedUnderLoad = 0
        var maxTenantSize = 0
        var sizeAfterCallerBye = ""
        var calleeByeCallsOK = false
        var sizeAfterCalleeBye = ""
        var busyCallsOK = false
        var sizeAfterFailure = ""
        var timeoutCallerGotBye = false
        var timeoutCalleeGotBye = false
        var sizeAfterTimeout = ""
        var cancelCallOK = false
        var sizeWhileRinging = ""
        var sizeAfterCancel = ""
        /// The "twice" call's log: set-again, unset-in-request, tenant-size, unset-in-branch, branch-size.
        var twiceLog: [String] = []
        var sizeWhileTwiceUp = ""
        var sizeAfterTwice = ""
        var cdrs = 0
        var timeoutCDRDurationOK = false

        var description: String {
            "answered \(answeredUnderLoad) refused \(refusedUnderLoad) max \(maxTenantSize) | after caller BYE \(sizeAfterCallerBye) | "
                + "callee BYE ok \(calleeByeCallsOK) \(sizeAfterCalleeBye) | busy ok \(busyCallsOK) \(sizeAfterFailure) | "
                + "timeout BYEs \(timeoutCallerGotBye)/\(timeoutCalleeGotBye) \(sizeAfterTimeout) | "
                + "cancel ok \(cancelCallOK) ringing \(sizeWhileRinging) after \(sizeAfterCancel) | "
                + "twice \(twiceLog) up \(sizeWhileTwiceUp) after \(sizeAfterTwice) | cdrs \(cdrs) duration ok \(timeoutCDRDurationOK)"
        }
    }

    /// The status line an OPTIONS with `X-Tenant: tenant` gets ("SIP/2.0 200 size N").
    static func size(_ tenant: String, port: Int) throws -> String {
        let endpoint = try UDPEndpoint()
        let probe = SIPProbe.options(requestURI: "sip:probe@127.0.0.1:\(port)", from: endpoint)
            .replacingOccurrences(of: "Max-Forwards: 70\r\n", with: "Max-Forwards: 70\r\nX-Tenant: \(tenant)\r\n")
        try endpoint.send(probe, to: port)
        let line = endpoint.receive(timeout: .seconds(2))?.components(separatedBy: "\r\n").first ?? "no reply"
        return line.replacingOccurrences(of: "SIP/2.0 200 ", with: "")
    }

    /// The tenant's size once the calls are over: "size 0" as soon as it is (a dialog the proxy ended
    /// with BYEs leaves its profile with the first reply to them), else what it is after 5 s.
    static func settledSize(_ tenant: String, port: Int) throws -> String {
        let deadline = ContinuousClock.now + .seconds(5)
        var s = try size(tenant, port: port)
        while s != "size 0" && ContinuousClock.now < deadline {
            usleep(100_000)
            s = try size(tenant, port: port)
        }
        return s
    }

    /// The tenant's size once it is `expected` (polled up to 20 s: the SIPp ends start slowly on a
    /// loaded machine), else the last one read.
    static func polledSize(_ tenant: String, port: Int, until expected: String) throws -> String {
        let deadline = ContinuousClock.now + .seconds(20)
        var s = try size(tenant, port: port)
        while s != expected && ContinuousClock.now < deadline {
            usleep(100_000)
            s = try size(tenant, port: port)
        }
        return s
    }

    /// Runs the six parts against a proxy on `proxyPort` (its log in `server`).
    static func exercise(proxyPort: Int, server: ServerProcess, directory: URL, tag: String) throws -> Outcome {
        var o = Outcome()
        let ports = try Ports.freeUDPPorts(12)
        func uac(_ scenario: String, _ name: String, tenant: String, target: Int, port: Int, calls: Int, rate: Int,
                 hold: Int = 0) throws -> SIPpResult {
            try SIPp.runUAC(scenario: PackagePaths.scenario(scenario), target: proxyPort, localPort: port, rate: rate,
                            calls: calls, directory: directory, tag: "\(tag)-\(name)", service: "bob",
                            extra: ["-set", "tenant", tenant, "-set", "target", String(target), "-d", String(hold)],
                            timeout: .seconds(60))
        }
        /// One call held 4 s (the UAC's -d) from `uacScenario` through the proxy to a SIPp UAS running
        /// `uasScenario`: the tenant's size while it is up (polled until "size 1") and the UAC's result.
        func heldCall(_ name: String, uas uasScenario: String, uac uacScenario: String, tenant: String, uasPort: Int,
                      uacPort: Int) throws -> (sizeWhileUp: String, result: SIPpResult) {
            let uas = try SIPp.uas(scenario: PackagePaths.scenario(uasScenario), port: uasPort, directory: directory,
                                   tag: "\(tag)-\(name)-uas")
            defer { uas.stop() }
            let uac = try SIPp.startUAC(scenario: PackagePaths.scenario(uacScenario), target: proxyPort, localPort: uacPort,
                                        rate: 1, calls: 1, directory: directory, tag: "\(tag)-\(name)",
                                        extra: ["-s", "bob", "-set", "tenant", tenant, "-set", "target", String(uasPort),
                                                "-d", "4000"])
            defer { uac.stop() }
            let sizeWhileUp = try polledSize(tenant, port: proxyPort, until: "size 1")
            return (sizeWhileUp, try #require(uac.wait(timeout: .seconds(60))))
        }
        // 1. Five calls of one tenant at once, held 3 s, the caller hangs up: three get through.
        do {
            let uas = try SIPp.uas(port: ports[0], directory: directory, tag: "\(tag)-load-uas", traceMessages: true)
            let r = try uac("uac_tenant.xml", "load", tenant: "acme", target: ports[0], port: ports[1], calls: 5, rate: 50, hold: 3000)
            #expect(r.allCallsSucceeded, "\(tag): \(r)\n\(server.logTail())")
            usleep(300_000)
            let u = uas.stop()
            o.answeredUnderLoad = u.receivedRequests.filter { $0 == "INVITE" }.count
            o.refusedUnderLoad = r.successfulCalls - o.answeredUnderLoad
            o.sizeAfterCallerBye = try settledSize("acme", port: proxyPort)
        }
        // 2. The callee hangs up (its BYE goes through the proxy by the Record-Route).
        do {
            let uas = try SIPp.uas(scenario: PackagePaths.scenario("uas_bye.xml"), port: ports[2], directory: directory,
                                   tag: "\(tag)-bye-uas", extra: ["-d", "500"])
            let r = try uac("uac_wait_bye.xml", "bye", tenant: "beta", target: ports[2], port: ports[3], calls: 2, rate: 10)
            o.calleeByeCallsOK = r.allCallsSucceeded && r.successfulCalls == 2
            #expect(o.calleeByeCallsOK, "\(tag): \(r)\n\(uas.logTail())\n\(server.logTail())")
            uas.stop()
            o.sizeAfterCalleeBye = try settledSize("beta", port: proxyPort)
        }
        // 3. A busy callee: the dialog fails and leaves the profile.
        do {
            let uas = try SIPp.uas(scenario: PackagePaths.scenario("uas_486.xml"), port: ports[4], directory: directory,
                                   tag: "\(tag)-busy-uas")
            let r = try uac("uac_tenant.xml", "busy", tenant: "gamma", target: ports[4], port: ports[5], calls: 2, rate: 10)
            o.busyCallsOK = r.allCallsSucceeded && r.successfulCalls == 2
            #expect(o.busyCallsOK, "\(tag): \(r)\n\(server.logTail())")
            uas.stop()
            o.sizeAfterFailure = try settledSize("gamma", port: proxyPort)
        }
        // 4. A call held past its 2 s dialog timeout: the proxy sends BYEs to both ends.
        do {
            let uas = try SIPp.uas(port: ports[6], directory: directory, tag: "\(tag)-timeout-uas", traceMessages: true)
            let r = try SIPp.runUAC(scenario: PackagePaths.scenario("uac_wait_bye.xml"), target: proxyPort,
                                    localPort: ports[7], rate: 1, calls: 1, directory: directory, tag: "\(tag)-timeout",
                                    service: "bob", traceMessages: true,
                                    extra: ["-set", "tenant", "short", "-set", "target", String(ports[6])], timeout: .seconds(60))
            o.timeoutCallerGotBye = r.allCallsSucceeded && r.receivedRequests.contains("BYE")
            // The callee's BYE leaves the proxy about when the caller's does; on a loaded machine it can
            // reach SIPp later than 0.5 s after the caller's call ended (Kamailio's, once in a full
            // run; once more than 5 s later with five builds running): wait for it (up to 15 s; SIPp
            // may also write its message log only when it stops).
            let deadline = ContinuousClock.now + .seconds(15)
            while !uas.receivedRequests.contains("BYE") && ContinuousClock.now < deadline { usleep(100_000) }
            let u = uas.stop()
            o.timeoutCalleeGotBye = u.receivedRequests.contains("BYE")
            // Kamailio 5.6 races with itself here under load: dlg_bye_all sends the caller's BYE, the
            // 200 to it (another process, bye_reply_cb) deletes the dialog before the timer process
            // sends the callee's, and send_bye refuses a non-confirmed dialog (its log says so). That
            // is Kamailio's behaviour, not the test's: counted as the BYE it meant to send.
            if !o.timeoutCalleeGotBye && tag == "kamailio"
                && server.log.contains("terminating non-confirmed dialogs not supported") {
                o.timeoutCalleeGotBye = true
            }
            #expect(o.timeoutCallerGotBye && o.timeoutCalleeGotBye, "\(tag): \(r)\n\(u)\n\(server.logTail())")
            o.sizeAfterTimeout = try settledSize("short", port: proxyPort)
        }
        // 5. A call cancelled while ringing: in the profile while early, out of it after the 487.
        do {
            let (sizeWhileRinging, r) = try heldCall("cancel", uas: "uas_ring_cancel.xml", uac: "uac_cancel.xml", tenant: "delta",
                                                     uasPort: ports[8], uacPort: ports[9])
            o.sizeWhileRinging = sizeWhileRinging
            o.cancelCallOK = r.allCallsSucceeded && r.successfulCalls == 1
            #expect(o.cancelCallOK, "\(tag): \(r)\n\(server.logTail())")
            o.sizeAfterCancel = try settledSize("delta", port: proxyPort)
        }
        // 6. set_dlg_profile twice for the same value (counts twice), unset_dlg_profile in the request
        // route (refused) and in a branch route (one link less).
        do {
            let (sizeWhileTwiceUp, r) = try heldCall("twice", uas: "uas.xml", uac: "uac_tenant.xml", tenant: "twice",
                                                     uasPort: ports[10], uacPort: ports[11])
            o.sizeWhileTwiceUp = sizeWhileTwiceUp
            #expect(r.allCallsSucceeded && r.successfulCalls == 1, "\(tag): \(r)\n\(server.logTail())")
            o.sizeAfterTwice = try settledSize("twice", port: proxyPort)
            o.twiceLog = ["set-again ", "unset-in-request ", "tenant-size twice ", "unset-in-branch ", "branch-size "].map { key in
                let line = server.log.split(separator: "\n").last { $0.contains(key) } ?? ""
                guard let r = line.range(of: key) else { return key + "?" }
                return key + line[r.upperBound...].prefix { $0 == "-" || $0.isNumber }
            }
        }
        // The profile never held more calls of a tenant than the limit.
        let sizes = server.log.split(separator: "\n").compactMap { line -> Int? in
            guard let r = line.range(of: "tenant-size acme ") else { return nil }
            return Int(line[r.upperBound...].prefix { $0.isNumber })
        }
        o.maxTenantSize = sizes.max() ?? -1
        return o
    }

    /// The CDR durations (seconds), sorted.
    static func cdrDurations(_ database: URL) throws -> [Double] {
        let r = try Command.run("/usr/bin/sqlite3", [database.path, "SELECT duration FROM acc_cdrs ORDER BY duration"],
                                timeout: .seconds(10))
        guard r.status == 0 else { throw HarnessError("sqlite3: \(r.output)") }
        return r.output.split(whereSeparator: \.isNewline).compactMap { Double($0.trimmingCharacters(in: .whitespaces)) }
    }

    @Test func tenantLimitsTimeoutsAndCDRsMatchKamailio() throws {
        _ = try Requirements.tool("sqlite3", package: "sqlite3")
        let directory = try PackagePaths.makeTemporaryDirectory("starling-dialog")
        let script = directory.appendingPathComponent("tenants.lua")
        try Self.script.write(to: script, atomically: true, encoding: .utf8)

        // Starling.
        let database = directory.appendingPathComponent("starling.db")
        let port = try Ports.freeUDPPort()
        let starling = try Starling.start(script: script, config: """
            [core]
            modules = ["tm", "sl", "rr", "siputils", "dialog", "acc"]
            [modparam.dialog]
            profiles_with_value = "tenant"
            send_bye = 1
            default_timeout = 60
            [modparam.acc]
            db_url = "sqlite://\(database.path)"
            cdr_enable = 1
            cdrs_table = "acc_cdrs"
            cdr_expired_dlg_enable = 1
            """, port: port, workers: 1, directory: directory)
        defer { starling.stop() }
        let mine = try Self.exercise(proxyPort: port, server: starling, directory: directory, tag: "starling")
        starling.stop()
        let myDurations = try Self.cdrDurations(database)
        var starlingOutcome = mine
        starlingOutcome.cdrs = myDurations.count
        // The timed-out call lasted its 2 s timeout (the dialog timer runs once a second).
        starlingOutcome.timeoutCDRDurationOK = myDurations.contains { $0 >= 1 && $0 <= 3.6 }

        // Kamailio 5.6 with dialog.so and acc.so writing CDRs through db_sqlite.
        let kdb = directory.appendingPathComponent("kamailio.db")
        for schema in ["standard-create.sql", "acc-create.sql"] {
            let r = try Command.run("/usr/bin/sqlite3", [kdb.path, ".read /usr/share/kamailio/db_sqlite/\(schema)"], timeout: .seconds(10))
            #expect(r.status == 0, "\(r.output)")
        }
        let kport = try Ports.freeUDPPort()
        let kdir = directory.appendingPathComponent("kamailio")
        try FileManager.default.createDirectory(at: kdir, withIntermediateDirectories: true)
        let kamailio = try Kamailio.start(
            script: script, port: kport, children: 1,
            modules: ["tm", "sl", "rr", "pv", "siputils", "maxfwd", "db_sqlite", "dialog", "acc"],
            extra: """
                modparam("dialog", "profiles_with_value", "tenant")
                modparam("dialog", "send_bye", 1)
                modparam("dialog", "default_timeout", 60)
                modparam("acc", "db_url", "sqlite://\(kdb.path)")
                modparam("acc", "cdr_enable", 1)
                modparam("acc", "cdrs_table", "acc_cdrs")
                modparam("acc", "cdr_expired_dlg_enable", 1)
                """, directory: kdir)
        let theirs = try Self.exercise(proxyPort: kport, server: kamailio, directory: kdir, tag: "kamailio")
        kamailio.stop()
        let theirDurations = try Self.cdrDurations(kdb)
        var kamailioOutcome = theirs
        kamailioOutcome.cdrs = theirDurations.count
        kamailioOutcome.timeoutCDRDurationOK = theirDurations.contains { $0 >= 1 && $0 <= 3.6 }

        #expect(starlingOutcome.answeredUnderLoad == Self.limit, "\(starlingOutcome)")
        #expect(starlingOutcome.maxTenantSize == Self.limit, "\(starlingOutcome)")
        #expect(starlingOutcome.sizeAfterCallerBye == "size 0" && starlingOutcome.sizeAfterCalleeBye == "size 0"
                && starlingOutcome.sizeAfterFailure == "size 0" && starlingOutcome.sizeAfterTimeout == "size 0"
                && starlingOutcome.sizeAfterCancel == "size 0" && starlingOutcome.sizeAfterTwice == "size 0", "\(starlingOutcome)")
        #expect(starlingOutcome.sizeWhileRinging == "size 1" && starlingOutcome.cancelCallOK, "\(starlingOutcome)")
        // Kamailio 5.6 (checked by hand with kamcmd too: dlg.profile_get_size 2, dlg.profile_list and
        // dlg.list show the dialog twice): the second set counts, the request route may not unset.
        #expect(starlingOutcome.twiceLog == ["set-again 1", "unset-in-request -1", "tenant-size twice 2", "unset-in-branch 1",
                                             "branch-size 1"], "\(starlingOutcome)")
        #expect(starlingOutcome.sizeWhileTwiceUp == "size 1", "\(starlingOutcome)")
        // One CDR per dialog: 3 (load) + 2 (callee BYE) + 2 failed (busy, cdr_on_failed) + 1 (timeout,
        // cdr_expired_dlg_enable) + 1 failed (cancelled) + 1 (twice).
        #expect(starlingOutcome.cdrs == 10, "\(starlingOutcome)")
        #expect(starlingOutcome.timeoutCDRDurationOK, "\(starlingOutcome)")
        // The same CDRs: durations pairwise within half a second of Kamailio's (the timed-out call's
        // anywhere in 1...3.6 s on both: dialog timers of both servers tick once a second).
        #expect(myDurations.count == theirDurations.count
                && zip(myDurations, theirDurations).allSatisfy { abs($0 - $1) < 0.5 || ((1...3.6).contains($0) && (1...3.6).contains($1)) },
                "Starling \(myDurations)\nKamailio \(theirDurations)")
        #expect(starlingOutcome == kamailioOutcome, "Starling: \(starlingOutcome)\nKamailio: \(kamailioOutcome)\n\(kamailio.logTail(40))")
    }

    /// db_mode 1: a restart keeps the confirmed dialog and its profile, and its BYE still matches.
    @Test func confirmedDialogsSurviveARestart() throws {
        _ = try Requirements.tool("sqlite3", package: "sqlite3")
        let directory = try PackagePaths.makeTemporaryDirectory("starling-dialog-db")
        let script = directory.appendingPathComponent("tenants.lua")
        try Self.script.write(to: script, atomically: true, encoding: .utf8)
        let database = directory.appendingPathComponent("starling.db")
        let controlPort = try Ports.freeTCPPort()
        let config = """
            [core]
            modules = ["tm", "sl", "rr", "siputils", "dialog"]
            [control]
            listen = "127.0.0.1:\(controlPort)"
            token = "t0ken"
            [modparam.dialog]
            profiles_with_value = "tenant"
            db_mode = 1
            db_url = "sqlite://\(database.path)"
            """
        let port = try Ports.freeUDPPort()
        let ports = try Ports.freeUDPPorts(2)
        var starling = try Starling.start(script: script, config: config, port: port, workers: 1, directory: directory)
        let uas = try SIPp.uas(port: ports[0], directory: directory, tag: "db-uas")
        defer { uas.stop() }
        let uac = try SIPp.startUAC(scenario: PackagePaths.scenario("uac_tenant.xml"), target: port, localPort: ports[1],
                                    rate: 1, calls: 1, directory: directory, tag: "db-uac",
                                    extra: ["-s", "bob", "-set", "tenant", "acme", "-set", "target", String(ports[0]),
                                            "-d", "6000"])
        defer { uac.stop() }
        var size = ""
        for _ in 0..<50 {
            size = try Self.size("acme", port: port)
            if size == "size 1" { break }
            usleep(100_000)
        }
        #expect(size == "size 1", "\(starling.logTail())")
        // db_mode 1 writes each change as it happens (the writer thread): the confirmed row is there
        // without a stop, so a crash keeps it. SIGKILL: no flush at exit.
        try starling.waitUntil("the dialog row") { (try? Self.rows(database, "SELECT state FROM dialog")) == ["4"] }
        starling.stop(signal: SIGKILL)

        starling = try Starling.start(script: script, config: config, port: port, workers: 1, directory: directory)
        defer { starling.stop() }
        #expect(starling.logTail(50).contains("dialog: 1 dialogs loaded"), "\(starling.logTail(50))")
        #expect(try Self.size("acme", port: port) == "size 1")
        // The restored dialog on /metrics: the tenant's profile size and the active dialogs.
        try starling.waitUntilListening(tcpPort: controlPort)
        let metrics = try ControlAPITests.metrics(port: controlPort, token: "t0ken")
        #expect(metrics.contains("starling_dialog_profile_size{profile=\"tenant\",value=\"acme\"} 1"), "\(metrics)")
        #expect(metrics.contains("starling_dialog_active 1"), "\(metrics)")
        let r = try #require(uac.wait(timeout: .seconds(30)))
        #expect(r.allCallsSucceeded, "\(r)\n\(starling.logTail())")
        #expect(try Self.size("acme", port: port) == "size 0", "\(starling.logTail())")
        #expect(starling.log.contains("dialog-bye known=1"), "\(starling.logTail())")
        try starling.waitUntil("the dialog row deleted") { (try? Self.rows(database, "SELECT count(*) FROM dialog")) == ["0"] }
    }

    /// The output lines of an sqlite3 query.
    static func rows(_ database: URL, _ sql: String) throws -> [String] {
        let r = try Command.run("/usr/bin/sqlite3", [database.path, sql], timeout: .seconds(10))
        guard r.status == 0 else { throw HarnessError("sqlite3: \(r.output)") }
        return r.output.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }
    }

    /// dlg_bridge on Starling and on Kamailio 5.6: the proxy calls the SIPp end (INVITE from the
    /// controller with a hold SDP), REFERs it to the other party once it answers, then sends a BYE.
    @Test func dlgBridgeCallsReferAndHangsUpAsKamailio() throws {
        let directory = try PackagePaths.makeTemporaryDirectory("starling-dlg-bridge")
        let script = directory.appendingPathComponent("bridge.lua")
        try """
            function ksr_request_route()
              if KSR.is_MESSAGE() then
                local r = KSR.dialog.dlg_bridge(KSR.pv.gete("$hdr(X-From)"), "sip:carol@127.0.0.1", "")
                KSR.sl.send_reply(200, "bridge " .. r)
                return
              end
              KSR.sl.send_reply(404, "Not here")
            end
            """.write(to: script, atomically: true, encoding: .utf8)

        /// What the called end saw, in order, and the REFER's headers.
        func run(_ tag: String, port: Int, server: ServerProcess, directory: URL) throws -> [String] {
            let ports = try Ports.freeUDPPorts(1)
            let uas = try SIPp.uas(scenario: PackagePaths.scenario("uas_bridge.xml"), port: ports[0], directory: directory,
                                   tag: "\(tag)-bridge", traceMessages: true)
            let endpoint = try UDPEndpoint()
            let message = SIPProbe.options(requestURI: "sip:bridge@127.0.0.1:\(port)", from: endpoint)
                .replacingOccurrences(of: "OPTIONS", with: "MESSAGE")
                .replacingOccurrences(of: "Max-Forwards: 70\r\n", with: "Max-Forwards: 70\r\nX-From: sip:bob@127.0.0.1:\(ports[0])\r\n")
            try endpoint.send(message, to: port)
            let line = endpoint.receive(timeout: .seconds(5))?.components(separatedBy: "\r\n").first ?? "no reply"
            #expect(line == "SIP/2.0 200 bridge 1", "\(tag): \(server.logTail())")
            try server.waitUntil("\(tag): the BYE at the called end", timeout: .seconds(15)) { uas.receivedRequests.contains("BYE") }
            let u = uas.stop()
            let refer = u.messages.components(separatedBy: "REFER sip:").dropFirst().first ?? ""
            #expect(refer.contains("Refer-To: sip:carol@127.0.0.1"), "\(tag): \(u.messages)")
            #expect(refer.contains("Referred-By: sip:controller@127.0.0.1"), "\(tag): \(u.messages)")
            let invite = u.messages.components(separatedBy: "INVITE sip:").dropFirst().first ?? ""
            #expect(invite.contains("From: <sip:controller@127.0.0.1>;tag=") && invite.contains("o=kamailio-bridge"),
                    "\(tag): \(u.messages)")
            return u.receivedRequests.filter { $0 != "ACK" }
        }

        let port = try Ports.freeUDPPort()
        let starling = try Starling.start(script: script, config: """
            [core]
            modules = ["tm", "sl", "rr", "dialog"]
            [modparam.dialog]
            bridge_controller = "sip:controller@127.0.0.1"
            bridge_contact = "sip:controller@127.0.0.1:5060"
            """, port: port, workers: 1, directory: directory)
        defer { starling.stop() }
        let mine = try run("starling", port: port, server: starling, directory: directory)

        let kport = try Ports.freeUDPPort()
        let kdir = directory.appendingPathComponent("kamailio")
        try FileManager.default.createDirectory(at: kdir, withIntermediateDirectories: true)
        let kamailio = try Kamailio.start(
            script: script, port: kport, children: 1, modules: ["tm", "sl", "rr", "pv", "dialog"],
            extra: """
                modparam("dialog", "bridge_controller", "sip:controller@127.0.0.1")
                modparam("dialog", "bridge_contact", "sip:controller@127.0.0.1:5060")
                """, directory: kdir)
        defer { kamailio.stop() }
        let theirs = try run("kamailio", port: kport, server: kamailio, directory: kdir)
        #expect(mine == ["INVITE", "REFER", "BYE"], "\(starling.logTail())")
        #expect(mine == theirs, "Starling \(mine), Kamailio \(theirs)")
    }
}
