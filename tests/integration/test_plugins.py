"""Connector plugins (`serve --plugins DIR`, the Plugin SDK): the example sink plugin
build/examples/plugin_upper.so (kind example_file, examples/plugin_upper.c) is loaded, listed in
the catalog with its own and the framework's fields, validated, and delivers records to its file
line by line; its cursor survives restarts, also one where the plugin is missing (the connector
is skipped, not lost). Plugins that must not load -- not a shared object, no sluice_connectors
symbol, another connector ABI, a kind name taken by a built-in, a sink without send -- stop
`serve` with exit status 2 and one stderr line naming the file and the reason. The bad plugins
are compiled here, with cc, into temp dirs; none is shipped."""
import os
import re
import shutil
import subprocess
import time

import sluicetest as st

t = st.Checks()
st.require_binary(t)
PLUGIN = os.environ.get("SLUICE_PLUGIN") or os.path.join(st.ROOT, "build", "examples", "plugin_upper.so")
if not os.path.isfile(PLUGIN):
    t.ok(False, "the example plugin exists at %s (build it with make all)" % PLUGIN)
    t.done()
CC = os.environ.get("CC") or "cc"
HEADER = os.path.join(st.ROOT, "include", "sluice", "connector.h")
HOST_ABI = int(re.search(r"#define SL_CONNECTOR_ABI (\d+)", open(HEADER).read()).group(1))
STRAND = "plug"
FAST = {"initial_backoff_ms": 10, "max_backoff_ms": 100}

pdir = os.path.join(st.tmpdir(), "plugins")
os.makedirs(pdir)
shutil.copy(PLUGIN, pdir)
with open(os.path.join(pdir, "README.txt"), "w") as f:
    f.write("not a plugin: only *.so files are loaded\n")
out_path = os.path.join(st.tmpdir(), "out", "records.txt")
os.makedirs(os.path.dirname(out_path))
srv = st.Server(args=["--plugins", pdir])

# Payloads and the exact line each one becomes with uppercase: true (strings uppercased, JSON
# otherwise untouched: compact, key order kept, escapes and non-ASCII as they are).
PAYLOADS = [
    ({"msg": "hello world", "n": 1, "ok": True, "none": None},
     '{"MSG":"HELLO WORLD","N":1,"OK":true,"NONE":null}'),
    ({"esc": "a\nb\"c\\d", "nest": {"k": ["x", "y"]}, "big": 12345678901234},
     '{"ESC":"A\\nB\\"C\\\\D","NEST":{"K":["X","Y"]},"BIG":12345678901234}'),
    ("just a string", '"JUST A STRING"'),
    ([1, -2, False], "[1,-2,false]"),
    ({"city": "k\u00f6ln"}, '{"CITY":"K\u00f6LN"}'),  # only ASCII letters change
]


def write(payloads):
    """POSTs each payload; returns the expected file lines, with the seqs the server gave."""
    lines = []
    for p, rendered in payloads:
        r = srv.req("POST", "/v1/records", {"strand": STRAND, "agent_id": "plugin-test", "payload": p})
        assert r.status == 201, r
        lines.append("%s %d %s" % (STRAND, r.json["seq"], rendered))
    return lines


def file_lines():
    try:
        with open(out_path, "rb") as f:
            data = f.read().decode("utf-8")
    except FileNotFoundError:
        return []
    assert data == "" or data.endswith("\n"), "the file ends in a partial line: %r" % data[-200:]
    return data.splitlines()


def wait_lines(n, timeout=10):
    return st.wait_until(lambda: len(file_lines()) >= n, timeout)


def err_ok(r, status, needle, what):
    j = r.json if isinstance(r.json, dict) else {}
    t.ok(r.status == status and needle in (j.get("error") or ""), "%s -> %d naming %s" % (what, status, needle), r)


cid = None
expected = []

with t.section("the plugin loads at start", srv):
    srv.start()
    log = srv.log_since(0)
    t.ok(re.search(r"info plugin \S*plugin_upper\.so: connector kind example_file \(outbound, utility\)", log),
         "one info line names the plugin file and its kind", log[-1500:])
    t.ok("README.txt" not in log, "files not named *.so are left alone")

