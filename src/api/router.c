/* Routing and the one table that maps error codes to HTTP statuses. */
#include "api/api.h"
#include "api/auth.h"
#include "core/log.h"
#include "formats/json_mp.h"
#include "strand/store.h"
#include "strand/strand.h"
#include <stdlib.h>

#include "core/util.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

unsigned sl_api_status_for(int code)
{
    static const struct {
        int code;
        unsigned status;
    } table[] = {
        {SL_E_INVAL, 400},  {SL_E_NOTFOUND, 404}, {SL_E_METHOD, 405}, {SL_E_CONFLICT, 409},
        {SL_E_TOOBIG, 413}, {SL_E_MEDIA, 415},    {SL_E_IO, 500},     {SL_E_CORRUPT, 500},
        {SL_E_NOMEM, 503},  {SL_E_UNAVAIL, 503},  {SL_E_RATE, 429},
    };
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++)
        if (table[i].code == code)
            return table[i].status;
    return 500;
}

void sl_api_json(struct sl_http_req *req, unsigned status, struct sl_buf *body)
{
    sl_http_respond(req, status, "application/json", body);
}

void sl_api_error(struct sl_http_req *req, unsigned status, const char *code, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    struct sl_buf b;
    sl_buf_init(&b, 0);
    sl_buf_puts(&b, "{\"error\":");
    sl_buf_json_str(&b, msg, strlen(msg));
    sl_buf_puts(&b, ",\"code\":");
    sl_buf_json_str(&b, code, strlen(code));
    sl_buf_putc(&b, '}');
    sl_api_json(req, status, &b);
}

void sl_api_error_from(struct sl_http_req *req, const struct sl_err *err)
{
    sl_api_error(req, sl_api_status_for(err->code), err->ecode[0] ? err->ecode : "error", "%s",
                 err->msg);
}

int sl_api_require_json(struct sl_http_req *req, int allow_ndjson, int *is_ndjson)
{
    const char *ct = sl_http_header(req, "Content-Type");
    if (is_ndjson)
        *is_ndjson = 0;
    if (!ct || !*ct)
        return 0; /* no Content-Type: read the body as JSON */
    size_t n = strcspn(ct, ";");
    while (n && (ct[n - 1] == ' ' || ct[n - 1] == '\t'))
        n--;
    if ((n == 16 && strncasecmp(ct, "application/json", 16) == 0))
        return 0;
    if (allow_ndjson && ((n == 20 && strncasecmp(ct, "application/x-ndjson", 20) == 0) ||
                         (n == 20 && strncasecmp(ct, "application/jsonlines", 20) == 0) ||
                         (n == 22 && strncasecmp(ct, "application/x-jsonlines", 22) == 0))) {
        if (is_ndjson)
            *is_ndjson = 1;
        return 0;
    }
    sl_api_error(req, 415, "unsupported_media_type",
                 "Content-Type: expected application/json%s, got '%.*s'",
                 allow_ndjson ? " or application/x-ndjson" : "", (int)(n > 100 ? 100 : n), ct);
    return -1;
}

int sl_api_query_u64(struct sl_http_req *req, const char *name, uint64_t min, uint64_t max,
                     uint64_t *out, int *present)
{
    const char *v = sl_http_query(req, name);
    *present = v != NULL;
    if (!v)
        return 0;
    uint64_t n;
    if (sl_parse_u64(v, &n) || n < min || n > max) {
        sl_api_error(req, 400, "invalid_query",
                     "%s: must be an integer between %llu and %llu, got '%.40s'", name,
                     (unsigned long long)min, (unsigned long long)max, v);
        return -1;
    }
    *out = n;
    return 0;
}

int sl_api_query_flag(struct sl_http_req *req, const char *name, int *out)
{
    const char *v = sl_http_query(req, name);
    *out = 0;
    if (!v || strcmp(v, "0") == 0 || strcmp(v, "false") == 0)
        return 0;
    if (strcmp(v, "1") == 0 || strcmp(v, "true") == 0) {
        *out = 1;
        return 0;
    }
    sl_api_error(req, 400, "invalid_query", "%s: must be 1 or 0, got '%.40s'", name, v);
    return -1;
}

