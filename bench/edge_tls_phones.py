#!/usr/bin/env python3
"""Many TLS phones behind a NAT for bench/edge_sbc.py (issue 15), Python standard library only.

Opens --count TLS connections to the edge (at most --rate handshakes a second), REGISTERs user
PREFIX<i> on each (Via and Contact name --nat-ip, ;transport=tls, Expires 3600), then keeps every
connection with a CRLF CRLF keepalive every --keepalive seconds (phases spread) and answers the calls
that come over it: INVITE -> 200 (Record-Route echoed), ACK, BYE -> 200. Prints JSON lines:
{"event": "registered", "n": N} as registrations complete (every 250 and the last), then, when it
gets SIGTERM or SIGUSR1 (or --hold seconds passed), closes every connection ("the phones leave") and
prints the totals. Exit 0 when every phone registered.
"""
import argparse, asyncio, json, os, signal, ssl, sys, time

stats = {"connected": 0, "registered": 0, "register_failed": 0, "connect_failed": 0, "pings": 0, "pongs": 0,
         "invites": 0, "acks": 0, "byes": 0, "lost": 0}


def emit(**kw):
    print(json.dumps(kw), flush=True)


def header(head, name):
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == name:
            return v.strip()
    return None


def reply(req, code, reason, contact=None, body=b"", ctype=None):
    lines = req.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]
    out = [f"SIP/2.0 {code} {reason}".encode()]
    for l in lines:
        k = l.partition(b":")[0].strip().lower()
        if k in (b"via", b"v", b"from", b"f", b"call-id", b"i", b"cseq", b"record-route"):
            out.append(l)
        elif k in (b"to", b"t"):
            out.append(l if b"tag=" in l else l + b";tag=ph1")
    if contact:
        out.append(f"Contact: <{contact}>".encode())
    if ctype:
        out.append(f"Content-Type: {ctype}".encode())
    out.append(f"Content-Length: {len(body)}".encode())
    return b"\r\n".join(out) + b"\r\n\r\n" + body


class Phone:
    def __init__(self, a, i, ctx):
        self.a, self.i, self.ctx = a, i, ctx
        self.user = f"{a.prefix}{i}"
        self.writer = None

    async def read_item(self, reader):
        """("pong", None) or ("msg", bytes)."""
        while True:
            if self.buf.startswith(b"\r\n"):
                self.buf = self.buf[2:]
                return "pong", None
            if b"\r\n\r\n" in self.buf:
                head, rest = self.buf.split(b"\r\n\r\n", 1)
                cl = int(header(head, b"content-length") or header(head, b"l") or b"0")
                if len(rest) >= cl:
                    self.buf = rest[cl:]
                    return "msg", head + b"\r\n\r\n" + rest[:cl]
            d = await reader.read(65536)
            if not d:
                raise EOFError()
            self.buf += d

    async def run(self, registered_event):
        a = self.a
        self.buf = b""
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(a.host, a.port, ssl=self.ctx, server_hostname=a.server_name), 60)
        except Exception:
            stats["connect_failed"] += 1
            registered_event()
            return
        self.writer = writer
        stats["connected"] += 1
        port = writer.get_extra_info("sockname")[1]
        aor = f"sip:{self.user}@{a.domain}"
        contact = f"sip:{self.user}@{a.nat_ip}:{port};transport=tls"
        writer.write((f"REGISTER sip:{a.domain} SIP/2.0\r\n"
                      f"Via: SIP/2.0/TLS {a.nat_ip}:{port};branch=z9hG4bK{os.urandom(6).hex()};rport\r\n"
                      f"Max-Forwards: 70\r\nFrom: <{aor}>;tag=r{self.i}\r\nTo: <{aor}>\r\n"
                      f"Call-ID: tlsphone-{self.i}-{os.getpid()}\r\nCSeq: 1 REGISTER\r\n"
                      f"Contact: <{contact}>\r\nExpires: 3600\r\nContent-Length: 0\r\n\r\n").encode())
        ok = False
        try:
            while True:
                kind, m = await asyncio.wait_for(self.read_item(reader), 60)
                if kind == "msg" and m.startswith(b"SIP/2.0 "):
                    code = int(m.split(b" ", 2)[1])
                    if code >= 200:
                        ok = code == 200
                        break
        except Exception:
            pass
        if ok:
            stats["registered"] += 1
        else:
            stats["register_failed"] += 1
        registered_event()
        if not ok:
            writer.close()
            return
        pinger = asyncio.ensure_future(self.pings(writer))
        try:
            while True:
                kind, m = await self.read_item(reader)
                if kind == "pong":
                    stats["pongs"] += 1
                    continue
                if m.startswith(b"SIP/2.0 "):
                    continue
                method = m.split(b" ", 1)[0]
                if method == b"INVITE":
                    stats["invites"] += 1
                    sdp = (f"v=0\r\no=- 1 1 IN IP4 {a.nat_ip}\r\ns=-\r\nc=IN IP4 {a.nat_ip}\r\nt=0 0\r\n"
                           f"m=audio 6000 RTP/AVP 0\r\n").encode()
                    writer.write(reply(m, 200, "OK", contact=contact, body=sdp, ctype="application/sdp"))
                elif method == b"ACK":
                    stats["acks"] += 1
                elif method == b"BYE":
                    stats["byes"] += 1
                    writer.write(reply(m, 200, "OK"))
                else:
                    writer.write(reply(m, 200, "OK"))
        except (EOFError, ConnectionError, ssl.SSLError, OSError):
            if not closing:
                stats["lost"] += 1
        except asyncio.CancelledError:
            pass
        finally:
            pinger.cancel()

    async def pings(self, writer):
        a = self.a
        await asyncio.sleep((self.i * 7919 % 1000) / 1000 * a.keepalive)
        while True:
            writer.write(b"\r\n\r\n")
            stats["pings"] += 1
            await asyncio.sleep(a.keepalive)


closing = False


async def main():
    global closing
    p = argparse.ArgumentParser()
    p.add_argument("--host", required=True)
    p.add_argument("--port", type=int, default=5061)
    p.add_argument("--count", type=int, default=2000)
    p.add_argument("--rate", type=float, default=200, help="new connections a second")
    p.add_argument("--keepalive", type=float, default=20)
    p.add_argument("--prefix", default="tls")
    p.add_argument("--domain", default="pbx.example")
    p.add_argument("--nat-ip", default="10.99.0.5")
    p.add_argument("--ca")
    p.add_argument("--server-name", default="sip.test")
    p.add_argument("--hold", type=float, default=3600)
    a = p.parse_args()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if a.ca:
        ctx.load_verify_locations(a.ca)
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for s in (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT):
        loop.add_signal_handler(s, stop.set)
    done = [0]
    t0 = time.monotonic()

    def registered_event():
        done[0] += 1
        if done[0] % 250 == 0 or done[0] == a.count:
            emit(event="registered", n=stats["registered"], done=done[0], failed=stats["register_failed"] + stats["connect_failed"],
                 seconds=round(time.monotonic() - t0, 1))

    phones = [Phone(a, i, ctx) for i in range(a.count)]
    tasks = []
    for ph in phones:
        tasks.append(asyncio.ensure_future(ph.run(registered_event)))
        await asyncio.sleep(1 / a.rate)
        if stop.is_set():
            break
    try:
        await asyncio.wait_for(stop.wait(), a.hold)
    except asyncio.TimeoutError:
        pass
    closing = True
    emit(event="leaving", **stats)
    for ph in phones:
        if ph.writer:
            ph.writer.close()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    emit(event="left", **stats)
    return 0 if stats["registered"] == a.count else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
