#if canImport(Glibc)
import Glibc
#endif
import Testing
import Synchronization
@testable import SIPTransport

@Suite("Worker wait set (epoll)")
struct WaitSetTests {
    private let loopback = SocketAddress(ip: "127.0.0.1", port: 0)!

    @Test("reports the shared socket and the own descriptor separately; empty on timeout")
    func readiness() throws {
        let shared = try UDPSocket(bindingTo: loopback)
        let own = try UDPSocket(bindingTo: loopback)  // stands in for the worker's eventfd
        let client = try UDPSocket(bindingTo: loopback)
        let set = try WaitSet(shared: shared.fileDescriptor, own: own.fileDescriptor)
        #expect(try set.wait(milliseconds: 20) == [])

        try client.send(Array("ping".utf8), to: shared.localAddress)
        #expect(try set.wait(milliseconds: 5000) == .shared)
        // Level-triggered: still readable until it is read.
        #expect(try set.wait(milliseconds: 0) == .shared)
        let rx = UDPBatchReceiver(capacity: 4, bufferSize: 2048)
        #expect(try rx.receiveQueued(on: shared) == 1)
        #expect(Array(rx.bytes(at: 0)) == Array("ping".utf8))
        #expect(try rx.receiveQueued(on: shared) == 0)  // nothing queued: returns at once

        try client.send(Array("wake".utf8), to: own.localAddress)
        #expect(try set.wait(milliseconds: 5000) == .own)
        #expect(try rx.receiveQueued(on: own) == 1)
        #expect(try set.wait(milliseconds: 0) == [])
    }

    @Test("one datagram wakes one of three threads waiting on the shared socket (EPOLLEXCLUSIVE)")
    func exclusiveWakeup() throws {
        let server = try UDPSocket(bindingTo: loopback)
        let client = try UDPSocket(bindingTo: loopback)
        let fd = server.fileDescriptor
        // A round: three threads wait on their own wait sets; one datagram is sent once they all
        // wait; a thread that sees the socket readable counts itself and reads the datagram. With
        // poll (or epoll without EPOLLEXCLUSIVE) every waiting thread wakes. A thread that started to
        // wait late can only add a count (if it looked before the datagram was read), so the best of
        // up to three rounds is taken: exclusive wake-ups give 1.
        func round() throws -> Int {
            try wakeRound(server, client, threads: 3, waitMs: 1500) { _ in try? WaitSet(shared: fd, own: -1) }
                .filter { $0 }.count
        }
        var best = Int.max
        for _ in 0..<3 where best != 1 { best = min(best, try round()) }
        #expect(best == 1)
    }

    @Test("the shared socket can be left out, added and removed")
    func watchShared() throws {
        let shared = try UDPSocket(bindingTo: loopback)
        let client = try UDPSocket(bindingTo: loopback)
        let set = try WaitSet(shared: shared.fileDescriptor, own: -1, watchingShared: false)
        #expect(!set.watchingShared)
        try client.send(Array("queued".utf8), to: shared.localAddress)
        usleep(20_000)
        #expect(try set.wait(milliseconds: 20) == [])  // not watched: the queued datagram is not seen
        try set.watchShared(true)
        #expect(set.watchingShared)
        try set.watchShared(true)  // already in: nothing to do
        #expect(try set.wait(milliseconds: 5000) == .shared)  // already queued: seen at once
        try set.watchShared(false)
        #expect(try set.wait(milliseconds: 20) == [])
    }

    @Test("an idle waiter added first gets the datagram, not one added later")
    func firstAddedWaiterFirst() throws {
        let server = try UDPSocket(bindingTo: loopback)
        let client = try UDPSocket(bindingTo: loopback)
        let fd = server.fileDescriptor
        let first = try WaitSet(shared: fd, own: -1)
        let second = try WaitSet(shared: fd, own: -1)
        // Both wait; one datagram: the first set's thread wakes. As in the test above, a late start
        // can only make an extra wake-up, so up to three rounds are run.
        let sets = UnsafeTransfer([first, second])
        func round() throws -> [Bool] {
            try wakeRound(server, client, threads: 2, waitMs: 1000) { sets.value[$0] }
        }
        var last: [Bool] = []
        for _ in 0..<3 where last != [true, false] { last = try round() }
        #expect(last == [true, false])
    }

    /// One round: a thread per wait set (`set(i)`, called on that thread) waits up to `waitMs`; once
    /// all wait, one datagram goes to `server`; a thread that sees the shared socket readable marks
    /// itself and reads the datagram. Which threads woke.
    private func wakeRound(_ server: UDPSocket, _ client: UDPSocket, threads n: Int, waitMs: Int32,
                           set: @escaping @Sendable (Int) -> WaitSet?) throws -> [Bool] {
        let woken = Mutex<[Bool]>(Array(repeating: false, count: n))
        let waiting = Mutex<Int>(0)
        var threads: [PosixThread] = []
        for i in 0..<n {
            threads.append(try PosixThread(name: "wait\(i)") {
                guard let s = set(i) else { return }
                waiting.withLock { $0 += 1 }
                guard (try? s.wait(milliseconds: waitMs))?.contains(.shared) == true else { return }
                woken.withLock { $0[i] = true }
                _ = try? UDPBatchReceiver(capacity: 1, bufferSize: 64).receiveQueued(on: server)
            })
        }
        let clock = ContinuousClock()
        let deadline = clock.now + .seconds(10)
        while waiting.withLock({ $0 }) < n && clock.now < deadline { usleep(1000) }
        usleep(100_000)  // into epoll_wait
        try client.send(Array("one".utf8), to: server.localAddress)
        for t in threads { t.join() }
        return woken.withLock { $0 }
    }
}

/// Hands a non-Sendable value to one other thread (the test joins it before using the value again).
private struct UnsafeTransfer<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}
