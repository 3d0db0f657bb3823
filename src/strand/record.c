#include "strand/record.h"

#include "core/crc32c.h"
#include "core/util.h"

#include <cpuid.h>
#include <immintrin.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdlib.h>

/* One digest context per thread: EVP_MD_CTX_new/fetch per record would cost more than the
 * hash of a 200-byte record. A pthread key frees it when the thread (a committer) exits. */
static _Thread_local EVP_MD_CTX *t_ctx;
static EVP_MD *g_sha256;
static pthread_key_t g_ctx_key;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void ctx_free(void *p)
{
    EVP_MD_CTX_free(p);
}

static void init_once(void)
{
    g_sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
    if (!g_sha256 || pthread_key_create(&g_ctx_key, ctx_free) != 0)
        abort(); /* OpenSSL without SHA-256: nothing sensible to do */
}

static EVP_MD_CTX *ctx_get(void)
{
    if (!t_ctx) {
        pthread_once(&g_once, init_once);
        t_ctx = EVP_MD_CTX_new();
        if (!t_ctx)
            abort();
        pthread_setspecific(g_ctx_key, t_ctx);
    }
    return t_ctx;
}

static inline uint8_t *be(uint8_t *p, uint64_t v, int bytes)
{
    for (int i = bytes - 1; i >= 0; i--) {
        p[i] = (uint8_t)v;
        v >>= 8;
    }
    return p + bytes;
}

/* ---- SHA-256 with the CPU's SHA extensions: the Merkle interior nodes (exactly 65 bytes, once
 * per record in the commit path) and the record hash (below).
 * With the CPU's SHA extensions (SHA-NI) one compression is a chain of 32 SHA256RNDS2, bound by
 * their latency; hashing LANES independent nodes interleaved keeps the unit busy (measured here:
 * ~45 ns per node 8 at a time, against ~150 ns through EVP). Written from the instructions'
 * definitions (Intel SDM: SHA256RNDS2 does two rounds on the state as ABEF/CDGH, SHA256MSG1/MSG2
 * extend the message schedule); test_merkle.c compares it with EVP on random inputs. */

static const uint32_t K256[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

#define SHANI __attribute__((target("sha,sse4.1,ssse3")))
#define LANES 8

/* One compression of n <= LANES independent 64-byte blocks p[j] into (abef[j], cdgh[j]). */
static SHANI inline __attribute__((always_inline)) void
shani_blocks(__m128i *abef, __m128i *cdgh, const uint8_t *const *p, const int n)
{
    const __m128i bswap = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
    __m128i s0[LANES], s1[LANES], m[LANES][4];
    for (int j = 0; j < n; j++) {
        s0[j] = abef[j];
        s1[j] = cdgh[j];
    }
    /* Unrolled: with one lane (the record hash) the rolled loop kept m[][] on the stack and each
     * store and load sat on the chain (75 ns a block, against 47 unrolled; 8 lanes 55-62 -> 42-51
     * ns a node). */
#pragma GCC unroll 16
    for (int g = 0; g < 16; g++) { /* four rounds per group: W[4g .. 4g+3] in m[.][g % 4] */
        __m128i kg = _mm_loadu_si128((const __m128i *)&K256[4 * g]);
        for (int j = 0; j < n; j++) {
            if (g < 4)
                m[j][g] =
                    _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p[j] + 16 * g)), bswap);
            __m128i cur = m[j][g % 4];
            __m128i k = _mm_add_epi32(cur, kg);
            s1[j] = _mm_sha256rnds2_epu32(s1[j], s0[j], k);
            if (g >= 3 && g < 15) { /* W[4g+4..]: msg1(W[4g-12], W[4g-8]) + W[4g-7..] -> msg2 */
                int nx = (g + 1) % 4;
                __m128i w7 = _mm_alignr_epi8(cur, m[j][(g + 3) % 4], 4);
                m[j][nx] = _mm_sha256msg2_epu32(_mm_add_epi32(m[j][nx], w7), cur);
            }
            s0[j] = _mm_sha256rnds2_epu32(s0[j], s1[j], _mm_shuffle_epi32(k, 0x0e));
            if (g >= 1 && g < 13) /* W[4g-4] + sigma0(W[4g-3..]), for group g + 3 */
                m[j][(g + 3) % 4] = _mm_sha256msg1_epu32(m[j][(g + 3) % 4], cur);
        }
    }
    for (int j = 0; j < n; j++) {
        abef[j] = _mm_add_epi32(s0[j], abef[j]);
        cdgh[j] = _mm_add_epi32(s1[j], cdgh[j]);
    }
}

