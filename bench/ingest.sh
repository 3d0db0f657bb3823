#!/usr/bin/env bash
# bench/ingest.sh [SECONDS=20] [CONNS=50] - durable HTTP ingest: Sluice vs PostgreSQL, same run.
#
#   a. Sluice, one 200-byte record per keep-alive POST /v1/records   (wrk, post_single.lua)
#   b. PostgreSQL 15, the same record as one single-row jsonb INSERT per transaction,
#      synchronous_commit=on, same number of clients                   (pgbench -M prepared)
#   c. Sluice, 1000 records per POST /v1/records/batch as NDJSON       (wrk, post_batch.lua)
# then a summary table with the ratio Sluice/PostgreSQL. Not part of `make test`.
#
# Environment:
#   SLUICE_DURABILITY=none  run Sluice with --durability none (no fsync before the ack) to compare
#   ROUNDS=1     rounds of a, b, c interleaved; with ROUNDS>1 the table shows the median and range
#                and the ratio is the median of the per-round ratios (PERF-ANCHORS.md, section 3)
#   WARMUP=2     seconds of unmeasured load before each measured run
#   THREADS=2    wrk -t and pgbench -j
#   BATCH=1000   records per batch POST
#   SLUICE_BIN   use this binary instead of building build/sluice
#   SKIP_PG=1 / SKIP_SLUICE=1   run one side only
#   RESULTS=FILE also keep the raw key=value result lines in FILE
#
# Everything binds to 127.0.0.1. Servers are stopped by PID and the temp dir is removed on exit.
# Exit status 1 if Sluice was built but failed to run, or if a run lost acknowledged records or
# failed `sluice verify`; a Sluice that does not build is reported and the PostgreSQL half still runs.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"

SECS=${1:-20}
CONNS=${2:-50}
ROUNDS=${ROUNDS:-1}
WARMUP=${WARMUP:-2}
THREADS=${THREADS:-2}
BATCH=${BATCH:-1000}
DURABILITY=${SLUICE_DURABILITY:-}
[[ $SECS =~ ^[0-9]+$ && $CONNS =~ ^[0-9]+$ && $ROUNDS =~ ^[0-9]+$ && $WARMUP =~ ^[0-9]+$ &&
    $THREADS =~ ^[1-9][0-9]*$ && $BATCH =~ ^[1-9][0-9]*$ ]] ||
    bench_die "usage: $0 [SECONDS] [CONNS]  (whole numbers; env ROUNDS, WARMUP, THREADS, BATCH likewise)"
if [ "$CONNS" -lt 1 ] || [ "$SECS" -lt 1 ] || [ "$ROUNDS" -lt 1 ]; then
    bench_die "SECONDS, CONNS and ROUNDS must be >= 1"
fi
[ "$THREADS" -le "$CONNS" ] || THREADS=$CONNS # wrk and pgbench need at least one connection per thread
bench_need wrk pgbench psql curl make

TMP=$(mktemp -d /tmp/sluice-bench.XXXXXX)
chmod 755 "$TMP" # the postgres user must reach $TMP/pg
RES=$TMP/results.txt
: >"$RES"
SL_PID=
PG_DIR=

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    [ -z "$SL_PID" ] || bench_stop_pid "$SL_PID" TERM
    [ -z "$PG_DIR" ] || "$ROOT/tests/peers/pg.sh" stop "$PG_DIR" || true
    if [ -n "${RESULTS:-}" ] && [ -s "$RES" ]; then cp "$RES" "$RESULTS"; fi
    rm -rf "$TMP"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- Sluice
SLUICE=${SLUICE_BIN:-$ROOT/build/sluice}
SLUICE_OK=
SLUICE_WHY=
if [ -n "${SKIP_SLUICE:-}" ]; then
    SLUICE_WHY="skipped (SKIP_SLUICE set)"
