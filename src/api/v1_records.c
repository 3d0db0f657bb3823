/* POST /v1/records, POST /v1/records/batch, GET /v1/records/{hash}.
 *
 * A write is parsed and validated on the HTTP thread (JSON -> MessagePack in one pass), queued on
 * its strand, and group-committed by the event loop after its pass over the ready connections
 * (sl_http_defer, sl_strand_commit_now): answered from the append's done callback once durable. */
#include "api/api.h"
#include "api/records_parse.h"
#include "core/util.h"
#include "formats/json_mp.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct write_ctx {
    struct sl_append a;
    struct sl_http_req *req;
    struct sl_strand *strand;
    int batch;
    struct sl_records recs;
};

static void write_ctx_free(void *p)
{
    struct write_ctx *w = p;
    sl_records_release(&w->recs);
    free(w->a.hashes);
    free(w);
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

#define INLINE_MAX_BYTES 16384

static void commit_strand(void *strand, void *unused)
{
    (void)unused;
    sl_strand_commit_now(strand);
}

int sl_api_submit(struct sl_http_req *req, struct sl_strand *s, struct sl_append *a,
                  size_t body_len, struct sl_err *err)
{
    /* Small writes, on an event loop: queued without waking the strand's threads and committed
     * with the rest of the loop's pass by the loop itself (one write, one fdatasync, no
     * hand-off). Big bodies go to the strand's threads, so that hashing and syncing one overlap
     * with parsing the next (measured: inline, 1000-record batches were 2.7x slower). */
    if (body_len <= INLINE_MAX_BYTES && sl_http_defer(req, commit_strand, s, NULL) == 0)
        return sl_strand_enqueue(s, a, err);
    return sl_strand_submit(s, a, err);
}

void sl_v1_records_post(struct sl_api *api, struct sl_http_req *req, int batch)
{
    int ndjson;
    if (sl_api_require_json(req, batch, &ndjson) < 0)
        return;
    struct write_ctx *w = calloc(1, sizeof(*w));
    if (!w)
        return sl_api_error(req, 503, "out_of_memory", "out of memory");
    w->req = req;
    w->batch = batch;
    sl_http_set_user(req, w, write_ctx_free);
    struct sl_records_in in = {.batch = batch,
                               .ndjson = ndjson,
                               .qstrand = sl_http_query(req, "strand"),
                               .max_records = api->cfg->batch_max_records};
    in.body = (const char *)sl_http_body(req, &in.len);
    struct sl_err err = {0};
    if (sl_records_parse(&in, &w->recs, &err) != 0)
        return sl_api_error_from(req, &err);
    w->a.recs = w->recs.recs;
    w->a.n = w->recs.n;
    w->a.hashes = malloc(w->recs.n * SL_HASH_LEN);
    if (!w->a.hashes)
        return sl_api_error(req, 503, "out_of_memory", "out of memory");
    /* hand over to the committer; the answer is sent from answer_write */
    if (sl_store_strand(api->store, w->recs.strand, strlen(w->recs.strand), 1, &w->strand, &err) <
        0)
        return sl_api_error_from(req, &err);
    w->a.done = answer_write;
    w->a.arg = w;
    if (sl_api_submit(req, w->strand, &w->a, in.len, &err) < 0)
        return sl_api_error_from(req, &err);
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
    if (sl_mp_to_json(r->payload, r->payload_len, &used, b, SL_JSON_MAX_DEPTH + 2, &je) < 0)
        return -1;
    if (raw) {
        sl_buf_puts(b, ",\"payload_msgpack_b64\":\"");
        sl_buf_base64(b, r->payload, r->payload_len);
        sl_buf_putc(b, '"');
    }
    sl_buf_putc(b, '}');
    return b->failed ? -1 : 0;
}

void sl_v1_record_get(struct sl_api *api, struct sl_http_req *req, const char *hash)
{
    uint8_t h[SL_HASH_LEN];
    int raw, proof;
    if (sl_api_query_flag(req, "raw", &raw) < 0 || sl_api_query_flag(req, "proof", &proof) < 0)
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
    if (proof) { /* the record's object, with the inclusion proof and its checkpoint added */
        b.len--;
        if (sl_api_record_proof(api, s, seq, &b) < 0) {
            sl_buf_release(&b);
            return sl_api_error(req, 500, "tree_unreadable", "strand %s: cannot read its tree",
                                sl_strand_name(s));
        }
        sl_buf_putc(&b, '}');
    }
    sl_api_json(req, 200, &b);
}
