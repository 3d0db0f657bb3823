#!/usr/bin/env bash
# bench/kafka.sh - the Kafka connectors against librdkafka's mock cluster, with kcat in the same
# run (bench/kafka.py says what is timed). Not part of `make test`.
#
#   source: N (1,000,000) messages of SIZE (200) bytes pre-produced; kcat -C -e | wc -l vs
#           a Sluice kafka source into a durable strand: ratio kcat time / Sluice time
#           and kcat -G (a consumer group, the same first join as Sluice's) like for like
#   source: also a Sluice kafka source with assignment all (no group join, as kcat -C)
#   sink:   the same payloads in a strand; kcat -P of the file vs a Sluice kafka_sink (and kcat
#           -P -K -H with the key and headers the sink produces, like for like)
#
# Environment: N, SIZE, PARTS (128: the mock cluster keeps only 5 MiB per partition), IDEMPOTENT (1: the sink is idempotent), SLUICE_BIN.
# Needs build/sluice and build/tests/peers/kafka_mock (make all unit-tests) and kcat.
# Everything binds to 127.0.0.1; the servers are stopped by PID; temp dirs are removed.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
bench_need kcat
[ -x "$ROOT/build/tests/peers/kafka_mock" ] || make -C "$ROOT" --no-print-directory build/tests/peers/kafka_mock >/dev/null
export SLUICE_BIN=${SLUICE_BIN:-$ROOT/build/sluice}
exec "$PY" "$ROOT/bench/kafka.py"
