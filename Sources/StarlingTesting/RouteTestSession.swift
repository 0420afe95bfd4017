import Glibc
import Logging
import SIPCore
import SIPTransport
import StarlingKEMI
import StarlingLua
import StarlingServer
import KSRModules

/// One test file's run: a Lua state of its own (separate from the script's) holding the test DSL, built
/// by the same Lua host as the script's (`LuaEngine(hostFor:)`: libraries, marshaller, budget). The
/// DSL's few native functions are KSR exports (`KSR.starling.*`, hidden by the prelude) over this
/// object. Swift never raises Lua errors here either: natives return strings (a Lua table constructor,
/// or an error text) and the prelude, in Lua, turns them into values or errors.
final class RouteTestSession {
    struct Settings {
        var hosts: [String: SocketAddress] = [:]
        var anyHost: SocketAddress?
        var defines: [String: String] = [:]
        var aliases: [String] = []
        var local = SocketAddress(ip: "127.0.0.1", port: 5060)!
        /// `http{...}`: stubbed http_async_client answers by URL prefix (delay ms, status, body).
        var httpStubs: [String: (delayMs: Int, status: Int, body: String)] = [:]
        /// `async_io(true)`: routes run as coroutines (`[core] async_io`), with this async_max_pending.
        var asyncIO: Int? = nil

        var services: TestServices {
            TestServices(local: local, hosts: hosts, defines: defines, aliases: aliases, anyHost: anyHost)
        }
    }

    /// The natives, in export-index order; every parameter is a string.
    enum Native: Int, CaseIterable {
        case send, set, beginTest, variable, report, wait

        var name: String {
            switch self {
            case .send: return "send"
            case .set: return "set"
            case .beginTest: return "begin_test"
            case .variable: return "var"
            case .report: return "report"
            case .wait: return "wait"
            }
        }

        var arity: Int {
            switch self {
            case .send: return 2
            case .set: return 3
            case .beginTest: return 1
            case .variable: return 1
            case .report: return 4
            case .wait: return 1
            }
        }
    }

    let scriptPath: String
    let scriptText: String
    let testFile: String
    let logLevel: Logger.Level

    private(set) var results: [RouteTestResult] = []
    private var fileSettings = Settings()
    private var testSettings = Settings()
    private var inTest = false
    private var harness: ScriptHarness?
    private var currentTest = ""

    private var engine: LuaEngine?

    /// Instructions one test (or the file's top level) may run in the test state.
    static let instructionBudget: Int64 = 100_000_000

    init(scriptPath: String, scriptText: String, testFile: String, logLevel: Logger.Level) {
        self.scriptPath = scriptPath
        self.scriptText = scriptText
        self.testFile = testFile
        self.logLevel = logLevel
    }

    // MARK: Running

    /// Loads the prelude and the test file, then runs each declared test. Results end up in `results`.
    func run() {
        let services = TestServices()
        var logger = Logger(label: "starling-test")
        logger.logLevel = .critical
        // The natives need no message: their context only satisfies the host.
        let context = RouteContext(worker: WorkerLocals(index: 0), logger: logger, services: services, sender: RecordingSender(),
                                   received: ReceiveInfo(source: services.local, local: services.local, proto: .udp))
        do {
            engine = try LuaEngine(hostFor: testFile, registry: KemiRegistry(exports: natives(), modules: ["starling"]),
                                   context: context, limits: LuaEngineLimits(instructionBudget: Int(Self.instructionBudget), memoryLimit: 0))
        } catch {
            fileFailure(error.description)
            return
        }
        defer { engine = nil }
        if let err = chunk(routeTestPrelude, name: "=starling-test") { fileFailure("prelude: " + err); return }
        if let err = chunk("__starling.begin_file(\(luaLiteral(testFile)))", name: "=starling-test") {
            fileFailure(err)
            return
        }
        guard let bytes = readWholeFile(testFile) else {
            fileFailure("cannot read the test file (errno \(errno))")
            return
        }
        if let err = chunk(bytes, name: "@" + testFile) {
            fileFailure(err)
            return
        }
        var i = 1
        while true {
            let before = results.count
            // run(i) returns false (by error) past the last test: the count is kept in Lua.
            guard declaredCount >= i else { break }
            let err = chunk("__starling.run(\(i))", name: "=starling-test")
            if results.count == before {
                let message: String
                if engine?.budgetExhausted == true {
                    message = "error: instruction budget exceeded (\(Self.instructionBudget) instructions): an endless loop?"
                } else {
                    message = "error: " + (err.map { String($0.split(separator: "\n").first ?? "") } ?? "the test did not report")
                }
                results.append(RouteTestResult(file: testFile, name: currentTest, passed: false, location: nil,
                                               message: message))
            }
            i += 1
        }
        inTest = false
        harness = nil
    }

