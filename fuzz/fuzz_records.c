/* libFuzzer target for the body parser of POST /v1/records and /v1/records/batch. The first
 * byte picks the route (single, JSON-array batch, NDJSON batch) and an optional ?strand=; the
 * rest is the body. On success every record's payload must be one whole MessagePack value inside
 * the parsed buffer, its source inside it too, and the strand name valid. */
#include "api/records_parse.h"
#include "formats/json_mp.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t mode = data[0];
    struct sl_records_in in = {.body = (const char *)data + 1,
                               .len = size - 1,
                               .batch = (mode & 3) != 0,
                               .ndjson = (mode & 3) == 2,
                               .qstrand = (mode & 4) ? "fz" : NULL,
                               .max_records = 1000};
    struct sl_records r;
    struct sl_err err = {0};
    int rc = sl_records_parse(&in, &r, &err);
    if (rc == 0) {
        const uint8_t *lo = r.mp.data, *hi = r.mp.data + r.mp.len;
        if (r.n == 0 || !sl_strand_name_valid(r.strand, strlen(r.strand)))
            abort();
        for (size_t i = 0; i < r.n; i++) {
            const struct sl_append_rec *x = &r.recs[i];
            if (x->payload < lo || x->payload + x->payload_len > hi)
                abort();
            if (sl_mp_skip(x->payload, x->payload_len, 200) != (long)x->payload_len)
                abort();
            if (x->source_len && ((const uint8_t *)x->source < lo ||
                                  (const uint8_t *)x->source + x->source_len > hi))
                abort();
        }
    } else if (err.msg[0] == 0 || err.ecode[0] == 0) {
        abort(); /* every error explains itself */
    }
    sl_records_release(&r);
    return 0;
}
