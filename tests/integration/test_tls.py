"""TLS on the listener (docs/security.md), against a CA made by the test with openssl: the API
over TLS 1.2/1.3 to curl, Python's ssl and openssl s_client; TLS 1.0/1.1 and plain HTTP refused;
with tls_client_ca, a request without a client certificate, or with one from another CA, is
answered 403 client_certificate_required while a client with a good certificate is served."""
import json
import os
import ssl
import subprocess
import urllib.request

import sluicetest as st

t = st.Checks()
st.require_binary(t)
d = st.tmpdir()


def sh(*args):
    subprocess.run(args, check=True, capture_output=True, cwd=d)


def make_ca(name):
    sh("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", name + ".key", "-out", name + ".pem",
       "-days", "2", "-subj", "/CN=" + name)


def make_cert(name, ca, san=None):
    sh("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", name + ".key", "-out", name + ".csr",
       "-subj", "/CN=" + name)
    ext = os.path.join(d, name + ".ext")
    with open(ext, "w") as f:
        f.write("subjectAltName=%s\n" % (san or "DNS:" + name))
    sh("openssl", "x509", "-req", "-in", name + ".csr", "-CA", ca + ".pem", "-CAkey", ca + ".key",
       "-CAcreateserial", "-out", name + ".pem", "-days", "2", "-extfile", ext)


make_ca("ca")
make_ca("other-ca")
make_cert("server", "ca", "IP:127.0.0.1,DNS:localhost")
make_cert("client", "ca")
make_cert("intruder", "other-ca")
P = lambda n: os.path.join(d, n)  # noqa: E731

srv = st.Server(args=["--tls-cert", P("server.pem"), "--tls-key", P("server.key")]).start()
base = "https://127.0.0.1:%d" % srv.port


def get(path, ctx):
    with urllib.request.urlopen(base + path, context=ctx, timeout=10) as r:
        return r.status, json.loads(r.read())


with t.section("TLS 1.2+ with the listener's certificate", srv):
    ctx = ssl.create_default_context(cafile=P("ca.pem"))
    t.eq(get("/v1/health", ctx)[0], 200, "Python's ssl verifies the chain and gets an answer")
    r = subprocess.run(["curl", "-sS", "--cacert", P("ca.pem"), "-H", "Content-Type: application/json",
                        "-d", '{"strand":"tls","payload":{"a":1}}', base + "/v1/records"],
                       capture_output=True, text=True, timeout=20)
    t.ok(r.returncode == 0 and "record_hash" in r.stdout, "curl writes a record over TLS", r.stdout + r.stderr)
    for flag, ok in (("-tls1_2", True), ("-tls1_3", True), ("-tls1_1", False), ("-tls1", False)):
        p = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % srv.port, flag,
                            "-CAfile", P("ca.pem"), "-brief"], input="", capture_output=True, text=True, timeout=20)
        got = "Verification: OK" in p.stderr or "Verification: OK" in p.stdout
        t.ok(got == ok, "openssl s_client %s: %s" % (flag, "handshake" if ok else "refused"), (p.stdout + p.stderr)[-300:])
    p = subprocess.run(["curl", "-sS", "http://127.0.0.1:%d/v1/health" % srv.port], capture_output=True, text=True, timeout=20)
    t.ok(p.returncode != 0 or '"ok"' not in p.stdout, "plain HTTP on the TLS port gets no answer")
    t.eq(get("/v1/health", ctx)[0], 200, "and the server keeps serving")
with t.section("SIGHUP reloads a renewed certificate; a broken one is refused and the old stays", srv):
    import hashlib
    import signal
    import socket

    def served_cert():
        c = ssl.create_default_context(cafile=P("ca.pem"))
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as raw:
            with c.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                return hashlib.sha256(tls.getpeercert(binary_form=True)).hexdigest()
    before = served_cert()
    make_cert("renewed", "ca", "IP:127.0.0.1,DNS:localhost")
    os.replace(P("renewed.pem"), P("server.pem"))
    os.replace(P("renewed.key"), P("server.key"))
    os.kill(srv.proc.pid, signal.SIGHUP)
    after = st.wait_until(lambda: (lambda h: h if h != before else None)(served_cert()), 10)
    t.ok(after and after != before, "after SIGHUP new handshakes get the renewed certificate")
    with open(P("server.pem"), "w") as f:
        f.write("not a certificate\n")
    os.kill(srv.proc.pid, signal.SIGHUP)
    t.ok(st.wait_until(lambda: b"TLS certificate in use is unchanged" in open(srv.log_path, "rb").read(), 10),
         "a broken certificate file on SIGHUP is refused")
    t.eq(served_cert(), after, "and the renewed certificate is still served")
srv.stop()
make_cert("server", "ca", "IP:127.0.0.1,DNS:localhost")  # a good one again for what follows

srv2 = st.Server(args=["--tls-cert", P("server.pem"), "--tls-key", P("server.key"),
                       "--tls-client-ca", P("ca.pem")]).start()
base = "https://127.0.0.1:%d" % srv2.port
with t.section("mutual TLS", srv2):
    good = ssl.create_default_context(cafile=P("ca.pem"))
    good.load_cert_chain(P("client.pem"), P("client.key"))
    t.eq(get("/v1/strands", good)[0], 200, "a client certificate from the CA: served")
    for name, ctx in (("no client certificate", ssl.create_default_context(cafile=P("ca.pem"))),
                      ("a certificate from another CA", None)):
        if ctx is None:
            ctx = ssl.create_default_context(cafile=P("ca.pem"))
            ctx.load_cert_chain(P("intruder.pem"), P("intruder.key"))
        try:
            status, body = get("/v1/strands", ctx)
            t.ok(False, "%s: refused" % name, status)
        except urllib.error.HTTPError as e:
            body = json.loads(e.read())
            t.ok(e.code == 403 and body["code"] == "client_certificate_required", "%s: 403 client_certificate_required" % name, body)
        except (ssl.SSLError, ConnectionError) as e:
            t.ok(True, "%s: refused at the handshake (%s)" % (name, type(e).__name__))
    t.eq(get("/v1/health", good)[0], 200, "the good client is still served")
srv2.stop()

with t.section("bad TLS settings stop serve", None):
    for args, what in ((["--tls-cert", P("server.pem")], "tls_cert without tls_key"),
                       (["--tls-cert", P("nope.pem"), "--tls-key", P("server.key")], "an unreadable certificate"),
                       (["--tls-cert", P("server.ext"), "--tls-key", P("server.key")], "a file that is not PEM")):
        p = subprocess.run([st.SLUICE_BIN, "serve", "--data", os.path.join(d, "x"), "--listen", "127.0.0.1:0"] + args,
                           capture_output=True, text=True, timeout=20)
        t.ok(p.returncode == 2 and "tls" in p.stderr.lower(), "%s: exit 2 naming it" % what, p.stderr[-300:])
t.done()
