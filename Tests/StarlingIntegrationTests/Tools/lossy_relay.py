#!/usr/bin/env python3
"""A seeded lossy UDP relay on 127.0.0.1 (the kernel here has no netem).

Datagrams from the callee (--callee port) go to the proxy (--proxy port); every other datagram goes
to the callee. Each direction drops --loss of its datagrams, chosen by a random generator seeded
with --seed, so a run is repeatable. On SIGTERM it prints its counters.
"""
import argparse
import random
import signal
import socket
import sys


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--listen", type=int, required=True)
    p.add_argument("--proxy", type=int, required=True)
    p.add_argument("--callee", type=int, required=True)
    p.add_argument("--loss", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args()
    rng = {"down": random.Random(a.seed), "up": random.Random(a.seed + 1)}
    counts = {"down": [0, 0], "up": [0, 0]}

    def stop(*_):
        print("relayed/dropped down=%d/%d up=%d/%d" % (counts["down"][0], counts["down"][1],
                                                       counts["up"][0], counts["up"][1]), flush=True)
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    s.bind(("127.0.0.1", a.listen))
    print("listening on 127.0.0.1:%d" % a.listen, flush=True)
    while True:
        data, (host, port) = s.recvfrom(65535)
        direction = "up" if port == a.callee else "down"
        if rng[direction].random() < a.loss:
            counts[direction][1] += 1
            continue
        counts[direction][0] += 1
        s.sendto(data, ("127.0.0.1", a.proxy if direction == "up" else a.callee))


if __name__ == "__main__":
    main()
