#!/usr/bin/env python3
"""Sends OPTIONS pings to a SIP proxy over UDP and reports how long each answer took (127.0.0.1 only).

Usage: sip_ping.py PORT COUNT INTERVAL_MS
Sends COUNT OPTIONS (R-URI sip:127.0.0.1:PORT, no user), one every INTERVAL_MS, and waits up to 5 s
for each final reply. Prints "answered N/COUNT max_ms M p50_ms P" on the last line.
"""
import socket, sys, time

port, count, interval = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]) / 1000.0
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0))
lport = s.getsockname()[1]
lat = []
for i in range(count):
    cid = "ping-%d-%d@127.0.0.1" % (lport, i)
    msg = ("OPTIONS sip:127.0.0.1:%d SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:%d;branch=z9hG4bKping%d\r\n"
           "Max-Forwards: 70\r\nFrom: <sip:ping@127.0.0.1>;tag=p%d\r\nTo: <sip:127.0.0.1:%d>\r\n"
           "Call-ID: %s\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n") % (port, lport, i, i, port, cid)
    t0 = time.monotonic()
    s.sendto(msg.encode(), ("127.0.0.1", port))
    deadline = t0 + 5
    got = False
    while time.monotonic() < deadline:
        s.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            data = s.recv(65535).decode(errors="replace")
        except socket.timeout:
            break
        if cid in data and not data.startswith("SIP/2.0 1"):
            lat.append((time.monotonic() - t0) * 1000)
            got = True
            break
    time.sleep(max(0, interval - (time.monotonic() - t0)))
lat.sort()
print("answered %d/%d max_ms %.0f p50_ms %.0f" % (len(lat), count, lat[-1] if lat else -1, lat[len(lat) // 2] if lat else -1),
      flush=True)
