/* The postgres_cdc source on the connector contract (include/sluice/connector.h). poll() drives
 * one replication session in slices: the first call connects and sets up (publication, slot,
 * snapshot), later calls read a FETCH of the snapshot or up to timeout_ms of the stream. Each
 * committed transaction is emitted as one group (transactions over CHUNK_BYTES of records in
 * chunks before their Commit); the framework appends it to the strand as one commit, and the LSN
 * confirmed to PostgreSQL only moves past a transaction once durable() reported it fsynced.
 * Resume: every record carries (commit_lsn, tx_index), and so does the position (struct pos);
 * the framework hands back the last durable one at start (read back from the strand after a
 * crash, through position_of), and the changes PostgreSQL resends at or before it are skipped,
 * so nothing is written twice. */
#include "connectors/pg/cdc.h"

#include "connectors/cdc_common.h"

#include "connectors/pg/pgoutput.h"
#include "connectors/pg/values.h"
#include "core/buf.h"
#include "core/log.h"
#include "core/util.h"
#include "engine/meta.h"
#include "strand/record.h"

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

#define CHUNK_BYTES (8u << 20)  /* a transaction is emitted in groups of at most this */
#define SNAP_FETCH 5000         /* rows per FETCH (and per group) during the snapshot */
#define SNAP_KEY "pg.snapshot"  /* connector state: 1 = snapshot pending, 2 = done */
#define SLOT_BUSY_RETRY_MS 5000 /* "slot is active" is retried this long, then failed */
#define CREATED_KEY                                                                                \
    "pg.created_"                 /* connector state "pg.created_slot:<name>" = 1: Sluice made it  \
                                   */
#define CLEANUP_WAIT_MS 10000     /* a delete waits this long for the worker and the walsender */
#define STATUS_EVERY_NS 10000000u /* a new flush LSN is sent at most every 10 ms */
#define POS_LEN 29

/* What a step of a session came to. */
enum {
    R_OK = SL_CDC_OK,
    R_RETRY = SL_CDC_RETRY,
    R_DOWN = SL_CDC_DOWN,
    R_FATAL = SL_CDC_FATAL,
    R_DONE = SL_CDC_DONE
};
enum { SNAP_INITIAL, SNAP_NEVER, SNAP_ONLY };
/* Where the session is: the next poll() connects, reads the snapshot, waits for the snapshot to
 * be durable, or streams. */
enum { PH_IDLE, PH_SNAPSHOT, PH_SNAP_WAIT, PH_STREAM };

/* The position (bytes: version 1, commit_lsn, tx_index, end_lsn, conn; big-endian):
 * (commit_lsn, tx_index) of the last record emitted, commit_lsn 0 if none yet, is the resume
 * key; end_lsn, the end of the last commit emitted with or before it, is what durable() lets
 * the connector confirm; conn, a hash of the connection settings it was emitted with, tells at
 * the next start whether the connector has run with the settings it has now. position_of()
 * gives end_lsn 0 and conn 0 (unknown): at a start only the key is used, the slot's own
 * confirmed_flush_lsn says where PostgreSQL resumes. */
struct pos {
    uint64_t lsn;
    uint32_t idx;
    uint64_t end;
    uint64_t conn;
};

/* The records being gathered for the next group (a transaction, a chunk, a FETCH). */
struct batch {
    struct sl_buf data;
    size_t n, cap;
    size_t *off;
    uint32_t *len, *flags;
    struct sl_emit_rec *recs;
    uint64_t last_lsn; /* the key of the last record */
    uint32_t last_idx;
};

/* The connector ids whose source is started and not yet stopped: sl_pg_cdc_cleanup waits for
 * its connector's to be gone. */
struct running {
    const char *id;
    struct running *next;
};

struct cdc {
    const char *id;
    const json_t *config;
    struct sl_meta *meta;
    void (*gauge)(void *arg, const char *name, uint64_t value);
    void (*give_up)(void *arg);
    int (*stopped_fn)(void *arg);
    void *arg;
    struct running run;
    /* config */
    char slot[128], pub[128], strand_name[SL_STRAND_NAME_MAX + 1];
    int auto_slot, auto_pub, snap_mode;
    long long hb_ms;
    char **filters;
    size_t nfilters;
    int filter_globs;
    /* session */
    int phase;
    PGconn *repl, *sql;
    int ever_connected;  /* this source got past the slot checks once */
    int streamed_before; /* it has streamed before, with these connection settings */
    uint64_t conn_hash;  /* of the connection settings (struct pos) */
    uint64_t busy_since_ns;
    char db[128];
    char err[600];
    struct sl_emitter *em; /* of the running poll() */
    /* snapshot */
    PGresult *tables;
    int table_i, cursor_open;
    uint32_t snap_index;
    uint64_t snap_point;
    int64_t snap_ts_ms;
    struct pos snap_end; /* key of the last snapshot row: durable -> the snapshot is */
    /* decoding */
    struct sl_pgo_relcache rels;
    struct sl_pgo_event *ev;
    struct sl_buf tmp;
    int in_tx;
    uint64_t tx_commit_lsn;
    uint32_t tx_xid, tx_index;
    int64_t tx_ts_ms;
    struct batch cur;
    struct pos key; /* of the last record emitted (or the resume position): skip up to it */
    uint64_t emitted_end;
    /* durability: written by durable() (the committer thread), read by poll()'s thread */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint64_t durable_lsn;
    struct pos durable_key;
    /* feedback */
    uint64_t received_lsn, sent_flush, wal_end;
    uint64_t last_status_ns, last_hb_ns;
};

