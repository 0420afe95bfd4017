import Glibc
import Testing

/// Lua errors long-jump; a jump over a Swift frame skips releases and `defer`s. Only the C shim may
/// raise, so no Swift source may call the raising Lua API.
@Suite("No Swift code raises Lua errors")
struct SwiftNeverRaisesTests {
    static let banned = ["lua_error", "luaL_error", "luaL_check", "luaL_arg", "luaL_opt", "lua_yield"]

    @Test func swiftSourcesDoNotCallRaisingLuaAPI() throws {
        // Tests/StarlingLuaTests/<file>.swift -> <package>/Sources
        var parts = #filePath.split(separator: "/", omittingEmptySubsequences: false)
        parts.removeLast(3)
        let sources = parts.joined(separator: "/") + "/Sources"
        let files = swiftFiles(under: sources)
        #expect(files.count > 5, "found no Swift sources under \(sources)")
        var offenders: [String] = []
        for file in files {
            guard let text = try? String(contentsOfFileAtPath: file) else { continue }
            for (n, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
                for word in Self.banned where line.contains(word) {
                    offenders.append("\(file):\(n + 1): \(word)")
                }
            }
        }
        #expect(offenders.isEmpty, "\(offenders.joined(separator: "\n"))")
    }
}

private extension String {
    init(contentsOfFileAtPath path: String) throws {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw POSIXErrorCode.ENOENT }
        defer { close(fd) }
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n <= 0 { break }
            out.append(contentsOf: buf[0..<n])
        }
        self = String(decoding: out, as: UTF8.self)
    }
}

extension POSIXErrorCode: @retroactive Error {}

private func swiftFiles(under dir: String) -> [String] {
    guard let d = opendir(dir) else { return [] }
    defer { closedir(d) }
    var out: [String] = []
    while let e = readdir(d) {
        let name = withUnsafeBytes(of: e.pointee.d_name) { raw in
            String(cString: raw.bindMemory(to: CChar.self).baseAddress!)
        }
        if name == "." || name == ".." { continue }
        let path = dir + "/" + name
        if e.pointee.d_type == UInt8(DT_DIR) {
            out += swiftFiles(under: path)
        } else if name.hasSuffix(".swift") {
            out.append(path)
        }
    }
    return out
}