with t.section("the catalog lists the plugin's kind", srv):
    r = srv.req("GET", "/v1/connector-kinds")
    kinds = {k["kind"]: k for k in r.json.get("kinds", [])} if r.status == 200 else {}
    k = kinds.get("example_file", {})
    t.ok(k.get("direction") == "outbound" and k.get("category") == "utility" and k.get("available") is True
         and k.get("worker") is True and k.get("description"), "example_file is listed: outbound, utility, runs", k)
    t.ok({"webhook", "s3", "rest_bridge"} <= set(kinds), "the built-in kinds are still there", sorted(kinds))
    fields = {f["name"]: f for f in k.get("fields", [])}
    path, upper = fields.get("path", {}), fields.get("uppercase", {})
    t.ok(path.get("type") == "string" and path.get("required") is True and path.get("default") is None
         and not path.get("common"), "field path: string, required, the plugin's own", path)
    t.ok(upper.get("type") == "boolean" and upper.get("required") is False and upper.get("default") is False,
         "field uppercase: boolean, optional, default false", upper)
    out = subprocess.run([st.SLUICE_BIN, "connectors", "--plugins", pdir], capture_output=True, text=True,
                         timeout=20)
    t.ok(out.returncode == 0 and re.search(r"\nexample_file +Sink +", out.stdout),
         "`sluice connectors --plugins DIR` lists the plugin's kind too", out.stdout[-600:])
    common = {n for n, f in fields.items() if f.get("common")}
    t.ok({"start", "retry", "circuit_breaker", "max_consecutive_failures", "timeout_ms"} <= common,
         "the framework's common sink fields are added", sorted(common))

with t.section("config validation by the plugin's table", srv):
    body = {"name": "bad", "kind": "example_file", "strands": [STRAND]}
    err_ok(srv.req("POST", "/v1/connectors", dict(body, config={"uppercase": True})), 400, "config.path",
           "no path")
    err_ok(srv.req("POST", "/v1/connectors", dict(body, config={"path": out_path, "uppercase": "yes"})), 400,
           "config.uppercase", "uppercase not a boolean")
    err_ok(srv.req("POST", "/v1/connectors", dict(body, config={"path": out_path, "colour": "red"})), 400,
           "config.colour", "an unknown field")
    t.eq(srv.req("GET", "/v1/connectors").json.get("outbound_count"), 0, "no bad config was stored")

with t.section("records arrive in the file, line by line", srv):
    r = srv.req("POST", "/v1/connectors", {"name": "upper file", "kind": "example_file", "strands": [STRAND],
                                           "config": {"path": out_path, "uppercase": True, "retry": FAST}})
    t.ok(r.status == 201 and r.json.get("kind") == "example_file" and r.json.get("direction") == "outbound"
         and r.json["config"].get("start") == "head" and r.json.get("strands") == [STRAND],
         "POST /v1/connectors kind example_file -> 201, defaults filled", r)
    cid = r.json["id"]
    expected = write(PAYLOADS)
    ok = wait_lines(len(expected))
    t.ok(ok, "all %d records are in the file within 10 s" % len(expected), file_lines())
    t.eq(file_lines(), expected, "the file holds exactly '<strand> <seq> <payload JSON>' lines, strings uppercased")
    c = st.wait_until(lambda: (lambda j: j if j.get("event_count") == len(expected) else None)(
        srv.req("GET", "/v1/connectors/" + cid).json), 5)
    t.ok(c and c["state"] == "running" and not c["last_error"], "the connector runs and counts its deliveries", c)

with t.section("restart without the plugin: the connector waits, nothing crashes", srv):
    t.eq(srv.stop(), 0, "clean stop")
    mark = srv.log_mark()
    srv.start(args=[])
    log = srv.log_since(mark)
    t.ok(re.search(r"connector %s has unknown kind example_file; skipped" % re.escape(cid), log),
         "the server starts and warns that the connector's kind is unknown", log[-1500:])
    t.ok(st.healthy(srv.port), "the server is healthy")
    kinds = [k["kind"] for k in srv.req("GET", "/v1/connector-kinds").json["kinds"]]
    t.ok("example_file" not in kinds, "example_file is not in the catalog without the plugin", kinds)
    err_ok(srv.req("POST", "/v1/connectors", {"name": "x", "kind": "example_file",
                                              "config": {"path": out_path}}), 400, "example_file",
           "creating an example_file connector without the plugin")
    while_down = write(PAYLOADS[:3])
    time.sleep(0.5)
    t.eq(file_lines(), expected, "records written meanwhile are not delivered (nobody to deliver them)")

