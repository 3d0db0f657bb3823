"""Kafka connectors against librdkafka's mock cluster (build/tests/peers/kafka_mock), with Debian's
kcat on the other side: the sink (kafka_sink / Rivven's kafka-sink) produces what kcat consumes,
the source (kafka / Rivven's kafka-source) consumes what kcat produced. Bad configs, unreachable
brokers, a broker going down, dead letters for messages refused for good, commits after fsync.
The kill -9 tests are in tests/crash/test_kafka_kill9.py."""
import json
import os
import sys
import time

import sluicetest as st

sys.path.insert(0, os.path.join(st.ROOT, "tests", "peers"))
import kafka  # noqa: E402  (tests/peers/kafka.py)

t = st.Checks()
st.require_binary(t)
why = kafka.available()
if why:
    t.ok(False, "the Kafka test peers are here: " + why)
    
    t.done()
srv = st.Server(args=["--max-body-bytes", "4M"]).start()
C = "/v1/connectors"
m = kafka.start(1, [("out", 3), ("in", 3)], st.at_cleanup)


def conn(cid):
    return srv.req("GET", C + "/" + cid).json


def create(body):
    r = srv.req("POST", C, body)
    assert r.status == 201, r
    return r.json


def post(strand, payloads):
    r = srv.req("POST", "/v1/records/batch", [{"strand": strand, "payload": p} for p in payloads])
    assert r.status in (200, 201), r


def headers(h):
    return dict(kv.split("=", 1) for kv in h.split(",")) if h else {}


def by_key(rows):
    keys = {}
    for p, o, k, h, v in rows:
        keys.setdefault(k, []).append((int(p), int(o), int(headers(h)["seq"])))
    return keys


with t.section("bad configs -> 400 naming the field", srv):
    base = {"brokers": m.brokers, "topic": "out"}
    cases = (
        ("kafka_sink", dict(base, brokers="127.0.0.1:9092"), "config.brokers"),
        ("kafka_sink", dict(base, brokers=["no-port"]), "config.brokers[0]"),
        ("kafka_sink", dict(base, acks="some"), "config.acks"),
        ("kafka_sink", dict(base, compression="brotli"), "config.compression"),
        ("kafka_sink", dict(base, idempotent=True, acks="leader"), "config.acks"),
        ("kafka_sink", dict(base, bogus=1), "config.bogus"),
        ("kafka-sink", dict(base, security={"protocol": "sasl_ssl", "username": "u", "password": "p"}),
         "config.security.mechanism"),
        ("kafka_sink", {"brokers": m.brokers}, "config.topic"),
        ("kafka-source", {"brokers": m.brokers, "topic": "in", "start_offset": "middle"}, "config.start_offset"),
        ("kafka-source", {"brokers": [], "topic": "in"}, "config.brokers"),
        ("kafka", {"brokers": m.brokers, "topic": "in", "group_id": "a", "consumer_group": "b"},
         "config.consumer_group"),
    )
    for kind, cfg, field in cases:
        r = srv.req("POST", C, {"name": "bad", "kind": kind, "strands": ["ks"], "config": cfg}
                    if "sink" in kind else {"name": "bad", "kind": kind, "config": cfg})
        t.ok(r.status == 400 and (field + ":") in r.json.get("error", "") and r.json.get("code") == "invalid_config",
             "%s %s -> 400 naming %s" % (kind, json.dumps(cfg)[:80], field), r)
    r = srv.req("POST", C, {"name": "pw", "kind": "kafka-sink", "strands": ["ks"], "config": dict(
        base, security={"protocol": "sasl_ssl", "mechanism": "SCRAM_SHA_256", "username": "u", "password": "s3cret"})})
    t.ok(r.status == 201 and r.json["config"]["security"]["password"] == "***" and r.json["kind"] == "kafka_sink",
         "Rivven's kafka-sink with SASL is accepted; the password is shown as ***", r)
    srv.req("DELETE", C + "/" + r.json["id"])

