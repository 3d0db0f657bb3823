/* The PostgreSQL sink (StreamHouse's `postgres-sink`, keys exactly): each record's payload (a
 * JSON object) becomes a row of `table.name`, its fields mapped to columns by name (the table's
 * columns are read from the catalog at open and again after a schema error) and converted to the
 * column's type (jsonb/json from objects and arrays, arrays of scalars, timestamptz from epoch ms
 * or ISO text, bytea from base64, numeric exact). A batch is one transaction of multi-row
 * INSERTs (insert.mode insert) or INSERT ... ON CONFLICT (pk.fields) DO UPDATE (upsert); the
 * framework's cursor moves after COMMIT. CDC records (postgres_cdc's or datagen's envelope, or
 * rows unwrapped with ExtractNewRecordState's rewrite mode) apply their operation: a delete is
 * DELETE ... WHERE pk, anything else an upsert, so PostgreSQL -> Sluice -> PostgreSQL
 * replication works. A batch PostgreSQL refuses for a data reason (SQLSTATE classes 22, 23) is
 * sent again record by record, each in its own transaction, so only the rows at fault become dead
 * letters (with SQLSTATE and message); a lost connection is retried. */
#include "connectors/pg/cdc.h"
#include "core/buf.h"
#include "core/err.h"
#include "engine/kinds.h"
#include "formats/mp_jansson.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_COLS 1600 /* PostgreSQL's limit */
#define MAX_PARAMS 65535

static const char *const g_modes[] = {"insert", "upsert", NULL};
static const char *const g_formats[] = {"json", NULL};
static const char *const g_unknown[] = {"ignore", "error", NULL};

static const struct sl_field f_pgsink[] = {
    {"connection.url", SL_F_STRING, 1, NULL, SL_HAS_PASSWORD,
     "PostgreSQL connection string (postgres://user:pass@host:5432/db, or key=value pairs).", 0, 0,
     NULL, NULL},
    {"table.name", SL_F_STRING, 1, NULL, 0, "Target table (schema.table allowed).", 0, 0, NULL,
     NULL},
    {"insert.mode", SL_F_ENUM, 0, "\"upsert\"", 0,
     "insert: INSERT; upsert: INSERT ... ON CONFLICT (pk.fields) DO UPDATE.", 0, 0, g_modes, NULL},
    {"pk.fields", SL_F_STRING, 0, "\"\"", 0,
     "Comma-separated primary-key fields (required for upsert and for CDC deletes).", 0, 0, NULL,
     NULL},
    {"batch.size", SL_F_INT, 0, "500", 0, "Records per batch (one transaction).", 1, 100000, NULL,
     NULL},
    {"value.format", SL_F_ENUM, 0, "\"json\"", 0, "Record value format (json).", 0, 0, g_formats,
     NULL},
    {"fields.unknown", SL_F_ENUM, 0, "\"ignore\"", 0,
     "A payload field with no column: ignore it, or refuse the record (dead letter).", 0, 0,
     g_unknown, NULL},
    {"auto.create", SL_F_BOOL, 0, "false", 0,
     "Create the table from the first record (columns typed from its JSON values).", 0, 0, NULL,
     NULL},
    {NULL, 0, 0, NULL, 0, NULL, 0, 0, NULL, NULL},
};

/* StreamHouse sends every value as a string: "500", "true". */
static json_t *ps_normalize(const json_t *config, struct sl_err *err)
{
    json_t *out = json_deep_copy(config);
    const char *s = json_string_value(json_object_get(out, "batch.size"));
    if (s) {
        char *end;
        long long v = strtoll(s, &end, 10);
        if (*s && !*end)
            json_object_set_new(out, "batch.size", json_integer(v));
    }
    s = json_string_value(json_object_get(out, "auto.create"));
    if (s && (!strcmp(s, "true") || !strcmp(s, "false")))
        json_object_set_new(out, "auto.create", json_boolean(s[0] == 't'));
    (void)err;
    return out;
}

static int ident_ok(const char *s)
{
    if (!*s)
        return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '_' || *s == '.' || *s == '$'))
            return 0;
    return 1;
}

static int ps_check_config(json_t *cfg, struct sl_err *err)
{
    if (sl_pg_conninfo_check_field(json_string_value(json_object_get(cfg, "connection.url")),
                                   "config.connection.url", err) < 0)
        return SL_E_INVAL;
    const char *t = json_string_value(json_object_get(cfg, "table.name"));
    if (!ident_ok(t))
        return sl_config_error(err, "config.table.name",
                               "letters, digits, '_' and one '.' (schema.table)");
    const char *pk = json_string_value(json_object_get(cfg, "pk.fields"));
    char buf[512];
    snprintf(buf, sizeof(buf), "%s", pk);
    for (char *p = strtok(buf, ", "); p; p = strtok(NULL, ", "))
        if (!ident_ok(p) || strchr(p, '.'))
            return sl_config_error(err, "config.pk.fields", "'%s' is not a column name", p);
    if (!strcmp(json_string_value(json_object_get(cfg, "insert.mode")), "upsert") && !*pk)
        return sl_config_error(err, "config.pk.fields", "required for insert.mode upsert");
    return 0;
}

