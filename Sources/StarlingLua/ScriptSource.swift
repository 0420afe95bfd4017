import Glibc

/// A script's path and bytes: what a watcher publishes and what every worker builds its state from.
public struct ScriptSource: Sendable, Hashable {
    /// The path as given (error messages and tracebacks show it).
    public let path: String
    public let bytes: [UInt8]

    public init(path: String, bytes: [UInt8]) {
        self.path = path
        self.bytes = bytes
    }

    /// Reads a script file.
    public static func read(path: String) throws(LuaScriptError) -> ScriptSource {
        guard let bytes = readFile(path) else {
            throw LuaScriptError(kind: .io, message: "\(path): cannot read file (errno \(errno))")
        }
        return ScriptSource(path: path, bytes: bytes)
    }

    /// The directory holding the script, absolute when it exists ("." for a bare file name).
    var directory: String {
        let dir: String
        if let slash = path.utf8.lastIndex(of: UInt8(ascii: "/")) {
            dir = slash == path.utf8.startIndex ? "/" : String(path[..<slash])
        } else {
            dir = "."
        }
        return absolutePath(dir) ?? dir
    }
}

/// Reads a whole file with open/read (no Foundation). nil on error.
func readFile(_ path: String) -> [UInt8]? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var out: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 64 * 1024)
    while true {
        let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n < 0 {
            if errno == EINTR { continue }
            return nil
        }
        if n == 0 { break }
        out.append(contentsOf: chunk[0..<n])
    }
    return out
}

/// realpath(3); nil if the path does not exist.
func absolutePath(_ path: String) -> String? {
    guard let p = realpath(path, nil) else { return nil }
    defer { free(p) }
    return String(cString: p)
}

/// A content hash of a script and the modules it loaded, for logs ("version 3f2a9c01b7e4 active").
/// FNV-1a 64 over each file's bytes (with a separator), so moving files does not change it.
public struct ScriptVersion: Sendable, Hashable, CustomStringConvertible {
    public let value: UInt64

    public init(value: UInt64) { self.value = value }

    /// Hashes the given files' bytes, in order.
    public init(files: [(path: String, bytes: [UInt8])]) {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        func mix<S: Sequence>(_ s: S) where S.Element == UInt8 {
            for b in s {
                h ^= UInt64(b)
                h = h &* 0x0000_0100_0000_01b3
            }
        }
        for f in files {
            mix(f.bytes)
            mix(CollectionOfOne(0))
        }
        value = h
    }

    /// 16 hex digits.
    public var description: String {
        let s = String(value, radix: 16)
        return String(repeating: "0", count: 16 - s.count) + s
    }
}
