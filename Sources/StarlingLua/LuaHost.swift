import CLuaShim
import Glibc
import Logging
import SIPCore
import StarlingKEMI

/// The Swift side of the C dispatcher: one per Lua state, reached from C through `ksr_host.ctx`.
/// Nothing here touches the `lua_State` or raises a Lua error; results are plain C data that the C
/// side pushes after this returns.
final class LuaHost {
    let registry: KemiRegistry
    /// The route context KSR functions receive; nil for a check-only engine (calls then fail).
    let route: RouteContext?
    /// The same object without reference counting, for the per-call path (`route` keeps it alive):
    /// borrowed for each KSR call instead of retained and released.
    private let fastRoute: Unmanaged<RouteContext>?
    /// The exports by index, as a call needs them. `callees` keeps them alive; a call borrows its
    /// callee through `fastCallees` instead of retaining and releasing the function's closure context.
    private let callees: [Callee]
    private let fastCallees: ContiguousArray<Unmanaged<Callee>>
    /// Memory for result strings: valid until the next call, i.e. until C has pushed them.
    private var arena: UnsafeMutableRawPointer
    private var arenaCapacity: Int

    init(registry: KemiRegistry, route: RouteContext?) {
        self.registry = registry
        self.route = route
        fastRoute = route.map { Unmanaged.passUnretained($0) }
        callees = registry.exports.map { Callee(function: $0.function, returns: $0.returns) }
        fastCallees = ContiguousArray(callees.map { Unmanaged.passUnretained($0) })
        arenaCapacity = 4096
        arena = UnsafeMutableRawPointer.allocate(byteCount: arenaCapacity, alignment: 16)
    }

    deinit { arena.deallocate() }

    /// One export's function and return type.
    final class Callee {
        let function: KemiFunction
        let returns: KemiReturnType

        init(function: @escaping KemiFunction, returns: KemiReturnType) {
            self.function = function
            self.returns = returns
        }
    }

    /// The route's script flags (0 and not kept without a route), read and written without
    /// reference counting: saved and restored around every callback.
    var scriptFlags: UInt32 {
        get { fastRoute?._withUnsafeGuaranteedRef { $0.scriptFlags } ?? 0 }
        set { fastRoute?._withUnsafeGuaranteedRef { $0.scriptFlags = newValue } }
    }

    // MARK: Calls

    @inline(__always)
    func call(_ index: Int, _ params: UnsafePointer<ksr_param>?, _ count: Int, _ ret: UnsafeMutablePointer<ksr_ret>,
              yieldable: Bool) {
        guard let fastRoute else {
            ret.pointee.kind = Int32(KSR_RET_FALSE.rawValue)
            return
        }
        fastRoute._withUnsafeGuaranteedRef { route in
            if let aio = route.asyncIO {
                callAwaiting(aio, route, index, params, count, ret, yieldable: yieldable)
                return
            }
            fastCallees[index]._withUnsafeGuaranteedRef { callee in
                let result = callee.function(route, KemiArgs(raw: UnsafeRawPointer(params), count: count))
                store(result, as: callee.returns, into: ret)
            }
        }
    }

    /// async_io: a function called straight from the route coroutine may start a wait
    /// (`AsyncIO.beginAwait`) instead of blocking; the C side then yields the coroutine. Calls made
    /// from nested callbacks (a branch route run by t_relay) never may.
    private func callAwaiting(_ aio: AsyncIO, _ route: RouteContext, _ index: Int, _ params: UnsafePointer<ksr_param>?,
                              _ count: Int, _ ret: UnsafeMutablePointer<ksr_ret>, yieldable: Bool) {
        let outer = aio.mayAwait
        aio.mayAwait = yieldable
        let callee = callees[index]
        let result = callee.function(route, KemiArgs(raw: UnsafeRawPointer(params), count: count))
        aio.mayAwait = outer
        if yieldable, aio.callStartedWait() {
            set(ret, KSR_RET_YIELD)
            return
        }
        store(result, as: callee.returns, into: ret)
    }

