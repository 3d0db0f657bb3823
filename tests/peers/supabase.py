"""A real PostgreSQL (tests/peers/pg.sh) with the four Boboyka tables, behind the Supabase REST
STAND-IN (tests/peers/supabase_standin.cjs, which implements PostgREST's insert contract; there
is no PostgREST to install here). For tests and benchmarks.

    sb = Supabase(key="k").start()   # sb.url, sb.key
    sb.control(mode="fail", status=503); sb.control(mode="ok")
    sb.sql("SELECT count(*) FROM project_builds")   # psql -At output, stripped
    sb.stop()                                      # also at exit
"""
import atexit
import json
import os
import shutil
import subprocess
import tempfile
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
NODE_DIR = os.environ.get("SLUICE_NODE_DIR", os.path.join(ROOT, "build", "node"))

# The tables of the seed's four record types, with the seed's columns. record_hash is the unique
# column Sluice's boboyka_dedup_column fills, so retries cannot insert a second row.
SCHEMA = """
CREATE TABLE project_builds (id bigserial PRIMARY KEY, record_hash text UNIQUE,
  project_id text, build_id text, status text, agent_id text, started_at_ms bigint,
  completed_at_ms bigint, output_url text);
CREATE TABLE build_queue (id bigserial PRIMARY KEY, record_hash text UNIQUE, queue_id text,
  project_id text, priority integer, status text, enqueued_at_ms bigint, dequeued_at_ms bigint);
CREATE TABLE agent_health (id bigserial PRIMARY KEY, record_hash text UNIQUE, agent_id text,
  status text, cpu_pct double precision, memory_mb integer, checked_at_ms bigint);
CREATE TABLE agent_audit_log (id bigserial PRIMARY KEY, record_hash text UNIQUE, agent_id text,
  event text, actor text, timestamp_ms bigint, metadata jsonb);
"""

_live = []


def _cleanup():
    for s in list(_live):
        s.stop()


atexit.register(_cleanup)


class Supabase:
    def __init__(self, key="test-service-role-key", pg_conf=()):
        self.key = key
        self.pg_conf = list(pg_conf)
        self.proc = None
        self.pgdir = None
        self.env = {}
        self.url = None

    def start(self):
        parent = tempfile.mkdtemp(prefix="sl-sb-")
        os.chmod(parent, 0o755)
        self.parent = parent
        self.pgdir = os.path.join(parent, "pg")
        _live.append(self)
        out = subprocess.run([os.path.join(HERE, "pg.sh"), "start", self.pgdir] + self.pg_conf,
                             capture_output=True, text=True, timeout=120)
        if out.returncode != 0:
            raise RuntimeError("pg.sh start failed: " + out.stderr[-2000:])
        with open(out.stdout.strip()) as f:
            self.env = dict(line.strip().split("=", 1) for line in f if "=" in line)
        self.sql(SCHEMA)
        env = dict(os.environ, NODE_PATH=os.path.join(NODE_DIR, "node_modules"), **self.env)
        self.log = open(os.path.join(parent, "standin.log"), "wb")
        self.proc = subprocess.Popen(["node", os.path.join(HERE, "supabase_standin.cjs"), "--key",
                                      self.key], stdout=subprocess.PIPE, stderr=self.log, env=env)
        line = self.proc.stdout.readline().decode()
        if not line.startswith("LISTENING "):
            raise RuntimeError("the Supabase stand-in did not start: %r" % line)
        self.url = "http://127.0.0.1:%d" % int(line.split()[1])
        return self

    def sql(self, text):
        e = self.env
        out = subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-At", "-h", e["PGHOST"],
                              "-p", e["PGPORT"], "-U", e["PGUSER"], "-d", e["PGDATABASE"], "-c", text],
                             capture_output=True, text=True, timeout=60)
        if out.returncode != 0:
            raise RuntimeError("psql: " + out.stderr)
        return out.stdout.strip()

    def control(self, **kw):
        data = json.dumps(kw).encode() if kw else None
        req = urllib.request.Request(self.url + "/_control", data=data, method="POST" if kw else "GET")
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())

    def stop(self):
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None
            self.log.close()
        if self.pgdir is not None:
            subprocess.run([os.path.join(HERE, "pg.sh"), "stop", self.pgdir], capture_output=True,
                           timeout=60)
            self.pgdir = None
            shutil.rmtree(self.parent, ignore_errors=True)
        if self in _live:
            _live.remove(self)

