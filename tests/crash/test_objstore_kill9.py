#!/usr/bin/python3
"""Crash test of the object_storage sink: kill -9 Sluice while it writes files (local provider)
and uploads objects (S3 on @20minutes/s3rver), restart, repeat. At the end every record of the
strand is in exactly one file/object: the keys' seq ranges are disjoint and cover the strand with
no gap, each file holds exactly the records of its range, and a record stored twice was stored
under the same key (an overwrite), never in a second file.

Each cycle: a writer posts small batches to strand `ck` without pause; the server is SIGKILLed
0.3-1.2 s in; it restarts on the same data dir. Two connectors follow the strand (batch_size 37,
flush_interval_ms 150, hourly partitions): one to a local directory, one to s3rver.
SLUICE_OBJ_CRASH_CYCLES (default 6) sets the cycles, SLUICE_CRASH_SEED the random seed."""
import concurrent.futures
import json
import os
import random
import re
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "integration"))
sys.dont_write_bytecode = True
import sluicetest as st  # noqa: E402

CYCLES = int(os.environ.get("SLUICE_OBJ_CRASH_CYCLES", "6"))
SEED = int(os.environ.get("SLUICE_CRASH_SEED", str(int(time.time() * 1000) % 1000000)))
KEY_RE = re.compile(r"(\d{20})-(\d{20})\.jsonl$")

t = st.Checks()
st.require_binary(t)
t.note("seed %d, %d cycles" % (SEED, CYCLES))
rng = random.Random(SEED)
srv = st.Server()
root = st.tmpdir()

sd = os.path.join(st.tmpdir(), "s3")
p = subprocess.run([os.path.join(st.ROOT, "tests", "peers", "s3rver.sh"), "start", sd], capture_output=True, timeout=300)
s3ok = p.returncode == 0
t.ok(s3ok, "s3rver starts", p.stderr.decode(errors="replace")[-800:])
env = dict(line.split("=", 1) for line in open(os.path.join(sd, "env")).read().splitlines() if line) if s3ok else {}


def s3(path, query=""):
    argv = ["curl", "-s", "-m", "30", "-o", "-", "-w", "\n%{http_code}", "--aws-sigv4", "aws:amz:%s:s3" % env["S3_REGION"],
            "--user", "%s:%s" % (env["S3_ACCESS_KEY"], env["S3_SECRET_KEY"]), "-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD",
            env["S3_ENDPOINT"] + path + (("?" + query) if query else "")]
    out = subprocess.run(argv, capture_output=True, timeout=60).stdout
    body, _, code = out.rpartition(b"\n")
    if int(code or 0) != 200:
        time.sleep(0.2)  # let s3rver write its error line; only to report it
        try:
            with open(os.path.join(sd, "server.log"), "rb") as f:
                lines = f.read().decode(errors="replace").splitlines()
            errs = [i for i, line in enumerate(lines) if "error" in line.lower() and "Stored" not in line]
            log = "\n".join(lines[errs[-1]:errs[-1] + 12] if errs else lines[-20:])
        except OSError:
            log = "(no s3rver log)"
        raise AssertionError("%s?%s -> %s %s\ns3rver log tail:\n%s" % (path, query, code, body[:300], log))
    return body


def s3_objects(prefix):
    # Listed with ListObjects v1 paged by marker: s3rver caps a page at 1000 keys, and its v2
    # continuation tokens use DES, which the OpenSSL 3 under node refuses (a 500). The listing
    # is sent unsigned (s3rver serves anonymous reads; curl's SigV4 mis-signs a marker holding
    # '='); every object is then fetched with a signed GET.
    keys = []
    while True:
        q = {"prefix": prefix, "max-keys": "1000"}
        if keys:
            q["marker"] = keys[-1]
        url = "%s/%s?%s" % (env["S3_ENDPOINT"], env["S3_BUCKET"], urllib.parse.urlencode(q))
        with urllib.request.urlopen(url, timeout=60) as r:
            x = ET.fromstring(r.read())
        page = [e.text for e in x.iter() if e.tag.split("}")[-1] == "Key"]
        keys += page
        if not page or [e.text for e in x.iter() if e.tag.split("}")[-1] == "IsTruncated"] != ["true"]:
            # a curl run per object: eight at a time (one after the other took ~20 s)
            with concurrent.futures.ThreadPoolExecutor(8) as ex:
                bodies = ex.map(lambda k: s3("/%s/%s" % (env["S3_BUCKET"], urllib.parse.quote(k))), keys)
                return dict(zip(keys, bodies))


