"""MQTT connectors against Debian's mosquitto broker (tests/peers/mqtt.py), with mosquitto_pub and
mosquitto_sub on the other side: the source (mqtt) stores what mosquitto_pub published (wildcards,
QoS 0/1/2, retained messages, JSON / text / binary payloads), the sink (mqtt_sink) publishes what
mosquitto_sub receives (QoS 1 and 2, retain, topics filled from fields, dead letters); bad
configs, an unreachable broker, a broker restart, mqtts with a CA made by the test. The kill -9
tests are in tests/crash/test_mqtt_kill9.py."""
import base64
import json
import os
import sys

import sluicetest as st

sys.path.insert(0, os.path.join(st.ROOT, "tests", "peers"))
import mqtt  # noqa: E402  (tests/peers/mqtt.py)

t = st.Checks()
st.require_binary(t)
why = mqtt.available()
if why:
    t.ok(False, "the MQTT test peers are here: " + why)
    t.done()
srv = st.Server().start()
C = "/v1/connectors"
b = mqtt.Broker()
st.at_cleanup(b.close)


def conn(cid):
    return srv.req("GET", C + "/" + cid).json


def create(body):
    r = srv.req("POST", C, body)
    assert r.status == 201, r
    return r.json


def payloads(strand):
    try:
        return [r["payload"] for r in st.all_records(srv.port, strand)]
    except AssertionError:
        return []


def source(name, strand, **cfg):
    c = dict({"broker_url": b.url, "strand": strand, "clean_session": False}, **cfg)
    a = create({"name": name, "kind": "mqtt", "config": c})
    ok = st.wait_until(lambda: conn(a["id"])["state"] == "running", 10)
    assert ok, conn(a["id"])
    for f in cfg["topics"]:
        assert b.wait_subscribed(f), b.log()
    return a


with t.section("bad configs -> 400 naming the field, nothing written", srv):
    good = {"broker_url": b.url, "topics": ["a/#"]}
    sink = {"broker_url": b.url, "topic": "out"}
    cases = (
        ("mqtt", dict(good, colour="red"), "config.colour"),
        ("mqtt", dict(good, topics="a/#"), "config.topics"),
        ("mqtt", dict(good, topics=[]), "config.topics"),
        ("mqtt", dict(good, topics=["a/#/b"]), "config.topics[0]"),
        ("mqtt", dict(good, topics=["a+/b"]), "config.topics[0]"),
        ("mqtt", dict(good, qos="twice"), "config.qos"),
        ("mqtt", dict(good, qos=1), "config.qos"),
        ("mqtt", dict(good, broker_url="mqtt://"), "config.broker_url"),
        ("mqtt", dict(good, broker_url="mqtt://:1883"), "config.broker_url"),
        ("mqtt", dict(good, broker_url="http://127.0.0.1:1883"), "config.broker_url"),
        ("mqtt", dict(good, broker_url="mqtt://127.0.0.1:99999"), "config.broker_url"),
        ("mqtt", dict(good, keep_alive_secs="60"), "config.keep_alive_secs"),
        ("mqtt", dict(good, auth={"password": "x"}), "config.auth.username"),
        ("mqtt", dict(good, last_will={"message": "bye"}), "config.last_will.topic"),
        ("mqtt", dict(good, last_will={"topic": "a/+"}), "config.last_will.topic"),
        ("mqtt", dict(good, retry_multiplier=0.5), "config.retry_multiplier"),
        ("mqtt", {"topics": ["a"]}, "config.broker_url"),
        ("mqtt-sink", dict(sink, topic="a/#"), "config.topic"),
        ("mqtt-sink", dict(sink, topic="a/{id"), "config.topic"),
        ("mqtt-sink", dict(sink, topic="a/{}"), "config.topic"),
        ("mqtt-sink", dict(sink, qos="exactly"), "config.qos"),
        ("mqtt-sink", dict(sink, retain="yes"), "config.retain"),
        ("mqtt-sink", dict(sink, broker_url="mqtts://"), "config.broker_url"),
    )
    before = srv.req("GET", C).json
    for kind, cfg, field in cases:
        body = {"name": "bad", "kind": kind, "config": cfg}
        if "sink" in kind:
            body["strands"] = ["x"]
        r = srv.req("POST", C, body)
        t.ok(r.status == 400 and r.json["error"].startswith(field + ":"),
             "%s %s -> 400 naming %s" % (kind, json.dumps(cfg)[:70], field), r)
    t.eq(srv.req("GET", C).json, before, "no connector was created by a refused config")

