public import Logging
import StarlingLua

/// One test of a route test file.
public struct RouteTestResult: Sendable, Equatable {
    public var file: String
    public var name: String
    public var passed: Bool
    /// file:line of the failed expectation (or of the Lua error) in the test file.
    public var location: String?
    /// What was expected and what happened.
    public var message: String?
}

/// The outcome of `starling test`.
public struct RouteTestReport: Sendable {
    /// Set when the script under test does not load: nothing ran.
    public var scriptError: String?
    public var results: [RouteTestResult]

    public var passed: Int { results.filter(\.passed).count }
    public var failed: Int { results.count - passed }

    /// 0 when every test passed, 1 when one failed, 2 when the script does not load.
    public var exitCode: Int32 { scriptError != nil ? 2 : (failed > 0 ? 1 : 0) }

    /// The readable report: each test with ok/FAIL, failures with file:line, expected and got.
    public func rendered() -> String {
        if let scriptError { return "script does not load:\n\(scriptError)\n" }
        var out = ""
        var lastFile: String?
        for r in results {
            if r.file != lastFile {
                out += "\(r.file)\n"
                lastFile = r.file
            }
            out += (r.passed ? "  ok    " : "  FAIL  ") + r.name + "\n"
            guard !r.passed else { continue }
            if let loc = r.location { out += "        at \(loc)\n" }
            if let m = r.message {
                for line in m.split(separator: "\n", omittingEmptySubsequences: false) { out += "        \(line)\n" }
            }
        }
        out += "\(results.count) test\(results.count == 1 ? "" : "s"), \(passed) passed, \(failed) failed\n"
        return out
    }
}

/// Runs route test files against a script: the engine behind `starling test`.
///
/// Each test file runs in its own Lua state (the test DSL: `test`, `send`, `invite{}`, `expect.*`),
/// separate from the script's state. Every test starts with a freshly loaded script, so globals,
/// `$var`s and module state do not leak from one test to the next.
public enum RouteTestRunner {
    public static func run(script: String, testFiles: [String], logLevel: Logger.Level = .critical) -> RouteTestReport {
        let source: ScriptSource
        do {
            source = try ScriptSource.read(path: script)
            // Load once up front: a script that does not load is reported as such, not as N failures.
            _ = try ScriptHarness(script: String(decoding: source.bytes, as: UTF8.self), path: script, logLevel: logLevel)
        } catch {
            return RouteTestReport(scriptError: error.description, results: [])
        }
        let text = String(decoding: source.bytes, as: UTF8.self)
        var results: [RouteTestResult] = []
        for file in testFiles {
            let session = RouteTestSession(scriptPath: script, scriptText: text, testFile: file, logLevel: logLevel)
            session.run()
            results += session.results
        }
        return RouteTestReport(scriptError: nil, results: results)
    }
}
