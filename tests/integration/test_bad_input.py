#!/usr/bin/python3
"""Integration test of bad input (issue 2, "Bad input"): every malformed request answers the right
4xx with a JSON error {"error": "<message naming the field>", "code": "<snake_case>"}, writes
nothing (strand counts unchanged, no strand created) and the server keeps serving."""
import json
import os
import re
import socket
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.dont_write_bytecode = True  # keep the source tree clean of __pycache__
import sluicetest as st  # noqa: E402

t = st.Checks()
st.require_binary(t)
srv = st.Server()
small = st.Server(args=["--max-body-bytes", "4096"])
try:
    srv.start()
    small.start()
except st.ServerError as e:
    t.ok(False, "servers start and print 'listening on'", e)
    t.done()
P = srv.port
CODE = re.compile(r"^[a-z][a-z0-9_]*$")
JSON = "application/json"
NDJSON = "application/x-ndjson"

# Something to read, so that reads of a known strand are possible.
seed = srv.req("POST", "/v1/records/batch?strand=bi-seed", [{"payload": i} for i in range(3)])
if not t.ok(seed.status == 201, "seed strand written", seed):
    t.done()
SEED_HASH = seed.json["record_hashes"][0]


def error_shape(r):
    """None if r carries a JSON error body {"error": str, "code": snake_case str}, else why not."""
    j = r.json
    if not isinstance(j, dict):
        return "body is not a JSON object: %r" % r.body[:200]
    if not isinstance(j.get("error"), str) or not j["error"]:
        return "no 'error' message: %r" % j
    if not isinstance(j.get("code"), str) or not CODE.match(j["code"]):
        return "no snake_case 'code': %r" % j
    return None


def bad(what, method, path, body=None, ctype=JSON, status=400, field=None, absent=(), server=None, extra=None):
    """Send one bad request; check status, error body (naming `field`), that nothing was written
    (all strand counts unchanged, strands in `absent` not created) and that the server still
    answers /v1/health. extra(r) -> None or a complaint, for input-specific checks."""
    s = server or srv
    with t.section(what, s):
        before = st.counts(s.port)
        r = s.req(method, path, body, ctype=ctype)
        want = status if isinstance(status, tuple) else (status,)
        why = []
        if r.status not in want:
            why.append("status %d, want %s" % (r.status, "/".join(map(str, want))))
        shape = error_shape(r)
        if shape:
            why.append(shape)
        elif field and field.lower() not in r.json["error"].lower():
            why.append("error does not name %r: %r" % (field, r.json["error"]))
        if not why and extra:
            e = extra(r)
            if e:
                why.append(e)
        t.ok(not why, "%s -> %s JSON error%s" % (what, "/".join(map(str, want)), " naming %s" % field if field else ""),
             "; ".join(why) + "\n" + repr(r))
        after_checks(what, s, before, absent)
        return r


def after_checks(what, s, before, absent=()):
    up = st.healthy(s.port)
    after = st.counts(s.port) if up else None
    why = []
    if not up:
        why.append("server does not answer /v1/health (alive=%s)\n%s" % (s.alive(), s.log_tail()))
    elif after != before:
        why.append("strand counts changed: %r" % {k: (before.get(k), after.get(k)) for k in set(before) | set(after) if before.get(k) != after.get(k)})
    made = [a for a in absent if after and a in after]
    if made:
        why.append("strands created: %r" % made)
    t.ok(not why, "%s: nothing written and the server keeps serving" % what, "; ".join(why))


def mentions_number(lo, hi):
    def check(r):
        nums = [int(x) for x in re.findall(r"\d+", r.json["error"])]
        if any(lo <= n <= hi for n in nums):
            return None
        return "error names no number in %d..%d: %r" % (lo, hi, r.json["error"])
    return check


