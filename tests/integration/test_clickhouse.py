"""The ClickHouse sink (the Rivven seed's `clickhouse`) against a real ClickHouse 18.16 (Debian's
clickhouse-server, started here as the clickhouse user), read back with clickhouse-client: the
seed's exact config (the envelope columns of its table schema), rows from payload fields, a row
ClickHouse refuses isolated or dead-lettering its batch (skip_invalid_rows), validation, bad
configs refused naming the field, the target down at start (unhealthy) and mid-stream (retried,
nothing lost), rows already in the table not inserted twice (dedup_column), kill -9 of Sluice
mid-batch: exactly once with dedup_column; without it ClickHouse 18.16 (MergeTree, no
insert_deduplicate outside Replicated tables) keeps at most one batch twice."""
import json
import os
import sys
import urllib.parse
import urllib.request

import sluicetest as st

sys.path.insert(0, os.path.join(st.ROOT, "tests", "peers"))
from clickhouse import ClickHouse  # noqa: E402

t = st.Checks()
st.require_binary(t)
PW = "s3cret"
ch = ClickHouse(password=PW).start()
st.at_cleanup(ch.stop)
srv = st.Server().start()
wait = st.wait_until


def q(sql):
    return ch.query(sql)


def http_count(table):
    """count() over HTTP (fast enough to poll; the read-back checks use clickhouse-client)."""
    u = ch.url + "/?" + urllib.parse.urlencode({"query": "SELECT count() FROM " + table})
    r = urllib.request.Request(u, headers={"X-ClickHouse-User": "default", "X-ClickHouse-Key": PW})
    with urllib.request.urlopen(r, timeout=10) as resp:
        return int(resp.read())


def conn(cid):
    return srv.req("GET", "/v1/connectors/" + cid).json


def create(name, strands, config):
    r = srv.req("POST", "/v1/connectors", {"name": name, "kind": "clickhouse", "strands": strands,
                                           "config": config})
    assert r.status == 201, r
    return r.json["id"]


def put_batch(strand, payloads):
    r = srv.req("POST", "/v1/records/batch", [{"strand": strand, "payload": p} for p in payloads])
    assert r.status == 201, r


SEED_TABLE = ("CREATE TABLE events (event_type String, stream String, namespace String, timestamp String,"
              " data String, metadata String, _ingested_at String) ENGINE = MergeTree() ORDER BY (stream, timestamp)")
q(SEED_TABLE)
q("CREATE TABLE rows (id UInt32, name String, v Float64) ENGINE = MergeTree() ORDER BY id")

with t.section("the seed's exact config: the envelope columns of its table schema", srv):
    seed = {  # tests/fixtures/rivven/12.yaml, with this server's URL and password
        "url": ch.url, "database": "default", "table": "events", "username": "default", "password": PW,
        "batch_size": 10000, "flush_interval_secs": 5, "compression": "lz4", "validation": True,
        "skip_invalid_rows": False, "max_retries": 3, "initial_backoff_ms": 200, "max_backoff_ms": 5000,
        "circuit_breaker": {"enabled": True, "failure_threshold": 5, "reset_timeout_secs": 30,
                            "success_threshold": 2}}
    cid = create("clickhouse", ["cdc.orders"], seed)
    c = conn(cid)
    t.ok(c["config"]["retry"] == {"max_retries": 3, "initial_backoff_ms": 200, "max_backoff_ms": 5000}
         and c["config"]["password"] == "***" and "enabled" not in c["config"]["circuit_breaker"],
         "Rivven's retry keys are the framework's retry settings; the password is masked", c["config"])
    t.ok(wait(lambda: conn(cid)["state"] == "running", 10), "running (SELECT 1 and the table's columns)", conn(cid))
    put_batch("cdc.orders", [{"order_id": i, "item": "tea", "n": [1, 2]} for i in range(5)])
    t.ok(wait(lambda: http_count("events") == 5, 15), "the five records land after flush_interval_secs",
         conn(cid)["stats"])
    rows = [json.loads(x) for x in q("SELECT * FROM events ORDER BY timestamp FORMAT JSONEachRow").splitlines()]
    recs = st.all_records(srv.port, "cdc.orders")
    t.ok(len(rows) == 5 and all(r["event_type"] == "write" and r["stream"] == "cdc.orders" for r in rows)
         and sorted(json.loads(r["data"])["order_id"] for r in rows) == list(range(5))
         and json.loads(rows[0]["data"]) == {"order_id": 0, "item": "tea", "n": [1, 2]}
         and sorted(json.loads(r["metadata"])["record_hash"] for r in rows) == sorted(x["record_hash"] for x in recs)
         and all(r["timestamp"].endswith("Z") and r["_ingested_at"] >= r["timestamp"] for r in rows),
         "clickhouse-client reads the rows: data is the payload, metadata the seq and record hash", rows[:1])

