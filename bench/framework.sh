#!/usr/bin/env bash
# bench/framework.sh [N=500000] - the connector framework's own cost per record. Not part of
# `make test`.
#
#   floor:  build/bench/framework_floor N > /dev/null: datagen's events generated, encoded as
#           MessagePack, rendered as the stdout sink's JSON lines and written in batches of 1000,
#           in one thread: the same work with no framework (no strand, no fsync, no cursor).
#   sluice: a stdout sink (strand "bench", start earliest, batch_size 1000; the server's stdout
#           is /dev/null) and a datagen source (pattern orders, seed 42, max_events N, as fast as
#           it can) into that strand: source framework -> strand (group commit) -> sink framework.
#           Once with durability fsync (the default) and once with durability none.
#   null:   the same source into a sink that accepts and drops every batch (bench/null_sink.c,
#           loaded as a plugin: the engine with a fake in-process sink), against a floor that
#           only generates and encodes (framework_floor N gen).
# For each: wall time until the sink has delivered all N, records/s, and CPU time per record
# (utime + stime of the whole process); the framework's cost per record is Sluice's CPU per
# record minus the floor's. Environment: SLUICE_BIN, RESULTS=FILE (raw key=value lines).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"

N=${1:-500000}
[[ $N =~ ^[1-9][0-9]*$ ]] || bench_die "usage: $0 [RECORDS]"
bench_need curl make
PY=/usr/bin/python3

TMP=$(mktemp -d /tmp/sluice-framework.XXXXXX)
RES=$TMP/results.txt
: >"$RES"
SL_PID=
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    [ -z "$SL_PID" ] || bench_stop_pid "$SL_PID" TERM
    if [ -n "${RESULTS:-}" ] && [ -s "$RES" ]; then cp "$RES" "$RESULTS"; fi
    rm -rf "$TMP"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

make -C "$ROOT" build/bench/framework_floor >"$TMP/make.log" 2>&1 || {
    tail -n 8 "$TMP/make.log" >&2
    bench_die "'make build/bench/framework_floor' failed"
}
SLUICE=${SLUICE_BIN:-$ROOT/build/sluice}
if [ -z "${SLUICE_BIN:-}" ]; then
    make -C "$ROOT" build/sluice >"$TMP/make.log" 2>&1 || bench_die "'make build/sluice' failed"
fi
TICK=$(getconf CLK_TCK)

post() { # path json: POST, fail loudly unless 201; prints the id
    local code
    code=$(curl -sS -o "$TMP/post.json" -w '%{http_code}' -H 'Content-Type: application/json' \
        --data-binary "$2" "$SL_URL$1") || code=000
    [ "$code" = 201 ] || bench_die "POST $1 answered $code: $(head -c 300 "$TMP/post.json")"
    sed -E 's/^\{"id":"([^"]+)".*/\1/' "$TMP/post.json"
}

delivered() {
    curl -sS "$SL_URL/v1/connectors/$1" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["stats"]["delivered"])'
}

PLUG=$TMP/plugins
mkdir -p "$PLUG"
cc -std=gnu11 -O2 -shared -fPIC -fvisibility=hidden -I"$ROOT/include" $(pkg-config --cflags jansson) \
    -o "$PLUG/null_sink.so" "$ROOT/bench/null_sink.c" $(pkg-config --libs jansson) ||
    bench_die "cannot build bench/null_sink.c"

bench_log "floor: $N records, one thread, no framework"
t0=$(date +%s%N)
"$ROOT/build/bench/framework_floor" "$N" >/dev/null 2>"$TMP/floor.err"
t1=$(date +%s%N)
echo "test=floor records=$N wall_ns=$((t1 - t0)) cpu_ns=$(sed -E 's/.*floor_ns=([0-9]+).*/\1/' "$TMP/floor.err")" >>"$RES"
tail -n 1 "$RES" >&2
"$ROOT/build/bench/framework_floor" "$N" gen >/dev/null 2>"$TMP/floor.err"
echo "test=floor_gen records=$N cpu_ns=$(sed -E 's/.*floor_ns=([0-9]+).*/\1/' "$TMP/floor.err")" >>"$RES"
tail -n 1 "$RES" >&2

