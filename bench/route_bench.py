#!/usr/bin/env python3
"""Per-request cost of a 30-line KEMI route (bench/route30.lua) on Kamailio 5.6 and Starling.

Each server runs the same script on 127.0.0.1; a paced UDP sender offers RATE OPTIONS requests per
second for DURATION seconds (each with its own Call-ID and branch) and counts the 200 replies. The
figure compared is the server's CPU time per request (all its processes/threads), at the same rate.

Environment: RATE [2000], DURATION [10], CHILDREN [4] (Kamailio children = Starling workers),
STARLING_BIN [.build/release/starling], PORT [36060].
"""
import os, socket, sys, tempfile, time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import compare  # noqa: E402  (shared process, CPU and port helpers)

HOST = compare.HOST
SCRIPT = Path(__file__).resolve().parent / "route30.lua"

KAMAILIO_CFG = compare.KAMAILIO_CFG.replace('loadmodule "app_lua.so"',
                                            'loadmodule "textops.so"\nloadmodule "xlog.so"\nloadmodule "app_lua.so"')

REQUEST = ("OPTIONS sip:bob@{host}:{port} SIP/2.0\r\n"
           "Via: SIP/2.0/UDP {host}:{lport};branch=z9hG4bK-rb-{n};rport\r\n"
           "Max-Forwards: 70\r\nTo: <sip:bob@{host}:{port}>\r\nFrom: sipp <sip:sipp@{host}:{lport}>;tag={n}\r\n"
           "Call-ID: {n}-route-bench@{host}\r\nCSeq: 1 OPTIONS\r\nContact: <sip:sipp@{host}:{lport}>\r\n"
           "User-Agent: sipp-bench\r\nX-Internal: secret\r\nContent-Length: 0\r\n\r\n")


def offer(port: int, rate: int, duration: int) -> tuple[int, int]:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    s.bind((HOST, 0))
    s.setblocking(False)
    lport = s.getsockname()[1]
    sent = replies = 0
    start = time.monotonic()
    end = start + duration
    while True:
        now = time.monotonic()
        if now >= end:
            break
        due = int((now - start) * rate)
        while sent < due:
            s.sendto(REQUEST.format(host=HOST, port=port, lport=lport, n=sent).encode(), (HOST, port))
            sent += 1
        try:
            while True:
                data = s.recv(65535)
                if data.startswith(b"SIP/2.0 200"):
                    replies += 1
        except BlockingIOError:
            pass
        time.sleep(0.0005)
    deadline = time.monotonic() + 2
    while replies < sent and time.monotonic() < deadline:
        try:
            if s.recv(65535).startswith(b"SIP/2.0 200"):
                replies += 1
        except BlockingIOError:
            time.sleep(0.001)
    return sent, replies


def measure(name: str, start, rate: int, duration: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="route-bench-") as tmp:
        port = int(os.environ.get("PORT", "36060"))
        proc = start(Path(tmp), port)
        try:
            offer(port, 200, 1)  # warm-up
            t0 = compare.tree_ticks(proc.pid)
            sent, replies = offer(port, rate, duration)
            t1 = compare.tree_ticks(proc.pid)
        finally:
            compare.stop(proc)
    hz = os.sysconf("SC_CLK_TCK")
    cpu = (t1 - t0) / hz
    r = {"server": name, "sent": sent, "replies": replies, "cpu_s": cpu, "us_per_request": cpu / max(sent, 1) * 1e6}
    print(f"  {name:9s} {rate}/s x {duration}s: sent {sent}, 200 replies {replies}, "
          f"server CPU {cpu:.2f}s = {r['us_per_request']:.1f} us/request")
    return r


def main() -> int:
    rate = int(os.environ.get("RATE", "2000"))
    duration = int(os.environ.get("DURATION", "10"))
    children = int(os.environ.get("CHILDREN", "4"))
    binary = Path(os.environ.get("STARLING_BIN", ".build/release/starling")).resolve()
    compare.KAMAILIO_CFG = KAMAILIO_CFG
    print(f"route30.lua at {rate} requests/s for {duration}s, {children} children/workers")
    k = measure("kamailio", lambda tmp, port: compare.start_kamailio(tmp, SCRIPT, port, children), rate, duration)
    s = measure("starling", lambda tmp, port: compare.start_starling(tmp, binary, SCRIPT, port, children), rate, duration)
    if k["replies"] < k["sent"] * 0.99 or s["replies"] < s["sent"] * 0.99:
        print("WARNING: a server answered fewer than 99% of the requests")
    print(f"Starling/Kamailio CPU per request: {s['us_per_request'] / max(k['us_per_request'], 1e-9):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
