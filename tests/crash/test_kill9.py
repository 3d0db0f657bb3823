#!/usr/bin/python3
"""Crash test (issue 2, "Recovery" and "Tests"): concurrent writers, kill -9 at a random moment,
restart on the same data dir, and every acknowledged record is there. Odd cycles run two HTTP
event loops, so two loops group-commit the same strands; in cycles 3-4, 7-8, ... no segment gets
a zero-filled spare (`--spare-max-rate 1`, as at batch-load rates: the next segment is only
preallocated), so kills also land around rolls into such segments; in cycles 1, 4, 7, ... the
strands keep only their newest 64 KiB in the page cache (`--cache-window 64K`): older pages are
dropped while the writers run, and the check after the restart reads them from the disk.

Each cycle: start `sluice serve` on the data dir, run 8 writer threads (single writes and small
JSON-array / NDJSON batches into two strands, some tombstones; about one batch in 40 of over
1,024 records, which the strand's sync helper hashes and answers) that remember every acknowledged
(201) record; SIGKILL the server 0.2-1.0 s in; restart; then check that
  - every record acknowledged in the cycle is readable at its seq with its hash, payload, source,
    flags (by paging) and a sample also by hash;
  - the head of every earlier cycle is still at its seq with its hash (with the chain verifying,
    that pins every earlier record);
  - every record past the previous head is one the writers really sent, and none twice;
  - a new write continues the chain (seq = count, prev_hash = head);
  - after SIGTERM, `sluice verify` exits 0 with the same count and head.
One "ok" line per cycle; at the end one full check of all acknowledged records and an independent
chain verification (verify_strand.py). SLUICE_CRASH_CYCLES (default 20) sets the number of
cycles, SLUICE_CRASH_SEED the random seed. bench/crash.sh N runs N cycles.
"""
import json
import os
import random
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "integration"))
sys.dont_write_bytecode = True  # keep the source tree clean of __pycache__
import sluicetest as st  # noqa: E402

CYCLES = int(os.environ.get("SLUICE_CRASH_CYCLES", "20"))
SEED = int(os.environ.get("SLUICE_CRASH_SEED", str(int(time.time() * 1000) % 1000000)))
WRITERS = 8
STRANDS = ("crash-a", "crash-b")
SEG = 262144  # small segments, so kills also land around segment rolls

t = st.Checks()
st.require_binary(t)
t.note("seed %d (SLUICE_CRASH_SEED=%d reproduces the choices, not the timing), %d cycles" % (SEED, SEED, CYCLES))
rng = random.Random(SEED)
srv = st.Server(args=["--segment-bytes", str(SEG)])

acked = {s: {} for s in STRANDS}  # strand -> seq -> (hash, payload, source, flags)
sent_ids = set()  # ids of every payload ever sent (acknowledged or not)
seen_ids = set()  # ids found in the strands so far
anchors = {s: [] for s in STRANDS}  # (seq, hash) of each cycle's last record


class Writer(threading.Thread):
    def __init__(self, cycle, wid, port, seed):
        super().__init__(daemon=True)
        self.cycle, self.wid, self.port = cycle, wid, port
        self.rng = random.Random(seed)
        self.acks = []  # (strand, seq, hash, payload, source, flags)
        self.refused = []  # non-201 answers while the server was alive
        self.sent = []
        self.stop = False

    def payload(self, n):
        pid = "c%d-w%d-%d" % (self.cycle, self.wid, n)
        self.sent.append(pid)
        return {"id": pid, "w": self.wid, "n": n, "f": n + 0.25, "s": "x" * self.rng.randint(0, 300), "u": "\u2713"}

    def run(self):
        c = st.Client(self.port, timeout=20)
        n = 0
        try:
            while not self.stop:
                strand = self.rng.choice(STRANDS)
                flags = 2 if self.rng.random() < 0.1 else 0
                src = "w%d" % self.wid
                if self.rng.random() < 0.3:
                    # now and then a batch of over 1,024 records: such a group is hashed into the
                    # tree and answered by the strand's sync helper thread (a path of its own)
                    k = self.rng.randint(1030, 1300) if self.rng.random() < 0.025 else self.rng.randint(2, 12)
                    items = []
                    for _ in range(k):
                        items.append({"payload": self.payload(n), "agent_id": src, "flags": flags})
                        n += 1
                    mode = self.rng.randrange(3)
                    if mode == 0:  # JSON array, strand in the objects
                        for it in items:
                            it["strand"] = strand
                        r = c.request("POST", "/v1/records/batch", items)
                    elif mode == 1:  # JSON array, ?strand=
                        r = c.request("POST", "/v1/records/batch?strand=" + strand, items)
                    else:  # NDJSON, ?strand=
                        body = "".join(json.dumps(it) + "\n" for it in items)
                        r = c.request("POST", "/v1/records/batch?strand=" + strand, body, ctype="application/x-ndjson")
                    if r.status == 201:
                        j = r.json
                        if j.get("count") != k or j.get("last_seq") - j.get("first_seq") != k - 1 or len(j.get("record_hashes", [])) != k:
                            self.refused.append(("bad batch answer", r))
                            continue
                        for i, h in enumerate(j["record_hashes"]):
                            self.acks.append((j.get("strand"), j["first_seq"] + i, h, items[i]["payload"], src, flags))
                        if j.get("strand") != strand:
                            self.refused.append(("batch answered for strand %r, sent to %r" % (j.get("strand"), strand), r))
                    else:
                        self.refused.append(r)
                else:
                    p = self.payload(n)
                    n += 1
                    r = c.request("POST", "/v1/records", {"strand": strand, "agent_id": src, "flags": flags, "payload": p})
                    if r.status == 201:
                        j = r.json
                        self.acks.append((j.get("strand"), j["seq"], j["record_hash"], p, src, flags))
                    else:
                        self.refused.append(r)
        except Exception:
            pass  # the server was killed under us: unacknowledged requests are fine
        finally:
            c.close()


