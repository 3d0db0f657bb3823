/* Google Cloud Storage for the object-storage sink (provider gcs), over the JSON API:
 *   - credentials: a service-account key file (gcs.service_account_path, or with gcs.use_adc the
 *     file GOOGLE_APPLICATION_CREDENTIALS names): an RS256-signed JWT (RFC 7519, the key file's
 *     private key) is exchanged at the key's token_uri for an OAuth2 access token
 *     (grant type urn:ietf:params:oauth:grant-type:jwt-bearer, RFC 7523), kept until shortly
 *     before it expires;
 *   - files up to SL_OS_MULTIPART_THRESHOLD: one media upload (uploadType=media);
 *   - larger files: a resumable upload (uploadType=resumable), sent in 8 MiB chunks with
 *     Content-Range; after a chunk fails the session is asked how much arrived
 *     ("Content-Range: bytes * /total", answered 308 with Range) and the upload goes on from there;
 *     the object appears only when the last chunk is in;
 *   - the health check lists one object of the bucket.
 * Addressing: {endpoint}/storage/v1/..., {endpoint}/upload/storage/v1/...; the endpoint is
 * https://storage.googleapis.com unless gcs.endpoint says otherwise. */
#include "connectors/objstore/objstore_int.h"

#include "connectors/s3/sigv4.h"
#include "core/util.h"

#include <errno.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define GCS_ENDPOINT "https://storage.googleapis.com"
#define GCS_TOKEN_URI "https://oauth2.googleapis.com/token"
#define GCS_SCOPE "https://www.googleapis.com/auth/devstorage.read_write"
#define RESP_MAX 65536
#define MAX_RESUMES 3 /* status checks within one attempt before the framework's retry */

static int bad(struct sl_err *err, const char *field, const char *fmt, const char *a, const char *b)
{
    return sl_err_set(err, SL_E_INVAL, "invalid_config", "config.gcs.%s: %s%s%s", field, fmt,
                      a ? a : "", b ? b : "");
}

static int copy(char *dst, size_t n, const char *v)
{
    size_t len = v ? strlen(v) : 0;
    if (!v || len >= n)
        return -1;
    memcpy(dst, v, len + 1);
    return 0;
}

/* Reads a service-account key file: client_email, private_key (PEM), private_key_id, token_uri. */
static int load_key(struct sl_os_gcs *g, const char *path, const char *field, struct sl_err *err)
{
    struct stat sb;
    if (stat(path, &sb) < 0)
        return bad(err, field, "cannot read the key file ", path,
                   errno == ENOENT ? ": no such file" : ": not accessible");
    if (!S_ISREG(sb.st_mode) || sb.st_size > 65536)
        return bad(err, field, "the key file must be a regular file of at most 64 KiB: ", path,
                   NULL);
    json_error_t je;
    errno = 0;
    json_t *k = json_load_file(path, 0, &je);
    if (!k) {
        char why[200];
        snprintf(why, sizeof(why), ": %s", errno ? strerror(errno) : je.text);
        return bad(err, field, "cannot read the key file ", path, why);
    }
    int rc = SL_E_INVAL;
    const char *type = json_string_value(json_object_get(k, "type"));
    const char *email = json_string_value(json_object_get(k, "client_email"));
    const char *pem = json_string_value(json_object_get(k, "private_key"));
    const char *kid = json_string_value(json_object_get(k, "private_key_id"));
    const char *uri = json_string_value(json_object_get(k, "token_uri"));
    if (!type || strcmp(type, "service_account") != 0) {
        bad(err, field,
            "the key file must be a service-account key (\"type\": "
            "\"service_account\"), got ",
            type ? type : "no type", NULL);
        goto out;
    }
    if (copy(g->client_email, sizeof(g->client_email), email) < 0 || !pem ||
        copy(g->key_id, sizeof(g->key_id), kid ? kid : "") < 0 ||
        copy(g->token_uri, sizeof(g->token_uri), uri ? uri : GCS_TOKEN_URI) < 0 ||
        (strncmp(g->token_uri, "https://", 8) != 0 && strncmp(g->token_uri, "http://", 7) != 0)) {
        bad(err, field, "the key file needs client_email, private_key and an http(s) token_uri",
            NULL, NULL);
        goto out;
    }
    BIO *bio = BIO_new_mem_buf(pem, -1);
    g->pkey = bio ? PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL) : NULL;
    BIO_free(bio);
    if (!g->pkey || EVP_PKEY_base_id(g->pkey) != EVP_PKEY_RSA) {
        bad(err, field, "the key file's private_key is not an RSA private key in PEM", NULL, NULL);
        goto out;
    }
    rc = 0;
