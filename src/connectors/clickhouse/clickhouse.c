/* The ClickHouse sink (the Rivven seed's `clickhouse`, keys exactly): a batch of records is one
 * `INSERT INTO <database>.<table> FORMAT JSONEachRow` over ClickHouse's HTTP interface, a JSON
 * object per line. Delivery policy is the framework's (include/sluice/connector.h); Rivven's
 * max_retries, initial_backoff_ms, max_backoff_ms and circuit_breaker.enabled are rewritten onto
 * it by normalize().
 *
 * Rows. mapping envelope (the default, the seed's table schema): event_type, stream, namespace,
 * timestamp, data (the payload as JSON text), metadata (seq, record_hash, agent_id as JSON text),
 * _ingested_at, all strings. mapping payload: the payload (a JSON object) is the row, its fields
 * the columns. dedup_column adds the record hash (hex) to every row.
 *
 * Outcomes. An INSERT of fewer rows than max_insert_block_size (1,048,576 > the largest
 * batch_size) is one block: ClickHouse stores all of it or nothing. A row ClickHouse cannot
 * parse or convert (its error code says so, clickhouse.h) makes the whole batch dead letters
 * (skip_invalid_rows false: the seed's "abort batch"), or is taken out and the rest inserted again
 * (skip_invalid_rows true: the error names the row, "(at row N)"; without it the rows go one by
 * one). Anything else (no answer, a timeout, a server error, a refused login, a missing table)
 * is retried: nothing is lost.
 *
 * Pipelining. With max_in_flight > 1 a batch whose rows all go is one insert on a curl multi
 * handle and send() returns at once; flush() reports the oldest, so the cursor moves in order
 * while ClickHouse parses one insert and Sluice makes the next. A batch with a refused row, rows
 * stored already or doubt after a failure goes the careful way (the code below, one request at
 * a time). A failed pipelined insert is reported as a retry and its batch goes the careful way;
 * the framework then sends the batches after it again, and the seq ranges this sink knows are
 * stored (a ring) are left out, so a refused row does not make copies of its neighbours.
 *
 * Compression lz4 is ClickHouse's own block framing (chblock.c) with decompress=1.
 *
 * Duplicates. ClickHouse 18.16 deduplicates inserted blocks only in Replicated*MergeTree tables
 * (insert_deduplicate, through ZooKeeper): a batch sent again into a MergeTree after an attempt
 * whose answer was lost (a timeout, a crash of Sluice) is stored twice. With dedup_column the
 * sink does what 18.16 allows: after a failed attempt and after a (re)start, before inserting it
 * asks which of the batch's record hashes the table already has and leaves those rows out, so
 * the table holds every record once; a ReplacingMergeTree ordered by that column also merges away
 * any copy that slips past (an attempt still running on the server while the next one asks). */
#include "connectors/clickhouse/clickhouse.h"
#include "connectors/httpc.h"
#include "core/buf.h"
#include "core/err.h"
#include "core/util.h"
#include "engine/kinds.h"
#include "formats/filefmt.h"
#include "formats/json_mp.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define EXCERPT 4096
#define MAX_COLS 4096
#define NAME_MAX_LEN 128
#define CH_MAX_FLIGHT 16
#define CH_INSERTED 256 /* seq ranges known to be in the table, remembered */

static const char *const g_compression[] = {"lz4", "none", "gzip", NULL};
static const char *const g_mapping[] = {"envelope", "payload", NULL};

/* The seed's table schema (mapping envelope). */
static const char *const g_envelope_cols[] = {"event_type", "stream",   "namespace",    "timestamp",
                                              "data",       "metadata", "_ingested_at", NULL};

static const struct sl_field f_clickhouse[] = {
    {"url", SL_F_URL, 1, NULL, 0,
     "ClickHouse HTTP(S) endpoint (http://localhost:8123); Rivven's max_retries, "
     "initial_backoff_ms, max_backoff_ms and circuit_breaker.enabled are accepted and stored as "
     "the framework's retry and circuit_breaker settings.",
     0, 0, NULL, NULL},
    {"database", SL_F_STRING, 0, "\"default\"", 0, "Target database ([A-Za-z_][A-Za-z0-9_]*).", 0,
     0, NULL, NULL},
    {"table", SL_F_STRING, 1, NULL, 0, "Target table; it must exist ([A-Za-z_][A-Za-z0-9_]*).", 0,
     0, NULL, NULL},
    {"username", SL_F_STRING, 0, "\"default\"", 0, "User (X-ClickHouse-User).", 0, 0, NULL, NULL},
    {"password", SL_F_STRING, 0, NULL, SL_SECRET, "Password (X-ClickHouse-Key).", 0, 0, NULL, NULL},
    {"access_token", SL_F_STRING, 0, NULL, SL_SECRET,
     "JWT access token (ClickHouse Cloud), sent as Authorization: Bearer; not with password.", 0, 0,
     NULL, NULL},
    {"batch_size", SL_F_INT, 0, "10000", 0, "Rows per INSERT.", 1, 1000000, NULL, NULL},
    {"flush_interval_secs", SL_F_INT, 0, "5", 0,
     "Seconds a partial batch may wait for more rows (0: send at once).", 0, 3600, NULL, NULL},
    {"compression", SL_F_ENUM, 0, "\"lz4\"", 0,
     "Request body compression: lz4 (ClickHouse's own checksummed LZ4 blocks, decompress=1), "
     "gzip (Content-Encoding), none.",
     0, 0, g_compression, NULL},
    {"max_in_flight", SL_F_INT, 0, "2", 0,
     "Inserts sent before the oldest is answered (1: one at a time). The cursor moves in order; "
     "inserts may complete out of order (a ReplacingMergeTree without a version column keeps "
     "the last one to complete: use 1 there).",
     1, CH_MAX_FLIGHT, NULL, NULL},
    {"validation", SL_F_BOOL, 0, "true", 0,
     "Read the table's columns at start (and after a failure): a missing table or column is "
     "reported before sending, a payload field with no column refuses its row.",
     0, 0, NULL, NULL},
    {"skip_invalid_rows", SL_F_BOOL, 0, "false", 0,
     "false: a row ClickHouse refuses makes its whole batch dead letters; true: only that row.", 0,
     0, NULL, NULL},
    {"mapping", SL_F_ENUM, 0, "\"envelope\"", 0,
     "envelope: the seed's columns (event_type, stream, namespace, timestamp, data, metadata, "
     "_ingested_at); payload: the payload's fields are the columns.",
     0, 0, g_mapping, NULL},
    {"dedup_column", SL_F_STRING, 0, NULL, 0,
     "A String column that gets the record hash (hex): after a failure or a restart, rows "
     "already in the table are not inserted again.",
     0, 0, NULL, NULL},
    {NULL, 0, 0, NULL, 0, NULL, 0, 0, NULL, NULL},
};