def local_objects():
    out, temps = {}, 0
    for d, _, names in os.walk(root):
        for n in names:
            if n.startswith("."):
                temps += 1  # a temp file a kill left behind; never under a final name
                continue
            out[os.path.relpath(os.path.join(d, n), root)] = open(os.path.join(d, n), "rb").read()
    return out, temps


def check(objects, count, what):
    ranges, bad = [], []
    for k, body in objects.items():
        m = KEY_RE.search(k)
        if not m:
            bad.append(k)
            continue
        first, last = int(m.group(1)), int(m.group(2))
        seqs = [json.loads(line)["_seq"] for line in body.decode().splitlines() if line]
        if seqs != list(range(first, last + 1)):
            bad.append("%s holds %s" % (k, seqs[:5]))
        ranges.append((first, last))
    ranges.sort()
    covered, gaps_or_overlaps = 0, []
    for first, last in ranges:
        if first != covered:
            gaps_or_overlaps.append((covered, first, last))
        covered = max(covered, last + 1)
    t.ok(not bad, "%s: every file holds exactly the records of its key's range" % what, bad[:5])
    t.ok(not gaps_or_overlaps and covered == count,
         "%s: %d files cover the %d records once, no gap, no overlap" % (what, len(ranges), count),
         (gaps_or_overlaps[:5], covered, count))


class Writer(threading.Thread):
    def __init__(self, port):
        super().__init__(daemon=True)
        self.port, self.stop, self.n = port, False, 0

    def run(self):
        r = random.Random(rng.random())
        while not self.stop:
            k = r.randint(1, 20)
            body = [{"payload": {"w": self.n + i, "pad": "x" * r.randint(0, 2000)}} for i in range(k)]
            try:
                resp = st.req(self.port, "POST", "/v1/records/batch?strand=ck", body, timeout=5)
                if resp.status == 201:
                    self.n += k
            except Exception:
                return  # the server was killed


cfg = {"format": "jsonl", "partitioning": "hour", "batch_size": 37, "flush_interval_ms": 150, "start": "earliest",
       "retry": {"initial_backoff_ms": 20, "max_backoff_ms": 200}, "circuit_breaker": {"failure_threshold": 100000}}
try:
    srv.start()
    ids = []
    r = srv.req("POST", "/v1/connectors", {"name": "local", "kind": "object_storage", "strands": ["ck"],
                                           "config": dict(cfg, provider="local", root=root, prefix="crash")})
    t.eq(r.status, 201, "local connector created")
    ids.append(r.json["id"])
    if s3ok:
        r = srv.req("POST", "/v1/connectors", {"name": "s3", "kind": "object_storage", "strands": ["ck"],
                                               "config": dict(cfg, endpoint=env["S3_ENDPOINT"], bucket=env["S3_BUCKET"],
                                                              prefix="crash", access_key_id=env["S3_ACCESS_KEY"],
                                                              secret_access_key=env["S3_SECRET_KEY"])})
        t.eq(r.status, 201, "s3 connector created")
        ids.append(r.json["id"])
    for cycle in range(CYCLES):
        with t.section("cycle %d" % cycle, srv):
            w = Writer(srv.port)
            w.start()
            time.sleep(rng.uniform(0.3, 1.2))  # the kill lands at a random moment of the load
            srv.kill()
            w.stop = True
            w.join(10)
            srv.start()
            t.ok(st.healthy(srv.port), "cycle %d: restarted after kill -9" % cycle)
    with t.section("final check", srv):
        count = st.counts(srv.port).get("ck", 0)
        caught_up = st.wait_until(lambda: all(srv.req("GET", "/v1/connectors/" + i).json["stats"]["lag"] == 0 for i in ids), 60)
        t.ok(caught_up, "every connector catches up with the %d records" % count,
             [srv.req("GET", "/v1/connectors/" + i).json["stats"] for i in ids])
        t.eq(srv.stop(), 0, "clean stop")
        objs, temps = local_objects()
        t.note("local: %d files, %d temp files left by kills" % (len(objs), temps))
        check(objs, count, "local")
        if s3ok:
            check(s3_objects("crash/"), count, "s3")
finally:
    if s3ok:
        subprocess.run([os.path.join(st.ROOT, "tests", "peers", "s3rver.sh"), "stop", sd], capture_output=True, timeout=30)
t.done()
