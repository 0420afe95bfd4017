#!/usr/bin/env bash
# Edge SBC memory benchmark (issue 15): 50,000 UDP phones and 2,000 TLS phones (keepalives, calls)
# through examples/edge-sbc to a Kamailio PBX registrar, Starling vs Kamailio 5.6 as the edge.
# Needs root (network namespaces) and a release build: swift build -c release --product starling.
#   bench/edge-sbc.sh                          # full load, both servers
#   bench/edge-sbc.sh --phones 2000 --tls-phones 100 --calls 100    # a quick run
#   bench/edge-sbc.sh --help
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
for tool in python3 sipp kamailio openssl ip ss; do
    command -v "$tool" >/dev/null || { echo "edge-sbc.sh: '$tool' not found (scripts/install-deps.sh)" >&2; exit 2; }
done
exec python3 "$here/edge_sbc.py" "$@"
