"""A throwaway PostgreSQL 15 (tests/peers/pg.sh) driven with psql subprocesses, for the CDC tests
and benchmarks. Stopped and removed at exit."""
import atexit
import os
import signal
import subprocess
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PG_SH = os.path.join(os.path.dirname(HERE), "peers", "pg.sh")
PSQL = "/usr/lib/postgresql/15/bin/psql"
if not os.path.exists(PSQL):
    PSQL = "psql"

_started = []


def stop_all():
    """Stops every PG started here. Call it before Checks.done(), which leaves with os._exit
    (atexit handlers do not run then)."""
    for p in list(_started):
        p.stop()


atexit.register(stop_all)


class PG:
    def __init__(self, *settings):
        self.dir = tempfile.mkdtemp(prefix="slpg-", dir="/tmp")
        r = subprocess.run(["bash", PG_SH, "start", self.dir] + list(settings), capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError("pg.sh start failed: %s" % r.stderr[-2000:])
        self.env = dict(line.split("=", 1) for line in open(r.stdout.strip()).read().split())
        self.port = int(self.env["PGPORT"])
        _started.append(self)

    def url(self, db="postgres", user="postgres", password=None):
        auth = user if password is None else "%s:%s" % (user, password)
        return "postgres://%s@127.0.0.1:%d/%s" % (auth, self.port, db)

    def psql(self, sql, db="postgres", check=True, user="postgres"):
        """Runs sql (one or more statements); returns stdout rows as lists of strings."""
        env = dict(os.environ, PGHOST="127.0.0.1", PGPORT=str(self.port), PGUSER=user, PGDATABASE=db)
        r = subprocess.run([PSQL, "-X", "-q", "-At", "-F", "\t", "-v", "ON_ERROR_STOP=1", "-c", sql],
                           capture_output=True, text=True, env=env)
        if check and r.returncode != 0:
            raise RuntimeError("psql failed (%s): %s" % (sql[:200], r.stderr.strip()))
        return [line.split("\t") for line in r.stdout.splitlines() if line != ""]

    def one(self, sql, db="postgres"):
        rows = self.psql(sql, db)
        return rows[0][0] if rows else None

    def lsn(self, text):
        hi, lo = text.split("/")
        return (int(hi, 16) << 32) | int(lo, 16)

    def current_lsn(self):
        return self.lsn(self.one("SELECT pg_current_wal_lsn()"))

    def slot(self, name):
        rows = self.psql("SELECT active, coalesce(confirmed_flush_lsn::text, ''), plugin, temporary "
                         "FROM pg_replication_slots WHERE slot_name = '%s'" % name)
        if not rows:
            return None
        a, flush, plugin, temp = rows[0]
        return {"active": a == "t", "confirmed_flush": self.lsn(flush) if flush else 0, "plugin": plugin,
                "temporary": temp == "t"}

    def restart(self, mode="fast"):
        r = subprocess.run(["bash", PG_SH, "restart", self.dir, mode], capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError("pg.sh restart failed: %s" % r.stderr[-2000:])

    def halt(self):
        """Stops the server (fast shutdown) and keeps its data; resume() starts it again."""
        with open(os.path.join(self.dir, "data", "postmaster.pid")) as f:
            pid = int(f.readline())
        os.kill(pid, signal.SIGINT)
        for _ in range(300):
            if not os.path.exists("/proc/%d" % pid):
                return
            time.sleep(0.1)
        raise RuntimeError("postmaster %d did not stop in 30 s" % pid)

    def resume(self):
        self.restart("fast")  # nothing to stop: it starts the server on its port

    def stop(self):
        if self in _started:
            _started.remove(self)
            subprocess.run(["bash", PG_SH, "stop", self.dir], capture_output=True)
