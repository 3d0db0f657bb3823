#include "strand/merkle.h"

#include "core/err.h"

#include <openssl/sha.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* The largest power of two strictly smaller than n (n >= 2). */
static uint64_t split_point(uint64_t n)
{
    return (uint64_t)1 << (63 - __builtin_clzll(n - 1));
}

/* Hashes of ranges of at least CACHE_MIN leaves, per thread (the HTTP loops), direct-mapped:
 * every proof in a tree passes the same few nodes near the root and the same ranges along its
 * right edge, each costing up to 8 stored hashes read and 7 hashed per chunk. */
#define CACHE_SLOTS 1024
#define CACHE_MIN 4096
struct cached {
    uint64_t id, lo, hi;
    uint8_t h[SL_HASH_LEN];
};
static pthread_key_t g_cache_key;
static pthread_once_t g_cache_once = PTHREAD_ONCE_INIT;

static void cache_key_make(void)
{
    pthread_key_create(&g_cache_key, free);
}

static struct cached *cache_slot(uint64_t id, uint64_t lo, uint64_t hi)
{
    pthread_once(&g_cache_once, cache_key_make);
    struct cached *c = pthread_getspecific(g_cache_key);
    if (!c) {
        if (!(c = calloc(CACHE_SLOTS, sizeof(*c))) || pthread_setspecific(g_cache_key, c) != 0) {
            free(c);
            return NULL;
        }
    }
    uint64_t k = (id * 0x9e3779b97f4a7c15ull) ^ (lo * 0xc2b2ae3d27d4eb4full) ^ hi;
    return &c[(k ^ (k >> 29)) & (CACHE_SLOTS - 1)];
}

static int range_hash(const struct sl_mt_src *src, uint64_t lo, uint64_t hi,
                      uint8_t out[SL_HASH_LEN]);

int sl_mt_range_hash(const struct sl_mt_src *src, uint64_t lo, uint64_t hi,
                     uint8_t out[SL_HASH_LEN])
{
    struct cached *c =
        src->id && hi > lo && hi - lo >= CACHE_MIN ? cache_slot(src->id, lo, hi) : NULL;
    if (c && c->id == src->id && c->lo == lo && c->hi == hi) {
        memcpy(out, c->h, SL_HASH_LEN);
        return 0;
    }
    int rc = range_hash(src, lo, hi, out);
    if (rc == 0 && c) {
        c->id = src->id;
        c->lo = lo;
        c->hi = hi;
        memcpy(c->h, out, SL_HASH_LEN);
    }
    return rc;
}

static int range_hash(const struct sl_mt_src *src, uint64_t lo, uint64_t hi,
                      uint8_t out[SL_HASH_LEN])
{
    /* [lo, hi) is the largest aligned power-of-two chunks, left to right; the RFC's MTH folds
     * them from the right: MTH = H(c1, H(c2, ... H(ck-1, ck))). */
    uint8_t chunk[64][SL_HASH_LEN];
    unsigned k = 0;
    while (lo < hi) {
        unsigned level = 63 - (unsigned)__builtin_clzll(hi - lo);
        if (lo & (((uint64_t)1 << level) - 1))
            return SL_E_INVAL; /* not a range of the RFC's recursion */
        int rc = src->node(src->ctx, level, lo >> level, chunk[k]);
        if (rc)
            return rc;
        k++;
        lo += (uint64_t)1 << level;
    }
    if (k == 0)
        return SL_E_INVAL;
    memcpy(out, chunk[k - 1], SL_HASH_LEN);
    for (unsigned i = k - 1; i > 0; i--)
        sl_node_hash(chunk[i - 1], out, out);
    return 0;
}

int sl_mt_root(const struct sl_mt_src *src, uint64_t n, uint8_t out[SL_HASH_LEN])
{
    if (n == 0) {
        SHA256((const unsigned char *)"", 0, out);
        return 0;
    }
    return sl_mt_range_hash(src, 0, n, out);
}

static void reverse(uint8_t v[][SL_HASH_LEN], size_t n)
{
    uint8_t t[SL_HASH_LEN];
    for (size_t i = 0; i < n / 2; i++) {
        memcpy(t, v[i], SL_HASH_LEN);
        memcpy(v[i], v[n - 1 - i], SL_HASH_LEN);
        memcpy(v[n - 1 - i], t, SL_HASH_LEN);
    }
}

