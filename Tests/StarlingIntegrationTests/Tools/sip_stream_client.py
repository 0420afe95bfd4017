#!/usr/bin/env python3
"""SIP over TCP, TLS, WS and WSS for the integration tests (Python standard library only).

Each scenario prints one JSON line with its counters and exits 0 when every check held, 1 otherwise.

  keepalive  --count N          CRLFCRLF pings every 10 ms mixed with OPTIONS; every ping must get one
                                CRLF pong and every OPTIONS a 200 (TCP/TLS).
  options    --count N          N OPTIONS/REGISTER requests on one connection, each answered 200.
  garbage                       a second connection sends garbage / a request without Content-Length:
                                it gets a 400 (when readable) and is closed; the first keeps working.
  calls      --count N          N INVITE/ACK/BYE calls on one connection through the proxy to a UAS.
  ws-call                       REGISTER over the connection, then a UDP caller's INVITE addressed to
                                this client (R-URI = our address;transport=ws|wss) arrives over it;
                                we answer 200, the caller gets the 200 and sends ACK, which arrives too.
  noread     --count N          sends N OPTIONS and never reads the replies (back-pressure), then closes.
  hold       --count N --hold S opens N connections (TLS handshakes done), reports the rate, holds them.
  abandon    --count N          opens N connections, sends half a message on some, a partial TLS
                                handshake on others, and leaves them open for --hold seconds (for the
                                robustness test); reports how many the server closed meanwhile.
  edge-phone --nat-ip IP        a phone behind a NAT (issue 15): REGISTERs through the proxy (Via and
                                Contact name --nat-ip), keeps the connection with CRLF keepalives,
                                reconnects and registers again (same Call-ID, next CSeq) when the
                                proxy closes it (--reconnects N times), answers the INVITE that comes
                                over the connection (200 with Record-Route, Contact --nat-ip), and
                                waits for ACK and BYE (answered 200). Prints {"event": ...} lines.
"""
import argparse, base64, json, os, random, socket, ssl, sys, time


def parse_args():
    p = argparse.ArgumentParser()
    p.add_argument("scenario")
    p.add_argument("--proto", default="tcp", choices=["tcp", "tls", "ws", "wss"])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--udp-port", type=int, default=0, help="the proxy's UDP port (ws-call)")
    p.add_argument("--count", type=int, default=10)
    p.add_argument("--ca")
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--server-name", default=None)
    p.add_argument("--hold", type=float, default=0, help="abandon: seconds to keep the connections open")
    p.add_argument("--timeout", type=float, default=10)
    p.add_argument("--follow-rr", action="store_true", help="calls: send ACK/BYE to the Contact with the Record-Route set")
    p.add_argument("--nat-ip", default="10.99.0.5", help="edge-phone: the private address in Via and Contact")
    p.add_argument("--user", default="alice", help="edge-phone: the AoR's user")
    p.add_argument("--domain", default="pbx.example", help="edge-phone: the AoR's domain")
    p.add_argument("--reconnects", type=int, default=0, help="edge-phone: connection losses to expect")
    p.add_argument("--wait", type=float, default=60, help="edge-phone: seconds to wait for the call")
    a = p.parse_args()
    a.uh = f"[{a.host}]" if ":" in a.host else a.host
    return a


