/* The supabase sink: inserts records as rows through Supabase's REST API (PostgREST), as bulk
 * inserts: POST <url>/rest/v1/<table> with a JSON array of rows, `apikey` and `Authorization:
 * Bearer` set to the key. Delivery policy is the framework's (include/sluice/connector.h).
 *
 * A row is the record's payload (a JSON object) for `mapping: payload`, into `table`; for
 * `mapping: boboyka` (the Boboyka mirror, src/boboyka/) it is a Boboyka event's data, into the
 * table of its record type, and records that are not Boboyka events are passed over. PostgREST
 * takes one table and one set of columns per request, so a batch goes out as one request per
 * (table, set of keys), all in flight together; with max_in_flight > 1 several batches are.
 *
 * Outcomes. A 2xx accepts the rows of a request. A 4xx (other than 401, 403, 408, 429) refuses
 * them for good: a request of several rows is then sent again row by row, so that only the rows
 * at fault are dead-lettered. Anything else (5xx, no answer, a timeout, a refused key) is
 * transient: the batch is retried from its first row not accepted. With dedup_column the rows
 * carry their record hash in that unique column and inserts ignore duplicates, so a retry after
 * an ambiguous timeout never adds a row twice. */
#include "boboyka/schema.h"
#include "connectors/httpc.h"
#include "core/buf.h"
#include "core/err.h"
#include "core/util.h"
#include "engine/kinds.h"
#include "formats/mp_jansson.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EXCERPT 4096 /* bytes of an answer kept, for the error text */
#define MAX_FLIGHT 16

static const char *const g_mappings[] = {"payload", "boboyka", NULL};

static const struct sl_field f_supabase[] = {
    {"url", SL_F_URL, 1, NULL, 0,
     "The Supabase project URL (https://<project>.supabase.co): rows go to <url>/rest/v1/<table>.",
     0, 0, NULL, NULL},
    {"key", SL_F_STRING, 1, NULL, SL_SECRET,
     "The API key (service_role for a server), sent as apikey and Authorization: Bearer.", 0, 0,
     NULL, NULL},
    {"table", SL_F_STRING, 0, NULL, 0,
     "The table every row goes to (mapping payload; required there).", 0, 0, NULL, NULL},
    {"mapping", SL_F_ENUM, 0, "\"payload\"", 0,
     "payload: a record's payload (a JSON object) is the row; boboyka: records are Boboyka "
     "events, each into the table of its record type (project_builds, build_queue, agent_health, "
     "agent_audit_log).",
     0, 0, g_mappings, NULL},
    {"dedup_column", SL_F_STRING, 0, NULL, 0,
     "A unique column that gets the record hash (hex): inserts use on_conflict and ignore "
     "duplicates, so a retry never adds a row twice.",
     0, 0, NULL, NULL},
    {"batch_size", SL_F_INT, 0, "500", 0, "Records per batch (one bulk insert per table).", 1,
     10000, NULL, NULL},
    {"max_in_flight", SL_F_INT, 0, "4", 0, "Batches in flight at once.", 1, MAX_FLIGHT, NULL, NULL},
    {NULL, 0, 0, NULL, 0, NULL, 0, 0, NULL, NULL},
};

static int sb_check_config(json_t *cfg, struct sl_err *err)
{
    const char *mapping = json_string_value(json_object_get(cfg, "mapping"));
    const char *table = json_string_value(json_object_get(cfg, "table"));
    const char *key = json_string_value(json_object_get(cfg, "key"));
    if (!key || !*key)
        return sl_config_error(err, "config.key", "must not be empty");
    if (strcmp(mapping, "payload") == 0 && (!table || !*table))
        return sl_config_error(err, "config.table", "required when mapping is payload");
    const char *dedup = json_string_value(json_object_get(cfg, "dedup_column"));
    for (const char *t = table; t && *t; t++) /* names go into the URL as they are */
        if (!((*t >= 'a' && *t <= 'z') || (*t >= 'A' && *t <= 'Z') || (*t >= '0' && *t <= '9') ||
              *t == '_' || *t == '.'))
            return sl_config_error(err, "config.table", "letters, digits, '_' and '.' only");
    for (const char *t = dedup; t && *t; t++)
        if (!((*t >= 'a' && *t <= 'z') || (*t >= 'A' && *t <= 'Z') || (*t >= '0' && *t <= '9') ||
              *t == '_'))
            return sl_config_error(err, "config.dedup_column", "letters, digits and '_' only");
    return 0;
}