def check_cycle(cycle, writers, base):
    """Checks after the restart; returns a list of problems (empty = fine)."""
    probs = []
    for w in writers:
        for x in w.refused[:3]:
            probs.append("writer %d got a non-201 answer from a live server: %r" % (w.wid, x))
    new = [a for w in writers for a in w.acks]
    listing = st.strands(srv.port)
    for s in STRANDS:
        mine = sorted((a for a in new if a[0] == s), key=lambda a: a[1])
        seqs = [a[1] for a in mine]
        if len(set(seqs)) != len(seqs):
            probs.append("%s: two acknowledgements share a seq" % s)
        if seqs and seqs[0] < base[s]:
            probs.append("%s: acknowledged seq %d below the previous head %d" % (s, seqs[0], base[s]))
        count = listing.get(s, {}).get("count", 0)
        if seqs and count <= seqs[-1]:
            probs.append("%s: count %d after restart, but seq %d was acknowledged" % (s, count, seqs[-1]))
        recs = st.all_records(srv.port, s, from_seq=base[s]) if count > base[s] else []
        if recs and recs[0]["seq"] != base[s]:
            probs.append("%s: paging from %d starts at %d" % (s, base[s], recs[0]["seq"]))
        byseq = {r["seq"]: r for r in recs}
        lost = 0
        for _, seq, h, p, src, flags in mine:
            r = byseq.get(seq)
            if r is None or r["record_hash"] != h or r["source"] != src or r["flags"] != flags or st.same_value(p, r["payload"]):
                lost += 1
                if lost <= 3:
                    probs.append("%s: acknowledged seq %d hash %s not found as sent: %r" % (s, seq, h[:16], r and {k: r[k] for k in ("seq", "record_hash", "source", "flags")}))
            acked[s][seq] = (h, p, src, flags)
        if lost > 3:
            probs.append("%s: %d acknowledged records lost or changed in all" % (s, lost))
        for r in recs:
            pid = r["payload"].get("id") if isinstance(r["payload"], dict) else None
            if pid not in sent_ids:
                probs.append("%s: seq %d holds a payload nobody sent: %r" % (s, r["seq"], st._clip(r["payload"], 120)))
                break
            if pid in seen_ids:
                probs.append("%s: seq %d repeats payload %s" % (s, r["seq"], pid))
                break
            seen_ids.add(pid)
        for seq, h in anchors[s]:
            r = st.req(srv.port, "GET", "/v1/strands/%s/records?from_seq=%d&limit=1" % (s, seq))
            got = r.json["records"][0]["record_hash"] if r.status == 200 and r.json.get("records") else None
            if got != h:
                probs.append("%s: earlier head seq %d was %s, now %s" % (s, seq, h[:16], got and got[:16]))
        sample = rng.sample(mine, min(25, len(mine))) + mine[-1:]
        c = srv.client()
        try:
            for _, seq, h, p, _, _ in sample:
                r = c.request("GET", "/v1/records/" + h)
                if r.status != 200 or r.json.get("seq") != seq or r.json.get("strand") != s:
                    probs.append("%s: GET by hash of acknowledged seq %d -> %r" % (s, seq, r))
                    break
        finally:
            c.close()
        # a new write continues the chain from the last record
        info = st.strands(srv.port).get(s, {})
        p = {"id": "c%d-continue" % cycle, "continue": True}
        sent_ids.add(p["id"])
        r = st.req(srv.port, "POST", "/v1/records", {"strand": s, "payload": p})
        if r.status != 201:
            probs.append("%s: write after restart -> %r" % (s, r))
            continue
        want_prev = info.get("head_hash") if info.get("count") else "0" * 64
        if r.json["seq"] != info.get("count") or r.json["prev_hash"] != want_prev:
            probs.append("%s: write after restart got seq %r prev %s; strand had count %r head %s"
                         % (s, r.json["seq"], r.json["prev_hash"][:16], info.get("count"), str(want_prev)[:16]))
        acked[s][r.json["seq"]] = (r.json["record_hash"], p, "", 0)
        seen_ids.add(p["id"])
        anchors[s].append((r.json["seq"], r.json["record_hash"]))
    return probs, len(new)


