import SIPCore
import Testing
@testable import SIPTransaction

/// A miniature stateful proxy owner, single-threaded: a transaction table, a timer wheel on a mock
/// clock, one INVITE server transaction upstream and one INVITE client transaction downstream. It
/// shows how the pieces fit; KSR.tm's real owner adds the message bytes, sockets and the script.
private struct MiniProxy {
    enum Machine {
        case server(InviteServerTransaction)
        case client(InviteClientTransaction)
    }
    struct TimerID: Hashable {
        var transaction: Int
        var timer: TransactionTimer
    }

    var clock = MockClock()
    var wheel: TimerWheel<TimerID, MockInstant>
    let table = TransactionTable<Int>(shardCount: 4)
    var machines: [Int: Machine] = [:]
    var keys: [Int: TransactionKey] = [:]
    var nextID = 1
    var scriptRuns = 0
    var pairs: [Int: Int] = [:]  // server id -> client id and back
    var wire: [String] = []

    init() { wheel = TimerWheel(origin: clock.now, resolution: .ms(10)) }

    var time: String { "\(clock.now.offset)" }

    mutating func received(_ text: String) throws {
        let m = try SIPMessage.parse(text)
        if m.isRequest {
            let key = try #require(TransactionKey.server(for: m))
            if let id = table.lookup(key), case .server(var st)? = machines[id] {
                let actions = m.method == .ack ? st.ackReceived() : st.requestRetransmitted()
                machines[id] = .server(st)
                run(id, actions)
                return
            }
            // A new INVITE: the script runs once, answers 100 and relays.
            scriptRuns += 1
            let sid = create(.server(InviteServerTransaction(transport: .unreliable)), key)
            serverResponse(sid, 100)
            var ct = InviteClientTransaction(transport: .unreliable, usesTimerC: true)
            let cid = create(.client(ct), .client(branch: "z9hG4bKproxy.1", method: .invite))
            pairs[sid] = cid
            pairs[cid] = sid
            wire.append("\(time) → INVITE downstream")
            let actions = ct.requestSent()
            machines[cid] = .client(ct)
            run(cid, actions)
        } else {
            let key = try #require(TransactionKey.client(for: m))
            guard let id = table.lookup(key), case .client(var ct)? = machines[id] else {
                wire.append("\(time) stray \(m.statusCode)")
                return
            }
            let actions = ct.responseReceived(m.statusCode)
            machines[id] = .client(ct)
            run(id, actions)
        }
    }

    mutating func create(_ m: Machine, _ key: TransactionKey) -> Int {
        let id = nextID
        nextID += 1
        machines[id] = m
        keys[id] = key
        #expect(table.insert(id, for: key) == nil)
        return id
    }

    mutating func serverResponse(_ id: Int, _ status: Int) {
        guard case .server(var st)? = machines[id] else { return }
        let actions = st.tuSentResponse(status)
        machines[id] = .server(st)
        run(id, actions)
    }

    mutating func run(_ id: Int, _ actions: TransactionActions) {
        for a in actions {
            switch a {
            case .startTimer(let t, let d): wheel.schedule(TimerID(transaction: id, timer: t), at: clock.now.advanced(by: d))
            case .stopTimer(let t): wheel.cancel(TimerID(transaction: id, timer: t))
            case .sendResponse(let s): wire.append("\(time) ← \(s) upstream")
            case .retransmitResponse: wire.append("\(time) ← again upstream")
            case .retransmitRequest: wire.append("\(time) → INVITE again downstream")
            case .sendACK: wire.append("\(time) → ACK downstream")
            case .retransmitACK: wire.append("\(time) → ACK again downstream")
            case .passToTU(let s):
                // The TU forwards provisional and final responses upstream (100 is hop by hop).
                if s > 100, let sid = pairs[id] { serverResponse(sid, s) }
            case .terminate:
                for t in TransactionTimer.allCases { wheel.cancel(TimerID(transaction: id, timer: t)) }
                if let k = keys.removeValue(forKey: id) { table.remove(k) }
                machines[id] = nil
                wire.append("\(time) end #\(id)")
            default:
                wire.append("\(time) \(a)")
            }
        }
    }

