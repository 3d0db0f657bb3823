/* A segment: one preallocated file of a strand holding frames for a dense range of seqs, plus
 * its index (seq -> offset, hash -> seq). The active segment's index lives in memory; a sealed
 * segment's index is an mmapped .idx file written at seal time (rebuilt by a scan if missing).
 *
 * Threads: the strand's committer is the only writer; readers hold the strand's read lock while
 * looking at count/index fields (see strand.c). Mapped bytes stay valid until sl_seg_close. */
#ifndef SL_STRAND_SEGMENT_H
#define SL_STRAND_SEGMENT_H

#include "core/err.h"
#include "strand/record.h"

#include <stdint.h>

#define SL_SEG_HDR 64u
/* Writes into a segment end on a page boundary (the page size of the cache, 4 KiB) */
#define SL_SEG_PAGE 4096u
#define SL_SEG_MAGIC "SLSEG001"
#define SL_IDX_MAGIC "SLIDX001"
#define SL_IDX_HDR 64u

struct sl_segment {
    uint64_t base_seq;
    uint64_t count;  /* published records */
    uint64_t end;    /* file offset after the last published frame */
    uint64_t size;   /* file (and mapping) size */
    uint64_t zeroed; /* the file's blocks below this offset are written (data or zeros): a write
                      * there needs no unwritten-extent conversion at fdatasync; writer-private */
    uint64_t first_ts, last_ts;
    uint8_t prev_hash[SL_HASH_LEN]; /* hash of seq base_seq-1, zeros for seq 0 */
    int fd;
    int sealed;
    uint8_t *map;
    /* index */
    uint32_t *offsets;
    uint64_t *keys;       /* active only: first 8 hash bytes of each record (for rehashing) */
    uint64_t offsets_cap; /* active: capacity of the anonymous mappings, in entries */
    uint32_t *slots;      /* open addressing on the first 8 hash bytes; value = index + 1 */
    uint32_t nslots;      /* power of two */
    uint32_t *grow;       /* active: the table of 2 × nslots being filled (sl_seg_index_add) */
    uint64_t grow_done, grow_end; /* keys[0, grow_end) are moved into grow up to grow_done */
    void *idx_map;
    uint64_t idx_len;
    char path[4096];
};

/* Writes zeros ahead of the writer, so that fdatasync after a write below s->zeroed has no
 * preallocated (unwritten) extents to convert, which costs a journal commit each time: called
 * before writing [from, to), it zero-fills a window past `to` once the writer gets near. A
 * segment made from a zero-filled spare needs none. 0 or -1 (errno). */
int sl_seg_zero_ahead(struct sl_segment *s, uint64_t from, uint64_t to);

/* Drops the pages of [from, to) from this process's mapping and from the page cache: whole
 * pages inside the range, and those before it up to a 2 MiB boundary. Only for durable bytes:
 * a dirty page would be written back first. */
void sl_seg_drop_cache(struct sl_segment *s, uint64_t from, uint64_t to);

/* What recovery of one segment found. */
struct sl_seg_recovery {
    uint64_t cut_offset;       /* where the valid data ends */
    uint64_t cut_bytes;        /* nonzero bytes found (and zeroed) after cut_offset; 0 if clean */
    enum sl_frame_status stop; /* why the scan stopped */
    int idx_rebuilt;
};

/* Creates DIR/<base_seq>.seg of size bytes (preallocated) with its header, made durable
 * (file and directory) unless durable == 0. If use_spare and DIR/spare.tmp (from
 * sl_seg_prepare_spare) exists with that size, it is used instead of a new file: it is already
 * zero-filled and synced. The caller must make sure no sl_seg_prepare_spare runs meanwhile (it
 * renames over spare.tmp). */
int sl_seg_create(const char *dir, uint64_t base_seq, const uint8_t prev_hash[SL_HASH_LEN],
                  uint64_t size, int durable, int use_spare, struct sl_segment **out,
                  struct sl_err *err);

/* Writes DIR/spare.tmp: size bytes of zeros, synced. Overwriting zeroed blocks lets each
 * fdatasync flush only data (no extent conversion, no size change). Runs on a helper thread. */
int sl_seg_prepare_spare(const char *dir, uint64_t size, int durable, struct sl_err *err);

/* 1 if path holds a readable segment header (a crash during a roll can leave an empty file). */
int sl_seg_header_ok(const char *path);

/* Opens an existing segment. If is_last, scans the frames (cutting a torn or corrupt tail and
 * zeroing garbage after it) and builds the in-memory index; otherwise loads its .idx file
 * (or rebuilds it by a scan). */
int sl_seg_open(const char *path, int is_last, int durable, struct sl_segment **out,
                struct sl_seg_recovery *rec, struct sl_err *err);

/* Sealing, in two steps so readers are blocked only for the second: write the .idx file
 * (readers may run), then switch the segment to it (caller holds the strand's write lock). */
int sl_seg_write_idx(struct sl_segment *s, struct sl_err *err);
int sl_seg_switch_idx(struct sl_segment *s, struct sl_err *err);

void sl_seg_close(struct sl_segment *s);

/* Starts loading the index slot a record hash will go to (sl_seg_index_add a few records later
 * then finds it in the cache: the slots of a full segment are megabytes, one miss per record). */
void sl_seg_index_prefetch(const struct sl_segment *s, const uint8_t hash[SL_HASH_LEN]);

/* Active segment: records the frame of len bytes at off (already written) in the index. The
 * caller passes its hash and timestamp so that the write path never reads the mapping back
 * (touched pages of a mapping count as the process's memory). Caller holds the strand's write
 * lock. Bounded work per call: the table grows a few keys at a time. Returns -1 if the index
 * cannot grow (OOM). */
int sl_seg_index_add(struct sl_segment *s, uint32_t off, uint32_t len,
                     const uint8_t hash[SL_HASH_LEN], uint64_t ts);

/* Readers (under the strand's read lock). */
int sl_seg_read(const struct sl_segment *s, uint64_t seq, struct sl_record *r);
int sl_seg_find_hash(const struct sl_segment *s, const uint8_t hash[SL_HASH_LEN], uint64_t *seq);
/* Index of the last record with timestamp_ms <= as_of within the segment, or -1. */
int64_t sl_seg_find_time(const struct sl_segment *s, uint64_t as_of);
uint64_t sl_seg_ts_at(const struct sl_segment *s, uint64_t i);
const uint8_t *sl_seg_hash_at(const struct sl_segment *s, uint64_t i);

/* The base seqs of DIR's segment files, sorted (*out is malloc'ed). remove_tmp: also delete
 * leftover temporary files (the server at start; never `verify`, which only reads). */
int sl_seg_list(const char *dir, int remove_tmp, uint64_t **out, size_t *n, struct sl_err *err);

/* "DIR/00000000000000000042.seg" */
void sl_seg_path(char *out, size_t n, const char *dir, uint64_t base_seq);

#endif
