"""The Python clients in clients/python against a live Sluice.

1. The seeds' own example scripts (tests/integration/seed_examples/, copied verbatim from
   shared/seeds/000_* and 004_*; checked against the seeds when they are at hand) run with only
   the URL changed, and what they did is then read back from the server.
2. Every method of the seeds' SDK tables (ConnectorClient, BoboykaClient), SapixClient's raw-dict
   wrappers and the sluice module, with typed errors carrying the server's `code`.
3. The package builds as a wheel (pip-installable from the repo).
Dependencies from Debian: python3-httpx, python3-pydantic, python3-psutil (the health example)."""
import asyncio
import glob
import os
import re
import shutil
import subprocess
import sys
import zipfile

import sluicetest as st

SDK = os.path.join(st.ROOT, "clients", "python")
EXAMPLES = os.path.join(st.ROOT, "tests", "integration", "seed_examples")
SEEDS = os.path.join(os.path.dirname(st.ROOT), "shared", "seeds")
sys.path.insert(0, SDK)
sys.path.insert(0, os.path.join(st.ROOT, "tests", "peers"))
import sapixdb_agent  # noqa: E402
import sapixdb_boboyka  # noqa: E402
import sapixdb_connectors  # noqa: E402
import sluice  # noqa: E402
from sluice import errors  # noqa: E402
from webhook_receiver import Receiver  # noqa: E402

SEED_URL = "http://localhost:7475"
HEX64 = re.compile(r"[0-9a-f]{64}")

t = st.Checks()
st.require_binary(t)
srv = st.Server().start()
tmp = st.tmpdir("sluice-sdk-")


def run_example(name, call=None):
    """Runs a seed example with the URL changed (and nothing else); returns (rc, stdout, stderr).
    call: for a script that only defines a coroutine (sapix_client.py), its name, run with
    asyncio.run as the seed's reader would."""
    src = open(os.path.join(EXAMPLES, name)).read()
    ours = src.replace(SEED_URL, srv.url)
    changed = [(a, b) for a, b in zip(src.splitlines(), ours.splitlines()) if a != b]
    assert changed and all(a.replace(SEED_URL, srv.url) == b for a, b in changed), name
    path = os.path.join(tmp, name)
    with open(path, "w") as f:
        f.write(ours)
    argv = [sys.executable, path]
    if call:
        argv = [sys.executable, "-c", "import asyncio, runpy; asyncio.run(runpy.run_path(%r)[%r]())" % (path, call)]
    env = dict(os.environ, PYTHONPATH=SDK, PYTHONDONTWRITEBYTECODE="1")
    p = subprocess.run(argv, capture_output=True, timeout=120, env=env, cwd=tmp)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def events(record_type):
    return srv.req("GET", "/v1/boboyka/events?record_type=%s&limit=100" % record_type).json["events"]


with t.section("the fixtures are the seeds' scripts, verbatim", srv):
    seeds = "".join(open(f).read() for f in glob.glob(os.path.join(SEEDS, "*.txt")))
    names = sorted(os.listdir(EXAMPLES))
    t.eq(names, ["audit_example.py", "build_pipeline.py", "connector_hub.py", "health_monitor.py",
                 "sapix_client.py"], "five seed examples")
    if seeds:
        for n in names:
            t.ok(open(os.path.join(EXAMPLES, n)).read().strip("\n") in seeds, "%s is verbatim in the seeds" % n)
    else:
        t.note("shared/seeds not found next to the repo: fixture text not compared")

with t.section("seed 000: the Connector Hub's one-script example", srv):
    rc, out, err = run_example("connector_hub.py")
    t.ok(rc == 0, "connector_hub.py exits 0", out + err)
    m = re.search(r"Bridge id: (\S+)\nWritten: ([0-9a-f]{64})\nWebhook id: (\S+)\nInbound: 1  Outbound: 2\n", out)
    t.ok(m is not None, "it prints the bridge id, the record hash, the webhook id and the counts", out)
    lines = [ln for ln in out.splitlines() if ln.startswith("  ")]
    t.ok(len(lines) == 3 and all(ln.startswith("  ✓ [") for ln in lines)
         and any("IoT Bridge" in ln and "events=1" in ln for ln in lines),
         "... and one ✓ line per connector, the bridge with events=1", out)
    if m:
        bridge, rhash, hook = m.groups()
        rec = srv.req("GET", "/v1/records/" + rhash).json
        t.ok(rec["payload"] == {"sensor": "temp-7", "celsius": 22.4, "location": "rack-3", "_connector_id": bridge},
             "the pushed record is in the strand, tagged with _connector_id", rec)
        cs = {c["name"]: c for c in srv.req("GET", "/v1/connectors").json["connectors"]}
        t.ok(set(cs) == {"IoT Bridge", "Ops alerts"} and cs["Ops alerts"]["enabled"] is False
             and cs["Ops alerts"]["id"] == hook and cs["Ops alerts"]["config"]["secret"] == "***",
             "the webhook is disabled and the S3 connector deleted", cs)

