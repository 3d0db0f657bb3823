"""Boboyka typed events (/v1/boboyka/ingest, status, events) with the Supabase dual-write.

The mirror target is the Supabase STAND-IN in tests/peers (supabase_standin.cjs: PostgREST's
insert contract over a REAL PostgreSQL 15 started by tests/peers/pg.sh) - PostgREST itself cannot
be installed here. What a user relies on: the seed's bodies and answers work unchanged; bad
events are refused naming the field and write nothing; every event is durable in the strand
"boboyka" whatever Supabase does; a failed mirror write is retried from a durable queue (across
restarts) until it succeeds, and each record lands exactly once in PostgreSQL; a slow Supabase
cannot hold an ingest longer than the timeout; the events feed pages stably."""
import concurrent.futures
import os
import sys
import time

import sluicetest as st

wait = st.wait_until

sys.path.insert(0, os.path.join(st.ROOT, "tests", "peers"))
from supabase import Supabase  # noqa: E402
from webhook_receiver import Receiver  # noqa: E402

t = st.Checks()
st.require_binary(t)

# The seed's example bodies, one per record type.
SEED = {
    "project_build": {"project_id": "proj_abc", "build_id": "bld_xyz", "status": "succeeded",
                      "agent_id": "boboyka_builder", "started_at_ms": 1747000000000,
                      "completed_at_ms": 1747000012000,
                      "output_url": "https://cdn.example.com/builds/bld_xyz.tar.gz"},
    "build_queue_item": {"queue_id": "q_001", "project_id": "proj_abc", "priority": 1,
                         "status": "waiting", "enqueued_at_ms": 1747000000000, "dequeued_at_ms": None},
    "agent_health": {"agent_id": "boboyka_builder", "status": "healthy", "cpu_pct": 23.4,
                     "memory_mb": 512, "checked_at_ms": 1747000000000},
    "audit_log": {"agent_id": "boboyka_builder", "event": "deploy_completed", "actor": "ci_pipeline",
                  "timestamp_ms": 1747000000000, "metadata": {"env": "production"}},
}
INGEST_EXAMPLE = {"record_type": "project_build",
                  "data": {"project_id": "proj_abc", "build_id": "bld_001", "status": "running",
                           "agent_id": "boboyka_builder"}}
TYPES = ["project_build", "build_queue_item", "agent_health", "audit_log"]
TABLES = {"project_build": "project_builds", "build_queue_item": "build_queue",
          "agent_health": "agent_health", "audit_log": "agent_audit_log"}


def ingest(srv, record_type, data):
    return srv.req("POST", "/v1/boboyka/ingest", {"record_type": record_type, "data": data})


def status(srv):
    r = srv.req("GET", "/v1/boboyka/status")
    assert r.status == 200, r
    return r.json


def events(srv, q=""):
    r = srv.req("GET", "/v1/boboyka/events" + q)
    assert r.status == 200, r
    return r.json


def boboyka_count(srv):
    return st.counts(srv.port).get("boboyka", 0)


srv = st.Server().start()

