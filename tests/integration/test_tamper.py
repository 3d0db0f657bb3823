#!/usr/bin/python3
"""Tampering with a verifiable strand (issue 13) is caught, and the failure names what broke:
  - a payload byte changed in a sealed segment (CRC fixed up, as a forger would): `sluice verify`
    fails naming the seq and "hash", the consistency check against an older checkpoint fails,
    and a proof bundle for that record fails `sluice verify-proof` naming the record;
  - a record cut out of the middle of a segment: `sluice verify` fails naming the seq ("link");
  - a hash in the stored tree files changed: `sluice verify` names the node, and a proof that uses
    it fails against the old checkpoint;
  - the strand truncated and regrown with other records: `sluice verify --checkpoint OLD` says
    the history was rewritten, the server's consistency proof from the old size does not verify
    against the old signed root (checked in Python from RFC 9162), and the old record is gone.
Each scenario works on a copy of the same data directory."""
import os
import shutil
import struct
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.dont_write_bytecode = True  # keep the source tree clean of __pycache__
import merklepy  # noqa: E402
import sluicetest as st  # noqa: E402

t = st.Checks()
st.require_binary(t)
SEG = 65536
N = 1200


def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def frames(path):
    """[(offset, length, seq)] of the frames of a segment file (docs/strand-format.md)."""
    with open(path, "rb") as f:
        data = f.read()
    out, off = [], 64
    while off + 4 <= len(data):
        (flen,) = struct.unpack_from("<I", data, off)
        if flen == 0:
            break
        out.append((off, flen, struct.unpack_from("<Q", data, off + 8)[0]))
        off += flen
    return out


def segments(data, strand):
    d = os.path.join(data, "strands", strand)
    return sorted(os.path.join(d, f) for f in os.listdir(d) if f.endswith(".seg"))


def verify(data, *extra):
    p = subprocess.run([st.SLUICE_BIN, "verify", "--data", data, "--strand", "tm"] + list(extra),
                       capture_output=True, timeout=120)
    return p.returncode, p.stdout.decode() + p.stderr.decode()


def copy(src):
    d = os.path.join(st.tmpdir(), "data")
    shutil.copytree(src, d)
    os.unlink(os.path.join(d, "LOCK"))
    return d


srv = st.Server(args=["--segment-bytes", str(SEG), "--checkpoint-interval-ms", "0"])
srv.start()
c = srv.client()
hashes = []
for i in range(N):
    r = c.request("POST", "/v1/records", {"strand": "tm", "agent_id": "t", "payload": {"i": i, "pad": "p" * 50}})
    hashes.append(r.json["record_hash"])
c.close()
vkey = srv.req("GET", "/v1/checkpoint-key").body.decode().strip()
old = srv.req("GET", "/v1/strands/tm/checkpoint").body.decode()
wd = st.tmpdir()
old_path = os.path.join(wd, "old.checkpoint")
with open(old_path, "w") as f:
    f.write(old)
_, old_size, old_root = merklepy.open_checkpoint(old, vkey)
t.eq(old_size, N, "the saved checkpoint covers all %d records" % N)
t.eq(srv.stop(), 0, "clean stop")
segs = segments(srv.data, "tm")
t.ok(len(segs) >= 3, "the strand spans %d segments" % len(segs))
rc, out = verify(srv.data, "--checkpoint", old_path, "--key", vkey)
t.ok(rc == 0 and "consistent with checkpoint %d" % N in out, "the intact strand verifies against the checkpoint", out)

with t.section("a stored tree node changed"):
    d = copy(srv.data)
    with open(os.path.join(d, "strands", "tm", "tree", "nodes-4"), "r+b") as f:
        f.seek(32 * 3)
        b = f.read(1)
        f.seek(32 * 3)
        f.write(bytes([b[0] ^ 0x40]))
    rc, out = verify(d)
    t.ok(rc == 1 and "FAIL tm tree: nodes-4 holds a hash for records 48..63" in out,
         "sluice verify compares the stored tree with the records and names the bad node", out)
    s1 = st.Server(data=d, args=["--segment-bytes", str(SEG), "--checkpoint-interval-ms", "0"])
    s1.start()
    r = s1.req("GET", "/v1/strands/tm/proof/inclusion?seq=32&tree_size=%d" % old_size)
    t.ok(r.status == 200 and not merklepy.verify_inclusion(bytes.fromhex(hashes[32]), 32, old_size, merklepy.hashes(r.json), old_root),
         "a server serving the damaged tree gives a proof of seq 32 that fails against the old checkpoint", r)
    r = s1.req("GET", "/v1/strands/tm/proof/inclusion?seq=900&tree_size=%d" % old_size)
    t.ok(r.status == 200 and merklepy.verify_inclusion(bytes.fromhex(hashes[900]), 900, old_size, merklepy.hashes(r.json), old_root),
         "(proofs that do not use the damaged node still verify)", r)
    s1.stop()

