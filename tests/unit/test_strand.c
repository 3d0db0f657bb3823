/* Strand unit tests: hash test vector, framing, append/read/lookups, recovery from every
 * truncation point, corruption found by verify. */
#include "core/util.h"
#include "mth_ref.h"
#include "strand/merkle.h"
#include "strand/record.h"
#include "strand/segment.h"
#include "strand/strand.h"
#include "strand/tree.h"
#include "strand/verify.h"
#include "t.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

static char g_tmp[256];

static void hex(char *out, const uint8_t *h, size_t n)
{
    for (size_t i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02x", h[i]);
}

/* The vector documented in docs/strand-format.md, computed independently with hashlib. */
static void test_vector(void)
{
    static const uint8_t payload[] = {0x83, 0xa6, 's',  'e',  'n',  's',  'o',  'r',  0xa6,
                                      't',  'e',  'm',  'p',  '-',  '7',  0xa5, 'v',  'a',
                                      'l',  'u',  'e',  0xcb, 0x40, 0x36, 0x66, 0x66, 0x66,
                                      0x66, 0x66, 0x66, 0xa1, 'n',  0xfd};
    struct sl_record r = {.seq = 0,
                          .timestamp_ms = 1747003200000ull,
                          .flags = 0,
                          .source = "agent-1",
                          .source_len = 7,
                          .payload = payload,
                          .payload_len = sizeof(payload)};
    memset(r.prev_hash, 0, sizeof(r.prev_hash));
    uint8_t h[32];
    char hx[65];
    sl_record_hash("default", 7, &r, h);
    hex(hx, h, 32);
    T_EQ_STR(hx, "86f44115070293497e016fea0de364e0348e3a4d9c1706485c83cde988f85b52",
             "record_hash of the documented test vector (seq 0)");
    static const uint8_t nil[] = {0xc0};
    struct sl_record r1 = {.seq = 1,
                           .timestamp_ms = 1747003200001ull,
                           .flags = SL_FLAG_TOMBSTONE,
                           .source = "",
                           .payload = nil,
                           .payload_len = 1};
    memcpy(r1.prev_hash, h, 32);
    sl_record_hash("default", 7, &r1, h);
    hex(hx, h, 32);
    T_EQ_STR(hx, "6786785e7e497bd15e63ff7f17b2f7a4b77cf4e980809cc20c43322375bbb532",
             "record_hash of the documented test vector (seq 1, tombstone, empty source)");

    /* frame round trip */
    memcpy(r.hash, h, 32);
    uint8_t frame[256];
    uint64_t fl = sl_frame_len(r.source_len, r.payload_len);
    sl_frame_encode(&r, frame);
    struct sl_record d;
    uint32_t dl = 0;
    T_CHECK(sl_frame_decode(frame, fl, &d, &dl) == SL_FRAME_OK && dl == fl && d.seq == 0 &&
                d.timestamp_ms == r.timestamp_ms && d.source_len == 7 &&
                memcmp(d.payload, payload, sizeof(payload)) == 0 &&
                memcmp(d.hash, r.hash, 32) == 0 && memcmp(d.prev_hash, r.prev_hash, 32) == 0,
            "frame encode/decode round trip");
    T_CHECK(sl_frame_decode(frame, fl - 1, &d, &dl) == SL_FRAME_TORN, "short frame is torn");
    frame[40] ^= 1;
    T_CHECK(sl_frame_decode(frame, fl, &d, &dl) == SL_FRAME_BADCRC, "flipped bit fails the crc");
    uint8_t zero[8] = {0};
    T_CHECK(sl_frame_decode(zero, 8, &d, &dl) == SL_FRAME_END, "zero length word is the end");
    T_CHECK(sl_strand_name_valid("a", 1) && sl_strand_name_valid("a.b_c-9", 7) &&
                !sl_strand_name_valid("A", 1) && !sl_strand_name_valid(".a", 2) &&
                !sl_strand_name_valid("", 0) &&
                !sl_strand_name_valid(
                    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 65),
            "strand name rule");
}

static int append_n(struct sl_strand *s, int n, int start, uint64_t *first)
{
    struct sl_append_rec *recs = calloc((size_t)n, sizeof(*recs));
    uint8_t(*hashes)[32] = calloc((size_t)n, 32);
    uint8_t *pl = calloc((size_t)n, 16);
    for (int i = 0; i < n; i++) {
        int len = snprintf((char *)pl + 16 * i, 16, "%c%d", 0xa0 + 8, 10000000 + start + i);
        recs[i].payload = pl + 16 * i;
        recs[i].payload_len = (uint32_t)len; /* a msgpack fixstr of 8 digits */
        recs[i].source = "t";
        recs[i].source_len = 1;
        recs[i].flags = (uint32_t)(i % 3 == 0 ? 2 : 0);
    }
    struct sl_append a = {.recs = recs, .n = (size_t)n, .hashes = hashes};
    int rc = sl_strand_append_wait(s, &a, NULL);
    if (first)
        *first = a.first_seq;
    free(recs);
    free(hashes);
    free(pl);
    return rc;
}

static void test_append_read(void)
{
    char dir[512];
    snprintf(dir, sizeof(dir), "%s/s1", g_tmp);
    struct sl_strand_opts o = {.segment_bytes = 4096, .durable = 1};
    struct sl_strand *s;
    T_EQ_INT(sl_strand_open(dir, "s1", &o, &s, NULL, NULL), 0, "open a new strand");
    uint64_t first = 99;
    T_EQ_INT(append_n(s, 1, 0, &first), 0, "append one record");
    T_EQ_INT(first, 0, "first seq is 0");
    for (int i = 0; i < 20; i++)
        append_n(s, 10, 1 + 10 * i, NULL);
    struct sl_strand_info info;
    sl_strand_info(s, &info);
    T_EQ_INT(info.count, 201, "201 records after 21 appends");
    T_CHECK(info.segments > 3, "small segments rolled (%llu segments)",
            (unsigned long long)info.segments);
    int chain_ok = 1, lookups_ok = 1;
    uint8_t prev[32] = {0};
    for (uint64_t q = 0; q < info.count; q++) {
        struct sl_record r;
        uint64_t found;
        if (sl_strand_read(s, q, &r) || r.seq != q || memcmp(r.prev_hash, prev, 32)) {
            chain_ok = 0;
            break;
        }
        uint8_t h[32];
        sl_record_hash("s1", 2, &r, h);
        if (memcmp(h, r.hash, 32))
            chain_ok = 0;
        memcpy(prev, r.hash, 32);
        if (sl_strand_find_hash(s, r.hash, &found) || found != q)
            lookups_ok = 0;
        uint64_t tq;
        if (sl_strand_find_time(s, r.timestamp_ms, &tq) || tq < q)
            lookups_ok = 0;
    }
    T_CHECK(chain_ok, "every record reads back, links and re-hashes");
    T_CHECK(lookups_ok, "every record is found by hash; time lookup finds it or a later one");
    T_CHECK(memcmp(prev, info.head_hash, 32) == 0, "head hash is the last record's hash");
    uint64_t q;
    T_CHECK(sl_strand_find_time(s, 1, &q) != 0, "as_of before the first record finds nothing");
    T_CHECK(sl_strand_find_time(s, UINT64_MAX, &q) == 0 && q == 200,
            "as_of in the future finds the last record");
    uint8_t nohash[32] = {1};
    T_CHECK(sl_strand_find_hash(s, nohash, &q) != 0, "unknown hash is not found");
    struct sl_record r;
    T_CHECK(sl_strand_read(s, 201, &r) != 0, "reading past the head fails");
    sl_strand_close(s);

    /* reopen: sealed segments load from .idx, chain continues */
    T_EQ_INT(sl_strand_open(dir, "s1", &o, &s, NULL, NULL), 0, "reopen");
    struct sl_strand_info info2;
    sl_strand_info(s, &info2);
    T_CHECK(info2.count == 201 && memcmp(info2.head_hash, info.head_hash, 32) == 0,
            "reopened strand has the same count and head");
    T_EQ_INT(append_n(s, 1, 500, &first), 0, "append after reopen");
    T_EQ_INT(first, 201, "seq continues after reopen");
    sl_strand_read(s, 201, &r);
    T_CHECK(memcmp(r.prev_hash, info.head_hash, 32) == 0, "chain continues after reopen");
    sl_strand_close(s);

    /* remove every .idx: they are rebuilt */
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -f %s/*.idx", dir);
    T_EQ_INT(system(cmd), 0, "remove index files");
    struct sl_strand_recovery rec;
    T_EQ_INT(sl_strand_open(dir, "s1", &o, &s, &rec, NULL), 0, "reopen without index files");
    T_CHECK(rec.idx_rebuilt == info.segments - 1, "sealed segment indexes rebuilt (%llu)",
            (unsigned long long)rec.idx_rebuilt);
    T_EQ_INT(sl_strand_count(s), 202, "all records still there");
    sl_strand_close(s);
    struct sl_verify_result vr;
    sl_verify_strand(dir, "s1", &vr);
    T_CHECK(vr.ok && vr.count == 202, "verify passes (%s)", vr.reason);
}

/* Single appends past the middle of a segment each look at the background zero-fill of the
 * next segment: it must run once per segment, not once per append. With spare_max_rate, a
 * strand written faster than it gets no zero-filled spares (each byte would go to the disk
 * twice), one written slower does; either way the segments verify. */
static void test_spare_rate(void)
{
    static const struct {
        const char *name;
        uint64_t rate;
        int spares;
    } cases[] = {{"sp", 0, 1}, {"fast", 1, 0}, {"slow", (uint64_t)1 << 40, 1}};
    for (size_t c = 0; c < 3; c++) {
        char dir[512];
        snprintf(dir, sizeof(dir), "%s/%s", g_tmp, cases[c].name);
        struct sl_strand_opts o = {
            .segment_bytes = 8192, .durable = 1, .spare_max_rate = cases[c].rate};
        struct sl_strand *s;
        T_EQ_INT(sl_strand_open(dir, cases[c].name, &o, &s, NULL, NULL), 0, "open");
        for (int i = 0; i < 400; i++)
            append_n(s, 1, i, NULL);
        struct sl_strand_stats st;
        struct sl_strand_info in;
        sl_strand_stats(s, &st);
        sl_strand_info(s, &in);
        uint64_t made = cases[c].spares ? st.spares : st.spares_skipped,
                 other = cases[c].spares ? st.spares_skipped : st.spares;
        T_CHECK(in.segments >= 4 && made >= in.segments - 1 && made <= in.segments && other == 0,
                "%s strand (spare_max_rate %llu B/s): at most one zero-fill per segment: %llu "
                "spares, %llu skipped, %llu segments",
                cases[c].name, (unsigned long long)cases[c].rate, (unsigned long long)st.spares,
                (unsigned long long)st.spares_skipped, (unsigned long long)in.segments);
        sl_strand_close(s);
        struct sl_verify_result vr;
        sl_verify_strand(dir, cases[c].name, &vr);
        T_CHECK(vr.ok && vr.count == 400, "%s strand verifies (%s)", cases[c].name, vr.reason);
    }

    /* A restart leaves the active segment past its middle: the few bytes written after the
     * open say nothing of the rate, so that segment gets its spare, as before. */
    char dir[512];
    snprintf(dir, sizeof(dir), "%s/reopen", g_tmp);
    struct sl_strand_opts o = {.segment_bytes = 8192, .durable = 1, .spare_max_rate = 1};
    struct sl_strand *s;
    struct sl_strand_info in;
    T_EQ_INT(sl_strand_open(dir, "reopen", &o, &s, NULL, NULL), 0, "open");
    append_n(s, 1, 0, NULL);
    sl_strand_info(s, &in);
    uint64_t per = (8192 - SL_SEG_HDR) / in.bytes; /* records a segment holds (one frame size) */
    int i = 1;
    for (; in.segments < 2; i++) {
        append_n(s, 1, i, NULL);
        sl_strand_info(s, &in);
    }
    uint64_t in_second = in.count - per; /* records in the second segment so far */
    for (; in_second < per * 7 / 10; in_second++, i++)
        append_n(s, 1, i, NULL);
    sl_strand_close(s);
    T_EQ_INT(sl_strand_open(dir, "reopen", &o, &s, NULL, NULL), 0,
             "reopened with its active segment 70 % full");
    append_n(s, 1, i, NULL);
    struct sl_strand_stats st;
    sl_strand_stats(s, &st);
    T_CHECK(st.spares == 1 && st.spares_skipped == 0,
            "the reopened segment gets a spare although spare_max_rate is 1 B/s (%llu spares, "
            "%llu skipped)",
            (unsigned long long)st.spares, (unsigned long long)st.spares_skipped);
    sl_strand_close(s);
}

/* Pages of [0, len) of the file at path in the page cache (mincore on a fresh mapping). */
static uint64_t cached_pages(const char *path, uint64_t len)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0 || len == 0) {
        if (fd >= 0)
            close(fd);
        return 0;
    }
    void *m = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    if (m == MAP_FAILED)
        return 0;
    uint64_t np = (len + 4095) / 4096, n = 0;
    unsigned char *v = malloc(np);
    if (v && mincore(m, len, v) == 0)
        for (uint64_t i = 0; i < np; i++)
            n += v[i] & 1;
    free(v);
    munmap(m, len);
    return n;
}

