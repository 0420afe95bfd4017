#!/usr/bin/env python3
"""REGISTER with digest authentication over UDP on loopback, for the algorithms SIPp lacks.

Sends a REGISTER, answers the 401 challenge with credentials computed with the challenge's
algorithm (MD5, MD5-sess, SHA-256, SHA-256-sess; RFC 8760 / RFC 7616 rules, qop=auth when
offered), and prints one line per reply received:

    1 REGISTER 401 algorithm=SHA-256 qop=-
    2 REGISTER 200

Exit status 0 when a final reply to each request arrived, 2 on a timeout or a bad challenge.
Only loopback addresses (127.x.y.z) are accepted, for the server and the source.
"""
import argparse
import hashlib
import os
import re
import socket
import sys
import uuid

HASHES = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}


def digest(name, text):
    return HASHES[name](text.encode()).hexdigest()


def parse_challenge(value):
    scheme, _, rest = value.strip().partition(" ")
    if scheme.lower() != "digest":
        return None
    params = {}
    for m in re.finditer(r'([A-Za-z0-9_-]+)\s*=\s*("([^"]*)"|[^,\s]+)', rest):
        params[m.group(1).lower()] = m.group(3) if m.group(3) is not None else m.group(2)
    return params


def header_values(message, name):
    values = []
    for line in message.split("\r\n")[1:]:
        if not line:
            break
        key, sep, value = line.partition(":")
        if sep and key.strip().lower() == name.lower():
            values.append(value.strip())
    return values


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--server", required=True, help="IP:PORT of the registrar (loopback)")
    p.add_argument("--source", default="127.0.0.1", help="local loopback address to send from")
    p.add_argument("--user", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--domain", required=True)
    p.add_argument("--algorithm", default="SHA-256",
                   help="the challenge to answer when several are offered (default SHA-256)")
    p.add_argument("--timeout", type=float, default=3.0)
    a = p.parse_args()
    host, _, port = a.server.rpartition(":")
    if not host.startswith("127.") or not a.source.startswith("127."):
        sys.exit("loopback addresses only")
    server = (host, int(port))
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((a.source, 0))
    s.settimeout(a.timeout)
    local_port = s.getsockname()[1]
    call_id = uuid.uuid4().hex
    tag = uuid.uuid4().hex[:10]
    ruri = "sip:" + a.domain

    def request(cseq, authorization=None):
        lines = [
            f"REGISTER {ruri} SIP/2.0",
            f"Via: SIP/2.0/UDP {a.source}:{local_port};branch=z9hG4bK{uuid.uuid4().hex[:16]};rport",
            f"From: <sip:{a.user}@{a.domain}>;tag={tag}",
            f"To: <sip:{a.user}@{a.domain}>",
            f"Call-ID: {call_id}",
            f"CSeq: {cseq} REGISTER",
            f"Contact: <sip:{a.user}@{a.source}:{local_port}>",
            "Expires: 600",
            "Max-Forwards: 70",
            "User-Agent: Starling digest_register.py",
        ]
        if authorization:
            lines.append("Authorization: " + authorization)
        lines += ["Content-Length: 0", "", ""]
        s.sendto("\r\n".join(lines).encode(), server)

    def final_reply(cseq):
        while True:
            try:
                data = s.recv(65535).decode(errors="replace")
            except socket.timeout:
                print(f"{cseq} REGISTER timeout")
                sys.exit(2)
            first = data.split("\r\n", 1)[0].split(" ")
            if len(first) < 2 or first[0] != "SIP/2.0":
                continue
            if header_values(data, "CSeq") != [f"{cseq} REGISTER"]:
                continue
            code = int(first[1])
            if code >= 200:
                return code, data

    request(1)
    code, reply = final_reply(1)
    if code != 401:
        print(f"1 REGISTER {code}")
        return 0
    challenges = [c for c in map(parse_challenge, header_values(reply, "WWW-Authenticate")) if c]
    algorithms = [c.get("algorithm", "MD5") for c in challenges]
    chosen = next((c for c in challenges if c.get("algorithm", "MD5").upper() == a.algorithm.upper()),
                  challenges[0] if challenges else None)
    if chosen is None:
        print("1 REGISTER 401 no-digest-challenge")
        return 2
    algorithm = chosen.get("algorithm", "MD5")
    qops = [q.strip() for q in chosen.get("qop", "").split(",") if q.strip()]
    print(f"1 REGISTER 401 algorithm={','.join(algorithms)} qop={','.join(qops) or '-'}")
    base = algorithm.upper().removesuffix("-SESS")
    if base not in HASHES:
        print(f"unsupported algorithm {algorithm}")
        return 2
    realm, nonce = chosen.get("realm", ""), chosen.get("nonce", "")
    cnonce = os.urandom(8).hex()
    ha1 = digest(base, f"{a.user}:{realm}:{a.password}")
    if algorithm.upper().endswith("-SESS"):
        ha1 = digest(base, f"{ha1}:{nonce}:{cnonce}")
    ha2 = digest(base, f"REGISTER:{ruri}")
    fields = [f'username="{a.user}"', f'realm="{realm}"', f'nonce="{nonce}"', f'uri="{ruri}"',
              f"algorithm={algorithm}"]
    if "auth" in qops:
        nc = "00000001"
        response = digest(base, f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}")
        fields += ["qop=auth", f"nc={nc}", f'cnonce="{cnonce}"']
    else:
        response = digest(base, f"{ha1}:{nonce}:{ha2}")
    fields.append(f'response="{response}"')
    if "opaque" in chosen:
        fields.append(f'opaque="{chosen["opaque"]}"')
    request(2, "Digest " + ", ".join(fields))
    code, _ = final_reply(2)
    print(f"2 REGISTER {code}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
