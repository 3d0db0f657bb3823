/* Fault injection on the strand's durability path through the sl_io table:
 * - no record is acknowledged before an fdatasync that started after the write carrying it
 *   returned (and the same check does fire with durability off, so it can catch a missing
 *   sync);
 * - ENOSPC on a write fails that group only; the chain continues from the last good record;
 * - short writes are completed;
 * - EIO on fdatasync stops the strand (it refuses writes) and a restart recovers; the Merkle
 *   tree, which hashes a group's leaves while the disk writes it, publishes none of the failed
 *   group's leaves, refuses proofs until the restart, and is rebuilt to the strand's size;
 * - every write into a segment ends on a whole page, and past its records a segment holds only
 *   zeros (the spare's zeros bypass the page cache, or go through it where O_DIRECT is refused). */
#include "core/io.h"
#include "strand/record.h"
#include "strand/strand.h"
#include "strand/tree.h"
#include "strand/verify.h"
#include "t.h"

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
#define MAXSEQ 4096
static unsigned g_write_id;           /* pwrites so far */
static unsigned g_written_by[MAXSEQ]; /* seq -> the pwrite that carried its frame (0: none) */
static unsigned g_synced_upto;        /* every pwrite with id <= this was followed by a sync */
static int g_acked_unsynced;          /* acknowledgements of records not yet covered by a sync */
static int g_fail_pwrite;             /* errno to return from the next pwrite, 0 = none */
static int g_fail_after;              /* with g_fail_pwrite: pwrites to let through first */
static int g_fail_sync;               /* errno to return from the next fdatasync */
static int g_short;                   /* write at most 7 bytes per call */
static int g_pages;                   /* count the writes into segment files, and those that */
static unsigned g_seg_writes, g_seg_unaligned; /* end neither on a page nor at the file's end */
static int g_spare_einval;      /* with g_pages: the next write into a spare being zero-filled */
static unsigned g_spare_writes; /* fails with EINVAL (O_DIRECT refused); the writes after it */

/* Notes which seqs a write carries by decoding the frames in it. */
static void note_frames(const uint8_t *p, size_t n, unsigned id)
{
    for (size_t off = 0; off < n;) {
        struct sl_record r;
        uint32_t len;
        if (sl_frame_decode(p + off, n - off, &r, &len) != SL_FRAME_OK)
            break;
        if (r.seq < MAXSEQ)
            g_written_by[r.seq] = id;
        off += len;
    }
}

static ssize_t hook_pwrite(int fd, const void *b, size_t n, off_t off)
{
    pthread_mutex_lock(&g_mu);
    int fail = g_fail_after > 0 ? 0 : g_fail_pwrite;
    if (g_fail_after > 0)
        g_fail_after--;
    else
        g_fail_pwrite = 0;
    int sh = g_short;
    pthread_mutex_unlock(&g_mu);
    if (fail) {
        errno = fail;
        return -1;
    }
    char link[64], path[4096];
    snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
    ssize_t k =
        __atomic_load_n(&g_pages, __ATOMIC_ACQUIRE) ? readlink(link, path, sizeof(path) - 1) : -1;
    if (k > 14 && memcmp(path + k - 14, "spare.part.tmp", 14) == 0) {
        pthread_mutex_lock(&g_mu);
        int einval = g_spare_einval;
        g_spare_einval = 0;
        g_spare_writes += !einval;
        pthread_mutex_unlock(&g_mu);
        if (einval) {
            errno = EINVAL;
            return -1;
        }
    }
    ssize_t w = pwrite(fd, b, sh && n > 7 ? 7 : n, off);
    if (w == (ssize_t)n) { /* registered once the write has returned */
        pthread_mutex_lock(&g_mu);
        note_frames(b, n, ++g_write_id);
        pthread_mutex_unlock(&g_mu);
    }
    struct stat st;
    if (w == (ssize_t)n && k > 4 && memcmp(path + k - 4, ".seg", 4) == 0 && fstat(fd, &st) == 0) {
        pthread_mutex_lock(&g_mu);
        g_seg_writes++;
        if ((off + (off_t)n) % 4096 && off + (off_t)n != st.st_size)
            g_seg_unaligned++;
        pthread_mutex_unlock(&g_mu);
    }
    return w;
}

