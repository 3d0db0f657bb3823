"""API tokens and scopes (docs/security.md): with --auth-tokens every route but /v1/health needs
`Authorization: Bearer` with the route's scope (read < write < admin): 401 without a valid
token, 403 with too small a scope, both JSON naming what is needed, and nothing written on a
refusal. A non-loopback listener without tokens is refused unless --insecure-no-auth. A bad
tokens file stops serve naming the line. The secrets never appear in the server's log."""
import hashlib
import os
import time
import re
import subprocess

import sluicetest as st

t = st.Checks()
st.require_binary(t)
work = st.tmpdir()
ADMIN, WRITE, READ = map(st.secret, ("admin-secret-0123456789", "ingest-secret-0123456789", "viewer-secret-0123456789"))
with open(os.path.join(work, "viewer.secret"), "w") as f:
    f.write(READ + "\n")
tokens = os.path.join(work, "tokens.yaml")
with open(tokens, "w") as f:
    f.write("""tokens:
  - name: ops
    scopes: [admin]
    secret_sha256: %s
  - name: ingest
    scopes: [write]
    secret: %s
  - name: viewer
    scope: read
    secret: ${file:%s}
""" % (hashlib.sha256(ADMIN.encode()).hexdigest(), WRITE, os.path.join(work, "viewer.secret")))

srv = st.Server(args=["--auth-tokens", tokens]).start()


def call(method, path, body=None, token=None, ctype="application/json"):
    h = {"Authorization": "Bearer " + token} if token else {}
    return srv.req(method, path, body, headers=h)


def count(strand):
    r = call("GET", "/v1/strands", token=ADMIN)
    return sum(s["count"] for s in r.json["strands"] if s["name"] == strand)


with t.section("every kind of route x no token, wrong token, each scope", srv):
    call("POST", "/v1/records", {"strand": "m", "payload": {"seed": 1}}, ADMIN)
    bridge = call("POST", "/v1/connectors", {"name": "br", "kind": "rest_bridge", "config": {"strand": "m"}}, ADMIN).json["id"]
    routes = [  # method, path, body, scope needed
        ("GET", "/v1/strands", None, "read"),
        ("GET", "/v1/strands/m/records", None, "read"),
        ("GET", "/v1/connectors", None, "read"),
        ("GET", "/v1/connector-kinds", None, "read"),
        ("GET", "/api/v1/connectors", None, "read"),
        ("GET", "/metrics", None, "read"),
        ("GET", "/v1/boboyka/status", None, "read"),
        ("POST", "/v1/records", {"strand": "m", "payload": {"x": 1}}, "write"),
        ("POST", "/v1/records/batch", [{"strand": "m", "payload": 2}], "write"),
        ("POST", "/v1/connectors/inbound/rest/%s/push" % bridge, {"x": 1}, "write"),
        ("POST", "/v1/boboyka/ingest", {"record_type": "audit_log", "data": {"event": "e"}}, "write"),
        ("POST", "/v1/connectors", {"name": "w", "kind": "stdout"}, "admin"),
        ("PATCH", "/v1/connectors/" + bridge, {"enabled": True}, "admin"),
        ("POST", "/v1/connectors/%s/restart" % bridge, None, "admin"),
        ("POST", "/api/v1/connectors", {"name": "sh", "connectorClass": "webhook", "topics": ["m"],
                                        "config": {"url": "http://127.0.0.1:9/x"}}, "admin"),
    ]
    order = {"read": 1, "write": 2, "admin": 3}
    tok = {"read": READ, "write": WRITE, "admin": ADMIN}
    bad = []
    for method, path, body, need in routes:
        for who in (None, "wrong-token-xxxxxxxxxxxx", "read", "write", "admin"):
            before = (count("m"), len(call("GET", "/v1/connectors", token=ADMIN).json["connectors"]))
            r = call(method, path, body, tok.get(who, who))
            after = (count("m"), len(call("GET", "/v1/connectors", token=ADMIN).json["connectors"]))
            if who not in order:
                ok = r.status == 401 and r.json.get("code") == "unauthorized" and need in r.json["error"] \
                    and r.headers.get("www-authenticate") == "Bearer" and before == after
            elif order[who] < order[need]:
                ok = r.status == 403 and r.json.get("code") == "forbidden" and need in r.json["error"] \
                    and before == after
            else:
                ok = r.status < 400
            if not ok:
                bad.append((method, path, who, r.status, r.body[:120]))
            if ok and r.status < 400 and method == "POST" and path in ("/v1/connectors", "/api/v1/connectors"):
                cid = r.json.get("id")
                call("DELETE", "/v1/connectors/" + cid, token=ADMIN)
    t.eq(bad, [], "401 without a valid token, 403 below the route's scope (nothing written), 2xx at or above it")
    t.eq(call("GET", "/v1/health").status, 200, "/v1/health needs no token")