/* With cache_window, a durable strand keeps only its newest bytes in the page cache: the
 * pages of older segments are dropped once durable, also those a reader has mapped, and every
 * record still reads back (from the disk) and verifies. With 0 the kernel keeps them all:
 * what the residency check measures is the window, not an empty cache. */
static void test_cache_window(void)
{
    struct statfs fs;
    if (statfs(g_tmp, &fs) == 0 && fs.f_type == 0x01021994) { /* TMPFS_MAGIC */
        printf("# cache_window: %s is tmpfs, whose pages cannot be dropped; case skipped\n", g_tmp);
        return;
    }
    const uint64_t seg = 256 << 10, win = 128 << 10;
    for (int c = 0; c < 2; c++) {
        char dir[512], name[16];
        snprintf(name, sizeof(name), "cw%d", c);
        snprintf(dir, sizeof(dir), "%s/%s", g_tmp, name);
        struct sl_strand_opts o = {.segment_bytes = seg, .durable = 1, .cache_window = c ? 0 : win};
        struct sl_strand *s;
        T_EQ_INT(sl_strand_open(dir, name, &o, &s, NULL, NULL), 0, "open");
        const int per = 500, batches = 80;
        int io_ok = 1;
        for (int b = 0; b < batches; b++) {
            struct sl_record r; /* a reader maps the batch's first page in */
            if (append_n(s, per, b * per, NULL) != 0 || sl_strand_read(s, (uint64_t)b * per, &r))
                io_ok = 0;
        }
        T_CHECK(io_ok, "%s: %d batches of %d appended, each read back at once", name, batches, per);
        struct sl_strand_stats st;
        struct sl_strand_info in;
        sl_strand_stats(s, &st);
        sl_strand_info(s, &in);
        T_CHECK(in.segments >= 6, "%s: %llu segments", name, (unsigned long long)in.segments);
        uint64_t old_cached = 0, old_pages = 0, nold = 0;
        /* segments are named by base_seq: in order; all but the newest two are checked */
        char cmd[700], line[600];
        snprintf(cmd, sizeof(cmd), "ls %s | grep '[.]seg$' | sort -n", dir);
        FILE *p = popen(cmd, "r");
        char names[64][64];
        int nn = 0;
        while (p && nn < 64 && fgets(line, sizeof(line), p)) {
            line[strcspn(line, "\n")] = 0;
            snprintf(names[nn++], sizeof(names[0]), "%.63s", line);
        }
        if (p)
            pclose(p);
        T_EQ_INT(nn, (long long)in.segments, "segment files");
        for (int k = 0; k + 2 < nn; k++, nold++) {
            char path[4200];
            snprintf(path, sizeof(path), "%s/%.63s", dir, names[k]);
            old_cached += cached_pages(path, seg);
            old_pages += seg / 4096;
        }
        uint64_t total = in.bytes + in.segments * SL_SEG_HDR; /* file offsets: with headers */
        if (c == 0) {
            T_CHECK(old_cached <= nold * 2,
                    "cache_window %llu: %llu of %llu pages of the %llu older segments still "
                    "cached (at most 2 each)",
                    (unsigned long long)win, (unsigned long long)old_cached,
                    (unsigned long long)old_pages, (unsigned long long)nold);
            T_CHECK(st.cache_dropped + win + seg >= total && st.cache_dropped + win <= total,
                    "cache_window %llu: %llu of %llu bytes dropped", (unsigned long long)win,
                    (unsigned long long)st.cache_dropped, (unsigned long long)total);
        } else {
            T_CHECK(old_cached >= old_pages / 2,
                    "cache_window 0: %llu of %llu pages of the older segments cached",
                    (unsigned long long)old_cached, (unsigned long long)old_pages);
            T_EQ_INT(st.cache_dropped, 0, "cache_window 0: nothing dropped");
        }
        int bad = 0;
        for (uint64_t q = 0; q < in.count; q++) {
            struct sl_record r;
            char want[16];
            int len = snprintf(want, sizeof(want), "%c%d", 0xa0 + 8, 10000000 + (int)q);
            uint64_t at = ~0ull;
            if (sl_strand_read(s, q, &r) != 0 || r.payload_len != (uint32_t)len ||
                memcmp(r.payload, want, (size_t)len) != 0 ||
                sl_strand_find_hash(s, r.hash, &at) != 0 || at != q)
                bad++;
        }
        T_EQ_INT(bad, 0, "every record reads back and is found by its hash");
        sl_strand_close(s);
        struct sl_verify_result vr;
        sl_verify_strand(dir, name, &vr);
        T_CHECK(vr.ok && vr.count == (uint64_t)per * batches, "%s verifies (%s)", name, vr.reason);
    }
}

