#!/usr/bin/env bash
# mariadb.sh - a throwaway MariaDB (Debian's mariadb-server) for the mysql-cdc tests and benchmark.
#
#   tests/peers/mariadb.sh start DIR [--option=value ...]  a new server in DIR (extra mariadbd options)
#   tests/peers/mariadb.sh restart DIR                      stop it (SIGTERM) and start it again
#   tests/peers/mariadb.sh halt DIR                         stop it, keep DIR (restart starts it again)
#   tests/peers/mariadb.sh stop DIR                         stop it (SIGTERM, SIGKILL after 15 s), remove DIR
#
# The server listens on 127.0.0.1 only, on a free ephemeral port, with its socket in DIR, a ROW
# binlog (binlog_row_image FULL, binlog_row_metadata FULL) and server_id 1. Extra options are
# appended to mariadbd's command line (later options win: --binlog-format=STATEMENT). A TCP user
# sluice / sluicepw with every privilege exists; root uses the socket.
#
# On success `start` prints the path DIR/env (KEY=VALUE lines: MY_PORT, MY_SOCKET, MY_USER,
# MY_PASSWORD) and nothing else; DIR/pid holds mariadbd's PID, DIR/error.log its log. On failure it
# prints the reason and the tail of the log to stderr, removes DIR and exits 1.
# Runs as root (mariadbd then runs as the `mysql` user: it refuses root) or as the owner of DIR.
set -euo pipefail
# shellcheck source=tests/peers/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

MARKER=.sluice-mariadb
START_TIMEOUT=30
STOP_TIMEOUT=15

die() {
    echo "mariadb.sh: $*" >&2
    exit 1
}

as_my() {
    if [ "$(id -u)" = 0 ]; then runuser -u mysql -- "$@"; else "$@"; fi
}

free_port() {
    local py=/usr/bin/python3
    [ -x $py ] || py=python3
    $py -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

client() {
    mariadb --no-defaults --socket="$1/mysqld.sock" -uroot "${@:2}"
}

launch() {
    local d=$1 port
    port=$(sed -n 's/^MY_PORT=//p' "$d/env")
    local args=(/usr/sbin/mariadbd --no-defaults --datadir="$d/data" --bind-address=127.0.0.1
        --port="$port" --socket="$d/mysqld.sock" --pid-file="$d/mysqld.pid" --log-error="$d/error.log"
        --server-id=1 --log-bin="$d/data/binlog" --binlog-format=ROW --binlog-row-image=FULL
        --binlog-row-metadata=FULL --skip-name-resolve --innodb-buffer-pool-size=32M
        --innodb-log-file-size=16M --max-allowed-packet=64M)
    # shellcheck disable=SC2207
    args+=($(cat "$d/options" 2>/dev/null || true))
    if [ "$(id -u)" = 0 ]; then
        setpriv --reuid=mysql --regid=mysql --init-groups "${args[@]}" </dev/null >>"$d/stdout.log" 2>&1 &
    else
        "${args[@]}" </dev/null >>"$d/stdout.log" 2>&1 &
    fi
    echo $! >"$d/pid"
    local pid=$! i
    for ((i = 0; i < START_TIMEOUT * 10; i++)); do
        if client "$d" -e 'SELECT 1' >/dev/null 2>&1; then return 0; fi
        alive "$pid" || break
        sleep 0.1
    done
    echo "mariadb.sh: mariadbd did not start; log tail:" >&2
    tail -20 "$d/error.log" >&2 || true
    return 1
}

stop_server() {
    local d=$1 pid i
    [ -s "$d/pid" ] || return 0
    pid=$(cat "$d/pid")
    alive "$pid" || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < STOP_TIMEOUT * 10; i++)); do
        alive "$pid" || return 0
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
}

cmd_start() {
    local d=$1
    shift
    [ -d "$d" ] || mkdir -p "$d"
    touch "$d/$MARKER"
    [ "$(id -u)" = 0 ] && chown mysql: "$d"
    printf '%s\n' "$@" >"$d/options"
    printf 'MY_PORT=%s\nMY_SOCKET=%s\nMY_USER=sluice\nMY_PASSWORD=sluicepw\n' "$(free_port)" \
        "$d/mysqld.sock" >"$d/env"
    if ! as_my mariadb-install-db --no-defaults --datadir="$d/data" \
        --auth-root-authentication-method=socket --skip-test-db >"$d/install.log" 2>&1; then
        tail -20 "$d/install.log" >&2
        rm -rf "$d"
        die "mariadb-install-db failed"
    fi
    if ! launch "$d"; then
        stop_server "$d"
        rm -rf "$d"
        exit 1
    fi
    client "$d" -e "CREATE USER 'sluice'@'127.0.0.1' IDENTIFIED BY 'sluicepw';
        GRANT ALL ON *.* TO 'sluice'@'127.0.0.1' WITH GRANT OPTION;"
    echo "$d/env"
}

cmd_restart() {
    local d=$1
    [ -f "$d/$MARKER" ] || die "$d is not a mariadb.sh directory"
    stop_server "$d"
    launch "$d" || exit 1
}

cmd_halt() {
    local d=$1
    [ -f "$d/$MARKER" ] || die "$d is not a mariadb.sh directory"
    stop_server "$d"
}

cmd_stop() {
    local d=$1
    [ -f "$d/$MARKER" ] || die "$d is not a mariadb.sh directory"
    stop_server "$d"
    rm -rf "$d"
}

case "${1:-}" in
start) shift; [ $# -ge 1 ] || die "usage: start DIR [options]"; cmd_start "$@" ;;
restart) [ $# -eq 2 ] || die "usage: restart DIR"; cmd_restart "$2" ;;
stop) [ $# -eq 2 ] || die "usage: stop DIR"; cmd_stop "$2" ;;
halt) [ $# -eq 2 ] || die "usage: halt DIR"; cmd_halt "$2" ;;
*) die "usage: mariadb.sh start|restart|halt|stop DIR" ;;
esac
