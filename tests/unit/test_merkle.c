/* Merkle tree unit tests: the RFC 6962 test vectors, proofs of every shape against a naive
 * recursive reference, tampered proofs refused, and the persisted tree (tiles, state, replay). */
#include "core/util.h"
#include "mth_ref.h"
#include "strand/merkle.h"
#include "strand/tree.h"
#include "t.h"

#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define MAXLEAVES 70000

static uint8_t (*g_leaves)[SL_HASH_LEN];
static uint64_t g_nleaves;

static void leaf_of(uint64_t i, uint8_t out[SL_HASH_LEN])
{
    uint8_t b[9] = {0};
    sl_put_le64(b + 1, i);
    SHA256(b, sizeof(b), out);
}

/* MTH(D[lo:hi]) of the test's leaves (mth_ref.h: RFC 6962 2.1, OpenSSL's SHA-256). */
static void ref_mth(uint64_t lo, uint64_t hi, uint8_t out[SL_HASH_LEN])
{
    mth_ref(g_leaves, lo, hi, out);
}

static int mem_node(void *ctx, unsigned level, uint64_t index, uint8_t out[SL_HASH_LEN])
{
    uint64_t lo = index << level, hi = (index + 1) << level;
    if (hi > g_nleaves)
        return SL_E_NOTFOUND;
    ref_mth(lo, hi, out);
    return 0;
}

static const struct sl_mt_src g_mem = {.node = mem_node, .ctx = NULL};

static int mem_leaves(void *ctx, uint64_t lo, uint64_t n, uint8_t out[][SL_HASH_LEN])
{
    if (lo + n > g_nleaves)
        return SL_E_NOTFOUND;
    memcpy(out, g_leaves[lo], n * SL_HASH_LEN);
    return 0;
}

static void test_vectors(void)
{
    /* RFC 6962's reference inputs (as in Certificate Transparency's tests) */
    static const char *in[] = {"",
                               "\x00",
                               "\x10",
                               "\x20\x21",
                               "\x30\x31",
                               "\x40\x41\x42\x43",
                               "\x50\x51\x52\x53\x54\x55\x56\x57",
                               "\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f"};
    static const size_t len[] = {0, 1, 1, 2, 2, 4, 8, 16};
    static const char *roots[] = {
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    };
    struct sl_mt_acc acc = {0};
    uint8_t root[SL_HASH_LEN];
    sl_mt_acc_root(&acc, root);
    T_EQ_STR(t_hex(root, 32), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
             "the empty tree's root is SHA-256 of nothing");
    for (int i = 0; i < 8; i++) {
        uint8_t b[17] = {0};
        memcpy(b + 1, in[i], len[i]);
        SHA256(b, len[i] + 1, g_leaves[i]);
        sl_mt_acc_push(&acc, g_leaves[i], NULL, NULL);
        sl_mt_acc_root(&acc, root);
        char what[80];
        snprintf(what, sizeof(what), "RFC 6962 test vector: root of the first %d leaves", i + 1);
        T_EQ_STR(t_hex(root, 32), roots[i], what);
    }
}

/* The tree of the two records of the strand-format test vector (docs/strand-format.md). */
static void test_doc_vector(void)
{
    uint8_t a[SL_HASH_LEN], b[SL_HASH_LEN], r[SL_HASH_LEN];
    sl_hex_decode("86f44115070293497e016fea0de364e0348e3a4d9c1706485c83cde988f85b52", 64, a, 32);
    sl_hex_decode("6786785e7e497bd15e63ff7f17b2f7a4b77cf4e980809cc20c43322375bbb532", 64, b, 32);
    sl_node_hash(a, b, r);
    T_EQ_STR(t_hex(r, 32), "3697b664e456e0d02108c0c152355f79607328bb7e1aa04139924c4c3adc494c",
             "root of the two documented records");
}

/* The SHA-extensions node hashes (several at a time) against OpenSSL's, on random inputs; and
 * push_many against push, callbacks included. */
static uint64_t g_x = 0x9e3779b97f4a7c15ull;
static uint8_t rnd8(void)
{
    g_x ^= g_x << 13, g_x ^= g_x >> 7, g_x ^= g_x << 17;
    return (uint8_t)g_x;
}

struct cb_log {
    size_t n;
    uint64_t key[4096];
    uint8_t h[4096][SL_HASH_LEN];
};

