#!/usr/bin/env bash
# Runs every test layer and ends with "N passed, N failed".
# Every test program prints one line per check: "ok - <what>" or "not ok - <what>".
# A program that exits non-zero without printing a "not ok" line counts as one failure.
set -u
cd "$(dirname "$0")/.."
export SLUICE_BIN="$PWD/build/sluice"
PY=/usr/bin/python3 # Debian's python3 (has python3-msgpack), not a pyenv shim
passed=0
failed=0
LOG=build/test-logs
mkdir -p "$LOG"

tally() { # name, log file, exit status, seconds
    local name=$1 out=$2 rc=$3 secs=$4
    local ok nok
    ok=$(grep -c '^ok - ' "$out")
    nok=$(grep -c '^not ok - ' "$out")
    if [ "$rc" != 0 ] && [ "$nok" = 0 ]; then
        nok=1
        echo "not ok - $name exited with status $rc" >>"$out"
    fi
    passed=$((passed + ok))
    failed=$((failed + nok))
    printf '%-48s %4d passed %3d failed  (%ds)\n' "$name" "$ok" "$nok" "$secs"
    if [ "$nok" != 0 ]; then
        grep '^not ok - ' "$out" | head -20 | sed 's/^/    /'
        echo "    (full log: $out)"
    fi
}
logname() { echo "$LOG/$(echo "$1" | tr '/ ' '__').log"; }

run_one() { # name, command...
    local name=$1
    shift
    local out t0=$SECONDS
    out=$(logname "$name")
    "$@" >"$out" 2>&1
    tally "$name" "$out" $? $((SECONDS - t0))
}

format_check() {
    if make --no-print-directory format-check >/dev/null 2>&1; then
        echo "ok - clang-format clean"
    else
        echo "not ok - clang-format: run 'make format'"
        make --no-print-directory format-check 2>&1 | head -20
    fi
}

run_one "format" format_check

config_doc_check() {
    if ./build/sluice config-doc | diff -q - docs/configuration.md >/dev/null; then
        echo "ok - docs/configuration.md matches the option table"
    else
        echo "not ok - docs/configuration.md is stale: ./build/sluice config-doc > docs/configuration.md"
    fi
}
run_one "config-doc" config_doc_check

kinds_doc_check() {
    if ./build/sluice connectors --markdown | diff -q - docs/connector-kinds.md >/dev/null; then
        echo "ok - docs/connector-kinds.md matches the connectors' field tables"
    else
        echo "not ok - docs/connector-kinds.md is stale: ./build/sluice connectors --markdown > docs/connector-kinds.md"
    fi
}
run_one "connector-kinds-doc" kinds_doc_check

for t in build/tests/test_*; do
    [ -x "$t" ] && run_one "unit/$(basename "$t")" "$t"
done
for t in build/san/tests/test_*; do
    [ -x "$t" ] && run_one "unit-asan/$(basename "$t")" "$t"
done
# Component tests: the engine in-process with fake connectors and a fake clock.
for t in build/tests/component/test_*; do
    [ -x "$t" ] && run_one "component/$(basename "$t")" "$t"
done
for t in build/san/tests/component/test_*; do
    [ -x "$t" ] && run_one "component-asan/$(basename "$t")" "$t"
done

# Fuzz targets: replay the seed corpus, then fuzz briefly (long runs: fuzz/README.md).
# Each target is one CPU-bound process, so they run one per CPU at a time: each gets the
# same fuzzing time as alone, and the layer takes a CPU count's fraction of the wall time.
fuzz_one() { # target
    local f=$1 n tmp
    n=$(basename "$f")
    tmp=$(mktemp -d)
    if "$f" -max_total_time="${SLUICE_FUZZ_SECONDS:-10}" -rss_limit_mb=2048 -artifact_prefix="$tmp/" "$tmp" "fuzz/corpus/$n" >"$tmp/log" 2>&1; then
        echo "ok - $n: seed corpus and ${SLUICE_FUZZ_SECONDS:-10}s of fuzzing without a crash"
    else
        echo "not ok - $n found a crash (input kept in $LOG/):"
        cp "$tmp"/crash-* "$tmp"/leak-* "$tmp"/timeout-* "$LOG/" 2>/dev/null
        tail -40 "$tmp/log"
    fi
    rm -rf "$tmp"
}
fuzz_jobs=$(nproc 2>/dev/null || echo 1)
[ "$fuzz_jobs" -gt 4 ] && fuzz_jobs=4 # each may use up to 2 GB (-rss_limit_mb)
fuzz_names=()
for f in build/fuzz/fuzz_*; do
    [ -x "$f" ] || continue
    n=$(basename "$f")
    fuzz_names+=("$n")
    (
        t0=$SECONDS
        fuzz_one "$f" >"$(logname "fuzz/$n")" 2>&1
        echo "$? $((SECONDS - t0))" >"$(logname "fuzz/$n").rc"
    ) &
    while [ "$(jobs -rp | wc -l)" -ge "$fuzz_jobs" ]; do wait -n; done
done
wait
for n in "${fuzz_names[@]}"; do
    read -r rc secs <"$(logname "fuzz/$n").rc"
    tally "fuzz/$n" "$(logname "fuzz/$n")" "$rc" "$secs"
done

for t in tests/integration/test_*.py tests/crash/test_*.py; do
    [ -f "$t" ] && run_one "${t#tests/}" "$PY" "$t"
done

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
