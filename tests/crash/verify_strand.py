#!/usr/bin/python3
"""Verify a Sluice strand's hash chain from the outside, through the HTTP API only.

This is the "anyone can verify a strand with hashlib and a MessagePack decoder" promise
(issue 2, "Hashing, exactly"), written independently of the server: it knows nothing about
the on-disk format. It pages through GET /v1/strands/{name}/records?raw=1, and for every record

    canonical   = "SLCR1" || u64be(seq) || u64be(timestamp_ms) || u32be(flags)
                  || u16be(len(strand)) || strand || u16be(len(source)) || source
                  || prev_hash[32] || u32be(len(payload)) || payload
    record_hash = SHA-256(0x00 || canonical)

checks record_hash, the prev_hash link (seq 0 links to 32 zero bytes), that seqs are dense from 0,
that timestamps never go backwards, and that the hashed payload bytes decode (python msgpack) to
exactly the JSON payload the API shows: same key order, ints stay ints, floats stay floats,
strings stay strings.

Usage as a program (prints one line per strand, like `sluice verify`):
    verify_strand.py --url http://127.0.0.1:7475 [--strand NAME ...]
Exit status 0 when every strand verifies, 1 otherwise.

Usage as a module: verify_strand.verify(base_url, strand) -> Result.
Standard library plus python3-msgpack only.
"""
import argparse
import base64
import hashlib
import http.client
import json
import math
import struct
import sys
import urllib.parse

import msgpack

ZERO_HASH = "0" * 64
PAGE = 10000


def canonical(seq, timestamp_ms, flags, strand, source, prev_hash_hex, payload):
    """The canonical byte string of one record (issue 2). Text arguments are str (UTF-8 encoded
    here) or bytes; prev_hash_hex is 64 lowercase hex chars; payload is the MessagePack bytes."""
    s = strand.encode("utf-8") if isinstance(strand, str) else bytes(strand)
    src = source.encode("utf-8") if isinstance(source, str) else bytes(source)
    prev = bytes.fromhex(prev_hash_hex)
    if len(prev) != 32:
        raise ValueError("prev_hash is not 32 bytes")
    return b"".join(
        [
            b"SLCR1",
            struct.pack(">QQI", seq, timestamp_ms, flags),
            struct.pack(">H", len(s)),
            s,
            struct.pack(">H", len(src)),
            src,
            prev,
            struct.pack(">I", len(payload)),
            payload,
        ]
    )


def record_hash(seq, timestamp_ms, flags, strand, source, prev_hash_hex, payload):
    c = canonical(seq, timestamp_ms, flags, strand, source, prev_hash_hex, payload)
    return hashlib.sha256(b"\x00" + c).hexdigest()


def same_value(a, b):
    """Strict equality of decoded JSON/MessagePack values: types must match exactly (bool is not
    int, int is not float, str is not bytes), object key order must match, floats compare by value
    and sign. Returns None when equal, else a short description of the first difference."""
    return _diff(a, b, "$")


def _diff(a, b, path):
    if type(a) is not type(b):
        return "%s: type %s vs %s (%r vs %r)" % (
            path,
            type(a).__name__,
            type(b).__name__,
            _short(a),
            _short(b),
        )
    if isinstance(a, dict):
        ka, kb = list(a.keys()), list(b.keys())
        if ka != kb:
            return "%s: keys %r vs %r" % (path, ka[:10], kb[:10])
        for k in ka:
            d = _diff(a[k], b[k], "%s.%s" % (path, k))
            if d:
                return d
        return None
    if isinstance(a, list):
        if len(a) != len(b):
            return "%s: length %d vs %d" % (path, len(a), len(b))
        for i, (x, y) in enumerate(zip(a, b)):
            d = _diff(x, y, "%s[%d]" % (path, i))
            if d:
                return d
        return None
    if isinstance(a, float):
        if a != b or math.copysign(1.0, a) != math.copysign(1.0, b):
            return "%s: %r vs %r" % (path, a, b)
        return None
    if a != b:
        return "%s: %r vs %r" % (path, _short(a), _short(b))
    return None


def _short(v):
    r = repr(v)
    return r if len(r) < 80 else r[:77] + "..."


def unpack_payload(raw):
    """Decode payload bytes the way any MessagePack user would; raises on trailing bytes."""
    return msgpack.unpackb(raw, raw=False, strict_map_key=False, use_list=True)


class Result:
    def __init__(self, strand):
        self.strand = strand
        self.ok = True
        self.count = 0
        self.head = ZERO_HASH
        self.error = None
        self.records = []  # filled when keep=True: dicts from the API plus "payload_bytes"

    def fail(self, msg):
        if self.ok:
            self.ok = False
            self.error = msg
        return self

    def line(self):
        if self.ok:
            return "ok %s %d %s" % (self.strand, self.count, self.head)
        return "not ok %s: %s" % (self.strand, self.error)


def _get_json(conn, path):
    conn.request("GET", path, headers={"Accept": "application/json"})
    r = conn.getresponse()
    body = r.read()
    if r.status != 200:
        raise RuntimeError("GET %s -> %d %s" % (path, r.status, body[:200]))
    return json.loads(body)


