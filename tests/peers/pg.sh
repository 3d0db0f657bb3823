#!/usr/bin/env bash
# pg.sh - a throwaway PostgreSQL 15 for integration tests and benchmarks.
#
#   tests/peers/pg.sh start DIR [NAME=VALUE ...]   start a new cluster in DIR
#   tests/peers/pg.sh restart DIR [fast|immediate] stop and start it again, same data and port
#   tests/peers/pg.sh stop DIR                     stop it (SIGINT, SIGKILL after 15 s), remove DIR
#
# The server listens on 127.0.0.1 only, on a free ephemeral port, with its unix socket in DIR.
# It is durable (fsync=on, synchronous_commit=on) and has wal_level=logical so CDC tests can create
# replication slots. NAME=VALUE arguments are appended to postgresql.conf (e.g. shared_buffers=1GB).
#
# On success `start` prints the path DIR/env and nothing else. DIR/env holds four KEY=VALUE lines
# (PGHOST, PGPORT, PGUSER, PGDATABASE) that a shell can source (`set -a; . DIR/env; set +a`) and
# Python can split on '='; DIR/pid holds the postmaster's PID, DIR/server.log its log. On failure
# it prints the reason and the tail of the server log to stderr, removes DIR and exits 1.
#
# Runs as root (the server then runs as the `postgres` user: initdb refuses root) or as a non-root
# user who owns DIR. DIR must be short: a unix socket path is limited to 107 bytes.
# Environment: PG_PORT=N forces the port (default: a free one, retried if taken before the bind);
# PGBIN (default /usr/lib/postgresql/15/bin).
set -euo pipefail
# shellcheck source=tests/peers/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
MARKER=.sluice-pg # written first by `start`; `stop` refuses to remove a directory without it
START_TIMEOUT=30  # seconds for pg_ctl -w, then for the pg_isready loop
STOP_TIMEOUT=15   # seconds between SIGINT and SIGKILL

die() {
    echo "pg.sh: $*" >&2
    exit 1
}

# One-shot commands as the server's user. (runuser is fine for commands that exit; long-running
# servers are started by pg_ctl, which detaches them into their own session.)
as_pg() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

free_port() {
    local py=/usr/bin/python3
    [ -x $py ] || py=python3
    $py - <<'EOF' 2>/dev/null || echo $((20000 + RANDOM % 30000))
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
EOF
}

# The postmaster's PID if it is alive and serves DIR/data (guards against PID reuse), else nothing.
live_pid() {
    local d=$1 pid=
    if [ -s "$d/pid" ]; then
        pid=$(cat "$d/pid")
    elif [ -s "$d/data/postmaster.pid" ]; then
        pid=$(head -1 "$d/data/postmaster.pid")
    fi
    [ -n "$pid" ] && alive "$pid" || return 0
    [ "$(readlink "/proc/$pid/cwd" 2>/dev/null)" = "$d/data" ] && echo "$pid"
    return 0
}


# stop_server DIR SIGNAL: SIGINT = fast shutdown, SIGQUIT = immediate. SIGKILL after STOP_TIMEOUT.
stop_server() {
    local d=$1 sig=$2 pid i
    pid=$(live_pid "$d")
    [ -n "$pid" ] || return 0
    kill "-$sig" "$pid" 2>/dev/null || true
    for ((i = 0; i < STOP_TIMEOUT * 10; i++)); do
        alive "$pid" || return 0
        sleep 0.1
    done
    echo "pg.sh: postmaster $pid did not stop in ${STOP_TIMEOUT}s, sending SIGKILL" >&2
    kill -KILL "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        alive "$pid" || return 0
        sleep 0.1
    done
}

log_tail() {
    local f logs="$1/pg_ctl.log $1/server.log"
    [ -s "$1/server.log" ] || logs="$1/initdb.log"
    for f in $logs; do
        [ -s "$f" ] || continue
        echo "---- last lines of $f" >&2
        tail -n 25 "$f" >&2
    done
}

# Start the postmaster on $port; 0 = ready, 1 = failed, 2 = port already taken (try another).
launch() {
    local d=$1 port=$2 i
    : >"$d/server.log" && chown --reference="$d" "$d/server.log"
    if ! as_pg "$PGBIN/pg_ctl" -D "$d/data" -l "$d/server.log" -o "-p $port" -w \
        -t "$START_TIMEOUT" start </dev/null >"$d/pg_ctl.log" 2>&1; then
        stop_server "$d" KILL
        if grep -E 'could not bind|Address already in use|could not create any TCP/IP sockets' \
            "$d/server.log" >/dev/null 2>&1; then
            return 2
        fi
        return 1
    fi
    head -1 "$d/data/postmaster.pid" >"$d/pid"
    for ((i = 0; i < START_TIMEOUT * 5; i++)); do
        if "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$port" -U postgres -d postgres -t 1 >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.2
    done
    echo "pg.sh: server started but pg_isready never answered on 127.0.0.1:$port" >&2
    return 1
}

