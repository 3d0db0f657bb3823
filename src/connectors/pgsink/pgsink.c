/* The PostgreSQL sink (StreamHouse's `postgres-sink`, keys exactly): each record's payload (a
 * JSON object) becomes a row of `table.name`, its fields mapped to columns by name (the table's
 * columns are read from the catalog at open and again after a schema error) and converted to the
 * column's type (jsonb/json from objects and arrays, arrays of scalars, timestamptz from epoch ms
 * or ISO text, bytea from base64, numeric exact). Rows go in with COPY (encode.c writes its
 * text): straight into the table (insert.mode insert), or into a temp stage merged with
 * INSERT ... SELECT ... ON CONFLICT (pk.fields) DO UPDATE (upsert). The batches in flight stream
 * into the COPY of one transaction (below, ps_send); the framework's cursor moves after COMMIT.
 * CDC records (postgres_cdc's or datagen's envelope, or
 * rows unwrapped with ExtractNewRecordState's rewrite mode) apply their operation: a delete is
 * DELETE ... WHERE pk, anything else an upsert, so PostgreSQL -> Sluice -> PostgreSQL
 * replication works. A batch PostgreSQL refuses for a data reason (SQLSTATE classes 22, 23) is
 * sent again record by record, each in its own transaction, so only the rows at fault become dead
 * letters (with SQLSTATE and message); a lost connection is retried. */
#include "connectors/pgsink/pgsink.h"
#include "connectors/pg/cdc.h"
#include "core/buf.h"
#include "core/err.h"
#include "engine/kinds.h"

#include <libpq-fe.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

static void flight_release(struct ps_flight *f)
{
    free(f->reject);
    free(f->stored);
    free(f->map);
    free(f->recs);
    sl_buf_release(&f->bytes);
    ps_plan_release(&f->plan);
}

static void ps_close(void *self)
{
    struct pgsink *p = self;
    if (!p)
        return;
    ps_free_cols(p);
    if (p->conn)
        PQfinish(p->conn);
    for (int i = 0; i < PS_INFLIGHT; i++)
        flight_release(&p->fl[i]);
    free(p->memo.stored);
    free(p->reject);
    ps_hset_release(&p->gkeys);
    ps_hset_release(&p->txn_keys);
    sl_buf_release(&p->txn_names);
    free(p->params);
    sl_buf_release(&p->line);
    sl_buf_release(&p->key);
    sl_buf_release(&p->text);
    sl_buf_release(&p->json);
    sl_buf_release(&p->sqlbuf);
    sl_buf_release(&p->pstore);
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
    p->conn = sl_pg_connect(keys, vals, p->ctx->cancelled, p->ctx->arg, denied, sizeof(denied));
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
        ps_quote_ident(&q, p->table, (size_t)(dot - p->table));
        sl_buf_putc(&q, '.');
        ps_quote_ident(&q, dot + 1, strlen(dot + 1));
    } else {
        ps_quote_ident(&q, p->table, strlen(p->table));
    }
    snprintf(p->qtable, sizeof(p->qtable), "%.*s", (int)q.len, (const char *)q.data);
    sl_buf_release(&q);
    info->batch_max = (uint64_t)json_integer_value(json_object_get(cfg, "batch.size"));
    /* a transaction spans the batches in flight: about PS_TXN_ROWS rows, 2 batches at least */
    p->cap = PS_TXN_ROWS / (info->batch_max ? info->batch_max : 1);
    p->cap = p->cap < 2 ? 2 : p->cap > PS_INFLIGHT ? PS_INFLIGHT : p->cap;
    info->max_inflight = (unsigned)p->cap;
    p->params = calloc(PS_MAX_COLS, sizeof(*p->params));
    if (!p->params) {
        ps_close(p);
        return sl_err_set(err, SL_E_NOMEM, "out_of_memory", "out of memory");
    }
    sl_buf_init(&p->line, 0);
    sl_buf_init(&p->key, 0);
    sl_buf_init(&p->text, 0);
    sl_buf_init(&p->json, 0);
    sl_buf_init(&p->sqlbuf, 0);
    sl_buf_init(&p->pstore, 0);
    sl_buf_init(&p->txn_names, 0);
    *self = p;
    return 0;
}

