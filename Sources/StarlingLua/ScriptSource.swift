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
