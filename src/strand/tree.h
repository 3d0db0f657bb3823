/* A strand's Merkle tree, persisted beside its segments in the C2SP tlog-tiles layout.
 *
 * Tiles have height 8. A level-0 tile holds 256 leaf hashes: those are the record hashes in the
 * segments, so they are not stored again. A level-k tile (k >= 1) holds 256 hashes of tree level
 * 8k; STRAND/tree/nodes-<8k> is the concatenation of all level-k tiles (node i of tree level 8k
 * at byte 32 * i), so tile N is one contiguous 8 KiB read. The levels halfway between (4, 12,
 * 20, ...) are stored the same way (nodes-<8k+4>), so any other node is recomputed from at most
 * 8 stored hashes (7 SHA-256): a proof costs O(log n) small reads.
 *
 * Threads: the strand's syncer adds leaves after their records are durable and published;
 * readers (any thread) see the tree up to sl_tree_size(). STRAND/tree/state names the size up to
 * which the tiles were synced (written when a segment is sealed and at close); at open the tree
 * is rebuilt from the records after it, i.e. the unsealed tail. */
#ifndef SL_STRAND_TREE_H
#define SL_STRAND_TREE_H

#include "core/buf.h"
#include "core/err.h"
#include "strand/merkle.h"

#include <stdint.h>

#define SL_TILE_HEIGHT 8
#define SL_TILE_WIDTH 256

struct sl_tree;

/* Reads the leaf hashes [lo, lo + n) of the strand (all published). */
typedef int (*sl_tree_leaves_fn)(void *ctx, uint64_t lo, uint64_t n, uint8_t out[][SL_HASH_LEN]);

/* Opens DIR/tree for a strand of count records, rebuilding what the state file does not cover.
 * *replayed: how many leaves were hashed again. */
int sl_tree_open(const char *dir, uint64_t count, sl_tree_leaves_fn leaves, void *ctx, int durable,
                 struct sl_tree **out, uint64_t *replayed, struct sl_err *err);
/* Frees (call sl_tree_save first to spare the next start a replay). NULL is a no-op. */
void sl_tree_close(struct sl_tree *t);

/* Syncer thread: adds one leaf; sl_tree_publish makes the added leaves visible to readers. */
void sl_tree_add(struct sl_tree *t, const uint8_t leaf[SL_HASH_LEN]);
/* Hashes the nodes that the added leaves complete, ahead of sl_tree_publish (the syncer does it
 * while the disk writes those leaves' records); readers see nothing of it until then. */
void sl_tree_absorb(struct sl_tree *t);
/* Leaves went in that the strand will not publish (its fdatasync failed): the tree refuses
 * proofs and is not saved until a restart rebuilds it from the records. */
void sl_tree_invalidate(struct sl_tree *t);
void sl_tree_publish(struct sl_tree *t);
/* Syncs the tiles and records the current size in the state file. Not concurrent with
 * sl_tree_add (the committer calls it while the syncer is drained, or at close). */
int sl_tree_save(struct sl_tree *t, struct sl_err *err);

/* Leaves visible to readers (every one of them durable). */
uint64_t sl_tree_size(struct sl_tree *t);
/* 0 if the tiles could not be written (then proofs are refused until restart). */
int sl_tree_ok(struct sl_tree *t);
/* A node source for trees of size <= sl_tree_size(). */
struct sl_mt_src sl_tree_src(struct sl_tree *t);
/* Appends tile (level, index) of width w (1..256) to out; SL_E_NOTFOUND if the tree does not
 * have that many hashes there yet. */
int sl_tree_tile(struct sl_tree *t, unsigned level, uint64_t index, unsigned w, struct sl_buf *out);

/* The last signed checkpoint, kept for the API: a copy into out (text, size, when). Returns 0,
 * or SL_E_NOTFOUND if there is none yet. */
int sl_tree_note_get(struct sl_tree *t, struct sl_buf *out, uint64_t *size, uint64_t *at_ms);
void sl_tree_note_put(struct sl_tree *t, const char *text, size_t len, uint64_t size,
                      uint64_t at_ms);

#endif