out:
    json_decref(k);
    return rc;
}

int sl_os_gcs_init(const json_t *gcs, struct sl_os_gcs *g, struct sl_err *err)
{
    memset(g, 0, sizeof(*g));
    const char *path = json_string_value(json_object_get(gcs, "service_account_path"));
    const char *ep = json_string_value(json_object_get(gcs, "endpoint"));
    int adc = json_is_true(json_object_get(gcs, "use_adc"));
    const char *field = "service_account_path";
    if (!path && adc) {
        path = getenv("GOOGLE_APPLICATION_CREDENTIALS");
        field = "use_adc";
        if (!path || !*path)
            return bad(err, field,
                       "GOOGLE_APPLICATION_CREDENTIALS is not set in the server's environment "
                       "(Sluice reads service-account keys; it does not query the metadata "
                       "server)",
                       NULL, NULL);
    }
    if (!path)
        return bad(err, "service_account_path",
                   "required (or use_adc with GOOGLE_APPLICATION_CREDENTIALS); for HMAC keys use "
                   "provider s3 with endpoint https://storage.googleapis.com",
                   NULL, NULL);
    if (ep) {
        size_t n = strlen(ep);
        while (n && ep[n - 1] == '/')
            n--;
        if ((strncmp(ep, "http://", 7) != 0 && strncmp(ep, "https://", 8) != 0) ||
            n >= sizeof(g->base))
            return bad(err, "endpoint", "must be an http:// or https:// URL", NULL, NULL);
        snprintf(g->base, sizeof(g->base), "%.*s", (int)n, ep);
    } else {
        snprintf(g->base, sizeof(g->base), "%s", GCS_ENDPOINT);
    }
    if (load_key(g, path, field, err) < 0) {
        sl_os_gcs_release(g);
        return SL_E_INVAL;
    }
    return 0;
}

void sl_os_gcs_release(struct sl_os_gcs *g)
{
    EVP_PKEY_free(g->pkey);
    g->pkey = NULL;
}

/* ---- the access token ---- */

static void b64url(struct sl_buf *out, const void *p, size_t n)
{
    size_t start = out->len;
    sl_buf_base64(out, p, n);
    while (out->len > start && out->data[out->len - 1] == '=')
        out->len--;
    for (size_t i = start; i < out->len; i++)
        out->data[i] = out->data[i] == '+' ? '-' : out->data[i] == '/' ? '_' : out->data[i];
}

int sl_os_gcs_jwt(const struct sl_os_gcs *g, long long now, struct sl_buf *out)
{
    json_t *h = json_pack("{s:s, s:s}", "alg", "RS256", "typ", "JWT");
    if (g->key_id[0])
        json_object_set_new(h, "kid", json_string(g->key_id));
    json_t *c = json_pack("{s:s, s:s, s:s, s:I, s:I}", "iss", g->client_email, "scope", GCS_SCOPE,
                          "aud", g->token_uri, "iat", now, "exp", now + 3600);
    char *hs = json_dumps(h, JSON_COMPACT), *cs = json_dumps(c, JSON_COMPACT);
    json_decref(h);
    json_decref(c);
    size_t start = out->len;
    b64url(out, hs, strlen(hs));
    sl_buf_putc(out, '.');
    b64url(out, cs, strlen(cs));
    free(hs);
    free(cs);
    uint8_t sig[1024];
    size_t siglen = sizeof(sig);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    int ok = md && !out->failed &&
             EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, (EVP_PKEY *)g->pkey) == 1 &&
             EVP_DigestSignUpdate(md, out->data + start, out->len - start) == 1 &&
             EVP_PKEY_get_size(g->pkey) <= (int)sizeof(sig) &&
             EVP_DigestSignFinal(md, sig, &siglen) == 1;
    EVP_MD_CTX_free(md);
    if (!ok)
        return -1;
    sl_buf_putc(out, '.');
    b64url(out, sig, siglen);
    return out->failed ? -1 : 0;
}

/* A token valid for at least a while longer: fetched when there is none, or when less than
 * min(5 min, half its life) is left. Returns 200, the token endpoint's status, or 0 for a network
 * error (res->error says which). */
