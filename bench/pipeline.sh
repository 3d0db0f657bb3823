#!/usr/bin/env bash
# bench/pipeline.sh [N=300000] [SCAN_N=1000000] - transforms and queries (issue 11). Not part of
# `make test`.
#
#   chain:  datagen (orders, seed 42, max_events N, as fast as it can) -> strand -> a sink that
#           drops every batch (bench/null_sink.c, a plugin), batch_size 1000, with a 5-transform
#           chain on the sink (Filter keeping all, MaskField, ReplaceField, InsertField, Cast) and
#           without, alternating ROUNDS times (default 2) in one run; records/s until the sink has
#           handled all N (delivered + filtered), and the ratio chain / none (target >= 0.8).
#   scan:   SCAN_N records written with POST /v1/records/batch, then
#           GET /v1/strands/s/records?where=value.n < 0&max_scan=SCAN_N (no match: every record is
#           decoded and tested), 3 times; the median wall time of the query (target: 10M in <= 2 s).
# Also CPU time per record: of the sluice process (utime + stime from /proc/PID/stat, all its
# threads) per run for the pipelines (median); of its HTTP thread (schedstat) over the 3 queries
# for the scan. On a loaded machine it moves far less than the wall time.
# Environment: SLUICE_BIN, ROUNDS.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
N=${1:-300000}
SCAN_N=${2:-1000000}
ROUNDS=${ROUNDS:-2}
PY=/usr/bin/python3
bench_need curl
TMP=$(mktemp -d /tmp/sluice-pipeline.XXXXXX)
SL_PID=
cleanup() {
    [ -z "$SL_PID" ] || bench_stop_pid "$SL_PID" TERM
    rm -rf "$TMP"
}
trap cleanup EXIT
SLUICE=${SLUICE_BIN:-$ROOT/build/sluice}
[ -x "$SLUICE" ] || bench_die "build first: make build/sluice"
PLUG=$TMP/plugins
mkdir -p "$PLUG"
cc -std=gnu11 -O2 -shared -fPIC -fvisibility=hidden -I"$ROOT/include" $(pkg-config --cflags jansson) \
    -o "$PLUG/null_sink.so" "$ROOT/bench/null_sink.c" $(pkg-config --libs jansson) ||
    bench_die "cannot build bench/null_sink.c"

start() {
    "$SLUICE" serve --data "$TMP/data" --listen 127.0.0.1:0 --plugins "$PLUG" </dev/null >/dev/null 2>"$TMP/err" &
    SL_PID=$!
    local line
    line=$(bench_wait_line "$TMP/err" 'listening on 127\.0\.0\.1:[0-9]+' "$SL_PID" 20) ||
        bench_die "Sluice did not start: $(tail -n 5 "$TMP/err")"
    SL_URL=http://127.0.0.1:$(sed -E 's/.*listening on 127\.0\.0\.1:([0-9]+).*/\1/' <<<"$line")
}
stop() {
    bench_stop_pid "$SL_PID" TERM
    SL_PID=
    rm -rf "$TMP/data"
}
post() {
    curl -sS -o "$TMP/post.json" -w '%{http_code}' -H 'Content-Type: application/json' --data-binary "$2" "$SL_URL$1"
}

CHAIN='[{"type":"Filter","config":{"condition":"value.quantity >= 0 && value.status != \"x\""}},
 {"type":"MaskField","config":{"fields":["customer_id"]}},
 {"type":"ReplaceField","config":{"rename":{"total":"amount"},"exclude":["stream"]}},
 {"type":"InsertField","config":{"static":{"origin":"bench"}}},
 {"type":"Cast","config":{"spec":{"quantity":"string"}}}]'

