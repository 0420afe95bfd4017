import Testing
@testable import SIPTransaction

/// The instant `d` after the wheels' origin (both suites below).
private func at(_ d: Duration) -> MockInstant { MockInstant(offset: d) }

@Suite("TimerWheel")
struct TimerWheelTests {
    typealias Wheel = TimerWheel<String, MockInstant>

    @Test("timers fire at their tick, never early, in deadline order")
    func basic() {
        var w = Wheel(origin: at(.zero), resolution: .ms(10))
        w.schedule("a", at: at(.ms(25)))
        w.schedule("b", at: at(.ms(10)))
        w.schedule("c", at: at(.ms(10)))
        #expect(w.count == 3)
        #expect(w.advance(to: at(.ms(9))) == [])
        #expect(w.advance(to: at(.ms(10))) == ["b", "c"])
        #expect(w.advance(to: at(.ms(29))) == [])  // 25 ms rounds up to the 30 ms tick
        #expect(w.deadline(of: "a") == at(.ms(30)))
        #expect(w.advance(to: at(.ms(30))) == ["a"])
        #expect(w.isEmpty)
    }

    @Test("several ticks crossed at once come out in deadline order")
    func ordering() {
        var w = Wheel(origin: at(.zero), resolution: .ms(10))
        w.schedule("late", at: at(.ms(90)))
        w.schedule("early", at: at(.ms(20)))
        w.schedule("middle", at: at(.ms(50)))
        #expect(w.advance(to: at(.ms(100))) == ["early", "middle", "late"])
    }

    @Test("schedule again moves a timer; cancel removes it; relative scheduling uses the last advance")
    func rescheduleAndCancel() {
        var w = Wheel(origin: at(.zero), resolution: .ms(10))
        w.schedule("x", at: at(.ms(50)))
        w.schedule("x", at: at(.ms(200)))
        #expect(w.count == 1)
        #expect(w.advance(to: at(.ms(100))) == [])
        #expect(w.cancel("x") == true)
        #expect(w.cancel("x") == false)
        #expect(!w.contains("x"))
        w.schedule("y", after: .ms(40))  // now is 100 ms
        #expect(w.deadline(of: "y") == at(.ms(140)))
        #expect(w.advance(to: at(.ms(139))) == [])
        #expect(w.advance(to: at(.ms(140))) == ["y"])
        #expect(w.advance(to: at(.s(10))) == [])
    }

    @Test("a deadline in the past fires at the next tick; time never goes back")
    func pastDeadline() {
        var w = Wheel(origin: at(.zero), resolution: .ms(10))
        #expect(w.advance(to: at(.ms(100))) == [])
        w.schedule("p", at: at(.ms(20)))
        #expect(w.advance(to: at(.ms(105))) == [])
        #expect(w.advance(to: at(.ms(50))) == [])
        #expect(w.advance(to: at(.ms(110))) == ["p"])
    }

    @Test("timers more than one revolution ahead wait for their round")
    func rounds() {
        var w = Wheel(origin: at(.zero), resolution: .ms(10), slots: 8)  // a revolution is 80 ms
        w.schedule("far", at: at(.ms(250)))
        w.schedule("near", at: at(.ms(10)))
        var fired: [(Duration, String)] = []
        var t = Duration.zero
        while t < .ms(400) {
            t += .ms(10)
            for k in w.advance(to: at(t)) { fired.append((t, k)) }
        }
        #expect(fired.map(\.0) == [.ms(10), .ms(250)])
        #expect(fired.map(\.1) == ["near", "far"])
    }

    @Test("a jump of many revolutions sweeps once and still orders by deadline")
    func jump() {
        var w = Wheel(origin: at(.zero), resolution: .ms(10), slots: 8)
        w.schedule("c", at: at(.s(3)))
        w.schedule("a", at: at(.ms(15)))
        w.schedule("b", at: at(.s(2)))
        w.schedule("later", at: at(.s(100)))
        #expect(w.advance(to: at(.s(60))) == ["a", "b", "c"])
        #expect(w.count == 1)
        #expect(w.advance(to: at(.s(99))) == [])
        #expect(w.advance(to: at(.s(100))) == ["later"])
    }

