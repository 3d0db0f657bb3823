#!/usr/bin/env bash
# bench/ingest.sh [SECONDS=20] [CONNS=50] - durable HTTP ingest: Sluice vs solhttp, Redis and
# PostgreSQL, same run.
#
#   a. Sluice, one 200-byte record per keep-alive POST /v1/records   (wrk, post_single.lua)
#   b. solhttp (../shared/perf/solhttp.c: a minimal single-threaded epoll server that appends
#      each body to one pre-zeroed file and answers 201 after fdatasync, group commit per loop
#      pass): the same wrk load, same threads, connections, duration  (the "speed of light")
#   c. Redis 7, XADD of the same 200-byte record as the field value, appendonly yes,
#      appendfsync always, same number of clients, no pipelining      (redis-benchmark)
#   d. PostgreSQL 15, the same record as one single-row jsonb INSERT per transaction,
#      synchronous_commit=on, same number of clients                   (pgbench -M prepared)
#   e. Sluice, 1000 records per POST /v1/records/batch as NDJSON       (wrk, post_batch.lua)
#   f. once, after the rounds: Sluice's RSS with IDLE_CONNS idle keep-alive connections
#      (bench/idle_conns.py)
# then a summary table with the ratios Sluice/solhttp, Sluice/Redis, Sluice/PostgreSQL and the
# issue 12 targets (>= 0.9x solhttp, >= 1.5x Redis, p99 <= 5 ms, batches >= 1.5M records/s,
# idle RSS <= 50 MB). Sluice's idle RSS is read after each start, before any request. Not part
# of `make test`.
#
# Environment:
#   SLUICE_DURABILITY=none  run Sluice with --durability none (no fsync before the ack) to compare
#   ROUNDS=1     rounds of a, b, c interleaved; with ROUNDS>1 the table shows the median and range
#                and the ratio is the median of the per-round ratios (PERF-ANCHORS.md, section 3)
#   WARMUP=2     seconds of unmeasured load before each measured run
#   THREADS=2    wrk -t and pgbench -j
#   BATCH=1000   records per batch POST
#   SLUICE_BIN   use this binary instead of building build/sluice
#   SLUICE_REV   label for that binary in the table (default: git describe of the tree it is in)
#   SKIP_PG=1 / SKIP_SLUICE=1 / SKIP_SOLHTTP=1 / SKIP_REDIS=1 / SKIP_CONNS=1   leave one part out
#   SOLHTTP_SRC  solhttp.c to build (default $ROOT/../shared/perf/solhttp.c); missing: TBD
#   SOLHTTP_PREZERO_MB=1024  solhttp's log file is zero-filled and synced before it listens
#   IDLE_CONNS=4096  connections held open by bench/idle_conns.py (Sluice is started with
#                max_connections IDLE_CONNS+100; the script raises its own open-files limit)
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
SOL_PREZERO=${SOLHTTP_PREZERO_MB:-1024}
IDLE_CONNS=${IDLE_CONNS:-4096}
[[ $SOL_PREZERO =~ ^[0-9]+$ && $IDLE_CONNS =~ ^[1-9][0-9]*$ ]] ||
    bench_die "SOLHTTP_PREZERO_MB and IDLE_CONNS must be whole numbers"
bench_need wrk pgbench psql curl make
# The servers started here inherit this limit: Sluice needs one descriptor per connection.
if [ -z "${SKIP_CONNS:-}" ] && [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((IDLE_CONNS + 256)) ]; then
    ulimit -n $((IDLE_CONNS + 256)) 2>/dev/null ||
        bench_log "could not raise the open-files limit to $((IDLE_CONNS + 256)) (hard limit $(ulimit -Hn))"
fi