/* The health check: a connection, and the table (or auto.create). */
static int ps_check(void *self, struct sl_err *err)
{
    struct pgsink *p = self;
    char why[400] = "";
    ps_idle(p);
    if (connect_db(p, why, sizeof(why)) < 0)
        return sl_err_set(err, SL_E_UNAVAIL, "unhealthy", "%s", why);
    int rc = ps_load_cols(p, why, sizeof(why));
    if (rc < 0)
        return sl_err_set(err, SL_E_UNAVAIL, "unhealthy", "%s", why);
    if (rc == 1 && !p->autocreate)
        return sl_err_set(err, SL_E_UNAVAIL, "unhealthy",
                          "table %s does not exist (create it, or set auto.create)", p->table);
    return 0;
}

/* ---- statements and their results ---- */

/* Keeps the first failure among the results of what is on the wire. */
static void take_result(struct pgsink *p, PGresult *r)
{
    ExecStatusType st = PQresultStatus(r);
    if (st == PGRES_COPY_IN) { /* not ours to feed: end it */
        PQputCopyEnd(p->conn, "unexpected COPY");
    } else if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK && !p->rfailed) {
        const char *code = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        p->rfailed = 1;
        snprintf(p->rstate, sizeof(p->rstate), "%s", code ? code : "");
        snprintf(p->rwhy, sizeof(p->rwhy), "PostgreSQL %s: %s", code ? code : "(no SQLSTATE)",
                 PQresultErrorMessage(r));
        for (char *c = p->rwhy; *c; c++)
            if (*c == '\n')
                *c = ' ';
    }
    PQclear(r);
}

static void sent_failed(struct pgsink *p)
{
    if (!p->rfailed) {
        p->rfailed = 1;
        p->rstate[0] = 0;
        snprintf(p->rwhy, sizeof(p->rwhy), "PostgreSQL: %s", PQerrorMessage(p->conn));
        for (char *c = p->rwhy; *c; c++)
            if (*c == '\n')
                *c = ' ';
    }
}

static void wait_results(struct pgsink *p)
{
    PGresult *r;
    while ((r = PQgetResult(p->conn)))
        take_result(p, r);
    if (PQstatus(p->conn) != CONNECTION_OK)
        sent_failed(p);
}

/* Sends sql, whose first COPY ... FROM STDIN then takes rows (put_rows, end_copy); statements
 * may follow it. 0, or -1: failed, every result read. */
static int start_copy(struct pgsink *p, const char *sql)
{
    if (!PQsendQuery(p->conn, sql)) {
        sent_failed(p);
        return -1;
    }
    PGresult *r;
    while ((r = PQgetResult(p->conn)) && PQresultStatus(r) != PGRES_COPY_IN)
        take_result(p, r);
    if (!r) { /* a statement before the COPY failed */
        sent_failed(p);
        return -1;
    }
    PQclear(r);
    return 0;
}

static void put_rows(struct pgsink *p, const uint8_t *data, size_t len)
{
    for (size_t off = 0; off < len;) { /* libpq takes an int length */
        size_t n = len - off < (1u << 30) ? len - off : (1u << 30);
        if (PQputCopyData(p->conn, (const char *)data + off, (int)n) != 1) {
            sent_failed(p);
            return;
        }
        off += n;
    }
}

static void end_copy(struct pgsink *p)
{
    if (PQputCopyEnd(p->conn, p->rfailed ? "could not send the rows" : NULL) != 1)
        sent_failed(p);
}

/* Runs a plan of several statements (deletes, other column sets) in one transaction, waiting
 * for each answer. 0, or -1 on a failure (p->rfailed, every result read; a transaction may be
 * open: rollback()). */
