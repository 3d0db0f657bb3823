#include "strand/segment.h"

#include "core/crc32c.h"
#include "core/io.h"
#include "core/log.h"
#include "core/util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

void sl_seg_path(char *out, size_t n, const char *dir, uint64_t base_seq)
{
    snprintf(out, n, "%s/%020llu.seg", dir, (unsigned long long)base_seq);
}

static void idx_path(char *out, size_t n, const char *seg_path)
{
    size_t l = strlen(seg_path);
    snprintf(out, n, "%.*s.idx", (int)(l - 4), seg_path);
}

static uint64_t max_records(uint64_t size)
{
    return size > SL_SEG_HDR ? (size - SL_SEG_HDR) / SL_FRAME_OVERHEAD + 1 : 1;
}

static void *anon_reserve(uint64_t bytes)
{
    void *m = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                   -1, 0);
    return m == MAP_FAILED ? NULL : m;
}

/* The arrays of sealed segments' in-memory indexes are kept for the next active segments of the
 * same size: their pages are faulted in already, and a page fault costs ~14 us on the test VM
 * (a full 64 MiB segment's arrays are ~800 pages; at 1.3M records/s, a third of the server's
 * faults). Entries past a segment's count are never read, so old contents do no harm. */
#define ARRAYS_KEPT 2

static pthread_mutex_t g_arrays_mu = PTHREAD_MUTEX_INITIALIZER;
static struct arrays {
    uint32_t *offsets;
    uint64_t *keys;
    uint64_t cap;
} g_arrays[ARRAYS_KEPT];

static void arrays_put(uint32_t *offsets, uint64_t *keys, uint64_t cap)
{
    if (offsets && keys) {
        pthread_mutex_lock(&g_arrays_mu);
        for (int i = 0; i < ARRAYS_KEPT; i++)
            if (!g_arrays[i].offsets) {
                g_arrays[i] = (struct arrays){offsets, keys, cap};
                offsets = NULL;
                keys = NULL;
                break;
            }
        pthread_mutex_unlock(&g_arrays_mu);
    }
    if (offsets)
        munmap(offsets, cap * 4);
    if (keys)
        munmap(keys, cap * 8);
}

static int offsets_alloc(struct sl_segment *s)
{
    s->offsets_cap = max_records(s->size);
    pthread_mutex_lock(&g_arrays_mu);
    for (int i = 0; i < ARRAYS_KEPT && !s->offsets; i++)
        if (g_arrays[i].offsets && g_arrays[i].cap == s->offsets_cap) {
            s->offsets = g_arrays[i].offsets;
            s->keys = g_arrays[i].keys;
            g_arrays[i] = (struct arrays){0};
        }
    pthread_mutex_unlock(&g_arrays_mu);
    if (s->offsets)
        return 0;
    /* Reserve address space for the worst case; pages are touched only as records arrive. */
    s->offsets = anon_reserve(s->offsets_cap * 4);
    s->keys = anon_reserve(s->offsets_cap * 8);
    return s->offsets && s->keys ? 0 : -1;
}

static void release_pages(void *p, uint64_t len)
{
    /* Drops this process's mapping of the pages (the page cache keeps them): reading a whole
     * segment at start must not leave it counted in our resident memory. */
    if (p && len)
        madvise(p, len, MADV_DONTNEED);
}

static inline uint64_t hkey(const uint8_t *h)
{
    return sl_get_le64(h);
}

/* The first slot a key probes (linear probing from there). */
static inline uint32_t home_slot(uint64_t key, uint32_t nslots)
{
    return (uint32_t)key & (nslots - 1);
}

/* A zeroed slot table of n entries. One of 2 MiB or more is asked to live on huge pages: its
 * inserts land at random over megabytes, and with 4 KiB pages nearly each one missed the TLB as
 * well as the cache (measured: ~190 ns per insert at 1M slots, ~60 with huge pages). */
#define HUGE_BYTES (2u << 20)