with t.section("sink: an unreachable broker keeps it out of running", srv):
    a = create({"name": "nowhere", "kind": "kafka-sink", "strands": ["ks-dead"],
                "config": {"brokers": ["127.0.0.1:1"], "topic": "out", "timeout_ms": 2000}})
    ok = st.wait_until(lambda: conn(a["id"])["state"] == "unhealthy" and conn(a["id"])["last_error"], 20)
    t.ok(ok, "state unhealthy with last_error saying why", conn(a["id"]))
    srv.req("DELETE", C + "/" + a["id"])

with t.section("sink: every record, per-key order, headers, idempotent", srv):
    N = 3000
    post("ks", [{"user": {"id": "u%d" % (i % 7)}, "n": i} for i in range(N)])
    a = create({"name": "to kafka", "kind": "kafka-sink", "strands": ["ks"], "config": {
        "brokers": m.brokers, "topic": "out", "key_field": "user.id", "idempotent": True,
        "compression": "lz4", "start": "earliest"}})
    t.ok(st.wait_until(lambda: conn(a["id"])["stats"]["delivered"] == N, 60), "the cursor passes all %d records" % N,
         conn(a["id"]))
    rows = m.consume("out")
    t.eq(len(rows), N, "kcat reads %d messages" % N)
    seqs = sorted(int(headers(r[3])["seq"]) for r in rows)
    t.eq(seqs, list(range(N)), "every record once (no duplicates)")
    keys = by_key(rows)
    t.ok(set(keys) == {"u%d" % i for i in range(7)} and all(len({p for p, _, _ in v}) == 1 for v in keys.values()),
         "a key is always in the same partition", {k: sorted({p for p, _, _ in v}) for k, v in keys.items()})
    t.ok(all([s for _, _, s in sorted(v)] == sorted(s for _, _, s in v) for v in keys.values()),
         "per key, offsets follow seq order")
    recs = {r["seq"]: r for r in st.all_records(srv.port, "ks")}
    r0 = rows[0]
    h = headers(r0[3])
    rec = recs[int(h["seq"])]
    t.ok(json.loads(r0[4]) == rec["payload"] and h["strand"] == "ks" and h["record_hash"] == rec["record_hash"],
         "value = the payload as JSON; headers strand, seq, record_hash", (r0, rec))

with t.section("sink: without key_field the key is the record_hash", srv):
    post("ks2", [{"n": i} for i in range(5)])
    a = create({"name": "hash keys", "kind": "kafka_sink", "strands": ["ks2"], "config": {
        "brokers": m.brokers, "topic": "out2", "start": "earliest", "acks": "leader"}})
    t.ok(st.wait_until(lambda: conn(a["id"])["stats"]["delivered"] == 5, 30), "5 delivered", conn(a["id"]))
    rows = m.consume("out2")
    t.ok(len(rows) == 5 and all(r[2] == headers(r[3])["record_hash"] for r in rows),
         "key = record_hash (a topic created on first produce)", rows)

with t.section("sink: a message refused for good is a dead letter, the others go on", srv):
    big = "x" * 1500000
    post("ks3", [{"n": 0}])
    r = srv.req("POST", "/v1/records", {"strand": "ks3", "payload": {"n": 1, "big": big}})
    assert r.status == 201, r
    post("ks3", [{"n": 2}, {"n": 3}])
    a = create({"name": "big", "kind": "kafka_sink", "strands": ["ks3"], "config": {
        "brokers": m.brokers, "topic": "out3", "start": "earliest", "idempotent": True}})
    t.ok(st.wait_until(lambda: conn(a["id"])["stats"]["dead_lettered"] == 1 and conn(a["id"])["stats"]["delivered"] == 3,
                       30), "1 dead letter, 3 delivered", conn(a["id"]))
    dl = srv.req("GET", C + "/" + a["id"] + "/dead-letters").json
    items = dl.get("dead_letters") or dl.get("items") or []
    t.ok(len(items) == 1 and items[0]["seq"] == 1 and "large" in json.dumps(items[0]).lower(),
         "the dead letter is the too-large record, saying why", dl)
    rows = m.consume("out3")
    t.eq(sorted(json.loads(r[4])["n"] for r in rows), [0, 2, 3], "kcat sees the three others, once each")

