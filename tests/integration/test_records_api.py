#!/usr/bin/python3
"""Integration test of the record API (issue 2, "HTTP API"): single and batch writes, reads by
hash / seq / time, strands listing, health, metrics, concurrent writers and an independent
verification of the hash chain (tests/crash/verify_strand.py)."""
import base64
import json
import os
import re
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.dont_write_bytecode = True  # keep the source tree clean of __pycache__
import sluicetest as st  # noqa: E402

t = st.Checks()
st.require_binary(t)
# `make run` starts on ./sluice-data, which a fresh checkout does not have: serve creates it.
srv = st.Server(data=os.path.join(st.tmpdir(), "not", "yet", "there"))
try:
    srv.start()
    t.ok(os.path.isdir(srv.data), "serve creates a missing data directory and starts")
except st.ServerError as e:
    t.ok(False, "server starts on a missing data directory and prints 'listening on'", e)
    t.done()
P = srv.port
ZERO = "0" * 64
WRITE_FIELDS = ("record_hash", "strand", "seq", "timestamp_ms", "prev_hash")
READ_FIELDS = ("record_hash", "strand", "seq", "timestamp_ms", "flags", "source", "prev_hash", "payload")
now_ms = lambda: int(time.time() * 1000)  # noqa: E731


def post(body, path="/v1/records", ctype="application/json"):
    return srv.req("POST", path, body, ctype=ctype)


def get_rec(h, raw=False):
    return srv.req("GET", "/v1/records/%s%s" % (h, "?raw=1" if raw else ""))


def wait_clock_tick(ms=3):
    """Let the wall clock move on so that the next record gets a later timestamp."""
    start = now_ms()
    st.wait_until(lambda: now_ms() >= start + ms, 1.0, 0.001)


def payload_body(payload_json, **extra):
    """A POST body with the payload spliced in as raw JSON text (so its exact spelling is kept)."""
    head = "".join('"%s": %s, ' % (k, json.dumps(v)) for k, v in extra.items())
    return "{%s\"payload\": %s}" % (head, payload_json)


# ------------------------------------------------------------------ health
with t.section("health", srv):
    r = srv.req("GET", "/v1/health")
    j = r.json or {}
    t.ok(
        r.status == 200 and j.get("status") == "ok" and j.get("agent") == "sluice"
        and isinstance(j.get("version"), str) and j.get("version") != "",
        "GET /v1/health answers 200 {status: ok, agent: sluice, version}",
        r,
    )
    t.ok(r.headers.get("content-type", "").startswith("application/json"), "health answers Content-Type application/json", r.headers)

with t.section("fresh data dir lists the default strand", srv):
    s = st.strands(P)
    t.ok("default" in s and s["default"].get("count") == 0, "a fresh data dir lists strand 'default' with count 0", s)

# ------------------------------------------------------------------ single writes
single = []  # answers of the writes to api-single
with t.section("single writes", srv):
    t0 = now_ms()
    payloads = ['{"n": %d, "text": "record %d"}' % (i, i) for i in range(6)]
    statuses = []
    for i, p in enumerate(payloads):
        r = post(payload_body(p, strand="api-single"))
        statuses.append(r.status)
        single.append(r.json if r.status == 201 else None)
    t1 = now_ms()
    t.ok(all(s == 201 for s in statuses), "POST /v1/records answers 201 for each of 6 writes", statuses)
    ans = [a for a in single if a]
    t.ok(
        len(ans) == 6 and all(all(k in a for k in WRITE_FIELDS) for a in ans),
        "each 201 carries record_hash, strand, seq, timestamp_ms, prev_hash",
        ans[:1],
    )
    t.ok(all(a.get("strand") == "api-single" for a in ans), "answer names the strand written to", [a.get("strand") for a in ans])
    t.eq([a.get("seq") for a in ans], list(range(6)), "seq is dense from 0 on a new strand")
    t.ok(all(st.is_hex64(a.get("record_hash")) and st.is_hex64(a.get("prev_hash")) for a in ans),
         "record_hash and prev_hash are 64 lowercase hex chars", ans[:2])
    chain = [ZERO] + [a.get("record_hash") for a in ans[:-1]]
    t.eq([a.get("prev_hash") for a in ans], chain, "prev_hash of seq 0 is 32 zero bytes and each later one is the previous record_hash")
    t.eq(len({a.get("record_hash") for a in ans}), 6, "record hashes are all different")
    ts = [a.get("timestamp_ms") for a in ans]
    t.ok(all(type(x) is int for x in ts) and ts == sorted(ts), "timestamp_ms is an integer and never goes back", ts)
    t.ok(all(t0 - 1000 <= x <= t1 + 1000 for x in ts), "timestamp_ms is wall-clock milliseconds of the write", (t0, ts, t1))

