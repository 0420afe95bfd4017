import Testing
@testable import SIPTransaction

@Suite("INVITE client transaction (RFC 3261 §17.1.1, RFC 6026)")
struct InviteClientTransactionTests {
    @Test("UDP, no answer: Timer A doubles without cap, Timer B times out")
    func timerATimerB() {
        var m = InviteClientTransaction(transport: .unreliable)
        #expect(m.state == .idle)
        #expect(m.requestSent() == [.startTimer(.A, after: .ms(500)), .startTimer(.B, after: .s(32))])
        #expect(m.state == .calling)
        #expect(m.timerFired(.A) == [.retransmitRequest, .startTimer(.A, after: .s(1))])
        #expect(m.timerFired(.A) == [.retransmitRequest, .startTimer(.A, after: .s(2))])
        #expect(m.timerFired(.A) == [.retransmitRequest, .startTimer(.A, after: .s(4))])
        #expect(m.timerFired(.A) == [.retransmitRequest, .startTimer(.A, after: .s(8))])
        #expect(m.timerFired(.A) == [.retransmitRequest, .startTimer(.A, after: .s(16))])
        #expect(m.timerFired(.B) == [.timeoutToTU, .terminate])
        #expect(m.state == .terminated)
        #expect(m.timerFired(.A) == [])
        #expect(m.responseReceived(200) == [])
    }

    @Test("UDP schedule on a mock clock: retransmissions at 0.5, 1.5, 3.5, 7.5, 15.5, 31.5 s; timeout at 32 s")
    func scheduleOnMockClock() {
        var m = InviteClientTransaction(transport: .unreliable)
        var h = Harness()
        h.apply(m.requestSent())
        h.run(until: .s(40)) { m.timerFired($0) }
        #expect(h.times(of: .retransmitRequest) == [.ms(500), .ms(1500), .ms(3500), .ms(7500), .ms(15500), .ms(31500)])
        #expect(h.times(of: .timeoutToTU) == [.s(32)])
        #expect(h.times(of: .terminate) == [.s(32)])
        #expect(h.wheel.isEmpty)
    }

    @Test("provisional, then a non-2xx final: ACK from the transaction, ACK again per retransmission, Timer D")
    func provisionalThenNon2xx() {
        var m = InviteClientTransaction(transport: .unreliable)
        #expect(m.requestSent() == [.startTimer(.A, after: .ms(500)), .startTimer(.B, after: .s(32))])
        #expect(m.responseReceived(100) == [.stopTimer(.A), .stopTimer(.B), .passToTU(100)])
        #expect(m.state == .proceeding)
        #expect(m.timerFired(.A) == [])  // a stale fire that raced with the stop
        #expect(m.responseReceived(180) == [.passToTU(180)])
        #expect(m.responseReceived(180) == [.passToTU(180)])
        #expect(m.responseReceived(486) == [.sendACK, .passToTU(486), .startTimer(.D, after: .s(32))])
        #expect(m.state == .completed)
        #expect(m.responseReceived(486) == [.retransmitACK])
        #expect(m.responseReceived(180) == [])
        #expect(m.responseReceived(200) == [])
        #expect(m.timerFired(.D) == [.terminate])
        #expect(m.state == .terminated)
    }

    @Test("a non-2xx final while Calling stops A and B")
    func non2xxWhileCalling() {
        var m = InviteClientTransaction(transport: .unreliable)
        _ = m.requestSent()
        #expect(m.responseReceived(503) == [.stopTimer(.A), .stopTimer(.B), .sendACK, .passToTU(503), .startTimer(.D, after: .s(32))])
        #expect(m.lastStatus == 503)
    }

    @Test("2xx: passed to the TU, no ACK from the transaction; Accepted passes 2xx retransmissions until Timer M")
    func twoHundred() {
        var m = InviteClientTransaction(transport: .unreliable)
        _ = m.requestSent()
        #expect(m.responseReceived(180) == [.stopTimer(.A), .stopTimer(.B), .passToTU(180)])
        #expect(m.responseReceived(200) == [.passToTU(200), .startTimer(.M, after: .s(32))])
        #expect(m.state == .accepted)
        #expect(m.responseReceived(200) == [.passToTU(200)])
        #expect(m.responseReceived(183) == [])
        #expect(m.responseReceived(486) == [])
        #expect(m.transportError() == [])
        #expect(m.timerFired(.M) == [.terminate])
        #expect(m.state == .terminated)
        #expect(m.responseReceived(200) == [])
    }

    @Test("reliable transport: no Timer A, no Timer D")
    func reliable() {
        var m = InviteClientTransaction(transport: .reliable)
        #expect(m.requestSent() == [.startTimer(.B, after: .s(32))])
        #expect(m.timerFired(.A) == [])
        #expect(m.responseReceived(100) == [.stopTimer(.B), .passToTU(100)])
        #expect(m.responseReceived(404) == [.sendACK, .passToTU(404), .terminate])
        #expect(m.state == .terminated)
    }

    @Test("reliable transport, 2xx while Calling")
    func reliable2xx() {
        var m = InviteClientTransaction(transport: .reliable)
        #expect(m.requestSent() == [.startTimer(.B, after: .s(32))])
        #expect(m.responseReceived(200) == [.stopTimer(.B), .passToTU(200), .startTimer(.M, after: .s(32))])
    }