static int stopped(struct cdc *c)
{
    return c->stopped_fn(c->arg);
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

static int key_cmp(uint64_t a_lsn, uint32_t a_idx, uint64_t b_lsn, uint32_t b_idx)
{
    return a_lsn != b_lsn   ? (a_lsn < b_lsn ? -1 : 1)
           : a_idx != b_idx ? (a_idx < b_idx ? -1 : 1)
                            : 0;
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

static void pos_put(uint8_t *p, const struct pos *ps)
{
    p[0] = 1;
    put64(p + 1, ps->lsn);
    for (int i = 0; i < 4; i++)
        p[9 + i] = (uint8_t)(ps->idx >> (24 - 8 * i));
    put64(p + 13, ps->end);
    put64(p + 21, ps->conn);
}

static int pos_get(const void *bytes, size_t len, struct pos *ps)
{
    const uint8_t *p = bytes;
    if (!p || len != POS_LEN || p[0] != 1)
        return -1;
    ps->lsn = get64(p + 1);
    ps->idx = (uint32_t)p[9] << 24 | (uint32_t)p[10] << 16 | (uint32_t)p[11] << 8 | p[12];
    ps->end = get64(p + 13);
    ps->conn = get64(p + 21);
    return 0;
}

/* ---- the connector's own state in meta (in-tree: ctx->meta is set) ---- */

static uint64_t meta_get(struct cdc *c, const char *key)
{
    return sl_cdc_state_get(c->meta, c->id, key);
}

static int meta_set(struct cdc *c, const char *key, uint64_t v)
{
    return sl_cdc_state_set(c->meta, c->id, key, v, c->err, sizeof(c->err));
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

static void load_config(struct cdc *c)
{
    const json_t *cfg = c->config;
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
    uint64_t h = 1469598103934665603ull; /* FNV-1a of the settings connect_cfg() uses */
    static const char *const conn_keys[] = {"connection_string", "host", "port", "database", "user",
                                            "password",          "tls",  NULL};
    for (const char *const *k = conn_keys; *k; k++) {
        char *v = json_dumps(json_object_get(cfg, *k), JSON_ENCODE_ANY | JSON_SORT_KEYS);
        for (const char *q = v ? v : "-"; *q; q++)
            h = (h ^ (uint8_t)*q) * 1099511628211ull;
        h = (h ^ 0xff) * 1099511628211ull;
        free(v);
    }
    c->conn_hash = h ? h : 1;
    const char *st = cstr(cfg, "strand", NULL, NULL); /* the framework appends to it */
    if (st)
        snprintf(c->strand_name, sizeof(c->strand_name), "%s", st);
    else
        sl_pg_cdc_default_strand(cfg, c->strand_name, sizeof(c->strand_name));
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
static PGconn *connect_cfg(const json_t *cfg, int replication, int (*stop)(void *), void *arg,
                           char *why, size_t whylen)
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
    PGconn *conn = sl_pg_connect(keys, vals, stop, arg, why, whylen);
    if (!conn)
        return NULL;
    if (PQstatus(conn) != CONNECTION_OK) {
        snprintf(why, whylen, "%s", PQerrorMessage(conn));
        PQfinish(conn);
        return NULL;
    }
    return conn;
}

static PGconn *connect_pg(struct cdc *c, int replication)
{
    char why[sizeof(c->err)];
    PGconn *conn = connect_cfg(c->config, replication, c->stopped_fn, c->arg, why, sizeof(why));
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
        return c->ever_connected || c->streamed_before ? R_DOWN : R_FATAL;
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
    if (meta_set(c, key, 1) != 0)
        sl_warn("connector %s: cannot record that it created %s %s (%s); deleting the connector "
                "will leave it on the server",
                c->id, what, name, c->err);
}

/* ---- groups ---- */

static void batch_release(struct batch *b)
{
    sl_buf_release(&b->data);
    free(b->off);
    free(b->len);
    free(b->flags);
    free(b->recs);
    memset(b, 0, sizeof(*b));
}

static void batch_reset(struct batch *b)
{
    sl_buf_reset(&b->data);
    b->data.failed = 0;
    b->n = 0;
}

/* Adds the payload in c->tmp, whose key is (lsn, idx), as one record of the current group. */
static int batch_add(struct cdc *c, uint32_t flags, uint64_t lsn, uint32_t idx)
{
    struct batch *b = &c->cur;
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
        struct sl_emit_rec *recs = realloc(b->recs, nc * sizeof(*recs));
        if (recs)
            b->recs = recs;
        if (!off || !len || !fl || !recs)
            return -1;
        b->cap = nc;
    }
    b->off[b->n] = b->data.len;
    b->len[b->n] = (uint32_t)c->tmp.len;
    b->flags[b->n] = flags;
    if (sl_buf_append(&b->data, c->tmp.data, c->tmp.len) < 0)
        return -1;
    b->n++;
    b->last_lsn = lsn;
    b->last_idx = idx;
    return 0;
}

/* Emits the current group, or with no records only a position (the framework reports it to
 * durable() once everything emitted before it is); end_lsn is the end of the commit it
 * completes (0: a chunk of a transaction, snapshot rows, or no commit). The position's end is
 * the highest commit end emitted so far, so that any durable position covers the ones before
 * it (the framework may skip a position with no records). */
static int emit_group(struct cdc *c, uint64_t end_lsn)
{
    struct batch *b = &c->cur;
    size_t n = b->n;
    if (b->data.failed) {
        seterr(c, "out of memory buffering a transaction");
        return -1;
    }
    struct pos p = c->key;
    if (n) {
        p.lsn = b->last_lsn;
        p.idx = b->last_idx;
    }
    p.end = end_lsn > c->emitted_end ? end_lsn : c->emitted_end;
    p.conn = c->conn_hash;
    for (size_t i = 0; i < n; i++)
        b->recs[i] = (struct sl_emit_rec){
            .payload = b->data.data + b->off[i], .payload_len = b->len[i], .flags = b->flags[i]};
    uint8_t bytes[POS_LEN];
    pos_put(bytes, &p);
    int rc = c->em->emit(c->em, b->recs, n, bytes, sizeof(bytes));
    batch_reset(b);
    if (rc < 0) { /* not appended: PostgreSQL sends it again from the confirmed LSN */
        seterr(c, "strand %s refused %s (%d)", c->strand_name, n ? "a group" : "a position", rc);
        return -1;
    }
    c->key = p;
    c->emitted_end = p.end;
    return 0;
}

/* At a commit (or a keepalive) ending at end_lsn: the transaction's records, or the position
 * alone when nothing of it was captured and end_lsn moves it. */
static int flush_batch(struct cdc *c, uint64_t end_lsn)
{
    if (c->cur.n == 0 && end_lsn <= c->emitted_end)
        return 0;
    return emit_group(c, end_lsn);
}

/* ---- streaming ---- */

static int64_t pg_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return ((int64_t)ts.tv_sec - 946684800LL) * 1000000LL + ts.tv_nsec / 1000;
}

/* Standby status update: write/flush/apply positions. flush only covers fsynced changes (what
 * durable() reported). */
static int send_status(struct cdc *c, int reply)
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
    if (PQputCopyData(c->repl, (const char *)m, sizeof(m)) != 1 || PQflush(c->repl) != 0) {
        seterr(c, "replication connection: %s", PQerrorMessage(c->repl));
        return -1;
    }
    c->sent_flush = flush;
    c->last_status_ns = sl_mono_ns();
    if (c->gauge)
        c->gauge(c->arg, "slot_lag_bytes", c->wal_end > flush ? c->wal_end - flush : 0);
    return 0;
}

