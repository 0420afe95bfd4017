#!/usr/bin/env python3
"""A routing web service for the http_client integration test (127.0.0.1 only).

Usage: http_routing.py PORT NEXT_HOP [DELAY_MS]
GET /route?user=U answers 200 NEXT_HOP for users starting with "+1", 404 for "unknown", 500 for
"broken", waits 10 s for "slow" and 60 s for "never". With DELAY_MS every answer waits that long
first (a slow routing database). Every request is logged to stdout as "GET <path>".
"""
import sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse, unquote

port, next_hop = int(sys.argv[1]), sys.argv[2]
delay = int(sys.argv[3]) / 1000.0 if len(sys.argv) > 3 else 0

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
    def do_GET(self):
        print("GET", self.path, flush=True)
        u = urlparse(self.path)
        # "+" stays "+" (the example does not percent-encode the user)
        user = next((unquote(kv[5:]) for kv in u.query.split("&") if kv.startswith("user=")), "")
        if u.path != "/route": return self.reply(404, "unknown path\n")
        if delay: time.sleep(delay)
        if user == "never": time.sleep(60); return self.reply(200, next_hop + "\n")
        if user == "slow": time.sleep(10); return self.reply(200, next_hop + "\n")
        if user == "broken": return self.reply(500, "internal error\n")
        if user.startswith("+1"): return self.reply(200, next_hop + "\nignored second line\n")
        return self.reply(404, "unknown user\n")

s = ThreadingHTTPServer(("127.0.0.1", port), H)
s.daemon_threads = True
print("listening", port, flush=True)
s.serve_forever()