static uint32_t *slots_alloc(uint32_t n)
{
    size_t bytes = (size_t)n * 4;
    if (bytes < HUGE_BYTES)
        return calloc(n, 4);
    uint8_t *m = anon_reserve(bytes + HUGE_BYTES); /* then trimmed to a 2 MiB boundary */
    if (!m)
        return NULL;
    uint8_t *p = (uint8_t *)(((uintptr_t)m + HUGE_BYTES - 1) & ~(uintptr_t)(HUGE_BYTES - 1));
    if (p > m)
        munmap(m, (size_t)(p - m));
    munmap(p + bytes, (size_t)(m + HUGE_BYTES - p));
    madvise(p, bytes, MADV_HUGEPAGE); /* a hint: without it the table works the same */
    return (uint32_t *)p;
}

static void slots_free(uint32_t *p, uint32_t n)
{
    if (p && (size_t)n * 4 >= HUGE_BYTES)
        munmap(p, (size_t)n * 4);
    else
        free(p);
}

static void slots_insert(uint32_t *slots, uint32_t nslots, uint64_t key, uint32_t val)
{
    uint32_t m = nslots - 1, i = home_slot(key, nslots);
    while (slots[i])
        i = (i + 1) & m;
    slots[i] = val;
}

void sl_seg_index_prefetch(const struct sl_segment *s, const uint8_t hash[SL_HASH_LEN])
{
    if (s->nslots)
        __builtin_prefetch(&s->slots[home_slot(hkey(hash), s->nslots)], 1);
    if (s->grow)
        __builtin_prefetch(&s->grow[home_slot(hkey(hash), s->nslots * 2)], 1);
}

const uint8_t *sl_seg_hash_at(const struct sl_segment *s, uint64_t i)
{
    const uint8_t *f = s->map + s->offsets[i];
    return f + sl_get_le32(f) - SL_HASH_LEN;
}

uint64_t sl_seg_ts_at(const struct sl_segment *s, uint64_t i)
{
    return sl_get_le64(s->map + s->offsets[i] + 16);
}

/* The table grows without stopping the writer: once it is 3/8 full, a table twice its size is
 * started, and each add moves GROW_STEP earlier keys into it (the new key goes into both); once
 * all are moved it takes over, at most 27/64 full. Until then lookups use the old table, which
 * stays complete and under half full (the .idx format's rule, so a seal mid-way writes it as it
 * is). Rehashing all at once held the strand's write lock — every answer — 36 ms at 262k
 * records on the test machine. */
#define GROW_STEP 8

static void grow_step(struct sl_segment *s)
{
    uint32_t n = s->nslots * 2;
    for (int k = 0; k < GROW_STEP && s->grow_done < s->grow_end; k++, s->grow_done++) {
        if (s->grow_done + 2 * GROW_STEP < s->grow_end)
            __builtin_prefetch(&s->grow[home_slot(s->keys[s->grow_done + 2 * GROW_STEP], n)], 1);
        slots_insert(s->grow, n, s->keys[s->grow_done], (uint32_t)(s->grow_done + 1));
    }
    if (s->grow_done == s->grow_end) {
        slots_free(s->slots, s->nslots);
        s->slots = s->grow;
        s->nslots = n;
        s->grow = NULL;
    }
}

int sl_seg_index_add(struct sl_segment *s, uint32_t off, uint32_t len,
                     const uint8_t hash[SL_HASH_LEN], uint64_t ts)
{
    if (s->count >= s->offsets_cap)
        return -1;
    if (!s->nslots) {
        if (!(s->slots = slots_alloc(1024)))
            return -1;
        s->nslots = 1024;
    } else if (!s->grow && (s->count + 1) * 8 > (uint64_t)s->nslots * 3) {
        if (!(s->grow = slots_alloc(s->nslots * 2)))
            return -1;
        s->grow_done = 0;
        s->grow_end = s->count;
    }
    uint64_t key = hkey(hash);
    s->offsets[s->count] = off;
    s->keys[s->count] = key;
    slots_insert(s->slots, s->nslots, key, (uint32_t)(s->count + 1));
    if (s->grow) {
        slots_insert(s->grow, s->nslots * 2, key, (uint32_t)(s->count + 1));
        grow_step(s);
    }
    if (s->count == 0)
        s->first_ts = ts;
    s->last_ts = ts;
    s->count++;
    s->end = (uint64_t)off + len;
    return 0;
}

