#!/usr/bin/env python3
"""Diameter test peers on raw sockets (RFC 6733 framing, no library).

  hss    --identity ID --realm R --port P [--log FILE] [--mute-dwa FILE] [--no-answer]
         A server peer: answers CER (2001, S6a), DWR, DPR; answers every other request with
         2001 and Origin-Host ID, and appends one JSON line per request to --log (hop-by-hop and
         end-to-end ids, T flag, Route-Records, User-Name). While the --mute-dwa file exists it does
         not answer DWRs. With --no-answer it answers no application request.
         [--unknown-prefix P] users (Public-Identity, else User-Name) starting with P get
         Experimental-Result 5001 (DIAMETER_ERROR_USER_UNKNOWN); [--server-name URI] adds Server-Name
         (602, 3GPP) to the other answers; [--delay-ms N] answers after N ms.
  client --identity ID --realm R --port P --plan JSON [--out FILE]
         Connects, CER, sends the plan's requests one after the other, prints one JSON line per answer
         (result, Origin-Host, ids, elapsed seconds), then DPR and exit. Plan items:
         {"user": "IMSI", "dest_realm": "hss.example", "route_record": ["a"], "app": 16777251,
          "cmd": 316, "wait": 5}
         With --tls [--ca FILE] the client speaks TLS (verifying the server against FILE).
  hss ... --tls-cert FILE --tls-key FILE: the HSS accepts TLS connections.
  malformed --port P --case NAME
         Sends one malformed message and reports whether Starling closed the connection.
"""
import json, socket, ssl, struct, sys, time, os, argparse, threading, random

AVP_VENDOR, AVP_MANDATORY = 0x80, 0x40

def avp(code, data, vendor=None, flags=AVP_MANDATORY):
    if isinstance(data, str):
        data = data.encode()
    if vendor is not None:
        flags |= AVP_VENDOR
        hdr = struct.pack("!IB", code, flags) + (12 + len(data)).to_bytes(3, "big") + struct.pack("!I", vendor)
    else:
        hdr = struct.pack("!IB", code, flags) + (8 + len(data)).to_bytes(3, "big")
    raw = hdr + data
    return raw + b"\0" * ((4 - len(raw) % 4) % 4)

def u32(code, v, vendor=None):
    return avp(code, struct.pack("!I", v), vendor)

def message(flags, cmd, app, hbh, e2e, avps):
    body = b"".join(avps)
    return struct.pack("!B", 1) + (20 + len(body)).to_bytes(3, "big") + struct.pack("!B", flags) + cmd.to_bytes(3, "big") + struct.pack("!III", app, hbh, e2e) + body

def parse_avps(b):
    out, i = [], 0
    while i + 8 <= len(b):
        code, flags = struct.unpack("!IB", b[i:i + 5])
        length = int.from_bytes(b[i + 5:i + 8], "big")
        hl = 12 if flags & AVP_VENDOR else 8
        vendor = struct.unpack("!I", b[i + 8:i + 12])[0] if flags & AVP_VENDOR else 0
        out.append((code, vendor, b[i + hl:i + length]))
        i += (length + 3) & ~3
    return out

def parse(buf):
    flags = buf[4]
    cmd = int.from_bytes(buf[5:8], "big")
    app, hbh, e2e = struct.unpack("!III", buf[8:20])
    return {"flags": flags, "cmd": cmd, "app": app, "hbh": hbh, "e2e": e2e, "avps": parse_avps(buf[20:])}

def first(m, code):
    for c, v, d in m["avps"]:
        if c == code:
            return d
    return None

def strs(m, code):
    return [d.decode(errors="replace") for c, v, d in m["avps"] if c == code]

def read_message(sock):
    hdr = b""
    while len(hdr) < 4:
        chunk = sock.recv(4 - len(hdr))
        if not chunk:
            return None
        hdr += chunk
    length = int.from_bytes(hdr[1:4], "big")
    rest = b""
    while len(rest) < length - 4:
        chunk = sock.recv(length - 4 - len(rest))
        if not chunk:
            return None
        rest += chunk
    return hdr + rest

def caps(identity, realm, apps=(16777251,)):
    a = [avp(264, identity), avp(296, realm), avp(257, b"\x00\x01\x7f\x00\x00\x01"), u32(266, 0),
         avp(269, "diameter_peer.py", flags=0), u32(265, 10415)]
    for app in apps:
        a.append(avp(260, u32(266, 10415) + u32(258, app)))
    return a

