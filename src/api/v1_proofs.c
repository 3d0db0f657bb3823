/* Verifiable strands: GET /v1/strands/{name}/checkpoint, .../proof/inclusion,
 * .../proof/consistency, .../tile/<L>/<N>[.p/<W>] (C2SP tlog-tiles), GET /v1/checkpoint-key, and
 * the ?proof=1 member of GET /v1/records/{hash}. They run on the HTTP thread; a proof reads
 * O(log n) tiles (strand/tree.h). */
#include "api/api.h"
#include "core/log.h"
#include "core/util.h"
#include "formats/json_mp.h"
#include "strand/note.h"
#include "strand/tree.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void sl_api_origin(const struct sl_config *cfg, const char *strand, char *out, size_t n)
{
    const char *t = cfg->checkpoint_origin;
    if (!*t) {
        char host[256];
        if (gethostname(host, sizeof(host)) != 0 || !*host)
            snprintf(host, sizeof(host), "localhost");
        host[sizeof(host) - 1] = 0;
        snprintf(out, n, "%s/sluice/%s", host, strand);
        return;
    }
    const char *ph = strstr(t, "{strand}");
    if (!ph)
        snprintf(out, n, "%s/%s", t, strand);
    else
        snprintf(out, n, "%.*s%s%s", (int)(ph - t), t, strand, ph + 8);
}

/* The strand's latest checkpoint: the cached one while it covers the whole tree or is younger
 * than checkpoint_interval_ms, else a new one for the current (durable) tree size. */
static int latest_checkpoint(struct sl_api *api, struct sl_strand *s, struct sl_buf *out,
                             uint64_t *size, struct sl_err *err)
{
    struct sl_tree *t = sl_strand_tree(s);
    uint64_t tsize = sl_tree_size(t), csize = 0, at = 0, now = sl_now_ms();
    size_t mark = out->len;
    if (sl_tree_note_get(t, out, &csize, &at) == 0 &&
        (csize == tsize || now - at < api->cfg->checkpoint_interval_ms)) {
        *size = csize;
        return 0;
    }
    out->len = mark;
    /* with durability: fsync every leaf in the tree was synced before it was added; without,
     * sync now: a checkpoint never covers a size that is not on disk */
    if (!api->cfg->durable && sl_strand_sync(s) < 0)
        return sl_err_set(err, SL_E_IO, "io_error", "strand %s: cannot sync before signing",
                          sl_strand_name(s));
    uint8_t root[SL_HASH_LEN];
    struct sl_mt_src src = sl_tree_src(t);
    int rc = sl_mt_root(&src, tsize, root);
    if (rc)
        return sl_err_set(err, rc, "io_error", "strand %s: cannot read its tree",
                          sl_strand_name(s));
    char origin[512];
    sl_api_origin(api->cfg, sl_strand_name(s), origin, sizeof(origin));
    struct sl_buf body;
    sl_buf_init(&body, 0);
    sl_checkpoint_body(origin, tsize, root, &body);
    rc = body.failed ? sl_err_set(err, SL_E_NOMEM, "out_of_memory", "out of memory")
                     : sl_note_sign(&api->ckpt_key, (const char *)body.data, body.len, out, err);
    sl_buf_release(&body);
    if (rc)
        return rc;
    sl_tree_note_put(t, (const char *)out->data + mark, out->len - mark, tsize, now);
    *size = tsize;
    return 0;
}

/* The strand and its tree, or an answered error. */
static struct sl_tree *strand_tree(struct sl_api *api, struct sl_http_req *req, const char *name,
                                   size_t name_len, struct sl_strand **s)
{
    struct sl_err err = {0};
    if (sl_store_strand(api->store, name, name_len, 0, s, &err) < 0) {
        sl_api_error_from(req, &err);
        return NULL;
    }
    struct sl_tree *t = sl_strand_tree(*s);
    if (!t)
        sl_api_error(req, 404, "no_tree",
                     "strand %s has no Merkle tree (the server runs with merkle_tree: 0)",
                     sl_strand_name(*s));
    else if (!sl_tree_ok(t))
        sl_api_error(req, 503, "tree_unavailable",
                     "strand %s: its tree could not be written; restart the server to rebuild it",
                     sl_strand_name(*s));
    else if (!api->have_key)
        sl_api_error(req, 503, "no_checkpoint_key", "the server has no checkpoint key");
    else
        return t;
    return NULL;
}

