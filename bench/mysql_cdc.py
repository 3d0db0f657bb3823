#!/usr/bin/python3
"""MySQL/MariaDB CDC throughput and lag, Sluice vs mariadb-binlog, same run (bench/mysql_cdc.sh).

Throughput: the connector is created on an empty table (snapshot of nothing, then streaming) and
disabled; N rows are inserted in transactions of 1000 (MariaDB's seq_1_to_N engine); then the same
binlog is drained by
  - mariadb-binlog --read-from-remote-server --raw (the event bytes to a file, no decoding);
  - mariadb-binlog --read-from-remote-server --base64-output=DECODE-ROWS -v (rows decoded to text);
  - Sluice's mysql-cdc, enabled again (it resumes from its stored position), timed until the strand
    holds N records (every one fsynced: the strand acknowledges only after fdatasync).
Lag: rows are then committed at about RATE rows/s for LAG_SECS seconds (50-row transactions and a
DO SLEEP in one client session) while the connector streams; per record, lag = the strand
record's timestamp_ms (set by the committer in the group that fsyncs it) - the row's `at` column
(NOW(6) at insert, just before its commit; the binlog's own commit time has whole seconds only).
Prints p50/p99/max, split at the envelope's ts_ms (when the connector decoded the row).
Beside the wall times: the CPU seconds of mariadb-binlog --raw and of the Sluice process during its
drain. Floors (bench/mysql_floor.c, FLOOR=0 skips them) on the files --raw wrote: decoding alone
(no strand) and the strand alone (the same envelopes, no source). TX = rows per transaction of the
load (1000); PERF=file records a perf profile of Sluice during its drain (PERF_ARGS, default -g)."""
import os
import resource
import subprocess
import sys
import time
from datetime import datetime, timezone

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
sys.dont_write_bytecode = True
import sluicetest as st  # noqa: E402
from mypeer import MariaDB  # noqa: E402

N = int(os.environ.get("N", "1000000"))
RATE = int(os.environ.get("RATE", "5000"))
LAG_SECS = int(os.environ.get("LAG_SECS", "5"))
TX = int(os.environ.get("TX", "1000"))  # rows per transaction of the load


def log(msg):
    sys.stderr.write("[mysql_cdc bench %s] %s\n" % (time.strftime("%T"), msg))


def client(script):
    subprocess.run(["mariadb", "--no-defaults", "--socket=" + my.env["MY_SOCKET"], "-uroot", "app"],
                   input=script, text=True, check=True, stdout=subprocess.DEVNULL)


def cpu_children():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def cpu_of(pid):  # user + system seconds of a process (all its threads)
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def drain(args, out):
    global drain_cpu
    c0 = cpu_children()
    t0 = time.monotonic()
    subprocess.run(["mariadb-binlog", "--no-defaults", "--read-from-remote-server", "--host=127.0.0.1",
                    "--port=%d" % my.port, "--user=sluice", "--password=sluicepw", "--to-last-log"] + args,
                   check=True, stdout=out, stderr=subprocess.DEVNULL, cwd=my.dir)
    drain_cpu = cpu_children() - c0
    return time.monotonic() - t0


my = MariaDB("--sync-binlog=0", "--innodb-flush-log-at-trx-commit=2", "--innodb-buffer-pool-size=512M",
            "--innodb-log-file-size=256M")
my.sql("CREATE DATABASE app; CREATE TABLE app.bench (id BIGINT PRIMARY KEY, k INT, v VARCHAR(40), "
       "at DATETIME(6)) DEFAULT CHARSET utf8mb4")
first = my.sql("SHOW MASTER STATUS")[0][0]
srv = st.Server().start()
cfg = {"host": "127.0.0.1", "port": my.port, "database": "app", "user": "sluice", "password": "sluicepw",
       "server_id": 777, "strand": "bench"}
r = srv.req("POST", "/v1/connectors", {"name": "bench", "kind": "mysql-cdc", "config": cfg})
assert r.status == 201, r
cid = r.json["id"]
st.wait_until(lambda: "%s: streaming the binlog" % cid in srv.log_tail(20000), 30, 0.05)
st.wait_until(lambda: srv.req("GET", "/v1/connectors/" + cid).json.get("event_count", 0) >= 0, 1, 0.05)
time.sleep(0.5)  # the first position (nothing to record yet) is stored; then it is disabled
r = srv.req("PATCH", "/v1/connectors/" + cid, {"enabled": False})
assert r.status == 200, r

log("loading %d rows" % N)
t0 = time.monotonic()
step = TX
client("SET time_zone = '+00:00';\n" + "".join(
    "INSERT INTO bench SELECT seq, seq MOD 97, MD5(seq), NOW(6) FROM seq_%d_to_%d;\n" % (a, min(a + step - 1, N))
    for a in range(1, N + 1, step)))
log("loaded in %.1f s" % (time.monotonic() - t0))

with open(os.path.join(my.dir, "raw.log"), "wb") as out:
    t_raw = drain(["--raw", "--result-file=" + os.path.join(my.dir, "raw-"), first], out)
cpu_raw = drain_cpu
size = sum(os.path.getsize(os.path.join(my.dir, f)) for f in os.listdir(my.dir) if f.startswith("raw-"))
log("mariadb-binlog --raw: %.1f MB in %.2f s" % (size / 1e6, t_raw))
dec = os.path.join(my.dir, "decoded.txt")
with open(dec, "wb") as out:
    t_dec = drain(["--base64-output=DECODE-ROWS", "-v", first], out)
with open(dec, "rb") as f:
    rows_dec = sum(1 for line in f if line.startswith(b"### INSERT INTO `app`.`bench`"))
