#!/usr/bin/env python3
"""A phone out of the box doing SIP plug-and-play discovery (run inside the test's network namespace).

pnp_phone.py GROUP PORT PHONE_PORT: sends a ua-profile SUBSCRIBE to GROUP:PORT (multicast, sent
from 127.0.0.1), expects the 200 from a unicast address, then the NOTIFY carrying the provisioning
URL, answers it 200, and watches 2.5 s for a retransmitted NOTIFY; then sends a SUBSCRIBE with
another Event and expects 489. Prints one JSON object with what it saw.
"""
import json, socket, sys, time, uuid

group, port, phone_port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", phone_port))
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("127.0.0.1"))
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
out = {"messages": []}


def subscribe(event, call_id):
    return ("SUBSCRIBE sip:MAC%3A0004f2a1b2c3@" + group + " SIP/2.0\r\n"
            "Via: SIP/2.0/UDP 127.0.0.1:%d;branch=z9hG4bK%s\r\n" % (phone_port, uuid.uuid4().hex[:12]) +
            "From: <sip:MAC%3A0004f2a1b2c3@" + group + ">;tag=ph1\r\n"
            "To: <sip:MAC%3A0004f2a1b2c3@" + group + ">\r\n"
            "Call-ID: " + call_id + "\r\nCSeq: 1 SUBSCRIBE\r\n"
            "Contact: <sip:phone@127.0.0.1:%d>\r\n" % phone_port +
            "Event: " + event + "\r\nExpires: 0\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n")


def receive(deadline):
    while time.time() < deadline:
        s.settimeout(max(0.05, deadline - time.time()))
        try:
            data, src = s.recvfrom(65536)
        except socket.timeout:
            return None, None
        text = data.decode(errors="replace")
        out["messages"].append({"from": "%s:%d" % src, "start": text.split("\r\n", 1)[0]})
        return text, src
    return None, None


def header(text, name):
    for line in text.split("\r\n")[1:]:
        if not line:
            break
        k, _, v = line.partition(":")
        if k.strip().lower() == name.lower():
            return v.strip()
    return None


s.sendto(subscribe('ua-profile;profile-type="device";vendor="Polycom";model="VVX400";version="7.0"', "pnp-1").encode(),
         (group, port))
deadline = time.time() + 10
notify = None
while time.time() < deadline and notify is None:
    text, src = receive(deadline)
    if text is None:
        break
    if text.startswith("SIP/2.0 "):
        out["subscribe_status"] = text.split("\r\n", 1)[0]
        out["reply_from"] = src[0]
    elif text.startswith("NOTIFY "):
        notify = text
        out["notify_from"] = src[0]
        out["notify_uri"] = text.split(" ")[1]
        out["event"] = header(text, "Event")
        out["subscription_state"] = header(text, "Subscription-State")
        out["content_type"] = header(text, "Content-Type")
        out["via"] = header(text, "Via")
        out["body"] = text.split("\r\n\r\n", 1)[1]
        reply = "SIP/2.0 200 OK\r\n"
        for line in text.split("\r\n")[1:]:
            if not line:
                break
            if line.split(":")[0].strip().lower() in ("via", "from", "to", "call-id", "cseq"):
                reply += line + ("" if not line.lower().startswith("to:") or "tag=" in line else ";tag=phone") + "\r\n"
        reply += "Content-Length: 0\r\n\r\n"
        s.sendto(reply.encode(), src)
# watch for a retransmitted NOTIFY
extra = 0
deadline = time.time() + 2.5
while True:
    text, _ = receive(deadline)
    if text is None:
        break
    if text.startswith("NOTIFY "):
        extra += 1
out["notify_retransmissions"] = extra
# another Event: 489
s.sendto(subscribe("presence", "pnp-2").encode(), (group, port))
deadline = time.time() + 5
while True:
    text, _ = receive(deadline)
    if text is None:
        break
    if text.startswith("SIP/2.0 "):
        out["other_event_status"] = text.split("\r\n", 1)[0]
        out["allow_events"] = header(text, "Allow-Events")
        break
print(json.dumps(out))
