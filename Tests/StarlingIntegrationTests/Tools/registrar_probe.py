#!/usr/bin/env python3
"""REGISTER edge cases for KSR.registrar, sent to one server; prints one line per case.

The server runs a script that saves every REGISTER (with received_avp set to the source), answers
INFO with the `$ulc` attributes of the R-URI's contacts (reg_fetch_contacts) and other requests
with "<code> lookup <rc> <$ru> du=<$du>" after registrar.lookup. Each line
is `name: <status line> | <registrar headers>`, with the source port and expires values normalised,
so the output of Kamailio and Starling can be compared line by line (RegistrarIntegrationTests).
Usage: registrar_probe.py --server 127.0.0.1:5060
"""
import argparse
import re
import socket
import sys

KEEP = ("SIP/2.0", "Contact", "P-Registrar", "Min-Expires", "Path", "Retry-After")


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--server", required=True)
    args = p.parse_args()
    host, port = args.server.rsplit(":", 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.settimeout(2)
    lp = s.getsockname()[1]

    def send(text: str) -> str:
        s.sendto(text.replace("LP", str(lp)).encode(), (host, int(port)))
        try:
            reply = s.recv(65535).decode(errors="replace")
        except socket.timeout:
            return "TIMEOUT"
        kept = [l for l in reply.split("\r\n") if l.startswith(KEEP)]
        out = " | ".join(kept)
        out = out.replace(f"127.0.0.1:{lp}", "SOURCE")
        # expires counts down while the test runs: round to tens
        return re.sub(r"expires=(\d+)", lambda m: "expires=%d" % round(int(m.group(1)), -1), out)

    def reg(user, contacts, expires=None, callid="c1", cseq=1, extra="", to=None):
        to = to or f"sip:{user}@127.0.0.1"
        t = (f"REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:LP;branch=z9hG4bK{user}{callid}{cseq}{len(contacts)}\r\n"
             f"Max-Forwards: 70\r\nFrom: <{to}>;tag=1\r\nTo: <{to}>\r\nCall-ID: {callid}\r\nCSeq: {cseq} REGISTER\r\n")
        for c in contacts:
            t += f"Contact: {c}\r\n"
        if expires is not None:
            t += f"Expires: {expires}\r\n"
        return t + extra + "Content-Length: 0\r\n\r\n"

    def req(user, method="INVITE", n=0):
        return (f"{method} sip:{user}@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:LP;branch=z9hG4bKi{user}{method}{n}\r\n"
                f"Max-Forwards: 70\r\nFrom: <sip:x@127.0.0.1>;tag=9\r\nTo: <sip:{user}@127.0.0.1>\r\nCall-ID: i{user}{n}\r\n"
                f"CSeq: 1 {method}\r\nContent-Length: 0\r\n\r\n")

    cases = [
        ("one contact", reg("a1", ["<sip:a1@10.0.0.1:5060>"], 600)),
        ("retransmission", reg("a1", ["<sip:a1@10.0.0.1:5060>"], 900)),
        ("older cseq", reg("a1", ["<sip:a1@10.0.0.1:5060>"], 600, cseq=0)),
        ("newer cseq", reg("a1", ["<sip:a1@10.0.0.1:5060>"], 900, cseq=2)),
        ("three contacts, q", reg("a2", ["<sip:a2@10.0.0.2>;q=0.5", "<sip:a2@10.0.0.3>;q=1.0, <sip:a2@10.0.0.4>;expires=120"], 300)),
        ("too many", reg("a2", ["<sip:a2@10.0.0.9>"], 300, callid="c9")),
        ("query", reg("a2", [], None, callid="c8")),
        ("below min_expires", reg("a3", ["<sip:a3@10.0.0.1>"], 10)),
        ("above max_expires", reg("a3", ["<sip:a3@10.0.0.1>"], 99999, cseq=2)),
        ("star, expires 60", reg("a2", ["*"], 60, callid="c7")),
        ("star and a contact", reg("a2", ["*", "<sip:a2@10.0.0.2>"], 0, callid="c7", cseq=2)),
        ("star", reg("a2", ["*"], 0, callid="c7", cseq=3)),
        ("lookup after star", req("a2")),
        ("lookup", req("a1")),
        ("Allow: MESSAGE", reg("a4", ["<sip:a4@10.0.0.4>"], 300, extra="Allow: MESSAGE\r\n")),
        ("lookup INVITE", req("a4", n=1)),
        ("lookup MESSAGE", req("a4", "MESSAGE", n=2)),
        ("expires=0 param", reg("a1", ["<sip:a1@10.0.0.1:5060>;expires=0"], None, cseq=3)),
        ("q=2", reg("a5", ["<sip:a5@10.0.0.1>;q=2"], 60)),
        ("no Expires", reg("a6", ["<sip:a6@10.0.0.1>"], None)),
        ("methods param", reg("a7", ['<sip:a7@10.0.0.1>;methods="INVITE,BYE"'], 60)),
        ("lookup MESSAGE, methods", req("a7", "MESSAGE", n=3)),
        ("Path, no use_path", reg("a8", ["<sip:a8@10.0.0.1>"], 60, extra="Path: <sip:10.9.9.9;lr>\r\n")),
        ("instance", reg("a9", ['<sip:a9@10.0.0.1>;+sip.instance="<urn:uuid:abc>";reg-id=1'], 60)),
        ("instance, new URI", reg("a9", ['<sip:a9@10.0.0.2>;+sip.instance="<urn:uuid:abc>";reg-id=1'], 60, cseq=2)),
        ("Expires: 0", reg("a6", ["<sip:a6@10.0.0.1>"], 0, cseq=2)),
        ("expires=abc", reg("b1", ["<sip:b1@10.0.0.1>;expires=abc"], 60)),
        ("no brackets", reg("b2", ["sip:b2@10.0.0.1;expires=30"], 60)),
        ("bad Contact", reg("b3", ["<sip:b3@"], 60)),
        ("no user in To", reg("", ["<sip:x@10.0.0.1>"], 60, to="sip:127.0.0.1")),
        ("Expires: abc", reg("b4", ["<sip:b4@10.0.0.1>"], "abc")),
        ("q=0", reg("b5", ["<sip:b5@10.0.0.1>;q=0", "<sip:b5@10.0.0.2>;q=0.123"], 60)),
        ("expires=-5", reg("b6", ["<sip:b6@10.0.0.1>;expires=-5"], 60)),
        ("same URI twice", reg("b7", ["<sip:b7@10.0.0.1>", "<sip:b7@10.0.0.1>;expires=100"], 60)),
        ("$ulc b5", req("b5", "INFO", n=4)),
        ("$ulc a9", req("a9", "INFO", n=5)),
        ("$ulc a4", req("a4", "INFO", n=6)),
        ("$ulc nobody", req("nobody", "INFO", n=7)),
    ]
    for name, text in cases:
        print(f"{name}: {send(text)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
