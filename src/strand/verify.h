/* `sluice verify`: an independent, read-only walk over a strand's segment files that recomputes
 * every CRC, hash and link. It does not use the index files or the strand code paths. */
#ifndef SL_STRAND_VERIFY_H
#define SL_STRAND_VERIFY_H

#include "strand/merkle.h"
#include "strand/record.h"

#include <stdint.h>

struct sl_verify_result {
    int ok;
    uint64_t count;
    uint8_t head[SL_HASH_LEN];
    uint64_t bad_seq; /* first bad seq when !ok */
    char reason[256]; /* "crc: ...", "hash: ...", "link: ..." or "io: ..." */
    /* the Merkle tree recomputed from the records (of the verified prefix) */
    uint8_t root[SL_HASH_LEN];
    uint64_t want_size;           /* in (sl_verify_strand_at): also the root at this size */
    int have_root_at;             /* the strand has want_size records */
    uint8_t root_at[SL_HASH_LEN]; /* root of the tree of want_size records */
    char tree_problem[256];       /* a stored tile that disagrees with the records, or "" */
    struct sl_mt_acc acc;         /* private */
    int tile_fds[16];             /* private: tree/nodes-<4k> */
};

/* Verifies the strand stored in dir (named name). Returns 0 if it could be read at all. */
int sl_verify_strand(const char *dir, const char *name, struct sl_verify_result *res);
/* The same, also computing the root of the tree of the first want_size records. */
int sl_verify_strand_at(const char *dir, const char *name, uint64_t want_size,
                        struct sl_verify_result *res);

#endif
