/* POST /v1/records, POST /v1/records/batch, GET /v1/records/{hash}.
 *
 * A write is parsed and validated on the HTTP thread (JSON -> MessagePack in one pass), handed
 * to the strand's committer, and answered from the committer's done callback after the group
 * commit; the connection is suspended meanwhile. */
#include "api/api.h"
#include "core/util.h"
#include "formats/json_mp.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 64
#define MAX_SOURCE 1024

struct envelope {
    const char *agent;
    uint32_t agent_len;
    const char *strand;
    uint32_t strand_len;
    const uint8_t *payload;
    size_t payload_len;
    uint32_t flags;
    int has_strand;
};

struct write_ctx {
    struct sl_append a;
    struct sl_http_req *req;
    struct sl_strand *strand;
    int batch;
    struct sl_buf mp;
    struct sl_append_rec one;
    uint8_t one_hash[SL_HASH_LEN];
};

static void write_ctx_free(void *p)
{
    struct write_ctx *w = p;
    sl_buf_release(&w->mp);
    if (w->a.recs != &w->one) {
        free(w->a.recs);
        free(w->a.hashes);
    }
    free(w);
}

/* Reads one record object {"agent_id"?, "strand"?, "payload", "flags"?} at *p. On error fills
 * msg (naming the field) and returns -1. */
static int parse_envelope(const uint8_t **p, const uint8_t *end, struct envelope *e, char *msg,
                          size_t msglen)
{
    memset(e, 0, sizeof(*e));
    uint32_t n;
    if (sl_mp_type(*p, end) != SL_MP_MAP || sl_mp_read_map(p, end, &n) < 0) {
        snprintf(msg, msglen, "body: a record must be a JSON object");
        return -1;
    }
    int seen_agent = 0, seen_flags = 0, seen_payload = 0;
    for (uint32_t i = 0; i < n; i++) {
        const char *k;
        uint32_t kl;
        if (sl_mp_read_str(p, end, &k, &kl) < 0) {
            snprintf(msg, msglen, "body: object keys must be strings");
            return -1;
        }
        int t = sl_mp_type(*p, end);
#define KEY(s) (kl == sizeof(s) - 1 && memcmp(k, s, kl) == 0)
        int *seen = KEY("agent_id")  ? &seen_agent
                    : KEY("strand")  ? &e->has_strand
                    : KEY("payload") ? &seen_payload
                    : KEY("flags")   ? &seen_flags
                                     : NULL;
        if (!seen) {
            snprintf(msg, msglen,
                     "%.*s: unknown field (a record has agent_id, strand, payload and flags)",
                     (int)(kl > 64 ? 64 : kl), k);
            return -1;
        }
        if (*seen) {
            snprintf(msg, msglen, "%.*s: field given twice", (int)kl, k);
            return -1;
        }
        *seen = 1;
        if (KEY("agent_id") || KEY("strand")) {
            const char *s;
            uint32_t sl;
            if (t != SL_MP_STR || sl_mp_read_str(p, end, &s, &sl) < 0) {
                snprintf(msg, msglen, "%.*s: must be a string", (int)kl, k);
                return -1;
            }
            if (KEY("agent_id")) {
                if (sl > MAX_SOURCE) {
                    snprintf(msg, msglen, "agent_id: longer than %d bytes", MAX_SOURCE);
                    return -1;
                }
                e->agent = s;
                e->agent_len = sl;
            } else {
                if (!sl_strand_name_valid(s, sl)) {
                    snprintf(msg, msglen,
                             "strand: '%.*s' is not a valid name ([a-z0-9][a-z0-9._-]{0,63})",
                             (int)(sl > 80 ? 80 : sl), s);
                    return -1;
                }
                e->strand = s;
                e->strand_len = sl;
            }
        } else if (KEY("flags")) {
            int64_t v;
            if (t != SL_MP_INT || sl_mp_read_int(p, end, &v) < 0 || v < 0 || v > 0xffffffffLL) {
                snprintf(msg, msglen, "flags: must be an integer between 0 and 4294967295");
                return -1;
            }
            e->flags = (uint32_t)v;
        } else {
            long len = sl_mp_skip(*p, (size_t)(end - *p), MAX_DEPTH + 1);
            if (len < 0) {
                snprintf(msg, msglen, "payload: malformed value");
                return -1;
            }
            e->payload = *p;
            e->payload_len = (size_t)len;
            *p += len;
        }
#undef KEY
    }
    if (!seen_payload) {
        snprintf(msg, msglen, "payload: required field is missing");
        return -1;
    }
    return 0;
}