with t.section("ingest without Supabase: the seed's bodies and answers", srv):
    hashes = {}
    for rt in TYPES:
        r = ingest(srv, rt, SEED[rt])
        t.eq(r.status, 201, "%s from the seed's schema is accepted" % rt)
        j = r.json or {}
        t.eq(sorted(j), ["dual_write", "ingested_at_ms", "record_hash", "record_type"],
             "%s: the answer has the seed's fields" % rt)
        t.eq(j.get("dual_write"), {"enabled": False, "ok": None, "error": None},
             "%s: dual_write is enabled:false, ok:null, error:null when not configured" % rt)
        t.ok(st.is_hex64(j.get("record_hash")) and j.get("record_type") == rt, "%s: hash and type" % rt, j)
        hashes[rt] = j.get("record_hash")
    r = srv.req("POST", "/v1/boboyka/ingest", INGEST_EXAMPLE)
    t.eq(r.status, 201, "the seed's ingest request works unchanged")
    rec = srv.req("GET", "/v1/records/" + r.json["record_hash"]).json
    t.eq(rec["strand"], "boboyka", "the event is a record of the strand boboyka")
    t.eq(rec["payload"], dict(INGEST_EXAMPLE["data"], _boboyka_type="project_build"),
         "its payload is the data tagged with _boboyka_type")
    t.eq(rec["timestamp_ms"], r.json["ingested_at_ms"], "ingested_at_ms is the record's timestamp")
    before = int(time.time() * 1000)
    r = ingest(srv, "audit_log", {"agent_id": "a1", "event": "config_changed", "actor": "ops",
                                  "metadata": {"k": [1, 2]}})
    after = int(time.time() * 1000)
    ts = srv.req("GET", "/v1/records/" + r.json["record_hash"]).json["payload"].get("timestamp_ms")
    t.ok(isinstance(ts, int) and before <= ts <= after, "audit_log without timestamp_ms gets the ingest time", ts)
    r = ingest(srv, "agent_health", {"agent_id": "a2", "status": "degraded", "region": "eu", "tags": ["x"]})
    t.eq(r.status, 201, "unknown fields are accepted")
    t.eq(events(srv, "?limit=1")["events"][0]["data"],
         {"agent_id": "a2", "status": "degraded", "region": "eu", "tags": ["x"]}, "unknown fields are kept")
    t.eq(ingest(srv, "build_queue_item", {"status": "done"}).status, 201, "fields may be omitted")
    t.eq(ingest(srv, "agent_health", {"cpu_pct": 7}).status, 201, "cpu_pct may be an integer number")

with t.section("bad events are refused naming the field, and write nothing", srv):
    n0, s0 = boboyka_count(srv), status(srv)["total_events"]
    bad = [
        ({"data": {}}, "record_type"),
        ({"record_type": "deploy", "data": {}}, "record_type"),
        ({"record_type": 3, "data": {}}, "record_type"),
        ({"record_type": "audit_log"}, "data"),
        ({"record_type": "audit_log", "data": [1]}, "data"),
        ({"record_type": "audit_log", "data": {}, "extra": 1}, "extra"),
        ({"record_type": "project_build", "data": {"status": "done"}}, "data.status"),
        ({"record_type": "build_queue_item", "data": {"status": "running"}}, "data.status"),
        ({"record_type": "agent_health", "data": {"status": "ok"}}, "data.status"),
        ({"record_type": "build_queue_item", "data": {"priority": "1"}}, "data.priority"),
        ({"record_type": "build_queue_item", "data": {"priority": 1.5}}, "data.priority"),
        ({"record_type": "agent_health", "data": {"cpu_pct": "high"}}, "data.cpu_pct"),
        ({"record_type": "agent_health", "data": {"memory_mb": True}}, "data.memory_mb"),
        ({"record_type": "project_build", "data": {"started_at_ms": -1}}, "data.started_at_ms"),
        ({"record_type": "project_build", "data": {"started_at_ms": "2025-01-01"}}, "data.started_at_ms"),
        ({"record_type": "project_build", "data": {"build_id": 7}}, "data.build_id"),
        ({"record_type": "audit_log", "data": {"metadata": "env=prod"}}, "data.metadata"),
        ({"record_type": "audit_log", "data": {"timestamp_ms": 1.5}}, "data.timestamp_ms"),
        ({"record_type": "audit_log", "data": {"_boboyka_type": "x"}}, "data._boboyka_type"),
    ]
    for body, field in bad:
        r = srv.req("POST", "/v1/boboyka/ingest", body)
        j = r.json if isinstance(r.json, dict) else {}
        t.ok(r.status == 400 and field in j.get("error", "") and j.get("code"),
             "%s -> 400 naming %s" % (st._clip(body, 90), field), r)
    r = srv.req("POST", "/v1/boboyka/ingest", {"record_type": "agent_health", "data": {"status": "sick"}})
    t.ok("healthy, degraded, unhealthy" in r.json.get("error", ""), "an enum error lists the allowed values", r.json)
    r = srv.req("POST", "/v1/boboyka/ingest", {"record_type": "x", "data": {}})
    t.ok("project_build, build_queue_item, agent_health, audit_log" in r.json.get("error", ""),
         "an unknown record_type lists the four types", r.json)
    for raw, what in [(b'{"record_type": "audit_log", "data": {', "truncated JSON"),
                      (b'{"record_type":"audit_log","record_type":"audit_log","data":{}}', "a duplicate key"),
                      (b'{"record_type":"audit_log","data":{"n":123456789012345678901234567890}}', "an integer beyond 64 bits"),
                      (b"", "an empty body")]:
        r = srv.req("POST", "/v1/boboyka/ingest", raw)
        t.ok(r.status == 400 and isinstance(r.json, dict) and r.json.get("code"), "%s -> 400" % what, r)
    r = srv.req("POST", "/v1/boboyka/ingest", b"record_type=audit_log", ctype="text/plain")
    t.eq(r.status, 415, "a non-JSON Content-Type -> 415")
    t.eq(srv.req("GET", "/v1/boboyka/ingest").status, 405, "GET on the ingest route -> 405")
    t.eq(boboyka_count(srv), n0, "no bad event reached the strand")
    t.eq(status(srv)["total_events"], s0, "no bad event was counted")
    t.ok(srv.alive(), "the server keeps serving")

