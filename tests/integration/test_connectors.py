"""The Connector Hub management API and the REST bridge, against the SapixDB seed's examples
(shared/seeds/000_*): create / list / get / patch / delete, the kinds catalog, secrets, the
push endpoint with flags and rate limits, persistence across restarts, and every error."""
import os
import sqlite3
import time

import sluicetest as st

t = st.Checks()
st.require_binary(t)
srv = st.Server().start()
C = "/v1/connectors"


def err_ok(r, status, needle, what):
    j = r.json if isinstance(r.json, dict) else {}
    t.ok(r.status == status and needle in (j.get("error") or "") and j.get("code"),
         "%s -> %d naming %s" % (what, status, needle), r)


with t.section("create, as in the seed", srv):
    r = srv.req("POST", C, {"name": "IoT Bridge", "kind": "rest_bridge", "config": {"flags": 0}})
    bridge = r.json
    t.ok(r.status == 201 and bridge["kind"] == "rest_bridge" and bridge["direction"] == "inbound"
         and bridge["enabled"] is True and bridge["event_count"] == 0 and bridge["name"] == "IoT Bridge",
         "POST rest_bridge -> 201 ConnectorConfig", r)
    keys = {"id", "name", "kind", "direction", "enabled", "created_at_ms", "config", "last_event_ms",
            "event_count", "state", "last_error", "strands"}
    t.ok(set(bridge) == keys, "ConnectorConfig has exactly the seed's fields plus state, last_error, strands", sorted(bridge))
    t.ok(isinstance(bridge["id"], str) and 8 <= len(bridge["id"]) <= 32 and
         all(c.isalnum() or c in "-_" for c in bridge["id"]), "ids are short url-safe strings", bridge["id"])
    t.ok(bridge["state"] == "running" and bridge["strands"] == ["default"] and bridge["config"]["strand"] == "default",
         "a rest bridge runs and writes to config.strand (default 'default')", bridge)
    r = srv.req("POST", C, {"name": "Slack alerts", "kind": "webhook",
                            "config": {"url": "https://hooks.slack.com/services/T00", "secret": "optional-bearer-token"}})
    hook = r.json
    t.ok(r.status == 201 and hook["direction"] == "outbound" and hook["config"]["secret"] == "***"
         and hook["config"]["batch_size"] == 1 and hook["config"]["start"] == "head" and hook["strands"] == ["*"],
         "POST webhook -> 201, secret shown as ***, defaults filled, every strand followed", r)
    r = srv.req("POST", C, {"name": "R2 archive", "kind": "s3", "config": {
        "endpoint": "https://account.r2.cloudflarestorage.com", "bucket": "sapixdb-archive",
        "prefix": "prod/records", "auth_header": "Bearer <R2-token>"}})
    s3 = r.json
    t.ok(r.status == 201 and s3["config"]["auth_header"] == "***" and s3["config"]["region"] == "us-east-1",
         "POST s3 -> 201, auth_header hidden", r)
    r = srv.req("POST", C, {"name": "Orders CDC", "kind": "postgres_cdc", "config": {
        "connection_string": "postgres://user:pass@host:5432/mydb", "slot": "sapix_slot",
        "publication": "sapix_pub", "table_filter": "public.*"}})
    cdc = r.json
    t.ok(r.status == 201 and cdc["config"]["connection_string"] == "postgres://user:***@host:5432/mydb",
         "POST postgres_cdc -> 201, the password inside connection_string is masked", r)
    r = srv.req("POST", C, {"name": "Rivven CDC", "kind": "postgres_cdc", "config": {
        "host": "db", "port": 5432, "database": "shop", "user": "u", "password": "p", "slot_name": "s",
        "publication_name": "p", "publication_tables": [], "auto_create_slot": True, "tls": {"mode": "disable"},
        "snapshot_mode": "initial"}})
    t.ok(r.status == 201 and r.json["config"]["password"] == "***", "the Rivven postgres-cdc dialect is accepted", r)
    r = srv.req("POST", C, {"name": "Events stream", "kind": "kafka", "config": {
        "brokers": ["broker1:9092", "broker2:9092"], "topic": "sapixdb-events", "group_id": "sapix-consumer",
        "auto_offset_reset": "latest"}})
    kafka = r.json
    t.ok(r.status == 201 and kafka["kind"] == "kafka", "POST kafka (SapixDB's keys) -> 201", r)
    gone = st.wait_until(lambda: srv.req("GET", C + "/" + kafka["id"]).json["state"] != "running"
                         and srv.req("GET", C + "/" + kafka["id"]).json["last_error"], 20)
    t.ok(gone, "a kafka source whose brokers cannot be reached is not running, and last_error says why",
         srv.req("GET", C + "/" + kafka["id"]).json)
    r = srv.req("POST", C, {"name": "two strands", "kind": "webhook", "config": {"url": "http://x/y"},
                            "strands": ["default", "orders"]})
    t.ok(r.status == 201 and r.json["strands"] == ["default", "orders"], "outbound strands can be chosen", r)
    two = r.json

