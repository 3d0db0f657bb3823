"""The object_storage sink with provider gcs against a STAND-IN for Google Cloud Storage
(tests/peers/gcs_standin.py: nothing of Google's can be installed here, so a small server
implements the OAuth2 token endpoint, verifying the JWT's RS256 signature with the test's
service-account public key, its iss/aud/scope/iat/exp, and the JSON API's list, media upload and
resumable upload with its status checks, per Google's public docs). The request shapes of a
resumable upload are compared with what Google's own Node client (npm @google-cloud/storage)
sends for the same upload. What a user relies on: the Rivven seed's gcs block with a
service-account key file (or use_adc with GOOGLE_APPLICATION_CREDENTIALS) works; every record is
in exactly one object under the same keys as on S3; tokens are refreshed before they expire; a
file over 16 MiB goes up as a resumable upload which, when a chunk is lost, asks the session how
much arrived and goes on from there; a refused key is reported and nothing is sent meanwhile;
503s are retried; a kill -9 of Sluice while it uploads loses nothing and duplicates nothing; bad
config is a 400 naming the field."""
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

import ostest
import sluicetest as st

t = st.Checks()
st.require_binary(t)
NODE_DIR = os.environ.get("SLUICE_NODE_DIR") or os.path.join(st.ROOT, "build", "node")
BUCKET = "sluice-lake"
EMAIL = "sluice-writer@sluice-test.iam.gserviceaccount.com"
KID = "0123456789abcdef0123456789abcdef01234567"
D = st.tmpdir("sluice-gcs-")


def keypair():
    k = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                          serialization.NoEncryption()).decode()
    pub = k.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return pem, pub


PEM, PUB = keypair()
with open(os.path.join(D, "pub.pem"), "wb") as f:
    f.write(PUB)

# the stand-in, on an ephemeral port, stopped by PID at exit
log = open(os.path.join(D, "standin.log"), "wb")
standin = subprocess.Popen([sys.executable, os.path.join(st.ROOT, "tests", "peers", "gcs_standin.py"),
                            "--bucket", BUCKET, "--client-email", EMAIL, "--key-id", KID,
                            "--public-key", os.path.join(D, "pub.pem"), "--token-ttl", "4"],
                           stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL)
st.at_cleanup(lambda: (standin.kill(), standin.wait()))
m = re.match(rb"PORT (\d+)", standin.stdout.readline())
if not m:
    t.ok(False, "the GCS stand-in starts")
    t.done()
EP = "http://127.0.0.1:%s" % m.group(1).decode()


def key_file(name, pem=PEM, **over):
    sa = {"type": "service_account", "project_id": "sluice-test", "private_key_id": KID, "private_key": pem,
          "client_email": EMAIL, "client_id": "1", "token_uri": EP + "/token"}
    sa.update(over)
    path = os.path.join(D, name)
    with open(path, "w") as f:
        json.dump(sa, f)
    return path


SA = key_file("sa.json")
ADC = key_file("adc.json")
os.environ["GOOGLE_APPLICATION_CREDENTIALS"] = ADC  # the server below inherits it (use_adc)


def ctl(method, path, body=None):
    req = urllib.request.Request(EP + path, method=method, data=json.dumps(body).encode() if body is not None else None)
    with urllib.request.urlopen(req, timeout=30) as r:
        data = r.read()
    return json.loads(data)


def listing(prefix):
    return ctl("GET", "/_standin/list?prefix=" + urllib.request.quote(prefix))


def obj(name):
    with urllib.request.urlopen(EP + "/_standin/o/" + urllib.request.quote(name), timeout=60) as r:
        return r.read()


def slog():
    return ctl("GET", "/_standin/log")


srv = st.Server(args=["--max-body-bytes", "4M"]).start()
SINK = ostest.Sink(srv, "gcs")
create, conn, write = SINK.create, SINK.conn, SINK.write








def cfg(prefix, **kw):
    c = {"provider": "gcs", "bucket": BUCKET, "prefix": prefix, "format": "jsonl", "batch_size": 5,
         "flush_interval_ms": 200, "gcs": {"service_account_path": SA, "endpoint": EP},
         "retry": {"initial_backoff_ms": 50, "max_backoff_ms": 500}}
    c.update(kw)
    return c


