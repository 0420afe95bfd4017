import Synchronization
import SIPTransport
#if canImport(Glibc)
import Glibc
#endif

/// sd_notify(3) without libsystemd: datagrams on the AF_UNIX socket systemd names in `NOTIFY_SOCKET`
/// (a path, or `@name` for the abstract namespace). With `Type=notify` systemd waits for `READY=1`;
/// with `WatchdogSec=` it sets `WATCHDOG_USEC` and expects `WATCHDOG=1` more often than that.
/// Without `NOTIFY_SOCKET` (started by hand, in a container) every call does nothing.
public final class SystemdNotifier: Sendable {
    /// The socket address systemd gave, nil when not started by systemd with notify access.
    public let socketPath: String?
    /// The watchdog interval systemd expects pings within (`WATCHDOG_USEC`), nil when off or meant
    /// for another process (`WATCHDOG_PID`).
    public let watchdogInterval: Duration?
    private let fd: Int32
    private let watchdogStop = Atomic<Bool>(false)
    private let watchdogThread = Mutex<PosixThread?>(nil)

    /// Reads `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID` from `environment`.
    public init(environment: [String: String]) {
        let path = environment["NOTIFY_SOCKET"].flatMap { $0.isEmpty ? nil : $0 }
        socketPath = path
        if let usec = environment["WATCHDOG_USEC"].flatMap({ Int($0) }), usec > 0,
           environment["WATCHDOG_PID"].flatMap({ Int32($0) }).map({ $0 == getpid() }) ?? true {
            watchdogInterval = .microseconds(usec)
        } else {
            watchdogInterval = nil
        }
        fd = path == nil ? -1 : socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    }

    deinit {
        stopWatchdog()
        if fd >= 0 { close(fd) }
    }

    /// True when there is a socket to notify.
    public var isEnabled: Bool { fd >= 0 }

    /// Sends one notification ("READY=1", "STATUS=...", several separated by newlines). False when
    /// not enabled or the datagram could not be sent (systemd gone): never fatal.
    @discardableResult
    public func notify(_ state: String) -> Bool {
        guard fd >= 0, let path = socketPath else { return false }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        var bytes = Array(path.utf8)
        let abstract = bytes.first == UInt8(ascii: "@")
        if abstract { bytes[0] = 0 }
        let capacity = MemoryLayout.size(ofValue: addr.sun_path)
        guard bytes.count < capacity else { return false }
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            for (i, b) in bytes.enumerated() { raw[i] = b }
        }
        // An abstract name's length is exact (no terminating NUL); a path includes its NUL.
        let length = socklen_t(MemoryLayout<sa_family_t>.size + bytes.count + (abstract ? 0 : 1))
        var message = Array(state.utf8)
        let sent = message.withUnsafeMutableBytes { buf in
            withUnsafePointer(to: &addr) { p in
                p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                    sendto(fd, buf.baseAddress, buf.count, Int32(MSG_NOSIGNAL), sa, length)
                }
            }
        }
        return sent == message.count
    }

    /// READY=1 with a status line and the main pid.
    public func ready(status: String) {
        notify("READY=1\nSTATUS=\(status)\nMAINPID=\(getpid())")
    }

    /// RELOADING=1 (with the CLOCK_MONOTONIC time systemd's notify-reload wants).
    public func reloading() {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        let usec = Int(ts.tv_sec) * 1_000_000 + Int(ts.tv_nsec) / 1000
        notify("RELOADING=1\nMONOTONIC_USEC=\(usec)")
    }

    /// STOPPING=1.
    public func stopping() { notify("STOPPING=1") }

    /// Starts a thread that sends WATCHDOG=1 every half `watchdogInterval` while `alive()` is true
    /// (a router whose housekeeping stalled stops pinging, and systemd restarts it). Does nothing
    /// without a watchdog interval.
    public func startWatchdog(alive: @escaping @Sendable () -> Bool) {
        guard isEnabled, let interval = watchdogInterval else { return }
        let half = interval / 2
        let stepMicros = max(10_000, min(100_000, Int(half.components.seconds) * 1_000_000 + Int(half.components.attoseconds / 1_000_000_000_000)))
        let thread = try? PosixThread(name: "sd-watchdog") { [self] in
            let me = self
            var elapsed = Duration.zero
            me.notify("WATCHDOG=1")
            while !me.watchdogStop.load(ordering: .relaxed) {
                usleep(UInt32(stepMicros))
                elapsed += .microseconds(stepMicros)
                if elapsed >= half {
                    elapsed = .zero
                    if alive() { me.notify("WATCHDOG=1") }
                }
            }
        }
        watchdogThread.withLock { $0 = thread }
    }

    /// Stops the watchdog thread (joins it).
    public func stopWatchdog() {
        watchdogStop.store(true, ordering: .relaxed)
        let t = watchdogThread.withLock { t -> PosixThread? in let x = t; t = nil; return x }
        t?.join()
    }
}