with t.section("sink: a refused message among pipelined batches: no duplicates, order kept", srv):
    post("ks6", [{"k": "k%d" % (i % 3), "n": i} for i in range(6000)])
    r = srv.req("POST", "/v1/records", {"strand": "ks6", "payload": {"k": "k0", "n": 6000, "big": "y" * 1500000}})
    assert r.status == 201, r
    post("ks6", [{"k": "k%d" % (i % 3), "n": i} for i in range(6001, 14000)])
    a = create({"name": "pipelined", "kind": "kafka_sink", "strands": ["ks6"], "config": {
        "brokers": m.brokers, "topic": "out6", "start": "earliest", "idempotent": True, "key_field": "k"}})
    t.ok(st.wait_until(lambda: conn(a["id"])["stats"]["delivered"] == 13999 and conn(a["id"])["stats"]["dead_lettered"] == 1,
                       60), "13,999 delivered, the big one dead-lettered", conn(a["id"]))
    rows = m.consume("out6")
    ns = [json.loads(r[4])["n"] for r in rows]
    t.eq(sorted(ns), [i for i in range(14000) if i != 6000],
         "kcat reads each of the others once: what the broker had acknowledged is not produced again")
    keys = by_key(rows)
    t.ok(all([s for _, _, s in sorted(v)] == sorted(s for _, _, s in v) for v in keys.values()),
         "per key, offsets follow seq order")

with t.section("sink: a leader change and a slow broker (mock faults): nothing lost, nothing twice", srv):
    a = create({"name": "leader moves", "kind": "kafka_sink", "strands": ["ks7"], "config": {
        "brokers": m.brokers, "topic": "out7", "idempotent": True, "key_field": "k"}})
    st.wait_until(lambda: conn(a["id"])["state"] == "running", 20)
    # Produce (API key 0): NOT_LEADER_OR_FOLLOWER (6) x3 (a leader change: retriable), and a
    # slow broker (200 ms more round trip) for the first half
    t.ok(m.cmd("errors 0 6 3") and m.cmd("rtt 1 200"), "the mock fails the next 3 produce requests, slowly")
    post("ks7", [{"k": "k%d" % (i % 5), "n": i} for i in range(1000)])
    t.ok(st.wait_until(lambda: conn(a["id"])["stats"]["delivered"] == 1000, 60), "1000 delivered", conn(a["id"]))
    t.ok(m.cmd("rtt 1 0"), "the broker is fast again")
    post("ks7", [{"k": "k%d" % (i % 5), "n": i} for i in range(1000, 2000)])
    t.ok(st.wait_until(lambda: conn(a["id"])["stats"]["delivered"] == 2000, 60), "all 2000 delivered",
         conn(a["id"]))
    rows = m.consume("out7")
    t.eq(sorted(json.loads(r[4])["n"] for r in rows), list(range(2000)), "kcat reads each once")
    keys = by_key(rows)
    t.ok(all([s for _, _, s in sorted(v)] == sorted(s for _, _, s in v) for v in keys.values()),
         "per key, offsets follow seq order")

with t.section("sink: a broker with a long round trip passes the health check", srv):
    # the health check's metadata request runs in slices so that a stop is seen soon; an answer
    # that comes after its slice is lost, so the slices grow: an answer 600 ms late is still heard
    t.ok(m.cmd("rtt 1 600"), "the broker answers 600 ms late")
    a = create({"name": "far away", "kind": "kafka_sink", "strands": ["ks9"], "config": {
        "brokers": m.brokers, "topic": "out9"}})
    post("ks9", [{"n": i} for i in range(5)])
    t.ok(st.wait_until(lambda: conn(a["id"])["stats"]["delivered"] == 5, 60), "it runs and delivers",
         conn(a["id"]))
    t.ok(m.cmd("rtt 1 0"), "the broker is fast again")

