#!/usr/bin/python3
"""PostgreSQL CDC throughput and lag, Sluice vs pg_recvlogical, same run (bench/cdc.sh runs this).

Throughput: two slots are created before the load (`td`: test_decoding, `pgo`: pgoutput with a
publication), N rows are inserted in transactions of 1000, then each slot is drained:
  - pg_recvlogical --slot td --start --endpos <end of load> -f FILE (it exits at endpos);
  - Sluice's postgres_cdc connector on slot pgo, timed from its creation until the strand holds
    N records (every one fsynced: the strand acknowledges only after fdatasync).
Lag: then rows are committed at about RATE rows/s for LAG_SECS seconds (transactions of 50 rows
followed by pg_sleep in one psql session) while the connector streams; per record, lag = the
strand record's timestamp_ms (set by the committer in the group that fsyncs it) - the commit
timestamp PostgreSQL reports (source.commit_ts_ms). Prints p50/p99/max."""
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
sys.dont_write_bytecode = True
import sluicetest as st  # noqa: E402
from pgpeer import PG  # noqa: E402

N = int(os.environ.get("N", "1000000"))
RATE = int(os.environ.get("RATE", "5000"))
LAG_SECS = int(os.environ.get("LAG_SECS", "5"))


def log(msg):
    sys.stderr.write("[cdc bench %s] %s\n" % (time.strftime("%T"), msg))


pg = PG("shared_buffers=256MB", "max_wal_size=4GB")
pg.psql("CREATE TABLE bench (id bigint PRIMARY KEY, k int, v text, at timestamptz DEFAULT clock_timestamp())")
pg.psql("CREATE PUBLICATION bench_pub FOR TABLE bench")
pg.psql("SELECT pg_create_logical_replication_slot('td', 'test_decoding')")
pg.psql("SELECT pg_create_logical_replication_slot('pgo', 'pgoutput')")
log("loading %d rows" % N)
t0 = time.monotonic()
step = 1000
script = "".join("INSERT INTO bench (id, k, v) SELECT g, g %% 97, md5(g::text) FROM generate_series(%d, %d) g;\n"
                 % (a, min(a + step - 1, N)) for a in range(1, N + 1, step))
env = dict(os.environ, PGHOST="127.0.0.1", PGPORT=str(pg.port), PGUSER="postgres")
subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", "-"], input=script, text=True, env=env,
               check=True, stdout=subprocess.DEVNULL)
end = pg.one("SELECT pg_current_wal_insert_lsn()")
log("loaded in %.1f s, end of load at %s" % (time.monotonic() - t0, end))

out = os.path.join(pg.dir, "recvlogical.out")
t0 = time.monotonic()
subprocess.run(["pg_recvlogical", "-h", "127.0.0.1", "-p", str(pg.port), "-U", "postgres", "-d", "postgres",
                "--slot", "td", "--start", "--endpos", end, "--no-loop", "-f", out], check=True)
t_recv = time.monotonic() - t0
with open(out, "rb") as f:
    rows_recv = sum(1 for line in f if line.startswith(b"table public.bench: INSERT"))
log("pg_recvlogical: %d rows in %.2f s" % (rows_recv, t_recv))

srv = st.Server().start()
t0 = time.monotonic()
r = srv.req("POST", "/v1/connectors", {"name": "bench", "kind": "postgres_cdc", "config": {
    "connection_string": pg.url(), "slot": "pgo", "publication": "bench_pub", "auto_create_slot": False,
    "strand": "bench", "heartbeat_interval_ms": 1000}})
assert r.status == 201, r
cid = r.json["id"]
while st.counts(srv.port).get("bench", 0) < N:
    if time.monotonic() - t0 > 600:
        raise SystemExit("Sluice did not drain %d rows in 600 s" % N)
    time.sleep(0.02)
t_sluice = time.monotonic() - t0
log("Sluice: %d rows durable in %.2f s" % (N, t_sluice))

log("lag: %d rows/s for %d s" % (RATE, LAG_SECS))
per_tx = 50
txs = RATE * LAG_SECS // per_tx
pause = per_tx / RATE
script = "".join("INSERT INTO bench (id, k, v) SELECT g, 0, 'lag' FROM generate_series(%d, %d) g;\n"
                 "SELECT pg_sleep(%.4f);\n" % (N + 1 + i * per_tx, N + (i + 1) * per_tx, pause * 0.6)
                 for i in range(txs))
base = st.counts(srv.port)["bench"]
t0 = time.monotonic()
subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", "-"], input=script, text=True, env=env,
               check=True, stdout=subprocess.DEVNULL)
achieved = txs * per_tx / (time.monotonic() - t0)
while st.counts(srv.port)["bench"] < base + txs * per_tx:
    time.sleep(0.02)
recs = st.all_records(srv.port, "bench", from_seq=base)
lags = sorted(r["timestamp_ms"] - r["payload"]["source"]["commit_ts_ms"] for r in recs)
p = lambda q: lags[min(len(lags) - 1, int(q * len(lags)))]  # noqa: E731
srv.stop()
rc, _, _ = st.run_verify(srv.data, "bench")

print("postgres_cdc drain of %d rows (%d transactions of %d)" % (N, (N + step - 1) // step, step))
print("  pg_recvlogical (test_decoding, to a file): %8.0f rows/s  (%.2f s, %d rows)" % (rows_recv / t_recv, t_recv,
                                                                                        rows_recv))
print("  Sluice postgres_cdc (pgoutput, fsynced):   %8.0f rows/s  (%.2f s)" % (N / t_sluice, t_sluice))
print("  ratio Sluice / pg_recvlogical:             %8.2f" % ((N / t_sluice) / (rows_recv / t_recv)))
print("commit -> durable in the strand at %.0f rows/s (target %d), %d records:" % (achieved, RATE, len(lags)))
print("  p50 %d ms   p99 %d ms   max %d ms" % (p(0.50), p(0.99), lags[-1]))
print("sluice verify: %s" % ("ok" if rc == 0 else "FAILED"))
sys.exit(0 if rc == 0 and rows_recv == N else 1)
