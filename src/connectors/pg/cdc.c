/* The postgres_cdc worker. One session = connect, set up (publication, slot, snapshot), stream
 * until an error or a stop. Durability: a transaction's records are appended to the strand at
 * its Commit (or in chunks of CHUNK_BYTES before it, for big ones); the LSN confirmed to
 * PostgreSQL only moves past a transaction once its append's done() reported it fsynced.
 * Resume: every record carries (commit_lsn, tx_index); a new session reads the last record this
 * connector appended and skips the changes at or before that position, so the transactions
 * PostgreSQL resends from confirmed_flush_lsn are not written twice. */
#include "connectors/pg/cdc.h"

#include "connectors/pg/pgoutput.h"
#include "connectors/pg/values.h"
#include "core/buf.h"
#include "core/log.h"
#include "core/util.h"
#include "engine/meta.h"
#include "engine/registry.h"
#include "strand/store.h"

#include <ctype.h>
#include <fnmatch.h>
#include <libpq-fe.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CHUNK_BYTES (8u << 20)     /* a transaction is appended in batches of at most this */
#define INFLIGHT_BYTES (64u << 20) /* appended but not yet fsynced: the worker waits above */
#define SCAN_BACK 1000000u         /* records read back when no position is stored (older data) */
#define SEQ_KEY "@pg.last_seq"     /* meta cursor: 1 + seq of our last durable record */
#define SNAP_FETCH 5000            /* rows per FETCH during the snapshot */
#define SNAP_KEY "@pg.snapshot"    /* meta cursor: 1 = snapshot pending, 2 = done */
#define SLOT_BUSY_RETRY_MS 5000    /* "slot is active" is retried this long, then failed */
#define CREATED_KEY "@pg.created_" /* meta cursor "@pg.created_slot:<name>" = 1: Sluice made it */
#define CLEANUP_WAIT_MS 10000      /* a delete waits this long for the worker and the walsender */

enum { R_STOP, R_FATAL, R_RETRY, R_DONE };
enum { SNAP_INITIAL, SNAP_NEVER, SNAP_ONLY };

struct batch {
    struct sl_append a;
    struct cdc *c;
    struct sl_buf data;
    size_t n, cap;
    size_t *off;
    uint32_t *len, *flags;
    struct sl_append_rec *recs;
    uint8_t (*hashes)[SL_HASH_LEN];
    uint64_t end_lsn; /* the commit's end, 0 for a chunk in the middle of a transaction */
};

struct cdc {
    const struct sl_source_env *env;
    /* config */
    char slot[128], pub[128], strand_name[SL_STRAND_NAME_MAX + 1];
    int auto_slot, auto_pub, snap_mode;
    long long hb_ms;
    char **filters;
    size_t nfilters;
    int filter_globs;
    struct sl_strand *strand;
    int ever_connected;
    uint64_t busy_since_ns;
    char db[128];
    char err[600];
    /* decoding */
    struct sl_pgo_relcache rels;
    struct sl_pgo_event *ev;
    struct sl_buf tmp;
    int in_tx;
    uint64_t tx_commit_lsn;
    uint32_t tx_xid, tx_index;
    int64_t tx_ts_ms;
    struct batch *cur;
    uint64_t skip_lsn;
    int64_t skip_idx; /* -1: skip whole transactions with commit_lsn <= skip_lsn - 1 only */
    /* durability: shared with done() on the committer thread */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    size_t inflight_bytes;
    int inflight;
    uint64_t durable_lsn, empty_lsn, done_records;
    uint64_t last_seq1;      /* 1 + strand seq of our last durable record, 0 = none (under mu) */
    uint64_t persisted_seq1; /* last_seq1 as stored in meta (streaming thread only) */
    int append_failed;
    /* feedback */
    uint64_t received_lsn, sent_flush, wal_end;
    uint64_t last_status_ns, last_hb_ns;
    int streamed; /* the session reached START_REPLICATION: the next backoff starts small */
};

static int stopped(struct cdc *c)
{
    return c->env->stopped(c->env->arg);
}

static void seterr(struct cdc *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void seterr(struct cdc *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err, sizeof(c->err), fmt, ap);
    va_end(ap);
    size_t n = strlen(c->err); /* libpq messages end with a newline */
    while (n && (c->err[n - 1] == '\n' || c->err[n - 1] == ' '))
        c->err[--n] = 0;
}

/* ---- config ---- */

static const char *cstr(const json_t *cfg, const char *a, const char *b, const char *def)
{
    const char *v = json_string_value(json_object_get(cfg, a));
    if (!v && b)
        v = json_string_value(json_object_get(cfg, b));
    return v ? v : def;
}

static int cbool(const json_t *cfg, const char *key, int def)
{
    json_t *v = json_object_get(cfg, key);
    return v ? json_is_true(v) : def;
}

static const char *slot_name(const json_t *cfg)
{
    return cstr(cfg, "slot_name", "slot", "sluice_slot");
}

static const char *pub_name(const json_t *cfg)
{
    return cstr(cfg, "publication_name", "publication", "sluice_pub");
}

static void sanitize_strand(const char *db, char *out, size_t n)
{
    size_t k = (size_t)snprintf(out, n, "cdc.");
    for (const char *p = db; *p && k + 1 < n && k < SL_STRAND_NAME_MAX; p++) {
        char ch = (char)tolower((unsigned char)*p);
        out[k++] = (isalnum((unsigned char)ch) || ch == '.' || ch == '-' || ch == '_') ? ch : '_';
    }
    out[k] = 0;
}

void sl_pg_cdc_default_strand(const json_t *cfg, char *out, size_t n)
{
    const char *db = json_string_value(json_object_get(cfg, "database"));
    PQconninfoOption *opts = NULL;
    if (!db && cstr(cfg, "connection_string", NULL, NULL)) {
        opts = PQconninfoParse(cstr(cfg, "connection_string", NULL, NULL), NULL);
        for (PQconninfoOption *o = opts; o && o->keyword && !db; o++)
            if (strcmp(o->keyword, "dbname") == 0 && o->val && *o->val)
                db = o->val;
        for (PQconninfoOption *o = opts; o && o->keyword && !db; o++)
            if (strcmp(o->keyword, "user") == 0 && o->val && *o->val)
                db = o->val; /* libpq's default database is the user's name */
    }
    sanitize_strand(db ? db : "postgres", out, n);
    PQconninfoFree(opts);
}

static void add_filter(struct cdc *c, const char *s, size_t len)
{
    while (len && isspace((unsigned char)*s))
        s++, len--;
    while (len && isspace((unsigned char)s[len - 1]))
        len--;
    if (!len)
        return;
    char **v = realloc(c->filters, (c->nfilters + 1) * sizeof(*v));
    if (!v)
        return;
    c->filters = v;
    int dotted = memchr(s, '.', len) != NULL;
    size_t sz = len + 8;
    char *f = malloc(sz);
    if (!f)
        return;
    snprintf(f, sz, "%s%.*s", dotted ? "" : "public.", (int)len, s);
    c->filters[c->nfilters++] = f;
    if (strpbrk(f, "*?["))
        c->filter_globs = 1;
}

