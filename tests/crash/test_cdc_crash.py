#!/usr/bin/python3
"""Crash test for postgres_cdc: a 100k-row load (1,500 transactions of 40 rows, one of 40,000 rows
that is appended in chunks) while Sluice is killed with SIGKILL twice and PostgreSQL is restarted
once. At the end every committed row is in the strand exactly once, in commit order
((commit_lsn, tx_index) strictly increasing), nothing else is, and the chain verifies.
The kills are placed by the writer's progress, not by timers."""
import os
import subprocess
import sys
import threading

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "integration"))
sys.dont_write_bytecode = True
import sluicetest as st  # noqa: E402
import pgpeer  # noqa: E402
from pgpeer import PG, PSQL  # noqa: E402

t = st.Checks()
st.require_binary(t)
pg = PG()
pg.psql("CREATE TABLE load (id int PRIMARY KEY, k int, v text)")
srv = st.Server().start()
CHUNKS, TX_PER_CHUNK, ROWS = 30, 50, 40  # 60,000 rows in small transactions
BIG_AT, BIG = 10, 40000  # plus one 40,000-row transaction (about 4 MB of records)


class Writer(threading.Thread):
    """Runs the load chunk by chunk (one psql per chunk, one transaction per statement group);
    a chunk that fails (PostgreSQL restarting) is run again: ON CONFLICT DO NOTHING makes a
    repeated transaction insert nothing, so the table holds exactly the committed rows."""

    def __init__(self):
        super().__init__(daemon=True)
        self.done_chunks = 0
        self.retries = 0
        self.error = None

    def script(self, c):
        out = []
        base = c * TX_PER_CHUNK * ROWS
        for i in range(TX_PER_CHUNK):
            a = base + i * ROWS
            out.append("BEGIN; INSERT INTO load SELECT g, %d, md5(g::text) FROM generate_series(%d, %d) g "
                       "ON CONFLICT DO NOTHING; COMMIT;" % (c, a, a + ROWS - 1))
        if c == BIG_AT:
            out.append("INSERT INTO load SELECT g, -1, repeat(md5(g::text), 2) FROM generate_series(%d, %d) g "
                       "ON CONFLICT DO NOTHING;" % (10000000, 10000000 + BIG - 1))
        return "\n".join(out) + "\n"

    def run(self):
        env = dict(os.environ, PGHOST="127.0.0.1", PGPORT=str(pg.port), PGUSER="postgres")
        try:
            for c in range(CHUNKS):
                for attempt in range(200):
                    r = subprocess.run([PSQL, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", "-"], input=self.script(c),
                                       text=True, env=env, capture_output=True)
                    if r.returncode == 0:
                        break
                    self.retries += 1
                    st.wait_until(lambda: subprocess.run(["pg_isready", "-q", "-h", "127.0.0.1", "-p",
                                                          str(pg.port)]).returncode == 0, 30, 0.1)
                self.done_chunks = c + 1
        except Exception as e:  # reported by the main thread
            self.error = e


with t.section("kill -9 Sluice twice and restart PostgreSQL during a 100k-row load", srv):
    r = srv.req("POST", "/v1/connectors", {"name": "crash", "kind": "postgres_cdc", "config": {
        "connection_string": pg.url(), "slot": "crash", "publication": "crash_pub", "table_filter": "public.load",
        "snapshot_mode": "never", "strand": "crash", "heartbeat_interval_ms": 500}})
    assert r.status == 201, r
    cid = r.json["id"]
    assert st.wait_until(lambda: pg.slot("crash") and pg.slot("crash")["active"], 15, 0.05)
    w = Writer()
    w.start()
    st.wait_until(lambda: w.done_chunks >= 6, 60, 0.005)  # just after the big transaction
    srv.kill()
    t.note("killed Sluice after %d chunks" % w.done_chunks)
    srv.start()
    st.wait_until(lambda: w.done_chunks >= 14, 60, 0.005)
    pg.restart("fast")
    t.note("restarted PostgreSQL after %d chunks" % w.done_chunks)
    st.wait_until(lambda: w.done_chunks >= 20, 60, 0.005)
    srv.kill()
    t.note("killed Sluice again after %d chunks" % w.done_chunks)
    srv.start()
    w.join(120)
    t.ok(not w.is_alive() and w.error is None and w.done_chunks == CHUNKS, "the load completed (%d psql retries)"
         % w.retries, w.error)
    committed = sorted(int(x[0]) for x in pg.psql("SELECT id FROM load"))
    t.note("%d committed rows" % len(committed))

    def caught_up():
        return st.counts(srv.port).get("crash", 0) >= len(committed)
    st.wait_until(caught_up, 60, 0.1)
    recs = st.all_records(srv.port, "crash")
    ids = [r["payload"]["after"]["id"] for r in recs]
    t.eq(len(ids), len(committed), "as many records as committed rows")
    t.ok(len(set(ids)) == len(ids), "no row twice", len(ids) - len(set(ids)))
    t.ok(sorted(ids) == committed, "every committed row is in the strand", set(committed) ^ set(ids))
    pos = [(r["payload"]["source"]["commit_lsn"], r["payload"]["source"]["tx_index"]) for r in recs]
    t.ok(all(a < b for a, b in zip(pos, pos[1:])), "records are in commit order: (commit_lsn, tx_index) increasing")
    t.ok(all(r["payload"]["op"] == "c" and r["source"] == cid for r in recs), "all inserts, all from the connector")
    t.eq(srv.req("GET", "/v1/connectors/" + cid).json["state"], "running", "the connector is running")

srv.stop()
rc, out, err = st.run_verify(srv.data)
t.eq(rc, 0, "sluice verify: the chain verifies after the crashes")
pgpeer.stop_all()
t.done()
