"""The Elasticsearch / OpenSearch bulk sink (StreamHouse's elasticsearch-sink) against the _bulk
STAND-IN (tests/peers/es_standin.cjs; no Elasticsearch can be installed here): the seed's exact
config ({topic} indices, string values), _ids from document.id or the record hash, deletes from
tombstones, per-item results (429 retried alone, mapper_parsing_exception dead-lettered with the
reason, the rest committed), 413 halving, bad configs refused naming the field, the target down
at start (unhealthy) and mid-stream (retried, nothing lost), kill -9 mid-batch (every document
once: a re-sent batch overwrites the same _ids), and every body re-encoded byte for byte by the
official @elastic/elasticsearch client's serializer."""
import json
import os
import subprocess
import sys

import sluicetest as st

sys.path.insert(0, os.path.join(st.ROOT, "tests", "peers"))
from es_standin import EsStandin  # noqa: E402

NODE_DIR = os.environ.get("SLUICE_NODE_DIR", os.path.join(st.ROOT, "build", "node"))
t = st.Checks()
st.require_binary(t)
es = EsStandin().start()
srv = st.Server().start()
wait = st.wait_until


def conn(cid):
    return srv.req("GET", "/v1/connectors/" + cid).json


def create(name, strands, config):
    r = srv.req("POST", "/v1/connectors", {"name": name, "kind": "elasticsearch", "strands": strands,
                                           "config": config})
    assert r.status == 201, r
    return r.json["id"]


def put_batch(strand, payloads, flags=0):
    items = [dict({"strand": strand, "payload": p}, **({"flags": flags} if flags else {})) for p in payloads]
    r = srv.req("POST", "/v1/records/batch", items)
    assert r.status == 201, r


def fast(**kw):
    return dict({"connection.url": es.url, "batch.interval_ms": 0, "start": "earliest",
                 "retry": {"initial_backoff_ms": 50, "max_backoff_ms": 300},
                 "circuit_breaker": {"reset_timeout_secs": 1}}, **kw)


def raw_bulk(body, ctype="application/x-ndjson", path="/_bulk"):
    import urllib.error
    import urllib.request
    req = urllib.request.Request(es.url + path, data=body.encode(), method="POST", headers={"Content-Type": ctype})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


with t.section("the stand-in answers _bulk as the Elasticsearch docs say (what the sink relies on)"):
    st_, j = raw_bulk('{"index":{"_index":"s","_id":"1"}}\n{"a":1}\n{"create":{"_index":"s","_id":"1"}}\n{"a":2}\n'
                      '{"delete":{"_index":"s","_id":"9"}}\n{"index":{"_index":"s"}}\n{"a":"x"}\n')
    t.ok(st_ == 200 and j["errors"] is True and [list(i)[0] for i in j["items"]] == ["index", "create", "delete", "index"]
         and [list(i.values())[0]["status"] for i in j["items"]] == [201, 409, 404, 400]
         and list(j["items"][3].values())[0]["error"]["type"] == "mapper_parsing_exception",
         "per-item statuses in request order: created, create conflict, delete not_found, mapping conflict", j)
    st_, j = raw_bulk('{"delete":{"_index":"s","_id":"9"}}\n')
    t.ok(st_ == 200 and j["errors"] is False, "a delete of a missing document is not an error", j)
    t.eq(raw_bulk('{"index":{"_index":"s"}}\n{"a":1}')[0], 400, "a body not ended by a newline: 400")
    t.eq(raw_bulk('{"upsert":{"_index":"s"}}\n{"a":1}\n')[0], 400, "an unknown action: 400")
    t.eq(raw_bulk('{"index":{}}\n{"a":1}\n')[0], 400, "no _index (and none in the path): 400")
    t.eq(raw_bulk('{"index":{}}\n{"a":1}\n', path="/p/_bulk")[0], 200, "the index from the path")
    t.eq(raw_bulk('{"index":{"_index":"s"}}\n{"a":1}\n', ctype="text/plain")[0], 406, "a wrong Content-Type: 406")
    # Response filtering (filter_path), which the sink asks for: each item's status and error only
    body = '{"index":{"_index":"f","_id":"1"}}\n{"a":1}\n{"index":{"_index":"f","_id":"2"}}\n{"a":"x"}\n'
    st_, j = raw_bulk(body, path="/_bulk?filter_path=errors,items.*.status,items.*.error")
    t.ok(st_ == 200 and j == {"errors": True, "items": [
        {"index": {"status": 201}},
        {"index": {"status": 400, "error": j["items"][1]["index"].get("error")}}]}
         and j["items"][1]["index"]["error"]["type"] == "mapper_parsing_exception",
         "filter_path=errors,items.*.status,items.*.error keeps only those, items in order", j)
    st_, j = raw_bulk(body, path="/_bulk?filter_path=items.*.error")
    t.ok(st_ == 200 and len(j["items"]) == 1 and "error" in j["items"][0]["index"],
         "filter_path=items.*.error (the docs' example): the failed item alone", j)
    st_, j = raw_bulk(body, path="/_bulk?filter_path=**.status")
    t.ok(st_ == 200 and [i["index"]["status"] for i in j["items"]] == [200, 400] and set(j) == {"items"},
         "filter_path=**.status: every status at any depth, nothing else", j)