    /// How many `test(...)` calls the file made (`set("count", ...)` keeps it).
    private var declaredCount = 0

    private func fileFailure(_ message: String) {
        results.append(RouteTestResult(file: testFile, name: "(loading \(testFile))", passed: false, location: nil,
                                       message: message))
    }

    private func chunk(_ text: String, name: String) -> String? { chunk(Array(text.utf8), name: name) }

    /// Runs a chunk in the test state; the error with its traceback, or nil.
    private func chunk(_ bytes: [UInt8], name: String) -> String? {
        guard let engine else { return "no Lua state" }
        return engine.run(chunk: bytes, name: name)?.description
    }

    // MARK: Natives

    /// The DSL's natives as KSR exports (`KSR.starling.<name>`, every parameter a string, a string back).
    private func natives() -> [KemiExport] {
        let box = SessionReference(self)
        return Native.allCases.map { n in
            KemiExport("starling", n.name, Array(repeating: .str, count: n.arity), returns: .xval) { _, args in
                .bytes(box.session.call(n, args))
            }
        }
    }

    func call(_ native: Native, _ args: KemiArgs) -> [UInt8] {
        func arg(_ i: Int) -> String? { args.string(i) }
        func argBytes(_ i: Int) -> [UInt8]? { args.bytes(i).map { Array($0) } }
        let out: [UInt8]
        switch native {
        case .send:
            out = send(argBytes(0) ?? [], from: arg(1))
        case .set:
            out = Array(set(arg(0) ?? "", arg(1) ?? "", arg(2) ?? "").utf8)
        case .beginTest:
            currentTest = arg(0) ?? "?"
            testSettings = fileSettings
            harness = nil
            inTest = true
            out = []
        case .variable:
            out = variable(arg(0) ?? "")
        case .wait:
            out = wait(milliseconds: Int(arg(0) ?? "") ?? -1)
        case .report:
            let passed = arg(1) == "ok"
            let location = arg(2).flatMap { $0.isEmpty ? nil : $0 }
            let message = arg(3).flatMap { $0.isEmpty ? nil : $0 }
            results.append(RouteTestResult(file: testFile, name: arg(0) ?? currentTest, passed: passed,
                                           location: location, message: message))
            out = []
        }
        return out
    }

    /// `set(kind, key, value)`: test configuration. Returns "" or an error text.
    private func set(_ kind: String, _ key: String, _ value: String) -> String {
        var s = inTest ? testSettings : fileSettings
        switch kind {
        case "count":
            declaredCount = Int(key) ?? declaredCount
            return ""
        case "host":
            guard let a = SocketAddress(value, defaultPort: 0) else { return "hosts: '\(value)' is not an IP address" }
            if key == "*" { s.anyHost = a } else { s.hosts[key.lowercased()] = a }
        case "define":
            s.defines[key] = value
        case "undefine":
            s.defines[key] = nil
        case "alias":
            s.aliases.append(key.lowercased())
        case "local":
            guard let a = SocketAddress(key, defaultPort: 5060) else { return "listen: '\(key)' is not ip:port" }
            s.local = a
        case "http":
            let parts = value.split(separator: "|", maxSplits: 2, omittingEmptySubsequences: false).map(String.init)
            guard !key.isEmpty, parts.count == 3, let delay = Int(parts[0]), let status = Int(parts[1]), delay >= 0 else {
                return "http{...}: url, delay (ms) and status must be given (status 0: no answer)"
            }
            s.httpStubs[key] = (delay, status, parts[2])
        case "async_io":
            guard let n = Int(value), n >= 0 else { return "async_io(on, max_pending): max_pending must be a positive integer" }
            s.asyncIO = key == "1" ? max(1, n) : nil
        default:
            return "unknown setting \(kind)"
        }
        if inTest {
            testSettings = s
            harness = nil  // takes effect on the next send (a fresh script state)
        } else {
            fileSettings = s
        }
        return ""
    }