with t.section("mapping payload: columns from fields; refused rows isolated or dead-lettering the batch", srv):
    skip = create("skip", ["p.skip"], {"url": ch.url, "password": PW, "table": "rows", "mapping": "payload",
                                       "skip_invalid_rows": True, "flush_interval_secs": 0, "batch_size": 100,
                                       "start": "earliest"})
    put_batch("p.skip", [{"id": 1, "name": "a", "v": 1.5}, {"id": 2, "name": {"not": "a string"}},
                         {"id": 3, "name": "c", "nosuch": 1}, {"id": 4, "name": "d"}, [1, 2]])
    t.ok(wait(lambda: conn(skip)["stats"]["delivered"] + conn(skip)["stats"]["dead_lettered"] >= 5, 15),
         "all five handled", conn(skip)["stats"])
    t.eq(q("SELECT id, name, v FROM rows ORDER BY id FORMAT TSV"), "1\ta\t1.5\n4\td\t0",
         "the good rows are in; ClickHouse's refusal named the bad row, which was taken out")
    dl = {d["seq"]: d for d in srv.req("GET", "/v1/connectors/%s/dead-letters" % skip).json["dead_letters"]}
    t.ok(set(dl) == {1, 2, 4} and "Code: 26, Cannot parse JSON string" in dl[1]["last_error"]
         and "'nosuch' has no column" in dl[2]["last_error"] and "not a JSON object" in dl[4]["last_error"],
         "dead letters: ClickHouse's Code 26, the field with no column (validation), the non-object",
         {k: v["last_error"] for k, v in dl.items()})
    whole = create("whole", ["p.whole"], {"url": ch.url, "password": PW, "table": "rows", "mapping": "payload",
                                          "flush_interval_secs": 0, "batch_size": 100, "validation": False})
    before = http_count("rows")
    put_batch("p.whole", [{"id": 10, "name": "x"}, {"id": 11, "name": 5}, {"id": 12, "name": "z"}])
    t.ok(wait(lambda: conn(whole)["stats"]["dead_lettered"] == 3, 15) and http_count("rows") == before,
         "skip_invalid_rows false (the seed's default): one bad row makes its whole batch dead letters",
         conn(whole)["stats"])
    r = srv.req("POST", "/v1/connectors/%s/dead-letters/replay" % whole)
    t.eq(r.status, 202, "the dead letters can be replayed")

with t.section("compression gzip: ClickHouse 18.16 decodes Content-Encoding: gzip", srv):
    q("CREATE TABLE gz (id UInt32, name String) ENGINE = MergeTree() ORDER BY id")
    gz = create("gz", ["p.gz"], {"url": ch.url, "password": PW, "table": "gz", "mapping": "payload",
                                 "compression": "gzip", "flush_interval_secs": 0, "start": "earliest"})
    put_batch("p.gz", [{"id": i, "name": "n%d" % i * 20} for i in range(500)])
    t.ok(wait(lambda: conn(gz)["stats"]["delivered"] == 500, 15), "500 rows delivered gzip-compressed",
         conn(gz)["stats"])
    t.eq(q("SELECT count(), sum(id), max(length(name)) FROM gz FORMAT TSV"), "500\t124750\t80",
         "clickhouse-client reads them all back")


with t.section("compression lz4: ClickHouse's checksummed LZ4 blocks (decompress=1), 1 MiB each", srv):
    q("CREATE TABLE lz (id UInt32, name String) ENGINE = MergeTree() ORDER BY id")
    lz = create("lz", ["p.lz"], {"url": ch.url, "password": PW, "table": "lz", "mapping": "payload",
                                 "compression": "lz4", "batch_size": 20000, "flush_interval_secs": 0,
                                 "start": "earliest"})
    for i in range(0, 40000, 2000):  # ~3 MB of rows per batch of 20000: three blocks each
        put_batch("p.lz", [{"id": j, "name": "n%d-" % j + "%x" % (j * 2654435761 % 2**32) * 8} for j in range(i, i + 2000)])
    t.ok(wait(lambda: conn(lz)["stats"]["delivered"] == 40000, 30), "40000 rows delivered lz4-compressed",
         conn(lz)["stats"])
    t.eq(q("SELECT count(), sum(id), uniqExact(name) FROM lz FORMAT TSV"), "40000\t799980000\t40000",
         "clickhouse-client reads them all back")
    log = open(ch.dir + "/log/server.err.log").read() if os.path.exists(ch.dir + "/log/server.err.log") else ""
    t.ok("Checksum doesn't match" not in log, "no checksum ClickHouse disagreed with")

