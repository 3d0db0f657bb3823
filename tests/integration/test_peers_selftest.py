#!/usr/bin/env python3
"""Self-test of the test peers Sluice's delivery tests rely on (no Sluice server involved):

- tests/peers/webhook_receiver.py: records bodies and headers, enforces the token, honours every
  mode, stops and restarts on the same port, records concurrent POSTs exactly once, and works
  standalone (PORT line, /_control, /_received, SIGTERM).
- tests/peers/s3rver.sh: the fake S3 starts, takes a correctly SigV4-signed PUT (curl
  --aws-sigv4) whose object reads back, refuses a wrong secret and an unknown key with 403, and
  stops cleanly. If it cannot start (e.g. npm cannot reach its registry) that is a failed check
  with the reason, never a silent pass.
"""
import hashlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "peers"))
import sluicetest  # noqa: E402
from sluicetest import Checks  # noqa: E402
from webhook_receiver import Receiver  # noqa: E402

PEERS = os.path.join(ROOT, "tests", "peers")
t = Checks()


def post(port, path, body=b"", headers=None, conn=None, method="POST", timeout=10):
    """One request; returns (status, headers dict lower-case, body). Reuses conn if given."""
    c = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        h = {"Content-Type": "application/json"}
        h.update(headers or {})
        c.request(method, path, body=body, headers=h)
        r = c.getresponse()
        data = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, data
    finally:
        if conn is None:
            c.close()