    private func currentHarness() throws(LuaScriptError) -> ScriptHarness {
        if let harness { return harness }
        let h = try ScriptHarness(script: scriptText, path: scriptPath,
                                  services: (inTest ? testSettings : fileSettings).services, logLevel: logLevel)
        for (url, stub) in (inTest ? testSettings : fileSettings).httpStubs {
            HTTPAsyncStubs.of(h.runtime).set(urlPrefix: url, delayMs: stub.delayMs, status: stub.status, body: stub.body)
        }
        if let max = (inTest ? testSettings : fileSettings).asyncIO {
            h.dispatcher.enableAsyncIO(maxPending: max, pending: AsyncPendingRequests())
        }
        harness = h
        return h
    }

    /// `wait(ms)`: the router's clock moves on (timers, async sleeps, stubbed HTTP answers, resumed
    /// routes run); returns what was sent meanwhile, as `send` does.
    private func wait(milliseconds: Int) -> [UInt8] {
        var w = LuaTableWriter()
        guard milliseconds >= 0 else {
            w.field("usage_error", string: "wait(ms): ms must be a number >= 0")
            return w.finish()
        }
        let h: ScriptHarness
        do {
            h = try currentHarness()
        } catch {
            w.field("script_error", string: error.description)
            return w.finish()
        }
        h.sender.clear()
        var left = milliseconds
        repeat {
            let step = min(left, 10)
            h.advance(by: .milliseconds(step))
            left -= step
        } while left > 0
        w.field("status", string: "waited")
        w.field("outcome", string: "ok")
        w.field("dropped", bool: false)
        writeSent(&w, h)
        return w.finish()
    }

    /// `send(text, from)`: routes one message; returns a Lua table constructor describing what happened.
    private func send(_ bytes: [UInt8], from: String?) -> [UInt8] {
        var w = LuaTableWriter()
        let h: ScriptHarness
        do {
            h = try currentHarness()
        } catch {
            w.field("script_error", string: error.description)
            return w.finish()
        }
        var source = h.source
        if let from, !from.isEmpty {
            guard let a = SocketAddress(from, defaultPort: 5060) else {
                w.field("usage_error", string: "from: '\(from)' is not ip:port")
                return w.finish()
            }
            source = a
        }
        h.sender.clear()
        let result = h.route(bytes: bytes, from: source)
        // Routes resumed at once (async task_route / task_data) run before the result is read.
        h.context.mailbox.run(h.context)
        w.field("source", string: source.description)
        switch result {
        case .keepalive: w.field("status", string: "keepalive")
        case .unparsable: w.field("status", string: "unparsable")
        case .invalid: w.field("status", string: "invalid")
        case .rejected(let code):
            w.field("status", string: "rejected")
            w.field("rejected", int: code)
        case .waiting: w.field("status", string: "waiting")
        case .absorbed: w.field("status", string: "absorbed")
        case .routed(let outcome):
            w.field("status", string: "routed")
            switch outcome {
            case .ok: w.field("outcome", string: "ok")
            case .exited: w.field("outcome", string: "exited")
            case .missing: w.field("outcome", string: "missing")
            case .budgetExceeded: w.field("outcome", string: "budget")
            case .memoryExceeded: w.field("outcome", string: "memory")
            case .error(let e):
                w.field("outcome", string: "error")
                w.field("error", string: e.message)
            }
        }
        w.field("dropped", bool: h.context.dropRequested)
        writeSent(&w, h)
        return w.finish()
    }

