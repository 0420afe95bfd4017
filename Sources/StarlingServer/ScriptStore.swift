import Synchronization
public import StarlingLua

/// The script version every worker should run. The watcher publishes a validated version; workers
/// compare the generation (one atomic load per message) and switch between two messages.
public final class ScriptStore: Sendable {
    public struct Published: Sendable {
        public let generation: Int
        public let source: ScriptSource
        public let version: ScriptVersion
        public let files: [String]
    }

    private let current: Mutex<Published>
    private let gen: Atomic<Int>
    /// Workers running the current generation.
    let workersOnCurrent = Atomic<Int>(0)

    init(_ first: Published) {
        current = Mutex(first)
        gen = Atomic(first.generation)
    }

    /// The generation workers should run (cheap).
    @inline(__always) public var generation: Int { gen.load(ordering: .acquiring) }

    public var published: Published { current.withLock { $0 } }

    func publish(source: ScriptSource, version: ScriptVersion, files: [String]) -> Published {
        let p = current.withLock { cur -> Published in
            let next = Published(generation: cur.generation + 1, source: source, version: version, files: files)
            cur = next
            return next
        }
        workersOnCurrent.store(0, ordering: .relaxed)
        gen.store(p.generation, ordering: .releasing)
        return p
    }
}