static int hook_sync(int fd)
{
    pthread_mutex_lock(&g_mu);
    int fail = g_fail_sync;
    g_fail_sync = 0;
    unsigned covers = g_write_id; /* a sync covers the writes that returned before it started */
    pthread_mutex_unlock(&g_mu);
    if (fail) {
        errno = fail;
        return -1;
    }
    int rc = fdatasync(fd);
    pthread_mutex_lock(&g_mu);
    if (rc == 0 && covers > g_synced_upto)
        g_synced_upto = covers;
    pthread_mutex_unlock(&g_mu);
    return rc;
}

struct waiter {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done;
};

static void on_done(struct sl_append *a)
{
    pthread_mutex_lock(&g_mu);
    for (size_t i = 0; a->status == 0 && i < a->n; i++) {
        uint64_t q = a->first_seq + i;
        if (q < MAXSEQ && (g_written_by[q] == 0 || g_written_by[q] > g_synced_upto))
            g_acked_unsynced++;
    }
    pthread_mutex_unlock(&g_mu);
    struct waiter *w = a->arg;
    pthread_mutex_lock(&w->mu);
    w->done = 1;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

/* Submits a (its done and arg are set here) and waits for it; returns the append status (or
 * the submit error). */
static int append_wait(struct sl_strand *s, struct sl_append *a)
{
    struct waiter w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0};
    a->done = on_done;
    a->arg = &w;
    int rc = sl_strand_submit(s, a, NULL);
    if (rc)
        return rc;
    pthread_mutex_lock(&w.mu);
    while (!w.done)
        pthread_cond_wait(&w.cv, &w.mu);
    pthread_mutex_unlock(&w.mu);
    return a->status;
}

/* Appends one record; returns the append status (or the submit error) and its seq. */
static int append1(struct sl_strand *s, int v, uint64_t *seq)
{
    uint8_t payload[2] = {0xcd, 0};
    payload[0] = (uint8_t)(v & 0x7f); /* a positive fixint */
    struct sl_append_rec r = {.payload = payload, .payload_len = 1, .source = "f", .source_len = 1};
    uint8_t h[SL_HASH_LEN];
    struct sl_append a = {.recs = &r, .n = 1, .hashes = &h};
    int rc = append_wait(s, &a);
    if (rc)
        return rc;
    if (seq)
        *seq = a.first_seq;
    return a.status;
}

struct writer_arg {
    struct sl_strand *s;
    int n, errors;
};

static void *writer(void *p)
{
    struct writer_arg *w = p;
    for (int i = 0; i < w->n; i++)
        if (append1(w->s, i, NULL) != 0)
            w->errors++;
    return NULL;
}

static int acked_while_unsynced(const char *dir, int durable)
{
    struct sl_strand_opts o = {.segment_bytes = 1 << 20, .durable = durable};
    struct sl_strand *s;
    if (sl_strand_open(dir, "f", &o, &s, NULL, NULL))
        return -1;
    g_acked_unsynced = 0;
    memset(g_written_by, 0, sizeof(g_written_by));
    pthread_t th[4];
    struct writer_arg wa[4];
    for (int i = 0; i < 4; i++) {
        wa[i] = (struct writer_arg){s, 50, 0};
        pthread_create(&th[i], NULL, writer, &wa[i]);
    }
    int errors = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        errors += wa[i].errors;
    }
    sl_strand_close(s);
    return errors ? -1 : g_acked_unsynced;
}

/* For every segment file of dir: the bytes after its last frame that are not zero, summed into
 * *dirty. Returns the number of segments. */