with t.section("list, get, kinds", srv):
    r = srv.req("GET", C)
    ids = [c["id"] for c in r.json["connectors"]]
    t.ok(r.status == 200 and r.json["inbound_count"] == 4 and r.json["outbound_count"] == 3 and len(ids) == 7,
         "GET /v1/connectors lists all with inbound_count and outbound_count", r)
    t.ok(all(c["config"].get("secret") in (None, "***") and c["config"].get("auth_header") in (None, "***")
             for c in r.json["connectors"]), "no secret appears in the list")
    r = srv.req("GET", C + "/" + hook["id"])
    live = ("state", "last_error", "stats")  # the worker's view: its target does not resolve here
    t.ok(r.status == 200 and {k: v for k, v in r.json.items() if k not in live} ==
         {k: v for k, v in hook.items() if k not in live}, "GET /v1/connectors/{id} returns the connector", r)
    t.ok(st.wait_until(lambda: srv.req("GET", C + "/" + hook["id"]).json["state"] == "unhealthy", 10)
         and "hooks.slack.com" in (srv.req("GET", C + "/" + hook["id"]).json["last_error"] or ""),
         "a webhook whose host does not resolve is not running: unhealthy, and last_error says why")
    r = srv.req("GET", "/v1/connector-kinds")
    kinds = {k["kind"]: k for k in r.json.get("kinds", [])} if r.status == 200 else {}
    t.ok(set(kinds) == {"rest_bridge", "webhook", "s3", "postgres_cdc", "kafka", "object_storage",
                        "mysql-cdc",
                        "stdout", "datagen", "supabase", "postgres_sink", "kafka_sink",
                        "clickhouse", "elasticsearch", "mqtt", "mqtt_sink"},
         "the catalog lists the SapixDB kinds and the framework's new ones", r)
    url = [f for f in kinds.get("webhook", {}).get("fields", []) if f["name"] == "url"]
    sec = [f for f in kinds.get("webhook", {}).get("fields", []) if f["name"] == "secret"]
    t.ok(url and url[0]["required"] and sec and sec[0]["secret"] and not sec[0]["required"],
         "catalog fields carry type, required, default and secret", kinds.get("webhook"))

