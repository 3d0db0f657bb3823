#!/usr/bin/python3
"""Verifiable strands (issue 13), checked by code we did not write: a small Go program built here
against golang.org/x/mod/sumdb/tlog and sumdb/note (tests/integration/tlogcheck) checks Sluice's
inclusion proofs (tlog.CheckRecord), consistency proofs (tlog.CheckTree), tiles
(tlog.TileHashReader) and checkpoint signatures (note.Open) for every tree size 1..300 (every
leaf, every pair) and for random sizes up to 1M; python3-cryptography checks the Ed25519
signatures a second way. Also: bad sizes and unknown hashes get 4xx JSON naming the field,
GET /v1/records/{hash}?proof=1, `sluice prove` + `sluice verify-proof` (and a tampered bundle
fails naming the part), `sluice key`, and the tree surviving a restart."""
import base64
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.dont_write_bytecode = True  # keep the source tree clean of __pycache__
import merklepy  # noqa: E402
import sluicetest as st  # noqa: E402

t = st.Checks()
st.require_binary(t)
rng = random.Random(int(os.environ.get("SLUICE_TEST_SEED", "13")))
HERE = os.path.dirname(os.path.abspath(__file__))
BIG = int(os.environ.get("SLUICE_PROOFS_BIG", "1000000"))


def build_tlogcheck():
    """go build in GOPATH mode against Debian's golang-golang-x-mod-dev, offline."""
    go = shutil.which("go")
    if not go:
        return None, "go is not installed (scripts/install-deps.sh installs golang-go)"
    tmp = st.tmpdir("sluice-go-")
    env = dict(os.environ, GO111MODULE="off", GOPATH="/usr/share/gocode", GOFLAGS="",
               GOCACHE=os.path.join(tmp, "cache"), GOPROXY="off", CGO_ENABLED="0")
    out = os.path.join(tmp, "tlogcheck")
    p = subprocess.run([go, "build", "-o", out, "."], cwd=os.path.join(HERE, "tlogcheck"), env=env,
                       capture_output=True, timeout=300)
    if p.returncode != 0:
        return None, (p.stdout + p.stderr).decode("utf-8", "replace")
    return out, None


def run_tlogcheck(binary, what, **inp):
    path = os.path.join(st.tmpdir("sluice-go-in-"), "in.json")
    with open(path, "w") as f:
        json.dump(inp, f)
    p = subprocess.run([binary, "-in", path], capture_output=True, timeout=600)
    out = p.stdout.decode("utf-8", "replace")
    lines = [l for l in out.splitlines() if l.startswith("ok - ") or l.startswith("not ok - ")]
    for l in lines:
        t.ok(l.startswith("ok - "), "%s: Go %s" % (what, l.split(" - ", 1)[1]), out[-3000:] + p.stderr.decode()[-2000:])
    t.ok(p.returncode == 0 and lines, "%s: the Go verifier ran and found nothing wrong" % what, out[-3000:] + p.stderr.decode()[-2000:])


def py_verify(note_text, vkey):
    """The checkpoint's Ed25519 signature checked with python3-cryptography (merklepy)."""
    return merklepy.open_checkpoint(note_text, vkey)


def checkpoint(srv, strand):
    r = srv.req("GET", "/v1/strands/%s/checkpoint" % strand)
    assert r.status == 200, r
    return r.body.decode()


def cp_size(text):
    return int(text.split("\n")[1])


binary, why = build_tlogcheck()
t.ok(binary is not None, "the Go verifier builds against golang.org/x/mod/sumdb (GOPATH mode, offline)", why)

srv = st.Server(args=["--segment-bytes", "65536", "--checkpoint-interval-ms", "0",
                      "--max-body-bytes", "256M", "--batch-max-records", "1000000"])
srv.start()
vkey = srv.req("GET", "/v1/checkpoint-key").body.decode().strip()

# ------------------------------------------------------------------ sizes 1..300, exhaustively
with t.section("trees of size 1..300", srv):
    c = srv.client()
    leaves, notes, sizes_ok = {}, [], True
    for i in range(300):
        r = c.request("POST", "/v1/records", {"agent_id": "p", "strand": "pf",
                                              "payload": {"i": i, "pad": "x" * rng.randrange(0, 400)}})
        assert r.status == 201, r
        leaves[str(r.json["seq"])] = r.json["record_hash"]
        n = c.request("GET", "/v1/strands/pf/checkpoint").body.decode()
        sizes_ok &= cp_size(n) == i + 1
        notes.append(n)
    c.close()
    t.ok(sizes_ok, "after each acknowledged write the checkpoint covers it (sizes 1..300)")
    segs = [f for f in os.listdir(os.path.join(srv.data, "strands", "pf")) if f.endswith(".seg")]
    t.ok(len(segs) >= 2, "the 300 records span several segments (%d)" % len(segs))
    if binary:
        skey = os.path.join(srv.data, "checkpoint.key")
        run_tlogcheck(binary, "sizes 1..300", url=srv.url, strand="pf", vkey=vkey, skey_file=skey,
                      checkpoints=notes, leaves=leaves, all=True, samples=0, seed=1)
    bad = []
    for n in notes:
        try:
            py_verify(n, vkey)
        except Exception as e:  # noqa: BLE001
            bad.append((n, repr(e)))
    t.ok(not bad, "python3-cryptography verifies the Ed25519 signature of all 300 checkpoints", bad[:2])
    host = notes[0].split("\n")[0]
    t.ok(host.endswith("/sluice/pf"), "the default origin is <hostname>/sluice/<strand> (%s)" % host)
    st_mode = os.stat(os.path.join(srv.data, "checkpoint.key")).st_mode & 0o777
    t.eq(oct(st_mode), "0o600", "the generated key file is mode 0600")
    kp = subprocess.run([st.SLUICE_BIN, "key", "--data", srv.data], capture_output=True)
    t.eq(kp.stdout.decode().strip(), vkey, "`sluice key` prints the verifier key the server serves")

