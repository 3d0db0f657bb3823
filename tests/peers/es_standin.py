"""The Elasticsearch _bulk STAND-IN (tests/peers/es_standin.cjs: written from the public _bulk
docs; no Elasticsearch can be installed here) as a process, for tests and benchmarks.

    es = EsStandin().start()          # es.url
    es.control(fail_items=3, item_status=429); es.count("idx"); es.doc("idx", "id")
    es.stats(); es.bodies()           # counters and CPU seconds; the last bulk bodies as sent
    es.halt(); es.resume()            # down and up again on the same port (documents lost)
    es.stop()                         # also at exit
"""
import atexit
import json
import os
import subprocess
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
_live = []


def _cleanup():
    for e in list(_live):
        e.stop()


atexit.register(_cleanup)


class EsStandin:
    def __init__(self, auth=None):
        self.auth = auth  # "user:password" or None
        self.proc = None
        self.port = 0
        _live.append(self)

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port

    def start(self):
        argv = ["node", os.path.join(HERE, "es_standin.cjs"), str(self.port)] + ([self.auth] if self.auth else [])
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=None, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("LISTENING "):
            raise RuntimeError("es_standin did not start: %r" % line)
        self.port = int(line.split()[1])
        return self

    def _get(self, path, body=None):
        req = urllib.request.Request(self.url + path, data=None if body is None else json.dumps(body).encode(),
                                     method="GET" if body is None else "POST",
                                     headers={"Content-Type": "application/json"})
        if self.auth:
            import base64
            req.add_header("Authorization", "Basic " + base64.b64encode(self.auth.encode()).decode())
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")

    def control(self, **kw):
        return self._get("/_standin/control", kw)[1]

    def stats(self):
        return self._get("/_standin/stats")[1]

    def bodies(self):
        return self._get("/_standin/bodies")[1]

    def count(self, index):
        st, j = self._get("/%s/_count" % index)
        return j["count"] if st == 200 else 0

    def doc(self, index, doc_id):
        st, j = self._get("/%s/_doc/%s" % (index, urllib.request.quote(doc_id, safe="")))
        return j.get("_source") if st == 200 else None

    def halt(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None

    def resume(self):
        return self.start()

    def stop(self):
        self.halt()
        if self in _live:
            _live.remove(self)