/* H0 as ABEF and CDGH (dword 0 lowest). */
static SHANI inline __attribute__((always_inline)) void shani_init(__m128i *abef, __m128i *cdgh)
{
    *abef = _mm_set_epi32(0x6a09e667, (int)0xbb67ae85, 0x510e527f, (int)0x9b05688c);
    *cdgh = _mm_set_epi32(0x3c6ef372, (int)0xa54ff53a, 0x1f83d9ab, 0x5be0cd19);
}

/* The state back to a..h, big-endian: the digest. */
static SHANI inline __attribute__((always_inline)) void shani_out(__m128i abef, __m128i cdgh,
                                                                  uint8_t out[SL_HASH_LEN])
{
    const __m128i bswap = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
    __m128i feba = _mm_shuffle_epi32(abef, 0x1b), dchg = _mm_shuffle_epi32(cdgh, 0xb1);
    __m128i dcba = _mm_blend_epi16(feba, dchg, 0xf0), hgfe = _mm_alignr_epi8(dchg, feba, 8);
    _mm_storeu_si128((__m128i *)out, _mm_shuffle_epi8(dcba, bswap));
    _mm_storeu_si128((__m128i *)(out + 16), _mm_shuffle_epi8(hgfe, bswap));
}

/* out[j] = SHA-256(0x01 || in[2j] || in[2j+1]) for j < n <= LANES. Reads every input before
 * writing an output, so out may overlap in (in place, out[j] at in[j]). */
static SHANI inline __attribute__((always_inline)) void
shani_nodes(const uint8_t in[][SL_HASH_LEN], uint8_t out[][SL_HASH_LEN], const int n)
{
    uint8_t b[LANES][128];
    const uint8_t *p1[LANES] = {0}, *p2[LANES] = {0};
    __m128i abef[LANES], cdgh[LANES];
    for (int j = 0; j < n; j++) {
        b[j][0] = 0x01;
        memcpy(b[j] + 1, in[2 * j], SL_HASH_LEN);
        memcpy(b[j] + 33, in[2 * j + 1], SL_HASH_LEN);
        b[j][65] = 0x80; /* padding, then the length: 65 bytes = 520 bits */
        memset(b[j] + 66, 0, 128 - 66 - 2);
        b[j][126] = 520 >> 8;
        b[j][127] = 520 & 0xff;
        p1[j] = b[j];
        p2[j] = b[j] + 64;
        shani_init(&abef[j], &cdgh[j]);
    }
    shani_blocks(abef, cdgh, p1, n);
    shani_blocks(abef, cdgh, p2, n);
    for (int j = 0; j < n; j++)
        shani_out(abef[j], cdgh[j], out[j]);
}

static SHANI void shani_pairs(const uint8_t in[][SL_HASH_LEN], size_t npairs,
                              uint8_t out[][SL_HASH_LEN])
{
    size_t i = 0;
    for (; i + LANES <= npairs; i += LANES)
        shani_nodes(in + 2 * i, out + i, LANES);
    for (; i < npairs; i++)
        shani_nodes(in + 2 * i, out + i, 1);
}

/* SHA-256 of the concatenation of n pieces, one block at a time: a block that lies inside one
 * piece is compressed where it is, the others are assembled in blk. The record hash is a chain
 * (each input holds the previous hash), so there is nothing to interleave; what this saves is
 * OpenSSL's per-call work (EVP dispatch, buffering, cleansing): a 233-byte record hash took
 * 223-236 ns through EVP and takes 184-208 ns here (this machine, 2M chained hashes). */
struct piece {
    const uint8_t *p;
    size_t n;
};

static SHANI void shani_digest(const struct piece *pc, int npc, uint8_t out[SL_HASH_LEN])
{
    __m128i abef, cdgh;
    uint8_t blk[64];
    size_t fill = 0;
    uint64_t total = 0;
    const uint8_t *bp = blk;
    shani_init(&abef, &cdgh);
    for (int i = 0; i < npc; i++) {
        const uint8_t *p = pc[i].p;
        size_t n = pc[i].n;
        if (!n)
            continue;
        total += n;
        if (fill) {
            size_t k = n < 64 - fill ? n : 64 - fill;
            memcpy(blk + fill, p, k);
            fill += k;
            p += k;
            n -= k;
            if (fill < 64)
                continue;
            shani_blocks(&abef, &cdgh, &bp, 1);
            fill = 0;
        }
        for (; n >= 64; p += 64, n -= 64)
            shani_blocks(&abef, &cdgh, &p, 1);
        if (n)
            memcpy(blk, p, n);
        fill = n;
    }
    blk[fill++] = 0x80;
    if (fill > 56) {
        memset(blk + fill, 0, 64 - fill);
        shani_blocks(&abef, &cdgh, &bp, 1);
        fill = 0;
    }
    memset(blk + fill, 0, 56 - fill);
    be(blk + 56, total * 8, 8);
    shani_blocks(&abef, &cdgh, &bp, 1);
    shani_out(abef, cdgh, out);
}

