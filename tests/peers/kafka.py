"""librdkafka's mock cluster (build/tests/peers/kafka_mock) and Debian's kcat, for the Kafka
tests and bench/kafka.sh. The cluster lives while its stdin pipe is open; it is stopped at the
end of the test (sluicetest.at_cleanup)."""
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
MOCK = os.path.join(ROOT, "build", "tests", "peers", "kafka_mock")


def available():
    """None, or why the Kafka tests cannot run here."""
    if not os.access(MOCK, os.X_OK):
        return "build/tests/peers/kafka_mock is not built (make unit-tests)"
    if not shutil.which("kcat"):
        return "kcat is not installed (scripts/install-deps.sh)"
    return None


class Mock:
    def __init__(self, brokers=1, topics=()):
        self.p = subprocess.Popen([MOCK, str(brokers)] + ["%s:%d" % t for t in topics],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL, text=True, bufsize=1)
        line = self.p.stdout.readline()
        if not line.startswith("BOOTSTRAP "):
            self.stop()
            raise RuntimeError("kafka_mock did not start: %r" % line)
        self.bootstrap = line.split()[1]
        self.brokers = self.bootstrap.split(",")

    def cmd(self, line):
        """One command of kafka_mock (topic, down, up, errors, rtt); True if it answered ok."""
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()
        return self.p.stdout.readline().strip() == "ok"

    def stop(self):
        if self.p.poll() is None:
            try:
                self.p.stdin.close()
            except Exception:
                pass
            try:
                self.p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()

    # ---- kcat, the client on the other side ----

    def produce(self, topic, lines, key_sep=None, extra=()):
        """kcat -P: one message per line (key<sep>value with key_sep)."""
        argv = ["kcat", "-b", self.bootstrap, "-P", "-t", topic] + list(extra)
        if key_sep:
            argv += ["-K", key_sep]
        data = "".join(l + "\n" for l in lines)
        r = subprocess.run(argv, input=data.encode(), capture_output=True, timeout=60)
        if r.returncode != 0:
            raise RuntimeError("kcat -P failed: %s" % r.stderr.decode(errors="replace"))

    def consume(self, topic, fmt="%p\t%o\t%k\t%h\t%s\n", timeout=60):
        """kcat -C from the beginning to the end of every partition: a list of lines split by tab."""
        r = subprocess.run(["kcat", "-b", self.bootstrap, "-C", "-t", topic, "-o", "beginning", "-e",
                            "-q", "-f", fmt], capture_output=True, timeout=timeout)
        if r.returncode != 0:
            raise RuntimeError("kcat -C failed: %s" % r.stderr.decode(errors="replace"))
        return [l.split("\t") for l in r.stdout.decode().splitlines() if l]


def start(brokers=1, topics=(), cleanup=None):
    m = Mock(brokers, topics)
    if cleanup:
        cleanup(m.stop)
    return m


if __name__ == "__main__":  # manual use: print the bootstrap, serve until Enter
    m = Mock(int(sys.argv[1]) if len(sys.argv) > 1 else 1)
    print(m.bootstrap)
    sys.stdin.readline()
    m.stop()