# The record wrk/post_single.lua posts (its `local record = '..' .. '..'` joined): the value of
# Redis's XADD field, so that both carry the same 200 bytes.
RECORD=$("$PY" -c 'import re, sys
m = re.search(r"^local record = (.*?)\n\n", open(sys.argv[1]).read(), re.S | re.M)
print("".join(re.findall(r"\x27([^\x27]*)\x27", m.group(1))) if m else "")' "$ROOT/bench/wrk/post_single.lua")
[ "${#RECORD}" -ge 100 ] || bench_die "could not read the record of bench/wrk/post_single.lua"

TMP=$(mktemp -d /tmp/sluice-bench.XXXXXX)
chmod 755 "$TMP" # the postgres user must reach $TMP/pg
RES=$TMP/results.txt
: >"$RES"
SL_PID=
PG_DIR=
SOL_PID=
REDIS_PID=

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    [ -z "$SL_PID" ] || bench_stop_pid "$SL_PID" TERM
    [ -z "$SOL_PID" ] || bench_stop_pid "$SOL_PID" TERM
    [ -z "$REDIS_PID" ] || bench_stop_pid "$REDIS_PID" TERM
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
    local name=$1 lua=$2 path=$3 round=$4 out t0 t1 res hwm acked=3 warm sampler stored verify idle
    start_sluice || return 1
    sleep 0.5 # let the start-up threads settle; then the idle RSS, before any request
    idle=$(idle_rss "$SL_PID")
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
        "verify=$verify $idle" >>"$RES"
    stop_sluice
}

# idle_rss PID -> "idle_rss_kb=.. idle_anon_kb=.." (VmRSS and RssAnon from /proc/PID/status)
idle_rss() {
    awk '/^VmRSS:/ {r = $2} /^RssAnon:/ {a = $2} END {printf "idle_rss_kb=%d idle_anon_kb=%d", r, a}' \
        "/proc/$1/status" 2>/dev/null || echo "idle_rss_kb=0 idle_anon_kb=0"
}

# ---------------------------------------------------------------- solhttp
# Built from source into $TMP; a missing source or a failed build leaves its cells TBD.
SOL_SRC=${SOLHTTP_SRC:-$ROOT/../shared/perf/solhttp.c}
SOL_OK=
SOL_WHY=
if [ -n "${SKIP_SOLHTTP:-}" ]; then
    SOL_WHY="skipped (SKIP_SOLHTTP set)"
elif [ ! -f "$SOL_SRC" ]; then
    SOL_WHY="source not found: $SOL_SRC (set SOLHTTP_SRC)"
    bench_log "solhttp: $SOL_WHY; its cells show TBD"
elif ! cc -O2 -o "$TMP/solhttp" "$SOL_SRC" -lcrypto >"$TMP/solhttp-cc.log" 2>&1; then
    SOL_WHY="did not build: cc -O2 -o solhttp $SOL_SRC -lcrypto"
    bench_log "solhttp $SOL_WHY (last lines below); its cells show TBD"
    tail -n 5 "$TMP/solhttp-cc.log" | sed 's/^/    /' >&2
else
    SOL_OK=1
fi

