"""GET /metrics is valid Prometheus text exposition format (0.0.4) with connectors of every kind
present: each family is one contiguous block (# HELP, # TYPE, then all its samples), counters
end in _total, label values and HELP texts are escaped, the families the docs promise are
there, and each metric name has one meaning (a sink's lag in records, a CDC slot's lag in WAL
bytes). Read twice: by prometheus_client's parser (python3-prometheus-client) and by a strict
line-level check of our own, because that parser is lenient (a split family does not fail it,
it comes back as two families of the same name)."""
import os
import re
import sys
import time

from prometheus_client.parser import text_string_to_metric_families

import sluicetest as st

sys.path.insert(0, os.path.join(st.ROOT, "tests", "peers"))
from webhook_receiver import Receiver  # noqa: E402

t = st.Checks()
st.require_binary(t)
srv = st.Server().start()
C = "/v1/connectors"
FAST = {"initial_backoff_ms": 10, "max_backoff_ms": 50}

# Every family the docs promise (docs/api.md "Operations", docs/connectors.md "Metrics" and the
# CDC section, docs/boboyka.md), with its type.
PROMISED = {
    "sluice_http_requests_total": "counter",
    "sluice_http_request_duration_seconds": "histogram",
    "sluice_strand_records_appended_total": "counter",
    "sluice_strand_bytes_appended_total": "counter",
    "sluice_strand_fsyncs_total": "counter",
    "sluice_strand_commits_total": "counter",
    "sluice_strand_records_per_fsync": "gauge",
    "sluice_strand_records": "gauge",
    "sluice_strand_bytes": "gauge",
    "sluice_strand_spares_total": "counter",
    "sluice_strand_spares_skipped_total": "counter",
    "sluice_strand_fsync_seconds": "histogram",
    "sluice_recovery_truncations_total": "counter",
    "sluice_recovery_seconds": "gauge",
    "sluice_connector_records_total": "counter",
    "sluice_connector_lag_records": "gauge",
    "sluice_connector_breaker_open": "gauge",
    "sluice_connector_slot_lag_bytes": "gauge",
    "sluice_connector_state": "gauge",
    "sluice_boboyka_events_total": "counter",
    "sluice_boboyka_mirror_pending": "gauge",
    "sluice_boboyka_mirror_failed": "gauge",
    "sluice_boboyka_mirror_requests_total": "counter",
}
SUFFIXES = {"counter": [""], "gauge": [""], "untyped": [""], "unknown": [""], "summary": ["", "_sum", "_count"],
            "histogram": ["_bucket", "_sum", "_count"]}

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL_VALUE = r'"(?:[^"\\\n]|\\[\\"n])*"'  # only \\, \" and \n escapes; no raw newline
LABEL = r"([a-zA-Z_][a-zA-Z0-9_]*)=(%s)" % LABEL_VALUE
SAMPLE_RE = re.compile(r"^(?P<name>%s)(?P<labels>\{(?:%s(?:,%s)*)?,?\})? (?P<value>\S+)(?: (?P<ts>-?\d+))?$"
                       % (NAME, LABEL, LABEL))
LABEL_RE = re.compile(LABEL)
HELP_RE = re.compile(r"^# HELP (%s) ((?:[^\\\n]|\\[\\n])*)$" % NAME)  # only \\ and \n escapes
TYPE_RE = re.compile(r"^# TYPE (%s) (counter|gauge|histogram|summary|untyped)$" % NAME)


