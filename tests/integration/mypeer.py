"""A throwaway MariaDB (tests/peers/mariadb.sh) driven with the mariadb client, for the mysql-cdc
tests and benchmark. Stopped and removed at exit (or by stop_all, before Checks.done())."""
import atexit
import os
import subprocess
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
MY_SH = os.path.join(os.path.dirname(HERE), "peers", "mariadb.sh")

_started = []


def stop_all():
    for m in list(_started):
        m.stop()


atexit.register(stop_all)


class MariaDB:
    def __init__(self, *options):
        self.dir = tempfile.mkdtemp(prefix="slmy-", dir="/tmp")
        r = subprocess.run(["bash", MY_SH, "start", self.dir] + list(options), capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError("mariadb.sh start failed: %s" % r.stderr[-2000:])
        self.env = dict(line.split("=", 1) for line in open(r.stdout.strip()).read().split())
        self.port = int(self.env["MY_PORT"])
        _started.append(self)

    def config(self, database, **extra):
        c = {"host": "127.0.0.1", "port": self.port, "database": database, "user": "sluice",
             "password": "sluicepw", "server_id": 4242}
        c.update(extra)
        return c

    def sql(self, text, check=True, db=None):
        """Runs text (one or more statements) as root over the socket; returns rows as lists."""
        argv = ["mariadb", "--no-defaults", "--socket=" + self.env["MY_SOCKET"], "-uroot", "-N", "-B",
                "--default-character-set=utf8mb4"]
        if db:
            argv.append(db)
        r = subprocess.run(argv + ["-e", text], capture_output=True, text=True)
        if check and r.returncode != 0:
            raise RuntimeError("mariadb failed (%s): %s" % (text[:200], r.stderr.strip()))
        return [line.split("\t") for line in r.stdout.splitlines() if line != ""]

    def one(self, text):
        rows = self.sql(text)
        return rows[0][0] if rows else None

    def pid(self):
        with open(os.path.join(self.dir, "pid")) as f:
            return int(f.read().strip())

    def restart(self):
        r = subprocess.run(["bash", MY_SH, "restart", self.dir], capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError("mariadb.sh restart failed: %s" % r.stderr[-2000:])

    def halt(self):
        """Stops the server and keeps its data; restart() starts it again."""
        r = subprocess.run(["bash", MY_SH, "halt", self.dir], capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError("mariadb.sh halt failed: %s" % r.stderr[-2000:])

    def stop(self):
        if self in _started:
            _started.remove(self)
            subprocess.run(["bash", MY_SH, "stop", self.dir], capture_output=True)
