import Synchronization

/// pike's request counters per source IP, shared by all workers (sharded by address).
///
/// Each address counts its requests in the current and the previous sampling unit
/// (`sampling_time_unit` seconds). It turns "red" (flooding) when either unit, or their average,
/// goes over `reqs_density_per_unit`; it stays red while that holds and turns back when a later unit
/// is quiet; an address not seen for `remove_latency` seconds is forgotten. Kamailio keeps these
/// counters in a tree of address prefixes; Starling counts whole addresses only.
public final class PikeStore: Sendable {
    /// What a check found (`pike_check_req` codes: 1, -2, -1).
    public enum Verdict: Int, Sendable {
        case ok = 1
        /// The address just went over the limit.
        case blockedNow = -2
        /// The address was already over the limit.
        case blocked = -1
    }

    struct Node {
        var unit: Int
        var current: Int
        var previous: Int
        var red: Bool
        var lastSeen: Int
    }

    final class Shard: Sendable {
        let nodes = Mutex<[String: Node]>([:])
    }

    public let samplingTimeUnit: Int
    public let reqsDensityPerUnit: Int
    public let removeLatency: Int
    private let shards: [Shard]
    private let clock: ModuleClock

    public init(config: ModuleConfiguration, clock: ModuleClock) {
        samplingTimeUnit = config[PikeModule.samplingTimeUnit]
        reqsDensityPerUnit = config[PikeModule.reqsDensityPerUnit]
        removeLatency = config[PikeModule.removeLatency]
        self.clock = clock
        shards = (0..<64).map { _ in Shard() }
    }

    private func shard(_ ip: String) -> Shard {
        var h: UInt32 = 2166136261
        for b in ip.utf8 { h = (h ^ UInt32(b)) &* 16777619 }
        return shards[Int(h & 63)]
    }

    private func hot(_ n: Node) -> Bool {
        n.current > reqsDensityPerUnit || n.previous > reqsDensityPerUnit || (n.current + n.previous) / 2 > reqsDensityPerUnit
    }

    /// Counts one request from `ip` and says whether the address floods.
    public func check(_ ip: String) -> Verdict {
        let now = clock.unixSeconds
        let unit = now / samplingTimeUnit
        return shard(ip).nodes.withLock { nodes in
            var n = nodes[ip] ?? Node(unit: unit, current: 0, previous: 0, red: false, lastSeen: now)
            if now - n.lastSeen >= removeLatency {
                n = Node(unit: unit, current: 0, previous: 0, red: false, lastSeen: now)
            }
            if unit != n.unit {
                n.previous = unit == n.unit + 1 ? n.current : 0
                n.current = 0
                n.unit = unit
                // a quiet unit turns a red address back
                if n.red && !hot(n) { n.red = false }
            }
            n.current += 1
            n.lastSeen = now
            var verdict = Verdict.ok
            if n.red {
                verdict = .blocked
            } else if hot(n) {
                n.red = true
                verdict = .blockedNow
            }
            nodes[ip] = n
            return verdict
        }
    }

    /// True if `ip` is red now (no request counted).
    public func isBlocked(_ ip: String) -> Bool {
        shard(ip).nodes.withLock { $0[ip]?.red ?? false }
    }

    /// Number of addresses tracked.
    public var count: Int { shards.reduce(0) { $0 + $1.nodes.withLock { $0.count } } }

    /// Forgets addresses idle for `remove_latency` (the periodic job).
    public func purge() {
        let now = clock.unixSeconds
        for s in shards {
            s.nodes.withLock { nodes in
                for (ip, n) in nodes where now - n.lastSeen >= removeLatency { nodes[ip] = nil }
            }
        }
    }
}
