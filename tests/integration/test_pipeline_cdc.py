"""A pipeline file from the Rivven seed's shape against a real PostgreSQL 15 (tests/peers/pg.sh,
wal_level=logical): postgres-cdc (Rivven's keys) -> ExtractNewRecordState -> webhook (Rivven's
http-webhook). What a user relies on: inserts and updates arrive as plain rows (the `after`
image), deletes as Debezium's rewrite mode says, in commit order, each once."""
import os
import sys

import sluicetest as st
import pgpeer
from pgpeer import PG

sys.path.insert(0, os.path.join(st.ROOT, "tests", "peers"))
from webhook_receiver import Receiver  # noqa: E402

t = st.Checks()
st.require_binary(t)
pg = PG()
rx = Receiver().start()
st.at_cleanup(rx.stop)
work = st.tmpdir()
pg.psql("CREATE TABLE orders (id int PRIMARY KEY, item text, qty int)")
pfile = os.path.join(work, "cdc.yaml")
with open(pfile, "w") as f:
    f.write("""version: "1.0"
sources:
  postgres:
    connector: postgres-cdc
    topic: cdc.shop
    config:
      host: 127.0.0.1
      port: %d
      database: postgres
      user: postgres
      password: ${PG_PASSWORD:-unused}
      slot_name: rivven_slot
      publication_name: rivven_pub
      publication_tables: [public.orders]
      heartbeat_interval_ms: 200
      snapshot_mode: never
sinks:
  hook:
    connector: http-webhook
    topics: [cdc.shop]
    transforms:
      - type: ExtractNewRecordState
        config:
          delete.handling.mode: rewrite
          add.fields: [op, table]
    config:
      url: %s
      timeout_secs: 5
""" % (pg.port, rx.url("/rows")))

srv = st.Server(args=["--pipelines", pfile])
with t.section("postgres-cdc -> ExtractNewRecordState -> webhook", srv):
    srv.start()
    t.ok(st.wait_until(lambda: pg.one("SELECT count(*) FROM pg_replication_slots WHERE slot_name = "
                                      "'rivven_slot' AND active") == "1", 20),
         "the source made its slot and streams from it")
    pg.psql("INSERT INTO orders VALUES (1, 'tea', 2); INSERT INTO orders VALUES (2, 'cake', 1)")
    pg.psql("UPDATE orders SET qty = 5 WHERE id = 1")
    pg.psql("DELETE FROM orders WHERE id = 2")
    got = rx.wait_for(lambda reqs: reqs if len(reqs) >= 4 else None, 20) or rx.received()
    rows = [q["json"]["payload"] for q in got if q.get("json")]
    t.eq(rows, [
        {"id": 1, "item": "tea", "qty": 2, "__deleted": "false", "__op": "c", "__table": "orders"},
        {"id": 2, "item": "cake", "qty": 1, "__deleted": "false", "__op": "c", "__table": "orders"},
        {"id": 1, "item": "tea", "qty": 5, "__deleted": "false", "__op": "u", "__table": "orders"},
        {"id": 2, "__deleted": "true", "__op": "d", "__table": "orders"},
    ], "plain rows in commit order; the delete rewritten with __deleted (its before image: the key)")
    srv.stop()
pgpeer.stop_all()
t.done()
