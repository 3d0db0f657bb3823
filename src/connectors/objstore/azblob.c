/* Azure Blob Storage for the object-storage sink (provider azure): Put Blob for objects up to
 * SL_OS_MULTIPART_THRESHOLD, Put Block + Put Block List above it (the list is committed last, so
 * a crash or a failed block leaves no blob, or the previous one, visible), and a one-blob listing
 * of the container as the health check. Requests are signed with Shared Key (HMAC-SHA256 of the
 * canonicalized request with the account key, per Microsoft's "Authorize with Shared Key") or
 * carry a SAS token. Addressing: {blob endpoint}/{container}/{key}; the endpoint is
 * https://{account}.blob.core.windows.net unless azure.endpoint or the connection string's
 * BlobEndpoint says otherwise (Azurite: http://127.0.0.1:10000/devstoreaccount1). */
#include "connectors/objstore/objstore_int.h"

#include "connectors/httpc.h"
#include "connectors/s3/sigv4.h"
#include "core/buf.h"
#include "core/util.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define AZ_VERSION "2021-12-02" /* x-ms-version: the REST API version the requests follow */
#define RESP_MAX 65536
/* Azurite's well-known development account (UseDevelopmentStorage=true), public in its docs. */
#define DEV_ACCOUNT "devstoreaccount1"
#define DEV_KEY                                                                                    \
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
#define DEV_ENDPOINT "http://127.0.0.1:10000/" DEV_ACCOUNT

static int bad(struct sl_err *err, const char *field, const char *msg)
{
    return sl_err_set(err, SL_E_INVAL, "invalid_config", "config.azure.%s: %s", field, msg);
}

/* Copies v into dst[n]; 0, or -1 if it does not fit. */
static int put(char *dst, size_t n, const char *v)
{
    size_t len = strlen(v);
    if (len >= n)
        return -1;
    memcpy(dst, v, len + 1);
    return 0;
}

static int set_key(struct sl_os_az *az, const char *b64, const char *field, struct sl_err *err)
{
    if (sl_base64_decode(b64, strlen(b64), az->key, sizeof(az->key), &az->key_len) < 0 ||
        az->key_len == 0)
        return bad(err, field, "must be the account key in base64 (as the portal shows it)");
    return 0;
}

/* https://host[:port][/path] without a trailing slash into az->base; host and path split out. */
static int set_endpoint(struct sl_os_az *az, const char *url, const char *field, struct sl_err *err)
{
    size_t n = strlen(url);
    while (n && url[n - 1] == '/')
        n--;
    const char *hs = strstr(url, "://");
    if ((strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0) || !hs || !hs[3] ||
        hs[3] == '/' || n >= sizeof(az->base))
        return bad(err, field, "must be an http:// or https:// URL with a host");
    snprintf(az->base, sizeof(az->base), "%.*s", (int)n, url);
    hs += 3;
    size_t hl = strcspn(hs, "/");
    snprintf(az->path, sizeof(az->path), "%s", hs + hl); /* "" or "/devstoreaccount1" */
    return 0;
}

/* AccountName=..;AccountKey=..;BlobEndpoint=..;DefaultEndpointsProtocol=..;EndpointSuffix=..;
 * SharedAccessSignature=..; or UseDevelopmentStorage=true. Other services' endpoints are
 * ignored. */
