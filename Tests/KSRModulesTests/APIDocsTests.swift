import Testing
import KSRModules
#if canImport(Glibc)
import Glibc
#endif

/// docs/KSR.md must be the output of `starling api --markdown`. Set STARLING_WRITE_DOCS=1 to rewrite it
/// from this test instead of running the command.
@Suite struct APIDocsTests {
    static var docsPath: String {
        // Tests/KSRModulesTests/APIDocsTests.swift -> repository root
        var parts = String(#filePath).split(separator: "/", omittingEmptySubsequences: false)
        parts.removeLast(3)
        return parts.joined(separator: "/") + "/docs/KSR.md"
    }

    static func read(_ path: String) -> String? {
        guard let f = fopen(path, "rb") else { return nil }
        defer { fclose(f) }
        var data: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = fread(&buf, 1, buf.count, f)
            if n <= 0 { break }
            data.append(contentsOf: buf[0..<n])
        }
        return String(decoding: data, as: UTF8.self)
    }

    @Test func committedReferenceIsCurrent() throws {
        let generated = KSRModules.markdownReference()
        if getenv("STARLING_WRITE_DOCS") != nil, let f = fopen(Self.docsPath, "wb") {
            _ = Array(generated.utf8).withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, f) }
            fclose(f)
        }
        let committed = Self.read(Self.docsPath)
        #expect(committed == generated,
                "docs/KSR.md is stale: regenerate it with `\(KSRModules.markdownCommand)` (or STARLING_WRITE_DOCS=1 swift test --filter APIDocsTests)")
    }

    @Test func referenceListsEveryExport() {
        let md = KSRModules.markdownReference()
        #expect(md.contains("## KSR.textops ("))
        #expect(md.contains("| `cmp_str` | str, str | int | same |"))
        #expect(md.contains("| `is_user` | str | int | same |"))
        #expect(md.contains("## KSR (core) ("))
    }
}

/// docs/Modparams.md must be the output of `starling api --modparams` (STARLING_WRITE_DOCS=1 rewrites it).
@Suite struct ModparamDocsTests {
    static var docsPath: String { APIDocsTests.docsPath.replacingSuffix("KSR.md", with: "Modparams.md") }

    @Test func committedModparamReferenceIsCurrent() throws {
        let generated = KSRModules.modparamsReference()
        if getenv("STARLING_WRITE_DOCS") != nil, let f = fopen(Self.docsPath, "wb") {
            _ = Array(generated.utf8).withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, f) }
            fclose(f)
        }
        #expect(APIDocsTests.read(Self.docsPath) == generated,
                "docs/Modparams.md is stale: regenerate it with `\(KSRModules.modparamsCommand)` (or STARLING_WRITE_DOCS=1 swift test --filter ModparamDocsTests)")
    }

    @Test func referenceShowsImplementedAndAcceptedParameters() {
        let md = KSRModules.modparamsReference()
        #expect(md.contains("| `fr_timer` | int | `30000` |"))
        #expect(md.contains("`ruri_matching` (int)"))
        #expect(md.contains("Control methods: `htable.dump`"))
        #expect(md.contains("`tmx:active_transactions` (`starling_transactions_active`)"))
    }
}

extension String {
    fileprivate func replacingSuffix(_ suffix: String, with new: String) -> String {
        hasSuffix(suffix) ? String(dropLast(suffix.count)) + new : self
    }
}