/* One request: the rows of one table and set of keys. */
struct req {
    CURL *easy;
    struct curl_slist *hdrs;
    struct sl_buf body;
    struct sl_httpc_resp resp;
    size_t *idx, n; /* indexes into the batch of its rows, ascending */
    const char *table;
    uint64_t shape;
    int started, done;
    CURLcode cc;
};

/* One batch in flight: its requests, and each record's row. */
struct flight {
    uint64_t order; /* 0 = free */
    size_t n;       /* records */
    struct sl_buf rows;
    size_t *off, *len;   /* record i's row in rows; len 0 = nothing to send (passed over) */
    const char **tables; /* record i's table */
    uint64_t *shapes;
    size_t first_reject; /* a record whose row could not be made: its index, else n */
    struct req *reqs;
    size_t nreqs, cap;
    size_t *reject; /* the outcome's */
};

struct supabase {
    const struct sl_sink_ctx *ctx;
    char *base; /* <url>/rest/v1/ */
    const char *key, *table, *dedup;
    int boboyka;
    long timeout_ms;
    CURLM *multi;
    CURL *probe;
    struct flight flights[MAX_FLIGHT];
    unsigned nflights;
    uint64_t sent;
};

static void req_release(struct supabase *s, struct req *q)
{
    if (q->easy) {
        if (q->started && !q->done)
            curl_multi_remove_handle(s->multi, q->easy);
        curl_easy_cleanup(q->easy);
    }
    curl_slist_free_all(q->hdrs);
    sl_buf_release(&q->body);
    sl_httpc_resp_release(&q->resp);
    free(q->idx);
    memset(q, 0, sizeof(*q));
}

static void flight_reset(struct supabase *s, struct flight *f)
{
    for (size_t i = 0; i < f->nreqs; i++)
        req_release(s, &f->reqs[i]);
    f->nreqs = 0;
    f->order = 0;
    f->n = 0;
    sl_buf_reset(&f->rows);
}

static void sb_close(void *self)
{
    struct supabase *s = self;
    if (!s)
        return;
    for (unsigned i = 0; i < MAX_FLIGHT; i++) {
        struct flight *f = &s->flights[i];
        flight_reset(s, f);
        free(f->reqs);
        free(f->off);
        free(f->len);
        free(f->tables);
        free(f->shapes);
        free(f->reject);
        sl_buf_release(&f->rows);
    }
    if (s->multi)
        curl_multi_cleanup(s->multi);
    curl_easy_cleanup(s->probe);
    free(s->base);
    free(s);
}