    @Test("proxy Timer C: reset by 101-199 (not by 100); on expiry the branch times out and is CANCELled")
    func timerC() {
        var m = InviteClientTransaction(transport: .unreliable, usesTimerC: true)
        #expect(m.requestSent() == [.startTimer(.A, after: .ms(500)), .startTimer(.B, after: .s(32)), .startTimer(.C, after: .s(180))])
        #expect(m.responseReceived(100) == [.stopTimer(.A), .stopTimer(.B), .passToTU(100)])
        #expect(m.canCancel)
        #expect(m.responseReceived(180) == [.passToTU(180), .startTimer(.C, after: .s(180))])
        #expect(m.responseReceived(183) == [.passToTU(183), .startTimer(.C, after: .s(180))])
        #expect(m.timerFired(.C) == [.timeoutToTU, .cancelBranch, .startTimer(.C, after: .s(32))])
        #expect(m.isCancelled)
        #expect(m.responseReceived(180) == [.passToTU(180)])  // no more Timer C resets once cancelled
        #expect(m.responseReceived(487) == [.stopTimer(.C), .sendACK, .passToTU(487), .startTimer(.D, after: .s(32))])
        #expect(m.timerFired(.D) == [.terminate])
    }

    @Test("proxy Timer C: the callee ignores the CANCEL, the transaction ends 64*T1 later")
    func timerCThenNoAnswer() {
        var m = InviteClientTransaction(transport: .reliable, usesTimerC: true)
        #expect(m.requestSent() == [.startTimer(.B, after: .s(32)), .startTimer(.C, after: .s(180))])
        #expect(m.responseReceived(180) == [.stopTimer(.B), .passToTU(180), .startTimer(.C, after: .s(180))])
        #expect(m.timerFired(.C) == [.timeoutToTU, .cancelBranch, .startTimer(.C, after: .s(32))])
        #expect(m.timerFired(.C) == [.terminate])  // the timeout was already reported
    }

    @Test("proxy Timer C before any provisional: as if 408, no CANCEL")
    func timerCWhileCalling() {
        var timers = TimerConfiguration()
        timers.timerC = .s(10)
        var m = InviteClientTransaction(transport: .reliable, timers: timers, usesTimerC: true)
        #expect(m.requestSent() == [.startTimer(.B, after: .s(32)), .startTimer(.C, after: .s(10))])
        #expect(m.timerFired(.C) == [.timeoutToTU, .terminate])
    }

    @Test("CANCEL asked for while Calling waits for the first provisional (§9.1)")
    func cancelWhileCalling() {
        var m = InviteClientTransaction(transport: .unreliable)
        _ = m.requestSent()
        #expect(!m.canCancel)
        #expect(m.cancelRequested() == [])
        #expect(m.responseReceived(180) == [.stopTimer(.A), .stopTimer(.B), .passToTU(180), .cancelBranch, .startTimer(.C, after: .s(32))])
        #expect(m.cancelRequested() == [])  // once is enough
        #expect(m.responseReceived(487) == [.stopTimer(.C), .sendACK, .passToTU(487), .startTimer(.D, after: .s(32))])
    }

    @Test("CANCEL in Proceeding; no final within 64*T1 ends the transaction with a timeout")
    func cancelInProceeding() {
        var m = InviteClientTransaction(transport: .unreliable)
        _ = m.requestSent()
        _ = m.responseReceived(183)
        #expect(m.cancelRequested() == [.cancelBranch, .startTimer(.C, after: .s(32))])
        #expect(m.timerFired(.C) == [.timeoutToTU, .terminate])
    }

    @Test("CANCEL after a final response does nothing")
    func cancelAfterFinal() {
        var m = InviteClientTransaction(transport: .unreliable)
        _ = m.requestSent()
        _ = m.responseReceived(200)
        #expect(m.cancelRequested() == [])
        var n = InviteClientTransaction(transport: .unreliable)
        _ = n.requestSent()
        #expect(n.cancelRequested() == [])
        #expect(n.responseReceived(486) == [.stopTimer(.A), .stopTimer(.B), .sendACK, .passToTU(486), .startTimer(.D, after: .s(32))])
    }

    @Test("transport errors: to the TU while Calling or Proceeding; end Completed quietly")
    func transportErrors() {
        var a = InviteClientTransaction(transport: .unreliable)
        #expect(a.transportError() == [])
        _ = a.requestSent()
        #expect(a.transportError() == [.transportErrorToTU, .terminate])
        #expect(a.state == .terminated)

        var b = InviteClientTransaction(transport: .unreliable)
        _ = b.requestSent()
        _ = b.responseReceived(180)
        #expect(b.transportError() == [.transportErrorToTU, .terminate])

        var c = InviteClientTransaction(transport: .unreliable)
        _ = c.requestSent()
        _ = c.responseReceived(500)
        #expect(c.transportError() == [.terminate])
    }

    @Test("shortened timers (T1 = 100 ms): B follows T1")
    func shortTimers() {
        var m = InviteClientTransaction(transport: .unreliable, timers: TimerConfiguration(t1: .ms(100)))
        #expect(m.requestSent() == [.startTimer(.A, after: .ms(100)), .startTimer(.B, after: .ms(6400))])
        #expect(m.timerFired(.A) == [.retransmitRequest, .startTimer(.A, after: .ms(200))])
    }

    @Test("requestSent twice and junk status codes are ignored")
    func ignored() {
        var m = InviteClientTransaction(transport: .unreliable)
        _ = m.requestSent()
        #expect(m.requestSent() == [])
        #expect(m.responseReceived(99) == [])
        #expect(m.responseReceived(700) == [])
        #expect(m.state == .calling)
    }
}
