#!/usr/bin/env python3
"""A TLS server that Starling connects to (outgoing TLS verification tests).

usage: tls_sink.py PORT CERT KEY
Prints one JSON line per event: {"listening": PORT}, {"handshake": "ok", "sni": NAME or null},
{"handshake_error": TEXT}, {"received": FIRST LINE OF A SIP MESSAGE}.
"""
import json
import socket
import ssl
import sys
import threading


def emit(obj):
    print(json.dumps(obj), flush=True)


def serve(conn, sni):
    emit({"handshake": "ok", "sni": sni.get("name")})
    buf = b""
    try:
        while True:
            data = conn.recv(65536)
            if not data:
                return
            buf += data
            while b"\r\n\r\n" in buf:
                head, buf = buf.split(b"\r\n\r\n", 1)
                first = head.split(b"\r\n", 1)[0].decode(errors="replace")
                emit({"received": first})
                # Content-Length bodies are not expected from the tests (OPTIONS).
    except OSError:
        return
    finally:
        conn.close()


def main():
    port, cert, key = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", port))
    srv.listen(16)
    emit({"listening": port})
    while True:
        raw, _ = srv.accept()
        sni = {}
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        ctx.sni_callback = lambda s, name, c, sni=sni: sni.__setitem__("name", name)
        raw.settimeout(10)
        try:
            conn = ctx.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError) as e:
            emit({"handshake_error": str(e)})
            raw.close()
            continue
        conn.settimeout(None)
        threading.Thread(target=serve, args=(conn, sni), daemon=True).start()


if __name__ == "__main__":
    main()