def _connect(base_url):
    u = urllib.parse.urlsplit(base_url)
    return http.client.HTTPConnection(u.hostname, u.port or 80, timeout=60)


def verify(base_url, strand, keep=False, upto=None):
    """Verify one strand through the API at base_url. With keep=True the records (with their
    decoded payload bytes) are kept in result.records. upto: stop after this many records."""
    res = Result(strand)
    conn = _connect(base_url)
    try:
        return _verify(conn, strand, keep, upto, res)
    except Exception as e:  # network or protocol trouble is a failure, not a crash
        return res.fail("%s: %s" % (type(e).__name__, e))
    finally:
        conn.close()


def _verify(conn, strand, keep, upto, res):
    qname = urllib.parse.quote(strand, safe="")
    prev = ZERO_HASH
    last_ts = None
    seq = 0
    while upto is None or seq < upto:
        limit = PAGE if upto is None else min(PAGE, upto - seq)
        page = _get_json(
            conn, "/v1/strands/%s/records?from_seq=%d&limit=%d&raw=1" % (qname, seq, limit)
        )
        recs = page.get("records")
        if not isinstance(recs, list):
            return res.fail("page at seq %d has no records list" % seq)
        if not recs:
            if page.get("next_seq") != seq:
                return res.fail("empty page at seq %d says next_seq %r" % (seq, page.get("next_seq")))
            break
        for r in recs:
            why = _check_one(r, strand, seq, prev, last_ts)
            if why:
                return res.fail("seq %d: %s" % (seq, why))
            if keep:
                r["payload_bytes"] = base64.b64decode(r["payload_msgpack_b64"])
                res.records.append(r)
            prev = r["record_hash"]
            last_ts = r["timestamp_ms"]
            seq += 1
        if page.get("next_seq") != seq:
            return res.fail("page ending at seq %d says next_seq %r" % (seq - 1, page.get("next_seq")))
    res.count = seq
    res.head = prev
    return res


def _check_one(r, strand, seq, prev, last_ts):
    need = (
        "record_hash",
        "strand",
        "seq",
        "timestamp_ms",
        "flags",
        "source",
        "prev_hash",
        "payload",
        "payload_msgpack_b64",
    )
    for k in need:
        if k not in r:
            return "field %s missing" % k
    if r["seq"] != seq:
        return "seq field is %r (not dense)" % r["seq"]
    if r["strand"] != strand:
        return "strand field is %r" % r["strand"]
    for k in ("timestamp_ms", "flags"):
        if type(r[k]) is not int or r[k] < 0:
            return "%s is %r" % (k, r[k])
    if r["flags"] > 0xFFFFFFFF:
        return "flags %d does not fit u32" % r["flags"]
    if not isinstance(r["source"], str):
        return "source is %r" % (r["source"],)
    for k in ("record_hash", "prev_hash"):
        h = r[k]
        if not (isinstance(h, str) and len(h) == 64 and all(c in "0123456789abcdef" for c in h)):
            return "%s %r is not 64 lowercase hex chars" % (k, h)
    if r["prev_hash"] != prev:
        return "link: prev_hash %s, previous record_hash %s" % (r["prev_hash"], prev)
    if last_ts is not None and r["timestamp_ms"] < last_ts:
        return "timestamp_ms %d goes back from %d" % (r["timestamp_ms"], last_ts)
    try:
        raw = base64.b64decode(r["payload_msgpack_b64"], validate=True)
    except Exception as e:
        return "payload_msgpack_b64 is not base64: %s" % e
    try:
        decoded = unpack_payload(raw)
    except Exception as e:
        return "payload bytes do not decode as one MessagePack value: %s" % e
    d = same_value(decoded, r["payload"])
    if d:
        return "MessagePack payload differs from JSON payload: %s" % d
    h = record_hash(
        r["seq"], r["timestamp_ms"], r["flags"], strand, r["source"], r["prev_hash"], raw
    )
    if h != r["record_hash"]:
        return "hash: computed %s, server says %s" % (h, r["record_hash"])
    return None


def list_strands(base_url):
    conn = _connect(base_url)
    try:
        return _get_json(conn, "/v1/strands")["strands"]
    finally:
        conn.close()


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--url", default="http://127.0.0.1:7475")
    ap.add_argument("--strand", action="append", default=[])
    a = ap.parse_args(argv)
    strands = a.strand
    listed = {}
    try:
        listed = {s["name"]: s for s in list_strands(a.url)}
    except Exception as e:
        print("not ok - cannot list strands: %s" % e)
        return 1
    if not strands:
        strands = sorted(listed)
    bad = 0
    for s in strands:
        res = verify(a.url, s)
        if res.ok and s in listed:
            info = listed[s]
            if info.get("count") != res.count:
                res.fail("GET /v1/strands says count %r, chain has %d" % (info.get("count"), res.count))
            elif res.count and info.get("head_hash") != res.head:
                res.fail("GET /v1/strands says head %r, chain ends %s" % (info.get("head_hash"), res.head))
        print(res.line())
        bad += not res.ok
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