elif [ -z "${SLUICE_BIN:-}" ] && ! make -C "$ROOT" build/sluice >"$TMP/make.log" 2>&1; then
    SLUICE_WHY="not built: 'make build/sluice' failed"
    bench_log "Sluice is not available: 'make build/sluice' failed (last lines below)."
    bench_log "Running the PostgreSQL half only; Sluice cells show TBD."
    tail -n 8 "$TMP/make.log" | sed 's/^/    /' >&2
elif [ ! -x "$SLUICE" ]; then
    SLUICE_WHY="no executable at $SLUICE"
    bench_log "Sluice is not available: $SLUICE_WHY. Running the PostgreSQL half only."
else
    SLUICE_OK=1
fi

# start_sluice / stop_sluice: a fresh server per run (bench/lib.sh); sets SL_PID, SL_URL.
start_sluice() {
    bench_start_sluice "$SLUICE" "$TMP" ${DURABILITY:+--durability "$DURABILITY"} || {
        stop_sluice
        return 1
    }
}

stop_sluice() { bench_stop_sluice "$TMP"; }

# One request of each kind with curl before loading, so a broken route fails loudly, not as
# a table of non-2xx.
check_sluice() {
    local code
    code=$(curl -sS -o "$TMP/check.json" -w '%{http_code}' -H 'Content-Type: application/json' \
        --data-binary '{"agent_id":"bench","payload":{"check":1}}' "$SL_URL/v1/records") || code=000
    if [ "$code" != 201 ] || ! grep -q record_hash "$TMP/check.json"; then
        bench_log "POST /v1/records answered $code: $(head -c 300 "$TMP/check.json" 2>/dev/null)"
        return 1
    fi
    code=$(curl -sS -o "$TMP/check.json" -w '%{http_code}' -H 'Content-Type: application/x-ndjson' \
        --data-binary $'{"payload":{"check":2}}\n{"payload":{"check":3}}\n' \
        "$SL_URL/v1/records/batch") || code=000
    if [ "$code" != 201 ] || ! grep -q '"count"' "$TMP/check.json"; then
        bench_log "POST /v1/records/batch answered $code: $(head -c 300 "$TMP/check.json" 2>/dev/null)"
        return 1
    fi
}

# ok_records "WRK_RESULT ..." -> 2xx requests x records per request
ok_records() {
    local req bad per
    req=$(bench_kv "$1" requests)
    bad=$(bench_kv "$1" non2xx)
    per=$(bench_kv "$1" records_per_req)
    echo $(((${req:-0} - ${bad:-0}) * ${per:-0}))
}