static void log_node(void *ctx, unsigned level, uint64_t index, const uint8_t h[SL_HASH_LEN])
{
    struct cb_log *l = ctx;
    if (l->n < 4096) {
        l->key[l->n] = (uint64_t)level << 56 | index;
        memcpy(l->h[l->n++], h, SL_HASH_LEN);
    }
}

static void sort_log(struct cb_log *l) /* insertion sort by (level, index) */
{
    for (size_t i = 1; i < l->n; i++)
        for (size_t j = i; j > 0 && l->key[j - 1] > l->key[j]; j--) {
            uint64_t k = l->key[j];
            uint8_t h[SL_HASH_LEN];
            memcpy(h, l->h[j], SL_HASH_LEN);
            l->key[j] = l->key[j - 1];
            memcpy(l->h[j], l->h[j - 1], SL_HASH_LEN);
            l->key[j - 1] = k;
            memcpy(l->h[j - 1], h, SL_HASH_LEN);
        }
}

/* sl_hex_encode (16 bytes at a time where it can) prints every byte value as two lowercase
 * digits, for lengths that end inside and on a 16-byte step, and ends the text with a NUL. */
static void test_hex(void)
{
    static uint8_t in[300];
    static char out[2 * sizeof(in) + 1], ref[2 * sizeof(in) + 1];
    for (size_t i = 0; i < sizeof(in); i++)
        in[i] = (uint8_t)(i < 256 ? i : rnd8());
    int same = 1;
    for (size_t n = 0; n <= sizeof(in) && same; n++) {
        for (size_t off = 0; off < 3 && n + off <= sizeof(in) && same; off++) {
            memset(out, 'x', sizeof(out));
            sl_hex_encode(out, in + off, n);
            for (size_t i = 0; i < n; i++)
                snprintf(ref + 2 * i, 3, "%02x", in[off + i]);
            ref[2 * n] = 0;
            same = memcmp(out, ref, 2 * n + 1) == 0;
        }
    }
    T_CHECK(same, "hex of 0..300 bytes (every byte value) equals printf's %%02x");
}

/* The record hash through the SHA extensions against OpenSSL, for every way the four pieces
 * (head, source, prev_hash + length, payload) fall across the 64-byte blocks. */
static void test_record_hashes(void)
{
    static uint8_t payload[600];
    static char source[300], strand[SL_STRAND_NAME_MAX];
    int same = 1, n = 0;
    for (size_t sl = 1; sl <= SL_STRAND_NAME_MAX && same; sl += 7)
        for (size_t srcl = 0; srcl < 140 && same; srcl += (srcl < 70 ? 1 : 13))
            for (size_t pl = 0; pl < 600 && same; pl += (pl < 140 ? 1 : 37)) {
                for (size_t i = 0; i < sl; i++)
                    strand[i] = (char)('a' + rnd8() % 26);
                for (size_t i = 0; i < srcl; i++)
                    source[i] = (char)rnd8();
                for (size_t i = 0; i < pl; i++)
                    payload[i] = rnd8();
                struct sl_record r = {.seq = ((uint64_t)rnd8() << 40) | rnd8(),
                                      .timestamp_ms = 1747003200000ull + rnd8(),
                                      .flags = rnd8() & SL_FLAG_TOMBSTONE,
                                      .source = srcl ? source : NULL,
                                      .source_len = (uint16_t)srcl,
                                      .payload = pl ? payload : NULL,
                                      .payload_len = (uint32_t)pl};
                for (int j = 0; j < SL_HASH_LEN; j++)
                    r.prev_hash[j] = rnd8();
                uint8_t a[SL_HASH_LEN], b[SL_HASH_LEN];
                sl_record_hash(strand, sl, &r, a);
                sl_record_hash_evp(strand, sl, &r, b);
                same = memcmp(a, b, SL_HASH_LEN) == 0;
                n++;
            }
    T_CHECK(same && n > 10000,
            "record hashes of %d random records (strand 1..64 bytes, source "
            "0..139, payload 0..599) equal OpenSSL's",
            n);
}