/* ---- config ---- */

static int ident_ok(const char *s)
{
    if (!s || !*s || strlen(s) > NAME_MAX_LEN || (*s >= '0' && *s <= '9'))
        return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '_'))
            return 0;
    return 1;
}

/* Moves Rivven's top-level retry key `key` into retry.<key>. */
static int norm_retry_key(json_t *out, const char *key, struct sl_err *err)
{
    json_t *v = json_object_get(out, key);
    if (!v)
        return 0;
    char path[64];
    snprintf(path, sizeof(path), "config.%s", key);
    json_t *r = json_object_get(out, "retry");
    if (r && !json_is_object(r))
        return 0; /* the validator names it */
    if (r && json_object_get(r, key))
        return sl_config_error(err, path, "give %s (Rivven) or retry.%s, not both", key, key);
    if (!r) {
        r = json_object();
        json_object_set_new(out, "retry", r);
    }
    json_object_set(r, key, v);
    json_object_del(out, key);
    return 0;
}

static json_t *ch_normalize(const json_t *in, struct sl_err *err)
{
    json_t *out = json_deep_copy(in);
    if (!out) {
        sl_err_set(err, SL_E_NOMEM, "out_of_memory", "out of memory");
        return NULL;
    }
    static const char *const retry_keys[] = {"max_retries", "initial_backoff_ms", "max_backoff_ms",
                                             NULL};
    for (const char *const *k = retry_keys; *k; k++)
        if (norm_retry_key(out, *k, err) < 0)
            goto fail;
    json_t *cb = json_object_get(out, "circuit_breaker");
    json_t *en = json_is_object(cb) ? json_object_get(cb, "enabled") : NULL;
    if (en) {
        if (!json_is_boolean(en)) {
            sl_config_error(err, "config.circuit_breaker.enabled", "must be a boolean");
            goto fail;
        }
        /* the framework's breaker has no switch: one that never opens is the same */
        if (json_is_false(en))
            json_object_set_new(cb, "failure_threshold", json_integer(1000000));
        json_object_del(cb, "enabled");
    }
    return out;
fail:
    json_decref(out);
    return NULL;
}

static int ch_check_config(json_t *cfg, struct sl_err *err)
{
    static const char *const names[] = {"database", "table", "dedup_column", NULL};
    for (const char *const *k = names; *k; k++) {
        const char *v = json_string_value(json_object_get(cfg, *k));
        if (v && !ident_ok(v)) {
            char path[64];
            snprintf(path, sizeof(path), "config.%s", *k);
            return sl_config_error(err, path,
                                   "letters, digits and '_', not starting with a digit (at most "
                                   "%d)",
                                   NAME_MAX_LEN);
        }
    }
    if (json_object_get(cfg, "password") && json_object_get(cfg, "access_token"))
        return sl_config_error(err, "config.access_token",
                               "give access_token or password, not both");
    const char *user = json_string_value(json_object_get(cfg, "username"));
    if (!*user || strpbrk(user, "\r\n"))
        return sl_config_error(err, "config.username", "must be a non-empty single line");
    static const char *const secrets[] = {"password", "access_token", NULL};
    for (const char *const *k = secrets; *k; k++) {
        const char *v = json_string_value(json_object_get(cfg, *k));
        if (v && strpbrk(v, "\r\n")) {
            char path[64];
            snprintf(path, sizeof(path), "config.%s", *k);
            return sl_config_error(err, path, "must be a single line");
        }
    }
    /* the seed validates its breaker at startup with these ranges (a disabled one excepted) */
    json_t *cb = json_object_get(cfg, "circuit_breaker");
    struct {
        const char *key;
        long long lo, hi;
    } rng[] = {{"failure_threshold", 1, 100},
               {"reset_timeout_secs", 1, 3600},
               {"success_threshold", 1, 10}};
    for (size_t i = 0; i < sizeof(rng) / sizeof(rng[0]); i++) {
        long long v = json_integer_value(json_object_get(cb, rng[i].key));
        if (json_object_get(cb, rng[i].key) && (v < rng[i].lo || v > rng[i].hi) &&
            !(i == 0 && v == 1000000)) {
            char path[80];
            snprintf(path, sizeof(path), "config.circuit_breaker.%s", rng[i].key);
            return sl_config_error(err, path, "must be between %lld and %lld", rng[i].lo,
                                   rng[i].hi);
        }
    }
    return 0;
}

/* ---- the sink ---- */

struct ch {
    const struct sl_sink_ctx *ctx;
    const char *db, *table, *user, *password, *token, *dedup;
    int gzip, lz4, validation, skip_invalid, payload_mapping;
    long timeout_ms;
    char *insert_url, *query_url;
    CURL *curl;
    struct sl_httpc_resp resp;
    char **cols; /* validation: the table's columns, sorted */
    size_t ncols;
    int uncertain; /* rows of the next batch may be in the table already (dedup check due) */
    /* per batch */
    struct sl_buf rows, body, zbody, scratch, scratch2;
    size_t *off, *len, *sent, *reject;
    unsigned char *state; /* per record: ST_* */
    size_t cap;
    const uint8_t *wire; /* what insert() sends: c->rows when every row goes, else c->body */
    size_t wire_len;
    char reasons[256]; /* why each refused row was refused ("seq N: ...; seq M: ..."): the
                        * outcome has one error for all the records it refuses */
    /* max_in_flight > 1: inserts on a curl multi handle, oldest first (a ring) */
    CURLM *multi;
    struct chflight *fl;
    unsigned nfl, fhead, fcount;
    int careful; /* a pipelined insert failed: the next batch goes the careful way */
    /* the seq ranges inserts stored lately: after a pipelined failure the framework sends the
     * failed batch and the ones after it again, and rows of these ranges are not inserted twice
     * (a ring: the oldest are forgotten) */
    struct {
        char strand[128];
        uint64_t from, to;
    } inserted[CH_INSERTED];
    unsigned ninserted;
};

/* One insert on the multi handle, or the outcome of a batch send() decided itself. */
struct chflight {
    CURL *easy;
    struct sl_buf body;
    struct sl_httpc_resp resp;
    struct curl_slist *hdrs;
    int active;  /* on the multi handle, not answered yet */
    int decided; /* the outcome below is final (out.reject points into reject) */
    CURLcode cc;
    struct sl_outcome out;
    enum sl_result r;
    size_t *reject, cap_reject;
    char strand[128];
    uint64_t first_seq, n;
};

