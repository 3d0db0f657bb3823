#!/usr/bin/env bash
# bench/fanout.sh [SECONDS=10] - outbound delivery: write -> webhook latency, delivery
# throughput, and isolation from a stalled target. Not part of `make test`.
#
#   0. harness floor: bench/e2elat.c's sender -> its own sink directly, 10k rec/s (PERF-ANCHORS C8)
#      0b. the write floor: the same sender -> ../shared/perf/solhttp.c (one thread, one fdatasync
#      per loop), 10k rec/s: what a minimal durable server's acknowledgements take on this disk
#   1. write -> webhook latency, one webhook, batch_size 1, open loop at 10,000 and 1,000 rec/s:
#      every record carries its send time (CLOCK_MONOTONIC) and a sequence number; the sink
#      (same process, same clock) takes delivery time - send time, and counts duplicates and
#      records acknowledged (201) but never delivered
#      and once more at 10,000 rec/s with batch_size 100 (a POST carries what is waiting, <= 100)
#   2. delivery throughput: pre-fill THRU_N records (NDJSON batches), then create a webhook with
#      start "earliest" and batch_size 100, and time creation -> last record at the sink; the same
#      with batch_size 1 for THRU_N1 records
#   3. isolation: two webhooks on one strand at 1,000 rec/s, one pointing at a sink that answers
#      every request 2 s late; the normal one's p99 with and without the stalled one
# then a summary against the targets, with the Fluent Bit figures of PERF-ANCHORS C7/C8.
#
# With INFLIGHT=N (a Sluice that has webhook max_in_flight), runs 1a and the batch_size 1
# throughput run again with max_in_flight N (several requests in flight per webhook).
#
# Environment: DRAIN=60 (seconds to wait for stragglers after each open-loop run), CONNS=32
# (sender connections at 10k/s; 8 at 1k/s), THRU_N=300000, THRU_N1=50000, THRU_TIMEOUT=120,
# STALL_MS=2000, SLUICE_BIN, RESULTS=FILE (keep the raw key=value lines), SOLHTTP_SRC,
# SKIP_SOLHTTP.
# Everything binds to 127.0.0.1; servers are stopped by PID; the temp dir is removed on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"

SECS=${1:-10}
DRAIN=${DRAIN:-60}
CONNS=${CONNS:-32}
THRU_N=${THRU_N:-300000}
THRU_N1=${THRU_N1:-50000}
THRU_TIMEOUT=${THRU_TIMEOUT:-120}
STALL_MS=${STALL_MS:-2000}
for v in "$SECS" "$DRAIN" "$CONNS" "$THRU_N" "$THRU_N1" "$THRU_TIMEOUT" "$STALL_MS"; do
    [[ $v =~ ^[1-9][0-9]*$ ]] || bench_die "usage: $0 [SECONDS]  (whole numbers >= 1, also for the environment knobs)"
done
[ "$THRU_N1" -le "$THRU_N" ] || bench_die "THRU_N1 must be <= THRU_N"
bench_need curl make cc

TMP=$(mktemp -d /tmp/sluice-fanout.XXXXXX)
RES=$TMP/results.txt
: >"$RES"
SL_PID=
AUX_PIDS=()

