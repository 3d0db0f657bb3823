"""The Kafka benchmark (run through bench/kafka.sh): librdkafka's mock cluster, Sluice and kcat in
the same run.

Source: N messages of SIZE bytes (JSON values) are produced into a topic of PARTS partitions
first; then kcat -C -e reads the topic to /dev/null, and a Sluice kafka source (its own consumer
group, start_offset earliest) appends them to a durable strand. Sluice's time runs from the POST
that creates the connector until the strand holds N records (so it includes the consumer group
join, which kcat -C without -G does not do); the time from its first record is printed too,
and kcat -G (kcat in a consumer group of its own, auto.offset.reset earliest, -e) is timed as the
like-for-like figure: it waits for the same first join. Then kcat -C -e reads the topic once more, and a second Sluice kafka source with assignment all
(every partition assigned by itself, no group join, as kcat -C does; offsets still committed to
its group after the fsync) reads the same topic into another strand, timed the same way and
compared with that second kcat time.

Sink: the same N payloads are written to a strand first; then kcat -P produces the same file to
one topic, and a Sluice kafka_sink (start earliest, idempotent) produces the strand to another.
Sluice's time runs from the POST until the connector's cursor is at the head (every delivery
report received). The sink's messages carry more than the file's lines: a 64-character key (the
record_hash) and three headers (strand, seq, record_hash); kcat -P -K -H producing messages of
that shape (same keys and header sizes) is timed too, as the like-for-like figure.

librdkafka's mock cluster keeps at most 5 MiB (and 100,000 message sets) per partition and drops
the oldest beyond that, so the topics have PARTS=128 partitions (about 2 MiB each for 1,000,000 messages of 200 bytes).
kcat -C counts what the topic holds (| wc -l) and Sluice is timed until its strand holds as many;
the script fails if that is not N."""
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
sys.path.insert(0, os.path.join(ROOT, "tests", "peers"))
sys.dont_write_bytecode = True
import sluicetest as st  # noqa: E402
import kafka  # noqa: E402

N = int(os.environ.get("N", "1000000"))
SIZE = int(os.environ.get("SIZE", "200"))
PARTS = int(os.environ.get("PARTS", "128"))  # the mock keeps 5 MiB per partition (see below)
IDEMPOTENT = os.environ.get("IDEMPOTENT", "1") == "1"
# kcat's keyless messages: one random partition each (librdkafka's sticky partitioner would put
# long runs into one partition, past the mock's 5 MiB)
SPREAD = ["-X", "sticky.partitioning.linger.ms=0"]


def log(msg):
    sys.stderr.write("[kafka bench %s] %s\n" % (time.strftime("%H:%M:%S"), msg))


def message(i):
    head = '{"i":%d,"pad":"' % i
    return head + "x" * (SIZE - len(head) - 2) + '"}'


def timed_source(srv, m, name, strand, extra):
    """POST a kafka source reading topic src into strand; (seconds from the POST, from the first
    record) until the strand holds N records."""
    cfg = {"brokers": m.brokers, "topic": "src", "consumer_group": name, "start_offset": "earliest",
           "strand": strand}
    cfg.update(extra)
    t0 = time.monotonic()
    r = srv.req("POST", "/v1/connectors", {"name": name, "kind": "kafka-source", "config": cfg})
    assert r.status == 201, r
    first = None
    while True:
        c = st.counts(srv.port).get(strand) or 0
        if c and first is None:
            first = time.monotonic()
        if c >= N:
            break
        if time.monotonic() - t0 > 600:
            sys.exit("the source did not finish in 600 s (%d records)" % c)
        time.sleep(0.05)
    end = time.monotonic()
    return end - t0, end - first


