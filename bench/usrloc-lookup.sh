#!/usr/bin/env bash
# The cost of usrloc on Redis on the call path (issue 19: "lookups from the cache add under 5 us per
# call to the in-memory figure"): the same relayed INVITE route (bench/lookup.lua: maxfwd,
# t_check_trans, registrar.lookup("location"), t_relay; in-dialog requests by their R-URI) through
# one Starling, once per store in STORES:
#   memory  usrloc in memory (db_mode 0)
#   redis   usrloc db_mode 3 on a throwaway redis-server: every lookup after the first is a cache hit
#   kamailio-redis, kamailio-memory  (MEASURE=cpu only) the same script on Kamailio 5.6 (app_lua, tm,
#           usrloc db_mode 3 on db_redis with its README's mapping keys, or in memory), CHILDREN=WORKERS
# The callee u1 is registered once (Contact: the SIPp UAS), then SIPp's uac.xml places CALLS calls at
# RATE/s to sip:u1@proxy.
#
# Two ways to measure (MEASURE):
#   cpu        (default) CPU of the Starling process and of redis-server per call, from /proc: only
#              meaningful on a quiet machine; run both stores in the same run.
#   callgrind  instructions per call under valgrind --tool=callgrind (a run of 2*CALLS calls minus a
#              run of CALLS calls, so start-up and shutdown cancel out): valid on a busy machine.
#              US_PER_MINSN converts the difference to microseconds (default 1.0 us per 1,000
#              instructions, the rate docs/Performance.md measured for the stateful path: 341,395
#              instructions per call against ~350 us of CPU per call).
#   STORES="memory redis" MEASURE=cpu CALLS=5000 RATE=500 bench/usrloc-lookup.sh
#   STORES="memory redis kamailio-memory kamailio-redis" CALLS=5000 RATE=500 bench/usrloc-lookup.sh
#   MEASURE=callgrind CALLS=200 RATE=10 bench/usrloc-lookup.sh
#   (STARLING_BIN: default .build/release/starling, else .build/debug/starling; WORKERS: 2, 1 for callgrind)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/redis-common.sh"
MEASURE="${MEASURE:-cpu}"; STORES="${STORES:-memory redis}"
if [[ "$MEASURE" == callgrind ]]; then CALLS="${CALLS:-200}"; RATE="${RATE:-10}"; WORKERS="${WORKERS:-1}"
else CALLS="${CALLS:-5000}"; RATE="${RATE:-500}"; WORKERS="${WORKERS:-2}"; fi
US_PER_MINSN="${US_PER_MINSN:-1.0}"
RPORT="${RPORT:-36479}"; SPORT="${SPORT:-35160}"; UPORT="${UPORT:-35170}"; UAS="${UAS_PORT:-35190}"
tools="sipp redis-server redis-cli python3"; [[ "$MEASURE" == callgrind ]] && tools+=" valgrind"
require_tools $tools
require_starling
case "$MEASURE" in cpu|callgrind) ;; *) echo "usrloc-lookup.sh: MEASURE is cpu or callgrind" >&2; exit 2 ;; esac
start_redis usrloc-lookup
setsid sipp -sf "$root/Tests/StarlingIntegrationTests/Scenarios/uas.xml" -i 127.0.0.1 -p "$UAS" -nostdin >/dev/null 2>&1 & pids+=("$!")
cp "$root/bench/lookup.lua" "$work/lookup.lua"
if [[ "$MEASURE" == callgrind ]]; then
  cp "$starling" "$work/starling" && strip -g "$work/starling"   # valgrind 3.19 cannot read Swift 6.3's DWARF 5
  starling="$work/starling"
fi

