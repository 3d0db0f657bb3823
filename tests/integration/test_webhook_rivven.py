"""Rivven's `http-webhook` against the real webhook receiver in tests/peers: the alias resolves to
the `webhook` kind; `method`, `headers`, `timeout_secs` and `retry.max_attempts` do what Rivven's
seed says; secret headers never appear in an answer and survive a PATCH that sends the masked
config back (and a restart); bad inputs are refused with 400 naming the field, nothing stored."""
import json
import os
import sys
import time

import sluicetest as st

sys.path.insert(0, os.path.join(st.ROOT, "tests", "peers"))
from webhook_receiver import Receiver  # noqa: E402

t = st.Checks()
st.require_binary(t)
FAST = {"initial_backoff_ms": 10, "max_backoff_ms": 50}
C = "/v1/connectors"
srv = st.Server().start()


def write(n, strand, start=0):
    out = []
    for i in range(n):
        r = srv.req("POST", "/v1/records", {"strand": strand, "agent_id": "agent-%d" % i,
                                            "payload": {"i": start + i}})
        assert r.status == 201, r
        out.append(r.json["record_hash"])
    return out


def arrived(rx, hashes, timeout=10):
    return rx.wait_for(lambda reqs: set(hashes) <= set(rx.by_idempotency_key(True)), timeout)


def by_key(rx):
    return {q["idempotency_key"]: q for q in rx.received()}


with t.section("create as http-webhook: method PUT, custom headers", srv):
    rx = Receiver(token="tok").start()  # anything without "Authorization: Bearer tok" gets 401
    r = srv.req("POST", C, {"name": "rivven-hook", "kind": "http-webhook", "strands": ["rv"], "config": {
        "url": rx.url("/in"), "method": "PUT", "timeout_secs": 5, "retry": FAST,
        "headers": {"Authorization": "Bearer tok", "X-Team": "data", "Content-Type": "application/vnd.sluice+json"}}})
    t.ok(r.status == 201, "POST kind http-webhook -> 201", r)
    hid = r.json["id"] if r.status == 201 else ""
    cfg = r.json.get("config", {}) if r.json else {}
    t.eq(r.json.get("kind") if r.json else None, "webhook", "the answer names the kind the alias resolves to")
    t.ok(cfg.get("timeout_ms") == 5000 and "timeout_secs" not in cfg, "timeout_secs 5 is stored as timeout_ms 5000", cfg)
    t.ok(cfg.get("retry", {}).get("max_retries") == -1, "without max_attempts the default stays: retry forever", cfg)
    t.ok(cfg.get("headers") == {"Authorization": "***", "X-Team": "data", "Content-Type": "application/vnd.sluice+json"}
         and cfg.get("header_secrets") == "***", "the 201 shows Authorization as ***, other headers as given", cfg)
    t.ok("Bearer tok" not in r.body.decode(), "the secret header value is not in the 201")

    hs = write(3, "rv")
    t.ok(arrived(rx, hs), "the three records arrive, accepted", len(rx.received()))
    got = rx.received()
    by = by_key(rx)
    t.ok(got and all(q["method"] == "PUT" for q in got), "every request is a PUT", [q["method"] for q in got])
    t.ok(got and all(q["authorized"] is True for q in got), "every request carries Authorization: Bearer tok")
    t.ok(got and all(q["headers"].get("x-team") == "data" for q in got), "every request carries X-Team: data")
    t.ok(got and all(q["headers"].get("content-type") == "application/vnd.sluice+json" for q in got),
         "the configured Content-Type replaces application/json (once)", [q["headers"].get("content-type") for q in got])
    t.ok(set(by) == set(hs), "the Idempotency-Key is each record's hash (batch_size 1)", sorted(by))
    ev = [by.get(h, {}).get("json") or {} for h in hs]
    t.ok(all(set(e) == {"event", "agent_id", "record_hash", "payload", "timestamp_ms"} for e in ev)
         and [e.get("payload") for e in ev] == [{"i": 0}, {"i": 1}, {"i": 2}]
         and [e.get("record_hash") for e in ev] == hs and all(e.get("event") == "write" for e in ev),
         "the bodies are the event objects, in order", ev)

