/* ClickHouse's compressed block framing, as its HTTP interface reads a body with decompress=1
 * (the format of its native protocol and of its column files): each block is
 *
 *   checksum  16 bytes: CityHash128 (CityHash v1.0.2, the version ClickHouse froze for this) of
 *             everything after it in the block, as two little-endian 64-bit halves, low first
 *   method    1 byte: 0x82 = LZ4
 *   csize     4 bytes little-endian: the block's size from the method byte on (9 + data)
 *   size      4 bytes little-endian: the uncompressed size
 *   data      an LZ4 block (not an LZ4 frame)
 *
 * The body is cut into blocks of at most 1 MiB uncompressed, ClickHouse's own block size.
 * CityHash v1.0.2 is written here from Google's description of the algorithm (it differs from
 * later CityHash versions, so no other implementation would do); the integration test checks
 * it against a real server, and the unit test against hashes that server accepted. */
#include "connectors/clickhouse/clickhouse.h"

#include <lz4.h>
#include <string.h>

static uint64_t ld64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v; /* little-endian hosts only (x86-64, arm64), as the rest of Sluice */
}

static uint64_t ld32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

#define K0 0xc3a5c85c97cb3127ull
#define K1 0xb492b66fbe98f273ull
#define K2 0x9ae16a3b2f90404full
#define K3 0xc949d7c7509e6557ull

static uint64_t ror(uint64_t v, int s)
{
    return s == 0 ? v : (v >> s) | (v << (64 - s));
}

static uint64_t shift_mix(uint64_t v)
{
    return v ^ (v >> 47);
}

/* Hash128to64 of (u, v): Murmur-like mixing. */
static uint64_t len16(uint64_t u, uint64_t v)
{
    const uint64_t mul = 0x9ddfea08eb382d69ull;
    uint64_t a = (u ^ v) * mul;
    a ^= a >> 47;
    uint64_t b = (v ^ a) * mul;
    b ^= b >> 47;
    return b * mul;
}

static uint64_t len0to16(const uint8_t *s, size_t len)
{
    if (len > 8) {
        uint64_t a = ld64(s), b = ld64(s + len - 8);
        return len16(a, ror(b + len, (int)len)) ^ b;
    }
    if (len >= 4) {
        uint64_t a = ld32(s);
        return len16(len + (a << 3), ld32(s + len - 4));
    }
    if (len > 0) {
        uint32_t y = (uint32_t)s[0] + ((uint32_t)s[len >> 1] << 8);
        uint32_t z = (uint32_t)len + ((uint32_t)s[len - 1] << 2);
        return shift_mix(y * K2 ^ z * K3) * K2;
    }
    return K2;
}

struct u128 {
    uint64_t lo, hi;
};

/* 16 bytes of hash from 32 bytes w, x, y, z and seeds a, b. */
static struct u128 weak32(uint64_t w, uint64_t x, uint64_t y, uint64_t z, uint64_t a, uint64_t b)
{
    a += w;
    b = ror(b + a + z, 21);
    uint64_t c = a;
    a += x;
    a += y;
    b += ror(a, 44);
    return (struct u128){a + z, b + c};
}

static struct u128 weak32s(const uint8_t *s, uint64_t a, uint64_t b)
{
    return weak32(ld64(s), ld64(s + 8), ld64(s + 16), ld64(s + 24), a, b);
}

/* CityMurmur: the 128-bit hash of short inputs (< 128 bytes). */
static struct u128 city_murmur(const uint8_t *s, size_t len, struct u128 seed)
{
    uint64_t a = seed.lo, b = seed.hi, c, d;
    if (len <= 16) {
        a = shift_mix(a * K1) * K1;
        c = b * K1 + len0to16(s, len);
        d = shift_mix(a + (len >= 8 ? ld64(s) : c));
    } else {
        c = len16(ld64(s + len - 8) + K1, a);
        d = len16(b + len, c + ld64(s + len - 16));
        a += d;
        for (long l = (long)len - 16; l > 0; l -= 16, s += 16) {
            a ^= shift_mix(ld64(s) * K1) * K1;
            a *= K1;
            b ^= a;
            c ^= shift_mix(ld64(s + 8) * K1) * K1;
            c *= K1;
            d ^= c;
        }
    }
    a = len16(a, c);
    b = len16(d, b);
    return (struct u128){a ^ b, len16(b, a)};
}