static int run_plan(struct pgsink *p, const struct ps_plan *pl)
{
    p->rfailed = 0;
    int multi = pl->n > 1, staged = 0;
    struct sl_buf *q = &p->sqlbuf;
    for (size_t i = 0; i < pl->n; i++) {
        const struct ps_step *s = &pl->steps[i];
        int last = i + 1 == pl->n;
        const char *sql = (const char *)pl->sql.data + s->sql_off;
        const uint8_t *data = pl->data.data + s->data_off;
        if (s->kind == ST_COPY) { /* BEGIN and COMMIT ride in the same query string */
            sl_buf_reset(q);
            sl_buf_puts(q, i == 0 ? "BEGIN; " : "");
            /* the stage is emptied at COMMIT (ON COMMIT DELETE ROWS); within one transaction
             * the second COPY into it empties it first */
            sl_buf_puts(q, p->upsert && staged ? "TRUNCATE sluice_stage; " : "");
            sl_buf_puts(q, sql);
            sl_buf_puts(q, last ? "; COMMIT" : "");
            sl_buf_putc(q, 0);
            staged = 1;
            if (q->failed) {
                snprintf(p->rwhy, sizeof(p->rwhy), "out of memory");
                p->rfailed = 1;
                return -1;
            }
            if (start_copy(p, (const char *)q->data) < 0)
                return -1;
            put_rows(p, data, s->data_len);
            end_copy(p);
        } else {
            if (i == 0 && multi) {
                if (!PQsendQuery(p->conn, "BEGIN")) {
                    sent_failed(p);
                    return -1;
                }
                wait_results(p);
                if (p->rfailed)
                    return -1;
            }
            size_t np =
                ps_params_of((const char *)data, s->data_len, &p->pstore, p->params, s->nparams);
            if (np != s->nparams ||
                !PQsendQueryParams(p->conn, sql, (int)np, NULL, p->params, NULL, NULL, 0)) {
                sent_failed(p);
                wait_results(p);
                return -1;
            }
            if (last && multi) {
                wait_results(p);
                if (p->rfailed)
                    return -1;
                if (!PQsendQuery(p->conn, "COMMIT")) {
                    sent_failed(p);
                    return -1;
                }
            }
        }
        wait_results(p);
        if (p->rfailed)
            return -1;
    }
    return 0;
}

static void rollback(struct pgsink *p)
{
    PGTransactionStatusType t = PQtransactionStatus(p->conn);
    if (t == PQTRANS_INTRANS || t == PQTRANS_INERROR)
        PQclear(PQexec(p->conn, "ROLLBACK"));
}

/* A data error (the rows' fault): 22 data exception, 23 integrity, 42703 undefined column,
 * 42804 datatype mismatch; "" = a record that could not be turned into SQL. */
static int data_error(const char *state)
{
    return !state[0] || !strncmp(state, "22", 2) || !strncmp(state, "23", 2) ||
           !strcmp(state, "42703") || !strcmp(state, "42804");
}

/* ---- batches: outcomes, isolation ---- */

static struct ps_flight *fl_at(struct pgsink *p, size_t i)
{
    return &p->fl[(p->head + i) % PS_INFLIGHT];
}

static void set_outcome(struct ps_flight *f, enum sl_result r, const char *why)
{
    f->r = r;
    f->done = 1;
    f->in_txn = 0;
    if (why)
        snprintf(f->error, sizeof(f->error), "%.250s", why);
}

static int add_reject(struct ps_flight *f, size_t i)
{
    if (f->nrej == f->cap_reject) {
        size_t nc = f->cap_reject ? f->cap_reject * 2 : 64;
        size_t *r = realloc(f->reject, nc * sizeof(*r));
        if (!r)
            return -1;
        f->reject = r;
        f->cap_reject = nc;
    }
    f->reject[f->nrej++] = i;
    return 0;
}