with t.section("GET shows the kind and the masked header; a PATCH sending it back keeps it", srv):
    r = srv.req("GET", C + "/" + hid)
    t.ok(r.status == 200 and r.json["kind"] == "webhook" and r.json["config"]["method"] == "PUT"
         and r.json["config"]["headers"]["Authorization"] == "***" and r.json["config"]["header_secrets"] == "***",
         "GET /v1/connectors/{id}: kind webhook, method PUT, Authorization ***", r)
    t.ok("Bearer tok" not in r.body.decode(), "GET never shows the secret header value")
    lst = srv.req("GET", C)
    t.ok(lst.status == 200 and "Bearer tok" not in lst.body.decode(), "nor does the list")

    masked = r.json["config"]
    masked["headers"]["X-Team"] = "ops"
    r = srv.req("PATCH", C + "/" + hid, {"config": masked})
    t.ok(r.status == 200 and r.json["config"]["headers"]["Authorization"] == "***"
         and r.json["config"]["headers"]["X-Team"] == "ops", "PATCH with the masked config -> 200", r)
    rx.clear()
    hs2 = write(2, "rv", 3)
    t.ok(arrived(rx, hs2), "after the PATCH the records arrive, accepted", [q["status"] for q in rx.received()])
    got = rx.received()
    t.ok(got and all(q["authorized"] is True and q["headers"].get("x-team") == "ops" for q in got),
         "the kept Authorization still works, the changed header is sent", [q["headers"] for q in got])

    r = srv.req("PATCH", C + "/" + hid, {"kind": "http-webhook", "enabled": True})
    t.ok(r.status == 200 and r.json["kind"] == "webhook", "PATCH naming the alias as kind is fine", r)
    bare = dict(masked)
    del bare["header_secrets"]  # only headers with "***": the stored value is kept as well
    r = srv.req("PATCH", C + "/" + hid, {"config": bare})
    t.eq(r.status, 200, "PATCH without header_secrets, Authorization still ***")
    srv.stop()
    srv.start()
    rx.clear()
    hs3 = write(1, "rv", 5)
    t.ok(arrived(rx, hs3) and all(q["authorized"] is True and q["method"] == "PUT" for q in rx.received()),
         "after a restart the stored secret header still authorizes the PUT", [q["status"] for q in rx.received()])

    r = srv.req("PATCH", C + "/" + hid, {"config": dict(bare, headers={"Proxy-Authorization": "***"})})
    t.ok(r.status == 400 and "config.headers.Proxy-Authorization" in r.json.get("error", ""),
         "*** for a secret header that was never stored -> 400 naming it", r)
    after = srv.req("GET", C + "/" + hid).json["config"]
    t.ok(after["headers"].get("X-Team") == "ops" and after["headers"].get("Authorization") == "***",
         "the refused PATCH changed nothing", after)

with t.section("retry.max_attempts 2 against a receiver answering 500", srv):
    rf = Receiver().start()
    rf.set_mode("status", status=500)
    r = srv.req("POST", C, {"name": "two-attempts", "kind": "http-webhook", "strands": ["ma"], "config": {
        "url": rf.url("/fail"), "retry": dict(FAST, max_attempts=2)}})
    t.ok(r.status == 201 and r.json["config"]["retry"]["max_retries"] == 1
         and "max_attempts" not in r.json["config"]["retry"], "max_attempts 2 is stored as max_retries 1", r)
    fid = r.json["id"]
    h = write(1, "ma")[0]
    D = C + "/%s/dead-letters" % fid
    deadline = time.monotonic() + 10
    while srv.req("GET", D).json.get("count", 0) < 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.5)  # a third attempt would come within 50 ms of backoff: none may
    dl = srv.req("GET", D).json.get("dead_letters", [])
    t.eq(rf.by_idempotency_key().get(h), 2, "exactly 2 attempts reach the receiver")
    t.ok(len(dl) == 1 and dl[0]["record_hash"] == h and dl[0]["attempts"] == 2 and dl[0]["last_status"] == 500,
         "then the record is a dead letter with attempts 2 and status 500", dl)
    rf.stop()

