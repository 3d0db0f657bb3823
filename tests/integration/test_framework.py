"""The connector framework seen from outside: the catalog (GET /v1/connector-kinds with categories
and field tables, `sluice connectors` grouped by category with totals), the datagen source
(Rivven's keys, max_events, reproducible by seed, CDC envelopes, exactly once into the strand
across kill -9) and the stdout sink (its lines are the records, as the API returns them)."""
import json
import os
import subprocess

import sluicetest as st

t = st.Checks()
st.require_binary(t)
srv = st.Server().start()
C = "/v1/connectors"


def conn(cid):
    return srv.req("GET", C + "/" + cid).json


def payloads(strand):
    return [r["payload"] for r in st.all_records(srv.port, strand)]


with t.section("the catalog", srv):
    r = srv.req("GET", "/v1/connector-kinds")
    kinds = {k["kind"]: k for k in r.json["kinds"]}
    t.ok({"datagen", "stdout", "webhook", "postgres_cdc", "object_storage"} <= set(kinds),
         "the catalog lists the new kinds beside the old ones", sorted(kinds))
    t.ok(kinds["postgres_cdc"]["category"] == "database" and kinds["object_storage"]["category"] == "storage"
         and kinds["datagen"]["category"] == "utility" and kinds["kafka"]["category"] == "messaging",
         "every kind has its Rivven category", {k: v["category"] for k, v in kinds.items()})
    dg = {f["name"]: f for f in kinds["datagen"]["fields"]}
    t.ok(set(dg) >= {"pattern", "events_per_second", "max_events", "stream_name", "seed", "cdc_mode"}
         and dg["pattern"]["required"] and dg["pattern"]["choices"] == ["orders", "users", "pageviews"],
         "datagen's field table has the Rivven keys", dg.get("pattern"))
    wh = {f["name"]: f for f in kinds["webhook"]["fields"]}
    t.ok(wh["retry"].get("common") and wh["start"].get("common") and not wh["url"].get("common"),
         "a sink's table ends with the framework's common fields, marked common", sorted(wh))
    t.ok("postgres-cdc" in kinds["postgres_cdc"].get("aliases", []) and "console" in kinds["stdout"].get("aliases", []),
         "Rivven's names are listed as aliases")
    out = subprocess.run([st.SLUICE_BIN, "connectors"], capture_output=True, text=True, timeout=10).stdout
    n_src = sum(1 for k in kinds.values() if k["direction"] == "inbound")
    t.ok("Total: %d connectors (%d sources, %d sinks)" % (len(kinds), n_src, len(kinds) - n_src) in out
         and out.index("DATABASE") < out.index("STORAGE") < out.index("UTILITY")
         and "datagen            Source" in out, "`sluice connectors` prints the catalog by category with totals", out)

with t.section("datagen: max_events, seed, completed", srv):
    body = {"name": "gen-a", "kind": "datagen", "strands": None,
            "config": {"pattern": "orders", "events_per_second": 5000, "max_events": 1200, "seed": 42,
                       "strand": "gen-a"}}
    del body["strands"]
    r = srv.req("POST", C, body)
    a = r.json
    t.ok(r.status == 201 and a["direction"] == "inbound" and a["strands"] == ["gen-a"], "POST datagen -> 201", r)
    done = st.wait_until(lambda: conn(a["id"])["state"] == "completed", 20)
    t.ok(done, "the connector is completed once max_events are written", conn(a["id"]))
    pa = payloads("gen-a")
    t.eq(len(pa), 1200, "exactly max_events records")
    t.eq([p["event_id"] for p in pa], list(range(1200)), "event_ids 0..1199 in order, none twice")
    t.ok(all(set(p) >= {"order_id", "customer_id", "product", "quantity", "total", "status"} for p in pa),
         "orders have the seed's fields", pa[0])
    t.eq(conn(a["id"])["event_count"], 1200, "event_count counts them")
    r = srv.req("POST", C, {"name": "gen-b", "kind": "datagen", "config": {
        "pattern": "orders", "events_per_second": 5000, "max_events": 1200, "seed": 42, "strand": "gen-b"}})
    st.wait_until(lambda: conn(r.json["id"])["state"] == "completed", 20)
    t.ok(payloads("gen-b") == pa, "the same seed gives the same records")
    r = srv.req("POST", C, {"name": "gen-c", "kind": "datagen", "config": {
        "pattern": "orders", "events_per_second": 5000, "max_events": 50, "seed": 43, "strand": "gen-c"}})
    st.wait_until(lambda: conn(r.json["id"])["state"] == "completed", 20)
    t.ok(payloads("gen-c") != pa[:50], "another seed gives other records")
    r = srv.req("POST", C, {"name": "gen-d", "kind": "datagen", "config": {"pattern": "users", "max_events": 1}})
    t.ok(r.status == 201 and isinstance(r.json["config"]["seed"], int) and r.json["config"]["strand"] == "default"
         and r.json["config"]["events_per_second"] == 1,
         "without a seed one is chosen and shown (a restart continues the same sequence)", r)