# run_solhttp ROUND: a fresh solhttp (SYNC=1, log pre-zeroed), the same wrk load as Sluice's single
# run, then SIGTERM: it prints records=N, which must be at least the 2xx answers it gave.
run_solhttp() {
    local round=$1 port log code=000 i warm out res acked=0 stored verify=ok t0 t1 hwm
    port=$(bench_free_port)
    log=$TMP/solhttp-$round.log
    "$TMP/solhttp" "$port" "$log" 1 "$SOL_PREZERO" </dev/null >"$TMP/solhttp.out" 2>"$TMP/solhttp.err" &
    SOL_PID=$!
    # It prints nothing when ready (it pre-zeroes the log first, then listens): post the record
    # until it answers.
    for ((i = 0; i < 1800; i++)); do
        bench_alive "$SOL_PID" || break
        code=$(curl -sS -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' \
            --data-binary "$RECORD" "http://127.0.0.1:$port/v1/records" 2>/dev/null) || code=000
        [ "$code" = 000 ] || break
        sleep 0.1
    done
    if [ "$code" != 201 ]; then
        bench_log "solhttp did not answer 201 on port $port (got $code). Its stderr:"
        tail -n 5 "$TMP/solhttp.err" >&2
        bench_stop_pid "$SOL_PID" TERM
        SOL_PID=
        return 1
    fi
    acked=1
    if [ "$WARMUP" -gt 0 ]; then
        warm=$(wrk -t"$THREADS" -c"$CONNS" -d"${WARMUP}s" -s "$ROOT/bench/wrk/post_single.lua" \
            "http://127.0.0.1:$port/v1/records" 2>&1 | grep '^WRK_RESULT ' || true)
        acked=$((acked + $(ok_records "$warm")))
    fi
    quiesce
    t0=$(bench_cpu_ticks "$SOL_PID")
    out=$(wrk -t"$THREADS" -c"$CONNS" -d"${SECS}s" --latency -s "$ROOT/bench/wrk/post_single.lua" \
        "http://127.0.0.1:$port/v1/records" 2>&1) || true
    t1=$(bench_cpu_ticks "$SOL_PID")
    hwm=$(bench_peak_rss_mb "$SOL_PID")
    printf '%s\n' "$out" >"$TMP/wrk-solhttp-$round.txt"
    res=$(grep '^WRK_RESULT ' <<<"$out" || true)
    grep '^WRK_FIRST_NON2XX ' <<<"$out" | sed "s/^/[solhttp] /" >&2 || true
    bench_stop_pid "$SOL_PID" TERM
    SOL_PID=
    if [ -z "$res" ]; then
        bench_log "wrk gave no result for solhttp:"
        printf '%s\n' "$out" | tail -n 15 >&2
        return 1
    fi
    acked=$((acked + $(ok_records "$res")))
    stored=$(sed -nE 's/^records=([0-9]+) .*/\1/p' "$TMP/solhttp.err")
    if [ -z "$stored" ]; then
        bench_log "solhttp printed no counters on SIGTERM:"
        tail -n 5 "$TMP/solhttp.err" >&2
        stored=0
        verify=FAILED
    elif [ "$stored" -lt "$acked" ]; then
        bench_log "solhttp: $acked acknowledged but only $stored appended"
        verify=LOST
    fi
    echo "test=sol round=$round ${res#WRK_RESULT } cpu_ticks=$((t1 - t0)) hz=$(getconf CLK_TCK)" \
        "peak_rss_mb=$hwm acked=$acked stored=$stored verify=$verify" \
        "$(sed -nE 's/^records=[0-9]+ (.*)/\1/p' "$TMP/solhttp.err")" >>"$RES"
    # kept until exit, as Sluice's data: deleting a gigabyte now would TRIM under the next run
    mv "$log" "$TMP/old-solhttp.$RANDOM$RANDOM"
}

# ---------------------------------------------------------------- Redis
# Debian's redis-server 7, our own instance per round: 127.0.0.1, free port, fresh directory,
# AOF with fsync before every reply (appendfsync always), no RDB snapshots, no automatic AOF
# rewrite (a rewrite forks mid-run: leaving it out can only make Redis faster).
REDIS_OK=
REDIS_WHY=
REDIS_VER=
if [ -n "${SKIP_REDIS:-}" ]; then
    REDIS_WHY="skipped (SKIP_REDIS set)"
elif ! command -v redis-server >/dev/null || ! command -v redis-benchmark >/dev/null ||
    ! command -v redis-cli >/dev/null; then
    REDIS_WHY="not installed (apt-get install redis-server redis-tools)"
    bench_log "Redis: $REDIS_WHY; its cells show TBD"
else
    REDIS_OK=1
    REDIS_VER=$(redis-server --version | sed -nE 's/.* v=([0-9.]+).*/\1/p')
fi

# redis_load PORT KEY N: redis-benchmark, CONNS clients, no pipelining, THREADS threads (as wrk -t),
# N x `XADD KEY * f RECORD`. Prints "rps=.. avg_ms=.. p50_ms=.. p95_ms=.. p99_ms=.. max_ms=..
# errors=..". Its --csv line is "test",rps,avg,min,p50,p95,p99,max; the test name holds the
# record, with its own `","`, so the fields are counted from the end.
redis_load() {
    local port=$1 key=$2 n=$3 out errs
    out=$(redis-benchmark -h 127.0.0.1 -p "$port" -c "$CONNS" -n "$n" -P 1 --threads "$THREADS" --csv \
        XADD "$key" '*' f "$RECORD" 2>"$TMP/redis-bench.err") || true
    errs=$(grep -ci 'error' "$TMP/redis-bench.err" || true)
    if ! head -n 1 <<<"$out" | grep -qF '"rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"'; then
        bench_log "redis-benchmark printed an unexpected CSV header:"
        printf '%s\n' "$out" | head -n 3 | cut -c1-300 >&2
        head -n 5 "$TMP/redis-bench.err" >&2
        return 1
    fi
    tail -n 1 <<<"$out" | awk -F'","' -v e="${errs:-0}" '{ gsub(/"/, "", $NF)
        printf "rps=%s avg_ms=%s p50_ms=%s p95_ms=%s p99_ms=%s max_ms=%s errors=%d\n",
            $(NF-6), $(NF-5), $(NF-3), $(NF-2), $(NF-1), $NF, e }'
}

