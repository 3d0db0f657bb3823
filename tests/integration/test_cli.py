"""The client commands of the binary against a live server (docs/cli.md): `sluice push` (NDJSON
on stdin, batches all or nothing), `sluice tail --strand S [--last N | --from-seq N] [--follow]
[--where PATH=VALUE]`, `sluice status`, each with --url and --json, and their exit codes: 0 done,
1 refused or invalid input, 2 usage, 3 server unreachable."""
import json
import os
import re
import select
import signal
import subprocess
import time

import sluicetest as st

t = st.Checks()
st.require_binary(t)
srv = st.Server().start()


def cli(*args, stdin=b"", url=None):
    argv = [st.SLUICE_BIN] + list(args) + ["--url", url or srv.url]
    p = subprocess.run(argv, input=stdin, capture_output=True, timeout=60)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


def records(strand):
    r = srv.req("GET", "/v1/strands/%s/records?limit=1000" % strand)
    return r.json["records"] if r.status == 200 else []


with t.section("push: NDJSON payloads from stdin, in batches", srv):
    lines = b'{"n": 0}\n\n{"n": 1, "tag": {"k": "x"}}\r\n"a string"\n{"n": 3}\n'
    rc, out, err = cli("push", "--strand", "ev", "--batch", "2", "--agent-id", "loader", stdin=lines)
    t.ok(rc == 0 and out == "4 records written to strand ev (seq 0..3)\n", "push -> exit 0 and a summary", (out, err))
    got = records("ev")
    t.ok([r["payload"] for r in got] == [{"n": 0}, {"n": 1, "tag": {"k": "x"}}, "a string", {"n": 3}]
         and all(r["source"] == "loader" for r in got), "each line is one record's payload, in order, with --agent-id",
         got)
    rc, out, err = cli("push", "--strand", "ev", "--json", stdin=b'{"n": 4}\n{"n": 5}\n')
    j = json.loads(out)
    t.ok(rc == 0 and j == {"count": 2, "batches": 1, "ok": True, "strand": "ev", "first_seq": 4, "last_seq": 5},
         "push --json", out)
    rc, out, err = cli("push", "--records", "--json", stdin=b'{"payload": {"r": 1}, "strand": "recs", "flags": 2}\n')
    t.ok(rc == 0 and json.loads(out)["strand"] == "recs" and records("recs")[0]["flags"] == 2,
         "push --records: each line is a record object (strand, flags)", (out, err))

with t.section("push: bad input stops at its batch, exit 1, that batch not written", srv):
    before = len(records("ev"))
    rc, out, err = cli("push", "--strand", "ev", "--batch", "2", "--json",
                       stdin=b'{"n": 10}\n{"n": 11}\n{"n": 12}\n{"n":\n{"n": 14}\n')
    t.ok(rc == 1 and "input line 4: invalid JSON" in err and json.loads(out)["count"] == 2,
         "invalid JSON on line 4 -> exit 1 naming the line; the batch before it was written", (out, err))
    t.eq([r["payload"]["n"] for r in records("ev")[before:]], [10, 11], "records 10, 11 written; 12 (its batch) not")
    before = len(records("ev"))
    rc, out, err = cli("push", "--strand", "ev", "--records", stdin=b'{"payload": 1}\n{"payload": 2, "bogus": 1}\n')
    t.ok(rc == 1 and "bogus" in err and "invalid_record" in err and len(records("ev")) == before,
         "a record the server refuses -> exit 1 with its error and code, nothing of the batch written", err)
    rc, out, err = cli("push", "--strand", "Bad Name", stdin=b'1\n')
    t.ok(rc == 1 and "strand" in err, "a bad strand name -> exit 1", err)
    rc, out, err = cli("push", "--strand", "ev", stdin=b"")
    t.ok(rc == 0 and "no records" in out, "empty stdin -> exit 0", out)