with t.section("REST bridge push", srv):
    bid = bridge["id"]
    P = "/v1/connectors/inbound/rest/%s/push" % bid
    r = srv.req("POST", P, {"sensor": "temp-7", "value": 22.4, "unit": "celsius"})
    t.ok(r.status == 201 and st.is_hex64(r.json.get("record_hash")) and r.json.get("connector_id") == bid,
         "push -> 201 {record_hash, connector_id}", r)
    rec = srv.req("GET", "/v1/records/" + r.json["record_hash"]).json
    t.ok(rec["payload"] == {"sensor": "temp-7", "value": 22.4, "unit": "celsius", "_connector_id": bid}
         and list(rec["payload"]) == ["sensor", "value", "unit", "_connector_id"] and rec["source"] == bid
         and rec["flags"] == 0 and rec["strand"] == "default",
         "the record carries _connector_id (appended, key order kept), source = id, config.flags", rec)
    r = srv.req("POST", P, {"a": 1, "_connector_id": "someone-else"})
    rec = srv.req("GET", "/v1/records/" + r.json["record_hash"]).json
    t.ok(rec["payload"] == {"a": 1, "_connector_id": bid}, "a _connector_id sent by the client is replaced", rec)
    r = srv.req("POST", P + "?flags=2", {"t": 1})
    t.ok(r.status == 201 and srv.req("GET", "/v1/records/" + r.json["record_hash"]).json["flags"] == 2, "?flags=2 sets TOMBSTONE")
    r = srv.req("POST", P, {"t": 2}, headers={"X-Record-Flags": "2"})
    t.ok(r.status == 201 and srv.req("GET", "/v1/records/" + r.json["record_hash"]).json["flags"] == 2, "X-Record-Flags: 2 sets TOMBSTONE")
    r = srv.req("POST", P + "?flags=2", {"t": 3}, headers={"X-Record-Flags": "2"})
    t.eq(r.status, 201, "?flags and X-Record-Flags that agree are accepted")
    before = st.counts(srv.port).get("default")
    err_ok(srv.req("POST", P + "?flags=2", {"t": 4}, headers={"X-Record-Flags": "0"}), 400, "flags", "flags that disagree")
    err_ok(srv.req("POST", P + "?flags=x", {"t": 4}), 400, "flags", "?flags=x")
    err_ok(srv.req("POST", P, {"t": 4}, headers={"X-Record-Flags": "-1"}), 400, "X-Record-Flags", "X-Record-Flags: -1")
    err_ok(srv.req("POST", P, [1, 2]), 400, "body", "a JSON array pushed")
    err_ok(srv.req("POST", P, "42"), 400, "body", "a number pushed")
    err_ok(srv.req("POST", P, '{"a": '), 400, "body", "invalid JSON pushed")
    t.eq(srv.req("POST", P, '{"a":1}', ctype="text/plain").status, 415, "text/plain push -> 415")
    err_ok(srv.req("POST", "/v1/connectors/inbound/rest/nope/push", {"a": 1}), 404, "nope", "push to an unknown id")
    err_ok(srv.req("POST", "/v1/connectors/inbound/rest/%s/push" % hook["id"], {"a": 1}), 404, hook["id"],
           "push to a webhook connector")
    t.eq(srv.req("GET", P).status, 405, "GET on the push route -> 405")
    t.eq(st.counts(srv.port).get("default"), before, "no bad push wrote anything")
    got = srv.req("GET", C + "/" + bid).json
    t.ok(got["event_count"] == 5 and got["last_event_ms"] and got["last_event_ms"] >= rec["timestamp_ms"],
         "event_count and last_event_ms follow the pushes", got)
    r = srv.req("PATCH", C + "/" + bid, {"enabled": False})
    t.ok(r.status == 200 and r.json["enabled"] is False and r.json["state"] == "disabled", "PATCH enabled=false", r)
    err_ok(srv.req("POST", P, {"a": 1}), 409, bid, "push to a disabled bridge")
    r = srv.req("PATCH", C + "/" + bid, {"enabled": True})
    t.eq(srv.req("POST", P, {"a": 1}).status, 201, "re-enabled bridge takes pushes again")
    r = srv.req("POST", C, {"name": "orders bridge", "kind": "rest_bridge", "config": {"strand": "orders", "flags": 2}})
    ob = r.json
    r = srv.req("POST", "/v1/connectors/inbound/rest/%s/push" % ob["id"], {"o": 1})
    rec = srv.req("GET", "/v1/records/" + r.json["record_hash"]).json
    t.ok(rec["strand"] == "orders" and rec["flags"] == 2, "config.strand and config.flags are used", rec)

with t.section("rate limit", srv):
    r = srv.req("POST", C, {"name": "limited", "kind": "rest_bridge",
                            "config": {"rate_limit": {"events_per_second": 2, "burst": 3}}})
    lp = "/v1/connectors/inbound/rest/%s/push" % r.json["id"]
    codes = [srv.req("POST", lp, {"i": i}) for i in range(6)]
    ok = [x.status for x in codes]
    limited = [x for x in codes if x.status == 429]
    t.ok(ok[:3] == [201, 201, 201] and limited and all(x.headers.get("retry-after", "").isdigit() for x in limited),
         "a burst of 3 passes, then 429 with Retry-After", ok)
    t.ok(all(x.json.get("code") == "rate_limited" for x in limited), "429 answers are JSON errors")