/* Remembers which records of f isolation stored. */
static void remember(struct pgsink *p, const struct ps_flight *f)
{
    struct ps_memo *m = &p->memo;
    size_t n = f->n_sent;
    if (n > m->cap) {
        uint8_t *r = realloc(m->stored, n);
        if (!r) {
            m->valid = 0;
            return;
        }
        m->stored = r;
        m->cap = n;
    }
    if (!m->valid || m->n != n || m->first_seq != f->recs[0].seq - f->map[0] ||
        strcmp(m->strand, f->strand))
        memset(m->stored, 0, n);
    for (size_t i = 0; i < f->n; i++)
        if (f->stored[i])
            m->stored[f->map[i]] = 1;
    snprintf(m->strand, sizeof(m->strand), "%s", f->strand);
    m->first_seq = f->recs[0].seq - f->map[0];
    m->n = n;
    m->valid = 1;
}

/* Each record of f in a transaction of its own (its own statement): the ones PostgreSQL
 * refuses for a data reason, or that cannot become SQL, are rejected; the others stored. */
static void isolate(struct pgsink *p, struct ps_flight *f)
{
    f->nrej = 0;
    f->accepted = 0;
    f->error[0] = 0;
    memset(f->stored, 0, f->n);
    for (size_t i = 0; i < f->n; i++) {
        char why[512] = "", state[8] = "";
        size_t bad;
        int rc = ps_encode(p, f->recs + i, 1, &f->plan, &bad, why, sizeof(why), state);
        if (rc == -1) { /* the record's fault */
            if (!f->nrej)
                snprintf(f->error, sizeof(f->error), "%.250s", why);
            if (add_reject(f, i) == 0)
                continue;
            rc = -2;
        }
        if (rc == 0 && run_plan(p, &f->plan) == 0) {
            f->stored[i] = 1;
            continue;
        }
        if (rc == 0) {
            rollback(p);
            snprintf(why, sizeof(why), "%s", p->rwhy);
            snprintf(state, sizeof(state), "%s", p->rstate);
        }
        if (rc == -2 || PQstatus(p->conn) != CONNECTION_OK || !data_error(state) ||
            add_reject(f, i) < 0) {
            /* stored for good: those before i, but a refused one must be sent again */
            f->accepted = f->nrej ? f->reject[0] : i;
            f->nrej = 0;
            set_outcome(f, PQstatus(p->conn) != CONNECTION_OK ? SL_R_NOT_CONNECTED : SL_R_RETRY,
                        why);
            remember(p, f);
            return;
        }
        if (f->nrej == 1)
            snprintf(f->error, sizeof(f->error), "%.250s", why);
    }
    set_outcome(f, f->nrej ? SL_R_REJECT : SL_R_OK, NULL); /* OK: failed together, each passed */
    remember(p, f);
}

/* After a failure (every result read, p->rfailed): 1 if the rows may be at fault, so that
 * they are tried one by one. */
static int after_failure(struct pgsink *p)
{
    if (PQstatus(p->conn) != CONNECTION_OK)
        return 0;
    rollback(p);
    if (!strcmp(p->rstate, "42703") || !strcmp(p->rstate, "42P01")) { /* the table changed */
        char w2[200];
        ps_load_cols(p, w2, sizeof(w2));
        PQclear(PQexec(p->conn, "DROP TABLE IF EXISTS sluice_stage"));
        p->staged = 0;
    }
    return data_error(p->rstate);
}

/* The outcome of the batches of the transaction on the wire, once it is answered. */
static void txn_done(struct pgsink *p)
{
    size_t n = p->txn_n;
    p->txn = p->copying = 0;
    p->txn_n = 0;
    ps_hset_clear(&p->txn_keys);
    int ok = !p->rfailed && PQstatus(p->conn) == CONNECTION_OK;
    int data = !ok && after_failure(p);
    enum sl_result r = ok                                   ? SL_R_OK
                       : PQstatus(p->conn) != CONNECTION_OK ? SL_R_NOT_CONNECTED
                                                            : SL_R_RETRY;
    char why[600];
    snprintf(why, sizeof(why), "%s%s", n > 1 && data ? "rolled back with other batches: " : "",
             p->rwhy);
    if (data && n > 1) /* each of them on its own next, to find the one at fault */
        p->solo = n;
    for (size_t i = 0; i < p->count; i++) {
        struct ps_flight *f = fl_at(p, i);
        if (!f->in_txn)
            continue;
        if (data && n == 1)
            isolate(p, f);
        else
            set_outcome(f, r, ok ? NULL : why);
    }
}