static int parse_connection_string(struct sl_os_az *az, const char *cs, struct sl_err *err)
{
    char proto[8] = "https", suffix[200] = "core.windows.net", endpoint[600] = "";
    for (const char *p = cs; *p;) {
        size_t len = strcspn(p, ";");
        const char *eq = memchr(p, '=', len);
        if (len > 0 && !eq)
            return bad(err, "connection_string", "every part must be Name=value");
        if (len > 0) {
            size_t kl = (size_t)(eq - p), vl = len - kl - 1;
            const char *v = eq + 1;
            char val[2048];
            if (vl >= sizeof(val))
                return bad(err, "connection_string", "a value is too long");
            snprintf(val, sizeof(val), "%.*s", (int)vl, v);
#define IS(name) (kl == strlen(name) && strncasecmp(p, name, kl) == 0)
            int fit = 0;
            if (IS("AccountName")) {
                fit = put(az->account, sizeof(az->account), val);
            } else if (IS("AccountKey")) {
                if (set_key(az, val, "connection_string", err) < 0)
                    return SL_E_INVAL;
            } else if (IS("BlobEndpoint")) {
                fit = put(endpoint, sizeof(endpoint), val);
            } else if (IS("DefaultEndpointsProtocol")) {
                if (strcmp(val, "http") != 0 && strcmp(val, "https") != 0)
                    return bad(err, "connection_string",
                               "DefaultEndpointsProtocol must be http or https");
                fit = put(proto, sizeof(proto), val);
            } else if (IS("EndpointSuffix")) {
                fit = put(suffix, sizeof(suffix), val);
            } else if (IS("SharedAccessSignature")) {
                free(az->sas);
                az->sas = strdup(val[0] == '?' ? val + 1 : val);
            } else if (IS("UseDevelopmentStorage")) {
                if (strcasecmp(val, "true") == 0) {
                    snprintf(az->account, sizeof(az->account), "%s", DEV_ACCOUNT);
                    if (set_key(az, DEV_KEY, "connection_string", err) < 0)
                        return SL_E_INVAL;
                    snprintf(endpoint, sizeof(endpoint), "%s", DEV_ENDPOINT);
                }
            }
#undef IS
            if (fit < 0)
                return bad(err, "connection_string", "a value is too long");
        }
        p += len + (p[len] == ';');
    }
    if (endpoint[0])
        return set_endpoint(az, endpoint, "connection_string", err);
    if (!az->account[0])
        return bad(err, "connection_string", "needs AccountName (or BlobEndpoint)");
    char url[600];
    snprintf(url, sizeof(url), "%s://%s.blob.%s", proto, az->account, suffix);
    return set_endpoint(az, url, "connection_string", err);
}

static const char *cstr(const json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s && *s ? s : NULL;
}

int sl_os_az_init(const json_t *azure, struct sl_os_az *az, struct sl_err *err)
{
    memset(az, 0, sizeof(*az));
    const char *account = cstr(azure, "account"), *key = cstr(azure, "access_key"),
               *cs = cstr(azure, "connection_string"), *sas = cstr(azure, "sas_token"),
               *ep = cstr(azure, "endpoint");
    int mi = json_is_true(json_object_get(azure, "use_managed_identity"));
    if (cs && (key || sas))
        return bad(err, "connection_string",
                   "give either a connection_string or access_key / sas_token, not both");
    if (key && sas)
        return bad(err, "sas_token", "give either access_key or sas_token, not both");
    if (cs && parse_connection_string(az, cs, err) < 0)
        goto fail;
    if (account && put(az->account, sizeof(az->account), account) < 0) {
        bad(err, "account", "too long");
        goto fail;
    }
    if (key && set_key(az, key, "access_key", err) < 0)
        goto fail;
    if (sas)
        az->sas = strdup(sas[0] == '?' ? sas + 1 : sas);
    if (ep && set_endpoint(az, ep, "endpoint", err) < 0)
        goto fail;
    if (!az->base[0]) {
        if (!az->account[0]) {
            bad(err, "account",
                "required (or a connection_string, or an endpoint with a sas_token)");
            goto fail;
        }
        char url[600];
        snprintf(url, sizeof(url), "https://%s.blob.core.windows.net", az->account);
        if (set_endpoint(az, url, "account", err) < 0)
            goto fail;
    }
    for (const char *c = az->account; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9')) || strlen(az->account) > 24) {
            bad(err, "account",
                "an Azure storage account name is 3-24 lowercase letters and digits");
            goto fail;
        }
    if (az->key_len && !az->account[0]) {
        bad(err, "account", "required with an access_key (Shared Key names the account)");
        goto fail;
    }
    if (!az->key_len && !az->sas) {
        if (!mi) {
            bad(err, "access_key",
                "give access_key, a connection_string or a sas_token (or use_managed_identity "
                "inside Azure)");
            goto fail;
        }
        az->managed_identity = 1; /* reported by the health check: not available here */
    }
    return 0;
fail:
    sl_os_az_release(az);
    return SL_E_INVAL;
}

