"""StreamHouse's connector API (shared/seeds/001_*) tried as its users would: the seed's bodies
verbatim on /api/v1/connectors, every management route by name (and by id), answers in
StreamHouse's shape (name, connectorType, connectorClass, topics and config as sent, plus id,
state and stats), pause/resume keeping the cursor (state "paused" in both APIs, across a
restart), GET /api/v1/metrics with the seed's metric names read by a strict parser, and bad input:
each answered with a JSON {"error", "code"} naming the field, a fitting 4xx, nothing stored, and
the server still serving."""
import os
import sys

from prometheus_client.parser import text_string_to_metric_families

import sluicetest as st

sys.path.insert(0, os.path.join(st.ROOT, "tests", "peers"))
from webhook_receiver import Receiver  # noqa: E402

t = st.Checks()
st.require_binary(t)
srv = st.Server().start()
A = "/api/v1/connectors"
FAST = {"initial_backoff_ms": 10, "max_backoff_ms": 50}

# The seed's three example bodies, verbatim.
S3_SEED = {"name": "orders-to-s3", "connectorType": "sink", "connectorClass": "s3-sink",
           "topics": ["orders", "payments"],
           "config": {"s3.bucket": "my-data-lake", "s3.prefix": "raw/streaming", "s3.region": "us-east-1",
                      "format": "parquet", "batch.size": "10000", "batch.interval_ms": "60000",
                      "partitioning": "hourly"}}


def count():
    return len(srv.req("GET", "/v1/connectors").json["connectors"])


def refused(r, status, needle, what, before):
    """A bad request: the status, a JSON error naming needle with a code, nothing stored."""
    j = r.json if isinstance(r.json, dict) else {}
    t.ok(r.status == status and set(j) == {"error", "code"} and needle in (j.get("error") or "")
         and j.get("code") and count() == before,
         "%s -> %d naming %s, nothing stored" % (what, status, needle), r)


def sh_shape(c, body):
    """The fields StreamHouse's body had, echoed as sent, plus id, state and stats."""
    return (all(c.get(k) == body[k] for k in ("name", "connectorType", "connectorClass", "topics", "config"))
            and isinstance(c.get("id"), str) and isinstance(c.get("state"), str)
            and isinstance(c.get("stats"), dict) and "records_processed" in c["stats"])


with t.section("the seed's S3 body: create, get by name and by id, list, delete by name", srv):
    r = srv.req("POST", A, S3_SEED)
    t.ok(r.status == 201 and sh_shape(r.json, S3_SEED) and r.json["state"] in ("running", "unhealthy"),
         "POST /api/v1/connectors with the seed's body -> 201 echoing name, connectorType, connectorClass, "
         "topics and config as sent", r)
    sid = r.json["id"]
    g = srv.req("GET", A + "/orders-to-s3")
    t.ok(g.status == 200 and sh_shape(g.json, S3_SEED) and g.json["id"] == sid,
         "GET /api/v1/connectors/orders-to-s3 (by name) -> 200 in StreamHouse's shape", g)
    g = srv.req("GET", A + "/" + sid)
    t.ok(g.status == 200 and g.json["name"] == "orders-to-s3", "GET by id is the same connector", g)
    v1 = srv.req("GET", "/v1/connectors/" + sid).json
    t.ok(v1["kind"] == "object_storage" and v1["config"]["bucket"] == "my-data-lake"
         and v1["config"]["batch_size"] == 10000 and v1["strands"] == ["orders", "payments"],
         "/v1 shows the same connector in Sluice's shape (normalized config)", v1)
    lst = srv.req("GET", A)
    t.ok(lst.status == 200 and isinstance(lst.json, list) and len(lst.json) == 1 and sh_shape(lst.json[0], S3_SEED),
         "GET /api/v1/connectors lists every connector in StreamHouse's shape", lst)
    d = srv.req("DELETE", A + "/orders-to-s3")
    t.ok(d.status == 200 and d.json == {"deleted": True, "id": sid, "name": "orders-to-s3"},
         "DELETE /api/v1/connectors/orders-to-s3 (by name) -> 200", d)
    t.ok(srv.req("GET", A + "/orders-to-s3").status == 404 and count() == 0, "... and it is gone")