def main():
    why = kafka.available()
    if why:
        sys.exit("bench/kafka.sh: " + why)
    tmp = st.tmpdir("sluice-kafka-bench-")
    data = os.path.join(tmp, "messages.txt")
    with open(data, "w") as f:
        for i in range(N):
            f.write(message(i) + "\n")
    m = kafka.start(1, [("src", PARTS), ("kcat_out", PARTS), ("sluice_out", PARTS), ("kcat_keyed", PARTS)],
                    st.at_cleanup)
    log("mock cluster at %s; %d messages of %d bytes, %d partitions" % (m.bootstrap, N, SIZE, PARTS))

    # ---- kcat -P: the file into topic src (also the sink's peer figure) ----
    t0 = time.monotonic()
    with open(data, "rb") as f:
        subprocess.run(["kcat", "-b", m.bootstrap, "-P", "-t", "src"] + SPREAD, stdin=f, check=True)
    kcat_p = time.monotonic() - t0
    log("kcat -P: %.2f s" % kcat_p)

    # ---- source: kcat -C -e vs Sluice's kafka source into a durable strand ----
    t0 = time.monotonic()
    out = subprocess.run("kcat -b %s -C -t src -o beginning -e -q | wc -l" % m.bootstrap, shell=True,
                         stdout=subprocess.PIPE, check=True).stdout
    kcat_c = time.monotonic() - t0
    held = int(out)
    log("kcat -C -e | wc -l: %.2f s, %d messages" % (kcat_c, held))
    if held != N:
        sys.exit("the mock cluster holds %d of %d messages (it keeps 5 MiB per partition): raise PARTS"
                 % (held, N))

    srv = st.Server().start()
    sl_c, sl_c_first = timed_source(srv, m, "bench", "kin", {})
    log("Sluice kafka source: %.2f s (%.2f s from its first record)" % (sl_c, sl_c_first))
    # kcat in a consumer group of its own (-G: the same first join as Sluice's), like for like
    t0 = time.monotonic()
    out = subprocess.run("kcat -b %s -G kcat-bench -X auto.offset.reset=earliest -e -q src | wc -l"
                         % m.bootstrap, shell=True, stdout=subprocess.PIPE, check=True).stdout
    kcat_g = time.monotonic() - t0
    log("kcat -G (a consumer group) -e | wc -l: %.2f s, %d messages" % (kcat_g, int(out)))
    if int(out) != N:
        sys.exit("kcat -G read %d of %d messages" % (int(out), N))
    t0 = time.monotonic()  # kcat -C again, next to this run (the load moves)
    subprocess.run("kcat -b %s -C -t src -o beginning -e -q >/dev/null" % m.bootstrap, shell=True, check=True)
    kcat_c2 = time.monotonic() - t0
    log("kcat -C -e (again, next to the next source): %.2f s" % kcat_c2)
    sl_a, sl_a_first = timed_source(srv, m, "bench-all", "kin_all", {"assignment": "all"})
    log("Sluice kafka source, assignment all: %.2f s (%.2f s from its first record)" % (sl_a, sl_a_first))

    # ---- sink: the same payloads from a strand vs kcat -P ----
    with open(data) as f:
        batch = []
        for line in f:
            batch.append(line.rstrip("\n"))
            if len(batch) == 4000:  # < max_body_bytes (1 MiB)
                body = "\n".join('{"strand":"out","payload":%s}' % p for p in batch)
                r = st.req(srv.port, "POST", "/v1/records/batch", body.encode(), ctype="application/x-ndjson")
                assert r.status in (200, 201), r
                batch = []
        if batch:
            body = "\n".join('{"strand":"out","payload":%s}' % p for p in batch)
            r = st.req(srv.port, "POST", "/v1/records/batch", body.encode(), ctype="application/x-ndjson")
            assert r.status in (200, 201), r
    t0 = time.monotonic()
    r = srv.req("POST", "/v1/connectors", {"name": "bench sink", "kind": "kafka-sink", "strands": ["out"],
                                           "config": {"brokers": m.brokers, "topic": "sluice_out",
                                                      "start": "earliest", "idempotent": IDEMPOTENT}})
    assert r.status == 201, r
    cid = r.json["id"]
    while (srv.req("GET", "/v1/connectors/" + cid).json.get("stats") or {}).get("lag") != 0:
        if time.monotonic() - t0 > 600:
            sys.exit("the sink did not finish in 600 s")
        time.sleep(0.05)
    sl_p = time.monotonic() - t0
    log("Sluice kafka_sink: %.2f s" % sl_p)
    t0 = time.monotonic()
    with open(data, "rb") as f:
        subprocess.run(["kcat", "-b", m.bootstrap, "-P", "-t", "kcat_out"] + SPREAD, stdin=f, check=True)
    kcat_p2 = time.monotonic() - t0
    log("kcat -P (again, same run as the sink): %.2f s" % kcat_p2)
    # like for like: the key and headers the sink's messages carry (record_hash hex, strand, seq)
    keyed = os.path.join(tmp, "keyed.txt")
    with open(data) as f, open(keyed, "w") as g:
        for i, line in enumerate(f):
            g.write("%064x\t%s" % (i * 2654435761 + 1, line))
    t0 = time.monotonic()
    with open(keyed, "rb") as f:
        subprocess.run(["kcat", "-b", m.bootstrap, "-P", "-t", "kcat_keyed", "-K", "\t",
                        "-H", "strand=out", "-H", "seq=%d" % (N // 2),
                        "-H", "record_hash=%064x" % 1] + SPREAD, stdin=f, check=True)
    kcat_pk = time.monotonic() - t0
    log("kcat -P -K -H (the sink's message shape): %.2f s" % kcat_pk)
    srv.stop()

    res = {
        "messages": N, "bytes": SIZE, "partitions": PARTS, "idempotent_sink": IDEMPOTENT,
        "kcat_consume_s": round(kcat_c, 2), "sluice_source_s": round(sl_c, 2),
        "sluice_source_from_first_s": round(sl_c_first, 2),
        "source_ratio": round(kcat_c / sl_c, 2), "source_ratio_from_first": round(kcat_c / sl_c_first, 2),
        "kcat_group_s": round(kcat_g, 2), "source_group_ratio": round(kcat_g / sl_c, 2),
        "kcat_consume_again_s": round(kcat_c2, 2), "sluice_source_all_s": round(sl_a, 2),
        "source_all_ratio": round(kcat_c2 / sl_a, 2),
        "kcat_produce_s": round(min(kcat_p, kcat_p2), 2), "sluice_sink_s": round(sl_p, 2),
        "sink_ratio": round(min(kcat_p, kcat_p2) / sl_p, 2),
        "kcat_produce_keyed_s": round(kcat_pk, 2), "sink_ratio_keyed": round(kcat_pk / sl_p, 2),
    }
    print("source: kcat -C -e %.2f s (%.0f msg/s), Sluice durable %.2f s (%.0f msg/s; %.2f s from the first "
          "record): ratio %.2fx (%.2fx without the group join)"
          % (kcat_c, N / kcat_c, sl_c, N / sl_c, sl_c_first, res["source_ratio"], res["source_ratio_from_first"]))
    print("source, group like for like: kcat -G (its own consumer group) -e %.2f s, Sluice %.2f s: ratio %.2fx"
          % (kcat_g, sl_c, res["source_group_ratio"]))
    print("source, assignment all: kcat -C -e again %.2f s, Sluice durable %.2f s (%.0f msg/s; %.2f s from "
          "the first record): ratio %.2fx" % (kcat_c2, sl_a, N / sl_a, sl_a_first, res["source_all_ratio"]))
    print("sink:   kcat -P %.2f s (%.0f msg/s), Sluice kafka_sink %.2f s (%.0f msg/s): ratio %.2fx"
          % (min(kcat_p, kcat_p2), N / min(kcat_p, kcat_p2), sl_p, N / sl_p, res["sink_ratio"]))
    print("sink, like for like: kcat -P -K -H (key and 3 headers per message) %.2f s: ratio %.2fx"
          % (kcat_pk, res["sink_ratio_keyed"]))
    print(json.dumps(res))


if __name__ == "__main__":
    main()
