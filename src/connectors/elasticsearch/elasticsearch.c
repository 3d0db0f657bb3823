/* The Elasticsearch / OpenSearch sink (the StreamHouse seed's `elasticsearch-sink`, keys
 * exactly): a batch is one POST <connection.url>/_bulk of NDJSON action/source line pairs, an
 * `index` action per record (its payload, a JSON object, the document) and a `delete` for a
 * TOMBSTONE record. Delivery policy is the framework's (include/sluice/connector.h).
 *
 * Document ids. `document.id` names a payload field (a dotted path: "order.id") whose string or
 * number is the _id; without it the _id is the record hash. Either way a batch sent again (a
 * retry, a restart after kill -9) overwrites the same documents: no duplicates.
 *
 * Outcomes, per item of the _bulk answer. 2xx (and 404 for a delete: already gone) is done. 429,
 * 408 and 5xx are sent again alone: the sink remembers, for the records of the batch, which
 * items are done, so that the framework's retry (with its backoff) sends only those still
 * pending. Any other status (400 mapper_parsing_exception, 409) refuses the record for good: a
 * dead letter with the item's error type and reason, the rest committed. A whole answer of 413
 * (the body is larger than the cluster takes) halves the request until it passes (a single
 * document too large is refused); 401/403, 429, 5xx and no answer are retried. */
#include "connectors/elasticsearch/elasticsearch.h"
#include "connectors/httpc.h"
#include "core/buf.h"
#include "core/err.h"
#include "engine/kinds.h"
#include "formats/json_mp.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EXCERPT 256
#define MAX_ANSWER ((size_t)256 << 20) /* bytes of a _bulk answer read */
#define MAX_INDEX 255                  /* Elasticsearch's limit on an index name, in bytes */
#define MAX_PATH 16                    /* parts of document.id */
/* The answer is filtered to what the sink reads (Elasticsearch's and OpenSearch's response
 * filtering): each item's status and error, in order, and "errors". A 5,000-item answer is then
 * ~25 bytes per item instead of ~200 for the cluster to build and for the sink to read. */
#define BULK_PATH "/_bulk?filter_path=errors,items.*.status,items.*.error"

static const struct sl_field f_es[] = {
    {"connection.url", SL_F_URL, 0, "\"http://localhost:9200\"", 0,
     "Elasticsearch (or OpenSearch) URL; bulk requests go to <url>/_bulk.", 0, 0, NULL, NULL},
    {"index.name", SL_F_STRING, 1, NULL, 0,
     "Target index; {topic} is replaced by the strand's name (lower-cased, as index names are).", 0,
     0, NULL, NULL},
    {"document.id", SL_F_STRING, 0, NULL, 0,
     "Payload field (dotted path) whose string or number is the _id; default: the record hash, "
     "so a retry overwrites instead of duplicating.",
     0, 0, NULL, NULL},
    {"batch.size", SL_F_INT, 0, "1000", 0, "Documents per bulk request.", 1, 100000, NULL, NULL},
    {"batch.interval_ms", SL_F_INT, 0, "5000", 0, "Max ms before flushing a partial batch.", 0,
     3600000, NULL, NULL},
    {"connection.username", SL_F_STRING, 0, NULL, 0, "Basic auth user (with connection.password).",
     0, 0, NULL, NULL},
    {"connection.password", SL_F_STRING, 0, NULL, SL_SECRET, "Basic auth password.", 0, 0, NULL,
     NULL},
    {"connection.api_key", SL_F_STRING, 0, NULL, SL_SECRET,
     "API key (the base64 id:key), sent as Authorization: ApiKey; not with a password.", 0, 0, NULL,
     NULL},
    {NULL, 0, 0, NULL, 0, NULL, 0, 0, NULL, NULL},
};

/* ---- config ---- */

/* StreamHouse sends every value as a string: "1000". */
static json_t *es_normalize(const json_t *config, struct sl_err *err)
{
    json_t *out = json_deep_copy(config);
    static const char *const ints[] = {"batch.size", "batch.interval_ms", NULL};
    for (const char *const *k = ints; out && *k; k++) {
        const char *s = json_string_value(json_object_get(out, *k));
        char *end;
        long long v = s ? strtoll(s, &end, 10) : 0;
        if (s && *s && !*end)
            json_object_set_new(out, *k, json_integer(v));
    }
    if (!out)
        sl_err_set(err, SL_E_NOMEM, "out_of_memory", "out of memory");
    return out;
}

