"""The PostgreSQL sink (StreamHouse's postgres-sink) against a real PostgreSQL 15: rows from JSON
records typed by column (jsonb, arrays, timestamptz from epoch ms, bytea from base64, numeric
exact), upsert by pk.fields, a row PostgreSQL refuses isolated into the dead letters with its
SQLSTATE while the others land, CDC records replayed (PostgreSQL -> Sluice -> PostgreSQL: insert,
update, delete), StreamHouse's string-valued config, bad configs refused naming the field, a
missing table keeping the connector unhealthy, auto.create, fields.unknown error, and PostgreSQL
stopped mid-stream (retried, nothing lost or doubled)."""
import sluicetest as st
import pgpeer
from pgpeer import PG

t = st.Checks()
st.require_binary(t)
pg = PG()
srv = st.Server().start()
wait = st.wait_until
pg.psql("CREATE TABLE orders (order_id int PRIMARY KEY, item text NOT NULL, qty int, meta jsonb,"
        " tags text[], at timestamptz, blob bytea, price numeric)")


def put(strand, payload, flags=0):
    body = {"strand": strand, "payload": payload}
    if flags:
        body["flags"] = flags
    r = srv.req("POST", "/v1/records", body)
    assert r.status == 201, r


def conn(cid):
    return srv.req("GET", "/v1/connectors/" + cid).json


with t.section("StreamHouse's postgres-sink: rows typed by column, upsert, a bad row isolated", srv):
    r = srv.req("POST", "/api/v1/connectors", {
        "name": "orders-to-postgres", "connectorType": "sink", "connectorClass": "postgres-sink",
        "topics": ["orders"], "config": {"connection.url": pg.url(password="s3cret"), "table.name": "orders",
                                         "insert.mode": "upsert", "pk.fields": "order_id",
                                         "batch.size": "500"}})
    t.eq(r.status, 201, "created with StreamHouse's body (every value a string)")
    cid = srv.req("GET", "/v1/connectors").json["connectors"][0]["id"]
    t.ok(wait(lambda: conn(cid)["state"] == "running", 10), "running", conn(cid))
    put("orders", {"order_id": 1, "item": "tea", "qty": 2, "meta": {"gift": True}, "tags": ["a", "b c"],
                   "at": 1700000000123, "blob": "aGVsbG8=", "price": "12345678901234567.25", "extra": 1})
    put("orders", {"order_id": 2, "item": "cake", "qty": 1})
    put("orders", {"order_id": 3, "qty": 9})  # item is NOT NULL: PostgreSQL refuses this row
    put("orders", {"order_id": 1, "item": "green tea", "qty": 3})  # an upsert of order 1
    t.ok(wait(lambda: conn(cid)["stats"]["delivered"] + conn(cid)["stats"]["dead_lettered"] >= 4, 15),
         "all four handled", conn(cid)["stats"])
    rows = pg.psql("SELECT order_id, item, qty, meta::text, tags::text, at AT TIME ZONE 'UTC',"
                   " convert_from(blob, 'UTF8'), price FROM orders ORDER BY order_id")
    t.eq(rows, [["1", "green tea", "3", '{"gift": true}', '{a,"b c"}', "2023-11-14 22:13:20.123", "hello",
                 "12345678901234567.25"],
                ["2", "cake", "1", "", "", "", "", ""]],
         "typed rows; the upsert changed order 1's columns it named and kept the others")
    dl = srv.req("GET", "/v1/connectors/%s/dead-letters" % cid).json["dead_letters"]
    t.ok(len(dl) == 1 and dl[0]["seq"] == 2 and "23502" in dl[0]["last_error"] and "item" in dl[0]["last_error"],
         "the refused row is the one dead letter, with SQLSTATE 23502 and the column", dl)
    t.eq(conn(cid)["stats"]["delivered"], 3, "the other three delivered")
    r = srv.req("GET", "/api/v1/connectors/orders-to-postgres")
    t.ok(r.status == 200 and r.json["connectorClass"] == "postgres-sink" and "***" in r.json["config"]["connection.url"]
         and "s3cret" not in r.body.decode(),
         "StreamHouse's answer echoes the class and masks the password", r.json)

