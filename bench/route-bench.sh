#!/usr/bin/env bash
# The engine micro-benchmark (issue 4): bench/route30.lua, a 30-line route with pv, hdr, a textops
# regex, xlog and a stateless reply.
#  1. In process: ns per request and instructions per request (callgrind), Starling's engine alone.
#  2. Over UDP at a fixed rate: server CPU per request, Kamailio 5.6 and Starling on the same script.
set -euo pipefail
cd "$(dirname "$0")/.."
swift build -c release --product starling-bench >/dev/null
swift build -c release --product starling >/dev/null
.build/release/starling-bench route bench/route30.lua 200000
cp .build/release/starling-bench /tmp/starling-bench-stripped && strip -g /tmp/starling-bench-stripped
instr() { valgrind --tool=callgrind --callgrind-out-file=/dev/null /tmp/starling-bench-stripped route bench/route30.lua "$1" 2>&1 | sed -n 's/.*Collected : \([0-9]*\).*/\1/p'; }
i1=$(instr 1000); i2=$(instr 2000)
echo "instructions per request (callgrind, parse + route + reply): $(python3 -c "print(($i2-$i1)/1000)")"
python3 bench/route_bench.py
