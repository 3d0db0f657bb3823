/* The data directory: every strand under DIR/strands/<name>/, opened at start. */
#ifndef SL_STRAND_STORE_H
#define SL_STRAND_STORE_H

#include "core/err.h"
#include "strand/strand.h"

#include <stddef.h>

struct sl_store;

struct sl_store_opts {
    const char *dir;
    uint64_t segment_bytes;
    int durable;
    int no_tree;             /* strands without a Merkle tree */
    uint64_t spare_max_rate; /* sl_strand_opts.spare_max_rate */
    uint64_t cache_window;   /* sl_strand_opts.cache_window */
};

struct sl_store_recovery {
    uint64_t strands, records, truncations, cut_bytes, idx_rebuilt;
    uint64_t elapsed_ms;
};

/* Opens (creating) the data directory, takes its lock, opens every strand, creates `default`. */
int sl_store_open(struct sl_store **out, const struct sl_store_opts *o,
                  struct sl_store_recovery *rec, struct sl_err *err);
void sl_store_close(struct sl_store *st);

/* Returns the strand named name[0..len); creates it if create. SL_E_INVAL for a bad name,
 * SL_E_NOTFOUND if absent and !create. */
int sl_store_strand(struct sl_store *st, const char *name, size_t len, int create,
                    struct sl_strand **out, struct sl_err *err);
/* Looks a record hash up in every strand. */
int sl_store_find_hash(struct sl_store *st, const uint8_t hash[SL_HASH_LEN], struct sl_strand **out,
                       uint64_t *seq);
/* Fills out with up to max strands, sorted by name; returns how many there are in all. */
size_t sl_store_list(struct sl_store *st, struct sl_strand **out, size_t max);

#endif
