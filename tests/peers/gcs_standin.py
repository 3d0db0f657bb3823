#!/usr/bin/env python3
"""A STAND-IN for Google Cloud Storage: nothing of Google's can be installed here, so this small
server implements the parts of the public APIs that Sluice's gcs provider uses, as Google's docs
describe them, strictly enough to catch mistakes. It is not Google Cloud Storage.

- OAuth2 token endpoint (POST /token, "Using OAuth 2.0 for Server to Server Applications"):
  grant_type urn:ietf:params:oauth:grant-type:jwt-bearer and an assertion that is a JWT signed
  RS256 with the service account's private key. Checked: the signature against the public key
  given on the command line, header alg RS256 (and kid if given), iss = the service account's
  email, aud = this endpoint's URL, a devstorage scope, iat within 5 minutes of now, exp after
  now and at most an hour after iat. Answers {"access_token", "expires_in", "token_type"};
  anything wrong: 400 {"error": "invalid_grant", "error_description"}.
- JSON API, with "Authorization: Bearer <token>" (401 for a missing, unknown or expired token):
  GET /storage/v1/b/{bucket}/o[?prefix=&maxResults=] (list), GET /storage/v1/b/{bucket}/o/{name}
  ?alt=media (download), POST /upload/storage/v1/b/{bucket}/o?uploadType=media&name= (media
  upload), POST ...?uploadType=resumable&name= (starts a session: 200 with Location), PUT on the
  session URI with "Content-Range: bytes a-b/total" (chunks must start where the session is and,
  but for the last, be multiples of 256 KiB: 308 with "Range: bytes=0-N" until complete, then
  200 with the object) or "Content-Range: bytes */total" (the status check). Unknown bucket: 404.
- Test controls (not Google's): GET /_standin/list?prefix= and /_standin/o/{name} (the stored
  objects, without a token), GET /_standin/log (every request's method, path, query and
  upload headers; tokens issued; expired tokens presented), POST /_standin/faults
  {"fail_chunks": n, "fail_media": n} (the next n chunk PUTs keep only the first half of their
  bytes, rounded down to 256 KiB, and answer 503, as a server that lost the rest would; the next n
  media uploads get 503),
  POST /_standin/anonymous {"allow": true} (accept requests without a token: Google's own
  client sends none to a custom endpoint).

Usage: gcs_standin.py --bucket B --client-email E --public-key FILE [--key-id K]
       [--token-ttl SECONDS] [--port P]      prints "PORT n" once listening."""
import argparse
import base64
import json
import os
import secrets
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.serialization import load_pem_public_key

CHUNK_UNIT = 256 * 1024