with t.section("status and the events feed", srv):
    s = status(srv)
    t.eq(s["dual_write_enabled"], False, "dual_write_enabled is false without the two variables")
    t.ok(s["supabase_url"] is None and "Sluice" in s["integration_phase"]
         and "dual-write off" in s["integration_phase"], "a Sluice-only phase text, no URL", s)
    t.eq(sorted(s["event_counts"]), sorted(TYPES), "event_counts has all four types")
    want = {"project_build": 2, "build_queue_item": 2, "agent_health": 3, "audit_log": 2}
    t.eq(s["event_counts"], want, "event_counts counts each type")
    t.eq(s["total_events"], 9, "total_events is their sum")
    t.eq((s["mirror_pending"], s["mirror_failed"]), (0, 0), "nothing pending or failed")
    feed = events(srv)
    t.eq(len(feed["events"]), 9, "the default page holds every event (limit 50)")
    t.eq(feed["next_cursor"], None, "next_cursor is null on the last page")
    seqs = [srv.req("GET", "/v1/records/" + e["record_hash"]).json["seq"] for e in feed["events"]]
    t.ok(seqs == sorted(seqs, reverse=True), "newest first", seqs)
    e0 = [e for e in feed["events"] if e["record_hash"] == hashes["project_build"]][0]
    t.eq(e0["data"], SEED["project_build"], "an event carries its data, without the tag")
    t.ok(e0["dual_write_ok"] is None and e0["dual_write_error"] is None and e0["record_type"] == "project_build",
         "dual_write_ok is null when dual-write is off", e0)
    au = events(srv, "?record_type=audit_log")["events"]
    t.ok(len(au) == 2 and all(e["record_type"] == "audit_log" for e in au), "record_type filters", au)
    # pages stay stable while new events arrive between them
    p1 = events(srv, "?limit=4")
    for i in range(5):
        ingest(srv, "agent_health", {"agent_id": "late-%d" % i, "status": "healthy"})
    p2 = events(srv, "?limit=4&cursor=" + p1["next_cursor"])
    p3 = events(srv, "?limit=4&cursor=" + p2["next_cursor"])
    paged = [e["record_hash"] for e in p1["events"] + p2["events"] + p3["events"]]
    t.eq(paged, [e["record_hash"] for e in feed["events"]],
         "cursor paging returns exactly the events of the first snapshot, no gap, no repeat")
    t.eq(p3["next_cursor"], None, "the last page has next_cursor null")
    t.eq(len(events(srv, "?limit=1000")["events"]), 14, "limit=1000 is allowed")
    for q, field in [("?limit=0", "limit"), ("?limit=1001", "limit"), ("?limit=ten", "limit"),
                     ("?record_type=deploys", "record_type"), ("?cursor=abc", "cursor"),
                     ("?cursor=-1", "cursor")]:
        r = srv.req("GET", "/v1/boboyka/events" + q)
        t.ok(r.status == 400 and field in r.json.get("error", ""), "%s -> 400 naming %s" % (q, field), r)