with t.section("StreamHouse's exact config: an index per topic, the record hash as _id", srv):
    r = srv.req("POST", "/api/v1/connectors", {
        "name": "logs-to-elasticsearch", "connectorType": "sink", "connectorClass": "elasticsearch-sink",
        "topics": ["app-logs", "access-logs"],
        "config": {"connection.url": es.url, "index.name": "logs-{topic}", "batch.size": "1000",
                   "batch.interval_ms": "5000"}})
    t.eq(r.status, 201, "created with the seed's body (string values)")
    cid = r.json["id"]
    t.ok(wait(lambda: conn(cid)["state"] == "running", 10), "running (GET / answered)", conn(cid))
    put_batch("app-logs", [{"level": "info", "msg": "started", "n": i} for i in range(3)])
    put_batch("access-logs", [{"path": "/x", "status": 200}])
    t.ok(wait(lambda: es.count("logs-app-logs") == 3 and es.count("logs-access-logs") == 1, 15),
         "logs-app-logs has 3 documents, logs-access-logs 1 (after batch.interval_ms)", conn(cid)["stats"])
    rec = st.all_records(srv.port, "app-logs")[0]
    t.eq(es.doc("logs-app-logs", rec["record_hash"]), rec["payload"], "the _id is the record hash, the source the payload")

with t.section("document.id, overwrites and deletes", srv):
    d = create("docs", ["orders"], fast(**{"index.name": "orders", "document.id": "order.id"}))
    put_batch("orders", [{"order": {"id": 1}, "v": "a"}, {"order": {"id": 2}, "v": "b"},
                         {"order": {"id": 1}, "v": "a2"}, {"v": "no id"}])
    put_batch("orders", [{"order": {"id": 2}}], flags=2)  # a tombstone: delete that document
    t.ok(wait(lambda: conn(d)["stats"]["delivered"] + conn(d)["stats"]["dead_lettered"] >= 5, 15),
         "all five handled", conn(d)["stats"])
    t.ok(es.doc("orders", "1") == {"order": {"id": 1}, "v": "a2"} and es.doc("orders", "2") is None
         and es.count("orders") == 1, "order 1 overwritten by its second record, order 2 deleted by the tombstone")
    dl = srv.req("GET", "/v1/connectors/%s/dead-letters" % d).json["dead_letters"]
    t.ok(len(dl) == 1 and dl[0]["seq"] == 3 and "document.id" in dl[0]["last_error"],
         "the record without order.id is a dead letter saying so", dl)

