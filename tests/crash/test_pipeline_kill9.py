#!/usr/bin/python3
"""Crash test of a pipeline with transforms (issue 11): `serve --pipelines FILE` with a datagen
source (exactly-once into the strand, a source-side Filter + InsertField) and an object-storage
sink (exactly one file per record, a sink-side Filter + MaskField + Cast), SIGKILLed 0.3-1.2 s
into each cycle and restarted on the same data dir and file. At the end:
  - the strand holds each generated event the source-side Filter keeps, exactly once, none it drops;
  - the files hold exactly the strand records the sink-side Filter keeps, each exactly once,
    transformed.
SLUICE_PIPE_CRASH_CYCLES (default 5) sets the cycles, SLUICE_CRASH_SEED the random seed."""
import json
import os
import random
import sys
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "integration"))
sys.dont_write_bytecode = True
import sluicetest as st  # noqa: E402

CYCLES = int(os.environ.get("SLUICE_PIPE_CRASH_CYCLES", "5"))
SEED = int(os.environ.get("SLUICE_CRASH_SEED", str(int(time.time() * 1000) % 1000000)))
EVENTS = 6000

t = st.Checks()
st.require_binary(t)
t.note("seed %d, %d cycles" % (SEED, CYCLES))
rng = random.Random(SEED)
work = st.tmpdir()
root = os.path.join(work, "lake")
pfile = os.path.join(work, "p.yaml")
with open(pfile, "w") as f:
    f.write("""version: "1.0"
sources:
  gen:
    connector: datagen
    topic: orders
    config: {pattern: orders, events_per_second: 2000, max_events: %d, seed: 5}
    transforms:
      - type: Filter
        config: {condition: "value.status != 'pending'"}
      - type: InsertField
        config: {static: {origin: crash}}
sinks:
  lake:
    connector: object-storage
    topics: [orders]
    transforms:
      - type: Filter
        config: {condition: "value.quantity >= 2"}
      - type: MaskField
        config: {fields: [customer_id]}
      - type: Cast
        config: {spec: {quantity: string}}
    config:
      provider: local
      local: {root: %s}
      format: jsonl
      batch_size: 37
      flush_interval_secs: 1
""" % (EVENTS, root))

srv = st.Server(args=["--pipelines", pfile])


def gen_done():
    cs = srv.req("GET", "/v1/connectors").json["connectors"]
    return any(c["name"] == "gen" and c["state"] == "completed" for c in cs)


with t.section("kill -9 mid-pipeline, restart, repeat", srv):
    for cycle in range(CYCLES):
        srv.start()
        time.sleep(rng.uniform(0.3, 1.2))
        srv.kill()
    srv.start()
    t.ok(st.wait_until(gen_done, 60), "the source finishes after the restarts")

    def strand():
        out, nxt = [], 0
        while True:
            r = srv.req("GET", "/v1/strands/orders/records?limit=10000&from_seq=%d" % nxt).json
            out += r["records"]
            if not r["records"]:
                return out
            nxt = r["next_seq"]
    recs = strand()
    ids = [r["payload"]["event_id"] for r in recs]
    t.ok(len(ids) == len(set(ids)), "the strand holds each event once (%d records)" % len(ids))
    t.ok(all(r["payload"]["status"] != "pending" and r["payload"]["origin"] == "crash" for r in recs),
         "none the source Filter drops, each with the inserted field")
    t.ok(len(ids) > EVENTS // 2, "about three quarters of %d are kept (%d)" % (EVENTS, len(ids)))
    want = sorted(r["payload"]["event_id"] for r in recs if r["payload"]["quantity"] >= 2)

    def files():
        got = []
        for d, _, fs in os.walk(root):
            for f in fs:
                if not f.startswith("."):
                    with open(os.path.join(d, f)) as fh:
                        got += [json.loads(l) for l in fh if l.strip()]
        return got
    t.ok(st.wait_until(lambda: len(files()) >= len(want), 30), "the sink catches up (%d rows)" % len(want))
    rows = files()
    t.eq(sorted(r["event_id"] for r in rows), want, "the files hold exactly the kept records, each once")
    t.ok(all(isinstance(r["quantity"], str) and set(str(r["customer_id"])) == {"*"} for r in rows),
         "transformed (Cast, MaskField)")
    srv.stop()
t.done()