with t.section("write without strand goes to default", srv):
    r = post({"payload": {"where": "default"}})
    t.ok(r.status == 201 and r.json.get("strand") == "default" and r.json.get("seq") == 0,
         "a write without strand lands in 'default' at seq 0", r)

with t.section("content type with charset", srv):
    r = post(payload_body('{"charset": true}', strand="api-single"), ctype="application/json; charset=utf-8")
    t.ok(r.status == 201 and r.json.get("seq") == 6, "Content-Type 'application/json; charset=utf-8' is accepted", r)

# ------------------------------------------------------------------ source, flags
with t.section("agent_id and flags", srv):
    r1 = post({"strand": "api-src", "agent_id": "agent-7", "payload": {"a": 1}})
    r2 = post({"strand": "api-src", "payload": {"a": 2}})
    r3 = post({"strand": "api-src", "agent_id": "agént ✓ 😀", "payload": {"a": 3}, "flags": 2})
    r4 = post({"strand": "api-src", "payload": None, "flags": 4294967295})
    r5 = post({"strand": "api-src", "payload": {"a": 5}, "flags": 0, "agent_id": ""})
    rs = [r1, r2, r3, r4, r5]
    t.ok(all(r.status == 201 for r in rs), "writes with agent_id / flags (0, 2, 4294967295) / payload null answer 201", rs)
    got = [get_rec(r.json["record_hash"]).json if r.status == 201 else None for r in rs]
    t.eq([g and g.get("source") for g in got], ["agent-7", "", "agént ✓ 😀", "", ""],
         "agent_id is stored and returned as source (empty when absent), UTF-8 kept")
    t.eq([g and g.get("flags") for g in got], [0, 0, 2, 4294967295, 0],
         "flags are stored and returned (default 0, 2 = tombstone, u32 max)")
    t.ok(got[3] is not None and "payload" in got[3] and got[3]["payload"] is None, "a null payload is stored and returned as null", got[3])

