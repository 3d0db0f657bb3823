"""A real ClickHouse (Debian's clickhouse-server 18.16) for tests and benchmarks: started as the
`clickhouse` user (setpriv; it refuses nothing as root, but files in a root-owned temp dir are not
its own) in a temp dir, HTTP and native ports on 127.0.0.1 picked free, stopped by PID at exit.
Read back with clickhouse-client (the native protocol), not through the HTTP port the sink uses.

    ch = ClickHouse().start()        # ch.url (HTTP), ch.tcp_port
    ch.query("CREATE TABLE ...")      # clickhouse-client --query; stdout stripped
    ch.halt(); ch.resume()            # the server down and up again, same data and ports
    ch.stop()                         # also at exit
"""
import atexit
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request

_live = []


def _cleanup():
    for c in list(_live):
        c.stop()


atexit.register(_cleanup)

CONFIG = """<?xml version="1.0"?>
<yandex>
    <logger><level>warning</level><log>{d}/log/server.log</log>
        <errorlog>{d}/log/server.err.log</errorlog><size>100M</size><count>1</count></logger>
    <listen_host>127.0.0.1</listen_host>
    <http_port>{http}</http_port>
    <tcp_port>{tcp}</tcp_port>
    <max_connections>256</max_connections>
    <keep_alive_timeout>3</keep_alive_timeout>
    <max_concurrent_queries>50</max_concurrent_queries>
    <uncompressed_cache_size>134217728</uncompressed_cache_size>
    <mark_cache_size>134217728</mark_cache_size>
    <path>{d}/data/</path>
    <tmp_path>{d}/tmp/</tmp_path>
    <user_files_path>{d}/user_files/</user_files_path>
    <format_schema_path>{d}/format_schemas/</format_schema_path>
    <users_config>{d}/users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <timezone>UTC</timezone>
    <mlock_executable>false</mlock_executable>
</yandex>
"""


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class ClickHouse:
    def __init__(self, password=None):
        self.dir = tempfile.mkdtemp(prefix="sl-ch-")
        os.chmod(self.dir, 0o755)
        self.password = password
        self.http_port = free_port()
        self.tcp_port = free_port()
        self.proc = None
        for sub in ("data", "tmp", "user_files", "log", "format_schemas"):
            os.makedirs(os.path.join(self.dir, sub))
        users = open("/etc/clickhouse-server/users.xml").read()
        if password is not None:  # the default user's password, for the auth tests
            users = users.replace("<password></password>", "<password>%s</password>" % password, 1)
        with open(os.path.join(self.dir, "users.xml"), "w") as f:
            f.write(users)
        with open(os.path.join(self.dir, "config.xml"), "w") as f:
            f.write(CONFIG.format(d=self.dir, http=self.http_port, tcp=self.tcp_port))
        if os.getuid() == 0:
            pw = pwd.getpwnam("clickhouse")
            for root, dirs, files in os.walk(self.dir):
                for n in dirs + files + [""]:
                    os.chown(os.path.join(root, n), pw.pw_uid, pw.pw_gid)
        _live.append(self)

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.http_port

    def start(self, timeout=30):
        argv = ["clickhouse-server", "--config-file=" + os.path.join(self.dir, "config.xml")]
        if os.getuid() == 0:
            argv = ["setpriv", "--reuid=clickhouse", "--regid=clickhouse", "--init-groups"] + argv
        log = open(os.path.join(self.dir, "log", "stdout.log"), "ab")
        self.proc = subprocess.Popen(argv, cwd=self.dir, stdin=subprocess.DEVNULL, stdout=log,
                                     stderr=log, close_fds=True)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("clickhouse-server exited: %s" % self.log_tail())
            try:
                with urllib.request.urlopen(self.url + "/ping", timeout=2) as r:
                    if r.read().strip() == b"Ok.":
                        return self
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("clickhouse-server did not answer /ping: %s" % self.log_tail())

    def log_tail(self, n=3000):
        out = ""
        for name in ("stdout.log", "server.err.log"):
            p = os.path.join(self.dir, "log", name)
            if os.path.exists(p):
                out += open(p, errors="replace").read()[-n:]
        return out

    def query(self, sql, stdin=None, check=True):
        argv = ["clickhouse-client", "--host", "127.0.0.1", "--port", str(self.tcp_port), "--query", sql]
        if self.password is not None:
            argv += ["--password", self.password]
        r = subprocess.run(argv, input=stdin, capture_output=True, timeout=120)
        if check and r.returncode != 0:
            raise RuntimeError("clickhouse-client failed (%s): %s" % (sql[:200], r.stderr.decode()[-1000:]))
        return r.stdout.decode().strip()

    def halt(self):
        """Stops the server by its PID and keeps the data; resume() starts it again."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def resume(self):
        return self.start()

    def stop(self):
        self.halt()
        if self in _live:
            _live.remove(self)
        if not os.environ.get("SLUICE_TEST_KEEP"):
            shutil.rmtree(self.dir, ignore_errors=True)