run() { # name durability [sink kind]
    local name=$1 dur=$2 kind=${3:-stdout} sink c0 c1 t0 t1 d
    mkdir -p "$TMP/$name"
    "$SLUICE" serve --data "$TMP/$name/data" --listen 127.0.0.1:0 --durability "$dur" --plugins "$PLUG" \
        </dev/null >/dev/null 2>"$TMP/$name/err" &
    SL_PID=$!
    local line
    line=$(bench_wait_line "$TMP/$name/err" 'listening on 127\.0\.0\.1:[0-9]+' "$SL_PID" 20) ||
        bench_die "Sluice did not start: $(tail -n 5 "$TMP/$name/err")"
    SL_URL=http://127.0.0.1:$(sed -E 's/.*listening on 127\.0\.0\.1:([0-9]+).*/\1/' <<<"$line")
    sink=$(post /v1/connectors "{\"name\":\"out\",\"kind\":\"$kind\",\"strands\":[\"bench\"],\"config\":{\"start\":\"earliest\",\"batch_size\":1000}}")
    c0=$(bench_cpu_ticks "$SL_PID")
    t0=$(date +%s%N)
    post /v1/connectors "{\"name\":\"gen\",\"kind\":\"datagen\",\"config\":{\"pattern\":\"orders\",\"seed\":42,\"events_per_second\":1000000000,\"max_events\":$N,\"strand\":\"bench\"}}" >/dev/null
    while :; do
        d=$(delivered "$sink")
        [ "$d" -ge "$N" ] && break
        [ $(($(date +%s%N) - t0)) -lt 300000000000 ] || bench_die "$name: only $d of $N delivered in 300 s"
        sleep 0.02
    done
    t1=$(date +%s%N)
    c1=$(bench_cpu_ticks "$SL_PID")
    echo "test=$name records=$N wall_ns=$((t1 - t0)) cpu_ns=$(((c1 - c0) * 1000000000 / TICK)) rss_mb=$(bench_peak_rss_mb "$SL_PID")" >>"$RES"
    tail -n 1 "$RES" >&2
    bench_stop_pid "$SL_PID" TERM
    SL_PID=
    rm -rf "$TMP/$name/data"
}

bench_log "sluice: datagen -> strand -> stdout (to /dev/null), durability fsync"
run sluice_fsync fsync
bench_log "sluice: the same, durability none"
run sluice_none none
bench_log "sluice: datagen -> strand -> a sink that drops everything (in-process), durability fsync"
run null_fsync fsync bench_null

REV=$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo '?')
"$PY" - "$RES" "$REV" "$(cut -d' ' -f1-3 /proc/loadavg)" <<'EOF'
import sys
res, rev, load = sys.argv[1:4]
R = {}
for line in open(res):
    kv = dict(p.split("=", 1) for p in line.split() if "=" in p)
    R[kv["test"]] = kv
print()
print(f"== connector framework cost: datagen -> stdout; Sluice {rev}; load average after {load}")
print()
hdr = f"{'run':<44} {'records/s':>11} {'CPU ns/rec':>11} {'framework ns/rec':>17}"
print(hdr)
print("-" * len(hdr))
def per(t):
    return int(R[t]["cpu_ns"]) / int(R[t]["records"])
fcpu, gcpu = per("floor"), per("floor_gen")
for t, label, base in (("floor", "floor: generate + encode + render, no framework", None),
                       ("sluice_fsync", "Sluice -> stdout, durability fsync", fcpu),
                       ("sluice_none", "Sluice -> stdout, durability none", fcpu),
                       ("floor_gen", "floor: generate + encode only", None),
                       ("null_fsync", "Sluice -> in-process null sink, fsync", gcpu)):
    kv = R.get(t)
    if not kv:
        continue
    n = int(kv["records"])
    rate = f"{n / (int(kv['wall_ns']) / 1e9):>11,.0f}" if "wall_ns" in kv else f"{'-':>11}"
    cpu = int(kv["cpu_ns"]) / n
    extra = "" if base is None else f"{cpu - base:>17.0f}"
    print(f"{label:<44} {rate} {cpu:>11.0f} {extra}")
print()
for t, base in (("sluice_fsync", fcpu), ("sluice_none", fcpu), ("null_fsync", gcpu)):
    kv = R.get(t)
    if kv:
        print(f"  {t}: {per(t) / base:.2f}x its floor's CPU per record; peak RSS {kv['rss_mb']} MB")
print("CPU per record is the whole process (HTTP, committer, source and sink threads) over the")
print("run; records/s is creation of the source -> the sink's last delivery (wall clock).")
EOF