with t.section("secrets are masked in the echoed config, as spelled", srv):
    body = {"name": "s3-secret", "connectorType": "sink", "connectorClass": "s3-sink", "topics": ["orders"],
            "config": {"s3.bucket": "b", "s3.access_key_id": "AKIA", "s3.secret_access_key": "SECRET-1"}}
    r = srv.req("POST", A, body)
    t.ok(r.status == 201 and r.json["config"]["s3.secret_access_key"] == "***"
         and r.json["config"]["s3.access_key_id"] == "AKIA" and b"SECRET-1" not in r.body,
         "s3.secret_access_key is answered as ***", r)
    g = srv.req("GET", A + "/s3-secret")
    t.ok(b"SECRET-1" not in g.body and b"SECRET-1" not in srv.req("GET", A).body, "... in GET and in the list too")
    srv.req("DELETE", A + "/s3-secret")

recv = Receiver().start()
st.at_cleanup(recv.stop)

with t.section("pause and resume by name: nothing delivered while paused, the cursor kept", srv):
    hook = {"name": "orders-hook", "connectorType": "sink", "connectorClass": "webhook", "topics": ["orders"],
            "config": {"url": recv.url("/h"), "retry": FAST}}
    r = srv.req("POST", A, hook)
    t.ok(r.status == 201 and sh_shape(r.json, hook) and r.json["state"] == "running", "a webhook sink via StreamHouse", r)
    hid = r.json["id"]
    for i in range(3):
        assert srv.req("POST", "/v1/records", {"strand": "orders", "payload": {"i": i}}).status == 201
    t.ok(recv.wait_count(3, 10), "3 records delivered while running")
    # the receiver records a request before Sluice reads its answer: pausing before then aborts
    # that request, and it is sent again after resume (at-least-once), so wait for Sluice's count
    t.ok(st.wait_until(lambda: srv.req("GET", A + "/orders-hook").json["stats"]["delivered"] == 3, 10),
         "... and acknowledged (stats.delivered 3)")
    p = srv.req("POST", A + "/orders-hook/pause")
    t.ok(p.status == 200 and p.json["state"] == "paused" and p.json["name"] == "orders-hook",
         "POST /api/v1/connectors/orders-hook/pause -> 200 state paused", p)
    v1 = srv.req("GET", "/v1/connectors/" + hid).json
    t.ok(v1["state"] == "paused" and v1["enabled"] is True, "state paused in the /v1 API too", v1)
    t.ok(srv.req("POST", A + "/orders-hook/pause").json["state"] == "paused", "pausing twice is fine")
    for i in range(3, 7):
        assert srv.req("POST", "/v1/records", {"strand": "orders", "payload": {"i": i}}).status == 201
    # a negative check needs a bounded wait: 1 s is 100x what a delivery takes here
    t.ok(not recv.wait_count(4, 1.0) and len(recv.received()) == 3, "nothing delivered while paused",
         len(recv.received()))
    srv.restart()
    v1 = srv.req("GET", "/v1/connectors/" + hid).json
    t.ok(v1["state"] == "paused", "still paused after a server restart", v1)
    t.ok(not recv.wait_count(4, 0.5), "... and still nothing delivered")
    r = srv.req("POST", A + "/orders-hook/resume")
    t.ok(r.status == 200 and r.json["state"] == "running", "POST .../resume -> 200 state running", r)
    t.ok(recv.wait_count(7, 10), "the 4 records written while paused arrive after resume", len(recv.received()))
    seen = sorted(x["json"]["payload"]["i"] for x in recv.received())
    t.eq(seen, list(range(7)), "each record exactly once, none skipped (the cursor was kept)")
    g = st.wait_until(lambda: (lambda c: c if c["stats"]["delivered"] == 4 else None)(
        srv.req("GET", A + "/orders-hook").json), 10)
    t.ok(g and g["stats"]["records_processed"] == 4,
         "stats count the records delivered since the restart (4)", srv.req("GET", A + "/orders-hook").json)