t_start = time.monotonic()
dropped = 0  # bytes dropped from the page cache in the windowed cycles, before their kills
for cycle in range(CYCLES):
    with t.section("crash cycle %d" % (cycle + 1), srv):
        c0 = time.monotonic()
        if srv.proc is not None:  # left running by a failed cycle
            srv.kill()
        mark = srv.log_mark()
        # odd cycles with two HTTP event loops: both group-commit the same strands; every other
        # pair of cycles without spares
        windowed = cycle % 3 == 0
        srv.start(["--segment-bytes", str(SEG), "--http-threads", str(1 + cycle % 2)]
                  + (["--spare-max-rate", "1"] if cycle % 4 >= 2 else [])
                  + (["--cache-window", "64K"] if windowed else []))
        # the previous cycle ended with a clean SIGTERM: recovery must find nothing to cut
        clean_cut = st.metric_total(srv.port, "trunc")
        listing = st.strands(srv.port)
        base = {s: listing.get(s, {}).get("count", 0) for s in STRANDS}
        writers = [Writer(cycle, i, srv.port, rng.random()) for i in range(WRITERS)]
        for w in writers:
            w.start()
        delay = rng.uniform(0.2, 1.0)
        time.sleep(delay)  # the random kill moment (part of the test design, not a wait)
        if windowed:  # read before the kill, so it can only count drops that happened
            dropped += st.metric_total(srv.port, "cache_dropped_bytes") or 0
        srv.kill()
        for w in writers:
            w.stop = True
        for w in writers:
            w.join(30)
        for w in writers:
            sent_ids.update(w.sent)
        probs = []
        if clean_cut != 0:
            probs.append("start after a clean SIGTERM: recovery truncations metric is %r, want 0" % clean_cut)
        if any(w.is_alive() for w in writers):
            probs.append("a writer thread hung after the kill")
        srv.start()
        p, nacks = check_cycle(cycle, writers, base)
        probs += p
        heads = {s: (c["count"], c["head_hash"]) for s, c in st.strands(srv.port).items() if s in STRANDS}
        rc = srv.stop()
        if rc != 0:
            probs.append("SIGTERM exit status %r" % rc)
        code, out, err = st.run_verify(srv.data)
        got = st.parse_verify_ok(out)
        if code != 0:
            probs.append("sluice verify exit %d: %s" % (code, (out + err)[-1500:]))
        for s in STRANDS:
            if got.get(s) != heads.get(s):
                probs.append("sluice verify says %r for %s, the API said %r" % (got.get(s), s, heads.get(s)))
        t.ok(not probs, "cycle %d: kill -9 after %.2fs with %d acknowledged records; all there, chain continues, verify ok (%.1fs)"
             % (cycle + 1, delay, nacks, time.monotonic() - c0), "\n".join(probs) + ("\nserver log of this cycle:\n" + srv.log_since(mark) if probs else ""))

t.ok(dropped > 0, "the windowed cycles dropped %d durable bytes from the page cache before their kills"
     % dropped, "--cache-window 64K dropped nothing: the check after each restart did not read dropped pages")

with t.section("final check", srv):
    if srv.proc is not None:
        srv.kill()
    srv.start()
    for s in STRANDS:
        recs = st.all_records(srv.port, s)
        byseq = {r["seq"]: r for r in recs}
        bad = [seq for seq, (h, p, src, flags) in acked[s].items()
               if seq not in byseq or byseq[seq]["record_hash"] != h or st.same_value(p, byseq[seq]["payload"])]
        t.ok(acked[s] and not bad, "%s: all %d records acknowledged over %d cycles are readable at their seq with their payload"
             % (s, len(acked[s]), CYCLES), "bad seqs %r" % bad[:10])
        v = st.verify_strand.verify(srv.url, s)
        t.ok(v.ok and v.count == len(recs), "%s: independent chain verification of %d records" % (s, len(recs)), v.line())
    srv.stop()
t.note("total %.1fs" % (time.monotonic() - t_start))
t.done()