static int load_config(struct cdc *c)
{
    const json_t *cfg = c->env->config;
    snprintf(c->slot, sizeof(c->slot), "%s", slot_name(cfg));
    snprintf(c->pub, sizeof(c->pub), "%s", pub_name(cfg));
    c->auto_slot = cbool(cfg, "auto_create_slot", 1);
    c->auto_pub = cbool(cfg, "auto_create_publication", 1);
    const char *sm = cstr(cfg, "snapshot_mode", NULL, "initial");
    c->snap_mode = strcmp(sm, "never") == 0          ? SNAP_NEVER
                   : strcmp(sm, "initial_only") == 0 ? SNAP_ONLY
                                                     : SNAP_INITIAL;
    json_t *hb = json_object_get(cfg, "heartbeat_interval_ms");
    c->hb_ms = hb ? json_integer_value(hb) : 10000;
    if (c->hb_ms <= 0)
        c->hb_ms = 10000;
    const char *tf = cstr(cfg, "table_filter", NULL, NULL);
    for (const char *p = tf; p && *p;) {
        size_t len = strcspn(p, ",");
        add_filter(c, p, len);
        p += len + (p[len] == ',');
    }
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(cfg, "publication_tables"), i, e)
        add_filter(c, json_string_value(e), json_string_length(e));
    const char *st = cstr(cfg, "strand", NULL, NULL);
    if (st)
        snprintf(c->strand_name, sizeof(c->strand_name), "%s", st);
    else
        sl_pg_cdc_default_strand(cfg, c->strand_name, sizeof(c->strand_name));
    struct sl_err err = {0};
    if (sl_store_strand(c->env->store, c->strand_name, strlen(c->strand_name), 1, &c->strand,
                        &err) < 0) {
        seterr(c, "strand %s: %s", c->strand_name, err.msg);
        return -1;
    }
    return 0;
}

static int captured(const struct cdc *c, const char *nsp, const char *rel)
{
    if (!c->nfilters)
        return 1;
    char full[512];
    snprintf(full, sizeof(full), "%s.%s", nsp, rel);
    for (size_t i = 0; i < c->nfilters; i++)
        if (fnmatch(c->filters[i], full, 0) == 0)
            return 1;
    return 0;
}

/* ---- connections and errors ---- */

/* Connects with the config's connection settings; on failure writes libpq's reason to why. */
static PGconn *connect_cfg(const json_t *cfg, int replication, char *why, size_t whylen)
{
    const char *keys[16], *vals[16];
    int n = 0;
    char port[16];
    const char *cs = cstr(cfg, "connection_string", NULL, NULL);
    if (cs) {
        keys[n] = "dbname", vals[n++] = cs;
    } else {
        json_t *p = json_object_get(cfg, "port");
        snprintf(port, sizeof(port), "%lld", p ? (long long)json_integer_value(p) : 5432LL);
        keys[n] = "host", vals[n++] = cstr(cfg, "host", NULL, "localhost");
        keys[n] = "port", vals[n++] = port;
        keys[n] = "dbname", vals[n++] = cstr(cfg, "database", NULL, "postgres");
        if (cstr(cfg, "user", NULL, NULL))
            keys[n] = "user", vals[n++] = cstr(cfg, "user", NULL, NULL);
        if (cstr(cfg, "password", NULL, NULL))
            keys[n] = "password", vals[n++] = cstr(cfg, "password", NULL, NULL);
        const char *tls = json_string_value(json_object_get(json_object_get(cfg, "tls"), "mode"));
        keys[n] = "sslmode", vals[n++] = tls ? tls : "prefer";
    }
    if (replication)
        keys[n] = "replication", vals[n++] = "database";
    keys[n] = "options", vals[n++] = "-c TimeZone=UTC -c DateStyle=ISO -c bytea_output=hex "
                                     "-c IntervalStyle=postgres -c extra_float_digits=3";
    keys[n] = "application_name", vals[n++] = "sluice";
    keys[n] = "connect_timeout", vals[n++] = "5";
    keys[n] = NULL, vals[n] = NULL;
    PGconn *conn = PQconnectdbParams(keys, vals, 1);
    if (!conn || PQstatus(conn) != CONNECTION_OK) {
        snprintf(why, whylen, "%s", conn ? PQerrorMessage(conn) : "out of memory");
        PQfinish(conn);
        return NULL;
    }
    return conn;
}

static PGconn *connect_pg(struct cdc *c, int replication)
{
    char why[sizeof(c->err)];
    PGconn *conn = connect_cfg(c->env->config, replication, why, sizeof(why));
    if (!conn)
        seterr(c, "cannot connect to PostgreSQL: %s", why);
    return conn;
}

/* What an error means for the connector: retry (connection trouble, server shutting down or
 * starting, slot briefly busy) or fail (bad config, missing permission or object). */
static int classify(struct cdc *c, const PGresult *res, PGconn *conn)
{
    const char *st = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    if (!st || (conn && PQstatus(conn) == CONNECTION_BAD))
        return c->ever_connected ? R_RETRY : R_FATAL;
    if (strcmp(st, "55006") == 0) { /* object_in_use: the slot is active elsewhere */
        uint64_t now = sl_mono_ns();
        if (!c->busy_since_ns)
            c->busy_since_ns = now;
        return now - c->busy_since_ns < SLOT_BUSY_RETRY_MS * 1000000ull ? R_RETRY : R_FATAL;
    }
    if (!strncmp(st, "08", 2) || !strncmp(st, "57", 2) || !strncmp(st, "53", 2) ||
        !strncmp(st, "58", 2) || !strncmp(st, "40", 2))
        return R_RETRY;
    return R_FATAL;
}

/* Runs sql; on failure sets c->err ("what: message") and returns NULL with *rc classified. */
static PGresult *run(struct cdc *c, PGconn *conn, const char *sql, ExecStatusType want,
                     const char *what, int *rc)
{
    PGresult *res = PQexec(conn, sql);
    if (res && PQresultStatus(res) == want)
        return res;
    seterr(c, "%s: %s", what, res ? PQresultErrorMessage(res) : PQerrorMessage(conn));
    *rc = classify(c, res, conn);
    PQclear(res);
    return NULL;
}

/* run() of sql_fmt with its one %s replaced by value as an escaped string literal. */
static PGresult *run_lit(struct cdc *c, PGconn *conn, const char *sql_fmt, const char *value,
                         ExecStatusType want, const char *what, int *rc)
{
    char q[1024];
    char *lit = PQescapeLiteral(conn, value, strlen(value));
    snprintf(q, sizeof(q), sql_fmt, lit ? lit : "''");
    PQfreemem(lit);
    return run(c, conn, q, want, what, rc);
}

/* Records in meta that this connector created the slot or publication name ("slot", "pub"), so
 * that deleting the connector drops it, and only it (sl_pg_cdc_cleanup). */