# ------------------------------------------------------------------ errors name the field
with t.section("bad input", srv):
    P = "/v1/strands/pf/"
    cases = [
        (P + "proof/inclusion?seq=3&tree_size=0", 400, "tree_size"),
        (P + "proof/inclusion?seq=3&tree_size=301", 400, "tree_size"),
        (P + "proof/inclusion?seq=10&tree_size=5", 400, "tree_size"),
        (P + "proof/inclusion?seq=300", 404, "seq"),
        (P + "proof/inclusion?record_hash=" + "ab" * 32, 404, "record_hash"),
        (P + "proof/inclusion?record_hash=xyz", 400, "record_hash"),
        (P + "proof/inclusion?seq=1&record_hash=" + leaves["1"], 400, "record_hash"),
        (P + "proof/inclusion?seq=-1", 400, "seq"),
        (P + "proof/consistency?from=0&to=5", 400, "from"),
        (P + "proof/consistency?from=6&to=5", 400, "from"),
        (P + "proof/consistency?from=5&to=301", 400, "to"),
        (P + "proof/consistency?to=5", 400, "from"),
        (P + "tile/0/001", 404, "tile"),
        (P + "tile/0/1", 400, "tile"),
        (P + "tile/0/000.p/0", 400, "tile"),
        (P + "tile/0/000.p/300", 400, "tile"),
        ("/v1/strands/nope/checkpoint", 404, "nope"),
        ("/v1/records/%s?proof=2" % leaves["1"], 400, "proof"),
    ]
    wrong = []
    for path, status, field in cases:
        r = srv.req("GET", path)
        j = r.json or {}
        if r.status != status or field not in j.get("error", "") or not j.get("code"):
            wrong.append((path, r))
    t.ok(not wrong, "%d bad requests answered 4xx JSON {error, code} naming the field" % len(cases), wrong)
    r = srv.req("POST", P + "checkpoint")
    t.eq(r.status, 405, "POST on a proof route is 405")
    t.ok(st.healthy(srv.port), "the server keeps serving")
    r = srv.req("GET", P + "tile/0/000.p/7")
    t.ok(r.status == 200 and r.body == b"".join(bytes.fromhex(leaves[str(i)]) for i in range(7)),
         "a level-0 partial tile holds the record hashes")

# ------------------------------------------------------------------ record ?proof=1, prove CLI
with t.section("record proof, prove and verify-proof", srv):
    h = leaves["123"]
    r = srv.req("GET", "/v1/records/%s?proof=1" % h)
    j = r.json
    t.ok(r.status == 200 and j["proof"]["leaf_index"] == 123 and j["proof"]["tree_size"] == 300
         and cp_size(j["checkpoint"]) == 300, "GET /v1/records/{hash}?proof=1 adds the proof against the latest checkpoint", r)
    p = subprocess.run([st.SLUICE_BIN, "prove", "--url", srv.url, "--strand", "pf", h], capture_output=True)
    t.eq(p.returncode, 0, "sluice prove exits 0")
    bundle = p.stdout
    bdir = st.tmpdir()
    bpath = os.path.join(bdir, "bundle.json")
    with open(bpath, "wb") as f:
        f.write(bundle)
    v = subprocess.run([st.SLUICE_BIN, "verify-proof", bpath, "--key", vkey], capture_output=True)
    t.ok(v.returncode == 0 and v.stdout.startswith(b"ok pf seq 123"), "sluice verify-proof accepts the bundle offline", v)

    def tampered(fn, want, what):
        b = json.loads(bundle)
        fn(b)
        path = os.path.join(bdir, "t.json")
        with open(path, "w") as f:
            json.dump(b, f)
        v = subprocess.run([st.SLUICE_BIN, "verify-proof", path, "--key", vkey], capture_output=True)
        out = v.stdout.decode()
        t.ok(v.returncode == 1 and out.startswith("FAIL " + want), "verify-proof fails on %s, naming %r" % (what, want), out)

    def flip_payload(b):
        raw = bytearray(base64.b64decode(b["payload_msgpack_b64"]))
        raw[-1] ^= 1
        b["payload_msgpack_b64"] = base64.b64encode(bytes(raw)).decode()

    def flip_proof(b):
        b["proof"]["hashes"][2] = ("%064x" % (int(b["proof"]["hashes"][2], 16) ^ 1))

    def other_root(b):
        lines = b["checkpoint"].split("\n")
        lines[2] = base64.b64encode(hashlib.sha256(b"x").digest()).decode()
        b["checkpoint"] = "\n".join(lines)

    tampered(flip_payload, "record:", "a changed payload")
    tampered(lambda b: b.update(seq=124), "record:", "a changed seq")
    tampered(flip_proof, "proof:", "a flipped proof hash")
    tampered(other_root, "checkpoint:", "a checkpoint with another root (signature broken)")
    other = subprocess.run([st.SLUICE_BIN, "key", "--data", st.tmpdir()], capture_output=True).stdout.decode().strip()
    v = subprocess.run([st.SLUICE_BIN, "verify-proof", bpath, "--key", other], capture_output=True)
    t.ok(v.returncode == 1 and b"checkpoint:" in v.stdout, "verify-proof with another server's key fails", v)