/* ---- the sink ---- */

struct col {
    char *name, *type; /* format_type() */
};

struct pgsink {
    const struct sl_sink_ctx *ctx;
    const char *url, *table;
    int upsert, strict, autocreate;
    char pk[64][64];
    size_t npk;
    PGconn *conn;
    struct col cols[MAX_COLS];
    size_t ncols;
    char qtable[300]; /* quoted */
    int staged;       /* the connection has the staging table (COPY path) */
    size_t *reject;
    size_t cap_reject;
};

static void quote_ident(struct sl_buf *b, const char *s, size_t n)
{
    sl_buf_putc(b, '"');
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '"')
            sl_buf_putc(b, '"');
        sl_buf_putc(b, s[i]);
    }
    sl_buf_putc(b, '"');
}

static void free_cols(struct pgsink *p)
{
    for (size_t i = 0; i < p->ncols; i++) {
        free(p->cols[i].name);
        free(p->cols[i].type);
    }
    p->ncols = 0;
}

static void ps_close(void *self)
{
    struct pgsink *p = self;
    if (!p)
        return;
    free_cols(p);
    if (p->conn)
        PQfinish(p->conn);
    free(p->reject);
    free(p);
}

static int connect_db(struct pgsink *p, char *why, size_t n)
{
    if (p->conn && PQstatus(p->conn) == CONNECTION_OK)
        return 0;
    if (p->conn)
        PQfinish(p->conn);
    p->staged = 0;
    const char *keys[] = {"dbname", NULL}, *vals[] = {p->url, NULL};
    char denied[300];
    p->conn = sl_pg_connect(keys, vals, denied, sizeof(denied));
    if (!p->conn) {
        snprintf(n ? why : NULL, n, "PostgreSQL: %s", denied);
        return -1;
    }
    if (PQstatus(p->conn) != CONNECTION_OK) {
        snprintf(n ? why : NULL, n, "PostgreSQL: %s", PQerrorMessage(p->conn));
        for (char *c = why; n && *c; c++)
            if (*c == '\n')
                *c = ' ';
        PQfinish(p->conn);
        p->conn = NULL;
        return -1;
    }
    return 0;
}

/* Reads the table's columns. 0, 1 if the table does not exist, -1 on a connection error. */
static int load_cols(struct pgsink *p, char *why, size_t n)
{
    free_cols(p);
    const char *params[1] = {p->qtable};
    PGresult *r = PQexecParams(p->conn,
                               "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM "
                               "pg_attribute a WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 "
                               "AND NOT a.attisdropped ORDER BY a.attnum",
                               1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        snprintf(why, n, "PostgreSQL: %s", PQresultErrorMessage(r));
        PQclear(r);
        return -1;
    }
    for (int i = 0; i < PQntuples(r) && p->ncols < MAX_COLS; i++) {
        p->cols[p->ncols].name = strdup(PQgetvalue(r, i, 0));
        p->cols[p->ncols].type = strdup(PQgetvalue(r, i, 1));
        p->ncols++;
    }
    PQclear(r);
    return p->ncols ? 0 : 1;
}

static const struct col *col_of(const struct pgsink *p, const char *name)
{
    for (size_t i = 0; i < p->ncols; i++)
        if (!strcmp(p->cols[i].name, name))
            return &p->cols[i];
    return NULL;
}

static int ps_open(void **self, const struct sl_sink_ctx *ctx, struct sl_sink_info *info,
                   struct sl_err *err)
{
    struct pgsink *p = calloc(1, sizeof(*p));
    if (!p)
        return sl_err_set(err, SL_E_NOMEM, "out_of_memory", "out of memory");
    const json_t *cfg = ctx->config;
    p->ctx = ctx;
    p->url = json_string_value(json_object_get(cfg, "connection.url"));
    p->table = json_string_value(json_object_get(cfg, "table.name"));
    p->upsert = !strcmp(json_string_value(json_object_get(cfg, "insert.mode")), "upsert");
    p->strict = !strcmp(json_string_value(json_object_get(cfg, "fields.unknown")), "error");
    p->autocreate = json_is_true(json_object_get(cfg, "auto.create"));
    char buf[512];
    snprintf(buf, sizeof(buf), "%s", json_string_value(json_object_get(cfg, "pk.fields")));
    for (char *t = strtok(buf, ", "); t && p->npk < 64; t = strtok(NULL, ", "))
        snprintf(p->pk[p->npk++], sizeof(p->pk[0]), "%s", t);
    /* schema.table, each part quoted */
    struct sl_buf q;
    sl_buf_init(&q, 0);
    const char *dot = strchr(p->table, '.');
    if (dot) {
        quote_ident(&q, p->table, (size_t)(dot - p->table));
        sl_buf_putc(&q, '.');
        quote_ident(&q, dot + 1, strlen(dot + 1));
    } else {
        quote_ident(&q, p->table, strlen(p->table));
    }
    snprintf(p->qtable, sizeof(p->qtable), "%.*s", (int)q.len, (const char *)q.data);
    sl_buf_release(&q);
    info->batch_max = (uint64_t)json_integer_value(json_object_get(cfg, "batch.size"));
    *self = p;
    return 0;
}

