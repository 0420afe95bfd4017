import Foundation
import Logging
import SIPTransport
import Synchronization
import Testing
@testable import SIPStreams

#if canImport(Glibc)
import Glibc
#endif

/// The connection layer in process over loopback: inbox delivery, replies over the same connection,
/// reuse by address, no_connect / close options, the idle sweep.
@Suite(.serialized) struct StreamTransportUnitTests {
    static func options(_ id: String) -> [UInt8] {
        Array(("OPTIONS sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:1;branch=z9hG4bK\(id)\r\nCall-ID: \(id)\r\n"
               + "CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n").utf8)
    }

    /// A started transport with one tcp listener on 127.0.0.1:0 and `workers` inboxes.
    static func make(lifetime: Int = 120, workers: Int = 2) throws -> (StreamTransport, [StreamInbox], SIPTransport.SocketAddress) {
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let inboxes = try (0..<workers).map { _ in try StreamInbox() }
        let t = try StreamTransport(listeners: [StreamListener(proto: .tcp, address: SIPTransport.SocketAddress(ip: "127.0.0.1", port: 0)!)],
                                    inboxes: inboxes, settings: StreamSettings(connectionLifetime: lifetime), logger: logger)
        try t.start()
        return (t, inboxes, t.boundListeners[0].address)
    }

    /// Messages drained from inboxes but not yet looked at, per inbox set.
    nonisolated(unsafe) static var backlog: [ObjectIdentifier: [StreamMessage]] = [:]

    /// Waits until some inbox has a message (oldest first).
    static func receive(_ inboxes: [StreamInbox], timeout: Double = 5) -> StreamMessage? {
        let key = ObjectIdentifier(inboxes[0])
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            for i in inboxes { backlog[key, default: []] += i.drain() }
            if var b = backlog[key], !b.isEmpty {
                let m = b.removeFirst()
                backlog[key] = b
                return m
            }
            usleep(5_000)
        }
        return nil
    }

    /// A blocking client socket connected to `a`.
    static func connect(_ a: SIPTransport.SocketAddress) -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var tv = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        _ = a.withSockAddr { Glibc.connect(fd, $0, $1) }
        return fd
    }

    static func read(_ fd: Int32) -> String {
        var buf = [UInt8](repeating: 0, count: 4096)
        let n = recv(fd, &buf, buf.count, 0)
        return n > 0 ? String(decoding: buf[0..<n], as: UTF8.self) : ""
    }

    @Test func messagesReachAnInboxAndRepliesGoBackOverTheConnection() throws {
        let (t, inboxes, address) = try Self.make()
        defer { t.shutdown() }
        let fd = Self.connect(address)
        defer { close(fd) }
        let bytes = Self.options("a1")
        _ = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
        let m = try #require(Self.receive(inboxes))
        #expect(m.bytes == bytes && m.proto == .tcp && m.local == address && m.connectionID != 0)
        #expect(t.connectionCount == 1)
        // By connection id, and by the peer's address (the alias).
        #expect(t.send(Array("one".utf8), to: m.source, proto: .tcp, connectionID: m.connectionID, from: nil))
        #expect(Self.read(fd) == "one")
        let outbox = StreamOutbox()
        #expect(t.send(Array("two".utf8), to: m.source, proto: .tcp, connectionID: nil, from: nil, outbox: outbox))
        #expect(t.send(Array("three".utf8), to: m.source, proto: .tcp, connectionID: nil, from: nil, outbox: outbox))
        t.flush(outbox)
        var got = ""
        while got.count < 8 { let r = Self.read(fd); if r.isEmpty { break }; got += r }
        #expect(got == "twothree")
        #expect(t.connectionCount == 1, "no second connection was opened")
        // close: written, then closed.
        #expect(t.send(Array("bye".utf8), to: m.source, proto: .tcp, connectionID: nil, from: nil,
                       options: StreamSendOptions(close: true)))
        #expect(Self.read(fd) == "bye")
        #expect(Self.read(fd) == "", "closed after the message")
    }

    @Test func noConnectRefusesAndAConnectionIsOpenedOtherwise() throws {
        let (t, inboxes, address) = try Self.make()
        defer { t.shutdown() }
        // A second transport acts as the remote server.
        let (remote, remoteInboxes, remoteAddress) = try Self.make()
        defer { remote.shutdown() }
        #expect(!t.send(Self.options("n1"), to: remoteAddress, proto: .tcp, connectionID: nil, from: address,
                        options: StreamSendOptions(noConnect: true)))
        #expect(t.send(Self.options("n2"), to: remoteAddress, proto: .tcp, connectionID: nil, from: address))
        #expect(t.send(Self.options("n3"), to: remoteAddress, proto: .tcp, connectionID: nil, from: address))
        let first = try #require(Self.receive(remoteInboxes))
        let second = try #require(Self.receive(remoteInboxes))
        #expect(String(decoding: first.bytes, as: UTF8.self).contains("n2") && String(decoding: second.bytes, as: UTF8.self).contains("n3"))
        #expect(first.connectionID == second.connectionID, "one connection carried both")
        // The remote answers over that connection; it arrives in our inboxes as from the remote.
        #expect(remote.send(Self.options("back"), to: first.source, proto: .tcp, connectionID: first.connectionID, from: nil))
        let back = try #require(Self.receive(inboxes))
        #expect(back.source == remoteAddress && back.local == address)
        // Nothing listens here: the connect fails and the connection is forgotten.
        let dead = SIPTransport.SocketAddress(ip: "127.0.0.1", port: 1)!
        _ = t.send(Self.options("x"), to: dead, proto: .tcp, connectionID: nil, from: nil)
        usleep(500_000)
        #expect(t.stats.connectFailures.load(ordering: .relaxed) == 1)
        #expect(t.connectionCount == 1)
    }

    @Test func idleConnectionsAreClosedAfterTheLifetime() throws {
        let (t, _, address) = try Self.make(lifetime: 1)
        defer { t.shutdown() }
        let fds = (0..<5).map { _ in Self.connect(address) }
        defer { fds.forEach { close($0) } }
        usleep(300_000)
        #expect(t.connectionCount == 5)
        let deadline = Date().addingTimeInterval(5)
        while t.connectionCount > 0 && Date() < deadline { usleep(100_000) }
        #expect(t.connectionCount == 0)
        #expect(t.stats.idleClosed.load(ordering: .relaxed) == 5)
        #expect(Self.read(fds[0]) == "", "the server closed it")
    }
}
