/* The Connector Hub's management API (/v1/connectors, /v1/connector-kinds) and the REST bridge
 * push (/v1/connectors/inbound/rest/{id}/push). */
#include "api/api.h"
#include "api/auth.h"
#include "api/records_parse.h"
#include "core/util.h"
#include "engine/kinds.h"
#include "engine/meta.h"
#include "engine/registry.h"
#include "formats/json_mp.h"

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

void sl_api_answer(struct sl_http_req *req, unsigned status, json_t *o)
{
    struct sl_buf b;
    sl_buf_init(&b, 0);
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (!s)
        return sl_api_error(req, 503, "out_of_memory", "out of memory");
    sl_buf_puts(&b, s);
    free(s);
    sl_api_json(req, status, &b);
}

/* Parses the request body as a JSON object; answers the error and returns NULL if it is not. */
json_t *sl_api_body_json(struct sl_http_req *req)
{
    if (sl_api_require_json(req, 0, NULL) < 0)
        return NULL;
    size_t len;
    const char *body = (const char *)sl_http_body(req, &len);
    json_error_t je;
    json_t *o = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
    if (!o) {
        sl_api_error(req, 400, "invalid_json", "body: invalid JSON at byte %d: %s", je.position,
                     je.text);
        return NULL;
    }
    return o;
}

void sl_api_pin_start(struct sl_api *api, const json_t *c)
{
    sl_registry_pin_start(api->registry, api->store, c);
}

void sl_v1_connectors(struct sl_api *api, struct sl_http_req *req)
{
    if (strcmp(sl_http_method(req), "POST") != 0)
        return sl_api_answer(req, 200, sl_registry_list(api->registry));
    json_t *in = sl_api_body_json(req);
    if (!in)
        return;
    struct sl_err err = {0};
    int sh = sl_sh_is_body(in); /* StreamHouse's body is welcome here too */
    json_t *body = sh ? sl_sh_to_body(in, &err) : json_incref(in);
    json_t *c = body ? sl_registry_create(api->registry, body, &err) : NULL;
    json_decref(body);
    if (c && sh)
        sl_sh_remember(api, json_string_value(json_object_get(c, "id")), in);
    json_decref(in);
    if (!c) {
        if (sh)
            sl_sh_fix_error(&err);
        return sl_api_error_from(req, &err);
    }
    sl_api_pin_start(api, c);
    sl_registry_changed(api->registry); /* the engine starts its worker now */
    sl_api_answer(req, 201, c);
}

void sl_v1_connector_kinds(struct sl_api *api, struct sl_http_req *req)
{
    sl_api_answer(req, 200, sl_registry_kinds());
}

void sl_v1_connector(struct sl_api *api, struct sl_http_req *req, const char *id)
{
    const char *m = sl_http_method(req);
    struct sl_err err = {0};
    json_t *c = NULL;
    if (strcmp(m, "DELETE") == 0) {
        if (sl_registry_delete(api->registry, id, &err) < 0)
            return sl_api_error_from(req, &err);
        return sl_api_answer(req, 200, json_pack("{s:b, s:s}", "deleted", 1, "id", id));
    }
    if (strcmp(m, "PATCH") == 0) {
        json_t *body = sl_api_body_json(req);
        if (!body)
            return;
        c = sl_registry_patch(api->registry, id, body, &err);
        if (c && json_object_get(body, "config"))
            sl_sh_forget_config(api, id); /* answers show the config as /v1 spelled it now */
        json_decref(body);
        if (c) {
            sl_api_pin_start(api, c); /* strands it now follows start where "start" says */
            sl_registry_changed(api->registry);
        }
    } else {
        c = sl_registry_get(api->registry, id, &err);
    }
    if (!c)
        return sl_api_error_from(req, &err);
    sl_api_answer(req, 200, c);
}

/* ---- REST bridge ---- */

struct push_ctx {
    struct sl_append a;
    struct sl_append_rec rec;
    uint8_t hash[SL_HASH_LEN];
    struct sl_buf mp;
    struct sl_http_req *req;
    struct sl_registry *registry;
    char id[32];
};

static void push_ctx_free(void *p)
{
    struct push_ctx *x = p;
    sl_buf_release(&x->mp);
    free(x);
}

static void push_done(struct sl_append *a)
{
    struct push_ctx *x = a->arg;
    if (a->status)
        return sl_api_error(x->req, sl_api_status_for(a->status), "write_failed",
                            "the push could not be made durable; nothing was acknowledged");
    sl_registry_note_event(x->registry, x->id, a->timestamp_ms);
    struct sl_buf b;
    sl_buf_init(&b, 0);
    sl_buf_puts(&b, "{\"record_hash\":\"");
    sl_buf_hex(&b, x->hash, SL_HASH_LEN);
    sl_buf_puts(&b, "\",\"connector_id\":");
    sl_buf_json_str(&b, x->id, strlen(x->id));
    sl_buf_putc(&b, '}');
    sl_api_json(x->req, 201, &b); /* x may be freed from here on */
}