def b64url_dec(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


class State:
    def __init__(self, args):
        self.args = args
        self.pub = load_pem_public_key(open(args.public_key, "rb").read())
        self.lock = threading.Lock()
        self.objects = {}  # (bucket, name) -> (bytes, content type)
        self.sessions = {}  # id -> dict(bucket, name, ctype, total, data)
        self.tokens = {}  # token -> expiry (epoch seconds)
        self.log = []
        self.tokens_issued = 0
        self.expired_used = 0
        self.bad_jwts = []
        self.fail_chunks = 0
        self.fail_media = 0
        self.anonymous = False


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # headers and body are two writes: without TCP_NODELAY the body waits ~40 ms for the
    # client's delayed ACK on every keep-alive request (as a real server, send at once)
    disable_nagle_algorithm = True

    def log_message(self, fmt, *a):  # quiet
        pass

    # -- helpers
    def body(self):
        """The request body, or None when the client went away before sending all of it: GCS
        acts on a request only once it is complete (a sender killed in the middle of an upload
        leaves no object, and a chunk cut short adds nothing to its session)."""
        if (self.headers.get("Transfer-Encoding") or "").lower() == "chunked":
            out = bytearray()
            while True:
                line = self.rfile.readline()
                if not line:
                    return None
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(out)
                data = self.rfile.read(size)
                if len(data) < size:
                    return None
                out += data
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        data = self.rfile.read(n) if n else b""
        return data if len(data) == n else None

    def send(self, code, obj=None, headers=None, raw=None):
        data = raw if raw is not None else (json.dumps(obj).encode() if obj is not None else b"")
        self.send_response(code)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if obj is not None:
            self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def error(self, code, msg):
        self.send(code, {"error": {"code": code, "message": msg, "errors": [{"message": msg}]}})

    def record(self, url, n):
        q = urllib.parse.parse_qs(url.query, keep_blank_values=True)
        h = {k.lower(): v for k, v in self.headers.items()
             if k.lower() in ("content-type", "content-range", "x-upload-content-type", "x-upload-content-length")}
        h["authorization"] = "Bearer" if (self.headers.get("Authorization") or "").startswith("Bearer ") else None
        with S.lock:
            S.log.append({"method": self.command, "path": url.path, "query": {k: v[0] for k, v in q.items()},
                          "headers": h, "len": n, "at": time.time()})

    def authorized(self):
        auth = self.headers.get("Authorization") or ""
        if not auth and S.anonymous:
            return True
        tok = auth[7:] if auth.startswith("Bearer ") else None
        with S.lock:
            exp = S.tokens.get(tok)
            if exp is not None and exp <= time.time():
                S.expired_used += 1
        if exp is None or exp <= time.time():
            self.error(401, "Invalid Credentials")
            return False
        return True

    # -- OAuth2
    def token(self, body):
        form = urllib.parse.parse_qs(body.decode(errors="replace"))

        def refuse(why):
            with S.lock:
                S.bad_jwts.append(why)
            self.send(400, {"error": "invalid_grant", "error_description": why})

        if form.get("grant_type") != ["urn:ietf:params:oauth:grant-type:jwt-bearer"]:
            return refuse("grant_type must be urn:ietf:params:oauth:grant-type:jwt-bearer")
        parts = (form.get("assertion") or [""])[0].split(".")
        if len(parts) != 3:
            return refuse("assertion is not a JWT")
        try:
            header, claims = json.loads(b64url_dec(parts[0])), json.loads(b64url_dec(parts[1]))
            S.pub.verify(b64url_dec(parts[2]), (parts[0] + "." + parts[1]).encode(), padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            return refuse("Invalid JWT Signature.")
        except ValueError as e:
            return refuse("malformed JWT: %s" % e)
        now = time.time()
        if header.get("alg") != "RS256":
            return refuse("alg must be RS256")
        if S.args.key_id and header.get("kid") != S.args.key_id:
            return refuse("kid does not name the key")
        if claims.get("iss") != S.args.client_email:
            return refuse("iss is not the service account")
        if claims.get("aud") != "http://127.0.0.1:%d/token" % self.server.server_port:
            return refuse("aud must be the token endpoint")
        if "devstorage" not in (claims.get("scope") or ""):
            return refuse("no devstorage scope")
        iat, exp = claims.get("iat"), claims.get("exp")
        if not isinstance(iat, int) or not isinstance(exp, int) or abs(iat - now) > 300 or exp <= now or exp - iat > 3600:
            return refuse("Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe.")
        tok = "ya29.standin-" + secrets.token_urlsafe(24)
        with S.lock:
            S.tokens[tok] = now + S.args.token_ttl
            S.tokens_issued += 1
        self.send(200, {"access_token": tok, "expires_in": S.args.token_ttl, "token_type": "Bearer"})

    # -- dispatch
    def do_GET(self):
        url = urllib.parse.urlparse(self.path)
        self.record(url, 0)
        if url.path.startswith("/_standin/o/"):  # test reads, without a token
            with S.lock:
                obj = S.objects.get((S.args.bucket, urllib.parse.unquote(url.path[12:])))
            return self.send(200, raw=obj[0], headers={"Content-Type": obj[1]}) if obj else self.error(404, "no object")
        if url.path == "/_standin/list":
            prefix = (urllib.parse.parse_qs(url.query).get("prefix") or [""])[0]
            with S.lock:
                items = [{"name": n, "size": len(S.objects[(b, n)][0]), "contentType": S.objects[(b, n)][1]}
                         for (b, n) in sorted(S.objects) if n.startswith(prefix)]
            return self.send(200, items)
        if url.path == "/_standin/log":
            with S.lock:
                return self.send(200, {"log": S.log, "tokens_issued": S.tokens_issued,
                                       "expired_used": S.expired_used, "bad_jwts": S.bad_jwts})
        if not self.authorized():
            return
        p = url.path.split("/")
        q = urllib.parse.parse_qs(url.query)
        # /storage/v1/b/{bucket}/o[/{name}]
        if len(p) >= 6 and p[1:4] == ["storage", "v1", "b"] and p[5] == "o":
            bucket = urllib.parse.unquote(p[4])
            if bucket != S.args.bucket:
                return self.error(404, "The specified bucket does not exist.")
            if len(p) == 6:
                prefix = (q.get("prefix") or [""])[0]
                with S.lock:
                    names = sorted(n for (b, n) in S.objects if b == bucket and n.startswith(prefix))
                    items = [{"kind": "storage#object", "name": n, "bucket": bucket,
                              "size": str(len(S.objects[(bucket, n)][0])),
                              "contentType": S.objects[(bucket, n)][1]} for n in names]
                m = int((q.get("maxResults") or ["1000"])[0])
                return self.send(200, {"kind": "storage#objects", "items": items[:m]})
            name = urllib.parse.unquote("/".join(p[6:]))
            with S.lock:
                obj = S.objects.get((bucket, name))
            if not obj:
                return self.error(404, "No such object: %s/%s" % (bucket, name))
            if (q.get("alt") or [""])[0] == "media":
                return self.send(200, raw=obj[0], headers={"Content-Type": obj[1]})
            return self.send(200, {"kind": "storage#object", "name": name, "size": str(len(obj[0]))})
        self.error(404, "Not Found")

    def do_POST(self):
        url = urllib.parse.urlparse(self.path)
        body = self.body()
        if body is None:  # the sender went away mid-request: nothing happens, nothing to answer
            self.close_connection = True
            return
        self.record(url, len(body))
        if url.path == "/token":
            return self.token(body)
        if url.path == "/_standin/faults":
            f = json.loads(body or b"{}")
            with S.lock:
                S.fail_chunks = int(f.get("fail_chunks", S.fail_chunks))
                S.fail_media = int(f.get("fail_media", S.fail_media))
            return self.send(200, {"ok": True})
        if url.path == "/_standin/anonymous":
            S.anonymous = bool(json.loads(body or b"{}").get("allow"))
            return self.send(200, {"ok": True})
        if not self.authorized():
            return
        p = url.path.split("/")
        q = urllib.parse.parse_qs(url.query, keep_blank_values=True)
        if not (len(p) == 7 and p[1:5] == ["upload", "storage", "v1", "b"] and p[6] == "o"):
            return self.error(404, "Not Found")
        bucket = urllib.parse.unquote(p[5])
        if bucket != S.args.bucket:
            return self.error(404, "The specified bucket does not exist.")
        kind = (q.get("uploadType") or [""])[0]
        name = (q.get("name") or [""])[0]
        if kind == "media":
            if not name:
                return self.error(400, "Required parameter: name")
            with S.lock:
                if S.fail_media > 0:
                    S.fail_media -= 1
                    return self.error(503, "Backend Error")
                S.objects[(bucket, name)] = (body, self.headers.get("Content-Type") or "application/octet-stream")
            return self.send(200, {"kind": "storage#object", "name": name, "bucket": bucket, "size": str(len(body))})
        if kind == "resumable":
            meta = json.loads(body) if body else {}
            name = name or meta.get("name") or ""
            if not name:
                return self.error(400, "Required parameter: name")
            total = self.headers.get("X-Upload-Content-Length")
            sid = secrets.token_urlsafe(16)
            with S.lock:
                S.sessions[sid] = {"bucket": bucket, "name": name, "data": bytearray(),
                                   "total": int(total) if total else None,
                                   "ctype": self.headers.get("X-Upload-Content-Type") or meta.get("contentType")
                                   or "application/octet-stream"}
            loc = "http://127.0.0.1:%d/upload/storage/v1/b/%s/o?uploadType=resumable&name=%s&upload_id=%s" % (
                self.server.server_port, urllib.parse.quote(bucket, safe=""), urllib.parse.quote(name, safe=""), sid)
            return self.send(200, headers={"Location": loc})
        self.error(400, "Invalid upload type")

    def do_PUT(self):
        url = urllib.parse.urlparse(self.path)
        q = urllib.parse.parse_qs(url.query)
        sid = (q.get("upload_id") or [""])[0]
        body = self.body()
        if body is None:  # the sender went away mid-request: nothing happens, nothing to answer
            self.close_connection = True
            return
        self.record(url, len(body))
        if not self.authorized():
            return
        with S.lock:
            sess = S.sessions.get(sid)
            fail = bool(body) and S.fail_chunks > 0
            if fail:
                S.fail_chunks -= 1
        if not sess:
            return self.error(404, "No such upload session")
        cr = self.headers.get("Content-Range") or ""
        if not cr.startswith("bytes "):
            return self.error(400, "Content-Range required")
        rng, _, total = cr[6:].partition("/")
        total = None if total == "*" else int(total)
        if rng.endswith("-*"):  # "bytes a-*/*": the rest, streamed, of a size said by the body
            rng = "%s-%d" % (rng[:-2], int(rng[:-2]) + len(body) - 1)
            total = total if total is not None else int(rng.partition("-")[0]) + len(body)
        with S.lock:
            have = len(sess["data"])
            if total is not None:
                if sess["total"] is not None and sess["total"] != total:
                    return self.error(400, "total size changed")
                sess["total"] = total
            if rng != "*":
                a, _, b = rng.partition("-")
                a, b = int(a), int(b)
                if a != have or b - a + 1 != len(body):
                    return self.error(400, "chunk %d-%d does not continue at %d" % (a, b, have))
                if (total is None or b + 1 < total) and len(body) % CHUNK_UNIT:
                    return self.error(400, "a chunk but the last must be a multiple of 256 KiB")
                if fail:
                    sess["data"] += body[:len(body) // 2 // CHUNK_UNIT * CHUNK_UNIT]
                    return self.error(503, "Backend Error")
                sess["data"] += body
            have = len(sess["data"])
            if sess["total"] is not None and have == sess["total"]:
                S.objects[(sess["bucket"], sess["name"])] = (bytes(sess["data"]), sess["ctype"])
                return self.send(200, {"kind": "storage#object", "name": sess["name"], "size": str(have)})
        return self.send(308, headers={"Range": "bytes=0-%d" % (have - 1)} if have else {})


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--bucket", required=True)
    ap.add_argument("--client-email", required=True)
    ap.add_argument("--public-key", required=True)
    ap.add_argument("--key-id", default="")
    ap.add_argument("--token-ttl", type=int, default=3600)
    ap.add_argument("--port", type=int, default=0)
    S = State(ap.parse_args())
    srv = ThreadingHTTPServer(("127.0.0.1", S.args.port), Handler)
    srv.daemon_threads = True
    print("PORT %d" % srv.server_port, flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    sys.exit(0)
