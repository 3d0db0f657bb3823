"""The object_storage sink (kind object_storage, aliases s3-sink / object-storage) against a local
directory and against @20minutes/s3rver (which verifies SigV4). What a user relies on: every
record lands in exactly one file named {prefix}/{strand}/[year=/month=/day=/[hour=]]{first}-{last}.ext
by its strand range; files are written when batch_size records are pending, when the flush
interval passes, and at a clean shutdown; a re-run writes the same keys; objects over 16 MiB go
up as multipart uploads; a dead endpoint is retried until it comes back; a wrong secret is a
dead letter, not a retry storm; the StreamHouse and Rivven spellings of the config work; bad
values are a 400 naming the field. Files are read back with python's json, and one with DuckDB."""
import json
import os
import re
import socket
import sqlite3
import subprocess
import threading
import time
import urllib.parse
import xml.etree.ElementTree as ET

import sluicetest as st

t = st.Checks()
st.require_binary(t)
FAST = {"initial_backoff_ms": 20, "max_backoff_ms": 200}
NOBREAK = {"failure_threshold": 100000}
KEY_RE = re.compile(r"^(?:(.*)/)?([a-z0-9][a-z0-9._-]*)/((?:year=\d{4}/month=\d\d/day=\d\d(?:/hour=\d\d)?)/)?(\d{20})-(\d{20})\.(.+)$")
srv = st.Server().start()


_names = iter(range(1, 1000))


def create(cfg, strands, kind="object_storage", name=None, path="/v1/connectors"):
    name = name or "os-%d" % next(_names)  # connector names are unique
    r = srv.req("POST", path, {"name": name, "kind": kind, "strands": strands, "config": cfg})
    assert r.status == 201, r
    return r.json["id"]