void ps_idle(struct pgsink *p)
{
    if (!p->txn)
        return;
    if (p->copying)
        end_copy(p);
    p->copying = 0;
    wait_results(p);
    txn_done(p);
}

/* Opens the transaction of f's rows: one query, BEGIN; COPY ... FROM STDIN; [the merge;]
 * COMMIT, whose COPY takes the rows of the batches that join it until end_copy(). */
static void txn_start(struct pgsink *p, struct ps_flight *f)
{
    const struct ps_step *s = &f->plan.steps[0];
    struct sl_buf *q = &p->sqlbuf;
    p->rfailed = 0;
    sl_buf_reset(q);
    sl_buf_printf(q, "BEGIN; %s; COMMIT", (const char *)f->plan.sql.data + s->copy_off);
    sl_buf_putc(q, 0);
    sl_buf_reset(&p->txn_names);
    sl_buf_puts(&p->txn_names, (const char *)f->plan.sql.data + s->names_off);
    p->txn = 1;
    p->txn_n = 1;
    p->txn_solo = p->solo > 0;
    if (p->solo)
        p->solo--;
    f->in_txn = 1;
    for (size_t i = 0; i < f->plan.nkeys; i++)
        if (f->plan.keys[i])
            ps_hset_add(&p->txn_keys, f->plan.keys[i]);
    if (q->failed || p->txn_names.failed || start_copy(p, (const char *)q->data) < 0) {
        if (!p->rfailed) {
            p->rfailed = 1;
            snprintf(p->rwhy, sizeof(p->rwhy), "out of memory");
        }
        txn_done(p);
        return;
    }
    p->copying = 1;
    put_rows(p, f->plan.data.data + s->data_off, s->data_len);
}

/* 1 if f's rows can go into the COPY on the wire: one statement with the same columns, and
 * (upserts) no key the transaction holds already. */
static int can_join(struct pgsink *p, const struct ps_flight *f)
{
    if (!p->txn || !p->copying || p->txn_solo || p->rfailed || p->txn_n >= p->cap ||
        f->plan.n != 1 || f->plan.steps[0].kind == ST_DELETE ||
        strcmp((const char *)p->txn_names.data,
               (const char *)f->plan.sql.data + f->plan.steps[0].names_off))
        return 0;
    for (size_t i = 0; i < f->plan.nkeys; i++)
        if (f->plan.keys[i] && ps_hset_has(&p->txn_keys, f->plan.keys[i]))
            return 0;
    for (size_t i = 0; i < f->plan.nkeys; i++)
        if (f->plan.keys[i] && ps_hset_add(&p->txn_keys, f->plan.keys[i]) < 0)
            return 0;
    return 1;
}

/* Copies the records of b (send() returns before the batch is answered), leaving out those
 * skip flags (stored already). */
static int copy_batch(struct ps_flight *f, const struct sl_batch *b, const uint8_t *skip)
{
    size_t total = 0;
    for (size_t i = 0; i < b->n; i++)
        total += b->recs[i].payload_len;
    if (b->n > f->cap_recs) {
        struct sl_rec *r = realloc(f->recs, b->n * sizeof(*r));
        uint8_t *st = r ? realloc(f->stored, b->n) : NULL;
        size_t *mp = st ? realloc(f->map, b->n * sizeof(*mp)) : NULL;
        if (r)
            f->recs = r;
        if (st)
            f->stored = st;
        if (!mp)
            return -1;
        f->map = mp;
        f->cap_recs = b->n;
    }
    sl_buf_reset(&f->bytes);
    if (sl_buf_reserve(&f->bytes, total + 1) < 0)
        return -1;
    size_t n = 0;
    for (size_t i = 0; i < b->n; i++) {
        if (skip && skip[i])
            continue;
        f->map[n] = i;
        f->recs[n] = b->recs[i];
        f->recs[n].source = NULL;
        f->recs[n].source_len = 0;
        f->recs[n].hash = NULL;
        f->recs[n].payload = f->bytes.data + f->bytes.len;
        sl_buf_append(&f->bytes, b->recs[i].payload, b->recs[i].payload_len);
        n++;
    }
    f->n = n;
    f->n_sent = b->n;
    snprintf(f->strand, sizeof(f->strand), "%s", b->strand ? b->strand : "");
    return 0;
}