# ------------------------------------------------------------------ invalid JSON and wrong shapes
body = '{"agent_id": "abcdefghijklmnop", "payload": {"a": 1,, "b": 2}}'
at = body.index(",,") + 1
bad("invalid JSON", "POST", "/v1/records", body, absent=(), extra=mentions_number(at - 2, at + 2))
bad("truncated JSON", "POST", "/v1/records", '{"strand": "bi-trunc", "payload": [1, 2', absent=("bi-trunc",))
bad("empty body", "POST", "/v1/records", b"")
bad("JSON followed by garbage", "POST", "/v1/records", '{"strand": "bi-trail", "payload": 1} x', absent=("bi-trail",))
bad("two JSON objects in a single-record body", "POST", "/v1/records", '{"payload": 1}{"payload": 2}')
bad("invalid UTF-8 in a string", "POST", "/v1/records", b'{"strand": "bi-utf8", "payload": "\xff\xfe"}', absent=("bi-utf8",))
bad("body is an array", "POST", "/v1/records", '[{"payload": 1}]')
bad("body is a string", "POST", "/v1/records", '"payload"')
bad("body is a number", "POST", "/v1/records", "42")
bad("body is null", "POST", "/v1/records", "null")
bad("missing payload", "POST", "/v1/records", {"agent_id": "a", "strand": "bi-nopayload"}, field="payload", absent=("bi-nopayload",))
bad("agent_id is a number", "POST", "/v1/records", {"agent_id": 5, "payload": 1}, field="agent_id")
bad("agent_id is an object", "POST", "/v1/records", {"agent_id": {"x": 1}, "payload": 1}, field="agent_id")
bad("agent_id of 70000 bytes (over the u16 length in the hash)", "POST", "/v1/records", {"agent_id": "a" * 70000, "payload": 1,
    "strand": "bi-longsrc"}, field="agent_id", absent=("bi-longsrc",))
for v, label in ((-1, "negative"), (1.5, "a float"), (2.0, "the float 2.0"), ("2", "a string"), (4294967296, "2^32 (over u32)"), (True, "a boolean"), ([2], "an array")):
    bad("flags is %s" % label, "POST", "/v1/records", {"flags": v, "payload": 1, "strand": "bi-flags"}, field="flags", absent=("bi-flags",))
bad("strand is a number", "POST", "/v1/records", {"strand": 5, "payload": 1}, field="strand")
bad("strand is an array", "POST", "/v1/records", {"strand": ["a"], "payload": 1}, field="strand")

BAD_NAMES = [
    ("uppercase", "Upper"),
    ("leading dot", ".hidden"),
    ("dot-dot", ".."),
    ("65 chars", "a" * 65),
    ("empty", ""),
    ("slash", "a/b"),
    ("traversal", "../etc"),
    ("unicode", "caf\u00e9"),
    ("leading dash", "-x"),
    ("leading underscore", "_x"),
    ("space", "a b"),
    ("NUL", "a\u0000b"),
]
for label, name in BAD_NAMES:
    # a NUL may already be refused by the JSON parser, with a message about the NUL
    bad("strand name %s (%r)" % (label, name), "POST", "/v1/records", {"strand": name, "payload": 1},
        field=None if "\u0000" in name else "strand", absent=(name, name.lower()))
bad("batch ?strand= with a bad name", "POST", "/v1/records/batch?strand=Bad", [{"payload": 1}], field="strand", absent=("bad",))
bad("batch object with a bad strand name", "POST", "/v1/records/batch", [{"payload": 1, "strand": "Nope"}], field="strand")

# ------------------------------------------------------------------ batches: all or nothing
lines = [json.dumps({"payload": {"n": i, "pad": "p" * i}, "strand": "bi-nd"}) for i in range(1, 7)]
nd = list(lines)
nd[3] = '{"payload": {"n": 4,, "strand": "bi-nd"}'
bad("NDJSON batch with invalid JSON on line 4", "POST", "/v1/records/batch", "\n".join(nd) + "\n", ctype=NDJSON,
    absent=("bi-nd",), extra=mentions_number(4, 4))
nd = list(lines)
nd[2] = json.dumps({"payload": 3, "flags": "x", "strand": "bi-nd"})
bad("NDJSON batch with bad flags on line 3", "POST", "/v1/records/batch", "\n".join(nd), ctype=NDJSON,
    absent=("bi-nd",), extra=mentions_number(3, 3))
nd = list(lines)
nd[4] = json.dumps({"strand": "bi-nd"})
bad("NDJSON batch missing payload on line 5", "POST", "/v1/records/batch", "\n".join(nd), ctype=NDJSON,
    absent=("bi-nd",), extra=mentions_number(5, 5))