log("mariadb-binlog decoding: %d rows in %.2f s" % (rows_dec, t_dec))

perf = None
if os.environ.get("PERF"):  # PERF=file: a call-graph profile of Sluice during its drain
    perf = subprocess.Popen(["perf", "record", "-q"] + os.environ.get("PERF_ARGS", "-g").split()
                            + ["-o", os.environ["PERF"], "-p", str(srv.proc.pid)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
c0 = cpu_of(srv.proc.pid)
t0 = time.monotonic()
r = srv.req("PATCH", "/v1/connectors/" + cid, {"enabled": True})
assert r.status == 200, r
while st.counts(srv.port).get("bench", 0) < N:
    if time.monotonic() - t0 > 600:
        raise SystemExit("Sluice did not drain %d rows in 600 s" % N)
    time.sleep(0.02)
t_sluice = time.monotonic() - t0
cpu_sluice = cpu_of(srv.proc.pid) - c0
if perf:
    perf.send_signal(2)
    perf.wait()
log("Sluice: %d rows durable in %.2f s" % (N, t_sluice))

log("lag: %d rows/s for %d s" % (RATE, LAG_SECS))
per_tx = 50
txs = RATE * LAG_SECS // per_tx
pause = per_tx / RATE
base = st.counts(srv.port)["bench"]
t0 = time.monotonic()
client("SET time_zone = '+00:00';\n" + "".join(
    "INSERT INTO bench SELECT seq, 0, 'lag', NOW(6) FROM seq_%d_to_%d; DO SLEEP(%.4f);\n"
    % (N + 1 + i * per_tx, N + (i + 1) * per_tx, pause * 0.6) for i in range(txs)))
achieved = txs * per_tx / (time.monotonic() - t0)
while st.counts(srv.port)["bench"] < base + txs * per_tx:
    time.sleep(0.02)
recs = st.all_records(srv.port, "bench", from_seq=base)


def at_ms(s):
    return datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc).timestamp() * 1000


lags = sorted(r["timestamp_ms"] - at_ms(r["payload"]["after"]["at"]) for r in recs)
p = lambda q: lags[min(len(lags) - 1, int(q * len(lags)))]  # noqa: E731
# the envelope's ts_ms is when the connector decoded the row: commit -> decoded, decoded -> durable
lag_dec = sorted(r["payload"]["ts_ms"] - at_ms(r["payload"]["after"]["at"]) for r in recs)
lag_dur = sorted(r["timestamp_ms"] - r["payload"]["ts_ms"] for r in recs)
p99 = lambda xs: xs[min(len(xs) - 1, int(0.99 * len(xs)))]  # noqa: E731
srv.stop()
rc, _, _ = st.run_verify(srv.data, "bench")

# the floors (bench/mysql_floor.c) on the binlog files --raw wrote: decoding alone, the strand alone
floor = {}
if os.environ.get("FLOOR", "1") != "0":
    raws = sorted(os.path.join(my.dir, f) for f in os.listdir(my.dir) if f.startswith("raw-"))
    fdir = os.path.join(my.dir, "floor-data")
    out = subprocess.run([os.path.join(ROOT, "build", "bench", "mysql_floor"), fdir] + raws, check=True,
                         capture_output=True, text=True).stdout
    for line in out.splitlines():
        name, rest = line.split(":", 1)
        floor[name] = (float(rest.split(" rows/s")[0].split()[-1]), float(rest.split("(CPU ")[1].split()[0]))
my.stop()

print("mysql-cdc drain of %d rows (%d transactions of %d), MariaDB %s" % (N, (N + step - 1) // step, step,
                                                                       "10.11"))
print("  mariadb-binlog --raw (bytes to a file):     %8.0f rows/s  (%.2f s, %.0f MB)" % (N / t_raw, t_raw, size / 1e6))
print("  mariadb-binlog -v (rows decoded to text):   %8.0f rows/s  (%.2f s, %d rows)" % (rows_dec / t_dec, t_dec,
                                                                                        rows_dec))
print("  Sluice mysql-cdc (fsynced):                 %8.0f rows/s  (%.2f s)" % (N / t_sluice, t_sluice))
print("  ratio Sluice / mariadb-binlog --raw:        %8.2f" % (t_raw / t_sluice))
print("  CPU (user+sys): mariadb-binlog --raw %.2f s, Sluice %.2f s (%.2f us/row, all threads)" % (
    cpu_raw, cpu_sluice, cpu_sluice * 1e6 / N))
print("  ratio Sluice / mariadb-binlog decoding:     %8.2f" % ((N / t_sluice) / (rows_dec / t_dec)))
for name, what in (("decode", "decoding only, no strand (mysql_floor)"),
                   ("strand", "strand appends only, same records (mysql_floor)")):
    if name in floor:
        print("  floor: %-50s %8.0f rows/s  (ratio vs --raw %.2f; CPU %.2f s)" % (
            what + ":", floor[name][0], t_raw * floor[name][0] / N, floor[name][1]))
print("commit -> durable in the strand at %.0f rows/s (target %d), %d records:" % (achieved, RATE, len(lags)))
print("  p50 %.0f ms   p99 %.0f ms   max %.0f ms" % (p(0.50), p(0.99), lags[-1]))
print("  of which row written -> decoded by the connector p99 %.0f ms (max %.0f), decoded -> durable p99 %.0f ms "
      "(max %.0f)" % (p99(lag_dec), lag_dec[-1], p99(lag_dur), lag_dur[-1]))
print("sluice verify: %s" % ("ok" if rc == 0 else "FAILED"))
sys.exit(0 if rc == 0 and rows_dec == N else 1)