with t.section("outbound connectors follow the boboyka strand", srv):
    rx = Receiver().start()
    r = srv.req("POST", "/v1/connectors", {"name": "bbk-hook", "kind": "webhook", "strands": ["boboyka"],
                                           "config": {"url": rx.url("/hook")}})
    t.eq(r.status, 201, "a webhook on the strand boboyka is created")
    h = ingest(srv, "audit_log", SEED["audit_log"]).json["record_hash"]
    got = rx.wait_for(lambda reqs: [q for q in reqs if (q.get("json") or {}).get("record_hash") == h], 10)
    t.ok(got and got[0]["json"]["payload"]["_boboyka_type"] == "audit_log",
         "the webhook receives the Boboyka event as an ordinary record", got)
    srv.req("DELETE", "/v1/connectors/" + r.json["id"])
    rx.stop()

with t.section("null in an optional field is absent (a Python SDK's None defaults)", srv):
    r = srv.req("POST", "/v1/boboyka/ingest", {"record_type": "project_build",
                                               "data": {"project_id": "p-null", "completed_at_ms": None,
                                                        "output_url": None}})
    t.eq(r.status, 201, "null in an optional field that the seed does not make nullable: accepted")
    got = [e for e in events(srv, "?limit=1000")["events"] if e["data"].get("project_id") == "p-null"]
    t.ok(got and got[0]["data"] == {"project_id": "p-null"}, "and stored as if it were absent", got)

with t.section("counts and events survive a restart; a lost index is rebuilt from the strand", srv):
    s1, f1 = status(srv), events(srv, "?limit=1000")
    srv.stop()
    srv.start()
    t.eq(status(srv), s1, "status is the same after a restart")
    t.eq(events(srv, "?limit=1000"), f1, "the events feed is the same after a restart")
    srv.stop()
    for suffix in ("", "-wal", "-shm"):
        p = os.path.join(srv.data, "boboyka.db" + suffix)
        if os.path.exists(p):
            os.remove(p)
    srv.start()
    t.eq(status(srv)["event_counts"], s1["event_counts"], "with boboyka.db deleted, the counts come back from the strand")
    t.eq([e["record_hash"] for e in events(srv, "?limit=1000")["events"]],
         [e["record_hash"] for e in f1["events"]], "and so do the events")
srv.stop()

# ------------------------------------------------------------------ dual-write

sb = Supabase(key="service-role-123")
st.at_cleanup(sb.stop)
sb.start()
os.environ["BOBOYKA_SUPABASE_URL"] = sb.url
os.environ["BOBOYKA_SUPABASE_KEY"] = sb.key
FAST = ["--boboyka-dedup-column", "record_hash", "--boboyka-retry-base-ms", "50",
        "--boboyka-retry-max-ms", "200"]
dw = st.Server(args=FAST).start()


def rows(table, where="true"):
    return int(sb.sql("SELECT count(*) FROM %s WHERE %s" % (table, where)))


def row_count(h):
    return sum(rows(tb, "record_hash = '%s'" % h) for tb in TABLES.values())