static void mark_created(struct cdc *c, const char *what, const char *name)
{
    char key[256];
    snprintf(key, sizeof(key), CREATED_KEY "%s:%s", what, name);
    struct sl_err err = {0};
    if (sl_meta_set_cursor(c->env->meta, c->env->id, key, 1, &err) != 0)
        sl_warn("connector %s: cannot record that it created %s %s (%s); deleting the connector "
                "will leave it on the server",
                c->env->id, what, name, err.msg);
}

/* ---- appending ---- */

static void batch_free(struct batch *b)
{
    if (!b)
        return;
    sl_buf_release(&b->data);
    free(b->off);
    free(b->len);
    free(b->flags);
    free(b->recs);
    free(b->hashes);
    free(b);
}

static struct batch *batch_new(struct cdc *c)
{
    struct batch *b = calloc(1, sizeof(*b));
    if (b) {
        b->c = c;
        sl_buf_init(&b->data, 0);
    }
    return b;
}

/* Adds the payload in c->tmp as one record of the current batch. */
static int batch_add(struct cdc *c, uint32_t flags)
{
    if (!c->cur && !(c->cur = batch_new(c)))
        return -1;
    struct batch *b = c->cur;
    if (b->n == b->cap) {
        size_t nc = b->cap ? b->cap * 2 : 64;
        size_t *off = realloc(b->off, nc * sizeof(*off));
        if (off)
            b->off = off;
        uint32_t *len = realloc(b->len, nc * sizeof(*len));
        if (len)
            b->len = len;
        uint32_t *fl = realloc(b->flags, nc * sizeof(*fl));
        if (fl)
            b->flags = fl;
        if (!off || !len || !fl)
            return -1;
        b->cap = nc;
    }
    b->off[b->n] = b->data.len;
    b->len[b->n] = (uint32_t)c->tmp.len;
    b->flags[b->n] = flags;
    if (sl_buf_append(&b->data, c->tmp.data, c->tmp.len) < 0)
        return -1;
    b->n++;
    return 0;
}

static void on_durable(struct sl_append *a)
{
    struct batch *b = a->arg;
    struct cdc *c = b->c;
    pthread_mutex_lock(&c->mu);
    if (a->status != 0) {
        c->append_failed = 1;
    } else {
        if (b->end_lsn > c->durable_lsn)
            c->durable_lsn = b->end_lsn;
        c->done_records += b->n;
        if (b->n && a->first_seq + b->n > c->last_seq1)
            c->last_seq1 = a->first_seq + b->n;
    }
    c->inflight--;
    c->inflight_bytes -= b->data.len;
    if (c->inflight == 0 && !c->append_failed && c->empty_lsn > c->durable_lsn)
        c->durable_lsn = c->empty_lsn;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
    batch_free(b);
}

/* Hands the current batch to the strand's committer; end_lsn confirms a commit (0 = a chunk).
 * A commit with no captured change only moves the confirmable LSN (after what is in flight). */
static int flush_batch(struct cdc *c, uint64_t end_lsn)
{
    struct batch *b = c->cur;
    c->cur = NULL;
    if (!b || b->n == 0) {
        batch_free(b);
        pthread_mutex_lock(&c->mu);
        if (end_lsn > c->empty_lsn)
            c->empty_lsn = end_lsn;
        if (c->inflight == 0 && !c->append_failed && c->empty_lsn > c->durable_lsn)
            c->durable_lsn = c->empty_lsn;
        pthread_mutex_unlock(&c->mu);
        return 0;
    }
    b->end_lsn = end_lsn;
    b->recs = calloc(b->n, sizeof(*b->recs));
    b->hashes = calloc(b->n, sizeof(*b->hashes));
    if (!b->recs || !b->hashes || b->data.failed) {
        batch_free(b);
        seterr(c, "out of memory buffering a transaction");
        return -1;
    }
    for (size_t i = 0; i < b->n; i++) {
        b->recs[i].payload = b->data.data + b->off[i];
        b->recs[i].payload_len = b->len[i];
        b->recs[i].source = c->env->id;
        b->recs[i].source_len = (uint16_t)strlen(c->env->id);
        b->recs[i].flags = b->flags[i];
    }
    b->a.recs = b->recs;
    b->a.n = b->n;
    b->a.hashes = b->hashes;
    b->a.done = on_durable;
    b->a.arg = b;
    pthread_mutex_lock(&c->mu);
    while (c->inflight_bytes > INFLIGHT_BYTES && !c->append_failed)
        pthread_cond_wait(&c->cv, &c->mu);
    c->inflight++;
    c->inflight_bytes += b->data.len;
    pthread_mutex_unlock(&c->mu);
    struct sl_err err = {0};
    size_t bytes = b->data.len;
    if (sl_strand_submit(c->strand, &b->a, &err) != 0) {
        pthread_mutex_lock(&c->mu);
        c->inflight--;
        c->inflight_bytes -= bytes;
        c->append_failed = 1;
        pthread_mutex_unlock(&c->mu);
        batch_free(b);
        seterr(c, "strand %s: %s", c->strand_name, err.msg);
        return -1;
    }
    return 0;
}

/* Waits until every submitted batch is durable (or failed). */
static void drain(struct cdc *c)
{
    pthread_mutex_lock(&c->mu);
    while (c->inflight > 0)
        pthread_cond_wait(&c->cv, &c->mu);
    pthread_mutex_unlock(&c->mu);
}

static void note_done(struct cdc *c)
{
    pthread_mutex_lock(&c->mu);
    uint64_t n = c->done_records;
    c->done_records = 0;
    pthread_mutex_unlock(&c->mu);
    uint64_t now = sl_now_ms();
    for (uint64_t i = 0; i < n; i++)
        sl_registry_note_event(c->env->reg, c->env->id, now);
}

/* The resume position: (commit_lsn, tx_index) of the last record this connector appended. It
 * is found by reading back from the head to the seq stored in meta (which lags the strand by at
 * most one status interval, so the scan is short however busy other writers of the strand are);
 * without a stored seq (data from before it was kept), at most SCAN_BACK records are read. */
static void find_position(struct cdc *c)
{
    c->skip_lsn = 0;
    c->skip_idx = -1;
    uint64_t count = sl_strand_count(c->strand), stored = 0, floor = 0;
    if (sl_meta_get_cursor(c->env->meta, c->env->id, SEQ_KEY, &stored) == 0 && stored > 0 &&
        stored <= count)
        floor = stored - 1;
    else
        floor = count > SCAN_BACK ? count - SCAN_BACK : 0;
    c->last_seq1 = c->persisted_seq1 = stored <= count ? stored : 0;
    size_t idlen = strlen(c->env->id);
    for (uint64_t seq = count; seq-- > floor;) {
        struct sl_record r;
        if (sl_strand_read(c->strand, seq, &r) != 0)
            return;
        if (r.source_len != idlen || memcmp(r.source, c->env->id, idlen) != 0)
            continue;
        uint64_t lsn;
        uint32_t idx;
        if (sl_pg_envelope_position(r.payload, r.payload_len, &lsn, &idx) == 0) {
            c->skip_lsn = lsn;
            c->skip_idx = idx;
        }
        return; /* a snapshot row (position -1) or a change */
    }
}