with t.section("several inserts in flight: a refused row's batch dead-lettered, the others in once", srv):
    q("CREATE TABLE fl (id UInt32, name String) ENGINE = MergeTree() ORDER BY id")
    items = [{"id": i, "name": "n%d" % i} for i in range(1000)]
    items[450] = {"id": 450, "name": {"not": "a string"}}  # ClickHouse refuses it (Code 26)
    put_batch("p.fl", items)
    fl = create("fl", ["p.fl"], {"url": ch.url, "password": PW, "table": "fl", "mapping": "payload",
                                 "batch_size": 100, "max_in_flight": 4, "flush_interval_secs": 0,
                                 "validation": False, "start": "earliest"})
    t.ok(wait(lambda: conn(fl)["stats"]["delivered"] + conn(fl)["stats"]["dead_lettered"] >= 1000, 20),
         "all handled", conn(fl)["stats"])
    t.eq([conn(fl)["stats"]["delivered"], conn(fl)["stats"]["dead_lettered"]], [900, 100],
         "the batch of the refused row (skip_invalid_rows false) is dead letters, the other 900 delivered")
    t.eq(q("SELECT count(), uniqExact(id), countIf(id >= 400 AND id < 500) FROM fl FORMAT TSV"), "900\t900\t0",
         "each of the 900 once: the batches after the refused one were not inserted twice")

with t.section("bad configs are refused naming the field, and nothing is stored", srv):
    base = {"url": ch.url, "table": "rows"}
    n0 = len(srv.req("GET", "/v1/connectors").json["connectors"])
    for change, field in [({"table": "rows; drop"}, "config.table"), ({"database": ""}, "config.database"),
                          ({"batch_size": 0}, "config.batch_size"), ({"batch_size": 2000000}, "config.batch_size"),
                          ({"compression": "zstd"}, "config.compression"), ({"url": "ftp://h"}, "config.url"),
                          ({"password": "a", "access_token": "b"}, "config.access_token"),
                          ({"circuit_breaker": {"enabled": "yes"}}, "config.circuit_breaker.enabled"),
                          ({"circuit_breaker": {"failure_threshold": 500}}, "config.circuit_breaker.failure_threshold"),
                          ({"max_retries": "3"}, "config.retry.max_retries"), ({"tabel": "x"}, "config.tabel"),
                          ({"mapping": "rows"}, "config.mapping"), ({"dedup_column": "a-b"}, "config.dedup_column"),
                          ({"validation": "true"}, "config.validation")]:
        r = srv.req("POST", "/v1/connectors", {"name": "bad", "kind": "clickhouse", "config": dict(base, **change)})
        t.ok(r.status == 400 and r.json["error"].startswith(field + ":"), "%s -> 400 naming %s" % (change, field), r)
    t.eq(len(srv.req("GET", "/v1/connectors").json["connectors"]), n0, "nothing was stored")

with t.section("target down at start: unhealthy, saying why", srv):
    closed = ClickHouse(password=PW)  # configured, never started: its port is closed
    for cfg, why in [({"url": closed.url}, "unreachable"), ({"password": "wrong"}, "Code: 193"),
                     ({"table": "nosuch"}, "does not exist")]:
        x = create("down", ["p.none"], dict({"url": ch.url, "password": PW, "table": "rows",
                                             "mapping": "payload"}, **cfg))
        t.ok(wait(lambda: conn(x)["state"] == "unhealthy" and why in (conn(x)["last_error"] or ""), 10),
             "%s: unhealthy, last_error says %r" % (cfg, why), conn(x))
        srv.req("DELETE", "/v1/connectors/" + x)
    closed.stop()

