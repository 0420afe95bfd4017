import ArgumentParser
import SIPCore
#if canImport(Glibc)
import Glibc
#endif

struct ParseCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "parse",
        abstract: "Show how Starling reads one SIP message, as JSON.",
        discussion: """
            Reads one SIP message (raw bytes, CRLF line ends) from FILE, or from standard input when FILE \
            is '-', runs the full validation and prints the message as JSON: kind, method or status, the \
            Request-URI's parts, every header (name as written, canonical name, raw value), the parsed \
            Via, From, To, Call-ID, CSeq, Contact, Route... values and the body length.

            A message Starling refuses prints a JSON error naming the problem and what a server does \
            with it ("reply 400", "reply 505", or "drop"), and exits with status 1.

            Example: printf 'OPTIONS sip:a@b SIP/2.0\\r\\n...' | starling parse -
            """)

    @Argument(help: "The message file, or '-' for standard input.")
    var file: String

    @Flag(help: "Treat the input as received on a stream (no Content-Length means an empty body).")
    var stream = false

    func run() throws {
        guard let bytes = readAll(file) else {
            FileError.print("starling parse: cannot read '\(file)': \(String(cString: strerror(errno)))")
            throw ExitCode(2)
        }
        do {
            let m = try SIPMessage.parse(bytes, datagram: !stream)
            try m.validate()
            print(MessageJSON.describe(m).rendered)
        } catch {
            print(MessageJSON.error(error).rendered)
            throw ExitCode(1)
        }
    }
}

enum FileError {
    static func print(_ s: String) {
        var line = s + "\n"
        line.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
    }
}

/// Reads a whole file ("-" = standard input) as bytes.
func readAll(_ path: String) -> [UInt8]? {
    let fd = path == "-" ? 0 : open(path, O_RDONLY)
    guard fd >= 0 else { return nil }
    defer { if fd != 0 { close(fd) } }
    var out: [UInt8] = []
    var buf = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n < 0 { return nil }
        if n == 0 { break }
        out.append(contentsOf: buf[0..<n])
    }
    return out
}
