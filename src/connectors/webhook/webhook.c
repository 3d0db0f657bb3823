/* The webhook sink (SapixDB's `webhook`; Rivven's `http-webhook` is an alias): sends the event
 * body of every record, or a JSON array of up to batch_size events, to a URL with POST (or PUT,
 * PATCH), an Idempotency-Key (the first record's hash), the configured headers and an optional
 * Bearer secret. Delivery policy is the framework's (include/sluice/connector.h).
 *
 * Rivven's spellings are rewritten by normalize() before validation: timeout_secs becomes the
 * framework's timeout_ms, retry.max_attempts (attempts in all) becomes retry.max_retries
 * (retries after the first). Types stay strict: Rivven's YAML gives integers as integers (only
 * StreamHouse sends every value as a string, and only object_storage takes that dialect).
 *
 * Secret headers. The generic redactor (src/engine/kinds.c) masks whole fields, not keys inside
 * a map, so normalize() moves the values of Authorization, Proxy-Authorization and X-Api-Key out
 * of `headers` (which keeps the name, with the value "***") into `header_secrets`, a secret field
 * holding them as JSON text. GET shows both as "***". A PATCH that sends "***" back keeps the
 * stored value: normalize(), run by sl_kind_keep_secrets() before it restores secrets, sees a
 * "***" header it cannot resolve and puts "***" in header_secrets, which keep() then replaces by
 * the stored JSON; the validating normalize() that follows resolves the header from it. A "***"
 * with nothing stored is refused naming the header: by normalize() when header_secrets holds
 * values (not that one), by check_config() when it holds none (a create). */
#include "connectors/webhook/webhook.h"
#include "connectors/httpc.h"
#include "core/buf.h"
#include "core/err.h"
#include "core/util.h"
#include "engine/kinds.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define EXCERPT 256
#define MASK "***"
#define MAX_HEADERS 64
#define MAX_NAME 128
#define MAX_VALUE 8192

static const char *const g_methods[] = {"POST", "PUT", "PATCH", NULL};
/* Headers whose values are secrets: "***" in answers. */
static const char *const g_secret_names[] = {"Authorization", "Proxy-Authorization", "X-Api-Key",
                                             NULL};
/* Headers a config may not set: Sluice's own, and the body's framing (curl's). */
static const char *const g_reserved[] = {"Idempotency-Key", "Content-Length", "Transfer-Encoding",
                                         NULL};

static const struct sl_field f_webhook[] = {
    {"url", SL_F_URL, 1, NULL, 0, "Target URL.", 0, 0, NULL, NULL},
    {"method", SL_F_ENUM, 0, "\"POST\"", 0, "HTTP method of every request.", 0, 0, g_methods, NULL},
    {"secret", SL_F_STRING, 0, NULL, SL_SECRET,
     "Sent as Authorization: Bearer <secret> (or set headers.Authorization, not both).", 0, 0, NULL,
     NULL},
    {"headers", SL_F_STRING_MAP, 0, NULL, 0,
     "Sent with every request; may replace Content-Type, not Idempotency-Key. Values of "
     "Authorization, Proxy-Authorization and X-Api-Key are secrets, shown as `***`.",
     0, 0, NULL, NULL},
    {"header_secrets", SL_F_STRING, 0, NULL, SL_SECRET,
     "Kept by Sluice: the values of the secret headers, as JSON (set them in headers; leave "
     "this out or send `***` back).",
     0, 0, NULL, NULL},
    {"batch_size", SL_F_INT, 0, "1", 0, "Events per request; above 1 the body is a JSON array.", 1,
     10000, NULL, NULL},
    {"max_in_flight", SL_F_INT, 0, "1", 0,
     "Requests sent before the first is answered (one connection each). Above 1 the target may "
     "receive requests out of order; the cursor still only passes records accepted in order.",
     1, 64, NULL, NULL},
    {NULL, 0, 0, NULL, 0, NULL, 0, 0, NULL, NULL},
};

/* ---- config: Rivven's spellings and header checks ---- */

static int in_list(const char *const *list, const char *name)
{
    for (; *list; list++)
        if (strcasecmp(*list, name) == 0)
            return 1;
    return 0;
}

