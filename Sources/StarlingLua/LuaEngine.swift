import CLua
import CLuaShim
import Glibc
import Logging
public import StarlingKEMI

/// One Lua state running a KEMI script: the `KSR` table, the script's globals, and its limits.
///
/// Not `Sendable`: one engine per worker thread (it may be built on another thread and handed over
/// before first use). The state's `lua_getextraspace` holds a pointer to the host record whose
/// context is the worker's `RouteContext`, so KSR calls find the current message without any Lua
/// lookup. Only C code in CLuaShim raises Lua errors; this type only calls non-raising Lua API or
/// goes through the protected helpers.
///
/// Lua 5.1 compatibility (Kamailio 5.6 scripts were written for 5.1): `unpack`, `loadstring`,
/// `table.getn`, `math.pow`, `math.mod` exist, and numbers passed to string parameters are
/// formatted with `%.14g` (10/2 gives "5"). Differences that remain: `tostring(10/2)` inside the
/// script is "5.0", `math.pow` returns a float, `string.format("%d", 2.5)` raises, and `setfenv` /
/// `module()` do not exist. `int` parameters are 64-bit (Kamailio's are 32-bit C ints).
///
/// Limits: the instruction budget counts VM instructions only; time spent inside one C library
/// call (a huge `string.rep`, a pathological pattern) is bounded by the memory cap, not the budget.
public final class LuaEngine {
    /// The script this engine was built from.
    public let script: ScriptSource
    public let limits: LuaEngineLimits
    /// The request callback, resolved at load time (its presence was checked).
    public private(set) var requestRoute: LuaCallback
    /// Hash of the script and the modules it had loaded when the engine was built.
    public private(set) var version: ScriptVersion

    let L: OpaquePointer
    private let hostRecord: UnsafeMutablePointer<ksr_host>
    private let host: LuaHost
    private var callbacks: [String: LuaCallback] = [:]

    /// Builds a state: standard libraries, 5.1 compatibility globals, `KSR`, then runs the script's
    /// top level and checks that `ksr_request_route` is a function.
    public convenience init(script: ScriptSource, registry: KemiRegistry, context: RouteContext?,
                            limits: LuaEngineLimits = .default) throws(LuaScriptError) {
        try self.init(state: script, registry: registry, context: context, limits: limits)
        try load()
        requestRoute = try resolve("ksr_request_route")
        guard isFunction(requestRoute) else {
            throw LuaScriptError(kind: .missingRequestRoute,
                                 message: "\(script.path): ksr_request_route is not defined as a function")
        }
        version = currentVersion()
    }

    /// A state for Lua code that is not a routing script (the `starling test` DSL): the same standard
    /// libraries, `KSR` table, marshaller, instruction budget and memory cap as a script's, with no
    /// script loaded. `path` names the code for `require` (its directory) and error messages; run code
    /// with `run(chunk:name:)`.
    public convenience init(hostFor path: String, registry: KemiRegistry, context: RouteContext,
                            limits: LuaEngineLimits) throws(LuaScriptError) {
        try self.init(state: ScriptSource(path: path, bytes: []), registry: registry, context: context, limits: limits)
    }

    /// The state with libraries and `KSR`, before any code runs.
    private init(state script: ScriptSource, registry: KemiRegistry, context: RouteContext?,
                 limits: LuaEngineLimits) throws(LuaScriptError) {
        self.script = script
        self.limits = limits
        host = LuaHost(registry: registry, route: context)
        hostRecord = .allocate(capacity: 1)
        hostRecord.initialize(to: ksr_host())
        hostRecord.pointee.ctx = Unmanaged.passUnretained(host).toOpaque()
        hostRecord.pointee.call = luaHostCall
        hostRecord.pointee.log = luaHostLog
        hostRecord.pointee.drop = luaHostDrop
        hostRecord.pointee.modf = luaHostModf
        hostRecord.pointee.resumed = luaHostResumed
        hostRecord.pointee.budget = Int64(max(0, limits.instructionBudget))
        hostRecord.pointee.mem_limit = max(0, limits.memoryLimit)
        guard let state = ksr_newstate(hostRecord) else {
            hostRecord.deallocate()
            throw LuaScriptError(kind: .setup, message: "\(script.path): cannot create a Lua state")
        }
        L = state
        requestRoute = LuaCallback(name: "ksr_request_route", ref: LUA_NOREF)
        version = ScriptVersion(value: 0)
        // From here on deinit cleans up.
        try setUp(registry: registry)
    }