    /// The result of the call that yielded, once its wait is over (async_io).
    func resumed(_ index: Int, _ ret: UnsafeMutablePointer<ksr_ret>) {
        guard let aio = route?.asyncIO else {
            set(ret, KSR_RET_NIL)
            return
        }
        store(aio.takeResult(), as: callees[index].returns, into: ret)
    }

    /// Converts a result by the export's return type (REFERENCE §1.3).
    func store(_ result: KemiResult, as type: KemiReturnType, into ret: UnsafeMutablePointer<ksr_ret>) {
        switch type {
        case .none:
            set(ret, KSR_RET_FALSE)
        case .int:
            switch result {
            case .int(let v): set(ret, KSR_RET_INT, Int64(v))
            case .bool(let b): set(ret, KSR_RET_INT, b ? 1 : -1)
            default: storeValue(result, into: ret)
            }
        case .bool:
            switch result {
            case .bool(let b): set(ret, KSR_RET_BOOL, b ? 1 : 0)
            case .int(let v): set(ret, KSR_RET_BOOL, v != 0 ? 1 : 0)
            default: set(ret, KSR_RET_FALSE)
            }
        case .xval:
            storeValue(result, into: ret)
        }
    }

    private func storeValue(_ result: KemiResult, into ret: UnsafeMutablePointer<ksr_ret>) {
        switch result {
        case .none: set(ret, KSR_RET_NOTHING)
        case .null: set(ret, KSR_RET_NIL)
        case .int(let v): set(ret, KSR_RET_INT, Int64(v))
        case .bool(let b): set(ret, KSR_RET_BOOL, b ? 1 : 0)
        case .string(var s):
            s.withUTF8 { copyOut(UnsafeRawBufferPointer($0), into: ret) }
        case .bytes(let b):
            b.withUnsafeBytes { copyOut($0, into: ret) }
        case .messageBytes(let r):
            guard let message = route?.message else {
                set(ret, KSR_RET_NIL)
                return
            }
            message.withBytes { all in
                let lo = max(0, min(r.lower, all.count)), hi = max(lo, min(r.upper, all.count))
                copyOut(UnsafeRawBufferPointer(rebasing: all[lo..<hi]), into: ret)
            }
        }
    }

    @inline(__always)
    private func set(_ ret: UnsafeMutablePointer<ksr_ret>, _ kind: ksr_ret_kind, _ i: Int64 = 0) {
        ret.pointee.kind = Int32(kind.rawValue)
        ret.pointee.i = i
    }

    private func copyOut(_ bytes: UnsafeRawBufferPointer, into ret: UnsafeMutablePointer<ksr_ret>) {
        if bytes.count > arenaCapacity {
            arena.deallocate()
            arenaCapacity = max(bytes.count, arenaCapacity * 2)
            arena = UnsafeMutableRawPointer.allocate(byteCount: arenaCapacity, alignment: 16)
        }
        if let base = bytes.baseAddress, bytes.count > 0 { arena.copyMemory(from: base, byteCount: bytes.count) }
        ret.pointee.kind = Int32(KSR_RET_STR.rawValue)
        ret.pointee.s = UnsafePointer(arena.assumingMemoryBound(to: CChar.self))
        ret.pointee.len = bytes.count
    }

    // MARK: Log events, drop, modf

    func log(event: Int32, _ a: Int64, _ b: Int64) {
        guard let route else { return }
        let name = a >= 0 && Int(a) < registry.exports.count ? registry.exports[Int(a)].qualifiedName : "KSR.x.modf"
        let expected = a >= 0 && Int(a) < registry.exports.count ? registry.exports[Int(a)].params.count : 1
        if event == Int32(KSR_LOG_TOO_MANY_ARGS.rawValue) {
            route.logger.error("too many parameters for: \(name) (got \(b), at most \(KSR_MAXPARAMS))")
        } else {
            route.logger.error("not enough parameters for: \(name) (got \(b), expected \(expected))")
        }
    }

