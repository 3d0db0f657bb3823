"""SIGTERM while keep-alive clients are writing and reading: the server exits 0, every write it
acknowledged is on disk, requests that arrive during shutdown get 503 or a closed connection
(never a crash), and the chain verifies. A regression test: closing the store while open
keep-alive connections still sent requests used to crash the server."""
import socket
import threading
import time

import sluicetest as st

t = st.Checks()
st.require_binary(t)

for durability in ("fsync", "none"):
    with t.section("SIGTERM under load, durability %s" % durability):
        srv = st.Server(args=["--durability", durability, "--segment-bytes", "262144"]).start()
        acked = []  # (strand, seq, hash)
        statuses = {}
        lock = threading.Lock()
        stop = threading.Event()

        def writer(n):
            strand = "sd-%d" % (n % 2)
            try:
                c = srv.client(timeout=10)
            except OSError:
                return
            i = 0
            while not stop.is_set():
                try:
                    if n % 4 == 3:
                        r = c.request("GET", "/v1/strands")
                    else:
                        r = c.request("POST", "/v1/records", {"strand": strand, "payload": {"w": n, "i": i}})
                except Exception:
                    break  # connection closed by the shutdown
                with lock:
                    statuses[r.status] = statuses.get(r.status, 0) + 1
                    if r.status == 201:
                        acked.append((strand, r.json["seq"], r.json["record_hash"]))
                if r.status == 503:
                    break
                i += 1
            c.close()

        threads = [threading.Thread(target=writer, args=(n,)) for n in range(12)]
        for th in threads:
            th.start()
        deadline = time.monotonic() + 10
        while len(acked) < 3000 and time.monotonic() < deadline:
            time.sleep(0.01)
        rc = srv.stop(timeout=15)
        stop.set()
        for th in threads:
            th.join(20)
        t.eq(rc, 0, "durability %s: SIGTERM under load exits 0 (%d writes acknowledged)" % (durability, len(acked)))
        t.ok(set(statuses) <= {200, 201, 503}, "durability %s: only 200/201/503 answers during shutdown" % durability, statuses)
        srv.start()
        missing = []
        for strand, seq, h in acked:
            r = srv.req("GET", "/v1/records/" + h)
            if r.status != 200 or r.json.get("seq") != seq or r.json.get("strand") != strand:
                missing.append((strand, seq, r.status))
        t.ok(acked and not missing, "durability %s: every acknowledged write is there after restart" % durability,
             missing[:5])
        srv.stop()
        code, out, err = st.run_verify(srv.data)
        t.eq(code, 0, "durability %s: sluice verify passes after the shutdown" % durability)

with t.section("an idle server stops at once"):
    # quiesce and drain wait for whole passes of the event loops: a loop woken once must not
    # then sleep out its idle timeout (each of the two took 1 s, every restart 2 s)
    srv = st.Server().start()
    t0 = time.monotonic()
    rc = srv.stop()
    took = time.monotonic() - t0
    t.eq(rc, 0, "SIGTERM exits 0")
    t.ok(took < 1.0, "within 1 s of SIGTERM (took %.2f s)" % took)

with t.section("SIGTERM while a connector waits for a server that never answers"):
    # a TCP listener that accepts and never says a word: a database or broker that hangs. Each
    # connector below is stopped while its first connection waits on it (connect timeouts of 5 s,
    # or none for the PostgreSQL sink's URL): the stop must not wait them out.
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(64)
    port = lsock.getsockname()[1]
    held = []

    def accept():
        while True:
            try:
                held.append(lsock.accept()[0])
            except OSError:
                return
    threading.Thread(target=accept, daemon=True).start()
    cases = [
        {"name": "pg", "kind": "postgres_cdc", "config": {
            "host": "127.0.0.1", "port": port, "database": "d", "user": "u", "password": "p"}},
        {"name": "my", "kind": "mysql-cdc", "config": {
            "host": "127.0.0.1", "port": port, "database": "d", "user": "u", "password": "p",
            "server_id": 7}},
        {"name": "ps", "kind": "postgres_sink", "strands": ["x"], "config": {
            "connection.url": "postgres://u:p@127.0.0.1:%d/d" % port, "table.name": "t",
            "insert.mode": "insert"}},
        {"name": "k", "kind": "kafka", "config": {"brokers": ["127.0.0.1:%d" % port], "topic": "t"}},
        {"name": "ks", "kind": "kafka_sink", "strands": ["x"], "config": {
            "brokers": ["127.0.0.1:%d" % port], "topic": "t"}},
    ]
    for body in cases:
        srv = st.Server().start()
        srv.req("POST", "/v1/records?strand=x", {"n": 1})
        n0 = len(held)
        r = srv.req("POST", "/v1/connectors", body)
        connecting = r.status == 201 and st.wait_until(lambda: len(held) > n0, 10)
        t.ok(connecting, "%s: created, its first connection waits on the silent server" % body["kind"], r)
        t0 = time.monotonic()
        rc = srv.stop()
        took = time.monotonic() - t0
        t.ok(rc == 0 and took < 2.0, "%s: SIGTERM exits 0 within 2 s (took %.2f s, status %s)"
             % (body["kind"], took, rc))
    lsock.close()

t.done()