/* "config.headers.<name>" with control characters shown as \r, \n, \xNN (the name is the client's).
 */
static void header_path(char *out, size_t n, const char *name)
{
    size_t k = (size_t)snprintf(out, n, "config.headers.");
    for (const unsigned char *p = (const unsigned char *)name; *p && k + 5 < n && k < 97; p++) {
        if (*p == '\r' || *p == '\n')
            k += (size_t)snprintf(out + k, n - k, "\\%c", *p == '\r' ? 'r' : 'n');
        else if (*p < 0x20 || *p == 0x7f)
            k += (size_t)snprintf(out + k, n - k, "\\x%02x", *p);
        else
            out[k++] = (char)*p;
    }
    out[k < n ? k : n - 1] = 0;
}

static int is_tchar(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

static int check_name(const char *name, struct sl_err *err)
{
    char path[128];
    header_path(path, sizeof(path), name);
    size_t len = strlen(name);
    if (strpbrk(name, "\r\n"))
        return sl_config_error(err, path,
                               "a header name must not hold CR or LF (header injection)");
    if (len == 0 || len > MAX_NAME)
        return sl_config_error(err, path, "a header name has 1 to %d characters", MAX_NAME);
    for (size_t i = 0; i < len; i++)
        if (!is_tchar((unsigned char)name[i]))
            return sl_config_error(
                err, path, "a header name is a token: letters, digits and !#$%%&'*+-.^_`|~ only");
    if (strcasecmp(name, "Idempotency-Key") == 0)
        return sl_config_error(
            err, path,
            "set by Sluice on every request (the first record's hash); it cannot be "
            "replaced");
    if (in_list(g_reserved, name))
        return sl_config_error(err, path, "set from the body; it cannot be given");
    return 0;
}

static int check_value(const char *name, const json_t *v, struct sl_err *err)
{
    char path[128];
    header_path(path, sizeof(path), name);
    const char *s = json_string_value(v);
    size_t len = json_string_length(v);
    if (strlen(s) != len)
        return sl_config_error(err, path, "a header value must not hold NUL");
    if (len > MAX_VALUE)
        return sl_config_error(err, path, "a header value has at most %d bytes", MAX_VALUE);
    if (strpbrk(s, "\r\n"))
        return sl_config_error(err, path,
                               "a header value must not hold CR or LF (header injection)");
    for (size_t i = 0; i < len; i++)
        if (((unsigned char)s[i] < 0x20 && s[i] != '\t') || s[i] == 0x7f)
            return sl_config_error(err, path, "a header value must not hold control characters");
    return 0;
}

/* The stored value of a secret header (names compare case-insensitively), or NULL. */
static json_t *stored_value(const json_t *stored, const char *name)
{
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)stored, k, v)
    {
        if (strcasecmp(k, name) == 0)
            return v;
    }
    return NULL;
}

/* header_secrets as given: absent, "***" (stored is NULL) or the JSON text of an object of
 * strings (what keep() puts back); anything else is refused. */
static int parse_stored(const json_t *hs, json_t **stored, struct sl_err *err)
{
    *stored = NULL;
    if (!hs || json_is_null(hs) || (json_is_string(hs) && strcmp(json_string_value(hs), MASK) == 0))
        return 0;
    json_t *o = json_is_string(hs) ? json_loads(json_string_value(hs), 0, NULL) : NULL;
    int ok = json_is_object(o);
    const char *k;
    json_t *v;
    json_object_foreach(o, k, v)
    {
        ok &= json_is_string(v);
    }
    if (!ok) {
        json_decref(o);
        return sl_config_error(err, "config.header_secrets",
                               "kept by Sluice from headers: leave it out or send back \"***\"");
    }
    *stored = o;
    return 0;
}

static int norm_timeout(json_t *out, struct sl_err *err)
{
    json_t *secs = json_object_get(out, "timeout_secs");
    if (!secs)
        return 0;
    if (!json_is_null(secs)) {
        json_t *ms = json_object_get(out, "timeout_ms");
        if (ms && !json_is_null(ms))
            return sl_config_error(err, "config.timeout_secs",
                                   "give timeout_secs (Rivven) or timeout_ms, not both");
        json_int_t v = json_is_integer(secs) ? json_integer_value(secs) : 0;
        if (v < 1 || v > 600)
            return sl_config_error(err, "config.timeout_secs",
                                   "must be an integer between 1 and 600");
        json_object_set_new(out, "timeout_ms", json_integer(v * 1000));
    }
    json_object_del(out, "timeout_secs");
    return 0;
}