static void hashes_json(struct sl_buf *b, uint8_t h[][SL_HASH_LEN], size_t n)
{
    sl_buf_puts(b, "\"hashes\":[");
    for (size_t i = 0; i < n; i++) {
        sl_buf_puts(b, i ? ",\"" : "\"");
        sl_buf_hex(b, h[i], SL_HASH_LEN);
        sl_buf_putc(b, '"');
    }
    sl_buf_putc(b, ']');
}

static void checkpoint_get(struct sl_api *api, struct sl_http_req *req, struct sl_strand *s)
{
    struct sl_buf b;
    sl_buf_init(&b, 0);
    uint64_t size;
    struct sl_err err = {0};
    if (latest_checkpoint(api, s, &b, &size, &err) < 0) {
        sl_buf_release(&b);
        return sl_api_error_from(req, &err);
    }
    sl_http_respond(req, 200, "text/plain; charset=utf-8", &b);
}

/* tree_size (or the latest checkpoint's size when absent), checked against the tree. */
static int tree_size_param(struct sl_api *api, struct sl_http_req *req, struct sl_strand *s,
                           const char *name, uint64_t *out)
{
    int has;
    uint64_t avail = sl_tree_size(sl_strand_tree(s));
    if (sl_api_query_u64(req, name, 0, UINT64_MAX, out, &has) < 0)
        return -1;
    if (!has) {
        struct sl_buf b;
        struct sl_err err = {0};
        sl_buf_init(&b, 0);
        int rc = latest_checkpoint(api, s, &b, out, &err);
        sl_buf_release(&b);
        if (rc < 0) {
            sl_api_error_from(req, &err);
            return -1;
        }
    } else if (*out > avail) {
        sl_api_error(req, 400, "invalid_tree_size",
                     "%s: %llu is beyond the tree of strand %s (it has %llu records)", name,
                     (unsigned long long)*out, sl_strand_name(s), (unsigned long long)avail);
        return -1;
    }
    if (*out == 0) {
        sl_api_error(req, 400, "invalid_tree_size",
                     has ? "%s: must be at least 1 (the empty tree proves nothing)"
                         : "%s: strand %s is empty: there is nothing to prove yet",
                     name, sl_strand_name(s));
        return -1;
    }
    return 0;
}

/* Appends "leaf_index":..,"tree_size":..,"hashes":[..] of seq in the tree of size n. */
static int inclusion_json(struct sl_tree *t, uint64_t seq, uint64_t n, struct sl_buf *b)
{
    uint8_t h[SL_MT_MAX_PROOF][SL_HASH_LEN];
    size_t len;
    struct sl_mt_src src = sl_tree_src(t);
    int rc = sl_mt_inclusion(&src, seq, n, h, &len);
    if (rc)
        return rc;
    sl_buf_printf(b, "\"leaf_index\":%llu,\"tree_size\":%llu,", (unsigned long long)seq,
                  (unsigned long long)n);
    hashes_json(b, h, len);
    return 0;
}

static void inclusion_get(struct sl_api *api, struct sl_http_req *req, struct sl_strand *s,
                          struct sl_tree *t)
{
    const char *hx = sl_http_query(req, "record_hash");
    uint64_t seq = 0, n;
    int has_seq;
    if (sl_api_query_u64(req, "seq", 0, UINT64_MAX, &seq, &has_seq) < 0)
        return;
    if (!hx == !has_seq)
        return sl_api_error(req, 400, "invalid_query",
                            "record_hash: give either record_hash or seq (exactly one)");
    if (hx) {
        uint8_t h[SL_HASH_LEN];
        if (sl_hex_decode(hx, strlen(hx), h, SL_HASH_LEN) < 0)
            return sl_api_error(req, 400, "invalid_hash",
                                "record_hash: must be 64 hexadecimal characters");
        if (sl_strand_find_hash(s, h, &seq) < 0)
            return sl_api_error(req, 404, "record_not_found",
                                "record_hash: no record %.64s in strand %s", hx, sl_strand_name(s));
    } else if (seq >= sl_tree_size(t)) {
        return sl_api_error(req, 404, "record_not_found",
                            "seq: strand %s has no record %llu in its tree (size %llu)",
                            sl_strand_name(s), (unsigned long long)seq,
                            (unsigned long long)sl_tree_size(t));
    }
    if (tree_size_param(api, req, s, "tree_size", &n) < 0)
        return;
    if (seq >= n)
        return sl_api_error(req, 400, "invalid_tree_size",
                            "tree_size: record %llu is not in the tree of size %llu",
                            (unsigned long long)seq, (unsigned long long)n);
    struct sl_buf b;
    sl_buf_init(&b, 0);
    sl_buf_putc(&b, '{');
    if (inclusion_json(t, seq, n, &b) < 0) {
        sl_buf_release(&b);
        return sl_api_error(req, 500, "tree_unreadable", "strand %s: cannot read its tree",
                            sl_strand_name(s));
    }
    sl_buf_putc(&b, '}');
    sl_api_json(req, 200, &b);
}