/* The health check: a connection, and the table (or auto.create). */
static int ps_check(void *self, struct sl_err *err)
{
    struct pgsink *p = self;
    char why[400] = "";
    if (connect_db(p, why, sizeof(why)) < 0)
        return sl_err_set(err, SL_E_UNAVAIL, "unhealthy", "%s", why);
    int rc = load_cols(p, why, sizeof(why));
    if (rc < 0)
        return sl_err_set(err, SL_E_UNAVAIL, "unhealthy", "%s", why);
    if (rc == 1 && !p->autocreate)
        return sl_err_set(err, SL_E_UNAVAIL, "unhealthy",
                          "table %s does not exist (create it, or set auto.create)", p->table);
    return 0;
}

/* ---- values ---- */

static int b64v(char c)
{
    return c >= 'A' && c <= 'Z'   ? c - 'A'
           : c >= 'a' && c <= 'z' ? c - 'a' + 26
           : c >= '0' && c <= '9' ? c - '0' + 52
           : c == '+' || c == '-' ? 62
           : c == '/' || c == '_' ? 63
                                  : -1;
}

/* bytea's hex input ("\x0a1b") from base64 text; -1 if it is not base64. */
static int bytea_of(const char *s, struct sl_buf *out)
{
    sl_buf_puts(out, "\\x");
    unsigned acc = 0;
    int bits = 0;
    for (; *s && *s != '='; s++) {
        int v = b64v(*s);
        if (v < 0)
            return -1;
        acc = (acc << 6) | (unsigned)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            sl_buf_printf(out, "%02x", (acc >> bits) & 0xff);
        }
    }
    return 0;
}

/* A PostgreSQL array literal from a JSON array of scalars; -1 if an element is not a scalar. */
static int array_of(const json_t *a, struct sl_buf *out)
{
    sl_buf_putc(out, '{');
    size_t i;
    json_t *x;
    json_array_foreach(a, i, x)
    {
        if (i)
            sl_buf_putc(out, ',');
        if (json_is_null(x)) {
            sl_buf_puts(out, "NULL");
        } else if (json_is_string(x)) {
            sl_buf_putc(out, '"');
            for (const char *c = json_string_value(x); *c; c++) {
                if (*c == '"' || *c == '\\')
                    sl_buf_putc(out, '\\');
                sl_buf_putc(out, *c);
            }
            sl_buf_putc(out, '"');
        } else if (json_is_number(x) || json_is_boolean(x)) {
            char *t = json_dumps(x, JSON_ENCODE_ANY);
            sl_buf_puts(out, t ? t : "NULL");
            free(t);
        } else {
            return -1;
        }
    }
    sl_buf_putc(out, '}');
    return 0;
}

/* The text PostgreSQL takes for v in a column of type type (NUL-ended, in out), or NULL for SQL
 * NULL; -1 with why if it cannot be converted. */
static int text_of(const json_t *v, const char *type, struct sl_buf *out, const char *col,
                   char *why, size_t n)
{
    sl_buf_reset(out);
    if (!v || json_is_null(v))
        return 1; /* NULL */
    int is_json = !strncmp(type, "json", 4);
    if (is_json) {
        char *t = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
        sl_buf_puts(out, t ? t : "null");
        free(t);
    } else if (strstr(type, "[]") && json_is_array(v)) {
        if (array_of(v, out) < 0) {
            snprintf(why, n, "%s: an array of objects does not fit %s", col, type);
            return -1;
        }
    } else if (!strcmp(type, "bytea") && json_is_string(v)) {
        if (bytea_of(json_string_value(v), out) < 0) {
            snprintf(why, n, "%s: not base64 (bytea takes base64 text)", col);
            return -1;
        }
    } else if (!strncmp(type, "timestamp", 9) && json_is_integer(v)) {
        long long ms = json_integer_value(v);
        time_t secs = (time_t)(ms >= 0 ? ms / 1000 : (ms - 999) / 1000);
        struct tm tm;
        gmtime_r(&secs, &tm);
        sl_buf_printf(out, "%04d-%02d-%02d %02d:%02d:%02d.%03lld+00", tm.tm_year + 1900,
                      tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                      ms - (long long)secs * 1000);
    } else if (json_is_string(v)) {
        sl_buf_append(out, json_string_value(v), json_string_length(v));
    } else if (json_is_object(v) || json_is_array(v)) {
        snprintf(why, n, "%s: an %s does not fit %s", col, json_is_object(v) ? "object" : "array",
                 type);
        return -1;
    } else {
        char *t = json_dumps(v, JSON_ENCODE_ANY);
        sl_buf_puts(out, t ? t : "");
        free(t);
    }
    sl_buf_putc(out, 0);
    return out->failed ? (snprintf(why, n, "out of memory"), -1) : 0;
}