arr = [{"payload": i, "strand": "bi-arr"} for i in range(9)]
arr[6] = {"strand": "bi-arr", "payload": 1, "agent_id": 7}
bad("JSON array batch with a bad item 7 (index 6)", "POST", "/v1/records/batch", arr, absent=("bi-arr",), extra=mentions_number(6, 7))
bad("JSON array batch with a non-object item", "POST", "/v1/records/batch", [{"payload": 1, "strand": "bi-arr"}, 5], absent=("bi-arr",))
bad("batch objects naming different strands", "POST", "/v1/records/batch",
    [{"payload": 1, "strand": "bi-one"}, {"payload": 2, "strand": "bi-two"}], field="strand", absent=("bi-one", "bi-two"))
bad("NDJSON batch naming different strands", "POST", "/v1/records/batch",
    '{"payload": 1, "strand": "bi-one"}\n{"payload": 2, "strand": "bi-two"}\n', ctype=NDJSON, field="strand", absent=("bi-one", "bi-two"))
bad("empty JSON array batch", "POST", "/v1/records/batch", "[]")
bad("empty NDJSON batch", "POST", "/v1/records/batch", b"", ctype=NDJSON)
bad("NDJSON batch of blank lines", "POST", "/v1/records/batch", "\n\n\n", ctype=NDJSON)
bad("JSON batch that is an object", "POST", "/v1/records/batch", {"payload": 1, "strand": "bi-obj"}, absent=("bi-obj",))
bad("JSON batch that is invalid JSON", "POST", "/v1/records/batch", '[{"payload": 1}, {"payload": ]', absent=())

# ------------------------------------------------------------------ content type, size
bad("text/plain to /v1/records", "POST", "/v1/records", '{"payload": 1, "strand": "bi-ct"}', ctype="text/plain", status=415, absent=("bi-ct",))
bad("form-urlencoded to /v1/records", "POST", "/v1/records", '{"payload": 1, "strand": "bi-ct"}',
    ctype="application/x-www-form-urlencoded", status=415, absent=("bi-ct",))
bad("application/xml to the batch route", "POST", "/v1/records/batch", '[{"payload": 1, "strand": "bi-ct"}]',
    ctype="application/xml", status=415, absent=("bi-ct",))
bad("text/plain to the batch route", "POST", "/v1/records/batch", '{"payload": 1, "strand": "bi-ct"}\n', ctype="text/plain",
    status=415, absent=("bi-ct",))

big = json.dumps({"strand": "bi-big", "payload": "x" * 8000})
bad("8000-byte body with --max-body-bytes 4096", "POST", "/v1/records", big, status=413, absent=("bi-big",), server=small)
bad("8000-byte batch with --max-body-bytes 4096", "POST", "/v1/records/batch",
    "\n".join(json.dumps({"strand": "bi-big", "payload": "y" * 90}) for _ in range(80)), ctype=NDJSON, status=413,
    absent=("bi-big",), server=small)
with t.section("body under the limit", small):
    ok_body = json.dumps({"strand": "bi-fits", "payload": "z" * 3900})
    assert len(ok_body) <= 4096
    r = small.req("POST", "/v1/records", ok_body)
    t.ok(r.status == 201, "a %d-byte body under --max-body-bytes 4096 is accepted" % len(ok_body), r)


def raw_bad(what, s, data, want_status, absent=(), half_close=False):
    with t.section(what, s):
        before = st.counts(s.port)
        status, rbody, err = st.raw_exchange(s.port, data, timeout=5.0, half_close=half_close)
        ok = status in want_status if want_status else True
        if ok and status is not None and status >= 400:
            shape = error_shape(st.Resp(status, {}, rbody or b""))
            ok = shape is None
        else:
            shape = None
        if want_status:
            t.ok(ok, "%s -> %s" % (what, "/".join(map(str, want_status))), "status %r %r %s %s" % (status, rbody, err, shape or ""))
        after_checks(what, s, before, absent)


raw_bad("Content-Length 10 GB, no body sent: 413 without waiting for the body", small,
        b"POST /v1/records HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 10000000000\r\n\r\n", (413,))
raw_bad("Content-Length 10 GB with Expect: 100-continue: 413 instead of 100", small,
        b"POST /v1/records HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nExpect: 100-continue\r\n"
        b"Content-Length: 10000000000\r\n\r\n", (413,))
with t.section("2 MiB body with the default 1 MiB limit", srv):
    before = st.counts(P)
    payload = json.dumps({"strand": "bi-2mb", "payload": "w" * (2 << 20)}).encode()
    head = b"POST /v1/records HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(payload)
    status, rbody, err = st.raw_exchange(P, head + payload, timeout=10.0)
    t.ok(status == 413 and error_shape(st.Resp(413, {}, rbody or b"")) is None, "2 MiB body with the default limit -> 413 JSON error",
         "status %r %r %s" % (status, (rbody or b"")[:200], err))
    after_checks("2 MiB body", srv, before, ("bi-2mb",))