def row_counts(hs):
    """row_count of each hash in hs, with one query (a psql run per hash and table took 10 s)."""
    union = " UNION ALL ".join("SELECT record_hash FROM %s" % tb for tb in TABLES.values())
    out = sb.sql("SELECT record_hash, count(*) FROM (%s) u WHERE record_hash IN (%s) GROUP BY 1"
                 % (union, ",".join("'%s'" % h for h in hs)))
    got = dict(line.split("|") for line in out.splitlines() if line)
    return [int(got.get(h, 0)) for h in hs]


with t.section("dual-write to the Supabase stand-in (seed variable names)", dw):
    s = status(dw)
    t.eq(s["integration_phase"], "Phase 1 \u2014 dual-write (Sluice + Supabase)", "the phase text is the seed's, Sluice for SapixDB")
    t.ok(s["dual_write_enabled"] is True and s["supabase_url"] == sb.url, "dual_write_enabled and the URL", s)
    t.ok(sb.key not in dw.req("GET", "/v1/boboyka/status").body.decode(), "the key is never returned")
    mh = {}
    for rt in TYPES:
        r = ingest(dw, rt, SEED[rt])
        t.eq((r.status, r.json.get("dual_write")), (201, {"enabled": True, "ok": True, "error": None}),
             "%s is mirrored: ok true" % rt)
        mh[rt] = r.json["record_hash"]
    row = sb.sql("SELECT project_id, build_id, status, agent_id, started_at_ms, completed_at_ms, output_url "
                 "FROM project_builds WHERE record_hash = '%s'" % mh["project_build"])
    t.eq(row, "proj_abc|bld_xyz|succeeded|boboyka_builder|1747000000000|1747000012000|"
         "https://cdn.example.com/builds/bld_xyz.tar.gz", "project_build landed in project_builds with its data")
    t.eq(sb.sql("SELECT queue_id, priority, dequeued_at_ms IS NULL FROM build_queue"), "q_001|1|t",
         "build_queue_item landed in build_queue (null kept)")
    t.eq(sb.sql("SELECT cpu_pct, memory_mb FROM agent_health"), "23.4|512", "agent_health landed in agent_health")
    t.eq(sb.sql("SELECT metadata->>'env' FROM agent_audit_log"), "production", "audit_log landed in agent_audit_log")
    ev = events(dw, "?limit=4")["events"]
    t.ok(all(e["dual_write_ok"] is True and e["dual_write_state"] == "ok" and e["dual_write_attempts"] == 1
             for e in ev), "the event references say dual_write_ok true after one attempt", ev)

with t.section("a failing Supabase never fails the write; the retry queue delivers later", dw):
    sb.control(mode="fail", status=503)
    n0 = boboyka_count(dw)
    r = ingest(dw, "project_build", {"project_id": "p", "build_id": "b-503", "status": "queued"})
    d = r.json.get("dual_write", {})
    t.ok(r.status == 201 and d.get("enabled") is True and d.get("ok") is False and "503" in (d.get("error") or ""),
         "a 503 from Supabase: 201, ok false, the error says 503", r)
    h503 = r.json["record_hash"]
    t.eq(boboyka_count(dw), n0 + 1, "the strand write happened anyway")
    t.eq(dw.req("GET", "/v1/records/" + h503).status, 200, "and the record can be read")
    t.ok(wait(lambda: status(dw)["mirror_pending"] == 1, 5), "status counts it as mirror_pending", status(dw))
    e = events(dw, "?limit=1")["events"][0]
    t.ok(e["dual_write_ok"] is False and "503" in e["dual_write_error"] and e["dual_write_state"] == "pending",
         "its event reference says dual_write_ok false, pending, with the error", e)
    t.ok(wait(lambda: events(dw, "?limit=1")["events"][0]["dual_write_attempts"] >= 3, 10),
         "it is retried in the background while Supabase fails", events(dw, "?limit=1")["events"][0])
    sb.control(mode="ok")
    t.ok(wait(lambda: events(dw, "?limit=1")["events"][0]["dual_write_ok"] is True, 10),
         "a retried success flips dual_write_ok to true", events(dw, "?limit=1")["events"][0])
    t.eq(row_count(h503), 1, "the record landed exactly once in PostgreSQL")
    t.eq(status(dw)["mirror_pending"], 0, "nothing pending any more")