static void test_node_hashes(void)
{
    static uint8_t in[40][SL_HASH_LEN], out[20][SL_HASH_LEN], ref[SL_HASH_LEN];
    int same = 1;
    for (int round = 0; round < 3000 && same; round++) {
        size_t np = (size_t)round % 20;
        for (size_t i = 0; i < 2 * np; i++)
            for (int j = 0; j < SL_HASH_LEN; j++)
                in[i][j] = rnd8();
        sl_node_hash_pairs((const uint8_t(*)[SL_HASH_LEN])in, np, out);
        for (size_t i = 0; i < np && same; i++) {
            sl_node_hash_evp(in[2 * i], in[2 * i + 1], ref);
            same = memcmp(out[i], ref, SL_HASH_LEN) == 0;
            sl_node_hash(in[2 * i], in[2 * i + 1], ref);
            same &= memcmp(out[i], ref, SL_HASH_LEN) == 0;
        }
        sl_node_hash_pairs((const uint8_t(*)[SL_HASH_LEN])in, np, in); /* in place */
        for (size_t i = 0; i < np && same; i++)
            same = memcmp(in[i], out[i], SL_HASH_LEN) == 0;
    }
    T_CHECK(same, "node hashes, 0..19 at a time and in place, equal OpenSSL's on random inputs");

    static struct cb_log a, b;
    static uint8_t leaves[1500][SL_HASH_LEN], scratch[1500][SL_HASH_LEN];
    for (int i = 0; i < 1500; i++)
        for (int j = 0; j < SL_HASH_LEN; j++)
            leaves[i][j] = rnd8();
    int ok = 1;
    for (int trial = 0; trial < 40 && ok; trial++) {
        struct sl_mt_acc x = {0}, y = {0};
        a.n = b.n = 0;
        size_t pos = 0;
        while (pos < 1500) {
            size_t k = rnd8() % (trial < 20 ? 7 : 200);
            if (pos + k > 1500)
                k = 1500 - pos;
            for (size_t i = 0; i < k; i++)
                sl_mt_acc_push(&x, leaves[pos + i], log_node, &a);
            memcpy(scratch, leaves[pos], k * SL_HASH_LEN);
            sl_mt_acc_push_many(&y, scratch, k, log_node, &b);
            pos += k;
            uint8_t rx[SL_HASH_LEN], ry[SL_HASH_LEN];
            sl_mt_acc_root(&x, rx);
            sl_mt_acc_root(&y, ry);
            ok &= x.size == y.size && x.n == y.n && memcmp(rx, ry, SL_HASH_LEN) == 0;
        }
        sort_log(&a);
        sort_log(&b);
        ok &= a.n == b.n && memcmp(a.key, b.key, a.n * 8) == 0 &&
              memcmp(a.h, b.h, a.n * SL_HASH_LEN) == 0;
    }
    T_CHECK(ok, "push_many == push one by one: same roots after every batch, same node callbacks");
}

static void test_proofs(void)
{
    g_nleaves = 140;
    for (uint64_t i = 0; i < g_nleaves; i++)
        leaf_of(i, g_leaves[i]);
    int roots_ok = 1, inc_ok = 1, inc_bad = 0, con_ok = 1, con_bad = 0;
    uint8_t roots[141][SL_HASH_LEN];
    struct sl_mt_acc acc = {0};
    for (uint64_t n = 1; n <= g_nleaves; n++) {
        uint8_t a[SL_HASH_LEN], b[SL_HASH_LEN];
        sl_mt_acc_push(&acc, g_leaves[n - 1], NULL, NULL);
        sl_mt_acc_root(&acc, a);
        ref_mth(0, n, roots[n]);
        if (sl_mt_root(&g_mem, n, b) || memcmp(a, roots[n], 32) || memcmp(b, roots[n], 32))
            roots_ok = 0;
    }
    T_CHECK(roots_ok, "roots of sizes 1..140: accumulator == range hash == RFC recursion");
    uint8_t p[SL_MT_MAX_PROOF][SL_HASH_LEN];
    size_t np;
    for (uint64_t n = 1; n <= g_nleaves; n++)
        for (uint64_t i = 0; i < n; i++) {
            if (sl_mt_inclusion(&g_mem, i, n, p, &np) ||
                sl_mt_verify_inclusion(g_leaves[i], i, n, p, np, roots[n]))
                inc_ok = 0;
            /* the same proof must not verify another leaf, index or a flipped hash */
            if (sl_mt_verify_inclusion(g_leaves[(i + 1) % n], i, n, p, np, roots[n]) == 0 && n > 1)
                inc_bad++;
            if (n > 1 && sl_mt_verify_inclusion(g_leaves[i], (i + 1) % n, n, p, np, roots[n]) == 0)
                inc_bad++;
            if (np) {
                p[np / 2][3] ^= 1;
                if (sl_mt_verify_inclusion(g_leaves[i], i, n, p, np, roots[n]) == 0)
                    inc_bad++;
            }
        }
    T_CHECK(inc_ok, "inclusion proofs of every leaf in trees of size 1..140 verify");
    T_EQ_INT(inc_bad, 0, "a proof for another leaf, another index or with a flipped bit fails");
    for (uint64_t n = 1; n <= g_nleaves; n++)
        for (uint64_t m = 1; m <= n; m++) {
            if (sl_mt_consistency(&g_mem, m, n, p, &np) ||
                sl_mt_verify_consistency(m, n, roots[m], roots[n], p, np))
                con_ok = 0;
            if (m < n &&
                sl_mt_verify_consistency(m, n, roots[m - 1 ? m - 1 : 2], roots[n], p, np) == 0)
                con_bad++;
            if (m < n && np) {
                p[0][0] ^= 0x80;
                if (sl_mt_verify_consistency(m, n, roots[m], roots[n], p, np) == 0)
                    con_bad++;
            }
        }
    T_CHECK(con_ok, "consistency proofs for every 1 <= m <= n <= 140 verify");
    T_EQ_INT(con_bad, 0,
             "a consistency proof against another old root or with a flipped bit fails");
    T_CHECK(sl_mt_inclusion(&g_mem, 5, 5, p, &np) != 0, "an index beyond the tree is refused");
    T_CHECK(sl_mt_consistency(&g_mem, 0, 5, p, &np) != 0 &&
                sl_mt_consistency(&g_mem, 6, 5, p, &np) != 0,
            "consistency from 0 or from beyond the newer size is refused");
}