    /// Reads the file and builds an engine from it.
    public convenience init(path: String, registry: KemiRegistry, context: RouteContext?,
                            limits: LuaEngineLimits = .default) throws(LuaScriptError) {
        try self.init(script: try ScriptSource.read(path: path), registry: registry, context: context, limits: limits)
    }

    deinit {
        lua_close(L)
        hostRecord.deallocate()
    }

    // MARK: Setup

    private func setUp(registry: KemiRegistry) throws(LuaScriptError) {
        let dir = script.directory
        let st = dir.withCString { ksr_setup_libs(L, $0) }
        if st != LUA_OK { throw popError(status: st, kind: .setup) }

        // Export descriptors: C strings live until ksr_setup_exports returns.
        var owned: [UnsafeMutablePointer<CChar>] = []
        defer { for p in owned { free(p) } }
        func dup(_ s: String) -> UnsafePointer<CChar> {
            let p = strdup(s)!
            owned.append(p)
            return UnsafePointer(p)
        }
        var descs: [ksr_export_desc] = []
        descs.reserveCapacity(registry.exports.count)
        for (i, e) in registry.exports.enumerated() {
            let firstOptional = e.params.count - e.optionalParams
            let sig = String(e.params.prefix(Int(KSR_MAXPARAMS)).enumerated().map { i, t -> Character in
                let c: Character
                switch t {
                case .str: c = "s"
                case .int: c = "i"
                case .long: c = "l"
                }
                return i >= firstOptional ? Character(c.uppercased()) : c
            })
            descs.append(ksr_export_desc(module: dup(e.module), name: dup(e.name), sig: dup(sig), index: Int32(i)))
        }
        let st2 = descs.withUnsafeBufferPointer { ksr_setup_exports(L, $0.baseAddress, Int32($0.count)) }
        if st2 != LUA_OK { throw popError(status: st2, kind: .setup) }
    }

    private func load() throws(LuaScriptError) {
        if let error = run(chunk: script.bytes, name: "@" + script.path) { throw error }
    }

    /// Compiles and runs a chunk of text (no bytecode) under the instruction budget and memory cap.
    /// `name` is Lua's chunk name ("@file" for a file, "=label" otherwise). Nil when it ran to the end.
    public func run(chunk bytes: [UInt8], name: String) -> LuaScriptError? {
        let st = bytes.withUnsafeBytes { buf in
            name.withCString { cname in
                let base = (buf.baseAddress ?? UnsafeRawPointer(emptyCString.utf8Start))
                return ksr_dochunk(L, base.assumingMemoryBound(to: CChar.self), buf.count, cname)
            }
        }
        if st == LUA_OK { return nil }
        let kind: LuaScriptError.Kind
        if st == LUA_ERRSYNTAX {
            kind = .syntax
        } else if hostRecord.pointee.budget_hit != 0 {
            kind = .budget
        } else if st == LUA_ERRMEM {
            kind = .memory
        } else {
            kind = .runtime
        }
        return popError(status: st, kind: kind)
    }

    /// The last chunk or callback ran out of its instruction budget.
    public var budgetExhausted: Bool { hostRecord.pointee.budget_hit != 0 }

    /// Takes the error message on top of the stack.
    private func popError(status: Int32, kind: LuaScriptError.Kind) -> LuaScriptError {
        var len = 0
        let text: String
        if let p = ksr_tostring(L, -1, &len) {
            text = String(decoding: UnsafeRawBufferPointer(start: p, count: len), as: UTF8.self)
        } else {
            text = "Lua error \(status)"
        }
        ksr_pop(L, 1)
        return LuaScriptError(kind: kind, handlerOutput: text)
    }

    // MARK: Callbacks

