"""GET /v1/strands/{name}/records?where=EXPR: records filtered by the expression language
(docs/expressions.md), scanning at most max_scan records per request with next_seq past what
was scanned, so that a client pages through a large strand with a rare match. Bad expressions
are answered 400 naming `where` and the column."""
import urllib.parse

import sluicetest as st

t = st.Checks()
st.require_binary(t)
srv = st.Server().start()
q = urllib.parse.quote

with t.section("where= filters records", srv):
    items = [{"strand": "q-orders", "payload": {"n": i, "amount": i * 10, "status": "paid" if i % 3 == 0 else "open",
                                                "customer": {"zip": "750%02d" % (i % 7)}}} for i in range(300)]
    r = srv.req("POST", "/v1/records/batch", items)
    t.eq(r.status, 201, "300 records written")
    w = 'value.amount >= 1000 && value.status in ["paid", "shipped"] && starts_with(value.customer.zip, "7500")'
    r = srv.req("GET", "/v1/strands/q-orders/records?limit=1000&where=" + q(w))
    got = [x["payload"]["n"] for x in r.json["records"]]
    want = [i for i in range(300) if i * 10 >= 1000 and i % 3 == 0 and i % 7 in range(0, 10)]
    t.eq(got, want, "the matching records, in seq order")
    t.ok(r.json["scanned"] == 300 and r.json["truncated"] is False and r.json["next_seq"] == 300,
         "scanned 300, not truncated, next_seq at the head", {k: r.json[k] for k in ("scanned", "truncated", "next_seq")})
    r = srv.req("GET", "/v1/strands/q-orders/records?where=" + q("seq == 7 && source == null"))
    t.ok(r.status == 200 and r.json["records"] == [], "metadata: records written without agent_id have source null", r)

with t.section("max_scan bounds a request; next_seq pages through a rare match", srv):
    w = q("value.n % 1 == 0")
    r = srv.req("GET", "/v1/strands/q-orders/records?where=" + w)
    t.ok(r.status == 400 and r.json["error"].startswith("where: column 9:"), "an unknown operator: 400 with its column", r)
    rare = q("value.n == 5 || value.n == 250")
    seen, nxt, pages = [], 0, 0
    while True:
        r = srv.req("GET", "/v1/strands/q-orders/records?max_scan=100&from_seq=%d&where=%s" % (nxt, rare))
        pages += 1
        seen += [x["payload"]["n"] for x in r.json["records"]]
        t.ok(r.json["scanned"] <= 100, "page %d scans at most 100" % pages)
        if not r.json["truncated"]:
            break
        nxt = r.json["next_seq"]
    t.eq((seen, pages), ([5, 250], 3), "three pages of 100 find both matches, nothing twice")
    r = srv.req("GET", "/v1/strands/q-orders/records?limit=1&where=" + q("value.n > 10"))
    t.ok(r.json["records"][0]["payload"]["n"] == 11 and r.json["next_seq"] == 12 and r.json["truncated"] is False,
         "limit stops the scan after the match: next_seq right after it", r.json)

with t.section("latest per key as of a time, tombstones removing keys", srv):
    import time as _t
    def put(payload, flags=0):
        r = srv.req("POST", "/v1/records", {"strand": "q-acct", "payload": payload, **({"flags": flags} if flags else {})})
        assert r.status == 201, r
        return r.json
    put({"id": "a", "bal": 1, "region": "eu"})
    put({"id": "b", "bal": 5, "region": "us"})
    put({"id": "a", "bal": 2, "region": "eu"})
    _t.sleep(0.02)
    mid = int(_t.time() * 1000)
    _t.sleep(0.02)
    put({"id": "b", "bal": 6, "region": "us"})
    put({"id": "a"}, flags=2)  # a tombstone: a is gone
    put({"id": "c", "bal": 9, "region": "eu"})
    put({"bal": 100})          # no key: not keyed
    r = srv.req("GET", "/v1/strands/q-acct/latest?key=id")
    t.eq([(x["payload"]["id"], x["payload"]["bal"]) for x in r.json["records"]], [("b", 6), ("c", 9)],
         "now: b's latest, c; a deleted by its tombstone; in seq order")
    t.ok(r.json["keys"] == 2 and r.json["truncated"] is False, "keys 2, not truncated", r.json)
    r = srv.req("GET", "/v1/strands/q-acct/latest?key=id&as_of_ms=%d" % mid)
    t.eq([(x["payload"]["id"], x["payload"]["bal"]) for x in r.json["records"]], [("b", 5), ("a", 2)],
         "as of a time before the tombstone: a and b as they were then")
    r = srv.req("GET", "/v1/strands/q-acct/latest?key=value.id&where=" + q("value.region == 'eu'"))
    t.eq([x["payload"]["id"] for x in r.json["records"]], ["c"], "where filters the latest records")
    r = srv.req("GET", "/v1/strands/q-acct/latest?key=id&max_scan=2")
    t.ok(r.json["truncated"] is True and r.json["scanned"] == 2, "max_scan bounds the backward scan", r.json)
    for qs, field in [("", "key: required"), ("key=" + q("a b"), "key: not a field path"),
                      ("key=id&where=" + q("value.x ="), "where: column 9")]:
        r = srv.req("GET", "/v1/strands/q-acct/latest?" + qs)
        t.ok(r.status == 400 and r.json["error"].startswith(field), "%s -> 400 %s" % (qs or "no key", field), r)
    t.eq(srv.req("GET", "/v1/strands/nope/latest?key=id").status, 404, "an unknown strand: 404")

with t.section("bad input is answered naming the parameter", srv):
    for qs, field in [("where=" + q("value.a >"), "where: column 10"),
                      ("where=" + q("(value.a"), "where: column 9"),
                      ("where=" + q("nope == 1"), "where: column 1: unknown name 'nope'"),
                      ("max_scan=10", "max_scan: only with where"),
                      ("max_scan=0&where=true", "max_scan")]:
        r = srv.req("GET", "/v1/strands/q-orders/records?" + qs)
        t.ok(r.status == 400 and r.json["error"].startswith(field) and r.json["code"], "%s -> 400 %s" % (qs, field), r)
    t.eq(srv.req("GET", "/v1/health").status, 200, "the server keeps serving")
srv.stop()
t.done()