static void consistency_get(struct sl_api *api, struct sl_http_req *req, struct sl_strand *s,
                            struct sl_tree *t)
{
    uint64_t m = 0, n;
    int has_from;
    if (sl_api_query_u64(req, "from", 0, UINT64_MAX, &m, &has_from) < 0)
        return;
    if (!has_from)
        return sl_api_error(req, 400, "invalid_query", "from: required (the older tree size)");
    if (m == 0)
        return sl_api_error(req, 400, "invalid_tree_size",
                            "from: must be at least 1 (every tree extends the empty one)");
    if (tree_size_param(api, req, s, "to", &n) < 0)
        return;
    if (m > n)
        return sl_api_error(req, 400, "invalid_tree_size", "from: %llu is larger than to (%llu)",
                            (unsigned long long)m, (unsigned long long)n);
    uint8_t h[SL_MT_MAX_PROOF][SL_HASH_LEN];
    size_t len;
    struct sl_mt_src src = sl_tree_src(t);
    if (sl_mt_consistency(&src, m, n, h, &len) < 0)
        return sl_api_error(req, 500, "tree_unreadable", "strand %s: cannot read its tree",
                            sl_strand_name(s));
    struct sl_buf b;
    sl_buf_init(&b, 0);
    sl_buf_printf(&b, "{\"from\":%llu,\"to\":%llu,", (unsigned long long)m, (unsigned long long)n);
    hashes_json(&b, h, len);
    sl_buf_putc(&b, '}');
    sl_api_json(req, 200, &b);
}

/* "<L>/<N>[.p/<W>]" with N in groups of three digits, all but the last prefixed by 'x'. */
static int parse_tile_path(const char *p, unsigned *level, uint64_t *index, unsigned *w)
{
    char *end;
    if (*p < '0' || *p > '9')
        return -1;
    unsigned long l = strtoul(p, &end, 10);
    if (*end != '/' || l > 63 || (end - p > 1 && *p == '0'))
        return -1;
    p = end + 1;
    uint64_t n = 0;
    for (;;) {
        int more = *p == 'x';
        if (more)
            p++;
        for (int i = 0; i < 3; i++, p++) {
            if (*p < '0' || *p > '9' || n > (UINT64_MAX - 9) / 10)
                return -1;
            n = n * 10 + (uint64_t)(*p - '0');
        }
        if (more) {
            if (*p++ != '/')
                return -1;
            continue;
        }
        break;
    }
    *w = SL_TILE_WIDTH;
    if (strncmp(p, ".p/", 3) == 0) {
        unsigned long v = strtoul(p + 3, &end, 10);
        if (*end || v == 0 || v >= SL_TILE_WIDTH || p[3] == '0' || p[3] < '0' || p[3] > '9')
            return -1;
        *w = (unsigned)v;
        p = end;
    }
    if (*p)
        return -1;
    *level = (unsigned)l;
    *index = n;
    return 0;
}

static void tile_get(struct sl_http_req *req, struct sl_strand *s, struct sl_tree *t,
                     const char *path)
{
    unsigned level, w;
    uint64_t index;
    if (strncmp(path, "entries/", 8) == 0)
        return sl_api_error(req, 404, "not_found",
                            "tile: entry bundles are not served; records are at "
                            "/v1/strands/%s/records",
                            sl_strand_name(s));
    if (parse_tile_path(path, &level, &index, &w) < 0)
        return sl_api_error(req, 400, "invalid_tile",
                            "tile: expected tile/<L>/<N>[.p/<W>] (C2SP tlog-tiles), got "
                            "'%.100s'",
                            path);
    struct sl_buf b;
    sl_buf_init(&b, 0);
    int rc = sl_tree_tile(t, level, index, w, &b);
    if (rc == 0)
        return sl_http_respond(req, 200, "application/octet-stream", &b);
    sl_buf_release(&b);
    if (rc == SL_E_NOTFOUND || rc == SL_E_INVAL)
        return sl_api_error(req, 404, "tile_not_found",
                            "tile: %.100s is beyond the tree of strand %s (size %llu)", path,
                            sl_strand_name(s), (unsigned long long)sl_tree_size(t));
    sl_api_error(req, 500, "tree_unreadable", "strand %s: cannot read its tree", sl_strand_name(s));
}

