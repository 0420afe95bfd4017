#!/usr/bin/env bash
# A three-instance Starling cluster on one machine, every host in a network namespace of its own
# (needs root): Redis master + replica + three sentinels on 10.19.0.5, Starling on 10.19.0.11-13
# (examples/cluster/cluster.lua, usrloc db_mode 3 on redis+sentinel://), phones (SIPp) on 10.19.0.100,
# all joined by a bridge. A phone registers through instance 1 and is called through instances 2
# and 3; instance 1 is killed with SIGKILL and the phone is still reached; the Redis master is killed
# and, once the sentinels have promoted the replica, registrations and calls go on.
#
#   sudo examples/cluster/run.sh          # runs the demo, prints what happens, cleans up
#   KEEP=1 sudo examples/cluster/run.sh   # ... and leaves the cluster running until Ctrl-C
set -euo pipefail
[ "$(id -u)" = 0 ] || { echo "run.sh: needs root (ip netns)" >&2; exit 2; }
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
starling="${STARLING_BIN:-$root/.build/debug/starling}"
[ -x "$starling" ] || starling="$(command -v starling || true)"
[ -n "$starling" ] || { echo "run.sh: build Starling first (swift build) or set STARLING_BIN" >&2; exit 2; }
for t in sipp redis-server redis-sentinel python3 ip; do
    command -v "$t" >/dev/null || { echo "run.sh: $t not found (scripts/install-deps.sh)" >&2; exit 2; }
done
scen="$root/Tests/StarlingIntegrationTests/Scenarios"
work="$(mktemp -d /tmp/starling-cluster.XXXXXX)"
br=br19
names=(redis st1 st2 st3 phones)
ips=(10.19.0.5 10.19.0.11 10.19.0.12 10.19.0.13 10.19.0.100)
pids=()

cleanup() {
    for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    for n in "${names[@]}"; do ip netns del "c19-$n" 2>/dev/null || true; done
    for i in "${!names[@]}"; do ip link del "p19-$i" 2>/dev/null || true; done
    ip link del "$br" 2>/dev/null || true
}
trap cleanup EXIT INT TERM
cleanup

ip link add "$br" type bridge
ip link set "$br" up
for i in "${!names[@]}"; do
    ns="c19-${names[$i]}"
    ip netns add "$ns"
    ip link add "v19-$i" type veth peer name "p19-$i"
    ip link set "v19-$i" netns "$ns"
    ip -n "$ns" addr add "${ips[$i]}/24" dev "v19-$i"
    ip -n "$ns" link set "v19-$i" up
    ip -n "$ns" link set lo up
    ip link set "p19-$i" master "$br"
    ip link set "p19-$i" up
done
inns() { local ns="c19-$1"; shift; ip netns exec "$ns" "$@"; }
# bg LOG NS CMD...: CMD in namespace NS in the background; `ip netns exec` execs CMD, so $! is its pid.
bg() { local log="$1" ns="c19-$2"; shift 2; ip netns exec "$ns" "$@" >"$work/$log" 2>&1 & pids+=("$!"); }

# Redis: master 6379, replica 6380, sentinels 26379-26381 (quorum 2).
R=10.19.0.5
bg redis-master.log redis redis-server --bind $R --port 6379 --save "" --appendonly no --protected-mode no --dir "$work"
master_pid=$!
bg redis-replica.log redis redis-server --bind $R --port 6380 --save "" --appendonly no --protected-mode no --dir "$work" --dbfilename replica.rdb --replicaof $R 6379
for p in 26379 26380 26381; do
    cat >"$work/sentinel-$p.conf" <<CONF
port $p
bind $R
protected-mode no
dir $work
sentinel monitor mymaster $R 6379 2
sentinel down-after-milliseconds mymaster 1000
sentinel failover-timeout mymaster 10000
CONF
    bg "sentinel-$p.log" redis redis-sentinel "$work/sentinel-$p.conf"
done
sleep 2