# ------------------------------------------------------------------ routes, methods
for path in ("/v1/nope", "/", "/v2/records", "/v1/records/%s/extra" % SEED_HASH, "/v1/strands/bi-seed/nope"):
    bad("GET %s (unknown route)" % path, "GET", path, status=404)
bad("POST /v1/recordsx (unknown route)", "POST", "/v1/recordsx", {"payload": 1}, status=404)


def has_allow(r):
    return None if r.headers.get("allow") else "405 without an Allow header"


for method, path in (("GET", "/v1/records"), ("PUT", "/v1/records"), ("DELETE", "/v1/records/%s" % SEED_HASH),
                     ("POST", "/v1/records/%s" % SEED_HASH), ("POST", "/v1/strands"), ("POST", "/v1/health"),
                     ("DELETE", "/v1/strands/bi-seed/records"), ("PUT", "/v1/records/batch"), ("POST", "/metrics")):
    body = {"payload": 1} if method in ("POST", "PUT") else None
    bad("%s %s (wrong method)" % (method, path.replace(SEED_HASH, "{hash}")), method, path, body, status=405, extra=has_allow)

# ------------------------------------------------------------------ query parameters, lookups
for q, field in (("from_seq=abc", "from_seq"), ("from_seq=-1", "from_seq"), ("from_seq=1.5", "from_seq"),
                 ("from_seq=99999999999999999999999", "from_seq"), ("from_seq=3x", "from_seq"), ("limit=0", "limit"),
                 ("limit=10001", "limit"), ("limit=-5", "limit"), ("limit=abc", "limit"), ("as_of_ms=abc", "as_of_ms"),
                 ("as_of_ms=1e3", "as_of_ms")):
    bad("GET records ?%s" % q, "GET", "/v1/strands/bi-seed/records?%s" % q, field=field)
bad("GET records of an unknown strand", "GET", "/v1/strands/bi-unknown/records", status=404, field="strand", absent=("bi-unknown",))
bad("GET records of an invalid strand name", "GET", "/v1/strands/Bad.Name/records", status=(400, 404), absent=("bad.name",))
bad("GET records with a traversal strand name", "GET", "/v1/strands/..%2F..%2Fetc/records", status=(400, 404))
for label, h in (("3 chars", "xyz"), ("63 hex chars", "a" * 63), ("65 hex chars", "a" * 65), ("64 non-hex chars", "g" * 64)):
    bad("GET /v1/records/{%s}" % label, "GET", "/v1/records/%s" % h, status=400, field="hash")

# ------------------------------------------------------------------ deep nesting
deep = '{"strand": "bi-deep", "payload": ' + "[" * 100000 + "]" * 100000 + "}"
with t.section("100000-deep nesting", srv):
    before = st.counts(P)
    try:
        r = srv.req("POST", "/v1/records", deep)
    except Exception as e:
        r = st.Resp(0, {}, ("no answer: %r" % e).encode())
    t.ok(r.status in (201, 400) and (r.status == 201 or error_shape(r) is None),
         "a 100000-deep nested payload answers 201 or a 400 JSON error (no crash)", r)
    if r.status == 201:
        before["bi-deep"] = 1
    after_checks("100000-deep nesting", srv, before, () if r.status == 201 else ("bi-deep",))

# ------------------------------------------------------------------ raw TCP abuse
raw_bad("random bytes then close", srv, os.urandom(4096), None)
raw_bad("a non-HTTP line", srv, b"GARBAGE GARBAGE GARBAGE\r\n\r\n", None)
raw_bad("half-sent body then close", srv,
        b"POST /v1/records HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n"
        b'{"strand": "bi-half", "payload": {"a": ', None, absent=("bi-half",), half_close=True)