enum { ST_SEND, ST_PRESENT, ST_REJECT };

static void free_cols(struct ch *c)
{
    for (size_t i = 0; i < c->ncols; i++)
        free(c->cols[i]);
    free(c->cols);
    c->cols = NULL;
    c->ncols = 0;
}

static void ch_close(void *self)
{
    struct ch *c = self;
    if (!c)
        return;
    for (unsigned i = 0; c->fl && i < c->nfl; i++) {
        struct chflight *f = &c->fl[i];
        if (f->active)
            curl_multi_remove_handle(c->multi, f->easy);
        curl_easy_cleanup(f->easy);
        curl_slist_free_all(f->hdrs);
        sl_buf_release(&f->body);
        sl_httpc_resp_release(&f->resp);
        free(f->reject);
    }
    free(c->fl);
    if (c->multi)
        curl_multi_cleanup(c->multi);
    free_cols(c);
    curl_easy_cleanup(c->curl);
    sl_httpc_resp_release(&c->resp);
    sl_buf_release(&c->rows);
    sl_buf_release(&c->body);
    sl_buf_release(&c->zbody);
    sl_buf_release(&c->scratch);
    sl_buf_release(&c->scratch2);
    free(c->off);
    free(c->len);
    free(c->sent);
    free(c->reject);
    free(c->state);
    free(c->insert_url);
    free(c->query_url);
    free(c);
}

static char *url_with(const char *url, const char *query)
{
    size_t ul = strlen(url);
    while (ul && url[ul - 1] == '/')
        ul--;
    size_t n = ul + strlen(query) + 4;
    char *u = malloc(n);
    if (u)
        snprintf(u, n, "%.*s/?%s", (int)ul, url, query);
    return u;
}

static int ch_open(void **self, const struct sl_sink_ctx *ctx, struct sl_sink_info *info,
                   struct sl_err *err)
{
    struct ch *c = calloc(1, sizeof(*c));
    if (!c)
        return sl_err_set(err, SL_E_NOMEM, "out_of_memory", "out of memory");
    const json_t *cfg = ctx->config;
    c->ctx = ctx;
    c->db = json_string_value(json_object_get(cfg, "database"));
    c->table = json_string_value(json_object_get(cfg, "table"));
    c->user = json_string_value(json_object_get(cfg, "username"));
    c->password = json_string_value(json_object_get(cfg, "password"));
    c->token = json_string_value(json_object_get(cfg, "access_token"));
    c->dedup = json_string_value(json_object_get(cfg, "dedup_column"));
    const char *comp = json_string_value(json_object_get(cfg, "compression"));
    c->gzip = strcmp(comp, "gzip") == 0;
    c->lz4 = strcmp(comp, "lz4") == 0;
    c->validation = json_is_true(json_object_get(cfg, "validation"));
    c->skip_invalid = json_is_true(json_object_get(cfg, "skip_invalid_rows"));
    c->payload_mapping = strcmp(json_string_value(json_object_get(cfg, "mapping")), "payload") == 0;
    c->timeout_ms = (long)json_integer_value(json_object_get(cfg, "timeout_ms"));
    c->uncertain = 1; /* a previous run may have inserted the first batch without knowing */
    const char *url = json_string_value(json_object_get(cfg, "url"));
    char q[600];
    /* names are identifiers (check_config): nothing to escape; one block per insert */
    snprintf(q, sizeof(q),
             "database=%s&query=INSERT%%20INTO%%20%s.%s%%20FORMAT%%20JSONEachRow"
             "&max_insert_block_size=1048576%s",
             c->db, c->db, c->table, c->lz4 ? "&decompress=1" : "");
    c->insert_url = url_with(url, q);
    snprintf(q, sizeof(q), "database=%s", c->db);
    c->query_url = url_with(url, q);
    c->curl = curl_easy_init();
    sl_httpc_resp_init(&c->resp, EXCERPT);
    sl_buf_init(&c->rows, 0);
    sl_buf_init(&c->body, 0);
    sl_buf_init(&c->zbody, 0);
    sl_buf_init(&c->scratch, 0);
    sl_buf_init(&c->scratch2, 0);
    if (!c->insert_url || !c->query_url || !c->curl) {
        ch_close(c);
        return sl_err_set(err, SL_E_NOMEM, "out_of_memory", "out of memory");
    }
    long long inflight = json_integer_value(json_object_get(cfg, "max_in_flight"));
    if (inflight > 1) {
        c->nfl = (unsigned)(inflight < CH_MAX_FLIGHT ? inflight : CH_MAX_FLIGHT);
        c->fl = calloc(c->nfl, sizeof(*c->fl));
        c->multi = c->fl ? curl_multi_init() : NULL;
        for (unsigned i = 0; c->multi && i < c->nfl; i++) {
            sl_buf_init(&c->fl[i].body, 0);
            sl_httpc_resp_init(&c->fl[i].resp, EXCERPT);
            if (!(c->fl[i].easy = curl_easy_init())) {
                curl_multi_cleanup(c->multi);
                c->multi = NULL;
            }
        }
        if (!c->multi) {
            ch_close(c);
            return sl_err_set(err, SL_E_NOMEM, "out_of_memory", "out of memory");
        }
        curl_multi_setopt(c->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)c->nfl);
        info->max_inflight = c->nfl;
    }
    info->batch_max = (uint64_t)json_integer_value(json_object_get(cfg, "batch_size"));
    info->linger_ms =
        (uint64_t)json_integer_value(json_object_get(cfg, "flush_interval_secs")) * 1000;
    *self = c;
    return 0;
}

/* One request to ClickHouse: body[0..len) POSTed to url (gzip-encoded when told), the answer in
 * c->resp (at most max_body bytes kept). */
static struct curl_slist *headers(const struct ch *c, int gz)
{
    struct curl_slist *h = NULL;
    char line[1200];
    snprintf(line, sizeof(line), "X-ClickHouse-User: %s", c->user);
    h = curl_slist_append(h, line);
    if (c->password) {
        snprintf(line, sizeof(line), "X-ClickHouse-Key: %s", c->password);
        h = curl_slist_append(h, line);
    }
    if (c->token) {
        snprintf(line, sizeof(line), "Authorization: Bearer %s", c->token);
        h = curl_slist_append(h, line);
    }
    if (gz)
        h = curl_slist_append(h, "Content-Encoding: gzip");
    return curl_slist_append(h, "Expect:");
}

