#!/usr/bin/env bash
# Instructions per stateful call (bench/stateful.lua, KSR.tm.t_relay()) of one or more Starling
# binaries, counted by callgrind over the whole server process while SIPp sends CALLS calls at RATE
# calls/s through it. Instruction counts do not depend on what else the machine runs, so this
# compares builds (before/after a change) on a busy machine, where bench/compare.sh's CPU figures
# would be contended. Idle wake-ups are counted too: keep CALLS and RATE the same across binaries.
#   bench/callgrind-stateful.sh BIN [BIN...]     (CALLS=300 RATE=20 WORKERS=1)
# OUT=DIR keeps each run's callgrind file as DIR/<binary name>-<calls>.out (for bench/callgrind-diff.py).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
calls=${CALLS:-300}; rate=${RATE:-20}; workers=${WORKERS:-1}
for tool in valgrind sipp; do
    command -v "$tool" >/dev/null || { echo "callgrind-stateful.sh: '$tool' not found (scripts/install-deps.sh)" >&2; exit 2; }
done
[ $# -ge 1 ] || { echo "usage: $0 STARLING_BINARY [...]" >&2; exit 2; }
tmp=$(mktemp -d); trap '[ -n "${KEEP:-}" ] || rm -rf "$tmp"' EXIT
proxy=${PROXY_PORT:-36060}; uas=${UAS_PORT:-36090}; uac=${UAC_PORT:-36070}
sed "s|^local NEXT_HOP = .*|local NEXT_HOP = \"sip:127.0.0.1:$uas\"|" "$root/bench/stateful.lua" > "$tmp/stateful.lua"
printf '[core]\nmodules = ["sl", "maxfwd", "tm"]\n[modparam.tm]\nfr_timer = 5000\nfr_inv_timer = 10000\n' > "$tmp/starling.toml"
# One run: prints "<successful calls> <instructions>" for binary $1 and $2 calls.
run() {
    sipp -sf "$root/Tests/StarlingIntegrationTests/Scenarios/uas.xml" -i 127.0.0.1 -p "$uas" -nostdin >/dev/null 2>&1 &
    local uaspid=$!
    valgrind --tool=callgrind --callgrind-out-file="$tmp/cg.out" "$tmp/starling" run --config "$tmp/starling.toml" \
        --script "$tmp/stateful.lua" --listen "udp:127.0.0.1:$proxy" --workers "$workers" --log-level error \
        >"$tmp/valgrind.log" 2>&1 &
    local vg=$!
    # valgrind starts the server slowly on a loaded machine: wait up to 2 minutes for its socket
    for _ in $(seq 600); do grep -q ":$(printf '%04X' "$proxy") " /proc/net/udp && break; sleep 0.2; done
    sipp -sf "$root/Tests/StarlingIntegrationTests/Scenarios/uac.xml" "127.0.0.1:$proxy" -i 127.0.0.1 -p "$uac" \
        -nostdin -r "$rate" -m "$2" -timeout 300s -trace_stat -stf "$tmp/uac.csv" >/dev/null 2>&1 || true
    kill -INT "$vg" 2>/dev/null || true; wait "$vg" 2>/dev/null || true
    kill "$uaspid" 2>/dev/null || true; wait "$uaspid" 2>/dev/null || true
    local ok total
    ok=$(python3 -c "import csv; r=list(csv.reader(open('$tmp/uac.csv'),delimiter=';')); print(r[-1][r[0].index('SuccessfulCall(C)')])")
    total=$(sed -n 's/.*Collected : \([0-9]*\).*/\1/p' "$tmp/valgrind.log")
    rm -f "$tmp/uac.csv"
    [ -z "${OUT:-}" ] || cp "$tmp/cg.out" "$OUT/$(basename "$1")-$2.out"
    echo "$ok $total"
}

[ -z "${OUT:-}" ] || mkdir -p "$OUT"
for bin in "$@"; do
    cp "$bin" "$tmp/starling" && strip -g "$tmp/starling"   # valgrind 3.19 cannot read Swift 6.3's DWARF 5
    # SIPp 3.6.1's UAC aborts when a retransmitted 200 beats its ACK (slow server under valgrind on a
    # loaded machine): a run that did not complete every call is repeated (up to 3 times).
    for _ in 1 2 3; do read -r ok1 i1 < <(run "$bin" "$calls"); [ "$ok1" = "$calls" ] && break; done
    for _ in 1 2 3; do read -r ok2 i2 < <(run "$bin" "$((calls * 2))"); [ "$ok2" = "$((calls * 2))" ] && break; done
    # The difference of a run of 2N calls and one of N removes start-up and shutdown.
    echo "$bin: $ok1/$calls and $ok2/$((calls * 2)) calls; $(python3 -c "print(round(($i2 - $i1) / $calls))") instructions per call"
done
