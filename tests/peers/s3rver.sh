#!/usr/bin/env bash
# s3rver.sh - a throwaway fake S3 server for integration tests (npm @20minutes/s3rver, which checks
# AWS SigV4 signatures: a request signed with a wrong secret or an unknown key gets 403).
#
#   tests/peers/s3rver.sh start DIR [ACCESS_KEY SECRET]   start a server with its data in DIR
#   tests/peers/s3rver.sh stop DIR                        stop it (SIGTERM, SIGKILL after 10 s), remove DIR
#
# The server listens on 127.0.0.1 on an ephemeral port, path-style only, with the bucket
# `sluice-test` created. Credentials default to AKIAIOSFODNN7EXAMPLE /
# wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY; only that key pair is accepted. Note that, like the
# original s3rver, it also accepts requests with no Authorization header at all: a test can prove
# that Sluice's signatures are right (a wrong secret is refused), not that it signs.
#
# `start` prints nothing on success. DIR/env then holds KEY=VALUE lines (S3_ENDPOINT, S3_BUCKET,
# S3_ACCESS_KEY, S3_SECRET_KEY, S3_REGION) that a shell can source and Python can split on the
# first '='; DIR/pid holds the server's PID, DIR/server.log its log, DIR/data the objects.
# On failure it prints the reason (and the log tail) to stderr, removes DIR and exits 1.
#
# The npm package is installed on first use into ${SLUICE_NODE_DIR:-<repo>/build/node}, shared by
# all runs (scripts/install-deps.sh does the same ahead of time). Only the npm registry is needed.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
# shellcheck source=tests/peers/lib.sh
. "$HERE/lib.sh"
NODE_DIR=${SLUICE_NODE_DIR:-$ROOT/build/node}
PKG=@20minutes/s3rver
VERSION=4.0.4
BUCKET=sluice-test
REGION=us-east-1
MARKER=.sluice-s3rver # written first by `start`; `stop` refuses to remove a directory without it
START_TIMEOUT=20      # seconds for the server to print its port
STOP_TIMEOUT=10       # seconds between SIGTERM and SIGKILL
INSTALL_TIMEOUT=300   # seconds for npm install

die() {
    echo "s3rver.sh: $*" >&2
    exit 1
}

installed() {
    grep -E "\"version\": *\"$VERSION\"" "$NODE_DIR/node_modules/$PKG/package.json" >/dev/null 2>&1
}

# Install the pinned package into NODE_DIR unless it is there; a lock keeps parallel runs apart.
ensure_package() {
    installed && return 0
    command -v node >/dev/null || die "node is not installed (run scripts/install-deps.sh as root)"
    command -v npm >/dev/null || die "npm is not installed (run scripts/install-deps.sh as root)"
    mkdir -p "$NODE_DIR"
    (
        flock -w "$INSTALL_TIMEOUT" 9 || die "timed out waiting for another npm install in $NODE_DIR"
        installed && exit 0
        cd "$NODE_DIR"
        [ -f package.json ] || echo '{"name":"sluice-test-peers","version":"0.0.0","private":true}' >package.json
        # Bounded retries: an unreachable registry fails in seconds, not minutes.
        if ! timeout "$INSTALL_TIMEOUT" npm install --no-audit --no-fund --prefer-offline --loglevel=error \
            --fetch-retries=2 --fetch-retry-mintimeout=1000 --fetch-retry-maxtimeout=4000 \
            --fetch-timeout=60000 "$PKG@$VERSION" </dev/null >npm-install.log 2>&1; then
            echo "s3rver.sh: npm install $PKG@$VERSION failed in $NODE_DIR (is the npm registry reachable?):" >&2
            grep -v "^npm error  *at " npm-install.log | head -n 5 >&2
            exit 1
        fi
        installed || die "npm install finished but $NODE_DIR/node_modules/$PKG is not version $VERSION"
    ) 9>>"$NODE_DIR/.install.lock"
}