static int es_check_config(json_t *cfg, struct sl_err *err)
{
    const char *idx = json_string_value(json_object_get(cfg, "index.name"));
    const char *p = idx;
    if (!*idx || *idx == '-' || *idx == '_' || *idx == '+' || strlen(idx) > MAX_INDEX ||
        !strcmp(idx, ".") || !strcmp(idx, ".."))
        return sl_config_error(err, "config.index.name",
                               "an index name: not empty, not starting with -, _ or +");
    while (*p) {
        if (strncmp(p, "{topic}", 7) == 0) {
            p += 7;
            continue;
        }
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-' || *p == '_' ||
              *p == '.' || *p == '+'))
            return sl_config_error(err, "config.index.name",
                                   "lower-case letters, digits, '-', '_', '.', '+' and {topic}");
        p++;
    }
    const char *id = json_string_value(json_object_get(cfg, "document.id"));
    if (id) {
        int parts = 1, ok = *id && *id != '.' && id[strlen(id) - 1] != '.' && !strstr(id, "..");
        for (const char *c = id; *c; c++)
            parts += *c == '.';
        if (!ok || parts > MAX_PATH)
            return sl_config_error(err, "config.document.id",
                                   "a field name, or a dotted path of at most %d", MAX_PATH);
    }
    int user = json_object_get(cfg, "connection.username") != NULL;
    int pass = json_object_get(cfg, "connection.password") != NULL;
    if (user != pass)
        return sl_config_error(err,
                               user ? "config.connection.password" : "config.connection.username",
                               "give connection.username and connection.password together");
    if (pass && json_object_get(cfg, "connection.api_key"))
        return sl_config_error(err, "config.connection.api_key",
                               "give connection.api_key or a password, not both");
    static const char *const lines[] = {"connection.username", "connection.password",
                                        "connection.api_key", NULL};
    for (const char *const *k = lines; *k; k++) {
        const char *v = json_string_value(json_object_get(cfg, *k));
        if (v &&
            (strpbrk(v, "\r\n") || (strcmp(*k, "connection.username") == 0 && strchr(v, ':')))) {
            char path[64];
            snprintf(path, sizeof(path), "config.%s", *k);
            return sl_config_error(err, path, "must be a single line (a user without ':')");
        }
    }
    return 0;
}

/* ---- the sink ---- */

enum { IT_PENDING, IT_DONE, IT_REJECTED };

struct es {
    const struct sl_sink_ctx *ctx;
    const char *index_tpl;
    char path[MAX_PATH][128];
    size_t npath; /* 0: the _id is the record hash */
    char *bulk_url, *root_url, *auth;
    long timeout_ms;
    CURL *curl;
    struct sl_httpc_resp resp;
    struct sl_buf body, doc;
    size_t *sent, *reject;
    struct sl_es_item *items;
    size_t cap;
    /* what became of each record of the batch being delivered, by seq, across the framework's
     * retries of it: items done are not sent again */
    char memo_strand[256];
    uint64_t memo_lo, memo_hi;
    unsigned char *memo;
    size_t memo_cap;
    char reasons[256]; /* why the refused records were refused ("seq N: ...; ...") */
};

static void es_close(void *self)
{
    struct es *e = self;
    if (!e)
        return;
    curl_easy_cleanup(e->curl);
    sl_httpc_resp_release(&e->resp);
    sl_buf_release(&e->body);
    sl_buf_release(&e->doc);
    free(e->sent);
    free(e->reject);
    free(e->items);
    free(e->memo);
    free(e->bulk_url);
    free(e->root_url);
    free(e->auth);
    free(e);
}

static char *join(const char *url, const char *tail)
{
    size_t ul = strlen(url);
    while (ul && url[ul - 1] == '/')
        ul--;
    size_t n = ul + strlen(tail) + 1;
    char *u = malloc(n);
    if (u)
        snprintf(u, n, "%.*s%s", (int)ul, url, tail);
    return u;
}