static CURLcode request(struct ch *c, const char *url, const void *body, size_t len, int gz,
                        size_t max_body, long *status)
{
    struct curl_slist *h = headers(c, gz);
    sl_httpc_resp_release(&c->resp);
    sl_httpc_resp_init(&c->resp, max_body);
    CURLcode cc = h ? sl_httpc_send(c->curl, "POST", url, h, body, len, c->timeout_ms, &c->resp,
                                    c->ctx->cancelled, c->ctx->arg, status)
                    : CURLE_OUT_OF_MEMORY;
    curl_slist_free_all(h);
    return cc;
}

/* "why" of a failed request: curl's error, or ClickHouse's message. */
static void describe_resp(const struct sl_httpc_resp *r, CURLcode cc, long status, char *out,
                          size_t n)
{
    if (cc != CURLE_OK) {
        snprintf(out, n, "ClickHouse unreachable: %s",
                 sl_httpc_denied() ? sl_httpc_denied() : curl_easy_strerror(cc));
        return;
    }
    char msg[400];
    sl_ch_message((const char *)r->body.data, r->body.len, msg, sizeof(msg));
    snprintf(out, n, "ClickHouse answered %ld: %.200s", status, msg[0] ? msg : "(no message)");
}

static void describe(const struct ch *c, CURLcode cc, long status, char *out, size_t n)
{
    describe_resp(&c->resp, cc, status, out, n);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int has_col(const struct ch *c, const char *name)
{
    return bsearch(&name, c->cols, c->ncols, sizeof(char *), cmp_str) != NULL;
}

/* Reads the table's columns (validation). 0, 1 if the table has none (it does not exist), -1
 * with why on a failed request. */
static int load_cols(struct ch *c, char *why, size_t n)
{
    char sql[512];
    snprintf(sql, sizeof(sql),
             "SELECT name FROM system.columns WHERE database = '%s' AND table = '%s' FORMAT "
             "TabSeparated",
             c->db, c->table);
    long status = 0;
    CURLcode cc = request(c, c->query_url, sql, strlen(sql), 0, 1 << 20, &status);
    if (cc != CURLE_OK || status != 200) {
        describe(c, cc, status, why, n);
        return -1;
    }
    free_cols(c);
    const char *p = (const char *)c->resp.body.data, *end = p + c->resp.body.len;
    while (p && p < end && c->ncols < MAX_COLS) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t l = nl ? (size_t)(nl - p) : (size_t)(end - p);
        char **nc = realloc(c->cols, (c->ncols + 1) * sizeof(char *));
        if (!nc || !(nc[c->ncols] = strndup(p, l))) {
            c->cols = nc ? nc : c->cols;
            snprintf(why, n, "out of memory");
            return -1;
        }
        c->cols = nc;
        c->ncols++;
        p = nl ? nl + 1 : end;
    }
    if (c->ncols) /* qsort(NULL, 0) is undefined (UBSan: a table that does not exist) */
        qsort(c->cols, c->ncols, sizeof(char *), cmp_str);
    return c->ncols ? 0 : 1;
}

/* The columns validation needs and the table lacks, as ", "-separated text in out ("" if none). */
static void missing_cols(const struct ch *c, char *out, size_t n)
{
    out[0] = 0;
    size_t used = 0;
    for (const char *const *k = c->payload_mapping ? NULL : g_envelope_cols; k && *k; k++)
        if (!has_col(c, *k))
            used +=
                (size_t)snprintf(out + used, used < n ? n - used : 0, "%s%s", used ? ", " : "", *k);
    if (c->dedup && !has_col(c, c->dedup) && used < n)
        snprintf(out + used, n - used, "%s%s", used ? ", " : "", c->dedup);
}

/* The health check: SELECT 1 (the server answers and takes the login), then, with validation,
 * the table and the columns the rows need. */
static int ch_check(void *self, struct sl_err *err)
{
    struct ch *c = self;
    char why[400];
    long status = 0;
    CURLcode cc = request(c, c->query_url, "SELECT 1", 8, 0, EXCERPT, &status);
    if (cc != CURLE_OK || status != 200) {
        describe(c, cc, status, why, sizeof(why));
        return sl_err_set(err, SL_E_UNAVAIL, "unhealthy", "%s", why);
    }
    if (!c->validation)
        return 0;
    int rc = load_cols(c, why, sizeof(why));
    if (rc < 0)
        return sl_err_set(err, SL_E_UNAVAIL, "unhealthy", "%s", why);
    if (rc == 1)
        return sl_err_set(err, SL_E_UNAVAIL, "unhealthy", "table %s.%s does not exist", c->db,
                          c->table);
    missing_cols(c, why, sizeof(why));
    if (why[0])
        return sl_err_set(err, SL_E_UNAVAIL, "unhealthy", "table %s.%s has no column %s", c->db,
                          c->table, why);
    return 0;
}

/* ---- rows ---- */

/* Reallocates *pp to n elements of size each; 0, or -1 (*pp left as it was). */
static int resize(void *pp, size_t n, size_t each)
{
    void **p = pp, *q = realloc(*p, n * each);
    if (!q)
        return -1;
    *p = q;
    return 0;
}

static int grow(struct ch *c, size_t n)
{
    if (n <= c->cap)
        return 0;
    if (resize(&c->off, n, sizeof(size_t)) < 0 || resize(&c->len, n, sizeof(size_t)) < 0 ||
        resize(&c->sent, n, sizeof(size_t)) < 0 || resize(&c->reject, n, sizeof(size_t)) < 0 ||
        resize(&c->state, n, 1) < 0)
        return -1;
    c->cap = n;
    return 0;
}

/* Adds why record seq was refused to c->reasons, as far as there is room. */
static void add_reason(struct ch *c, uint64_t seq, const char *why)
{
    size_t used = strlen(c->reasons), room = sizeof(c->reasons) - used;
    if (room > 24)
        snprintf(c->reasons + used, room, "%sseq %llu: %.120s", used ? "; " : "",
                 (unsigned long long)seq, why);
}

/* "2023-11-14T22:13:20.123Z" */
static void iso_ms(uint64_t ms, char *out, size_t n)
{
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    char day[32];
    strftime(day, sizeof(day), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, n, "%.24s.%03uZ", day, (unsigned)(ms % 1000));
}

/* The payload's fields that have no column (validation, mapping payload): the first one's name
 * in why; 0 if every field has one. */