# ------------------------------------------------------------------ random sizes up to 1M
with t.section("random sizes up to %d" % BIG, srv):
    c = srv.client(timeout=300)
    leaves2, notes2, n = {}, [], 0
    stops = sorted(rng.sample(range(2, BIG), 7)) + [BIG]
    t0 = time.monotonic()
    for stop in stops:
        while n < stop:
            k = min(stop - n, 200000)
            body = "\n".join('{"payload":%d}' % (n + i) for i in range(k)).encode()
            r = c.request("POST", "/v1/records/batch?strand=big", body, ctype="application/x-ndjson")
            assert r.status == 201, r
            hs = r.json["record_hashes"]
            for idx in rng.sample(range(k), min(k, 60)) + [0, k - 1]:
                leaves2[str(n + idx)] = hs[idx]
            n += k
        notes2.append(c.request("GET", "/v1/strands/big/checkpoint").body.decode())
    c.close()
    t.note("ingested %d records in %.1fs" % (n, time.monotonic() - t0))
    t.eq([cp_size(x) for x in notes2], stops, "a checkpoint at each random size")
    if binary:
        run_tlogcheck(binary, "random sizes to %d" % BIG, url=srv.url, strand="big", vkey=vkey, skey_file="",
                      checkpoints=notes2, leaves=leaves2, all=False, samples=150, seed=7)
    t.ok(all(py_verify(x, vkey) for x in notes2), "python3-cryptography verifies those checkpoints too")

# ------------------------------------------------------------------ restart keeps the tree
with t.section("restart", srv):
    before = checkpoint(srv, "big")
    t.eq(srv.stop(), 0, "clean stop")
    srv.start()
    after = checkpoint(srv, "big")
    t.eq(after.split("\n")[:3], before.split("\n")[:3], "after a restart the tree has the same size and root")
    r = srv.req("GET", "/v1/strands/big/proof/consistency?from=%d&to=%d" % (cp_size(notes2[0]), BIG))
    t.eq(r.status, 200, "proofs are served after the restart")

# ------------------------------------------------------------------ checkpoints delivered elsewhere
with t.section("checkpoint_strand + a webhook connector", srv):
    sys.path.insert(0, os.path.join(st.ROOT, "tests", "peers"))
    from webhook_receiver import Receiver  # noqa: E402

    rx = Receiver().start()
    s2 = st.Server(args=["--checkpoint-strand", "ckpts", "--checkpoint-interval-ms", "100"])
    s2.start()
    r = s2.req("POST", "/v1/connectors", {"name": "ckpt-hook", "kind": "webhook", "strands": ["ckpts"],
                                          "config": {"url": rx.url("/hook")}})
    t.eq(r.status, 201, "a webhook connector on the checkpoint strand")
    vk2 = s2.req("GET", "/v1/checkpoint-key").body.decode().strip()
    for i in range(40):
        assert s2.req("POST", "/v1/records", {"strand": "w", "payload": {"i": i}}).status == 201

    def delivered(size):
        for q in rx.received():
            p = ((q.get("json") or {}).get("payload")) or {}
            if p.get("strand") == "w" and p.get("tree_size") == size:
                return p
        return None

    got = st.wait_until(lambda: delivered(40), 10)
    t.ok(got is not None, "the background checkpointer's checkpoint of strand w at size 40 reaches the webhook",
         [q.get("json") for q in rx.received()][-3:])
    if got:
        origin, size, root = merklepy.open_checkpoint(got["checkpoint"], vk2)
        r = s2.req("GET", "/v1/strands/w/proof/consistency?from=40&to=40")
        t.ok(size == 40 and origin.endswith("/sluice/w") and r.status == 200,
             "the delivered checkpoint verifies with the server's key (%s, size %d)" % (origin, size))
    own = [q for q in rx.received() if ((q.get("json") or {}).get("payload") or {}).get("strand") == "ckpts"]
    t.ok(not own, "the checkpoint strand's own checkpoints are not appended to it (no feedback loop)")
    s2.stop()
    rx.stop()

t.done()