static int es_open(void **self, const struct sl_sink_ctx *ctx, struct sl_sink_info *info,
                   struct sl_err *err)
{
    struct es *e = calloc(1, sizeof(*e));
    if (!e)
        return sl_err_set(err, SL_E_NOMEM, "out_of_memory", "out of memory");
    const json_t *cfg = ctx->config;
    e->ctx = ctx;
    e->index_tpl = json_string_value(json_object_get(cfg, "index.name"));
    e->timeout_ms = (long)json_integer_value(json_object_get(cfg, "timeout_ms"));
    const char *id = json_string_value(json_object_get(cfg, "document.id"));
    for (const char *p = id; p && *p && e->npath < MAX_PATH; e->npath++) {
        size_t k = strcspn(p, ".");
        snprintf(e->path[e->npath], sizeof(e->path[0]), "%.*s", (int)k, p);
        p += k + (p[k] == '.');
    }
    const char *url = json_string_value(json_object_get(cfg, "connection.url"));
    e->bulk_url = join(url, BULK_PATH);
    e->root_url = join(url, "/");
    const char *user = json_string_value(json_object_get(cfg, "connection.username"));
    const char *pass = json_string_value(json_object_get(cfg, "connection.password"));
    const char *key = json_string_value(json_object_get(cfg, "connection.api_key"));
    struct sl_buf a;
    sl_buf_init(&a, 0);
    if (user && pass) {
        struct sl_buf up;
        sl_buf_init(&up, 0);
        sl_buf_printf(&up, "%s:%s", user, pass);
        sl_buf_puts(&a, "Authorization: Basic ");
        sl_buf_base64(&a, up.data, up.len);
        sl_buf_release(&up);
    } else if (key) {
        sl_buf_printf(&a, "Authorization: ApiKey %s", key);
    }
    e->auth = a.len ? sl_buf_steal(&a, NULL) : NULL;
    sl_buf_release(&a);
    e->curl = curl_easy_init();
    sl_httpc_resp_init(&e->resp, MAX_ANSWER);
    sl_buf_init(&e->body, 0);
    sl_buf_init(&e->doc, 0);
    if (!e->bulk_url || !e->root_url || !e->curl || ((user || key) && !e->auth)) {
        es_close(e);
        return sl_err_set(err, SL_E_NOMEM, "out_of_memory", "out of memory");
    }
    info->batch_max = (uint64_t)json_integer_value(json_object_get(cfg, "batch.size"));
    info->linger_ms = (uint64_t)json_integer_value(json_object_get(cfg, "batch.interval_ms"));
    *self = e;
    return 0;
}

static CURLcode request(struct es *e, const char *method, const char *url, const void *body,
                        size_t len, long *status)
{
    struct curl_slist *h = NULL;
    h = curl_slist_append(h, "Content-Type: application/x-ndjson");
    h = curl_slist_append(h, "Accept: application/json");
    if (e->auth)
        h = curl_slist_append(h, e->auth);
    h = curl_slist_append(h, "Expect:");
    sl_httpc_resp_reset(&e->resp);
    CURLcode cc = h ? sl_httpc_send(e->curl, method, url, h, body, len, e->timeout_ms, &e->resp,
                                    e->ctx->cancelled, e->ctx->arg, status)
                    : CURLE_OUT_OF_MEMORY;
    curl_slist_free_all(h);
    return cc;
}

/* The health check: GET / (the cluster's banner) answers 2xx with these credentials. */
static int es_check(void *self, struct sl_err *err)
{
    struct es *e = self;
    long status = 0;
    CURLcode cc = request(e, "GET", e->root_url, NULL, 0, &status);
    if (cc != CURLE_OK)
        return sl_err_set(err, SL_E_UNAVAIL, "unhealthy", "Elasticsearch unreachable: %s",
                          sl_httpc_denied() ? sl_httpc_denied() : curl_easy_strerror(cc));
    if (status < 200 || status > 299)
        return sl_err_set(err, SL_E_UNAVAIL, "unhealthy", "Elasticsearch answered GET / with %ld%s",
                          status,
                          status == 401 || status == 403 ? " (the credentials are refused)" : "");
    return 0;
}

/* ---- documents ---- */

/* The value at the dotted path in the payload: 0 with *v at it, -1 if a part is missing. */
static int find_path(const struct es *e, const uint8_t *p, const uint8_t *end, const uint8_t **v)
{
    for (size_t d = 0; d < e->npath; d++) {
        uint32_t n;
        if (sl_mp_read_map(&p, end, &n) < 0)
            return -1;
        size_t want = strlen(e->path[d]);
        int found = 0;
        for (uint32_t i = 0; i < n && !found; i++) {
            const char *k;
            uint32_t kl;
            if (sl_mp_read_str(&p, end, &k, &kl) < 0)
                return -1;
            if (kl == want && memcmp(k, e->path[d], kl) == 0) {
                found = 1;
                break;
            }
            long skip = sl_mp_skip(p, (size_t)(end - p), 64);
            if (skip < 0)
                return -1;
            p += skip;
        }
        if (!found)
            return -1;
    }
    *v = p;
    return 0;
}