# run_redis ROUND: warm-up (a 10,000-request calibration, then WARMUP seconds' worth at its rate),
# then SECONDS' worth of requests at the last rate on a new key, whose XLEN must equal the number
# of requests afterwards. redis-benchmark runs a number of requests, not a time: when the measured
# run took under 0.6x or over 1.6x SECONDS (the rate of a loaded machine changes), it counts as
# warm-up and is run again, on another key, with the count scaled by its own rate (3 tries).
run_redis() {
    local round=$1 port dir i res rate n xlen verify=ok t0 t1 key try took
    port=$(bench_free_port)
    dir=$TMP/redis-$round
    mkdir -p "$dir"
    redis-server --bind 127.0.0.1 --port "$port" --dir "$dir" --appendonly yes --appendfsync always \
        --save '' --auto-aof-rewrite-percentage 0 --daemonize no --logfile "$dir/redis.log" \
        </dev/null >/dev/null 2>&1 &
    REDIS_PID=$!
    for ((i = 0; i < 200; i++)); do
        [ "$(redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null)" != PONG ] || break
        bench_alive "$REDIS_PID" || break
        sleep 0.05
    done
    if [ "$(redis-cli -h 127.0.0.1 -p "$port" config get appendfsync 2>/dev/null | tail -n 1)" != always ]; then
        bench_log "redis-server did not start (or appendfsync is not 'always'). Its log:"
        tail -n 5 "$dir/redis.log" >&2
        bench_stop_pid "$REDIS_PID" TERM
        REDIS_PID=
        return 1
    fi
    res=$(redis_load "$port" warm 10000) || res=
    rate=$(bench_kv "$res" rps)
    rate=${rate%.*}
    if [ -n "$rate" ] && [ "$rate" -gt 0 ] && [ "$WARMUP" -gt 0 ]; then
        res=$(redis_load "$port" warm $((rate * WARMUP))) || res=
        rate=$(bench_kv "$res" rps)
        rate=${rate%.*}
    fi
    if [ -z "$rate" ] || [ "$rate" -le 0 ]; then
        bench_log "redis-benchmark warm-up gave no rate"
        bench_stop_pid "$REDIS_PID" TERM
        REDIS_PID=
        return 1
    fi
    for ((try = 1; try <= 3; try++)); do
        n=$((rate * SECS))
        key=bench.$try
        quiesce
        t0=$(bench_cpu_ticks "$REDIS_PID")
        res=$(redis_load "$port" "$key" "$n") || res=
        t1=$(bench_cpu_ticks "$REDIS_PID")
        rate=$(bench_kv "$res" rps)
        rate=${rate%.*}
        if [ -z "$rate" ] || [ "$rate" -le 0 ]; then break; fi
        # took = the run's length in tenths of SECONDS
        took=$((n * 10 / rate / SECS))
        [ "$took" -lt 6 ] || [ "$took" -gt 16 ] || break
        [ "$try" = 3 ] || bench_log "Redis: $n XADD took $((n / rate)).$((n * 10 / rate % 10)) s, not about $SECS s: again with $((rate * SECS))"
    done
    xlen=$(redis-cli -h 127.0.0.1 -p "$port" xlen "$key" 2>/dev/null || echo 0)
    bench_stop_pid "$REDIS_PID" TERM
    REDIS_PID=
    [ -n "$res" ] || return 1
    if [ "${xlen:-0}" != "$n" ]; then
        bench_log "Redis: $n XADD sent but XLEN $key is ${xlen:-?}"
        verify=LOST
    fi
    echo "test=redis round=$round n=$n $res xlen=$xlen verify=$verify tries=$try cpu_ticks=$((t1 - t0))" \
        "hz=$(getconf CLK_TCK)" >>"$RES"
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
    if [ -n "$SOL_OK" ]; then
        bench_log "round $r: solhttp, the same wrk load (log pre-zeroed ${SOL_PREZERO} MB, fdatasync)"
        if ! run_solhttp "$r"; then
            SOL_OK=
            SOL_WHY="failed to run (see messages above)"
        fi
    fi
    if [ -n "$REDIS_OK" ]; then
        bench_log "round $r: Redis $REDIS_VER XADD, appendfsync always, redis-benchmark -c $CONNS -P 1"
        if ! run_redis "$r"; then
            REDIS_OK=
            REDIS_WHY="failed to run (see messages above)"
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

# run_conns: a fresh Sluice (max_connections IDLE_CONNS+100), bench/idle_conns.py holds IDLE_CONNS
# idle keep-alive connections, each answered twice, and reads the RSS before, with and after.
run_conns() {
    local out line
    bench_start_sluice "$SLUICE" "$TMP" --max-connections $((IDLE_CONNS + 100)) \
        ${DURABILITY:+--durability "$DURABILITY"} || {
        stop_sluice
        return 1
    }
    sleep 0.5
    out=$("$PY" "$ROOT/bench/idle_conns.py" "$SL_PID" 127.0.0.1 "$SL_PORT" "$IDLE_CONNS" 3 2>&1) ||
        bench_log "idle_conns.py: not every connection was answered twice"
    line=$(grep '^CONNS_RESULT ' <<<"$out" || true)
    if [ -z "$line" ]; then
        bench_log "idle_conns.py gave no result:"
        printf '%s\n' "$out" | tail -n 10 >&2
    elif ! bench_alive "$SL_PID"; then
        bench_log "Sluice exited while holding the connections. Its stderr:"
        tail -n 10 "$TMP/sluice.err" >&2
        line=
    fi
    stop_sluice
    [ -n "$line" ] || return 1
    echo "test=conns round=0 ${line#CONNS_RESULT } max_connections=$((IDLE_CONNS + 100))" >>"$RES"
}

if [ -n "$SLUICE_OK" ] && [ -z "${SKIP_CONNS:-}" ]; then
    bench_log "Sluice with $IDLE_CONNS idle keep-alive connections (bench/idle_conns.py)"
    run_conns || bench_log "the idle-connections run failed; its cells show TBD"
fi

# ---------------------------------------------------------------- summary
if [ -n "${SLUICE_REV:-}" ]; then
    :
elif [ -n "${SLUICE_BIN:-}" ]; then
    # a binary from another worktree: describe that tree (build/sluice -> its top directory)
    SLUICE_REV="$(git -C "$(dirname "$SLUICE")/.." describe --always --dirty 2>/dev/null || echo '?')"
    SLUICE_REV+=" ($(git -C "$(dirname "$SLUICE")/.." rev-parse --abbrev-ref HEAD 2>/dev/null || echo '?'), $SLUICE)"
else
    SLUICE_REV=$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo '?')