def strict_check(text):
    """The exposition format line by line; returns a list of problems (empty = valid).
    A family is a block that starts with its # HELP or # TYPE line; every sample must sit in the
    block of its family, and no family may have two blocks."""
    problems = []
    if not text.endswith("\n"):
        problems.append("the text does not end with a newline")
    blocks = []  # [name, type, help seen, type seen, {its series}]
    closed = set()  # families whose block has ended
    cur = None
    for no, line in enumerate(text.split("\n")[:-1], 1):
        where = "line %d %r" % (no, line[:160])
        if line.startswith("#"):
            m = HELP_RE.match(line) or TYPE_RE.match(line)
            if not m:
                if line.startswith(("# HELP", "# TYPE")):
                    problems.append("%s: malformed (bad escape, name or type)" % where)
                continue
            name, is_help = m.group(1), line.startswith("# HELP")
            if cur is None or cur[0] != name:
                if name in closed:
                    problems.append("%s: family %s has a second block (split family)" % (where, name))
                if cur is not None:
                    closed.add(cur[0])
                cur = [name, None, False, False, set()]
                blocks.append(cur)
                if not is_help:
                    problems.append("%s: # TYPE %s without a # HELP before it" % (where, name))
            if is_help:
                if cur[2] or cur[3] or cur[4]:
                    problems.append("%s: # HELP %s repeated or after its TYPE/samples" % (where, name))
                cur[2] = True
            else:
                if cur[3] or cur[4]:
                    problems.append("%s: # TYPE %s repeated or after its samples" % (where, name))
                cur[3], cur[1] = True, m.group(2)
            continue
        if not line:
            problems.append("%s: empty line" % where)
            continue
        m = SAMPLE_RE.match(line)
        if not m:
            problems.append("%s: not a valid sample line (name, labels, escapes or value)" % where)
            continue
        name, value = m.group("name"), m.group("value")
        labels = LABEL_RE.findall(m.group("labels") or "")
        if len(set(k for k, _ in labels)) != len(labels):
            problems.append("%s: a label name repeated" % where)
        if value not in ("+Inf", "-Inf", "NaN"):
            try:
                float(value)
            except ValueError:
                problems.append("%s: value %r is not a number" % (where, value))
        if cur is None or cur[1] is None:
            problems.append("%s: sample %s outside any typed family block" % (where, name))
            continue
        if name not in [cur[0] + s for s in SUFFIXES[cur[1]]]:
            owner = [b[0] for b in blocks if b[1] and name in [b[0] + s for s in SUFFIXES[b[1]]]]
            problems.append("%s: sample %s inside the block of %s%s" % (
                where, name, cur[0], " (its family %s is split)" % owner[0] if owner else ""))
        series = (name, frozenset(labels))
        if series in cur[4]:
            problems.append("%s: the same series twice" % where)
        cur[4].add(series)
    for name, typ, has_help, has_type, _ in blocks:
        if not has_help or not has_type:
            problems.append("family %s lacks its # %s line" % (name, "HELP" if not has_help else "TYPE"))
        if typ == "counter" and not name.endswith("_total"):
            problems.append("counter %s is not named *_total" % name)
        if typ and typ != "counter" and name.endswith("_total"):
            problems.append("%s %s is named *_total but is not a counter" % (typ, name))
    return problems


def samples_of(text, name):
    """{frozenset(labels.items()): value} of every sample called name (from the parser)."""
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == name:
                out[frozenset(s.labels.items())] = s.value
    return out


def conn(cid):
    return srv.req("GET", C + "/" + cid).json


def create(body, path=C):
    r = srv.req("POST", path, body)
    assert r.status == 201, r
    return r.json


with t.section("the strict checker itself", srv):
    good = ('# HELP a_total A \\\\ b\\n c.\n# TYPE a_total counter\na_total{x="q\\"\\\\\\n"} 1\n'
            '# HELP h H.\n# TYPE h histogram\nh_bucket{le="1"} 0\nh_bucket{le="+Inf"} 1\nh_sum 2.5\nh_count 1\n')
    t.eq(strict_check(good), [], "the checker accepts escaped label values and HELP texts")
    split = ("# HELP g G.\n# TYPE g gauge\n# HELP l L.\n# TYPE l gauge\nl 1\ng 1\n")
    t.ok(any("split" in p for p in strict_check(split)), "the checker finds a split family", strict_check(split))
    bad = ['# HELP g G.\n# TYPE g gauge\ng{x="a\nb"} 1\n',  # a raw newline in a label value
           '# HELP g G \\x.\n# TYPE g gauge\ng 1\n',  # \x in a HELP text
           '# HELP g G.\n# TYPE g gauge\ng{x="a\\tb"} 1\n',  # \t in a label value
           '# HELP c C.\n# TYPE c counter\nc 1\n',  # a counter not named *_total
           '# HELP g G.\n# TYPE g gauge\n# HELP g G.\ng 1\n',  # HELP twice
           '# HELP g G.\n# TYPE g gauge\ng{x="a"} 1\ng{x="a"} 2\n',  # the same series twice
           'g 1\n']  # a sample of no declared family
    t.ok(all(strict_check(b) for b in bad), "the checker refuses raw newlines, bad escapes, a counter without "
         "_total, a repeated HELP or series and an undeclared sample", [strict_check(b) for b in bad])