with t.section("batches: multi-row upserts, a key repeated within a batch, mixed column sets", srv):
    pg.psql("CREATE TABLE bulk (k int PRIMARY KEY, v int, note text)")
    items = [{"strand": "bulk", "payload": {"k": i % 100, "v": i}} for i in range(1000)]
    items += [{"strand": "bulk", "payload": {"k": 7, "note": "only note"}}]
    r = srv.req("POST", "/v1/records/batch", items)
    t.eq(r.status, 201, "1001 records written before the sink exists")
    r = srv.req("POST", "/v1/connectors", {"name": "bulk", "kind": "postgres_sink", "strands": ["bulk"],
                                           "config": {"start": "earliest", "connection.url": pg.url(),
                                                      "table.name": "bulk", "pk.fields": "k", "batch.size": 500}})
    bid = r.json["id"]
    t.ok(wait(lambda: conn(bid)["stats"]["delivered"] == 1001, 20), "all delivered", conn(bid)["stats"])
    t.eq(pg.psql("SELECT count(*), sum(v) FROM bulk")[0], ["100", str(sum(range(900, 1000)))],
         "100 rows, each with its key's last value (a key repeated in a batch is applied in order)")
    t.eq(pg.psql("SELECT v, note FROM bulk WHERE k = 7")[0], ["907", "only note"],
         "a record with other columns updates only those")
    t.eq(conn(bid)["stats"]["dead_lettered"], 0, "nothing refused")
    # the table changes under the sink: a new column is picked up (the columns are read again)
    pg.psql("ALTER TABLE bulk ADD COLUMN extra text")
    r = srv.req("POST", "/v1/records/batch", [{"strand": "bulk", "payload": {"k": 200 + i, "v": i, "extra": "x%d" % i}}
                                              for i in range(10)])
    t.ok(wait(lambda: pg.one("SELECT count(*) FROM bulk WHERE extra IS NOT NULL") == "10", 20),
         "after ALTER TABLE ADD COLUMN, records with the new field land in it",
         pg.psql("SELECT count(*) FROM bulk WHERE extra IS NOT NULL"))

with t.section("insert mode: batches stream into one COPY; refused rows isolated, the rest land once", srv):
    pg.psql("CREATE TABLE ins (id int PRIMARY KEY, name text NOT NULL, n int, meta jsonb, at timestamptz)")
    items = []
    for i in range(3000):
        row = {"id": i, "name": "n-%d\tx\\y" % i, "n": i, "meta": {"i": i, "s": "a\nb"}, "at": 1700000000000 + i}
        if i == 1234:
            del row["name"]  # NOT NULL: refused (23502)
        if i == 2500:
            row["id"] = 10  # a key stored already: refused (23505)
        items.append({"strand": "ins", "payload": row})
    r = srv.req("POST", "/v1/records/batch", items)
    t.eq(r.status, 201, "3000 records written before the sink exists")
    r = srv.req("POST", "/v1/connectors", {"name": "ins", "kind": "postgres_sink", "strands": ["ins"],
                                           "config": {"start": "earliest", "connection.url": pg.url(),
                                                      "table.name": "ins", "insert.mode": "insert",
                                                      "batch.size": 100}})
    iid = r.json["id"]
    t.ok(wait(lambda: conn(iid)["stats"]["delivered"] + conn(iid)["stats"]["dead_lettered"] >= 3000, 30),
         "all handled", conn(iid)["stats"])
    t.eq([conn(iid)["stats"]["delivered"], conn(iid)["stats"]["dead_lettered"]], [2998, 2],
         "2998 delivered, 2 dead letters")
    dl = sorted(srv.req("GET", "/v1/connectors/%s/dead-letters" % iid).json["dead_letters"], key=lambda d: d["seq"])
    t.ok([d["seq"] for d in dl] == [1234, 2500] and "23502" in dl[0]["last_error"] and "23505" in dl[1]["last_error"],
         "the dead letters are the NOT NULL row and the repeated key, with their SQLSTATEs", dl)
    t.eq(pg.psql("SELECT count(*), count(DISTINCT id), sum(n) FROM ins")[0],
         ["2998", "2998", str(sum(range(3000)) - 1234 - 2500)], "every other row stored once")
    t.eq(pg.psql("SELECT name = E'n-10\\tx\\\\y', meta->>'s' = E'a\\nb', at AT TIME ZONE 'UTC' FROM ins WHERE id = 10")[0],
         ["t", "t", "2023-11-14 22:13:20.01"],
         "tabs, backslashes and newlines survive COPY's escaping; epoch ms became timestamptz")

