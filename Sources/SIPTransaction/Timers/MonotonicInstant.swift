#if canImport(Glibc)
import Glibc
import SwiftOverlayShims  // where Glibc's timespec fields are declared (MemberImportVisibility)
#elseif canImport(Darwin)
import Darwin
#endif

/// An instant a `TimingWheel` places on its ticks: its distance from the wheel's origin in integer
/// nanoseconds. Any instant measured in `Duration` conforms with no code (the default converts the
/// `Duration`, 128-bit arithmetic: a few hundred instructions); `MonotonicInstant` subtracts two integers.
public protocol TimerInstant: InstantProtocol where Duration == Swift.Duration {
    /// The nanoseconds from `origin` to this instant (negative if it is earlier).
    func nanoseconds(since origin: Self) -> Int64
}

extension TimerInstant {
    @inlinable public func nanoseconds(since origin: Self) -> Int64 { origin.duration(to: self).nanosecondCount }
}

extension ContinuousClock.Instant: TimerInstant {}
extension SuspendingClock.Instant: TimerInstant {}

extension Duration {
    /// The duration in whole nanoseconds (truncated toward zero; wraps beyond ±292 years).
    @inlinable public var nanosecondCount: Int64 {
        Int64(truncatingIfNeeded: attoseconds / 1_000_000_000)
    }

    /// `n` nanoseconds: one 64x64-bit multiplication (`.nanoseconds(_:)` runs the standard library's
    /// overflow-checked 128-bit software multiply, ~200 instructions).
    @inlinable public init(nanosecondCount n: Int64) {
        self.init(attoseconds: Int128(n) &* 1_000_000_000)
    }
}

/// An instant of the system's monotonic clock (`CLOCK_MONOTONIC`) as integer nanoseconds: what the
/// transaction timers run on. Reading it, moving it and comparing two are integer operations
/// (`ContinuousClock.Instant` keeps a 128-bit `Duration`: ~1,000 instructions per timer started).
public struct MonotonicInstant: TimerInstant, Comparable, Hashable, Sendable, CustomStringConvertible {
    /// Nanoseconds since an unspecified start (the system's boot).
    public var nanoseconds: Int64

    @inlinable public init(nanoseconds: Int64) { self.nanoseconds = nanoseconds }

    /// The clock now (a vDSO call, no system call).
    public static var now: MonotonicInstant {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return MonotonicInstant(nanoseconds: Int64(ts.tv_sec) &* 1_000_000_000 &+ Int64(ts.tv_nsec))
    }

    @inlinable public func advanced(by d: Duration) -> MonotonicInstant {
        MonotonicInstant(nanoseconds: nanoseconds &+ d.nanosecondCount)
    }

    @inlinable public func advanced(byNanoseconds n: Int64) -> MonotonicInstant {
        MonotonicInstant(nanoseconds: nanoseconds &+ n)
    }

    @inlinable public func duration(to other: MonotonicInstant) -> Duration {
        Duration(attoseconds: Int128(other.nanoseconds &- nanoseconds) * 1_000_000_000)
    }

    @inlinable public func nanoseconds(since origin: MonotonicInstant) -> Int64 { nanoseconds &- origin.nanoseconds }

    @inlinable public static func < (a: MonotonicInstant, b: MonotonicInstant) -> Bool { a.nanoseconds < b.nanoseconds }

    public var description: String { "\(nanoseconds) ns" }
}
