import Foundation
import Logging
import Testing
import SIPCore
import SIPTransport
import StarlingServer
import Synchronization

/// A real server on 127.0.0.1 (UDP sockets, worker threads, file watcher): OPTIONS answered by the
/// script; saving a new version changes the answer; a broken version is refused and the last good one
/// stays active.
@Suite(.serialized) struct ServerReloadTests {
    static func script(_ reason: String) -> String {
        """
        function ksr_request_route()
          KSR.sl.sl_send_reply(200, "\(reason)")
        end
        """
    }

    /// Sends OPTIONS and returns the reason phrase of the answer (nil on timeout).
    static func ask(_ server: SocketAddress, from client: UDPSocket, id: Int) throws -> String? {
        let msg = "OPTIONS sip:\(server) SIP/2.0\r\nVia: SIP/2.0/UDP \(client.localAddress);branch=z9hG4bKreload\(id);rport\r\nFrom: <sip:t@127.0.0.1>;tag=\(id)\r\nTo: <sip:s@127.0.0.1>\r\nCall-ID: reload-\(id)\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        try client.send(Array(msg.utf8), to: server)
        let rx = UDPBatchReceiver(capacity: 4)
        let deadline = ContinuousClock.now + .seconds(3)
        while ContinuousClock.now < deadline {
            let n = try rx.receive(on: client, timeout: .milliseconds(200))
            for i in 0..<n {
                let m = try SIPMessage.parse(rx.bytes(at: i))
                if m.callID.map(m.string) == "reload-\(id)" { return m.string(m.reasonRange) }
            }
        }
        return nil
    }

    @Test func reloadOnSaveKeepsLastGoodVersion() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("starling-reload-\(getpid())")
        try? FileManager.default.removeItem(at: dir)
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("route.lua").path
        try Self.script("v1").write(toFile: path, atomically: false, encoding: .utf8)

        var config = StarlingConfig()
        config.script = path
        config.workers = 2
        // Port 0: the server reports the port the kernel picked (boundSockets); no window for another test.
        config.listen = [ListenAddress(proto: .udp, address: SocketAddress(ip: "127.0.0.1", port: 0)!)]
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let server = try Server(config: config, logger: logger)
        try server.start()
        defer { server.shutdown() }
        let client = try UDPSocket(bindingTo: SocketAddress(ip: "127.0.0.1", port: 0)!)
        defer { client.close() }
        let addr = server.boundSockets[0].address

        #expect(try Self.ask(addr, from: client, id: 1) == "v1")

        // Save by rename, as editors do.
        try Self.script("v2").write(toFile: path + ".tmp", atomically: false, encoding: .utf8)
        rename(path + ".tmp", path)
        var answer: String? = nil
        for i in 0..<30 {
            answer = try Self.ask(addr, from: client, id: 100 + i)
            if answer == "v2" { break }
            usleep(100_000)
        }
        #expect(answer == "v2")

        // A syntax error is refused; v2 stays.
        try "function ksr_request_route( then end".write(toFile: path, atomically: false, encoding: .utf8)
        usleep(600_000)
        #expect(try Self.ask(addr, from: client, id: 200) == "v2")
        #expect(server.stats.reloadsFailed.load(ordering: .relaxed) >= 1)

        // The next good save is taken.
        try Self.script("v3").write(toFile: path, atomically: false, encoding: .utf8)
        for i in 0..<30 {
            answer = try Self.ask(addr, from: client, id: 300 + i)
            if answer == "v3" { break }
            usleep(100_000)
        }
        #expect(answer == "v3")
    }

    @Test func badScriptStopsStartup() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("starling-bad-\(getpid()).lua").path
        try "x = = 1".write(toFile: path, atomically: false, encoding: .utf8)
        defer { unlink(path) }
        var config = StarlingConfig()
        config.script = path
        config.listen = [ListenAddress(proto: .udp, address: SocketAddress(ip: "127.0.0.1", port: 0)!)]
        #expect(throws: ServerError.self) { try Server(config: config, logger: Logger(label: "t")) }
        do { _ = try Server(config: config, logger: Logger(label: "t")) } catch {
            #expect(error.description.contains("starling-bad-\(getpid()).lua:1"))
        }
    }
}
