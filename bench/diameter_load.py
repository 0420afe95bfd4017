#!/usr/bin/env python3
"""Diameter load for bench/diameter.sh: listens on --port as mme.example; the relay under test
connects (CER/CEA), then N S6a ULRs are sent with a window of W outstanding, and the relay's CPU
(utime+stime of --pid from /proc) is read before and after. Prints one JSON line."""
import argparse, json, os, socket, struct, sys, time, threading
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "StarlingIntegrationTests", "Tools"))
import diameter_peer as d

def cpu(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")

def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--pid", type=int, required=True)
    p.add_argument("--requests", type=int, default=20000)
    p.add_argument("--window", type=int, default=32)
    p.add_argument("--settle", type=float, default=3.0)
    a = p.parse_args()
    srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", a.port)); srv.listen(1); srv.settimeout(60)
    conn, _ = srv.accept()
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    wlock = threading.Lock()
    def send(b):
        with wlock: conn.sendall(b)
    sent = {}
    lat = []
    results = {}
    done = threading.Event()
    window = threading.Semaphore(a.window)
    def reader():
        while True:
            raw = d.read_message(conn)
            if raw is None: done.set(); return
            m = d.parse(raw)
            if m["flags"] & 0x80:
                if m["cmd"] == 257:
                    send(d.message(0, 257, 0, m["hbh"], m["e2e"], [d.u32(268, 2001)] + d.caps("mme.example", "mme.realm")))
                elif m["cmd"] in (280, 282):
                    send(d.answer(m, 2001, "mme.example", "mme.realm"))
                continue
            t = sent.pop(m["e2e"], None)
            if t is not None:
                lat.append(time.perf_counter() - t)
                rc = d.first(m, 268)
                rc = struct.unpack("!I", rc)[0] if rc else 0
                results[rc] = results.get(rc, 0) + 1
                window.release()
                if len(lat) == a.requests: done.set()
    threading.Thread(target=reader, daemon=True).start()
    time.sleep(a.settle)  # the relay opens its HSS connection meanwhile
    c0, t0 = cpu(a.pid), time.perf_counter()
    for n in range(a.requests):
        window.acquire()
        e2e = 0x10000000 + n
        avps = [d.avp(263, f"mme.example;{n}"), d.u32(277, 1), d.avp(264, "mme.example"), d.avp(296, "mme.realm"),
                d.avp(283, "hss.example"), d.avp(1, "001011234567890"), d.u32(1405, 34, 10415), d.avp(1407, b"\x00\xf1\x10", 10415)]
        msg = d.message(0xC0, 316, 16777251, n + 1, e2e, avps)
        sent[e2e] = time.perf_counter()
        send(msg)
    done.wait(120)
    t1, c1 = time.perf_counter(), cpu(a.pid)
    lat.sort()
    q = lambda x: round(lat[min(len(lat) - 1, int(x * len(lat)))] * 1e3, 3) if lat else None
    print(json.dumps({"requests": a.requests, "answered": len(lat), "results": results, "seconds": round(t1 - t0, 3),
                      "rate": round(len(lat) / (t1 - t0), 1), "cpu_s": round(c1 - c0, 3),
                      "cpu_us_per_pair": round((c1 - c0) / max(1, len(lat)) * 1e6, 1), "p50_ms": q(0.5), "p99_ms": q(0.99)}))
main()