with t.section("a slow Supabase cannot hold an ingest past the timeout", dw):
    sb.control(mode="hang", hang_ms=3500)
    t0 = time.monotonic()
    r = ingest(dw, "agent_health", {"agent_id": "slow", "status": "healthy"})
    took = time.monotonic() - t0
    d = r.json.get("dual_write", {})
    t.ok(r.status == 201 and d.get("ok") is False and "timeout" in (d.get("error") or ""),
         "the answer comes with ok false and a timeout error", r)
    t.ok(1.9 <= took < 3.0, "after the 2 s timeout, not the 3.5 s Supabase takes (%.2f s)" % took)
    hs = r.json["record_hash"]
    sb.control(mode="ok")
    # the stand-in commits the slow insert after Sluice gave up; the retry must not add a row
    t.ok(wait(lambda: events(dw, "?limit=1")["events"][0]["dual_write_ok"] is True, 10),
         "the background retry settles it", events(dw, "?limit=1")["events"][0])
    # both the late insert and the retry have been answered by now (the event is settled)
    t.ok(wait(lambda: row_count(hs) >= 1, 5), "the late insert landed")
    t.eq(row_count(hs), 1, "exactly one row despite the ambiguous timeout (dedup column)")

with t.section("the mirror is a supabase connector the framework drives; refused rows are dead letters", dw):
    dw.stop()
    dw.start(FAST + ["--boboyka-mirror-max-retries", "2"])
    mid = status(dw)["mirror_connector"]
    c = dw.req("GET", "/v1/connectors/" + mid).json
    t.ok(c["name"] == "boboyka-supabase" and c["kind"] == "supabase" and c["strands"] == ["boboyka"]
         and c["managed_by"].startswith("boboyka") and c["config"]["key"] == "***"
         and c["config"]["mapping"] == "boboyka" and c["config"]["retry"]["max_retries"] == 2,
         "status names the mirror connector: kind supabase on the strand boboyka, managed, key hidden", c)
    r = dw.req("PATCH", "/v1/connectors/" + mid, {"config": {"url": "http://127.0.0.1:1"}})
    t.ok(r.status == 409 and r.json["code"] == "connector_managed", "changing its config through the API: 409", r)
    r = dw.req("DELETE", "/v1/connectors/" + mid)
    t.ok(r.status == 409 and r.json["code"] == "connector_managed", "deleting it: 409", r)
    # a row PostgREST refuses for good: dead-lettered at once (not retried), replayable once fixed
    r = ingest(dw, "agent_health", {"agent_id": "a", "status": "healthy", "no_such_column": 1})
    d = r.json["dual_write"]
    t.ok(d["ok"] is False and "no_such_column" in (d["error"] or "") and "400" in d["error"],
         "PostgREST's 400 and its message reach the answer", d)
    bad = r.json["record_hash"]
    e = events(dw, "?limit=1")["events"][0]
    t.ok(e["dual_write_state"] == "failed" and e["dual_write_attempts"] == 1,
         "a refused row is failed after one attempt (a 400 does not heal by retrying)", e)
    t.eq(status(dw)["mirror_failed"], 1, "status counts mirror_failed")
    dl = dw.req("GET", "/v1/connectors/%s/dead-letters" % mid).json["dead_letters"]
    t.ok(len(dl) == 1 and dl[0]["record_hash"] == bad and dl[0]["last_status"] == 400
         and "no_such_column" in dl[0]["last_error"], "it is the mirror connector's dead letter", dl)
    sb.sql("ALTER TABLE agent_health ADD COLUMN no_such_column int")
    sb.control(reload_schema=True)  # as NOTIFY pgrst, 'reload schema' does
    t.eq(dw.req("POST", "/v1/connectors/%s/dead-letters/replay" % mid).status, 202, "replay is accepted")
    t.ok(wait(lambda: events(dw, "?limit=1")["events"][0]["dual_write_state"] == "ok", 10),
         "after the column exists, a replay mirrors it: ok", events(dw, "?limit=1")["events"][0])
    t.eq((row_count(bad), status(dw)["mirror_failed"]), (1, 0), "one row in PostgreSQL, nothing failed")
    # a transient error that does not heal: failed after max_retries, then replayable too
    sb.control(mode="fail", status=503)
    r = ingest(dw, "agent_health", {"agent_id": "b", "status": "healthy"})
    t.ok(r.json["dual_write"]["ok"] is False and "503" in r.json["dual_write"]["error"], "a 503: ok false", r)
    t.ok(wait(lambda: events(dw, "?limit=1")["events"][0]["dual_write_state"] == "failed", 10),
         "after max_retries the event is marked failed", events(dw, "?limit=1")["events"][0])
    e = events(dw, "?limit=1")["events"][0]
    t.eq(e["dual_write_attempts"], 3, "1 attempt + 2 retries")
    t.eq(status(dw)["mirror_failed"], 1, "status counts mirror_failed")
    sb.control(mode="ok")
    dw.req("POST", "/v1/connectors/%s/dead-letters/replay" % mid)
    t.ok(wait(lambda: status(dw)["mirror_failed"] == 0, 10), "replayed once Supabase is back", status(dw))
    # a unique constraint of the table (not the dedup column): PostgREST's 409 reaches the answer
    sb.sql("CREATE UNIQUE INDEX build_queue_queue_id ON build_queue (queue_id)")
    first = ingest(dw, "build_queue_item", {"queue_id": "q-unique", "status": "waiting"}).json["dual_write"]
    second = ingest(dw, "build_queue_item", {"queue_id": "q-unique", "status": "done"}).json["dual_write"]
    t.ok(first["ok"] is True and second["ok"] is False and "409" in (second["error"] or ""),
         "a unique violation in Supabase: ok false with its 409 (the strand write stands)", (first, second))
    t.eq(rows("build_queue", "queue_id = 'q-unique'"), 1, "only the first row is in PostgreSQL")
    # a bulk insert refused because of one event must not fail the others sent with it
    bodies = [{"agent_id": "ok-%d" % i, "status": "healthy"} for i in range(20)]
    with concurrent.futures.ThreadPoolExecutor(20) as ex:
        res = list(ex.map(lambda b: ingest(dw, "agent_health", b).json["dual_write"]["ok"], bodies))
    t.ok(all(res), "20 concurrent good events are all mirrored", res)