cleanup() {
    local rc=$? p
    trap - EXIT INT TERM
    for p in "${AUX_PIDS[@]}"; do bench_stop_pid "$p" TERM; done
    [ -z "$SL_PID" ] || bench_stop_pid "$SL_PID" TERM
    if [ -n "${RESULTS:-}" ] && [ -s "$RES" ]; then cp "$RES" "$RESULTS"; fi
    rm -rf "$TMP"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

SLUICE=${SLUICE_BIN:-$ROOT/build/sluice}
if [ -z "${SLUICE_BIN:-}" ]; then
    make -C "$ROOT" build/sluice >"$TMP/make.log" 2>&1 || {
        tail -n 8 "$TMP/make.log" >&2
        bench_die "'make build/sluice' failed"
    }
fi
[ -x "$SLUICE" ] || bench_die "no executable at $SLUICE"
E2E=$TMP/e2elat
cc -O2 -pthread -o "$E2E" "$ROOT/bench/e2elat.c" || bench_die "cannot build bench/e2elat.c"

# start_sluice / stop_sluice: a fresh server per run (bench/lib.sh); sets SL_PID, SL_PORT, SL_URL.
start_sluice() { bench_start_sluice "$SLUICE" "$TMP" || bench_die "Sluice did not start"; }

stop_sluice() {
    bench_stop_sluice "$TMP"
    cp "$TMP/sluice.err" "$TMP/sluice.err.$1" 2>/dev/null || true
}

# sink_port FILE PID: the port a bench/e2elat sink printed on stderr.
sink_port() {
    local line
    line=$(bench_wait_line "$1" 'sink listening on 127\.0\.0\.1:[0-9]+' "$2" 10) || bench_die "sink did not start: $(cat "$1")"
    sed -E 's/.*127\.0\.0\.1:([0-9]+).*/\1/' <<<"$line"
}

# webhook NAME SINKPORT BATCH [START=head]: create it, fail loudly unless 201. Prints the id.
# MIF=N in the environment adds "max_in_flight": N.
webhook() {
    local code mif=''
    [ -z "${MIF:-}" ] || mif=",\"max_in_flight\":$MIF"
    code=$(curl -sS -o "$TMP/conn.json" -w '%{http_code}' -H 'Content-Type: application/json' \
        --data-binary "{\"name\":\"$1\",\"kind\":\"webhook\",\"config\":{\"url\":\"http://127.0.0.1:$2/hook\",\"batch_size\":$3,\"start\":\"${4:-head}\"$mif}}" \
        "$SL_URL/v1/connectors") || code=000
    [ "$code" = 201 ] || bench_die "POST /v1/connectors answered $code: $(head -c 300 "$TMP/conn.json")"
    sed -E 's/^\{"id":"([^"]+)".*/\1/' "$TMP/conn.json"
}

# connector_stats ID: "delivered=.. failed=.. retried=.. dead_lettered=.. lag=.." from the API.
connector_stats() {
    curl -sS "$SL_URL/v1/connectors/$1" 2>/dev/null | "$PY" -c '
import json, sys
try:
    s = json.load(sys.stdin).get("stats", {})
except Exception:
    s = {}
print(" ".join("c_%s=%s" % (k, s.get(k, "?")) for k in ("delivered", "failed", "retried", "dead_lettered", "lag")))' 2>/dev/null || echo "c_delivered=?"
}

# run_lat NAME RATE CONNS STALLED(0/1) [BATCH=1]: fresh Sluice, one webhook (batch_size BATCH) to the e2elat
# sink, plus one to a sink answering STALL_MS late if STALLED=1; open loop; one result line.
run_lat() {
    local name=$1 rate=$2 conns=$3 stalled=$4 batch=${5:-1} rp port slow_pid='' slow_port id extra=''
    start_sluice
    rm -f "$TMP/go"
    if [ "$stalled" = 1 ]; then
        "$E2E" slow "$STALL_MS" >"$TMP/slow.out" 2>"$TMP/slow.err" &
        slow_pid=$!
        AUX_PIDS+=("$slow_pid")
        slow_port=$(sink_port "$TMP/slow.err" "$slow_pid")
        webhook stalled "$slow_port" 1 >/dev/null
    fi
    "$E2E" run 127.0.0.1 "$SL_PORT" /v1/records "$rate" "$SECS" "$conns" "$DRAIN" "$TMP/go" \
        >"$TMP/run.out" 2>"$TMP/run.err" &
    rp=$!
    AUX_PIDS+=("$rp")
    port=$(sink_port "$TMP/run.err" "$rp")
    id=$(webhook normal "$port" "$batch")
    sleep 0.3 # the worker thread starts and connects lazily; the first request opens the connection
    touch "$TMP/go"
    wait "$rp" || bench_die "e2elat run failed: $(tail -n 5 "$TMP/run.err")"
    AUX_PIDS=()
    extra=$(connector_stats "$id")
    if [ -n "$slow_pid" ]; then
        bench_stop_pid "$slow_pid" TERM
        extra="$extra $(sed 's/\([a-z_]*\)=/stalled_\1=/g' "$TMP/slow.out")"
    fi
    echo "test=$name batch=$batch $(cat "$TMP/run.out") $extra" >>"$RES"
    tail -n 1 "$RES" >&2
    stop_sluice "$name"
}

# prefill N: N records into strand default via 4,000-record NDJSON batches (the body limit is 1 MiB), each payload
# {"t_ns":0,"s":<seq>,...}, seq 0..N-1 in order.
prefill() {
    local n=$1 i code
    "$PY" - "$n" "$TMP/batch" <<'EOF'
import sys
n, pre = int(sys.argv[1]), sys.argv[2]
per = 4000  # ~0.85 MB per POST: the body limit is 1 MiB
for b in range((n + per - 1) // per):
    with open("%s.%05d" % (pre, b), "w") as f:
        for s in range(b * per, min(n, (b + 1) * per)):
            f.write('{"agent_id":"bench","payload":{"t_ns":0,"s":%d,"source":"bench","level":"info",'
                    '"event":"page_view","path":"/products/widget-42","session":"a1b2c3d4e5f6a7b8","ok":true}}\n' % s)
EOF
    for i in "$TMP"/batch.*; do
        code=$(curl -sS -o "$TMP/batch.resp" -w '%{http_code}' -H 'Content-Type: application/x-ndjson' \
            --data-binary "@$i" "$SL_URL/v1/records/batch") || code=000
        [ "$code" = 201 ] || bench_die "batch POST answered $code: $(head -c 300 "$TMP/batch.resp")"
        rm -f "$i"
    done
}

# run_thru NAME N BATCH: a counting sink, a webhook with start=earliest; creation -> last arrival.
run_thru() {
    local name=$1 n=$2 batch=$3 cp port t0 id out first last
    "$E2E" count "$n" "$THRU_TIMEOUT" >"$TMP/count.out" 2>"$TMP/count.err" &
    cp=$!
    AUX_PIDS+=("$cp")
    port=$(sink_port "$TMP/count.err" "$cp")
    t0=$(date +%s%N)
    id=$(webhook "$name" "$port" "$batch" earliest)
    wait "$cp" || true
    AUX_PIDS=()
    out=$(cat "$TMP/count.out")
    first=$(bench_kv "$out" first_real_ns)
    last=$(bench_kv "$out" last_real_ns)
    echo "test=$name batch=$batch $out create_real_ns=$t0 elapsed_s=$("$PY" -c "print('%.3f' % ((${last:-0} - $t0) / 1e9))")" \
        "rate=$("$PY" -c "d = (${last:-0} - $t0) / 1e9; print('%.0f' % (int('$(bench_kv "$out" delivered)' or 0) / d) if d > 0 else 0)")" \
        "first_after_ms=$("$PY" -c "print('%.1f' % ((${first:-0} - $t0) / 1e6))") $(connector_stats "$id")" >>"$RES"
    tail -n 1 "$RES" >&2
    # stop the connector: it would keep delivering to a closed port and retrying
    curl -sS -X DELETE -o /dev/null "$SL_URL/v1/connectors/$id" || true
}

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
bench_log "plan: ${SECS}s open-loop runs (+ up to ${DRAIN}s drain), throughput with $THRU_N / $THRU_N1 records"

bench_log "0. harness floor: e2elat sender -> its own sink, 10,000 rec/s"
rm -f "$TMP/go"
touch "$TMP/go"
"$E2E" run 127.0.0.1 0 /hook 10000 "$SECS" "$CONNS" 10 "$TMP/go" >"$TMP/floor.out" 2>/dev/null
echo "test=floor $(cat "$TMP/floor.out")" >>"$RES"
tail -n 1 "$RES" >&2

# 0b. The write's own floor on this disk: the same sender against ../shared/perf/solhttp.c (one
# thread, one fdatasync per loop, log pre-zeroed; no JSON, no hash, no connector). Its send -> 201
# p99 is what a minimal durable server acknowledges at 10k rec/s; nothing reaches the sink, so
# the sender's drain is 1 s and only its ack_* figures count. SKIP_SOLHTTP=1 leaves it out.
SOL_SRC=${SOLHTTP_SRC:-$ROOT/../shared/perf/solhttp.c}
if [ -n "${SKIP_SOLHTTP:-}" ]; then
    bench_log "0b. write floor: skipped (SKIP_SOLHTTP set)"
elif [ ! -f "$SOL_SRC" ] || ! cc -O2 -o "$TMP/solhttp" "$SOL_SRC" -lcrypto >"$TMP/solhttp-cc.log" 2>&1; then
    bench_log "0b. write floor: solhttp not built from $SOL_SRC (set SOLHTTP_SRC); left out"
else
    bench_log "0b. write floor: the same sender -> solhttp (fdatasync per loop), 10,000 rec/s"
    sol_port=$(bench_free_port)
    "$TMP/solhttp" "$sol_port" "$TMP/solhttp.log" 1 64 </dev/null >/dev/null 2>"$TMP/solhttp.err" &
    sol_pid=$!
    AUX_PIDS+=("$sol_pid")
    code=000
    for ((i = 0; i < 600; i++)); do # it listens once its log is pre-zeroed
        bench_alive "$sol_pid" || break
        code=$(curl -sS -o /dev/null -w '%{http_code}' --data-binary '{"agent_id":"bench","payload":{}}' \
            "http://127.0.0.1:$sol_port/v1/records" 2>/dev/null) || code=000
        [ "$code" = 000 ] || break
        sleep 0.1
    done
    [ "$code" = 201 ] || bench_die "solhttp did not answer 201 (got $code): $(tail -n 3 "$TMP/solhttp.err")"
    rm -f "$TMP/go"
    touch "$TMP/go"
    "$E2E" run 127.0.0.1 "$sol_port" /v1/records 10000 "$SECS" "$CONNS" 1 "$TMP/go" >"$TMP/sol.out" 2>/dev/null
    bench_stop_pid "$sol_pid" TERM
    AUX_PIDS=()
    echo "test=solfloor $(cat "$TMP/sol.out")" >>"$RES"
    tail -n 1 "$RES" >&2
fi

bench_log "1a. write -> webhook, batch_size 1, 10,000 rec/s"
run_lat lat10k 10000 "$CONNS" 0
bench_log "1b. write -> webhook, batch_size 1, 1,000 rec/s"
run_lat lat1k 1000 8 0
bench_log "1c. write -> webhook, batch_size 100 (the worker batches only what is waiting), 10,000 rec/s"
run_lat lat10k_b100 10000 "$CONNS" 0 100
if [ -n "${INFLIGHT:-}" ]; then
    bench_log "1d. write -> webhook, batch_size 1, max_in_flight $INFLIGHT, 10,000 rec/s"
    MIF=$INFLIGHT run_lat lat10k_mif 10000 "$CONNS" 0
fi

bench_log "2. delivery throughput: pre-fill $THRU_N records, then webhooks with start=earliest"
start_sluice
prefill "$THRU_N"
sync
run_thru thru_b100 "$THRU_N" 100
run_thru thru_b1 "$THRU_N1" 1
[ -z "${INFLIGHT:-}" ] || MIF=$INFLIGHT run_thru thru_b1_mif "$THRU_N1" 1
stop_sluice thru

bench_log "3. isolation at 1,000 rec/s: normal webhook alone, then beside one stalled ${STALL_MS} ms"
run_lat iso_alone 1000 8 0
run_lat iso_stalled 1000 8 1

# ---------------------------------------------------------------- summary
REV="$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo '?') (binary $SLUICE)"
"$PY" - "$RES" "$SECS" "$REV" "$LOAD_START" "$STALL_MS" <<'EOF'
import sys
res, secs, rev, load0, stall = sys.argv[1:6]
R = {}
for line in open(res):
    kv = dict(p.split("=", 1) for p in line.split() if "=" in p)
    R[kv["test"]] = kv

def ms(kv, k):
    return float(kv.get(k, 0)) / 1e3

print()
print(f"== Sluice outbound delivery benchmark: {secs} s open-loop runs; Sluice {rev}; "
      f"load average before {load0}")
print()
hdr = f"{'run':<42} {'p50 ms':>9} {'p99 ms':>9} {'p99.9 ms':>9} {'max ms':>9} {'acked':>8} {'deliv.':>8} {'lost':>6} {'dups':>5}"
print(hdr)
print("-" * len(hdr))
rows = [("floor", "harness floor (sender -> sink) 10k/s"),
        ("lat10k", "write -> webhook, batch 1, 10k rec/s"),
        ("lat1k", "write -> webhook, batch 1, 1k rec/s"),
        ("lat10k_b100", "write -> webhook, batch 100, 10k rec/s"),
        ("lat10k_mif", "write -> webhook, batch 1 + in flight, 10k"),
        ("iso_alone", "isolation: normal webhook alone, 1k/s"),
        ("iso_stalled", f"isolation: beside a {stall} ms target, 1k/s")]
for t, label in rows:
    kv = R.get(t)
    if not kv:
        print(f"{label:<42} {'(not run)':>9}")
        continue
    print(f"{label:<42} {ms(kv,'p50_us'):>9.2f} {ms(kv,'p99_us'):>9.2f} {ms(kv,'p999_us'):>9.2f} "
          f"{ms(kv,'max_us'):>9.1f} {kv['acked']:>8} {kv['delivered']:>8} {kv['lost']:>6} {kv['dups']:>5}")
for t, label in rows:
    kv = R.get(t)
    if kv and (int(kv.get("late_1ms", 0)) or int(kv.get("non2xx", 0)) or int(kv.get("net_err", 0))):
        print(f"   {t}: sender {kv['late_1ms']} sends > 1 ms behind schedule (max {kv['max_late_ms']} ms), "
              f"{kv['non2xx']} non-2xx, {kv['net_err']} socket errors; all delivered "
              f"{float(kv['drain_s']):.1f} s after the last send")
    elif kv and t != "floor":
        print(f"   {t}: all delivered {float(kv['drain_s']):.1f} s after the last send")
st = R.get("iso_stalled", {})
if st:
    print(f"   stalled target received {st.get('stalled_requests', '?')} requests "
          f"({st.get('stalled_delivered', '?')} distinct records) in the run")
print()
hdr2 = f"{'delivery throughput (start=earliest)':<42} {'records':>9} {'rec/s':>10} {'seconds':>8} {'requests':>9} {'dups':>6}"
print(hdr2)
print("-" * len(hdr2))
for t in ("thru_b100", "thru_b1", "thru_b1_mif"):
    kv = R.get(t)
    if kv:
        print(f"{'batch_size ' + kv['batch'] + (' + max_in_flight' if t.endswith('mif') else ''):<42} {kv['delivered']:>9} {int(kv['rate']):>10,} "
              f"{float(kv['elapsed_s']):>8.2f} {kv['requests']:>9} {kv['dups']:>6}"
              + ("" if kv.get("complete") == "1" else "   INCOMPLETE (timed out)"))
print()

def verdict(ok):
    return "MET" if ok else "NOT MET"
def write_alone(kv):
    # the sender's send -> 201 p99 in the same run: the durable write by itself (bench/e2elat.c)
    return f"; the write alone: p99 {ms(kv, 'ack_p99_us'):.2f} ms" if "ack_p99_us" in kv else ""
l10 = R.get("lat10k")
b100 = R.get("thru_b100")
a, s = R.get("iso_alone"), R.get("iso_stalled")
print("Targets:")
sol = R.get("solfloor")
if sol and "ack_p99_us" in sol:
    print(f"  (the floor: a minimal durable server, solhttp, acknowledges 10k rec/s from the same sender with "
          f"p99 {ms(sol, 'ack_p99_us'):.2f} ms, p50 {ms(sol, 'ack_p50_us'):.2f} ms)")
if l10:
    print(f"  write->webhook p99 <= 5 ms at 10k rec/s: {ms(l10,'p99_us'):.2f} ms  {verdict(ms(l10,'p99_us') <= 5)}{write_alone(l10)}")
lmif = R.get("lat10k_mif")
if lmif:
    print(f"     (with max_in_flight: {ms(lmif,'p99_us'):.2f} ms  {verdict(ms(lmif,'p99_us') <= 5)}{write_alone(lmif)})")
l10b = R.get("lat10k_b100")
if l10b:
    print(f"     (with batch_size 100: {ms(l10b,'p99_us'):.2f} ms  {verdict(ms(l10b,'p99_us') <= 5)}{write_alone(l10b)})")
if b100:
    print(f"  delivery >= 200k rec/s with batch_size 100: {int(b100['rate']):,} rec/s  "
          f"{verdict(int(b100['rate']) >= 200000 and b100.get('complete') == '1')}")
if a and s:
    pa, ps = ms(a, "p99_us"), ms(s, "p99_us")
    # "costs nothing": within this machine's noise (15 %) or 0.5 ms, whichever is larger
    ok = ps <= max(pa * 1.15, pa + 0.5) and s["lost"] == "0"
    alone = (f" (the write alone: {ms(a, 'ack_p99_us'):.2f} / {ms(s, 'ack_p99_us'):.2f} ms)"
             if "ack_p99_us" in a and "ack_p99_us" in s else "")
    print(f"  a stalled target costs the other nothing: p99 {pa:.2f} ms alone, {ps:.2f} ms beside it  {verdict(ok)}{alone}")
print()
print("Peers (PERF-ANCHORS C7/C8, same machine, not re-run: Fluent Bit is not installable here):")
print("  C7 Fluent Bit 5.1.1 in_http -> out_http, 10k rec/s open loop: Flush 1 p50 517 ms, p99 1,007 ms;")
print("     Flush 0.05 p50 25.8 ms, p99 50.3 ms")
print("  C8 harness floor (sender -> own sink directly): p50 0.01 ms, p99 0.07 ms")
print("Latency = sink arrival - send time (CLOCK_MONOTONIC, one process), first delivery of each record,")
print("nearest rank; 'lost' = acknowledged (201) but not delivered when the drain ended.")
EOF