static int zeros_after_records(const char *dir, long *dirty)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;
    *dirty = 0;
    while (d && (e = readdir(d)) != NULL) {
        size_t l = strlen(e->d_name);
        if (l < 4 || strcmp(e->d_name + l - 4, ".seg") != 0)
            continue;
        char path[600];
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        FILE *f = fopen(path, "rb");
        static uint8_t buf[8 << 20]; /* a whole segment of this test */
        size_t len = f ? fread(buf, 1, sizeof(buf), f) : 0;
        if (f)
            fclose(f);
        size_t off = 64; /* SL_SEG_HDR */
        struct sl_record r;
        uint32_t flen;
        while (off < len && sl_frame_decode(buf + off, len - off, &r, &flen) == SL_FRAME_OK)
            off += flen;
        for (; off < len; off++)
            *dirty += buf[off] != 0;
        n++;
    }
    if (d)
        closedir(d);
    return n;
}

int main(void)
{
    char tmp[] = "/tmp/sl-test-faults-XXXXXX";
    if (!mkdtemp(tmp))
        return 1;
    char dir[256];
    sl_io.pwrite = hook_pwrite;
    sl_io.fdatasync = hook_sync;

    snprintf(dir, sizeof(dir), "%s/order", tmp);
    T_EQ_INT(acked_while_unsynced(dir, 1), 0,
             "durability fsync: no append acknowledged while its bytes are unsynced (200 appends)");
    snprintf(dir, sizeof(dir), "%s/order-none", tmp);
    T_CHECK(acked_while_unsynced(dir, 0) > 0,
            "durability none: the same check sees unsynced acknowledgements (the check has teeth)");

    /* ENOSPC on a write */
    snprintf(dir, sizeof(dir), "%s/enospc", tmp);
    struct sl_strand_opts o = {.segment_bytes = 1 << 20, .durable = 1};
    struct sl_strand *s;
    T_EQ_INT(sl_strand_open(dir, "f", &o, &s, NULL, NULL), 0, "open");
    uint64_t seq = 99;
    for (int i = 0; i < 5; i++)
        append1(s, i, &seq);
    g_fail_pwrite = ENOSPC;
    T_CHECK(append1(s, 5, NULL) == SL_E_IO, "a write failing with ENOSPC fails its append");
    T_EQ_INT(sl_strand_count(s), 5, "nothing of the failed append is published");
    T_EQ_INT(append1(s, 6, &seq), 0, "the next append succeeds");
    T_EQ_INT(seq, 5, "it takes the seq the failed append would have had");
    g_short = 1;
    int ok = 1;
    for (int i = 0; i < 10; i++)
        ok &= append1(s, 7 + i, NULL) == 0;
    g_short = 0;
    T_CHECK(ok && sl_strand_count(s) == 16, "short writes (7 bytes per call) are completed");
    sl_strand_close(s);
    struct sl_verify_result vr;
    sl_verify_strand(dir, "f", &vr);
    T_CHECK(vr.ok && vr.count == 16, "the chain verifies after ENOSPC and short writes (%s)",
            vr.reason);

    /* ENOSPC in the middle of a big append: its first frames were written (a batch is written
     * 256 KiB at a time), the rest not. */
    snprintf(dir, sizeof(dir), "%s/enospc-big", tmp);
    T_EQ_INT(sl_strand_open(dir, "f", &o, &s, NULL, NULL), 0, "open");
    for (int i = 0; i < 3; i++)
        append1(s, i, NULL);
    enum { BIG = 3000 };
    static uint8_t body[BIG][200];
    static struct sl_append_rec recs[BIG];
    static uint8_t hashes[BIG][SL_HASH_LEN];
    for (int i = 0; i < BIG; i++) {
        memset(body[i], 0xa1, sizeof(body[i]));
        body[i][0] = 0xc5; /* msgpack bin 16: 197 bytes */
        body[i][1] = 0;
        body[i][2] = 197;
        recs[i] = (struct sl_append_rec){
            .payload = body[i], .payload_len = 200, .source = "f", .source_len = 1};
    }
    struct sl_append big = {.recs = recs, .n = BIG, .hashes = hashes};
    g_fail_after = 1;
    g_fail_pwrite = ENOSPC;
    T_EQ_INT(append_wait(s, &big), SL_E_IO,
             "a 3000-record append whose second write fails with ENOSPC fails as a whole");
    T_EQ_INT(sl_strand_count(s), 3, "nothing of it is published");
    T_EQ_INT(append1(s, 7, &seq), 0, "the next append succeeds");
    T_EQ_INT(seq, 3, "with the seq the failed append's first record would have had");
    sl_strand_close(s);
    T_EQ_INT(sl_strand_open(dir, "f", &o, &s, NULL, NULL), 0, "a restart opens the strand");
    T_EQ_INT(sl_strand_count(s), 4,
             "and finds the 4 acknowledged records, none of the failed append's written frames");
    T_EQ_INT(append1(s, 8, &seq), 0, "takes writes again");
    sl_strand_close(s);
    sl_verify_strand(dir, "f", &vr);
    T_CHECK(vr.ok && vr.count == 5, "the chain verifies (%s)", vr.reason);

    /* Writes into segments cover whole pages: a spare's zeros are written past the page cache,
     * and a write of part of a page that is not cached is a read from the disk first. Big and
     * small appends, across rolls (4 MiB segments, the first zero-filled 1 MiB ahead of the writer,
     * new ones made from spares when ready). The spare's first O_DIRECT write is refused
     * (EINVAL, as some file systems do): it is zero-filled through the page cache instead. */
    snprintf(dir, sizeof(dir), "%s/pages", tmp);
    struct sl_strand_opts o4 = {.segment_bytes = 4 << 20, .durable = 1}; /* zero-ahead: 1 MiB */
    T_EQ_INT(sl_strand_open(dir, "f", &o4, &s, NULL, NULL), 0, "open");
    g_spare_einval = 1;
    __atomic_store_n(&g_pages, 1, __ATOMIC_RELEASE);
    int pages_ok = 1;
    for (int r = 0; r < 5; r++) {
        big = (struct sl_append){.recs = recs, .n = BIG, .hashes = hashes};
        pages_ok &= append_wait(s, &big) == 0;
        for (int i = 0; i < 40; i++)
            pages_ok &= append1(s, i, NULL) == 0;
    }
    T_CHECK(pages_ok && sl_strand_count(s) == 5 * (BIG + 40), "5 big and 200 small appends");
    sl_strand_close(s); /* joins the spare's thread */
    __atomic_store_n(&g_pages, 0, __ATOMIC_RELEASE);
    T_CHECK(g_seg_writes > 200 && g_seg_unaligned == 0,
            "every write into a segment ends on a 4 KiB page or at the segment's end (%u writes, "
            "%u not)",
            g_seg_writes, g_seg_unaligned);
    T_CHECK(g_spare_einval == 0 && g_spare_writes >= 4,
            "a spare whose O_DIRECT write is refused is zero-filled again, buffered (%u writes of "
            "1 MiB after the refusal)",
            g_spare_writes);
    sl_verify_strand(dir, "f", &vr);
    T_CHECK(vr.ok && vr.count == 5 * (BIG + 40),
            "the chain verifies across the rolls: the zeros after each write are no record (%s)",
            vr.reason);
    long dirty = -1;
    int segs = zeros_after_records(dir, &dirty);
    T_CHECK(segs >= 2 && dirty == 0,
            "past its records every segment holds zeros only (%d segments, %ld other bytes)", segs,
            dirty);

    /* EIO on fdatasync */
    snprintf(dir, sizeof(dir), "%s/eio", tmp);
    T_EQ_INT(sl_strand_open(dir, "f", &o, &s, NULL, NULL), 0, "open");
    for (int i = 0; i < 3; i++)
        append1(s, i, NULL);
    g_fail_sync = EIO;
    T_CHECK(append1(s, 3, NULL) == SL_E_IO, "an append whose fdatasync fails is not acknowledged");
    T_EQ_INT(sl_strand_count(s), 3, "nothing of it is published");
    T_CHECK(sl_tree_size(sl_strand_tree(s)) == 3 && !sl_tree_ok(sl_strand_tree(s)),
            "the tree publishes none of its leaves (size %llu) and refuses proofs",
            (unsigned long long)sl_tree_size(sl_strand_tree(s)));
    T_CHECK(append1(s, 4, NULL) == SL_E_UNAVAIL,
            "after a failed fdatasync the strand refuses further writes");
    sl_strand_close(s);
    T_EQ_INT(sl_strand_open(dir, "f", &o, &s, NULL, NULL), 0, "a restart opens the strand");
    T_CHECK(sl_tree_ok(sl_strand_tree(s)) && sl_tree_size(sl_strand_tree(s)) == sl_strand_count(s),
            "after the restart the tree is whole again, at the strand's size (%llu of %llu)",
            (unsigned long long)sl_tree_size(sl_strand_tree(s)),
            (unsigned long long)sl_strand_count(s));
    T_CHECK(sl_strand_count(s) >= 3, "every acknowledged record is there after the restart (%llu)",
            (unsigned long long)sl_strand_count(s));
    uint64_t before = sl_strand_count(s);
    T_EQ_INT(append1(s, 9, &seq), 0, "and takes writes again");
    T_EQ_INT(seq, before, "continuing the chain");
    sl_strand_close(s);
    sl_verify_strand(dir, "f", &vr);
    T_CHECK(vr.ok, "the chain verifies after the failed sync and restart (%s)", vr.reason);

    /* EIO on the fdatasync of a group big enough for its tree nodes to be hashed by the
     * helper thread meanwhile: the same outcome */
    snprintf(dir, sizeof(dir), "%s/eio-big", tmp);
    T_EQ_INT(sl_strand_open(dir, "f", &o, &s, NULL, NULL), 0, "open");
    for (int i = 0; i < 3; i++)
        append1(s, i, NULL);
    big = (struct sl_append){.recs = recs, .n = BIG, .hashes = hashes};
    T_EQ_INT(append_wait(s, &big), 0, "a 3000-record append (tree hashed beside the fdatasync)");
    g_fail_sync = EIO;
    big = (struct sl_append){.recs = recs, .n = BIG, .hashes = hashes};
    int brc = append_wait(s, &big);
    T_CHECK(brc == SL_E_IO || brc == SL_E_UNAVAIL,
            "a 3000-record append whose fdatasync fails is not acknowledged (%d)", brc);
    T_EQ_INT(sl_strand_count(s), 3 + BIG, "nothing of it is published");
    T_CHECK(sl_tree_size(sl_strand_tree(s)) == 3 + BIG && !sl_tree_ok(sl_strand_tree(s)),
            "the tree publishes none of its leaves (size %llu) and refuses proofs",
            (unsigned long long)sl_tree_size(sl_strand_tree(s)));
    sl_strand_close(s);
    T_EQ_INT(sl_strand_open(dir, "f", &o, &s, NULL, NULL), 0, "a restart opens the strand");
    T_CHECK(sl_tree_ok(sl_strand_tree(s)) &&
                sl_tree_size(sl_strand_tree(s)) == sl_strand_count(s) &&
                sl_strand_count(s) >= 3 + BIG,
            "after the restart the tree is whole again, at the strand's size (%llu of %llu)",
            (unsigned long long)sl_tree_size(sl_strand_tree(s)),
            (unsigned long long)sl_strand_count(s));
    sl_strand_close(s);
    sl_verify_strand(dir, "f", &vr);
    T_CHECK(vr.ok, "the chain verifies after the failed sync and restart (%s)", vr.reason);

    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", tmp);
    if (system(cmd) != 0)
        return 1;
    return T_DONE();
}