class Conn:
    """One stream connection; reads SIP messages and CRLF pongs (TCP/TLS) or WebSocket messages."""

    def __init__(self, a):
        self.a = a
        s = socket.create_connection((a.host, a.port), timeout=a.timeout)
        if a.proto in ("tls", "wss"):
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            if a.ca:
                ctx.load_verify_locations(a.ca)
                ctx.check_hostname = a.server_name is not None
            else:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            if a.cert:
                ctx.load_cert_chain(a.cert, a.key)
            s = ctx.wrap_socket(s, server_hostname=a.server_name or a.host)
        self.s = s
        self.buf = b""
        self.ws = a.proto in ("ws", "wss")
        if self.ws:
            self.handshake()

    @property
    def local(self):
        return self.s.getsockname()

    def handshake(self):
        key = base64.b64encode(os.urandom(16)).decode()
        req = (f"GET / HTTP/1.1\r\nHost: {self.a.host}:{self.a.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: sip\r\n\r\n")
        self.s.sendall(req.encode())
        while b"\r\n\r\n" not in self.buf:
            d = self.s.recv(65536)
            if not d:
                raise RuntimeError("closed during the WebSocket handshake")
            self.buf += d
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        if not head.startswith(b"HTTP/1.1 101") or b"sec-websocket-protocol: sip" not in head.lower():
            raise RuntimeError("bad upgrade answer: %r" % head)

    def send(self, data):
        if self.ws:
            mask = os.urandom(4)
            n = len(data)
            hdr = bytes([0x81])
            if n < 126:
                hdr += bytes([0x80 | n])
            elif n < 65536:
                hdr += bytes([0x80 | 126]) + n.to_bytes(2, "big")
            else:
                hdr += bytes([0x80 | 127]) + n.to_bytes(8, "big")
            self.s.sendall(hdr + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))
        else:
            self.s.sendall(data)

    def fill(self):
        d = self.s.recv(65536)
        if not d:
            raise EOFError("connection closed")
        self.buf += d

    def next(self):
        """The next item: ("pong", None) or ("msg", bytes)."""
        while True:
            if self.ws:
                item = self.ws_frame()
                if item is not None:
                    return item
                self.fill()
                continue
            if self.buf.startswith(b"\r\n"):
                self.buf = self.buf[2:]
                return ("pong", None)
            if b"\r\n\r\n" in self.buf:
                head, rest = self.buf.split(b"\r\n\r\n", 1)
                cl = 0
                for line in head.split(b"\r\n")[1:]:
                    k, _, v = line.partition(b":")
                    if k.strip().lower() in (b"content-length", b"l"):
                        cl = int(v.strip())
                if len(rest) >= cl:
                    self.buf = rest[cl:]
                    return ("msg", head + b"\r\n\r\n" + rest[:cl])
            self.fill()

    def ws_frame(self):
        b = self.buf
        if len(b) < 2:
            return None
        op, n, i = b[0] & 0x0F, b[1] & 0x7F, 2
        if n == 126:
            if len(b) < 4:
                return None
            n, i = int.from_bytes(b[2:4], "big"), 4
        elif n == 127:
            if len(b) < 10:
                return None
            n, i = int.from_bytes(b[2:10], "big"), 10
        if len(b) < i + n:
            return None
        payload, self.buf = b[i:i + n], b[i + n:]
        if op in (1, 2):
            return ("msg", payload)
        if op == 8:
            raise EOFError("websocket closed")
        return ("other", payload)

    def message(self):
        while True:
            kind, m = self.next()
            if kind == "msg":
                return m


def header(msg, name):
    for line in msg.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == name.lower().encode():
            return v.strip().decode()
    return None


def status(msg):
    first = msg.split(b"\r\n", 1)[0].split(b" ")
    return int(first[1]) if first[0] == b"SIP/2.0" else None


def request(method, ruri, conn_local, proto, call_id, cseq=1, extra="", body=b"", to_tag=None, branch=None):
    host, port = conn_local[0], conn_local[1]
    if ":" in host:
        host = "[" + host + "]"
    via_proto = {"tcp": "TCP", "tls": "TLS", "ws": "WS", "wss": "WSS", "udp": "UDP"}[proto]
    branch = branch or "z9hG4bK" + os.urandom(6).hex()
    to = f"<{ruri.split(';')[0]}>" + (f";tag={to_tag}" if to_tag else "")
    return (f"{method} {ruri} SIP/2.0\r\nVia: SIP/2.0/{via_proto} {host}:{port};branch={branch};rport\r\n"
            f"Max-Forwards: 70\r\nFrom: <sip:tester@{host}>;tag=t{call_id[-6:]}\r\nTo: {to}\r\n"
            f"Call-ID: {call_id}\r\nCSeq: {cseq} {method}\r\nContact: <sip:tester@{host}:{port};transport={proto}>\r\n"
            f"{extra}Content-Length: {len(body)}\r\n\r\n").encode() + body


def reply_to(req, code, reason, to_tag="ws1", contact=None):
    lines = req.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]
    out = [f"SIP/2.0 {code} {reason}".encode()]
    for l in lines:
        k = l.partition(b":")[0].strip().lower()
        if k in (b"via", b"v", b"from", b"f", b"call-id", b"i", b"cseq", b"record-route"):
            out.append(l)
        elif k in (b"to", b"t"):
            out.append(l if b"tag=" in l else l + b";tag=" + to_tag.encode())
    if contact:
        out.append(f"Contact: <{contact}>".encode())
    out.append(b"Content-Length: 0")
    return b"\r\n".join(out) + b"\r\n\r\n"


