#!/usr/bin/python3
"""Crash tests for the Kafka connectors against librdkafka's mock cluster, kcat on the other side.

Source: kcat produces 30,000 keyed messages into 4 partitions (10,000 of them while Sluice is
down); Sluice is killed with SIGKILL twice while it consumes (and once more, 25,000 messages,
with assignment all: no group membership, offsets committed from outside the group). At the end
every message is in the strand exactly once (by partition and offset: offsets are committed only
after fsync, and what was appended but not committed is skipped by the position read back from
the strand), and the chain verifies.

Sink: 20,000 records go to a topic through an idempotent kafka_sink; Sluice is killed with
SIGKILL while it produces. At the end kcat reads every record (nothing the broker acknowledged
is lost and nothing unacknowledged is skipped); the duplicates are the batches in flight at the
kill, at most max_inflight x batch (16 x 10,000), and per key the first copies keep seq order.
The kills are placed by progress (records in the strand, the cursor), not by timers."""
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "integration"))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "peers"))
sys.dont_write_bytecode = True
import sluicetest as st  # noqa: E402
import kafka  # noqa: E402

t = st.Checks()
st.require_binary(t)
why = kafka.available()
if why:
    t.ok(False, "the Kafka test peers are here: " + why)
    t.done()
m = kafka.start(1, [("orders", 4), ("replica", 4), ("events", 4)], st.at_cleanup)
srv = st.Server().start()
C = "/v1/connectors"


def count(strand):
    return st.counts(srv.port).get(strand) or 0


def lines(lo, hi):
    return ["k%d\t{\"n\":%d}" % (i % 13, i) for i in range(lo, hi)]


with t.section("source: kill -9 twice while consuming", srv):
    m.produce("orders", lines(0, 20000), key_sep="\t")
    r = srv.req("POST", C, {"name": "orders in", "kind": "kafka-source", "config": {
        "brokers": m.brokers, "topic": "orders", "consumer_group": "crash", "start_offset": "earliest",
        "strand": "orders"}})
    assert r.status == 201, r
    for at in (2000, 9000):
        t.ok(st.wait_until(lambda: count("orders") > at, 60), "more than %d records appended" % at)
        srv.kill()
        if at == 9000:
            m.produce("orders", lines(20000, 30000), key_sep="\t")  # while Sluice is down
        srv.start()
    t.ok(st.wait_until(lambda: count("orders") >= 30000, 90), "30,000 records after two kills",
         count("orders"))
    recs = st.all_records(srv.port, "orders")
    ns = [r["payload"]["value"]["n"] for r in recs]
    t.eq(len(ns), 30000, "exactly 30,000 records")
    t.eq(sorted(ns), list(range(30000)), "every message once: nothing lost, nothing twice")
    seen = {}
    order_ok = True
    for r in recs:
        p = r["payload"]
        order_ok &= seen.get(p["partition"], -1) < p["offset"]
        seen[p["partition"]] = p["offset"]
    t.ok(order_ok, "per partition, offsets increase along the strand")
    rc, out, err = st.run_verify(srv.data, "orders")
    t.ok(rc == 0, "the chain verifies (sluice verify)", out[-400:] + err[-400:])

with t.section("source, assignment all (no group membership): kill -9 while consuming", srv):
    m.produce("events", lines(0, 20000), key_sep="\t")
    r = srv.req("POST", C, {"name": "events in", "kind": "kafka-source", "config": {
        "brokers": m.brokers, "topic": "events", "consumer_group": "crash-all", "assignment": "all",
        "start_offset": "earliest", "strand": "events"}})
    assert r.status == 201, r
    t.ok(st.wait_until(lambda: count("events") > 5000, 60), "more than 5,000 records appended")
    srv.kill()
    m.produce("events", lines(20000, 25000), key_sep="\t")  # while Sluice is down
    srv.start()
    t.ok(st.wait_until(lambda: count("events") >= 25000, 90), "25,000 records after the kill",
         count("events"))
    ns = [r["payload"]["value"]["n"] for r in st.all_records(srv.port, "events")]
    t.eq(sorted(ns), list(range(25000)), "every message once: nothing lost, nothing twice")
    rc, out, err = st.run_verify(srv.data, "events")
    t.ok(rc == 0, "the chain verifies (sluice verify)", out[-400:] + err[-400:])

with t.section("sink: kill -9 while producing", srv):
    N = 20000
    for lo in range(0, N, 5000):
        r = srv.req("POST", "/v1/records/batch", [{"strand": "out", "payload": {"k": "k%d" % (i % 13), "n": i}}
                                                  for i in range(lo, lo + 5000)])
        assert r.status in (200, 201), r
    r = srv.req("POST", C, {"name": "replica", "kind": "kafka-sink", "strands": ["out"], "config": {
        "brokers": m.brokers, "topic": "replica", "idempotent": True, "key_field": "k", "start": "earliest"}})
    assert r.status == 201, r
    cid = r.json["id"]

    def delivered():
        return (srv.req("GET", C + "/" + cid).json.get("stats") or {}).get("delivered") or 0

    t.ok(st.wait_until(lambda: delivered() > 3000, 60), "more than 3,000 delivered", delivered())
    srv.kill()
    srv.start()
    t.ok(st.wait_until(lambda: (srv.req("GET", C + "/" + cid).json.get("stats") or {}).get("lag") == 0, 90),
         "after the restart the cursor reaches the head", srv.req("GET", C + "/" + cid).json)
    rows = m.consume("replica", fmt="%p\t%o\t%k\t%s\n")
    got = [json.loads(r[3])["n"] for r in rows]
    t.eq(sorted(set(got)), list(range(N)), "kcat reads every record")
    dups = len(got) - len(set(got))
    t.ok(dups <= 16 * 10000, "duplicates are bounded by the batches in flight at the kill (%d)" % dups)
    first = {}
    for p, o, k, v in sorted(rows, key=lambda r: (int(r[0]), int(r[1]))):
        first.setdefault(k, [])
        n = json.loads(v)["n"]
        if n not in first[k]:
            first[k].append(n)
    t.ok(all(v == sorted(v) for v in first.values()), "per key, first copies are in seq order")

t.done()
