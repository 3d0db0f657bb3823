#!/usr/bin/env bash
# bench/proofs.sh [RECORDS=10000000] [SECONDS=10] - the cost of verifiable strands, same run:
#
#   1. ingest with the Merkle tree (merkle_tree: 1) vs without (merkle_tree: 0): single-record
#      POST /v1/records (wrk, post_single.lua, CONNS connections) and 1000-record NDJSON batches
#      (post_batch.lua), ROUNDS rounds interleaved on/off, each against a fresh data dir;
#      prints records/s and the ratio on/off (median of the rounds);
#   2. one strand filled with RECORDS records (NDJSON batches of 10,000, durable), then p50/p99
#      of random inclusion proofs and random consistency proofs to the full size over HTTP
#      (bench/getlat.c: a closed-loop C client, 1 connection for latency, 4 for throughput;
#      GET /v1/health with the same client beside them);
#   3. restart time on that strand: after SIGKILL (the tree's unsaved tail is replayed) and after
#      a clean stop (nothing to replay), exec -> "listening on" and the server's "opened ... in".
# Not part of `make test` (10M records write ~2.5 GB; part 1 keeps each run's data until the end,
# ~3.5 GB per batch run, so that no run pays for the TRIMs of the one before). Env: ROUNDS=3
# CONNS=50 SLUICE_BIN, SKIP_INGEST=1 (parts 2 and 3 only), SKIP_PROOFS=1 (part 1 only).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
N=${1:-10000000}
SECS=${2:-10}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-50}
[[ $N =~ ^[1-9][0-9]*$ && $SECS =~ ^[1-9][0-9]*$ && $ROUNDS =~ ^[1-9][0-9]*$ ]] ||
    bench_die "usage: $0 [RECORDS] [SECONDS]  (env ROUNDS, CONNS)"
bench_need wrk curl cc
BIN=${SLUICE_BIN:-$ROOT/build/sluice}
[ -x "$BIN" ] || make -C "$ROOT" build/sluice >/dev/null
TMP=$(mktemp -d /tmp/sluice-proofs.XXXXXX)
PID=
cleanup() {
    [ -z "$PID" ] || bench_stop_pid "$PID" KILL
    rm -rf "$TMP"
}
trap cleanup EXIT
GETLAT=$TMP/getlat
cc -O2 -pthread -o "$GETLAT" "$ROOT/bench/getlat.c" || bench_die "cannot build bench/getlat.c"

