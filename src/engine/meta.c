#include "engine/meta.h"

#include <jansson.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct sl_meta {
    sqlite3 *db;
    sqlite3 *cur; /* cursors: synchronous=NORMAL (many small commits) */
    pthread_mutex_t mu;
};

static int db_err(struct sl_meta *m, struct sl_err *err, const char *what)
{
    return sl_err_set(err, SL_E_IO, "metadata_error", "metadata store: %s: %s", what,
                      sqlite3_errmsg(m->db));
}

static int exec(struct sl_meta *m, const char *sql, struct sl_err *err)
{
    char *msg = NULL;
    if (sqlite3_exec(m->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        sl_err_set(err, SL_E_IO, "metadata_error", "metadata store: %s", msg ? msg : "error");
        sqlite3_free(msg);
        return SL_E_IO;
    }
    return 0;
}

int sl_meta_open(struct sl_meta **out, const char *dir, struct sl_err *err)
{
    struct sl_meta *m = calloc(1, sizeof(*m));
    if (!m)
        return sl_err_set(err, SL_E_NOMEM, "out_of_memory", "out of memory");
    pthread_mutex_init(&m->mu, NULL);
    char path[4200];
    snprintf(path, sizeof(path), "%s/meta.db", dir);
    int rc;
    if (sqlite3_open_v2(path, &m->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
        SQLITE_OK) {
        rc = db_err(m, err, path);
        goto fail;
    }
    sqlite3_busy_timeout(m->db, 5000);
    if ((rc = exec(
             m,
             "PRAGMA journal_mode=WAL;"
             "PRAGMA synchronous=FULL;"
             "CREATE TABLE IF NOT EXISTS connectors ("
             " id TEXT PRIMARY KEY, name TEXT NOT NULL, kind TEXT NOT NULL,"
             " enabled INTEGER NOT NULL, created_at_ms INTEGER NOT NULL,"
             " config TEXT NOT NULL, strands TEXT NOT NULL,"
             " event_count INTEGER NOT NULL DEFAULT 0, last_event_ms INTEGER NOT NULL DEFAULT 0,"
             " state TEXT, last_error TEXT, seq INTEGER);"
             "CREATE TABLE IF NOT EXISTS cursors (connector_id TEXT NOT NULL,"
             " strand TEXT NOT NULL, next_seq INTEGER NOT NULL,"
             " PRIMARY KEY (connector_id, strand));"
             "CREATE TABLE IF NOT EXISTS dead_letters (id INTEGER PRIMARY KEY,"
             " connector_id TEXT NOT NULL, strand TEXT NOT NULL, seq INTEGER NOT NULL,"
             " record_hash TEXT NOT NULL, attempts INTEGER NOT NULL, last_status INTEGER,"
             " last_error TEXT, response_excerpt TEXT, at_ms INTEGER NOT NULL);"
             "CREATE TABLE IF NOT EXISTS source_positions (connector_id TEXT PRIMARY KEY,"
             " position BLOB NOT NULL, next_seq INTEGER NOT NULL);"
             "CREATE TABLE IF NOT EXISTS connector_state (connector_id TEXT NOT NULL,"
             " key TEXT NOT NULL, value INTEGER NOT NULL, PRIMARY KEY (connector_id, key));"
             /* before, a connector's own state was pseudo-cursors named @<kind>.<key> */
             "INSERT OR IGNORE INTO connector_state SELECT connector_id, substr(strand, 2), "
             "next_seq"
             " FROM cursors WHERE strand LIKE '@%';"
             "DELETE FROM cursors WHERE strand LIKE '@%';"
             "CREATE TABLE IF NOT EXISTS connector_text (connector_id TEXT NOT NULL,"
             " key TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (connector_id, key));"
             "CREATE TABLE IF NOT EXISTS batch_plans (connector_id TEXT NOT NULL,"
             " strand TEXT NOT NULL, end_seq INTEGER NOT NULL,"
             " PRIMARY KEY (connector_id, strand));"
             /* before the connector framework, plans were pseudo-cursors named ~end:<strand> */
             "INSERT OR IGNORE INTO batch_plans SELECT connector_id, substr(strand, 6), next_seq"
             " FROM cursors WHERE strand LIKE '~end:%';"
             "DELETE FROM cursors WHERE strand LIKE '~end:%';",
             err)))
        goto fail;
    if (sqlite3_open_v2(path, &m->cur, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK ||
        sqlite3_exec(m->cur, "PRAGMA synchronous=NORMAL;", NULL, NULL, NULL) != SQLITE_OK) {
        rc =
            sl_err_set(err, SL_E_IO, "metadata_error", "metadata store: open %s for cursors", path);
        goto fail;
    }
    sqlite3_busy_timeout(m->cur, 5000);
    *out = m;
    return 0;
fail:
    sl_meta_close(m);
    return rc;
}

void sl_meta_close(struct sl_meta *m)
{
    if (!m)
        return;
    if (m->cur)
        sqlite3_close(m->cur);
    if (m->db)
        sqlite3_close(m->db);
    pthread_mutex_destroy(&m->mu);
    free(m);
}

int sl_meta_put_connector(struct sl_meta *m, const struct sl_meta_connector *c, struct sl_err *err)
{
    static const char *sql =
        "INSERT INTO connectors (id, name, kind, enabled, created_at_ms, config, strands,"
        " event_count, last_event_ms, state, last_error, seq) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,"
        "?10,?11,(SELECT COALESCE(MAX(seq),0)+1 FROM connectors))"
        " ON CONFLICT(id) DO UPDATE SET name=?2, enabled=?4, config=?6, strands=?7,"
        " event_count=?8, last_event_ms=?9, state=?10, last_error=?11";
    pthread_mutex_lock(&m->mu);
    sqlite3_stmt *st = NULL;
    int rc = 0;
    if (sqlite3_prepare_v2(m->db, sql, -1, &st, NULL) != SQLITE_OK) {
        rc = db_err(m, err, "prepare");
        goto out;
    }
    sqlite3_bind_text(st, 1, c->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, c->name, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, c->kind, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 4, c->enabled);
    sqlite3_bind_int64(st, 5, (sqlite3_int64)c->created_at_ms);
    sqlite3_bind_text(st, 6, c->config_json, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 7, c->strands_json, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 8, (sqlite3_int64)c->event_count);
    sqlite3_bind_int64(st, 9, (sqlite3_int64)c->last_event_ms);
    sqlite3_bind_text(st, 10, c->state, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 11, c->last_error, -1, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_DONE)
        rc = db_err(m, err, "store connector");
out:
    sqlite3_finalize(st);
    pthread_mutex_unlock(&m->mu);
    return rc;
}

static int exec_id(struct sl_meta *m, const char *sql, const char *id, uint64_t a, uint64_t b,
                   struct sl_err *err)
{
    pthread_mutex_lock(&m->mu);
    sqlite3_stmt *st = NULL;
    int rc = 0;
    if (sqlite3_prepare_v2(m->db, sql, -1, &st, NULL) != SQLITE_OK) {
        rc = db_err(m, err, "prepare");
    } else {
        sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, (sqlite3_int64)a);
        sqlite3_bind_int64(st, 3, (sqlite3_int64)b);
        if (sqlite3_step(st) != SQLITE_DONE)
            rc = db_err(m, err, "update");
    }
    sqlite3_finalize(st);
    pthread_mutex_unlock(&m->mu);
    return rc;
}

int sl_meta_delete_connector(struct sl_meta *m, const char *id, struct sl_err *err)
{
    return exec_id(m, "DELETE FROM connectors WHERE id=?1 AND ?2=?3", id, 0, 0, err);
}

int sl_meta_update_counters(struct sl_meta *m, const char *id, uint64_t event_count,
                            uint64_t last_event_ms, struct sl_err *err)
{
    return exec_id(m, "UPDATE connectors SET event_count=?2, last_event_ms=?3 WHERE id=?1", id,
                   event_count, last_event_ms, err);
}

int sl_meta_load_connectors(struct sl_meta *m,
                            int (*fn)(const struct sl_meta_connector *c, void *arg), void *arg,
                            struct sl_err *err)
{
    pthread_mutex_lock(&m->mu);
    sqlite3_stmt *st = NULL;
    int rc = 0;
    if (sqlite3_prepare_v2(m->db,
                           "SELECT id, name, kind, enabled, created_at_ms, config, strands,"
                           " event_count, last_event_ms, state, last_error FROM connectors"
                           " ORDER BY seq",
                           -1, &st, NULL) != SQLITE_OK) {
        rc = db_err(m, err, "prepare");
        goto out;
    }
    int s;
    while ((s = sqlite3_step(st)) == SQLITE_ROW && rc == 0) {
        struct sl_meta_connector c = {
            .id = (const char *)sqlite3_column_text(st, 0),
            .name = (const char *)sqlite3_column_text(st, 1),
            .kind = (const char *)sqlite3_column_text(st, 2),
            .enabled = sqlite3_column_int(st, 3),
            .created_at_ms = (uint64_t)sqlite3_column_int64(st, 4),
            .config_json = (const char *)sqlite3_column_text(st, 5),
            .strands_json = (const char *)sqlite3_column_text(st, 6),
            .event_count = (uint64_t)sqlite3_column_int64(st, 7),
            .last_event_ms = (uint64_t)sqlite3_column_int64(st, 8),
            .state = (const char *)sqlite3_column_text(st, 9),
            .last_error = (const char *)sqlite3_column_text(st, 10),
        };
        rc = fn(&c, arg);
    }
    if (rc == 0 && s != SQLITE_DONE)
        rc = db_err(m, err, "load connectors");
out:
    sqlite3_finalize(st);
    pthread_mutex_unlock(&m->mu);
    return rc;
}

/* The integer of a one-row answer to sql(id, strand); SL_E_NOTFOUND without a row. */
static int get_u64(struct sl_meta *m, const char *sql, const char *id, const char *strand,
                   uint64_t *out)
{
    pthread_mutex_lock(&m->mu);
    sqlite3_stmt *st = NULL;
    int rc = SL_E_NOTFOUND;
    if (sqlite3_prepare_v2(m->cur, sql, -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, strand, -1, SQLITE_STATIC);
        if (sqlite3_step(st) == SQLITE_ROW) {
            *out = (uint64_t)sqlite3_column_int64(st, 0);
            rc = 0;
        }
    }
    sqlite3_finalize(st);
    pthread_mutex_unlock(&m->mu);
    return rc;
}

int sl_meta_get_cursor(struct sl_meta *m, const char *id, const char *strand, uint64_t *seq)
{
    return get_u64(m, "SELECT next_seq FROM cursors WHERE connector_id=?1 AND strand=?2", id,
                   strand, seq);
}

static int put_cursor(struct sl_meta *m, const char *sql, const char *id, const char *strand,
                      uint64_t seq, struct sl_err *err)
{
    pthread_mutex_lock(&m->mu);
    sqlite3_stmt *st = NULL;
    int rc = 0;
    if (sqlite3_prepare_v2(m->cur, sql, -1, &st, NULL) != SQLITE_OK) {
        rc = sl_err_set(err, SL_E_IO, "metadata_error", "cursor: %s", sqlite3_errmsg(m->cur));
    } else {
        sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, strand, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 3, (sqlite3_int64)seq);
        if (sqlite3_step(st) != SQLITE_DONE)
            rc = sl_err_set(err, SL_E_IO, "metadata_error", "cursor: %s", sqlite3_errmsg(m->cur));
    }
    sqlite3_finalize(st);
    pthread_mutex_unlock(&m->mu);
    return rc;
}

int sl_meta_set_cursor(struct sl_meta *m, const char *id, const char *strand, uint64_t seq,
                       struct sl_err *err)
{
    return put_cursor(m,
                      "INSERT INTO cursors (connector_id, strand, next_seq) VALUES (?1,?2,?3)"
                      " ON CONFLICT(connector_id, strand) DO UPDATE SET next_seq=?3",
                      id, strand, seq, err);
}

int sl_meta_init_cursor(struct sl_meta *m, const char *id, const char *strand, uint64_t seq,
                        struct sl_err *err)
{
    return put_cursor(m,
                      "INSERT OR IGNORE INTO cursors (connector_id, strand, next_seq)"
                      " VALUES (?1,?2,?3)",
                      id, strand, seq, err);
}

int sl_meta_get_plan(struct sl_meta *m, const char *id, const char *strand, uint64_t *end)
{
    return get_u64(m, "SELECT end_seq FROM batch_plans WHERE connector_id=?1 AND strand=?2", id,
                   strand, end);
}

int sl_meta_set_plan(struct sl_meta *m, const char *id, const char *strand, uint64_t end,
                     struct sl_err *err)
{
    return put_cursor(m,
                      "INSERT INTO batch_plans (connector_id, strand, end_seq) VALUES (?1,?2,?3)"
                      " ON CONFLICT(connector_id, strand) DO UPDATE SET end_seq=?3",
                      id, strand, end, err);
}

int sl_meta_get_state(struct sl_meta *m, const char *id, const char *key, uint64_t *value)
{
    return get_u64(m, "SELECT value FROM connector_state WHERE connector_id=?1 AND key=?2", id, key,
                   value);
}

int sl_meta_set_state(struct sl_meta *m, const char *id, const char *key, uint64_t value,
                      struct sl_err *err)
{
    return put_cursor(m,
                      "INSERT INTO connector_state (connector_id, key, value) VALUES (?1,?2,?3)"
                      " ON CONFLICT(connector_id, key) DO UPDATE SET value=?3",
                      id, key, value, err);
}

char *sl_meta_get_text(struct sl_meta *m, const char *id, const char *key)
{
    pthread_mutex_lock(&m->mu);
    sqlite3_stmt *st = NULL;
    char *out = NULL;
    if (sqlite3_prepare_v2(m->db,
                           "SELECT value FROM connector_text WHERE connector_id=?1 AND key=?2", -1,
                           &st, NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, key, -1, SQLITE_STATIC);
        if (sqlite3_step(st) == SQLITE_ROW)
            out = strdup((const char *)sqlite3_column_text(st, 0));
    }
    sqlite3_finalize(st);
    pthread_mutex_unlock(&m->mu);
    return out;
}

int sl_meta_set_text(struct sl_meta *m, const char *id, const char *key, const char *value,
                     struct sl_err *err)
{
    pthread_mutex_lock(&m->mu);
    sqlite3_stmt *st = NULL;
    int rc = 0;
    const char *sql = value ? "INSERT INTO connector_text (connector_id, key, value)"
                              " VALUES (?1,?2,?3) ON CONFLICT(connector_id, key) DO UPDATE SET"
                              " value=?3"
                            : "DELETE FROM connector_text WHERE connector_id=?1 AND key=?2";
    if (sqlite3_prepare_v2(m->db, sql, -1, &st, NULL) != SQLITE_OK) {
        rc =
            sl_err_set(err, SL_E_IO, "metadata_error", "connector text: %s", sqlite3_errmsg(m->db));
    } else {
        sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, key, -1, SQLITE_STATIC);
        if (value)
            sqlite3_bind_text(st, 3, value, -1, SQLITE_STATIC);
        if (sqlite3_step(st) != SQLITE_DONE)
            rc = sl_err_set(err, SL_E_IO, "metadata_error", "connector text: %s",
                            sqlite3_errmsg(m->db));
    }
    sqlite3_finalize(st);
    pthread_mutex_unlock(&m->mu);
    return rc;
}