with t.section("sink: the broker goes down and comes back: nothing lost, nothing twice", srv):
    a = create({"name": "flaky", "kind": "kafka_sink", "strands": ["ks4"], "config": {
        "brokers": m.brokers, "topic": "out4", "idempotent": True, "key_field": "k", "timeout_ms": 1500,
        "retry": {"initial_backoff_ms": 100, "max_backoff_ms": 500}}})
    st.wait_until(lambda: conn(a["id"])["state"] == "running", 20)
    post("ks4", [{"k": "a", "n": i} for i in range(100)])
    st.wait_until(lambda: conn(a["id"])["stats"]["delivered"] == 100, 30)
    t.ok(m.cmd("down 1"), "broker 1 is down")
    post("ks4", [{"k": "a", "n": i} for i in range(100, 300)])
    failed = st.wait_until(lambda: conn(a["id"])["stats"]["failed"] > 0, 30)
    t.ok(failed and conn(a["id"])["stats"]["delivered"] < 300, "while it is down, attempts fail and wait",
         conn(a["id"]))
    t.ok(m.cmd("up 1"), "broker 1 is up again")
    back = time.monotonic()
    t.ok(st.wait_until(lambda: conn(a["id"])["stats"]["delivered"] == 300, 60), "all 300 delivered after",
         conn(a["id"]))
    # reconnect.backoff.max.ms 1000 (librdkafka's default, 10 s, resumed ~10 s late)
    t.ok(time.monotonic() - back < 5, "delivery resumes within 5 s of the broker's return (took %.1f s)"
         % (time.monotonic() - back))
    rows = m.consume("out4")
    ns = [json.loads(r[4])["n"] for r in sorted(rows, key=lambda r: int(r[1]))]
    t.eq(ns, list(range(300)), "kcat reads 0..299 in order, none twice (idempotent)")

with t.section("sink: transactional_id", srv):
    post("ks5", [{"n": i} for i in range(50)])
    a = create({"name": "txn", "kind": "kafka_sink", "strands": ["ks5"], "config": {
        "brokers": m.brokers, "topic": "out5", "start": "earliest", "transactional_id": "sluice-txn-1"}})
    ok = st.wait_until(lambda: conn(a["id"])["stats"]["delivered"] == 50, 30)
    t.ok(ok, "50 delivered in transactions", conn(a["id"]))
    rows = m.consume("out5", fmt="%o\t%s\n")
    t.eq(sorted(json.loads(r[1])["n"] for r in rows), list(range(50)), "kcat reads them once each")


# ---- the source ----


def strand_payloads(strand):
    if strand not in st.strands(srv.port):
        return []  # created by the connector's first append
    return [r["payload"] for r in st.all_records(srv.port, strand)]


with t.section("source: an unreachable broker keeps it out of running", srv):
    a = create({"name": "src nowhere", "kind": "kafka-source", "config": {
        "brokers": ["127.0.0.1:1"], "topic": "in", "consumer_group": "g0", "strand": "kdead"}})
    ok = st.wait_until(lambda: conn(a["id"])["state"] not in ("running",) and conn(a["id"])["last_error"], 20)
    t.ok(ok and "kafka" in conn(a["id"])["last_error"], "not running, last_error says why", conn(a["id"]))
    srv.req("DELETE", C + "/" + a["id"])