/* One 64-byte round of the long-input loop. */
static void round64(const uint8_t *s, uint64_t *x, uint64_t *y, uint64_t *z, struct u128 *v,
                    struct u128 *w)
{
    *x = ror(*x + *y + v->lo + ld64(s + 16), 37) * K1;
    *y = ror(*y + v->hi + ld64(s + 48), 42) * K1;
    *x ^= w->hi;
    *y ^= v->lo;
    *z = ror(*z ^ w->lo, 33);
    *v = weak32s(s, v->hi * K1, *x + w->lo);
    *w = weak32s(s + 32, *z + w->hi, *y);
    uint64_t t = *z;
    *z = *x;
    *x = t;
}

static struct u128 city128_seed(const uint8_t *s, size_t len, struct u128 seed)
{
    if (len < 128)
        return city_murmur(s, len, seed);
    struct u128 v, w;
    uint64_t x = seed.lo, y = seed.hi, z = len * K1;
    v.lo = ror(y ^ K1, 49) * K1 + ld64(s);
    v.hi = ror(v.lo, 42) * K1 + ld64(s + 8);
    w.lo = ror(y + z, 35) * K1 + x;
    w.hi = ror(x + ld64(s + 88), 53) * K1;
    do { /* 128 bytes a turn */
        round64(s, &x, &y, &z, &v, &w);
        round64(s + 64, &x, &y, &z, &v, &w);
        s += 128;
        len -= 128;
    } while (len >= 128);
    y += ror(w.lo, 37) * K0 + z;
    x += ror(v.lo + z, 49) * K0;
    for (size_t done = 0; done < len;) { /* up to four 32-byte pieces from the end */
        done += 32;
        y = ror(y - x, 42) * K0 + v.hi;
        w.lo += ld64(s + len - done + 16);
        x = ror(x, 49) * K0 + w.lo;
        w.lo += v.lo;
        v = weak32s(s + len - done, v.lo, v.hi);
    }
    x = len16(x, v.lo);
    y = len16(y, w.lo);
    return (struct u128){len16(x + v.hi, w.hi) + y, len16(x + w.hi, y + v.hi)};
}

void sl_ch_cityhash128(const void *data, size_t len, uint64_t *lo, uint64_t *hi)
{
    const uint8_t *s = data;
    struct u128 h;
    if (len >= 16)
        h = city128_seed(s + 16, len - 16, (struct u128){ld64(s) ^ K3, ld64(s + 8)});
    else if (len >= 8)
        h = city128_seed(NULL, 0, (struct u128){ld64(s) ^ (len * K0), ld64(s + len - 8) ^ K1});
    else
        h = city128_seed(s, len, (struct u128){K0, K1});
    *lo = h.lo;
    *hi = h.hi;
}

static void put_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put_le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

#define BLOCK (1u << 20)

int sl_ch_lz4_blocks(const void *in, size_t len, struct sl_buf *out)
{
    const uint8_t *p = in;
    size_t off = 0;
    do {
        size_t n = len - off < BLOCK ? len - off : BLOCK;
        int bound = LZ4_compressBound((int)n);
        if (sl_buf_reserve(out, 25 + (size_t)bound) < 0)
            return -1;
        uint8_t *blk = out->data + out->len;
        int z = LZ4_compress_default((const char *)p + off, (char *)blk + 25, (int)n, bound);
        if (z <= 0)
            return -1;
        blk[16] = 0x82;
        put_le32(blk + 17, (uint32_t)z + 9);
        put_le32(blk + 21, (uint32_t)n);
        uint64_t lo, hi;
        sl_ch_cityhash128(blk + 16, (size_t)z + 9, &lo, &hi);
        put_le64(blk, lo);
        put_le64(blk + 8, hi);
        out->len += 25 + (size_t)z;
        off += n;
    } while (off < len);
    return 0;
}