with t.section("seed 004: build_pipeline.py, health_monitor.py, audit_example.py, SapixClient", srv):
    rc, out, err = run_example("build_pipeline.py")
    t.ok(rc == 0 and re.fullmatch(r"Recorded build bld_007: [0-9a-f]{16}…\n", out), "build_pipeline.py", out + err)
    b = [e for e in events("project_build") if e["data"].get("build_id") == "bld_007"]
    t.ok(len(b) == 1 and b[0]["data"]["status"] == "succeeded" and b[0]["data"]["agent_id"] == "boboyka_builder"
         and isinstance(b[0]["data"]["completed_at_ms"], int) and "started_at_ms" not in b[0]["data"]
         and out.split(": ")[1][:16] == b[0]["record_hash"][:16],
         "the build event is stored as sent (options left at None are not sent)", b)
    rc, out, err = run_example("health_monitor.py")
    h = events("agent_health")
    t.ok(rc == 0 and len(h) == 1 and h[0]["data"]["status"] in ("healthy", "degraded")
         and isinstance(h[0]["data"]["cpu_pct"], (int, float)) and isinstance(h[0]["data"]["memory_mb"], int)
         and isinstance(h[0]["data"]["checked_at_ms"], int),
         "health_monitor.py (psutil) stores a health snapshot", (out + err, h))
    rc, out, err = run_example("audit_example.py")
    a = events("audit_log")
    t.ok(rc == 0 and len(a) == 1 and a[0]["data"]["metadata"] == {"env": "production", "version": "2.4.1"},
         "audit_example.py stores the deploy event", (out + err, a))
    t.ok(re.search(r"  \[\d+\] [0-9a-f]{12}…  ok=None", out) is not None,
         "... and prints the audit feed (ok=None: dual-write off)", out)
    rc, out, err = run_example("sapix_client.py", call="main")
    lines = out.splitlines()
    t.ok(rc == 0 and len(lines) == 3 and HEX64.fullmatch(lines[0]) and lines[1] == "4" and lines[2].startswith("[{"),
         "sapix_client.py: the record hash, total_events 4, the audit events", out + err)

recv = Receiver().start()
st.at_cleanup(recv.stop)