/* The strand's Merkle tree holds every acknowledged record, in order, across segment rolls, and
 * a clean close saves all of it. big: appends of 1 to 3,000 records, so that groups of 1,024 and
 * more are hashed by the helper thread during the fdatasync and smaller ones inline. */
static void test_tree_rolls(int big)
{
    char dir[512];
    const char *name = big ? "tg" : "tf";
    snprintf(dir, sizeof(dir), "%s/%s", g_tmp, name);
    struct sl_strand_opts o = {.segment_bytes = big ? 1u << 20 : 8192, .durable = 1};
    struct sl_strand *s;
    T_EQ_INT(sl_strand_open(dir, name, &o, &s, NULL, NULL), 0, "open");
    int ok = 1, want_n = 0, nappends = big ? 40 : 300;
    for (int i = 0; i < nappends; i++) {
        int k = big ? (i % 3 == 2 ? 1 + i % 5 : 1000 + (i * 379) % 2001) : 1 + i % 7;
        ok &= append_n(s, k, want_n, NULL) == 0;
        want_n += k;
    }
    uint64_t n = sl_strand_count(s);
    struct sl_strand_info in;
    sl_strand_info(s, &in);
    T_CHECK(ok && n == (uint64_t)want_n && in.segments >= (big ? 3 : 10),
            "%llu records in %d appends of %s, in %llu segments", (unsigned long long)n, nappends,
            big ? "1 to 3,000" : "1 to 7", (unsigned long long)in.segments);
    T_EQ_INT(sl_tree_size(sl_strand_tree(s)), n, "the tree holds every acknowledged record");
    uint8_t(*leaves)[SL_HASH_LEN] = calloc(n, SL_HASH_LEN);
    for (uint64_t i = 0; i < n; i++) {
        struct sl_record r;
        ok &= sl_strand_read(s, i, &r) == 0;
        sl_record_hash(name, 2, &r, leaves[i]);
    }
    uint8_t want[SL_HASH_LEN], got[SL_HASH_LEN];
    mth_ref(leaves, 0, n, want);
    struct sl_mt_src src = sl_tree_src(sl_strand_tree(s));
    T_CHECK(ok && sl_mt_root(&src, n, got) == 0 && memcmp(got, want, SL_HASH_LEN) == 0,
            "its root is the RFC 6962 root of the records' hashes, in strand order");
    sl_strand_close(s);
    struct sl_strand_recovery rec;
    memset(&rec, 0, sizeof(rec));
    T_EQ_INT(sl_strand_open(dir, name, &o, &s, &rec, NULL), 0, "reopen");
    T_EQ_INT(rec.tree_replayed, 0, "a clean close saved the whole tree: nothing replayed");
    src = sl_tree_src(sl_strand_tree(s));
    T_CHECK(sl_tree_size(sl_strand_tree(s)) == n && sl_mt_root(&src, n, got) == 0 &&
                memcmp(got, want, SL_HASH_LEN) == 0,
            "the same tree after the restart");
    sl_strand_close(s);
    free(leaves);
}