/* A batch taken before f and not accepted: f must not be stored (it is sent again after it). */
static int before_failed(struct pgsink *p)
{
    for (size_t i = 0; i + 1 < p->count; i++)
        if (fl_at(p, i)->done && fl_at(p, i)->r != SL_R_OK)
            return 1;
    return 0;
}

/* send() takes the batch and returns QUEUED; flush() reports it. The batches sent while the
 * framework has more (up to max_inflight) stream into one COPY of one transaction, committed
 * when the framework waits for the oldest or has caught up (ready()); PostgreSQL parses the
 * rows while the next batch is encoded. A batch with deletes or several column sets is a
 * transaction of its own. */
static enum sl_result ps_send(void *self, const struct sl_batch *b, struct sl_outcome *out)
{
    struct pgsink *p = self;
    if (b->n == 0)
        return SL_R_OK;
    if (p->count == p->cap) { /* the framework keeps within max_inflight */
        snprintf(out->error, sizeof(out->error), "more batches than max_inflight");
        return SL_R_RETRY;
    }
    struct ps_flight *f = fl_at(p, p->count++);
    f->done = f->in_txn = 0;
    f->nrej = f->accepted = 0;
    f->error[0] = 0;
    /* the batch isolation stored part of, sent again: only the rest goes out */
    const struct ps_memo *m = &p->memo;
    int again = m->valid && m->n == b->n && m->first_seq == b->recs[0].seq &&
                !strcmp(m->strand, b->strand ? b->strand : "");
    if (copy_batch(f, b, again ? m->stored : NULL) < 0) {
        set_outcome(f, SL_R_RETRY, "out of memory");
        return SL_R_QUEUED;
    }
    if (!f->n) {
        set_outcome(f, SL_R_OK, NULL);
        return SL_R_QUEUED;
    }
    char why[512] = "", state[8] = "";
    size_t bad = 0;
    if (!p->conn || PQstatus(p->conn) != CONNECTION_OK) {
        ps_idle(p);
        if (connect_db(p, why, sizeof(why)) < 0) {
            set_outcome(f, SL_R_NOT_CONNECTED, why);
            return SL_R_QUEUED;
        }
    }
    int rc = ps_encode(p, f->recs, f->n, &f->plan, &bad, why, sizeof(why), state);
    if (rc == 0 && !before_failed(p) && can_join(p, f)) {
        f->in_txn = 1;
        p->txn_n++;
        put_rows(p, f->plan.data.data + f->plan.steps[0].data_off, f->plan.steps[0].data_len);
        return SL_R_QUEUED;
    }
    ps_idle(p); /* the transaction on the wire: committed, answered */
    if (before_failed(p)) {
        set_outcome(f, SL_R_RETRY, "not sent: a batch before it failed");
        return SL_R_QUEUED;
    }
    if (PQstatus(p->conn) != CONNECTION_OK) {
        if (connect_db(p, why, sizeof(why)) < 0) {
            set_outcome(f, SL_R_NOT_CONNECTED, why);
            return SL_R_QUEUED;
        }
        rc = ps_encode(p, f->recs, f->n, &f->plan, &bad, why, sizeof(why), state);
    }
    if (rc == -2) {
        set_outcome(f, PQstatus(p->conn) != CONNECTION_OK ? SL_R_NOT_CONNECTED : SL_R_RETRY, why);
        return SL_R_QUEUED;
    }
    if (p->upsert && !p->staged) { /* one stage per connection, emptied at each COMMIT */
        struct sl_buf q;
        sl_buf_init(&q, 0);
        sl_buf_printf(&q,
                      "CREATE TEMP TABLE IF NOT EXISTS sluice_stage (LIKE %s INCLUDING DEFAULTS)"
                      " ON COMMIT DELETE ROWS",
                      p->qtable);
        sl_buf_putc(&q, 0);
        p->staged = ps_exec(p, (const char *)q.data, 0, NULL, why, sizeof(why), state) == 0;
        sl_buf_release(&q);
        if (!p->staged) {
            set_outcome(f, PQstatus(p->conn) != CONNECTION_OK ? SL_R_NOT_CONNECTED : SL_R_RETRY,
                        why);
            return SL_R_QUEUED;
        }
    }
    if (rc == -1) { /* a record cannot become SQL: each on its own */
        isolate(p, f);
    } else if (f->plan.n == 1 && f->plan.steps[0].kind != ST_DELETE) {
        txn_start(p, f);
    } else if (run_plan(p, &f->plan) == 0) {
        set_outcome(f, SL_R_OK, NULL);
    } else if (after_failure(p)) {
        isolate(p, f);
    } else {
        set_outcome(f, PQstatus(p->conn) != CONNECTION_OK ? SL_R_NOT_CONNECTED : SL_R_RETRY,
                    p->rwhy);
    }
    return SL_R_QUEUED;
}