/* Stores where our last durable record is (see find_position). Streaming thread. */
static void persist_position(struct cdc *c)
{
    pthread_mutex_lock(&c->mu);
    uint64_t v = c->last_seq1;
    pthread_mutex_unlock(&c->mu);
    if (v != c->persisted_seq1 &&
        sl_meta_set_cursor(c->env->meta, c->env->id, SEQ_KEY, v, NULL) == 0)
        c->persisted_seq1 = v;
}

/* ---- streaming ---- */

static int64_t pg_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return ((int64_t)ts.tv_sec - 946684800LL) * 1000000LL + ts.tv_nsec / 1000;
}

static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (56 - 8 * i));
}

static uint64_t get64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | p[i];
    return v;
}

/* Standby status update: write/flush/apply positions. flush only covers fsynced changes. */
static int send_status(struct cdc *c, PGconn *conn, int reply)
{
    pthread_mutex_lock(&c->mu);
    uint64_t flush = c->durable_lsn;
    pthread_mutex_unlock(&c->mu);
    uint8_t m[34];
    m[0] = 'r';
    put64(m + 1, c->received_lsn > flush ? c->received_lsn : flush);
    put64(m + 9, flush);
    put64(m + 17, flush);
    put64(m + 25, (uint64_t)pg_now_us());
    m[33] = (uint8_t)reply;
    if (PQputCopyData(conn, (const char *)m, sizeof(m)) != 1 || PQflush(conn) != 0) {
        seterr(c, "replication connection: %s", PQerrorMessage(conn));
        return -1;
    }
    persist_position(c);
    c->sent_flush = flush;
    c->last_status_ns = sl_mono_ns();
    sl_registry_set_lag(c->env->reg, c->env->id, c->wal_end > flush ? c->wal_end - flush : 0);
    return 0;
}

/* Appends the envelope of one change to the current batch, unless it is at or before the
 * resume position. */
static int emit(struct cdc *c, char op, const struct sl_pgo_rel *rel,
                const struct sl_pgo_tuple *before, int key_only, const struct sl_pgo_tuple *after,
                uint64_t lsn, uint32_t flags)
{
    uint32_t idx = c->tx_index++;
    if (c->tx_commit_lsn < c->skip_lsn ||
        (c->tx_commit_lsn == c->skip_lsn && (int64_t)idx <= c->skip_idx))
        return 0; /* already in the strand */
    struct sl_pg_source src = {.db = c->db,
                               .lsn = lsn,
                               .commit_lsn = c->tx_commit_lsn,
                               .tx_index = idx,
                               .txid = c->tx_xid,
                               .commit_ts_ms = c->tx_ts_ms};
    sl_buf_reset(&c->tmp);
    if (sl_pg_envelope_mp(&c->tmp, op, rel, before, key_only, after, &src, sl_now_ms()) < 0 ||
        batch_add(c, flags) < 0) {
        seterr(c, "out of memory encoding a change");
        return -1;
    }
    if (c->cur->data.len >= CHUNK_BYTES)
        return flush_batch(c, 0);
    return 0;
}

static int handle_change(struct cdc *c, uint64_t lsn)
{
    struct sl_pgo_event *ev = c->ev;
    if (ev->type == SL_PGO_TRUNCATE) {
        for (uint32_t i = 0; i < ev->u.truncate.nrels; i++) {
            struct sl_pgo_rel *rel = sl_pgo_relcache_get(&c->rels, sl_pgo_truncate_relid(ev, i));
            if (rel && rel->captured && emit(c, 't', rel, NULL, 0, NULL, lsn, 0) < 0)
                return -1;
        }
        return 0;
    }
    struct sl_pgo_rel *rel = sl_pgo_relcache_get(&c->rels, ev->u.change.relid);
    if (!rel) {
        seterr(c, "pgoutput: change for relation %u before its Relation message",
               ev->u.change.relid);
        return -1;
    }
    if (!rel->captured)
        return 0;
    const struct sl_pgo_tuple *old = ev->u.change.old_kind ? &ev->u.change.old_tup : NULL;
    int key_only = ev->u.change.old_kind == 'K';
    switch (ev->type) {
    case SL_PGO_INSERT:
        return emit(c, 'c', rel, NULL, 0, &ev->u.change.new_tup, lsn, 0);
    case SL_PGO_UPDATE:
        return emit(c, 'u', rel, old, key_only, &ev->u.change.new_tup, lsn, 0);
    default:
        return emit(c, 'd', rel, old, key_only, NULL, lsn, SL_FLAG_TOMBSTONE);
    }
}

/* One XLogData payload. */
static int handle_xlog(struct cdc *c, const uint8_t *p, size_t n, uint64_t lsn)
{
    struct sl_pgo_event *ev = c->ev;
    const char *why;
    if (sl_pgo_parse(p, n, ev, &why) < 0) {
        seterr(c, "pgoutput: %s (message '%c' at %llx)", why, n ? p[0] : '?',
               (unsigned long long)lsn);
        return -1;
    }
    switch (ev->type) {
    case SL_PGO_BEGIN:
        c->in_tx = 1;
        c->tx_commit_lsn = ev->u.begin.final_lsn;
        c->tx_xid = ev->u.begin.xid;
        c->tx_ts_ms = sl_pg_ts_to_unix_ms(ev->u.begin.commit_ts_us);
        c->tx_index = 0;
        return 0;
    case SL_PGO_COMMIT:
        c->in_tx = 0;
        return flush_batch(c, ev->u.commit.end_lsn);
    case SL_PGO_RELATION: {
        struct sl_pgo_rel *rel = sl_pgo_relcache_put(&c->rels, ev);
        if (!rel) {
            seterr(c, "out of memory caching a relation");
            return -1;
        }
        rel->captured = captured(c, rel->nspname, rel->relname);
        return 0;
    }
    case SL_PGO_INSERT:
    case SL_PGO_UPDATE:
    case SL_PGO_DELETE:
    case SL_PGO_TRUNCATE:
        return handle_change(c, lsn);
    default: /* Type, Origin, Message: nothing to write */
        return 0;
    }
}

