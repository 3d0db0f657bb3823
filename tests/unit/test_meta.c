/* The metadata store's typed tables: batch plans, source positions and connector state, and the
 * migration of the pseudo-cursors older versions kept in the cursors table (`~end:<strand>` batch
 * plans, `@pg.*` connector state) when a data directory from before is opened. */
#include "engine/meta.h"
#include "t.h"

#include <sqlite3.h>
#include <stdlib.h>
#include <unistd.h>

int main(void)
{
    char dir[] = "/tmp/sluice-meta-XXXXXX";
    if (!mkdtemp(dir))
        return 1;
    struct sl_meta *m = NULL;
    struct sl_err err = {0};
    T_CHECK(sl_meta_open(&m, dir, &err) == 0, "a new meta.db opens (%s)", err.msg);
    sl_meta_close(m);

    /* what a version before the connector framework left behind */
    char path[128];
    snprintf(path, sizeof(path), "%s/meta.db", dir);
    sqlite3 *db;
    T_CHECK(sqlite3_open(path, &db) == SQLITE_OK &&
                sqlite3_exec(db,
                             "INSERT INTO cursors VALUES ('c1', 'orders', 40);"
                             "INSERT INTO cursors VALUES ('c1', '~end:orders', 50);"
                             "INSERT INTO cursors VALUES ('c2', '@pg.snapshot', 2);"
                             "INSERT INTO cursors VALUES ('c2', '@pg.created_slot:s1', 1);",
                             NULL, NULL, NULL) == SQLITE_OK,
            "old pseudo-cursors written");
    sqlite3_close(db);

    T_CHECK(sl_meta_open(&m, dir, &err) == 0, "the old meta.db opens (%s)", err.msg);
    uint64_t v = 0;
    T_CHECK(sl_meta_get_cursor(m, "c1", "orders", &v) == 0 && v == 40, "a real cursor stays");
    T_CHECK(sl_meta_get_plan(m, "c1", "orders", &v) == 0 && v == 50,
            "~end:orders became the batch plan of strand orders");
    T_CHECK(sl_meta_get_cursor(m, "c1", "~end:orders", &v) == SL_E_NOTFOUND,
            "and is no cursor any more");
    T_CHECK(sl_meta_get_state(m, "c2", "pg.snapshot", &v) == 0 && v == 2 &&
                sl_meta_get_state(m, "c2", "pg.created_slot:s1", &v) == 0 && v == 1,
            "@pg.* became connector state pg.*");
    T_CHECK(sl_meta_get_cursor(m, "c2", "@pg.snapshot", &v) == SL_E_NOTFOUND,
            "and is no cursor any more");

    T_CHECK(sl_meta_set_state(m, "c2", "pg.snapshot", 1, &err) == 0 &&
                sl_meta_get_state(m, "c2", "pg.snapshot", &v) == 0 && v == 1,
            "state is replaced by key");
    uint64_t pos = 7, got = 0, next = 0;
    size_t len = 0;
    T_CHECK(sl_meta_set_source_position(m, "c3", &pos, sizeof(pos), 99, &err) == 0 &&
                sl_meta_get_source_position(m, "c3", &got, sizeof(got), &len, &next) == 0 &&
                got == 7 && len == 8 && next == 99,
            "a source position round-trips with the seq after it");
    T_CHECK(sl_meta_get_source_position(m, "c3", &got, 4, &len, &next) == SL_E_NOTFOUND,
            "a position larger than the caller's buffer is not returned");
    T_CHECK(sl_meta_drop_connector_state(m, "c2", &err) == 0 &&
                sl_meta_get_state(m, "c2", "pg.snapshot", &v) == SL_E_NOTFOUND,
            "a deleted connector's state goes with it");
    sl_meta_close(m);

    /* opening again migrates nothing twice and keeps what is there */
    T_CHECK(sl_meta_open(&m, dir, &err) == 0 && sl_meta_get_plan(m, "c1", "orders", &v) == 0 &&
                v == 50,
            "a second open keeps the migrated plan");
    sl_meta_close(m);
    char cmd[160];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    if (system(cmd) != 0)
        return 1;
    return T_DONE();
}