async def connectors_api():
    async with sapixdb_connectors.ConnectorClient(srv.url) as hub:
        c = await hub.create_connector("raw kafka", "kafka", {"brokers": ["b:9092"], "topic": "t"})
        t.ok(isinstance(c, sapixdb_connectors.ConnectorConfig) and c.direction == "inbound"
             and c.config["auto_offset_reset"] == "latest", "create_connector -> a typed ConnectorConfig", c)
        g = await hub.get_connector(c.id)
        t.ok(g.name == "raw kafka" and g.kind == "kafka", "get_connector")
        u = await hub.update_connector(c.id, name="renamed kafka", config={"brokers": ["c:9092"], "topic": "u"})
        t.ok(u.name == "renamed kafka" and u.config["topic"] == "u", "update_connector(name, config)")
        d = await hub.disable(c.id)
        e = await hub.enable(c.id)
        t.ok(d.enabled is False and e.enabled is True, "disable / enable")
        k = await hub.add_kafka("events", ["broker1:9092", "broker2:9092"], "sapixdb-events", group_id="g",
                                auto_offset_reset="earliest")
        t.ok(k.config["group_id"] == "g" and k.config["auto_offset_reset"] == "earliest", "add_kafka", k)
        p = await hub.add_postgres_cdc("Orders CDC", "postgres://user:pass@127.0.0.1:1/mydb", "sapix_slot",
                                       "sapix_pub", "public.*")
        t.ok(p.kind == "postgres_cdc" and p.config["connection_string"] == "postgres://user:***@127.0.0.1:1/mydb",
             "add_postgres_cdc (password masked in the answer)", p)
        await hub.delete_connector(p.id)
        bridge = await hub.add_rest_bridge("flags bridge", flags=0)
        r = await hub.rest_push(bridge.id, {"gone": True}, flags=2)
        rec = srv.req("GET", "/v1/records/" + r.record_hash).json
        t.ok(r.connector_id == bridge.id and rec["flags"] == 2, "rest_push(flags=2) writes a tombstone", rec)
        lst = await hub.list_connectors()
        t.ok(isinstance(lst, sapixdb_connectors.ConnectorList) and lst.inbound_count == len(
            [x for x in lst.connectors if x.direction == "inbound"]), "list_connectors with counts")
        dl = await hub.delete_connector(k.id)
        t.ok(dl.deleted and dl.id == k.id, "delete_connector")
        try:
            await hub.get_connector(k.id)
            t.ok(False, "get_connector of a deleted id raises")
        except errors.NotFoundError as x:
            t.ok(x.status == 404 and x.code == "connector_not_found" and k.id in x.message,
                 "get_connector of a deleted id raises NotFoundError(code connector_not_found)", x)
        try:
            await hub.add_rest_bridge("flags bridge")
            t.ok(False, "a second connector with a name in use raises")
        except sapixdb_connectors.ConflictError as x:
            t.ok(x.status == 409 and x.code == "connector_name_taken", "a name in use raises ConflictError", x)
        try:
            await hub.add_webhook("empty url", "")
            t.ok(False, "an empty url raises")
        except errors.InvalidRequestError as x:
            t.ok(x.code == "invalid_config" and "config.url" in x.message, "an empty url raises InvalidRequestError "
                 "naming config.url", x)
        w = await hub.add_webhook("paused hook", recv.url("/p"))
        pz = await hub.pause(w.id)
        rs = await hub.resume(w.id)
        t.ok(pz.state == "paused" and rs.state == "running", "pause / resume (Sluice's additions)")
        await hub.delete_connector(w.id)
    async with sapixdb_connectors.ConnectorClient("http://127.0.0.1:9") as dead:
        try:
            await dead.list_connectors()
            t.ok(False, "an unreachable server raises")
        except errors.SluiceConnectionError as x:
            t.ok(x.code == "connection_error" and x.status is None, "an unreachable server raises SluiceConnectionError", x)


async def boboyka_api():
    async with sapixdb_boboyka.BoboykaClient(srv.url) as bb:
        r = await bb.ingest("audit_log", {"agent_id": "a", "event": "e"})
        t.ok(isinstance(r, sapixdb_boboyka.IngestResponse) and r.dual_write.enabled is False and r.dual_write.ok is None,
             "ingest -> IngestResponse with dual_write", r)
        q = await bb.ingest_queue_item(queue_id="q_001", project_id="proj_abc", priority=1, status="waiting",
                                       enqueued_at_ms=1747000000000, dequeued_at_ms=None)
        q2 = await bb.ingest_queue_item("q_002", "proj_abc", 2, "processing", enqueued_at_ms=1)
        qs = {e["record_hash"]: e["data"] for e in events("build_queue_item")}
        t.ok(qs[q.record_hash].get("dequeued_at_ms", "absent") is None and "dequeued_at_ms" not in qs[q2.record_hash],
             "ingest_queue_item: dequeued_at_ms=None is sent as null (the seed's 'not dequeued'), left out is absent",
             qs)
        h = await bb.ingest_health("boboyka_builder", "degraded", 91.5, 2048)
        s = await bb.status()
        t.ok(isinstance(s, sapixdb_boboyka.BoboykaStatusResponse) and s.total_events == 8
             and s.event_counts["build_queue_item"] == 2, "status() counts every event", s)
        ev = await bb.events(limit=2)
        t.ok(len(ev.events) == 2 and ev.events[0].record_hash == h.record_hash and ev.next_cursor,
             "events(limit) newest first with a cursor", ev)
        ev2 = await bb.events(limit=100, cursor=ev.next_cursor)
        t.ok(len(ev2.events) == 6, "events(cursor=) pages on", len(ev2.events))
        t.ok(len((await bb.build_events(10)).events) == 1 and len((await bb.health_events(10)).events) == 3
             and len((await bb.audit_events(10)).events) == 2, "build_events / health_events / audit_events")
        try:
            await bb.ingest_health("x", "sleepy")
            t.ok(False, "a bad status raises")
        except sapixdb_boboyka.InvalidRequestError as x:
            t.ok(x.code == "invalid_event" and "data.status" in x.message, "a bad status raises naming data.status", x)


