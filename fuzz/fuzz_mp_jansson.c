/* libFuzzer target for MessagePack -> jansson (transforms, filters, the PostgreSQL sink):
 * arbitrary bytes either fail cleanly or give a tree that encodes back to MessagePack and
 * decodes to an equal tree. */
#include "formats/mp_jansson.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *p = data;
    json_t *v = sl_mp_to_jansson(&p, data + size, 64);
    if (!v)
        return 0;
    if (p < data || p > data + size)
        abort();
    struct sl_buf b;
    sl_buf_init(&b, 0);
    if (sl_jansson_to_mp(v, &b, 70) < 0)
        abort();
    const uint8_t *q = b.data;
    json_t *w = sl_mp_to_jansson(&q, b.data + b.len, 70);
    if (!w || !json_equal(v, w) || q != b.data + b.len)
        abort();
    json_decref(v);
    json_decref(w);
    sl_buf_release(&b);
    return 0;
}