# ------------------------------------------------------------------ GET by hash, payload fidelity
PAYLOADS = [
    ("key order", '{"z": 1, "a": 2, "m": {"y": [1, 2.5, "x"], "b": null}, "t": true, "f": false, "": "empty key", "\u043a\u043b\u044e\u0447": 3}'),
    ("integers", '{"max": 9223372036854775807, "min": -9223372036854775808, "u32": 4294967296, "zero": 0, "m1": -1, "big": 1234567890123}'),
    ("floats", '{"a": 0.1, "b": 1.0, "c": -2.5e-10, "d": 1e300, "e": 3.141592653589793, "f": -0.0, "g": 5e-324, "h": 1E2, "i": 2.0e0}'),
    ("unicode", '{"esc": "h\\u00e9llo \\u2713 \\ud83d\\ude00", "utf8": "h\u00e9llo \u2713 \U0001F600", "ctl": "q\\" b\\\\ n\\n t\\t /\\/", "e": ""}'),
    ("array", '[1, "two", 3.0, [], {}, null, true, [[[-1]]]]'),
    ("string", '"just a string"'),
    ("integer", "42"),
    ("float", "-7.25"),
    ("bool", "true"),
    ("nested", '{"a": {"b": {"c": {"d": {"e": [{"f": [1, {"g": 2}]}]}}}}}'),
    ("long string", json.dumps({"s": "x" * 5000, "list": list(range(300))})),
]
by_hash = {}
with t.section("GET by hash", srv):
    for name, pj in PAYLOADS:
        want = json.loads(pj)
        w = post(payload_body(pj, strand="api-payload", agent_id="fidelity"))
        if not t.ok(w.status == 201, "write of %s payload answers 201" % name, w):
            continue
        h = w.json["record_hash"]
        by_hash[h] = want
        r = get_rec(h)
        j = r.json if r.status == 200 else {}
        t.ok(r.status == 200 and all(k in j for k in READ_FIELDS),
             "GET /v1/records/{hash} of %s payload answers 200 with all record fields" % name, r)
        if r.status != 200:
            continue
        t.ok(all(j.get(k) == w.json.get(k) for k in WRITE_FIELDS) and j.get("flags") == 0 and j.get("source") == "fidelity",
             "GET by hash returns the seq/strand/timestamp/prev_hash of the write (%s)" % name, (j, w.json))
        d = st.same_value(want, j.get("payload"))
        t.ok(d is None, "JSON payload comes back identical (%s: order, int/float, unicode)" % name, d)
        rr = get_rec(h, raw=True)
        jr = rr.json if rr.status == 200 else {}
        b64 = jr.get("payload_msgpack_b64")
        ok = rr.status == 200 and isinstance(b64, str)
        dm = "no payload_msgpack_b64: %r" % rr
        if ok:
            try:
                raw = base64.b64decode(b64, validate=True)
                dm = st.same_value(want, st.verify_strand.unpack_payload(raw))
                if dm is None:
                    hh = st.verify_strand.record_hash(j["seq"], j["timestamp_ms"], j["flags"], j["strand"], j["source"], j["prev_hash"], raw)
                    dm = None if hh == h else "recomputed hash %s != %s" % (hh, h)
            except Exception as e:
                dm = "decode: %s" % e
        t.ok(ok and dm is None, "?raw=1 adds payload_msgpack_b64 that decodes with msgpack to the sent JSON and hashes to record_hash (%s)" % name, dm)

with t.section("integers beyond int64", srv):
    # MessagePack holds integers in [-2^63, 2^64-1]. Outside that, "integers as integers" cannot hold:
    # the write must be refused, not stored as a rounded float that the chain then "proves".
    for pj in ('{"u64max": 18446744073709551615}', '{"huge": 123456789012345678901234567890}', '{"below": -9223372036854775809}'):
        w = post(payload_body(pj, strand="api-bigint"))
        if w.status == 201:
            r = get_rec(w.json["record_hash"], raw=True)
            raw = base64.b64decode(r.json.get("payload_msgpack_b64", ""))
            d1 = st.same_value(json.loads(pj), r.json.get("payload"))
            d2 = st.same_value(json.loads(pj), st.verify_strand.unpack_payload(raw)) if raw else "no raw payload"
            t.ok(d1 is None and d2 is None, "%s is either rejected or kept as the exact integer" % pj, (d1, d2))
        else:
            t.ok(w.status == 400 and isinstance(w.json, dict) and "code" in w.json,
                 "%s is either rejected (400 JSON error) or kept as the exact integer" % pj, w)

with t.section("NUL characters in strings", srv):
    w = post({"strand": "api-nul", "agent_id": "p\u0000q", "payload": {"s": "a\u0000b", "k\u0000": 1}})
    if w.status == 201:
        r = get_rec(w.json["record_hash"])
        t.ok(r.status == 200 and r.json.get("source") == "p\u0000q" and st.same_value(r.json.get("payload"), {"s": "a\u0000b", "k\u0000": 1}) is None,
             "NUL characters in agent_id and payload strings are kept exactly (or refused with 400)", r)
    else:
        t.ok(w.status == 400 and isinstance(w.json, dict) and "code" in w.json,
             "NUL characters in agent_id and payload strings are kept exactly (or refused with 400)", w)

with t.section("unknown hash", srv):
    r = get_rec("ab" * 32)
    t.ok(r.status == 404 and isinstance(r.json, dict) and isinstance(r.json.get("error"), str) and isinstance(r.json.get("code"), str),
         "GET of an unknown 64-hex hash answers 404 with a JSON error", r)