static void encode_header(uint8_t *h, uint64_t base_seq, const uint8_t prev_hash[SL_HASH_LEN])
{
    memset(h, 0, SL_SEG_HDR);
    memcpy(h, SL_SEG_MAGIC, 8);
    sl_put_le64(h + 8, base_seq);
    sl_put_le64(h + 16, sl_now_ms());
    memcpy(h + 24, prev_hash, SL_HASH_LEN);
    sl_put_le32(h + 56, sl_crc32c(0, h, 56));
}

static int map_file(struct sl_segment *s, struct sl_err *err)
{
    s->map = mmap(NULL, s->size, PROT_READ, MAP_SHARED, s->fd, 0);
    if (s->map == MAP_FAILED) {
        s->map = NULL;
        return sl_err_sys(err, SL_E_IO, "mmap %s", s->path);
    }
    return 0;
}

int sl_seg_create(const char *dir, uint64_t base_seq, const uint8_t prev_hash[SL_HASH_LEN],
                  uint64_t size, int durable, int use_spare, struct sl_segment **out,
                  struct sl_err *err)
{
    struct sl_segment *s = calloc(1, sizeof(*s));
    if (!s)
        return sl_err_set(err, SL_E_NOMEM, "out_of_memory", "out of memory");
    s->fd = -1;
    s->base_seq = base_seq;
    s->size = size;
    s->end = SL_SEG_HDR;
    memcpy(s->prev_hash, prev_hash, SL_HASH_LEN);
    sl_seg_path(s->path, sizeof(s->path), dir, base_seq);
    int rc;
    uint8_t h[SL_SEG_HDR];
    encode_header(h, base_seq, prev_hash);
    char spare[4200];
    snprintf(spare, sizeof(spare), "%s/spare.tmp", dir);
    struct stat st;
    int from_spare = use_spare && stat(spare, &st) == 0 && (uint64_t)st.st_size == size;
    s->fd = open(from_spare ? spare : s->path,
                 O_RDWR | O_CREAT | O_CLOEXEC | (from_spare ? 0 : O_TRUNC), 0644);
    if (s->fd < 0) {
        rc = sl_err_sys(err, SL_E_IO, "create %s", s->path);
        goto fail;
    }
    /* Preallocate so that fdatasync does not also have to flush a growing file size. */
    if (!from_spare && fallocate(s->fd, 0, 0, (off_t)size) < 0 &&
        ftruncate(s->fd, (off_t)size) < 0) {
        rc = sl_err_sys(err, SL_E_IO, "preallocate %s", s->path);
        goto fail;
    }
    s->zeroed = from_spare ? size : 0;
    /* The header with the rest of its page (zeros): a spare's zeros were written past the page
     * cache (sl_seg_prepare_spare), and a write of part of a page that is not cached reads it
     * from the disk first. */
    uint8_t page[SL_SEG_PAGE] = {0}; /* on the stack: strands create segments concurrently */
    memcpy(page, h, sizeof(h));
    if (sl_pwrite_all(s->fd, page, size < sizeof(page) ? sizeof(h) : sizeof(page), 0) < 0) {
        rc = sl_err_sys(err, SL_E_IO, "write header %s", s->path);
        goto fail;
    }
    /* The header is synced before the name appears, so a segment file never lacks it. */
    if (durable && sl_io.fdatasync(s->fd) < 0) {
        rc = sl_err_sys(err, SL_E_IO, "sync new segment %s", s->path);
        goto fail;
    }
    if (from_spare && rename(spare, s->path) < 0) {
        rc = sl_err_sys(err, SL_E_IO, "rename %s to %s", spare, s->path);
        goto fail;
    }
    if (durable && sl_fsync_dir(dir) < 0) {
        rc = sl_err_sys(err, SL_E_IO, "sync directory %s", dir);
        goto fail;
    }
    if ((rc = map_file(s, err)))
        goto fail;
    if (offsets_alloc(s) < 0) {
        rc = sl_err_set(err, SL_E_NOMEM, "out_of_memory", "cannot map index for %s", s->path);
        goto fail;
    }
    *out = s;
    return 0;
fail:
    sl_seg_close(s);
    return rc;
}