def scenario_keepalive(a):
    c = Conn(a)
    pings = requests = 0
    for i in range(a.count):
        c.send(b"\r\n\r\n")
        pings += 1
        if i % 5 == 0:
            c.send(request("OPTIONS", f"sip:ping@{a.uh}:{a.port}", c.local, a.proto, f"ka{i}-{os.getpid()}"))
            requests += 1
        time.sleep(0.01)
    pongs = replies = ok = 0
    while pongs < pings or replies < requests:
        kind, m = c.next()
        if kind == "pong":
            pongs += 1
        elif kind == "msg":
            replies += 1
            ok += status(m) == 200
    # Nothing more may arrive (no extra pong).
    c.s.settimeout(0.5)
    extra = 0
    try:
        while True:
            c.next()
            extra += 1
    except (socket.timeout, TimeoutError):
        pass
    return {"pings": pings, "pongs": pongs, "requests": requests, "answered": ok, "extra": extra}, \
        pongs == pings and ok == requests and extra == 0


def scenario_options(a):
    c = Conn(a)
    ok = 0
    for i in range(a.count):
        method = "REGISTER" if i % 2 else "OPTIONS"
        c.send(request(method, f"sip:{a.uh}:{a.port}", c.local, a.proto, f"op{i}-{os.getpid()}"))
        if status(c.message()) == 200:
            ok += 1
    return {"requests": a.count, "answered": ok}, ok == a.count


def scenario_garbage(a):
    good = Conn(a)
    good.send(request("OPTIONS", f"sip:{a.uh}", good.local, a.proto, f"g1-{os.getpid()}"))
    first = status(good.message())
    results = {}
    # A request without Content-Length: answered 400, then closed.
    bad = Conn(a)
    no_cl = request("OPTIONS", f"sip:{a.uh}", bad.local, a.proto, f"g2-{os.getpid()}").replace(b"Content-Length: 0\r\n", b"")
    bad.send(no_cl)
    got = []
    try:
        while True:
            got.append(status(bad.message()))
    except (EOFError, ConnectionResetError, ssl.SSLError, OSError):
        pass
    results["no_content_length"] = got
    # Binary garbage: closed without an answer.
    junk = Conn(a)
    junk.send(bytes(range(1, 200)) + b"\r\n\r\n")
    closed = False
    try:
        junk.message()
    except (EOFError, ConnectionResetError, ssl.SSLError, OSError):
        closed = True
    results["garbage_closed"] = closed
    # An oversize message: closed.
    big = Conn(a)
    big.send(request("MESSAGE", f"sip:{a.uh}", big.local, a.proto, f"g3-{os.getpid()}", body=b"x" * 70000))
    got_big = []
    try:
        while True:
            got_big.append(status(big.message()))
    except (EOFError, ConnectionResetError, ssl.SSLError, OSError):
        pass
    results["oversize"] = got_big
    good.send(request("OPTIONS", f"sip:{a.uh}", good.local, a.proto, f"g4-{os.getpid()}"))
    last = status(good.message())
    results.update({"first": first, "after": last})
    return results, first == 200 and last == 200 and got == [400] and closed and got_big == [400]


def headers(msg, name):
    out = []
    for line in msg.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == name.lower().encode():
            out += [x.strip().decode() for x in v.split(b",")]
    return out


def scenario_calls(a):
    c = Conn(a)
    ok = failed = 0
    record_routes = None
    for i in range(a.count):
        cid = f"call{i}-{os.getpid()}"
        ruri = f"sip:service@{a.uh}:{a.port}"
        sdp = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\n"
        c.send(request("INVITE", ruri, c.local, a.proto, cid, 1, "Content-Type: application/sdp\r\n", sdp))
        final = None
        while final is None:
            m = c.message()
            st = status(m)
            if st is not None and st >= 200:
                final = m
        if status(final) != 200:
            failed += 1
            continue
        to = header(final, "To")
        tag = to.split("tag=")[1].split(";")[0]
        extra, target = "", ruri
        if a.follow_rr:
            rr = headers(final, "Record-Route")
            record_routes = rr
            if rr:
                extra = "Route: " + ", ".join(reversed(rr)) + "\r\n"
            contact = header(final, "Contact") or ""
            if "<" in contact:
                target = contact.split("<", 1)[1].split(">", 1)[0]
        c.send(request("ACK", target, c.local, a.proto, cid, 1, extra=extra, to_tag=tag))
        c.send(request("BYE", target, c.local, a.proto, cid, 2, extra=extra, to_tag=tag))
        while True:
            m = c.message()
            if status(m) is not None and header(m, "CSeq").endswith("BYE") and status(m) >= 200:
                break
        if status(m) == 200:
            ok += 1
        else:
            failed += 1
    result = {"calls": a.count, "successful": ok, "failed": failed}
    if record_routes is not None:
        result["record_route"] = record_routes
    return result, ok == a.count


