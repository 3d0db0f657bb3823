#!/usr/bin/env bash
# bench/mqtt.sh - the MQTT source against Debian's mosquitto, with mosquitto_sub in the same run
# (bench/mqtt.py says what is timed). Not part of `make test`.
#
#   N (200,000) messages of SIZE (200) bytes published at QoS 1 by PUBS (8) mosquitto_pub
#   processes; messages/s received by mosquitto_sub -q 1 > /dev/null vs messages/s made durable
#   by a Sluice mqtt source (QoS 1, persistent session): ratio Sluice / mosquitto_sub
#
# Environment: N, SIZE, PUBS, INFLIGHT (the broker's max_inflight_messages; unset: mosquitto's
# default, 20), SLUICE_BIN. Needs build/sluice, mosquitto and mosquitto-clients.
# Everything binds to 127.0.0.1; the servers are stopped by PID; temp dirs are removed.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
bench_need mosquitto_pub mosquitto_sub
export SLUICE_BIN=${SLUICE_BIN:-$ROOT/build/sluice}
exec "$PY" "$ROOT/bench/mqtt.py"