#define ZERO_AHEAD (1u << 20)

/* Zeros for every write of zeros into a segment or a spare: the largest is a zero-ahead write
 * rounded up to a page; aligned for the spare's O_DIRECT writes. */
static const uint8_t g_zeros[ZERO_AHEAD + SL_SEG_PAGE] __attribute__((aligned(4096)));

int sl_seg_zero_ahead(struct sl_segment *s, uint64_t from, uint64_t to)
{
    if (s->zeroed < from)
        s->zeroed = from; /* below the writer: written already */
    if (s->zeroed >= s->size || s->zeroed >= to + ZERO_AHEAD / 2)
        return 0;
    uint64_t z = s->zeroed > to ? s->zeroed : to, end = to + ZERO_AHEAD;
    end += (SL_SEG_PAGE - end % SL_SEG_PAGE) % SL_SEG_PAGE; /* whole pages (see flush_stage) */
    if (end > s->size)
        end = s->size;
    if (z < end && sl_pwrite_all(s->fd, g_zeros, end - z, z) < 0)
        return -1;
    s->zeroed = end;
    return 0;
}

void sl_seg_drop_cache(struct sl_segment *s, uint64_t from, uint64_t to)
{
    /* The page cache holds a file in folios of up to 2 MiB, naturally aligned, and fadvise
     * leaves a folio that sticks out of its range: from the 2 MiB boundary below, the folio cut
     * by the previous call's end goes now. Pages dropped already cost nothing to pass. */
    from -= from % (2u << 20);
    to -= to % SL_SEG_PAGE;
    if (to > s->size)
        to = s->size - s->size % SL_SEG_PAGE;
    if (to <= from)
        return;
    /* A page mapped by a reader (a sink, a lookup) is left in the cache by fadvise: unmap it
     * from our mapping first. A reader between the two calls faults it in again from the cache
     * or the disk; the bytes are durable and never change. */
    (void)madvise(s->map + from, to - from, MADV_DONTNEED);
    (void)posix_fadvise(s->fd, (off_t)from, (off_t)(to - from), POSIX_FADV_DONTNEED);
}

/* Opens the spare being written, with O_DIRECT when the file system allows it (direct = 1). */
static int open_spare(const char *tmp, int *direct)
{
    int fd = -1;
    if (*direct)
        fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_DIRECT, 0644);
    if (fd < 0) {
        *direct = 0;
        fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    }
    return fd;
}

int sl_seg_prepare_spare(const char *dir, uint64_t size, int durable, struct sl_err *err)
{
    char spare[4200], tmp[4300];
    snprintf(spare, sizeof(spare), "%s/spare.tmp", dir);
    snprintf(tmp, sizeof(tmp), "%s/spare.part.tmp", dir);
    /* The zeros go past the page cache (O_DIRECT): copied into fresh cache pages they cost as
     * much CPU as the records written over them later (a fifth of the server's time in a batch
     * run), and they would push the records' pages out. The committer then writes whole pages
     * (flush_stage), so no page of the spare is read back. */
    int direct = 1;
    int fd = open_spare(tmp, &direct);
    if (fd < 0)
        return sl_err_sys(err, SL_E_IO, "create %s", tmp);
    for (uint64_t off = 0; off < size;) {
        uint64_t n = size - off < ZERO_AHEAD ? size - off : ZERO_AHEAD;
        if (sl_pwrite_all(fd, g_zeros, n, off) < 0) {
            if (direct && errno == EINVAL) { /* alignment the file system refuses: buffered */
                close(fd);
                fd = open_spare(tmp, &direct);
                off = 0;
                if (fd >= 0)
                    continue;
            }
            int rc = sl_err_sys(err, SL_E_IO, "zero-fill %s", tmp);
            if (fd >= 0)
                close(fd);
            unlink(tmp);
            return rc;
        }
        /* Buffered, written back 1 MiB at a time: with 64 MiB dirty at once, a journal commit
         * that an active segment's fdatasync needs (ext4 data=ordered) waits for all of it.
         * Errors show at the fdatasync below. */
        if (durable && !direct)
            (void)sync_file_range(fd, (off64_t)off, (off64_t)n,
                                  SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
                                      SYNC_FILE_RANGE_WAIT_AFTER);
        off += n;
    }
    int rc = 0;
    if ((durable && sl_io.fdatasync(fd) < 0) || close(fd) < 0 || rename(tmp, spare) < 0) {
        rc = sl_err_sys(err, SL_E_IO, "finish %s", spare);
        unlink(tmp);
    }
    return rc;
}