with t.section("connectors of every kind", srv):
    bridge = create({"name": "metrics bridge", "kind": "rest_bridge", "config": {"strand": "m"}})
    rx = Receiver().start()
    rx.set_mode("status", status=503)  # reachable (its health check passes), failing every request
    st.at_cleanup(rx.stop)
    hook = create({"name": "dead hook", "kind": "webhook", "strands": ["m"], "config": {
        "url": rx.url("/hook"), "retry": FAST,
        "circuit_breaker": {"failure_threshold": 2, "reset_timeout_secs": 3600}}})
    root = st.tmpdir()
    osink = create({"name": "files", "kind": "object_storage", "strands": ["m"], "config": {
        "provider": "local", "root": root, "format": "jsonl", "batch_size": 1}})
    kafka = create({"name": "events", "kind": "kafka", "config": {"brokers": ["127.0.0.1:1"], "topic": "t",
                                                                    "strand": "k"}})
    cdc = create({"name": "orders cdc", "kind": "postgres_cdc", "config": {
        "connection_string": "postgres://u:p@127.0.0.1:1/shop", "slot": "s", "publication": "p",
        "strand": "cdc.shop"}})
    # the StreamHouse shape goes through the same registry
    sh = create({"name": "sh sink", "connectorType": "sink", "connectorClass": "webhook", "topics": ["m"],
                 "config": {"url": "http://127.0.0.1:1/sh", "retry": FAST}}, path="/api/v1/connectors")
    for i in range(3):
        r = srv.req("POST", "/v1/records", {"strand": "m", "payload": {"i": i}})
        assert r.status == 201, r
    for i in range(2):
        r = srv.req("POST", "/v1/connectors/inbound/rest/%s/push" % bridge["id"], {"p": i})
        assert r.status == 201, r
    # the states this test reads: the breaker open, the files written, the CDC source failed
    t.ok(st.wait_until(lambda: conn(hook["id"])["stats"]["breaker"] == "open", 15),
         "the webhook to a target answering 503 opens its breaker", conn(hook["id"]))
    t.ok(st.wait_until(lambda: conn(osink["id"])["stats"]["delivered"] == 5, 15),
         "the object_storage sink delivers the 5 records", conn(osink["id"]))
    t.ok(st.wait_until(lambda: conn(cdc["id"])["state"] == "failed", 15),
         "postgres_cdc at a closed port fails", conn(cdc["id"]))
    t.ok(st.wait_until(lambda: conn(kafka["id"])["state"] == "restarting", 15),
         "the kafka source at a closed port is restarting (its health check failed)", conn(kafka["id"]))
    r = srv.req("POST", C + "/%s/dead-letters/replay" % hook["id"])
    t.eq(r.status, 202, "a dead-letter replay is answered 202")

with t.section("threads are named for top -H, perf and gdb", srv):
    def comms():
        d = "/proc/%d/task" % srv.proc.pid
        out = []
        for tid in os.listdir(d):
            try:
                with open(os.path.join(d, tid, "comm")) as f:
                    out.append(f.read().strip())
            except OSError:  # a thread that just ended
                pass
        return out
    names = comms()
    want = ["sl-http0", "sl-engine", "commit:m", "sync:m", "c:" + hook["id"][:13], "c:" + osink["id"][:13]]
    t.ok(all(w in names for w in want), "the HTTP loop, the engine, strand m's committer and syncer and "
         "each sink's worker have their names (%s)" % ", ".join(want), sorted(names))

with t.section("GET /metrics parses, one block per family", srv):
    # the 202 above is counted when its request completes: poll for it rather than sleep
    def scrape():
        r = srv.req("GET", "/metrics")
        return r if ('route="/v1/connectors/{id}/dead-letters",code="202"} 1' in r.body.decode()) else None
    r = st.wait_until(scrape, 5) or srv.req("GET", "/metrics")
    text = r.body.decode("utf-8")
    t.ok(r.status == 200 and r.headers.get("content-type", "").startswith("text/plain; version=0.0.4"),
         "GET /metrics -> 200 text/plain; version=0.0.4", r)
    problems = strict_check(text)
    t.ok(not problems, "strict line check: every family one block (HELP, TYPE, samples), valid escapes, "
         "counters *_total", "\n".join(problems[:40]))
    fams = list(text_string_to_metric_families(text))
    t.ok(fams, "prometheus_client parses the text")
    names = [f.name for f in fams]
    dups = sorted({n for n in names if names.count(n) > 1})
    t.ok(not dups, "no family name is yielded twice by the parser (a split family would be)", dups)
    untyped = sorted({f.name for f in fams if f.type in ("untyped", "unknown")})
    t.ok(not untyped, "every sample belongs to a declared family (no untyped strays)", untyped)
    wrong = ["%s in %s (%s)" % (s.name, f.name, f.type) for f in fams for s in f.samples
             if s.name not in [f.name + x for x in (["_total"] if f.type == "counter" else SUFFIXES[f.type])]]
    t.ok(not wrong, "every sample's name belongs to its family", wrong[:20])
    # the parser strips _total from counter families (OpenMetrics style)
    got = {(f.name + "_total" if f.type == "counter" else f.name): f.type for f in fams}
    missing = {n: ty for n, ty in PROMISED.items() if got.get(n) != ty}
    t.ok(not missing, "every family the docs promise is there with its type", {n: got.get(n) for n in missing})
    for f in fams:
        if f.type != "histogram":
            continue
        series = {}
        for s in f.samples:
            key = frozenset((k, v) for k, v in s.labels.items() if k != "le")
            series.setdefault(key, {})[(s.name, s.labels.get("le"))] = s.value
        bad = [dict(k) for k, v in series.items() if v.get((f.name + "_bucket", "+Inf")) != v.get((f.name + "_count", None))]
        t.ok(series and not bad, "%s: every series has a +Inf bucket equal to its _count" % f.name, bad)

