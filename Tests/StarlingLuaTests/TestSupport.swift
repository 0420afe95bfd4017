import Glibc
import Logging
import SIPCore
import SIPTransport
import StarlingKEMI
import StarlingLua
import Synchronization

// Test scaffolding for the engine: minimal core services, a sender that records, a log capture,
// and a small "test" module whose functions record what they received in `ctx.worker.vars`.

final class TestServices: CoreServices {
    func isMyself(host: String, port: Int?, proto: SIPTransportProtocol?) -> Bool { host == "127.0.0.1" }
    func resolve(host: String, port: Int?, proto: SIPTransportProtocol) -> [SocketAddress] {
        SocketAddress(ip: host, port: port ?? 5060).map { [$0] } ?? []
    }
    func localSocket(for destination: SocketAddress, proto: SIPTransportProtocol) -> (socket: SocketAddress, advertised: String)? {
        nil
    }
    var defines: [String: String] { [:] }
}

final class TestSender: MessageSender {
    var sent: [[UInt8]] = []
    func send(_ bytes: [UInt8], to destination: SocketAddress, proto: SIPTransportProtocol, from local: SocketAddress?) -> Bool {
        sent.append(bytes)
        return true
    }
}

final class LogBox: Sendable {
    let lines = Mutex<[String]>([])
    var all: [String] { lines.withLock { $0 } }
}

struct CaptureLogHandler: LogHandler {
    let box: LogBox
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace
    var metadataProvider: Logger.MetadataProvider?
    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }
    func log(event: LogEvent) {
        let line = "\(event.level): \(event.message)"
        box.lines.withLock { $0.append(line) }
    }
}

/// Records a value under a key in the worker's `$var` table.
private func record(_ ctx: RouteContext, _ key: String, _ value: KemiValue) { ctx.worker.vars[key] = value }

/// The test exports: module "test" (loaded), module "absent" (not loaded), core `KSR.t_core`,
/// and `sl.sl_send_reply` / `sl.sl_fails` for `KSR.x.modf`.
let testExports: [KemiExport] = [
    KemiExport("test", "str", [.str], returns: .int) { ctx, a in
        record(ctx, "str", a.string(0).map { .string($0) } ?? .null)
        return .int(1)
    },
    KemiExport("test", "int", [.int], returns: .int) { ctx, a in
        record(ctx, "int", .int(a.int(0)))
        return .int(a.int(0))
    },
    KemiExport("test", "two", [.str, .int], returns: .int) { ctx, a in
        record(ctx, "two", .string("\(a.string(0) ?? "<NULL>")|\(a.int(1))"))
        return .int(2)
    },
    KemiExport("test", "boolean", [.int], returns: .bool) { _, a in .bool(a.int(0) != 0) },
    KemiExport("test", "xnull", returns: .xval) { _, _ in .null },
    KemiExport("test", "xempty", returns: .xval) { _, _ in .string("") },
    KemiExport("test", "xnullw", returns: .xval) { _, _ in .string("<null>") },
    KemiExport("test", "xint", returns: .xval) { _, _ in .int(7) },
    KemiExport("test", "xbytes", returns: .xval) { _, _ in .bytes(Array("bytes-\(String(repeating: "z", count: 5000))".utf8)) },
    KemiExport("test", "ruri", returns: .xval) { ctx, _ in
        guard let m = ctx.message else { return .null }
        return .messageBytes(m.requestURIRange)
    },
    KemiExport("test", "none0", returns: .none) { ctx, _ in
        record(ctx, "none0", .int(1))
        return .none
    },
    KemiExport("test", "none1", [.str], returns: .none) { _, _ in .none },
    KemiExport("test", "setsflag", [.int], returns: .int) { ctx, a in
        ctx.scriptFlags |= 1 << UInt32(a.int(0))
        return .int(1)
    },
    KemiExport("test", "sflags", returns: .int) { ctx, _ in .int(Int(ctx.scriptFlags)) },
    KemiExport("test", "rec", [.str, .str], returns: .int) { ctx, a in
        record(ctx, a.str(0), a.string(1).map { .string($0) } ?? .null)
        return .int(1)
    },
    KemiExport("absent", "f", returns: .int) { _, _ in .int(1) },
    KemiExport("", "t_core", returns: .bool) { _, _ in .bool(true) },
    KemiExport("sl", "sl_send_reply", [.int, .str], returns: .int) { ctx, a in
        record(ctx, "reply", .string("\(a.int(0)) \(a.str(1))"))
        return .int(a.int(0))
    },
    KemiExport("sl", "sl_fails", returns: .bool) { _, _ in .bool(false) },
]

let testRegistry = KemiRegistry(exports: testExports, modules: ["test", "sl"])

/// A temporary directory with the given files (name → contents).
func makeScriptDir(_ files: [String: String]) -> String {
    var template = Array("/tmp/starling-lua-XXXXXX".utf8CString)
    let dir = template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)!) }
    for (name, text) in files {
        let path = dir + "/" + name
        if let slash = name.lastIndex(of: "/") { mkdir(dir + "/" + String(name[..<slash]), 0o755) }
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        precondition(fd >= 0, "cannot create \(path)")
        let bytes = Array(text.utf8)
        _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        close(fd)
    }
    return dir
}

/// Removes a directory tree made by `makeScriptDir`.
func removeTree(_ path: String) {
    if let d = opendir(path) {
        while let e = readdir(d) {
            let name = withUnsafeBytes(of: e.pointee.d_name) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
            if name == "." || name == ".." { continue }
            if e.pointee.d_type == UInt8(DT_DIR) { removeTree(path + "/" + name) } else { unlink(path + "/" + name) }
        }
        closedir(d)
    }
    rmdir(path)
}

final class Harness {
    let engine: LuaEngine
    let ctx: RouteContext
    let logs: LogBox
    let dir: String

    init(engine: LuaEngine, ctx: RouteContext, logs: LogBox, dir: String) {
        self.engine = engine
        self.ctx = ctx
        self.logs = logs
        self.dir = dir
    }

    deinit { removeTree(dir) }

    func v(_ key: String) -> KemiValue? { ctx.worker.vars[key] }
}

func makeContext(logs: LogBox) -> RouteContext {
    let addr = SocketAddress(ip: "127.0.0.1", port: 5060)!
    return RouteContext(worker: WorkerLocals(index: 0),
                        logger: Logger(label: "test") { _ in CaptureLogHandler(box: logs) },
                        services: TestServices(), sender: TestSender(),
                        received: ReceiveInfo(source: addr, local: addr, proto: .udp))
}

/// Builds an engine from `route.lua` (plus extra files) in a fresh directory.
func harness(_ script: String, files: [String: String] = [:],
             limits: LuaEngineLimits = .default) throws -> Harness {
    var all = files
    all["route.lua"] = script
    let dir = makeScriptDir(all)
    let logs = LogBox()
    let ctx = makeContext(logs: logs)
    let engine: LuaEngine
    do {
        engine = try LuaEngine(path: dir + "/route.lua", registry: testRegistry, context: ctx, limits: limits)
    } catch {
        removeTree(dir)
        throw error
    }
    return Harness(engine: engine, ctx: ctx, logs: logs, dir: dir)
}

/// Wraps statements as the body of ksr_request_route.
func route(_ body: String) -> String {
    "function ksr_request_route()\n\(body)\nend\n"
}