# ------------------------------------------------------------------ strands listing
with t.section("strands listing", srv):
    s = st.strands(P)
    a = s.get("api-single", {})
    t.ok(all(k in a for k in ("name", "count", "head_hash", "first_timestamp_ms", "last_timestamp_ms", "bytes")),
         "GET /v1/strands lists a strand created by a write with name, count, head_hash, first/last_timestamp_ms, bytes", a)
    recs = st.all_records(P, "api-single")
    t.eq((a.get("count"), a.get("head_hash")), (len(recs), recs[-1]["record_hash"] if recs else None),
         "strand count and head_hash match its records")
    t.eq((a.get("first_timestamp_ms"), a.get("last_timestamp_ms")),
         (recs[0]["timestamp_ms"], recs[-1]["timestamp_ms"]) if recs else None,
         "first/last_timestamp_ms match the first and last records")
    b0 = a.get("bytes")
    post({"strand": "api-single", "payload": {"more": "x" * 1000}})
    b1 = st.strands(P).get("api-single", {}).get("bytes")
    t.ok(isinstance(b0, int) and isinstance(b1, int) and 0 < b0 and b1 >= b0 + 1000,
         "strand bytes is positive and grows by at least the payload size after a write", (b0, b1))
    t.ok(set(["default", "api-single", "api-src", "api-payload"]) <= set(s), "every strand written to is listed", sorted(s))

with t.section("strand names at the limits", srv):
    names = ["0", "z", "9lives", "a.b-c_d", "a..", "a--", "a__", "a" + "z9._-" * 12 + "abc", "x" * 64]
    assert all(len(n) <= 64 for n in names) and len(names[-2]) == 64
    res = {n: post({"strand": n, "payload": {"name": n}}) for n in names}
    t.ok(all(r.status == 201 and r.json.get("strand") == n and r.json.get("seq") == 0 for n, r in res.items()),
         "valid names (1 char, leading digit, . - _, 64 chars) are accepted and start at seq 0",
         {n: r for n, r in res.items() if r.status != 201})
    s = st.strands(P)
    t.ok(all(n in s and s[n]["count"] == 1 for n in names), "each of them is listed with count 1", [n for n in names if n not in s])
    gets = {n: srv.req("GET", "/v1/strands/%s/records" % st.quote(n)) for n in names}
    t.ok(all(r.status == 200 and len(r.json["records"]) == 1 and r.json["records"][0]["payload"] == {"name": n} for n, r in gets.items()),
         "GET /v1/strands/{name}/records works for each of them", {n: r for n, r in gets.items() if r.status != 200})

# ------------------------------------------------------------------ batches
with t.section("batch as JSON array", srv):
    items = [{"payload": {"i": i, "f": i + 0.5}, "agent_id": "b%d" % (i % 3), "flags": 2 if i == 3 else 0} for i in range(10)]
    for it in items:
        it["strand"] = "api-batch"
    r = post(items, "/v1/records/batch")
    j = r.json or {}
    t.ok(r.status == 201 and j.get("count") == 10 and j.get("strand") == "api-batch" and j.get("first_seq") == 0 and j.get("last_seq") == 9,
         "JSON array batch of 10 answers 201 with count, strand, first_seq 0, last_seq 9", r)
    hs = j.get("record_hashes") or []
    t.ok(len(hs) == 10 and all(st.is_hex64(h) for h in hs) and len(set(hs)) == 10, "record_hashes has 10 distinct hashes", hs)
    got = [get_rec(h).json for h in hs]
    t.ok(all(g and g.get("seq") == i and g.get("payload") == items[i]["payload"] and g.get("source") == items[i]["agent_id"]
             and g.get("flags") == items[i]["flags"] for i, g in enumerate(got)),
         "record_hashes are in order: hash i is seq first_seq+i with item i's payload, source and flags", got[:3])
    t.ok(all(got[i]["prev_hash"] == (hs[i - 1] if i else ZERO) for i in range(len(got))), "batch records are chained", [g.get("prev_hash") for g in got][:3])

    r2 = post([{"strand": "api-batch", "payload": i} for i in range(3)], "/v1/records/batch")
    t.ok(r2.status == 201 and r2.json.get("first_seq") == 10 and r2.json.get("last_seq") == 12,
         "a second batch continues the strand (first_seq 10, last_seq 12)", r2)
    g = get_rec(r2.json["record_hashes"][0]).json if r2.status == 201 else {}
    t.eq(g.get("prev_hash"), hs[-1] if hs else None, "the second batch links to the first batch's last record")

