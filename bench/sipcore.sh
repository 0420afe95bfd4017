#!/usr/bin/env bash
# SIPCore micro-benchmark: ns/message (release build), heap allocations and instructions per message
# (valgrind: the difference between 2000 and 1000 iterations, divided by 1000).
set -euo pipefail
cd "$(dirname "$0")/.."
swift build -c release --product starling-bench >/dev/null
BIN=.build/release/starling-bench
"$BIN" 1000000
cp "$BIN" /tmp/starling-bench-stripped && strip -g /tmp/starling-bench-stripped
allocs() { valgrind --tool=memcheck /tmp/starling-bench-stripped "$1" 2>&1 | sed -n 's/.*total heap usage: \([0-9,]*\) allocs.*/\1/p' | tr -d ,; }
a1=$(allocs 1000); a2=$(allocs 2000)
echo "heap allocations per message: $(python3 -c "print(($a2-$a1)/1000)")"
instr() { valgrind --tool=callgrind --callgrind-out-file=/dev/null /tmp/starling-bench-stripped "$1" 2>&1 | sed -n 's/.*Collected : \([0-9]*\).*/\1/p'; }
i1=$(instr 1000); i2=$(instr 2000)
echo "instructions per message (callgrind): $(python3 -c "print(($i2-$i1)/1000)")"