with t.section("PostgreSQL -> postgres_cdc -> strand -> postgres_sink -> PostgreSQL", srv):
    pg.psql("CREATE TABLE src (id int PRIMARY KEY, name text, n int); CREATE TABLE dst (id int PRIMARY KEY, name text, n int)")
    r = srv.req("POST", "/v1/connectors", {"name": "cdc", "kind": "postgres_cdc", "config": {
        "connection_string": pg.url(), "slot": "s_repl", "publication": "p_repl", "table_filter": "public.src",
        "strand": "repl", "heartbeat_interval_ms": 200}})
    t.ok(r.status == 201, "a CDC source on src", r)
    r = srv.req("POST", "/v1/connectors", {"name": "to-dst", "kind": "postgres_sink", "strands": ["repl"],
                                           "config": {"start": "earliest", "connection.url": pg.url(),
                                                      "table.name": "public.dst", "pk.fields": "id"}})
    t.eq(r.status, 201, "a sink into dst")
    pg.psql("INSERT INTO src VALUES (1, 'a', 1), (2, 'b', 2), (3, 'c', 3)")
    pg.psql("UPDATE src SET name = 'bb', n = 20 WHERE id = 2")
    pg.psql("DELETE FROM src WHERE id = 3")
    want = pg.psql("SELECT * FROM src ORDER BY id")
    t.ok(wait(lambda: pg.psql("SELECT * FROM dst ORDER BY id") == want, 20),
         "dst mirrors src: inserts, the update, the delete", pg.psql("SELECT * FROM dst ORDER BY id"))

with t.section("bad configs are refused naming the field; a missing table keeps it unhealthy", srv):
    base = {"connection.url": pg.url(), "table.name": "orders", "pk.fields": "order_id"}
    for change, field in [({"pk.fields": ""}, "config.pk.fields"),
                          ({"connection.url": "mysql://x"}, "config.connection.url"),
                          ({"table.name": "orders; drop"}, "config.table.name"),
                          ({"insert.mode": "merge"}, "config.insert.mode"),
                          ({"batch.size": "many"}, "config.batch.size"),
                          ({"pk.fields": "a b-c"}, "config.pk.fields")]:
        cfg = dict(base, **change)
        r = srv.req("POST", "/v1/connectors", {"name": "bad", "kind": "postgres_sink", "config": cfg})
        t.ok(r.status == 400 and r.json["error"].startswith(field), "%s -> 400 naming %s" % (change, field), r)
    r = srv.req("POST", "/v1/connectors", {"name": "nowhere", "kind": "postgres_sink", "strands": ["orders"],
                                           "config": dict(base, **{"table.name": "no_such_table"})})
    nid = r.json["id"]
    t.ok(wait(lambda: conn(nid)["state"] == "unhealthy", 10) and "no_such_table" in (conn(nid)["last_error"] or ""),
         "a missing table: unhealthy, last_error names it", conn(nid))
with t.section("auto.create: the table made from the first record, its types and key", srv):
    r = srv.req("POST", "/v1/connectors", {"name": "auto", "kind": "postgres_sink", "strands": ["autos"],
                                           "config": {"connection.url": pg.url(), "table.name": "auto_t",
                                                      "insert.mode": "upsert", "pk.fields": "id",
                                                      "auto.create": True}})
    t.eq(r.status, 201, "created on a table that does not exist yet")
    aid = r.json["id"]
    t.ok(wait(lambda: conn(aid)["state"] == "running", 10), "running (no table is not unhealthy with auto.create)",
         conn(aid))
    put("autos", {"id": 1, "name": "x", "score": 1.5, "ok": True, "meta": {"a": 1}})
    t.ok(wait(lambda: conn(aid)["stats"]["delivered"] == 1, 15), "the first record delivered", conn(aid)["stats"])
    t.eq(pg.psql("SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'auto_t'"
                 " ORDER BY ordinal_position"),
         [["id", "bigint"], ["name", "text"], ["score", "double precision"], ["ok", "boolean"], ["meta", "jsonb"]],
         "columns typed from the first record's values")
    put("autos", {"id": 1, "name": "y", "score": 2.5, "ok": False, "meta": {"a": 2}})
    t.ok(wait(lambda: conn(aid)["stats"]["delivered"] == 2, 15), "the second delivered", conn(aid)["stats"])
    t.eq(pg.psql("SELECT id, name, score, ok, meta::text FROM auto_t"), [["1", "y", "2.5", "f", '{"a": 2}']],
         "pk.fields became the primary key: the second record upserted the first")

