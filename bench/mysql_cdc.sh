#!/usr/bin/env bash
# bench/mysql_cdc.sh [N=1000000] - MySQL/MariaDB CDC: Sluice's mysql-cdc (rows fsynced in a strand)
# vs mariadb-binlog draining the same binlog in the same run (--raw: the event bytes to a file;
# and decoding the rows: --base64-output=DECODE-ROWS -v), then commit -> durable lag at RATE rows/s
# (default 5000) for LAG_SECS seconds (default 5). Starts its own MariaDB (tests/peers/mariadb.sh)
# and Sluice on 127.0.0.1; cleans up on exit. Not part of `make test`. Details: bench/mysql_cdc.py,
# docs/performance.md.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
bench_need mariadb mariadb-binlog mariadb-install-db
[ -x "$ROOT/build/sluice" ] || make -C "$ROOT" build/sluice >/dev/null
make -C "$ROOT" build/bench/mysql_floor >/dev/null
N=${1:-${N:-1000000}} SLUICE_BIN=${SLUICE_BIN:-$ROOT/build/sluice} exec "$PY" "$ROOT/bench/mysql_cdc.py"
