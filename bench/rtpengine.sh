#!/usr/bin/env bash
# CPU per call with rtpengine_manage (offer + answer + delete per call): Starling vs Kamailio 5.6
# with rtpengine.so, the same Lua route (bench/rtpengine.lua), the same rtpengine daemon and SIPp
# load. CPU is user+system time of the proxy's processes (all of Kamailio's children) over the run,
# divided by the calls; rtpengine's own CPU is reported too.
#   bench/rtpengine.sh                 (CALLS=2000 RATE=100 WORKERS=2 STARLING=.build/debug/starling)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
calls=${CALLS:-2000}; rate=${RATE:-100}; workers=${WORKERS:-2}
starling=${STARLING:-$root/.build/debug/starling}
for tool in sipp kamailio rtpengine python3; do
    command -v "$tool" >/dev/null || { echo "rtpengine.sh: '$tool' not found (scripts/install-deps.sh)" >&2; exit 2; }
done
[ -x "$starling" ] || { echo "rtpengine.sh: no Starling binary at $starling (swift build, or STARLING=...)" >&2; exit 2; }
moddir=$(dirname "$(ls /usr/lib/*/kamailio/modules/rtpengine.so /usr/lib/kamailio/modules/rtpengine.so 2>/dev/null | head -1)")
[ -f "$moddir/app_lua.so" ] || { echo "rtpengine.sh: Kamailio's rtpengine.so/app_lua.so not found" >&2; exit 2; }
tmp=$(mktemp -d); trap '[ -n "${KEEP:-}" ] || rm -rf "$tmp"; kill $(jobs -p) 2>/dev/null || true' EXIT
proxy=${PROXY_PORT:-37060}; uas=${UAS_PORT:-37090}; uac=${UAC_PORT:-37070}; ng=${NG_PORT:-37223}
sed "s|^local NEXT_HOP = .*|local NEXT_HOP = \"sip:127.0.0.1:$uas\"|" "$here/rtpengine.lua" > "$tmp/route.lua"

# CPU seconds (user+system) of every process in process group $1.
cpu() { python3 - "$1" <<'PY'
import os, sys
hz = os.sysconf("SC_CLK_TCK"); total = 0
for p in os.listdir("/proc"):
    if not p.isdigit(): continue
    try: f = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()
    except OSError: continue
    if int(f[2]) == int(sys.argv[1]): total += int(f[11]) + int(f[12])
print(total / hz)
PY
}

setsid rtpengine --config-file=none --table=-1 --interface=127.0.0.1 --listen-ng=127.0.0.1:$ng --foreground \
    --log-level=3 --port-min=38000 --port-max=39999 --delete-delay=0 >"$tmp/rtpengine.log" 2>&1 &
rtpe=$!
sleep 1

# One run: $1 = name, then the command starting the proxy (in its own process group).
run() {
    local name=$1; shift
    setsid sipp -sf "$root/Tests/StarlingIntegrationTests/Scenarios/uas.xml" -i 127.0.0.1 -p "$uas" -nostdin >/dev/null 2>&1 &
    local uaspid=$!
    setsid "$@" >"$tmp/$name.log" 2>&1 &
    local pid=$!
    for _ in $(seq 100); do grep -q ":$(printf '%04X' "$proxy") " /proc/net/udp && break; sleep 0.2; done
    sleep 1
    local c0 r0; c0=$(cpu "$pid"); r0=$(cpu "$rtpe")
    sipp -sf "$root/Tests/StarlingIntegrationTests/Scenarios/uac.xml" "127.0.0.1:$proxy" -i 127.0.0.1 -p "$uac" \
        -nostdin -r "$rate" -m "$calls" -timeout 600s -trace_stat -stf "$tmp/uac.csv" >/dev/null 2>&1 || true
    local c1 r1; c1=$(cpu "$pid"); r1=$(cpu "$rtpe")
    kill -TERM -- "-$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
    kill -TERM -- "-$uaspid" 2>/dev/null || true; wait "$uaspid" 2>/dev/null || true
    local ok; ok=$(python3 -c "import csv; r=list(csv.reader(open('$tmp/uac.csv'),delimiter=';')); print(r[-1][r[0].index('SuccessfulCall(C)')])")
    rm -f "$tmp/uac.csv"
    python3 -c "print(f'$name: $ok/$calls calls; proxy CPU {($c1-$c0):.2f} s = {($c1-$c0)/$calls*1e6:.0f} us/call; rtpengine CPU {($r1-$r0):.2f} s')"
    echo "$c1 $c0" > "$tmp/$name.cpu"
    sleep 1
}

printf '[core]\nmodules = ["sl", "tm", "siputils", "kx", "rtpengine"]\n[modparam.rtpengine]\nrtpengine_sock = "udp:127.0.0.1:%s"\n' \
    "$ng" > "$tmp/starling.toml"
run starling "$starling" run --config "$tmp/starling.toml" --script "$tmp/route.lua" --listen "udp:127.0.0.1:$proxy" \
    --workers "$workers" --log-level error

cat > "$tmp/kamailio.cfg" <<CFG
#!KAMAILIO
debug=-1
log_stderror=yes
children=$workers
listen=udp:127.0.0.1:$proxy
auto_aliases=no
mpath="$moddir/"
loadmodule "pv.so"
loadmodule "sl.so"
loadmodule "tm.so"
loadmodule "siputils.so"
loadmodule "kemix.so"
loadmodule "rtpengine.so"
loadmodule "app_lua.so"
modparam("rtpengine", "rtpengine_sock", "udp:127.0.0.1:$ng")
modparam("app_lua", "load", "$tmp/route.lua")
cfgengine "lua"
CFG
kamailio -c -f "$tmp/kamailio.cfg" >"$tmp/kamailio-check.log" 2>&1 || { cat "$tmp/kamailio-check.log" >&2; exit 1; }
run kamailio kamailio -f "$tmp/kamailio.cfg" -DD -E -m 256 -M 16 -Y "$tmp"

python3 - "$tmp" <<'PY'
import sys
d = sys.argv[1]
s1, s0 = map(float, open(f"{d}/starling.cpu").read().split())
k1, k0 = map(float, open(f"{d}/kamailio.cpu").read().split())
print(f"Starling CPU / Kamailio CPU: {(s1 - s0) / max(k1 - k0, 1e-9):.2f}")
PY
kill -TERM "$rtpe" 2>/dev/null || true