void sl_v1_strand_proofs(struct sl_api *api, struct sl_http_req *req, const char *rest)
{
    const char *slash = strchr(rest, '/');
    struct sl_strand *s;
    struct sl_tree *t = strand_tree(api, req, rest, slash ? (size_t)(slash - rest) : 0, &s);
    if (!t)
        return;
    const char *what = slash + 1;
    if (strcmp(what, "checkpoint") == 0)
        return checkpoint_get(api, req, s);
    if (strcmp(what, "proof/inclusion") == 0)
        return inclusion_get(api, req, s, t);
    if (strcmp(what, "proof/consistency") == 0)
        return consistency_get(api, req, s, t);
    return tile_get(req, s, t, what + 5); /* the router matched "tile/" */
}

void sl_v1_checkpoint_key(struct sl_api *api, struct sl_http_req *req)
{
    if (!api->have_key)
        return sl_api_error(req, 503, "no_checkpoint_key", "the server has no checkpoint key");
    struct sl_buf b;
    sl_buf_init(&b, 0);
    sl_note_vkey(&api->ckpt_key, &b);
    sl_buf_putc(&b, '\n');
    sl_http_respond(req, 200, "text/plain; charset=utf-8", &b);
}

int sl_api_record_proof(struct sl_api *api, struct sl_strand *s, uint64_t seq, struct sl_buf *b)
{
    struct sl_tree *t = sl_strand_tree(s);
    if (!t || !sl_tree_ok(t) || !api->have_key) {
        sl_buf_puts(b, ",\"proof\":null,\"proof_pending\":\"the strand has no usable tree or the "
                       "server no checkpoint key\"");
        return 0;
    }
    struct sl_buf note;
    sl_buf_init(&note, 0);
    uint64_t n;
    struct sl_err err = {0};
    int rc = latest_checkpoint(api, s, &note, &n, &err);
    if (rc == 0 && seq >= n) {
        sl_buf_printf(b,
                      ",\"proof\":null,\"proof_pending\":\"the latest checkpoint (size %llu) does "
                      "not cover this record yet; retry after checkpoint_interval_ms\"",
                      (unsigned long long)n);
    } else if (rc == 0) {
        sl_buf_puts(b, ",\"proof\":{");
        rc = inclusion_json(t, seq, n, b);
        sl_buf_puts(b, "},\"checkpoint\":");
        sl_buf_json_str(b, (const char *)note.data, note.len);
    }
    sl_buf_release(&note);
    return rc;
}

/* ---- background checkpoints ---- */

struct appended {
    struct sl_strand *s;
    uint64_t size;
};

/* Appends {"strand", "tree_size", "checkpoint"} to the checkpoint strand. Checkpointer thread. */
static void append_checkpoint(struct sl_api *api, struct sl_strand *cs, struct sl_strand *s,
                              const struct sl_buf *note, uint64_t size)
{
    struct sl_buf json, mp;
    sl_buf_init(&json, 0);
    sl_buf_init(&mp, 0);
    sl_buf_printf(&json, "{\"strand\":\"%s\",\"tree_size\":%llu,\"checkpoint\":", sl_strand_name(s),
                  (unsigned long long)size);
    sl_buf_json_str(&json, (const char *)note->data, note->len);
    sl_buf_putc(&json, '}');
    struct sl_jerr je;
    struct sl_err err = {0};
    if (!json.failed &&
        sl_json_to_mp((const char *)json.data, json.len, &mp, 4, &je) == 0) { /* depth 1 */
        uint8_t h[1][SL_HASH_LEN];
        struct sl_append_rec rec = {.payload = mp.data,
                                    .payload_len = (uint32_t)mp.len,
                                    .source = "checkpointer",
                                    .source_len = 12};
        struct sl_append a = {.recs = &rec, .n = 1, .hashes = h};
        if (sl_strand_append_wait(cs, &a, &err) < 0)
            sl_warn("checkpointer: cannot append to %s: %s", sl_strand_name(cs), err.msg);
    }
    sl_buf_release(&json);
    sl_buf_release(&mp);
}