SEED_YAML = """version: "1.0"
sources:
  mqtt:
    connector: mqtt
    topic: iot-events  # Rivven destination topic
    config:
      broker_url: mqtts://broker.example.com:8883
      topics:
        - sensors/+/temperature
        - sensors/+/humidity
      client_id: rivven-mqtt-client
      qos: at_least_once   # at_most_once | at_least_once | exactly_once
      clean_session: true
      auth:
        username: ${MQTT_USER}
        password: ${MQTT_PASSWORD}
      keep_alive_secs: 60
      connect_timeout_secs: 30
      max_inflight: 100
      retry_initial_ms: 100
      retry_max_ms: 10000
      retry_multiplier: 2.0
      parse_json_payload: true
      include_metadata: true
      last_will:
        topic: clients/rivven/status
        message: offline
        qos: at_least_once
        retain: true
"""

with t.section("the Rivven seed's mqtt source example validates as a pipeline file", srv):
    import subprocess
    d = st.tmpdir("sluice-mqtt-yaml-")
    env = dict(os.environ, MQTT_USER="u", MQTT_PASSWORD="p")
    for text, want in ((SEED_YAML, 0), (SEED_YAML.replace("qos: at_least_once   #", "qos: 1   #"), 1)):
        f = os.path.join(d, "p.yaml")
        with open(f, "w") as fh:
            fh.write(text)
        r = subprocess.run([st.SLUICE_BIN, "validate", f], env=env, capture_output=True, text=True)
        if want == 0:
            t.ok(r.returncode == 0, "the seed's example (every key) is valid", r.stdout + r.stderr)
        else:
            t.ok(r.returncode == 1 and "config.qos" in r.stdout + r.stderr,
                 "a qos that is not one of the names is refused, naming config.qos",
                 r.stdout + r.stderr)

with t.section("an unreachable broker keeps the connector out of running, last_error says why",
               srv):
    closed = mqtt.free_port()
    a = create({"name": "nowhere", "kind": "mqtt", "config": {
        "broker_url": "mqtt://127.0.0.1:%d" % closed, "topics": ["a"], "connect_timeout_secs": 2}})
    got = st.wait_until(lambda: conn(a["id"])["last_error"], 10)
    c = conn(a["id"])
    t.ok(c["state"] != "running" and "127.0.0.1:%d" % closed in (c["last_error"] or ""),
         "source: not running, last_error names the broker (%s)" % c["last_error"], c)
    k = create({"name": "nowhere out", "kind": "mqtt_sink", "strands": ["nowhere"],
                "config": {"broker_url": "mqtt://127.0.0.1:%d" % closed, "topic": "a"}})
    st.wait_until(lambda: conn(k["id"])["last_error"], 10)
    c = conn(k["id"])
    t.ok(c["state"] != "running" and "127.0.0.1:%d" % closed in (c["last_error"] or ""),
         "sink: not running, last_error names the broker (%s)" % c["last_error"], c)
    srv.req("DELETE", C + "/" + a["id"])
    srv.req("DELETE", C + "/" + k["id"])