static long token(const struct sl_os_target *t, const struct sl_os_io *io, struct sl_os_result *res)
{
    struct sl_os_gcs *g = t->gcs;
    time_t now = time(NULL);
    if (g->token[0] && now < g->refresh_at)
        return 200;
    struct sl_buf jwt, body;
    sl_buf_init(&jwt, 0);
    sl_buf_init(&body, 0);
    struct sl_httpc_resp r;
    sl_httpc_resp_init(&r, RESP_MAX);
    long st = 400;
    if (sl_os_gcs_jwt(g, (long long)now, &jwt) < 0) {
        snprintf(res->error, sizeof(res->error), "GCS: cannot sign the JWT with the key file");
        goto out;
    }
    sl_buf_puts(&body, "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer"
                       "&assertion=");
    sl_buf_append(&body, jwt.data, jwt.len);
    struct curl_slist *hdrs = curl_slist_append(NULL, "Content-Type: "
                                                      "application/x-www-form-urlencoded");
    hdrs = curl_slist_append(hdrs, "Expect:");
    st = sl_os_http(io, "POST", g->token_uri, hdrs, body.data, body.len, "token", NULL, &r, res);
    curl_slist_free_all(hdrs);
    if (st < 200 || st >= 300) {
        if (st) /* "invalid_grant" and its description name the reason */
            snprintf(res->error, sizeof(res->error), "GCS token endpoint: HTTP %ld %.200s", st,
                     res->excerpt);
        goto out;
    }
    json_t *j = json_loadb((const char *)r.body.data, r.body.len, 0, NULL);
    const char *tok = json_string_value(json_object_get(j, "access_token"));
    json_int_t ttl = json_integer_value(json_object_get(j, "expires_in"));
    if (!tok || copy(g->token, sizeof(g->token), tok) < 0 || ttl <= 0) {
        snprintf(res->error, sizeof(res->error),
                 "GCS token endpoint: no access_token / expires_in in its answer");
        g->token[0] = 0;
        st = 502;
    } else {
        json_int_t margin = ttl / 2 < 300 ? ttl / 2 : 300;
        g->refresh_at = now + (time_t)(ttl - margin);
        g->tokens_fetched++;
    }
    json_decref(j);
out:
    sl_httpc_resp_release(&r);
    sl_buf_release(&jwt);
    sl_buf_release(&body);
    return st;
}

/* ---- requests ---- */

/* One authorized request to url. extra is one more header line or NULL. On 401 the token is
 * dropped and the request sent once more with a new one. */
static long request(const struct sl_os_target *t, const struct sl_os_io *io, const char *method,
                    const char *url, const char *what, const uint8_t *body, size_t len,
                    const char *ctype, const char *extra, const char *extra2,
                    struct sl_httpc_resp *r, struct sl_os_result *res)
{
    long st = 0;
    for (int attempt = 0; attempt < 2; attempt++) {
        st = token(t, io, res);
        if (st < 200 || st >= 300)
            return st == 400 || st == 401 || st == 403 ? 401 : st; /* the key is refused */
        char h[4200];
        struct curl_slist *hdrs = NULL;
        snprintf(h, sizeof(h), "Authorization: Bearer %s", t->gcs->token);
        hdrs = curl_slist_append(hdrs, h);
        snprintf(h, sizeof(h), "Content-Type:%s%s", ctype ? " " : "", ctype ? ctype : "");
        hdrs = curl_slist_append(hdrs, h);
        hdrs = curl_slist_append(hdrs, "Expect:");
        if (extra)
            hdrs = curl_slist_append(hdrs, extra);
        if (extra2)
            hdrs = curl_slist_append(hdrs, extra2);
        sl_httpc_resp_reset(r);
        st = sl_os_http(io, method, url, hdrs, body, len, what, NULL, r, res);
        curl_slist_free_all(hdrs);
        if (st != 401)
            break;
        t->gcs->token[0] = 0; /* revoked or expired early: one more try with a new token */
    }
    return st;
}

static void object_url(const struct sl_os_target *t, const char *key, const char *type,
                       struct sl_buf *url)
{
    sl_buf_printf(url, "%s/upload/storage/v1/b/", t->gcs->base);
    sl_sigv4_uri_encode(t->bucket, strlen(t->bucket), 0, url);
    sl_buf_printf(url, "/o?uploadType=%s&name=", type);
    sl_sigv4_uri_encode(key, strlen(key), 0, url);
    sl_buf_putc(url, 0);
}

/* The first byte the session has not stored, from a 308's "Range: bytes=0-N" (none: 0). */
static size_t received(const struct sl_httpc_resp *r)
{
    const char *dash = strchr(r->range, '-');
    if (strncmp(r->range, "bytes=", 6) != 0 || !dash)
        return 0;
    return (size_t)strtoull(dash + 1, NULL, 10) + 1;
}

