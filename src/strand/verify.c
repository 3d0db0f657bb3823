#include "strand/verify.h"

#include "core/crc32c.h"
#include "core/util.h"
#include "strand/segment.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static int fail(struct sl_verify_result *res, uint64_t seq, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(struct sl_verify_result *res, uint64_t seq, const char *fmt, ...)
{
    res->ok = 0;
    res->bad_seq = seq;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(res->reason, sizeof(res->reason), fmt, ap);
    va_end(ap);
    return 0;
}

/* Compares a recomputed node of a stored level with STRAND/tree/nodes-<level> (when the file
 * has it): the server's proofs and tiles are built from those files. */
static void check_tile(void *ctx, unsigned level, uint64_t index, const uint8_t h[SL_HASH_LEN])
{
    struct sl_verify_result *res = ctx;
    unsigned k = level / 4;
    uint8_t stored[SL_HASH_LEN];
    if (level % 4 || k >= 16 || res->tile_fds[k] < 0 || res->tree_problem[0])
        return;
    if (pread(res->tile_fds[k], stored, SL_HASH_LEN, (off_t)(index * SL_HASH_LEN)) == SL_HASH_LEN &&
        memcmp(stored, h, SL_HASH_LEN) != 0)
        snprintf(res->tree_problem, sizeof(res->tree_problem),
                 "tree: nodes-%u holds a hash for records %llu..%llu that does not match them",
                 level, (unsigned long long)(index << level),
                 (unsigned long long)(((index + 1) << level) - 1));
}

/* Verifies one segment file; updates res->count and res->head. Returns 1 to go on, 0 on failure. */
static int verify_segment(const char *path, const char *name, uint64_t base,
                          struct sl_verify_result *res)
{
    const char *file = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0) {
        if (fd >= 0)
            close(fd);
        return fail(res, res->count, "io: cannot open %s: %s", file, strerror(errno));
    }
    uint64_t size = (uint64_t)st.st_size;
    uint8_t *m = size ? mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0) : MAP_FAILED;
    close(fd);
    if (m == MAP_FAILED)
        return fail(res, res->count, "io: cannot map %s (size %llu)", file,
                    (unsigned long long)size);
    int go = 1;
    if (size < SL_SEG_HDR || memcmp(m, SL_SEG_MAGIC, 8) != 0 ||
        sl_get_le32(m + 56) != sl_crc32c(0, m, 56)) {
        go = fail(res, res->count, "crc: bad segment header in %s", file);
        goto out;
    }
    if (sl_get_le64(m + 8) != base || base != res->count) {
        go = fail(res, res->count, "link: segment %s starts at seq %llu", file,
                  (unsigned long long)sl_get_le64(m + 8));
        goto out;
    }
    if (memcmp(m + 24, res->head, SL_HASH_LEN) != 0) {
        go = fail(res, res->count, "link: prev_hash in the header of %s does not match seq %llu",
                  file, (unsigned long long)(res->count - 1));
        goto out;
    }
    uint64_t off = SL_SEG_HDR;
    size_t nlen = strlen(name);
    while (off < size) {
        struct sl_record r;
        uint32_t flen;
        enum sl_frame_status fs = sl_frame_decode(m + off, size - off, &r, &flen);
        if (fs == SL_FRAME_END)
            break;
        if (fs != SL_FRAME_OK) {
            go = fail(res, res->count, "crc: %s at offset %llu of %s", sl_frame_status_str(fs),
                      (unsigned long long)off, file);
            goto out;
        }
        if (r.seq != res->count) {
            go = fail(res, res->count, "link: frame at offset %llu of %s holds seq %llu",
                      (unsigned long long)off, file, (unsigned long long)r.seq);
            goto out;
        }
        if (memcmp(r.prev_hash, res->head, SL_HASH_LEN) != 0) {
            go = fail(res, r.seq,
                      "link: prev_hash does not match the previous record (offset %llu of %s)",
                      (unsigned long long)off, file);
            goto out;
        }
        uint8_t h[SL_HASH_LEN];
        sl_record_hash(name, nlen, &r, h);
        if (memcmp(h, r.hash, SL_HASH_LEN) != 0) {
            go = fail(res, r.seq,
                      "hash: record_hash does not match its contents (offset %llu of %s)",
                      (unsigned long long)off, file);
            goto out;
        }
        memcpy(res->head, r.hash, SL_HASH_LEN);
        res->count++;
        sl_mt_acc_push(&res->acc, r.hash, check_tile, res);
        if (res->acc.size == res->want_size) {
            sl_mt_acc_root(&res->acc, res->root_at);
            res->have_root_at = 1;
        }
        off += flen;
    }
out:
    munmap(m, size);
    return go;
}

int sl_verify_strand(const char *dir, const char *name, struct sl_verify_result *res)
{
    return sl_verify_strand_at(dir, name, 0, res);
}

int sl_verify_strand_at(const char *dir, const char *name, uint64_t want_size,
                        struct sl_verify_result *res)
{
    memset(res, 0, sizeof(*res));
    res->ok = 1;
    res->want_size = want_size;
    for (unsigned k = 0; k < 16; k++) {
        char tp[4300];
        snprintf(tp, sizeof(tp), "%s/tree/nodes-%u", dir, k * 4);
        res->tile_fds[k] = k ? open(tp, O_RDONLY | O_CLOEXEC) : -1;
    }
    uint64_t *v = NULL;
    size_t n = 0;
    struct sl_err err = {0};
    if (sl_seg_list(dir, 0, &v, &n, &err) < 0) {
        fail(res, 0, "io: %s", err.msg);
        for (unsigned k = 0; k < 16; k++)
            if (res->tile_fds[k] >= 0)
                close(res->tile_fds[k]);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        char path[4200];
        sl_seg_path(path, sizeof(path), dir, v[i]);
        if (!verify_segment(path, name, v[i], res))
            break;
    }
    free(v);
    sl_mt_acc_root(&res->acc, res->root);
    for (unsigned k = 0; k < 16; k++)
        if (res->tile_fds[k] >= 0)
            close(res->tile_fds[k]);
    return 0;
}
