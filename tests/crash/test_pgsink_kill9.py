#!/usr/bin/python3
"""Crash test of the postgres_sink in upsert mode: kill -9 Sluice while batches stream into
PostgreSQL (several batches per COPY transaction), restart, repeat. At the end the table is
exactly the strand's last value per key, nothing is dead-lettered, and the connector has no lag:
a transaction either committed (its records may be sent again after the restart and the upsert
stores them once) or did not (they are sent again).

SLUICE_PGSINK_CRASH_CYCLES (default 3) sets the cycles, SLUICE_CRASH_SEED the random seed."""
import os
import random
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "integration"))
sys.dont_write_bytecode = True
import sluicetest as st  # noqa: E402
import pgpeer  # noqa: E402
from pgpeer import PG  # noqa: E402

CYCLES = int(os.environ.get("SLUICE_PGSINK_CRASH_CYCLES", "3"))
SEED = int(os.environ.get("SLUICE_CRASH_SEED", str(int(time.time() * 1000) % 1000000)))
N, KEYS = 120000, 7000

t = st.Checks()
st.require_binary(t)
t.note("seed %d, %d cycles" % (SEED, CYCLES))
rng = random.Random(SEED)
pg = PG()
pg.psql("CREATE TABLE kv (k int PRIMARY KEY, v int NOT NULL, tag text)")
srv = st.Server().start()

with t.section("records written, then an upsert sink killed mid-stream", srv):
    for start in range(0, N, 10000):
        items = [{"strand": "kv", "payload": {"k": i % KEYS, "v": i, "tag": "t\t%d" % i}}
                 for i in range(start, min(N, start + 10000))]
        r = srv.req("POST", "/v1/records/batch", items)
        assert r.status == 201, r
    r = srv.req("POST", "/v1/connectors", {"name": "kv", "kind": "postgres_sink", "strands": ["kv"], "config": {
        "start": "earliest", "connection.url": pg.url(), "table.name": "kv", "pk.fields": "k",
        "insert.mode": "upsert", "batch.size": 500}})
    t.eq(r.status, 201, "an upsert sink on strand kv")
    cid = r.json["id"]
    killed = 0
    for cycle in range(CYCLES):
        before = int(pg.one("SELECT count(*) FROM kv WHERE v >= %d" % (N - KEYS)))
        if before == KEYS:
            break
        time.sleep(rng.uniform(0.2, 0.9))
        srv.kill()
        killed += 1
        srv.start()
    t.ok(killed >= 1, "killed with -9 %d time(s) while delivering" % killed)

    def conn():
        return srv.req("GET", "/v1/connectors/" + cid).json

    t.ok(st.wait_until(lambda: conn()["stats"]["lag"] == 0, 120), "the connector catches up after the restarts", conn())
    t.ok(pg.one("SELECT count(*) FROM kv") == str(KEYS) and
         pg.one("SELECT count(*) FROM kv WHERE v %% %d = k AND v >= %d" % (KEYS, N - KEYS)) == str(KEYS),
         "every key holds the strand's last value for it", pg.psql("SELECT count(*), min(v), max(v) FROM kv"))
    t.eq(conn()["stats"]["dead_lettered"], 0, "nothing dead-lettered")
    t.eq(srv.req("GET", "/v1/connectors/%s/dead-letters" % cid).json["dead_letters"], [], "no dead letters kept")
srv.stop()
pgpeer.stop_all()
t.done()