static int norm_retry(json_t *out, struct sl_err *err)
{
    json_t *r = json_object_get(out, "retry");
    json_t *a = json_is_object(r) ? json_object_get(r, "max_attempts") : NULL;
    if (!a)
        return 0;
    if (!json_is_null(a)) {
        json_t *mr = json_object_get(r, "max_retries");
        if (mr && !json_is_null(mr))
            return sl_config_error(
                err, "config.retry.max_attempts",
                "give retry.max_attempts (Rivven: attempts in all) or retry.max_retries "
                "(retries after the first), not both");
        json_int_t v = json_is_integer(a) ? json_integer_value(a) : 0;
        if (v < 1 || v > 1000000000)
            return sl_config_error(err, "config.retry.max_attempts",
                                   "must be an integer between 1 and 1000000000");
        json_object_set_new(r, "max_retries", json_integer(v - 1));
    }
    json_object_del(r, "max_attempts");
    return 0;
}

/* Checks every header and moves the values of secret ones into header_secrets (see the top of
 * this file). A headers value that is not an object of strings is left to the validator. */
static int norm_headers(json_t *out, struct sl_err *err)
{
    json_t *stored = NULL, *keep = NULL;
    if (parse_stored(json_object_get(out, "header_secrets"), &stored, err) < 0)
        return SL_E_INVAL;
    json_object_del(out, "header_secrets");
    json_t *h = json_object_get(out, "headers");
    if (!json_is_object(h))
        goto done;
    if (json_object_size(h) > MAX_HEADERS) {
        sl_config_error(err, "config.headers", "at most %d headers", MAX_HEADERS);
        goto fail;
    }
    json_t *secret = json_object_get(out, "secret");
    int has_secret = secret && !json_is_null(secret), unresolved = 0;
    const char *name, *other;
    json_t *v, *w;
    json_object_foreach(h, name, v)
    {
        if (check_name(name, err) < 0)
            goto fail;
        char path[128];
        header_path(path, sizeof(path), name);
        json_object_foreach(h, other, w)
        {
            if (other == name || strcmp(other, name) == 0)
                break; /* only the ones before */
            if (strcasecmp(other, name) == 0) {
                sl_config_error(err, path, "given twice (header names are case-insensitive)");
                goto fail;
            }
        }
        if (!json_is_string(v))
            continue;
        if (has_secret && strcasecmp(name, "Authorization") == 0) {
            sl_config_error(err, path,
                            "conflicts with config.secret (both set Authorization): give one");
            goto fail;
        }
        if (in_list(g_secret_names, name) && strcmp(json_string_value(v), MASK) == 0) {
            if (!(v = stored_value(stored, name)) && stored) {
                sl_config_error(err, path,
                                "\"***\" keeps a stored value, and none is stored: send the value");
                goto fail;
            }
            if (!v) { /* nothing stored given: keep() may fill header_secrets in */
                unresolved = 1;
                continue;
            }
        }
        if (check_value(name, v, err) < 0)
            goto fail;
    }
    if (unresolved) { /* keep() fills it in, or check_config() refuses the first "***" */
        json_object_set_new(out, "header_secrets", json_string(MASK));
        goto done;
    }
    keep = json_object();
    json_object_foreach(h, name, v)
    {
        if (!json_is_string(v) || !in_list(g_secret_names, name))
            continue;
        json_object_set(keep, name,
                        strcmp(json_string_value(v), MASK) == 0 ? stored_value(stored, name) : v);
    }
    json_object_foreach(keep, name, v)
    {
        json_object_set_new(h, name, json_string(MASK));
    }
    if (json_object_size(keep) > 0) {
        char *text = json_dumps(keep, JSON_COMPACT | JSON_PRESERVE_ORDER);
        if (!text) {
            sl_err_set(err, SL_E_NOMEM, "out_of_memory", "out of memory");
            goto fail;
        }
        json_object_set_new(out, "header_secrets", json_string(text));
        free(text);
    }
done:
    json_decref(keep);
    json_decref(stored);
    return 0;
fail:
    json_decref(keep);
    json_decref(stored);
    return SL_E_INVAL;
}