def scenario_ws_call(a):
    c = Conn(a)
    lh, lp = c.local[0], c.local[1]
    if ":" in lh:
        lh = f"[{lh}]"
    c.send(request("REGISTER", f"sip:{a.uh}", c.local, a.proto, f"reg-{os.getpid()}",
                   extra="Expires: 600\r\n"))
    reg = status(c.message())
    # The caller: UDP to the proxy, R-URI = this connection's address and transport.
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind((a.host, 0))
    u.settimeout(a.timeout)
    cid = f"wscall-{os.getpid()}"
    target = f"sip:tester@{lh}:{lp};transport={a.proto}"
    u.sendto(request("INVITE", target, u.getsockname(), "udp", cid), (a.host, a.udp_port))
    inv = c.message()
    got_invite = inv.startswith(b"INVITE ")
    c.send(reply_to(inv, 200, "OK", contact=target))
    final = None
    while final is None:
        d, _ = u.recvfrom(65536)
        if status(d) is not None and status(d) >= 200:
            final = d
    tag = header(final, "To").split("tag=")[1].split(";")[0]
    u.sendto(request("ACK", target, u.getsockname(), "udp", cid, 1, to_tag=tag), (a.host, a.udp_port))
    ack = c.message()
    return {"register": reg, "invite_received": got_invite, "caller_final": status(final),
            "ack_received": ack.startswith(b"ACK ")}, \
        reg == 200 and got_invite and status(final) == 200 and ack.startswith(b"ACK ")


def scenario_abandon(a):
    conns = []
    for i in range(a.count):
        s = socket.create_connection((a.host, a.port), timeout=a.timeout)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        kind = i % 3
        if kind == 1:
            # Half a message.
            s.sendall(b"OPTIONS sip:x SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:1;branch=z9hG4bKhalf\r\nContent-Le")
        elif kind == 2 and a.proto in ("tls", "wss"):
            # The first bytes of a TLS ClientHello, never finished.
            s.sendall(bytes([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xFC, 0x03, 0x03]))
        conns.append(s)
    time.sleep(a.hold)
    # Which of them the server closed meanwhile (FIN or reset; a TLS alert before the FIN is read past).
    closed = 0
    for s in conns:
        s.setblocking(False)
        try:
            while s.recv(65536):
                pass
            closed += 1
        except BlockingIOError:
            pass
        except OSError:
            closed += 1
    for s in conns:
        s.close()
    return {"opened": len(conns), "closed_by_server": closed}, True


def scenario_noread(a):
    """Sends --count OPTIONS as fast as possible and never reads the replies, then holds and closes."""
    c = Conn(a)
    c.s.settimeout(2)
    sent = 0
    pad = "X-Pad: " + "p" * 400 + "\r\n"
    try:
        for i in range(a.count):
            c.send(request("OPTIONS", f"sip:{a.uh}", c.local, a.proto, f"nr{i}-{os.getpid()}", extra=pad))
            sent += 1
    except (socket.timeout, TimeoutError, OSError):
        pass  # the server stopped reading from us: that is back-pressure too
    time.sleep(a.hold)
    c.s.close()
    return {"sent": sent}, True


def scenario_hold(a):
    """Opens --count connections (TLS: handshakes completed), prints the handshake rate, then holds them
    for --hold seconds (the caller measures the server meanwhile) and closes them."""
    conns = []
    t0 = time.monotonic()
    for _ in range(a.count):
        conns.append(Conn(a))
    elapsed = time.monotonic() - t0
    print(json.dumps({"opened": len(conns), "seconds": round(elapsed, 3),
                      "per_second": round(len(conns) / elapsed, 1) if elapsed > 0 else 0}), flush=True)
    time.sleep(a.hold)
    for c in conns:
        c.s.close()
    return {"opened": len(conns), "seconds": round(elapsed, 3),
            "per_second": round(len(conns) / elapsed, 1) if elapsed > 0 else 0}, True


def event(**kw):
    print(json.dumps({"event": kw.pop("name"), **kw}), flush=True)