with t.section("wrong key: 401 from Supabase, the write stands", dw):
    dw.stop()
    os.environ["BOBOYKA_SUPABASE_KEY"] = "wrong"
    dw.start()
    r = ingest(dw, "audit_log", SEED["audit_log"])
    t.ok(r.status == 201 and r.json["dual_write"]["ok"] is False and "401" in r.json["dual_write"]["error"],
         "a wrong key: ok false with Supabase's 401", r)
    t.eq(dw.req("GET", "/v1/records/" + r.json["record_hash"]).status, 200, "the event is in the strand")
    dw.stop()
    os.environ["BOBOYKA_SUPABASE_KEY"] = sb.key

with t.section("the retry queue survives a crash: every event lands once after restart", dw):
    dw.start(FAST + ["--boboyka-retry-base-ms", "100000", "--boboyka-retry-max-ms", "100000"])
    sb.control(mode="fail", status=500)
    hs = []
    with concurrent.futures.ThreadPoolExecutor(10) as ex:
        for r in ex.map(lambda i: ingest(dw, "build_queue_item", {"queue_id": "crash-%d" % i, "status": "waiting"}),
                        range(30)):
            hs.append(r.json["record_hash"])
            assert r.json["dual_write"]["ok"] is False
    t.eq(status(dw)["mirror_pending"] >= 30, True, "30 events wait in the retry queue")
    dw.kill()
    sb.control(mode="ok")
    dw.start(FAST)
    t.ok(wait(lambda: status(dw)["mirror_pending"] == 0, 15), "after kill -9 and a restart the queue drains",
         status(dw))
    t.eq(row_counts(hs), [1] * 30, "each of the 30 records is in PostgreSQL exactly once")
    t.ok(sb.control()["rejected"] > 0, "(the stand-in did refuse them while failing)")

