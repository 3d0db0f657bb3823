#!/usr/bin/env bash
# bench/boboyka.sh [SECONDS=15] [CONNECTIONS=50] - Boboyka ingest throughput, in one run:
#   1. POST /v1/records, one record per request (the reference rate of issue 4's first target)
#   2. POST /v1/boboyka/ingest with dual-write off         -> ratio to run 1 (target >= 0.8)
#      1 and 2 alternate ROUNDS times (default 3; the medians are compared), because this
#      disk's fsync time drifts between runs more than the difference being measured
#   3. POST /v1/boboyka/ingest with dual-write on, mirrored to the Supabase STAND-IN
#      (tests/peers/supabase_standin.cjs over a real PostgreSQL 15; target >= 10k events/s)
# Each run uses a fresh data directory, wrk with CONNECTIONS keep-alive connections, durable
# writes (fsync). Run 3 then checks PostgreSQL: every event answered "ok":true is one row.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
SECS=${1:-15}
CONNS=${2:-50}
BIN=$ROOT/build/sluice
bench_need wrk node psql
[ -x "$BIN" ] || bench_die "build first: make build/sluice"
WORK=$(mktemp -d /tmp/sl-bench-bbk.XXXXXX)
chmod 755 "$WORK"
SB_PID=
cleanup() {
    bench_stop_sluice "$WORK" || true
    [ -z "$SB_PID" ] || bench_stop_pid "$SB_PID" TERM
    rm -rf "$WORK"
}
trap cleanup EXIT
[ -z "${BENCH_KEEP:-}" ] || trap - EXIT

run_wrk() { # URL SCRIPT -> WRK_RESULT line
    wrk -t2 -c"$CONNS" -d"${SECS}s" --latency --timeout 10s -s "$ROOT/bench/wrk/$2" "$1" \
        >"$WORK/wrk.out" 2>&1 || true
    grep -E '^WRK_(RESULT|FIRST)' "$WORK/wrk.out" || bench_die "wrk failed: $(tail -5 "$WORK/wrk.out")"
}
rate() { # WRK_RESULT line -> good requests per second
    local l=$1
    awk -v r="$(bench_kv "$l" requests)" -v b="$(bench_kv "$l" non2xx)" -v d="$(bench_kv "$l" duration_us)" \
        'BEGIN { printf "%.0f", (r - b) / (d / 1e6) }'
}

median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
ROUNDS=${ROUNDS:-3}
A1= A2=
for ((round = 1; round <= ROUNDS; round++)); do
    bench_log "round $round/$ROUNDS: POST /v1/records, $CONNS connections, ${SECS}s"
    bench_start_sluice "$BIN" "$WORK"
    R1=$(run_wrk "$SL_URL/v1/records" post_single.lua | head -1)
    bench_stop_sluice "$WORK"
    echo "records_single: $R1"
    A1="$A1 $(rate "$R1")"
    bench_log "round $round/$ROUNDS: POST /v1/boboyka/ingest, dual-write off"
    BOBOYKA_SUPABASE_URL='' BOBOYKA_SUPABASE_KEY='' bench_start_sluice "$BIN" "$WORK"
    R2=$(run_wrk "$SL_URL/v1/boboyka/ingest" post_boboyka.lua | head -1)
    bench_stop_sluice "$WORK"
    echo "boboyka_no_mirror: $R2"
    A2="$A2 $(rate "$R2")"
done

bench_log "POST /v1/boboyka/ingest, dual-write on (Supabase stand-in over PostgreSQL)"
# the stand-in and its PostgreSQL, held by a small python process until we stop it
"$PY" - "$ROOT" >"$WORK/sb.out" 2>"$WORK/sb.err" <<'PYEOF' &
import os, signal, sys, time
sys.path.insert(0, os.path.join(sys.argv[1], "tests", "peers"))
from supabase import Supabase
sb = Supabase(key="bench-key", pg_conf=["shared_buffers=512MB", "max_wal_size=8GB"]).start()
print("URL=%s PGHOST=%s PGPORT=%s" % (sb.url, sb.env["PGHOST"], sb.env["PGPORT"]), flush=True)
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
while True:
    time.sleep(1)
PYEOF
SB_PID=$!
line=$(bench_wait_line "$WORK/sb.out" '^URL=' "$SB_PID" 60) || bench_die "the Supabase stand-in did not start: $(tail -5 "$WORK/sb.err")"
SB_URL=$(bench_kv "$line" URL)
export PGHOST PGPORT PGUSER=postgres PGDATABASE=postgres
PGHOST=$(bench_kv "$line" PGHOST)
PGPORT=$(bench_kv "$line" PGPORT)
BOBOYKA_SUPABASE_URL=$SB_URL BOBOYKA_SUPABASE_KEY=bench-key \
    bench_start_sluice "$BIN" "$WORK" --boboyka-dedup-column record_hash
R3=$(run_wrk "$SL_URL/v1/boboyka/ingest" post_boboyka.lua)
R3L=$(head -1 <<<"$R3")
STATUS=$(curl -s "$SL_URL/v1/boboyka/status")
bench_stop_sluice "$WORK"
ROWS=$(psql -X -At -c "SELECT count(*) FROM agent_health")

r1=$(tr ' ' '\n' <<<"$A1" | grep . | median)
r2=$(tr ' ' '\n' <<<"$A2" | grep . | median)
r3=$(rate "$R3L")
ok3=$(($(bench_kv "$R3L" requests) - $(bench_kv "$R3L" non2xx) - $(bench_kv "$R3L" mirror_failed)))
echo "records_single_per_s:$A1"
echo "boboyka_no_mirror_per_s:$A2"
echo "boboyka_mirror: $R3"
echo "boboyka_mirror_status: $STATUS"
awk -v a="$r1" -v b="$r2" -v c="$r3" -v rows="$ROWS" -v ok="$ok3" -v n="$CONNS" 'BEGIN {
    printf "RESULT connections=%d records_per_s=%d boboyka_per_s=%d (medians) ratio_to_records=%.2f (target >= 0.80) boboyka_mirror_per_s=%d (target >= 10000) mirrored_ok=%d pg_rows=%d\n",
        n, a, b, b / a, c, ok, rows }'
# rows >= ok: an event whose answer came back ok:false can still have landed (a timeout), and
# wrk stops mid-request; every ok:true event must be in PostgreSQL.
[ "$ROWS" -ge "$ok3" ] || bench_die "PostgreSQL has $ROWS rows but $ok3 events were answered ok:true"
