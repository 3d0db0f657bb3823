/* S3 PutObject and multipart upload (CreateMultipartUpload, UploadPart, CompleteMultipartUpload,
 * AbortMultipartUpload on failure) with libcurl, every request signed by our SigV4 signer over
 * the real SHA-256 of its body. Addressing: path-style ({endpoint}/{bucket}/{key}) with
 * force_path_style or any custom endpoint, virtual-host style
 * (https://{bucket}.s3.{region}.amazonaws.com/{key}) otherwise. */
#include "connectors/objstore/objstore_int.h"

#include "connectors/httpc.h"
#include "connectors/s3/sigv4.h"
#include "core/buf.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define RESP_MAX 65536 /* response bodies kept (CreateMultipartUpload's answer is ~300 bytes) */

/* Where requests go: the URL's scheme://host part, the Host header, and the raw path before the
 * key (with the bucket in path-style). */
struct where {
    char base[600];   /* "http://127.0.0.1:9000" */
    char host[512];   /* "127.0.0.1:9000" */
    char prefix[700]; /* "/bucket" (path-style) or "" */
};

static void where_of(const struct sl_os_target *t, struct where *w)
{
    if (t->endpoint) {
        const char *ep = t->endpoint, *hs = strstr(ep, "://");
        hs = hs ? hs + 3 : ep;
        size_t hl = strcspn(hs, "/");
        size_t pl = strlen(hs + hl);
        while (pl && hs[hl + pl - 1] == '/')
            pl--;
        snprintf(w->base, sizeof(w->base), "%.*s", (int)(hs + hl - ep), ep);
        snprintf(w->host, sizeof(w->host), "%.*s", (int)hl, hs);
        /* an endpoint with a path ("http://h/s3") keeps it in front of the bucket */
        snprintf(w->prefix, sizeof(w->prefix), "%.*s/%s", (int)pl, hs + hl, t->bucket);
    } else if (t->path_style) {
        snprintf(w->host, sizeof(w->host), "s3.%s.amazonaws.com", t->region);
        snprintf(w->base, sizeof(w->base), "https://%s", w->host);
        snprintf(w->prefix, sizeof(w->prefix), "/%s", t->bucket);
    } else {
        snprintf(w->host, sizeof(w->host), "%s.s3.%s.amazonaws.com", t->bucket, t->region);
        snprintf(w->base, sizeof(w->base), "https://%s", w->host);
        w->prefix[0] = 0;
    }
}

/* One signed request. query is already percent-encoded ("partNumber=1&uploadId=..."), or NULL.
 * Returns the HTTP status, or 0 for a network error; res->error says what happened. */
static long request(const struct sl_os_target *t, const struct sl_os_io *io, const char *method,
                    const char *key, const char *query, const uint8_t *body, size_t len,
                    const char *ctype, struct sl_httpc_resp *r, struct sl_os_result *res)
{
    struct where w;
    where_of(t, &w);
    char path[SL_OS_KEY_MAX + 800];
    if (*key || !*w.prefix)
        snprintf(path, sizeof(path), "%s/%s", w.prefix, key);
    else
        snprintf(path, sizeof(path), "%s", w.prefix); /* the bucket itself: /bucket */
    struct sl_buf url, sig;
    sl_buf_init(&url, 0);
    sl_buf_init(&sig, 0);
    sl_buf_puts(&url, w.base);
    sl_sigv4_uri_encode(path, strlen(path), 1, &url);
    if (query)
        sl_buf_printf(&url, "?%s", query);
    sl_buf_putc(&url, 0);
    struct curl_slist *hdrs = NULL;
    long status = 0;
    char h[600];
    snprintf(h, sizeof(h), "Content-Type:%s%s", ctype ? " " : "", ctype ? ctype : "");
    hdrs = curl_slist_append(hdrs, h); /* "Content-Type:" drops curl's form-data default */
    hdrs = curl_slist_append(hdrs, "Expect:");
    if (t->access_key_id) {
        const char *const extra[][2] = {{"Content-Type", ctype}};
        struct sl_sigv4_req rq = {.method = method,
                                  .host = w.host,
                                  .path = path,
                                  .query = query,
                                  .payload = body,
                                  .payload_len = len,
                                  .region = t->region,
                                  .service = "s3",
                                  .now = time(NULL),
                                  .extra_headers = ctype ? extra : NULL,
                                  .n_extra = ctype ? 1 : 0};
        struct sl_sigv4_creds cr = {.access_key_id = t->access_key_id,
                                    .secret_access_key = t->secret_access_key,
                                    .session_token = t->session_token};
        struct sl_err err = {0};
        if (sl_sigv4_sign(&rq, &cr, &sig, &err) < 0) {
            snprintf(res->error, sizeof(res->error), "SigV4: %.200s", err.msg);
            status = 400; /* permanent: the same request cannot be signed next time either */
            goto out;
        }
        for (char *line = (char *)sig.data, *next; line && *line; line = next) {
            next = strchr(line, '\n');
            if (next)
                *next++ = 0;
            hdrs = curl_slist_append(hdrs, line);
        }
    }
    status = sl_os_http(io, method, (const char *)url.data, hdrs, body, len, key, query, r, res);
out:
    curl_slist_free_all(hdrs);
    sl_buf_release(&url);
    sl_buf_release(&sig);
    return status;
}

