"""The MQTT benchmark (run through bench/mqtt.sh): mosquitto, Sluice and mosquitto_sub in the same
run, against the same broker.

Peer: mosquitto_sub -q 1 -C N subscribes to bench/peer/#, output to /dev/null; PUBS mosquitto_pub
processes (-q 1 -l, N/PUBS lines each, one topic each) publish; the time runs from the first
publisher's start until mosquitto_sub has received N messages and exits.

Sluice: a mqtt source (qos at_least_once, clean_session false) subscribed to bench/sluice/#; the
same publishers; the time runs from the first publisher's start until the strand holds N records
(they are counted once appended, and the source acknowledges each message only after its record
is fsynced, so the broker's in-flight window bounds it: INFLIGHT).

Prints both rates and the ratio Sluice / mosquitto_sub."""
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
sys.path.insert(0, os.path.join(ROOT, "tests", "peers"))
sys.dont_write_bytecode = True
import sluicetest as st  # noqa: E402
import mqtt  # noqa: E402

N = int(os.environ.get("N", "200000"))
SIZE = int(os.environ.get("SIZE", "200"))
PUBS = int(os.environ.get("PUBS", "8"))
INFLIGHT = os.environ.get("INFLIGHT")


def log(msg):
    sys.stderr.write("[mqtt bench %s] %s\n" % (time.strftime("%H:%M:%S"), msg))


def publish(b, prefix, files):
    procs = [subprocess.Popen([mqtt._exe("mosquitto_pub"), "-h", "127.0.0.1", "-p", str(b.port),
                               "-q", "1", "-t", "%s/%d" % (prefix, i), "-l", "-i",
                               "pub-%s-%d" % (prefix.replace("/", "-"), i)],
                              stdin=open(f, "rb"), stdout=subprocess.DEVNULL)
             for i, f in enumerate(files)]
    return procs


def main():
    why = mqtt.available()
    if why:
        sys.exit("bench/mqtt.sh: " + why)
    tmp = st.tmpdir("sluice-mqtt-bench-")
    per = N // PUBS
    files = []
    for p in range(PUBS):
        f = os.path.join(tmp, "pub%d.txt" % p)
        with open(f, "w") as out:
            for i in range(p * per, (p + 1) * per):
                head = '{"i":%d,"pad":"' % i
                out.write(head + "x" * (SIZE - len(head) - 2) + '"}\n')
        files.append(f)
    n = per * PUBS
    b = mqtt.Broker(max_inflight=int(INFLIGHT) if INFLIGHT else None)
    st.at_cleanup(b.close)
    log("mosquitto on %d (max_inflight_messages %s); %d messages of %d bytes from %d publishers"
        % (b.port, INFLIGHT or "20, the default", n, SIZE, PUBS))

    # ---- the peer: mosquitto_sub to /dev/null ----
    sub = subprocess.Popen([mqtt._exe("mosquitto_sub"), "-h", "127.0.0.1", "-p", str(b.port),
                            "-q", "1", "-t", "bench/peer/#", "-C", str(n)],
                           stdout=subprocess.DEVNULL)
    if not b.wait_subscribed("bench/peer/#"):
        sys.exit("mosquitto_sub did not subscribe")
    t0 = time.monotonic()
    pubs = publish(b, "bench/peer", files)
    sub.wait(timeout=3600)
    peer = time.monotonic() - t0
    for p in pubs:
        p.wait()
    log("mosquitto_sub: %d messages in %.2f s" % (n, peer))

    # ---- Sluice: the mqtt source into a durable strand ----
    srv = st.Server().start()
    r = srv.req("POST", "/v1/connectors", {"name": "bench", "kind": "mqtt", "config": {
        "broker_url": b.url, "topics": ["bench/sluice/#"], "qos": "at_least_once",
        "clean_session": False, "strand": "mqtt_bench", "include_metadata": True}})
    if r.status != 201:
        sys.exit("creating the source: %r" % r)
    if not b.wait_subscribed("bench/sluice/#"):
        sys.exit("the source did not subscribe")
    t0 = time.monotonic()
    pubs = publish(b, "bench/sluice", files)

    def count():
        return st.counts(srv.port).get("mqtt_bench", 0)

    st.wait_until(lambda: count() >= n, 3600, 0.05)
    mine = time.monotonic() - t0
    for p in pubs:
        p.wait()
    got = count()
    srv.stop()
    if got < n:
        sys.exit("the strand holds %d of %d messages" % (got, n))
    log("Sluice: %d messages durable in %.2f s" % (n, mine))
    print("mqtt source QoS 1, %d x %d B from %d publishers: mosquitto_sub %.0f msg/s, Sluice %.0f "
          "msg/s durable, ratio %.2f" % (n, SIZE, PUBS, n / peer, n / mine, peer / mine))


main()
