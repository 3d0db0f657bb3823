"""The object_storage sink with provider azure against Azurite (npm azurite: Microsoft's Azure
Storage emulator, which verifies Shared Key signatures and SAS tokens), started here on 127.0.0.1
with a temp location, a random account key, --skipApiVersionCheck and --disableTelemetry (without
it Azurite would try to send telemetry to a public host). What Sluice wrote is listed and read
back with Microsoft's own client (npm @azure/storage-blob, tests/peers/azblob.mjs), and one
Parquet blob with DuckDB. What a user relies on: the Rivven seed's azure block (account +
access_key, connection_string, sas_token) works; every record is in exactly one blob under the
same keys as on S3; a blob over 16 MiB goes up as blocks and appears whole only when the block
list is committed; a wrong key is refused by Azure and reported, nothing is sent meanwhile;
Azurite going away mid-stream and coming back loses nothing and duplicates nothing; a kill -9 of
Sluice while it uploads loses nothing and duplicates nothing; bad config is a 400 naming the
field; secrets are shown as ***."""
import base64
import json
import os
import re
import shutil
import signal
import subprocess
import time

import ostest
import sluicetest as st

t = st.Checks()
st.require_binary(t)
NODE_DIR = os.environ.get("SLUICE_NODE_DIR") or os.path.join(st.ROOT, "build", "node")
AZURITE = os.path.join(NODE_DIR, "node_modules", ".bin", "azurite-blob")
if not os.path.exists(AZURITE) or not os.path.isdir(os.path.join(NODE_DIR, "node_modules", "@azure", "storage-blob")):
    t.ok(False, "azurite and @azure/storage-blob are installed in %s (scripts/install-deps.sh)" % NODE_DIR)
    t.done()
ACCOUNT = "sluicetest"
KEY = base64.b64encode(os.urandom(64)).decode()
CONTAINER = "sluice-events"
CLIENT = os.path.join(NODE_DIR, "sluice_azblob.mjs")  # ESM resolves packages next to the script
shutil.copy(os.path.join(st.ROOT, "tests", "peers", "azblob.mjs"), CLIENT)


class Azurite:
    """One azurite-blob process; start() again reuses the location (and the port, once known)."""

    def __init__(self):
        self.dir = st.tmpdir("sluice-azurite-")
        self.proc = None
        self.port = 0
        st.at_cleanup(self.stop)

    def start(self):
        log = os.path.join(self.dir, "azurite.log")
        with open(log, "ab") as f:
            offset = f.tell()
        env = dict(os.environ, AZURITE_ACCOUNTS="%s:%s" % (ACCOUNT, KEY))
        out = open(log, "ab")
        self.proc = subprocess.Popen([AZURITE, "--blobHost", "127.0.0.1", "--blobPort", str(self.port),
                                      "--location", os.path.join(self.dir, "data"), "--skipApiVersionCheck",
                                      "--disableTelemetry"], stdin=subprocess.DEVNULL, stdout=out,
                                     stderr=out, env=env)
        out.close()
        pat = re.compile(rb"listens on http://127\.0\.0\.1:(\d+)")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with open(log, "rb") as f:
                f.seek(offset)
                m = pat.search(f.read())
            if m:
                self.port = int(m.group(1))
                return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError("azurite did not start: " + open(log, errors="replace").read()[-1500:])

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    @property
    def endpoint(self):
        return "http://127.0.0.1:%d/%s" % (self.port, ACCOUNT)


def client(*args):
    p = subprocess.run(["node", CLIENT, az.endpoint, ACCOUNT, KEY] + [str(a) for a in args],
                       capture_output=True, timeout=120)
    if p.returncode != 0:
        raise RuntimeError("@azure/storage-blob %s: %s" % (args[0], p.stderr.decode(errors="replace")[-800:]))
    return json.loads(p.stdout)


def listing(prefix=""):
    return client("list", CONTAINER, prefix)


def blob(name):
    path = os.path.join(st.tmpdir(), "blob")
    client("get", CONTAINER, name, path)
    with open(path, "rb") as f:
        return f.read()


az = Azurite().start()
client("create", CONTAINER)
srv = st.Server(args=["--max-body-bytes", "4M"]).start()
SINK = ostest.Sink(srv, "az")
create, conn, write = SINK.create, SINK.conn, SINK.write








def cfg(prefix, **kw):
    c = {"provider": "azure", "bucket": CONTAINER, "prefix": prefix, "format": "jsonl",
         "batch_size": 5, "flush_interval_ms": 200,
         "azure": {"account": ACCOUNT, "access_key": KEY, "endpoint": az.endpoint},
         "retry": {"initial_backoff_ms": 50, "max_backoff_ms": 500}}
    c.update(kw)
    return c


