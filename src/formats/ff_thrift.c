/* The low-level pieces of the Parquet writer: the Thrift compact protocol (for FileMetaData and
 * the page headers), the RLE / bit-packing hybrid (definition levels, dictionary indices) and the
 * string dictionary. Specs: apache/parquet-format (parquet.thrift, Encodings.md) and Thrift's
 * compact protocol description. */
#include "formats/ff_rows.h"

#include <stdlib.h>
#include <string.h>

void sl_tc_varint(struct sl_buf *b, uint64_t v)
{
    uint8_t t[10];
    int n = 0;
    while (v >= 0x80) {
        t[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    t[n++] = (uint8_t)v;
    sl_buf_append(b, t, (size_t)n);
}

static uint64_t zigzag(int64_t v)
{
    return ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
}

void sl_tc_init(struct sl_tc *t, struct sl_buf *b)
{
    memset(t, 0, sizeof(*t));
    t->b = b;
}

static void field(struct sl_tc *t, int16_t id, uint8_t type)
{
    int16_t delta = (int16_t)(id - t->last[t->depth]);
    if (delta > 0 && delta <= 15) {
        sl_buf_putc(t->b, (uint8_t)(delta << 4 | type));
    } else {
        sl_buf_putc(t->b, type);
        sl_tc_varint(t->b, zigzag(id));
    }
    t->last[t->depth] = id;
}

void sl_tc_i32(struct sl_tc *t, int16_t id, int32_t v)
{
    field(t, id, SL_TC_I32);
    sl_tc_varint(t->b, zigzag(v));
}

void sl_tc_i16(struct sl_tc *t, int16_t id, int16_t v)
{
    field(t, id, SL_TC_I16);
    sl_tc_varint(t->b, zigzag(v));
}

void sl_tc_i64(struct sl_tc *t, int16_t id, int64_t v)
{
    field(t, id, SL_TC_I64);
    sl_tc_varint(t->b, zigzag(v));
}

void sl_tc_bool(struct sl_tc *t, int16_t id, int v)
{
    field(t, id, v ? SL_TC_TRUE : SL_TC_FALSE);
}

void sl_tc_bin(struct sl_tc *t, int16_t id, const void *p, size_t n)
{
    field(t, id, SL_TC_BINARY);
    sl_tc_elem_bin(t, p, n);
}

void sl_tc_struct(struct sl_tc *t, int16_t id)
{
    if (id)
        field(t, id, SL_TC_STRUCT);
    if (t->depth + 1 < (int)(sizeof(t->last) / sizeof(t->last[0])))
        t->depth++;
    t->last[t->depth] = 0;
}

void sl_tc_end(struct sl_tc *t)
{
    sl_buf_putc(t->b, 0);
    if (t->depth > 0)
        t->depth--;
}

void sl_tc_list(struct sl_tc *t, int16_t id, uint8_t elem_type, uint32_t n)
{
    field(t, id, SL_TC_LIST);
    if (n < 15) {
        sl_buf_putc(t->b, (uint8_t)(n << 4 | elem_type));
    } else {
        sl_buf_putc(t->b, (uint8_t)(0xf0 | elem_type));
        sl_tc_varint(t->b, n);
    }
}

void sl_tc_elem_i32(struct sl_tc *t, int32_t v)
{
    sl_tc_varint(t->b, zigzag(v));
}

void sl_tc_elem_bin(struct sl_tc *t, const void *p, size_t n)
{
    sl_tc_varint(t->b, n);
    sl_buf_append(t->b, p, n);
}

/* ---- RLE / bit-packing hybrid ---- */

static size_t run_at(const uint32_t *v, size_t i, size_t n)
{
    size_t j = i + 1;
    while (j < n && v[j] == v[i])
        j++;
    return j - i;
}

/* Bit-packs the values v[0..groups*8) (beyond n: zeros) in bit_width bits each, LSB first. */
static void bitpack(struct sl_buf *b, const uint32_t *v, size_t n, size_t groups, int bw)
{
    size_t bytes = groups * (size_t)bw;
    if (sl_buf_reserve(b, bytes))
        return;
    uint8_t *o = b->data + b->len;
    uint64_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < groups * 8; i++) {
        acc |= (uint64_t)(i < n ? v[i] : 0) << bits;
        bits += bw;
        while (bits >= 8) {
            *o++ = (uint8_t)acc;
            acc >>= 8;
            bits -= 8;
        }
    }
    b->len += bytes;
}

void sl_ff_rle_hybrid(struct sl_buf *b, const uint32_t *v, size_t n, int bw)
{
    size_t i = 0;
    int vbytes = (bw + 7) / 8;
    while (i < n) {
        size_t run = run_at(v, i, n);
        if (run >= 8) {
            sl_tc_varint(b, (uint64_t)run << 1);
            for (int k = 0; k < vbytes; k++)
                sl_buf_putc(b, (uint8_t)(v[i] >> (8 * k)));
            i += run;
            continue;
        }
        /* literal groups of 8 until a run of 8 starts at a group boundary */
        size_t j = i + 8;
        while (j < n && run_at(v, j, j + 8 < n ? j + 8 : n) < 8)
            j += 8;
        size_t groups = (j - i) / 8;
        sl_tc_varint(b, (uint64_t)groups << 1 | 1);
        bitpack(b, v + i, (j < n ? j : n) - i, groups, bw);
        i = j;
    }
}

/* ---- string dictionary ---- */

static uint32_t str_hash(const char *s, uint32_t n)
{
    uint64_t h = 0x9e3779b97f4a7c15ull ^ n;
    uint32_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, s + i, 8);
        h = (h ^ w) * 0xff51afd7ed558ccdull;
        h ^= h >> 32;
    }
    uint64_t w = 0;
    memcpy(&w, s + i, n - i);
    h = (h ^ w) * 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 29;
    return (uint32_t)h;
}

