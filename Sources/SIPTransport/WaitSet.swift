#if canImport(Glibc)
import Glibc
#endif
import CStarlingSystem

/// What one worker thread waits on: a socket it shares with the other workers and a descriptor of its
/// own (its eventfd), in one epoll set.
///
/// The shared socket is added with `EPOLLEXCLUSIVE`: a datagram wakes one idle worker. With `poll`
/// on the shared socket every datagram woke every idle worker, and all but one found nothing to
/// read (issue 22: the scheduler's share of a stateful call's CPU). Level-triggered, so datagrams a
/// busy worker left queued are seen on its next `wait`.
///
/// A worker that only helps with the shared socket under load (`UDPCrew` in StarlingServer) starts
/// without it (`watchingShared: false`) and adds or removes it with `watchShared(_:)`. The kernel wakes
/// the exclusive waiters in the order they were added, skipping those not waiting: the socket's first
/// waiter is woken whenever it is idle.
///
/// Owned by one thread (not Sendable).
public final class WaitSet {
    /// What became readable.
    public struct Ready: OptionSet, Sendable {
        public let rawValue: Int32
        public init(rawValue: Int32) { self.rawValue = rawValue }
        /// The shared socket.
        public static let shared = Ready(rawValue: 1)
        /// The thread's own descriptor.
        public static let own = Ready(rawValue: 2)
    }

    private let epollFD: Int32
    private let sharedFD: Int32
    /// Whether the shared socket is in the set.
    public private(set) var watchingShared: Bool

    /// A wait set on `shared` (a socket other threads wait on too) and `own` (this thread's eventfd);
    /// either may be -1. With `watchingShared` false the shared socket is left out until
    /// `watchShared(true)`.
    public init(shared: Int32, own: Int32, watchingShared: Bool = true) throws(TransportError) {
        let fd = st_waitset_create(watchingShared ? shared : -1, own)
        guard fd >= 0 else { throw TransportError("epoll_create1/epoll_ctl", errno: -fd) }
        epollFD = fd
        sharedFD = shared
        self.watchingShared = watchingShared && shared >= 0
    }

    /// Adds the shared socket to the set (it is then the last of its exclusive waiters) or removes it.
    public func watchShared(_ watch: Bool) throws(TransportError) {
        guard watch != watchingShared, sharedFD >= 0 else { return }
        let r = st_waitset_watch_shared(epollFD, sharedFD, watch ? 1 : 0)
        guard r == 0 else { throw TransportError(watch ? "epoll_ctl ADD" : "epoll_ctl DEL", errno: -r) }
        watchingShared = watch
    }

    deinit { close(epollFD) }

    /// Waits up to `milliseconds` (-1: indefinitely) for either descriptor to become readable. Empty
    /// on timeout or signal interruption.
    public func wait(milliseconds: Int32) throws(TransportError) -> Ready {
        let r = st_waitset_wait(epollFD, milliseconds)
        guard r >= 0 else { throw TransportError("epoll_wait", errno: -r) }
        return Ready(rawValue: r)
    }
}
