#!/usr/bin/env bash
# Installs the Debian packages Starling builds and tests with. Idempotent; needs root (or sudo).
set -euo pipefail
SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
PKGS=(pkg-config liblua5.4-dev lua5.4 libc-ares-dev libssl-dev libcurl4-openssl-dev libsqlite3-dev dnsmasq-base sip-tester iproute2 valgrind python3 kamailio kamailio-lua-modules kamailio-utils-modules kamailio-sqlite-modules kamailio-tls-modules baresip-core openssl stunnel4)
PKGS+=(nftables procps)  # issue 15: EdgeSBCTests put the edge behind a 1:1 NAT and the phone behind a masquerading NAT (nft, sysctl in a router namespace)
PKGS+=(redis-server redis-sentinel libhiredis-dev kamailio-redis-modules)  # issue 19: scale-out on Redis (the server and sentinels the tests start, hiredis for the client, ndb_redis/db_redis for the Kamailio comparison)
PKGS+=(freediameterd)  # issue 20: freeDiameterd 1.2.1 is the Diameter interop peer of the DiameterRelayTests
PKGS+=(rtpengine-daemon)  # issue 16: the media relay the rtpengine tests start (Kamailio's rtpengine.so is in the kamailio package)
PKGS+=(dpkg-dev help2man lintian systemd ca-certificates)  # issue 21: scripts/package-deb.sh (dpkg-shlibdeps, man page, lintian), systemd-analyze verify, the CA bundle outgoing TLS verifies against
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# issue 20: python-diameter (PyPI, pinned) is the Diameter stack of the test peers in
# Tests/StarlingIntegrationTests/Tools/pydiameter_peer.py, in a venv of its own (no system packages touched).
PYDIAMETER_VENV="${STARLING_PYDIAMETER_VENV:-/opt/starling-test-venv}"
if ! "$PYDIAMETER_VENV/bin/python3" -c "import diameter" 2>/dev/null; then
  echo "installing python-diameter into $PYDIAMETER_VENV"
  $SUDO python3 -m venv "$PYDIAMETER_VENV"
  $SUDO "$PYDIAMETER_VENV/bin/pip" install -q "python-diameter==0.9.0"
fi
# The kamailio package may start its own service on 5060; Starling's tests and benchmarks start
# Kamailio themselves, pinned to loopback ports of their own.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet kamailio 2>/dev/null; then
  $SUDO systemctl stop kamailio || true
  $SUDO systemctl disable kamailio || true
fi
pkill -x kamailio 2>/dev/null || true
# rtpengine-daemon ships a service (ngcp-rtpengine-daemon) that binds the ng port 2223 and the
# media ports; the tests start their own daemons on ports of their own.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet ngcp-rtpengine-daemon 2>/dev/null; then
  $SUDO systemctl stop ngcp-rtpengine-daemon || true
  $SUDO systemctl disable ngcp-rtpengine-daemon || true
fi