    /// Resolves a callback name once (creates the interned name string in the state).
    public func callback(named name: String) -> LuaCallback {
        if let cb = callbacks[name] { return cb }
        let ref = name.utf8CString.withUnsafeBufferPointer { ksr_ref_string(L, $0.baseAddress, $0.count - 1) }
        let cb = LuaCallback(name: name, ref: ref)
        if ref != LUA_NOREF { callbacks[name] = cb }
        return cb
    }

    private func resolve(_ name: String) throws(LuaScriptError) -> LuaCallback {
        let cb = callback(named: name)
        if cb.ref == LUA_NOREF { throw LuaScriptError(kind: .memory, message: "not enough memory") }
        return cb
    }

    /// True if the global named by the callback is currently a function.
    public func isFunction(_ cb: LuaCallback) -> Bool {
        guard cb.ref != LUA_NOREF else { return false }
        let top = lua_gettop(L)
        lua_rawgeti(L, ksr_registryindex(), lua_Integer(LUA_RIDX_GLOBALS))
        lua_rawgeti(L, ksr_registryindex(), lua_Integer(cb.ref))
        let t = lua_rawget(L, -2)
        lua_settop(L, top)
        return t == LUA_TFUNCTION
    }

    /// Runs the global function `name` (looked up now), with an optional string argument (event
    /// routes get the event name). Script flags are zeroed before and restored after.
    public func run(callback name: String, arg: String? = nil) -> CallbackOutcome {
        run(callback(named: name), arg: arg)
    }

    /// Runs a pre-resolved callback.
    public func run(_ cb: LuaCallback, arg: String? = nil) -> CallbackOutcome {
        guard cb.ref != LUA_NOREF else { return .memoryExceeded }
        // Script flags are zeroed for the callback and restored after it (REFERENCE §1.5); writes
        // are skipped when nothing changes (each access to the class property is checked).
        let savedFlags = host.scriptFlags
        if savedFlags != 0 { host.scriptFlags = 0 }
        defer { if host.scriptFlags != savedFlags { host.scriptFlags = savedFlags } }
        #if DEBUG
        let top = lua_gettop(L)
        defer { assert(lua_gettop(L) == top, "Lua stack changed across a callback") }
        #endif

        let st: Int32
        if var arg {
            st = arg.withUTF8 { u in
                let base = u.baseAddress.map { UnsafeRawPointer($0) } ?? UnsafeRawPointer(emptyCString.utf8Start)
                return ksr_run_callback(L, cb.ref, base.assumingMemoryBound(to: CChar.self), u.count)
            }
        } else {
            st = ksr_run_callback(L, cb.ref, nil, 0)
        }
        if st == LUA_OK { return .ok }
        if st == -1 { return .missing }
        return failure(status: st, callback: cb.name)
    }

    private func failure(status st: Int32, callback name: String) -> CallbackOutcome {
        var len = 0
        let p = ksr_tostring(L, -1, &len)
        if let p, ksr_is_exit(p, len) != 0 {
            ksr_pop(L, 1)
            return .exited
        }
        let text = p.map { String(decoding: UnsafeRawBufferPointer(start: $0, count: len), as: UTF8.self) }
            ?? "unknown error"
        ksr_pop(L, 1)
        let logger = host.route?.logger
        if hostRecord.pointee.budget_hit != 0 {
            logger?.error("error executing \(name): instruction budget exceeded (\(limits.instructionBudget))",
                          metadata: ["script": "\(script.path)", "lua": "\(firstLine(text))"])
            return .budgetExceeded
        }
        // A memory error the script caught itself (pcall) does not count, only one that ended it.
        if st == LUA_ERRMEM || (hostRecord.pointee.mem_hit != 0 && text.utf8.starts(with: "not enough memory".utf8))
            || (hostRecord.pointee.mem_hit != 0 && firstLine(text).hasSuffix("not enough memory")) {
            _ = ksr_gc_collect(L)
            logger?.error("error executing \(name): memory limit exceeded (\(limits.memoryLimit) bytes)",
                          metadata: ["script": "\(script.path)"])
            return .memoryExceeded
        }
        let error = LuaScriptError(kind: .runtime, handlerOutput: text)
        logger?.error("error from Lua: \(error.message)", metadata: ["callback": "\(name)", "traceback": "\(error.traceback)"])
        return .error(error)
    }

