#!/usr/bin/env bash
# Builds the libFuzzer target for the Diameter codec and runs it over fuzz/corpus-diameter (new
# inputs go to fuzz/corpus-diameter-work; crashes to fuzz/artifacts). Usage:
# fuzz/run-diameter.sh [SECONDS] [extra libFuzzer flags]
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_TO_RUN="${1:-600}"; shift || true
mkdir -p .build/fuzz fuzz/corpus-diameter-work fuzz/artifacts
swiftc -sanitize=fuzzer,address -parse-as-library -O -g -module-name DiameterFuzz \
  $(find Sources/Diameter -name '*.swift') fuzz/FuzzDiameter.swift -o .build/fuzz/diameter-fuzz
exec .build/fuzz/diameter-fuzz -max_total_time="$SECONDS_TO_RUN" -max_len=4096 -timeout=5 \
  -artifact_prefix=fuzz/artifacts/diameter- -print_final_stats=1 "$@" fuzz/corpus-diameter-work fuzz/corpus-diameter
