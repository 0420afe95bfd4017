import ArgumentParser
import KSRModules
import StarlingTesting
#if canImport(Glibc)
import Glibc
#endif

struct ApiCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "api", abstract: "Print the KSR API reference generated from the export tables.",
        discussion: """
            --markdown prints docs/KSR.md; --modparams prints docs/Modparams.md (every module's parameters, \
            control methods and statistics). --luals DIR writes annotation files for the Lua language \
            server (VS Code "Lua" extension, Neovim lua_ls): DIR/\(KSRModules.luaLSFileName) for the KSR \
            table and DIR/\(RouteTestRunner.luaLSFileName) for route test files. Add DIR to \
            Lua.workspace.library.
            """)

    @Flag(name: .long, help: "Markdown output (the text of docs/KSR.md).")
    var markdown = false

    @Flag(name: .long, help: "The module parameter reference (the text of docs/Modparams.md).")
    var modparams = false

    @Option(name: .long, help: ArgumentHelp("Write LuaLS/EmmyLua annotation files into this directory (created if needed).", valueName: "dir"))
    var luals: String?

    func run() throws {
        if modparams {
            print(KSRModules.modparamsReference(), terminator: "")
            return
        }
        guard let dir = luals else {
            print(KSRModules.markdownReference(), terminator: "")
            return
        }
        if !makeDirectories(dir) {
            FileError.print("starling api: cannot create '\(dir)': \(String(cString: strerror(errno)))")
            throw ExitCode(1)
        }
        for (name, text) in [(KSRModules.luaLSFileName, KSRModules.luaLSAnnotations()),
                             (RouteTestRunner.luaLSFileName, RouteTestRunner.luaLSAnnotations)] {
            let path = dir + "/" + name
            guard writeFile(path, text) else {
                FileError.print("starling api: cannot write '\(path)': \(String(cString: strerror(errno)))")
                throw ExitCode(1)
            }
            print("wrote \(path)")
        }
    }
}

/// mkdir -p.
func makeDirectories(_ path: String) -> Bool {
    var prefix = path.hasPrefix("/") ? "/" : ""
    for part in path.split(separator: "/") {
        prefix += part
        if mkdir(prefix, 0o755) != 0 && errno != EEXIST { return false }
        prefix += "/"
    }
    return true
}

func writeFile(_ path: String, _ text: String) -> Bool {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    var s = text
    return s.withUTF8 { buf in
        var off = 0
        while off < buf.count {
            let n = write(fd, buf.baseAddress! + off, buf.count - off)
            if n <= 0 { return false }
            off += n
        }
        return true
    }
}
