#include "connectors/httpc.h"
#include "core/netpolicy.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "formats/json_mp.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

void sl_httpc_resp_init(struct sl_httpc_resp *r, size_t max_body)
{
    sl_buf_init(&r->body, max_body + 1);
    r->max_body = max_body;
    r->retry_after_s = -1;
    r->etag[0] = r->location[0] = r->range[0] = 0;
}

void sl_httpc_resp_reset(struct sl_httpc_resp *r)
{
    sl_buf_reset(&r->body);
    r->retry_after_s = -1;
    r->etag[0] = r->location[0] = r->range[0] = 0;
}

void sl_httpc_resp_release(struct sl_httpc_resp *r)
{
    sl_buf_release(&r->body);
}

static size_t on_body(char *p, size_t sz, size_t n, void *arg)
{
    struct sl_httpc_resp *r = arg;
    size_t len = sz * n, room = r->body.len < r->max_body ? r->max_body - r->body.len : 0;
    sl_buf_append(&r->body, p, len < room ? len : room);
    return len;
}

/* Copies the value of header `name` (given with its colon) from the line p[0..len), trimmed. */
static int header_value(const char *p, size_t len, const char *name, char *out, size_t outlen)
{
    size_t nl = strlen(name);
    if (len <= nl || strncasecmp(p, name, nl) != 0)
        return 0;
    p += nl;
    len -= nl;
    while (len && (*p == ' ' || *p == '\t'))
        p++, len--;
    while (len && (p[len - 1] == '\r' || p[len - 1] == '\n' || p[len - 1] == ' '))
        len--;
    snprintf(out, outlen, "%.*s", (int)(len < outlen ? len : outlen - 1), p);
    return 1;
}

static size_t on_header(char *p, size_t sz, size_t n, void *arg)
{
    struct sl_httpc_resp *r = arg;
    size_t len = sz * n;
    char v[32];
    if (header_value(p, len, "Retry-After:", v, sizeof(v))) {
        char *end;
        long s = strtol(v, &end, 10);
        if (end != v && s >= 0)
            r->retry_after_s = s;
    }
    header_value(p, len, "ETag:", r->etag, sizeof(r->etag));
    header_value(p, len, "Location:", r->location, sizeof(r->location));
    header_value(p, len, "Range:", r->range, sizeof(r->range));
    return len;
}

struct cancel {
    int (*fn)(void *arg);
    void *arg;
};

static int on_progress(void *arg, curl_off_t a, curl_off_t b, curl_off_t c, curl_off_t d)
{
    const struct cancel *k = arg;
    return k->fn && k->fn(k->arg); /* nonzero aborts the transfer */
}

/* ---- the outbound policy (core/netpolicy.h), at connect time ---- */

static __thread char g_denied[160]; /* why the last connection of this thread was refused */

const char *sl_httpc_denied(void)
{
    return g_denied[0] ? g_denied : NULL;
}

/* libcurl asks for every socket it connects: the resolved address is checked here. */
static curl_socket_t open_socket(void *arg, curlsocktype purpose, struct curl_sockaddr *sa)
{
    (void)arg;
    (void)purpose;
    const unsigned char *a = NULL;
    if (sa->family == AF_INET)
        a = (const unsigned char *)&((struct sockaddr_in *)(void *)&sa->addr)->sin_addr;
    else if (sa->family == AF_INET6)
        a = (const unsigned char *)&((struct sockaddr_in6 *)(void *)&sa->addr)->sin6_addr;
    if (a && sl_netpolicy_denied(sa->family, a, g_denied, sizeof(g_denied)))
        return CURL_SOCKET_BAD;
    return socket(sa->family, sa->socktype, sa->protocol);
}

static void guard(CURL *c)
{
    g_denied[0] = 0;
    curl_easy_setopt(c, CURLOPT_OPENSOCKETFUNCTION, open_socket);
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L); /* a redirect is an answer, not followed */
}

void sl_httpc_prepare(CURL *c, const char *method, const char *url, struct curl_slist *hdrs,
                      const void *body, size_t len, long timeout_ms, struct sl_httpc_resp *r)
{
    curl_easy_reset(c);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body ? (const char *)body : "");
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
    guard(c);
}

CURLcode sl_httpc_send(CURL *c, const char *method, const char *url, struct curl_slist *hdrs,
                       const void *body, size_t len, long timeout_ms, struct sl_httpc_resp *r,
                       int (*cancel)(void *arg), void *arg, long *status)
{
    struct cancel k = {cancel, arg};
    *status = 0;
    sl_httpc_prepare(c, method, url, hdrs, body, len, timeout_ms, r);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, &k);
    CURLcode cc = curl_easy_perform(c);
    if (cc == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
    return cc;
}

enum sl_result sl_httpc_outcome(CURLcode cc, long status, const struct sl_httpc_resp *r,
                                struct sl_outcome *out)
{
    if (r->retry_after_s >= 0)
        out->retry_after_ms = r->retry_after_s > 3600 ? 3600000 : r->retry_after_s * 1000;
    snprintf(out->excerpt, sizeof(out->excerpt), "%.*s", (int)r->body.len,
             r->body.data ? (const char *)r->body.data : "");
    if (cc != CURLE_OK) {
        out->status = 0;
        snprintf(out->error, sizeof(out->error), "%s",
                 g_denied[0] ? g_denied : curl_easy_strerror(cc));
        return SL_R_NOT_CONNECTED;
    }
    out->status = (int)status;
    snprintf(out->error, sizeof(out->error), "HTTP %ld", status);
    if (status >= 200 && status < 300)
        return SL_R_OK;
    if (status == 408 || status == 429 || status >= 500)
        return SL_R_RETRY;
    return SL_R_REJECT;
}

int sl_event_json(struct sl_buf *b, const struct sl_rec *r)
{
    sl_buf_putc(b, '{');
    if (sl_event_json_members(b, r) < 0)
        return -1;
    sl_buf_putc(b, '}');
    return b->failed ? -1 : 0;
}

int sl_event_json_members(struct sl_buf *b, const struct sl_rec *r)
{
    sl_buf_printf(
        b, "\"event\":\"%s\",\"agent_id\":", (r->flags & SL_REC_TOMBSTONE) ? "tombstone" : "write");
    sl_buf_json_str(b, r->source, r->source_len);
    sl_buf_puts(b, ",\"record_hash\":\"");
    sl_buf_hex(b, r->hash, SL_REC_HASH_LEN);
    sl_buf_puts(b, "\",\"payload\":");
    size_t used;
    struct sl_jerr je;
    if (sl_mp_to_json(r->payload, r->payload_len, &used, b, 200, &je) < 0)
        return -1;
    sl_buf_printf(b, ",\"timestamp_ms\":%llu", (unsigned long long)r->timestamp_ms);
    return b->failed ? -1 : 0;
}

int sl_httpc_probe(CURL *c, const char *url, long timeout_ms, char *err, size_t errlen)
{
    curl_easy_reset(c);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CONNECT_ONLY, 1L);
    guard(c);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms < 5000 ? timeout_ms : 5000L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    CURLcode cc = curl_easy_perform(c);
    curl_easy_reset(c); /* the next request must not be connect-only */
    if (cc == CURLE_OK)
        return 0;
    snprintf(err, errlen, "cannot connect to %.300s: %s", url,
             g_denied[0] ? g_denied : curl_easy_strerror(cc));
    return -1;
}
