import Testing
import Foundation
import Synchronization
import SIPCore
import SIPTransport
import SIPTransaction
import StarlingKEMI
@testable import KSRModules

/// A worker sleeps until its next timer; a timer another worker starts for one of its transactions
/// (a reply arrived there) wakes it when it is due before the worker would wake.
@Suite("TMTimerQueue")
struct TMTimerQueueTests {
    final class Wakes: Sendable {
        let count = Atomic<Int>(0)
        var value: Int { count.load(ordering: .relaxed) }
    }

    /// Runs `body` on a new thread and waits for it.
    func onOtherThread(_ body: @escaping @Sendable () -> Void) {
        let done = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            body()
            done.signal()
        }
        done.wait()
    }

    static func cell(_ q: TMTimerQueue) throws -> TMCell {
        let m = try SIPMessage.parse(Array(Msg.invite.utf8))
        let key = try #require(TransactionKey.server(for: m))
        let peer = try #require(SocketAddress(ip: "192.0.2.10", port: 5060))
        return TMCell(id: 1, key: key, request: m, received: ReceiveInfo(source: peer, local: peer, proto: .udp),
                      replyDestination: peer, config: TimerConfiguration(), timers: q)
    }

    @Test("another thread's timer wakes the owner only when it is due before the owner wakes")
    func wakesOwner() throws {
        let now = MonotonicInstant(nanoseconds: 1_000_000_000_000)
        let wakes = Wakes()
        let q = TMTimerQueue(clock: { now }, wakeOwner: { wakes.count.add(1, ordering: .relaxed) })
        let cell = try Self.cell(q)
        let timer = { @Sendable (t: TransactionTimer) in TMTimer(cell: cell, side: TMCore.serverSide, timer: t) }
        // Nothing pending: the owner sleeps its longest wait.
        #expect(q.nextWait(from: now) == nil)
        // The owner's own timers wake nobody: it plans its next sleep after starting them.
        _ = q.schedule(timer(.A), after: .milliseconds(50), replacing: nil)
        #expect(wakes.value == 0)
        #expect(q.nextWait(from: now) == 50)
        // Another thread: due after the owner wakes, no wake; due before, one wake.
        onOtherThread { _ = q.schedule(timer(.B), after: .milliseconds(120), replacing: nil) }
        #expect(wakes.value == 0)
        onOtherThread { _ = q.schedule(timer(.E), after: .milliseconds(20), replacing: nil) }
        #expect(wakes.value == 1)
        // The owner now wakes by 20 ms: a timer due at 30 ms needs no second wake.
        onOtherThread { _ = q.schedule(timer(.F), after: .milliseconds(30), replacing: nil) }
        #expect(wakes.value == 1)
        #expect(q.nextWait(from: now) == 20)
        #expect(q.advance(to: now.advanced(by: .milliseconds(20))).map(\.timer) == [.E])
        #expect(q.nextWait(from: now.advanced(by: .milliseconds(20))) == 10)
        #expect(q.advance(to: now.advanced(by: .seconds(1))).map(\.timer) == [.F, .A, .B])
        #expect(q.count == 0)
    }
}