with t.section("batch as NDJSON", srv):
    lines = [json.dumps({"payload": {"line": i, "v": [i, str(i)]}, "strand": "api-ndjson"}) for i in range(7)]
    r = post(("\n".join(lines) + "\n").encode(), "/v1/records/batch", ctype="application/x-ndjson")
    j = r.json or {}
    t.ok(r.status == 201 and j.get("count") == 7 and j.get("first_seq") == 0 and j.get("last_seq") == 6 and len(j.get("record_hashes", [])) == 7,
         "NDJSON batch of 7 lines (trailing newline) answers 201 count 7, seqs 0..6", r)
    recs = st.all_records(P, "api-ndjson")
    t.ok([x["record_hash"] for x in recs] == j.get("record_hashes") and [x["payload"]["line"] for x in recs] == list(range(7)),
         "NDJSON records are stored in line order with the answered hashes", [x.get("payload") for x in recs])
    r = post("\n".join(lines[:2]).encode(), "/v1/records/batch", ctype="application/x-ndjson")
    t.ok(r.status == 201 and r.json.get("count") == 2 and r.json.get("first_seq") == 7, "NDJSON without a trailing newline is accepted", r)
    # the payload as the object's last value and before others, of every JSON type: each is
    # stored exactly (the parser takes a last payload's end from where its line ended)
    objs = [{"agent_id": "a", "payload": {"x": [1, {"y": "z\u00e9"}], "n": None}},
            {"payload": "s", "agent_id": "b"},
            {"flags": 1, "payload": [1, 2, [3, {"k": []}]]},
            {"payload": None},
            {"payload": 12.5, "flags": 2},
            {"strand": "api-ndjson2", "payload": {"deep": {"er": [True, False, -7]}}},
            {"payload": {}}]
    r = post("\n".join(json.dumps(o) for o in objs).encode(), "/v1/records/batch", ctype="application/x-ndjson")
    recs = st.all_records(P, "api-ndjson2") if r.status == 201 else []
    t.ok(r.status == 201 and [x.get("payload") for x in recs] == [o["payload"] for o in objs]
         and [x.get("source") for x in recs][:2] == ["a", "b"] and [x.get("flags") for x in recs][2:5] == [1, 0, 2],
         "NDJSON payloads last or not, of every JSON type, are stored exactly", (r, [x.get("payload") for x in recs]))

with t.section("batch ?strand=", srv):
    r = post([{"payload": 1}, {"payload": 2, "agent_id": "q"}], "/v1/records/batch?strand=api-qstrand")
    t.ok(r.status == 201 and r.json.get("strand") == "api-qstrand" and r.json.get("count") == 2 and r.json.get("first_seq") == 0,
         "?strand= sends a JSON array batch to that strand", r)
    nd = b'{"payload": "a"}\n{"payload": "b"}\n'
    r = post(nd, "/v1/records/batch?strand=api-qstrand", ctype="application/x-ndjson")
    t.ok(r.status == 201 and r.json.get("strand") == "api-qstrand" and r.json.get("first_seq") == 2,
         "?strand= sends an NDJSON batch to that strand", r)
    r = post([{"payload": "d1"}, {"payload": "d2"}], "/v1/records/batch")
    t.ok(r.status == 201 and r.json.get("strand") == "default", "a batch naming no strand goes to 'default'", r)
    r = post([{"payload": 1, "strand": "api-qsame"}, {"payload": 2}], "/v1/records/batch")
    t.ok(r.status == 201 and r.json.get("strand") == "api-qsame" and r.json.get("count") == 2,
         "objects naming one strand (others naming none) go to that strand", r)