static int stream(struct cdc *c, PGconn *conn)
{
    c->last_hb_ns = sl_mono_ns();
    for (;;) {
        if (stopped(c))
            return R_STOP;
        note_done(c);
        pthread_mutex_lock(&c->mu);
        int failed = c->append_failed;
        uint64_t durable = c->durable_lsn;
        pthread_mutex_unlock(&c->mu);
        if (failed) {
            seterr(c, "appending to strand %s failed", c->strand_name);
            return R_RETRY;
        }
        uint64_t now = sl_mono_ns();
        int hb = now - c->last_hb_ns >= (uint64_t)c->hb_ms * 1000000u;
        if (hb)
            c->last_hb_ns = now;
        if ((durable > c->sent_flush && now - c->last_status_ns >= 10000000u) || hb)
            if (send_status(c, conn, hb) < 0)
                return R_RETRY;
        char *buf = NULL;
        int r = PQgetCopyData(conn, &buf, 1);
        if (r > 0) {
            const uint8_t *m = (const uint8_t *)buf;
            int rc = 0;
            if (m[0] == 'w' && r >= 25) {
                uint64_t start = get64(m + 1), end = get64(m + 9);
                if (start > c->received_lsn)
                    c->received_lsn = start;
                if (end > c->wal_end)
                    c->wal_end = end;
                rc = handle_xlog(c, m + 25, (size_t)r - 25, start);
            } else if (m[0] == 'k' && r >= 18) {
                uint64_t end = get64(m + 1);
                if (end > c->wal_end)
                    c->wal_end = end;
                /* nothing of ours pending: everything up to the server's position is done */
                pthread_mutex_lock(&c->mu);
                int idle = !c->in_tx && !c->cur && c->inflight == 0 && !c->append_failed;
                if (idle && end > c->durable_lsn)
                    c->durable_lsn = end;
                pthread_mutex_unlock(&c->mu);
                if ((m[17] || (idle && c->durable_lsn > c->sent_flush)) &&
                    send_status(c, conn, 0) < 0)
                    rc = -1;
            }
            PQfreemem(buf);
            if (rc < 0)
                return R_RETRY;
            continue;
        }
        if (r == 0) {
            struct pollfd pfd = {.fd = PQsocket(conn), .events = POLLIN};
            poll(&pfd, 1, 20);
            if (PQconsumeInput(conn) == 0) {
                seterr(c, "replication connection lost: %s", PQerrorMessage(conn));
                return R_RETRY;
            }
            continue;
        }
        PGresult *res = PQgetResult(conn);
        const char *why =
            res && PQresultErrorMessage(res)[0] ? PQresultErrorMessage(res) : PQerrorMessage(conn);
        seterr(c, "replication stream ended: %s", why[0] ? why : "the server closed it");
        int rc =
            res && PQresultErrorField(res, PG_DIAG_SQLSTATE) ? classify(c, res, conn) : R_RETRY;
        PQclear(res);
        return rc;
    }
}

/* ---- snapshot ---- */

/* Reads every captured table of the publication inside the exported snapshot, as op "r"
 * records; returns R_* (R_DONE = complete and durable). */
static int snapshot(struct cdc *c, PGconn *sql, const char *snap_name, uint64_t point)
{
    int rc = R_FATAL;
    char q[1024];
    PGresult *res = run(c, sql, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", PGRES_COMMAND_OK,
                        "snapshot", &rc);
    if (!res)
        return rc;
    PQclear(res);
    if (!(res = run_lit(c, sql, "SET TRANSACTION SNAPSHOT %s", snap_name, PGRES_COMMAND_OK,
                        "snapshot", &rc)))
        return rc;
    PQclear(res);
    PGresult *tables = run_lit(c, sql,
                               "SELECT schemaname, tablename FROM pg_publication_tables "
                               "WHERE pubname = %s ORDER BY 1, 2",
                               c->pub, PGRES_TUPLES_OK, "snapshot: list tables", &rc);
    if (!tables)
        return rc;
    uint32_t index = 0;
    int64_t now_ms = (int64_t)sl_now_ms();
    rc = R_DONE;
    for (int t = 0; t < PQntuples(tables) && rc == R_DONE; t++) {
        const char *nsp = PQgetvalue(tables, t, 0), *tab = PQgetvalue(tables, t, 1);
        if (!captured(c, nsp, tab))
            continue;
        char *qn = PQescapeIdentifier(sql, nsp, strlen(nsp));
        char *qt = PQescapeIdentifier(sql, tab, strlen(tab));
        snprintf(q, sizeof(q), "DECLARE sluice_snap NO SCROLL CURSOR FOR SELECT * FROM %s.%s",
                 qn ? qn : "\"\"", qt ? qt : "\"\"");
        PQfreemem(qn);
        PQfreemem(qt);
        if (!(res = run(c, sql, q, PGRES_COMMAND_OK, "snapshot", &rc)))
            break;
        PQclear(res);
        struct sl_pgo_rel rel = {.nspname = (char *)nsp, .relname = (char *)tab};
        for (;;) {
            if (stopped(c)) {
                rc = R_STOP;
                break;
            }
            snprintf(q, sizeof(q), "FETCH %d FROM sluice_snap", SNAP_FETCH);
            if (!(res = run(c, sql, q, PGRES_TUPLES_OK, "snapshot", &rc)))
                break;
            int rows = PQntuples(res), cols = PQnfields(res);
            if (rows == 0) {
                PQclear(res);
                break;
            }
            struct sl_pgo_relcache_col *rc_cols = calloc((size_t)cols + 1, sizeof(*rc_cols));
            if (!rc_cols) {
                PQclear(res);
                seterr(c, "out of memory");
                rc = R_FATAL;
                break;
            }
            for (int k = 0; k < cols; k++) {
                rc_cols[k].name = PQfname(res, k);
                rc_cols[k].type_oid = PQftype(res, k);
            }
            rel.cols = rc_cols;
            rel.ncols = (uint16_t)(cols > SL_PGO_MAX_COLS ? SL_PGO_MAX_COLS : cols);
            struct sl_pgo_tuple tup = {.ncols = rel.ncols, .cols = c->ev->new_cols};
            for (int row = 0; row < rows && rc == R_DONE; row++) {
                for (int k = 0; k < rel.ncols; k++) {
                    c->ev->new_cols[k].kind = PQgetisnull(res, row, k) ? 'n' : 't';
                    c->ev->new_cols[k].val = PQgetvalue(res, row, k);
                    c->ev->new_cols[k].len = (uint32_t)PQgetlength(res, row, k);
                }
                struct sl_pg_source src = {.db = c->db,
                                           .lsn = point,
                                           .commit_lsn = point,
                                           .tx_index = index++,
                                           .commit_ts_ms = now_ms,
                                           .snapshot = 1};
                sl_buf_reset(&c->tmp);
                if (sl_pg_envelope_mp(&c->tmp, 'r', &rel, NULL, 0, &tup, &src, sl_now_ms()) < 0 ||
                    batch_add(c, 0) < 0) {
                    seterr(c, "out of memory encoding a snapshot row");
                    rc = R_FATAL;
                }
            }
            if (rc == R_DONE && flush_batch(c, 0) < 0)
                rc = R_RETRY;
            free(rc_cols);
            PQclear(res);
            note_done(c);
        }
        if (rc == R_DONE &&
            (res = run(c, sql, "CLOSE sluice_snap", PGRES_COMMAND_OK, "snapshot", &rc)) != NULL)
            PQclear(res);
    }
    PQclear(tables);
    drain(c);
    note_done(c);
    if (rc == R_DONE && c->append_failed) {
        seterr(c, "appending the snapshot to strand %s failed", c->strand_name);
        rc = R_RETRY;
    }
    if ((res = PQexec(sql, rc == R_DONE ? "COMMIT" : "ROLLBACK")))
        PQclear(res);
    if (rc == R_DONE)
        sl_info("connector %s: snapshot of %u rows at %llx is in strand %s", c->env->id, index,
                (unsigned long long)point, c->strand_name);
    return rc;
}

/* ---- session ---- */