void sl_os_az_release(struct sl_os_az *az)
{
    free(az->sas);
    az->sas = NULL;
}

/* ---- Shared Key ---- */

/* The query string's parameters as CanonicalizedResource lists them: "\nname:value" sorted by
 * name (names lowercased, values as sent; our values need no decoding). */
static void canon_query(const char *query, struct sl_buf *out)
{
    const char *parts[16];
    size_t lens[16], n = 0;
    for (const char *p = query; p && *p && n < 16;) {
        size_t len = strcspn(p, "&");
        parts[n] = p;
        lens[n++] = len;
        p += len + (p[len] == '&');
    }
    for (size_t i = 1; i < n; i++) /* insertion sort: a handful of parameters */
        for (size_t j = i; j > 0; j--) {
            size_t a = strcspn(parts[j - 1], "="), b = strcspn(parts[j], "=");
            size_t m = a < b ? a : b;
            int c = strncasecmp(parts[j - 1], parts[j], m);
            if (c < 0 || (c == 0 && a <= b))
                break;
            const char *tp = parts[j];
            size_t tl = lens[j];
            parts[j] = parts[j - 1];
            lens[j] = lens[j - 1];
            parts[j - 1] = tp;
            lens[j - 1] = tl;
        }
    for (size_t i = 0; i < n; i++) {
        size_t kl = strcspn(parts[i], "=");
        if (kl > lens[i])
            kl = lens[i];
        sl_buf_putc(out, '\n');
        for (size_t k = 0; k < kl; k++)
            sl_buf_putc(out, (char)(parts[i][k] >= 'A' && parts[i][k] <= 'Z' ? parts[i][k] + 32
                                                                             : parts[i][k]));
        sl_buf_putc(out, ':');
        if (kl < lens[i])
            sl_buf_append(out, parts[i] + kl + 1, lens[i] - kl - 1);
    }
}

int sl_os_az_string_to_sign(const struct sl_os_az_req *rq, struct sl_buf *out)
{
    /* VERB, Content-Encoding, -Language, -Length ("" when 0), -MD5, -Type, Date (we send
     * x-ms-date), If-Modified-Since, If-Match, If-None-Match, If-Unmodified-Since, Range */
    sl_buf_printf(out, "%s\n\n\n", rq->method);
    if (rq->content_length)
        sl_buf_printf(out, "%zu", rq->content_length);
    sl_buf_printf(out, "\n\n%s\n\n\n\n\n\n\n", rq->content_type ? rq->content_type : "");
    /* CanonicalizedHeaders: the x-ms-* headers, lowercase names, sorted (the caller passes them
     * sorted), "name:value\n" each */
    for (size_t i = 0; i < rq->nheaders; i++)
        sl_buf_printf(out, "%s:%s\n", rq->headers[i][0], rq->headers[i][1]);
    /* CanonicalizedResource: /{account}{encoded path}, then the query parameters */
    sl_buf_printf(out, "/%s%s", rq->account, rq->path);
    canon_query(rq->query, out);
    return out->failed ? -1 : 0;
}

int sl_os_az_authorization(const struct sl_os_az_req *rq, const uint8_t *key, size_t key_len,
                           struct sl_buf *out)
{
    struct sl_buf sts;
    sl_buf_init(&sts, 0);
    uint8_t mac[32];
    unsigned int mlen = 0;
    int rc = sl_os_az_string_to_sign(rq, &sts);
    if (rc == 0 && !HMAC(EVP_sha256(), key, (int)key_len, sts.data, sts.len, mac, &mlen))
        rc = -1;
    if (rc == 0) {
        sl_buf_printf(out, "SharedKey %s:", rq->account);
        sl_buf_base64(out, mac, mlen);
    }
    sl_buf_release(&sts);
    return rc == 0 && !out->failed ? 0 : -1;
}