/* Scans frames from the header on, indexing every valid one with the expected seq. */
static int scan(struct sl_segment *s, struct sl_seg_recovery *rec)
{
    uint64_t off = SL_SEG_HDR;
    enum sl_frame_status st = SL_FRAME_END;
    while (off < s->size) {
        struct sl_record r;
        uint32_t flen;
        st = sl_frame_decode(s->map + off, s->size - off, &r, &flen);
        if (st != SL_FRAME_OK)
            break;
        const uint8_t *want_prev = s->count ? sl_seg_hash_at(s, s->count - 1) : s->prev_hash;
        if (r.seq != s->base_seq + s->count || memcmp(r.prev_hash, want_prev, SL_HASH_LEN) != 0) {
            st = SL_FRAME_BADLEN; /* a stale frame from an older write: treat as the end */
            break;
        }
        if (sl_seg_index_add(s, (uint32_t)off, flen, r.hash, r.timestamp_ms) < 0)
            return -1;
        off += flen;
    }
    if (rec) {
        rec->cut_offset = off;
        rec->stop = st;
    }
    return 0;
}

/* Returns the offset just past the last nonzero byte in [from, size), or from if all zero. */
static uint64_t dirty_end(const struct sl_segment *s, uint64_t from)
{
    uint64_t last = from;
    for (uint64_t off = from; off < s->size; off += SL_SEG_PAGE) {
        uint64_t n = s->size - off < SL_SEG_PAGE ? s->size - off : SL_SEG_PAGE;
        if (memcmp(s->map + off, g_zeros, n) != 0) {
            for (uint64_t i = n; i > 0; i--)
                if (s->map[off + i - 1]) {
                    last = off + i;
                    break;
                }
        }
    }
    return last;
}

/* Keeps the bytes about to be cut in "<segment>.cut-<offset>" so that corruption in the middle
 * of a segment (not a torn tail) never destroys data without a trace. Best effort. */
static void save_cut(const struct sl_segment *s, uint64_t from, uint64_t to)
{
    char p[4300];
    snprintf(p, sizeof(p), "%s.cut-%llu", s->path, (unsigned long long)from);
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 || sl_pwrite_all(fd, s->map + from, to - from, 0) < 0 || fsync(fd) < 0)
        sl_warn("cannot save the cut tail of %s to %s: %s", s->path, p, strerror(errno));
    else
        sl_info("saved %llu cut bytes of %s to %s", (unsigned long long)(to - from), s->path, p);
    if (fd >= 0)
        close(fd);
}

static int zero_range(struct sl_segment *s, uint64_t from, uint64_t to, int durable,
                      struct sl_err *err)
{
    for (uint64_t off = from; off < to;) {
        uint64_t n = to - off < ZERO_AHEAD ? to - off : ZERO_AHEAD;
        if (sl_pwrite_all(s->fd, g_zeros, n, off) < 0)
            return sl_err_sys(err, SL_E_IO, "zero torn tail of %s", s->path);
        off += n;
    }
    if (durable && sl_io.fdatasync(s->fd) < 0)
        return sl_err_sys(err, SL_E_IO, "fdatasync %s", s->path);
    return 0;
}