with t.section("fields.unknown error: a field with no column makes the record a dead letter", srv):
    r = srv.req("POST", "/v1/connectors", {"name": "strict", "kind": "postgres_sink", "strands": ["strict"],
                                           "config": {"connection.url": pg.url(), "table.name": "orders",
                                                      "pk.fields": "order_id", "fields.unknown": "error"}})
    sid = r.json["id"]
    put("strict", {"order_id": 50, "item": "x", "nope": 1})
    put("strict", {"order_id": 51, "item": "y"})
    t.ok(wait(lambda: conn(sid)["stats"]["delivered"] + conn(sid)["stats"]["dead_lettered"] >= 2, 15),
         "both handled", conn(sid)["stats"])
    dl = srv.req("GET", "/v1/connectors/%s/dead-letters" % sid).json["dead_letters"]
    t.ok(len(dl) == 1 and "nope" in dl[0]["last_error"] and "fields.unknown" in dl[0]["last_error"],
         "the record with the unknown field is the dead letter, naming the field", dl)
    t.eq(pg.psql("SELECT order_id FROM orders WHERE order_id IN (50, 51)"), [["51"]], "the other row landed")

with t.section("PostgreSQL stopped mid-stream: retried, nothing lost, nothing twice", srv):
    pg.psql("CREATE TABLE flow (id int PRIMARY KEY, v text)")
    r = srv.req("POST", "/v1/connectors", {"name": "flow", "kind": "postgres_sink", "strands": ["flow"],
                                           "config": {"connection.url": pg.url(), "table.name": "flow",
                                                      "pk.fields": "id", "insert.mode": "upsert",
                                                      "retry": {"initial_backoff_ms": 50, "max_backoff_ms": 300},
                                                      "circuit_breaker": {"reset_timeout_secs": 1}}})
    fid = r.json["id"]
    for i in range(200):
        put("flow", {"id": i, "v": "a%d" % i})
    t.ok(wait(lambda: conn(fid)["stats"]["delivered"] == 200, 20), "200 delivered", conn(fid)["stats"])
    pg.halt()
    for i in range(200, 500):
        put("flow", {"id": i, "v": "a%d" % i})
    t.ok(wait(lambda: conn(fid)["stats"]["failed"] > 0, 15) and conn(fid)["stats"]["delivered"] == 200,
         "with PostgreSQL down: attempts fail, nothing counted as delivered", conn(fid))
    t.ok(wait(lambda: conn(fid)["last_error"] and conn(fid)["stats"]["lag"] == 300, 15)
         and conn(fid)["state"] == "running",
         "while it retries: state running, last_error says why, stats.lag counts the 300 waiting", conn(fid))
    pg.resume()
    t.ok(wait(lambda: conn(fid)["stats"]["delivered"] == 500, 30), "after it is back: all 500 delivered",
         conn(fid)["stats"])
    t.ok(wait(lambda: conn(fid)["last_error"] is None and conn(fid)["stats"]["lag"] == 0, 10),
         "delivered: last_error cleared, lag 0", conn(fid))
    t.eq(pg.psql("SELECT count(*), count(DISTINCT id), min(id), max(id), sum(length(v)) FROM flow"),
         [["500", "500", "0", "499", str(sum(len("a%d" % i) for i in range(500)))]],
         "the table holds each of the 500 records once")

srv.stop()
pgpeer.stop_all()
t.done()