static void answer_write(struct sl_append *a)
{
    struct write_ctx *w = a->arg;
    struct sl_http_req *req = w->req;
    struct sl_buf b;
    if (a->status) {
        sl_api_error(req, sl_api_status_for(a->status), "write_failed",
                     "strand %s: the write could not be made durable; nothing was acknowledged",
                     sl_strand_name(w->strand));
        return;
    }
    sl_buf_init(&b, 0);
    const char *name = sl_strand_name(w->strand);
    if (!w->batch) {
        sl_buf_puts(&b, "{\"record_hash\":\"");
        sl_buf_hex(&b, a->hashes[0], SL_HASH_LEN);
        sl_buf_printf(&b,
                      "\",\"strand\":\"%s\",\"seq\":%llu,\"timestamp_ms\":%llu,\"prev_hash\":\"",
                      name, (unsigned long long)a->first_seq, (unsigned long long)a->timestamp_ms);
        sl_buf_hex(&b, a->prev_hash, SL_HASH_LEN);
        sl_buf_puts(&b, "\"}");
    } else {
        sl_buf_reserve(&b, 128 + a->n * 67);
        sl_buf_printf(&b,
                      "{\"count\":%zu,\"strand\":\"%s\",\"first_seq\":%llu,\"last_seq\":%llu,"
                      "\"timestamp_ms\":%llu,\"record_hashes\":[",
                      a->n, name, (unsigned long long)a->first_seq,
                      (unsigned long long)(a->first_seq + a->n - 1),
                      (unsigned long long)a->timestamp_ms);
        for (size_t i = 0; i < a->n; i++) {
            sl_buf_puts(&b, i ? ",\"" : "\"");
            sl_buf_hex(&b, a->hashes[i], SL_HASH_LEN);
            sl_buf_putc(&b, '"');
        }
        sl_buf_puts(&b, "]}");
    }
    /* After this call the request (and w) may be freed by the HTTP thread. */
    sl_api_json(req, 201, &b);
}

struct rec_start {
    size_t off;  /* where the record's MessagePack starts in w->mp */
    size_t line; /* its NDJSON line number (1-based) */
};

/* Splits NDJSON into records: transcodes each non-blank line into w->mp, remembering where each
 * record starts. Returns the count, or -1 after answering the error. */
static long transcode_ndjson(struct write_ctx *w, const char *body, size_t len,
                             struct rec_start **starts, uint64_t max_records)
{
    size_t cap = 1024, n = 0;
    struct rec_start *st = malloc(cap * sizeof(*st));
    if (!st) {
        sl_api_error(w->req, 503, "out_of_memory", "out of memory");
        return -1;
    }
    size_t line = 0;
    for (size_t pos = 0; pos < len;) {
        const char *nl = memchr(body + pos, '\n', len - pos);
        size_t end = nl ? (size_t)(nl - body) : len;
        line++;
        size_t a = pos, b = end; /* a line's offsets; errors count bytes from the line start */
        while (a < b && (body[a] == ' ' || body[a] == '\t' || body[a] == '\r'))
            a++;
        pos = end + 1;
        if (a == b)
            continue; /* blank line */
        if (n == max_records) {
            free(st);
            sl_api_error(w->req, 413, "batch_too_large", "body: more than %llu records in a batch",
                         (unsigned long long)max_records);
            return -1;
        }
        if (n == cap) {
            struct rec_start *ns = realloc(st, (cap *= 2) * sizeof(*ns));
            if (!ns) {
                free(st);
                sl_api_error(w->req, 503, "out_of_memory", "out of memory");
                return -1;
            }
            st = ns;
        }
        st[n].off = w->mp.len;
        st[n++].line = line;
        struct sl_jerr je;
        if (sl_json_to_mp(body + a, b - a, &w->mp, MAX_DEPTH + 1, &je) < 0) {
            free(st);
            sl_api_error(w->req, 400, "invalid_json", "line %zu: %s", line, je.msg);
            return -1;
        }
    }
    *starts = st;
    return (long)n;
}

