/* The per-record S3 sink (SapixDB's `s3`): PUTs every record's event body as
 * {endpoint}/{bucket}/{prefix}/{record_hash}.json (path-style), signed with SigV4 or sent with a
 * verbatim Authorization header (R2, MinIO). The key is the record hash: a record stored again
 * after a retry or a crash overwrites itself. */
#include "connectors/s3/s3.h"
#include "connectors/httpc.h"
#include "connectors/s3/sigv4.h"
#include "core/buf.h"
#include "core/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define EXCERPT 256

static const struct sl_field f_s3[] = {
    {"endpoint", SL_F_URL, 1, NULL, 0, "S3-compatible endpoint (path-style URLs).", 0, 0, NULL,
     NULL},
    {"bucket", SL_F_STRING, 1, NULL, 0, "Bucket.", 0, 0, NULL, NULL},
    {"prefix", SL_F_STRING, 0, "\"\"", 0, "Key prefix; objects are {prefix}/{record_hash}.json.", 0,
     0, NULL, NULL},
    {"auth_header", SL_F_STRING, 0, NULL, SL_SECRET, "Sent verbatim as Authorization (R2, MinIO).",
     0, 0, NULL, NULL},
    {"access_key_id", SL_F_STRING, 0, NULL, 0, "AWS SigV4 access key.", 0, 0, NULL, NULL},
    {"secret_access_key", SL_F_STRING, 0, NULL, SL_SECRET, "AWS SigV4 secret key.", 0, 0, NULL,
     NULL},
    {"session_token", SL_F_STRING, 0, NULL, SL_SECRET, "AWS session token (optional).", 0, 0, NULL,
     NULL},
    {"region", SL_F_STRING, 0, "\"us-east-1\"", 0, "AWS region for SigV4.", 0, 0, NULL, NULL},
    {NULL, 0, 0, NULL, 0, NULL, 0, 0, NULL, NULL},
};

int sl_s3_check_keys(const json_t *c, struct sl_err *err)
{
    int key = json_object_get(c, "access_key_id") != NULL;
    int secret = json_object_get(c, "secret_access_key") != NULL;
    if (key != secret)
        return sl_err_set(err, SL_E_INVAL, "invalid_config",
                          "config.%s: required with %s (SigV4 needs both)",
                          key ? "secret_access_key" : "access_key_id",
                          key ? "access_key_id" : "secret_access_key");
    return 0;
}

static int check_s3(json_t *c, struct sl_err *err)
{
    return sl_s3_check_keys(c, err);
}

struct s3 {
    const struct sl_sink_ctx *ctx;
    const json_t *cfg;
    long timeout_ms;
    CURL *curl;
    struct sl_buf body;
    struct sl_httpc_resp resp;
};

static const char *cstr(const json_t *cfg, const char *key)
{
    return json_string_value(json_object_get(cfg, key));
}

static int s3_open(void **self, const struct sl_sink_ctx *ctx, struct sl_sink_info *info,
                   struct sl_err *err)
{
    struct s3 *s = calloc(1, sizeof(*s));
    if (!s || !(s->curl = curl_easy_init())) {
        free(s);
        return sl_err_set(err, SL_E_NOMEM, "out_of_memory", "out of memory");
    }
    s->ctx = ctx;
    s->cfg = ctx->config;
    s->timeout_ms = (long)json_integer_value(json_object_get(ctx->config, "timeout_ms"));
    sl_buf_init(&s->body, 0);
    sl_httpc_resp_init(&s->resp, EXCERPT);
    info->batch_max = 1;
    *self = s;
    return 0;
}

