/* The object-storage sink (kind object_storage; aliases s3-sink and object-storage): it writes the
 * records of each followed strand as files, one file per batch and time partition, to S3 (or an
 * S3-compatible store) or to a local directory. docs/connectors.md describes the contract.
 *
 * Keys are deterministic from the strand range they hold:
 *   {prefix}/{strand}/year=YYYY/month=MM/day=DD[/hour=HH]/{first_seq}-{last_seq}.{ext}
 * (seqs zero-padded to 20 digits so that keys sort), so a batch stored again after a crash or a
 * retry overwrites the same objects: effectively-once files on top of at-least-once delivery.
 *
 * The connector framework (src/engine/sink_worker.c) owns cursors, batching and the flush
 * interval, retries, the breaker and dead letters; this module splits a batch at partition
 * boundaries, encodes each file (src/formats/filefmt.h) and stores it (sink.c is its
 * sl_connector). Threads: one sink per worker thread; the
 * config and key functions are pure and reentrant. */
#ifndef SL_CONNECTORS_OBJSTORE_OBJSTORE_H
#define SL_CONNECTORS_OBJSTORE_OBJSTORE_H

#include "core/err.h"
#include "strand/strand.h"

#include <sluice/connector.h>

#include <curl/curl.h>
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

/* ---- config ---- */

/* Rewrites every accepted spelling of an object_storage config into the canonical keys the kind
 * schema validates (kinds.c): Rivven's nested s3: {...} and local: {root}, StreamHouse's dotted
 * keys (s3.bucket, batch.size, batch.interval_ms, parquet.compression, ...), flush_interval_secs,
 * numeric and boolean values sent as strings, partitioning hourly/daily. Returns a new object, or
 * NULL with err naming the field as the client spelled it. */
json_t *sl_os_normalize(const json_t *in, struct sl_err *err);
/* Checks across fields of a validated config (bucket for s3, root for local, the
 * format/compression combination, formats this build cannot write). The access key pair is
 * checked by kinds.c, as for the s3 kind. */
int sl_os_check(const json_t *cfg, struct sl_err *err);

/* ---- keys and partitions ---- */

enum sl_os_part { SL_OS_PART_NONE, SL_OS_PART_DAY, SL_OS_PART_HOUR };

#define SL_OS_KEY_MAX 1400
#define SL_OS_SEQ_DIGITS 20

/* "year=2026/month=02/day=10" (+ "/hour=14") of ts_ms in UTC; "" for NONE. */
void sl_os_partition(enum sl_os_part mode, uint64_t ts_ms, char *out, size_t n);
/* {prefix}/{strand}/{partition}/{first}-{last}.{ext}; empty prefix and partition are left out,
 * slashes around the prefix trimmed. 0, or SL_E_TOOBIG if it does not fit in n. */
int sl_os_key(char *out, size_t n, const char *prefix, const char *strand, const char *partition,
              uint64_t first, uint64_t last, const char *ext);

struct sl_os_span {
    size_t start, count; /* indexes into the batch */
};
/* Splits records with the timestamps ts[0..n) (non-decreasing, as in a strand) into runs of the
 * same partition; out has room for n spans. Returns the number of spans (0 if n is 0). */
size_t sl_os_split(enum sl_os_part mode, const uint64_t *ts, size_t n, struct sl_os_span *out);

/* ---- the sink ---- */

struct sl_os_sink;

/* From a validated config (defaults filled in). */
int sl_os_sink_new(const json_t *cfg, struct sl_os_sink **out, struct sl_err *err);
void sl_os_sink_free(struct sl_os_sink *s);
uint64_t sl_os_batch_size(const struct sl_os_sink *s);  /* records per file */
uint64_t sl_os_interval_ms(const struct sl_os_sink *s); /* longest wait for a partial batch */

/* How a store attempt talks to the network: a curl handle owned by the worker and a cancel
 * callback (nonzero aborts a transfer, e.g. the connector was disabled). */
struct sl_os_io {
    CURL *curl;
    int (*cancel)(void *arg);
    void *arg;
    long timeout_ms; /* per request */
};

struct sl_os_result {
    long retry_after_s; /* -1 if absent */
    char excerpt[256];  /* start of the failing response body */
    char error[256];
    uint64_t files, bytes; /* stored by this attempt */
};

/* The health check before the sink runs: the bucket can be listed (S3), the root directory can
 * be created and written (local). 0, or a negative code with err saying why. */
int sl_os_sink_check(struct sl_os_sink *s, const struct sl_os_io *io, struct sl_err *err);

/* One batch of records (borrowed until sl_os_batch_free), split into one file per partition. */
struct sl_os_batch;
int sl_os_batch_prepare(struct sl_os_sink *s, const struct sl_batch *b, struct sl_os_batch **out,
                        struct sl_err *err);
/* Encodes and stores, in order, every file of the batch not stored yet, stopping at the first
 * failure; memory is the batch's record references plus one encoded file at a time. Returns 200
 * when all are stored; 0 for a network or local I/O error (transient); 422 when a file cannot be
 * encoded (permanent); else the HTTP status of the failing request. */
long sl_os_batch_store(struct sl_os_batch *b, const struct sl_os_io *io, struct sl_os_result *res);
/* Records in the files stored so far (they are a prefix of the batch). */
uint64_t sl_os_batch_stored(const struct sl_os_batch *b);
size_t sl_os_batch_files(const struct sl_os_batch *b);
const char *sl_os_batch_key(const struct sl_os_batch *b, size_t i);
void sl_os_batch_free(struct sl_os_batch *b);

#endif