/* Appends are answered in the order they were published, also when a big group is answered by
 * the sync helper and the small ones after it by the sync stage: a source's durable() positions
 * must not go back. A big append's callback takes 20 ms before it answers (the helper formatting
 * 1,000 hashes for an HTTP batch takes ~1 ms), and small appends are published meanwhile. */
enum { ORD_BIG = 1500, ORD_ROUNDS = 12, ORD_N = ORD_ROUNDS * 4 };

struct order_log {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint64_t seqs[ORD_N];
    int n, failed;
};

static void order_done(struct sl_append *a)
{
    struct order_log *l = a->arg;
    if (a->n == ORD_BIG)
        usleep(20000);
    pthread_mutex_lock(&l->mu);
    if (a->status)
        l->failed++;
    l->seqs[l->n++] = a->first_seq;
    pthread_cond_signal(&l->cv);
    pthread_mutex_unlock(&l->mu);
}

static void test_answer_order(void)
{
    char dir[512];
    snprintf(dir, sizeof(dir), "%s/ord", g_tmp);
    struct sl_strand_opts o = {.segment_bytes = 64u << 20, .durable = 1};
    struct sl_strand *s;
    T_EQ_INT(sl_strand_open(dir, "ord", &o, &s, NULL, NULL), 0, "open");
    static struct sl_append as[ORD_N];
    static struct sl_append_rec recs[ORD_BIG];
    static uint8_t hashes[ORD_N][ORD_BIG][SL_HASH_LEN];
    static const uint8_t pl[] = {0xa3, 'a', 'b', 'c'};
    for (int i = 0; i < ORD_BIG; i++)
        recs[i] = (struct sl_append_rec){.payload = pl, .payload_len = sizeof(pl)};
    struct order_log l = {.n = 0};
    pthread_mutex_init(&l.mu, NULL);
    pthread_cond_init(&l.cv, NULL);
    int submitted = 0;
    uint64_t count = 0;
    for (int i = 0; i < ORD_N; i++) {
        size_t n = i % 4 == 0 ? ORD_BIG : 1;
        as[i] = (struct sl_append){
            .recs = recs, .n = n, .hashes = hashes[i], .done = order_done, .arg = &l};
        submitted += sl_strand_submit(s, &as[i], NULL) == 0;
        count += n;
        while (sl_strand_count(s) < count) /* published (the answer may come later) */
            sl_strand_wait(s, sl_strand_count(s), 100);
    }
    pthread_mutex_lock(&l.mu);
    while (l.n < submitted)
        pthread_cond_wait(&l.cv, &l.mu);
    pthread_mutex_unlock(&l.mu);
    int inorder = 1;
    for (int i = 1; i < l.n; i++)
        inorder &= l.seqs[i] > l.seqs[i - 1];
    T_CHECK(submitted == ORD_N && l.failed == 0 && inorder,
            "%d appends, big ones answered slowly and small ones published meanwhile: each "
            "answered after the one before it",
            l.n);
    sl_strand_close(s);
    pthread_mutex_destroy(&l.mu);
    pthread_cond_destroy(&l.cv);
}