static int sb_open(void **self, const struct sl_sink_ctx *ctx, struct sl_sink_info *info,
                   struct sl_err *err)
{
    struct supabase *s = calloc(1, sizeof(*s));
    if (!s)
        return sl_err_set(err, SL_E_NOMEM, "out_of_memory", "out of memory");
    const json_t *cfg = ctx->config;
    s->ctx = ctx;
    s->key = json_string_value(json_object_get(cfg, "key"));
    s->table = json_string_value(json_object_get(cfg, "table"));
    s->dedup = json_string_value(json_object_get(cfg, "dedup_column"));
    if (s->dedup && !*s->dedup)
        s->dedup = NULL;
    s->boboyka = strcmp(json_string_value(json_object_get(cfg, "mapping")), "boboyka") == 0;
    s->timeout_ms = (long)json_integer_value(json_object_get(cfg, "timeout_ms"));
    const char *url = json_string_value(json_object_get(cfg, "url"));
    size_t ul = strlen(url);
    while (ul && url[ul - 1] == '/')
        ul--;
    if ((s->base = malloc(ul + 10)))
        snprintf(s->base, ul + 10, "%.*s/rest/v1/", (int)ul, url);
    s->multi = curl_multi_init();
    s->probe = curl_easy_init();
    for (unsigned i = 0; i < MAX_FLIGHT; i++)
        sl_buf_init(&s->flights[i].rows, 0);
    if (!s->base || !s->multi || !s->probe) {
        sb_close(s);
        return sl_err_set(err, SL_E_NOMEM, "out_of_memory", "out of memory");
    }
    long long inflight = json_integer_value(json_object_get(cfg, "max_in_flight"));
    s->nflights = inflight > 1 ? (unsigned)inflight : 1;
    info->batch_max = (uint64_t)json_integer_value(json_object_get(cfg, "batch_size"));
    info->max_inflight = s->nflights > 1 ? s->nflights : 0;
    /* a few connections per batch in flight (one per table) */
    curl_multi_setopt(s->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)(s->nflights * 4));
    *self = s;
    return 0;
}

/* FNV-1a of one key, summed over the keys: the same set of keys in any order, the same shape. */
static uint64_t key_hash(const char *k)
{
    uint64_t h = 1469598103934665603ull;
    for (; *k; k++)
        h = (h ^ (uint8_t)*k) * 1099511628211ull;
    return h;
}

static int grow(void *pp, size_t each, size_t n)
{
    void **p = pp;
    void *q = realloc(*p, (n ? n : 1) * each);
    if (!q)
        return -1;
    *p = q;
    return 0;
}

/* Makes record r's row into f->rows (as index i). 1 made, 0 passed over (not a Boboyka event),
 * -1 the payload cannot be a row (why says so). */
static int make_row(struct supabase *s, struct flight *f, size_t i, const struct sl_rec *r,
                    char *why, size_t whylen)
{
    int rc = -1;
    /* the payload straight into a tree (no JSON text in between): one decode per row */
    const uint8_t *p = r->payload;
    json_t *row = sl_mp_to_jansson(&p, r->payload + r->payload_len, 128);
    if (s->boboyka) {
        int type = sl_bbk_payload_type(r->payload, r->payload_len);
        if (type < 0) {
            rc = 0; /* not a Boboyka event: passed over */
            goto out;
        }
        f->tables[i] = sl_bbk_table(type);
        json_object_del(row, SL_BBK_TAG); /* the data without its tag */
    } else {
        f->tables[i] = s->table;
    }
    if (!json_is_object(row)) {
        snprintf(why, whylen, "the payload is not a JSON object (a row needs one)");
        goto out;
    }
    if (s->dedup) {
        char hex[SL_REC_HASH_LEN * 2 + 1];
        sl_hex_encode(hex, r->hash, SL_REC_HASH_LEN);
        json_object_set_new(row, s->dedup, json_string(hex));
    }
    uint64_t shape = 0;
    const char *k;
    json_t *v;
    json_object_foreach(row, k, v) shape += key_hash(k);
    f->shapes[i] = shape;
    char *dump = json_dumps(row, JSON_COMPACT);
    if (!dump) {
        snprintf(why, whylen, "out of memory");
        goto out;
    }
    f->off[i] = f->rows.len;
    f->len[i] = strlen(dump);
    sl_buf_append(&f->rows, dump, f->len[i]);
    free(dump);
    rc = f->rows.failed ? -1 : 1;
    if (rc < 0)
        snprintf(why, whylen, "out of memory");
out:
    json_decref(row);
    return rc;
}

