#!/usr/bin/env python3
"""Diameter test peers on python-diameter (PyPI, scripts/install-deps.sh installs it in a venv).

Both modes run a python-diameter Node listening on 127.0.0.1:PORT (the node does CER/CEA, DWR/DWA,
DPR/DPA itself) with one S6a application.

  hss    --identity ID --realm R --port P --peer ID:REALM [--peer ...] [--log FILE]
         Accepts the listed peers. Answers every S6a request with 2001 (Origin-Host ID, the
         request's User-Name echoed) and appends one JSON line per request to --log (hop-by-hop
         and end-to-end ids, T flag, Route-Records, User-Name, Origin-Host).
  client --identity ID --realm R --port P --peer ID:REALM[:PORT] --dest-realm R --users IMSI,IMSI,...
         Waits (up to 60 s) until the peer is open (it connected, or with :PORT the client connected
         to it on 127.0.0.1:PORT) and exchanged CER/CEA, sends one
         Update-Location-Request per IMSI (Destination-Realm R) through it, prints one JSON line per
         answer ({"user", "result", "origin", "e2e_ok"}), then stops (DPR).
"""
import argparse, json, sys, threading, time

from diameter.message import constants
from diameter.message.commands import UpdateLocationRequest
from diameter.message.avp import Avp
from diameter.message.avp.grouped import VendorSpecificApplicationId
from diameter.node import Node
from diameter.node.application import SimpleThreadingApplication

S6A = constants.APP_3GPP_S6A_S6D


def text(v):
    """An AVP (or its value) as text."""
    v = getattr(v, "value", v)
    return v.decode(errors="replace") if isinstance(v, bytes) else v


def peers(node, specs):
    """--peer ID:REALM (accepted when it connects) or ID:REALM:PORT (connected to on 127.0.0.1:PORT)."""
    out = []
    for spec in specs:
        parts = spec.split(":")
        identity, realm = parts[0], parts[1]
        port = int(parts[2]) if len(parts) > 2 else 3868
        ips = ["127.0.0.1"] if len(parts) > 2 else None
        out.append(node.add_peer(f"aaa://{identity}:{port};transport=tcp", realm, ips, is_persistent=len(parts) > 2))
    return out


def hss(args):
    lock = threading.Lock()

    def handle(app, request):
        rr = [text(v) for v in request.find_avps((constants.AVP_ROUTE_RECORD, 0))]
        user = request.user_name
        with lock, open(args.log, "a") as f:
            f.write(json.dumps({"hbh": request.header.hop_by_hop_identifier, "e2e": request.header.end_to_end_identifier,
                                "t": bool(request.header.is_retransmit), "route_record": rr,
                                "user": text(user), "origin": text(request.origin_host)}) + "\n")
        answer = app.generate_answer(request, result_code=constants.E_RESULT_CODE_DIAMETER_SUCCESS)
        answer.vendor_specific_application_id = VendorSpecificApplicationId(vendor_id=constants.VENDOR_TGPP, auth_application_id=S6A)
        answer.auth_session_state = constants.E_AUTH_SESSION_STATE_NO_STATE_MAINTAINED
        if user is not None:
            answer.append_avp(Avp.new(constants.AVP_USER_NAME, value=user))
        return answer

    node = Node(args.identity, args.realm, ip_addresses=["127.0.0.1"], tcp_port=args.port, vendor_ids=[constants.VENDOR_TGPP])
    node.idle_timeout = 30
    app = SimpleThreadingApplication(S6A, is_auth_application=True, request_handler=handle)
    node.add_application(app, peers(node, args.peer), realms=[args.realm])
    node.start()
    print("listening", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        node.stop(wait_timeout=2, force=True)


def client(args):
    node = Node(args.identity, args.realm, ip_addresses=["127.0.0.1"], tcp_port=args.port, vendor_ids=[constants.VENDOR_TGPP])
    app = SimpleThreadingApplication(S6A, is_auth_application=True)
    node.add_application(app, peers(node, args.peer), realms=[args.dest_realm])
    node.start()
    print(json.dumps({"listening": True}), flush=True)
    try:
        app.wait_for_ready(timeout=60)
        def ulr(i, imsi, attempt):
            req = UpdateLocationRequest()
            req.session_id = f"{args.identity};{int(time.time())};{i};{attempt}"
            req.origin_host = args.identity.encode()
            req.origin_realm = args.realm.encode()
            req.destination_realm = args.dest_realm.encode()
            req.user_name = imsi
            req.vendor_specific_application_id = VendorSpecificApplicationId(vendor_id=constants.VENDOR_TGPP, auth_application_id=S6A)
            req.auth_session_state = constants.E_AUTH_SESSION_STATE_NO_STATE_MAINTAINED
            req.rat_type = constants.E_RAT_TYPE_EUTRAN
            req.ulr_flags = 34
            req.visited_plmn_id = bytes.fromhex("00f110")
            return req

        for i, imsi in enumerate(args.users.split(",")):
            a, error = None, None
            # --retries: a 3002 (a relay in between whose own route onward is not up yet) is asked again
            # a second later with a new request.
            for attempt in range(args.retries + 1):
                req = ulr(i, imsi, attempt)
                try:
                    a, error = app.send_request(req, timeout=15), None
                except Exception as e:  # timeout, not routable
                    a, error = None, e
                if a is None or a.result_code != constants.E_RESULT_CODE_DIAMETER_UNABLE_TO_DELIVER or attempt == args.retries:
                    break
                time.sleep(1)
            if a is None:
                print(json.dumps({"user": imsi, "error": str(error)}), flush=True)
                continue
            origin = text(a.origin_host)
            names = a.find_avps((constants.AVP_USER_NAME, 0))
            user = text(names[0]) if names else None
            print(json.dumps({"user": user, "result": a.result_code, "origin": origin,
                              "e2e_ok": a.header.end_to_end_identifier == req.header.end_to_end_identifier}), flush=True)
    finally:
        node.stop(wait_timeout=2, force=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["hss", "client"])
    p.add_argument("--identity", required=True)
    p.add_argument("--realm", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--peer", action="append", default=[])
    p.add_argument("--log", default="/dev/null")
    p.add_argument("--dest-realm", default="example")
    p.add_argument("--users", default="")
    p.add_argument("--retries", type=int, default=0, help="client: times to ask again after a 3002 answer")
    args = p.parse_args()
    hss(args) if args.mode == "hss" else client(args)


if __name__ == "__main__":
    main()