    func drop() { route?.dropRequested = true }

    /// `KSR.x.modf(fname, ...)`: params[0] is the name, the rest string arguments.
    func modf(_ params: UnsafePointer<ksr_param>, _ count: Int) -> Int64 {
        let args = KemiArgs(raw: UnsafeRawPointer(params), count: count)
        let name = args.str(0)
        let given = count - 1
        guard let index = registry.index(cfgName: name, argumentCount: given) else {
            route?.logger.error("KSR.x.modf: unknown function '\(name)' with \(given) parameters")
            return -1
        }
        let export = registry.exports[index]
        let types = export.params.prefix(Int(KSR_MAXPARAMS))
        guard types.count <= given else {
            route?.logger.error("KSR.x.modf: '\(name)' needs \(types.count) parameters, got \(given)")
            return -1
        }
        guard let route else { return -1 }
        return withUnsafeTemporaryAllocation(of: ksr_param.self, capacity: max(types.count, 1)) { buf in
            for (k, t) in types.enumerated() {
                let src = params[k + 1]
                switch t {
                case .str:
                    buf[k] = src
                case .int, .long:
                    guard let v = parseInteger(args.bytes(k + 1)) else {
                        route.logger.error("KSR.x.modf: '\(name)' parameter \(k + 1) is not an integer")
                        return -1
                    }
                    buf[k] = ksr_param(s: nil, len: 0, i: Int64(v))
                }
            }
            let result = export.function(route, KemiArgs(raw: UnsafeRawPointer(buf.baseAddress), count: types.count))
            switch result {
            case .int(let v): return Int64(v)
            case .bool(let b): return b ? 1 : -1
            case .null: return -1
            case .none, .string, .bytes, .messageBytes: return 1
            }
        }
    }
}

/// Parses an optional sign and decimal digits (surrounding spaces allowed).
func parseInteger(_ bytes: UnsafeRawBufferPointer?) -> Int? {
    guard let bytes else { return nil }
    var i = bytes.startIndex, end = bytes.endIndex
    while i < end, bytes[i] == 0x20 || bytes[i] == 0x09 { i += 1 }
    while end > i, bytes[end - 1] == 0x20 || bytes[end - 1] == 0x09 { end -= 1 }
    var negative = false
    if i < end, bytes[i] == UInt8(ascii: "-") || bytes[i] == UInt8(ascii: "+") {
        negative = bytes[i] == UInt8(ascii: "-")
        i += 1
    }
    guard i < end else { return nil }
    var v = 0
    while i < end {
        let d = Int(bytes[i]) - 48
        guard d >= 0, d <= 9 else { return nil }
        let (m, o1) = v.multipliedReportingOverflow(by: 10)
        let (s, o2) = m.addingReportingOverflow(d)
        guard !o1, !o2 else { return nil }
        v = s
        i += 1
    }
    return negative ? -v : v
}

// MARK: C entry points (ksr_host callbacks)

private func host(_ ctx: UnsafeMutableRawPointer?) -> LuaHost {
    Unmanaged<LuaHost>.fromOpaque(ctx!).takeUnretainedValue()
}

/// Every KSR call: the host is borrowed (the engine keeps it alive), not retained and released.
let luaHostCall: ksr_call_fn = { ctx, index, params, count, ret, yieldable in
    Unmanaged<LuaHost>.fromOpaque(ctx!)._withUnsafeGuaranteedRef {
        $0.call(Int(index), params, Int(count), ret!, yieldable: yieldable != 0)
    }
}

let luaHostResumed: ksr_resumed_fn = { ctx, index, ret in
    host(ctx).resumed(Int(index), ret!)
}

let luaHostLog: ksr_log_fn = { ctx, event, a, b in
    host(ctx).log(event: event, a, b)
}

let luaHostDrop: ksr_drop_fn = { ctx in
    host(ctx).drop()
}

let luaHostModf: ksr_modf_fn = { ctx, params, count in
    host(ctx).modf(params!, Int(count))
}
