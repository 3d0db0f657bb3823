#!/usr/bin/env bash
# bench/cdc.sh [N=1000000] - PostgreSQL CDC: Sluice's postgres_cdc (rows fsynced in a strand) vs
# pg_recvlogical (test_decoding to a file) draining the same N-row change set in the same run,
# then commit -> durable lag at RATE rows/s (default 5000) for LAG_SECS seconds (default 5).
# Starts its own PostgreSQL 15 (tests/peers/pg.sh) and Sluice on 127.0.0.1; cleans up on exit.
# Not part of `make test`. Details: bench/cdc.py, docs/performance.md.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
bench_need pg_recvlogical psql
[ -x "$ROOT/build/sluice" ] || make -C "$ROOT" build/sluice >/dev/null
N=${1:-${N:-1000000}} SLUICE_BIN=${SLUICE_BIN:-$ROOT/build/sluice} exec "$PY" "$ROOT/bench/cdc.py"
