"""Shared helper for Sluice's integration and crash tests (stdlib + python3-msgpack).

- Checks: prints one line per check, "ok - <what>" or "not ok - <what>" (tests/run.sh counts them),
  with details as "# " lines; a section that raises counts as one failed check.
- Server: starts `$SLUICE_BIN serve --data DIR --listen 127.0.0.1:0`, waits (10 s at most) for
  "listening on 127.0.0.1:PORT" on stderr, captures stderr+stdout to a log file, stops by PID
  (SIGTERM = clean, SIGKILL = crash). Every server and temp dir is cleaned up at exit.
- req()/Client: small HTTP helpers returning Resp(status, headers, body, json).
- verify_strand: the independent chain verifier (tests/crash/verify_strand.py).
SLUICE_TEST_KEEP=1 keeps the temp data dirs and server logs for debugging.
"""
import atexit
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "crash"))
sys.dont_write_bytecode = True  # keep the source tree clean of __pycache__
import verify_strand  # noqa: E402  (tests/crash/verify_strand.py)

SLUICE_BIN = os.environ.get("SLUICE_BIN") or os.path.join(ROOT, "build", "sluice")
START_TIMEOUT = 10.0

_servers = []
_tmpdirs = []


_cleanups = []  # more things to stop (test peers), newest first; see at_cleanup


def at_cleanup(fn):
    """Runs fn() when the test ends, however it ends (Checks.done() leaves with os._exit, which
    skips atexit handlers). For peers such as PostgreSQL that must not outlive the test."""
    _cleanups.insert(0, fn)
    return fn


def _cleanup():
    for fn in list(_cleanups):
        try:
            fn()
        except Exception:
            pass
    for s in list(_servers):
        try:
            s.kill()
        except Exception:
            pass
    if os.environ.get("SLUICE_TEST_KEEP"):  # debugging: keep data dirs and logs
        if _tmpdirs:
            sys.stderr.write("# kept temp dirs: %s\n" % " ".join(_tmpdirs))
        del _tmpdirs[:]
    for d in _tmpdirs:
        shutil.rmtree(d, ignore_errors=True)


atexit.register(_cleanup)


def _on_term(signum, frame):
    raise SystemExit(128 + signum)


signal.signal(signal.SIGTERM, _on_term)


def tmpdir(prefix="sluice-test-"):
    d = tempfile.mkdtemp(prefix=prefix)
    _tmpdirs.append(d)
    return d


# ---------------------------------------------------------------- checks


# ---- secrets hygiene (docs/security.md): every secret a test configures is looked for in every
# answer the test received and in every log of its servers, when it is done (Checks.done) ----
_SECRET_KEY = re.compile(r"password|secret|token|access_key(?!_id)|private_key|sas", re.I)
_URL_PASSWORD = re.compile(r"://[^/:@\s]+:([^@/\s]+)@|\bpassword=([^\s;&]+)")
_secrets = set()
_answers = []  # (method, path, the first 64 KiB of the answer)


def secret(value):
    """Registers a secret the test gave the server (a token, a password) and returns it."""
    if isinstance(value, str) and len(value) >= 8:
        _secrets.add(value)
    return value


def _collect_secrets(v, key=""):
    """The values of secret-looking keys, and passwords inside URLs, in a connector config sent."""
    if isinstance(v, dict):
        for k, x in v.items():
            _collect_secrets(x, str(k))
    elif isinstance(v, list):
        for x in v:
            _collect_secrets(x, key)
    elif isinstance(v, str) and v != "***":
        if _SECRET_KEY.search(key):
            secret(v)
        for m in _URL_PASSWORD.finditer(v):  # in URLs, libpq's key=value strings
            secret(urllib.parse.unquote(m.group(1) or m.group(2)))


