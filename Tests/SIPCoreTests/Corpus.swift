import Foundation

/// The RFC 4475 torture corpus shipped in Fixtures/rfc4475, with its index.
enum Corpus {
    static let directory: URL = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("Fixtures/rfc4475")

    struct Entry: Sendable, CustomStringConvertible {
        let name: String
        let kind: String
        let valid: String
        let parse: String
        let action: String
        var description: String { name }
    }

    static let entries: [Entry] = {
        let text = try! String(contentsOf: directory.appendingPathComponent("index.tsv"), encoding: .utf8)
        return text.split(separator: "\n").dropFirst().map { line in
            let f = line.split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
            return Entry(name: f[0], kind: f[2], valid: f[3], parse: f[5], action: f[6])
        }
    }()

    static func bytes(_ name: String) -> [UInt8] {
        [UInt8](try! Data(contentsOf: directory.appendingPathComponent(name)))
    }
}