with t.section("every route docs/openapi.yaml documents: 401 without a token, 403 one scope below", srv):
    import yaml
    spec = yaml.safe_load(open(os.path.join(st.ROOT, "docs", "openapi.yaml")))
    writes = ("/v1/records", "/v1/records/batch", "/v1/boboyka/ingest", "/v1/connectors/inbound/rest/{id}/push",
              "/api/v1/connectors/inbound/rest/{id}/push")
    below = {"write": "read", "admin": "write"}
    bad, n = [], 0
    for tp, item in spec["paths"].items():
        for m in ("get", "post", "patch", "delete"):
            if m not in item or tp == "/v1/health" or tp.startswith("/ui"):
                continue
            need = "read" if m == "get" else "write" if tp in writes else "admin"
            path = re.sub(r"\{[^}]*\}", "zz", tp).replace("/tile/zz", "/tile/0/000")
            before = (count("m"), len(call("GET", "/v1/connectors", token=ADMIN).json["connectors"]))
            r0 = call(m.upper(), path, None)
            r1 = call(m.upper(), path, None, tok[below[need]]) if need in below else None
            after = (count("m"), len(call("GET", "/v1/connectors", token=ADMIN).json["connectors"]))
            r2 = call(m.upper(), path, None, tok[need]) if m == "get" else None
            n += 1
            if r0.status != 401 or (r1 is not None and r1.status != 403) or before != after \
                    or (r2 is not None and r2.status in (401, 403)):
                bad.append((m.upper(), tp, need, r0.status, r1 and r1.status, r2 and r2.status))
    t.eq(bad, [], "%d documented operations: each refused without a token and below its scope, nothing written" % n)

PUSH = st.secret("bridge-push-token-0123456789")
with t.section("a REST bridge's push token: that bridge, nothing else", srv):
    r = call("POST", "/v1/connectors", {"name": "pb", "kind": "rest_bridge", "config": {"strand": "pushed",
                                                                                       "push_token": PUSH}}, ADMIN)
    pb = r.json["id"]
    t.eq(r.json["config"]["push_token"], "***", "the push token is shown as ***")
    t.eq(call("POST", "/v1/connectors/inbound/rest/%s/push" % pb, {"a": 1}, PUSH).status, 201, "it pushes to its bridge")
    t.eq(call("POST", "/v1/connectors/inbound/rest/%s/push" % pb, {"a": 1}, WRITE).status, 201, "a write token too")
    for method, path, body in [("POST", "/v1/connectors/inbound/rest/%s/push" % bridge, {"a": 1}),
                               ("POST", "/v1/records", {"strand": "pushed", "payload": 1}),
                               ("GET", "/v1/strands", None)]:
        t.eq(call(method, path, body, PUSH).status, 401, "the push token is nothing elsewhere: %s %s" % (method, path))
    for tokn in (None, READ, "not-the-push-token-xxxxxx"):
        before = count("pushed")
        r = call("POST", "/v1/connectors/inbound/rest/%s/push" % pb, {"a": 1}, tokn)
        t.ok(r.status in (401, 403) and count("pushed") == before, "a push with %s: refused, nothing written" % (
            "no token" if tokn is None else "another token"), r)
    r = call("POST", "/v1/connectors", {"name": "pb2", "kind": "rest_bridge", "config": {"push_token": "short"}}, ADMIN)
    t.ok(r.status == 400 and r.json["error"].startswith("config.push_token"), "a short push token: 400", r)
    t.eq(call("POST", "/v1/connectors/inbound/rest/nope/push", {"a": 1}).status, 401,
         "an unknown bridge: 401 to whoever may not push (its existence is not told)")

