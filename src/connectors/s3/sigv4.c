/* AWS Signature Version 4 signer for S3 (see sigv4.h for the rules it follows).
 *
 * Every function builds into local, capped scratch buffers and copies the result into the
 * caller's buffer with one append, so a failure never leaves half a header block behind. Key
 * material (the "AWS4"+secret key and each derived key) is wiped with OPENSSL_cleanse. */
#include "connectors/s3/sigv4.h"

#include "core/util.h"

#include <limits.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define ALGO "AWS4-HMAC-SHA256"

static const char hex_upper[] = "0123456789ABCDEF";

/* ---- small helpers ------------------------------------------------------------------------ */

static int is_unreserved(uint8_t c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~';
}

/* RFC 9110 token character (header names, methods). */
static int is_tchar(uint8_t c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           (c && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static int is_token(const char *s)
{
    if (!s || !*s)
        return 0;
    for (; *s; s++)
        if (!is_tchar((uint8_t)*s))
            return 0;
    return 1;
}

/* Printable, no whitespace: host, access key, scope parts. */
static int is_word(const char *s, size_t max)
{
    size_t n = 0;
    if (!s || !*s)
        return 0;
    for (; *s; s++, n++)
        if ((uint8_t)*s <= 0x20 || (uint8_t)*s == 0x7f || n >= max)
            return 0;
    return 1;
}

/* Control bytes other than tab: CR/LF in a header value would split it on the wire. */
static int has_ctl(const char *s)
{
    for (; *s; s++)
        if (((uint8_t)*s < 0x20 && *s != '\t') || (uint8_t)*s == 0x7f)
            return 1;
    return 0;
}

/* Restores b to `len` bytes after a failed multi-step append (b->failed stays as sl_buf set it). */
static void buf_truncate(struct sl_buf *b, size_t len)
{
    if (b->data && len <= b->len) {
        b->len = len;
        b->data[len] = 0;
    }
}

/* URI-encodes s[0..n). With `decode`, a valid %XX escape is first turned back into its byte, so
 * "a%20b" and "a b" canonicalise alike (the query may arrive encoded or raw). */
static int encode(const char *s, size_t n, int keep_slash, int decode, struct sl_buf *out)
{
    char tmp[256];
    size_t t = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = (uint8_t)s[i];
        if (decode && c == '%' && i + 2 < n) {
            int hi = sl_hex_digit(s[i + 1]), lo = sl_hex_digit(s[i + 2]);
            if (hi >= 0 && lo >= 0) {
                c = (uint8_t)(hi << 4 | lo);
                i += 2;
            }
        }
        if (is_unreserved(c) || (keep_slash && c == '/')) {
            tmp[t++] = (char)c;
        } else {
            tmp[t++] = '%';
            tmp[t++] = hex_upper[c >> 4];
            tmp[t++] = hex_upper[c & 15];
        }
        if (t > sizeof(tmp) - 3) {
            if (sl_buf_append(out, tmp, t))
                return SL_E_TOOBIG;
            t = 0;
        }
    }
    if (t && sl_buf_append(out, tmp, t))
        return SL_E_TOOBIG;
    return 0;
}

int sl_sigv4_uri_encode(const char *s, size_t n, int keep_slash, struct sl_buf *out)
{
    if (!out || (!s && n))
        return SL_E_INVAL;
    size_t start = out->len;
    int rc = encode(s, n, keep_slash, 0, out);
    if (rc)
        buf_truncate(out, start);
    return rc;
}

static int sha256_hex(const void *p, size_t n, char hex[65])
{
    static const char hexd[] = "0123456789abcdef";
    uint8_t md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (!EVP_Digest(p, n, md, &mdlen, EVP_sha256(), NULL) || mdlen != 32)
        return SL_E_UNAVAIL;
    for (int i = 0; i < 32; i++) {
        hex[2 * i] = hexd[md[i] >> 4];
        hex[2 * i + 1] = hexd[md[i] & 15];
    }
    hex[64] = 0;
    return 0;
}

static int hmac256(const void *key, size_t klen, const void *msg, size_t mlen, uint8_t out[32])
{
    unsigned int len = 0;
    if (klen > INT_MAX || !HMAC(EVP_sha256(), key, (int)klen, msg, mlen, out, &len) || len != 32)
        return -1;
    return 0;
}

static int derive_key(const char *secret, const char *date8, const char *region,
                      const char *service, uint8_t out[32])
{
    uint8_t stackbuf[128], a[32], b[32];
    size_t sl = strlen(secret), kl = sl + 4;
    uint8_t *k = kl <= sizeof(stackbuf) ? stackbuf : malloc(kl);
    int rc = -1;
    if (!k)
        return -1;
    memcpy(k, "AWS4", 4);
    memcpy(k + 4, secret, sl);
    if (hmac256(k, kl, date8, strlen(date8), a) || hmac256(a, 32, region, strlen(region), b) ||
        hmac256(b, 32, service, strlen(service), a) || hmac256(a, 32, "aws4_request", 12, out))
        goto done;
    rc = 0;
done:
    OPENSSL_cleanse(k, kl);
    OPENSSL_cleanse(a, sizeof(a));
    OPENSSL_cleanse(b, sizeof(b));
    if (k != stackbuf)
        free(k);
    if (rc)
        OPENSSL_cleanse(out, 32);
    return rc;
}

void sl_sigv4_signing_key(const char *secret, const char *date8, const char *region,
                          const char *service, uint8_t out[32])
{
    if (!secret || !date8 || !region || !service || derive_key(secret, date8, region, service, out))
        memset(out, 0, 32);
}

/* ---- canonical query ---------------------------------------------------------------------- */

struct qpair {
    size_t koff, voff; /* into the scratch buffer, NUL-terminated */
    const char *k, *v;
};

static int qpair_cmp(const void *pa, const void *pb)
{
    const struct qpair *a = pa, *b = pb;
    int c = strcmp(a->k, b->k);
    return c ? c : strcmp(a->v, b->v);
}

static int canonical_query(const char *q, struct sl_buf *out, struct sl_err *err)
{
    if (!q || !*q)
        return 0;
    size_t qlen = strlen(q), n = 1;
    if (qlen > SL_SIGV4_MAX_CANONICAL)
        return sl_err_set(err, SL_E_TOOBIG, "sigv4_too_big", "sigv4: query of %zu bytes", qlen);
    for (const char *p = q; *p; p++)
        n += *p == '&';

    int rc = 0;
    size_t np = 0;
    struct sl_buf s;
    sl_buf_init(&s, SL_SIGV4_MAX_CANONICAL);
    struct qpair *pv = calloc(n, sizeof(*pv));
    if (!pv) {
        rc = sl_err_set(err, SL_E_NOMEM, "out_of_memory", "sigv4: out of memory");
        goto done;
    }
    for (const char *p = q;;) {
        const char *e = strchr(p, '&');
        if (!e)
            e = q + qlen;
        if (e > p) { /* "a=1&&b=2": empty pieces carry no parameter */
            const char *eq = memchr(p, '=', (size_t)(e - p));
            const char *ke = eq ? eq : e;
            pv[np].koff = s.len;
            encode(p, (size_t)(ke - p), 0, 1, &s);
            sl_buf_putc(&s, 0);
            pv[np].voff = s.len;
            if (eq)
                encode(eq + 1, (size_t)(e - eq - 1), 0, 1, &s);
            sl_buf_putc(&s, 0);
            np++;
        }
        if (!*e)
            break;
        p = e + 1;
    }
    if (s.failed) {
        rc = sl_err_set(err, SL_E_TOOBIG, "sigv4_too_big", "sigv4: encoded query too large");
        goto done;
    }
    for (size_t i = 0; i < np; i++) {
        pv[i].k = (const char *)s.data + pv[i].koff;
        pv[i].v = (const char *)s.data + pv[i].voff;
    }
    qsort(pv, np, sizeof(*pv), qpair_cmp);
    for (size_t i = 0; i < np; i++) {
        if (i)
            sl_buf_putc(out, '&');
        sl_buf_puts(out, pv[i].k);
        sl_buf_putc(out, '=');
        sl_buf_puts(out, pv[i].v);
    }
    if (out->failed)
        rc = sl_err_set(err, SL_E_TOOBIG, "sigv4_too_big", "sigv4: canonical request too large");
done:
    free(pv);
    sl_buf_release(&s);
    return rc;
}

/* ---- canonical headers -------------------------------------------------------------------- */

struct hdr {
    size_t noff, voff, idx; /* name/value offsets into the scratch buffer; input order */
    const char *name, *val;
};

static int hdr_cmp(const void *pa, const void *pb)
{
    const struct hdr *a = pa, *b = pb;
    int c = strcmp(a->name, b->name);
    if (c)
        return c;
    return a->idx < b->idx ? -1 : a->idx > b->idx; /* stable: repeated names keep input order */
}

/* Appends the lower-cased name, NUL-terminated. */
static void put_name(struct sl_buf *s, const char *name)
{
    for (const char *p = name; *p; p++) {
        uint8_t c = (uint8_t)*p;
        sl_buf_putc(s, (c >= 'A' && c <= 'Z') ? (uint8_t)(c + 32) : c);
    }
    sl_buf_putc(s, 0);
}

/* Appends the value trimmed, with inner runs of spaces/tabs collapsed to one space,
 * NUL-terminated. -1 on a control byte (CR/LF would split the header on the wire). */
static int put_value(struct sl_buf *s, const char *v)
{
    size_t start = s->len;
    int space = 0;
    for (const char *p = v; *p; p++) {
        uint8_t c = (uint8_t)*p;
        if (c == ' ' || c == '\t') {
            space = 1;
            continue;
        }
        if (c < 0x20 || c == 0x7f)
            return -1;
        if (space && s->len > start)
            sl_buf_putc(s, ' ');
        space = 0;
        sl_buf_putc(s, c);
    }
    sl_buf_putc(s, 0);
    return 0;
}

static const char *const reserved_headers[] = {"host", "authorization", "x-amz-date",
                                               "x-amz-content-sha256", "x-amz-security-token"};

static int is_reserved(const char *name)
{
    for (size_t i = 0; i < sizeof(reserved_headers) / sizeof(reserved_headers[0]); i++)
        if (strcasecmp(name, reserved_headers[i]) == 0)
            return 1;
    return 0;
}

static void add_hdr(struct hdr *h, size_t *nh, struct sl_buf *s, const char *lname, const char *val)
{
    h[*nh].idx = *nh;
    h[*nh].noff = s->len;
    put_name(s, lname);
    h[*nh].voff = s->len;
    put_value(s, val); /* our own values are already checked */
    (*nh)++;
}

/* Appends "name:value\n" lines for every signed header to cr and "a;b;c" to sh. */
static int canonical_headers(const struct sl_sigv4_req *r, const char *hash, const char *amz_date,
                             const char *token, struct sl_buf *cr, struct sl_buf *sh,
                             struct sl_err *err)
{
    int rc = 0;
    size_t nh = 0;
    struct sl_buf s;
    sl_buf_init(&s, SL_SIGV4_MAX_CANONICAL);
    struct hdr *h = calloc(r->n_extra + 4, sizeof(*h));
    if (!h) {
        rc = sl_err_set(err, SL_E_NOMEM, "out_of_memory", "sigv4: out of memory");
        goto done;
    }
    add_hdr(h, &nh, &s, "host", r->host);
    if (!r->omit_content_sha256)
        add_hdr(h, &nh, &s, "x-amz-content-sha256", hash);
    add_hdr(h, &nh, &s, "x-amz-date", amz_date);
    if (token)
        add_hdr(h, &nh, &s, "x-amz-security-token", token);
    for (size_t i = 0; i < r->n_extra; i++) {
        const char *name = r->extra_headers[i][0], *val = r->extra_headers[i][1];
        if (!is_token(name)) {
            rc = sl_err_set(err, SL_E_INVAL, "sigv4_bad_header", "sigv4: bad header name \"%s\"",
                            name ? name : "(null)");
            goto done;
        }
        if (is_reserved(name)) {
            rc = sl_err_set(err, SL_E_INVAL, "sigv4_bad_header",
                            "sigv4: header %s is set by the signer, not by the caller", name);
            goto done;
        }
        h[nh].idx = nh;
        h[nh].noff = s.len;
        put_name(&s, name);
        h[nh].voff = s.len;
        if (!val || put_value(&s, val)) {
            rc = sl_err_set(err, SL_E_INVAL, "sigv4_bad_header",
                            "sigv4: header %s: missing value or control byte in it", name);
            goto done;
        }
        nh++;
    }
    if (s.failed) {
        rc = sl_err_set(err, SL_E_TOOBIG, "sigv4_too_big", "sigv4: headers too large");
        goto done;
    }
    for (size_t i = 0; i < nh; i++) {
        h[i].name = (const char *)s.data + h[i].noff;
        h[i].val = (const char *)s.data + h[i].voff;
    }
    qsort(h, nh, sizeof(*h), hdr_cmp);
    for (size_t i = 0; i < nh; i++) {
        if (i && strcmp(h[i].name, h[i - 1].name) == 0) { /* repeated: "a:v1,v2" */
            sl_buf_putc(cr, ',');
            sl_buf_puts(cr, h[i].val);
            continue;
        }
        if (i) {
            sl_buf_putc(cr, '\n');
            sl_buf_putc(sh, ';');
        }
        sl_buf_printf(cr, "%s:%s", h[i].name, h[i].val);
        sl_buf_puts(sh, h[i].name);
    }
    sl_buf_putc(cr, '\n');
    if (cr->failed || sh->failed)
        rc = sl_err_set(err, SL_E_TOOBIG, "sigv4_too_big", "sigv4: canonical request too large");
done:
    free(h);
    sl_buf_release(&s);
    return rc;
}

/* ---- canonical request, string to sign ---------------------------------------------------- */

/* Builds the canonical request into out (appended atomically) and the signed header list into
 * sh (may be NULL). */
static int canon_req(const struct sl_sigv4_req *r, const char *hash, const char *amz_date,
                     const char *token, struct sl_buf *out, struct sl_buf *sh, struct sl_err *err)
{
    if (!r || !out)
        return sl_err_set(err, SL_E_INVAL, "sigv4_bad_request", "sigv4: no request");
    if (!is_token(r->method))
        return sl_err_set(err, SL_E_INVAL, "sigv4_bad_request", "sigv4: bad method");
    if (!is_word(r->host, 1024))
        return sl_err_set(err, SL_E_INVAL, "sigv4_bad_request", "sigv4: bad host");
    const char *path = r->path && *r->path ? r->path : "/";
    if (path[0] != '/')
        return sl_err_set(err, SL_E_INVAL, "sigv4_bad_request", "sigv4: path must start with '/'");
    if (!is_word(hash, 128) || !is_word(amz_date, 32))
        return sl_err_set(err, SL_E_INVAL, "sigv4_bad_request", "sigv4: bad hash or date");
    if (r->n_extra > SL_SIGV4_MAX_EXTRA_HEADERS || (r->n_extra && !r->extra_headers))
        return sl_err_set(err, SL_E_INVAL, "sigv4_bad_header", "sigv4: bad extra header list");
    if (token && !*token)
        token = NULL;
    if (token && has_ctl(token))
        return sl_err_set(err, SL_E_INVAL, "sigv4_bad_request", "sigv4: bad session token");

    int rc;
    struct sl_buf cr, shl;
    sl_buf_init(&cr, SL_SIGV4_MAX_CANONICAL);
    sl_buf_init(&shl, SL_SIGV4_MAX_CANONICAL);
    sl_buf_puts(&cr, r->method);
    sl_buf_putc(&cr, '\n');
    if ((rc = encode(path, strlen(path), 1, 0, &cr)) != 0) {
        rc = sl_err_set(err, rc, "sigv4_too_big", "sigv4: path too large");
        goto done;
    }
    sl_buf_putc(&cr, '\n');
    if ((rc = canonical_query(r->query, &cr, err)) != 0)
        goto done;
    sl_buf_putc(&cr, '\n');
    if ((rc = canonical_headers(r, hash, amz_date, token, &cr, &shl, err)) != 0)
        goto done;
    sl_buf_putc(&cr, '\n');
    sl_buf_append(&cr, shl.data, shl.len);
    sl_buf_putc(&cr, '\n');
    sl_buf_puts(&cr, hash);
    if (cr.failed) {
        rc = sl_err_set(err, SL_E_TOOBIG, "sigv4_too_big", "sigv4: canonical request too large");
        goto done;
    }
    if (sh && sl_buf_append(sh, shl.data, shl.len)) {
        rc = sl_err_set(err, SL_E_TOOBIG, "sigv4_too_big", "sigv4: signed headers too large");
        goto done;
    }
    if (sl_buf_append(out, cr.data, cr.len)) {
        rc = sl_err_set(err, SL_E_TOOBIG, "sigv4_too_big",
                        "sigv4: canonical request (%zu bytes) over the output buffer cap", cr.len);
        goto done;
    }
    rc = 0;
done:
    sl_buf_release(&cr);
    sl_buf_release(&shl);
    return rc;
}

int sl_sigv4_canonical_request(const struct sl_sigv4_req *r, const char *payload_hash_hex,
                               const char *amz_date, const char *session_token, struct sl_buf *out,
                               char *signed_headers, size_t shlen)
{
    struct sl_buf sh;
    sl_buf_init(&sh, SL_SIGV4_MAX_CANONICAL);
    size_t start = out ? out->len : 0;
    int rc = canon_req(r, payload_hash_hex, amz_date, session_token, out, &sh, NULL);
    if (rc == 0 && signed_headers) {
        if (sh.len >= shlen) {
            buf_truncate(out, start);
            rc = SL_E_TOOBIG;
        } else {
            memcpy(signed_headers, sh.data, sh.len);
            signed_headers[sh.len] = 0;
        }
    }
    sl_buf_release(&sh);
    return rc;
}

int sl_sigv4_string_to_sign(const char *amz_date, const char *scope, const char *canonical_request,
                            struct sl_buf *out)
{
    char hex[65];
    if (!amz_date || !scope || !canonical_request || !out)
        return SL_E_INVAL;
    int rc = sha256_hex(canonical_request, strlen(canonical_request), hex);
    if (rc)
        return rc;
    /* Reserve the whole string first so the appends below cannot fail half-way. */
    if (sl_buf_reserve(out, sizeof(ALGO) + strlen(amz_date) + 1 + strlen(scope) + 1 + 64))
        return SL_E_TOOBIG;
    sl_buf_printf(out, ALGO "\n%s\n%s\n%s", amz_date, scope, hex);
    return 0;
}

/* ---- the signer --------------------------------------------------------------------------- */

/* Region and service: what AWS uses in scopes ("us-east-1", "s3", "execute-api"). */
static int is_scope_part(const char *s)
{
    if (!is_word(s, SL_SIGV4_MAX_SCOPE_PART))
        return 0;
    for (; *s; s++)
        if (!is_unreserved((uint8_t)*s))
            return 0;
    return 1;
}

int sl_sigv4_sign(const struct sl_sigv4_req *r, const struct sl_sigv4_creds *c, struct sl_buf *out,
                  struct sl_err *err)
{
    if (!r || !c || !out)
        return sl_err_set(err, SL_E_INVAL, "sigv4_bad_request", "sigv4: missing argument");
    /* The access key id lands in "Credential=AKID/scope, ...": no '/', ',' or spaces. */
    if (!is_word(c->access_key_id, 128) || strpbrk(c->access_key_id, "/,"))
        return sl_err_set(err, SL_E_INVAL, "sigv4_bad_credentials", "sigv4: bad access key id");
    if (!c->secret_access_key || !*c->secret_access_key)
        return sl_err_set(err, SL_E_INVAL, "sigv4_bad_credentials", "sigv4: no secret key");
    if (!is_scope_part(r->region) || !is_scope_part(r->service))
        return sl_err_set(err, SL_E_INVAL, "sigv4_bad_request", "sigv4: bad region or service");
    if (!r->payload && r->payload_len && !r->unsigned_payload)
        return sl_err_set(err, SL_E_INVAL, "sigv4_bad_request", "sigv4: payload is NULL");

    struct tm tm;
    if (!gmtime_r(&r->now, &tm) || tm.tm_year + 1900 < 0 || tm.tm_year + 1900 > 9999)
        return sl_err_set(err, SL_E_INVAL, "sigv4_bad_request", "sigv4: time out of range");
    char amz_date[80], date8[16], hash[65], scope[8 + 2 * SL_SIGV4_MAX_SCOPE_PART + 32];
    snprintf(amz_date, sizeof(amz_date), "%04d%02d%02dT%02d%02d%02dZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
    memcpy(date8, amz_date, 8);
    date8[8] = 0;
    snprintf(scope, sizeof(scope), "%s/%s/%s/aws4_request", date8, r->region, r->service);

    if (r->unsigned_payload)
        snprintf(hash, sizeof(hash), "%s", SL_SIGV4_UNSIGNED_PAYLOAD);
    else if (sha256_hex(r->payload ? (const void *)r->payload : "", r->payload_len, hash))
        return sl_err_set(err, SL_E_UNAVAIL, "crypto_error", "sigv4: SHA-256 failed");

    const char *token = c->session_token && *c->session_token ? c->session_token : NULL;
    int rc;
    uint8_t key[32], sig[32];
    char sighex[65];
    struct sl_buf cr, sh, sts, o;
    sl_buf_init(&cr, SL_SIGV4_MAX_CANONICAL);
    sl_buf_init(&sh, SL_SIGV4_MAX_CANONICAL);
    sl_buf_init(&sts, SL_SIGV4_MAX_CANONICAL);
    sl_buf_init(&o, SL_SIGV4_MAX_CANONICAL);
    if ((rc = canon_req(r, hash, amz_date, token, &cr, &sh, err)) != 0)
        goto done;
    sl_buf_putc(&sh, 0); /* sh.data is used as a C string below */
    if ((rc = sl_sigv4_string_to_sign(amz_date, scope, (const char *)cr.data, &sts)) != 0) {
        rc = sl_err_set(err, rc, "crypto_error", "sigv4: string to sign failed");
        goto done;
    }
    if (derive_key(c->secret_access_key, date8, r->region, r->service, key) ||
        hmac256(key, sizeof(key), sts.data, sts.len, sig)) {
        rc = sl_err_set(err, SL_E_UNAVAIL, "crypto_error", "sigv4: HMAC-SHA256 failed");
        goto done;
    }
    for (int i = 0; i < 32; i++) {
        sighex[2 * i] = "0123456789abcdef"[sig[i] >> 4];
        sighex[2 * i + 1] = "0123456789abcdef"[sig[i] & 15];
    }
    sighex[64] = 0;

    sl_buf_printf(&o, "Authorization: " ALGO " Credential=%s/%s, SignedHeaders=%s, Signature=%s",
                  c->access_key_id, scope, (const char *)sh.data, sighex);
    if (!r->omit_content_sha256)
        sl_buf_printf(&o, "\nx-amz-content-sha256: %s", hash);
    sl_buf_printf(&o, "\nx-amz-date: %s", amz_date);
    if (token)
        sl_buf_printf(&o, "\nx-amz-security-token: %s", token);
    if (o.failed) {
        rc = sl_err_set(err, SL_E_TOOBIG, "sigv4_too_big", "sigv4: headers too large");
        goto done;
    }
    if (sl_buf_append(out, o.data, o.len)) {
        rc = sl_err_set(err, SL_E_TOOBIG, "sigv4_too_big",
                        "sigv4: signed headers (%zu bytes) over the output buffer cap", o.len);
        goto done;
    }
    rc = 0;
done:
    OPENSSL_cleanse(key, sizeof(key));
    sl_buf_release(&cr);
    sl_buf_release(&sh);
    sl_buf_release(&sts);
    sl_buf_release(&o);
    return rc;
}