    /// The `sent` list of a result: what the router sent since the recorder was cleared.
    private func writeSent(_ w: inout LuaTableWriter, _ h: ScriptHarness) {
        w.openField("sent")
        for s in h.sender.sent {
            w.openItem()
            w.field("to", string: s.destination.description)
            w.field("proto", string: s.proto.name)
            w.field("text", bytes: s.bytes)
            if let m = s.message {
                w.field("request", bool: m.isRequest)
                if m.isRequest {
                    w.field("method", string: m.string(m.methodRange))
                    w.field("ruri", string: m.string(m.requestURIRange))
                } else {
                    w.field("status", int: m.statusCode)
                    w.field("reason", string: m.string(m.reasonRange))
                }
                w.openField("headers")
                for f in m.headerFields {
                    w.openItem()
                    w.field("name", string: m.string(f.name))
                    if let c = f.kind.canonicalName { w.field("canon", string: c) }
                    w.field("value", string: m.string(f.value))
                    w.close()
                }
                w.close()
                w.field("body", string: m.string(m.bodyRange))
            }
            w.close()
        }
        w.close()
    }

    /// `var(name)`: a `$var` of the script after the last message, as a Lua literal (nil if unset).
    private func variable(_ spec: String) -> [UInt8] {
        var name = Substring(spec)
        if name.hasPrefix("$var("), name.hasSuffix(")") { name = name.dropFirst(5).dropLast() }
        guard let h = harness, let v = h.context.worker.vars[String(name)] else { return Array("nil".utf8) }
        switch v {
        case .null: return Array("nil".utf8)
        case .int(let i): return Array(String(i).utf8)
        case .string(let s): return luaQuoted(Array(s.utf8))
        }
    }

}

/// The session as the natives' closures hold it: they run only inside `run()`, on its thread, while the
/// session is alive (the engine is released before `run()` returns).
private struct SessionReference: @unchecked Sendable {
    unowned(unsafe) let session: RouteTestSession
    init(_ s: RouteTestSession) { session = s }
}

// MARK: Lua literals

/// A Lua string literal for any bytes (ASCII output; other bytes as decimal escapes).
func luaQuoted(_ bytes: [UInt8]) -> [UInt8] {
    var out: [UInt8] = [UInt8(ascii: "\"")]
    out.reserveCapacity(bytes.count + 16)
    for b in bytes {
        switch b {
        case UInt8(ascii: "\""): out += [UInt8(ascii: "\\"), b]
        case UInt8(ascii: "\\"): out += [UInt8(ascii: "\\"), b]
        case 0x0A: out += Array("\\n".utf8)
        case 0x0D: out += Array("\\r".utf8)
        case 0x20...0x7E: out.append(b)
        default:
            let d = String(b)
            out += Array(("\\" + String(repeating: "0", count: 3 - d.count) + d).utf8)
        }
    }
    out.append(UInt8(ascii: "\""))
    return out
}

func luaLiteral(_ s: String) -> String { String(decoding: luaQuoted(Array(s.utf8)), as: UTF8.self) }

/// Writes a Lua table constructor.
struct LuaTableWriter {
    private var out: [UInt8] = [UInt8(ascii: "{")]

    private mutating func key(_ k: String) { out += Array("\(k)=".utf8) }

    mutating func field(_ k: String, string v: String) { field(k, bytes: Array(v.utf8)) }
    mutating func field(_ k: String, bytes v: [UInt8]) { key(k); out += luaQuoted(v); out.append(UInt8(ascii: ",")) }
    mutating func field(_ k: String, int v: Int) { key(k); out += Array("\(v),".utf8) }
    mutating func field(_ k: String, bool v: Bool) { key(k); out += Array((v ? "true," : "false,").utf8) }
    mutating func openField(_ k: String) { key(k); out.append(UInt8(ascii: "{")) }
    mutating func openItem() { out.append(UInt8(ascii: "{")) }
    mutating func close() { out += Array("},".utf8) }
    mutating func finish() -> [UInt8] { out.append(UInt8(ascii: "}")); return out }
}

func readWholeFile(_ path: String) -> [UInt8]? {
    let fd = open(path, O_RDONLY)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var out: [UInt8] = []
    var buf = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n < 0 { return nil }
        if n == 0 { break }
        out.append(contentsOf: buf[0..<n])
    }
    return out
}
