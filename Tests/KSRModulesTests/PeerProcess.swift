import Foundation
import Testing

/// A helper process a test talks to (a Python HTTP server, dnsmasq), spawned with a clean signal
/// mask (the test runner blocks signals and children would inherit that), its stdin a pipe so a
/// Python peer exits when the test process goes away. Killed on `stop()` / deinit.
final class PeerProcess {
    private let pid: pid_t
    private let stdinFD: Int32
    private var stopped = false
    /// The first line the process printed (the port, for peers that choose their own), or "".
    let firstLine: String

    init(_ args: [String], readFirstLine: Bool, sourceLocation: SourceLocation = #_sourceLocation) throws {
        var toChild: [Int32] = [0, 0], fromChild: [Int32] = [0, 0]
        guard pipe(&toChild) == 0, pipe(&fromChild) == 0 else { throw CocoaError(.fileWriteUnknown) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, toChild[0], 0)
        if readFirstLine {
            posix_spawn_file_actions_adddup2(&actions, fromChild[1], 1)
        } else {
            posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        }
        posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_addclose(&actions, toChild[1])
        posix_spawn_file_actions_addclose(&actions, fromChild[0])
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attr, &empty)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        sigaddset(&defaults, SIGTERM)
        sigaddset(&defaults, SIGINT)
        posix_spawnattr_setsigdefault(&attr, &defaults)
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        let argv: [UnsafeMutablePointer<CChar>?] = args.map { strdup($0) } + [nil]
        defer { for a in argv { free(a) } }
        var child: pid_t = 0
        let rc = posix_spawnp(&child, args[0], &actions, &attr, argv, environ)
        close(toChild[0])
        close(fromChild[1])
        guard rc == 0 else {
            close(toChild[1])
            close(fromChild[0])
            Issue.record("cannot start \(args[0]) (install it: scripts/install-deps.sh): \(String(cString: strerror(rc)))",
                         sourceLocation: sourceLocation)
            throw CocoaError(.executableNotLoadable)
        }
        var line: [UInt8] = []
        if readFirstLine {
            var byte: UInt8 = 0
            while read(fromChild[0], &byte, 1) == 1 && byte != UInt8(ascii: "\n") { line.append(byte) }
        }
        close(fromChild[0])
        pid = child
        stdinFD = toChild[1]
        firstLine = String(decoding: line, as: UTF8.self)
    }

    /// True while the process runs.
    var isRunning: Bool {
        var status: Int32 = 0
        return waitpid(pid, &status, WNOHANG) == 0
    }

    func stop() {
        guard !stopped else { return }
        stopped = true
        close(stdinFD)
        kill(pid, SIGKILL)
        var status: Int32 = 0
        waitpid(pid, &status, 0)
    }

    deinit { stop() }

    /// A UDP port free on 127.0.0.1 right now.
    static func freeUDPPort() -> Int {
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        defer { close(fd) }
        var a = sockaddr_in()
        a.sin_family = sa_family_t(AF_INET)
        a.sin_addr.s_addr = inet_addr("127.0.0.1")
        a.sin_port = 0
        _ = withUnsafePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        return Int(UInt16(bigEndian: a.sin_port))
    }
}

/// A local HTTP server (Python's http.server) with the answers the http_client tests need.
///
/// - `GET /route` → 200 "sip:alice@10.0.0.1\nsecond line\n"
/// - `GET /notfound` → 404 "no such user\n"; `/error` → 500 "boom\n"; `/empty` → 204
/// - `/slow` → waits 5 s, then 200 "late\n"
/// - `/echo` (any method) → 200 "<method>|<content-type>|<x-test header>|<body>"
/// - `/auth` → 200 "authorized" with Basic user:pw, else 401
/// - `/port` → 200 "<client port>" (the same port on two requests = the connection was reused)
final class TestHTTPServer {
    let process: PeerProcess
    let port: Int
    var base: String { "http://127.0.0.1:\(port)" }