static int ensure_publication(struct cdc *c, PGconn *sql)
{
    int rc = R_FATAL;
    PGresult *res = run_lit(c, sql, "SELECT 1 FROM pg_publication WHERE pubname = %s", c->pub,
                            PGRES_TUPLES_OK, "look up the publication", &rc);
    if (!res)
        return rc;
    int exists = PQntuples(res) > 0;
    PQclear(res);
    if (exists)
        return 0;
    if (!c->auto_pub) {
        seterr(c, "publication \"%s\" does not exist (and auto_create_publication is false)",
               c->pub);
        return R_FATAL;
    }
    char *id = PQescapeIdentifier(sql, c->pub, strlen(c->pub));
    struct sl_buf b;
    sl_buf_init(&b, 1 << 20);
    sl_buf_printf(&b, "CREATE PUBLICATION %s FOR ", id ? id : "\"\"");
    PQfreemem(id);
    if (!c->nfilters || c->filter_globs) {
        sl_buf_puts(&b, "ALL TABLES"); /* the table filter then picks the captured tables */
    } else {
        sl_buf_puts(&b, "TABLE ");
        for (size_t i = 0; i < c->nfilters; i++) {
            const char *f = c->filters[i], *dot = strchr(f, '.');
            char *s = PQescapeIdentifier(sql, f, (size_t)(dot - f));
            char *t = PQescapeIdentifier(sql, dot + 1, strlen(dot + 1));
            sl_buf_printf(&b, "%s%s.%s", i ? ", " : "", s ? s : "\"\"", t ? t : "\"\"");
            PQfreemem(s);
            PQfreemem(t);
        }
    }
    sl_buf_putc(&b, 0);
    res = b.failed
              ? NULL
              : run(c, sql, (const char *)b.data, PGRES_COMMAND_OK, "create the publication", &rc);
    sl_buf_release(&b);
    if (!res)
        return rc;
    PQclear(res);
    mark_created(c, "pub", c->pub);
    sl_info("connector %s: created publication %s", c->env->id, c->pub);
    return 0;
}

/* 1 if the slot exists (filling *active), 0 if not, or an R_* code + 2 on error. */
static int slot_state(struct cdc *c, PGconn *sql, int *active)
{
    int rc = R_FATAL;
    PGresult *res = run_lit(c, sql,
                            "SELECT plugin, active, database, confirmed_flush_lsn "
                            "FROM pg_replication_slots WHERE slot_name = %s",
                            c->slot, PGRES_TUPLES_OK, "look up the replication slot", &rc);
    if (!res)
        return rc + 2;
    int exists = PQntuples(res) > 0;
    if (exists && strcmp(PQgetvalue(res, 0, 0), "pgoutput") != 0) {
        seterr(c, "replication slot \"%s\" uses the plugin %s, not pgoutput", c->slot,
               PQgetvalue(res, 0, 0));
        PQclear(res);
        return R_FATAL + 2;
    }
    if (exists && strcmp(PQgetvalue(res, 0, 2), c->db) != 0) {
        seterr(c, "replication slot \"%s\" belongs to database %s", c->slot, PQgetvalue(res, 0, 2));
        PQclear(res);
        return R_FATAL + 2;
    }
    *active = exists && strcmp(PQgetvalue(res, 0, 1), "t") == 0;
    if (exists)
        sl_pgo_lsn_parse(PQgetvalue(res, 0, 3), &c->durable_lsn);
    PQclear(res);
    return exists;
}

static int session(struct cdc *c)
{
    int rc = R_FATAL;
    PGconn *sql = NULL, *repl = NULL;
    PGresult *res = NULL;
    if (!(repl = connect_pg(c, 1)) || !(sql = connect_pg(c, 0))) {
        rc = c->ever_connected ? R_RETRY : R_FATAL;
        goto out;
    }
    if (!(res = run(c, repl, "IDENTIFY_SYSTEM", PGRES_TUPLES_OK, "IDENTIFY_SYSTEM", &rc)))
        goto out;
    snprintf(c->db, sizeof(c->db), "%s", PQgetvalue(res, 0, 3));
    PQclear(res);
    if (!(res = run(c, sql, "SHOW wal_level", PGRES_TUPLES_OK, "SHOW wal_level", &rc)))
        goto out;
    if (strcmp(PQgetvalue(res, 0, 0), "logical") != 0) {
        seterr(c, "wal_level is %s on the server; logical replication needs wal_level = logical",
               PQgetvalue(res, 0, 0));
        rc = R_FATAL;
        goto out;
    }
    PQclear(res);
    res = NULL;
    if ((rc = ensure_publication(c, sql)) != 0)
        goto out;
    rc = R_FATAL;
    uint64_t snap_state = 0;
    sl_meta_get_cursor(c->env->meta, c->env->id, SNAP_KEY, &snap_state);
    if (c->snap_mode == SNAP_ONLY && snap_state == 2) {
        rc = R_DONE;
        goto out;
    }
    int active = 0, exists = slot_state(c, sql, &active);
    if (exists >= 2) {
        rc = exists - 2;
        goto out;
    }
    if (exists && snap_state == 1 && c->snap_mode != SNAP_ONLY) {
        /* an earlier session created the slot but did not finish its snapshot: start over */
        if (!(res = run_lit(c, sql, "SELECT pg_drop_replication_slot(%s)", c->slot, PGRES_TUPLES_OK,
                            "drop the half-snapshotted slot", &rc)))
            goto out;
        PQclear(res);
        res = NULL;
        exists = 0;
    }
    if (active) {
        seterr(c, "replication slot \"%s\" is active for another connection", c->slot);
        uint64_t now = sl_mono_ns();
        if (!c->busy_since_ns)
            c->busy_since_ns = now;
        rc = now - c->busy_since_ns < SLOT_BUSY_RETRY_MS * 1000000ull ? R_RETRY : R_FATAL;
        goto out;
    }
    c->ever_connected = 1;
    if (!exists || c->snap_mode == SNAP_ONLY) {
        if (!c->auto_slot && c->snap_mode != SNAP_ONLY) {
            seterr(c, "replication slot \"%s\" does not exist (and auto_create_slot is false)",
                   c->slot);
            rc = R_FATAL;
            goto out;
        }
        int snap = c->snap_mode != SNAP_NEVER;
        if (snap)
            sl_meta_set_cursor(c->env->meta, c->env->id, SNAP_KEY, 1, NULL);
        char q[512];
        char *id = PQescapeIdentifier(repl, c->slot, strlen(c->slot));
        snprintf(q, sizeof(q), "CREATE_REPLICATION_SLOT %s%s LOGICAL pgoutput %s", id ? id : "\"\"",
                 c->snap_mode == SNAP_ONLY ? " TEMPORARY" : "",
                 snap ? "EXPORT_SNAPSHOT" : "NOEXPORT_SNAPSHOT");
        PQfreemem(id);
        if (!(res = run(c, repl, q, PGRES_TUPLES_OK, "create the replication slot", &rc)))
            goto out;
        if (c->snap_mode != SNAP_ONLY) /* a temporary slot goes with its session */
            mark_created(c, "slot", c->slot);
        uint64_t point = 0;
        sl_pgo_lsn_parse(PQgetvalue(res, 0, 1), &point);
        c->durable_lsn = point;
        sl_info("connector %s: created replication slot %s at %s", c->env->id, c->slot,
                PQgetvalue(res, 0, 1));
        if (snap) {
            rc = snapshot(c, sql, PQgetvalue(res, 0, 2), point);
            if (rc != R_DONE)
                goto out;
            sl_meta_set_cursor(c->env->meta, c->env->id, SNAP_KEY, 2, NULL);
        }
        PQclear(res);
        res = NULL;
        if (c->snap_mode == SNAP_ONLY) {
            rc = R_DONE;
            goto out;
        }
    }
    PQfinish(sql);
    sql = NULL;
    find_position(c);
    char q[512];
    char *id = PQescapeIdentifier(repl, c->slot, strlen(c->slot));
    char *pub = PQescapeLiteral(repl, c->pub, strlen(c->pub));
    snprintf(q, sizeof(q),
             "START_REPLICATION SLOT %s LOGICAL 0/0 (proto_version '1', publication_names %s)",
             id ? id : "\"\"", pub ? pub : "''");
    PQfreemem(id);
    PQfreemem(pub);
    if (!(res = run(c, repl, q, PGRES_COPY_BOTH, "START_REPLICATION", &rc)))
        goto out;
    PQclear(res);
    res = NULL;
    c->busy_since_ns = 0;
    c->streamed = 1;
    sl_registry_set_source_status(c->env->reg, c->env->id, NULL, NULL);
    sl_info("connector %s: streaming slot %s into strand %s (resume after %llx#%lld)", c->env->id,
            c->slot, c->strand_name, (unsigned long long)c->skip_lsn, (long long)c->skip_idx);
    rc = stream(c, repl);
out:
    PQclear(res);
    /* a transaction cut off by the error is dropped: PostgreSQL resends it whole */
    batch_free(c->cur);
    c->cur = NULL;
    c->in_tx = 0;
    drain(c);
    note_done(c);
    if (rc == R_STOP && c->streamed && PQstatus(repl) == CONNECTION_OK)
        send_status(c, repl, 0); /* confirm what became durable while stopping */
    PQfinish(sql);
    PQfinish(repl);
    return rc;
}