with t.section("datagen: cdc_mode envelopes", srv):
    r = srv.req("POST", C, {"name": "gen-cdc", "kind": "datagen", "config": {
        "pattern": "users", "events_per_second": 5000, "max_events": 300, "seed": 5, "cdc_mode": True,
        "stream_name": "shop", "strand": "gen-cdc"}})
    st.wait_until(lambda: conn(r.json["id"])["state"] == "completed", 20)
    recs = st.all_records(srv.port, "gen-cdc")
    rows, ok, deletes = {}, True, 0
    for rec in recs:
        p = rec["payload"]
        key = p["source"]["event_index"] // 3
        if p["op"] == "c":
            ok &= p["before"] is None and key not in rows
        else:
            ok &= rows.get(key) == p["before"]
        if p["op"] == "d":
            deletes += 1
            ok &= p["after"] is None and rec["flags"] & 2 == 2
        ok &= p["source"]["db"] == "shop" and p["source"]["table"] == "users"
        rows[key] = p["after"]
    t.ok(len(recs) == 300 and ok and deletes > 0,
         "op c/u/d in postgres_cdc's envelope: inserts first, before = the previous row, deletes are tombstones",
         recs[:3])

with t.section("bad configs", srv):
    n = len(srv.req("GET", C).json["connectors"])
    for cfg, field in (({"pattern": "trades"}, "config.pattern"), ({}, "config.pattern"),
                       ({"pattern": "orders", "events_per_second": 0}, "config.events_per_second"),
                       ({"pattern": "orders", "max_events": -1}, "config.max_events"),
                       ({"pattern": "orders", "strand": "Bad Name"}, "config.strand")):
        r = srv.req("POST", C, {"name": "bad-" + field, "kind": "datagen", "config": cfg})
        t.ok(r.status == 400 and field in r.json.get("error", "") and r.json.get("code") == "invalid_config",
             "datagen %s -> 400 naming %s" % (json.dumps(cfg), field), r)
    r = srv.req("POST", C, {"name": "bad-out", "kind": "stdout", "config": {"format": "xml"}})
    t.ok(r.status == 400 and "config.format" in r.json.get("error", ""), "stdout format xml -> 400", r)
    for cfg, field in (({"rate_limit": {"events_per_second": 0}}, "config.rate_limit.events_per_second"),
                       ({"rate_limit": {"burst_capacity": 5}}, "config.rate_limit.events_per_second"),
                       ({"rate_limit": {"events_per_second": 5, "burst_capacity": 0}},
                        "config.rate_limit.burst_capacity"),
                       ({"rate_limit": 10}, "config.rate_limit"),
                       ({"url": "http://127.0.0.1:1/x", "max_in_flight": 65}, "config.max_in_flight"),
                       ({"url": "http://127.0.0.1:1/x", "max_in_flight": 0}, "config.max_in_flight")):
        kind = "webhook" if "url" in cfg else "stdout"
        r = srv.req("POST", C, {"name": "bad-" + field + str(len(cfg)), "kind": kind, "config": cfg})
        t.ok(r.status == 400 and field + ":" in r.json.get("error", "") and r.json.get("code") == "invalid_config",
             "%s %s -> 400 naming %s" % (kind, json.dumps(cfg), field), r)
    t.eq(len(srv.req("GET", C).json["connectors"]), n, "nothing was stored")

with t.section("stdout: one line per record, the records themselves", srv):
    mark = srv.log_mark()
    r = srv.req("POST", C, {"name": "console", "kind": "stdout", "strands": ["gen-a"],
                            "config": {"start": "earliest", "batch_size": 100}})
    t.ok(r.status == 201, "POST stdout -> 201", r)

    def lines():
        return [json.loads(l) for l in srv.log_since(mark, 10 ** 9).splitlines() if l.startswith('{"strand":"gen-a"')]
    st.wait_until(lambda: len(lines()) >= 1200, 20)
    got = lines()
    want = st.all_records(srv.port, "gen-a")
    t.ok(len(got) == 1200 and all(g["seq"] == w["seq"] and g["payload"] == w["payload"]
                                  and g["record_hash"] == w["record_hash"] for g, w in zip(got, want)),
         "stdout printed every record of the strand once, in order, as stored", got[:1])

