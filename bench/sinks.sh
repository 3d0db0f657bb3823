#!/usr/bin/env bash
# bench/sinks.sh [N=200000] [which=clickhouse,elasticsearch] - the ClickHouse and Elasticsearch
# sinks, each against a peer in the same run (bench/pgsink.sh is PostgreSQL's). Not part of
# `make test`.
#   clickhouse (Debian's clickhouse-server 18.16, tests/peers/clickhouse.py):
#     client: `clickhouse-client --query "INSERT INTO t FORMAT JSONEachRow" < file` of the N rows
#             into an empty MergeTree table (native protocol, LZ4): the reference
#     sink:   the same N rows written to a strand first, then a clickhouse sink (mapping payload,
#             batch_size 10000 or $CH_BATCH, compression none, max_in_flight 2 (the default), start
#             earliest) into an empty table; time from create to all delivered (and counted by
#             ClickHouse)
#     one:    the same with max_in_flight 1 (one insert at a time, as before pipelining)
#     lz4:    the same with compression lz4 (ClickHouse's compressed blocks, decompress=1)
#     dedup:  the same with dedup_column (the record hash in a column)
#   elasticsearch (the _bulk stand-in, tests/peers/es_standin.py):
#     docs/s of the elasticsearch sink's bulk bodies delivered to the stand-in, and the
#     stand-in's own cost (its CPU seconds parsing them)
# Prints rows/s (docs/s) and the ratios. Environment: SLUICE_BIN, CH_BATCH.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
N=${1:-200000}
WHICH=${2:-clickhouse,elasticsearch}
export SLUICE_BIN=${SLUICE_BIN:-$ROOT/build/sluice}
[ -x "$SLUICE_BIN" ] || { echo "build first: make build/sluice" >&2; exit 1; }
exec /usr/bin/python3 - "$ROOT" "$N" "$WHICH" <<'PYEOF'
import json, os, subprocess, sys, time, urllib.request
root, n, which = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(",")
sys.path.insert(0, os.path.join(root, "tests", "integration"))
sys.path.insert(0, os.path.join(root, "tests", "peers"))
import sluicetest as st


def rows():
    for i in range(n):
        yield {"id": i, "customer": "c-%d" % (i % 997), "amount": (i % 10000) + (i % 100) / 100.0,
               "status": ("paid", "open", "shipped")[i % 3], "at": 1700000000000 + i, "meta": "k%d" % (i % 7)}


def fill(srv, strand):
    batch = []
    def flush():
        req = urllib.request.Request(srv.url + "/v1/records/batch", data=("\n".join(batch) + "\n").encode(),
                                     method="POST", headers={"Content-Type": "application/x-ndjson"})
        urllib.request.urlopen(req, timeout=120).read()
        batch.clear()
    for r in rows():
        batch.append(json.dumps({"strand": strand, "payload": r}))
        if len(batch) == 5000:
            flush()
    if batch:
        flush()


def cpu_s(pid):
    """CPU seconds (user + system) a process has used, from /proc."""
    f = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def until_delivered(srv, cid, t0, extra=lambda: True):
    while srv.req("GET", "/v1/connectors/" + cid).json["stats"]["delivered"] < n or not extra():
        time.sleep(0.02)
        assert time.monotonic() - t0 < 600, srv.req("GET", "/v1/connectors/" + cid).json
    return time.monotonic() - t0


srv = st.Server().start()
fill(srv, "orders")
out = []

if "clickhouse" in which:
    from clickhouse import ClickHouse
    ch = ClickHouse().start()
    ddl = "(id UInt32, customer String, amount Float64, status String, at UInt64, meta String, rh String) " \
          "ENGINE = MergeTree() ORDER BY id"
    data = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in rows()).encode()
    ch.query("CREATE TABLE t_client " + ddl)
    t0 = time.monotonic()
    ch.query("INSERT INTO t_client FORMAT JSONEachRow", stdin=data)
    client_s = time.monotonic() - t0
    assert ch.query("SELECT count() FROM t_client") == str(n)

    def run(table, **extra):
        ch.query("CREATE TABLE %s %s" % (table, ddl))
        mine0 = cpu_s(srv.proc.pid)
        t0 = time.monotonic()
        cfg = dict({"url": ch.url, "table": table, "mapping": "payload", "start": "earliest",
                    "compression": "none", "batch_size": int(os.environ.get("CH_BATCH", "10000"))}, **extra)
        r = srv.req("POST", "/v1/connectors", {"name": table, "kind": "clickhouse", "strands": ["orders"],
                                               "config": cfg})
        assert r.status == 201, r
        s = until_delivered(srv, r.json["id"], t0)
        cpu[table] = cpu_s(srv.proc.pid) - mine0
        assert ch.query("SELECT count() FROM %s" % table) == str(n)
        srv.req("DELETE", "/v1/connectors/" + r.json["id"])
        return s

    cpu = {}

    secs = {"t_sink": run("t_sink"), "t_one": run("t_one", max_in_flight=1),
            "t_lz4": run("t_lz4", compression="lz4"), "t_dedup": run("t_dedup", dedup_column="rh")}
    ch.stop()
    out.append("clickhouse rows=%d client_per_s=%.0f " % (n, n / client_s) + " ".join(
        "%s_per_s=%.0f (%.2fx client, sluice_cpu_s=%.2f)" % (name, n / secs[t], client_s / secs[t], cpu[t])
        for name, t in (("sink", "t_sink"), ("one_in_flight", "t_one"), ("lz4", "t_lz4"), ("dedup", "t_dedup"))))

if "elasticsearch" in which:
    from es_standin import EsStandin
    for fast in (True, False):  # documents only counted by the stand-in, then parsed and kept
        es = EsStandin().start()
        es.control(fast=fast)
        cpu0, mine0 = es.stats()["cpu_s"], cpu_s(srv.proc.pid)
        t0 = time.monotonic()
        r = srv.req("POST", "/v1/connectors", {"name": "es", "kind": "elasticsearch", "strands": ["orders"], "config": {
            "connection.url": es.url, "index.name": "bench-{topic}", "batch.size": 5000, "start": "earliest"}})
        assert r.status == 201, r
        s = until_delivered(srv, r.json["id"], t0)
        mine = cpu_s(srv.proc.pid) - mine0
        srv.req("DELETE", "/v1/connectors/" + r.json["id"])
        st_ = es.stats()
        assert st_["docs"] >= n, st_
        out.append("elasticsearch(%s) docs=%d sink_docs_per_s=%.0f bulk_MB=%.1f standin_cpu_s=%.2f sluice_cpu_s=%.2f "
                   "(%.0f docs per sluice CPU-second) of %.2f s wall"
                   % ("stand-in counts only" if fast else "stand-in parses and keeps", n, n / s,
                      st_["bytes"] / 1e6, st_["cpu_s"] - cpu0, mine, n / mine, s))
        es.stop()

srv.stop()
for line in out:
    print("RESULT " + line)
os._exit(0)
PYEOF