void sl_ff_dict_reset(struct sl_ff_dict *d)
{
    d->n = 0;
    d->bytes = 0;
    if (d->slots)
        memset(d->slots, 0, d->nslots * sizeof(*d->slots));
}

static int dict_grow(struct sl_ff_dict *d)
{
    size_t ns = d->nslots ? 2 * d->nslots : 1024;
    uint32_t *slots = calloc(ns, sizeof(*slots));
    if (!slots)
        return -1;
    for (size_t k = 0; k < d->n; k++) {
        size_t at = d->hashes[k] & (ns - 1);
        while (slots[at])
            at = (at + 1) & (ns - 1);
        slots[at] = (uint32_t)k + 1;
    }
    free(d->slots);
    d->slots = slots;
    d->nslots = ns;
    return 0;
}

/* memcmp(a, b, n) == 0 without the call: dictionary strings are mostly short */
static inline int same_bytes(const char *a, const char *b, uint32_t n)
{
    uint32_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t x, y;
        memcpy(&x, a + i, 8);
        memcpy(&y, b + i, 8);
        if (x != y)
            return 0;
    }
    for (; i < n; i++)
        if (a[i] != b[i])
            return 0;
    return 1;
}

long sl_ff_dict_add(struct sl_ff_dict *d, const char *s, uint32_t len)
{
    if (2 * (d->n + 1) > d->nslots && dict_grow(d))
        return -1;
    uint32_t h = str_hash(s, len);
    size_t at = h & (d->nslots - 1);
    for (uint32_t e; (e = d->slots[at]) != 0; at = (at + 1) & (d->nslots - 1)) {
        e--;
        if (d->hashes[e] == h && d->len[e] == len && same_bytes(d->s[e], s, len))
            return e;
    }
    if (d->n == d->cap) {
        size_t nc = d->cap ? 2 * d->cap : 1024;
        const char **ns = realloc(d->s, nc * sizeof(*ns));
        if (ns)
            d->s = ns;
        uint32_t *nl = realloc(d->len, nc * sizeof(*nl));
        if (nl)
            d->len = nl;
        uint32_t *nh = realloc(d->hashes, nc * sizeof(*nh));
        if (nh)
            d->hashes = nh;
        if (!ns || !nl || !nh)
            return -1;
        d->cap = nc;
    }
    d->s[d->n] = s;
    d->len[d->n] = len;
    d->hashes[d->n] = h;
    d->slots[at] = (uint32_t)d->n + 1;
    d->bytes += 4 + (size_t)len;
    return (long)d->n++;
}

void sl_ff_dict_release(struct sl_ff_dict *d)
{
    free(d->s);
    free(d->len);
    free(d->hashes);
    free(d->slots);
    memset(d, 0, sizeof(*d));
}
