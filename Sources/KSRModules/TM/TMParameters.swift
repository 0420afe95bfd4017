import StarlingKEMI

/// The tm module's registration: parameters (Kamailio 5.6 names and defaults), the tm.stats method
/// and the transaction count.
extension TMModule: KSRModule {
    static let name = "tm"
    static let summary = "Stateful processing: transactions, forking, failure / branch / onreply routes."

    static let frTimer = ModuleParameter.int("tm", "fr_timer", 30000, "Final response timer (ms): Timers B and F.") {
        $0 > 0 ? nil : "expected a positive number of milliseconds"
    }
    static let frInvTimer = ModuleParameter.int("tm", "fr_inv_timer", 120000,
                                                "INVITE final response timer after a provisional reply (ms): Timer C.") {
        $0 > 0 ? nil : "expected a positive number of milliseconds"
    }
    static let retrTimer1 = ModuleParameter.int("tm", "retr_timer1", 500, "T1, the first retransmission interval (ms).") {
        $0 > 0 ? nil : "expected a positive number of milliseconds"
    }
    static let retrTimer2 = ModuleParameter.int("tm", "retr_timer2", 4000, "T2, the longest retransmission interval (ms).") {
        $0 > 0 ? nil : "expected a positive number of milliseconds"
    }
    static let wtTimer = ModuleParameter.int("tm", "wt_timer", 5000,
                                             "How long a completed transaction stays to absorb retransmissions, then is freed (ms; Timers D, I, J, K, L, M); 0: RFC 3261's waits (64*T1, within fr_timer).") {
        $0 >= 0 ? nil : "expected a non-negative number of milliseconds"
    }
    static let failureReplyMode = ModuleParameter.int("tm", "failure_reply_mode", 3, in: 0...3,
                                                      "Which earlier replies a failure route that adds branches discards.")
    static let disable6xxBlock = ModuleParameter.flag("tm", "disable_6xx_block", false, "Treat 6xx replies like the others (no end of forking).")
    static let autoInv100 = ModuleParameter.flag("tm", "auto_inv_100", true, "Answer 100 Trying to INVITEs that t_relay handles.")
    static let autoInv100Reason = ModuleParameter.str("tm", "auto_inv_100_reason", "trying -- your call is important to us",
                                                      "The reason phrase of the automatic 100.")
    static let restartFROnEachReply = ModuleParameter.flag("tm", "restart_fr_on_each_reply", true,
                                                           "Restart fr_inv_timer on every provisional reply.")
    static let useDNSFailover = ModuleParameter.flag("tm", "use_dns_failover", false,
                                                     "Retry a branch that timed out or got 503 on the next address of its next hop (Kamailio's core parameter).")
    static let remap503To500 = ModuleParameter.flag("tm", "remap_503_500", true, "Relay a winning 503 as 500.")
    static let contactsAVP = ModuleParameter.optionalStr("tm", "contacts_avp", "The xavp t_load_contacts / t_next_contacts use.")
    static let contactFlowsAVP = ModuleParameter.optionalStr("tm", "contact_flows_avp", "The xavp of t_next_contact_flow.")

    static let parameters = [frTimer, frInvTimer, retrTimer1, retrTimer2, wtTimer, failureReplyMode].map(\.info)
        + [disable6xxBlock, autoInv100, restartFROnEachReply, useDNSFailover, remap503To500].map(\.info)
        + [autoInv100Reason.info, contactsAVP.info, contactFlowsAVP.info]

    static func exports(_ runtime: ModuleRuntime) -> [KemiExport] { exports(runtime.tm) }

    static let rpcMethods = [
        ModuleRPCMethod("tm.stats", "tm transactions in memory: current.") { rt, params throws(RPCFault) in
            try params.none("tm.stats")
            // Kamailio's tm.stats has more counters; Starling keeps the number of live transactions.
            return .object(["current": .int(rt.tm.count)])
        },
    ]

    static let statistics = [
        ModuleStatistic("tmx:active_transactions", metric: "starling_transactions_active", .gauge,
                        "tm transactions in memory (created and not yet freed).") { $0.tm.count },
    ]
}

/// `KSR.tmx`: its functions are built with tm's over the same transaction store.
enum TMXModule: KSRModule {
    static let name = "tmx"
    static let summary = "tm extensions: `$T_*` pseudo-variables, reply and transaction checks."
    static func exports(_ runtime: ModuleRuntime) -> [KemiExport] { TMModule.exports(runtime.tm) }
}