static json_t *wh_normalize(const json_t *in, struct sl_err *err)
{
    json_t *out = json_deep_copy(in);
    if (!out) {
        sl_err_set(err, SL_E_NOMEM, "out_of_memory", "out of memory");
        return NULL;
    }
    if (norm_timeout(out, err) < 0 || norm_retry(out, err) < 0 || norm_headers(out, err) < 0) {
        json_decref(out);
        return NULL;
    }
    return out;
}

static int wh_check_config(json_t *cfg, struct sl_err *err)
{
    const char *hs = json_string_value(json_object_get(cfg, "header_secrets"));
    if (!hs || strcmp(hs, MASK) != 0)
        return 0;
    const char *name;
    json_t *v;
    json_object_foreach(json_object_get(cfg, "headers"), name, v)
    {
        if (in_list(g_secret_names, name) && json_is_string(v) &&
            strcmp(json_string_value(v), MASK) == 0) {
            char path[128];
            header_path(path, sizeof(path), name);
            return sl_config_error(
                err, path, "\"***\" keeps a stored value, and none is stored: send the value");
        }
    }
    return sl_config_error(err, "config.header_secrets",
                           "kept by Sluice from headers: leave it out");
}

/* ---- request headers ---- */

static void free_lines(char **lines, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(lines[i]);
    free(lines);
}

static int has_header(const json_t *h, const char *name)
{
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)h, k, v)
    {
        if (strcasecmp(k, name) == 0)
            return 1;
    }
    return 0;
}

/* The header lines of every request under a validated config, in curl's syntax ("Name: value",
 * "Name;" for an empty value, "Expect:" to send none), without the Idempotency-Key. */
static int build_lines(const json_t *cfg, char ***lines_out, size_t *n_out, struct sl_err *err)
{
    const json_t *h = json_object_get(cfg, "headers");
    const char *secret = json_string_value(json_object_get(cfg, "secret"));
    json_t *stored = NULL;
    if (parse_stored(json_object_get(cfg, "header_secrets"), &stored, err) < 0)
        return SL_E_INVAL;
    char **lines = calloc(json_object_size(h) + 3, sizeof(*lines));
    size_t n = 0;
    int rc = 0;
    if (!lines)
        goto nomem;
    if (!has_header(h, "Content-Type") && !(lines[n++] = strdup("Content-Type: application/json")))
        goto nomem;
    if (!has_header(h, "Expect") && !(lines[n++] = strdup("Expect:")))
        goto nomem;
    const char *name;
    json_t *v;
    json_object_foreach((json_t *)h, name, v)
    {
        const char *s = json_string_value(v);
        if (s && in_list(g_secret_names, name) && strcmp(s, MASK) == 0) {
            json_t *sv = stored_value(stored, name);
            if (!sv) {
                char path[128];
                header_path(path, sizeof(path), name);
                rc = sl_config_error(err, path, "no stored value for \"***\"");
                goto fail;
            }
            s = json_string_value(sv);
        }
        if (!s ||
            (*s ? asprintf(&lines[n], "%s: %s", name, s) : asprintf(&lines[n], "%s;", name)) < 0) {
            lines[n] = NULL;
            goto nomem;
        }
        n++;
    }
    if (secret && asprintf(&lines[n++], "Authorization: Bearer %s", secret) < 0) {
        lines[--n] = NULL;
        goto nomem;
    }
    json_decref(stored);
    *lines_out = lines;
    *n_out = n;
    return 0;
nomem:
    rc = sl_err_set(err, SL_E_NOMEM, "out_of_memory", "out of memory");
fail:
    free_lines(lines, n);
    json_decref(stored);
    return rc;
}

static void idempotency_line(char *out, size_t n, const struct sl_rec *first)
{
    char hash[SL_REC_HASH_LEN * 2 + 1];
    sl_hex_encode(hash, first->hash, SL_REC_HASH_LEN);
    snprintf(out, n, "Idempotency-Key: %s", hash);
}