fi
PG_VER="PostgreSQL $(psql -X -Atc 'SHOW server_version' 2>/dev/null || echo '?') (synchronous_commit=on, fsync=on)"
[ -n "$PG_OK" ] || PG_VER="PostgreSQL skipped"
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
"$PY" - "$RES" "$SECS" "$CONNS" "$THREADS" "${DURABILITY:-default}" "$SLUICE_WHY" \
    "$SLUICE_REV" "$PG_VER" "$LOAD_START" "$(nproc)" "$SOL_WHY" "$REDIS_WHY" "${REDIS_VER:-?}" \
    "$LOAD_END" "${#RECORD}" "$SOL_PREZERO" "$IDLE_CONNS" <<'EOF'
import statistics, sys
res, secs, conns, threads, durab, why, rev, pgver, load0, ncpu = sys.argv[1:11]
sol_why, redis_why, redis_ver, load1, rec_len, sol_prezero, idle_conns = sys.argv[11:18]
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
        "idle_rss": int(r.get("idle_rss_kb", 0)) / 1024, "idle_anon": int(r.get("idle_anon_kb", 0)) / 1024,
        "body_bytes": int(r["body_bytes"]),
    }

single = [wrk_metrics(r) for r in of("single")]
batch = [wrk_metrics(r) for r in of("batch")]
pg = [{"recs": float(r["tps"]), "p50": int(r["p50_us"]) / 1e3, "p99": int(r["p99_us"]) / 1e3,
       "p999": int(r["p999_us"]) / 1e3, "failed": int(r["failed"]), "round": r["round"]}
      for r in of("pg")]