with t.section("source: what kcat produced, in the strand once, with key, headers, offsets", srv):
    lines = ['k%d\t{"n":%d}' % (i % 5, i) for i in range(500)]
    m.produce("in", lines, key_sep="\t")
    m.produce("in", ["not json at all"], extra=["-H", "trace=abc"])
    m.produce("in", ["gone:"], key_sep=":", extra=["-Z"])  # a null value: a tombstone
    a = create({"name": "from kafka", "kind": "kafka-source", "config": {
        "brokers": m.brokers, "topic": "in", "consumer_group": "sluice-test", "start_offset": "earliest",
        "strand": "kin"}})
    t.ok(a["config"].get("group_id") == "sluice-test" and a["config"].get("auto_offset_reset") == "earliest",
         "Rivven's consumer_group / start_offset are stored as group_id / auto_offset_reset", a["config"])
    got = st.wait_until(lambda: len(strand_payloads("kin")) >= 502, 60)
    ps = strand_payloads("kin")
    t.eq(len(ps), 502, "502 records in the strand")
    js = [p for p in ps if isinstance(p.get("value"), dict)]
    t.eq(sorted(p["value"]["n"] for p in js), list(range(500)), "every JSON message once, as JSON")
    per = {}
    for p in js:
        per.setdefault(p["key"], []).append((p["partition"], p["offset"], p["value"]["n"]))
    t.ok(all([n for _, _, n in sorted(v)] == sorted(n for _, _, n in v) for v in per.values())
         and all(len({x for x, _, _ in v}) == 1 for v in per.values()),
         "per key: one partition, offsets in produce order")
    p0 = js[0]
    t.ok(set(p0) >= {"topic", "partition", "offset", "timestamp", "timestamp_type", "key", "headers", "value"}
         and p0["topic"] == "in" and p0["timestamp_type"] == "create_time" and isinstance(p0["timestamp"], int),
         "the record carries topic, partition, offset, timestamp, key, headers, value", p0)
    raw = [p for p in ps if "value_base64" in p or p.get("value") is None]
    t.ok(any(p.get("value_base64") == "bm90IGpzb24gYXQgYWxs" and p["headers"] == [{"key": "trace", "value": "abc"}]
             for p in raw), "a value that is not JSON is kept as value_base64; headers in order", raw)
    recs = st.all_records(srv.port, "kin")
    t.ok(any(p.get("value") is None and "value_base64" not in p and r["flags"] & 2 for p, r in
             ((r["payload"], r) for r in recs)), "a null value (kcat -Z) is a tombstone: value null, flag TOMBSTONE")
    c = conn(a["id"])
    stats = c.get("stats") or {}
    t.ok(stats.get("kafka_source_messages_consumed") == 502 and stats.get("kafka_source_polls", 0) > 0
         and stats.get("kafka_source_bytes_consumed", 0) > 0, "Rivven's metrics as gauges", stats)
    text = srv.req("GET", "/metrics").body.decode()
    t.ok("sluice_connector_kafka_source_messages_consumed{" in text, "... and in /metrics")
    last = st.all_records(srv.port, "kin")[-1]["payload"]
    t.ok(isinstance(last.get("sluice_next_offsets"), dict), "the last record of a group carries sluice_next_offsets",
         last)

with t.section("source: offsets are committed (after fsync): a restart does not read again", srv):
    m.produce("in", ['k1\t{"n":%d}' % i for i in range(500, 520)], key_sep="\t")
    t.ok(st.wait_until(lambda: len(strand_payloads("kin")) == 522, 30), "20 more arrive while running")
    srv.stop()
    srv.start()
    m.produce("in", ['k2\t{"n":%d}' % i for i in range(520, 530)], key_sep="\t")
    t.ok(st.wait_until(lambda: len(strand_payloads("kin")) >= 532, 60), "after a restart, the new ones arrive")
    ns = sorted(p["value"]["n"] for p in strand_payloads("kin") if isinstance(p.get("value"), dict))
    t.eq(ns, list(range(530)), "and nothing twice")

