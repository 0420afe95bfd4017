#!/usr/bin/env bash
# Builds the libFuzzer target for SIPCore and runs it over fuzz/corpus (new inputs go to
# fuzz/corpus-work; crashes to fuzz/artifacts). Usage: fuzz/run.sh [SECONDS] [extra libFuzzer flags]
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_TO_RUN="${1:-600}"; shift || true
mkdir -p .build/fuzz fuzz/corpus-work fuzz/artifacts
swiftc -sanitize=fuzzer,address -parse-as-library -O -g -module-name SIPFuzz \
  $(find Sources/SIPCore -name '*.swift') fuzz/FuzzParser.swift -o .build/fuzz/sipcore-fuzz
exec .build/fuzz/sipcore-fuzz -max_total_time="$SECONDS_TO_RUN" -max_len=8192 -timeout=5 \
  -artifact_prefix=fuzz/artifacts/ -print_final_stats=1 "$@" fuzz/corpus-work fuzz/corpus