/* Headers of the PUT of body to path (SigV4 when keys are given). 0 or -1. */
static int s3_headers(struct s3 *s, const char *ep, const char *path, struct curl_slist **hdrs)
{
    const json_t *cfg = s->cfg;
    char h[4200];
    *hdrs = curl_slist_append(*hdrs, "Content-Type: application/json");
    *hdrs = curl_slist_append(*hdrs, "Expect:");
    if (cstr(cfg, "auth_header")) {
        snprintf(h, sizeof(h), "Authorization: %s", cstr(cfg, "auth_header"));
        *hdrs = curl_slist_append(*hdrs, h);
        return 0;
    }
    if (!cstr(cfg, "access_key_id"))
        return 0;
    const char *hs = strstr(ep, "://") + 3;
    char host[512];
    size_t hl = strcspn(hs, "/");
    snprintf(host, sizeof(host), "%.*s", (int)(hl < sizeof(host) ? hl : sizeof(host) - 1), hs);
    const char *const extra[][2] = {{"Content-Type", "application/json"}};
    struct sl_sigv4_req rq = {.method = "PUT",
                              .host = host,
                              .path = path,
                              .payload = s->body.data,
                              .payload_len = s->body.len,
                              .region = cstr(cfg, "region"),
                              .service = "s3",
                              .now = time(NULL),
                              .extra_headers = extra,
                              .n_extra = 1};
    struct sl_sigv4_creds cr = {.access_key_id = cstr(cfg, "access_key_id"),
                                .secret_access_key = cstr(cfg, "secret_access_key"),
                                .session_token = cstr(cfg, "session_token")};
    struct sl_buf sig;
    sl_buf_init(&sig, 0);
    if (sl_sigv4_sign(&rq, &cr, &sig, NULL) < 0) {
        sl_buf_release(&sig);
        return -1;
    }
    for (char *line = (char *)sig.data, *next; line && *line; line = next) {
        next = strchr(line, '\n');
        if (next)
            *next++ = 0;
        *hdrs = curl_slist_append(*hdrs, line);
    }
    sl_buf_release(&sig);
    return 0;
}

static enum sl_result s3_send(void *self, const struct sl_batch *b, struct sl_outcome *out)
{
    struct s3 *s = self;
    enum sl_result res = SL_R_OK;
    for (size_t i = 0; i < b->n && res == SL_R_OK; i++) {
        const struct sl_rec *r = &b->recs[i];
        sl_buf_reset(&s->body);
        char hash[SL_REC_HASH_LEN * 2 + 1];
        sl_hex_encode(hash, r->hash, SL_REC_HASH_LEN);
        const char *ep = cstr(s->cfg, "endpoint"), *prefix = cstr(s->cfg, "prefix");
        size_t eplen = strlen(ep);
        while (eplen && ep[eplen - 1] == '/')
            eplen--;
        char path[2048], url[4300];
        snprintf(path, sizeof(path), "/%s/%s%s%s.json", cstr(s->cfg, "bucket"),
                 prefix ? prefix : "",
                 prefix && *prefix && prefix[strlen(prefix) - 1] != '/' ? "/" : "", hash);
        snprintf(url, sizeof(url), "%.*s%s", (int)eplen, ep, path);
        struct curl_slist *hdrs = NULL;
        if (sl_event_json(&s->body, r) < 0 || s3_headers(s, ep, path, &hdrs) < 0) {
            curl_slist_free_all(hdrs);
            snprintf(out->error, sizeof(out->error), "the record cannot be turned into a request");
            return SL_R_REJECT;
        }
        sl_httpc_resp_reset(&s->resp);
        long status = 0;
        CURLcode cc =
            sl_httpc_send(s->curl, "PUT", url, hdrs, s->body.data, s->body.len, s->timeout_ms,
                          &s->resp, s->ctx->cancelled, s->ctx->arg, &status);
        curl_slist_free_all(hdrs);
        res = sl_httpc_outcome(cc, status, &s->resp, out);
        if (res == SL_R_OK)
            out->accepted = i + 1;
    }
    return res;
}

static int s3_check(void *self, struct sl_err *err)
{
    struct s3 *s = self;
    char msg[512];
    if (sl_httpc_probe(s->curl, cstr(s->cfg, "endpoint"), s->timeout_ms, msg, sizeof(msg)) == 0)
        return 0;
    return sl_err_set(err, SL_E_UNAVAIL, "unhealthy", "%s", msg);
}

static int s3_format(void *self, const struct sl_batch *b, uint8_t **bytes, size_t *len)
{
    struct sl_buf body;
    sl_buf_init(&body, 0);
    for (size_t i = 0; i < b->n; i++)
        if (sl_event_json(&body, &b->recs[i]) < 0) {
            sl_buf_release(&body);
            return -1;
        }
    *bytes = (uint8_t *)sl_buf_steal(&body, len);
    return *bytes ? 0 : -1;
}

static void s3_close(void *self)
{
    struct s3 *s = self;
    if (!s)
        return;
    curl_easy_cleanup(s->curl);
    sl_buf_release(&s->body);
    sl_httpc_resp_release(&s->resp);
    free(s);
}

static const struct sl_sink_ops s3_ops = {
    .open = s3_open, .send = s3_send, .check = s3_check, .format = s3_format, .close = s3_close};

const struct sl_connector sl_conn_s3 = {
    .abi = SL_CONNECTOR_ABI,
    .name = "s3",
    .direction = SL_OUTBOUND,
    .category = "storage",
    .description = "PUTs every record as {prefix}/{record_hash}.json.",
    .fields = f_s3,
    .check_config = check_s3,
    .sink = &s3_ops,
};