def _check_secrets(t):
    if not _secrets:
        return
    leaks = []
    for method, path, body in _answers:
        leaks += ["%s %s answered %s..." % (method, path, s[:4]) for s in _secrets if s.encode() in body]
    for srv in _servers:
        try:
            log = open(srv.log_path, "rb").read()
        except OSError:
            continue
        leaks += ["the log of server %d holds %s..." % (_servers.index(srv) + 1, s[:4]) for s in _secrets
                  if s.encode() in log]
    t.ok(not leaks, "none of the %d secrets the test configured is in any answer (%d) or server log"
         % (len(_secrets), len(_answers)), "\n".join(leaks[:20]))


class Checks:
    def __init__(self):
        self.passed = 0
        self.failed = 0
        self.servers_to_dump = []

    def ok(self, cond, what, detail=None):
        if cond:
            self.passed += 1
            print("ok - %s" % what, flush=True)
        else:
            self.failed += 1
            print("not ok - %s" % what, flush=True)
            if detail is not None:
                for line in str(detail).splitlines()[:150]:
                    print("#   %s" % line, flush=True)
        return bool(cond)

    def eq(self, got, want, what):
        return self.ok(got == want, what, "got  %r\nwant %r" % (_clip(got), _clip(want)))

    def section(self, name, server=None):
        """Context manager: an exception inside counts as one failed check (with traceback and
        the server's log tail), then the test goes on with the next section."""
        return _Section(self, name, server)

    def note(self, msg):
        for line in str(msg).splitlines():
            print("# %s" % line, flush=True)

    def done(self):
        _check_secrets(self)
        if self.failed:
            for srv in _servers:
                self.note("---- log of server %d (%s), last lines:" % (_servers.index(srv) + 1, srv.log_path))
                self.note(srv.log_tail(3000))
        self.note("%d passed, %d failed" % (self.passed, self.failed))
        _cleanup()
        sys.stdout.flush()
        os._exit(1 if self.failed else 0)


class _Section:
    def __init__(self, t, name, server):
        self.t, self.name, self.server = t, name, server

    def __enter__(self):
        return self

    def __exit__(self, et, ev, tb):
        if et is None:
            return False
        if et in (KeyboardInterrupt, SystemExit):
            return False
        detail = "".join(traceback.format_exception(et, ev, tb))[-3000:]
        if self.server is not None:
            detail += "\nserver log tail:\n" + self.server.log_tail()
        self.t.ok(False, "%s (raised %s: %s)" % (self.name, et.__name__, _clip(str(ev), 200)), detail)
        return True


def _clip(v, n=400):
    r = v if isinstance(v, str) else repr(v)
    return r if len(r) <= n else r[: n - 3] + "..."


def require_binary(t):
    if not (os.path.isfile(SLUICE_BIN) and os.access(SLUICE_BIN, os.X_OK)):
        t.ok(False, "server binary exists at %s (build it with make build/sluice)" % SLUICE_BIN)
        t.done()


# ---------------------------------------------------------------- server


class ServerError(Exception):
    pass