/* ---- records ---- */

/* What record r asks for: the row (a new reference) and whether it is a delete. 0, or -1 with
 * why (not a JSON object). */
static int row_of(const struct sl_rec *r, json_t **row, int *del, char *why, size_t n)
{
    const uint8_t *mp = r->payload;
    json_t *v = sl_mp_to_jansson(&mp, r->payload + r->payload_len, 128);
    *row = NULL;
    *del = 0;
    if (!json_is_object(v)) {
        json_decref(v);
        snprintf(why, n, "the payload is not a JSON object (a row needs one)");
        return -1;
    }
    const json_t *op = json_object_get(v, "op");
    if (json_is_string(op) && json_object_get(v, "source") &&
        (json_object_get(v, "after") || json_object_get(v, "before"))) { /* a CDC envelope */
        *del = !strcmp(json_string_value(op), "d");
        json_t *img = json_object_get(v, *del ? "before" : "after");
        *row = json_is_object(img) ? json_incref(img) : json_object();
        json_decref(v);
        return 0;
    }
    const json_t *d = json_object_get(v, "__deleted"); /* ExtractNewRecordState rewrite */
    *del = (json_is_string(d) && !strcmp(json_string_value(d), "true")) ||
           (r->flags & SL_REC_TOMBSTONE);
    json_object_del(v, "__deleted");
    *row = v;
    return 0;
}