def seqs_in(prefix):
    """Every _seq in the JSONL objects under prefix, in name order, and the names."""
    names = [o["name"] for o in listing(prefix)]
    return ostest.seqs_in(names, blob), names


KEY_RE = ostest.KEY_RE

with t.section("Shared Key: the Rivven seed's azure block, small blobs read back by Microsoft's client", srv):
    cid = create(cfg("small", partitioning="day"), ["azs"])
    write("azs", 12)
    got = st.wait_until(lambda: (lambda l: l if len(l) >= 3 else None)(listing("small/")), 20)
    names = [b["name"] for b in got or []]
    t.ok(len(names) == 3 and all(KEY_RE.match(n) and "/azs/year=" in n for n in names),
         "12 records in batches of 5 -> 3 blobs named {prefix}/{strand}/year=/month=/day=/{first}-{last}.jsonl", names)
    t.ok(all(b["contentType"] == "application/x-ndjson" for b in got or []), "the blobs carry the file's content type", got)
    seqs, _ = seqs_in("small/")
    first = seqs[0] if seqs else 0
    t.eq(seqs, list(range(first, first + 12)), "every record is in exactly one blob, in order")
    for n in names:
        m = KEY_RE.match(n)
        rs = [json.loads(x) for x in blob(n).decode().splitlines()]
        t.ok([r["_seq"] for r in rs] == list(range(int(m.group(2)), int(m.group(3)) + 1)) and rs[0]["_strand"] == "azs",
             "%s holds exactly the records its name says" % n)
    c = conn(cid)
    t.ok(c["config"]["azure"]["access_key"] == "***" and c["state"] == "running" and c["stats"]["files_written"] == 3,
         "the access key is shown as ***; state running; 3 files counted", c)
    r = srv.req("PATCH", "/v1/connectors/" + cid, {"config": dict(c["config"], batch_size=2)})
    write("azs", 2, start=12)
    got = st.wait_until(lambda: (lambda l: l if len(l) >= 4 else None)(listing("small/")), 20)
    t.ok(r.status == 200 and got and len(got) == 4, "a PATCH sending the *** back keeps the key (the next blob is signed)", (r, got))
    srv.req("DELETE", "/v1/connectors/" + cid)

with t.section("connection_string and Parquet read by DuckDB", srv):
    cs = "DefaultEndpointsProtocol=http;AccountName=%s;AccountKey=%s;BlobEndpoint=%s;" % (ACCOUNT, KEY, az.endpoint)
    cid = create({"provider": "azure", "bucket": CONTAINER, "prefix": "pq", "format": "parquet",
                  "parquet": {"compression": "brotli"}, "batch_size": 50, "flush_interval_ms": 300,
                  "azure": {"connection_string": cs}}, ["azp"])
    write("azp", 50)
    got = st.wait_until(lambda: listing("pq/") or None, 20)
    path = os.path.join(st.tmpdir(), "x.parquet")
    if got:
        client("get", CONTAINER, got[0]["name"], path)
    js = os.path.join(NODE_DIR, "sluice_az_duck.mjs")
    with open(js, "w") as f:
        f.write("import { DuckDBInstance } from '@duckdb/node-api';\n"
                "const db = await DuckDBInstance.create(':memory:');\n"
                "const con = await db.connect();\n"
                "const r = await con.runAndReadAll(process.argv[2]);\n"
                "console.log(JSON.stringify(r.getRowObjectsJson()));\n")
    p = subprocess.run(["node", js, "SELECT count(*)::INTEGER n, sum(i)::INTEGER s FROM read_parquet('%s')" % path],
                       capture_output=True, timeout=120)
    t.eq(json.loads(p.stdout or b"null"), [{"n": 50, "s": sum(range(50))}],
         "the connection string's account, key and BlobEndpoint are used; DuckDB reads the brotli Parquet blob")
    t.ok(conn(cid)["config"]["azure"]["connection_string"] == "***", "the connection string is shown as ***")
    srv.req("DELETE", "/v1/connectors/" + cid)

