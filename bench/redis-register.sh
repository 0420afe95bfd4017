#!/usr/bin/env bash
# usrloc on Redis (issue 19): USERS REGISTERs (one AoR each) at RATE/s through one server with usrloc
# db_mode 3 on a throwaway redis-server, then USERS OPTIONS lookups of user u1 (for Starling every
# lookup after the first is a cache hit; Kamailio's db_redis asks Redis each time).
# The same Lua script runs on each server in SERVERS (Kamailio 5.6: app_lua + usrloc db_mode 3 over
# db_redis, the mapping keys its README recommends). Redis is flushed between servers.
# Prints each server's and redis-server's CPU per REGISTER / per lookup, Redis memory per AoR, and the
# Starling/Kamailio ratios when both ran.
#   USERS=2000 RATE=400 SERVERS="starling kamailio" bench/redis-register.sh
#   (STARLING_BIN: default .build/release/starling, else .build/debug/starling; WORKERS: 2 for both)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/redis-common.sh"
USERS="${USERS:-2000}"; RATE="${RATE:-400}"; WORKERS="${WORKERS:-2}"; SERVERS="${SERVERS:-starling kamailio}"
RPORT="${RPORT:-36379}"; SPORT="${SPORT:-35060}"; UPORT="${UPORT:-35070}"
require_tools sipp redis-server redis-cli python3
start_redis redis-bench
cat >"$work/bench.lua" <<'LUA'
function ksr_request_route()
  if KSR.is_REGISTER() then KSR.registrar.save("location", 0) return end
  local rc = KSR.registrar.lookup("location")
  KSR.sl.send_reply(rc == 1 and 200 or 404, "lookup")
end
LUA
redis_mem() { redis-cli -p "$RPORT" INFO memory | awk -F: '/^used_memory:/ { print $2 + 0 }'; }

start_starling() {
  printf '[modparam.usrloc]\ndb_url = "redis://127.0.0.1:%s/0"\ndb_mode = 3\nuse_domain = 1\n' "$RPORT" >"$work/starling.toml"
  setsid "$starling" run --config "$work/starling.toml" --script "$work/bench.lua" --listen "udp:127.0.0.1:$SPORT" \
      --workers "$WORKERS" --log-level warning >"$work/starling.log" 2>&1 & pids+=("$!")
  spid=$!
}
start_kamailio() {
  kamailio_mpath
  cat >"$work/kamailio.cfg" <<CFG
#!KAMAILIO
debug=-1
log_stderror=yes
children=$WORKERS
listen=udp:127.0.0.1:$SPORT
auto_aliases=no
mpath="$mpath/"
loadmodule "sl.so"
loadmodule "pv.so"
loadmodule "db_redis.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "app_lua.so"
$(kamailio_redis_usrloc)
modparam("usrloc", "preload", "location")
modparam("usrloc", "use_domain", 1)
modparam("app_lua", "load", "$work/bench.lua")
cfgengine "lua"
CFG
  setsid kamailio -f "$work/kamailio.cfg" -DD -E -m 256 -M 16 -Y "$work" >"$work/kamailio.log" 2>&1 & pids+=("$!")
  spid=$!
}

results=()
for server in $SERVERS; do
  redis-cli -p "$RPORT" FLUSHALL >/dev/null
  case "$server" in
    starling) require_starling; start_starling ;;
    kamailio) start_kamailio ;;
    *) echo "unknown server $server (starling, kamailio)" >&2; exit 2 ;;
  esac
  wait_udp; sleep 1
  mem0=$(redis_mem); s0=$(cpu_sid "$spid"); r0=$(redis_cpu)
  sipp -sf "$root/Tests/StarlingIntegrationTests/Scenarios/register.xml" "127.0.0.1:$SPORT" -i 127.0.0.1 -p "$UPORT" \
      -s u -m "$USERS" -r "$RATE" -nostdin -timeout 120s -trace_stat -stf "$work/$server-reg.csv" -fd 1 >/dev/null 2>&1 || true
  s1=$(cpu_sid "$spid"); r1=$(redis_cpu); mem1=$(redis_mem); keys=$(redis-cli -p "$RPORT" DBSIZE)
  sipp -sf "$root/Tests/StarlingIntegrationTests/Scenarios/options.xml" "127.0.0.1:$SPORT" -i 127.0.0.1 -p "$UPORT" \
      -s u1 -m "$USERS" -r "$RATE" -set expected 200 -nostdin -timeout 120s -trace_stat -stf "$work/$server-opt.csv" -fd 1 >/dev/null 2>&1 || true
  s2=$(cpu_sid "$spid"); r2=$(redis_cpu)
  kill -TERM -- "-$spid" 2>/dev/null || true; sleep 1; kill -9 -- "-$spid" 2>/dev/null || true
  results+=("$server $s0 $s1 $s2 $r0 $r1 $r2 $mem0 $mem1 $keys")
done

python3 - "$work" "$USERS" "$hz" "${results[@]}" <<'PY'
import csv, sys
work, n, hz = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def ok(path):
    try:
        rows = list(csv.reader(open(path), delimiter=";"))
    except FileNotFoundError:
        return 0, 0
    m = dict(zip(rows[0], rows[-1]))
    return int(float(m.get("SuccessfulCall(C)", 0))), int(float(m.get("FailedCall(C)", 0)))
us = lambda ticks, k: ticks * 1e6 / hz / max(k, 1)
per = {}
for line in sys.argv[4:]:
    name, *v = line.split()
    s0, s1, s2, r0, r1, r2, m0, m1, keys = map(int, v)
    reg, opt = ok(f"{work}/{name}-reg.csv"), ok(f"{work}/{name}-opt.csv")
    per[name] = (us(s1 - s0, reg[0]), us(s2 - s1, opt[0]), us(r1 - r0, reg[0]), us(r2 - r1, opt[0]))
    print(f"{name}: REGISTER {reg[0]} ok, {reg[1]} failed; {name} {per[name][0]:.0f} us CPU each, redis-server {per[name][2]:.0f} us")
    print(f"{name}: lookup (OPTIONS) {opt[0]} ok, {opt[1]} failed; {name} {per[name][1]:.0f} us CPU each, redis-server {per[name][3]:.0f} us")
    print(f"{name}: Redis memory {(m1 - m0) / max(reg[0], 1):.0f} bytes per AoR with one contact; keys {keys}")
if "starling" in per and "kamailio" in per:
    s, k = per["starling"], per["kamailio"]
    r = lambda a, b: f"{a / b:.2f}" if b else "n/a"
    print(f"starling/kamailio: REGISTER server CPU {r(s[0], k[0])}, server+redis {r(s[0] + s[2], k[0] + k[2])}; "
          f"lookup server CPU {r(s[1], k[1])}, server+redis {r(s[1] + s[3], k[1] + k[3])}")
PY
echo "(work dir $work)"