with t.section("pause and resume on /v1 too, by id", srv):
    p = srv.req("POST", "/v1/connectors/%s/pause" % hid)
    t.ok(p.status == 200 and p.json["state"] == "paused" and p.json["kind"] == "webhook",
         "POST /v1/connectors/{id}/pause -> 200 in Sluice's shape", p)
    t.ok(srv.req("GET", A + "/" + hid).json["state"] == "paused", "and paused on /api/v1")
    r = srv.req("POST", "/v1/connectors/%s/resume" % hid)
    t.ok(r.status == 200 and r.json["state"] == "running", "POST /v1/connectors/{id}/resume -> running", r)
    b = srv.req("POST", "/v1/connectors", {"name": "IoT Bridge", "kind": "rest_bridge"}).json
    srv.req("POST", "/v1/connectors/%s/pause" % b["id"])
    r = srv.req("POST", "/v1/connectors/inbound/rest/%s/push" % b["id"], {"x": 1})
    t.ok(r.status == 409 and r.json["code"] == "connector_paused", "a paused REST bridge refuses pushes (409)", r)
    srv.req("POST", A + "/IoT%20Bridge/resume")
    r = srv.req("POST", "/v1/connectors/inbound/rest/%s/push" % b["id"], {"x": 1})
    t.ok(r.status == 201, "resumed by its name (URL-encoded, with a space) it takes them again", r)

with t.section("GET /api/v1/metrics: the seed's names, by connector name, read by a strict parser", srv):
    def metrics():
        r = srv.req("GET", "/api/v1/metrics")
        assert r.status == 200 and r.headers["content-type"].startswith("text/plain"), r
        fams = {f.name: f for f in text_string_to_metric_families(r.body.decode())}
        return r, fams

    def value(fams, fam, **labels):
        # (the parser names a counter's samples <family>_total; Prometheus keeps them as sent)
        for s in fams[fam].samples:
            if s.labels.get("connector") == labels.get("connector") and \
                    all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
        return None

    r, fams = metrics()
    t.ok({"connector_records_processed", "connector_state", "connector_errors"} <= set(fams),
         "families connector_records_processed, connector_state, connector_errors_total", sorted(fams))
    t.ok(fams["connector_records_processed"].type == "counter" and fams["connector_errors"].type == "counter"
         and fams["connector_state"].type == "gauge", "their types: counter, gauge, counter")
    before = value(fams, "connector_records_processed", connector="orders-hook")
    t.ok(before == 4, "records_processed of orders-hook is what /api/v1 says (4)", before)
    t.ok(value(fams, "connector_state", connector="orders-hook", state="running") == 1
         and value(fams, "connector_state", connector="orders-hook", state="paused") == 0,
         "connector_state{state=running} 1, paused 0")
    for i in range(5):
        assert srv.req("POST", "/v1/records", {"strand": "orders", "payload": {"m": i}}).status == 201
    t.ok(recv.wait_count(12, 10), "5 more delivered", len(recv.received()))
    ok = st.wait_until(lambda: value(metrics()[1], "connector_records_processed", connector="orders-hook") == before + 5, 5)
    t.ok(ok, "connector_records_processed moves by the 5 records delivered")
    srv.req("POST", A + "/orders-hook/pause")
    fams = metrics()[1]
    t.ok(value(fams, "connector_state", connector="orders-hook", state="paused") == 1,
         "connector_state{state=paused} 1 once paused")
    srv.req("POST", A + "/orders-hook/resume")
    # errors: a sink whose target refuses (500) counts its failed attempts
    recv.set_mode("status", status=500)
    bad = srv.req("POST", A, {"name": "failing \"hook\"\\x", "connectorType": "sink", "connectorClass": "webhook",
                              "topics": ["errs"], "config": {"url": recv.url("/bad"), "retry": FAST}})
    assert bad.status == 201, bad
    assert srv.req("POST", "/v1/records", {"strand": "errs", "payload": {"e": 1}}).status == 201
    name = "failing \"hook\"\\x"
    ok = st.wait_until(lambda: (value(metrics()[1], "connector_errors", connector=name)
                                or 0) >= 2, 10)
    t.ok(ok, "connector_errors_total counts failed attempts; a name with quotes and a backslash is escaped")
    recv.set_mode("ok")
    srv.req("DELETE", A + "/" + bad.json["id"])