with t.section("source: the broker goes down and comes back while consuming", srv):
    m.cmd("topic in2 2")
    m.produce("in2", ['{"n":%d}' % i for i in range(300)])
    a = create({"name": "flaky src", "kind": "kafka-source", "config": {
        "brokers": m.brokers, "topic": "in2", "consumer_group": "flaky", "start_offset": "earliest",
        "strand": "kin4"}})
    t.ok(st.wait_until(lambda: len(strand_payloads("kin4")) == 300, 60), "300 consumed")
    t.ok(m.cmd("down 1"), "broker 1 is down")
    shown = st.wait_until(lambda: conn(a["id"])["last_error"], 30)
    t.ok(shown and "kafka" in conn(a["id"])["last_error"], "last_error says the broker is gone", conn(a["id"]))
    t.ok(m.cmd("up 1"), "broker 1 is up again")
    m.produce("in2", ['{"n":%d}' % i for i in range(300, 500)])
    t.ok(st.wait_until(lambda: len(strand_payloads("kin4")) >= 500, 90), "the 200 produced after arrive",
         len(strand_payloads("kin4")))
    t.eq(sorted(p["value"]["n"] for p in strand_payloads("kin4")), list(range(500)), "every message once")

with t.section("source: assignment all reads every partition without joining; offsets still committed", srv):
    m.cmd("topic in5 3")
    m.produce("in5", ['k%d\t{"n":%d}' % (i % 7, i) for i in range(300)], key_sep="\t")
    a = create({"name": "all parts", "kind": "kafka-source", "config": {
        "brokers": m.brokers, "topic": "in5", "consumer_group": "allg", "start_offset": "earliest",
        "assignment": "all", "strand": "kin5"}})
    t.eq(a["config"].get("assignment"), "all", "assignment all is kept")
    t.ok(st.wait_until(lambda: len(strand_payloads("kin5")) >= 300, 60), "300 consumed",
         len(strand_payloads("kin5")))
    t.eq(sorted({p["partition"] for p in strand_payloads("kin5")}), [0, 1, 2], "from all 3 partitions")
    srv.stop()
    srv.start()
    m.produce("in5", ['k%d\t{"n":%d}' % (i % 7, i) for i in range(300, 320)], key_sep="\t")
    t.ok(st.wait_until(lambda: len(strand_payloads("kin5")) >= 320, 60), "after a restart, the new ones arrive")
    t.eq(sorted(p["value"]["n"] for p in strand_payloads("kin5")), list(range(320)), "and nothing twice")
    srv.req("DELETE", C + "/" + a["id"])
    m.produce("in5", ['k%d\t{"n":%d}' % (i % 7, i) for i in range(320, 330)], key_sep="\t")
    b = create({"name": "group member", "kind": "kafka-source", "config": {
        "brokers": m.brokers, "topic": "in5", "consumer_group": "allg", "start_offset": "earliest",
        "strand": "kin6"}})
    t.ok(st.wait_until(lambda: len(strand_payloads("kin6")) >= 10, 60), "a member of the same group reads on",
         len(strand_payloads("kin6")))
    t.eq(sorted(p["value"]["n"] for p in strand_payloads("kin6")), list(range(320, 330)),
         "from the offsets the first one committed: only the 10 new ones")
    srv.req("DELETE", C + "/" + b["id"])

with t.section("source: a second connector of another group reads the topic again (SapixDB keys)", srv):
    a = create({"name": "sapix", "kind": "kafka", "config": {
        "brokers": m.brokers, "topic": "in", "group_id": "other", "auto_offset_reset": "earliest",
        "strand": "kin2"}})
    t.ok(st.wait_until(lambda: len(strand_payloads("kin2")) == 532, 60), "532 records in its strand",
         len(strand_payloads("kin2")))
    b = create({"name": "latest", "kind": "kafka-source", "config": {
        "brokers": m.brokers, "topic": "in", "consumer_group": "late", "start_offset": 530, "strand": "kin3"}})
    t.ok(b["config"]["start_offset"] == 530, "start_offset N is kept", b["config"])

t.done()
