#!/usr/bin/python3
"""Crash test of verifiable strands (issue 13): writers append batches while a reader keeps
fetching signed checkpoints; the server is killed with SIGKILL at a random moment and restarted.
After each restart:
  - every checkpoint ever served (all cycles) is consistent with the new head: its signature
    verifies and the server's consistency proof to the new head verifies against both signed
    roots (checked in Python from RFC 9162, tests/integration/merklepy.py);
  - no checkpoint ever covered more records than the strand has after the crash (a checkpoint
    is only signed for durable sizes);
  - a sample of acknowledged records has inclusion proofs against the new head;
  - the tree was rebuilt only for the unsaved tail (the log says how many records), not the
    whole strand.
At the end `sluice verify --checkpoint FIRST` accepts the strand. SLUICE_PROOF_CRASH_CYCLES
(default 5) sets the number of cycles."""
import os
import random
import re
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "integration"))
sys.dont_write_bytecode = True  # keep the source tree clean of __pycache__
import merklepy  # noqa: E402
import sluicetest as st  # noqa: E402

CYCLES = int(os.environ.get("SLUICE_PROOF_CRASH_CYCLES", "5"))
SEED = int(os.environ.get("SLUICE_CRASH_SEED", str(int(time.time() * 1000) % 1000000)))
STRAND = "pc"
t = st.Checks()
st.require_binary(t)
t.note("seed %d, %d cycles" % (SEED, CYCLES))
rng = random.Random(SEED)
srv = st.Server(args=["--segment-bytes", "262144", "--checkpoint-interval-ms", "0"])

acked = {}  # seq -> record_hash
served = {}  # size -> checkpoint text (every one ever served)
vkey = None


class Writer(threading.Thread):
    def __init__(self, port, seed):
        super().__init__(daemon=True)
        self.port, self.rng, self.acks, self.stop = port, random.Random(seed), [], False

    def run(self):
        c = st.Client(self.port, timeout=20)
        try:
            while not self.stop:
                k = self.rng.randint(1, 40)
                body = "\n".join('{"payload":{"r":%d,"s":"%s"}}' % (self.rng.random() * 1e9, "x" * self.rng.randint(0, 200))
                                 for _ in range(k))
                r = c.request("POST", "/v1/records/batch?strand=" + STRAND, body, ctype="application/x-ndjson")
                if r.status == 201:
                    j = r.json
                    self.acks.extend(zip(range(j["first_seq"], j["last_seq"] + 1), j["record_hashes"]))
        except Exception:
            pass  # the server was killed


class Reader(threading.Thread):
    def __init__(self, port):
        super().__init__(daemon=True)
        self.port, self.notes, self.stop = port, [], False

    def run(self):
        c = st.Client(self.port, timeout=20)
        try:
            while not self.stop:
                r = c.request("GET", "/v1/strands/%s/checkpoint" % STRAND)
                if r.status == 200:
                    self.notes.append(r.body.decode())
        except Exception:
            pass


