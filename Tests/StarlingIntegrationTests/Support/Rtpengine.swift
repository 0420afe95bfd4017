import Foundation
import StarlingTestSupport

#if canImport(Glibc)
import Glibc
#endif

/// A real rtpengine daemon (Debian `rtpengine-daemon`) in userspace: ng control on 127.0.0.1:`port`,
/// media relayed on `interface` (127.0.0.2, so that SDP rewritten by the relay is told apart from the
/// endpoints' 127.0.0.1) over a port block of its own; deleted calls are dropped at once.
struct RtpengineDaemon {
    let process: ServerProcess
    let port: Int
    let media: ClosedRange<Int>
    let interface: String

    static func executable() throws -> String {
        try Requirements.tool("rtpengine", package: "rtpengine-daemon")
    }

    static func start(directory: URL, tag: String = "rtpengine", interface: String = "127.0.0.2") throws -> RtpengineDaemon {
        let media = try TestPorts.block(20)
        return try TestPorts.retrying { port in
            let process = try ServerProcess(
                name: tag, executable: try executable(),
                arguments: ["--config-file=none", "--table=-1", "--interface=\(interface)", "--listen-ng=127.0.0.1:\(port)",
                            "--foreground", "--log-stderr", "--port-min=\(media.lowerBound)", "--port-max=\(media.upperBound)",
                            "--delete-delay=0", "--log-level=6"],
                logFile: directory.appendingPathComponent("\(tag).log"))
            do {
                try process.waitUntil("\(tag) answers ping on 127.0.0.1:\(port)") {
                    TestPorts.holdsUDP(port, pid: process.pid) && (try? NGControl.command(port, "d7:command4:pinge"))?.contains("pong") == true
                }
            } catch {
                process.stop()
                throw HarnessError("\(error)\n\(process.logTail())")
            }
            return RtpengineDaemon(process: process, port: port, media: media, interface: interface)
        }
    }

    /// The Call-IDs rtpengine currently holds (`list`).
    func calls() throws -> String { try NGControl.command(port, "d7:command4:liste") }

    /// Waits until `list` no longer names `callID`; false after `timeout`.
    func waitUntilGone(_ callID: String, timeout: Duration = .seconds(5)) -> Bool {
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        while clock.now < deadline {
            if let l = try? calls(), !l.contains(callID) { return true }
            usleep(100_000)
        }
        return false
    }
}

/// Raw ng exchanges from the test (hand-written bencode: the test checks the daemon, not Starling's codec).
enum NGControl {
    static func command(_ port: Int, _ bencoded: String, timeout: Duration = .seconds(2)) throws -> String {
        let endpoint = try UDPEndpoint()
        let cookie = "t\(UInt32.random(in: 0...UInt32.max)) "
        try endpoint.send(cookie + bencoded, to: port)
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        while clock.now < deadline {
            guard let reply = endpoint.receive(timeout: clock.now.duration(to: deadline)) else { break }
            if reply.hasPrefix(cookie) { return String(reply.dropFirst(cookie.count)) }
        }
        throw HarnessError("no ng reply from 127.0.0.1:\(port) to \(bencoded)")
    }
}

/// A UDP peer that answers every datagram with its first word (the ng cookie) and fixed bytes: an
/// rtpengine that replies with something that does not decode.
final class GarbageNGPeer: @unchecked Sendable {
    let endpoint: UDPEndpoint
    private let stopFlag = NSLock()
    private var stopped = false
    private var thread: Thread?

    /// Every non-ping request received, without its cookie.
    private(set) var requests: [String] {
        get { stopFlag.lock(); defer { stopFlag.unlock() }; return recorded }
        set { stopFlag.lock(); recorded = newValue; stopFlag.unlock() }
    }
    private var recorded: [String] = []

    /// `reply` to every command; with `pong`, pings get "pong" (as a live rtpengine).
    init(reply: String, pong: Bool = false) throws {
        endpoint = try UDPEndpoint()
        let fd = endpoint.fd
        let t = Thread { [self] in
            var buffer = [UInt8](repeating: 0, count: 65536)
            while !self.isStopped {
                var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                guard poll(&pfd, 1, 100) > 0 else { continue }
                var from = sockaddr_storage()
                var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
                let n = withUnsafeMutablePointer(to: &from) { p in
                    p.withMemoryRebound(to: sockaddr.self, capacity: 1) { recvfrom(fd, &buffer, buffer.count, 0, $0, &len) }
                }
                guard n > 0, let space = buffer[..<n].firstIndex(of: UInt8(ascii: " ")) else { continue }
                let payload = String(decoding: buffer[(space + 1)..<n], as: UTF8.self)
                let isPing = payload == "d7:command4:pinge"
                if !isPing { self.requests.append(payload) }
                let out = Array(buffer[...space]) + Array((pong && isPing ? "d6:result4:ponge" : reply).utf8)
                _ = withUnsafePointer(to: &from) { p in
                    p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(fd, out, out.count, 0, $0, len) }
                }
            }
        }
        thread = t
        t.start()
    }

    var port: Int { endpoint.port }
    private var isStopped: Bool { stopFlag.lock(); defer { stopFlag.unlock() }; return stopped }
    func stop() { stopFlag.lock(); stopped = true; stopFlag.unlock() }
}
