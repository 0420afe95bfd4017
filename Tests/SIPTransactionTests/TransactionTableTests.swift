import Dispatch
import Synchronization
import SIPCore
import Testing
@testable import SIPTransaction

private func key(_ i: Int) -> TransactionKey { .client(branch: "z9hG4bK-\(i)", method: .invite) }

@Suite("TransactionTable")
struct TransactionTableTests {
    @Test("insert, lookup, update, remove, count")
    func basics() {
        let t = TransactionTable<Int>(shardCount: 8)
        #expect(t.shardCount == 8)
        #expect(t.isEmpty)
        #expect(t.insert(1, for: key(1)) == nil)
        #expect(t.insert(2, for: key(2)) == nil)
        #expect(t.insert(99, for: key(1)) == 1)  // already there: not replaced
        #expect(t.lookup(key(1)) == 1)
        #expect(t.lookup(key(3)) == nil)
        #expect(t.count == 2)
        #expect(t.updateValue(10, for: key(1)) == 1)
        #expect(t.lookup(key(1)) == 10)
        #expect(t.withValue(for: key(2)) { (v: inout Int) -> Int in v += 5; return v } == 7)
        #expect(t.lookup(key(2)) == 7)
        #expect(t.withValue(for: key(3)) { (_: inout Int) in 0 } == nil)
        #expect(t.remove(key(1)) == 10)
        #expect(t.remove(key(1)) == nil)
        #expect(t.count == 1)
        #expect(t.removeAll { _, v in v == 7 } == 1)
        #expect(t.isEmpty)
    }

    @Test("shard count rounds up to a power of two; keys spread over the shards")
    func sharding() {
        let t = TransactionTable<Int>(shardCount: 5)
        #expect(t.shardCount == 8)
        var used = Set<Int>()
        for i in 0..<1000 { used.insert(t.shardIndex(of: key(i))) }
        #expect(used.count == 8)
    }

    @Test("holds server machines keyed by request keys")
    func machines() {
        let t = TransactionTable<InviteServerTransaction>()
        let k = TransactionKey.client(branch: "z9hG4bKx", method: .invite)
        t.insert(InviteServerTransaction(transport: .unreliable), for: k)
        #expect(t.withValue(for: k) { (m: inout InviteServerTransaction) in m.tuSentResponse(486) } == [.sendResponse(486), .startTimer(.G, after: .ms(500)), .startTimer(.H, after: .s(32))])
        #expect(t.withValue(for: k) { (m: inout InviteServerTransaction) in m.requestRetransmitted() } == [.retransmitResponse])
        #expect(t.lookup(k)?.state == .completed)
    }

    @Test("8 workers insert, look up and remove 20k transactions each, concurrently")
    func concurrent() {
        let t = TransactionTable<Int>(shardCount: 16)
        let workers = 8, perWorker = 20_000
        let misses = Atomic<Int>(0)
        DispatchQueue.concurrentPerform(iterations: workers) { w in
            let base = w * perWorker
            for i in base..<base + perWorker {
                if t.insert(i, for: key(i)) != nil { misses.add(1, ordering: .relaxed) }
            }
            for i in base..<base + perWorker where t.lookup(key(i)) != i { misses.add(1, ordering: .relaxed) }
            for i in stride(from: base, to: base + perWorker, by: 2) where t.remove(key(i)) != i {
                misses.add(1, ordering: .relaxed)
            }
        }
        #expect(misses.load(ordering: .relaxed) == 0)
        #expect(t.count == workers * perWorker / 2)
        DispatchQueue.concurrentPerform(iterations: workers) { w in
            let base = w * perWorker
            for i in stride(from: base + 1, to: base + perWorker, by: 2) { t.remove(key(i)) }
        }
        #expect(t.isEmpty)
    }

    @Test("racing inserts of the same keys: exactly one worker wins each key")
    func racingInserts() {
        let t = TransactionTable<Int>(shardCount: 4)
        let keys = 10_000
        let wins = Atomic<Int>(0)
        DispatchQueue.concurrentPerform(iterations: 6) { w in
            for i in 0..<keys where t.insert(w, for: key(i)) == nil { wins.add(1, ordering: .relaxed) }
        }
        #expect(wins.load(ordering: .relaxed) == keys)
        #expect(t.count == keys)
    }

    @Test("concurrent machine updates under the shard lock lose nothing")
    func concurrentUpdates() {
        let t = TransactionTable<Int>(shardCount: 2)
        for i in 0..<4 { t.insert(0, for: key(i)) }
        DispatchQueue.concurrentPerform(iterations: 8) { _ in
            for n in 0..<10_000 { t.withValue(for: key(n % 4)) { (v: inout Int) in v += 1 } }
        }
        #expect((0..<4).map { t.lookup(key($0)) ?? -1 } == [20_000, 20_000, 20_000, 20_000])
    }
}
