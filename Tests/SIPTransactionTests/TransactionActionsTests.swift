import Testing
@testable import SIPTransaction

@Suite struct TransactionActionsTests {
    @Test("keeps order, compares with array literals, concatenates and filters")
    func basics() {
        var a = TransactionActions()
        #expect(a.isEmpty && a == [])
        a.append(.stopTimer(.A))
        a.append(contentsOf: TransactionActions(.passToTU(180), .startTimer(.C, after: .s(180))))
        #expect(a.count == 3)
        #expect(a == [.stopTimer(.A), .passToTU(180), .startTimer(.C, after: .s(180))])
        #expect(a != [.passToTU(180), .stopTimer(.A), .startTimer(.C, after: .s(180))])
        #expect(a != [.stopTimer(.A), .passToTU(180)])
        #expect(Array(a) == [.stopTimer(.A), .passToTU(180), .startTimer(.C, after: .s(180))])
        #expect(a[2] == .startTimer(.C, after: .s(180)))
        #expect(TransactionActions(.timeoutToTU) + TransactionActions(.terminate) == [.timeoutToTU, .terminate])
        #expect(a.filter { if case .passToTU = $0 { return true } else { return false } } == [.passToTU(180)])
        #expect(Set([a, a, TransactionActions(.terminate)]).count == 2)
        #expect(a.description == "[stopTimer(A), passToTU(180), startTimer(C, 180.0 seconds)]")
    }

    @Test("the largest event fits: a negative final in Calling over UDP in a proxy returns six actions")
    func largestEvent() {
        var m = InviteClientTransaction(transport: .unreliable, usesTimerC: true)
        _ = m.requestSent()
        let a = m.responseReceived(486)
        #expect(a.count == TransactionActions.capacity)
        #expect(a == [.stopTimer(.A), .stopTimer(.B), .stopTimer(.C), .sendACK, .passToTU(486),
                      .startTimer(.D, after: .s(32))])
    }
}
