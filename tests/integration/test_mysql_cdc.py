"""mysql-cdc against a real MariaDB 10.11 (tests/peers/mariadb.sh: ROW binlog, FULL row image and
metadata, started here as non-root on a free port). What a user relies on: bad configs are refused
naming the field; every committed row change arrives once, in commit order, typed, in the same
envelope as postgres_cdc; rolled-back work never appears; the initial snapshot and the stream
neither overlap nor leave a gap; ALTER TABLE mid-stream decodes the rows before and after with
their own columns; kill -9 of Sluice under load and a MariaDB restart lose nothing and double
nothing; a restart resumes by GTID state (the stored position's file purged, a failover to a
second MariaDB with the same GTID history, a stop inside a chunked transaction); an idle
connector's position follows the binlog by heartbeats; wrong server settings fail with a
last_error that says how to fix them."""
import os
import sqlite3
import subprocess
import threading
import time

import sluicetest as st
import mypeer
from mypeer import MariaDB

t = st.Checks()
st.require_binary(t)
my = MariaDB()
srv = st.Server().start()


def create(name, config, expect=201):
    r = srv.req("POST", "/v1/connectors", {"name": name, "kind": "mysql-cdc", "config": config})
    assert r.status == expect, r
    return r.json


def conn(cid):
    return srv.req("GET", "/v1/connectors/" + cid).json


def delete(cid):
    srv.req("DELETE", "/v1/connectors/" + cid)


def records(strand):
    if strand not in st.strands(srv.port):
        return []
    return st.all_records(srv.port, strand)


def wait_records(strand, pred, timeout=30):
    got = st.wait_until(lambda: (lambda rs: rs if pred(rs) else None)(records(strand)), timeout, 0.05)
    return got or records(strand)


def count(strand):
    return st.counts(srv.port).get(strand, 0)


def of(rs, table):
    return [r for r in rs if r["payload"]["source"]["table"] == table]


def stored_position(cid):
    db = sqlite3.connect(os.path.join(srv.data, "meta.db"))
    try:
        row = db.execute("SELECT position FROM source_positions WHERE connector_id = ?", (cid,)).fetchone()
        return bytes(row[0]) if row else b""
    finally:
        db.close()


def wait_state(cid, state, timeout=20):
    c = st.wait_until(lambda: (lambda x: x if x["state"] == state else None)(conn(cid)), timeout, 0.05)
    return c or conn(cid)


with t.section("bad configs are refused naming the field; nothing is created", srv):
    before = srv.req("GET", "/v1/connectors").json["connectors"]
    good = my.config("app")
    cases = [
        (dict(good, bogus=1), "config.bogus"),
        (dict(good, port="3306"), "config.port"),
        (dict(good, server_id=0), "config.server_id"),
        (dict(good, snapshot_mode="sometimes"), "config.snapshot_mode"),
        (dict(good, tables="orders"), "config.tables"),
        (dict(good, table_regex="(unclosed"), "config.table_regex"),
        (dict(good, tls={"mode": "maybe"}), "config.tls.mode"),
        ({k: v for k, v in good.items() if k != "host"}, "config.host"),
        ({k: v for k, v in good.items() if k != "server_id"}, "config.server_id"),
    ]
    for cfg, field in cases:
        r = srv.req("POST", "/v1/connectors", {"name": "bad", "kind": "mysql-cdc", "config": cfg})
        t.ok(r.status == 400 and r.json["error"].startswith(field) and r.json.get("code"),
             "refused with 400 naming %s" % field, r)
    t.eq(srv.req("GET", "/v1/connectors").json["connectors"], before, "nothing was created")

my.sql("CREATE DATABASE app; CREATE TABLE app.snap (id INT PRIMARY KEY, v VARCHAR(20)) DEFAULT CHARSET utf8mb4;"
       "USE app; INSERT INTO app.snap SELECT seq, CONCAT('v', seq) FROM seq_1_to_5000")

with t.section("initial snapshot with concurrent writes, then the stream", srv):
    stop = threading.Event()
    written = []

    def writer():
        i = 0
        while not stop.is_set() and i < 300:
            my.sql("INSERT INTO app.snap VALUES (%d, 'late')" % (100000 + i))
            written.append(100000 + i)
            i += 1

    w = threading.Thread(target=writer)
    w.start()
    c1 = create("Shop CDC", my.config("app"))
    cid = c1["id"]
    w.join()
    t.eq(c1["config"]["strand"], "cdc.app", "the strand defaults to cdc.<database>")
    t.eq(c1["config"]["password"], "***", "the password is never shown")
    rs = wait_records("cdc.app", lambda rs: len(of(rs, "snap")) >= 5000 + len(written), 60)
    snap = of(rs, "snap")
    ids = [r["payload"]["after"]["id"] for r in snap]
    t.eq(sorted(ids), list(range(1, 5001)) + written, "no gap and no duplicate between snapshot and stream")
    ops = [r["payload"]["op"] for r in snap]
    n_r = ops.count("r")
    t.ok(n_r >= 5000 and all(o == "r" for o in ops[:n_r]) and all(o == "c" for o in ops[n_r:]),
         "snapshot rows (op r) first, then streamed inserts (op c)", (n_r, ops.count("c")))
    first = snap[0]["payload"]
    t.ok(first["source"]["snapshot"] is True and first["before"] is None and first["source"]["db"] == "app"
         and first["source"]["connector"] == "sluice" and first["after"] == {"id": first["after"]["id"],
                                                                             "v": first["after"]["v"]},
         "a snapshot row: source.snapshot true, before null, after by column name", first)
    streamed = [r["payload"]["after"]["id"] for r in snap[n_r:]]
    t.eq(streamed, sorted(streamed), "streamed rows in commit order")
    st_ = conn(cid)["stats"]
    t.ok(st_["snapshot_rows_done"] >= 5000 and st_["snapshot_rows_estimate"] > 0,
         "snapshot progress in the connector's stats", st_)

