#if canImport(Glibc)
import Glibc
#endif
import CStarlingSystem
import Foundation
import SIPTransport
import Synchronization

/// A failure to start watching: the path (or "inotify") and the errno text.
public struct ScriptWatcherError: Error, Sendable, Equatable, CustomStringConvertible {
    public var path: String
    public var errno: Int32
    public init(path: String, errno: Int32) {
        self.path = path
        self.errno = errno
    }
    public var description: String { "\(path): \(TransportError.text(forErrno: errno)) (errno \(errno))" }
}

/// Watches a set of files (the script and the Lua modules it requires) with inotify and calls
/// `onChange` with the set of paths that changed, once a burst of events has been quiet for
/// `quietPeriod` (editors write, rename and chmod in quick succession).
///
/// It watches the files' *directories* (`IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_DELETE |
/// IN_MOVED_FROM`, plus `IN_DELETE_SELF | IN_MOVE_SELF` for the directory), so both in-place writes
/// and save-by-rename / `mv new old` are seen, and a replaced file stays watched.
///
/// Runs on its own thread; the callback is called on that thread, one call at a time. `stop()` (or
/// deinit) ends it; after `stop()` returns, no callback runs.
public final class ScriptWatcher: Sendable {
    private let core: Core
    private let thread: PosixThread

    /// Starts watching `paths` (relative paths are taken from the current directory). Throws if
    /// inotify is unavailable or a directory cannot be watched (e.g. it does not exist).
    public init(paths: [String], quietPeriod: Duration = .milliseconds(100),
                onChange: @escaping @Sendable (Set<String>) -> Void) throws(ScriptWatcherError) {
        let core = try Core(quietPeriod: quietPeriod, onChange: onChange)
        do {
            try core.setPaths(paths)
        } catch {
            core.closeDescriptors()
            throw error
        }
        do {
            thread = try PosixThread(name: "script-watcher") { core.run() }
        } catch {
            core.closeDescriptors()
            throw ScriptWatcherError(path: "pthread_create", errno: error.errno)
        }
        self.core = core
    }

    deinit { stop() }

    /// The watched paths, as given.
    public var paths: Set<String> { core.state.withLock { Set($0.originals.values) } }

    /// Replaces the watched set (after a reload the required modules may differ). Directories no
    /// longer needed are unwatched. Events already pending for dropped paths are discarded.
    public func setPaths(_ paths: [String]) throws(ScriptWatcherError) {
        try core.setPaths(paths)
    }

    /// Stops the thread and waits for it (unless called from the callback itself). Idempotent.
    public func stop() {
        guard !core.stopping.exchange(true, ordering: .acquiringAndReleasing) else { return }
        _ = st_eventfd_signal(core.wakeFD)
        if core.threadID.load(ordering: .acquiring) != UInt(pthread_self()) {
            thread.join()
        }
    }
}