def answer(req, result, identity, realm, extra=(), experimental=None):
    avps = []
    sid = first(req, 263)
    if sid is not None:
        avps.append(avp(263, sid))
    if experimental is not None:
        avps.append(avp(297, u32(266, 10415) + u32(298, experimental)))
    else:
        avps.append(u32(268, result))
    avps += [avp(264, identity), avp(296, realm)] + list(extra)
    return message(req["flags"] & 0x40, req["cmd"], req["app"], req["hbh"], req["e2e"], avps)

def log_line(path, obj):
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(obj) + "\n")

def serve_connection(conn, args):
    wlock = threading.Lock()
    def send(b):
        with wlock:
            conn.sendall(b)
    while True:
        raw = read_message(conn)
        if raw is None:
            return
        m = parse(raw)
        if not m["flags"] & 0x80:
            continue
        if m["cmd"] == 257:
            send(message(0, 257, 0, m["hbh"], m["e2e"], [u32(268, 2001)] + caps(args.identity, args.realm)))
        elif m["cmd"] == 280:
            if args.mute_dwa and os.path.exists(args.mute_dwa):
                continue
            send(answer(m, 2001, args.identity, args.realm))
        elif m["cmd"] == 282:
            send(answer(m, 2001, args.identity, args.realm))
            return
        else:
            user = first(m, 1)
            public = first(m, 601)
            log_line(args.log, {"hbh": m["hbh"], "e2e": m["e2e"], "t": bool(m["flags"] & 0x10),
                                "route_record": strs(m, 282), "user": user.decode() if user else None,
                                "origin": (first(m, 264) or b"").decode(), "cmd": m["cmd"], "app": m["app"],
                                "p": bool(m["flags"] & 0x40), "session": (first(m, 263) or b"").decode(),
                                "origin_realm": (first(m, 296) or b"").decode(),
                                "public_identity": public.decode() if public else None})
            if args.no_answer:
                continue
            name = (public or user or b"").decode(errors="replace")
            extra = [avp(1, user)] if user else []
            experimental = None
            if args.unknown_prefix and name.startswith(args.unknown_prefix):
                experimental = 5001  # DIAMETER_ERROR_USER_UNKNOWN (TS 29.229)
            elif args.server_name:
                extra.append(avp(602, args.server_name, vendor=10415))
            reply = answer(m, 2001, args.identity, args.realm, extra, experimental)
            if args.delay_ms:
                threading.Timer(args.delay_ms / 1000.0, send, args=(reply,)).start()
            else:
                send(reply)

def hss(args):
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", args.port))
    srv.listen(8)
    ctx = None
    if args.tls_cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.tls_cert, args.tls_key)
    print("listening", flush=True)
    while True:
        conn, _ = srv.accept()
        if ctx:
            try:
                conn = ctx.wrap_socket(conn, server_side=True)
            except (ssl.SSLError, OSError) as e:
                print("tls handshake failed:", e, flush=True)
                continue
        threading.Thread(target=serve_connection, args=(conn, args), daemon=True).start()

