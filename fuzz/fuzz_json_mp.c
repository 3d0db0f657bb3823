/* libFuzzer target: arbitrary bytes as JSON. Whatever sl_json_to_mp accepts must be well-formed
 * MessagePack of exactly the output length, must turn back into JSON, and that JSON must
 * transcode to identical bytes (the encoding is deterministic). Errors must leave the output
 * buffer as it was and point inside the input. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "formats/json_mp.h"

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n);

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
    struct sl_buf m, j, m2;
    struct sl_jerr e;
    size_t used = 0;

    sl_buf_init(&m, 0);
    sl_buf_init(&j, 0);
    sl_buf_init(&m2, 0);
    sl_buf_append(&m, "\xa1x", 2); /* earlier content that must survive an error */
    if (sl_json_to_mp((const char *)d, n, &m, 64, &e) == 0) {
        const uint8_t *mp = m.data + 2;
        size_t len = m.len - 2;
        if (memcmp(m.data, "\xa1x", 2) != 0)
            abort();
        if (sl_mp_skip(mp, len, 64) != (long)len)
            abort();
        if (sl_mp_to_json(mp, len, &used, &j, 64, &e) != 0 || used != len)
            abort();
        if (sl_json_to_mp((const char *)j.data, j.len, &m2, 64, &e) != 0)
            abort();
        if (m2.len != len || memcmp(m2.data, mp, len) != 0)
            abort();
    } else {
        if (m.len != 2 || memcmp(m.data, "\xa1x", 2) != 0 || e.offset > n || !e.msg[0])
            abort();
    }
    sl_buf_release(&m);
    sl_buf_release(&j);
    sl_buf_release(&m2);
    return 0;
}
