"""Debian's mosquitto broker and its mosquitto_pub / mosquitto_sub clients, for the MQTT tests and
bench/mqtt.sh. The broker runs on 127.0.0.1 on a free port from a temp dir (persistence on, so a
persistent session survives a broker restart), as the mosquitto user when started by root, and
is stopped by its PID."""
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time


def available():
    """None, or why the MQTT tests cannot run here."""
    for tool in ("mosquitto", "mosquitto_pub", "mosquitto_sub"):
        if not shutil.which(tool) and not os.path.exists("/usr/sbin/" + tool):
            return tool + " is not installed (scripts/install-deps.sh)"
    return None


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _exe(tool):
    return shutil.which(tool) or "/usr/sbin/" + tool


class Broker:
    def __init__(self, extra_conf="", tls=None, max_inflight=None, users=None):
        """tls: (cafile, certfile, keyfile) for an extra mqtts listener (self.tls_port); users:
        {name: password}, then anonymous clients are refused (mosquitto_passwd makes the file)."""
        self.dir = tempfile.mkdtemp(prefix="sluice-mqtt-")
        self.port = free_port()
        self.tls_port = free_port() if tls else None
        conf = [
            "listener %d 127.0.0.1" % self.port,
            "allow_anonymous %s" % ("false" if users else "true"),
            "persistence true",
            "persistence_location %s/" % self.dir,
            "autosave_interval 1",
            "log_dest file %s/mosquitto.log" % self.dir,
            "log_type error", "log_type warning", "log_type notice", "log_type information",
            "log_type subscribe",  # wait_subscribed() reads it
            "max_queued_messages 1000000",
        ]
        if max_inflight is not None:  # mosquitto's default is 20; 0 is no limit
            conf.append("max_inflight_messages %d" % max_inflight)
        if users:
            pw = os.path.join(self.dir, "passwd")
            open(pw, "w").close()
            for u, p in users.items():
                subprocess.run([_exe("mosquitto_passwd"), "-b", pw, u, p], check=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            conf.append("password_file " + pw)
        if tls:
            conf += ["listener %d 127.0.0.1" % self.tls_port, "cafile " + tls[0],
                     "certfile " + tls[1], "keyfile " + tls[2]]
        with open(os.path.join(self.dir, "mosquitto.conf"), "w") as f:
            f.write("\n".join(conf) + "\n" + extra_conf)
        self.p = None
        self.start()

    def start(self):
        argv = [_exe("mosquitto"), "-c", os.path.join(self.dir, "mosquitto.conf")]
        if os.geteuid() == 0:
            pw = pwd.getpwnam("mosquitto")
            for root, dirs, files in os.walk(self.dir):
                for n in dirs + files + ["."]:
                    os.chown(os.path.join(root, n), pw.pw_uid, pw.pw_gid)
            argv = ["setpriv", "--reuid=mosquitto", "--regid=mosquitto", "--init-groups"] + argv
        self.p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                if self.p.poll() is not None:
                    break
                time.sleep(0.02)
        raise RuntimeError("mosquitto did not start: " + self.log())

    def stop(self, sig=signal.SIGTERM):
        if self.p and self.p.poll() is None:
            self.p.send_signal(sig)
            try:
                self.p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self.p = None

    def close(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def log(self):
        try:
            with open(os.path.join(self.dir, "mosquitto.log")) as f:
                return f.read()[-20000:]
        except OSError:
            return ""

    def wait_subscribed(self, topic_filter, timeout=10):
        """Waits until some client subscribed to topic_filter (the broker's log says so)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            if any(l.rstrip().endswith(" " + topic_filter) for l in self.log().splitlines()):
                return True
            time.sleep(0.01)
        return False

    @property
    def url(self):
        return "mqtt://127.0.0.1:%d" % self.port

    # ---- the clients on the other side ----

    def pub(self, topic, messages, qos=1, retain=False, client_id=None, extra=()):
        """mosquitto_pub: one message per line of messages (a list), at qos."""
        argv = [_exe("mosquitto_pub"), "-h", "127.0.0.1", "-p", str(self.port), "-t", topic,
                "-q", str(qos), "-l"] + (["-r"] if retain else []) + list(extra)
        if client_id:
            argv += ["-i", client_id]
        data = "".join(m + "\n" for m in messages)
        subprocess.run(argv, input=data.encode(), check=True, timeout=60)

    def pub_one(self, topic, payload, qos=1, retain=False):
        argv = [_exe("mosquitto_pub"), "-h", "127.0.0.1", "-p", str(self.port), "-t", topic,
                "-q", str(qos), "-m", payload] + (["-r"] if retain else [])
        subprocess.run(argv, check=True, timeout=30)

    def sub(self, topic, count, qos=1, timeout=20, verbose=True, client_id=None, extra=()):
        """Starts mosquitto_sub for count messages; .communicate() gives its output."""
        argv = [_exe("mosquitto_sub"), "-h", "127.0.0.1", "-p", str(self.port), "-t", topic,
                "-q", str(qos), "-C", str(count), "-W", str(timeout)] + \
            (["-v"] if verbose else []) + list(extra)
        if client_id:
            argv += ["-i", client_id]
        return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def make_ca(d):
    """A self-signed CA and a server certificate for 127.0.0.1 / localhost (openssl CLI):
    (cafile, certfile, keyfile)."""
    ca_key, ca, key, csr, cert = (os.path.join(d, n) for n in
                                  ("ca.key", "ca.pem", "srv.key", "srv.csr", "srv.pem"))
    ext = os.path.join(d, "ext.cnf")
    with open(ext, "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    q = dict(check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key,
                    "-out", ca, "-days", "2", "-subj", "/CN=sluice test CA"], **q)
    subprocess.run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr,
                    "-subj", "/CN=localhost"], **q)
    subprocess.run(["openssl", "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key,
                    "-CAcreateserial", "-out", cert, "-days", "2", "-extfile", ext], **q)
    for p in (ca, cert, key):
        os.chmod(p, 0o644)
    os.chmod(d, 0o755)
    return ca, cert, key
