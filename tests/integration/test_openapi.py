"""docs/openapi.yaml (OpenAPI 3.1) against the server it describes. What a user relies on: the
document is valid (linted by @redocly/cli, with no warning but the one exception its ignore file
explains); the server serves the same document at /v1/openapi.json; every route the router knows
(the paths src/api/router.c and streamhouse.c match) is documented, every documented route exists
with exactly the documented methods (an undocumented method gets 405 with an Allow header that
lists them); and real answers, to every documented operation, validate against the documented
schema of their status, checked by ajv (JSON Schema 2020-12, npm) and not by code of ours."""
import json
import os
import re
import subprocess
import urllib.parse

import yaml

import sluicetest as st

t = st.Checks()
st.require_binary(t)
NODE_DIR = os.environ.get("SLUICE_NODE_DIR") or os.path.join(st.ROOT, "build", "node")
SPEC_PATH = os.path.join(st.ROOT, "docs", "openapi.yaml")
with open(SPEC_PATH) as f:
    SPEC = yaml.safe_load(f)
METHODS = ("get", "put", "post", "patch", "delete")

with t.section("redocly lints the document", None):
    redocly = os.path.join(NODE_DIR, "node_modules", ".bin", "redocly")
    p = subprocess.run([redocly, "lint", "docs/openapi.yaml"], cwd=st.ROOT, capture_output=True, text=True, timeout=300)
    out = p.stdout + p.stderr
    t.ok(p.returncode == 0 and "is valid" in out and "warning" not in out.split("validating docs/openapi.yaml")[-1],
         "@redocly/cli lint: valid, no warnings", out[-1500:])

srv = st.Server().start()

with t.section("GET /v1/openapi.json is the document", srv):
    r = srv.req("GET", "/v1/openapi.json")
    t.ok(r.status == 200 and r.json == SPEC, "the served JSON equals docs/openapi.yaml", r.status)

with t.section("every path the router matches is documented", None):
    src = open(os.path.join(st.ROOT, "src", "api", "router.c")).read() + open(os.path.join(st.ROOT, "src", "api", "streamhouse.c")).read()
    known = set()
    for lit in re.findall(r'strn?cmp\(p, "(/[^"]*)"', src):
        if not lit.endswith("/"):  # a prefix test (strncmp "/v1/strands/") is not a route
            known.add(lit)
    for pre, suf in re.findall(r'match_param\(p, "([^"]*)", "([^"]*)"', src):
        known.add(pre + "{}" + suf)
    for suf in re.findall(r'match_key\(p, "([^"]*)"', src):
        known.add("/api/v1/connectors/{}" + suf)
    for suf in re.findall(r'strn?cmp\(slash, "(/[^"]*)"', src):  # the proof routes
        known.add("/v1/strands/{}" + (suf + "{}" if suf.endswith("/") else suf))
    documented = {re.sub(r"\{[^}]*\}", "{}", p) for p in SPEC["paths"]}
    known.discard("/api/v1/")
    t.eq(sorted(known - documented), [], "no route the router matches is missing from the document")
    t.ok(len(known) >= 30, "the router's routes were found in its source (%d)" % len(known))

# ---------------------------------------------------------------- live calls
# Everything a call needs: a strand with records, a connector of each API, a REST bridge.
c = srv.client()
w = c.request("POST", "/v1/records", {"strand": "oa", "payload": {"n": 1}}).json
c.request("POST", "/v1/records/batch", [{"strand": "oa", "payload": {"n": k}} for k in range(2, 6)])
bridge = c.request("POST", "/v1/connectors", {"name": "oa-bridge", "kind": "rest_bridge", "config": {"strand": "oa"}}).json
sink = c.request("POST", "/v1/connectors", {"name": "oa-sink", "kind": "stdout", "strands": ["oa"], "config": {}}).json
shc = c.request("POST", "/api/v1/connectors", {"name": "oa sh", "connectorClass": "stdout", "topics": ["oa"], "config": {}}).json
VALUES = {"name": "oa", "record_hash": w["record_hash"], "id": sink["id"], "key": urllib.parse.quote(shc["name"]),
          "tile": "0/000.p/6", "file": "app.js"}


def concrete(template, method):
    params = dict(VALUES)
    if "/inbound/rest/" in template:
        params["id"] = bridge["id"]
    return re.sub(r"\{([^}]*)\}", lambda m: params[m.group(1)], template)


QUERY = {"/v1/strands/{name}/latest": "?key=n", "/v1/strands/{name}/proof/inclusion": "?seq=0",
         "/v1/strands/{name}/proof/consistency": "?from=1"}