/* Adds a request for table/shape, or returns the one there is. */
static struct req *req_for(struct flight *f, const char *table, uint64_t shape, int alone)
{
    for (size_t j = 0; !alone && j < f->nreqs; j++)
        if (f->reqs[j].shape == shape && strcmp(f->reqs[j].table, table) == 0 &&
            !f->reqs[j].started)
            return &f->reqs[j];
    if (f->nreqs == f->cap) {
        size_t nc = f->cap ? f->cap * 2 : 4;
        if (grow(&f->reqs, sizeof(*f->reqs), nc) < 0)
            return NULL;
        f->cap = nc;
    }
    struct req *q = &f->reqs[f->nreqs++];
    memset(q, 0, sizeof(*q));
    q->table = table;
    q->shape = shape;
    sl_buf_init(&q->body, 0);
    sl_httpc_resp_init(&q->resp, EXCERPT);
    return q;
}

static int req_add(struct req *q, size_t i)
{
    if (grow(&q->idx, sizeof(*q->idx), q->n + 1) < 0)
        return -1;
    q->idx[q->n++] = i;
    return 0;
}

/* The request line and body of q (format() shows the same). */
static void req_body(const struct flight *f, struct req *q)
{
    sl_buf_reset(&q->body);
    if (q->n > 1)
        sl_buf_putc(&q->body, '[');
    for (size_t k = 0; k < q->n; k++) {
        if (k)
            sl_buf_putc(&q->body, ',');
        sl_buf_append(&q->body, f->rows.data + f->off[q->idx[k]], f->len[q->idx[k]]);
    }
    if (q->n > 1)
        sl_buf_putc(&q->body, ']');
}

static void req_url(const struct supabase *s, const struct req *q, char *url, size_t n)
{
    snprintf(url, n, "%s%s%s%s", s->base, q->table, s->dedup ? "?on_conflict=" : "",
             s->dedup ? s->dedup : "");
}

/* Starts q on the multi handle. 0 or -1. */
static int req_start(struct supabase *s, const struct flight *f, struct req *q)
{
    req_body(f, q);
    char h[1200];
    snprintf(h, sizeof(h), "apikey: %s", s->key);
    q->hdrs = curl_slist_append(q->hdrs, h);
    snprintf(h, sizeof(h), "Authorization: Bearer %s", s->key);
    q->hdrs = curl_slist_append(q->hdrs, h);
    q->hdrs = curl_slist_append(q->hdrs, "Content-Type: application/json");
    q->hdrs = curl_slist_append(q->hdrs, s->dedup ? "Prefer: return=minimal,"
                                                    "resolution=ignore-duplicates"
                                                  : "Prefer: return=minimal");
    q->hdrs = curl_slist_append(q->hdrs, "Expect:");
    if (!q->hdrs || q->body.failed || !(q->easy = curl_easy_init()))
        return -1;
    char url[2048];
    req_url(s, q, url, sizeof(url));
    sl_httpc_prepare(q->easy, "POST", url, q->hdrs, q->body.data, q->body.len, s->timeout_ms,
                     &q->resp);
    if (curl_multi_add_handle(s->multi, q->easy) != CURLM_OK)
        return -1;
    q->started = 1;
    return 0;
}

/* Makes the rows of b into the requests of flight f and starts them. */
static enum sl_result start(struct supabase *s, struct flight *f, const struct sl_batch *b,
                            struct sl_outcome *out)
{
    f->n = b->n;
    f->first_reject = b->n;
    f->nreqs = 0;
    sl_buf_reset(&f->rows);
    if (grow(&f->off, sizeof(size_t), b->n) < 0 || grow(&f->len, sizeof(size_t), b->n) < 0 ||
        grow(&f->tables, sizeof(char *), b->n) < 0 ||
        grow(&f->shapes, sizeof(uint64_t), b->n) < 0 || grow(&f->reject, sizeof(size_t), b->n) < 0)
        goto oom;
    for (size_t i = 0; i < b->n; i++) {
        f->len[i] = 0;
        char why[200];
        int m = make_row(s, f, i, &b->recs[i], why, sizeof(why));
        if (m < 0 && f->first_reject == b->n) {
            f->first_reject = i;
            snprintf(out->error, sizeof(out->error), "%s", why);
        }
        if (m <= 0)
            continue;
        struct req *q = req_for(f, f->tables[i], f->shapes[i], 0);
        if (!q || req_add(q, i) < 0)
            goto oom;
    }
    for (size_t j = 0; j < f->nreqs; j++)
        if (req_start(s, f, &f->reqs[j]) < 0)
            goto oom;
    f->order = ++s->sent;
    int running;
    curl_multi_perform(s->multi, &running); /* on their way now */
    return SL_R_QUEUED;
oom:
    flight_reset(s, f);
    snprintf(out->error, sizeof(out->error), "out of memory");
    return SL_R_RETRY;
}

