import Foundation
import StarlingTestSupport

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A child process (Starling, Kamailio, SIPp) started with posix_spawn, with
/// stdout and stderr appended to a log file.
///
/// Not Foundation's `Process`: it spawns from whatever thread the test runs on
/// and the child inherits that thread's blocked signals. Kamailio and SIPp
/// started that way ignore SIGTERM, and a SIGKILLed Kamailio leaves its
/// workers orphaned. Here the child gets an empty signal mask, default signal
/// dispositions and its own process group, and `stop()` signals the whole
/// group (Kamailio's workers included).
final class ServerProcess: @unchecked Sendable {
    let name: String
    let logFile: URL
    /// The child's pid, also its process group id.
    let pid: pid_t
    private let lock = NSLock()
    private var exitStatus: Int32?
    private var stopped = false

    /// Starts `executable` with `arguments`; output is appended to `logFile`.
    /// With a `namespace` it runs through `ip netns exec NAME` (which execs, so
    /// `pid` is still the program's own pid).
    init(name: String, executable: String, arguments: [String], logFile: URL, workingDirectory: URL? = nil,
         namespace: NetworkNamespace? = nil) throws {
        self.name = name
        self.logFile = logFile
        // `env -C DIR` changes directory and execs (glibc's addchdir_np is not
        // visible to Swift); `ip netns exec` execs too, so `pid` stays the program's.
        let command = workingDirectory.map { ["/usr/bin/env", "-C", $0.path] } ?? []
        let argv = namespace.map { $0.wrap(command + [executable] + arguments) } ?? command + [executable] + arguments

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, logFile.path, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attributes, &empty)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for signal in [SIGTERM, SIGINT, SIGHUP, SIGPIPE, SIGUSR1, SIGUSR2, SIGCHLD, SIGQUIT] {
            sigaddset(&defaults, signal)
        }
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setpgroup(&attributes, 0)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP))

        let cArguments: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
        defer { cArguments.forEach { free($0) } }
        var child: pid_t = 0
        let result = posix_spawn(&child, argv[0], &actions, &attributes, cArguments, environ)
        guard result == 0 else {
            throw HarnessError("cannot start \(name) (\(argv.joined(separator: " "))): \(String(cString: strerror(result)))")
        }
        pid = child
    }

    deinit { stop() }

    /// Whether the child is still running (reaps it when it has exited).
    var isRunning: Bool { poll() == nil }

    /// The exit status once it has exited (128+N when killed by signal N).
    var terminationStatus: Int32? { poll() }

    private func poll() -> Int32? {
        lock.lock()
        defer { lock.unlock() }
        if let exitStatus { return exitStatus }
        var status: Int32 = 0
        let reaped = waitpid(pid, &status, WNOHANG)
        if reaped == pid {
            exitStatus = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
        } else if reaped < 0 {
            exitStatus = -1  // not our child any more
        }
        return exitStatus
    }

    /// Waits until the child exits or `timeout` passes; returns its exit status, nil on timeout.
    @discardableResult
    func wait(timeout: Duration) -> Int32? {
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        while clock.now < deadline {
            if let status = poll() { return status }
            usleep(10_000)
        }
        return poll()
    }

    /// The log so far (stdout+stderr), for failure messages.
    var log: String { (try? String(contentsOf: logFile, encoding: .utf8)) ?? "" }

    /// Starling's last shutdown line ("stopped; received=... transactions=N ..."), or "".
    var shutdownLine: String {
        log.split(separator: "\n").last { $0.contains("stopped;") }.map(String.init) ?? ""
    }

    /// Lets the process run `delay` longer (Starling: until its transaction timers have run out),
    /// stops it (SIGTERM) and returns its shutdown line (see `shutdownLine`).
    func stop(after delay: Duration) -> String {
        Thread.sleep(forTimeInterval: Double(delay.components.seconds) + Double(delay.components.attoseconds) / 1e18)
        stop()
        return shutdownLine
    }

    /// The last `lines` lines of the log.
    func logTail(_ lines: Int = 30) -> String {
        log.split(separator: "\n", omittingEmptySubsequences: false).suffix(lines).joined(separator: "\n")
    }

    /// Waits until the process itself has udp `ip`:`port` (default 127.0.0.1) bound (its own socket,
    /// in its own network namespace: another process holding the port does not count), failing early
    /// with its log when it exits (a port taken meanwhile shows as "Address already in use" there).
    func waitUntilBound(udpPort port: Int, ip: String = Ports.loopback,
                        timeout: Duration = TestPorts.readinessTimeout) throws {
        try waitUntil("bound udp:\(ip):\(port)", timeout: timeout) { TestPorts.holdsUDP(port, pid: pid, ip: ip) }
    }

    /// Waits until the process itself listens on tcp `ip`:`port` (nil: any address, IPv4 or IPv6).
    func waitUntilListening(tcpPort port: Int, ip: String? = Ports.loopback,
                            timeout: Duration = TestPorts.readinessTimeout) throws {
        try waitUntil("listening on tcp:\(ip ?? "*"):\(port)", timeout: timeout) {
            TestPorts.listensTCP(port, pid: pid, ip: ip)
        }
    }

    /// Polls `ready` until it holds; throws with the log tail when the process exits first or
    /// `timeout` passes.
    func waitUntil(_ what: String, timeout: Duration = TestPorts.readinessTimeout, _ ready: () -> Bool) throws {
        let started = ContinuousClock.now
        let ok = try TestPorts.wait(timeout: timeout, failed: {
            poll().map { "\(name) exited with status \($0) before it \(what); log:\n\(logTail())" }
        }, until: ready)
        guard ok else {
            throw HarnessError("\(name) has not \(what) \(ContinuousClock.now - started) after it started; log:\n\(logTail())")
        }
    }

    /// Sends `signal` (SIGTERM by default) to the child's process group, waits
    /// up to `grace`, then SIGKILLs the group.
    func stop(signal: Int32 = SIGTERM, grace: Duration = .seconds(5)) {
        // Once stopped, the group id may be reused by an unrelated process: signal it only once.
        let first = lock.withLock {
            defer { stopped = true }
            return !stopped
        }
        guard first else { return }
        if poll() == nil {
            kill(-pid, signal)
            if wait(timeout: grace) == nil {
                kill(-pid, SIGKILL)
                _ = wait(timeout: .seconds(5))
            }
        }
        // Workers that outlived their parent are still in the group.
        kill(-pid, SIGKILL)
    }
}

/// The result of `Command.run`.
struct CommandResult: Sendable {
    let status: Int32
    let output: String
}

enum Command {
    /// Runs `executable arguments` (inside `namespace` if given), waits at most
    /// `timeout`, returns its exit status and output.
    static func run(_ executable: String, _ arguments: [String], timeout: Duration = .seconds(120),
                    workingDirectory: URL? = nil, namespace: NetworkNamespace? = nil) throws -> CommandResult {
        let log = FileManager.default.temporaryDirectory.appendingPathComponent("starling-cmd-\(UUID().uuidString).log")
        defer { try? FileManager.default.removeItem(at: log) }
        let child = try ServerProcess(name: URL(fileURLWithPath: executable).lastPathComponent, executable: executable,
                                      arguments: arguments, logFile: log, workingDirectory: workingDirectory,
                                      namespace: namespace)
        guard let status = child.wait(timeout: timeout) else {
            child.stop(signal: SIGKILL)
            throw HarnessError("\(executable) \(arguments.joined(separator: " ")) did not finish within \(timeout); output:\n\(child.logTail())")
        }
        return CommandResult(status: status, output: child.log)
    }
}
