#if canImport(Glibc)
import Glibc
#endif
import CStarlingSystem
import Synchronization

/// A joinable POSIX thread running a `@Sendable` closure: the worker-thread primitive (one
/// `lua_State` and one `UDPBatchReceiver` per thread, created inside the body).
public final class PosixThread: Sendable {
    private let id: pthread_t
    private let joined = Atomic<Bool>(false)

    private final class Start: Sendable {
        let name: String
        let body: @Sendable () -> Void
        init(name: String, body: @escaping @Sendable () -> Void) {
            self.name = name
            self.body = body
        }
    }

    /// Starts a thread named `name` (the first 15 bytes are visible in `top -H`/`ps`).
    public init(name: String, _ body: @escaping @Sendable () -> Void) throws(TransportError) {
        let start = Unmanaged.passRetained(Start(name: name, body: body)).toOpaque()
        var tid = pthread_t()
        let rc = pthread_create(&tid, nil, { arg in
            let s = Unmanaged<Start>.fromOpaque(arg!).takeRetainedValue()
            _ = s.name.withCString { st_set_thread_name($0) }
            s.body()
            return nil
        }, start)
        if rc != 0 {
            Unmanaged<Start>.fromOpaque(start).release()
            throw TransportError("pthread_create", errno: rc)
        }
        id = tid
    }

    /// Waits for the thread to finish. Only the first call waits; later calls return at once.
    /// Must not be called from the thread itself.
    public func join() {
        guard !joined.exchange(true, ordering: .acquiringAndReleasing) else { return }
        pthread_join(id, nil)
    }

    deinit {
        if !joined.load(ordering: .acquiring) { pthread_detach(id) }
    }
}
