/* libFuzzer target: arbitrary bytes as MessagePack. sl_mp_skip and sl_mp_to_json must agree
 * (whatever converts has exactly the length skip reports), the JSON produced must be valid input
 * for sl_json_to_mp and convert back to the same text, and the readers must stay in bounds. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "formats/json_mp.h"

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n);

/* Walks the value at *p with the small readers; returns -1 when they cannot go on. */
static int walk(const uint8_t **p, const uint8_t *end, int depth)
{
    uint32_t k;
    const char *s;
    int64_t i;
    double f;
    int b;
    const uint8_t *start = *p;
    int t = sl_mp_type(*p, end);
    if (depth > 64)
        return -1;
    switch (t) {
    case SL_MP_MAP:
        if (sl_mp_read_map(p, end, &k))
            return -1;
        for (uint64_t j = 0; j < 2 * (uint64_t)k; j++)
            if (walk(p, end, depth + 1))
                return -1;
        break;
    case SL_MP_ARRAY:
        if (sl_mp_read_array(p, end, &k))
            return -1;
        for (uint32_t j = 0; j < k; j++)
            if (walk(p, end, depth + 1))
                return -1;
        break;
    case SL_MP_STR:
        if (sl_mp_read_str(p, end, &s, &k))
            return -1;
        if (s + k > (const char *)end)
            abort();
        break;
    case SL_MP_INT:
        if (sl_mp_read_int(p, end, &i) && sl_mp_read_double(p, end, &f))
            return -1;
        break;
    case SL_MP_FLOAT:
        if (sl_mp_read_double(p, end, &f))
            return -1;
        break;
    case SL_MP_NIL:
        if (sl_mp_read_nil(p, end))
            return -1;
        break;
    case SL_MP_BOOL:
        if (sl_mp_read_bool(p, end, &b))
            return -1;
        break;
    default: /* bin, ext, invalid: the readers do not cover them */
        return -1;
    }
    if (*p <= start || *p > end)
        abort();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
    struct sl_buf j, m, j2;
    struct sl_jerr e;
    size_t used = 0, used2 = 0;

    sl_buf_init(&j, 0);
    sl_buf_init(&m, 0);
    sl_buf_init(&j2, 0);
    long sk = sl_mp_skip(d, n, 64);
    if (sk > (long)n || sk == 0 || sk < -1)
        abort();
    if (sl_mp_to_json(d, n, &used, &j, 64, &e) == 0) {
        if (sk != (long)used)
            abort();
        if (sl_json_to_mp((const char *)j.data, j.len, &m, 64, &e) != 0)
            abort();
        if (sl_mp_skip(m.data, m.len, 64) != (long)m.len)
            abort();
        if (sl_mp_to_json(m.data, m.len, &used2, &j2, 64, &e) != 0 || used2 != m.len)
            abort();
        if (j2.len != j.len || memcmp(j2.data, j.data, j.len) != 0)
            abort();
    } else {
        if (j.len != 0 || e.offset > n || !e.msg[0])
            abort();
    }
    const uint8_t *p = d;
    if (walk(&p, d + n, 0) == 0 && sk >= 0 && p != d + sk)
        abort();
    sl_buf_release(&j);
    sl_buf_release(&m);
    sl_buf_release(&j2);
    return 0;
}