/* Maps the segment's .idx as its index. verify: check its CRC (a file from an earlier run; not
 * one this process has just written from memory, whose pages are still in the cache). */
static int load_idx(struct sl_segment *s, int verify)
{
    char ip[4200];
    idx_path(ip, sizeof(ip), s->path);
    int fd = open(ip, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    struct stat st;
    void *m = MAP_FAILED;
    if (fstat(fd, &st) == 0 && (uint64_t)st.st_size >= SL_IDX_HDR)
        m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    if (m == MAP_FAILED)
        return -1;
    const uint8_t *h = m;
    uint64_t count = sl_get_le64(h + 16), end = sl_get_le64(h + 24);
    uint32_t nslots = sl_get_le32(h + 32);
    uint64_t want = SL_IDX_HDR + count * 4 + (uint64_t)nslots * 4;
    int ok = memcmp(h, SL_IDX_MAGIC, 8) == 0 && sl_get_le64(h + 8) == s->base_seq &&
             count < max_records(s->size) && end <= s->size && nslots &&
             (nslots & (nslots - 1)) == 0 && nslots >= count * 2 && want == (uint64_t)st.st_size;
    if (ok && verify) {
        uint32_t crc = sl_crc32c(0, h, 36);
        crc = sl_crc32c(crc, h + SL_IDX_HDR, want - SL_IDX_HDR);
        ok = crc == sl_get_le32(h + 36);
    }
    if (!ok) {
        munmap(m, (size_t)st.st_size);
        return -1;
    }
    s->idx_map = m;
    s->idx_len = (uint64_t)st.st_size;
    s->offsets = (uint32_t *)((uint8_t *)m + SL_IDX_HDR);
    s->slots = s->offsets + count;
    s->nslots = nslots;
    s->count = count;
    s->end = end;
    s->sealed = 1;
    if (count) {
        s->first_ts = sl_seg_ts_at(s, 0);
        s->last_ts = sl_seg_ts_at(s, count - 1);
    }
    /* Everything needed is read: let go of the pages the CRC and these reads mapped in. */
    release_pages(s->idx_map, s->idx_len);
    release_pages(s->map, s->size);
    return 0;
}

int sl_seg_write_idx(struct sl_segment *s, struct sl_err *err)
{
    char ip[4200], tmp[4300];
    idx_path(ip, sizeof(ip), s->path);
    snprintf(tmp, sizeof(tmp), "%s.tmp", ip);
    /* The in-memory table as it is: complete, under half full (sl_seg_index_add), so the seal
     * costs a copy into the page cache, not a rebuild (~30 ms at 270k records). An empty
     * segment has none: an empty one of the smallest size is written. */
    static const uint32_t empty[1024];
    uint32_t nslots = s->nslots ? s->nslots : 1024;
    const uint32_t *slots = s->nslots ? s->slots : empty;
    uint8_t h[SL_IDX_HDR] = {0};
    memcpy(h, SL_IDX_MAGIC, 8);
    sl_put_le64(h + 8, s->base_seq);
    sl_put_le64(h + 16, s->count);
    sl_put_le64(h + 24, s->end);
    sl_put_le32(h + 32, nslots);
    uint32_t crc = sl_crc32c(0, h, 36);
    crc = sl_crc32c(crc, s->offsets, s->count * 4);
    sl_put_le32(h + 36, sl_crc32c(crc, slots, (uint64_t)nslots * 4));
    /* The index is derived data: no fsync. A torn or missing .idx fails its CRC at open and is
     * rebuilt by a scan of the (durable) segment. */
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    int rc = 0;
    if (fd < 0 || sl_pwrite_all(fd, h, SL_IDX_HDR, 0) < 0 ||
        sl_pwrite_all(fd, s->offsets, s->count * 4, SL_IDX_HDR) < 0 ||
        sl_pwrite_all(fd, slots, (uint64_t)nslots * 4, SL_IDX_HDR + s->count * 4) < 0 ||
        close(fd) < 0 || rename(tmp, ip) < 0) {
        rc = sl_err_sys(err, SL_E_IO, "write index %s", ip);
        if (fd >= 0)
            close(fd);
        unlink(tmp);
    }
    return rc;
}

int sl_seg_switch_idx(struct sl_segment *s, struct sl_err *err)
{
    /* Switch to the file-backed index and drop the in-memory one. */
    uint32_t *old_off = s->offsets, *old_slots = s->slots, old_nslots = s->nslots;
    uint64_t *old_keys = s->keys;
    uint64_t old_cap = s->offsets_cap;
    uint64_t count = s->count, end = s->end;
    if (load_idx(s, 0) < 0)
        return sl_err_set(err, SL_E_IO, "io_error", "cannot reopen index of %s", s->path);
    s->count = count;
    s->end = end;
    arrays_put(old_off, old_keys, old_cap);
    s->keys = NULL;
    slots_free(old_slots, old_nslots);
    slots_free(s->grow, old_nslots * 2);
    s->grow = NULL;
    s->offsets_cap = 0;
    release_pages(s->map, s->size);
    return 0;
}

int sl_seg_header_ok(const char *path)
{
    uint8_t h[SL_SEG_HDR];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    int ok = sl_pread_all(fd, h, sizeof(h), 0) == 0 && memcmp(h, SL_SEG_MAGIC, 8) == 0 &&
             sl_get_le32(h + 56) == sl_crc32c(0, h, 56);
    close(fd);
    return ok;
}

int sl_seg_open(const char *path, int is_last, int durable, struct sl_segment **out,
                struct sl_seg_recovery *rec, struct sl_err *err)
{
    struct sl_seg_recovery local;
    if (!rec)
        rec = &local;
    memset(rec, 0, sizeof(*rec));
    struct sl_segment *s = calloc(1, sizeof(*s));
    if (!s)
        return sl_err_set(err, SL_E_NOMEM, "out_of_memory", "out of memory");
    snprintf(s->path, sizeof(s->path), "%s", path);
    int rc;
    struct stat st;
    s->fd = open(path, O_RDWR | O_CLOEXEC);
    if (s->fd < 0 || fstat(s->fd, &st) < 0) {
        rc = sl_err_sys(err, SL_E_IO, "open %s", path);
        goto fail;
    }
    s->size = (uint64_t)st.st_size;
    if (s->size < SL_SEG_HDR) {
        rc = sl_err_set(err, SL_E_CORRUPT, "corrupt_segment", "%s: shorter than its header", path);
        goto fail;
    }
    if ((rc = map_file(s, err)))
        goto fail;
    if (memcmp(s->map, SL_SEG_MAGIC, 8) != 0 ||
        sl_get_le32(s->map + 56) != sl_crc32c(0, s->map, 56)) {
        rc = sl_err_set(err, SL_E_CORRUPT, "corrupt_segment", "%s: bad segment header", path);
        goto fail;
    }
    s->base_seq = sl_get_le64(s->map + 8);
    memcpy(s->prev_hash, s->map + 24, SL_HASH_LEN);
    s->end = SL_SEG_HDR;
    if (!is_last && load_idx(s, 1) == 0) {
        *out = s;
        return 0;
    }
    if (offsets_alloc(s) < 0) {
        rc = sl_err_set(err, SL_E_NOMEM, "out_of_memory", "cannot map index for %s", path);
        goto fail;
    }
    if (scan(s, rec) < 0) {
        rc = sl_err_set(err, SL_E_NOMEM, "out_of_memory", "index of %s does not fit", path);
        goto fail;
    }
    if (is_last) {
        /* Anything nonzero after the last good frame is a torn or stale write: zero it so a
         * later scan can never mistake it for records. */
        uint64_t dirty = dirty_end(s, rec->cut_offset);
        if (dirty > rec->cut_offset) {
            rec->cut_bytes = dirty - rec->cut_offset;
            save_cut(s, rec->cut_offset, dirty);
            if ((rc = zero_range(s, rec->cut_offset, dirty, durable, err)))
                goto fail;
        }
        release_pages(s->map, s->size);
    } else {
        rec->idx_rebuilt = 1;
        if ((rc = sl_seg_write_idx(s, err)) || (rc = sl_seg_switch_idx(s, err)))
            goto fail;
    }
    *out = s;
    return 0;
fail:
    sl_seg_close(s);
    return rc;
}

void sl_seg_close(struct sl_segment *s)
{
    if (!s)
        return;
    if (s->idx_map)
        munmap(s->idx_map, s->idx_len);
    else {
        if (s->offsets)
            munmap(s->offsets, s->offsets_cap * 4);
        if (s->keys)
            munmap(s->keys, s->offsets_cap * 8);
        slots_free(s->slots, s->nslots);
        slots_free(s->grow, s->nslots * 2);
    }
    if (s->map)
        munmap(s->map, s->size);
    if (s->fd >= 0)
        close(s->fd);
    free(s);
}

int sl_seg_read(const struct sl_segment *s, uint64_t seq, struct sl_record *r)
{
    if (seq < s->base_seq || seq - s->base_seq >= s->count)
        return SL_E_NOTFOUND;
    uint64_t off = s->offsets[seq - s->base_seq];
    uint32_t flen;
    if (sl_frame_decode(s->map + off, s->end - off, r, &flen) != SL_FRAME_OK)
        return SL_E_CORRUPT;
    return 0;
}

int sl_seg_find_hash(const struct sl_segment *s, const uint8_t hash[SL_HASH_LEN], uint64_t *seq)
{
    if (!s->nslots)
        return SL_E_NOTFOUND;
    uint32_t m = s->nslots - 1, i = home_slot(hkey(hash), s->nslots);
    for (uint32_t v; (v = s->slots[i]) != 0; i = (i + 1) & m) {
        if (v <= s->count && memcmp(sl_seg_hash_at(s, v - 1), hash, SL_HASH_LEN) == 0) {
            *seq = s->base_seq + v - 1;
            return 0;
        }
    }
    return SL_E_NOTFOUND;
}

int64_t sl_seg_find_time(const struct sl_segment *s, uint64_t as_of)
{
    /* timestamps are non-decreasing within a strand (the committer enforces it) */
    int64_t lo = 0, hi = (int64_t)s->count - 1, ans = -1;
    while (lo <= hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (sl_seg_ts_at(s, (uint64_t)mid) <= as_of) {
            ans = mid;
            lo = mid + 1;
        } else {
            hi = mid - 1;
        }
    }
    return ans;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

int sl_seg_list(const char *dir, int remove_tmp, uint64_t **out, size_t *n, struct sl_err *err)
{
    DIR *d = opendir(dir);
    if (!d)
        return sl_err_sys(err, SL_E_IO, "open strand directory %s", dir);
    uint64_t *v = NULL;
    size_t cnt = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t l = strlen(e->d_name);
        if (remove_tmp && l > 4 && strcmp(e->d_name + l - 4, ".tmp") == 0) {
            char p[4400];
            snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
            unlink(p);
            continue;
        }
        if (l != 24 || strcmp(e->d_name + 20, ".seg") != 0)
            continue;
        char num[21];
        memcpy(num, e->d_name, 20);
        num[20] = 0;
        uint64_t base;
        if (sl_parse_u64(num, &base))
            continue;
        if (cnt == cap) {
            cap = cap ? cap * 2 : 16;
            uint64_t *nv = realloc(v, cap * sizeof(*nv));
            if (!nv) {
                free(v);
                closedir(d);
                return sl_err_set(err, SL_E_NOMEM, "out_of_memory", "out of memory");
            }
            v = nv;
        }
        v[cnt++] = base;
    }
    closedir(d);
    if (cnt)
        qsort(v, cnt, sizeof(*v), cmp_u64);
    *out = v;
    *n = cnt;
    return 0;
}