/* Appends record r's _id as a JSON string to out. 0, or -1 with why. */
static int doc_id(const struct es *e, const struct sl_rec *r, struct sl_buf *out, char *why,
                  size_t n)
{
    if (!e->npath) {
        sl_buf_putc(out, '"');
        sl_buf_hex(out, r->hash, SL_REC_HASH_LEN);
        sl_buf_putc(out, '"');
        return 0;
    }
    const uint8_t *end = r->payload + r->payload_len, *v;
    const char *s;
    uint32_t sl;
    int64_t i;
    if (find_path(e, r->payload, end, &v) == 0) {
        const uint8_t *q = v;
        if (sl_mp_read_str(&q, end, &s, &sl) == 0 && sl > 0 && sl <= 512)
            return sl_buf_json_str(out, s, sl);
        q = v;
        if (sl_mp_read_int(&q, end, &i) == 0)
            return sl_buf_printf(out, "\"%lld\"", (long long)i);
    }
    snprintf(why, n, "document.id: the payload has no string (1-512 bytes) or integer at %s",
             json_string_value(json_object_get(e->ctx->config, "document.id")));
    return -1;
}

/* The index of strand: index.name with {topic} replaced by the strand's name, lower-cased. */
static void index_of(const struct es *e, const char *strand, char *out, size_t n)
{
    size_t o = 0;
    for (const char *p = e->index_tpl; *p && o + 1 < n;) {
        if (strncmp(p, "{topic}", 7) == 0) {
            for (const char *t = strand; *t && o + 1 < n; t++)
                out[o++] = (char)tolower((unsigned char)*t);
            p += 7;
        } else {
            out[o++] = *p++;
        }
    }
    out[o] = 0;
}

/* Appends record r's action (and source) lines to out. 0, or -1 with why (the record cannot be a
 * document: a dead letter). */
static int doc_lines(struct es *e, const char *index, const struct sl_rec *r, struct sl_buf *out,
                     char *why, size_t n)
{
    size_t at = out->len;
    int del = (r->flags & SL_REC_TOMBSTONE) != 0;
    if (!del && sl_mp_type(r->payload, r->payload + r->payload_len) != SL_MP_MAP) {
        snprintf(why, n, "the payload is not a JSON object (a document needs one)");
        return -1;
    }
    sl_buf_printf(out, "{\"%s\":{\"_index\":", del ? "delete" : "index");
    sl_buf_json_str(out, index, strlen(index));
    sl_buf_puts(out, ",\"_id\":");
    if (doc_id(e, r, out, why, n) < 0) {
        out->len = at;
        return -1;
    }
    sl_buf_puts(out, "}}\n");
    if (del)
        return out->failed ? -1 : 0;
    size_t used;
    struct sl_jerr je;
    if (sl_mp_to_json(r->payload, r->payload_len, &used, out, 64, &je) < 0) {
        out->len = at;
        snprintf(why, n, "the payload cannot be JSON: %s", je.msg);
        return -1;
    }
    sl_buf_putc(out, '\n');
    if (out->failed)
        snprintf(why, n, "out of memory");
    return out->failed ? -1 : 0;
}

static int grow(struct es *e, size_t n)
{
    if (n <= e->cap)
        return 0;
    size_t *s = realloc(e->sent, n * sizeof(size_t));
    if (s)
        e->sent = s;
    size_t *r = realloc(e->reject, n * sizeof(size_t));
    if (r)
        e->reject = r;
    struct sl_es_item *it = realloc(e->items, n * sizeof(*it));
    if (it)
        e->items = it;
    if (!s || !r || !it)
        return -1;
    e->cap = n;
    return 0;
}

static void add_reason(struct es *e, uint64_t seq, const char *why)
{
    size_t used = strlen(e->reasons), room = sizeof(e->reasons) - used;
    if (room > 24)
        snprintf(e->reasons + used, room, "%sseq %llu: %.120s", used ? "; " : "",
                 (unsigned long long)seq, why);
}

/* The memo of batch b: kept when b continues the records it covers (a retry of the same
 * records, maybe with more after them), else started afresh. 0 or -1. */