int sl_mt_inclusion(const struct sl_mt_src *src, uint64_t index, uint64_t n,
                    uint8_t out[][SL_HASH_LEN], size_t *len)
{
    if (index >= n)
        return SL_E_INVAL;
    uint64_t lo = 0, hi = n;
    size_t k = 0;
    while (hi - lo > 1) { /* collected top-down, returned leaf first */
        uint64_t mid = lo + split_point(hi - lo);
        int rc = index < mid ? sl_mt_range_hash(src, mid, hi, out[k])
                             : sl_mt_range_hash(src, lo, mid, out[k]);
        if (rc)
            return rc;
        k++;
        if (index < mid)
            hi = mid;
        else
            lo = mid;
    }
    reverse(out, k);
    *len = k;
    return 0;
}

int sl_mt_consistency(const struct sl_mt_src *src, uint64_t m, uint64_t n,
                      uint8_t out[][SL_HASH_LEN], size_t *len)
{
    if (m == 0 || m > n)
        return SL_E_INVAL;
    /* SUBPROOF(m, D[lo:hi], b) of RFC 9162 2.1.4.1, unrolled */
    uint64_t lo = 0, hi = n;
    int b = 1;
    size_t k = 0;
    int rc = 0;
    for (;;) {
        if (m == hi - lo) {
            if (!b)
                rc = sl_mt_range_hash(src, lo, hi, out[k++]);
            break;
        }
        uint64_t s = split_point(hi - lo);
        if (m <= s) {
            rc = sl_mt_range_hash(src, lo + s, hi, out[k++]);
            hi = lo + s;
        } else {
            rc = sl_mt_range_hash(src, lo, lo + s, out[k++]);
            m -= s;
            lo += s;
            b = 0;
        }
        if (rc)
            return rc;
    }
    if (rc)
        return rc;
    reverse(out, k);
    *len = k;
    return 0;
}

/* The RFC's "right-shift fn and sn until LSB(fn) is set or fn is 0". */
static void shift_to_right_child(uint64_t *fn, uint64_t *sn)
{
    while (!(*fn & 1) && *fn != 0) {
        *fn >>= 1;
        *sn >>= 1;
    }
}

int sl_mt_verify_inclusion(const uint8_t leaf[SL_HASH_LEN], uint64_t index, uint64_t n,
                           const uint8_t proof[][SL_HASH_LEN], size_t len,
                           const uint8_t root[SL_HASH_LEN])
{
    if (index >= n)
        return SL_E_INVAL;
    uint64_t fn = index, sn = n - 1;
    uint8_t r[SL_HASH_LEN];
    memcpy(r, leaf, SL_HASH_LEN);
    for (size_t i = 0; i < len; i++) {
        if (sn == 0)
            return SL_E_INVAL;
        if ((fn & 1) || fn == sn) {
            sl_node_hash(proof[i], r, r);
            shift_to_right_child(&fn, &sn);
        } else {
            sl_node_hash(r, proof[i], r);
        }
        fn >>= 1;
        sn >>= 1;
    }
    return sn == 0 && memcmp(r, root, SL_HASH_LEN) == 0 ? 0 : SL_E_INVAL;
}