def write(n, strand, start=0, size=0):
    """n records {"i": start+k} (with a "pad" string of size bytes), one request each: each gets
    its own commit and timestamp. Returns [(seq, timestamp_ms, record_hash)]."""
    out = []
    c = srv.client()
    try:
        for k in range(n):
            p = {"i": start + k}
            if size:
                p["pad"] = ("%07d" % (start + k)) * (size // 7)
            r = c.request("POST", "/v1/records", {"strand": strand, "payload": p})
            assert r.status == 201, r
            out.append((r.json["seq"], r.json["timestamp_ms"], r.json["record_hash"]))
    finally:
        c.close()
    return out


def partition(ts_ms, mode):
    tm = time.gmtime(ts_ms // 1000)
    if mode == "none":
        return ""
    p = "year=%04d/month=%02d/day=%02d" % (tm.tm_year, tm.tm_mon, tm.tm_mday)
    return p + ("/hour=%02d" % tm.tm_hour if mode == "hour" else "")


def expected_keys(recs, batch, mode, prefix, strand, ext):
    """The keys the sink must write for records recs (seq, ts, hash) flushed in batches of batch
    records from the first: each batch split where the partition changes."""
    keys = []
    for b in range(0, len(recs), batch):
        chunk = recs[b:b + batch]
        runs = []
        for r in chunk:
            p = partition(r[1], mode)
            if runs and runs[-1][0] == p:
                runs[-1][1].append(r)
            else:
                runs.append((p, [r]))
        for p, rs in runs:
            keys.append("/".join(x for x in (prefix.strip("/"), strand, p) if x) + "/%020d-%020d.%s" % (rs[0][0], rs[-1][0], ext))
    return keys


def files(root):
    out = []
    for d, _, names in os.walk(root):
        for n in names:
            if not n.startswith("."):
                out.append(os.path.relpath(os.path.join(d, n), root))
    return sorted(out)


def rows(data, ext):
    text = data.decode() if isinstance(data, bytes) else data
    if ext.startswith("jsonl"):
        return [json.loads(line) for line in text.splitlines() if line]
    return json.loads(text)


def conn(cid):
    return srv.req("GET", "/v1/connectors/" + cid).json


with t.section("local provider: jsonl, hourly keys, batch_size flush, rows", srv):
    root = st.tmpdir()
    cid = create({"provider": "local", "local": {"root": root}, "prefix": "events/", "format": "jsonl",
                  "partitioning": "hourly", "batch_size": 5, "flush_interval_ms": 3600000}, ["lp"], kind="object-storage")
    c = conn(cid)
    t.ok(c["kind"] == "object_storage" and c["config"]["partitioning"] == "hour" and c["config"]["root"] == root
         and c["config"]["batch_size"] == 5, "alias object-storage creates kind object_storage, config normalized", c["config"])
    recs = write(12, "lp")
    want = expected_keys(recs[:10], 5, "hour", "events", "lp", "jsonl")
    got = st.wait_until(lambda: files(root) if len(files(root)) >= len(want) else None, 10)
    t.eq(got, sorted(want), "two full batches of 5 are two files (split at hour boundaries), keys as specified")
    every = []
    for k in got or []:
        m = KEY_RE.match(k)
        rs = rows(open(os.path.join(root, k), "rb").read(), "jsonl")
        every += rs
        t.ok(m and [x["_seq"] for x in rs] == list(range(int(m.group(4)), int(m.group(5)) + 1)),
             "%s holds exactly the records of its seq range" % k)
    by = {r[0]: r for r in recs}
    t.ok(len(every) == 10 and all(x["_record_hash"] == by[x["_seq"]][2] and x["_timestamp_ms"] == by[x["_seq"]][1]
                                  and x["_strand"] == "lp" and x["i"] == x["_seq"] for x in every),
         "rows are the payload plus _record_hash, _seq, _timestamp_ms, _strand", every[:1])
    lag = st.wait_until(lambda: conn(cid)["stats"]["lag"] == 2, 5)
    c = conn(cid)
    t.ok(lag and len(files(root)) == len(want), "the 2 records past the last full batch wait for the interval", c["stats"])
    t.ok(c["stats"]["delivered"] == 10 and c["stats"]["files_written"] == len(want) and c["stats"]["bytes_written"] > 0,
         "stats: delivered counts records, files_written and bytes_written", c["stats"])
    srv.req("DELETE", "/v1/connectors/" + cid)

with t.section("flush interval", srv):
    root2 = st.tmpdir()
    cid = create({"provider": "local", "root": root2, "format": "json", "batch_size": 1000, "flush_interval_ms": 400}, ["fi"])
    t0 = time.monotonic()
    recs = write(3, "fi")
    got = st.wait_until(lambda: files(root2), 10)
    took = time.monotonic() - t0
    t.eq(got, ["fi/%020d-%020d.json" % (recs[0][0], recs[-1][0])], "a partial batch is written once the interval passes (partitioning none: no date path)")
    t.ok(took >= 0.35, "not before the interval (%.2fs)" % took)
    if got:
        rs = rows(open(os.path.join(root2, got[0]), "rb").read(), "json")
        t.ok(isinstance(rs, list) and [x["i"] for x in rs] == [0, 1, 2], "format json is one array", rs)
    srv.req("DELETE", "/v1/connectors/" + cid)

with t.section("shutdown flush, restart, and a re-run writes the same keys", srv):
    root3 = st.tmpdir()
    cid = create({"provider": "local", "root": root3, "format": "jsonl", "partitioning": "day", "batch_size": 4,
                  "flush_interval_ms": 3600000}, ["sd"])
    recs = write(10, "sd")
    st.wait_until(lambda: len(files(root3)) >= 2, 10)
    t.eq(srv.stop(), 0, "clean stop")
    got = files(root3)
    want = expected_keys(recs, 4, "day", "", "sd", "jsonl")
    t.eq(got, sorted(want), "a clean stop flushes the 2 pending records first (3 files: 4+4+2)")
    srv.start()
    lag = st.wait_until(lambda: conn(cid)["stats"]["lag"] == 0 and conn(cid)["state"] == "running", 5)
    t.ok(lag and files(root3) == got, "after the restart nothing is pending and nothing is written again")
    # re-run: the cursor is put back to 0 by hand (as if it had been lost); the same keys come back
    srv.stop()
    mtimes = {k: os.stat(os.path.join(root3, k)).st_mtime_ns for k in got}
    db = sqlite3.connect(os.path.join(srv.data, "meta.db"))  # the cursor and the batch plan
    db.execute("UPDATE cursors SET next_seq=0 WHERE connector_id=? AND strand='sd'", (cid,))
    db.execute("DELETE FROM batch_plans WHERE connector_id=?", (cid,))
    db.commit()
    db.close()
    srv.start()
    full = got[:2]  # the two full batches are due at once; the partial one at the interval or stop
    rerun = st.wait_until(lambda: all(os.stat(os.path.join(root3, k)).st_mtime_ns != mtimes[k] for k in full), 10)
    srv.stop()
    t.ok(rerun and files(root3) == got and all(os.stat(os.path.join(root3, k)).st_mtime_ns != mtimes[k] for k in got),
         "a re-run from seq 0 overwrites exactly the same keys (no new file, no duplicate row)", files(root3))
    srv.start()
    allrows = [x for k in files(root3) for x in rows(open(os.path.join(root3, k), "rb").read(), "jsonl")]
    t.eq(sorted(x["_seq"] for x in allrows), [r[0] for r in recs], "every record is in exactly one file")
    srv.req("DELETE", "/v1/connectors/" + cid)

with t.section("bad config values are a 400 naming the field", srv):
    base = {"provider": "local", "root": "/tmp/x"}
    cases = [
        ({"format": "xml"}, "config.format"),
        ({"compression": "deflate"}, "config.compression"),
        ({"partitioning": "weekly"}, "config.partitioning"),
        ({"batch.size": "abc"}, "config.batch.size"),
        ({"batch_size": 0}, "config.batch_size"),
        ({"flush_interval_secs": "soon"}, "config.flush_interval_secs"),
        ({"provider": "gcp"}, "config.provider"),
        ({"provider": "s3", "root": None}, "config.bucket"),
        ({"root": None}, "config.root"),
        ({"s3": {"bogus": 1}}, "config.s3.bogus"),
        ({"parquet": {"compression": "lzo"}}, "config.parquet.compression"),
        ({"format": "avro", "compression": "gzip"}, "config.compression"),
        ({"access_key_id": "AK"}, "config.secret_access_key"),
        ({"include_metadata": "maybe"}, "config.include_metadata"),
        ({"csv.delimiter": 5}, "config.csv.delimiter"),
        ({"prefix": "../../etc"}, "config.prefix"),
        ({"s3.bucket": "a", "s3": {"bucket": "b"}}, "config.s3.bucket"),
    ]
    for extra, field in cases:
        cfg = dict(base, **extra)
        cfg = {k: v for k, v in cfg.items() if v is not None}
        r = srv.req("POST", "/v1/connectors", {"name": "bad", "kind": "object_storage", "config": cfg})
        t.ok(r.status == 400 and r.json and r.json["error"].startswith(field), "%s -> 400 naming %s" % (json.dumps(extra), field), r)
    r = srv.req("POST", "/v1/connectors", {"name": "bad", "kind": "object_storage",
                                           "config": dict(base, format="avro", avro={"compression": "brotli"})})
    t.ok(r.status == 400 and r.json["error"].startswith("config.avro.compression"),
         "a codec the format cannot take (avro brotli) is refused at creation naming the field, not dead-lettered later", r)
    kinds = {k["kind"]: k for k in srv.req("GET", "/v1/connector-kinds").json["kinds"]}
    t.ok(kinds["object_storage"].get("aliases") == ["s3-sink", "object-storage"] and "s3" in kinds,
         "the catalog lists object_storage with its aliases; s3 stays the per-record kind")

def duck(sql):
    """Runs one query in DuckDB (npm @duckdb/node-api); its rows as JSON objects, or the error."""
    node_dir = os.environ.get("SLUICE_NODE_DIR") or os.path.join(st.ROOT, "build", "node")
    script = os.path.join(node_dir, "objstore-duckdb-%d.mjs" % os.getpid())  # ESM resolves from here
    with open(script, "w") as f:
        f.write("import { DuckDBInstance } from '@duckdb/node-api';\n"
                "const db = await DuckDBInstance.create(':memory:');\n"
                "const con = await db.connect();\n"
                "const r = await con.runAndReadAll(process.argv[2]);\n"
                "console.log(JSON.stringify(r.getRowObjectsJson()));\n")
    try:
        p = subprocess.run(["node", script, sql], capture_output=True, timeout=60)
    finally:
        os.unlink(script)
    return json.loads(p.stdout.decode().strip() or "null") if p.returncode == 0 else p.stderr.decode()[-800:]


with t.section("DuckDB reads a JSONL file the sink wrote", srv):
    path = next((os.path.join(root, k) for k in files(root) if k.endswith(".jsonl")), None)
    out = duck("SELECT count(*)::INTEGER AS n, sum(i)::INTEGER AS s FROM read_json_auto('%s', format='newline_delimited')" % path)
    rs = rows(open(path, "rb").read(), "jsonl")
    t.eq(out, [{"n": len(rs), "s": sum(x["i"] for x in rs)}], "DuckDB's read_json_auto reads the same rows")

# ---------------------------------------------------------------- S3 (s3rver)

sd = os.path.join(st.tmpdir(), "s3")
p = subprocess.run([os.path.join(st.ROOT, "tests", "peers", "s3rver.sh"), "start", sd], capture_output=True, timeout=300)
if p.returncode != 0:
    t.ok(False, "s3rver starts", p.stderr.decode(errors="replace")[-800:])
    srv.stop()
    t.done()
env = dict(line.split("=", 1) for line in open(os.path.join(sd, "env")).read().splitlines() if line)
EP, BUCKET = env["S3_ENDPOINT"], env["S3_BUCKET"]
CREDS = {"access_key_id": env["S3_ACCESS_KEY"], "secret_access_key": env["S3_SECRET_KEY"]}


def s3(method, path, query=""):
    argv = ["curl", "-s", "-m", "60", "-X", method, "-o", "-", "-w", "\n%{http_code}", "--aws-sigv4",
            "aws:amz:%s:s3" % env["S3_REGION"], "--user", "%s:%s" % (env["S3_ACCESS_KEY"], env["S3_SECRET_KEY"]),
            "-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD", EP + path + (("?" + query) if query else "")]
    out = subprocess.run(argv, capture_output=True, timeout=90).stdout
    body, _, code = out.rpartition(b"\n")
    return int(code or 0), body


def s3_list(prefix):
    code, body = s3("GET", "/" + BUCKET, "list-type=2&prefix=" + urllib.parse.quote(prefix, safe=""))
    assert code == 200, (code, body[:300])
    root_ = ET.fromstring(body)
    return sorted(e.text for e in root_.iter() if e.tag.endswith("}Key") or e.tag == "Key")


def s3_get(key):
    code, body = s3("GET", "/%s/%s" % (BUCKET, urllib.parse.quote(key)))
    assert code == 200, (key, code, body[:300])
    return body


def s3cfg(**kw):
    return dict({"endpoint": EP, "bucket": BUCKET, "region": env["S3_REGION"], "retry": FAST,
                 "circuit_breaker": NOBREAK}, **dict(CREDS, **kw))


try:
    with t.section("S3: json keys, SigV4, batch and interval flush", srv):
        cid = create(s3cfg(prefix="lake/raw", format="json", partitioning="day", batch_size=4, flush_interval_ms=300), ["s3a"])
        recs = write(10, "s3a")
        want = expected_keys(recs[:8], 4, "day", "lake/raw", "s3a", "json")
        got = st.wait_until(lambda: (lambda k: k if len(k) >= len(want) + 1 else None)(s3_list("lake/raw/s3a/")), 10)
        tail = expected_keys(recs[8:], 4, "day", "lake/raw", "s3a", "json")
        t.eq(got, sorted(want + tail), "two batches of 4, then the last 2 after the interval, keys as specified")
        allrows = [x for k in got or [] for x in rows(s3_get(k), "json")]
        t.eq(sorted(x["_seq"] for x in allrows), [r[0] for r in recs], "every record is in exactly one object")
        srv.req("DELETE", "/v1/connectors/" + cid)

    with t.section("S3: multipart upload for an object over 16 MiB", srv):
        cid = create(s3cfg(prefix="big", format="jsonl", batch_size=20, flush_interval_ms=3600000), ["s3big"])
        recs = write(20, "s3big", size=900000)
        want = expected_keys(recs, 20, "none", "big", "s3big", "jsonl")
        got = st.wait_until(lambda: s3_list("big/"), 60)
        t.eq(got, want, "one object for the 20 records")
        # s3rver lists a multipart object as soon as its completion starts and writes the
        # assembled file meanwhile: under load a GET right after the listing read a partial file

        def complete_body():
            b = s3_get(want[0])
            try:
                return b if len(rows(b, "jsonl")) == 20 else None
            except ValueError:
                return None
        body = (st.wait_until(complete_body, 30) or s3_get(want[0])) if got == want else b""
        rs = rows(body, "jsonl") if body else []
        t.ok(len(body) > 16 << 20 and [x["i"] for x in rs] == list(range(20))
             and all(x["pad"] == ("%07d" % x["i"]) * (900000 // 7) for x in rs),
             "the %d-byte object is complete and equal to the records" % len(body))
        log = open(os.path.join(sd, "server.log"), errors="replace").read()
        t.ok("uploadId" in log or "partNumber" in log, "it went up as a multipart upload (s3rver's log shows the parts)")
        c = conn(cid)
        t.ok(c["stats"]["files_written"] == 1 and c["stats"]["bytes_written"] == len(body), "stats count the file and its bytes", c["stats"])
        srv.req("DELETE", "/v1/connectors/" + cid)

    with t.section("S3: a wrong secret or a missing bucket: not running, and why", srv):
        cid = create(s3cfg(prefix="bad", secret_access_key=env["S3_SECRET_KEY"] + "x", batch_size=2, flush_interval_ms=100), ["s3bad"])
        recs = write(2, "s3bad")
        st.wait_until(lambda: (lambda c_: c_["state"] == "unhealthy" and c_["stats"]["lag"] == 2)(conn(cid)), 10)
        c = conn(cid)
        t.ok(c["state"] == "unhealthy" and "denied" in (c["last_error"] or "") and "403" in (c["last_error"] or ""),
             "the health check's signed listing is refused (403): state unhealthy, last_error says so", c)
        t.ok(c["stats"]["failed"] == 0 and c["stats"]["dead_lettered"] == 0 and c["stats"]["delivered"] == 0
             and c["stats"]["lag"] == 2, "no record was sent, none dead-lettered: they wait (lag 2)", c["stats"])
        t.eq(s3_list("bad/"), [], "nothing is stored")
        cfg = dict(c["config"], secret_access_key=env["S3_SECRET_KEY"])
        r = srv.req("PATCH", "/v1/connectors/" + cid, {"config": cfg})
        t.eq(r.status, 200, "PATCH with the right secret")
        got = st.wait_until(lambda: s3_list("bad/") or None, 15)
        t.eq(got, expected_keys(recs, 2, "none", "bad", "s3bad", "json"), "then it runs and stores the waiting records")
        srv.req("DELETE", "/v1/connectors/" + cid)
        cid = create(s3cfg(bucket="no-such-bucket", prefix="nb"), ["s3nb"])
        st.wait_until(lambda: conn(cid)["state"] == "unhealthy", 10)
        c = conn(cid)
        t.ok(c["state"] == "unhealthy" and "no-such-bucket does not exist" in (c["last_error"] or ""),
             "a bucket that does not exist: unhealthy, last_error names it", c)
        srv.req("DELETE", "/v1/connectors/" + cid)

    with t.section("S3: a dead endpoint is retried until it comes up", srv):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()  # nothing listens there: connection refused
        up = urllib.parse.urlparse(EP)
        cid = create(s3cfg(endpoint="http://127.0.0.1:%d" % port, prefix="late", format="jsonl", batch_size=3, flush_interval_ms=100), ["s3late"])
        recs = write(3, "s3late")
        down = st.wait_until(lambda: conn(cid)["state"] == "unhealthy", 10)
        t.ok(down and "cannot reach http://127.0.0.1:%d" % port in (conn(cid)["last_error"] or "")
             and conn(cid)["stats"]["dead_lettered"] == 0,
             "connection refused: unhealthy and checked again, nothing dead-lettered", conn(cid))

        def proxy(lst):  # a plain TCP forwarder to s3rver on the port that was dead
            def pipe(a, b):
                try:
                    while True:
                        d = a.recv(65536)
                        if not d:
                            break
                        b.sendall(d)
                except OSError:
                    pass
                finally:
                    for x in (a, b):
                        try:
                            x.shutdown(socket.SHUT_RDWR)
                        except OSError:
                            pass
            while True:
                try:
                    cl, _ = lst.accept()
                except OSError:
                    return
                upc = socket.create_connection((up.hostname, up.port))
                threading.Thread(target=pipe, args=(cl, upc), daemon=True).start()
                threading.Thread(target=pipe, args=(upc, cl), daemon=True).start()

        lst = socket.socket()
        lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        lst.bind(("127.0.0.1", port))
        lst.listen(16)
        threading.Thread(target=proxy, args=(lst,), daemon=True).start()
        want = expected_keys(recs, 3, "none", "late", "s3late", "jsonl")
        got = st.wait_until(lambda: s3_list("late/") or None, 15)
        t.eq(got, want, "once the endpoint answers, the batch is stored (SigV4 signed for the Host it was sent to)")
        lst.close()
        srv.req("DELETE", "/v1/connectors/" + cid)

    with t.section("StreamHouse: POST /api/v1/connectors with its body and string values", srv):
        seed = {"name": "orders-to-s3", "connectorType": "sink", "connectorClass": "s3-sink", "topics": ["orders", "payments"],
                "config": {"s3.bucket": "my-data-lake", "s3.prefix": "raw/streaming", "s3.region": "us-east-1", "format": "parquet",
                           "batch.size": "10000", "batch.interval_ms": "60000", "partitioning": "hourly"}}
        r = srv.req("POST", "/api/v1/connectors", seed)
        t.ok(r.status == 201 and r.json["config"]["format"] == "parquet" and r.json["config"]["s3.bucket"] == "my-data-lake",
             "the seed's body verbatim is created (parquet)", r)
        if r.status == 201:
            srv.req("DELETE", "/v1/connectors/" + r.json["id"])
        body = dict(seed, name="orders-to-s3-live",  # names are unique: d below is another seed copy
                    config=dict(seed["config"], format="json", **{"s3.bucket": BUCKET, "s3.endpoint": EP,
                                                                  "s3.access_key_id": CREDS["access_key_id"],
                                                                  "s3.secret_access_key": CREDS["secret_access_key"],
                                                                  "batch.size": "3", "batch.interval_ms": "200"}))
        body["topics"] = ["orders"]
        r = srv.req("POST", "/api/v1/connectors", body)
        t.ok(r.status == 201 and r.json["connectorClass"] == "s3-sink" and r.json["topics"] == ["orders"]
             and r.json["config"]["batch.size"] == "3" and r.json["config"]["s3.secret_access_key"] == "***",
             "the answer echoes StreamHouse's spelling (secrets masked)", r)
        if r.status == 201:  # Sluice's view of the same connector: the normalized config
            r = srv.req("GET", "/v1/connectors/" + r.json["id"])
        t.ok(r.status == 200 and r.json["kind"] == "object_storage" and r.json["strands"] == ["orders"]
             and r.json["config"]["batch_size"] == 3 and r.json["config"]["flush_interval_ms"] == 200
             and r.json["config"]["bucket"] == BUCKET and r.json["config"]["partitioning"] == "hour"
             and r.json["config"]["secret_access_key"] == "***", "connectorClass s3-sink, topics, dotted keys and string values", r)
        cid = r.json["id"] if r.status in (200, 201) else None
        recs = write(4, "orders")
        want = expected_keys(recs, 3, "hour", "raw/streaming", "orders", "json")
        got = st.wait_until(lambda: (lambda k: k if len(k) >= len(want) else None)(s3_list("raw/streaming/orders/")), 10)
        t.eq(got, sorted(want), "records of topic orders arrive under raw/streaming/orders/year=/month=/day=/hour=/")
        g = srv.req("GET", "/api/v1/connectors/%s" % cid)
        t.ok(g.status == 200 and g.json["id"] == cid, "GET /api/v1/connectors/{id} is the same route")
        d = srv.req("POST", "/api/v1/connectors", dict(seed, name="orders-to-s3-defaults",
                                                       config={"s3.bucket": "b", "format": "json"}))
        if d.status == 201:
            d = srv.req("GET", "/v1/connectors/" + d.json["id"])
        t.ok(d.status == 200 and d.json["config"]["batch_size"] == 10000 and d.json["config"]["flush_interval_ms"] == 60000,
             "StreamHouse spelling: batch.size defaults to 10000, as its seed says", d)
        if d.status == 201:
            srv.req("DELETE", "/v1/connectors/" + d.json["id"])
        e = srv.req("POST", "/api/v1/connectors", dict(seed, connectorType="source"))
        t.ok(e.status == 400 and e.json["error"].startswith("connectorType"), "connectorType source for a sink -> 400 naming it", e)
        srv.req("DELETE", "/v1/connectors/%s" % cid)

    with t.section("every format through the sink, read back by readers nobody here wrote", srv):
        # mixed types: ints, a float in one row (promotes the column), nulls, nested, unicode
        fr = []
        c = srv.client()
        for k in range(40):
            p = {"i": k, "name": "n\u00e9-%d" % k, "score": 1.5 if k == 7 else k, "tag": None if k % 3 else "x,\"y\"",
                 "nested": {"a": [k, "b"]}}
            r = c.request("POST", "/v1/records", {"strand": "fmts", "payload": p})
            fr.append(r.json["seq"])
        c.close()
        froot = st.tmpdir()
        variants = [("parquet", {"format": "parquet", "parquet": {"compression": "snappy"}}, "parquet"),
                    ("csvgz", {"format": "csv", "compression": "gzip"}, "csv.gz"),
                    ("avro", {"format": "avro", "avro": {"compression": "deflate"}}, "avro"),
                    ("jsonzst", {"format": "json", "compression": "zstd"}, "json.zst"),
                    ("jsonllz4", {"format": "jsonl", "compression": "lz4"}, "jsonl.lz4")]
        ids = []
        for name, cfg, ext in variants:
            ids.append(create(dict({"provider": "local", "root": froot, "prefix": name, "batch_size": 40,
                                    "flush_interval_ms": 3600000, "start": "earliest"}, **cfg), ["fmts"], name=name))
        st.wait_until(lambda: len(files(froot)) >= len(variants), 15)
        got = files(froot)
        for (name, cfg, ext), cid in zip(variants, ids):
            want = "%s/fmts/%020d-%020d.%s" % (name, fr[0], fr[-1], ext)
            t.ok(want in got, "%s: one file %s" % (name, want), got)
        path = lambda name, ext: os.path.join(froot, "%s/fmts/%020d-%020d.%s" % (name, fr[0], fr[-1], ext))  # noqa: E731
        q = duck("SELECT count(*)::INTEGER AS n, sum(i)::INTEGER AS s, sum(score)::DOUBLE AS sc, "
                 "count(tag)::INTEGER AS tags, min(name) AS lo, typeof(any_value(score)) AS ty, "
                 "min(_seq)::INTEGER AS first FROM read_parquet('%s')" % path("parquet", "parquet"))
        t.eq(q, [{"n": 40, "s": 780, "sc": 774.5, "tags": 14, "lo": "n\u00e9-0", "ty": "DOUBLE", "first": fr[0]}],
             "Parquet (snappy): DuckDB reads 40 rows, the int+float column promoted to DOUBLE, nulls kept")
        q = duck("SELECT count(*)::INTEGER AS n, sum(i)::INTEGER AS s, count(*) FILTER (WHERE tag = 'x,\"y\"')::INTEGER "
                 "AS quoted FROM read_csv('%s', nullstr='NULL')" % path("csvgz", "csv.gz"))
        t.eq(q, [{"n": 40, "s": 780, "quoted": 14}], "CSV (gzip): DuckDB reads it, quotes and commas inside values intact")
        p = subprocess.run(["avrocat", path("avro", "avro")], capture_output=True, timeout=60)
        av = [json.loads(x) for x in p.stdout.decode().splitlines()] if p.returncode == 0 else []
        t.ok([x["i"] for x in av] == list(range(40)) and av[39]["name"] == "n\u00e9-39" and av[5]["tag"] is None,
             "Avro (deflate): avrocat prints the 40 records, unicode and nulls intact", p.stderr.decode()[-300:])
        p = subprocess.run(["zstdcat", path("jsonzst", "json.zst")], capture_output=True, timeout=60)
        t.ok(p.returncode == 0 and [x["i"] for x in json.loads(p.stdout)] == list(range(40)), "JSON (zstd): zstdcat + json")
        p = subprocess.run(["lz4cat", path("jsonllz4", "jsonl.lz4")], capture_output=True, timeout=60)
        t.ok(p.returncode == 0 and [json.loads(x)["nested"] for x in p.stdout.decode().splitlines()][3] == {"a": [3, "b"]},
             "JSONL (lz4): lz4cat + json, nested values kept")
        for cid in ids:
            srv.req("DELETE", "/v1/connectors/" + cid)
        # Parquet over S3 (SigV4), downloaded and read by DuckDB
        cid = create(s3cfg(prefix="pq", format="parquet", parquet={"compression": "zstd"}, batch_size=40,
                           flush_interval_ms=3600000, start="earliest"), ["fmts"])
        keys = st.wait_until(lambda: s3_list("pq/") or None, 15)
        local = os.path.join(st.tmpdir(), "x.parquet")
        if keys:
            with open(local, "wb") as f:
                f.write(s3_get(keys[0]))
        q = duck("SELECT count(*)::INTEGER AS n, sum(i)::INTEGER AS s FROM read_parquet('%s')" % local) if keys else None
        t.eq(q, [{"n": 40, "s": 780}], "Parquet (zstd) uploaded to S3 reads back in DuckDB")
        srv.req("DELETE", "/v1/connectors/" + cid)

    with t.section("Rivven: object-storage with a nested s3 block", srv):
        cfg = {"provider": "s3", "bucket": BUCKET, "prefix": "events/", "format": "jsonl", "compression": "none",
               "partitioning": "day", "batch_size": 1000, "flush_interval_secs": 1,
               "s3": dict({"region": "us-east-1", "endpoint": EP, "force_path_style": True}, **CREDS)}
        cid = create(cfg, ["logs"], kind="object-storage")
        c = conn(cid)
        t.ok(c["config"]["endpoint"] == EP and c["config"]["flush_interval_ms"] == 1000 and "s3" not in c["config"]
             and c["config"]["secret_access_key"] == "***", "the s3 block is read (and the secret redacted)", c["config"])
        recs = write(3, "logs")
        want = expected_keys(recs, 1000, "day", "events", "logs", "jsonl")
        got = st.wait_until(lambda: s3_list("events/logs/") or None, 10)
        t.eq(got, want, "written after flush_interval_secs under events/logs/year=/month=/day=/")
        # a PATCH that sends the redacted config back (nested, as Rivven spells it) keeps the secret
        r = srv.req("PATCH", "/v1/connectors/" + cid, {"config": dict(cfg, s3=dict(cfg["s3"], secret_access_key="***"))})
        more = write(2, "logs", start=3)
        got2 = st.wait_until(lambda: (lambda k: k if len(k) >= 2 else None)(s3_list("events/logs/")), 10)
        t.ok(r.status == 200 and got2 and len(got2) == 2, "a PATCH sending \"***\" back keeps the stored secret", (r, got2))
        srv.req("DELETE", "/v1/connectors/" + cid)
finally:
    subprocess.run([os.path.join(st.ROOT, "tests", "peers", "s3rver.sh"), "stop", sd], capture_output=True, timeout=30)

srv.stop()
t.done()