static int parse_flags(struct sl_http_req *req, uint32_t *flags, int *given)
{
    const char *q = sl_http_query(req, "flags"), *h = sl_http_header(req, "X-Record-Flags");
    uint64_t vq = 0, vh = 0;
    *given = 0;
    if (q && (sl_parse_u64(q, &vq) || vq > 0xffffffffu)) {
        sl_api_error(req, 400, "invalid_flags",
                     "flags: must be an integer between 0 and 4294967295, got '%.40s'", q);
        return -1;
    }
    if (h && (sl_parse_u64(h, &vh) || vh > 0xffffffffu)) {
        sl_api_error(req, 400, "invalid_flags",
                     "X-Record-Flags: must be an integer between 0 and 4294967295, got '%.40s'", h);
        return -1;
    }
    if (q && h && vq != vh) {
        sl_api_error(req, 400, "invalid_flags",
                     "flags: ?flags=%llu and X-Record-Flags: %llu disagree", (unsigned long long)vq,
                     (unsigned long long)vh);
        return -1;
    }
    if (q || h) {
        *given = 1;
        *flags = (uint32_t)(q ? vq : vh);
    }
    return 0;
}

/* Rewrites the object at mp as the same object with "_connector_id": id as its last key (an
 * existing "_connector_id" is replaced, so a sender cannot forge another connector's id). */
static int tag_object(const struct sl_buf *in, const char *id, struct sl_buf *out)
{
    const uint8_t *p = in->data, *end = in->data + in->len;
    uint32_t n;
    if (sl_mp_read_map(&p, end, &n) < 0)
        return -1;
    const uint8_t *entries = p;
    uint32_t keep = 0;
    for (uint32_t i = 0; i < n; i++) {
        const char *k;
        uint32_t kl;
        if (sl_mp_read_str(&p, end, &k, &kl) < 0)
            return -1;
        long vl = sl_mp_skip(p, (size_t)(end - p), SL_JSON_MAX_DEPTH + 2);
        if (vl < 0)
            return -1;
        p += vl;
        if (!(kl == 13 && memcmp(k, "_connector_id", 13) == 0))
            keep++;
    }
    sl_mp_write_map(out, keep + 1);
    p = entries;
    for (uint32_t i = 0; i < n; i++) {
        const uint8_t *start = p;
        const char *k;
        uint32_t kl;
        sl_mp_read_str(&p, end, &k, &kl);
        p += sl_mp_skip(p, (size_t)(end - p), SL_JSON_MAX_DEPTH + 2);
        if (!(kl == 13 && memcmp(k, "_connector_id", 13) == 0))
            sl_buf_append(out, start, (size_t)(p - start));
    }
    sl_mp_write_str(out, "_connector_id", 13);
    sl_mp_write_str(out, id, strlen(id));
    return out->failed ? -1 : 0;
}