static int unknown_field(const struct ch *c, const struct sl_rec *r, char *why, size_t n)
{
    const uint8_t *p = r->payload, *end = r->payload + r->payload_len;
    uint32_t nk;
    if (sl_mp_read_map(&p, end, &nk) < 0)
        return 0;
    for (uint32_t i = 0; i < nk; i++) {
        const char *k;
        uint32_t kl;
        if (sl_mp_read_str(&p, end, &k, &kl) < 0)
            return 0; /* not a JSON object: the encoder says so */
        char name[NAME_MAX_LEN * 2 + 1];
        if (kl < sizeof(name)) {
            memcpy(name, k, kl);
            name[kl] = 0;
        }
        if (kl >= sizeof(name) || !has_col(c, name)) {
            snprintf(why, n, "field '%.*s' has no column in %s.%s (validation)",
                     (int)(kl < 120 ? kl : 120), k, c->db, c->table);
            return 1;
        }
        long vl = sl_mp_skip(p, (size_t)(end - p), 64);
        if (vl < 0)
            return 0;
        p += vl;
    }
    return 0;
}

/* Appends record r's row (one JSON object, no newline) to out. 0, or -1 with why. */
static int make_row(struct ch *c, const char *strand, const struct sl_rec *r, uint64_t now_ms,
                    struct sl_buf *out, char *why, size_t n)
{
    struct sl_jerr je;
    size_t used;
    if (c->payload_mapping) {
        if (sl_mp_type(r->payload, r->payload + r->payload_len) != SL_MP_MAP) {
            snprintf(why, n, "the payload is not a JSON object (mapping payload needs one)");
            return -1;
        }
        if (c->validation && c->ncols && unknown_field(c, r, why, n))
            return -1;
        size_t at = out->len;
        if (c->dedup) { /* {"<col>":"<hash>" then the object's members */
            sl_buf_putc(out, '{');
            sl_buf_json_str(out, c->dedup, strlen(c->dedup));
            sl_buf_puts(out, ":\"");
            sl_buf_hex(out, r->hash, SL_REC_HASH_LEN);
            sl_buf_putc(out, '"');
        }
        size_t obj = out->len; /* the payload goes straight into the body */
        if (sl_mp_to_json(r->payload, r->payload_len, &used, out, 64, &je) < 0) {
            out->len = at;
            snprintf(why, n, "the payload cannot be JSON: %s", je.msg);
            return -1;
        }
        if (c->dedup && !out->failed) {
            if (out->len - obj == 2) { /* {} */
                out->len = obj;
                sl_buf_putc(out, '}');
            } else {
                out->data[obj] = ','; /* its '{' joins the hash's member */
            }
        }
        return out->failed ? -1 : 0;
    }
    struct sl_buf *js = &c->scratch;
    sl_buf_reset(js);
    if (sl_mp_to_json(r->payload, r->payload_len, &used, js, 64, &je) < 0) {
        snprintf(why, n, "the payload cannot be JSON: %s", je.msg);
        return -1;
    }
    sl_buf_putc(out, '{');
    if (c->dedup) {
        sl_buf_json_str(out, c->dedup, strlen(c->dedup));
        sl_buf_puts(out, ":\"");
        sl_buf_hex(out, r->hash, SL_REC_HASH_LEN);
        sl_buf_puts(out, "\",");
    }
    char ts[40], now[40];
    iso_ms(r->timestamp_ms, ts, sizeof(ts));
    iso_ms(now_ms, now, sizeof(now));
    sl_buf_printf(out, "\"event_type\":\"%s\",\"stream\":",
                  (r->flags & SL_REC_TOMBSTONE) ? "tombstone" : "write");
    sl_buf_json_str(out, strand, strlen(strand));
    sl_buf_puts(out, ",\"namespace\":");
    sl_buf_json_str(out, r->source, r->source_len);
    sl_buf_printf(out, ",\"timestamp\":\"%s\",\"data\":", ts);
    sl_buf_json_str(out, (const char *)js->data, js->len);
    struct sl_buf *meta = &c->scratch2;
    sl_buf_reset(meta);
    sl_buf_printf(meta, "{\"seq\":%llu,\"record_hash\":\"", (unsigned long long)r->seq);
    sl_buf_hex(meta, r->hash, SL_REC_HASH_LEN);
    sl_buf_puts(meta, "\",\"agent_id\":");
    sl_buf_json_str(meta, r->source, r->source_len);
    sl_buf_putc(meta, '}');
    sl_buf_puts(out, ",\"metadata\":");
    sl_buf_json_str(out, (const char *)meta->data, meta->len);
    sl_buf_printf(out, ",\"_ingested_at\":\"%s\"}", now);
    if (out->failed || meta->failed) {
        snprintf(why, n, "out of memory");
        return -1;
    }
    return 0;
}

/* Makes the rows of b (c->rows, c->off/len; c->state ST_REJECT for those that cannot be rows,
 * with their reasons). Returns how many cannot, or -1 out of memory. */
static long make_rows(struct ch *c, const struct sl_batch *b)
{
    if (grow(c, b->n) < 0)
        return -1;
    sl_buf_reset(&c->rows);
    uint64_t now = c->ctx->host->now_ms();
    long bad = 0;
    c->reasons[0] = 0;
    for (size_t i = 0; i < b->n; i++) {
        char w[300];
        size_t at = c->rows.len;
        c->state[i] = ST_SEND;
        c->off[i] = at;
        if (make_row(c, b->strand, &b->recs[i], now, &c->rows, w, sizeof(w)) < 0) {
            if (c->rows.failed)
                return -1;
            c->rows.len = at;
            c->state[i] = ST_REJECT;
            add_reason(c, b->recs[i].seq, w);
            bad++;
        } else {
            sl_buf_putc(&c->rows, '\n');
        }
        c->len[i] = c->rows.len - at;
    }
    return c->rows.failed ? -1 : bad;
}

/* Hashes per dedup query: 2000 quoted hashes are ~134 KB, within ClickHouse's max_query_size
 * (256 KiB by default). */
#define DEDUP_CHUNK 2000

/* Marks ST_PRESENT the rows [from, to) of b whose record hash the table has. How many, or -1
 * with the failure in out. */