/* ---- workers running now ---- */

/* The connector ids whose sl_pg_cdc_run has not returned yet (the engine stops a deleted
 * connector's worker asynchronously): sl_pg_cdc_cleanup waits for its connector's worker to be
 * gone before it reads what the worker created, so a slot being created at that moment is not
 * missed, and nothing is created after the drop. Nodes live on the workers' stacks. */
struct running {
    const char *id;
    struct running *next;
};
static pthread_mutex_t g_run_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_run_cv = PTHREAD_COND_INITIALIZER;
static struct running *g_running;

static void run_enter(struct running *r)
{
    pthread_mutex_lock(&g_run_mu);
    r->next = g_running;
    g_running = r;
    pthread_mutex_unlock(&g_run_mu);
}

static void run_leave(struct running *r)
{
    pthread_mutex_lock(&g_run_mu);
    for (struct running **p = &g_running; *p; p = &(*p)->next)
        if (*p == r) {
            *p = r->next;
            break;
        }
    pthread_cond_broadcast(&g_run_cv);
    pthread_mutex_unlock(&g_run_mu);
}

/* 1 once no worker of id runs, 0 if one still does at deadline_ns (sl_mono_ns). */
static int wait_worker_gone(const char *id, uint64_t deadline_ns)
{
    pthread_mutex_lock(&g_run_mu);
    for (;;) {
        struct running *r = g_running;
        while (r && strcmp(r->id, id) != 0)
            r = r->next;
        uint64_t now = sl_mono_ns();
        if (!r || now >= deadline_ns) {
            pthread_mutex_unlock(&g_run_mu);
            return r == NULL;
        }
        struct timespec dl; /* the condition variable's clock is CLOCK_REALTIME */
        clock_gettime(CLOCK_REALTIME, &dl);
        uint64_t ns = (uint64_t)dl.tv_nsec + (deadline_ns - now < 100000000u
                                                  ? deadline_ns - now
                                                  : 100000000u); /* re-checked every 100 ms */
        dl.tv_sec += (time_t)(ns / 1000000000u);
        dl.tv_nsec = (long)(ns % 1000000000u);
        pthread_cond_timedwait(&g_run_cv, &g_run_mu, &dl);
    }
}

void sl_pg_cdc_run(const struct sl_source_env *env)
{
    struct running self = {.id = env->id};
    run_enter(&self);
    struct cdc *c = calloc(1, sizeof(*c));
    if (!c) {
        run_leave(&self);
        return;
    }
    c->env = env;
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    sl_pgo_relcache_init(&c->rels);
    sl_buf_init(&c->tmp, 0);
    c->ev = malloc(sizeof(*c->ev));
    sl_registry_set_source_status(env->reg, env->id, NULL, NULL);
    int rc = c->ev && load_config(c) == 0 ? R_RETRY : R_FATAL;
    if (!c->ev)
        seterr(c, "out of memory");
    uint64_t backoff = 200;
    while (rc == R_RETRY && !stopped(c)) {
        c->append_failed = 0;
        c->durable_lsn = c->empty_lsn = c->sent_flush = 0;
        sl_pgo_relcache_release(&c->rels);
        rc = session(c);
        if (c->streamed)
            backoff = 200;
        c->streamed = 0;
        if (rc == R_RETRY) {
            sl_warn("connector %s: %s; reconnecting in %llu ms", env->id, c->err,
                    (unsigned long long)backoff);
            sl_registry_set_source_status(env->reg, env->id, NULL, c->err);
            if (env->nap(env->arg, backoff))
                break;
            backoff = c->ever_connected && backoff < 5000 ? backoff * 2 : backoff;
            if (backoff > 5000)
                backoff = 5000;
        }
    }
    if (rc == R_FATAL) {
        sl_error("connector %s: %s; fix the config (PATCH) or POST /v1/connectors/%s/restart",
                 env->id, c->err, env->id);
        sl_registry_set_failed(env->reg, env->id, c->err);
    } else if (rc == R_DONE) {
        sl_info("connector %s: initial_only snapshot complete; the connector stops", env->id);
        sl_registry_set_source_status(env->reg, env->id, "completed", NULL);
    }
    sl_pgo_relcache_release(&c->rels);
    sl_buf_release(&c->tmp);
    for (size_t i = 0; i < c->nfilters; i++)
        free(c->filters[i]);
    free(c->filters);
    free(c->ev);
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cv);
    free(c);
    run_leave(&self);
}

/* ---- cleanup after a delete ---- */

static int created(struct sl_meta *meta, const char *id, const char *what, const char *name)
{
    char key[256];
    uint64_t v = 0;
    snprintf(key, sizeof(key), CREATED_KEY "%s:%s", what, name);
    return sl_meta_get_cursor(meta, id, key, &v) == 0 && v == 1;
}

/* Another postgres_cdc connector still stored in meta that names the same slot or publication:
 * then it is not dropped (a publication made by one connector is often named by the next). By
 * name only, whatever the server: keeping is the safe side. */