TYPES = ("CREATE TABLE app.ty (id BIGINT PRIMARY KEY, ti TINYINT, tu TINYINT UNSIGNED, si SMALLINT, "
         "mi MEDIUMINT, iu INT UNSIGNED, bu BIGINT UNSIGNED, d DECIMAL(20,6), f FLOAT, db DOUBLE, "
         "vc VARCHAR(300), tx TEXT, l1 VARCHAR(10) CHARACTER SET latin1, bl BLOB, vb VARBINARY(10), "
         "bn BINARY(4), e ENUM('x','y','z'), st SET('a','b','c'), j JSON, dt DATETIME(6), dt0 DATETIME, "
         "ts TIMESTAMP(3) NULL, da DATE, tm TIME(2), y YEAR, bt BIT(10), ch CHAR(5), n INT) DEFAULT CHARSET utf8mb4")
ROW = ("(%d,-128,255,-32768,-8388608,4294967295,18446744073709551615,-12345678901234.123456,0.1,-2.5e300,"
       "'h\u00e9llo \u2603 \U0001F600',REPEAT('x',1000),_latin1 X'636166E9',X'000102',X'FF00',X'01020304','y','a,c',"
       "'{\"k\":[1,2]}','2024-02-29 23:59:58.123456','1000-01-01 00:00:00','2038-01-19 03:14:07.999',"
       "'9999-12-31','-838:59:59.99',2155,b'1010101010','ab',NULL)")
WANT = {"ti": -128, "tu": 255, "si": -32768, "mi": -8388608, "iu": 4294967295, "bu": 18446744073709551615,
        "d": "-12345678901234.123456", "f": 0.1, "db": -2.5e300, "vc": "h\u00e9llo \u2603 \U0001F600",
        "tx": "x" * 1000, "l1": "caf\u00e9", "bl": "AAEC", "vb": "/wA=", "bn": "AQIDBA==", "e": "y",
        "st": "a,c", "j": "{\"k\":[1,2]}", "dt": "2024-02-29T23:59:58.123456Z", "dt0": "1000-01-01T00:00:00Z",
        "ts": "2038-01-19T03:14:07.999Z", "da": "9999-12-31", "tm": "-838:59:59.99", "y": 2155, "bt": 682,
        "ch": "ab", "n": None}

with t.section("every common type, typed the same by the stream and the snapshot", srv):
    my.sql(TYPES + "; SET time_zone = '+00:00'; INSERT INTO app.ty VALUES " + (ROW % 1))
    rs = wait_records("cdc.app", lambda rs: of(rs, "ty"))
    got = of(rs, "ty")[0]["payload"]["after"]
    t.eq(got, dict(WANT, id=1), "ints exact (unsigned 64-bit too), DECIMAL as string, FLOAT shortest, "
         "utf8mb4 and latin1 text, binary base64, ENUM/SET names, JSON text, times ISO with their precision, "
         "YEAR, BIT, NULL")

EDGE = ("CREATE TABLE app.edge (id INT PRIMARY KEY, d1 DECIMAL(65,30), d2 DECIMAL(4,4), d3 DECIMAL(10,0), "
        "t6 TIME(6), t1 TIME(1), dt1 DATETIME(1), ts6 TIMESTAMP(6) NULL, y YEAR, b64 BIT(64), bi BIGINT, "
        "si SMALLINT UNSIGNED, ch CHAR(255), vb VARBINARY(300)) DEFAULT CHARSET utf8mb4")
EDGE_ROWS = ("(1, 99999999999999999999999999999999999.999999999999999999999999999999, 0.1234, -1, "
             "'-00:00:00.000001', '-838:59:59.9', '2024-01-01 00:00:00.5', '1970-01-01 00:00:01.000001', 0, "
             "b'1111111111111111111111111111111111111111111111111111111111111111', -9223372036854775808, 65535, "
             "REPEAT('é', 255), REPEAT(X'00', 300)), "
             "(2, -0.000000000000000000000000000001, -0.5, 0, '00:00:00', '00:00:00.1', '9999-12-31 23:59:59.9', "
             "'2038-01-19 03:14:07.999999', 1901, b'0', 9223372036854775807, 0, '', X'')")