config() {
  printf '[core]\nmodules = ["sl", "maxfwd", "tm", "siputils", "registrar", "usrloc"]\n[modparam.tm]\nfr_timer = 5000\nfr_inv_timer = 10000\n' >"$work/$1.toml"
  [[ "$1" == redis ]] && printf '[modparam.usrloc]\ndb_url = "redis://127.0.0.1:%s/0"\ndb_mode = 3\n' "$RPORT" >>"$work/$1.toml"
  true
}
# Registers u1 with Contact sip:u1@127.0.0.1:UAS (one REGISTER, waits for the 200).
register() {
  python3 - "$SPORT" "$UAS" <<'PY'
import socket, sys, time
sport, uas = int(sys.argv[1]), int(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); s.settimeout(2)
p = s.getsockname()[1]
msg = (f"REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{p};branch=z9hG4bKreg{int(time.time())}\r\n"
       f"Max-Forwards: 70\r\nFrom: <sip:u1@127.0.0.1>;tag=1\r\nTo: <sip:u1@127.0.0.1>\r\nCall-ID: bench-u1-{time.time()}\r\n"
       f"CSeq: 1 REGISTER\r\nContact: <sip:u1@127.0.0.1:{uas}>\r\nExpires: 3600\r\nContent-Length: 0\r\n\r\n").encode()
for _ in range(30):
    s.sendto(msg, ("127.0.0.1", sport))
    try:
        r = s.recv(4096).decode(errors="replace")
        if r.startswith("SIP/2.0 200"): sys.exit(0)
        if not r.startswith("SIP/2.0 1"): print(r.split("\r\n")[0], file=sys.stderr); sys.exit(1)
    except socket.timeout:
        pass
print("no 200 to the REGISTER", file=sys.stderr); sys.exit(1)
PY
}
# Kamailio 5.6 running bench/lookup.lua (app_lua), usrloc in memory ($1 = memory) or db_mode 3 on db_redis.
kamailio_cfg() {
  kamailio_mpath
  {
    printf '#!KAMAILIO\ndebug=-1\nlog_stderror=yes\nchildren=%s\nlisten=udp:127.0.0.1:%s\nauto_aliases=no\nmpath="%s/"\n' "$WORKERS" "$SPORT" "$mpath"
    for m in tm tmx sl pv maxfwd siputils usrloc registrar app_lua; do
      [[ "$m" == usrloc && "$1" == redis ]] && printf 'loadmodule "db_redis.so"\n'
      printf 'loadmodule "%s.so"\n' "$m"
    done
    printf 'modparam("tm", "fr_timer", 5000)\nmodparam("tm", "fr_inv_timer", 10000)\n'
    if [[ "$1" == redis ]]; then
      kamailio_redis_usrloc
    fi
    printf 'modparam("usrloc", "preload", "location")\nmodparam("app_lua", "load", "%s/lookup.lua")\ncfgengine "lua"\n' "$work"
  } >"$work/kamailio.cfg"
}
calls() {  # $1 store, $2 calls, $3 tag
  sipp -sf "$root/Tests/StarlingIntegrationTests/Scenarios/uac.xml" "127.0.0.1:$SPORT" -i 127.0.0.1 -p "$UPORT" -s u1 \
      -m "$2" -r "$RATE" -nostdin -timeout 600s -trace_stat -stf "$work/$1-$3.csv" -fd 1 >/dev/null 2>&1 || true
  python3 -c "import csv; r=list(csv.reader(open('$work/$1-$3.csv'),delimiter=';')); m=dict(zip(r[0],r[-1])); print(int(float(m['SuccessfulCall(C)'])), int(float(m['FailedCall(C)'])))"
}
stop_server() { kill -INT "$1" 2>/dev/null || true; for _ in $(seq 100); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.2; done; kill -9 -- "-$1" 2>/dev/null || true; }

