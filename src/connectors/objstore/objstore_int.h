/* Private to src/connectors/objstore: where files go, and the two providers. */
#ifndef SL_CONNECTORS_OBJSTORE_INT_H
#define SL_CONNECTORS_OBJSTORE_INT_H

#include "connectors/httpc.h"
#include "connectors/objstore/objstore.h"
#include "core/buf.h"

#include <time.h>

/* Objects larger than this go up as an S3 multipart upload, in parts of SL_OS_PART_BYTES (the
 * last one smaller; S3 wants every part but the last >= 5 MiB). */
#define SL_OS_MULTIPART_THRESHOLD ((size_t)16 << 20)
#define SL_OS_PART_BYTES ((size_t)8 << 20)

enum sl_os_provider { SL_OS_S3, SL_OS_LOCAL, SL_OS_AZURE, SL_OS_GCS };

/* Azure Blob credentials and address, from the config's azure block (azblob.c). */
struct sl_os_az {
    char account[256];
    char base[600]; /* blob endpoint without a trailing slash: https://acct.blob.core.windows.net */
    char path[600]; /* the endpoint's path part: "" or "/devstoreaccount1" (Azurite) */
    uint8_t key[128];
    size_t key_len;       /* 0: no Shared Key */
    char *sas;            /* SAS token without '?', or NULL */
    int managed_identity; /* asked for, with no other credential: the health check says why not */
};

/* Google Cloud Storage credentials, address and the current access token (gcs.c); one sink's,
 * used by its worker thread only. */
struct sl_os_gcs {
    char base[600];      /* https://storage.googleapis.com, or gcs.endpoint */
    char token_uri[600]; /* the key file's token_uri */
    char client_email[320];
    char key_id[128];
    struct evp_pkey_st *pkey; /* the key file's RSA private key */
    char token[4096];         /* "" until fetched */
    time_t refresh_at;        /* fetch a new token from then on */
    unsigned long tokens_fetched;
};

/* Borrowed strings from the sink's config copy. */
struct sl_os_target {
    enum sl_os_provider provider;
    const char *bucket, *region, *endpoint; /* endpoint NULL: AWS */
    int path_style;                         /* force_path_style, or any custom endpoint */
    const char *access_key_id, *secret_access_key, *session_token; /* NULL: unsigned */
    const char *root;                                              /* local */
    const struct sl_os_az *az;                                     /* azure */
    struct sl_os_gcs *gcs;                                         /* gcs */
};

/* Each returns 200 when the object is stored, 0 for a network or I/O error, else the HTTP status
 * of the failing request, with res->error (and excerpt, retry_after_s) filled. */
long sl_os_s3_put(const struct sl_os_target *t, const struct sl_os_io *io, const char *key,
                  const uint8_t *data, size_t len, const char *content_type,
                  struct sl_os_result *res);
/* {root}/{key} through a temp file, fsync, rename and an fsync of the directory (and of the
 * parents of any directory it created), so the file is durable before the cursor moves. */
long sl_os_local_put(const struct sl_os_target *t, const char *key, const uint8_t *data, size_t len,
                     struct sl_os_result *res);

/* Health checks: the bucket answers a one-key listing (S3), the root is a writable directory
 * (local). Same returns as the puts. */
long sl_os_s3_probe(const struct sl_os_target *t, const struct sl_os_io *io,
                    struct sl_os_result *res);
long sl_os_local_probe(const struct sl_os_target *t, struct sl_os_result *res);

/* Sends one request of a store or probe: the HTTP status, or 0 for a network error; res->error
 * names the request ("PUT key?query: HTTP 403"), and a failed answer's start and Retry-After go
 * to res->excerpt and retry_after_s. */
long sl_os_http(const struct sl_os_io *io, const char *method, const char *url,
                struct curl_slist *hdrs, const uint8_t *body, size_t len, const char *key,
                const char *query, struct sl_httpc_resp *r, struct sl_os_result *res);

/* Reads the azure block (account, access_key, connection_string, sas_token, endpoint,
 * use_managed_identity) into az. 0, or SL_E_INVAL with err naming the field. */
int sl_os_az_init(const json_t *azure, struct sl_os_az *az, struct sl_err *err);
void sl_os_az_release(struct sl_os_az *az);
/* Put Blob, or Put Block + Put Block List above SL_OS_MULTIPART_THRESHOLD; the container's
 * one-blob listing. Same returns as the S3 calls. */
long sl_os_az_put(const struct sl_os_target *t, const struct sl_os_io *io, const char *key,
                  const uint8_t *data, size_t len, const char *content_type,
                  struct sl_os_result *res);
long sl_os_az_probe(const struct sl_os_target *t, const struct sl_os_io *io,
                    struct sl_os_result *res);

/* Reads the gcs block (service_account_path, use_adc, endpoint) and the key file it names. 0, or
 * SL_E_INVAL with err naming the field. */
int sl_os_gcs_init(const json_t *gcs, struct sl_os_gcs *g, struct sl_err *err);
void sl_os_gcs_release(struct sl_os_gcs *g);
/* Media upload, or a resumable upload above SL_OS_MULTIPART_THRESHOLD; a one-object listing.
 * Same returns as the S3 calls (401 when the key is refused by the token endpoint). */
long sl_os_gcs_put(const struct sl_os_target *t, const struct sl_os_io *io, const char *key,
                   const uint8_t *data, size_t len, const char *content_type,
                   struct sl_os_result *res);
long sl_os_gcs_probe(const struct sl_os_target *t, const struct sl_os_io *io,
                     struct sl_os_result *res);
/* The signed JWT the token endpoint gets (exposed for the unit tests): header.claims.signature,
 * base64url, RS256, iat now and exp now + 3600. */
int sl_os_gcs_jwt(const struct sl_os_gcs *g, long long now, struct sl_buf *out);

/* What Shared Key signs (exposed for the unit tests). path is the request's encoded path, query
 * its query string without '?' (or NULL); headers the x-ms-* headers sent, lowercase, sorted. */
struct sl_os_az_req {
    const char *method, *account, *path, *query;
    size_t content_length;
    const char *content_type;
    const char *(*headers)[2];
    size_t nheaders;
};
int sl_os_az_string_to_sign(const struct sl_os_az_req *rq, struct sl_buf *out);
/* "SharedKey {account}:{base64 HMAC-SHA256 of the string to sign}". */
int sl_os_az_authorization(const struct sl_os_az_req *rq, const uint8_t *key, size_t key_len,
                           struct sl_buf *out);

#endif