/* One round: a checkpoint for every strand whose tree grew, appended to checkpoint_strand. */
static void checkpoint_round(struct sl_api *api, struct sl_strand *cs, struct appended **done,
                             size_t *ndone)
{
    struct sl_strand *list[256];
    size_t n = sl_store_list(api->store, list, 256);
    if (n > 256)
        n = 256; /* the rest get theirs on request */
    for (size_t i = 0; i < n; i++) {
        struct sl_strand *s = list[i];
        struct sl_tree *t = sl_strand_tree(s);
        if (!t || !sl_tree_ok(t) || s == cs || sl_tree_size(t) == 0)
            continue;
        size_t k = 0;
        while (k < *ndone && (*done)[k].s != s)
            k++;
        if (k == *ndone) {
            struct appended *p = realloc(*done, (*ndone + 1) * sizeof(*p));
            if (!p)
                continue;
            *done = p;
            p[k].s = s;
            p[k].size = 0;
            (*ndone)++;
        }
        if ((*done)[k].size == sl_tree_size(t))
            continue;
        struct sl_buf note;
        sl_buf_init(&note, 0);
        uint64_t size;
        struct sl_err err = {0};
        if (latest_checkpoint(api, s, &note, &size, &err) < 0)
            sl_warn("checkpointer: strand %s: %s", sl_strand_name(s), err.msg);
        else if (size > (*done)[k].size) {
            if (cs)
                append_checkpoint(api, cs, s, &note, size);
            (*done)[k].size = size;
        }
        sl_buf_release(&note);
    }
}

static void *checkpointer_main(void *arg)
{
    struct sl_api *api = arg;
    struct sl_strand *cs = NULL;
    const char *csn = api->cfg->checkpoint_strand;
    struct sl_err err = {0};
    if (*csn && sl_store_strand(api->store, csn, strlen(csn), 1, &cs, &err) < 0)
        sl_error("checkpoint_strand: %s", err.msg);
    uint64_t period =
        api->cfg->checkpoint_interval_ms < 100 ? 100 : api->cfg->checkpoint_interval_ms;
    struct appended *done = NULL;
    size_t ndone = 0;
    pthread_mutex_lock(&api->ckpt_mu);
    while (!api->ckpt_stop) {
        struct timespec dl;
        clock_gettime(CLOCK_REALTIME, &dl);
        dl.tv_sec += (time_t)(period / 1000);
        dl.tv_nsec += (long)(period % 1000) * 1000000L;
        if (dl.tv_nsec >= 1000000000L) {
            dl.tv_sec++;
            dl.tv_nsec -= 1000000000L;
        }
        if (pthread_cond_timedwait(&api->ckpt_cv, &api->ckpt_mu, &dl) != ETIMEDOUT)
            continue; /* woken: stopping (checked above) */
        pthread_mutex_unlock(&api->ckpt_mu);
        checkpoint_round(api, cs, &done, &ndone);
        pthread_mutex_lock(&api->ckpt_mu);
    }
    pthread_mutex_unlock(&api->ckpt_mu);
    free(done);
    return NULL;
}

int sl_checkpointer_start(struct sl_api *api)
{
    pthread_mutex_init(&api->ckpt_mu, NULL);
    pthread_cond_init(&api->ckpt_cv, NULL);
    api->ckpt_stop = 0;
    if (!api->have_key || pthread_create(&api->ckpt_thread, NULL, checkpointer_main, api) != 0)
        return -1;
    sl_thread_name(api->ckpt_thread, "sl-checkpoints");
    api->ckpt_running = 1;
    return 0;
}

void sl_checkpointer_stop(struct sl_api *api)
{
    if (!api->ckpt_running)
        return;
    pthread_mutex_lock(&api->ckpt_mu);
    api->ckpt_stop = 1;
    pthread_cond_signal(&api->ckpt_cv);
    pthread_mutex_unlock(&api->ckpt_mu);
    pthread_join(api->ckpt_thread, NULL);
    api->ckpt_running = 0;
}