class Server:
    """One `sluice serve` process on an ephemeral port. The data dir survives restarts of the same
    Server object (start/stop/kill/start ...) and is removed at exit unless it was passed in."""

    def __init__(self, data=None, args=()):
        if data is None:
            data = os.path.join(tmpdir(), "data")
            os.makedirs(data)
        self.data = data
        self.args = list(args)
        self.log_path = os.path.join(tmpdir("sluice-log-"), "server.log")
        self.proc = None
        self.port = None
        self.starts = 0
        _servers.append(self)

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port

    def start(self, args=None):
        if self.proc is not None:
            raise ServerError("already running")
        if args is not None:
            self.args = list(args)
        self.starts += 1
        with open(self.log_path, "ab") as f:
            f.write(b"\n===== start %d: %s\n" % (self.starts, " ".join(self.argv()).encode()))
            offset = f.tell()
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(
                self.argv(), stdin=subprocess.DEVNULL, stdout=log, stderr=log, close_fds=True
            )
        finally:
            log.close()
        deadline = time.monotonic() + START_TIMEOUT
        pat = re.compile(rb"listening on 127\.0\.0\.1:(\d+)")
        while True:
            with open(self.log_path, "rb") as f:
                f.seek(offset)
                m = pat.search(f.read())
            if m:
                self.port = int(m.group(1))
                return self
            rc = self.proc.poll()
            if rc is not None:
                self.proc = None
                raise ServerError("server exited with %s before listening:\n%s" % (rc, self.log_tail()))
            if time.monotonic() > deadline:
                self.kill()
                raise ServerError("server did not print 'listening on' within %.0fs:\n%s" % (START_TIMEOUT, self.log_tail()))
            time.sleep(0.01)

    def argv(self):
        return [SLUICE_BIN, "serve", "--data", self.data, "--listen", "127.0.0.1:0"] + self.args

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=15.0):
        """SIGTERM by PID, wait; returns the exit status (None if it had to be SIGKILLed)."""
        if self.proc is None:
            return None
        p = self.proc
        if p.poll() is None:
            os.kill(p.pid, signal.SIGTERM)
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                self._dump_stacks("SIGTERM did not stop the server within %.0fs" % timeout)
                os.kill(p.pid, signal.SIGKILL)
                p.wait()
                self.proc = None
                return None
        self.proc = None
        return p.returncode

    def kill(self):
        """SIGKILL by PID (a crash), wait."""
        if self.proc is None:
            return
        p = self.proc
        if p.poll() is None:
            try:
                os.kill(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        p.wait()
        self.proc = None

    def _dump_stacks(self, why):
        """Append every thread's stack (gdb, if installed) to the server log, for the report."""
        out = b""
        gdb = shutil.which("gdb")
        if gdb and self.proc is not None:
            try:
                out = subprocess.run(
                    [gdb, "-p", str(self.proc.pid), "-batch", "-ex", "thread apply all bt"],
                    stdin=subprocess.DEVNULL, capture_output=True, timeout=60,
                ).stdout
            except Exception as e:
                out = repr(e).encode()
        with open(self.log_path, "ab") as f:
            f.write(b"\n===== %s; thread stacks:\n" % why.encode() + out)

    def log_mark(self):
        try:
            return os.path.getsize(self.log_path)
        except OSError:
            return 0

    def log_since(self, mark, n=6000):
        try:
            with open(self.log_path, "rb") as f:
                f.seek(mark)
                data = f.read()
        except OSError:
            return "(no log)"
        text = data.decode("utf-8", "replace")
        return text if len(text) <= n else "...\n" + text[-n:]

    def restart(self):
        self.stop()
        return self.start()

    def log_tail(self, n=4000):
        try:
            with open(self.log_path, "rb") as f:
                data = f.read()
            return data[-n:].decode("utf-8", "replace")
        except OSError:
            return "(no log)"

    def client(self, timeout=30):
        return Client(self.port, timeout)

    def req(self, method, path, body=None, **kw):
        return req(self.port, method, path, body, **kw)


def run_verify(data, strand=None, timeout=120):
    """Run `sluice verify --data DIR [--strand NAME]`; returns (exit status, stdout, stderr)."""
    argv = [SLUICE_BIN, "verify", "--data", data]
    if strand is not None:
        argv += ["--strand", strand]
    p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def parse_verify_ok(stdout):
    """{strand: (count, head_hash)} from the `ok <strand> <count> <head_hash>` lines."""
    out = {}
    for line in stdout.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[0] == "ok" and parts[2].isdigit():
            out[parts[1]] = (int(parts[2]), parts[3])
    return out


# ---------------------------------------------------------------- HTTP


class Resp:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers  # dict, lower-case names
        self.body = body
        self._json = _UNSET

    @property
    def json(self):
        if self._json is _UNSET:
            try:
                self._json = json.loads(self.body)
            except Exception:
                self._json = None
        return self._json

    def __repr__(self):
        return "<%d %s>" % (self.status, _clip(self.body.decode("utf-8", "replace"), 300))


_UNSET = object()


def _body_bytes(body, ctype):
    if body is None:
        return None, ctype
    if isinstance(body, (bytes, bytearray)):
        return bytes(body), ctype
    if isinstance(body, str):
        return body.encode("utf-8"), ctype
    return json.dumps(body).encode("utf-8"), ctype


class Client:
    """One keep-alive connection. No retries: an error is a test finding."""

    def __init__(self, port, timeout=30):
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)

    def request(self, method, path, body=None, ctype="application/json", headers=None):
        if method in ("POST", "PATCH", "PUT") and re.match(r"^/(api/)?v1/connectors(/(?!inbound/)|$)", path):
            _collect_secrets(body)
        data, ctype = _body_bytes(body, ctype)
        h = {}
        if data is not None and ctype is not None:
            h["Content-Type"] = ctype
        if headers:
            h.update(headers)
        self.conn.request(method, path, body=data, headers=h)
        r = self.conn.getresponse()
        b = r.read()
        _answers.append((method, path[:200], b[:65536]))
        return Resp(r.status, {k.lower(): v for k, v in r.getheaders()}, b)

    def close(self):
        self.conn.close()


