// Shared by the test targets that start helper processes (one allocator per test process).
public import Foundation

#if canImport(Glibc)
public import Glibc
#elseif canImport(Musl)
public import Musl
#endif

/// A helper process a test talks to (a Python server, dnsmasq), spawned with a clean signal mask (the
/// test runner blocks signals and children would inherit that), its stdin a pipe so a Python peer
/// exits when the test process goes away, its stderr kept in a file for failure messages. Killed on
/// `stop()` / deinit.
public final class PeerProcess {
    public let pid: pid_t
    private let stdinFD: Int32
    private let stderrPath: String
    private var stopped = false
    private var exitStatus: Int32?
    /// The first line the process printed on stdout (the port, for peers that bind port 0 and say
    /// which port they got), or "" when not asked for.
    public let firstLine: String

    /// Starts `args` (`args[0]` found on PATH; `package` names what to install when it is missing).
    /// With `readFirstLine`, waits up to `timeout` for the first line of stdout.
    public init(_ args: [String], package: String, readFirstLine: Bool,
         timeout: Duration = TestPorts.readinessTimeout) throws {
        var toChild: [Int32] = [0, 0], fromChild: [Int32] = [0, 0]
        guard pipe(&toChild) == 0 else { throw HelperFailure("pipe: \(String(cString: strerror(errno)))") }
        guard pipe(&fromChild) == 0 else {
            close(toChild[0])
            close(toChild[1])
            throw HelperFailure("pipe: \(String(cString: strerror(errno)))")
        }
        let stderrPath = FileManager.default.temporaryDirectory
            .appendingPathComponent("starling-peer-\(getpid())-\(UUID().uuidString.prefix(8)).stderr").path
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, toChild[0], 0)
        if readFirstLine {
            posix_spawn_file_actions_adddup2(&actions, fromChild[1], 1)
        } else {
            posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        }
        posix_spawn_file_actions_addopen(&actions, 2, stderrPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_addclose(&actions, toChild[1])
        posix_spawn_file_actions_addclose(&actions, fromChild[0])
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attr, &empty)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        sigaddset(&defaults, SIGTERM)
        sigaddset(&defaults, SIGINT)
        sigaddset(&defaults, SIGPIPE)
        posix_spawnattr_setsigdefault(&attr, &defaults)
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        let argv: [UnsafeMutablePointer<CChar>?] = args.map { strdup($0) } + [nil]
        defer { for a in argv { free(a) } }
        var child: pid_t = 0
        let rc = posix_spawnp(&child, args[0], &actions, &attr, argv, environ)
        close(toChild[0])
        close(fromChild[1])
        guard rc == 0 else {
            close(toChild[1])
            close(fromChild[0])
            try? FileManager.default.removeItem(atPath: stderrPath)
            throw HelperFailure("cannot start \(args[0]): \(String(cString: strerror(rc))) "
                                + "(install the Debian package \(package): scripts/install-deps.sh)")
        }
        pid = child
        stdinFD = toChild[1]
        self.stderrPath = stderrPath
        defer { close(fromChild[0]) }
        guard readFirstLine else {
            firstLine = ""
            return
        }
        // The first line, or EOF (the process exited), or the deadline.
        var line: [UInt8] = []
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        var byte: UInt8 = 0
        reading: while clock.now < deadline {
            var pfd = pollfd(fd: fromChild[0], events: Int16(POLLIN), revents: 0)
            guard poll(&pfd, 1, 100) > 0 else { continue }
            while true {
                let n = read(fromChild[0], &byte, 1)
                if n == 1 && byte != UInt8(ascii: "\n") { line.append(byte); continue }
                if n < 0 && errno == EINTR { continue }
                if n == 1 || n == 0 { break reading }
                break
            }
        }
        firstLine = String(decoding: line, as: UTF8.self)
        if firstLine.isEmpty {
            stop()
            throw HelperFailure("\(args[0]) printed nothing on stdout within \(timeout) "
                                + "(exit status \(exitStatus.map(String.init) ?? "none")); stderr:\n\(stderr)")
        }
    }

    /// What the process wrote on stderr so far (its last 3000 characters).
    public var stderr: String {
        String(((try? String(contentsOfFile: stderrPath, encoding: .utf8)) ?? "").suffix(3000))
    }

    /// True while the process runs (reaps it once it has exited).
    public var isRunning: Bool {
        if exitStatus != nil { return false }
        var status: Int32 = 0
        let reaped = waitpid(pid, &status, WNOHANG)
        if reaped == pid || reaped < 0 { exitStatus = reaped == pid ? status : -1 }
        return exitStatus == nil
    }

    public func stop() {
        guard !stopped else { return }
        stopped = true
        close(stdinFD)
        if isRunning {
            kill(pid, SIGKILL)
            var status: Int32 = 0
            while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
            exitStatus = status
        }
        try? FileManager.default.removeItem(atPath: stderrPath)
    }

    deinit { stop() }
}