extension ScriptWatcher {
    /// What the thread and the public API share. Descriptors are immutable after init; the watch
    /// tables are behind the mutex; the pending set is owned by the watcher thread.
    fileprivate final class Core: Sendable {
        struct State {
            /// Normalised absolute path → path as the caller gave it.
            var originals: [String: String] = [:]
            /// Watch descriptor → directory.
            var directories: [Int32: String] = [:]
            /// Directory → watch descriptor.
            var watches: [String: Int32] = [:]
        }

        let inotifyFD: Int32
        let wakeFD: Int32
        let quietPeriod: Duration
        let onChange: @Sendable (Set<String>) -> Void
        let state = Mutex(State())
        let stopping = Atomic<Bool>(false)
        let threadID = Atomic<UInt>(0)

        static let directoryMask: UInt32 = UInt32(IN_CLOSE_WRITE) | UInt32(IN_MOVED_TO) | UInt32(IN_CREATE) | UInt32(IN_DELETE)
            | UInt32(IN_MOVED_FROM) | UInt32(IN_DELETE_SELF) | UInt32(IN_MOVE_SELF) | UInt32(IN_ONLYDIR)

        init(quietPeriod: Duration, onChange: @escaping @Sendable (Set<String>) -> Void) throws(ScriptWatcherError) {
            let fd = st_inotify_init()
            guard fd >= 0 else { throw ScriptWatcherError(path: "inotify", errno: -fd) }
            let wake = st_eventfd_create()
            guard wake >= 0 else {
                close(fd)
                throw ScriptWatcherError(path: "eventfd", errno: -wake)
            }
            inotifyFD = fd
            wakeFD = wake
            self.quietPeriod = quietPeriod
            self.onChange = onChange
        }

        func closeDescriptors() {
            close(inotifyFD)
            close(wakeFD)
        }

        static func normalise(_ path: String) -> String {
            URL(fileURLWithPath: path).standardizedFileURL.path
        }

        static func directory(of path: String) -> String {
            guard let slash = path.lastIndex(of: "/") else { return "." }
            return slash == path.startIndex ? "/" : String(path[..<slash])
        }

        func setPaths(_ paths: [String]) throws(ScriptWatcherError) {
            guard !stopping.load(ordering: .acquiring) else { return }
            var originals: [String: String] = [:]
            for p in paths { originals[Self.normalise(p)] = p }
            let wanted = Set(originals.keys.map(Self.directory(of:)))
            let fd = inotifyFD
            let result: ScriptWatcherError? = state.withLock { s in
                var added: [String: Int32] = [:]
                for dir in wanted.sorted() where s.watches[dir] == nil {
                    let wd = inotify_add_watch(fd, dir, Self.directoryMask)
                    if wd < 0 {
                        let e = Glibc.errno
                        for (_, w) in added { inotify_rm_watch(fd, w) }
                        return ScriptWatcherError(path: dir, errno: e)
                    }
                    added[dir] = wd
                }
                for (dir, wd) in s.watches where !wanted.contains(dir) {
                    inotify_rm_watch(fd, wd)
                    s.watches[dir] = nil
                    s.directories[wd] = nil
                }
                for (dir, wd) in added {
                    s.watches[dir] = wd
                    s.directories[wd] = dir
                }
                s.originals = originals
                return nil
            }
            if let result { throw result }
        }

        /// The watcher thread's loop.
        func run() {
            threadID.store(UInt(pthread_self()), ordering: .releasing)
            defer { closeDescriptors() }
            let clock = ContinuousClock()
            var pending: Set<String> = []
            var deadline: ContinuousClock.Instant? = nil
            let bufferSize = 64 * 1024
            let buffer = UnsafeMutableRawPointer.allocate(byteCount: bufferSize, alignment: 8)
            defer { buffer.deallocate() }
            var fds = [pollfd(fd: inotifyFD, events: Int16(POLLIN), revents: 0), pollfd(fd: wakeFD, events: Int16(POLLIN), revents: 0)]

            while !stopping.load(ordering: .acquiring) {
                var timeout: Int32 = -1
                if let d = deadline {
                    let left = clock.now.duration(to: d)
                    let (s, atto) = left.components
                    timeout = left <= .zero ? 0 : Int32(clamping: s * 1000 + (atto + 999_999_999_999_999) / 1_000_000_000_000_000)
                }
                fds[0].revents = 0
                fds[1].revents = 0
                let r = poll(&fds, 2, timeout)
                if stopping.load(ordering: .acquiring) { break }
                if r < 0 && Glibc.errno != EINTR { break }
                if fds[1].revents != 0 { st_eventfd_drain(wakeFD) }
                if fds[0].revents & Int16(POLLIN) != 0 {
                    let changed = readEvents(buffer, bufferSize)
                    if !changed.isEmpty {
                        // Every event for a watched file restarts the quiet period.
                        pending.formUnion(changed)
                        deadline = clock.now.advanced(by: quietPeriod)
                    }
                } else if fds[0].revents & Int16(POLLERR | POLLNVAL) != 0 {
                    break
                }
                if let d = deadline, clock.now >= d {
                    deadline = nil
                    // Report only paths still watched, as the caller named them.
                    let report: Set<String> = state.withLock { s in Set(pending.compactMap { s.originals[$0] }) }
                    pending.removeAll()
                    if !report.isEmpty && !stopping.load(ordering: .acquiring) { onChange(report) }
                }
            }
        }

        /// Reads all queued inotify events; returns the watched files they concern.
        private func readEvents(_ buffer: UnsafeMutableRawPointer, _ size: Int) -> Set<String> {
            var paths: Set<String> = []
            while true {
                let n = read(inotifyFD, buffer, size)
                if n <= 0 { break }
                state.withLock { s in
                    var off = 0
                    while off + 16 <= n {
                        let wd = buffer.loadUnaligned(fromByteOffset: off, as: Int32.self)
                        let mask = buffer.loadUnaligned(fromByteOffset: off + 4, as: UInt32.self)
                        let len = Int(buffer.loadUnaligned(fromByteOffset: off + 12, as: UInt32.self))
                        let nameStart = buffer.advanced(by: off + 16).assumingMemoryBound(to: UInt8.self)
                        off += 16 + len
                        if mask & UInt32(IN_Q_OVERFLOW) != 0 {
                            paths.formUnion(s.originals.keys)  // events were lost: report everything
                            continue
                        }
                        guard let dir = s.directories[wd] else { continue }
                        if mask & (UInt32(IN_DELETE_SELF) | UInt32(IN_MOVE_SELF) | UInt32(IN_IGNORED)) != 0 {
                            // The directory itself went away: its files changed.
                            for p in s.originals.keys where Self.directory(of: p) == dir { paths.insert(p) }
                            if mask & UInt32(IN_IGNORED) != 0 {
                                s.directories[wd] = nil
                                if s.watches[dir] == wd { s.watches[dir] = nil }
                            }
                            continue
                        }
                        guard len > 0 else { continue }
                        let nameLen = strnlen(UnsafeRawPointer(nameStart).assumingMemoryBound(to: CChar.self), len)
                        let name = String(decoding: UnsafeBufferPointer(start: nameStart, count: nameLen), as: UTF8.self)
                        let full = dir == "/" ? "/" + name : dir + "/" + name
                        if s.originals[full] != nil { paths.insert(full) }
                    }
                }
            }
            return paths
        }
    }
}