    @Test("expired keys can be scheduled again while being handled (a retransmission timer)")
    func rescheduleFromExpiry() {
        var w = Wheel(origin: at(.zero), resolution: .ms(10))
        w.schedule("A", at: at(.ms(500)))
        var fires: [Duration] = []
        var interval = Duration.ms(500)
        var t = Duration.zero
        while t < .s(8) {
            t += .ms(10)
            for k in w.advance(to: at(t)) {
                fires.append(t)
                interval *= 2
                w.schedule(k, at: at(t + interval))
            }
        }
        #expect(fires == [.ms(500), .ms(1500), .ms(3500), .ms(7500)])
    }

    @Test("works with ContinuousClock instants")
    func continuousClock() {
        let start = ContinuousClock.now
        var w = TimerWheel<Int, ContinuousClock.Instant>(origin: start, resolution: .ms(1))
        w.schedule(1, at: start + .ms(5))
        #expect(w.advance(to: start + .ms(4)) == [])
        #expect(w.advance(to: start + .ms(5)) == [1])
    }

    @Test("100k timers, a third cancelled, a tenth moved: each fires once, within one tick after its deadline")
    func hundredThousand() {
        var rng = SeededGenerator(seed: 0x5EED)
        let n = 100_000
        var w = TimerWheel<Int, MockInstant>(origin: at(.zero), resolution: .ms(10))
        var deadlines = [Duration](repeating: .zero, count: n)
        for k in 0..<n {
            deadlines[k] = .ms(Int.random(in: 1...60_000, using: &rng))
            w.schedule(k, at: at(deadlines[k]))
        }
        #expect(w.count == n)
        var cancelled = Set<Int>()
        for k in stride(from: 0, to: n, by: 3) {
            #expect(w.cancel(k) == true)
            cancelled.insert(k)
        }
        for k in stride(from: 1, to: n, by: 10) where !cancelled.contains(k) {
            deadlines[k] = .ms(Int.random(in: 1...90_000, using: &rng))
            w.schedule(k, at: at(deadlines[k]))
        }
        #expect(w.count == n - cancelled.count)
        var firedAt = [Duration?](repeating: nil, count: n)
        var firedTwice = 0
        var t = Duration.zero
        while t < .s(91) {
            t += .ms(10)
            for k in w.advance(to: at(t)) {
                if firedAt[k] != nil { firedTwice += 1 }
                firedAt[k] = t
            }
        }
        #expect(firedTwice == 0)
        #expect(w.isEmpty)
        var early = 0, late = 0, missing = 0, cancelledFired = 0
        for k in 0..<n {
            if cancelled.contains(k) {
                if firedAt[k] != nil { cancelledFired += 1 }
                continue
            }
            guard let f = firedAt[k] else { missing += 1; continue }
            if f < deadlines[k] { early += 1 }
            if f >= deadlines[k] + .ms(10) { late += 1 }
        }
        #expect(early == 0)
        #expect(late == 0)
        #expect(missing == 0)
        #expect(cancelledFired == 0)
        // Slots are reused: the node pool did not grow past the peak.
        for k in 0..<1000 { w.schedule(k, after: .ms(100)) }
        #expect(w.count == 1000)
        w.removeAll()
        #expect(w.isEmpty)
    }
}

@Suite("TimingWheel handles")
struct TimingWheelHandleTests {
    typealias Wheel = TimingWheel<String, MockInstant>

    @Test("a handle moves and cancels its timer; it is stale once fired or cancelled")
    func handles() {
        var w = Wheel(origin: at(.zero), resolution: .ms(10))
        let a = w.schedule("a", at: at(.ms(50)))
        let b = w.schedule("b", at: at(.ms(20)))
        #expect(w.count == 2)
        // Moving keeps the handle and the payload.
        let moved = w.schedule("ignored", at: at(.ms(100)), replacing: a)
        #expect(moved == a)
        #expect(w.count == 2)
        #expect(w.deadline(of: a) == at(.ms(100)))
        #expect(w.advance(to: at(.ms(50))) == ["b"])
        #expect(!w.contains(b))
        #expect(w.cancel(b) == false)  // fired: stale
        #expect(w.cancel(a) == true)
        #expect(w.cancel(a) == false)
        #expect(w.isEmpty)
        #expect(w.advance(to: at(.ms(200))) == [])
    }