with t.section("source: wildcards, QoS 0/1/2, retained, JSON / text / binary payloads", srv):
    b.pub_one("home/state", '{"on":true}', qos=1, retain=True)  # before the subscription
    a = source("sensors", "sensors", topics=["home/+/temp", "plant/#", "home/state"],
               qos="exactly_once")
    st.wait_until(lambda: len(payloads("sensors")) >= 1, 10)
    b.pub("home/kitchen/temp", ['{"c":%d}' % i for i in range(5)], qos=1)
    b.pub("home/hall/temp", ['{"c":%d}' % i for i in range(5, 8)], qos=2)
    b.pub("home/hall/humidity", ['{"ignored":1}'], qos=1)  # matches no filter
    b.pub("plant/a/b/c", ["plain text"], qos=0)
    with open(os.path.join(b.dir, "bin"), "wb") as f:
        f.write(b"\xff\x00\x01")
    import subprocess
    subprocess.run([mqtt._exe("mosquitto_pub"), "-h", "127.0.0.1", "-p", str(b.port), "-t",
                    "plant/bin", "-q", "1", "-f", os.path.join(b.dir, "bin")], check=True)
    st.wait_until(lambda: len(payloads("sensors")) >= 11, 10)
    ps = payloads("sensors")
    by_topic = {}
    for p in ps:
        by_topic.setdefault(p["topic"], []).append(p)
    t.eq(len(ps), 11, "11 messages stored (1 retained + 5 + 3 + 1 + 1, not the unmatched one)")
    t.eq([p["payload"] for p in by_topic.get("home/kitchen/temp", [])],
         [{"c": i} for i in range(5)], "QoS 1 through home/+/temp: every message, in order, JSON")
    t.eq([(p["payload"], p["qos"]) for p in by_topic.get("home/hall/temp", [])],
         [({"c": i}, 2) for i in range(5, 8)], "QoS 2 messages stored once each, qos 2")
    st_ = by_topic.get("home/state", [{}])[0]
    t.ok(st_.get("retain") is True and st_.get("payload") == {"on": True},
         "a retained message published before the subscription arrives with retain true", st_)
    pt = by_topic.get("plant/a/b/c", [{}])[0]
    t.ok(pt.get("payload") == "plain text" and pt.get("qos") == 0 and pt.get("packet_id") is None,
         "QoS 0 through plant/#, a text payload kept as a string", pt)
    pb = by_topic.get("plant/bin", [{}])[0]
    t.ok(base64.b64decode(pb.get("payload_base64", "")) == b"\xff\x00\x01" and "payload" not in pb,
         "a binary payload kept as payload_base64", pb)
    t.ok(all(p.get("sluice_mqtt_pending") is not None for p in ps[-1:]),
         "the last record of a QoS 2 source's group carries its pending packet ids", ps[-1:])
    c = conn(a["id"])
    t.ok(c["stats"]["mqtt_source_messages_received"] >= 11, "stats count the messages", c)

with t.section("source: parse_json_payload false, include_metadata false", srv):
    source("raw", "raw", topics=["raw/#"], parse_json_payload=False, include_metadata=False,
           qos="at_least_once")
    b.pub("raw/x", ['{"n":1}'], qos=1)
    st.wait_until(lambda: payloads("raw"), 10)
    t.eq(payloads("raw"), [{"topic": "raw/x", "payload": '{"n":1}'}],
         "the JSON text kept as a string, no metadata")

with t.section("broker restart: the source reconnects, its session kept", srv):
    a = source("restart", "restart", topics=["r/#"], qos="at_least_once")
    b.pub("r/1", ['{"n":1}'], qos=1)
    st.wait_until(lambda: len(payloads("restart")) >= 1, 10)
    b.stop()
    b.start()
    b.pub("r/1", ['{"n":2}', '{"n":3}'], qos=1)
    got = st.wait_until(lambda: len(payloads("restart")) >= 3, 20)
    t.eq(sorted(p["payload"]["n"] for p in payloads("restart")), [1, 2, 3],
         "messages published after the broker restart are stored")
    c = conn(a["id"])
    t.ok(c["state"] == "running" and c["stats"]["mqtt_source_reconnects"] >= 1,
         "running again, one reconnection counted", c)

