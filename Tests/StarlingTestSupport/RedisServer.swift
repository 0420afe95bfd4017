public import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A throwaway redis-server (Debian `redis-server`) on 127.0.0.1 and a port of `TestPorts`: no
/// persistence, no protected mode, killed by `stop()` / deinit. `extra` adds configuration
/// arguments (`["--replicaof", "127.0.0.1", "6380"]`).
public final class RedisServer {
    public let process: PeerProcess
    public let port: Int
    public let host: String

    /// Starts a server on a fresh port, or on `port` (a restart on the port a killed server had).
    public init(host: String = TestPorts.loopback, port fixedPort: Int? = nil, extra: [String] = [],
                executable: String = "redis-server") throws {
        var lastError = ""
        for _ in 0..<(fixedPort == nil ? 4 : 1) {
            let port = try fixedPort ?? TestPorts.next()
            let args = [executable, "--port", String(port), "--bind", host, "--save", "", "--appendonly", "no",
                        "--protected-mode", "no", "--daemonize", "no", "--logfile", ""] + extra
            let p = try PeerProcess(args, package: "redis-server", readFirstLine: false)
            let up = try TestPorts.wait(timeout: .seconds(20)) {
                !p.isRunning || TestPorts.listensTCP(port, pid: p.pid, ip: host)
            }
            if up && p.isRunning {
                self.process = p
                self.port = port
                self.host = host
                return
            }
            lastError = "\(executable) on \(host):\(port) did not start: \(p.stderr)"
            p.stop()
        }
        throw HelperFailure(lastError)
    }

    /// `redis://host:port/db`.
    public func url(db: Int = 0) -> String { "redis://\(host):\(port)/\(db)" }

    public var isRunning: Bool { process.isRunning }

    public func stop() { process.stop() }

    /// Runs `redis-cli -h host -p port ARGS...` and returns its stdout (raw, `--no-raw` off).
    public func cli(_ args: [String]) throws -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/redis-cli")
        p.arguments = ["-h", host, "-p", String(port)] + args
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    deinit { process.stop() }
}