first_note = None
for cycle in range(CYCLES):
    with t.section("cycle %d" % cycle, srv):
        if srv.alive():
            srv.kill()  # a failed section left it running
        mark = srv.log_mark()
        srv.start()
        if vkey is None:
            vkey = srv.req("GET", "/v1/checkpoint-key").body.decode().strip()
            r = srv.req("POST", "/v1/records", {"strand": STRAND, "payload": "first"})
            acked[r.json["seq"]] = r.json["record_hash"]
        replay = re.findall(r"strand %s: tree rebuilt for the last (\d+) records" % STRAND, srv.log_since(mark))
        # ---- the checks of the previous crash, against the new head
        head = srv.req("GET", "/v1/strands/%s/checkpoint" % STRAND).body.decode()
        _, hsize, hroot = merklepy.open_checkpoint(head, vkey)
        probs = []
        if acked and max(acked) >= hsize:
            probs.append("acknowledged seq %d is beyond the head %d" % (max(acked), hsize))
        c = srv.client()
        for size, text in sorted(served.items()):
            try:
                _, m, mroot = merklepy.open_checkpoint(text, vkey)
            except Exception as e:  # noqa: BLE001
                probs.append("checkpoint %d: %r" % (size, e))
                continue
            if m > hsize:
                probs.append("checkpoint of size %d was served but the strand has %d after the crash" % (m, hsize))
                continue
            r = c.request("GET", "/v1/strands/%s/proof/consistency?from=%d&to=%d" % (STRAND, m, hsize))
            if r.status != 200 or not merklepy.verify_consistency(m, hsize, mroot, hroot, merklepy.hashes(r.json)):
                probs.append("checkpoint %d is not consistent with the head %d: %r" % (m, hsize, r))
        sample = rng.sample(sorted(acked), min(50, len(acked)))
        for seq in sample:
            r = c.request("GET", "/v1/strands/%s/proof/inclusion?seq=%d&tree_size=%d" % (STRAND, seq, hsize))
            if r.status != 200 or not merklepy.verify_inclusion(bytes.fromhex(acked[seq]), seq, hsize, merklepy.hashes(r.json), hroot):
                probs.append("acknowledged seq %d has no valid inclusion proof: %r" % (seq, r))
        c.close()
        if cycle > 0:
            t.ok(not probs, "after kill -9 #%d: all %d checkpoints served so far are consistent with the head (%d records); %d acknowledged records proven"
                 % (cycle, len(served), hsize, len(sample)), probs[:5])
            bases = [int(f[:-4]) for f in os.listdir(os.path.join(srv.data, "strands", STRAND)) if f.endswith(".seg")]
            rebuilt = int(replay[-1]) if replay else 0  # no line: nothing needed rebuilding
            t.ok(rebuilt <= hsize - max(bases),
                 "restart #%d rebuilt the tree only for the unsealed segment (%d of %d records; it holds %d)"
                 % (cycle, rebuilt, hsize, hsize - max(bases)))
        # ---- load, then a crash at a random moment
        writers = [Writer(srv.port, rng.random()) for _ in range(3)]
        reader = Reader(srv.port)
        for w in writers + [reader]:
            w.start()
        time.sleep(rng.uniform(0.3, 1.0))  # the kill lands at a random point of the load
        srv.kill()
        for w in writers + [reader]:
            w.stop = True
            w.join(10)
        for w in writers:
            acked.update(w.acks)
        for n in reader.notes:
            served[int(n.split("\n")[1])] = n
            if first_note is None:
                first_note = n
        t.note("cycle %d: %d records acknowledged in all, %d checkpoint sizes served" % (cycle, len(acked), len(served)))

with t.section("final", srv):
    if srv.alive():
        srv.kill()
    srv.start()
    head = srv.req("GET", "/v1/strands/%s/checkpoint" % STRAND).body.decode()
    _, hsize, hroot = merklepy.open_checkpoint(head, vkey)
    bad = []
    for size, text in sorted(served.items()):
        _, m, mroot = merklepy.open_checkpoint(text, vkey)
        r = srv.req("GET", "/v1/strands/%s/proof/consistency?from=%d&to=%d" % (STRAND, m, hsize))
        if r.status != 200 or not merklepy.verify_consistency(m, hsize, mroot, hroot, merklepy.hashes(r.json)):
            bad.append(m)
    t.ok(not bad and served, "after the last crash all %d checkpoints ever served are consistent with the head" % len(served), bad[:5])
    t.eq(srv.stop(), 0, "clean stop")
    if first_note:
        path = os.path.join(st.tmpdir(), "first.checkpoint")
        with open(path, "w") as f:
            f.write(first_note)
        code, out, err = st.run_verify(srv.data, STRAND)
        p = subprocess.run([st.SLUICE_BIN, "verify", "--data", srv.data, "--checkpoint", path, "--key", vkey],
                                         capture_output=True)
        t.ok(code == 0 and p.returncode == 0 and b"consistent with checkpoint" in p.stdout,
             "sluice verify --checkpoint FIRST accepts the strand", (out, p.stdout, p.stderr))

t.done()
