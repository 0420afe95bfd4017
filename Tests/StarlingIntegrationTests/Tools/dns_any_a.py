#!/usr/bin/env python3
"""A tiny DNS server for tests: every A query is answered with one address
(default 127.0.0.2); every other type (AAAA, SRV, NAPTR, ...) gets NOERROR with
no data, so an RFC 3263 resolver falls back to A records.

    dns_any_a.py --port 5353 [--listen 127.0.0.1] [--answer 127.0.0.2] [--ttl 60]

Loopback only: it refuses to listen on or answer with a non-loopback address.
Prints "ready <ip>:<port>" on stdout once bound; exits on SIGTERM/SIGINT.
Every query is logged to stderr ("A example.com -> 127.0.0.2"). Python 3 stdlib only.
"""

from __future__ import annotations

import argparse
import ipaddress
import socket
import struct
import sys

TYPE_A = 1
TYPE_NAMES = {1: "A", 28: "AAAA", 33: "SRV", 35: "NAPTR", 5: "CNAME", 15: "MX", 16: "TXT", 12: "PTR"}


def loopback(text: str, what: str) -> str:
    address = ipaddress.ip_address(text)
    if address.version != 4 or not address.is_loopback:
        raise SystemExit(f"dns_any_a: {what} must be an IPv4 loopback address, not {text}")
    return text


def parse_question(data: bytes) -> tuple[str, int, int, int] | None:
    """(qname, qtype, qclass, end offset of the question) or None when malformed."""
    if len(data) < 12 or struct.unpack("!H", data[4:6])[0] != 1:
        return None
    p, labels = 12, []
    while True:
        if p >= len(data):
            return None
        length = data[p]
        if length == 0:
            p += 1
            break
        if length & 0xC0:  # no compression in questions
            return None
        labels.append(data[p + 1:p + 1 + length].decode("latin-1"))
        p += 1 + length
    if p + 4 > len(data):
        return None
    qtype, qclass = struct.unpack("!HH", data[p:p + 4])
    return ".".join(labels), qtype, qclass, p + 4


def answer(data: bytes, address: bytes, ttl: int) -> tuple[bytes, str] | None:
    question = parse_question(data)
    if question is None:
        return None
    qname, qtype, qclass, end = question
    qid, flags = struct.unpack("!HH", data[:4])
    # QR, AA, RD copied, RA; rcode 0.
    out_flags = 0x8400 | (flags & 0x0100) | 0x0080
    answers = b""
    count = 0
    if qtype == TYPE_A and qclass == 1:
        answers = struct.pack("!HHHIH", 0xC00C, TYPE_A, 1, ttl, 4) + address
        count = 1
    header = struct.pack("!HHHHHH", qid, out_flags, 1, count, 0, 0)
    kind = TYPE_NAMES.get(qtype, str(qtype))
    note = f"{kind} {qname} -> " + (socket.inet_ntoa(address) if count else "no data")
    return header + data[12:end] + answers, note


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--listen", default="127.0.0.1", help="address to bind [127.0.0.1]")
    p.add_argument("--port", type=int, required=True, help="UDP port to bind")
    p.add_argument("--answer", default="127.0.0.2", help="the address of every A record [127.0.0.2]")
    p.add_argument("--ttl", type=int, default=60, help="TTL of the A records [60]")
    args = p.parse_args(argv)
    listen = loopback(args.listen, "--listen")
    address = socket.inet_aton(loopback(args.answer, "--answer"))

    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((listen, args.port))
    print(f"ready {listen}:{s.getsockname()[1]}", flush=True)
    try:
        while True:
            data, peer = s.recvfrom(4096)
            result = answer(data, address, args.ttl)
            if result is None:
                print(f"malformed query from {peer[0]}:{peer[1]} ({len(data)} bytes)", file=sys.stderr, flush=True)
                continue
            reply, note = result
            print(note, file=sys.stderr, flush=True)
            s.sendto(reply, peer)
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
