import Testing
@testable import SIPTransaction

@Suite("INVITE server transaction (RFC 3261 §17.2.1, RFC 6026)")
struct InviteServerTransactionTests {
    @Test("UDP, 100 / 180 / 486: retransmissions absorbed, Timer G doubles up to T2, ACK, Timer I")
    func non2xxFinal() {
        var m = InviteServerTransaction(transport: .unreliable)
        #expect(m.state == .proceeding)
        #expect(m.requestRetransmitted() == [])  // nothing sent yet
        #expect(m.tuSentResponse(100) == [.sendResponse(100)])
        #expect(m.requestRetransmitted() == [.retransmitResponse])
        #expect(m.tuSentResponse(180) == [.sendResponse(180)])
        #expect(m.requestRetransmitted() == [.retransmitResponse])
        #expect(m.tuSentResponse(486) == [.sendResponse(486), .startTimer(.G, after: .ms(500)), .startTimer(.H, after: .s(32))])
        #expect(m.state == .completed)
        #expect(m.timerFired(.G) == [.retransmitResponse, .startTimer(.G, after: .s(1))])
        #expect(m.timerFired(.G) == [.retransmitResponse, .startTimer(.G, after: .s(2))])
        #expect(m.timerFired(.G) == [.retransmitResponse, .startTimer(.G, after: .s(4))])
        #expect(m.timerFired(.G) == [.retransmitResponse, .startTimer(.G, after: .s(4))])
        #expect(m.requestRetransmitted() == [.retransmitResponse])
        #expect(m.tuSentResponse(500) == [])  // a second final is refused
        #expect(m.ackReceived() == [.stopTimer(.G), .stopTimer(.H), .startTimer(.I, after: .s(5))])
        #expect(m.state == .confirmed)
        #expect(m.ackReceived() == [])
        #expect(m.requestRetransmitted() == [])
        #expect(m.timerFired(.G) == [])
        #expect(m.timerFired(.I) == [.terminate])
        #expect(m.state == .terminated)
    }

    @Test("UDP schedule on a mock clock: 486 resent at 0.5, 1.5, 3.5, 7.5, then every 4 s; Timer H at 32 s")
    func scheduleOnMockClock() {
        var m = InviteServerTransaction(transport: .unreliable)
        var h = Harness()
        h.apply(m.tuSentResponse(486))
        h.run(until: .s(40)) { m.timerFired($0) }
        #expect(h.times(of: .retransmitResponse)
            == [.ms(500), .ms(1500), .ms(3500), .ms(7500), .ms(11500), .ms(15500), .ms(19500), .ms(23500), .ms(27500), .ms(31500)])
        #expect(h.times(of: .timeoutToTU) == [.s(32)])
        #expect(h.times(of: .terminate) == [.s(32)])
    }

    @Test("no ACK: Timer H reports the timeout")
    func timerH() {
        var m = InviteServerTransaction(transport: .unreliable)
        _ = m.tuSentResponse(404)
        #expect(m.timerFired(.H) == [.timeoutToTU, .terminate])
        #expect(m.ackReceived() == [])
    }

    @Test("2xx (RFC 6026 Accepted): INVITE retransmissions absorbed, 2xx from the TU pass, ACK to the TU, Timer L")
    func accepted() {
        var m = InviteServerTransaction(transport: .unreliable)
        #expect(m.tuSentResponse(180) == [.sendResponse(180)])
        #expect(m.tuSentResponse(200) == [.sendResponse(200), .startTimer(.L, after: .s(32))])
        #expect(m.state == .accepted)
        #expect(m.requestRetransmitted() == [])
        #expect(m.tuSentResponse(200) == [.sendResponse(200)])
        #expect(m.tuSentResponse(180) == [])
        #expect(m.tuSentResponse(486) == [])
        #expect(m.ackReceived() == [.passACKToTU])
        #expect(m.timerFired(.L) == [.terminate])
        #expect(m.state == .terminated)
    }

    @Test("reliable transport: no Timer G; the ACK ends the transaction (Timer I is zero)")
    func reliable() {
        var m = InviteServerTransaction(transport: .reliable)
        #expect(m.tuSentResponse(100) == [.sendResponse(100)])
        #expect(m.tuSentResponse(603) == [.sendResponse(603), .startTimer(.H, after: .s(32))])
        #expect(m.timerFired(.G) == [])
        #expect(m.requestRetransmitted() == [.retransmitResponse])
        #expect(m.ackReceived() == [.terminate])
        #expect(m.state == .terminated)
    }

    @Test("transport errors while sending responses")
    func transportErrors() {
        var a = InviteServerTransaction(transport: .unreliable)
        #expect(a.transportError() == [.transportErrorToTU, .terminate])
        var b = InviteServerTransaction(transport: .unreliable)
        _ = b.tuSentResponse(486)
        #expect(b.transportError() == [.transportErrorToTU, .terminate])
        var c = InviteServerTransaction(transport: .unreliable)
        _ = c.tuSentResponse(486)
        _ = c.ackReceived()
        #expect(c.transportError() == [])
        var d = InviteServerTransaction(transport: .unreliable)
        _ = d.tuSentResponse(200)
        #expect(d.transportError() == [.transportErrorToTU, .terminate])
    }

    @Test("an ACK before any final response is ignored")
    func earlyACK() {
        var m = InviteServerTransaction(transport: .unreliable)
        _ = m.tuSentResponse(180)
        #expect(m.ackReceived() == [])
        #expect(m.state == .proceeding)
    }
}
