"""The outbound policy (docs/security.md): outbound connectors never connect to a denied address.
Link-local (cloud metadata, 169.254.169.254) is denied by default and refused at create time when
the URL names it literally; with --outbound-deny-private 1 a name that resolves to a private
address (localhost) is refused at connect time (the health check and every request), with
last_error saying which rule, for HTTP targets (libcurl), PostgreSQL (libpq) and Kafka brokers
(librdkafka) alike; --outbound-allow opens a range again; a bad rule stops serve."""
import os
import socket
import subprocess
import sys
import threading
import time

import sluicetest as st

sys.path.insert(0, os.path.join(st.ROOT, "tests", "peers"))
from webhook_receiver import Receiver  # noqa: E402

t = st.Checks()
st.require_binary(t)
rx = Receiver().start()
st.at_cleanup(rx.stop)
wait = st.wait_until

srv = st.Server().start()
with t.section("link-local is denied by default, named at create time", srv):
    for url in ("http://169.254.169.254/latest/meta-data/", "http://[fe80::1]:8080/x"):
        r = srv.req("POST", "/v1/connectors", {"name": "meta", "kind": "webhook", "config": {"url": url}})
        t.ok(r.status == 400 and r.json["error"].startswith("config.url:") and "outbound policy" in r.json["error"],
             "%s -> 400 naming config.url and the rule" % url, r)
    r = srv.req("POST", "/v1/connectors", {"name": "local-ok", "kind": "webhook", "strands": ["o"],
                                           "config": {"url": rx.url("/ok")}})
    t.eq(r.status, 201, "a loopback target is allowed by default")
    srv.req("POST", "/v1/records", {"strand": "o", "payload": {"n": 1}})
    t.ok(rx.wait_for(lambda q: q if any(x["path"] == "/ok" for x in q) else None, 10), "and delivered to")
srv.stop()

port = rx.url("/").split(":")[2].split("/")[0]
srv2 = st.Server(args=["--outbound-deny-private", "1"]).start()
with t.section("deny_private: a name resolving to a private address is refused at connect time", srv2):
    rx.clear()
    r = srv2.req("POST", "/v1/connectors", {"name": "sneaky", "kind": "webhook", "strands": ["o"],
                                            "config": {"url": "http://localhost:%s/sneaky" % port}})
    t.eq(r.status, 201, "a name is accepted at create time (it is checked when it resolves)")
    cid = r.json["id"]
    srv2.req("POST", "/v1/records", {"strand": "o", "payload": {"n": 2}})
    c = wait(lambda: (lambda x: x if x["state"] == "unhealthy" and "outbound policy" in (x["last_error"] or "") else None)(
        srv2.req("GET", "/v1/connectors/" + cid).json), 10)
    t.ok(c, "not running: last_error says the resolved address is denied",
         srv2.req("GET", "/v1/connectors/" + cid).json)
    t.eq([q for q in rx.received() if q["path"] == "/sneaky"], [], "nothing reached the target")
    r = srv2.req("POST", "/v1/connectors", {"name": "lit", "kind": "webhook", "config": {"url": "http://10.1.2.3/x"}})
    t.ok(r.status == 400 and "10.0.0.0/8" in r.json["error"], "a literal private address: 400 at create", r)


class Listener:
    """A TCP listener on 127.0.0.1 that counts the connections made to it (a denied target)."""

    def __init__(self):
        self.s = socket.socket()
        self.s.bind(("127.0.0.1", 0))
        self.s.listen(16)
        self.port = self.s.getsockname()[1]
        self.hits = 0
        threading.Thread(target=self.run, daemon=True).start()

    def run(self):
        while True:
            try:
                c, _ = self.s.accept()
            except OSError:
                return
            self.hits += 1
            c.close()


