import Testing
import Foundation
import StarlingServer
import StarlingTestSupport
#if canImport(Glibc)
import Glibc
#endif

/// sd_notify over a datagram socket the test binds (what systemd does for Type=notify services).
@Suite(.serialized) struct SystemdNotifierTests {
    @Test("READY, RELOADING and STOPPING reach a path socket and an abstract one")
    func notifies() throws {
        for abstract in [false, true] {
            let sock = try NotifySocket(abstract: abstract)
            let n = SystemdNotifier(environment: ["NOTIFY_SOCKET": sock.address])
            #expect(n.isEnabled && n.watchdogInterval == nil)
            n.ready(status: "routing x.lua")
            #expect(sock.receive() == "READY=1\nSTATUS=routing x.lua\nMAINPID=\(getpid())")
            n.reloading()
            let r = try #require(sock.receive())
            #expect(r.hasPrefix("RELOADING=1\nMONOTONIC_USEC="), "\(r)")
            #expect(Int(r.split(separator: "=").last ?? "") ?? 0 > 0)
            n.stopping()
            #expect(sock.receive() == "STOPPING=1")
        }
    }

    @Test("without NOTIFY_SOCKET nothing is sent and nothing fails")
    func disabled() {
        let n = SystemdNotifier(environment: [:])
        #expect(!n.isEnabled)
        #expect(n.notify("READY=1") == false)
        n.startWatchdog { true }
        n.stopWatchdog()
        // A socket that is gone: the send fails, quietly.
        let gone = SystemdNotifier(environment: ["NOTIFY_SOCKET": "/nonexistent/notify.sock"])
        #expect(gone.notify("READY=1") == false)
    }

    @Test("WATCHDOG_USEC starts pings at half the interval while alive; WATCHDOG_PID of another process turns it off")
    func watchdog() throws {
        let sock = try NotifySocket()
        let other = SystemdNotifier(environment: ["NOTIFY_SOCKET": sock.address, "WATCHDOG_USEC": "200000", "WATCHDOG_PID": "1"])
        #expect(other.watchdogInterval == nil)
        let n = SystemdNotifier(environment: ["NOTIFY_SOCKET": sock.address, "WATCHDOG_USEC": "200000",
                                              "WATCHDOG_PID": String(getpid())])
        #expect(n.watchdogInterval == .milliseconds(200))
        let alive = AliveFlag()
        n.startWatchdog { alive.value }
        // A ping at once, then every 100 ms.
        for _ in 0..<3 { #expect(sock.receive() == "WATCHDOG=1") }
        alive.value = false
        // Drain what was in flight, then no more pings while not alive.
        sock.setTimeout(.seconds(1))
        while sock.receive() != nil {}
        #expect(sock.receive() == nil)
        n.stopWatchdog()
    }
}

final class AliveFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var v = true
    var value: Bool {
        get { lock.lock(); defer { lock.unlock() }; return v }
        set { lock.lock(); v = newValue; lock.unlock() }
    }
}