# ------------------------------------------------------------------ paging and time
with t.section("paging", srv):
    answers = []
    for rnd in range(5):
        r = post([{"payload": {"r": rnd, "k": k}} for k in range(50)], "/v1/records/batch?strand=api-page")
        answers.append(r)
        wait_clock_tick(3)
    t.ok(all(r.status == 201 for r in answers), "5 batches of 50 written for paging", answers)
    r = srv.req("GET", "/v1/strands/api-page/records")
    j = r.json or {}
    t.ok(r.status == 200 and [x["seq"] for x in j.get("records", [])] == list(range(100)) and j.get("next_seq") == 100,
         "records without parameters: limit defaults to 100 from seq 0, next_seq 100", (r.status, len(j.get("records", [])), j.get("next_seq")))
    r = srv.req("GET", "/v1/strands/api-page/records?from_seq=100&limit=120")
    j = r.json or {}
    t.ok(r.status == 200 and [x["seq"] for x in j.get("records", [])] == list(range(100, 220)) and j.get("next_seq") == 220,
         "from_seq=100&limit=120 gives seqs 100..219 and next_seq 220", (r.status, j.get("next_seq")))
    r = srv.req("GET", "/v1/strands/api-page/records?from_seq=220&limit=10000")
    j = r.json or {}
    t.ok(r.status == 200 and [x["seq"] for x in j.get("records", [])] == list(range(220, 250)) and j.get("next_seq") == 250,
         "limit=10000 (the maximum) is accepted; the last page ends with next_seq 250", (r.status, j.get("next_seq")))
    r = srv.req("GET", "/v1/strands/api-page/records?from_seq=250")
    t.ok(r.status == 200 and r.json.get("records") == [] and r.json.get("next_seq") == 250,
         "from_seq at the head gives no records and next_seq = head (poll position)", r)
    allr = st.all_records(P, "api-page")
    hashes = [h for a in answers if a.status == 201 for h in a.json["record_hashes"]]
    t.ok([x["record_hash"] for x in allr] == hashes, "paged records carry the hashes the batches answered, in order", len(allr))
    sample = allr[0], allr[137], allr[249]
    t.ok(all(get_rec(x["record_hash"]).json == x for x in sample), "a paged record equals the same record fetched by hash", sample[0])
    r = srv.req("GET", "/v1/strands/api-page/records?from_seq=10&limit=3&raw=1")
    ok = r.status == 200 and len(r.json["records"]) == 3
    ok = ok and all(st.same_value(x["payload"], st.verify_strand.unpack_payload(base64.b64decode(x["payload_msgpack_b64"]))) is None
                    for x in r.json["records"])
    t.ok(ok, "?raw=1 on the records list adds payload_msgpack_b64 to every record", r)

with t.section("as_of_ms", srv):
    allr = st.all_records(P, "api-page")
    ts = [x["timestamp_ms"] for x in allr]

    def expect(T):
        best = None
        for x in allr:
            if x["timestamp_ms"] <= T:
                best = x["seq"]
        return best

    probes = sorted(set(ts))
    probes = sorted(set(probes + [p + 1 for p in probes] + [ts[-1] + 10**6]))
    bad = []
    for T in probes[:40]:
        r = srv.req("GET", "/v1/strands/api-page/records?as_of_ms=%d&limit=1" % T)
        got = r.json["records"][0]["seq"] if r.status == 200 and r.json.get("records") else None
        if got != expect(T):
            bad.append((T, got, expect(T), r.status))
    t.ok(len(set(ts)) >= 2 and not bad, "as_of_ms=T starts at the last record with timestamp_ms <= T (%d probes)" % len(probes[:40]),
         "distinct timestamps %d; mismatches (T, got, want, status): %r" % (len(set(ts)), bad[:5]))
    r = srv.req("GET", "/v1/strands/api-page/records?as_of_ms=%d" % (ts[0] - 1))
    t.ok((r.status == 200 and r.json.get("records") == []) or r.status == 404,
         "as_of_ms before the first record returns no record", r)