with t.section("the audit strand: management requests and refused tokens, who and how they ended", srv):
    r = call("POST", "/v1/connectors", {"name": "audited", "kind": "rest_bridge",
                                        "config": {"push_token": PUSH + "-2"}}, ADMIN)
    aid = r.json["id"]
    call("PATCH", "/v1/connectors/" + aid, {"name": "audited-renamed", "enabled": False}, ADMIN)
    call("DELETE", "/v1/connectors/" + aid, None, ADMIN)
    recs = call("GET", "/v1/strands/sluice.audit/records?limit=10000", token=READ).json["records"]
    rows = [r["payload"] for r in recs]
    mine = [x for x in rows if aid in x["path"] or any(c["id"] == aid for c in x.get("changes", []))]
    ch = [x.get("changes", [{}])[0] for x in mine]
    t.eq([x["method"] for x in mine], ["POST", "PATCH", "DELETE"], "create, change and delete of one connector are recorded")
    t.ok(len(ch) == 3 and ch[0]["before"] is None and ch[0]["after"]["name"] == "audited"
         and ch[0]["after"]["config"]["push_token"] == "***" and ch[0]["after"]["kind"] == "rest_bridge",
         "the create: before null, after its name, kind and config with the secret as ***", ch[:1])
    t.ok(len(ch) == 3 and ch[1]["before"]["name"] == "audited" and ch[1]["before"]["enabled"] is True
         and ch[1]["after"]["name"] == "audited-renamed" and ch[1]["after"]["enabled"] is False,
         "the change: before and after", ch[1:2])
    t.ok(len(ch) == 3 and ch[2]["before"]["name"] == "audited-renamed" and ch[2]["after"] is None,
         "the delete: before, and after null", ch[2:])
    t.ok(any(x["token"] == "ops" and x["method"] == "POST" and x["path"] == "/v1/connectors" and x["status"] == 201
             and x["from"] == "127.0.0.1" for x in rows), "a connector created by the ops token is there, from 127.0.0.1",
         rows[:3])
    t.ok(any(x["token"] is None and x["status"] == 401 for x in rows) and
         any(x["token"] == "viewer" and x["status"] == 403 for x in rows),
         "refused requests are there too: no token (401), a read token on an admin route (403)")
    t.ok(not any(x["method"] == "GET" and x["status"] < 400 for x in rows),
         "reads are not audited")
    t.ok(all(s not in str(rows) for s in (ADMIN, WRITE, READ, PUSH)), "no secret in the audit records")

with t.section("the secrets are not in the log; protected mode; bad tokens files", srv):
    srv.stop()
    log = open(srv.log_path, "rb").read().decode("utf-8", "replace")
    t.ok(all(s not in log for s in (ADMIN, WRITE, READ, PUSH)), "no secret in the server's log")
    rc, out, err = st.run_verify(srv.data, "sluice.audit")
    audited = st.parse_verify_ok(out).get("sluice.audit", (0, ""))[0]
    t.ok(rc == 0 and audited == len(rows), "sluice verify checks the audit strand's %d records (hash chain, tree)" % audited,
         out + err)
    bad_modes = []
    for d, dirs, files in os.walk(srv.data):
        for x in dirs:
            if os.stat(os.path.join(d, x)).st_mode & 0o077:
                bad_modes.append(os.path.join(d, x))
        for x in files:
            if os.stat(os.path.join(d, x)).st_mode & 0o077:
                bad_modes.append(os.path.join(d, x))
    t.eq(bad_modes, [], "every directory and file the server made in its data dir is its user's alone")
    p = subprocess.run([st.SLUICE_BIN, "serve", "--data", os.path.join(work, "d2"), "--listen", "0.0.0.0:0"],
                       capture_output=True, text=True, timeout=20)
    t.ok(p.returncode == 2 and "without API tokens" in p.stderr and "--insecure-no-auth" in p.stderr,
         "a non-loopback listener without tokens: refused, saying how to fix it", p.stderr)
    d4 = os.path.join(work, "d4")
    logf = open(os.path.join(work, "insecure.log"), "w+")
    p = subprocess.Popen([st.SLUICE_BIN, "serve", "--data", d4, "--listen", "0.0.0.0:0", "--insecure-no-auth"],
                         stdout=logf, stderr=logf)
    port = st.wait_until(lambda: (lambda m: int(m.group(1)) if m else None)(
        re.search(r"listening on 0\.0\.0\.0:(\d+)", open(logf.name).read())), 10)
    t.ok(port and st.req(port, "GET", "/v1/strands").status == 200,
         "with --insecure-no-auth it serves without tokens")
    r = st.req(port, "POST", "/v1/connectors", {"name": "pb", "kind": "rest_bridge", "config": {"push_token": PUSH}})
    path = "/v1/connectors/inbound/rest/%s/push" % r.json["id"]
    t.ok(st.req(port, "POST", path, {"a": 1}).status == 401 and
         st.req(port, "POST", path, {"a": 1}, headers={"Authorization": "Bearer " + PUSH}).status == 201,
         "without --auth-tokens a bridge with a push token still needs it")
    p.terminate()
    p.wait(10)
    pub = st.Server(args=["--auth-tokens", tokens, "--metrics-public", "1"]).start()
    t.ok(pub.req("GET", "/metrics").status == 200 and pub.req("GET", "/v1/strands").status == 401,
         "--metrics-public 1: /metrics needs no token, the rest still does")
    pub.stop()
    for text, where in [("tokens:\n  - name: a\n    scopes: [root]\n    secret: 0123456789abcdefgh\n", ":3:5: tokens[0].scopes"),
                        ("tokens:\n  - name: a\n    scopes: [read]\n    secret_sha256: abc\n", ":4:5: tokens[0].secret_sha256"),
                        ("tokens:\n  - name: a\n    scopes: [read]\n    secret: short\n", ":4:5: tokens[0].secret"),
                        ("tokens:\n  - name: a\n    scopes: [read]\n", ":2:5: tokens[0]"),
                        ("tokens: []\n", ":1:1: tokens")]:
        bf = os.path.join(work, "bad.yaml")
        with open(bf, "w") as f:
            f.write(text)
        p = subprocess.run([st.SLUICE_BIN, "serve", "--data", os.path.join(work, "d3"), "--listen", "127.0.0.1:0",
                            "--auth-tokens", bf], capture_output=True, text=True, timeout=20)
        t.ok(p.returncode == 2 and (bf + where) in p.stderr, "a bad tokens file stops serve: %s" % where, p.stderr)
