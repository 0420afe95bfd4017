import ArgumentParser
import Logging
import StarlingTesting

struct TestCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "test",
        abstract: "Run route tests for a script offline (no network).",
        discussion: """
            Runs each TESTFILE (Lua: test("name", function() ... end) with send(invite{...}), \
            expect.reply(r, 200), expect.forward(r, { to = "127.0.0.1:5080" }), ...) against SCRIPT, \
            using the real Lua engine and KSR functions with the network replaced by a recorder. Every \
            test starts with a freshly loaded script. See README.md, "Route tests".

            Prints each test with ok/FAIL and, for a failure, the test file:line, what was expected \
            and what happened. Exit status: 0 all passed, 1 a test failed, 2 the script does not load.

            Example: starling test examples/tested/route.lua examples/tested/route_test.lua
            """)

    @Argument(help: "The KEMI Lua routing script under test.")
    var script: String

    @Argument(help: "Test files (Lua).")
    var testFiles: [String]

    @Option(name: .long, help: ArgumentHelp("Show the script's log from this level on (e.g. debug, info, error).", valueName: "level"))
    var logLevel: String = "critical"

    func run() throws {
        guard let level = Logger.Level(rawValue: logLevel) else {
            FileError.print("starling test: unknown log level '\(logLevel)'")
            throw ExitCode(2)
        }
        let report = RouteTestRunner.run(script: script, testFiles: testFiles, logLevel: level)
        if report.scriptError != nil {
            FileError.print("starling test: " + report.rendered())
        } else {
            print(report.rendered(), terminator: "")
        }
        if report.exitCode != 0 { throw ExitCode(report.exitCode) }
    }
}