void sl_v1_records_post(struct sl_api *api, struct sl_http_req *req, int batch)
{
    int ndjson;
    if (sl_api_require_json(req, batch, &ndjson) < 0)
        return;
    size_t blen;
    const char *body = (const char *)sl_http_body(req, &blen);
    struct write_ctx *w = calloc(1, sizeof(*w));
    if (!w)
        return sl_api_error(req, 503, "out_of_memory", "out of memory");
    w->req = req;
    w->batch = batch;
    sl_buf_init(&w->mp, 0);
    sl_http_set_user(req, w, write_ctx_free);
    const char *qstrand = sl_http_query(req, "strand");
    if (qstrand && !sl_strand_name_valid(qstrand, strlen(qstrand)))
        return sl_api_error(req, 400, "invalid_strand",
                            "strand: '%.80s' is not a valid name ([a-z0-9][a-z0-9._-]{0,63})",
                            qstrand);
    if (!batch && qstrand)
        return sl_api_error(req, 400, "invalid_query",
                            "strand: give the strand in the body for POST /v1/records");

    /* 1. JSON -> MessagePack */
    struct rec_start *starts = NULL;
    long n = 1;
    struct sl_jerr je;
    if (batch && ndjson) {
        n = transcode_ndjson(w, body, blen, &starts, api->cfg->batch_max_records);
        if (n < 0)
            return;
    } else if (sl_json_to_mp(body, blen, &w->mp, MAX_DEPTH + 1, &je) < 0) {
        return sl_api_error(req, 400, "invalid_json", "body: %s", je.msg);
    }
    const uint8_t *p = w->mp.data, *end = w->mp.data + w->mp.len;
    if (batch && !ndjson) {
        uint32_t an;
        if (sl_mp_type(p, end) != SL_MP_ARRAY || sl_mp_read_array(&p, end, &an) < 0)
            return sl_api_error(req, 400, "invalid_batch",
                                "body: a batch is a JSON array of records (or NDJSON with "
                                "Content-Type: application/x-ndjson)");
        if (an > api->cfg->batch_max_records)
            return sl_api_error(req, 413, "batch_too_large",
                                "body: more than %llu records in a batch",
                                (unsigned long long)api->cfg->batch_max_records);
        n = an;
    }
    if (n == 0) {
        free(starts);
        return sl_api_error(req, 400, "empty_batch", "body: the batch holds no records");
    }

    /* 2. validate every record before anything is written */
    struct sl_append_rec *recs = &w->one;
    uint8_t(*hashes)[SL_HASH_LEN] = &w->one_hash;
    if (batch) {
        recs = calloc((size_t)n, sizeof(*recs));
        hashes = malloc((size_t)n * SL_HASH_LEN);
        if (!recs || !hashes) {
            free(recs);
            free(hashes);
            free(starts);
            return sl_api_error(req, 503, "out_of_memory", "out of memory");
        }
    }
    w->a.recs = recs;
    w->a.hashes = hashes;
    w->a.n = (size_t)n;
    const char *sname = qstrand;
    size_t snlen = qstrand ? strlen(qstrand) : 0;
    for (long i = 0; i < n; i++) {
        struct envelope e;
        char msg[300];
        if (starts)
            p = w->mp.data + starts[i].off;
        if (parse_envelope(&p, end, &e, msg, sizeof(msg)) < 0) {
            size_t line = starts ? starts[i].line : 0;
            free(starts);
            if (!batch)
                return sl_api_error(req, 400, "invalid_record", "%s", msg);
            if (ndjson)
                return sl_api_error(req, 400, "invalid_record", "line %zu: %s", line, msg);
            return sl_api_error(req, 400, "invalid_record", "record %ld (0-based): %s", i, msg);
        }
        if (!batch && p != end)
            return sl_api_error(req, 400, "invalid_record", "body: trailing data");
        if (e.strand) {
            if (sname && (snlen != e.strand_len || memcmp(sname, e.strand, snlen) != 0)) {
                long where = starts ? (long)starts[i].line : i;
                free(starts);
                return sl_api_error(
                    req, 400, "mixed_strands",
                    "strand: %s %ld names strand '%.*s' but the batch goes to '%.*s'; one "
                    "batch goes to one strand",
                    ndjson ? "line" : "record", where, (int)e.strand_len, e.strand, (int)snlen,
                    sname);
            }
            sname = e.strand;
            snlen = e.strand_len;
        }
        recs[i].payload = e.payload;
        recs[i].payload_len = (uint32_t)e.payload_len;
        recs[i].source = e.agent ? e.agent : "";
        recs[i].source_len = (uint16_t)e.agent_len;
        recs[i].flags = e.flags;
    }
    free(starts);
    if (!sname) {
        sname = "default";
        snlen = 7;
    }

    /* 3. hand over to the committer; the answer is sent from answer_write */
    struct sl_err err = {0};
    if (sl_store_strand(api->store, sname, snlen, 1, &w->strand, &err) < 0)
        return sl_api_error_from(req, &err);
    w->a.done = answer_write;
    w->a.arg = w;
    if (sl_strand_submit(w->strand, &w->a, &err) < 0)
        return sl_api_error_from(req, &err);
}

