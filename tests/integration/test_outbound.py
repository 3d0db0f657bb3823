"""The outbound policy (docs/security.md): outbound connectors never connect to a denied address.
Link-local (cloud metadata, 169.254.169.254) is denied by default and refused at create time when
the URL names it literally; with --outbound-deny-private 1 a name that resolves to a private
address (localhost) is refused at connect time (the health check and every request), with
last_error saying which rule; --outbound-allow opens a range again; a bad rule stops serve."""
import os
import subprocess
import sys

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
srv2.stop()

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