static long mark_chunk(struct ch *c, const struct sl_batch *b, size_t from, size_t to,
                       struct sl_outcome *out)
{
    struct sl_buf *q = &c->body;
    sl_buf_reset(q);
    sl_buf_printf(q, "SELECT DISTINCT %s FROM %s.%s WHERE %s IN (", c->dedup, c->db, c->table,
                  c->dedup);
    for (size_t i = from; i < to; i++) {
        sl_buf_puts(q, i > from ? ",'" : "'");
        sl_buf_hex(q, b->recs[i].hash, SL_REC_HASH_LEN);
        sl_buf_putc(q, '\'');
    }
    sl_buf_puts(q, ") FORMAT TabSeparated");
    if (q->failed)
        return -1;
    long status = 0;
    CURLcode cc = request(c, c->query_url, q->data, q->len, 0, (to - from) * 66 + EXCERPT, &status);
    if (cc != CURLE_OK || status != 200) {
        sl_httpc_outcome(cc, status, &c->resp, out);
        describe(c, cc, status, out->error, sizeof(out->error));
        return -1;
    }
    const char *p = (const char *)c->resp.body.data, *end = p + c->resp.body.len;
    size_t found = 0, at = from;
    for (; p && p + 64 <= end; p += 65) {
        uint8_t h[SL_REC_HASH_LEN];
        if (sl_hex_decode(p, 64, h, sizeof(h)) < 0)
            break;
        /* the rows present are usually a run: look on from the last one found */
        for (size_t k = 0; k < to - from; k++, at = at + 1 < to ? at + 1 : from)
            if (c->state[at] == ST_SEND && memcmp(b->recs[at].hash, h, SL_REC_HASH_LEN) == 0) {
                c->state[at] = ST_PRESENT;
                found++;
                break;
            }
    }
    return (long)found;
}

/* With dedup_column, after a failure or a start: marks ST_PRESENT the rows whose record hash the
 * table has already. 0, or -1 with the failure in out. */
static int mark_present(struct ch *c, const struct sl_batch *b, struct sl_outcome *out)
{
    size_t found = 0;
    for (size_t from = 0; from < b->n; from += DEDUP_CHUNK) {
        long f = mark_chunk(c, b, from, from + DEDUP_CHUNK < b->n ? from + DEDUP_CHUNK : b->n, out);
        if (f < 0)
            return -1;
        found += (size_t)f;
    }
    if (found)
        c->ctx->host->log(c->ctx->id, 1, "%zu of %zu rows are in %s.%s already: not inserted again",
                          found, b->n, c->db, c->table);
    return 0;
}

/* The rows in state ST_SEND (all of them, or only row `only` if it is not -1) into c->body, their
 * indexes in c->sent. Returns how many. */
static size_t build_body(struct ch *c, const struct sl_batch *b, long only)
{
    size_t k = 0;
    sl_buf_reset(&c->body);
    for (size_t i = 0; i < b->n; i++) {
        if (c->state[i] != ST_SEND || (only >= 0 && (size_t)only != i))
            continue;
        sl_buf_append(&c->body, c->rows.data + c->off[i], c->len[i]);
        c->sent[k++] = i;
    }
    c->wire = c->body.data;
    c->wire_len = c->body.len;
    return k;
}

/* The same when every row of b goes (the usual batch): the rows as they were made, no copy. */
static size_t all_rows(struct ch *c, const struct sl_batch *b)
{
    for (size_t i = 0; i < b->n; i++)
        if (c->state[i] != ST_SEND)
            return build_body(c, b, -1);
    for (size_t i = 0; i < b->n; i++)
        c->sent[i] = i;
    sl_buf_reset(&c->body);
    c->wire = c->rows.data;
    c->wire_len = c->rows.len;
    return b->n;
}

/* The request body of rows[0..len) in z (compression lz4 or gzip); 0, or -1 with why. */
static int compress_rows(const struct ch *c, const void *rows, size_t len, struct sl_buf *z,
                         char *why, size_t n)
{
    struct sl_err e = {0};
    sl_buf_reset(z);
    if (c->lz4 && sl_ch_lz4_blocks(rows, len, z) < 0) {
        snprintf(why, n, "lz4: cannot compress");
        return -1;
    }
    if (c->gzip && sl_ff_compress(SL_FF_GZIP, rows, len, z, &e) < 0) {
        snprintf(why, n, "gzip: %.200s", e.msg);
        return -1;
    }
    return 0;
}

/* Sends c->body as an insert: 0 inserted, else the class of the failure (1 + SL_CH_*) with out
 * filled; *row the 1-based row ClickHouse named, or 0. */
static int insert(struct ch *c, struct sl_outcome *out, long *row)
{
    const void *body = c->wire;
    size_t len = c->wire_len;
    *row = 0;
    if (c->gzip || c->lz4) {
        if (compress_rows(c, c->wire, c->wire_len, &c->zbody, out->error, sizeof(out->error)) < 0)
            return 1 + SL_CH_TRANSIENT;
        body = c->zbody.data;
        len = c->zbody.len;
    }
    long status = 0;
    CURLcode cc = request(c, c->insert_url, body, len, c->gzip, EXCERPT, &status);
    enum sl_result r = sl_httpc_outcome(cc, status, &c->resp, out);
    if (r == SL_R_OK)
        return 0;
    describe(c, cc, status, out->error, sizeof(out->error));
    if (r == SL_R_NOT_CONNECTED)
        return 1 + SL_CH_TRANSIENT;
    int code;
    if (sl_ch_parse_error((const char *)c->resp.body.data, c->resp.body.len, &code, row) < 0)
        return 1 + SL_CH_TRANSIENT;
    return 1 + (int)sl_ch_classify(code);
}

/* The outcome of a batch whose rows are all in a final state (ST_PRESENT counts as inserted). */
static enum sl_result finish(struct ch *c, const struct sl_batch *b, struct sl_outcome *out)
{
    size_t nrej = 0;
    for (size_t i = 0; i < b->n; i++)
        if (c->state[i] == ST_REJECT)
            c->reject[nrej++] = i;
    c->uncertain = 0;
    if (!nrej)
        return SL_R_OK;
    snprintf(out->error, sizeof(out->error), "%s", c->reasons);
    out->status = 0;
    out->reject = c->reject;
    out->n_reject = nrej;
    return SL_R_REJECT;
}

static enum sl_result fail_all(struct sl_outcome *out, const char *why)
{
    if (why)
        snprintf(out->error, sizeof(out->error), "%.250s", why);
    out->accepted = 0;
    out->reject = NULL; /* every record of the batch */
    return SL_R_REJECT;
}

/* After a failure that is not the rows': a login, a table or column the setup lacks, the server
 * or the network. The rows wait; the columns are read again (the table may have changed). */
static enum sl_result transient(struct ch *c, int cls, struct sl_outcome *out, size_t accepted)
{
    c->uncertain = 1;
    out->accepted = accepted;
    if (c->validation && cls == 1 + SL_CH_CONFIG) {
        char why[300];
        load_cols(c, why, sizeof(why));
    }
    return out->status == 0 ? SL_R_NOT_CONNECTED : SL_R_RETRY;
}

