import Foundation

/// Files of the Starling package, found from this source file's location
/// (`#filePath`), so the tests need no resource bundle.
enum PackagePaths {
    /// The package root: the directory holding Package.swift.
    static let root: URL = {
        var url = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        while url.path != "/" {
            if FileManager.default.fileExists(atPath: url.appendingPathComponent("Package.swift").path) {
                return url
            }
            url.deleteLastPathComponent()
        }
        fatalError("Package.swift not found above \(#filePath)")
    }()

    /// Tests/StarlingIntegrationTests.
    static var integrationTests: URL { root.appendingPathComponent("Tests/StarlingIntegrationTests") }

    /// A SIPp scenario in Tests/StarlingIntegrationTests/Scenarios (`"uac.xml"`).
    static func scenario(_ name: String) -> URL {
        integrationTests.appendingPathComponent("Scenarios").appendingPathComponent(name)
    }

    /// A tool in Tests/StarlingIntegrationTests/Tools.
    static func tool(_ name: String) -> URL {
        integrationTests.appendingPathComponent("Tools").appendingPathComponent(name)
    }

    /// A fixture directory or file in Tests/StarlingIntegrationTests/Fixtures.
    static func fixture(_ name: String) -> URL {
        integrationTests.appendingPathComponent("Fixtures").appendingPathComponent(name)
    }

    /// bench/stateless.lua and friends.
    static func bench(_ name: String) -> URL {
        root.appendingPathComponent("bench").appendingPathComponent(name)
    }

    /// The `starling` binary: `$STARLING_BIN` (absolute or relative to the
    /// package root) or `.build/debug/starling`. Throws when it is missing.
    static func starlingBinary() throws -> URL {
        let environment = ProcessInfo.processInfo.environment
        let url: URL
        if let explicit = environment["STARLING_BIN"], !explicit.isEmpty {
            url = explicit.hasPrefix("/") ? URL(fileURLWithPath: explicit) : root.appendingPathComponent(explicit)
        } else {
            url = root.appendingPathComponent(".build/debug/starling")
        }
        guard FileManager.default.isExecutableFile(atPath: url.path) else {
            throw HarnessError("starling binary not found at \(url.path): run `swift build` (or set STARLING_BIN)")
        }
        return url
    }

    /// A fresh temporary directory for one test's configs, logs and SIPp output.
    static func makeTemporaryDirectory(_ prefix: String) throws -> URL {
        let url = FileManager.default.temporaryDirectory
            .appendingPathComponent("\(prefix)-\(ProcessInfo.processInfo.processIdentifier)-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }
}