/* ---- requests ---- */

struct hdr {
    const char *name, *value;
};

/* One request to {base}/{container}[/{key}]?{query}. extra are x-ms-* headers besides
 * x-ms-date and x-ms-version, sorted by name. Returns the HTTP status, or 0 for a network
 * error; res->error says what happened. */
static long request(const struct sl_os_target *t, const struct sl_os_io *io, const char *method,
                    const char *key, const char *query, const uint8_t *body, size_t len,
                    const char *ctype, const struct hdr *extra, size_t nextra,
                    struct sl_httpc_resp *r, struct sl_os_result *res)
{
    const struct sl_os_az *az = t->az;
    struct sl_buf path, url, auth;
    sl_buf_init(&path, 0);
    sl_buf_init(&url, 0);
    sl_buf_init(&auth, 0);
    sl_buf_puts(&path, az->path);
    sl_buf_putc(&path, '/');
    sl_sigv4_uri_encode(t->bucket, strlen(t->bucket), 0, &path);
    if (*key) {
        sl_buf_putc(&path, '/');
        sl_sigv4_uri_encode(key, strlen(key), 1, &path);
    }
    sl_buf_putc(&path, 0);
    const char *encoded = (const char *)path.data;
    sl_buf_printf(&url, "%.*s%s", (int)(strlen(az->base) - strlen(az->path)), az->base, encoded);
    char sep = '?';
    if (query && *query) {
        sl_buf_printf(&url, "?%s", query);
        sep = '&';
    }
    if (az->sas)
        sl_buf_printf(&url, "%c%s", sep, az->sas);
    sl_buf_putc(&url, 0);

    char date[64], h[1200];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
    /* the signed x-ms-* headers in order: extra (x-ms-blob-*), x-ms-date, x-ms-version */
    const char *signed_h[8][2];
    size_t ns = 0;
    for (size_t i = 0; i < nextra && ns < 6; i++) {
        signed_h[ns][0] = extra[i].name;
        signed_h[ns++][1] = extra[i].value;
    }
    signed_h[ns][0] = "x-ms-date";
    signed_h[ns++][1] = date;
    signed_h[ns][0] = "x-ms-version";
    signed_h[ns++][1] = AZ_VERSION;

    struct curl_slist *hdrs = NULL;
    long status = 0;
    snprintf(h, sizeof(h), "Content-Type:%s%s", ctype ? " " : "", ctype ? ctype : "");
    hdrs = curl_slist_append(hdrs, h); /* "Content-Type:" drops curl's form-data default */
    hdrs = curl_slist_append(hdrs, "Expect:");
    for (size_t i = 0; i < ns; i++) {
        snprintf(h, sizeof(h), "%s: %s", signed_h[i][0], signed_h[i][1]);
        hdrs = curl_slist_append(hdrs, h);
    }
    if (az->key_len) {
        struct sl_os_az_req rq = {.method = method,
                                  .account = az->account,
                                  .path = encoded,
                                  .query = query,
                                  .content_length = len,
                                  .content_type = ctype,
                                  .headers = signed_h,
                                  .nheaders = ns};
        if (sl_os_az_authorization(&rq, az->key, az->key_len, &auth) < 0) {
            snprintf(res->error, sizeof(res->error), "Shared Key: cannot sign");
            status = 400;
            goto out;
        }
        sl_buf_putc(&auth, 0);
        snprintf(h, sizeof(h), "Authorization: %s", (const char *)auth.data);
        hdrs = curl_slist_append(hdrs, h);
    }
    /* Azure names the reason in x-ms-error-code and the body's <Code>: the excerpt has it */
    status = sl_os_http(io, method, (const char *)url.data, hdrs, body, len, key, query, r, res);
out:
    curl_slist_free_all(hdrs);
    sl_buf_release(&path);
    sl_buf_release(&url);
    sl_buf_release(&auth);
    return status;
}

