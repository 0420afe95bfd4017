#!/usr/bin/env bash
# The README's set-up command: installs what Starling needs, builds it (release) and starts it with
# routes/default.lua on udp:127.0.0.1:5060. Extra arguments go to `starling run`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
swift build -c release --product starling
exec .build/release/starling run "$@"