EDGE_WANT = [
    {"id": 1, "d1": "99999999999999999999999999999999999.999999999999999999999999999999", "d2": "0.1234",
     "d3": "-1", "t6": "-00:00:00.000001", "t1": "-838:59:59.9", "dt1": "2024-01-01T00:00:00.5Z",
     "ts6": "1970-01-01T00:00:01.000001Z", "y": 0, "b64": 18446744073709551615, "bi": -9223372036854775808,
     "si": 65535, "ch": "é" * 255, "vb": "AAAA" * 100},
    {"id": 2, "d1": "-0.000000000000000000000000000001", "d2": "-0.5000", "d3": "0", "t6": "00:00:00.000000",
     "t1": "00:00:00.1", "dt1": "9999-12-31T23:59:59.9Z", "ts6": "2038-01-19T03:14:07.999999Z", "y": 1901,
     "b64": 0, "bi": 9223372036854775807, "si": 0, "ch": "", "vb": ""}]

with t.section("edge values, and the snapshot types them exactly as the stream does", srv):
    my.sql(EDGE + "; SET time_zone = '+00:00'; INSERT INTO app.edge VALUES " + EDGE_ROWS)
    rs = wait_records("cdc.app", lambda rs: len(of(rs, "edge")) >= 2)
    t.eq([r["payload"]["after"] for r in of(rs, "edge")], EDGE_WANT,
         "DECIMAL(65,30) extremes and tiny negatives, TIME/DATETIME/TIMESTAMP fractions and bounds, YEAR, "
         "BIT(64), BIGINT bounds, 255 two-byte characters, 300 zero bytes")
    values = ",".join("'v%d'" % i for i in range(300))
    my.sql("CREATE TABLE app.edge2 (id INT PRIMARY KEY, e ENUM(%s), s SET('a','b','c','d','e','f','g','h','i',"
           "'€'), e2 ENUM('à', 'b') CHARACTER SET latin1) DEFAULT CHARSET utf8mb4; "
           "INSERT INTO app.edge2 VALUES (1, 'v299', 'a,€', 'à'), (2, 'v0', '', 'b')" % values)
    rs = wait_records("cdc.app", lambda rs: len(of(rs, "edge2")) >= 2)
    edge2 = [{"id": 1, "e": "v299", "s": "a,€", "e2": "à"}, {"id": 2, "e": "v0", "s": "", "e2": "b"}]
    t.eq([r["payload"]["after"] for r in of(rs, "edge2")], edge2,
         "ENUM of 300 values (2 bytes), SET of 10 (2 bytes) with a non-ASCII name, a latin1 ENUM")
    c9 = create("types snapshot", my.config("app", tables=["ty", "edge", "edge2"], strand="cdc.types",
                                            server_id=4253))
    snap = wait_records("cdc.types", lambda rs: len(rs) >= 5)
    by = {(r["payload"]["source"]["table"], r["payload"]["after"]["id"]): r["payload"] for r in snap}
    t.ok(all(p["op"] == "r" for p in by.values()), "snapshot rows", [p["op"] for p in by.values()])
    t.eq([by[("edge", 1)]["after"], by[("edge", 2)]["after"]], EDGE_WANT, "the snapshot's edge values")
    t.eq(by[("ty", 1)]["after"], dict(WANT, id=1), "the snapshot's common types")
    t.eq([by[("edge2", 1)]["after"], by[("edge2", 2)]["after"]], edge2, "the snapshot's ENUM and SET names")
    delete(c9["id"])

with t.section("generated, invisible, GEOMETRY and JSON columns", srv):
    my.sql("CREATE TABLE app.gen (id INT PRIMARY KEY, a INT, v INT AS (a * 2) VIRTUAL, p INT AS (a + 1) PERSISTENT, "
           "h INT INVISIBLE DEFAULT 7, g GEOMETRY, j JSON); "
           "INSERT INTO app.gen (id, a, g, j) VALUES (1, 10, POINT(1, 2), '[1]'); UPDATE app.gen SET a = 11")
    rs = wait_records("cdc.app", lambda rs: len(of(rs, "gen")) >= 2)
    g = [r["payload"] for r in of(rs, "gen")]
    point = "AAAAAAEBAAAAAAAAAAAA8D8AAAAAAAAAQA=="
    t.eq([(x["op"], x["after"]) for x in g],
         [("c", {"id": 1, "a": 10, "v": 20, "p": 11, "h": 7, "g": point, "j": "[1]"}),
          ("u", {"id": 1, "a": 11, "v": 22, "p": 12, "h": 7, "g": point, "j": "[1]"})],
         "virtual and persistent generated columns with their values, invisible columns, GEOMETRY as "
         "base64 (WKB), JSON after a GEOMETRY as its text")