int sl_meta_get_source_position(struct sl_meta *m, const char *id, void *pos, size_t cap,
                                size_t *len, uint64_t *next_seq)
{
    pthread_mutex_lock(&m->mu);
    sqlite3_stmt *st = NULL;
    int rc = SL_E_NOTFOUND;
    if (sqlite3_prepare_v2(m->cur,
                           "SELECT position, next_seq FROM source_positions WHERE connector_id=?1",
                           -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
        if (sqlite3_step(st) == SQLITE_ROW) {
            size_t n = (size_t)sqlite3_column_bytes(st, 0);
            if (n <= cap) {
                if (n)
                    memcpy(pos, sqlite3_column_blob(st, 0), n);
                *len = n;
                *next_seq = (uint64_t)sqlite3_column_int64(st, 1);
                rc = 0;
            }
        }
    }
    sqlite3_finalize(st);
    pthread_mutex_unlock(&m->mu);
    return rc;
}

int sl_meta_set_source_position(struct sl_meta *m, const char *id, const void *pos, size_t len,
                                uint64_t next_seq, struct sl_err *err)
{
    pthread_mutex_lock(&m->mu);
    sqlite3_stmt *st = NULL;
    int rc = 0;
    if (sqlite3_prepare_v2(m->cur,
                           "INSERT INTO source_positions (connector_id, position, next_seq)"
                           " VALUES (?1,?2,?3) ON CONFLICT(connector_id) DO UPDATE SET"
                           " position=?2, next_seq=?3",
                           -1, &st, NULL) != SQLITE_OK) {
        rc = sl_err_set(err, SL_E_IO, "metadata_error", "position: %s", sqlite3_errmsg(m->cur));
    } else {
        sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
        sqlite3_bind_blob(st, 2, len ? pos : "", (int)len, SQLITE_STATIC);
        sqlite3_bind_int64(st, 3, (sqlite3_int64)next_seq);
        if (sqlite3_step(st) != SQLITE_DONE)
            rc = sl_err_set(err, SL_E_IO, "metadata_error", "position: %s", sqlite3_errmsg(m->cur));
    }
    sqlite3_finalize(st);
    pthread_mutex_unlock(&m->mu);
    return rc;
}

int sl_meta_drop_connector_state(struct sl_meta *m, const char *id, struct sl_err *err)
{
    int rc = exec_id(m, "DELETE FROM cursors WHERE connector_id=?1 AND ?2=?3", id, 0, 0, err);
    if (rc == 0)
        rc = exec_id(m, "DELETE FROM batch_plans WHERE connector_id=?1 AND ?2=?3", id, 0, 0, err);
    if (rc == 0)
        rc = exec_id(m, "DELETE FROM connector_state WHERE connector_id=?1 AND ?2=?3", id, 0, 0,
                     err);
    if (rc == 0)
        rc =
            exec_id(m, "DELETE FROM connector_text WHERE connector_id=?1 AND ?2=?3", id, 0, 0, err);
    if (rc == 0)
        rc = exec_id(m, "DELETE FROM source_positions WHERE connector_id=?1 AND ?2=?3", id, 0, 0,
                     err);
    if (rc == 0)
        rc = exec_id(m, "DELETE FROM dead_letters WHERE connector_id=?1 AND ?2=?3", id, 0, 0, err);
    return rc;
}

int sl_meta_add_dead_letter(struct sl_meta *m, const struct sl_meta_dead_letter *d,
                            struct sl_err *err)
{
    pthread_mutex_lock(&m->mu);
    sqlite3_stmt *st = NULL;
    int rc = 0;
    if (sqlite3_prepare_v2(m->db,
                           "INSERT INTO dead_letters (connector_id, strand, seq, record_hash,"
                           " attempts, last_status, last_error, response_excerpt, at_ms)"
                           " VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9)",
                           -1, &st, NULL) != SQLITE_OK) {
        rc = db_err(m, err, "prepare");
    } else {
        sqlite3_bind_text(st, 1, d->connector_id, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, d->strand, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 3, (sqlite3_int64)d->seq);
        sqlite3_bind_text(st, 4, d->record_hash, -1, SQLITE_STATIC);
        sqlite3_bind_int(st, 5, d->attempts);
        sqlite3_bind_int(st, 6, d->last_status);
        sqlite3_bind_text(st, 7, d->last_error, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 8, d->response_excerpt, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 9, (sqlite3_int64)d->at_ms);
        if (sqlite3_step(st) != SQLITE_DONE)
            rc = db_err(m, err, "store dead letter");
    }
    sqlite3_finalize(st);
    pthread_mutex_unlock(&m->mu);
    return rc;
}

json_t *sl_meta_dead_letters(struct sl_meta *m, const char *id, int limit)
{
    json_t *arr = json_array();
    pthread_mutex_lock(&m->mu);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(m->db,
                           "SELECT id, strand, seq, record_hash, attempts, last_status, last_error,"
                           " response_excerpt, at_ms FROM dead_letters WHERE connector_id=?1"
                           " ORDER BY id LIMIT ?2",
                           -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
        sqlite3_bind_int(st, 2, limit);
        while (sqlite3_step(st) == SQLITE_ROW) {
            const char *exc = (const char *)sqlite3_column_text(st, 7);
            json_t *o = json_pack(
                "{s:I, s:s, s:I, s:s, s:i, s:i, s:s, s:s, s:I}", "id",
                (json_int_t)sqlite3_column_int64(st, 0), "strand", sqlite3_column_text(st, 1),
                "seq", (json_int_t)sqlite3_column_int64(st, 2), "record_hash",
                sqlite3_column_text(st, 3), "attempts", sqlite3_column_int(st, 4), "last_status",
                sqlite3_column_int(st, 5), "last_error",
                sqlite3_column_text(st, 6) ? (const char *)sqlite3_column_text(st, 6) : "",
                "response_excerpt", exc ? exc : "", "at_ms",
                (json_int_t)sqlite3_column_int64(st, 8));
            if (!o) /* an excerpt that is not UTF-8: show it without the body */
                o = json_pack("{s:I, s:s, s:I}", "id", (json_int_t)sqlite3_column_int64(st, 0),
                              "strand", sqlite3_column_text(st, 1), "seq",
                              (json_int_t)sqlite3_column_int64(st, 2));
            json_array_append_new(arr, o);
        }
    }
    sqlite3_finalize(st);
    pthread_mutex_unlock(&m->mu);
    return arr;
}

long sl_meta_delete_dead_letters(struct sl_meta *m, const char *id)
{
    pthread_mutex_lock(&m->mu);
    sqlite3_stmt *st = NULL;
    long n = SL_E_IO;
    if (sqlite3_prepare_v2(m->db, "DELETE FROM dead_letters WHERE connector_id=?1", -1, &st,
                           NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
        if (sqlite3_step(st) == SQLITE_DONE)
            n = sqlite3_changes(m->db);
    }
    sqlite3_finalize(st);
    pthread_mutex_unlock(&m->mu);
    return n;
}

long sl_meta_take_dead_letters(struct sl_meta *m, const char *id, struct sl_dl_ref *out, long max)
{
    pthread_mutex_lock(&m->mu);
    sqlite3_stmt *st = NULL, *del = NULL;
    long n = 0;
    sqlite3_exec(m->db, "BEGIN", NULL, NULL, NULL);
    if (sqlite3_prepare_v2(m->db,
                           "SELECT id, strand, seq FROM dead_letters WHERE connector_id=?1"
                           " ORDER BY id LIMIT ?2",
                           -1, &st, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(m->db, "DELETE FROM dead_letters WHERE id=?1", -1, &del, NULL) ==
            SQLITE_OK) {
        sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, max);
        while (n < max && sqlite3_step(st) == SQLITE_ROW) {
            snprintf(out[n].strand, sizeof(out[n].strand), "%s", sqlite3_column_text(st, 1));
            out[n].seq = (uint64_t)sqlite3_column_int64(st, 2);
            sqlite3_bind_int64(del, 1, sqlite3_column_int64(st, 0));
            sqlite3_step(del);
            sqlite3_reset(del);
            n++;
        }
    }
    sqlite3_finalize(st);
    sqlite3_finalize(del);
    sqlite3_exec(m->db, "COMMIT", NULL, NULL, NULL);
    pthread_mutex_unlock(&m->mu);
    return n;
}