void sl_v1_rest_push(struct sl_api *api, struct sl_http_req *req, const char *id, size_t idlen)
{
    char cid[32];
    if (idlen == 0 || idlen >= sizeof(cid))
        return sl_api_error(req, 404, "connector_not_found", "id: no rest_bridge connector %.*s",
                            (int)(idlen > 64 ? 64 : idlen), id);
    memcpy(cid, id, idlen);
    cid[idlen] = 0;
    if (sl_api_require_json(req, 0, NULL) < 0)
        return;
    uint32_t flags = 0;
    int flags_given;
    if (parse_flags(req, &flags, &flags_given) < 0)
        return;
    /* who may push: a write (or admin) token of --auth-tokens, or the bridge's push_token; before
     * the bridge's rate limit is charged, and an unknown id is 401 to whoever may not push */
    const char *hdr = sl_http_header(req, "Authorization"), *name;
    int scope = api->auth ? sl_auth_scope(api->auth, hdr, &name) : SL_SCOPE_ADMIN;
    char tok[512];
    int has = sl_registry_push_token(api->registry, cid, tok, sizeof(tok));
    int may = scope >= SL_SCOPE_WRITE && (has != 1 || api->auth);
    if (has == 1 && !may && hdr && !strncasecmp(hdr, "Bearer ", 7)) {
        unsigned char a[SHA256_DIGEST_LENGTH], b[SHA256_DIGEST_LENGTH];
        SHA256((const unsigned char *)hdr + 7, strlen(hdr + 7), a);
        SHA256((const unsigned char *)tok, strlen(tok), b);
        may = CRYPTO_memcmp(a, b, sizeof(a)) == 0;
    }
    OPENSSL_cleanse(tok, sizeof(tok));
    if (!may && (has == 1 || scope < 0)) {
        sl_http_add_header(req, "WWW-Authenticate", "Bearer");
        return sl_api_error(req, 401, "unauthorized",
                            "Authorization: this bridge takes its push_token or a write token as "
                            "a Bearer token");
    }
    if (!may)
        return sl_api_error(req, 403, "forbidden",
                            "token '%s' has the read scope; a push needs write", name);
    struct sl_push_target t = {0};
    struct sl_err err = {0};
    if (sl_registry_push_target(api->registry, cid, &t, &err) < 0) {
        if (err.code == SL_E_RATE) {
            char ra[32];
            snprintf(ra, sizeof(ra), "%.0f", t.retry_after < 1 ? 1.0 : t.retry_after + 0.5);
            sl_http_add_header(req, "Retry-After", ra);
        }
        return sl_api_error_from(req, &err);
    }
    size_t len;
    const char *body = (const char *)sl_http_body(req, &len);
    struct sl_buf mp;
    sl_buf_init(&mp, 0);
    struct sl_jerr je;
    if (sl_json_to_mp(body, len, &mp, SL_JSON_MAX_DEPTH + 1, &je) < 0) {
        sl_buf_release(&mp);
        return sl_api_error(req, 400, "invalid_json", "body: %s", je.msg);
    }
    if (sl_mp_type(mp.data, mp.data + mp.len) != SL_MP_MAP) {
        sl_buf_release(&mp);
        return sl_api_error(req, 400, "invalid_payload",
                            "body: a REST bridge push must be a JSON object (it gets a "
                            "\"_connector_id\" field)");
    }
    struct push_ctx *x = calloc(1, sizeof(*x));
    if (!x) {
        sl_buf_release(&mp);
        return sl_api_error(req, 503, "out_of_memory", "out of memory");
    }
    sl_http_set_user(req, x, push_ctx_free);
    sl_buf_init(&x->mp, 0);
    int rc = tag_object(&mp, t.id, &x->mp);
    sl_buf_release(&mp);
    if (rc < 0)
        return sl_api_error(req, 503, "out_of_memory", "out of memory");
    x->req = req;
    x->registry = api->registry;
    snprintf(x->id, sizeof(x->id), "%s", t.id);
    x->rec = (struct sl_append_rec){.payload = x->mp.data,
                                    .payload_len = (uint32_t)x->mp.len,
                                    .source = x->id,
                                    .source_len = (uint16_t)strlen(x->id),
                                    .flags = flags_given ? flags : t.flags};
    x->a = (struct sl_append){
        .recs = &x->rec, .n = 1, .hashes = &x->hash, .done = push_done, .arg = x};
    struct sl_strand *s;
    if (sl_store_strand(api->store, t.strand, strlen(t.strand), 1, &s, &err) < 0 ||
        sl_api_submit(req, s, &x->a, x->mp.len, &err) < 0)
        return sl_api_error_from(req, &err);
}

/* GET|DELETE /v1/connectors/{id}/dead-letters, POST /v1/connectors/{id}/dead-letters/replay */
void sl_v1_dead_letters(struct sl_api *api, struct sl_http_req *req, const char *id, int replay)
{
    struct sl_err err = {0};
    int outbound = 0;
    if (sl_registry_exists(api->registry, id, &outbound) != 0)
        return sl_api_error(req, 404, "connector_not_found", "id: no connector %.64s", id);
    struct sl_meta *m = sl_registry_meta(api->registry);
    const char *meth = sl_http_method(req);
    if (replay) {
        json_t *dl = sl_meta_dead_letters(m, id, 1000000);
        size_t n = json_array_size(dl);
        json_decref(dl);
        if (!outbound)
            return sl_api_error(req, 409, "not_outbound", "connector %s does not deliver", id);
        if (sl_registry_request_replay(api->registry, id, &err) != 0)
            return sl_api_error_from(req, &err);
        return sl_api_answer(req, 202,
                             json_pack("{s:I, s:s}", "replaying", (json_int_t)n, "id", id));
    }
    if (strcmp(meth, "DELETE") == 0) {
        long n = sl_meta_delete_dead_letters(m, id);
        if (n < 0)
            return sl_api_error(req, 500, "metadata_error", "dead letters could not be deleted");
        return sl_api_answer(req, 200, json_pack("{s:I, s:s}", "deleted", (json_int_t)n, "id", id));
    }
    uint64_t limit = 1000;
    int has;
    if (sl_api_query_u64(req, "limit", 1, 100000, &limit, &has) < 0)
        return;
    json_t *dl = sl_meta_dead_letters(m, id, (int)limit);
    sl_api_answer(req, 200,
                  json_pack("{s:s, s:I, s:o}", "id", id, "count", (json_int_t)json_array_size(dl),
                            "dead_letters", dl));
}

/* POST /v1/connectors/{id}/restart: clears a failed state and restarts the worker. */
void sl_v1_connector_restart(struct sl_api *api, struct sl_http_req *req, const char *id)
{
    struct sl_err err = {0};
    json_t *c = sl_registry_restart(api->registry, id, &err);
    if (!c)
        return sl_api_error_from(req, &err);
    sl_api_answer(req, 200, c);
}