with t.section("insert, update, delete, transactions, rollback", srv):
    my.sql("CREATE TABLE app.ta (id INT PRIMARY KEY, v VARCHAR(10)); CREATE TABLE app.tb (id INT PRIMARY KEY, w INT)")
    my.sql("BEGIN; INSERT INTO app.ta VALUES (1, 'a'); INSERT INTO app.tb VALUES (1, 10); "
           "UPDATE app.ta SET v = 'a2' WHERE id = 1; COMMIT")
    my.sql("BEGIN; INSERT INTO app.ta VALUES (99, 'no'); INSERT INTO app.tb VALUES (99, 0); ROLLBACK")
    my.sql("UPDATE app.tb SET w = 20 WHERE id = 1")
    my.sql("INSERT INTO app.ta VALUES (2, 'x'), (3, 'y'); DELETE FROM app.ta WHERE id IN (1, 2)")
    rs = wait_records("cdc.app", lambda rs: len([r for r in rs if r["payload"]["source"]["table"] in ("ta", "tb")]) >= 8)
    ab = [r for r in rs if r["payload"]["source"]["table"] in ("ta", "tb")]
    seq = [(r["payload"]["op"], r["payload"]["source"]["table"], (r["payload"]["after"] or r["payload"]["before"])["id"])
           for r in ab]
    t.eq(seq, [("c", "ta", 1), ("c", "tb", 1), ("u", "ta", 1), ("u", "tb", 1), ("c", "ta", 2), ("c", "ta", 3),
               ("d", "ta", 1), ("d", "ta", 2)], "every committed change once, in commit order; the rolled-back never")
    tx = [r["payload"]["source"] for r in ab[:3]]
    t.ok(len({s["gtid"] for s in tx}) == 1 and [s["row"] for s in tx] == [0, 1, 2]
         and len({(s["file"], s["pos"]) for s in tx}) == 1,
         "a multi-table transaction shares its gtid and position, numbered by row", tx)
    u = ab[3]["payload"]
    t.eq((u["before"], u["after"]), ({"id": 1, "w": 10}, {"id": 1, "w": 20}), "an update carries the whole old row")
    d = ab[6]
    t.ok(d["payload"]["after"] is None and d["payload"]["before"] == {"id": 1, "v": "a2"} and d["flags"] & 2,
         "a delete: before is the old row, after null, flagged as a tombstone", d)

with t.section("ALTER TABLE mid-stream: each row decoded with its own columns", srv):
    my.sql("CREATE TABLE app.alt (id INT PRIMARY KEY, a INT, b VARCHAR(5)); INSERT INTO app.alt VALUES (1, 1, 'one')")
    my.sql("ALTER TABLE app.alt ADD COLUMN c DATE; INSERT INTO app.alt VALUES (2, 2, 'two', '2024-01-02')")
    my.sql("ALTER TABLE app.alt DROP COLUMN a; INSERT INTO app.alt VALUES (3, 'three', NULL)")
    my.sql("ALTER TABLE app.alt CHANGE b name VARCHAR(10); INSERT INTO app.alt VALUES (4, 'four', NULL)")
    my.sql("ALTER TABLE app.alt MODIFY c DATETIME(3); INSERT INTO app.alt VALUES (5, 'five', '2025-05-05 01:02:03.456')")
    rs = wait_records("cdc.app", lambda rs: len(of(rs, "alt")) >= 5)
    t.eq([r["payload"]["after"] for r in of(rs, "alt")],
         [{"id": 1, "a": 1, "b": "one"}, {"id": 2, "a": 2, "b": "two", "c": "2024-01-02"},
          {"id": 3, "b": "three", "c": None}, {"id": 4, "name": "four", "c": None},
          {"id": 5, "name": "five", "c": "2025-05-05T01:02:03.456Z"}],
         "add, drop, rename and change type: rows before and after keep their own columns")
    # across a restart: Sluice reads the rows written before and after an ALTER only after it
    srv.stop()
    my.sql("INSERT INTO app.alt VALUES (6, 'six', NULL); ALTER TABLE app.alt ADD COLUMN z INT DEFAULT 9 FIRST; "
           "INSERT INTO app.alt (id, name) VALUES (7, 'seven')")
    srv.start()
    rs = wait_records("cdc.app", lambda rs: len(of(rs, "alt")) >= 7)
    t.eq([r["payload"]["after"] for r in of(rs, "alt")][5:],
         [{"id": 6, "name": "six", "c": None}, {"id": 7, "z": 9, "name": "seven", "c": None}],
         "an ALTER while Sluice was down: the rows on each side decoded with their own columns")

with t.section("a 100k-row transaction", srv):
    my.sql("CREATE TABLE app.big (id INT PRIMARY KEY, pad CHAR(40)); "
           "USE app; INSERT INTO app.big SELECT seq, REPEAT('p', 40) FROM seq_1_to_100000")
    rs = wait_records("cdc.app", lambda rs: len(of(rs, "big")) >= 100000, 120)
    big = of(rs, "big")
    t.eq([r["payload"]["after"]["id"] for r in big], list(range(1, 100001)), "100000 rows, once each, in order")
    t.eq({r["payload"]["source"]["gtid"] for r in big}.__len__(), 1, "all of one transaction")