with t.section("sink: QoS 1 and 2, retain, topic from a field, dead letter for a missing field",
               srv):
    for qos, name in ((1, "at_least_once"), (2, "exactly_once")):
        strand = "out%d" % qos
        sub = b.sub("dev%d/#" % qos, 20, qos=qos, timeout=20)
        assert b.wait_subscribed("dev%d/#" % qos), b.log()
        k = create({"name": "pub%d" % qos, "kind": "mqtt-sink", "strands": [strand],
                    "config": {"broker_url": b.url, "topic": "dev%d/{device.id}/t" % qos,
                               "qos": name, "max_inflight": 7}})
        r = srv.req("POST", "/v1/records/batch", [
            {"strand": strand, "payload": {"device": {"id": "d%d" % (i % 3)}, "n": i}}
            for i in range(20)] + [{"strand": strand, "payload": {"n": "no device"}}])
        assert r.status in (200, 201), r
        out, err = sub.communicate(timeout=30)
        lines = [l.split(" ", 1) for l in out.splitlines()]
        t.eq(sorted(int(json.loads(v)["n"]) for _, v in lines), list(range(20)),
             "QoS %d: mosquitto_sub got every record once" % qos)
        t.ok(all(top == "dev%d/d%d/t" % (qos, json.loads(v)["n"] % 3) for top, v in lines),
             "QoS %d: each on the topic filled from device.id" % qos, lines[:3])
        per = {}
        for top, v in lines:
            per.setdefault(top, []).append(json.loads(v)["n"])
        t.ok(all(v == sorted(v) for v in per.values()), "QoS %d: in order per topic" % qos, per)
        st.wait_until(lambda: conn(k["id"])["stats"]["dead_lettered"] >= 1, 10)
        c = conn(k["id"])
        t.ok(c["stats"]["delivered"] == 20 and c["stats"]["dead_lettered"] == 1,
             "QoS %d: 20 delivered, the record without device.id dead-lettered" % qos, c)
    k = create({"name": "retained", "kind": "mqtt_sink", "strands": ["ret"],
                "config": {"broker_url": b.url, "topic": "state/{k}", "retain": True}})
    srv.req("POST", "/v1/records", {"strand": "ret", "payload": {"k": "lamp", "on": 1}})
    st.wait_until(lambda: conn(k["id"])["stats"]["delivered"] >= 1, 10)
    out, _ = b.sub("state/lamp", 1, timeout=5).communicate(timeout=15)
    t.eq(out.strip(), 'state/lamp {"k":"lamp","on":1}',
         "retain: a subscriber arriving afterwards gets the retained message")
    # a tombstone publishes an empty retained message: the broker forgets the retained one
    r = srv.req("POST", "/v1/records", {"strand": "ret", "payload": {"k": "lamp"}, "flags": 2})
    assert r.status == 201, r
    st.wait_until(lambda: conn(k["id"])["stats"]["delivered"] >= 2, 10)
    b.pub_one("state/lamp-probe", "x", qos=1, retain=True)
    out, _ = b.sub("state/#", 1, timeout=5).communicate(timeout=15)
    t.eq(out.strip(), "state/lamp-probe x",
         "a tombstone clears the retained message (a new subscriber gets only the other one)")

with t.section("mqtts with a self-signed CA made by the test", srv):
    d = st.tmpdir("sluice-mqtt-ca-")
    ca, cert, key = mqtt.make_ca(d)
    tb = mqtt.Broker(tls=(ca, cert, key))
    st.at_cleanup(tb.close)
    url = "mqtts://127.0.0.1:%d" % tb.tls_port
    a = create({"name": "tls", "kind": "mqtt", "config": {
        "broker_url": url, "topics": ["tls/#"], "qos": "at_least_once", "strand": "tls",
        "tls": {"ca_location": ca}}})
    ok = st.wait_until(lambda: conn(a["id"])["state"] == "running", 10)
    t.ok(ok and tb.wait_subscribed("tls/#"), "source connects over TLS, trusting the test's CA",
         conn(a["id"]))
    tb.pub("tls/a", ['{"secure":true}'], qos=1)
    st.wait_until(lambda: payloads("tls"), 10)
    t.eq([p["payload"] for p in payloads("tls")], [{"secure": True}],
         "a message published to the broker arrives over mqtts")
    sub = tb.sub("back/tls", 1, timeout=10)
    assert tb.wait_subscribed("back/tls"), tb.log()
    k = create({"name": "tls out", "kind": "mqtt_sink", "strands": ["tls"],
                "config": {"broker_url": url, "topic": "back/tls", "start": "earliest",
                           "tls": {"ca_location": ca}}})
    out, _ = sub.communicate(timeout=20)
    t.ok('"secure":true' in out, "the sink publishes over mqtts", out)
    u = create({"name": "untrusted", "kind": "mqtt", "config": {
        "broker_url": url, "topics": ["tls/#"], "connect_timeout_secs": 3}})
    st.wait_until(lambda: conn(u["id"])["last_error"], 10)
    c = conn(u["id"])
    t.ok(c["state"] != "running" and "certificate" in (c["last_error"] or ""),
         "without the CA the certificate is refused (%s)" % c["last_error"], c)