/* Adds the envelope of one change to the current group, unless it is at or before the resume
 * position (already in the strand). */
static int add_change(struct cdc *c, char op, const struct sl_pgo_rel *rel,
                      const struct sl_pgo_tuple *before, int key_only,
                      const struct sl_pgo_tuple *after, uint64_t lsn, uint32_t flags)
{
    uint32_t idx = c->tx_index++;
    if (key_cmp(c->tx_commit_lsn, idx, c->key.lsn, c->key.idx) <= 0)
        return 0;
    struct sl_pg_source src = {.db = c->db,
                               .lsn = lsn,
                               .commit_lsn = c->tx_commit_lsn,
                               .tx_index = idx,
                               .txid = c->tx_xid,
                               .commit_ts_ms = c->tx_ts_ms};
    sl_buf_reset(&c->tmp);
    if (sl_pg_envelope_mp(&c->tmp, op, rel, before, key_only, after, &src, sl_now_ms()) < 0 ||
        batch_add(c, flags, c->tx_commit_lsn, idx) < 0) {
        seterr(c, "out of memory encoding a change");
        return -1;
    }
    if (c->cur.data.len >= CHUNK_BYTES)
        return flush_batch(c, 0);
    return 0;
}

static int handle_change(struct cdc *c, uint64_t lsn)
{
    struct sl_pgo_event *ev = c->ev;
    if (ev->type == SL_PGO_TRUNCATE) {
        for (uint32_t i = 0; i < ev->u.truncate.nrels; i++) {
            struct sl_pgo_rel *rel = sl_pgo_relcache_get(&c->rels, sl_pgo_truncate_relid(ev, i));
            if (rel && rel->captured && add_change(c, 't', rel, NULL, 0, NULL, lsn, 0) < 0)
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
        return add_change(c, 'c', rel, NULL, 0, &ev->u.change.new_tup, lsn, 0);
    case SL_PGO_UPDATE:
        return add_change(c, 'u', rel, old, key_only, &ev->u.change.new_tup, lsn, 0);
    default:
        return add_change(c, 'd', rel, old, key_only, NULL, lsn, SL_FLAG_TOMBSTONE);
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

/* A server keepalive: its WAL position is confirmed once everything emitted before is durable,
 * when nothing of ours is pending (no transaction being read). */
static int keepalive(struct cdc *c, const uint8_t *m)
{
    uint64_t end = get64(m + 1);
    if (end > c->wal_end)
        c->wal_end = end;
    if (!c->in_tx && c->cur.n == 0 && flush_batch(c, end) < 0)
        return -1;
    pthread_mutex_lock(&c->mu);
    uint64_t durable = c->durable_lsn;
    pthread_mutex_unlock(&c->mu);
    if (m[17] || durable > c->sent_flush)
        return send_status(c, 0);
    return 0;
}

/* Reads the stream for about timeout_ms. */
static int stream(struct cdc *c, int timeout_ms)
{
    uint64_t deadline = sl_mono_ns() + (uint64_t)timeout_ms * 1000000u;
    for (;;) {
        if (stopped(c))
            return R_OK;
        pthread_mutex_lock(&c->mu);
        uint64_t durable = c->durable_lsn;
        pthread_mutex_unlock(&c->mu);
        uint64_t now = sl_mono_ns();
        int hb = now - c->last_hb_ns >= (uint64_t)c->hb_ms * 1000000u;
        if (hb)
            c->last_hb_ns = now;
        if (((durable > c->sent_flush && now - c->last_status_ns >= STATUS_EVERY_NS) || hb) &&
            send_status(c, hb) < 0)
            return R_RETRY;
        if (now >= deadline)
            return R_OK;
        char *buf = NULL;
        int r = PQgetCopyData(c->repl, &buf, 1);
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
                rc = keepalive(c, m);
            }
            PQfreemem(buf);
            if (rc < 0)
                return R_RETRY;
            continue;
        }
        if (r == 0) {
            uint64_t left_ms = (deadline - now) / 1000000u + 1;
            struct pollfd pfd = {.fd = PQsocket(c->repl), .events = POLLIN};
            poll(&pfd, 1, left_ms < 20 ? (int)left_ms : 20);
            if (PQconsumeInput(c->repl) == 0) {
                seterr(c, "replication connection lost: %s", PQerrorMessage(c->repl));
                return R_DOWN;
            }
            continue;
        }
        PGresult *res = PQgetResult(c->repl);
        const char *why = res && PQresultErrorMessage(res)[0] ? PQresultErrorMessage(res)
                                                              : PQerrorMessage(c->repl);
        seterr(c, "replication stream ended: %s", why[0] ? why : "the server closed it");
        int rc =
            res && PQresultErrorField(res, PG_DIAG_SQLSTATE) ? classify(c, res, c->repl) : R_DOWN;
        PQclear(res);
        return rc;
    }
}

/* ---- snapshot ---- */

/* Opens the snapshot transaction on the SQL connection inside the slot's exported snapshot and
 * lists the publication's tables; the next polls read them (snapshot_step). */
static int snapshot_begin(struct cdc *c, const char *snap_name, uint64_t point)
{
    int rc = R_FATAL;
    PGresult *res = run(c, c->sql, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
                        PGRES_COMMAND_OK, "snapshot", &rc);
    if (!res)
        return rc;
    PQclear(res);
    if (!(res = run_lit(c, c->sql, "SET TRANSACTION SNAPSHOT %s", snap_name, PGRES_COMMAND_OK,
                        "snapshot", &rc)))
        return rc;
    PQclear(res);
    c->tables = run_lit(c, c->sql,
                        "SELECT schemaname, tablename FROM pg_publication_tables "
                        "WHERE pubname = %s ORDER BY 1, 2",
                        c->pub, PGRES_TUPLES_OK, "snapshot: list tables", &rc);
    if (!c->tables)
        return rc;
    c->table_i = 0;
    c->cursor_open = 0;
    c->snap_index = 0;
    c->snap_point = point;
    c->snap_ts_ms = (int64_t)sl_now_ms();
    c->phase = PH_SNAPSHOT;
    return R_OK;
}

/* Emits one FETCH of the table being read as op "r" records (one group). */
static int snapshot_rows(struct cdc *c, const char *nsp, const char *tab)
{
    int rc = R_FATAL;
    char q[64];
    snprintf(q, sizeof(q), "FETCH %d FROM sluice_snap", SNAP_FETCH);
    PGresult *res = run(c, c->sql, q, PGRES_TUPLES_OK, "snapshot", &rc);
    if (!res)
        return rc;
    int rows = PQntuples(res), cols = PQnfields(res);
    if (rows == 0) {
        PQclear(res);
        if (!(res = run(c, c->sql, "CLOSE sluice_snap", PGRES_COMMAND_OK, "snapshot", &rc)))
            return rc;
        PQclear(res);
        c->cursor_open = 0;
        c->table_i++;
        return R_OK;
    }
    struct sl_pgo_relcache_col *rc_cols = calloc((size_t)cols + 1, sizeof(*rc_cols));
    if (!rc_cols) {
        PQclear(res);
        seterr(c, "out of memory");
        return R_FATAL;
    }
    for (int k = 0; k < cols; k++) {
        rc_cols[k].name = PQfname(res, k);
        rc_cols[k].type_oid = PQftype(res, k);
    }
    struct sl_pgo_rel rel = {.nspname = (char *)nsp, .relname = (char *)tab, .cols = rc_cols};
    rel.ncols = (uint16_t)(cols > SL_PGO_MAX_COLS ? SL_PGO_MAX_COLS : cols);
    struct sl_pgo_tuple tup = {.ncols = rel.ncols, .cols = c->ev->new_cols};
    rc = R_OK;
    for (int row = 0; row < rows && rc == R_OK; row++) {
        for (int k = 0; k < rel.ncols; k++) {
            c->ev->new_cols[k].kind = PQgetisnull(res, row, k) ? 'n' : 't';
            c->ev->new_cols[k].val = PQgetvalue(res, row, k);
            c->ev->new_cols[k].len = (uint32_t)PQgetlength(res, row, k);
        }
        uint32_t idx = c->snap_index++;
        struct sl_pg_source src = {.db = c->db,
                                   .lsn = c->snap_point,
                                   .commit_lsn = c->snap_point,
                                   .tx_index = idx,
                                   .commit_ts_ms = c->snap_ts_ms,
                                   .snapshot = 1};
        sl_buf_reset(&c->tmp);
        if (sl_pg_envelope_mp(&c->tmp, 'r', &rel, NULL, 0, &tup, &src, sl_now_ms()) < 0 ||
            batch_add(c, 0, c->snap_point, idx) < 0) {
            seterr(c, "out of memory encoding a snapshot row");
            rc = R_FATAL;
        }
    }
    if (rc == R_OK && flush_batch(c, 0) < 0)
        rc = R_RETRY;
    free(rc_cols);
    PQclear(res);
    return rc;
}

/* One step of the snapshot: opens the next captured table's cursor, or emits one FETCH; after
 * the last table, commits and waits for the rows to be durable (PH_SNAP_WAIT). */
static int snapshot_step(struct cdc *c)
{
    if (stopped(c))
        return R_OK;
    if (c->cursor_open)
        return snapshot_rows(c, PQgetvalue(c->tables, c->table_i, 0),
                             PQgetvalue(c->tables, c->table_i, 1));
    int rc = R_FATAL;
    while (c->table_i < PQntuples(c->tables) &&
           !captured(c, PQgetvalue(c->tables, c->table_i, 0), PQgetvalue(c->tables, c->table_i, 1)))
        c->table_i++;
    if (c->table_i < PQntuples(c->tables)) {
        const char *nsp = PQgetvalue(c->tables, c->table_i, 0);
        const char *tab = PQgetvalue(c->tables, c->table_i, 1);
        char q[1024];
        char *qn = PQescapeIdentifier(c->sql, nsp, strlen(nsp));
        char *qt = PQescapeIdentifier(c->sql, tab, strlen(tab));
        snprintf(q, sizeof(q), "DECLARE sluice_snap NO SCROLL CURSOR FOR SELECT * FROM %s.%s",
                 qn ? qn : "\"\"", qt ? qt : "\"\"");
        PQfreemem(qn);
        PQfreemem(qt);
        PGresult *res = run(c, c->sql, q, PGRES_COMMAND_OK, "snapshot", &rc);
        if (!res)
            return rc;
        PQclear(res);
        c->cursor_open = 1;
        return R_OK;
    }
    PGresult *res = run(c, c->sql, "COMMIT", PGRES_COMMAND_OK, "snapshot", &rc);
    if (!res)
        return rc;
    PQclear(res);
    PQclear(c->tables);
    c->tables = NULL;
    PQfinish(c->sql);
    c->sql = NULL;
    c->snap_end = (struct pos){.lsn = c->snap_point, .idx = c->snap_index ? c->snap_index - 1 : 0};
    c->phase = PH_SNAP_WAIT;
    return R_OK;
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
        return R_OK;
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
    sl_info("connector %s: created publication %s", c->id, c->pub);
    return R_OK;
}

/* 1 if the slot exists (filling *active), 0 if not, -1 on error with *rc. */
static int slot_state(struct cdc *c, PGconn *sql, int *active, int *rc)
{
    *rc = R_FATAL;
    PGresult *res = run_lit(c, sql,
                            "SELECT plugin, active, database, confirmed_flush_lsn "
                            "FROM pg_replication_slots WHERE slot_name = %s",
                            c->slot, PGRES_TUPLES_OK, "look up the replication slot", rc);
    if (!res)
        return -1;
    int exists = PQntuples(res) > 0;
    if (exists && strcmp(PQgetvalue(res, 0, 0), "pgoutput") != 0) {
        seterr(c, "replication slot \"%s\" uses the plugin %s, not pgoutput", c->slot,
               PQgetvalue(res, 0, 0));
        PQclear(res);
        return -1;
    }
    if (exists && strcmp(PQgetvalue(res, 0, 2), c->db) != 0) {
        seterr(c, "replication slot \"%s\" belongs to database %s", c->slot, PQgetvalue(res, 0, 2));
        PQclear(res);
        return -1;
    }
    *active = exists && strcmp(PQgetvalue(res, 0, 1), "t") == 0;
    uint64_t confirmed = 0;
    if (exists && sl_pgo_lsn_parse(PQgetvalue(res, 0, 3), &confirmed) == 0) {
        pthread_mutex_lock(&c->mu);
        if (confirmed > c->durable_lsn)
            c->durable_lsn = confirmed;
        pthread_mutex_unlock(&c->mu);
    }
    PQclear(res);
    return exists;
}

/* START_REPLICATION from the slot's confirmed position; the stream is read by the next polls. */
static int start_streaming(struct cdc *c)
{
    int rc = R_FATAL;
    char q[512];
    char *id = PQescapeIdentifier(c->repl, c->slot, strlen(c->slot));
    char *pub = PQescapeLiteral(c->repl, c->pub, strlen(c->pub));
    snprintf(q, sizeof(q),
             "START_REPLICATION SLOT %s LOGICAL 0/0 (proto_version '1', publication_names %s)",
             id ? id : "\"\"", pub ? pub : "''");
    PQfreemem(id);
    PQfreemem(pub);
    PGresult *res = run(c, c->repl, q, PGRES_COPY_BOTH, "START_REPLICATION", &rc);
    if (!res)
        return rc;
    PQclear(res);
    c->busy_since_ns = 0;
    c->phase = PH_STREAM;
    c->sent_flush = 0;
    c->last_status_ns = 0;
    c->last_hb_ns = sl_mono_ns();
    sl_info("connector %s: streaming slot %s into strand %s (resume after %llx#%lld)", c->id,
            c->slot, c->strand_name, (unsigned long long)c->key.lsn,
            c->key.lsn ? (long long)c->key.idx : -1LL);
    if (!c->streamed_before) { /* a durable position will say that it has run */
        c->streamed_before = 1;
        if (emit_group(c, 0) < 0)
            return R_RETRY;
    }
    return R_OK;
}

/* Connects and sets up: the first step of a session. Ends streaming, reading a snapshot, or
 * R_DONE (initial_only, already taken). */
static int session_open(struct cdc *c)
{
    int rc = R_FATAL;
    PGresult *res = NULL;
    if (!(c->repl = connect_pg(c, 1)) || !(c->sql = connect_pg(c, 0)))
        return c->ever_connected || c->streamed_before ? R_DOWN : R_FATAL;
    if (!(res = run(c, c->repl, "IDENTIFY_SYSTEM", PGRES_TUPLES_OK, "IDENTIFY_SYSTEM", &rc)))
        return rc;
    snprintf(c->db, sizeof(c->db), "%s", PQgetvalue(res, 0, 3));
    PQclear(res);
    if (!(res = run(c, c->sql, "SHOW wal_level", PGRES_TUPLES_OK, "SHOW wal_level", &rc)))
        return rc;
    if (strcmp(PQgetvalue(res, 0, 0), "logical") != 0) {
        seterr(c, "wal_level is %s on the server; logical replication needs wal_level = logical",
               PQgetvalue(res, 0, 0));
        PQclear(res);
        return R_FATAL;
    }
    PQclear(res);
    if ((rc = ensure_publication(c, c->sql)) != R_OK)
        return rc;
    uint64_t snap_state = meta_get(c, SNAP_KEY);
    int active = 0, exists = slot_state(c, c->sql, &active, &rc);
    if (exists < 0)
        return rc;
    if (exists && snap_state == 1 && c->snap_mode != SNAP_ONLY) {
        /* an earlier session created the slot but did not finish its snapshot: start over */
        if (!(res = run_lit(c, c->sql, "SELECT pg_drop_replication_slot(%s)", c->slot,
                            PGRES_TUPLES_OK, "drop the half-snapshotted slot", &rc)))
            return rc;
        PQclear(res);
        exists = 0;
    }
    if (active) {
        seterr(c, "replication slot \"%s\" is active for another connection", c->slot);
        uint64_t now = sl_mono_ns();
        if (!c->busy_since_ns)
            c->busy_since_ns = now;
        return now - c->busy_since_ns < SLOT_BUSY_RETRY_MS * 1000000ull ? R_RETRY : R_FATAL;
    }
    c->ever_connected = 1;
    if (exists && c->snap_mode != SNAP_ONLY) {
        PQfinish(c->sql);
        c->sql = NULL;
        return start_streaming(c);
    }
    if (!c->auto_slot && c->snap_mode != SNAP_ONLY) {
        seterr(c, "replication slot \"%s\" does not exist (and auto_create_slot is false)",
               c->slot);
        return R_FATAL;
    }
    int snap = c->snap_mode != SNAP_NEVER;
    if (snap && meta_set(c, SNAP_KEY, 1) != 0) /* before the slot: a crash then redoes it */
        return R_RETRY;
    char q[512];
    char *id = PQescapeIdentifier(c->repl, c->slot, strlen(c->slot));
    snprintf(q, sizeof(q), "CREATE_REPLICATION_SLOT %s%s LOGICAL pgoutput %s", id ? id : "\"\"",
             c->snap_mode == SNAP_ONLY ? " TEMPORARY" : "",
             snap ? "EXPORT_SNAPSHOT" : "NOEXPORT_SNAPSHOT");
    PQfreemem(id);
    if (!(res = run(c, c->repl, q, PGRES_TUPLES_OK, "create the replication slot", &rc)))
        return rc;
    if (c->snap_mode != SNAP_ONLY) /* a temporary slot goes with its session */
        mark_created(c, "slot", c->slot);
    uint64_t point = 0;
    sl_pgo_lsn_parse(PQgetvalue(res, 0, 1), &point);
    pthread_mutex_lock(&c->mu);
    if (point > c->durable_lsn)
        c->durable_lsn = point;
    pthread_mutex_unlock(&c->mu);
    sl_info("connector %s: created replication slot %s at %s", c->id, c->slot,
            PQgetvalue(res, 0, 1));
    if (snap)
        rc = snapshot_begin(c, PQgetvalue(res, 0, 2), point);
    PQclear(res);
    if (snap)
        return rc;
    PQfinish(c->sql);
    c->sql = NULL;
    return start_streaming(c);
}

/* Waits (about timeout_ms at most) for the snapshot's last group to be durable, then records
 * that the snapshot is done and streams (or finishes: initial_only). */
static int snapshot_wait(struct cdc *c, int timeout_ms)
{
    struct timespec dl;
    sl_cdc_deadline(&dl, timeout_ms);
    pthread_mutex_lock(&c->mu);
    int done = c->snap_index == 0;
    while (!done && !stopped(c)) {
        done =
            key_cmp(c->durable_key.lsn, c->durable_key.idx, c->snap_end.lsn, c->snap_end.idx) >= 0;
        if (!done && pthread_cond_timedwait(&c->cv, &c->mu, &dl) != 0)
            break;
    }
    pthread_mutex_unlock(&c->mu);
    if (!done)
        return R_OK;
    if (meta_set(c, SNAP_KEY, 2) != 0)
        return R_RETRY;
    sl_info("connector %s: snapshot of %u rows at %llx is in strand %s", c->id, c->snap_index,
            (unsigned long long)c->snap_point, c->strand_name);
    if (c->snap_mode == SNAP_ONLY)
        return R_DONE;
    return start_streaming(c);
}

/* Ends the session: a transaction cut off is dropped (PostgreSQL resends it whole, and what of
 * it was emitted is skipped by the key). */
static void session_close(struct cdc *c)
{
    PQclear(c->tables);
    c->tables = NULL;
    PQfinish(c->sql);
    PQfinish(c->repl);
    c->sql = c->repl = NULL;
    batch_reset(&c->cur);
    c->in_tx = 0;
    c->cursor_open = 0;
    sl_pgo_relcache_release(&c->rels);
    c->phase = PH_IDLE;
}

/* ---- the source contract ---- */

static struct running *g_running;
static pthread_mutex_t g_run_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_run_cv = PTHREAD_COND_INITIALIZER;

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

static void cdc_free(struct cdc *c)
{
    if (!c)
        return;
    sl_pgo_relcache_release(&c->rels);
    sl_buf_release(&c->tmp);
    batch_release(&c->cur);
    for (size_t i = 0; i < c->nfilters; i++)
        free(c->filters[i]);
    free(c->filters);
    free(c->ev);
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cv);
    free(c);
}

