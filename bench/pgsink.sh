#!/usr/bin/env bash
# bench/pgsink.sh [N=200000] - the PostgreSQL sink against COPY, same run, same PostgreSQL 15
# (tests/peers/pg.sh, a temp cluster). Not part of `make test`. The issue's figure is N=1000000.
#   copy:   psql's COPY FROM STDIN of the N rows (CSV) into an empty table: PostgreSQL's own
#           fastest load, the reference
#   sink:   the same N rows written to a strand first, then a postgres_sink (upsert on the key,
#           batch.size 500 or $BATCH, start earliest) into an empty table; time from create to
#           all delivered
#   insert: the same with insert.mode insert
# Prints rows/s for each and the ratios sink/copy, insert/copy. Environment: SLUICE_BIN, BATCH.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
N=${1:-200000}
export SLUICE_BIN=${SLUICE_BIN:-$ROOT/build/sluice}
[ -x "$SLUICE_BIN" ] || { echo "build first: make build/sluice" >&2; exit 1; }
exec /usr/bin/python3 - "$ROOT" "$N" <<'PYEOF'
import json, os, subprocess, sys, time, urllib.request
root, n = sys.argv[1], int(sys.argv[2])
sys.path.insert(0, os.path.join(root, "tests", "integration"))
import sluicetest as st
from pgpeer import PG
import pgpeer

pg = PG("synchronous_commit=on")
env = dict(os.environ, PGHOST="127.0.0.1", PGPORT=str(pg.port), PGUSER="postgres", PGDATABASE="postgres")
ddl = "(id int PRIMARY KEY, customer text, amount numeric, status text, at timestamptz, meta jsonb)"
def rows():
    for i in range(n):
        yield {"id": i, "customer": "c-%d" % (i % 997), "amount": "%d.%02d" % (i % 10000, i % 100),
               "status": ("paid", "open", "shipped")[i % 3], "at": 1700000000000 + i, "meta": {"k": i % 7}}

pg.psql("CREATE TABLE t_copy " + ddl)
csv = "".join('%d,%s,%s,%s,%s,"{""k"": %d}"\n' % (r["id"], r["customer"], r["amount"], r["status"],
              time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(r["at"] // 1000)) + ".%03d+00" % (r["at"] % 1000),
              r["meta"]["k"]) for r in rows())
t0 = time.monotonic()
subprocess.run(["psql", "-X", "-q", "-c", "COPY t_copy FROM STDIN WITH (FORMAT csv)"], input=csv, text=True,
               env=env, check=True)
copy_s = time.monotonic() - t0
assert pg.one("SELECT count(*) FROM t_copy") == str(n)

srv = st.Server().start()
batch = []
for r in rows():
    batch.append(json.dumps({"strand": "orders", "payload": r}))
    if len(batch) == 5000:
        req = urllib.request.Request(srv.url + "/v1/records/batch", data=("\n".join(batch) + "\n").encode(),
                                     method="POST", headers={"Content-Type": "application/x-ndjson"})
        urllib.request.urlopen(req, timeout=120).read()
        batch = []
if batch:
    req = urllib.request.Request(srv.url + "/v1/records/batch", data=("\n".join(batch) + "\n").encode(),
                                 method="POST", headers={"Content-Type": "application/x-ndjson"})
    urllib.request.urlopen(req, timeout=120).read()

def run(mode, table):
    pg.psql("CREATE TABLE %s %s" % (table, ddl))
    t0 = time.monotonic()
    r = srv.req("POST", "/v1/connectors", {"name": table, "kind": "postgres_sink", "strands": ["orders"], "config": {
        "start": "earliest", "connection.url": pg.url(), "table.name": table, "pk.fields": "id",
        "insert.mode": mode, "batch.size": int(os.environ.get("BATCH", "500"))}})
    assert r.status == 201, r
    cid = r.json["id"]
    while srv.req("GET", "/v1/connectors/" + cid).json["stats"]["delivered"] < n:
        time.sleep(0.05)
        assert time.monotonic() - t0 < 600
    s = time.monotonic() - t0
    assert pg.one("SELECT count(*) FROM %s" % table) == str(n)
    return s

sink_s = run("upsert", "t_sink")
ins_s = run("insert", "t_insert")
srv.stop()
pgpeer.stop_all()
print("RESULT rows=%d batch=%s copy_per_s=%.0f sink_upsert_per_s=%.0f (%.2fx copy) sink_insert_per_s=%.0f (%.2fx copy)" % (
    n, os.environ.get("BATCH", "500"), n / copy_s, n / sink_s, copy_s / sink_s, n / ins_s, copy_s / ins_s))
os._exit(0)
PYEOF