with t.section("bad inputs -> 400 naming the field, nothing stored", srv):
    before = srv.req("GET", C).json["connectors"]
    cases = [
        ({"method": "GET"}, "config.method", "method GET"),
        ({"headers": "X-Team: data"}, "config.headers", "headers not an object"),
        ({"headers": ["X-Team"]}, "config.headers", "headers an array"),
        ({"headers": {"X-Evil": "a\r\nX-Injected: 1"}}, "config.headers.X-Evil", "a header value with CR LF"),
        ({"headers": {"X-Evil": "a\nb"}}, "config.headers.X-Evil", "a header value with LF"),
        ({"headers": {"Authorization": "Bearer a\r\nX-Injected: 1"}}, "config.headers.Authorization",
         "a secret header value with CR LF"),
        ({"headers": {"Idempotency-Key": "mine"}}, "config.headers.Idempotency-Key", "Idempotency-Key in headers"),
        ({"timeout_secs": 30, "timeout_ms": 1000}, "config.timeout_secs", "timeout_secs with timeout_ms"),
        ({"timeout_secs": "30"}, "config.timeout_secs", "timeout_secs as a string"),
        ({"retry": {"max_attempts": 3, "max_retries": 2}}, "config.retry.max_attempts", "max_attempts with max_retries"),
        ({"retry": {"max_attempts": 0}}, "config.retry.max_attempts", "max_attempts 0"),
        ({"secret": "s", "headers": {"Authorization": "Bearer s"}}, "config.headers.Authorization",
         "secret with headers.Authorization"),
        ({"headers": {"Authorization": "***"}}, "config.headers.Authorization", "*** with nothing stored"),
    ]
    for i, (extra, field, what) in enumerate(cases):
        cfg = dict({"url": "http://127.0.0.1:9/x"}, **extra)
        r = srv.req("POST", C, {"name": "bad-%d" % i, "kind": "http-webhook", "config": cfg})
        err = (r.json or {}).get("error", "")
        t.ok(r.status == 400 and err.startswith(field + ":"), "%s -> 400 naming %s" % (what, field), r)
    now = srv.req("GET", C).json["connectors"]
    t.ok(len(now) == len(before) and not any(c["name"].startswith("bad-") for c in now),
         "none of them was stored", [c["name"] for c in now])
    r = srv.req("PATCH", C + "/" + hid, {"config": {"url": rx.url("/in"), "headers": {"X-Evil": "a\r\nb: c"}}})
    t.ok(r.status == 400 and "config.headers.X-Evil" in r.json.get("error", ""), "a PATCH with CR LF -> 400", r)
    t.eq(srv.req("GET", C + "/" + hid).json["config"]["headers"].get("X-Team"), "ops", "and the stored config stays")

with t.section("the catalog", srv):
    r = srv.req("GET", "/v1/connector-kinds")
    wk = [k for k in r.json.get("kinds", []) if k["kind"] == "webhook"] if r.status == 200 else []
    names = {f["name"]: f for f in wk[0]["fields"]} if wk else {}
    t.ok(wk and "http-webhook" in wk[0].get("aliases", []) and names.get("method", {}).get("choices") == ["POST", "PUT", "PATCH"]
         and names.get("headers", {}).get("type") == "object of strings" and names.get("header_secrets", {}).get("secret"),
         "GET /v1/connector-kinds: webhook, alias http-webhook, method and headers", json.dumps(wk)[:600])

rx.stop()
srv.stop()
t.done()
