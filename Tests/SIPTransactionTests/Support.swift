@testable import SIPTransaction

/// An instant of `MockClock`: a duration since the clock's zero.
struct MockInstant: InstantProtocol, CustomStringConvertible {
    var offset: Duration
    func advanced(by d: Duration) -> MockInstant { MockInstant(offset: offset + d) }
    func duration(to other: MockInstant) -> Duration { other.offset - offset }
    static func < (a: MockInstant, b: MockInstant) -> Bool { a.offset < b.offset }
    var description: String { "t=\(offset)" }
}

/// Placed on a wheel's ticks through its `Duration` (the protocol's default).
extension MockInstant: TimerInstant {}

/// A clock that moves only when told to.
struct MockClock {
    var now = MockInstant(offset: .zero)
    mutating func advance(by d: Duration) { now = now.advanced(by: d) }
    mutating func advance(to offset: Duration) { now = MockInstant(offset: offset) }
}

/// SplitMix64: a seeded generator so that the large tests are reproducible.
struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Runs a machine against a mock clock and a timer wheel: timer actions go to the wheel, everything
/// else is recorded with the time it happened. Used to check whole retransmission schedules.
struct Harness {
    var clock = MockClock()
    var wheel: TimerWheel<TransactionTimer, MockInstant>
    var log: [(at: Duration, action: TransactionAction)] = []

    init(resolution: Duration = .milliseconds(10)) {
        wheel = TimerWheel(origin: clock.now, resolution: resolution)
    }

    /// Applies actions: timers to the wheel, the rest to the log.
    mutating func apply(_ actions: TransactionActions) {
        for a in actions {
            switch a {
            case .startTimer(let t, let d): wheel.schedule(t, at: clock.now.advanced(by: d))
            case .stopTimer(let t): wheel.cancel(t)
            case .terminate: wheel.removeAll(); log.append((clock.now.offset, a))
            default: log.append((clock.now.offset, a))
            }
        }
    }

    /// Advances the clock tick by tick until `end`, firing timers into `fire`.
    mutating func run(until end: Duration, _ fire: (TransactionTimer) -> TransactionActions) {
        while clock.now.offset < end {
            clock.advance(by: wheel.resolution)
            for t in wheel.advance(to: clock.now) { apply(fire(t)) }
        }
    }

    /// The times at which an action was logged.
    func times(of action: TransactionAction) -> [Duration] { log.filter { $0.action == action }.map(\.at) }
}

extension Duration {
    static func ms(_ v: Int) -> Duration { .milliseconds(v) }
    static func s(_ v: Int) -> Duration { .seconds(v) }
}
