#!/usr/bin/env bash
# A runnable PBX farm: three SIPp "PBXs" (answering INVITE and OPTIONS) on 127.0.0.1:5071-5073 and
# Starling on 127.0.0.1:5060 load-balancing calls over them with KSR.dispatcher (pbx-farm.lua).
#
#   examples/pbx-farm/run.sh            # start the farm and Starling; Ctrl-C stops everything
#   CALLS=300 RATE=10 examples/pbx-farm/run.sh   # ... and send that many calls through it
#
# While it runs: `starling ctl dispatcher.list`, kill one PBX (its pid is printed) and watch the
# DSEVENT lines and the calls fail over; start it again (the printed command) and it comes back.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
starling="${STARLING_BIN:-$root/.build/debug/starling}"
[ -x "$starling" ] || starling="$(command -v starling || true)"
[ -n "$starling" ] || { echo "run.sh: build Starling first (swift build) or set STARLING_BIN" >&2; exit 2; }
command -v sipp >/dev/null || { echo "run.sh: sipp not found (Debian package sip-tester)" >&2; exit 2; }
scenario="$root/Tests/StarlingIntegrationTests/Scenarios/pbx.xml"
work="$(mktemp -d /tmp/pbx-farm.XXXXXX)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

for port in 5071 5072 5073; do
    sipp -sf "$scenario" -i 127.0.0.1 -p "$port" -nostdin -bg >/dev/null 2>&1 || true
    # -bg forks; find its pid by port
    sleep 0.3
    pid="$(pgrep -f "sipp -sf $scenario -i 127.0.0.1 -p $port" | head -1)"
    pids+=("$pid")
    echo "PBX on 127.0.0.1:$port pid $pid (restart: sipp -sf $scenario -i 127.0.0.1 -p $port -nostdin -bg)"
done

"$starling" run --config examples/pbx-farm/starling.toml >"$work/starling.log" 2>&1 &
pids+=("$!")
sleep 1
echo "Starling on 127.0.0.1:5060 (log: $work/starling.log); control API on 127.0.0.1:5065"

if [ -n "${CALLS:-}" ]; then
    sipp -sf "$root/Tests/StarlingIntegrationTests/Scenarios/uac.xml" 127.0.0.1:5060 -i 127.0.0.1 -p 5080 \
        -m "$CALLS" -r "${RATE:-10}" -nostdin -trace_stat -stf "$work/uac_stat.csv" -fd 1 >/dev/null 2>&1 || true
    python3 - "$work/uac_stat.csv" <<'PY'
import csv, sys
rows = list(csv.reader(open(sys.argv[1]), delimiter=";"))
m = dict(zip(rows[0], rows[-1]))
print(f"UAC: {m.get('SuccessfulCall(C)')} calls succeeded, {m.get('FailedCall(C)')} failed")
PY
    grep DSEVENT "$work/starling.log" || true
    "$starling" ctl dispatcher.list || true
else
    echo "Ctrl-C to stop. Send calls with: sipp -sf Tests/StarlingIntegrationTests/Scenarios/uac.xml 127.0.0.1:5060 -r 5 -m 100"
    tail -f "$work/starling.log" | grep --line-buffered DSEVENT
fi
