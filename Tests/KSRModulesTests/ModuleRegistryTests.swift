import Testing
import StarlingKEMI
import SIPTransaction
@testable import KSRModules

/// The one registration point: every module's rows are consistent, and parameters are validated and
/// typed once.
@Suite struct ModuleRegistryTests {
    @Test func namesAreUniqueAndParametersBelongToTheirModule() {
        var names = Set<String>()
        for m in KSRModules.all {
            #expect(names.insert(m.name).inserted, "module \(m.name) is registered twice")
            var params = Set<String>()
            for p in m.parameters {
                #expect(p.module == m.name, "\(m.name) declares \(p.module).\(p.name)")
                #expect(params.insert(p.name).inserted, "\(m.name).\(p.name) is declared twice")
            }
        }
        var rpc = Set<String>()
        for (_, method) in KSRModules.rpcMethods { #expect(rpc.insert(method.name).inserted, "\(method.name) twice") }
        var stats = Set<String>()
        for (_, s) in KSRModules.statistics { #expect(stats.insert(s.name).inserted, "\(s.name) twice") }
    }

    @Test func everyExportBelongsToARegisteredTable() {
        let runtime = ModuleRuntime()
        let tables = Set(KSRModules.all.map { $0.kemiName })
        for m in KSRModules.all {
            for e in m.exports(runtime) {
                #expect(tables.contains(e.module), "\(m.name) exports \(e.qualifiedName), a table no module registers")
            }
        }
        // Each export appears once in the combined list (tm and tmx share a builder).
        let all = KSRModules.exports(runtime).map(\.qualifiedName)
        #expect(Set(all).count == all.count)
    }

    @Test func loadedModulesResolveAliasesDependenciesAndTheCore() {
        let names = KSRModules.loaded(["kx", "registrar"]).map { $0.name }
        #expect(names == ["core", "pv", "hdr", "kemix", "registrar", "usrloc"])
        #expect(KSRModules.loaded([]).count == KSRModules.all.count)
    }

    @Test func typedKeysReadDefaultsAndGivenValues() throws {
        #expect(ModuleConfiguration()[TMModule.frTimer] == 30000)
        #expect(ModuleConfiguration()[TMModule.contactsAVP] == nil)
        var c = ModuleConfiguration()
        try c.set("tm", "fr_timer", [.int(1000)])
        try c.set("tm", "auto_inv_100", [.bool(false)])
        try c.set("htable", "htable", [.string("a=>size=4"), .string("b=>size=2")])
        try c.set("tm", "contacts_avp", [.string("tm_contacts")])
        #expect(c[TMModule.frTimer] == 1000)
        #expect(c[TMModule.autoInv100] == false)
        #expect(c[HtableModule.htable] == ["a=>size=4", "b=>size=2"])
        #expect(c[TMModule.contactsAVP] == "tm_contacts")
        #expect(c.isSet(TMModule.frTimer) && !c.isSet(TMModule.frInvTimer))
    }

    @Test func integersAcceptWhatKamailioAccepts() throws {
        func error(_ module: String, _ param: String, _ input: ModuleParameterInput) -> String? {
            var c = ModuleConfiguration()
            do {
                try c.set(module, param, [input])
                return nil
            } catch {
                return error.description
            }
        }
        #expect(error("tm", "fr_timer", .int(30000)) == nil)
        #expect(error("tm", "fr_timer", .bool(true)) == nil)
        #expect(error("tm", "fr_timer", .string("30s"))
                == "modparam.tm.fr_timer: expected an integer (Kamailio int parameter; true/false count as 1/0), got \"30s\"")
        // Kamailio refuses a quoted number for an int parameter too.
        #expect(error("tm", "fr_timer", .string("30000")) != nil)
        #expect(error("tm", "fr_timer", .int(0)) == "modparam.tm.fr_timer: expected a positive number of milliseconds, got 0")
        #expect(error("tm", "failure_reply_mode", .int(7)) == "modparam.tm.failure_reply_mode: expected an integer in 0...3, got 7")
        #expect(error("tm", "auto_inv_100_reason", .int(1))
                == "modparam.tm.auto_inv_100_reason: expected a string (Kamailio str parameter), got 1")
        // Environment text is read as the parameter's kind.
        #expect(error("tm", "fr_timer", .text("30000")) == nil)
        #expect(error("tm", "fr_timer", .text("yes")) == nil)
        #expect(error("tm", "fr_timer", .text("30s")) != nil)
        #expect(error("tm", "auto_inv_100_reason", .text("123")) == nil)
        #expect(error("htable", "htable", .string("nope")) != nil)
    }

    @Test func unknownModulesAndParametersAreNamed() {
        var c = ModuleConfiguration()
        #expect(throws: ModuleParameterError.self) { try c.set("nosuch", "x", [.int(1)]) }
        do {
            try c.set("tm", "fr_timr", [.int(1)])
            Issue.record("a misspelt parameter was accepted")
        } catch {
            #expect(error.key == "modparam.tm.fr_timr")
            #expect(error.message.hasPrefix("unknown parameter of module tm (expected one of fr_timer, fr_inv_timer"))
        }
    }

    @Test func kamailioParametersWithoutEffectAreAccepted() throws {
        var c = ModuleConfiguration()
        try c.set("tm", "ruri_matching", [.int(0)])
        try c.set("usrloc", "hash_size", [.int(10)])
        let row = try KSRModules.parameter("tm", "ruri_matching")
        #expect(!row.implemented && c.isSet(row))
        // ... but not with the wrong kind.
        #expect(throws: ModuleParameterError.self) { try c.set("tm", "ruri_matching", [.string("0")]) }
    }

    @Test func parsedSettingsReachTheModules() {
        let c = ModuleConfiguration(params: ["tm": ["fr_timer": ["2000"], "wt_timer": ["700"]], "maxfwd": ["max_limit": ["20"]]])
        let store = TMStore(config: c)
        #expect(store.timerConfiguration.timerB == .milliseconds(2000))
        #expect(store.timerConfiguration.timerD == .milliseconds(700))
    }
}

/// Module state kept by the runtime: one per type, made once.
@Suite struct ModuleStateTests {
    final class Counter: Sendable {
        let made: Int
        init(_ n: Int) { made = n }
    }

    @Test func stateIsMadeOnceAndShared() {
        let rt = ModuleRuntime()
        var calls = 0
        let a = rt.state(Counter.self) { calls += 1; return Counter(1) }
        let b = rt.state(Counter.self) { calls += 1; return Counter(2) }
        #expect(a === b && a.made == 1 && calls == 1)
    }
}