/* Moves the transfers on and marks the requests that ended; returns how many of f's have not. */
static int collect(struct supabase *s, const struct flight *f)
{
    int running, left, pending = 0;
    curl_multi_perform(s->multi, &running);
    CURLMsg *m;
    while ((m = curl_multi_info_read(s->multi, &left))) {
        if (m->msg != CURLMSG_DONE)
            continue;
        for (unsigned i = 0; i < MAX_FLIGHT; i++)
            for (size_t j = 0; s->flights[i].order && j < s->flights[i].nreqs; j++) {
                struct req *q = &s->flights[i].reqs[j];
                if (q->started && !q->done && q->easy == m->easy_handle) {
                    q->done = 1;
                    q->cc = m->data.result;
                    curl_multi_remove_handle(s->multi, q->easy);
                }
            }
    }
    for (size_t j = 0; j < f->nreqs; j++)
        pending += f->reqs[j].started && !f->reqs[j].done;
    return pending;
}

/* Runs the multi handle until every started request of f has ended (or the connector is being
 * stopped: they end as aborted). */
static void wait_flight(struct supabase *s, struct flight *f)
{
    for (;;) {
        if (!collect(s, f))
            return;
        if (s->ctx->cancelled && s->ctx->cancelled(s->ctx->arg)) {
            for (size_t j = 0; j < f->nreqs; j++) {
                struct req *q = &f->reqs[j];
                if (q->started && !q->done) {
                    curl_multi_remove_handle(s->multi, q->easy);
                    q->done = 1;
                    q->cc = CURLE_ABORTED_BY_CALLBACK;
                }
            }
            return;
        }
        curl_multi_poll(s->multi, NULL, 0, 20, NULL);
    }
}

/* The error text of a request that failed: PostgREST's message when it gave one. */
static void describe(const struct supabase *s, const struct req *q, long status, char *out,
                     size_t n)
{
    if (q->cc == CURLE_OPERATION_TIMEDOUT) {
        snprintf(out, n, "Supabase did not answer within %ld ms (timeout)", s->timeout_ms);
        return;
    }
    if (q->cc != CURLE_OK) {
        snprintf(out, n, "Supabase unreachable: %s",
                 sl_httpc_denied() ? sl_httpc_denied() : curl_easy_strerror(q->cc));
        return;
    }
    const char *body = (const char *)q->resp.body.data;
    size_t len = q->resp.body.len;
    json_t *j = len ? json_loadb(body, len, 0, NULL) : NULL;
    const char *msg = json_string_value(json_object_get(j, "message"));
    if (msg)
        snprintf(out, n, "Supabase answered %ld: %.160s", status, msg);
    else
        snprintf(out, n, "Supabase answered %ld%s%.*s", status, len ? ": " : "",
                 (int)(len < 160 ? len : 160), len ? body : "");
    json_decref(j);
}