results=()
for store in $STORES; do
  case "$store" in memory|redis) ;; kamailio-redis|kamailio-memory) [[ "$MEASURE" == cpu ]] || { echo "$store: MEASURE=cpu only" >&2; exit 2; } ;;
    *) echo "unknown store $store (memory, redis, kamailio-memory, kamailio-redis)" >&2; exit 2 ;; esac
  config "$store"
  if [[ "$MEASURE" == cpu ]]; then
    redis-cli -p "$RPORT" FLUSHALL >/dev/null
    if [[ "$store" == kamailio-* ]]; then
      kamailio_cfg "${store#kamailio-}"
      setsid kamailio -f "$work/kamailio.cfg" -DD -E -m 256 -M 16 -Y "$work" >"$work/$store.log" 2>&1 & pids+=("$!")
    else
      setsid "$starling" run --config "$work/$store.toml" --script "$work/lookup.lua" --listen "udp:127.0.0.1:$SPORT" \
          --workers "$WORKERS" --log-level warning >"$work/$store.log" 2>&1 & pids+=("$!")
    fi
    spid=$!
    wait_udp 900; sleep 1; register
    calls "$store" 20 warm >/dev/null   # the first lookup reads Redis and fills the cache
    s0=$(cpu_sid "$spid"); r0=$(redis_cpu)
    read -r ok failed < <(calls "$store" "$CALLS" run)
    s1=$(cpu_sid "$spid"); r1=$(redis_cpu)
    stop_server "$spid"
    results+=("$store $ok $failed $(( s1 - s0 )) $(( r1 - r0 ))")
  else
    line="$store"
    for n in "$CALLS" "$(( CALLS * 2 ))"; do
      # A run counts only when every call succeeded: SIPp 3.6.1's UAC can abort (call.cpp:2952) when a
      # 200 retransmission beats its ACK through the slow, instrumented proxy; such a run is repeated.
      for attempt in 1 2 3 4; do
        redis-cli -p "$RPORT" FLUSHALL >/dev/null
        setsid valgrind --tool=callgrind --callgrind-out-file="$work/$store-$n.cg" "$starling" run --config "$work/$store.toml" \
            --script "$work/lookup.lua" --listen "udp:127.0.0.1:$SPORT" --workers "$WORKERS" --log-level error \
            >"$work/$store-$n.vg" 2>&1 & pids+=("$!")
        vg=$!
        wait_udp 900; sleep 1; register
        read -r ok failed < <(calls "$store" "$n" "n$n")
        stop_server "$vg"
        total=$(sed -n 's/.*Collected : \([0-9]*\).*/\1/p' "$work/$store-$n.vg")
        [[ "$ok" == "$n" ]] && break
        echo "$store: $ok of $n calls completed (SIPp aborted?): run again ($attempt)" >&2
      done
      # Inclusive instructions of KSR.registrar.lookup itself (RegistrarModule.lookup), free of idle
      # wake-ups and of the rest of the call.
      lk=$(callgrind_annotate --inclusive=yes --threshold=100 "$work/$store-$n.cg" 2>/dev/null \
           | awk '/RegistrarModuleO6lookup/ && !done { gsub(",", "", $1); print $1; done = 1 }' || true)
      line+=" $ok $failed ${total:-0} ${lk:-0}"
    done
    results+=("$line")
  fi
done

python3 - "$MEASURE" "$CALLS" "$hz" "$US_PER_MINSN" "${results[@]}" <<'PY'
import sys
measure, n, hz, us_per_minsn = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
per, look = {}, {}
for line in sys.argv[5:]:
    name, *v = line.split()
    v = list(map(int, v))
    if measure == "cpu":
        ok, failed, s, r = v
        per[name] = s * 1e6 / hz / max(ok, 1)
        print(f"{name}: {ok} calls ok, {failed} failed; {'kamailio' if name.startswith('kamailio') else 'starling'} "
              f"{per[name]:.1f} us CPU per call, redis-server {r * 1e6 / hz / max(ok, 1):.1f} us")
    else:
        ok1, f1, i1, l1, ok2, f2, i2, l2 = v
        per[name] = (i2 - i1) / n
        look[name] = (l2 - l1) / n
        print(f"{name}: {ok1}/{n} and {ok2}/{2 * n} calls ok; {per[name]:,.0f} instructions per call "
              f"(~{per[name] * us_per_minsn / 1000:.1f} us at {us_per_minsn} us per 1,000 instructions), "
              f"of which KSR.registrar.lookup {look[name]:,.0f}")
for store in ("memory", "redis"):
    if store in per and f"kamailio-{store}" in per and measure == "cpu":
        print(f"starling/kamailio ({store}): {per[store] / per[f'kamailio-{store}']:.2f}")
if "memory" in per and "redis" in per:
    d = per["redis"] - per["memory"]
    if measure == "cpu":
        print(f"redis (cached lookup) - memory: {d:+.1f} us CPU per call")
    else:
        print(f"redis (cached lookup) - memory: {d:+,.0f} instructions per call (~{d * us_per_minsn / 1000:+.1f} us; "
              f"noisy: includes idle wake-ups over different run lengths)")
        dl = look["redis"] - look["memory"]
        print(f"KSR.registrar.lookup, redis (cached) - memory: {dl:+,.0f} instructions per call (~{dl * us_per_minsn / 1000:+.2f} us)")
PY
echo "(work dir $work)"
