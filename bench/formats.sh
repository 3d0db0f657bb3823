#!/usr/bin/env bash
# bench/formats.sh [RECORDS=1000000]: file-format encoding speed of the object-storage sink against
# DuckDB, in the same run on the same data. Writes RECORDS records of a mixed schema (integers,
# floats mixed with integers, repeated and unique strings, booleans, nulls, missing keys, nested
# objects and arrays) as NDJSON, then times:
#   - Sluice: sl_ff_encode (build/tests/test_filefmt write, SLUICE_FF_TIME=1: only the encoding is
#     timed, after the NDJSON was turned into the strand's MessagePack) as Parquet (snappy) with
#     the same columns as DuckDB (include_metadata false: the compared figure) and with the 4
#     metadata columns, and JSONL, JSONL + gzip, JSONL + zstd (with metadata);
#   - DuckDB (@duckdb/node-api, all cores): read_json of the same NDJSON into a table first, then only
#     COPY table TO 'x.parquet' (FORMAT parquet, COMPRESSION snappy).
# Prints records/s and MB/s (output bytes; for JSONL also the uncompressed text rate) and the ratio
# Sluice/DuckDB for Parquet. Not part of make test.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
N=${1:-1000000}
TOOL=build/tests/test_filefmt
NODE_DIR=${SLUICE_NODE_DIR:-$PWD/build/node}
[ -d "$NODE_DIR/node_modules/@duckdb/node-api" ] || bench_die "DuckDB missing: make deps"
make --no-print-directory "$TOOL" >/dev/null
W=$(mktemp -d)
trap 'rm -rf "$W"; rm -f "$NODE_DIR/sluice_ff_bench.mjs"' EXIT

bench_log "generating $N records"
"$PY" - "$N" >"$W/in.ndjson" <<'PYEOF'
import json, random, sys
n = int(sys.argv[1]); rnd = random.Random(1)
events = ["order.created", "order.paid", "order.shipped", "order.cancelled", "user.login"]
countries = ["DE", "FR", "US", "JP", "BR", "IN", "GB", "ES"]
w = sys.stdout.write
for i in range(n):
    r = {"id": i, "user": "user-%d" % rnd.randrange(20000), "event": events[i % 5],
         "amount": (rnd.randrange(100000) / 100 if i % 3 else rnd.randrange(1000)),
         "ts": 1700000000000 + i * 17, "active": i % 7 != 0, "country": countries[i % 8],
         "session": "%016x" % rnd.getrandbits(64), "note": (None if i % 4 else "note %d" % (i % 100)),
         "tags": ["t%d" % (i % 13), "x"]}
    if i % 10 == 0:
        r["meta"] = {"ip": "10.0.%d.%d" % (i % 256, i % 251), "ua": "bench"}
    w(json.dumps(r, separators=(",", ":")) + "\n")
PYEOF
IN_MB=$(du -m "$W/in.ndjson" | cut -f1)
bench_log "input: $IN_MB MB of NDJSON"

run() { # name config
    local line
    line=$(SLUICE_FF_TIME=1 "$TOOL" write "$2" bench <"$W/in.ndjson" 2>&1 >"$W/out" | grep encode_seconds)
    local s rec by
    s=$(echo "$line" | awk '{print $2}')
    rec=$(echo "$line" | awk '{print $4}')
    by=$(echo "$line" | awk '{print $6}')
    "$PY" -c "import sys; s,r,b=float('$s'),int('$rec'),int('$by'); print('sluice %-16s %8.3f s %10.0f records/s %8.1f MB/s output (%d bytes)' % ('$1', s, r/s, b/s/1e6, b))"
    echo "$s" >"$W/$1.s"
}
# the same columns as DuckDB writes (no metadata columns): the figure compared with DuckDB
run parquet-snappy '{"format":"parquet","include_metadata":false,"parquet":{"compression":"snappy"}}'
cp "$W/out" "$W/sluice.parquet"
run parquet-snappy+meta '{"format":"parquet","parquet":{"compression":"snappy"}}'

run jsonl "{\"format\":\"jsonl\"}"
JSONL_BYTES=$(stat -c %s "$W/out")
run jsonl-gzip '{"format":"jsonl","compression":"gzip"}'
run jsonl-zstd '{"format":"jsonl","compression":"zstd"}'
for c in gzip zstd; do
    "$PY" -c "s=float(open('$W/jsonl-$c.s').read()); print('sluice jsonl-$c: %.1f MB/s of JSONL text compressed' % ($JSONL_BYTES/s/1e6))"
done

cat >"$NODE_DIR/sluice_ff_bench.mjs" <<'JSEOF'
import { DuckDBInstance } from '@duckdb/node-api';
const [inp, outp] = process.argv.slice(2);
const inst = await DuckDBInstance.create(':memory:');
const c = await inst.connect();
await c.run(`CREATE TABLE t AS SELECT * FROM read_json('${inp}', format='newline_delimited')`);
const t0 = process.hrtime.bigint();
await c.run(`COPY t TO '${outp}' (FORMAT parquet, COMPRESSION snappy)`);
const s = Number(process.hrtime.bigint() - t0) / 1e9;
const n = (await c.runAndReadAll('SELECT count(*)::INT AS n FROM t')).getRowObjects()[0].n;
console.log(`${s} ${n}`);
JSEOF
read -r DS DN < <(node "$NODE_DIR/sluice_ff_bench.mjs" "$W/in.ndjson" "$W/duck.parquet")
DB=$(stat -c %s "$W/duck.parquet")
"$PY" -c "s,n,b=float('$DS'),int('$DN'),int('$DB'); print('duckdb parquet-snappy   %8.3f s %10.0f records/s %8.1f MB/s output (%d bytes)' % (s, n/s, b/s/1e6, b))"
"$PY" -c "a=float(open('$W/parquet-snappy.s').read()); d=float('$DS'); print('ratio sluice/duckdb parquet-snappy records/s: %.2fx' % (d/a))"
# both files must hold the same rows
node -e "
import('$NODE_DIR/node_modules/@duckdb/node-api/lib/index.js').then(async ({DuckDBInstance}) => {
  const c = await (await DuckDBInstance.create(':memory:')).connect();
  const r = await c.runAndReadAll(\"SELECT (SELECT count(*) FROM '$W/sluice.parquet')::INT AS a, (SELECT count(*) FROM '$W/duck.parquet')::INT AS b, abs((SELECT sum(amount) FROM '$W/sluice.parquet') - (SELECT sum(amount) FROM '$W/duck.parquet')) < 1e-6 * (SELECT sum(amount) FROM '$W/duck.parquet') AS same_sum\");
  console.log('check: rows sluice/duckdb ' + JSON.stringify(r.getRowObjects()[0]));
});"