with t.section("many connections: mirror calls do not serialize", dw):
    n = 400
    t0 = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(50) as ex:
        res = list(ex.map(lambda i: ingest(dw, "agent_health", {"agent_id": "c-%d" % i, "status": "healthy"}).json,
                          range(n)))
    took = time.monotonic() - t0
    t.ok(all(r["dual_write"]["ok"] for r in res), "%d events from 50 connections all mirrored (%.2f s)" % (n, took))
    t.eq(rows("agent_health", "agent_id LIKE 'c-%'"), n, "all rows are in PostgreSQL")
with t.section("a supabase connector of one's own: the records of a strand become rows", dw):
    sb.sql("CREATE TABLE orders (id int PRIMARY KEY, item text NOT NULL, rh text UNIQUE)")
    for cfg, field in [({"url": sb.url, "key": sb.key}, "config.table"),
                       ({"url": sb.url, "key": "", "table": "orders"}, "config.key"),
                       ({"url": sb.url, "key": sb.key, "table": "orders; drop"}, "config.table")]:
        r = dw.req("POST", "/v1/connectors", {"name": "sb-bad", "kind": "supabase", "strands": ["orders"],
                                              "config": cfg})
        t.ok(r.status == 400 and r.json["error"].startswith(field), "refused naming %s" % field, r)
    r = dw.req("POST", "/v1/connectors", {"name": "sb-orders", "kind": "supabase", "strands": ["orders"],
                                          "config": {"url": sb.url, "key": sb.key, "table": "orders",
                                                     "dedup_column": "rh"}})
    t.eq(r.status, 201, "a supabase connector on the strand orders is created")
    cid = r.json["id"]
    t.eq(r.json["config"]["key"], "***", "its key is not shown")
    for i in range(5):
        dw.req("POST", "/v1/records", {"strand": "orders", "payload": {"id": i, "item": "item-%d" % i}})
    dw.req("POST", "/v1/records", {"strand": "orders", "payload": {"id": 99}})  # item is NOT NULL
    t.ok(wait(lambda: rows("orders") == 5, 10), "the five good records are rows in PostgreSQL")
    t.eq(sb.sql("SELECT string_agg(item, ',' ORDER BY id) FROM orders"), "item-0,item-1,item-2,item-3,item-4",
         "with their values")
    dl = []
    t.ok(wait(lambda: dl.extend(dw.req("GET", "/v1/connectors/%s/dead-letters" % cid).json["dead_letters"]) or dl, 10),
         "the row PostgreSQL refuses is a dead letter")
    t.ok(dl and dl[0]["last_status"] == 400 and "item" in dl[0]["last_error"], "with PostgREST's status and message", dl)
    c = dw.req("GET", "/v1/connectors/" + cid).json
    t.ok(c["state"] == "running" and c["stats"]["delivered"] == 5 and c["stats"]["dead_lettered"] == 1,
         "stats: 5 delivered, 1 dead-lettered", c)
    dw.req("DELETE", "/v1/connectors/" + cid)
dw.stop()
sb.stop()
t.done()
