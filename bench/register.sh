#!/usr/bin/env bash
# Kamailio 5.6 vs Starling, REGISTER load on the same Lua script (bench/register.lua), usrloc
# db_mode 2 (write-back) to SQLite on both. Settings are environment variables: run
# `bench/register.sh --help`. Example, short run:
#   RATES="1000 2000" DURATION=5 bench/register.sh
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
for tool in python3 sipp kamailio; do
    command -v "$tool" >/dev/null || { echo "register.sh: '$tool' not found (scripts/install-deps.sh)" >&2; exit 2; }
done
exec python3 "$here/register.py" "$@"