with t.section("a payload byte changed, CRC fixed up"):
    d = copy(srv.data)
    seg = segments(d, "tm")[1]
    off, flen, seq = frames(seg)[5]
    with open(seg, "r+b") as f:
        f.seek(off)
        fr = bytearray(f.read(flen))
        fr[flen - 64 - 3] ^= 0x01  # inside the payload, before prev_hash and record_hash
        struct.pack_into("<I", fr, 4, crc32c(bytes(fr[8:])))
        f.seek(off)
        f.write(fr)
    for f in os.listdir(os.path.dirname(seg)):  # the index is derived data: let it be rebuilt
        if f.endswith(".idx"):
            os.unlink(os.path.join(os.path.dirname(seg), f))
    rc, out = verify(d)
    t.ok(rc == 1 and ("FAIL tm seq %d: hash:" % seq) in out, "sluice verify fails naming seq %d and 'hash'" % seq, out)
    rc, out = verify(d, "--checkpoint", old_path, "--key", vkey)
    t.ok(rc == 1 and "FAIL tm" in out, "the check against the old checkpoint fails too", out)
    s2 = st.Server(data=d, args=["--segment-bytes", str(SEG), "--checkpoint-interval-ms", "0"])
    s2.start()
    p = subprocess.run([st.SLUICE_BIN, "prove", "--url", s2.url, "--strand", "tm", hashes[seq]], capture_output=True)
    bpath = os.path.join(wd, "b.json")
    with open(bpath, "wb") as f:
        f.write(p.stdout)
    v = subprocess.run([st.SLUICE_BIN, "verify-proof", bpath, "--key", vkey], capture_output=True)
    t.ok(p.returncode == 0 and v.returncode == 1 and v.stdout.startswith(b"FAIL record:"),
         "a proof bundle of the changed record fails verify-proof naming the record", (p, v))
    s2.stop()

with t.section("a record cut out of a segment"):
    d = copy(srv.data)
    seg = segments(d, "tm")[-1]
    off, flen, seq = frames(seg)[3]
    with open(seg, "r+b") as f:
        data = bytearray(f.read())
        data[off:] = data[off + flen:] + bytes(flen)
        f.seek(0)
        f.write(data)
    rc, out = verify(d)
    t.ok(rc == 1 and ("FAIL tm seq %d: link:" % seq) in out, "sluice verify fails naming seq %d and 'link'" % seq, out)
    rc, out = verify(d, "--checkpoint", old_path, "--key", vkey)
    t.ok(rc == 1 and "FAIL tm" in out, "the check against the old checkpoint fails too", out)

with t.section("truncated and regrown with other records"):
    d = copy(srv.data)
    for s in segments(d, "tm")[1:]:
        os.unlink(s)
        if os.path.exists(s[:-4] + ".idx"):
            os.unlink(s[:-4] + ".idx")
    rc, out = verify(d, "--checkpoint", old_path, "--key", vkey)
    t.ok(rc == 1 and "records were removed" in out, "a shorter strand fails: 'records were removed'", out)
    s3 = st.Server(data=d, args=["--segment-bytes", str(SEG), "--checkpoint-interval-ms", "0"])
    s3.start()
    c = s3.client()
    count = s3.req("GET", "/v1/strands").json
    have = [x["count"] for x in count["strands"] if x["name"] == "tm"][0]
    for i in range(N + 50 - have):
        c.request("POST", "/v1/records", {"strand": "tm", "agent_id": "forger", "payload": {"other": i}})
    c.close()
    new = s3.req("GET", "/v1/strands/tm/checkpoint").body.decode()
    _, new_size, new_root = merklepy.open_checkpoint(new, vkey)
    r = s3.req("GET", "/v1/strands/tm/proof/consistency?from=%d&to=%d" % (old_size, new_size))
    t.ok(r.status == 200 and not merklepy.verify_consistency(old_size, new_size, old_root, new_root, merklepy.hashes(r.json)),
         "the consistency proof from the old checkpoint to the regrown tree does not verify", r)
    r = s3.req("GET", "/v1/strands/tm/proof/inclusion?record_hash=%s" % hashes[-1])
    t.eq(r.status, 404, "the last record of the old history is gone (404 naming record_hash)")
    t.ok(s3.stop() == 0, "clean stop")
    rc, out = verify(d, "--checkpoint", old_path, "--key", vkey)
    t.ok(rc == 1 and "history was rewritten" in out, "sluice verify --checkpoint OLD says the history was rewritten", out)
    rc, out = verify(d)
    t.ok(rc == 0, "(the regrown strand is a valid chain on its own: only the checkpoint exposes it)", out)

t.done()