with t.section("per-item results: 429 retried alone, mapper_parsing_exception dead-lettered", srv):
    p = create("partial", ["metrics"], fast(**{"index.name": "metrics"}))
    t.ok(wait(lambda: conn(p)["state"] == "running", 10), "running")
    put_batch("metrics", [{"v": 1}])
    t.ok(wait(lambda: es.count("metrics") == 1, 10), "the first document fixes v as a number")
    es.control(fail_items=2, item_status=429)
    before = es.stats()["requests"]
    put_batch("metrics", [{"v": 2}, {"v": 3}, {"v": "not a number"}, {"v": 5}, {"v": 6}])
    t.ok(wait(lambda: conn(p)["stats"]["delivered"] + conn(p)["stats"]["dead_lettered"] >= 6, 15),
         "all handled", conn(p)["stats"])
    t.eq(es.count("metrics"), 5, "five documents: the two refused with 429 made it on their own retry")
    bodies = es.bodies()
    retry_body = bodies[-1].splitlines()
    t.ok(es.stats()["requests"] - before == 2 and len(retry_body) == 4
         and [json.loads(x)["v"] for x in retry_body[1::2]] == [2, 3],
         "one bulk of five, then one of the two 429 items alone", bodies[-2:])
    t.eq(es.stats()["last_bulk"], "/_bulk?filter_path=errors,items.*.status,items.*.error",
         "the sink asks for the items' status and error only (response filtering)")
    dl = srv.req("GET", "/v1/connectors/%s/dead-letters" % p).json["dead_letters"]
    t.ok(len(dl) == 1 and "mapper_parsing_exception" in dl[0]["last_error"] and "400" in dl[0]["last_error"],
         "the document that does not fit the mapping is a dead letter with the reason", dl)

with t.section("413: a body larger than the cluster takes is halved", srv):
    es.control(max_body=3000)
    big = create("big", ["big"], fast(**{"index.name": "big", "batch.size": 50}))
    put_batch("big", [{"i": i, "pad": "x" * 100} for i in range(40)] + [{"huge": "y" * 5000}])
    t.ok(wait(lambda: es.count("big") == 40 and conn(big)["stats"]["dead_lettered"] == 1, 15),
         "the 40 small documents arrive in smaller bulks; the one larger than the limit is a dead letter",
         (es.count("big"), conn(big)["stats"]))
    es.control(max_body=100 * 1024 * 1024)

with t.section("bad configs are refused naming the field; nothing is stored", srv):
    base = {"connection.url": es.url, "index.name": "x"}
    n0 = len(srv.req("GET", "/v1/connectors").json["connectors"])
    for change, field in [({"index.name": "Logs"}, "config.index.name"), ({"index.name": "_x"}, "config.index.name"),
                          ({"index.name": None}, "config.index.name"), ({"batch.size": "many"}, "config.batch.size"),
                          ({"batch.size": 0}, "config.batch.size"), ({"connection.url": "ftp://h"}, "config.connection.url"),
                          ({"document.id": "a..b"}, "config.document.id"),
                          ({"connection.username": "u"}, "config.connection.password"),
                          ({"connection.username": "u", "connection.password": "p", "connection.api_key": "k"},
                           "config.connection.api_key"),
                          ({"index.nmae": "x"}, "config.index.nmae"), ({"batch.interval_ms": -1}, "config.batch.interval_ms")]:
        cfg = {k: v for k, v in dict(base, **change).items() if v is not None}
        r = srv.req("POST", "/v1/connectors", {"name": "bad", "kind": "elasticsearch", "config": cfg})
        t.ok(r.status == 400 and r.json["error"].startswith(field + ":"), "%s -> 400 naming %s" % (change, field), r)
    t.eq(len(srv.req("GET", "/v1/connectors").json["connectors"]), n0, "nothing was stored")