with t.section("a token's rate limit: 429 with Retry-After past its burst, other tokens unaffected", None):
    rl = os.path.join(work, "rl.yaml")
    with open(rl, "w") as f:
        f.write("""tokens:
  - name: slow
    scopes: [read]
    secret: slow-secret-0123456789
    rate_limit: {requests_per_second: 0.5, burst: 2}
  - name: fast
    scopes: [read]
    secret: fast-secret-0123456789
""")
    rs = st.Server(args=["--auth-tokens", rl]).start()
    hs = {"Authorization": "Bearer slow-secret-0123456789"}
    got = [rs.req("GET", "/v1/strands", headers=hs) for _ in range(3)]
    t.ok([g.status for g in got] == [200, 200, 429] and got[2].json["code"] == "rate_limited"
         and int(got[2].headers.get("retry-after", "0")) >= 1, "two within the burst, the third 429 with Retry-After",
         [(g.status, g.headers.get("retry-after")) for g in got])
    t.eq(rs.req("GET", "/v1/strands", headers={"Authorization": "Bearer fast-secret-0123456789"}).status, 200,
         "another token is not limited")
    rs.stop()

with t.section("max_connections_per_ip: one address cannot take every connection", None):
    import socket
    lim = st.Server(args=["--max-connections-per-ip", "2"]).start()
    held = [socket.create_connection(("127.0.0.1", lim.port)) for _ in range(2)]
    extra = socket.create_connection(("127.0.0.1", lim.port))
    extra.settimeout(5)
    try:
        extra.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
        got = extra.recv(100)
    except OSError:
        got = b""
    t.eq(got, b"", "a third connection from the same address is closed without an answer")
    for c in held:
        c.close()
    extra.close()
    def served():
        try:
            return lim.req("GET", "/v1/health").status == 200
        except OSError:  # the server has not seen the closes yet
            return False
    t.ok(st.wait_until(served, 5), "once they are closed it is served again")
    lim.stop()


def trickle(sock, first, step, seconds):
    """Sends first, then one byte of step per 0.25 s for at most seconds; how long until the
    server closed the connection (None if it never did), and what it answered."""
    t0, got = time.monotonic(), b""
    sock.settimeout(0.25)
    sock.sendall(first)
    while time.monotonic() - t0 < seconds:
        try:
            sock.sendall(step)
            d = sock.recv(4096)
            if not d:
                return time.monotonic() - t0, got
            got += d
        except socket.timeout:
            pass
        except OSError:
            return time.monotonic() - t0, got
    return None, got


with t.section("slowloris: headers and bodies sent too slowly are cut off, others are served", None):
    import socket
    slow = st.Server(args=["--header-timeout-s", "2", "--body-timeout-s", "2"]).start()
    a = socket.create_connection(("127.0.0.1", slow.port))
    before = st.req(slow.port, "GET", "/v1/strands").json
    took, got = trickle(a, b"GET /v1/health HTTP/1.1\r\n", b"X", 8)
    t.ok(took is not None and 1.5 < took < 4 and got == b"",
         "a connection trickling its headers a byte at a time is closed after header_timeout_s (2 s): %s" % took)
    b = socket.create_connection(("127.0.0.1", slow.port))
    took, got = trickle(b, b"POST /v1/records HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                           b"Content-Length: 200\r\n\r\n{\"payload\": ", b" ", 8)
    t.ok(took is not None and 1.5 < took < 4, "a body trickled a byte at a time is cut off after body_timeout_s (2 s): %s" % took)
    t.eq(st.req(slow.port, "GET", "/v1/strands").json, before, "nothing of it was written")
    c = st.Client(slow.port)
    t.eq(c.request("GET", "/v1/health").status, 200, "a client that sends its request at once is served")
    time.sleep(3)  # the scenario, not a wait for a result: idle past the header deadline (first requests only)
    t.eq(c.request("GET", "/v1/health").status, 200, "and its kept-alive connection stays usable after the deadline")
    c.close()
    a.close()
    b.close()
    slow.stop()
t.done()
