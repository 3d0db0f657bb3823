/* The Boboyka service behind /v1/boboyka: appends typed events to the strand "boboyka", mirrors
 * them to Supabase's REST API (PostgREST) when configured, keeps the event index and the
 * durable retry queue of failed mirror writes (DATA/boboyka.db, SQLite WAL).
 *
 * One service thread owns the index writes and every mirror request (libcurl multi, many
 * requests in flight, events of one table and shape sent together as one bulk insert), so
 * ingest requests never wait for each other's mirror calls. With dual-write on, an ingest is
 * answered after its record is durable in the strand, its mirror attempt finished (or timed
 * out) and its event reference is in the index; without it, as soon as the record is durable
 * (the reference follows at once, and the read side waits for it). Failed mirror writes are
 * retried in the background with exponential backoff and full jitter until they succeed or
 * max_retries is reached.
 *
 * The strand is the source of truth: on open, strand records missing from the index (a crash
 * between the strand write and the index write) are indexed again, and — when the mirror is
 * configured — queued for mirroring. */
#ifndef SL_BOBOYKA_SERVICE_H
#define SL_BOBOYKA_SERVICE_H

#include "boboyka/schema.h"
#include "core/buf.h"
#include "core/err.h"
#include "engine/registry.h"
#include "strand/record.h"
#include "strand/store.h"

#include <stdint.h>

struct sl_bbk;

struct sl_bbk_opts {
    const char *data_dir;
    struct sl_registry *registry; /* where the mirror connector lives */
    const char *supabase_url;     /* both set: dual-write on */
    const char *supabase_key;
    uint64_t timeout_ms;      /* one mirror request */
    uint64_t max_retries;     /* background retries after the first attempt */
    uint64_t retry_base_ms;   /* first backoff ceiling; doubles per attempt */
    uint64_t retry_max_ms;    /* backoff ceiling */
    const char *dedup_column; /* "" or a unique column that gets the record hash */
};

struct sl_bbk_result {
    int status; /* 0, or SL_E_* (the strand write failed: nothing was written) */
    int type;
    uint64_t seq, ingested_at_ms;
    uint8_t hash[SL_HASH_LEN];
    int dw_enabled;
    int dw_ok;
    const char *dw_error; /* NULL when ok or disabled */
};

typedef void (*sl_bbk_done_fn)(const struct sl_bbk_result *r, void *arg);

int sl_bbk_open(struct sl_bbk **out, struct sl_store *store, const struct sl_bbk_opts *o,
                struct sl_err *err);
/* Finishes every ingest in flight (answering it), then stops the thread. Call before the store
 * is closed. */
void sl_bbk_close(struct sl_bbk *b);

/* Takes ownership of ev. 0: done runs exactly once, later, on another thread. Negative: done
 * never runs (ev released). */
int sl_bbk_ingest(struct sl_bbk *b, struct sl_bbk_event *ev, sl_bbk_done_fn done, void *arg,
                  struct sl_err *err);

int sl_bbk_dual_write(const struct sl_bbk *b);
/* GET /v1/boboyka/status body. */
void sl_bbk_status_json(struct sl_bbk *b, struct sl_buf *out);
/* GET /v1/boboyka/events body: newest first, type -1 for all, seqs below before. */
int sl_bbk_events_json(struct sl_bbk *b, int type, uint64_t before, uint32_t limit,
                       struct sl_buf *out, struct sl_err *err);
/* Prometheus lines (sluice_boboyka_*). */
void sl_bbk_metrics(struct sl_bbk *b, struct sl_buf *out);

#endif