int sl_webhook_headers(const json_t *config, const struct sl_rec *first, char **text,
                       struct sl_err *err)
{
    char **lines = NULL, key[128];
    size_t n = 0;
    int rc = build_lines(config, &lines, &n, err);
    if (rc < 0)
        return rc;
    struct sl_buf b;
    sl_buf_init(&b, 0);
    for (size_t i = 0; i < n; i++)
        sl_buf_printf(&b, "%s\r\n", lines[i]);
    idempotency_line(key, sizeof(key), first);
    sl_buf_printf(&b, "%s\r\n", key);
    free_lines(lines, n);
    size_t len;
    *text = sl_buf_steal(&b, &len);
    return *text ? 0 : sl_err_set(err, SL_E_NOMEM, "out_of_memory", "out of memory");
}

/* ---- the sink ---- */

#define MAX_FLIGHT 64

/* One request in flight (max_in_flight > 1). */
struct slot {
    CURL *easy;
    struct sl_buf body;
    struct sl_httpc_resp resp;
    struct curl_slist *hdrs;
    uint64_t order; /* when it was sent; 0 = free */
    int done;       /* its transfer ended (cc says how) */
    CURLcode cc;
};

struct webhook {
    const struct sl_sink_ctx *ctx;
    const char *url, *method;
    long timeout_ms;
    char **lines; /* build_lines() */
    size_t n_lines;
    CURL *curl;
    struct sl_buf body;
    struct sl_httpc_resp resp;
    CURLM *multi; /* max_in_flight > 1 */
    struct slot slots[MAX_FLIGHT];
    unsigned nslots;
    uint64_t sent;
};

static void slot_free(struct webhook *w, struct slot *s)
{
    if (s->order && !s->done)
        curl_multi_remove_handle(w->multi, s->easy);
    curl_slist_free_all(s->hdrs);
    s->hdrs = NULL;
    s->order = 0;
    s->done = 0;
}

static void wh_close(void *self)
{
    struct webhook *w = self;
    if (!w)
        return;
    for (unsigned i = 0; i < w->nslots; i++) {
        slot_free(w, &w->slots[i]);
        curl_easy_cleanup(w->slots[i].easy);
        sl_buf_release(&w->slots[i].body);
        sl_httpc_resp_release(&w->slots[i].resp);
    }
    if (w->multi)
        curl_multi_cleanup(w->multi);
    curl_easy_cleanup(w->curl);
    free_lines(w->lines, w->n_lines);
    sl_buf_release(&w->body);
    sl_httpc_resp_release(&w->resp);
    free(w);
}

static int wh_open(void **self, const struct sl_sink_ctx *ctx, struct sl_sink_info *info,
                   struct sl_err *err)
{
    struct webhook *w = calloc(1, sizeof(*w));
    if (!w || !(w->curl = curl_easy_init())) {
        free(w);
        return sl_err_set(err, SL_E_NOMEM, "out_of_memory", "out of memory");
    }
    const json_t *cfg = ctx->config;
    w->ctx = ctx;
    w->url = json_string_value(json_object_get(cfg, "url"));
    w->method = json_string_value(json_object_get(cfg, "method"));
    if (!w->method) /* stored before method existed */
        w->method = "POST";
    w->timeout_ms = (long)json_integer_value(json_object_get(cfg, "timeout_ms"));
    sl_buf_init(&w->body, 0);
    sl_httpc_resp_init(&w->resp, EXCERPT);
    int rc = build_lines(cfg, &w->lines, &w->n_lines, err);
    if (rc < 0) {
        wh_close(w);
        return rc;
    }
    info->batch_max = (uint64_t)json_integer_value(json_object_get(cfg, "batch_size"));
    long long inflight = json_integer_value(json_object_get(cfg, "max_in_flight"));
    if (inflight > 1) {
        w->nslots = (unsigned)(inflight < MAX_FLIGHT ? inflight : MAX_FLIGHT);
        if (!(w->multi = curl_multi_init())) {
            wh_close(w);
            return sl_err_set(err, SL_E_NOMEM, "out_of_memory", "out of memory");
        }
        for (unsigned i = 0; i < w->nslots; i++) {
            struct slot *s = &w->slots[i];
            sl_buf_init(&s->body, 0);
            sl_httpc_resp_init(&s->resp, EXCERPT);
            if (!(s->easy = curl_easy_init())) {
                wh_close(w);
                return sl_err_set(err, SL_E_NOMEM, "out_of_memory", "out of memory");
            }
        }
        curl_multi_setopt(w->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)w->nslots);
        info->max_inflight = w->nslots;
    }
    *self = w;
    return 0;
}