# ------------------------------------------------------------------ keep-alive
with t.section("keep-alive", srv):
    c = srv.client()
    socks = []
    sts = []
    for i in range(20):
        r = c.request("POST", "/v1/records", {"strand": "api-ka", "payload": i}) if i % 2 else c.request("GET", "/v1/health")
        sts.append(r.status)
        socks.append(c.conn.sock)
    c.close()
    t.ok(sts == [200, 201] * 10 and socks[0] is not None and all(x is socks[0] for x in socks),
         "20 requests on one keep-alive connection, one socket", (sts, [x is socks[0] for x in socks]))

# ------------------------------------------------------------------ metrics
SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+([-+0-9.eEInfNa]+)(\s+-?\d+)?$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def metrics():
    r = srv.req("GET", "/metrics")
    types, samples, badlines = {}, [], []
    for line in r.body.decode("utf-8", "replace").splitlines():
        if not line.strip():
            continue
        if line.startswith("#"):
            p = line.split()
            if len(p) >= 4 and p[1] == "TYPE":
                types[p[2]] = p[3]
            continue
        m = SAMPLE.match(line)
        if not m:
            badlines.append(line)
            continue
        labels = dict(LABEL.findall(m.group(3) or ""))
        samples.append((m.group(1), labels, float(m.group(4))))
    return r, types, samples, badlines


def family_of(name, types):
    for suf in ("_bucket", "_sum", "_count", "_total", ""):
        if name.endswith(suf) and name[: len(name) - len(suf)] in types:
            return name[: len(name) - len(suf)]
    return name


def msum(samples, pred):
    return sum(v for n, l, v in samples if pred(n, l))


with t.section("metrics", srv):
    r0, types0, s0, bad0 = metrics()
    t.ok(r0.status == 200 and r0.headers.get("content-type", "").startswith("text/plain"), "GET /metrics answers 200 text/plain", r0.headers)
    t.ok(not bad0 and s0, "every /metrics line is a comment or a valid Prometheus sample", bad0[:5])
    for i in range(10):
        post({"strand": "api-metrics", "payload": {"i": i, "pad": "y" * 100}})
    r1, types, s1, _ = metrics()
    fams = sorted(set(family_of(n, types) for n, _, _ in s1))
    t.note("metric families: %s" % ", ".join(fams))

    def rec_route(labels):
        return any("records" in v for v in labels.values())

    def req_counter(n, l):
        f = family_of(n, types)
        return "request" in f and types.get(f) in ("counter", None, "untyped") and rec_route(l) and not n.endswith(("_bucket", "_sum"))

    d = msum(s1, req_counter) - msum(s0, req_counter)
    t.ok(d >= 10, "a request counter labelled with the records route grows by >= 10 after 10 writes", "delta %r; families %s" % (d, fams))
    hist = [f for f, ty in types.items() if ty == "histogram" and re.search("request|latency|duration", f)]
    hb = [n for n, l, v in s1 if family_of(n, types) in hist and n.endswith("_bucket") and "le" in l and rec_route(l)]

    def hcount(n, l):
        return family_of(n, types) in hist and n.endswith("_count") and rec_route(l)

    t.ok(hb and msum(s1, hcount) - msum(s0, hcount) >= 10, "a request latency histogram by route has buckets and counts the writes",
         "histograms %r; count delta %r" % (hist, msum(s1, hcount) - msum(s0, hcount)))
    by_strand = [(n, v) for n, l, v in s1 if "api-metrics" in l.values()]
    t.ok(any("record" in n and "byte" not in n and v == 10 for n, v in by_strand), "records appended are counted by strand (10 for a new strand)", by_strand)
    t.ok(any("byte" in n and v >= 1000 for n, v in by_strand), "bytes appended are counted by strand", by_strand)

    def fsyncs(n, l):
        return "fsync" in n and types.get(family_of(n, types)) == "counter"

    t.ok(msum(s1, fsyncs) > msum(s0, fsyncs), "an fsync counter grows after durable writes", [f for f in fams if "fsync" in f])
    t.ok(any(re.search("records?_per_fsync|fsync.*records?|records?.*fsync|group_commit|commit_(batch|records)", f) for f in fams),
         "a records-per-fsync (group commit size) metric is exported", fams)
    t.ok(any("trunc" in f for f in fams), "a recovery truncations metric is exported", fams)

