import Testing
@testable import SIPTransaction

@Suite("Non-INVITE server transaction (RFC 3261 §17.2.2)")
struct NonInviteServerTransactionTests {
    @Test("UDP: Trying discards retransmissions, then the last response is resent; Timer J")
    func udp() {
        var m = NonInviteServerTransaction(transport: .unreliable)
        #expect(m.state == .trying)
        #expect(m.requestRetransmitted() == [])
        #expect(m.tuSentResponse(100) == [.sendResponse(100)])
        #expect(m.state == .proceeding)
        #expect(m.requestRetransmitted() == [.retransmitResponse])
        #expect(m.tuSentResponse(100) == [.sendResponse(100)])
        #expect(m.tuSentResponse(200) == [.sendResponse(200), .startTimer(.J, after: .s(32))])
        #expect(m.state == .completed)
        #expect(m.requestRetransmitted() == [.retransmitResponse])
        #expect(m.requestRetransmitted() == [.retransmitResponse])
        #expect(m.tuSentResponse(500) == [])
        #expect(m.lastStatus == 200)
        #expect(m.timerFired(.J) == [.terminate])
        #expect(m.state == .terminated)
        #expect(m.requestRetransmitted() == [])
    }

    @Test("final straight from Trying")
    func finalFromTrying() {
        var m = NonInviteServerTransaction(transport: .unreliable)
        #expect(m.tuSentResponse(404) == [.sendResponse(404), .startTimer(.J, after: .s(32))])
        #expect(m.timerFired(.H) == [])
        #expect(m.timerFired(.J) == [.terminate])
    }

    @Test("reliable transport: Timer J is zero")
    func reliable() {
        var m = NonInviteServerTransaction(transport: .reliable)
        #expect(m.tuSentResponse(200) == [.sendResponse(200), .terminate])
        #expect(m.state == .terminated)
    }

    @Test("Timer J follows T1 (shortened timers)")
    func shortTimers() {
        var m = NonInviteServerTransaction(transport: .unreliable, timers: TimerConfiguration(t1: .ms(50)))
        #expect(m.tuSentResponse(202) == [.sendResponse(202), .startTimer(.J, after: .ms(3200))])
    }

    @Test("transport errors")
    func transportErrors() {
        var a = NonInviteServerTransaction(transport: .unreliable)
        _ = a.tuSentResponse(100)
        #expect(a.transportError() == [.transportErrorToTU, .terminate])
        var b = NonInviteServerTransaction(transport: .unreliable)
        _ = b.tuSentResponse(200)
        #expect(b.transportError() == [.transportErrorToTU, .terminate])
        #expect(b.transportError() == [])
    }
}