int sl_mt_verify_consistency(uint64_t m, uint64_t n, const uint8_t root_m[SL_HASH_LEN],
                             const uint8_t root_n[SL_HASH_LEN], const uint8_t proof[][SL_HASH_LEN],
                             size_t len)
{
    if (m == 0 || m > n)
        return SL_E_INVAL;
    if (m == n)
        return len == 0 && memcmp(root_m, root_n, SL_HASH_LEN) == 0 ? 0 : SL_E_INVAL;
    if (len == 0)
        return SL_E_INVAL;
    /* when m is a power of two, the proof starts with root_m itself (implicitly) */
    const uint8_t *first = proof[0];
    size_t i = 1;
    if ((m & (m - 1)) == 0) {
        first = root_m;
        i = 0;
    }
    uint64_t fn = m - 1, sn = n - 1;
    while (fn & 1) {
        fn >>= 1;
        sn >>= 1;
    }
    uint8_t fr[SL_HASH_LEN], sr[SL_HASH_LEN];
    memcpy(fr, first, SL_HASH_LEN);
    memcpy(sr, first, SL_HASH_LEN);
    for (; i < len; i++) {
        if (sn == 0)
            return SL_E_INVAL;
        if ((fn & 1) || fn == sn) {
            sl_node_hash(proof[i], fr, fr);
            sl_node_hash(proof[i], sr, sr);
            shift_to_right_child(&fn, &sn);
        } else {
            sl_node_hash(sr, proof[i], sr);
        }
        fn >>= 1;
        sn >>= 1;
    }
    return sn == 0 && memcmp(fr, root_m, SL_HASH_LEN) == 0 && memcmp(sr, root_n, SL_HASH_LEN) == 0
               ? 0
               : SL_E_INVAL;
}

void sl_mt_acc_push(struct sl_mt_acc *a, const uint8_t leaf[SL_HASH_LEN], sl_mt_node_fn fn,
                    void *ctx)
{
    uint8_t h[SL_HASH_LEN];
    memcpy(h, leaf, SL_HASH_LEN);
    uint64_t idx = a->size;
    unsigned level = 0;
    while (idx & 1) { /* the left sibling is complete: merge */
        sl_node_hash(a->stack[--a->n], h, h);
        level++;
        idx >>= 1;
        if (fn)
            fn(ctx, level, idx, h);
    }
    memcpy(a->stack[a->n++], h, SL_HASH_LEN);
    a->size++;
}

void sl_mt_acc_push_many(struct sl_mt_acc *a, uint8_t nodes[][SL_HASH_LEN], size_t n,
                         sl_mt_node_fn fn, void *ctx)
{
    /* At level L, nodes[0..m) are complete nodes i0 .. i0+m-1. If i0 is odd its left sibling
     * (L, i0-1) is the stack's top (every lower entry has been merged already). A last node
     * without a right sibling becomes the new stack entry of level L. */
    uint8_t rest[64][SL_HASH_LEN]; /* those new entries, by level */
    uint64_t has_rest = 0, i0 = a->size;
    size_t m = n;
    unsigned level = 0;
    a->size += n;
    while (m > 0) {
        size_t s = 0, w = 0;
        if (i0 & 1) {
            sl_node_hash(a->stack[--a->n], nodes[0], nodes[0]);
            s = w = 1;
        }
        size_t pairs = (m - s) / 2;
        if ((m - s) & 1) {
            memcpy(rest[level], nodes[m - 1], SL_HASH_LEN);
            has_rest |= (uint64_t)1 << level;
        }
        sl_node_hash_pairs((const uint8_t(*)[SL_HASH_LEN])nodes + s, pairs, nodes + w);
        m = w + pairs;
        i0 >>= 1;
        level++;
        if (fn)
            for (size_t i = 0; i < m; i++)
                fn(ctx, level, i0 + i, nodes[i]);
    }
    for (int l = 63; l >= 0; l--) /* above the untouched higher entries, largest first */
        if (has_rest >> l & 1)
            memcpy(a->stack[a->n++], rest[l], SL_HASH_LEN);
}

void sl_mt_acc_root(const struct sl_mt_acc *a, uint8_t out[SL_HASH_LEN])
{
    if (a->n == 0) {
        SHA256((const unsigned char *)"", 0, out);
        return;
    }
    memcpy(out, a->stack[a->n - 1], SL_HASH_LEN);
    for (unsigned i = a->n - 1; i > 0; i--)
        sl_node_hash(a->stack[i - 1], out, out);
}

int sl_mt_acc_init(struct sl_mt_acc *a, const struct sl_mt_src *src, uint64_t n)
{
    memset(a, 0, sizeof(*a));
    uint64_t lo = 0;
    for (int level = 63; level >= 0; level--) {
        if (!(n >> level & 1))
            continue;
        int rc = src->node(src->ctx, (unsigned)level, lo >> level, a->stack[a->n]);
        if (rc)
            return rc;
        a->n++;
        lo += (uint64_t)1 << level;
    }
    a->size = n;
    return 0;
}