static int64_t file_size(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 ? (int64_t)st.st_size : -1;
}

/* Writes 5 records, then for every cut point p re-creates the segment with only the first p
 * bytes (rest zero, like a preallocated file after a crash) plus garbage variants, reopens, and
 * checks that exactly the complete frames before p survive and the chain continues. */
static void test_truncation(void)
{
    char dir[512], seg[600], base[700];
    snprintf(dir, sizeof(dir), "%s/tr", g_tmp);
    struct sl_strand_opts o = {.segment_bytes = 8192, .durable = 0};
    struct sl_strand *s;
    sl_strand_open(dir, "tr", &o, &s, NULL, NULL);
    uint64_t ends[6];
    ends[0] = SL_SEG_HDR;
    for (int i = 0; i < 5; i++) {
        append_n(s, 1, i, NULL);
        struct sl_strand_info in;
        sl_strand_info(s, &in);
        ends[i + 1] = SL_SEG_HDR + in.bytes;
    }
    sl_strand_close(s);
    sl_seg_path(seg, sizeof(seg), dir, 0);
    snprintf(base, sizeof(base), "%s.orig", seg);
    rename(seg, base);
    int64_t size = file_size(base);
    uint8_t *orig = malloc((size_t)size);
    FILE *f = fopen(base, "rb");
    T_CHECK(f && fread(orig, 1, (size_t)size, f) == (size_t)size, "read segment");
    fclose(f);
    int all_ok = 1, garbage_ok = 1;
    for (uint64_t p = SL_SEG_HDR; p <= ends[5]; p++) {
        for (int variant = 0; variant < 2; variant++) {
            uint8_t *img = calloc(1, (size_t)size);
            memcpy(img, orig, p);
            if (variant == 1) /* torn write: garbage after the cut instead of zeros */
                for (uint64_t k = p; k < ends[5] + 7 && k < (uint64_t)size; k++)
                    img[k] = (uint8_t)(k * 37 + 11);
            f = fopen(seg, "wb");
            fwrite(img, 1, (size_t)size, f);
            fclose(f);
            /* A frame survives iff its bytes are intact: usually those before the cut, but the
             * byte written at the cut can equal the original one (then the frame is whole). */
            int expect = 0;
            while (expect < 5 && memcmp(img + ends[expect], orig + ends[expect],
                                        ends[expect + 1] - ends[expect]) == 0)
                expect++;
            struct sl_strand_recovery rec;
            if (sl_strand_open(dir, "tr", &o, &s, &rec, NULL) != 0) {
                all_ok = 0;
                free(img);
                continue;
            }
            if (sl_strand_count(s) != (uint64_t)expect) {
                printf("# cut at %llu variant %d: %llu records, expected %d\n",
                       (unsigned long long)p, variant, (unsigned long long)sl_strand_count(s),
                       expect);
                *(variant ? &garbage_ok : &all_ok) = 0;
            }
            uint64_t first;
            if (append_n(s, 1, 77, &first) || first != (uint64_t)expect) {
                printf("# cut at %llu variant %d: append got seq %llu\n", (unsigned long long)p,
                       variant, (unsigned long long)first);
                *(variant ? &garbage_ok : &all_ok) = 0;
            }
            sl_strand_close(s);
            struct sl_verify_result vr;
            sl_verify_strand(dir, "tr", &vr);
            if (!vr.ok || vr.count != (uint64_t)expect + 1) {
                printf("# cut at %llu variant %d: verify %d count %llu: %s\n",
                       (unsigned long long)p, variant, vr.ok, (unsigned long long)vr.count,
                       vr.reason);
                *(variant ? &garbage_ok : &all_ok) = 0;
            }
            free(img);
            char cmd[1400];
            snprintf(cmd, sizeof(cmd), "rm -f %s.cut-*", seg);
            if (system(cmd) != 0)
                all_ok = 0;
        }
    }
    T_CHECK(all_ok, "every truncation point keeps exactly the complete frames and continues");
    T_CHECK(garbage_ok, "garbage after every cut point is cut, zeroed, and the chain continues");
    free(orig);
}

