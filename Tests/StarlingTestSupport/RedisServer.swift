public import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A throwaway redis-server (Debian `redis-server`) on 127.0.0.1 and a port of `TestPorts`: no
/// persistence, no protected mode, killed by `stop()` / deinit. `extra` adds configuration
/// arguments (`["--replicaof", "127.0.0.1", "6380"]`). Its working directory is a fresh temporary
/// one: a replica writes the RDB it receives there even without `save`, and a server started later
/// in the same directory would load it.
public final class RedisServer {
    public let process: PeerProcess
    public let port: Int
    public let host: String
    /// The server's own directory (`--dir`), removed by `stop()`.
    public let directory: String

    /// Starts a server on a fresh port, or on `port` (a restart on the port a killed server had).
    public init(host: String = TestPorts.loopback, port fixedPort: Int? = nil, extra: [String] = [],
                executable: String = "redis-server") throws {
        var lastError = ""
        let directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("starling-redis-\(getpid())-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        for _ in 0..<(fixedPort == nil ? 4 : 1) {
            let port = try fixedPort ?? TestPorts.next()
            let args = [executable, "--port", String(port), "--bind", host, "--save", "", "--appendonly", "no",
                        "--protected-mode", "no", "--daemonize", "no", "--logfile", "", "--dir", directory] + extra
            let p = try PeerProcess(args, package: "redis-server", readFirstLine: false)
            let up = try TestPorts.wait(timeout: .seconds(20)) {
                !p.isRunning || TestPorts.listensTCP(port, pid: p.pid, ip: host)
            }
            if up && p.isRunning {
                self.process = p
                self.port = port
                self.host = host
                self.directory = directory
                return
            }
            lastError = "\(executable) on \(host):\(port) did not start: \(p.stderr)"
            p.stop()
        }
        try? FileManager.default.removeItem(atPath: directory)
        throw HelperFailure(lastError)
    }

    /// `redis://host:port/db`.
    public func url(db: Int = 0) -> String { "redis://\(host):\(port)/\(db)" }

    public var isRunning: Bool { process.isRunning }

    public func stop() {
        process.stop()
        try? FileManager.default.removeItem(atPath: directory)
    }

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

    deinit { stop() }
}

/// A throwaway redis-sentinel (Debian `redis-sentinel`) on 127.0.0.1 watching `master` at
/// 127.0.0.1:`masterPort` with quorum `quorum`; quick failure detection (down after `downAfterMs`).
/// Its configuration file (sentinel rewrites it) lives in `directory`.
public final class RedisSentinel {
    public let process: PeerProcess
    public let port: Int

    public init(master: String, masterPort: Int, quorum: Int = 2, downAfterMs: Int = 1000, directory: String) throws {
        var lastError = ""
        for _ in 0..<4 {
            let port = try TestPorts.next()
            let conf = "\(directory)/sentinel-\(port).conf"
            try """
                port \(port)
                bind 127.0.0.1
                protected-mode no
                daemonize no
                logfile ""
                dir \(directory)
                sentinel monitor \(master) 127.0.0.1 \(masterPort) \(quorum)
                sentinel down-after-milliseconds \(master) \(downAfterMs)
                sentinel failover-timeout \(master) 10000
                sentinel parallel-syncs \(master) 1

                """.write(toFile: conf, atomically: true, encoding: .utf8)
            let p = try PeerProcess(["redis-sentinel", conf], package: "redis-sentinel", readFirstLine: false)
            let up = try TestPorts.wait(timeout: .seconds(20)) { !p.isRunning || TestPorts.listensTCP(port, pid: p.pid) }
            if up && p.isRunning {
                process = p
                self.port = port
                return
            }
            lastError = "redis-sentinel on 127.0.0.1:\(port) did not start: \(p.stderr)"
            p.stop()
        }
        throw HelperFailure(lastError)
    }

    public func stop() { process.stop() }
    deinit { process.stop() }
}