with t.section("PATCH and secrets", srv):
    hid = hook["id"]
    r = srv.req("PATCH", C + "/" + hid, {"name": "Renamed", "config": {"url": "https://new-endpoint.example.com/hook", "secret": "tok"}})
    t.ok(r.status == 200 and r.json["name"] == "Renamed" and r.json["config"]["url"].startswith("https://new-endpoint")
         and r.json["config"]["secret"] == "***", "PATCH name + config (seed example) -> 200", r)
    r = srv.req("PATCH", C + "/" + hid, {"config": {"url": "https://new-endpoint.example.com/hook"}})
    t.ok(r.status == 200 and "secret" not in r.json["config"], "config replaces: a PATCH without secret drops it", r)
    r = srv.req("PATCH", C + "/" + cdc["id"], {"config": dict(cdc["config"], table_filter="public.orders")})
    t.ok(r.status == 200 and r.json["config"]["connection_string"] == "postgres://user:***@host:5432/mydb"
         and r.json["config"]["table_filter"] == "public.orders",
         "PATCH sending the masked connection string back keeps it", r)
    err_ok(srv.req("PATCH", C + "/" + hid, {"kind": "s3"}), 400, "kind", "PATCH changing kind")
    t.eq(srv.req("PATCH", C + "/" + hid, {"kind": "webhook", "enabled": True}).status, 200, "PATCH naming the same kind is fine")
    err_ok(srv.req("PATCH", C + "/" + hid, {"config": {"url": 5}}), 400, "config.url", "PATCH with a bad config")
    err_ok(srv.req("PATCH", C + "/" + hid, {"id": "x"}), 400, "id", "PATCH an unknown field")
    err_ok(srv.req("PATCH", C + "/" + hid, {"enabled": "yes"}), 400, "enabled", "PATCH enabled non-boolean")
    err_ok(srv.req("PATCH", C + "/" + hid, {"name": ""}), 400, "name", "PATCH empty name")
    err_ok(srv.req("PATCH", C + "/" + bridge["id"], {"strands": ["a"]}), 400, "strands", "strands on an inbound connector")
    t.eq(srv.req("GET", C + "/" + hid).json["name"], "Renamed", "failed PATCHes changed nothing")

with t.section("bad creates", srv):
    n0 = len(srv.req("GET", C).json["connectors"])
    cases = [
        ({"name": "x", "kind": "nope"}, "kind", "unknown kind"),
        ({"name": "x"}, "kind", "missing kind"),
        ({"kind": "webhook", "config": {"url": "http://a"}}, "name", "missing name"),
        ({"name": "x", "kind": "webhook", "config": {}}, "config.url", "missing required field"),
        ({"name": "x", "kind": "webhook", "config": {"url": 5}}, "config.url", "wrong type"),
        ({"name": "x", "kind": "webhook", "config": {"url": "ftp://a"}}, "config.url", "not an http URL"),
        ({"name": "x", "kind": "webhook", "config": {"url": "http://a", "batch_size": 0}}, "config.batch_size", "out of range"),
        ({"name": "x", "kind": "webhook", "config": {"url": "http://a", "retry": {"max_retries": "3"}}},
         "config.retry.max_retries", "nested wrong type"),
        ({"name": "x", "kind": "webhook", "config": {"url": "http://a", "start": "middle"}}, "config.start", "bad enum"),
        ({"name": "x", "kind": "webhook", "config": {"url": "http://a", "colour": 1}}, "config.colour", "unknown config field"),
        ({"name": "x", "kind": "rest_bridge", "config": {"strand": "Bad Name"}}, "config.strand", "bad strand name"),
        ({"name": "x", "kind": "kafka", "config": {"topic": "t"}}, "config.brokers", "kafka without brokers"),
        ({"name": "x", "kind": "postgres_cdc", "config": {}}, "config.connection_string", "postgres without either dialect"),
        ({"name": "x", "kind": "s3", "config": {"endpoint": "http://a", "bucket": "b", "access_key_id": "k"}},
         "config.secret_access_key", "SigV4 key without secret"),
        ({"name": "x", "kind": "webhook", "config": {"url": "http://a"}, "strands": []}, "strands", "empty strands"),
        ({"name": "x", "kind": "webhook", "config": {"url": "http://a"}, "extra": 1}, "extra", "unknown top-level field"),
        ({"name": "x", "kind": "webhook", "config": "url"}, "config", "config not an object"),
    ]
    for body, needle, what in cases:
        err_ok(srv.req("POST", C, body), 400, needle, "create with " + what)
    err_ok(srv.req("POST", C, '{"name": "x",'), 400, "byte", "invalid JSON create (byte offset)")
    err_ok(srv.req("POST", C, '{"name":"a","name":"b","kind":"rest_bridge"}'), 400, "name", "duplicate key")
    t.eq(srv.req("POST", C, '{"name":"x","kind":"rest_bridge"}', ctype="text/plain").status, 415, "create with text/plain -> 415")
    t.eq(srv.req("PUT", C, {}).status, 405, "PUT /v1/connectors -> 405")
    t.eq(len(srv.req("GET", C).json["connectors"]), n0, "no bad create stored anything")
    for m in ("GET", "PATCH", "DELETE"):
        err_ok(srv.req(m, C + "/unknown-id", {} if m == "PATCH" else None), 404, "unknown-id", "%s unknown id" % m)

