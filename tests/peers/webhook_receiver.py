#!/usr/bin/env python3
"""webhook_receiver.py - an HTTP/1.1 webhook target for Sluice's tests (stdlib only).

Imported:

    from webhook_receiver import Receiver
    r = Receiver(token="T").start()          # 127.0.0.1, ephemeral port
    r.url("/hook")                           # "http://127.0.0.1:<port>/hook"
    r.set_mode("fail_n", n=2, status=503, retry_after=1)
    r.wait_for(lambda reqs: len(reqs) >= 3, timeout=10)
    r.received()                             # list of dicts, oldest first
    r.by_idempotency_key()                   # {"key": times seen}
    r.stop(); r.restart()                    # same port
    r.stop()

Standalone (prints "PORT <n>" on stdout once it accepts connections; SIGTERM/SIGINT exit 0):

    python3 tests/peers/webhook_receiver.py --port 0 [--token T] [--host 127.0.0.1] [--max-seconds N]
    POST /_control  {"mode": "status", "status": 503, "retry_after": 2}  -> 200 {"mode": {...}}
                    {"clear": true} empties the record (may be combined with "mode")
    GET  /_received[?since=SEQ]  -> 200 {"requests": [...], "by_idempotency_key": {...}}
    In the JSON the body is given as "body" (UTF-8 text, invalid bytes replaced) and "body_b64".
    The two /_ endpoints are the harness's own: they need no token and are never recorded.

Each recorded request is a dict:
    seq            0, 1, 2 ... in arrival order (a request is recorded exactly once)
    method, path   as sent (path includes the query string)
    headers        {lower-case name: value}; a repeated header's values are joined with ", "
    body           bytes (Content-Length or chunked bodies; a body cut short is kept as received)
    json           the body parsed as JSON, or None
    time           time.time() when the request was complete
    conn           id of the TCP connection (equal ids = the client reused a keep-alive connection)
    authorized     True/False when a token is configured (False = answered 401), else None
    status         the status answered (None for mode "drop")
    idempotency_key  the Idempotency-Key header or None
    error          None, or why the request was incomplete (body cut short, bad chunking)

Modes (apply to requests that pass the token check; a failed check is always answered 401):
    ok                               200 {"ok": true}
    status   status=S [retry_after=R]  answer S (with a Retry-After: R header if given)
    slow     ms=N                    wait N ms, then 200 (stop() interrupts the wait)
    fail_n   n=N [status=500] [retry_after=R]  the next N requests get S, then 200 again
    drop                             close the connection without any answer
Every answer carries Content-Length, so keep-alive works; the client's "Connection: close" and
"Expect: 100-continue" are honoured (the latter by http.server itself).
"""
import argparse
import base64
import hmac
import json
import os
import signal
import socket
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODES = ("ok", "status", "slow", "fail_n", "drop")
_MAX_BODY = 256 << 20  # refuse to buffer more than this (a test peer, not a sink for anything)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True  # restart() on the same port while old sockets sit in TIME_WAIT
    request_queue_size = 128

    def __init__(self, addr, receiver):
        self.receiver = receiver
        super().__init__(addr, _Handler)

    def handle_error(self, request, client_address):
        # A client that resets or times out (or stop() cutting connections) is normal here;
        # anything else is a bug in this file, reported in one line.
        et, ev = sys.exc_info()[:2]
        if et is not None and issubclass(et, OSError):
            return
        sys.stderr.write("webhook_receiver: error handling a request from %s: %s: %s\n"
                         % (client_address, getattr(et, "__name__", et), ev))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "sluice-test-webhook/1"
    sys_version = ""
    timeout = 60  # idle keep-alive connections are closed after this many seconds
    # The answer goes out as two writes (headers, then body). With Nagle's algorithm on, the
    # body waits for the client's ACK of the headers, which a Linux client delays ~40 ms: every
    # request on a keep-alive connection took 40 ms (25 requests/s per connection). Web servers
    # send both at once or set TCP_NODELAY; so does this one.
    disable_nagle_algorithm = True

    def version_string(self):
        return self.server_version

    def setup(self):
        super().setup()
        self.conn_id = self.server.receiver._conn_open(self.connection)

    def finish(self):
        try:
            super().finish()
        finally:
            self.server.receiver._conn_closed(self.connection)

    def log_message(self, fmt, *args):  # quiet: tests look at received(), not at a log
        pass

    # Every method goes through one handler.
    def do_GET(self):
        self._handle()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_GET

    def _read_body(self):
        """(body bytes, error or None)."""
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            chunks, total = [], 0
            try:
                while True:
                    line = self.rfile.readline(65537)
                    if not line:
                        return b"".join(chunks), "connection closed inside a chunked body"
                    size = int(line.split(b";", 1)[0].strip(), 16)
                    if size == 0:
                        while True:  # trailers up to the empty line
                            t = self.rfile.readline(65537)
                            if t in (b"\r\n", b"\n", b""):
                                break
                        return b"".join(chunks), None
                    total += size
                    if total > _MAX_BODY:
                        return b"".join(chunks), "body larger than %d bytes" % _MAX_BODY
                    data = self.rfile.read(size)
                    chunks.append(data)
                    if len(data) < size:
                        return b"".join(chunks), "connection closed inside a chunk"
                    self.rfile.readline(3)  # CRLF after the chunk
            except ValueError:
                return b"".join(chunks), "bad chunk size line"
        cl = self.headers.get("Content-Length")
        if cl is None:
            return b"", None
        try:
            n = int(cl)
        except ValueError:
            return b"", "bad Content-Length %r" % cl
        if n < 0 or n > _MAX_BODY:
            return b"", "Content-Length %d out of range" % n
        data = self.rfile.read(n) if n else b""
        if len(data) < n:
            return data, "body cut short: %d of %d bytes" % (len(data), n)
        return data, None

    def _send(self, status, payload, extra=None):
        body = json.dumps(payload).encode() if payload is not None else b""
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.wfile.flush()

    def _handle(self):
        rcv = self.server.receiver
        body, err = self._read_body()
        if err:
            self.close_connection = True  # the stream position is unknown now
        path = self.path
        bare = urllib.parse.urlsplit(path).path
        if rcv.control and bare in ("/_control", "/_received"):
            return self._control(bare, path, body)

        headers = {}
        for k, v in self.headers.items():
            k = k.lower()
            headers[k] = headers[k] + ", " + v if k in headers else v
        if rcv.token is None:
            authorized = None
        else:
            want = ("Bearer " + rcv.token).encode()
            got = (self.headers.get("Authorization") or "").encode("latin-1", "replace")
            authorized = hmac.compare_digest(got, want)

        action = rcv._decide(authorized, err)
        rec = {
            "method": self.command,
            "path": path,
            "headers": headers,
            "body": body,
            "json": _parse_json(body),
            "time": time.time(),
            "conn": self.conn_id,
            "authorized": authorized,
            "status": action[1],
            "idempotency_key": headers.get("idempotency-key"),
            "error": err,
        }
        rcv._record(rec)

        kind = action[0]
        if kind == "drop":
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        if kind == "slow":
            if rcv._stopping.wait(action[2] / 1000.0):
                self.close_connection = True  # stopped while waiting: no answer, like a dead peer
                return
        status, extra = action[1], action[3]
        if status == 401:
            extra = dict(extra, **{"WWW-Authenticate": 'Bearer realm="sluice-test"'})
        if 200 <= status < 300:
            payload = {"ok": True}
        elif err:
            payload = {"error": err}
        else:
            payload = {"error": "test receiver answered %d" % status}
        self._send(status, payload, extra)

    def _control(self, bare, path, body):
        rcv = self.server.receiver
        if bare == "/_received" and self.command == "GET":
            q = urllib.parse.parse_qs(urllib.parse.urlsplit(path).query)
            since = int(q.get("since", ["0"])[0] or 0)
            reqs = [_jsonable(r) for r in rcv.received() if r["seq"] >= since]
            return self._send(200, {"requests": reqs, "by_idempotency_key": rcv.by_idempotency_key()})
        if bare == "/_control" and self.command == "POST":
            try:
                cmd = json.loads(body or b"{}")
                if not isinstance(cmd, dict):
                    raise ValueError("want a JSON object")
                if cmd.pop("clear", False):
                    rcv.clear()
                if "mode" in cmd:
                    rcv.set_mode(cmd.pop("mode"), **cmd)
                elif cmd:
                    raise ValueError("unknown fields %s" % sorted(cmd))
            except (ValueError, TypeError) as e:
                return self._send(400, {"error": str(e)})
            return self._send(200, {"mode": rcv.mode()})
        return self._send(405, {"error": "use POST /_control or GET /_received"})