static void test_tree_files(void)
{
    char dir[] = "/tmp/sluice-merkle-XXXXXX";
    if (!mkdtemp(dir)) {
        T_CHECK(0, "mkdtemp");
        return;
    }
    g_nleaves = MAXLEAVES;
    for (uint64_t i = 0; i < g_nleaves; i++)
        leaf_of(i, g_leaves[i]);
    struct sl_err err = {0};
    struct sl_tree *t;
    uint64_t replayed = 0;
    int rc = sl_tree_open(dir, 0, mem_leaves, NULL, 0, &t, &replayed, &err);
    T_EQ_INT(rc, 0, "open an empty tree");
    if (rc)
        return;
    for (uint64_t i = 0; i < 66000; i++)
        sl_tree_add(t, g_leaves[i]);
    sl_tree_publish(t);
    T_EQ_INT(sl_tree_size(t), 66000, "tree size after 66000 leaves");
    struct sl_mt_src src = sl_tree_src(t);
    int ok = 1;
    static const uint64_t sizes[] = {1, 255, 256, 257, 511, 65535, 65536, 65537, 66000};
    for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
        uint8_t a[SL_HASH_LEN], b[SL_HASH_LEN];
        ref_mth(0, sizes[k], b);
        if (sl_mt_root(&src, sizes[k], a) || memcmp(a, b, 32))
            ok = 0;
    }
    T_CHECK(ok, "roots from the stored tiles match the reference around tile boundaries");
    struct sl_buf tile;
    sl_buf_init(&tile, 0);
    uint8_t want[SL_HASH_LEN];
    ok = sl_tree_tile(t, 1, 0, 256, &tile) == 0 && tile.len == 256 * 32;
    for (int i = 0; ok && i < 256; i++) {
        ref_mth((uint64_t)i * 256, (uint64_t)(i + 1) * 256, want);
        ok = memcmp(tile.data + 32 * i, want, 32) == 0;
    }
    T_CHECK(ok, "tile 1/000 holds the 256 hashes of tree level 8");
    sl_buf_reset(&tile);
    ref_mth(65536, 65536 + 256, want);
    ok = sl_tree_tile(t, 1, 1, 1, &tile) == 0 && memcmp(tile.data, want, 32) == 0;
    T_CHECK(ok, "partial tile 1/001.p/1 (level-8 node 256: leaves 65536..65791)");
    sl_buf_reset(&tile);
    T_EQ_INT(sl_tree_tile(t, 1, 1, 2, &tile), SL_E_NOTFOUND, "a tile beyond the tree is absent");
    T_EQ_INT(sl_tree_tile(t, 2, 0, 2, &tile), SL_E_NOTFOUND,
             "a partial tile wider than the tree is absent");
    sl_buf_reset(&tile);
    ok = sl_tree_tile(t, 0, 3, 256, &tile) == 0 && memcmp(tile.data, g_leaves[768], 32) == 0;
    T_CHECK(ok, "a level-0 tile holds the leaves (record hashes)");
    sl_buf_release(&tile);
    T_EQ_INT(sl_tree_save(t, &err), 0, "save the state");
    sl_tree_close(t);

    /* restart with more records than the saved state: only the tail is hashed again */
    rc = sl_tree_open(dir, 70000, mem_leaves, NULL, 0, &t, &replayed, &err);
    T_EQ_INT(rc, 0, "reopen");
    if (rc)
        return;
    T_EQ_INT(replayed, 4000, "only the 4000 records after the saved size are replayed");
    uint8_t a[SL_HASH_LEN], b[SL_HASH_LEN];
    src = sl_tree_src(t);
    ref_mth(0, 70000, b);
    T_CHECK(sl_mt_root(&src, 70000, a) == 0 && memcmp(a, b, 32) == 0, "root after the replay");
    sl_tree_close(t);

    /* a shorter strand than the saved tree (records removed): rebuilt from scratch */
    rc = sl_tree_open(dir, 1000, mem_leaves, NULL, 0, &t, &replayed, &err);
    T_CHECK(rc == 0 && replayed == 1000, "a strand shorter than the saved tree: full rebuild");
    if (rc == 0) {
        src = sl_tree_src(t);
        ref_mth(0, 1000, b);
        T_CHECK(sl_mt_root(&src, 1000, a) == 0 && memcmp(a, b, 32) == 0, "root after rebuild");
        sl_tree_close(t);
    }
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    if (system(cmd) != 0)
        T_CHECK(0, "cleanup");
}