def req(port, method, path, body=None, ctype="application/json", headers=None, timeout=30):
    """One request on a fresh connection."""
    c = Client(port, timeout)
    try:
        return c.request(method, path, body, ctype, headers)
    finally:
        c.close()


def raw_exchange(port, data, timeout=10.0, half_close=False):
    """Send raw bytes, then read one HTTP response if the server sends one. Returns
    (status or None, body bytes or None, error string or None)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        try:
            s.sendall(data)
            if half_close:
                s.shutdown(socket.SHUT_WR)
        except OSError as e:
            pass  # the server may answer (413) and close before taking everything
        r = http.client.HTTPResponse(s)
        try:
            r.begin()
            return r.status, r.read(), None
        except Exception as e:
            return None, None, "%s: %s" % (type(e).__name__, e)
    finally:
        s.close()


def quote(name):
    return urllib.parse.quote(name, safe="")


# ---------------------------------------------------------------- API shortcuts


def is_hex64(h):
    return isinstance(h, str) and len(h) == 64 and all(c in "0123456789abcdef" for c in h)


def strands(port):
    r = req(port, "GET", "/v1/strands")
    if r.status != 200 or not isinstance(r.json, dict):
        raise AssertionError("GET /v1/strands -> %r" % r)
    return {s["name"]: s for s in r.json["strands"]}


def counts(port):
    return {n: s.get("count") for n, s in strands(port).items()}


def all_records(port, strand, raw=False, page=10000, from_seq=0):
    out = []
    seq = from_seq
    c = Client(port, 60)
    try:
        while True:
            r = c.request(
                "GET",
                "/v1/strands/%s/records?from_seq=%d&limit=%d%s" % (quote(strand), seq, page, "&raw=1" if raw else ""),
            )
            if r.status != 200:
                raise AssertionError("GET records from %d -> %r" % (seq, r))
            recs = r.json["records"]
            if not recs:
                return out
            out.extend(recs)
            seq = recs[-1]["seq"] + 1
    finally:
        c.close()


def healthy(port):
    try:
        r = req(port, "GET", "/v1/health", timeout=10)
        return r.status == 200 and isinstance(r.json, dict) and r.json.get("status") == "ok"
    except Exception:
        return False


def metric_total(port, name_part):
    """Sum of every /metrics sample whose metric name contains name_part (histogram buckets, sums
    and counts left out); None when no such metric is exported."""
    r = req(port, "GET", "/metrics")
    total, seen = 0.0, False
    for line in r.body.decode("utf-8", "replace").splitlines():
        if not line or line.startswith("#"):
            continue
        name = re.split(r"[{\s]", line, 1)[0]
        if name_part in name and not name.endswith(("_bucket", "_sum", "_count")):
            try:
                total += float(line.rsplit(None, 1)[-1])
                seen = True
            except ValueError:
                pass
    return total if seen else None


def same_value(a, b):
    return verify_strand.same_value(a, b)


def wait_until(fn, timeout, interval=0.01):
    """Poll fn() until truthy or the deadline passes; returns the last value."""
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v or time.monotonic() > deadline:
            return v
        time.sleep(interval)