# Samples the server's anonymous RSS every 0.2 s into $TMP/anon.peak (MB) until killed. File-backed
# RSS is left out on purpose: it is mostly the mmap'd log segments, page cache the kernel can drop.
sample_anon_rss() {
    local pid=$1 peak=0 kb
    while bench_alive "$pid"; do
        kb=$(awk '/^RssAnon:/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
        [ "${kb:-0}" -le "$peak" ] || peak=$kb
        echo $((peak / 1024)) >"$TMP/anon.peak.tmp" && mv -f "$TMP/anon.peak.tmp" "$TMP/anon.peak"
        sleep 0.2
    done
}

# run_wrk NAME LUA PATH ROUND: one measured wrk run against a fresh Sluice; appends a result line.
# Afterwards Sluice is stopped and `sluice verify` must find at least as many records as were
# acknowledged (2xx) in the checks, the warm-up and the run, on a chain that verifies.
run_wrk() {
    local name=$1 lua=$2 path=$3 round=$4 out t0 t1 res hwm acked=3 warm sampler stored verify
    start_sluice || return 1
    check_sluice || {
        stop_sluice
        return 1
    }
    if [ "$WARMUP" -gt 0 ]; then
        warm=$(BATCH=$BATCH wrk -t"$THREADS" -c"$CONNS" -d"${WARMUP}s" -s "$lua" "$SL_URL$path" 2>&1 |
            grep '^WRK_RESULT ' || true)
        acked=$((acked + $(ok_records "$warm")))
    fi
    quiesce
    echo 0 >"$TMP/anon.peak"
    sample_anon_rss "$SL_PID" &
    sampler=$!
    t0=$(bench_cpu_ticks "$SL_PID")
    out=$(BATCH=$BATCH wrk -t"$THREADS" -c"$CONNS" -d"${SECS}s" --latency -s "$lua" "$SL_URL$path" 2>&1) || true
    t1=$(bench_cpu_ticks "$SL_PID")
    hwm=$(bench_peak_rss_mb "$SL_PID")
    kill "$sampler" 2>/dev/null || true
    wait "$sampler" 2>/dev/null || true
    printf '%s\n' "$out" >"$TMP/wrk-$name-$round.txt"
    res=$(grep '^WRK_RESULT ' <<<"$out" || true)
    if [ -z "$res" ]; then
        bench_log "wrk gave no result for $name:"
        printf '%s\n' "$out" | tail -n 15 >&2
        stop_sluice
        return 1
    fi
    acked=$((acked + $(ok_records "$res")))
    grep '^WRK_FIRST_NON2XX ' <<<"$out" | sed "s/^/[$name] /" >&2 || true
    if ! bench_alive "$SL_PID"; then
        bench_log "Sluice exited during the $name run. Its stderr:"
        tail -n 20 "$TMP/sluice.err" >&2
    fi
    bench_stop_pid "$SL_PID" TERM
    SL_PID=
    case $BENCH_STOP_STATUS in
    0 | 143 | '') ;;
    *)
        bench_log "Sluice exited with status $BENCH_STOP_STATUS on SIGTERM after the $name run" \
            "($((BENCH_STOP_STATUS > 128 ? BENCH_STOP_STATUS - 128 : 0)) = signal number if > 0). Its stderr:"
        tail -n 5 "$TMP/sluice.err" >&2
        ;;
    esac
    verify=ok
    stored=$(timeout 300 "$SLUICE" verify --data "$TMP/data" 2>"$TMP/verify.err" |
        awk '$1 == "ok" {n += $3} END {print n + 0}') || verify=FAILED
    if [ "$verify" != ok ]; then
        bench_log "sluice verify failed after the $name run:"
        tail -n 5 "$TMP/verify.err" >&2
    elif [ "$stored" -lt "$acked" ]; then
        bench_log "LOST RECORDS: $acked acknowledged but only $stored in the log after the $name run"
        verify=LOST
    fi
    echo "test=$name round=$round ${res#WRK_RESULT } cpu_ticks=$((t1 - t0)) hz=$(getconf CLK_TCK)" \
        "peak_rss_mb=$hwm peak_anon_mb=$(cat "$TMP/anon.peak" 2>/dev/null || echo 0) acked=$acked stored=$stored" \
        "verify=$verify" >>"$RES"
    stop_sluice
}

# ---------------------------------------------------------------- PostgreSQL
PG_OK=
if [ -n "${SKIP_PG:-}" ]; then
    :
else
    PG_DIR=$TMP/pg
    # shared_buffers and max_wal_size as in PERF-ANCHORS B5: no checkpoint during a run.
    "$ROOT/tests/peers/pg.sh" start "$PG_DIR" shared_buffers=1GB max_wal_size=16GB \
        max_connections=$((CONNS > 80 ? CONNS + 20 : 100)) >/dev/null ||
        bench_die "could not start PostgreSQL (tests/peers/pg.sh start)"
    set -a
    # shellcheck disable=SC1091
    . "$PG_DIR/env"
    set +a
    psql -X -q -v ON_ERROR_STOP=1 -c 'CREATE TABLE events (id bigserial PRIMARY KEY, body jsonb NOT NULL)' ||
        bench_die "could not create the events table"
    PG_OK=1
fi