async def sapix_client_api():
    async with sapixdb_agent.SapixClient(srv.url) as c:
        made = await c.connector_create("raw bridge", "rest_bridge", {"flags": 0})
        t.ok(isinstance(made, dict) and made["kind"] == "rest_bridge", "connector_create -> dict")
        t.ok((await c.connector_get(made["id"]))["name"] == "raw bridge", "connector_get")
        t.ok((await c.connector_update(made["id"], name="raw bridge 2"))["name"] == "raw bridge 2", "connector_update")
        p = await c.connector_rest_push(made["id"], {"k": 1})
        t.ok(HEX64.fullmatch(p["record_hash"]) is not None, "connector_rest_push")
        t.ok(any(x["id"] == made["id"] for x in (await c.connector_list())["connectors"]), "connector_list")
        t.ok((await c.connector_delete(made["id"]))["deleted"] is True, "connector_delete")
        w = await c.write({"amount": 1}, agent_id="payments-agent", strand="agent")
        t.ok((await c.get_record(w["record_hash"]))["source"] == "payments-agent", "write / get_record")
        try:
            await c.connector_get(made["id"])
            t.ok(False, "connector_get of a deleted id raises")
        except errors.NotFoundError as x:
            t.ok(x.code == "connector_not_found", "connector_get of a deleted id raises NotFoundError", x)


async def sluice_api():
    async with sluice.Client(srv.url) as s:
        t.ok((await s.health()).status == "ok", "health")
        w = await s.write({"n": 0}, strand="sdk")
        b = await s.write_batch([{"payload": {"n": i}} for i in range(1, 5)], strand="sdk")
        t.ok(w.seq == 0 and b.count == 4 and b.first_seq == 1 and b.last_seq == 4, "write, write_batch (NDJSON)", b)
        r = await s.get_record(b.record_hashes[0], raw=True)
        t.ok(r.payload == {"n": 1} and r.payload_msgpack_b64 and r.seq == 1, "get_record(raw=True)", r)
        page = await s.records("sdk", from_seq=2, limit=2)
        t.ok([x.payload["n"] for x in page.records] == [2, 3] and page.next_seq == 4, "records(from_seq, limit)", page)
        t.ok(any(x.name == "sdk" and x.count == 5 for x in await s.strands()), "strands()")
        q = await s.records("sdk", where="value.n >= 3", max_scan=100)
        t.ok([x.payload["n"] for x in q.records] == [3, 4] and q.scanned == 5 and q.truncated is False,
             "records(where=, max_scan=): the matching records, scanned and truncated", q)
        lt = await s.latest("sdk", "n")
        t.ok(isinstance(lt, sluice.Latest) and lt.keys == 5 and sorted(x.payload["n"] for x in lt.records) == [0, 1, 2, 3, 4],
             "latest(strand, key): one record per key", lt)
        # proofs, checked here with an RFC 9162 verifier of the test's own (merklepy)
        import merklepy
        note = await s.checkpoint("sdk")
        _, size, root = merklepy.open_checkpoint(note, await s.checkpoint_key())
        # the latest checkpoint may be older than the last writes (one per checkpoint_interval_ms):
        # seq 0 is in every checkpoint of the strand
        ip = await s.inclusion_proof("sdk", seq=0)
        t.ok(ip.leaf_index == 0 and ip.tree_size == size and merklepy.verify_inclusion(
            bytes.fromhex(w.record_hash), 0, size, [bytes.fromhex(h) for h in ip.hashes], root),
            "checkpoint(), checkpoint_key(), inclusion_proof(): the proof verifies against the signed root", ip)
        cp = await s.consistency_proof("sdk", 1)
        t.ok(cp.from_ == 1 and cp.to == size, "consistency_proof(strand, 1): from 1 to the checkpoint's size", cp)
        pr = await s.get_record(w.record_hash, proof=True)
        t.ok(getattr(pr, "proof", None) and pr.proof["leaf_index"] == 0 and getattr(pr, "checkpoint", None),
             "get_record(proof=True) carries its proof and checkpoint", pr)
        got = []
        async for rec in s.follow("sdk", from_seq=3, poll_interval=0.05):
            got.append(rec.payload["n"])
            if len(got) == 2:
                await s.write({"n": 5}, strand="sdk")  # written while following
            if len(got) == 3:
                break
        t.eq(got, [3, 4, 5], "follow() yields the stored records, then a new one")
        try:
            await s.write_batch([{"payload": 1}, {"payload": 2, "bogus": 1}], strand="sdk")
            t.ok(False, "a bad batch raises")
        except errors.InvalidRequestError as x:
            t.ok(x.status == 400 and x.code and "bogus" in x.message, "a bad batch raises, naming the field", x)
        t.ok((await s.records("sdk")).next_seq == 6, "... and writes nothing")
        # dead letters: a target that refuses with 400
        recv.set_mode("status", status=400)
        hook = srv.req("POST", "/v1/connectors", {"name": "dl hook", "kind": "webhook", "strands": ["dl"],
                                                  "config": {"url": recv.url("/dl"), "start": "earliest"}}).json
        await s.write({"bad": 1}, strand="dl")
        dls = await _wait(lambda: s.dead_letters(hook["id"]), lambda d: d.count == 1)
        t.ok(dls and dls.dead_letters[0].last_status == 400, "dead_letters() lists the refused record", dls)
        recv.set_mode("ok")
        t.eq(await s.replay_dead_letters(hook["id"]), 1, "replay_dead_letters() -> 1")
        # a replay takes the dead letter off the list, then delivers it: wait for both
        ok = await _wait(lambda: s.dead_letters(hook["id"]),
                         lambda d: d.count == 0 and any(x["path"] == "/dl" and x["status"] == 200
                                                        for x in recv.received()))
        t.ok(ok is not None, "the replayed record is delivered and leaves the list")
        t.eq(await s.delete_dead_letters(hook["id"]), 0, "delete_dead_letters()")
        t.ok((await s.pause("dl hook"))["state"] == "paused" and (await s.resume(hook["id"]))["state"] == "running",
             "pause by name, resume by id")
        kinds = await s.connector_kinds()
        t.ok(any(k["kind"] == "webhook" for k in kinds), "connector_kinds()")
        try:
            await s.get_record("zz")
            t.ok(False, "a bad hash raises")
        except errors.InvalidRequestError as x:
            t.ok(x.status == 400 and x.code, "a bad hash raises InvalidRequestError with its code", x)