# The PID in DIR/pid if that process is alive and is our launcher (guards against PID reuse).
live_pid() {
    local pid
    pid=$(cat "$1/pid" 2>/dev/null) || return 0
    [[ $pid =~ ^[0-9]+$ ]] || return 0
    alive "$pid" || return 0
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep 's3rver-cli\.js' >/dev/null && echo "$pid"
    return 0
}


stop_server() {
    local pid i
    pid=$(live_pid "$1")
    [ -n "$pid" ] || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < STOP_TIMEOUT * 20; i++)); do
        alive "$pid" || return 0
        sleep 0.05
    done
    echo "s3rver.sh: server $pid did not stop in ${STOP_TIMEOUT}s, sending SIGKILL" >&2
    kill -KILL "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        alive "$pid" || return 0
        sleep 0.05
    done
}

START_DIR=
on_start_exit() {
    local rc=$1 d=$START_DIR
    [ "$rc" != 0 ] && [ -n "$d" ] || return 0
    if [ -s "$d/server.log" ]; then
        echo "---- last lines of $d/server.log" >&2
        tail -n 20 "$d/server.log" >&2
    fi
    stop_server "$d"
    rm -rf "$d"
}

cmd_start() {
    local d=$1 key=${2:-AKIAIOSFODNN7EXAMPLE} secret=${3:-wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY}
    local pid port i code
    if [ -z "$key" ] || [ -z "$secret" ]; then die "ACCESS_KEY and SECRET must not be empty"; fi
    mkdir -p "$d"
    d=$(cd "$d" && pwd)
    if [ -e "$d/pid" ] || [ -e "$d/$MARKER" ]; then die "$d already holds a server (run: $0 stop $d)"; fi
    : >"$d/$MARKER"
    # Any failure from here on: report, clean up, exit 1.
    START_DIR=$d # global: an errexit exit runs the trap outside this function's locals
    trap 'on_start_exit $?' EXIT

    ensure_package
    # The launcher runs in place; it finds the package through SLUICE_NODE_DIR. Credentials go
    # through the environment so they do not show in ps.
    : >"$d/server.log" # exists before the fork: the child opens it only after starting
    S3RVER_ACCESS_KEY=$key S3RVER_SECRET_KEY=$secret SLUICE_NODE_DIR=$NODE_DIR \
        node "$HERE/s3rver-cli.js" --dir "$d/data" --address 127.0.0.1 --port 0 --bucket "$BUCKET" \
        </dev/null >"$d/server.log" 2>&1 &
    pid=$!
    echo "$pid" >"$d/pid"
    port=
    for ((i = 0; i < START_TIMEOUT * 20; i++)); do
        port=$(sed -n 's/^PORT \([0-9][0-9]*\)$/\1/p' "$d/server.log")
        [ -n "$port" ] && break
        alive "$pid" || die "the server exited before listening"
        sleep 0.05
    done
    [ -n "$port" ] || die "the server did not report a port within ${START_TIMEOUT}s"
    # It printed the port once listening; one request proves it answers HTTP.
    code=$(curl -s -o /dev/null -m 5 -w '%{http_code}' "http://127.0.0.1:$port/") || true
    if [ -z "$code" ] || [ "$code" = 000 ]; then die "no HTTP answer from 127.0.0.1:$port"; fi
    printf 'S3_ENDPOINT=http://127.0.0.1:%s\nS3_BUCKET=%s\nS3_ACCESS_KEY=%s\nS3_SECRET_KEY=%s\nS3_REGION=%s\n' \
        "$port" "$BUCKET" "$key" "$secret" "$REGION" >"$d/env.tmp"
    mv "$d/env.tmp" "$d/env"
    trap - EXIT
}

cmd_stop() {
    local d
    [ -e "$1" ] || return 0
    d=$(cd "$1" && pwd)
    [ -e "$d/$MARKER" ] || die "refusing to remove $d: it was not made by s3rver.sh start"
    stop_server "$d"
    rm -rf "$d"
}

case ${1:-}:${2:-} in
start:?*) shift && cmd_start "$@" ;;
stop:?*) cmd_stop "$2" ;;
*)
    echo "usage: $0 start DIR [ACCESS_KEY SECRET] | stop DIR" >&2
    exit 2
    ;;
esac