def client(args):
    plan = json.loads(args.plan)
    sock = socket.create_connection(("127.0.0.1", args.port), timeout=10)
    if args.tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        if args.ca:
            ctx.load_verify_locations(args.ca)
        else:
            ctx.verify_mode = ssl.CERT_NONE
        sock = ctx.wrap_socket(sock)
    hbh = random.randint(1, 1 << 30)
    e2e = random.randint(1, 1 << 30)
    sock.sendall(message(0x80, 257, 0, hbh, e2e, caps(args.identity, args.realm)))
    cea = None
    while cea is None:
        raw = read_message(sock)
        if raw is None:
            print(json.dumps({"error": "closed before CEA"}), flush=True)
            return 1
        m = parse(raw)
        if m["cmd"] == 257 and not m["flags"] & 0x80:
            cea = m
    result = struct.unpack("!I", first(cea, 268))[0]
    print(json.dumps({"cea": result, "origin": (first(cea, 264) or b"").decode()}), flush=True)
    if result != 2001:
        return 0
    out = open(args.out, "a") if args.out else None
    for n, item in enumerate(plan):
        hbh += 1
        e2e += 1
        avps = [avp(263, f"{args.identity};{e2e};{n}"), u32(277, 1), avp(264, args.identity), avp(296, args.realm),
                avp(283, item.get("dest_realm", "hss.example"))]
        if "user" in item:
            avps.append(avp(1, item["user"]))
        avps += [u32(1405, 34, 10415), avp(1407, b"\x00\xf1\x10", 10415)]
        for rr in item.get("route_record", []):
            avps.append(avp(282, rr))
        start = time.monotonic()
        sock.sendall(message(0xC0, item.get("cmd", 316), item.get("app", 16777251), hbh, e2e, avps))
        sock.settimeout(item.get("wait", 10))
        got = None
        try:
            while got is None:
                raw = read_message(sock)
                if raw is None:
                    break
                m = parse(raw)
                if m["flags"] & 0x80:
                    if m["cmd"] == 280:
                        sock.sendall(answer(m, 2001, args.identity, args.realm))
                    continue
                got = m
        except socket.timeout:
            pass
        if got is None:
            line = {"n": n, "result": None, "elapsed": time.monotonic() - start}
        else:
            rc = first(got, 268)
            line = {"n": n, "result": struct.unpack("!I", rc)[0] if rc else None,
                    "origin": (first(got, 264) or b"").decode(), "hbh_ok": got["hbh"] == hbh, "e2e_ok": got["e2e"] == e2e,
                    "e_flag": bool(got["flags"] & 0x20), "reporting": (first(got, 294) or b"").decode(),
                    "user": (first(got, 1) or b"").decode(), "elapsed": round(time.monotonic() - start, 3)}
        print(json.dumps(line), flush=True)
        if out:
            out.write(json.dumps(line) + "\n")
            out.flush()
    hbh += 1
    sock.sendall(message(0x80, 282, 0, hbh, e2e + 1, [avp(264, args.identity), avp(296, args.realm), u32(273, 0)]))
    sock.settimeout(5)
    try:
        while True:
            raw = read_message(sock)
            if raw is None:
                break
            m = parse(raw)
            if m["cmd"] == 282 and not m["flags"] & 0x80:
                print(json.dumps({"dpa": struct.unpack("!I", first(m, 268))[0]}), flush=True)
                break
    except socket.timeout:
        print(json.dumps({"dpa": None}), flush=True)
    return 0

def malformed(args):
    cases = {
        "short": b"\x01\x00\x00\x0c" + b"\x00" * 8,                       # length 12 < 20
        "beyond": b"\x01\x00\x10\x00" + b"\x80\x00\x01\x18" + b"\x00" * 12, # length 4096, 20 bytes sent
        "underflow": message(0x80, 280, 0, 1, 1, [])[:20] + struct.pack("!IB", 264, 0x40) + (3).to_bytes(3, "big") + b"\0" * 4,
        "version": b"\x02\x00\x00\x14" + b"\x00" * 16,
    }
    data = cases[args.case]
    if args.case == "underflow":
        data = data[:1] + len(data).to_bytes(3, "big") + data[4:]
    sock = socket.create_connection(("127.0.0.1", args.port), timeout=10)
    sock.sendall(data)
    start = time.monotonic()
    try:
        closed = sock.recv(100) == b""
    except ConnectionResetError:
        closed = True
    except socket.timeout:
        closed = False
    print(json.dumps({"case": args.case, "closed": closed, "elapsed": round(time.monotonic() - start, 3)}), flush=True)
    return 0

def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode")
    p.add_argument("--identity", default="peer.example")
    p.add_argument("--realm", default="example")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--log")
    p.add_argument("--mute-dwa")
    p.add_argument("--no-answer", action="store_true")
    p.add_argument("--plan", default="[]")
    p.add_argument("--out")
    p.add_argument("--case")
    p.add_argument("--tls", action="store_true")
    p.add_argument("--ca")
    p.add_argument("--tls-cert")
    p.add_argument("--tls-key")
    p.add_argument("--unknown-prefix")
    p.add_argument("--server-name")
    p.add_argument("--delay-ms", type=int, default=0)
    args = p.parse_args()
    return {"hss": hss, "client": client, "malformed": malformed}[args.mode](args) or 0

if __name__ == "__main__":
    sys.exit(main())
