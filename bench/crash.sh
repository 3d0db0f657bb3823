#!/usr/bin/env bash
# Long crash run: kill -9 under concurrent writers, N times (default 200), then a full check.
#   bench/crash.sh [N]          e.g. bench/crash.sh 1000
# Same test as `make test` runs with 20 cycles (tests/crash/test_kill9.py); prints one line per
# cycle and exits non-zero if any cycle lost an acknowledged record or failed `sluice verify`.
# SLUICE_CRASH_SEED=<n> repeats the random choices of an earlier run (not its timing).
set -u
cd "$(dirname "$0")/.."
N=${1:-200}
case $N in '' | *[!0-9]*) echo "usage: $0 [cycles]" >&2; exit 2 ;; esac
export SLUICE_BIN=${SLUICE_BIN:-$PWD/build/sluice}
[ -x "$SLUICE_BIN" ] || make --no-print-directory build/sluice || exit 1
export SLUICE_CRASH_CYCLES=$N
log=$(mktemp)
trap 'rm -f "$log"' EXIT
/usr/bin/python3 tests/crash/test_kill9.py | tee "$log"
rc=${PIPESTATUS[0]}
echo "$(grep -c '^ok - ' "$log") passed, $(grep -c '^not ok - ' "$log") failed"
exit "$rc"
