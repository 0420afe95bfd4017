#!/usr/bin/env bash
# The README's test command: installs what the tests need, builds, runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
swift build --build-tests
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
swift test --skip-build 2>&1 | tee "$log" || status=$?
# The Debian package: release build, dpkg -i, the unit's ExecStart answering OPTIONS, dpkg -r/-P
# (scripts/test-package.sh; needs root, as CI is).
package_status=0
bash scripts/test-package.sh || package_status=$?
if [ "$package_status" -ne 0 ]; then
  echo "package check failed (status $package_status)"
  [ "$status" -ne 0 ] || status=$package_status
fi
# One plain closing line for tools that read it ("N passed, N failed").
summary=$(grep -E "Test run with [0-9]+ tests?" "$log" | tail -n 1 || true)
total=$(printf '%s' "$summary" | sed -nE 's/.*Test run with ([0-9]+) tests?.*/\1/p')
if [ "$status" -eq 0 ] && [ -n "$total" ]; then
  echo "$total passed, 0 failed"
elif [ -n "$total" ]; then
  failed=$(grep -cE "^✘ Test .*(failed|recorded an issue)" "$log" || true)
  echo "tests: $total run, failures reported in $failed line(s)"
fi
exit "$status"
