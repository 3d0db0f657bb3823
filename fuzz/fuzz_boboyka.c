/* libFuzzer target for the Boboyka ingest parser (POST /v1/boboyka/ingest bodies). On success
 * the payload must be one whole MessagePack map naming a known type, and its data must read
 * back as JSON (the mirror body) that sl_json_to_mp accepts; on failure the error must explain
 * itself. */
#include "boboyka/schema.h"
#include "formats/json_mp.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct sl_bbk_event ev;
    struct sl_err err = {0};
    if (sl_bbk_parse((const char *)data, size, 1747000000000ull, &ev, &err) == 0) {
        if (sl_mp_skip(ev.payload.data, ev.payload.len, 200) != (long)ev.payload.len)
            abort();
        if (sl_bbk_payload_type(ev.payload.data, ev.payload.len) != ev.type)
            abort();
        struct sl_buf dj, mp;
        sl_buf_init(&dj, 0);
        sl_buf_init(&mp, 0);
        if (sl_bbk_payload_data_json(ev.payload.data, ev.payload.len, &dj) != 0)
            abort();
        if (sl_json_to_mp((const char *)dj.data, dj.len, &mp, 200, NULL) != 0)
            abort();
        sl_buf_release(&dj);
        sl_buf_release(&mp);
    } else if (err.msg[0] == 0 || err.ecode[0] == 0) {
        abort();
    }
    sl_bbk_event_release(&ev);
    return 0;
}
