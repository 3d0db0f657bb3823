#!/usr/bin/env bash
# bench/restart.sh [RECORDS=10000000] : restart time of a data directory holding RECORDS records.
# Fills one strand with 200-byte records through POST /v1/records/batch (NDJSON, 10,000 per
# request, durable), kills the server with SIGKILL, then times three restarts: the time from exec
# to "listening on", and the server's own "opened ... in N ms". Also reports the idle RSS after the
# restart and a lookup by hash of the last record. Not part of `make test` (it writes ~3 GB).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
N=${1:-10000000}
[[ $N =~ ^[0-9]+$ ]] || bench_die "usage: $0 [RECORDS]"
BIN=${SLUICE_BIN:-$ROOT/build/sluice}
[ -x "$BIN" ] || make -C "$ROOT" build/sluice >/dev/null
TMP=$(mktemp -d /tmp/sluice-restart.XXXXXX)
PID=
cleanup() {
    [ -z "$PID" ] || bench_stop_pid "$PID" KILL
    rm -rf "$TMP"
}
trap cleanup EXIT

start() {
    : >"$TMP/log"
    local t0
    t0=$(date +%s%N)
    "$BIN" serve --data "$TMP/data" --listen 127.0.0.1:0 --max-body-bytes 8M 2>"$TMP/log" &
    PID=$!
    bench_wait_line "$TMP/log" 'listening on' "$PID" 120 >/dev/null || bench_die "server did not start: $(tail -5 "$TMP/log")"
    START_MS=$((($(date +%s%N) - t0) / 1000000))
    PORT=$(grep -o 'listening on 127.0.0.1:[0-9]*' "$TMP/log" | cut -d: -f2)
}

start
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
last=$(curl -s "127.0.0.1:$PORT/v1/strands/bench/records?from_seq=$((N - 1))&limit=1" | grep -o '"record_hash":"[0-9a-f]*"' | cut -d'"' -f4)
bench_log "filled in $fill_ms ms; SIGKILL"
bench_stop_pid "$PID" KILL
PID=
du_h=$(du -sh "$TMP/data" | cut -f1)
for i in $(seq "${RESTARTS:-3}"); do
    sync
    start
    opened=$(grep -o 'opened .* in [0-9]* ms' "$TMP/log" | head -1)
    rss=$(awk '/VmRSS/ {print $2}' "/proc/$PID/status")
    got=$(curl -s -o /dev/null -w '%{http_code}' "127.0.0.1:$PORT/v1/records/$last")
    echo "restart $i: exec→listening ${START_MS} ms; server: ${opened}; idle RSS ${rss} kB; lookup of the last hash: HTTP $got"
    [ -z "${SMAPS:-}" ] || awk '/^[0-9a-f]+-/ {name=$6} /^Rss:/ && $2 > 1024 {print "  rss " $2 " kB " name}' "/proc/$PID/smaps"
    bench_stop_pid "$PID" KILL
    PID=
done
echo "records=$N data=$du_h fill_ms=$fill_ms ($((N * 1000 / (fill_ms + 1))) records/s through 10k-record NDJSON batches)"
