"""Configuration: YAML file, SLUICE_* environment, flags, their precedence, and bad values.

Each option's effect is observed through behaviour: max_body_bytes through 413s, durability
through the startup warning, segment_bytes through the segment count of a strand."""
import json
import os
import subprocess

import sluicetest as st

t = st.Checks()
st.require_binary(t)


def body_of(n):
    # a /v1/records body of exactly n bytes
    base = '{"payload":""}'
    return '{"payload":"%s"}' % ("x" * (n - len(base)))


def run(args, env_extra=None, timeout=10):
    env = dict(os.environ)
    env.update(env_extra or {})
    return subprocess.run([st.SLUICE_BIN] + args, env=env, capture_output=True, timeout=timeout)


def status_for(srv, n):
    return srv.req("POST", "/v1/records", body_of(n)).status


with t.section("yaml, env and flag precedence"):
    d = st.tmpdir()
    cfg = os.path.join(d, "sluice.yaml")
    with open(cfg, "w") as f:
        f.write("# test config\nmax_body_bytes: 2K\ndurability: none\nsegment_bytes: 65536\n")
    os.environ.pop("SLUICE_MAX_BODY_BYTES", None)
    srv = st.Server(args=["--config", cfg]).start()
    t.eq(status_for(srv, 2000), 201, "YAML max_body_bytes 2K accepts a 2000-byte body")
    t.eq(status_for(srv, 3000), 413, "YAML max_body_bytes 2K rejects a 3000-byte body")
    t.ok(b"durability: none" in open(srv.log_path, "rb").read(), "YAML durability: none is applied (startup warning)")
    for i in range(60):
        srv.req("POST", "/v1/records", {"strand": "cfgseg", "payload": "y" * 1500})
    strands = {s["name"]: s for s in srv.req("GET", "/v1/strands").json["strands"]}
    t.ok(strands["cfgseg"]["segments"] >= 2, "YAML segment_bytes 65536 rolls segments", strands.get("cfgseg"))
    srv.stop()

    os.environ["SLUICE_MAX_BODY_BYTES"] = "4096"
    try:
        srv = st.Server(args=["--config", cfg]).start()
        t.eq(status_for(srv, 3000), 201, "SLUICE_MAX_BODY_BYTES beats the YAML file")
        t.eq(status_for(srv, 5000), 413, "SLUICE_MAX_BODY_BYTES=4096 rejects 5000 bytes")
        srv.stop()
        srv = st.Server(args=["--config", cfg, "--max-body-bytes", "8192"]).start()
        t.eq(status_for(srv, 7000), 201, "--max-body-bytes beats the environment and the file")
        srv.stop()
        srv = st.Server(args=["--config=%s" % cfg, "--max-body-bytes=1024"]).start()
        t.eq(status_for(srv, 1500), 413, "--option=value form works")
        srv.stop()
    finally:
        os.environ.pop("SLUICE_MAX_BODY_BYTES", None)

with t.section("SLUICE_CONFIG names the file"):
    d = st.tmpdir()
    cfg = os.path.join(d, "c.yaml")
    with open(cfg, "w") as f:
        f.write("max_body_bytes: 1024\n")
    os.environ["SLUICE_CONFIG"] = cfg
    try:
        srv = st.Server().start()
        t.eq(status_for(srv, 1500), 413, "SLUICE_CONFIG file is read")
        srv.stop()
    finally:
        os.environ.pop("SLUICE_CONFIG", None)

with t.section("bad configuration is refused with a message naming the option"):
    d = st.tmpdir()
    cases = [
        ("unknown flag", ["--no-such-option", "1"], {}, b"no-such-option"),
        ("bad size", ["--segment-bytes", "12Q"], {}, b"segment_bytes"),
        ("size below the minimum", ["--segment-bytes", "100"], {}, b"segment_bytes"),
        ("bad durability", ["--durability", "sometimes"], {}, b"durability"),
        ("bad env value", [], {"SLUICE_HTTP_THREADS": "zero"}, b"http_threads"),
        ("bad listen", ["--listen", "nohostport"], {}, b"listen"),
        ("missing value", ["--data"], {}, b"--data"),
        ("positional argument", ["extra"], {}, b"extra"),
    ]
    for name, args, env, needle in cases:
        r = run(["serve", "--data", os.path.join(d, "x")] + args, env)
        t.ok(r.returncode == 2 and needle in r.stderr, "%s: exit 2 naming it" % name, (r.returncode, r.stderr[-300:]))
    for content, needle in (("max_body_bytes: [1, 2]\n", b"max_body_bytes"), ("nope: 1\n", b"nope"),
                            ("durability: maybe\n", b"durability"), ("key: [unclosed\n", b"c.yaml")):
        cfg = os.path.join(d, "c.yaml")
        with open(cfg, "w") as f:
            f.write(content)
        r = run(["serve", "--data", os.path.join(d, "x"), "--config", cfg])
        t.ok(r.returncode == 2 and needle in r.stderr, "YAML %r: exit 2 naming it" % content.strip(), (r.returncode, r.stderr[-300:]))
    r = run(["serve", "--data", os.path.join(d, "x"), "--config", os.path.join(d, "missing.yaml")])
    t.ok(r.returncode == 2 and b"missing.yaml" in r.stderr, "missing config file: exit 2 naming it", r.stderr[-200:])

with t.section("one server per data directory"):
    srv = st.Server().start()
    r = run(["serve", "--data", srv.data, "--listen", "127.0.0.1:0"])
    t.ok(r.returncode != 0 and b"in use" in r.stderr, "a second server on the same data dir is refused", r.stderr[-200:])
    t.eq(srv.req("GET", "/v1/health").status, 200, "the first server keeps serving")
    srv.stop()

with t.section("config-doc"):
    r = run(["config-doc"])
    doc = r.stdout.decode()
    t.ok(r.returncode == 0 and all(("`--%s`" % k) in doc for k in
         ("data", "listen", "config", "durability", "segment-bytes", "max-body-bytes", "max-connections")),
         "config-doc lists every option with its flag")

t.done()