/* What became of a request: 0 accepted, 1 refused for good, 2 transient. */
static int judge(const struct supabase *s, const struct req *q, struct sl_outcome *out,
                 int *not_connected)
{
    long status = 0;
    if (q->cc == CURLE_OK)
        curl_easy_getinfo(q->easy, CURLINFO_RESPONSE_CODE, &status);
    struct sl_outcome o = {.retry_after_ms = -1};
    enum sl_result r = sl_httpc_outcome(q->cc, status, &q->resp, &o);
    if (r == SL_R_OK)
        return 0;
    if (r == SL_R_REJECT && (status == 401 || status == 403))
        r = SL_R_RETRY; /* a refused key is the config's, not the rows': they wait for it */
    if (!out->status) { /* the first failure speaks for the batch */
        out->status = o.status;
        memcpy(out->excerpt, o.excerpt, sizeof(out->excerpt));
        describe(s, q, status, out->error, sizeof(out->error));
    }
    if (o.retry_after_ms > out->retry_after_ms)
        out->retry_after_ms = o.retry_after_ms;
    if (r == SL_R_NOT_CONNECTED)
        *not_connected = 1;
    return r == SL_R_REJECT ? 1 : 2;
}

static int cmp_size(const void *a, const void *b)
{
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return x < y ? -1 : x > y;
}

/* Waits for flight f and reports it: rows a bulk insert refused are sent again one by one, so
 * that only those at fault are refused. */
static enum sl_result land(struct supabase *s, struct flight *f, struct sl_outcome *out)
{
    size_t n = f->n, nrej = 0, first_transient = n;
    int not_connected = 0;
    for (size_t pass = 0; pass < 2; pass++) {
        wait_flight(s, f);
        size_t nreqs = f->nreqs, split = 0;
        for (size_t j = 0; j < nreqs; j++) {
            struct req *q = &f->reqs[j];
            if (!q->done)
                continue;
            q->done = 0; /* judged */
            q->started = 0;
            int v = judge(s, q, out, &not_connected);
            if (v == 2 && q->idx[0] < first_transient)
                first_transient = q->idx[0];
            if (v == 1 && (q->n == 1 || pass == 1)) {
                for (size_t k = 0; k < q->n; k++)
                    f->reject[nrej++] = q->idx[k];
            } else if (v == 1) {
                for (size_t k = 0; k < q->n; k++) {
                    struct req *one = req_for(f, q->table, q->shape, 1);
                    q = &f->reqs[j]; /* req_for may move the array */
                    if (!one || req_add(one, q->idx[k]) < 0 || req_start(s, f, one) < 0) {
                        snprintf(out->error, sizeof(out->error), "out of memory");
                        first_transient = 0;
                        break;
                    }
                    split++;
                }
                out->status = 0; /* the rows alone will tell */
            }
        }
        if (!split)
            break;
    }
    if (f->first_reject < n)
        f->reject[nrej++] = f->first_reject;
    flight_reset(s, f);
    if (first_transient < n) {
        for (size_t k = 0; k < nrej; k++) /* a refused row before it is sent again too */
            if (f->reject[k] < first_transient)
                first_transient = f->reject[k];
        out->accepted = first_transient;
        return not_connected ? SL_R_NOT_CONNECTED : SL_R_RETRY;
    }
    if (!nrej)
        return SL_R_OK;
    qsort(f->reject, nrej, sizeof(size_t), cmp_size);
    out->reject = f->reject;
    out->n_reject = nrej;
    return SL_R_REJECT;
}

static struct flight *oldest(struct supabase *s)
{
    struct flight *o = NULL;
    for (unsigned i = 0; i < s->nflights; i++)
        if (s->flights[i].order && (!o || s->flights[i].order < o->order))
            o = &s->flights[i];
    return o;
}

static int sb_ready(void *self, int timeout_ms)
{
    struct supabase *s = self;
    struct flight *f = oldest(s);
    if (!f || !collect(s, f))
        return 1;
    curl_multi_poll(s->multi, NULL, 0, timeout_ms, NULL);
    return !collect(s, f);
}

static enum sl_result sb_flush(void *self, struct sl_outcome *out)
{
    struct supabase *s = self;
    struct flight *f = oldest(s);
    if (!f) {
        snprintf(out->error, sizeof(out->error), "no batch in flight");
        return SL_R_RETRY;
    }
    return land(s, f, out);
}