static int pg_start(void **self, const struct sl_source_ctx *ctx, struct sl_err *err)
{
    struct cdc *c = calloc(1, sizeof(*c));
    if (!c)
        return ctx->host->fail(err, "out of memory");
    c->id = ctx->id;
    c->config = ctx->config;
    c->meta = ctx->meta;
    c->gauge = ctx->gauge;
    c->give_up = ctx->give_up;
    c->stopped_fn = ctx->stopped;
    c->arg = ctx->arg;
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    sl_pgo_relcache_init(&c->rels);
    sl_buf_init(&c->tmp, 0);
    sl_buf_init(&c->cur.data, 0);
    if (!(c->ev = malloc(sizeof(*c->ev)))) {
        cdc_free(c);
        return ctx->host->fail(err, "out of memory");
    }
    load_config(c);
    if (ctx->position && pos_get(ctx->position, ctx->position_len, &c->key) == 0) {
        /* it has run with these settings (or a record of it was read back: unknown, but it ran);
         * after a PATCH of the connection it is a first connection again */
        c->streamed_before = c->key.conn == 0 || c->key.conn == c->conn_hash;
        c->key.end = 0;
    }
    c->durable_key = c->key;
    c->run.id = c->id;
    run_enter(&c->run);
    *self = c;
    return 0;
}