with t.section("what the connector families say", srv):
    ids = {"bridge": bridge["id"], "hook": hook["id"], "os": osink["id"], "kafka": kafka["id"], "cdc": cdc["id"],
           "sh": sh["id"]}
    outbound = {ids["hook"], ids["os"], ids["sh"]}

    def by_connector(name):
        return {dict(k)["connector"]: v for k, v in samples_of(text, name).items()}
    t.eq(set(by_connector("sluice_connector_lag_records")), outbound,
         "sluice_connector_lag_records (records) has exactly the outbound connectors")
    t.eq(set(by_connector("sluice_connector_slot_lag_bytes")), {ids["cdc"]},
         "sluice_connector_slot_lag_bytes (WAL bytes) has exactly the postgres_cdc connector")
    t.eq(set(by_connector("sluice_connector_breaker_open")), outbound, "breaker_open has the outbound connectors")
    t.eq(by_connector("sluice_connector_breaker_open")[ids["hook"]], 1.0, "the webhook's open breaker shows as 1")
    t.eq(by_connector("sluice_connector_breaker_open")[ids["os"]], 0.0, "the healthy sink's breaker shows as 0")
    rec = {(dict(k)["connector"], dict(k)["result"]): v for k, v in samples_of(text, "sluice_connector_records_total").items()}
    t.eq(rec.get((ids["os"], "delivered")), 5.0, "records_total{result=delivered} of the object_storage sink is 5")
    t.eq(rec.get((ids["bridge"], "received")), 2.0, "records_total{result=received} of the bridge is 2")
    t.ok(rec.get((ids["hook"], "failed"), 0) >= 2, "the failing webhook counts failed attempts", rec)
    listed = {c["id"]: c for c in srv.req("GET", C).json["connectors"]}
    states = {dict(k)["connector"]: dict(k)["state"] for k in samples_of(text, "sluice_connector_state")}
    t.eq(states, {i: listed[i]["state"] for i in ids.values()}, "sluice_connector_state matches each connector's state")
    t.eq(states[ids["kafka"]], "restarting", "the kafka source with no broker to reach is not running")
    # the JSON stats carry the same split: lag (records) for sinks, slot_lag_bytes for CDC
    stats = {k: set((listed[i].get("stats") or {}).keys()) for k, i in ids.items()}
    t.ok(all("lag" in stats[k] and "slot_lag_bytes" not in stats[k] for k in ("hook", "os", "sh")),
         "outbound stats have lag (records) and no slot_lag_bytes", stats)
    t.ok(stats["cdc"] == {"slot_lag_bytes"}, "postgres_cdc stats have slot_lag_bytes only", stats["cdc"])
    t.ok(not stats["bridge"], "the REST bridge has no stats", stats)
    t.ok(stats["kafka"] == {"kafka_source_messages_consumed", "kafka_source_bytes_consumed",
                            "kafka_source_polls", "kafka_source_poll_latency_avg_ms"},
         "the kafka source's stats are its gauges (Rivven's metric names)", stats["kafka"])
    http = {(dict(k)["route"], dict(k)["code"]): v for k, v in samples_of(text, "sluice_http_requests_total").items()}
    t.eq(http.get(("/v1/connectors/{id}/dead-letters", "202")), 1.0, "the 202 of the replay is counted under its code")
    t.ok(http.get(("/v1/connectors", "201"), 0) >= 5 and http.get(("/api/v1/connectors", "201")) == 1,
         "creates are counted, StreamHouse's path under its own route", http)

srv.stop()
t.done()