async def _wait(get, cond, timeout=10.0):
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while True:
        v = await get()
        if cond(v):
            return v
        if loop.time() > end:
            return None
        await asyncio.sleep(0.02)


for name, fn in (("ConnectorClient: every method of the seed's table", connectors_api),
                 ("BoboykaClient: every method of the seed's table", boboyka_api),
                 ("SapixClient: the raw-dict wrappers", sapix_client_api),
                 ("the sluice module: records, strands, dead letters", sluice_api)):
    with t.section(name, srv):
        asyncio.run(fn())

with t.section("pip-installable: the package builds as a wheel with its four modules", srv):
    src = os.path.join(tmp, "pkg")
    shutil.copytree(SDK, src, ignore=shutil.ignore_patterns("__pycache__", "build", "*.egg-info"))
    p = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                        "-w", os.path.join(tmp, "wheel"), src], capture_output=True, timeout=300)
    wheels = glob.glob(os.path.join(tmp, "wheel", "*.whl"))
    t.ok(p.returncode == 0 and len(wheels) == 1, "pip wheel clients/python", p.stderr.decode()[-2000:])
    if wheels:
        names = zipfile.ZipFile(wheels[0]).namelist()
        meta = [n for n in names if n.endswith("METADATA")]
        text = zipfile.ZipFile(wheels[0]).read(meta[0]).decode() if meta else ""
        t.ok(all(any(n.startswith(m + "/__init__.py") for n in names)
                 for m in ("sluice", "sapixdb_connectors", "sapixdb_boboyka", "sapixdb_agent"))
             and "Requires-Dist: httpx" in text and "Requires-Dist: pydantic" in text,
             "the wheel holds sluice, sapixdb_connectors, sapixdb_boboyka, sapixdb_agent and requires httpx, pydantic",
             names)

recv.stop()
srv.stop()
t.done()
