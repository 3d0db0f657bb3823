/* libFuzzer target: a stream of pgoutput messages, each prefixed by a big-endian u16 length, as
 * the CDC worker sees them. Every message either decodes or is rejected with a reason; Relation
 * messages feed the relation cache; each change becomes an envelope that must be valid
 * MessagePack convertible to JSON (strings valid UTF-8, values typed by the announced OIDs) and
 * whose resume position reads back. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "connectors/pg/pgoutput.h"
#include "connectors/pg/values.h"
#include "formats/json_mp.h"

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n);

static struct sl_pgo_event ev;

static void check(struct sl_buf *b)
{
    struct sl_buf j;
    sl_buf_init(&j, 0);
    size_t used;
    uint64_t lsn;
    uint32_t idx;
    if (sl_mp_to_json(b->data, b->len, &used, &j, 200, NULL) != 0 || used != b->len)
        abort(); /* an envelope that cannot be shown as JSON */
    if (sl_pg_envelope_position(b->data, b->len, &lsn, &idx) != 0 || lsn != 7 || idx != 3)
        abort();
    sl_buf_release(&j);
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
    struct sl_pgo_relcache rc;
    sl_pgo_relcache_init(&rc);
    struct sl_pg_source src = {.db = "fuzz", .lsn = 1, .commit_lsn = 7, .tx_index = 3};
    while (n >= 2) {
        size_t len = (size_t)d[0] << 8 | d[1];
        d += 2;
        n -= 2;
        if (len > n)
            len = n;
        const char *why = NULL;
        /* a copy of exactly len bytes, so ASan sees any read past the message */
        uint8_t *m = malloc(len ? len : 1);
        memcpy(m, d, len);
        int r = sl_pgo_parse(m, len, &ev, &why);
        if ((r == 0) != (why == NULL))
            abort();
        if (r == 0 && ev.type == SL_PGO_RELATION)
            sl_pgo_relcache_put(&rc, &ev);
        if (r == 0 &&
            (ev.type == SL_PGO_INSERT || ev.type == SL_PGO_UPDATE || ev.type == SL_PGO_DELETE)) {
            struct sl_pgo_rel *rel = sl_pgo_relcache_get(&rc, ev.u.change.relid);
            if (rel) {
                struct sl_buf b;
                sl_buf_init(&b, 0);
                sl_pg_envelope_mp(&b, 'u', rel, ev.u.change.old_kind ? &ev.u.change.old_tup : NULL,
                                  ev.u.change.old_kind == 'K', &ev.u.change.new_tup, &src, 1);
                check(&b);
                sl_buf_release(&b);
            }
        }
        if (r == 0 && ev.type == SL_PGO_TRUNCATE)
            for (uint32_t i = 0; i < ev.u.truncate.nrels; i++)
                sl_pgo_relcache_get(&rc, sl_pgo_truncate_relid(&ev, i));
        free(m);
        d += len;
        n -= len;
    }
    sl_pgo_relcache_release(&rc);
    return 0;
}
