import StarlingKEMI
import SIPTransaction
import Logging

/// `KSR.async` (Kamailio's async module): suspend the transaction and continue it later in a named
/// function: after a delay (`route`, `ms_route`) or as soon as the worker is free (`task_route`).
///
/// Kamailio runs the continuations in its timer and async task processes; Starling runs them in the
/// worker that suspended the request (its own Lua state), between two messages: the sleeping time
/// blocks nobody, but a continuation that blocks (a plain `http_client.query`) blocks that worker
/// as any route would (docs/Async.md). The return value after suspending is the `return` modparam
/// (0 by default, which makes `if KSR.async.route(...) ...` scripts stop as Kamailio's "force exit").
enum AsyncModule: KSRModule {
    static let name = "async"
    static let summary = "Suspend the transaction and continue it in a Lua function after a delay or as a task."
    static let dependencies = ["tm", "tmx"]

    static let workers = ModuleParameter.int("async", "workers", 1,
                                             "Kamailio's timer processes. Starling resumes in the worker that suspended; "
                                                 + "0 disables async.route and async.ms_route as Kamailio does.") { $0 < 0 ? "expected 0 or more" : nil }
    static let msTimer = ModuleParameter.int("async", "ms_timer", 0,
                                             "Resolution of async.ms_route in ms (0: ms_route disabled, as Kamailio).") { $0 < 0 ? "expected 0 or more" : nil }
    static let returnCode = ModuleParameter.int("async", "return", 0,
                                                "What async.route / ms_route / task_route return after suspending.")
    static let parameters = [workers.info, msTimer.info, returnCode.info]

    /// Longest sleeps (Kamailio: the ring of 100 one-second slots; MAX_MS_SLEEP) and the ms queue limit.
    static let maxSeconds = 100
    static let maxMillis = 30_000
    static let maxMillisQueue = 10_000
    /// Kamailio's ASYNC_CBNAME_SIZE (64, with the terminating NUL).
    static let maxCallbackName = 63

    static func exports(_ runtime: ModuleRuntime) -> [KemiExport] {
        let store = runtime.tm
        let c = runtime.config
        let timersOn = c[workers] > 0
        let msOn = c[msTimer] > 0
        let ret = c[returnCode]
        let m = "async"
        return [
            KemiExport(m, "route", [.str, .int], returns: .int) { ctx, a in
                .int(sleep(store, ctx, a.str(0), millis: a.int(1) * 1000, seconds: a.int(1), enabled: timersOn, ret: ret))
            },
            KemiExport(m, "ms_route", [.str, .int], returns: .int) { ctx, a in
                guard msOn else {
                    ctx.logger.error("async: async timer list not initialized - check modparams (ms_timer)")
                    return .int(-1)
                }
                return .int(sleep(store, ctx, a.str(0), millis: a.int(1), seconds: nil, enabled: timersOn, ret: ret))
            },
            KemiExport(m, "task_route", [.str], returns: .int) { ctx, a in
                .int(task(store, ctx, a.str(0), ret: ret))
            },
            KemiExport(m, "task_group_route", [.str, .str], returns: .int) { ctx, a in
                .int(task(store, ctx, a.str(0), ret: ret))
            },
            KemiExport(m, "task_data", [.str, .str], returns: .int) { ctx, a in
                .int(taskData(ctx, a.str(0), group: nil, data: a.str(1)))
            },
            KemiExport(m, "task_group_data", [.str, .str, .str], returns: .int) { ctx, a in
                .int(taskData(ctx, a.str(0), group: a.str(1), data: a.str(2)))
            },
            KemiExport(m, "get_gname", [], returns: .xval) { ctx, _ in
                ctx.worker.local(TaskData.self) { TaskData() }.group.map { .string($0) } ?? .null
            },
            KemiExport(m, "get_data", [], returns: .xval) { ctx, _ in
                ctx.worker.local(TaskData.self) { TaskData() }.data.map { .string($0) } ?? .null
            },
        ]
    }

    /// The data of the `task_data` callback that is running (`get_data`, `get_gname`).
    final class TaskData {
        var data: String?
        var group: String?
    }

    private static func checkName(_ ctx: RouteContext, _ cb: String) -> Bool {
        if cb.isEmpty {
            ctx.logger.error("async: invalid route name parameter")
            return false
        }
        if cb.utf8.count >= maxCallbackName {
            ctx.logger.error("async: callback name is too long: \(cb)")
            return false
        }
        if FakedMessage.isActive(ctx) {
            ctx.logger.error("async: invalid usage for faked message")
            return false
        }
        return true
    }

