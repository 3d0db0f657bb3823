"""Helpers shared by the object_storage provider tests (test_azure.py, test_gcs.py): connectors
made through the API, records written in batches, and the records found in what a provider
stored, read back through the test's own client of that store."""
import json
import re

# {prefix}/{strand}/[partition/]{first seq}-{last seq}.{ext}
KEY_RE = re.compile(r"^(.*)/(\d{20})-(\d{20})\.(\w+)$")


class Sink:
    """object_storage connectors of one test on server srv, named {tag}-1, {tag}-2, ..."""

    def __init__(self, srv, tag):
        self.srv, self.tag, self.n = srv, tag, 0

    def create(self, cfg, strands):
        self.n += 1
        r = self.srv.req("POST", "/v1/connectors", {"name": "%s-%d" % (self.tag, self.n), "kind": "object_storage",
                                                     "strands": strands, "config": cfg})
        assert r.status == 201, r
        return r.json["id"]

    def conn(self, cid):
        return self.srv.req("GET", "/v1/connectors/" + cid).json

    def delete(self, cid):
        self.srv.req("DELETE", "/v1/connectors/" + cid)

    def write(self, strand, n, start=0, size=0):
        """n records {"i": start+k} (with a "pad" of about size bytes), a few per request."""
        recs = [{"i": start + k, **({"pad": ("%07d" % (start + k)) * (size // 7)} if size else {})} for k in range(n)]
        step = 3 if size else 100
        for chunk in range(0, n, step):
            r = self.srv.req("POST", "/v1/records/batch",
                             [{"strand": strand, "payload": p} for p in recs[chunk:chunk + step]])
            assert r.status in (200, 201), r


def seqs_in(names, read):
    """Every _seq in the JSONL objects names (read(name) -> bytes), in order."""
    seqs = []
    for n in names:
        seqs += [json.loads(line)["_seq"] for line in read(n).decode().splitlines() if line]
    return seqs
