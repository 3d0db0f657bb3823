# bench/lib.sh - helpers shared by the bench/ scripts. Source it; it defines functions only.
# shellcheck shell=bash

# shellcheck source=tests/peers/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../tests/peers/lib.sh"

PY=/usr/bin/python3 # Debian's python3; only the standard library is used
[ -x "$PY" ] || PY=python3

bench_log() { printf '[bench %s] %s\n' "$(date +%T)" "$*" >&2; }
bench_die() {
    printf 'bench: %s\n' "$*" >&2
    exit 1
}

# bench_need CMD...: fail early, naming the Debian package, if a tool is missing.
bench_need() {
    local c missing=
    for c in "$@"; do
        command -v "$c" >/dev/null 2>&1 || missing="$missing $c"
    done
    [ -z "$missing" ] || bench_die "missing tools:$missing (make deps, or apt-get install wrk postgresql-15 postgresql-client-15 curl)"
}

# A free TCP port on 127.0.0.1 (the kernel picks it; a tiny race before the server binds it).
bench_free_port() {
    "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# bench_kv LINE KEY: the value of KEY=value in a line of space-separated pairs (empty if absent).
bench_kv() {
    local kv
    for kv in $1; do
        [ "${kv%%=*}" = "$2" ] && {
            echo "${kv#*=}"
            return 0
        }
    done
    return 0
}

# bench_alive PID: running and not a zombie (tests/peers/lib.sh).
bench_alive() { alive "$1"; }

# bench_stop_pid PID [SIGNAL=TERM]: signal, wait up to 15 s, then SIGKILL. Only ever our own PIDs.
# Sets BENCH_STOP_STATUS to the exit status when PID is a child of this shell (else empty).
BENCH_STOP_STATUS=
bench_stop_pid() {
    local pid=$1 sig=${2:-TERM} i
    BENCH_STOP_STATUS=
    if bench_alive "$pid"; then
        kill "-$sig" "$pid" 2>/dev/null || true
        for ((i = 0; i < 150; i++)); do
            bench_alive "$pid" || break
            sleep 0.1
        done
        if bench_alive "$pid"; then
            bench_log "pid $pid did not exit 15 s after SIG$sig: SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    wait "$pid" 2>/dev/null && BENCH_STOP_STATUS=0 || BENCH_STOP_STATUS=$?
    [ "$BENCH_STOP_STATUS" != 127 ] || BENCH_STOP_STATUS= # not our child
    return 0
}

# bench_wait_line FILE REGEX PID SECONDS: wait until FILE has a line matching REGEX (printed), while
# PID lives. Returns 1 on timeout or if PID died.
bench_wait_line() {
    local f=$1 re=$2 pid=$3 secs=$4 i line
    for ((i = 0; i < secs * 20; i++)); do
        line=$(grep -E -m1 "$re" "$f" 2>/dev/null || true)
        if [ -n "$line" ]; then
            echo "$line"
            return 0
        fi
        bench_alive "$pid" || return 1
        sleep 0.05
    done
    return 1
}

# bench_cpu_ticks PID: user+system CPU time of a process in clock ticks (fields 14 and 15).
bench_cpu_ticks() {
    awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat" 2>/dev/null || echo 0
}

# bench_peak_rss_mb PID: VmHWM in MB.
bench_peak_rss_mb() {
    awk '/^VmHWM:/ { printf "%.0f", $2 / 1024 }' "/proc/$1/status" 2>/dev/null || echo 0
}

# bench_pgbench_latency LOGFILE...: per-transaction latency percentiles from pgbench --log files
# (third column = transaction time in microseconds; "failed" lines are skipped). Nearest-rank
# method over every transaction, no sampling. Prints "lat_n=N p50_us=.. p90_us=.. p99_us=..
# p999_us=.. max_us=..".
bench_pgbench_latency() {
    "$PY" - "$@" <<'EOF'
import math, sys
v = []
for name in sys.argv[1:]:
    with open(name) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3 and parts[2].isdigit():
                v.append(int(parts[2]))
v.sort()
def pct(p):
    return v[max(0, math.ceil(p / 100 * len(v)) - 1)] if v else 0
print("lat_n=%d p50_us=%d p90_us=%d p99_us=%d p999_us=%d max_us=%d"
      % (len(v), pct(50), pct(90), pct(99), pct(99.9), v[-1] if v else 0))
EOF
}

# bench_fdatasync_rate DIR [SECONDS=1]: append 256 B + fdatasync in a loop on DIR's disk (the
# PERF-ANCHORS A1 shape). Prints "fdatasync_per_s=.. fdatasync_p50_us=.. fdatasync_p99_us=..".
bench_fdatasync_rate() {
    "$PY" - "$1" "${2:-1}" <<'EOF'
import os, sys, time
path = os.path.join(sys.argv[1], "fdatasync.probe")
secs = float(sys.argv[2])
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)
buf = b"x" * 256
lat = []
end = time.perf_counter() + secs
t0 = time.perf_counter()
while True:
    a = time.perf_counter()
    if a >= end:
        break
    os.write(fd, buf)
    os.fdatasync(fd)
    lat.append(time.perf_counter() - a)
total = time.perf_counter() - t0
os.close(fd)
os.unlink(path)
lat.sort()
print("fdatasync_per_s=%.0f fdatasync_p50_us=%.0f fdatasync_p99_us=%.0f"
      % (len(lat) / total, lat[len(lat) // 2] * 1e6, lat[int(len(lat) * 0.99)] * 1e6))
EOF
}

# bench_start_sluice BIN DIR [serve options...]: starts `BIN serve --data DIR/data --listen
# 127.0.0.1:0 OPTIONS` (stdout/stderr in DIR/sluice.out, DIR/sluice.err), waits for "listening on".
# Sets SL_PID, SL_PORT, SL_URL. On failure prints the stderr tail and returns 1 (SL_PID stays set,
# so the caller can stop it). A DIR/data left by an earlier run is set aside, not deleted: on a
# file system mounted with `discard` (this machine's), deleting a batch run's gigabytes issues
# TRIMs that slow the next run's syncs (measured: a single-record p99 of 19 ms instead of 5 ms).
bench_start_sluice() {
    local bin=$1 dir=$2 line
    shift 2
    [ ! -d "$dir/data" ] || mv "$dir/data" "$dir/old-data.$RANDOM$RANDOM"
    # removed first: the child truncates them only after the fork, and a previous run's
    # "listening on" line read in that window would give the old port
    rm -f "$dir/sluice.out" "$dir/sluice.err"
    "$bin" serve --data "$dir/data" --listen 127.0.0.1:0 "$@" </dev/null >"$dir/sluice.out" 2>"$dir/sluice.err" &
    SL_PID=$!
    if ! line=$(bench_wait_line "$dir/sluice.err" 'listening on 127\.0\.0\.1:[0-9]+' "$SL_PID" 20); then
        bench_log "Sluice did not report 'listening on' within 20 s. Its stderr:"
        tail -n 20 "$dir/sluice.err" >&2
        return 1
    fi
    # shellcheck disable=SC2034 # SL_PORT and SL_URL are for the calling script
    SL_PORT=$(sed -E 's/.*listening on 127\.0\.0\.1:([0-9]+).*/\1/' <<<"$line")
    # shellcheck disable=SC2034
    SL_URL=http://127.0.0.1:$SL_PORT
}

# bench_stop_sluice DIR: SIGTERM the server started by bench_start_sluice, set its data aside.
bench_stop_sluice() {
    [ -z "${SL_PID:-}" ] || bench_stop_pid "$SL_PID" TERM
    SL_PID=
    [ ! -d "$1/data" ] || mv "$1/data" "$1/old-data.$RANDOM$RANDOM"
}
