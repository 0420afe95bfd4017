#!/usr/bin/env python3
"""Send SIP torture messages (one .dat file = one UDP datagram) to a proxy and
report what it did with each: answered (status code), forwarded, or dropped.

    udp_torture.py --server 127.0.0.1:5080 --next-hop-port 5090 \\
        --dir Fixtures/rfc4475 --table expected.tsv [--timeout 1.0] [--json out.json]
    udp_torture.py --server 127.0.0.1:5060 --source 127.0.0.3:5060 --next-hop 127.0.0.2:5060 ...

The proxy's route script must send what it forwards to the next hop:
127.0.0.1:<next-hop-port> (e.g. $du = sip:127.0.0.1:<next-hop-port>), or the
--next-hop address (e.g. every host name resolving to 127.0.0.2, port 5060).
For each file the tool:

  1. sends the file's bytes, unchanged, as one datagram from the "sending
     socket": a fresh socket on 127.0.0.1, or on the --source address (with a
     port, the same socket every time; it is then also a reply socket);
  2. listens on the sending socket, on the next-hop socket and on the reply
     ports, all on the source address (127.0.0.1 unless --source): <port of the
     message's top Via> (5060 when absent) plus --reply-ports. A server
     answers to the source address with the Via port
     (RFC 3261 18.2.2, no rport), so a reply can land there rather than on the
     sending socket; both count as "replied";
  3. decides: the first final (>= 200) reply status if any, else `forward` when
     a datagram reached the next hop, else `drop` after --timeout seconds with
     nothing (a 1xx alone is also `drop`, noted in the details).

Table (TSV, '#' comments): `name<TAB>expected`, expected = a status code,
`drop` or `forward`; `A|B` lists accepted alternatives (e.g. `400|drop`).
A table with a header row may be given with --column to pick the column
(e.g. the corpus index.tsv with --column action --role proxy: values like
`proxy=404|forward;uas=501` use the role's part, `process` means forward and
`reject` means any 4xx/5xx/6xx or drop; a row with no part for the role, or
`*`, accepts anything).

Exit status: 0 when every file matched, 1 when anything differed, 2 on usage
errors. Everything stays on 127.0.0.0/8: the tool refuses other server addresses.
Python 3 stdlib only.
"""

from __future__ import annotations

import argparse
import csv
import ipaddress
import json
import re
import select
import socket
import sys
import time
from pathlib import Path

LOOPBACK = "127.0.0.1"
VIA_RE = re.compile(rb"^(?:via|v)[ \t]*:[ \t]*SIP[ \t]*/[ \t]*[0-9.]+[ \t]*/[ \t]*([A-Za-z]+)[ \t\r\n]+([^;,\r\n]+)",
                    re.IGNORECASE | re.MULTILINE)
STATUS_RE = re.compile(rb"^SIP/2\.0 ([0-9]{3})(?: ([^\r\n]*))?")


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--server", required=True, help="proxy address HOST:PORT (loopback only)")
    p.add_argument("--next-hop-port", type=int, help="port the proxy forwards to on 127.0.0.1")
    p.add_argument("--next-hop", help="address HOST:PORT the proxy forwards to (loopback only), instead of --next-hop-port")
    p.add_argument("--source", default=LOOPBACK,
                   help="sending address IP or IP:PORT (loopback only) [127.0.0.1, a fresh port per file]; "
                        "reply sockets are bound on this IP")
    p.add_argument("--dir", required=True, type=Path, help="directory of .dat files")
    p.add_argument("--table", required=True, type=Path, help="expected outcomes (TSV)")
    p.add_argument("--column", default=None, help="table column with the expectation (header row needed)")
    p.add_argument("--role", default="proxy", help="role to pick in `role=value;...` expectations [proxy]")
    p.add_argument("--timeout", type=float, default=1.0, help="seconds to wait per file [1.0]")
    p.add_argument("--settle", type=float, default=0.1,
                   help="extra seconds to keep listening after a final reply or a forward [0.1]")
    p.add_argument("--reply-ports", default="5060", help="extra ports on the source IP to listen on for replies [5060]")
    p.add_argument("--only", default="", help="comma-separated file names to run (default: the whole table)")
    p.add_argument("--json", type=Path, help="also write the per-file results as JSON here")
    p.add_argument("--quiet", action="store_true", help="print only differences and the summary")
    args = p.parse_args(argv)
    if (args.next_hop_port is None) == (args.next_hop is None):
        p.error("give exactly one of --next-hop-port and --next-hop")
    return args


# ------------------------------------------------------------------ table

