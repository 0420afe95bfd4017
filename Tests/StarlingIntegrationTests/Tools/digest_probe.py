#!/usr/bin/env python3
"""Digest authentication edge cases against a registrar, for comparing Starling with Kamailio.

Gets a challenge with a REGISTER, then sends a fixed sequence of REGISTERs with crafted credentials
(nc replay, nc above 255, no qop, wrong password, tampered nonce, malformed nc, From/To and auth user
mismatches) and prints one line per step: `<step> <status code> <X-RC header or ->`. The script under
test is expected to put its check's return code in an `X-RC` reply header. Standard library only;
reuses digest_client.py's challenge parser.

Usage: digest_probe.py --server 127.0.0.1:5060 --algorithm SHA-256 [--password secret]
"""

import argparse
import hashlib
import os
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import digest_client  # noqa: E402

HASHES = {
    "MD5": lambda b: hashlib.md5(b).hexdigest(),
    "SHA-256": lambda b: hashlib.sha256(b).hexdigest(),
}


class Probe:
    def __init__(self, server, algorithm, password):
        host, _, port = server.rpartition(":")
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.sock.connect((host, int(port)))
        self.sock.settimeout(3)
        self.local = self.sock.getsockname()
        self.cseq = 0
        self.call_id = "%s@digest-probe" % os.urandom(6).hex()
        self.h = HASHES[algorithm]
        self.algorithm = algorithm
        self.password = password

    def register(self, auth=None, user="alice", from_user=None):
        self.cseq += 1
        lines = [
            "REGISTER sip:example.com SIP/2.0",
            "Via: SIP/2.0/UDP %s:%d;branch=z9hG4bK%s;rport" % (self.local[0], self.local[1], os.urandom(5).hex()),
            "Max-Forwards: 70",
            "From: <sip:%s@example.com>;tag=probe1" % (from_user or user),
            "To: <sip:%s@example.com>" % user,
            "Call-ID: %s" % self.call_id,
            "CSeq: %d REGISTER" % self.cseq,
            "Contact: <sip:%s@%s:%d>" % (user, self.local[0], self.local[1]),
        ]
        if auth:
            lines.append("Authorization: " + auth)
        lines.append("Content-Length: 0")
        self.sock.send(("\r\n".join(lines) + "\r\n\r\n").encode())
        while True:
            text = self.sock.recv(65535).decode("utf-8", "replace")
            status_line, headers = digest_client.headers_of(text)
            code = int(status_line.split(" ")[1])
            if code >= 200:
                return code, headers

    def credentials(self, ch, nc=1, password=None, nonce=None, user="alice", qop=True, nc_text=None):
        h = self.h
        nonce = nonce or ch["nonce"]
        realm = ch["realm"]
        uri = "sip:example.com"
        ha1 = h(("%s:%s:%s" % (user, realm, password or self.password)).encode())
        ha2 = h(("REGISTER:%s" % uri).encode())
        base = 'Digest username="%s", realm="%s", nonce="%s", uri="%s"' % (user, realm, nonce, uri)
        if not qop:
            r = h(("%s:%s:%s" % (ha1, nonce, ha2)).encode())
            return base + ', response="%s", algorithm=%s' % (r, self.algorithm)
        ncs = "%08x" % nc
        r = h(("%s:%s:%s:c0ffee:auth:%s" % (ha1, nonce, ncs, ha2)).encode())
        return base + ', response="%s", algorithm=%s, cnonce="c0ffee", qop=auth, nc=%s' % (
            r, self.algorithm, nc_text or ncs)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--server", required=True)
    p.add_argument("--algorithm", default="MD5", choices=sorted(HASHES))
    p.add_argument("--password", default="secret")
    args = p.parse_args()
    probe = Probe(args.server, args.algorithm, args.password)

    def show(step, result):
        code, headers = result
        rc = [v for (n, v) in headers if n == "x-rc"]
        print("%s %d %s" % (step, code, rc[0] if rc else "-"), flush=True)
        return headers

    try:
        headers = show("no-credentials", probe.register())
        challenges = [digest_client.parse_challenge(v) for (n, v) in headers if n == "www-authenticate"]
        challenges = [c for c in challenges if c]
        if not challenges:
            print("ERROR no WWW-Authenticate challenge", flush=True)
            return 2
        ch = challenges[0]
        print("challenge qop=%s algorithm=%s" % (ch.get("qop", "-"), ch.get("algorithm", "-")), flush=True)
        show("nc1", probe.register(probe.credentials(ch, 1)))
        show("nc1-replayed", probe.register(probe.credentials(ch, 1)))
        show("nc2", probe.register(probe.credentials(ch, 2)))
        show("nc256", probe.register(probe.credentials(ch, 256)))
        show("no-qop", probe.register(probe.credentials(ch, qop=False)))
        show("wrong-password", probe.register(probe.credentials(ch, 3, password="wrong")))
        tampered = list(ch["nonce"])
        tampered[20] = "A" if tampered[20] != "A" else "B"
        show("tampered-nonce", probe.register(probe.credentials(ch, 4, nonce="".join(tampered))))
        show("malformed-nc", probe.register(probe.credentials(ch, 5, nc_text="5")))
        show("from-to-mismatch", probe.register(probe.credentials(ch, 6), from_user="bob"))
        show("auth-user-mismatch", probe.register(probe.credentials(ch, 7, user="bob"), user="alice"))
        show("other-realm", probe.register(probe.credentials(dict(ch, realm="other.example"), 8)))
        return 0
    except socket.timeout:
        print("ERROR timeout", flush=True)
        return 2


if __name__ == "__main__":
    sys.exit(main())