    // MARK: Route coroutines (async_io)

    /// A route running as a coroutine of this state (async_io). Valid with this engine only, until it
    /// finishes (`resume` releases it then) or `release` is called.
    public struct Coroutine: Sendable {
        let ref: Int32
        public let name: String
    }

    /// What one resume of a route coroutine did.
    public enum CoroutineStep: Sendable, Equatable {
        /// It waits: a KSR call yielded (or the script yielded by itself; the caller checks).
        case yielded
        /// It ended (the coroutine is released).
        case finished(CallbackOutcome)
    }

    /// Creates a coroutine for a pre-resolved callback (not started yet). Nil with `.missing` when
    /// the global is not a function, `.memoryExceeded` when the state has no memory for it.
    public func coroutine(_ cb: LuaCallback, arg: String? = nil) -> (Coroutine?, CallbackOutcome?) {
        guard cb.ref != LUA_NOREF else { return (nil, .memoryExceeded) }
        let ref: Int32
        if var arg {
            ref = arg.withUTF8 { u in
                let base = u.baseAddress.map { UnsafeRawPointer($0) } ?? UnsafeRawPointer(emptyCString.utf8Start)
                return ksr_co_new(L, cb.ref, base.assumingMemoryBound(to: CChar.self), u.count)
            }
        } else {
            ref = ksr_co_new(L, cb.ref, nil, 0)
        }
        if ref == LUA_NOREF { return (nil, .missing) }
        if ref == LUA_REFNIL { return (nil, .memoryExceeded) }
        return (Coroutine(ref: ref, name: cb.name), nil)
    }

    /// Starts or resumes a route coroutine under a fresh instruction budget (the memory cap is the
    /// state's, as always). Errors are logged as for `run`.
    public func resume(_ co: Coroutine) -> CoroutineStep {
        #if DEBUG
        let top = lua_gettop(L)
        defer { assert(lua_gettop(L) == top, "Lua stack changed across a resume") }
        #endif
        let st = ksr_co_resume(L, co.ref)
        if st == LUA_YIELD { return .yielded }
        // Ended: the thread becomes the state's spare for the next route (no new coroutine per
        // message), after `failure` has taken the error message off the stack.
        defer { ksr_co_recycle(L, co.ref) }
        if st == LUA_OK { return .finished(.ok) }
        return .finished(failure(status: st, callback: co.name))
    }

    /// Drops a coroutine that will not be resumed (its wait was abandoned).
    public func release(_ co: Coroutine) { ksr_co_release(L, co.ref) }

    // MARK: Introspection

    /// Absolute paths of the script and every Lua module `require` has loaded so far, for a watcher.
    public var loadedFiles: [String] {
        var files = [absolutePath(script.path) ?? script.path]
        let top = lua_gettop(L)
        ksr_push_loaded_files(L)
        if lua_type(L, -1) == LUA_TTABLE {
            let n = lua_rawlen(L, -1)
            var i: lua_Integer = 1
            while i <= lua_Integer(n) {
                if lua_rawgeti(L, -1, i) == LUA_TSTRING {
                    var len = 0
                    if let p = ksr_tostring(L, -1, &len) {
                        let path = String(decoding: UnsafeRawBufferPointer(start: p, count: len), as: UTF8.self)
                        let abs = absolutePath(path) ?? path
                        if !files.contains(abs) { files.append(abs) }
                    }
                }
                ksr_pop(L, 1)
                i += 1
            }
        }
        lua_settop(L, top)
        return files
    }

    /// Hash of the script bytes and of the loaded modules as they are on disk now.
    public func currentVersion() -> ScriptVersion {
        var parts: [(path: String, bytes: [UInt8])] = [(script.path, script.bytes)]
        for f in loadedFiles.dropFirst() { parts.append((f, readFile(f) ?? [])) }
        return ScriptVersion(files: parts)
    }

    /// Bytes the state has allocated.
    public var memoryInUse: Int { hostRecord.pointee.mem_used }
}

private let emptyCString: StaticString = ""

private func firstLine(_ s: String) -> Substring {
    s.split(separator: "\n", maxSplits: 1, omittingEmptySubsequences: false).first ?? Substring(s)
}