static long resumable(const struct sl_os_target *t, const struct sl_os_io *io, const char *key,
                      const uint8_t *data, size_t len, const char *ctype, struct sl_os_result *res)
{
    struct sl_buf url;
    sl_buf_init(&url, 0);
    struct sl_httpc_resp r;
    sl_httpc_resp_init(&r, RESP_MAX);
    object_url(t, key, "resumable", &url);
    json_t *m = json_pack("{s:s, s:s}", "name", key, "contentType", ctype);
    char *ms = json_dumps(m, JSON_COMPACT);
    json_decref(m);
    char h1[300], h2[100], session[1024];
    snprintf(h1, sizeof(h1), "X-Upload-Content-Type: %s", ctype);
    snprintf(h2, sizeof(h2), "X-Upload-Content-Length: %zu", len);
    long st = request(t, io, "POST", (const char *)url.data, key, (const uint8_t *)ms, strlen(ms),
                      "application/json; charset=UTF-8", h1, h2, &r, res);
    free(ms);
    if (st >= 200 && st < 300 && !r.location[0]) {
        snprintf(res->error, sizeof(res->error), "POST %.150s (resumable): no Location", key);
        st = 502;
    }
    if (st < 200 || st >= 300)
        goto out;
    snprintf(session, sizeof(session), "%s", r.location);
    size_t off = 0;
    int resumes = 0;
    while (off < len) {
        size_t n = len - off < SL_OS_PART_BYTES ? len - off : SL_OS_PART_BYTES;
        char range[100];
        snprintf(range, sizeof(range), "Content-Range: bytes %zu-%zu/%zu", off, off + n - 1, len);
        st = request(t, io, "PUT", session, key, data + off, n, NULL, range, NULL, &r, res);
        if (st == 308) {
            size_t got = received(&r); /* normally off + n; the server may keep less */
            if (got <= off && resumes++ == MAX_RESUMES) {
                snprintf(res->error, sizeof(res->error),
                         "PUT %.150s (resumable): the session keeps no bytes past %zu", key, off);
                st = 502; /* a server that takes nothing in: retried later, not looped on */
                goto out;
            }
            off = got;
            continue;
        }
        if (st >= 200 && st < 300)
            break; /* the last chunk: the object is there */
        if ((st != 0 && st < 500) || resumes++ == MAX_RESUMES)
            goto out;
        /* a lost or refused chunk: ask the session how much it has, go on from there */
        snprintf(range, sizeof(range), "Content-Range: bytes */%zu", len);
        long cs = request(t, io, "PUT", session, key, NULL, 0, NULL, range, NULL, &r, res);
        if (cs >= 200 && cs < 300) {
            st = cs; /* it had everything */
            break;
        }
        if (cs != 308)
            goto out; /* 404/410: the session is gone; the framework's retry starts a new one */
        off = received(&r);
    }
out:
    sl_httpc_resp_release(&r);
    sl_buf_release(&url);
    return st;
}

long sl_os_gcs_put(const struct sl_os_target *t, const struct sl_os_io *io, const char *key,
                   const uint8_t *data, size_t len, const char *content_type,
                   struct sl_os_result *res)
{
    if (len > SL_OS_MULTIPART_THRESHOLD)
        return resumable(t, io, key, data, len, content_type, res);
    struct sl_buf url;
    sl_buf_init(&url, 0);
    object_url(t, key, "media", &url);
    struct sl_httpc_resp r;
    sl_httpc_resp_init(&r, RESP_MAX);
    long st = request(t, io, "POST", (const char *)url.data, key, data, len, content_type, NULL,
                      NULL, &r, res);
    sl_httpc_resp_release(&r);
    sl_buf_release(&url);
    return st;
}

long sl_os_gcs_probe(const struct sl_os_target *t, const struct sl_os_io *io,
                     struct sl_os_result *res)
{
    struct sl_buf url;
    sl_buf_init(&url, 0);
    sl_buf_printf(&url, "%s/storage/v1/b/", t->gcs->base);
    sl_sigv4_uri_encode(t->bucket, strlen(t->bucket), 0, &url);
    sl_buf_puts(&url, "/o?maxResults=1");
    sl_buf_putc(&url, 0);
    struct sl_httpc_resp r;
    sl_httpc_resp_init(&r, 4096);
    long st =
        request(t, io, "GET", (const char *)url.data, "(list)", NULL, 0, NULL, NULL, NULL, &r, res);
    sl_httpc_resp_release(&r);
    sl_buf_release(&url);
    return st;
}