/* skip_invalid_rows, a refused row that ClickHouse did not name: the rows go one by one. */
static enum sl_result one_by_one(struct ch *c, const struct sl_batch *b, struct sl_outcome *out)
{
    for (size_t i = 0; i < b->n; i++) {
        if (c->state[i] != ST_SEND)
            continue;
        build_body(c, b, (long)i);
        long row;
        int cls = insert(c, out, &row);
        if (cls == 1 + SL_CH_ROW) {
            c->state[i] = ST_REJECT;
            add_reason(c, b->recs[i].seq, out->error);
        } else if (cls) { /* rows before i are in (or refused): the batch resumes at the first
                           * refused one, sent again with the rest */
            size_t acc = i;
            for (size_t j = 0; j < i; j++)
                if (c->state[j] == ST_REJECT) {
                    acc = j;
                    break;
                }
            return transient(c, cls, out, acc);
        } else {
            c->state[i] = ST_PRESENT;
        }
    }
    return finish(c, b, out);
}

/* The rows make_rows() made of b (bad of them could not be rows), inserted one request at a time:
 * refused rows isolated or dead-lettering the batch, rows already in the table (ST_PRESENT)
 * left out. */
static enum sl_result send_rows(struct ch *c, const struct sl_batch *b, long bad,
                                struct sl_outcome *out)
{
    if (bad < 0) {
        snprintf(out->error, sizeof(out->error), "out of memory");
        return SL_R_RETRY;
    }
    if (bad && !c->skip_invalid)
        return fail_all(out, c->reasons);
    if (c->dedup && c->uncertain && mark_present(c, b, out) < 0)
        return transient(c, 1 + SL_CH_TRANSIENT, out, 0);
    for (;;) {
        size_t k = all_rows(c, b);
        if (!k)
            break;
        if (c->body.failed) {
            snprintf(out->error, sizeof(out->error), "out of memory");
            return SL_R_RETRY;
        }
        long row;
        int cls = insert(c, out, &row);
        if (!cls)
            break;
        if (cls != 1 + SL_CH_ROW)
            return transient(c, cls, out, 0);
        if (!c->skip_invalid)
            return fail_all(out, NULL);
        if (row < 1 || (size_t)row > k) /* which one is not said */
            return one_by_one(c, b, out);
        c->state[c->sent[row - 1]] = ST_REJECT; /* the rows before it parsed: the rest again */
        add_reason(c, b->recs[c->sent[row - 1]].seq, out->error);
    }
    return finish(c, b, out);
}

/* ---- several inserts in flight (max_in_flight > 1) ---- */

/* Marks ST_PRESENT the rows of b that a pipelined insert stored already. How many. */
static size_t mark_inserted(struct ch *c, const struct sl_batch *b)
{
    size_t found = 0;
    uint64_t first = b->recs[0].seq, end = first + b->n;
    for (unsigned k = 0; k < CH_INSERTED && k < c->ninserted; k++) {
        if (c->inserted[k].to <= first || c->inserted[k].from >= end ||
            strcmp(c->inserted[k].strand, b->strand ? b->strand : ""))
            continue;
        for (size_t i = 0; i < b->n; i++)
            if (c->state[i] == ST_SEND && b->recs[i].seq >= c->inserted[k].from &&
                b->recs[i].seq < c->inserted[k].to) {
                c->state[i] = ST_PRESENT;
                found++;
            }
    }
    return found;
}

static void add_inserted(struct ch *c, const char *strand, uint64_t from, uint64_t to)
{
    unsigned k = c->ninserted++ % CH_INSERTED;
    snprintf(c->inserted[k].strand, sizeof(c->inserted[k].strand), "%s", strand);
    c->inserted[k].from = from;
    c->inserted[k].to = to;
}

/* The outcome of f once its transfer ended. */
static void land(struct ch *c, struct chflight *f)
{
    long status = 0;
    if (f->cc == CURLE_OK)
        curl_easy_getinfo(f->easy, CURLINFO_RESPONSE_CODE, &status);
    enum sl_result r = sl_httpc_outcome(f->cc, status, &f->resp, &f->out);
    if (r == SL_R_OK) {
        add_inserted(c, f->strand, f->first_seq, f->first_seq + f->n);
    } else {
        /* sent again the careful way, which tells a refused row from the rest (and, with
         * dedup_column, first asks which rows made it) */
        describe_resp(&f->resp, f->cc, status, f->out.error, sizeof(f->out.error));
        c->uncertain = 1;
        c->careful = 1;
        if (r == SL_R_REJECT)
            r = SL_R_RETRY;
    }
    f->r = r;
    f->decided = 1;
    f->active = 0;
}

/* Lands the inserts whose transfers ended. */
static void collect(struct ch *c)
{
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(c->multi, &left)))
        for (unsigned i = 0; m->msg == CURLMSG_DONE && i < c->nfl; i++)
            if (c->fl[i].active && c->fl[i].easy == m->easy_handle) {
                c->fl[i].cc = m->data.result;
                curl_multi_remove_handle(c->multi, m->easy_handle);
                land(c, &c->fl[i]);
            }
}

/* Puts c->rows (every row of the batch) on the wire as f's insert. 0, or -1 with f->out.error. */
static int start_insert(struct ch *c, struct chflight *f)
{
    if (c->gzip || c->lz4) {
        if (compress_rows(c, c->rows.data, c->rows.len, &f->body, f->out.error,
                          sizeof(f->out.error)) < 0)
            return -1;
    } else { /* the rows as they are: the buffers change places */
        struct sl_buf t = f->body;
        f->body = c->rows;
        c->rows = t;
    }
    curl_slist_free_all(f->hdrs);
    f->hdrs = headers(c, c->gzip);
    sl_httpc_resp_reset(&f->resp);
    sl_httpc_prepare(f->easy, "POST", c->insert_url, f->hdrs, f->body.data, f->body.len,
                     c->timeout_ms, &f->resp);
    if (!f->hdrs || f->body.failed || curl_multi_add_handle(c->multi, f->easy) != CURLM_OK) {
        snprintf(f->out.error, sizeof(f->out.error), "out of memory");
        return -1;
    }
    f->active = 1;
    int running;
    curl_multi_perform(c->multi, &running); /* start it now */
    return 0;
}

/* After the careful way: remembers which rows of b are in the table (all but the refused ones
 * when it succeeded or refused some; the accepted prefix when it is to be retried). */