    mutating func advance(to t: Duration) {
        while clock.now.offset < t {
            clock.advance(by: .ms(10))
            for e in wheel.advance(to: clock.now) {
                switch machines[e.transaction] {
                case .server(var st)?:
                    let actions = st.timerFired(e.timer)
                    machines[e.transaction] = .server(st)
                    run(e.transaction, actions)
                case .client(var ct)?:
                    let actions = ct.timerFired(e.timer)
                    machines[e.transaction] = .client(ct)
                    run(e.transaction, actions)
                case nil:
                    break
                }
            }
        }
    }
}

private let invite = """
    INVITE sip:bob@biloxi.example.com SIP/2.0\r
    Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds\r
    Max-Forwards: 70\r
    To: Bob <sip:bob@biloxi.example.com>\r
    From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r
    Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r
    CSeq: 314159 INVITE\r
    Content-Length: 0\r
    \r

    """

private let ack = """
    ACK sip:bob@biloxi.example.com SIP/2.0\r
    Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds\r
    Max-Forwards: 70\r
    To: Bob <sip:bob@biloxi.example.com>;tag=a6c85cf\r
    From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r
    Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r
    CSeq: 314159 ACK\r
    Content-Length: 0\r
    \r

    """

private func reply(_ status: Int) -> String {
    """
    SIP/2.0 \(status) Whatever\r
    Via: SIP/2.0/UDP proxy.example.com;branch=z9hG4bKproxy.1\r
    Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds\r
    To: Bob <sip:bob@biloxi.example.com>;tag=a6c85cf\r
    From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r
    Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r
    CSeq: 314159 INVITE\r
    Content-Length: 0\r
    \r

    """
}

@Suite("A stateful relay trace: table + wheel + machines on a mock clock")
struct ProxyFlowTests {
    @Test("INVITE relayed, retransmissions absorbed, 486 ACKed hop by hop and relayed until the ACK; all freed")
    func busyCallee() throws {
        var p = MiniProxy()
        try p.received(invite)
        p.advance(to: .ms(600))
        try p.received(invite)  // the caller retransmits: absorbed, 100 resent
        try p.received(reply(180))
        p.advance(to: .ms(700))
        try p.received(reply(486))
        try p.received(reply(486))  // the callee retransmits its 486: ACKed again, not relayed
        p.advance(to: .ms(1300))
        try p.received(ack)
        try p.received(invite)  // late retransmission after the ACK: ignored
        #expect(p.scriptRuns == 1)
        #expect(p.table.count == 2)
        p.advance(to: .s(40))
        #expect(p.wire == [
            "0.0 seconds ← 100 upstream",
            "0.0 seconds → INVITE downstream",
            "0.5 seconds → INVITE again downstream",
            "0.6 seconds ← again upstream",
            "0.6 seconds ← 180 upstream",
            "0.7 seconds → ACK downstream",
            "0.7 seconds ← 486 upstream",
            "0.7 seconds → ACK again downstream",
            "1.2 seconds ← again upstream",
            "6.3 seconds end #1",
            "32.7 seconds end #2",
        ])
        #expect(p.table.isEmpty)
        #expect(p.wheel.isEmpty)
        #expect(p.machines.isEmpty)
    }

    @Test("the callee never answers: Timer B, then the TU answers 408 upstream; Timer H waits for the ACK")
    func silentCallee() throws {
        var p = MiniProxy()
        try p.received(invite)
        p.advance(to: .s(33))
        #expect(p.wire.filter { $0.contains("INVITE again") }.count == 6)
        #expect(p.wire.contains("32.0 seconds timeoutToTU"))
        #expect(p.wire.contains("32.0 seconds end #2"))
        #expect(p.table.count == 1)  // the server transaction is still waiting for its final
        p.serverResponse(1, 408)
        try p.received(ack)
        p.advance(to: .s(40))
        #expect(p.table.isEmpty)
        #expect(p.wheel.isEmpty)
    }
}