TCK=$(getconf CLK_TCK)
run() { # name transforms-json-or-empty -> records/s; CPU us/record appended to $TMP/cpu_<name>
    local tr=$2 extra="" t0 t1 d id c0
    [ -z "$tr" ] || extra=",\"transforms\":$tr"
    start
    [ "$(post /v1/connectors "{\"name\":\"out\",\"kind\":\"bench_null\",\"strands\":[\"bench\"],\"config\":{\"start\":\"earliest\",\"batch_size\":1000$extra}}")" = 201 ] ||
        bench_die "sink: $(cat "$TMP/post.json")"
    id=$(sed -E 's/^\{"id":"([^"]+)".*/\1/' "$TMP/post.json")
    c0=$(bench_cpu_ticks "$SL_PID")
    t0=$(date +%s%N)
    post /v1/connectors "{\"name\":\"gen\",\"kind\":\"datagen\",\"config\":{\"pattern\":\"orders\",\"seed\":42,\"events_per_second\":1000000000,\"max_events\":$N,\"strand\":\"bench\"}}" >/dev/null
    while :; do
        d=$(curl -sS "$SL_URL/v1/connectors/$id" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["stats"]["lag"] or 0)')
        c=$(curl -sS "$SL_URL/v1/strands" | "$PY" -c 'import json,sys; print(sum(s["count"] for s in json.load(sys.stdin)["strands"] if s["name"]=="bench"))')
        [ "$c" -ge "$N" ] && [ "$d" -eq 0 ] && break
        [ $(($(date +%s%N) - t0)) -lt 300000000000 ] || bench_die "$1: not done in 300 s"
        sleep 0.02
    done
    t1=$(date +%s%N)
    awk -v n="$N" -v t=$(($(bench_cpu_ticks "$SL_PID") - c0)) -v hz="$TCK" \
        'BEGIN { printf "%.2f\n", t / hz * 1e6 / n }' >>"$TMP/cpu_$1"
    stop
    awk -v n="$N" -v ns=$((t1 - t0)) 'BEGIN { printf "%.0f", n / (ns / 1e9) }'
}

A=
B=
for ((r = 1; r <= ROUNDS; r++)); do
    bench_log "round $r: datagen -> null sink, no transforms"
    a=$(run none "")
    echo "none_per_s=$a"
    bench_log "round $r: the same with the 5-transform chain"
    b=$(run chain "$CHAIN")
    echo "chain_per_s=$b cpu_us_per_record: none=$(tail -n 1 "$TMP/cpu_none") chain=$(tail -n 1 "$TMP/cpu_chain")"
    A="$A $a"
    B="$B $b"
done
median() { tr ' ' '\n' | grep . | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
ma=$(median <<<"$A")
mb=$(median <<<"$B")
ca=$(median <"$TMP/cpu_none")
cb=$(median <"$TMP/cpu_chain")

bench_log "scan: $SCAN_N records, then where= over all of them"
start
"$PY" - "$SL_URL" "$SCAN_N" <<'PYEOF'
import json, sys, urllib.request
url, n = sys.argv[1], int(sys.argv[2])
step = 5000
for i in range(0, n, step):
    body = "\n".join(json.dumps({"strand": "s", "payload": {"n": j, "status": "paid", "amount": j % 997}})
                     for j in range(i, min(n, i + step))) + "\n"
    req = urllib.request.Request(url + "/v1/records/batch", data=body.encode(), method="POST",
                                 headers={"Content-Type": "application/x-ndjson"})
    with urllib.request.urlopen(req, timeout=120) as r:
        assert r.status == 201
PYEOF
# the HTTP threads' CPU (schedstat, ns): the process's would also count the strand's background
# work that follows the writes just made
http_cpu_ns() { for t in /proc/"$SL_PID"/task/*; do grep -q '^MHD' "$t/comm" 2>/dev/null && cut -d' ' -f1 "$t/schedstat"; done | awk '{ s += $1 } END { print s + 0 }'; }
c0=$(http_cpu_ns)
W=
for q in 1 2 3; do
    t0=$(date +%s%N)
    curl -sS "$SL_URL/v1/strands/s/records?max_scan=$SCAN_N&where=value.n%20%3C%200" >"$TMP/q.json"
    t1=$(date +%s%N)
    W="$W $((t1 - t0))"
done
scan_cpu=$(($(http_cpu_ns) - c0))
scanned=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["scanned"])' "$TMP/q.json")
stop
awk -v a="$ma" -v b="$mb" -v ca="$ca" -v cb="$cb" -v n="$scanned" -v ns="$(median <<<"$W")" \
    -v sc="$scan_cpu" 'BEGIN {
    printf "RESULT none_per_s=%d chain_per_s=%d ratio=%.2f (target >= 0.80) cpu_us_per_record none=%.2f chain=%.2f scan_records=%d scan_s=%.2f scan_per_s=%.0f (10M in %.1f s; target <= 2 s) scan_cpu_ns_per_record=%.0f\n",
        a, b, b / a, ca, cb, n, ns / 1e9, n / (ns / 1e9), 1e7 / (n / (ns / 1e9)), sc / (3 * n) }'
