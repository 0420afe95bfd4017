#if canImport(Glibc)
import Glibc
#endif
import Synchronization
import CStarlingSystem

/// The workers of one UDP socket, and which of them read it.
///
/// The first worker (the lead) always waits on the socket. The others (helpers) wait only on their
/// own descriptor, and start reading the socket when the readers fall behind:
/// - **backlog:** a reader's receive found at least `joinBacklog` datagrams queued: it calls one
///   helper in;
/// - **stall:** every reader has been busy for more than `stallMilliseconds` since it last waited (a
///   script blocked in a database or HTTP call): the next helper joins. It wakes to check every
///   `stallMilliseconds` (`isNextToHelp`); the helpers after it sleep until a timer is due or one
///   joins, so an idle server with many workers does not wake them all.
///
/// A helper stops reading when a receive finds at most `leaveBacklog` datagrams (the queue is
/// drained) and no other reader is stalled.
///
/// Why (issue 22): when every worker waited on the socket, a datagram woke whichever worker was idle,
/// so at loads one worker keeps up with, every worker ran cache-cold and each paid for its wake-ups.
/// One worker used 16-22% less CPU per stateful call than two on a 2-core box. The kernel wakes the
/// socket's exclusive waiters in the order they were added, so the lead (added first) gets the
/// datagrams whenever it is idle, and a helper that joined is woken only while the lead is busy.
///
/// All fields are atomics: nothing here takes a lock; a reader's cost per wake-up is one clock read and
/// two relaxed stores.
final class UDPCrew: Sendable {
    /// Datagrams one receive found queued that make its reader call a helper in.
    static let joinBacklog = 16
    /// A helper stops reading when a receive found at most this many.
    static let leaveBacklog = 1
    /// How long a reader may route one message before a helper joins, and how often a helper that is
    /// not reading checks for that.
    static let stallMilliseconds = 20

    /// Why a helper started reading.
    enum JoinReason: Int, CaseIterable {
        case backlog, stall
        var label: String { ["backlog", "stall"][rawValue] }
    }

    final class Member: Sendable {
        /// Whether this worker has the socket in its wait set.
        let reading: Atomic<Bool>
        /// A reader with a backlog asked this helper to read.
        let called = Atomic<Bool>(false)
        /// When the reader woke up to route what arrived (monotonic nanoseconds); 0 while it waits.
        let busySince = Atomic<Int>(0)
        /// The descriptor that wakes the worker (its eventfd); -1 until the worker set it.
        let wakeFD = Atomic<Int32>(-1)

        init(reading: Bool) { self.reading = Atomic(reading) }
    }

    let members: [Member]
    /// How many times helpers joined, by `JoinReason`.
    let joins: InlineArray<2, Atomic<Int>> = InlineArray { _ in Atomic<Int>(0) }

    init(size: Int) {
        members = (0..<max(size, 1)).map { Member(reading: $0 == 0) }
    }

    /// A reader's receive found `count` datagrams: with a backlog, one helper that is not reading is
    /// called in (the first one; one at a time: a reader that still sees a backlog calls the next).
    @inline(__always) func received(_ count: Int) {
        guard count >= Self.joinBacklog, members.count > 1 else { return }
        for m in members.dropFirst() where !m.reading.load(ordering: .relaxed) {
            if m.called.exchange(true, ordering: .acquiringAndReleasing) { return }  // already called, not yet in
            let fd = m.wakeFD.load(ordering: .relaxed)
            if fd >= 0 { _ = st_eventfd_signal(fd) }
            return
        }
    }

    /// Whether every reader other than `member` has been busy for longer than `stallMilliseconds` at
    /// `now` (false when there is no other reader).
    func othersStalled(besides member: Int, now: Int) -> Bool {
        let limit = Self.stallMilliseconds * 1_000_000
        var readers = 0
        for (i, m) in members.enumerated() where i != member && m.reading.load(ordering: .relaxed) {
            readers += 1
            let since = m.busySince.load(ordering: .relaxed)
            if since == 0 || now &- since <= limit { return false }
        }
        return readers > 0
    }

    /// Whether `member` is the helper to join next: every worker before it reads the socket.
    func isNextToHelp(_ member: Int) -> Bool {
        guard member > 0 else { return false }
        for m in members[..<member] where !m.reading.load(ordering: .relaxed) { return false }
        return true
    }

    /// A helper joined: the one after it (if any) becomes the next to help; its wait shortens on its
    /// next wake-up, which this brings forward.
    func joined(_ member: Int) {
        guard member + 1 < members.count else { return }
        let fd = members[member + 1].wakeFD.load(ordering: .relaxed)
        if fd >= 0 { _ = st_eventfd_signal(fd) }
    }

    /// Total helper joins by reason.
    func joinCounts() -> [(JoinReason, Int)] {
        JoinReason.allCases.map { ($0, joins[$0.rawValue].load(ordering: .relaxed)) }
    }
}