pg_reset() { psql -X -q -v ON_ERROR_STOP=1 -c 'TRUNCATE events' -c 'CHECKPOINT'; }

# quiesce: before every measured run of either system, let the previous run's writes finish, so
# that no run pays for another's writeback (a batch run leaves gigabytes of dirty pages, and
# PostgreSQL flushes its buffers at checkpoints and vacuums after a run). Without it, Sluice's
# p99 after a pgbench run was 4-5x its p99 on an idle machine.
quiesce() {
    [ -z "$PG_OK" ] || psql -X -q -c 'VACUUM events' -c 'CHECKPOINT' >/dev/null 2>&1 || true
    sync
}

# run_pgbench ROUND: warm-up, truncate + checkpoint, measured run with a per-transaction log.
run_pgbench() {
    local round=$1 out tps n failed lat
    local args=(-n -M prepared -c "$CONNS" -j "$THREADS" -f "$ROOT/bench/pg_insert_jsonb.sql")
    export PGOPTIONS="-c synchronous_commit=on"
    if [ "$WARMUP" -gt 0 ]; then
        pg_reset
        pgbench "${args[@]}" -T "$WARMUP" >/dev/null 2>&1 || true
    fi
    pg_reset
    quiesce
    rm -rf "$TMP/pglog"
    mkdir -p "$TMP/pglog"
    out=$(cd "$TMP/pglog" && pgbench "${args[@]}" -T "$SECS" --log --log-prefix=tx 2>&1) || {
        bench_log "pgbench failed:"
        printf '%s\n' "$out" | tail -n 15 >&2
        return 1
    }
    printf '%s\n' "$out" >"$TMP/pgbench-$round.txt"
    tps=$(awk '/^tps = /{print $3; exit}' <<<"$out")
    n=$(awk -F': ' '/number of transactions actually processed/{split($2, a, "/"); print a[1]}' <<<"$out")
    failed=$(awk '/number of failed transactions/{print $5}' <<<"$out")
    lat=$(bench_pgbench_latency "$TMP"/pglog/tx.*)
    echo "test=pg round=$round tps=$tps transactions=$n failed=${failed:-0} $lat" >>"$RES"
    rm -rf "$TMP/pglog"
}

# ---------------------------------------------------------------- run
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
CONTEXT="$(bench_fdatasync_rate "$TMP" 1)"
bench_log "fdatasync probe on $TMP: $CONTEXT"
echo "test=fdatasync round=0 $CONTEXT" >>"$RES"
bench_log "plan: $ROUNDS round(s) of ${SECS}s per run (+${WARMUP}s warm-up), $CONNS connections, $THREADS threads"

for ((r = 1; r <= ROUNDS; r++)); do
    if [ -n "$SLUICE_OK" ]; then
        bench_log "round $r: Sluice single-record POST /v1/records"
        if ! run_wrk single "$ROOT/bench/wrk/post_single.lua" /v1/records "$r"; then
            SLUICE_OK=
            SLUICE_WHY="failed to run (see messages above)"
        fi
    fi
    if [ -n "$PG_OK" ]; then
        bench_log "round $r: PostgreSQL INSERT jsonb, pgbench -c $CONNS -j $THREADS"
        run_pgbench "$r" || bench_die "the PostgreSQL run failed"
    fi
    if [ -n "$SLUICE_OK" ]; then
        bench_log "round $r: Sluice batch of $BATCH POST /v1/records/batch"
        if ! run_wrk batch "$ROOT/bench/wrk/post_batch.lua" /v1/records/batch "$r"; then
            SLUICE_OK=
            SLUICE_WHY="failed to run (see messages above)"
        fi
    fi
done