static const char b64tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int b64(struct sl_buf *b, const uint8_t *p, size_t n)
{
    if (sl_buf_reserve(b, (n + 2) / 3 * 4))
        return -1;
    char *o = (char *)b->data + b->len;
    size_t i = 0;
    for (; i + 2 < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        *o++ = b64tab[v >> 18];
        *o++ = b64tab[(v >> 12) & 63];
        *o++ = b64tab[(v >> 6) & 63];
        *o++ = b64tab[v & 63];
    }
    if (i < n) {
        uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0);
        *o++ = b64tab[v >> 18];
        *o++ = b64tab[(v >> 12) & 63];
        *o++ = i + 1 < n ? b64tab[(v >> 6) & 63] : '=';
        *o++ = '=';
    }
    b->len = (size_t)(o - (char *)b->data);
    b->data[b->len] = 0;
    return 0;
}

int sl_api_record_json(struct sl_buf *b, const char *strand, const struct sl_record *r, int raw)
{
    sl_buf_puts(b, "{\"record_hash\":\"");
    sl_buf_hex(b, r->hash, SL_HASH_LEN);
    sl_buf_printf(b,
                  "\",\"strand\":\"%s\",\"seq\":%llu,\"timestamp_ms\":%llu,\"flags\":%u,"
                  "\"source\":",
                  strand, (unsigned long long)r->seq, (unsigned long long)r->timestamp_ms,
                  r->flags);
    sl_buf_json_str(b, r->source, r->source_len);
    sl_buf_puts(b, ",\"prev_hash\":\"");
    sl_buf_hex(b, r->prev_hash, SL_HASH_LEN);
    sl_buf_puts(b, "\",\"payload\":");
    size_t used;
    struct sl_jerr je;
    if (sl_mp_to_json(r->payload, r->payload_len, &used, b, MAX_DEPTH + 2, &je) < 0)
        return -1;
    if (raw) {
        sl_buf_puts(b, ",\"payload_msgpack_b64\":\"");
        b64(b, r->payload, r->payload_len);
        sl_buf_putc(b, '"');
    }
    sl_buf_putc(b, '}');
    return b->failed ? -1 : 0;
}

static int want_raw(struct sl_http_req *req, int *raw)
{
    const char *v = sl_http_query(req, "raw");
    *raw = 0;
    if (!v)
        return 0;
    if (strcmp(v, "1") == 0 || strcmp(v, "true") == 0) {
        *raw = 1;
        return 0;
    }
    if (strcmp(v, "0") == 0 || strcmp(v, "false") == 0)
        return 0;
    sl_api_error(req, 400, "invalid_query", "raw: must be 1 or 0, got '%.40s'", v);
    return -1;
}

void sl_v1_record_get(struct sl_api *api, struct sl_http_req *req, const char *hash)
{
    uint8_t h[SL_HASH_LEN];
    int raw;
    if (want_raw(req, &raw) < 0)
        return;
    if (sl_hex_decode(hash, strlen(hash), h, SL_HASH_LEN) < 0)
        return sl_api_error(req, 400, "invalid_hash",
                            "record_hash: must be 64 hexadecimal characters");
    struct sl_strand *s;
    uint64_t seq;
    struct sl_record r;
    if (sl_store_find_hash(api->store, h, &s, &seq) < 0 || sl_strand_read(s, seq, &r) < 0)
        return sl_api_error(req, 404, "record_not_found", "record_hash: no record %.64s", hash);
    struct sl_buf b;
    sl_buf_init(&b, 0);
    if (sl_api_record_json(&b, sl_strand_name(s), &r, raw) < 0) {
        sl_buf_release(&b);
        return sl_api_error(req, 500, "corrupt_record", "record %.64s cannot be shown", hash);
    }
    sl_api_json(req, 200, &b);
}