def load_table(path: Path, column: str | None, role: str) -> dict[str, str]:
    rows = [r for r in csv.reader(path.read_text().splitlines(), delimiter="\t")
            if r and r[0].strip() and not r[0].startswith("#")]
    if not rows:
        raise SystemExit(f"udp_torture: {path} has no rows")
    header = rows[0]
    if column is not None:
        if column not in header:
            raise SystemExit(f"udp_torture: column {column!r} not in the header of {path}: {header}")
        index, body = header.index(column), rows[1:]
    else:
        first = header[1].strip() if len(header) > 1 else ""
        index, body = 1, (rows[1:] if not is_expectation(first) else rows)
    table = {}
    for r in body:
        if len(r) <= index:
            raise SystemExit(f"udp_torture: {path}: row {r} has no column {index}")
        table[r[0].strip()] = normalise(r[index].strip(), role)
    return table


def is_expectation(text: str) -> bool:
    return all(t in ("drop", "forward") or re.fullmatch(r"[1-6][0-9]{2}", t) for t in text.split("|")) if text else False


def normalise(value: str, role: str) -> str:
    """`proxy=404|forward;uas=501` -> `404|forward` for role proxy; process/reject mapped."""
    if "=" in value:
        parts = dict(p.split("=", 1) for p in value.split(";") if "=" in p)
        if role not in parts:
            return "*"  # nothing said for this role: anything is accepted
        value = parts[role]
    out = []
    for token in value.split("|"):
        token = token.strip()
        if token == "process":
            token = "forward"
        elif token == "reject":
            token = "4xx|5xx|6xx|drop"
        out.append(token)
    return "|".join(out)


def matches(observed: str, expected: str) -> bool:
    if expected == "*":
        return observed != "missing file"
    for token in expected.split("|"):
        if token == observed:
            return True
        if re.fullmatch(r"[1-6]xx", token) and re.fullmatch(r"[0-9]{3}", observed) and observed[0] == token[0]:
            return True
    return False


# ------------------------------------------------------------------ sockets

def loopback_only(host: str) -> str:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise SystemExit(f"udp_torture: addresses must be literal loopback addresses, not {host!r}")
    if not address.is_loopback or address.version != 4:
        raise SystemExit(f"udp_torture: refusing to send to {host}: only 127.0.0.0/8 is allowed")
    return host


def split_address(text: str, option: str, default_port: int | None = None) -> tuple[str, int | None]:
    host, colon, port = text.rpartition(":")
    if not colon:
        host, port = text, ""
    try:
        number = int(port) if port else default_port
    except ValueError:
        raise SystemExit(f"udp_torture: {option} wants IP or IP:PORT, not {text!r}")
    return loopback_only(host), number


def bind_udp(port: int, host: str = LOOPBACK) -> socket.socket | None:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    try:
        s.bind((host, port))
    except OSError:
        s.close()
        return None
    return s


def drain(sockets: list[socket.socket]) -> None:
    for s in sockets:
        s.setblocking(False)
        try:
            while True:
                s.recv(65535)
        except (BlockingIOError, OSError):
            pass


def top_via_port(data: bytes) -> int:
    m = VIA_RE.search(data)
    if not m:
        return 5060
    transport, sent_by = m.group(1).upper(), m.group(2).strip()
    port = re.search(rb":([0-9]{1,5})\s*$", sent_by)
    if port and 0 < int(port.group(1)) < 65536:
        return int(port.group(1))
    return 5061 if transport == b"TLS" else 5060


# ------------------------------------------------------------------ run