/* Runs one statement with params; 0, or -1 with why and *sqlstate (class) filled. */
static int exec(struct pgsink *p, const char *sql, int n, const char *const *vals, char *why,
                size_t whylen, char *sqlstate)
{
    PGresult *r = PQexecParams(p->conn, sql, n, NULL, vals, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(r);
    int ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
    if (!ok) {
        const char *code = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        snprintf(sqlstate, 6, "%s", code ? code : "");
        snprintf(why, whylen, "PostgreSQL %s: %s", code ? code : "(no SQLSTATE)",
                 PQresultErrorMessage(r));
        for (char *c = why; *c; c++)
            if (*c == '\n')
                *c = ' ';
    }
    PQclear(r);
    return ok ? 0 : -1;
}

/* CREATE TABLE from the first row (auto.create). */
static int create_table(struct pgsink *p, const json_t *row, char *why, size_t n, char *state)
{
    struct sl_buf sql;
    sl_buf_init(&sql, 0);
    sl_buf_printf(&sql, "CREATE TABLE IF NOT EXISTS %s (", p->qtable);
    const char *k;
    json_t *v;
    int first = 1;
    json_object_foreach((json_t *)row, k, v)
    {
        sl_buf_puts(&sql, first ? "" : ", ");
        first = 0;
        quote_ident(&sql, k, strlen(k));
        sl_buf_puts(&sql, json_is_integer(v)                      ? " bigint"
                          : json_is_real(v)                       ? " double precision"
                          : json_is_boolean(v)                    ? " boolean"
                          : json_is_object(v) || json_is_array(v) ? " jsonb"
                                                                  : " text");
    }
    if (p->npk) {
        sl_buf_puts(&sql, ", PRIMARY KEY (");
        for (size_t i = 0; i < p->npk; i++) {
            sl_buf_puts(&sql, i ? ", " : "");
            quote_ident(&sql, p->pk[i], strlen(p->pk[i]));
        }
        sl_buf_putc(&sql, ')');
    }
    sl_buf_puts(&sql, ")");
    sl_buf_putc(&sql, 0);
    int rc = exec(p, (const char *)sql.data, 0, NULL, why, n, state);
    sl_buf_release(&sql);
    if (rc == 0)
        rc = load_cols(p, why, n) == 0 ? 0 : -1;
    return rc;
}

/* Rows waiting to go out as one multi-row INSERT: the same columns, no primary key twice (an
 * upsert may not touch one row twice in a statement). */
struct group {
    struct sl_buf names, sets, sig, pks, vals; /* vals: the parameters, NUL-ended, back to back */
    size_t *off;                               /* each parameter's offset in vals, or SIZE_MAX */
    size_t np, cap, ncols, rows, first;
};

static void group_reset(struct group *g)
{
    sl_buf_reset(&g->names);
    sl_buf_reset(&g->sets);
    sl_buf_reset(&g->sig);
    sl_buf_reset(&g->pks);
    sl_buf_reset(&g->vals);
    g->np = g->ncols = g->rows = 0;
}

static int add_param(struct group *g, const struct sl_buf *text, int null)
{
    if (g->np == g->cap) {
        size_t nc = g->cap ? g->cap * 2 : 256;
        size_t *o = realloc(g->off, nc * sizeof(*o));
        if (!o)
            return -1;
        g->off = o;
        g->cap = nc;
    }
    g->off[g->np++] = null ? SIZE_MAX : g->vals.len;
    if (!null)
        sl_buf_append(&g->vals, text->data, text->len); /* text_of NUL-ended it */
    return g->vals.failed ? -1 : 0;
}

/* COPY's text format of one value. */
static void copy_text(struct sl_buf *b, const char *s)
{
    for (; *s; s++) {
        char c = *s;
        if (c == '\\' || c == '\t' || c == '\n' || c == '\r') {
            sl_buf_putc(b, '\\');
            c = c == '\t' ? 't' : c == '\n' ? 'n' : c == '\r' ? 'r' : c;
        }
        sl_buf_putc(b, c);
    }
}

/* The ON CONFLICT clause of an upsert (nothing for insert.mode insert). */
static void on_conflict(const struct pgsink *p, const struct group *g, struct sl_buf *sql)
{
    if (!p->upsert || !p->npk)
        return;
    sl_buf_puts(sql, " ON CONFLICT (");
    for (size_t j = 0; j < p->npk; j++) {
        sl_buf_puts(sql, j ? ", " : "");
        quote_ident(sql, p->pk[j], strlen(p->pk[j]));
    }
    if (g->sets.len)
        sl_buf_printf(sql, ") DO UPDATE SET %.*s", (int)g->sets.len, (const char *)g->sets.data);
    else
        sl_buf_puts(sql, ") DO NOTHING");
}

/* Several rows: COPY into a temporary staging table shaped like the target, then one
 * INSERT ... SELECT (with the upsert's ON CONFLICT) and a TRUNCATE of the stage, all in the
 * batch's transaction. The group never holds a key twice, so the SELECT needs no DISTINCT.
 * 0 or -1 (why, state). */
static int flush_copy(struct pgsink *p, struct group *g, char *why, size_t whylen, char *state)
{
    struct sl_buf sql, data;
    sl_buf_init(&sql, 0);
    sl_buf_init(&data, 0);
    int rc = 0;
    if (!p->staged) {
        sl_buf_printf(&sql,
                      "CREATE TEMP TABLE IF NOT EXISTS sluice_stage (LIKE %s INCLUDING DEFAULTS)"
                      " ON COMMIT DELETE ROWS",
                      p->qtable);
        sl_buf_putc(&sql, 0);
        rc = exec(p, (const char *)sql.data, 0, NULL, why, whylen, state);
        p->staged = rc == 0;
        sl_buf_reset(&sql);
    }
    if (rc == 0) {
        sl_buf_printf(&sql, "COPY sluice_stage (%.*s) FROM STDIN", (int)g->names.len,
                      (const char *)g->names.data);
        sl_buf_putc(&sql, 0);
        PGresult *r = PQexec(p->conn, (const char *)sql.data);
        if (PQresultStatus(r) != PGRES_COPY_IN) {
            snprintf(why, whylen, "PostgreSQL: %s", PQresultErrorMessage(r));
            const char *code = PQresultErrorField(r, PG_DIAG_SQLSTATE);
            snprintf(state, 6, "%s", code ? code : "");
            rc = -1;
        }
        PQclear(r);
    }
    if (rc == 0) {
        for (size_t row = 0, k = 0; row < g->rows; row++) {
            for (size_t c = 0; c < g->ncols; c++, k++) {
                if (c)
                    sl_buf_putc(&data, '\t');
                if (g->off[k] == SIZE_MAX)
                    sl_buf_puts(&data, "\\N");
                else
                    copy_text(&data, (const char *)g->vals.data + g->off[k]);
            }
            sl_buf_putc(&data, '\n');
        }
        int ok =
            !data.failed && PQputCopyData(p->conn, (const char *)data.data, (int)data.len) == 1;
        ok = PQputCopyEnd(p->conn, ok ? NULL : "out of memory") == 1 && ok;
        PGresult *r;
        while ((r = PQgetResult(p->conn))) {
            if (PQresultStatus(r) != PGRES_COMMAND_OK) {
                const char *code = PQresultErrorField(r, PG_DIAG_SQLSTATE);
                snprintf(state, 6, "%s", code ? code : "");
                snprintf(why, whylen, "PostgreSQL %s: %s", code ? code : "",
                         PQresultErrorMessage(r));
                ok = 0;
            }
            PQclear(r);
        }
        rc = ok ? 0 : -1;
    }
    if (rc == 0) {
        sl_buf_reset(&sql);
        sl_buf_printf(&sql, "INSERT INTO %s (%.*s) SELECT %.*s FROM sluice_stage", p->qtable,
                      (int)g->names.len, (const char *)g->names.data, (int)g->names.len,
                      (const char *)g->names.data);
        on_conflict(p, g, &sql);
        sl_buf_puts(&sql, "; TRUNCATE sluice_stage");
        sl_buf_putc(&sql, 0);
        PGresult *r = PQexec(p->conn, (const char *)sql.data);
        if (PQresultStatus(r) != PGRES_COMMAND_OK) {
            const char *code = PQresultErrorField(r, PG_DIAG_SQLSTATE);
            snprintf(state, 6, "%s", code ? code : "");
            snprintf(why, whylen, "PostgreSQL %s: %s", code ? code : "", PQresultErrorMessage(r));
            rc = -1;
        }
        PQclear(r);
    }
    for (char *c = why; rc < 0 && *c; c++)
        if (*c == '\n')
            *c = ' ';
    sl_buf_release(&sql);
    sl_buf_release(&data);
    group_reset(g);
    return rc;
}

/* Sends the group's rows: one INSERT for one row, COPY + INSERT ... SELECT for several. 0 or -1
 * (why, state). */
static int flush_group(struct pgsink *p, struct group *g, char *why, size_t whylen, char *state)
{
    if (!g->rows)
        return 0;
    if (g->rows > 1)
        return flush_copy(p, g, why, whylen, state);
    struct sl_buf sql;
    sl_buf_init(&sql, 0);
    sl_buf_printf(&sql, "INSERT INTO %s (%.*s) VALUES ", p->qtable, (int)g->names.len,
                  (const char *)g->names.data);
    for (size_t r = 0, k = 1; r < g->rows; r++) {
        sl_buf_puts(&sql, r ? ",(" : "(");
        for (size_t c = 0; c < g->ncols; c++, k++)
            sl_buf_printf(&sql, "%s$%zu", c ? "," : "", k);
        sl_buf_putc(&sql, ')');
    }
    on_conflict(p, g, &sql);
    sl_buf_putc(&sql, 0);
    const char **params = malloc((g->np ? g->np : 1) * sizeof(*params));
    int rc = -1;
    if (params && !sql.failed) {
        for (size_t i = 0; i < g->np; i++)
            params[i] = g->off[i] == SIZE_MAX ? NULL : (const char *)g->vals.data + g->off[i];
        rc = exec(p, (const char *)sql.data, (int)g->np, params, why, whylen, state);
    } else {
        snprintf(why, whylen, "out of memory");
    }
    free(params);
    sl_buf_release(&sql);
    group_reset(g);
    return rc;
}

/* A DELETE of row's primary key. 0 or -1. */
static int delete_row(struct pgsink *p, const json_t *row, struct sl_buf *vals, char *why,
                      size_t whylen, char *state)
{
    if (!p->npk) {
        snprintf(why, whylen, "a delete needs pk.fields to find its row");
        return -1;
    }
    struct sl_buf sql;
    sl_buf_init(&sql, 0);
    sl_buf_printf(&sql, "DELETE FROM %s WHERE ", p->qtable);
    const char *params[64];
    int rc = 0;
    for (size_t k = 0; rc == 0 && k < p->npk; k++) {
        const struct col *c = col_of(p, p->pk[k]);
        if (!c) {
            snprintf(why, whylen, "pk.fields: %s is not a column of %s", p->pk[k], p->table);
            rc = -1;
            break;
        }
        int t = text_of(json_object_get(row, p->pk[k]), c->type, &vals[k], p->pk[k], why, whylen);
        if (t == 1)
            snprintf(why, whylen, "the delete has no value for %s", p->pk[k]);
        if (t != 0) {
            rc = -1;
            break;
        }
        sl_buf_puts(&sql, k ? " AND " : "");
        quote_ident(&sql, p->pk[k], strlen(p->pk[k]));
        sl_buf_printf(&sql, " = $%zu", k + 1);
        params[k] = (const char *)vals[k].data;
    }
    sl_buf_putc(&sql, 0);
    if (rc == 0)
        rc = exec(p, (const char *)sql.data, (int)p->npk, params, why, whylen, state);
    sl_buf_release(&sql);
    return rc;
}

/* Applies records [0, n) of recs in the current transaction: runs of rows with the same columns
 * go out as multi-row INSERTs (at most 65,535 parameters each), a delete as its own DELETE, in
 * record order. 0, or -1 with why, *bad (a record of the batch when the failure is the records'
 * — the first of the statement that failed —, n when it is not) and state. */
static int apply(struct pgsink *p, const struct sl_rec *recs, size_t n, size_t *bad, char *why,
                 size_t whylen, char *state)
{
    struct sl_buf text, vals[64];
    sl_buf_init(&text, 0);
    for (size_t i = 0; i < 64; i++)
        sl_buf_init(&vals[i], 0);
    struct group g = {0};
    sl_buf_init(&g.names, 0);
    sl_buf_init(&g.sets, 0);
    sl_buf_init(&g.sig, 0);
    sl_buf_init(&g.pks, 0);
    sl_buf_init(&g.vals, 0);
    int reloaded = 0;
    struct sl_buf sig, pkv, names, sets;
    sl_buf_init(&sig, 0);
    sl_buf_init(&pkv, 0);
    sl_buf_init(&names, 0);
    sl_buf_init(&sets, 0);
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        json_t *row;
        int del;
        *bad = i;
        state[0] = 0;
        if (row_of(&recs[i], &row, &del, why, whylen) < 0) {
            rc = -1;
            break;
        }
        if (!p->ncols && p->autocreate && create_table(p, row, why, whylen, state) < 0) {
            json_decref(row);
            *bad = n;
            rc = -1;
            break;
        }
        if (del) {
            *bad = g.rows ? g.first : i;
            rc = flush_group(p, &g, why, whylen, state);
            *bad = i;
            if (rc == 0)
                rc = delete_row(p, row, vals, why, whylen, state);
            json_decref(row);
            continue;
        }
        /* the row's columns (its signature), its primary key, and its values */
        sl_buf_reset(&sig);
        sl_buf_reset(&pkv);
        sl_buf_reset(&names);
        sl_buf_reset(&sets);
        size_t ncols = 0, start_np;
        const char *k;
        json_t *v;
        json_object_foreach(row, k, v)
        {
            if (!col_of(p, k) && !reloaded) { /* a column added since? once per batch */
                char w2[200];
                load_cols(p, w2, sizeof(w2));
                reloaded = 1;
            }
            if (!col_of(p, k)) {
                if (p->strict) {
                    snprintf(why, whylen, "%s: no such column in %s (fields.unknown error)", k,
                             p->table);
                    rc = -1;
                    break;
                }
                continue;
            }
            sl_buf_printf(&sig, "%s%c", k, 0x1f);
            sl_buf_puts(&names, ncols ? ", " : "");
            quote_ident(&names, k, strlen(k));
            int is_pk = 0;
            for (size_t j = 0; j < p->npk; j++)
                is_pk |= !strcmp(p->pk[j], k);
            if (is_pk) {
                char *pt = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
                sl_buf_printf(&pkv, "%s%c", pt ? pt : "", 0x1f);
                free(pt);
            } else {
                sl_buf_puts(&sets, sets.len ? ", " : "");
                quote_ident(&sets, k, strlen(k));
                sl_buf_puts(&sets, " = EXCLUDED.");
                quote_ident(&sets, k, strlen(k));
            }
            ncols++;
        }
        if (rc == 0 && !ncols) {
            snprintf(why, whylen, "no field of the record is a column of %s", p->table);
            rc = -1;
        }
        if (rc < 0) {
            json_decref(row);
            break;
        }
        sl_buf_putc(&pkv, 0x1e);
        int same = g.rows && g.sig.len == sig.len && !memcmp(g.sig.data, sig.data, sig.len) &&
                   g.np + ncols <= MAX_PARAMS;
        if (same && p->upsert && pkv.len > 1 && g.pks.len &&
            memmem(g.pks.data, g.pks.len, pkv.data, pkv.len)) /* that key is in the group */
            same = 0;
        if (!same) {
            *bad = g.first; /* a multi-row statement: one of its rows (isolation finds which) */
            if ((rc = flush_group(p, &g, why, whylen, state)) < 0) {
                json_decref(row);
                break;
            }
            sl_buf_append(&g.sig, sig.data, sig.len);
            sl_buf_append(&g.names, names.data, names.len);
            sl_buf_append(&g.sets, sets.data, sets.len);
            g.ncols = ncols;
            g.first = i;
        }
        *bad = i;
        start_np = g.np;
        json_object_foreach(row, k, v)
        {
            const struct col *c = col_of(p, k);
            if (!c)
                continue;
            int t = text_of(v, c->type, &text, k, why, whylen);
            if (t < 0 || add_param(&g, &text, t == 1) < 0) {
                if (t >= 0)
                    snprintf(why, whylen, "out of memory");
                g.np = start_np;
                rc = -1;
                break;
            }
        }
        json_decref(row);
        if (rc == 0) {
            sl_buf_append(&g.pks, pkv.data, pkv.len);
            g.rows++;
        }
    }
    if (rc == 0) {
        *bad = g.first;
        rc = flush_group(p, &g, why, whylen, state);
    }
    sl_buf_release(&text);
    for (size_t i = 0; i < 64; i++)
        sl_buf_release(&vals[i]);
    sl_buf_release(&g.names);
    sl_buf_release(&g.sets);
    sl_buf_release(&g.sig);
    sl_buf_release(&g.pks);
    sl_buf_release(&g.vals);
    free(g.off);
    sl_buf_release(&sig);
    sl_buf_release(&pkv);
    sl_buf_release(&names);
    sl_buf_release(&sets);
    return rc;
}