fs = of("fdatasync")
sol = [wrk_metrics(r) for r in of("sol")]
redis = [{"recs": float(r["rps"]), "p50": float(r["p50_ms"]), "p99": float(r["p99_ms"]),
          "p999": None, "errors": int(r["errors"]), "n": int(r["n"]), "xlen": int(r["xlen"]),
          "verify": r["verify"], "secs": int(r["n"]) / float(r["rps"]) if float(r["rps"]) else 0,
          "cpu_per_m": int(r["cpu_ticks"]) / int(r["hz"]) / int(r["n"]) * 1e6 if int(r["n"]) else None,
          "round": r["round"]} for r in of("redis")]
conn = of("conns")

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
print(f"   {ncpu} CPUs shared by servers and load generators; load average (1/5/15 min) before the run "
      f"{load0}, after {load1}")
print(f"   solhttp: {sol_why or f'built here, SYNC=1, log pre-zeroed {sol_prezero} MB'}; "
      f"Redis {redis_ver}: {redis_why or 'appendonly yes, appendfsync always, no RDB, no AOF rewrite; redis-benchmark -P 1 --threads ' + threads}")
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
print(f"{'solhttp  minimal epoll server, fdatasync':<44} {fmt(col(sol, 'recs')):>22} "
      f"{fmt(col(sol, 'p50'), nd=2, rng=False):>8} {fmt(col(sol, 'p99'), nd=2, rng=False):>8} "
      f"{fmt(col(sol, 'p999'), nd=2, rng=False):>9} {errs_s(sol, ('non2xx', 'errs')):>7}")
print(f"{'Redis    XADD, appendfsync always (1/cmd)':<44} {fmt(col(redis, 'recs')):>22} "
      f"{fmt(col(redis, 'p50'), nd=2, rng=False):>8} {fmt(col(redis, 'p99'), nd=2, rng=False):>8} "
      f"{'-':>9} {errs_s(redis, ('errors',)):>7}")
def per_round(a, b, key="recs"):
    return [x[key] / y[key] for x in a for y in b if x["round"] == y["round"] and y[key]]
def ratio_s(rs):
    if not rs:
        return "TBD"
    rng = f" (rounds: {', '.join(f'{x:.2f}' for x in rs)})" if len(rs) > 1 else ""
    return f"{med(rs)[0]:.2f}{rng}"
r_sol, r_redis = per_round(single, sol), per_round(single, redis)
for name, rs in (("solhttp", r_sol), ("Redis", r_redis)):
    m, _, rounds = ratio_s(rs).partition(" ")
    print(f"{'ratio Sluice/' + name + ', records/s':<44} {m:>22}{' ' + rounds if rounds else ''}")
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
if sol:
    print(f"solhttp: {fmt(col(sol, 'cpu_per_m'), nd=2, rng=False)} CPU s per 1M records; peak RSS "
          f"{max(r['rss'] for r in sol)} MB; after each run "
          + "; ".join(f"appended {r['stored']:,} {'>=' if r['stored'] >= r['acked'] else '<'} acked {r['acked']:,}"
                      for r in sol))
