/* AWS Signature Version 4 (header-based, single-chunk payload) for S3 requests.
 *
 * Pure functions: no network, no global state, no locale; safe to call from any thread at once.
 * Follows "Signature Calculations for the Authorization Header: Transferring Payload in a Single
 * Chunk" (AmazonS3 API reference, sig-v4-header-based-auth) with S3's path rules:
 *   - the path is URI-encoded once, segment by segment ('/' kept, A-Za-z0-9-._~ kept, every
 *     other byte %XX upper-case); it is never normalised (no dot-segment removal, "//" stays);
 *   - the query is split on '&' and the first '=', each key and value is percent-decoded where
 *     it holds a valid %XX escape and then encoded like the path but with '/' encoded too
 *     ('+' is a literal plus, not a space); pairs are sorted by encoded key then encoded value
 *     and "key=" is written for a key with no value;
 *   - header names are lower-cased, values trimmed with inner runs of spaces/tabs collapsed to
 *     one space, headers sorted by name; repeated names are joined with ',' in input order;
 *     host, x-amz-date, x-amz-content-sha256 and (if any) x-amz-security-token are always signed.
 *
 * The caller must send the request line with the same encoded path (sl_sigv4_uri_encode with
 * keep_slash = 1), the query percent-encoded as it passed it (raw bytes in `query` sign fine but
 * must still be encoded on the wire), and every extra header it asked to sign, byte for byte. */
#ifndef SL_CONNECTORS_S3_SIGV4_H
#define SL_CONNECTORS_S3_SIGV4_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "core/buf.h"
#include "core/err.h"

#define SL_SIGV4_UNSIGNED_PAYLOAD "UNSIGNED-PAYLOAD"
/* Limits that keep every internal buffer bounded (inputs past them are SL_E_INVAL/TOOBIG). */
#define SL_SIGV4_MAX_EXTRA_HEADERS 64
#define SL_SIGV4_MAX_CANONICAL ((size_t)1 << 20) /* canonical request, bytes */
#define SL_SIGV4_MAX_SCOPE_PART 64               /* region, service: bytes */

/* Borrowed strings; session_token may be NULL (or "") for long-term keys. */
struct sl_sigv4_creds {
    const char *access_key_id, *secret_access_key, *session_token;
};

struct sl_sigv4_req {
    const char *method; /* "PUT" */
    const char *host;   /* Host header value, with :port if not default: "127.0.0.1:4568" */
    const char *path;   /* raw (not yet encoded) path, "/bucket/prefix/a b.json"; NULL = "/" */
    const char *query;  /* query without '?', may be NULL or "" (see canonicalisation above) */
    const uint8_t *payload;
    size_t payload_len;   /* body, hashed with SHA-256 unless unsigned_payload */
    int unsigned_payload; /* 1: x-amz-content-sha256: UNSIGNED-PAYLOAD */
    const char *region;   /* "us-east-1" */
    const char *service;  /* "s3" */
    time_t now;           /* request time (UTC seconds) */
    /* Extra headers to sign (name/value pairs, e.g. Content-Type), may be NULL/0. Names must be
     * HTTP tokens; values must not hold CR, LF or other control bytes except tab. host,
     * authorization and the x-amz-* headers this signer adds may not appear here. */
    const char *const (*extra_headers)[2];
    size_t n_extra;
    /* 1: neither sign nor emit x-amz-content-sha256 (the payload hash still ends the canonical
     * request). For non-S3 services; lets tests run AWS's generic SigV4 suite. S3 needs 0. */
    int omit_content_sha256;
};

/* Appends to `out` the headers the request must carry, one "Name: value" per line separated by
 * "\n" (no trailing newline):
 *   Authorization: AWS4-HMAC-SHA256 Credential=AKID/20130524/us-east-1/s3/aws4_request,
 *       SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature=<64 hex>
 *   x-amz-content-sha256: <hex sha256 of payload | UNSIGNED-PAYLOAD>  (unless omitted)
 *   x-amz-date: 20130524T000000Z
 *   x-amz-security-token: ...   (only with a session token; it is signed)
 * Returns 0, or a negative SL_E_* code with err filled and `out` unchanged (when out's cap is
 * exceeded, SL_E_TOOBIG, and out->failed is set by sl_buf). */
int sl_sigv4_sign(const struct sl_sigv4_req *r, const struct sl_sigv4_creds *c, struct sl_buf *out,
                  struct sl_err *err);

/* Building blocks, exposed for tests. Each returns 0 or a negative SL_E_* code; on error the
 * output buffer is left as it was. */

/* Appends the canonical request; writes the signed header list ("host;x-amz-date") NUL-terminated
 * to signed_headers (may be NULL; SL_E_TOOBIG if shlen is too small). session_token may be NULL. */
int sl_sigv4_canonical_request(const struct sl_sigv4_req *r, const char *payload_hash_hex,
                               const char *amz_date, const char *session_token, struct sl_buf *out,
                               char *signed_headers, size_t shlen);
/* Appends "AWS4-HMAC-SHA256\n<amz_date>\n<scope>\n<hex sha256 of canonical_request>". */
int sl_sigv4_string_to_sign(const char *amz_date, const char *scope, const char *canonical_request,
                            struct sl_buf *out);
/* kSigning = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date8), region), service), "aws4_request").
 * On an internal crypto failure (allocation) `out` is zero-filled. */
void sl_sigv4_signing_key(const char *secret, const char *date8, const char *region,
                          const char *service, uint8_t out[32]);
/* Appends s[0..n) URI-encoded per SigV4: unreserved bytes kept, '/' kept iff keep_slash,
 * everything else %XX (upper-case). No decoding. */
int sl_sigv4_uri_encode(const char *s, size_t n, int keep_slash, struct sl_buf *out);

#endif
