/* libFuzzer target for everything that reads segment bytes from disk: the input is the body of
 * a segment file (after a valid header). Recovery must never crash, must keep exactly a prefix
 * of valid frames, and `verify` must agree with it about how many records are intact. */
#include "core/crc32c.h"
#include "core/util.h"
#include "strand/record.h"
#include "strand/segment.h"
#include "strand/strand.h"
#include "strand/verify.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char g_dir[64];

static void cleanup(void)
{
    char cmd[200];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", g_dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", g_dir);
}

static void write_file(const char *path, const uint8_t *d, size_t n)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || sl_pwrite_all(fd, d, n, 0) < 0)
        abort();
    close(fd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!g_dir[0]) {
        snprintf(g_dir, sizeof(g_dir), "/tmp/sl-fuzz-seg-%d", (int)getpid());
        mkdir(g_dir, 0755);
        atexit(cleanup);
    }
    if (size > 65536)
        return 0;
    /* 1. the frame decoder over the raw bytes */
    for (size_t off = 0; off < size;) {
        struct sl_record r;
        uint32_t len;
        if (sl_frame_decode(data + off, size - off, &r, &len) != SL_FRAME_OK)
            break;
        if (len < SL_FRAME_OVERHEAD || len > size - off)
            abort();
        off += len;
    }
    /* 2. a segment file: valid header for base 0, then the input, then zeros */
    char seg[128];
    sl_seg_path(seg, sizeof(seg), g_dir, 0);
    size_t fsize = SL_SEG_HDR + size + 4096;
    uint8_t *img = calloc(1, fsize);
    memcpy(img, SL_SEG_MAGIC, 8);
    sl_put_le32(img + 56, sl_crc32c(0, img, 56));
    memcpy(img + SL_SEG_HDR, data, size);
    write_file(seg, img, fsize);
    struct sl_verify_result before;
    sl_verify_strand(g_dir, "fz", &before);
    struct sl_strand_opts o = {.segment_bytes = fsize, .durable = 0};
    struct sl_strand *s;
    if (sl_strand_open(g_dir, "fz", &o, &s, NULL, NULL) != 0)
        abort(); /* a readable header must always open */
    uint64_t n = sl_strand_count(s);
    for (uint64_t q = 0; q < n; q++) {
        struct sl_record r;
        if (sl_strand_read(s, q, &r) != 0 || r.seq != q)
            abort();
    }
    sl_strand_close(s);
    /* verify counts the prefix of frames that also re-hash; recovery keeps the prefix that
     * frames correctly and links, so it can only keep as many or more */
    if (n < before.count)
        abort();
    struct sl_verify_result after;
    sl_verify_strand(g_dir, "fz", &after);
    if (after.count < before.count)
        abort();
    char cmd[200];
    snprintf(cmd, sizeof(cmd), "rm -rf %s/*", g_dir); /* segments and the tree directory */
    if (system(cmd) != 0)
        abort();
    free(img);
    return 0;
}