with t.section("auth: a refused login is not running with the broker's reason; the right one works",
               srv):
    ab = mqtt.Broker(users={"sensor": "s3cret"})
    st.at_cleanup(ab.close)
    bad = create({"name": "bad login", "kind": "mqtt", "config": {
        "broker_url": ab.url, "topics": ["auth/#"], "auth": {"username": "sensor",
                                                              "password": "wrong"}}})
    st.wait_until(lambda: conn(bad["id"])["last_error"], 10)
    c = conn(bad["id"])
    t.ok(c["state"] != "running" and "refused" in (c["last_error"] or ""),
         "wrong password: not running, last_error says the broker refused (%s)" % c["last_error"], c)
    t.eq(c["config"]["auth"]["password"], "***", "the password is never shown")
    good = create({"name": "good login", "kind": "mqtt", "config": {
        "broker_url": ab.url, "topics": ["auth/#"], "strand": "auth", "qos": "at_least_once",
        "auth": {"username": "sensor", "password": "s3cret"}}})
    ok = st.wait_until(lambda: conn(good["id"])["state"] == "running", 10)
    t.ok(ok and ab.wait_subscribed("auth/#"), "the right password: running", conn(good["id"]))
    ab.pub("auth/x", ['{"ok":1}'], qos=1, extra=["-u", "sensor", "-P", "s3cret"])
    st.wait_until(lambda: payloads("auth"), 10)
    t.eq([p["payload"] for p in payloads("auth")], [{"ok": 1}], "a message arrives")

with t.section("a broker that stops answering (SIGSTOP) is noticed by the keep alive", srv):
    import signal
    a = source("frozen", "frozen", topics=["f/#"], qos="at_least_once", keep_alive_secs=1)
    b.p.send_signal(signal.SIGSTOP)
    try:
        err = st.wait_until(lambda: "keep alive" in (conn(a["id"])["last_error"] or ""), 10)
        t.ok(err, "last_error says the broker stopped answering", conn(a["id"]))
    finally:
        b.p.send_signal(signal.SIGCONT)
    b.pub("f/x", ['{"back":1}'], qos=1)
    st.wait_until(lambda: payloads("frozen"), 20)
    t.eq([p["payload"] for p in payloads("frozen")], [{"back": 1}],
         "once the broker answers again, messages arrive")

with t.section("last_will: the broker publishes it when Sluice dies (kill -9)", srv):
    a = source("will", "will", topics=["w/#"], last_will={
        "topic": "clients/sluice/status", "message": "offline", "qos": "at_least_once",
        "retain": True})
    srv.kill()
    out, _ = b.sub("clients/sluice/status", 1, timeout=10).communicate(timeout=20)
    t.eq(out.strip(), "clients/sluice/status offline", "the retained will is published")
    srv.start()

with t.section("the outbound policy: a broker resolving to a denied address is never connected to",
               None):
    import socket
    import threading
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(16)
    hits = []

    def accept():
        while True:
            try:
                c, _ = ls.accept()
            except OSError:
                return
            hits.append(1)
            c.close()

    threading.Thread(target=accept, daemon=True).start()
    st.at_cleanup(ls.close)
    s2 = st.Server(args=["--outbound-deny-private", "1"]).start()
    url = "mqtt://localhost:%d" % ls.getsockname()[1]
    for kind, cfg in (("mqtt", {"broker_url": url, "topics": ["a"]}),
                      ("mqtt_sink", {"broker_url": url, "topic": "a"})):
        body = {"name": "deny-" + kind, "kind": kind, "config": cfg}
        if kind == "mqtt_sink":
            body["strands"] = ["o"]
        r = s2.req("POST", C, body)
        t.eq(r.status, 201, "%s to localhost: created (a name is checked when it resolves)" % kind)
        cid = r.json["id"]
        st.wait_until(lambda: "outbound policy" in (s2.req("GET", C + "/" + cid).json["last_error"]
                                                    or ""), 10)
        c = s2.req("GET", C + "/" + cid).json
        t.ok(c["state"] != "running" and "outbound policy" in (c["last_error"] or ""),
             "%s: not running, last_error names the outbound policy (%s)" % (kind, c["last_error"]),
             c)
    t.eq(len(hits), 0, "no connection reached the listener")
    r = s2.req("POST", C, {"name": "lit", "kind": "mqtt", "config": {
        "broker_url": "mqtt://10.1.2.3:1883", "topics": ["a"]}})
    t.ok(r.status == 400 and r.json["error"].startswith("config.broker_url:") and
         "10.0.0.0/8" in r.json["error"], "a literal private broker address: 400 naming the field", r)
    s2.stop()

t.done()
