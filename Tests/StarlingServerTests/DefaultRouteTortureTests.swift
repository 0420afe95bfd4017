import Foundation
import Testing
import SIPCore
import SIPTransport
import StarlingServer
import StarlingTesting

/// routes/default.lua on every RFC 4475 message, through the same dispatcher the workers use, with the
/// network recorded. The expected outcome of each file is the committed table
/// Tests/StarlingIntegrationTests/Fixtures/default-lua-outcomes.tsv, which the network test (inside a
/// namespace) checks again over real UDP.
@Suite struct DefaultRouteTortureTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let corpus = root.appendingPathComponent("Tests/StarlingIntegrationTests/Fixtures/rfc4475")

    static let expected: [(String, String)] = {
        let text = try! String(contentsOf: root.appendingPathComponent("Tests/StarlingIntegrationTests/Fixtures/default-lua-outcomes.tsv"), encoding: .utf8)
        return text.split(separator: "\n").filter { !$0.hasPrefix("#") && !$0.hasPrefix("name\t") }.map {
            let f = $0.split(separator: "\t")
            return (String(f[0]), String(f[1]))
        }
    }()

    @Test func tableCoversCorpus() throws {
        let files = try FileManager.default.contentsOfDirectory(atPath: Self.corpus.path).filter { $0.hasSuffix(".dat") }
        #expect(Set(files) == Set(Self.expected.map { $0.0 }))
    }

    @Test("outcome", arguments: expected.map { $0.0 })
    func outcome(_ name: String) throws {
        let expected = try #require(Self.expected.first { $0.0 == name }?.1)
        let bytes = [UInt8](try Data(contentsOf: Self.corpus.appendingPathComponent(name)))
        let services = TestServices(anyHost: SocketAddress(ip: "127.0.0.2", port: 5060)!)
        let h = try ScriptHarness(scriptFile: Self.root.appendingPathComponent("routes/default.lua").path, services: services)
        h.source = SocketAddress(ip: "127.0.0.3", port: 5060)!
        let result = h.route(bytes: bytes)
        let got: String
        if case .rejected(let status) = result {
            got = String(status)
        } else if let first = h.sender.sent.first, let m = first.message {
            got = m.isRequest ? "forward" : String(m.statusCode)
        } else {
            got = "drop"
        }
        #expect(got == expected, "\(name): \(result)")
    }
}