/* Block ids: base64 of the block's number as 6 digits (every id of a blob has the same length,
 * as Azure requires; the same file sent again reuses the ids, replacing uncommitted blocks). */
static void block_id(size_t i, char out[16])
{
    char digits[24];
    struct sl_buf b;
    sl_buf_init(&b, 0);
    snprintf(digits, sizeof(digits), "%06zu", i % 1000000);
    sl_buf_base64(&b, (const uint8_t *)digits, 6);
    snprintf(out, 16, "%.*s", (int)b.len, (const char *)b.data);
    sl_buf_release(&b);
}

static long block_list(const struct sl_os_target *t, const struct sl_os_io *io, const char *key,
                       const uint8_t *data, size_t len, const char *ctype, struct sl_os_result *res)
{
    struct sl_httpc_resp r;
    sl_httpc_resp_init(&r, RESP_MAX);
    struct sl_buf list;
    sl_buf_init(&list, 0);
    sl_buf_puts(&list, "<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList>");
    long st = 200;
    char id[16], q[64];
    size_t nblocks = (len + SL_OS_PART_BYTES - 1) / SL_OS_PART_BYTES;
    for (size_t i = 0; i < nblocks && st >= 200 && st < 300; i++) {
        size_t off = i * SL_OS_PART_BYTES;
        block_id(i, id);
        snprintf(q, sizeof(q), "blockid=%s&comp=block", id);
        sl_httpc_resp_reset(&r);
        st = request(t, io, "PUT", key, q, data + off,
                     len - off < SL_OS_PART_BYTES ? len - off : SL_OS_PART_BYTES, NULL, NULL, 0, &r,
                     res);
        sl_buf_printf(&list, "<Latest>%s</Latest>", id);
    }
    sl_buf_puts(&list, "</BlockList>");
    if (st >= 200 && st < 300) { /* the blob appears, whole, only now */
        const struct hdr blob[] = {{"x-ms-blob-content-type", ctype}};
        sl_httpc_resp_reset(&r);
        st = request(t, io, "PUT", key, "comp=blocklist", list.data, list.len, "application/xml",
                     blob, 1, &r, res);
    }
    sl_httpc_resp_release(&r);
    sl_buf_release(&list);
    return st;
}

long sl_os_az_put(const struct sl_os_target *t, const struct sl_os_io *io, const char *key,
                  const uint8_t *data, size_t len, const char *content_type,
                  struct sl_os_result *res)
{
    if (len > SL_OS_MULTIPART_THRESHOLD)
        return block_list(t, io, key, data, len, content_type, res);
    struct sl_httpc_resp r;
    sl_httpc_resp_init(&r, RESP_MAX);
    const struct hdr blob[] = {{"x-ms-blob-type", "BlockBlob"}};
    long st = request(t, io, "PUT", key, NULL, data, len, content_type, blob, 1, &r, res);
    sl_httpc_resp_release(&r);
    return st;
}

long sl_os_az_probe(const struct sl_os_target *t, const struct sl_os_io *io,
                    struct sl_os_result *res)
{
    if (t->az->managed_identity) {
        snprintf(res->error, sizeof(res->error),
                 "azure.use_managed_identity: managed identity is not available outside Azure "
                 "(Sluice does not query the instance metadata service); give access_key, "
                 "connection_string or sas_token");
        return 401;
    }
    struct sl_httpc_resp r;
    sl_httpc_resp_init(&r, 4096);
    long st = request(t, io, "GET", "", "comp=list&maxresults=1&restype=container", NULL, 0, NULL,
                      NULL, 0, &r, res);
    sl_httpc_resp_release(&r);
    return st;
}
