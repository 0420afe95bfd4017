import Foundation
import Testing
import SIPCore

/// Replays fuzz/corpus (seeds plus inputs libFuzzer found interesting) through the same calls as the
/// fuzz target, so a crash found once stays fixed.
@Suite struct FuzzCorpusReplayTests {
    static let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("fuzz/corpus")

    @Test func replayCorpus() throws {
        let files = try FileManager.default.contentsOfDirectory(atPath: Self.dir.path)
        #expect(files.count >= 50)
        for f in files {
            let bytes = [UInt8](try Data(contentsOf: Self.dir.appendingPathComponent(f)))
            for datagram in [true, false] {
                guard let m = try? SIPMessage.parse(bytes, datagram: datagram) else { continue }
                _ = try? m.validate()
                _ = (m.topVia, m.from, m.to, m.cseq, m.requestURI, m.maxForwards)
                for kind in [SIPHeaderKind.via, .contact, .route, .recordRoute] {
                    for v in m.values(kind) {
                        _ = m.parseVia(v)
                        if let na = m.parseNameAddr(v) { _ = m.unescaped(na.uri) }
                    }
                }
                _ = m.serialized()
                if m.isRequest {
                    m.addHeaderLine(Array("X-Fuzz: 1\r\n".utf8), at: .last)
                    m.setRequestURI(Array("sip:fuzz@127.0.0.1".utf8))
                    if let applied = try? m.applyingEdits() { _ = try? applied.validate() }
                    _ = SIPBuilder.reply(to: m, .init(status: 400, reason: "Bad", toTag: "t"))
                    _ = SIPBuilder.cancel(for: m)
                }
            }
        }
    }
}