static int memo_for(struct es *e, const struct sl_batch *b)
{
    uint64_t first = b->recs[0].seq, last = b->recs[b->n - 1].seq + 1;
    int keep = strcmp(e->memo_strand, b->strand) == 0 && first >= e->memo_lo && first < e->memo_hi;
    if (!keep) {
        snprintf(e->memo_strand, sizeof(e->memo_strand), "%s", b->strand);
        e->memo_lo = e->memo_hi = first;
        e->reasons[0] = 0;
    }
    if (last > e->memo_hi) {
        size_t need = (size_t)(last - e->memo_lo);
        if (need > e->memo_cap) {
            unsigned char *m = realloc(e->memo, need);
            if (!m)
                return -1;
            e->memo = m;
            e->memo_cap = need;
        }
        memset(e->memo + (e->memo_hi - e->memo_lo), IT_PENDING, (size_t)(last - e->memo_hi));
        e->memo_hi = last;
    }
    return 0;
}

static unsigned char *state(struct es *e, const struct sl_rec *r)
{
    return &e->memo[r->seq - e->memo_lo];
}

/* Builds the bulk body of the pending records of b from index `from` on, at most `most` of them
 * (e->sent: their indexes); records that cannot be documents are refused on the way. Returns how
 * many are in the body; *next gets the index after the last record looked at. */
static size_t build(struct es *e, const struct sl_batch *b, size_t from, size_t most, size_t *next)
{
    char index[MAX_INDEX + 1];
    index_of(e, b->strand, index, sizeof(index));
    sl_buf_reset(&e->body);
    size_t k = 0, i = from;
    for (; i < b->n && k < most; i++) {
        unsigned char *st = state(e, &b->recs[i]);
        if (*st != IT_PENDING)
            continue;
        char why[200];
        if (doc_lines(e, index, &b->recs[i], &e->body, why, sizeof(why)) < 0) {
            if (e->body.failed)
                break;
            *st = IT_REJECTED;
            add_reason(e, b->recs[i].seq, why);
            continue;
        }
        e->sent[k++] = i;
    }
    *next = i;
    return k;
}

/* The error text of a whole answer that is not 200: Elasticsearch's error type and reason. */
static void describe(struct es *e, long status, char *out, size_t n)
{
    json_t *j = json_loadb((const char *)e->resp.body.data, e->resp.body.len, 0, NULL);
    json_t *err = json_object_get(j, "error");
    const char *type = json_string_value(json_object_get(err, "type"));
    const char *why = json_string_value(json_object_get(err, "reason"));
    if (type)
        snprintf(out, n, "Elasticsearch answered %ld: %.60s: %.150s", status, type, why ? why : "");
    else
        snprintf(out, n, "Elasticsearch answered %ld", status);
    json_decref(j);
}

/* The outcome once no record of b is pending (done or refused), or RETRY / NOT_CONNECTED with
 * the accepted prefix when some are. */
static enum sl_result outcome(struct es *e, const struct sl_batch *b, enum sl_result transient,
                              struct sl_outcome *out)
{
    size_t nrej = 0, pending = 0, prefix = b->n;
    for (size_t i = 0; i < b->n; i++) {
        unsigned char st = *state(e, &b->recs[i]);
        if (st != IT_DONE && prefix == b->n)
            prefix = i;
        if (st == IT_PENDING)
            pending++;
        if (st == IT_REJECTED)
            e->reject[nrej++] = i;
    }
    if (pending) {
        out->accepted = prefix;
        return transient;
    }
    e->memo_strand[0] = 0; /* the batch is over */
    if (!nrej)
        return SL_R_OK;
    snprintf(out->error, sizeof(out->error), "%s", e->reasons);
    out->status = 0;
    out->reject = e->reject;
    out->n_reject = nrej;
    return SL_R_REJECT;
}