def refused(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        return False
    except ConnectionRefusedError:
        return True


# ------------------------------------------------------------------ webhook receiver

with t.section("receiver records requests"):
    r = Receiver().start()
    st, hdr, body = post(r.port, "/hook?x=1", {"id": 1, "name": "é"}, {"X-Sluice-Test": "abc"})
    t.eq(st, 200, "receiver: POST answered 200")
    t.ok(hdr.get("content-length") is not None, "receiver: answer has Content-Length (keep-alive safe)")
    t.ok(r.wait_count(1, 5), "receiver: wait_count sees the request")
    rec = r.received()[0]
    t.eq((rec["method"], rec["path"]), ("POST", "/hook?x=1"), "receiver: method and path recorded")
    t.eq(rec["headers"].get("x-sluice-test"), "abc", "receiver: header names lower-cased, values kept")
    t.eq(rec["json"], {"id": 1, "name": "é"}, "receiver: JSON body parsed")
    t.eq(rec["body"], json.dumps({"id": 1, "name": "é"}).encode(), "receiver: raw body bytes kept")
    t.ok(isinstance(rec["time"], float) and abs(rec["time"] - time.time()) < 60, "receiver: time recorded")
    t.eq(r.url("/a"), "http://127.0.0.1:%d/a" % r.port, "receiver: url()")

    # keep-alive: several requests on one connection, one recorded each, same conn id
    r.clear()
    c = http.client.HTTPConnection("127.0.0.1", r.port, timeout=10)
    sts = [post(r.port, "/k", {"n": i}, conn=c)[0] for i in range(3)]
    c.close()
    recs = r.received()
    t.eq(sts, [200, 200, 200], "receiver: three requests on one keep-alive connection")
    t.ok(len(recs) == 3 and len({x["conn"] for x in recs}) == 1,
         "receiver: recorded once each, all on the same connection", recs)

    # chunked request body (no Content-Length)
    r.clear()
    s = socket.create_connection(("127.0.0.1", r.port), timeout=10)
    s.sendall(b"POST /chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
              b"Content-Type: application/json\r\nConnection: close\r\n\r\n"
              b"4\r\n{\"a\"\r\n3\r\n:1}\r\n0\r\n\r\n")
    resp = http.client.HTTPResponse(s)
    resp.begin()
    resp.read()
    s.close()
    t.eq((resp.status, r.received()[0]["json"]), (200, {"a": 1}), "receiver: chunked body decoded")
    r.stop()

with t.section("receiver token"):
    r = Receiver(token="s3cret").start()
    st1, h1, _ = post(r.port, "/t", {"a": 1})
    st2, _, _ = post(r.port, "/t", {"a": 2}, {"Authorization": "Bearer wrong"})
    st3, _, _ = post(r.port, "/t", {"a": 3}, {"Authorization": "Bearer s3cret"})
    t.eq((st1, st2, st3), (401, 401, 200), "receiver: no token 401, wrong token 401, right token 200")
    t.ok("bearer" in h1.get("www-authenticate", "").lower(), "receiver: 401 carries WWW-Authenticate")
    recs = r.received()
    t.eq([(x["json"]["a"], x["authorized"], x["status"]) for x in recs],
         [(1, False, 401), (2, False, 401), (3, True, 200)],
         "receiver: rejected requests are recorded too, flagged authorized=False")
    r.stop()

with t.section("receiver modes"):
    r = Receiver().start()
    r.set_mode("status", status=503, retry_after=7)
    st, hdr, _ = post(r.port, "/m", {})
    t.eq((st, hdr.get("retry-after")), (503, "7"), "receiver: mode status 503 with Retry-After")
    r.set_mode("status", status=429)
    st, hdr, _ = post(r.port, "/m", {})
    t.eq((st, hdr.get("retry-after")), (429, None), "receiver: mode status 429 without Retry-After")

    r.set_mode("slow", ms=300)
    t0 = time.monotonic()
    st, _, _ = post(r.port, "/m", {})
    dt = time.monotonic() - t0
    t.ok(st == 200 and 0.29 <= dt < 3, "receiver: mode slow answers 200 after 300 ms (took %.3fs)" % dt)

    r.set_mode("fail_n", n=2, status=500, retry_after=1)
    c = http.client.HTTPConnection("127.0.0.1", r.port, timeout=10)
    sts = [post(r.port, "/m", {}, conn=c)[0] for _ in range(4)]
    c.close()
    t.eq(sts, [500, 500, 200, 200], "receiver: mode fail_n answers 500 twice, then 200")

    r.set_mode("drop")
    try:
        post(r.port, "/m", {})
        dropped = False
    except (http.client.RemoteDisconnected, ConnectionError):
        dropped = True
    t.ok(dropped, "receiver: mode drop closes the connection without an answer")
    t.eq(r.received()[-1]["status"], None, "receiver: a dropped request is recorded with status None")

    r.set_mode("ok")
    t.eq(post(r.port, "/m", {})[0], 200, "receiver: mode ok answers 200 again")
    bad = []
    for args in (("nope",), ("status",), ("slow", {"status": 1})):
        try:
            r.set_mode(args[0], **(args[1] if len(args) > 1 else {}))
        except ValueError:
            bad.append(args[0])
    t.eq(bad, ["nope", "status", "slow"], "receiver: bad modes and arguments raise ValueError")
    r.stop()

with t.section("receiver idempotency keys and wait_for"):
    r = Receiver().start()
    r.set_mode("fail_n", n=1, status=503)
    for key in ("k1", "k1", "k2", None):
        post(r.port, "/i", {}, {"Idempotency-Key": key} if key else None)
    t.eq(r.by_idempotency_key(), {"k1": 2, "k2": 1}, "receiver: by_idempotency_key counts duplicates")
    t.eq(r.by_idempotency_key(accepted_only=True), {"k1": 1, "k2": 1},
         "receiver: by_idempotency_key(accepted_only=True) counts only 2xx answers")
    threading.Timer(0.1, lambda: post(r.port, "/late", {"late": True})).start()
    got = r.wait_for(lambda reqs: [x for x in reqs if x["path"] == "/late"], timeout=5)
    t.ok(got and got[0]["json"] == {"late": True}, "receiver: wait_for returns once the request arrives")
    t0 = time.monotonic()
    never = r.wait_for(lambda reqs: len(reqs) > 100, timeout=0.2)
    t.ok(not never and 0.2 <= time.monotonic() - t0 < 2, "receiver: wait_for gives up at its deadline")
    r.stop()

with t.section("receiver stop and restart"):
    r = Receiver().start()
    port = r.port
    keep = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    t.eq(post(port, "/a", {"n": 1}, conn=keep)[0], 200, "receiver: POST before stop")
    r.stop()
    t.ok(refused(port), "receiver: stopped receiver refuses connections")
    try:
        post(port, "/a", {"n": 2}, conn=keep)
        cut = False
    except (http.client.HTTPException, OSError):
        cut = True
    keep.close()
    t.ok(cut, "receiver: stop() also cuts open keep-alive connections")
    r.restart()
    t.eq(r.port, port, "receiver: restart() listens on the same port")
    t.eq(post(port, "/a", {"n": 3})[0], 200, "receiver: POST after restart answered 200")
    t.eq([x["json"]["n"] for x in r.received()], [1, 3], "receiver: records kept across stop/restart")
    # a slow answer in flight when the receiver stops: the client gets no answer
    r.set_mode("slow", ms=5000)
    out = {}

    def slow_post():
        try:
            out["st"] = post(port, "/slow", {})[0]
        except (http.client.HTTPException, OSError) as e:
            out["err"] = type(e).__name__

    th = threading.Thread(target=slow_post)
    th.start()
    r.wait_for(lambda reqs: any(x["path"] == "/slow" for x in reqs), 5)
    t0 = time.monotonic()
    r.stop()
    th.join(10)
    t.ok("err" in out and time.monotonic() - t0 < 3,
         "receiver: stop() during a slow answer cuts it at once (%r)" % out)
    r.stop()  # idempotent

with t.section("receiver concurrency"):
    r = Receiver().start()
    N_THREADS, PER = 16, 25
    errors = []

    def worker(w):
        c = http.client.HTTPConnection("127.0.0.1", r.port, timeout=20)
        try:
            for i in range(PER):
                st = post(r.port, "/c", {"w": w, "i": i}, {"Idempotency-Key": "%d-%d" % (w, i)}, conn=c)[0]
                if st != 200:
                    errors.append(st)
        except Exception as e:  # noqa: BLE001
            errors.append(repr(e))
        finally:
            c.close()

    ths = [threading.Thread(target=worker, args=(w,)) for w in range(N_THREADS)]
    for th in ths:
        th.start()
    for th in ths:
        th.join(30)
    recs = r.received()
    keys = r.by_idempotency_key()
    t.eq(errors, [], "receiver: %d concurrent keep-alive clients all answered 200" % N_THREADS)
    t.eq(len(recs), N_THREADS * PER, "receiver: all %d concurrent POSTs recorded" % (N_THREADS * PER))
    t.ok(len(keys) == N_THREADS * PER and set(keys.values()) == {1},
         "receiver: each concurrent POST recorded exactly once")
    t.eq(sorted(x["seq"] for x in recs), list(range(N_THREADS * PER)), "receiver: seq numbers unique and dense")
    r.stop()

with t.section("receiver standalone"):
    p = subprocess.Popen(
        [sys.executable, os.path.join(PEERS, "webhook_receiver.py"), "--port", "0", "--token", "T0k"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        line = []
        rd = threading.Thread(target=lambda: line.append(p.stdout.readline()), daemon=True)
        rd.start()
        rd.join(10)
        first = line[0].decode() if line else ""
        t.ok(first.startswith("PORT "), "standalone: prints PORT <n> when ready (%r)" % first)
        port = int(first.split()[1])
        t.eq(post(port, "/s", {"a": 1}, {"Authorization": "Bearer T0k"})[0], 200, "standalone: POST with token 200")
        t.eq(post(port, "/s", {"a": 2})[0], 401, "standalone: POST without token 401")
        st, _, b = post(port, "/_control", {"mode": "status", "status": 429, "retry_after": 3})
        t.ok(st == 200 and json.loads(b)["mode"]["status"] == 429, "standalone: POST /_control sets a mode")
        st, hdr, _ = post(port, "/s", {"a": 3}, {"Authorization": "Bearer T0k", "Idempotency-Key": "x"})
        t.eq((st, hdr.get("retry-after")), (429, "3"), "standalone: mode applied")
        st, _, b = post(port, "/_received", method="GET")
        got = json.loads(b)
        t.ok(st == 200 and [x["json"]["a"] for x in got["requests"]] == [1, 2, 3]
             and got["requests"][1]["authorized"] is False and got["by_idempotency_key"] == {"x": 1}
             and got["requests"][0]["body"] == '{"a": 1}',
             "standalone: GET /_received returns every request (control calls not recorded)", got)
        st, _, b = post(port, "/_control", {"clear": True, "mode": "ok"})
        st2, _, b2 = post(port, "/_received", method="GET")
        t.ok(st == 200 and json.loads(b2)["requests"] == [], "standalone: /_control clear empties the record")
        t.eq(post(port, "/_control", {"mode": "bogus"})[0], 400, "standalone: bad /_control gets 400")
        p.send_signal(signal.SIGTERM)
        rc = p.wait(5)
        t.eq(rc, 0, "standalone: SIGTERM exits 0")
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()

# ------------------------------------------------------------------ s3rver

S3 = os.path.join(PEERS, "s3rver.sh")


def proc_gone(pid):
    """No such process, or only a zombie not yet reaped by its new parent."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except OSError:
        return True


def curl_s3(env, method, key, secret, path, data=None, sha=None, extra=()):
    """curl 7.88's --aws-sigv4 does not add x-amz-content-sha256 itself; S3 requires it."""
    argv = ["curl", "-s", "-S", "-m", "10", "-o", "-", "-w", "\n%{http_code}",
            "--aws-sigv4", "aws:amz:%s:s3" % env["S3_REGION"], "--user", "%s:%s" % (key, secret),
            "-H", "x-amz-content-sha256: %s" % (sha or "UNSIGNED-PAYLOAD"), "-X", method]
    if data is not None:
        argv += ["--data-binary", "@-", "-H", "Content-Type: application/octet-stream"]
    argv += list(extra) + [env["S3_ENDPOINT"] + path]
    p = subprocess.run(argv, input=data, capture_output=True, timeout=20)
    out, _, code = p.stdout.rpartition(b"\n")
    return int(code or 0), out


with t.section("s3rver"):
    d = os.path.join(sluicetest.tmpdir("sluice-s3-"), "s3")
    t0 = time.monotonic()
    p = subprocess.run([S3, "start", d], stdin=subprocess.DEVNULL, capture_output=True, timeout=400)
    t_start = time.monotonic() - t0
    started = p.returncode == 0 and os.path.isfile(os.path.join(d, "env"))
    why = "" if started else ": " + (p.stderr.decode(errors="replace").strip().splitlines() or ["exit %d" % p.returncode])[0]
    t.ok(started, "s3rver: starts (%.1fs)%s" % (t_start, why[:300]),
         "s3rver.sh start exited %d:\n%s%s" % (p.returncode, p.stderr.decode(errors="replace"),
                                                p.stdout.decode(errors="replace")))
    if started:
        pid = None
        try:
            t.eq(p.stdout + p.stderr, b"", "s3rver: start is quiet on success")
            env = dict(line.split("=", 1) for line in open(os.path.join(d, "env")).read().splitlines() if line)
            t.eq(sorted(env), ["S3_ACCESS_KEY", "S3_BUCKET", "S3_ENDPOINT", "S3_REGION", "S3_SECRET_KEY"],
                 "s3rver: DIR/env has the five S3_ settings")
            pid = int(open(os.path.join(d, "pid")).read())
            t.ok(os.path.exists("/proc/%d" % pid), "s3rver: DIR/pid names a live process")
            ak, sk, bucket = env["S3_ACCESS_KEY"], env["S3_SECRET_KEY"], env["S3_BUCKET"]
            payload = b'{"id":1,"v":"\xc3\xa9"}\n' * 3
            code, out = curl_s3(env, "PUT", ak, sk, "/%s/sluice/t1/obj.ndjson" % bucket, payload)
            t.eq(code, 200, "s3rver: SigV4-signed PUT (UNSIGNED-PAYLOAD) accepted", )
            code, out = curl_s3(env, "GET", ak, sk, "/%s/sluice/t1/obj.ndjson" % bucket)
            t.eq((code, out), (200, payload), "s3rver: the object reads back byte for byte")
            sha = hashlib.sha256(payload).hexdigest()
            code, _ = curl_s3(env, "PUT", ak, sk, "/%s/sluice/t1/hashed.ndjson" % bucket, payload, sha=sha)
            t.eq(code, 200, "s3rver: PUT signed with the payload's SHA-256 accepted")
            code, out = curl_s3(env, "PUT", ak, sk + "x", "/%s/sluice/t1/bad.ndjson" % bucket, payload)
            t.ok(code == 403 and b"SignatureDoesNotMatch" in out,
                 "s3rver: PUT signed with a WRONG secret refused with 403 SignatureDoesNotMatch (%d)" % code, out)
            code, out = curl_s3(env, "PUT", "AKIANOTAKEY", sk, "/%s/sluice/t1/bad.ndjson" % bucket, payload)
            t.eq(code, 403, "s3rver: PUT signed with an unknown key refused with 403")
            code, out = curl_s3(env, "GET", ak, sk, "/%s?list-type=2&prefix=sluice%%2Ft1%%2F" % bucket)
            t.ok(code == 200 and b"<Key>sluice/t1/obj.ndjson</Key>" in out
                 and b"<Key>sluice/t1/hashed.ndjson</Key>" in out and b"bad.ndjson" not in out,
                 "s3rver: ListObjectsV2 shows the good objects only", out[:2000])
        finally:
            t0 = time.monotonic()
            p = subprocess.run([S3, "stop", d], stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
            dt = time.monotonic() - t0
            t.ok(p.returncode == 0 and not os.path.exists(d), "s3rver: stop succeeds and removes DIR (%.2fs)" % dt,
                 p.stderr.decode(errors="replace"))
            if pid is not None:
                t.ok(sluicetest.wait_until(lambda: proc_gone(pid), 5), "s3rver: the server process is gone after stop")

t.done()