/* A data error (the rows' fault): 22 data exception, 23 integrity, 42703 undefined column,
 * 42804 datatype mismatch; "" = a record that could not be turned into SQL. */
static int data_error(const char *state)
{
    return !state[0] || !strncmp(state, "22", 2) || !strncmp(state, "23", 2) ||
           !strcmp(state, "42703") || !strcmp(state, "42804");
}

/* One transaction for recs[0, n): 0 committed, -1 failed (rolled back). */
static int txn(struct pgsink *p, const struct sl_rec *recs, size_t n, size_t *bad, char *why,
               size_t whylen, char *state)
{
    char ign[8];
    if (exec(p, "BEGIN", 0, NULL, why, whylen, state) < 0) {
        *bad = n;
        return -1;
    }
    int rc = apply(p, recs, n, bad, why, whylen, state);
    if (rc == 0) {
        *bad = n;
        rc = exec(p, "COMMIT", 0, NULL, why, whylen, state);
    }
    if (rc < 0) {
        char w2[64];
        exec(p, "ROLLBACK", 0, NULL, w2, sizeof(w2), ign);
        p->staged = 0; /* a stage created in this transaction is gone: IF NOT EXISTS next time */
        return -1;
    }
    return 0;
}

static enum sl_result ps_send(void *self, const struct sl_batch *b, struct sl_outcome *out)
{
    struct pgsink *p = self;
    char why[512] = "", state[8] = "";
    if (connect_db(p, why, sizeof(why)) < 0) {
        snprintf(out->error, sizeof(out->error), "%.250s", why);
        return SL_R_NOT_CONNECTED;
    }
    if (!p->ncols) {
        int rc = load_cols(p, why, sizeof(why));
        if (rc < 0 || (rc == 1 && !p->autocreate)) {
            snprintf(out->error, sizeof(out->error), "%.250s",
                     rc < 0 ? why : "the table does not exist (create it, or set auto.create)");
            return SL_R_RETRY;
        }
    }
    size_t bad;
    if (txn(p, b->recs, b->n, &bad, why, sizeof(why), state) == 0)
        return SL_R_OK;
    if (PQstatus(p->conn) != CONNECTION_OK) {
        snprintf(out->error, sizeof(out->error), "%.250s", why);
        return SL_R_NOT_CONNECTED;
    }
    if (!strcmp(state, "42703") || !strcmp(state, "42P01")) { /* the table changed */
        char w2[64], st2[8];
        load_cols(p, why + strlen(why), 0);
        exec(p, "DROP TABLE IF EXISTS sluice_stage", 0, NULL, w2, sizeof(w2), st2);
    }
    if (!data_error(state) || bad == b->n) {
        snprintf(out->error, sizeof(out->error), "%.250s", why);
        return SL_R_RETRY;
    }
    /* isolate: each record in its own transaction; the failing ones are refused */
    if (b->n > p->cap_reject) {
        size_t *r = realloc(p->reject, b->n * sizeof(*r));
        if (!r) {
            snprintf(out->error, sizeof(out->error), "out of memory");
            return SL_R_RETRY;
        }
        p->reject = r;
        p->cap_reject = b->n;
    }
    size_t nrej = 0;
    for (size_t i = 0; i < b->n; i++) {
        char w[512] = "", st[8] = "";
        if (txn(p, b->recs + i, 1, &bad, w, sizeof(w), st) == 0)
            continue;
        if (PQstatus(p->conn) != CONNECTION_OK || !data_error(st) || bad != 0) {
            /* committed for good: those before i, but a refused one must be sent again */
            out->accepted = nrej ? p->reject[0] : i;
            snprintf(out->error, sizeof(out->error), "%.250s", w);
            return SL_R_RETRY;
        }
        if (!nrej)
            snprintf(out->error, sizeof(out->error), "%.250s", w);
        p->reject[nrej++] = i;
    }
    if (!nrej)
        return SL_R_OK; /* the batch failed together but each record alone passed */
    out->reject = p->reject;
    out->n_reject = nrej;
    return SL_R_REJECT;
}

static const struct sl_sink_ops ps_ops = {
    .open = ps_open, .send = ps_send, .check = ps_check, .close = ps_close};

static const char *const ps_aliases[] = {"postgres-sink", NULL};

const struct sl_connector sl_conn_postgres_sink = {
    .abi = SL_CONNECTOR_ABI,
    .name = "postgres_sink",
    .aliases = ps_aliases,
    .direction = SL_OUTBOUND,
    .category = "database",
    .description = "Writes records as rows of a PostgreSQL table (insert or upsert, one "
                   "transaction per batch); CDC records apply their operation (a delete deletes).",
    .fields = f_pgsink,
    .normalize = ps_normalize,
    .check_config = ps_check_config,
    .sink = &ps_ops,
};