with t.section("SAS token: a container SAS made by Microsoft's client", srv):
    sas = client("sas", CONTAINER)["sas"]
    cid = create({"provider": "azure", "bucket": CONTAINER, "prefix": "sas", "format": "json", "batch_size": 3,
                  "flush_interval_ms": 200, "azure": {"sas_token": "?" + sas, "endpoint": az.endpoint}}, ["azsas"])
    write("azsas", 3)
    got = st.wait_until(lambda: listing("sas/") or None, 20)
    t.ok(got and len(got) == 1 and [r["i"] for r in json.loads(blob(got[0]["name"]))] == [0, 1, 2],
         "the blob is written with the SAS (no account key given)", got)
    srv.req("DELETE", "/v1/connectors/" + cid)
    cid = create({"provider": "azure", "bucket": CONTAINER, "prefix": "badsas", "batch_size": 1, "flush_interval_ms": 100,
                  "azure": {"sas_token": sas.replace("sig=", "sig=AAAA"), "endpoint": az.endpoint}}, ["azbs"])
    write("azbs", 1)
    st.wait_until(lambda: conn(cid)["state"] == "unhealthy", 15)
    c = conn(cid)
    t.ok(c["state"] == "unhealthy" and "403" in (c["last_error"] or "") and c["stats"]["dead_lettered"] == 0,
         "a SAS with a wrong signature: Azure answers 403, the connector says so and keeps the record", c)
    srv.req("DELETE", "/v1/connectors/" + cid)

with t.section("a 403 on an upload after the health check passed: dead letters, no retry storm", srv):
    ro = client("sas", CONTAINER, "rl")["sas"]  # may list (the health check) but not write
    cid = create({"provider": "azure", "bucket": CONTAINER, "prefix": "ro", "batch_size": 2, "flush_interval_ms": 100,
                  "azure": {"sas_token": ro, "endpoint": az.endpoint}}, ["azro"])
    write("azro", 2)
    c = st.wait_until(lambda: (lambda c_: c_ if c_["stats"]["dead_lettered"] == 2 else None)(conn(cid)), 20)
    dls = srv.req("GET", "/v1/connectors/%s/dead-letters" % cid).json
    t.ok(c and c["stats"]["failed"] <= 2 and dls["count"] == 2 and dls["dead_letters"][0]["last_status"] == 403,
         "Azure refuses the write (403): both records are dead letters after one attempt, nothing retried", (c, dls))
    t.eq(listing("ro/"), [], "nothing stored")
    srv.req("DELETE", "/v1/connectors/" + cid)