static void test_corruption(void)
{
    char dir[512], seg[600];
    snprintf(dir, sizeof(dir), "%s/co", g_tmp);
    struct sl_strand_opts o = {.segment_bytes = 1 << 20, .durable = 0};
    struct sl_strand *s;
    sl_strand_open(dir, "co", &o, &s, NULL, NULL);
    for (int i = 0; i < 10; i++)
        append_n(s, 1, i, NULL);
    sl_seg_path(seg, sizeof(seg), dir, 0);
    sl_strand_close(s);
    /* find frame 4's offset by walking frames */
    int fd = open(seg, O_RDWR);
    uint64_t off = SL_SEG_HDR;
    int io_ok = fd >= 0;
    for (int i = 0; i < 4; i++) {
        uint32_t len = 0;
        io_ok &= pread(fd, &len, 4, (off_t)off) == 4;
        off += len;
    }
    uint8_t b = 0;
    io_ok &= pread(fd, &b, 1, (off_t)(off + 40)) == 1;
    b ^= 0x55;
    io_ok &= pwrite(fd, &b, 1, (off_t)(off + 40)) == 1;
    close(fd);
    T_CHECK(io_ok, "flip one byte inside record 4");
    struct sl_verify_result vr;
    sl_verify_strand(dir, "co", &vr);
    T_CHECK(!vr.ok && vr.bad_seq == 4 && strncmp(vr.reason, "crc", 3) == 0,
            "verify names seq 4 and crc for a flipped byte (%s)", vr.reason);

    fd = open(seg, O_RDWR);
    b ^= 0x55;
    T_CHECK(pwrite(fd, &b, 1, (off_t)(off + 40)) == 1, "restore the byte");
    close(fd);
    sl_verify_strand(dir, "co", &vr);
    T_CHECK(vr.ok && vr.count == 10, "restored segment verifies");
}