if redis:
    runs = ", ".join("%s XADD in %.1f s" % (f"{r['n']:,}", r["secs"]) for r in redis)
    print(f"Redis: {fmt(col(redis, 'cpu_per_m'), nd=2, rng=False)} CPU s per 1M records; each run "
          f"{runs}; XLEN after the run: "
          + "; ".join(f"{r['xlen']:,} {'=' if r['xlen'] == r['n'] else '!='} {r['n']:,}" for r in redis)
          + f"; field value {rec_len} bytes = wrk body "
          + (f"{single[0]['body_bytes']} bytes" if single else "?"))
print("PostgreSQL latency: per-transaction pgbench --log, nearest-rank percentiles over all "
      "transactions; Sluice and solhttp latency: wrk's per-request histogram; Redis latency: "
      "redis-benchmark's histogram. Records/s counts 2xx (or OK) only.")

# ---- issue 12's targets
def status(ok):
    return "TBD" if ok is None else ("met" if ok else "NOT MET")
print()
print("== issue 12 targets (medians over the rounds; ratios are medians of per-round ratios)")
hdr3 = f"{'target':<52} {'measured':<44} {'status':>8}"
print(hdr3)
print("-" * len(hdr3))
def trow(name, measured, ok):
    print(f"{name:<52} {measured:<44} {status(ok):>8}")
trow("single records/s >= 0.9 x solhttp", ratio_s(r_sol), med(r_sol)[0] >= 0.9 if r_sol else None)
trow("single records/s >= 1.5 x Redis (appendfsync always)", ratio_s(r_redis),
     med(r_redis)[0] >= 1.5 if r_redis else None)
p99s = [r["p99"] for r in single]
trow("single p99 <= 5 ms",
     (f"{med(p99s)[0]:.2f} ms" + (f" (rounds: {', '.join(f'{x:.2f}' for x in p99s)})" if len(p99s) > 1 else ""))
     if p99s else "TBD", med(p99s)[0] <= 5 if p99s else None)
br = [r["recs"] for r in batch]
trow("batched NDJSON >= 1.5M records/s durable",
     (f"{med(br)[0]:,.0f}/s" + (f" ({min(br):,.0f}-{max(br):,.0f})" if len(br) > 1 else "")) if br else "TBD",
     med(br)[0] >= 1.5e6 if br else None)
idle = [r["idle_rss"] for r in single + batch if r["idle_rss"]]
idle_a = [r["idle_anon"] for r in single + batch if r["idle_rss"]]
trow("idle RSS <= 50 MB (after start, before load)",
     f"{max(idle):.1f} MB VmRSS max ({max(idle_a):.1f} MB anon), {len(idle)} starts" if idle else "TBD",
     max(idle) <= 50 if idle else None)
allr = single + batch
if allr:
    print(f"{'peak RSS under load (single / batch)':<52} "
          f"{max((r['rss'] for r in single), default=0)} / {max((r['rss'] for r in batch), default=0)} MB VmHWM, "
          f"{max((r['anon'] for r in single), default=0)} / {max((r['anon'] for r in batch), default=0)} MB anon")
if conn:
    c = conn[0]
    kb = lambda k: int(c[k]) / 1024
    print(f"{'RSS with ' + idle_conns + ' idle keep-alive connections':<52} "
          f"{kb('rss_with_kb'):.1f} MB VmRSS ({kb('anon_with_kb'):.1f} MB anon); before "
          f"{kb('rss_before_kb'):.1f} MB ({kb('anon_before_kb'):.1f} anon), after closing "
          f"{kb('rss_after_kb'):.1f} MB; {int(c['per_conn_b']) / 1024:.1f} KiB anon per connection; "
          f"{c['answered']}/{c['n']} answered, {c['answered_again']} again, new connection "
          f"{'answered' if c['extra_ok'] == '1' else 'NOT answered'}"
          + (f"; first error: {c['first_error']}" if c.get("first_error", "0") not in ("", "0") else ""))
else:
    print(f"{'RSS with ' + idle_conns + ' idle keep-alive connections':<52} TBD")
EOF

# Exit status: 0 unless Sluice was built but failed to run, or a run lost records or failed verify.
# A peer (solhttp, Redis) that loses records is reported in the table, and fails the run too.
if [ "$SLUICE_WHY" = "failed to run (see messages above)" ] || grep -E 'verify=(FAILED|LOST)' "$RES" >/dev/null; then
    exit 1
fi