with t.section("Put Block + Put Block List for a blob over 16 MiB", srv):
    cid = create(cfg("big", batch_size=20, flush_interval_ms=3600000), ["azbig"])
    write("azbig", 20, size=900000)
    got = st.wait_until(lambda: listing("big/") or None, 90)
    body = blob(got[0]["name"]) if got else b""
    rs = [json.loads(x) for x in body.decode().splitlines()]
    t.ok(len(body) > 16 << 20 and [r["i"] for r in rs] == list(range(20))
         and all(r["pad"] == ("%07d" % r["i"]) * (900000 // 7) for r in rs),
         "the %d-byte blob is complete and equal to the records" % len(body))
    blocks = client("blocks", CONTAINER, got[0]["name"]) if got else None
    t.eq(blocks, {"committed": (len(body) + (8 << 20) - 1) // (8 << 20), "uncommitted": 0},
         "it was committed as a block list of 8 MiB blocks (Microsoft's client reads the list)")
    srv.req("DELETE", "/v1/connectors/" + cid)

with t.section("a wrong account key: Azure refuses it (403), nothing is sent until it is fixed", srv):
    bad_key = base64.b64encode(os.urandom(64)).decode()
    c0 = cfg("wrongkey", batch_size=2)
    c0["azure"] = dict(c0["azure"], access_key=bad_key)
    cid = create(c0, ["azwk"])
    write("azwk", 2)
    st.wait_until(lambda: (lambda c_: c_["state"] == "unhealthy" and c_["stats"]["lag"] == 2)(conn(cid)), 15)
    c = conn(cid)
    t.ok(c["state"] == "unhealthy" and "denied" in (c["last_error"] or "") and "403" in (c["last_error"] or ""),
         "the signed listing is refused with 403: unhealthy, last_error says access is denied", c)
    t.ok(c["stats"]["failed"] == 0 and c["stats"]["dead_lettered"] == 0, "no retry storm, nothing dead-lettered", c["stats"])
    t.eq(listing("wrongkey/"), [], "nothing is stored")
    c1 = dict(c["config"])
    c1["azure"] = dict(c1["azure"], access_key=KEY)
    r = srv.req("PATCH", "/v1/connectors/" + cid, {"config": c1})
    got = st.wait_until(lambda: listing("wrongkey/") or None, 20)
    t.ok(r.status == 200 and got and len(got) == 1, "with the right key the waiting records are stored", (r, got))
    srv.req("DELETE", "/v1/connectors/" + cid)

with t.section("Azurite stopped mid-stream and started again: nothing lost, nothing twice", srv):
    # the breaker opens after 5 failures; its trial after 2 s instead of the default 30 keeps the
    # test short (the breaker itself: test_delivery.py and tests/component/test_sink_framework.c)
    cid = create(cfg("outage", batch_size=4, flush_interval_ms=100,
                     circuit_breaker={"reset_timeout_secs": 2}), ["azout"])
    write("azout", 8)
    st.wait_until(lambda: len(listing("outage/")) >= 2, 20)
    az.stop()
    write("azout", 8, start=8)
    failing = st.wait_until(lambda: (lambda c_: c_["stats"]["failed"] > 0 or c_["state"] == "unhealthy")(conn(cid)), 20)
    t.ok(failing, "while Azurite is down the connector fails and retries", conn(cid))
    az.start()
    got = st.wait_until(lambda: (lambda l: l if len(l) >= 4 else None)(listing("outage/")), 60)
    seqs, names = seqs_in("outage/")
    first = seqs[0] if seqs else 0
    t.eq(seqs, list(range(first, first + 16)), "after it is back every record is in exactly one blob")
    t.eq(len(names), 4, "4 blobs of 4 records, no duplicate object")
    srv.req("DELETE", "/v1/connectors/" + cid)

with t.section("kill -9 of Sluice while it uploads: nothing lost, nothing twice", srv):
    cid = create(cfg("crash", batch_size=6, flush_interval_ms=3600000), ["azcrash"])
    write("azcrash", 24, size=400000)  # 4 blobs of ~2.4 MB
    st.wait_until(lambda: conn(cid)["stats"]["files_written"] >= 1, 60, interval=0.005)
    srv.kill()  # right after the first blob: the next ones are being encoded or uploaded
    before = len(listing("crash/"))
    srv.start()
    got = st.wait_until(lambda: (lambda l: l if len(l) >= 4 else None)(listing("crash/")), 90)
    seqs, names = seqs_in("crash/")
    first = seqs[0] if seqs else 0
    t.eq(seqs, list(range(first, first + 24)), "after the restart every record is in exactly one blob (%d were up at the kill)" % before)
    t.eq(len(names), 4, "4 blobs: a blob uploaded again replaced itself under the same key")
    srv.req("DELETE", "/v1/connectors/" + cid)

with t.section("bad config values are a 400 naming the field", srv):
    base = cfg("x")
    cases = [
        (dict(base, bucket=None), "config.bucket"),
        (dict(base, bucket="Bad_Name"), "config.bucket"),
        (dict(base, azure={"account": ACCOUNT}), "config.azure.access_key"),
        (dict(base, azure={"account": ACCOUNT, "access_key": "not base64!"}), "config.azure.access_key"),
        (dict(base, azure={"access_key": KEY}), "config.azure.account"),
        (dict(base, azure={"account": "Has.Dots", "access_key": KEY}), "config.azure.account"),
        (dict(base, azure={"connection_string": "AccountName"}), "config.azure.connection_string"),
        (dict(base, azure={"connection_string": "AccountName=a;AccountKey=%%%"}), "config.azure.connection_string"),
        (dict(base, azure={"account": ACCOUNT, "access_key": KEY, "sas_token": "sv=1"}), "config.azure.sas_token"),
        (dict(base, azure={"account": ACCOUNT, "access_key": KEY, "bogus": 1}), "config.azure.bogus"),
        (dict(base, azure={"account": ACCOUNT, "access_key": KEY, "endpoint": "ftp://x"}), "config.azure.endpoint"),
        (dict(base, azure={"account": ACCOUNT, "use_managed_identity": "maybe"}), "config.azure.use_managed_identity"),
        (dict(base, provider="s3", endpoint="http://127.0.0.1:1"), "config.azure"),
        (dict(base, provider="gcp"), "config.provider"),
    ]
    for c, field in cases:
        c = {k: v for k, v in c.items() if v is not None}
        r = srv.req("POST", "/v1/connectors", {"name": "bad", "kind": "object_storage", "config": c})
        t.ok(r.status == 400 and r.json and r.json["error"].startswith(field),
             "%s -> 400 naming %s" % (json.dumps(c.get("azure", c.get("bucket", c.get("provider"))))[:90], field), r)
    t.eq(srv.req("GET", "/v1/connectors").json["connectors"], [], "nothing was stored")

with t.section("use_managed_identity: accepted, and the health check says why it cannot run here", srv):
    cid = create(dict(cfg("mi"), azure={"account": ACCOUNT, "use_managed_identity": True, "endpoint": az.endpoint}), ["azmi"])
    st.wait_until(lambda: conn(cid)["state"] == "unhealthy", 15)
    c = conn(cid)
    t.ok(c["state"] == "unhealthy" and "managed identity is not available outside Azure" in (c["last_error"] or ""),
         "state unhealthy, last_error explains (no call to the metadata service is made)", c)
    srv.req("DELETE", "/v1/connectors/" + cid)

srv.stop()
az.stop()
t.done()