BODY = {("/v1/records", "post"): {"strand": "oa", "payload": {"n": 9}},
        ("/v1/records/batch", "post"): [{"strand": "oa", "payload": {"n": 10}}],
        ("/v1/connectors", "post"): {"name": "oa-new", "kind": "stdout", "config": {}},
        ("/api/v1/connectors", "post"): {"name": "oa-new-sh", "connectorClass": "stdout", "config": {}},
        ("/v1/connectors/{id}", "patch"): {"enabled": True},
        ("/api/v1/connectors/{key}", "patch"): {"enabled": True},
        ("/v1/boboyka/ingest", "post"): {"record_type": "agent_health", "data": {"agent_id": "a1", "status": "ok"}},
        ("/v1/connectors/inbound/rest/{id}/push", "post"): {"x": 1},
        ("/api/v1/connectors/inbound/rest/{id}/push", "post"): {"x": 1}}
LAST = ("delete",)  # deletes run after everything else


def pointer(*parts):
    return "#/" + "/".join(str(x).replace("~", "~0").replace("/", "~1") for x in parts)


answers = []
with t.section("every documented route exists with exactly its methods", srv):
    ops = [(tp, m) for tp, item in SPEC["paths"].items() for m in METHODS if m in item]
    ops.sort(key=lambda o: o[1] in LAST)
    for tp, m in ops:
        url = concrete(tp, m) + QUERY.get(tp, "")
        body = BODY.get((tp, m))
        r = c.request(m.upper(), url, body)
        code = (r.json or {}).get("code") if r.headers.get("content-type", "").startswith("application/json") and isinstance(r.json, dict) else None
        t.ok(r.status != 405 and not (r.status == 404 and code == "not_found"),
             "%s %s: the route exists (%d)" % (m.upper(), tp, r.status), r)
        answers.append({"template": tp, "method": m, "status": r.status,
                        "ctype": r.headers.get("content-type", ""), "body": r.body.decode("utf-8", "replace")})
    for tp, item in SPEC["paths"].items():
        r = c.request("PUT", concrete(tp, "put"))
        allow = {x.strip().lower() for x in r.headers.get("allow", "").split(",") if x.strip()}
        t.ok(r.status == 405 and allow == {m for m in METHODS if m in item},
             "PUT %s -> 405, Allow: %s is what the document lists" % (tp, ", ".join(sorted(allow))), r)
c.close()

with t.section("real answers validate against the documented schemas (ajv)", srv):
    checks = []
    for a in answers:
        op = SPEC["paths"][a["template"]][a["method"]]
        resp = op["responses"].get(str(a["status"]))
        t.ok(resp is not None, "%s %s: status %d is documented" % (a["method"].upper(), a["template"], a["status"]),
             a["body"][:300])
        if resp is None:
            continue
        base = pointer("paths", a["template"], a["method"], "responses", str(a["status"]))
        if "$ref" in resp:
            base = resp["$ref"]
            resp = SPEC["components"]["responses"][base.split("/")[-1]]
        ctype = a["ctype"].split(";")[0].strip()
        t.ok(ctype in resp.get("content", {}), "%s %s %d: content type %s is documented" % (
            a["method"].upper(), a["template"], a["status"], ctype), list(resp.get("content", {})))
        if ctype == "application/json" and ctype in resp.get("content", {}):
            checks.append({"what": "%s %s %d" % (a["method"].upper(), a["template"], a["status"]),
                           "schema": "spec" + base + "/" + pointer("content", ctype, "schema")[2:],
                           "data": json.loads(a["body"])})
    script = os.path.join(NODE_DIR, "sluice_openapi_ajv.mjs")
    with open(script, "w") as f:
        f.write("import Ajv2020 from 'ajv/dist/2020.js';\n"
                "import { readFileSync } from 'fs';\n"
                "const { spec, checks } = JSON.parse(readFileSync(0, 'utf8'));\n"
                "const ajv = new Ajv2020({ strict: false, allErrors: true });\n"
                "ajv.addSchema(spec, 'spec');\n"
                "const out = checks.map(c => { const v = ajv.getSchema(c.schema) || ajv.compile({ $ref: c.schema });\n"
                "  return { what: c.what, ok: v(c.data), errors: v.errors }; });\n"
                "console.log(JSON.stringify(out));\n")
    p = subprocess.run(["node", script], input=json.dumps({"spec": SPEC, "checks": checks}).encode(),
                       capture_output=True, timeout=120)
    res = json.loads(p.stdout) if p.returncode == 0 else []
    t.ok(p.returncode == 0 and len(res) == len(checks) and len(checks) >= 30,
         "ajv checked %d JSON answers" % len(checks), p.stderr.decode()[-800:])
    for x in res:
        t.ok(x["ok"], "%s: the answer matches its schema" % x["what"], x["errors"])

srv.stop()
t.done()
