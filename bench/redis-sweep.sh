#!/usr/bin/env bash
# The cost of usrloc's periodic sweep on Redis (issue 19): AORS AoRs, each with one live contact and,
# for DEAD_PCT percent of them, one expired contact too (written straight into a throwaway
# redis-server with redis-cli --pipe, in usrloc's layout); then one Starling (usrloc db_mode 3) sweeps
# them. Prints how long the sweep took (until its end mark appears in Redis), redis-server's and
# Starling's CPU meanwhile (per AoR) and the contacts left.
#   AORS=100000 DEAD_PCT=100 bench/redis-sweep.sh   (STARLING_BIN: default .build/release/starling, else debug)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/redis-common.sh"
AORS="${AORS:-100000}"; DEAD_PCT="${DEAD_PCT:-100}"; RPORT="${RPORT:-36579}"; SPORT="${SPORT:-35260}"
require_tools redis-server redis-cli python3
require_starling
start_redis redis-sweep
python3 - "$AORS" "$DEAD_PCT" <<'PY' | redis-cli -p "$RPORT" --pipe >/dev/null
import sys, time
n, dead, now = int(sys.argv[1]), int(sys.argv[2]), int(time.time())
out = sys.stdout.buffer
def cmd(*a):
    b = [x.encode() if isinstance(x, str) else x for x in a]
    out.write(b"*%d\r\n" % len(b) + b"".join(b"$%d\r\n%s\r\n" % (len(x), x) for x in b))
def contact(exp, ruid, aor, port):
    f = [str(exp), ruid, aor, aor, "", f"sip:{aor}@192.0.2.1:{port}", "", "", "-1", f"cid-{ruid}", "1", str(now),
         "0", "0", "bench", "udp:127.0.0.1:5060", "-1", "", "0", "0", "-1", "0", "0"]
    return "\t".join(f)
for i in range(n):
    aor = f"u{i}"
    extra = (f"dead-{i}", contact(now - 10, f"dead-{i}", aor, 5062)) if i % 100 < dead else ()
    cmd("HSET", f"ul:location:{aor}", "_v", str(i + 1), f"live-{i}", contact(now + 3600, f"live-{i}", aor, 5060), *extra)
    cmd("EXPIREAT", f"ul:location:{aor}", str(now + 3600))
cmd("SET", "ul:seq", str(n + 1))
PY
echo "filled: $(redis-cli -p "$RPORT" DBSIZE) keys"
printf '[modparam.usrloc]\ndb_url = "redis://127.0.0.1:%s/0"\ndb_mode = 3\ntimer_interval = 60\n' "$RPORT" >"$work/starling.toml"
printf 'function ksr_request_route() KSR.sl.send_reply(404, "x") end\n' >"$work/route.lua"
r0=$(redis_cpu); t0=$(date +%s.%N)
setsid "$starling" run --config "$work/starling.toml" --script "$work/route.lua" --listen "udp:127.0.0.1:$SPORT" \
    --workers 1 --log-level info >"$work/starling.log" 2>&1 & pids+=("$!")
spid=$!
# The sweep's end: the mark it leaves in Redis for timer_interval seconds.
for _ in $(seq 6000); do [[ "$(redis-cli -p "$RPORT" EXISTS ul-sweep:done)" == 1 ]] && break; sleep 0.1; done
t1=$(date +%s.%N); r1=$(redis_cpu)
s1=$(awk '{ print $14 + $15 }' "/proc/$spid/stat")
[[ "$(redis-cli -p "$RPORT" EXISTS ul-sweep:done)" == 1 ]] || { echo "no sweep finished; log:"; tail -20 "$work/starling.log"; exit 1; }
grep "sweep removed" "$work/starling.log" || true
# (a throwaway server: KEYS is fine here)
left=$(redis-cli -p "$RPORT" EVAL "local n = 0 for _, k in ipairs(redis.call('KEYS', 'ul:location:*')) do n = n + redis.call('HLEN', k) - 1 end return n" 0)
python3 - "$AORS" "$hz" "$t0" "$t1" "$r0" "$r1" "$s1" "$left" <<'PY'
import sys
n, hz = int(sys.argv[1]), int(sys.argv[2])
t0, t1, r0, r1, s1, left = float(sys.argv[3]), float(sys.argv[4]), *map(int, sys.argv[5:])
print(f"{n} AoRs swept in {t1 - t0:.1f} s (Starling start-up included); contacts left {left} (expected {n})")
print(f"redis-server CPU {(r1 - r0) / hz:.2f} s = {(r1 - r0) * 1e6 / hz / n:.1f} us per AoR; "
      f"Starling CPU {s1 / hz:.2f} s = {s1 * 1e6 / hz / n:.1f} us per AoR (start-up included)")
PY
echo "(work dir $work)"