def scenario_edge_phone(a):
    """A phone on a stream connection behind a NAT: register, keep alive, get called over the connection."""
    call_id = f"edgephone-{os.getpid()}@{a.nat_ip}"
    aor = f"sip:{a.user}@{a.domain}"
    result = {"registered": 0, "pings": 0, "pongs": 0, "reconnects": 0}
    cseq = 0
    deadline = time.monotonic() + a.wait

    def connect():
        # The proxy may be restarting (slowly, on a loaded machine): retry for up to 90 s.
        until = time.monotonic() + 90
        while True:
            try:
                return Conn(a)
            except (ConnectionRefusedError, OSError):
                if time.monotonic() > until:
                    raise
                time.sleep(0.2)

    def register(c):
        nonlocal cseq
        cseq += 1
        port = c.local[1]
        via = {"tcp": "TCP", "tls": "TLS"}[a.proto]
        msg = (f"REGISTER sip:{a.domain} SIP/2.0\r\n"
               f"Via: SIP/2.0/{via} {a.nat_ip}:{port};branch=z9hG4bK{os.urandom(6).hex()};rport\r\n"
               f"Max-Forwards: 70\r\nFrom: <{aor}>;tag=ph{os.getpid()}\r\nTo: <{aor}>\r\n"
               f"Call-ID: {call_id}\r\nCSeq: {cseq} REGISTER\r\n"
               f"Contact: <sip:{a.user}@{a.nat_ip}:{port};transport={a.proto}>\r\nExpires: 300\r\n"
               f"Supported: path\r\nContent-Length: 0\r\n\r\n").encode()
        c.send(msg)
        while True:
            kind, m = c.next()
            if kind == "pong":
                result["pongs"] += 1
                continue
            st = status(m)
            if st is not None and st >= 200 and (header(m, "CSeq") or "").endswith("REGISTER"):
                break
        if st != 200:
            raise RuntimeError(f"REGISTER answered {st}: {m[:300]!r}")
        result["registered"] += 1
        event(name="registered", n=result["registered"], local_port=port)
        # A keepalive right away: its pong must come back.
        c.send(b"\r\n\r\n")
        result["pings"] += 1

    c = connect()
    register(c)
    c.s.settimeout(1.0)
    invite = None
    last_ping = time.monotonic()
    while time.monotonic() < deadline:
        try:
            if time.monotonic() - last_ping >= 1.0:
                c.send(b"\r\n\r\n")
                result["pings"] += 1
                last_ping = time.monotonic()
            kind, m = c.next()
        except (socket.timeout, TimeoutError):
            continue
        except (EOFError, ConnectionResetError, BrokenPipeError, ssl.SSLError, OSError) as e:
            if isinstance(e, (socket.timeout, TimeoutError)):
                continue
            if result["reconnects"] >= a.reconnects:
                raise RuntimeError(f"connection lost: {e}")
            result["reconnects"] += 1
            event(name="reconnecting", reason=str(e))
            c.buf = b""
            c = connect()
            register(c)
            c.s.settimeout(1.0)
            continue
        if kind == "pong":
            result["pongs"] += 1
            continue
        if kind != "msg" or status(m) is not None:
            continue
        method = m.split(b" ", 1)[0].decode()
        if method == "INVITE":
            invite = m
            result["invite_ruri"] = m.split(b"\r\n", 1)[0].decode()
            result["invite_via"] = header(m, "Via")
            result["record_route"] = headers(m, "Record-Route")
            contact = f"sip:phone@{a.nat_ip}:{c.local[1]};transport={a.proto}"
            sdp = (f"v=0\r\no=- 1 1 IN IP4 {a.nat_ip}\r\ns=-\r\nc=IN IP4 {a.nat_ip}\r\nt=0 0\r\n"
                   f"m=audio 6000 RTP/AVP 0\r\n").encode()
            ok = reply_to(m, 200, "OK", to_tag="ph1", contact=contact)
            ok = ok.replace(b"Content-Length: 0\r\n\r\n",
                            b"Content-Type: application/sdp\r\nContent-Length: %d\r\n\r\n" % len(sdp)) + sdp
            c.send(ok)
            event(name="invite")
        elif method == "ACK":
            result["ack_ruri"] = m.split(b"\r\n", 1)[0].decode()
        elif method == "BYE":
            result["bye_ruri"] = m.split(b"\r\n", 1)[0].decode()
            c.send(reply_to(m, 200, "OK", to_tag="ph1"))
            break
        else:
            c.send(reply_to(m, 200, "OK", to_tag="ph1"))
    ok = (invite is not None and "ack_ruri" in result and "bye_ruri" in result
          and result["reconnects"] == a.reconnects and result["pongs"] >= 1)
    return result, ok


def main():
    a = parse_args()
    fn = {"keepalive": scenario_keepalive, "options": scenario_options, "garbage": scenario_garbage,
          "calls": scenario_calls, "ws-call": scenario_ws_call, "abandon": scenario_abandon,
          "noread": scenario_noread, "hold": scenario_hold,
          "edge-phone": scenario_edge_phone}[a.scenario]
    try:
        result, ok = fn(a)
    except Exception as e:  # reported as a failure with the reason
        result, ok = {"error": f"{type(e).__name__}: {e}"}, False
    result["ok"] = ok
    print(json.dumps(result))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