with t.section("restart with the plugin: the connector resumes from its cursor", srv):
    t.eq(srv.stop(), 0, "clean stop")
    srv.start(args=["--plugins", pdir])
    expected += while_down
    t.ok(wait_lines(len(expected)), "the records written while the plugin was missing arrive", file_lines())
    more = write(PAYLOADS[3:])
    expected += more
    wait_lines(len(expected))
    time.sleep(0.3)  # a duplicate would show up after the count is reached
    got = file_lines()
    t.eq(got, expected, "every record is in the file once, in strand order, none twice")
    seqs = [int(line.split(" ")[1]) for line in got]
    t.ok(seqs == list(range(seqs[0], seqs[0] + len(seqs))), "the seqs in the file are consecutive", seqs)
    t.eq(srv.stop(), 0, "clean stop")
    srv.start()
    time.sleep(0.5)
    t.eq(file_lines(), expected, "a restart with nothing new writes nothing")

def last_error_of(cid_, needle):
    def probe():
        j = srv.req("GET", "/v1/connectors/" + cid_).json
        return j if needle in (j.get("last_error") or "") else None
    return st.wait_until(probe, 5, 0.05)


with t.section("the plugin's errors reach last_error; the server goes on", srv):
    # a directory where the file should be: open() fails with the host's fail()
    bad_path = os.path.join(st.tmpdir(), "is-a-dir")
    os.makedirs(bad_path)
    r = srv.req("POST", "/v1/connectors", {"name": "bad path", "kind": "example_file", "strands": ["plug2"],
                                           "config": {"path": bad_path, "retry": FAST}})
    t.eq(r.status, 201, "a connector whose path is a directory is created")
    t.eq(srv.req("POST", "/v1/records", {"strand": "plug2", "payload": 1}).status, 201, "a record for it")
    c = last_error_of(r.json["id"], bad_path)
    t.ok(c and "Is a directory" in c["last_error"], "open() failing: last_error names the path and why", c)
    # /dev/full opens, but every write fails with ENOSPC: send() returns SL_R_RETRY with out->error;
    # the framework retries, then (max_consecutive_failures) gives up, quoting the plugin's error
    r = srv.req("POST", "/v1/connectors", {"name": "full disk", "kind": "example_file", "strands": ["plug3"],
                                           "config": {"path": "/dev/full", "retry": FAST,
                                                      "circuit_breaker": {"failure_threshold": 1000},
                                                      "max_consecutive_failures": 3}})
    t.eq(r.status, 201, "a connector writing to /dev/full is created")
    t.eq(srv.req("POST", "/v1/records", {"strand": "plug3", "payload": 1}).status, 201, "a record for it")
    c = last_error_of(r.json["id"], "consecutive failures")  # while it retries: the write error alone
    t.ok(c and c["state"] == "failed" and "write to /dev/full: No space left on device" in c["last_error"]
         and "3 consecutive failures" in c["last_error"] and c.get("stats", {}).get("failed", 0) >= 3,
         "a failed write is retried, then given up with the plugin's error in last_error", c)
    t.ok(st.healthy(srv.port), "the server stays healthy")
    t.eq(srv.stop(), 0, "clean stop")

# ---------------------------------------------------------------- plugins that must not load

SINK = r"""
#include <sluice/connector.h>
static const struct sl_field fields[] = {{NULL, 0, 0, NULL, 0, NULL, 0, 0, NULL, NULL}};
static int o(void **self, const struct sl_sink_ctx *ctx, struct sl_sink_info *info,
             struct sl_err *err) { *self = 0; return 0; }
static enum sl_result s(void *self, const struct sl_batch *b, struct sl_outcome *out)
{ return SL_R_OK; }
static void c(void *self) {}
static const struct sl_sink_ops ops = {.open = o, .send = %(send)s, .close = c};
static const struct sl_connector k = {.abi = %(abi)s, .name = "%(name)s", .direction = SL_OUTBOUND,
    .category = "utility", .description = "a test plugin", .fields = fields, .sink = &ops};
static const struct sl_connector *const list[] = {&k, 0};
const struct sl_connector *const *sluice_connectors(const struct sl_host *h) { return list; }
"""