def seqs_in(prefix):
    """Every _seq in the JSONL objects under prefix, in name order, and the names."""
    names = [o["name"] for o in listing(prefix)]
    return ostest.seqs_in(names, obj), names


def since(mark):
    return [e for e in slog()["log"][mark:] if not e["path"].startswith("/_standin")]


KEY_RE = ostest.KEY_RE

with t.section("service-account key: media uploads, a Bearer token on every request", srv):
    mark = len(slog()["log"])
    cid = create(cfg("small", partitioning="hour"), ["gs"])
    write("gs", 12)
    got = st.wait_until(lambda: (lambda l: l if len(l) >= 3 else None)(listing("small/")), 20)
    names = [o["name"] for o in got or []]
    t.ok(len(names) == 3 and all(KEY_RE.match(n) and "/gs/year=" in n and "/hour=" in n for n in names),
         "12 records in batches of 5 -> 3 objects named {prefix}/{strand}/year=/month=/day=/hour=/{first}-{last}.jsonl", names)
    seqs, _ = seqs_in("small/")
    first = seqs[0] if seqs else 0
    t.eq(seqs, list(range(first, first + 12)), "every record is in exactly one object, in order")
    t.ok(all(o["contentType"] == "application/x-ndjson" for o in got or []), "objects carry the file's content type", got)
    reqs = since(mark)
    uploads = [e for e in reqs if e["path"].startswith("/upload/")]
    t.ok(len(uploads) == 3 and all(e["query"].get("uploadType") == "media" and e["method"] == "POST" for e in uploads),
         "each file is one media upload (POST /upload/storage/v1/b/{bucket}/o?uploadType=media&name=)", uploads[:1])
    t.ok(all(e["headers"]["authorization"] == "Bearer" for e in reqs if e["path"] != "/token"),
         "every JSON API request carries a Bearer token")
    s = slog()
    t.ok(s["tokens_issued"] >= 1 and s["bad_jwts"] == [], "the token endpoint accepted the RS256 JWT (signature, iss, aud, scope, iat/exp)", s["bad_jwts"])
    srv.req("DELETE", "/v1/connectors/" + cid)

with t.section("tokens are refreshed before they expire (the stand-in's live 4 s)", srv):
    before = slog()["tokens_issued"]
    cid = create(cfg("refresh", batch_size=1, flush_interval_ms=50), ["gr"])
    for k in range(6):  # about 6 s of uploads
        write("gr", 1, start=k)
        time.sleep(1)  # paces the uploads over more than one token lifetime (not a wait for a result)
    st.wait_until(lambda: len(listing("refresh/")) >= 6, 20)
    s = slog()
    t.ok(len(listing("refresh/")) == 6 and s["tokens_issued"] - before >= 2 and s["expired_used"] == 0,
         "6 uploads over 6 s: %d new tokens, no expired token ever presented" % (s["tokens_issued"] - before), s["expired_used"])
    srv.req("DELETE", "/v1/connectors/" + cid)

with t.section("use_adc: the key file GOOGLE_APPLICATION_CREDENTIALS names", srv):
    cid = create(dict(cfg("adc"), gcs={"use_adc": True, "endpoint": EP}), ["ga"])
    write("ga", 5)
    got = st.wait_until(lambda: listing("adc/") or None, 20)
    t.ok(got and len(got) == 1, "written with the ADC key file", got)
    srv.req("DELETE", "/v1/connectors/" + cid)

BIG = 20 * 900000 + 4000  # a JSONL file of 20 records of ~900 kB: over the 16 MiB threshold

