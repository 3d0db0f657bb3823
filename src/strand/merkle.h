/* Merkle tree math in the RFC 6962 / RFC 9162 shape: leaves are record hashes (already
 * SHA-256(0x00 || canonical)), interior nodes SHA-256(0x01 || left || right).
 *
 * Nodes are named (level, index): node (l, i) is the complete subtree over leaves
 * [i * 2^l, (i + 1) * 2^l). Proof generation reads complete nodes through a source callback;
 * verification needs nothing but the proof. Pure functions: any thread. */
#ifndef SL_STRAND_MERKLE_H
#define SL_STRAND_MERKLE_H

#include "strand/record.h"

#include <stddef.h>
#include <stdint.h>

#define SL_MT_MAX_PROOF 128 /* an inclusion proof has <= 64 hashes, a consistency one <= 128 */

/* Gives the hash of complete node (level, index); returns 0 or a negative SL_E_* code. Only
 * called for nodes that lie entirely inside the tree being proved. */
struct sl_mt_src {
    int (*node)(void *ctx, unsigned level, uint64_t index, uint8_t out[SL_HASH_LEN]);
    void *ctx;
    /* Nonzero, unique to this source for the process's life, when the hash of a range it has
     * answered never changes (an append-only tree): large ranges' hashes are then cached. */
    uint64_t id;
};

/* MTH(D[lo:hi]) for a range the RFC's recursion produces (lo a multiple of a power of two that
 * is >= hi - lo); hi > lo. */
int sl_mt_range_hash(const struct sl_mt_src *src, uint64_t lo, uint64_t hi,
                     uint8_t out[SL_HASH_LEN]);
/* The root of the tree of size n (SHA-256 of the empty string for n = 0). */
int sl_mt_root(const struct sl_mt_src *src, uint64_t n, uint8_t out[SL_HASH_LEN]);
/* PATH(index, D[0:n]), leaf first; *len hashes. index < n. */
int sl_mt_inclusion(const struct sl_mt_src *src, uint64_t index, uint64_t n,
                    uint8_t out[][SL_HASH_LEN], size_t *len);
/* PROOF(m, D[0:n]), 0 < m <= n (empty when m == n). */
int sl_mt_consistency(const struct sl_mt_src *src, uint64_t m, uint64_t n,
                      uint8_t out[][SL_HASH_LEN], size_t *len);

/* RFC 9162 2.1.3.2: 0 if proof shows leaf at index in the tree of size n with that root. */
int sl_mt_verify_inclusion(const uint8_t leaf[SL_HASH_LEN], uint64_t index, uint64_t n,
                           const uint8_t proof[][SL_HASH_LEN], size_t len,
                           const uint8_t root[SL_HASH_LEN]);
/* RFC 9162 2.1.4.2: 0 if the tree of size n (root_n) extends the tree of size m (root_m). */
int sl_mt_verify_consistency(uint64_t m, uint64_t n, const uint8_t root_m[SL_HASH_LEN],
                             const uint8_t root_n[SL_HASH_LEN], const uint8_t proof[][SL_HASH_LEN],
                             size_t len);

/* A tree built leaf by leaf: the roots of its complete subtrees, one per set bit of size,
 * largest (leftmost) first. */
struct sl_mt_acc {
    uint64_t size;
    unsigned n;
    uint8_t stack[64][SL_HASH_LEN];
};

/* Called for every interior node completed by a push (level >= 1). */
typedef void (*sl_mt_node_fn)(void *ctx, unsigned level, uint64_t index,
                              const uint8_t hash[SL_HASH_LEN]);

void sl_mt_acc_push(struct sl_mt_acc *a, const uint8_t leaf[SL_HASH_LEN], sl_mt_node_fn fn,
                    void *ctx);
/* The same as pushing nodes[0..n) one by one (same callbacks, level by level instead of leaf by
 * leaf), hashing the independent nodes of each level together (sl_node_hash_pairs). nodes holds
 * the leaves on entry and is used as scratch. */
void sl_mt_acc_push_many(struct sl_mt_acc *a, uint8_t nodes[][SL_HASH_LEN], size_t n,
                         sl_mt_node_fn fn, void *ctx);
void sl_mt_acc_root(const struct sl_mt_acc *a, uint8_t out[SL_HASH_LEN]);
/* Starts the accumulator at size n from the complete nodes of src. */
int sl_mt_acc_init(struct sl_mt_acc *a, const struct sl_mt_src *src, uint64_t n);

#endif
