# tests/peers/lib.sh - shell functions shared by the test peers (pg.sh, s3rver.sh) and bench/.
# Source it; it defines functions only.
# shellcheck shell=bash

# alive PID: running and not a zombie (a server reparented to PID 1 may be reaped seconds late,
# and kill -0 succeeds on a zombie).
alive() {
    local st
    st=$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' "/proc/$1/status" 2>/dev/null) || return 1
    [ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]
}