with t.section("a file over 16 MiB: resumable upload in 8 MiB chunks", srv):
    mark = len(slog()["log"])
    cid = create(cfg("big", batch_size=20, flush_interval_ms=3600000), ["gbig"])
    write("gbig", 20, size=900000)
    got = st.wait_until(lambda: listing("big/") or None, 90)
    body = obj(got[0]["name"]) if got else b""
    rs = [json.loads(x) for x in body.decode().splitlines()]
    t.ok(len(body) > 16 << 20 and [r["i"] for r in rs] == list(range(20))
         and all(r["pad"] == ("%07d" % r["i"]) * (900000 // 7) for r in rs), "the %d-byte object is complete" % len(body))
    reqs = since(mark)
    init = [e for e in reqs if e["method"] == "POST" and e["query"].get("uploadType") == "resumable"]
    puts = [e for e in reqs if e["method"] == "PUT"]
    n = len(body)
    t.ok(len(init) == 1 and init[0]["headers"].get("x-upload-content-length") == str(n)
         and init[0]["headers"].get("x-upload-content-type") == "application/x-ndjson",
         "one session started (uploadType=resumable, X-Upload-Content-Type/-Length)", init)
    want = ["bytes %d-%d/%d" % (a, min(a + (8 << 20), n) - 1, n) for a in range(0, n, 8 << 20)]
    t.eq([e["headers"].get("content-range") for e in puts], want, "chunks of 8 MiB with their Content-Range, in order")
    srv.req("DELETE", "/v1/connectors/" + cid)

with t.section("Google's own client starts a resumable upload the same way", srv):
    shutil.copy(os.path.join(st.ROOT, "tests", "peers", "gcs_official.mjs"), os.path.join(NODE_DIR, "sluice_gcs_official.mjs"))
    data = os.path.join(D, "official.jsonl")
    with open(data, "wb") as f:
        f.write(b'{"i":1}\n' * 1000)
    ctl("POST", "/_standin/anonymous", {"allow": True})
    mark = len(slog()["log"])
    p = subprocess.run(["node", os.path.join(NODE_DIR, "sluice_gcs_official.mjs"), EP, BUCKET, "official/x.jsonl", data,
                        "application/x-ndjson", "resumable"], capture_output=True, timeout=120)
    ctl("POST", "/_standin/anonymous", {"allow": False})
    theirs = [e for e in since(mark) if e["method"] == "POST"]
    ours = init[0] if init else {}
    t.ok(p.returncode == 0 and theirs, "@google-cloud/storage uploaded through the stand-in", p.stderr.decode()[-500:])
    if theirs:
        th = theirs[0]
        t.ok(th["path"] == ours.get("path") and set(th["query"]) == set(ours.get("query", {}))
             and th["query"]["uploadType"] == ours["query"]["uploadType"],
             "same route and query parameters as Google's client (POST %s ?%s)" % (th["path"], sorted(th["query"])), (th, ours))
        t.ok(th["headers"].get("content-type", "").startswith("application/json")
             and ours["headers"].get("content-type", "").startswith("application/json")
             and th["headers"].get("x-upload-content-type") == ours["headers"].get("x-upload-content-type"),
             "the same JSON metadata body type and X-Upload-Content-Type", (th["headers"], ours["headers"]))

with t.section("a chunk half lost: the session is asked how much arrived, the upload goes on from there", srv):
    mark = len(slog()["log"])
    ctl("POST", "/_standin/faults", {"fail_chunks": 1})
    cid = create(cfg("lost", batch_size=20, flush_interval_ms=3600000), ["glost"])
    write("glost", 20, size=900000)
    got = st.wait_until(lambda: listing("lost/") or None, 90)
    body = obj(got[0]["name"]) if got else b""
    t.ok([json.loads(x)["i"] for x in body.decode().splitlines()] == list(range(20)), "the object is complete")
    ranges = [e["headers"].get("content-range") for e in since(mark) if e["method"] == "PUT"]
    n, half = len(body), 4 << 20
    t.eq(ranges, ["bytes 0-%d/%d" % ((8 << 20) - 1, n), "bytes */%d" % n,
                  "bytes %d-%d/%d" % (half, half + (8 << 20) - 1, n), "bytes %d-%d/%d" % (half + (8 << 20), n - 1, n)],
         "the first chunk gets a 503 with half of it kept; a status check (bytes */total) answers 308 "
         "with Range bytes=0-4194303; the upload goes on from byte 4194304")
    t.eq(len([e for e in since(mark) if e["query"].get("uploadType") == "resumable" and e["method"] == "POST"]), 1,
         "one session: resumed, not started over")
    srv.req("DELETE", "/v1/connectors/" + cid)

with t.section("503 on an upload is retried; the object is written once", srv):
    ctl("POST", "/_standin/faults", {"fail_media": 2})
    cid = create(cfg("busy", batch_size=3), ["gbusy"])
    write("gbusy", 3)
    got = st.wait_until(lambda: listing("busy/") or None, 20)
    st.wait_until(lambda: conn(cid)["stats"]["delivered"] == 3, 10)
    c = conn(cid)
    t.ok(got and len(got) == 1 and c["stats"]["retried"] >= 1 and c["stats"]["dead_lettered"] == 0,
         "two 503s, then stored: retried, nothing dead-lettered", c["stats"])
    srv.req("DELETE", "/v1/connectors/" + cid)

with t.section("a key the token endpoint refuses: unhealthy, why, nothing sent", srv):
    other_pem, _ = keypair()
    bad = key_file("wrong.json", pem=other_pem)
    cid = create(dict(cfg("wrong", batch_size=2), gcs={"service_account_path": bad, "endpoint": EP}), ["gwrong"])
    write("gwrong", 2)
    st.wait_until(lambda: (lambda c_: c_["state"] == "unhealthy" and c_["stats"]["lag"] == 2)(conn(cid)), 15)
    c = conn(cid)
    t.ok(c["state"] == "unhealthy" and "Invalid JWT Signature" in (c["last_error"] or ""),
         "the token endpoint's invalid_grant is the last_error", c)
    t.ok(c["stats"]["dead_lettered"] == 0 and listing("wrong/") == [], "nothing stored, nothing dead-lettered")
    r = srv.req("PATCH", "/v1/connectors/" + cid, {"config": dict(c["config"], gcs={"service_account_path": SA, "endpoint": EP})})
    got = st.wait_until(lambda: listing("wrong/") or None, 20)
    t.ok(r.status == 200 and got, "with the right key file the waiting records are stored", (r, got))
    srv.req("DELETE", "/v1/connectors/" + cid)

with t.section("kill -9 of Sluice while it uploads: nothing lost, nothing twice", srv):
    cid = create(cfg("crash", batch_size=6, flush_interval_ms=3600000), ["gcrash"])
    write("gcrash", 24, size=400000)
    st.wait_until(lambda: conn(cid)["stats"]["files_written"] >= 1, 60, interval=0.005)
    srv.kill()
    srv.start()
    st.wait_until(lambda: len(listing("crash/")) >= 4, 90)
    seqs, names = seqs_in("crash/")
    first = seqs[0] if seqs else 0
    t.eq(seqs, list(range(first, first + 24)), "after the restart every record is in exactly one object")
    t.eq(len(names), 4, "4 objects: one uploaded again replaced itself under the same name")
    srv.req("DELETE", "/v1/connectors/" + cid)

with t.section("bad config values are a 400 naming the field", srv):
    notsa = key_file("user.json", type="authorized_user")
    broken = os.path.join(D, "broken.json")
    with open(broken, "w") as f:
        f.write("{not json")
    nokey = key_file("nokey.json", private_key="-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    base = cfg("x")
    cases = [
        (dict(base, gcs={"endpoint": EP}), "config.gcs.service_account_path"),
        (dict(base, gcs={"service_account_path": os.path.join(D, "missing.json")}), "config.gcs.service_account_path"),
        (dict(base, gcs={"service_account_path": broken}), "config.gcs.service_account_path"),
        (dict(base, gcs={"service_account_path": "/dev/stdin"}), "config.gcs.service_account_path"),
        (dict(base, gcs={"service_account_path": notsa}), "config.gcs.service_account_path"),
        (dict(base, gcs={"service_account_path": nokey}), "config.gcs.service_account_path"),
        (dict(base, gcs={"service_account_path": SA, "endpoint": "ftp://x"}), "config.gcs.endpoint"),
        (dict(base, gcs={"service_account_path": SA, "use_adc": "perhaps"}), "config.gcs.use_adc"),
        (dict(base, gcs={"service_account_path": SA, "bogus": 1}), "config.gcs.bogus"),
        (dict(base, bucket=None), "config.bucket"),
        (dict(base, provider="s3", endpoint="http://127.0.0.1:1"), "config.gcs"),
    ]
    for c, field in cases:
        c = {k: v for k, v in c.items() if v is not None}
        r = srv.req("POST", "/v1/connectors", {"name": "bad", "kind": "object_storage", "config": c})
        t.ok(r.status == 400 and r.json and r.json["error"].startswith(field),
             "%s -> 400 naming %s" % (json.dumps(c.get("gcs", c.get("provider")))[-80:], field), r)
    t.eq(srv.req("GET", "/v1/connectors").json["connectors"], [], "nothing was stored")

srv.stop()
t.done()