def build(so_name, src):
    """Compiles src into DIR/so_name (a dir of its own); returns DIR."""
    d = st.tmpdir("sluice-plugin-")
    c = os.path.join(st.tmpdir("sluice-plugin-src-"), "p.c")
    with open(c, "w") as f:
        f.write(src)
    p = subprocess.run([CC, "-shared", "-fPIC", "-w", "-I", os.path.join(st.ROOT, "include"),
                        "-o", os.path.join(d, so_name), c], capture_output=True, timeout=120)
    if p.returncode != 0:
        raise AssertionError("cc failed:\n" + p.stderr.decode(errors="replace"))
    return d


def refused(what, plugin_dir, needles, env_var=False):
    """serve with plugin_dir must exit 2 at once, with one stderr line holding every needle."""
    data = os.path.join(st.tmpdir(), "data")
    argv = [st.SLUICE_BIN, "serve", "--data", data, "--listen", "127.0.0.1:0"]
    env = dict(os.environ)
    if env_var:
        env["SLUICE_PLUGINS"] = plugin_dir
    else:
        argv += ["--plugins", plugin_dir]
    try:
        p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=20, env=env)
    except subprocess.TimeoutExpired:
        t.ok(False, "%s: serve exits instead of running" % what)
        return
    err = p.stderr.decode("utf-8", "replace")
    t.eq(p.returncode, 2, "%s: serve exits with status 2" % what)
    bad = [line for line in err.splitlines() if line.startswith("sluice: ")]
    t.ok(len(bad) == 1 and all(n in bad[0] for n in needles),
         "%s: one stderr line names %s" % (what, ", ".join(needles)), err)
    t.ok("listening on" not in err and not os.path.exists(os.path.join(data, "strands")),
         "%s: refused before opening anything" % what, err)


with t.section("a plugin built for another connector ABI"):
    abi = HOST_ABI + 41
    d = build("wrong_abi.so", SINK % {"send": "s", "abi": abi, "name": "wrong_abi"})
    refused("wrong ABI", d, [os.path.join(d, "wrong_abi.so"), "ABI %d" % abi, "has %d" % HOST_ABI])

with t.section("a shared object without sluice_connectors"):
    d = build("nosym.so", "int not_a_plugin(void) { return 42; }\n")
    refused("no symbol", d, [os.path.join(d, "nosym.so"), "sluice_connectors"])

with t.section("a plugin whose kind name is a built-in's"):
    d = build("clash.so", SINK % {"send": "s", "abi": "SL_CONNECTOR_ABI", "name": "webhook"})
    refused("name clash", d, [os.path.join(d, "clash.so"), "webhook", "taken"])

with t.section("a sink plugin without send"):
    d = build("nosend.so", SINK % {"send": "0", "abi": "SL_CONNECTOR_ABI", "name": "nosend"})
    refused("sink without send", d, [os.path.join(d, "nosend.so"), "send"])

with t.section("a file named .so that is not a shared object"):
    d = st.tmpdir("sluice-plugin-")
    with open(os.path.join(d, "junk.so"), "w") as f:
        f.write("this is text\n")
    refused("not a shared object", d, [os.path.join(d, "junk.so"), "cannot load"])

with t.section("a good plugin does not excuse a bad one next to it"):
    d = build("zz_wrong_abi.so", SINK % {"send": "s", "abi": HOST_ABI + 1, "name": "zz"})
    shutil.copy(PLUGIN, d)
    refused("good + bad plugin", d, ["zz_wrong_abi.so", "ABI %d" % (HOST_ABI + 1)])

with t.section("the plugins option from the environment; a missing directory"):
    d = build("wrong_abi.so", SINK % {"send": "s", "abi": HOST_ABI + 2, "name": "env"})
    refused("SLUICE_PLUGINS", d, ["wrong_abi.so", "ABI %d" % (HOST_ABI + 2)], env_var=True)
    missing = os.path.join(st.tmpdir(), "no-such-dir")
    refused("a missing plugin directory", missing, [missing, "No such file"])

t.done()