write_env() {
    local d=$1 port=$2
    printf 'PGHOST=127.0.0.1\nPGPORT=%s\nPGUSER=postgres\nPGDATABASE=postgres\n' "$port" >"$d/env.tmp"
    mv "$d/env.tmp" "$d/env"
}

cmd_start() {
    local d=$1 kv port attempt rc
    shift
    [ -x "$PGBIN/initdb" ] || die "no $PGBIN/initdb (apt-get install postgresql-15)"
    mkdir -p "$d"
    d=$(cd "$d" && pwd)
    [ ! -e "$d/data" ] || die "$d already holds a cluster (run: $0 stop $d)"
    [ ${#d} -le 90 ] || die "DIR is too long for a unix socket path (${#d} > 90 bytes): $d"
    for kv in "$@"; do
        [[ $kv =~ ^[a-z_.]+=.*$ ]] || die "bad setting '$kv' (want name=value)"
    done
    : >"$d/$MARKER"
    if [ "$(id -u)" = 0 ]; then
        chown postgres: "$d" "$d/$MARKER"
        chmod 755 "$d"
        as_pg test -w "$d" || die "user postgres cannot write to $d (is a parent directory private?)"
    fi
    # Any failure from here on: report, clean up, exit 1. The trap uses a global: when it runs
    # after an error inside this function, the local d may already be gone (set -u aborts it).
    PG_START_DIR=$d
    trap 'rc=$?; if [ $rc != 0 ]; then log_tail "$PG_START_DIR"; stop_server "$PG_START_DIR" KILL; rm -rf "$PG_START_DIR"; fi' EXIT

    if ! as_pg "$PGBIN/initdb" -D "$d/data" -U postgres -A trust --no-sync -E UTF8 --locale=C \
        </dev/null >"$d/initdb.log" 2>&1; then
        die "initdb failed"
    fi
    {
        echo "# --- pg.sh"
        echo "listen_addresses = '127.0.0.1'"
        echo "unix_socket_directories = '$d'"
        echo "wal_level = logical"
        echo "max_replication_slots = 20"
        echo "max_wal_senders = 20"
        echo "fsync = on"
        echo "synchronous_commit = on"
        echo "full_page_writes = on"
        echo "logging_collector = off"
        # Debian's 15.19+ updates only allow whitelisted logical decoding plugins; an older 15.x
        # refuses to start if the setting is present. (Not grep -q: with pipefail its early exit
        # SIGPIPEs postgres.)
        if as_pg "$PGBIN/postgres" --describe-config 2>/dev/null |
            grep '^output_plugin_libraries' >/dev/null; then
            if [ -e "$("$PGBIN/pg_config" --pkglibdir 2>/dev/null)/wal2json.so" ]; then
                echo "output_plugin_libraries = 'pgoutput, test_decoding, wal2json'"
            fi
        fi
        for kv in "$@"; do
            echo "${kv%%=*} = '${kv#*=}'"
        done
    } >>"$d/data/postgresql.conf"

    for attempt in 1 2 3 4 5; do
        port=${PG_PORT:-$(free_port)}
        rc=0
        launch "$d" "$port" || rc=$?
        if [ $rc = 0 ]; then
            echo "port = $port" >>"$d/data/postgresql.conf" # so a plain pg_ctl restart keeps it
            write_env "$d" "$port"
            trap - EXIT
            echo "$d/env"
            return 0
        fi
        if [ $rc != 2 ] || [ -n "${PG_PORT:-}" ]; then
            die "PostgreSQL did not start (attempt $attempt, port $port)"
        fi
    done
    die "PostgreSQL did not start: no free port after 5 attempts"
}

cmd_restart() {
    local d mode=${2:-fast} port
    d=$(cd "$1" 2>/dev/null && pwd) || die "no such directory: $1"
    if [ ! -e "$d/$MARKER" ] || [ ! -s "$d/env" ]; then
        die "$d was not made by pg.sh start"
    fi
    port=$(sed -n 's/^PGPORT=//p' "$d/env")
    case $mode in
    fast) stop_server "$d" INT ;;
    immediate) stop_server "$d" QUIT ;;
    *) die "restart mode must be fast or immediate" ;;
    esac
    rm -f "$d/pid"
    if ! launch "$d" "$port"; then
        log_tail "$d"
        die "PostgreSQL did not restart on port $port"
    fi
}

cmd_stop() {
    local d
    [ -e "$1" ] || return 0
    d=$(cd "$1" && pwd)
    [ -e "$d/$MARKER" ] || die "refusing to remove $d: it was not made by pg.sh start"
    stop_server "$d" INT
    rm -rf "$d"
}

case ${1:-}:${2:-} in
start:?*) shift && cmd_start "$@" ;;
restart:?*) shift && cmd_restart "$@" ;;
stop:?*) cmd_stop "$2" ;;
*)
    echo "usage: $0 start DIR [name=value ...] | restart DIR [fast|immediate] | stop DIR" >&2
    exit 2
    ;;
esac