with t.section("a sink without strands follows every strand, also those created later", srv):
    srv.req("POST", "/v1/records", {"strand": "before-all", "payload": {"old": 1}})
    mark = srv.log_mark()
    r = srv.req("POST", C, {"name": "all-out", "kind": "stdout", "config": {"format": "text"}})
    t.ok(r.status == 201 and r.json["strands"] == ["*"], "created without strands: strands [\"*\"]", r)
    all_id = r.json["id"]
    r2 = srv.req("POST", C, {"name": "two-out", "kind": "stdout", "strands": ["late-b"], "config": {"format": "text"}})
    t.ok(r2.status == 201 and r2.json["strands"] == ["late-b"], "strands narrows it", r2)
    srv.req("POST", "/v1/records", {"strand": "before-all", "payload": {"new": 1}})
    srv.req("POST", "/v1/records", {"strand": "late-a", "payload": {"late": "a"}})
    srv.req("POST", "/v1/records", {"strand": "late-b", "payload": {"late": "b"}})

    def text_lines():
        return [l for l in srv.log_since(mark, 10 ** 9).splitlines()
                if l.startswith(("before-all ", "late-a ", "late-b "))]
    st.wait_until(lambda: len(text_lines()) >= 4, 10)
    got = sorted((l.split(" ")[0], l.split(" ", 4)[4]) for l in text_lines())
    t.eq(got, sorted([("before-all", '{"new":1}'), ("late-a", '{"late":"a"}'), ("late-b", '{"late":"b"}'),
                      ("late-b", '{"late":"b"}')]),
         "records of a new strand reach the \"*\" sink; start head skips what was there; the narrowed one sees only late-b")
    r = srv.req("POST", C, {"name": "bad-strands", "kind": "stdout", "strands": ["*", "x"]})
    t.ok(r.status == 400 and "strands" in r.json.get("error", ""), "[\"*\", \"x\"] -> 400 naming strands", r)
    srv.restart()
    srv.req("POST", "/v1/records", {"strand": "late-c", "payload": {"after": "restart"}})
    st.wait_until(lambda: any(l.startswith("late-c ") for l in srv.log_since(mark, 10 ** 9).splitlines()), 10)
    t.ok(any(l.startswith("late-c ") for l in srv.log_since(mark, 10 ** 9).splitlines()),
         "after a restart a strand created then is followed too")
    for cid in (all_id, r2.json["id"]):
        srv.req("DELETE", C + "/" + cid)

with t.section("health checks before running", srv):
    r = srv.req("POST", C, {"name": "hc-closed", "kind": "webhook", "strands": ["hc"],
                            "config": {"url": "http://127.0.0.1:1/hook", "retry": {"initial_backoff_ms": 50,
                                                                                  "max_backoff_ms": 200}}})
    hc = r.json["id"]
    st.wait_until(lambda: conn(hc)["state"] == "unhealthy", 10)
    c = conn(hc)
    t.ok(c["state"] == "unhealthy" and "cannot connect to http://127.0.0.1:1/hook" in (c["last_error"] or ""),
         "a webhook aimed at a closed port is not running; last_error says why", c)
    blocker = os.path.join(st.tmpdir(), "a-file")
    open(blocker, "w").close()
    r = srv.req("POST", C, {"name": "hc-local", "kind": "object_storage", "strands": ["hc"],
                            "config": {"provider": "local", "root": os.path.join(blocker, "lake")}})
    hl = r.json["id"]
    st.wait_until(lambda: conn(hl)["state"] == "unhealthy", 10)
    c = conn(hl)
    t.ok(c["state"] == "unhealthy" and "lake" in (c["last_error"] or ""),
         "object_storage whose root cannot be created is not running; last_error names it", c)
    os.unlink(blocker)
    st.wait_until(lambda: conn(hl)["state"] == "running", 10)
    t.eq(conn(hl)["state"], "running", "once the root can be created the check passes and it runs")
    for cid in (hc, hl):
        srv.req("DELETE", C + "/" + cid)

with t.section("datagen across kill -9: exactly once into the strand", srv):
    r = srv.req("POST", C, {"name": "gen-crash", "kind": "datagen", "config": {
        "pattern": "pageviews", "events_per_second": 20000, "max_events": 200000, "seed": 9, "strand": "gen-crash"}})
    cid = r.json["id"]
    st.wait_until(lambda: st.counts(srv.port).get("gen-crash", 0) > 20000, 30)
    srv.kill()
    srv.start()
    first = st.counts(srv.port).get("gen-crash", 0)
    done = st.wait_until(lambda: conn(cid)["state"] == "completed", 60)
    ids = [p["event_id"] for p in payloads("gen-crash")]
    t.ok(done and 0 < first < 200000, "killed mid-run (%d written), it resumes and completes" % first, conn(cid))
    t.ok(ids == list(range(200000)), "event_ids 0..199999 exactly once each, in order, across the crash",
         (len(ids), len(set(ids))))
    srv.stop()
    t.eq(st.run_verify(srv.data, "gen-crash")[0], 0, "the strand verifies after the crash")

t.done()
