#!/usr/bin/env bash
# Context switches of a Starling binary per stateful call (bench/stateful.lua, KSR.tm.t_relay()):
# WORKERS workers (4), SIPp sends CALLS calls (3000) at RATE calls/s (500). Counts, unlike CPU times,
# stay meaningful on a loaded machine; voluntary switches (a worker going to sleep) are the ones a
# change to the wait loop moves, involuntary ones mostly measure the other load.
#   bench/wakeups-stateful.sh BIN [BIN...]
set -u
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
calls=${CALLS:-3000}; rate=${RATE:-500}; workers=${WORKERS:-4}
proxy=${PROXY_PORT:-36260}; uas=${UAS_PORT:-36290}; uac=${UAC_PORT:-36270}
for tool in sipp perf; do
    command -v "$tool" >/dev/null || { echo "wakeups-stateful.sh: '$tool' not found (scripts/install-deps.sh)" >&2; exit 2; }
done
[ $# -ge 1 ] || { echo "usage: $0 STARLING_BINARY [...]" >&2; exit 2; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
sed "s|^local NEXT_HOP = .*|local NEXT_HOP = \"sip:127.0.0.1:$uas\"|" "$root/bench/stateful.lua" > "$tmp/stateful.lua"
printf '[core]\nmodules = ["sl", "maxfwd", "tm"]\n[modparam.tm]\nfr_timer = 5000\nfr_inv_timer = 10000\n' > "$tmp/starling.toml"
for bin in "$@"; do
    sipp -sf "$root/Tests/StarlingIntegrationTests/Scenarios/uas.xml" -i 127.0.0.1 -p "$uas" -nostdin >/dev/null 2>&1 &
    uaspid=$!
    "$bin" run --config "$tmp/starling.toml" --script "$tmp/stateful.lua" --listen "udp:127.0.0.1:$proxy" \
        --workers "$workers" --log-level error >"$tmp/server.log" 2>&1 &
    spid=$!
    for _ in $(seq 100); do grep -q ":$(printf '%04X' "$proxy") " /proc/net/udp && break; sleep 0.1; done
    ctx() { cat /proc/$spid/task/*/status 2>/dev/null | awk -v k="$1" '$1==k":" {s+=$2} END {print s+0}'; }
    v0=$(ctx voluntary_ctxt_switches); n0=$(ctx nonvoluntary_ctxt_switches)
    perf stat -e context-switches -p "$spid" -o "$tmp/perf.txt" &
    perfpid=$!
    sleep 0.5
    sipp -sf "$root/Tests/StarlingIntegrationTests/Scenarios/uac.xml" "127.0.0.1:$proxy" -i 127.0.0.1 -p "$uac" \
        -nostdin -r "$rate" -m "$calls" -timeout 120s -trace_stat -stf "$tmp/uac.csv" >/dev/null 2>&1
    v1=$(ctx voluntary_ctxt_switches); n1=$(ctx nonvoluntary_ctxt_switches)
    kill -INT "$perfpid"; wait "$perfpid" 2>/dev/null
    kill "$spid" "$uaspid"; wait "$spid" "$uaspid" 2>/dev/null
    ok=$(python3 -c "import csv; r=list(csv.reader(open('$tmp/uac.csv'),delimiter=';')); print(r[-1][r[0].index('SuccessfulCall(C)')])")
    cs=$(awk '/context-switches/ {gsub(",","",$1); print $1}' "$tmp/perf.txt")
    rm -f "$tmp/uac.csv"
    python3 -c "print(f'$bin: $ok/$calls calls at $rate/s; per call: context switches {$cs/$calls:.2f}, voluntary {($v1-$v0)/$calls:.2f}, involuntary {($n1-$n0)/$calls:.2f}')"
done