    @Test("a stale handle never touches the timer that reuses its node")
    func reuse() {
        var w = Wheel(origin: at(.zero), resolution: .ms(10))
        let old = w.schedule("old", at: at(.ms(10)))
        #expect(w.cancel(old) == true)
        let new = w.schedule("new", at: at(.ms(30)))
        #expect(new.index == old.index)  // the freed node was reused
        #expect(w.cancel(old) == false)
        #expect(w.deadline(of: old) == nil)
        // Scheduling with a stale handle creates a timer instead of moving the node's new one.
        let other = w.schedule("other", at: at(.ms(20)), replacing: old)
        #expect(other != new)
        #expect(w.count == 2)
        #expect(w.advance(to: at(.ms(40))) == ["other", "new"])
    }

    @Test("how long the owner may sleep: until the start of the next tick holding a timer, within a horizon")
    func nextTimer() {
        var w = Wheel(origin: at(.zero), resolution: .ms(10))
        #expect(w.nanosecondsToNextTimer(from: at(.zero), within: 20) == nil)
        _ = w.schedule("a", at: at(.ms(35)))  // rounded up to tick 4, which starts at 40 ms
        #expect(w.nanosecondsToNextTimer(from: at(.zero), within: 20) == 40_000_000)
        #expect(w.nanosecondsToNextTimer(from: at(.ms(3)), within: 20) == 37_000_000)
        #expect(w.nanosecondsToNextTimer(from: at(.zero), within: 3) == nil)
        _ = w.schedule("b", at: at(.ms(10)))
        #expect(w.nanosecondsToNextTimer(from: at(.zero), within: 20) == 10_000_000)
        #expect(w.advance(to: at(.ms(10))) == ["b"])
        #expect(w.nanosecondsToNextTimer(from: at(.ms(12)), within: 20) == 28_000_000)
        #expect(w.advance(to: at(.ms(39))) == [])
        #expect(w.advance(to: at(.ms(40))) == ["a"])
        #expect(w.nanosecondsToNextTimer(from: at(.ms(40)), within: 20) == nil)
    }

    @Test("removeAll leaves every handle stale and the wheel usable")
    func removeAll() {
        var w = Wheel(origin: at(.zero), resolution: .ms(10))
        let hs = (0..<5).map { w.schedule("t\($0)", at: at(.ms(10 * ($0 + 1)))) }
        w.removeAll()
        #expect(w.isEmpty)
        #expect(hs.allSatisfy { !w.contains($0) })
        let h = w.schedule("after", at: at(.ms(10)))
        #expect(w.advance(to: at(.ms(100))) == ["after"])
        #expect(!w.contains(h))
    }
}

@Suite("MonotonicInstant")
struct MonotonicInstantTests {
    @Test("integer nanoseconds: it moves, measures and orders as a Duration-based instant does")
    func arithmetic() {
        let a = MonotonicInstant(nanoseconds: 1_000)
        let b = a.advanced(by: .milliseconds(1500))
        #expect(b.nanoseconds == 1_500_001_000)
        #expect(a.duration(to: b) == .milliseconds(1500))
        #expect(b.nanoseconds(since: a) == 1_500_000_000)
        #expect(a < b && a.advanced(byNanoseconds: 1_500_000_000) == b)
        #expect(Duration.seconds(-3).nanosecondCount == -3_000_000_000)
        #expect((Duration.seconds(32) + .nanoseconds(7)).nanosecondCount == 32_000_000_007)
        let now = MonotonicInstant.now
        #expect(MonotonicInstant.now >= now)
    }

    @Test("a wheel on MonotonicInstant fires what one on a Duration-based instant fires, at the same ticks")
    func sameTicks() {
        var m = TimingWheel<String, MonotonicInstant>(origin: MonotonicInstant(nanoseconds: 5_000_000_001))
        var d = TimingWheel<String, MockInstant>(origin: at(.zero))
        let delays: [(String, Duration)] = [("a", .ms(25)), ("b", .ms(10)), ("c", .ms(500)), ("d", .seconds(32)),
                                            ("e", .nanoseconds(1)), ("f", .ms(41_000))]
        for (p, delay) in delays {
            _ = m.schedule(p, at: m.origin.advanced(by: delay))
            _ = d.schedule(p, at: d.origin.advanced(by: delay))
        }
        var fired: [String] = []
        for step in stride(from: 0, through: 45_000, by: 7) {
            let got = m.advance(to: m.origin.advanced(by: .ms(step)))
            #expect(got == d.advance(to: d.origin.advanced(by: .ms(step))))
            fired += got
        }
        #expect(fired == ["b", "e", "a", "c", "d", "f"])  // b and e share tick 1: scheduling order
    }
}