static void remember(struct ch *c, const struct sl_batch *b, enum sl_result r,
                     const struct sl_outcome *o)
{
    int all = r == SL_R_OK || (r == SL_R_REJECT && o->reject && o->n_reject);
    size_t end = all ? b->n : o->accepted < b->n ? o->accepted : b->n;
    for (size_t i = 0; i < end;) { /* runs of stored rows */
        if (c->state[i] == ST_REJECT) {
            i++;
            continue;
        }
        size_t j = i;
        while (j < end && c->state[j] != ST_REJECT)
            j++;
        add_inserted(c, b->strand ? b->strand : "", b->recs[i].seq, b->recs[j - 1].seq + 1);
        i = j;
    }
}

/* Keeps r and out as f's outcome (a batch answered inside send()). */
static void decide(struct chflight *f, enum sl_result r, const struct sl_outcome *out)
{
    f->out = *out;
    f->r = r;
    f->decided = 1;
    if (out->reject && out->n_reject) {
        if (out->n_reject > f->cap_reject) {
            size_t *t = realloc(f->reject, out->n_reject * sizeof(*t));
            if (!t) {
                f->r = SL_R_RETRY;
                f->out.reject = NULL;
                f->out.n_reject = 0;
                snprintf(f->out.error, sizeof(f->out.error), "out of memory");
                return;
            }
            f->reject = t;
            f->cap_reject = out->n_reject;
        }
        memcpy(f->reject, out->reject, out->n_reject * sizeof(*f->reject));
        f->out.reject = f->reject;
    }
}

/* A batch whose rows all go (no refused row, none stored already, no doubt after a failure) is
 * one insert on the multi handle; any other goes the careful way at once (the inserts in flight
 * go on meanwhile). Either way flush() reports it, oldest first. */
static enum sl_result ch_send(void *self, const struct sl_batch *b, struct sl_outcome *out)
{
    struct ch *c = self;
    if (!c->multi)
        return send_rows(c, b, make_rows(c, b), out);
    if (b->n == 0)
        return SL_R_OK;
    if (c->fcount == c->nfl) { /* the framework keeps within max_inflight */
        snprintf(out->error, sizeof(out->error), "more inserts than max_in_flight");
        return SL_R_RETRY;
    }
    struct chflight *f = &c->fl[(c->fhead + c->fcount++) % c->nfl];
    memset(&f->out, 0, sizeof(f->out));
    f->out.retry_after_ms = -1;
    f->decided = f->active = 0;
    snprintf(f->strand, sizeof(f->strand), "%s", b->strand ? b->strand : "");
    f->first_seq = b->recs[0].seq;
    f->n = b->n;
    long bad = make_rows(c, b);
    size_t present = bad < 0 ? 0 : mark_inserted(c, b);
    if (bad == 0 && !present && !c->careful && !(c->dedup && c->uncertain)) {
        if (start_insert(c, f) < 0)
            decide(f, SL_R_RETRY, &f->out);
        return SL_R_QUEUED;
    }
    struct sl_outcome o;
    memset(&o, 0, sizeof(o));
    o.retry_after_ms = -1;
    enum sl_result r = send_rows(c, b, bad, &o);
    if (c->fcount == 1) /* nothing else in flight: the batch the framework sent again */
        c->careful = 0;
    remember(c, b, r, &o);
    decide(f, r, &o);
    return SL_R_QUEUED;
}

static enum sl_result ch_flush(void *self, struct sl_outcome *out)
{
    struct ch *c = self;
    if (!c->multi || !c->fcount) {
        snprintf(out->error, sizeof(out->error), "no insert in flight");
        return SL_R_RETRY;
    }
    struct chflight *f = &c->fl[c->fhead];
    while (!f->decided) {
        int running;
        curl_multi_perform(c->multi, &running);
        collect(c);
        if (f->decided)
            break;
        if (c->ctx->cancelled && c->ctx->cancelled(c->ctx->arg)) {
            for (unsigned i = 0; i < c->nfl; i++) /* a disable aborts every insert */
                if (c->fl[i].active) {
                    curl_multi_remove_handle(c->multi, c->fl[i].easy);
                    c->fl[i].cc = CURLE_ABORTED_BY_CALLBACK;
                    land(c, &c->fl[i]);
                }
            break;
        }
        curl_multi_poll(c->multi, NULL, 0, 20, NULL);
    }
    c->fhead = (c->fhead + 1) % c->nfl;
    c->fcount--;
    *out = f->out;
    return f->r;
}

/* 1 once the oldest insert is answered (flush() will not wait). */
static int ch_ready(void *self, int timeout_ms)
{
    struct ch *c = self;
    struct chflight *f = c->multi && c->fcount ? &c->fl[c->fhead] : NULL;
    int running;
    for (int round = 0; f && !f->decided && round < 2; round++) {
        if (round)
            curl_multi_poll(c->multi, NULL, 0, timeout_ms, NULL);
        curl_multi_perform(c->multi, &running);
        collect(c);
    }
    return !f || f->decided;
}

/* The request send() would make for b: "POST <path and query>\n" and the rows (uncompressed). */
static int ch_format(void *self, const struct sl_batch *b, uint8_t **bytes, size_t *len)
{
    struct ch *c = self;
    if (make_rows(c, b) != 0)
        return -1;
    struct sl_buf o;
    sl_buf_init(&o, 0);
    const char *path = strstr(c->insert_url, "/?");
    sl_buf_printf(&o, "POST %s\n", path ? path : c->insert_url);
    sl_buf_append(&o, c->rows.data, c->rows.len);
    if (o.failed) {
        sl_buf_release(&o);
        return -1;
    }
    *bytes = (uint8_t *)sl_buf_steal(&o, len);
    return *bytes ? 0 : -1;
}

static const struct sl_sink_ops ch_ops = {
    .open = ch_open,
    .send = ch_send,
    .flush = ch_flush,
    .check = ch_check,
    .format = ch_format,
    .close = ch_close,
    .ready = ch_ready,
};

const struct sl_connector sl_conn_clickhouse = {
    .abi = SL_CONNECTOR_ABI,
    .name = "clickhouse",
    .direction = SL_OUTBOUND,
    .category = "warehouse",
    .description = "Inserts records into a ClickHouse table over its HTTP interface (INSERT ... "
                   "FORMAT JSONEachRow, one per batch), the seed's envelope columns or the "
                   "payload's fields; dedup_column keeps retries from inserting a row twice.",
    .fields = f_clickhouse,
    .normalize = ch_normalize,
    .check_config = ch_check_config,
    .sink = &ch_ops,
};