# ---------------------------------------------------------------- summary
SLUICE_REV=$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo '?')
PG_VER="PostgreSQL $(psql -X -Atc 'SHOW server_version' 2>/dev/null || echo '?') (synchronous_commit=on, fsync=on)"
[ -n "$PG_OK" ] || PG_VER="PostgreSQL skipped"
"$PY" - "$RES" "$SECS" "$CONNS" "$THREADS" "${DURABILITY:-default}" "$SLUICE_WHY" \
    "$SLUICE_REV" "$PG_VER" "$LOAD_START" "$(nproc)" <<'EOF'
import statistics, sys
res, secs, conns, threads, durab, why, rev, pgver, load0, ncpu = sys.argv[1:11]
rows = []
for line in open(res):
    kv = dict(p.split("=", 1) for p in line.split() if "=" in p)
    # a value that could not be measured is empty: count it as 0 rather than lose the table
    rows.append({k: (v if v != "" else "0") for k, v in kv.items()})

def of(test):
    return [r for r in rows if r.get("test") == test]

def med(vals):
    vals = [v for v in vals if v is not None]
    if not vals:
        return None
    return statistics.median(vals), min(vals), max(vals), len(vals)

def fmt(m, scale=1.0, nd=0, rng=True):
    if m is None:
        return "TBD"
    mid, lo, hi, n = m
    s = f"{mid * scale:,.{nd}f}"
    if rng and n > 1:
        s += f" ({lo * scale:,.{nd}f}-{hi * scale:,.{nd}f})"
    return s

def wrk_metrics(r):
    d = float(r["duration_us"]) / 1e6
    ok = int(r["requests"]) - int(r["non2xx"])
    per = int(r["records_per_req"])
    errs = sum(int(r[k]) for k in ("err_connect", "err_read", "err_write", "err_timeout"))
    recs = ok * per / d
    cpu = int(r["cpu_ticks"]) / int(r["hz"])
    return {
        "recs": recs, "reqs": ok / d, "mbs": ok * int(r["body_bytes"]) / d / 1e6,
        "p50": int(r["p50_us"]) / 1e3, "p99": int(r["p99_us"]) / 1e3,
        "p999": int(r["p999_us"]) / 1e3, "non2xx": int(r["non2xx"]), "errs": errs,
        "cpu_per_m": cpu / (ok * per) * 1e6 if ok else None, "rss": int(r["peak_rss_mb"]),
        "anon": int(r.get("peak_anon_mb", 0)), "round": r["round"],
        "acked": int(r.get("acked", 0)), "stored": int(r.get("stored", 0)),
        "verify": r.get("verify", "?"),
    }

single = [wrk_metrics(r) for r in of("single")]
batch = [wrk_metrics(r) for r in of("batch")]
pg = [{"recs": float(r["tps"]), "p50": int(r["p50_us"]) / 1e3, "p99": int(r["p99_us"]) / 1e3,
       "p999": int(r["p999_us"]) / 1e3, "failed": int(r["failed"]), "round": r["round"]}
      for r in of("pg")]
fs = of("fdatasync")

def col(rs, k):
    return med([r[k] for r in rs]) if rs else None

print()
print(f"== Sluice ingest benchmark: {secs} s per run, {conns} connections, {threads} load threads, "
      f"{max(len(single), len(pg), len(batch))} round(s)")
print(f"   Sluice {rev}, durability={durab}{'' if not why else '  [Sluice ' + why + ']'}; "
      f"{pgver}")
if fs:
    f = fs[0]
    print(f"   machine: fdatasync after a 256 B append {float(f['fdatasync_per_s']):,.0f}/s, "
          f"p50 {float(f['fdatasync_p50_us']):.0f} us, p99 {float(f['fdatasync_p99_us']):.0f} us "
          "(guest view; see docs/performance.md)")
print(f"   {ncpu} CPUs shared by servers and load generators; load average (1/5/15 min) before the run {load0}")
if float(load0.split()[0]) > 0.5:
    print("   WARNING: the machine was busy before the run started; treat the figures as noisy")