with t.section("bad input: JSON error naming the field, a fitting 4xx, nothing stored", srv):
    n = count()
    hook = {"name": "x", "connectorType": "sink", "connectorClass": "webhook", "topics": ["orders"],
            "config": {"url": recv.url("/x")}}
    no_class = {k: v for k, v in S3_SEED.items() if k != "connectorClass"}
    refused(srv.req("POST", A, no_class), 400, "connectorClass", "a body without connectorClass", n)
    refused(srv.req("POST", "/v1/connectors", no_class), 400, "connectorClass",
            "the same body on /v1 (StreamHouse's keys, no kind)", n)
    refused(srv.req("POST", A, {"name": "x", "kind": "webhook", "config": {"url": recv.url("/x")}}), 400,
            "connectorClass", "a /v1 body (kind) on StreamHouse's route", n)
    refused(srv.req("POST", A, dict(S3_SEED, connectorClass="mongo-sink")), 400, "connectorClass",
            "an unknown connectorClass", n)
    refused(srv.req("POST", A, dict(S3_SEED, connectorClass=7)), 400, "connectorClass", "connectorClass a number", n)
    refused(srv.req("POST", A, dict(S3_SEED, connectorType="source")), 400, "connectorType",
            "connectorType source for a sink", n)
    refused(srv.req("POST", A, dict(S3_SEED, connectorType="pipe")), 400, "connectorType", "connectorType pipe", n)
    refused(srv.req("POST", A, dict(S3_SEED, config=dict(S3_SEED["config"], **{"s3.bucket": ""}))), 400,
            "config.s3.bucket", "\"s3.bucket\": \"\" (an empty required string)", n)
    refused(srv.req("POST", A, dict(hook, config={"url": ""})), 400, "config.url", "an empty webhook url", n)
    refused(srv.req("POST", "/v1/connectors", {"name": "x", "kind": "s3", "config": {
        "endpoint": "http://127.0.0.1:1", "bucket": ""}}), 400, "config.bucket", "/v1: an empty s3 bucket", n)
    refused(srv.req("POST", A, dict(S3_SEED, config=dict(S3_SEED["config"], **{"s3.bukket": "b"}))), 400,
            "s3.bukket", "a misspelled config key", n)
    refused(srv.req("POST", A, dict(hook, topics=["Bad Topic!"])), 400, "topics", "a topic that is no strand name", n)
    refused(srv.req("POST", A, dict(hook, topics=[])), 400, "topics", "no topics", n)
    refused(srv.req("POST", A, dict(hook, tasks=3)), 400, "tasks", "an unknown top-level field", n)
    refused(srv.req("POST", A, dict(hook, name="")), 400, "name", "an empty name", n)
    refused(srv.req("POST", A, {k: v for k, v in hook.items() if k != "name"}), 400, "name", "no name", n)
    refused(srv.req("POST", A, [hook]), 400, "body", "an array body", n)
    refused(srv.req("POST", A, b'{"name": "x",'), 400, "body", "truncated JSON", n)
    refused(srv.req("POST", A, hook, ctype="text/plain"), 415, "Content-Type", "text/plain", n)
    refused(srv.req("POST", A, dict(hook, name="orders-hook")), 409, "orders-hook", "a name in use", n)
    refused(srv.req("GET", A + "/no-such"), 404, "no-such", "GET an unknown name", n)
    refused(srv.req("DELETE", A + "/no-such"), 404, "no-such", "DELETE an unknown name", n)
    refused(srv.req("POST", A + "/no-such/pause"), 404, "no-such", "pause an unknown name", n)
    refused(srv.req("POST", "/v1/connectors/no-such/resume"), 404, "no-such", "/v1 resume an unknown id", n)
    refused(srv.req("GET", A + "/%FF%FE"), 404, "not valid UTF-8", "a name that is not UTF-8 (answer stays JSON)", n)
    refused(srv.req("GET", A + "/" + st.quote("\u00e9" * 60)), 404, "\u00e9" * 48 + "...",
            "a long name is cut on a character boundary", n)
    refused(srv.req("GET", A + "/orders-hook/pause"), 405, "GET", "GET on .../pause", n)
    refused(srv.req("PUT", A), 405, "PUT", "PUT on /api/v1/connectors", n)
    refused(srv.req("POST", "/api/v1/metrics"), 405, "POST", "POST on /api/v1/metrics", n)
    refused(srv.req("GET", "/api/v1/nothing"), 404, "/api/v1/nothing", "an unknown /api/v1 route", n)
    t.ok(srv.req("GET", "/v1/health").status == 200 and srv.alive(), "the server is still serving")

recv.stop()
srv.stop()
t.done()