with t.section("kill -9 of Sluice twice under load, and a MariaDB restart: every row exactly once, in order",
               srv):
    my.sql("CREATE TABLE app.load (id INT PRIMARY KEY, v INT)")
    stop = threading.Event()
    committed = []

    def load():
        i = 0
        while not stop.is_set():
            stmts = "".join("INSERT INTO app.load VALUES (%d, %d);" % (i + k, k) for k in range(5))
            try:
                my.sql("BEGIN;" + stmts + "COMMIT")
            except RuntimeError:  # MariaDB restarting: did the transaction commit before it went?
                time.sleep(0.05)
                try:
                    if my.one("SELECT COUNT(*) FROM app.load WHERE id = %d" % i) != "1":
                        continue
                except RuntimeError:
                    continue
            committed.extend(range(i, i + 5))
            i += 5

    base = count("cdc.app")  # the strand's other writers are done: what comes now is the load
    w = threading.Thread(target=load)
    w.start()
    for k in range(2):
        st.wait_until(lambda: count("cdc.app") > base + 50 * (k + 1), 30, 0.05)
        srv.kill()
        srv.start()
    st.wait_until(lambda: count("cdc.app") > base + 200, 30, 0.05)
    my.restart()
    st.wait_until(lambda: len(committed) > 400, 30, 0.05)
    stop.set()
    w.join()
    st.wait_until(lambda: count("cdc.app") >= base + len(committed), 60, 0.05)
    rs = st.all_records(srv.port, "cdc.app", from_seq=base)
    got = [r["payload"]["after"]["id"] for r in of(rs, "load")]
    t.eq(committed, [int(r[0]) for r in my.sql("SELECT id FROM app.load ORDER BY id")],
         "the load's own count agrees with the table")
    t.eq(len(got), len(committed), "as many records as committed rows (%d)" % len(committed))
    t.eq(got, committed, "every committed row exactly once, in commit order")
    t.eq(conn(cid)["state"], "running", "the connector rode out the MariaDB restart")

with t.section("MariaDB down when Sluice starts: a connector that has streamed waits for it", srv):
    srv.stop()
    my.halt()
    mark = srv.log_mark()
    srv.start()
    st.wait_until(lambda: "cannot connect" in srv.log_since(mark), 20, 0.05)
    x = conn(cid)
    t.ok(x["state"] == "running" and "cannot connect" in (x["last_error"] or ""),
         "state running, last_error says the server cannot be reached", (x["state"], x["last_error"]))
    my.restart()
    my.sql("INSERT INTO app.load VALUES (1000000, 0)")
    rs = wait_records("cdc.app", lambda rs: any(r["payload"]["source"]["table"] == "load"
                                                and r["payload"]["after"]["id"] == 1000000 for r in rs[-5:]), 60)
    t.ok(any(r["payload"]["after"]["id"] == 1000000 for r in of(rs[-5:], "load")),
         "once it is back, the change written after it came up arrives")

with t.section("kill -9 during the snapshot: the next start takes it again, then streams exactly once", srv):
    my.sql("CREATE DATABASE crash; CREATE TABLE crash.big (id INT PRIMARY KEY, pad CHAR(60)); "
           "USE crash; INSERT INTO crash.big SELECT seq, REPEAT('q', 60) FROM seq_1_to_300000")
    c8 = create("crash", my.config("crash", strand="cdc.crash", server_id=4249))
    seen = st.wait_until(lambda: (lambda s: s if 0 < s.get("snapshot_rows_done", 0) < 300000 else None)(
        conn(c8["id"])["stats"]), 30, 0.005)
    srv.kill()
    t.ok(seen is not None, "Sluice was killed in the middle of the snapshot", seen)
    mark = srv.log_mark()
    srv.start()
    # once the new snapshot has its consistent view (it logs its binlog position), rows written
    # are the stream's: written before that, they would rightly be snapshot rows
    st.wait_until(lambda: "%s: snapshot at binlog" % c8["id"] in srv.log_since(mark, 10 ** 7), 30, 0.005)
    my.sql("INSERT INTO crash.big VALUES (300001, 'after'), (300002, 'after')")

    def tail_has_last():
        n = count("cdc.crash")
        return n >= 300002 and any(r["payload"]["op"] == "c" and r["payload"]["after"]["id"] == 300002
                                   for r in st.all_records(srv.port, "cdc.crash", from_seq=n - 1))

    st.wait_until(tail_has_last, 90, 0.1)
    rs = records("cdc.crash")
    ids = [r["payload"]["after"]["id"] for r in rs]
    t.eq(sorted(set(ids)), list(range(1, 300003)), "every row is in the strand")
    streamed = [r["payload"]["after"]["id"] for r in rs if r["payload"]["op"] == "c"]
    t.eq(streamed, [300001, 300002], "the rows written after the snapshot: exactly once, after it")
    last = max(i for i, r in enumerate(rs) if r["payload"]["op"] == "r")
    t.ok(all(r["payload"]["op"] == "r" for r in rs[:last + 1]), "the snapshot's rows come before the stream")
    delete(c8["id"])

