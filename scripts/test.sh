#!/usr/bin/env bash
# Runs every test: installs what the tests need (as root on Debian), builds, lints, runs vitest,
# and ends with one plain line "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/.."

DEB_PACKAGES=(swtpm swtpm-tools tpm2-tools softhsm2 postgresql golang-go golang-golang-x-mod-dev chromium)
missing=()
for p in "${DEB_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
    echo "installing Debian packages the tests need: ${missing[*]}"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}") >/tmp/custody-apt.log 2>&1 \
      || { echo "apt-get failed; see /tmp/custody-apt.log"; tail -20 /tmp/custody-apt.log; exit 1; }
  else
    echo "The tests need these Debian packages: ${missing[*]}"
    echo "Install them with: sudo apt-get install ${missing[*]}"
    exit 1
  fi
fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi

status=0
echo "== build"; npx tsc -b || status=1
# tsc -b builds package sources only; this also type-checks tests, bench/, test/ (no emit).
npx tsc -p tsconfig.check.json || status=1
echo "== lint"; npm run -s lint || status=1

echo "== tests"
# vitest under a watchdog: if no test file finishes for CUSTODY_TEST_STALL_MINUTES (default 10),
# it stops vitest and reruns the unfinished files once. Prints "N passed, N failed" last.
node scripts/run-tests.mjs "$@" || status=1
exit $status
