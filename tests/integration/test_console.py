"""The web console at /ui/ (ui/, built into the binary) in Debian's chromium, driven headless by
npm puppeteer-core (tests/peers/console_check.mjs). What a user relies on: every page loads
without console errors; the create form shows the server's error at the field it names; the
test-ingest panel writes a record (and a Boboyka event) that the strand page then shows; the
pages work with the keyboard and at 375 px wide; the console's files are served without a token
(they hold no data) while the API behind them still asks for one. Screenshots are kept in
build/test-artifacts/console/."""
import json
import os
import shutil
import subprocess

import sluicetest as st

t = st.Checks()
st.require_binary(t)
NODE_DIR = os.environ.get("SLUICE_NODE_DIR") or os.path.join(st.ROOT, "build", "node")
if not os.path.exists("/usr/bin/chromium") or not os.path.isdir(os.path.join(NODE_DIR, "node_modules", "puppeteer-core")):
    t.ok(False, "chromium and puppeteer-core are installed (scripts/install-deps.sh)")
    t.done()
OUT = os.path.join(st.ROOT, "build", "test-artifacts", "console")
os.makedirs(OUT, exist_ok=True)
script = os.path.join(NODE_DIR, "sluice_console_check.mjs")
shutil.copy(os.path.join(st.ROOT, "tests", "peers", "console_check.mjs"), script)

srv = st.Server().start()
with t.section("the console's files", srv):
    r = srv.req("GET", "/ui")
    t.ok(r.status == 301 and r.headers.get("location") == "/ui/", "/ui redirects to /ui/", r)
    for path, ctype in (("/ui/", "text/html"), ("/ui/app.js", "text/javascript"), ("/ui/app.css", "text/css")):
        r = srv.req("GET", path)
        t.ok(r.status == 200 and r.headers.get("content-type", "").startswith(ctype)
             and "default-src 'self'" in r.headers.get("content-security-policy", ""),
             "%s: %s, with a Content-Security-Policy that allows nothing from elsewhere" % (path, ctype), r)
    t.eq(srv.req("GET", "/ui/nope.js").status, 404, "an unknown file: 404")
    html = srv.req("GET", "/ui/").body.decode() + srv.req("GET", "/ui/app.js").body.decode()
    t.ok("http://" not in html.replace("http://127.0.0.1:9/hook", "") and "https://" not in html,
         "nothing is loaded from another site")

with t.section("in chromium", srv):
    p = subprocess.run(["node", script, srv.url, OUT], capture_output=True, timeout=300)
    res = json.loads(p.stdout) if p.returncode == 0 and p.stdout.strip() else []
    t.ok(p.returncode == 0 and res, "puppeteer-core ran chromium over the console", p.stderr.decode()[-1500:])
    for x in res:
        t.ok(x["ok"], x["what"], x["detail"])
    t.ok(len([f for f in os.listdir(OUT) if f.endswith(".png")]) >= 8, "screenshots saved in build/test-artifacts/console")
srv.stop()

tokens = os.path.join(st.tmpdir(), "tokens.yaml")
with open(tokens, "w") as f:
    f.write("tokens:\n  - name: ops\n    scopes: [admin]\n    secret: %s\n" % st.secret("console-admin-token-0123456789"))
sec = st.Server(args=["--auth-tokens", tokens]).start()
with t.section("with API tokens: the files are open, the API is not", sec):
    t.eq(sec.req("GET", "/ui/").status, 200, "the console's page needs no token")
    t.eq(sec.req("GET", "/v1/strands").status, 401, "the API it calls still does (the page then asks for a token)")
sec.stop()
t.done()