with t.section("tail", srv):
    rc, out, err = cli("tail", "--strand", "ev", "--last", "2")
    t.ok(rc == 0 and re.fullmatch(r'6 \d+ - \{"n":10\}\n7 \d+ - \{"n":11\}\n', out) is not None,
         "tail --last 2: the last two records as 'seq timestamp_ms source payload'", out)
    rc, out, err = cli("tail", "--strand", "ev", "--last", "1", "--from-seq", "0")
    t.ok(rc == 0 and out.startswith("0 ") and " loader " in out.splitlines()[0], "--from-seq wins over --last", out)
    n = len(records("ev"))
    rc, out, err = cli("tail", "--strand", "ev", "--from-seq", "0", "--json")
    recs = [json.loads(x) for x in out.splitlines()]
    t.ok(rc == 0 and len(recs) == n and [r["seq"] for r in recs] == list(range(n))
         and all(len(r["record_hash"]) == 64 for r in recs), "tail --from-seq 0 --json: every record as the API gives it",
         out[:500])
    rc, out, err = cli("tail", "--strand", "ev", "--from-seq", "0", "--json", "--where", "tag.k=x")
    t.ok(rc == 0 and [json.loads(x)["payload"]["n"] for x in out.splitlines()] == [1],
         "--where tag.k=x filters on a payload path", out)
    rc, out, err = cli("tail", "--strand", "ev", "--from-seq", "0", "--json", "--where", "n=10")
    t.ok(rc == 0 and [json.loads(x)["payload"]["n"] for x in out.splitlines()] == [10], "--where n=10 (a number)", out)
    rc, out, err = cli("tail", "--strand", "nope")
    t.ok(rc == 1 and "no strand named nope" in err, "an unknown strand -> exit 1", err)

with t.section("tail --follow prints records as they are written; SIGINT ends it with 0", srv):
    p = subprocess.Popen([st.SLUICE_BIN, "tail", "--strand", "live", "--follow", "--json", "--from-seq", "0",
                          "--url", srv.url], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    st.at_cleanup(lambda: p.kill())

    def polled_404():  # tail has asked for the strand that does not exist yet
        m = srv.req("GET", "/metrics").body.decode()
        return 'sluice_http_requests_total{route="/v1/strands/{name}/records",code="404"}' in m
    t.ok(st.wait_until(polled_404, 10) and p.poll() is None,
         "tail --follow of a strand that does not exist yet keeps waiting for it")
    seen = []
    buf = b""
    for i in range(3):
        assert srv.req("POST", "/v1/records", {"strand": "live", "payload": {"i": i}}).status == 201
        deadline = time.monotonic() + 10
        while len(seen) <= i and time.monotonic() < deadline:
            r, _, _ = select.select([p.stdout], [], [], 0.5)
            if r:
                chunk = os.read(p.stdout.fileno(), 65536)
                if not chunk:
                    break
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    seen.append(json.loads(line)["payload"]["i"])
    t.eq(seen, [0, 1, 2], "each record appears once, as it is written (the strand did not exist at start)")
    p.send_signal(signal.SIGINT)
    t.ok(p.wait(10) == 0, "SIGINT -> exit 0", p.stderr.read().decode())

with t.section("status", srv):
    srv.req("POST", "/v1/connectors", {"name": "hook", "kind": "webhook", "strands": ["ev"],
                                       "config": {"url": "http://127.0.0.1:1/x"}})
    rc, out, err = cli("status", "--json")
    j = json.loads(out)
    t.ok(rc == 0 and j["health"]["status"] == "ok" and any(s["name"] == "ev" for s in j["strands"])
         and [c["name"] for c in j["connectors"]] == ["hook"], "status --json: health, strands, connectors", out[:500])
    rc, out, err = cli("status")
    t.ok(rc == 0 and "STRAND" in out and "\nev " in out and "hook" in out and "webhook" in out,
         "status: a table of strands and connectors", out)

with t.section("exit codes: unreachable 3, usage 2", srv):
    rc, out, err = cli("status", url="http://127.0.0.1:9")
    t.ok(rc == 3 and "127.0.0.1:9" in err, "an unreachable server -> exit 3", err)
    rc, out, err = cli("push", "--strand", "x", stdin=b"1\n", url="http://127.0.0.1:9")
    t.ok(rc == 3, "push to an unreachable server -> exit 3", err)
    for args in (("tail",), ("push", "--batch", "0"), ("status", "--bogus", "1"), ("tail", "--strand"),
                 ("status", "--url", "ftp://x"), ("tail", "--strand", "s", "--where", "noequals")):
        p = subprocess.run([st.SLUICE_BIN] + list(args), capture_output=True, timeout=30, stdin=subprocess.DEVNULL)
        t.ok(p.returncode == 2 and (b"usage" in p.stderr or b"required" in p.stderr),
             "sluice %s -> exit 2 with usage" % " ".join(args), p.stderr.decode()[:300])
    t.ok(srv.alive(), "the server is still up")

srv.stop()
t.done()
