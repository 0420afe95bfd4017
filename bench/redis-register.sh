#!/usr/bin/env bash
# usrloc on Redis (issue 19): USERS REGISTERs (one AoR each) at RATE/s through one Starling instance
# with usrloc db_mode 3 on a throwaway redis-server, then USERS OPTIONS lookups (cached, then after
# user u1: after the first, every lookup is a cache hit).
# Prints Starling's and redis-server's CPU per REGISTER / per lookup and Redis memory per contact.
#   USERS=2000 RATE=400 bench/redis-register.sh        (STARLING_BIN: default .build/debug/starling)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
starling="${STARLING_BIN:-$root/.build/debug/starling}"
USERS="${USERS:-2000}"; RATE="${RATE:-400}"
RPORT="${RPORT:-36379}"; SPORT="${SPORT:-35060}"; UPORT="${UPORT:-35070}"
work="$(mktemp -d /tmp/redis-bench.XXXXXX)"
pids=()
trap 'for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done' EXIT
redis-server --port "$RPORT" --bind 127.0.0.1 --save "" --appendonly no --logfile "" >/dev/null 2>&1 & pids+=("$!")
rpid=$!
sleep 0.5
printf '[modparam.usrloc]\ndb_url = "redis://127.0.0.1:%s/0"\ndb_mode = 3\n' "$RPORT" >"$work/starling.toml"
cat >"$work/bench.lua" <<'LUA'
function ksr_request_route()
  if KSR.is_REGISTER() then KSR.registrar.save("location", 0) return end
  local rc = KSR.registrar.lookup("location")
  KSR.sl.send_reply(rc == 1 and 200 or 404, "lookup")
end
LUA
"$starling" run --config "$work/starling.toml" --script "$work/bench.lua" --listen "udp:127.0.0.1:$SPORT" --workers 2 \
    --log-level warning >"$work/starling.log" 2>&1 & pids+=("$!")
spid=$!
sleep 1
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }   # utime + stime, clock ticks
hz=$(getconf CLK_TCK)
mem0=$(redis-cli -p "$RPORT" INFO memory | awk -F: '/^used_memory:/{print $2+0}')
s0=$(cpu $spid); r0=$(cpu $rpid)
sipp -sf "$root/Tests/StarlingIntegrationTests/Scenarios/register.xml" "127.0.0.1:$SPORT" -i 127.0.0.1 -p "$UPORT" \
    -s u -m "$USERS" -r "$RATE" -nostdin -timeout 120s -trace_stat -stf "$work/reg.csv" -fd 1 >/dev/null 2>&1 || true
s1=$(cpu $spid); r1=$(cpu $rpid)
mem1=$(redis-cli -p "$RPORT" INFO memory | awk -F: '/^used_memory:/{print $2+0}')
sipp -sf "$root/Tests/StarlingIntegrationTests/Scenarios/options.xml" "127.0.0.1:$SPORT" -i 127.0.0.1 -p "$UPORT" \
    -s u1 -m "$USERS" -r "$RATE" -set expected 200 -nostdin -timeout 120s -trace_stat -stf "$work/opt.csv" -fd 1 >/dev/null 2>&1 || true
s2=$(cpu $spid); r2=$(cpu $rpid)
python3 - "$work/reg.csv" "$work/opt.csv" "$USERS" "$hz" "$s0" "$s1" "$s2" "$r0" "$r1" "$r2" "$mem0" "$mem1" \
    "$(redis-cli -p "$RPORT" DBSIZE)" <<'PY'
import csv, sys
def ok(p):
    rows = list(csv.reader(open(p), delimiter=";")); m = dict(zip(rows[0], rows[-1]))
    return int(float(m.get("SuccessfulCall(C)", 0))), int(float(m.get("FailedCall(C)", 0)))
reg, opt = ok(sys.argv[1]), ok(sys.argv[2])
n, hz = int(sys.argv[3]), int(sys.argv[4])
s0, s1, s2, r0, r1, r2, m0, m1 = map(int, sys.argv[5:13])
us = lambda ticks, k: ticks * 1e6 / hz / max(k, 1)
print(f"REGISTER: {reg[0]} ok, {reg[1]} failed; Starling {us(s1-s0, reg[0]):.0f} us CPU each, redis-server {us(r1-r0, reg[0]):.0f} us")
print(f"lookup (OPTIONS): {opt[0]} ok, {opt[1]} failed; Starling {us(s2-s1, opt[0]):.0f} us CPU each, redis-server {us(r2-r1, opt[0]):.0f} us")
print(f"Redis memory: {(m1-m0)/max(reg[0],1):.0f} bytes per AoR with one contact; keys {sys.argv[13]}")
PY
echo "(work dir $work)"