with t.section("names are unique (byte for byte)", srv):
    def taken(r, other_id, name, what):
        j = r.json if isinstance(r.json, dict) else {}
        t.ok(r.status == 409 and j.get("code") == "connector_name_taken" and
             j.get("error") == "name: a connector named '%s' already exists (id %s)" % (name, other_id),
             "%s -> 409 connector_name_taken naming name and the other connector" % what, r)

    n0 = len(srv.req("GET", C).json["connectors"])
    bridge_before = srv.req("GET", C + "/" + bridge["id"]).json
    taken(srv.req("POST", C, {"name": "IoT Bridge", "kind": "webhook", "config": {"url": "http://a/b"}}),
          bridge["id"], "IoT Bridge", "create with a name in use")
    taken(srv.req("POST", "/api/v1/connectors", {"name": "IoT Bridge", "connectorType": "sink",
                                                 "connectorClass": "webhook", "topics": ["default"],
                                                 "config": {"url": "http://a/b"}}),
          bridge["id"], "IoT Bridge", "StreamHouse create (/api/v1/connectors) with a name in use")
    t.eq(len(srv.req("GET", C).json["connectors"]), n0, "a refused create stores nothing")
    r = srv.req("POST", C, {"name": "iot bridge", "kind": "rest_bridge"})
    t.ok(r.status == 201 and r.json["name"] == "iot bridge", "names are case-sensitive: 'iot bridge' is another name", r)
    low = r.json
    taken(srv.req("PATCH", C + "/" + low["id"], {"name": "IoT Bridge", "enabled": False}), bridge["id"], "IoT Bridge",
          "PATCH renaming to another connector's name")
    taken(srv.req("PATCH", "/api/v1/connectors/" + low["id"], {"name": "IoT Bridge"}), bridge["id"], "IoT Bridge",
          "the same PATCH on /api/v1/connectors")
    t.eq(srv.req("GET", C + "/" + low["id"]).json, low, "a refused PATCH writes nothing (not even its other fields)")
    t.eq(srv.req("GET", C + "/" + bridge["id"]).json, bridge_before, "the connector holding the name is untouched")
    r = srv.req("PATCH", C + "/" + low["id"], {"name": "iot bridge", "enabled": True})
    t.ok(r.status == 200 and r.json["name"] == "iot bridge", "PATCH to its own name is fine", r)
    r = srv.req("POST", C, {"name": "reused", "kind": "rest_bridge"})
    t.eq(r.status, 201, "create 'reused'")
    first = r.json["id"]
    taken(srv.req("POST", C, {"name": "reused", "kind": "rest_bridge"}), first, "reused", "a second 'reused'")
    t.eq(srv.req("DELETE", C + "/" + first).status, 200, "delete the first 'reused'")
    r = srv.req("POST", C, {"name": "reused", "kind": "rest_bridge"})
    t.ok(r.status == 201 and r.json["id"] != first, "after the delete the name can be used again -> 201", r)
    srv.req("DELETE", C + "/" + r.json["id"])
    r = srv.req("PATCH", C + "/" + low["id"], {"name": "reused"})
    t.ok(r.status == 200 and r.json["name"] == "reused", "and a rename to a freed name is fine", r)
    srv.req("DELETE", C + "/" + low["id"])
    long_name = "\u00e9" * 128  # 256 bytes of UTF-8, the longest name
    r = srv.req("POST", C, {"name": long_name, "kind": "rest_bridge"})
    t.eq(r.status, 201, "a 256-byte name")
    lid = r.json["id"]
    r = srv.req("POST", C, {"name": long_name, "kind": "rest_bridge"})
    e = (r.json or {}).get("error", "") if isinstance(r.json, dict) else ""
    t.ok(r.status == 409 and e.startswith("name: a connector named '\u00e9\u00e9") and e.endswith("...' already exists (id %s)" % lid),
         "a long name in use: the message cuts it (on a character boundary) and keeps the id", r)
    srv.req("DELETE", C + "/" + lid)