with t.section("snapshot_mode never and a table filter", srv):
    my.sql("CREATE DATABASE shop; CREATE TABLE shop.orders (id INT PRIMARY KEY); CREATE TABLE shop.other (id INT PRIMARY KEY);"
           "INSERT INTO shop.orders VALUES (1); INSERT INTO shop.other VALUES (1)")
    mark = srv.log_mark()
    c2 = create("shop", my.config("shop", snapshot_mode="never", tables=["orders"], strand="cdc.shop",
                                  server_id=4243, include_schema_changes=True))
    st.wait_until(lambda: "%s: streaming the binlog" % c2["id"] in srv.log_since(mark), 10, 0.05)
    my.sql("INSERT INTO shop.orders VALUES (2); INSERT INTO shop.other VALUES (2); INSERT INTO shop.orders VALUES (3);"
           "ALTER TABLE shop.orders ADD COLUMN x INT DEFAULT 5; CREATE DATABASE unrelated; "
           "INSERT INTO shop.orders (id) VALUES (4)")
    rs = wait_records("cdc.shop", lambda rs: len(rs) >= 4)
    rows = [r["payload"] for r in rs if "op" in r["payload"]]
    t.eq([(p["source"]["table"], p["after"]) for p in rows],
         [("orders", {"id": 2}), ("orders", {"id": 3}), ("orders", {"id": 4, "x": 5})],
         "never: only changes after the start; only the listed table")
    ddl = [r["payload"] for r in rs if "ddl" in r["payload"]]
    t.ok(len(ddl) == 1 and ddl[0]["ddl"] == "ALTER TABLE shop.orders ADD COLUMN x INT DEFAULT 5"
         and ddl[0]["databaseName"] == "shop" and ddl[0]["source"]["gtid"],
         "include_schema_changes: the DDL on the captured database as a record of its own, in binlog order; "
         "other databases' DDL not", ddl)
    t.ok([("ddl" in r["payload"]) for r in rs] == [False, False, True, False], "the DDL record sits between the rows",
         [r["payload"].get("ddl") for r in rs])
    delete(c2["id"])

with t.section("the stored binlog position was purged: when_needed snapshots again, initial fails saying so", srv):
    my.sql("CREATE DATABASE pur; CREATE TABLE pur.t (id INT PRIMARY KEY)")
    mark = srv.log_mark()
    wn = create("when needed", my.config("pur", snapshot_mode="when_needed", strand="cdc.pur", server_id=4251))
    ini = create("initial", my.config("pur", strand="cdc.pur2", server_id=4252))
    st.wait_until(lambda: all("%s: streaming the binlog" % x["id"] in srv.log_since(mark) for x in (wn, ini)), 20, 0.05)
    my.sql("INSERT INTO pur.t VALUES (1)")
    wait_records("cdc.pur", lambda rs: len(rs) >= 1)
    wait_records("cdc.pur2", lambda rs: len(rs) >= 1)
    for x in (wn, ini):
        assert srv.req("PATCH", "/v1/connectors/" + x["id"], {"enabled": False}).status == 200
    my.sql("INSERT INTO pur.t VALUES (2); FLUSH BINARY LOGS; FLUSH BINARY LOGS")
    cur = my.sql("SHOW MASTER STATUS")[0][0]

    def purged():  # a file a binlog reader still has open is skipped: try until it is free
        my.sql("PURGE BINARY LOGS TO '%s'" % cur)
        return my.sql("SHOW BINARY LOGS")[0][0] == cur

    t.ok(st.wait_until(purged, 20, 0.1), "the binlog up to %s is purged" % cur, my.sql("SHOW BINARY LOGS"))
    for x in (wn, ini):
        assert srv.req("PATCH", "/v1/connectors/" + x["id"], {"enabled": True}).status == 200
    rs = wait_records("cdc.pur", lambda rs: len([r for r in rs if r["payload"]["op"] == "r"]) >= 2)
    my.sql("INSERT INTO pur.t VALUES (3)")
    rs = wait_records("cdc.pur", lambda rs: any(r["payload"]["op"] == "c" and r["payload"]["after"]["id"] == 3
                                                for r in rs))
    t.eq([(r["payload"]["op"], r["payload"]["after"]["id"]) for r in rs], [("c", 1), ("r", 1), ("r", 2), ("c", 3)],
         "when_needed: a new snapshot (with the row written while the binlog was purged), then the stream")
    x = wait_state(ini["id"], "failed")
    t.ok(x["state"] == "failed" and "purged" in (x["last_error"] or ""),
         "initial: failed, saying the binlog position is gone and what to do", x["last_error"])
    delete(wn["id"])
    delete(ini["id"])

