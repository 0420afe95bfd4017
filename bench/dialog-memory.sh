#!/usr/bin/env bash
# Memory of 100,000 concurrent dialogs on Kamailio 5.6 and Starling (bench/dialog.lua; issue 17).
# Settings are environment variables (see bench/dialog-memory.py). Example, short run:
#   DIALOGS=2000 RATE=500 SERVERS=kamailio bench/dialog-memory.sh
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
for tool in python3 sipp kamailio sqlite3; do
    command -v "$tool" >/dev/null || { echo "dialog-memory.sh: '$tool' not found (scripts/install-deps.sh)" >&2; exit 2; }
done
exec python3 "$here/dialog-memory.py" "$@"