static enum sl_result es_send(void *self, const struct sl_batch *b, struct sl_outcome *out)
{
    struct es *e = self;
    if (!b->n)
        return SL_R_OK;
    if (grow(e, b->n) < 0 || memo_for(e, b) < 0) {
        snprintf(out->error, sizeof(out->error), "out of memory");
        return SL_R_RETRY;
    }
    enum sl_result transient = SL_R_OK;
    size_t most = b->n, from = 0;
    while (from < b->n) {
        size_t next, k = build(e, b, from, most, &next);
        if (e->body.failed) {
            snprintf(out->error, sizeof(out->error), "out of memory");
            return SL_R_RETRY;
        }
        if (!k) {
            from = next;
            continue;
        }
        long status = 0;
        CURLcode cc = request(e, "POST", e->bulk_url, e->body.data, e->body.len, &status);
        if (cc == CURLE_OK && status == 413) { /* too large for the cluster: halve */
            if (k == 1) {
                *state(e, &b->recs[e->sent[0]]) = IT_REJECTED;
                add_reason(e, b->recs[e->sent[0]].seq,
                           "413: the document alone is larger than the cluster takes");
                from = e->sent[0] + 1;
            } else {
                most = k / 2;
            }
            continue;
        }
        enum sl_result r = sl_httpc_outcome(cc, status, &e->resp, out);
        if (r == SL_R_OK) {
            char why[200];
            if (sl_es_bulk_parse((const char *)e->resp.body.data, e->resp.body.len, k, e->items,
                                 why, sizeof(why)) < 0) {
                snprintf(out->error, sizeof(out->error), "%s", why);
                transient = SL_R_RETRY; /* sent again: the same _ids overwrite */
                break;
            }
            for (size_t j = 0; j < k; j++) {
                const struct sl_rec *rec = &b->recs[e->sent[j]];
                int s = e->items[j].status, del = (rec->flags & SL_REC_TOMBSTONE) != 0;
                if ((s >= 200 && s < 300) || (del && s == 404)) {
                    *state(e, rec) = IT_DONE;
                } else if (sl_es_item_retriable(s)) {
                    transient = SL_R_RETRY; /* it waits for the next attempt, alone */
                    snprintf(out->error, sizeof(out->error), "item %d: %.200s", s,
                             e->items[j].reason);
                    out->status = s;
                } else {
                    *state(e, rec) = IT_REJECTED;
                    char why2[240];
                    snprintf(why2, sizeof(why2), "%d %s", s, e->items[j].reason);
                    add_reason(e, rec->seq, why2);
                }
            }
            from = next;
            continue;
        }
        if (r == SL_R_REJECT && status != 401 && status != 403) { /* refused for good */
            char why[256];
            describe(e, status, why, sizeof(why));
            for (size_t j = 0; j < k; j++) {
                *state(e, &b->recs[e->sent[j]]) = IT_REJECTED;
                add_reason(e, b->recs[e->sent[j]].seq, why);
            }
            from = next;
            continue;
        }
        if (cc == CURLE_OK)
            describe(e, status, out->error, sizeof(out->error));
        transient = r == SL_R_NOT_CONNECTED ? SL_R_NOT_CONNECTED : SL_R_RETRY;
        break;
    }
    return outcome(e, b, transient == SL_R_OK ? SL_R_RETRY : transient, out);
}

/* The request send() would make for b: "POST <BULK_PATH>\n" and the NDJSON body. */
static int es_format(void *self, const struct sl_batch *b, uint8_t **bytes, size_t *len)
{
    struct es *e = self;
    char index[MAX_INDEX + 1], why[200];
    index_of(e, b->strand, index, sizeof(index));
    struct sl_buf o;
    sl_buf_init(&o, 0);
    sl_buf_puts(&o, "POST " BULK_PATH "\n");
    for (size_t i = 0; i < b->n; i++)
        if (doc_lines(e, index, &b->recs[i], &o, why, sizeof(why)) < 0) {
            sl_buf_release(&o);
            return -1;
        }
    if (o.failed) {
        sl_buf_release(&o);
        return -1;
    }
    *bytes = (uint8_t *)sl_buf_steal(&o, len);
    return *bytes ? 0 : -1;
}

static const char *const g_aliases[] = {"elasticsearch-sink", "opensearch", "opensearch-sink",
                                        NULL};

static const struct sl_sink_ops es_ops = {
    .open = es_open,
    .send = es_send,
    .check = es_check,
    .format = es_format,
    .close = es_close,
};

const struct sl_connector sl_conn_elasticsearch = {
    .abi = SL_CONNECTOR_ABI,
    .name = "elasticsearch",
    .aliases = g_aliases,
    .direction = SL_OUTBOUND,
    .category = "database",
    .description = "Indexes records into Elasticsearch or OpenSearch with _bulk requests "
                   "(StreamHouse's elasticsearch-sink): _id from document.id or the record hash, "
                   "so retries overwrite; items refused with 429/5xx retried alone, the others "
                   "dead-lettered with the reason.",
    .fields = f_es,
    .normalize = es_normalize,
    .check_config = es_check_config,
    .sink = &es_ops,
};