cat >"$work/starling.toml" <<TOML
[modparam.usrloc]
db_url = "redis+sentinel://$R:26379,$R:26380,$R:26381/mymaster/0"
db_mode = 3
TOML
start_instance() {
    bg "starling$1.log" "st$1" "$starling" run --config "$work/starling.toml" \
        --script "$root/examples/cluster/cluster.lua" --listen "udp:10.19.0.1$1:5060" --workers 2
    eval "st$1_pid=$!"
}
for n in 1 2 3; do start_instance $n; done
sleep 2

# Phone: a SIPp UAS on 10.19.0.100:5070, registered through instance 1.
P=10.19.0.100
bg phone.log phones sipp -sf "$scen/uas.xml" -i $P -p 5070 -nostdin
sleep 1
register() {  # register USER through INSTANCE-IP; prints the status line
    inns phones python3 - "$1" "$2" "$P" <<'PY'
import socket, sys, uuid
user, proxy, me = sys.argv[1:4]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind((me, 0)); s.settimeout(5)
cid = uuid.uuid4().hex
msg = (f"REGISTER sip:{proxy} SIP/2.0\r\nVia: SIP/2.0/UDP {me}:{s.getsockname()[1]};branch=z9hG4bK{cid}\r\n"
       f"Max-Forwards: 70\r\nFrom: <sip:{user}@{proxy}>;tag=1\r\nTo: <sip:{user}@{proxy}>\r\nCall-ID: {cid}\r\n"
       f"CSeq: 1 REGISTER\r\nContact: <sip:{user}@{me}:5070>\r\nExpires: 600\r\nContent-Length: 0\r\n\r\n")
s.sendto(msg.encode(), (proxy, 5060))
try: print(s.recv(4096).decode().split("\r\n")[0])
except socket.timeout: print("no reply")
PY
}
call() {  # N calls to USER through INSTANCE-IP; prints SIPp's counts
    local tag="call-$RANDOM"
    inns phones sipp -sf "$scen/uac.xml" "$2:5060" -i $P -p 0 -s "$1" -m "${3:-3}" -r 10 -nostdin \
        -timeout 30s -trace_stat -stf "$work/$tag.csv" -fd 1 >/dev/null 2>&1 || true
    python3 - "$work/$tag.csv" <<'PY'
import csv, sys
rows = list(csv.reader(open(sys.argv[1]), delimiter=";"))
m = dict(zip(rows[0], rows[-1]))
print(f"{m.get('SuccessfulCall(C)')} calls answered, {m.get('FailedCall(C)')} failed")
PY
}

echo "register phone1 through instance 1 (10.19.0.11): $(register phone1 10.19.0.11)"
echo "call phone1 through instance 2 (10.19.0.12): $(call phone1 10.19.0.12)"
echo "call phone1 through instance 3 (10.19.0.13): $(call phone1 10.19.0.13)"
kill -9 "$st1_pid"
wait "$st1_pid" 2>/dev/null || true
echo "instance 1 killed (SIGKILL): $(inns st1 ss -lun | grep -c 5060 || true) sockets left on 10.19.0.11:5060"
echo "call phone1 through instance 3: $(call phone1 10.19.0.13)"
start_instance 1
sleep 2
echo "instance 1 started again; call phone1 through it: $(call phone1 10.19.0.11)"
kill -9 "$master_pid"
wait "$master_pid" 2>/dev/null || true
echo "Redis master killed (SIGKILL); waiting for the sentinels to promote the replica..."
for i in $(seq 1 30); do
    r="$(register phone2 10.19.0.12)"
    [ "$r" = "SIP/2.0 200 OK" ] && break
    sleep 1
done
echo "register phone2 through instance 2 after the failover: $r (after ${i}s)"
echo "the replica's role now: $(inns redis redis-cli -h $R -p 6380 ROLE | head -1)"
echo "call phone1 (registered before the failover) through instance 3: $(call phone1 10.19.0.13)"
echo "logs: $work"
if [ -n "${KEEP:-}" ]; then echo "Ctrl-C to stop"; sleep infinity; fi