with t.section("resume by GTID: the file of the stored position purged; failover to another server", srv):
    my.sql("CREATE DATABASE fo; CREATE TABLE fo.t (id INT PRIMARY KEY, v VARCHAR(10))")
    mark = srv.log_mark()
    fo = create("failover", my.config("fo", snapshot_mode="never", strand="cdc.fo", server_id=4261))
    st.wait_until(lambda: "%s: streaming the binlog" % fo["id"] in srv.log_since(mark), 20, 0.05)
    my.sql("INSERT INTO fo.t VALUES (1, 'a'); INSERT INTO fo.t VALUES (2, 'b')")
    wait_records("cdc.fo", lambda rs: len(rs) >= 2)
    assert srv.req("PATCH", "/v1/connectors/" + fo["id"], {"enabled": False}).status == 200
    old = my.sql("SHOW MASTER STATUS")[0][0]  # the file the stored position names
    my.sql("FLUSH BINARY LOGS")
    my.sql("INSERT INTO fo.t VALUES (3, 'c')")
    cur = my.sql("SHOW MASTER STATUS")[0][0]

    def purged():  # a file a binlog reader still has open is skipped: try until it is free
        my.sql("PURGE BINARY LOGS TO '%s'" % cur)
        return old not in [r[0] for r in my.sql("SHOW BINARY LOGS")]

    t.ok(st.wait_until(purged, 20, 0.1), "%s, the file of the stored position, is purged" % old,
         my.sql("SHOW BINARY LOGS"))
    mark = srv.log_mark()
    assert srv.req("PATCH", "/v1/connectors/" + fo["id"], {"enabled": True}).status == 200
    rs = wait_records("cdc.fo", lambda rs: len(rs) >= 3)
    log = srv.log_since(mark, 10 ** 7)
    t.ok("%s: streaming the binlog from GTID state " % fo["id"] in log,
         "the restart resumes by GTID state, not by the purged file", log[-600:])
    t.eq([(r["payload"]["op"], r["payload"]["after"]["id"]) for r in rs], [("c", 1), ("c", 2), ("c", 3)],
         "the row written after the rotation arrives, once; nothing before it again")
    t.ok(conn(fo["id"])["state"] == "running", "the connector runs", conn(fo["id"]))

    # heartbeats: with nothing to capture, the stored position follows the binlog into a new file
    my.sql("FLUSH BINARY LOGS")
    newest = my.sql("SHOW MASTER STATUS")[0][0]
    t.ok(st.wait_until(lambda: newest.encode() in stored_position(fo["id"]), 15, 0.1),
         "idle: the stored position moves into the new binlog file %s (heartbeats)" % newest,
         stored_position(fo["id"]))

    # failover: a second server whose binlog has other files and offsets but the same GTID
    # history (as a promoted replica's), and its own new transactions
    gtids = my.one("SELECT @@gtid_binlog_pos")
    assert srv.req("PATCH", "/v1/connectors/" + fo["id"], {"enabled": False}).status == 200
    my2 = MariaDB()
    my2.sql("RESET MASTER; SET GLOBAL gtid_binlog_state = '%s'; SET sql_log_bin = 0; "
            "CREATE DATABASE fo; CREATE TABLE fo.t (id INT PRIMARY KEY, v VARCHAR(10)); "
            "INSERT INTO fo.t VALUES (1, 'a'), (2, 'b'), (3, 'c')" % gtids)
    my2.sql("INSERT INTO fo.t VALUES (4, 'd'); UPDATE fo.t SET v = 'B' WHERE id = 2")
    t.ok(my2.one("SELECT @@gtid_binlog_pos") != gtids and my2.sql("SHOW BINARY LOGS")[0][0] != cur,
         "the new server continues the GTID history in binlog files of its own",
         (gtids, my2.one("SELECT @@gtid_binlog_pos"), my2.sql("SHOW BINARY LOGS")))
    mark = srv.log_mark()
    r = srv.req("PATCH", "/v1/connectors/" + fo["id"], {"enabled": True, "config": my2.config(
        "fo", snapshot_mode="never", strand="cdc.fo", server_id=4261)})
    assert r.status == 200, r
    rs = wait_records("cdc.fo", lambda rs: len(rs) >= 5)
    t.ok("%s: streaming the binlog from GTID state %s" % (fo["id"], gtids) in srv.log_since(mark, 10 ** 7),
         "the connector resumes on the new server from the GTID state it had", srv.log_since(mark)[-600:])
    t.eq([(r["payload"]["op"], r["payload"]["after"]["id"], r["payload"]["after"]["v"]) for r in rs[3:]],
         [("c", 4, "d"), ("u", 2, "B")], "the new server's changes arrive once, in order, after the old ones")
    t.ok(all(r["payload"]["source"]["gtid"] for r in rs), "every record carries its GTID",
         [r["payload"]["source"]["gtid"] for r in rs])
    delete(fo["id"])
    my2.stop()