/* Ranges of at least 4096 leaves of a source with an id are answered from the thread's cache:
 * the same hash, no node read; another id or a small range is computed again. */
static int g_node_calls;
static int counting_node(void *ctx, unsigned level, uint64_t index, uint8_t out[SL_HASH_LEN])
{
    g_node_calls++;
    return mem_node(ctx, level, index, out);
}

static void test_range_cache(void)
{
    g_nleaves = 10000;
    for (uint64_t i = 0; i < g_nleaves; i++)
        leaf_of(i, g_leaves[i]);
    struct sl_mt_src a = {.node = counting_node, .id = 41}, b = a, none = a;
    b.id = 42;
    none.id = 0;
    uint8_t ref[SL_HASH_LEN], h1[SL_HASH_LEN], h2[SL_HASH_LEN], h3[SL_HASH_LEN];
    ref_mth(8192, 10000, ref);
    g_node_calls = 0;
    int rc1 = sl_mt_range_hash(&a, 8192, 10000, h1);
    int first = g_node_calls;
    int rc2 = sl_mt_range_hash(&a, 8192, 10000, h2);
    T_CHECK(rc1 == 0 && rc2 == 0 && first > 1 && g_node_calls == 2 * first &&
                memcmp(h1, ref, SL_HASH_LEN) == 0 && memcmp(h2, ref, SL_HASH_LEN) == 0,
            "a range of 1808 leaves is not cached: read again (%d node reads each time)", first);
    ref_mth(0, 10000, ref);
    g_node_calls = 0;
    rc1 = sl_mt_range_hash(&a, 0, 10000, h1);
    first = g_node_calls;
    rc2 = sl_mt_range_hash(&a, 0, 10000, h2);
    T_CHECK(rc1 == 0 && rc2 == 0 && first > 0 && g_node_calls == first &&
                memcmp(h1, ref, SL_HASH_LEN) == 0 && memcmp(h2, ref, SL_HASH_LEN) == 0,
            "a range of 10000 leaves is read once, then answered from the cache, the same hash");
    int before = g_node_calls;
    T_CHECK(sl_mt_range_hash(&b, 0, 10000, h3) == 0 && g_node_calls > before &&
                memcmp(h3, ref, SL_HASH_LEN) == 0,
            "another source (id) is not answered from the first one's entries");
    before = g_node_calls;
    T_CHECK(sl_mt_range_hash(&none, 0, 10000, h3) == 0 && g_node_calls > before &&
                sl_mt_range_hash(&none, 0, 10000, h3) == 0 && g_node_calls > before + 1,
            "a source without an id is never cached");
}

int main(void)
{
    g_leaves = malloc(MAXLEAVES * SL_HASH_LEN);
    if (!g_leaves)
        return 1;
    test_vectors();
    test_doc_vector();
    test_hex();
    test_record_hashes();
    test_node_hashes();
    test_proofs();
    test_tree_files();
    test_range_cache();
    free(g_leaves);
    return T_DONE();
}