    /// `route` (seconds) and `ms_route`: suspend, then continue `cb` after the delay.
    static func sleep(_ store: TMStore, _ ctx: RouteContext, _ cb: String, millis: Int, seconds: Int?, enabled: Bool,
                      ret: Int) -> Int {
        guard checkName(ctx, cb) else { return -1 }
        guard enabled else {
            ctx.logger.error("async: no async mod timer workers (modparam workers is 0)")
            return -1
        }
        if let seconds {
            guard seconds > 0 else { ctx.logger.error("async: negative or zero sleep time (\(seconds))"); return -1 }
            guard seconds < maxSeconds else { ctx.logger.error("async: max sleep time is \(maxSeconds) sec (\(seconds))"); return -1 }
        } else {
            guard millis > 0 else { ctx.logger.error("async: negative or zero sleep time (\(millis))"); return -1 }
            guard millis < maxMillis else { ctx.logger.error("async: max sleep time is \(maxMillis) msec"); return -1 }
            guard AsyncTimers.of(store, ctx).count < maxMillisQueue else {
                ctx.logger.error("async: max sleep queue length exceeded (\(maxMillisQueue))")
                return -1
            }
        }
        let (code, cell) = TMSuspend.suspend(store, ctx)
        guard code > 0, let cell else {
            ctx.logger.error("async: failed to suspend the processing")
            return -1
        }
        let (index, label) = TMSuspend.ids(store, cell)
        AsyncTimers.of(store, ctx).add(at: store.now.advanced(by: .milliseconds(millis))) { ctx in
            TMSuspend.resume(store, ctx, index: index, label: label, callback: cb, event: "async:timer-exec")
        }
        return ret
    }

    /// `task_route`: suspend, then continue `cb` as soon as the worker is between two messages.
    static func task(_ store: TMStore, _ ctx: RouteContext, _ cb: String, ret: Int) -> Int {
        guard checkName(ctx, cb) else { return -1 }
        let (code, cell) = TMSuspend.suspend(store, ctx)
        guard code > 0, let cell else {
            ctx.logger.error("async: failed to suspend the processing")
            return -1
        }
        let (index, label) = TMSuspend.ids(store, cell)
        ctx.mailbox.post { ctx in
            TMSuspend.resume(store, ctx, index: index, label: label, callback: cb, event: "async:task-exec")
        }
        return ret
    }

    /// `task_data`: `cb` runs soon on a faked request, with `get_data()` returning `data`. 1, or -1.
    static func taskData(_ ctx: RouteContext, _ cb: String, group: String?, data: String) -> Int {
        guard !cb.isEmpty, cb.utf8.count < maxCallbackName else {
            ctx.logger.error("async: invalid callback name")
            return -1
        }
        ctx.mailbox.post { ctx in
            let td = ctx.worker.local(TaskData.self) { TaskData() }
            let saved = (td.data, td.group)
            FakedMessage.run(ctx, callback: cb, event: "async:task-data") { _ in
                td.data = data
                td.group = group
            }
            (td.data, td.group) = saved
        }
        return 1
    }
}

/// One worker's pending async sleeps (`async.route`, `async.ms_route`): run by the worker's timer pass
/// (`TMStore.runTimers`), on the tm clock (which tests move with `ScriptHarness.advance(by:)`).
final class AsyncTimers {
    private var items: [(at: MonotonicInstant, job: (RouteContext) -> Void)] = []

    /// The sleeps of the worker running `ctx` (kept in tm's worker state: its timer pass runs them).
    static func of(_ store: TMStore, _ ctx: RouteContext) -> AsyncTimers {
        let w = store.workerState(ctx)
        if let t = w.asyncTimers { return t }
        let t = AsyncTimers()
        w.asyncTimers = t
        return t
    }

    var count: Int { items.count }

    func add(at: MonotonicInstant, _ job: @escaping (RouteContext) -> Void) {
        // Sorted by due time; equal times keep their order.
        let i = items.firstIndex { $0.at > at } ?? items.endIndex
        items.insert((at, job), at: i)
    }

    /// Runs the sleeps that are due; returns the milliseconds until the next one (nil: none pending).
    func runDue(_ store: TMStore, _ ctx: RouteContext) -> Int? {
        guard !items.isEmpty else { return nil }
        let now = store.now
        while let first = items.first, first.at <= now {
            items.removeFirst()
            first.job(ctx)
        }
        guard let next = items.first else { return nil }
        return Int(max(1, (next.at.nanoseconds(since: store.now) + 999_999) / 1_000_000))
    }
}