with t.section("a transaction appended in chunks, stopped between two: resumed by GTID inside it", srv):
    n_rows = 400000  # ~180 MB of records: far more than the framework keeps in flight (64 MiB)
    my.sql("CREATE DATABASE chunk; CREATE TABLE chunk.t (id INT PRIMARY KEY, pad CHAR(200))")
    mark = srv.log_mark()
    ch = create("chunks", my.config("chunk", snapshot_mode="never", strand="cdc.chunk", server_id=4271))
    st.wait_until(lambda: "%s: streaming the binlog" % ch["id"] in srv.log_since(mark, 10 ** 7), 20, 0.05)
    my.sql("INSERT INTO t SELECT seq, REPEAT('c', 200) FROM seq_1_to_%d" % n_rows, db="chunk")
    st.wait_until(lambda: count("cdc.chunk") > 0, 60, 0.002)
    assert srv.req("PATCH", "/v1/connectors/" + ch["id"], {"enabled": False}).status == 200
    last = [-1]

    def settled():  # what was in flight at the stop is appended; then nothing more
        n, last[0] = last[0], count("cdc.chunk")
        return n == last[0]

    st.wait_until(settled, 60, 0.5)
    t.ok(0 < last[0] < n_rows, "stopped with part of the transaction in the strand", last[0])
    assert srv.req("PATCH", "/v1/connectors/" + ch["id"], {"enabled": True}).status == 200
    st.wait_until(lambda: count("cdc.chunk") >= n_rows, 120, 0.1)
    log = srv.log_since(mark, 10 ** 7)
    t.ok("%s: streaming the binlog from GTID state " % ch["id"] in log, "the restart is by GTID state",
         log[-600:])
    rs = records("cdc.chunk")
    ids = [r["payload"]["after"]["id"] for r in rs]
    t.eq(len(ids), n_rows, "every record of the transaction, none twice")
    t.ok(ids == list(range(1, n_rows + 1)) and [r["payload"]["source"]["row"] for r in rs] == list(range(n_rows)),
         "every row once, in order: the rest of the transaction after the part written before the stop",
         (ids[:3], ids[-3:]))
    delete(ch["id"])

with t.section("wrong settings fail with a last_error that says how to fix them", srv):
    my.sql("CREATE USER 'nobinlog'@'127.0.0.1' IDENTIFIED BY 'pw'; GRANT SELECT ON *.* TO 'nobinlog'@'127.0.0.1'")
    c3 = create("no grant", my.config("app", user="nobinlog", password="pw", snapshot_mode="never", server_id=4244))
    x = wait_state(c3["id"], "failed")
    t.ok(x["state"] == "failed" and "REPLICATION SLAVE" in (x["last_error"] or ""),
         "missing REPLICATION SLAVE grant: failed, naming the GRANT", x["last_error"])
    delete(c3["id"])
    my.sql("CREATE USER 'noslave'@'127.0.0.1' IDENTIFIED BY 'pw'; "
           "GRANT SELECT, REPLICATION CLIENT ON *.* TO 'noslave'@'127.0.0.1'")
    c3 = create("no slave grant", my.config("app", user="noslave", password="pw", snapshot_mode="never",
                                            server_id=4254))
    x = wait_state(c3["id"], "failed")
    t.ok(x["state"] == "failed" and "needs the REPLICATION SLAVE privilege" in (x["last_error"] or ""),
         "REPLICATION CLIENT but no REPLICATION SLAVE: the binlog dump is refused, failed naming the GRANT",
         x["last_error"])
    delete(c3["id"])
    my.sql("SET GLOBAL binlog_format = 'STATEMENT'")
    c4 = create("statement", my.config("app", snapshot_mode="never", server_id=4245))
    x = wait_state(c4["id"], "failed")
    t.ok(x["state"] == "failed" and "binlog_format" in (x["last_error"] or "")
         and "SET GLOBAL binlog_format = 'ROW'" in x["last_error"],
         "binlog_format STATEMENT: failed, naming the variable and the fix", x["last_error"])
    my.sql("SET GLOBAL binlog_format = 'ROW'")
    r = srv.req("POST", "/v1/connectors/%s/restart" % c4["id"])
    x = wait_state(c4["id"], "running")
    t.eq(x["state"], "running", "after the fix, a restart runs it")
    delete(c4["id"])
    c5 = create("down", dict(my.config("app", snapshot_mode="never", server_id=4246), port=1))
    x = wait_state(c5["id"], "failed")
    t.ok(x["state"] == "failed" and "cannot connect" in (x["last_error"] or ""),
         "a server that cannot be reached at the first start: failed with the reason", x["last_error"])
    delete(c5["id"])
    c6 = create("tls", my.config("app", snapshot_mode="never", server_id=4247, tls={"mode": "require"}))
    x = wait_state(c6["id"], "failed")
    e = x["last_error"] or ""
    t.ok(x["state"] == "failed" and ("SSL" in e or "TLS" in e),
         "tls.mode require against a server without TLS: failed, not a silent plain connection", x["last_error"])
    delete(c6["id"])
    off = MariaDB("--skip-log-bin")
    c7 = create("binlog off", dict(off.config("app", snapshot_mode="never", server_id=4248)))
    x = wait_state(c7["id"], "failed")
    t.ok(x["state"] == "failed" and "log_bin" in (x["last_error"] or "") and "--log-bin" in x["last_error"],
         "binary logging off: failed, saying how to turn it on", x["last_error"])
    delete(c7["id"])
    off.stop()

srv.stop()
with t.section("the strand verifies after the crashes"):
    rc, out, err = st.run_verify(srv.data, "cdc.app")
    t.ok(rc == 0, "sluice verify: the chain of cdc.app is intact", (out + err)[-300:])
mypeer.stop_all()
t.done()