raw_bad("half-sent headers then close", srv, b"POST /v1/records HTTP/1.1\r\nHost: x\r\nContent-Le", None, half_close=True)
raw_bad("bad chunked encoding", srv,
        b"POST /v1/records HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"zz\r\n{\"payload\": 1}\r\n0\r\n\r\n", None)

with t.section("64 garbage connections at once", srv):
    before = st.counts(P)
    errs = []

    def junk(i):
        try:
            s = socket.create_connection(("127.0.0.1", P), timeout=5)
            try:
                s.sendall(os.urandom(512) if i % 2 else b"POST /v1/records HTTP/1.1\r\nContent-Length: 999\r\n\r\n{")
            finally:
                s.close()
        except OSError as e:
            errs.append(e)

    th = [threading.Thread(target=junk, args=(i,)) for i in range(64)]
    for x in th:
        x.start()
    for x in th:
        x.join(30)
    after_checks("64 garbage connections at once", srv, before)

# ------------------------------------------------------------------ postgres_cdc connection_string
C = "/v1/connectors"


def connector_count():
    return len(srv.req("GET", C).json["connectors"])


def not_stored(n0, secret=None):
    """extra(): the connector list is unchanged, and the error does not echo the password."""
    def check(r):
        if r.json.get("code") != "invalid_config":
            return "code %r, want invalid_config" % r.json.get("code")
        if not r.json["error"].startswith("config.connection_string: "):
            return "error does not start with config.connection_string: %r" % r.json["error"]
        if secret and secret in r.json["error"]:
            return "the error echoes the password: %r" % r.json["error"]
        n = connector_count()
        return None if n == n0 else "connectors: %d before, %d after" % (n0, n)
    return check


BAD_CONNINFO = [
    ("a MySQL URL", "mysql://app:s3cretpw@db:3306/shop", "s3cretpw"),
    ("a bare word", "hello", None),
    ("an empty string", "", None),
    ("blanks only", "   ", None),
    ("an upper-case scheme", "POSTGRES://db/shop", None),
    ("an unknown key", "host=db flavour=mint", None),
    ("an unterminated quote", "host=db password='s3cretpw", "s3cretpw"),
    ("an unknown URI parameter", "postgres://app:s3cretpw@db/shop?colour=red", "s3cretpw"),
    ("an unclosed IPv6 address", "postgres://app:s3cretpw@[::1/shop", "s3cretpw"),
    ("a bad percent escape in the password", "postgresql://app:s3cret%zzpw@db/shop", "s3cret"),
]
n0 = connector_count()
for label, cs, secret in BAD_CONNINFO:
    bad("postgres_cdc connection_string that is %s" % label, "POST", C,
        {"name": "bad cs", "kind": "postgres_cdc", "enabled": False, "config": {"connection_string": cs}},
        field="config.connection_string", extra=not_stored(n0, secret))

with t.section("postgres_cdc connection_string: a URI and key=value pairs are accepted", srv):
    made = []
    for i, cs in enumerate(("postgresql://app:s3cretpw@127.0.0.1:1/shop?sslmode=disable&connect_timeout=2",
                            "host=127.0.0.1 port=1 dbname=shop user=app password='two words'")):
        r = srv.req("POST", C, {"name": "good cs %d" % i, "kind": "postgres_cdc", "enabled": False,
                                "config": {"connection_string": cs}})
        t.ok(r.status == 201 and r.json["config"]["strand"] == "cdc.shop", "accepted: %s" % cs.split("@")[-1], r)
        if r.status == 201:
            made.append(r.json)
    t.eq(connector_count(), n0 + len(made), "both stored")

if made:
    uri = made[0]
    for label, cs, secret in BAD_CONNINFO[:3]:
        bad("PATCH postgres_cdc connection_string to %s" % label, "PATCH", C + "/" + uri["id"],
            {"config": dict(uri["config"], connection_string=cs)}, field="config.connection_string",
            extra=not_stored(n0 + len(made), secret))
    with t.section("a refused PATCH keeps the stored connection string", srv):
        r = srv.req("GET", C + "/" + uri["id"])
        t.eq(r.json["config"]["connection_string"],
             "postgresql://app:***@127.0.0.1:1/shop?sslmode=disable&connect_timeout=2",
             "the connector still has its old connection_string (password masked)")
        for c in made:
            t.eq(srv.req("DELETE", C + "/" + c["id"]).status, 200, "delete the accepted connector")

with t.section("still writes after all that", srv):
    r = srv.req("POST", "/v1/records", {"strand": "bi-seed", "payload": "after"})
    t.ok(r.status == 201 and r.json.get("seq") == 3, "a good write after all the bad input continues the strand at seq 3", r)
    v = st.verify_strand.verify(srv.url, "bi-seed")
    t.ok(v.ok and v.count == 4, "the strand verifies independently", v.line())

t.done()