/* The body: one event object, or an array of them when batch_size > 1 and n > 1. */
int sl_webhook_body(struct sl_buf *body, const struct sl_batch *b)
{
    for (size_t i = 0; i < b->n; i++) {
        if (b->n > 1)
            sl_buf_putc(body, i ? ',' : '[');
        if (sl_event_json(body, &b->recs[i]) < 0)
            return -1;
    }
    if (b->n > 1)
        sl_buf_putc(body, ']');
    return body->failed ? -1 : 0;
}

/* The body and headers of the request for b. SL_R_OK, or the result to return. */
static enum sl_result build(struct webhook *w, const struct sl_batch *b, struct sl_buf *body,
                            struct curl_slist **hdrs, struct sl_outcome *out)
{
    sl_buf_reset(body);
    if (sl_webhook_body(body, b) < 0) {
        snprintf(out->error, sizeof(out->error), "the record cannot be turned into a request");
        return SL_R_REJECT;
    }
    char key[128];
    idempotency_line(key, sizeof(key), &b->recs[0]);
    struct curl_slist *t;
    *hdrs = NULL;
    for (size_t i = 0; i <= w->n_lines; i++) {
        if (!(t = curl_slist_append(*hdrs, i < w->n_lines ? w->lines[i] : key))) {
            curl_slist_free_all(*hdrs);
            *hdrs = NULL;
            snprintf(out->error, sizeof(out->error), "out of memory");
            return SL_R_RETRY;
        }
        *hdrs = t;
    }
    return SL_R_OK;
}

/* Several in flight: the request goes on the multi handle; flush() reports the oldest. */
static enum sl_result queue_send(struct webhook *w, const struct sl_batch *b,
                                 struct sl_outcome *out)
{
    struct slot *s = NULL;
    for (unsigned i = 0; i < w->nslots && !s; i++)
        if (!w->slots[i].order)
            s = &w->slots[i];
    if (!s) { /* the framework keeps at most max_in_flight queued */
        snprintf(out->error, sizeof(out->error), "more requests than max_in_flight");
        return SL_R_RETRY;
    }
    enum sl_result r = build(w, b, &s->body, &s->hdrs, out);
    if (r != SL_R_OK)
        return r;
    sl_httpc_resp_reset(&s->resp);
    sl_httpc_prepare(s->easy, w->method, w->url, s->hdrs, s->body.data, s->body.len, w->timeout_ms,
                     &s->resp);
    if (curl_multi_add_handle(w->multi, s->easy) != CURLM_OK) {
        curl_slist_free_all(s->hdrs);
        s->hdrs = NULL;
        snprintf(out->error, sizeof(out->error), "curl: cannot add the request");
        return SL_R_RETRY;
    }
    s->order = ++w->sent;
    s->done = 0;
    int running;
    curl_multi_perform(w->multi, &running); /* start it now */
    return SL_R_QUEUED;
}

/* Marks the slots whose transfers ended. */
static void collect(struct webhook *w)
{
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(w->multi, &left)))
        for (unsigned i = 0; m->msg == CURLMSG_DONE && i < w->nslots; i++)
            if (w->slots[i].order && w->slots[i].easy == m->easy_handle) {
                w->slots[i].done = 1;
                w->slots[i].cc = m->data.result;
                curl_multi_remove_handle(w->multi, m->easy_handle);
            }
}

static struct slot *oldest(struct webhook *w)
{
    struct slot *o = NULL;
    for (unsigned i = 0; i < w->nslots; i++)
        if (w->slots[i].order && (!o || w->slots[i].order < o->order))
            o = &w->slots[i];
    return o;
}