print()
hdr = f"{'system':<44} {'records/s':>22} {'p50 ms':>8} {'p99 ms':>8} {'p99.9 ms':>9} {'errors':>7}"
print(hdr)
print("-" * len(hdr))
def errs_s(rs, keys):
    return str(sum(r[k] for r in rs for k in keys)) if rs else "TBD"
print(f"{'Sluice   POST /v1/records (1 rec/req)':<44} {fmt(col(single, 'recs')):>22} "
      f"{fmt(col(single, 'p50'), nd=2, rng=False):>8} {fmt(col(single, 'p99'), nd=2, rng=False):>8} "
      f"{fmt(col(single, 'p999'), nd=2, rng=False):>9} {errs_s(single, ('non2xx', 'errs')):>7}")
print(f"{'PostgreSQL INSERT jsonb (1 row/txn)':<44} {fmt(col(pg, 'recs')):>22} "
      f"{fmt(col(pg, 'p50'), nd=2, rng=False):>8} {fmt(col(pg, 'p99'), nd=2, rng=False):>8} "
      f"{fmt(col(pg, 'p999'), nd=2, rng=False):>9} {errs_s(pg, ('failed',)):>7}")
ratios = [s["recs"] / p["recs"] for s in single for p in pg if s["round"] == p["round"] and p["recs"]]
p99r = [p["p99"] / s["p99"] for s in single for p in pg if s["round"] == p["round"] and s["p99"]]
if ratios:
    m = med(ratios)
    rng = f" (rounds: {', '.join(f'{x:.2f}' for x in ratios)})" if len(ratios) > 1 else ""
    print(f"{'ratio Sluice/PostgreSQL, records/s':<44} {m[0]:>22.2f}{rng}")
    print(f"{'ratio PostgreSQL/Sluice, p99 (>1: Sluice lower)':<44} {med(p99r)[0]:>22.2f}")
else:
    print(f"{'ratio Sluice/PostgreSQL, records/s':<44} {'TBD':>22}")
print()
hdr2 = f"{'batched':<44} {'records/s':>22} {'MB/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}"
print(hdr2)
print("-" * len(hdr2))
print(f"{'Sluice   POST /v1/records/batch (NDJSON)':<44} {fmt(col(batch, 'recs')):>22} "
      f"{fmt(col(batch, 'mbs'), nd=1, rng=False):>8} {fmt(col(batch, 'p50'), nd=2, rng=False):>8} "
      f"{fmt(col(batch, 'p99'), nd=2, rng=False):>8} {errs_s(batch, ('non2xx', 'errs')):>7}")
print()
for name, rs in (("single", single), ("batch", batch)):
    if rs:
        c = col(rs, "cpu_per_m")
        bad = [r for r in rs if r["verify"] != "ok"]
        print(f"Sluice {name}: {fmt(c, nd=2, rng=False)} CPU s per 1M records; peak RSS "
              f"{max(r['anon'] for r in rs)} MB anonymous, {max(r['rss'] for r in rs)} MB with "
              f"mapped log files; {sum(r['non2xx'] for r in rs)} non-2xx, "
              f"{sum(r['errs'] for r in rs)} socket errors")
        print(f"   after each run: sluice verify "
              + ("OK, " if not bad else "FAILED (" + ", ".join(r["verify"] for r in bad) + "), ")
              + "; ".join(f"stored {r['stored']:,} >= acked {r['acked']:,}" if r["stored"] >= r["acked"]
                          else f"stored {r['stored']:,} < acked {r['acked']:,}" for r in rs))
print("PostgreSQL latency: per-transaction pgbench --log, nearest-rank percentiles over all "
      "transactions; Sluice latency: wrk's per-request histogram. Records/s counts 2xx only.")
EOF

# Exit status: 0 unless Sluice was built but failed to run, or a run lost records or failed verify.
if [ "$SLUICE_WHY" = "failed to run (see messages above)" ] || grep -E 'verify=(FAILED|LOST)' "$RES" >/dev/null; then
    exit 1
fi