static int g_shani = -1; /* -1 not yet known; SL_NO_SHANI=1 in the environment forces EVP */

static int have_shani(void)
{
    int v = __atomic_load_n(&g_shani, __ATOMIC_RELAXED);
    if (v < 0) {
        unsigned a, b, c, d;
        v = __get_cpuid_count(7, 0, &a, &b, &c, &d) && (b & (1u << 29)) && /* SHA */
            __get_cpuid(1, &a, &b, &c, &d) && (c & (1u << 19)) &&          /* SSE4.1 */
            (c & (1u << 9)) && !getenv("SL_NO_SHANI");                     /* SSSE3 */
        __atomic_store_n(&g_shani, v, __ATOMIC_RELAXED);
    }
    return v;
}

/* The record hash's input in pieces: head (fixed fields and the strand name), source, mid
 * (prev_hash and the payload's length), payload. */
struct rh_input {
    uint8_t head[1 + 5 + 8 + 8 + 4 + 2 + SL_STRAND_NAME_MAX + 2]; /* at most 94 bytes */
    size_t head_len;
    uint8_t mid[SL_HASH_LEN + 4];
};

static void rh_input_fill(struct rh_input *in, const char *strand, size_t strand_len,
                          const struct sl_record *r)
{
    /* 0x00 || "SLCR1" || seq || ts || flags || len(strand) || strand || len(source) */
    uint8_t *p = in->head;
    *p++ = 0x00;
    memcpy(p, "SLCR1", 5);
    p += 5;
    p = be(p, r->seq, 8);
    p = be(p, r->timestamp_ms, 8);
    p = be(p, r->flags, 4);
    p = be(p, strand_len, 2);
    memcpy(p, strand, strand_len);
    p += strand_len;
    p = be(p, r->source_len, 2);
    in->head_len = (size_t)(p - in->head);
    memcpy(in->mid, r->prev_hash, SL_HASH_LEN);
    be(in->mid + SL_HASH_LEN, r->payload_len, 4);
}

void sl_record_hash_evp(const char *strand, size_t strand_len, const struct sl_record *r,
                        uint8_t out[SL_HASH_LEN])
{
    struct rh_input in;
    rh_input_fill(&in, strand, strand_len, r);
    EVP_MD_CTX *c = ctx_get();
    unsigned int n = 0;
    EVP_DigestInit_ex2(c, g_sha256, NULL);
    EVP_DigestUpdate(c, in.head, in.head_len);
    EVP_DigestUpdate(c, r->source, r->source_len);
    EVP_DigestUpdate(c, in.mid, sizeof(in.mid));
    EVP_DigestUpdate(c, r->payload, r->payload_len);
    EVP_DigestFinal_ex(c, out, &n);
}

void sl_record_hash(const char *strand, size_t strand_len, const struct sl_record *r,
                    uint8_t out[SL_HASH_LEN])
{
    if (!have_shani())
        return sl_record_hash_evp(strand, strand_len, r, out);
    struct rh_input in;
    rh_input_fill(&in, strand, strand_len, r);
    const struct piece pc[4] = {{in.head, in.head_len},
                                {(const uint8_t *)r->source, r->source_len},
                                {in.mid, sizeof(in.mid)},
                                {r->payload, r->payload_len}};
    shani_digest(pc, 4, out);
}

void sl_node_hash_pairs(const uint8_t in[][SL_HASH_LEN], size_t npairs, uint8_t out[][SL_HASH_LEN])
{
    if (have_shani())
        return shani_pairs(in, npairs, out);
    for (size_t i = 0; i < npairs; i++) {
        uint8_t h[SL_HASH_LEN];
        sl_node_hash_evp(in[2 * i], in[2 * i + 1], h);
        memcpy(out[i], h, SL_HASH_LEN);
    }
}

