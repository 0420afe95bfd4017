#!/usr/bin/env python3
"""A minimal SIP UDP client for digest authentication tests (standard library only).

Sends a REGISTER (or another request with --method), answers a 401/407 challenge with digest
credentials (RFC 2617 MD5, RFC 8760 SHA-256 / SHA-512-256; qop=auth when the challenge offers it)
and prints every status line it receives, then `FINAL <code>`. SIPp only does MD5; this client is
how the tests exercise SHA-256.

Exit status: 0 when the final response is 2xx, 1 for another final response, 2 on timeout/error.

Example:
  digest_client.py --server 127.0.0.1:5060 --user alice --password secret \
      --domain example.com --algorithm SHA-256
"""

import argparse
import hashlib
import os
import random
import re
import socket
import sys

HASHES = {
    "MD5": lambda b: hashlib.md5(b).hexdigest(),
    "SHA-256": lambda b: hashlib.sha256(b).hexdigest(),
    "SHA-512-256": lambda b: hashlib.new("sha512_256", b).hexdigest(),
}


def parse_challenge(value):
    """Parameters of a `Digest k=v, k="v"` challenge (keys lower-cased)."""
    scheme, _, rest = value.strip().partition(" ")
    if scheme.lower() != "digest":
        return None
    params = {}
    for m in re.finditer(r'([A-Za-z0-9_-]+)\s*=\s*("((?:[^"\\]|\\.)*)"|[^,\s]+)', rest):
        params[m.group(1).lower()] = m.group(3) if m.group(3) is not None else m.group(2)
    return params


def headers_of(message):
    head = message.split("\r\n\r\n", 1)[0]
    lines = head.split("\r\n")
    out = []
    for line in lines[1:]:
        if ":" in line:
            name, _, value = line.partition(":")
            out.append((name.strip().lower(), value.strip()))
    return lines[0], out


def build_request(args, local, cseq, call_id, from_tag, branch, authorization=None, auth_header="Authorization"):
    ruri = args.ruri or "sip:%s" % args.domain
    aor = "sip:%s@%s" % (args.user, args.domain)
    lines = [
        "%s %s SIP/2.0" % (args.method, ruri),
        "Via: SIP/2.0/UDP %s:%d;branch=%s;rport" % (local[0], local[1], branch),
        "Max-Forwards: 70",
        "From: <%s>;tag=%s" % (aor, from_tag),
        "To: <%s>" % (args.to or aor),
        "Call-ID: %s" % call_id,
        "CSeq: %d %s" % (cseq, args.method),
        "Contact: <sip:%s@%s:%d>" % (args.user, local[0], local[1]),
        "User-Agent: starling-digest-client",
    ]
    if args.method == "REGISTER":
        lines.append("Expires: %d" % args.expires)
    if authorization:
        lines.append("%s: %s" % (auth_header, authorization))
    lines.append("Content-Length: 0")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def digest_response(args, challenge, ruri, nc=1):
    algorithm = challenge.get("algorithm", args.algorithm or "MD5")
    name = algorithm.upper()
    if name.endswith("-SESS"):
        name = name[:-5]
    if name not in HASHES:
        raise ValueError("unsupported algorithm %s" % algorithm)
    h = HASHES[name]
    realm = challenge.get("realm", "")
    nonce = challenge.get("nonce", "")
    username = args.auth_user or args.user
    ha1 = h(("%s:%s:%s" % (username, realm, args.password)).encode())
    ha2 = h(("%s:%s" % (args.method, ruri)).encode())
    qops = [q.strip() for q in challenge.get("qop", "").split(",") if q.strip()]
    parts = [
        'username="%s"' % username,
        'realm="%s"' % realm,
        'nonce="%s"' % nonce,
        'uri="%s"' % ruri,
    ]
    if "auth" in qops:
        cnonce = "%016x" % random.getrandbits(64)
        ncs = "%08x" % nc
        response = h(("%s:%s:%s:%s:auth:%s" % (ha1, nonce, ncs, cnonce, ha2)).encode())
        parts += ['response="%s"' % response, "algorithm=%s" % algorithm, 'cnonce="%s"' % cnonce,
                  "qop=auth", "nc=%s" % ncs]
    else:
        response = h(("%s:%s:%s" % (ha1, nonce, ha2)).encode())
        parts += ['response="%s"' % response, "algorithm=%s" % algorithm]
    if "opaque" in challenge:
        parts.append('opaque="%s"' % challenge["opaque"])
    return "Digest " + ", ".join(parts)


def receive_final(sock, timeout, printed):
    sock.settimeout(timeout)
    while True:
        data, _ = sock.recvfrom(65535)
        text = data.decode("utf-8", "replace")
        status_line, headers = headers_of(text)
        print(status_line, flush=True)
        printed.append(status_line)
        parts = status_line.split(" ", 2)
        if len(parts) < 2 or not parts[1].isdigit():
            continue
        code = int(parts[1])
        if code >= 200:
            return code, headers


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--server", required=True, help="host:port of the registrar/proxy")
    p.add_argument("--user", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--domain", required=True, help="domain of the AoR (From/To host)")
    p.add_argument("--auth-user", help="username in the credentials (default: --user)")
    p.add_argument("--algorithm", help="algorithm when the challenge names none (default MD5)")
    p.add_argument("--method", default="REGISTER")
    p.add_argument("--ruri", help="Request-URI (default sip:<domain>)")
    p.add_argument("--to", help="To URI (default the AoR)")
    p.add_argument("--expires", type=int, default=3600)
    p.add_argument("--require-algorithm", help="fail unless the challenge names this algorithm")
    p.add_argument("--timeout", type=float, default=5.0)
    args = p.parse_args()

    host, _, port = args.server.rpartition(":")
    server = (host, int(port))
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((host, 0))
    sock.connect(server)
    local = sock.getsockname()
    call_id = "%s@digest-client" % os.urandom(8).hex()
    from_tag = os.urandom(4).hex()
    ruri = args.ruri or "sip:%s" % args.domain
    printed = []
    try:
        sock.send(build_request(args, local, 1, call_id, from_tag, "z9hG4bK" + os.urandom(6).hex()))
        code, headers = receive_final(sock, args.timeout, printed)
        if code in (401, 407):
            wanted = "www-authenticate" if code == 401 else "proxy-authenticate"
            challenges = [parse_challenge(v) for (n, v) in headers if n == wanted]
            challenges = [c for c in challenges if c]
            if not challenges:
                print("ERROR no digest challenge in %d" % code, flush=True)
                return 2
            challenge = challenges[0]
            if args.require_algorithm:
                got = challenge.get("algorithm", "")
                if got.upper() != args.require_algorithm.upper():
                    print("ERROR challenge algorithm %r, expected %s" % (got, args.require_algorithm), flush=True)
                    return 2
            authorization = digest_response(args, challenge, ruri)
            header = "Authorization" if code == 401 else "Proxy-Authorization"
            sock.send(build_request(args, local, 2, call_id, from_tag, "z9hG4bK" + os.urandom(6).hex(),
                                    authorization, header))
            code, headers = receive_final(sock, args.timeout, printed)
        print("FINAL %d" % code, flush=True)
        return 0 if 200 <= code < 300 else 1
    except socket.timeout:
        print("ERROR timeout after: %s" % (" | ".join(printed) or "nothing"), flush=True)
        return 2
    except (OSError, ValueError) as e:
        print("ERROR %s" % e, flush=True)
        return 2


if __name__ == "__main__":
    sys.exit(main())