static enum sl_result sb_send(void *self, const struct sl_batch *b, struct sl_outcome *out)
{
    struct supabase *s = self;
    struct flight *f = NULL;
    for (unsigned i = 0; i < s->nflights && !f; i++)
        if (!s->flights[i].order)
            f = &s->flights[i];
    if (!f) { /* the framework keeps at most max_in_flight queued */
        snprintf(out->error, sizeof(out->error), "more batches than max_in_flight");
        return SL_R_RETRY;
    }
    enum sl_result r = start(s, f, b, out);
    if (r != SL_R_QUEUED || s->nflights > 1)
        return r;
    return land(s, f, out);
}

static int sb_check(void *self, struct sl_err *err)
{
    struct supabase *s = self;
    char msg[512];
    if (sl_httpc_probe(s->probe, s->base, s->timeout_ms, msg, sizeof(msg)) == 0)
        return 0;
    return sl_err_set(err, SL_E_UNAVAIL, "unhealthy", "Supabase unreachable: %s", msg);
}

/* Each request of the batch as "POST <path>\n<body>\n", in the order they would start. */
static int sb_format(void *self, const struct sl_batch *b, uint8_t **bytes, size_t *len)
{
    struct supabase *s = self;
    struct flight f = {0};
    sl_buf_init(&f.rows, 0);
    struct sl_buf out;
    sl_buf_init(&out, 0);
    int rc = 0;
    f.n = b->n;
    if (grow(&f.off, sizeof(size_t), b->n) < 0 || grow(&f.len, sizeof(size_t), b->n) < 0 ||
        grow(&f.tables, sizeof(char *), b->n) < 0 || grow(&f.shapes, sizeof(uint64_t), b->n) < 0)
        rc = -1;
    for (size_t i = 0; rc == 0 && i < b->n; i++) {
        char why[200];
        int m = make_row(s, &f, i, &b->recs[i], why, sizeof(why));
        struct req *q = m > 0 ? req_for(&f, f.tables[i], f.shapes[i], 0) : NULL;
        if (m < 0 || (m > 0 && (!q || req_add(q, i) < 0)))
            rc = -1;
    }
    for (size_t j = 0; rc == 0 && j < f.nreqs; j++) {
        char url[2048];
        req_body(&f, &f.reqs[j]);
        req_url(s, &f.reqs[j], url, sizeof(url));
        sl_buf_printf(&out, "POST %s\n", url + strlen(s->base) - strlen("/rest/v1/"));
        sl_buf_append(&out, f.reqs[j].body.data, f.reqs[j].body.len);
        sl_buf_putc(&out, '\n');
    }
    for (size_t j = 0; j < f.nreqs; j++)
        req_release(s, &f.reqs[j]);
    free(f.reqs);
    free(f.off);
    free(f.len);
    free(f.tables);
    free(f.shapes);
    sl_buf_release(&f.rows);
    if (rc < 0 || out.failed) {
        sl_buf_release(&out);
        return -1;
    }
    *bytes = (uint8_t *)sl_buf_steal(&out, len);
    return *bytes ? 0 : -1;
}

static const struct sl_sink_ops sb_ops = {.open = sb_open,
                                          .send = sb_send,
                                          .flush = sb_flush,
                                          .check = sb_check,
                                          .format = sb_format,
                                          .close = sb_close,
                                          .ready = sb_ready};

const struct sl_connector sl_conn_supabase = {
    .abi = SL_CONNECTOR_ABI,
    .name = "supabase",
    .direction = SL_OUTBOUND,
    .category = "database",
    .description = "Inserts records as rows through Supabase's REST API (PostgREST bulk inserts, "
                   "one per table and set of columns); the Boboyka mirror is one of these "
                   "(mapping boboyka).",
    .fields = f_supabase,
    .check_config = sb_check_config,
    .sink = &sb_ops,
};