def _parse_json(body):
    if not body:
        return None
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None


def _jsonable(r):
    out = dict(r)
    out["body"] = r["body"].decode("utf-8", "replace")
    out["body_b64"] = base64.b64encode(r["body"]).decode()
    return out


class Receiver:
    """A webhook target on 127.0.0.1. Thread-safe; start() returns self."""

    def __init__(self, token=None, host="127.0.0.1", port=0, control=False):
        self.token = token
        self.host = host
        self.port = port  # 0 until start() picks one; kept across stop()/restart()
        self.control = control  # serve /_control and /_received (standalone mode)
        self._lock = threading.Lock()
        self._reqs = []
        self._seq = 0
        self._mode = {"mode": "ok"}
        self._conns = {}
        self._conn_seq = 0
        self._server = None
        self._thread = None
        self._stopping = threading.Event()

    # ---- lifecycle

    def start(self, bind_timeout=5.0):
        if self._server is not None:
            raise RuntimeError("receiver already running on port %d" % self.port)
        self._stopping.clear()
        deadline = time.monotonic() + bind_timeout
        while True:
            try:
                self._server = _Server((self.host, self.port), self)
                break
            except OSError:
                # restart(): the port may still be held for a moment; another process may have
                # taken it, in which case this fails after bind_timeout.
                if self.port == 0 or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
            name="webhook-receiver-%d" % self.port, daemon=True,
        )
        self._thread.start()
        return self

    def stop(self):
        """Stop listening (new connections are refused) and cut every open connection, as a
        receiver that went away would. Records are kept. The port can be reused by restart()."""
        srv = self._server
        if srv is None:
            return
        self._stopping.set()
        srv.shutdown()
        srv.server_close()
        with self._lock:
            conns = list(self._conns.values())
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._thread.join(5)
        self._server = None
        self._thread = None

    def restart(self):
        self.stop()
        return self.start()

    def running(self):
        return self._server is not None

    def __enter__(self):
        return self.start() if self._server is None else self

    def __exit__(self, *exc):
        self.stop()
        return False

    def url(self, path="/"):
        if not path.startswith("/"):
            path = "/" + path
        return "http://%s:%d%s" % (self.host, self.port, path)

    # ---- behaviour

    def set_mode(self, mode, **kw):
        """ok | status(status, retry_after=None) | slow(ms) | fail_n(n, status=500, retry_after=None)
        | drop. Unknown modes or arguments raise ValueError."""
        allowed = {
            "ok": {},
            "status": {"status": None, "retry_after": None},
            "slow": {"ms": None},
            "fail_n": {"n": None, "status": 500, "retry_after": None},
            "drop": {},
        }
        if mode not in allowed:
            raise ValueError("unknown mode %r (want one of %s)" % (mode, ", ".join(MODES)))
        bad = set(kw) - set(allowed[mode])
        if bad:
            raise ValueError("mode %s does not take %s" % (mode, ", ".join(sorted(bad))))
        m = dict(allowed[mode], **kw)
        m["mode"] = mode
        for k in ("status", "ms", "n"):
            if k in m and m[k] is None:
                raise ValueError("mode %s needs %s=" % (mode, k))
            if k in m:
                m[k] = int(m[k])
        if "status" in m and not 100 <= m["status"] <= 599:
            raise ValueError("status %d out of range" % m["status"])
        if m.get("retry_after") is not None:
            m["retry_after"] = str(m["retry_after"])
        with self._lock:
            self._mode = m

    def mode(self):
        with self._lock:
            return dict(self._mode)

    def _decide(self, authorized, err):
        """(kind, status, ms, extra headers) for one request; fail_n is counted down here."""
        if err:
            return ("answer", 400, 0, {})
        if authorized is False:
            return ("answer", 401, 0, {})
        with self._lock:
            m = self._mode
            mode = m["mode"]
            if mode == "drop":
                return ("drop", None, 0, {})
            if mode == "slow":
                return ("slow", 200, m["ms"], {})
            if mode == "status" or (mode == "fail_n" and m["n"] > 0):
                if mode == "fail_n":
                    m["n"] -= 1
                extra = {"Retry-After": m["retry_after"]} if m.get("retry_after") is not None else {}
                return ("answer", m["status"], 0, extra)
            return ("answer", 200, 0, {})

    # ---- records

    def _record(self, rec):
        with self._lock:
            rec["seq"] = self._seq
            self._seq += 1
            self._reqs.append(rec)

    def received(self):
        """A snapshot: a new list of the recorded request dicts, oldest first."""
        with self._lock:
            return list(self._reqs)

    def clear(self):
        with self._lock:
            del self._reqs[:]

    def by_idempotency_key(self, accepted_only=False):
        """{Idempotency-Key: number of recorded requests with it}. accepted_only counts only the
        ones answered 2xx, i.e. deliveries the sender was told succeeded."""
        out = {}
        for r in self.received():
            k = r["idempotency_key"]
            if k is None:
                continue
            if accepted_only and not (r["status"] is not None and 200 <= r["status"] < 300):
                continue
            out[k] = out.get(k, 0) + 1
        return out

    def wait_for(self, predicate, timeout=10.0, interval=0.01):
        """Poll predicate(received()) until it returns something truthy or timeout seconds pass.
        Returns that value (truthy = condition met), or the last falsy one on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            v = predicate(self.received())
            if v or time.monotonic() >= deadline:
                return v
            time.sleep(interval)

    def wait_count(self, n, timeout=10.0):
        """True once at least n requests were recorded (within timeout)."""
        return bool(self.wait_for(lambda reqs: len(reqs) >= n, timeout))

    # ---- connection bookkeeping (for stop())

    def _conn_open(self, sock):
        with self._lock:
            self._conn_seq += 1
            self._conns[id(sock)] = sock
            return self._conn_seq

    def _conn_closed(self, sock):
        with self._lock:
            self._conns.pop(id(sock), None)


def main(argv=None):
    ap = argparse.ArgumentParser(description="HTTP/1.1 webhook receiver for tests")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--token", default=None, help="require Authorization: Bearer TOKEN")
    ap.add_argument("--max-seconds", type=float, default=0, help="exit after this long (0 = never)")
    a = ap.parse_args(argv)

    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    r = Receiver(token=a.token, host=a.host, port=a.port, control=True).start()
    sys.stdout.write("PORT %d\n" % r.port)
    sys.stdout.flush()
    done.wait(a.max_seconds if a.max_seconds > 0 else None)
    r.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
