"""kill -9 of Sluice while mosquitto_pub keeps publishing to the MQTT source (persistent session,
clean_session false, on Debian's mosquitto): after the restart every message is in the strand; at
QoS 1 a message can be there twice (acknowledged only after the fsync, so one the broker sends
again may already be stored), at QoS 2 none is twice. Also the sink: kill -9 mid-publish, every
record reaches mosquitto_sub after the restart. And, with a scripted broker, the exact QoS 2 case:
a message whose record is stored and PUBRECed, sent again with DUP after a kill -9, is not stored
twice (the random kills above rarely land in that window)."""
import json
import os
import socket
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


# ---- a scripted broker: the exact order of acknowledgements and redeliveries ----


class Scripted:
    """A broker that speaks just enough MQTT 3.1.1 to replay a QoS 2 redelivery on cue: it
    accepts one client at a time, answers CONNECT (session present) and SUBSCRIBE, and lets the
    test send packets and wait for the client's. Not a broker: mosquitto is the broker of every
    other test; this one exists to put a DUP redelivery exactly after a kill -9."""

    def __init__(self):
        self.ls = socket.socket()
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(4)
        self.port = self.ls.getsockname()[1]
        self.c = None

    def accept(self, timeout=20):
        self.ls.settimeout(timeout)
        self.c, _ = self.ls.accept()
        self.c.settimeout(timeout)
        self.buf = b""
        typ, body = self.read()
        assert typ == 1, typ  # CONNECT
        self.c.sendall(bytes([0x20, 2, 1, 0]))  # CONNACK, session present
        typ, body = self.read()
        assert typ == 8, typ  # SUBSCRIBE
        self.c.sendall(bytes([0x90, 3]) + body[:2] + bytes([2]))

    def read(self):
        """(type, body) of the next packet from the client; PINGREQ answered and skipped."""
        while True:
            while True:
                if len(self.buf) >= 2:
                    n, mult, i = 0, 1, 1
                    while i < len(self.buf):
                        n += (self.buf[i] & 0x7f) * mult
                        mult *= 128
                        if not self.buf[i] & 0x80:
                            break
                        i += 1
                    if i < len(self.buf) and len(self.buf) >= i + 1 + n:
                        typ, body = self.buf[0] >> 4, self.buf[i + 1:i + 1 + n]
                        self.buf = self.buf[i + 1 + n:]
                        break
                more = self.c.recv(65536)
                if not more:
                    raise EOFError("the client closed the connection")
                self.buf += more
            if typ == 12:
                self.c.sendall(bytes([0xd0, 0]))
                continue
            return typ, body

    def publish(self, pid, payload, dup=False, qos=2):
        topic = b"q2/t"
        body = len(topic).to_bytes(2, "big") + topic + pid.to_bytes(2, "big") + payload
        self.c.sendall(bytes([0x30 | qos << 1 | (8 if dup else 0), len(body)]) + body)

    def send(self, typ, flags, pid):
        self.c.sendall(bytes([typ << 4 | flags, 2]) + pid.to_bytes(2, "big"))

    def close(self):
        if self.c:
            self.c.close()
        self.c = None


with t.section("QoS 2: a message sent again after a kill -9 (DUP) is acknowledged, not stored "
               "twice; PUBREC only once the record is stored", srv):
    sb = Scripted()
    st.at_cleanup(sb.ls.close)
    r = srv.req("POST", C, {"name": "scripted", "kind": "mqtt", "config": {
        "broker_url": "mqtt://127.0.0.1:%d" % sb.port, "topics": ["q2/#"], "qos": "exactly_once",
        "clean_session": False, "strand": "scripted"}})
    assert r.status == 201, r
    sb.accept()
    sb.publish(5, b'{"m":"first"}')
    typ, body = sb.read()
    stored = [p["payload"]["payload"] for p in st.all_records(srv.port, "scripted")]
    t.ok(typ == 5 and body == b"\x00\x05" and stored == [{"m": "first"}],
         "PUBREC 5 arrives, and by then the record is in the strand", (typ, body, stored))
    srv.kill()  # the broker never sees the PUBCOMP exchange: it will send PUBLISH 5 again
    sb.close()
    srv.start()
    sb.accept()
    sb.publish(5, b'{"m":"first"}', dup=True)
    typ, body = sb.read()
    t.ok(typ == 5 and body == b"\x00\x05", "the redelivery (DUP) is acknowledged with PUBREC 5",
         (typ, body))
    sb.send(6, 2, 5)  # PUBREL
    typ, body = sb.read()
    t.ok(typ == 7 and body == b"\x00\x05", "PUBREL 5 is answered with PUBCOMP 5", (typ, body))
    sb.publish(5, b'{"m":"second"}')  # id 5 again, a new message (DUP not set)
    typ, body = sb.read()
    ps = [p["payload"]["payload"] for p in st.all_records(srv.port, "scripted")]
    t.eq(ps, [{"m": "first"}, {"m": "second"}],
         "the strand holds the first message once, and a new one under the released id")
    sb.publish(9, b'{"m":"qos1"}', qos=1)
    typ, body = sb.read()
    ps = [p["payload"]["payload"] for p in st.all_records(srv.port, "scripted")]
    t.ok(typ == 4 and body == b"\x00\x09" and ps[-1:] == [{"m": "qos1"}],
         "QoS 1: PUBACK 9 arrives, and by then the record is in the strand", (typ, body, ps))
    sb.close()

t.done()