# start DATA_DIR ARGS...: sets PID, PORT, START_MS
start() {
    local data=$1 t0
    shift
    : >"$TMP/log"
    t0=$(date +%s%N)
    "$BIN" serve --data "$data" --listen 127.0.0.1:0 --max-body-bytes 16M "$@" 2>"$TMP/log" &
    PID=$!
    bench_wait_line "$TMP/log" 'listening on' "$PID" 300 >/dev/null || bench_die "server did not start: $(tail -5 "$TMP/log")"
    START_MS=$((($(date +%s%N) - t0) / 1000000))
    PORT=$(grep -o 'listening on 127.0.0.1:[0-9]*' "$TMP/log" | cut -d: -f2)
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$PID/stat"; } # the server's user + system CPU

# wrk_rate LUA PATH: "records/s cpu_us_per_record" of one run (WRK_RESULT line, the server's CPU
# ticks over the run), after a 2 s warm-up
wrk_rate() {
    local lua=$1 path=$2 out res req bad dur per c0 c1
    wrk -t2 -c"$CONNS" -d2s -s "$lua" "http://127.0.0.1:$PORT$path" >/dev/null 2>&1 || true
    c0=$(cpu_ticks)
    out=$(wrk -t2 -c"$CONNS" -d"${SECS}s" --latency -s "$lua" "http://127.0.0.1:$PORT$path" 2>&1) || true
    c1=$(cpu_ticks)
    res=$(grep '^WRK_RESULT ' <<<"$out" || true)
    [ -n "$res" ] || bench_die "wrk gave no result: $out"
    req=$(bench_kv "$res" requests)
    bad=$(bench_kv "$res" non2xx)
    dur=$(bench_kv "$res" duration_us)
    per=$(bench_kv "$res" records_per_req)
    [ "$bad" = 0 ] || bench_die "non-2xx answers during ingest: $res"
    echo "$(((req - bad) * per * 1000000 / dur)) $(awk -v t=$((c1 - c0)) -v hz="$(getconf CLK_TCK)" -v n=$(((req - bad) * per)) 'BEGIN {printf "%.2f", t / hz * 1e6 / n}')"
}

median() { tr ' ' '\n' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# ---- 1. ingest, tree on vs off
declare -A RATE CPU
[ -z "${SKIP_INGEST:-}" ] || ROUNDS=0
for r in $(seq "$ROUNDS"); do
    for tree in 1 0; do
        for kind in single batch; do
            d=$TMP/ingest-$tree-$kind-$r
            start "$d" --merkle-tree "$tree"
            if [ "$kind" = single ]; then
                v=$(wrk_rate "$ROOT/bench/wrk/post_single.lua" /v1/records)
            else
                v=$(BATCH=1000 wrk_rate "$ROOT/bench/wrk/post_batch.lua" /v1/records/batch)
            fi
            bench_stop_pid "$PID" TERM
            PID=
            # kept until the end (the exit trap removes $TMP): deleting a batch run's gigabytes
            # now would issue TRIMs (this disk is mounted with discard) during the next run
            RATE[$kind-$tree]="${RATE[$kind-$tree]:-} ${v% *}"
            CPU[$kind-$tree]="${CPU[$kind-$tree]:-} ${v#* }"
            bench_log "round $r tree=$tree $kind: ${v% *} records/s, ${v#* } us of server CPU per record"
        done
    done
done
for kind in single batch; do
    [ -z "${SKIP_INGEST:-}" ] || break
    on=$(echo ${RATE[$kind-1]} | median)
    off=$(echo ${RATE[$kind-0]} | median)
    ratios=""
    on_v=(${RATE[$kind-1]})
    off_v=(${RATE[$kind-0]})
    for i in "${!on_v[@]}"; do ratios="$ratios $(awk -v a="${on_v[$i]}" -v b="${off_v[$i]}" 'BEGIN {printf "%.3f", a / b}')"; done
    echo "ingest $kind: tree on $on records/s, off $off records/s (medians of $ROUNDS); ratio on/off per round:$ratios; median $(echo $ratios | median)"
    echo "ingest $kind: server CPU per record, tree on:${CPU[$kind-1]} us; off:${CPU[$kind-0]} us"
done

# ---- 2. proofs on a strand of N records
[ -z "${SKIP_PROOFS:-}" ] || exit 0
D=$TMP/big
start "$D" --checkpoint-interval-ms 1000
bench_log "filling strand 'bench' with $N records"
t0=$(date +%s%N)
"$PY" - "$PORT" "$N" <<'PYEOF'
import http.client, sys, threading
port, n = int(sys.argv[1]), int(sys.argv[2])
per = 10000
line = ('{"payload":{"ts":"2026-11-21T04:35:00.123Z","level":"info","user_id":%d,"event":"page_view",'
        '"path":"/products/widget-7","session":"a1b2c3d4e5f6a7b8","lat_ms":12.5,"ok":true}}\n')
batches = [(i, min(per, n - i)) for i in range(0, n, per)]
lock = threading.Lock()
def worker():
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    while True:
        with lock:
            if not batches:
                return
            start, cnt = batches.pop()
        body = "".join(line % (start + k) for k in range(cnt)).encode()
        c.request("POST", "/v1/records/batch?strand=bench", body, {"Content-Type": "application/x-ndjson"})
        r = c.getresponse(); r.read()
        if r.status != 201:
            sys.exit("batch failed: %d" % r.status)
ts = [threading.Thread(target=worker) for _ in range(4)]
[t.start() for t in ts]; [t.join() for t in ts]
PYEOF
fill_ms=$((($(date +%s%N) - t0) / 1000000))
echo "filled $N records in $fill_ms ms ($((N * 1000 / (fill_ms + 1))) records/s, 10k-record NDJSON batches, tree on)"
# let the kernel write the fill's dirty pages back first: latency is measured in steady state,
# not while gigabytes of writeback compete for the disk
t0=$(date +%s%N)
sync
echo "sync after the fill: $((($(date +%s%N) - t0) / 1000000)) ms"
curl -sf "127.0.0.1:$PORT/v1/strands/bench/checkpoint" >"$TMP/checkpoint" || bench_die "no checkpoint"
head -2 "$TMP/checkpoint" | tr '\n' ' '
echo
# latency with one connection (no queueing in the server), throughput with four; GET /v1/health
# with the same client is the floor of the HTTP path on this machine. bench/getlat.c, not wrk: a
# wrk Lua script making each request measured its collector's pauses as latency.
for conns in 1 4; do
    for kind in health inclusion consistency; do
        out=$("$GETLAT" "$PORT" "$SECS" "$conns" "$kind" "$N" bench) || bench_die "getlat failed: $out"
        [ "$(bench_kv "$out" non2xx)" = 0 ] || bench_die "requests failed: $out"
        what="$kind proofs in a tree of $N"
        [ "$kind" != health ] || what="GET /v1/health"
        echo "$what, $conns connection(s): $(($(bench_kv "$out" requests) * 1000000 / $(bench_kv "$out" duration_us))) req/s, p50 $(bench_kv "$out" p50_us) us, p99 $(bench_kv "$out" p99_us) us, p99.9 $(bench_kv "$out" p999_us) us, max $(bench_kv "$out" max_us) us"
    done
done

# ---- 3. restart
bench_stop_pid "$PID" KILL
PID=
sync
start "$D"
echo "restart after SIGKILL: exec->listening $START_MS ms; server: $(grep -o 'opened .* in [0-9]* ms' "$TMP/log" | head -1); $(grep -o 'tree rebuilt for the last [0-9]* records' "$TMP/log" || echo 'tree: nothing to rebuild')"
curl -sf "127.0.0.1:$PORT/v1/strands/bench/checkpoint" | head -2 | tr '\n' ' '
echo
bench_stop_pid "$PID" TERM
PID=
start "$D"
echo "restart after a clean stop: exec->listening $START_MS ms; server: $(grep -o 'opened .* in [0-9]* ms' "$TMP/log" | head -1); $(grep -o 'tree rebuilt for the last [0-9]* records' "$TMP/log" || echo 'tree: nothing to rebuild')"
