#if canImport(Glibc)
import Glibc
#endif
import Testing
import Synchronization
import CStarlingSystem
@testable import StarlingServer

/// Which workers of a UDP socket read it (`UDPCrew`): the rules, without threads.
@Suite("UDP crew: a socket's first worker reads, helpers join under load")
struct UDPCrewTests {
    @Test("only the first worker reads at the start")
    func leadReads() {
        let crew = UDPCrew(size: 3)
        let reading = crew.members.map { $0.reading.load(ordering: .relaxed) }
        #expect(reading == [true, false, false])
        #expect(UDPCrew(size: 0).members.count == 1)
    }

    @Test("a backlog calls one helper in, wakes it, and calls the next only once the first reads")
    func backlogCallsOneHelperAtATime() throws {
        let crew = UDPCrew(size: 3)
        let fds = [st_eventfd_create(), st_eventfd_create()]
        defer { fds.forEach { close($0) } }
        try #require(fds.allSatisfy { $0 >= 0 })
        crew.members[1].wakeFD.store(fds[0], ordering: .relaxed)
        crew.members[2].wakeFD.store(fds[1], ordering: .relaxed)
        func called(_ i: Int) -> Bool { crew.members[i].called.load(ordering: .relaxed) }
        func signalled(_ fd: Int32) -> Bool {
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let ready = poll(&p, 1, 0) == 1
            st_eventfd_drain(fd)
            return ready
        }

        crew.received(UDPCrew.joinBacklog - 1)  // a short queue: nobody is called
        #expect(!called(1))
        #expect(!signalled(fds[0]))

        crew.received(UDPCrew.joinBacklog)
        #expect(called(1))
        #expect(signalled(fds[0]))
        crew.received(32)  // helper 1 is called but not reading yet: nobody else is called
        #expect(!called(2))
        #expect(!signalled(fds[0]) && !signalled(fds[1]))

        crew.members[1].called.store(false, ordering: .relaxed)
        crew.members[1].reading.store(true, ordering: .relaxed)
        crew.received(32)  // still a backlog with two readers: the third is called
        #expect(called(2))
        #expect(signalled(fds[1]))
    }

    @Test("stalled: every other reader busy longer than stallMilliseconds")
    func stall() {
        let crew = UDPCrew(size: 3)
        let ms = 1_000_000
        let now = 1_000 * ms
        #expect(!crew.othersStalled(besides: 1, now: now))  // the lead waits
        crew.members[0].busySince.store(now - 5 * ms, ordering: .relaxed)
        #expect(!crew.othersStalled(besides: 1, now: now))  // busy, not for long
        crew.members[0].busySince.store(now - (UDPCrew.stallMilliseconds + 1) * ms, ordering: .relaxed)
        #expect(crew.othersStalled(besides: 1, now: now))
        #expect(crew.othersStalled(besides: 2, now: now))
        #expect(!crew.othersStalled(besides: 0, now: now))  // no reader besides the lead

        // A second reader that is not stuck: the socket is still being read.
        crew.members[1].reading.store(true, ordering: .relaxed)
        #expect(!crew.othersStalled(besides: 2, now: now))
        crew.members[1].busySince.store(now - 30 * ms, ordering: .relaxed)
        #expect(crew.othersStalled(besides: 2, now: now))
        // The stuck helper itself sees the lead stuck: it stays.
        #expect(crew.othersStalled(besides: 1, now: now))
    }
}

extension UDPCrewTests {
    @Test("the next helper is the first that does not read; only it polls for stalls")
    func nextToHelp() {
        let crew = UDPCrew(size: 4)
        #expect((0..<4).map(crew.isNextToHelp) == [false, true, false, false])
        crew.members[1].reading.store(true, ordering: .relaxed)
        #expect((0..<4).map(crew.isNextToHelp) == [false, true, true, false])
        crew.members[2].reading.store(true, ordering: .relaxed)
        #expect(crew.isNextToHelp(3))
        crew.members[1].reading.store(false, ordering: .relaxed)
        #expect((0..<4).map(crew.isNextToHelp) == [false, true, false, false])
    }
}
