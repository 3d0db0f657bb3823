/* A strand: a named, append-only, hash-chained sequence of records in segment files.
 *
 * Threads: one committer thread per strand owns all writes (group commit: it takes every queued
 * append, assigns seqs and timestamps, hashes the chain, writes one buffer and fdatasyncs once,
 * then publishes and calls each append's done callback). Any thread may submit and read. An event
 * loop may run that group commit itself for what it queued (sl_strand_enqueue, then
 * sl_strand_commit_now). */
#ifndef SL_STRAND_STRAND_H
#define SL_STRAND_STRAND_H

#include "core/err.h"
#include "strand/record.h"

#include <stddef.h>
#include <stdint.h>

struct sl_strand;

struct sl_strand_opts {
    uint64_t segment_bytes;  /* segment file size; a record frame must fit in one segment */
    int durable;             /* 1: fdatasync before acknowledging (durability: fsync) */
    int no_tree;             /* 1: no Merkle tree (merkle_tree: 0) */
    uint64_t spare_max_rate; /* bytes/s: a segment whose first half was written faster gets no
                                zero-filled spare (its successor is only preallocated); 0: always */
    uint64_t cache_window;   /* durable only: log bytes older than the newest cache_window are
                                dropped from the page cache after their fdatasync; 0: never */
};

/* One record to append; the bytes are borrowed until the append's done callback runs. */
struct sl_append_rec {
    const uint8_t *payload;
    uint32_t payload_len;
    uint16_t source_len;
    const char *source;
    uint32_t flags;
};

struct sl_append {
    /* in */
    struct sl_append_rec *recs;
    size_t n;
    uint8_t (*hashes)[SL_HASH_LEN];    /* n slots, filled by the committer */
    void (*done)(struct sl_append *a); /* runs on the committing thread: keep it short */
    void *arg;
    /* out, valid in done() */
    int status; /* 0, or SL_E_IO / SL_E_UNAVAIL */
    uint64_t first_seq;
    uint64_t timestamp_ms;
    uint8_t prev_hash[SL_HASH_LEN]; /* of the first record */
    /* private */
    struct sl_append *next;
};

struct sl_strand_info {
    uint64_t count;
    uint8_t head_hash[SL_HASH_LEN]; /* zeros when empty */
    uint64_t first_ts, last_ts;
    uint64_t bytes; /* frame bytes in all segments */
    uint64_t segments;
};

#define SL_SYNC_BUCKETS 12
/* upper bounds of the fsync-duration histogram buckets, in microseconds (the last is +Inf) */
extern const uint32_t sl_sync_bucket_us[SL_SYNC_BUCKETS - 1];

struct sl_strand_stats {
    uint64_t records, bytes, fsyncs, commits;
    uint64_t spares;                     /* next segments zero-filled in the background */
    uint64_t spares_skipped;             /* not zero-filled: the segment filled too fast */
    uint64_t cache_dropped;              /* log bytes dropped from the page cache (cache_window) */
    uint64_t sync_ns;                    /* total time in fdatasync */
    uint64_t sync_hist[SL_SYNC_BUCKETS]; /* fdatasync durations, not cumulative */
};

struct sl_strand_recovery {
    uint64_t truncations; /* torn/corrupt tails cut */
    uint64_t cut_bytes;
    uint64_t idx_rebuilt;
    uint64_t tree_replayed; /* leaves hashed again to rebuild the tree's unsaved tail */
};

/* Opens (creating if new) the strand stored in dir. */
int sl_strand_open(const char *dir, const char *name, const struct sl_strand_opts *o,
                   struct sl_strand **out, struct sl_strand_recovery *rec, struct sl_err *err);
/* Drains the queue, stops the committer, frees everything. */
void sl_strand_close(struct sl_strand *s);

const char *sl_strand_name(const struct sl_strand *s);

/* Queues an append. Returns 0 (done() will be called exactly once), or SL_E_TOOBIG (a record
 * frame larger than a segment) / SL_E_UNAVAIL (strand failed or closing) and done() is not called.
 */
int sl_strand_submit(struct sl_strand *s, struct sl_append *a, struct sl_err *err);
/* Like sl_strand_submit, but the strand's threads are not woken: the caller commits it with
 * sl_strand_commit_now (an event loop queues the appends of one pass, then commits them with one
 * write and one fdatasync on its own thread: no hand-off). */
int sl_strand_enqueue(struct sl_strand *s, struct sl_append *a, struct sl_err *err);
/* Commits every append queued before the call, on the calling thread, and returns when each has
 * had its done() (which runs on this thread, or on the strand's threads if they took it first).
 * A done() must not call it. */
void sl_strand_commit_now(struct sl_strand *s);
/* Convenience for tools and tests: submit and wait. */
int sl_strand_append_wait(struct sl_strand *s, struct sl_append *a, struct sl_err *err);

void sl_strand_info(struct sl_strand *s, struct sl_strand_info *info);
void sl_strand_stats(struct sl_strand *s, struct sl_strand_stats *st);
/* The record's bytes point into the segment mapping: valid until sl_strand_close. */
int sl_strand_read(struct sl_strand *s, uint64_t seq, struct sl_record *r);
int sl_strand_find_hash(struct sl_strand *s, const uint8_t hash[SL_HASH_LEN], uint64_t *seq);
/* seq of the last record with timestamp_ms <= as_of, or SL_E_NOTFOUND. */
int sl_strand_find_time(struct sl_strand *s, uint64_t as_of, uint64_t *seq);
/* Blocks until count > after or timeout; returns the published count. For followers. */
uint64_t sl_strand_wait(struct sl_strand *s, uint64_t after, int timeout_ms);
uint64_t sl_strand_count(struct sl_strand *s);
/* The bell: every strand's committer rings it after publishing a group. A follower of several
 * strands reads sl_strand_bell(), looks at its strands, then waits for the next ring. */
uint64_t sl_strand_bell(void);
/* Blocks until the bell has rung since `seen` was read, or timeout; returns the bell's value. */
uint64_t sl_strand_bell_wait(uint64_t seen, int timeout_ms);

/* The strand's Merkle tree (strand/tree.h), NULL when it has none. */
struct sl_tree *sl_strand_tree(struct sl_strand *s);
/* Makes everything written so far durable (for durability: none, before a checkpoint). */
int sl_strand_sync(struct sl_strand *s);

#endif