/* The oldest batch's outcome (committing its transaction and waiting for the answer if need
 * be). */
static enum sl_result ps_flush(void *self, struct sl_outcome *out)
{
    struct pgsink *p = self;
    if (!p->count)
        return SL_R_OK;
    struct ps_flight *f = fl_at(p, 0);
    if (!f->done)
        ps_idle(p);
    p->head = (p->head + 1) % PS_INFLIGHT;
    p->count--;
    /* indexes into the batch the framework sent (records stored before are left out of f) */
    snprintf(out->error, sizeof(out->error), "%s", f->error);
    out->accepted = f->accepted < f->n ? f->map[f->accepted] : f->n_sent;
    for (size_t i = 0; i < f->nrej; i++)
        f->reject[i] = f->map[f->reject[i]];
    if (f->r == SL_R_REJECT && f->nrej) {
        if (f->nrej > p->cap_reject) {
            size_t *r = realloc(p->reject, f->nrej * sizeof(*r));
            if (!r) {
                snprintf(out->error, sizeof(out->error), "out of memory");
                return SL_R_RETRY;
            }
            p->reject = r;
            p->cap_reject = f->nrej;
        }
        memcpy(p->reject, f->reject, f->nrej * sizeof(*f->reject));
        out->reject = p->reject;
        out->n_reject = f->nrej;
    }
    return f->r;
}

/* 1 once the oldest batch is answered (flush() will not wait). The framework asks when it has
 * nothing more to send: the COPY on the wire ends there and its transaction commits. */
static int ps_ready(void *self, int timeout_ms)
{
    struct pgsink *p = self;
    if (!p->count || fl_at(p, 0)->done || !p->txn)
        return 1;
    if (p->copying) {
        end_copy(p);
        p->copying = 0;
    }
    struct pollfd pfd = {.fd = PQsocket(p->conn), .events = POLLIN};
    if (!PQisBusy(p->conn) || poll(&pfd, 1, timeout_ms) != 0) {
        PQconsumeInput(p->conn);
        while (!PQisBusy(p->conn)) {
            PGresult *r = PQgetResult(p->conn);
            if (!r) {
                if (PQstatus(p->conn) != CONNECTION_OK)
                    sent_failed(p);
                txn_done(p);
                return 1;
            }
            take_result(p, r);
        }
    }
    return 0;
}

static const struct sl_sink_ops ps_ops = {.open = ps_open,
                                          .send = ps_send,
                                          .flush = ps_flush,
                                          .check = ps_check,
                                          .close = ps_close,
                                          .ready = ps_ready};

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
