/* Private to src/connectors/objstore: where files go, and the two providers. */
#ifndef SL_CONNECTORS_OBJSTORE_INT_H
#define SL_CONNECTORS_OBJSTORE_INT_H

#include "connectors/objstore/objstore.h"

/* Objects larger than this go up as an S3 multipart upload, in parts of SL_OS_PART_BYTES (the
 * last one smaller; S3 wants every part but the last >= 5 MiB). */
#define SL_OS_MULTIPART_THRESHOLD ((size_t)16 << 20)
#define SL_OS_PART_BYTES ((size_t)8 << 20)

enum sl_os_provider { SL_OS_S3, SL_OS_LOCAL };

/* Borrowed strings from the sink's config copy. */
struct sl_os_target {
    enum sl_os_provider provider;
    const char *bucket, *region, *endpoint; /* endpoint NULL: AWS */
    int path_style;                         /* force_path_style, or any custom endpoint */
    const char *access_key_id, *secret_access_key, *session_token; /* NULL: unsigned */
    const char *root;                                              /* local */
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

#endif