/* The text of <tag>...</tag> in xml, or 0. */
static int xml_text(const struct sl_buf *xml, const char *tag, char *out, size_t n)
{
    char open[64], close[64];
    snprintf(open, sizeof(open), "<%s>", tag);
    snprintf(close, sizeof(close), "</%s>", tag);
    if (!xml->data)
        return 0;
    const char *s = memmem(xml->data, xml->len, open, strlen(open));
    if (!s)
        return 0;
    s += strlen(open);
    const char *e =
        memmem(s, xml->len - (size_t)(s - (const char *)xml->data), close, strlen(close));
    if (!e || (size_t)(e - s) >= n)
        return 0;
    snprintf(out, n, "%.*s", (int)(e - s), s);
    return 1;
}

static long multipart(const struct sl_os_target *t, const struct sl_os_io *io, const char *key,
                      const uint8_t *data, size_t len, const char *ctype, struct sl_os_result *res)
{
    struct sl_httpc_resp r;
    sl_httpc_resp_init(&r, RESP_MAX);
    char upload_id[1024], q[1400];
    struct sl_buf enc, done;
    sl_buf_init(&enc, 0);
    sl_buf_init(&done, 0);
    long st = request(t, io, "POST", key, "uploads", NULL, 0, ctype, &r, res);
    if (st < 200 || st >= 300)
        goto out;
    if (!xml_text(&r.body, "UploadId", upload_id, sizeof(upload_id))) {
        snprintf(res->error, sizeof(res->error), "CreateMultipartUpload %.150s: no UploadId", key);
        st = 502; /* a broken answer from the server: transient */
        goto out;
    }
    sl_sigv4_uri_encode(upload_id, strlen(upload_id), 0, &enc);
    sl_buf_putc(&enc, 0);
    sl_buf_puts(&done, "<CompleteMultipartUpload>");
    size_t nparts = (len + SL_OS_PART_BYTES - 1) / SL_OS_PART_BYTES;
    for (size_t i = 0; i < nparts; i++) {
        size_t off = i * SL_OS_PART_BYTES;
        size_t plen = len - off < SL_OS_PART_BYTES ? len - off : SL_OS_PART_BYTES;
        snprintf(q, sizeof(q), "partNumber=%zu&uploadId=%s", i + 1, (const char *)enc.data);
        sl_buf_reset(&r.body);
        r.etag[0] = 0;
        st = request(t, io, "PUT", key, q, data + off, plen, NULL, &r, res);
        if (st < 200 || st >= 300)
            goto abort;
        if (!r.etag[0]) {
            snprintf(res->error, sizeof(res->error), "UploadPart %.150s #%zu: no ETag", key, i + 1);
            st = 502;
            goto abort;
        }
        sl_buf_printf(&done, "<Part><PartNumber>%zu</PartNumber><ETag>%s</ETag></Part>", i + 1,
                      r.etag);
    }
    sl_buf_puts(&done, "</CompleteMultipartUpload>");
    snprintf(q, sizeof(q), "uploadId=%s", (const char *)enc.data);
    sl_buf_reset(&r.body);
    st = request(t, io, "POST", key, q, done.data, done.len, "application/xml", &r, res);
    /* S3 may answer 200 and still fail the completion: the error is in the body */
    if (st >= 200 && st < 300 && r.body.data &&
        memmem(r.body.data, r.body.len, "<Error>", 7) != NULL) {
        snprintf(res->excerpt, sizeof(res->excerpt), "%.*s",
                 (int)(r.body.len < sizeof(res->excerpt) ? r.body.len : sizeof(res->excerpt) - 1),
                 (const char *)r.body.data);
        snprintf(res->error, sizeof(res->error),
                 "CompleteMultipartUpload %.150s: error in a 200 answer", key);
        st = 500; /* as AWS advises: retry */
    }
    if (st >= 200 && st < 300)
        goto out;
abort:; /* best effort: the parts would otherwise be kept (and billed) until a lifecycle rule */
    struct sl_os_result ignored = {0};
    struct sl_httpc_resp ra;
    sl_httpc_resp_init(&ra, RESP_MAX);
    snprintf(q, sizeof(q), "uploadId=%s", (const char *)enc.data);
    request(t, io, "DELETE", key, q, NULL, 0, NULL, &ra, &ignored);
    sl_httpc_resp_release(&ra);
out:
    sl_httpc_resp_release(&r);
    sl_buf_release(&enc);
    sl_buf_release(&done);
    return st;
}

long sl_os_s3_put(const struct sl_os_target *t, const struct sl_os_io *io, const char *key,
                  const uint8_t *data, size_t len, const char *content_type,
                  struct sl_os_result *res)
{
    if (len > SL_OS_MULTIPART_THRESHOLD)
        return multipart(t, io, key, data, len, content_type, res);
    struct sl_httpc_resp r;
    sl_httpc_resp_init(&r, RESP_MAX);
    long st = request(t, io, "PUT", key, NULL, data, len, content_type, &r, res);
    sl_httpc_resp_release(&r);
    return st;
}

long sl_os_s3_probe(const struct sl_os_target *t, const struct sl_os_io *io,
                    struct sl_os_result *res)
{
    struct sl_httpc_resp r;
    sl_httpc_resp_init(&r, 512);
    long st = request(t, io, "GET", "", "max-keys=1", NULL, 0, NULL, &r, res);
    sl_httpc_resp_release(&r);
    return st;
}
