import Foundation
import Testing

/// Test targets cannot import each other, so the port allocator and the helper-process spawner are
/// copied into each target that starts helpers. The copies must stay identical.
@Suite struct SupportCopiesTests {
    static let copies: [[String]] = [
        ["Tests/StarlingIntegrationTests/Support/TestPorts.swift", "Tests/KSRModulesTests/TestPorts.swift",
         "Tests/SIPTransportTests/TestPorts.swift"],
        ["Tests/KSRModulesTests/PeerProcess.swift", "Tests/SIPTransportTests/PeerProcess.swift"],
    ]

    @Test(arguments: copies) func copiesAreIdentical(_ paths: [String]) throws {
        let texts = try paths.map { try String(contentsOf: PackagePaths.root.appendingPathComponent($0), encoding: .utf8) }
        for (path, text) in zip(paths, texts).dropFirst() {
            #expect(text == texts[0], "\(path) differs from \(paths[0]): copy one over the other")
        }
    }
}