void sl_api_method_not_allowed(struct sl_http_req *req, const char *allow)
{
    sl_http_add_header(req, "Allow", allow);
    sl_api_error(req, 405, "method_not_allowed", "method %s is not allowed on %s (allowed: %s)",
                 sl_http_method(req), sl_http_path(req), allow);
}

/* Matches path against "prefix{segment}suffix"; on success sets *seg and *seglen. */
static int match_param(const char *path, const char *prefix, const char *suffix, const char **seg,
                       size_t *seglen)
{
    size_t pl = strlen(prefix), sl = strlen(suffix), n = strlen(path);
    if (n <= pl + sl || strncmp(path, prefix, pl) != 0 || strcmp(path + n - sl, suffix) != 0)
        return 0;
    *seg = path + pl;
    *seglen = n - pl - sl;
    return memchr(*seg, '/', *seglen) == NULL;
}

/* "{name}/checkpoint", "{name}/proof/inclusion", "{name}/proof/consistency", "{name}/tile/..." */
static int is_proof_path(const char *rest)
{
    const char *slash = strchr(rest, '/');
    if (!slash || slash == rest)
        return 0;
    return strcmp(slash, "/checkpoint") == 0 || strcmp(slash, "/proof/inclusion") == 0 ||
           strcmp(slash, "/proof/consistency") == 0 || strncmp(slash, "/tile/", 6) == 0;
}

void sl_api_init(struct sl_api *api, struct sl_store *store, const struct sl_config *cfg)
{
    memset(api, 0, sizeof(*api));
    pthread_rwlock_init(&api->gate, NULL);
    api->store = store;
    api->cfg = cfg;
}

void sl_api_shutdown(struct sl_api *api)
{
    pthread_rwlock_wrlock(&api->gate);
    api->stopping = 1;
    pthread_rwlock_unlock(&api->gate);
}

static void route(struct sl_api *api, struct sl_http_req *req);

/* The scope a request needs (docs/security.md): none for /v1/health (and /metrics when
 * metrics_public), write to put records in (records, batches, REST-bridge pushes, Boboyka
 * ingest), read for every other GET, admin for everything else (connectors, pipelines, dead
 * letters, restart). */
static int scope_needed(const struct sl_api *api, const char *m, const char *p)
{
    if (!strcmp(p, "/v1/health") || !strcmp(p, "/ui") || !strncmp(p, "/ui/", 4))
        return SL_SCOPE_NONE; /* the console's files hold no data */
    if (!strcmp(p, "/metrics") && api->cfg && api->cfg->metrics_public)
        return SL_SCOPE_NONE;
    if (!strcmp(m, "GET") || !strcmp(m, "HEAD"))
        return SL_SCOPE_READ;
    if (!strcmp(m, "POST") &&
        (!strcmp(p, "/v1/records") || !strcmp(p, "/v1/records/batch") ||
         !strcmp(p, "/v1/boboyka/ingest") || !strncmp(p, "/v1/connectors/inbound/rest/", 28)))
        return SL_SCOPE_WRITE;
    return SL_SCOPE_ADMIN;
}

static const char *const g_scope_names[] = {"none", "read", "write", "admin"};

/* 0 if the request may go on; else it was answered 401 or 403. */
static int authorize(struct sl_api *api, struct sl_http_req *req)
{
    if (!api->auth)
        return 0;
    const char *m = sl_http_method(req), *p = sl_http_path(req);
    int need = scope_needed(api, m, p);
    if (need == SL_SCOPE_NONE)
        return 0;
    if (!strcmp(m, "POST") && !strncmp(p, "/v1/connectors/inbound/rest/", 28))
        return 0; /* sl_v1_rest_push: a write token, or the bridge's own push token */
    const char *name;
    int have = sl_auth_scope(api->auth, sl_http_header(req, "Authorization"), &name);
    if (have < 0) {
        sl_http_add_header(req, "WWW-Authenticate", "Bearer");
        sl_api_error(req, 401, "unauthorized",
                     "Authorization: a valid Bearer token is required (%s scope for %s %.100s)",
                     g_scope_names[need], m, p);
        return -1;
    }
    double wait = sl_auth_take(api->auth, name);
    if (wait > 0) {
        char ra[32];
        snprintf(ra, sizeof(ra), "%.0f", wait < 1 ? 1.0 : wait + 0.5);
        sl_http_add_header(req, "Retry-After", ra);
        sl_api_error(req, 429, "rate_limited", "token '%s' is over its rate limit", name);
        return -1;
    }
    if (have < need) {
        sl_api_error(req, 403, "forbidden", "token '%s' has the %s scope; %s %.100s needs %s", name,
                     g_scope_names[have], m, p, g_scope_names[need]);
        return -1;
    }
    return 0;
}

