#!/usr/bin/env bash
# The package check (CI runs it after the Swift tests): builds the .deb, installs it with dpkg -i,
# runs the unit's ExecStart line exactly as written, as the starling user, and checks that it answers
# OPTIONS on 127.0.0.1:5060 with the packaged configuration and script and that `starling ctl`
# reaches its control API; then dpkg -r (the conffile stays) and dpkg -P (everything goes).
# Needs root (dpkg -i). STARLING_DEB=path checks an existing package instead of building one.
set -euo pipefail
cd "$(dirname "$0")/.."
t0=$(date +%s)
fail() {
  echo "package check: FAIL: $*" >&2
  if [ -f "${log:-/nonexistent}" ]; then sed 's/^/  starling: /' "$log" >&2; fi
  # Leave the machine as it was: stop what we started, purge the package.
  if [ -n "${pid:-}" ]; then kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  if dpkg-query -W -f='${Status}' starling 2>/dev/null | grep -q "install ok\|config-files"; then dpkg -P starling >/dev/null 2>&1 || true; fi
  exit 1
}
[ "$(id -u)" = "0" ] || fail "needs root (dpkg -i)"
for tool in dpkg python3 setpriv systemd-analyze; do
  command -v "$tool" >/dev/null 2>&1 || fail "$tool is missing (run scripts/install-deps.sh)"
done

if [ -n "${STARLING_DEB:-}" ]; then
  deb=$STARLING_DEB
else
  bash scripts/package-deb.sh
  deb=$(ls -t dist/starling_*_"$(dpkg --print-architecture)".deb | head -n 1)
fi
[ -f "$deb" ] || fail "no package at '$deb'"
t_built=$(date +%s)

# 5060 and 5065 must be free: the packaged configuration listens there.
busy() { python3 - "$1" "$2" <<'PY'
import socket, sys
kind = socket.SOCK_DGRAM if sys.argv[1] == "udp" else socket.SOCK_STREAM
s = socket.socket(socket.AF_INET, kind)
if kind == socket.SOCK_STREAM:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind(("127.0.0.1", int(sys.argv[2])))
except OSError:
    sys.exit(0)
sys.exit(1)
PY
}
busy udp 5060 && fail "udp 127.0.0.1:5060 is in use (a kamailio service? scripts/install-deps.sh stops it): $(ss -lunp 2>/dev/null | grep ':5060 ' || true)"
busy tcp 5065 && fail "tcp 127.0.0.1:5065 is in use"

# A leftover installation from an interrupted run.
if dpkg-query -W -f='${Status}' starling 2>/dev/null | grep -q "install ok\|config-files"; then
  dpkg -P starling >/dev/null
fi

# The binary's glibc needs are in Depends (the packed relocations need 2.36, which no symbol says).
depends=$(dpkg-deb -f "$deb" Depends)
libc=$(printf '%s\n' "$depends" | sed -nE 's/.*libc6 \(>= ([0-9.]+)\).*/\1/p')
[ -n "$libc" ] && dpkg --compare-versions "$libc" ge 2.36 || fail "Depends asks for libc6 >= '$libc', the binary needs 2.36: $depends"

echo "package check: dpkg -i $deb"
dpkg -i "$deb"
[ -x /usr/bin/starling ] || fail "/usr/bin/starling not installed"
getent passwd starling >/dev/null || fail "no starling user after installation"
[ "$(stat -c %U /var/lib/starling)" = "starling" ] || fail "/var/lib/starling is not owned by starling"
[ -f /etc/starling/starling.toml ] || fail "no /etc/starling/starling.toml"
[ -f /lib/systemd/system/starling.service ] || fail "no unit"
[ -f /usr/share/man/man1/starling.1.gz ] || fail "no man page"
[ -f /usr/share/starling/luals/ksr.lua ] || fail "no LuaLS annotations"
unit=/lib/systemd/system/starling.service
systemd-analyze verify "$unit" || fail "systemd-analyze verify $unit"
starling config --check /etc/starling/starling.toml || fail "the packaged configuration does not check"

# The unit's ExecStart line, as written: no prefixes, specifiers or variables to expand.
execstart=$(sed -n 's/^ExecStart=//p' "$unit")
[ "$(printf '%s\n' "$execstart" | wc -l)" = "1" ] || fail "expected one ExecStart line, got: $execstart"
case "$execstart" in
  [-+!@:]*|*%*|*'$'*) fail "ExecStart is not a plain command: $execstart" ;;
esac
workdir=$(sed -n 's/^WorkingDirectory=//p' "$unit")
log=$(mktemp)
chown starling "$log"
echo "package check: as starling in ${workdir:-/}: $execstart"
# shellcheck disable=SC2086 # word splitting is what systemd does with this line
(cd "${workdir:-/}" && exec setpriv --reuid=starling --regid=starling --init-groups -- $execstart >"$log" 2>&1) &
pid=$!
cleanup() { kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; }
trap cleanup EXIT

# OPTIONS to 127.0.0.1:5060 (retried until the router is up, 30 s at most)
python3 - <<'PY' || fail "no 200 to OPTIONS on udp:127.0.0.1:5060"
import socket, time, uuid, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0))
port = s.getsockname()[1]
s.settimeout(0.5)
deadline = time.time() + 30
while time.time() < deadline:
    cid = uuid.uuid4().hex
    msg = ("OPTIONS sip:127.0.0.1:5060 SIP/2.0\r\n"
           f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{cid[:12]};rport\r\n"
           "Max-Forwards: 70\r\n"
           f"From: <sip:probe@127.0.0.1>;tag={cid[:8]}\r\n"
           "To: <sip:127.0.0.1:5060>\r\n"
           f"Call-ID: {cid}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n")
    s.sendto(msg.encode(), ("127.0.0.1", 5060))
    try:
        data, _ = s.recvfrom(65535)
    except OSError:
        continue
    first = data.split(b"\r\n", 1)[0].decode(errors="replace")
    print("package check: OPTIONS ->", first)
    sys.exit(0 if first.startswith("SIP/2.0 200") else 1)
sys.exit(1)
PY
out=$(starling ctl core.uptime) || fail "starling ctl core.uptime did not reach the control API"
echo "$out" | grep -q '"uptime"' || fail "unexpected core.uptime answer: $out"
starling ctl --health >/dev/null || fail "GET /health is not ready"
echo "package check: starling ctl core.uptime and --health answered"
kill -TERM "$pid"
wait "$pid" || fail "starling did not stop cleanly on SIGTERM (status $?)"
trap - EXIT
[ -f /var/lib/starling/starling.db ] || fail "no database under /var/lib/starling"

echo "package check: dpkg -r starling"
dpkg -r starling
[ ! -e /usr/bin/starling ] || fail "/usr/bin/starling left after dpkg -r"
[ ! -e "$unit" ] || fail "unit left after dpkg -r"
[ -f /etc/starling/starling.toml ] || fail "dpkg -r removed the conffile"
getent passwd starling >/dev/null || fail "dpkg -r removed the starling user"
echo "package check: dpkg -P starling"
dpkg -P starling
[ ! -e /etc/starling ] || fail "/etc/starling left after dpkg -P"
[ ! -e /var/lib/starling ] || fail "/var/lib/starling left after dpkg -P"
rm -f "$log"
t_end=$(date +%s)
echo "package check: OK (package $(( t_built - t0 )) s, install/run/remove $(( t_end - t_built )) s)"
