import Testing
import Synchronization
@testable import SIPTransport

private let loopback4 = SocketAddress(ip: "127.0.0.1", port: 0)!
private let loopback6 = SocketAddress(ip: "::1", port: 0)!

/// True if this machine can bind ::1 (containers without IPv6 cannot).
private let ipv6Available: Bool = (try? UDPSocket(bindingTo: loopback6)) != nil

private func payload(_ i: Int) -> [UInt8] { Array("datagram-\(i)-".utf8) + [UInt8](repeating: UInt8(i & 0xFF), count: i % 50) }

/// Receives until `expected` datagrams arrived or 5 s passed; returns (bytes, source) pairs.
private func receiveAll(_ rx: UDPBatchReceiver, on socket: UDPSocket, expected: Int) throws -> [([UInt8], SocketAddress)] {
    var out: [([UInt8], SocketAddress)] = []
    let clock = ContinuousClock()
    let deadline = clock.now + .seconds(5)
    while out.count < expected && clock.now < deadline {
        let n = try rx.receive(on: socket, timeout: .milliseconds(200))
        #expect(n <= rx.capacity)
        for i in 0..<n { out.append((Array(rx.bytes(at: i)), rx.source(at: i))) }
    }
    return out
}

@Suite("UDP sockets and batches")
struct UDPBatchTests {
    @Test("binding 127.0.0.1:0 gets a real port")
    func bindEphemeral() throws {
        let s = try UDPSocket(bindingTo: loopback4)
        #expect(s.localAddress.ip == "127.0.0.1")
        #expect(s.localAddress.port != 0)
        #expect(s.fileDescriptor >= 0)
        #expect(s.receiveBufferSize > 0)
        s.close()
        #expect(s.fileDescriptor == -1)
        s.close()  // idempotent
    }

    @Test("100 datagrams arrive in batches with their sources and contents")
    func receive100() throws {
        let server = try UDPSocket(bindingTo: loopback4)
        let client = try UDPSocket(bindingTo: loopback4)
        for i in 0..<100 { try client.send(payload(i), to: server.localAddress) }
        let rx = UDPBatchReceiver(capacity: 32)
        let got = try receiveAll(rx, on: server, expected: 100)
        #expect(got.count == 100)
        for (i, (bytes, source)) in got.enumerated() {
            #expect(bytes == payload(i))
            #expect(source == client.localAddress)
        }
    }

    @Test("one recvmmsg takes several queued datagrams")
    func batching() throws {
        let server = try UDPSocket(bindingTo: loopback4)
        let client = try UDPSocket(bindingTo: loopback4)
        for i in 0..<10 { try client.send(payload(i), to: server.localAddress) }
        let rx = UDPBatchReceiver(capacity: 4)
        #expect(try rx.receive(on: server, timeout: .seconds(2)) == 4)
        #expect(Array(rx.bytes(at: 3)) == payload(3))
        #expect(try rx.receive(on: server, timeout: .seconds(2)) == 4)
        #expect(try rx.receive(on: server, timeout: .seconds(2)) == 2)
        #expect(Array(rx.bytes(at: 1)) == payload(9))
    }

    @Test("IPv6 ::1 round trip", .enabled(if: ipv6Available, "::1 is not available on this machine"))
    func ipv6() throws {
        let server = try UDPSocket(bindingTo: loopback6)
        let client = try UDPSocket(bindingTo: loopback6)
        #expect(server.localAddress.family == .inet6)
        for i in 0..<20 { try client.send(payload(i), to: server.localAddress) }
        let got = try receiveAll(UDPBatchReceiver(), on: server, expected: 20)
        #expect(got.map(\.0) == (0..<20).map(payload))
        #expect(got.allSatisfy { $0.1 == client.localAddress && $0.1.ip == "::1" })
    }