with t.section("dedup_column: rows already in the table are not inserted again", srv):
    q("CREATE TABLE dd (id UInt32, rh String) ENGINE = MergeTree() ORDER BY id")
    put_batch("p.dd", [{"id": i} for i in range(10)])
    recs = st.all_records(srv.port, "p.dd")
    # as if an earlier attempt of the first batch had landed without its answer reaching Sluice
    q("INSERT INTO dd VALUES " + ",".join("(%d, '%s')" % (r["payload"]["id"], r["record_hash"]) for r in recs[:4]))
    dd = create("dd", ["p.dd"], {"url": ch.url, "password": PW, "table": "dd", "mapping": "payload",
                                 "dedup_column": "rh", "start": "earliest", "flush_interval_secs": 0})
    t.ok(wait(lambda: conn(dd)["stats"]["delivered"] == 10, 15), "all ten delivered", conn(dd)["stats"])
    t.eq(q("SELECT count(), uniqExact(rh), uniqExact(id) FROM dd FORMAT TSV"), "10\t10\t10",
         "each record once: the four already there were left out")

with t.section("ClickHouse down mid-stream: retried, nothing lost, nothing twice", srv):
    q("CREATE TABLE mid (id UInt32, rh String) ENGINE = MergeTree() ORDER BY id")
    mid = create("mid", ["p.mid"], {"url": ch.url, "password": PW, "table": "mid", "mapping": "payload",
                                    "dedup_column": "rh", "flush_interval_secs": 0, "batch_size": 50,
                                    "retry": {"initial_backoff_ms": 50, "max_backoff_ms": 300},
                                    "circuit_breaker": {"reset_timeout_secs": 1}})
    t.ok(wait(lambda: conn(mid)["state"] == "running", 10), "running", conn(mid))
    put_batch("p.mid", [{"id": i} for i in range(100)])
    t.ok(wait(lambda: http_count("mid") == 100, 15), "the first 100 land")
    ch.halt()
    put_batch("p.mid", [{"id": i} for i in range(100, 300)])
    t.ok(wait(lambda: conn(mid)["stats"]["failed"] > 0, 10), "attempts fail while ClickHouse is down", conn(mid))
    ch.resume()
    t.ok(wait(lambda: conn(mid)["stats"]["delivered"] == 300, 20), "all 300 delivered after it is back",
         conn(mid)["stats"])
    t.eq(q("SELECT count(), uniqExact(rh) FROM mid FORMAT TSV"), "300\t300", "each record exactly once")
    t.eq(conn(mid)["stats"]["dead_lettered"], 0, "nothing dead-lettered")

with t.section("kill -9 of Sluice mid-batch: exactly once with dedup_column, at most a batch twice without",
               srv):
    q("CREATE TABLE k1 (id UInt32, rh String) ENGINE = MergeTree() ORDER BY id")
    q("CREATE TABLE k2 (id UInt32) ENGINE = MergeTree() ORDER BY id")
    N, B = 60000, 3000
    for i in range(0, N, 10000):
        put_batch("p.kill", [{"id": j} for j in range(i, i + 10000)])
    common = {"url": ch.url, "password": PW, "mapping": "payload", "flush_interval_secs": 0, "batch_size": B,
              "start": "earliest"}
    k1 = create("k1", ["p.kill"], dict(common, table="k1", dedup_column="rh"))
    k2 = create("k2", ["p.kill"], dict(common, table="k2"))
    wait(lambda: http_count("k1") > 0 or http_count("k2") > 0, 15, interval=0.002)
    srv.kill()
    at_kill = (http_count("k1"), http_count("k2"))
    srv.start()
    t.ok(wait(lambda: conn(k1)["stats"]["lag"] == 0 and conn(k2)["stats"]["lag"] == 0, 30)
         and wait(lambda: http_count("k1") >= N and http_count("k2") >= N, 10),
         "both caught up after the restart (killed with %d and %d rows in)" % at_kill,
         (conn(k1)["stats"], conn(k2)["stats"]))
    t.eq(q("SELECT count(), uniqExact(id), uniqExact(rh) FROM k1 FORMAT TSV"), "%d\t%d\t%d" % (N, N, N),
         "dedup_column: every record exactly once")
    n2, u2 = map(int, q("SELECT count(), uniqExact(id) FROM k2 FORMAT TSV").split())
    # the cursor is saved after each batch, at most every 5 ms while busy: a kill re-sends the
    # batches in flight (max_in_flight, 2 by default) and what was delivered since the last save
    t.ok(u2 == N and N <= n2 <= N + 6 * B,
         "no dedup_column: every record; copies only of the unsaved tail (batches of %d): %d rows" % (B, n2))
    t.note("without dedup_column %d duplicate rows after the kill (ClickHouse 18.16 MergeTree keeps them)" % (n2 - N))

srv.stop()
ch.stop()
t.done()
