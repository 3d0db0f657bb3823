"""kill -9 of Sluice while mosquitto_pub keeps publishing to the MQTT source (persistent session,
clean_session false, on Debian's mosquitto): after the restart every message is in the strand; at
QoS 1 a message can be there twice (acknowledged only after the fsync, so one the broker sends
again may already be stored), at QoS 2 none is twice. Also the sink: kill -9 mid-publish, every
record reaches mosquitto_sub after the restart."""
import json
import os
import subprocess
import sys
import threading

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "integration"))
import sluicetest as st  # noqa: E402

sys.path.insert(0, os.path.join(st.ROOT, "tests", "peers"))
import mqtt  # noqa: E402  (tests/peers/mqtt.py)

t = st.Checks()
st.require_binary(t)
why = mqtt.available()
if why:
    t.ok(False, "the MQTT test peers are here: " + why)
    t.done()
srv = st.Server().start()
b = mqtt.Broker()
st.at_cleanup(b.close)
C = "/v1/connectors"
N = 3000


def numbers(strand):
    try:
        return [r["payload"]["payload"]["n"] for r in st.all_records(srv.port, strand)]
    except AssertionError:
        return []


def publisher(topic, qos, done):
    """mosquitto_pub in chunks of 100 lines, so that it is still sending across the kill."""
    for start in range(0, N, 100):
        b.pub(topic, ['{"n":%d}' % i for i in range(start, start + 100)], qos=qos,
              client_id="pub-%s" % topic.replace("/", "-"))
    done.set()


for qos, name in ((1, "at_least_once"), (2, "exactly_once")):
    with t.section("QoS %d: kill -9 while a publisher keeps sending" % qos, srv):
        strand = "kill%d" % qos
        r = srv.req("POST", C, {"name": strand, "kind": "mqtt", "config": {
            "broker_url": b.url, "topics": ["k%d/#" % qos], "qos": name, "clean_session": False,
            "strand": strand, "client_id": "sluice-kill-%d" % qos}})
        assert r.status == 201, r
        cid = r.json["id"]
        st.wait_until(lambda: srv.req("GET", C + "/" + cid).json["state"] == "running", 10)
        assert b.wait_subscribed("k%d/#" % qos), b.log()
        done = threading.Event()
        th = threading.Thread(target=publisher, args=("k%d/x" % qos, qos, done), daemon=True)
        th.start()
        kills = 0
        for at in (N // 5, N // 2):
            st.wait_until(lambda: len(numbers(strand)) >= at or done.is_set(), 60)
            if done.is_set():
                break
            srv.kill()
            kills += 1
            srv.start()
        t.ok(kills >= 1, "QoS %d: Sluice was killed %d time(s) while messages were arriving" %
             (qos, kills))
        th.join(120)
        got = st.wait_until(lambda: set(numbers(strand)) >= set(range(N)), 60, 0.2)
        ns = numbers(strand)
        t.ok(set(ns) == set(range(N)), "QoS %d: after the restart every message is in the strand"
             " (%d of %d distinct)" % (qos, len(set(ns)), N))
        dups = len(ns) - len(set(ns))
        if qos == 2:
            t.eq(dups, 0, "QoS 2: no message stored twice")
        else:
            t.ok(dups <= 1000 * kills, "QoS 1: duplicates bounded by what was in flight (%d)" % dups)
            t.note("QoS 1: %d duplicate(s) after %d kill(s)" % (dups, kills))
        srv.req("DELETE", C + "/" + cid)

with t.section("sink: kill -9 mid-publish, every record reaches mosquitto_sub", srv):
    M = 2000
    sub = b.sub("snk/#", M * 2, qos=1, timeout=60, client_id="snk-sub")
    assert b.wait_subscribed("snk/#"), b.log()
    r = srv.req("POST", C, {"name": "snk", "kind": "mqtt_sink", "strands": ["snk"], "config": {
        "broker_url": b.url, "topic": "snk/{g}", "qos": "at_least_once", "max_inflight": 50}})
    assert r.status == 201, r
    cid = r.json["id"]
    for start in range(0, M, 500):
        rr = srv.req("POST", "/v1/records/batch", [
            {"strand": "snk", "payload": {"g": i % 4, "n": i}} for i in range(start, start + 500)])
        assert rr.status in (200, 201), rr
    st.wait_until(lambda: (srv.req("GET", C + "/" + cid).json["stats"]["delivered"] or 0) > 100,
                  30)
    srv.kill()
    srv.start()
    ns = []

    def read_sub():
        for line in sub.stdout:
            if " " in line:
                ns.append(json.loads(line.split(" ", 1)[1])["n"])

    threading.Thread(target=read_sub, daemon=True).start()
    st.wait_until(lambda: set(ns) >= set(range(M)), 60, 0.1)
    sub.terminate()
    t.ok(set(ns) == set(range(M)), "every record published (%d of %d distinct, %d duplicates)" %
         (len(set(ns)), M, len(ns) - len(set(ns))))

t.done()