    @Test("a batch of datagrams goes out with one sendmmsg to several destinations")
    func sendBatch() throws {
        let a = try UDPSocket(bindingTo: loopback4)
        let b = try UDPSocket(bindingTo: loopback4)
        let sender = try UDPSocket(bindingTo: loopback4)
        let tx = UDPBatchSender(capacity: 8)
        for i in 0..<8 { #expect(tx.append(payload(i), to: i % 2 == 0 ? a.localAddress : b.localAddress)) }
        #expect(tx.isFull)
        #expect(!tx.append(payload(99), to: a.localAddress))
        let r = tx.flush(on: sender)
        #expect(r == UDPBatchSender.FlushResult(sent: 8, failed: 0, lastError: nil))
        #expect(tx.pendingCount == 0)
        let gotA = try receiveAll(UDPBatchReceiver(), on: a, expected: 4)
        let gotB = try receiveAll(UDPBatchReceiver(), on: b, expected: 4)
        #expect(gotA.map(\.0) == [0, 2, 4, 6].map(payload))
        #expect(gotB.map(\.0) == [1, 3, 5, 7].map(payload))
        #expect(gotA.allSatisfy { $0.1 == sender.localAddress })
    }

    @Test("a datagram larger than the slot is refused by the sender")
    func sendTooLarge() throws {
        let tx = UDPBatchSender(capacity: 2, bufferSize: 10)
        #expect(!tx.append([UInt8](repeating: 1, count: 11), to: loopback4))
        #expect(tx.append([UInt8](repeating: 1, count: 10), to: loopback4))
        #expect(tx.pendingCount == 1)
        tx.reset()
        #expect(tx.pendingCount == 0)
    }

    @Test("a failing destination is counted and the rest still go out")
    func sendFailure() throws {
        let a = try UDPSocket(bindingTo: loopback4)
        let sender = try UDPSocket(bindingTo: loopback4)
        let tx = UDPBatchSender()
        tx.append(payload(1), to: a.localAddress)
        tx.append(payload(2), to: SocketAddress(ip: "::1", port: 5060)!)  // IPv6 destination on an IPv4 socket
        tx.append(payload(3), to: a.localAddress)
        let r = tx.flush(on: sender)
        #expect(r.sent == 2)
        #expect(r.failed == 1)
        #expect(r.lastError != nil && r.lastError?.errno != 0)
        let got = try receiveAll(UDPBatchReceiver(), on: a, expected: 2)
        #expect(got.map(\.0) == [payload(1), payload(3)])
    }

    @Test("receive times out with 0 when nothing arrives")
    func timeout() throws {
        let server = try UDPSocket(bindingTo: loopback4)
        let rx = UDPBatchReceiver()
        let clock = ContinuousClock()
        let start = clock.now
        #expect(try rx.receive(on: server, timeout: .milliseconds(50)) == 0)
        let elapsed = clock.now - start
        #expect(elapsed >= .milliseconds(40))
        #expect(elapsed < .seconds(2))
        #expect(try rx.receive(on: server, timeout: .zero) == 0)
    }

    @Test("oversized datagrams are flagged as truncated")
    func truncation() throws {
        let server = try UDPSocket(bindingTo: loopback4)
        let client = try UDPSocket(bindingTo: loopback4)
        try client.send([UInt8](repeating: 7, count: 100), to: server.localAddress)
        try client.send([UInt8](repeating: 8, count: 16), to: server.localAddress)
        let rx = UDPBatchReceiver(capacity: 4, bufferSize: 16)
        let got = try receiveAll(rx, on: server, expected: 2)
        #expect(got.count == 2)
        #expect(rx.count == 2)
        #expect(rx.isTruncated(at: 0))
        #expect(rx.bytes(at: 0).count == 16)
        #expect(!rx.isTruncated(at: 1))
    }

    @Test("a second bind fails with EADDRINUSE, unless both use SO_REUSEPORT")
    func reusePort() throws {
        let first = try UDPSocket(bindingTo: loopback4)
        #expect {
            _ = try UDPSocket(bindingTo: first.localAddress)
        } throws: { error in
            guard let e = error as? TransportError else { return false }
            return e.errno == 98 && e.description.contains("Address already in use") && e.description.contains("bind 127.0.0.1:")
        }
        let opts = UDPSocket.Options(reusePort: true)
        let r1 = try UDPSocket(bindingTo: loopback4, options: opts)
        let r2 = try UDPSocket(bindingTo: r1.localAddress, options: opts)
        #expect(r1.localAddress == r2.localAddress)
    }

    @Test("a worker thread receives until told to stop")
    func workerThread() throws {
        let server = try UDPSocket(bindingTo: loopback4)
        let client = try UDPSocket(bindingTo: loopback4)
        let running = Atomic<Bool>(true)
        let received = Atomic<Int>(0)
        let echoed = Atomic<Int>(0)
        let thread = try PosixThread(name: "udp-worker-test") {
            let rx = UDPBatchReceiver()
            let tx = UDPBatchSender()
            while running.load(ordering: .acquiring) {
                guard let n = try? rx.receive(on: server, timeout: .milliseconds(20)) else { return }
                for i in 0..<n { tx.append(rx.bytes(at: i), to: rx.source(at: i)) }
                received.add(n, ordering: .relaxed)
                echoed.add(tx.flush(on: server).sent, ordering: .relaxed)
            }
        }
        for i in 0..<50 { try client.send(payload(i), to: server.localAddress) }
        let replies = try receiveAll(UDPBatchReceiver(), on: client, expected: 50)
        running.store(false, ordering: .releasing)
        thread.join()
        thread.join()
        #expect(received.load(ordering: .relaxed) == 50)
        #expect(echoed.load(ordering: .relaxed) == 50)
        #expect(replies.map(\.0) == (0..<50).map(payload))
    }

    @Test("packet info gives the local address of each datagram on a wildcard bind")
    func packetInfo() throws {
        let server = try UDPSocket(bindingTo: SocketAddress(ip: "0.0.0.0", port: 0)!, options: .init(packetInfo: true))
        let client = try UDPSocket(bindingTo: loopback4)
        let port = Int(server.localAddress.port)
        try client.send(payload(1), to: SocketAddress(ip: "127.0.0.1", port: port)!)
        try client.send(payload(2), to: SocketAddress(ip: "127.0.0.2", port: port)!)
        let rx = UDPBatchReceiver()
        let got = try receiveAll(rx, on: server, expected: 2)
        #expect(got.count == 2)
        #expect(rx.localAddress(at: 0, on: server) == SocketAddress(ip: "127.0.0.1", port: port))
        #expect(rx.localAddress(at: 1, on: server) == SocketAddress(ip: "127.0.0.2", port: port))
        // Without the option there is no packet info.
        let plain = try UDPSocket(bindingTo: loopback4)
        try client.send(payload(3), to: plain.localAddress)
        #expect(try rx.receive(on: plain, timeout: .seconds(2)) == 1)
        #expect(rx.localAddress(at: 0, on: plain) == nil)
    }

    @Test("TransportError carries errno text")
    func errorText() {
        let e = TransportError("connect", errno: 111)
        #expect(e.description == "connect: Connection refused (errno 111)")
        #expect(TransportError("x", errno: 0, detail: "nope").description == "x: nope")
    }
}