# ------------------------------------------------------------------ concurrency
with t.section("16 concurrent writers", srv):
    NT, NW = 16, 30
    results = [[] for _ in range(NT)]  # (seq, hash, payload)
    errors = []

    def writer(k):
        c = srv.client()
        try:
            for i in range(NW):
                if i % 6 == 5:
                    items = [{"payload": {"t": k, "i": i, "b": j}} for j in range(3)]
                    r = c.request("POST", "/v1/records/batch?strand=api-conc", items)
                    if r.status != 201:
                        errors.append(r)
                        continue
                    for j, h in enumerate(r.json["record_hashes"]):
                        results[k].append((r.json["first_seq"] + j, h, items[j]["payload"]))
                else:
                    p = {"t": k, "i": i, "f": k / 7.0, "s": "w%d" % k}
                    r = c.request("POST", "/v1/records", {"strand": "api-conc", "agent_id": "t%d" % k, "payload": p})
                    if r.status != 201:
                        errors.append(r)
                        continue
                    results[k].append((r.json["seq"], r.json["record_hash"], p))
        except Exception as e:
            errors.append(e)
        finally:
            c.close()

    th = [threading.Thread(target=writer, args=(k,)) for k in range(NT)]
    for x in th:
        x.start()
    for x in th:
        x.join(120)
    t.ok(not errors and not any(x.is_alive() for x in th), "16 threads x 30 writes (singles and batches) all answer 201", errors[:3])
    acks = [a for res in results for a in res]
    seqs = sorted(a[0] for a in acks)
    t.eq(len(set(seqs)), len(acks), "every acknowledged record has a unique seq")
    t.eq(seqs, list(range(len(acks))), "acknowledged seqs are dense from 0")
    t.ok(all([a[0] for a in res] == sorted(a[0] for a in res) for res in results), "each thread's own writes get increasing seqs")
    recs = st.all_records(P, "api-conc")
    byseq = {x["seq"]: x for x in recs}
    t.ok(all(a[0] in byseq and byseq[a[0]]["record_hash"] == a[1] and byseq[a[0]]["payload"] == a[2] for a in acks),
         "the record at each acknowledged seq has the acknowledged hash and the sent payload")
    v = st.verify_strand.verify(srv.url, "api-conc")
    t.ok(v.ok and v.count == len(acks), "independent chain verification of the concurrently written strand", v.line())

# ------------------------------------------------------------------ independent verification of every strand
with t.section("independent chain verification", srv):
    listing = st.strands(P)
    vres = {n: st.verify_strand.verify(srv.url, n) for n in listing}
    bad = [r.line() for r in vres.values() if not r.ok]
    t.ok(not bad and len(vres) >= 20, "every strand (%d) verifies with hashlib + msgpack through the API" % len(vres), bad[:5])
    mism = [(n, listing[n].get("count"), r.count) for n, r in vres.items()
            if r.ok and (listing[n].get("count") != r.count or (r.count and listing[n].get("head_hash") != r.head))]
    t.ok(not mism, "each strand's listed count and head_hash match its verified chain", mism[:5])

with t.section("clean stop and sluice verify", srv):
    heads = {n: (r.count, r.head) for n, r in vres.items() if r.count}
    rc = srv.stop()
    t.eq(rc, 0, "SIGTERM stops the server with exit status 0")
    code, out, err = st.run_verify(srv.data)
    got = st.parse_verify_ok(out)
    t.ok(code == 0, "sluice verify exits 0 on the data dir", out + err)
    t.ok(all(got.get(n) == v for n, v in heads.items()), "sluice verify prints 'ok <strand> <count> <head_hash>' matching the API for every strand",
         {n: (got.get(n), v) for n, v in heads.items() if got.get(n) != v})

t.done()