def run_one(name: str, data: bytes, server: tuple[str, int], next_hop: socket.socket,
            reply_sockets: dict[int, socket.socket], timeout: float, settle: float,
            source: tuple[str, int | None] = (LOOPBACK, None)) -> dict:
    source_ip, source_port = source
    if source_port is not None and source_port in reply_sockets:
        sender, own_sender = reply_sockets[source_port], False
    else:
        sender, own_sender = bind_udp(source_port or 0, source_ip), True
    if sender is None:
        raise SystemExit(f"udp_torture: cannot bind the sending socket {source_ip}:{source_port}")
    via_port = top_via_port(data)
    extra = None
    listeners: dict[socket.socket, str] = {next_hop: "next hop"}
    for port, s in reply_sockets.items():
        listeners[s] = f"{source_ip}:{port}"
    listeners[sender] = f"sending socket {source_ip}:{sender.getsockname()[1]}"
    taken = {next_hop.getsockname(), server, sender.getsockname()}
    if via_port not in reply_sockets and (source_ip, via_port) not in taken:
        extra = bind_udp(via_port, source_ip)
        if extra is not None:
            listeners[extra] = f"{source_ip}:{via_port} (Via port)"
    drain(list(listeners))

    replies, forwards = [], []
    sender.sendto(data, server)
    start = time.monotonic()
    deadline = start + timeout
    while True:
        now = time.monotonic()
        if now >= deadline:
            break
        readable, _, _ = select.select(list(listeners), [], [], deadline - now)
        for s in readable:
            try:
                payload, source = s.recvfrom(65535)
            except OSError:
                continue
            elapsed_ms = round((time.monotonic() - start) * 1000, 2)
            if s is next_hop:
                first = payload.split(b"\r\n", 1)[0][:120].decode("latin-1")
                forwards.append({"bytes": len(payload), "first_line": first, "ms": elapsed_ms})
            else:
                m = STATUS_RE.match(payload)
                if m:
                    replies.append({"status": int(m.group(1)),
                                    "reason": (m.group(2) or b"").decode("utf-8", "replace"),
                                    "on": listeners[s], "ms": elapsed_ms})
                else:
                    replies.append({"status": None, "first_line": payload[:80].decode("latin-1"),
                                    "on": listeners[s], "ms": elapsed_ms})
        finals = [r for r in replies if r["status"] and r["status"] >= 200]
        if (finals or forwards) and deadline > time.monotonic() + settle:
            deadline = time.monotonic() + settle

    if own_sender:
        sender.close()
    if extra is not None:
        extra.close()
    finals = [r for r in replies if r["status"] and r["status"] >= 200]
    if finals:
        observed = str(finals[0]["status"])
    elif forwards:
        observed = "forward"
    else:
        observed = "drop"
    return {"name": name, "observed": observed, "replies": replies, "forwards": forwards, "via_port": via_port}


def describe(result: dict) -> str:
    parts = [f"{r['status']} {r.get('reason', '')}".strip() + f" on {r['on']} after {r['ms']} ms" for r in result["replies"]]
    parts += [f"forwarded {f['bytes']} bytes ({f['first_line'][:60]!r}) after {f['ms']} ms" for f in result["forwards"]]
    return "; ".join(parts) if parts else "nothing"


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    host, _, port = args.server.rpartition(":")
    server = (loopback_only(host), int(port))
    source = split_address(args.source, "--source")
    next_hop_address = (split_address(args.next_hop, "--next-hop", 5060) if args.next_hop
                        else (LOOPBACK, args.next_hop_port))
    table = load_table(args.table, args.column, args.role)
    only = {n.strip() for n in args.only.split(",") if n.strip()}
    names = [n for n in table if not only or n in only]
    on_disk = {p.name for p in args.dir.glob("*.dat")}
    for missing in sorted(on_disk - set(table)):
        print(f"note: {missing} is in {args.dir} but not in the table; not sent", file=sys.stderr)

    next_hop = bind_udp(next_hop_address[1], next_hop_address[0])
    if next_hop is None:
        print(f"udp_torture: cannot bind the next hop {next_hop_address[0]}:{next_hop_address[1]} (in use?)",
              file=sys.stderr)
        return 2
    reply_sockets = {}
    ports = [int(x) for x in args.reply_ports.split(",") if x.strip()]
    if source[1] is not None and source[1] not in ports:
        ports.append(source[1])
    for p in ports:
        if (source[0], p) in (server, next_hop_address):
            continue
        s = bind_udp(p, source[0])
        if s is None:
            print(f"udp_torture: warning: reply port {source[0]}:{p} is in use; replies sent there are not seen",
                  file=sys.stderr)
        else:
            reply_sockets[p] = s

    results, differences = [], 0
    for name in names:
        path = args.dir / name
        if not path.exists():
            result = {"name": name, "observed": "missing file", "replies": [], "forwards": []}
        else:
            result = run_one(name, path.read_bytes(), server, next_hop, reply_sockets, args.timeout, args.settle,
                             source)
        result["expected"] = table[name]
        result["ok"] = matches(result["observed"], table[name])
        differences += not result["ok"]
        results.append(result)
        if not args.quiet or not result["ok"]:
            print(f"{'ok  ' if result['ok'] else 'DIFF'} {name:16} expected {table[name]:22} observed "
                  f"{result['observed']:8} {describe(result)}", flush=True)

    print(f"{len(results) - differences}/{len(results)} as expected, {differences} different")
    if args.json:
        args.json.write_text(json.dumps({"server": args.server, "source": args.source,
                                         "next_hop": f"{next_hop_address[0]}:{next_hop_address[1]}",
                                         "results": results}, indent=2) + "\n")
    return 1 if differences else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