static enum sl_result pg_poll(void *self, struct sl_emitter *em, int timeout_ms, char *error,
                              size_t errlen)
{
    struct cdc *c = self;
    c->em = em;
    int rc;
    switch (c->phase) {
    case PH_IDLE: /* an initial_only snapshot already taken is not taken again */
        rc = c->snap_mode == SNAP_ONLY && meta_get(c, SNAP_KEY) == 2 ? R_DONE : session_open(c);
        break;
    case PH_SNAPSHOT:
        rc = snapshot_step(c);
        break;
    case PH_SNAP_WAIT:
        rc = snapshot_wait(c, timeout_ms);
        break;
    default:
        rc = stream(c, timeout_ms);
        break;
    }
    if (rc == R_OK)
        return SL_R_OK;
    session_close(c);
    return sl_cdc_result(rc, c->id, c->err, error, errlen, c->give_up, c->arg);
}

/* Committer thread (or poll's, inside emit): what PostgreSQL may now be told. */
static void pg_durable(void *self, const void *position, size_t len)
{
    struct cdc *c = self;
    struct pos p;
    if (pos_get(position, len, &p) != 0)
        return;
    pthread_mutex_lock(&c->mu);
    if (p.end > c->durable_lsn)
        c->durable_lsn = p.end;
    if (key_cmp(p.lsn, p.idx, c->durable_key.lsn, c->durable_key.idx) > 0)
        c->durable_key = p;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

/* Everything emitted is durable by now (the framework drained): confirm it, then close. */
static void pg_stop(void *self)
{
    struct cdc *c = self;
    if (!c)
        return;
    if (c->phase == PH_STREAM && PQstatus(c->repl) == CONNECTION_OK)
        send_status(c, 0);
    if (c->phase == PH_SNAP_WAIT && /* stopped while its last rows became durable */
        (c->snap_index == 0 ||
         key_cmp(c->durable_key.lsn, c->durable_key.idx, c->snap_end.lsn, c->snap_end.idx) >= 0) &&
        meta_set(c, SNAP_KEY, 2) == 0)
        sl_info("connector %s: snapshot of %u rows at %llx is in strand %s", c->id, c->snap_index,
                (unsigned long long)c->snap_point, c->strand_name);
    session_close(c);
    run_leave(&c->run);
    cdc_free(c);
}

static int pg_position_of(const uint8_t *payload, size_t len, void *position, size_t *position_len)
{
    struct pos p = {0};
    if (sl_pg_envelope_position(payload, len, &p.lsn, &p.idx) != 0)
        return -1;
    pos_put(position, &p);
    *position_len = POS_LEN;
    return 0;
}

static const struct sl_gauge pg_gauges[] = {
    {"slot_lag_bytes", "WAL bytes a CDC connector's replication slot retains beyond what is "
                       "durable in the strand."},
    {NULL, NULL},
};

const struct sl_source_ops sl_pg_source_ops = {.start = pg_start,
                                               .poll = pg_poll,
                                               .durable = pg_durable,
                                               .stop = pg_stop,
                                               .position_of = pg_position_of,
                                               .gauges = pg_gauges};

/* 1 once no source of id runs, 0 if one still does at deadline_ns (sl_mono_ns). */
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

/* ---- cleanup after a delete ---- */

static int created(struct sl_meta *meta, const char *id, const char *what, const char *name)
{
    char key[256];
    uint64_t v = 0;
    snprintf(key, sizeof(key), CREATED_KEY "%s:%s", what, name);
    return sl_meta_get_state(meta, id, key, &v) == 0 && v == 1;
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
    PGconn *conn = connect_cfg(config, 0, NULL, NULL, why, sizeof(why));
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
