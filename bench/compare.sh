#!/usr/bin/env bash
# Kamailio 5.6 vs Starling, stateless forwarding on the same Lua script
# (bench/stateless.lua) under the same SIPp load. Settings are environment
# variables: run `bench/compare.sh --help`. Example, short run:
#   RATES="500 1000" DURATION=5 bench/compare.sh
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
for tool in python3 sipp kamailio; do
    command -v "$tool" >/dev/null || { echo "compare.sh: '$tool' not found (scripts/install-deps.sh)" >&2; exit 2; }
done
if pgrep -x kamailio >/dev/null; then
    echo "compare.sh: WARNING: a kamailio is already running (packaged service?); it competes for CPU" >&2
fi
exec python3 "$here/compare.py" "$@"