with t.section("target down at start, or refusing the credentials: unhealthy", srv):
    locked = EsStandin(auth="elastic:s3cret").start()
    for cfg, why in [({"connection.url": "http://127.0.0.1:1"}, "unreachable"),
                     ({"connection.url": locked.url, "connection.username": "elastic", "connection.password": "wrong"},
                      "credentials")]:
        x = create("down", ["none"], dict({"index.name": "x"}, **cfg))
        t.ok(wait(lambda: conn(x)["state"] == "unhealthy" and why in (conn(x)["last_error"] or ""), 10),
             "%s: unhealthy, last_error says %r" % (cfg.get("connection.password", cfg["connection.url"]), why), conn(x))
        srv.req("DELETE", "/v1/connectors/" + x)
    ok = create("auth", ["authed"], fast(**{"connection.url": locked.url, "index.name": "authed",
                                            "connection.username": "elastic", "connection.password": "s3cret"}))
    put_batch("authed", [{"a": 1}])
    t.ok(wait(lambda: locked.count("authed") == 1, 10), "with the right password the document is indexed")
    t.eq(srv.req("GET", "/v1/connectors/" + ok).json["config"]["connection.password"], "***", "the password is masked")
    locked.stop()

with t.section("Elasticsearch down mid-stream: retried, nothing lost", srv):
    m = create("mid", ["mid"], fast(**{"index.name": "mid", "batch.size": 20}))
    es.control(fail_requests=3, status=503)
    put_batch("mid", [{"i": i} for i in range(50)])
    t.ok(wait(lambda: es.count("mid") == 50, 15) and conn(m)["stats"]["failed"] > 0,
         "three 503 answers, then all 50 delivered", conn(m)["stats"])
    es.halt()
    put_batch("mid", [{"i": i} for i in range(50, 120)])
    t.ok(wait(lambda: conn(m)["stats"]["failed"] > 3, 10), "attempts fail while it is down", conn(m)["stats"])
    es.resume()  # the stand-in keeps documents in memory: only those sent after it is back count
    t.ok(wait(lambda: es.count("mid") == 70, 15), "the 70 written while it was down arrive when it is back",
         (es.count("mid"), conn(m)["stats"]))
    t.eq(conn(m)["stats"]["dead_lettered"], 0, "nothing dead-lettered")

with t.section("kill -9 of Sluice mid-batch: every document once (a re-sent batch overwrites)", srv):
    N = 40000
    docs0 = es.stats()["docs"]
    for i in range(0, N, 10000):
        put_batch("kill", [{"i": j} for j in range(i, i + 10000)])
    k = create("kill", ["kill"], fast(**{"index.name": "kill", "batch.size": 2000}))
    wait(lambda: es.count("kill") > 0, 15, interval=0.002)
    srv.kill()
    at_kill = es.count("kill")
    srv.start()
    t.ok(wait(lambda: es.count("kill") == N and conn(k)["stats"]["lag"] == 0, 30),
         "all %d documents after the restart (killed with %d in)" % (N, at_kill), conn(k)["stats"])
    t.note("the stand-in indexed %d documents for %d: the difference was sent again and overwrote the same _ids"
           % (es.stats()["docs"] - docs0, es.count("kill")))

with t.section("every body is what the official @elastic/elasticsearch client would send", srv):
    put_batch("unicode", [{"s": "é ü 日本 \"q\" \\ /", "f": 1.5, "neg": -3, "big": 1234567890123, "nested": {"a": [1, None, 2], "t": True}}])
    u = create("unicode", ["unicode"], fast(**{"index.name": "unicode"}))
    t.ok(wait(lambda: es.count("unicode") == 1, 10), "indexed")
    r = subprocess.run(["node", os.path.join(st.ROOT, "tests", "peers", "es_client_check.cjs")],
                       input=json.dumps(es.bodies()), capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, NODE_PATH=os.path.join(NODE_DIR, "node_modules")))
    rep = json.loads(r.stdout) if r.returncode == 0 else {"error": r.stderr[-500:]}
    t.ok(rep.get("bodies", 0) > 10 and rep["same"] == rep["bodies"],
         "the client's serializer re-encodes all %s bodies (%s lines) byte for byte" % (rep.get("bodies"), rep.get("lines")),
         rep)

srv.stop()
es.stop()
t.done()
