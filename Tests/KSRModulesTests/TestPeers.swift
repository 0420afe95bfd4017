import Foundation
import StarlingTestSupport

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

    /// Starts the server; it binds 127.0.0.1 port 0 and prints the port it got once it listens.
    init() throws {
        process = try PeerProcess(["python3", "-u", "-c", Self.script], package: "python3", readFirstLine: true)
        guard let p = Int(process.firstLine) else {
            throw HelperFailure("the test HTTP server printed \"\(process.firstLine)\" instead of its port; stderr:\n\(process.stderr)")
        }
        port = p
    }
}


/// dnsmasq serving NAPTR records on 127.0.0.1, nothing else (no upstream, no hosts).
final class TestDNSMasq {
    let process: PeerProcess
    let port: Int

    /// `naptr`: dnsmasq `--naptr-record` values ("name,order,preference,flags,service,regexp"). Started
    /// on a free port (again on a fresh one if the port is taken before dnsmasq binds it); returns once
    /// dnsmasq itself holds the port and answers a query.
    init(naptr: [String]) throws {
        (process, port) = try TestPorts.retrying { port in
            let process = try PeerProcess(["dnsmasq"] + DNSMasqCommand.arguments(port: port, naptr: naptr),
                                          package: "dnsmasq-base", readFirstLine: false)
            let started = ContinuousClock.now
            let ready = try TestPorts.wait(failed: {
                process.isRunning ? nil : "dnsmasq exited before answering on 127.0.0.1:\(port); stderr:\n\(process.stderr)"
            }, until: { TestPorts.holdsUDP(port, pid: process.pid) && TestPorts.dnsAnswers(port: port) })
            guard ready else {
                let stderr = process.stderr
                process.stop()
                throw HelperFailure("dnsmasq did not answer a query on 127.0.0.1:\(port) "
                                    + "\(ContinuousClock.now - started) after it started; stderr:\n\(stderr)")
            }
            return (process, port)
        }
    }
}