with t.section("duplicate names stored by an older version still load", srv):
    a = srv.req("POST", C, {"name": "legacy a", "kind": "rest_bridge"}).json
    b = srv.req("POST", C, {"name": "legacy b", "kind": "rest_bridge"}).json
    srv.stop()
    db = sqlite3.connect(os.path.join(srv.data, "meta.db"))  # what an older version could store
    with db:
        db.execute("UPDATE connectors SET name='legacy a' WHERE id=?", (b["id"],))
    db.close()
    mark = srv.log_mark()
    srv.start()
    named = [c["id"] for c in srv.req("GET", C).json["connectors"] if c["name"] == "legacy a"]
    t.eq(sorted(named), sorted([a["id"], b["id"]]), "both connectors named 'legacy a' load")
    log = srv.log_since(mark)
    t.ok("both named 'legacy a'" in log and a["id"] in log and b["id"] in log,
         "the duplicate is logged as a warning naming both ids", log)
    r = srv.req("PATCH", C + "/" + b["id"], {"name": "legacy a", "enabled": False})
    t.ok(r.status == 200 and r.json["enabled"] is False, "one of them can still be PATCHed with its own name", r)
    taken(srv.req("POST", C, {"name": "legacy a", "kind": "rest_bridge"}), a["id"], "legacy a",
          "a third 'legacy a'")
    r = srv.req("PATCH", C + "/" + b["id"], {"name": "legacy b"})
    t.ok(r.status == 200 and r.json["name"] == "legacy b", "and renamed apart", r)
    for x in (a, b):
        srv.req("DELETE", C + "/" + x["id"])

with t.section("persistence and delete", srv):
    def persistent(c):  # "stats" are delivery counters since the server started
        return {k: v for k, v in c.items() if k != "stats"}
    before = {c["id"]: persistent(c) for c in srv.req("GET", C).json["connectors"]}
    t0 = time.monotonic()
    rc = srv.stop()
    took = time.monotonic() - t0
    t.eq(rc, 0, "SIGTERM exits 0")
    # the kafka source above still waits for brokers that do not resolve: its 5 s health
    # check gives up when the connector is stopped
    t.ok(took < 2.0, "SIGTERM with a kafka source waiting for its brokers: exit within 2 s (took %.2f s)"
         % took)
    srv.start()
    unhealthy = {i for i, c in before.items() if c["state"] == "unhealthy"}  # checked again at start
    st.wait_until(lambda: {c["id"] for c in srv.req("GET", C).json["connectors"] if c["state"] == "unhealthy"}
                  >= unhealthy, 10)
    after = {c["id"]: persistent(c) for c in srv.req("GET", C).json["connectors"]}
    t.ok(after == before, "connectors, configs and counters survive a restart", (len(before), len(after)))
    t.eq(srv.req("POST", "/v1/connectors/inbound/rest/%s/push" % bridge["id"], {"after": "restart"}).status, 201,
         "a restarted server takes pushes for the bridge")
    t.eq(srv.req("POST", C, {"name": "IoT Bridge", "kind": "rest_bridge"}).status, 409,
         "a name in use stays taken after a restart")
    srv.kill()
    srv.start()
    got = srv.req("GET", C + "/" + bridge["id"]).json
    t.ok(got["event_count"] >= before[bridge["id"]]["event_count"], "counters never go back after kill -9", got["event_count"])
    r = srv.req("DELETE", C + "/" + s3["id"])
    t.ok(r.status == 200 and r.json == {"deleted": True, "id": s3["id"]}, "DELETE -> {deleted: true, id}", r)
    t.eq(srv.req("GET", C + "/" + s3["id"]).status, 404, "a deleted connector is gone")
    srv.stop()
    srv.start()
    t.eq(srv.req("GET", C + "/" + s3["id"]).status, 404, "and stays gone after a restart")
    srv.stop()

t.done()
