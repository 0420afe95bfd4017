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

    /// A wait set on `shared` (a socket other threads wait on too) and `own` (this thread's eventfd);
    /// either may be -1.
    public init(shared: Int32, own: Int32) throws(TransportError) {
        let fd = st_waitset_create(shared, own)
        guard fd >= 0 else { throw TransportError("epoll_create1/epoll_ctl", errno: -fd) }
        epollFD = fd
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