static int wh_ready(void *self, int timeout_ms)
{
    struct webhook *w = self;
    struct slot *o = w->multi ? oldest(w) : NULL;
    int running;
    for (int round = 0; o && !o->done && round < 2; round++) {
        if (round)
            curl_multi_poll(w->multi, NULL, 0, timeout_ms, NULL);
        curl_multi_perform(w->multi, &running);
        collect(w);
    }
    return !o || o->done;
}

static enum sl_result wh_flush(void *self, struct sl_outcome *out)
{
    struct webhook *w = self;
    struct slot *o = oldest(w);
    if (!o) {
        snprintf(out->error, sizeof(out->error), "no request in flight");
        return SL_R_RETRY;
    }
    while (!o->done) {
        int running;
        curl_multi_perform(w->multi, &running);
        collect(w);
        if (o->done)
            break;
        if (w->ctx->cancelled && w->ctx->cancelled(w->ctx->arg)) {
            for (unsigned i = 0; i < w->nslots; i++) /* a disable aborts every request */
                if (w->slots[i].order && !w->slots[i].done) {
                    curl_multi_remove_handle(w->multi, w->slots[i].easy);
                    w->slots[i].done = 1;
                    w->slots[i].cc = CURLE_ABORTED_BY_CALLBACK;
                }
            break;
        }
        curl_multi_poll(w->multi, NULL, 0, 20, NULL);
    }
    long status = 0;
    if (o->cc == CURLE_OK)
        curl_easy_getinfo(o->easy, CURLINFO_RESPONSE_CODE, &status);
    enum sl_result r = sl_httpc_outcome(o->cc, status, &o->resp, out);
    slot_free(w, o);
    return r;
}

static enum sl_result wh_send(void *self, const struct sl_batch *b, struct sl_outcome *out)
{
    struct webhook *w = self;
    if (b->n == 0)
        return SL_R_OK;
    if (w->multi)
        return queue_send(w, b, out);
    struct curl_slist *hdrs = NULL;
    enum sl_result built = build(w, b, &w->body, &hdrs, out);
    if (built != SL_R_OK)
        return built;
    sl_httpc_resp_reset(&w->resp);
    long status = 0;
    CURLcode cc = sl_httpc_send(w->curl, w->method, w->url, hdrs, w->body.data, w->body.len,
                                w->timeout_ms, &w->resp, w->ctx->cancelled, w->ctx->arg, &status);
    curl_slist_free_all(hdrs);
    return sl_httpc_outcome(cc, status, &w->resp, out);
}

static int wh_check(void *self, struct sl_err *err)
{
    struct webhook *w = self;
    char msg[512];
    if (sl_httpc_probe(w->curl, w->url, w->timeout_ms, msg, sizeof(msg)) == 0)
        return 0;
    return sl_err_set(err, SL_E_UNAVAIL, "unhealthy", "%s", msg);
}

static int wh_format(void *self, const struct sl_batch *b, uint8_t **bytes, size_t *len)
{
    struct sl_buf body;
    sl_buf_init(&body, 0);
    if (sl_webhook_body(&body, b) < 0) {
        sl_buf_release(&body);
        return -1;
    }
    *bytes = (uint8_t *)sl_buf_steal(&body, len);
    return *bytes ? 0 : -1;
}

static const struct sl_sink_ops wh_ops = {.open = wh_open,
                                          .send = wh_send,
                                          .flush = wh_flush,
                                          .check = wh_check,
                                          .format = wh_format,
                                          .close = wh_close,
                                          .ready = wh_ready};

static const char *const wh_aliases[] = {"http-webhook", NULL};

const struct sl_connector sl_conn_webhook = {
    .abi = SL_CONNECTOR_ABI,
    .name = "webhook",
    .aliases = wh_aliases,
    .direction = SL_OUTBOUND,
    .category = "utility",
    .description = "Sends every record of the followed strands to a URL (POST, PUT or PATCH). "
                   "Rivven's timeout_secs and retry.max_attempts are accepted and stored as "
                   "timeout_ms and retry.max_retries (max_attempts - 1).",
    .fields = f_webhook,
    .normalize = wh_normalize,
    .check_config = wh_check_config,
    .sink = &wh_ops,
};
