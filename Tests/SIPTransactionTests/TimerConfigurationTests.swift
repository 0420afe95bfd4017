import Testing
@testable import SIPTransaction

@Suite("TimerConfiguration")
struct TimerConfigurationTests {
    @Test("RFC 3261 defaults")
    func defaults() {
        let t = TimerConfiguration()
        #expect(t.t1 == .ms(500))
        #expect(t.t2 == .s(4))
        #expect(t.t4 == .s(5))
        #expect(t.timerB == .s(32))
        #expect(t.timerC == .s(180))
        #expect(t.timerD == .s(32))
        #expect(t.timerF == .s(32))
        #expect(t.timerH == .s(32))
        #expect(t.timerI == .s(5))
        #expect(t.timerJ == .s(32))
        #expect(t.timerK == .s(5))
        #expect(t.timerL == .s(32))
        #expect(t.timerM == .s(32))
    }

    @Test("64*T1 timers follow T1 until overridden; overrides stick")
    func overrides() {
        var t = TimerConfiguration()
        t.t1 = .ms(100)
        #expect(t.timerB == .ms(6400))
        #expect(t.timerF == .ms(6400))
        t.timerB = .s(120)  // Kamailio's fr_inv_timer, say
        t.timerF = .s(30)   // and fr_timer
        t.t1 = .ms(250)
        #expect(t.timerB == .s(120))
        #expect(t.timerF == .s(30))
        #expect(t.timerH == .s(16))
        let u = TimerConfiguration(t1: .ms(200), timerB: .s(5), timerC: .s(60), timerD: .s(40), timerJ: .s(1))
        #expect(u.timerB == .s(5))
        #expect(u.timerC == .s(60))
        #expect(u.timerD == .s(40))
        #expect(u.timerJ == .s(1))
        #expect(u.timerF == .ms(12800))
    }
}

@Suite("TransactionMachine protocols")
struct TransactionMachineTests {
    /// Drives any client machine through "sent, no answer" on a mock clock until it terminates.
    private func runUntilTimeout<M: ClientTransactionMachine>(_ m: inout M) -> [Duration] {
        var h = Harness()
        h.apply(m.requestSent())
        h.run(until: .s(60)) { m.timerFired($0) }
        return h.times(of: .timeoutToTU)
    }

    @Test("generic driving: both client machines time out at 64*T1")
    func genericClients() {
        var i = InviteClientTransaction(transport: .unreliable)
        var n = NonInviteClientTransaction(transport: .reliable)
        #expect(runUntilTimeout(&i) == [.s(32)])
        #expect(runUntilTimeout(&n) == [.s(32)])
        #expect(i.isTerminated && n.isTerminated)
    }

    @Test("generic driving: both server machines absorb a retransmission after a final response")
    func genericServers() {
        func absorb<M: ServerTransactionMachine>(_ m: inout M) -> TransactionActions {
            _ = m.tuSentResponse(404)
            return m.requestRetransmitted()
        }
        var i = InviteServerTransaction(transport: .unreliable)
        var n = NonInviteServerTransaction(transport: .unreliable)
        #expect(absorb(&i) == [.retransmitResponse])
        #expect(absorb(&n) == [.retransmitResponse])
        #expect(!i.isTerminated)
    }
}