/* Every one of the n hashes is found by sl_seg_find_hash, at its seq. */
static int all_found(const struct sl_segment *g, uint8_t (*hashes)[SL_HASH_LEN], uint64_t n)
{
    for (uint64_t i = 0; i < n; i++) {
        uint64_t seq;
        if (sl_seg_find_hash(g, hashes[i], &seq) != 0 || seq != i)
            return 0;
    }
    return 1;
}

/* The active segment's hash index grows a few keys per add (no pause of the writer): while a
 * bigger table fills, every earlier record is still found, the table in use stays under half
 * full (the .idx rule), and a seal in the middle of a growth writes an index that loads, CRC
 * checked, at the next open. */
static void test_index_growth(void)
{
    char dir[512], path[sizeof(((struct sl_segment *)0)->path)];
    snprintf(dir, sizeof(dir), "%s/grow", g_tmp);
    mkdir(dir, 0755);
    struct sl_segment *g;
    struct sl_err err = {0};
    uint8_t zero[SL_HASH_LEN] = {0};
    T_EQ_INT(sl_seg_create(dir, 0, zero, 1 << 20, 0, 0, &g, &err), 0, "create a segment");
    /* 4096 slots start growing at 1536 records and take 192 adds: stop in between */
    enum { N = 1600 };
    static uint8_t hashes[N][SL_HASH_LEN];
    uint8_t frame[256], prev[SL_HASH_LEN] = {0};
    uint64_t off = g->end;
    int half_ok = 1, bounded = 1, found_ok = 1, grew = 0; /* found_ok: written and found */
    for (uint64_t i = 0; i < N; i++) {
        char payload[32];
        int plen = snprintf(payload, sizeof(payload), "\xa5r%04u", (unsigned)i);
        struct sl_record r = {.seq = i,
                              .timestamp_ms = 1000 + i,
                              .source_len = 1,
                              .source = "t",
                              .payload_len = (uint32_t)plen,
                              .payload = (const uint8_t *)payload};
        memcpy(r.prev_hash, prev, SL_HASH_LEN);
        sl_record_hash("grow", 4, &r, r.hash);
        uint32_t flen = (uint32_t)sl_frame_len(1, (size_t)plen);
        sl_frame_encode(&r, frame);
        if (sl_pwrite_all(g->fd, frame, flen, off) != 0)
            found_ok = 0;
        uint64_t done0 = g->grow ? g->grow_done : 0;
        int growing = g->grow != NULL;
        if (sl_seg_index_add(g, (uint32_t)off, flen, r.hash, r.timestamp_ms) != 0)
            found_ok = 0;
        if (g->grow && growing && g->grow_done - done0 > 8)
            bounded = 0;
        grew |= g->grow != NULL;
        if ((uint64_t)g->nslots < 2 * g->count)
            half_ok = 0;
        memcpy(hashes[i], r.hash, SL_HASH_LEN);
        memcpy(prev, r.hash, SL_HASH_LEN);
        off += flen;
        if ((g->grow || i % 97 == 0) && !all_found(g, hashes, i + 1))
            found_ok = 0;
    }
    T_CHECK(grew && g->grow != NULL, "the index was growing (and still is at the seal)");
    T_CHECK(bounded, "each add moves at most 8 keys into the growing table");
    T_CHECK(half_ok, "the table in use is never more than half full");
    T_CHECK(found_ok, "every record is found by hash during the growths");
    T_EQ_INT(sl_seg_write_idx(g, &err), 0, "seal mid-growth: write the index");
    T_EQ_INT(sl_seg_switch_idx(g, &err), 0, "switch to the written index");
    T_CHECK(g->idx_map && all_found(g, hashes, N), "every record found in the written index");
    snprintf(path, sizeof(path), "%s", g->path);
    sl_seg_close(g);
    T_EQ_INT(sl_seg_open(path, 0, 0, &g, NULL, &err), 0, "reopen the sealed segment");
    T_CHECK(g->idx_map && g->count == N, "opened from its .idx (CRC ok), %llu records",
            (unsigned long long)g->count);
    T_CHECK(all_found(g, hashes, N), "every record found after the reopen");
    sl_seg_close(g);
}

int main(void)
{
    snprintf(g_tmp, sizeof(g_tmp), "/tmp/sl-test-strand-XXXXXX");
    if (!mkdtemp(g_tmp))
        return 1;
    test_vector();
    test_append_read();
    test_index_growth();
    test_spare_rate();
    test_cache_window();
    test_tree_rolls(0);
    test_tree_rolls(1);
    test_answer_order();
    test_truncation();
    test_corruption();
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", g_tmp);
    if (system(cmd) != 0)
        return 1;
    return T_DONE();
}