with t.section("deny_private: PostgreSQL (libpq), Kafka (librdkafka), MySQL (libmariadb) connect only where allowed", srv2):
    pg_l, kafka_l = Listener(), Listener()
    cases = [("postgres_sink", {"connection.url": "postgresql://u:pw@localhost:%d/db" % pg_l.port, "table.name": "t", "insert.mode": "insert"}, pg_l),
             ("postgres_cdc", {"connection_string": "host=localhost port=%d dbname=db user=u" % pg_l.port}, pg_l),
             ("kafka_sink", {"brokers": ["localhost:%d" % kafka_l.port], "topic": "t"}, kafka_l),
             ("kafka", {"brokers": ["localhost:%d" % kafka_l.port], "topic": "t", "strand": "k"}, kafka_l),
             ("mysql-cdc", {"host": "127.0.0.1", "port": pg_l.port, "database": "db", "user": "u",
                            "password": "p", "server_id": 4242}, pg_l)]
    for kind, cfg, lst in cases:
        body = {"name": "deny-" + kind, "kind": kind, "config": cfg}
        if kind.endswith("sink"):
            body["strands"] = ["o"]
        t0 = time.monotonic()
        r = srv2.req("POST", "/v1/connectors", body)
        t.eq(r.status, 201, "%s to localhost: created (a name is checked when it resolves)" % kind)
        cid = r.json["id"] if r.status == 201 else ""
        c = wait(lambda: (lambda x: x if x["state"] in ("unhealthy", "failed", "restarting", "running")
                          and "outbound policy" in (x["last_error"] or "") else None)(
            srv2.req("GET", "/v1/connectors/" + cid).json), 15)
        took = time.monotonic() - t0
        t.ok(c, "%s: last_error says the resolved address is denied by the outbound policy" % kind,
             srv2.req("GET", "/v1/connectors/" + cid).json)
        if kind.startswith("kafka"):
            # every bootstrap broker refused: the health check stops waiting for an answer
            # (it waited out its 5 s before)
            t.ok(c and took < 2.5, "%s: said within 2.5 s (%.2f s)" % (kind, took))
        srv2.req("DELETE", "/v1/connectors/" + cid)
    srv2.req("POST", "/v1/records", {"strand": "o", "payload": {"n": 3}})
    t.eq((pg_l.hits, kafka_l.hits), (0, 0), "no connection reached the database or the Kafka listener")
    for kind, cfg, field in (("kafka_sink", {"brokers": ["10.1.2.3:9092"], "topic": "t"}, "config.brokers[0]"),
                             ("postgres_sink", {"connection.url": "postgresql://10.1.2.3/db", "table.name": "t"}, None)):
        r = srv2.req("POST", "/v1/connectors", {"name": "lit-" + kind, "kind": kind, "config": cfg})
        if field:
            t.ok(r.status == 400 and r.json["error"].startswith(field) and "10.0.0.0/8" in r.json["error"],
                 "%s: a literal private broker address -> 400 naming %s" % (kind, field), r)
        elif r.status == 201:
            srv2.req("DELETE", "/v1/connectors/" + r.json["id"])
srv2.stop()

class Redirector:
    """An allowed HTTP target that answers every request with 302 to location."""

    def __init__(self, location):
        import http.server

        class H(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.send_response(302)
                self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass
        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.port = self.srv.server_port
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()


srv4 = st.Server(args=["--outbound-deny", "127.0.0.2/32"]).start()
with t.section("an allowed target that redirects to a denied one: the redirect is not followed", srv4):
    denied = socket.socket()
    denied.bind(("127.0.0.2", 0))
    denied.listen(4)
    hits = []
    threading.Thread(target=lambda: [hits.append(denied.accept()) for _ in range(4)], daemon=True).start()
    red = Redirector("http://127.0.0.2:%d/metadata" % denied.getsockname()[1])
    r = srv4.req("POST", "/v1/connectors", {"name": "redir", "kind": "webhook", "strands": ["o"],
                                            "config": {"url": "http://127.0.0.1:%d/hook" % red.port,
                                                       "retry": {"max_retries": 0}}})
    cid = r.json["id"]
    srv4.req("POST", "/v1/records", {"strand": "o", "payload": {"n": 4}})
    c = wait(lambda: (lambda x: x if x["stats"]["dead_lettered"] >= 1 else None)(srv4.req("GET", "/v1/connectors/" + cid).json), 15)
    dl = srv4.req("GET", "/v1/connectors/%s/dead-letters" % cid).json
    t.ok(c and dl["dead_letters"] and dl["dead_letters"][0]["last_status"] == 302,
         "the 302 is the target's answer (a dead letter with status 302), not followed", dl)
    t.eq(hits, [], "nothing reached the denied address the redirect named")
    red.srv.shutdown()
    denied.close()
srv4.stop()

srv3 = st.Server(args=["--outbound-deny-private", "1", "--outbound-allow", "127.0.0.1/32"]).start()
with t.section("outbound_allow opens a range again", srv3):
    rx.clear()
    r = srv3.req("POST", "/v1/connectors", {"name": "allowed", "kind": "webhook", "strands": ["o"],
                                            "config": {"url": "http://127.0.0.1:%s/allowed" % port}})
    srv3.req("POST", "/v1/records", {"strand": "o", "payload": {"n": 3}})
    t.ok(r.status == 201 and rx.wait_for(lambda q: q if any(x["path"] == "/allowed" for x in q) else None, 10),
         "127.0.0.1 allowed: delivered")
srv3.stop()

with t.section("a bad rule stops serve naming the option", None):
    p = subprocess.run([st.SLUICE_BIN, "serve", "--data", os.path.join(st.tmpdir(), "d"), "--listen", "127.0.0.1:0",
                        "--outbound-deny", "10.0.0.0/40"], capture_output=True, text=True, timeout=20)
    t.ok(p.returncode == 2 and "outbound_deny" in p.stderr and "10.0.0.0/40" in p.stderr, "exit 2 naming it", p.stderr)
t.done()
