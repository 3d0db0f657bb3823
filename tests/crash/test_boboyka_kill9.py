#!/usr/bin/python3
"""Crash test (issue 4): Boboyka ingests with the Supabase dual-write on, kill -9 at a random
moment, restart. The mirror target is the Supabase STAND-IN (tests/peers/supabase_standin.cjs,
PostgREST's insert contract over a real PostgreSQL 15), with the dedup column record_hash.

Each cycle: 8 threads ingest events (all four types); the stand-in fails (503) in some cycles so
that the retry queue holds events when the kill lands; SIGKILL 0.3-1.2 s in; restart with the
stand-in healthy. After the last cycle, once the queue has drained:
  - every acknowledged event (201) is in the strand boboyka and in the events feed;
  - every event in the strand is in PostgreSQL exactly once (acknowledged or not: an event that
    became durable just before the kill is mirrored after the restart), and nothing else is;
  - status counts match the strand.
SLUICE_CRASH_CYCLES (default 5) sets the number of cycles.
"""
import os
import random
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "integration"))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "peers"))
sys.dont_write_bytecode = True
import sluicetest as st  # noqa: E402
from supabase import Supabase  # noqa: E402

CYCLES = int(os.environ.get("SLUICE_CRASH_CYCLES", "5"))
SEED = int(os.environ.get("SLUICE_CRASH_SEED", str(int(time.time() * 1000) % 1000000)))
TABLES = {"project_build": "project_builds", "build_queue_item": "build_queue",
          "agent_health": "agent_health", "audit_log": "agent_audit_log"}
TYPES = sorted(TABLES)

t = st.Checks()
st.require_binary(t)
t.note("seed %d, %d cycles" % (SEED, CYCLES))
rng = random.Random(SEED)
sb = Supabase(key="crash-key")
st.at_cleanup(sb.stop)
sb.start()
os.environ["BOBOYKA_SUPABASE_URL"] = sb.url
os.environ["BOBOYKA_SUPABASE_KEY"] = sb.key
srv = st.Server(args=["--boboyka-dedup-column", "record_hash", "--boboyka-retry-base-ms", "20",
                      "--boboyka-retry-max-ms", "100"])
acked = {}  # record_hash -> record_type


def writer(port, wid, cycle, stop, out):
    n = 0
    while not stop.is_set():
        rt = TYPES[(wid + n) % 4]
        key = {"project_build": "build_id", "build_queue_item": "queue_id"}.get(rt, "agent_id")
        data = {key: "c%d-w%d-%d" % (cycle, wid, n)}
        n += 1
        try:
            r = st.req(port, "POST", "/v1/boboyka/ingest", {"record_type": rt, "data": data}, timeout=10)
        except Exception:
            return  # the server died
        if r.status == 201:
            out.append((r.json["record_hash"], rt))


for cycle in range(CYCLES):
    failing = cycle % 2 == 1
    sb.control(mode="fail", status=503) if failing else sb.control(mode="ok")
    srv.start()
    stop = threading.Event()
    outs = [[] for _ in range(8)]
    ths = [threading.Thread(target=writer, args=(srv.port, w, cycle, stop, outs[w]), daemon=True)
           for w in range(8)]
    for th in ths:
        th.start()
    time.sleep(rng.uniform(0.3, 1.2))  # the moment of the crash, not a wait for a result
    srv.kill()
    stop.set()
    for th in ths:
        th.join(15)
    got = [x for o in outs for x in o]
    acked.update(got)
    t.ok(len(got) > 0, "cycle %d (Supabase %s): %d events acknowledged before kill -9"
         % (cycle, "failing" if failing else "healthy", len(got)))

sb.control(mode="ok")
srv.start()
drained = st.wait_until(lambda: srv.req("GET", "/v1/boboyka/status").json["mirror_pending"] == 0, 60)
s = srv.req("GET", "/v1/boboyka/status").json
t.ok(drained, "after the last restart the retry queue drains", s)
recs = st.all_records(srv.port, "boboyka")
in_strand = {r["record_hash"]: r["payload"]["_boboyka_type"] for r in recs}
missing = [h for h in acked if h not in in_strand]
t.ok(not missing, "every acknowledged event (%d) is in the strand boboyka" % len(acked), missing[:3])
feed = srv.req("GET", "/v1/boboyka/events?limit=1000").json
seen, cur = set(), None
while True:
    seen.update(e["record_hash"] for e in feed["events"])
    if not feed["next_cursor"]:
        break
    feed = srv.req("GET", "/v1/boboyka/events?limit=1000&cursor=" + feed["next_cursor"]).json
t.eq(seen, set(in_strand), "the events feed lists exactly the strand's events")
t.eq(s["total_events"], len(in_strand), "status counts every event in the strand")
t.eq(s["mirror_failed"], 0, "no event gave up")
rows = {}
for table in TABLES.values():
    for line in sb.sql("SELECT record_hash, count(*) FROM %s GROUP BY record_hash" % table).splitlines():
        h, c = line.split("|")
        rows[h] = rows.get(h, 0) + int(c)
t.eq(set(rows), set(in_strand), "PostgreSQL holds exactly the strand's events (%d)" % len(in_strand))
t.ok(all(c == 1 for c in rows.values()), "each one exactly once", [h for h, c in rows.items() if c != 1][:3])
srv.stop()
sb.stop()
t.done()