    static let script = #"""
import base64, os, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    wbufsize = 65536  # headers and body in one segment (no Nagle / delayed-ACK stall on keep-alive)
    def log_message(self, *a): pass
    def reply(self, code, body):
        b = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(b)))
        self.end_headers()
        self.wfile.write(b)
        self.wfile.flush()
    def handle_any(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n).decode() if n else ""
        p = self.path.split("?")[0]
        if p == "/route": return self.reply(200, "sip:alice@10.0.0.1\nsecond line\n")
        if p == "/notfound": return self.reply(404, "no such user\n")
        if p == "/error": return self.reply(500, "boom\n")
        if p == "/empty":
            self.send_response(204); self.send_header("Content-Length", "0"); self.end_headers(); self.wfile.flush(); return
        if p == "/slow":
            time.sleep(5); return self.reply(200, "late\n")
        if p == "/echo":
            return self.reply(200, "%s|%s|%s|%s" % (self.command, self.headers.get("Content-Type") or "",
                                                   self.headers.get("X-Test") or "", body))
        if p == "/auth":
            if self.headers.get("Authorization") == "Basic " + base64.b64encode(b"user:pw").decode():
                return self.reply(200, "authorized")
            self.send_response(401); self.send_header("WWW-Authenticate", 'Basic realm="t"')
            self.send_header("Content-Length", "0"); self.end_headers(); self.wfile.flush(); return
        if p == "/port": return self.reply(200, str(self.client_address[1]))
        self.reply(404, "unknown path\n")
    do_GET = do_POST = do_PUT = do_DELETE = handle_any
s = ThreadingHTTPServer(("127.0.0.1", 0), H)
s.daemon_threads = True
print(s.server_address[1], flush=True)
def watch():
    while os.read(0, 1): pass
    os._exit(0)
threading.Thread(target=watch, daemon=True).start()
s.serve_forever()
"""#

    init(sourceLocation: SourceLocation = #_sourceLocation) throws {
        process = try PeerProcess(["python3", "-u", "-c", Self.script], readFirstLine: true, sourceLocation: sourceLocation)
        guard let p = Int(process.firstLine) else {
            Issue.record("the test HTTP server did not start (python3 is required)", sourceLocation: sourceLocation)
            throw CocoaError(.executableLoad)
        }
        port = p
    }
}

/// dnsmasq serving NAPTR records on 127.0.0.1 (a free port), nothing else (no upstream, no hosts).
final class TestDNSMasq {
    let process: PeerProcess
    let port: Int

    /// `naptr`: dnsmasq `--naptr-record` values ("name,order,preference,flags,service,regexp").
    init(naptr: [String], sourceLocation: SourceLocation = #_sourceLocation) throws {
        port = PeerProcess.freeUDPPort()
        let user = getpwuid(getuid()).map { String(cString: $0.pointee.pw_name) } ?? "root"
        var args = ["dnsmasq", "--keep-in-foreground", "--no-resolv", "--no-hosts", "--no-poll", "--conf-file=/dev/null",
                    "--port=\(port)", "--listen-address=127.0.0.1", "--bind-interfaces", "--pid-file=",
                    "--user=\(user)", "--local-ttl=60"]
        args += naptr.map { "--naptr-record=\($0)" }
        process = try PeerProcess(args, readFirstLine: false, sourceLocation: sourceLocation)
        // wait until it answers (a query for a name it has)
        let deadline = Date().addingTimeInterval(5)
        while Date() < deadline {
            if !process.isRunning { break }
            if Self.listening(port) { return }
            usleep(20_000)
        }
        Issue.record("dnsmasq did not start on 127.0.0.1:\(port) (install dnsmasq-base: scripts/install-deps.sh)",
                     sourceLocation: sourceLocation)
        throw CocoaError(.executableLoad)
    }

    /// True if something is bound to the UDP port (binding it fails).
    private static func listening(_ port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        defer { close(fd) }
        var a = sockaddr_in()
        a.sin_family = sa_family_t(AF_INET)
        a.sin_addr.s_addr = inet_addr("127.0.0.1")
        a.sin_port = UInt16(port).bigEndian
        let rc = withUnsafePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        return rc != 0
    }
}