struct users {
    const char *id, *slot, *pub;
    char slot_user[16], pub_user[16];
};

static int note_user(const struct sl_meta_connector *m, void *arg)
{
    struct users *u = arg;
    if (strcmp(m->kind, "postgres_cdc") != 0 || strcmp(m->id, u->id) == 0)
        return 0;
    json_t *cfg = json_loads(m->config_json, 0, NULL);
    if (cfg && !u->slot_user[0] && strcmp(slot_name(cfg), u->slot) == 0)
        snprintf(u->slot_user, sizeof(u->slot_user), "%s", m->id);
    if (cfg && !u->pub_user[0] && strcmp(pub_name(cfg), u->pub) == 0)
        snprintf(u->pub_user, sizeof(u->pub_user), "%s", m->id);
    json_decref(cfg);
    return 0;
}

/* libpq's messages end with a newline and may span lines ("...\n\tIs the server running"): one
 * line, for the log. */
static void oneline(char *s)
{
    size_t k = 0;
    for (const char *p = s; *p; p++) {
        int blank = *p == '\n' || *p == '\t' || *p == ' ';
        if (!blank || (k && s[k - 1] != ' '))
            s[k++] = blank ? ' ' : *p;
    }
    while (k && s[k - 1] == ' ')
        k--;
    s[k] = 0;
}

/* The reason of a failed statement. */
static void reason(PGconn *conn, const PGresult *res, char *why, size_t n)
{
    const char *m = PQresultErrorMessage(res);
    snprintf(why, n, "%s", m[0] ? m : PQerrorMessage(conn));
    oneline(why);
}

static void leftover_slot(const char *id, const char *slot, const char *why)
{
    sl_warn("connector %s deleted, but its replication slot \"%s\" (created by Sluice) is still on "
            "the server and holds WAL back until it is dropped: %s. Drop it by hand: SELECT "
            "pg_drop_replication_slot('%s');",
            id, slot, why, slot);
}

static void leftover_pub(const char *id, const char *pub, const char *why)
{
    sl_warn("connector %s deleted, but its publication \"%s\" (created by Sluice) is still on the "
            "server: %s. Drop it by hand: DROP PUBLICATION IF EXISTS \"%s\";",
            id, pub, why, pub);
}

/* Drops the slot once no walsender holds it: the deleted worker's walsender may linger a moment
 * after its connection closed. */
static void drop_slot(PGconn *conn, const char *id, const char *slot, uint64_t deadline_ns)
{
    const char *params[1] = {slot};
    char why[600];
    for (;;) {
        PGresult *res =
            PQexecParams(conn, "SELECT active FROM pg_replication_slots WHERE slot_name = $1", 1,
                         NULL, params, NULL, NULL, 0);
        if (PQresultStatus(res) != PGRES_TUPLES_OK) {
            reason(conn, res, why, sizeof(why));
            PQclear(res);
            break;
        }
        int exists = PQntuples(res) > 0, active = exists && PQgetvalue(res, 0, 0)[0] == 't';
        PQclear(res);
        if (!exists) {
            sl_info("connector %s: replication slot %s was already gone", id, slot);
            return;
        }
        if (!active) {
            res = PQexecParams(conn, "SELECT pg_drop_replication_slot($1)", 1, NULL, params, NULL,
                               NULL, 0);
            int ok = PQresultStatus(res) == PGRES_TUPLES_OK;
            const char *st = PQresultErrorField(res, PG_DIAG_SQLSTATE);
            int busy = st && strcmp(st, "55006") == 0; /* taken again in between */
            reason(conn, res, why, sizeof(why));
            PQclear(res);
            if (ok) {
                sl_info("connector %s: dropped replication slot %s", id, slot);
                return;
            }
            if (!busy || sl_mono_ns() >= deadline_ns)
                break;
        } else if (sl_mono_ns() >= deadline_ns) {
            snprintf(why, sizeof(why), "it is still in use by another connection");
            break;
        }
        struct timespec ts = {0, 50000000}; /* poll the release every 50 ms */
        nanosleep(&ts, NULL);
    }
    leftover_slot(id, slot, why);
}

static void drop_pub(PGconn *conn, const char *id, const char *pub)
{
    char *ident = PQescapeIdentifier(conn, pub, strlen(pub));
    char q[512];
    snprintf(q, sizeof(q), "DROP PUBLICATION IF EXISTS %s", ident ? ident : "\"\"");
    PQfreemem(ident);
    PGresult *res = PQexec(conn, q);
    if (PQresultStatus(res) == PGRES_COMMAND_OK) {
        sl_info("connector %s: dropped publication %s", id, pub);
    } else {
        char why[600];
        reason(conn, res, why, sizeof(why));
        leftover_pub(id, pub, why);
    }
    PQclear(res);
}

void sl_pg_cdc_cleanup(const json_t *config, const char *id, struct sl_meta *meta)
{
    const char *slot = slot_name(config), *pub = pub_name(config);
    uint64_t deadline = sl_mono_ns() + CLEANUP_WAIT_MS * 1000000ull;
    if (!wait_worker_gone(id, deadline))
        sl_warn("connector %s: its worker is still stopping; dropping what it created anyway", id);
    int own_slot = created(meta, id, "slot", slot), own_pub = created(meta, id, "pub", pub);
    if (!own_slot && !own_pub)
        return; /* nothing of ours: a slot or publication made by the user stays */
    if (!cbool(config, "drop_slot_on_delete", 1)) {
        sl_info(
            "connector %s deleted; drop_slot_on_delete is false: %s%s%s%s%s stay%s on the server",
            id, own_slot ? "replication slot " : "", own_slot ? slot : "",
            own_slot && own_pub ? " and " : "", own_pub ? "publication " : "", own_pub ? pub : "",
            own_slot && own_pub ? "" : "s");
        return;
    }
    struct users u = {.id = id, .slot = slot, .pub = pub};
    sl_meta_load_connectors(meta, note_user, &u, NULL);
    if (own_slot && u.slot_user[0])
        sl_warn("connector %s deleted; its replication slot %s stays: connector %s uses it too", id,
                slot, u.slot_user);
    if (own_pub && u.pub_user[0])
        sl_info("connector %s deleted; its publication %s stays: connector %s uses it too", id, pub,
                u.pub_user);
    own_slot &= !u.slot_user[0];
    own_pub &= !u.pub_user[0];
    if (!own_slot && !own_pub)
        return;
    char why[600];
    PGconn *conn = connect_cfg(config, 0, why, sizeof(why));
    if (!conn) {
        oneline(why);
        char msg[700];
        snprintf(msg, sizeof(msg), "cannot connect to PostgreSQL (%s)", why);
        if (own_slot)
            leftover_slot(id, slot, msg);
        if (own_pub)
            leftover_pub(id, pub, msg);
        return;
    }
    if (own_slot) {
        uint64_t now = sl_mono_ns(),
                 floor = now + 2000000000ull; /* at least 2 s for the walsender */
        drop_slot(conn, id, slot, deadline > floor ? deadline : floor);
    }
    if (own_pub)
        drop_pub(conn, id, pub);
    PQfinish(conn);
}
