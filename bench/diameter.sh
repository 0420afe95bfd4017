#!/usr/bin/env bash
# Diameter relay benchmark (issue 20): CPU per relayed request/answer pair and latency, Starling
# (ksr_diameter_request() relaying by Lua) next to freeDiameterd 1.2.1 (core routing, no extension),
# with the same peers: bench/diameter_load.py as the MME (listens; the relay connects to it) and
# Tests/StarlingIntegrationTests/Tools/diameter_peer.py as the HSS. CPU is utime+stime of the relay
# process over the load phase.
#   bench/diameter.sh            (REQUESTS=20000 WINDOW=32 STARLING=.build/release/starling)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
requests=${REQUESTS:-20000}; window=${WINDOW:-32}
starling=${STARLING:-$root/.build/release/starling}
for tool in freeDiameterd python3; do
    command -v "$tool" >/dev/null || { echo "diameter.sh: '$tool' not found (scripts/install-deps.sh)" >&2; exit 2; }
done
[ -x "$starling" ] || { echo "diameter.sh: no Starling binary at $starling (swift build -c release, or STARLING=...)" >&2; exit 2; }
tmp=$(mktemp -d); trap '[ -n "${KEEP:-}" ] || rm -rf "$tmp"; kill $(jobs -p) 2>/dev/null || true' EXIT
hss=${HSS_PORT:-38681}; mme=${MME_PORT:-38682}; relay=${RELAY_PORT:-38683}; sip=${SIP_PORT:-38684}

python3 "$root/Tests/StarlingIntegrationTests/Tools/diameter_peer.py" hss --identity hss1.example --realm hss.example \
    --port "$hss" >"$tmp/hss.log" 2>&1 &
sleep 0.5

run() {  # $1 name, $2 pid of the relay
    python3 "$here/diameter_load.py" --port "$mme" --pid "$2" --requests "$requests" --window "$window" > "$tmp/$1.json"
    echo "$1 $(cat "$tmp/$1.json")"
}

# Starling
cat > "$tmp/dra.lua" <<'LUA'
function ksr_request_route() KSR.sl.sl_send_reply(404, "Not here") end
function ksr_diameter_request() KSR.diameter.relay("hss1.example") end
LUA
cat > "$tmp/starling.toml" <<TOML
[diameter]
identity = "dra.example"
realm = "example"
listen = ["tcp:127.0.0.1:$relay"]
[[diameter.peers]]
identity = "hss1.example"
connect = "tcp:127.0.0.1:$hss"
[[diameter.peers]]
identity = "mme.example"
connect = "tcp:127.0.0.1:$mme"
TOML
"$starling" run --config "$tmp/starling.toml" --script "$tmp/dra.lua" --listen "udp:127.0.0.1:$sip" --workers 1 \
    --log-level warning >"$tmp/starling.log" 2>&1 &
spid=$!
run starling "$spid"
kill "$spid"; wait "$spid" 2>/dev/null || true

# freeDiameterd: the same peers, it connects to both.
cat > "$tmp/fd.conf" <<FD
Identity = "fd.example";
Realm = "example";
Port = $relay;
SecPort = 0;
No_SCTP;
No_IPv6;
TcTimer = 1;
ConnectPeer = "hss1.example" { ConnectTo = "127.0.0.1"; Port = $hss; No_TLS; };
ConnectPeer = "mme.example" { ConnectTo = "127.0.0.1"; Port = $mme; No_TLS; };
FD
freeDiameterd -c "$tmp/fd.conf" >"$tmp/fd.log" 2>&1 &
fpid=$!
run freeDiameterd "$fpid"
kill "$fpid"; wait "$fpid" 2>/dev/null || true