void sl_node_hash(const uint8_t left[SL_HASH_LEN], const uint8_t right[SL_HASH_LEN],
                  uint8_t out[SL_HASH_LEN])
{
    if (!have_shani())
        return sl_node_hash_evp(left, right, out);
    uint8_t in[2][SL_HASH_LEN];
    memcpy(in[0], left, SL_HASH_LEN);
    memcpy(in[1], right, SL_HASH_LEN);
    shani_pairs((const uint8_t(*)[SL_HASH_LEN])in, 1, (uint8_t(*)[SL_HASH_LEN])out);
}

void sl_node_hash_evp(const uint8_t left[SL_HASH_LEN], const uint8_t right[SL_HASH_LEN],
                      uint8_t out[SL_HASH_LEN])
{
    static const uint8_t one = 0x01;
    EVP_MD_CTX *c = ctx_get();
    unsigned int n = 0;
    EVP_DigestInit_ex2(c, g_sha256, NULL);
    EVP_DigestUpdate(c, &one, 1);
    EVP_DigestUpdate(c, left, SL_HASH_LEN);
    EVP_DigestUpdate(c, right, SL_HASH_LEN);
    EVP_DigestFinal_ex(c, out, &n);
}

void sl_frame_encode(const struct sl_record *r, uint8_t *out)
{
    uint32_t len = (uint32_t)sl_frame_len(r->source_len, r->payload_len);
    sl_put_le32(out, len);
    sl_put_le64(out + 8, r->seq);
    sl_put_le64(out + 16, r->timestamp_ms);
    sl_put_le32(out + 24, r->flags);
    out[28] = (uint8_t)r->source_len;
    out[29] = (uint8_t)(r->source_len >> 8);
    out[30] = out[31] = 0;
    sl_put_le32(out + 32, r->payload_len);
    uint8_t *p = out + SL_FRAME_HDR;
    if (r->source_len) /* an empty source or payload may come as NULL */
        memcpy(p, r->source, r->source_len);
    p += r->source_len;
    if (r->payload_len)
        memcpy(p, r->payload, r->payload_len);
    p += r->payload_len;
    memcpy(p, r->prev_hash, SL_HASH_LEN);
    memcpy(p + SL_HASH_LEN, r->hash, SL_HASH_LEN);
    sl_put_le32(out + 4, sl_crc32c(0, out + 8, len - 8));
}

enum sl_frame_status sl_frame_decode(const uint8_t *p, uint64_t avail, struct sl_record *r,
                                     uint32_t *frame_len)
{
    if (avail < 4) { /* the few bytes left at the end of a full segment: zeros, or torn */
        for (uint64_t i = 0; i < avail; i++)
            if (p[i])
                return SL_FRAME_TORN;
        return SL_FRAME_END;
    }
    uint32_t len = sl_get_le32(p);
    if (len == 0)
        return SL_FRAME_END;
    if (len < SL_FRAME_OVERHEAD)
        return SL_FRAME_BADLEN;
    if (len > avail)
        return SL_FRAME_TORN;
    uint16_t sl = sl_get_le16(p + 28);
    uint32_t pl = sl_get_le32(p + 32);
    if (sl_frame_len(sl, pl) != len || p[30] || p[31])
        return SL_FRAME_BADLEN;
    if (sl_get_le32(p + 4) != sl_crc32c(0, p + 8, len - 8))
        return SL_FRAME_BADCRC;
    r->seq = sl_get_le64(p + 8);
    r->timestamp_ms = sl_get_le64(p + 16);
    r->flags = sl_get_le32(p + 24);
    r->source_len = sl;
    r->source = (const char *)p + SL_FRAME_HDR;
    r->payload_len = pl;
    r->payload = p + SL_FRAME_HDR + sl;
    memcpy(r->prev_hash, p + len - 2 * SL_HASH_LEN, SL_HASH_LEN);
    memcpy(r->hash, p + len - SL_HASH_LEN, SL_HASH_LEN);
    *frame_len = len;
    return SL_FRAME_OK;
}

const char *sl_frame_status_str(enum sl_frame_status st)
{
    switch (st) {
    case SL_FRAME_OK:
        return "ok";
    case SL_FRAME_END:
        return "end";
    case SL_FRAME_TORN:
        return "torn frame (length past end of file)";
    case SL_FRAME_BADLEN:
        return "bad frame length";
    case SL_FRAME_BADCRC:
        return "crc mismatch";
    }
    return "?";
}

int sl_strand_name_valid(const char *name, size_t len)
{
    if (len == 0 || len > SL_STRAND_NAME_MAX)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
        if (i > 0)
            ok = ok || c == '.' || c == '_' || c == '-';
        if (!ok)
            return 0;
    }
    return 1;
}