/* ---- the audit strand ---- */

static void free_changes(void *p)
{
    json_decref(p);
}

void sl_api_audit(struct sl_api *api, struct sl_http_req *req, unsigned status)
{
    const char *m = sl_http_method(req), *p = sl_http_path(req);
    /* what was done (an admin request that succeeded) and who was turned away (401/403); a
     * request refused as bad input writes nothing, the audit trail included */
    int done = scope_needed(api, m, p) == SL_SCOPE_ADMIN && status >= 200 && status < 300;
    if (api->stopping || !m || !p || (!done && status != 401 && status != 403))
        return;
    const char *name = NULL;
    if (api->auth)
        sl_auth_scope(api->auth, sl_http_header(req, "Authorization"), &name);
    struct sl_strand *s;
    if (sl_store_strand(api->store, SL_AUDIT_STRAND, strlen(SL_AUDIT_STRAND), 1, &s, NULL) < 0)
        return;
    /* who (the token's name, never its secret), what, and how it ended */
    struct sl_buf j;
    sl_buf_init(&j, 0);
    sl_buf_puts(&j, "{\"token\":");
    if (name)
        sl_buf_json_str(&j, name, strlen(name));
    else
        sl_buf_puts(&j, "null");
    sl_buf_puts(&j, ",\"method\":");
    sl_buf_json_str(&j, m, strlen(m));
    sl_buf_puts(&j, ",\"path\":");
    sl_buf_json_str(&j, p, strlen(p) > 300 ? 300 : strlen(p));
    char from[64];
    sl_http_client_addr(req, from, sizeof(from));
    sl_buf_printf(&j, ",\"status\":%u,\"from\":", status);
    sl_buf_json_str(&j, from, strlen(from));
    /* what changed: each connector before and after, secrets redacted (registry.h) */
    const json_t *changes = done ? sl_http_note(req) : NULL;
    char *cj = changes ? json_dumps(changes, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    if (cj) {
        sl_buf_puts(&j, ",\"changes\":");
        sl_buf_puts(&j, cj);
        free(cj);
    }
    sl_buf_putc(&j, '}');
    struct sl_buf mp;
    sl_buf_init(&mp, 0);
    struct sl_jerr je;
    struct sl_err err = {0};
    if (!j.failed && sl_json_to_mp((const char *)j.data, j.len, &mp, 64, &je) == 0) {
        struct sl_append_rec rec = {.payload = mp.data,
                                    .payload_len = (uint32_t)mp.len,
                                    .source = "sluice",
                                    .source_len = 6};
        uint8_t hash[1][SL_HASH_LEN];
        struct sl_append a = {.recs = &rec, .n = 1, .hashes = hash};
        /* durable before the HTTP thread takes its next request: the trail is in order with
         * what it records (management requests are rare: one fsync each) */
        if (sl_strand_append_wait(s, &a, &err) < 0)
            sl_warn("the audit record of %s %s could not be written: %s", m, p, err.msg);
    }
    sl_buf_release(&j);
    sl_buf_release(&mp);
}

void sl_api_handle(struct sl_http_req *req, void *ctx)
{
    struct sl_api *api = ctx;
    pthread_rwlock_rdlock(&api->gate);
    if (api->stopping) {
        sl_http_add_header(req, "Connection", "close");
        sl_api_error(req, 503, "shutting_down", "the server is shutting down");
    } else if (authorize(api, req) == 0) {
        sl_registry_audit_begin(); /* the connectors this request changes, for the audit record */
        route(api, req);
        json_t *changes = sl_registry_audit_end();
        if (changes)
            sl_http_set_note(req, changes, free_changes);
    }
    pthread_rwlock_unlock(&api->gate);
}

static void route(struct sl_api *api, struct sl_http_req *req)
{
    const char *m = sl_http_method(req), *p = sl_http_path(req);
    int get = strcmp(m, "GET") == 0 || strcmp(m, "HEAD") == 0, post = strcmp(m, "POST") == 0;
    const char *seg;
    size_t seglen;
    /* StreamHouse's API: connectors by name, its shapes, its metrics (streamhouse.c) */
    if (strncmp(p, "/api/v1/", 8) == 0)
        return sl_sh_route(api, req, p);
    if (strcmp(p, "/v1/records") == 0) {
        sl_http_set_route(req, SL_R_RECORDS_POST);
        if (!post)
            return sl_api_method_not_allowed(req, "POST");
        return sl_v1_records_post(api, req, 0);
    }
    if (strcmp(p, "/v1/records/batch") == 0) {
        sl_http_set_route(req, SL_R_BATCH_POST);
        if (!post)
            return sl_api_method_not_allowed(req, "POST");
        return sl_v1_records_post(api, req, 1);
    }
    if (match_param(p, "/v1/records/", "", &seg, &seglen)) {
        sl_http_set_route(req, SL_R_RECORD_GET);
        if (!get)
            return sl_api_method_not_allowed(req, "GET");
        return sl_v1_record_get(api, req, seg);
    }
    if (strcmp(p, "/v1/strands") == 0) {
        sl_http_set_route(req, SL_R_STRANDS_GET);
        if (!get)
            return sl_api_method_not_allowed(req, "GET");
        return sl_v1_strands_get(api, req);
    }
    if (match_param(p, "/v1/strands/", "/latest", &seg, &seglen)) {
        sl_http_set_route(req, SL_R_STRAND_RECORDS_GET);
        if (!get)
            return sl_api_method_not_allowed(req, "GET");
        return sl_v1_strand_latest_get(api, req, seg, seglen);
    }
    if (match_param(p, "/v1/strands/", "/records", &seg, &seglen)) {
        sl_http_set_route(req, SL_R_STRAND_RECORDS_GET);
        if (!get)
            return sl_api_method_not_allowed(req, "GET");
        return sl_v1_strand_records_get(api, req, seg, seglen);
    }
    if (strncmp(p, "/v1/strands/", 12) == 0 && is_proof_path(p + 12)) {
        sl_http_set_route(req, SL_R_PROOFS);
        if (!get)
            return sl_api_method_not_allowed(req, "GET");
        return sl_v1_strand_proofs(api, req, p + 12);
    }
    if (strcmp(p, "/v1/checkpoint-key") == 0) {
        sl_http_set_route(req, SL_R_PROOFS);
        if (!get)
            return sl_api_method_not_allowed(req, "GET");
        return sl_v1_checkpoint_key(api, req);
    }
    if (strcmp(p, "/ui") == 0 || strncmp(p, "/ui/", 4) == 0) {
        sl_http_set_route(req, SL_R_UI);
        if (!get)
            return sl_api_method_not_allowed(req, "GET");
        return sl_v1_ui(api, req, p);
    }
    if (strcmp(p, "/v1/openapi.json") == 0) {
        sl_http_set_route(req, SL_R_OPENAPI);
        if (!get)
            return sl_api_method_not_allowed(req, "GET");
        return sl_v1_openapi(api, req);
    }
    if (strcmp(p, "/v1/health") == 0) {
        sl_http_set_route(req, SL_R_HEALTH);
        if (!get)
            return sl_api_method_not_allowed(req, "GET");
        return sl_v1_health(api, req);
    }
    if (strcmp(p, "/metrics") == 0) {
        sl_http_set_route(req, SL_R_METRICS);
        if (!get)
            return sl_api_method_not_allowed(req, "GET");
        return sl_v1_metrics(api, req);
    }
    if (strcmp(p, "/v1/connectors") == 0) {
        sl_http_set_route(req, SL_R_CONNECTORS);
        if (!get && !post)
            return sl_api_method_not_allowed(req, "GET, POST");
        return sl_v1_connectors(api, req);
    }
    if (strcmp(p, "/v1/connector-kinds") == 0) {
        sl_http_set_route(req, SL_R_CONNECTOR_KINDS);
        if (!get)
            return sl_api_method_not_allowed(req, "GET");
        return sl_v1_connector_kinds(api, req);
    }
    if (strncmp(p, "/v1/connectors/inbound/rest/", 28) == 0 &&
        match_param(p, "/v1/connectors/inbound/rest/", "/push", &seg, &seglen)) {
        sl_http_set_route(req, SL_R_REST_PUSH);
        if (!post)
            return sl_api_method_not_allowed(req, "POST");
        return sl_v1_rest_push(api, req, seg, seglen);
    }
    if (match_param(p, "/v1/connectors/", "/restart", &seg, &seglen)) {
        char id[64];
        snprintf(id, sizeof(id), "%.*s", (int)(seglen < 63 ? seglen : 63), seg);
        sl_http_set_route(req, SL_R_CONNECTOR);
        if (!post)
            return sl_api_method_not_allowed(req, "POST");
        return sl_v1_connector_restart(api, req, id);
    }
    if (match_param(p, "/v1/connectors/", "/pause", &seg, &seglen) ||
        match_param(p, "/v1/connectors/", "/resume", &seg, &seglen)) {
        char id[256];
        snprintf(id, sizeof(id), "%.*s", (int)(seglen < 255 ? seglen : 255), seg);
        sl_http_set_route(req, SL_R_CONNECTOR);
        if (!post)
            return sl_api_method_not_allowed(req, "POST");
        return sl_v1_connector_pause(api, req, id, strstr(p, "/pause") != NULL, 0);
    }
    if (match_param(p, "/v1/connectors/", "/dead-letters/replay", &seg, &seglen) ||
        match_param(p, "/v1/connectors/", "/dead-letters", &seg, &seglen)) {
        int replay = strstr(p, "/dead-letters/replay") != NULL;
        char id[64];
        snprintf(id, sizeof(id), "%.*s", (int)(seglen < 63 ? seglen : 63), seg);
        sl_http_set_route(req, SL_R_DEAD_LETTERS);
        if (replay ? !post : (!get && strcmp(m, "DELETE") != 0))
            return sl_api_method_not_allowed(req, replay ? "POST" : "GET, DELETE");
        return sl_v1_dead_letters(api, req, id, replay);
    }
    if (match_param(p, "/v1/connectors/", "", &seg, &seglen)) {
        sl_http_set_route(req, SL_R_CONNECTOR);
        if (!get && strcmp(m, "PATCH") != 0 && strcmp(m, "DELETE") != 0)
            return sl_api_method_not_allowed(req, "GET, PATCH, DELETE");
        return sl_v1_connector(api, req, seg);
    }
    if (strcmp(p, "/v1/pipelines/reload") == 0) {
        sl_http_set_route(req, SL_R_PIPELINES_RELOAD);
        if (!post)
            return sl_api_method_not_allowed(req, "POST");
        return sl_v1_pipelines_reload(api, req);
    }
    if (strcmp(p, "/v1/boboyka/ingest") == 0) {
        sl_http_set_route(req, SL_R_BOBOYKA_INGEST);
        if (!post)
            return sl_api_method_not_allowed(req, "POST");
        return sl_v1_boboyka_ingest(api, req);
    }
    if (strcmp(p, "/v1/boboyka/status") == 0) {
        sl_http_set_route(req, SL_R_BOBOYKA_STATUS);
        if (!get)
            return sl_api_method_not_allowed(req, "GET");
        return sl_v1_boboyka_status(api, req);
    }
    if (strcmp(p, "/v1/boboyka/events") == 0) {
        sl_http_set_route(req, SL_R_BOBOYKA_EVENTS);
        if (!get)
            return sl_api_method_not_allowed(req, "GET");
        return sl_v1_boboyka_events(api, req);
    }
    sl_http_set_route(req, SL_R_UNMATCHED);
    sl_api_error(req, 404, "not_found", "no route for %s %.200s", m, p);
}
