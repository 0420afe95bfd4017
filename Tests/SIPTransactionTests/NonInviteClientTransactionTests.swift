import Testing
@testable import SIPTransaction

@Suite("Non-INVITE client transaction (RFC 3261 §17.1.2)")
struct NonInviteClientTransactionTests {
    @Test("UDP, no answer: Timer E doubles up to T2, Timer F times out")
    func timerETimerF() {
        var m = NonInviteClientTransaction(transport: .unreliable)
        #expect(m.requestSent() == [.startTimer(.E, after: .ms(500)), .startTimer(.F, after: .s(32))])
        #expect(m.state == .trying)
        #expect(m.timerFired(.E) == [.retransmitRequest, .startTimer(.E, after: .s(1))])
        #expect(m.timerFired(.E) == [.retransmitRequest, .startTimer(.E, after: .s(2))])
        #expect(m.timerFired(.E) == [.retransmitRequest, .startTimer(.E, after: .s(4))])
        #expect(m.timerFired(.E) == [.retransmitRequest, .startTimer(.E, after: .s(4))])
        #expect(m.timerFired(.E) == [.retransmitRequest, .startTimer(.E, after: .s(4))])
        #expect(m.timerFired(.F) == [.timeoutToTU, .terminate])
        #expect(m.state == .terminated)
        #expect(m.timerFired(.E) == [])
    }

    @Test("UDP schedule on a mock clock: 0.5, 1.5, 3.5, 7.5, then every 4 s; timeout at 32 s")
    func scheduleOnMockClock() {
        var m = NonInviteClientTransaction(transport: .unreliable)
        var h = Harness()
        h.apply(m.requestSent())
        h.run(until: .s(40)) { m.timerFired($0) }
        #expect(h.times(of: .retransmitRequest)
            == [.ms(500), .ms(1500), .ms(3500), .ms(7500), .ms(11500), .ms(15500), .ms(19500), .ms(23500), .ms(27500), .ms(31500)])
        #expect(h.times(of: .timeoutToTU) == [.s(32)])
    }

    @Test("provisional: Timer E fires every T2; final: Timer K absorbs retransmissions")
    func provisionalThenFinal() {
        var m = NonInviteClientTransaction(transport: .unreliable)
        _ = m.requestSent()
        #expect(m.timerFired(.E) == [.retransmitRequest, .startTimer(.E, after: .s(1))])
        #expect(m.responseReceived(100) == [.passToTU(100)])
        #expect(m.state == .proceeding)
        #expect(m.timerFired(.E) == [.retransmitRequest, .startTimer(.E, after: .s(4))])
        #expect(m.responseReceived(100) == [.passToTU(100)])
        #expect(m.responseReceived(200) == [.stopTimer(.E), .stopTimer(.F), .passToTU(200), .startTimer(.K, after: .s(5))])
        #expect(m.state == .completed)
        #expect(m.responseReceived(200) == [])
        #expect(m.responseReceived(100) == [])
        #expect(m.timerFired(.E) == [])
        #expect(m.timerFired(.F) == [])
        #expect(m.timerFired(.K) == [.terminate])
        #expect(m.state == .terminated)
    }

    @Test("final while Trying (404)")
    func finalWhileTrying() {
        var m = NonInviteClientTransaction(transport: .unreliable)
        _ = m.requestSent()
        #expect(m.responseReceived(404) == [.stopTimer(.E), .stopTimer(.F), .passToTU(404), .startTimer(.K, after: .s(5))])
        #expect(m.lastStatus == 404)
    }

    @Test("reliable transport: no Timer E, no Timer K")
    func reliable() {
        var m = NonInviteClientTransaction(transport: .reliable)
        #expect(m.requestSent() == [.startTimer(.F, after: .s(32))])
        #expect(m.timerFired(.E) == [])
        #expect(m.responseReceived(100) == [.passToTU(100)])
        #expect(m.responseReceived(200) == [.passToTU(200), .terminate])
        #expect(m.state == .terminated)
    }

    @Test("reliable transport, no answer: Timer F")
    func reliableTimeout() {
        var m = NonInviteClientTransaction(transport: .reliable)
        _ = m.requestSent()
        #expect(m.timerFired(.F) == [.timeoutToTU, .terminate])
    }

    @Test("transport errors while Trying or Proceeding")
    func transportErrors() {
        var a = NonInviteClientTransaction(transport: .unreliable)
        _ = a.requestSent()
        #expect(a.transportError() == [.transportErrorToTU, .terminate])
        var b = NonInviteClientTransaction(transport: .unreliable)
        _ = b.requestSent()
        _ = b.responseReceived(100)
        #expect(b.transportError() == [.transportErrorToTU, .terminate])
        var c = NonInviteClientTransaction(transport: .unreliable)
        _ = c.requestSent()
        _ = c.responseReceived(200)
        #expect(c.transportError() == [])
    }

    @Test("T2 override caps Timer E")
    func t2Override() {
        var m = NonInviteClientTransaction(transport: .unreliable, timers: TimerConfiguration(t1: .ms(100), t2: .ms(300)))
        #expect(m.requestSent() == [.startTimer(.E, after: .ms(100)), .startTimer(.F, after: .ms(6400))])
        #expect(m.timerFired(.E) == [.retransmitRequest, .startTimer(.E, after: .ms(200))])
        #expect(m.timerFired(.E) == [.retransmitRequest, .startTimer(.E, after: .ms(300))])
        #expect(m.timerFired(.E) == [.retransmitRequest, .startTimer(.E, after: .ms(300))])
    }
}
